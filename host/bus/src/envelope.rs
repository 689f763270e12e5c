//! Envelopes: one message on the bus, its priority, and the host-assigned ids it carries.

use bytes::Bytes;
use colony_model::market::MarketEvent;
use colony_model::order::OrderUpdate;
use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};
use std::sync::Arc;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tokio::time::Instant;

/// Subjects starting with this are market data: under pressure the oldest is dropped, not
/// refused.
pub const MARKET_DATA_PREFIX: &str = "md.";

/// Delivery priority: a mailbox hands out every `High` message before any `Normal` one, and every
/// `Normal` before any `Low`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Priority {
    /// Background traffic, delivered last.
    Low,
    /// The default.
    #[default]
    Normal,
    /// Commands and risk messages, delivered first.
    High,
}

impl Priority {
    /// The mailbox lane: 0 is served first.
    pub(super) fn lane(self) -> usize {
        match self {
            Priority::High => 0,
            Priority::Normal => 1,
            Priority::Low => 2,
        }
    }
}

/// One message on the bus. The host builds it from what a guest asked for: `id`, `sender` and
/// `timestamp_ns` are the host's, never the guest's.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Envelope {
    /// Unique id assigned by the host ([`new_id`]).
    pub id: String,
    /// The concrete subject it was published on.
    pub subject: String,
    /// The plugin that sent it, stamped by the host.
    pub sender: Arc<str>,
    /// The request this message answers or belongs to.
    pub correlation_id: Option<String>,
    /// Where to send a reply (an `_INBOX.` subject, set by [`Bus::request`](super::Bus::request)).
    pub reply_to: Option<String>,
    /// Delivery priority.
    pub priority: Priority,
    /// When the host accepted the message, in nanoseconds since the Unix epoch.
    pub timestamp_ns: u64,
    /// Name/value pairs; the bus adds `x-dead-*` headers to dead letters.
    pub headers: Vec<(String, String)>,
    /// The body; cheap to clone.
    pub payload: Bytes,
    /// After this instant the message is dead-lettered instead of delivered.
    pub expires_at: Option<Instant>,
    /// What the message carries typed, beside its bytes: a market event, an order event, a
    /// due timer, or nothing more ([`Content::Bytes`]). It decides which agent export gets it.
    pub content: Content,
}

/// The typed part of an [`Envelope`]: at most one of these, so an envelope is never two
/// kinds of event at once.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum Content {
    /// Only the bytes of `payload`; an agent gets it in `on-message`.
    #[default]
    Bytes,
    /// A market event (the payload has it as JSON); an agent gets it in `on-market`.
    Market(Arc<MarketEvent>),
    /// An order event (host-local, never sent over NATS); an agent gets it in `on-order`.
    Order(Arc<OrderUpdate>),
    /// A due timer: the host-clock time it fired at (host-local, never sent over NATS); an
    /// agent gets it in `on-timer`.
    Timer(u64),
}

impl Envelope {
    /// A normal-priority message from `sender` on `subject`, with a fresh id and the current
    /// time, no headers and no expiry.
    pub fn new(sender: Arc<str>, subject: impl Into<String>, payload: impl Into<Bytes>) -> Self {
        Envelope {
            id: new_id(),
            subject: subject.into(),
            sender,
            correlation_id: None,
            reply_to: None,
            priority: Priority::Normal,
            timestamp_ns: now_ns(),
            headers: Vec::new(),
            payload: payload.into(),
            expires_at: None,
            content: Content::Bytes,
        }
    }

    /// With this priority.
    pub fn with_priority(mut self, priority: Priority) -> Self {
        self.priority = priority;
        self
    }

    /// With one more header.
    pub fn with_header(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.headers.push((name.into(), value.into()));
        self
    }

    /// Expiring `ttl` from now.
    pub fn with_ttl(mut self, ttl: Duration) -> Self {
        self.expires_at = Some(Instant::now() + ttl);
        self
    }

    /// The value of the first header called `name`.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    /// Whether the subject is market data (`md.…`).
    pub(crate) fn is_market_data(&self) -> bool {
        self.subject.starts_with(MARKET_DATA_PREFIX)
    }

    /// The market event it carries, if it is one.
    pub fn market(&self) -> Option<&Arc<MarketEvent>> {
        match &self.content {
            Content::Market(event) => Some(event),
            _ => None,
        }
    }

    /// The order event it carries, if it is one.
    pub fn order(&self) -> Option<&Arc<OrderUpdate>> {
        match &self.content {
            Content::Order(update) => Some(update),
            _ => None,
        }
    }

    /// The time a due timer fired at, if it is one.
    pub fn timer(&self) -> Option<u64> {
        match self.content {
            Content::Timer(at) => Some(at),
            _ => None,
        }
    }

    /// Whether the message has expired at `now`.
    pub(crate) fn is_expired_at(&self, now: Instant) -> bool {
        self.expires_at.is_some_and(|at| at <= now)
    }
}

/// This host's id: 12 hex digits drawn once per process from an OS-seeded hash of the time and
/// the pid. It prefixes message ids and inbox tokens, so both stay unique across the hosts that
/// share a NATS bus, and a reply can be routed back to the host whose request waits for it.
pub fn host_id() -> &'static str {
    static ID: OnceLock<String> = OnceLock::new();
    ID.get_or_init(|| {
        // `RandomState` is seeded from the OS; the time and pid make two seeds that collide
        // anyway still differ.
        let mut h = RandomState::new().build_hasher();
        h.write_u64(now_ns());
        h.write_u32(std::process::id());
        format!("{:012x}", h.finish() & 0xffff_ffff_ffff)
    })
}

/// A fresh id, unique in this process and, through the [`host_id`] prefix, across the hosts
/// that share a NATS bus: `<host id>-<counter>`.
pub fn new_id() -> String {
    static NEXT: AtomicU64 = AtomicU64::new(1);
    format!("{}-{}", host_id(), NEXT.fetch_add(1, Ordering::Relaxed))
}

/// A fresh inbox token `<bus id>.<32 hex digits>`: 128 bits no agent can predict, because
/// publishing to `_INBOX.` needs no grant and a guessed inbox would let an agent forge replies
/// (a gather's votes, say). Each is SipHash, under a key the OS seeded, of a process-wide
/// counter. The bus id lets a NATS link route the reply to the one bus that waits for it.
pub(super) fn new_inbox_token(bus_id: &str) -> String {
    format!("{bus_id}.{:016x}{:016x}", secret(0), secret(1))
}

/// A fresh bus id: `<host id>` followed by 8 hex digits, unique among the buses of this
/// process (tests join several buses in one process to NATS).
pub(super) fn new_bus_id() -> String {
    format!("{}{:08x}", host_id(), secret(2) & 0xffff_ffff)
}

/// SipHash, under a key the OS seeded, of `salt` and a process-wide counter.
fn secret(salt: u64) -> u64 {
    static KEY: OnceLock<RandomState> = OnceLock::new();
    static NEXT: AtomicU64 = AtomicU64::new(1);
    let key = KEY.get_or_init(RandomState::new);
    let mut h = key.build_hasher();
    h.write_u64(salt);
    h.write_u64(NEXT.fetch_add(1, Ordering::Relaxed));
    h.finish()
}

fn now_ns() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
}
