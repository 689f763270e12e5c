//! The verdict at the top of `colony run`'s report: a clean lockstep replay is repeatable and
//! `--strict` exits 0; a run in which an agent was quarantined says "not repeatable" with the
//! reason in the text, the HTML and the JSON report, and `--strict` exits 6.

use std::path::Path;

use crate::support::{colony, stderr, stdout};
use colony_tests::guests;

/// 60 one-minute BTC-PERP bars.
fn bars(dir: &Path) -> std::path::PathBuf {
    let mut csv = String::from("timestamp,open,high,low,close,volume\n");
    for i in 0..60u32 {
        let close = 46_000 + (i * 37) % 200;
        csv.push_str(&format!(
            "2022-01-01 00:{:02}:00,{close},{},{},{close},{}\n",
            i,
            close + 10,
            close - 10,
            100 + i
        ));
    }
    let path = dir.join("btc-perp-2022-01-01-1m.csv");
    std::fs::write(&path, csv).unwrap();
    path
}

/// Runs the market agent on the bars for a few seconds with `extra` arguments and `toml`
/// appended to the configuration; returns (exit code, stdout, stderr, JSON report, HTML).
fn run(toml: &str, extra: &[&str]) -> (Option<i32>, String, String, serde_json::Value, String) {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let plugins = root.join("plugins");
    std::fs::create_dir_all(&plugins).unwrap();
    colony_tests::install(&plugins, guests::MARKET_AGENT, "market-agent.wasm");
    let config = root.join("colony.toml");
    std::fs::write(
        &config,
        format!(
            "plugins = \"plugins\"\ntick_ms = 0\n[market]\nfeed = \"replay:{}\"\n\
             [agents.market-agent]\nsymbol = \"BTC-PERP\"\nkinds = \"candle\"\n\
             [grants.market-agent]\ncapabilities = [\"market.read:BTC-PERP\"]\n{toml}",
            bars(root).display()
        ),
    )
    .unwrap();
    let (json, html) = (root.join("report.json"), root.join("report.html"));
    let mut args = vec![
        "run",
        "--config",
        config.to_str().unwrap(),
        "--no-progress",
        "--duration",
        "3",
        "--report",
        html.to_str().unwrap(),
        "--report-json",
        json.to_str().unwrap(),
    ];
    args.extend_from_slice(extra);
    let out = colony(&root.join("data"), &args);
    let report = std::fs::read(&json)
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .unwrap_or_else(|| panic!("no JSON report: {}\n{}", stdout(&out), stderr(&out)));
    let page = std::fs::read_to_string(&html).unwrap();
    (out.status.code(), stdout(&out), stderr(&out), report, page)
}

#[test]
fn a_clean_replay_is_repeatable_and_strict_exits_zero() {
    let (code, text, err, r, html) = run("", &["--strict"]);
    assert_eq!(code, Some(0), "{text}\n{err}");
    assert_eq!(text.lines().nth(1), Some("repeatable (seed 0)"), "{text}");
    assert_eq!(r["repeatability"]["repeatable"], true, "{r}");
    assert_eq!(r["repeatability"]["reasons"], serde_json::json!([]));
    assert_eq!(r["seed"], 0);
    assert!(
        html.contains("<strong>repeatable (seed 0)</strong>"),
        "{html}"
    );
    // The feed line per agent: every bar routed to the agent was delivered.
    let feed = &r["feed"];
    assert_eq!(feed["finished"], true, "{feed}");
    assert_eq!(
        feed["agents"],
        serde_json::json!([{"agent": "market-agent", "published": 60, "delivered": 60, "dropped": 0}])
    );
    // The wall-clock figures are in `wall` only.
    for key in ["secs", "events_per_sec", "busy_ms", "lifecycle"] {
        assert!(r["wall"].get(key).is_some(), "wall.{key}: {r}");
    }
    assert!(r["feed"].get("events_per_sec").is_none());
    assert!(r["agents"][0].get("busy_ms").is_none());

    // Another seed is recorded as such.
    let (code, text, _, r, _) = run("", &["--seed", "7"]);
    assert_eq!(code, Some(0));
    assert_eq!(text.lines().nth(1), Some("repeatable (seed 7)"), "{text}");
    assert_eq!(r["seed"], 7);
}

#[test]
fn a_quarantined_agent_makes_the_run_not_repeatable_and_strict_fails() {
    let quick = "[supervision]\nmax_restarts = 0\n";
    let (code, text, err, r, html) = run(quick, &["--strict", "--inject-trap", "market-agent:10"]);
    assert_eq!(code, Some(6), "{text}\n{err}");
    assert!(err.contains("not repeatable"), "{err}");

    // Text: the verdict is the second line, the reasons follow.
    let mut lines = text.lines().skip(1);
    assert_eq!(lines.next(), Some("not repeatable (seed 0):"), "{text}");
    let reasons: Vec<&str> = lines.take_while(|l| l.starts_with("  - ")).collect();
    assert!(
        reasons.contains(&"  - market-agent: quarantined"),
        "{reasons:?}\n{text}"
    );
    assert!(
        reasons
            .iter()
            .any(|l| l.starts_with("  - market-agent: 1 event failed (last:") && l.contains("fuel")),
        "{reasons:?}"
    );

    // HTML: the same verdict and reasons, before any section.
    let verdict = html
        .find("not repeatable (seed 0):")
        .expect("verdict in the page");
    assert!(verdict < html.find("<h2>").unwrap(), "{html}");
    assert!(
        html.contains("<li>market-agent: quarantined</li>"),
        "{html}"
    );

    // JSON: first key, with the agent and the reason apart.
    let v = &r["repeatability"];
    assert_eq!(v["repeatable"], false, "{r}");
    let reasons = v["reasons"].as_array().unwrap();
    assert!(
        reasons.contains(&serde_json::json!({"agent": "market-agent", "reason": "quarantined"})),
        "{reasons:?}"
    );
    // It left the bus when quarantined: the feed line shows how much of the replay reached it.
    let feed_agent = &r["feed"]["agents"][0];
    assert!(
        feed_agent["published"].as_u64().unwrap() < 60,
        "{feed_agent}"
    );
    assert_eq!(r["feed"]["events"], 60);
    assert_eq!(r["agents"][0]["state"], "quarantined");

    // Without --strict the same run succeeds and says the same.
    let (code, text, _, r, _) = run(quick, &["--inject-trap", "market-agent:10"]);
    assert_eq!(code, Some(0), "{text}");
    assert_eq!(r["repeatability"]["repeatable"], false);
}
