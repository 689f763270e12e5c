//! Market data from the host's feed (agents only): subscriptions delivered to
//! [`Agent::on_market`](crate::Agent::on_market), and snapshot queries.
//!
//! Every call is checked against the agent's `market.read:<symbol-pattern>` grants before
//! anything is read; a refusal is [`Error::Denied`] naming the capability to ask the operator
//! for (`needs market.read:BTC-USDT`). A host without a feed answers [`Error::Unavailable`];
//! a query for a symbol with no data yet answers [`Error::NotFound`].
//!
//! Prices and sizes are exact [`Decimal`](crate::Decimal)s (convert to `rust_decimal` with
//! `TryFrom` for arithmetic, see [`decimal`](crate::decimal)); times are [`Timestamp`]s, ns
//! since the Unix epoch, which during a replay are the replay's virtual time. A candle arrives
//! when its bar has closed, at `start + interval`.
//!
//! Off `wasm32` (native unit tests) there is no feed: [`subscribe`] and [`unsubscribe`]
//! keep a list of subscriptions ([`subscriptions`]), and the queries answer from the events
//! the test passed to [`record`], as the host would from its feed (one list of candles per
//! interval, no aggregation).
//!
//! ```
//! use colony_sdk::market::{self, Kinds};
//! use colony_sdk::{Agent, Error, MarketEvent};
//!
//! /// Tracks the close of the last 1-minute bar of BTC-USDT.
//! struct Closes {
//!     last: Option<colony_sdk::Decimal>,
//! }
//!
//! impl Agent for Closes {
//!     fn init(_config: &str) -> Result<Self, Error> {
//!         market::subscribe("BTC-USDT", Kinds::CANDLE)?;
//!         // Start from what the host already has, if anything.
//!         let last = market::candles("BTC-USDT", market::M1, 1)?.pop().map(|c| c.close);
//!         Ok(Closes { last })
//!     }
//!
//!     fn on_market(&mut self, event: MarketEvent) -> Result<(), Error> {
//!         if let MarketEvent::Candle(c) = event {
//!             self.last = Some(c.close);
//!         }
//!         Ok(())
//!     }
//! }
//! # assert!(Closes::init("{}").is_ok());
//! # assert_eq!(market::subscriptions().len(), 1);
//! ```

use crate::{Error, Timestamp};

/// Which kinds of event a subscription delivers: `QUOTE`, `TRADE`, `BOOK`, `CANDLE`,
/// combined with `|` ([`all_kinds`] for every kind); `bits()` and `&` test them.
pub use crate::__bindings::agent::colony::plugin::market_data::Kinds;
/// What the host knows about a symbol: venue, last update, the stale flag and the count of
/// data-quality issues.
pub use crate::__bindings::agent::colony::plugin::market_data::SymbolStatus;
/// The market-data records, also at the crate root.
pub use crate::{Book, BookLevel, Candle, Decimal, MarketEvent, Quote, Side, Trade};

/// 1-minute bars (`interval_secs` of [`candles`]).
pub const M1: u32 = 60;
/// 5-minute bars.
pub const M5: u32 = 300;
/// 15-minute bars.
pub const M15: u32 = 900;
/// 1-hour bars.
pub const H1: u32 = 3_600;
/// 4-hour bars.
pub const H4: u32 = 14_400;
/// Daily bars (UTC days).
pub const D1: u32 = 86_400;
/// Every bar length the host keeps, shortest first.
pub const INTERVALS: [u32; 6] = [M1, M5, M15, H1, H4, D1];
/// Most bars one [`candles`] call returns.
pub const MAX_CANDLES: u32 = 1_000;

/// Every kind: quotes, trades, books and candles.
///
/// ```
/// use colony_sdk::market::{all_kinds, Kinds};
/// assert_eq!(all_kinds(), Kinds::QUOTE | Kinds::TRADE | Kinds::BOOK | Kinds::CANDLE);
/// assert_eq!(all_kinds() & Kinds::BOOK, Kinds::BOOK);
/// ```
pub fn all_kinds() -> Kinds {
    Kinds::QUOTE | Kinds::TRADE | Kinds::BOOK | Kinds::CANDLE
}

