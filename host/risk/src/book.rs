//! A level-2 order book for one instrument: price levels per side, kept sorted, fed by
//! snapshots and incremental updates, read as a top-N [`Book`], a best bid/offer [`Quote`], or
//! walked to fill a market order.
//!
//! Each side is a `BTreeMap<Decimal, Decimal>` from price to resting size. `Decimal` compares
//! numerically (`8477` and `8477.00` are the same level), so a venue that changes how many
//! decimals it prints cannot split one level in two. An update allocates at most the map node it
//! inserts; reading the best level is `O(log n)` without allocating. Sizes are never negative:
//! a size of zero (or below, which a correct feed never sends) removes the level.
//!
//! The book does not judge the data it is given beyond that: a crossed or locked result is kept
//! and reported by [`L2Book::check`], and the feed decides what to do about it (resubscribe,
//! suppress, report).

use colony_model::market::{Book, BookLevel, QualityIssue, Quote, Side, Timestamp};
use rust_decimal::Decimal;
use std::collections::BTreeMap;
use std::sync::Arc;

/// The order book of one instrument.
#[derive(Debug, Clone)]
pub struct L2Book {
    symbol: Arc<str>,
    /// Price → size; the best bid is the last key.
    bids: BTreeMap<Decimal, Decimal>,
    /// Price → size; the best ask is the first key.
    asks: BTreeMap<Decimal, Decimal>,
    ts: Timestamp,
}

/// What walking one side of the book for a quantity consumed: the fills a market order of that
/// quantity would get against the displayed liquidity, best price first.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Walk {
    /// Each level touched, with the size taken from it (not the size resting there).
    pub fills: Vec<BookLevel>,
    /// Total size taken (the sum of the fills' sizes).
    pub filled: Decimal,
    /// Size left unfilled because the side (or the part of it within the limit) ran out.
    pub remaining: Decimal,
    /// Sum of price × size over the fills.
    pub notional: Decimal,
}

impl Walk {
    /// Average fill price, `None` when nothing filled.
    pub fn average_price(&self) -> Option<Decimal> {
        if self.filled.is_zero() {
            None
        } else {
            self.notional.checked_div(self.filled)
        }
    }
}

impl L2Book {
    /// An empty book for `symbol`.
    pub fn new(symbol: Arc<str>) -> L2Book {
        L2Book {
            symbol,
            bids: BTreeMap::new(),
            asks: BTreeMap::new(),
            ts: 0,
        }
    }

    /// The instrument.
    pub fn symbol(&self) -> &Arc<str> {
        &self.symbol
    }

    /// Replaces the whole book with these levels (in any order). Levels with a size of zero or
    /// less are left out; a price given twice keeps the last size.
    pub fn apply_snapshot(&mut self, bids: &[BookLevel], asks: &[BookLevel], ts: Timestamp) {
        self.bids.clear();
        self.asks.clear();
        for level in bids {
            set_level(&mut self.bids, level.price, level.size);
        }
        for level in asks {
            set_level(&mut self.asks, level.price, level.size);
        }
        self.ts = ts;
    }

    /// Sets the size resting at `price` on `side` (`Buy` = bids, `Sell` = asks); a size of zero
    /// removes the level.
    pub fn apply_update(&mut self, side: Side, price: Decimal, size: Decimal, ts: Timestamp) {
        set_level(self.side_mut(side), price, size);
        self.ts = ts;
    }

    /// Moves the book's time on without changing a level (a venue's "no change" push).
    pub fn set_ts(&mut self, ts: Timestamp) {
        self.ts = ts;
    }

    /// Empties both sides (the timestamp stays).
    pub fn clear(&mut self) {
        self.bids.clear();
        self.asks.clear();
    }

    /// The best `depth` levels of each side, best first; a side with fewer levels gives all it
    /// has.
    pub fn top(&self, depth: usize) -> Book {
        Book {
            symbol: self.symbol.clone(),
            bids: self.levels(Side::Buy).take(depth).collect(),
            asks: self.levels(Side::Sell).take(depth).collect(),
            ts: self.ts,
        }
    }

