//! The seeded synthetic feed (`--feed synthetic`): quotes, trades and books for any number of
//! made-up symbols, for load tests and demos. The same seed and configuration give the same
//! events, in the same order, with the same timestamps, on every machine.
//!
//! Prices are a random walk in whole ticks (`i64`), turned into [`Decimal`] only as
//! `ticks × tick`, so no float ever touches a price; sizes are whole lots times `lot`. The
//! generator is splitmix64 (a 64-bit state, one add and two multiply-xorshifts per number),
//! written here so the sequence cannot change under a dependency upgrade.
//!
//! Each step advances the virtual clock by `step_ns` and, for every symbol in order: moves the
//! best bid by -2..=+2 ticks (never below one tick) with a spread of 1..=3 ticks, emits a
//! [`Quote`], with probability ½ a [`Trade`] at the touch (a buy lifts the ask, a sell hits the
//! bid), and every `book_every` steps a [`Book`] of `depth` levels per side whose top level is
//! the quote.

use super::types::{Book, BookLevel, MarketEvent, Quote, Side, Timestamp, Trade};
use rust_decimal::Decimal;
use std::collections::VecDeque;
use std::sync::Arc;

/// Highest best bid, in ticks: keeps `ticks × tick` far inside `Decimal`'s range.
const MAX_TICKS: i64 = 1_000_000_000_000;

/// Largest tick or lot accepted (so `MAX_TICKS × tick` cannot overflow).
const MAX_INCREMENT: i64 = 1_000_000;

/// Most symbols one generator makes.
pub(crate) const MAX_SYMBOLS: usize = 100_000;

/// Most book levels per side.
pub(crate) const MAX_DEPTH: usize = 1_000;

/// Why a configuration was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SyntheticError {
    /// Something in [`SyntheticConfig`] is out of range.
    #[error("synthetic feed: {0}")]
    Config(String),
}

/// What to generate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyntheticConfig {
    /// Seed of the generator.
    pub seed: u64,
    /// Instruments, in the order their events come within a step.
    pub symbols: Vec<Arc<str>>,
    /// Time of the first step.
    pub start: Timestamp,
    /// Virtual time between steps, in nanoseconds.
    pub step_ns: u64,
    /// Price increment.
    pub tick: Decimal,
    /// Size increment.
    pub lot: Decimal,
    /// Book levels per side.
    pub depth: usize,
    /// A book every this many steps per symbol (0: never).
    pub book_every: u32,
}

impl SyntheticConfig {
    /// `count` symbols named `SYN0000-USD`, `SYN0001-USD`, …, starting 2024-01-01 00:00 UTC,
    /// one step per millisecond, tick 0.01, lot 0.001, 10-level books every 10 steps.
    pub fn new(seed: u64, count: usize) -> SyntheticConfig {
        SyntheticConfig {
            seed,
            symbols: (0..count)
                .map(|i| Arc::from(format!("SYN{i:04}-USD")))
                .collect(),
            start: 1_704_067_200_000_000_000,
            step_ns: 1_000_000,
            tick: Decimal::new(1, 2),
            lot: Decimal::new(1, 3),
            depth: 10,
            book_every: 10,
        }
    }
}

/// splitmix64 (Steele, Lea, Flood 2014).
#[derive(Debug, Clone)]
struct SplitMix64(u64);

impl SplitMix64 {
    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A number in `0..n` (multiply-shift; the bias is below 2⁻⁵⁰ for the small `n` used here).
    fn below(&mut self, n: u64) -> u64 {
        ((u128::from(self.next_u64()) * u128::from(n)) >> 64) as u64
    }

    /// A number in `lo..=hi`.
    fn between(&mut self, lo: i64, hi: i64) -> i64 {
        lo + self.below(hi.abs_diff(lo) + 1) as i64
    }
}

#[derive(Debug, Clone)]
struct Instrument {
    symbol: Arc<str>,
    bid_ticks: i64,
}

/// The generator; an endless iterator of [`MarketEvent`]s.
#[derive(Debug, Clone)]
pub struct Synthetic {
    config: SyntheticConfig,
    rng: SplitMix64,
    instruments: Vec<Instrument>,
    step: u64,
    pending: VecDeque<MarketEvent>,
}

