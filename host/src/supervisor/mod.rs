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
//! recorded as rejected and never stops the others.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use serde::Serialize;
use tokio::sync::{Mutex, RwLock};

mod grants;
mod names;
pub use grants::{GrantError, GrantListing, load_book as load_grant_book};

use crate::agent::{AgentHandle, AgentServices, AgentSpec, AgentStats, Event};
use crate::audit::AuditStore;
use crate::bus::Bus;
use crate::bus::nats::{self, NatsLink, NatsStatus};
use crate::clock::Clock;
use crate::config::HostConfig;
use crate::engine::{EngineSettings, Runtime};
use crate::market::feed::{self, FeedReport, FeedSpec, Pace};
use crate::market::service::MarketService;
use crate::orders::service::{KillMode, OrderService};
use crate::plugin::{Linked, LoadError, LoadedPlugin, Loader, PluginInfo};
use crate::policy::Policy;
use crate::state_store::{StateQuota, StateStore};
use crate::store::CallError;
use crate::tool::{ToolRunner, ToolSpec};
use crate::tools::{
    BookGrants, BoxFuture, CallableTool, RegisteredTool, RegistryError, Removed, ToolAccess,
    ToolCallError, ToolRegistry,
};
use crate::venues::breaker::{BreakerConfig, BreakerState, CircuitBreaker};
use colony_caps::Request;
use colony_caps::grants::GrantBook;
use colony_caps::manifest::Kind;

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
    /// Refused for claiming another file's name: decided again at every pass, since the
    /// owner may go away.
    impostor: bool,
}

/// What one pass over the plugins folder changed.
#[derive(Debug, Default, Clone, Serialize)]
pub struct SyncReport {
    /// Plugins started for the first time.
    pub loaded: Vec<String>,
    /// Plugins whose file changed and whose new build replaced the old.
    pub swapped: Vec<String>,
    /// Plugins whose file went away.
    pub unloaded: Vec<String>,
    /// Files refused, with the reason (`file: reason`).
    pub rejected: Vec<String>,
}

/// One plugin as `colony plugins list` and `colony status` show it.
#[derive(Debug, Clone, Serialize)]
pub struct PluginStatus {
    /// Static information.
    #[serde(flatten)]
    pub info: PluginInfo,
    /// Agents: events delivered.
    pub delivered: u64,
    /// Agents: events that failed.
    pub failed: u64,
    /// Agents: instance re-creations.
    pub restarts: u64,
    /// Agents: events refused because the mailbox was full.
    pub refused: u64,
    /// Agents: log lines dropped over the per-event cap.
    pub log_dropped: u64,
    /// Agents: bus messages lost to a full mailbox (market data, oldest first).
    pub bus_dropped: u64,
    /// Agents: bus messages refused by a full mailbox (sent to dead letters).
    pub bus_refused: u64,
    /// Agents: bus messages that expired in the mailbox (sent to dead letters).
    pub bus_expired: u64,
    /// Agents: market events the bus routed to its mailbox (queued, or dropped on arrival).
    pub md_routed: u64,
    /// Agents: market events its actor took from the mailbox.
    pub md_taken: u64,
    /// Agents: messages the agent published that some mailbox refused (it was told
    /// `limit-exceeded`).
    pub bus_sent_refused: u64,
    /// Agents: events waiting.
    pub mailbox_depth: usize,
    /// Agents: quarantined.
    pub quarantined: bool,
    /// Agents: lifecycle state (`cold`, `warming`, `active`, `idle`, `sleeping`, `failed`,
    /// `quarantined`); tools: `ready`.
    pub state: String,
    /// Agents: fuel used by every event so far.
    pub fuel_used: u64,
    /// Agents: wall-clock milliseconds spent in handlers.
    pub busy_ms: f64,
    /// Agents: times put to sleep.
    pub sleeps: u64,
    /// Agents: times woken.
    pub wakes: u64,
    /// Agents: bytes of linear memory the instance holds (0 asleep).
    pub memory_bytes: u64,
    /// Agents: recovery snapshots the host took (docs/lifecycle.md).
    pub snapshots: u64,
    /// Agents: wall-clock milliseconds spent taking them.
    pub snapshot_ms: f64,
    /// Agents: order events redelivered to a new instance after their handler failed.
    pub redelivered: u64,
    /// Agents: last failure.
    pub last_error: Option<String>,
}

/// A file the host refused.
#[derive(Debug, Clone, Serialize)]
pub struct RejectedFile {
    /// The file.
    pub file: PathBuf,
    /// Why.
    pub reason: String,
}

/// The feed driver's view of a host.
struct HostPace<'a>(&'a Arc<Host>);

impl Pace for HostPace<'_> {
    fn set_time(&self, ns: u64) {
        self.0.clock().set(ns);
        // Due timers go into their agents' mailboxes now, so the lockstep waits for them.
        self.0.timers.fire_due(ns);
    }

    async fn settle(&self) {
        self.0.settle().await;
        // After the agents handled the event: the report's equity at this replay time.
        self.0.sample_equity();
    }

    async fn throttle(&self, window: usize) {
        self.0.throttle(window).await;
        self.0.sample_equity();
    }
}

