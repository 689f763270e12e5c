//! Pausing: an operator's hold on an agent's events (`colony agents pause NAME`), unlike a
//! sleep, which the next event ends.
//!
//! A paused agent handles no event. Its instance, subscriptions and timers stay; its actor
//! keeps emptying the bus mailbox, so publishers and a lockstep replay never wait on it:
//!
//! | what arrives while paused | what happens |
//! |---|---|
//! | market data (`md.…`) | dropped and counted (`paused_dropped`): prices are stale by the time it resumes, and the latest quote and book stay readable through `market-data` |
//! | messages, order events, timers | held in arrival order, at most [`MAILBOX_CAPACITY`] (the mailbox's bound); beyond that a message is refused like one that finds a full mailbox (dead-lettered `mailbox-full`, counted in `refused`), an order event or a timer dropped and counted (`paused_dropped`) as a quarantine does |
//! | the host's broadcast tick | dropped and counted (`paused_dropped`) |
//! | a direct delivery that waits for its outcome | refused at once (`paused`) |
//!
//! On resume the held events run first, in order (one that expired meanwhile is
//! dead-lettered `expired`), then the mailbox. A hot swap ends the pause: the held events run
//! on the old build before it hands over its snapshot, as any event queued before a swap.

use super::actor::Actor;
use super::{MAILBOX_CAPACITY, State};
use crate::bus::{DeadReason, Envelope};
use crate::store::CallError;
use std::sync::Arc;
use std::sync::atomic::Ordering;

impl Actor {
    /// Pauses the agent; whether it was paused now (not already paused, not quarantined).
    pub(super) async fn pause(&mut self, actor: &str) -> bool {
        if self.paused || self.stats.quarantined() {
            return false;
        }
        self.paused = true;
        self.transition(State::Paused, format!("paused by {actor}"))
            .await;
        true
    }

    /// Resumes a paused agent; whether it was paused. The held events run next.
    pub(super) async fn resume(&mut self, actor: &str) -> bool {
        if !self.paused {
            return false;
        }
        self.paused = false;
        // Where it would be had it not been paused.
        let to = if self.current.is_some() {
            State::Idle
        } else if self.slept.is_some() {
            State::Sleeping
        } else if self.restart_at.is_some() {
            State::Failed
        } else {
            State::Cold
        };
        let held = self.held_events.len();
        let dropped = self.stats.paused_dropped.load(Ordering::Relaxed);
        self.transition(
            to,
            format!("resumed by {actor}; {held} held events to run, {dropped} events dropped while paused (since start)"),
        )
        .await;
        self.last_event = std::time::Instant::now();
        true
    }

    /// What the actor does with a bus message that arrives while it is paused.
    pub(super) fn hold(&mut self, env: Arc<Envelope>) {
        if env.market().is_some() {
            self.stats.paused_dropped.fetch_add(1, Ordering::Relaxed);
        } else if self.held_events.len() < MAILBOX_CAPACITY {
            self.held_events.push_back(env);
            self.stats.held.fetch_add(1, Ordering::Relaxed);
        } else if matches!(env.content, crate::bus::Content::Bytes) {
            self.stats.refused.fetch_add(1, Ordering::Relaxed);
            self.dead_letter(&env, DeadReason::MailboxFull);
        } else {
            self.stats.paused_dropped.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// The reply to a direct delivery while paused.
    pub(super) fn paused_error(&self) -> CallError {
        CallError::Unavailable {
            plugin: self.spec.name.clone(),
            reason: format!(
                "paused; resume it with `colony agents resume {}`",
                self.spec.name
            ),
        }
    }

    /// The next held event to run, dead-lettering those that expired while held.
    pub(super) fn next_held(&mut self) -> Option<Arc<Envelope>> {
        let now = tokio::time::Instant::now();
        while let Some(env) = self.held_events.pop_front() {
            self.stats.held.fetch_sub(1, Ordering::Relaxed);
            if env.expires_at.is_some_and(|at| at <= now) {
                self.dead_letter(&env, DeadReason::Expired);
                continue;
            }
            return Some(env);
        }
        None
    }
}
