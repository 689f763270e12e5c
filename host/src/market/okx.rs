//! The live OKX v5 public WebSocket feed (`--feed okx`): tickers, trades and order books for
//! a list of instruments, turned into [`MarketEvent`]s, with the book's sequence continuity
//! checked, a keepalive, and reconnection that resubscribes everything.
//!
//! # Use
//!
//! ```no_run
//! # async fn demo() {
//! use colony_host::market::okx::{Channel, FeedItem, OkxConfig, OkxFeed, Subscription};
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
//! in `tracing` (target `colony_host::market::okx`).

use super::types::{Book, BookLevel, MarketEvent, QualityIssue, Quote, Side, Timestamp, Trade};
use colony_risk::book::L2Book;
use futures_util::{SinkExt, StreamExt};
use rust_decimal::Decimal;
use serde::Deserialize;
use serde::de::{self, IgnoredAny, SeqAccess, Visitor};
use std::collections::HashMap;
use std::fmt;
use std::str::FromStr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;
use tokio::net::TcpStream;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::{Connector, MaybeTlsStream, WebSocketStream};

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

// ---------------------------------------------------------------------------------------------
// Subscriptions

/// An OKX public channel this feed understands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Channel {
    /// `tickers`: last trade and best bid/ask, pushed at most every 100 ms → [`Quote`].
    Tickers,
    /// `trades`: every trade (possibly aggregated, see `count`) → [`Trade`].
    Trades,
    /// `books`: 400 levels, a snapshot then incremental updates with `seqId`/`prevSeqId` →
    /// [`Book`] and [`Quote`].
    Books,
    /// `books5`: a five-level snapshot at most every 100 ms → [`Book`] and [`Quote`].
    Books5,
    /// `bbo-tbt`: best bid/ask on every change → [`Quote`].
    BboTbt,
}

impl Channel {
    /// Every channel, in a fixed order.
    pub const ALL: [Channel; 5] = [
        Channel::Tickers,
        Channel::Trades,
        Channel::Books,
        Channel::Books5,
        Channel::BboTbt,
    ];

    /// OKX's name for the channel.
    pub fn as_str(self) -> &'static str {
        match self {
            Channel::Tickers => "tickers",
            Channel::Trades => "trades",
            Channel::Books => "books",
            Channel::Books5 => "books5",
            Channel::BboTbt => "bbo-tbt",
        }
    }

    /// The channel OKX calls `name`.
    pub fn from_name(name: &str) -> Option<Channel> {
        Channel::ALL.into_iter().find(|c| c.as_str() == name)
    }
}

impl fmt::Display for Channel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One channel of one instrument; written `CHANNEL:INSTID` (`books:BTC-USDT`).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Subscription {
    /// The channel.
    pub channel: Channel,
    /// OKX's instrument id, which is also the symbol of the events (`BTC-USDT`).
    pub inst_id: Arc<str>,
}

impl Subscription {
    /// `channel` for `inst_id`.
    pub fn new(channel: Channel, inst_id: impl Into<Arc<str>>) -> Subscription {
        Subscription {
            channel,
            inst_id: inst_id.into(),
        }
    }
}

impl fmt::Display for Subscription {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.channel, self.inst_id)
    }
}

/// A subscription string that is not `CHANNEL:INSTID`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "okx subscription {0:?}: expected CHANNEL:INSTID with CHANNEL one of tickers, trades, books, books5, bbo-tbt"
)]
pub struct BadSubscription(pub String);

impl FromStr for Subscription {
    type Err = BadSubscription;

    fn from_str(s: &str) -> Result<Subscription, BadSubscription> {
        let bad = || BadSubscription(s.to_string());
        let (channel, inst_id) = s.split_once(':').ok_or_else(bad)?;
        let channel = Channel::from_name(channel).ok_or_else(bad)?;
        let valid = !inst_id.is_empty()
            && inst_id
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
        if !valid {
            return Err(bad());
        }
        Ok(Subscription::new(channel, inst_id))
    }
}

/// The `subscribe` request for these subscriptions.
pub fn subscribe_request(subs: &[Subscription]) -> String {
    op_request("subscribe", subs)
}

/// The `unsubscribe` request for these subscriptions.
pub fn unsubscribe_request(subs: &[Subscription]) -> String {
    op_request("unsubscribe", subs)
}

fn op_request(op: &str, subs: &[Subscription]) -> String {
    let args: Vec<serde_json::Value> = subs
        .iter()
        .map(|s| serde_json::json!({ "channel": s.channel.as_str(), "instId": &*s.inst_id }))
        .collect();
    serde_json::json!({ "op": op, "args": args }).to_string()
}

// ---------------------------------------------------------------------------------------------
// Frames

/// What one text frame from OKX's public WebSocket says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Frame {
    /// The answer to the client's `ping`.
    Pong,
    /// A subscription was accepted.
    Subscribed(Subscription),
    /// A subscription was ended.
    Unsubscribed(Subscription),
    /// A request was refused (`event: error`), e.g. an unknown instrument.
    Error {
        /// OKX's error code.
        code: String,
        /// OKX's message.
        msg: String,
    },
    /// Any other event, e.g. `notice` (code 64008: the connection will close for an upgrade)
    /// or `channel-conn-count`.
    Notice {
        /// The event name.
        event: String,
        /// Its code, empty when none.
        code: String,
        /// Its message, empty when none.
        msg: String,
    },
    /// Best bid/ask from `tickers` or `bbo-tbt` (a push whose bid or ask is empty gives none).
    Quotes(Vec<Quote>),
    /// Trades from `trades`.
    Trades(Vec<Trade>),
    /// Book pushes from `books` or `books5`.
    Books(Vec<BookMessage>),
    /// A well-formed push for a channel this feed does not handle (named here).
    Ignored(String),
}

/// Whether a book push replaces the book or changes some levels.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BookAction {
    /// The whole book (every `books5` push is one).
    Snapshot,
    /// Levels to set; a size of zero removes the level.
    Update,
}

/// One book push for one instrument.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BookMessage {
    /// `books` or `books5`.
    pub channel: Channel,
    /// The instrument.
    pub symbol: Arc<str>,
    /// Snapshot or update.
    pub action: BookAction,
    /// Bid levels as sent.
    pub bids: Vec<BookLevel>,
    /// Ask levels as sent.
    pub asks: Vec<BookLevel>,
    /// Exchange time.
    pub ts: Timestamp,
    /// `seqId` (always present on `books`).
    pub seq_id: Option<i64>,
    /// `prevSeqId` (always present on `books`; -1 on a snapshot).
    pub prev_seq_id: Option<i64>,
}

/// Why a frame could not be understood.
#[derive(Debug, thiserror::Error)]
pub enum ParseError {
    /// Not JSON, or not the shape OKX documents for the channel.
    #[error("malformed okx frame: {0}")]
    Json(#[from] serde_json::Error),
    /// A field is there but its value is not acceptable.
    #[error("okx frame: bad {field} {value:?}")]
    Field {
        /// OKX's field name.
        field: &'static str,
        /// The value (cut to 64 characters).
        value: String,
    },
    /// A field the frame needs is missing.
    #[error("okx frame: no {0}")]
    Missing(&'static str),
}

fn bad(field: &'static str, value: &str) -> ParseError {
    ParseError::Field {
        field,
        value: preview(value, 64).to_string(),
    }
}

#[derive(Deserialize)]
struct Head<'a> {
    #[serde(borrow, default)]
    event: Option<&'a str>,
    #[serde(borrow, default)]
    arg: Option<Arg<'a>>,
    #[serde(borrow, default)]
    action: Option<&'a str>,
    #[serde(default)]
    code: Option<serde_json::Value>,
    #[serde(default)]
    msg: Option<String>,
}

#[derive(Deserialize)]
struct Arg<'a> {
    #[serde(borrow)]
    channel: &'a str,
    #[serde(borrow, default, rename = "instId")]
    inst_id: Option<&'a str>,
}

#[derive(Deserialize)]
struct Body<T> {
    data: Vec<T>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawTicker<'a> {
    #[serde(borrow)]
    bid_px: &'a str,
    #[serde(borrow)]
    bid_sz: &'a str,
    #[serde(borrow)]
    ask_px: &'a str,
    #[serde(borrow)]
    ask_sz: &'a str,
    #[serde(borrow)]
    ts: &'a str,
}

#[derive(Deserialize)]
struct RawTrade<'a> {
    #[serde(borrow)]
    px: &'a str,
    #[serde(borrow)]
    sz: &'a str,
    #[serde(borrow)]
    side: &'a str,
    #[serde(borrow)]
    ts: &'a str,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawBook<'a> {
    #[serde(borrow, default)]
    bids: Vec<RawLevel<'a>>,
    #[serde(borrow, default)]
    asks: Vec<RawLevel<'a>>,
    #[serde(borrow)]
    ts: &'a str,
    #[serde(default)]
    seq_id: Option<i64>,
    #[serde(default)]
    prev_seq_id: Option<i64>,
}

/// `[price, size, deprecated, order count]`: only the first two are read.
struct RawLevel<'a> {
    px: &'a str,
    sz: &'a str,
}

impl<'de: 'a, 'a> Deserialize<'de> for RawLevel<'a> {
    fn deserialize<D: de::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct LevelVisitor;
        impl<'de> Visitor<'de> for LevelVisitor {
            type Value = RawLevel<'de>;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a book level [price, size, ...]")
            }

            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<RawLevel<'de>, A::Error> {
                let px = seq
                    .next_element()?
                    .ok_or_else(|| de::Error::invalid_length(0, &self))?;
                let sz = seq
                    .next_element()?
                    .ok_or_else(|| de::Error::invalid_length(1, &self))?;
                while seq.next_element::<IgnoredAny>()?.is_some() {}
                Ok(RawLevel { px, sz })
            }
        }
        deserializer.deserialize_seq(LevelVisitor)
    }
}

