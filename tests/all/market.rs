//! Market data through a real wasm agent (`market-agent`): the shipped replay delivered bar
//! for bar to `on-market`, candle queries against an independent fold of the shipped rows, a
//! repeatable replay (the same journal twice), `market.read` grants (granted, missing and
//! too narrow, with denies audited), malformed data stopping `colony run` and `Host::start`
//! with file, line and column, a negative price reported with file and line and never handed
//! to an agent, and the stale flag.
//!
//! The oracle for the shipped data is the gzipped CSV in `host/data/`, read and folded here
//! with `flate2` and `rust_decimal`; the host's own parser (`replay::embedded_bars`) is only a
//! cross-check.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use colony_host::audit::{AuditFilter, CapabilityMatch, Decision};
use colony_host::config::HostConfig;
use colony_host::market::feed::{FeedReport, FeedSpec};
use colony_host::state_store::StateStore;
use colony_tests::{TestHost, guests};
use rust_decimal::Decimal;

use crate::support::{colony, stderr};

const SECOND: u64 = 1_000_000_000;
/// Bars in `host/data/btc-perp-2022-01-1m.csv.gz`.
const SHIPPED_BARS: usize = 45_031;
/// The moving averages of the market agent's strategy (its defaults).
const FAST: usize = 30;
const SLOW: usize = 120;

// ------------------------------------------------------------------------------------------
// The oracle: the shipped CSV, parsed and folded here.

/// One row of the bar CSV.
#[derive(Debug, Clone, PartialEq)]
struct Bar {
    start: u64,
    open: Decimal,
    high: Decimal,
    low: Decimal,
    close: Decimal,
    volume: Decimal,
}

impl Bar {
    /// The line the agent writes for a bar the host sent it
    /// (`start|interval|open|high|low|close|volume`, decimals as on the wire, without
    /// trailing zeros).
    fn line(&self, interval_secs: u64) -> String {
        format!(
            "{}|{interval_secs}|{}|{}|{}|{}|{}",
            self.start,
            wire(self.open),
            wire(self.high),
            wire(self.low),
            wire(self.close),
            wire(self.volume)
        )
    }
}

/// Plain notation without trailing zeros (`46319`, `0.5`).
fn plain(d: Decimal) -> String {
    d.normalize().to_string()
}

/// `d` as an agent receives it in the WIT `decimal` record, whose mantissa is 64 bits: exact
/// when it fits, otherwise rounded (half to even) to the most decimal places that fit, as
/// `host/runtime/src/interfaces/market.rs` documents. Every price and volume in the shipped file
/// fits; some sums of volumes do not (the file has volumes like `218102.59507500002`, so a
/// daily sum has 10 integer and 11 decimal digits: 1982638874.07685000005 on 2022-01-01
/// arrives as 1982638874.07685).
fn wire(d: Decimal) -> String {
    let mut d = d.normalize();
    while i64::try_from(d.mantissa()).is_err() && d.scale() > 0 {
        d = d.round_dp_with_strategy(
            d.scale() - 1,
            rust_decimal::RoundingStrategy::MidpointNearestEven,
        );
    }
    plain(d)
}

