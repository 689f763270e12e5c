//! [`StoreState`], the one per-store context every host interface works on, and
//! [`guarded`], which runs one event or call under the plugin's limits and turns whatever
//! stopped it into a [`CallError`] that names the plugin, the call and the limit.
//!
//! **Architecture invariant:** every entry into guest code (init, events, tool calls,
//! snapshot/restore) goes through [`guarded`]; nothing else resets fuel or deadlines.

use std::sync::Arc;
use std::time::Instant;

use wasmtime::{Engine, Store, Trap, UpdateDeadline};
use wasmtime_wasi::{ResourceTable, WasiCtx, WasiCtxBuilder, WasiCtxView, WasiView};
use wasmtime_wasi_http::{WasiHttpCtxView, WasiHttpView};

use crate::caps::Request;
use crate::clock::Clock;
use crate::interfaces::log::LogBudget;
use crate::interfaces::messaging::BusLink;
use crate::limits::{GuestLimiter, LimitExceeded, Limits};
use crate::output::{OutputBudget, Stream};
use crate::policy::{CheckCache, Policy, Refusal};
use crate::state_store::StateStore;

pub mod http;

pub use http::HttpState;

/// Everything the host keeps per store (one store per agent instance or tool call).
pub struct StoreState {
    /// Name of the plugin, for logs and errors.
    pub plugin: Arc<str>,
    /// Limits of this plugin.
    pub limits: Limits,
    /// Memory and table accounting.
    pub limiter: GuestLimiter,
    /// Guest stdout/stderr budget.
    pub output: OutputBudget,
    /// `log` interface budget.
    pub log: LogBudget,
    /// The plugin's persistent state (agents only).
    pub state: Option<StateStore>,
    /// When the current event or call must end.
    pub deadline: Instant,
    /// The plugin's grants; every capability use is checked here.
    pub policy: Arc<Policy>,
    /// The policy's WASI generation when this store's preopens and environment were made.
    pub wasi_generation: u64,
    /// Recent allowed requests of this store.
    pub checks: CheckCache,
    /// The agent's link to the bus (agents only).
    pub bus: Option<BusLink>,
    /// The clock the guest's WASI clocks read (virtual during a replay); host interfaces
    /// that stamp times use it too.
    pub clock: Clock,
    /// The market service the `market-data` interface reads (agents of a host with a feed).
    pub market: Option<Arc<crate::market::service::MarketService>>,
    /// The agent's market-data subscriptions: the id the guest got, and its bus subscriptions.
    pub market_subs: Vec<(u64, Vec<crate::bus::SubscriptionId>)>,
    /// The order router the `orders` interface uses (agents of a host that trades).
    pub orders: Option<Arc<crate::orders::service::OrderService>>,
    /// The tools the `tools` interface reaches (agents of a host that serves tools).
    pub tools: Option<Arc<dyn crate::tools::ToolAccess>>,
    /// The host's timers the `timers` interface sets (agents of a host).
    pub timers: Option<Arc<crate::timers::Timers>>,
    /// `wasi:http` (tools only; only the tool linker offers it): the context and the hooks
    /// that check, send, cap and audit every request (`store::http`).
    pub http: Option<HttpState>,
    wasi: WasiCtx,
    table: ResourceTable,
}

impl StoreState {
    /// Checks one capability use before any I/O (see [`Policy::check`]).
    pub fn check(&mut self, req: &Request<'_>) -> Result<(), Refusal> {
        self.checks.check(&self.policy, req)
    }
}

impl WasiView for StoreState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

impl WasiHttpView for StoreState {
    fn http(&mut self) -> WasiHttpCtxView<'_> {
        // Only tool stores get `wasi:http` state (`ToolRunner`); any other store (never
        // linked to wasi:http) refuses every request.
        let policy = &self.policy;
        let http = self
            .http
            .get_or_insert_with(|| HttpState::refusing(policy.clone()));
        // Requests made from now on end before the current call's deadline.
        http.set_deadline(self.deadline);
        WasiHttpCtxView {
            ctx: &mut http.ctx,
            table: &mut self.table,
            hooks: &mut http.hooks,
        }
    }
}

