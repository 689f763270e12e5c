//! `colony run`'s flags and their resolution, once, into what the run uses: the
//! [`HostConfig`] (the configuration file with the flags on top) and the few settings that
//! are the command's own ([`RunConfig`]). Where a setting came from stays here: the host's
//! configuration does not say whether the file or a flag chose it.

use std::path::PathBuf;
use std::time::Duration;

use clap::Args;

use crate::CliError;
use colony_host::config::{FileChoices, HostConfig};
use colony_host::market::feed::{FeedSpec, Speed};

#[derive(Debug, Args)]
pub struct RunArgs {
    /// Configuration file (colony.toml).
    #[arg(long)]
    config: Option<PathBuf>,
    /// Plugins folder to load and watch. Without it (and without `plugins` in the config),
    /// the demo runs: the shipped trading swarm on the embedded data until the replay ends.
    #[arg(long)]
    plugins: Option<PathBuf>,
    /// Stop after this many seconds (default: run until Ctrl-C; in the demo, until the
    /// replay ends).
    #[arg(long, value_parser = parse_duration, value_name = "SECONDS")]
    duration: Option<Duration>,
    /// Fire every agent's on-timer every N milliseconds (0 disables; default 1000, 0 in the
    /// demo): of replay time during a replay, else of wall time. Agents set their own timers
    /// through the `timers` interface.
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
    /// Also write the report as an HTML page with the equity curve.
    #[arg(long, value_name = "FILE.html")]
    report: Option<PathBuf>,
    /// Write the report as JSON too (for scripts and tests).
    #[arg(long, value_name = "FILE.json")]
    report_json: Option<PathBuf>,
    /// Fault injection, to see supervision work: AGENT's event after its N-th runs with no
    /// fuel and traps (once); `AGENT:HANDLER:N` counts only that handler's events (for
    /// example `trader:on-order:2`).
    #[arg(long, value_name = "AGENT:N")]
    inject_trap: Option<String>,
    /// Seed of the agents' WASI randomness during a replay (default 0). Without a replay
    /// agents read the OS's randomness and the seed is not used.
    #[arg(long, value_name = "N")]
    seed: Option<u64>,
    /// Exit with code 6 when the run was not repeatable (the report says why).
    #[arg(long)]
    strict: bool,
    /// No progress bar (it is also off when stderr is not a terminal).
    #[arg(long)]
    no_progress: bool,
}

impl RunArgs {
    /// Whether these arguments alone make a demo run (no plugins folder and no config file;
    /// a config file naming one is only known once read).
    pub fn is_demo(&self) -> bool {
        self.plugins.is_none() && self.config.is_none()
    }
}

/// `--duration`: a finite, non-negative number of seconds of at most a year (clap turns the
/// error into a usage error, exit 2).
fn parse_duration(s: &str) -> Result<Duration, String> {
    const MAX_SECS: f64 = 365.0 * 86_400.0;
    let secs: f64 = s
        .trim()
        .parse()
        .map_err(|_| format!("{s:?} is not a number of seconds"))?;
    if !secs.is_finite() || !(0.0..=MAX_SECS).contains(&secs) {
        return Err(format!(
            "{s:?}: expected a number of seconds from 0 to {MAX_SECS}"
        ));
    }
    Duration::try_from_secs_f64(secs).map_err(|e| format!("{s:?}: {e}"))
}

/// `AGENT:N`, or `AGENT:HANDLER:N` to count only that handler's events.
fn parse_inject(s: &str) -> Result<(String, Option<String>, u64), CliError> {
    let bad = || {
        CliError::invalid(anyhow::anyhow!(
            "--inject-trap {s:?}: expected AGENT:N (N events before the trap) or AGENT:HANDLER:N \
             (HANDLER on-message, on-market, on-order or on-timer)"
        ))
    };
    let (agent, n) = s.rsplit_once(':').ok_or_else(bad)?;
    let (agent, call) = match agent.split_once(':') {
        Some((a, call)) if ["on-message", "on-market", "on-order", "on-timer"].contains(&call) => {
            (a, Some(call.to_string()))
        }
        Some(_) => return Err(bad()),
        None => (agent, None),
    };
    colony_caps::manifest::validate_name(agent)
        .map_err(|e| CliError::invalid(anyhow::anyhow!("--inject-trap: {e}")))?;
    Ok((agent.to_string(), call, n.parse().map_err(|_| bad())?))
}

/// What `colony run` does, resolved from its flags and the configuration file.
#[derive(Debug)]
pub(crate) struct RunConfig {
    /// The host's configuration: the file's (or the defaults), then the flags.
    pub(crate) host: HostConfig,
    /// Run the demo: no plugins folder was given, on the command line or in the file.
    pub(crate) demo: bool,
    /// `--duration`.
    pub(crate) duration: Option<Duration>,
    /// `--report FILE.html`.
    pub(crate) report_html: Option<PathBuf>,
    /// `--report-json FILE.json`.
    pub(crate) report_json: Option<PathBuf>,
    /// `--strict`.
    pub(crate) strict: bool,
    /// Show the progress bar (no `--no-progress`).
    pub(crate) progress: bool,
}

impl RunArgs {
    /// Reads the configuration file (if any), lays the flags over it and checks the result;
    /// nothing here touches the data directory.
    pub(crate) fn resolve(
        self,
        data_dir: PathBuf,
        audit_db: Option<String>,
    ) -> Result<RunConfig, CliError> {
        let args = self;
        let (mut config, chosen) = match &args.config {
            Some(path) => HostConfig::load(path, data_dir.clone()).map_err(CliError::invalid)?,
            None => (HostConfig::new(data_dir.clone()), FileChoices::default()),
        };
        let demo = args.plugins.is_none() && !chosen.plugins;
        if let Some(p) = &args.plugins {
            config.plugins_dir = p.clone();
        }
        if demo {
            config.apply_demo();
        }
        if let Some(t) = args.tick_ms {
            config.tick_ms = t;
        }
        config.compile_cache = !args.no_cache;
        config.trust_on_first_use = args.trust_on_first_use;
        if let Some(s) = &args.inject_trap {
            let (agent, call, n) = parse_inject(s)?;
            config.inject_trap = Some((agent, n));
            config.inject_trap_on = call;
        }
        config.seed = args.seed;
        match &args.feed {
            Some(f) => {
                config.feed =
                    FeedSpec::parse(f).map_err(|e| CliError::invalid(anyhow::anyhow!(e)))?
            }
            None if !chosen.feed => {
                config.feed = Some(FeedSpec::Embedded);
            }
            None => {}
        }
        if let Some(s) = &args.speed {
            config.speed = Speed::parse(s).map_err(|e| CliError::invalid(anyhow::anyhow!(e)))?;
        }
        match (&args.bus, &args.bus_prefix) {
            (Some(url), prefix) => {
                config.nats = colony_host::config::parse_bus(url, prefix.as_deref())
                    .map_err(|e| CliError::invalid(anyhow::anyhow!("--bus: {e}")))?;
            }
            (None, Some(prefix)) => match &mut config.nats {
                Some(n) => {
                    colony_host::config::parse_bus(&n.url, Some(prefix))
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
        if let Some(url) = &config.audit_db {
            crate::check_audit_url(url)?;
        }
        Ok(RunConfig {
            host: config,
            demo,
            duration: args.duration,
            report_html: args.report,
            report_json: args.report_json,
            strict: args.strict,
            progress: !args.no_progress,
        })
    }
}
