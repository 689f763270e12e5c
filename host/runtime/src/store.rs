//! [`StoreState`], the one per-store context every host interface works on, and
//! [`guarded`], which runs one event or call under the plugin's limits and turns whatever
//! stopped it into a [`CallError`] that names the plugin, the call and the limit.
//!
//! **Architecture invariant:** every entry into guest code (init, events, tool calls,
//! snapshot/restore) goes through [`guarded`]; nothing else resets fuel or budgets.
//!
//! **Architecture invariant: nothing outside the guest can fail its event.** An event's
//! compute is bounded by fuel (deterministic) and by the CPU time the guest's own thread
//! consumed ([`CpuMeter`]), never by wall time: a descheduled thread, a wait in a host call
//! or another plugin's work costs the guest nothing. Waits in host calls have their own
//! timeouts (on the host clock). The only wall-clock limit is the hang guard
//! ([`Limits::hang_guard_ms`]), a last resort far above the CPU budget.
//!
//! How the CPU time is measured, cheaply: the guest runs inside a future that wasmtime
//! resumes on whatever thread polls it, and one poll runs on one thread from start to end. So
//! the meter takes the thread's CPU clock (`CLOCK_THREAD_CPUTIME_ID`) at the start and end of
//! every poll but the first and adds the difference; a poll that returns `Pending` (the
//! guest awaits a host call, or yields at an epoch tick) stops the count until the next poll.
//! The first poll is the hot path of every event (a few hundred ns) and reading the CPU clock
//! costs about as much, so it is measured lazily: from the first epoch tick the guest runs
//! into (the epoch callback reads the clock). What runs before that tick, about one tick
//! ([`crate::engine::EPOCH_TICK`]) of running at most while the ticker keeps time, is not
//! charged: an event shorter than a tick costs nothing on the meter, and fuel bounds it. The
//! meter never charges a guest for more than its thread ran.
//!
//! Synchronous host work done on the guest's behalf inside a poll (checking a grant, routing
//! a message, encoding a state write) runs on the guest's thread and counts; waiting does not.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::Instant;

use wasmtime::{Engine, Store, Trap, UpdateDeadline};
use wasmtime_wasi::{ResourceTable, WasiCtx, WasiCtxBuilder, WasiCtxView, WasiView};
use wasmtime_wasi_http::{WasiHttpCtxView, WasiHttpView};

use crate::clock::Clock;
use crate::interfaces::log::LogBudget;
use crate::interfaces::messaging::BusLink;
use crate::limits::{GuestLimiter, LimitExceeded, Limits};
use crate::output::{OutputBudget, Stream};
use crate::policy::{CheckCache, Policy};
use crate::state_store::StateStore;
use colony_caps::Request;

mod contexts;
pub mod http;

