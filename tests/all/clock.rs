//! The host's clock through the WASI clocks an agent reads: a virtual clock (as a replay
//! uses) gives the guest exactly the time it was set to, for the wall and the monotonic
//! clock, and stands still between sets, sleeps included; a host with the default system
//! clock gives the real time. A virtual clock also seeds the WASI randomness: the same seed
//! gives the same bytes, another seed other bytes; the system clock keeps the OS's.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use colony_host::clock::Clock;
use colony_host::state_store::StateStore;
use colony_tests::{TestHost, guests, message};

/// 2022-01-01T00:00:00Z in ns since the Unix epoch.
const T: u64 = 1_640_995_200_000_000_000;
const SECOND: u64 = 1_000_000_000;

async fn clock_host(clock: Option<Clock>) -> (TestHost, StateStore) {
    let t = TestHost::start_with(&[(guests::CLOCK_AGENT, "clock-agent.wasm")], |c| {
        if let Some(clock) = clock {
            c.clock = clock;
        }
        // The agent sleeps 20 ms of real time in one event; on a loaded CI machine that event
        // can take longer than the default 100 ms deadline, which is not what this tests.
        c.agent_limits.cpu_ms = 5_000;
    })
    .await;
    let state = StateStore::open(&t.dir.path().join("data/state.db"), Default::default())
        .await
        .unwrap();
    (t, state)
}

/// Sends `command` to the clock agent and returns the number it stored under `key`.
async fn ask(t: &TestHost, state: &StateStore, command: &str, key: &str) -> u64 {
    t.host
        .deliver("clock-agent", message("clock", command.as_bytes()))
        .await
        .unwrap_or_else(|e| panic!("{command}: {e}"));
    let value = state
        .get("clock-agent", key)
        .await
        .unwrap()
        .unwrap_or_else(|| panic!("{command}: nothing stored under {key}"));
    String::from_utf8(value).unwrap().parse().unwrap()
}

