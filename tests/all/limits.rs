//! Hostile guests: each is contained with an error naming the limit it hit, and the host
//! keeps serving a well-behaved agent and tool in the same run.

use colony_host::store::CallError;
use colony_tests::{TestHost, guests};

/// Every hostile agent and tool beside a good agent and a good tool in one host.
async fn zoo() -> TestHost {
    TestHost::start(&[
        (guests::GOOD_AGENT, "good-agent.wasm"),
        (guests::LOOP_AGENT, "loop-agent.wasm"),
        (guests::MEMBOMB_AGENT, "membomb-agent.wasm"),
        (guests::STACK_AGENT, "stack-agent.wasm"),
        (guests::PANIC_AGENT, "panic-agent.wasm"),
        (guests::FLOOD_AGENT, "flood-agent.wasm"),
        (guests::GOOD_TOOL, "good-tool.wasm"),
        (guests::LOOP_TOOL, "loop-tool.wasm"),
    ])
    .await
}

fn limit_of(r: Result<(), CallError>) -> String {
    match r {
        Err(e) => match e.limit() {
            Some(l) => {
                assert!(e.to_string().contains(&l.to_string()), "{e}");
                l.name().to_string()
            }
            None => panic!("expected a limit, got: {e}"),
        },
        Ok(()) => panic!("expected a limit, the event succeeded"),
    }
}

