//! Agents: an [`AgentInstance`] is one instantiated agent component in its own store; an
//! agent actor is the tokio task that owns an instance and delivers its mailbox to it one
//! event at a time, under the per-event limits.
//!
//! **Lifecycle** ([`State`]): an agent is `cold` until its first instance is made, `warming`
//! while `init` (and `restore`) run, `active` while it handles an event and `idle` between
//! events. An idle agent can be put to `sleep` (by the operator, or after
//! [`Supervision::sleep_after_idle`]): its snapshot is taken and kept (also in the state store,
//! so a stopped host restores it), its instance is released, and its subscriptions and timers
//! stay, so the next message, subscribed event or timer wakes it (`init`, then `restore`).
//!
//! **Supervision:** a trap or an exceeded limit ends that event only. The actor drops the
//! instance (`failed`), keeps its subscriptions so what arrives meanwhile waits in the
//! mailbox, and makes a fresh instance after a backoff that starts at 100 ms and doubles to
//! 30 s, starting again at 100 ms after a healthy period ([`Supervision`]). More failures than
//! `max_restarts` within `window` quarantine the agent: it leaves the bus, its working orders
//! are cancelled, and it takes no event until an operator releases it. Every transition but
//! `active`↔`idle` (one per event) is logged and audited (kind `lifecycle`).
//!
//! **Recovery:** the host takes the agent's `snapshot` after every successful `on-order`
//! event and every [`Supervision::snapshot_every`] other events (a recovery point). The
//! instance made after a failure gets `init`, then `restore` of the latest recovery point,
//! then a recovery notice on `on-message` (subject `agent.<name>.recovery`, sender `host`:
//! the restart, how many events since the recovery point it did not see the effects of and
//! from when, the failed call), then the `on-order` event whose handler failed, once; if
//! that fails again the event is dead-lettered (`handler-failed`). The host's own records
//! (`orders.position`, `open-orders`) stay the truth an agent rebuilds from.
//!
//! A hot swap hands the old actor a `Retire` command at the back of its mailbox, so the
//! event it is running (and any queued before the swap) finishes first; its snapshot then
//! goes to the new instance's `restore`.

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use serde::Serialize;
use tokio::sync::{mpsc, oneshot};
use wasmtime::Store;

use crate::audit::{AuditRecord, AuditWriter};
use crate::bindings::agent::{Agent, AgentPre};
use crate::bindings::types as wit;
use crate::bus::{Bus, Envelope, Mailbox, MailboxStats};
use crate::clock::Clock;
use crate::interfaces::messaging::{BusLink, HeldSubscriptions};
use crate::market::service::MarketService;
use crate::policy::Policy;
use crate::state_store::StateStore;
use crate::store::{CallError, StoreState, guarded, new_store, new_store_with_clock};
use crate::timers::Timers;

/// Events in one agent's mailbox.
pub const MAILBOX_CAPACITY: usize = 1024;
/// The plugin name under which sleeping agents' snapshots are kept in the state store (not
/// a valid plugin name, so no plugin can read or write it).
pub const SLEEP_SNAPSHOTS: &str = "#sleep";

/// Where an agent is in its life (see the module docs).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
#[repr(u8)]
pub enum State {
    /// Loaded, no instance made yet.
    Cold = 0,
    /// Its instance is being made (`init`, and `restore` after a sleep).
    Warming = 1,
    /// Handling an event.
    Active = 2,
    /// Its instance waits for the next event.
    Idle = 3,
    /// Its instance is released; its snapshot, subscriptions and timers are kept.
    Sleeping = 4,
    /// Its instance trapped or failed to start; a new one is made after the backoff.
    Failed = 5,
    /// Failed too often: off the bus, no events until an operator releases it.
    Quarantined = 6,
}

impl State {
    /// The name operators see.
    pub fn as_str(self) -> &'static str {
        match self {
            State::Cold => "cold",
            State::Warming => "warming",
            State::Active => "active",
            State::Idle => "idle",
            State::Sleeping => "sleeping",
            State::Failed => "failed",
            State::Quarantined => "quarantined",
        }
    }

    fn from_u8(v: u8) -> State {
        match v {
            1 => State::Warming,
            2 => State::Active,
            3 => State::Idle,
            4 => State::Sleeping,
            5 => State::Failed,
            6 => State::Quarantined,
            _ => State::Cold,
        }
    }
}

impl std::fmt::Display for State {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How the supervisor restarts, quarantines and puts agents to sleep.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Supervision {
    /// The first restart's delay.
    pub backoff_initial: Duration,
    /// The longest delay (the delay doubles per failure up to this).
    pub backoff_max: Duration,
    /// A failure this long after the previous one starts again at `backoff_initial`.
    pub healthy_after: Duration,
    /// More failures than this within `window` quarantine the agent.
    pub max_restarts: u32,
    /// See `max_restarts`.
    pub window: Duration,
    /// Puts an agent to sleep after this long without an event (`None`: never).
    pub sleep_after_idle: Option<Duration>,
    /// The host takes a recovery snapshot after every successful `on-order` event and after
    /// this many other successful events (0: never), and restores the latest into the
    /// instance it makes after a failure.
    pub snapshot_every: u32,
}

impl Default for Supervision {
    fn default() -> Self {
        Supervision {
            backoff_initial: Duration::from_millis(100),
            backoff_max: Duration::from_secs(30),
            healthy_after: Duration::from_secs(60),
            max_restarts: 5,
            window: Duration::from_secs(60),
            sleep_after_idle: None,
            snapshot_every: 16,
        }
    }
}

impl Supervision {
    /// The delay before restart number `level` (0-based): initial × 2^level, at most the max.
    pub fn backoff(&self, level: u32) -> Duration {
        let factor = 1u32.checked_shl(level.min(31)).unwrap_or(u32::MAX);
        self.backoff_initial
            .checked_mul(factor)
            .unwrap_or(self.backoff_max)
            .min(self.backoff_max)
    }
}

/// What an actor uses besides its instance: the host's timers and audit, its supervision
/// settings, and fault injection for tests of supervision.
#[derive(Clone, Default)]
pub struct AgentServices {
    /// The host's timers (the `timers` interface; due timers are queued in the mailbox).
    pub timers: Option<Arc<Timers>>,
    /// Where lifecycle transitions are audited.
    pub audit: Option<AuditWriter>,
    /// Restart, quarantine and sleep settings.
    pub supervision: Supervision,
    /// Fault injection: the event after this many handled ones runs with no fuel, so the
    /// guest traps for real (once per actor).
    pub inject_trap_after: Option<u64>,
    /// Fault injection counts only events of this handler (`on-order`, …; `None`: all).
    pub inject_trap_on: Option<String>,
}

/// A message as the host delivers it to an agent's `on-message`.
#[derive(Debug, Clone)]
pub struct Message {
    /// Unique id.
    pub id: String,
    /// Subject it was published on.
    pub subject: String,
    /// Sending plugin (stamped by the host).
    pub sender: String,
    /// Correlation id for request/reply.
    pub correlation_id: Option<String>,
    /// Where to reply.
    pub reply_to: Option<String>,
    /// Nanoseconds since the epoch.
    pub timestamp: u64,
    /// Headers.
    pub headers: Vec<(String, String)>,
    /// Body.
    pub payload: Vec<u8>,
}

/// An event the host delivers to an agent.
#[derive(Debug, Clone)]
pub enum Event {
    /// The timer fired at `now` (ns since the epoch).
    Timer(u64),
    /// A message arrived (delivered directly, not through the bus).
    Message(Message),
    /// A message from the bus.
    Bus(Arc<Envelope>),
}

impl Event {
    fn call_name(&self) -> &'static str {
        match self {
            Event::Timer(_) => "on-timer",
            Event::Bus(env) if env.timer.is_some() => "on-timer",
            Event::Bus(env) if env.market.is_some() => "on-market",
            Event::Bus(env) if env.order.is_some() => "on-order",
            Event::Message(_) | Event::Bus(_) => "on-message",
        }
    }
}

