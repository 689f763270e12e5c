//! Capability grants through a real guest: each capability whose interface exists has a
//! granted case and a no-permission case (which finds a deny row in the audit); grants are
//! pinned to the build's digest; revocation through the running host stops the next call.

use colony_host::agent::Event;
use colony_host::audit::{AuditFilter, CapabilityMatch, Decision};
use colony_host::store::CallError;
use colony_tests::{TestHost, guests, install};

/// A command for the caps agent.
fn command(text: &str) -> Event {
    colony_tests::message("test", text.as_bytes())
}

async fn caps_agent(requests: &[String], grants: &[String]) -> (TestHost, tempfile::TempDir) {
    let files = tempfile::tempdir().unwrap();
    std::fs::write(files.path().join("secret.txt"), "s3cret").unwrap();
    let requests = requests.to_vec();
    let grants = grants.to_vec();
    let t = TestHost::start_with(&[(guests::CAPS_AGENT, "caps-agent.wasm")], move |c| {
        let list = requests
            .iter()
            .map(|r| format!("{r:?}"))
            .collect::<Vec<_>>()
            .join(", ");
        std::fs::write(
            c.plugins_dir.join("caps-agent.toml"),
            format!("capabilities = [{list}]\n"),
        )
        .unwrap();
        if !grants.is_empty() {
            c.grants.insert(
                "caps-agent".into(),
                colony_host::config::ConfigGrant {
                    capabilities: grants,
                    digest: None,
                },
            );
        }
    })
    .await;
    (t, files)
}

async fn decisions(t: &TestHost, capability: &str, decision: Decision) -> usize {
    t.host.audit().writer().flush().await.unwrap();
    let filter = AuditFilter {
        plugin: Some("caps-agent".into()),
        capability: Some(CapabilityMatch::Exact(capability.into())),
        decision: Some(decision),
        ..AuditFilter::default()
    };
    t.host.audit().query(&filter).await.unwrap().len()
}

