//! Property-based fuzzing of every parser a guest or a file controls: capability strings,
//! manifests (embedded JSON, sidecar TOML, the SDK's encoder), `colony.toml`, admin protocol
//! requests, and market replay files. Each target runs the committed corpus
//! (`host/fuzz-corpus/TARGET/`: one input per file, the inputs that found bugs plus seeds near
//! each format) and then a bounded number of generated cases, so a short run is part of
//! `cargo test`; the property is always "no panic, and an accepted input means what it says".
//!
//! Inputs are generated from each format's own tokens mixed with hostile ones (huge and
//! negative numbers, `NaN`, control and invisible characters, deep nesting), which reaches far
//! deeper than random bytes. `PROPTEST_CASES=N` runs more; see `docs/security.md`.

use std::path::{Path, PathBuf};

use proptest::prelude::*;

use crate::config::HostConfig;
use crate::market::replay::{self, ReplayOptions};
use colony_caps::manifest::Manifest;
use colony_caps::{Capability, GrantSet, Request};

/// The committed inputs of one target.
fn corpus(target: &str) -> Vec<(PathBuf, Vec<u8>)> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fuzz-corpus")
        .join(target);
    let mut out: Vec<(PathBuf, Vec<u8>)> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("fuzz corpus {}: {e}", dir.display()))
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.is_file())
        .map(|p| {
            let bytes = std::fs::read(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
            (p, bytes)
        })
        .collect();
    out.sort();
    assert!(!out.is_empty(), "empty fuzz corpus {}", dir.display());
    out
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Hostile fragments common to every text format.
fn hostile() -> impl Strategy<Value = String> {
    prop::sample::select(vec![
        "",
        " ",
        "NaN",
        "inf",
        "-inf",
        "1e309",
        "-1",
        "0",
        "18446744073709551616",
        "-9223372036854775809",
        "9223372036854775807",
        "99999999999999999999999999999999.9",
        "0.0000000000000000000000000000001",
        "\u{0}",
        "\n",
        "\r\n",
        "\t",
        "\u{202e}",
        "\u{200b}",
        "\u{feff}",
        "é",
        "../",
        "/",
        "..",
        ".",
        ">",
        "*",
        ":",
        "\"",
        "\\",
        "[",
        "]",
        "{",
        "}",
        "=",
        ",",
        "#",
    ])
    .prop_map(str::to_string)
}

/// A string of `tokens` and hostile fragments.
fn soup(tokens: Vec<&'static str>, max: usize) -> impl Strategy<Value = String> {
    let token = prop_oneof![
        3 => prop::sample::select(tokens).prop_map(str::to_string),
        1 => hostile(),
        1 => "[ -~]{0,12}",
        1 => any::<String>().prop_map(|s| s.chars().take(8).collect()),
    ];
    prop::collection::vec(token, 0..max).prop_map(|v| v.concat())
}

// ------------------------------------------------------------------------------------------
// Capability strings

fn check_capability(s: &str) {
    if let Ok(c) = s.parse::<Capability>() {
        let shown = c.to_string();
        assert_eq!(
            shown.parse::<Capability>().ok(),
            Some(c.clone()),
            "{s:?} parsed, but its display {shown:?} does not parse back to it"
        );
        let g = GrantSet::new([c]);
        for req in [
            Request::Publish { subject: s },
            Request::Subscribe { subject: s },
            Request::Request { subject: s },
            Request::MarketRead { symbol: s },
            Request::CallTool { name: s },
            Request::FsRead { path: s },
            Request::FsWrite { path: s },
            Request::Env { name: s },
            Request::Http {
                scheme: "https",
                host: s,
                port: 443,
            },
        ] {
            let _ = g.check(&req);
        }
    }
}

#[test]
fn fuzz_capabilities_corpus() {
    for (_, bytes) in corpus("capabilities") {
        for line in text(&bytes).lines() {
            check_capability(line);
        }
    }
}

// ------------------------------------------------------------------------------------------
// Manifests: embedded JSON, sidecar TOML, and the SDK's encoder against the host's parser

const MANIFEST_TOKENS: &[&str] = &[
    "{",
    "}",
    "[",
    "]",
    ",",
    ":",
    "\"schema\"",
    "\"name\"",
    "\"version\"",
    "\"kind\"",
    "\"description\"",
    "\"capabilities\"",
    "\"limits\"",
    "\"fuel\"",
    "\"deadline_ms\"",
    "\"memory_bytes\"",
    "\"output_bytes\"",
    "\"agent\"",
    "\"tool\"",
    "\"hello-agent\"",
    "\"0.1.0\"",
    "\"1.0.0-rc.1+b\"",
    "\"messaging.publish:demo.>\"",
    "1",
    "null",
    "true",
];

const SIDECAR_TOKENS: &[&str] = &[
    "name = ",
    "version = ",
    "kind = ",
    "description = ",
    "capabilities = ",
    "[limits]",
    "fuel = ",
    "deadline_ms = ",
    "memory_bytes = ",
    "output_bytes = ",
    "\"probe\"",
    "\"agent\"",
    "\"tool\"",
    "\"0.1.0\"",
    "[\"env:HOME\", \"fs.read:/data\"]",
    "[",
    "]",
    "\n",
    "1000",
    "'''",
    "\"\"\"",
];

fn check_manifest_json(bytes: &[u8]) {
    if let Ok(m) = Manifest::from_embedded(bytes) {
        assert!(m.validate().is_ok(), "accepted but invalid: {m:?}");
        // Whatever the plugin file says, the name the loader would use is the same.
        let _ = crate::plugin::declared_name(bytes, None, "stem");
    }
}

fn check_sidecar(text: &str) {
    if let Ok(side) = Manifest::parse_sidecar(text) {
        let base = Manifest::fallback("base", colony_caps::manifest::Kind::Agent);
        if let Ok(m) = base.with_sidecar(side) {
            assert!(m.validate().is_ok(), "accepted but invalid: {m:?}");
        }
    }
}

#[test]
fn fuzz_manifests_corpus() {
    for (path, bytes) in corpus("manifests") {
        if path.extension().is_some_and(|e| e == "toml") {
            check_sidecar(&text(&bytes));
        } else {
            check_manifest_json(&bytes);
        }
    }
}

// ------------------------------------------------------------------------------------------
// colony.toml

const CONFIG_TOKENS: &[&str] = &[
    "plugins = ",
    "tick_ms = ",
    "max_instances = ",
    "audit_sample_allows = ",
    "[limits.agent]",
    "[limits.tool]",
    "fuel = ",
    "deadline_ms = ",
    "memory_bytes = ",
    "[grants.trader]",
    "capabilities = ",
    "digest = ",
    "[agents.trader]",
    "config = ",
    "[orders]",
    "[orders.risk]",
    "[market]",
    "[bus]",
    "url = ",
    "\"nats://127.0.0.1:4222\"",
    "\"nats://h:99999\"",
    "\"plugins\"",
    "[\"orders.place:BTC-USDT\"]",
    "\"{}\"",
    "\n",
    "1",
    "0",
    "true",
    "\"1.5\"",
];

fn check_config(text: &str) {
    let _ = HostConfig::parse(text, Path::new("/base"), PathBuf::from("/data"));
}

#[test]
fn fuzz_config_corpus() {
    for (_, bytes) in corpus("config") {
        check_config(&text(&bytes));
    }
}

// ------------------------------------------------------------------------------------------
// Replay files

const REPLAY_TOKENS: &[&str] = &[
    "timestamp,open,high,low,close,volume\n",
    "symbol,timestamp,open,high,low,close,volume\n",
    "symbol,timestamp,first_update_id,last_update_id,side,update_type,price,qty,pu\n",
    "\n",
    ",",
    "2022-01-01T00:00:00Z",
    "2022-01-01 00:00:00",
    "1641081600000",
    "1641081600000000000",
    "BTCUSDT",
    "BTC-USDT",
    "b",
    "a",
    "snap",
    "set",
    "46319.5",
    "0",
    "-1",
    "{\"type\":\"quote\",\"symbol\":\"BTC-USDT\",\"ts\":1,\"bid\":\"1\",\"bid_size\":\"1\",\"ask\":\"2\",\"ask_size\":\"1\"}",
    "{\"type\":\"trade\",\"symbol\":\"BTC-USDT\",\"ts\":1,\"price\":\"1\",\"size\":\"1\",\"side\":\"buy\"}",
    "{\"type\":\"book\",\"symbol\":\"BTC-USDT\",\"ts\":1,\"bids\":[[\"1\",\"1\"]],\"asks\":[[\"2\",\"1\"]]}",
    "{\"type\":\"candle\",\"symbol\":\"BTC-USDT\",\"start\":0,\"interval\":60,\"open\":\"1\",\"high\":\"2\",\"low\":\"0\",\"close\":\"1\",\"volume\":\"1\"}",
    "{\"type\":\"candle\"",
    "\"interval\":0",
    "\"ts\":-1",
    "\u{feff}",
];

const REPLAY_NAMES: &[&str] = &[
    "btc-perp-2022-01-1m.csv",
    "depth.csv",
    "events.jsonl",
    "events.ndjson",
    "x.csv.gz",
    "noext",
    "-1.csv",
    "",
];

fn check_replay(name: &str, bytes: &[u8], depth: usize, interval: u32) {
    let options = ReplayOptions {
        book_depth: depth,
        bar_interval_secs: interval,
        ..ReplayOptions::default()
    };
    let _ = replay::detect(name, bytes);
    let _ = replay::parse(name, bytes, &options);
    let t = text(bytes);
    let _ = replay::parse_decimal(&t);
    let _ = replay::parse_utc(&t);
    let _ = colony_model::symbol::check_symbol(&t);
}

#[test]
fn fuzz_replay_corpus() {
    for (path, bytes) in corpus("replay") {
        let name = path
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or_default()
            .to_string();
        for (depth, interval) in [(0, 0), (1, 60), (usize::MAX, u32::MAX)] {
            check_replay(&name, &bytes, depth, interval);
        }
    }
}

// ------------------------------------------------------------------------------------------
// Admin protocol requests

fn check_admin_line(line: &str) {
    if let Ok(req) = serde_json::from_str::<crate::admin::Request>(line) {
        // What parses serialises and parses back to the same request.
        let again = serde_json::to_string(&req).unwrap_or_default();
        let back = serde_json::from_str::<crate::admin::Request>(&again);
        assert!(back.is_ok(), "{line:?} parsed but {again:?} does not");
    }
}

#[test]
fn fuzz_admin_corpus() {
    for (_, bytes) in corpus("admin") {
        for line in text(&bytes).lines() {
            check_admin_line(line);
        }
    }
}

const ADMIN_OPS: &[&str] = &[
    "status",
    "plugins",
    "tools",
    "publish",
    "grants",
    "grant",
    "revoke",
    "approve",
    "orders",
    "approvals",
    "kill-switch",
    "approve-order",
    "deny-order",
    "agent-sleep",
    "agent-wake",
    "agent-release",
    "sync",
    "invoke",
    "tool-list",
    "tool-not-loaded",
    "tool-register",
    "tool-unregister",
    "no-such-op",
];

const ADMIN_ARGS: &[&str] = &[
    "{}",
    "{\"subject\":\"a.b\",\"payload\":\"x\"}",
    "{\"mode\":\"cancel-all\"}",
    "orders.place:BTC-USDT",
    "messaging.publish:>",
    "env:HOME",
    "/dev/null",
    "/nonexistent.wasm",
    "trader",
    "echo-tool@0.1.0",
    "[1,2,3]",
    "null",
];

/// Requests a hostile client could send once it holds the token: every operation, with names
/// and arguments from the operations' own vocabulary and hostile text.
fn admin_request() -> impl Strategy<Value = crate::admin::Request> {
    let field = || {
        prop::option::of(prop_oneof![
            2 => prop::sample::select(ADMIN_ARGS.to_vec()).prop_map(str::to_string),
            1 => hostile(),
            1 => "[ -~]{0,24}",
        ])
    };
    (
        prop::sample::select(ADMIN_OPS.to_vec()),
        field(),
        field(),
        field(),
    )
        .prop_map(|(op, name, args, actor)| crate::admin::Request {
            token: String::new(),
            op: op.to_string(),
            name,
            args,
            actor,
        })
}

/// `default` cases, or `PROPTEST_CASES` when set (for a longer run).
fn cases(default: u32) -> ProptestConfig {
    let n = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default);
    ProptestConfig::with_cases(n)
}