    /// Like [`top`](Self::top), but into existing vectors (cleared first), so a caller that keeps
    /// them does not allocate.
    pub fn top_into(&self, depth: usize, bids: &mut Vec<BookLevel>, asks: &mut Vec<BookLevel>) {
        bids.clear();
        asks.clear();
        bids.extend(self.levels(Side::Buy).take(depth));
        asks.extend(self.levels(Side::Sell).take(depth));
    }

    /// The levels of one side, best first (bids from the highest price, asks from the lowest).
    pub(crate) fn levels(&self, side: Side) -> impl Iterator<Item = BookLevel> + '_ {
        let (bids, asks) = match side {
            Side::Buy => (Some(self.bids.iter().rev()), None),
            Side::Sell => (None, Some(self.asks.iter())),
        };
        bids.into_iter()
            .flatten()
            .chain(asks.into_iter().flatten())
            .map(|(&price, &size)| BookLevel { price, size })
    }

    /// Best bid and offer, `None` if either side is empty.
    pub fn quote(&self) -> Option<Quote> {
        let bid = self.best_bid()?;
        let ask = self.best_ask()?;
        Some(Quote {
            symbol: self.symbol.clone(),
            bid: bid.price,
            bid_size: bid.size,
            ask: ask.price,
            ask_size: ask.size,
            ts: self.ts,
        })
    }

    /// The highest bid.
    pub fn best_bid(&self) -> Option<BookLevel> {
        self.bids
            .last_key_value()
            .map(|(&price, &size)| BookLevel { price, size })
    }

    /// The lowest ask.
    pub fn best_ask(&self) -> Option<BookLevel> {
        self.asks
            .first_key_value()
            .map(|(&price, &size)| BookLevel { price, size })
    }

    /// Halfway between the best bid and the best ask.
    pub(crate) fn mid(&self) -> Option<Decimal> {
        let bid = self.best_bid()?.price;
        let ask = self.best_ask()?.price;
        bid.checked_add(ask)?.checked_div(Decimal::TWO)
    }

    /// Best ask minus best bid (zero when locked, negative when crossed).
    pub fn spread(&self) -> Option<Decimal> {
        let bid = self.best_bid()?.price;
        let ask = self.best_ask()?.price;
        ask.checked_sub(bid)
    }

    /// [`QualityIssue::CrossedBook`] when the best bid is at or above the best ask (locked or
    /// crossed), else `None` (also when a side is empty).
    pub fn check(&self) -> Option<QualityIssue> {
        let bid = self.best_bid()?.price;
        let ask = self.best_ask()?.price;
        (bid >= ask).then(|| QualityIssue::CrossedBook {
            symbol: self.symbol.clone(),
            bid,
            ask,
        })
    }

    /// Exchange time of the last snapshot or update applied.
    pub fn ts(&self) -> Timestamp {
        self.ts
    }

    /// Number of levels on one side.
    pub fn len(&self, side: Side) -> usize {
        match side {
            Side::Buy => self.bids.len(),
            Side::Sell => self.asks.len(),
        }
    }

    /// True when both sides are empty.
    pub fn is_empty(&self) -> bool {
        self.bids.is_empty() && self.asks.is_empty()
    }

    /// The fills a market order on `side` for `qty` would get: a buy takes asks from the lowest
    /// price up, a sell takes bids from the highest down. The book is not changed.
    pub fn walk(&self, side: Side, qty: Decimal) -> Walk {
        self.walk_to(side, qty, None)
    }

    /// Like [`walk`](Self::walk), stopping at a limit price: a buy takes no ask above `limit`,
    /// a sell no bid below it (what a marketable limit order would take on arrival).
    pub(crate) fn walk_to(&self, side: Side, qty: Decimal, limit: Option<Decimal>) -> Walk {
        let mut walk = Walk {
            remaining: qty.max(Decimal::ZERO),
            ..Walk::default()
        };
        // The order on `side` consumes the opposite side of the book.
        let opposite = match side {
            Side::Buy => Side::Sell,
            Side::Sell => Side::Buy,
        };
        for level in self.levels(opposite) {
            if walk.remaining.is_zero() {
                break;
            }
            let beyond_limit = match (side, limit) {
                (Side::Buy, Some(limit)) => level.price > limit,
                (Side::Sell, Some(limit)) => level.price < limit,
                (_, None) => false,
            };
            if beyond_limit {
                break;
            }
            let take = level.size.min(walk.remaining);
            // Sums of prices and sizes a venue prints stay far inside Decimal's range; saturate
            // rather than panic if a hostile feed says otherwise.
            walk.notional = walk
                .notional
                .saturating_add(level.price.saturating_mul(take));
            walk.filled = walk.filled.saturating_add(take);
            walk.remaining = walk.remaining.saturating_sub(take);
            walk.fills.push(BookLevel {
                price: level.price,
                size: take,
            });
        }
        walk
    }

    fn side_mut(&mut self, side: Side) -> &mut BTreeMap<Decimal, Decimal> {
        match side {
            Side::Buy => &mut self.bids,
            Side::Sell => &mut self.asks,
        }
    }
}

