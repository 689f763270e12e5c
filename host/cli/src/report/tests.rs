//! Tests of the run report: repeatability, the text, the HTML page and its chart.

use super::chart::{MAX_CHART_POINTS, PLOT_BOTTOM, PLOT_TOP, downsample};
use super::format::{human_count, human_secs, signed, utc};
use super::*;

const SEC: u64 = 1_000_000_000;
/// 2023-11-14 22:13:20 UTC.
const T0: u64 = 1_700_000_000 * SEC;

fn sample() -> RunReport {
    RunReport {
        repeatability: Repeatability::default(),
        reason: "replay finished".into(),
        seed: Some(0),
        feed: Some(FeedLine {
            venue: "replay".into(),
            events: 5_000,
            issues: 2,
            finished: true,
            first_ts: T0,
            last_ts: T0 + 86_400 * SEC,
            agents: vec![FeedAgentLine {
                agent: "trader".into(),
                published: 5_000,
                delivered: 4_990,
                dropped: 10,
            }],
        }),
        trading: Some(TradingLine {
            venue: "paper".into(),
            start_equity: "100000".into(),
            end_equity: "100012.345".into(),
            pnl: "12.345".into(),
            equity_curve: vec![
                (T0, "100000".into()),
                (T0 + 60 * SEC, "99990.5".into()),
                (T0 + 120 * SEC, "100012.345".into()),
            ],
            orders_placed: 12,
            orders_rejected: 4,
            fills: 9,
            cancels: 1,
            rejections: BTreeMap::from([
                ("risk.max-notional".to_string(), 1),
                ("venue.insufficient-funds".to_string(), 3),
            ]),
            accounts: vec![("trader".into(), "100012.345".into(), "12.345".into())],
            positions: vec![(
                "trader".into(),
                "BTC-USDT".into(),
                "0.5".into(),
                "42000.1".into(),
                "10".into(),
                "2.345".into(),
            )],
        }),
        agents: vec![AgentLine {
            name: "trader".into(),
            kind: "agent".into(),
            state: "idle".into(),
            delivered: 4_990,
            failed: 10,
            restarts: 1,
            fuel: 1_234_000_000,
            last_error: Some("x".repeat(200)),
            ..AgentLine::default()
        }],
        denied: vec![DeniedLine {
            plugin: "snoop".into(),
            capability: "net.connect:evil.example:443".into(),
            count: 7,
        }],
        refused: vec!["bad.wasm: not a component".into()],
        wall: WallLine {
            secs: 12.34,
            events_per_sec: Some(405.2),
            busy_ms: BTreeMap::from([("trader".to_string(), 812.5)]),
            lifecycle: vec![LifecycleLine {
                plugin: "trader".into(),
                kind: "lifecycle".into(),
                detail: "restarted after 100 ms: fuel exhausted".into(),
                ts: T0 + 30 * SEC,
            }],
        },
    }
}

fn replay() -> RunFacts {
    RunFacts {
        replay: true,
        lockstep: true,
        ..RunFacts::default()
    }
}

/// A report whose one agent and feed line are clean.
fn clean_run() -> RunReport {
    let mut r = sample();
    r.agents[0] = AgentLine {
        name: "trader".into(),
        kind: "agent".into(),
        state: "idle".into(),
        delivered: 5_000,
        ..AgentLine::default()
    };
    if let Some(f) = r.feed.as_mut() {
        f.agents[0].delivered = 5_000;
        f.agents[0].dropped = 0;
    }
    r.wall.lifecycle.clear();
    r
}

fn verdict(facts: &RunFacts, r: &RunReport) -> Vec<String> {
    let v = Repeatability::judge(facts, r);
    assert_eq!(v.repeatable, v.reasons.is_empty());
    v.reasons.iter().map(reason_text).collect()
}

