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

/// The trader's trap: its third order event runs with no fuel. That is the first event of
/// its first reverse: a signal sent the exit of the short (`t2`, reduce-only) and the long
/// entry (`t3`), both filled at once, and their four events wait in its mailbox. The view the
/// old trader rebuilt at `init` (the host's long 0.25) then took the queued fills again: long
/// 0.75 in its eyes, and every exit it sent was refused as `risk.reducing-only`.
const TRADER_TRAP: &str = "trader:on-order:2";

/// The order journal of a run, one line per order row and per event row, without the
/// paper venue's name (`paper@<wall-clock start>`), the one wall-clock field it stores.
fn journal_rows(data: &Path) -> Vec<String> {
    use colony_host::orders::journal::{Journal, OrderFilter};
    tokio::runtime::Runtime::new().unwrap().block_on(async {
        let url = format!("sqlite://{}", data.join("orders.db").display());
        let journal = Journal::open(&url).await.unwrap();
        let mut orders = journal.orders(&OrderFilter::default()).await.unwrap();
        orders.sort_by(|a, b| {
            (a.state.created, &a.state.request.client_id)
                .cmp(&(b.state.created, &b.state.request.client_id))
        });
        let mut rows = Vec::new();
        for o in orders {
            rows.push(format!("order sent={} {:?}", o.sent, o.state));
            let req = &o.state.request;
            for e in journal.events(&req.agent, &req.client_id).await.unwrap() {
                rows.push(format!("  event {e:?}"));
            }
        }
        journal.close().await;
        rows
    })
}

/// The host's position of `agent` from the journal (signed sum of its fills), and the
/// trader's own view as it stored it (state `book`, after every fill).
fn positions(data: &Path, agent: &str) -> (rust_decimal::Decimal, rust_decimal::Decimal) {
    use colony_host::orders::journal::{Journal, OrderFilter};
    use colony_host::state_store::{StateQuota, StateStore};
    tokio::runtime::Runtime::new().unwrap().block_on(async {
        let url = format!("sqlite://{}", data.join("orders.db").display());
        let journal = Journal::open(&url).await.unwrap();
        let filter = OrderFilter {
            agent: Some(agent.into()),
            ..OrderFilter::default()
        };
        let host: rust_decimal::Decimal = journal
            .orders(&filter)
            .await
            .unwrap()
            .iter()
            .map(|o| match o.state.request.side {
                colony_host::market::types::Side::Buy => o.state.filled_qty,
                colony_host::market::types::Side::Sell => -o.state.filled_qty,
            })
            .sum();
        journal.close().await;
        let state = StateStore::open(&data.join("state.db"), StateQuota::default())
            .await
            .unwrap();
        let book = state
            .get(agent, "book")
            .await
            .unwrap()
            .expect("a stored view");
        let book: serde_json::Value = serde_json::from_slice(&book).unwrap();
        (host, dec(&book["qty"]))
    })
}

#[test]
fn a_trap_injected_into_the_trader_keeps_the_hosts_truth_and_repeats() {
    let runs: Vec<_> = (0..2)
        .map(|_| {
            let dir = tempfile::tempdir().unwrap();
            // The demo's own limits: they measure the agents' CPU time, not the machine's
            // load, so the injected trap is the only failure even on a loaded machine.
            let (_, r) = demo(dir.path(), &["--inject-trap", TRADER_TRAP]);
            (dir, r)
        })
        .collect();
    for (dir, r) in &runs {
        assert_eq!(r["reason"], "replay finished");
        let trader = agent(r, "trader");
        assert_eq!(
            (trader["restarts"].as_u64(), trader["failed"].as_u64()),
            (Some(1), Some(1)),
            "{trader}"
        );
        // Not one order refused for being on the wrong side of the position.
        let rejections = &r["trading"]["rejections"];
        for code in ["risk.reducing-only", "venue.reduce-only"] {
            assert!(rejections.get(code).is_none(), "{code}: {rejections}");
        }
        // The trader's view is the host's.
        let (host, view) = positions(&dir.path().join("data"), "trader");
        assert_eq!(view, host, "trader's view vs the host's position");
    }
    // Two runs, one journal.
    let a = journal_rows(&runs[0].0.path().join("data"));
    let b = journal_rows(&runs[1].0.path().join("data"));
    assert!(a.len() > 20, "{a:?}");
    assert_eq!(a, b);
}
