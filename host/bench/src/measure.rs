//! How the measurements are timed and summarised: [`Lap`], the bench thread's CPU clock for
//! the ratios against raw wasmtime; wall-clock nanoseconds per operation and the cost of the
//! timer itself for the throughput and latency measurements; medians and percentiles.

use std::time::{Duration, Instant};

/// A lap timed by the calling thread's CPU clock: what the thread itself ran, so a round in
/// which the bench thread was descheduled (a loaded machine) is not longer for it. The
/// micro-measurements (instantiate, event delivery, host calls, grant checks) run on the
/// thread that polls them from start to end, so this counts all their work and nothing
/// else; Colony's and raw wasmtime's rounds are timed alike.
pub(crate) struct Lap(u64);

impl Lap {
    pub(crate) fn start() -> Lap {
        Lap(colony_host::store::thread_cpu_ns())
    }

    /// CPU nanoseconds per operation since the start.
    pub(crate) fn per_op(&self, ops: u64) -> f64 {
        colony_host::store::thread_cpu_ns().saturating_sub(self.0) as f64 / ops.max(1) as f64
    }
}

/// Wall-clock nanoseconds per operation.
pub(crate) fn per_op(elapsed: Duration, ops: u64) -> f64 {
    elapsed.as_nanos() as f64 / ops.max(1) as f64
}

/// The median (the upper one of an even count); NaN of nothing.
pub(crate) fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v.get(v.len() / 2).copied().unwrap_or(f64::NAN)
}

/// The median and the 99th percentile (each the sample nearest it); NaN of nothing.
pub(crate) fn percentiles(mut v: Vec<f64>) -> (f64, f64) {
    v.sort_by(|a, b| a.total_cmp(b));
    let at = |q: f64| {
        v.get(((v.len() as f64 - 1.0) * q).round() as usize)
            .copied()
            .unwrap_or(f64::NAN)
    };
    (at(0.5), at(0.99))
}

/// What one `Instant::now()` … `elapsed()` pair costs, nanoseconds: taken off the per-order
/// timings of the orders measurement, which time each call on its own.
pub(crate) fn timer_overhead() -> f64 {
    const N: u32 = 100_000;
    let mut total = Duration::ZERO;
    for _ in 0..N {
        let t = Instant::now();
        total += std::hint::black_box(t).elapsed();
    }
    per_op(total, N.into())
}
