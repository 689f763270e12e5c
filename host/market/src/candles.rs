//! Candle aggregation: trades or finer candles folded into OHLCV bars of 1 m, 5 m, 15 m, 1 h,
//! 4 h and 1 d, aligned to UTC boundaries, and a bounded history per symbol and interval for the
//! `candles(symbol, interval-secs, limit)` query agents make.
//!
//! A bar covers `[start, start + interval)` where `start` is a multiple of the interval counted
//! from the Unix epoch. Every supported interval divides a day and the epoch is a UTC midnight,
//! so bars line up with UTC clock boundaries (4 h bars start at 00:00, 04:00, … UTC; daily bars
//! at 00:00 UTC). Unix time has no leap seconds, so neither do bars.
//!
//! Arithmetic is exact: open of the first input, greatest high, least low, close of the last
//! input, sum of volumes, all `rust_decimal::Decimal`. A bar is emitted when it closes, that is
//! when data of a later bucket arrives for its symbol ([`Aggregator::push_trade`],
//! [`Aggregator::push_candle`]), when the clock passes its end ([`Aggregator::close_due`]) or at
//! the end of a feed ([`Aggregator::flush`]). A bucket with no data produces no bar: nothing is invented to fill a
//! gap. The first and last bars of a feed may cover only part of their bucket.
//!
//! Input must arrive in time order per symbol; an input older than the previous one (or, for
//! candles, a repeated start) cannot be folded in without rewriting bars already emitted, so it
//! is refused with [`CandleError::OutOfOrder`], which converts to a
//! [`QualityIssue::NonMonotonicTime`].

use super::types::{Candle, Kind, MarketEvent, QualityIssue, Timestamp, Trade};
use std::collections::{HashMap, VecDeque};
use std::sync::Arc;

/// The intervals the host aggregates and keeps, in seconds: 1 m, 5 m, 15 m, 1 h, 4 h, 1 d.
pub const INTERVALS: [u32; 6] = [60, 300, 900, 3_600, 14_400, 86_400];

/// Closed bars kept per symbol and interval by default (1,000 daily bars is almost three years).
pub const DEFAULT_HISTORY: usize = 1_000;

const NANOS_PER_SEC: u64 = 1_000_000_000;
const SECS_PER_DAY: u32 = 86_400;

/// Why an input could not be aggregated or a query answered.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CandleError {
    /// The interval does not divide a day (or is zero), so its bars could not be UTC-aligned.
    #[error("interval {0} s is not supported (it must divide 86400)")]
    UnsupportedInterval(u32),
    /// The query named an interval the host does not keep.
    #[error("interval {0} s is not kept (kept: 60, 300, 900, 3600, 14400, 86400)")]
    NotKept(u32),
    /// A candle whose interval does not divide the target interval.
    #[error("{symbol}: a {input} s candle cannot be folded into {target} s bars")]
    IntervalMismatch {
        /// Instrument.
        symbol: Arc<str>,
        /// The input candle's interval.
        input: u32,
        /// The aggregator's interval.
        target: u32,
    },
    /// A candle whose start is not a multiple of its own interval.
    #[error(
        "{symbol}: a {interval} s candle starting at {start} ns is not aligned to its interval"
    )]
    Misaligned {
        /// Instrument.
        symbol: Arc<str>,
        /// The input candle's interval.
        interval: u32,
        /// Its start.
        start: Timestamp,
    },
    /// Input older than (or, for candles, as old as) what was already folded in.
    #[error("{symbol}: input at {got} ns is not after the previous input at {previous} ns")]
    OutOfOrder {
        /// Instrument.
        symbol: Arc<str>,
        /// Time of the previous input.
        previous: Timestamp,
        /// Time of the refused input.
        got: Timestamp,
    },
    /// The volume sum does not fit a `Decimal`.
    #[error("{symbol}: volume overflows in the bar starting at {start} ns")]
    VolumeOverflow {
        /// Instrument.
        symbol: Arc<str>,
        /// Start of the bar.
        start: Timestamp,
    },
}