proptest! {
    #![proptest_config(cases(256))]

    #[test]
    fn fuzz_capabilities(s in soup(vec![
        "messaging.publish", "messaging.subscribe", "messaging.request", "market.read",
        "orders.place", "orders.cancel", "tools.call", "tools.register", "http.outbound",
        "fs.read", "fs.write", "env", "state", "log", ":", ".", ">", "*", "BTC-USDT", "a.b",
        "https://", "http://", "127.0.0.1", "[::1]", ":443", "/data", "?max_notional=",
        "&max_qty=", "1000", "=", "&",
    ], 10)) {
        check_capability(&s);
    }

    #[test]
    fn fuzz_manifest_json(s in soup(MANIFEST_TOKENS.to_vec(), 24)) {
        check_manifest_json(s.as_bytes());
    }

    #[test]
    fn fuzz_manifest_json_bytes(bytes in prop::collection::vec(any::<u8>(), 0..256)) {
        check_manifest_json(&bytes);
        // A component header followed by anything: the loader's pre-compile name read.
        let mut file = b"\0asm\x0d\0\x01\0".to_vec();
        file.extend_from_slice(&bytes);
        let _ = crate::plugin::declared_name(&file, None, "stem");
        let _ = crate::plugin::declared_name(&file, Some(&text(&bytes)), "stem");
    }

    #[test]
    fn fuzz_sidecar(s in soup(SIDECAR_TOKENS.to_vec(), 16)) {
        check_sidecar(&s);
    }

    #[test]
    fn fuzz_colony_toml(s in soup(CONFIG_TOKENS.to_vec(), 20)) {
        check_config(&s);
    }

    #[test]
    fn fuzz_replay(
        name in prop::sample::select(REPLAY_NAMES.to_vec()),
        s in soup(REPLAY_TOKENS.to_vec(), 24),
        depth in prop_oneof![Just(0usize), 1usize..30, Just(usize::MAX)],
        interval in prop_oneof![Just(0u32), 1u32..100_000, Just(u32::MAX)],
    ) {
        check_replay(name, s.as_bytes(), depth, interval);
    }

    #[test]
    fn fuzz_admin_lines(s in soup(vec![
        "{", "}", "\"token\"", "\"op\"", "\"name\"", "\"args\"", "\"actor\"", ":", ",",
        "\"status\"", "\"grant\"", "null", "1", "[]",
    ], 16)) {
        check_admin_line(&s);
    }
}

