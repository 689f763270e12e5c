//! The NATS link: joins this host's [`Bus`] to the buses of other hosts through a real
//! nats-server, so agents in two `colony run --bus nats://HOST:PORT` processes exchange
//! messages, requests and gathers exactly as in one.
//!
//! # How
//!
//! | bus event | on NATS |
//! |---|---|
//! | an agent subscribes to `P` (first local subscriber of `P`) | `SUB <prefix>.P` (and `UNSUB` when its last local subscriber goes) |
//! | a local publish on `S` (after local routing) | `PUB <prefix>.S` with the envelope's fields as `Colony-*` headers |
//! | a request or gather on `S` | the same, with reply subject `<prefix>._INBOX.<bus id>.<token>` |
//! | a reply to another host's inbox | `PUB <prefix>._INBOX.<that bus>.<token>` |
//! | at start | `SUB <prefix>._INBOX.<bus id>.>`: the replies to this host's requests |
//! | NATS says "no responders" (status 503) to a request's inbox | the request ends with `no-responders` if no local mailbox took it |
//! | the host starts an agent ([`NatsLink::claim`]) | `SUB` and ask on `_COLONY.claim.<prefix>.<agent>`: one host at a time runs an agent of a name (`claim`'s doc) |
//!
//! The connection is made with `no_echo`, so the server never hands a host its own messages:
//! local subscribers already got them from the in-process routing. Dead letters stay on the
//! host where they happen (an operator watches `_DEAD.>` on each host). Envelope ids carry the
//! sending host's id, so they stay unique across hosts; the sender is the plugin name the
//! sending host stamped, and NATS's own authentication is what makes other hosts trusted.
//!
//! Headers: `Colony-Id`, `Colony-Sender`, `Colony-Correlation`, `Colony-Priority`
//! (`high|normal|low`), `Colony-Timestamp` (ns), `Colony-Ttl-Ms` (what was left of the expiry
//! when it was sent) and `Colony-Headers` (the agent's headers as a JSON array of
//! `[name, value]` pairs, so any text survives and order is kept). A message published by a
//! plain NATS client (no `Colony-Id`) is taken with a fresh id and sender `nats`.
//!
//! # Failure
//!
//! Publishing never waits: the link takes envelopes into a bounded queue
//! ([`FORWARD_QUEUE`]); when it is full (NATS down for long, or slower than the publishers)
//! the publish is told (`limit-exceeded` for commands, a counted drop for market data). While
//! the connection is down async-nats keeps reconnecting (forever, with backoff) and then
//! renews every subscription; each disconnect and reconnect is logged and counted in
//! [`NatsStatus`], which `colony status` shows. Malformed messages from the network are counted
//! and dropped, never trusted.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use async_nats::{HeaderMap, HeaderName, HeaderValue, StatusCode};
use futures_util::StreamExt;
use serde::Serialize;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio::time::Instant;

use colony_model::market::MarketEvent;

use super::{Bus, Content, Envelope, INBOX_PREFIX, Priority, Remote, WeakBus};

mod claim;

pub use claim::{CLAIM_WAIT, ClaimError, NameClaim};

/// Envelopes waiting to go out to NATS; beyond this a publish is refused.
pub(crate) const FORWARD_QUEUE: usize = 65_536;

const H_ID: &str = "Colony-Id";
const H_SENDER: &str = "Colony-Sender";
const H_CORRELATION: &str = "Colony-Correlation";
const H_PRIORITY: &str = "Colony-Priority";
const H_TIMESTAMP: &str = "Colony-Timestamp";
const H_TTL: &str = "Colony-Ttl-Ms";
const H_HEADERS: &str = "Colony-Headers";

/// Where and under which prefix to join.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NatsConfig {
    /// `nats://HOST:PORT`.
    pub url: String,
    /// Every subject on NATS is `<prefix>.<subject>`; hosts that share a prefix share a bus.
    pub prefix: String,
}

/// Default subject prefix on NATS.
pub const DEFAULT_PREFIX: &str = "colony";

/// The link's counters and connection state.
#[derive(Debug, Default)]
struct Stats {
    connected: AtomicBool,
    connects: AtomicU64,
    disconnects: AtomicU64,
    sent: AtomicU64,
    send_failed: AtomicU64,
    received: AtomicU64,
    malformed: AtomicU64,
    subscriptions: AtomicU64,
    last_error: Mutex<Option<String>>,
}