/// Starts delivering `kinds` of `symbol` (a concrete symbol such as `BTC-USDT`, no
/// wildcards) to [`Agent::on_market`](crate::Agent::on_market); returns an id for
/// [`unsubscribe`]. Needs `market.read:<symbol>`; no kinds is [`Error::InvalidArgument`].
///
/// A subscription lasts as long as the instance: an agent subscribes in
/// [`Agent::init`](crate::Agent::init), which the host calls again on every new instance.
///
/// ```
/// use colony_sdk::market::{self, Kinds};
/// let id = market::subscribe("BTC-USDT", Kinds::QUOTE | Kinds::TRADE)?;
/// # assert!(market::subscribe("BTC-USDT", Kinds::empty()).is_err());
/// market::unsubscribe(id)?;
/// # Ok::<(), colony_sdk::Error>(())
/// ```
pub fn subscribe(symbol: &str, kinds: Kinds) -> Result<u64, Error> {
    imp::subscribe(symbol, kinds)
}

/// Ends a subscription; an unknown id is [`Error::NotFound`].
///
/// ```
/// assert!(colony_sdk::market::unsubscribe(12_345).is_err());
/// ```
pub fn unsubscribe(id: u64) -> Result<(), Error> {
    imp::unsubscribe(id)
}

/// The latest best bid and offer of `symbol`; [`Error::NotFound`] before the first one (a
/// replay of bars has candles only, so no quote).
///
/// ```
/// # use colony_sdk::{Decimal, MarketEvent, Quote};
/// # colony_sdk::market::record(&MarketEvent::Quote(Quote {
/// #     symbol: "BTC-USDT".into(),
/// #     bid: Decimal::new(4_631_950, 2), bid_size: Decimal::new(12, 1),
/// #     ask: Decimal::new(4_632_000, 2), ask_size: Decimal::new(4, 1), ts: 1,
/// # }));
/// let q = colony_sdk::market::quote("BTC-USDT")?;
/// assert_eq!(q.spread()?.to_string(), "0.50");
/// # Ok::<(), colony_sdk::Error>(())
/// ```
pub fn quote(symbol: &str) -> Result<Quote, Error> {
    imp::quote(symbol)
}

/// The current book of `symbol`, at most `depth` levels a side, best first (bids highest
/// first, asks lowest first); [`Error::NotFound`] before the first one. The host keeps the
/// depth it was configured with (20 levels unless the operator says otherwise).
///
/// ```
/// match colony_sdk::market::book("ETH-USDT", 5) {
///     Ok(book) => assert!(book.bids.len() <= 5),
///     Err(colony_sdk::Error::NotFound(_)) => {} // no book yet
///     Err(e) => return Err(e),
/// }
/// # Ok::<(), colony_sdk::Error>(())
/// ```
pub fn book(symbol: &str, depth: u32) -> Result<Book, Error> {
    imp::book(symbol, depth)
}

/// The last `limit` closed bars of `symbol` of `interval_secs` (one of [`INTERVALS`]),
/// oldest first; at most [`MAX_CANDLES`]. The host aggregates them from the finest data it
/// has, aligned to UTC (daily bars start at 00:00 UTC); the bar still being built is not
/// among them. Another interval is [`Error::InvalidArgument`].
///
/// ```
/// use colony_sdk::market;
/// let hours = market::candles("BTC-USDT", market::H1, 24)?;
/// assert!(hours.len() <= 24);
/// assert!(market::candles("BTC-USDT", 7, 1).is_err());
/// # Ok::<(), colony_sdk::Error>(())
/// ```
pub fn candles(symbol: &str, interval_secs: u32, limit: u32) -> Result<Vec<Candle>, Error> {
    imp::candles(symbol, interval_secs, limit)
}

