//! `colony run`: start a host on a plugins folder, watch it, tick agents' timers, serve the
//! admin socket, and print a report when it stops (Ctrl-C, SIGTERM or `--duration`).

use std::path::PathBuf;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use clap::Args;

use super::{CliError, CliResult};
use crate::agent::Event;
use crate::config::HostConfig;
use crate::market::feed::{FeedSpec, Speed};

use crate::supervisor::Host;

#[derive(Debug, Args)]
pub struct RunArgs {
    /// Configuration file (colony.toml).
    #[arg(long)]
    config: Option<PathBuf>,
    /// Plugins folder to load and watch. Without it (and without `plugins` in the config),
    /// the shipped demo plugins are installed into DATA_DIR/plugins and run for 5 seconds.
    #[arg(long)]
    plugins: Option<PathBuf>,
    /// Stop after this many seconds (default: run until Ctrl-C; 5 in demo mode).
    #[arg(long)]
    duration: Option<f64>,
    /// Fire agents' on-timer every N milliseconds (0 disables).
    #[arg(long)]
    tick_ms: Option<u64>,
    /// Do not use the compiled-component cache.
    #[arg(long)]
    no_cache: bool,
    /// Development only: grant every new or changed plugin what its manifest requests.
    #[arg(long)]
    trust_on_first_use: bool,
    /// Message bus: `local` (in-process only, the default) or `nats://HOST:PORT` to exchange
    /// messages, requests and gathers with the other hosts on that NATS server.
    #[arg(long, value_name = "local|nats://HOST:PORT")]
    bus: Option<String>,
    /// Subject prefix on NATS (default `colony`): hosts that share it share one bus.
    #[arg(long, value_name = "PREFIX")]
    bus_prefix: Option<String>,
    /// Market data: `replay` (the shipped real data; the default), `replay:FILE[,FILE…]`,
    /// `synthetic[:SEED[:SYMBOLS]]`, `okx[:INST,…]` (live OKX public feed) or `none`.
    #[arg(long, value_name = "SOURCE")]
    feed: Option<String>,
    /// Replay speed: `max` (default; lockstep with the agents, repeatable), `fast` (no
    /// lockstep: higher throughput, nothing dropped, not repeatable) or N times the recorded
    /// pace.
    #[arg(long, value_name = "max|fast|N")]
    speed: Option<String>,
}

