//! Agent lifecycle: sleep (snapshot kept, instance released, subscriptions and timers kept),
//! waking by a message on the inbox, by a subscribed message and by a timer; timers on the
//! virtual clock; a thousand agents asleep and woken, with the memory they hold either way.

use std::sync::Arc;
use std::time::Duration;

use colony_host::bus::Envelope;
use colony_host::clock::Clock;
use colony_tests::{TestHost, guests};

const T0: u64 = 1_700_000_000_000_000_000;
const MS: u64 = 1_000_000;

async fn ask(t: &TestHost, subject: &str, text: &str) -> String {
    let env = Envelope::new(Arc::from("test"), subject, text.as_bytes().to_vec());
    match t.host.bus().request(env, Duration::from_secs(10)).await {
        Ok(reply) => String::from_utf8_lossy(&reply.payload).into_owned(),
        Err(e) => format!("error: {e}"),
    }
}

async fn state_of(t: &TestHost, name: &str) -> String {
    t.host
        .plugins()
        .await
        .into_iter()
        .find(|p| p.info.name == name)
        .map(|p| p.state)
        .unwrap_or_default()
}

/// This process's resident memory, in MiB (Linux `smaps_rollup`): `Rss` and its anonymous
/// part (heap, and the pooled linear memories' written pages).
fn resident_mib() -> (f64, f64) {
    let text = std::fs::read_to_string("/proc/self/smaps_rollup").unwrap_or_default();
    let kib = |key: &str| -> f64 {
        text.lines()
            .find(|l| l.starts_with(key))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    (kib("Rss:") / 1024.0, kib("Anonymous:") / 1024.0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sleeping_agent_keeps_its_snapshot_subscriptions_and_timers_and_wakes_for_each() {
    let t = TestHost::start_copies(
        guests::BUS_AGENT,
        &[(
            "napper",
            r#"{"subscribe":["news.>"],"answer":"seen"}"#,
            &["messaging.subscribe:news.>"],
        )],
        |c| c.clock = Clock::virtual_at(T0),
    )
    .await;
    assert_eq!(state_of(&t, "napper").await, "idle");
    assert_eq!(ask(&t, "agent.napper.inbox", "ping").await, "pong:1");

    // Asleep: no instance, no memory held; its snapshot (the ping count) is kept.
    assert!(t.host.sleep_agent("napper").await.unwrap());
    assert!(
        !t.host.sleep_agent("napper").await.unwrap(),
        "already asleep"
    );
    let p = t.host.plugins().await.remove(0);
    assert_eq!(
        (p.state.as_str(), p.memory_bytes, p.sleeps),
        ("sleeping", 0, 1)
    );

    // A message on its inbox wakes it; `restore` gave it back its count.
    assert_eq!(ask(&t, "agent.napper.inbox", "ping").await, "pong:2");
    t.host.settle().await;
    let p = t.host.plugins().await.remove(0);
    assert_eq!((p.state.as_str(), p.wakes), ("idle", 1));
    assert!(p.memory_bytes > 0);

    // A message on a subject it subscribed to in `init` wakes it: the subscription stayed on
    // the bus while it slept, and the new instance took it over (one delivery, not two).
    assert!(t.host.sleep_agent("napper").await.unwrap());
    assert_eq!(ask(&t, "news.today", "hello").await, "seen");
    let state = t.state().await;
    let received = state
        .get("napper", "received")
        .await
        .unwrap()
        .unwrap_or_default();
    assert_eq!(
        String::from_utf8_lossy(&received),
        "news.today|test|hello\n"
    );

    // A timer it set fires on the virtual clock and wakes it.
    assert_eq!(ask(&t, "agent.napper.inbox", "ping").await, "pong:3");
    t.host
        .deliver(
            "napper",
            colony_tests::message("agent.napper.inbox", b"timer:tick:1000:500"),
        )
        .await
        .unwrap();
    assert_eq!(t.host.timers().list("napper").len(), 1);
    assert!(t.host.sleep_agent("napper").await.unwrap());
    assert_eq!(t.host.timers().fire_due(T0 + 999 * MS), 0, "not due yet");
    assert_eq!(t.host.timers().fire_due(T0 + 1_000 * MS), 1);
    t.host.settle().await;
    // Missed periods are skipped: one firing at 2,200 ms, the next due at 2,500 ms.
    assert_eq!(t.host.timers().fire_due(T0 + 2_200 * MS), 1);
    t.host.settle().await;
    let fired = state
        .get("napper", "timers")
        .await
        .unwrap()
        .unwrap_or_default();
    assert_eq!(
        String::from_utf8_lossy(&fired),
        format!("{}\n{}\n", T0 + 1_000 * MS, T0 + 2_200 * MS)
    );
    let p = t.host.plugins().await.remove(0);
    assert_eq!((p.state.as_str(), p.sleeps, p.wakes), ("idle", 3, 3));
    assert_eq!(t.host.timers().list("napper")[0].1, T0 + 2_500 * MS);

    // Each transition but active/idle is audited.
    let lifecycle = t.audited("lifecycle", Some("napper")).await;
    let sleeps = lifecycle
        .iter()
        .filter(|e| e.detail.contains("-> sleeping"))
        .count();
    let wakes = lifecycle
        .iter()
        .filter(|e| e.detail.contains("woken"))
        .count();
    assert_eq!((sleeps, wakes), (3, 3), "{lifecycle:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_agent_with_idle_sleep_configured_falls_asleep_on_its_own() {
    let t = TestHost::start_copies(guests::BUS_AGENT, &[("dozer", "{}", &[])], |c| {
        c.supervision.sleep_after_idle = Some(Duration::from_millis(200));
    })
    .await;
    t.eventually("dozer falls asleep", || async {
        state_of(&t, "dozer").await == "sleeping"
    })
    .await;
    assert_eq!(ask(&t, "agent.dozer.inbox", "ping").await, "pong:1");
    t.eventually("dozer falls asleep again", || async {
        state_of(&t, "dozer").await == "sleeping"
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_agents_sleep_and_each_wakes_for_a_message() {
    const N: usize = 1_000;
    let names: Vec<String> = (0..N).map(|i| format!("a{i:04}")).collect();
    let specs: Vec<(&str, &str, &[&str])> =
        names.iter().map(|n| (n.as_str(), "{}", &[][..])).collect();
    let t = TestHost::start_copies(guests::BUS_AGENT, &specs, |c| {
        c.max_instances = (N + 16) as u32;
    })
    .await;
    let held = |plugins: &[colony_host::supervisor::PluginStatus]| -> u64 {
        plugins.iter().map(|p| p.memory_bytes).sum()
    };
    let plugins = t.host.plugins().await;
    assert_eq!(plugins.len(), N);
    assert!(plugins.iter().all(|p| p.state == "idle"));
    let awake_memory = held(&plugins);
    let awake_rss = resident_mib();

    assert_eq!(t.host.sleep_all().await, N);
    let plugins = t.host.plugins().await;
    assert!(
        plugins
            .iter()
            .all(|p| p.state == "sleeping" && p.memory_bytes == 0)
    );
    // Give the pool a moment to return freed slots' pages.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let asleep_rss = resident_mib();

    // Each wakes for a request on its inbox and answers it (its first ping since start).
    for name in &names {
        assert_eq!(
            ask(&t, &format!("agent.{name}.inbox"), "ping").await,
            "pong:1",
            "{name}"
        );
    }
    t.host.settle().await;
    let plugins = t.host.plugins().await;
    assert!(plugins.iter().all(|p| p.state == "idle" && p.wakes == 1));
    let woken_memory = held(&plugins);
    let woken_rss = resident_mib();
    assert!(awake_memory > 0 && woken_memory >= awake_memory);
    eprintln!(
        "{N} agents: linear memory held awake {:.1} MiB, asleep 0, woken {:.1} MiB; \
         process RSS (anonymous) awake {:.1} ({:.1}) MiB, asleep {:.1} ({:.1}) MiB, woken {:.1} ({:.1}) MiB \
         (RSS includes the other tests running in this process)",
        awake_memory as f64 / 1048576.0,
        woken_memory as f64 / 1048576.0,
        awake_rss.0,
        awake_rss.1,
        asleep_rss.0,
        asleep_rss.1,
        woken_rss.0,
        woken_rss.1,
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_a_healthy_period_the_backoff_starts_again_at_its_first_delay() {
    let t = TestHost::start_with(&[(guests::PANIC_AGENT, "panic-agent.wasm")], |c| {
        c.supervision.healthy_after = Duration::from_millis(400);
    })
    .await;
    let trap = |n| t.host.deliver("panic-agent", TestHost::timer(n));
    trap(1).await.unwrap_err();
    // The next event waits for the pending restart (100 ms), then traps again at once.
    trap(2).await.unwrap_err();
    tokio::time::sleep(Duration::from_millis(700)).await;
    trap(3).await.unwrap_err();
    let lifecycle = t.audited("lifecycle", Some("panic-agent")).await;
    let delays: Vec<&str> = lifecycle
        .iter()
        .rev()
        .filter_map(|e| e.detail.rsplit_once("restart in ").map(|(_, d)| d))
        .collect();
    assert_eq!(delays, ["100 ms", "200 ms", "100 ms"], "{lifecycle:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_quarantined_agent_leaves_nothing_waiting_in_its_mailbox() {
    let t = TestHost::start_copies(
        guests::BUS_AGENT,
        &[(
            "fragile",
            r#"{"subscribe":["work.>"],"trap_on_message":true}"#,
            &["messaging.subscribe:work.>"],
        )],
        |c| c.supervision.max_restarts = 0,
    )
    .await;
    for i in 0..20 {
        let env = Envelope::new(Arc::from("test"), "work.item", format!("{i}").into_bytes());
        // Once it is quarantined it has left the bus: later publishes reach no one.
        let _ = t.host.bus().publish(env);
    }
    // The first message trapped it; what was queued behind is dead-lettered, so the bus
    // settles at once instead of waiting on a mailbox no one will read.
    assert!(t.host.bus().settle(Duration::from_secs(5)).await);
    let p = t.host.plugins().await.remove(0);
    assert_eq!((p.state.as_str(), p.mailbox_depth), ("quarantined", 0));
    let stats = t.host.bus().stats();
    let lifecycle = t.audited("lifecycle", Some("fragile")).await;
    let quarantine = lifecycle
        .iter()
        .find(|e| e.detail.contains("-> quarantined"))
        .expect("audited");
    let taken: u64 = quarantine
        .detail
        .split("; ")
        .find_map(|part| part.strip_suffix(" queued events taken off its mailbox"))
        .and_then(|n| n.parse().ok())
        .expect("the count is in the detail");
    assert!(taken > 0, "{}", quarantine.detail);
    assert_eq!(stats.dead_letters, taken, "{stats:?} {}", quarantine.detail);
}
