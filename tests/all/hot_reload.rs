//! The plugins folder of a running host: files added, changed and removed are picked up
//! without a restart; a changed agent is swapped after its queued events and hands its
//! snapshot to the new build.

use colony_tests::{TestHost, guests, install};

fn count_in(bytes: Option<Vec<u8>>) -> u64 {
    let bytes = bytes.expect("no count in state");
    u64::from_le_bytes(bytes.try_into().expect("count is 8 bytes"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropped_in_plugins_load_and_removed_ones_unload() {
    let t = TestHost::start(&[(guests::GOOD_AGENT, "good-agent.wasm")]).await;
    let _watcher = t.host.watch().unwrap();
    assert!(t.host.tools().await.is_empty());

    // Write under another name and rename, as an operator's deploy script should; the
    // watcher also copes with a plain copy (a half-written file is refused, then retried).
    let tmp = t.dir.path().join("good-tool.wasm.part");
    std::fs::copy(guests::GOOD_TOOL, &tmp).unwrap();
    std::fs::rename(&tmp, t.plugins_dir().join("good-tool.wasm")).unwrap();
    let host = t.host.clone();
    t.eventually("good-tool is loaded", || {
        let host = host.clone();
        async move { host.tools().await.iter().any(|s| s.name == "good-tool") }
    })
    .await;
    assert_eq!(
        t.host.invoke_tool("good-tool", "{}").await.unwrap(),
        r#"{"len": 2}"#
    );

    install(&t.plugins_dir(), guests::PANIC_AGENT, "panic-agent.wasm");
    t.eventually("panic-agent is loaded (plain copy)", || {
        let host = host.clone();
        async move {
            host.plugins()
                .await
                .iter()
                .any(|p| p.info.name == "panic-agent")
        }
    })
    .await;

    std::fs::remove_file(t.plugins_dir().join("good-tool.wasm")).unwrap();
    t.eventually("good-tool is unloaded", || {
        let host = host.clone();
        async move { host.tools().await.is_empty() }
    })
    .await;
    let err = t.host.invoke_tool("good-tool", "{}").await.unwrap_err();
    assert!(err.to_string().contains("no such tool"), "{err}");
    t.host
        .deliver("good-agent", TestHost::timer(1))
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_changed_agent_is_swapped_after_its_queued_events_with_its_snapshot() {
    let t = TestHost::start(&[(guests::GOOD_AGENT, "good-agent.wasm")]).await;
    for i in 0..3 {
        t.host
            .deliver("good-agent", TestHost::timer(i))
            .await
            .unwrap();
    }
    // Queue 100 events, then change the plugin (a sidecar bumps its version) and swap.
    for i in 0..100 {
        t.host.broadcast(TestHost::timer(100 + i)).await;
    }
    std::fs::write(
        t.plugins_dir().join("good-agent.toml"),
        "version = \"0.2.0\"\n",
    )
    .unwrap();
    let report = t.host.sync().await;
    assert_eq!(report.swapped, vec!["good-agent"], "{report:?}");
    let plugins = t.host.plugins().await;
    assert_eq!(plugins[0].info.version, "0.2.0");

    // Every queued event ran on the old build before it went (count 103 in its snapshot),
    // and the new build continued from the snapshot: its in-memory counter starts at 103.
    t.host
        .deliver("good-agent", TestHost::timer(999))
        .await
        .unwrap();
    let state = colony_host::state_store::StateStore::open(
        &t.dir.path().join("data/state.db"),
        Default::default(),
    )
    .await
    .unwrap();
    assert_eq!(
        count_in(state.get("good-agent", "count").await.unwrap()),
        104
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broken_new_build_is_refused_and_reported() {
    let t = TestHost::start(&[(guests::GOOD_TOOL, "good-tool.wasm")]).await;
    std::fs::write(
        t.plugins_dir().join("good-tool.wasm"),
        colony_tests::random_bytes(3),
    )
    .unwrap();
    let report = t.host.sync().await;
    assert_eq!(report.rejected.len(), 1, "{report:?}");
    assert!(
        report.rejected[0].contains("good-tool.wasm: not a WebAssembly component"),
        "{report:?}"
    );
    // Fixing the file brings the tool back.
    install(&t.plugins_dir(), guests::GOOD_TOOL, "good-tool.wasm");
    let report = t.host.sync().await;
    assert!(
        report.rejected.is_empty() && t.host.invoke_tool("good-tool", "1").await.is_ok(),
        "{report:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn when_the_new_build_cannot_start_the_old_one_keeps_running() {
    let t = TestHost::start(&[(guests::GOOD_AGENT, "good-agent.wasm")]).await;
    t.host
        .deliver("good-agent", TestHost::timer(1))
        .await
        .unwrap();
    // A sidecar that leaves the new build too little memory to instantiate.
    std::fs::write(
        t.plugins_dir().join("good-agent.toml"),
        "[limits]\nmemory_bytes = 65536\n",
    )
    .unwrap();
    let report = t.host.sync().await;
    assert_eq!(report.rejected.len(), 1, "{report:?}");
    assert!(
        report.rejected[0].contains("memory limit of 64 KiB exceeded"),
        "{report:?}"
    );
    t.host
        .deliver("good-agent", TestHost::timer(2))
        .await
        .unwrap();
    let plugins = t.host.plugins().await;
    assert_eq!(
        plugins[0].info.limits.memory_bytes,
        64 * 1024 * 1024,
        "the old build runs on"
    );
}