impl Synthetic {
    /// A generator for `config`, after checking it.
    pub fn new(config: SyntheticConfig) -> Result<Synthetic, SyntheticError> {
        let bad = |why: String| Err(SyntheticError::Config(why));
        if config.symbols.is_empty() || config.symbols.len() > MAX_SYMBOLS {
            return bad(format!(
                "{} symbols (1 to {MAX_SYMBOLS})",
                config.symbols.len()
            ));
        }
        let max = Decimal::from(MAX_INCREMENT);
        for (name, value) in [("tick", config.tick), ("lot", config.lot)] {
            if value <= Decimal::ZERO || value > max {
                return bad(format!(
                    "{name} {value} (must be above 0 and at most {max})"
                ));
            }
        }
        if config.step_ns == 0 {
            return bad("step_ns 0 (must be positive)".into());
        }
        if config.depth == 0 || config.depth > MAX_DEPTH {
            return bad(format!("depth {} (1 to {MAX_DEPTH})", config.depth));
        }
        let mut rng = SplitMix64(config.seed);
        let instruments = config
            .symbols
            .iter()
            .map(|symbol| Instrument {
                symbol: symbol.clone(),
                bid_ticks: rng.between(10_000, 1_000_000),
            })
            .collect();
        Ok(Synthetic {
            config,
            rng,
            instruments,
            step: 0,
            pending: VecDeque::new(),
        })
    }

    /// The configuration in use.
    pub fn config(&self) -> &SyntheticConfig {
        &self.config
    }

    fn price(&self, ticks: i64) -> Decimal {
        Decimal::from(ticks) * self.config.tick
    }

    fn size(&mut self, max_lots: i64) -> Decimal {
        Decimal::from(self.rng.between(1, max_lots)) * self.config.lot
    }

    /// The events of the next step: every symbol's quote, maybe a trade, maybe a book, all at
    /// the step's time.
    pub(crate) fn next_step(&mut self) -> Vec<MarketEvent> {
        let ts = self
            .config
            .start
            .saturating_add(self.step.saturating_mul(self.config.step_ns));
        let with_book = self.config.book_every > 0
            && self.step.is_multiple_of(u64::from(self.config.book_every));
        let mut out = Vec::with_capacity(self.instruments.len() * 3);
        for i in 0..self.instruments.len() {
            let moved = self.rng.between(-2, 2);
            let spread = self.rng.between(1, 3);
            let (symbol, bid_ticks) = {
                let inst = &mut self.instruments[i];
                inst.bid_ticks = (inst.bid_ticks + moved).clamp(1, MAX_TICKS);
                (inst.symbol.clone(), inst.bid_ticks)
            };
            let quote = Quote {
                symbol: symbol.clone(),
                bid: self.price(bid_ticks),
                bid_size: self.size(1_000),
                ask: self.price(bid_ticks + spread),
                ask_size: self.size(1_000),
                ts,
            };
            out.push(MarketEvent::Quote(quote.clone()));
            if self.rng.below(2) == 0 {
                let aggressor = if self.rng.below(2) == 0 {
                    Side::Buy
                } else {
                    Side::Sell
                };
                let price = match aggressor {
                    Side::Buy => quote.ask,
                    Side::Sell => quote.bid,
                };
                let size = self.size(100);
                out.push(MarketEvent::Trade(Trade {
                    symbol: symbol.clone(),
                    price,
                    size,
                    aggressor,
                    ts,
                }));
            }
            if with_book {
                let mut bids = vec![BookLevel {
                    price: quote.bid,
                    size: quote.bid_size,
                }];
                let mut asks = vec![BookLevel {
                    price: quote.ask,
                    size: quote.ask_size,
                }];
                for level in 1..self.config.depth as i64 {
                    if bid_ticks - level >= 1 {
                        let size = self.size(5_000);
                        bids.push(BookLevel {
                            price: self.price(bid_ticks - level),
                            size,
                        });
                    }
                    let size = self.size(5_000);
                    asks.push(BookLevel {
                        price: self.price(bid_ticks + spread + level),
                        size,
                    });
                }
                out.push(MarketEvent::Book(Book {
                    symbol,
                    bids,
                    asks,
                    ts,
                }));
            }
        }
        self.step += 1;
        out
    }
}

impl Iterator for Synthetic {
    type Item = MarketEvent;