pub use contexts::{add_agent_interfaces, add_tool_interfaces};
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
    /// When the current event or call's wall-clock hang guard fires: every wait in a host
    /// call ends before it.
    pub hang_guard_at: Instant,
    /// The CPU time the guest consumed in the current event or call.
    pub cpu: Arc<CpuMeter>,
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
        // Requests made from now on end before the current call's hang guard (each also
        // has its own, shorter timeout).
        let margin = self.limits.wait_margin();
        http.set_deadline(
            self.hang_guard_at
                .checked_sub(margin)
                .unwrap_or(self.hang_guard_at),
        );
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
pub(crate) fn new_store_with_clock(
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
        hang_guard_at: Instant::now(),
        cpu: Arc::new(CpuMeter::default()),
        wasi,
        table: ResourceTable::new(),
    };
    let mut store = Store::new(engine, data);
    store.limiter(|s| &mut s.limiter);
    // Called at every epoch tick while guest code runs (on the guest's thread): the CPU the
    // guest used since the last look is counted; past its budget the call traps, as it does
    // past the hang guard; otherwise the guest yields, so one busy plugin never holds an
    // executor thread.
    store.epoch_deadline_callback(|ctx| {
        let data = ctx.data();
        let used = data.cpu.tick();
        if used > data.limits.cpu_ms.saturating_mul(1_000_000) {
            return Err(wasmtime::Error::new(LimitExceeded::Cpu(data.limits.cpu_ms)));
        }
        if Instant::now() >= data.hang_guard_at {
            return Err(wasmtime::Error::new(LimitExceeded::HangGuard(
                data.limits.hang_guard_ms,
            )));
        }
        Ok(UpdateDeadline::Yield(1))
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
        /// What the trap was, then, if the guest wrote to stderr during the call, `; stderr: `
        /// and the last lines it wrote (at most about 2 KiB, on one line, escaped): a Rust
        /// panic's `panicked at FILE:LINE:COL: message`, a Python traceback.
        message: String,
    },
    /// The arguments of a tool call are not JSON or do not fit the tool's input schema; the
    /// tool never ran.
    #[error("plugin \"{plugin}\": {call}: invalid arguments {error}")]
    InvalidArguments {
        /// Plugin name.
        plugin: Arc<str>,
        /// The export that was to run (`invoke`).
        call: &'static str,
        /// Where and why.
        error: crate::tools::ArgsError,
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
    pub(crate) fn is_fatal_to_instance(&self) -> bool {
        matches!(self, CallError::Limit { .. } | CallError::Trap { .. })
    }
}

/// Runs `f` (one call into the guest) with a fresh fuel budget, CPU-time budget, hang guard,
/// and output and log budgets, and classifies any failure.
pub async fn guarded<R>(
    store: &mut Store<StoreState>,
    call: &'static str,
    f: impl AsyncFnOnce(&mut Store<StoreState>) -> wasmtime::Result<R>,
) -> Result<R, CallError> {
    let limits = store.data().limits;
    let hang_guard_at = Instant::now() + limits.hang_guard();
    let meter = {
        let data = store.data_mut();
        data.hang_guard_at = hang_guard_at;
        data.log.reset();
        data.cpu.reset();
        data.cpu.clone()
    };
    if let Err(e) = store.set_fuel(limits.fuel) {
        // Nothing ran; the call still ends here, so the next one starts with clean budgets.
        store.data().output.end_call();
        return Err(CallError::Trap {
            plugin: store.data().plugin.clone(),
            call,
            message: e.to_string(),
        });
    }
    store.set_epoch_deadline(1);
    // The epoch callback stops guest code past its CPU budget or the hang guard; the
    // `Metered` future's timer is the hang guard for time spent waiting inside host calls
    // (which the epoch cannot interrupt; each wait also has its own, shorter timeout).
    let outcome = {
        let guest = std::pin::pin!(f(store));
        Metered {
            inner: guest,
            meter: &meter,
            polls: 0,
            hang_guard_at,
            hang_timer: None,
        }
        .await
    };
    let data = store.data();
    // Forwards partial last lines, restores the output budget for the next call and takes
    // this call's stderr, which a trap's error carries.
    let stderr = data.output.end_call();
    data.log.report_dropped(&data.plugin, call);
    match outcome {
        Some(Ok(r)) => Ok(r),
        None => Err(CallError::Limit {
            plugin: data.plugin.clone(),
            call,
            limit: LimitExceeded::HangGuard(limits.hang_guard_ms),
        }),
        Some(Err(e)) => Err(with_stderr(
            classify(e, data.plugin.clone(), call, &limits),
            &stderr,
        )),
    }
}

/// A trap's error followed by what the guest wrote to stderr during the call (a Rust
/// panic's message and location, a Python traceback): `…: trapped: MESSAGE; stderr: TEXT`,
/// bounded and escaped ([`crate::output::StderrTail::render`]). A limit's or a guest's own
/// error is left as it is.
fn with_stderr(e: CallError, stderr: &crate::output::StderrTail) -> CallError {
    match e {
        CallError::Trap {
            plugin,
            call,
            mut message,
        } => {
            if let Some(text) = stderr.render() {
                message.push_str("; stderr: ");
                message.push_str(&text);
            }
            CallError::Trap {
                plugin,
                call,
                message,
            }
        }
        other => other,
    }
}

/// The CPU time a guest consumed in its current event or call, measured on the threads that
/// ran it (see the module doc). Touched only by the thread polling the guest, so relaxed
/// atomics suffice; they are atomics because the meter is shared between the store and the
/// future that runs it.
#[derive(Debug, Default)]
pub struct CpuMeter {
    /// Nanoseconds of CPU counted so far in this event or call.
    used_ns: AtomicU64,
    /// The thread CPU clock at the last look, valid when `mark_thread` is this thread's.
    mark_ns: AtomicU64,
    /// The [`thread_token`] of the thread the mark was taken on; 0: no mark.
    mark_thread: AtomicU64,
}

impl CpuMeter {
    /// Nanoseconds of CPU the guest has used in the current event or call, as far as the
    /// meter has looked (an event shorter than an epoch tick may show 0).
    pub fn used_ns(&self) -> u64 {
        self.used_ns.load(Ordering::Relaxed)
    }

    fn reset(&self) {
        self.used_ns.store(0, Ordering::Relaxed);
        self.mark_thread.store(0, Ordering::Relaxed);
    }

    /// A poll begins on this thread (every poll but an event's first): mark the CPU clock.
    fn poll_started(&self) {
        self.mark_ns.store(thread_cpu_ns(), Ordering::Relaxed);
        self.mark_thread.store(thread_token(), Ordering::Relaxed);
    }

    /// A poll ended: count the CPU since the mark, if this thread took one.
    fn poll_ended(&self) {
        let token = thread_token();
        if self.mark_thread.load(Ordering::Relaxed) == token {
            let spent = thread_cpu_ns().saturating_sub(self.mark_ns.load(Ordering::Relaxed));
            self.used_ns.fetch_add(spent, Ordering::Relaxed);
        }
        self.mark_thread.store(0, Ordering::Relaxed);
    }

    /// An epoch tick seen by the running guest: counts the CPU since the last mark (nothing
    /// without a mark on this thread: the start of an event's first poll, see the module doc)
    /// and marks again. Returns the total.
    fn tick(&self) -> u64 {
        let now = thread_cpu_ns();
        let token = thread_token();
        let spent = if self.mark_thread.load(Ordering::Relaxed) == token {
            now.saturating_sub(self.mark_ns.load(Ordering::Relaxed))
        } else {
            0
        };
        self.mark_ns.store(now, Ordering::Relaxed);
        self.mark_thread.store(token, Ordering::Relaxed);
        self.used_ns.fetch_add(spent, Ordering::Relaxed) + spent
    }
}

/// The CPU time the calling thread has consumed, in ns (`CLOCK_THREAD_CPUTIME_ID`).
pub fn thread_cpu_ns() -> u64 {
    let t = rustix::time::clock_gettime(rustix::time::ClockId::ThreadCPUTime);
    u64::try_from(t.tv_sec)
        .unwrap_or(0)
        .saturating_mul(1_000_000_000)
        .saturating_add(u64::try_from(t.tv_nsec).unwrap_or(0))
}

/// A number unique to the calling thread (never 0), cheaper to get than its id.
fn thread_token() -> u64 {
    static NEXT: AtomicU64 = AtomicU64::new(1);
    thread_local! {
        static TOKEN: u64 = NEXT.fetch_add(1, Ordering::Relaxed);
    }
    TOKEN.with(|t| *t)
}

/// The future of one call into the guest, with its CPU time metered per poll (see the
/// module doc) and the hang guard as a timer for the time it spends waiting: `None` when the
/// guard fired. The timer is armed only when the guest first waits (returns `Pending`), so an
/// event that runs to its end in one poll, the hot path, never touches the timer wheel.
struct Metered<'a, F> {
    inner: Pin<&'a mut F>,
    meter: &'a CpuMeter,
    polls: u64,
    hang_guard_at: Instant,
    hang_timer: Option<Pin<Box<tokio::time::Sleep>>>,
}

