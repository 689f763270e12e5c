//! The in-process message bus: routes [`Envelope`]s by NATS-style subject to subscribers'
//! bounded [`Mailbox`]es, with request/reply, gather, priorities, expiry and dead letters;
//! with the `nats` feature, `nats` joins it to the buses of other hosts over NATS.
//!
//! **Architecture invariant:** this crate knows nothing about wasmtime or guests. The
//! `messaging` interface checks grants, stamps the sender and turns guest calls into
//! [`Bus`] calls; the agent actor drains its [`Mailbox`] into `on-message`. Publishing never
//! waits for a subscriber, so a slow, trapped or quarantined agent cannot hold up the bus or
//! other agents.
//!
//! # Semantics
//!
//! | situation | what happens | why |
//! |---|---|---|
//! | publish subject | must be a concrete subject in the `caps` grammar (tokens of printable ASCII, no `*` or `>`, at most 256 bytes and 32 tokens); otherwise [`BusError::InvalidSubject`] | one grammar for grants, the in-process bus and NATS, so a subject means the same everywhere |
//! | subscribe pattern | the same grammar with `*` (one token) and `>` (one or more trailing tokens) | NATS semantics |
//! | publish to `_DEAD.…` | [`BusError::Reserved`] | only the host writes dead letters, so operators can trust what they read there |
//! | subscribe to `_INBOX.…` | [`BusError::Reserved`] | replies belong to the one request that waits for them |
//! | publish to `_INBOX.…` | goes only to the request waiting on that inbox, never to subscriptions; if none waits (timed out, or already answered) it is dropped and counted in `late_replies` | a late reply must not surprise anyone, and a requester must not be answered twice |
//! | routing | every subscription whose pattern covers the subject; a mailbox with several matching subscriptions gets one copy | a subscriber asked to see the message, not to see it once per pattern |
//! | `agent.<name>.…` and wildcards | an agent's private subjects reach only patterns that name it (`agent.<name>.…` with the name literal); `>`, `agent.>`, `agent.*.inbox` never match them | another agent's inbox and order events are read only by an explicit decision, never by a catch-all |
//! | `_DEAD.…` and wildcards | dead letters reach only patterns whose first token is `_DEAD` (`_DEAD.>`); `>` or `*.…` never match them | as MQTT's `$SYS`: a catch-all subscriber that falls behind would otherwise be fed the dead letters of its own refusals |
//! | priority | a mailbox hands out every `High` envelope before any `Normal`, every `Normal` before any `Low`; FIFO within a priority | commands and risk messages overtake market data |
//! | full mailbox, market data (`md.…`) | the oldest market-data envelope in the mailbox (any priority) is evicted to make room; if it holds none, the new one is dropped; either way counted in the mailbox's `dropped` and the publish's `dropped` | a newer price supersedes an older one; a feed must never stall or be refused |
//! | one sender's share | a mailbox takes at most [`SENDER_SHARE`]'s part of its capacity (at least 64) from one sender, counting what is neither market data nor an order or timer event; past it the envelope is refused as below, dead-lettered `x-dead-reason: sender-share` | one flooding publisher cannot take the room other senders' requests need |
//! | full mailbox, anything else | the oldest market-data envelope is evicted for it if there is one; else refused: counted in the mailbox's `refused` and the publish's `refused`, and dead-lettered with `x-dead-reason: mailbox-full` and `x-dead-subscriber: OWNER`; other mailboxes still get their copy | a command is never lost silently nor queued without bound; the publisher learns (the interface reports `limit-exceeded`), the operator sees who is behind |
//! | expiry (`expires_at`) | checked when the subscriber receives; an expired envelope is skipped, counted in `expired`, and dead-lettered with `x-dead-reason: expired` | checking at receive time catches every envelope that waited too long, and costs publishing nothing |
//! | request, gather | the envelope gets `reply_to: _INBOX.<token>`, a fresh 128-bit token no one can predict, and its own id as `correlation_id` unless it has one; a reply without a correlation id is given the request's | replying needs no grant, so an inbox must not be guessable or an agent could forge another's replies (a gather's votes) |
//! | request with no matching subscription | [`BusError::NoResponders`] at once, and dead-lettered with `x-dead-reason: no-responders` | no reason to wait for the timeout |
//! | request every responder refused | [`BusError::MailboxFull`] at once (the refusals are dead-lettered) | no reply can come |
//! | request timeout | [`BusError::Timeout`]; the inbox is removed, a later reply is counted in `late_replies` | the requester has moved on |
//! | gather | waits until `quorum` replies arrived or the timeout passed, and returns what arrived (possibly none); replies after that are counted in `late_replies` | consensus decisions ("≥ 67% of risk agents agree") need an answer in bounded time |
//! | dead letter | a copy on `_DEAD.<subject>` with the original id, sender and payload, the `x-dead-*` headers and no expiry; counted in `dead_letters` | operators watch `_DEAD.>` |
//! | dead letter nobody takes | counted in `dead_letters_lost` (and a full operator mailbox's `refused`), never dead-lettered again | no recursion, no unbounded work on a bad day |
//! | closed mailbox | skipped by routing; its receiver still gets what was queued, then `None` | an agent being stopped finishes its queue |
//! | fan-out order | one publish is pushed to every mailbox it reaches before any other publish is pushed anywhere | a subscriber that reacts at once cannot overtake the envelope it reacts to in a slower subscriber's mailbox, so what each mailbox holds does not depend on thread scheduling (a lockstep replay relies on it) |
//!
//! # Design
//!
//! Subscriptions live in a copy-on-write table (`RwLock<Arc<Table>>`) grouped by mailbox, each
//! pattern compiled once into `caps`' token form. A publish takes the read lock only long
//! enough to clone the `Arc`, then walks the table under the short fan-out mutex only (one
//! publish at a time, pushing, never waiting for a subscriber): for each mailbox it
//! tests its patterns and pushes one `Arc<Envelope>` (a reference count, not a copy), under
//! that mailbox's own short mutex. Nothing is allocated per subscriber. Subscribing and
//! unsubscribing copy the table, which is rare. Counters are atomics, readable at any time.
//! Waiting requests are a map from inbox to a bounded channel; a reply takes that map's mutex
//! for one `try_send`. Subscription ids are sequential, so ids that come from a guest go
//! through [`Bus::unsubscribe_owned`].

