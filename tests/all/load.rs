//! Load-independent execution: nothing outside an agent changes what it does. These tests
//! saturate every core with busy processes ([`Stress`]: started by the test, each ending on
//! its own within a bound, killed when the test ends) and check that the compute limits
//! measure the guest, not the machine: a trivial agent at a tiny CPU budget never fails, a
//! looping one is still stopped by its budget, a wait costs no budget, a tool registration
//! does not slow another agent, and the demo's journal and report are the same under load as
//! on an idle machine.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use colony_host::state_store::StateStore;
use colony_tests::{TestHost, guests};

use crate::support::{colony, stderr, stdout};

/// The tests of this module measure the machine's load, so they run one at a time.
async fn exclusive() -> tokio::sync::MutexGuard<'static, ()> {
    static LOCK: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());
    LOCK.lock().await
}

/// Busy processes, one per core (a shell loop with no subprocess), each of which ends on its
/// own after `secs` even if the test process dies; killed when dropped.
pub struct Stress(Vec<Child>);

impl Stress {
    pub fn start(secs: u32) -> Stress {
        let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
        let script = format!("while [ $SECONDS -lt {secs} ]; do :; done");
        let children = (0..cores)
            .map(|_| {
                Command::new("bash")
                    .args(["-c", &script])
                    .stdin(Stdio::null())
                    .stdout(Stdio::null())
                    .stderr(Stdio::null())
                    .spawn()
                    .unwrap_or_else(|e| panic!("cannot start a busy process: {e}"))
            })
            .collect();
        // Let them get going before measuring anything.
        std::thread::sleep(Duration::from_millis(200));
        Stress(children)
    }
}