/// What `colony status` shows of the link.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct NatsStatus {
    /// The server URL.
    pub url: String,
    /// The subject prefix.
    pub prefix: String,
    /// This host's id on the bus (its bus id), which other hosts name when this host holds an
    /// agent name they were refused ([`NatsLink::claim`]).
    pub host_id: String,
    /// Whether the connection is up now.
    pub connected: bool,
    /// Connections made (the first one included); more than one means reconnects.
    pub connects: u64,
    /// Connections lost.
    pub disconnects: u64,
    /// Envelopes published to NATS.
    pub sent: u64,
    /// Publishes NATS refused (too large for the server's `max_payload`, or the client closed).
    pub send_failed: u64,
    /// Messages received from NATS.
    pub received: u64,
    /// Messages received that were not valid envelopes.
    pub malformed: u64,
    /// NATS subscriptions held for local interest (the inbox not counted).
    pub subscriptions: u64,
    /// The last error NATS reported, if any.
    pub last_error: Option<String>,
}

enum Interest {
    Add(String),
    Remove(String),
    /// Answer once every earlier change and publish has reached the server.
    Sync(tokio::sync::oneshot::Sender<bool>),
}

/// The link: a [`Remote`] for the bus. Made by [`connect`].
pub struct NatsLink {
    config: NatsConfig,
    /// The bus's id: this host on NATS.
    bus_id: String,
    /// The connection (shared with the pump), for claims.
    client: async_nats::Client,
    forward: mpsc::Sender<Envelope>,
    interest: mpsc::UnboundedSender<Interest>,
    stats: Arc<Stats>,
}

impl NatsLink {
    /// Waits until every subscription change and publish made before the call has reached the
    /// server (a round trip through it): after it, other hosts' publishes on this host's
    /// patterns arrive here. False if the server could not be reached.
    pub async fn sync(&self) -> bool {
        let (tx, rx) = tokio::sync::oneshot::channel();
        if self.interest.send(Interest::Sync(tx)).is_err() {
            return false;
        }
        rx.await.unwrap_or(false)
    }

    /// The connection state and counters.
    pub fn status(&self) -> NatsStatus {
        let s = &self.stats;
        NatsStatus {
            url: self.config.url.clone(),
            prefix: self.config.prefix.clone(),
            host_id: self.bus_id.clone(),
            connected: s.connected.load(Ordering::Relaxed),
            connects: s.connects.load(Ordering::Relaxed),
            disconnects: s.disconnects.load(Ordering::Relaxed),
            sent: s.sent.load(Ordering::Relaxed),
            send_failed: s.send_failed.load(Ordering::Relaxed),
            received: s.received.load(Ordering::Relaxed),
            malformed: s.malformed.load(Ordering::Relaxed),
            subscriptions: s.subscriptions.load(Ordering::Relaxed),
            last_error: s
                .last_error
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .clone(),
        }
    }
}

impl Remote for NatsLink {
    fn forward(&self, envelope: &Envelope) -> bool {
        self.forward.try_send(envelope.clone()).is_ok()
    }

    fn interest(&self, pattern: &str, wanted: bool) {
        let msg = if wanted {
            Interest::Add(pattern.to_owned())
        } else {
            Interest::Remove(pattern.to_owned())
        };
        // Fails only once the link's task has ended, when nothing is subscribed anyway.
        let _ = self.interest.send(msg);
    }
}