/// One agent instance in its own store.
pub struct AgentInstance {
    store: Store<StoreState>,
    bindings: Agent,
}

impl AgentInstance {
    /// Instantiates the agent and calls `init(config)`.
    pub async fn start(
        pre: &AgentPre<StoreState>,
        plugin: Arc<str>,
        limits: crate::limits::Limits,
        state: Option<StateStore>,
        policy: Arc<Policy>,
        bus: Option<BusLink>,
        config: &str,
    ) -> Result<AgentInstance, CallError> {
        let store = new_store(pre.engine(), plugin, limits, state, policy, bus);
        Self::instantiate(pre, store, config).await
    }

    /// Instantiates the agent in `store` (from `new_store`) and calls `init(config)`.
    async fn instantiate(
        pre: &AgentPre<StoreState>,
        store: Store<StoreState>,
        config: &str,
    ) -> Result<AgentInstance, CallError> {
        Self::instantiate_adopting(pre, store, config, &mut None).await
    }

    /// [`AgentInstance::instantiate`], offering `held` (a predecessor's subscriptions) to
    /// `init`: those it asks for again are taken over, the rest end after `init`. If the
    /// instance cannot be made, `held` keeps the subscriptions for the next try.
    async fn instantiate_adopting(
        pre: &AgentPre<StoreState>,
        mut store: Store<StoreState>,
        config: &str,
        held: &mut Option<HeldSubscriptions>,
    ) -> Result<AgentInstance, CallError> {
        let bindings = guarded(&mut store, "instantiate", async |s| {
            pre.instantiate_async(s).await
        })
        .await?;
        let mut instance = AgentInstance { store, bindings };
        if let Some(h) = held.take() {
            instance.adopt(h);
        }
        match instance.init(config).await {
            Ok(()) => {
                instance.end_unadopted();
                Ok(instance)
            }
            Err(e) => {
                *held = instance.take_subscriptions();
                Err(e)
            }
        }
    }

    async fn init(&mut self, config: &str) -> Result<(), CallError> {
        let h = self.bindings.colony_plugin_handler();
        let r = guarded(&mut self.store, "init", async |s| {
            h.call_init(s, config).await
        })
        .await?;
        self.guest_result("init", r)
    }

    /// Delivers one event under the per-event limits.
    pub async fn deliver(&mut self, event: &Event) -> Result<(), CallError> {
        let h = self.bindings.colony_plugin_handler();
        let call = event.call_name();
        let r = match event {
            Event::Timer(now) => {
                guarded(&mut self.store, call, async |s| {
                    h.call_on_timer(s, *now).await
                })
                .await?
            }
            Event::Bus(env) if env.timer.is_some() => {
                let now = env.timer.unwrap_or(env.timestamp_ns);
                guarded(&mut self.store, call, async |s| {
                    h.call_on_timer(s, now).await
                })
                .await?
            }
            Event::Bus(env) if env.market.is_some() => {
                let Some(event) = env.market.as_deref() else {
                    return Ok(());
                };
                let event = crate::interfaces::market::to_wit(event);
                guarded(&mut self.store, call, async |s| {
                    h.call_on_market(s, &event).await
                })
                .await?
            }
            Event::Bus(env) if env.order.is_some() => {
                let Some(update) = env.order.as_deref() else {
                    return Ok(());
                };
                let event = crate::interfaces::orders::to_wit(update);
                guarded(&mut self.store, call, async |s| {
                    h.call_on_order(s, &event).await
                })
                .await?
            }
            Event::Bus(env) => {
                let msg = crate::interfaces::messaging::to_wit(env);
                // A request delivered to its addressee may be answered by this instance; one
                // seen on another agent's inbox may not (`interfaces::messaging`'s `reply`).
                if let Some(reply_to) = &env.reply_to {
                    let data = self.store.data_mut();
                    if crate::bus::may_answer(&data.plugin, &env.subject)
                        && let Some(link) = data.bus.as_mut()
                    {
                        link.note_request(reply_to);
                    }
                }
                guarded(&mut self.store, call, async |s| {
                    h.call_on_message(s, &msg).await
                })
                .await?
            }
            Event::Message(m) => {
                let msg = to_wit_message(m);
                guarded(&mut self.store, call, async |s| {
                    h.call_on_message(s, &msg).await
                })
                .await?
            }
        };
        self.guest_result(call, r)
    }

    /// Asks the instance for the state to hand to its successor.
    pub async fn snapshot(&mut self) -> Result<Vec<u8>, CallError> {
        let h = self.bindings.colony_plugin_handler();
        guarded(&mut self.store, "snapshot", async |s| {
            h.call_snapshot(s).await
        })
        .await
    }

    /// Hands a predecessor's snapshot to this instance.
    pub async fn restore(&mut self, snapshot: &[u8]) -> Result<(), CallError> {
        let h = self.bindings.colony_plugin_handler();
        let r = guarded(&mut self.store, "restore", async |s| {
            h.call_restore(s, snapshot).await
        })
        .await?;
        self.guest_result("restore", r)
    }

    /// Whether the policy's filesystem/environment grants changed since this instance was
    /// made (its preopens and environment would outlive the change).
    pub fn wasi_stale(&self) -> bool {
        let data = self.store.data();
        data.wasi_generation != data.policy.wasi_generation()
    }

    /// Log lines the last event wrote past the `log` interface's per-event cap (dropped).
    pub fn log_dropped(&self) -> u32 {
        self.store.data().log.dropped()
    }

    /// Fuel the last event used.
    pub fn fuel_used(&self) -> u64 {
        let budget = self.store.data().limits.fuel;
        budget.saturating_sub(self.store.get_fuel().unwrap_or(budget))
    }

