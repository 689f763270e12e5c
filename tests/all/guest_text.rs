//! Guest text that leaves the sandbox, through a real `colony` process: a hostile agent's
//! `log` lines, stdout and error message cannot forge a host log line (newline, CR, NUL and
//! escapes are escaped), a tool's huge `invoke` error reaches the CLI capped, with a
//! marker, and a guest's panic (message and location) reaches `colony tools invoke` and
//! `colony status`.

use crate::support::{COLONY, Running, colony, start_host, stderr};
use colony_tests::{guests, install};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// What the forging guests put at the start of a would-be line.
const FORGED: &str = "FORGED-HOST-LINE";

/// `line` without the host's own ANSI colour sequences (`ESC [ … letter`).
fn strip_ansi(line: &str) -> String {
    let mut out = String::with_capacity(line.len());
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        if c == '\x1b' {
            for d in chars.by_ref() {
                if d.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

#[test]
fn a_guest_cannot_forge_host_log_lines() {
    let dir = tempfile::tempdir().unwrap();
    let (data, plugins) = (dir.path().join("data"), dir.path().join("plugins"));
    std::fs::create_dir_all(&plugins).unwrap();
    install(&plugins, guests::FORGE_AGENT, "forge-agent.wasm");
    let log_path = dir.path().join("host.log");
    let log = std::fs::File::create(&log_path).unwrap();
    let child = Command::new(COLONY)
        .arg("--data-dir")
        .arg(&data)
        .args(["run", "--tick-ms", "20", "--plugins"])
        .arg(&plugins)
        .env("COLONY_LOG", "info")
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .unwrap();
    let host = Running(child);
    // Until the agent's failing on-timer was handled at least once.
    let deadline = Instant::now() + Duration::from_secs(60);
    let status = loop {
        let out = colony(&data, &["status", "--json"]);
        if out.status.success() {
            let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
            let forge = v["plugins"]
                .as_array()
                .into_iter()
                .flatten()
                .find(|p| p["name"] == "forge-agent")
                .cloned();
            if let Some(p) = forge
                && p["failed"].as_u64().unwrap_or(0) > 0
            {
                break p;
            }
        }
        assert!(
            Instant::now() < deadline,
            "forge-agent never failed: {}",
            stderr(&out)
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    drop(host);

    let bytes = std::fs::read(&log_path).unwrap();
    assert!(!bytes.contains(&0), "a NUL byte reached the host log");
    assert!(
        !bytes.contains(&b'\r'),
        "a carriage return reached the host log"
    );
    let text = String::from_utf8_lossy(&bytes);
    let mut guest_lines = 0;
    for line in text.lines() {
        let plain = strip_ansi(line);
        assert!(
            !plain.trim_start().starts_with(FORGED),
            "a guest forged a host line: {plain:?}"
        );
        assert!(
            plain.len() < 80 * 1024,
            "a {} byte line reached the log",
            plain.len()
        );
        if plain.contains(FORGED) {
            guest_lines += 1;
        }
    }
    // The log lines, the stdout line and the failures are there, escaped on one line each.
    assert!(guest_lines >= 5, "{guest_lines} guest lines:\n{text}");
    for shown in [
        "innocent\\nFORGED-HOST-LINE",
        "innocent\\rFORGED-HOST-LINE",
        "nul\\0byte\\u{1b}[2K\\nFORGED",
        "sep\\u{2028}FORGED",
        "innocent stdout\\rFORGED",
        "nul\\0stdout\\u{1b}]0;title\\u{7}",
        "failing\\nFORGED-HOST-LINE",
    ] {
        assert!(text.contains(shown), "{shown:?} not in the log:\n{text}");
    }
    // The 200 KiB error is capped wherever it is shown.
    let last_error = status["last_error"].as_str().unwrap_or_default();
    assert!(
        last_error.len() < 70 * 1024 && last_error.contains("[truncated: "),
        "{} bytes: {}",
        last_error.len(),
        &last_error[..last_error.len().min(200)]
    );
}

#[test]
fn a_tools_huge_error_reaches_the_cli_capped() {
    let dir = tempfile::tempdir().unwrap();
    let (data, plugins) = (dir.path().join("data"), dir.path().join("plugins"));
    std::fs::create_dir_all(&plugins).unwrap();
    install(&plugins, guests::ERRBOMB_TOOL, "errbomb-tool.wasm");
    let out = colony(
        &data,
        &[
            "tools",
            "invoke",
            "errbomb-tool",
            "{}",
            "--plugins",
            plugins.to_str().unwrap(),
        ],
    );
    assert!(!out.status.success());
    let err = stderr(&out);
    // 4.2 MB of error text became at most 64 KiB and a marker, on one line.
    assert!(err.len() < 70 * 1024, "{} bytes of error", err.len());
    assert!(
        err.contains("[truncated: "),
        "{}",
        &err[..err.len().min(300)]
    );
    assert_eq!(err.trim_end().lines().count(), 1, "{}", &err[..300]);
    assert!(err.contains("FORGED-HOST-LINE ERROR colony: tool error\\nFORGED"));
}

/// What a panic of `panic-tool` (after a line on stderr) adds to its error.
const TOOL_PANIC: &str = "; stderr: panic-tool: about to fail\\npanicked at panic-tool/src/lib.rs:26:13: tool panic on purpose";

/// `colony tools invoke` on a panicking tool, with no host and through a running one: the
/// error on stderr is one line ending with the panic's message and location; its bad
/// arguments are refused by its schema. `colony status --json` shows a panicking agent's
/// last error with its panic.
#[test]
fn a_guests_panic_reaches_tools_invoke_and_status() {
    let dir = tempfile::tempdir().unwrap();
    let (data, plugins) = (dir.path().join("data"), dir.path().join("plugins"));
    std::fs::create_dir_all(&plugins).unwrap();
    install(&plugins, guests::PANIC_TOOL, "panic-tool.wasm");
    let plugins_arg = plugins.to_str().unwrap();
    let invoke = |args: &str| {
        colony(
            &data,
            &[
                "tools",
                "invoke",
                "panic-tool",
                args,
                "--plugins",
                plugins_arg,
            ],
        )
    };
    let check = |how: &str| {
        let out = invoke(r#"{"mode": "panic"}"#);
        assert!(!out.status.success(), "{how}");
        let err = stderr(&out);
        // Without a host the guest's stderr is also in the CLI's own log, line by line.
        let line = err
            .lines()
            .find(|l| l.contains("trapped: wasm `unreachable`"))
            .unwrap_or_else(|| panic!("{how}: no trap in {err}"));
        assert!(line.ends_with(TOOL_PANIC), "{how}: {err}");
        let out = invoke(r#"{"mode": "nope"}"#);
        assert!(!out.status.success(), "{how}");
        let err = stderr(&out);
        assert!(err.contains("invalid arguments at /mode: "), "{how}: {err}");
        let out = invoke(r#"{"mode": "ok"}"#);
        assert!(out.status.success(), "{how}: {}", stderr(&out));
        assert_eq!(
            String::from_utf8_lossy(&out.stdout).trim(),
            r#"{"ok": true}"#
        );
    };
    check("without a host");

    install(&plugins, guests::PANIC_AGENT, "panic-agent.wasm");
    let _host = start_host(&data, &plugins, 20);
    check("through the host");
    // The agent panics on every timer tick; its last error carries the panic.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let out = colony(&data, &["status", "--json"]);
        let last_error = serde_json::from_slice::<serde_json::Value>(&out.stdout)
            .ok()
            .and_then(|v| {
                v["plugins"]
                    .as_array()?
                    .iter()
                    .find(|p| p["name"] == "panic-agent")?["last_error"]
                    .as_str()
                    .map(str::to_owned)
            });
        if let Some(e) = last_error {
            assert_eq!(
                e,
                "plugin \"panic-agent\": on-timer: trapped: wasm `unreachable` executed (the \
                 guest panicked or aborted); stderr: panicked at panic-agent/src/lib.rs:30:9: guest panic \
                 on purpose"
            );
            break;
        }
        assert!(
            Instant::now() < deadline,
            "panic-agent never failed: {}",
            stderr(&out)
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}
