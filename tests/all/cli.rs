//! The `colony` command line: `plugins inspect` on good and bad files, and a running
//! `colony run` reached through its admin socket by `plugins list`, `tools invoke` and
//! `status`.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use colony_tests::{core_module_bytes, guests, install, random_bytes};

use crate::support::{COLONY, colony, start_host, stderr, stdout};

#[test]
fn inspect_prints_every_field_of_the_shipped_plugins() {
    let dir = tempfile::tempdir().unwrap();
    for (file, bytes) in colony_host::embedded::PLUGINS {
        let path = dir.path().join(file);
        std::fs::write(&path, bytes).unwrap();
        let out = colony(dir.path(), &["plugins", "inspect", path.to_str().unwrap()]);
        assert!(out.status.success(), "{}", stderr(&out));
        let text = stdout(&out);
        for field in [
            "name:",
            "kind:",
            "version:",
            "digest:",
            "world:",
            "imports:",
            "exports:",
            "capabilities:",
            "limits:",
            "compile time:",
        ] {
            assert!(text.contains(field), "{file}: no {field} in\n{text}");
        }
        assert!(
            text.contains(&blake3::hash(bytes).to_hex().to_string()),
            "{text}"
        );

        let out = colony(
            dir.path(),
            &["plugins", "inspect", "--json", path.to_str().unwrap()],
        );
        assert!(out.status.success(), "{}", stderr(&out));
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        let stem = file.trim_end_matches(".wasm");
        assert_eq!(v["name"], stem);
        let want_kind = if stem.ends_with("-tool") {
            "tool"
        } else {
            "agent"
        };
        assert_eq!(v["kind"], want_kind);
        assert_eq!(v["version"], "0.1.0");
        assert_eq!(v["manifest_source"], "embedded");
        assert!(v["compile_ms"].as_f64().unwrap() > 0.0);
        assert!(
            v["imports"]
                .as_array()
                .unwrap()
                .iter()
                .any(|i| i.as_str().unwrap().starts_with("wasi:"))
        );
        assert_eq!(v["world"], format!("colony:plugin/{want_kind}@0.1.0"));
    }
}