async fn assert_good_still_serves(t: &TestHost, now: u64) {
    t.host
        .deliver("good-agent", TestHost::timer(now))
        .await
        .unwrap_or_else(|e| panic!("good agent stopped working: {e}"));
    let out = t.host.invoke_tool("good-tool", r#"{"a":1}"#).await.unwrap();
    assert_eq!(out, r#"{"len": 7}"#);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_agents_are_contained_and_name_their_limit() {
    let t = zoo().await;
    assert!(
        t.host.rejected().await.is_empty(),
        "{:?}",
        t.host.rejected().await
    );

    let cases = [
        ("loop-agent", "fuel"),
        ("membomb-agent", "memory"),
        ("stack-agent", "stack"),
        ("flood-agent", "output"),
    ];
    for (i, (agent, limit)) in cases.iter().enumerate() {
        let got = limit_of(t.host.deliver(agent, TestHost::timer(1)).await);
        assert_eq!(&got, limit, "{agent}");
        assert_good_still_serves(&t, i as u64).await;
    }

    let err = t
        .host
        .deliver("panic-agent", TestHost::timer(1))
        .await
        .unwrap_err();
    assert!(matches!(err, CallError::Trap { .. }), "{err}");
    let msg = err.to_string();
    assert!(
        msg.starts_with("plugin \"panic-agent\": on-timer: trapped:"),
        "{msg}"
    );
    assert!(msg.contains("unreachable"), "{msg}");
    assert_good_still_serves(&t, 10).await;

    // The trapped agents were re-instantiated for their next event.
    let again = limit_of(t.host.deliver("membomb-agent", TestHost::timer(2)).await);
    assert_eq!(again, "memory");
    let status = t.host.plugins().await;
    let membomb = status
        .iter()
        .find(|p| p.info.name == "membomb-agent")
        .unwrap();
    assert_eq!(membomb.failed, 2);
    assert!(membomb.restarts >= 1, "restarts {}", membomb.restarts);
    let good = status.iter().find(|p| p.info.name == "good-agent").unwrap();
    assert_eq!((good.delivered, good.failed), (5, 0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn infinite_loop_under_ample_fuel_hits_the_cpu_limit() {
    let t = TestHost::start_with(
        &[
            (guests::LOOP_AGENT, "loop-agent.wasm"),
            (guests::GOOD_AGENT, "good-agent.wasm"),
        ],
        |c| {
            c.agent_limits.fuel = u64::MAX / 4;
            c.agent_limits.cpu_ms = 50;
        },
    )
    .await;
    let err = t
        .host
        .deliver("loop-agent", TestHost::timer(1))
        .await
        .unwrap_err();
    assert_eq!(err.limit().map(|l| l.name()), Some("cpu"), "{err}");
    assert_eq!(
        err.to_string(),
        "plugin \"loop-agent\": on-timer: cpu time of 50 ms exceeded"
    );
    t.host
        .deliver("good-agent", TestHost::timer(2))
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spinning_agents_do_not_block_other_agents() {
    // Two agents spin for their whole CPU budget, as many as there are executor threads;
    // the good agent's events still complete meanwhile, because guests yield to the
    // executor at every epoch tick.
    let t = TestHost::start_with(
        &[
            (guests::LOOP_AGENT, "loop-a.wasm"),
            (guests::LOOP_AGENT, "loop-b.wasm"),
            (guests::GOOD_AGENT, "good-agent.wasm"),
        ],
        |c| {
            c.agent_limits.fuel = u64::MAX / 4;
            c.agent_limits.cpu_ms = 2_000;
        },
    )
    .await;
    let spinners: Vec<_> = ["loop-a", "loop-b"]
        .into_iter()
        .map(|name| {
            let host = t.host.clone();
            tokio::spawn(async move { host.deliver(name, TestHost::timer(1)).await })
        })
        .collect();
    for i in 0..20 {
        t.host
            .deliver("good-agent", TestHost::timer(i))
            .await
            .unwrap();
    }
    assert!(
        spinners.iter().all(|s| !s.is_finished()),
        "a spinning agent finished before the good agent's 20 events: the good agent was blocked"
    );
    for s in spinners {
        let err = s.await.unwrap().unwrap_err();
        assert_eq!(err.limit().map(|l| l.name()), Some("cpu"), "{err}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_tool_is_contained() {
    let t = zoo().await;
    let err = t.host.invoke_tool("loop-tool", "{}").await.unwrap_err();
    assert_eq!(err.limit().map(|l| l.name()), Some("fuel"), "{err}");
    assert!(
        err.to_string()
            .starts_with("plugin \"loop-tool\": invoke: fuel budget of 200000000 exhausted"),
        "{err}"
    );
    assert_good_still_serves(&t, 1).await;

    let big = format!("\"{}\"", "x".repeat(2 * 1024 * 1024));
    let err = t.host.invoke_tool("good-tool", &big).await.unwrap_err();
    assert_eq!(err.limit().map(|l| l.name()), Some("payload"), "{err}");
    let err = t
        .host
        .invoke_tool("good-tool", "not json")
        .await
        .unwrap_err();
    assert!(err.to_string().contains("arguments are not JSON"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_agent_that_keeps_trapping_is_quarantined() {
    let t = TestHost::start(&[
        (guests::PANIC_AGENT, "panic-agent.wasm"),
        (guests::GOOD_AGENT, "good-agent.wasm"),
    ])
    .await;
    // Each failure is followed by a restart after a backoff (100 ms, doubling); one more
    // failure than `max_restarts` within the window quarantines.
    let max = colony_host::agent::Supervision::default().max_restarts;
    for i in 0..=max {
        let err = t
            .host
            .deliver("panic-agent", TestHost::timer(i.into()))
            .await
            .unwrap_err();
        assert!(matches!(err, CallError::Trap { .. }), "{err}");
    }
    let err = t
        .host
        .deliver("panic-agent", TestHost::timer(9))
        .await
        .unwrap_err();
    assert!(err.to_string().contains("quarantined"), "{err}");
    let status = t.host.plugins().await;
    assert!(
        status
            .iter()
            .any(|p| p.info.name == "panic-agent" && p.quarantined && p.state == "quarantined")
    );
    t.host
        .deliver("good-agent", TestHost::timer(1))
        .await
        .unwrap();

    // Every transition is audited: the restarts with their backoff, then the quarantine.
    let lifecycle = t.audited("lifecycle", Some("panic-agent")).await;
    let details: Vec<&str> = lifecycle.iter().map(|e| e.detail.as_str()).collect();
    for delay in [
        "restart in 100 ms",
        "restart in 200 ms",
        "restart in 1600 ms",
    ] {
        assert!(
            details.iter().any(|d| d.contains(delay)),
            "{delay}: {details:?}"
        );
    }
    assert!(
        details
            .iter()
            .any(|d| d.starts_with("failed -> quarantined")
                || d.contains("-> quarantined: 6 failures")),
        "{details:?}"
    );

    // An operator releases it: it runs again (and traps again, as this guest always does).
    assert!(
        t.host
            .release_agent("panic-agent", "operator")
            .await
            .unwrap()
    );
    assert!(
        !t.host
            .release_agent("panic-agent", "operator")
            .await
            .unwrap()
    );
    let err = t
        .host
        .deliver("panic-agent", TestHost::timer(10))
        .await
        .unwrap_err();
    assert!(matches!(err, CallError::Trap { .. }), "{err}");
    let lifecycle = t.audited("lifecycle", Some("panic-agent")).await;
    assert!(
        lifecycle
            .iter()
            .any(|e| e.detail.contains("released by operator")),
        "{lifecycle:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wasi_is_deny_by_default() {
    // (Checked to fail when the host's WASI context inherits the environment.)
    let t = TestHost::start(&[(guests::WASI_PROBE_AGENT, "wasi-probe-agent.wasm")]).await;
    let plugins = t.host.plugins().await;
    assert!(
        plugins[0]
            .info
            .imports
            .iter()
            .any(|i| i.starts_with("wasi:sockets/tcp")),
        "the probe must import sockets to be a real test: {:?}",
        plugins[0].info.imports
    );
    t.host
        .deliver("wasi-probe-agent", TestHost::timer(1))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_log_flood_is_capped_per_event_and_counted() {
    use colony_host::interfaces::log::LINES_PER_CALL;
    let t = TestHost::start(&[(guests::GOOD_AGENT, "good-agent.wasm")]).await;
    let flood = |n: u32| colony_tests::message("test", format!("log:{n}").as_bytes());
    // Logging is not an error: the event succeeds, the excess is dropped and counted.
    t.host.deliver("good-agent", flood(1_000)).await.unwrap();
    let status = t.host.plugins().await;
    assert_eq!(status[0].log_dropped, u64::from(1_000 - LINES_PER_CALL));
    // The cap is per event: the next event may log again.
    t.host
        .deliver("good-agent", flood(LINES_PER_CALL))
        .await
        .unwrap();
    assert_eq!(
        t.host.plugins().await[0].log_dropped,
        u64::from(1_000 - LINES_PER_CALL)
    );
}

/// A component whose one core module declares an initial table of `elements`.
fn big_table_component(elements: u32) -> Vec<u8> {
    wat::parse_str(format!(
        "(component (core module $m (table {elements} funcref)) (core instance (instantiate $m)))"
    ))
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_oversized_initial_memory_or_table_is_refused_naming_the_limit() {
    // 200 MiB of initial memory, 200,000 initial table elements: more than any plugin's
    // limits, which the pooling allocator used to refuse at compile time as "does not fit in
    // pooling allocator requirements".
    let t = TestHost::start(&[
        (guests::BIGMEM_AGENT, "bigmem-agent.wasm"),
        (guests::GOOD_AGENT, "good-agent.wasm"),
    ])
    .await;
    std::fs::write(
        t.plugins_dir().join("bigtable.wasm"),
        big_table_component(200_000),
    )
    .unwrap();
    t.host.sync().await;
    let mut rejected = t.host.rejected().await;
    rejected.sort_by(|a, b| a.file.cmp(&b.file));
    assert_eq!(rejected.len(), 2, "{rejected:?}");
    // 200 MiB of static data plus the guest's stack: 205,888 KiB.
    assert_eq!(
        rejected[0].reason,
        "cannot start within its limits: initial memory limit of 128 MiB exceeded (asked for \
         205888 KiB) (the largest limit of agents and tools)"
    );
    assert_eq!(
        rejected[1].reason,
        "cannot start within its limits: initial table limit of 100000 elements exceeded (the \
         largest limit of agents and tools)"
    );
    t.host
        .deliver("good-agent", TestHost::timer(1))
        .await
        .unwrap();
}

#[test]
fn initial_sizes_are_read_before_compiling_and_checked_per_kind() {
    use colony_host::limits::{InitialSizes, LimitExceeded, Limits};
    // 1,281 pages: 80 MiB and 64 KiB, over the agent limit, within the tool limit.
    let bytes = wat::parse_str(
        "(component (core module $m (memory 1281) (table 10 funcref)) \
         (core instance (instantiate $m)))",
    )
    .unwrap();
    let sizes = InitialSizes::of(&bytes);
    assert_eq!(
        sizes,
        InitialSizes {
            memory_bytes: 1281 * 64 * 1024,
            table_elements: 10
        }
    );
    assert_eq!(
        sizes.check(&Limits::agent_default()),
        Err(LimitExceeded::Memory {
            limit: 64 << 20,
            asked: 1281 * 64 * 1024
        })
    );
    assert_eq!(sizes.check(&Limits::tool_default()), Ok(()));
    assert_eq!(
        InitialSizes::of(&big_table_component(200_000)).check(&Limits::tool_default()),
        Err(LimitExceeded::Table(100_000))
    );
}

/// A core module whose `grow(n)` grows its table by `n` and returns what `table.grow` did.
const TABLE_GROWER: &str = r#"
    (module
      (table $t 1 funcref)
      (func (export "grow") (param i32) (result i32)
        (table.grow $t (ref.null func) (local.get 0))))
"#;

/// Grows a fresh instance's table by `n` under the host's engine (pooling allocator) and a
/// limiter for `limits`: what `table.grow` answered, or the error that ended the call.
async fn grow_table(limits: &colony_host::limits::Limits, n: i32) -> Result<i32, String> {
    use colony_host::engine::{EngineSettings, Runtime};
    use colony_host::limits::GuestLimiter;
    let runtime = Runtime::new(&EngineSettings::default(), None).unwrap();
    let engine = runtime.engine();
    let module = wasmtime::Module::new(engine, TABLE_GROWER).unwrap();
    let mut store = wasmtime::Store::new(engine, GuestLimiter::new(limits));
    store.limiter(|l| l);
    store.set_fuel(u64::MAX).unwrap();
    store.set_epoch_deadline(u64::MAX / 2);
    let instance = wasmtime::Instance::new_async(&mut store, &module, &[])
        .await
        .unwrap();
    let grow = instance
        .get_typed_func::<i32, i32>(&mut store, "grow")
        .unwrap();
    grow.call_async(&mut store, n).await.map_err(|e| {
        match e.downcast_ref::<colony_host::limits::LimitExceeded>() {
            Some(l) => l.to_string(),
            None => format!("{e:?}"),
        }
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_table_grow_past_the_limit_names_the_limit() {
    let limits = colony_host::limits::Limits::agent_default();
    // Within the table limit (100,000 elements): the grow succeeds, though it is more than
    // the pooling allocator's default table size (20,000), which used to answer -1 silently.
    assert_eq!(grow_table(&limits, 50_000).await, Ok(1));
    // Past it: the call ends with the limit named, not a silent -1.
    assert_eq!(
        grow_table(&limits, 150_000).await,
        Err("table limit of 100000 elements exceeded".to_string())
    );
}

/// A panic's message and location reach the caller and the agent's status, with only the
/// trapping event's stderr: panic-agent writes a line on every message, which the error of
/// its next, panicking timer event must not show.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panicking_agents_error_carries_its_panic_and_only_that_events_stderr() {
    let t = TestHost::start(&[(guests::PANIC_AGENT, "panic-agent.wasm")]).await;
    t.host
        .deliver(
            "panic-agent",
            colony_tests::message("agent.panic-agent.inbox", b"hello"),
        )
        .await
        .unwrap();
    let err = t
        .host
        .deliver("panic-agent", TestHost::timer(1))
        .await
        .unwrap_err();
    assert!(matches!(err, CallError::Trap { .. }), "{err}");
    let msg = err.to_string();
    assert_eq!(
        msg,
        "plugin \"panic-agent\": on-timer: trapped: wasm `unreachable` executed (the guest \
         panicked or aborted); stderr: panicked at panic-agent/src/lib.rs:30:9: guest panic on purpose"
    );
    let status = t.host.plugins().await;
    let agent = status
        .iter()
        .find(|p| p.info.name == "panic-agent")
        .unwrap();
    assert_eq!(agent.last_error.as_deref(), Some(msg.as_str()));
}