/// A link that could not be made.
#[derive(Debug, thiserror::Error)]
pub enum NatsError {
    /// The prefix is not a concrete subject.
    #[error("bus prefix {prefix:?}: {reason}")]
    Prefix {
        /// The prefix given.
        prefix: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The server could not be reached or refused the connection.
    #[error("cannot connect to NATS at {url}: {reason}")]
    Connect {
        /// The URL given.
        url: String,
        /// What went wrong.
        reason: String,
    },
}

/// How a market-data envelope's payload (`md.…`) that arrived from NATS is typed again, so
/// local agents get it in `on-market` as from a local feed: the market crate's JSONL record
/// decoder. The bus knows no market format of its own.
pub(crate) type MarketDecoder = fn(&[u8]) -> Option<MarketEvent>;

/// Connects to NATS and joins `bus` to it: returns the link, already attached to the bus.
/// Fails if the first connection cannot be made within 5 seconds; after that, lost
/// connections are retried forever. Market data that arrives is typed with `market`.
pub async fn connect(
    bus: &Bus,
    config: NatsConfig,
    market: MarketDecoder,
) -> Result<Arc<NatsLink>, NatsError> {
    colony_caps::check_subject(&config.prefix, false).map_err(|reason| NatsError::Prefix {
        prefix: config.prefix.clone(),
        reason,
    })?;
    // The claim subjects are outside every prefix only if no prefix starts where they do.
    let reserved = claim::CLAIM_ROOT.split('.').next().unwrap_or_default();
    if config.prefix.split('.').next() == Some(reserved) {
        return Err(NatsError::Prefix {
            prefix: config.prefix.clone(),
            reason: format!("the first token {reserved} is reserved for the hosts' own subjects"),
        });
    }
    let stats = Arc::new(Stats::default());
    let events = Arc::clone(&stats);
    let url = config.url.clone();
    let client = async_nats::ConnectOptions::new()
        .name(format!("colony-{}", bus.id()))
        .no_echo()
        .connection_timeout(Duration::from_secs(5))
        .max_reconnects(None)
        .event_callback(move |event| {
            let stats = Arc::clone(&events);
            let url = url.clone();
            async move { on_event(&stats, &url, event) }
        })
        .connect(config.url.as_str())
        .await
        .map_err(|e| NatsError::Connect {
            url: config.url.clone(),
            reason: e.to_string(),
        })?;
    // The callback counts this connection too, but may run a moment later.
    stats.connected.store(true, Ordering::Relaxed);
    tracing::info!(url = %config.url, prefix = %config.prefix, bus = bus.id(), "joined the NATS bus");

    let inbox_subject = format!("{}.{INBOX_PREFIX}{}.>", config.prefix, bus.id());
    let inbox = client
        .subscribe(inbox_subject)
        .await
        .map_err(|e| NatsError::Connect {
            url: config.url.clone(),
            reason: e.to_string(),
        })?;
    let (forward_tx, forward_rx) = mpsc::channel(FORWARD_QUEUE);
    let (interest_tx, interest_rx) = mpsc::unbounded_channel();
    let link = Arc::new(NatsLink {
        config: config.clone(),
        bus_id: bus.id().to_owned(),
        client: client.clone(),
        forward: forward_tx,
        interest: interest_tx,
        stats: Arc::clone(&stats),
    });
    let weak = bus.downgrade();
    // Never stopped: it lives as long as the link (the sender is kept in the pump).
    let (inbox_stop, inbox_stopped) = tokio::sync::oneshot::channel();
    let inbox_reader = tokio::spawn(read(
        inbox,
        weak.clone(),
        config.prefix.clone(),
        market,
        Arc::clone(&stats),
        inbox_stopped,
    ));
    tokio::spawn(run(Pump {
        client,
        prefix: config.prefix,
        market,
        bus_id: bus.id().to_owned(),
        bus: weak,
        stats,
        readers: HashMap::new(),
        inbox_reader: Reader {
            stop: inbox_stop,
            task: inbox_reader,
        },
        forward: forward_rx,
        interest: interest_rx,
    }));
    bus.attach_remote(link.clone());
    Ok(link)
}

fn on_event(stats: &Stats, url: &str, event: async_nats::Event) {
    use async_nats::Event;
    match event {
        Event::Connected => {
            stats.connected.store(true, Ordering::Relaxed);
            if stats.connects.fetch_add(1, Ordering::Relaxed) > 0 {
                tracing::warn!(%url, "NATS connection restored; subscriptions renewed");
            }
        }
        Event::Disconnected => {
            stats.connected.store(false, Ordering::Relaxed);
            stats.disconnects.fetch_add(1, Ordering::Relaxed);
            tracing::warn!(%url, "NATS connection lost; reconnecting (messages for other hosts queue, then are refused)");
        }
        Event::Closed => {
            stats.connected.store(false, Ordering::Relaxed);
            tracing::warn!(%url, "NATS connection closed");
        }
        other => {
            let text = other.to_string();
            tracing::warn!(%url, event = %text, "NATS");
            *stats
                .last_error
                .lock()
                .unwrap_or_else(PoisonError::into_inner) = Some(text);
        }
    }
}

/// One NATS subscription's reader task, and how to end it.
struct Reader {
    stop: tokio::sync::oneshot::Sender<()>,
    task: JoinHandle<()>,
}

/// The task that owns the client: publishes what the bus forwards and keeps one NATS
/// subscription (with its reader task) per pattern local subscribers want.
struct Pump {
    client: async_nats::Client,
    prefix: String,
    market: MarketDecoder,
    bus_id: String,
    bus: WeakBus,
    stats: Arc<Stats>,
    readers: HashMap<String, Reader>,
    inbox_reader: Reader,
    forward: mpsc::Receiver<Envelope>,
    interest: mpsc::UnboundedReceiver<Interest>,
}

async fn run(mut p: Pump) {
    loop {
        tokio::select! {
            biased;
            change = p.interest.recv() => match change {
                Some(Interest::Add(pattern)) => p.subscribe(pattern).await,
                Some(Interest::Sync(done)) => {
                    // Publishes queued before the sync go out first.
                    while let Ok(env) = p.forward.try_recv() {
                        p.send(env).await;
                    }
                    let _ = done.send(p.round_trip().await);
                }
                Some(Interest::Remove(pattern)) => {
                    if let Some(reader) = p.readers.remove(&pattern) {
                        // The reader sends UNSUB before it ends, so a later sync covers it.
                        let _ = reader.stop.send(());
                        let _ = reader.task.await;
                        p.stats.subscriptions.fetch_sub(1, Ordering::Relaxed);
                    }
                }
                None => break,
            },
            env = p.forward.recv() => match env {
                Some(env) => p.send(env).await,
                None => break,
            },
        }
    }
    for (_, reader) in p.readers.drain() {
        reader.task.abort();
    }
    p.inbox_reader.task.abort();
}

impl Pump {
    async fn subscribe(&mut self, pattern: String) {
        if self.readers.contains_key(&pattern) {
            return;
        }
        match self
            .client
            .subscribe(format!("{}.{pattern}", self.prefix))
            .await
        {
            Ok(sub) => {
                // A round trip so that, once counted, the server has it: a test or operator
                // who sees the count in `colony status` can rely on other hosts reaching it.
                self.round_trip().await;
                let (stop, stopped) = tokio::sync::oneshot::channel();
                let task = tokio::spawn(read(
                    sub,
                    self.bus.clone(),
                    self.prefix.clone(),
                    self.market,
                    Arc::clone(&self.stats),
                    stopped,
                ));
                self.readers.insert(pattern, Reader { stop, task });
                self.stats.subscriptions.fetch_add(1, Ordering::Relaxed);
            }
            Err(e) => {
                tracing::warn!(%pattern, error = %e, "cannot subscribe on NATS; other hosts' messages on it will not arrive");
                self.note_error(e.to_string());
            }
        }
    }