#![deny(missing_docs)]

mod dead;
mod envelope;
mod exchange;
mod mailbox;
#[cfg(feature = "nats")]
pub mod nats;
mod routing;
mod waits;

pub use dead::DeadReason;
use exchange::{Waiting, is_own_inbox};
use routing::{Sub, Table, Target};

pub use envelope::{Content, Envelope, MARKET_DATA_PREFIX, Priority, host_id, new_id};

use envelope::{new_bus_id, new_inbox_token};
pub use mailbox::{
    DEFAULT_MAILBOX_CAPACITY, Mailbox, MailboxStats, PushError, Pushed, SENDER_SHARE,
};
pub use waits::Wait;

pub use colony_caps::AGENT_PREFIX;
use colony_caps::{self as caps, Subject};
use std::collections::HashMap;
use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, PoisonError, RwLock};
use std::time::Duration;
use tokio::sync::mpsc;
use tokio::time::Instant;

/// Times [`Bus::settle`] yields, checking, before it sleeps until woken.
const SETTLE_SPINS: usize = 64;

/// Prefix of the subjects requests wait on for replies.
pub const INBOX_PREFIX: &str = "_INBOX.";
/// Prefix of dead-letter subjects.
pub(crate) const DEAD_PREFIX: &str = "_DEAD.";
/// The header naming why a message was dead-lettered.
pub(crate) const DEAD_REASON_HEADER: &str = "x-dead-reason";
/// The header naming the mailbox owner that refused or expired a dead letter.
pub(crate) const DEAD_SUBSCRIBER_HEADER: &str = "x-dead-subscriber";
/// Most replies a request or gather holds unread; a reply that finds that many waiting is
/// counted late.
pub(crate) const MAX_GATHER: usize = 4096;

/// Header-name prefixes only the host writes (compared without regard to case): `x-dead-`
/// (dead letters), `x-colony-` (kept for the host's future headers) and `colony-` (the NATS
/// link's envelope fields). A guest's `publish-with` may not use them, so a reader can trust
/// what it finds there.
pub const RESERVED_HEADER_PREFIXES: [&str; 3] = ["x-dead-", "x-colony-", "colony-"];

