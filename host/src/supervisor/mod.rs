//! The [`Host`]: owns the runtime, the loader, the state store and the set of running
//! plugins; keeps that set in step with the plugins folder (at start, on file events, and on
//! request) and routes events to agents and calls to tools.
//!
//! **Architecture invariant:** the registry maps a plugin *name* to exactly one running
//! build. A changed file is loaded and started beside the old build and then swapped in
//! under the registry lock, so a caller sees either the old or the new build, never none;
//! if the new build cannot start, the old one keeps running. The old agent finishes what is
//! already in its mailbox, then hands its snapshot to the new one, which takes no event
//! before that. One bad file is
//! recorded as rejected and never stops the others. On a NATS bus an agent starts only once
//! its name is this host's there too (`colony_bus::nats::NatsLink::claim`): a name another
//! host runs is refused like a bad file, with the reason.

use crate::agent::AgentHandle;
use crate::audit::{AuditError, AuditStore};
use crate::bus::nats::{NameClaim, NatsError, NatsLink, NatsStatus};
use crate::bus::{Bus, nats};
use crate::clock::Clock;
use crate::config::HostConfig;
use crate::engine::{EngineSettings, Runtime};
use crate::market::feed::FeedSpec;
use crate::market::replay::ReplayError;
use crate::market::service::MarketService;
use crate::orders::service::OrderService;
use crate::plugin::{Loader, PluginInfo};
use crate::policy::Policy;
use crate::state_store::{StateError, StateQuota, StateStore};
use crate::tool::{ToolRunner, ToolSpec};
use crate::tools::{BookGrants, RegistryError, ToolAccess, ToolRegistry};
use crate::venues::breaker::CircuitBreaker;
use colony_caps::grants::GrantBook;
use folder::{status_of, stop};
use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{Mutex, RwLock};
use tools::HostTools;
use trading::{agent_risk_limits, start_orders};

mod agents;
mod folder;
mod grants;
mod names;
mod tools;
mod trading;

pub use folder::{PluginStatus, RejectedFile, SyncReport};
pub use grants::{GrantError, GrantListing, load_book as load_grant_book};
pub use tools::VALIDATIONS;
pub use trading::{OrderControlError, TradingSetupError};

