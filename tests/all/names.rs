//! Names are identity (grants, state, audit): a file cannot take the name of another through
//! its manifest or sidecar, a tool cannot take another's name through what its `describe()`
//! says, and a build with no manifest cannot become a new version of a registered tool.

use colony_tests::{TestHost, guests, install};

async fn rejection(t: &TestHost, file: &str) -> String {
    t.host
        .rejected()
        .await
        .into_iter()
        .find(|r| r.file.ends_with(file))
        .map(|r| r.reason)
        .unwrap_or_default()
}

async fn file_of(t: &TestHost, name: &str) -> Option<String> {
    t.host
        .plugins()
        .await
        .into_iter()
        .find(|p| p.info.name == name)
        .map(|p| p.info.file.display().to_string())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sidecar_cannot_take_the_name_of_the_file_named_after_it() {
    // `aaa.wasm` sorts first and its sidecar claims `probe`; `probe.wasm` has no manifest.
    let t = TestHost::start_with(
        &[
            (guests::GOOD_AGENT, "aaa.wasm"),
            (guests::BUS_AGENT, "probe.wasm"),
        ],
        |c| std::fs::write(c.plugins_dir.join("aaa.toml"), "name = \"probe\"\n").unwrap(),
    )
    .await;
    let owner = file_of(&t, "probe").await.unwrap_or_default();
    assert!(owner.ends_with("probe.wasm"), "probe runs from {owner:?}");
    let why = rejection(&t, "aaa.wasm").await;
    assert!(
        why.contains("its manifest claims the plugin name \"probe\", which belongs to")
            && why.contains("probe.wasm (the file named after it)"),
        "{why:?}"
    );
    assert_eq!(t.host.plugins().await.len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_squatter_running_under_a_name_gives_it_up_when_its_owner_arrives() {
    let t = TestHost::start_with(&[(guests::GOOD_AGENT, "aaa.wasm")], |c| {
        std::fs::write(c.plugins_dir.join("aaa.toml"), "name = \"probe\"\n").unwrap()
    })
    .await;
    // Alone, a sidecar may name a plugin as it likes.
    assert!(file_of(&t, "probe").await.unwrap().ends_with("aaa.wasm"));

    install(&t.plugins_dir(), guests::BUS_AGENT, "probe.wasm");
    t.host.sync().await;
    assert!(file_of(&t, "probe").await.unwrap().ends_with("probe.wasm"));
    assert!(rejection(&t, "aaa.wasm").await.contains("probe.wasm"));

    // The owner goes away: the claim is judged again.
    std::fs::remove_file(t.plugins_dir().join("probe.wasm")).unwrap();
    t.host.sync().await;
    assert!(file_of(&t, "probe").await.unwrap().ends_with("aaa.wasm"));
    assert_eq!(rejection(&t, "aaa.wasm").await, "");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tool_is_called_by_its_plugin_name_not_by_what_describe_says() {
    // In the folder: `good-tool.wasm`, and a copy as `aaa.wasm` whose describe() also says
    // `good-tool` (it has no manifest, so its plugin name is `aaa`).
    let t = TestHost::start(&[
        (guests::GOOD_TOOL, "good-tool.wasm"),
        (guests::GOOD_TOOL, "aaa.wasm"),
    ])
    .await;
    let why = rejection(&t, "aaa.wasm").await;
    assert!(
        why.contains("its describe() names the tool \"good-tool\", which is the name of")
            && why.contains("good-tool.wasm")
            && why.contains("its plugin name is \"aaa\""),
        "{why:?}"
    );
    let listed: Vec<String> = t.host.tools().await.into_iter().map(|s| s.name).collect();
    assert_eq!(listed, ["good-tool"]);

    // A registered tool: an impostor dropped into the folder does not answer its calls.
    let real = std::fs::read(guests::SCHEMA_TOOL).unwrap();
    t.host.register_tool(&real, "admin:test").await.unwrap();
    install(&t.plugins_dir(), guests::IMPOSTOR_TOOL, "zzz.wasm");
    t.host.sync().await;
    let why = rejection(&t, "zzz.wasm").await;
    assert!(
        why.contains(
            "its describe() names the tool \"schema-tool\", which is the name of the registered \
             tool schema-tool, but its plugin name is \"zzz\""
        ),
        "{why:?}"
    );
    let answer = t.host.call_tool("schema-tool", r#"{"n":5}"#).await.unwrap();
    assert_eq!(answer, r#"{"n":5,"version":"1.0.0"}"#);

    // Nor can a sidecar give the impostor the registered name.
    std::fs::write(t.plugins_dir().join("zzz.toml"), "name = \"schema-tool\"\n").unwrap();
    t.host.sync().await;
    let why = rejection(&t, "zzz.wasm").await;
    assert!(
        why.contains("which belongs to the registered tool schema-tool"),
        "{why:?}"
    );
    let answer = t.host.call_tool("schema-tool", r#"{"n":6}"#).await.unwrap();
    assert_eq!(answer, r#"{"n":6,"version":"1.0.0"}"#);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_build_without_a_manifest_cannot_become_a_version_of_a_registered_tool() {
    let t = TestHost::start(&[]).await;
    let real = std::fs::read(guests::SCHEMA_TOOL).unwrap();
    t.host.register_tool(&real, "admin:test").await.unwrap();
    let impostor = std::fs::read(guests::IMPOSTOR_TOOL).unwrap();
    let err = match t.host.register_tool(&impostor, "agent:mallory").await {
        Ok(tool) => panic!("the impostor was registered as {}", tool.id()),
        Err(e) => e.to_string(),
    };
    assert!(
        err.contains("the tool \"schema-tool\" is registered; this build has no manifest"),
        "{err}"
    );
    let answer = t.host.call_tool("schema-tool", r#"{"n":7}"#).await.unwrap();
    assert_eq!(answer, r#"{"n":7,"version":"1.0.0"}"#);
    // Nothing was added under the name.
    assert_eq!(t.host.registered_tools().list().len(), 1);
}
