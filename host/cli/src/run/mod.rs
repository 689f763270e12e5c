//! `colony run`: start a host on a plugins folder, watch it, serve the admin socket, and print
//! a report when it stops (Ctrl-C, SIGTERM, `--duration`, or in the demo the replay's end).
//!
//! With no plugins folder (`--plugins` or `plugins` in the config) it runs the demo: the
//! plugins shipped in the binary (the trading swarm) are installed into DATA_DIR/plugins and
//! granted what their manifests request, the embedded real market data is replayed at max
//! speed with a progress bar, and the run ends with the report (`--report FILE.html` also
//! writes it as a page with the equity curve).
//!
//! The report starts with whether the run was repeatable ([`Repeatability::judge`]);
//! `--strict` turns a run that was not into exit code 6. The equity curve is sampled by the
//! replay driver at replay times ([`Host::equity_curve`]), or every 10 ms of wall time when no
//! lockstep replay drives the clock.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use super::report::{
    AgentLine, DeniedLine, FeedAgentLine, FeedLine, LifecycleLine, Repeatability, RunFacts,
    RunReport, TradingLine, WallLine, render_text, write_html,
};
use super::{CliError, CliResult};
use colony_host::agent::Event;
use colony_host::audit::{AuditFilter, AuditKind, Decision};
use colony_host::market::feed::{FeedSpec, Speed};
use colony_host::supervisor::Host;

mod flags;

pub use flags::RunArgs;
use flags::RunConfig;