    async fn send(&mut self, env: Envelope) {
        let subject = format!("{}.{}", self.prefix, env.subject);
        let headers = encode_headers(&env);
        let result = match &env.reply_to {
            Some(reply) => {
                self.client
                    .publish_with_reply_and_headers(
                        subject,
                        format!("{}.{reply}", self.prefix),
                        headers,
                        env.payload,
                    )
                    .await
            }
            None => {
                self.client
                    .publish_with_headers(subject, headers, env.payload)
                    .await
            }
        };
        match result {
            Ok(()) => {
                self.stats.sent.fetch_add(1, Ordering::Relaxed);
            }
            Err(e) => {
                if self.stats.send_failed.fetch_add(1, Ordering::Relaxed) == 0 {
                    tracing::warn!(subject = %env.subject, error = %e, "a message could not go to NATS (counted in `colony status`)");
                }
                self.note_error(e.to_string());
            }
        }
    }

    /// Sends a request no one answers and waits for the server's "no responders": the server
    /// handles a connection's operations in order, so everything sent before it has been
    /// processed. (async-nats's `flush` only waits for the socket write.) False if the
    /// server could not be reached.
    async fn round_trip(&self) -> bool {
        use async_nats::client::RequestErrorKind;
        let subject = format!("{}._SYNC.{}", self.prefix, self.bus_id);
        match self.client.request(subject, bytes::Bytes::new()).await {
            Ok(_) => true,
            Err(e) if e.kind() == RequestErrorKind::NoResponders => true,
            Err(e) => {
                self.note_error(e.to_string());
                false
            }
        }
    }