    fn next(&mut self) -> Option<MarketEvent> {
        if self.pending.is_empty() {
            let step = self.next_step();
            self.pending.extend(step);
        }
        self.pending.pop_front()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::str::FromStr;

    fn run(seed: u64, symbols: usize, n: usize) -> Vec<MarketEvent> {
        Synthetic::new(SyntheticConfig::new(seed, symbols))
            .unwrap()
            .take(n)
            .collect()
    }

    #[test]
    fn splitmix64_matches_the_reference_sequence() {
        // First outputs of splitmix64 from state 0, as published with the reference code.
        let mut rng = SplitMix64(0);
        assert_eq!(rng.next_u64(), 0xE220_A839_7B1D_CDAF);
        assert_eq!(rng.next_u64(), 0x6E78_9E6A_A1B9_65F4);
    }

    #[test]
    fn same_seed_same_events_other_seed_other_events() {
        let a = run(42, 5, 5_000);
        assert_eq!(a, run(42, 5, 5_000));
        assert_ne!(a, run(43, 5, 5_000));
        assert_eq!(a.len(), 5_000);
    }

    #[test]
    fn events_are_consistent_and_exact() {
        let tick = Decimal::from_str("0.01").unwrap();
        let mut last_ts = 0;
        let mut kinds = [0usize; 4];
        for event in run(7, 3, 20_000) {
            assert!(event.ts() >= last_ts);
            last_ts = event.ts();
            match &event {
                MarketEvent::Quote(q) => {
                    kinds[0] += 1;
                    assert!(q.bid > Decimal::ZERO && q.bid < q.ask);
                    assert!(q.ask - q.bid <= tick * Decimal::from(3));
                    assert_eq!((q.bid / tick).fract(), Decimal::ZERO);
                    assert!(q.bid_size > Decimal::ZERO && q.ask_size > Decimal::ZERO);
                }
                MarketEvent::Trade(t) => {
                    kinds[1] += 1;
                    assert!(t.size > Decimal::ZERO);
                }
                MarketEvent::Book(b) => {
                    kinds[2] += 1;
                    assert_eq!(b.asks.len(), 10);
                    assert!(b.bids.windows(2).all(|w| w[0].price > w[1].price));
                    assert!(b.asks.windows(2).all(|w| w[0].price < w[1].price));
                    assert!(b.bids[0].price < b.asks[0].price);
                }
                MarketEvent::Candle(_) => kinds[3] += 1,
            }
        }
        assert!(
            kinds[0] > 0 && kinds[1] > 0 && kinds[2] > 0 && kinds[3] == 0,
            "{kinds:?}"
        );
    }

    #[test]
    fn a_step_covers_every_symbol_at_one_time() {
        let mut feed = Synthetic::new(SyntheticConfig::new(1, 4)).unwrap();
        let first = feed.next_step();
        let second = feed.next_step();
        let quotes: Vec<&str> = first
            .iter()
            .filter_map(|e| match e {
                MarketEvent::Quote(q) => Some(&*q.symbol),
                _ => None,
            })
            .collect();
        assert_eq!(
            quotes,
            ["SYN0000-USD", "SYN0001-USD", "SYN0002-USD", "SYN0003-USD"]
        );
        assert!(first.iter().all(|e| e.ts() == 1_704_067_200_000_000_000));
        assert!(second.iter().all(|e| e.ts() == 1_704_067_200_001_000_000));
        // Books on step 0 and every 10th step after.
        assert!(first.iter().any(|e| matches!(e, MarketEvent::Book(_))));
        assert!(!second.iter().any(|e| matches!(e, MarketEvent::Book(_))));
    }

    #[test]
    fn refuses_bad_configurations() {
        let mut c = SyntheticConfig::new(1, 0);
        assert!(Synthetic::new(c.clone()).is_err());
        c = SyntheticConfig::new(1, 1);
        c.tick = Decimal::ZERO;
        assert!(Synthetic::new(c.clone()).is_err());
        c = SyntheticConfig::new(1, 1);
        c.lot = Decimal::from(10_000_000);
        assert!(Synthetic::new(c.clone()).is_err());
        c = SyntheticConfig::new(1, 1);
        c.step_ns = 0;
        assert!(Synthetic::new(c.clone()).is_err());
        c = SyntheticConfig::new(1, 1);
        c.depth = 0;
        assert!(Synthetic::new(c).is_err());
    }
}
