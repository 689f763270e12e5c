//! [`Mailbox`]: one subscriber's bounded queue of envelopes, in three priority lanes, with
//! drop-oldest for market data and refusal for everything else (see the table in [`super`]).
//!
//! Fairness: one sender may hold at most [`SENDER_SHARE`] of a mailbox's capacity in
//! messages other than market data and the host's own events, so a flooding publisher
//! cannot take the room other senders' requests need; and a message other than market data
//! that finds the mailbox full evicts the oldest market data before it is refused.

use super::envelope::{Content, Envelope};
use super::{BusShared, DeadReason};
use std::collections::{HashMap, VecDeque};
use std::fmt;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, Weak};
use tokio::sync::Notify;
use tokio::time::Instant;

/// Default mailbox capacity, in envelopes.
pub const DEFAULT_MAILBOX_CAPACITY: usize = 1024;

/// The part of a mailbox one sender may fill: 1/`SENDER_SHARE` of its capacity (256 of the
/// default 1,024), but at least [`MIN_SENDER_SHARE`] (the whole of a smaller mailbox),
/// counting the messages that are neither market data nor the host's own events (order
/// events, timers).
pub const SENDER_SHARE: usize = 4;

/// The smallest per-sender share: a small mailbox (an operator's, a test's) is not split.
pub(crate) const MIN_SENDER_SHARE: usize = 64;

/// What [`Mailbox::push`] did with an envelope it accepted or dropped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pushed {
    /// Queued; nothing was lost.
    Queued,
    /// Queued after evicting the oldest market-data envelope (counted in `dropped`).
    Evicted,
    /// A market-data envelope that found the mailbox full of other messages: dropped and
    /// counted, not queued.
    Dropped,
}

/// Why [`Mailbox::push`] did not take an envelope.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum PushError {
    /// The mailbox is full and the envelope is not market data (counted in `refused`).
    #[error("mailbox full")]
    MailboxFull,
    /// The mailbox already holds its sender's share ([`SENDER_SHARE`]) (counted in `refused`).
    #[error("mailbox holds the sender's share")]
    SenderShare,
    /// The mailbox was closed; its subscriber is going away.
    #[error("mailbox closed")]
    Closed,
}

/// A snapshot of a mailbox's counters, read without locking its queue.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct MailboxStats {
    /// Envelopes waiting now.
    pub depth: usize,
    /// Most envelopes it holds.
    pub capacity: usize,
    /// Market-data envelopes lost to pressure (evicted or dropped on arrival).
    pub dropped: u64,
    /// Other envelopes refused because it was full.
    pub refused: u64,
    /// Envelopes whose time to live ran out before they were received.
    pub expired: u64,
    /// Market-data envelopes routed here (queued, or dropped on arrival).
    pub md_routed: u64,
    /// Market-data envelopes handed to the receiver.
    pub md_taken: u64,
    /// Messages the owner published that some mailbox refused ([`Mailbox::note_sent_refused`]).
    pub sent_refused: u64,
}

/// One subscriber's mailbox: a cheap handle (clones share the queue). Any number of publishers
/// push without waiting; one receiver (the subscriber's actor) awaits [`Mailbox::recv`].
#[derive(Clone)]
pub struct Mailbox(Arc<Shared>);

struct Shared {
    owner: Arc<str>,
    capacity: usize,
    queue: Mutex<Queue>,
    ready: Notify,
    depth: AtomicUsize,
    dropped: AtomicU64,
    refused: AtomicU64,
    expired: AtomicU64,
    md_routed: AtomicU64,
    md_taken: AtomicU64,
    sent_refused: AtomicU64,
    /// An agent's mailbox: its receiver reports [`Mailbox::done`], and the bus counts it busy
    /// while it holds or is handling anything ([`Bus::settle`](super::Bus::settle)).
    tracked: bool,
    /// Where expired envelopes are dead-lettered; empty for a mailbox made without a bus.
    bus: Weak<BusShared>,
}