pub async fn run(args: RunArgs, data_dir: PathBuf, audit_db: Option<String>) -> CliResult {
    let mut config = match &args.config {
        Some(path) => HostConfig::load(path, data_dir.clone()).map_err(CliError::invalid)?,
        None => HostConfig::new(data_dir.clone()),
    };
    let demo = args.plugins.is_none() && !config.plugins_configured;
    if let Some(p) = args.plugins {
        config.plugins_dir = p;
    }
    if let Some(t) = args.tick_ms {
        config.tick_ms = t;
    }
    config.compile_cache = !args.no_cache;
    config.trust_on_first_use = args.trust_on_first_use;
    match &args.feed {
        Some(f) => {
            config.feed = FeedSpec::parse(f).map_err(|e| CliError::invalid(anyhow::anyhow!(e)))?
        }
        None if !config.feed_configured => {
            config.feed = Some(FeedSpec::Embedded);
        }
        None => {}
    }
    if let Some(s) = &args.speed {
        config.speed = Speed::parse(s).map_err(|e| CliError::invalid(anyhow::anyhow!(e)))?;
    }
    match (&args.bus, &args.bus_prefix) {
        (Some(url), prefix) => {
            config.nats = crate::config::parse_bus(url, prefix.as_deref())
                .map_err(|e| CliError::invalid(anyhow::anyhow!("--bus: {e}")))?;
        }
        (None, Some(prefix)) => match &mut config.nats {
            Some(n) => {
                crate::config::parse_bus(&n.url, Some(prefix))
                    .map_err(|e| CliError::invalid(anyhow::anyhow!("--bus-prefix: {e}")))?;
                n.prefix.clone_from(prefix);
            }
            None => {
                return Err(CliError::invalid(anyhow::anyhow!(
                    "--bus-prefix needs --bus nats://HOST:PORT (or [bus] url in the config)"
                )));
            }
        },
        (None, None) => {}
    }
    if audit_db.is_some() {
        config.audit_db = audit_db;
    }
    if demo {
        let written = crate::embedded::install(&config.plugins_dir)?;
        for f in written {
            tracing::info!(file = %f.display(), "installed shipped plugin");
        }
    }
    if !config.plugins_dir.is_dir() {
        return Err(CliError::invalid(anyhow::anyhow!(
            "plugins folder {} does not exist",
            config.plugins_dir.display()
        )));
    }
    let duration = args
        .duration
        .or(demo.then_some(5.0))
        .map(Duration::from_secs_f64);

    if let Some(f @ FeedSpec::Files(_)) = &config.feed {
        // Checked here too, so a bad data file is an invalid-input exit naming file and line.
        f.load(config.book_depth)
            .map_err(|e| CliError::invalid(anyhow::anyhow!("--feed: {e}")))?;
    }
    let host = Host::start(config).await?;
    let feed_task = host.start_feed();
    let _watcher = host.watch()?;
    let admin = crate::admin::serve(host.clone()).await?;

    if demo {
        for tool in host.tools().await {
            match host.invoke_tool(&tool.name, r#"{"hello":"colony"}"#).await {
                Ok(out) => println!("tool {} answered: {out}", tool.name),
                Err(e) => println!("tool {} failed: {e}", tool.name),
            }
        }
    }

    let tick_ms = host.config().tick_ms;
    let ticker = {
        let host = host.clone();
        tokio::spawn(async move {
            if tick_ms == 0 {
                return;
            }
            let mut interval = tokio::time::interval(Duration::from_millis(tick_ms));
            interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
            loop {
                interval.tick().await;
                let now = SystemTime::now()
                    .duration_since(UNIX_EPOCH)
                    .map(|d| d.as_nanos() as u64)
                    .unwrap_or(0);
                host.broadcast(Event::Timer(now)).await;
            }
        })
    };

    let stop = async {
        let mut term =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
        let term = async {
            match term.as_mut() {
                Some(t) => {
                    t.recv().await;
                }
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            _ = tokio::signal::ctrl_c() => "interrupted",
            _ = term => "terminated",
            _ = async { match duration { Some(d) => tokio::time::sleep(d).await, None => std::future::pending().await } } => "duration reached",
        }
    };
    let why = stop.await;
    tracing::info!(reason = why, "stopping");
    ticker.abort();
    let feed_summary = match (&feed_task, host.market()) {
        (Some(task), Some(m)) => {
            if !task.is_finished() {
                task.abort();
            }
            Some(format!(
                "feed {}: {} events published, {} data-quality issues{}",
                m.venue(),
                m.published(),
                m.issues(),
                if task.is_finished() {
                    " (finished)"
                } else {
                    ""
                }
            ))
        }
        _ => None,
    };
    admin.abort();
    let rejected = host.rejected().await;
    // After shutdown, so the events agents finished while stopping are counted.
    let plugins = host.shutdown().await;
    let _ = std::fs::remove_file(crate::admin::socket_path(&host.config().data_dir));

    println!("colony run report ({why})");
    println!(
        "{:<24} {:<6} {:>9} {:>7} {:>8}  last error",
        "plugin", "kind", "delivered", "failed", "restarts"
    );
    for p in &plugins {
        println!(
            "{:<24} {:<6} {:>9} {:>7} {:>8}  {}",
            p.info.name,
            p.info.kind,
            p.delivered,
            p.failed,
            p.restarts,
            p.last_error.as_deref().unwrap_or("-")
        );
    }
    for r in &rejected {
        println!("refused {}: {}", r.file.display(), r.reason);
    }
    if let Some(f) = feed_summary {
        println!("{f}");
    }
    Ok(())
}