fn denied(r: Result<(), CallError>) -> String {
    match r {
        Err(CallError::Guest { message, .. }) => message,
        other => panic!("expected the guest to report a refusal, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fs_read_granted_and_not() {
    let files = tempfile::tempdir().unwrap();
    let dir = files.path().display().to_string();
    let cap = format!("fs.read:{dir}");
    std::fs::write(files.path().join("data.txt"), "42").unwrap();

    let (t, _) = caps_agent(std::slice::from_ref(&cap), std::slice::from_ref(&cap)).await;
    t.host
        .deliver("caps-agent", command(&format!("read:{dir}/data.txt")))
        .await
        .unwrap();
    // Read-only: writing is refused by the preopen's permissions.
    let msg = denied(
        t.host
            .deliver("caps-agent", command(&format!("write:{dir}/new.txt:x")))
            .await,
    );
    assert!(msg.contains("write"), "{msg}");
    assert!(!files.path().join("new.txt").exists());
    assert!(decisions(&t, &cap, Decision::Allow).await >= 1);

    let (t, _) = caps_agent(std::slice::from_ref(&cap), &[]).await;
    let msg = denied(
        t.host
            .deliver("caps-agent", command(&format!("read:{dir}/data.txt")))
            .await,
    );
    assert!(msg.contains("read"), "{msg}");
    assert_eq!(decisions(&t, &cap, Decision::Deny).await, 1);
    assert_eq!(decisions(&t, &cap, Decision::Allow).await, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fs_write_granted_and_not() {
    let files = tempfile::tempdir().unwrap();
    let dir = files.path().display().to_string();
    let cap = format!("fs.write:{dir}");

    let (t, _) = caps_agent(std::slice::from_ref(&cap), std::slice::from_ref(&cap)).await;
    t.host
        .deliver("caps-agent", command(&format!("write:{dir}/out.txt:hello")))
        .await
        .unwrap();
    assert_eq!(
        std::fs::read_to_string(files.path().join("out.txt")).unwrap(),
        "hello"
    );
    assert!(decisions(&t, &cap, Decision::Allow).await >= 1);

    let (t, _) = caps_agent(std::slice::from_ref(&cap), &[]).await;
    denied(
        t.host
            .deliver("caps-agent", command(&format!("write:{dir}/other.txt:x")))
            .await,
    );
    assert!(!files.path().join("other.txt").exists());
    assert_eq!(decisions(&t, &cap, Decision::Deny).await, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn env_granted_and_not() {
    // PATH is set for every test process; only a granted variable reaches the guest.
    let cap = "env:PATH".to_string();
    let (t, _) = caps_agent(std::slice::from_ref(&cap), std::slice::from_ref(&cap)).await;
    t.host
        .deliver("caps-agent", command("env:PATH"))
        .await
        .unwrap();
    denied(t.host.deliver("caps-agent", command("env:HOME")).await);

    let (t, _) = caps_agent(std::slice::from_ref(&cap), &[]).await;
    let msg = denied(t.host.deliver("caps-agent", command("env:PATH")).await);
    assert!(msg.contains("env PATH"), "{msg}");
    assert_eq!(decisions(&t, &cap, Decision::Deny).await, 1);
}

/// The same component with an extra custom section: a different build (digest), same behaviour.
fn rebuilt(component: &[u8]) -> Vec<u8> {
    let mut out = component.to_vec();
    let name = b"rebuilt";
    let payload = b"v2";
    out.push(0); // custom section
    out.push((1 + name.len() + payload.len()) as u8);
    out.push(name.len() as u8);
    out.extend_from_slice(name);
    out.extend_from_slice(payload);
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_changed_build_runs_without_grants_until_approved() {
    let files = tempfile::tempdir().unwrap();
    let dir = files.path().display().to_string();
    std::fs::write(files.path().join("data.txt"), "42").unwrap();
    let t = TestHost::start(&[(guests::CAPS_AGENT, "caps-agent.wasm")]).await;
    let read = command(&format!("read:{dir}/data.txt"));
    denied(t.host.deliver("caps-agent", read.clone()).await);

    t.host
        .grant("caps-agent", &format!("fs.read:{dir}"), "test")
        .await
        .unwrap();
    t.host.deliver("caps-agent", read.clone()).await.unwrap();

    // Swap in a different build: it loads and runs, but with no grants.
    let original = std::fs::read(guests::CAPS_AGENT).unwrap();
    std::fs::write(t.plugins_dir().join("caps-agent.wasm"), rebuilt(&original)).unwrap();
    let report = t.host.sync().await;
    assert_eq!(report.swapped, vec!["caps-agent"], "{report:?}");
    denied(t.host.deliver("caps-agent", read.clone()).await);
    let listing = t.host.grants().await;
    let entry = listing.iter().find(|g| g.plugin == "caps-agent").unwrap();
    assert_eq!(entry.state, "suspended");

    let digest = t.host.approve("caps-agent", "test").await.unwrap();
    assert_eq!(
        digest,
        blake3::hash(&rebuilt(&original)).to_hex().to_string()
    );
    t.host.deliver("caps-agent", read).await.unwrap();
    assert_eq!(
        t.host
            .grants()
            .await
            .iter()
            .find(|g| g.plugin == "caps-agent")
            .unwrap()
            .state,
        "granted"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revoking_through_the_running_host_stops_the_next_call() {
    let files = tempfile::tempdir().unwrap();
    let dir = files.path().display().to_string();
    std::fs::write(files.path().join("data.txt"), "42").unwrap();
    let cap = format!("fs.read:{dir}");
    let (t, _) = caps_agent(std::slice::from_ref(&cap), std::slice::from_ref(&cap)).await;
    let read = command(&format!("read:{dir}/data.txt"));
    for _ in 0..3 {
        t.host.deliver("caps-agent", read.clone()).await.unwrap();
    }
    t.host.revoke("caps-agent", &cap, "test").await.unwrap();
    denied(t.host.deliver("caps-agent", read.clone()).await);
    let status = t.host.plugins().await;
    assert!(
        status[0].restarts >= 1,
        "revoking a filesystem grant ends the instance"
    );

    // The history is in the audit chain: grant (config), revoke (test).
    let history = t
        .host
        .audit()
        .query(&AuditFilter {
            plugin: Some("caps-agent".into()),
            capability: Some(CapabilityMatch::Exact(cap.clone())),
            ..AuditFilter::default()
        })
        .await
        .unwrap();
    let kinds: Vec<&str> = history
        .iter()
        .filter(|e| e.decision.is_none())
        .map(|e| e.kind.as_str())
        .collect();
    assert_eq!(kinds, vec!["revoke", "grant"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grants_survive_a_restart_through_the_audit_history() {
    let files = tempfile::tempdir().unwrap();
    let dir = files.path().display().to_string();
    std::fs::write(files.path().join("data.txt"), "42").unwrap();
    let root = tempfile::tempdir().unwrap();
    let config = colony_tests::test_config(root.path());
    install(&config.plugins_dir, guests::CAPS_AGENT, "caps-agent.wasm");
    let host = colony_host::supervisor::Host::start(config.clone())
        .await
        .unwrap();
    host.grant("caps-agent", &format!("fs.read:{dir}"), "test")
        .await
        .unwrap();
    host.shutdown().await;
    drop(host);
    let host = colony_host::supervisor::Host::start(config).await.unwrap();
    host.deliver("caps-agent", command(&format!("read:{dir}/data.txt")))
        .await
        .unwrap();
    assert!(host.audit().verify().await.unwrap().is_intact());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_host_refuses_to_start_on_a_tampered_chain() {
    let root = tempfile::tempdir().unwrap();
    let config = colony_tests::test_config(root.path());
    install(&config.plugins_dir, guests::CAPS_AGENT, "caps-agent.wasm");
    let host = colony_host::supervisor::Host::start(config.clone())
        .await
        .unwrap();
    host.grant("caps-agent", "env:PATH", "test").await.unwrap();
    host.shutdown().await;
    drop(host);

    // An attacker with database access grants more by editing the recorded grant.
    let store = colony_host::audit::AuditStore::open_sqlite(&config.data_dir.join("audit.db"))
        .await
        .unwrap();
    colony_host::audit::testing::drop_append_only_guard(&store)
        .await
        .unwrap();
    let n = colony_host::audit::testing::execute(
        &store,
        "UPDATE audit_log SET capability = 'env:HOME' WHERE kind = 'grant'",
    )
    .await
    .unwrap();
    assert_eq!(n, 1);
    store.close().await.unwrap();

    let err = match colony_host::supervisor::Host::start(config).await {
        Ok(_) => panic!("the host started on a tampered audit chain"),
        Err(e) => e.to_string(),
    };
    assert!(err.contains("the audit chain is broken at record"), "{err}");
}