/// What the host knows about `symbol`: the venue, the time of its last event, whether it is
/// stale (no data for longer than the host's threshold: do not trade on the snapshot) and
/// how many data-quality issues were seen. [`Error::NotFound`] before its first event.
///
/// ```
/// match colony_sdk::market::status("BTC-USDT") {
///     Ok(s) if s.stale => colony_sdk::warn!("{} data is stale", s.symbol),
///     Ok(_) => {}
///     Err(colony_sdk::Error::NotFound(_)) => {} // nothing from the feed yet
///     Err(e) => return Err(e),
/// }
/// # Ok::<(), colony_sdk::Error>(())
/// ```
pub fn status(symbol: &str) -> Result<SymbolStatus, Error> {
    imp::status(symbol)
}

/// The symbols the feed has data for, among those the agent may read (never an error: a
/// host without a feed, or an agent without grants, gets an empty list).
///
/// ```
/// for symbol in colony_sdk::market::symbols() {
///     colony_sdk::info!("feed has {symbol}");
/// }
/// ```
pub fn symbols() -> Vec<String> {
    imp::symbols()
}

/// Off `wasm32`: makes the queries answer from `event` as the host would after publishing
/// it (latest quote and book, the candle appended to its interval's bars, the symbol's last
/// update). Does not call any agent's `on_market`: a test calls that itself.
#[cfg(not(target_arch = "wasm32"))]
pub fn record(event: &MarketEvent) {
    imp::record(event);
}

/// Off `wasm32`: the live subscriptions of this thread as (id, symbol, kinds), oldest first.
#[cfg(not(target_arch = "wasm32"))]
pub fn subscriptions() -> Vec<(u64, String, Kinds)> {
    imp::subscriptions()
}

impl MarketEvent {
    /// The event's symbol.
    ///
    /// ```
    /// # use colony_sdk::{Decimal, MarketEvent, Side, Trade};
    /// let t = MarketEvent::Trade(Trade {
    ///     symbol: "BTC-USDT".into(), price: Decimal::new(46_320, 0),
    ///     size: Decimal::new(5, 2), aggressor: Side::Buy, ts: 7,
    /// });
    /// assert_eq!(t.symbol(), "BTC-USDT");
    /// assert_eq!(t.time(), 7);
    /// assert_eq!(t.kind(), colony_sdk::market::Kinds::TRADE);
    /// ```
    pub fn symbol(&self) -> &str {
        match self {
            MarketEvent::Quote(q) => &q.symbol,
            MarketEvent::Trade(t) => &t.symbol,
            MarketEvent::Book(b) => &b.symbol,
            MarketEvent::Candle(c) => &c.symbol,
        }
    }

    /// When the event became known: a quote's, trade's or book's `ts`, and a candle's close
    /// (`start + interval`), which is when the host delivers it.
    pub fn time(&self) -> Timestamp {
        match self {
            MarketEvent::Quote(q) => q.ts,
            MarketEvent::Trade(t) => t.ts,
            MarketEvent::Book(b) => b.ts,
            MarketEvent::Candle(c) => c.end(),
        }
    }

    /// The one [`Kinds`] flag that subscribes to events like this one.
    pub fn kind(&self) -> Kinds {
        match self {
            MarketEvent::Quote(_) => Kinds::QUOTE,
            MarketEvent::Trade(_) => Kinds::TRADE,
            MarketEvent::Book(_) => Kinds::BOOK,
            MarketEvent::Candle(_) => Kinds::CANDLE,
        }
    }
}

impl Candle {
    /// The end of the bar (exclusive): `start + interval`, when it closed.
    ///
    /// ```
    /// # use colony_sdk::{Candle, Decimal};
    /// # let d = Decimal::new(1, 0);
    /// let c = Candle { symbol: "X".into(), interval_secs: 60, start: 0,
    ///     open: d, high: d, low: d, close: d, volume: d };
    /// assert_eq!(c.end(), 60_000_000_000);
    /// ```
    pub fn end(&self) -> Timestamp {
        self.start
            .saturating_add(u64::from(self.interval_secs).saturating_mul(1_000_000_000))
    }
}