/// Parses one text frame. Pure: no state, no I/O; everything the frame says that the feed needs
/// is checked here (numbers, sides, timestamps, the sequence ids of `books`).
pub fn parse_frame(text: &str) -> Result<Frame, ParseError> {
    if text == "pong" {
        return Ok(Frame::Pong);
    }
    let head: Head<'_> = serde_json::from_str(text)?;
    if let Some(event) = head.event {
        return Ok(parse_event(event, head.arg, head.code, head.msg));
    }
    let arg = head.arg.ok_or(ParseError::Missing("event or arg"))?;
    let Some(channel) = Channel::from_name(arg.channel) else {
        return Ok(Frame::Ignored(format!(
            "channel {}",
            preview(arg.channel, 64)
        )));
    };
    let symbol: Arc<str> = arg.inst_id.ok_or(ParseError::Missing("arg.instId"))?.into();
    match channel {
        Channel::Tickers => {
            let body: Body<RawTicker<'_>> = serde_json::from_str(text)?;
            let mut quotes = Vec::with_capacity(body.data.len());
            for t in &body.data {
                if let Some(quote) = ticker_quote(t, &symbol)? {
                    quotes.push(quote);
                }
            }
            Ok(Frame::Quotes(quotes))
        }
        Channel::BboTbt => {
            let body: Body<RawBook<'_>> = serde_json::from_str(text)?;
            let mut quotes = Vec::with_capacity(body.data.len());
            for b in &body.data {
                if let Some(quote) = bbo_quote(b, &symbol)? {
                    quotes.push(quote);
                }
            }
            Ok(Frame::Quotes(quotes))
        }
        Channel::Trades => {
            let body: Body<RawTrade<'_>> = serde_json::from_str(text)?;
            let trades = body
                .data
                .iter()
                .map(|t| {
                    Ok(Trade {
                        symbol: symbol.clone(),
                        price: price("px", t.px)?,
                        size: size("sz", t.sz)?,
                        aggressor: match t.side {
                            "buy" => Side::Buy,
                            "sell" => Side::Sell,
                            other => return Err(bad("side", other)),
                        },
                        ts: millis("ts", t.ts)?,
                    })
                })
                .collect::<Result<Vec<_>, ParseError>>()?;
            Ok(Frame::Trades(trades))
        }
        Channel::Books | Channel::Books5 => {
            let action = match (channel, head.action) {
                (Channel::Books5, _) | (_, Some("snapshot")) => BookAction::Snapshot,
                (_, Some("update")) => BookAction::Update,
                (_, Some(other)) => return Err(bad("action", other)),
                (_, None) => return Err(ParseError::Missing("action")),
            };
            let body: Body<RawBook<'_>> = serde_json::from_str(text)?;
            let books = body
                .data
                .iter()
                .map(|b| book_message(b, channel, action, &symbol))
                .collect::<Result<Vec<_>, ParseError>>()?;
            Ok(Frame::Books(books))
        }
    }
}

fn parse_event(
    event: &str,
    arg: Option<Arg<'_>>,
    code: Option<serde_json::Value>,
    msg: Option<String>,
) -> Frame {
    let subscription = arg.as_ref().and_then(|arg| {
        Some(Subscription::new(
            Channel::from_name(arg.channel)?,
            arg.inst_id?,
        ))
    });
    let code = match code {
        Some(serde_json::Value::String(s)) => s,
        Some(other) => other.to_string(),
        None => String::new(),
    };
    let msg = msg.unwrap_or_default();
    match (event, subscription) {
        ("subscribe", Some(sub)) => Frame::Subscribed(sub),
        ("unsubscribe", Some(sub)) => Frame::Unsubscribed(sub),
        ("subscribe" | "unsubscribe", None) => Frame::Ignored(format!(
            "{event} of channel {}",
            arg.map_or("?", |a| a.channel)
        )),
        ("error", _) => Frame::Error { code, msg },
        (event, _) => Frame::Notice {
            event: preview(event, 64).to_string(),
            code,
            msg,
        },
    }
}

fn ticker_quote(t: &RawTicker<'_>, symbol: &Arc<str>) -> Result<Option<Quote>, ParseError> {
    // An instrument with no bids or no asks has empty strings there: no quote, not an error.
    if t.bid_px.is_empty() || t.ask_px.is_empty() {
        return Ok(None);
    }
    Ok(Some(Quote {
        symbol: symbol.clone(),
        bid: price("bidPx", t.bid_px)?,
        bid_size: size("bidSz", t.bid_sz)?,
        ask: price("askPx", t.ask_px)?,
        ask_size: size("askSz", t.ask_sz)?,
        ts: millis("ts", t.ts)?,
    }))
}

fn bbo_quote(b: &RawBook<'_>, symbol: &Arc<str>) -> Result<Option<Quote>, ParseError> {
    let (Some(bid), Some(ask)) = (b.bids.first(), b.asks.first()) else {
        return Ok(None);
    };
    Ok(Some(Quote {
        symbol: symbol.clone(),
        bid: price("bids.px", bid.px)?,
        bid_size: size("bids.sz", bid.sz)?,
        ask: price("asks.px", ask.px)?,
        ask_size: size("asks.sz", ask.sz)?,
        ts: millis("ts", b.ts)?,
    }))
}

fn book_message(
    b: &RawBook<'_>,
    channel: Channel,
    action: BookAction,
    symbol: &Arc<str>,
) -> Result<BookMessage, ParseError> {
    // Continuity is checked on `books`, so there the ids are not optional.
    if channel == Channel::Books {
        b.seq_id.ok_or(ParseError::Missing("seqId"))?;
        b.prev_seq_id.ok_or(ParseError::Missing("prevSeqId"))?;
    }
    let levels = |raw: &[RawLevel<'_>], px: &'static str, sz: &'static str| {
        raw.iter()
            .map(|l| {
                Ok(BookLevel {
                    price: price(px, l.px)?,
                    size: size(sz, l.sz)?,
                })
            })
            .collect::<Result<Vec<_>, ParseError>>()
    };
    Ok(BookMessage {
        channel,
        symbol: symbol.clone(),
        action,
        bids: levels(&b.bids, "bids.px", "bids.sz")?,
        asks: levels(&b.asks, "asks.px", "asks.sz")?,
        ts: millis("ts", b.ts)?,
        seq_id: b.seq_id,
        prev_seq_id: b.prev_seq_id,
    })
}

/// A price: an exact decimal above zero.
fn price(field: &'static str, s: &str) -> Result<Decimal, ParseError> {
    match Decimal::from_str_exact(s) {
        Ok(d) if d > Decimal::ZERO => Ok(d),
        _ => Err(bad(field, s)),
    }
}

/// A size: an exact decimal, zero or above.
fn size(field: &'static str, s: &str) -> Result<Decimal, ParseError> {
    match Decimal::from_str_exact(s) {
        // `-0` parses as a negative zero; a size of zero is just zero.
        Ok(d) if d.is_zero() => Ok(Decimal::ZERO),
        Ok(d) if d > Decimal::ZERO => Ok(d),
        _ => Err(bad(field, s)),
    }
}

/// OKX's millisecond timestamp string, in nanoseconds.
fn millis(field: &'static str, s: &str) -> Result<Timestamp, ParseError> {
    s.parse::<u64>()
        .ok()
        .and_then(|ms| ms.checked_mul(1_000_000))
        .ok_or_else(|| bad(field, s))
}

/// The first `max` characters of `s`.
fn preview(s: &str, max: usize) -> &str {
    s.char_indices().nth(max).map_or(s, |(i, _)| &s[..i])
}

// ---------------------------------------------------------------------------------------------
// Book continuity

/// Where a [`BookSync`] is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SyncState {
    /// No snapshot yet, or the book was given up after a gap; updates are skipped.
    AwaitingSnapshot,
    /// The book is continuous; `seq_id` is the last push's `seqId` (none on `books5`).
    Synced {
        /// The `seqId` the next update must name as its `prevSeqId`.
        seq_id: Option<i64>,
    },
}

/// What one book push did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BookStep {
    /// Applied; the top levels and the best bid/ask, each only if it changed (or is the first
    /// since the book was created or reset).
    Applied {
        /// The top `depth` levels, if they changed.
        book: Option<Book>,
        /// Best bid and ask, if they changed and both sides have levels.
        quote: Option<Quote>,
    },
    /// An update while awaiting a snapshot (left over from before a resubscribe): dropped.
    Skipped,
    /// Continuity is lost (a sequence gap, or an update crossed the book): the book is given up
    /// until a fresh snapshot; the caller must resubscribe and report the issue.
    Resync(QualityIssue),
    /// A snapshot left the book crossed or locked: report the issue; nothing is published until
    /// it uncrosses.
    Crossed(QualityIssue),
    /// Applied, and the book is still crossed (already reported): nothing to publish.
    StillCrossed,
}

