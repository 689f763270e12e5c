//! Parsing OKX frames (pure): events, acknowledgements, errors and book messages, with every
//! price and size read exactly.

use super::subscription::{Channel, Subscription};
#[cfg(doc)]
use crate::types::QualityIssue;
use crate::types::{BookLevel, Quote, Side, Timestamp, Trade};
use rust_decimal::Decimal;
use serde::de::{IgnoredAny, SeqAccess, Visitor};
use serde::{Deserialize, de};
use std::fmt;
use std::sync::Arc;

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

pub(super) fn bad(field: &'static str, value: &str) -> ParseError {
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
/// is checked here (numbers, sides, timestamps, the sequence ids of `books`), except whether
/// prices are above zero and sizes not below: a bad value is a data-quality issue of its
/// record, which the session drops on its own ([`QualityIssue::BadValue`]).
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

/// A price: an exact decimal. Whether it is above zero is a data-quality check of the record
/// (a bad value drops that record, not the frame), made by the session and [`BookSync`].
///
/// [`BookSync`]: super::BookSync
pub(super) fn price(field: &'static str, s: &str) -> Result<Decimal, ParseError> {
    size(field, s)
}

/// A size: an exact decimal (its sign is checked with the record, as for [`price`]).
pub(super) fn size(field: &'static str, s: &str) -> Result<Decimal, ParseError> {
    match Decimal::from_str_exact(s) {
        // `-0` parses as a negative zero; a size of zero is just zero.
        Ok(d) if d.is_zero() => Ok(Decimal::ZERO),
        Ok(d) => Ok(d),
        _ => Err(bad(field, s)),
    }
}

/// OKX's millisecond timestamp string, in nanoseconds.
pub(super) fn millis(field: &'static str, s: &str) -> Result<Timestamp, ParseError> {
    s.parse::<u64>()
        .ok()
        .and_then(|ms| ms.checked_mul(1_000_000))
        .ok_or_else(|| bad(field, s))
}

/// The first `max` characters of `s`.
pub(super) fn preview(s: &str, max: usize) -> &str {
    s.char_indices().nth(max).map_or(s, |(i, _)| &s[..i])
}