pub async fn run(args: RunArgs, data_dir: PathBuf, audit_db: Option<String>) -> CliResult {
    let RunConfig {
        host: config,
        demo,
        duration,
        report_html,
        report_json,
        strict,
        progress,
    } = args.resolve(data_dir, audit_db)?;
    // Before anything touches the data directory (token, plugins, init, audit): one host
    // per directory.
    let _lock = colony_host::datadir::DataDirLock::acquire_host(&config.data_dir)
        .map_err(CliError::locked)?;
    if demo {
        let written = colony_host::embedded::install(&config.plugins_dir)?;
        for f in written {
            tracing::info!(file = %f.display(), "installed shipped plugin");
        }
    }
    // The data directory's own folder is made when missing (as `colony plugins dir` does);
    // another folder must exist, so a mistyped path is not silently watched while empty.
    if !config.plugins_dir.is_dir() && config.plugins_dir == config.data_dir.join("plugins") {
        super::plugins::ensure_folder(&config.data_dir)?;
    }
    if !config.plugins_dir.is_dir() {
        return Err(CliError::invalid(anyhow::anyhow!(
            "plugins folder {} does not exist",
            config.plugins_dir.display()
        )));
    }

    if let Some(f @ FeedSpec::Files(_)) = &config.feed {
        // Checked here too, so a bad data file is an invalid-input exit naming file and line.
        f.load(config.book_depth)
            .map_err(|e| CliError::invalid(anyhow::anyhow!("--feed: {e}")))?;
    }
    let started = Instant::now();
    let since_ns = colony_host::audit::now_ns();
    let host = Host::start(config).await?;
    let first_ts = host.clock().now_ns();
    // Accounts restored from the journal (a data directory used before) start where they
    // were; the run's PnL is measured from there.
    let opening = host
        .orders()
        .map(|o| (o.total_equity(), o.report().accounts.len()));
    let total_events = host.replay_len().await;
    // Only a recorded replay waits for the agents after each event (the synthetic generator
    // runs free, as a load generator).
    let lockstep = host.clock().is_virtual()
        && matches!(
            host.config().feed,
            Some(FeedSpec::Embedded | FeedSpec::Files(_))
        )
        && host.config().speed != Speed::Fast;
    if host.config().seed.is_some() && !host.clock().is_virtual() {
        tracing::warn!("--seed has no effect without a replay: agents read the OS's randomness");
    }
    let equity = EquitySampler::start(&host, lockstep);
    // The watcher and the admin socket first: a feed that waits for an agent gets it from
    // the folder, or from an operator's grant.
    let _watcher = host.watch()?;
    let admin = colony_host::admin::serve(host.clone()).await?;
    let feed_task = start_feed(&host);
    let progress = progress
        .then(|| Progress::start(&host, total_events))
        .flatten();

    // In a replay the tick runs on the replay's clock (fired by the driver with the agents'
    // timers); otherwise on the wall clock.
    let tick_ms = host.config().tick_ms;
    let wall_ticks_ms = match host.clock().is_virtual() {
        true => {
            host.timers().set_tick(tick_ms);
            0
        }
        false => tick_ms,
    };
    let ticker = {
        let host = host.clone();
        tokio::spawn(async move {
            if wall_ticks_ms == 0 {
                return;
            }
            let mut interval = tokio::time::interval(Duration::from_millis(wall_ticks_ms));
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

    // The demo ends when the replay has played and the agents have handled it.
    let feed_done = {
        let watch = demo && feed_task.is_some();
        let host = host.clone();
        let finished = feed_task.as_ref().map(|t| t.abort_handle());
        async move {
            if !watch {
                return std::future::pending().await;
            }
            while finished.as_ref().is_some_and(|h| !h.is_finished()) {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            host.settle().await;
        }
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
            _ = feed_done => "replay finished",
            _ = async { match duration { Some(d) => tokio::time::sleep(d).await, None => std::future::pending().await } } => "duration reached",
        }
    };
    let why = stop.await;
    tracing::info!(reason = why, "stopping");
    if let Some(p) = &progress {
        p.finish();
    }
    ticker.abort();
    let feed_finished = feed_task.as_ref().is_some_and(|t| t.is_finished());
    if let Some(task) = &feed_task
        && !task.is_finished()
    {
        task.abort();
    }
    admin.abort();
    let curve = equity.stop(&host);
    let rejected = host.rejected().await;
    // After shutdown, so the events agents finished while stopping are counted.
    let plugins = host.shutdown().await;
    let _ = std::fs::remove_file(colony_host::admin::socket_path(&host.config().data_dir));

    let wall = started.elapsed().as_secs_f64();
    let mut report = RunReport {
        reason: why.to_string(),
        seed: host.clock().seed(),
        wall: WallLine {
            secs: wall,
            ..WallLine::default()
        },
        ..RunReport::default()
    };
    if let Some(m) = host.market() {
        let events = m.published();
        report.feed = Some(FeedLine {
            venue: m.venue().to_string(),
            events,
            issues: m.issues(),
            finished: feed_finished,
            first_ts,
            last_ts: host.clock().now_ns(),
            agents: plugins
                .iter()
                .filter(|p| p.md_routed > 0)
                .map(|p| FeedAgentLine {
                    agent: p.info.name.clone(),
                    published: p.md_routed,
                    delivered: p.md_taken,
                    dropped: p.bus_dropped,
                })
                .collect(),
        });
        report.wall.events_per_sec = Some(if wall > 0.0 {
            events as f64 / wall
        } else {
            0.0
        });
    }
    if let Some(o) = host.orders() {
        let r = o.report();
        // Accounts opened during the run start at the paper balance.
        let dec = |s: &str| s.parse::<rust_decimal::Decimal>().unwrap_or_default();
        let end: rust_decimal::Decimal = r.accounts.iter().map(|a| dec(&a.equity)).sum();
        let (open_equity, open_accounts) = opening.unwrap_or_default();
        let new_accounts = r.accounts.len().saturating_sub(open_accounts);
        let start = open_equity
            + o.config().paper.initial_balance * rust_decimal::Decimal::from(new_accounts);
        let pnl = end - start;
        let mut curve = curve.clone();
        if !curve.is_empty() {
            curve.insert(0, (first_ts, start));
        }
        report.trading = Some(TradingLine {
            venue: r.venue.clone(),
            start_equity: start.normalize().to_string(),
            end_equity: end.normalize().to_string(),
            pnl: pnl.normalize().to_string(),
            equity_curve: curve
                .iter()
                .map(|(t, e)| (*t, e.normalize().to_string()))
                .collect(),
            orders_placed: r.counters.placed,
            orders_rejected: r.counters.rejected,
            fills: r.counters.fills,
            cancels: r.counters.cancels,
            rejections: r.rejections.into_iter().filter(|(_, n)| *n > 0).collect(),
            accounts: r
                .accounts
                .iter()
                .map(|a| (a.agent.clone(), a.equity.clone(), a.pnl.clone()))
                .collect(),
            positions: r
                .positions
                .iter()
                .map(|p| {
                    (
                        p.agent.clone(),
                        p.symbol.clone(),
                        p.qty.clone(),
                        p.avg_price.clone(),
                        p.realised_pnl.clone(),
                        p.unrealised_pnl.clone(),
                    )
                })
                .collect(),
        });
    }
    report.agents = plugins
        .iter()
        .map(|p| AgentLine {
            name: p.info.name.clone(),
            kind: p.info.kind.to_string(),
            state: p.state.clone(),
            delivered: p.delivered,
            failed: p.failed,
            restarts: p.restarts,
            sleeps: p.sleeps,
            dropped: p.bus_dropped,
            refused: p.refused + p.bus_refused,
            expired: p.bus_expired,
            fuel: p.fuel_used,
            last_error: p.last_error.clone(),
        })
        .collect();
    report.wall.busy_ms = plugins
        .iter()
        .filter(|p| p.info.kind.to_string() == "agent")
        .map(|p| (p.info.name.clone(), p.busy_ms))
        .collect();
    report.refused = rejected
        .iter()
        .map(|r| format!("{}: {}", r.file.display(), r.reason))
        .collect();
    let audit = host.audit();
    if let Err(e) = audit.writer().flush().await {
        tracing::warn!(error = %e, "audit not flushed before the report");
    }
    let mut lifecycle = Vec::new();
    for kind in ["lifecycle", "breaker"] {
        let records = audit
            .query(&AuditFilter {
                kind: Some(AuditKind::Other(kind.into())),
                since_ns: Some(since_ns),
                ..AuditFilter::default()
            })
            .await?;
        lifecycle.extend(records.into_iter().map(|e| LifecycleLine {
            plugin: e.plugin,
            kind: kind.to_string(),
            detail: e.detail,
            ts: u64::try_from(e.ts_ns).unwrap_or(0),
        }));
    }
    lifecycle.sort_by_key(|l| l.ts);
    report.wall.lifecycle = lifecycle;
    let denied = audit
        .query(&AuditFilter {
            decision: Some(Decision::Deny),
            since_ns: Some(since_ns),
            ..AuditFilter::default()
        })
        .await?;
    // Per capability: a denial's text may add the limit it broke (`… max_notional 15000 < …`).
    let mut counts: BTreeMap<(String, String), u64> = BTreeMap::new();
    for e in denied {
        let capability = e
            .capability
            .split(' ')
            .next()
            .unwrap_or_default()
            .to_string();
        *counts.entry((e.plugin, capability)).or_default() += 1;
    }
    report.denied = counts
        .into_iter()
        .map(|((plugin, capability), count)| DeniedLine {
            plugin,
            capability,
            count,
        })
        .collect();

    let facts = RunFacts {
        replay: host.clock().is_virtual(),
        lockstep,
        remote_bus: host.nats_status().is_some(),
        live_venue: !matches!(
            host.config().orders.venue,
            colony_host::orders::config::VenueChoice::Paper
                | colony_host::orders::config::VenueChoice::None
        ),
        settle_timeouts: host.settle_timeouts(),
    };
    report.repeatability = Repeatability::judge(&facts, &report);

    print!("{}", render_text(&report));
    if let Some(path) = &report_html {
        write_html(&report, path)
            .map_err(|e| anyhow::anyhow!("cannot write {}: {e}", path.display()))?;
        println!("report written to {}", path.display());
    }
    if let Some(path) = &report_json {
        std::fs::write(path, serde_json::to_vec_pretty(&report)?)
            .map_err(|e| anyhow::anyhow!("cannot write {}: {e}", path.display()))?;
    }
    if strict && !report.repeatability.repeatable {
        return Err(CliError::not_repeatable(anyhow::anyhow!(
            "the run was not repeatable (--strict): {}",
            report
                .repeatability
                .reasons
                .iter()
                .map(|n| match &n.agent {
                    Some(a) => format!("{a}: {}", n.reason),
                    None => n.reason.clone(),
                })
                .collect::<Vec<_>>()
                .join("; ")
        )));
    }
    Ok(())
}

/// Starts the feed. A recorded or synthetic one starts only once an agent runs, so an agent
/// dropped into an empty folder sees it from its first event; a live feed starts at once.
/// Either way the log says which plugin files were refused and so miss it.
fn start_feed(host: &Arc<Host>) -> Option<tokio::task::JoinHandle<()>> {
    host.market()?;
    let waits = !matches!(host.config().feed.as_ref()?, FeedSpec::Okx(_));
    let host = host.clone();
    Some(tokio::spawn(async move {
        if waits {
            wait_for_an_agent(&host).await;
        } else {
            warn_refused(&host).await;
        }
        if let Some(feed) = host.start_feed() {
            // Aborting this task (at stop) aborts the feed with it.
            let feed = AbortOnDrop(feed);
            let _ = feed.wait().await;
        }
    }))
}

/// Waits (polling every 100 ms) until an agent runs and the folder pass that loaded it is
/// over, saying once why it waits.
async fn wait_for_an_agent(host: &Host) {
    let mut told = false;
    loop {
        let agents = host
            .plugins()
            .await
            .iter()
            .filter(|p| p.info.kind.to_string() == "agent")
            .count();
        if agents > 0 {
            // Files copied together are loaded in one pass: let it finish.
            host.sync_done().await;
            if told {
                tracing::warn!("an agent is running: the feed starts");
            }
            warn_refused(host).await;
            return;
        }
        if !told {
            let refused = host.rejected().await;
            let why = match refused.len() {
                0 => String::new(),
                n => format!(
                    " ({n} refused: {})",
                    refused
                        .iter()
                        .map(|r| format!("{}: {}", r.file.display(), r.reason))
                        .collect::<Vec<_>>()
                        .join("; ")
                ),
            };
            tracing::warn!(
                "no agent runs in the plugins folder {}{why}; the feed waits until one is loaded \
                 (copy an agent's .wasm there, or grant and approve a refused one)",
                host.config().plugins_dir.display()
            );
            told = true;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Logs the refused plugin files the feed starts without.
async fn warn_refused(host: &Host) {
    let refused = host.rejected().await;
    if !refused.is_empty() {
        tracing::warn!(
            "the feed starts without {} refused plugin files: {}",
            refused.len(),
            refused
                .iter()
                .map(|r| format!("{}: {}", r.file.display(), r.reason))
                .collect::<Vec<_>>()
                .join("; ")
        );
    }
}

/// A task aborted when this is dropped.
struct AbortOnDrop<T>(tokio::task::JoinHandle<T>);

impl<T> AbortOnDrop<T> {
    async fn wait(mut self) -> Result<T, tokio::task::JoinError> {
        (&mut self.0).await
    }
}

impl<T> Drop for AbortOnDrop<T> {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// The venue's total equity over the run: in a lockstep replay the driver's samples, taken at
/// replay times; otherwise sampled against the host clock every 10 ms of wall time.
struct EquitySampler {
    samples: Arc<Mutex<Vec<(u64, rust_decimal::Decimal)>>>,
    task: Option<tokio::task::JoinHandle<()>>,
    lockstep: bool,
}

impl EquitySampler {
    fn start(host: &Arc<Host>, lockstep: bool) -> EquitySampler {
        let samples = Arc::new(Mutex::new(Vec::new()));
        let task = host.orders().filter(|_| !lockstep).map(|orders| {
            let orders = orders.clone();
            let clock = host.clock().clone();
            let samples = samples.clone();
            tokio::spawn(async move {
                loop {
                    sample(&samples, clock.now_ns(), orders.total_equity());
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
            })
        });
        EquitySampler {
            samples,
            task,
            lockstep,
        }
    }

    /// Stops sampling, takes a last sample, and returns the curve.
    fn stop(self, host: &Host) -> Vec<(u64, rust_decimal::Decimal)> {
        if self.lockstep {
            return host.equity_curve();
        }
        if let Some(t) = &self.task {
            t.abort();
        }
        if let Some(o) = host.orders() {
            sample(&self.samples, host.clock().now_ns(), o.total_equity());
        }
        self.samples.lock().map(|s| s.clone()).unwrap_or_default()
    }
}

fn sample(
    samples: &Mutex<Vec<(u64, rust_decimal::Decimal)>>,
    ts: u64,
    equity: rust_decimal::Decimal,
) {
    // No account has traded yet: nothing to chart.
    if equity.is_zero() {
        return;
    }
    if let Ok(mut s) = samples.lock()
        && s.last().is_none_or(|(t, _)| *t < ts)
    {
        s.push((ts, equity));
    }
}

/// The progress bar over the replay (on stderr, only when it is a terminal).
struct Progress {
    bar: indicatif::ProgressBar,
    task: tokio::task::JoinHandle<()>,
}

impl Progress {
    fn start(host: &Arc<Host>, total: Option<usize>) -> Option<Progress> {
        use std::io::IsTerminal;
        let market = host.market()?.clone();
        if !std::io::stderr().is_terminal() {
            return None;
        }
        let bar = match total {
            Some(n) => indicatif::ProgressBar::new(n as u64),
            None => indicatif::ProgressBar::new_spinner(),
        };
        let style = indicatif::ProgressStyle::with_template(
            "{spinner} replay [{bar:30}] {human_pos}/{human_len} events, {elapsed} {msg}",
        )
        .map(|s| s.progress_chars("=> "));
        if let Ok(style) = style {
            bar.set_style(style);
        }
        let clock = host.clock().clone();
        let b = bar.clone();
        let task = tokio::spawn(async move {
            loop {
                b.set_position(market.published());
                let t = colony_host::market::replay::format_utc(clock.now_ns());
                b.set_message(t.get(..16).unwrap_or(&t).replacen('T', " ", 1));
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        });
        Some(Progress { bar, task })
    }

    fn finish(&self) {
        self.task.abort();
        self.bar.finish_and_clear();
    }
}
