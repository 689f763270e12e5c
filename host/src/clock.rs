//! [`Clock`]: the time a host runs on — the system clock, or during a replay a virtual clock
//! that the replay driver moves forward, so the same data and plugins produce the same orders
//! every time.
//!
//! A virtual clock also drives the WASI clocks an agent reads ([`Clock::install`]):
//!
//! - `wasi:clocks/wall-clock` (Rust's `SystemTime`) reads the virtual time, resolution 1 ns;
//! - `wasi:clocks/monotonic-clock` (Rust's `Instant`) reads the same number, the virtual ns
//!   since the Unix epoch, not ns since the store was made: it never goes backwards, and an
//!   instance re-created after a trap or a hot swap continues on the same scale. Resolution
//!   1 ns.
//!
//! Between two `set`s the time stands still, however long the guest runs: an agent measuring
//! its own work with `Instant` sees zero, and one that busy-waits for the clock to move runs
//! into its fuel or deadline. Sleeping is not virtual: wasmtime-wasi implements
//! `subscribe-duration` (what `std::thread::sleep` uses) as a tokio sleep for the real
//! duration, and `subscribe-instant` as a real sleep for `when - now` measured on the virtual
//! monotonic clock. Either way the sleep counts against the event's real-time deadline (the
//! tokio timeout in [`crate::store::guarded`]), so it cannot hold an agent past its limits.
//!
//! The system clock leaves wasmtime-wasi's own clocks in place (real wall time; a monotonic
//! clock counting from the store's creation), so nothing changes for a host that is not
//! replaying. Limits (deadlines, timeouts) always run on real time.

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use wasmtime_wasi::WasiCtxBuilder;
use wasmtime_wasi::clocks::{HostMonotonicClock, HostWallClock};

/// The host's clock: the system clock, or a virtual one (a cheap clone shares the time).
#[derive(Clone, Default)]
pub struct Clock {
    /// The virtual time in ns since the Unix epoch; `None`: the system clock.
    virtual_ns: Option<Arc<AtomicU64>>,
}

impl Clock {
    /// The system clock (the default).
    pub fn system() -> Clock {
        Clock { virtual_ns: None }
    }

    /// A virtual clock that reads `ns` (since the Unix epoch) until it is moved.
    pub fn virtual_at(ns: u64) -> Clock {
        Clock {
            virtual_ns: Some(Arc::new(AtomicU64::new(ns))),
        }
    }

    /// Whether this is a virtual clock.
    pub fn is_virtual(&self) -> bool {
        self.virtual_ns.is_some()
    }

    /// The time in ns since the Unix epoch (0 before it, `u64::MAX` after the year 2554).
    pub fn now_ns(&self) -> u64 {
        match &self.virtual_ns {
            Some(t) => t.load(Ordering::Acquire),
            None => system_ns(),
        }
    }

    /// Moves a virtual clock to `ns`. The clock never goes backwards: an earlier time is
    /// ignored. Returns whether the clock now reads `ns` (true for the time it already reads;
    /// false for an earlier time, and always false for the system clock, which is not set).
    pub fn set(&self, ns: u64) -> bool {
        match &self.virtual_ns {
            Some(t) => t.fetch_max(ns, Ordering::AcqRel) <= ns,
            None => false,
        }
    }

    /// Moves a virtual clock forward by `by` (saturating) and returns the new time; the
    /// system clock is not moved and its current time is returned.
    pub fn advance(&self, by: Duration) -> u64 {
        let by = u64::try_from(by.as_nanos()).unwrap_or(u64::MAX);
        match &self.virtual_ns {
            Some(t) => {
                let before = t
                    .fetch_update(Ordering::AcqRel, Ordering::Acquire, |now| {
                        Some(now.saturating_add(by))
                    })
                    .unwrap_or_else(|now| now);
                before.saturating_add(by)
            }
            None => system_ns(),
        }
    }

