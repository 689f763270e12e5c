//! The actor task: the mailbox loop that owns an agent's instance, makes it when needed, and
//! delivers one event at a time to it.

use super::State;
use super::handle::{AgentSpec, AgentStats, BusAttach, Command, forget_sleep_snapshot};
use super::instance::{AgentInstance, Event};
use super::supervision::RecoveryPoint;
use crate::audit::AuditRecord;
use crate::bus::Envelope;
use crate::clock::Clock;
use crate::interfaces::messaging::HeldSubscriptions;
use crate::store::CallError;
use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Instant;
use tokio::sync::{mpsc, oneshot};

/// One agent's actor: its instance, and the supervision state around it.
pub(super) struct Actor {
    pub(super) spec: AgentSpec,
    pub(super) clock: Clock,
    pub(super) stats: Arc<AgentStats>,
    pub(super) attach: Option<BusAttach>,
    pub(super) current: Option<AgentInstance>,
    /// A dead or released instance's subscriptions, for the next one to take over.
    pub(super) held: Option<HeldSubscriptions>,
    /// The snapshot taken when it went to sleep, for `restore` on waking.
    pub(super) slept: Option<Vec<u8>>,
    /// When recent instance failures happened (within the quarantine window).
    pub(super) failures: VecDeque<Instant>,
    /// Restarts since the last healthy period (the backoff exponent).
    pub(super) backoff_level: u32,
    pub(super) last_failure: Option<Instant>,
    /// When the instance made after the last failure came up: the healthy period that resets
    /// the backoff counts from here, not from the failure, so a restart slowed by a busy
    /// machine does not pass for time the agent ran healthily.
    pub(super) restarted_at: Option<Instant>,
    /// When the failed instance is made again.
    pub(super) restart_at: Option<tokio::time::Instant>,
    pub(super) last_event: Instant,
    /// Events handled, of the injection's handler if it names one (for fault injection).
    pub(super) handled: u64,
    pub(super) injected: bool,
    /// The latest recovery snapshot, for the instance made after a failure.
    pub(super) recovery: RecoveryPoint,
    /// An order event whose handler failed, for the next instance (once).
    pub(super) redeliver: Option<Arc<Envelope>>,
    /// The handler and error of the last failure, for the recovery notice.
    pub(super) last_failed_call: Option<(&'static str, String)>,
    /// Paused by an operator (`pause.rs`).
    pub(super) paused: bool,
    /// Bus messages held while paused, to run on resume.
    pub(super) held_events: VecDeque<Arc<Envelope>>,
}

/// How an event reaches [`Actor::handle`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Delivery {
    /// An event, the first time.
    First,
    /// An order event whose handler failed on the previous instance.
    Redelivery,
    /// The host's recovery notice (not counted as an event).
    Notice,
}

impl Actor {
    pub(super) async fn run(
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
            let idle_for =
                self.spec.services.supervision.sleep_after_idle.filter(|_| {
                    self.current.is_some() && self.restart_at.is_none() && !self.paused
                });
            let sleep_at = idle_for.map(|d| tokio::time::Instant::from_std(self.last_event + d));
            let restart_at = self.restart_at;
            let paused = self.paused;
            let run_held = !paused
                && !self.held_events.is_empty()
                && restart_at.is_none()
                && !self.stats.quarantined();
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
                    if self.paused && !self.stats.quarantined() {
                        self.stats.set_state(State::Paused);
                    }
                    continue;
                },
                // Held while paused: older than anything in the mailbox, so first.
                _ = std::future::ready(()), if run_held => {
                    if let Some(env) = self.next_held() {
                        let _ = self.deliver(&Event::Bus(env)).await;
                    }
                    continue;
                },
                env = async {
                    match &mailbox {
                        Some(m) => m.recv().await,
                        None => std::future::pending().await,
                    }
                }, if bus_open && restart_at.is_none() && !self.stats.quarantined() => match env {
                    Some(env) => {
                        if paused {
                            self.hold(env);
                        } else {
                            let _ = self.deliver(&Event::Bus(env)).await;
                        }
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
                Command::Deliver(_, None) if paused => {
                    self.stats.paused_dropped.fetch_add(1, Ordering::Relaxed);
                }
                Command::Deliver(_, Some(reply)) if paused => {
                    let _ = reply.send(Err(self.paused_error()));
                }
                Command::Deliver(event, reply) => {
                    let result = self.deliver(&event).await;
                    if let Some(reply) = reply {
                        let _ = reply.send(result);
                    }
                }
                // A paused agent stays as it is until resumed.
                Command::Sleep(reply) if paused => {
                    let _ = reply.send(false);
                }
                Command::Wake(reply) if paused => {
                    let _ = reply.send(Err(self.paused_error()));
                }
                Command::Pause(actor, reply) => {
                    let r = self.pause(&actor).await;
                    let _ = reply.send(r);
                }
                Command::Resume(actor, reply) => {
                    let r = self.resume(&actor).await;
                    let _ = reply.send(r);
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
                    // A swap ends a pause: what was held runs here, then what the bus queued.
                    self.paused = false;
                    while let Some(env) = self.next_held() {
                        let _ = self.deliver(&Event::Bus(env)).await;
                    }
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
    pub(super) async fn transition(&mut self, to: State, detail: String) {
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
    pub(super) async fn ensure_instance(&mut self) -> Result<(), CallError> {
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
    pub(super) async fn handle(&mut self, event: &Event, how: Delivery) -> Result<(), CallError> {
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
                    let order = matches!(event, Event::Bus(env) if env.order().is_some());
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
                    Event::Bus(env) if env.order().is_some() && how == Delivery::First => {
                        self.redeliver = Some(env.clone());
                    }
                    Event::Bus(env) if env.order().is_some() => {
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
    pub(super) fn drop_instance(&mut self) {
        if let Some(mut dead) = self.current.take() {
            let held = dead.take_subscriptions();
            if self.held.is_none() {
                self.held = held;
            }
        }
    }

    pub(super) fn dead_letter(&self, env: &Envelope, reason: crate::bus::DeadReason) {
        tracing::warn!(plugin = %self.spec.name, subject = %env.subject, reason = reason.as_str(), "event dead-lettered");
        if let Some(a) = &self.attach {
            a.bus.dead_letter(env, reason, &a.owner);
        }
    }
}