impl CandleError {
    /// The data-quality issue this error reports, if it is one (out-of-order input).
    pub fn quality_issue(&self) -> Option<QualityIssue> {
        match self {
            CandleError::OutOfOrder {
                symbol,
                previous,
                got,
            } => Some(QualityIssue::NonMonotonicTime {
                symbol: symbol.clone(),
                previous: *previous,
                got: *got,
            }),
            _ => None,
        }
    }
}

/// Start of the bucket of `interval_secs` containing `ts`.
pub fn bucket_start(ts: Timestamp, interval_secs: u32) -> Timestamp {
    let len = u64::from(interval_secs) * NANOS_PER_SEC;
    if len == 0 { ts } else { ts - ts % len }
}

fn check_interval(interval_secs: u32) -> Result<(), CandleError> {
    if interval_secs == 0 || !SECS_PER_DAY.is_multiple_of(interval_secs) {
        return Err(CandleError::UnsupportedInterval(interval_secs));
    }
    Ok(())
}

/// One symbol's state in an [`Aggregator`].
#[derive(Debug, Default)]
struct Series {
    /// The bar being built.
    open: Option<Candle>,
    /// Time of the last input folded in (kept across `flush`, so late data stays refused).
    last_input: Option<Timestamp>,
}

/// Folds trades or finer candles into bars of one interval, for any number of symbols.
#[derive(Debug)]
pub struct Aggregator {
    interval_secs: u32,
    series: HashMap<Arc<str>, Series>,
}

impl Aggregator {
    /// An aggregator for bars of `interval_secs`, which must divide a day.
    pub fn new(interval_secs: u32) -> Result<Aggregator, CandleError> {
        check_interval(interval_secs)?;
        Ok(Aggregator {
            interval_secs,
            series: HashMap::new(),
        })
    }

    /// The bar length in seconds.
    pub fn interval_secs(&self) -> u32 {
        self.interval_secs
    }

    /// Folds in one trade; returns the bar it closed, if it opened a new bucket.
    pub(crate) fn push_trade(&mut self, trade: &Trade) -> Result<Option<Candle>, CandleError> {
        let piece = Candle {
            symbol: trade.symbol.clone(),
            interval_secs: self.interval_secs,
            start: bucket_start(trade.ts, self.interval_secs),
            open: trade.price,
            high: trade.price,
            low: trade.price,
            close: trade.price,
            volume: trade.size,
        };
        self.fold(piece, trade.ts, false)
    }

    /// Folds in one closed candle of an interval that divides this one; returns the bar it
    /// closed, if it opened a new bucket.
    pub(crate) fn push_candle(&mut self, candle: &Candle) -> Result<Option<Candle>, CandleError> {
        let input = candle.interval_secs;
        if input == 0 || !self.interval_secs.is_multiple_of(input) {
            return Err(CandleError::IntervalMismatch {
                symbol: candle.symbol.clone(),
                input,
                target: self.interval_secs,
            });
        }
        if bucket_start(candle.start, input) != candle.start {
            return Err(CandleError::Misaligned {
                symbol: candle.symbol.clone(),
                interval: input,
                start: candle.start,
            });
        }
        let piece = Candle {
            interval_secs: self.interval_secs,
            start: bucket_start(candle.start, self.interval_secs),
            ..candle.clone()
        };
        self.fold(piece, candle.start, true)
    }

