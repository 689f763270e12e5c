//! Tools registered at run time: each validation step refuses a tool made to fail exactly that
//! step and leaves nothing behind; versions and rollback; arguments checked against the schema
//! before the sandbox; registrations survive a restart; the CLI with and without a host.

use colony_host::audit::{AuditFilter, AuditKind};
use colony_host::tools::{RegistryError, Step, ToolCallError};
use colony_tests::{TestHost, core_module_bytes, guests, test_config};

use crate::support::{colony, start_host, stderr, stdout};

fn bytes(guest: &str) -> Vec<u8> {
    std::fs::read(guest).unwrap_or_else(|e| panic!("{guest}: {e}"))
}

/// The `.wasm` files in `DATA/tools`.
fn stored(t: &TestHost) -> Vec<String> {
    let dir = t.dir.path().join("data/tools");
    let mut files: Vec<String> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".wasm") || n.ends_with(".tmp"))
        .collect();
    files.sort();
    files
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_registered_tool_is_validated_stored_audited_and_callable() {
    let t = TestHost::start(&[]).await;
    let tool = t
        .host
        .register_tool(&bytes(guests::SCHEMA_TOOL), "admin:alice")
        .await
        .unwrap_or_else(|e| panic!("register: {e}"));
    assert_eq!(tool.id(), "schema-tool@1.0.0");
    assert_eq!(
        tool.digest,
        blake3::hash(&bytes(guests::SCHEMA_TOOL))
            .to_hex()
            .to_string()
    );
    assert_eq!(stored(&t), vec![format!("{}.wasm", tool.digest)]);

    let out = t
        .host
        .call_tool("schema-tool", r#"{"n": 5}"#)
        .await
        .unwrap();
    assert_eq!(out, r#"{"n":5,"version":"1.0.0"}"#);

    let records = t.audited("tool-register", None).await;
    assert_eq!(records.len(), 1, "{records:?}");
    assert_eq!(records[0].actor, "admin:alice");
    assert_eq!(records[0].plugin, "schema-tool");
    assert_eq!(records[0].digest, tool.digest);
    assert_eq!(records[0].detail, "schema-tool@1.0.0");

    let listed = t.host.registered_tools().list();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].name, "schema-tool");
    assert_eq!(listed[0].input_schema["examples"][0]["n"], 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_validation_step_refuses_the_tool_made_to_fail_it() {
    let t = TestHost::start(&[]).await;
    let cases: Vec<(&str, Vec<u8>, Step, &str)> = vec![
        (
            "core module",
            core_module_bytes(),
            Step::Component,
            "core wasm module",
        ),
        (
            "agent",
            bytes(guests::GOOD_AGENT),
            Step::Component,
            "agent world, not the tool world",
        ),
        (
            "badimport-tool",
            bytes(guests::BADIMPORT_TOOL),
            Step::Imports,
            "imports colony:plugin/state@0.1.0",
        ),
        (
            "badschema-tool",
            bytes(guests::BADSCHEMA_TOOL),
            Step::Describe,
            "input-schema: not a valid JSON Schema",
        ),
        (
            "noexample-tool",
            bytes(guests::NOEXAMPLE_TOOL),
            Step::Describe,
            "no example input",
        ),
        (
            "good-tool (schema without examples)",
            bytes(guests::GOOD_TOOL),
            Step::Describe,
            "no example input",
        ),
        (
            "smokefail-tool",
            bytes(guests::SMOKEFAIL_TOOL),
            Step::Smoke,
            "the example call failed: trapped",
        ),
    ];
    for (what, b, step, reason) in &cases {
        match t.host.register_tool(b, "admin:test").await {
            Err(RegistryError::Rejected(r)) => {
                assert_eq!(r.step, *step, "{what}: {r}");
                assert!(r.reason.contains(reason), "{what}: {r}");
            }
            Err(e) => panic!("{what}: refused for another reason: {e}"),
            Ok(tool) => panic!("{what}: registered as {}", tool.id()),
        }
        assert!(stored(&t).is_empty(), "{what} left files: {:?}", stored(&t));
        assert!(t.host.registered_tools().list().is_empty(), "{what} listed");
    }
    assert_eq!(t.audited("tool-register", None).await.len(), 0);
    assert_eq!(t.audited("tool-rejected", None).await.len(), cases.len());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_version_keeps_the_old_one_for_rollback() {
    let t = TestHost::start(&[]).await;
    let v1 = t
        .host
        .register_tool(&bytes(guests::SCHEMA_TOOL), "admin:test")
        .await
        .unwrap();
    let v2 = t
        .host
        .register_tool(&bytes(guests::SCHEMA_TOOL_V2), "admin:test")
        .await
        .unwrap();
    assert_eq!(v2.id(), "schema-tool@2.0.0");
    let call = |spec: &'static str| {
        let host = t.host.clone();
        async move { host.call_tool(spec, r#"{"n": 7}"#).await }
    };
    assert_eq!(
        call("schema-tool").await.unwrap(),
        r#"{"n":7,"version":"2.0.0"}"#
    );
    assert_eq!(
        call("schema-tool@1.0.0").await.unwrap(),
        r#"{"n":7,"version":"1.0.0"}"#
    );
    let versions: Vec<(String, bool)> = t.host.registered_tools().list()[0]
        .versions
        .iter()
        .map(|v| (v.version.clone(), v.active))
        .collect();
    assert_eq!(
        versions,
        vec![("1.0.0".to_string(), false), ("2.0.0".to_string(), true)]
    );

    // The same build again, under any name, is refused.
    let again = t
        .host
        .register_tool(&bytes(guests::SCHEMA_TOOL), "admin:test")
        .await;
    assert!(
        matches!(&again, Err(RegistryError::Duplicate(m)) if m.contains("already registered as schema-tool@1.0.0")),
        "{:?}",
        again.err()
    );

    let removed = t
        .host
        .unregister_tool("schema-tool@2.0.0", "admin:bob")
        .await
        .unwrap();
    assert_eq!(removed.len(), 1);
    assert_eq!(removed[0].digest, v2.digest);
    assert_eq!(
        call("schema-tool").await.unwrap(),
        r#"{"n":7,"version":"1.0.0"}"#
    );
    assert_eq!(stored(&t), vec![format!("{}.wasm", v1.digest)]);
    let unregs = t.audited("tool-unregister", None).await;
    assert_eq!(unregs.len(), 1);
    assert_eq!(unregs[0].actor, "admin:bob");
    assert_eq!(unregs[0].detail, "schema-tool@2.0.0");

    t.host
        .unregister_tool("schema-tool", "admin:bob")
        .await
        .unwrap();
    assert!(matches!(
        call("schema-tool").await,
        Err(ToolCallError::NotFound(_))
    ));
    assert!(matches!(
        t.host.unregister_tool("schema-tool", "admin:bob").await,
        Err(RegistryError::NotFound(_))
    ));
    assert!(stored(&t).is_empty());
}

/// schema-tool spins until a limit stops it when `spin` is true. Arguments that ask it to
/// spin but fail the schema come back as invalid arguments, not as a limit: the tool never
/// ran. The same spin with valid arguments does hit the limit, so the first result is not
/// a tool that ignores `spin`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_arguments_are_refused_before_the_sandbox() {
    let t = TestHost::start(&[]).await;
    t.host
        .register_tool(&bytes(guests::SCHEMA_TOOL), "admin:test")
        .await
        .unwrap();

    let started = std::time::Instant::now();
    match t
        .host
        .call_tool("schema-tool", r#"{"n": "x", "spin": true}"#)
        .await
    {
        Err(ToolCallError::InvalidArguments { error, .. }) => {
            assert_eq!(error.path, "/n", "{error}");
            assert!(error.schema_path.ends_with("/type"), "{error}");
        }
        other => panic!("expected invalid arguments, got {other:?}"),
    }
    let refused_in = started.elapsed();

    for (args, path) in [
        ("not json", "/"),
        (r#"{"spin": true}"#, "/"),
        (r#"{"n": 1, "spin": true, "extra": 0}"#, "/"),
    ] {
        match t.host.call_tool("schema-tool", args).await {
            Err(ToolCallError::InvalidArguments { error, .. }) => {
                assert_eq!(error.path, path, "{args}: {error}")
            }
            other => panic!("{args}: expected invalid arguments, got {other:?}"),
        }
    }

    let started = std::time::Instant::now();
    let spun = t
        .host
        .call_tool("schema-tool", r#"{"n": 1, "spin": true}"#)
        .await;
    assert!(
        matches!(&spun, Err(ToolCallError::Limit { .. })),
        "{spun:?}"
    );
    assert_eq!(spun.unwrap_err().kind(), "limit");
    assert!(
        refused_in < started.elapsed(),
        "refusal took {refused_in:?}, as long as a call that ran"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn registered_tools_survive_a_restart() {
    let TestHost { dir, host } = TestHost::start(&[]).await;
    host.register_tool(&bytes(guests::SCHEMA_TOOL), "admin:test")
        .await
        .unwrap();
    host.register_tool(&bytes(guests::SCHEMA_TOOL_V2), "admin:test")
        .await
        .unwrap();
    host.unregister_tool("schema-tool@1.0.0", "admin:test")
        .await
        .unwrap();
    host.register_tool(&bytes(guests::SCHEMA_TOOL), "admin:test")
        .await
        .unwrap();
    host.shutdown().await;
    drop(host);

    let host = colony_host::supervisor::Host::start(test_config(dir.path()))
        .await
        .unwrap_or_else(|e| panic!("restart: {e:#}"));
    let listed = host.registered_tools().list();
    let versions: Vec<(&str, bool)> = listed[0]
        .versions
        .iter()
        .map(|v| (v.version.as_str(), v.active))
        .collect();
    // Registration order survives: 1.0.0 was registered again after 2.0.0, so it answers.
    assert_eq!(versions, vec![("2.0.0", false), ("1.0.0", true)]);
    assert_eq!(
        host.call_tool("schema-tool", r#"{"n": 2}"#).await.unwrap(),
        r#"{"n":2,"version":"1.0.0"}"#
    );
}

#[test]
fn the_cli_registers_through_a_running_host() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let plugins = dir.path().join("plugins");
    std::fs::create_dir_all(&plugins).unwrap();
    let _host = start_host(&data, &plugins, 0);

    let out = colony(&data, &["tools", "register", guests::SCHEMA_TOOL]);
    assert!(out.status.success(), "{}", stderr(&out));
    let digest = blake3::hash(&bytes(guests::SCHEMA_TOOL))
        .to_hex()
        .to_string();
    assert_eq!(stdout(&out).trim(), format!("schema-tool@1.0.0 {digest}"));

    let out = colony(&data, &["tools", "register", guests::SCHEMA_TOOL_V2]);
    assert!(out.status.success(), "{}", stderr(&out));

    let out = colony(&data, &["tools", "list"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stdout(&out).lines().any(|l| l.starts_with("schema-tool")
            && l.contains(" registered ")
            && l.contains(" 1.0.0, 2.0.0*")),
        "{}",
        stdout(&out)
    );

    let out = colony(&data, &["tools", "invoke", "schema-tool", r#"{"n":3}"#]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(stdout(&out).trim(), r#"{"n":3,"version":"2.0.0"}"#);

    let out = colony(&data, &["tools", "invoke", "schema-tool", r#"{"n":"3"}"#]);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("invalid arguments at /n"),
        "{}",
        stderr(&out)
    );

    let out = colony(&data, &["tools", "register", guests::SMOKEFAIL_TOOL]);
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("tool rejected at step smoke"),
        "{}",
        stderr(&out)
    );

    let out = colony(&data, &["tools", "unregister", "schema-tool@2.0.0"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stdout(&out).contains("unregistered schema-tool@2.0.0"));
    let out = colony(&data, &["tools", "invoke", "schema-tool", r#"{"n":3}"#]);
    assert_eq!(stdout(&out).trim(), r#"{"n":3,"version":"1.0.0"}"#);

    let out = colony(&data, &["audit", "--json"]);
    let text = stdout(&out);
    assert!(
        text.contains("tool-register") && text.contains("tool-unregister"),
        "{text}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cli_registers_without_a_host_and_the_host_loads_it() {
    let dir = tempfile::tempdir().unwrap();
    let config = test_config(dir.path());
    let data = config.data_dir.clone();

    let out = colony(&data, &["tools", "register", guests::SCHEMA_TOOL]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stdout(&out).starts_with("schema-tool@1.0.0 "));
    let out = colony(&data, &["tools", "register", guests::NOEXAMPLE_TOOL]);
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
    assert!(stderr(&out).contains("step describe"), "{}", stderr(&out));

    let out = colony(&data, &["tools", "invoke", "schema-tool", r#"{"n":4}"#]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(stdout(&out).trim(), r#"{"n":4,"version":"1.0.0"}"#);
    let out = colony(&data, &["tools", "invoke", "schema-tool", r#"{"n":true}"#]);
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
    // With no host, a registered tool's build can be approved: its digest comes from the
    // registry's index, as a plugins-folder build's comes from the folder.
    let out = colony(&data, &["grants", "approve", "schema-tool"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let digest = blake3::hash(&bytes(guests::SCHEMA_TOOL))
        .to_hex()
        .to_string();
    assert_eq!(
        stdout(&out).trim(),
        format!("approved schema-tool build blake3:{digest}")
    );
    let out = colony(&data, &["grants", "approve", "no-such-tool"]);
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));

    let host = colony_host::supervisor::Host::start(config)
        .await
        .unwrap_or_else(|e| panic!("host start: {e:#}"));
    assert_eq!(
        host.call_tool("schema-tool", r#"{"n": 4}"#).await.unwrap(),
        r#"{"n":4,"version":"1.0.0"}"#
    );
    let records = host
        .audit()
        .query(&AuditFilter {
            kind: Some(AuditKind::Other("tool-register".into())),
            ..AuditFilter::default()
        })
        .await
        .unwrap();
    assert_eq!(records.len(), 1);
    assert!(records[0].actor.starts_with("cli:"), "{}", records[0].actor);
    host.shutdown().await;
    drop(host);

    let out = colony(&data, &["tools", "unregister", "schema-tool"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let out = colony(&data, &["tools", "list", "--json"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let listed: serde_json::Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(listed["registered"], serde_json::json!([]));
}

/// A host running the tools agent with `grants`, and a deadline long enough to validate a
/// tool inside one event (validation compiles the component and makes a smoke call).
async fn tools_agent_host(grants: &[&str]) -> (TestHost, colony_host::state_store::StateStore) {
    let t = TestHost::start_copies(guests::TOOLS_AGENT, &[("meta", "{}", grants)], |c| {
        c.agent_limits.cpu_ms = 60_000;
    })
    .await;
    let rejected = t.host.rejected().await;
    assert!(rejected.is_empty(), "{rejected:?}");
    let state = t.state().await;
    (t, state)
}

/// Sends `payload` to the tools agent and returns what it stored under `key`.
async fn ask_meta(
    t: &TestHost,
    state: &colony_host::state_store::StateStore,
    payload: &[u8],
    key: &str,
) -> String {
    t.host
        .deliver("meta", colony_tests::message("agent.meta.inbox", payload))
        .await
        .unwrap_or_else(|e| panic!("meta: {e}"));
    let value = state.get("meta", key).await.unwrap().unwrap_or_default();
    String::from_utf8_lossy(&value).into_owned()
}

fn register_command(guest: &str) -> Vec<u8> {
    let mut payload = b"register ".to_vec();
    payload.extend(bytes(guest));
    payload
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_agent_holding_tools_register_registers_lists_and_calls_tools() {
    let (t, s) = tools_agent_host(&["tools.register", "tools.call:schema-*"]).await;
    let digest = blake3::hash(&bytes(guests::SCHEMA_TOOL))
        .to_hex()
        .to_string();

    let answer = ask_meta(&t, &s, &register_command(guests::SCHEMA_TOOL), "register").await;
    assert_eq!(answer, format!("ok schema-tool 1.0.0 {digest}"));
    // Registered for everyone: stored, listed by the host, audited with the agent as actor.
    assert_eq!(stored(&t), vec![format!("{digest}.wasm")]);
    let records = t.audited("tool-register", None).await;
    assert_eq!(records.len(), 1, "{records:?}");
    assert_eq!(records[0].actor, "agent:meta");
    assert_eq!(records[0].detail, "schema-tool@1.0.0");

    assert_eq!(
        ask_meta(&t, &s, b"list", "list").await,
        format!("schema-tool 1.0.0 {digest}")
    );
    assert_eq!(
        ask_meta(&t, &s, br#"call schema-tool {"n":7}"#, "call.schema-tool").await,
        r#"ok {"n":7,"version":"1.0.0"}"#
    );
    // The schema refuses bad arguments before the tool runs, with the JSON pointer.
    let bad = ask_meta(&t, &s, br#"call schema-tool {"n":"x"}"#, "call.schema-tool").await;
    assert!(
        bad.starts_with("err invalid-arguments schema-tool@1.0.0"),
        "{bad}"
    );
    assert!(bad.contains("/n"), "{bad}");
    // Another version of the name, by version.
    assert_eq!(
        ask_meta(
            &t,
            &s,
            br#"call schema-tool@9.9.9 {"n":1}"#,
            "call.schema-tool@9.9.9"
        )
        .await,
        "err not-found no registered tool schema-tool@9.9.9"
    );

    // A tool that fails validation is refused with the step; nothing is stored.
    let answer = ask_meta(
        &t,
        &s,
        &register_command(guests::SMOKEFAIL_TOOL),
        "register",
    )
    .await;
    assert!(answer.starts_with("err rejected smoke "), "{answer}");
    let answer = ask_meta(&t, &s, &register_command(guests::GOOD_AGENT), "register").await;
    assert!(answer.starts_with("err rejected component "), "{answer}");
    // The same build twice is a duplicate, not a second version.
    let answer = ask_meta(&t, &s, &register_command(guests::SCHEMA_TOOL), "register").await;
    assert!(answer.starts_with("err duplicate "), "{answer}");
    assert_eq!(stored(&t), vec![format!("{digest}.wasm")]);
    assert_eq!(t.audited("tool-rejected", None).await.len(), 2);

    // Every allowed call and registration is in the audit, not a sample of them.
    t.host.audit().writer().flush().await.unwrap();
    for (cap, n) in [("tools.call:schema-tool", 3), ("tools.register", 4)] {
        let rows = t
            .host
            .audit()
            .query(&AuditFilter {
                plugin: Some("meta".into()),
                capability: Some(colony_host::audit::CapabilityMatch::parse(cap)),
                decision: Some(colony_host::audit::Decision::Allow),
                ..AuditFilter::default()
            })
            .await
            .unwrap();
        assert_eq!(rows.len(), n, "{cap}: {rows:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_agent_without_tools_register_is_denied_and_audited() {
    let (t, s) = tools_agent_host(&["tools.call:other-*"]).await;
    let answer = ask_meta(&t, &s, &register_command(guests::SCHEMA_TOOL), "register").await;
    assert_eq!(answer, "err denied needs tools.register");
    assert!(stored(&t).is_empty(), "{:?}", stored(&t));
    assert!(t.host.registered_tools().list().is_empty());
    assert_eq!(t.audited("tool-register", None).await.len(), 0);

    // The operator registers it; the agent may not call it (its grant is for other-*), and
    // does not see it listed.
    t.host
        .register_tool(&bytes(guests::SCHEMA_TOOL), "admin:test")
        .await
        .unwrap();
    assert_eq!(ask_meta(&t, &s, b"list", "list").await, "");
    assert_eq!(
        ask_meta(&t, &s, br#"call schema-tool {"n":1}"#, "call.schema-tool").await,
        "err denied needs tools.call:schema-tool"
    );

    t.host.audit().writer().flush().await.unwrap();
    for cap in ["tools.register", "tools.call:schema-tool"] {
        let rows = t
            .host
            .audit()
            .query(&AuditFilter {
                plugin: Some("meta".into()),
                capability: Some(colony_host::audit::CapabilityMatch::parse(cap)),
                decision: Some(colony_host::audit::Decision::Deny),
                ..AuditFilter::default()
            })
            .await
            .unwrap();
        assert_eq!(rows.len(), 1, "{cap}: {rows:?}");
    }
}

/// Registers `hog-tool` on a host with these tool limits and calls it in each of `cases`
/// (`mode`, the limit it must hit), checking the host still serves it afterwards.
async fn hog_hits(tweak: impl FnOnce(&mut colony_host::limits::Limits), cases: &[(&str, &str)]) {
    let t = TestHost::start_with(&[], |c| tweak(&mut c.tool_limits)).await;
    t.host
        .register_tool(&bytes(guests::HOG_TOOL), "admin:test")
        .await
        .unwrap_or_else(|e| panic!("register: {e}"));
    for (mode, limit) in cases {
        let args = format!(r#"{{"mode":"{mode}"}}"#);
        match t.host.call_tool("hog-tool", &args).await {
            Err(ToolCallError::Limit { tool, limit: hit }) => {
                assert_eq!(hit.name(), *limit, "{mode}: {hit}");
                assert!(tool.starts_with("hog-tool"), "{mode}: {tool}");
            }
            other => panic!("{mode}: expected the {limit} limit, got {other:?}"),
        }
        // Each call is a fresh instance: the next one is unharmed.
        assert_eq!(
            t.host
                .call_tool("hog-tool", r#"{"mode":"ok"}"#)
                .await
                .unwrap_or_else(|e| panic!("after {mode}: {e}")),
            r#"{"ok": true}"#
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_per_call_limit_holds_against_a_hostile_registered_tool() {
    hog_hits(
        |l| {
            l.fuel = 20_000_000;
            l.cpu_ms = 10_000;
        },
        &[
            ("burn", "fuel"),
            ("memory", "memory"),
            ("flood", "output"),
            ("big", "payload"),
        ],
    )
    .await;
    // With fuel to spare, the CPU-time limit ends a call that never returns.
    hog_hits(
        |l| {
            l.fuel = u64::MAX / 4;
            l.cpu_ms = 300;
        },
        &[("spin", "cpu")],
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tool_that_keeps_failing_trips_its_breaker_and_a_later_trial_closes_it() {
    let t = TestHost::start_with(&[], |c| c.tool_limits.fuel = 20_000_000).await;
    t.host
        .register_tool(&bytes(guests::HOG_TOOL), "admin:test")
        .await
        .unwrap_or_else(|e| panic!("register: {e}"));
    // Refused arguments are the caller's fault, not the tool's: they do not count.
    for _ in 0..6 {
        let r = t.host.call_tool("hog-tool", r#"{"mode":7}"#).await;
        assert!(
            matches!(r, Err(ToolCallError::InvalidArguments { .. })),
            "{r:?}"
        );
    }
    for i in 0..5 {
        let r = t.host.call_tool("hog-tool", r#"{"mode":"burn"}"#).await;
        assert!(
            matches!(r, Err(ToolCallError::Limit { .. })),
            "call {i}: {r:?}"
        );
    }
    // Five failures in a row opened it: the next call is refused without running.
    match t.host.call_tool("hog-tool", r#"{"mode":"ok"}"#).await {
        Err(ToolCallError::Unavailable { tool, reason }) => {
            assert_eq!(tool, "hog-tool");
            assert!(reason.contains("circuit open"), "{reason}");
        }
        other => panic!("expected the breaker to refuse, got {other:?}"),
    }
    // After the 2 s cool-down one trial goes through; it succeeds and closes the breaker.
    tokio::time::sleep(std::time::Duration::from_millis(2_100)).await;
    assert_eq!(
        t.host
            .call_tool("hog-tool", r#"{"mode":"ok"}"#)
            .await
            .unwrap(),
        r#"{"ok": true}"#
    );
    t.host
        .call_tool("hog-tool", r#"{"mode":"ok"}"#)
        .await
        .unwrap();
    let records = t.audited("breaker", None).await;
    let details: Vec<(&str, &str)> = records
        .iter()
        .rev()
        .map(|e| (e.plugin.as_str(), e.detail.as_str()))
        .collect();
    assert_eq!(details.len(), 2, "{details:?}");
    assert_eq!(details[0].0, "hog-tool");
    assert!(
        details[0].1.starts_with("circuit closed -> open"),
        "{details:?}"
    );
    assert!(
        details[1].1.starts_with("circuit half-open -> closed"),
        "{details:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stored_tool_that_no_longer_validates_is_listed_as_not_loaded() {
    let dir = tempfile::tempdir().unwrap();
    let config = test_config(dir.path());
    let data = config.data_dir.clone();
    let cap = "http.outbound:https://api.example.com";
    let listed = |data: &std::path::Path| -> serde_json::Value {
        let out = colony(data, &["tools", "list", "--json"]);
        assert!(out.status.success(), "{}", stderr(&out));
        serde_json::from_str(&stdout(&out)).unwrap_or_else(|e| panic!("{e}: {}", stdout(&out)))
    };

    // http-tool imports wasi:http, so registering it needs an http.outbound grant.
    let out = colony(&data, &["grants", "grant", "http-tool", cap]);
    assert!(out.status.success(), "{}", stderr(&out));
    let out = colony(&data, &["tools", "register", guests::HTTP_TOOL]);
    assert!(out.status.success(), "{}", stderr(&out));
    let all = listed(&data);
    assert_eq!(all["registered"][0]["name"], "http-tool", "{all}");
    assert_eq!(all["not_loaded"], serde_json::json!([]), "{all}");

    // Revoked, the stored build fails its imports step when the registry is opened again: it
    // stays on disk and is reported, not silently dropped.
    let out = colony(&data, &["grants", "revoke", "http-tool", cap]);
    assert!(out.status.success(), "{}", stderr(&out));
    let all = listed(&data);
    assert_eq!(all["registered"], serde_json::json!([]), "{all}");
    let not_loaded = all["not_loaded"].as_array().cloned().unwrap_or_default();
    assert_eq!(not_loaded.len(), 1, "{all}");
    let line = not_loaded[0].as_str().unwrap_or("");
    assert!(line.starts_with("http-tool@1.0.0: "), "{line}");
    assert!(line.contains("at step imports"), "{line}");
    let out = colony(&data, &["tools", "list"]);
    assert!(
        stdout(&out).contains("not loaded: http-tool@1.0.0: "),
        "{}",
        stdout(&out)
    );

    // Registering another tool meanwhile rewrites the index: the unloaded build stays in it
    // (else its file would be deleted as a leftover at the next open).
    let out = colony(&data, &["tools", "register", guests::SCHEMA_TOOL]);
    assert!(out.status.success(), "{}", stderr(&out));
    let index = std::fs::read_to_string(data.join("tools/index.json")).unwrap();
    assert!(index.contains("http-tool"), "{index}");

    // A host started there reports it the same way; granted again, the next start loads it.
    let host = colony_host::supervisor::Host::start(config.clone())
        .await
        .unwrap_or_else(|e| panic!("host start: {e:#}"));
    assert_eq!(host.registered_tools().not_loaded().len(), 1);
    assert!(host.registered_tools().get("http-tool").is_none());
    host.shutdown().await;
    drop(host);
    let out = colony(&data, &["grants", "grant", "http-tool", cap]);
    assert!(out.status.success(), "{}", stderr(&out));
    let all = listed(&data);
    let names: Vec<&str> = all["registered"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|t| t["name"].as_str())
        .collect();
    assert_eq!(names, vec!["http-tool", "schema-tool"], "{all}");
    assert_eq!(all["not_loaded"], serde_json::json!([]), "{all}");

    // Not loaded again, the same build registered through a running host (after a grant)
    // takes the stored entry's place instead of adding a second one.
    let out = colony(&data, &["grants", "revoke", "http-tool", cap]);
    assert!(out.status.success(), "{}", stderr(&out));
    let host = colony_host::supervisor::Host::start(config.clone())
        .await
        .unwrap_or_else(|e| panic!("host start: {e:#}"));
    assert_eq!(host.registered_tools().not_loaded().len(), 1);
    host.grant("http-tool", cap, "test")
        .await
        .unwrap_or_else(|e| panic!("grant: {e}"));
    host.register_tool(&bytes(guests::HTTP_TOOL), "admin:test")
        .await
        .unwrap_or_else(|e| panic!("register again: {e}"));
    assert!(host.registered_tools().not_loaded().is_empty());
    assert!(host.registered_tools().get("http-tool").is_some());
    host.shutdown().await;
    drop(host);
    let index = std::fs::read_to_string(data.join("tools/index.json")).unwrap();
    assert_eq!(index.matches("\"http-tool\"").count(), 1, "{index}");

    // A build that is not loaded can be unregistered: its entry and its file go.
    let out = colony(&data, &["grants", "revoke", "http-tool", cap]);
    assert!(out.status.success(), "{}", stderr(&out));
    let out = colony(&data, &["tools", "unregister", "http-tool"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let all = listed(&data);
    assert_eq!(all["not_loaded"], serde_json::json!([]), "{all}");
    let digest = blake3::hash(&bytes(guests::HTTP_TOOL)).to_hex().to_string();
    assert!(!data.join(format!("tools/{digest}.wasm")).exists());
    assert!(
        data.join(format!(
            "tools/{}.wasm",
            blake3::hash(&bytes(guests::SCHEMA_TOOL)).to_hex()
        ))
        .exists()
    );
}

/// What panic-tool's `{"mode": "panic"}` call leaves in its error: its stderr line and the
/// panic's message and location, on one line.
const PANIC_TOOL_STDERR: &str = "; stderr: panic-tool: about to fail\\npanicked at panic-tool/src/lib.rs:26:13: tool panic on purpose";

/// A plugins-folder tool's arguments are checked against its input schema before the
/// sandbox, by the same check and with the same error as a registered tool's: a bad argument
/// that would make panic-tool trap is refused without running it (and does not count against
/// its breaker), a good one answers. A folder tool whose input schema is not a JSON Schema is
/// refused when it loads, as its registration would be.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_folder_tools_arguments_are_checked_against_its_schema() {
    let t = TestHost::start(&[
        (guests::PANIC_TOOL, "panic-tool.wasm"),
        (guests::BADSCHEMA_TOOL, "badschema-tool.wasm"),
    ])
    .await;
    let rejected = t.host.rejected().await;
    assert_eq!(rejected.len(), 1, "{rejected:?}");
    assert!(
        rejected[0].file.ends_with("badschema-tool.wasm")
            && rejected[0]
                .reason
                .contains("input-schema: not a valid JSON Schema"),
        "{rejected:?}"
    );

    for (args, path, keyword) in [
        (r#"{"mode": "nope"}"#, "/mode", "/enum"),
        (
            r#"{"mode": "panic", "extra": 1}"#,
            "/",
            "/additionalProperties",
        ),
        (r#"{}"#, "/", "/required"),
        ("not json", "/", ""),
    ] {
        // More refusals than the breaker's threshold of failures: none counts as one.
        for _ in 0..2 {
            match t.host.call_tool("panic-tool", args).await {
                Err(e @ ToolCallError::InvalidArguments { .. }) => {
                    assert_eq!(e.kind(), "invalid-arguments");
                    let shown = e.to_string();
                    assert!(
                        shown.starts_with(&format!(
                            "tool \"panic-tool\": invalid arguments at {path}: "
                        )),
                        "{args}: {shown}"
                    );
                    let ToolCallError::InvalidArguments { error, .. } = e else {
                        unreachable!()
                    };
                    assert!(error.schema_path.ends_with(keyword), "{args}: {error}");
                }
                other => panic!("{args}: expected invalid arguments, got {other:?}"),
            }
        }
    }
    // The folder-only call refuses them the same way.
    let err = t
        .host
        .invoke_tool("panic-tool", r#"{"mode": "nope"}"#)
        .await
        .unwrap_err();
    assert!(
        matches!(err, colony_host::store::CallError::InvalidArguments { .. }),
        "{err}"
    );
    assert_eq!(
        t.host
            .call_tool("panic-tool", r#"{"mode": "ok"}"#)
            .await
            .unwrap(),
        r#"{"ok": true}"#
    );
    // Valid arguments that make it panic do run it, and its panic is in the error.
    let err = t
        .host
        .call_tool("panic-tool", r#"{"mode": "panic"}"#)
        .await
        .unwrap_err();
    assert_eq!(err.kind(), "tool-error");
    assert!(err.to_string().ends_with(PANIC_TOOL_STDERR), "{err}");
}

/// An agent calling a tool that panics gets the panic's message and location in its error,
/// and a folder tool's schema refuses its bad arguments as a registered tool's does.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_agent_calling_a_panicking_tool_gets_the_panic_in_its_error() {
    let t = TestHost::start_copies(
        guests::TOOLS_AGENT,
        &[("meta", "{}", &["tools.call:panic-tool"])],
        |c| {
            colony_tests::install(&c.plugins_dir, guests::PANIC_TOOL, "panic-tool.wasm");
        },
    )
    .await;
    let rejected = t.host.rejected().await;
    assert!(rejected.is_empty(), "{rejected:?}");
    let s = t.state().await;
    let answer = ask_meta(
        &t,
        &s,
        br#"call panic-tool {"mode":"panic"}"#,
        "call.panic-tool",
    )
    .await;
    assert!(
        answer.starts_with(
            "err tool panic-tool: plugin \"panic-tool\": invoke: trapped: wasm `unreachable`"
        ),
        "{answer}"
    );
    assert!(answer.ends_with(PANIC_TOOL_STDERR), "{answer}");

    let bad = ask_meta(
        &t,
        &s,
        br#"call panic-tool {"mode":"nope"}"#,
        "call.panic-tool",
    )
    .await;
    assert!(
        bad.starts_with("err invalid-arguments panic-tool: at /mode: "),
        "{bad}"
    );
    assert_eq!(
        ask_meta(
            &t,
            &s,
            br#"call panic-tool {"mode":"ok"}"#,
            "call.panic-tool"
        )
        .await,
        r#"ok {"ok": true}"#
    );
}