#[test]
fn a_clean_lockstep_replay_is_repeatable() {
    let mut r = clean_run();
    assert_eq!(verdict(&replay(), &r), Vec::<String>::new());
    r.repeatability = Repeatability::judge(&replay(), &r);
    let text = render_text(&r);
    assert_eq!(text.lines().nth(1), Some("repeatable (seed 0)"), "{text}");
    assert!(render_html(&r).contains("<div class=\"verdict ok\"><p><strong>repeatable (seed 0)"));
    // A restart recorded only in the supervision history does not count twice, nor at
    // all: the agents' counters are what the verdict reads (a breaker is a tool's).
    r.wall.lifecycle = sample().wall.lifecycle;
    assert!(Repeatability::judge(&replay(), &r).repeatable);
}

#[test]
fn each_machine_dependent_thing_makes_a_run_not_repeatable() {
    type Change = fn(&mut RunReport, &mut RunFacts);
    let cases: &[(Change, &str)] = &[
        (
            |_, f| f.replay = false,
            "no replay: agents read the system clock",
        ),
        (|_, f| f.lockstep = false, "--speed fast"),
        (
            |r, _| {
                r.reason = "interrupted".into();
                if let Some(f) = r.feed.as_mut() {
                    f.finished = false;
                }
            },
            "the replay stopped before its end (interrupted)",
        ),
        (|_, f| f.remote_bus = true, "joined to other hosts"),
        (|_, f| f.live_venue = true, "live venue"),
        (
            |_, f| f.settle_timeouts = 2,
            "went on twice before its agents had settled",
        ),
        (
            |r, _| r.agents[0].state = "quarantined".into(),
            "trader: quarantined",
        ),
        (
            |r, _| r.agents[0].restarts = 2,
            "trader: restarted twice after a trap",
        ),
        (
            |r, _| r.agents[0].state = "failed".into(),
            "trader: its instance had failed",
        ),
        (
            |r, _| {
                r.agents[0].failed = 3;
                r.agents[0].last_error = Some("cpu time of 100 ms exceeded".into());
            },
            "trader: 3 events failed (last: cpu time of 100 ms exceeded)",
        ),
        (|r, _| r.agents[0].sleeps = 1, "trader: put to sleep once"),
        (
            |r, _| r.agents[0].dropped = 4,
            "trader: 4 market events dropped",
        ),
        (|r, _| r.agents[0].refused = 1, "trader: 1 event refused"),
        (|r, _| r.agents[0].expired = 2, "trader: 2 messages expired"),
        (
            |r, _| {
                if let Some(f) = r.feed.as_mut() {
                    f.agents[0].delivered = 3_000;
                }
            },
            "trader: 2000 of 5000 market events routed to it were not delivered",
        ),
        (
            |r, _| {
                r.wall.lifecycle.push(LifecycleLine {
                    plugin: "echo-tool".into(),
                    kind: "breaker".into(),
                    detail: "closed -> open: 5 failures".into(),
                    ts: 0,
                })
            },
            "echo-tool: circuit breaker: closed -> open",
        ),
    ];
    for (change, expected) in cases {
        let mut r = clean_run();
        let mut facts = replay();
        change(&mut r, &mut facts);
        let reasons = verdict(&facts, &r);
        assert!(
            reasons
                .iter()
                .any(|l| l.starts_with(expected) || l.contains(expected)),
            "{expected:?} not in {reasons:?}"
        );
        r.repeatability = Repeatability::judge(&facts, &r);
        let text = render_text(&r);
        let mut lines = text.lines().skip(1);
        assert!(
            lines
                .next()
                .is_some_and(|l| l.starts_with("not repeatable")),
            "{text}"
        );
        assert!(lines.next().is_some_and(|l| l.contains(expected)), "{text}");
        let html = render_html(&r);
        assert!(
            html.contains("<div class=\"verdict bad\"><p><strong>not repeatable"),
            "{html}"
        );
        assert!(html.contains(&escape_html(expected)), "{html}");
    }
}

