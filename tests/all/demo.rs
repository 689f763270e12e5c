//! The demo `colony run` runs with no arguments: the shipped trading swarm on the embedded
//! real data, at max speed, to its report; and the same run surviving a trap injected into
//! one of its agents.

use std::path::Path;

use crate::support::{colony, stderr, stdout};

const SWARM: [&str; 5] = ["analyst", "data-scout", "learner", "risk-manager", "trader"];

/// Runs the demo in `dir` with `extra` arguments; returns its stdout and its JSON report.
fn demo(dir: &Path, extra: &[&str]) -> (String, serde_json::Value) {
    let json = dir.join("report.json");
    let html = dir.join("report.html");
    let mut args = vec![
        "run",
        "--report",
        html.to_str().unwrap(),
        "--report-json",
        json.to_str().unwrap(),
    ];
    args.extend_from_slice(extra);
    let out = colony(&dir.join("data"), &args);
    assert!(out.status.success(), "{}\n{}", stdout(&out), stderr(&out));
    let report: serde_json::Value = serde_json::from_slice(&std::fs::read(&json).unwrap()).unwrap();
    let page = std::fs::read_to_string(&html).unwrap();
    assert!(
        page.contains("<svg") && page.contains("<polyline"),
        "equity chart missing"
    );
    (stdout(&out), report)
}

fn agent<'a>(report: &'a serde_json::Value, name: &str) -> &'a serde_json::Value {
    report["agents"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["name"] == name)
        .unwrap_or_else(|| panic!("{name} not in the report: {report}"))
}

fn dec(v: &serde_json::Value) -> rust_decimal::Decimal {
    v.as_str().unwrap().parse().unwrap()
}

#[test]
fn colony_run_alone_runs_the_swarm_on_the_embedded_data_to_its_report() {
    let dir = tempfile::tempdir().unwrap();
    let (text, r) = demo(dir.path(), &[]);
    assert!(
        text.starts_with("colony run report: replay finished"),
        "{text}"
    );
    assert_eq!(r["reason"], "replay finished");
    assert_eq!(text.lines().nth(1), Some("repeatable (seed 0)"), "{text}");
    assert_eq!(
        r["repeatability"]["repeatable"], true,
        "{}",
        r["repeatability"]
    );
    let feed = &r["feed"];
    assert_eq!(feed["finished"], true);
    assert!(feed["events"].as_u64().unwrap() >= 45_031, "{feed}");

    // The swarm traded the replay on the paper exchange, through the host's risk checks.
    let t = &r["trading"];
    assert_eq!(t["venue"], "paper");
    assert!(t["orders_placed"].as_u64().unwrap() > 10, "{t}");
    assert!(t["fills"].as_u64().unwrap() > 10, "{t}");
    assert!(
        t["rejections"]["risk.max-notional"].as_u64().unwrap() > 0,
        "{t}"
    );
    assert_eq!(
        dec(&t["end_equity"]) - dec(&t["start_equity"]),
        dec(&t["pnl"])
    );
    assert!(t["equity_curve"].as_array().unwrap().len() > 10, "{t}");
    assert!(text.contains("risk.max-notional"), "{text}");

    // Every swarm agent worked, none failed; each used fuel and time.
    for name in SWARM {
        let a = agent(&r, name);
        assert!(a["delivered"].as_u64().unwrap() > 0, "{a}");
        assert_eq!(
            (a["failed"].as_u64(), a["restarts"].as_u64()),
            (Some(0), Some(0)),
            "{a}"
        );
        assert!(a["fuel"].as_u64().unwrap() > 0, "{a}");
    }
    assert!(agent(&r, "analyst")["delivered"].as_u64().unwrap() >= 45_031);

    // The analyst's attempt at an order it holds no grant for was refused and counted.
    let denied = r["denied"].as_array().unwrap();
    assert!(
        denied
            .iter()
            .any(|d| d["plugin"] == "analyst" && d["capability"] == "orders.place:BTC-PERP"),
        "{denied:?}"
    );
    assert_eq!(
        r["wall"]["lifecycle"].as_array().unwrap().len(),
        0,
        "no supervision events"
    );
}

#[test]
fn a_trap_injected_into_a_demo_agent_mid_run_is_restarted_and_the_run_completes() {
    let dir = tempfile::tempdir().unwrap();
    let (text, r) = demo(dir.path(), &["--inject-trap", "analyst:20000"]);
    assert_eq!(r["reason"], "replay finished");
    assert_eq!(r["feed"]["finished"], true);

    let analyst = agent(&r, "analyst");
    assert_eq!(analyst["restarts"], 1, "{analyst}");
    // A restart depends on timing (its backoff is wall time): the report says so at the top.
    assert_eq!(r["repeatability"]["repeatable"], false);
    assert!(
        text.contains("  - analyst: restarted once after a trap or an exceeded limit"),
        "{text}"
    );
    assert_eq!(analyst["failed"], 1, "{analyst}");
    assert!(
        analyst["last_error"].as_str().unwrap().contains("fuel"),
        "{analyst}"
    );
    // It came back and handled the rest of the replay.
    assert!(analyst["delivered"].as_u64().unwrap() > 40_000, "{analyst}");
    assert!(r["trading"]["fills"].as_u64().unwrap() > 10);

    // The restart is in the report …
    let lifecycle = r["wall"]["lifecycle"].as_array().unwrap();
    assert!(
        lifecycle.iter().any(|l| l["plugin"] == "analyst"
            && l["detail"].as_str().unwrap().contains("restart in 100 ms")),
        "{lifecycle:?}"
    );
    assert!(
        lifecycle.iter().any(|l| l["plugin"] == "analyst"
            && l["detail"].as_str().unwrap().contains("restarted after")),
        "{lifecycle:?}"
    );
    assert!(text.contains("restarted after"), "{text}");
    // … and in the audit.
    let out = colony(
        &dir.path().join("data"),
        &["audit", "--plugin", "analyst", "--json"],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let audit = stdout(&out);
    assert!(
        audit.contains("lifecycle") && audit.contains("restarted after"),
        "{audit}"
    );
}