    /// Makes a WASI context read this clock: a virtual clock replaces the wall and the
    /// monotonic clock (see the module doc); the system clock leaves wasmtime-wasi's own.
    pub fn install(&self, builder: &mut WasiCtxBuilder) {
        if let Some(t) = &self.virtual_ns {
            builder
                .wall_clock(VirtualWall(t.clone()))
                .monotonic_clock(VirtualMonotonic(t.clone()));
        }
    }
}

impl fmt::Debug for Clock {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.virtual_ns {
            Some(t) => write!(f, "Clock::virtual_at({})", t.load(Ordering::Acquire)),
            None => f.write_str("Clock::system()"),
        }
    }
}

fn system_ns() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
}

/// `wasi:clocks/wall-clock` over a virtual clock.
struct VirtualWall(Arc<AtomicU64>);

impl HostWallClock for VirtualWall {
    fn resolution(&self) -> Duration {
        Duration::from_nanos(1)
    }

    fn now(&self) -> Duration {
        Duration::from_nanos(self.0.load(Ordering::Acquire))
    }
}

/// `wasi:clocks/monotonic-clock` over a virtual clock: the virtual ns since the Unix epoch.
struct VirtualMonotonic(Arc<AtomicU64>);

impl HostMonotonicClock for VirtualMonotonic {
    fn resolution(&self) -> u64 {
        1
    }

    fn now(&self) -> u64 {
        self.0.load(Ordering::Acquire)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// 2022-01-01T00:00:00Z.
    const T: u64 = 1_640_995_200_000_000_000;

    #[test]
    fn clock_virtual_reads_what_it_was_set_to() {
        let c = Clock::virtual_at(T);
        assert!(c.is_virtual());
        assert_eq!(c.now_ns(), T);
        assert!(c.set(T + 5));
        assert_eq!(c.now_ns(), T + 5);
        assert!(c.set(T + 5), "setting the time it reads is not an error");
        assert_eq!(c.advance(Duration::from_secs(60)), T + 5 + 60_000_000_000);
        assert_eq!(c.now_ns(), T + 5 + 60_000_000_000);
    }

    #[test]
    fn clock_virtual_never_goes_backwards() {
        let c = Clock::virtual_at(T);
        assert!(!c.set(T - 1));
        assert_eq!(c.now_ns(), T);
        assert!(!c.set(0));
        assert_eq!(c.now_ns(), T);
        c.set(u64::MAX);
        assert_eq!(c.advance(Duration::from_secs(1)), u64::MAX, "saturates");
        assert_eq!(c.now_ns(), u64::MAX);
    }

    #[test]
    fn clock_clones_share_the_time() {
        let driver = Clock::virtual_at(T);
        let reader = driver.clone();
        driver.set(T + 1);
        assert_eq!(reader.now_ns(), T + 1);
        // A separate virtual clock does not.
        let other = Clock::virtual_at(T);
        assert_eq!(other.now_ns(), T);
    }

    #[test]
    fn clock_system_is_the_default_and_cannot_be_set() {
        let c = Clock::default();
        assert!(!c.is_virtual());
        assert_eq!(format!("{c:?}"), "Clock::system()");
        let before = system_ns();
        assert!(!c.set(T));
        let now = c.now_ns();
        assert!(now >= before && now > T, "{now} is not the system time");
        assert!(c.advance(Duration::from_secs(3600)) < before + 3_600_000_000_000);
    }

    #[test]
    fn clock_wasi_adapters_follow_the_virtual_time() {
        let c = Clock::virtual_at(T);
        let Some(t) = &c.virtual_ns else {
            unreachable!("a virtual clock")
        };
        let (wall, mono) = (VirtualWall(t.clone()), VirtualMonotonic(t.clone()));
        assert_eq!(wall.now(), Duration::from_nanos(T));
        assert_eq!(mono.now(), T);
        assert_eq!(
            (wall.resolution(), mono.resolution()),
            (Duration::from_nanos(1), 1)
        );
        c.advance(Duration::from_millis(250));
        assert_eq!(wall.now(), Duration::from_nanos(T + 250_000_000));
        assert_eq!(mono.now(), T + 250_000_000);
        assert_eq!(
            format!("{c:?}"),
            format!("Clock::virtual_at({})", T + 250_000_000)
        );
    }
}