    fn note_error(&self, text: String) {
        *self
            .stats
            .last_error
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = Some(text);
    }
}

/// The next message of `sub`, or `None` when the subscription ends or `stop` fires (the
/// interest is then withdrawn at the server): the loop of every task that serves a
/// subscription.
pub(crate) async fn next_or_stop(
    sub: &mut async_nats::Subscriber,
    stop: &mut tokio::sync::oneshot::Receiver<()>,
) -> Option<async_nats::Message> {
    tokio::select! {
        _ = &mut *stop => {
            let _ = sub.unsubscribe().await;
            None
        }
        msg = sub.next() => msg,
    }
}
/// Feeds one NATS subscription into the bus until the bus is gone or `stop` fires (then it
/// unsubscribes).
async fn read(
    mut sub: async_nats::Subscriber,
    bus: WeakBus,
    prefix: String,
    market: MarketDecoder,
    stats: Arc<Stats>,
    mut stop: tokio::sync::oneshot::Receiver<()>,
) {
    loop {
        let Some(msg) = next_or_stop(&mut sub, &mut stop).await else {
            return;
        };
        let Some(bus) = bus.upgrade() else {
            return;
        };
        stats.received.fetch_add(1, Ordering::Relaxed);
        if msg.status == Some(StatusCode::NO_RESPONDERS) {
            if let Some(token) = msg
                .subject
                .as_str()
                .strip_prefix(&prefix)
                .and_then(|s| s.strip_prefix('.'))
                .and_then(|s| s.strip_prefix(INBOX_PREFIX))
            {
                bus.remote_no_responders(token);
            }
            continue;
        }
        match decode(&prefix, msg, market) {
            Some(env) => {
                bus.inject(env);
            }
            None => {
                stats.malformed.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
}

/// The `Colony-*` headers for `env`.
fn encode_headers(env: &Envelope) -> HeaderMap {
    let mut h = HeaderMap::new();
    // Every value here is host-made text without CR or LF, except the agent's headers, which
    // go through JSON (it escapes control characters); `from_str` checks anyway.
    let mut put = |name: &'static str, value: &str| {
        if let (Ok(n), Ok(v)) = (name.parse::<HeaderName>(), value.parse::<HeaderValue>()) {
            h.insert(n, v);
        }
    };
    put(H_ID, &env.id);
    put(H_SENDER, &env.sender);
    if let Some(c) = &env.correlation_id {
        put(H_CORRELATION, c);
    }
    put(H_PRIORITY, priority_name(env.priority));
    put(H_TIMESTAMP, &env.timestamp_ns.to_string());
    if let Some(at) = env.expires_at {
        let left = at.saturating_duration_since(Instant::now()).as_millis();
        put(H_TTL, &left.to_string());
    }
    if !env.headers.is_empty()
        && let Ok(json) = serde_json::to_string(&env.headers)
    {
        put(H_HEADERS, &json);
    }
    h
}

fn priority_name(p: Priority) -> &'static str {
    match p {
        Priority::High => "high",
        Priority::Normal => "normal",
        Priority::Low => "low",
    }
}

/// The envelope a NATS message carries, or `None` if it is not one (outside the prefix, or
/// a `Colony-*` header that does not parse). The subject's grammar is checked by
/// [`Bus::inject`].
fn decode(prefix: &str, msg: async_nats::Message, market: MarketDecoder) -> Option<Envelope> {
    let subject = msg
        .subject
        .as_str()
        .strip_prefix(prefix)?
        .strip_prefix('.')?
        .to_owned();
    let reply_to = match &msg.reply {
        // Only replies this bus can route: `<prefix>._INBOX.…`.
        Some(r) => Some(
            r.as_str()
                .strip_prefix(prefix)
                .and_then(|s| s.strip_prefix('.'))
                .filter(|s| s.starts_with(INBOX_PREFIX))?
                .to_owned(),
        ),
        None => None,
    };
    let header = |name: &str| {
        msg.headers
            .as_ref()
            .and_then(|h| h.get(name))
            .map(|v| v.as_str().to_owned())
    };
    let mut env = Envelope::new(
        header(H_SENDER).unwrap_or_else(|| "nats".into()).into(),
        subject,
        msg.payload.clone(),
    );
    if let Some(id) = header(H_ID) {
        env.id = id;
    }
    env.reply_to = reply_to;
    env.correlation_id = header(H_CORRELATION);
    if let Some(p) = header(H_PRIORITY) {
        env.priority = match p.as_str() {
            "high" => Priority::High,
            "normal" => Priority::Normal,
            "low" => Priority::Low,
            _ => return None,
        };
    }
    if let Some(ts) = header(H_TIMESTAMP) {
        env.timestamp_ns = ts.parse().ok()?;
    }
    if let Some(ttl) = header(H_TTL) {
        env.expires_at = Some(Instant::now() + Duration::from_millis(ttl.parse().ok()?));
    }
    if let Some(json) = header(H_HEADERS) {
        env.headers = serde_json::from_str(&json).ok()?;
    }
    if env.is_market_data() {
        // Typed again, so local agents get it in `on-market` as from a local feed.
        if let Some(event) = market(&env.payload) {
            env.content = Content::Market(Arc::new(event));
        }
    }
    Some(env)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The bus's own tests carry no market format.
    fn untyped(_: &[u8]) -> Option<MarketEvent> {
        None
    }
    use crate::{BusError, Mailbox};

    /// A prefix no other test run uses (the NATS server is shared).
    fn prefix() -> String {
        format!(
            "colonytest{}x{}",
            std::process::id(),
            crate::new_id().replace('-', "x")
        )
    }

    async fn joined(prefix: &str) -> (Bus, Arc<NatsLink>) {
        let bus = Bus::new();
        let link = connect(
            &bus,
            NatsConfig {
                url: "nats://127.0.0.1:4222".into(),
                prefix: prefix.into(),
            },
            untyped,
        )
        .await
        .expect("the NATS server on 127.0.0.1:4222 (the tests need it)");
        (bus, link)
    }

    fn answering(bus: &Bus, owner: &str, pattern: &str) -> Mailbox {
        let m = bus.mailbox(owner, 64);
        bus.subscribe(owner, pattern, &m).unwrap();
        let (bus, m2) = (bus.clone(), m.clone());
        tokio::spawn(async move {
            while let Some(req) = m2.recv().await {
                let reply = Envelope::new(m2.owner().clone(), "unused", m2.owner().to_string());
                bus.reply(&req, reply).unwrap();
            }
        });
        m
    }

    async fn next(m: &Mailbox) -> Arc<Envelope> {
        tokio::time::timeout(Duration::from_secs(10), m.recv())
            .await
            .expect("a message within 10 s")
            .expect("mailbox open")
    }

    #[tokio::test]
    async fn nats_joins_two_buses_for_publish_request_and_gather() {
        let p = prefix();
        let (a, link_a) = joined(&p).await;
        let (b, link_b) = joined(&p).await;
        let (c, link_c) = joined(&p).await;

        // Publish/subscribe: the envelope arrives whole, and only once (no echo to b).
        let news = a.mailbox("reader", 16);
        a.subscribe("reader", "news.>", &news).unwrap();
        let local = b.mailbox("local-reader", 16);
        b.subscribe("local-reader", "news.>", &local).unwrap();
        assert!(link_a.sync().await && link_b.sync().await);
        let sent = Envelope::new("writer".into(), "news.btc", &b"up"[..])
            .with_priority(Priority::High)
            .with_header("k", "v");
        b.publish(sent.clone()).unwrap();
        let got = next(&news).await;
        assert_eq!(
            (got.id.as_str(), &*got.sender, got.subject.as_str()),
            (sent.id.as_str(), "writer", "news.btc")
        );
        assert_eq!(
            (got.priority, got.headers.clone(), &got.payload[..]),
            (Priority::High, sent.headers.clone(), &b"up"[..])
        );
        assert_eq!(next(&local).await.id, sent.id);
        assert!(link_b.sync().await);
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert!(
            local.try_recv().is_none(),
            "b's own publish does not come back over NATS"
        );

        // Request/reply: a responder on a answers b.
        let _svc = answering(&a, "svc-a", "svc.price");
        assert!(link_a.sync().await);
        let mut req = Envelope::new("asker".into(), "svc.price", &b"?"[..]);
        req.correlation_id = Some("corr-1".into());
        let reply = b.request(req, Duration::from_secs(10)).await.unwrap();
        assert_eq!(&reply.payload[..], b"svc-a");
        assert_eq!(reply.correlation_id.as_deref(), Some("corr-1"));

        // Gather: one local voter on b, one on a, one on c; quorum 3.
        let _v1 = answering(&a, "voter-a", "risk.vote");
        let _v2 = answering(&b, "voter-b", "risk.vote");
        let _v3 = answering(&c, "voter-c", "risk.vote");
        assert!(link_a.sync().await && link_b.sync().await && link_c.sync().await);
        let votes = b
            .gather(
                Envelope::new("asker".into(), "risk.vote", &b"?"[..]),
                3,
                Duration::from_secs(10),
            )
            .await
            .unwrap();
        let mut who: Vec<_> = votes
            .iter()
            .map(|v| String::from_utf8_lossy(&v.payload).into_owned())
            .collect();
        who.sort();
        assert_eq!(who, ["voter-a", "voter-b", "voter-c"]);
        assert_eq!(b.stats().late_replies, 0);
        assert!(link_b.status().sent >= 3 && link_b.status().connected);
        assert_eq!(link_a.status().malformed, 0);
    }

    #[tokio::test]
    async fn nats_no_responders_anywhere_ends_a_request_at_once() {
        let p = prefix();
        let (a, link_a) = joined(&p).await;
        let (b, _link_b) = joined(&p).await;
        let started = std::time::Instant::now();
        let r = b
            .request(
                Envelope::new("asker".into(), "nobody.home", &b"?"[..]),
                Duration::from_secs(20),
            )
            .await;
        assert_eq!(r.unwrap_err(), BusError::NoResponders);
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "{:?}",
            started.elapsed()
        );

        // Once the last subscriber on a goes, a stops wanting the subject on NATS.
        let m = answering(&a, "svc-a", "svc.once");
        assert!(link_a.sync().await);
        let ok = b
            .request(
                Envelope::new("asker".into(), "svc.once", &b"?"[..]),
                Duration::from_secs(10),
            )
            .await;
        assert_eq!(&ok.unwrap().payload[..], b"svc-a");
        assert_eq!(link_a.status().subscriptions, 1);
        assert_eq!(a.unsubscribe_all("svc-a"), 1);
        m.close();
        assert!(link_a.sync().await);
        assert_eq!(link_a.status().subscriptions, 0);
        let r = b
            .request(
                Envelope::new("asker".into(), "svc.once", &b"?"[..]),
                Duration::from_secs(20),
            )
            .await;
        assert_eq!(r.unwrap_err(), BusError::NoResponders);
    }

    #[tokio::test]
    async fn nats_an_agent_name_is_claimed_by_one_host_at_a_time() {
        let p = prefix();
        let (_a, link_a) = joined(&p).await;
        let (_b, link_b) = joined(&p).await;
        let started = std::time::Instant::now();
        let held = link_a.claim("trader").await.unwrap();
        // Nobody else answered for the name: no wait for the claim window.
        assert!(started.elapsed() < CLAIM_WAIT, "{:?}", started.elapsed());
        let started = std::time::Instant::now();
        match link_b.claim("trader").await {
            Err(ClaimError::Taken {
                name, host, holds, ..
            }) => {
                assert_eq!((name.as_str(), holds), ("trader", true));
                assert_eq!(host, link_a.status().host_id);
            }
            other => panic!("b claimed a name a holds: {other:?}"),
        }
        assert!(
            started.elapsed() < CLAIM_WAIT,
            "a holder's answer ends the wait"
        );
        // Another name is unaffected: b gets it, and a is then refused it.
        let other = link_b.claim("analyst").await.unwrap();
        assert!(matches!(
            link_a.claim("analyst").await,
            Err(ClaimError::Taken { holds: true, .. })
        ));
        // Released, the name is free again.
        held.release().await;
        assert!(link_a.sync().await);
        let again = link_b.claim("trader").await.unwrap();
        assert!(matches!(
            link_a.claim("trader").await,
            Err(ClaimError::Taken { .. })
        ));
        drop((again, other));
        assert_eq!(link_a.status().malformed + link_b.status().malformed, 0);
    }

    /// Three buses ask for one name at once, three times over: each time exactly one gets it,
    /// whatever order the server sees their asks in (`claim.rs` drives both orders by hand).
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn nats_hosts_claiming_one_name_at_once_agree_on_one() {
        let p = prefix();
        let (_a, link_a) = joined(&p).await;
        let (_b, link_b) = joined(&p).await;
        let (_c, link_c) = joined(&p).await;
        for round in 0..3 {
            let name = format!("agent{round}");
            let (ra, rb, rc) = tokio::join!(
                link_a.claim(&name),
                link_b.claim(&name),
                link_c.claim(&name)
            );
            let results = [ra, rb, rc];
            let winners = results.iter().filter(|r| r.is_ok()).count();
            assert_eq!(winners, 1, "round {round}: {results:?}");
            for r in &results {
                if let Err(e) = r {
                    assert!(matches!(e, ClaimError::Taken { .. }), "{e}");
                }
            }
        }
    }

    #[tokio::test]
    async fn nats_a_claim_without_a_connection_is_refused() {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let url = format!("nats://127.0.0.1:{port}");
        let server = Server::start(port);
        let (_a, link) = connect_retrying(&url).await;
        drop(server);
        eventually("the lost connection is seen", || !link.status().connected).await;
        let e = link.claim("trader").await.unwrap_err();
        assert!(
            e.to_string()
                .contains("could not be claimed on the NATS bus (not connected"),
            "{e}"
        );
    }

    /// A private nats-server on a free port, killed on drop.
    struct Server(std::process::Child);

    impl Server {
        fn start(port: u16) -> Server {
            let bin = ["/usr/sbin/nats-server", "/usr/bin/nats-server"]
                .into_iter()
                .find(|p| std::path::Path::new(p).exists())
                .unwrap_or("nats-server");
            let child = std::process::Command::new(bin)
                .args(["-a", "127.0.0.1", "-p", &port.to_string()])
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null())
                .spawn()
                .expect("nats-server (installed on this machine kind)");
            Server(child)
        }
    }