/// Days from 1970-01-01 to a proleptic Gregorian date (Howard Hinnant's `days_from_civil`).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = if y >= 0 { y } else { y - 399 } / 400;
    let yoe = y - era * 400;
    let doy = (153 * ((m + 9) % 12) + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// `YYYY-MM-DD HH:MM:SS[.ffffff]` (UTC) in ns since the epoch; the shipped file has whole
/// minutes only.
fn utc_ns(text: &str) -> u64 {
    let n = |range: std::ops::Range<usize>| -> i64 {
        text[range]
            .parse()
            .unwrap_or_else(|e| panic!("{text}: {e}"))
    };
    let days = days_from_civil(n(0..4), n(5..7), n(8..10));
    let secs = days * 86_400 + n(11..13) * 3_600 + n(14..16) * 60 + n(17..19);
    assert!(
        text.len() == 19
            || text[19..]
                .trim_start_matches('.')
                .bytes()
                .all(|b| b == b'0'),
        "{text}: the shipped bars start on whole seconds"
    );
    u64::try_from(secs).unwrap() * SECOND
}

/// The shipped 1-minute bars, read from the gzipped CSV in `host/data/`.
fn shipped_bars() -> Vec<Bar> {
    let path =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../host/data/btc-perp-2022-01-1m.csv.gz");
    let file = std::fs::File::open(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let mut text = String::new();
    flate2::read::GzDecoder::new(file)
        .read_to_string(&mut text)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let mut lines = text.lines();
    assert_eq!(
        lines.next(),
        Some("timestamp,open,high,low,close,volume"),
        "the header this oracle reads"
    );
    lines
        .filter(|l| !l.is_empty())
        .map(|l| {
            let f: Vec<&str> = l.split(',').collect();
            assert_eq!(f.len(), 6, "{l}");
            let d = |s: &str| Decimal::from_str(s).unwrap_or_else(|e| panic!("{l}: {e}"));
            Bar {
                start: utc_ns(f[0]),
                open: d(f[1]),
                high: d(f[2]),
                low: d(f[3]),
                close: d(f[4]),
                volume: d(f[5]),
            }
        })
        .collect()
}

/// The rows folded into UTC-aligned bars of `interval_secs`: open of the first, highest
/// high, lowest low, close of the last, sum of volumes; one bar per bucket with data.
fn fold(rows: &[Bar], interval_secs: u64) -> Vec<Bar> {
    let len = interval_secs * SECOND;
    let mut out: Vec<Bar> = Vec::new();
    for r in rows {
        let bucket = r.start - r.start % len;
        match out.last_mut() {
            Some(bar) if bar.start == bucket => {
                bar.high = bar.high.max(r.high);
                bar.low = bar.low.min(r.low);
                bar.close = r.close;
                bar.volume += r.volume;
            }
            _ => out.push(Bar {
                start: bucket,
                ..r.clone()
            }),
        }
    }
    out
}

/// The journal the agent's crossover must write: its rule computed here with `Decimal`
/// (sums of the last FAST and SLOW closes; a crossing when the sign of
/// `fast_sum × SLOW − slow_sum × FAST` changes from the last non-zero one). Each line is
/// `END,SIDE,CLOSE,WALL`: the agent's WASI wall clock during a replay is the virtual clock,
/// which reads the time of the event being delivered, the bar's end.
fn crossings(rows: &[Bar]) -> String {
    let mut journal = String::new();
    let mut previous = 0;
    for i in SLOW - 1..rows.len() {
        let sum = |n: usize| -> Decimal { rows[i + 1 - n..=i].iter().map(|r| r.close).sum() };
        let diff = sum(FAST) * Decimal::from(SLOW) - sum(SLOW) * Decimal::from(FAST);
        let sign = if diff.is_zero() {
            0
        } else if diff.is_sign_positive() {
            1
        } else {
            -1
        };
        if sign == 0 {
            continue;
        }
        if previous != 0 && sign != previous {
            let side = if sign > 0 { "buy" } else { "sell" };
            let end = rows[i].start + 60 * SECOND;
            journal.push_str(&format!("{end},{side},{},{end}\n", plain(rows[i].close)));
        }
        previous = sign;
    }
    journal
}

/// The BTCUSDT book after the shipped Binance excerpt, computed here from its two CSVs:
/// the snapshot's levels, then the update's (`qty` 0 removes a level). Returns the event
/// time of the update (ns) and the top `depth` levels a side as the agent writes them
/// (`price@size` joined by `,`), bids highest first, asks lowest first.
fn shipped_book(depth: usize) -> (u64, String, String) {
    use std::collections::BTreeMap;
    let data = Path::new(env!("CARGO_MANIFEST_DIR")).join("../host/data");
    let mut bids = BTreeMap::new();
    let mut asks = BTreeMap::new();
    let mut ts = 0;
    for file in [
        "binance-btcusdt-depth-snap.csv",
        "binance-btcusdt-depth-update.csv",
    ] {
        let text = std::fs::read_to_string(data.join(file)).unwrap();
        for line in text.lines().skip(1).filter(|l| !l.is_empty()) {
            let f: Vec<&str> = line.split(',').collect();
            let (side, price, qty) = (f[4], Decimal::from_str(f[6]).unwrap(), f[7]);
            let qty = Decimal::from_str(qty).unwrap();
            ts = f[1].parse::<u64>().unwrap() * 1_000_000;
            let book = if side == "b" { &mut bids } else { &mut asks };
            if qty.is_zero() {
                book.remove(&price);
            } else {
                book.insert(price, qty);
            }
        }
    }
    let side = |levels: &mut dyn Iterator<Item = (&Decimal, &Decimal)>| {
        levels
            .take(depth)
            .map(|(p, s)| format!("{}@{}", plain(*p), plain(*s)))
            .collect::<Vec<_>>()
            .join(",")
    };
    (ts, side(&mut bids.iter().rev()), side(&mut asks.iter()))
}

// ------------------------------------------------------------------------------------------
// Hosts with market agents.

/// One market-agent copy: (name, config JSON, grants).
type Spec<'a> = (&'a str, &'a str, &'a [&'a str]);

async fn market_host(
    feed: FeedSpec,
    agents: &[Spec<'_>],
    tweak: impl FnOnce(&mut HostConfig),
) -> (TestHost, StateStore) {
    let t = TestHost::start_copies(guests::MARKET_AGENT, agents, move |c| {
        c.feed = Some(feed);
        // These tests replay 45,031 events per host, several hosts at once, and the agents
        // write state (SQLite, synchronous=FULL) inside events; on a loaded 2-core machine an
        // fsync can outlast the default 100 ms event deadline, which would end the event and
        // the instance's in-memory state. What is under test here is the market data, so the
        // deadline is generous; `replay` checks that no event failed.
        c.agent_limits.cpu_ms = 5_000;
        tweak(c);
    })
    .await;
    let state = t.state().await;
    (t, state)
}

/// Runs the host's feed to its end, and checks that every agent handled every event: in
/// lockstep nothing is dropped, and an event that failed (a limit, a trap) would have cost
/// the agent its in-memory state.
async fn replay(t: &TestHost) -> FeedReport {
    let report = t
        .host
        .start_feed()
        .expect("the host has a feed")
        .await
        .expect("the feed task ends normally");
    for p in t.host.plugins().await {
        assert_eq!(
            (p.failed, p.restarts, p.bus_dropped, p.bus_refused),
            (0, 0, 0, 0),
            "agent {} (failed, restarts, dropped, refused) after {} deliveries: {:?}",
            p.info.name,
            p.delivered,
            p.last_error
        );
    }
    report
}

async fn text(state: &StateStore, agent: &str, key: &str) -> String {
    state
        .get(agent, key)
        .await
        .unwrap()
        .map(|v| String::from_utf8_lossy(&v).into_owned())
        .unwrap_or_default()
}

/// Sends `command` to the agent's inbox and returns what it stored under `key`.
async fn ask(t: &TestHost, state: &StateStore, agent: &str, command: &str, key: &str) -> String {
    t.host
        .deliver(
            agent,
            colony_tests::message(&format!("agent.{agent}.inbox"), command.as_bytes()),
        )
        .await
        .unwrap_or_else(|e| panic!("{agent} {command}: {e}"));
    text(state, agent, key).await
}

/// The agent's `received` summary as key → value.
async fn summary(
    t: &TestHost,
    state: &StateStore,
    agent: &str,
) -> std::collections::BTreeMap<String, String> {
    ask(t, state, agent, "summary", "received")
        .await
        .lines()
        .flat_map(|l| l.split(' '))
        .filter_map(|kv| kv.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// Refusals of `plugin` for exactly `capability`: its deny records, with the counts of the
/// `deny-summary` records that stand for repeats.
async fn denies(t: &TestHost, plugin: &str, capability: &str) -> u64 {
    t.host.audit().writer().flush().await.unwrap();
    t.host
        .audit()
        .query(&AuditFilter {
            plugin: Some(plugin.into()),
            capability: Some(CapabilityMatch::Exact(capability.into())),
            decision: Some(Decision::Deny),
            ..AuditFilter::default()
        })
        .await
        .unwrap()
        .iter()
        .map(colony_host::audit::AuditEntry::refusals)
        .sum()
}

const BTC_CANDLES: &str = r#"{"symbol":"BTC-PERP","kinds":"candle"}"#;
/// The same, with the wall clock in each journal line.
const TRADER: &str = r#"{"symbol":"BTC-PERP","kinds":"candle","clock":"true"}"#;

// ------------------------------------------------------------------------------------------
// Tests.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_shipped_replay_reaches_a_wasm_agent_bar_for_bar() {
    let rows = shipped_bars();
    assert_eq!(rows.len(), SHIPPED_BARS);
    // Cross-check: the host's parser of the embedded copy reads the same bars.
    let embedded = colony_host::market::replay::embedded_bars().unwrap();
    let host_bars: Vec<_> = embedded.candles().collect();
    assert_eq!(host_bars.len(), SHIPPED_BARS);
    for (c, r) in host_bars.iter().zip(&rows) {
        assert_eq!(
            (&*c.symbol, c.interval_secs, c.start),
            ("BTC-PERP", 60, r.start)
        );
        assert_eq!(
            (c.open, c.high, c.low, c.close, c.volume),
            (r.open, r.high, r.low, r.close, r.volume),
            "bar at {}",
            r.start
        );
    }

    let (t, state) = market_host(
        FeedSpec::Embedded,
        &[
            ("btc-bars", BTC_CANDLES, &["market.read:BTC-PERP"]),
            (
                "btc-book",
                r#"{"symbol":"BTCUSDT","kinds":"book,quote"}"#,
                &["market.read:BTCUSDT"],
            ),
        ],
        |_| {},
    )
    .await;
    assert!(
        t.host.rejected().await.is_empty(),
        "{:?}",
        t.host.rejected().await
    );
    let report = replay(&t).await;
    let first_known = rows[0].start + 60 * SECOND;
    assert_eq!(
        report.first, first_known,
        "a bar is published when it closes"
    );
    assert!(
        report.events > SHIPPED_BARS as u64,
        "bars and the Binance depth excerpt: {report:?}"
    );
    assert_eq!(report.events, t.host.market().unwrap().published());

    let s = summary(&t, &state, "btc-bars").await;
    let count = SHIPPED_BARS.to_string();
    assert_eq!(s["count"], count, "every bar, nothing else: {s:?}");
    assert_eq!(
        (&*s["candle"], &*s["quote"], &*s["book"], &*s["trade"]),
        (count.as_str(), "0", "0", "0"),
        "only the kind subscribed to (the BTCUSDT depth is another symbol)"
    );
    let last = &rows[SHIPPED_BARS - 1];
    assert_eq!(s["first"], format!("candle|BTC-PERP|{}", rows[0].line(60)));
    assert_eq!(s["last"], format!("candle|BTC-PERP|{}", last.line(60)));
    let high = rows.iter().map(|r| r.high).max().unwrap();
    let low = rows.iter().map(|r| r.low).min().unwrap();
    let volume: Decimal = rows.iter().map(|r| r.volume).sum();
    assert_eq!(s["max_high"], plain(high));
    assert_eq!(s["min_low"], plain(low));
    assert_eq!(s["sum_volume"], plain(volume), "exact, not a float sum");

    // The last 1-minute bars come back as they went in.
    let want: String = rows[SHIPPED_BARS - 3..]
        .iter()
        .map(|r| format!("{}\n", r.line(60)))
        .collect();
    assert_eq!(
        ask(&t, &state, "btc-bars", "candles:BTC-PERP:60:3", "candles").await,
        want
    );

    // What the host knows about the symbol: its last bar closed at `last.start + 60 s`; the
    // Binance excerpt (November 2022) moved the feed's clock months past it, so it is stale.
    assert_eq!(
        ask(&t, &state, "btc-bars", "status:BTC-PERP", "status").await,
        format!("BTC-PERP|replay|{}|true|0", last.start + 60 * SECOND)
    );
    // The feed also has BTCUSDT, which this agent may not read.
    assert_eq!(
        ask(&t, &state, "btc-bars", "symbols", "symbols").await,
        "BTC-PERP"
    );
    // Bars make no quotes.
    assert!(
        ask(&t, &state, "btc-bars", "quote:BTC-PERP", "quote")
            .await
            .starts_with("err:not-found: "),
    );

    // The Binance excerpt: a book after the snapshot (bids only, so no quote) and one after
    // the update, then the quote it gives.
    let s = summary(&t, &state, "btc-book").await;
    assert_eq!(
        (&*s["count"], &*s["book"], &*s["quote"]),
        ("3", "2", "1"),
        "{s:?}"
    );
    let (ts, bids, asks) = shipped_book(3);
    assert_eq!(
        ask(&t, &state, "btc-book", "book:BTCUSDT:3", "book").await,
        format!("BTCUSDT|{ts}|{bids}|{asks}")
    );
    let (_, bid, ask_level) = shipped_book(1);
    let quote = format!(
        "BTCUSDT|{ts}|{}|{}",
        bid.replace('@', "|"),
        ask_level.replace('@', "|")
    );
    assert_eq!(
        quote,
        format!("BTCUSDT|{ts}|20472.1|22.276|20472.2|4.211"),
        "as docs/market-data.md says"
    );
    assert_eq!(
        ask(&t, &state, "btc-book", "quote:BTCUSDT", "quote").await,
        quote
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn candle_queries_match_folding_the_shipped_rows() {
    let rows = shipped_bars();
    let (t, state) = market_host(
        FeedSpec::Embedded,
        &[("btc-bars", BTC_CANDLES, &["market.read:BTC-PERP"])],
        |_| {},
    )
    .await;
    replay(&t).await;
    // (interval, bars returned, bars expected, whether the last one is the feed's last bucket).
    let mut ends = Vec::new();
    for (interval, limit) in [
        (300, 4),
        (3_600, 5),
        (14_400, 3),
        (86_400, 5),
        (86_400, 1_000),
    ] {
        let folded = fold(&rows, interval);
        let lines: Vec<String> = folded.iter().map(|b| b.line(interval)).collect();
        let got = ask(
            &t,
            &state,
            "btc-bars",
            &format!("candles:BTC-PERP:{interval}:{limit}"),
            "candles",
        )
        .await;
        let got: Vec<&str> = got.lines().collect();
        assert!(!got.is_empty(), "no {interval} s bars");
        // Each bar returned is exactly the fold of its bucket, and they are consecutive.
        let Some(k) = lines.iter().position(|l| l == got[0]) else {
            panic!("{interval} s: {:?} is no bar of the fold", got[0]);
        };
        assert_eq!(
            got,
            lines[k..(k + got.len()).min(lines.len())],
            "{interval} s bars from {}",
            got[0]
        );
        if limit >= folded.len() {
            assert_eq!(k, 0, "{interval} s: all bars from the first");
        }
        ends.push((
            interval,
            got.len(),
            limit.min(folded.len()),
            k + got.len() == lines.len(),
        ));
    }
    assert!(
        ask(&t, &state, "btc-bars", "candles:BTC-PERP:120:5", "candles")
            .await
            .starts_with("err:invalid-argument: "),
        "2-minute bars are not kept"
    );
    // The feed has ended, so per docs/market-data.md ("a bar is emitted when data of a later
    // bucket arrives for its symbol, when the clock passes its end, or when the feed ends")
    // the last, partial bar of each interval (the one holding 2022-02-01 05:31) is closed
    // too and is the last one returned; and there are 33 daily bars (2021-12-31, partial,
    // to 2022-02-01, partial).
    assert!(
        ends.iter().all(|(_, got, want, last)| got == want && *last),
        "(interval, bars returned, bars expected, ends with the feed's last bucket): {ends:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_same_replay_gives_the_same_journal() {
    let rows = shipped_bars();
    let run = || async {
        let (t, state) = market_host(
            FeedSpec::Embedded,
            &[("trader", TRADER, &["market.read:BTC-PERP"])],
            |_| {},
        )
        .await;
        replay(&t).await;
        let crossings = summary(&t, &state, "trader").await["crossings"].clone();
        let journal = state
            .get("trader", "journal")
            .await
            .unwrap()
            .unwrap_or_default();
        (journal, crossings)
    };
    let ((one, n1), (two, n2)) = tokio::join!(run(), run());
    assert!(!one.is_empty(), "the strategy traded");
    assert!(
        one == two,
        "two hosts, same data, same plugin: the same journal, byte for byte\n{}\n--- and ---\n{}",
        String::from_utf8_lossy(&one),
        String::from_utf8_lossy(&two)
    );
    let want = crossings(&rows);
    assert_eq!(
        String::from_utf8_lossy(&one),
        want,
        "the crossover computed here, stamped with the virtual clock"
    );
    assert_eq!(n1, want.lines().count().to_string());
    assert_eq!(n1, n2);
}

/// A small JSONL feed: quotes of BTC-PERP and ETH-PERP.
fn two_symbols(dir: &Path) -> PathBuf {
    let t0: u64 = 1_641_081_600 * SECOND;
    let mut lines = String::new();
    for i in 0..3 {
        for sym in ["BTC-PERP", "ETH-PERP"] {
            lines.push_str(&format!(
                "{{\"type\":\"quote\",\"symbol\":\"{sym}\",\"ts\":{},\"bid\":\"10{i}.5\",\"bid_size\":\"1\",\"ask\":\"10{i}.75\",\"ask_size\":\"2\"}}\n",
                t0 + i * SECOND
            ));
        }
    }
    let path = dir.join("two.jsonl");
    std::fs::write(&path, lines).unwrap();
    path
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn market_data_needs_a_market_read_grant_for_the_symbol() {
    let dir = tempfile::tempdir().unwrap();
    let file = two_symbols(dir.path());
    let quotes = r#"{"symbol":"BTC-PERP","kinds":"quote"}"#;
    let (t, state) = market_host(
        FeedSpec::Files(vec![file]),
        &[
            ("reader", quotes, &["market.read:BTC-PERP"]),
            ("no-grant", quotes, &[]),
            ("eth-sub", quotes, &["market.read:ETH-*"]),
            ("eth-only", "{}", &["market.read:ETH-*"]),
            ("nothing", "{}", &[]),
        ],
        |_| {},
    )
    .await;

    // Subscribing in init without the grant fails init: the agent is refused, saying why,
    // and a grant for other symbols does not help.
    let mut rejected: Vec<(String, String)> = t
        .host
        .rejected()
        .await
        .into_iter()
        .map(|r| {
            (
                r.file.file_name().unwrap().to_string_lossy().into_owned(),
                r.reason,
            )
        })
        .collect();
    rejected.sort();
    assert_eq!(rejected.len(), 2, "{rejected:?}");
    for ((file, reason), want) in rejected.iter().zip(["eth-sub.wasm", "no-grant.wasm"]) {
        assert_eq!(file, want);
        assert!(reason.contains("needs market.read:BTC-PERP"), "{reason}");
    }
    assert_eq!(denies(&t, "no-grant", "market.read:BTC-PERP").await, 1);
    assert_eq!(denies(&t, "eth-sub", "market.read:BTC-PERP").await, 1);

    // A subscription the agent ends delivers nothing.
    let id = ask(
        &t,
        &state,
        "eth-only",
        "subscribe:ETH-PERP:quote",
        "subscribe",
    )
    .await;
    let id = id.strip_prefix("ok:").unwrap_or_else(|| panic!("{id}"));
    for (command, want) in [
        (format!("unsubscribe:{id}"), "ok".to_string()),
        (
            format!("unsubscribe:{id}"),
            format!("err:not-found: no market subscription {id}"),
        ),
    ] {
        assert_eq!(
            ask(&t, &state, "eth-only", &command, "unsubscribe").await,
            want
        );
    }

    replay(&t).await;
    assert_eq!(summary(&t, &state, "eth-only").await["count"], "0");
    let s = summary(&t, &state, "reader").await;
    assert_eq!(
        (&*s["count"], &*s["quote"]),
        ("3", "3"),
        "BTC-PERP only: {s:?}"
    );
    assert_eq!(
        s["last"],
        format!("quote|BTC-PERP|{}|102.5|1|102.75|2", 1_641_081_602 * SECOND)
    );

    // Queries: denied without the grant, and audited; allowed with it.
    let denied = "err:denied: needs market.read:BTC-PERP";
    for (agent, command, key) in [
        ("eth-only", "quote:BTC-PERP", "quote"),
        ("eth-only", "book:BTC-PERP:5", "book"),
        ("eth-only", "subscribe:BTC-PERP:quote", "subscribe"),
        ("nothing", "status:BTC-PERP", "status"),
        ("nothing", "candles:BTC-PERP:60:5", "candles"),
    ] {
        assert_eq!(
            ask(&t, &state, agent, command, key).await,
            denied,
            "{agent} {command}"
        );
    }
    assert_eq!(denies(&t, "eth-only", "market.read:BTC-PERP").await, 3);
    assert_eq!(denies(&t, "nothing", "market.read:BTC-PERP").await, 2);
    assert_eq!(
        ask(&t, &state, "eth-only", "quote:ETH-PERP", "quote").await,
        format!("ETH-PERP|{}|102.5|1|102.75|2", 1_641_081_602 * SECOND)
    );
    assert_eq!(
        ask(&t, &state, "reader", "quote:BTC-PERP", "quote").await,
        format!("BTC-PERP|{}|102.5|1|102.75|2", 1_641_081_602 * SECOND)
    );
    // Listing shows only what the agent may read (and is not a use: nothing is audited).
    assert_eq!(
        ask(&t, &state, "eth-only", "symbols", "symbols").await,
        "ETH-PERP"
    );
    assert_eq!(ask(&t, &state, "nothing", "symbols", "symbols").await, "");
    assert_eq!(denies(&t, "nothing", "market.read:ETH-PERP").await, 0);
}

/// A bar CSV whose third line (the header is line 1) has a high that is not a decimal.
fn bad_bars(dir: &Path) -> PathBuf {
    let path = dir.join("BAD.csv");
    std::fs::write(
        &path,
        "timestamp,open,high,low,close,volume\n\
         2022-01-01 00:00:00,1,2,0.5,1.5,10\n\
         2022-01-01 00:01:00,1,abc,0.5,1.5,10\n",
    )
    .unwrap();
    path
}

#[test]
fn colony_run_refuses_a_malformed_replay_file_naming_file_line_and_column() {
    let dir = tempfile::tempdir().unwrap();
    let bad = bad_bars(dir.path());
    let plugins = dir.path().join("plugins");
    std::fs::create_dir_all(&plugins).unwrap();
    let out = colony(
        &dir.path().join("data"),
        &[
            "run",
            "--tick-ms",
            "0",
            "--plugins",
            plugins.to_str().unwrap(),
            "--feed",
            &format!("replay:{}", bad.display()),
        ],
    );
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(3), "invalid input: {err}");
    assert!(
        err.contains(&format!(
            "{}:3: column \"high\": \"abc\" is not a decimal",
            bad.display()
        )),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn host_start_refuses_a_malformed_replay_file() {
    let dir = tempfile::tempdir().unwrap();
    let bad = bad_bars(dir.path());
    let json = dir.path().join("feed.jsonl");
    std::fs::write(
        &json,
        "{\"type\":\"trade\",\"symbol\":\"BTC-PERP\",\"ts\":1,\"price\":\"1\",\"size\":\"1\",\"side\":\"buy\"}\n\
         {\"type\":\"quote\",\"symbol\":\"BTC-PERP\",\"ts\":2,\"bid\":1.5,\"bid_size\":\"1\",\"ask\":\"2\",\"ask_size\":\"1\"}\n",
    )
    .unwrap();
    for (file, want) in [
        (
            &bad,
            format!(
                "{}:3: column \"high\": \"abc\" is not a decimal",
                bad.display()
            ),
        ),
        (
            &json,
            format!(
                "{}:2: field \"bid\": decimals are written as strings",
                json.display()
            ),
        ),
    ] {
        let mut config = colony_tests::test_config(&dir.path().join("host"));
        config.feed = Some(FeedSpec::Files(vec![file.clone()]));
        let err = match colony_host::supervisor::Host::start(config).await {
            Ok(_) => panic!("{} was accepted", file.display()),
            Err(e) => format!("{e:#}"),
        };
        assert!(err.contains(&want), "{err}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_symbol_silent_longer_than_the_threshold_is_stale() {
    let dir = tempfile::tempdir().unwrap();
    let t0: u64 = 1_641_081_600 * SECOND;
    let quote = |sym: &str, ts: u64| {
        format!(
            "{{\"type\":\"quote\",\"symbol\":\"{sym}\",\"ts\":{ts},\"bid\":\"1\",\"bid_size\":\"1\",\"ask\":\"2\",\"ask_size\":\"1\"}}\n"
        )
    };
    // QUIET-USD stops after t0 + 1 s; BUSY-USD goes on every second to t0 + 10 s. A file is
    // one timeline, so the lines are in time order.
    let mut lines = String::new();
    for i in 0..=10 {
        if i < 2 {
            lines.push_str(&quote("QUIET-USD", t0 + i * SECOND));
        }
        lines.push_str(&quote("BUSY-USD", t0 + i * SECOND));
    }
    let file = dir.path().join("stale.jsonl");
    std::fs::write(&file, lines).unwrap();
    let (t, state) = market_host(
        FeedSpec::Files(vec![file]),
        &[(
            "watcher",
            r#"{"symbol":"QUIET-USD","kinds":"quote"}"#,
            &["market.read:*"],
        )],
        |c| c.stale_after = std::time::Duration::from_secs(5),
    )
    .await;
    let report = replay(&t).await;
    assert_eq!(report.events, 13);
    assert_eq!(summary(&t, &state, "watcher").await["count"], "2");
    // 9 s of silence against a 5 s threshold; BUSY-USD's last update is the feed's clock.
    let quiet = ask(&t, &state, "watcher", "status:QUIET-USD", "status").await;
    assert!(
        quiet.starts_with(&format!("QUIET-USD|replay|{}|true|", t0 + SECOND)),
        "{quiet}"
    );
    assert_eq!(
        ask(&t, &state, "watcher", "status:BUSY-USD", "status").await,
        format!("BUSY-USD|replay|{}|false|0", t0 + 10 * SECOND)
    );
    assert!(
        ask(&t, &state, "watcher", "status:NEVER-USD", "status")
            .await
            .starts_with("err:not-found: "),
        "no data, no status"
    );
}

/// Issue 17: a negative price in a replay file is a data-quality issue, never a price. The
/// bar CSV's line 6 (the header is line 1) has a low and close of -5 (a consistent bar
/// otherwise, which the parser used to accept): `colony run` names the file and line, counts
/// the issue, and the agent is handed the other nine bars only; its moving-average journal
/// (fast 1, slow 2: a line `END,SIDE,CLOSE` on every change of direction) has exactly the
/// crossings of the nine good closes, and no -5.
#[test]
fn a_negative_price_in_a_replay_is_reported_with_file_and_line_and_never_reaches_an_agent() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let t0 = utc_ns("2022-01-01 00:00:00");
    // (close, or None for the bad bar), one minute apart.
    let closes = [
        Some(100),
        Some(102),
        Some(101),
        Some(103),
        None,
        Some(102),
        Some(104),
        Some(103),
        Some(105),
        Some(104),
    ];
    let mut csv = String::from("timestamp,open,high,low,close,volume\n");
    for (i, close) in closes.iter().enumerate() {
        let row = match close {
            Some(c) => format!("{c},{},{},{c},1", c + 1, c - 1),
            None => "100,101,-5,-5,1".to_string(),
        };
        csv.push_str(&format!("2022-01-01 00:{i:02}:00,{row}\n"));
    }
    let bars = root.join("btc-perp-2022-01-01-1m.csv");
    std::fs::write(&bars, csv).unwrap();
    let plugins = root.join("plugins");
    std::fs::create_dir_all(&plugins).unwrap();
    colony_tests::install(&plugins, guests::MARKET_AGENT, "market-agent.wasm");
    let config = root.join("colony.toml");
    std::fs::write(
        &config,
        format!(
            "plugins = \"plugins\"\ntick_ms = 0\n[market]\nfeed = \"replay:{}\"\n\
             [agents.market-agent]\nsymbol = \"BTC-PERP\"\nkinds = \"candle\"\nfast = \"1\"\nslow = \"2\"\n\
             [grants.market-agent]\ncapabilities = [\"market.read:BTC-PERP\"]\n",
            bars.display()
        ),
    )
    .unwrap();
    let json = root.join("report.json");
    let data = root.join("data");
    let out = colony(
        &data,
        &[
            "run",
            "--config",
            config.to_str().unwrap(),
            "--no-progress",
            "--duration",
            "5",
            "--report-json",
            json.to_str().unwrap(),
        ],
    );
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(0), "{err}");
    let line = format!(
        "{}:6: BTC-PERP: low -5 is not positive; record dropped",
        bars.display()
    );
    assert!(err.contains(&line), "no {line:?} in:\n{err}");

    let report: serde_json::Value = serde_json::from_slice(&std::fs::read(&json).unwrap())
        .unwrap_or_else(|e| panic!("JSON report: {e}\n{err}"));
    let feed = &report["feed"];
    assert_eq!(
        (&feed["events"], &feed["issues"], &feed["finished"]),
        (
            &serde_json::json!(9),
            &serde_json::json!(1),
            &serde_json::json!(true)
        ),
        "{report}"
    );
    assert_eq!(feed["agents"][0]["agent"], "market-agent", "{report}");
    assert_eq!(feed["agents"][0]["delivered"], 9, "{report}");

    // What the agent made of what it was handed: the crossings of the good closes.
    let end = |i: u64| t0 + (i + 1) * 60 * SECOND;
    let want: String = [
        (2, "sell", 101),
        (3, "buy", 103),
        (5, "sell", 102),
        (6, "buy", 104),
        (7, "sell", 103),
        (8, "buy", 105),
        (9, "sell", 104),
    ]
    .iter()
    .map(|(i, side, close)| format!("{},{side},{close}\n", end(*i)))
    .collect();
    let journal = tokio::runtime::Runtime::new().unwrap().block_on(async {
        let state = StateStore::open(&data.join("state.db"), Default::default())
            .await
            .unwrap();
        text(&state, "market-agent", "journal").await
    });
    assert_eq!(journal, want);
}
