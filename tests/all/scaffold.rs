//! `colony new agent NAME` and `colony new tool NAME` scaffold crates that build for
//! wasm32-wasip2 and load in a host without edits.

use std::path::Path;
use std::process::Command;

use colony_tests::TestHost;

const COLONY: &str = env!("CARGO_BIN_EXE_colony-test-cli");

fn scaffold_and_build(kind: &str, name: &str, root: &Path) -> std::path::PathBuf {
    let dir = root.join(name);
    let out = Command::new(COLONY)
        .args(["new", kind, name, "--path"])
        .arg(&dir)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // Share the guests' target directory so the SDK's dependencies are not rebuilt.
    let target = Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/wasm");
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let out = Command::new(cargo)
        .current_dir(&dir)
        .args(["build", "--release"])
        .env("CARGO_TARGET_DIR", &target)
        .env_remove("RUSTFLAGS")
        .env_remove("CARGO_ENCODED_RUSTFLAGS")
        .env_remove("RUSTC_WORKSPACE_WRAPPER")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "scaffolded {kind} does not build:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let wasm = target
        .join("wasm32-wasip2/release")
        .join(format!("{}.wasm", name.replace('-', "_")));
    assert!(wasm.is_file(), "{} missing", wasm.display());
    wasm
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn new_agent_and_tool_build_and_load_without_edits() {
    let work = tempfile::tempdir().unwrap();
    let agent = scaffold_and_build("agent", "scaffolded-agent", work.path());
    let tool = scaffold_and_build("tool", "scaffolded-tool", work.path());

    let t = TestHost::start(&[]).await;
    let _watcher = t.host.watch().unwrap();
    std::fs::copy(&agent, t.plugins_dir().join("scaffolded-agent.wasm")).unwrap();
    std::fs::copy(&tool, t.plugins_dir().join("scaffolded-tool.wasm")).unwrap();
    let host = t.host.clone();
    t.eventually("both scaffolded plugins are loaded", || {
        let host = host.clone();
        async move { host.plugins().await.len() == 2 }
    })
    .await;
    assert!(
        t.host.rejected().await.is_empty(),
        "{:?}",
        t.host.rejected().await
    );
    let plugins = t.host.plugins().await;
    assert_eq!(plugins[0].info.name, "scaffolded-agent");
    assert_eq!(plugins[0].info.version, "0.1.0");
    assert_eq!(plugins[1].info.name, "scaffolded-tool");
    t.host
        .deliver("scaffolded-agent", TestHost::timer(1))
        .await
        .unwrap();
    let tools = t.host.tools().await;
    assert_eq!(tools.len(), 1);
    let out = t
        .host
        .invoke_tool("scaffolded-tool", &example_args(&tools[0].input_schema))
        .await;
    assert!(out.is_ok(), "{out:?}");
}

/// Arguments that satisfy the scaffold's schema: an object with each required string field.
fn example_args(schema: &serde_json::Value) -> String {
    let mut obj = serde_json::Map::new();
    for key in schema["required"].as_array().into_iter().flatten() {
        if let Some(k) = key.as_str() {
            obj.insert(k.to_string(), serde_json::Value::String("x".into()));
        }
    }
    serde_json::Value::Object(obj).to_string()
}
