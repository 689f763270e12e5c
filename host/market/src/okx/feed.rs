//! The feed's configuration, what it yields, its counters, and the [`OkxFeed`] handle that
//! starts and stops its task.

use super::session::run;
use super::subscription::Subscription;
use super::{PUBLIC_URL, STOP_GRACE};
use crate::types::{MarketEvent, QualityIssue};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;

/// How the feed connects and what it subscribes to.
#[derive(Debug, Clone)]
pub struct OkxConfig {
    /// WebSocket URL; [`PUBLIC_URL`] unless testing (`ws://` and `wss://` both work).
    pub url: String,
    /// What to subscribe to, on every connection.
    pub subscriptions: Vec<Subscription>,
    /// Levels per side in each published [`Book`].
    pub book_depth: usize,
    /// Send `ping` when nothing arrived for this long (keep it well under OKX's 30 s).
    pub ping_after: Duration,
    /// Reconnect when nothing arrived this long after a `ping`.
    pub pong_timeout: Duration,
    /// Give up a connection attempt (TCP, TLS and WebSocket handshake) after this long.
    pub connect_timeout: Duration,
    /// First reconnection delay.
    pub backoff_min: Duration,
    /// Longest reconnection delay.
    pub backoff_max: Duration,
}

impl OkxConfig {
    /// The production endpoint with these subscriptions and the default timings: 20 levels,
    /// ping after 20 s idle, pong within 10 s, connect within 10 s, backoff 500 ms to 30 s.
    pub fn new(subscriptions: Vec<Subscription>) -> OkxConfig {
        OkxConfig {
            url: PUBLIC_URL.to_string(),
            subscriptions,
            book_depth: 20,
            ping_after: Duration::from_secs(20),
            pong_timeout: Duration::from_secs(10),
            connect_timeout: Duration::from_secs(10),
            backoff_min: Duration::from_millis(500),
            backoff_max: Duration::from_secs(30),
        }
    }
}

/// What the feed sends to its consumer, in the order it happened.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FeedItem {
    /// Market data to publish.
    Event(MarketEvent),
    /// A data-quality problem; the feed has already acted on it (withheld, resubscribed).
    Issue(QualityIssue),
    /// A change in the connection.
    Status(FeedStatus),
}

/// A change in the feed's connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FeedStatus {
    /// A WebSocket connection is open; subscriptions are being sent.
    Connected,
    /// OKX accepted a subscription.
    Subscribed(Subscription),
    /// A book lost continuity; the subscription is being renewed for a fresh snapshot.
    Resyncing(Subscription),
    /// OKX refused a request (for example an unknown instrument); the feed goes on.
    VenueError {
        /// OKX's code.
        code: String,
        /// OKX's message.
        msg: String,
    },
    /// The connection was lost or could not be opened; the next attempt is after `retry_in`.
    Disconnected {
        /// What happened.
        reason: String,
        /// Delay before the next attempt.
        retry_in: Duration,
    },
}

/// The feed's counters, updated by its task and readable at any time.
#[derive(Debug, Default)]
pub struct FeedStats {
    pub(super) connected: AtomicBool,
    pub(super) connects: AtomicU64,
    pub(super) disconnects: AtomicU64,
    pub(super) resyncs: AtomicU64,
    pub(super) messages: AtomicU64,
    pub(super) parse_errors: AtomicU64,
    pub(super) ignored: AtomicU64,
    pub(super) skipped: AtomicU64,
    pub(super) venue_errors: AtomicU64,
    pub(super) pings: AtomicU64,
    pub(super) pongs: AtomicU64,
    pub(super) events: AtomicU64,
    pub(super) issues: AtomicU64,
}

/// A reading of [`FeedStats`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct FeedCounters {
    /// A connection is open now.
    pub connected: bool,
    /// Connections opened.
    pub connects: u64,
    /// Connections lost after being opened.
    pub disconnects: u64,
    /// Book subscriptions renewed after a gap or a crossed update.
    pub resyncs: u64,
    /// Frames received (text and binary).
    pub messages: u64,
    /// Frames that could not be understood, dropped.
    pub parse_errors: u64,
    /// Well-formed frames for channels or events the feed does not handle.
    pub ignored: u64,
    /// Book updates dropped while awaiting a snapshot.
    pub skipped: u64,
    /// `error` events from OKX.
    pub venue_errors: u64,
    /// `ping`s sent.
    pub pings: u64,
    /// `pong`s received.
    pub pongs: u64,
    /// Market events sent to the consumer.
    pub events: u64,
    /// Quality issues sent to the consumer.
    pub issues: u64,
}

impl FeedStats {
    /// The counters now (each read on its own; they may be a moment apart).
    pub fn snapshot(&self) -> FeedCounters {
        let n = |c: &AtomicU64| c.load(Ordering::Relaxed);
        FeedCounters {
            connected: self.connected.load(Ordering::Relaxed),
            connects: n(&self.connects),
            disconnects: n(&self.disconnects),
            resyncs: n(&self.resyncs),
            messages: n(&self.messages),
            parse_errors: n(&self.parse_errors),
            ignored: n(&self.ignored),
            skipped: n(&self.skipped),
            venue_errors: n(&self.venue_errors),
            pings: n(&self.pings),
            pongs: n(&self.pongs),
            events: n(&self.events),
            issues: n(&self.issues),
        }
    }
}

pub(super) fn bump(counter: &AtomicU64) -> u64 {
    counter.fetch_add(1, Ordering::Relaxed) + 1
}

/// A running OKX feed: one tokio task. Dropping it stops the task too.
#[derive(Debug)]
pub struct OkxFeed {
    stats: Arc<FeedStats>,
    stop: watch::Sender<bool>,
    pub(super) task: JoinHandle<()>,
}

impl OkxFeed {
    /// Starts the feed on the current tokio runtime; it sends what it receives to `out` until
    /// stopped, dropped, or `out`'s receiver is dropped. Sending waits when `out` is full, so a
    /// slow consumer slows the reading (OKX may then close the connection, and the feed
    /// reconnects).
    pub fn spawn(config: OkxConfig, out: mpsc::Sender<FeedItem>) -> OkxFeed {
        let stats = Arc::new(FeedStats::default());
        let (stop, stop_rx) = watch::channel(false);
        let task = tokio::spawn(run(config, out, stats.clone(), stop_rx));
        OkxFeed { stats, stop, task }
    }

    /// The counters now.
    pub fn stats(&self) -> FeedCounters {
        self.stats.snapshot()
    }

    /// The counters, to read after the feed is gone or from elsewhere.
    pub fn stats_handle(&self) -> Arc<FeedStats> {
        self.stats.clone()
    }

    /// Closes the connection and ends the task (aborting it if it does not end within 2 s,
    /// e.g. while waiting on a full channel).
    pub async fn stop(self) {
        let _ = self.stop.send(true);
        let mut task = self.task;
        if tokio::time::timeout(STOP_GRACE, &mut task).await.is_err() {
            task.abort();
        }
    }
}
