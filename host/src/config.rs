//! `colony.toml`, the operator's configuration, parsed once into a [`HostConfig`].
//! Unknown keys are errors, and every error names the file.
//!
//! ```toml
//! plugins = "plugins"          # folder to load and watch (relative to this file)
//! tick_ms = 1000               # how often every agent's on-timer fires (0: only their own timers)
//! max_instances = 1000         # agents + concurrent tool calls (sizes the instance pool)
//!
//! [limits.agent]               # operator defaults; a manifest may ask for less
//! fuel = 50_000_000
//! cpu_ms = 100                 # CPU time per event, measured on the guest's thread
//! hang_guard_ms = 30000        # wall-clock last resort per event, waits included
//!
//! [limits.tool]
//! memory_bytes = 134_217_728
//!
//! [agents.hello-agent]         # passed to the agent's init() as JSON
//! greeting = "hi"
//!
//! [grants.hello-agent]         # capabilities granted to a plugin (see colony-caps)
//! capabilities = ["fs.read:/srv/data", "env:API_REGION"]
//! digest = "…"                 # optional: pin to this build (blake3 hex)
//!
//! [audit]
//! sample_allows = 100          # write 1 in 100 of the sampled allows (0: none)
//!
//! [market]                     # default for `colony run`: the shipped replay at max speed
//! feed = "replay:data/btc.csv" # replay[:FILE,…] | synthetic[:SEED[:N]] | okx[:INST,…] | none
//! speed = "max"                # "fast" (no lockstep) or N times the recorded pace
//! stale_after_ms = 180000      # a symbol silent this long is flagged stale
//! book_depth = 20              # book levels a side kept and published
//! okx_url = "wss://…"          # --feed okx endpoint (default: OKX's public one)
//!
//! [orders]                     # see orders/config.rs: venue, journal, fees, risk, approvals
//! venue = "paper"
//!
//! [bus]                        # default: the in-process bus only
//! url = "nats://127.0.0.1:4222" # join the hosts on this NATS server ("local": none)
//! prefix = "colony"            # subjects on NATS are <prefix>.<subject>
//!
//! [supervision]                # agent restarts, quarantine and sleep (see agent.rs)
//! backoff_initial_ms = 100     # first restart delay; doubles per failure …
//! backoff_max_ms = 30000       # … up to this
//! healthy_after_ms = 60000     # a failure this long after the restart starts again at 100 ms
//! max_restarts = 5             # more failures than this within window_ms: quarantine
//! window_ms = 60000
//! sleep_after_idle_ms = 0      # put agents to sleep after this long without events (0: never)
//! snapshot_every = 16          # recovery snapshot after N events and every on-order (0: never)
//! ```

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::bus::nats::{DEFAULT_PREFIX, NatsConfig};
use crate::clock::Clock;
use crate::limits::Limits;
use crate::market::feed::{FeedSpec, Speed};
use std::time::Duration;

/// Overrides of the default limits (any subset).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LimitsConfig {
    fuel: Option<u64>,
    #[serde(alias = "deadline_ms")]
    cpu_ms: Option<u64>,
    hang_guard_ms: Option<u64>,
    memory_bytes: Option<u64>,
    output_bytes: Option<u64>,
    payload_bytes: Option<u64>,
    table_elements: Option<u64>,
}

