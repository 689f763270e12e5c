//! What a local user, a second process or a careless operator can do to a host (issue 15,
//! items 9–16), each through the real `colony` binary: a second host on the data directory, a
//! revoke racing a starting host, FIFOs and devices named `.wasm`, file modes checked as a
//! second Unix user, the admin socket's peer, names and capabilities with invisible
//! characters, the admin socket's limits, and bad values on the command line.

use std::io::{Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use colony_tests::{guests, install};

use crate::support::{COLONY, Running, colony, start_host, start_host_with, stderr, stdout};

/// Runs `colony --data-dir DATA ARGS…`, failing the test if it has not finished in `limit`
/// (a hang is the bug several of these tests look for).
fn colony_bounded(data: &Path, args: &[&str], limit: Duration) -> Output {
    let child = Command::new(COLONY)
        .arg("--data-dir")
        .arg(data)
        .args(args)
        .env("COLONY_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run colony: {e}"));
    let pid = child.id();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    match rx.recv_timeout(limit) {
        Ok(out) => out.unwrap_or_else(|e| panic!("colony {args:?}: {e}")),
        Err(_) => {
            let _ = Command::new("kill").args(["-9", &pid.to_string()]).status();
            panic!("colony {args:?} did not finish in {limit:?}: it hangs");
        }
    }
}

fn mkfifo(path: &Path) {
    let ok = Command::new("mkfifo")
        .arg(path)
        .status()
        .is_ok_and(|s| s.success());
    assert!(ok, "mkfifo {}", path.display());
}

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .permissions()
        .mode()
        & 0o777
}

/// A second Unix user to try things as (created once; the tests run as root). `None` when
/// this process cannot create one (not root): the callers then check file modes only.
fn other_user() -> Option<&'static str> {
    const NAME: &str = "colonytest";
    let exists = || {
        Command::new("id")
            .args(["-u", NAME])
            .output()
            .is_ok_and(|o| o.status.success())
    };
    if !exists() {
        let _ = Command::new("useradd")
            .args(["-M", "-r", "-s", "/usr/sbin/nologin", NAME])
            .output();
    }
    exists().then_some(NAME)
}

/// Runs `cmd ARGS…` as `user` (runuser); its output.
fn run_as(user: &str, args: &[&str]) -> Output {
    Command::new("runuser")
        .args(["-u", user, "--"])
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("runuser: {e}"))
}

/// A host's resident memory in KiB (`VmRSS`).
fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

/// A host's CPU time (user + system) in clock ticks.
fn cpu_ticks(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let after = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let fields: Vec<&str> = after.split_whitespace().collect();
    let f = |i: usize| {
        fields
            .get(i)
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0)
    };
    // Fields after the command: state is 0, utime 11, stime 12.
    f(11) + f(12)
}

fn token(data: &Path) -> String {
    std::fs::read_to_string(data.join("admin.token"))
        .unwrap_or_else(|e| panic!("admin.token: {e}"))
        .trim()
        .to_string()
}

/// Sends one raw line to the admin socket and reads one line back.
fn admin_line(data: &Path, line: &str) -> String {
    let mut s = UnixStream::connect(data.join("admin.sock")).unwrap_or_else(|e| panic!("{e}"));
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    s.write_all(line.as_bytes()).unwrap();
    s.write_all(b"\n").unwrap();
    let mut out = Vec::new();
    let mut b = [0u8; 1];
    while s.read(&mut b).unwrap_or(0) == 1 && b[0] != b'\n' {
        out.push(b[0]);
    }
    String::from_utf8_lossy(&out).into_owned()
}

// Item 9.
#[test]
fn a_second_host_on_the_data_directory_is_refused_and_the_first_stays_reachable() {
    let dir = tempfile::tempdir().unwrap();
    let (data, plugins) = (dir.path().join("data"), dir.path().join("plugins"));
    std::fs::create_dir_all(&plugins).unwrap();
    install(&plugins, guests::GOOD_AGENT, "good.wasm");
    let first = start_host(&data, &plugins, 0);
    let before = token(&data);
    let audit_before = stdout(&colony(&data, &["audit", "--json", "--limit", "1000"]));

    let second = colony_bounded(
        &data,
        &[
            "run",
            "--tick-ms",
            "0",
            "--plugins",
            plugins.to_str().unwrap(),
        ],
        Duration::from_secs(60),
    );
    assert_eq!(second.status.code(), Some(5), "{}", stderr(&second));
    let err = stderr(&second);
    assert!(
        err.contains(&format!("pid {}", first.0.id())) && err.contains("in use"),
        "{err}"
    );
    // Nothing was touched: the token, the audit; the first host still answers.
    assert_eq!(token(&data), before);
    let status = colony(&data, &["status"]);
    assert!(status.status.success(), "{}", stderr(&status));
    let audit_after = stdout(&colony(&data, &["audit", "--json", "--limit", "1000"]));
    assert_eq!(audit_before, audit_after);
}