/// Whether a header called `name` is the host's to write ([`RESERVED_HEADER_PREFIXES`]).
pub fn is_reserved_header(name: &str) -> bool {
    RESERVED_HEADER_PREFIXES.iter().any(|p| {
        name.len() >= p.len()
            && name.is_char_boundary(p.len())
            && name[..p.len()].eq_ignore_ascii_case(p)
    })
}

/// Why a guest may not send on `subject` (publish, request or gather), or `None` if it may.
/// These subjects carry what only the host produces, whatever grants say:
///
/// | subject | carries |
/// |---|---|
/// | first token starting with `_` (`_DEAD.…`, `_INBOX.…`, …) | dead letters; replies, which go through `reply` only |
/// | `md.…` | market data, from the host's feed only |
/// | `agent.<name>.…` other than `agent.<name>.inbox` | the agent's host events (`.orders`, `.timer`, …) |
pub fn reserved_for_host(subject: &str) -> Option<&'static str> {
    if subject.starts_with('_') {
        return Some("subjects starting with _ are the host's (replies go through reply)");
    }
    if subject.starts_with(MARKET_DATA_PREFIX) {
        return Some("market data comes only from the host's feed");
    }
    if let Some(rest) = subject.strip_prefix(AGENT_PREFIX) {
        let open = rest
            .split_once('.')
            .is_some_and(|(name, tail)| !name.is_empty() && tail == "inbox");
        if !open {
            return Some("under agent.<name>. only the inbox is open to agents");
        }
    }
    None
}

/// Whether `agent` may answer a request that reached it on `subject`: a request on another
/// agent's private subject (`agent.<other>.…`, seen through a subscription that names it)
/// is that agent's to answer, not an observer's.
pub fn may_answer(agent: &str, subject: &str) -> bool {
    match subject.strip_prefix(AGENT_PREFIX) {
        Some(rest) => rest.split('.').next() == Some(agent),
        None => true,
    }
}

/// A bus call that did not happen, or a request that got no answer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BusError {
    /// The subject or pattern breaks the grammar; the text says how.
    #[error("{0}")]
    InvalidSubject(String),
    /// The subject is the host's (`_DEAD.…` to publish, `_INBOX.…` to subscribe or request).
    #[error("subject {0:?} is reserved for the host")]
    Reserved(String),
    /// A request or gather matched no subscription.
    #[error("no responders")]
    NoResponders,
    /// Every responder's mailbox refused the request.
    #[error("every responder's mailbox is full")]
    MailboxFull,
    /// No reply arrived in time.
    #[error("no reply in time")]
    Timeout,
    /// The message being answered has no `reply_to`.
    #[error("message has no reply-to")]
    NoReplyTo,
    /// The mailbox was made by another bus.
    #[error("mailbox of {0:?} belongs to another bus")]
    ForeignMailbox(String),
}

/// What one publish did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PublishReport {
    /// Mailboxes (or the one waiting request) that queued it.
    pub delivered: usize,
    /// Market-data envelopes lost to full mailboxes: evicted for this one, or this one.
    pub dropped: usize,
    /// Mailboxes that were full and refused it (each dead-lettered).
    pub refused: usize,
}

/// The bus's counters since it was made.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct BusStats {
    /// Accepted publishes, requests and gathers (replies included).
    pub published: u64,
    /// Envelopes queued in mailboxes or handed to waiting requests, dead letters included.
    pub delivered: u64,
    /// Dead letters made.
    pub dead_letters: u64,
    /// Dead letters that no mailbox took.
    pub dead_letters_lost: u64,
    /// Replies that found no request waiting.
    pub late_replies: u64,
    /// Envelopes handed to the remote link (NATS) for the other hosts.
    pub forwarded: u64,
    /// Envelopes the remote link could not take (its queue was full).
    pub forward_refused: u64,
    /// Envelopes that arrived from other hosts.
    pub received: u64,
    /// Envelopes from other hosts that broke the subject grammar or named a reserved subject,
    /// and were dropped.
    pub received_invalid: u64,
}