#[test]
fn the_json_keeps_every_wall_clock_figure_under_wall() {
    let r = sample();
    let text = serde_json::to_string(&r).expect("json");
    assert!(text.starts_with("{\"repeatability\":"), "{text}");
    let mut json = serde_json::to_value(&r).expect("json");
    let wall = json
        .as_object_mut()
        .and_then(|o| o.remove("wall"))
        .expect("wall");
    for key in ["secs", "events_per_sec", "busy_ms", "lifecycle"] {
        assert!(wall.get(key).is_some(), "wall.{key} missing: {wall}");
    }
    let rest = json.to_string();
    for wall_only in ["secs", "per_sec", "busy_ms", "lifecycle", "restarted after"] {
        assert!(
            !rest.contains(wall_only),
            "{wall_only} outside wall: {rest}"
        );
    }
}

fn polyline_points(html: &str) -> usize {
    let start = html.find("<polyline").expect("a polyline");
    let rest = &html[start..];
    let attr = rest.find("points=\"").expect("points") + "points=\"".len();
    let end = rest[attr..].find('"').expect("closing quote");
    rest[attr..attr + end].split_whitespace().count()
}

#[test]
fn text_has_pnl_rejections_and_restart() {
    let text = render_text(&sample());
    assert!(
        text.starts_with("colony run report: replay finished (wall 12.3 s)"),
        "{text}"
    );
    assert!(text.contains("+12.345 (+0.01 %)"), "{text}");
    assert!(text.contains("100012.345"), "{text}");
    assert!(
        text.contains("2023-11-14 22:13:20 to 2023-11-15 22:13:20 UTC"),
        "{text}"
    );
    // Most frequent reason first.
    let funds = text.find("venue.insufficient-funds").expect("funds reason");
    let notional = text.find("risk.max-notional").expect("notional reason");
    assert!(funds < notional, "{text}");
    assert!(
        text.lines()
            .any(|l| l.contains("trader") && l.contains("restarted after 100 ms")),
        "{text}"
    );
    assert!(text.contains("1.2 G"), "{text}");
    assert!(text.contains("net.connect:evil.example:443"), "{text}");
    assert!(text.contains("bad.wasm: not a component"), "{text}");
    // The 200-character error is cut to 60.
    assert!(text.contains(&format!("{}…", "x".repeat(59))), "{text}");
    assert!(!text.contains(&"x".repeat(61)), "{text}");
}

#[test]
fn negative_pnl_has_a_minus_sign() {
    let mut r = sample();
    if let Some(t) = r.trading.as_mut() {
        t.end_equity = "99987.655".into();
        t.pnl = "-12.345".into();
    }
    let text = render_text(&r);
    let pnl = text
        .lines()
        .find(|l| l.trim_start().starts_with("pnl"))
        .expect("pnl line");
    assert!(pnl.contains("-12.345 (-0.01 %)"), "{pnl}");
    assert!(!pnl.contains('+'), "{pnl}");
    let html = render_html(&r);
    assert!(
        html.contains("<span class=\"neg\">-12.345 (-0.01 %)</span>"),
        "{html}"
    );
}

#[test]
fn html_is_self_contained_with_chart() {
    let html = render_html(&sample());
    assert!(html.starts_with("<!DOCTYPE html>"));
    assert!(html.contains("<svg"));
    assert_eq!(polyline_points(&html), 3);
    assert!(html.contains("max 100012.345"), "{html}");
    assert!(html.contains("min 99990.5"), "{html}");
    assert!(html.contains("start 100000"), "{html}");
    assert!(html.contains("2023-11-14 22:13:20 UTC"), "{html}");
    assert!(html.contains("2023-11-14 22:15:20 UTC"), "{html}");
    assert!(html.contains("restarted after 100 ms"), "{html}");
    for external in ["<script", "src=", "href=", "http://", "https://", "@import"] {
        // The SVG namespace is an identifier, not a fetch.
        let stripped = html.replace("xmlns=\"http://www.w3.org/2000/svg\"", "");
        assert!(!stripped.contains(external), "{external} in page");
    }
}

