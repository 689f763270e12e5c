//! `colony audit`: the audit trail, filtered, as a table or JSON; `colony audit verify`
//! checks the hash chain and exits non-zero at the first broken link.

use std::path::PathBuf;

use clap::{Args, Subcommand};

use super::{CliError, CliResult};
use crate::human::utc_ms;
use crate::table::{Align, Table};
use colony_host::audit::{AuditFilter, CapabilityMatch, Decision};

#[derive(Debug, Args)]
pub struct AuditArgs {
    #[command(subcommand)]
    command: Option<AuditCommand>,
    /// Only this plugin.
    #[arg(long)]
    plugin: Option<String>,
    /// Only this capability: exact (`fs.read:/data`), a kind (`fs.read`) or a prefix (`orders.`).
    #[arg(long)]
    capability: Option<String>,
    /// Only allows or only denies.
    #[arg(long)]
    decision: Option<String>,
    /// Only records newer than this: a duration ago (`90s`, `15m`, `2h`, `7d`) or ns since the epoch.
    #[arg(long)]
    since: Option<String>,
    /// Most records shown (newest first).
    #[arg(long, default_value_t = 100)]
    limit: u64,
    /// Print JSON.
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Subcommand)]
enum AuditCommand {
    /// Check the hash chain: report the first edited, deleted or missing record.
    Verify {
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
}

pub async fn audit(args: AuditArgs, data_dir: PathBuf, audit_db: Option<String>) -> CliResult {
    let store = super::grants::open_store(&data_dir, audit_db.as_deref()).await?;
    if let Some(AuditCommand::Verify { json }) = args.command {
        let report = store.verify().await?;
        if json {
            println!("{}", serde_json::to_string_pretty(&report)?);
        } else {
            println!("records checked: {}", report.records);
            println!(
                "head: seq {} blake3:{}",
                report.verified_head.seq, report.verified_head.hash
            );
        }
        return match report.first_broken {
            None => {
                if !json {
                    println!("chain intact");
                }
                Ok(())
            }
            Some(b) => Err(CliError::invalid(anyhow::anyhow!(
                "audit chain broken at record {}: {}",
                b.seq,
                b.reason
            ))),
        };
    }
    let decision = match args.decision.as_deref() {
        None => None,
        Some(d) => Some(Decision::parse(d).ok_or_else(|| {
            CliError::invalid(anyhow::anyhow!(
                "--decision must be allow or deny, not {d:?}"
            ))
        })?),
    };
    let since_ns = match args.since.as_deref() {
        None => None,
        Some(s) => Some(parse_since(s).map_err(CliError::invalid)?),
    };
    let filter = AuditFilter {
        plugin: args.plugin,
        capability: args.capability.as_deref().map(CapabilityMatch::parse),
        decision,
        since_ns,
        limit: Some(args.limit),
        ..AuditFilter::default()
    };
    let entries = store.query(&filter).await?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&entries)?);
        return Ok(());
    }
    let mut table = Table::new(&[
        ("seq", Align::Right),
        ("time (UTC)", Align::Left),
        ("kind", Align::Left),
        ("plugin", Align::Left),
        ("capability", Align::Left),
        ("decision", Align::Left),
        ("actor / detail", Align::Left),
    ]);
    for e in entries {
        let who = [e.actor.as_str(), e.detail.as_str()]
            .iter()
            .filter(|s| !s.is_empty())
            .copied()
            .collect::<Vec<_>>()
            .join(" ");
        // Every field through `printable`: a record is one line, whatever a name, an actor
        // or a detail holds (a newline would forge a row, a bidi override reorder one).
        table.row(vec![
            e.seq.to_string(),
            utc_ms(e.ts_ns),
            super::printable(e.kind.as_str()).into_owned(),
            super::printable(&e.plugin).into_owned(),
            super::printable(&e.capability).into_owned(),
            e.decision.map(|d| d.as_str()).unwrap_or("-").to_string(),
            super::printable(&who).into_owned(),
        ]);
    }
    table.print();
    Ok(())
}

/// `90s`, `15m`, `2h`, `7d` ago, or nanoseconds since the epoch.
fn parse_since(s: &str) -> Result<i64, anyhow::Error> {
    let now = colony_host::audit::now_ns();
    let unit = |c: char| match c {
        's' => Some(1_000_000_000i64),
        'm' => Some(60 * 1_000_000_000),
        'h' => Some(3_600 * 1_000_000_000),
        'd' => Some(86_400 * 1_000_000_000),
        _ => None,
    };
    if let Some(last) = s.chars().last()
        && let Some(mult) = unit(last)
    {
        let n: i64 = s[..s.len() - 1]
            .parse()
            .map_err(|_| anyhow::anyhow!("--since {s:?}: expected a number before {last:?}"))?;
        return Ok(now - n.saturating_mul(mult));
    }
    s.parse().map_err(|_| {
        anyhow::anyhow!(
            "--since {s:?}: expected a duration like 15m or nanoseconds since the epoch"
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn since_accepts_durations_and_ns() {
        let now = colony_host::audit::now_ns();
        let t = parse_since("15m").unwrap();
        assert!((now - t - 900_000_000_000).abs() < 5_000_000_000);
        assert_eq!(parse_since("123").unwrap(), 123);
        assert!(parse_since("soon").is_err());
        assert!(parse_since("xm").is_err());
    }
}