impl Drop for Stress {
    fn drop(&mut self) {
        for c in &mut self.0 {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_trivial_agent_at_a_tiny_cpu_budget_never_fails_under_load() {
    let _one_at_a_time = exclusive().await;
    let t = TestHost::start_with(&[(guests::GOOD_AGENT, "good-agent.wasm")], |c| {
        // 10 ms: a tenth of the default. A 10 ms wall-clock deadline fails within a few
        // hundred events on a loaded machine (a preemption or two outlast it).
        c.agent_limits.cpu_ms = 10;
    })
    .await;
    let _stress = Stress::start(300);
    let started = Instant::now();
    let mut n = 0u64;
    // Thousands of events, or as many as 90 s allow on a very slow machine.
    while n < 3_000 && started.elapsed() < Duration::from_secs(90) {
        t.host
            .deliver("good-agent", TestHost::timer(n))
            .await
            .unwrap_or_else(|e| panic!("event {n} failed under load: {e}"));
        n += 1;
    }
    assert!(n >= 1_000, "only {n} events in 90 s");
    let status = t.host.plugins().await;
    let good = status.iter().find(|p| p.info.name == "good-agent").unwrap();
    assert_eq!(
        (good.failed, good.restarts),
        (0, 0),
        "{:?}",
        good.last_error
    );
    assert_eq!(good.delivered, n);
}

/// Delivers one timer to the spinning `loop-agent` and returns the error and the wall time.
async fn spin_once(t: &TestHost) -> (colony_host::store::CallError, Duration) {
    let started = Instant::now();
    let err = t
        .host
        .deliver("loop-agent", TestHost::timer(1))
        .await
        .unwrap_err();
    (err, started.elapsed())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_looping_guest_is_stopped_by_its_cpu_budget_idle_and_under_load() {
    let _one_at_a_time = exclusive().await;
    let t = TestHost::start_with(&[(guests::LOOP_AGENT, "loop-agent.wasm")], |c| {
        c.agent_limits.fuel = u64::MAX / 4;
        c.agent_limits.cpu_ms = 50;
        c.agent_limits.hang_guard_ms = 20_000;
    })
    .await;
    let (idle, idle_wall) = spin_once(&t).await;
    let stress = Stress::start(120);
    let mut loaded = Vec::new();
    for _ in 0..3 {
        // A failed agent restarts after a backoff; wait it out so the next event runs.
        tokio::time::sleep(Duration::from_millis(1_500)).await;
        loaded.push(spin_once(&t).await);
    }
    drop(stress);
    for (err, wall) in std::iter::once((idle, idle_wall)).chain(loaded) {
        assert_eq!(err.limit().map(|l| l.name()), Some("cpu"), "{err}");
        assert_eq!(
            err.to_string(),
            "plugin \"loop-agent\": on-timer: cpu time of 50 ms exceeded"
        );
        // CPU time never runs ahead of wall time: the guest ran at least its budget.
        assert!(wall >= Duration::from_millis(49), "stopped after {wall:?}");
        // And it was stopped by its budget, not by the 20 s hang guard.
        assert!(wall < Duration::from_secs(15), "stopped after {wall:?}");
    }
}

/// The bus test agent's state value `key`.
async fn text(state: &StateStore, agent: &str, key: &str) -> String {
    state
        .get(agent, key)
        .await
        .unwrap()
        .map(|v| String::from_utf8_lossy(&v).into_owned())
        .unwrap_or_default()
}

fn inbox(agent: &str, text: &str) -> colony_host::agent::Event {
    colony_tests::message(&format!("agent.{agent}.inbox"), text.as_bytes())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wait_in_a_host_call_is_bounded_by_its_own_timeout_not_the_cpu_budget() {
    let t = TestHost::start_copies(
        guests::BUS_AGENT,
        &[
            ("asker", "{}", &["messaging.request:svc.>"]),
            (
                "mute",
                r#"{"subscribe": ["svc.mute"], "quiet": true}"#,
                &["messaging.subscribe:svc.mute"],
            ),
        ],
        |c| {
            c.agent_limits.cpu_ms = 20;
            c.agent_limits.hang_guard_ms = 2_000;
        },
    )
    .await;
    let state = t.state().await;
    // A 300 ms wait, far above the 20 ms CPU budget: the guest gets its timeout after the
    // whole 300 ms, and the event succeeds.
    let started = Instant::now();
    t.host
        .deliver("asker", inbox("asker", "req:svc.mute:300"))
        .await
        .unwrap_or_else(|e| panic!("a wait failed the event: {e}"));
    let waited = started.elapsed();
    assert_eq!(text(&state, "asker", "reply").await, "err:timeout");
    assert!(waited >= Duration::from_millis(300), "waited {waited:?}");

    // A wait longer than the hang guard is cut to end before it: the guest still gets its
    // timeout, the event is not ended.
    let started = Instant::now();
    t.host
        .deliver("asker", inbox("asker", "req:svc.mute:600000"))
        .await
        .unwrap_or_else(|e| panic!("a long wait failed the event: {e}"));
    let waited = started.elapsed();
    assert_eq!(text(&state, "asker", "reply").await, "err:timeout");
    assert!(
        // Ended a tenth of the guard before it (`Limits::wait_margin`).
        waited >= Duration::from_millis(1_750) && waited < Duration::from_secs(10),
        "waited {waited:?}"
    );
    let status = t.host.plugins().await;
    let asker = status.iter().find(|p| p.info.name == "asker").unwrap();
    assert_eq!(asker.failed, 0, "{:?}", asker.last_error);
}

/// `bytes` with a custom section appended (name `colony-test-pad`, payload `n`), so every
/// `n` is a different build of the same component that must be compiled again.
fn padded(bytes: &[u8], n: u64) -> Vec<u8> {
    let name = b"colony-test-pad";
    let payload = n.to_le_bytes();
    let mut section = vec![name.len() as u8];
    section.extend_from_slice(name);
    section.extend_from_slice(&payload);
    let mut out = bytes.to_vec();
    out.push(0); // custom section id
    out.push(section.len() as u8); // fits one LEB128 byte
    out.extend_from_slice(&section);
    out
}

/// The p99 of `times`.
fn p99(times: &mut [Duration]) -> Duration {
    times.sort();
    times[(times.len() * 99 / 100).min(times.len() - 1)]
}

/// Makes `n` requests to the probe agent's `ping` and returns their round-trip times.
async fn probe(t: &TestHost, n: usize) -> Vec<Duration> {
    let bus = t.host.bus();
    let mut times = Vec::with_capacity(n);
    for i in 0..n {
        let env =
            colony_host::bus::Envelope::new("test".into(), "agent.probe.inbox", b"ping".to_vec());
        let started = Instant::now();
        let reply = bus
            .request(env, Duration::from_secs(5))
            .await
            .unwrap_or_else(|e| panic!("probe request {i} failed: {e}"));
        times.push(started.elapsed());
        assert!(reply.payload.starts_with(b"pong:"), "{:?}", reply.payload);
    }
    times
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn registering_tools_in_a_loop_does_not_slow_another_agent() {
    let _one_at_a_time = exclusive().await;
    let dir = tempfile::tempdir().unwrap();
    let mut config = colony_tests::test_config(dir.path());
    colony_tests::install(&config.plugins_dir, guests::TOOLS_AGENT, "meta.wasm");
    colony_tests::install(&config.plugins_dir, guests::BUS_AGENT, "probe.wasm");
    config.agent_config.insert("meta".into(), "{}".into());
    config.agent_config.insert("probe".into(), "{}".into());
    // The probe answers `ping` on its inbox, which needs no grant.
    config.grants.insert(
        "meta".into(),
        colony_host::config::ConfigGrant {
            capabilities: vec!["tools.register".into()],
            digest: None,
        },
    );
    let host = colony_host::supervisor::Host::start(config).await.unwrap();
    let t = TestHost { dir, host };
    assert!(t.host.rejected().await.is_empty());
    probe(&t, 200).await; // warm up

    // Windows of probing alone and windows of probing while the meta agent registers a new
    // build (compiled and called twice in validation), interleaved, so that whatever else
    // the machine does weighs on both alike.
    let schema = std::fs::read(guests::SCHEMA_TOOL).unwrap();
    let compiles_before = t.host.loader().runtime().compile_count();
    let (mut idle, mut busy) = (Vec::new(), Vec::new());
    let registrations = 5u64;
    let mut last = Duration::from_millis(200);
    for n in 0..registrations {
        // Alone for as long as the last registration took, so both kinds of window are as
        // exposed to whatever else the machine is doing.
        let alone = Instant::now();
        while alone.elapsed() < last {
            idle.extend(probe(&t, 20).await);
        }
        let host = t.host.clone();
        let mut payload = b"register ".to_vec();
        payload.extend(padded(&schema, n));
        let started = Instant::now();
        let registering = tokio::spawn(async move {
            host.deliver("meta", colony_tests::message("agent.meta.inbox", &payload))
                .await
                .unwrap_or_else(|e| panic!("registration event {n}: {e}"));
        });
        while !registering.is_finished() {
            busy.extend(probe(&t, 20).await);
        }
        registering.await.unwrap();
        last = started.elapsed();
    }
    let compiles = t.host.loader().runtime().compile_count() - compiles_before;
    assert!(compiles >= registrations, "{compiles} compiles");
    let (idle_p99, busy_p99) = (p99(&mut idle), p99(&mut busy));
    eprintln!(
        "probe p99: alone {idle_p99:?} ({} requests), during {registrations} registrations \
         {busy_p99:?} ({} requests)",
        idle.len(),
        busy.len()
    );
    let status = t.host.plugins().await;
    let probe_status = status.iter().find(|p| p.info.name == "probe").unwrap();
    assert_eq!(probe_status.failed, 0);
    // Within 2x (with 100 us of slack for timer granularity on a quiet run).
    assert!(
        busy_p99 <= idle_p99 * 2 + Duration::from_micros(100),
        "probe p99 {busy_p99:?} during registrations, {idle_p99:?} alone"
    );
}

/// The order journal of a data directory: every row of `orders` and `order_events`, as text,
/// with the paper venue's run identity (`paper@<start ns>`, which keeps each run's orders apart
/// in one journal) written as `paper@RUN`.
async fn journal(data: &Path) -> String {
    use sqlx::Row;
    let url = format!("sqlite://{}?mode=ro", data.join("orders.db").display());
    let pool = sqlx::SqlitePool::connect(&url).await.unwrap();
    let mut out = String::new();
    for table in ["orders ORDER BY id", "order_events ORDER BY order_id, seq"] {
        let rows = sqlx::query(&format!("SELECT * FROM {table}"))
            .fetch_all(&pool)
            .await
            .unwrap();
        for row in rows {
            let cols: Vec<String> = (0..row.len())
                .map(|i| {
                    row.try_get::<Option<String>, _>(i)
                        .map(|v| match v {
                            Some(v) if v.starts_with("paper@") => "paper@RUN".into(),
                            Some(v) => v,
                            None => "NULL".into(),
                        })
                        .or_else(|_| row.try_get::<Option<i64>, _>(i).map(|v| format!("{v:?}")))
                        .or_else(|_| row.try_get::<Option<bool>, _>(i).map(|v| format!("{v:?}")))
                        .unwrap_or_else(|e| format!("?{e}"))
                })
                .collect();
            out.push_str(&cols.join("|"));
            out.push('\n');
        }
    }
    pool.close().await;
    out
}

/// The JSON report without what measures the machine rather than the run (wall-clock times,
/// rates, the data directory's path).
fn repeatable_part(mut report: serde_json::Value) -> serde_json::Value {
    fn strip(v: &mut serde_json::Value) {
        match v {
            serde_json::Value::Object(map) => {
                map.retain(|k, _| {
                    !matches!(
                        k.as_str(),
                        "wall" | "busy_ms" | "elapsed_s" | "events_per_sec" | "memory_bytes"
                    )
                });
                map.values_mut().for_each(strip);
            }
            serde_json::Value::Array(items) => items.iter_mut().for_each(strip),
            _ => {}
        }
    }
    strip(&mut report);
    report
}

/// Runs the demo in a fresh data directory under `dir` with `extra` arguments; returns its
/// journal and the repeatable part of its JSON report.
async fn demo_run(dir: &Path, extra: &[&str]) -> (String, serde_json::Value) {
    let json = dir.join("report.json");
    let mut args = vec![
        "run",
        "--no-progress",
        "--report-json",
        json.to_str().unwrap(),
    ];
    args.extend_from_slice(extra);
    let data = dir.join("data");
    let out = colony(&data, &args);
    assert!(out.status.success(), "{}\n{}", stdout(&out), stderr(&out));
    let report: serde_json::Value = serde_json::from_slice(&std::fs::read(&json).unwrap()).unwrap();
    (journal(&data).await, repeatable_part(report))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_demo_gives_the_same_journal_and_report_idle_and_under_load() {
    let _one_at_a_time = exclusive().await;
    let root = tempfile::tempdir().unwrap();
    let (journal0, report0) = demo_run(&root.path().join("idle"), &[]).await;
    assert!(journal0.lines().count() > 100, "{journal0}");
    let stress = Stress::start(900);
    for i in 0..3 {
        let (journal, report) = demo_run(&root.path().join(format!("loaded{i}")), &[]).await;
        assert!(
            journal == journal0,
            "run {i} under load: the journal differs"
        );
        assert_eq!(report, report0, "run {i} under load: the report differs");
    }
    // The same holds for two runs with the same injected trap.
    let trap = ["--inject-trap", "analyst:20000"];
    let (journal_a, report_a) = demo_run(&root.path().join("trap-a"), &trap).await;
    let (journal_b, report_b) = demo_run(&root.path().join("trap-b"), &trap).await;
    drop(stress);
    assert!(
        journal_a == journal_b,
        "two trap-injected runs: the journals differ"
    );
    assert_eq!(
        report_a, report_b,
        "two trap-injected runs: the reports differ"
    );
}
