//! Agents: an [`AgentInstance`] is one instantiated agent component in its own store; an
//! agent actor is the tokio task that owns an instance and delivers its mailbox to it one
//! event at a time, under the per-event limits.
//!
//! A trap or an exceeded limit ends that event only: the actor drops the instance, makes a
//! fresh one from the same `InstancePre` and carries on. After [`MAX_CONSECUTIVE_FAILURES`]
//! failures in a row the agent is quarantined (its events are refused) until it is reloaded.
//! A hot swap hands the old actor a `Retire` command at the back of its mailbox, so the
//! event it is running (and any queued before the swap) finishes first; its snapshot then
//! goes to the new instance's `restore`.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use tokio::sync::{mpsc, oneshot};
use wasmtime::Store;

use crate::bindings::agent::{Agent, AgentPre};
use crate::bindings::types as wit;
use crate::bus::{Bus, Envelope, Mailbox, MailboxStats};
use crate::clock::Clock;
use crate::interfaces::messaging::BusLink;
use crate::market::service::MarketService;
use crate::policy::Policy;
use crate::state_store::StateStore;
use crate::store::{CallError, StoreState, guarded, new_store, new_store_with_clock};

/// Events in one agent's mailbox.
pub const MAILBOX_CAPACITY: usize = 1024;
/// Failures in a row after which an agent is quarantined.
pub const MAX_CONSECUTIVE_FAILURES: u32 = 5;

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
        mut store: Store<StoreState>,
        config: &str,
    ) -> Result<AgentInstance, CallError> {
        let bindings = guarded(&mut store, "instantiate", async |s| {
            pre.instantiate_async(s).await
        })
        .await?;
        let mut instance = AgentInstance { store, bindings };
        instance.init(config).await?;
        Ok(instance)
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

    fn guest_result(&self, call: &'static str, r: Result<(), wit::Error>) -> Result<(), CallError> {
        r.map_err(|e| CallError::Guest {
            plugin: self.store.data().plugin.clone(),
            call,
            message: describe_error(&e),
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
    /// Whether the agent is quarantined.
    pub quarantined: AtomicBool,
    /// The last failure, for the operator.
    pub last_error: std::sync::Mutex<Option<String>>,
}

enum Command {
    Deliver(Event, Option<oneshot::Sender<Result<(), CallError>>>),
    Retire(oneshot::Sender<Option<Vec<u8>>>),
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
}

impl BusAttach {
    fn link(&self) -> BusLink {
        BusLink::new(self.bus.clone(), self.mailbox.clone(), self.owner.clone())
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
}

impl AgentSpec {
    /// A new instance of this agent, on the bus through `attach`, reading `clock`, after
    /// `init`.
    async fn start(
        &self,
        attach: Option<&BusAttach>,
        clock: &Clock,
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
        AgentInstance::instantiate(&self.pre, store, &self.config).await
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
                static ACTORS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
                let owner: Arc<str> =
                    format!("{}#{}", spec.name, ACTORS.fetch_add(1, Ordering::Relaxed)).into();
                let mailbox = bus.agent_mailbox(&owner, MAILBOX_CAPACITY);
                let inbox = format!("agent.{}.inbox", spec.name);
                // The agent's own order events (see `orders::service`) arrive beside its inbox.
                let orders = crate::orders::service::events_subject(&spec.name);
                let failed = |subject: &str, e| CallError::Unavailable {
                    plugin: spec.name.clone(),
                    reason: format!("cannot subscribe to {subject}: {e}"),
                };
                bus.subscribe(&owner, &inbox, &mailbox)
                    .map_err(|e| failed(&inbox, e))?;
                // Order events are produced on this host only: never asked for over NATS.
                bus.subscribe_local(&owner, &orders, &mailbox)
                    .map_err(|e| failed(&orders, e))?;
                Some(BusAttach {
                    bus: bus.clone(),
                    mailbox,
                    owner,
                })
            }
            None => None,
        };
        let started = spec.start(attach.as_ref(), &clock).await;
        let instance = match started {
            Ok(i) => i,
            Err(e) => {
                if let Some(a) = &attach {
                    a.detach();
                }
                return Err(e);
            }
        };
        let (tx, rx) = mpsc::channel(MAILBOX_CAPACITY);
        let stats = Arc::new(AgentStats::default());
        let handle = AgentHandle {
            name: spec.name.clone(),
            tx,
            stats: stats.clone(),
            attach: attach.clone(),
        };
        tokio::spawn(run_actor(
            spec, clock, instance, rx, stats, handover, attach,
        ));
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

    /// Delivers an event and waits for its outcome.
    pub async fn deliver(&self, event: Event) -> Result<(), CallError> {
        let (tx, rx) = oneshot::channel();
        let gone = || CallError::Unavailable {
            plugin: self.name.clone(),
            reason: "agent has stopped".into(),
        };
        self.tx
            .send(Command::Deliver(event, Some(tx)))
            .await
            .map_err(|_| gone())?;
        rx.await.map_err(|_| gone())?
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

async fn run_actor(
    spec: AgentSpec,
    clock: Clock,
    instance: AgentInstance,
    mut rx: mpsc::Receiver<Command>,
    stats: Arc<AgentStats>,
    handover: Option<oneshot::Receiver<Option<Vec<u8>>>>,
    attach: Option<BusAttach>,
) {
    let mut current = Some(instance);
    let mut failures_in_a_row = 0u32;
    if let Some(handover) = handover
        && let Ok(Some(snapshot)) = handover.await
        && !snapshot.is_empty()
        && let Some(inst) = current.as_mut()
        && let Err(e) = inst.restore(&snapshot).await
    {
        tracing::warn!(error = %e, "restore after hot swap failed; starting from init state");
        if e.is_fatal_to_instance() {
            current = None;
        }
    }
    let mailbox = attach.as_ref().map(|a| a.mailbox.clone());
    let mut bus_open = mailbox.is_some();
    loop {
        // Commands (direct events, retire) first; bus messages in priority order otherwise.
        let cmd = tokio::select! {
            biased;
            cmd = rx.recv() => match cmd {
                Some(cmd) => cmd,
                None => break,
            },
            env = async {
                match &mailbox {
                    Some(m) => m.recv().await,
                    None => std::future::pending().await,
                }
            }, if bus_open => match env {
                Some(env) => {
                    let _ = deliver_one(
                        &spec,
                        &clock,
                        &mut current,
                        &Event::Bus(env),
                        &stats,
                        &mut failures_in_a_row,
                        attach.as_ref(),
                    )
                    .await;
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
        };
        match cmd {
            Command::Deliver(event, reply) => {
                let result = deliver_one(
                    &spec,
                    &clock,
                    &mut current,
                    &event,
                    &stats,
                    &mut failures_in_a_row,
                    attach.as_ref(),
                )
                .await;
                if let Some(reply) = reply {
                    let _ = reply.send(result);
                }
            }
            Command::Retire(reply) => {
                // What the bus already queued for this instance is delivered here too.
                if let Some(m) = &mailbox {
                    while let Some(env) = m.try_recv() {
                        let _ = deliver_one(
                            &spec,
                            &clock,
                            &mut current,
                            &Event::Bus(env),
                            &stats,
                            &mut failures_in_a_row,
                            attach.as_ref(),
                        )
                        .await;
                        m.done();
                    }
                }
                if let Some(a) = &attach {
                    a.detach();
                }
                let snapshot = match current.as_mut() {
                    Some(inst) => match inst.snapshot().await {
                        Ok(s) => Some(s),
                        Err(e) => {
                            tracing::warn!(error = %e, "snapshot before hot swap failed");
                            None
                        }
                    },
                    None => None,
                };
                let _ = reply.send(snapshot);
                tracing::info!(plugin = %spec.name, "agent instance retired");
                return;
            }
        }
    }
}

async fn deliver_one(
    spec: &AgentSpec,
    clock: &Clock,
    current: &mut Option<AgentInstance>,
    event: &Event,
    stats: &AgentStats,
    failures_in_a_row: &mut u32,
    attach: Option<&BusAttach>,
) -> Result<(), CallError> {
    if stats.quarantined.load(Ordering::Relaxed) {
        return Err(CallError::Unavailable {
            plugin: spec.name.clone(),
            reason: format!(
                "quarantined after {MAX_CONSECUTIVE_FAILURES} failures in a row; reload it to retry"
            ),
        });
    }
    if current.as_ref().is_some_and(AgentInstance::wasi_stale) {
        // A filesystem or environment grant changed: open handles and copied variables
        // must not outlive it, so the instance ends here and a new one gets the new grants.
        tracing::info!(plugin = %spec.name, "filesystem/environment grants changed; instance restarted");
        *current = None;
    }
    if current.is_none() {
        match spec.start(attach, clock).await {
            Ok(inst) => {
                stats.restarts.fetch_add(1, Ordering::Relaxed);
                *current = Some(inst);
            }
            Err(e) => {
                record_failure(spec, stats, failures_in_a_row, &e);
                return Err(e);
            }
        }
    }
    let Some(inst) = current.as_mut() else {
        return Err(CallError::Unavailable {
            plugin: spec.name.clone(),
            reason: "no instance".into(),
        });
    };
    let result = inst.deliver(event).await;
    stats
        .log_dropped
        .fetch_add(inst.log_dropped().into(), Ordering::Relaxed);
    match result {
        Ok(()) => {
            *failures_in_a_row = 0;
            stats.delivered.fetch_add(1, Ordering::Relaxed);
            Ok(())
        }
        Err(e) => {
            record_failure(spec, stats, failures_in_a_row, &e);
            if e.is_fatal_to_instance() {
                // The instance may be mid-way through anything: never run it again.
                *current = None;
                if stats.quarantined.load(Ordering::Relaxed) {
                    // A quarantined agent leaves the bus: publishers see no subscriber and
                    // requests fail at once, instead of messages vanishing into it.
                    if let Some(a) = attach {
                        a.bus.unsubscribe_all(&a.owner);
                    }
                } else {
                    // Re-create it now rather than at its next event, so the subscriptions
                    // its init makes are back before more messages are published.
                    match spec.start(attach, clock).await {
                        Ok(inst) => {
                            stats.restarts.fetch_add(1, Ordering::Relaxed);
                            *current = Some(inst);
                        }
                        Err(restart) => {
                            tracing::error!(plugin = %spec.name, error = %restart, "agent restart failed");
                        }
                    }
                }
            }
            Err(e)
        }
    }
}

fn record_failure(
    spec: &AgentSpec,
    stats: &AgentStats,
    failures_in_a_row: &mut u32,
    e: &CallError,
) {
    stats.failed.fetch_add(1, Ordering::Relaxed);
    *failures_in_a_row += 1;
    tracing::error!(plugin = %spec.name, error = %e, "agent event failed");
    if let Ok(mut last) = stats.last_error.lock() {
        *last = Some(e.to_string());
    }
    if *failures_in_a_row >= MAX_CONSECUTIVE_FAILURES && e.is_fatal_to_instance() {
        stats.quarantined.store(true, Ordering::Relaxed);
        tracing::error!(plugin = %spec.name, "agent quarantined after {MAX_CONSECUTIVE_FAILURES} failures in a row");
    }
}