// Item 10.
#[test]
fn a_revoke_racing_a_starting_host_is_in_force_once_confirmed() {
    let dir = tempfile::tempdir().unwrap();
    let plugins = dir.path().join("plugins");
    std::fs::create_dir_all(&plugins).unwrap();
    // A few plugins make the start (audit read → socket up) long enough to race.
    install(&plugins, guests::GOOD_AGENT, "good.wasm");
    install(&plugins, guests::BUS_AGENT, "bus.wasm");
    install(&plugins, guests::CAPS_AGENT, "caps.wasm");
    let rounds = 10;
    for round in 0..rounds {
        let data = dir.path().join(format!("data{round}"));
        let out = colony(&data, &["grants", "grant", "probe", "env:HOME"]);
        assert!(out.status.success(), "{}", stderr(&out));
        let host = Running(
            Command::new(COLONY)
                .arg("--data-dir")
                .arg(&data)
                .args(["run", "--tick-ms", "0", "--plugins"])
                .arg(&plugins)
                .env("COLONY_LOG", "warn")
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .unwrap(),
        );
        // Spread the revokes over the host's start.
        std::thread::sleep(Duration::from_millis(60 * round));
        let revoke = colony_bounded(
            &data,
            &["grants", "revoke", "probe", "env:HOME"],
            Duration::from_secs(90),
        );
        assert!(revoke.status.success(), "{}", stderr(&revoke));
        assert!(stdout(&revoke).contains("revoked env:HOME from probe"));
        // Confirmed: the running host must not hold the grant.
        let deadline = Instant::now() + Duration::from_secs(60);
        let listing = loop {
            let out = colony(&data, &["grants", "list", "--json", "--plugin", "probe"]);
            if out.status.success() && colony(&data, &["status"]).status.success() {
                break stdout(&out);
            }
            assert!(Instant::now() < deadline, "host did not come up");
            std::thread::sleep(Duration::from_millis(50));
        };
        let rows: serde_json::Value = serde_json::from_str(&listing).unwrap();
        let caps = rows[0]["capabilities"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        assert!(
            !caps.iter().any(|c| c == "env:HOME"),
            "round {round}: revoke confirmed but the host still grants it: {listing}"
        );
        drop(host);
    }
}

// Item 11.
#[test]
fn fifos_and_devices_named_wasm_are_refused_without_hanging_or_reading_without_bound() {
    let dir = tempfile::tempdir().unwrap();
    let (data, plugins) = (dir.path().join("data"), dir.path().join("plugins"));
    std::fs::create_dir_all(&plugins).unwrap();
    let zero = plugins.join("zero.wasm");
    std::os::unix::fs::symlink("/dev/zero", &zero).unwrap();
    let fifo = plugins.join("x.wasm");
    mkfifo(&fifo);
    // A real plugin whose sidecar is a FIFO.
    install(&plugins, guests::GOOD_AGENT, "good.wasm");
    mkfifo(&plugins.join("good.toml"));
    let limit = Duration::from_secs(30);

    for (file, kind) in [(&zero, "character device"), (&fifo, "fifo")] {
        let out = colony_bounded(
            &data,
            &["plugins", "inspect", file.to_str().unwrap()],
            limit,
        );
        assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
        assert!(
            stderr(&out).contains(&format!("not a regular file (a {kind})")),
            "{}",
            stderr(&out)
        );
        let out = colony_bounded(&data, &["tools", "register", file.to_str().unwrap()], limit);
        assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
        assert!(
            stderr(&out).contains("not a regular file"),
            "{}",
            stderr(&out)
        );
    }
    let out = colony_bounded(
        &data,
        &["plugins", "list", "--plugins", plugins.to_str().unwrap()],
        limit,
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let listed = stdout(&out);
    for what in ["zero.wasm", "x.wasm", "good.wasm"] {
        assert!(
            listed
                .lines()
                .any(|l| l.contains(what) && l.contains("not a regular file")),
            "{what}: {listed}"
        );
    }

    // The running host's folder scan: it comes up, with the FIFO sidecar refused.
    let host = start_host(&data, &plugins, 0);
    let out = colony_bounded(&data, &["status", "--json"], limit);
    assert!(out.status.success(), "{}", stderr(&out));
    let status = stdout(&out);
    assert!(status.contains("not a regular file (a fifo)"), "{status}");
    assert!(
        rss_kib(host.0.id()) < 1024 * 1024,
        "host read without bound"
    );
}

// Item 12.
#[test]
fn the_data_directory_and_its_databases_are_private_to_their_owner() {
    let dir = tempfile::tempdir().unwrap();
    // Only the data directory's own mode may keep others out.
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let plugins = dir.path().join("plugins");
    std::fs::create_dir_all(&plugins).unwrap();
    install(&plugins, guests::GOOD_AGENT, "good.wasm");

    // A fresh directory, and one an older version left world-readable.
    let fresh = dir.path().join("fresh");
    let old = dir.path().join("old");
    std::fs::create_dir_all(&old).unwrap();
    for f in ["audit.db", "state.db"] {
        std::fs::write(old.join(f), b"").unwrap();
        std::fs::set_permissions(old.join(f), std::fs::Permissions::from_mode(0o644)).unwrap();
    }
    std::fs::set_permissions(&old, std::fs::Permissions::from_mode(0o755)).unwrap();

    for data in [&fresh, &old] {
        let host = start_host(data, &plugins, 0);
        assert_eq!(mode(data), 0o700, "{}", data.display());
        let mut seen = 0;
        for f in ["audit.db", "state.db", "orders.db"] {
            for suffix in ["", "-wal", "-shm"] {
                let p = data.join(format!("{f}{suffix}"));
                if p.exists() {
                    assert_eq!(mode(&p), 0o600, "{}", p.display());
                    seen += 1;
                }
            }
        }
        assert!(seen >= 4, "{seen} database files in {}", data.display());
        match other_user() {
            Some(user) => {
                for f in ["audit.db", "state.db", "admin.token"] {
                    let p = data.join(f);
                    let out = run_as(user, &["cat", p.to_str().unwrap()]);
                    assert!(!out.status.success(), "{user} read {}", p.display());
                }
                let out = run_as(user, &["ls", data.to_str().unwrap()]);
                assert!(!out.status.success(), "{user} listed {}", data.display());
            }
            None => eprintln!("no second user could be created: checked the modes only"),
        }
        drop(host);
    }
}

// Item 13.
#[test]
fn the_audit_actor_is_the_socket_peer_and_audit_rows_print_as_one_line() {
    let dir = tempfile::tempdir().unwrap();
    let (data, plugins) = (dir.path().join("data"), dir.path().join("plugins"));
    std::fs::create_dir_all(&plugins).unwrap();
    let _host = start_host(&data, &plugins, 0);
    let out = Command::new(COLONY)
        .arg("--data-dir")
        .arg(&data)
        .args(["grants", "grant", "probe", "env:HOME"])
        .env("USER", "mallory\n    999  FORGED")
        .env("COLONY_LOG", "warn")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    // An old client's `actor` field is ignored too.
    let reply = admin_line(
        &data,
        &serde_json::json!({"token": token(&data), "op": "grant", "name": "probe",
            "args": "env:PATH", "actor": "mallory"})
        .to_string(),
    );
    assert!(reply.contains("\"ok\":true"), "{reply}");
    let audit = stdout(&colony(&data, &["audit", "--json", "--plugin", "probe"]));
    let rows: Vec<serde_json::Value> = serde_json::from_str(&audit).unwrap();
    let actors: Vec<&str> = rows.iter().filter_map(|r| r["actor"].as_str()).collect();
    let me = Command::new("id").arg("-un").output().unwrap();
    let me = format!("admin:{}", String::from_utf8_lossy(&me.stdout).trim());
    assert_eq!(actors, [me.as_str(), me.as_str()], "{audit}");
    assert!(!audit.contains("mallory"), "{audit}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn audit_rows_with_control_characters_print_escaped() {
    use colony_host::audit::{AuditRecord, AuditStore};
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let store = AuditStore::open_sqlite(&AuditStore::default_path(&data))
        .await
        .unwrap();
    store
        .writer()
        .append(AuditRecord::grant(
            "admin:x\n      2  2099-01-01 00:00:00.000 grant FORGED",
            "probe",
            "",
            "env:HOME\u{202e}",
        ))
        .await
        .unwrap();
    store.close().await.unwrap();
    let out = colony(&data, &["audit"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    assert_eq!(text.lines().count(), 2, "{text}");
    assert!(
        !text.lines().any(|l| l.trim_start().starts_with('2')),
        "{text}"
    );
    assert!(text.contains("\\n") && text.contains("\\u{202e}"), "{text}");
}

// Item 14.
#[test]
fn names_and_capabilities_that_read_alike_or_as_paths_are_refused_everywhere() {
    let dir = tempfile::tempdir().unwrap();
    let (data, plugins) = (dir.path().join("data"), dir.path().join("plugins"));
    std::fs::create_dir_all(&plugins).unwrap();
    let bad_names = ["../x", "", "a\nb", "A", ".x", "x/y", "caf\u{e9}"];
    let bad_caps = [
        "env:HOME\u{202e}",
        "env:\u{200b}HOME",
        "\u{feff}env:HOME",
        "fs.read:/srv/da\u{7}ta",
        "fs.read:/srv/my data",
    ];
    let check = |data: &Path, how: &str| {
        for name in bad_names {
            for op in [
                vec!["grants", "grant", name, "env:HOME"],
                vec!["grants", "revoke", name, "env:HOME"],
                vec!["grants", "approve", name],
            ] {
                let out = colony(data, &op);
                assert_eq!(out.status.code(), Some(3), "{how} {op:?}: {}", stderr(&out));
                assert!(
                    stderr(&out).contains("must be 1-64 chars"),
                    "{}",
                    stderr(&out)
                );
            }
        }
        for cap in bad_caps {
            let out = colony(data, &["grants", "grant", "probe", cap]);
            assert_eq!(
                out.status.code(),
                Some(3),
                "{how} {cap:?}: {}",
                stderr(&out)
            );
            assert!(stderr(&out).contains("is not allowed"), "{}", stderr(&out));
        }
    };
    check(&data, "offline");
    let _host = start_host(&data, &plugins, 0);
    check(&data, "through the host");
    // The admin protocol checks on its own (a client that skips the CLI's checks).
    let t = token(&data);
    for name in bad_names {
        let reply = admin_line(
            &data,
            &serde_json::json!({"token": t, "op": "grant", "name": name, "args": "env:HOME"})
                .to_string(),
        );
        assert!(reply.contains("must be 1-64 chars"), "{name:?}: {reply}");
    }
    for cap in bad_caps {
        let reply = admin_line(
            &data,
            &serde_json::json!({"token": t, "op": "grant", "name": "probe", "args": cap})
                .to_string(),
        );
        assert!(reply.contains("is not allowed"), "{cap:?}: {reply}");
    }
    let listing = stdout(&colony(&data, &["grants", "list", "--json"]));
    assert_eq!(listing.trim(), "[]", "{listing}");
}

// Item 15.
#[test]
fn the_admin_socket_bounds_idle_connections_and_caps_each_request_not_the_connection() {
    let dir = tempfile::tempdir().unwrap();
    let (data, plugins) = (dir.path().join("data"), dir.path().join("plugins"));
    std::fs::create_dir_all(&plugins).unwrap();
    let host = start_host(&data, &plugins, 0);
    let pid = host.0.id();
    let rss_before = rss_kib(pid);

    // 200 idle, unauthenticated connections: beyond the cap they are closed at once, and
    // the rest within the authentication timeout.
    let mut idle: Vec<UnixStream> = (0..200)
        .filter_map(|_| UnixStream::connect(data.join("admin.sock")).ok())
        .collect();
    std::thread::sleep(Duration::from_millis(500));
    let rss_idle = rss_kib(pid);
    assert!(
        rss_idle < rss_before + 64 * 1024,
        "idle connections cost {} KiB",
        rss_idle.saturating_sub(rss_before)
    );
    let started = Instant::now();
    for s in &mut idle {
        s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
        let mut b = [0u8; 1];
        assert_eq!(
            s.read(&mut b).unwrap_or(0),
            0,
            "an idle connection stayed open"
        );
    }
    assert!(started.elapsed() < Duration::from_secs(15));
    drop(idle);
    let out = colony(&data, &["status"]);
    assert!(out.status.success(), "{}", stderr(&out));

    // Three requests of 1.5 MiB each on one connection: each is answered (the 2 MiB cap
    // counts one request, not the connection).
    let mut s = UnixStream::connect(data.join("admin.sock")).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    let pad = "x".repeat(1536 * 1024);
    let req = serde_json::json!({"token": token(&data), "op": "tools", "args": pad}).to_string();
    let mut reader = std::io::BufReader::new(s.try_clone().unwrap());
    for i in 0..3 {
        s.write_all(req.as_bytes()).unwrap();
        s.write_all(b"\n").unwrap();
        let mut line = String::new();
        std::io::BufRead::read_line(&mut reader, &mut line).unwrap();
        assert!(line.contains("\"ok\":true"), "request {i}: {line:?}");
    }
    // One request over the cap ends that connection, not the host.
    let big = "x".repeat(2 * 1024 * 1024 + 10);
    let _ = s.write_all(big.as_bytes());
    let mut line = String::new();
    let n = std::io::BufRead::read_line(&mut reader, &mut line).unwrap_or(0);
    assert_eq!(n, 0, "{line:?}");
    assert!(colony(&data, &["status"]).status.success());
}

#[test]
fn the_admin_accept_loop_does_not_spin_at_the_descriptor_limit() {
    let dir = tempfile::tempdir().unwrap();
    let (data, plugins) = (dir.path().join("data"), dir.path().join("plugins"));
    std::fs::create_dir_all(&plugins).unwrap();
    // No feed: the replay of the embedded data (seconds of CPU on a loaded machine in a
    // debug build) would be counted as the accept loop's.
    let host = start_host_with(&data, &plugins, 0, &["--feed", "none"]);
    let pid = host.0.id().to_string();
    // Lower the running host's descriptor limit to just above what it uses now, then hold
    // connections until accept fails with EMFILE.
    let open = std::fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap()
        .count();
    let limit = (open + 8).to_string();
    let ok = Command::new("prlimit")
        .args(["--pid", &pid, &format!("--nofile={limit}:{limit}")])
        .status()
        .is_ok_and(|s| s.success());
    assert!(ok, "prlimit");
    let held: Vec<UnixStream> = (0..40)
        .filter_map(|_| UnixStream::connect(data.join("admin.sock")).ok())
        .collect();
    assert!(!held.is_empty());
    std::thread::sleep(Duration::from_millis(300));
    let before = cpu_ticks(host.0.id());
    std::thread::sleep(Duration::from_secs(2));
    let used = cpu_ticks(host.0.id()) - before;
    // 2 s at 100 % is 200 ticks; backing off uses next to nothing.
    assert!(
        used < 40,
        "the host used {used} ticks in 2 s at the descriptor limit"
    );
    drop(held);
}

// Item 16.
#[test]
fn bad_values_are_usage_or_input_errors_never_panics() {
    let dir = tempfile::tempdir().unwrap();
    let (data, plugins) = (dir.path().join("data"), dir.path().join("plugins"));
    std::fs::create_dir_all(&plugins).unwrap();
    let p = plugins.to_str().unwrap();
    let limit = Duration::from_secs(60);
    for d in ["NaN", "inf", "-inf", "1e309", "-1", "abc"] {
        let arg = format!("--duration={d}");
        let out = colony_bounded(&data, &["run", "--plugins", p, &arg], limit);
        assert_eq!(out.status.code(), Some(2), "{d}: {}", stderr(&out));
        assert!(!stderr(&out).contains("panicked"), "{}", stderr(&out));
        assert!(stderr(&out).contains("--duration"), "{}", stderr(&out));
    }
    for (args, what) in [
        (
            vec!["--feed", "synthetic:1:18446744073709551615"],
            "symbol count",
        ),
        (vec!["--feed", "synthetic:1:4000000000"], "symbol count"),
        (vec!["--bus", "nats://127.0.0.1:99999"], "is not 1-65535"),
        (vec!["--bus", "nats://127.0.0.1:x"], "is not 1-65535"),
    ] {
        let mut all = vec!["run", "--plugins", p, "--duration", "1"];
        all.extend(args.iter().copied());
        let out = colony_bounded(&data, &all, limit);
        assert_eq!(out.status.code(), Some(3), "{args:?}: {}", stderr(&out));
        assert!(stderr(&out).contains(what), "{}", stderr(&out));
        assert!(!stderr(&out).contains("panicked"), "{}", stderr(&out));
    }
    let out = colony_bounded(
        &data,
        &[
            "--audit-db",
            "mysql://x/y",
            "run",
            "--plugins",
            p,
            "--duration",
            "1",
        ],
        limit,
    );
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
    assert!(stderr(&out).contains("mysql"), "{}", stderr(&out));
    let out = colony_bounded(&data, &["--audit-db", "mysql://x/y", "audit"], limit);
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));

    // A closed pipe: the reader is gone before colony writes.
    let err = dir.path().join("err");
    let cmd = format!(
        "'{COLONY}' --data-dir '{}' audit 2>'{}' | true",
        data.display(),
        err.display()
    );
    let status = Command::new("sh").args(["-c", &cmd]).status().unwrap();
    assert!(status.success());
    let said = std::fs::read_to_string(&err).unwrap();
    assert!(
        !said.contains("panicked") && !said.contains("Broken pipe"),
        "{said}"
    );
}