fn set_level(side: &mut BTreeMap<Decimal, Decimal>, price: Decimal, size: Decimal) {
    if size <= Decimal::ZERO {
        side.remove(&price);
    } else if let Some(resting) = side.get_mut(&price) {
        // Replacing in place keeps the key as first printed and never touches the allocator.
        *resting = size;
    } else {
        side.insert(price, size);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::str::FromStr;

    fn d(s: &str) -> Decimal {
        Decimal::from_str(s).unwrap()
    }

    fn lv(price: &str, size: &str) -> BookLevel {
        BookLevel {
            price: d(price),
            size: d(size),
        }
    }

    fn sample() -> L2Book {
        let mut book = L2Book::new("BTC-USDT".into());
        // Deliberately out of order: a snapshot's order must not matter.
        book.apply_snapshot(
            &[lv("99.5", "2"), lv("100", "1"), lv("98", "5")],
            &[lv("101", "3"), lv("100.5", "1.5"), lv("103", "4")],
            1_000,
        );
        book
    }

    #[test]
    fn snapshot_then_updates_then_top() {
        let mut book = sample();
        book.apply_update(Side::Buy, d("100.2"), d("0.7"), 2_000); // new best bid
        book.apply_update(Side::Buy, d("98"), d("6"), 2_001); // resize
        book.apply_update(Side::Sell, d("100.5"), d("0"), 2_002); // best ask removed
        book.apply_update(Side::Sell, d("102"), d("2.25"), 2_003); // new level inside

        let top = book.top(3);
        assert_eq!(&*top.symbol, "BTC-USDT");
        assert_eq!(
            top.bids,
            vec![lv("100.2", "0.7"), lv("100", "1"), lv("99.5", "2")]
        );
        assert_eq!(
            top.asks,
            vec![lv("101", "3"), lv("102", "2.25"), lv("103", "4")]
        );
        assert_eq!(top.ts, 2_003);
        assert_eq!(book.ts(), 2_003);

        let quote = book.quote().unwrap();
        assert_eq!((quote.bid, quote.bid_size), (d("100.2"), d("0.7")));
        assert_eq!((quote.ask, quote.ask_size), (d("101"), d("3")));
        assert_eq!(quote.ts, 2_003);
        assert_eq!(book.mid(), Some(d("100.6")));
        assert_eq!(book.spread(), Some(d("0.8")));
        assert_eq!(book.check(), None);
    }

    #[test]
    fn snapshot_replaces_everything() {
        let mut book = sample();
        book.apply_snapshot(&[lv("50", "1")], &[lv("51", "1"), lv("52", "0")], 9);
        assert_eq!(book.top(10).bids, vec![lv("50", "1")]);
        assert_eq!(book.top(10).asks, vec![lv("51", "1")]);
        assert_eq!(book.len(Side::Sell), 1);
        assert_eq!(book.ts(), 9);
    }

    #[test]
    fn zero_size_removes_and_absent_level_removal_is_harmless() {
        let mut book = sample();
        book.apply_update(Side::Buy, d("100"), d("0"), 5);
        book.apply_update(Side::Buy, d("77"), d("0"), 6); // never there
        book.apply_update(Side::Sell, d("101.000"), d("0.00"), 7); // same level, other scale
        assert_eq!(book.top(5).bids, vec![lv("99.5", "2"), lv("98", "5")]);
        assert_eq!(book.top(5).asks, vec![lv("100.5", "1.5"), lv("103", "4")]);
        assert_eq!(book.len(Side::Buy), 2);
        assert_eq!(book.len(Side::Sell), 2);
    }

    #[test]
    fn numerically_equal_prices_are_one_level() {
        let mut book = sample();
        book.apply_update(Side::Sell, d("101.00"), d("9"), 5);
        assert_eq!(book.len(Side::Sell), 3);
        assert_eq!(book.top(2).asks[1].size, d("9"));
    }

    #[test]
    fn top_deeper_than_the_book_gives_what_there_is() {
        let book = sample();
        let top = book.top(50);
        assert_eq!(top.bids.len(), 3);
        assert_eq!(top.asks.len(), 3);
        assert_eq!(book.top(0).bids, vec![]);
        let one = book.top(1);
        assert_eq!(one.bids, vec![lv("100", "1")]);
        assert_eq!(one.asks, vec![lv("100.5", "1.5")]);

        let (mut bids, mut asks) = (vec![lv("1", "1")], Vec::new());
        book.top_into(2, &mut bids, &mut asks);
        assert_eq!(bids, vec![lv("100", "1"), lv("99.5", "2")]);
        assert_eq!(asks, vec![lv("100.5", "1.5"), lv("101", "3")]);
    }

    #[test]
    fn empty_side_has_no_quote_and_no_issue() {
        let mut book = L2Book::new("X".into());
        assert!(book.is_empty());
        assert_eq!(book.quote(), None);
        assert_eq!(book.check(), None);
        book.apply_update(Side::Buy, d("10"), d("1"), 1);
        assert_eq!(book.quote(), None);
        assert_eq!(book.mid(), None);
        assert_eq!(book.check(), None);
        assert!(!book.is_empty());
    }

    #[test]
    fn locked_and_crossed_books_are_reported() {
        let mut book = sample();
        book.apply_update(Side::Buy, d("100.5"), d("1"), 2); // locked: bid == ask
        assert_eq!(
            book.check(),
            Some(QualityIssue::CrossedBook {
                symbol: "BTC-USDT".into(),
                bid: d("100.5"),
                ask: d("100.5"),
            })
        );
        assert_eq!(book.spread(), Some(Decimal::ZERO));
        book.apply_update(Side::Buy, d("102"), d("1"), 3); // crossed
        assert_eq!(
            book.check(),
            Some(QualityIssue::CrossedBook {
                symbol: "BTC-USDT".into(),
                bid: d("102"),
                ask: d("100.5"),
            })
        );
        book.apply_update(Side::Buy, d("102"), d("0"), 4);
        book.apply_update(Side::Buy, d("100.5"), d("0"), 5);
        assert_eq!(book.check(), None);
    }

    #[test]
    fn walk_buy_takes_asks_from_the_lowest() {
        let book = sample();
        let walk = book.walk(Side::Buy, d("3"));
        assert_eq!(walk.fills, vec![lv("100.5", "1.5"), lv("101", "1.5")]);
        assert_eq!(walk.filled, d("3"));
        assert_eq!(walk.remaining, d("0"));
        assert_eq!(walk.notional, d("302.25")); // 150.75 + 151.5
        assert_eq!(walk.average_price(), Some(d("100.75")));
    }

    #[test]
    fn walk_sell_takes_bids_from_the_highest_and_reports_the_shortfall() {
        let book = sample();
        let walk = book.walk(Side::Sell, d("10"));
        assert_eq!(
            walk.fills,
            vec![lv("100", "1"), lv("99.5", "2"), lv("98", "5")]
        );
        assert_eq!(walk.filled, d("8"));
        assert_eq!(walk.remaining, d("2"));
        assert_eq!(walk.notional, d("789")); // 100 + 199 + 490
    }

    #[test]
    fn walk_to_stops_at_the_limit() {
        let book = sample();
        let buy = book.walk_to(Side::Buy, d("10"), Some(d("101")));
        assert_eq!(buy.fills, vec![lv("100.5", "1.5"), lv("101", "3")]);
        assert_eq!(buy.remaining, d("5.5"));
        let sell = book.walk_to(Side::Sell, d("10"), Some(d("100.5")));
        assert_eq!(sell.fills, vec![]);
        assert_eq!(sell.average_price(), None);
        assert_eq!(book.walk(Side::Buy, d("0")).fills, vec![]);
        assert_eq!(book.walk(Side::Buy, d("-1")).remaining, d("0"));
    }
}
