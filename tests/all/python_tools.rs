//! Python tools: `colony tools build TOOL.py` with the real `colony` binary and componentize-py
//! 0.25.1 (installed by `requirements-dev.txt`; these tests fail, never skip, without it). The
//! shipped example (`plugins/py-tools/position_size.py`) builds with its manifest, registers
//! with and without a host, answers, and has bad arguments refused by its schema before the
//! sandbox; build errors name the file and say what is wrong; and a Python tool using
//! `wasi:http` (`tests/python/http_fetch.py`) reaches a local server only under an explicit
//! grant of its address, and neither an ungranted host, nor loopback through a name grant,
//! nor a private or metadata address it is redirected to. An exception escaping a Python
//! tool's `invoke` (`tests/python/raise_error.py`) reaches the caller with its traceback.
//!
//! Figures (build time, size, registration, per call) are printed on stderr; see them with
//! `cargo test -p colony-tests --test all python_tools:: -- --nocapture`.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use colony_host::audit::{AuditFilter, AuditKind, AuditRecord, AuditStore, Decision};
use colony_host::tools::ToolCallError;
use colony_tests::test_config;

use crate::support::{COLONY, colony, start_host, stderr, stdout};

/// What the tests need, and how to install it.
const INSTALL: &str = "python3 -m pip install -r requirements-dev.txt \
                       (or: python3 -m pip install componentize-py==0.25.1)";

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap_or_else(|| panic!("tests/ has a parent"))
        .to_path_buf()
}

fn example_source() -> PathBuf {
    repo().join("plugins/py-tools/position_size.py")
}

/// Fails (never skips) when componentize-py 0.25.1 is not installed where `colony tools
/// build` looks: `componentize-py` on `PATH`, else the package through `python3 -c`.
fn require_componentize_py() {
    static CHECKED: OnceLock<()> = OnceLock::new();
    CHECKED.get_or_init(|| {
        let entry = "import sys; from componentize_py import script; sys.exit(script())";
        let mut seen = Vec::new();
        for (program, prefix) in [("componentize-py", vec![]), ("python3", vec!["-c", entry])] {
            match Command::new(program)
                .args(&prefix)
                .arg("--version")
                .output()
            {
                Ok(o) if o.status.success() && stdout(&o).contains("0.25.1") => return,
                Ok(o) => seen.push(format!(
                    "{program}: {} {}",
                    stdout(&o).trim(),
                    stderr(&o).trim()
                )),
                Err(e) => seen.push(format!("{program}: {e}")),
            }
        }
        panic!(
            "componentize-py 0.25.1 is needed by the Python tool tests and was not found \
             ({}); install it: {INSTALL}",
            seen.join("; ")
        );
    });
}

/// `colony tools build SOURCE -o OUT` on a throwaway data directory; panics with stderr on
/// failure. Returns the component and the build's wall time.
fn build(source: &Path, out: &Path) -> (PathBuf, Duration) {
    require_componentize_py();
    let data = out.with_extension("data");
    let started = Instant::now();
    let o = colony(
        &data,
        &[
            "tools",
            "build",
            &source.display().to_string(),
            "-o",
            &out.display().to_string(),
        ],
    );
    let took = started.elapsed();
    assert!(
        o.status.success(),
        "build {}: {}",
        source.display(),
        stderr(&o)
    );
    assert!(
        stdout(&o).starts_with(&format!("wrote {}: ", out.display())),
        "{}",
        stdout(&o)
    );
    (out.to_path_buf(), took)
}

/// A directory kept for the whole test run (built components are shared between tests).
fn shared_dir() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        tempfile::Builder::new()
            .prefix("colony-python-tools-")
            .tempdir()
            .unwrap_or_else(|e| panic!("tempdir: {e}"))
            .keep()
    })
}

/// The example, built once per test run.
fn example() -> &'static Path {
    static BUILT: OnceLock<PathBuf> = OnceLock::new();
    BUILT.get_or_init(|| {
        let (path, took) = build(&example_source(), &shared_dir().join("position_size.wasm"));
        let size = std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
        eprintln!(
            "figure: `colony tools build position_size.py`: {:.1} s, component {:.1} MiB",
            took.as_secs_f64(),
            size as f64 / (1024.0 * 1024.0)
        );
        path
    })
}