/// Creates a store for `plugin` with WASI linked deny-by-default: no arguments, no network,
/// and only the directories (cap-std preopens at the same path) and environment variables
/// the policy grants; stdout and stderr go to the log under a cap. The WASI clocks are the
/// system's ([`new_store_with_clock`] gives a store another clock).
pub fn new_store(
    engine: &Engine,
    plugin: Arc<str>,
    limits: Limits,
    state: Option<StateStore>,
    policy: Arc<Policy>,
    bus: Option<BusLink>,
) -> Store<StoreState> {
    new_store_with_clock(engine, plugin, limits, state, policy, bus, Clock::system())
}

/// [`new_store`] whose guest reads `clock` through the WASI clocks (see [`Clock::install`]).
pub fn new_store_with_clock(
    engine: &Engine,
    plugin: Arc<str>,
    limits: Limits,
    state: Option<StateStore>,
    policy: Arc<Policy>,
    bus: Option<BusLink>,
    clock: Clock,
) -> Store<StoreState> {
    let output = OutputBudget::new(plugin.clone(), limits.output_bytes);
    let mut builder = WasiCtxBuilder::new();
    builder
        .stdout(output.sink(Stream::Stdout))
        .stderr(output.sink(Stream::Stderr))
        .allow_tcp(false)
        .allow_udp(false)
        .allow_ip_name_lookup(false);
    clock.install(&plugin, &mut builder);
    let wasi_generation = policy.wasi_generation();
    grant_wasi(&mut builder, &policy);
    let wasi = builder.build();
    let data = StoreState {
        policy,
        wasi_generation,
        checks: CheckCache::default(),
        bus,
        clock,
        market: None,
        market_subs: Vec::new(),
        orders: None,
        tools: None,
        timers: None,
        http: None,
        log: LogBudget::default(),
        plugin,
        limits,
        limiter: GuestLimiter::new(&limits),
        output,
        state,
        deadline: Instant::now(),
        wasi,
        table: ResourceTable::new(),
    };
    let mut store = Store::new(engine, data);
    store.limiter(|s| &mut s.limiter);
    // Checked every epoch tick while guest code runs: past the deadline the call traps;
    // before it, the guest yields so one busy plugin never holds an executor thread.
    store.epoch_deadline_callback(|ctx| {
        let data = ctx.data();
        if Instant::now() >= data.deadline {
            Err(wasmtime::Error::new(LimitExceeded::Deadline(
                data.limits.deadline_ms,
            )))
        } else {
            Ok(UpdateDeadline::Yield(1))
        }
    });
    store
}

/// Adds the granted directories and environment variables to a WASI context, auditing each.
fn grant_wasi(builder: &mut WasiCtxBuilder, policy: &Policy) {
    use wasmtime_wasi::FsPerms;
    let grants = policy.grants();
    for fs in grants.fs_dirs() {
        let dir = fs.dir.as_str();
        let req = match fs.writable {
            true => Request::FsWrite { path: dir },
            false => Request::FsRead { path: dir },
        };
        // Audited as an allow (the filesystem is always audited).
        if policy.check(&req).is_err() {
            continue;
        }
        let perms = match fs.writable {
            true => FsPerms::ReadWrite,
            false => FsPerms::ReadOnly,
        };
        if let Err(e) = builder.preopened_dir(dir, dir, perms) {
            tracing::warn!(plugin = %policy.plugin(), dir, error = %e, "granted directory cannot be opened");
        }
    }
    for name in grants.env_names() {
        if policy.check(&Request::Env { name }).is_err() {
            continue;
        }
        match std::env::var(name) {
            Ok(value) => {
                builder.env(name, value);
            }
            Err(_) => {
                tracing::warn!(plugin = %policy.plugin(), name, "granted environment variable is not set on the host")
            }
        }
    }
}