impl LimitsConfig {
    fn apply(&self, mut l: Limits) -> Limits {
        l.fuel = self.fuel.unwrap_or(l.fuel);
        l.cpu_ms = self.cpu_ms.unwrap_or(l.cpu_ms);
        l.hang_guard_ms = self.hang_guard_ms.unwrap_or(l.hang_guard_ms);
        l.memory_bytes = self.memory_bytes.unwrap_or(l.memory_bytes);
        l.output_bytes = self.output_bytes.unwrap_or(l.output_bytes);
        l.payload_bytes = self.payload_bytes.unwrap_or(l.payload_bytes);
        l.table_elements = self.table_elements.unwrap_or(l.table_elements);
        l
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct LimitsSection {
    #[serde(default)]
    agent: LimitsConfig,
    #[serde(default)]
    tool: LimitsConfig,
}

/// Grants for one plugin in `colony.toml`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConfigGrant {
    /// Capability strings to grant.
    #[serde(default)]
    pub capabilities: Vec<String>,
    /// The build (blake3 hex) the grants are pinned to; without it, the build present when
    /// the host first loads the plugin is approved.
    pub digest: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct AuditSection {
    /// Write 1 in N sampled allows (0: none, 1: all).
    sample_allows: Option<u64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct BusSection {
    /// `local` or `nats://HOST:PORT`.
    url: Option<String>,
    /// Subject prefix on NATS.
    prefix: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct MarketSection {
    /// `replay`, `replay:FILE,…`, `synthetic[:SEED[:N]]`, `okx[:INST,…]` or `none`.
    feed: Option<String>,
    /// `max` or a whole number.
    speed: Option<String>,
    /// Staleness threshold in milliseconds.
    stale_after_ms: Option<u64>,
    /// Book levels a side.
    book_depth: Option<usize>,
    /// OKX WebSocket URL (`ws://` or `wss://`).
    okx_url: Option<String>,
}

/// `[supervision]`: restart backoff, quarantine and sleep (milliseconds).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct SupervisionSection {
    backoff_initial_ms: Option<u64>,
    backoff_max_ms: Option<u64>,
    healthy_after_ms: Option<u64>,
    max_restarts: Option<u32>,
    window_ms: Option<u64>,
    /// 0: never.
    sleep_after_idle_ms: Option<u64>,
    /// Recovery snapshot after every N successful events (and every `on-order`); 0: never.
    snapshot_every: Option<u32>,
}

impl SupervisionSection {
    fn apply(&self, mut s: crate::agent::Supervision) -> Result<crate::agent::Supervision, String> {
        let ms = Duration::from_millis;
        if let Some(v) = self.backoff_initial_ms {
            s.backoff_initial = ms(v);
        }
        if let Some(v) = self.backoff_max_ms {
            s.backoff_max = ms(v);
        }
        if let Some(v) = self.healthy_after_ms {
            s.healthy_after = ms(v);
        }
        if let Some(v) = self.max_restarts {
            s.max_restarts = v;
        }
        if let Some(v) = self.window_ms {
            s.window = ms(v);
        }
        if let Some(v) = self.sleep_after_idle_ms {
            s.sleep_after_idle = (v > 0).then(|| ms(v));
        }
        if let Some(v) = self.snapshot_every {
            s.snapshot_every = v;
        }
        if s.backoff_initial > s.backoff_max {
            return Err(format!(
                "supervision: backoff_initial_ms ({}) is greater than backoff_max_ms ({})",
                s.backoff_initial.as_millis(),
                s.backoff_max.as_millis()
            ));
        }
        if s.window.is_zero() {
            return Err("supervision.window_ms must be greater than zero".into());
        }
        Ok(s)
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    plugins: Option<PathBuf>,
    tick_ms: Option<u64>,
    max_instances: Option<u32>,
    #[serde(default)]
    limits: LimitsSection,
    #[serde(default)]
    agents: BTreeMap<String, toml::Table>,
    #[serde(default)]
    grants: BTreeMap<String, ConfigGrant>,
    #[serde(default)]
    audit: AuditSection,
    #[serde(default)]
    bus: BusSection,
    #[serde(default)]
    market: MarketSection,
    #[serde(default)]
    orders: crate::orders::config::OrdersSection,
    #[serde(default)]
    supervision: SupervisionSection,
}

/// What a configuration file chose itself, of the settings `colony run` has a default of its
/// own for (without a plugins folder it runs the demo; without a feed it replays the shipped
/// data). Kept beside the [`HostConfig`], not in it: the host does not care where a setting
/// came from.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FileChoices {
    /// The file named the plugins folder.
    pub plugins: bool,
    /// The file chose the market-data feed (`market.feed`).
    pub feed: bool,
}

/// The resolved configuration a host runs with.
#[derive(Debug, Clone)]
pub struct HostConfig {
    /// Where the host keeps its databases, compile cache and admin socket.
    pub data_dir: PathBuf,
    /// The plugins folder.
    pub plugins_dir: PathBuf,
    /// How often agents' timers fire, in milliseconds (0: never).
    pub tick_ms: u64,
    /// Limits for agents (per event).
    pub agent_limits: Limits,
    /// Limits for tools (per call).
    pub tool_limits: Limits,
    /// Per-agent configuration, as the JSON text given to `init`.
    pub agent_config: BTreeMap<String, String>,
    /// Use the compiled-component cache.
    pub compile_cache: bool,
    /// Instances that may exist at once (sizes the pooling allocator).
    pub max_instances: u32,
    /// Audit database URL (`sqlite://…` or `postgres://…`); default `DATA_DIR/audit.db`.
    pub audit_db: Option<String>,
    /// Write 1 in N of the allows the audit samples (0: none, 1: all).
    pub audit_sample_allows: u64,
    /// Grants from the configuration file, by plugin name.
    pub grants: BTreeMap<String, ConfigGrant>,
    /// Development mode: a plugin's requested capabilities are granted when it is first seen
    /// or changes. Never for production; the host warns at start.
    pub trust_on_first_use: bool,
    /// Join other hosts over NATS; `None`: the in-process bus only.
    pub nats: Option<NatsConfig>,
    /// The market-data feed; `None`: no feed (agents' `market-data` calls are `unavailable`).
    pub feed: Option<FeedSpec>,
    /// How fast a replay or the synthetic feed runs.
    pub speed: Speed,
    /// A symbol with no data for this long is flagged stale.
    pub stale_after: Duration,
    /// Book levels a side kept and published.
    pub book_depth: usize,
    /// The OKX public WebSocket URL for `--feed okx` (the real endpoint unless testing).
    pub okx_url: String,
    /// The host's clock, which agents' WASI clocks read: the system clock unless a replay
    /// driver puts a virtual one here (not read from `colony.toml`; see `docs/clock.md`).
    pub clock: Clock,
    /// The `[orders]` section: venue, journal, paper fees, risk limits, approvals.
    pub orders: crate::orders::config::OrdersSettings,
    /// The `[supervision]` section: restart backoff, quarantine, sleep after idle.
    pub supervision: crate::agent::Supervision,
    /// The seed of a replay's WASI randomness (`colony run --seed N`, not from the file);
    /// `None`: [`crate::clock::DEFAULT_REPLAY_SEED`]. Without a replay, agents read the OS's
    /// randomness and this is not used.
    pub seed: Option<u64>,
    /// Fault injection (`colony run --inject-trap AGENT:N`, not from the file): that agent's
    /// event after its N-th runs with no fuel and traps.
    pub inject_trap: Option<(String, u64)>,
    /// With `--inject-trap AGENT:HANDLER:N`: only that handler's events are counted (and the
    /// trap is the next one of them), for example `on-order`.
    pub inject_trap_on: Option<String>,
    /// The demo (`colony run` with no plugins folder): the plugins shipped in the binary,
    /// byte for byte, are granted what their manifests request (audited as `shipped`).
    pub trust_shipped: bool,
}

/// The bus backend from `--bus`/`[bus] url` and the prefix: `local` is `None`, `nats://…` joins
/// NATS under `prefix` (default `colony`, which must be a concrete subject).
pub fn parse_bus(url: &str, prefix: Option<&str>) -> Result<Option<NatsConfig>, String> {
    let prefix = prefix.unwrap_or(DEFAULT_PREFIX);
    colony_caps::check_subject(prefix, false).map_err(|e| format!("bus prefix {prefix:?}: {e}"))?;
    if url == "local" {
        return Ok(None);
    }
    let Some(rest) = url.strip_prefix("nats://") else {
        return Err(format!(
            "bus {url:?}: expected `local` or `nats://HOST:PORT`"
        ));
    };
    if rest.is_empty() || rest.contains('/') {
        return Err(format!("bus {url:?}: expected `nats://HOST:PORT`"));
    }
    // Checked here, so a typo is invalid input (exit 3) rather than a connection failure.
    let (host, port) = match rest.rsplit_once(':') {
        // `[::1]` alone has colons but no port.
        Some((h, p)) if !p.contains(']') => (h, Some(p)),
        _ => (rest, None),
    };
    if host.is_empty()
        || host
            .chars()
            .any(|c| c.is_whitespace() || c.is_control() || c == '@')
    {
        return Err(format!("bus {url:?}: expected `nats://HOST:PORT`"));
    }
    if let Some(p) = port
        && !(p.len() <= 5
            && p.bytes().all(|b| b.is_ascii_digit())
            && p.parse::<u16>().is_ok_and(|n| n > 0))
    {
        return Err(format!("bus {url:?}: port {p:?} is not 1-65535"));
    }
    Ok(Some(NatsConfig {
        url: url.to_owned(),
        prefix: prefix.to_owned(),
    }))
}

/// A configuration file that could not be used.
#[derive(Debug, thiserror::Error)]
#[error("{}: {reason}", path.display())]
pub struct ConfigError {
    /// The file.
    pub path: PathBuf,
    /// What was wrong.
    pub reason: String,
}

impl HostConfig {
    /// Defaults: limits from the design brief, `DATA_DIR/plugins` as the plugins folder.
    pub fn new(data_dir: PathBuf) -> HostConfig {
        HostConfig {
            plugins_dir: data_dir.join("plugins"),
            data_dir,
            tick_ms: 1000,
            agent_limits: Limits::agent_default(),
            tool_limits: Limits::tool_default(),
            agent_config: BTreeMap::new(),
            compile_cache: true,
            max_instances: 1_000,
            audit_db: None,
            audit_sample_allows: 100,
            grants: BTreeMap::new(),
            trust_on_first_use: false,
            nats: None,
            feed: None,
            speed: Speed::Max,
            stale_after: crate::market::service::DEFAULT_STALE_AFTER,
            book_depth: 20,
            okx_url: crate::market::okx::PUBLIC_URL.to_owned(),
            clock: Clock::system(),
            orders: crate::orders::config::OrdersSettings::default(),
            supervision: crate::agent::Supervision::default(),
            seed: None,
            inject_trap: None,
            inject_trap_on: None,
            trust_shipped: false,
        }
    }

    /// The demo's settings (`colony run` alone, and `colony bench`'s demo line): the shipped
    /// plugins' builds get what their manifests request, no global timer tick (the swarm sets
    /// its own timers), and the desk's pre-trade limits for the swarm where none are
    /// configured: at most 15,000 notional per order (tighter than the trader's grant, so an
    /// oversized entry is rejected by risk, with its reason) and 2,000 realised loss a day.
    pub fn apply_demo(&mut self) {
        self.trust_shipped = true;
        self.tick_ms = 0;
        // Where the operator wrote no value (the key is unset or still the built-in default).
        let router = &mut self.orders.router;
        let unwritten = |key: &str, set: bool| !set || router.risk_defaults.contains(&key);
        let notional = unwritten("max_notional", router.risk.max_notional.is_some());
        let loss = unwritten("max_daily_loss", router.risk.max_daily_loss.is_some());
        if notional {
            router.risk.max_notional = Some(rust_decimal::Decimal::from(15_000));
        }
        if loss {
            router.risk.max_daily_loss = Some(rust_decimal::Decimal::from(2_000));
            if !router.risk_defaults.contains(&"max_daily_loss") {
                router.risk_defaults.push("max_daily_loss");
            }
        }
    }

    /// Reads `colony.toml` on top of the defaults, and says what it chose of what a command
    /// has its own default for.
    pub fn load(path: &Path, data_dir: PathBuf) -> Result<(HostConfig, FileChoices), ConfigError> {
        let err = |reason: String| ConfigError {
            path: path.to_path_buf(),
            reason,
        };
        let text = crate::files::read_regular_text(path, crate::files::MAX_TEXT_BYTES)
            .map_err(|e| err(format!("cannot read: {e}")))?;
        Self::parse_choices(&text, path.parent().unwrap_or(Path::new(".")), data_dir).map_err(err)
    }

    /// Parses configuration text; relative paths are taken from `base`.
    pub fn parse(text: &str, base: &Path, data_dir: PathBuf) -> Result<HostConfig, String> {
        Self::parse_choices(text, base, data_dir).map(|(config, _)| config)
    }

    /// [`HostConfig::parse`], and what the text chose of what a command has its own default
    /// for.
    pub fn parse_choices(
        text: &str,
        base: &Path,
        data_dir: PathBuf,
    ) -> Result<(HostConfig, FileChoices), String> {
        let raw: RawConfig =
            toml::from_str(text).map_err(|e| e.to_string().trim_end().replace('\n', " "))?;
        let mut config = HostConfig::new(data_dir);
        let mut chosen = FileChoices::default();
        if let Some(p) = raw.plugins {
            config.plugins_dir = base.join(p);
            chosen.plugins = true;
        }
        if let Some(t) = raw.tick_ms {
            config.tick_ms = t;
        }
        if let Some(n) = raw.max_instances {
            if n == 0 {
                return Err("max_instances must be greater than zero".into());
            }
            config.max_instances = n;
        }
        config.agent_limits = raw.limits.agent.apply(config.agent_limits);
        config.tool_limits = raw.limits.tool.apply(config.tool_limits);
        for (name, l) in [
            ("agent", &config.agent_limits),
            ("tool", &config.tool_limits),
        ] {
            if l.fuel == 0 || l.cpu_ms == 0 || l.memory_bytes == 0 {
                return Err(format!(
                    "limits.{name}: fuel, cpu_ms and memory_bytes must be greater than zero"
                ));
            }
            if l.hang_guard_ms < l.cpu_ms {
                return Err(format!(
                    "limits.{name}: hang_guard_ms ({}) must be at least cpu_ms ({})",
                    l.hang_guard_ms, l.cpu_ms
                ));
            }
        }
        config.supervision = raw.supervision.apply(config.supervision)?;
        if let Some(n) = raw.audit.sample_allows {
            config.audit_sample_allows = n;
        }
        match (&raw.bus.url, &raw.bus.prefix) {
            (Some(url), prefix) => {
                config.nats = parse_bus(url, prefix.as_deref()).map_err(|e| format!("bus: {e}"))?;
            }
            (None, Some(_)) => return Err("bus.prefix needs bus.url".into()),
            (None, None) => {}
        }
        if let Some(f) = &raw.market.feed {
            let feed = FeedSpec::parse(f).map_err(|e| format!("market.feed: {e}"))?;
            config.feed = match feed {
                Some(FeedSpec::Files(files)) => Some(FeedSpec::Files(
                    files.iter().map(|f| base.join(f)).collect(),
                )),
                other => other,
            };
            chosen.feed = true;
        }
        if let Some(sp) = &raw.market.speed {
            config.speed = Speed::parse(sp).map_err(|e| format!("market.speed: {e}"))?;
        }
        if let Some(ms) = raw.market.stale_after_ms {
            config.stale_after = Duration::from_millis(ms);
        }
        if let Some(u) = raw.market.okx_url {
            if !(u.starts_with("ws://") || u.starts_with("wss://")) {
                return Err(format!("market.okx_url {u:?}: expected ws:// or wss://"));
            }
            config.okx_url = u;
        }
        if let Some(d) = raw.market.book_depth {
            if d == 0 || d > 400 {
                return Err("market.book_depth must be between 1 and 400".into());
            }
            config.book_depth = d;
        }
        config.orders = raw.orders.resolve_in(base)?;
        for (name, grant) in raw.grants {
            colony_caps::manifest::validate_name(&name)
                .map_err(|e| format!("grants.{name}: {e}"))?;
            for cap in &grant.capabilities {
                cap.parse::<colony_caps::Capability>()
                    .map_err(|e| format!("grants.{name}: {e}"))?;
            }
            if let Some(d) = &grant.digest
                && (d.len() != 64 || !d.bytes().all(|b| b.is_ascii_hexdigit()))
            {
                return Err(format!(
                    "grants.{name}.digest: {d:?} is not a blake3 hex digest"
                ));
            }
            config.grants.insert(name, grant);
        }
        for (name, table) in raw.agents {
            colony_caps::manifest::validate_name(&name)
                .map_err(|e| format!("agents.{name}: {e}"))?;
            let json = serde_json::to_string(&table).map_err(|e| format!("agents.{name}: {e}"))?;
            config.agent_config.insert(name, json);
        }
        Ok((config, chosen))
    }
}

#[cfg(test)]
mod tests {
    /// The configuration reference (`docs/configuration.md`) shows every key in one
    /// `colony.toml`: that file must parse, or the reference is wrong.
    #[test]
    fn the_configuration_reference_parses() {
        let page = include_str!("../../docs/configuration.md");
        let Some((_, rest)) = page.split_once("```toml\n") else {
            panic!("docs/configuration.md has no toml block");
        };
        let Some((toml_text, _)) = rest.split_once("```") else {
            panic!("docs/configuration.md's toml block is not closed");
        };
        let dir = std::path::Path::new("/nonexistent-colony-test");
        if let Err(e) = super::HostConfig::parse(toml_text, dir, dir.to_path_buf()) {
            panic!("docs/configuration.md's colony.toml does not parse: {e}");
        }
    }

    /// Every key each section accepts is in the reference, set or commented out: the
    /// accepted keys are read from the parser's own refusal of an unknown one.
    #[test]
    fn the_configuration_reference_names_every_key() {
        let page = include_str!("../../docs/configuration.md");
        let block = page
            .split_once("```toml\n")
            .and_then(|(_, rest)| rest.split_once("```"))
            .map(|(b, _)| b)
            .unwrap_or_else(|| panic!("docs/configuration.md has no toml block"));
        let dir = std::path::Path::new("/nonexistent-colony-test");
        for section in [
            "",
            "[limits.agent]\n",
            "[limits.tool]\n",
            "[grants.x]\ncapabilities = []\n",
            "[audit]\n",
            "[bus]\n",
            "[market]\n",
            "[orders]\n",
            "[orders.paper]\n",
            "[orders.risk]\n",
            "[orders.consensus]\nsubject = \"a\"\nquorum = 1\nvoters = 1\ntimeout_ms = 1\n",
            "[supervision]\n",
        ] {
            let text = format!("{section}no_such_key = 1\n");
            let e = match super::HostConfig::parse(&text, dir, dir.to_path_buf()) {
                Ok(_) => panic!("{text}: an unknown key was accepted"),
                Err(e) => e.to_string(),
            };
            // `expected one of `a`, `b`, …`, or `expected `a` or `b`` for two.
            let Some((_, expected)) = e.split_once(", expected ") else {
                panic!("{text}: {e}");
            };
            let keys: Vec<&str> = expected
                .split('`')
                .skip(1)
                .step_by(2)
                .filter(|k| !k.is_empty())
                .collect();
            assert!(!keys.is_empty(), "{e}");
            for key in keys {
                // An old name kept for compatibility is mentioned in a comment.
                let shown = block.lines().any(|l| {
                    let l = l.trim_start_matches(['#', ' ', '[']);
                    [" ", "]", "."]
                        .iter()
                        .any(|end| l.starts_with(&format!("{key}{end}")))
                }) || block.contains(&format!("`{key}`"))
                    || block.contains(&format!(".{key}]"));
                assert!(
                    shown,
                    "{section:?}: key `{key}` is not in docs/configuration.md"
                );
            }
        }
    }

    #[test]
    fn bus_urls_need_a_valid_port() {
        for good in [
            "nats://127.0.0.1:4222",
            "nats://nats",
            "nats://[::1]:4222",
            "nats://[::1]",
        ] {
            assert!(parse_bus(good, None).is_ok(), "{good}");
        }
        for bad in [
            "nats://127.0.0.1:99999",
            "nats://127.0.0.1:0",
            "nats://127.0.0.1:x",
            "nats://127.0.0.1:",
            "nats://:4222",
        ] {
            assert!(parse_bus(bad, None).is_err(), "{bad}");
        }
    }

    use super::*;

    #[test]
    fn config_bus_backend() {
        let c = |t: &str| HostConfig::parse(t, Path::new("/"), PathBuf::from("/d"));
        assert_eq!(c("").unwrap().nats, None);
        assert_eq!(c("[bus]\nurl = \"local\"\n").unwrap().nats, None);
        let n = c("[bus]\nurl = \"nats://127.0.0.1:4222\"\nprefix = \"t1.colony\"\n")
            .unwrap()
            .nats
            .unwrap();
        assert_eq!(
            (n.url.as_str(), n.prefix.as_str()),
            ("nats://127.0.0.1:4222", "t1.colony")
        );
        let d = c("[bus]\nurl = \"nats://h:1\"\n").unwrap().nats.unwrap();
        assert_eq!(d.prefix, "colony");
        for (bad, needle) in [
            (
                "[bus]\nurl = \"http://h\"\n",
                "expected `local` or `nats://HOST:PORT`",
            ),
            ("[bus]\nurl = \"nats://\"\n", "expected `nats://HOST:PORT`"),
            (
                "[bus]\nurl = \"nats://h:1\"\nprefix = \"a.*\"\n",
                "bus prefix",
            ),
            ("[bus]\nprefix = \"x\"\n", "bus.prefix needs bus.url"),
            ("[bus]\nhost = \"x\"\n", "unknown field"),
        ] {
            let e = c(bad).unwrap_err();
            assert!(e.contains(needle), "{bad}: {e}");
        }
    }

    #[test]
    fn config_parses_and_applies_overrides() {
        let c = HostConfig::parse(
            "plugins = \"p\"\ntick_ms = 50\n[limits.agent]\nfuel = 7\n[agents.hello-agent]\ngreeting = \"hi\"\n",
            Path::new("/etc/colony"),
            PathBuf::from("/data"),
        )
        .unwrap();
        assert_eq!(c.plugins_dir, PathBuf::from("/etc/colony/p"));
        assert_eq!(c.tick_ms, 50);
        assert_eq!(c.agent_limits.fuel, 7);
        assert_eq!(c.agent_limits.cpu_ms, 100);
        assert_eq!(c.tool_limits, Limits::tool_default());
        assert_eq!(c.agent_config["hello-agent"], r#"{"greeting":"hi"}"#);
        assert!(
            !c.clock.is_virtual(),
            "the system clock unless a replay sets one"
        );
    }

    #[test]
    fn bad_config_is_refused_with_the_reason() {
        for (text, want) in [
            ("plugin = \"x\"", "unknown field"),
            ("[limits.agent]\nfuel = -1", "invalid value"),
            ("[limits.agent]\nfuel = 0", "greater than zero"),
            ("[limits.robot]\nfuel = 1", "unknown field"),
            ("[agents.Bad]\nx = 1", "agents.Bad"),
            (
                "[grants.p]\ncapabilities = [\"fs.read:relative\"]",
                "grants.p",
            ),
            ("[grants.p]\ndigest = \"abc\"", "not a blake3 hex digest"),
            ("tick_ms = \"fast\"", "invalid type"),
        ] {
            let err = HostConfig::parse(text, Path::new("."), PathBuf::from("/d")).unwrap_err();
            assert!(err.contains(want), "{text}: {err}");
        }
    }
}