impl<F: Future> Future for Metered<'_, F> {
    type Output = Option<F::Output>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = &mut *self;
        if this.polls > 0 {
            this.meter.poll_started();
        }
        this.polls += 1;
        let out = this.inner.as_mut().poll(cx);
        this.meter.poll_ended();
        if let Poll::Ready(out) = out {
            return Poll::Ready(Some(out));
        }
        let at = this.hang_guard_at;
        let timer = this
            .hang_timer
            .get_or_insert_with(|| Box::pin(tokio::time::sleep_until(at.into())));
        match timer.as_mut().poll(cx) {
            Poll::Ready(()) => Poll::Ready(None),
            Poll::Pending => Poll::Pending,
        }
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
        Some(Trap::Interrupt) => LimitExceeded::HangGuard(limits.hang_guard_ms),
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_traps_error_carries_the_calls_stderr_and_a_limits_does_not() {
        let budget = OutputBudget::new("p".into(), 1 << 20);
        budget
            .write(
                Stream::Stderr,
                b"thread '<unnamed>' panicked at src/lib.rs:3:5:\nboom\n",
            )
            .unwrap();
        let tail = budget.end_call();
        let trap = CallError::Trap {
            plugin: "p".into(),
            call: "invoke",
            message: "wasm `unreachable` executed (the guest panicked or aborted)".into(),
        };
        assert_eq!(
            with_stderr(trap, &tail).to_string(),
            "plugin \"p\": invoke: trapped: wasm `unreachable` executed (the guest panicked or \
             aborted); stderr: panicked at src/lib.rs:3:5: boom"
        );
        let limit = CallError::Limit {
            plugin: "p".into(),
            call: "invoke",
            limit: LimitExceeded::Stack,
        };
        let shown = limit.to_string();
        assert_eq!(with_stderr(limit, &tail).to_string(), shown);
        // Nothing on stderr: the trap's message as it was.
        let quiet = CallError::Trap {
            plugin: "p".into(),
            call: "invoke",
            message: "out of bounds".into(),
        };
        assert_eq!(
            with_stderr(quiet, &budget.end_call()).to_string(),
            "plugin \"p\": invoke: trapped: out of bounds"
        );
    }
}