/// Why an event or call into a plugin failed.
#[derive(Debug, Clone, thiserror::Error)]
pub enum CallError {
    /// A limit ended it.
    #[error("plugin \"{plugin}\": {call}: {limit}")]
    Limit {
        /// Plugin name.
        plugin: Arc<str>,
        /// The export that was running (`on-timer`, `invoke`, ...).
        call: &'static str,
        /// The limit.
        limit: LimitExceeded,
    },
    /// The guest trapped (a panic, an abort, a bad memory access).
    #[error("plugin \"{plugin}\": {call}: trapped: {message}")]
    Trap {
        /// Plugin name.
        plugin: Arc<str>,
        /// The export that was running.
        call: &'static str,
        /// What the trap was.
        message: String,
    },
    /// The guest returned an error value (not a trap).
    #[error("plugin \"{plugin}\": {call}: returned an error: {message}")]
    Guest {
        /// Plugin name.
        plugin: Arc<str>,
        /// The export that was running.
        call: &'static str,
        /// The guest's error.
        message: String,
    },
    /// The plugin cannot take calls (quarantined, unloaded, not found).
    #[error("plugin \"{plugin}\": {reason}")]
    Unavailable {
        /// Plugin name.
        plugin: Arc<str>,
        /// Why.
        reason: String,
    },
}

impl CallError {
    /// The limit that ended the call, if a limit did.
    pub fn limit(&self) -> Option<&LimitExceeded> {
        match self {
            CallError::Limit { limit, .. } => Some(limit),
            _ => None,
        }
    }

    /// Whether the instance is unusable afterwards (a trap or a limit).
    pub fn is_fatal_to_instance(&self) -> bool {
        matches!(self, CallError::Limit { .. } | CallError::Trap { .. })
    }
}

/// Runs `f` (one call into the guest) with a fresh fuel budget, deadline, and output and log
/// budgets, and classifies any failure.
pub async fn guarded<R>(
    store: &mut Store<StoreState>,
    call: &'static str,
    f: impl AsyncFnOnce(&mut Store<StoreState>) -> wasmtime::Result<R>,
) -> Result<R, CallError> {
    let limits = store.data().limits;
    let plugin = store.data().plugin.clone();
    let start = Instant::now();
    {
        let data = store.data_mut();
        data.deadline = start + limits.deadline();
        data.output.reset();
        data.log.reset();
    }
    let internal = |message: String| CallError::Trap {
        plugin: plugin.clone(),
        call,
        message,
    };
    store
        .set_fuel(limits.fuel)
        .map_err(|e| internal(e.to_string()))?;
    store.set_epoch_deadline(1);
    // The epoch callback stops guest code at the deadline; this timeout also covers time
    // spent waiting inside host calls (which the epoch cannot interrupt).
    let outcome = tokio::time::timeout(limits.deadline(), f(store)).await;
    let data = store.data();
    data.output.flush(Stream::Stdout);
    data.output.flush(Stream::Stderr);
    data.log.report_dropped(&plugin, call);
    match outcome {
        Ok(Ok(r)) => Ok(r),
        Err(_elapsed) => Err(CallError::Limit {
            plugin,
            call,
            limit: LimitExceeded::Deadline(limits.deadline_ms),
        }),
        Ok(Err(e)) => Err(classify(e, plugin, call, &limits)),
    }
}

fn classify(
    e: wasmtime::Error,
    plugin: Arc<str>,
    call: &'static str,
    limits: &Limits,
) -> CallError {
    if let Some(limit) = e.downcast_ref::<LimitExceeded>() {
        return CallError::Limit {
            plugin,
            call,
            limit: limit.clone(),
        };
    }
    let limit = match e.downcast_ref::<Trap>() {
        Some(Trap::OutOfFuel) => LimitExceeded::Fuel(limits.fuel),
        Some(Trap::StackOverflow) => LimitExceeded::Stack,
        Some(Trap::Interrupt) => LimitExceeded::Deadline(limits.deadline_ms),
        Some(Trap::UnreachableCodeReached) => {
            return CallError::Trap {
                plugin,
                call,
                message: "wasm `unreachable` executed (the guest panicked or aborted)".into(),
            };
        }
        Some(Trap::MemoryOutOfBounds) => {
            return CallError::Trap {
                plugin,
                call,
                message: "out of bounds memory access (in a Rust guest, often an overflow of its \
                          shadow stack in linear memory)"
                    .into(),
            };
        }
        Some(trap) => {
            return CallError::Trap {
                plugin,
                call,
                message: trap.to_string(),
            };
        }
        None => {
            return CallError::Trap {
                plugin,
                call,
                message: e.root_cause().to_string(),
            };
        }
    };
    CallError::Limit {
        plugin,
        call,
        limit,
    }
}