/// The order router the configuration asks for, fed by the market service, with the kill
/// switches of the last run restored.
async fn start_orders(
    config: &HostConfig,
    bus: &Bus,
    market: Option<&Arc<MarketService>>,
    audit: &AuditStore,
) -> anyhow::Result<Option<Arc<OrderService>>> {
    use crate::orders::config::VenueChoice;
    use crate::venues::credentials::VenueCredentials;
    use crate::venues::live::LiveVenue;
    let settings = &config.orders;
    let credentials = || match &settings.credentials {
        Some(path) => VenueCredentials::from_file(path),
        None => VenueCredentials::from_env(),
    };
    let live = match &settings.venue {
        VenueChoice::None => return Ok(None),
        VenueChoice::Paper => None,
        VenueChoice::Okx { url, demo } => {
            let creds = credentials()?.okx.ok_or_else(|| {
                anyhow::anyhow!(
                    "orders.venue okx needs OKX credentials: COLONY_OKX_API_KEY, \
                     COLONY_OKX_SECRET and COLONY_OKX_PASSPHRASE, or [okx] in the \
                     orders.credentials file"
                )
            })?;
            Some(Arc::new(
                LiveVenue::okx(creds, *demo, url, settings.venue_timeout)?
                    .with_audit(audit.writer()),
            ))
        }
        VenueChoice::Alpaca { url } => {
            let creds = credentials()?.alpaca.ok_or_else(|| {
                anyhow::anyhow!(
                    "orders.venue alpaca needs Alpaca credentials: COLONY_ALPACA_KEY_ID and \
                     COLONY_ALPACA_SECRET_KEY, or [alpaca] in the orders.credentials file"
                )
            })?;
            let env = if url.contains("paper") {
                crate::venues::alpaca::AlpacaEnv::Paper
            } else {
                crate::venues::alpaca::AlpacaEnv::Live
            };
            Some(Arc::new(
                LiveVenue::alpaca(creds, env, url, settings.venue_timeout)?
                    .with_audit(audit.writer()),
            ))
        }
    };
    let url = match &settings.journal {
        Some(u) => u.clone(),
        None => format!("sqlite://{}", config.data_dir.join("orders.db").display()),
    };
    let journal = crate::orders::journal::Journal::open(&url).await?;
    let orders = OrderService::with_journal(bus.clone(), settings.router.clone(), live, journal);
    if let Some(m) = market {
        m.set_observer(orders.clone());
    }
    let now = config.clock.now_ns();
    for (agent, mode) in crate::orders::service::load_kill_switches(&config.data_dir)? {
        orders.kill_switch(agent.as_deref(), mode, now);
    }
    // Before any agent runs: today's client ids are taken again, and working orders are
    // reconciled with the venue.
    orders
        .recover(crate::clock::Clock::system().now_ns())
        .await?;
    orders.start_polling(settings.venue_poll);
    Ok(Some(orders))
}

/// An agent's own risk limits from its `orders.place` grants (quantity and notional are
/// enforced per grant by the policy; rate and open-order limits are agent-wide).
fn agent_risk_limits(policy: &Policy) -> crate::orders::risk::RiskLimits {
    let (per_min, open) = policy.grants().order_rate_limits();
    crate::orders::risk::RiskLimits {
        max_orders_per_min: per_min,
        max_open_orders: open,
        ..Default::default()
    }
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

/// Tool validations that may run at once (each compiles a component and runs two calls).
pub const VALIDATIONS: usize = 2;

fn validation_gate() -> &'static tokio::sync::Semaphore {
    static GATE: tokio::sync::Semaphore = tokio::sync::Semaphore::const_new(VALIDATIONS);
    &GATE
}

/// The host's tools as agents reach them: the plugins folder's and the registered ones. Holds
/// the host weakly, since the host's agents hold it.
struct HostTools(std::sync::Weak<Host>);

impl HostTools {
    fn host(&self) -> Option<Arc<Host>> {
        self.0.upgrade()
    }
}

impl ToolAccess for HostTools {
    fn list<'a>(&'a self, caller: &'a Policy) -> BoxFuture<'a, Vec<CallableTool>> {
        Box::pin(async move {
            let Some(host) = self.host() else {
                return Vec::new();
            };
            host.callable_tools(caller).await
        })
    }

    fn call<'a>(
        &'a self,
        spec: &'a str,
        args_json: &'a str,
    ) -> BoxFuture<'a, Result<String, ToolCallError>> {
        Box::pin(async move {
            let Some(host) = self.host() else {
                return Err(ToolCallError::NotFound(spec.to_string()));
            };
            // On a task of its own: the calling agent's event waits for the tool (under the
            // tool's own limits) without the tool's CPU time counting as the agent's.
            let (spec_owned, args) = (spec.to_owned(), args_json.to_owned());
            match tokio::spawn(async move { host.call_tool(&spec_owned, &args).await }).await {
                Ok(r) => r,
                Err(e) => Err(ToolCallError::Unavailable {
                    tool: spec.to_owned(),
                    reason: format!("the call's task ended: {e}"),
                }),
            }
        })
    }

    fn register<'a>(
        &'a self,
        bytes: &'a [u8],
        actor: &'a str,
    ) -> BoxFuture<'a, Result<Arc<RegisteredTool>, RegistryError>> {
        Box::pin(async move {
            match self.host() {
                Some(host) => host.register_tool(bytes, actor).await,
                None => Err(RegistryError::Storage("the host is shutting down".into())),
            }
        })
    }
}