/// Six FIFO queues: per priority lane, market data apart from the rest, so that both "next in
/// lane order" and "oldest market data" are a look at queue fronts. `seq` orders arrivals
/// across the two queues of a lane and across lanes.
#[derive(Default)]
struct Queue {
    lanes: [[Fifo; 2]; 3],
    seq: u64,
    len: usize,
    /// Queued envelopes per sender, of those a share limits ([`shared`]).
    per_sender: HashMap<Arc<str>, usize>,
    closed: bool,
    /// Envelopes handed out.
    taken: u64,
    /// Envelopes the receiver finished with ([`Mailbox::done`]), expired ones included.
    done: u64,
}

impl Queue {
    /// Nothing queued and nothing being handled.
    fn idle(&self) -> bool {
        self.len == 0 && self.taken == self.done
    }
}

/// Envelopes with their arrival number.
type Fifo = VecDeque<(u64, Arc<Envelope>)>;

const OTHER: usize = 0;
const MD: usize = 1;

/// Whether `env` counts against its sender's share: anything but market data and the
/// host's own typed events (order events, timers), which have no guest sender to limit.
fn shared(env: &Envelope) -> bool {
    !env.is_market_data() && matches!(env.content, Content::Bytes)
}

impl Queue {
    fn push(&mut self, env: Arc<Envelope>, md: bool) {
        self.seq += 1;
        self.len += 1;
        if shared(&env) {
            *self.per_sender.entry(Arc::clone(&env.sender)).or_insert(0) += 1;
        }
        self.lanes[env.priority.lane()][usize::from(md)].push_back((self.seq, env));
    }

    /// How many shared envelopes of `sender` are queued.
    fn queued_from(&self, sender: &str) -> usize {
        self.per_sender.get(sender).copied().unwrap_or(0)
    }

    /// Forgets one shared envelope of `env`'s sender (it left the queue).
    fn left(&mut self, env: &Envelope) {
        if shared(env)
            && let Some(n) = self.per_sender.get_mut(&*env.sender)
        {
            *n -= 1;
            if *n == 0 {
                self.per_sender.remove(&*env.sender);
            }
        }
    }

    /// The next envelope in delivery order: highest lane first, then arrival order.
    fn pop(&mut self) -> Option<Arc<Envelope>> {
        for lane in &mut self.lanes {
            let other = lane[OTHER].front().map(|(s, _)| *s);
            let md = lane[MD].front().map(|(s, _)| *s);
            let from = match (other, md) {
                (None, None) => continue,
                (Some(_), None) => OTHER,
                (None, Some(_)) => MD,
                (Some(o), Some(m)) => usize::from(m < o),
            };
            self.len -= 1;
            let env = lane[from].pop_front().map(|(_, e)| e);
            if let Some(e) = &env {
                self.left(e);
            }
            return env;
        }
        None
    }

    /// Removes the oldest market-data envelope in any lane; false if there is none.
    fn evict_oldest_md(&mut self) -> bool {
        let oldest = self
            .lanes
            .iter()
            .enumerate()
            .filter_map(|(i, lane)| lane[MD].front().map(|(s, _)| (*s, i)))
            .min();
        match oldest {
            Some((_, i)) => {
                self.lanes[i][MD].pop_front();
                self.len -= 1;
                true
            }
            None => false,
        }
    }
}

impl Drop for Shared {
    fn drop(&mut self) {
        // A busy agent mailbox that goes away (its actor ended without draining it) must not
        // keep the bus from settling.
        let q = self.queue.get_mut().unwrap_or_else(PoisonError::into_inner);
        if self.tracked
            && !q.idle()
            && let Some(bus) = self.bus.upgrade()
        {
            bus.mailbox_idle();
        }
    }
}

enum Pop {
    Item(Arc<Envelope>),
    Empty,
    Closed,
}

