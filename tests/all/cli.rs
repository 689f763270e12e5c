//! The `colony` command line: `plugins inspect` on good and bad files, and a running
//! `colony run` reached through its admin socket by `plugins list`, `tools invoke` and
//! `status`; headed tables and UTC times; an agent dropped into an empty folder seeing the
//! replay from its first event; pausing and resuming an agent.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use colony_tests::{core_module_bytes, guests, install, random_bytes};

use crate::support::{COLONY, colony, start_host, start_host_with, stderr, stdout};

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

/// Whether `s` is a UTC ISO 8601 time with milliseconds: `2022-01-01T00:59:00.000Z`.
fn is_utc_ms(s: &str) -> bool {
    let b = s.as_bytes();
    b.len() == 24
        && b.iter().enumerate().all(|(i, c)| match i {
            4 | 7 => *c == b'-',
            10 => *c == b'T',
            13 | 16 => *c == b':',
            19 => *c == b'.',
            23 => *c == b'Z',
            _ => c.is_ascii_digit(),
        })
}

/// The first line of `text`, split into its header cells (two or more spaces apart).
fn header(text: &str) -> Vec<String> {
    text.lines()
        .next()
        .unwrap_or_default()
        .split("  ")
        .map(str::trim)
        .filter(|c| !c.is_empty())
        .map(String::from)
        .collect()
}