#[test]
fn inspect_refuses_malformed_files_with_one_line() {
    let dir = tempfile::tempdir().unwrap();
    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        ("core.wasm", core_module_bytes(), "core wasm module"),
        (
            "random.wasm",
            random_bytes(1),
            "not a WebAssembly component",
        ),
        (
            "bad.wasm",
            std::fs::read(guests::BADIMPORT_AGENT).unwrap(),
            "colony:evil/backdoor@0.1.0",
        ),
    ];
    for (name, bytes, want) in cases {
        let path = dir.path().join(name);
        std::fs::write(&path, bytes).unwrap();
        let out = colony(dir.path(), &["plugins", "inspect", path.to_str().unwrap()]);
        assert_eq!(out.status.code(), Some(3), "{name}: {}", stderr(&out));
        let err = stderr(&out);
        assert_eq!(
            err.trim_end().lines().count(),
            1,
            "{name}: more than one line:\n{err}"
        );
        assert!(err.contains(name) && err.contains(want), "{name}: {err}");
    }
    let out = colony(dir.path(), &["plugins", "inspect", "/no/such/file.wasm"]);
    assert_eq!(out.status.code(), Some(3));
    assert!(
        stderr(&out).contains("/no/such/file.wasm: cannot read"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn a_running_host_answers_through_the_admin_socket() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let plugins = dir.path().join("plugins");
    std::fs::create_dir_all(&plugins).unwrap();
    install(&plugins, guests::GOOD_AGENT, "good-agent.wasm");
    install(&plugins, guests::GOOD_TOOL, "good-tool.wasm");
    std::fs::write(plugins.join("random.wasm"), random_bytes(5)).unwrap();

    // No host yet: status says so with its exit code.
    let out = colony(&data, &["status"]);
    assert_eq!(out.status.code(), Some(4), "{}", stderr(&out));

    let _host = start_host(&data, &plugins, 20);

    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(data.join("admin.token"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);

    let out = colony(&data, &["plugins", "list", "--json"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let names: Vec<&str> = v["plugins"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, vec!["good-agent", "good-tool"]);
    assert!(
        v["rejected"][0]["reason"]
            .as_str()
            .unwrap()
            .contains("not a WebAssembly component")
    );

    let out = colony(&data, &["tools", "invoke", "good-tool", r#"{"abc":1}"#]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(stdout(&out).trim(), r#"{"len": 9}"#);

    let out = colony(&data, &["tools", "list"]);
    assert!(stdout(&out).contains("good-tool"), "{}", stdout(&out));

    // The timer ticks reach the agent: status shows deliveries climbing.
    let delivered = || {
        let out = colony(&data, &["status", "--json"]);
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        v["plugins"][0]["delivered"].as_u64().unwrap()
    };
    let first = delivered();
    let deadline = Instant::now() + Duration::from_secs(30);
    while delivered() <= first {
        assert!(Instant::now() < deadline, "no timer events delivered");
        std::thread::sleep(Duration::from_millis(50));
    }
    let out = colony(&data, &["status"]);
    let text = stdout(&out);
    assert!(
        text.contains("good-agent") && (text.contains(" idle ") || text.contains(" active ")),
        "{text}"
    );
    assert!(text.contains("state") && text.contains("fuel"), "{text}");

    // Lifecycle actions: put to sleep, then the next timer tick wakes it.
    let out = colony(&data, &["agents", "sleep", "good-agent"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(stdout(&out).trim(), "good-agent is asleep");
    let counter = |key: &str| {
        let out = colony(&data, &["status", "--json"]);
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        v["plugins"][0][key].as_u64().unwrap()
    };
    assert_eq!(counter("sleeps"), 1);
    let deadline = Instant::now() + Duration::from_secs(30);
    while counter("wakes") < 1 {
        assert!(Instant::now() < deadline, "the timer tick did not wake it");
        std::thread::sleep(Duration::from_millis(50));
    }
    let out = colony(&data, &["agents", "release", "good-agent"]);
    assert_eq!(stdout(&out).trim(), "good-agent was not quarantined");
    let out = colony(&data, &["agents", "sleep", "no-such-agent"]);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("no such agent"), "{}", stderr(&out));

    // A bad token is refused.
    std::fs::write(data.join("admin.token"), "0000").unwrap();
    let out = colony(&data, &["status"]);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("bad admin token"), "{}", stderr(&out));
}

#[test]
fn tools_work_with_no_host_running() {
    let dir = tempfile::tempdir().unwrap();
    let plugins = dir.path().join("plugins");
    std::fs::create_dir_all(&plugins).unwrap();
    install(&plugins, guests::GOOD_TOOL, "good-tool.wasm");
    let p = plugins.to_str().unwrap();
    let out = colony(
        &dir.path().join("data"),
        &["tools", "invoke", "good-tool", "[1,2]", "--plugins", p],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(stdout(&out).trim(), r#"{"len": 5}"#);
    let out = colony(
        &dir.path().join("data"),
        &["tools", "invoke", "good-tool", "{not json", "--plugins", p],
    );
    assert_eq!(out.status.code(), Some(3));
    let out = colony(
        &dir.path().join("data"),
        &["plugins", "list", "--plugins", p],
    );
    assert!(stdout(&out).contains("good-tool"), "{}", stdout(&out));
}

#[test]
fn operators_publish_to_and_tail_the_bus() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let plugins = dir.path().join("plugins");
    std::fs::create_dir_all(&plugins).unwrap();
    install(&plugins, guests::GOOD_AGENT, "good-agent.wasm");
    let _host = start_host(&data, &plugins, 0);
    let tail = Command::new(COLONY)
        .arg("--data-dir")
        .arg(&data)
        .args(["bus", "sub", "news.>", "--count", "1"])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    // Publish until the tail has subscribed and caught one.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let out = colony(&data, &["bus", "pub", "news.btc", "hello"]);
        assert!(out.status.success(), "{}", stderr(&out));
        if stdout(&out).contains("delivered to 1") {
            break;
        }
        assert!(Instant::now() < deadline, "the tail never subscribed");
        std::thread::sleep(Duration::from_millis(50));
    }
    let out = tail.wait_with_output().unwrap();
    let line: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(line["subject"], "news.btc");
    assert_eq!(line["payload"], "hello");
    assert!(
        line["sender"].as_str().unwrap().starts_with("operator:"),
        "{line}"
    );
    // The host's own subjects are refused.
    let out = colony(&data, &["bus", "pub", "_DEAD.x", "y"]);
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
    let out = colony(&data, &["status"]);
    assert!(stdout(&out).contains("dead letters"), "{}", stdout(&out));
}