impl Mailbox {
    /// A mailbox for `owner` holding at most `capacity` envelopes (at least 1), not attached to
    /// a bus: expired envelopes are counted but go nowhere. Use [`Bus::mailbox`] for one whose
    /// expired envelopes are dead-lettered.
    ///
    /// [`Bus::mailbox`]: super::Bus::mailbox
    pub fn detached(owner: &str, capacity: usize) -> Mailbox {
        Mailbox::with_bus(owner, capacity, Weak::new(), false)
    }

    pub(super) fn with_bus(
        owner: &str,
        capacity: usize,
        bus: Weak<BusShared>,
        tracked: bool,
    ) -> Mailbox {
        Mailbox(Arc::new(Shared {
            owner: owner.into(),
            capacity: capacity.max(1),
            queue: Mutex::new(Queue::default()),
            ready: Notify::new(),
            depth: AtomicUsize::new(0),
            dropped: AtomicU64::new(0),
            refused: AtomicU64::new(0),
            expired: AtomicU64::new(0),
            md_routed: AtomicU64::new(0),
            md_taken: AtomicU64::new(0),
            sent_refused: AtomicU64::new(0),
            tracked,
            bus,
        }))
    }

    /// Whose mailbox this is (named in dead letters).
    pub fn owner(&self) -> &Arc<str> {
        &self.0.owner
    }

    /// Most envelopes it holds.
    pub fn capacity(&self) -> usize {
        self.0.capacity
    }

    /// Most shared envelopes one sender may have queued here ([`SENDER_SHARE`]).
    pub(crate) fn sender_share(&self) -> usize {
        (self.0.capacity / SENDER_SHARE)
            .max(MIN_SENDER_SHARE)
            .min(self.0.capacity)
    }

    /// Envelopes waiting now.
    pub fn depth(&self) -> usize {
        self.0.depth.load(Ordering::Relaxed)
    }

    /// The counters, without locking the queue.
    pub fn stats(&self) -> MailboxStats {
        MailboxStats {
            depth: self.depth(),
            capacity: self.0.capacity,
            dropped: self.0.dropped.load(Ordering::Relaxed),
            refused: self.0.refused.load(Ordering::Relaxed),
            expired: self.0.expired.load(Ordering::Relaxed),
            md_routed: self.0.md_routed.load(Ordering::Relaxed),
            md_taken: self.0.md_taken.load(Ordering::Relaxed),
            sent_refused: self.0.sent_refused.load(Ordering::Relaxed),
        }
    }

    /// Counts `n` messages its owner published that some mailbox refused (the owner was
    /// told `limit-exceeded`).
    pub fn note_sent_refused(&self, n: u64) {
        self.0.sent_refused.fetch_add(n, Ordering::Relaxed);
    }

    /// Queues `env` without waiting. When the mailbox is full, market data (`md.…`) evicts the
    /// oldest market-data envelope, or is itself dropped if there is none; anything else is
    /// refused. Drops and refusals are counted here; dead-lettering a refusal is the bus's job.
    pub fn push(&self, env: Arc<Envelope>) -> Result<Pushed, PushError> {
        let md = env.is_market_data();
        let mut q = self.lock();
        if q.closed {
            return Err(PushError::Closed);
        }
        if md {
            self.0.md_routed.fetch_add(1, Ordering::Relaxed);
        }
        let mut pushed = Pushed::Queued;
        let was_idle = q.idle();
        let share = self.sender_share();
        // A mailbox not split (share = capacity) says "full" below instead.
        if share < self.0.capacity && shared(&env) && q.queued_from(&env.sender) >= share {
            drop(q);
            self.0.refused.fetch_add(1, Ordering::Relaxed);
            return Err(PushError::SenderShare);
        }
        if q.len >= self.0.capacity {
            // Market data is the one kind that may be lost under pressure: a command takes
            // the room of the oldest price before it is refused.
            if !q.evict_oldest_md() {
                if !md {
                    drop(q);
                    self.0.refused.fetch_add(1, Ordering::Relaxed);
                    return Err(PushError::MailboxFull);
                }
                self.0.dropped.fetch_add(1, Ordering::Relaxed);
                return Ok(Pushed::Dropped);
            }
            self.0.dropped.fetch_add(1, Ordering::Relaxed);
            pushed = Pushed::Evicted;
        }
        q.push(env, md);
        self.0.depth.store(q.len, Ordering::Relaxed);
        if was_idle {
            self.became_busy();
        }
        drop(q);
        self.0.ready.notify_one();
        Ok(pushed)
    }