/// The other hosts, as the bus sees them: a link that carries envelopes out and says which
/// subjects this host wants in. `nats::NatsLink` (feature `nats`) is the one implementation; the bus knows
/// nothing of NATS.
pub trait Remote: Send + Sync + 'static {
    /// Sends a locally accepted envelope to the other hosts. Never waits: false if the link
    /// cannot take it now (the publisher is told, as for a full mailbox).
    fn forward(&self, envelope: &Envelope) -> bool;
    /// This host's subscribers began (`true`) or stopped (`false`) wanting `pattern`.
    fn interest(&self, pattern: &str, wanted: bool);
}

/// Names one subscription, for [`Bus::unsubscribe`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SubscriptionId(u64);

impl SubscriptionId {
    /// The number (what the guest sees).
    pub fn get(self) -> u64 {
        self.0
    }

    /// The id with this number.
    pub fn from_raw(n: u64) -> SubscriptionId {
        SubscriptionId(n)
    }
}

impl fmt::Display for SubscriptionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// The in-process bus. A cheap handle: clones share one bus.
#[derive(Clone, Default)]
pub struct Bus(Arc<BusShared>);

pub(crate) struct BusShared {
    /// This bus's id, the first token of its inboxes.
    id: Box<str>,
    table: RwLock<Arc<Table>>,
    pending: Mutex<HashMap<Box<str>, Waiting>>,
    next_subscription: AtomicU64,
    published: AtomicU64,
    delivered: AtomicU64,
    dead_letters: AtomicU64,
    dead_letters_lost: AtomicU64,
    late_replies: AtomicU64,
    forwarded: AtomicU64,
    forward_refused: AtomicU64,
    received: AtomicU64,
    received_invalid: AtomicU64,
    remote: OnceLock<Arc<dyn Remote>>,
    /// Subscribers per pattern, kept only with a remote link: the link is told when a
    /// pattern's count leaves or reaches zero.
    interest: Mutex<HashMap<Arc<str>, usize>>,
    /// Signalled when the last busy agent mailbox goes idle.
    idle: tokio::sync::Notify,
    /// Agent mailboxes holding or handling something.
    pub(crate) busy: std::sync::atomic::AtomicUsize,
    /// Agents waiting for replies during a lockstep replay (`waits.rs`).
    waits: waits::Waits,
    /// Held while one publish pushes to its mailboxes (see "fan-out order" in the module doc).
    fanout: Mutex<()>,
}

impl Default for BusShared {
    fn default() -> Self {
        BusShared {
            id: new_bus_id().into(),
            table: RwLock::default(),
            pending: Mutex::default(),
            next_subscription: AtomicU64::default(),
            published: AtomicU64::default(),
            delivered: AtomicU64::default(),
            dead_letters: AtomicU64::default(),
            dead_letters_lost: AtomicU64::default(),
            late_replies: AtomicU64::default(),
            forwarded: AtomicU64::default(),
            forward_refused: AtomicU64::default(),
            received: AtomicU64::default(),
            received_invalid: AtomicU64::default(),
            remote: OnceLock::new(),
            interest: Mutex::default(),
            idle: tokio::sync::Notify::new(),
            busy: std::sync::atomic::AtomicUsize::new(0),
            waits: waits::Waits::default(),
            fanout: Mutex::new(()),
        }
    }
}

/// A handle that does not keep the bus alive (for tasks the bus itself owns, such as the
/// NATS link's readers).
#[derive(Clone)]
pub struct WeakBus(std::sync::Weak<BusShared>);

impl WeakBus {
    /// The bus, if it still exists.
    pub fn upgrade(&self) -> Option<Bus> {
        self.0.upgrade().map(Bus)
    }
}

impl Bus {
    /// Dead-letters `env` (a copy on `_DEAD.<subject>`, counted) for `reason`, as refused by
    /// `subscriber`: for what the host takes out of a mailbox undelivered.
    pub fn dead_letter(&self, env: &Envelope, reason: DeadReason, subscriber: &str) {
        self.0.dead_letter(env, reason, Some(subscriber));
    }

    /// An empty bus.
    pub fn new() -> Bus {
        Bus::default()
    }