    /// Bytes of linear memory the instance holds.
    pub fn memory_used(&self) -> u64 {
        self.store.data().limiter.memory_used()
    }

    /// Takes the instance's bus subscriptions (they stay on the bus) for its successor.
    fn take_subscriptions(&mut self) -> Option<HeldSubscriptions> {
        self.store.data_mut().market_subs.clear();
        self.store
            .data_mut()
            .bus
            .as_mut()
            .map(BusLink::take_subscriptions)
    }

    /// Gives the instance its predecessor's subscriptions to take over.
    fn adopt(&mut self, held: HeldSubscriptions) {
        if let Some(link) = self.store.data_mut().bus.as_mut() {
            link.adopt(held);
        }
    }

    /// Ends the predecessor's subscriptions this instance did not ask for again.
    fn end_unadopted(&mut self) {
        if let Some(link) = self.store.data_mut().bus.as_mut() {
            link.end_unadopted();
        }
    }

    /// Makes the next guarded call run out of fuel at once (fault injection).
    fn starve_next_call(&mut self) {
        self.store.data_mut().limits.fuel = 0;
    }

    fn guest_result(&self, call: &'static str, r: Result<(), wit::Error>) -> Result<(), CallError> {
        // The guest's text goes to the log, the status and the audit: capped and with its
        // control characters escaped.
        r.map_err(|e| CallError::Guest {
            plugin: self.store.data().plugin.clone(),
            call,
            message: crate::guest_text::sanitize_owned(describe_error(&e)),
        })
    }
}

/// Renders a guest-visible error the way operators read it.
pub(crate) fn describe_error(e: &wit::Error) -> String {
    match e {
        wit::Error::Denied(m) => format!("denied: {m}"),
        wit::Error::LimitExceeded(m) => format!("limit exceeded: {m}"),
        wit::Error::InvalidArgument(m) => format!("invalid argument: {m}"),
        wit::Error::NotFound(m) => format!("not found: {m}"),
        wit::Error::Unavailable(m) => format!("unavailable: {m}"),
        wit::Error::Timeout => "timeout".into(),
    }
}

fn to_wit_message(m: &Message) -> wit::Message {
    wit::Message {
        id: m.id.clone(),
        subject: m.subject.clone(),
        sender: m.sender.clone(),
        correlation_id: m.correlation_id.clone(),
        reply_to: m.reply_to.clone(),
        priority: wit::Priority::Normal,
        timestamp: m.timestamp,
        headers: m.headers.clone(),
        payload: m.payload.clone(),
    }
}

/// Counters an operator sees in `colony status`.
#[derive(Debug, Default)]
pub struct AgentStats {
    /// Events delivered successfully.
    pub delivered: AtomicU64,
    /// Events that failed (trap, limit, or guest error).
    pub failed: AtomicU64,
    /// Times the instance was re-created after a trap or limit.
    pub restarts: AtomicU64,
    /// Events refused because the mailbox was full.
    pub refused: AtomicU64,
    /// Log lines dropped over the per-event cap.
    pub log_dropped: AtomicU64,
    /// Fuel used by every event so far.
    pub fuel_used: AtomicU64,
    /// Nanoseconds spent in the agent's handlers.
    pub busy_ns: AtomicU64,
    /// Times the agent was put to sleep.
    pub sleeps: AtomicU64,
    /// Times it was woken.
    pub wakes: AtomicU64,
    /// Bytes of linear memory its instance holds (0 while it has none: asleep, failed).
    pub memory_bytes: AtomicU64,
    /// Recovery snapshots the host took.
    pub snapshots: AtomicU64,
    /// Nanoseconds spent taking them (wall clock).
    pub snapshot_ns: AtomicU64,
    /// Order events redelivered to a new instance after their handler failed.
    pub redelivered: AtomicU64,
    /// The lifecycle [`State`], as its `u8`.
    state: AtomicU8,
    /// The last failure, for the operator.
    pub last_error: std::sync::Mutex<Option<String>>,
}

impl AgentStats {
    /// The agent's lifecycle state.
    pub fn state(&self) -> State {
        State::from_u8(self.state.load(Ordering::Relaxed))
    }

    /// Whether the agent is quarantined.
    pub fn quarantined(&self) -> bool {
        self.state() == State::Quarantined
    }

    fn set_state(&self, state: State) {
        self.state.store(state as u8, Ordering::Relaxed);
    }
}

enum Command {
    Deliver(Event, Option<oneshot::Sender<Result<(), CallError>>>),
    Retire(oneshot::Sender<Option<Vec<u8>>>),
    /// Sleep now; answers whether it went to sleep (an agent already asleep, failed or
    /// quarantined does not).
    Sleep(oneshot::Sender<bool>),
    /// Wake now (make the instance) if asleep or cold.
    Wake(oneshot::Sender<Result<(), CallError>>),
    /// Release from quarantine; answers whether it was quarantined.
    Release(String, oneshot::Sender<Result<bool, CallError>>),
}

/// The way to reach a running agent actor.
#[derive(Clone)]
pub struct AgentHandle {
    name: Arc<str>,
    tx: mpsc::Sender<Command>,
    stats: Arc<AgentStats>,
    attach: Option<BusAttach>,
}

/// An actor's place on the bus.
#[derive(Clone)]
struct BusAttach {
    bus: Bus,
    mailbox: Mailbox,
    owner: Arc<str>,
    /// The plugin name (its inbox and order-event subjects).
    name: Arc<str>,
}

impl BusAttach {
    fn link(&self) -> BusLink {
        BusLink::new(self.bus.clone(), self.mailbox.clone(), self.owner.clone())
    }

    /// Subscribes the actor to its inbox and its order events (not the instance's own
    /// subscriptions, which `init` makes).
    fn subscribe_own(&self) -> Result<(), CallError> {
        let inbox = format!("agent.{}.inbox", self.name);
        // The agent's own order events (see `orders::service`) arrive beside its inbox.
        let orders = crate::orders::service::events_subject(&self.name);
        let failed = |subject: &str, e| CallError::Unavailable {
            plugin: self.name.clone(),
            reason: format!("cannot subscribe to {subject}: {e}"),
        };
        self.bus
            .subscribe(&self.owner, &inbox, &self.mailbox)
            .map_err(|e| failed(&inbox, e))?;
        // Order events are produced on this host only: never asked for over NATS.
        self.bus
            .subscribe_local(&self.owner, &orders, &self.mailbox)
            .map_err(|e| failed(&orders, e))?;
        Ok(())
    }

    fn detach(&self) {
        self.bus.unsubscribe_all(&self.owner);
        self.mailbox.close();
    }
}

