//! Loading the plugins folder: bad files are refused with a reason naming the file and what
//! is wrong, and never stop the good ones; manifests, sidecars and the compile cache.

use colony_caps::manifest::Kind;
use colony_host::plugin::ManifestSource;
use colony_tests::{
    TestHost, core_module_bytes, guests, install, random_bytes, test_config, truncated_bytes,
};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_files_are_refused_with_reasons_and_good_ones_load() {
    let t = TestHost::start_with(
        &[
            (guests::GOOD_AGENT, "good-agent.wasm"),
            (guests::BADIMPORT_AGENT, "badimport-agent.wasm"),
        ],
        |c| {
            let p = &c.plugins_dir;
            std::fs::write(p.join("core.wasm"), core_module_bytes()).unwrap();
            std::fs::write(p.join("truncated.wasm"), truncated_bytes()).unwrap();
            std::fs::write(p.join("random.wasm"), random_bytes(7)).unwrap();
            std::fs::write(p.join("empty.wasm"), b"").unwrap();
        },
    )
    .await;
    let rejected = t.host.rejected().await;
    let reason = |file: &str| {
        rejected
            .iter()
            .find(|r| r.file.file_name().is_some_and(|n| n == file))
            .map(|r| r.reason.clone())
            .unwrap_or_else(|| panic!("{file} was not refused: {rejected:?}"))
    };
    assert!(
        reason("badimport-agent.wasm")
            .contains("imports colony:evil/backdoor@0.1.0, which the agent world does not offer"),
        "{}",
        reason("badimport-agent.wasm")
    );
    assert!(reason("core.wasm").contains("core wasm module, not a component"));
    assert!(reason("random.wasm").contains("not a WebAssembly component"));
    assert_eq!(reason("empty.wasm"), "empty file");
    let truncated = reason("truncated.wasm");
    assert!(
        truncated.contains("malformed component") || truncated.contains("invalid component"),
        "{truncated}"
    );
    assert_eq!(rejected.len(), 5);

    let plugins = t.host.plugins().await;
    assert_eq!(plugins.len(), 1);
    t.host
        .deliver("good-agent", TestHost::timer(1))
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn manifest_is_read_from_the_component_and_sidecar_overrides_it() {
    let t = TestHost::start_with(&[(guests::GOOD_AGENT, "good-agent.wasm"), (guests::GOOD_TOOL, "good_tool.wasm")], |c| {
        std::fs::write(
            c.plugins_dir.join("good-agent.toml"),
            "version = \"1.2.3\"\ndescription = \"from the sidecar\"\ncapabilities = [\"messaging.publish:demo.>\"]\n[limits]\nfuel = 1000000\ndeadline_ms = 99999\n",
        )
        .unwrap();
    })
    .await;
    let plugins = t.host.plugins().await;
    let agent = &plugins
        .iter()
        .find(|p| p.info.name == "good-agent")
        .unwrap()
        .info;
    assert_eq!(agent.kind, Kind::Agent);
    assert_eq!(agent.version, "1.2.3");
    assert_eq!(agent.description, "from the sidecar");
    assert_eq!(agent.capabilities, vec!["messaging.publish:demo.>"]);
    assert_eq!(agent.manifest_source, ManifestSource::EmbeddedAndSidecar);
    assert_eq!(agent.limits.fuel, 1_000_000);
    assert_eq!(agent.limits.cpu_ms, 100, "a manifest cannot raise a limit");
    assert_eq!(agent.clamped, vec!["cpu_ms 99999 > 100"]);
    assert_eq!(
        agent.digest,
        blake3::hash(&std::fs::read(guests::GOOD_AGENT).unwrap())
            .to_hex()
            .to_string()
    );
    assert!(
        agent
            .imports
            .iter()
            .any(|i| i == "colony:plugin/state@0.1.0"),
        "{:?}",
        agent.imports
    );
    assert!(
        agent
            .exports
            .iter()
            .any(|e| e == "colony:plugin/handler@0.1.0")
    );

    // No manifest: named after the file, kind from the world.
    let tool = &plugins
        .iter()
        .find(|p| p.info.name == "good-tool")
        .unwrap()
        .info;
    assert_eq!(tool.kind, Kind::Tool);
    assert_eq!(tool.manifest_source, ManifestSource::None);
    assert_eq!(tool.version, "0.0.0");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sidecar_mistakes_and_name_clashes_are_refused() {
    let t = TestHost::start_with(
        &[
            (guests::GOOD_AGENT, "good-agent.wasm"),
            (guests::GOOD_AGENT, "second-copy.wasm"),
            (guests::GOOD_TOOL, "good-tool.wasm"),
            (guests::LOOP_AGENT, "loop-agent.wasm"),
        ],
        |c| {
            std::fs::write(c.plugins_dir.join("good-tool.toml"), "kind = \"agent\"\n").unwrap();
            std::fs::write(c.plugins_dir.join("loop-agent.toml"), "naem = \"typo\"\n").unwrap();
        },
    )
    .await;
    let rejected = t.host.rejected().await;
    let find = |f: &str| {
        rejected
            .iter()
            .find(|r| r.file.ends_with(f))
            .map(|r| r.reason.clone())
            .unwrap_or_default()
    };
    assert!(
        find("good-tool.wasm")
            .contains("manifest says kind \"agent\" but the component exports the tool world"),
        "{rejected:?}"
    );
    assert!(
        find("loop-agent.wasm").contains("sidecar manifest is malformed"),
        "{rejected:?}"
    );
    // The name belongs to the file named after it, so the copy is refused.
    assert!(
        find("second-copy.wasm")
            .contains("its manifest claims the plugin name \"good-agent\", which belongs to"),
        "{rejected:?}"
    );
    assert!(
        find("second-copy.wasm").contains("good-agent.wasm (the file named after it)"),
        "{rejected:?}"
    );
    assert_eq!(t.host.plugins().await.len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn second_start_loads_from_the_compile_cache() {
    let dir = tempfile::tempdir().unwrap();
    let config = test_config(dir.path());
    install(&config.plugins_dir, guests::GOOD_AGENT, "good-agent.wasm");
    install(&config.plugins_dir, guests::GOOD_TOOL, "good-tool.wasm");

    let first = colony_host::supervisor::Host::start(config.clone())
        .await
        .unwrap();
    assert_eq!(first.loader().runtime().compile_count(), 2);
    assert!(first.plugins().await.iter().all(|p| !p.info.from_cache));
    first.shutdown().await;
    drop(first);

    let second = colony_host::supervisor::Host::start(config).await.unwrap();
    assert_eq!(
        second.loader().runtime().compile_count(),
        0,
        "the second start recompiled"
    );
    let plugins = second.plugins().await;
    assert_eq!(plugins.len(), 2);
    assert!(plugins.iter().all(|p| p.info.from_cache));
    second
        .deliver("good-agent", TestHost::timer(1))
        .await
        .unwrap();
    assert_eq!(
        second.invoke_tool("good-tool", "[]").await.unwrap(),
        r#"{"len": 2}"#
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn state_survives_a_host_restart() {
    let dir = tempfile::tempdir().unwrap();
    let config = test_config(dir.path());
    install(&config.plugins_dir, guests::GOOD_AGENT, "good-agent.wasm");
    let host = colony_host::supervisor::Host::start(config.clone())
        .await
        .unwrap();
    for i in 0..3 {
        host.deliver("good-agent", TestHost::timer(i))
            .await
            .unwrap();
    }
    host.shutdown().await;
    drop(host);
    let store = colony_host::state_store::StateStore::open(
        &config.data_dir.join("state.db"),
        Default::default(),
    )
    .await
    .unwrap();
    assert_eq!(
        store.get("good-agent", "count").await.unwrap(),
        Some(3u64.to_le_bytes().to_vec())
    );
}