/// Why [`Host::start`] failed. Each variant that wraps another error shows that error's
/// message and its sources unchanged; a cause already in a variant's message is not also its
/// [`std::error::Error::source`], so a chain printed with `{:#}` does not repeat it.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The data directory could not be created or given its permissions.
    #[error("cannot create data directory {}: {error}", path.display())]
    DataDir {
        /// The directory.
        path: PathBuf,
        /// Why.
        error: std::io::Error,
    },
    /// The wasmtime engine or the linkers could not be set up. wasmtime's error type is not
    /// a [`std::error::Error`]; it is kept as the boxed error it converts to, with its chain.
    #[error(transparent)]
    Engine(Box<dyn std::error::Error + Send + Sync + 'static>),
    /// The plugins' state store did not open.
    #[error(transparent)]
    State(#[from] StateError),
    /// The audit store did not open or could not be read.
    #[error(transparent)]
    Audit(#[from] AuditError),
    /// The audit chain does not verify, so the grants rebuilt from it cannot be trusted.
    #[error(
        "the audit chain is broken at record {seq}: {reason}; grants cannot be trusted \
         (inspect with `colony audit verify`)"
    )]
    AuditChainBroken {
        /// The first record that does not verify.
        seq: u64,
        /// What is wrong with it.
        reason: String,
    },
    /// The bus could not join NATS.
    #[error(transparent)]
    Nats(#[from] NatsError),
    /// The replay the feed names did not load.
    #[error(transparent)]
    Replay(#[from] ReplayError),
    /// The order router did not start.
    #[error(transparent)]
    Trading(#[from] TradingSetupError),
    /// The registered tools' folder could not be opened.
    #[error(transparent)]
    Tools(#[from] RegistryError),
}

impl StartError {
    fn engine(e: wasmtime::Error) -> StartError {
        StartError::Engine(e.into_boxed_dyn_error())
    }
}

enum Running {
    Agent(AgentHandle),
    Tool(ToolRunner, Box<ToolSpec>),
}

struct Entry {
    info: PluginInfo,
    /// The grants in force for this build.
    policy: Arc<Policy>,
    /// blake3 of the `.wasm` and its sidecar as they were when this build was loaded.
    key: blake3::Hash,
    running: Running,
    /// An agent's name, held on the NATS bus while it runs (none without NATS, or for a tool).
    claim: Option<NameClaim>,
}

#[derive(Default)]
struct Registry {
    by_name: HashMap<String, Entry>,
    rejected: BTreeMap<PathBuf, Rejected>,
}

#[derive(Debug, Clone)]
struct Rejected {
    /// Load key (file plus sidecar) of the refused content; the same content is not retried.
    key: blake3::Hash,
    reason: String,
    /// Refused because another file or another host has its name: decided again at every
    /// pass, since the owner may go away.
    recheck: bool,
}

/// A running Colony host.
pub struct Host {
    config: HostConfig,
    loader: Arc<Loader>,
    state: StateStore,
    audit: AuditStore,
    book: Mutex<GrantBook>,
    bus: Bus,
    /// The link to other hosts, when the bus is joined over NATS.
    nats: Option<Arc<NatsLink>>,
    /// The market-data service, when the host has a feed.
    market: Option<Arc<MarketService>>,
    /// The order router, when the host has a venue.
    orders: Option<Arc<OrderService>>,
    /// The replay loaded at start, until the feed takes it.
    replay: Mutex<Option<crate::market::replay::Replay>>,
    registry: RwLock<Registry>,
    sync_lock: Mutex<()>,
    /// Tools registered at run time (`DATA_DIR/tools/`).
    tools: ToolRegistry,
    /// What agents reach tools through (the WIT `tools` interface): this host, weakly.
    tool_access: Arc<dyn ToolAccess>,
    /// Agents' timers (fired by the replay driver on a virtual clock, by `timer_task` else).
    timers: Arc<crate::timers::Timers>,
    timer_task: Option<tokio::task::JoinHandle<()>>,
    /// One circuit breaker per tool name, around every call made through [`Host::call_tool`].
    tool_breakers: std::sync::Mutex<HashMap<String, CircuitBreaker>>,
    /// Times a lockstep replay went on before its agents had settled ([`Host::settle`]).
    settle_timeouts: std::sync::atomic::AtomicU64,
    /// This host, for work it hands to other threads.
    this: std::sync::Weak<Host>,
    /// The venue's total equity, sampled by the replay driver at replay times.
    equity: crate::equity::EquityCurve,
}

impl Host {
    /// Builds the engine, opens the state store, and loads every plugin in the folder.
    pub async fn start(mut config: HostConfig) -> Result<Arc<Host>, StartError> {
        crate::datadir::prepare(&config.data_dir).map_err(|error| StartError::DataDir {
            path: config.data_dir.clone(),
            error,
        })?;
        let settings = EngineSettings {
            max_memory_bytes: config
                .agent_limits
                .memory_bytes
                .max(config.tool_limits.memory_bytes),
            max_table_elements: config
                .agent_limits
                .table_elements
                .max(config.tool_limits.table_elements),
            max_instances: config.max_instances,
            ..EngineSettings::default()
        };
        let cache = config.compile_cache.then(|| config.data_dir.join("cache"));
        let runtime = Arc::new(Runtime::new(&settings, cache).map_err(StartError::engine)?);
        let loader = Arc::new(
            Loader::new(runtime, config.agent_limits, config.tool_limits)
                .map_err(StartError::engine)?,
        );
        let state =
            StateStore::open(&config.data_dir.join("state.db"), StateQuota::default()).await?;
        let audit = match &config.audit_db {
            Some(url) => AuditStore::open(url).await?,
            None => AuditStore::open_sqlite(&AuditStore::default_path(&config.data_dir)).await?,
        };
        // Grants are rebuilt from the chain, so the chain must be intact before it is trusted.
        let report = audit.verify().await?;
        if let Some(broken) = &report.first_broken {
            return Err(StartError::AuditChainBroken {
                seq: broken.seq,
                reason: broken.reason.clone(),
            });
        }
        let book = grants::load_book(&audit).await?;
        if config.trust_on_first_use {
            tracing::warn!(
                "TRUST ON FIRST USE IS ON: every new or changed plugin is granted what it requests. \
                 Development only."
            );
        }
        let bus = Bus::new();
        // Joined before any agent starts, so nothing an agent publishes in `init` is missed.
        let nats = match &config.nats {
            Some(n) => {
                Some(nats::connect(&bus, n.clone(), crate::market::service::decode_payload).await?)
            }
            None => None,
        };
        let market = config.feed.as_ref().map(|f| {
            Arc::new(MarketService::new(
                f.venue(),
                bus.clone(),
                f.is_live(),
                config.stale_after,
            ))
        });
        // A replay is read and checked now: a bad file stops the host before it starts.
        let replay = match &config.feed {
            Some(f) => f.load(config.book_depth)?,
            None => None,
        };
        // A replay or the synthetic feed drives a virtual clock, which agents read through
        // WASI: it starts at the first event and the driver moves it to each event's time.
        // It carries the run's seed, from which agents' WASI randomness comes.
        if !config.clock.is_virtual() {
            let start = match (&config.feed, &replay) {
                (_, Some(r)) => r.events.first().map(crate::market::replay::known_at),
                (Some(FeedSpec::Synthetic { .. }), None) => {
                    Some(crate::market::synthetic::SyntheticConfig::new(1, 1).start)
                }
                _ => None,
            };
            if let Some(t) = start {
                config.clock = crate::clock::Clock::virtual_at(t)
                    .with_seed(config.seed.unwrap_or(crate::clock::DEFAULT_REPLAY_SEED));
            }
        }
        let orders = start_orders(&config, &bus, market.as_ref(), &audit).await?;
        let tool_grants = BookGrants {
            book: book.clone(),
            audit: Some(audit.writer()),
            sample_allows: config.audit_sample_allows,
        };
        let (tools, failures) =
            ToolRegistry::open(config.data_dir.join("tools"), &loader, &tool_grants).await?;
        for f in failures {
            tracing::error!("registered tool not loaded: {f}");
        }
        let timers = crate::timers::Timers::new(config.clock.clone());
        let timer_task = timers.drive();
        let host = Arc::new_cyclic(|me| Host {
            tool_breakers: std::sync::Mutex::new(HashMap::new()),
            settle_timeouts: std::sync::atomic::AtomicU64::new(0),
            this: me.clone(),
            equity: crate::equity::EquityCurve::new(),
            timers,
            timer_task,
            tool_access: Arc::new(HostTools(me.clone())),
            tools,
            orders,
            market,
            replay: Mutex::new(replay),
            config,
            loader,
            state,
            audit,
            book: Mutex::new(book),
            bus,
            nats,
            registry: RwLock::new(Registry::default()),
            sync_lock: Mutex::new(()),
        });
        let report = host.sync().await;
        tracing::info!(
            loaded = report.loaded.len(),
            rejected = report.rejected.len(),
            folder = %host.config.plugins_dir.display(),
            "plugins folder loaded"
        );
        Ok(host)
    }

    /// The configuration in force.
    pub fn config(&self) -> &HostConfig {
        &self.config
    }

    /// The in-process bus agents talk on.
    pub fn bus(&self) -> &Bus {
        &self.bus
    }

    /// The clock agents' WASI clocks read (`HostConfig::clock`): a handle that shares the
    /// time, so a replay driver moves a virtual clock through it (`clone`, then `set`).
    pub fn clock(&self) -> &Clock {
        &self.config.clock
    }

    /// The NATS link's state and counters, when the bus is joined to other hosts.
    pub fn nats_status(&self) -> Option<NatsStatus> {
        self.nats.as_ref().map(|n| n.status())
    }

    /// The audit store.
    pub fn audit(&self) -> &AuditStore {
        &self.audit
    }

    /// The loader (and through it, the runtime).
    pub fn loader(&self) -> &Arc<Loader> {
        &self.loader
    }

    /// Watches the plugins folder and re-syncs shortly after anything in it changes.
    /// The returned watcher must be kept alive.
    pub fn watch(self: &Arc<Self>) -> notify::Result<notify::RecommendedWatcher> {
        use notify::Watcher;
        let (tx, mut rx) = tokio::sync::mpsc::channel::<()>(1);
        let mut watcher =
            notify::recommended_watcher(move |res: notify::Result<notify::Event>| {
                if res.is_ok() {
                    // A full channel already means "resync pending".
                    let _ = tx.try_send(());
                }
            })?;
        watcher.watch(
            &self.config.plugins_dir,
            notify::RecursiveMode::NonRecursive,
        )?;
        let host = Arc::downgrade(self);
        tokio::spawn(async move {
            while rx.recv().await.is_some() {
                // Let a burst of events (a copy in progress) settle before reading files.
                tokio::time::sleep(Duration::from_millis(150)).await;
                while rx.try_recv().is_ok() {}
                let Some(host) = host.upgrade() else { break };
                let report = host.sync().await;
                if !(report.loaded.is_empty()
                    && report.swapped.is_empty()
                    && report.unloaded.is_empty()
                    && report.rejected.is_empty())
                {
                    tracing::info!(?report, "plugins folder changed");
                }
            }
        });
        Ok(watcher)
    }

    /// Stops every plugin (agents finish their queued events first) and returns their final
    /// status.
    pub async fn shutdown(&self) -> Vec<PluginStatus> {
        if let Some(t) = &self.timer_task {
            t.abort();
        }
        if let Some(o) = &self.orders
            && !o.flush_journal(Duration::from_secs(10)).await
        {
            tracing::error!("the order journal did not catch up within 10 s");
        }
        let entries: Vec<Entry> = self
            .registry
            .write()
            .await
            .by_name
            .drain()
            .map(|(_, e)| e)
            .collect();
        let mut last = Vec::new();
        for e in entries {
            let info = e.info.clone();
            let stats = match &e.running {
                Running::Agent(h) => Some((h.stats().clone(), h.clone())),
                Running::Tool(..) => None,
            };
            stop(e).await;
            last.push(status_of(
                info,
                stats.as_ref().map(|(s, h)| (s.as_ref(), h)),
            ));
        }
        last.sort_by(|a, b| a.info.name.cmp(&b.info.name));
        last
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::error::Error as _;

    /// The message names the cause once: `{:#}` (what `colony` prints) adds nothing to it.
    #[tokio::test]
    async fn a_data_directory_that_cannot_be_created_is_named_once() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("tempdir: {e}"));
        let file = dir.path().join("file");
        std::fs::write(&file, b"").unwrap_or_else(|e| panic!("{e}"));
        let data = file.join("data");
        let Err(e) = Host::start(HostConfig::new(data.clone())).await else {
            panic!("the host started in a data directory under a file");
        };
        assert!(matches!(e, StartError::DataDir { .. }), "{e:?}");
        let text = e.to_string();
        let expected = format!("cannot create data directory {}: ", data.display());
        assert!(text.starts_with(&expected), "{text}");
        assert!(e.source().is_none());
    }

    #[test]
    fn a_damaged_kill_switch_file_is_named() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("tempdir: {e}"));
        let path = dir.path().join("kill-switch.json");
        std::fs::write(&path, r#"[{"agent": 1, "mode": "on"}]"#).unwrap_or_else(|e| panic!("{e}"));
        let e = match crate::orders::service::load_kill_switches(dir.path()) {
            Ok(v) => panic!("a damaged kill-switch file was read: {v:?}"),
            Err(e) => TradingSetupError::from(e),
        };
        assert_eq!(
            e.to_string(),
            format!("{}: agent must be a string or null", path.display())
        );
        assert!(e.source().is_none());
    }
}