/// `tests/python/http_fetch.py` built as the tool `name` (the source with `http-fetch`
/// replaced), once per name per test run.
fn http_fetch(name: &str) -> PathBuf {
    static BUILT: OnceLock<Mutex<Vec<(String, PathBuf)>>> = OnceLock::new();
    let built = BUILT.get_or_init(|| Mutex::new(Vec::new()));
    let mut built = built.lock().unwrap_or_else(|e| e.into_inner());
    if let Some((_, p)) = built.iter().find(|(n, _)| n == name) {
        return p.clone();
    }
    let source = std::fs::read_to_string(repo().join("tests/python/http_fetch.py"))
        .unwrap_or_else(|e| panic!("tests/python/http_fetch.py: {e}"));
    let module = name.replace('-', "_");
    let dir = shared_dir().join(&module);
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join(format!("{module}.py"));
    std::fs::write(&file, source.replace("http-fetch", name)).unwrap();
    let (path, _) = build(&file, &dir.join(format!("{module}.wasm")));
    built.push((name.to_string(), path.clone()));
    path
}

fn digest_of(path: &Path) -> String {
    let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    blake3::hash(&bytes).to_hex().to_string()
}

fn json(text: &str) -> serde_json::Value {
    serde_json::from_str(text).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"))
}

#[test]
fn the_example_builds_into_a_tool_component_carrying_its_manifest() {
    let wasm = example();
    let data = shared_dir().join("inspect-data");
    let out = colony(
        &data,
        &["plugins", "inspect", &wasm.display().to_string(), "--json"],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let info = json(&stdout(&out));
    assert_eq!(info["name"], "position-size");
    assert_eq!(info["version"], "1.0.0");
    assert_eq!(info["kind"], "tool");
    assert_eq!(info["manifest_source"], "embedded");
    assert_eq!(info["world"], "colony:plugin/tool@0.1.0");
    assert!(
        info["description"]
            .as_str()
            .unwrap_or("")
            .starts_with("Fixed-fractional position sizing"),
        "{info}"
    );
    // The header's `cpu_ms = 1000` is in force; the rest are the tool defaults.
    assert_eq!(info["limits"]["cpu_ms"], 1000);
    assert_eq!(info["limits"]["fuel"], 200_000_000);
    // A tool that asks for no http.outbound grant is built without wasi:http.
    let imports: Vec<&str> = info["imports"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|v| v.as_str())
        .collect();
    assert!(imports.contains(&"colony:plugin/log@0.1.0"), "{imports:?}");
    assert!(
        !imports.iter().any(|i| i.starts_with("wasi:http")),
        "{imports:?}"
    );
    let size = info["size_bytes"].as_u64().unwrap();
    assert!(size < 64 * 1024 * 1024, "{size} bytes");
}

#[test]
fn the_example_registers_without_a_host_and_answers_through_the_cli() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let wasm = example().display().to_string();

    let started = Instant::now();
    let out = colony(&data, &["tools", "register", &wasm]);
    let took = started.elapsed();
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(
        stdout(&out).trim(),
        format!("position-size@1.0.0 {}", digest_of(example()))
    );
    eprintln!(
        "figure: `colony tools register` (no host, debug build: compile, describe, smoke): {:.1} s",
        took.as_secs_f64()
    );

    let out = colony(&data, &["tools", "list"]);
    assert!(
        stdout(&out).lines().any(|l| l.starts_with("position-size")
            && l.contains(" registered ")
            && l.contains(" 1.0.0*")),
        "{}",
        stdout(&out)
    );

    let args =
        r#"{"equity": 10000, "risk_pct": 1, "entry": 42000, "stop": 41000, "lot_size": 0.001}"#;
    let out = colony(&data, &["tools", "invoke", "position-size", args]);
    assert!(out.status.success(), "{}", stderr(&out));
    let answer = json(&stdout(&out));
    assert_eq!(answer["side"], "buy");
    assert_eq!(answer["qty"], 0.1);
    assert_eq!(answer["notional"], 4200.0);
    assert_eq!(answer["risk_amount"], 100.0);
    assert_eq!(answer["capped_by_leverage"], false);

    // A short with a leverage cap.
    let args = r#"{"equity": 2500, "risk_pct": 2, "entry": 100, "stop": 104, "max_leverage": 0.1}"#;
    let out = colony(&data, &["tools", "invoke", "position-size", args]);
    assert!(out.status.success(), "{}", stderr(&out));
    let answer = json(&stdout(&out));
    assert_eq!(answer["side"], "sell");
    assert_eq!(answer["qty"], 2.5);
    assert_eq!(answer["capped_by_leverage"], true);

    // The schema refuses what the Python code would have computed happily.
    let out = colony(
        &data,
        &[
            "tools",
            "invoke",
            "position-size",
            r#"{"equity": 10000, "risk_pct": 150, "entry": 42000, "stop": 41000}"#,
        ],
    );
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("invalid arguments at /risk_pct"),
        "{}",
        stderr(&out)
    );

    // The tool's own error comes back as a tool error.
    let out = colony(
        &data,
        &[
            "tools",
            "invoke",
            "position-size",
            r#"{"equity": 10000, "risk_pct": 1, "entry": 42000, "stop": 42000}"#,
        ],
    );
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("entry and stop are equal"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn build_with_register_goes_through_a_running_host() {
    require_componentize_py();
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let plugins = dir.path().join("plugins");
    std::fs::create_dir_all(&plugins).unwrap();
    let _host = start_host(&data, &plugins, 0);

    // The source is copied so the default output (the source with `.wasm`) lands here.
    let src = dir.path().join("position_size.py");
    std::fs::copy(example_source(), &src).unwrap();
    let started = Instant::now();
    let out = colony(
        &data,
        &[
            "tools",
            "build",
            &src.display().to_string(),
            "--register",
            "--version",
            "1.0.1",
        ],
    );
    let took = started.elapsed();
    assert!(out.status.success(), "{}", stderr(&out));
    let wasm = dir.path().join("position_size.wasm");
    assert!(
        !dir.path().join("__pycache__").exists(),
        "the build left __pycache__ beside the source"
    );
    let text = stdout(&out);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 2, "{text}");
    assert!(
        lines[0].starts_with(&format!("wrote {}: position-size@1.0.1, ", wasm.display())),
        "{text}"
    );
    assert_eq!(
        lines[1],
        format!("position-size@1.0.1 {}", digest_of(&wasm))
    );
    eprintln!(
        "figure: `colony tools build --register` through a running host (debug build): {:.1} s",
        took.as_secs_f64()
    );

    let out = colony(
        &data,
        &[
            "tools",
            "invoke",
            "position-size",
            r#"{"equity": 10000, "risk_pct": 1, "entry": 42000, "stop": 41000}"#,
        ],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(json(&stdout(&out))["notional"], 4200.0);

    let out = colony(&data, &["audit", "--json"]);
    assert!(
        stdout(&out).contains("position-size@1.0.1"),
        "{}",
        stdout(&out)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn arguments_are_refused_by_the_schema_before_the_sandbox() {
    let wasm = example();
    let dir = tempfile::tempdir().unwrap();
    let host = colony_host::supervisor::Host::start(test_config(dir.path()))
        .await
        .unwrap_or_else(|e| panic!("host start: {e:#}"));
    let bytes = std::fs::read(wasm).unwrap();
    let started = Instant::now();
    let tool = host
        .register_tool(&bytes, "admin:test")
        .await
        .unwrap_or_else(|e| panic!("register: {e}"));
    eprintln!(
        "figure: registration in-process (debug build: compile, describe, smoke): {:.1} s",
        started.elapsed().as_secs_f64()
    );
    assert_eq!(tool.id(), "position-size@1.0.0");

    let good = r#"{"equity": 10000, "risk_pct": 1, "entry": 42000, "stop": 41000}"#;
    let mut calls = Vec::new();
    for _ in 0..5 {
        let t = Instant::now();
        let out = host.call_tool("position-size", good).await.unwrap();
        calls.push(t.elapsed());
        assert_eq!(json(&out)["qty"], 0.1);
    }
    calls.sort();

    let mut refusals = Vec::new();
    for (args, path) in [
        (
            r#"{"equity": 10000, "risk_pct": 150, "entry": 42000, "stop": 41000}"#,
            "/risk_pct",
        ),
        (
            r#"{"equity": "x", "risk_pct": 1, "entry": 2, "stop": 1}"#,
            "/equity",
        ),
        (r#"{"equity": 1, "risk_pct": 1, "entry": 2}"#, "/"),
        (
            r#"{"equity": 1, "risk_pct": 1, "entry": 2, "stop": 1, "leverage": 3}"#,
            "/",
        ),
        ("[1, 2]", "/"),
    ] {
        let t = Instant::now();
        match host.call_tool("position-size", args).await {
            Err(ToolCallError::InvalidArguments { error, .. }) => {
                assert_eq!(error.path, path, "{args}: {error}")
            }
            other => panic!("{args}: expected invalid arguments, got {other:?}"),
        }
        refusals.push(t.elapsed());
    }
    refusals.sort();
    eprintln!(
        "figure: per call in-process (debug build): fastest {:?}, median {:?}; schema refusal median {:?}",
        calls[0], calls[2], refusals[2]
    );
    // A refusal creates no instance: it is much faster than the fastest call that ran.
    assert!(
        refusals[2] < calls[0],
        "refusals {refusals:?} not faster than calls {calls:?}"
    );
    host.shutdown().await;
}

/// A Python exception escaping `invoke` traps the instance; the caller's error ends with the
/// last lines of its traceback (the exception's type and message), not only "trapped". The
/// tool is a plugins-folder tool called without a host, so its arguments are also checked
/// against its schema before it runs.
#[test]
fn a_python_exception_reaches_the_caller_with_its_traceback() {
    let dir = tempfile::tempdir().unwrap();
    let (data, plugins) = (dir.path().join("data"), dir.path().join("plugins"));
    std::fs::create_dir_all(&plugins).unwrap();
    let source = dir.path().join("raise_error.py");
    std::fs::copy(repo().join("tests/python/raise_error.py"), &source).unwrap();
    let (wasm, _) = build(&source, &dir.path().join("raise_error.wasm"));
    std::fs::copy(&wasm, plugins.join("raise-error.wasm")).unwrap();
    let invoke = |args: &str| {
        colony(
            &data,
            &[
                "tools",
                "invoke",
                "raise-error",
                args,
                "--plugins",
                plugins.to_str().unwrap(),
            ],
        )
    };

    let out = invoke(r#"{"fail": true}"#);
    assert!(!out.status.success());
    let err = stderr(&out);
    let line = err
        .lines()
        .find(|l| l.contains("trapped: "))
        .unwrap_or_else(|| panic!("no trap in {err}"));
    let (_, traceback) = line
        .split_once("; stderr: ")
        .unwrap_or_else(|| panic!("no stderr in {line}"));
    assert!(
        traceback.starts_with("Traceback (most recent call last):\\n"),
        "{line}"
    );
    // The traceback's last frame and the exception, then componentize-py's own panic.
    assert!(
        traceback.contains("in check\\nValueError: bad input on purpose\\n"),
        "{line}"
    );

    let out = invoke(r#"{"fail": "yes"}"#);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("invalid arguments at /fail: "),
        "{}",
        stderr(&out)
    );
    let out = invoke(r#"{"fail": false}"#);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(json(stdout(&out).trim()), serde_json::json!({"ok": true}));
}

#[test]
fn a_python_syntax_error_is_a_build_error_naming_the_file_and_line() {
    require_componentize_py();
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("broken_tool.py");
    std::fs::write(&src, "import json\n\ndef describe(:\n    pass\n").unwrap();
    let out = colony(
        &dir.path().join("data"),
        &["tools", "build", &src.display().to_string()],
    );
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(err.contains("broken_tool.py"), "{err}");
    assert!(err.contains("SyntaxError"), "{err}");
    assert!(err.contains("line 3"), "{err}");
    assert!(!err.contains("Stack backtrace"), "{err}");
    assert!(!dir.path().join("broken_tool.wasm").exists());

    // A module without the exported class.
    let src = dir.path().join("no_handler.py");
    std::fs::write(&src, "class Handler:\n    pass\n").unwrap();
    let out = colony(
        &dir.path().join("data"),
        &["tools", "build", &src.display().to_string()],
    );
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("has no attribute 'ToolHandler'"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn a_missing_file_a_bad_header_or_a_missing_componentize_py_is_said_plainly() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");

    let missing = dir.path().join("nowhere.py");
    let out = colony(&data, &["tools", "build", &missing.display().to_string()]);
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("nowhere.py: no such file"),
        "{}",
        stderr(&out)
    );

    let bad = dir.path().join("bad_header.py");
    std::fs::write(&bad, "# colony: version = 1.0\n# colony: colour = red\n").unwrap();
    let out = colony(&data, &["tools", "build", &bad.display().to_string()]);
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("bad_header.py: line 2: unknown key `colour`"),
        "{}",
        stderr(&out)
    );
    std::fs::write(&bad, "# colony: version = 1.0\n").unwrap();
    let out = colony(&data, &["tools", "build", &bad.display().to_string()]);
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
    assert!(stderr(&out).contains("`version`"), "{}", stderr(&out));

    let dashed = dir.path().join("not-an-identifier.py");
    std::fs::write(&dashed, "").unwrap();
    let out = colony(&data, &["tools", "build", &dashed.display().to_string()]);
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("Python identifier"),
        "{}",
        stderr(&out)
    );

    let good = dir.path().join("fine.py");
    std::fs::write(&good, "").unwrap();
    let shown = good.display().to_string();
    let out = colony(&data, &["tools", "build", &shown, "-o", &shown]);
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("would overwrite the source"),
        "{}",
        stderr(&out)
    );
    let out = Command::new(COLONY)
        .arg("--data-dir")
        .arg(&data)
        .args(["tools", "build", &good.display().to_string()])
        .env("COLONY_COMPONENTIZE_PY", dir.path().join("no-such-program"))
        .env("COLONY_LOG", "warn")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("componentize-py is not installed")
            && stderr(&out).contains("pip install componentize-py==0.25.1"),
        "{}",
        stderr(&out)
    );
}

// ---- HTTP from Python --------------------------------------------------------------------

/// A local HTTP/1.1 server on 127.0.0.1 for one test: `/hello` answers 200, `/to-metadata`
/// and `/to-private` answer 302 to `http://169.254.169.254/latest/meta-data/` and
/// `http://10.0.0.1/`. It records each request's path, answers at most 64 connections and
/// stops when dropped (or after 5 minutes).
struct LocalServer {
    port: u16,
    paths: Arc<Mutex<Vec<String>>>,
    stop: Arc<AtomicBool>,
}

impl LocalServer {
    fn start() -> LocalServer {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let port = listener.local_addr().unwrap().port();
        let paths = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let (p, s) = (paths.clone(), stop.clone());
        std::thread::spawn(move || {
            // Until the test drops it; registering a Python tool on a loaded machine (its
            // validation runs niced) can take minutes, so the bound is generous.
            let until = Instant::now() + Duration::from_secs(1800);
            let mut served = 0;
            while !s.load(Ordering::Relaxed) && Instant::now() < until && served < 64 {
                match listener.accept() {
                    Ok((conn, _)) => {
                        served += 1;
                        serve(conn, &p);
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(5)),
                }
            }
        });
        LocalServer { port, paths, stop }
    }

    fn paths(&self) -> Vec<String> {
        self.paths.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

impl Drop for LocalServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

fn serve(mut conn: TcpStream, paths: &Mutex<Vec<String>>) {
    let _ = conn.set_nonblocking(false);
    let _ = conn.set_read_timeout(Some(Duration::from_secs(5)));
    let mut head = Vec::new();
    let mut buf = [0u8; 1024];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") && head.len() < 16 * 1024 {
        match conn.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => head.extend_from_slice(&buf[..n]),
        }
    }
    let text = String::from_utf8_lossy(&head);
    let path = text.split_whitespace().nth(1).unwrap_or("").to_string();
    paths
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .push(path.clone());
    let (status, location, body) = match path.as_str() {
        "/hello" => ("200 OK", None, "hello from the test server"),
        "/to-metadata" => (
            "302 Found",
            Some("http://169.254.169.254/latest/meta-data/"),
            "",
        ),
        "/to-private" => ("302 Found", Some("http://10.0.0.1/"), ""),
        _ => ("404 Not Found", None, "not found"),
    };
    let mut response = format!(
        "HTTP/1.1 {status}\r\nContent-Type: text/plain\r\nContent-Length: {}\r\nConnection: close\r\n",
        body.len()
    );
    if let Some(l) = location {
        response.push_str(&format!("Location: {l}\r\n"));
    }
    response.push_str("\r\n");
    response.push_str(body);
    let _ = conn.write_all(response.as_bytes());
}

/// Grants `capability` to the build `digest` of `name` (approving it) in the audit store of
/// `data` before a host starts there, as `colony grants grant` records it.
async fn grant_before_start(data: &Path, name: &str, digest: &str, capability: &str) {
    std::fs::create_dir_all(data).unwrap();
    let store = AuditStore::open_sqlite(&AuditStore::default_path(data))
        .await
        .unwrap_or_else(|e| panic!("audit store: {e}"));
    store
        .writer()
        .append(AuditRecord::grant("cli:test", name, digest, capability))
        .await
        .unwrap_or_else(|e| panic!("grant: {e}"));
}

/// Waits (up to 20 s) until the audit holds a `deny` decision of `tool` whose detail contains
/// every one of `parts` (each request's record is written when its exchange ends).
async fn audited_deny(host: &colony_host::supervisor::Host, tool: &str, parts: &[&str]) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let records = host
            .audit()
            .query(&AuditFilter {
                plugin: Some(tool.to_string()),
                kind: Some(AuditKind::Decision),
                decision: Some(Decision::Deny),
                ..AuditFilter::default()
            })
            .await
            .unwrap_or_else(|e| panic!("audit query: {e}"));
        if records
            .iter()
            .any(|r| parts.iter().all(|p| r.detail.contains(p)))
        {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "no deny record of {tool} with {parts:?}: {:?}",
            records.iter().map(|r| &r.detail).collect::<Vec<_>>()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Whether a hop was refused by the host's policy (not a connection that failed: that would
/// mean a connection was tried): `http-request-denied` for a URL no grant allows,
/// `destination-ip-prohibited` for an address the SSRF rules refuse.
fn refused(hop: &serde_json::Value) -> bool {
    let e = hop["error"].as_str().unwrap_or("");
    hop["status"].is_null()
        && (e == "ErrorCode_HttpRequestDenied()" || e == "ErrorCode_DestinationIpProhibited()")
}

/// The hops `http-fetch` answered (each printed on stderr).
fn hops(out: &str) -> Vec<serde_json::Value> {
    let hops = json(out)["hops"].as_array().cloned().unwrap_or_default();
    for h in &hops {
        eprintln!("http-fetch hop: {h}");
    }
    hops
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_http_reaches_a_granted_local_server_and_nothing_it_was_not_granted() {
    let wasm = http_fetch("http-fetch");
    let server = LocalServer::start();
    let port = server.port;
    let dir = tempfile::tempdir().unwrap();
    let config = test_config(dir.path());
    grant_before_start(
        &config.data_dir,
        "http-fetch",
        &digest_of(&wasm),
        &format!("http.outbound:http://127.0.0.1:{port}"),
    )
    .await;
    let host = colony_host::supervisor::Host::start(config)
        .await
        .unwrap_or_else(|e| panic!("host start: {e:#}"));
    let tool = host
        .register_tool(&std::fs::read(&wasm).unwrap(), "admin:test")
        .await
        .unwrap_or_else(|e| panic!("register: {e}"));
    assert_eq!(tool.id(), "http-fetch@1.0.0");

    // Under its grant: the local server answers.
    let url = format!("http://127.0.0.1:{port}/hello");
    let out = host
        .call_tool("http-fetch", &serde_json::json!({ "url": url }).to_string())
        .await
        .unwrap_or_else(|e| panic!("call: {e}"));
    let h = hops(&out);
    assert_eq!(h.len(), 1, "{out}");
    assert_eq!(h[0]["status"], 200, "{out}");
    assert_eq!(h[0]["body"], "hello from the test server", "{out}");
    assert_eq!(server.paths(), vec!["/hello"]);

    // Another port of the same address is not granted.
    let out = host
        .call_tool(
            "http-fetch",
            &serde_json::json!({ "url": format!("http://127.0.0.1:{}/hello", port ^ 1) })
                .to_string(),
        )
        .await
        .unwrap();
    assert!(refused(&hops(&out)[0]), "{out}");

    // An ungranted host is refused before any name resolution or connection.
    let out = host
        .call_tool("http-fetch", r#"{"url": "http://ungranted.example/data"}"#)
        .await
        .unwrap();
    assert!(refused(&hops(&out)[0]), "{out}");

    // The granted server redirects to the cloud metadata address and to a private one; the
    // tool follows, and the host refuses the second request.
    for (path, target) in [
        ("/to-metadata", "http://169.254.169.254/latest/meta-data/"),
        ("/to-private", "http://10.0.0.1/"),
    ] {
        let out = host
            .call_tool(
                "http-fetch",
                &serde_json::json!({ "url": format!("http://127.0.0.1:{port}{path}"), "follow": 3 })
                    .to_string(),
            )
            .await
            .unwrap();
        let h = hops(&out);
        assert_eq!(h.len(), 2, "{out}");
        assert_eq!(h[0]["status"], 302, "{out}");
        assert_eq!(h[0]["location"], target, "{out}");
        assert_eq!(h[1]["url"], target, "{out}");
        assert!(refused(&h[1]), "{path}: {out}");
    }
    assert_eq!(
        server.paths(),
        vec!["/hello", "/to-metadata", "/to-private"],
        "only the granted server was reached"
    );
    // Each refusal is audited as a deny: refused before a connection was attempted.
    for target in [
        format!("GET http://127.0.0.1:{}", port ^ 1),
        "GET http://ungranted.example:80".to_string(),
        "GET http://169.254.169.254:80".to_string(),
        "GET http://10.0.0.1:80".to_string(),
    ] {
        audited_deny(&host, "http-fetch", &[&target, "refused http.not-granted"]).await;
    }
    host.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_http_to_loopback_needs_a_grant_of_the_address_itself() {
    // Granted by name, `localhost` resolves to loopback, which only a grant naming the
    // address literally opens.
    let wasm = http_fetch("http-fetch-by-name");
    let server = LocalServer::start();
    let port = server.port;
    let dir = tempfile::tempdir().unwrap();
    let config = test_config(dir.path());
    let digest = digest_of(&wasm);
    for cap in [
        format!("http.outbound:http://localhost:{port}"),
        format!("http.outbound:http://*.localhost:{port}"),
    ] {
        grant_before_start(&config.data_dir, "http-fetch-by-name", &digest, &cap).await;
    }
    let host = colony_host::supervisor::Host::start(config)
        .await
        .unwrap_or_else(|e| panic!("host start: {e:#}"));
    host.register_tool(&std::fs::read(&wasm).unwrap(), "admin:test")
        .await
        .unwrap_or_else(|e| panic!("register: {e}"));

    for (url, code) in [
        // The name is granted, but it resolves to 127.0.0.1: refused as a loopback address.
        (
            format!("http://localhost:{port}/hello"),
            "ErrorCode_DestinationIpProhibited()",
        ),
        // The address itself: no grant names it.
        (
            format!("http://127.0.0.1:{port}/hello"),
            "ErrorCode_HttpRequestDenied()",
        ),
    ] {
        let out = host
            .call_tool(
                "http-fetch-by-name",
                &serde_json::json!({ "url": url }).to_string(),
            )
            .await
            .unwrap_or_else(|e| panic!("call: {e}"));
        let h = hops(&out);
        assert_eq!(h[0]["error"], code, "{url}: {out}");
        assert!(refused(&h[0]), "{url}: {out}");
    }
    assert!(server.paths().is_empty(), "{:?}", server.paths());
    audited_deny(
        &host,
        "http-fetch-by-name",
        &[
            &format!("GET http://localhost:{port}"),
            "refused http.private-address",
        ],
    )
    .await;
    host.shutdown().await;
}