#[test]
fn tables_have_headers_times_are_utc_and_plugins_list_json_is_as_documented() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let plugins = dir.path().join("plugins");
    std::fs::create_dir_all(&plugins).unwrap();
    install(&plugins, guests::GOOD_AGENT, "good-agent.wasm");
    install(&plugins, guests::GOOD_TOOL, "good-tool.wasm");
    std::fs::write(plugins.join("random.wasm"), random_bytes(5)).unwrap();

    // `plugins list --json` with no host: the documented shape, from the files.
    let offline = colony(
        &dir.path().join("offline"),
        &[
            "plugins",
            "list",
            "--json",
            "--plugins",
            plugins.to_str().unwrap(),
        ],
    );
    assert!(offline.status.success(), "{}", stderr(&offline));
    let shape = |v: &serde_json::Value| {
        let mut keys: Vec<&str> = v.as_object().unwrap().keys().map(String::as_str).collect();
        keys.sort();
        assert_eq!(keys, ["plugins", "plugins_dir", "rejected"], "{v}");
        let names: Vec<&str> = v["plugins"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p["name"].as_str().unwrap())
            .collect();
        assert_eq!(names, ["good-agent", "good-tool"], "{v}");
        assert!(
            v["rejected"][0]["file"]
                .as_str()
                .unwrap()
                .ends_with("random.wasm"),
            "{v}"
        );
        assert!(v["rejected"][0]["reason"].is_string(), "{v}");
    };
    let v: serde_json::Value = serde_json::from_slice(&offline.stdout).unwrap();
    shape(&v);

    let _host = start_host_with(&data, &plugins, 20, &["--feed", "none"]);
    let out = colony(&data, &["plugins", "list", "--json"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    // The running host's plugins, with their state: not the whole status object.
    shape(&v);
    assert_eq!(v["plugins"][1]["state"], "ready", "{v}");
    assert!(v.get("bus").is_none() && v.get("orders").is_none(), "{v}");

    let text = |args: &[&str]| {
        let out = colony(&data, args);
        assert!(out.status.success(), "{args:?}: {}", stderr(&out));
        stdout(&out)
    };
    let listing = text(&["plugins", "list"]);
    assert_eq!(
        header(&listing),
        ["plugin", "kind", "version", "state", "digest", "file"],
        "{listing}"
    );
    assert!(
        listing.lines().nth(1).unwrap().starts_with("good-agent "),
        "{listing}"
    );
    let status = text(&["status"]);
    let table: String = status.lines().skip(1).collect::<Vec<_>>().join("\n");
    assert_eq!(
        header(&table),
        [
            "plugin",
            "kind",
            "state",
            "delivered",
            "failed",
            "restarts",
            "mailbox",
            "dropped",
            "refused",
            "fuel",
            "memory",
            "busy",
            "last error"
        ],
        "{status}"
    );
    // The time in handlers carries its unit.
    let busy = status
        .lines()
        .find(|l| l.starts_with("good-agent "))
        .unwrap_or_else(|| panic!("{status}"));
    assert!(
        [" ns ", " µs ", " ms ", " s "]
            .iter()
            .any(|u| busy.contains(u)),
        "{busy}"
    );
    let grants = text(&["grants", "list"]);
    assert_eq!(
        header(&grants),
        ["plugin", "state", "approved build", "capabilities"],
        "{grants}"
    );
    let tools = text(&["tools", "list"]);
    assert_eq!(
        header(&tools),
        ["tool", "source", "versions", "description"],
        "{tools}"
    );
    assert!(
        tools.lines().nth(1).unwrap().starts_with("good-tool "),
        "{tools}"
    );
    let audit = text(&["audit", "--limit", "5"]);
    assert_eq!(
        header(&audit),
        [
            "seq",
            "time (UTC)",
            "kind",
            "plugin",
            "capability",
            "decision",
            "actor / detail"
        ],
        "{audit}"
    );
    let time = audit
        .lines()
        .nth(1)
        .and_then(|l| l.split_whitespace().nth(1))
        .unwrap_or_else(|| panic!("{audit}"));
    assert!(is_utc_ms(time), "{time}");
    // `--json` keeps the nanoseconds.
    let json: serde_json::Value =
        serde_json::from_slice(&colony(&data, &["audit", "--json", "--limit", "1"]).stdout)
            .unwrap();
    assert!(
        json[0]["ts_ns"].as_i64().unwrap() > 1_600_000_000_000_000_000,
        "{json}"
    );
}

#[test]
fn the_readme_cp_into_the_plugins_folder_works_on_a_fresh_data_directory() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("fresh");
    let out = colony(&data, &["plugins", "dir"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(stdout(&out).trim(), data.join("plugins").to_str().unwrap());
    assert!(data.join("plugins").is_dir());

    // `colony new` makes it too, so the README's `cp` after it works.
    let data = dir.path().join("fresh-2");
    let out = colony(
        &data,
        &[
            "new",
            "agent",
            "my-agent",
            "--path",
            dir.path().join("my-agent").to_str().unwrap(),
        ],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(data.join("plugins").is_dir());
    assert!(
        stdout(&out).contains(&format!(
            "plugins folder: {}",
            data.join("plugins").display()
        )),
        "{}",
        stdout(&out)
    );
}

#[test]
fn a_command_whose_output_is_cut_off_ends_quietly() {
    use std::os::unix::process::ExitStatusExt;
    let mut child = Command::new(COLONY)
        .args(["plugins", "inspect", guests::GOOD_AGENT])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // The reader goes away before the command prints (as `| head -0` would).
    drop(child.stdout.take());
    let out = child.wait_with_output().unwrap();
    let err = stderr(&out);
    assert!(
        !err.contains("panicked") && !err.contains("Broken pipe"),
        "{err}"
    );
    assert!(
        // 13: SIGPIPE.
        out.status.success() || out.status.signal() == Some(13),
        "{:?}: {err}",
        out.status
    );
}

/// 60 one-minute BTC-PERP bars.
fn bars(dir: &std::path::Path) -> std::path::PathBuf {
    let mut csv = String::from("timestamp,open,high,low,close,volume\n");
    for i in 0..60u32 {
        let close = 46_000 + (i * 37) % 200;
        csv.push_str(&format!(
            "2022-01-01 00:{i:02}:00,{close},{},{},{close},{}\n",
            close + 10,
            close - 10,
            100 + i
        ));
    }
    let path = dir.join("btc-perp-2022-01-01-1m.csv");
    std::fs::write(&path, csv).unwrap();
    path
}

/// Polls `ok` every 50 ms for up to 60 s.
fn wait_for(what: &str, mut ok: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while !ok() {
        assert!(Instant::now() < deadline, "timed out: {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn status_json(data: &std::path::Path) -> serde_json::Value {
    let out = colony(data, &["status", "--json"]);
    assert!(out.status.success(), "{}", stderr(&out));
    serde_json::from_slice(&out.stdout).unwrap()
}

#[test]
fn an_agent_dropped_into_an_empty_folder_sees_the_replay_from_its_first_event() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let plugins = root.join("plugins");
    std::fs::create_dir_all(&plugins).unwrap();
    let config = root.join("colony.toml");
    std::fs::write(
        &config,
        format!(
            "plugins = \"plugins\"\ntick_ms = 0\n[market]\nfeed = \"replay:{}\"\n\
             [agents.market-agent]\nsymbol = \"BTC-PERP\"\nkinds = \"candle\"\n\
             [grants.market-agent]\ncapabilities = [\"market.read:BTC-PERP\"]\n",
            bars(root).display()
        ),
    )
    .unwrap();
    let data = root.join("data");
    let log = root.join("host.log");
    let child = Command::new(COLONY)
        .arg("--data-dir")
        .arg(&data)
        .args(["run", "--no-progress", "--config"])
        .arg(&config)
        .env("COLONY_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    let _host = crate::support::Running(child);
    wait_for("the host", || colony(&data, &["status"]).status.success());
    // No agent: the replay waits, and the log says why.
    wait_for("the log line", || {
        std::fs::read_to_string(&log)
            .unwrap_or_default()
            .contains("no agent runs in the plugins folder")
    });
    assert_eq!(status_json(&data)["market"]["published"], 0);

    install(&plugins, guests::MARKET_AGENT, "market-agent.wasm");
    wait_for("the replay", || {
        status_json(&data)["market"]["published"].as_u64() == Some(60)
    });
    // Every bar reached the agent, from the first.
    wait_for("the agent", || {
        status_json(&data)["plugins"][0]["md_taken"].as_u64() == Some(60)
    });
    let s = status_json(&data);
    let agent = &s["plugins"][0];
    assert_eq!(agent["name"], "market-agent", "{s}");
    assert_eq!(agent["md_routed"], 60, "{s}");
    assert_eq!(agent["bus_dropped"], 0, "{s}");
    assert!(
        std::fs::read_to_string(&log)
            .unwrap()
            .contains("an agent is running: the feed starts")
    );
    // The market lines of `colony status`: a header and UTC times, not nanoseconds.
    let text = stdout(&colony(&data, &["status"]));
    let line = text
        .lines()
        .find(|l| l.trim_start().starts_with("BTC-PERP"))
        .unwrap_or_else(|| panic!("{text}"));
    let time = line.split_whitespace().nth(2).unwrap();
    assert!(is_utc_ms(time) && time.starts_with("2022-01-01T"), "{line}");
    assert!(
        text.lines()
            .any(|l| l.trim_start().starts_with("symbol ") && l.contains("last update (UTC)")),
        "{text}"
    );
    assert!(!text.contains(" ns"), "{text}");
}

#[test]
fn a_paused_agent_handles_nothing_until_resumed() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let plugins = dir.path().join("plugins");
    std::fs::create_dir_all(&plugins).unwrap();
    install(&plugins, guests::GOOD_AGENT, "good-agent.wasm");
    let _host = start_host_with(&data, &plugins, 20, &["--feed", "none"]);
    let agent = |key: &str| status_json(&data)["plugins"][0][key].clone();
    let delivered = || agent("delivered").as_u64().unwrap();
    wait_for("ticks", || delivered() >= 2);

    let out = colony(&data, &["agents", "pause", "good-agent"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(stdout(&out).trim(), "good-agent is paused");
    let at_pause = delivered();
    assert_eq!(agent("state"), "paused");
    // Ticks keep coming and are dropped with a count; a message waits for the resume.
    let out = colony(&data, &["bus", "pub", "agent.good-agent.inbox", "echo"]);
    assert!(out.status.success(), "{}", stderr(&out));
    wait_for("ticks dropped while paused", || {
        agent("paused_dropped").as_u64().unwrap() >= 5
    });
    assert_eq!(delivered(), at_pause, "a paused agent handled an event");
    assert_eq!(agent("mailbox_depth"), 1, "the message is held");
    let text = stdout(&colony(&data, &["status"]));
    assert!(
        text.lines()
            .any(|l| l.starts_with("good-agent ") && l.contains(" paused ")),
        "{text}"
    );
    // Pausing again changes nothing; sleep and wake leave it paused.
    let out = colony(&data, &["agents", "pause", "good-agent"]);
    assert!(stdout(&out).contains("was not paused"), "{}", stdout(&out));
    let out = colony(&data, &["agents", "wake", "good-agent"]);
    assert!(stderr(&out).contains("paused"), "{}", stderr(&out));

    let out = colony(&data, &["agents", "resume", "good-agent"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(stdout(&out).trim(), "good-agent resumed");
    wait_for("the held message and ticks", || delivered() >= at_pause + 3);
    assert_ne!(agent("state"), "paused");
    assert_eq!(agent("failed"), 0);
    let out = colony(&data, &["agents", "resume", "good-agent"]);
    assert_eq!(stdout(&out).trim(), "good-agent was not paused");
    // Both operator actions are in the audit trail.
    let audit = stdout(&colony(&data, &["audit", "--plugin", "good-agent"]));
    assert!(
        audit.contains("paused by ") && audit.contains("resumed by "),
        "{audit}"
    );
}
