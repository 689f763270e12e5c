//! Supervision: the restart policy ([`Supervision`]), recovery points, failures with backoff,
//! quarantine and release, and putting an agent to sleep.

use super::actor::{Actor, Delivery};
use super::instance::{Event, Message};
use super::{SLEEP_SNAPSHOTS, State};
use crate::store::CallError;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

/// How the supervisor restarts, quarantines and puts agents to sleep.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Supervision {
    /// The first restart's delay.
    pub backoff_initial: Duration,
    /// The longest delay (the delay doubles per failure up to this).
    pub backoff_max: Duration,
    /// A failure this long after the restarted instance came up starts again at
    /// `backoff_initial`.
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

#[derive(Default)]
pub(super) struct RecoveryPoint {
    /// The agent's snapshot (`None`: none taken yet, the new instance starts from `init`).
    pub(super) snapshot: Option<Vec<u8>>,
    /// Host-clock time it was taken (or the instance started, without one).
    pub(super) at_ns: u64,
    /// Events since it whose effects it does not hold: handled after it, or failed and not
    /// redelivered.
    pub(super) missed: u64,
}

/// The subject of the recovery notice an agent gets after a restart.
pub fn recovery_subject(agent: &str) -> String {
    format!("agent.{agent}.recovery")
}

impl Actor {
    /// Takes the instance's snapshot as the new recovery point. A snapshot that traps ends
    /// the instance like a failed event.
    pub(super) async fn take_recovery_point(&mut self) {
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

    pub(super) fn note_error(&self, e: &CallError) {
        self.stats.failed.fetch_add(1, Ordering::Relaxed);
        tracing::warn!(plugin = %self.spec.name, error = %e, "agent event failed");
        if let Ok(mut last) = self.stats.last_error.lock() {
            *last = Some(e.to_string());
        }
    }

    /// The instance is gone after a failure: back off and restart, or quarantine.
    pub(super) async fn on_failure(&mut self, e: &CallError) {
        self.note_error(e);
        if self.current.is_none() {
            self.stats.memory_bytes.store(0, Ordering::Relaxed);
        }
        let now = Instant::now();
        let sup = self.spec.services.supervision;
        // Healthy since the instance came back up (not since the failure: the restart itself
        // may take long on a busy machine).
        if self
            .restarted_at
            .is_some_and(|t| now.duration_since(t) >= sup.healthy_after)
        {
            self.backoff_level = 0;
        }
        self.restarted_at = None;
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
    pub(super) async fn restart(&mut self) {
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
        self.restarted_at = Some(Instant::now());
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
        // A quarantine ends a pause; what the pause held goes the way of the mailbox.
        self.paused = false;
        self.stats.held.store(0, Ordering::Relaxed);
        for env in std::mem::take(&mut self.held_events) {
            if matches!(env.content, crate::bus::Content::Bytes) {
                self.dead_letter(&env, crate::bus::DeadReason::Quarantined);
            }
            dead += 1;
        }
        if let Some(a) = &self.attach {
            a.bus.unsubscribe_all(&a.owner);
            while let Some(env) = a.mailbox.try_recv() {
                if matches!(env.content, crate::bus::Content::Bytes) {
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

    pub(super) async fn release(&mut self, actor: &str) -> Result<bool, CallError> {
        if !self.stats.quarantined() {
            return Ok(false);
        }
        self.failures.clear();
        self.backoff_level = 0;
        self.last_failure = None;
        self.restarted_at = None;
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
    pub(super) async fn sleep(&mut self, why: &str) -> bool {
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