/// One instrument's book from `books` or `books5` pushes, with the continuity check. Pure: the
/// I/O layer acts on the [`BookStep`]s.
#[derive(Debug, Clone)]
pub struct BookSync {
    book: L2Book,
    channel: Channel,
    depth: usize,
    state: SyncState,
    crossed: bool,
    /// Whether anything was published since the last snapshot.
    published: bool,
    last_bids: Vec<BookLevel>,
    last_asks: Vec<BookLevel>,
    last_best: (Option<BookLevel>, Option<BookLevel>),
    scratch_bids: Vec<BookLevel>,
    scratch_asks: Vec<BookLevel>,
}

impl BookSync {
    /// An empty book for `symbol` fed by `channel`, publishing `depth` levels a side.
    pub fn new(symbol: Arc<str>, channel: Channel, depth: usize) -> BookSync {
        BookSync {
            book: L2Book::new(symbol),
            channel,
            depth,
            state: SyncState::AwaitingSnapshot,
            crossed: false,
            published: false,
            last_bids: Vec::with_capacity(depth),
            last_asks: Vec::with_capacity(depth),
            last_best: (None, None),
            scratch_bids: Vec::with_capacity(depth),
            scratch_asks: Vec::with_capacity(depth),
        }
    }

    /// The book as last applied.
    pub fn book(&self) -> &L2Book {
        &self.book
    }

    /// Where the state machine is.
    pub fn state(&self) -> SyncState {
        self.state
    }

    /// Gives the book up until the next snapshot (as after a gap, or a new connection).
    pub fn reset(&mut self) {
        self.state = SyncState::AwaitingSnapshot;
        self.crossed = false;
        self.published = false;
    }

    /// Applies one push.
    pub fn on_message(&mut self, msg: &BookMessage) -> BookStep {
        match msg.action {
            BookAction::Snapshot => {
                self.book.apply_snapshot(&msg.bids, &msg.asks, msg.ts);
                self.state = SyncState::Synced { seq_id: msg.seq_id };
                // `published` stays: a `books5` snapshot that changes nothing publishes nothing.
                // After a gap `reset` cleared it, so the fresh book is published whole.
                self.crossed = false;
                self.after_apply(false)
            }
            BookAction::Update => {
                let SyncState::Synced { seq_id: last } = self.state else {
                    return BookStep::Skipped;
                };
                if self.channel == Channel::Books && (last.is_none() || msg.prev_seq_id != last) {
                    self.reset();
                    return BookStep::Resync(QualityIssue::SequenceGap {
                        symbol: self.book.symbol().clone(),
                        expected: last.unwrap_or(-1),
                        got: msg.prev_seq_id.unwrap_or(-1),
                    });
                }
                for level in &msg.bids {
                    self.book
                        .apply_update(Side::Buy, level.price, level.size, msg.ts);
                }
                for level in &msg.asks {
                    self.book
                        .apply_update(Side::Sell, level.price, level.size, msg.ts);
                }
                // A "no change" push (no levels) still moves the book's time on.
                self.book.set_ts(msg.ts);
                self.state = SyncState::Synced {
                    seq_id: msg.seq_id.or(last),
                };
                self.after_apply(true)
            }
        }
    }

    fn after_apply(&mut self, from_update: bool) -> BookStep {
        if let Some(issue) = self.book.check() {
            if self.crossed {
                return BookStep::StillCrossed;
            }
            if from_update && self.channel == Channel::Books {
                self.reset();
                return BookStep::Resync(issue);
            }
            self.crossed = true;
            return BookStep::Crossed(issue);
        }
        self.crossed = false;

        let best = (self.book.best_bid(), self.book.best_ask());
        let quote_changed = !self.published || best != self.last_best;
        self.last_best = best;
        let quote = if quote_changed {
            self.book.quote()
        } else {
            None
        };

        self.book
            .top_into(self.depth, &mut self.scratch_bids, &mut self.scratch_asks);
        let book_changed = !self.published
            || self.scratch_bids != self.last_bids
            || self.scratch_asks != self.last_asks;
        let book = if book_changed {
            std::mem::swap(&mut self.scratch_bids, &mut self.last_bids);
            std::mem::swap(&mut self.scratch_asks, &mut self.last_asks);
            Some(Book {
                symbol: self.book.symbol().clone(),
                bids: self.last_bids.clone(),
                asks: self.last_asks.clone(),
                ts: self.book.ts(),
            })
        } else {
            None
        };
        self.published = true;
        BookStep::Applied { book, quote }
    }
}

// ---------------------------------------------------------------------------------------------
// The feed task

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
    connected: AtomicBool,
    connects: AtomicU64,
    disconnects: AtomicU64,
    resyncs: AtomicU64,
    messages: AtomicU64,
    parse_errors: AtomicU64,
    ignored: AtomicU64,
    skipped: AtomicU64,
    venue_errors: AtomicU64,
    pings: AtomicU64,
    pongs: AtomicU64,
    events: AtomicU64,
    issues: AtomicU64,
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

fn bump(counter: &AtomicU64) -> u64 {
    counter.fetch_add(1, Ordering::Relaxed) + 1
}

/// A running OKX feed: one tokio task. Dropping it stops the task too.
#[derive(Debug)]
pub struct OkxFeed {
    stats: Arc<FeedStats>,
    stop: watch::Sender<bool>,
    task: JoinHandle<()>,
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

type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// The shortest reconnection delay, whatever the configuration says, so that a server that
/// accepts and at once closes cannot make the feed spin.
const MIN_BACKOFF: Duration = Duration::from_millis(10);

/// The reconnection delay after `current`: doubled, within [`MIN_BACKOFF`] and `max`.
fn next_backoff(current: Duration, max: Duration) -> Duration {
    current
        .saturating_mul(2)
        .clamp(MIN_BACKOFF, max.max(MIN_BACKOFF))
}

async fn run(
    config: OkxConfig,
    out: mpsc::Sender<FeedItem>,
    stats: Arc<FeedStats>,
    mut stop: watch::Receiver<bool>,
) {
    let mut backoff = config.backoff_min.max(MIN_BACKOFF);
    let mut tls: Option<Connector> = None;
    loop {
        let opened = tokio::select! {
            biased;
            _ = stop.changed() => return,
            _ = out.closed() => return,
            r = tokio::time::timeout(config.connect_timeout, open(&config.url, &mut tls)) => r,
        };
        let (reason, healthy) = match opened {
            Ok(Ok(ws)) => {
                bump(&stats.connects);
                stats.connected.store(true, Ordering::Relaxed);
                tracing::info!(url = %config.url, "okx feed connected");
                if out
                    .send(FeedItem::Status(FeedStatus::Connected))
                    .await
                    .is_err()
                {
                    return;
                }
                let mut session = Session {
                    config: &config,
                    out: &out,
                    stats: &stats,
                    ws,
                    books: book_states(&config),
                    healthy: false,
                };
                let end = session.run(&mut stop).await;
                stats.connected.store(false, Ordering::Relaxed);
                match end {
                    End::Stop => return,
                    End::Lost(reason) => {
                        bump(&stats.disconnects);
                        (reason, session.healthy)
                    }
                }
            }
            Ok(Err(reason)) => (reason, false),
            Err(_) => ("connect timed out".to_string(), false),
        };
        if healthy {
            backoff = config.backoff_min.max(MIN_BACKOFF);
        }
        let delay = backoff;
        backoff = next_backoff(backoff, config.backoff_max);
        tracing::warn!(
            url = %config.url,
            %reason,
            retry_in_ms = delay.as_millis() as u64,
            "okx feed disconnected"
        );
        let status = FeedStatus::Disconnected {
            reason,
            retry_in: delay,
        };
        if out.send(FeedItem::Status(status)).await.is_err() {
            return;
        }
        tokio::select! {
            biased;
            _ = stop.changed() => return,
            _ = out.closed() => return,
            _ = tokio::time::sleep(delay) => {}
        }
    }
}

/// Opens the WebSocket; TLS (rustls with the ring provider and the system's root certificates)
/// only for `wss://`, set up on first use.
async fn open(url: &str, tls: &mut Option<Connector>) -> Result<Ws, String> {
    let connector = if url.starts_with("wss://") {
        if tls.is_none() {
            *tls = Some(tls_connector()?);
        }
        tls.clone()
    } else {
        None
    };
    let ws_config = WebSocketConfig::default()
        .max_message_size(Some(MAX_MESSAGE))
        .max_frame_size(Some(MAX_MESSAGE));
    let (ws, _response) =
        tokio_tungstenite::connect_async_tls_with_config(url, Some(ws_config), true, connector)
            .await
            .map_err(|e| format!("connect to {url}: {e}"))?;
    Ok(ws)
}

fn tls_connector() -> Result<Connector, String> {
    let found = rustls_native_certs::load_native_certs();
    for e in &found.errors {
        tracing::warn!(error = %e, "cannot load a root certificate");
    }
    let mut roots = rustls::RootCertStore::empty();
    let (added, _ignored) = roots.add_parsable_certificates(found.certs);
    if added == 0 {
        return Err("no root certificates found on this system (install ca-certificates)".into());
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("tls setup: {e}"))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Connector::Rustls(Arc::new(config)))
}

/// A fresh book state, awaiting its snapshot, for each book subscription.
fn book_states(config: &OkxConfig) -> HashMap<Subscription, BookSync> {
    config
        .subscriptions
        .iter()
        .filter(|s| matches!(s.channel, Channel::Books | Channel::Books5))
        .map(|s| {
            let sync = BookSync::new(s.inst_id.clone(), s.channel, config.book_depth);
            (s.clone(), sync)
        })
        .collect()
}

/// How a session ended.
enum End {
    /// Stop asked for, or nobody is listening any more.
    Stop,
    /// The connection is gone (or must be given up); reconnect.
    Lost(String),
}

