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
    /// A price that is not above zero, or a size that breaks its [`ValueRule`]: the record is
    /// dropped, so no agent, risk check or paper fill ever uses the value.
    BadValue {
        /// Instrument.
        symbol: Arc<str>,
        /// Which value: `price`, `bid`, `low`, `volume`, `bids[2].price`, a CSV column…
        field: String,
        /// The value.
        value: Decimal,
        /// The rule it breaks.
        rule: ValueRule,
    },
}

impl QualityIssue {
    /// The instrument it is about.
    pub fn symbol(&self) -> &Arc<str> {
        match self {
            QualityIssue::CrossedBook { symbol, .. }
            | QualityIssue::SequenceGap { symbol, .. }
            | QualityIssue::NonMonotonicTime { symbol, .. }
            | QualityIssue::Stale { symbol, .. }
            | QualityIssue::BadValue { symbol, .. } => symbol,
        }
    }
}

/// What a price or size in a market record must be.
///
/// | value | rule |
/// |---|---|
/// | every price: quote `bid`/`ask`, trade `price`, candle `open`/`high`/`low`/`close`, book level price | [`Positive`](ValueRule::Positive) |
/// | trade `size`; level size in a [`Book`] event (a level with nothing at it is not a level) | [`Positive`](ValueRule::Positive) |
/// | quote `bid_size`/`ask_size`, candle `volume` (a quiet minute trades nothing) | [`NotNegative`](ValueRule::NotNegative) |
///
/// A venue's book *update* may set a level to size 0, which removes it; that is checked where
/// updates are read, not here.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ValueRule {
    /// Above zero.
    Positive,
    /// Zero or above.
    NotNegative,
}

impl ValueRule {
    /// Whether `value` keeps the rule.
    pub fn admits(self, value: Decimal) -> bool {
        match self {
            ValueRule::Positive => value > Decimal::ZERO,
            // `-0` is zero.
            ValueRule::NotNegative => value >= Decimal::ZERO,
        }
    }

    /// What a value that breaks the rule is: `not positive` or `negative`.
    pub fn broken(self) -> &'static str {
        match self {
            ValueRule::Positive => "not positive",
            ValueRule::NotNegative => "negative",
        }
    }
}

impl MarketEvent {
    /// The first price or size that breaks its [`ValueRule`], as the
    /// [`QualityIssue::BadValue`] to report; `None` when every value may be used. Feeds drop an
    /// event that has one; a consumer that takes prices from events (a reference quote, a paper
    /// fill) can call [`is_sane`](Self::is_sane) to refuse one that slipped through.
    pub fn bad_value(&self) -> Option<QualityIssue> {
        use ValueRule::{NotNegative, Positive};
        // The field's name is only built for a value that breaks its rule: this runs on every
        // event a feed publishes.
        let bad_named = |field: &dyn Fn() -> String, value: Decimal, rule: ValueRule| {
            (!rule.admits(value)).then(|| QualityIssue::BadValue {
                symbol: self.symbol().clone(),
                field: field(),
                value,
                rule,
            })
        };
        let bad = |field: &str, value, rule| bad_named(&|| field.to_string(), value, rule);
        match self {
            MarketEvent::Quote(q) => bad("bid", q.bid, Positive)
                .or_else(|| bad("bid_size", q.bid_size, NotNegative))
                .or_else(|| bad("ask", q.ask, Positive))
                .or_else(|| bad("ask_size", q.ask_size, NotNegative)),
            MarketEvent::Trade(t) => {
                bad("price", t.price, Positive).or_else(|| bad("size", t.size, Positive))
            }
            MarketEvent::Candle(c) => bad("open", c.open, Positive)
                .or_else(|| bad("high", c.high, Positive))
                .or_else(|| bad("low", c.low, Positive))
                .or_else(|| bad("close", c.close, Positive))
                .or_else(|| bad("volume", c.volume, NotNegative)),
            MarketEvent::Book(b) => [("bids", &b.bids), ("asks", &b.asks)]
                .into_iter()
                .flat_map(|(side, levels)| levels.iter().enumerate().map(move |l| (side, l)))
                .find_map(|(side, (i, level))| {
                    bad_named(&|| format!("{side}[{i}].price"), level.price, Positive).or_else(
                        || bad_named(&|| format!("{side}[{i}].size"), level.size, Positive),
                    )
                }),
        }
    }

    /// Whether every price is above zero and every size keeps its rule
    /// ([`bad_value`](Self::bad_value) finds none).
    pub fn is_sane(&self) -> bool {
        self.bad_value().is_none()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(s: &str) -> Decimal {
        s.parse().unwrap()
    }

    fn field_of(event: &MarketEvent) -> Option<(String, String, ValueRule)> {
        match event.bad_value()? {
            QualityIssue::BadValue {
                field, value, rule, ..
            } => Some((field, value.to_string(), rule)),
            other => panic!("{other:?}"),
        }
    }

    /// Every price must be above zero; sizes per [`ValueRule`]'s table.
    #[test]
    fn bad_value_names_the_first_price_or_size_that_breaks_its_rule() {
        use ValueRule::{NotNegative, Positive};
        let quote = |bid: &str, bid_size: &str, ask: &str| {
            MarketEvent::Quote(Quote {
                symbol: "X".into(),
                bid: d(bid),
                bid_size: d(bid_size),
                ask: d(ask),
                ask_size: d("1"),
                ts: 1,
            })
        };
        let trade = |price: &str, size: &str| {
            MarketEvent::Trade(Trade {
                symbol: "X".into(),
                price: d(price),
                size: d(size),
                aggressor: Side::Buy,
                ts: 1,
            })
        };
        let candle = |low: &str, volume: &str| {
            MarketEvent::Candle(Candle {
                symbol: "X".into(),
                interval_secs: 60,
                start: 0,
                open: d("2"),
                high: d("3"),
                low: d(low),
                close: d("2"),
                volume: d(volume),
            })
        };
        let book = |ask: &str, ask_size: &str| {
            let level = |price: &str, size: &str| BookLevel {
                price: d(price),
                size: d(size),
            };
            MarketEvent::Book(Book {
                symbol: "X".into(),
                bids: vec![level("1", "1")],
                asks: vec![level("2", "1"), level(ask, ask_size)],
                ts: 1,
            })
        };
        let bad = |f: &str, v: &str, r| Some((f.to_string(), v.to_string(), r));
        let cases = [
            (quote("1", "0", "2"), None),
            (quote("0", "1", "2"), bad("bid", "0", Positive)),
            (quote("1", "-1", "2"), bad("bid_size", "-1", NotNegative)),
            (quote("1", "1", "-2.5"), bad("ask", "-2.5", Positive)),
            (trade("10", "0.1"), None),
            (trade("-5", "1"), bad("price", "-5", Positive)),
            (trade("5", "0"), bad("size", "0", Positive)),
            (candle("1", "0"), None),
            (candle("0", "0"), bad("low", "0", Positive)),
            (candle("1", "-3"), bad("volume", "-3", NotNegative)),
            (book("3", "1"), None),
            (book("0", "1"), bad("asks[1].price", "0", Positive)),
            (book("3", "0"), bad("asks[1].size", "0", Positive)),
        ];
        for (event, want) in cases {
            assert_eq!(field_of(&event), want, "{event:?}");
            assert_eq!(event.is_sane(), want.is_none());
        }
        assert!(ValueRule::NotNegative.admits(d("-0")), "-0 is zero");
    }
}
