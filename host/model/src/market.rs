//! The market-data records the host works with. They mirror the WIT records in
//! `wit/types.wit` (`quote`, `trade`, `book-level`, `book`, `candle`, `market-event`) field for
//! field, with [`Decimal`] for every price and size and nanoseconds since the Unix epoch (UTC)
//! for every timestamp. Nothing here is ever a float.

use rust_decimal::Decimal;
use std::fmt;
use std::sync::Arc;

/// Nanoseconds since the Unix epoch (UTC); the virtual clock's time during a replay.
pub type Timestamp = u64;

/// Side of an order or of an aggressing trade.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Side {
    /// Buy (bid side).
    Buy,
    /// Sell (ask side).
    Sell,
}

impl Side {
    /// `buy` or `sell`, as the feeds, the order journal and the CLI write it.
    pub fn as_str(self) -> &'static str {
        match self {
            Side::Buy => "buy",
            Side::Sell => "sell",
        }
    }

    /// Parses [`as_str`](Self::as_str)'s form.
    pub fn parse(s: &str) -> Option<Side> {
        match s {
            "buy" => Some(Side::Buy),
            "sell" => Some(Side::Sell),
            _ => None,
        }
    }
}

/// Best bid and offer of an instrument.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Quote {
    /// Instrument, for example `BTC-USDT`.
    pub symbol: Arc<str>,
    /// Best bid price.
    pub bid: Decimal,
    /// Quantity at the best bid.
    pub bid_size: Decimal,
    /// Best ask price.
    pub ask: Decimal,
    /// Quantity at the best ask.
    pub ask_size: Decimal,
    /// Exchange time of the quote.
    pub ts: Timestamp,
}

/// One trade printed by the venue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Trade {
    /// Instrument.
    pub symbol: Arc<str>,
    /// Trade price.
    pub price: Decimal,
    /// Trade quantity.
    pub size: Decimal,
    /// Side of the aggressor.
    pub aggressor: Side,
    /// Exchange time of the trade.
    pub ts: Timestamp,
}

/// One price level of an order book.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BookLevel {
    /// Price of the level.
    pub price: Decimal,
    /// Total quantity resting at the level.
    pub size: Decimal,
}

/// An order-book snapshot (top N levels), best levels first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Book {
    /// Instrument.
    pub symbol: Arc<str>,
    /// Bids, highest price first.
    pub bids: Vec<BookLevel>,
    /// Asks, lowest price first.
    pub asks: Vec<BookLevel>,
    /// Exchange time of the snapshot.
    pub ts: Timestamp,
}

/// An OHLCV bar.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Candle {
    /// Instrument.
    pub symbol: Arc<str>,
    /// Bar length in seconds.
    pub interval_secs: u32,
    /// Start of the bar.
    pub start: Timestamp,
    /// First price.
    pub open: Decimal,
    /// Highest price.
    pub high: Decimal,
    /// Lowest price.
    pub low: Decimal,
    /// Last price.
    pub close: Decimal,
    /// Traded quantity.
    pub volume: Decimal,
}

/// A market-data event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MarketEvent {
    /// Top of book changed.
    Quote(Quote),
    /// A trade printed.
    Trade(Trade),
    /// A book snapshot (top N after an update).
    Book(Book),
    /// A bar closed.
    Candle(Candle),
}

impl MarketEvent {
    /// The instrument.
    pub fn symbol(&self) -> &Arc<str> {
        match self {
            MarketEvent::Quote(q) => &q.symbol,
            MarketEvent::Trade(t) => &t.symbol,
            MarketEvent::Book(b) => &b.symbol,
            MarketEvent::Candle(c) => &c.symbol,
        }
    }

    /// Exchange time (a candle's is its start).
    pub fn ts(&self) -> Timestamp {
        match self {
            MarketEvent::Quote(q) => q.ts,
            MarketEvent::Trade(t) => t.ts,
            MarketEvent::Book(b) => b.ts,
            MarketEvent::Candle(c) => c.start,
        }
    }

    /// What kind of event it is.
    pub fn kind(&self) -> Kind {
        match self {
            MarketEvent::Quote(_) => Kind::Quote,
            MarketEvent::Trade(_) => Kind::Trade,
            MarketEvent::Book(_) => Kind::Book,
            MarketEvent::Candle(_) => Kind::Candle,
        }
    }
}

/// The kinds of market data, as named in bus subjects `md.<venue>.<symbol>.<kind>`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Kind {
    /// Best bid and offer.
    Quote,
    /// Trades.
    Trade,
    /// Top-N order book.
    Book,
    /// Closed bars.
    Candle,
}

impl Kind {
    /// The subject token: `quote`, `trade`, `book`, `candle`.
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Quote => "quote",
            Kind::Trade => "trade",
            Kind::Book => "book",
            Kind::Candle => "candle",
        }
    }
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Something wrong with the data itself (not with a file's syntax), detected and reported
/// instead of passed on silently.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum QualityIssue {
    /// Best bid at or above best ask (`locked` when equal).
    CrossedBook {
        /// Instrument.
        symbol: Arc<str>,
        /// Best bid.
        bid: Decimal,
        /// Best ask.
        ask: Decimal,
    },
    /// A sequence number skipped: `expected` was due, `got` arrived.
    SequenceGap {
        /// Instrument.
        symbol: Arc<str>,
        /// The sequence id that should have come next (or the previous one the update names).
        expected: i64,
        /// What arrived.
        got: i64,
    },
    /// A timestamp went backwards.
    NonMonotonicTime {
        /// Instrument.
        symbol: Arc<str>,
        /// The last timestamp seen.
        previous: Timestamp,
        /// The one that arrived.
        got: Timestamp,
    },
    /// No data for the symbol for longer than the staleness threshold.
    Stale {
        /// Instrument.
        symbol: Arc<str>,
        /// Last time data arrived.
        last: Timestamp,
        /// When it was noticed.
        now: Timestamp,
    },
}
