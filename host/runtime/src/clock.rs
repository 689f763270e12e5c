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
//!
//! # Randomness
//!
//! A virtual clock also carries the run's **seed** (`colony run --seed N`, default
//! [`DEFAULT_REPLAY_SEED`]), and [`Clock::install`] gives each instance its own repeatable
//! WASI randomness from it: `wasi:random/random`, `wasi:random/insecure` and
//! `wasi:random/insecure-seed` are three BLAKE3 output streams keyed by (seed, plugin name,
//! instance number, interface). The instance number counts the instances made for that plugin
//! name on this clock (0 for the first, 1 after the first restart, a wake or a hot swap, …),
//! so a restarted agent does not replay its predecessor's numbers, and two runs that make the
//! same instances in the same order read the same bytes. These bytes are predictable by anyone
//! who knows the seed: that is the point of a replay, and the reason a replay is no place for
//! secrets. The system clock leaves wasmtime-wasi's OS-seeded generators in place.

use std::collections::HashMap;
use std::convert::Infallible;
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rand_core::TryRng;
use wasmtime_wasi::WasiCtxBuilder;
use wasmtime_wasi::clocks::{HostMonotonicClock, HostWallClock};

/// The seed of a replay's WASI randomness when `colony run --seed` chooses none.
pub const DEFAULT_REPLAY_SEED: u64 = 0;

/// The host's clock: the system clock, or a virtual one (a cheap clone shares the time and
/// the seeded randomness).
#[derive(Clone, Default)]
pub struct Clock {
    /// The virtual time in ns since the Unix epoch; `None`: the system clock.
    virtual_ns: Option<Arc<AtomicU64>>,
    /// The seeded WASI randomness of a virtual clock; `None`: the OS's.
    entropy: Option<Arc<Entropy>>,
}

/// A run's seed and how many instances each plugin name has had on it.
struct Entropy {
    seed: u64,
    instances: Mutex<HashMap<String, u64>>,
}

impl Entropy {
    fn new(seed: u64) -> Arc<Entropy> {
        Arc::new(Entropy {
            seed,
            instances: Mutex::new(HashMap::new()),
        })
    }

    /// The number of the next instance of `plugin` (0 for the first).
    fn next_instance(&self, plugin: &str) -> u64 {
        // A counter map cannot be left torn by a panic elsewhere.
        let mut instances = self
            .instances
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let n = instances.entry(plugin.to_owned()).or_insert(0);
        let this = *n;
        *n += 1;
        this
    }
}

impl Clock {
    /// The system clock (the default).
    pub fn system() -> Clock {
        Clock {
            virtual_ns: None,
            entropy: None,
        }
    }

    /// A virtual clock that reads `ns` (since the Unix epoch) until it is moved; its WASI
    /// randomness is seeded with [`DEFAULT_REPLAY_SEED`] ([`Clock::with_seed`] chooses).
    pub fn virtual_at(ns: u64) -> Clock {
        Clock {
            virtual_ns: Some(Arc::new(AtomicU64::new(ns))),
            entropy: Some(Entropy::new(DEFAULT_REPLAY_SEED)),
        }
    }

    /// This clock with its WASI randomness seeded by `seed` (instance numbers start again
    /// from 0). The system clock stays on OS randomness: a seed only means something when
    /// the time is virtual too.
    pub fn with_seed(mut self, seed: u64) -> Clock {
        if self.virtual_ns.is_some() {
            self.entropy = Some(Entropy::new(seed));
        }
        self
    }

