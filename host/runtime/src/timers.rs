//! Agents' timers (the WIT `timers` interface): one-shot and periodic `on-timer` calls on the
//! host clock.
//!
//! A timer belongs to the agent's *name*, not to one instance, so it survives a restart after
//! a trap, a hot swap and a sleep. A due timer is queued in the agent's bus mailbox as an
//! envelope carrying `timer` (delivered to `on-timer`), so it wakes a sleeping agent like any
//! message, and a lockstep replay waits for it like any message ([`crate::bus::Bus::settle`]).
//!
//! Who fires timers depends on the clock: a replay's driver calls [`Timers::fire_due`] each
//! time it moves the virtual clock (so a replay at any speed fires them at the same replay
//! times); on the system clock a task sleeps until the next due time ([`Timers::drive`]).
//! A periodic timer that fell behind fires once and skips the periods it missed.
//!
//! The host-wide tick (`tick_ms`: every agent's `on-timer` every N ms) runs here too during a
//! replay ([`Timers::set_tick`]), on the replay's clock, so it fires at the same replay times
//! in every run; on the system clock `colony run` ticks on the wall clock instead.
//!
//! In a replay the order is fixed: the driver fires what is due at an event's time before it
//! publishes the event, so a timer (or tick) due at or before an event is in the agent's
//! mailbox ahead of it, and the tick comes after the agent's own timers due then.

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use crate::bus::{Content, Envelope, Mailbox};
use crate::clock::Clock;

/// Timers one agent may have.
pub(crate) const MAX_TIMERS_PER_AGENT: usize = 16;
/// Longest timer name, in bytes.
pub const MAX_NAME_BYTES: usize = 64;
/// Shortest period of a periodic timer.
pub(crate) const MIN_PERIOD_MS: u64 = 10;
/// Longest first delay (366 days).
pub(crate) const MAX_AFTER_MS: u64 = 366 * 24 * 3600 * 1000;

const NS_PER_MS: u64 = 1_000_000;

/// Why a timer was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TimerError {
    /// A malformed argument; the text says which.
    #[error("{0}")]
    Invalid(String),
    /// The agent has as many timers as it may.
    #[error("at most {MAX_TIMERS_PER_AGENT} timers per agent")]
    TooMany,
}

struct Timer {
    due: u64,
    period: u64,
    seq: u64,
}

#[derive(Default)]
struct AgentTimers {
    timers: HashMap<String, Timer>,
    /// Where due timers go: the mailbox of the agent's current actor.
    target: Option<Mailbox>,
}

#[derive(Default)]
struct Inner {
    agents: HashMap<Arc<str>, AgentTimers>,
    /// (due, seq, agent, name), earliest first.
    queue: BTreeSet<(u64, u64, Arc<str>, String)>,
    next_seq: u64,
    fired: u64,
    /// The host-wide tick on this clock: (period ns, next due ns); `None`: off.
    tick: Option<(u64, u64)>,
}

/// The host's timers.
pub struct Timers {
    inner: Mutex<Inner>,
    clock: Clock,
    changed: Arc<tokio::sync::Notify>,
}