impl Host {
    /// Builds the engine, opens the state store, and loads every plugin in the folder.
    pub async fn start(mut config: HostConfig) -> anyhow::Result<Arc<Host>> {
        crate::datadir::prepare(&config.data_dir).map_err(|e| {
            anyhow::anyhow!(
                "cannot create data directory {}: {e}",
                config.data_dir.display()
            )
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
        let runtime = Arc::new(Runtime::new(&settings, cache)?);
        let loader = Arc::new(Loader::new(
            runtime,
            config.agent_limits,
            config.tool_limits,
        )?);
        let state =
            StateStore::open(&config.data_dir.join("state.db"), StateQuota::default()).await?;
        let audit = match &config.audit_db {
            Some(url) => AuditStore::open(url).await?,
            None => AuditStore::open_sqlite(&AuditStore::default_path(&config.data_dir)).await?,
        };
        // Grants are rebuilt from the chain, so the chain must be intact before it is trusted.
        let report = audit.verify().await?;
        if let Some(broken) = &report.first_broken {
            anyhow::bail!(
                "the audit chain is broken at record {}: {}; grants cannot be trusted \
                 (inspect with `colony audit verify`)",
                broken.seq,
                broken.reason
            );
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
            Some(n) => Some(nats::connect(&bus, n.clone()).await?),
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

    /// The order router, when the host has a venue.
    pub fn orders(&self) -> Option<&Arc<OrderService>> {
        self.orders.as_ref()
    }

    /// The order router, or the error an operator sees on a host without a venue.
    fn venue(&self) -> anyhow::Result<&Arc<OrderService>> {
        self.orders
            .as_ref()
            .ok_or_else(|| anyhow::anyhow!("this host has no order venue"))
    }

    /// Records an operator's action on orders (`kind`: `kill-switch`, `order-approval`).
    async fn audit_operator(&self, kind: &str, actor: &str, detail: String) -> anyhow::Result<()> {
        let rec = crate::audit::AuditRecord::new(crate::audit::AuditKind::Other(kind.into()))
            .with_actor(actor)
            .with_detail(detail);
        self.audit.writer().append(rec).await?;
        Ok(())
    }

    /// Sets the kill switch (`on`, `off`, `reducing`, `halt`) for every agent or one, keeps it in
    /// `DATA_DIR/kill-switch.json` for the next start, and audits it.
    pub async fn kill_switch(
        &self,
        agent: Option<&str>,
        mode: &str,
        actor: &str,
    ) -> anyhow::Result<serde_json::Value> {
        let orders = self.venue()?;
        let m = KillMode::parse(mode).ok_or_else(|| {
            anyhow::anyhow!("kill-switch {mode:?}: expected on, off, reducing or halt")
        })?;
        if let Some(a) = agent {
            colony_caps::manifest::validate_name(a)?;
        }
        let cancelled = orders.kill_switch(agent, m, self.config.clock.now_ns());
        crate::orders::service::save_kill_switches(&self.config.data_dir, &orders.kill_switches())?;
        // Audited after it took effect: a stop must not wait on the audit store.
        let detail = format!(
            "{mode} for {}; {cancelled} working orders cancelled",
            agent.unwrap_or("*")
        );
        self.audit_operator("kill-switch", actor, detail).await?;
        Ok(serde_json::json!({ "cancelled": cancelled }))
    }

    /// Approves or denies an order waiting for approval; audited.
    pub async fn decide_approval(
        &self,
        id: &str,
        approve: bool,
        actor: &str,
    ) -> anyhow::Result<serde_json::Value> {
        let orders = self.venue()?;
        let id: u64 = id
            .parse()
            .map_err(|_| anyhow::anyhow!("approval id {id:?}: expected a number"))?;
        let now = self.config.clock.now_ns();
        let found = orders.resolve_approval(id, approve, "approval.denied", now);
        if !found {
            anyhow::bail!("no order is waiting for approval {id}");
        }
        let verb = if approve { "approved" } else { "denied" };
        self.audit_operator("order-approval", actor, format!("approval {id} {verb}"))
            .await?;
        Ok(serde_json::Value::Null)
    }

    /// The market-data service, when the host has a feed.
    pub fn market(&self) -> Option<&Arc<MarketService>> {
        self.market.as_ref()
    }

    /// Waits until every agent has handled everything the bus queued for it, including what
    /// those messages made agents send each other ([`Bus::settle`]). A busy machine only makes
    /// this take longer: it gives up only after the agents' wall-clock hang guard (and at
    /// least 10 s; agents that message each other forever), with a warning, and counts it
    /// ([`Host::settle_timeouts`]): a replay that went on without its agents is not repeatable.
    pub async fn settle(&self) {
        let limit = self.settle_limit();
        if !self.bus.settle(limit).await {
            self.settle_timeouts.fetch_add(1, Ordering::Relaxed);
            tracing::warn!(
                "agents did not settle within {} s; the replay goes on and is not repeatable",
                limit.as_secs()
            );
        }
    }

    /// How long [`Host::settle`] and [`Host::throttle`] wait for the agents: their wall-clock
    /// hang guard, at least 10 s.
    fn settle_limit(&self) -> Duration {
        Duration::from_millis(self.config.agent_limits.hang_guard_ms).max(Duration::from_secs(10))
    }

    /// How many times a lockstep replay went on before its agents had settled.
    pub fn settle_timeouts(&self) -> u64 {
        self.settle_timeouts.load(Ordering::Relaxed)
    }

    /// Waits until no agent has more than `window` bus messages waiting (gives up after the
    /// same limit as [`Host::settle`]).
    pub async fn throttle(&self, window: usize) {
        let deadline = tokio::time::Instant::now() + self.settle_limit();
        loop {
            let fullest = {
                let reg = self.registry.read().await;
                reg.by_name
                    .values()
                    .filter_map(|e| match &e.running {
                        Running::Agent(h) => h.mailbox_stats().map(|m| m.depth),
                        Running::Tool(..) => None,
                    })
                    .max()
                    .unwrap_or(0)
            };
            if fullest <= window || tokio::time::Instant::now() >= deadline {
                return;
            }
            tokio::task::yield_now().await;
        }
    }

    /// Starts the configured feed (after the plugins are loaded, so agents that subscribe in
    /// `init` miss nothing). A replay was loaded and checked by [`Host::start`]. `None`
    /// without a feed.
    pub fn start_feed(self: &Arc<Self>) -> Option<tokio::task::JoinHandle<FeedReport>> {
        let spec = self.config.feed.clone()?;
        let service = Arc::clone(self.market.as_ref()?);
        let host = Arc::clone(self);
        Some(match spec {
            FeedSpec::Okx(insts) => feed::okx(
                &insts,
                &self.config.okx_url,
                self.config.book_depth,
                service,
            ),
            FeedSpec::Synthetic { seed, symbols } => tokio::spawn(async move {
                let speed = host.config.speed;
                feed::synthetic(seed, symbols, None, &service, speed, &HostPace(&host))
                    .await
                    .unwrap_or_else(|e| {
                        tracing::error!(error = %e, "synthetic feed");
                        FeedReport::default()
                    })
            }),
            FeedSpec::Embedded | FeedSpec::Files(_) => tokio::spawn(async move {
                let replay = host.replay.lock().await.take();
                let Some(replay) = replay else {
                    return FeedReport::default();
                };
                let report =
                    feed::play(replay, &service, host.config.speed, &HostPace(&host)).await;
                tracing::info!(
                    events = report.events,
                    issues = report.issues,
                    "replay finished"
                );
                report
            }),
        })
    }

    /// Offers the venue's total equity at the host clock's time to [`Host::equity_curve`].
    fn sample_equity(&self) {
        if let Some(o) = &self.orders {
            self.equity
                .offer_with(self.config.clock.now_ns(), || o.total_equity());
        }
    }

    /// The equity samples the replay driver took (at replay times, after each event settled)
    /// plus one now; empty without a venue or before any account traded.
    pub fn equity_curve(&self) -> Vec<(u64, rust_decimal::Decimal)> {
        if let Some(o) = &self.orders {
            self.equity
                .finish(self.config.clock.now_ns(), o.total_equity());
        }
        self.equity.samples()
    }

    /// How many events the replay loaded at start will play (until the feed takes it).
    pub async fn replay_len(&self) -> Option<usize> {
        self.replay.lock().await.as_ref().map(|r| r.events.len())
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

    /// Brings the running set in step with the plugins folder.
    pub async fn sync(&self) -> SyncReport {
        let _one_at_a_time = self.sync_lock.lock().await;
        let mut report = SyncReport::default();
        let files = match wasm_files(&self.config.plugins_dir) {
            Ok(files) => files,
            Err(e) => {
                tracing::error!(folder = %self.config.plugins_dir.display(), error = %e, "cannot read plugins folder");
                return report;
            }
        };
        let mut digests = HashMap::new();
        let mut claims = Vec::new();
        for file in &files {
            match crate::files::read_regular(file, crate::plugin::MAX_FILE_BYTES) {
                Ok(bytes) => {
                    // The sidecar is part of what a file means: a changed sidecar reloads.
                    let mut h = blake3::Hasher::new();
                    h.update(&bytes);
                    let side = crate::files::read_regular(
                        &file.with_extension("toml"),
                        crate::files::MAX_TEXT_BYTES,
                    )
                    .ok();
                    if let Some(side) = &side {
                        h.update(side);
                    }
                    digests.insert(file.clone(), h.finalize());
                    let stem = file.file_stem().and_then(|s| s.to_str()).unwrap_or("");
                    let side = side.and_then(|b| String::from_utf8(b).ok());
                    if let Some(name) = crate::plugin::declared_name(&bytes, side.as_deref(), stem)
                    {
                        claims.push(names::Claim {
                            file: file.clone(),
                            name,
                            digest: blake3::hash(&bytes).to_hex().to_string(),
                        });
                    }
                }
                Err(e) => {
                    tracing::warn!(file = %file.display(), error = %e, "cannot read plugin file")
                }
            }
        }

        // Removed files: stop their plugins; forget their rejections.
        let gone: Vec<(String, PathBuf)> = {
            let mut reg = self.registry.write().await;
            reg.rejected.retain(|f, _| digests.contains_key(f));
            reg.by_name
                .iter()
                .filter(|(_, e)| !digests.contains_key(&e.info.file))
                .map(|(n, e)| (n.clone(), e.info.file.clone()))
                .collect()
        };
        for (name, file) in gone {
            if let Some(entry) = self.registry.write().await.by_name.remove(&name) {
                stop(entry).await;
                self.timers.remove_agent(&name);
                tracing::info!(plugin = %name, file = %file.display(), "plugin unloaded: file removed");
                report.unloaded.push(name);
            }
        }

        // Names: a file claiming a name that belongs to another is refused, and stopped if it
        // was running under it, before the owner loads.
        let impostors = self.impostors(&claims).await;
        for (file, reason) in &impostors {
            let Some(&key) = digests.get(file) else {
                continue;
            };
            let (stopped, again) = {
                let mut reg = self.registry.write().await;
                let name = reg
                    .by_name
                    .iter()
                    .find(|(_, e)| &e.info.file == file)
                    .map(|(n, _)| n.clone());
                let entry = name.and_then(|n| reg.by_name.remove(&n));
                let again = reg
                    .rejected
                    .get(file)
                    .is_some_and(|r| r.key == key && &r.reason == reason);
                reg.rejected.insert(
                    file.clone(),
                    Rejected {
                        key,
                        reason: reason.clone(),
                        impostor: true,
                    },
                );
                (entry, again)
            };
            if again && stopped.is_none() {
                continue;
            }
            if let Some(entry) = stopped {
                let name = entry.info.name.clone();
                stop(entry).await;
                self.timers.remove_agent(&name);
                report.unloaded.push(name);
            }
            let e = LoadError {
                file: file.clone(),
                reason: reason.clone(),
            };
            tracing::error!("plugin refused: {e}");
            report.rejected.push(e.to_string());
        }

        for file in files {
            let Some(&key) = digests.get(&file) else {
                continue;
            };
            if impostors.contains_key(&file) {
                continue;
            }
            let owner = {
                let mut reg = self.registry.write().await;
                let running = reg
                    .by_name
                    .values()
                    .find(|e| e.info.file == file)
                    .map(|e| (e.info.name.clone(), e.key));
                if running.as_ref().is_some_and(|(_, k)| *k == key) {
                    // Back to the build that is running (a bad write was undone).
                    reg.rejected.remove(&file);
                    continue;
                }
                if reg
                    .rejected
                    .get(&file)
                    .is_some_and(|r| r.key == key && !r.impostor)
                {
                    continue;
                }
                running.map(|(n, _)| n)
            };
            match self.load_and_start(&file, key, owner.as_deref()).await {
                Ok((name, swapped)) => {
                    self.registry.write().await.rejected.remove(&file);
                    if swapped {
                        report.swapped.push(name);
                    } else {
                        report.loaded.push(name);
                    }
                }
                Err(e) => {
                    tracing::error!("plugin refused: {e}");
                    report.rejected.push(e.to_string());
                    self.registry.write().await.rejected.insert(
                        file.clone(),
                        Rejected {
                            key,
                            reason: e.reason.clone(),
                            impostor: false,
                        },
                    );
                }
            }
        }
        report
    }

    /// The impostors among `claims` ([`names`]), judged against the grant book, the running
    /// set and the registered tools.
    async fn impostors(&self, claims: &[names::Claim]) -> HashMap<PathBuf, String> {
        struct Known {
            approved: HashMap<String, String>,
            running: HashMap<String, PathBuf>,
            registered: std::collections::HashSet<String>,
        }
        impl names::Owners for Known {
            fn approved(&self, name: &str) -> Option<String> {
                self.approved.get(name).cloned()
            }
            fn running(&self, name: &str) -> Option<PathBuf> {
                self.running.get(name).cloned()
            }
            fn registered(&self, name: &str) -> bool {
                self.registered.contains(name)
            }
        }
        let approved = {
            let book = self.book.lock().await;
            claims
                .iter()
                .filter_map(|c| {
                    let d = book.get(&c.name)?.approved_digest.clone()?;
                    Some((c.name.clone(), d))
                })
                .collect()
        };
        let running = self
            .registry
            .read()
            .await
            .by_name
            .iter()
            .map(|(n, e)| (n.clone(), e.info.file.clone()))
            .collect();
        let registered = self.tools.list().into_iter().map(|l| l.name).collect();
        names::impostors(
            claims,
            &Known {
                approved,
                running,
                registered,
            },
        )
    }

    /// Loads `file`, starts it, and puts it in the registry (replacing `previous`, the name
    /// that file ran under before, if any). Returns the name and whether it was a swap.
    async fn load_and_start(
        &self,
        file: &Path,
        key: blake3::Hash,
        previous: Option<&str>,
    ) -> Result<(String, bool), LoadError> {
        let loader = self.loader.clone();
        let path = file.to_path_buf();
        let plugin = tokio::task::spawn_blocking(move || loader.load_file(&path))
            .await
            .map_err(|e| LoadError {
                file: file.to_path_buf(),
                reason: format!("loader task failed: {e}"),
            })??;
        let name = plugin.info.name.clone();
        let err = |reason: String| LoadError {
            file: file.to_path_buf(),
            reason,
        };
        {
            let reg = self.registry.read().await;
            if let Some(other) = reg.by_name.get(&name)
                && other.info.file != file
            {
                return Err(err(format!(
                    "plugin name \"{name}\" is already used by {}",
                    other.info.file.display()
                )));
            }
        }
        // An agent replacing an agent of the same name gets the old instance's snapshot:
        // the new actor is started first and waits for it before taking any event.
        let replaces_agent = {
            let reg = self.registry.read().await;
            previous
                .and_then(|p| reg.by_name.get(p))
                .is_some_and(|e| matches!(e.running, Running::Agent(_)) && e.info.name == name)
        };
        let (handover_tx, handover_rx) = match replaces_agent && plugin.info.kind == Kind::Agent {
            true => {
                let (tx, rx) = tokio::sync::oneshot::channel();
                (Some(tx), Some(rx))
            }
            false => (None, None),
        };
        // If the new build cannot start, the old one keeps running.
        let running = self
            .start_plugin(key, plugin, handover_rx)
            .await
            .map_err(|e| err(e.to_string()))?;
        // A tool is called by its plugin name; what its describe() says is not identity.
        if let Running::Tool(_, spec) = &running.running
            && spec.name != name
        {
            let claimed = spec.name.clone();
            let held_by = {
                let reg = self.registry.read().await;
                let named_after = self.config.plugins_dir.join(format!("{claimed}.wasm"));
                match reg.by_name.get(&claimed) {
                    Some(e) => format!(", which is the name of {}", e.info.file.display()),
                    None if named_after.is_file() => {
                        format!(", which is the name of {}", named_after.display())
                    }
                    None if self.tools.get(&claimed).is_some() => {
                        format!(", which is the name of the registered tool {claimed}")
                    }
                    None => String::new(),
                }
            };
            stop(running).await;
            return Err(err(format!(
                "its describe() names the tool \"{claimed}\"{held_by}, but its plugin name is \"{name}\" \
                 (a tool is called by its plugin name: its manifest's, else its file name)"
            )));
        }
        let replaced = {
            let mut reg = self.registry.write().await;
            let replaced = previous.and_then(|p| reg.by_name.remove(p));
            reg.by_name.insert(name.clone(), running);
            replaced
        };
        let swapped = replaced.is_some();
        if let Some(old) = replaced {
            match (old.running, handover_tx) {
                (Running::Agent(old), Some(tx)) => {
                    // Events already queued for the old instance run there first; then its
                    // snapshot goes to the new one.
                    // Off the bus first, so new messages go only to the new build.
                    old.detach_bus();
                    tokio::spawn(async move {
                        let snapshot = old.retire().await.await.ok().flatten();
                        let _ = tx.send(snapshot);
                    });
                }
                (running, _) => {
                    stop(Entry {
                        info: old.info,
                        policy: old.policy,
                        key: old.key,
                        running,
                    })
                    .await
                }
            }
        }
        tracing::info!(plugin = %name, file = %file.display(), swapped, "plugin started");
        Ok((name, swapped))
    }

    async fn start_plugin(
        &self,
        key: blake3::Hash,
        plugin: LoadedPlugin,
        handover: Option<tokio::sync::oneshot::Receiver<Option<Vec<u8>>>>,
    ) -> Result<Entry, CallError> {
        let name = plugin.name();
        let info = plugin.info.clone();
        let limits = info.limits;
        let policy = self.policy_for(&info).await;
        let running = match plugin.linked {
            Linked::Agent(pre) => {
                let config = self
                    .config
                    .agent_config
                    .get(&info.name)
                    .cloned()
                    .unwrap_or_else(|| "{}".into());
                if let Some(o) = &self.orders {
                    o.set_agent_limits(&name, agent_risk_limits(&policy));
                }
                let spec = AgentSpec {
                    pre,
                    name,
                    limits,
                    state: Some(self.state.clone()),
                    policy: policy.clone(),
                    bus: Some(self.bus.clone()),
                    config,
                    market: self.market.clone(),
                    orders: self.orders.clone(),
                    tools: Some(self.tool_access.clone()),
                    services: AgentServices {
                        timers: Some(self.timers.clone()),
                        audit: Some(self.audit.writer()),
                        supervision: self.config.supervision,
                        inject_trap_after: self
                            .config
                            .inject_trap
                            .as_ref()
                            .filter(|(agent, _)| *agent == info.name)
                            .map(|(_, n)| *n),
                        inject_trap_on: self
                            .config
                            .inject_trap
                            .as_ref()
                            .filter(|(agent, _)| *agent == info.name)
                            .and(self.config.inject_trap_on.clone()),
                    },
                };
                let clock = self.config.clock.clone();
                Running::Agent(AgentHandle::spawn_with_clock(spec, clock, handover).await?)
            }
            Linked::Tool(pre) => {
                let runner = ToolRunner::new(pre, name, limits, policy.clone());
                let spec = runner.describe().await?;
                Running::Tool(runner, Box::new(spec))
            }
        };
        Ok(Entry {
            info,
            policy,
            key,
            running,
        })
    }

    /// Every running plugin, by name.
    pub async fn plugins(&self) -> Vec<PluginStatus> {
        let reg = self.registry.read().await;
        let mut out: Vec<PluginStatus> = reg
            .by_name
            .values()
            .map(|e| match &e.running {
                Running::Agent(h) => status_of(e.info.clone(), Some((h.stats(), h))),
                Running::Tool(..) => status_of(e.info.clone(), None),
            })
            .collect();
        out.sort_by(|a, b| a.info.name.cmp(&b.info.name));
        out
    }

    /// Files in the folder that were refused, with the reason.
    pub async fn rejected(&self) -> Vec<RejectedFile> {
        self.registry
            .read()
            .await
            .rejected
            .iter()
            .map(|(f, r)| RejectedFile {
                file: f.clone(),
                reason: r.reason.clone(),
            })
            .collect()
    }

    /// The running tools and their specs.
    pub async fn tools(&self) -> Vec<ToolSpec> {
        let reg = self.registry.read().await;
        let mut out: Vec<ToolSpec> = reg
            .by_name
            .values()
            .filter_map(|e| match &e.running {
                Running::Tool(_, spec) => Some((**spec).clone()),
                Running::Agent(_) => None,
            })
            .collect();
        out.sort_by(|a, b| a.name.cmp(&b.name));
        out
    }

    /// Calls a tool by plugin name (or by the name its spec gives).
    pub async fn invoke_tool(&self, name: &str, args_json: &str) -> Result<String, CallError> {
        let runner = {
            let reg = self.registry.read().await;
            reg.by_name
                .values()
                .find_map(|e| match &e.running {
                    Running::Tool(r, spec) if e.info.name == name || spec.name == name => {
                        Some(r.clone())
                    }
                    _ => None,
                })
                .ok_or_else(|| CallError::Unavailable {
                    plugin: Arc::from(name),
                    reason: "no such tool is loaded".into(),
                })?
        };
        runner.invoke(args_json).await
    }

    /// The tools `caller` may call (its `tools.call` grants; nothing is audited): the plugins
    /// folder's, then the registered ones, sorted by name.
    pub async fn callable_tools(&self, caller: &Policy) -> Vec<CallableTool> {
        let grants = caller.grants();
        let may_call = |name: &str| grants.check(&Request::CallTool { name }).is_allowed();
        let mut out: Vec<CallableTool> = {
            let reg = self.registry.read().await;
            reg.by_name
                .values()
                .filter_map(|e| match &e.running {
                    Running::Tool(_, spec) if may_call(&spec.name) => Some(CallableTool {
                        spec: (**spec).clone(),
                        version: e.info.version.clone(),
                        digest: e.info.digest.clone(),
                    }),
                    _ => None,
                })
                .collect()
        };
        for listing in self.tools.list() {
            if !may_call(&listing.name) || out.iter().any(|t| t.spec.name == listing.name) {
                continue;
            }
            if let Some(t) = self.tools.get(&listing.name) {
                out.push(CallableTool {
                    spec: t.spec.clone(),
                    version: t.version.clone(),
                    digest: t.digest.clone(),
                });
            }
        }
        out.sort_by(|a, b| a.spec.name.cmp(&b.spec.name));
        out
    }

    /// The tools registered at run time.
    pub fn registered_tools(&self) -> &ToolRegistry {
        &self.tools
    }

    /// Validates and registers a tool component (see [`crate::tools`]); audited as `actor`.
    ///
    /// Validation compiles the component and runs its `describe` and an example call, which
    /// can take a second of CPU: it runs on a background thread at a low CPU priority
    /// ([`crate::engine::run_in_background`]), [`VALIDATIONS`] at a time, never on the threads
    /// that deliver agents' events, so a registration cannot delay another agent (and costs
    /// the registering agent, which waits, no CPU budget).
    pub async fn register_tool(
        &self,
        bytes: &[u8],
        actor: &str,
    ) -> Result<Arc<RegisteredTool>, RegistryError> {
        let Some(host) = self.this.upgrade() else {
            return Err(RegistryError::Storage("the host is shutting down".into()));
        };
        let gate = validation_gate();
        let _permit = gate
            .acquire()
            .await
            .map_err(|e| RegistryError::Storage(format!("validation: {e}")))?;
        let (bytes, actor) = (bytes.to_vec(), actor.to_owned());
        crate::engine::run_in_background(
            async move { host.register_tool_here(&bytes, &actor).await },
        )
        .await
        .map_err(|e| RegistryError::Storage(format!("validation: {e}")))?
    }

    async fn register_tool_here(
        &self,
        bytes: &[u8],
        actor: &str,
    ) -> Result<Arc<RegisteredTool>, RegistryError> {
        let grants = self.tool_grants().await;
        let reserved: Vec<String> = self.registry.read().await.by_name.keys().cloned().collect();
        let writer = self.audit.writer();
        self.tools
            .register(
                &self.loader,
                &grants,
                bytes,
                &reserved,
                Some(&writer),
                actor,
            )
            .await
    }

    /// Unregisters `NAME` (every version) or `NAME@VERSION`; audited as `actor`.
    pub async fn unregister_tool(
        &self,
        spec: &str,
        actor: &str,
    ) -> Result<Vec<Removed>, RegistryError> {
        let writer = self.audit.writer();
        self.tools.unregister(spec, Some(&writer), actor).await
    }

    /// Calls a tool as the operator: a tool from the plugins folder by name, else a registered
    /// tool (`NAME` or `NAME@VERSION`) with its arguments checked against its schema first.
    ///
    /// Each tool name has a circuit breaker ([`BreakerConfig::default`]: five failures in a
    /// row open it for 2 s, doubling to a minute): while it is open a call is refused at once
    /// (`unavailable`) instead of spending another instance on a tool that keeps failing. A
    /// failure is the tool not working (a limit, a trap, an error or a bad answer); refused
    /// arguments or grants are not. Its transitions are logged and audited (kind `breaker`).
    pub async fn call_tool(&self, spec: &str, args_json: &str) -> Result<String, ToolCallError> {
        let key = spec.split('@').next().unwrap_or(spec).to_string();
        let permit = {
            let mut breakers = self.tool_breakers.lock().unwrap_or_else(|p| p.into_inner());
            let breaker = breakers
                .entry(key.clone())
                .or_insert_with(|| CircuitBreaker::new(BreakerConfig::default()));
            match breaker.allow(std::time::Instant::now()) {
                Ok(p) => p,
                Err(open) => {
                    return Err(ToolCallError::Unavailable {
                        tool: spec.to_string(),
                        reason: format!(
                            "circuit open after repeated failures; retry in {} ms",
                            open.retry_after.as_millis()
                        ),
                    });
                }
            }
        };
        let result = self.call_tool_unguarded(spec, args_json).await;
        let change = {
            let mut breakers = self.tool_breakers.lock().unwrap_or_else(|p| p.into_inner());
            breakers.get_mut(&key).and_then(|breaker| {
                let before = breaker.state();
                match &result {
                    Ok(_) => breaker.on_success(permit),
                    Err(ToolCallError::Limit { .. } | ToolCallError::Tool { .. }) => {
                        breaker.on_failure(permit, std::time::Instant::now())
                    }
                    Err(_) => breaker.release(permit),
                }
                let after = breaker.state();
                (before != after).then(|| (before, after, breaker.config().cool_down))
            })
        };
        if let Some((before, after, cool_down)) = change {
            let detail = format!(
                "circuit {} -> {} (cool-down {} ms)",
                before.as_str(),
                after.as_str(),
                cool_down.as_millis()
            );
            if after == BreakerState::Open {
                tracing::error!(tool = %key, "{detail}");
            } else {
                tracing::info!(tool = %key, "{detail}");
            }
            self.audit
                .writer()
                .record(crate::audit::AuditRecord::breaker(&key, detail));
        }
        result
    }

    async fn call_tool_unguarded(
        &self,
        spec: &str,
        args_json: &str,
    ) -> Result<String, ToolCallError> {
        let in_folder = {
            let reg = self.registry.read().await;
            reg.by_name.values().any(|e| match &e.running {
                Running::Tool(_, s) => e.info.name == spec || s.name == spec,
                Running::Agent(_) => false,
            })
        };
        if !in_folder {
            return self.tools.invoke(spec, args_json, None).await;
        }
        self.invoke_tool(spec, args_json).await.map_err(|e| {
            let tool = spec.to_string();
            match e {
                CallError::Limit { limit, .. } => ToolCallError::Limit { tool, limit },
                CallError::Guest {
                    message,
                    call: "invoke",
                    ..
                } => ToolCallError::Tool { tool, message },
                other => ToolCallError::Tool {
                    tool,
                    message: other.to_string(),
                },
            }
        })
    }

    async fn tool_grants(&self) -> BookGrants {
        BookGrants {
            book: self.book.lock().await.clone(),
            audit: Some(self.audit.writer()),
            sample_allows: self.config.audit_sample_allows,
        }
    }

    /// Delivers an event to one agent and waits for the outcome.
    pub async fn deliver(&self, agent: &str, event: Event) -> Result<(), CallError> {
        let handle = self.agent(agent).await?;
        handle.deliver(event).await
    }

    /// Queues an event for every agent without waiting (a full mailbox refuses it).
    pub async fn broadcast(&self, event: Event) {
        let handles: Vec<AgentHandle> = {
            let reg = self.registry.read().await;
            reg.by_name
                .values()
                .filter_map(|e| match &e.running {
                    Running::Agent(h) => Some(h.clone()),
                    Running::Tool(..) => None,
                })
                .collect()
        };
        for h in handles {
            if let Err(e) = h.post(event.clone()) {
                tracing::warn!(error = %e, "event not queued");
            }
        }
    }

    /// Agents' timers.
    pub fn timers(&self) -> &Arc<crate::timers::Timers> {
        &self.timers
    }

    /// Every running agent's handle.
    async fn agent_handles(&self) -> Vec<AgentHandle> {
        let reg = self.registry.read().await;
        reg.by_name
            .values()
            .filter_map(|e| match &e.running {
                Running::Agent(h) => Some(h.clone()),
                Running::Tool(..) => None,
            })
            .collect()
    }

    /// Puts agent `name` to sleep (after what is queued for it); whether it went to sleep.
    pub async fn sleep_agent(&self, name: &str) -> Result<bool, CallError> {
        self.agent(name).await?.sleep().await
    }

    /// Puts every agent to sleep; how many went to sleep.
    pub async fn sleep_all(&self) -> usize {
        let mut n = 0;
        for h in self.agent_handles().await {
            if matches!(h.sleep().await, Ok(true)) {
                n += 1;
            }
        }
        n
    }

    /// Wakes agent `name` (makes its instance) if it sleeps.
    pub async fn wake_agent(&self, name: &str) -> Result<(), CallError> {
        self.agent(name).await?.wake().await
    }

    /// Releases agent `name` from quarantine, audited as `actor`; whether it was quarantined.
    pub async fn release_agent(&self, name: &str, actor: &str) -> Result<bool, CallError> {
        self.agent(name).await?.release(actor).await
    }

    async fn agent(&self, name: &str) -> Result<AgentHandle, CallError> {
        let reg = self.registry.read().await;
        match reg.by_name.get(name).map(|e| &e.running) {
            Some(Running::Agent(h)) => Ok(h.clone()),
            _ => Err(CallError::Unavailable {
                plugin: Arc::from(name),
                reason: "no such agent is loaded".into(),
            }),
        }
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

fn status_of(info: PluginInfo, agent: Option<(&AgentStats, &AgentHandle)>) -> PluginStatus {
    let mut s = PluginStatus {
        info,
        delivered: 0,
        failed: 0,
        restarts: 0,
        refused: 0,
        log_dropped: 0,
        bus_dropped: 0,
        bus_refused: 0,
        bus_expired: 0,
        md_routed: 0,
        md_taken: 0,
        bus_sent_refused: 0,
        mailbox_depth: 0,
        quarantined: false,
        state: "ready".into(),
        fuel_used: 0,
        busy_ms: 0.0,
        sleeps: 0,
        wakes: 0,
        memory_bytes: 0,
        snapshots: 0,
        snapshot_ms: 0.0,
        redelivered: 0,
        last_error: None,
    };
    if let Some((st, h)) = agent {
        s.delivered = st.delivered.load(Ordering::Relaxed);
        s.failed = st.failed.load(Ordering::Relaxed);
        s.restarts = st.restarts.load(Ordering::Relaxed);
        s.refused = st.refused.load(Ordering::Relaxed);
        s.log_dropped = st.log_dropped.load(Ordering::Relaxed);
        s.quarantined = st.quarantined();
        s.state = st.state().as_str().into();
        s.fuel_used = st.fuel_used.load(Ordering::Relaxed);
        s.busy_ms = st.busy_ns.load(Ordering::Relaxed) as f64 / 1e6;
        s.sleeps = st.sleeps.load(Ordering::Relaxed);
        s.wakes = st.wakes.load(Ordering::Relaxed);
        s.memory_bytes = st.memory_bytes.load(Ordering::Relaxed);
        s.snapshots = st.snapshots.load(Ordering::Relaxed);
        s.snapshot_ms = st.snapshot_ns.load(Ordering::Relaxed) as f64 / 1e6;
        s.redelivered = st.redelivered.load(Ordering::Relaxed);
        s.mailbox_depth = h.mailbox_depth();
        if let Some(m) = h.mailbox_stats() {
            s.mailbox_depth += m.depth;
            s.bus_dropped = m.dropped;
            s.bus_refused = m.refused;
            s.bus_expired = m.expired;
            s.md_routed = m.md_routed;
            s.md_taken = m.md_taken;
            s.bus_sent_refused = m.sent_refused;
        }
        s.last_error = st.last_error.lock().ok().and_then(|l| l.clone());
    }
    s
}

async fn stop(entry: Entry) {
    if let Running::Agent(h) = entry.running {
        h.detach_bus();
        // Waits for queued events to finish; the snapshot is not needed.
        let _ = h.retire().await.await;
    }
}

/// The `.wasm` files of a folder, sorted.
fn wasm_files(dir: &Path) -> std::io::Result<Vec<PathBuf>> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "wasm") && p.is_file())
        .collect();
    files.sort();
    Ok(files)
}