/// One open connection.
struct Session<'a> {
    config: &'a OkxConfig,
    out: &'a mpsc::Sender<FeedItem>,
    stats: &'a FeedStats,
    ws: Ws,
    books: HashMap<Subscription, BookSync>,
    /// Data (or a subscription) arrived on this connection, so backoff starts over.
    healthy: bool,
}

impl Session<'_> {
    async fn run(&mut self, stop: &mut watch::Receiver<bool>) -> End {
        let config = self.config;
        for batch in config.subscriptions.chunks(SUBSCRIBE_BATCH) {
            if let Err(end) = self.send_text(subscribe_request(batch)).await {
                return end;
            }
        }
        let idle = tokio::time::sleep(config.ping_after);
        tokio::pin!(idle);
        let mut awaiting_pong = false;
        loop {
            tokio::select! {
                biased;
                _ = stop.changed() => {
                    let _ = self.ws.close(None).await;
                    return End::Stop;
                }
                _ = self.out.closed() => {
                    let _ = self.ws.close(None).await;
                    return End::Stop;
                }
                _ = &mut idle => {
                    if awaiting_pong {
                        return End::Lost(format!(
                            "no pong within {} ms of a ping",
                            config.pong_timeout.as_millis()
                        ));
                    }
                    if let Err(end) = self.send_text("ping".to_string()).await {
                        return end;
                    }
                    bump(&self.stats.pings);
                    awaiting_pong = true;
                    idle.as_mut().reset(Instant::now() + config.pong_timeout);
                }
                msg = self.ws.next() => {
                    let msg = match msg {
                        None => return End::Lost("connection closed".into()),
                        Some(Err(e)) => return End::Lost(format!("connection failed: {e}")),
                        Some(Ok(msg)) => msg,
                    };
                    awaiting_pong = false;
                    idle.as_mut().reset(Instant::now() + config.ping_after);
                    let outcome = match msg {
                        Message::Text(text) => self.on_text(text.as_str()).await,
                        Message::Binary(bytes) => {
                            bump(&self.stats.messages);
                            self.parse_error(&format!("binary frame of {} bytes", bytes.len()), "");
                            Ok(())
                        }
                        Message::Close(frame) => {
                            let why = frame
                                .map(|f| format!(": {} {}", f.code, f.reason))
                                .unwrap_or_default();
                            Err(End::Lost(format!("closed by the server{why}")))
                        }
                        // tungstenite answers pings itself.
                        Message::Ping(_) | Message::Pong(_) | Message::Frame(_) => Ok(()),
                    };
                    if let Err(end) = outcome {
                        return end;
                    }
                }
            }
        }
    }

    async fn on_text(&mut self, text: &str) -> Result<(), End> {
        bump(&self.stats.messages);
        let frame = match parse_frame(text) {
            Ok(frame) => frame,
            Err(e) => {
                self.parse_error(&e.to_string(), text);
                return Ok(());
            }
        };
        match frame {
            Frame::Pong => {
                bump(&self.stats.pongs);
            }
            Frame::Subscribed(sub) => {
                self.healthy = true;
                tracing::debug!(subscription = %sub, "okx subscribed");
                self.emit(FeedItem::Status(FeedStatus::Subscribed(sub)))
                    .await?;
            }
            Frame::Unsubscribed(sub) => {
                tracing::debug!(subscription = %sub, "okx unsubscribed");
            }
            Frame::Error { code, msg } => {
                bump(&self.stats.venue_errors);
                tracing::warn!(%code, %msg, "okx refused a request");
                self.emit(FeedItem::Status(FeedStatus::VenueError { code, msg }))
                    .await?;
            }
            Frame::Notice { event, code, msg } => {
                tracing::info!(%event, %code, %msg, "okx notice");
                if code == UPGRADE_NOTICE {
                    return Err(End::Lost(format!("okx asked to reconnect: {msg}")));
                }
            }
            Frame::Ignored(what) => {
                bump(&self.stats.ignored);
                tracing::debug!(%what, "okx frame ignored");
            }
            Frame::Quotes(quotes) => {
                self.healthy = true;
                for quote in quotes {
                    self.emit(FeedItem::Event(MarketEvent::Quote(quote)))
                        .await?;
                }
            }
            Frame::Trades(trades) => {
                self.healthy = true;
                for trade in trades {
                    self.emit(FeedItem::Event(MarketEvent::Trade(trade)))
                        .await?;
                }
            }
            Frame::Books(messages) => {
                self.healthy = true;
                for message in &messages {
                    self.on_book(message).await?;
                }
            }
        }
        Ok(())
    }

    async fn on_book(&mut self, msg: &BookMessage) -> Result<(), End> {
        let key = Subscription::new(msg.channel, msg.symbol.clone());
        // Only subscribed books are kept, so what the server sends cannot grow the map.
        let Some(sync) = self.books.get_mut(&key) else {
            bump(&self.stats.ignored);
            tracing::debug!(subscription = %key, "okx book push for an unsubscribed instrument");
            return Ok(());
        };
        let step = sync.on_message(msg);
        match step {
            BookStep::Applied { book, quote } => {
                if let Some(quote) = quote {
                    self.emit(FeedItem::Event(MarketEvent::Quote(quote)))
                        .await?;
                }
                if let Some(book) = book {
                    self.emit(FeedItem::Event(MarketEvent::Book(book))).await?;
                }
            }
            BookStep::Skipped => {
                bump(&self.stats.skipped);
            }
            BookStep::StillCrossed => {}
            BookStep::Crossed(issue) => {
                tracing::warn!(subscription = %key, ?issue, "okx book snapshot is crossed");
                self.emit(FeedItem::Issue(issue)).await?;
            }
            BookStep::Resync(issue) => {
                let n = bump(&self.stats.resyncs);
                tracing::warn!(
                    subscription = %key,
                    ?issue,
                    resyncs = n,
                    "okx book lost continuity: resubscribing"
                );
                self.emit(FeedItem::Issue(issue)).await?;
                self.emit(FeedItem::Status(FeedStatus::Resyncing(key.clone())))
                    .await?;
                let one = std::slice::from_ref(&key);
                self.send_text(unsubscribe_request(one)).await?;
                self.send_text(subscribe_request(one)).await?;
            }
        }
        Ok(())
    }

    async fn emit(&self, item: FeedItem) -> Result<(), End> {
        match &item {
            FeedItem::Event(_) => bump(&self.stats.events),
            FeedItem::Issue(_) => bump(&self.stats.issues),
            FeedItem::Status(_) => 0,
        };
        self.out.send(item).await.map_err(|_| End::Stop)
    }

    async fn send_text(&mut self, text: String) -> Result<(), End> {
        self.ws
            .send(Message::text(text))
            .await
            .map_err(|e| End::Lost(format!("send failed: {e}")))
    }

    fn parse_error(&self, error: &str, frame: &str) {
        let n = bump(&self.stats.parse_errors);
        // A stream of garbage must not become a stream of log lines.
        if n <= 10 || n.is_power_of_two() {
            tracing::warn!(
                %error,
                frame = preview(frame, 200),
                parse_errors = n,
                "okx frame dropped"
            );
        }
    }
}

#[cfg(test)]
mod tests {
    //! Pure tests on OKX's documented messages, then the feed against a WebSocket server on
    //! 127.0.0.1 that replays OKX-format frames built from them. Every wait has a timeout.

    use super::*;
    use serde_json::{Value, json};
    use tokio::net::TcpListener;

    const TICKERS: &str = include_str!("okx_samples/ws_tickers.json");
    const TRADES: &str = include_str!("okx_samples/ws_trades.json");
    const BOOKS_SNAPSHOT: &str = include_str!("okx_samples/ws_books_snapshot.json");
    const BOOKS_UPDATE: &str = include_str!("okx_samples/ws_books_update.json");
    const BBO_TBT: &str = include_str!("okx_samples/ws_bbo_tbt.json");

    /// 1597026383085 ms, the samples' time.
    const SAMPLE_TS: Timestamp = 1_597_026_383_085_000_000;

    /// Long enough for anything on loopback, short enough that a broken test fails quickly.
    const WAIT: Duration = Duration::from_secs(5);

    fn d(s: &str) -> Decimal {
        Decimal::from_str(s).unwrap()
    }

    fn lv(price: &str, size: &str) -> BookLevel {
        BookLevel {
            price: d(price),
            size: d(size),
        }
    }

    fn btc() -> Arc<str> {
        "BTC-USDT".into()
    }

    /// A `books` frame on the sample snapshot's model, with these levels and ids.
    fn books_frame(
        action: &str,
        bids: &[(&str, &str)],
        asks: &[(&str, &str)],
        prev: i64,
        seq: i64,
    ) -> String {
        let mut frame: Value = serde_json::from_str(BOOKS_SNAPSHOT).unwrap();
        let level = |(px, sz): &(&str, &str)| json!([px, sz, "0", "1"]);
        frame["action"] = json!(action);
        frame["data"][0]["bids"] = Value::Array(bids.iter().map(level).collect());
        frame["data"][0]["asks"] = Value::Array(asks.iter().map(level).collect());
        frame["data"][0]["prevSeqId"] = json!(prev);
        frame["data"][0]["seqId"] = json!(seq);
        frame.to_string()
    }

    /// The update of test (a): removes the best ask, adds one just above the best bid's price,
    /// resizes the best bid and adds a bid level.
    fn sample_update() -> String {
        books_frame(
            "update",
            &[("8476.97", "200"), ("8476.5", "4")],
            &[("8476.98", "0"), ("8476.99", "3")],
            123456,
            123457,
        )
    }

