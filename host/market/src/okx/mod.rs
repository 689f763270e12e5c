//! The live OKX v5 public WebSocket feed (`--feed okx`): tickers, trades and order books for
//! a list of instruments, turned into [`MarketEvent`]s, with the book's sequence continuity
//! checked, a keepalive, and reconnection that resubscribes everything.
//!
//! # Use
//!
//! ```no_run
//! # async fn demo() {
//! use colony_market::okx::{Channel, FeedItem, OkxConfig, OkxFeed, Subscription};
//! let config = OkxConfig::new(vec![
//!     Subscription::new(Channel::Tickers, "BTC-USDT"),
//!     Subscription::new(Channel::Books, "BTC-USDT"),
//! ]);
//! let (tx, mut rx) = tokio::sync::mpsc::channel(4096);
//! let feed = OkxFeed::spawn(config, tx);
//! while let Some(item) = rx.recv().await {
//!     match item {
//!         FeedItem::Event(event) => { /* publish md.okx.<symbol>.<kind> */ }
//!         FeedItem::Issue(issue) => { /* a data-quality problem, already acted on */ }
//!         FeedItem::Status(status) => { /* connection state, for `colony status` */ }
//!     }
//! }
//! feed.stop().await;
//! # }
//! ```
//!
//! The symbol of every event is OKX's `instId` unchanged (`BTC-USDT`). Prices and sizes are
//! parsed from OKX's decimal strings into [`Decimal`] exactly (the scale printed is kept); its
//! millisecond timestamps become nanoseconds.
//!
//! # What it guarantees
//!
//! - **Nothing the network sends can stop the feed.** A frame that is not JSON, has a bad
//!   number, an unknown side or a missing field is counted ([`FeedCounters::parse_errors`]),
//!   logged (the first few, then at powers of two) and dropped; a closed or broken connection is
//!   reopened. The feed ends only when [`OkxFeed::stop`] is called, the [`OkxFeed`] is dropped,
//!   or the receiver of its items is dropped.
//! - **No price that is not above zero, and no negative size, is published.** Such a ticker or
//!   trade is dropped on its own (the rest of its frame is used) and reported as a
//!   [`QualityIssue::BadValue`]; a book push with such a level is not applied, reported the
//!   same way, and the book resubscribed as after a gap (a trade of size 0 counts as bad too;
//!   a book update's size 0 removes its level). The host counts each with the feed's
//!   data-quality issues (`colony status`).
//! - **A published book is a continuous one.** For the `books` channel every update must name the
//!   previous message's `seqId` as its `prevSeqId`; otherwise the book is withheld, a
//!   [`QualityIssue::SequenceGap`] is reported, and that one subscription is unsubscribed and
//!   subscribed again, which makes OKX send a fresh snapshot (the checksum OKX is retiring is
//!   not used). A book that becomes crossed or locked after an update is treated the same way;
//!   one that arrives crossed in a snapshot is reported once and withheld until it uncrosses.
//! - **Only changes are published.** A book push yields a [`MarketEvent::Book`] (top
//!   [`OkxConfig::book_depth`] levels) only when those levels changed and a [`MarketEvent::Quote`]
//!   only when the best bid or ask changed; the quote comes first.
//! - **The connection is kept alive.** When nothing has arrived for [`OkxConfig::ping_after`]
//!   (below OKX's 30 s idle limit) the client sends the text `ping`; if nothing (normally the
//!   `pong`) arrives within [`OkxConfig::pong_timeout`] it reconnects.
//! - **Reconnection backs off.** Delays double from [`OkxConfig::backoff_min`] up to
//!   [`OkxConfig::backoff_max`], and start again from the minimum after a session that received
//!   data. Every reconnection subscribes to every configured channel again; books start from the
//!   new snapshot. OKX's notice 64008 (the connection will close for a service upgrade) makes
//!   the feed reconnect at once rather than wait to be cut off.
//! - **What the server sends cannot grow memory.** Messages are capped at 4 MiB, a book is kept
//!   only for a configured `books`/`books5` subscription, and nothing else is buffered: sending
//!   to the consumer waits when its channel is full.
//!
//! # The book state machine ([`BookSync`], one per `books`/`books5` subscription)
//!
//! ```text
//!                 snapshot                      update, prevSeqId == last seqId
//!  AwaitingSnapshot ──────► Synced { seqId } ◄────────────────────────────────┐
//!     ▲   │ update: skipped       │ apply, publish what changed ───────────────┘
//!     │   └───────┘               │
//!     │     update, prevSeqId != last seqId (or the update crosses the book):
//!     └───────────────────────────┘  report, resubscribe, withhold until the snapshot
//! ```
//!
//! `books5` pushes are whole five-level snapshots, so that channel has no continuity to check.
//!
//! # Layers
//!
//! The pure part — [`parse_frame`], [`BookSync`], [`subscribe_request`] — does no I/O and is
//! tested with OKX's documented messages (`okx_samples/`). The I/O part ([`OkxFeed`]) is one
//! tokio task with tokio-tungstenite (TLS through rustls with the ring provider and the system's
//! root certificates, `wss://` only); its tests run against a WebSocket server on 127.0.0.1 that
//! replays OKX-format frames. Counters are in [`FeedStats`] (atomics, readable at any time) and
//! in `tracing` (target `colony_market::okx`).

#[cfg(doc)]
use crate::types::{MarketEvent, QualityIssue};
#[cfg(doc)]
use rust_decimal::Decimal;
use std::time::Duration;

/// OKX's public WebSocket endpoint (production).
pub const PUBLIC_URL: &str = "wss://ws.okx.com:8443/ws/v5/public";

/// The largest message accepted from the server; a full 400-level book is about 30 KiB.
const MAX_MESSAGE: usize = 4 << 20;

/// Subscriptions per subscribe request (OKX limits a request to 64 KiB).
const SUBSCRIBE_BATCH: usize = 100;

/// OKX's notice that the connection will be closed for a service upgrade.
const UPGRADE_NOTICE: &str = "64008";

/// How long [`OkxFeed::stop`] waits for the task to close its connection.
const STOP_GRACE: Duration = Duration::from_secs(2);

mod book_sync;
mod feed;
mod frame;
mod session;
mod subscription;

pub use book_sync::{BookStep, BookSync, SyncState};
pub use feed::{FeedCounters, FeedItem, FeedStats, FeedStatus, OkxConfig, OkxFeed};
pub use frame::{BookAction, BookMessage, Frame, ParseError, parse_frame};
pub use subscription::{
    BadSubscription, Channel, Subscription, subscribe_request, unsubscribe_request,
};

#[cfg(test)]
mod tests;