    /// This bus's id: the first token after `_INBOX.` of its requests' inboxes (the host id
    /// and a per-bus suffix).
    pub fn id(&self) -> &str {
        &self.0.id
    }

    /// A handle that does not keep the bus alive.
    pub fn downgrade(&self) -> WeakBus {
        WeakBus(Arc::downgrade(&self.0))
    }

    /// A mailbox for `owner` on this bus, holding at most `capacity` envelopes; its expired
    /// envelopes are dead-lettered here.
    pub fn mailbox(&self, owner: &str, capacity: usize) -> Mailbox {
        Mailbox::with_bus(owner, capacity, Arc::downgrade(&self.0), false)
    }

    /// An agent's mailbox: like [`Bus::mailbox`], and its receiver calls [`Mailbox::done`]
    /// after handling each envelope, so [`Bus::settle`] can tell when it is idle.
    pub fn agent_mailbox(&self, owner: &str, capacity: usize) -> Mailbox {
        Mailbox::with_bus(owner, capacity, Arc::downgrade(&self.0), true)
    }

    /// Subscribes `mailbox` to `pattern` on behalf of `owner`.
    pub fn subscribe(
        &self,
        owner: &str,
        pattern: &str,
        mailbox: &Mailbox,
    ) -> Result<SubscriptionId, BusError> {
        self.subscribe_as(owner, pattern, mailbox, false)
    }

    /// [`subscribe`](Self::subscribe) for messages only this host produces (an agent's order
    /// events): the pattern is never announced to other hosts, so nothing is pulled over NATS
    /// for it.
    pub fn subscribe_local(
        &self,
        owner: &str,
        pattern: &str,
        mailbox: &Mailbox,
    ) -> Result<SubscriptionId, BusError> {
        self.subscribe_as(owner, pattern, mailbox, true)
    }

    fn subscribe_as(
        &self,
        owner: &str,
        pattern: &str,
        mailbox: &Mailbox,
        local: bool,
    ) -> Result<SubscriptionId, BusError> {
        if !mailbox.belongs_to(&self.0) {
            return Err(BusError::ForeignMailbox(mailbox.owner().to_string()));
        }
        if pattern.starts_with(INBOX_PREFIX) {
            return Err(BusError::Reserved(pattern.to_owned()));
        }
        let compiled = caps::subject_pattern(pattern).map_err(BusError::InvalidSubject)?;
        let id = self.0.next_subscription.fetch_add(1, Ordering::Relaxed) + 1;
        let dead = pattern.starts_with(DEAD_PREFIX);
        let pattern_compiled = Subject::compile(&compiled);
        let sub = Sub {
            id,
            owner: owner.into(),
            raw: pattern.into(),
            names_agent: pattern_compiled.names_agent(),
            pattern: pattern_compiled,
            dead,
            local,
        };
        let mut guard = self.0.write_table();
        let table = Arc::make_mut(&mut guard);
        match table.targets.iter_mut().find(|t| t.mailbox.same(mailbox)) {
            Some(t) => t.subs.push(sub),
            None => table.targets.push(Target {
                mailbox: mailbox.clone(),
                subs: vec![sub],
            }),
        }
        table.recount();
        drop(guard);
        if !dead && !local {
            self.0.interest_changed(pattern, true);
        }
        Ok(SubscriptionId(id))
    }

    /// Joins this bus to other hosts through `remote`: from now on every accepted publish,
    /// request and reply is also handed to it, and it is told which patterns the local
    /// subscribers want (those that exist now, at once). Only one link per bus; false if one
    /// was attached already.
    pub fn attach_remote(&self, remote: Arc<dyn Remote>) -> bool {
        if self.0.remote.set(Arc::clone(&remote)).is_err() {
            return false;
        }
        let table = self.0.read_table();
        let mut interest = self.0.lock_interest();
        for s in table
            .targets
            .iter()
            .flat_map(|t| &t.subs)
            .filter(|s| !s.dead && !s.local)
        {
            let n = interest.entry(Arc::clone(&s.raw)).or_insert(0);
            *n += 1;
            if *n == 1 {
                remote.interest(&s.raw, true);
            }
        }
        true
    }