    /// `piece` is the input as a bar of this interval (its `start` is the bucket); `at` is the
    /// input's own time; `strict` refuses an input at the same time as the previous one.
    fn fold(
        &mut self,
        piece: Candle,
        at: Timestamp,
        strict: bool,
    ) -> Result<Option<Candle>, CandleError> {
        let series = self.series.entry(piece.symbol.clone()).or_default();
        if let Some(previous) = series.last_input
            && (at < previous || (strict && at == previous))
        {
            return Err(CandleError::OutOfOrder {
                symbol: piece.symbol,
                previous,
                got: at,
            });
        }
        let closed = match series.open.as_mut() {
            Some(bar) if bar.start == piece.start => {
                let volume = bar.volume.checked_add(piece.volume).ok_or_else(|| {
                    CandleError::VolumeOverflow {
                        symbol: bar.symbol.clone(),
                        start: bar.start,
                    }
                })?;
                bar.high = bar.high.max(piece.high);
                bar.low = bar.low.min(piece.low);
                bar.close = piece.close;
                bar.volume = volume;
                None
            }
            _ => series.open.replace(piece),
        };
        series.last_input = Some(at);
        Ok(closed)
    }

    /// The bar being built for `symbol`, if any.
    pub fn current(&self, symbol: &str) -> Option<&Candle> {
        self.series.get(symbol).and_then(|s| s.open.as_ref())
    }

    /// Closes and returns every open bar whose bucket ended at or before `now` (for a feed that
    /// went quiet), ordered by symbol.
    pub(crate) fn close_due(&mut self, now: Timestamp) -> Vec<Candle> {
        let len = u64::from(self.interval_secs) * NANOS_PER_SEC;
        let mut out: Vec<Candle> = self
            .series
            .values_mut()
            .filter(|s| {
                s.open
                    .as_ref()
                    .is_some_and(|bar| bar.start.saturating_add(len) <= now)
            })
            .filter_map(|s| s.open.take())
            .collect();
        out.sort_by(|a, b| a.symbol.cmp(&b.symbol));
        out
    }

    /// Closes and returns every open bar, ordered by symbol (the end of a feed).
    pub fn flush(&mut self) -> Vec<Candle> {
        let mut out: Vec<Candle> = self
            .series
            .values_mut()
            .filter_map(|s| s.open.take())
            .collect();
        out.sort_by(|a, b| a.symbol.cmp(&b.symbol));
        out
    }
}

/// Where a symbol's bars come from: the first trade or candle seen decides, so a feed that
/// sends both never counts the same volume twice.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Source {
    Trades,
    Candles(u32),
}

/// Aggregation into every interval of [`INTERVALS`] plus a bounded history of closed bars per
/// symbol and interval: what the market service keeps to answer `candles(symbol, interval,
/// limit)`.
///
/// Bars are built from a symbol's trades, or, if its first data is a candle, from its candles
/// of that interval (a replay of 1 m bars): those are kept as they are at their own interval
/// and folded into the longer ones. Quotes and books do not make bars (a mid price is not a
/// trade). Memory is bounded per symbol: `INTERVALS.len() × capacity` bars.
#[derive(Debug)]
pub struct CandleStore {
    aggregators: Vec<Aggregator>,
    capacity: usize,
    history: HashMap<(Arc<str>, u32), VecDeque<Candle>>,
    sources: HashMap<Arc<str>, Source>,
}

impl Default for CandleStore {
    fn default() -> Self {
        CandleStore::new(DEFAULT_HISTORY)
    }
}

impl CandleStore {
    /// A store keeping at most `capacity` closed bars per symbol and interval (at least 1).
    pub fn new(capacity: usize) -> CandleStore {
        let aggregators = INTERVALS
            .iter()
            .map(|&secs| Aggregator {
                interval_secs: secs,
                series: HashMap::new(),
            })
            .collect();
        CandleStore {
            aggregators,
            capacity: capacity.max(1),
            history: HashMap::new(),
            sources: HashMap::new(),
        }
    }