    /// The seed of the WASI randomness; `None` on the system clock (OS randomness).
    pub fn seed(&self) -> Option<u64> {
        self.entropy.as_ref().map(|e| e.seed)
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

    /// Makes a WASI context, for a new instance of `plugin`, read this clock: a virtual
    /// clock replaces the wall and the monotonic clock and the three `wasi:random` sources
    /// (seeded for this plugin and instance; see the module doc); the system clock leaves
    /// wasmtime-wasi's own clocks and OS randomness.
    pub fn install(&self, plugin: &str, builder: &mut WasiCtxBuilder) {
        if let Some(t) = &self.virtual_ns {
            builder
                .wall_clock(VirtualWall(t.clone()))
                .monotonic_clock(VirtualMonotonic(t.clone()));
        }
        if let Some(e) = &self.entropy {
            let instance = e.next_instance(plugin);
            let stream = |name| SeededRandom::new(e.seed, plugin, instance, name);
            let mut seed = [0u8; 16];
            stream("wasi:random/insecure-seed").fill(&mut seed);
            builder
                .secure_random(stream("wasi:random/random"))
                .insecure_random(stream("wasi:random/insecure"))
                .insecure_random_seed(u128::from_le_bytes(seed));
        }
    }
}

/// One seeded WASI random source: the BLAKE3 extendable output of (seed, plugin, instance,
/// interface) under a Colony-specific key context, so the bytes are fixed by those four and
/// do not change with a dependency's generator.
struct SeededRandom(blake3::OutputReader);

impl SeededRandom {
    fn new(seed: u64, plugin: &str, instance: u64, interface: &str) -> SeededRandom {
        let mut h = blake3::Hasher::new_derive_key("colony replay wasi:random v1");
        h.update(&seed.to_le_bytes());
        // Lengths first, so no two (plugin, interface) pairs hash the same bytes.
        for part in [plugin, interface] {
            h.update(&(part.len() as u64).to_le_bytes());
            h.update(part.as_bytes());
        }
        h.update(&instance.to_le_bytes());
        SeededRandom(h.finalize_xof())
    }

    fn fill(&mut self, dst: &mut [u8]) {
        self.0.fill(dst);
    }
}

impl TryRng for SeededRandom {
    type Error = Infallible;

    fn try_next_u32(&mut self) -> Result<u32, Infallible> {
        let mut b = [0u8; 4];
        self.fill(&mut b);
        Ok(u32::from_le_bytes(b))
    }

    fn try_next_u64(&mut self) -> Result<u64, Infallible> {
        let mut b = [0u8; 8];
        self.fill(&mut b);
        Ok(u64::from_le_bytes(b))
    }

    fn try_fill_bytes(&mut self, dst: &mut [u8]) -> Result<(), Infallible> {
        self.fill(dst);
        Ok(())
    }
}

impl fmt::Debug for Clock {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (&self.virtual_ns, self.seed()) {
            (Some(t), Some(seed)) if seed != DEFAULT_REPLAY_SEED => write!(
                f,
                "Clock::virtual_at({}).with_seed({seed})",
                t.load(Ordering::Acquire)
            ),
            (Some(t), _) => write!(f, "Clock::virtual_at({})", t.load(Ordering::Acquire)),
            (None, _) => f.write_str("Clock::system()"),
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

    fn read(r: &mut SeededRandom) -> [u8; 16] {
        let mut b = [0u8; 16];
        r.fill(&mut b);
        b
    }

    #[test]
    fn clock_seeded_random_is_fixed_by_seed_plugin_instance_and_interface() {
        let base = read(&mut SeededRandom::new(1, "a", 0, "i"));
        assert_eq!(base, read(&mut SeededRandom::new(1, "a", 0, "i")));
        for other in [
            SeededRandom::new(2, "a", 0, "i"),
            SeededRandom::new(1, "b", 0, "i"),
            SeededRandom::new(1, "a", 1, "i"),
            SeededRandom::new(1, "a", 0, "j"),
            // Concatenations that would collide without the lengths.
            SeededRandom::new(1, "ai", 0, ""),
        ] {
            let mut other = other;
            assert_ne!(base, read(&mut other));
        }
        // A stream goes on: the next bytes are new ones.
        let mut r = SeededRandom::new(1, "a", 0, "i");
        let first = read(&mut r);
        assert_ne!(first, read(&mut r));
    }

    #[test]
    fn clock_counts_instances_per_plugin_and_a_seed_needs_a_virtual_clock() {
        let c = Clock::virtual_at(T);
        assert_eq!(c.seed(), Some(DEFAULT_REPLAY_SEED));
        let e = c.entropy.clone().unwrap_or_else(|| Entropy::new(99));
        assert_eq!(e.next_instance("a"), 0);
        assert_eq!(e.next_instance("a"), 1);
        assert_eq!(e.next_instance("b"), 0);
        // Clones share the count; a new seed starts it again.
        let shared = c.clone();
        assert_eq!(
            shared.entropy.as_ref().map(|e| e.next_instance("a")),
            Some(2)
        );
        let reseeded = c.with_seed(7);
        assert_eq!(reseeded.seed(), Some(7));
        assert_eq!(
            reseeded.entropy.as_ref().map(|e| e.next_instance("a")),
            Some(0)
        );
        assert_eq!(
            format!("{reseeded:?}"),
            format!("Clock::virtual_at({T}).with_seed(7)")
        );
        assert_eq!(Clock::system().with_seed(7).seed(), None);
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