    fn ticker_frame(bid: &str) -> String {
        let mut frame: Value = serde_json::from_str(TICKERS).unwrap();
        frame["data"][0]["bidPx"] = json!(bid);
        frame.to_string()
    }

    fn book_messages(text: &str) -> Vec<BookMessage> {
        match parse_frame(text).unwrap() {
            Frame::Books(books) => books,
            other => panic!("not a book frame: {other:?}"),
        }
    }

    fn one_book(text: &str) -> BookMessage {
        let mut books = book_messages(text);
        assert_eq!(books.len(), 1);
        books.remove(0)
    }

    // -- parsing -------------------------------------------------------------------------------

    #[test]
    fn parses_the_tickers_sample_exactly() {
        let Frame::Quotes(quotes) = parse_frame(TICKERS).unwrap() else {
            panic!("not quotes");
        };
        assert_eq!(
            quotes,
            vec![Quote {
                symbol: btc(),
                bid: d("8888.88"),
                bid_size: d("5"),
                ask: d("9999.99"),
                ask_size: d("11"),
                ts: SAMPLE_TS,
            }]
        );
        // Exact: the printed scale survives.
        assert_eq!(quotes[0].bid.to_string(), "8888.88");
    }

    #[test]
    fn parses_the_trades_sample_exactly() {
        let Frame::Trades(trades) = parse_frame(TRADES).unwrap() else {
            panic!("not trades");
        };
        assert_eq!(
            trades,
            vec![Trade {
                symbol: "BTC-USD".into(),
                price: d("42219.9"),
                size: d("0.12060306"),
                aggressor: Side::Buy,
                ts: 1_630_048_897_897_000_000,
            }]
        );
        assert_eq!(trades[0].size.to_string(), "0.12060306");
    }

    #[test]
    fn parses_the_bbo_sample() {
        assert_eq!(
            parse_frame(BBO_TBT).unwrap(),
            Frame::Quotes(vec![Quote {
                symbol: btc(),
                bid: d("8476.97"),
                bid_size: d("256"),
                ask: d("8476.98"),
                ask_size: d("415"),
                ts: SAMPLE_TS,
            }])
        );
    }

    #[test]
    fn parses_the_books_samples() {
        let snapshot = one_book(BOOKS_SNAPSHOT);
        assert_eq!(snapshot.channel, Channel::Books);
        assert_eq!(snapshot.action, BookAction::Snapshot);
        assert_eq!(
            (snapshot.prev_seq_id, snapshot.seq_id),
            (Some(-1), Some(123456))
        );
        assert_eq!(snapshot.bids.len(), 8);
        assert_eq!(snapshot.asks.len(), 8);
        assert_eq!(snapshot.bids[0], lv("8476.97", "256"));
        assert_eq!(snapshot.asks[7], lv("8506.96", "100"));
        assert_eq!(snapshot.ts, SAMPLE_TS);

        let update = one_book(BOOKS_UPDATE);
        assert_eq!(update.action, BookAction::Update);
        assert_eq!(
            (update.prev_seq_id, update.seq_id),
            (Some(123456), Some(123457))
        );
    }

    #[test]
    fn books5_pushes_are_snapshots_without_ids() {
        let frame = json!({
            "arg": {"channel": "books5", "instId": "ETH-USDT"},
            "data": [{"asks": [["2000.1", "1.5", "0", "3"]], "bids": [["2000", "2", "0", "1"]],
                      "instId": "ETH-USDT", "ts": "1"}]
        })
        .to_string();
        let book = one_book(&frame);
        assert_eq!(book.action, BookAction::Snapshot);
        assert_eq!(book.seq_id, None);
        assert_eq!(book.ts, 1_000_000);
    }

    #[test]
    fn parses_events_and_pong() {
        let cases: &[(&str, Frame)] = &[
            ("pong", Frame::Pong),
            (
                r#"{"event":"subscribe","arg":{"channel":"books","instId":"BTC-USDT"},"connId":"a4d3ae55"}"#,
                Frame::Subscribed(Subscription::new(Channel::Books, "BTC-USDT")),
            ),
            (
                r#"{"event":"unsubscribe","arg":{"channel":"tickers","instId":"LTC-USDT"},"connId":"a4d3ae55"}"#,
                Frame::Unsubscribed(Subscription::new(Channel::Tickers, "LTC-USDT")),
            ),
            (
                r#"{"event":"error","code":"60012","msg":"Invalid request: {\"op\": \"subscribe\"}","connId":"a4d3ae55"}"#,
                Frame::Error {
                    code: "60012".into(),
                    msg: r#"Invalid request: {"op": "subscribe"}"#.into(),
                },
            ),
            (
                r#"{"event":"notice","code":"64008","msg":"The connection will soon be closed for a service upgrade. Please reconnect.","connId":"a4d3ae55"}"#,
                Frame::Notice {
                    event: "notice".into(),
                    code: "64008".into(),
                    msg: "The connection will soon be closed for a service upgrade. Please reconnect.".into(),
                },
            ),
            (
                r#"{"event":"subscribe","arg":{"channel":"candle1m","instId":"BTC-USDT"},"connId":"1"}"#,
                Frame::Ignored("subscribe of channel candle1m".into()),
            ),
            (
                r#"{"arg":{"channel":"candle1D","instId":"BTC-USDT"},"data":[["1597026383085","8533.02","8553.74","8527.17","8548.26","45247","529.5858061","5529.5858061","1"]]}"#,
                Frame::Ignored("channel candle1D".into()),
            ),
            (
                r#"{"arg":{"channel":"tickers","instId":"NEW-USDT"},"data":[{"instId":"NEW-USDT","bidPx":"","bidSz":"","askPx":"1","askSz":"2","ts":"5"}]}"#,
                Frame::Quotes(vec![]),
            ),
        ];
        for (text, want) in cases {
            assert_eq!(&parse_frame(text).unwrap(), want, "{text}");
        }
    }

    #[test]
    fn malformed_frames_are_errors_not_panics() {
        let ticker = |field: &str, value: &str| {
            let mut frame: Value = serde_json::from_str(TICKERS).unwrap();
            frame["data"][0][field] = json!(value);
            frame.to_string()
        };
        let trade = |field: &str, value: &str| {
            let mut frame: Value = serde_json::from_str(TRADES).unwrap();
            frame["data"][0][field] = json!(value);
            frame.to_string()
        };
        let mut no_seq: Value = serde_json::from_str(BOOKS_UPDATE).unwrap();
        no_seq["data"][0]
            .as_object_mut()
            .unwrap()
            .remove("prevSeqId");
        let mut no_action: Value = serde_json::from_str(BOOKS_UPDATE).unwrap();
        no_action.as_object_mut().unwrap().remove("action");
        let mut short_level: Value = serde_json::from_str(BOOKS_UPDATE).unwrap();
        short_level["data"][0]["asks"][0] = json!(["8476.98"]);
        let mut numeric_level: Value = serde_json::from_str(BOOKS_UPDATE).unwrap();
        numeric_level["data"][0]["asks"][0] = json!([8476.98, 415]);

        let cases = [
            String::new(),
            "ping".into(),
            "garbage{".into(),
            "[]".into(),
            "{}".into(),
            r#"{"arg":{"channel":"tickers"},"data":[]}"#.into(),
            r#"{"arg":{"channel":"tickers","instId":"BTC-USDT"}}"#.into(),
            ticker("bidPx", "abc"),
            ticker("bidPx", "-1"),
            ticker("bidPx", "0"),
            ticker("askSz", "-0.5"),
            ticker("bidPx", "1e5"),
            ticker("ts", "-1"),
            ticker("ts", "99999999999999999999"),
            ticker("ts", "18446744073709552"), // overflows u64 nanoseconds
            trade("side", "sideways"),
            trade("px", "79228162514264337593543950336"), // beyond Decimal
            no_seq.to_string(),
            no_action.to_string(),
            short_level.to_string(),
            numeric_level.to_string(),
            BOOKS_UPDATE.replace("\"update\"", "\"replace\""),
        ];
        for text in &cases {
            assert!(parse_frame(text).is_err(), "accepted: {text}");
        }
    }

    #[test]
    fn millisecond_timestamps_become_nanoseconds() {
        assert_eq!(millis("ts", "0").unwrap(), 0);
        assert_eq!(millis("ts", "1597026383085").unwrap(), SAMPLE_TS);
        assert_eq!(
            millis("ts", "18446744073709").unwrap(),
            18_446_744_073_709_000_000
        );
        assert!(millis("ts", "18446744073710").is_err());
        assert!(millis("ts", "").is_err());
        assert!(millis("ts", "1.5").is_err());
    }

    #[test]
    fn a_negative_zero_size_is_zero() {
        assert_eq!(size("sz", "-0").unwrap(), Decimal::ZERO);
        assert!(!size("sz", "-0.0").unwrap().is_sign_negative());
    }