/// What an actor needs to (re)create its instance.
pub struct AgentSpec {
    /// Linked component.
    pub pre: AgentPre<StoreState>,
    /// Plugin name.
    pub name: Arc<str>,
    /// Resolved limits.
    pub limits: crate::limits::Limits,
    /// Persistent state.
    pub state: Option<StateStore>,
    /// Grants in force.
    pub policy: Arc<Policy>,
    /// The bus the agent is on (its inbox and subscriptions), if any.
    pub bus: Option<Bus>,
    /// Operator configuration passed to `init`.
    pub config: String,
    /// The host's market-data service, if it has a feed.
    pub market: Option<Arc<MarketService>>,
    /// The host's order router, if it trades.
    pub orders: Option<Arc<crate::orders::service::OrderService>>,
    /// The host's tools (the `tools` interface), if it serves them.
    pub tools: Option<Arc<dyn crate::tools::ToolAccess>>,
    /// Timers, audit, supervision settings.
    pub services: AgentServices,
}

impl AgentSpec {
    /// A new instance of this agent, on the bus through `attach`, reading `clock`, after
    /// `init` (which takes over what it asks for again of `held`).
    async fn start(
        &self,
        attach: Option<&BusAttach>,
        clock: &Clock,
        held: &mut Option<HeldSubscriptions>,
    ) -> Result<AgentInstance, CallError> {
        let mut store = new_store_with_clock(
            self.pre.engine(),
            self.name.clone(),
            self.limits,
            self.state.clone(),
            self.policy.clone(),
            attach.map(BusAttach::link),
            clock.clone(),
        );
        store.data_mut().market = self.market.clone();
        store.data_mut().orders = self.orders.clone();
        store.data_mut().tools = self.tools.clone();
        store.data_mut().timers = self.services.timers.clone();
        AgentInstance::instantiate_adopting(&self.pre, store, &self.config, held).await
    }
}

impl AgentHandle {
    /// Starts an agent: instantiates and initialises it here (so a broken agent is reported
    /// to the caller), then hands it to a new actor task. With `handover`, the actor first
    /// waits for the predecessor's snapshot and restores it. Its WASI clocks are the system's.
    pub async fn spawn(
        spec: AgentSpec,
        handover: Option<oneshot::Receiver<Option<Vec<u8>>>>,
    ) -> Result<AgentHandle, CallError> {
        Self::spawn_with_clock(spec, Clock::system(), handover).await
    }

    /// [`AgentHandle::spawn`] with every instance of the agent reading `clock` through the
    /// WASI clocks (the host's; virtual during a replay).
    pub async fn spawn_with_clock(
        spec: AgentSpec,
        clock: Clock,
        handover: Option<oneshot::Receiver<Option<Vec<u8>>>>,
    ) -> Result<AgentHandle, CallError> {
        // The actor's bus attachment: a mailbox, subscribed to the agent's inbox, under an
        // owner name unique to this actor (so a hot swap can detach the old one alone).
        let attach = match &spec.bus {
            Some(bus) => {
                static ACTORS: AtomicU64 = AtomicU64::new(0);
                let owner: Arc<str> =
                    format!("{}#{}", spec.name, ACTORS.fetch_add(1, Ordering::Relaxed)).into();
                let mailbox = bus.agent_mailbox(&owner, MAILBOX_CAPACITY);
                let attach = BusAttach {
                    bus: bus.clone(),
                    mailbox,
                    owner,
                    name: spec.name.clone(),
                };
                if let Err(e) = attach.subscribe_own() {
                    attach.detach();
                    return Err(e);
                }
                Some(attach)
            }
            None => None,
        };
        let stats = Arc::new(AgentStats::default());
        stats.set_state(State::Warming);
        // A snapshot left by a sleep when the host last stopped is restored below.
        let slept = load_sleep_snapshot(&spec).await;
        let started = spec.start(attach.as_ref(), &clock, &mut None).await;
        let mut instance = match started {
            Ok(i) => i,
            Err(e) => {
                if let Some(a) = &attach {
                    a.detach();
                }
                return Err(e);
            }
        };
        if let Some(snapshot) = &slept
            && handover.is_none()
        {
            if let Err(e) = instance.restore(snapshot).await {
                tracing::warn!(plugin = %spec.name, error = %e, "restore of the sleep snapshot failed; starting from init state");
            }
            forget_sleep_snapshot(&spec).await;
        }
        if let (Some(timers), Some(a)) = (&spec.services.timers, &attach) {
            timers.attach(&spec.name, a.mailbox.clone());
        }
        stats
            .memory_bytes
            .store(instance.memory_used(), Ordering::Relaxed);
        stats.set_state(State::Idle);
        let (tx, rx) = mpsc::channel(MAILBOX_CAPACITY);
        let handle = AgentHandle {
            name: spec.name.clone(),
            tx,
            stats: stats.clone(),
            attach: attach.clone(),
        };
        let mut actor = Actor {
            spec,
            clock,
            stats,
            attach,
            current: Some(instance),
            held: None,
            slept: None,
            failures: VecDeque::new(),
            backoff_level: 0,
            last_failure: None,
            restart_at: None,
            last_event: Instant::now(),
            handled: 0,
            injected: false,
            recovery: RecoveryPoint::default(),
            redeliver: None,
            last_failed_call: None,
        };
        actor.recovery.at_ns = actor.clock.now_ns();
        tokio::spawn(actor.run(rx, handover));
        Ok(handle)
    }

    /// The agent's bus mailbox counters (depth, drops, refusals, expiries).
    pub fn mailbox_stats(&self) -> Option<MailboxStats> {
        self.attach.as_ref().map(|a| a.mailbox.stats())
    }

    /// Takes the agent off the bus: its inbox and subscriptions end now (what is already in
    /// its mailbox is still delivered). Used before a hot swap's retire and at stop.
    pub fn detach_bus(&self) {
        if let Some(a) = &self.attach {
            a.bus.unsubscribe_all(&a.owner);
        }
    }

    /// The agent's name.
    pub fn name(&self) -> &Arc<str> {
        &self.name
    }

    /// Its counters.
    pub fn stats(&self) -> &Arc<AgentStats> {
        &self.stats
    }

    /// Events waiting in the mailbox.
    pub fn mailbox_depth(&self) -> usize {
        MAILBOX_CAPACITY - self.tx.capacity()
    }

    /// Queues an event without waiting for it; refused when the mailbox is full.
    pub fn post(&self, event: Event) -> Result<(), CallError> {
        self.tx
            .try_send(Command::Deliver(event, None))
            .map_err(|e| {
                self.stats.refused.fetch_add(1, Ordering::Relaxed);
                CallError::Unavailable {
                    plugin: self.name.clone(),
                    reason: match e {
                        mpsc::error::TrySendError::Full(_) => {
                            format!("mailbox full ({MAILBOX_CAPACITY} events)")
                        }
                        mpsc::error::TrySendError::Closed(_) => "agent has stopped".into(),
                    },
                }
            })
    }

    fn gone(&self) -> CallError {
        CallError::Unavailable {
            plugin: self.name.clone(),
            reason: "agent has stopped".into(),
        }
    }