    /// The next envelope (highest priority first, FIFO within a priority), waiting until one
    /// arrives; `None` once the mailbox is closed and empty. Expired envelopes are skipped,
    /// counted and dead-lettered. Meant for one receiver.
    pub async fn recv(&self) -> Option<Arc<Envelope>> {
        loop {
            let notified = self.0.ready.notified();
            tokio::pin!(notified);
            // Registered before looking at the queue, so a push in between is not missed.
            notified.as_mut().enable();
            match self.pop_live() {
                Pop::Item(env) => return Some(env),
                Pop::Closed => return None,
                Pop::Empty => notified.await,
            }
        }
    }

    /// The next envelope if one is waiting, without waiting.
    pub fn try_recv(&self) -> Option<Arc<Envelope>> {
        match self.pop_live() {
            Pop::Item(env) => Some(env),
            Pop::Empty | Pop::Closed => None,
        }
    }

    /// The receiver finished with one envelope it was handed (its handler returned).
    pub fn done(&self) {
        let mut q = self.lock();
        q.done = (q.done + 1).min(q.taken);
        if q.idle() {
            self.became_idle();
        }
    }

    /// Nothing is queued and the receiver has finished with everything it was handed.
    pub fn is_idle(&self) -> bool {
        self.lock().idle()
    }

    /// Called under the queue lock when it leaves the idle state.
    fn became_busy(&self) {
        if self.0.tracked
            && let Some(bus) = self.0.bus.upgrade()
        {
            bus.busy.fetch_add(1, Ordering::SeqCst);
        }
    }

    /// Called under the queue lock when it enters the idle state.
    fn became_idle(&self) {
        if self.0.tracked
            && let Some(bus) = self.0.bus.upgrade()
        {
            bus.mailbox_idle();
        }
    }

    /// Refuses further pushes and wakes the receiver, which still gets what is queued and then
    /// `None`.
    pub fn close(&self) {
        self.lock().closed = true;
        self.0.ready.notify_waiters();
        self.0.ready.notify_one();
    }

    /// Whether [`Mailbox::close`] was called.
    pub fn is_closed(&self) -> bool {
        self.lock().closed
    }

    pub(super) fn belongs_to(&self, bus: &Arc<BusShared>) -> bool {
        std::ptr::eq(self.0.bus.as_ptr(), Arc::as_ptr(bus))
    }

    pub(super) fn same(&self, other: &Mailbox) -> bool {
        Arc::ptr_eq(&self.0, &other.0)
    }

    fn pop_live(&self) -> Pop {
        let mut now = None;
        loop {
            let expired = {
                let mut q = self.lock();
                let popped = q.pop();
                self.0.depth.store(q.len, Ordering::Relaxed);
                let Some(env) = popped else {
                    return if q.closed { Pop::Closed } else { Pop::Empty };
                };
                q.taken += 1;
                if env.expires_at.is_none()
                    || !env.is_expired_at(*now.get_or_insert_with(Instant::now))
                {
                    if env.is_market_data() {
                        self.0.md_taken.fetch_add(1, Ordering::Relaxed);
                    }
                    return Pop::Item(env);
                }
                // Never handed to the receiver: finished here.
                q.done += 1;
                if q.idle() {
                    self.became_idle();
                }
                env
            };
            self.0.expired.fetch_add(1, Ordering::Relaxed);
            if let Some(bus) = self.0.bus.upgrade() {
                bus.dead_letter(&expired, DeadReason::Expired, Some(&self.0.owner));
            }
        }
    }