fn system_ns() -> u64 {
    u64::try_from(
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_nanos(),
    )
    .unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn agents_read_the_virtual_clock_through_wasi() {
    let clock = Clock::virtual_at(T);
    let (t, state) = clock_host(Some(clock.clone())).await;
    assert!(t.host.clock().is_virtual());
    assert_eq!(t.host.clock().now_ns(), T);

    // The agent was initialised at T and no virtual time has passed since.
    assert_eq!(ask(&t, &state, "now", "wall").await, T);
    assert_eq!(ask(&t, &state, "now", "mono").await, 0);

    // The driver moves the clock; the guest's wall and monotonic clocks follow exactly.
    assert!(clock.set(T + 60 * SECOND));
    assert_eq!(ask(&t, &state, "now", "wall").await, T + 60 * SECOND);
    assert_eq!(ask(&t, &state, "now", "mono").await, 60 * SECOND);

    // The host's handle is the same clock.
    t.host.clock().advance(Duration::from_micros(1_500));
    assert_eq!(
        ask(&t, &state, "now", "wall").await,
        T + 60 * SECOND + 1_500_000
    );
    assert_eq!(
        ask(&t, &state, "now", "mono").await,
        60 * SECOND + 1_500_000
    );

    // It never goes backwards.
    assert!(!clock.set(T));
    assert_eq!(
        ask(&t, &state, "now", "wall").await,
        T + 60 * SECOND + 1_500_000
    );

    // A sleep waits real time (and returns within the event's deadline), but the virtual
    // clock does not move during it.
    assert_eq!(ask(&t, &state, "sleep:20", "slept").await, 0);
    assert_eq!(clock.now_ns(), T + 60 * SECOND + 1_500_000);
}

#[tokio::test(flavor = "multi_thread")]
async fn by_default_agents_read_the_system_clock() {
    let before = system_ns();
    let (t, state) = clock_host(None).await;
    assert!(!t.host.clock().is_virtual());

    let wall = ask(&t, &state, "now", "wall").await;
    let mono = ask(&t, &state, "now", "mono").await;
    let after = system_ns();
    assert!(
        (before..=after).contains(&wall),
        "guest wall time {wall} is not between {before} and {after}"
    );
    // The agent's `init` ran after `before`, so its monotonic clock moved less since.
    assert!(mono <= after - before, "{mono} ns since init");

    // A real sleep shows on the real monotonic clock.
    let slept = ask(&t, &state, "sleep:20", "slept").await;
    assert!(slept >= 20_000_000, "slept {slept} ns");
}

/// What the clock agent `name` read from the three `wasi:random` interfaces: (`random`,
/// `insecure`, `insecure-seed`), as hex.
async fn read_random(t: &TestHost, state: &StateStore, name: &str) -> [String; 3] {
    t.host
        .deliver(name, message("clock", b"random"))
        .await
        .unwrap_or_else(|e| panic!("{name}: random: {e}"));
    let mut out: [String; 3] = Default::default();
    for (slot, key) in out.iter_mut().zip(["random", "insecure", "seed"]) {
        let value = state
            .get(name, key)
            .await
            .unwrap()
            .unwrap_or_else(|| panic!("{name}: nothing stored under {key}"));
        *slot = String::from_utf8(value).unwrap();
    }
    out
}

/// One run: two agents of the clock agent's build on `clock`, each asked twice.
async fn random_run(clock: Clock) -> Vec<[String; 3]> {
    let t = TestHost::start_with(
        &[
            (guests::CLOCK_AGENT, "clock-agent.wasm"),
            (guests::CLOCK_AGENT, "clock-twin.wasm"),
        ],
        |c| c.clock = clock,
    )
    .await;
    let state = StateStore::open(&t.dir.path().join("data/state.db"), Default::default())
        .await
        .unwrap();
    let mut out = Vec::new();
    for name in ["clock-agent", "clock-twin", "clock-agent", "clock-twin"] {
        out.push(read_random(&t, &state, name).await);
    }
    t.host.shutdown().await;
    out
}

#[tokio::test(flavor = "multi_thread")]
async fn wasi_random_in_a_replay_repeats_with_the_seed_and_changes_with_another() {
    let first = random_run(Clock::virtual_at(T).with_seed(42)).await;
    let again = random_run(Clock::virtual_at(T).with_seed(42)).await;
    assert_eq!(first, again, "the same seed gives the same bytes");
    // Each agent has its own stream, and a stream goes on between calls.
    for (i, a) in first.iter().enumerate() {
        for b in &first[i + 1..] {
            assert_ne!(a[0], b[0], "random repeated: {first:?}");
            assert_ne!(a[1], b[1], "insecure repeated: {first:?}");
        }
    }
    // The insecure seed is fixed for an instance, and differs between agents.
    assert_eq!(first[0][2], first[2][2]);
    assert_ne!(first[0][2], first[1][2]);

    let other = random_run(Clock::virtual_at(T).with_seed(43)).await;
    for (a, b) in first.iter().zip(&other) {
        for k in 0..3 {
            assert_ne!(a[k], b[k], "seed 43 read what seed 42 read");
        }
    }

    // The default seed of a replay is fixed too.
    let default = random_run(Clock::virtual_at(T)).await;
    assert_eq!(default, random_run(Clock::virtual_at(T)).await);
    assert_eq!(Clock::virtual_at(T).seed(), Some(0));
}

#[tokio::test(flavor = "multi_thread")]
async fn wasi_random_on_the_system_clock_is_the_os_randomness() {
    let first = random_run(Clock::system()).await;
    let again = random_run(Clock::system()).await;
    for (a, b) in first.iter().zip(&again) {
        assert_ne!(
            a[0], b[0],
            "two runs on the system clock read the same random bytes"
        );
        assert_ne!(
            a[2], b[2],
            "two runs on the system clock read the same insecure seed"
        );
    }
}