    /// Delivers an event and waits for its outcome.
    pub async fn deliver(&self, event: Event) -> Result<(), CallError> {
        let (tx, rx) = oneshot::channel();
        self.tx
            .send(Command::Deliver(event, Some(tx)))
            .await
            .map_err(|_| self.gone())?;
        rx.await.map_err(|_| self.gone())?
    }

    /// Puts the agent to sleep after what is queued before this; whether it went to sleep.
    pub async fn sleep(&self) -> Result<bool, CallError> {
        let (tx, rx) = oneshot::channel();
        self.tx
            .send(Command::Sleep(tx))
            .await
            .map_err(|_| self.gone())?;
        rx.await.map_err(|_| self.gone())
    }

    /// Wakes the agent (makes its instance) if it sleeps.
    pub async fn wake(&self) -> Result<(), CallError> {
        let (tx, rx) = oneshot::channel();
        self.tx
            .send(Command::Wake(tx))
            .await
            .map_err(|_| self.gone())?;
        rx.await.map_err(|_| self.gone())?
    }

    /// Releases the agent from quarantine (audited as `actor`); whether it was quarantined.
    pub async fn release(&self, actor: &str) -> Result<bool, CallError> {
        let (tx, rx) = oneshot::channel();
        self.tx
            .send(Command::Release(actor.to_string(), tx))
            .await
            .map_err(|_| self.gone())?;
        rx.await.map_err(|_| self.gone())?
    }

    /// Asks the actor to stop after everything already queued; returns a receiver for its
    /// snapshot (for a successor), resolved once it has stopped.
    pub async fn retire(&self) -> oneshot::Receiver<Option<Vec<u8>>> {
        let (tx, rx) = oneshot::channel();
        // If the actor is already gone, the receiver resolves with an error: no snapshot.
        let _ = self.tx.send(Command::Retire(tx)).await;
        rx
    }
}

async fn load_sleep_snapshot(spec: &AgentSpec) -> Option<Vec<u8>> {
    let store = spec.state.as_ref()?;
    match store.get(SLEEP_SNAPSHOTS, &spec.name).await {
        Ok(v) => v,
        Err(e) => {
            tracing::warn!(plugin = %spec.name, error = %e, "cannot read the sleep snapshot");
            None
        }
    }
}

async fn forget_sleep_snapshot(spec: &AgentSpec) {
    if let Some(store) = &spec.state
        && let Err(e) = store.delete(SLEEP_SNAPSHOTS, &spec.name).await
    {
        tracing::warn!(plugin = %spec.name, error = %e, "cannot delete the sleep snapshot");
    }
}

/// One agent's actor: its instance, and the supervision state around it.
struct Actor {
    spec: AgentSpec,
    clock: Clock,
    stats: Arc<AgentStats>,
    attach: Option<BusAttach>,
    current: Option<AgentInstance>,
    /// A dead or released instance's subscriptions, for the next one to take over.
    held: Option<HeldSubscriptions>,
    /// The snapshot taken when it went to sleep, for `restore` on waking.
    slept: Option<Vec<u8>>,
    /// When recent instance failures happened (within the quarantine window).
    failures: VecDeque<Instant>,
    /// Restarts since the last healthy period (the backoff exponent).
    backoff_level: u32,
    last_failure: Option<Instant>,
    /// When the failed instance is made again.
    restart_at: Option<tokio::time::Instant>,
    last_event: Instant,
    /// Events handled, of the injection's handler if it names one (for fault injection).
    handled: u64,
    injected: bool,
    /// The latest recovery snapshot, for the instance made after a failure.
    recovery: RecoveryPoint,
    /// An order event whose handler failed, for the next instance (once).
    redeliver: Option<Arc<Envelope>>,
    /// The handler and error of the last failure, for the recovery notice.
    last_failed_call: Option<(&'static str, String)>,
}

/// The state the host restores into the instance it makes after a failure.
#[derive(Default)]
struct RecoveryPoint {
    /// The agent's snapshot (`None`: none taken yet, the new instance starts from `init`).
    snapshot: Option<Vec<u8>>,
    /// Host-clock time it was taken (or the instance started, without one).
    at_ns: u64,
    /// Events since it whose effects it does not hold: handled after it, or failed and not
    /// redelivered.
    missed: u64,
}

/// How an event reaches [`Actor::handle`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Delivery {
    /// An event, the first time.
    First,
    /// An order event whose handler failed on the previous instance.
    Redelivery,
    /// The host's recovery notice (not counted as an event).
    Notice,
}

/// The subject of the recovery notice an agent gets after a restart.
pub fn recovery_subject(agent: &str) -> String {
    format!("agent.{agent}.recovery")
}

impl Actor {
    async fn run(
        mut self,
        mut rx: mpsc::Receiver<Command>,
        handover: Option<oneshot::Receiver<Option<Vec<u8>>>>,
    ) {
        if let Some(handover) = handover
            && let Ok(Some(snapshot)) = handover.await
            && !snapshot.is_empty()
            && let Some(inst) = self.current.as_mut()
            && let Err(e) = inst.restore(&snapshot).await
        {
            tracing::warn!(error = %e, "restore after hot swap failed; starting from init state");
            if e.is_fatal_to_instance() {
                self.current = None;
                self.stats.set_state(State::Cold);
            }
        }
        let mailbox = self.attach.as_ref().map(|a| a.mailbox.clone());
        let mut bus_open = mailbox.is_some();
        loop {
            let idle_for = self
                .spec
                .services
                .supervision
                .sleep_after_idle
                .filter(|_| self.current.is_some() && self.restart_at.is_none());
            let sleep_at = idle_for.map(|d| tokio::time::Instant::from_std(self.last_event + d));
            let restart_at = self.restart_at;
            // Commands (direct events, retire, operator actions) first; then a due restart;
            // bus messages in priority order otherwise (held while a restart is pending).
            let cmd = tokio::select! {
                biased;
                cmd = rx.recv() => match cmd {
                    Some(cmd) => cmd,
                    None => break,
                },
                _ = async {
                    match restart_at {
                        Some(t) => tokio::time::sleep_until(t).await,
                        None => std::future::pending().await,
                    }
                } => {
                    self.restart().await;
                    continue;
                },
                env = async {
                    match &mailbox {
                        Some(m) => m.recv().await,
                        None => std::future::pending().await,
                    }
                }, if bus_open && restart_at.is_none() && !self.stats.quarantined() => match env {
                    Some(env) => {
                        let _ = self.deliver(&Event::Bus(env)).await;
                        if let Some(m) = &mailbox {
                            m.done();
                        }
                        continue;
                    }
                    None => {
                        bus_open = false;
                        continue;
                    }
                },
                _ = async {
                    match sleep_at {
                        Some(t) => tokio::time::sleep_until(t).await,
                        None => std::future::pending().await,
                    }
                } => {
                    self.sleep("idle").await;
                    continue;
                },
            };
            match cmd {
                Command::Deliver(event, reply) => {
                    let result = self.deliver(&event).await;
                    if let Some(reply) = reply {
                        let _ = reply.send(result);
                    }
                }
                Command::Sleep(reply) => {
                    let slept = self.sleep("operator").await;
                    let _ = reply.send(slept);
                }
                Command::Wake(reply) => {
                    let r = self.ensure_instance().await;
                    if self.stats.state() == State::Warming {
                        self.stats.set_state(State::Idle);
                    }
                    let _ = reply.send(r);
                }
                Command::Release(actor, reply) => {
                    let r = self.release(&actor).await;
                    let _ = reply.send(r);
                }
                Command::Retire(reply) => {
                    // What the bus already queued for this instance is delivered here too.
                    if let Some(m) = &mailbox
                        && !self.stats.quarantined()
                    {
                        while let Some(env) = m.try_recv() {
                            let _ = self.deliver(&Event::Bus(env)).await;
                            m.done();
                        }
                    }
                    if let Some(a) = &self.attach {
                        a.detach();
                    }
                    let snapshot = match self.current.as_mut() {
                        Some(inst) => match inst.snapshot().await {
                            Ok(s) => Some(s),
                            Err(e) => {
                                tracing::warn!(error = %e, "snapshot before hot swap failed");
                                None
                            }
                        },
                        // Asleep: the snapshot it went to sleep with, which goes to the
                        // successor now, so the stored copy must not be restored again.
                        // Failed, a restart pending: its latest recovery point.
                        None => {
                            if self.slept.is_some() {
                                forget_sleep_snapshot(&self.spec).await;
                            }
                            self.slept.take().or_else(|| self.recovery.snapshot.take())
                        }
                    };
                    let _ = reply.send(snapshot);
                    tracing::info!(plugin = %self.spec.name, "agent instance retired");
                    return;
                }
            }
        }
    }