    /// Takes one market event; returns the bars it closed, shortest interval first (not the
    /// input candle itself, which is recorded as it is). Events that do not make bars for their
    /// symbol return nothing. An out-of-order input is refused before it reaches any interval.
    pub fn on_event(&mut self, event: &MarketEvent) -> Result<Vec<Candle>, CandleError> {
        let symbol = event.symbol();
        let source = match event {
            MarketEvent::Trade(_) => Source::Trades,
            MarketEvent::Candle(c) => Source::Candles(c.interval_secs),
            MarketEvent::Quote(_) | MarketEvent::Book(_) => return Ok(Vec::new()),
        };
        if *self.sources.entry(symbol.clone()).or_insert(source) != source {
            return Ok(Vec::new());
        }
        let mut closed = Vec::new();
        match event {
            MarketEvent::Trade(trade) => {
                for agg in &mut self.aggregators {
                    closed.extend(agg.push_trade(trade)?);
                }
            }
            MarketEvent::Candle(candle) => {
                if candle.interval_secs == 0
                    || bucket_start(candle.start, candle.interval_secs) != candle.start
                {
                    return Err(CandleError::Misaligned {
                        symbol: candle.symbol.clone(),
                        interval: candle.interval_secs,
                        start: candle.start,
                    });
                }
                if let Some(last) = self.last_of(&candle.symbol, candle.interval_secs)
                    && candle.start <= last.start
                {
                    return Err(CandleError::OutOfOrder {
                        symbol: candle.symbol.clone(),
                        previous: last.start,
                        got: candle.start,
                    });
                }
                for agg in &mut self.aggregators {
                    let target = agg.interval_secs;
                    if target > candle.interval_secs && target.is_multiple_of(candle.interval_secs)
                    {
                        closed.extend(agg.push_candle(candle)?);
                    }
                }
                if INTERVALS.contains(&candle.interval_secs) {
                    self.record(candle.clone());
                }
            }
            MarketEvent::Quote(_) | MarketEvent::Book(_) => {}
        }
        for bar in &closed {
            self.record(bar.clone());
        }
        Ok(closed)
    }

    fn last_of(&self, symbol: &Arc<str>, interval_secs: u32) -> Option<&Candle> {
        if let Some(agg) = self
            .aggregators
            .iter()
            .find(|a| a.interval_secs == interval_secs)
            && let Some(open) = agg.current(symbol)
        {
            return Some(open);
        }
        self.history
            .get(&(symbol.clone(), interval_secs))
            .and_then(|h| h.back())
    }

    fn record(&mut self, bar: Candle) {
        let ring = self
            .history
            .entry((bar.symbol.clone(), bar.interval_secs))
            .or_default();
        if ring.len() == self.capacity {
            ring.pop_front();
        }
        ring.push_back(bar);
    }

    /// Closes the bars whose bucket ended at or before `now`; returns them shortest interval
    /// first.
    pub(crate) fn close_due(&mut self, now: Timestamp) -> Vec<Candle> {
        let closed: Vec<Candle> = self
            .aggregators
            .iter_mut()
            .flat_map(|a| a.close_due(now))
            .collect();
        for bar in &closed {
            self.record(bar.clone());
        }
        closed
    }

    /// Closes every open bar (end of a feed); returns them shortest interval first.
    pub fn flush(&mut self) -> Vec<Candle> {
        let closed: Vec<Candle> = self
            .aggregators
            .iter_mut()
            .flat_map(Aggregator::flush)
            .collect();
        for bar in &closed {
            self.record(bar.clone());
        }
        closed
    }

    /// The last `limit` closed bars of `symbol` at `interval_secs`, oldest first (fewer if fewer
    /// are kept; none for a symbol without data). The bar still being built is not included:
    /// see [`CandleStore::current`].
    pub fn last(
        &self,
        symbol: &str,
        interval_secs: u32,
        limit: usize,
    ) -> Result<Vec<Candle>, CandleError> {
        if !INTERVALS.contains(&interval_secs) {
            return Err(CandleError::NotKept(interval_secs));
        }
        let key: (Arc<str>, u32) = (Arc::from(symbol), interval_secs);
        Ok(self.history.get(&key).map_or_else(Vec::new, |ring| {
            ring.iter()
                .skip(ring.len().saturating_sub(limit))
                .cloned()
                .collect()
        }))
    }

