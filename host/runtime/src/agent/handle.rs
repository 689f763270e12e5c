//! The way to reach a running agent actor: [`AgentHandle`] and what it is spawned from
//! ([`AgentSpec`], [`AgentServices`]), the actor's commands, its bus attachment, and the
//! counters an operator sees.

use super::actor::Actor;
use super::instance::{AgentInstance, Event};
use super::supervision::{RecoveryPoint, Supervision};
use super::{MAILBOX_CAPACITY, SLEEP_SNAPSHOTS, State};
use crate::audit::AuditWriter;
use crate::bindings::agent::AgentPre;
use crate::bus::{Bus, Mailbox, MailboxStats};
use crate::clock::Clock;
use crate::interfaces::messaging::{BusLink, HeldSubscriptions};
use crate::market::service::MarketService;
use crate::policy::Policy;
use crate::state_store::StateStore;
use crate::store::{CallError, StoreState, new_store_with_clock};
use crate::timers::Timers;
use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, AtomicU64, Ordering};
use std::time::Instant;
use tokio::sync::{mpsc, oneshot};

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
    /// Events dropped while paused: market data, the host's ticks, and order events and
    /// timers beyond the bound of what a paused agent holds (`pause.rs`).
    pub paused_dropped: AtomicU64,
    /// Bus messages a paused agent holds for when it resumes (part of its mailbox depth).
    pub held: AtomicU64,
    /// The lifecycle [`State`], as its `u8`.
    pub(super) state: AtomicU8,
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

    pub(super) fn set_state(&self, state: State) {
        self.state.store(state as u8, Ordering::Relaxed);
    }
}

pub(super) enum Command {
    Deliver(Event, Option<oneshot::Sender<Result<(), CallError>>>),
    Retire(oneshot::Sender<Option<Vec<u8>>>),
    /// Sleep now; answers whether it went to sleep (an agent already asleep, failed or
    /// quarantined does not).
    Sleep(oneshot::Sender<bool>),
    /// Wake now (make the instance) if asleep or cold.
    Wake(oneshot::Sender<Result<(), CallError>>),
    /// Release from quarantine; answers whether it was quarantined.
    Release(String, oneshot::Sender<Result<bool, CallError>>),
    /// Pause (by the operator named); answers whether it was paused now.
    Pause(String, oneshot::Sender<bool>),
    /// Resume (by the operator named); answers whether it was paused.
    Resume(String, oneshot::Sender<bool>),
}

/// The way to reach a running agent actor.
#[derive(Clone)]
pub struct AgentHandle {
    pub(super) name: Arc<str>,
    tx: mpsc::Sender<Command>,
    pub(super) stats: Arc<AgentStats>,
    pub(super) attach: Option<BusAttach>,
}

/// An actor's place on the bus.
#[derive(Clone)]
pub(super) struct BusAttach {
    pub(super) bus: Bus,
    pub(super) mailbox: Mailbox,
    pub(super) owner: Arc<str>,
    /// The plugin name (its inbox and order-event subjects).
    pub(super) name: Arc<str>,
}

impl BusAttach {
    fn link(&self) -> BusLink {
        BusLink::new(self.bus.clone(), self.mailbox.clone(), self.owner.clone())
    }

    /// Subscribes the actor to its inbox and its order events (not the instance's own
    /// subscriptions, which `init` makes).
    pub(super) fn subscribe_own(&self) -> Result<(), CallError> {
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

    pub(super) fn detach(&self) {
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
    pub(super) async fn start(
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
            restarted_at: None,
            restart_at: None,
            last_event: Instant::now(),
            handled: 0,
            injected: false,
            recovery: RecoveryPoint::default(),
            redeliver: None,
            last_failed_call: None,
            paused: false,
            held_events: VecDeque::new(),
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

    /// Pauses the agent (audited as `actor`): it handles no event until resumed. Whether it
    /// was paused now (false: already paused, or quarantined).
    pub async fn pause(&self, actor: &str) -> Result<bool, CallError> {
        let (tx, rx) = oneshot::channel();
        self.tx
            .send(Command::Pause(actor.to_string(), tx))
            .await
            .map_err(|_| self.gone())?;
        rx.await.map_err(|_| self.gone())
    }

    /// Resumes a paused agent (audited as `actor`); whether it was paused.
    pub async fn resume(&self, actor: &str) -> Result<bool, CallError> {
        let (tx, rx) = oneshot::channel();
        self.tx
            .send(Command::Resume(actor.to_string(), tx))
            .await
            .map_err(|_| self.gone())?;
        rx.await.map_err(|_| self.gone())
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

pub(super) async fn forget_sleep_snapshot(spec: &AgentSpec) {
    if let Some(store) = &spec.state
        && let Err(e) = store.delete(SLEEP_SNAPSHOTS, &spec.name).await
    {
        tracing::warn!(plugin = %spec.name, error = %e, "cannot delete the sleep snapshot");
    }
}