    /// Records a lifecycle transition: the state, a log line, and an audit record.
    async fn transition(&mut self, to: State, detail: String) {
        let from = self.stats.state();
        self.stats.set_state(to);
        let text = format!("{from} -> {to}: {detail}");
        match to {
            State::Failed | State::Quarantined => {
                tracing::error!(plugin = %self.spec.name, "{text}")
            }
            _ => tracing::info!(plugin = %self.spec.name, "{text}"),
        }
        if let Some(audit) = &self.spec.services.audit
            && let Err(e) = audit
                .append(AuditRecord::lifecycle(&self.spec.name, text))
                .await
        {
            tracing::error!(plugin = %self.spec.name, error = %e, "lifecycle transition not audited");
        }
    }

    /// Makes an instance if there is none (after a sleep, a grant change, or at a due
    /// restart): `init`, then `restore` of the sleep snapshot.
    async fn ensure_instance(&mut self) -> Result<(), CallError> {
        if self.stats.quarantined() {
            return Err(self.quarantined_error());
        }
        if self.current.is_some() {
            return Ok(());
        }
        let waking = self.slept.is_some();
        self.stats.set_state(State::Warming);
        match self
            .spec
            .start(self.attach.as_ref(), &self.clock, &mut self.held)
            .await
        {
            Ok(mut inst) => {
                if let Some(snapshot) = self.slept.take() {
                    if !snapshot.is_empty()
                        && let Err(e) = inst.restore(&snapshot).await
                    {
                        tracing::warn!(plugin = %self.spec.name, error = %e, "restore after sleep failed; going on from init state");
                    }
                    forget_sleep_snapshot(&self.spec).await;
                }
                self.stats
                    .memory_bytes
                    .store(inst.memory_used(), Ordering::Relaxed);
                self.current = Some(inst);
                if waking {
                    self.stats.wakes.fetch_add(1, Ordering::Relaxed);
                    self.transition(State::Idle, "woken".into()).await;
                } else {
                    // Left `warming`: the caller says what comes next.
                    self.stats.restarts.fetch_add(1, Ordering::Relaxed);
                }
                Ok(())
            }
            Err(e) => {
                self.on_failure(&e).await;
                Err(e)
            }
        }
    }

    fn quarantined_error(&self) -> CallError {
        CallError::Unavailable {
            plugin: self.spec.name.clone(),
            reason: format!(
                "quarantined after more than {} failures within {} s; release it with `colony agents release {}`",
                self.spec.services.supervision.max_restarts,
                self.spec.services.supervision.window.as_secs(),
                self.spec.name
            ),
        }
    }

    async fn deliver(&mut self, event: &Event) -> Result<(), CallError> {
        if self.stats.quarantined() {
            return Err(self.quarantined_error());
        }
        if let Some(t) = self.restart_at {
            // A direct event waits for the pending restart.
            tokio::time::sleep_until(t).await;
            self.restart().await;
            if self.current.is_none() {
                return Err(match self.stats.quarantined() {
                    true => self.quarantined_error(),
                    false => CallError::Unavailable {
                        plugin: self.spec.name.clone(),
                        reason: "restarting after a failure".into(),
                    },
                });
            }
        }
        if self.current.as_ref().is_some_and(AgentInstance::wasi_stale) {
            // A filesystem or environment grant changed: open handles and copied variables
            // must not outlive it, so the instance ends here and a new one gets the new grants.
            tracing::info!(plugin = %self.spec.name, "filesystem/environment grants changed; instance restarted");
            if let Some(mut old) = self.current.take() {
                self.held = old.take_subscriptions();
            }
        }
        self.ensure_instance().await?;
        self.handle(event, Delivery::First).await
    }