proptest! {
    // Each case runs a request through a real host: fewer cases, one host for all of them.
    #![proptest_config(cases(64))]

    #[test]
    fn fuzz_admin_requests_through_a_host(reqs in prop::collection::vec(admin_request(), 1..8)) {
        admin_host().block_on(async {
            let host = admin_host_handle().await;
            for req in reqs {
                let _ = crate::admin::handle_for_fuzz(&host, req).await;
            }
        });
    }
}

/// One runtime and one host for every admin case (starting a host per case would dominate
/// the run).
fn admin_host() -> &'static tokio::runtime::Runtime {
    static RT: std::sync::OnceLock<tokio::runtime::Runtime> = std::sync::OnceLock::new();
    RT.get_or_init(|| {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap_or_else(|e| panic!("runtime: {e}"))
    })
}

async fn admin_host_handle() -> std::sync::Arc<crate::supervisor::Host> {
    static HOST: tokio::sync::OnceCell<(
        tempfile::TempDir,
        std::sync::Arc<crate::supervisor::Host>,
    )> = tokio::sync::OnceCell::const_new();
    HOST.get_or_init(|| async {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("tempdir: {e}"));
        let mut config = HostConfig::new(dir.path().join("data"));
        config.plugins_dir = dir.path().join("plugins");
        config.tick_ms = 0;
        config.max_instances = 8;
        std::fs::create_dir_all(&config.plugins_dir).unwrap_or_else(|e| panic!("{e}"));
        let host = crate::supervisor::Host::start(config)
            .await
            .unwrap_or_else(|e| panic!("host start: {e:#}"));
        (dir, host)
    })
    .await
    .1
    .clone()
}