    fn lock(&self) -> MutexGuard<'_, Queue> {
        // The queue is consistent between statements; a panic elsewhere cannot leave it torn.
        self.0.queue.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl fmt::Debug for Mailbox {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Mailbox")
            .field("owner", &self.0.owner)
            .field("stats", &self.stats())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Priority;
    use std::time::Duration;

    fn env(subject: &str, priority: Priority) -> Arc<Envelope> {
        Arc::new(Envelope::new("test".into(), subject, Vec::new()).with_priority(priority))
    }

    fn drain(m: &Mailbox) -> Vec<String> {
        std::iter::from_fn(|| m.try_recv().map(|e| e.subject.clone())).collect()
    }

    #[test]
    fn bus_mailbox_delivers_high_before_normal_before_low_fifo_within_a_lane() {
        let m = Mailbox::detached("a", 16);
        for (s, p) in [
            ("low.1", Priority::Low),
            ("normal.1", Priority::Normal),
            ("md.normal.2", Priority::Normal),
            ("high.1", Priority::High),
            ("low.2", Priority::Low),
            ("md.high.2", Priority::High),
            ("normal.3", Priority::Normal),
        ] {
            assert_eq!(m.push(env(s, p)), Ok(Pushed::Queued));
        }
        assert_eq!(m.depth(), 7);
        assert_eq!(
            drain(&m),
            [
                "high.1",
                "md.high.2",
                "normal.1",
                "md.normal.2",
                "normal.3",
                "low.1",
                "low.2"
            ]
        );
        assert_eq!(m.depth(), 0);
    }

    #[test]
    fn bus_mailbox_market_data_evicts_the_oldest_market_data_and_counts_it() {
        let m = Mailbox::detached("a", 3);
        m.push(env("md.a", Priority::Normal)).unwrap();
        m.push(env("cmd.b", Priority::Normal)).unwrap();
        m.push(env("md.c", Priority::Normal)).unwrap();
        assert_eq!(m.push(env("md.d", Priority::Normal)), Ok(Pushed::Evicted));
        assert_eq!(m.stats().dropped, 1);
        assert_eq!(m.depth(), 3);
        assert_eq!(drain(&m), ["cmd.b", "md.c", "md.d"]);
    }

    #[test]
    fn bus_mailbox_oldest_market_data_is_found_across_lanes() {
        let m = Mailbox::detached("a", 2);
        m.push(env("md.old", Priority::High)).unwrap();
        m.push(env("md.newer", Priority::Low)).unwrap();
        assert_eq!(m.push(env("md.new", Priority::Normal)), Ok(Pushed::Evicted));
        assert_eq!(drain(&m), ["md.new", "md.newer"]);
    }

    #[test]
    fn bus_mailbox_full_of_commands_drops_market_data_and_refuses_commands() {
        let m = Mailbox::detached("a", 2);
        m.push(env("cmd.1", Priority::Normal)).unwrap();
        m.push(env("cmd.2", Priority::Low)).unwrap();
        assert_eq!(m.push(env("md.x", Priority::High)), Ok(Pushed::Dropped));
        assert_eq!(
            m.push(env("cmd.3", Priority::High)),
            Err(PushError::MailboxFull)
        );
        // `md` without the dot is not market data.
        assert_eq!(
            m.push(env("mdx.y", Priority::Normal)),
            Err(PushError::MailboxFull)
        );
        assert_eq!(
            m.stats(),
            MailboxStats {
                depth: 2,
                capacity: 2,
                dropped: 1,
                refused: 2,
                expired: 0,
                md_routed: 1,
                md_taken: 0,
                sent_refused: 0,
            }
        );
        assert_eq!(drain(&m), ["cmd.1", "cmd.2"]);
    }

    #[test]
    fn bus_mailbox_skips_and_counts_expired_envelopes() {
        let m = Mailbox::detached("a", 4);
        let mut stale = Envelope::new("t".into(), "cmd.stale", Vec::new());
        stale.expires_at = Some(Instant::now());
        m.push(Arc::new(stale)).unwrap();
        m.push(Arc::new(
            Envelope::new("t".into(), "cmd.fresh", Vec::new()).with_ttl(Duration::from_secs(60)),
        ))
        .unwrap();
        assert_eq!(drain(&m), ["cmd.fresh"]);
        assert_eq!(m.stats().expired, 1);
        assert_eq!(m.depth(), 0);
    }

    #[test]
    fn bus_mailbox_a_command_evicts_market_data_before_it_is_refused() {
        let m = Mailbox::detached("a", 3);
        m.push(env("md.a", Priority::Normal)).unwrap();
        m.push(env("cmd.b", Priority::Normal)).unwrap();
        m.push(env("md.c", Priority::Normal)).unwrap();
        assert_eq!(m.push(env("cmd.d", Priority::Low)), Ok(Pushed::Evicted));
        assert_eq!(m.push(env("cmd.e", Priority::Low)), Ok(Pushed::Evicted));
        assert_eq!(
            m.push(env("cmd.f", Priority::Low)),
            Err(PushError::MailboxFull)
        );
        assert_eq!(m.stats().dropped, 2);
        assert_eq!(drain(&m), ["cmd.b", "cmd.d", "cmd.e"]);
    }

    #[test]
    fn bus_mailbox_share_counts_senders_apart_and_spares_host_events() {
        let m = Mailbox::detached("a", 400);
        assert_eq!(m.sender_share(), 100);
        let from = |sender: &str| Arc::new(Envelope::new(sender.into(), "cmd.x", Vec::new()));
        for _ in 0..100 {
            m.push(from("flood")).unwrap();
        }
        assert_eq!(m.push(from("flood")), Err(PushError::SenderShare));
        assert_eq!(m.push(from("other")), Ok(Pushed::Queued));
        // The host's timer events have no share to exceed.
        let mut timer = Envelope::new("flood".into(), "agent.a.timer", Vec::new());
        timer.content = Content::Timer(1);
        assert_eq!(m.push(Arc::new(timer)), Ok(Pushed::Queued));
        // Small mailboxes are not split.
        assert_eq!(Mailbox::detached("b", 16).sender_share(), 16);
        assert_eq!(Mailbox::detached("c", 100).sender_share(), 64);
    }

    #[test]
    fn bus_mailbox_capacity_is_at_least_one() {
        let m = Mailbox::detached("a", 0);
        assert_eq!(m.capacity(), 1);
        m.push(env("cmd.1", Priority::Normal)).unwrap();
        assert_eq!(
            m.push(env("cmd.2", Priority::Normal)),
            Err(PushError::MailboxFull)
        );
    }

    #[tokio::test]
    async fn bus_mailbox_recv_waits_for_a_push() {
        let m = Mailbox::detached("a", 4);
        let rx = m.clone();
        let task = tokio::spawn(async move { rx.recv().await.map(|e| e.subject.clone()) });
        tokio::task::yield_now().await;
        m.push(env("cmd.late", Priority::Normal)).unwrap();
        assert_eq!(task.await.unwrap().as_deref(), Some("cmd.late"));
    }

    #[tokio::test]
    async fn bus_mailbox_close_wakes_the_receiver_after_what_is_queued() {
        let m = Mailbox::detached("a", 4);
        let rx = m.clone();
        let task = tokio::spawn(async move {
            let mut got = Vec::new();
            while let Some(e) = rx.recv().await {
                got.push(e.subject.clone());
            }
            got
        });
        m.push(env("cmd.1", Priority::Normal)).unwrap();
        tokio::task::yield_now().await;
        m.push(env("cmd.2", Priority::Normal)).unwrap();
        m.close();
        assert_eq!(
            m.push(env("cmd.3", Priority::Normal)),
            Err(PushError::Closed)
        );
        assert!(m.is_closed());
        assert_eq!(task.await.unwrap(), ["cmd.1", "cmd.2"]);
    }
}