#[test]
fn decimals_are_kept_exactly() {
    let mut r = sample();
    if let Some(t) = r.trading.as_mut() {
        t.end_equity = "100012.34500".into();
        t.equity_curve.push((T0 + 180 * SEC, "100012.34500".into()));
    }
    for page in [render_text(&r), render_html(&r)] {
        assert!(page.contains("100012.345"));
        assert!(page.contains("100012.34500"));
        assert!(!page.contains("100012.34499"));
        assert!(!page.contains("100012.3450000"));
    }
}

#[test]
fn html_escapes_plugin_strings() {
    let hostile = "<script>alert(1)</script>";
    let mut r = sample();
    r.agents[0].name = hostile.into();
    r.agents[0].last_error = Some("\"quoted\" & 'single'".into());
    r.wall.lifecycle[0].plugin = hostile.into();
    r.denied[0].capability = "<img src=x onerror=alert(1)>".into();
    r.refused = vec![hostile.into()];
    let html = render_html(&r);
    assert!(!html.contains("<script"), "{html}");
    assert!(!html.contains("<img"), "{html}");
    assert!(
        html.contains("&lt;script&gt;alert(1)&lt;/script&gt;"),
        "{html}"
    );
    assert!(
        html.contains("&quot;quoted&quot; &amp; &#39;single&#39;"),
        "{html}"
    );
    assert_eq!(
        escape_html("a&b<c>d\"e'f"),
        "a&amp;b&lt;c&gt;d&quot;e&#39;f"
    );
}

#[test]
fn text_escapes_terminal_control_characters() {
    let mut r = sample();
    r.agents[0].name = "evil\u{1b}[2J".into();
    r.wall.lifecycle[0].detail = "line one\nline two".into();
    let text = render_text(&r);
    assert!(!text.contains('\u{1b}'), "{text}");
    assert!(text.contains("evil\\u{1b}[2J"), "{text}");
    assert!(text.contains("line one\\nline two"), "{text}");
}

#[test]
fn empty_report_renders() {
    let r = RunReport::default();
    let text = render_text(&r);
    for line in [
        "feed: none",
        "trading: none",
        "agents: none",
        "supervision: none",
        "denied capability attempts: none",
        "refused files: none",
    ] {
        assert!(text.contains(line), "{line} missing from {text}");
    }
    let html = render_html(&r);
    assert!(html.ends_with("</html>\n"));
    assert!(!html.contains("<svg"));

    // Trading with empty or unreadable figures.
    let r = RunReport {
        trading: Some(TradingLine::default()),
        feed: Some(FeedLine::default()),
        ..RunReport::default()
    };
    assert!(render_text(&r).contains("no events"));
    let html = render_html(&r);
    assert!(html.contains("no equity samples"), "{html}");
    assert!(!html.contains("<svg"));
}

#[test]
fn one_sample_is_not_a_curve() {
    let mut r = sample();
    if let Some(t) = r.trading.as_mut() {
        t.equity_curve = vec![(T0, "100000".into()), (T0, "not a number".into())];
    }
    let html = render_html(&r);
    assert!(!html.contains("<svg"), "{html}");
    assert!(
        html.contains("no equity samples to draw a curve from"),
        "{html}"
    );
    assert!(html.contains("1 unreadable samples skipped"), "{html}");
}

#[test]
fn flat_curve_and_one_instant_do_not_break_the_chart() {
    let mut r = sample();
    if let Some(t) = r.trading.as_mut() {
        t.equity_curve = vec![(T0, "100000".into()); 5];
    }
    let html = render_html(&r);
    assert_eq!(polyline_points(&html), 5);
    assert!(!html.contains("NaN") && !html.contains(",inf"), "{html}");
    assert!(!html.contains("min 100000"), "one label when min = max");
}