    /// Waits until no agent mailbox on this bus holds or is handling anything: every agent
    /// has handled what was sent to it, including what those messages made agents send each
    /// other. False if that did not happen within `limit` (agents that keep messaging each
    /// other). Mailboxes other than agents' (an operator's `colony bus sub`) do not count.
    pub async fn settle(&self, limit: Duration) -> bool {
        // Usually the agents finish within microseconds: yielding a few times keeps this
        // worker thread busy running them, instead of parking it and paying a cross-thread
        // wake-up per event.
        for _ in 0..SETTLE_SPINS {
            if self.0.busy.load(Ordering::SeqCst) == 0 {
                return true;
            }
            tokio::task::yield_now().await;
        }
        let deadline = Instant::now() + limit;
        loop {
            // Registered before looking, so the last mailbox going idle in between is seen.
            let signal = self.0.idle.notified();
            tokio::pin!(signal);
            signal.as_mut().enable();
            if self.0.busy.load(Ordering::SeqCst) == 0 {
                return true;
            }
            if tokio::time::timeout_at(deadline, signal).await.is_err() {
                return false;
            }
        }
    }

    /// Agent mailboxes holding or handling something now.
    pub fn busy_mailboxes(&self) -> usize {
        self.0.busy.load(Ordering::SeqCst)
    }

    /// Whether a remote link is attached.
    pub(crate) fn is_joined(&self) -> bool {
        self.0.remote.get().is_some()
    }

    /// Takes in an envelope that another host accepted: routes it to the local subscribers
    /// (a reply only to the local request waiting for it), never back to the remote link.
    /// One that breaks the subject grammar or names a reserved subject is dropped and counted.
    pub fn inject(&self, envelope: Envelope) -> PublishReport {
        let s = &self.0;
        if check_publish_subject(&envelope.subject).is_err() {
            s.received_invalid.fetch_add(1, Ordering::Relaxed);
            return PublishReport::default();
        }
        s.received.fetch_add(1, Ordering::Relaxed);
        if let Some(token) = envelope.subject.strip_prefix(INBOX_PREFIX) {
            if !is_own_inbox(&s.id, token) {
                // Another host's reply, seen through a wide pattern: not ours to count.
                return PublishReport::default();
            }
            return s.deliver_reply(envelope);
        }
        s.route(&Arc::new(envelope))
    }

    /// The remote link found no responder anywhere for the request waiting on `inbox` (the
    /// token after `_INBOX.`): if no local mailbox took it either, the request ends at once
    /// with [`BusError::NoResponders`].
    pub fn remote_no_responders(&self, inbox: &str) {
        let mut pending = self.0.lock_pending();
        if pending.get(inbox).is_some_and(|w| !w.local)
            && let Some(w) = pending.remove(inbox)
        {
            w.no_responders.store(true, Ordering::Relaxed);
        }
    }

    /// Ends one subscription; false if there was no such subscription.
    pub fn unsubscribe(&self, id: SubscriptionId) -> bool {
        self.0.edit_subs(|s| s.id == id.0) > 0
    }

    /// Ends one subscription if `owner` made it; false otherwise. For ids that come from a
    /// guest: they are sequential, so one agent could guess another's.
    pub fn unsubscribe_owned(&self, owner: &str, id: SubscriptionId) -> bool {
        self.0.edit_subs(|s| s.id == id.0 && &*s.owner == owner) > 0
    }

    /// Ends every subscription of `owner`; returns how many there were.
    pub fn unsubscribe_all(&self, owner: &str) -> usize {
        self.0.edit_subs(|s| &*s.owner == owner)
    }

    /// Sends `envelope` to every subscription whose pattern covers its subject, or, on an
    /// `_INBOX.` subject, to the request waiting there. Never waits.
    pub fn publish(&self, envelope: Envelope) -> Result<PublishReport, BusError> {
        check_publish_subject(&envelope.subject)?;
        self.0.published.fetch_add(1, Ordering::Relaxed);
        if envelope.subject.starts_with(INBOX_PREFIX) {
            return Ok(self.0.deliver_reply(envelope));
        }
        let env = Arc::new(envelope);
        let mut report = self.0.route(&env);
        self.0.forward(&env, &mut report);
        Ok(report)
    }