    #[test]
    fn subscriptions_round_trip_and_build_requests() {
        for text in [
            "tickers:BTC-USDT",
            "books:ETH-USDT-SWAP",
            "bbo-tbt:X",
            "books5:A_B",
        ] {
            let sub: Subscription = text.parse().unwrap();
            assert_eq!(sub.to_string(), text);
        }
        for text in [
            "",
            "tickers",
            "tickers:",
            "candle1m:BTC-USDT",
            "books:BTC USDT",
            ":BTC",
        ] {
            assert!(text.parse::<Subscription>().is_err(), "{text}");
        }
        let subs = [
            Subscription::new(Channel::Tickers, "BTC-USDT"),
            Subscription::new(Channel::Books, "ETH-USDT"),
        ];
        let request: Value = serde_json::from_str(&subscribe_request(&subs)).unwrap();
        assert_eq!(
            request,
            json!({"op": "subscribe", "args": [
                {"channel": "tickers", "instId": "BTC-USDT"},
                {"channel": "books", "instId": "ETH-USDT"}
            ]})
        );
        let request: Value = serde_json::from_str(&unsubscribe_request(&subs[1..])).unwrap();
        assert_eq!(request["op"], "unsubscribe");
    }

    #[test]
    fn backoff_doubles_up_to_the_cap() {
        let max = Duration::from_secs(30);
        let mut delay = Duration::from_millis(500);
        let mut seen = vec![];
        for _ in 0..9 {
            seen.push(delay.as_millis());
            delay = next_backoff(delay, max);
        }
        assert_eq!(
            seen,
            [500, 1000, 2000, 4000, 8000, 16000, 30000, 30000, 30000]
        );
        assert_eq!(next_backoff(Duration::ZERO, max), MIN_BACKOFF);
        assert_eq!(
            next_backoff(Duration::from_secs(1), Duration::ZERO),
            MIN_BACKOFF
        );
    }

    #[test]
    fn tls_setup_does_not_depend_on_a_process_wide_provider() {
        // rustls panics when no crypto provider can be chosen; the feed names ring itself, so
        // building the connector either works or says that root certificates are missing.
        if let Err(e) = tls_connector() {
            assert!(e.contains("root certificates"), "{e}");
        }
    }

    // -- the book state machine ---------------------------------------------------------------

    #[test]
    fn book_sync_snapshot_then_update_gives_hand_computed_levels() {
        let mut sync = BookSync::new(btc(), Channel::Books, 3);
        let BookStep::Applied { book, quote } = sync.on_message(&one_book(BOOKS_SNAPSHOT)) else {
            panic!("snapshot not applied");
        };
        let book = book.unwrap();
        assert_eq!(
            book.bids,
            vec![
                lv("8476.97", "256"),
                lv("8475.55", "101"),
                lv("8475.54", "100")
            ]
        );
        assert_eq!(
            book.asks,
            vec![lv("8476.98", "415"), lv("8477", "7"), lv("8477.34", "85")]
        );
        assert_eq!(quote.unwrap().ask, d("8476.98"));
        assert_eq!(
            sync.state(),
            SyncState::Synced {
                seq_id: Some(123456)
            }
        );

        let BookStep::Applied { book, quote } = sync.on_message(&one_book(&sample_update())) else {
            panic!("update not applied");
        };
        let book = book.unwrap();
        assert_eq!(
            book.bids,
            vec![
                lv("8476.97", "200"),
                lv("8476.5", "4"),
                lv("8475.55", "101")
            ]
        );
        assert_eq!(
            book.asks,
            vec![lv("8476.99", "3"), lv("8477", "7"), lv("8477.34", "85")]
        );
        assert_eq!(
            quote,
            Some(Quote {
                symbol: btc(),
                bid: d("8476.97"),
                bid_size: d("200"),
                ask: d("8476.99"),
                ask_size: d("3"),
                ts: SAMPLE_TS,
            })
        );
        assert_eq!(
            sync.state(),
            SyncState::Synced {
                seq_id: Some(123457)
            }
        );
        assert_eq!(sync.book().len(Side::Sell), 8); // one removed, one added
    }

    #[test]
    fn book_sync_publishes_only_changes() {
        let mut sync = BookSync::new(btc(), Channel::Books, 2);
        sync.on_message(&one_book(BOOKS_SNAPSHOT));
        // The sample update restates the snapshot's levels: nothing changed.
        assert_eq!(
            sync.on_message(&one_book(BOOKS_UPDATE)),
            BookStep::Applied {
                book: None,
                quote: None
            }
        );
        // A change below the top two levels changes neither.
        let deep = books_frame("update", &[("8446", "1")], &[], 123457, 123458);
        assert_eq!(
            sync.on_message(&one_book(&deep)),
            BookStep::Applied {
                book: None,
                quote: None
            }
        );
        // A change at the second level changes the book, not the quote.
        let second = books_frame("update", &[("8475.55", "5")], &[], 123458, 123459);
        let BookStep::Applied {
            book: Some(_),
            quote: None,
        } = sync.on_message(&one_book(&second))
        else {
            panic!("second level change");
        };
        // A heartbeat (no levels, prevSeqId == seqId) is accepted and moves time on.
        let heartbeat = books_frame("update", &[], &[], 123459, 123459);
        assert_eq!(
            sync.on_message(&one_book(&heartbeat)),
            BookStep::Applied {
                book: None,
                quote: None
            }
        );
        assert_eq!(
            sync.state(),
            SyncState::Synced {
                seq_id: Some(123459)
            }
        );
    }

    #[test]
    fn book_sync_gap_resyncs_then_skips_until_snapshot() {
        let mut sync = BookSync::new(btc(), Channel::Books, 5);
        // An update before any snapshot is skipped.
        assert_eq!(sync.on_message(&one_book(BOOKS_UPDATE)), BookStep::Skipped);
        sync.on_message(&one_book(BOOKS_SNAPSHOT));
        let gap = books_frame("update", &[("8476", "1")], &[], 123999, 124000);
        assert_eq!(
            sync.on_message(&one_book(&gap)),
            BookStep::Resync(QualityIssue::SequenceGap {
                symbol: btc(),
                expected: 123456,
                got: 123999
            })
        );
        assert_eq!(sync.state(), SyncState::AwaitingSnapshot);
        // What was in flight before the resubscription took effect is dropped.
        let stale = books_frame("update", &[("8476", "2")], &[], 124000, 124001);
        assert_eq!(sync.on_message(&one_book(&stale)), BookStep::Skipped);
        // The fresh snapshot is published even where it equals what was published before.
        let BookStep::Applied {
            book: Some(book),
            quote: Some(_),
        } = sync.on_message(&one_book(BOOKS_SNAPSHOT))
        else {
            panic!("fresh snapshot not published");
        };
        assert_eq!(book.bids.len(), 5);
    }

    #[test]
    fn book_sync_seq_reset_is_continuous_when_prev_matches() {
        // OKX may reset seqId during maintenance: the new seqId is smaller, but prevSeqId still
        // names the last one.
        let mut sync = BookSync::new(btc(), Channel::Books, 5);
        sync.on_message(&one_book(BOOKS_SNAPSHOT));
        let reset = books_frame("update", &[("8476", "1")], &[], 123456, 3);
        assert!(matches!(
            sync.on_message(&one_book(&reset)),
            BookStep::Applied { .. }
        ));
        let next = books_frame("update", &[("8476", "2")], &[], 3, 4);
        assert!(matches!(
            sync.on_message(&one_book(&next)),
            BookStep::Applied { .. }
        ));
    }

    #[test]
    fn book_sync_crossing_update_resyncs() {
        let mut sync = BookSync::new(btc(), Channel::Books, 5);
        sync.on_message(&one_book(BOOKS_SNAPSHOT));
        let locking = books_frame("update", &[("8476.98", "1")], &[], 123456, 123457);
        assert_eq!(
            sync.on_message(&one_book(&locking)),
            BookStep::Resync(QualityIssue::CrossedBook {
                symbol: btc(),
                bid: d("8476.98"),
                ask: d("8476.98")
            })
        );
        assert_eq!(sync.state(), SyncState::AwaitingSnapshot);
    }

    #[test]
    fn book_sync_crossed_snapshot_is_reported_once_and_withheld() {
        let mut sync = BookSync::new(btc(), Channel::Books, 5);
        let crossed = books_frame("snapshot", &[("101", "1")], &[("100", "1")], -1, 10);
        assert_eq!(
            sync.on_message(&one_book(&crossed)),
            BookStep::Crossed(QualityIssue::CrossedBook {
                symbol: btc(),
                bid: d("101"),
                ask: d("100")
            })
        );
        let still = books_frame("update", &[("101", "2")], &[], 10, 11);
        assert_eq!(sync.on_message(&one_book(&still)), BookStep::StillCrossed);
        let uncross = books_frame("update", &[("101", "0"), ("99", "1")], &[], 11, 12);
        let BookStep::Applied {
            book: Some(book),
            quote: Some(quote),
        } = sync.on_message(&one_book(&uncross))
        else {
            panic!("uncrossed book not published");
        };
        assert_eq!(book.bids, vec![lv("99", "1")]);
        assert_eq!((quote.bid, quote.ask), (d("99"), d("100")));
    }

    #[test]
    fn book_sync_books5_has_no_continuity_to_check() {
        let mut sync = BookSync::new(btc(), Channel::Books5, 5);
        for (i, bid) in ["100", "100", "101"].into_iter().enumerate() {
            let mut msg = one_book(BOOKS_SNAPSHOT);
            msg.channel = Channel::Books5;
            msg.seq_id = None;
            msg.prev_seq_id = None;
            msg.bids = vec![lv(bid, "1")];
            msg.asks = vec![lv("102", "1")];
            let step = sync.on_message(&msg);
            match i {
                1 => assert_eq!(
                    step,
                    BookStep::Applied {
                        book: None,
                        quote: None
                    }
                ),
                _ => assert!(matches!(
                    step,
                    BookStep::Applied {
                        book: Some(_),
                        quote: Some(_)
                    }
                )),
            }
        }
    }