impl Timers {
    /// Timers on `clock`.
    pub fn new(clock: Clock) -> Arc<Timers> {
        Arc::new(Timers {
            inner: Mutex::new(Inner::default()),
            clock,
            changed: Arc::new(tokio::sync::Notify::new()),
        })
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // A panic while holding the lock cannot leave the maps half-changed in a way that
        // matters more than losing every timer would.
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Sets (or replaces) `agent`'s timer `name`: first due `after_ms` from now, then every
    /// `period_ms` (0: once).
    pub fn set(
        &self,
        agent: &Arc<str>,
        name: &str,
        after_ms: u64,
        period_ms: u64,
    ) -> Result<(), TimerError> {
        if name.is_empty() || name.len() > MAX_NAME_BYTES {
            return Err(TimerError::Invalid(format!(
                "timer name: 1 to {MAX_NAME_BYTES} bytes, not {}",
                name.len()
            )));
        }
        if period_ms != 0 && period_ms < MIN_PERIOD_MS {
            return Err(TimerError::Invalid(format!(
                "timer {name}: a period is 0 (one-shot) or at least {MIN_PERIOD_MS} ms, not {period_ms}"
            )));
        }
        if after_ms > MAX_AFTER_MS || period_ms > MAX_AFTER_MS {
            return Err(TimerError::Invalid(format!(
                "timer {name}: at most {MAX_AFTER_MS} ms (366 days)"
            )));
        }
        let due = self.clock.now_ns().saturating_add(after_ms * NS_PER_MS);
        let mut inner = self.lock();
        let seq = inner.next_seq;
        inner.next_seq += 1;
        let agent_timers = inner.agents.entry(agent.clone()).or_default();
        if agent_timers.timers.len() >= MAX_TIMERS_PER_AGENT
            && !agent_timers.timers.contains_key(name)
        {
            return Err(TimerError::TooMany);
        }
        let old = agent_timers.timers.insert(
            name.to_string(),
            Timer {
                due,
                period: period_ms * NS_PER_MS,
                seq,
            },
        );
        if let Some(old) = old {
            inner
                .queue
                .remove(&(old.due, old.seq, agent.clone(), name.to_string()));
        }
        inner
            .queue
            .insert((due, seq, agent.clone(), name.to_string()));
        drop(inner);
        self.changed.notify_one();
        Ok(())
    }

    /// Fires every attached agent's `on-timer` every `period_ms` of this clock's time from
    /// now (0: off). Meant for a virtual clock, where the driver's [`Timers::fire_due`] fires
    /// it at replay times.
    pub fn set_tick(&self, period_ms: u64) {
        let period = period_ms.saturating_mul(NS_PER_MS);
        let now = self.clock.now_ns();
        self.lock().tick = (period > 0).then(|| (period, now.saturating_add(period)));
    }

    /// Cancels `agent`'s timer `name`; whether it was set.
    pub fn cancel(&self, agent: &Arc<str>, name: &str) -> bool {
        let mut inner = self.lock();
        let Some(old) = inner
            .agents
            .get_mut(agent)
            .and_then(|a| a.timers.remove(name))
        else {
            return false;
        };
        inner
            .queue
            .remove(&(old.due, old.seq, agent.clone(), name.to_string()));
        true
    }

    /// Due timers of `agent` go to `mailbox` from now on (its current actor's).
    pub(crate) fn attach(&self, agent: &Arc<str>, mailbox: Mailbox) {
        self.lock().agents.entry(agent.clone()).or_default().target = Some(mailbox);
    }

    /// Due timers of `agent` are dropped until the next [`Timers::attach`] (it is
    /// quarantined: nothing may wait in its mailbox).
    pub(crate) fn detach(&self, agent: &str) {
        if let Some(a) = self.lock().agents.get_mut(agent) {
            a.target = None;
        }
    }

    /// Forgets every timer of `agent` (its plugin was removed).
    pub fn remove_agent(&self, agent: &str) {
        let mut inner = self.lock();
        if inner.agents.remove(agent).is_some() {
            inner.queue.retain(|(_, _, a, _)| &**a != agent);
        }
    }

    /// `agent`'s timers as (name, due ns, period ms), by name.
    pub fn list(&self, agent: &str) -> Vec<(String, u64, u64)> {
        let inner = self.lock();
        let mut out: Vec<_> = inner
            .agents
            .get(agent)
            .map(|a| {
                a.timers
                    .iter()
                    .map(|(n, t)| (n.clone(), t.due, t.period / NS_PER_MS))
                    .collect()
            })
            .unwrap_or_default();
        out.sort();
        out
    }

    /// Timers fired so far.
    pub fn fired(&self) -> u64 {
        self.lock().fired
    }

    /// The earliest due time, if any timer is set.
    pub fn next_due(&self) -> Option<u64> {
        self.lock().queue.first().map(|(due, ..)| *due)
    }

    /// Queues every timer due at `now` in its agent's mailbox (periodic ones are set again);
    /// returns how many fired. A timer whose agent has no mailbox (not running) is dropped
    /// from this period; a full mailbox refuses it (counted there).
    pub fn fire_due(&self, now: u64) -> usize {
        let mut inner = self.lock();
        let tick_due = inner.tick.is_some_and(|(_, due)| due <= now);
        if inner.queue.first().is_none_or(|(due, ..)| *due > now) && !tick_due {
            return 0;
        }
        let mut fired = 0;
        while let Some((due, seq, agent, name)) = inner.queue.first().cloned() {
            if due > now {
                break;
            }
            inner.queue.pop_first();
            let next_seq = inner.next_seq;
            let Some(agent_timers) = inner.agents.get_mut(&agent) else {
                continue;
            };
            let mut again = None;
            if let Some(t) = agent_timers.timers.get_mut(&name) {
                if t.seq != seq {
                    continue;
                }
                match (now - due).checked_div(t.period) {
                    None => {
                        agent_timers.timers.remove(&name);
                    }
                    Some(missed) => {
                        // Skips the periods already missed: fires once, then on schedule.
                        t.due = due.saturating_add((missed + 1).saturating_mul(t.period));
                        t.seq = next_seq;
                        again = Some(t.due);
                    }
                }
            } else {
                continue;
            }
            if let Some(target) = &agent_timers.target
                && queue_timer(target, &agent, &name, now)
            {
                fired += 1;
            }
            if let Some(next) = again {
                inner.next_seq += 1;
                inner.queue.insert((next, next_seq, agent, name));
            }
        }
        if let Some((period, due)) = inner.tick
            && due <= now
        {
            let missed = (now - due) / period;
            inner.tick = Some((
                period,
                due.saturating_add((missed + 1).saturating_mul(period)),
            ));
            let mut agents: Vec<(&Arc<str>, &Mailbox)> = inner
                .agents
                .iter()
                .filter_map(|(name, a)| a.target.as_ref().map(|t| (name, t)))
                .collect();
            agents.sort_by(|a, b| a.0.cmp(b.0));
            for (agent, target) in agents {
                if queue_timer(target, agent, "tick", now) {
                    fired += 1;
                }
            }
        }
        inner.fired += fired as u64;
        fired
    }

    /// Fires timers on the system clock until the returned task is aborted: sleeps until the
    /// next due time, or until a timer is set. For a virtual clock the replay driver calls
    /// [`Timers::fire_due`] instead, and this returns at once.
    pub fn drive(self: &Arc<Self>) -> Option<tokio::task::JoinHandle<()>> {
        if self.clock.is_virtual() {
            return None;
        }
        let me = Arc::downgrade(self);
        let changed_signal = self.changed.clone();
        Some(tokio::spawn(async move {
            loop {
                let changed = changed_signal.notified();
                tokio::pin!(changed);
                // Registered before looking, so a timer set in between is not missed.
                changed.as_mut().enable();
                let Some(timers) = me.upgrade() else { return };
                let now = timers.clock.now_ns();
                timers.fire_due(now);
                let wait = match timers.next_due() {
                    Some(due) => Duration::from_nanos(due.saturating_sub(now)),
                    None => Duration::from_secs(3600),
                };
                drop(timers);
                tokio::select! {
                    _ = tokio::time::sleep(wait) => {}
                    _ = changed => {}
                }
            }
        }))
    }
}

/// Queues an `on-timer` at `now` for `agent` in `target`; whether it was queued.
fn queue_timer(target: &Mailbox, agent: &str, name: &str, now: u64) -> bool {
    let mut env = Envelope::new(
        Arc::from("host"),
        format!("agent.{agent}.timer"),
        bytes::Bytes::new(),
    );
    env.timestamp_ns = now;
    env.content = Content::Timer(now);
    match target.push(Arc::new(env)) {
        Ok(_) => true,
        Err(e) => {
            tracing::warn!(agent = %agent, timer = %name, error = ?e, "timer not queued");
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: u64 = NS_PER_MS;

    fn setup() -> (Arc<Timers>, Clock, Mailbox, Arc<str>) {
        let clock = Clock::virtual_at(1_000 * MS);
        let timers = Timers::new(clock.clone());
        let mailbox = Mailbox::detached("a#0", 64);
        let agent: Arc<str> = Arc::from("a");
        timers.attach(&agent, mailbox.clone());
        (timers, clock, mailbox, agent)
    }

    fn drain(m: &Mailbox) -> Vec<u64> {
        let mut out = Vec::new();
        while let Some(env) = m.try_recv() {
            out.extend(env.timer());
            m.done();
        }
        out
    }

    #[test]
    fn a_one_shot_fires_once_at_its_time_on_the_virtual_clock() {
        let (timers, clock, mailbox, agent) = setup();
        timers.set(&agent, "once", 500, 0).unwrap();
        assert_eq!(timers.fire_due(1_499 * MS), 0);
        clock.set(1_600 * MS);
        assert_eq!(timers.fire_due(1_600 * MS), 1);
        assert_eq!(drain(&mailbox), [1_600 * MS]);
        assert_eq!(timers.fire_due(10_000 * MS), 0);
        assert!(timers.list("a").is_empty());
    }

    #[test]
    fn a_periodic_timer_skips_missed_periods_and_stays_on_schedule() {
        let (timers, _clock, mailbox, agent) = setup();
        timers.set(&agent, "p", 100, 100).unwrap();
        assert_eq!(timers.fire_due(1_100 * MS), 1);
        // 1,200 … 1,500 were missed: one firing, next due at 1,600.
        assert_eq!(timers.fire_due(1_550 * MS), 1);
        assert_eq!(timers.list("a"), [("p".to_string(), 1_600 * MS, 100)]);
        assert_eq!(timers.fire_due(1_600 * MS), 1);
        assert_eq!(drain(&mailbox).len(), 3);
    }

    #[test]
    fn setting_a_name_again_replaces_it_and_cancel_removes_it() {
        let (timers, _clock, mailbox, agent) = setup();
        timers.set(&agent, "t", 100, 0).unwrap();
        timers.set(&agent, "t", 300, 0).unwrap();
        assert_eq!(
            timers.fire_due(1_200 * MS),
            0,
            "the first setting was replaced"
        );
        assert_eq!(timers.fire_due(1_300 * MS), 1);
        timers.set(&agent, "u", 100, 0).unwrap();
        assert!(timers.cancel(&agent, "u"));
        assert!(!timers.cancel(&agent, "u"));
        assert_eq!(timers.fire_due(u64::MAX), 0);
        assert_eq!(drain(&mailbox).len(), 1);
    }

    #[test]
    fn limits_are_refused_with_their_reason() {
        let (timers, _clock, _mailbox, agent) = setup();
        assert!(matches!(
            timers.set(&agent, "", 1, 0),
            Err(TimerError::Invalid(_))
        ));
        let long = "x".repeat(MAX_NAME_BYTES + 1);
        assert!(matches!(
            timers.set(&agent, &long, 1, 0),
            Err(TimerError::Invalid(_))
        ));
        assert!(matches!(
            timers.set(&agent, "fast", 1, 5),
            Err(TimerError::Invalid(_))
        ));
        assert!(matches!(
            timers.set(&agent, "far", MAX_AFTER_MS + 1, 0),
            Err(TimerError::Invalid(_))
        ));
        for i in 0..MAX_TIMERS_PER_AGENT {
            timers.set(&agent, &format!("t{i}"), 1_000, 0).unwrap();
        }
        assert_eq!(
            timers.set(&agent, "one-more", 1, 0),
            Err(TimerError::TooMany)
        );
        // Replacing an existing one is still allowed at the limit.
        timers.set(&agent, "t0", 5, 0).unwrap();
        timers.remove_agent("a");
        assert_eq!(timers.next_due(), None);
    }

    #[test]
    fn a_detached_agent_gets_no_timers_until_attached_again() {
        let (timers, _clock, mailbox, agent) = setup();
        timers.set(&agent, "p", 100, 100).unwrap();
        timers.detach("a");
        assert_eq!(timers.fire_due(1_100 * MS), 0);
        assert!(drain(&mailbox).is_empty());
        timers.attach(&agent, mailbox.clone());
        assert_eq!(timers.fire_due(1_200 * MS), 1, "still set, on schedule");
        assert_eq!(drain(&mailbox).len(), 1);
    }

    #[test]
    fn the_tick_fires_for_every_agent_at_replay_times_after_their_due_timers() {
        let (timers, clock, mailbox, agent) = setup();
        let other: Arc<str> = Arc::from("b");
        let other_box = Mailbox::detached("b#0", 64);
        timers.attach(&other, other_box.clone());
        timers.set_tick(1_000);
        timers.set(&agent, "own", 1_000, 0).unwrap();
        assert_eq!(timers.fire_due(1_999 * MS), 0);
        clock.set(2_000 * MS);
        assert_eq!(
            timers.fire_due(2_000 * MS),
            3,
            "own timer + a tick per agent"
        );
        // The agent's own timer first, then the tick; both at the replay time.
        let subjects: Vec<(String, Option<u64>)> =
            std::iter::from_fn(|| mailbox.try_recv().map(|e| (e.subject.clone(), e.timer())))
                .collect();
        assert_eq!(
            subjects,
            [
                ("agent.a.timer".to_string(), Some(2_000 * MS)),
                ("agent.a.timer".to_string(), Some(2_000 * MS))
            ]
        );
        assert_eq!(drain(&other_box), [2_000 * MS]);
        // Missed ticks are skipped: one firing, then on schedule.
        assert_eq!(timers.fire_due(5_500 * MS), 2);
        assert_eq!(timers.fire_due(5_999 * MS), 0);
        assert_eq!(timers.fire_due(6_000 * MS), 2);
        timers.set_tick(0);
        assert_eq!(timers.fire_due(60_000 * MS), 0);
    }

    #[test]
    fn a_timer_follows_the_agent_to_its_new_mailbox() {
        let (timers, _clock, old, agent) = setup();
        timers.set(&agent, "t", 10, 0).unwrap();
        let new = Mailbox::detached("a#1", 64);
        timers.attach(&agent, new.clone());
        assert_eq!(timers.fire_due(2_000 * MS), 1);
        assert!(drain(&old).is_empty());
        assert_eq!(drain(&new).len(), 1);
    }
}
