//! `colony status`: what the running host is doing, per plugin.

use std::path::PathBuf;

use clap::Args;

use super::{CliError, CliResult, printable};
use crate::human;
use crate::table::{Align, Table};

#[derive(Debug, Args)]
pub struct StatusArgs {
    /// Print JSON.
    #[arg(long)]
    json: bool,
}

pub async fn status(args: StatusArgs, data_dir: PathBuf) -> CliResult {
    let Some(resp) = colony_host::admin::call(&data_dir, "status", None, None).await? else {
        return Err(CliError::no_host(anyhow::anyhow!(
            "no host is running with data directory {}",
            data_dir.display()
        )));
    };
    if !resp.ok {
        return Err(anyhow::anyhow!(resp.error.unwrap_or_default()).into());
    }
    if args.json {
        println!("{}", serde_json::to_string_pretty(&resp.result)?);
        return Ok(());
    }
    println!(
        "plugins folder: {}",
        resp.result["plugins_dir"].as_str().unwrap_or("?")
    );
    let mut table = Table::new(&[
        ("plugin", Align::Left),
        ("kind", Align::Left),
        ("state", Align::Left),
        ("delivered", Align::Right),
        ("failed", Align::Right),
        ("restarts", Align::Right),
        ("mailbox", Align::Right),
        ("dropped", Align::Right),
        ("refused", Align::Right),
        ("fuel", Align::Right),
        ("memory", Align::Right),
        ("busy", Align::Right),
        ("last error", Align::Left),
    ]);
    for p in resp.result["plugins"].as_array().into_iter().flatten() {
        let n = |k: &str| p[k].as_u64().unwrap_or(0);
        table.row(vec![
            printable(p["name"].as_str().unwrap_or("?")).into_owned(),
            p["kind"].as_str().unwrap_or("?").to_string(),
            p["state"].as_str().unwrap_or("?").to_string(),
            n("delivered").to_string(),
            n("failed").to_string(),
            n("restarts").to_string(),
            n("mailbox_depth").to_string(),
            (n("bus_dropped") + n("paused_dropped")).to_string(),
            n("bus_refused").to_string(),
            human::count(n("fuel_used"), ""),
            human::count(n("memory_bytes"), "B"),
            human::duration_ms(p["busy_ms"].as_f64().unwrap_or(0.0)),
            printable(p["last_error"].as_str().unwrap_or("-")).into_owned(),
        ]);
    }
    table.print();
    let bus = &resp.result["bus"];
    println!(
        "bus: {} published, {} delivered, {} dead letters (watch with `colony bus sub '_DEAD.>'`), {} late replies",
        bus["published"], bus["delivered"], bus["dead_letters"], bus["late_replies"]
    );
    let orders = &resp.result["orders"];
    if !orders.is_null() {
        let c = &orders["counters"];
        println!(
            "orders on {}: {} placed, {} submitted, {} rejected, {} fills, {} open, {} waiting approval, \
             {} journal errors, {} unresolved",
            orders["venue"].as_str().unwrap_or("?"),
            c["placed"],
            c["submitted"],
            c["rejected"],
            c["fills"],
            orders["open_orders"],
            orders["waiting_approval"],
            orders["journal_errors"],
            orders["unresolved"]
        );
        let b = &orders["breaker"];
        if !b.is_null() {
            println!(
                "venue circuit breaker: {} ({} consecutive failures, opened {} times, {} refused while open)",
                b["state"].as_str().unwrap_or("?"),
                b["consecutive_failures"],
                b["opened_count"],
                b["rejected_count"]
            );
        }
        for k in orders["kill_switches"].as_array().into_iter().flatten() {
            println!(
                "kill switch {} for {}",
                k[1].as_str().unwrap_or("?"),
                k[0].as_str().unwrap_or("?")
            );
        }
        let limits: Vec<String> = orders["limits"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|l| {
                format!(
                    "{} {}{}",
                    l["key"].as_str().unwrap_or("?"),
                    l["value"].as_str().unwrap_or("?"),
                    if l["source"] == "default" {
                        " (default)"
                    } else {
                        ""
                    }
                )
            })
            .collect();
        println!(
            "risk limits for every agent: {}",
            if limits.is_empty() {
                "none".to_string()
            } else {
                limits.join(", ")
            }
        );
        if orders["require_known_instruments"].as_bool() == Some(true) {
            println!(
                "instruments: {} known (from the feed, orders.instruments and the venue's list); orders for others are refused (risk.unknown-instrument)",
                orders["known_instruments"]
            );
        }
        let listed = &orders["venue_instruments"];
        match listed["state"].as_str() {
            Some("listed") => println!(
                "venue instruments: {} listed by {}",
                listed["count"],
                orders["venue"].as_str().unwrap_or("?")
            ),
            Some("asking") => println!("venue instruments: asked for, no answer yet"),
            Some("failed") => println!(
                "venue instruments: not listed ({}); asking again in the background",
                listed["error"].as_str().unwrap_or("?")
            ),
            _ => {}
        }
    }
    let market = &resp.result["market"];
    if !market.is_null() {
        println!(
            "market feed {}: {} events published, {} data-quality issues",
            market["venue"].as_str().unwrap_or("?"),
            market["published"],
            market["issues"]
        );
        let mut symbols = Table::new(&[
            ("symbol", Align::Left),
            ("events", Align::Right),
            ("last update (UTC)", Align::Left),
            ("issues", Align::Right),
            ("stale", Align::Left),
        ])
        .indented("  ");
        for s in market["symbols"].as_array().into_iter().flatten() {
            symbols.row(vec![
                printable(s["symbol"].as_str().unwrap_or("?")).into_owned(),
                s["events"].to_string(),
                human::utc_ms_json(&s["last_update"]),
                s["issues"].to_string(),
                if s["stale"].as_bool() == Some(true) {
                    "STALE".into()
                } else {
                    "-".into()
                },
            ]);
        }
        if !symbols.is_empty() {
            symbols.print();
        }
    }
    let nats = &resp.result["nats"];
    if !nats.is_null() {
        println!(
            "nats: {} prefix {} {} ({} connects, {} disconnects); {} sent, {} received, {} refused (queue full), {} failed, {} malformed; this host is {}{}",
            nats["url"].as_str().unwrap_or("?"),
            nats["prefix"].as_str().unwrap_or("?"),
            if nats["connected"].as_bool() == Some(true) {
                "connected"
            } else {
                "DISCONNECTED"
            },
            nats["connects"],
            nats["disconnects"],
            nats["sent"],
            bus["received"],
            bus["forward_refused"],
            nats["send_failed"],
            nats["malformed"],
            nats["host_id"].as_str().unwrap_or("?"),
            nats["last_error"]
                .as_str()
                .map(|e| format!("; last error: {e}"))
                .unwrap_or_default(),
        );
    }
    if let Some(n) = resp.result["audit_dropped"].as_u64().filter(|n| *n > 0) {
        println!(
            "WARNING: {n} unacknowledged audit records were dropped (queue full or write failed)"
        );
    }
    for r in resp.result["rejected"].as_array().into_iter().flatten() {
        println!(
            "refused {}: {}",
            r["file"].as_str().unwrap_or("?"),
            r["reason"].as_str().unwrap_or("?")
        );
    }
    Ok(())
}
