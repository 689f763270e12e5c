//! What a load yields and how it fails: the [`Replay`], its flagged quality issues, and the
//! record and file errors.

use super::utc::format_utc;
use super::{DEFAULT_BOOK_DEPTH, NANOS_PER_SEC};
use crate::types::{Candle, MarketEvent, QualityIssue, Timestamp};
use std::sync::Arc;
use std::{fmt, io};

/// A parsed replay: events ordered by the time they became known ([`known_at`]), and the data
/// quality issues found on the way.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Replay {
    /// The events, in time order.
    pub events: Vec<MarketEvent>,
    /// Problems with the data, in time order.
    pub issues: Vec<Flagged>,
}

impl Replay {
    /// The Candle events.
    pub fn candles(&self) -> impl Iterator<Item = &Candle> {
        self.events.iter().filter_map(|e| match e {
            MarketEvent::Candle(c) => Some(c),
            _ => None,
        })
    }

    /// Several replays as one: events and issues merged by time (a stable merge, so each input
    /// keeps its own order).
    pub(crate) fn merge(parts: Vec<Replay>) -> Replay {
        let mut all = Replay::default();
        for part in parts {
            all.events.extend(part.events);
            all.issues.extend(part.issues);
        }
        all.events.sort_by_key(known_at);
        all.issues.sort_by_key(|f| f.ts);
        all
    }
}

/// When an event became known: its timestamp, except a candle, which is known when it closes
/// (`start + interval`). Replays are ordered by this time, and a replay clock should not deliver
/// a candle before it, or an agent would see a bar before it ended.
pub fn known_at(event: &MarketEvent) -> Timestamp {
    match event {
        MarketEvent::Candle(c) => c
            .start
            .saturating_add(u64::from(c.interval_secs) * NANOS_PER_SEC),
        _ => event.ts(),
    }
}

/// A [`QualityIssue`] found in a file, with where and when.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Flagged {
    /// The file.
    pub file: Arc<str>,
    /// The line (1-based) of the record that showed the problem.
    pub line: usize,
    /// The time of that record ([`known_at`]).
    pub ts: Timestamp,
    /// What is wrong.
    pub issue: QualityIssue,
}

impl fmt::Display for Flagged {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}: {}", self.file, self.line, describe(&self.issue))
    }
}

/// A one-line description of a quality issue, for logs and `colony status`.
pub fn describe(issue: &QualityIssue) -> String {
    match issue {
        QualityIssue::CrossedBook { symbol, bid, ask } => {
            let what = if bid == ask { "locked" } else { "crossed" };
            format!("{symbol}: {what} book: best bid {bid} >= best ask {ask}")
        }
        QualityIssue::SequenceGap {
            symbol,
            expected,
            got,
        } => {
            format!(
                "{symbol}: sequence gap: the next update should follow id {expected}, it follows id {got}"
            )
        }
        QualityIssue::NonMonotonicTime {
            symbol,
            previous,
            got,
        } => {
            format!(
                "{symbol}: time did not advance: {} after {}",
                format_utc(*got),
                format_utc(*previous)
            )
        }
        QualityIssue::Stale { symbol, last, now } => format!(
            "{symbol}: stale: no data for {} s (last at {})",
            now.saturating_sub(*last) / NANOS_PER_SEC,
            format_utc(*last)
        ),
        QualityIssue::BadValue {
            symbol,
            field,
            value,
            rule,
        } => format!(
            "{symbol}: {field} {value} is {}; record dropped",
            rule.broken()
        ),
    }
}

/// Where in a record an error is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Place {
    /// A CSV column, by its header name.
    Column(String),
    /// A JSON field.
    Field(String),
}

/// A record that could not be read: `FILE:LINE: column "NAME": REASON`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct RecordError {
    /// The file.
    pub file: Arc<str>,
    /// The line, 1-based (the CSV header is line 1).
    pub line: usize,
    /// The column or field, when the error is about one.
    pub place: Option<Place>,
    /// What is wrong, a lowercase fragment.
    pub reason: String,
}

impl fmt::Display for RecordError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}: ", self.file, self.line)?;
        match &self.place {
            Some(Place::Column(name)) => write!(f, "column \"{name}\": ")?,
            Some(Place::Field(name)) => write!(f, "field \"{name}\": ")?,
            None => {}
        }
        f.write_str(&self.reason)
    }
}

/// Why a replay could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum ReplayError {
    /// The file could not be read.
    #[error("{file}: {source}")]
    Read {
        /// The file.
        file: String,
        /// What the OS said.
        source: io::Error,
    },
    /// The file as a whole is not something we can replay (unknown format, too large, bad gzip).
    #[error("{file}: {reason}")]
    File {
        /// The file.
        file: String,
        /// What is wrong.
        reason: String,
    },
    /// A record is malformed.
    #[error(transparent)]
    Record(#[from] RecordError),
}

/// Settings a file does not carry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplayOptions {
    /// The symbol of a bar CSV without a `symbol` column. Unset: the file name up to the first
    /// `-` followed by a digit, upper-cased (`btc-perp-2022-01-1m.csv` → `BTC-PERP`).
    pub symbol: Option<Arc<str>>,
    /// The length of the bars of a bar CSV, in seconds (60).
    pub bar_interval_secs: u32,
    /// Levels per side in the Book events of a depth replay (clamped to 1..=[`MAX_BOOK_DEPTH`]).
    pub book_depth: usize,
}

impl Default for ReplayOptions {
    fn default() -> Self {
        ReplayOptions {
            symbol: None,
            bar_interval_secs: 60,
            book_depth: DEFAULT_BOOK_DEPTH,
        }
    }
}

/// The file formats a replay reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// OHLCV bar CSV.
    Bars,
    /// Binance depth snapshot/update CSV.
    BinanceDepth,
    /// One JSON event per line.
    Jsonl,
}