    /// Runs one event on the current instance: counters, then on success maybe a recovery
    /// snapshot, on a trap or limit the failure (and an order event kept for redelivery).
    async fn handle(&mut self, event: &Event, how: Delivery) -> Result<(), CallError> {
        let Some(inst) = self.current.as_mut() else {
            return Err(CallError::Unavailable {
                plugin: self.spec.name.clone(),
                reason: "no instance".into(),
            });
        };
        let counted = match &self.spec.services.inject_trap_on {
            Some(call) => call == event.call_name(),
            None => true,
        };
        if how != Delivery::Notice && counted {
            self.handled += 1;
        }
        if let Some(after) = self.spec.services.inject_trap_after
            && how != Delivery::Notice
            && counted
            && !self.injected
            && self.handled > after
        {
            self.injected = true;
            tracing::warn!(plugin = %self.spec.name, "fault injection: this event runs with no fuel");
            inst.starve_next_call();
        }
        self.stats.set_state(State::Active);
        let t0 = Instant::now();
        let result = inst.deliver(event).await;
        self.last_event = Instant::now();
        let busy = u64::try_from(t0.elapsed().as_nanos()).unwrap_or(u64::MAX);
        self.stats.busy_ns.fetch_add(busy, Ordering::Relaxed);
        self.stats
            .fuel_used
            .fetch_add(inst.fuel_used(), Ordering::Relaxed);
        self.stats
            .log_dropped
            .fetch_add(inst.log_dropped().into(), Ordering::Relaxed);
        self.stats
            .memory_bytes
            .store(inst.memory_used(), Ordering::Relaxed);
        match result {
            Ok(()) => {
                self.stats.set_state(State::Idle);
                if how != Delivery::Notice {
                    self.stats.delivered.fetch_add(1, Ordering::Relaxed);
                    self.recovery.missed += 1;
                    let every = self.spec.services.supervision.snapshot_every;
                    let order = matches!(event, Event::Bus(env) if env.order.is_some());
                    if every > 0 && (order || self.recovery.missed >= u64::from(every)) {
                        self.take_recovery_point().await;
                    }
                }
                Ok(())
            }
            Err(e) if e.is_fatal_to_instance() => {
                // The instance may be mid-way through anything: never run it again. Its
                // subscriptions stay, so what arrives meanwhile waits for the next one.
                self.drop_instance();
                self.last_failed_call = Some((event.call_name(), e.to_string()));
                match event {
                    // An order event changed the host's records already: the next instance
                    // gets it once more, then it is dead-lettered.
                    Event::Bus(env) if env.order.is_some() && how == Delivery::First => {
                        self.redeliver = Some(env.clone());
                    }
                    Event::Bus(env) if env.order.is_some() => {
                        self.dead_letter(env, crate::bus::DeadReason::HandlerFailed);
                        self.recovery.missed += 1;
                    }
                    _ if how == Delivery::Notice => {}
                    _ => self.recovery.missed += 1,
                }
                self.on_failure(&e).await;
                Err(e)
            }
            Err(e) => {
                // A guest error: the instance is fine and keeps running.
                self.stats.set_state(State::Idle);
                self.note_error(&e);
                Err(e)
            }
        }
    }

    /// Ends the current instance after a trap or limit, keeping its subscriptions for the
    /// next one.
    fn drop_instance(&mut self) {
        if let Some(mut dead) = self.current.take() {
            let held = dead.take_subscriptions();
            if self.held.is_none() {
                self.held = held;
            }
        }
    }

    fn dead_letter(&self, env: &Envelope, reason: crate::bus::DeadReason) {
        tracing::warn!(plugin = %self.spec.name, subject = %env.subject, reason = reason.as_str(), "event dead-lettered");
        if let Some(a) = &self.attach {
            a.bus.dead_letter(env, reason, &a.owner);
        }
    }

    /// Takes the instance's snapshot as the new recovery point. A snapshot that traps ends
    /// the instance like a failed event.
    async fn take_recovery_point(&mut self) {
        let Some(inst) = self.current.as_mut() else {
            return;
        };
        let t0 = Instant::now();
        let r = inst.snapshot().await;
        let took = u64::try_from(t0.elapsed().as_nanos()).unwrap_or(u64::MAX);
        self.stats.snapshot_ns.fetch_add(took, Ordering::Relaxed);
        match r {
            Ok(bytes) => {
                self.stats.snapshots.fetch_add(1, Ordering::Relaxed);
                self.recovery = RecoveryPoint {
                    snapshot: Some(bytes),
                    at_ns: self.clock.now_ns(),
                    missed: 0,
                };
            }
            Err(e) if e.is_fatal_to_instance() => {
                self.drop_instance();
                self.last_failed_call = Some(("snapshot", e.to_string()));
                self.on_failure(&e).await;
            }
            Err(e) => {
                tracing::warn!(plugin = %self.spec.name, error = %e, "recovery snapshot failed; keeping the previous one");
            }
        }
    }

    /// The notice a new instance gets after a restart: what it did not see.
    fn recovery_notice(&self, restored: usize) -> Message {
        let restarts = self.stats.restarts.load(Ordering::Relaxed);
        let (call, error) = self
            .last_failed_call
            .clone()
            .unwrap_or(("instantiate", String::new()));
        let redelivered = self.redeliver.is_some();
        let missed = self.recovery.missed;
        let since = self.recovery.at_ns;
        let headers = vec![
            ("x-restart".to_string(), restarts.to_string()),
            ("x-missed-events".to_string(), missed.to_string()),
            ("x-missed-since".to_string(), since.to_string()),
            ("x-failed-call".to_string(), call.to_string()),
            ("x-redelivered".to_string(), redelivered.to_string()),
            ("x-restored-bytes".to_string(), restored.to_string()),
        ];
        let payload = serde_json::json!({
            "restart": restarts,
            "missed_events": missed,
            "missed_since": since,
            "failed_call": call,
            "error": error,
            "redelivered": redelivered,
            "restored_bytes": restored,
        });
        Message {
            id: crate::bus::new_id(),
            subject: recovery_subject(&self.spec.name),
            sender: "host".into(),
            correlation_id: None,
            reply_to: None,
            timestamp: self.clock.now_ns(),
            headers,
            payload: payload.to_string().into_bytes(),
        }
    }

    fn note_error(&self, e: &CallError) {
        self.stats.failed.fetch_add(1, Ordering::Relaxed);
        tracing::warn!(plugin = %self.spec.name, error = %e, "agent event failed");
        if let Ok(mut last) = self.stats.last_error.lock() {
            *last = Some(e.to_string());
        }
    }

    /// The instance is gone after a failure: back off and restart, or quarantine.
    async fn on_failure(&mut self, e: &CallError) {
        self.note_error(e);
        if self.current.is_none() {
            self.stats.memory_bytes.store(0, Ordering::Relaxed);
        }
        let now = Instant::now();
        let sup = self.spec.services.supervision;
        if self
            .last_failure
            .is_some_and(|t| now.duration_since(t) >= sup.healthy_after)
        {
            self.backoff_level = 0;
        }
        self.last_failure = Some(now);
        self.failures.push_back(now);
        while self
            .failures
            .front()
            .is_some_and(|t| now.duration_since(*t) > sup.window)
        {
            self.failures.pop_front();
        }
        if self.failures.len() > sup.max_restarts as usize {
            self.quarantine(e).await;
            return;
        }
        let delay = sup.backoff(self.backoff_level);
        self.backoff_level = self.backoff_level.saturating_add(1);
        self.restart_at = Some(tokio::time::Instant::now() + delay);
        self.transition(
            State::Failed,
            format!("{e}; restart in {} ms", delay.as_millis()),
        )
        .await;
    }

