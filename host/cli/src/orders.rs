//! `colony orders list|kill-switch` and `colony approvals list|approve|deny`.
//!
//! `orders list` asks the running host (open orders, recent orders and fills, positions,
//! PnL, rejections by reason); with no host running it reads the order journal of the data
//! directory (orders and fills as journaled). `orders list --rejected` reads the journal's
//! record of orders refused before any venue saw them (reason code and message), whether a
//! host runs or not: it survives restarts. The kill switch and approvals need a running
//! host; a kill switch is also kept in `DATA_DIR/kill-switch.json`, so it survives a restart.

use std::path::PathBuf;

use clap::{Args, Subcommand};

use super::{CliError, CliResult, printable};
use crate::human;
use crate::table::{Align, Table};
use colony_host::orders::journal::{Journal, OrderFilter};

#[derive(Debug, Subcommand)]
pub enum OrdersCommand {
    /// Open orders, recent orders and fills, positions and PnL.
    List(ListArgs),
    /// Stop trading: `on` cancels every working order and refuses new ones; `reducing`
    /// cancels them and lets only position-reducing orders through; `halt` refuses new
    /// orders and keeps working ones; `off` resumes.
    KillSwitch {
        /// `on`, `off`, `reducing` or `halt`.
        mode: String,
        /// Only this agent (default: every agent).
        #[arg(long)]
        agent: Option<String>,
    },
}