/// Spread and mid price, exact (feature `decimal`).
#[cfg(feature = "decimal")]
impl Quote {
    /// `ask - bid`, exact. Negative when the quote is crossed.
    ///
    /// ```
    /// # use colony_sdk::{Decimal, Quote};
    /// let q = Quote { symbol: "BTC-USDT".into(), bid: Decimal::new(1005, 1),
    ///     bid_size: Decimal::new(2, 0), ask: Decimal::new(10075, 2),
    ///     ask_size: Decimal::new(1, 0), ts: 0 };
    /// assert_eq!(q.spread()?.to_string(), "0.25");
    /// assert_eq!(q.mid()?.to_string(), "100.625");
    /// # Ok::<(), colony_sdk::Error>(())
    /// ```
    pub fn spread(&self) -> Result<Decimal, Error> {
        let (bid, ask) = self.sides()?;
        let spread = ask
            .checked_sub(bid)
            .ok_or(crate::decimal::DecimalError::MantissaOverflow)?;
        Ok(Decimal::try_from(spread)?)
    }

    /// `(bid + ask) / 2`, exact, without trailing zeros.
    pub fn mid(&self) -> Result<Decimal, Error> {
        let (bid, ask) = self.sides()?;
        let sum = bid
            .checked_add(ask)
            .ok_or(crate::decimal::DecimalError::MantissaOverflow)?;
        let mid = sum
            .checked_div(rust_decimal::Decimal::TWO)
            .ok_or(crate::decimal::DecimalError::MantissaOverflow)?;
        Ok(Decimal::try_from(mid.normalize())?)
    }

    fn sides(&self) -> Result<(rust_decimal::Decimal, rust_decimal::Decimal), Error> {
        Ok((
            rust_decimal::Decimal::try_from(self.bid)?,
            rust_decimal::Decimal::try_from(self.ask)?,
        ))
    }
}

#[cfg(target_arch = "wasm32")]
mod imp {
    use super::{Kinds, SymbolStatus};
    use crate::__bindings::agent::colony::plugin::market_data as wit;
    use crate::{Book, Candle, Error, Quote};

    pub fn subscribe(symbol: &str, kinds: Kinds) -> Result<u64, Error> {
        wit::subscribe(symbol, kinds)
    }
    pub fn unsubscribe(id: u64) -> Result<(), Error> {
        wit::unsubscribe(id)
    }
    pub fn quote(symbol: &str) -> Result<Quote, Error> {
        wit::quote(symbol)
    }
    pub fn book(symbol: &str, depth: u32) -> Result<Book, Error> {
        wit::book(symbol, depth)
    }
    pub fn candles(symbol: &str, interval_secs: u32, limit: u32) -> Result<Vec<Candle>, Error> {
        wit::candles(symbol, interval_secs, limit)
    }
    pub fn status(symbol: &str) -> Result<SymbolStatus, Error> {
        wit::status(symbol)
    }
    pub fn symbols() -> Vec<String> {
        wit::symbols()
    }
}

#[cfg(not(target_arch = "wasm32"))]
mod imp {
    //! A stand-in for native unit tests: subscriptions are listed, queries answer from the
    //! events recorded on this thread.

    use std::cell::RefCell;
    use std::collections::BTreeMap;

    use super::{INTERVALS, Kinds, MAX_CANDLES, SymbolStatus};
    use crate::{Book, Candle, Error, MarketEvent, Quote, Timestamp};

    #[derive(Default)]
    struct Feed {
        next_id: u64,
        subs: Vec<(u64, String, Kinds)>,
        quotes: BTreeMap<String, Quote>,
        books: BTreeMap<String, Book>,
        candles: BTreeMap<(String, u32), Vec<Candle>>,
        last: BTreeMap<String, Timestamp>,
    }