    /// Makes the instance again after the backoff.
    async fn restart(&mut self) {
        self.restart_at = None;
        if self.current.is_some() || self.stats.quarantined() {
            return;
        }
        let waited = self
            .last_failure
            .map(|t| t.elapsed().as_millis())
            .unwrap_or(0);
        if self.ensure_instance().await.is_err() {
            return;
        }
        // The latest recovery point, then the notice, then the failed order event.
        let mut restored = 0;
        if let Some(snapshot) = self.recovery.snapshot.take()
            && let Some(inst) = self.current.as_mut()
        {
            if !snapshot.is_empty() {
                match inst.restore(&snapshot).await {
                    Ok(()) => restored = snapshot.len(),
                    Err(e) if e.is_fatal_to_instance() => {
                        self.recovery.snapshot = Some(snapshot);
                        self.drop_instance();
                        self.last_failed_call = Some(("restore", e.to_string()));
                        self.on_failure(&e).await;
                        return;
                    }
                    Err(e) => {
                        tracing::warn!(plugin = %self.spec.name, error = %e, "restore of the recovery snapshot failed; going on from init state")
                    }
                }
            }
            self.recovery.snapshot = Some(snapshot);
        }
        self.last_event = Instant::now();
        self.transition(
            State::Idle,
            format!(
                "restarted after {waited} ms (restart {}); {}; {} events missed{}",
                self.stats.restarts.load(Ordering::Relaxed),
                match restored {
                    0 => "no snapshot restored".to_string(),
                    n => format!("snapshot of {n} bytes restored"),
                },
                self.recovery.missed,
                match self.redeliver.is_some() {
                    true => "; the failed order event is redelivered",
                    false => "",
                }
            ),
        )
        .await;
        let notice = self.recovery_notice(restored);
        if self
            .handle(&Event::Message(notice), Delivery::Notice)
            .await
            .is_err()
            && self.current.is_none()
        {
            return;
        }
        if let Some(env) = self.redeliver.take() {
            self.stats.redelivered.fetch_add(1, Ordering::Relaxed);
            let _ = self.handle(&Event::Bus(env), Delivery::Redelivery).await;
            if self.current.is_none() {
                return;
            }
        }
        // The new instance is a recovery point of its own: it has rebuilt what it needs.
        if self.spec.services.supervision.snapshot_every > 0 {
            self.take_recovery_point().await;
        } else {
            self.recovery = RecoveryPoint {
                at_ns: self.clock.now_ns(),
                ..RecoveryPoint::default()
            };
        }
    }

    async fn quarantine(&mut self, e: &CallError) {
        self.restart_at = None;
        self.current = None;
        self.held = None;
        // A released agent starts from `init`; the order event it could not handle is
        // dead-lettered.
        self.recovery = RecoveryPoint::default();
        if let Some(env) = self.redeliver.take() {
            self.dead_letter(&env, crate::bus::DeadReason::HandlerFailed);
        }
        // A quarantined agent leaves the bus: publishers see no subscriber and requests fail
        // at once, instead of messages vanishing into it. What was waiting in its mailbox is
        // dead-lettered (market data and timers are only dropped), so nothing waits on it.
        let mut dead = 0usize;
        if let Some(a) = &self.attach {
            a.bus.unsubscribe_all(&a.owner);
            while let Some(env) = a.mailbox.try_recv() {
                if env.market.is_none() && env.timer.is_none() && env.order.is_none() {
                    a.bus
                        .dead_letter(&env, crate::bus::DeadReason::Quarantined, &a.owner);
                }
                dead += 1;
                a.mailbox.done();
            }
        }
        if let Some(t) = &self.spec.services.timers {
            t.detach(&self.spec.name);
        }
        let cancelled = match &self.spec.orders {
            Some(o) => o.cancel_all_for(&self.spec.name, self.clock.now_ns()),
            None => 0,
        };
        let sup = self.spec.services.supervision;
        self.transition(
            State::Quarantined,
            format!(
                "{} failures within {} s (last: {e}); {cancelled} working orders cancelled; \
                 {dead} queued events taken off its mailbox",
                self.failures.len(),
                sup.window.as_secs()
            ),
        )
        .await;
    }

    async fn release(&mut self, actor: &str) -> Result<bool, CallError> {
        if !self.stats.quarantined() {
            return Ok(false);
        }
        self.failures.clear();
        self.backoff_level = 0;
        self.last_failure = None;
        if let Some(a) = &self.attach {
            a.subscribe_own()?;
            if let Some(t) = &self.spec.services.timers {
                t.attach(&self.spec.name, a.mailbox.clone());
            }
        }
        self.transition(State::Cold, format!("released by {actor}"))
            .await;
        self.ensure_instance().await?;
        self.stats.set_state(State::Idle);
        self.last_event = Instant::now();
        Ok(true)
    }

    /// Puts the agent to sleep: snapshot (kept, and saved in the state store), instance
    /// released; its subscriptions and timers stay. Whether it went to sleep.
    async fn sleep(&mut self, why: &str) -> bool {
        let Some(mut inst) = self.current.take() else {
            return false;
        };
        let snapshot = match inst.snapshot().await {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(plugin = %self.spec.name, error = %e, "snapshot before sleep failed; it will wake from init state");
                Vec::new()
            }
        };
        self.held = inst.take_subscriptions();
        drop(inst);
        self.stats.memory_bytes.store(0, Ordering::Relaxed);
        if let Some(store) = &self.spec.state
            && !snapshot.is_empty()
            && let Err(e) = store.set(SLEEP_SNAPSHOTS, &self.spec.name, &snapshot).await
        {
            tracing::warn!(plugin = %self.spec.name, error = %e, "sleep snapshot kept in memory only");
        }
        let bytes = snapshot.len();
        self.recovery = RecoveryPoint {
            snapshot: Some(snapshot.clone()),
            at_ns: self.clock.now_ns(),
            missed: 0,
        };
        self.slept = Some(snapshot);
        self.stats.sleeps.fetch_add(1, Ordering::Relaxed);
        self.transition(
            State::Sleeping,
            format!("{why}; snapshot of {bytes} bytes kept"),
        )
        .await;
        true
    }
}

#[cfg(test)]
mod lifecycle_tests {
    use super::*;

    #[test]
    fn backoff_starts_at_100_ms_doubles_and_stops_at_30_s() {
        let s = Supervision::default();
        let ms: Vec<u128> = (0..12).map(|l| s.backoff(l).as_millis()).collect();
        assert_eq!(
            ms,
            [
                100, 200, 400, 800, 1600, 3200, 6400, 12800, 25600, 30000, 30000, 30000
            ]
        );
        assert_eq!(s.backoff(u32::MAX), Duration::from_secs(30));
    }

    #[test]
    fn states_round_trip_through_their_byte() {
        for st in [
            State::Cold,
            State::Warming,
            State::Active,
            State::Idle,
            State::Sleeping,
            State::Failed,
            State::Quarantined,
        ] {
            assert_eq!(State::from_u8(st as u8), st);
        }
        let stats = AgentStats::default();
        assert_eq!(stats.state(), State::Cold);
        stats.set_state(State::Quarantined);
        assert!(stats.quarantined());
    }
}