    // -- the feed against a local server ------------------------------------------------------

    type ServerWs = WebSocketStream<TcpStream>;

    /// A WebSocket server on 127.0.0.1 that hands each accepted connection to the test.
    struct Server {
        url: String,
        conns: mpsc::Receiver<ServerWs>,
        accept: JoinHandle<()>,
    }

    impl Server {
        async fn start() -> Server {
            let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
            let url = format!("ws://{}", listener.local_addr().unwrap());
            let (tx, conns) = mpsc::channel(8);
            let accept = tokio::spawn(async move {
                while let Ok((tcp, _)) = listener.accept().await {
                    if let Ok(ws) = tokio_tungstenite::accept_async(tcp).await
                        && tx.send(ws).await.is_err()
                    {
                        return;
                    }
                }
            });
            Server { url, conns, accept }
        }

        async fn next_conn(&mut self) -> ServerWs {
            tokio::time::timeout(WAIT, self.conns.recv())
                .await
                .expect("the client connects")
                .expect("the server is running")
        }
    }

    impl Drop for Server {
        fn drop(&mut self) {
            self.accept.abort();
        }
    }

    fn test_config(url: &str, subs: &[&str]) -> OkxConfig {
        OkxConfig {
            url: url.to_string(),
            subscriptions: subs.iter().map(|s| s.parse().unwrap()).collect(),
            book_depth: 3,
            ping_after: Duration::from_secs(60),
            pong_timeout: Duration::from_secs(60),
            connect_timeout: WAIT,
            backoff_min: Duration::from_millis(10),
            backoff_max: Duration::from_millis(100),
        }
    }

    fn start(config: OkxConfig) -> (OkxFeed, mpsc::Receiver<FeedItem>) {
        let (tx, rx) = mpsc::channel(256);
        (OkxFeed::spawn(config, tx), rx)
    }

    /// The next text frame the client sent (WebSocket-level pings and pongs skipped).
    async fn read_text(ws: &mut ServerWs) -> String {
        loop {
            let msg = tokio::time::timeout(WAIT, ws.next())
                .await
                .expect("the client sends a frame")
                .expect("the connection is open")
                .expect("the frame is readable");
            match msg {
                Message::Text(text) => return text.as_str().to_string(),
                Message::Ping(_) | Message::Pong(_) => continue,
                other => panic!("unexpected frame from the client: {other:?}"),
            }
        }
    }

    /// Reads a request and checks its op and arguments (as `channel:instId`).
    async fn expect_request(ws: &mut ServerWs, op: &str, subs: &[&str]) {
        let text = read_text(ws).await;
        let request: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(request["op"], op, "{text}");
        let args: Vec<String> = request["args"]
            .as_array()
            .unwrap()
            .iter()
            .map(|a| {
                format!(
                    "{}:{}",
                    a["channel"].as_str().unwrap(),
                    a["instId"].as_str().unwrap()
                )
            })
            .collect();
        assert_eq!(args, subs, "{text}");
    }

    async fn send(ws: &mut ServerWs, text: &str) {
        ws.send(Message::text(text.to_string())).await.unwrap();
    }

    fn ack(sub: &str) -> String {
        let (channel, inst) = sub.split_once(':').unwrap();
        json!({"event": "subscribe", "arg": {"channel": channel, "instId": inst}, "connId": "t"})
            .to_string()
    }

    /// Receives items until `pick` returns something; every item passed over is returned too.
    async fn wait_for<T>(
        rx: &mut mpsc::Receiver<FeedItem>,
        mut pick: impl FnMut(&FeedItem) -> Option<T>,
    ) -> (T, Vec<FeedItem>) {
        let mut seen = Vec::new();
        tokio::time::timeout(WAIT, async {
            loop {
                let item = rx.recv().await.expect("the feed is running");
                if let Some(found) = pick(&item) {
                    return (found, seen);
                }
                seen.push(item);
            }
        })
        .await
        .expect("the awaited item arrives")
    }

    fn book_of(item: &FeedItem) -> Option<Book> {
        match item {
            FeedItem::Event(MarketEvent::Book(book)) => Some(book.clone()),
            _ => None,
        }
    }

    fn quote_of(item: &FeedItem) -> Option<Quote> {
        match item {
            FeedItem::Event(MarketEvent::Quote(quote)) => Some(quote.clone()),
            _ => None,
        }
    }

    // (a)
    #[tokio::test]
    async fn feed_book_snapshot_and_update_give_hand_computed_top_and_quote() {
        let mut server = Server::start().await;
        let (feed, mut rx) = start(test_config(&server.url, &["books:BTC-USDT"]));
        let mut ws = server.next_conn().await;
        expect_request(&mut ws, "subscribe", &["books:BTC-USDT"]).await;
        send(&mut ws, &ack("books:BTC-USDT")).await;
        send(&mut ws, BOOKS_SNAPSHOT).await;

        let (quote, seen) = wait_for(&mut rx, quote_of).await;
        assert!(seen.contains(&FeedItem::Status(FeedStatus::Connected)));
        assert!(seen.contains(&FeedItem::Status(FeedStatus::Subscribed(
            Subscription::new(Channel::Books, "BTC-USDT")
        ))));
        assert_eq!(
            (quote.bid, quote.bid_size, quote.ask, quote.ask_size),
            (d("8476.97"), d("256"), d("8476.98"), d("415"))
        );
        let (book, _) = wait_for(&mut rx, book_of).await;
        assert_eq!(
            book.asks,
            vec![lv("8476.98", "415"), lv("8477", "7"), lv("8477.34", "85")]
        );

        send(&mut ws, &sample_update()).await;
        let (quote, _) = wait_for(&mut rx, quote_of).await;
        assert_eq!(
            quote,
            Quote {
                symbol: btc(),
                bid: d("8476.97"),
                bid_size: d("200"),
                ask: d("8476.99"),
                ask_size: d("3"),
                ts: SAMPLE_TS,
            }
        );
        let (book, _) = wait_for(&mut rx, book_of).await;
        assert_eq!(
            book,
            Book {
                symbol: btc(),
                bids: vec![
                    lv("8476.97", "200"),
                    lv("8476.5", "4"),
                    lv("8475.55", "101")
                ],
                asks: vec![lv("8476.99", "3"), lv("8477", "7"), lv("8477.34", "85")],
                ts: SAMPLE_TS,
            }
        );
        let stats = feed.stats();
        assert_eq!(
            (
                stats.connects,
                stats.messages,
                stats.parse_errors,
                stats.events
            ),
            (1, 3, 0, 4)
        );
        assert!(stats.connected);
        feed.stop().await;
    }

    // (b)
    #[tokio::test]
    async fn feed_gap_resubscribes_that_channel_and_applies_the_fresh_snapshot() {
        let mut server = Server::start().await;
        let subs = ["tickers:BTC-USDT", "books:BTC-USDT"];
        let (feed, mut rx) = start(test_config(&server.url, &subs));
        let mut ws = server.next_conn().await;
        expect_request(&mut ws, "subscribe", &subs).await;
        send(&mut ws, BOOKS_SNAPSHOT).await;
        wait_for(&mut rx, book_of).await;

        send(
            &mut ws,
            &books_frame("update", &[("8476", "1")], &[], 123999, 124000),
        )
        .await;
        let (issue, _) = wait_for(&mut rx, |item| match item {
            FeedItem::Issue(issue) => Some(issue.clone()),
            _ => None,
        })
        .await;
        assert_eq!(
            issue,
            QualityIssue::SequenceGap {
                symbol: btc(),
                expected: 123456,
                got: 123999
            }
        );
        let books = Subscription::new(Channel::Books, "BTC-USDT");
        let (status, _) = wait_for(&mut rx, |item| match item {
            FeedItem::Status(status) => Some(status.clone()),
            _ => None,
        })
        .await;
        assert_eq!(status, FeedStatus::Resyncing(books));

        // Only the books subscription is renewed.
        expect_request(&mut ws, "unsubscribe", &["books:BTC-USDT"]).await;
        expect_request(&mut ws, "subscribe", &["books:BTC-USDT"]).await;

        // An update still in flight is skipped; the fresh snapshot is applied.
        send(
            &mut ws,
            &books_frame("update", &[("8476", "2")], &[], 124000, 124001),
        )
        .await;
        send(
            &mut ws,
            &books_frame(
                "snapshot",
                &[("8400", "1.5"), ("8399", "2")],
                &[("8401", "0.25")],
                -1,
                500,
            ),
        )
        .await;
        let (book, seen) = wait_for(&mut rx, book_of).await;
        assert_eq!(book.bids, vec![lv("8400", "1.5"), lv("8399", "2")]);
        assert_eq!(book.asks, vec![lv("8401", "0.25")]);
        assert!(
            seen.iter().all(|item| quote_of(item).is_some()),
            "only the new quote before the book: {seen:?}"
        );

        // And it continues from the new snapshot's seqId.
        send(
            &mut ws,
            &books_frame("update", &[("8400.5", "1")], &[], 500, 501),
        )
        .await;
        let (book, _) = wait_for(&mut rx, book_of).await;
        assert_eq!(book.bids[0], lv("8400.5", "1"));

        let stats = feed.stats();
        assert_eq!(
            (stats.resyncs, stats.skipped, stats.issues, stats.connects),
            (1, 1, 1, 1)
        );
        feed.stop().await;
    }