    /// The bar of `symbol` at `interval_secs` still being built, if any.
    pub fn current(&self, symbol: &str, interval_secs: u32) -> Result<Option<Candle>, CandleError> {
        let agg = self
            .aggregators
            .iter()
            .find(|a| a.interval_secs == interval_secs)
            .ok_or(CandleError::NotKept(interval_secs))?;
        Ok(agg.current(symbol).cloned())
    }

    /// Which kind of data makes `symbol`'s bars, once it has had any.
    pub fn source(&self, symbol: &str) -> Option<Kind> {
        self.sources.get(symbol).map(|s| match s {
            Source::Trades => Kind::Trade,
            Source::Candles(_) => Kind::Candle,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::replay;
    use crate::types::Side;
    use rust_decimal::Decimal;
    use std::collections::BTreeMap;
    use std::str::FromStr;

    const MIN: u64 = 60 * NANOS_PER_SEC;

    fn d(s: &str) -> Decimal {
        Decimal::from_str(s).unwrap()
    }

    fn bar(symbol: &str, start: Timestamp, o: &str, h: &str, l: &str, c: &str, v: &str) -> Candle {
        Candle {
            symbol: Arc::from(symbol),
            interval_secs: 60,
            start,
            open: d(o),
            high: d(h),
            low: d(l),
            close: d(c),
            volume: d(v),
        }
    }

    fn trade(symbol: &str, ts: Timestamp, price: &str, size: &str) -> Trade {
        Trade {
            symbol: Arc::from(symbol),
            price: d(price),
            size: d(size),
            aggressor: Side::Buy,
            ts,
        }
    }

    /// The bars of `interval` computed the plain way: group 1 m bars by bucket and fold.
    fn fold_by_hand(bars: &[Candle], interval: u32) -> Vec<Candle> {
        let mut groups: BTreeMap<Timestamp, Vec<&Candle>> = BTreeMap::new();
        for b in bars {
            let len = u64::from(interval) * NANOS_PER_SEC;
            groups.entry(b.start / len * len).or_default().push(b);
        }
        groups
            .into_iter()
            .map(|(start, group)| Candle {
                symbol: group[0].symbol.clone(),
                interval_secs: interval,
                start,
                open: group[0].open,
                high: group.iter().map(|b| b.high).max().unwrap(),
                low: group.iter().map(|b| b.low).min().unwrap(),
                close: group[group.len() - 1].close,
                volume: group.iter().map(|b| b.volume).sum(),
            })
            .collect()
    }

    #[test]
    fn aggregates_embedded_bars_like_a_plain_fold() {
        let bars: Vec<Candle> = replay::embedded_bars()
            .unwrap()
            .candles()
            .cloned()
            .collect();
        assert_eq!(bars.len(), 45_031);
        let mut store = CandleStore::new(100_000);
        let mut emitted: BTreeMap<u32, Vec<Candle>> = BTreeMap::new();
        for b in &bars {
            for c in store.on_event(&MarketEvent::Candle(b.clone())).unwrap() {
                emitted.entry(c.interval_secs).or_default().push(c);
            }
        }
        for c in store.flush() {
            emitted.entry(c.interval_secs).or_default().push(c);
        }
        for interval in [300, 900, 3_600, 14_400, 86_400] {
            let expected = fold_by_hand(&bars, interval);
            assert_eq!(emitted[&interval], expected, "interval {interval}");
            assert_eq!(
                store.last("BTC-PERP", interval, usize::MAX).unwrap(),
                expected
            );
        }
        // 2021-12-31 23:01 .. 2022-02-01 05:31 touches 33 UTC days, 189 four-hour, 751 hourly
        // and 9,007 five-minute buckets (counted separately from the CSV).
        let counts: Vec<usize> = [86_400, 14_400, 3_600, 300]
            .iter()
            .map(|i| emitted[i].len())
            .collect();
        assert_eq!(counts, vec![33, 189, 751, 9_007]);
        // The input 1 m bars are kept as they are.
        assert_eq!(
            store.last("BTC-PERP", 60, 2).unwrap(),
            bars[bars.len() - 2..].to_vec()
        );
    }

    #[test]
    fn five_minute_bar_by_hand() {
        // 00:03 and 00:04 belong to the 00:00 bucket, 00:05 opens the next one.
        let t0 = 1_640_995_200 * NANOS_PER_SEC; // 2022-01-01 00:00 UTC
        let mut agg = Aggregator::new(300).unwrap();
        assert_eq!(
            agg.push_candle(&bar("X", t0 + 3 * MIN, "10", "12", "9.5", "11", "1.25"))
                .unwrap(),
            None
        );
        assert_eq!(
            agg.push_candle(&bar("X", t0 + 4 * MIN, "11", "11.5", "8", "8.5", "0.75"))
                .unwrap(),
            None
        );
        let closed = agg
            .push_candle(&bar("X", t0 + 5 * MIN, "8.5", "9", "8.5", "9", "3"))
            .unwrap();
        let expected = Candle {
            interval_secs: 300,
            start: t0,
            ..bar("X", t0, "10", "12", "8", "8.5", "2.00")
        };
        assert_eq!(closed, Some(expected));
        assert_eq!(agg.current("X").map(|c| c.start), Some(t0 + 5 * MIN));
        assert_eq!(agg.flush().len(), 1);
        assert!(agg.flush().is_empty());
    }

    #[test]
    fn trades_make_aligned_bars_and_gaps_stay_empty() {
        let t0 = 1_640_995_200 * NANOS_PER_SEC;
        let mut agg = Aggregator::new(60).unwrap();
        assert_eq!(
            agg.push_trade(&trade("X", t0 + 5, "100.1", "1")).unwrap(),
            None
        );
        assert_eq!(
            agg.push_trade(&trade("X", t0 + 59 * NANOS_PER_SEC, "99.9", "0.5"))
                .unwrap(),
            None
        );
        // Nothing in 00:01 and 00:02: the bar of 00:03 follows the bar of 00:00 directly.
        let closed = agg
            .push_trade(&trade("X", t0 + 3 * MIN, "100", "2"))
            .unwrap()
            .unwrap();
        assert_eq!(
            closed,
            bar("X", t0, "100.1", "100.1", "99.9", "99.9", "1.5")
        );
        assert_eq!(agg.close_due(t0 + 4 * MIN - 1), vec![]);
        assert_eq!(
            agg.close_due(t0 + 4 * MIN),
            vec![bar("X", t0 + 3 * MIN, "100", "100", "100", "100", "2")]
        );
    }

    #[test]
    fn daily_and_four_hour_bars_align_to_utc() {
        let t = 1_641_038_400 * NANOS_PER_SEC + 17; // 2022-01-01 12:00 UTC plus a little
        assert_eq!(bucket_start(t, 86_400), 1_640_995_200 * NANOS_PER_SEC);
        assert_eq!(bucket_start(t, 14_400), 1_641_038_400 * NANOS_PER_SEC);
        assert_eq!(bucket_start(t, 3_600), 1_641_038_400 * NANOS_PER_SEC);
    }

    #[test]
    fn refuses_bad_intervals_and_late_data() {
        assert_eq!(
            Aggregator::new(7 * 86_400).unwrap_err(),
            CandleError::UnsupportedInterval(604_800)
        );
        assert_eq!(
            Aggregator::new(0).unwrap_err(),
            CandleError::UnsupportedInterval(0)
        );
        assert!(Aggregator::new(86_400).is_ok());
        let mut agg = Aggregator::new(300).unwrap();
        let mut four_min = bar("X", 0, "1", "1", "1", "1", "1");
        four_min.interval_secs = 240;
        assert!(matches!(
            agg.push_candle(&four_min),
            Err(CandleError::IntervalMismatch { .. })
        ));
        assert!(matches!(
            agg.push_candle(&bar("X", 30 * NANOS_PER_SEC, "1", "1", "1", "1", "1")),
            Err(CandleError::Misaligned { .. })
        ));
        agg.push_trade(&trade("X", 10 * MIN, "1", "1")).unwrap();
        let err = agg.push_trade(&trade("X", 9 * MIN, "1", "1")).unwrap_err();
        assert_eq!(
            err.quality_issue(),
            Some(QualityIssue::NonMonotonicTime {
                symbol: Arc::from("X"),
                previous: 10 * MIN,
                got: 9 * MIN
            })
        );
        // A late trade is refused even after a flush: the bar it belonged to is already out.
        agg.flush();
        assert!(agg.push_trade(&trade("X", 9 * MIN, "1", "1")).is_err());
        // Equal times are fine for trades, a repeated candle start is not.
        assert!(agg.push_trade(&trade("X", 10 * MIN, "1", "1")).is_ok());
        let mut agg = Aggregator::new(300).unwrap();
        agg.push_candle(&bar("X", MIN, "1", "1", "1", "1", "1"))
            .unwrap();
        assert!(
            agg.push_candle(&bar("X", MIN, "1", "1", "1", "1", "1"))
                .is_err()
        );
    }

    #[test]
    fn volume_overflow_is_an_error_not_a_panic() {
        let mut agg = Aggregator::new(60).unwrap();
        agg.push_trade(&trade("X", 1, "1", "1")).unwrap();
        let mut big = trade("X", 2, "1", "1");
        big.size = Decimal::MAX;
        assert!(matches!(
            agg.push_trade(&big),
            Err(CandleError::VolumeOverflow { .. })
        ));
    }

    #[test]
    fn store_keeps_a_bounded_history_per_symbol_and_interval() {
        let mut store = CandleStore::new(3);
        for i in 0..10u64 {
            store
                .on_event(&MarketEvent::Trade(trade("A", i * MIN, "1", "1")))
                .unwrap();
            store
                .on_event(&MarketEvent::Trade(trade("B", i * MIN, "2", "1")))
                .unwrap();
        }
        // Nine 1 m bars of each symbol closed; three are kept.
        let last = store.last("A", 60, 10).unwrap();
        assert_eq!(
            last.iter().map(|c| c.start).collect::<Vec<_>>(),
            vec![6 * MIN, 7 * MIN, 8 * MIN]
        );
        assert_eq!(store.last("A", 60, 1).unwrap()[0].start, 8 * MIN);
        assert_eq!(store.last("A", 60, 0).unwrap(), vec![]);
        assert_eq!(store.last("B", 300, 10).unwrap().len(), 1);
        assert_eq!(
            store.current("B", 300).unwrap().map(|c| c.start),
            Some(5 * MIN)
        );
        assert_eq!(store.last("C", 60, 10).unwrap(), vec![]);
        assert_eq!(
            store.last("A", 120, 10).unwrap_err(),
            CandleError::NotKept(120)
        );
        assert_eq!(store.source("A"), Some(Kind::Trade));
    }

    #[test]
    fn store_uses_the_first_source_of_a_symbol_only() {
        let mut store = CandleStore::new(10);
        store
            .on_event(&MarketEvent::Candle(bar("A", 0, "1", "1", "1", "1", "1")))
            .unwrap();
        // Trades of a symbol whose bars come from candles would count its volume twice.
        store
            .on_event(&MarketEvent::Trade(trade(
                "A",
                30 * NANOS_PER_SEC,
                "5",
                "100",
            )))
            .unwrap();
        let open = store.current("A", 300).unwrap().unwrap();
        assert_eq!((open.high, open.volume), (d("1"), d("1")));
        assert_eq!(store.source("A"), Some(Kind::Candle));
        // A repeated 1 m bar is refused and reported.
        let err = store
            .on_event(&MarketEvent::Candle(bar("A", 0, "1", "1", "1", "1", "1")))
            .unwrap_err();
        assert!(err.quality_issue().is_some());
    }
}
