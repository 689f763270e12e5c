//! [`EquityCurve`]: the equity samples a run report draws, taken at replay times.
//!
//! During a lockstep replay the driver samples after each event has settled
//! ([`crate::supervisor::Host`]'s pace), at the event's virtual time, so two runs of the same
//! replay record the same samples whatever the machine's load. The curve stays bounded: when it
//! holds [`MAX_SAMPLES`], every other sample is dropped and from then on only every second
//! event is sampled (then every fourth, …). Which samples survive depends only on how many
//! events were sampled, never on wall time.

use std::sync::{Mutex, PoisonError};

use rust_decimal::Decimal;

/// Most samples a curve holds.
pub const MAX_SAMPLES: usize = 2_048;

/// (host-clock ns, total equity) samples in time order.
#[derive(Debug, Default)]
pub struct EquityCurve(Mutex<Inner>);

#[derive(Debug, Default)]
struct Inner {
    samples: Vec<(u64, Decimal)>,
    /// Events offered so far.
    offered: u64,
    /// Keep one event in `stride` (a power of two).
    stride: u64,
}

impl EquityCurve {
    /// An empty curve.
    pub fn new() -> EquityCurve {
        EquityCurve::default()
    }

    /// Offers the equity after one event at `ts`. A zero equity (no account has traded yet)
    /// and a time not after the last sample are not recorded.
    pub fn offer(&self, ts: u64, equity: Decimal) {
        self.offer_with(ts, || equity);
    }

    /// [`EquityCurve::offer`] that computes the equity only for an event it samples.
    pub fn offer_with(&self, ts: u64, equity: impl FnOnce() -> Decimal) {
        let mut inner = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        let stride = inner.stride.max(1);
        let n = inner.offered;
        inner.offered += 1;
        if !n.is_multiple_of(stride) {
            return;
        }
        inner.record(ts, equity());
    }

    /// Records the last equity at `ts`, whatever the stride (the end of a run).
    pub fn finish(&self, ts: u64, equity: Decimal) {
        let mut inner = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        inner.record(ts, equity);
    }

    /// The samples so far.
    pub fn samples(&self) -> Vec<(u64, Decimal)> {
        let inner = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        inner.samples.clone()
    }
}

impl Inner {
    fn record(&mut self, ts: u64, equity: Decimal) {
        if equity.is_zero() || self.samples.last().is_some_and(|(t, _)| *t >= ts) {
            return;
        }
        self.samples.push((ts, equity));
        if self.samples.len() >= MAX_SAMPLES {
            let mut i = 0;
            self.samples.retain(|_| {
                i += 1;
                i % 2 == 1
            });
            self.stride = self.stride.max(1) * 2;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn equity_curve_is_bounded_and_fixed_by_the_events_offered() {
        let run = || {
            let c = EquityCurve::new();
            for i in 0..10_000u64 {
                c.offer(1_000 + i, Decimal::from(100 + i % 7));
            }
            c.finish(20_000, Decimal::from(99));
            c.samples()
        };
        let a = run();
        assert!(a.len() < MAX_SAMPLES, "{} samples", a.len());
        assert!(a.len() > MAX_SAMPLES / 4, "{} samples", a.len());
        assert!(a.windows(2).all(|w| w[0].0 < w[1].0), "time order");
        assert_eq!(a.first().map(|s| s.0), Some(1_000));
        assert_eq!(a.last().copied(), Some((20_000, Decimal::from(99))));
        assert_eq!(a, run());
    }

    #[test]
    fn equity_curve_skips_zero_equity_and_repeated_times() {
        let c = EquityCurve::new();
        c.offer(1, Decimal::ZERO);
        c.offer(2, Decimal::from(5));
        c.offer(2, Decimal::from(6));
        c.finish(2, Decimal::from(7));
        assert_eq!(c.samples(), [(2, Decimal::from(5))]);
    }
}