    impl Drop for Server {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }

    async fn eventually(what: &str, check: impl Fn() -> bool) {
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        while !check() {
            assert!(std::time::Instant::now() < deadline, "timed out: {what}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    async fn connect_retrying(url: &str) -> (Bus, Arc<NatsLink>) {
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        loop {
            let bus = Bus::new();
            let config = NatsConfig {
                url: url.into(),
                prefix: "rc".into(),
            };
            match connect(&bus, config, untyped).await {
                Ok(link) => return (bus, link),
                Err(e) => assert!(std::time::Instant::now() < deadline, "{e}"),
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    #[tokio::test]
    async fn nats_lost_server_is_reported_and_the_link_recovers() {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let url = format!("nats://127.0.0.1:{port}");
        let server = Server::start(port);
        let (a, link_a) = connect_retrying(&url).await;
        let (b, link_b) = connect_retrying(&url).await;
        let inbox = a.mailbox("reader", 16);
        a.subscribe("reader", "news.>", &inbox).unwrap();
        assert!(link_a.sync().await);
        b.publish(Envelope::new("w".into(), "news.one", &b"1"[..]))
            .unwrap();
        assert_eq!(&next(&inbox).await.payload[..], b"1");

        drop(server);
        eventually("a reports the lost connection", || {
            let s = link_a.status();
            !s.connected && s.disconnects == 1
        })
        .await;
        // While it is down, publishing still succeeds locally and queues for NATS.
        b.publish(Envelope::new("w".into(), "news.queued", &b"q"[..]))
            .unwrap();

        let _server = Server::start(port);
        eventually("both reconnect", || {
            let (sa, sb) = (link_a.status(), link_b.status());
            sa.connected && sb.connected && sa.connects == 2 && sb.connects == 2
        })
        .await;
        assert!(link_a.sync().await && link_b.sync().await);
        // The subscription was renewed: a message published after the reconnect arrives.
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        let mut seen = Vec::new();
        while !seen.iter().any(|p: &Vec<u8>| p == b"2") {
            b.publish(Envelope::new("w".into(), "news.two", &b"2"[..]))
                .unwrap();
            if let Ok(Some(m)) =
                tokio::time::timeout(Duration::from_millis(200), inbox.recv()).await
            {
                seen.push(m.payload.to_vec());
            }
            assert!(
                std::time::Instant::now() < deadline,
                "nothing after the reconnect: {seen:?}"
            );
        }
    }

    #[tokio::test]
    async fn nats_unreachable_server_and_bad_prefix_are_clear_errors() {
        let bus = Bus::new();
        let e = connect(
            &bus,
            NatsConfig {
                url: "nats://127.0.0.1:1".into(),
                prefix: "x".into(),
            },
            untyped,
        )
        .await
        .err()
        .unwrap();
        assert!(
            e.to_string()
                .contains("cannot connect to NATS at nats://127.0.0.1:1"),
            "{e}"
        );
        let e = connect(
            &bus,
            NatsConfig {
                url: "nats://127.0.0.1:4222".into(),
                prefix: "a.>".into(),
            },
            untyped,
        )
        .await
        .err()
        .unwrap();
        assert!(e.to_string().contains("bus prefix"), "{e}");
        // The claim subjects' first token is no prefix's.
        let e = connect(
            &bus,
            NatsConfig {
                url: "nats://127.0.0.1:4222".into(),
                prefix: "_COLONY.x".into(),
            },
            untyped,
        )
        .await
        .err()
        .unwrap();
        assert!(e.to_string().contains("_COLONY is reserved"), "{e}");
        assert!(!bus.is_joined());
    }

    fn nats_message(subject: &str, reply: Option<&str>, headers: HeaderMap) -> async_nats::Message {
        async_nats::Message {
            subject: subject.into(),
            reply: reply.map(Into::into),
            payload: bytes::Bytes::from_static(b"body"),
            headers: Some(headers),
            status: None,
            description: None,
            length: 0,
        }
    }

    #[test]
    fn nats_headers_carry_every_envelope_field() {
        let env = Envelope::new("alpha".into(), "news.btc", &b"body"[..])
            .with_priority(Priority::High)
            .with_header("x-note", "line one\nline two: ok")
            .with_header("x-note", "again")
            .with_ttl(Duration::from_secs(60));
        let mut env = env;
        env.correlation_id = Some("c-1".into());
        env.reply_to = Some("_INBOX.abc.def".into());
        let msg = nats_message(
            "t1.news.btc",
            Some("t1._INBOX.abc.def"),
            encode_headers(&env),
        );
        let back = decode("t1", msg, untyped).unwrap();
        assert_eq!(back.id, env.id);
        assert_eq!(back.subject, "news.btc");
        assert_eq!(&*back.sender, "alpha");
        assert_eq!(back.correlation_id.as_deref(), Some("c-1"));
        assert_eq!(back.reply_to.as_deref(), Some("_INBOX.abc.def"));
        assert_eq!(back.priority, Priority::High);
        assert_eq!(back.timestamp_ns, env.timestamp_ns);
        assert_eq!(back.headers, env.headers, "order and newlines kept");
        let left = back.expires_at.unwrap() - Instant::now();
        assert!(
            left > Duration::from_secs(58) && left <= Duration::from_secs(60),
            "{left:?}"
        );
        assert_eq!(&back.payload[..], b"body");
    }

    #[test]
    fn nats_plain_messages_and_bad_headers() {
        let plain = decode(
            "t1",
            nats_message("t1.a.b", None, HeaderMap::new()),
            untyped,
        )
        .unwrap();
        assert_eq!(&*plain.sender, "nats");
        assert_eq!(plain.priority, Priority::Normal);
        // Outside the prefix, or a prefix that only shares characters.
        assert!(
            decode(
                "t1",
                nats_message("t2.a.b", None, HeaderMap::new()),
                untyped
            )
            .is_none()
        );
        assert!(
            decode(
                "t1",
                nats_message("t1x.a.b", None, HeaderMap::new()),
                untyped
            )
            .is_none()
        );
        // A reply subject the bus cannot route.
        assert!(
            decode(
                "t1",
                nats_message("t1.a", Some("elsewhere"), HeaderMap::new()),
                untyped
            )
            .is_none()
        );
        for (name, value) in [
            (H_PRIORITY, "urgent"),
            (H_TIMESTAMP, "yesterday"),
            (H_TTL, "-5"),
            (H_HEADERS, "{not json"),
        ] {
            let mut h = HeaderMap::new();
            h.insert(name, value);
            assert!(
                decode("t1", nats_message("t1.a", None, h), untyped).is_none(),
                "{name}: {value}"
            );
        }
    }
}