    /// Answers `to`: sends `reply` to its `reply_to` with its correlation id.
    pub fn reply(&self, to: &Envelope, mut reply: Envelope) -> Result<PublishReport, BusError> {
        reply.subject = to.reply_to.clone().ok_or(BusError::NoReplyTo)?;
        reply.correlation_id.clone_from(&to.correlation_id);
        self.publish(reply)
    }

    /// The counters.
    pub fn stats(&self) -> BusStats {
        let s = &self.0;
        BusStats {
            published: s.published.load(Ordering::Relaxed),
            delivered: s.delivered.load(Ordering::Relaxed),
            dead_letters: s.dead_letters.load(Ordering::Relaxed),
            dead_letters_lost: s.dead_letters_lost.load(Ordering::Relaxed),
            late_replies: s.late_replies.load(Ordering::Relaxed),
            forwarded: s.forwarded.load(Ordering::Relaxed),
            forward_refused: s.forward_refused.load(Ordering::Relaxed),
            received: s.received.load(Ordering::Relaxed),
            received_invalid: s.received_invalid.load(Ordering::Relaxed),
        }
    }

    /// How many subscriptions exist.
    pub(crate) fn subscription_count(&self) -> usize {
        self.0
            .read_table()
            .targets
            .iter()
            .map(|t| t.subs.len())
            .sum()
    }
}

impl fmt::Debug for Bus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Bus")
            .field("subscriptions", &self.subscription_count())
            .field("stats", &self.stats())
            .finish()
    }
}

fn check_publish_subject(subject: &str) -> Result<(), BusError> {
    caps::check_subject(subject, false).map_err(BusError::InvalidSubject)?;
    if subject.starts_with(DEAD_PREFIX) {
        return Err(BusError::Reserved(subject.to_owned()));
    }
    Ok(())
}

impl BusShared {
    fn read_table(&self) -> Arc<Table> {
        Arc::clone(&self.table.read().unwrap_or_else(PoisonError::into_inner))
    }

    fn write_table(&self) -> std::sync::RwLockWriteGuard<'_, Arc<Table>> {
        self.table.write().unwrap_or_else(PoisonError::into_inner)
    }

    fn lock_pending(&self) -> MutexGuard<'_, HashMap<Box<str>, Waiting>> {
        self.pending.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn lock_interest(&self) -> MutexGuard<'_, HashMap<Arc<str>, usize>> {
        self.interest.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Counts one more (or one fewer) local subscriber of `pattern`, telling the remote link
    /// when the count leaves or reaches zero. Nothing to do without a link.
    fn interest_changed(&self, pattern: &str, added: bool) {
        let Some(remote) = self.remote.get() else {
            return;
        };
        let mut interest = self.lock_interest();
        if added {
            let n = interest.entry(pattern.into()).or_insert(0);
            *n += 1;
            if *n == 1 {
                remote.interest(pattern, true);
            }
        } else if let Some(n) = interest.get_mut(pattern) {
            *n -= 1;
            if *n == 0 {
                interest.remove(pattern);
                remote.interest(pattern, false);
            }
        }
    }

    /// Hands a locally accepted envelope to the remote link, if there is one; a link that
    /// cannot take it counts as one refusal (market data: one drop).
    fn forward(&self, env: &Envelope, report: &mut PublishReport) {
        let Some(remote) = self.remote.get() else {
            return;
        };
        if remote.forward(env) {
            self.forwarded.fetch_add(1, Ordering::Relaxed);
        } else {
            self.forward_refused.fetch_add(1, Ordering::Relaxed);
            if env.is_market_data() {
                report.dropped += 1;
            } else {
                report.refused += 1;
            }
        }
    }

    /// One busy agent mailbox went idle; the last one wakes [`Bus::settle`].
    pub(crate) fn mailbox_idle(&self) {
        let previous = self
            .busy
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| {
                Some(n.saturating_sub(1))
            })
            .unwrap_or(0);
        if previous <= 1 {
            self.idle.notify_waiters();
        }
        self.waits.mailbox_idle();
    }
}

#[cfg(test)]
mod tests;