    thread_local! {
        static FEED: RefCell<Feed> = RefCell::new(Feed::default());
    }

    fn not_yet(symbol: &str) -> Error {
        Error::NotFound(format!("no market data for {symbol} yet"))
    }

    pub fn subscribe(symbol: &str, kinds: Kinds) -> Result<u64, Error> {
        if kinds.bits() == 0 {
            return Err(Error::InvalidArgument("no kinds asked for".into()));
        }
        FEED.with_borrow_mut(|f| {
            f.next_id += 1;
            let id = f.next_id;
            f.subs.push((id, symbol.to_string(), kinds));
            Ok(id)
        })
    }

    pub fn unsubscribe(id: u64) -> Result<(), Error> {
        FEED.with_borrow_mut(|f| match f.subs.iter().position(|(s, _, _)| *s == id) {
            Some(i) => {
                f.subs.remove(i);
                Ok(())
            }
            None => Err(Error::NotFound(format!("no market subscription {id}"))),
        })
    }

    pub fn subscriptions() -> Vec<(u64, String, Kinds)> {
        FEED.with_borrow(|f| f.subs.clone())
    }

    pub fn record(event: &MarketEvent) {
        FEED.with_borrow_mut(|f| {
            let symbol = event.symbol().to_string();
            let at = f.last.entry(symbol.clone()).or_default();
            *at = (*at).max(event.time());
            match event {
                MarketEvent::Quote(q) => {
                    f.quotes.insert(symbol, q.clone());
                }
                MarketEvent::Book(b) => {
                    f.books.insert(symbol, b.clone());
                }
                MarketEvent::Trade(_) => {}
                MarketEvent::Candle(c) => {
                    f.candles
                        .entry((symbol, c.interval_secs))
                        .or_default()
                        .push(c.clone());
                }
            }
        });
    }

    pub fn quote(symbol: &str) -> Result<Quote, Error> {
        FEED.with_borrow(|f| f.quotes.get(symbol).cloned().ok_or_else(|| not_yet(symbol)))
    }

    pub fn book(symbol: &str, depth: u32) -> Result<Book, Error> {
        let mut book =
            FEED.with_borrow(|f| f.books.get(symbol).cloned().ok_or_else(|| not_yet(symbol)))?;
        let depth = usize::try_from(depth).unwrap_or(usize::MAX);
        book.bids.truncate(depth);
        book.asks.truncate(depth);
        Ok(book)
    }

    pub fn candles(symbol: &str, interval_secs: u32, limit: u32) -> Result<Vec<Candle>, Error> {
        if !INTERVALS.contains(&interval_secs) {
            return Err(Error::InvalidArgument(format!(
                "interval {interval_secs} s is not kept (kept: 60, 300, 900, 3600, 14400, 86400)"
            )));
        }
        let limit = usize::try_from(limit.min(MAX_CANDLES)).unwrap_or(usize::MAX);
        Ok(FEED.with_borrow(|f| {
            f.candles
                .get(&(symbol.to_string(), interval_secs))
                .map(|bars| bars[bars.len().saturating_sub(limit)..].to_vec())
                .unwrap_or_default()
        }))
    }

    pub fn status(symbol: &str) -> Result<SymbolStatus, Error> {
        FEED.with_borrow(|f| {
            f.last
                .get(symbol)
                .map(|&last_update| SymbolStatus {
                    symbol: symbol.to_string(),
                    venue: "native".into(),
                    last_update,
                    stale: false,
                    issues: 0,
                })
                .ok_or_else(|| not_yet(symbol))
        })
    }

