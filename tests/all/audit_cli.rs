//! The audit through the `colony` binary: grants made through a running host's admin socket,
//! `colony audit` filters, `colony audit verify` on an edited row, and a host killed with
//! SIGKILL while it writes, which must keep every record it acknowledged.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use colony_host::audit::{AuditFilter, AuditKind, AuditStore};
use colony_tests::{guests, install};

use crate::support::{colony, start_host, stderr, stdout};

#[test]
fn grants_through_the_admin_socket_are_audited_and_verify_finds_an_edit() {
    let dir = tempfile::tempdir().unwrap();
    let (data, plugins) = (dir.path().join("data"), dir.path().join("plugins"));
    std::fs::create_dir_all(&plugins).unwrap();
    install(&plugins, guests::CAPS_AGENT, "caps-agent.wasm");
    let host = start_host(&data, &plugins, 0);

    let out = colony(&data, &["grants", "grant", "caps-agent", "env:PATH"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let out = colony(
        &data,
        &["grants", "grant", "caps-agent", "fs.read:relative"],
    );
    assert_eq!(
        out.status.code(),
        Some(3),
        "a malformed capability is invalid input"
    );
    let out = colony(&data, &["grants", "list", "--json"]);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let entry = v
        .as_array()
        .unwrap()
        .iter()
        .find(|g| g["plugin"] == "caps-agent")
        .unwrap();
    assert_eq!(entry["state"], "granted");
    assert_eq!(entry["capabilities"], serde_json::json!(["env:PATH"]));
    let out = colony(&data, &["grants", "revoke", "caps-agent", "env:PATH"]);
    assert!(out.status.success(), "{}", stderr(&out));
    drop(host);

    let out = colony(
        &data,
        &[
            "audit",
            "--plugin",
            "caps-agent",
            "--capability",
            "env:PATH",
            "--json",
        ],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let kinds: Vec<&str> = v
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["kind"].as_str().unwrap())
        .collect();
    assert_eq!(kinds, vec!["revoke", "grant"]);
    assert!(v[0]["actor"].as_str().unwrap().starts_with("admin:"), "{v}");
    let out = colony(&data, &["audit", "--decision", "deny", "--json"]);
    assert!(out.status.success());
    let out = colony(&data, &["audit"]);
    assert!(stdout(&out).contains("caps-agent"), "{}", stdout(&out));

    let out = colony(&data, &["audit", "verify"]);
    assert!(out.status.success(), "{}{}", stdout(&out), stderr(&out));
    assert!(stdout(&out).contains("chain intact"));

    // Edit the grant row as an attacker with database access would.
    let rt = tokio::runtime::Runtime::new().unwrap();
    let seq = rt.block_on(async {
        let store = AuditStore::open_sqlite(&AuditStore::default_path(&data))
            .await
            .unwrap();
        let grant = store
            .query(&AuditFilter {
                kind: Some(AuditKind::Grant),
                ..AuditFilter::default()
            })
            .await
            .unwrap()[0]
            .seq;
        colony_host::audit::testing::drop_append_only_guard(&store)
            .await
            .unwrap();
        let n = colony_host::audit::testing::execute(
            &store,
            &format!("UPDATE audit_log SET capability = 'env:HOME' WHERE seq = {grant}"),
        )
        .await
        .unwrap();
        assert_eq!(n, 1);
        store.close().await.unwrap();
        grant
    });
    let out = colony(&data, &["audit", "verify"]);
    assert_eq!(out.status.code(), Some(3), "{}", stdout(&out));
    let err = stderr(&out);
    assert!(
        err.contains(&format!("audit chain broken at record {seq}")),
        "{err}"
    );
}

#[test]
fn sigkill_while_writing_keeps_every_acknowledged_record() {
    let dir = tempfile::tempdir().unwrap();
    let (data, plugins) = (dir.path().join("data"), dir.path().join("plugins"));
    std::fs::create_dir_all(&plugins).unwrap();
    install(&plugins, guests::CAPS_AGENT, "caps-agent.wasm");
    let mut host = start_host(&data, &plugins, 0);

    // Four clients grant distinct capabilities as fast as the host acknowledges them.
    let acked: Arc<Mutex<Vec<String>>> = Arc::default();
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let clients: Vec<_> = (0..4)
        .map(|c| {
            let (acked, stop, data) = (acked.clone(), stop.clone(), data.clone());
            std::thread::spawn(move || {
                for i in 0.. {
                    if stop.load(std::sync::atomic::Ordering::Relaxed) {
                        break;
                    }
                    let cap = format!("env:VAR_{c}_{i}");
                    let out = colony(&data, &["grants", "grant", "caps-agent", &cap]);
                    if out.status.success() {
                        acked.lock().unwrap().push(cap);
                    } else {
                        break; // the host is gone
                    }
                }
            })
        })
        .collect();
    let deadline = Instant::now() + Duration::from_secs(60);
    while acked.lock().unwrap().len() < 40 {
        assert!(Instant::now() < deadline, "too few grants acknowledged");
        std::thread::sleep(Duration::from_millis(10));
    }
    // SIGKILL: no shutdown, no flush.
    host.0.kill().unwrap();
    host.0.wait().unwrap();
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    for c in clients {
        c.join().unwrap();
    }
    let acked = acked.lock().unwrap().clone();

    // After restart every acknowledged grant is there, and the chain is intact.
    let _host = start_host(&data, &plugins, 0);
    let out = colony(&data, &["grants", "list", "--json"]);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let entry = v
        .as_array()
        .unwrap()
        .iter()
        .find(|g| g["plugin"] == "caps-agent")
        .unwrap();
    let granted: Vec<&str> = entry["capabilities"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c.as_str().unwrap())
        .collect();
    for cap in &acked {
        assert!(
            granted.contains(&cap.as_str()),
            "acknowledged {cap} is missing after SIGKILL"
        );
    }
    let out = colony(&data, &["audit", "verify"]);
    assert!(out.status.success(), "{}{}", stdout(&out), stderr(&out));
}