    // (c)
    #[tokio::test]
    async fn feed_reconnects_after_the_server_drops_and_resubscribes() {
        let mut server = Server::start().await;
        let subs = ["tickers:BTC-USDT", "trades:BTC-USDT"];
        let (feed, mut rx) = start(test_config(&server.url, &subs));

        let mut ws = server.next_conn().await;
        expect_request(&mut ws, "subscribe", &subs).await;
        send(&mut ws, TICKERS).await;
        let (quote, _) = wait_for(&mut rx, quote_of).await;
        assert_eq!(quote.bid, d("8888.88"));
        drop(ws); // no close frame: the TCP connection just ends

        let (reason, _) = wait_for(&mut rx, |item| match item {
            FeedItem::Status(FeedStatus::Disconnected { reason, retry_in }) => {
                assert_eq!(
                    *retry_in,
                    Duration::from_millis(10),
                    "a healthy session backs off from the minimum"
                );
                Some(reason.clone())
            }
            _ => None,
        })
        .await;
        assert!(!reason.is_empty());

        let mut ws = server.next_conn().await;
        expect_request(&mut ws, "subscribe", &subs).await;
        send(&mut ws, &ticker_frame("8888.9")).await;
        let (quote, seen) = wait_for(&mut rx, quote_of).await;
        assert!(seen.contains(&FeedItem::Status(FeedStatus::Connected)));
        assert_eq!(quote.bid, d("8888.9"));

        let stats = feed.stats();
        assert_eq!((stats.connects, stats.disconnects), (2, 1));
        feed.stop().await;
    }

    #[tokio::test]
    async fn feed_backs_off_while_it_cannot_connect() {
        // A port that was just free: connecting is refused.
        let url = {
            let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
            format!("ws://{}", listener.local_addr().unwrap())
        };
        let (feed, mut rx) = start(test_config(&url, &["tickers:BTC-USDT"]));
        let mut delays = Vec::new();
        while delays.len() < 5 {
            let (delay, _) = wait_for(&mut rx, |item| match item {
                FeedItem::Status(FeedStatus::Disconnected { retry_in, .. }) => {
                    Some(retry_in.as_millis())
                }
                _ => None,
            })
            .await;
            delays.push(delay);
        }
        assert_eq!(delays, [10, 20, 40, 80, 100]);
        assert_eq!(feed.stats().connects, 0);
        feed.stop().await;
    }

    // (d)
    #[tokio::test]
    async fn feed_pings_when_idle_and_accepts_the_pong() {
        let mut server = Server::start().await;
        let mut config = test_config(&server.url, &["tickers:BTC-USDT"]);
        config.ping_after = Duration::from_millis(100);
        config.pong_timeout = Duration::from_secs(2);
        let (feed, mut rx) = start(config);
        let mut ws = server.next_conn().await;
        expect_request(&mut ws, "subscribe", &["tickers:BTC-USDT"]).await;

        for _ in 0..3 {
            assert_eq!(read_text(&mut ws).await, "ping");
            send(&mut ws, "pong").await;
        }
        // Still the same connection, and still delivering.
        send(&mut ws, TICKERS).await;
        wait_for(&mut rx, quote_of).await;
        let stats = feed.stats();
        assert_eq!(
            (stats.connects, stats.disconnects, stats.parse_errors),
            (1, 0, 0)
        );
        assert!(stats.pings >= 3);
        // Frames are handled in order: all three pongs were seen before the ticker.
        assert_eq!(stats.pongs, 3);
        feed.stop().await;
    }

    #[tokio::test]
    async fn feed_reconnects_when_the_pong_does_not_come() {
        let mut server = Server::start().await;
        let mut config = test_config(&server.url, &["tickers:BTC-USDT"]);
        config.ping_after = Duration::from_millis(50);
        config.pong_timeout = Duration::from_millis(100);
        let (feed, mut rx) = start(config);
        let mut ws = server.next_conn().await;
        expect_request(&mut ws, "subscribe", &["tickers:BTC-USDT"]).await;
        assert_eq!(read_text(&mut ws).await, "ping");

        let (reason, _) = wait_for(&mut rx, |item| match item {
            FeedItem::Status(FeedStatus::Disconnected { reason, .. }) => Some(reason.clone()),
            _ => None,
        })
        .await;
        assert!(reason.contains("no pong"), "{reason}");
        let mut ws2 = server.next_conn().await;
        expect_request(&mut ws2, "subscribe", &["tickers:BTC-USDT"]).await;
        assert_eq!(feed.stats().connects, 2);
        drop(ws);
        feed.stop().await;
    }

    // (e)
    #[tokio::test]
    async fn feed_turns_tickers_and_trades_into_exact_quotes_and_trades() {
        let mut server = Server::start().await;
        let subs = ["tickers:BTC-USDT", "trades:BTC-USD"];
        let (feed, mut rx) = start(test_config(&server.url, &subs));
        let mut ws = server.next_conn().await;
        expect_request(&mut ws, "subscribe", &subs).await;
        send(&mut ws, TICKERS).await;
        send(&mut ws, TRADES).await;

        let (quote, _) = wait_for(&mut rx, quote_of).await;
        assert_eq!(
            quote,
            Quote {
                symbol: btc(),
                bid: d("8888.88"),
                bid_size: d("5"),
                ask: d("9999.99"),
                ask_size: d("11"),
                ts: SAMPLE_TS,
            }
        );
        let (trade, _) = wait_for(&mut rx, |item| match item {
            FeedItem::Event(MarketEvent::Trade(trade)) => Some(trade.clone()),
            _ => None,
        })
        .await;
        assert_eq!(&*trade.symbol, "BTC-USD");
        assert_eq!(trade.price.to_string(), "42219.9");
        assert_eq!(trade.size.to_string(), "0.12060306");
        assert_eq!(trade.aggressor, Side::Buy);
        assert_eq!(trade.ts, 1_630_048_897_897_000_000);
        feed.stop().await;
    }

    // (f)
    #[tokio::test]
    async fn feed_counts_garbage_frames_and_goes_on() {
        let mut server = Server::start().await;
        let (feed, mut rx) = start(test_config(&server.url, &["tickers:BTC-USDT"]));
        let mut ws = server.next_conn().await;
        expect_request(&mut ws, "subscribe", &["tickers:BTC-USDT"]).await;
        send(&mut ws, "garbage{").await;
        send(&mut ws, &ticker_frame("not-a-number")).await;
        ws.send(Message::binary(vec![0xff, 0x00])).await.unwrap();
        send(&mut ws, r#"{"event":"error","code":"60018","msg":"Wrong URL or channel:tickers,instId:NOPE doesn't exist."}"#).await;
        // A book nobody subscribed to is not kept.
        send(&mut ws, BOOKS_SNAPSHOT).await;
        send(&mut ws, &ticker_frame("8000.5")).await;

        let (quote, seen) = wait_for(&mut rx, quote_of).await;
        assert_eq!(quote.bid, d("8000.5"));
        assert!(seen.iter().any(|item| matches!(
            item,
            FeedItem::Status(FeedStatus::VenueError { code, .. }) if code == "60018"
        )));
        let stats = feed.stats();
        assert_eq!(
            (
                stats.parse_errors,
                stats.venue_errors,
                stats.ignored,
                stats.messages,
                stats.connects,
                stats.disconnects
            ),
            (3, 1, 1, 6, 1, 0)
        );
        feed.stop().await;
    }

    #[tokio::test]
    async fn feed_reconnects_at_once_on_the_upgrade_notice() {
        let mut server = Server::start().await;
        let mut config = test_config(&server.url, &["tickers:BTC-USDT"]);
        config.backoff_min = Duration::from_millis(10);
        let (feed, mut rx) = start(config);
        let mut ws = server.next_conn().await;
        expect_request(&mut ws, "subscribe", &["tickers:BTC-USDT"]).await;
        send(&mut ws, r#"{"event":"notice","code":"64008","msg":"The connection will soon be closed for a service upgrade. Please reconnect.","connId":"a"}"#).await;
        let mut ws2 = server.next_conn().await;
        expect_request(&mut ws2, "subscribe", &["tickers:BTC-USDT"]).await;
        let (reason, _) = wait_for(&mut rx, |item| match item {
            FeedItem::Status(FeedStatus::Disconnected { reason, .. }) => Some(reason.clone()),
            _ => None,
        })
        .await;
        assert!(reason.contains("reconnect"), "{reason}");
        drop(ws);
        feed.stop().await;
    }

    #[tokio::test]
    async fn feed_ends_when_its_receiver_is_dropped_or_it_is_stopped() {
        let mut server = Server::start().await;
        let (feed, rx) = start(test_config(&server.url, &["tickers:BTC-USDT"]));
        let mut ws = server.next_conn().await;
        expect_request(&mut ws, "subscribe", &["tickers:BTC-USDT"]).await;
        drop(rx);
        // The client closes the connection: the server sees the end of the stream.
        let end = tokio::time::timeout(WAIT, async {
            loop {
                match ws.next().await {
                    None | Some(Err(_)) | Some(Ok(Message::Close(_))) => return,
                    Some(Ok(_)) => continue,
                }
            }
        })
        .await;
        assert!(end.is_ok(), "the client closes when nobody listens");
        tokio::time::timeout(WAIT, feed.task)
            .await
            .expect("the task ends")
            .unwrap();

        let (feed, _rx) = start(test_config(&server.url, &["tickers:BTC-USDT"]));
        let mut ws = server.next_conn().await;
        expect_request(&mut ws, "subscribe", &["tickers:BTC-USDT"]).await;
        let stats = feed.stats_handle();
        feed.stop().await;
        assert!(!stats.snapshot().connected);
    }
}