    pub fn symbols() -> Vec<String> {
        FEED.with_borrow(|f| f.last.keys().cloned().collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(m: i64, s: u8) -> Decimal {
        Decimal::new(m, s)
    }

    fn candle(interval_secs: u32, start: Timestamp, close: i64) -> MarketEvent {
        MarketEvent::Candle(Candle {
            symbol: "BTC-PERP".into(),
            interval_secs,
            start,
            open: d(close, 0),
            high: d(close, 0),
            low: d(close, 0),
            close: d(close, 0),
            volume: d(1, 0),
        })
    }

    #[test]
    fn native_queries_answer_from_recorded_events() {
        assert!(matches!(quote("BTC-PERP"), Err(Error::NotFound(_))));
        assert!(matches!(status("BTC-PERP"), Err(Error::NotFound(_))));
        assert!(symbols().is_empty());
        for i in 0..5u64 {
            record(&candle(M1, i * 60_000_000_000, 100 + i as i64));
        }
        let last2 = candles("BTC-PERP", M1, 2).unwrap();
        assert_eq!(
            last2.iter().map(|c| c.close).collect::<Vec<_>>(),
            [d(103, 0), d(104, 0)]
        );
        assert!(candles("BTC-PERP", H1, 5).unwrap().is_empty());
        assert!(matches!(
            candles("BTC-PERP", 61, 5),
            Err(Error::InvalidArgument(_))
        ));
        let s = status("BTC-PERP").unwrap();
        assert_eq!(s.last_update, 5 * 60_000_000_000, "the last bar's close");
        assert!(!s.stale);
        assert_eq!(symbols(), ["BTC-PERP"]);

        record(&MarketEvent::Book(Book {
            symbol: "BTC-PERP".into(),
            bids: vec![
                BookLevel {
                    price: d(99, 0),
                    size: d(1, 0),
                },
                BookLevel {
                    price: d(98, 0),
                    size: d(2, 0),
                },
            ],
            asks: vec![BookLevel {
                price: d(101, 0),
                size: d(1, 0),
            }],
            ts: 1,
        }));
        let b = book("BTC-PERP", 1).unwrap();
        assert_eq!((b.bids.len(), b.asks.len()), (1, 1));
        assert_eq!(
            status("BTC-PERP").unwrap().last_update,
            5 * 60_000_000_000,
            "the last update never goes back"
        );
    }

    #[test]
    fn native_subscriptions_are_listed_until_ended() {
        let a = subscribe("BTC-PERP", Kinds::CANDLE).unwrap();
        let b = subscribe("ETH-PERP", all_kinds()).unwrap();
        assert_ne!(a, b);
        assert!(matches!(
            subscribe("BTC-PERP", Kinds::empty()),
            Err(Error::InvalidArgument(_))
        ));
        unsubscribe(a).unwrap();
        assert_eq!(subscriptions(), [(b, "ETH-PERP".to_string(), all_kinds())]);
        assert!(matches!(unsubscribe(a), Err(Error::NotFound(_))));
    }

    #[test]
    fn event_accessors() {
        let c = candle(H1, 3_600_000_000_000, 5);
        assert_eq!(c.symbol(), "BTC-PERP");
        assert_eq!(c.kind(), Kinds::CANDLE);
        assert_eq!(
            c.time(),
            7_200_000_000_000,
            "a candle is known when it closes"
        );
        let q = MarketEvent::Quote(Quote {
            symbol: "X".into(),
            bid: d(1, 0),
            bid_size: d(1, 0),
            ask: d(2, 0),
            ask_size: d(1, 0),
            ts: 9,
        });
        assert_eq!((q.kind(), q.time()), (Kinds::QUOTE, 9));
    }

    #[cfg(feature = "decimal")]
    #[test]
    fn spread_and_mid_are_exact() {
        let q = Quote {
            symbol: "X".into(),
            bid: d(46_319, 0),
            bid_size: d(1, 0),
            ask: d(463_205, 1),
            ask_size: d(1, 0),
            ts: 0,
        };
        assert_eq!(q.spread().unwrap().to_string(), "1.5");
        assert_eq!(q.mid().unwrap().to_string(), "46319.75");
        let crossed = Quote {
            bid: d(3, 0),
            ask: d(2, 0),
            ..q
        };
        assert_eq!(crossed.spread().unwrap().to_string(), "-1");
    }
}
