//! How long a request or gather waits. On the system clock, its timeout in real time. During a
//! lockstep replay (a virtual clock), time stands still while agents handle an event, so a
//! timeout measured in real time would make the outcome depend on the machine's speed and load,
//! and one measured in virtual time would never pass. Instead a replayed wait ends when no
//! reply can come any more: when every agent mailbox that holds or handles something belongs
//! to an agent that is itself waiting ([`Waits`]), nothing can make progress, and the waiter
//! whose timeout is the earliest (then by agent name) times out, exactly as it would first in
//! virtual time. This depends only on what the agents do, never on scheduling.
//!
//! A responder that defers its answer past the event that received the request (a reply from a
//! later timer, say) is never waited for in a replay: the wait has ended by then. The real-time
//! hang guard of the event still bounds every wait.

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

/// How a request or gather waits.
#[derive(Debug, Clone)]
pub enum Wait {
    /// At most this long in real time.
    Real(Duration),
    /// In a lockstep replay: until no reply can come ([`Waits`]) or, as a last resort, `cap`
    /// of real time. `timeout_ns` (the guest's timeout) and `agent` order the waiters.
    Replay {
        /// The waiting agent.
        agent: Arc<str>,
        /// Whether the waiting agent's mailbox counts as busy (it is handling an event that
        /// came through its mailbox, as every event of a replay does).
        counted: bool,
        /// The guest's timeout, which decides who times out first.
        timeout_ns: u64,
        /// The real-time cap (what is left of the event's hang guard).
        cap: Duration,
    },
}

impl Wait {
    /// The real-time bound of the wait.
    pub fn cap(&self) -> Duration {
        match self {
            Wait::Real(d) => *d,
            Wait::Replay { cap, .. } => *cap,
        }
    }
}

/// The replayed waits of one bus (see the module doc).
#[derive(Default)]
pub(crate) struct Waits {
    /// Waiters by (timeout, agent, registration number), and how many of them have a busy
    /// mailbox.
    set: Mutex<(BTreeSet<Key>, usize)>,
    /// How many are in `set` (read without the lock on the mailbox hot path).
    count: AtomicUsize,
    next: AtomicU64,
    /// Signalled whenever a waiter comes or goes or a mailbox goes idle while someone waits.
    changed: tokio::sync::Notify,
}

type Key = (u64, Arc<str>, u64);

/// One registered wait; dropping it deregisters.
pub(crate) struct WaitTicket<'a> {
    waits: &'a Waits,
    key: Key,
    counted: bool,
}

impl Waits {
    pub(crate) fn register(
        &self,
        agent: Arc<str>,
        timeout_ns: u64,
        counted: bool,
    ) -> WaitTicket<'_> {
        let key = (timeout_ns, agent, self.next.fetch_add(1, Ordering::Relaxed));
        let mut set = self.lock();
        set.0.insert(key.clone());
        set.1 += usize::from(counted);
        self.count.store(set.0.len(), Ordering::SeqCst);
        drop(set);
        self.changed.notify_waiters();
        WaitTicket {
            waits: self,
            key,
            counted,
        }
    }

    /// A busy mailbox went idle: a waiter may now be the last one that can move.
    pub(crate) fn mailbox_idle(&self) {
        if self.count.load(Ordering::SeqCst) > 0 {
            self.changed.notify_waiters();
        }
    }

    /// A future that completes at the next change (enabled now, so a change between this call
    /// and the await is not missed).
    pub(crate) fn changed(&self) -> tokio::sync::futures::Notified<'_> {
        self.changed.notified()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, (BTreeSet<Key>, usize)> {
        self.set.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl WaitTicket<'_> {
    /// Whether this wait should time out now: every busy mailbox is a waiter's, and this one
    /// is first in line.
    pub(crate) fn stalled(&self, busy: usize) -> bool {
        let set = self.waits.lock();
        busy <= set.1 && set.0.first() == Some(&self.key)
    }
}

impl Drop for WaitTicket<'_> {
    fn drop(&mut self) {
        let mut set = self.waits.lock();
        set.0.remove(&self.key);
        set.1 -= usize::from(self.counted);
        self.waits.count.store(set.0.len(), Ordering::SeqCst);
        drop(set);
        self.waits.changed.notify_waiters();
    }
}