#[test]
fn long_curves_are_downsampled_keeping_extremes() {
    let mut r = sample();
    if let Some(t) = r.trading.as_mut() {
        t.equity_curve = (0..50_000u64)
            .map(|i| {
                let equity = match i {
                    31_337 => "12.5".to_string(),
                    40_001 => "250000.75".to_string(),
                    _ => format!("{}.{}", 100_000 + i % 17, i % 10),
                };
                (T0 + i * SEC, equity)
            })
            .collect();
    }
    let html = render_html(&r);
    let n = polyline_points(&html);
    assert!((500..=MAX_CHART_POINTS).contains(&n), "{n} points");
    assert!(html.contains("min 12.5"), "drawdown label");
    assert!(html.contains("max 250000.75"), "peak label");
    // The extremes' pixels survive downsampling: the bottom and the top of the plot.
    let start = html.find("points=\"").expect("points") + 8;
    let ys: Vec<f64> = html[start..]
        .split('"')
        .next()
        .unwrap_or_default()
        .split_whitespace()
        .filter_map(|p| p.split(',').nth(1)?.parse().ok())
        .collect();
    assert!(ys.iter().any(|y| (y - PLOT_BOTTOM).abs() < 0.11));
    assert!(ys.iter().any(|y| (y - PLOT_TOP).abs() < 0.11));
}

#[test]
fn downsample_bounds_and_endpoints() {
    for n in [0, 1, 2, 999, 1_000, 1_001, 1_002, 4_321, 100_000] {
        let points: Vec<(f64, f64)> = (0..n).map(|i| (i as f64, (i % 7) as f64)).collect();
        let out = downsample(&points, MAX_CHART_POINTS);
        assert!(out.len() <= MAX_CHART_POINTS, "{n}: {}", out.len());
        assert!(
            out.len() >= n.min(MAX_CHART_POINTS / 2),
            "{n}: {}",
            out.len()
        );
        assert_eq!(out.first(), points.first(), "{n}");
        assert_eq!(out.last(), points.last(), "{n}");
        assert!(out.windows(2).all(|w| w[0].0 < w[1].0), "{n}: time order");
        if n <= MAX_CHART_POINTS {
            assert_eq!(out, points);
        }
    }
}

#[test]
fn human_counts() {
    let table = [
        (0, "0"),
        (999, "999"),
        (1_000, "1.0 k"),
        (9_949, "9.9 k"),
        (9_960, "10 k"),
        (12_345, "12 k"),
        (999_499, "999 k"),
        (999_600, "1.0 M"),
        (350_000_000, "350 M"),
        (1_234_000_000, "1.2 G"),
        (u64::MAX, "18446744074 G"),
    ];
    for (n, want) in table {
        assert_eq!(human_count(n), want, "{n}");
    }
}

#[test]
fn utc_times() {
    assert_eq!(utc(0), "1970-01-01 00:00:00");
    assert_eq!(utc(T0 + 999_999_999), "2023-11-14 22:13:20");
    // Leap day.
    assert_eq!(utc(951_782_400 * SEC), "2000-02-29 00:00:00");
}

#[test]
fn signs_and_durations() {
    assert_eq!(signed("1.50"), "+1.50");
    assert_eq!(signed("+1.5"), "+1.5");
    assert_eq!(signed("-1.5"), "-1.5");
    assert_eq!(signed("0"), "0");
    assert_eq!(signed("n/a"), "n/a");
    assert_eq!(human_secs(12.34), "12.3 s");
    assert_eq!(human_secs(245.0), "4 m 05 s");
    assert_eq!(human_secs(7_390.0), "2 h 03 m 10 s");
}

#[test]
fn write_html_replaces_atomically() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("report.html");
    std::fs::write(&path, "old").expect("seed");
    write_html(&sample(), &path).expect("write");
    let page = std::fs::read_to_string(&path).expect("read");
    assert_eq!(page, render_html(&sample()));
    let names: Vec<_> = std::fs::read_dir(dir.path())
        .expect("list")
        .filter_map(|e| e.ok().map(|e| e.file_name()))
        .collect();
    assert_eq!(
        names,
        vec![std::ffi::OsString::from("report.html")],
        "no temp left"
    );
    assert!(write_html(&sample(), &dir.path().join("missing/report.html")).is_err());
}