#[derive(Debug, Args)]
pub struct ListArgs {
    /// Journal to read when no host runs (default: DATA_DIR/orders.db).
    #[arg(long, env = "COLONY_ORDERS_JOURNAL")]
    journal: Option<String>,
    /// Only this agent.
    #[arg(long)]
    agent: Option<String>,
    /// Most orders to show from the journal (no host running, or `--rejected`).
    #[arg(long, default_value_t = 100)]
    limit: u32,
    /// Orders refused before any venue saw them (risk, approval), newest first, from the
    /// journal.
    #[arg(long)]
    rejected: bool,
    /// Print JSON.
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Subcommand)]
pub enum ApprovalsCommand {
    /// Orders waiting for approval.
    List {
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Send a waiting order to the venue.
    Approve {
        /// Approval id (from `list`).
        id: u64,
    },
    /// Reject a waiting order (`approval.denied`).
    Deny {
        /// Approval id (from `list`).
        id: u64,
    },
}

fn no_host(data_dir: &std::path::Path) -> CliError {
    CliError::no_host(anyhow::anyhow!(
        "no host is running with data directory {}",
        data_dir.display()
    ))
}

async fn call(
    data_dir: &std::path::Path,
    op: &str,
    name: Option<String>,
    args: Option<String>,
) -> Result<Option<serde_json::Value>, CliError> {
    match colony_host::admin::call(data_dir, op, name, args).await? {
        None => Ok(None),
        Some(r) if r.ok => Ok(Some(r.result)),
        Some(r) => Err(anyhow::anyhow!(r.error.unwrap_or_default()).into()),
    }
}

pub async fn orders(cmd: OrdersCommand, data_dir: PathBuf) -> CliResult {
    match cmd {
        OrdersCommand::List(args) => list(args, data_dir).await,
        OrdersCommand::KillSwitch { mode, agent } => {
            if colony_host::orders::service::KillMode::parse(&mode).is_none() {
                return Err(CliError::invalid(anyhow::anyhow!(
                    "kill-switch {mode:?}: expected on, off, reducing or halt"
                )));
            }
            let Some(v) = call(&data_dir, "kill-switch", agent.clone(), Some(mode.clone())).await?
            else {
                return Err(no_host(&data_dir));
            };
            println!(
                "kill switch {mode} for {}: {} working orders cancelled",
                agent.as_deref().unwrap_or("every agent"),
                v["cancelled"]
            );
            Ok(())
        }
    }
}

pub async fn approvals(cmd: ApprovalsCommand, data_dir: PathBuf) -> CliResult {
    let (op, arg) = match &cmd {
        ApprovalsCommand::List { .. } => ("approvals", None),
        ApprovalsCommand::Approve { id } => ("approve-order", Some(id.to_string())),
        ApprovalsCommand::Deny { id } => ("deny-order", Some(id.to_string())),
    };
    let Some(v) = call(&data_dir, op, None, arg).await? else {
        return Err(no_host(&data_dir));
    };
    match cmd {
        ApprovalsCommand::List { json: true } => {
            println!("{}", serde_json::to_string_pretty(&v)?)
        }
        ApprovalsCommand::List { json: false } => {
            let mut table = Table::new(&[
                ("id", Align::Right),
                ("time (UTC)", Align::Left),
                ("agent", Align::Left),
                ("client id", Align::Left),
                ("symbol", Align::Left),
                ("side", Align::Left),
                ("qty", Align::Right),
                ("price", Align::Right),
                ("notional", Align::Right),
                ("via", Align::Left),
            ]);
            for a in v.as_array().into_iter().flatten() {
                table.row(vec![
                    a["id"].to_string(),
                    human::utc_ms_json(&a["created"]),
                    p(&a["agent"]),
                    p(&a["client_id"]),
                    p(&a["symbol"]),
                    p(&a["side"]),
                    p(&a["qty"]),
                    a["price"].as_str().unwrap_or("market").to_string(),
                    p(&a["notional"]),
                    p(&a["via"]),
                ]);
            }
            table.print();
        }
        ApprovalsCommand::Approve { id } => println!("approval {id}: approved, order sent"),
        ApprovalsCommand::Deny { id } => println!("approval {id}: denied"),
    }
    Ok(())
}

fn s(v: &serde_json::Value) -> &str {
    v.as_str().unwrap_or("-")
}

/// A cell of text an agent or a venue chose, made printable (`-` when absent).
fn p(v: &serde_json::Value) -> String {
    printable(s(v)).into_owned()
}

async fn list(args: ListArgs, data_dir: PathBuf) -> CliResult {
    if args.rejected {
        return list_rejected(&args, &data_dir).await;
    }
    if let Some(mut v) = call(&data_dir, "orders", None, None).await? {
        if let Some(agent) = &args.agent {
            for key in ["open", "recent", "fills", "positions", "accounts"] {
                if let Some(rows) = v[key].as_array_mut() {
                    rows.retain(|r| r["agent"].as_str() == Some(agent));
                }
            }
        }
        if args.json {
            println!("{}", serde_json::to_string_pretty(&v)?);
            return Ok(());
        }
        println!(
            "venue {}, kill switch {}",
            s(&v["venue"]),
            s(&v["kill_switch"])
        );
        print_orders("open orders", &v["open"]);
        print_orders("recent orders", &v["recent"]);
        println!("fills:");
        let mut fills = Table::new(&[
            ("time (UTC)", Align::Left),
            ("agent", Align::Left),
            ("client id", Align::Left),
            ("symbol", Align::Left),
            ("side", Align::Left),
            ("qty", Align::Right),
            ("price", Align::Right),
            ("fee", Align::Right),
            ("liquidity", Align::Left),
        ])
        .indented("  ");
        for f in v["fills"].as_array().into_iter().flatten() {
            fills.row(vec![
                human::utc_ms_json(&f["ts"]),
                p(&f["agent"]),
                p(&f["client_id"]),
                p(&f["symbol"]),
                p(&f["side"]),
                p(&f["qty"]),
                p(&f["price"]),
                p(&f["fee"]),
                p(&f["liquidity"]),
            ]);
        }
        fills.print();
        println!("positions:");
        let mut positions = Table::new(&[
            ("agent", Align::Left),
            ("symbol", Align::Left),
            ("qty", Align::Right),
            ("avg price", Align::Right),
            ("realised", Align::Right),
            ("unrealised", Align::Right),
            ("fees", Align::Right),
        ])
        .indented("  ");
        for r in v["positions"].as_array().into_iter().flatten() {
            positions.row(vec![
                p(&r["agent"]),
                p(&r["symbol"]),
                p(&r["qty"]),
                p(&r["avg_price"]),
                p(&r["realised_pnl"]),
                p(&r["unrealised_pnl"]),
                p(&r["fees"]),
            ]);
        }
        positions.print();
        println!("accounts:");
        let mut accounts = Table::new(&[
            ("agent", Align::Left),
            ("cash", Align::Right),
            ("equity", Align::Right),
            ("pnl", Align::Right),
        ])
        .indented("  ");
        for a in v["accounts"].as_array().into_iter().flatten() {
            accounts.row(vec![
                p(&a["agent"]),
                p(&a["cash"]),
                p(&a["equity"]),
                p(&a["pnl"]),
            ]);
        }
        accounts.print();
        let rejections: Vec<String> = v["rejections"]
            .as_object()
            .into_iter()
            .flatten()
            .filter(|(_, n)| n.as_u64().unwrap_or(0) > 0)
            .map(|(code, n)| format!("{code} {n}"))
            .collect();
        println!(
            "risk rejections: {}",
            if rejections.is_empty() {
                "none".to_string()
            } else {
                rejections.join(", ")
            }
        );
        return Ok(());
    }
    // No host: the journal.
    let (url, journal) = open_journal(&args, &data_dir).await?;
    let orders = journal
        .orders(&OrderFilter {
            agent: args.agent.clone(),
            limit: Some(args.limit),
            ..OrderFilter::default()
        })
        .await?;
    let fills = journal.fills(args.agent.as_deref(), args.limit).await?;
    if args.json {
        let rows: Vec<_> = orders
            .iter()
            .map(|o| {
                serde_json::to_value(colony_host::orders::service::order_row(
                    &o.state.request.agent,
                    &o.state,
                ))
                .map(|mut r| {
                    r["venue"] = serde_json::Value::String(o.venue.clone());
                    r["sent"] = serde_json::Value::Bool(o.sent);
                    r
                })
            })
            .collect::<Result<_, _>>()?;
        println!(
            "{}",
            serde_json::to_string_pretty(&serde_json::json!({
                "source": "journal",
                "orders": rows,
                "fills": fills.len(),
            }))?
        );
        return Ok(());
    }
    println!(
        "no host running; from the journal {}",
        colony_host::orders::journal::redact_url(&url)
    );
    let rows: Vec<serde_json::Value> = orders
        .iter()
        .filter_map(|o| {
            serde_json::to_value(colony_host::orders::service::order_row(
                &o.state.request.agent,
                &o.state,
            ))
            .ok()
        })
        .collect();
    print_orders("orders", &serde_json::Value::Array(rows));
    println!("{} fills journaled", fills.len());
    Ok(())
}

/// The journal `--journal` names, or `DATA_DIR/orders.db` when it exists.
async fn open_journal(
    args: &ListArgs,
    data_dir: &std::path::Path,
) -> Result<(String, Journal), CliError> {
    let default = data_dir.join("orders.db");
    let url = match &args.journal {
        Some(u) => u.clone(),
        None if default.exists() => format!("sqlite://{}", default.display()),
        None => {
            return Err(CliError::no_host(anyhow::anyhow!(
                "data directory {} has no order journal (and --journal names none)",
                data_dir.display()
            )));
        }
    };
    let journal = Journal::open(&url).await?;
    Ok((url, journal))
}

/// `orders list --rejected`: the journal's refusals, newest first.
async fn list_rejected(args: &ListArgs, data_dir: &std::path::Path) -> CliResult {
    let (url, journal) = open_journal(args, data_dir).await?;
    let refused = journal
        .rejections(&OrderFilter {
            agent: args.agent.clone(),
            limit: Some(args.limit),
            ..OrderFilter::default()
        })
        .await?;
    journal.close().await;
    let rows: Vec<serde_json::Value> = refused
        .iter()
        .map(|r| {
            serde_json::to_value(colony_host::orders::service::order_row(
                &r.state.request.agent,
                &r.state,
            ))
            .map(|mut row| {
                row["venue"] = serde_json::Value::String(r.venue.clone());
                row["message"] = serde_json::Value::String(r.message.clone());
                row
            })
        })
        .collect::<Result<_, _>>()?;
    if args.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&serde_json::json!({
                "source": "journal",
                "rejected": rows,
            }))?
        );
        return Ok(());
    }
    println!(
        "orders refused before the venue, newest first, from the journal {}:",
        colony_host::orders::journal::redact_url(&url)
    );
    let mut table = Table::new(&[
        ("time (UTC)", Align::Left),
        ("agent", Align::Left),
        ("client id", Align::Left),
        ("symbol", Align::Left),
        ("side", Align::Left),
        ("kind", Align::Left),
        ("qty", Align::Right),
        ("price", Align::Right),
        ("reason code", Align::Left),
        ("message", Align::Left),
    ])
    .indented("  ");
    for r in &rows {
        table.row(vec![
            human::utc_ms_json(&r["created"]),
            p(&r["agent"]),
            p(&r["client_id"]),
            p(&r["symbol"]),
            p(&r["side"]),
            p(&r["kind"]),
            p(&r["qty"]),
            p(&r["price"]),
            p(&r["reject_code"]),
            p(&r["message"]),
        ]);
    }
    table.print();
    println!("{} refused", rows.len());
    Ok(())
}

fn print_orders(title: &str, rows: &serde_json::Value) {
    println!("{title}:");
    let mut table = Table::new(&[
        ("time (UTC)", Align::Left),
        ("agent", Align::Left),
        ("client id", Align::Left),
        ("symbol", Align::Left),
        ("side", Align::Left),
        ("kind", Align::Left),
        ("qty", Align::Right),
        ("price", Align::Right),
        ("filled", Align::Right),
        ("avg price", Align::Right),
        ("status", Align::Left),
        ("reason code", Align::Left),
    ])
    .indented("  ");
    for o in rows.as_array().into_iter().flatten() {
        table.row(vec![
            human::utc_ms_json(&o["created"]),
            p(&o["agent"]),
            p(&o["client_id"]),
            p(&o["symbol"]),
            p(&o["side"]),
            p(&o["kind"]),
            p(&o["qty"]),
            p(&o["price"]),
            p(&o["filled_qty"]),
            p(&o["avg_price"]),
            p(&o["status"]),
            p(&o["reject_code"]),
        ]);
    }
    table.print();
}
