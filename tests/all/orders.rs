//! Orders through a real wasm agent (`orders-agent`) on the paper exchange: every pre-trade
//! risk check tripped with its reason code, the kill switch (cancel, refuse, reducing), paper
//! fills and fees against values computed here by hand, `orders.*` grants (granted, missing,
//! too narrow; denies audited), and approvals (operator approve, deny, timeout; N-of-M
//! consensus of risk agents over `messaging.gather`).
//!
//! The market is a small JSONL feed: BTC-USDT's book (bids 100 × 1, 99.5 × 2; asks
//! 100.5 × 1, 101 × 2) ten minutes after OLD-USDT's only quote. After the feed has run, the
//! host's virtual clock stands at the book's time, so every order of a test is placed at that
//! instant.

use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use colony_host::audit::{AuditFilter, CapabilityMatch, Decision};
use colony_host::config::HostConfig;
use colony_host::market::feed::FeedSpec;
use colony_host::orders::OrderStatus;
use colony_host::orders::journal::Journal;
use colony_host::orders::risk::{Instruments, RiskLimits};
use colony_host::orders::service::KillMode;
use colony_host::state_store::StateStore;
use colony_tests::{TestHost, guests};
use rust_decimal::Decimal;

const SECOND: u64 = 1_000_000_000;
const T0: u64 = 1_641_081_600 * SECOND;
const ALL: &[&str] = &["orders.place:*", "orders.cancel:*"];

fn d(s: &str) -> Decimal {
    Decimal::from_str(s).unwrap()
}

/// The test market (see the module doc).
fn feed(dir: &Path) -> PathBuf {
    let lines = [
        format!(
            r#"{{"type":"quote","symbol":"OLD-USDT","ts":{T0},"bid":"10","bid_size":"5","ask":"10.5","ask_size":"5"}}"#
        ),
        format!(
            r#"{{"type":"book","symbol":"BTC-USDT","ts":{},"bids":[["100","1"],["99.5","2"]],"asks":[["100.5","1"],["101","2"]]}}"#,
            T0 + 600 * SECOND
        ),
    ];
    let path = dir.join("orders-feed.jsonl");
    std::fs::write(&path, lines.join("\n") + "\n").unwrap();
    path
}

/// A host running `agents` (name, config, grants) of the orders agent on the test market,
/// with the feed already played, after `tweak`.
async fn orders_host(
    agents: &[(&str, &str, &[&str])],
    tweak: impl FnOnce(&mut HostConfig),
) -> (TestHost, StateStore) {
    let feed_dir = tempfile::tempdir().unwrap();
    let file = feed(feed_dir.path());
    let t = TestHost::start_copies(guests::ORDERS_AGENT, agents, move |c| {
        c.feed = Some(FeedSpec::Files(vec![file]));
        // Paper fees: taker 5 bps, maker 2 bps, 100,000 USDT a start.
        tweak(c);
    })
    .await;
    let rejected = t.host.rejected().await;
    assert!(rejected.is_empty(), "{rejected:?}");
    t.host
        .start_feed()
        .expect("the host has a feed")
        .await
        .expect("the feed ends normally");
    t.host.settle().await;
    let state = t.state().await;
    (t, state)
}

async fn text(state: &StateStore, agent: &str, key: &str) -> String {
    state
        .get(agent, key)
        .await
        .unwrap()
        .map(|v| String::from_utf8_lossy(&v).into_owned())
        .unwrap_or_default()
}

/// Sends `command` to the agent's inbox, lets every order event arrive, and returns what the
/// agent stored under `key`.
async fn ask(t: &TestHost, state: &StateStore, agent: &str, command: &str, key: &str) -> String {
    t.host
        .deliver(
            agent,
            colony_tests::message(&format!("agent.{agent}.inbox"), command.as_bytes()),
        )
        .await
        .unwrap_or_else(|e| panic!("{agent} {command}: {e}"));
    t.host.settle().await;
    text(state, agent, key).await
}

/// Places an order and returns the ack (`submitted`, `rejected CODE …`, `err …`).
async fn place(t: &TestHost, state: &StateStore, agent: &str, order: &str) -> String {
    let cid = order.split_whitespace().next().unwrap();
    ask(
        t,
        state,
        agent,
        &format!("place {order}"),
        &format!("ack.{cid}"),
    )
    .await
}

/// The agent's order events for `cid`, one per line, without the client id.
async fn events(state: &StateStore, agent: &str, cid: &str) -> Vec<String> {
    text(state, agent, "events")
        .await
        .lines()
        .filter_map(|l| l.strip_prefix(&format!("{cid} ")).map(str::to_string))
        .collect()
}

fn risk_limits() -> RiskLimits {
    RiskLimits {
        instruments: Some(Instruments::new(["BTC-*", "OLD-*"])),
        tick_size: Some(d("0.5")),
        qty_step: Some(d("0.01")),
        min_qty: Some(d("0.02")),
        max_qty: Some(d("5")),
        max_notional: Some(d("300")),
        price_collar_bps: Some(500),
        max_cancels_per_sec: Some(2),
        max_open_orders: Some(3),
        max_open_notional: Some(d("400")),
        max_position: Some(d("3")),
        max_daily_loss: Some(d("0.5")),
        max_quote_age_ms: Some(60_000),
        ..RiskLimits::default()
    }
}

fn assert_rejected(ack: &str, code: &str) {
    assert!(
        ack.starts_with(&format!("rejected {code} ")),
        "expected {code}, got {ack:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn orders_every_risk_check_trips_with_its_reason_code_through_a_wasm_agent() {
    let names = [
        "shape", "dup", "instr", "prec", "minq", "maxq", "stale", "collar", "notional", "reduce",
        "loser", "poslim", "openord", "opennot", "cancels", "halted",
    ];
    let mut agents: Vec<(&str, &str, &[&str])> = names.iter().map(|n| (*n, "{}", ALL)).collect();
    // Order rate from the agent's grant: two orders a minute.
    agents.push((
        "rater",
        "{}",
        &["orders.place:*;max_orders_per_min=2", "orders.cancel:*"],
    ));
    let (t, s) = orders_host(&agents, |c| c.orders.router.risk = risk_limits()).await;
    let t = &t;
    let s = &s;

    // risk.invalid-order: a limit order without a price.
    assert_rejected(
        &place(t, s, "shape", "a1 BTC-USDT buy limit - 1").await,
        "risk.invalid-order",
    );
    // risk.duplicate-client-id: the same id twice (the first passes and fills at 100.5).
    assert_eq!(
        place(t, s, "dup", "x1 BTC-USDT buy market - 0.02").await,
        "submitted"
    );
    assert_rejected(
        &place(t, s, "dup", "x1 BTC-USDT buy market - 0.02").await,
        "risk.duplicate-client-id",
    );
    // risk.instrument: ETH is not in the instrument list.
    assert_rejected(
        &place(t, s, "instr", "i1 ETH-USDT buy limit 100 1").await,
        "risk.instrument",
    );
    // risk.precision: 100.25 is not a multiple of the 0.5 tick; 0.015 not of the 0.01 step.
    assert_rejected(
        &place(t, s, "prec", "p1 BTC-USDT buy limit 100.25 1").await,
        "risk.precision",
    );
    assert_rejected(
        &place(t, s, "prec", "p2 BTC-USDT buy limit 100 0.015").await,
        "risk.precision",
    );
    // risk.min-qty / risk.max-qty.
    assert_rejected(
        &place(t, s, "minq", "m1 BTC-USDT buy limit 99 0.01").await,
        "risk.min-qty",
    );
    assert_rejected(
        &place(t, s, "maxq", "m2 BTC-USDT buy limit 99 6").await,
        "risk.max-qty",
    );
    // risk.stale-data: OLD-USDT's only quote is 600 s older than the clock (limit 60 s).
    assert_rejected(
        &place(t, s, "stale", "s1 OLD-USDT buy market - 1").await,
        "risk.stale-data",
    );
    // risk.price-collar: 120 is 19.4 % above the 100.5 ask (collar 5 %).
    assert_rejected(
        &place(t, s, "collar", "c1 BTC-USDT buy limit 120 1").await,
        "risk.price-collar",
    );
    // risk.max-notional: 4 × 99 = 396 > 300.
    assert_rejected(
        &place(t, s, "notional", "n1 BTC-USDT buy limit 99 4").await,
        "risk.max-notional",
    );
    // risk.reducing-only: reduce-only with no position.
    assert_rejected(
        &place(t, s, "reduce", "r1 BTC-USDT sell market - 1 ioc reduce").await,
        "risk.reducing-only",
    );
    // risk.daily-loss: buy 1 at 100.5, sell 1 at 100: −0.5 and fees 0.05025 + 0.05 realised,
    // −0.60025 ≤ −0.5. Reducing orders still pass; new risk does not.
    assert_eq!(
        place(t, s, "loser", "l1 BTC-USDT buy market - 1").await,
        "submitted"
    );
    assert_eq!(
        place(t, s, "loser", "l2 BTC-USDT sell market - 1").await,
        "submitted"
    );
    assert_eq!(
        ask(t, s, "loser", "position BTC-USDT", "position.BTC-USDT").await,
        "0 0 -0.5 0 0.10025"
    );
    assert_rejected(
        &place(t, s, "loser", "l3 BTC-USDT buy market - 0.1").await,
        "risk.daily-loss",
    );
    // risk.position-limit: 2 resting at 99, then 2 more: 4 > 3 on the buy side.
    assert_eq!(
        place(t, s, "poslim", "q1 BTC-USDT buy limit 99 2").await,
        "submitted"
    );
    assert_rejected(
        &place(t, s, "poslim", "q2 BTC-USDT buy limit 99 2").await,
        "risk.position-limit",
    );
    // risk.max-open-orders: three resting, the fourth refused.
    for cid in ["o1", "o2", "o3"] {
        let order = format!("{cid} BTC-USDT buy limit 96 0.02");
        assert_eq!(place(t, s, "openord", &order).await, "submitted");
    }
    assert_rejected(
        &place(t, s, "openord", "o4 BTC-USDT buy limit 96 0.02").await,
        "risk.max-open-orders",
    );
    // risk.max-open-notional: 2.5 × 99 = 247.5 resting, then 2.5 × 102 = 255: 502.5 > 400.
    assert_eq!(
        place(t, s, "opennot", "v1 BTC-USDT buy limit 99 2.5").await,
        "submitted"
    );
    assert_rejected(
        &place(t, s, "opennot", "v2 BTC-USDT sell limit 102 2.5").await,
        "risk.max-open-notional",
    );
    // risk.order-rate: the grant allows two orders a minute.
    assert_eq!(
        place(t, s, "rater", "g1 BTC-USDT buy limit 96 0.02").await,
        "submitted"
    );
    assert_eq!(
        place(t, s, "rater", "g2 BTC-USDT buy limit 96 0.02").await,
        "submitted"
    );
    assert_rejected(
        &place(t, s, "rater", "g3 BTC-USDT buy limit 96 0.02").await,
        "risk.order-rate",
    );
    // risk.cancel-rate: two cancels a second; the third is limit-exceeded.
    for cid in ["k1", "k2", "k3"] {
        let order = format!("{cid} BTC-USDT buy limit 96 0.02");
        assert_eq!(place(t, s, "cancels", &order).await, "submitted");
    }
    for cid in ["k1", "k2"] {
        let key = format!("cancel.{cid}");
        assert_eq!(
            ask(t, s, "cancels", &format!("cancel {cid}"), &key).await,
            "ok"
        );
    }
    let third = ask(t, s, "cancels", "cancel k3", "cancel.k3").await;
    assert!(
        third.starts_with("err limit-exceeded risk.cancel-rate"),
        "{third}"
    );
    // risk.halted: a trading halt for this agent.
    t.host
        .orders()
        .unwrap()
        .kill_switch(Some("halted"), KillMode::Halt, 0);
    assert_rejected(
        &place(t, s, "halted", "h1 BTC-USDT buy limit 99 1").await,
        "risk.halted",
    );

    // Every refusal was delivered as a `rejected` event too, with the code.
    assert_eq!(
        events(s, "collar", "c1").await,
        ["rejected 0 - - risk.price-collar"]
    );
    // And counted once per code.
    let rejections = t.host.orders().unwrap().rejections();
    for code in [
        "risk.invalid-order",
        "risk.duplicate-client-id",
        "risk.instrument",
        "risk.min-qty",
        "risk.max-qty",
        "risk.stale-data",
        "risk.price-collar",
        "risk.max-notional",
        "risk.reducing-only",
        "risk.daily-loss",
        "risk.position-limit",
        "risk.max-open-orders",
        "risk.max-open-notional",
        "risk.order-rate",
        "risk.cancel-rate",
        "risk.halted",
    ] {
        assert!(rejections[code] >= 1, "{code}: {rejections:?}");
    }
    assert_eq!(rejections["risk.precision"], 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn orders_paper_fills_fees_and_pnl_match_hand_computed_values() {
    let (t, s) = orders_host(&[("trader", "{}", ALL)], |_| {}).await;
    let (t, s) = (&t, &s);

    // Market buy 1.5: walks the asks, 1 at 100.5 then 0.5 at 101.
    // avg = (100.5 + 50.5) / 1.5 = 100.666…; taker fees 5 bps: 0.05025 + 0.02525.
    assert_eq!(
        place(t, s, "trader", "b1 BTC-USDT buy market - 1.5").await,
        "submitted"
    );
    let ev = events(s, "trader", "b1").await;
    assert_eq!(ev.len(), 3, "{ev:?}");
    assert_eq!(ev[0], "accepted 0 - - -");
    assert_eq!(ev[1], "partially-filled 1 100.5 1@100.5/0.05025 -");
    assert!(ev[2].starts_with("filled 1.5 100.66666"), "{ev:?}");
    assert!(ev[2].ends_with(" 0.5@101/0.02525 -"), "{ev:?}");

    // Mark = mid of the book = 100.25: unrealised = 1.5 × 100.25 − 151 = −0.625.
    let pos = ask(t, s, "trader", "position BTC-USDT", "position.BTC-USDT").await;
    let f: Vec<&str> = pos.split(' ').collect();
    assert_eq!(f[0], "1.5");
    assert!(f[1].starts_with("100.66666"), "{pos}");
    assert_eq!((f[2], f[3], f[4]), ("0", "-0.625", "0.0755"), "{pos}");

    // Market sell 2 (a flip): 1 at 100, 1 at 99.5. The first 1.5 close the long:
    // 1 × (100 − 100.666…) + 0.5 × (99.5 − 100.666…) = −1.25; 0.5 short opens at 99.5.
    // Taker fees: 0.05 + 0.04975.
    assert_eq!(
        place(t, s, "trader", "s1 BTC-USDT sell market - 2").await,
        "submitted"
    );
    let pos = ask(t, s, "trader", "position BTC-USDT", "position.BTC-USDT").await;
    assert_eq!(pos, "-0.5 99.5 -1.25 -0.375 0.17525", "{pos}");
    // Cash = 100,000 − 1.25 − 0.17525.
    assert_eq!(
        ask(t, s, "trader", "balances", "balances").await,
        "USDT 99998.57475"
    );

    // A limit buy at 99 rests (post-only, below the ask), then can be cancelled.
    assert_eq!(
        place(t, s, "trader", "r1 BTC-USDT buy limit 99 0.3 gtc post").await,
        "submitted"
    );
    assert_eq!(
        ask(t, s, "trader", "open", "open").await,
        "r1 BTC-USDT buy 0.3 0 accepted"
    );
    // Post-only that would take is refused by the venue.
    assert_eq!(
        place(t, s, "trader", "r2 BTC-USDT buy limit 100.5 0.3 gtc post").await,
        "submitted"
    );
    assert_eq!(
        events(s, "trader", "r2").await.last().unwrap(),
        "rejected 0 - - venue.post-only"
    );
    // A sell that would cross the agent's own resting bid is a self-match.
    assert_eq!(
        place(t, s, "trader", "x1 BTC-USDT sell limit 99 0.1").await,
        "submitted"
    );
    assert_eq!(
        events(s, "trader", "x1").await.last().unwrap(),
        "rejected 0 - - venue.self-match"
    );
    assert_eq!(ask(t, s, "trader", "cancel r1", "cancel.r1").await, "ok");
    assert_eq!(
        events(s, "trader", "r1").await.last().unwrap(),
        "cancelled 0 - - -"
    );
    assert_eq!(ask(t, s, "trader", "open", "open").await, "");
    // Cancelling it again: not working.
    let again = ask(t, s, "trader", "cancel r1", "cancel.r1").await;
    assert!(again.starts_with("err not-found"), "{again}");

    // IOC beyond the book: 3 at ≤ 101 takes 1 + 2, FOK for 4 cannot fill: nothing.
    assert_eq!(
        place(t, s, "trader", "f1 BTC-USDT buy limit 101 4 fok").await,
        "submitted"
    );
    let ev = events(s, "trader", "f1").await;
    assert_eq!(ev.last().unwrap(), "cancelled 0 - - -", "{ev:?}");

    // The journal, written behind the paper exchange, has the same orders and fills.
    let orders = t.host.orders().unwrap();
    assert!(orders.flush_journal(Duration::from_secs(10)).await);
    let url = format!("sqlite://{}", t.dir.path().join("data/orders.db").display());
    let journal = Journal::open(&url).await.unwrap();
    let b1 = journal.order("trader", "b1").await.unwrap().unwrap();
    assert!(b1.venue.starts_with("paper@"), "{}", b1.venue);
    assert_eq!(b1.state.status, OrderStatus::Filled);
    assert_eq!(
        (b1.state.filled_qty, b1.state.fees),
        (d("1.5"), d("0.0755"))
    );
    let r2 = journal.order("trader", "r2").await.unwrap().unwrap();
    assert_eq!(r2.state.reject_code.as_deref(), Some("venue.post-only"));
    // b1 and s1 filled in two parts each; nothing else filled.
    let fills = journal.fills(Some("trader"), 100).await.unwrap();
    assert_eq!(fills.len(), 4, "{fills:?}");
    let total: Decimal = fills.iter().map(|f| f.fill.fee).sum();
    assert_eq!(total, d("0.17525"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn orders_kill_switch_cancels_refuses_and_allows_reducing_orders() {
    let (t, s) = orders_host(&[("trader", "{}", ALL), ("other", "{}", ALL)], |_| {}).await;
    let (t, s) = (&t, &s);
    let orders = t.host.orders().unwrap().clone();

    // A long position of 1 and two working orders.
    assert_eq!(
        place(t, s, "trader", "b1 BTC-USDT buy market - 1").await,
        "submitted"
    );
    assert_eq!(
        place(t, s, "trader", "w1 BTC-USDT buy limit 98 0.5").await,
        "submitted"
    );
    assert_eq!(
        place(t, s, "trader", "w2 BTC-USDT sell limit 105 0.5").await,
        "submitted"
    );
    assert_eq!(
        place(t, s, "other", "o1 BTC-USDT buy limit 98 0.5").await,
        "submitted"
    );

    // On for `trader`: its working orders are cancelled, new ones refused; `other` trades on.
    assert_eq!(orders.kill_switch(Some("trader"), KillMode::On, 0), 2);
    t.host.settle().await;
    assert_eq!(
        events(s, "trader", "w1").await.last().unwrap(),
        "cancelled 0 - - -"
    );
    assert_eq!(
        events(s, "trader", "w2").await.last().unwrap(),
        "cancelled 0 - - -"
    );
    assert_eq!(ask(t, s, "trader", "open", "open").await, "");
    assert_rejected(
        &place(t, s, "trader", "n1 BTC-USDT sell market - 0.5").await,
        "risk.kill-switch",
    );
    assert_eq!(
        ask(t, s, "other", "open", "open").await,
        "o1 BTC-USDT buy 0.5 0 accepted"
    );

    // Reducing: selling part of the long passes, adding to it does not.
    orders.kill_switch(Some("trader"), KillMode::Reducing, 0);
    assert_eq!(
        place(t, s, "trader", "n2 BTC-USDT sell market - 0.5").await,
        "submitted"
    );
    assert_rejected(
        &place(t, s, "trader", "n3 BTC-USDT buy market - 0.1").await,
        "risk.reducing-only",
    );
    assert_eq!(
        ask(t, s, "trader", "position BTC-USDT", "position.BTC-USDT")
            .await
            .split(' ')
            .next(),
        Some("0.5")
    );

    // Global on: `other`'s working order is cancelled too; off resumes.
    assert_eq!(orders.kill_switch(None, KillMode::On, 0), 1);
    assert_rejected(
        &place(t, s, "other", "o2 BTC-USDT buy limit 98 0.5").await,
        "risk.kill-switch",
    );
    orders.kill_switch(None, KillMode::Off, 0);
    orders.kill_switch(Some("trader"), KillMode::Off, 0);
    assert_eq!(
        place(t, s, "other", "o3 BTC-USDT buy limit 98 0.5").await,
        "submitted"
    );
    assert_eq!(
        place(t, s, "trader", "n4 BTC-USDT buy market - 0.1").await,
        "submitted"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn orders_need_grants_for_the_symbol_and_size_and_denies_are_audited() {
    let (t, s) = orders_host(
        &[
            ("nogrant", "{}", &[]),
            ("ethonly", "{}", &["orders.place:ETH-*"]),
            ("small", "{}", &["orders.place:BTC-*;max_qty=0.5"]),
        ],
        |_| {},
    )
    .await;
    let (t, s) = (&t, &s);
    let ack = place(t, s, "nogrant", "a1 BTC-USDT buy market - 0.1").await;
    assert!(
        ack.starts_with("err denied needs orders.place:BTC-USDT"),
        "{ack}"
    );
    let ack = place(t, s, "ethonly", "a1 BTC-USDT buy market - 0.1").await;
    assert!(
        ack.starts_with("err denied needs orders.place:BTC-USDT"),
        "{ack}"
    );
    // Within the grant's size: passes; above it: denied, naming the limit.
    assert_eq!(
        place(t, s, "small", "a1 BTC-USDT buy limit 99 0.5").await,
        "submitted"
    );
    let ack = place(t, s, "small", "a2 BTC-USDT buy limit 99 0.6").await;
    assert!(ack.starts_with("err denied"), "{ack}");
    assert!(ack.contains("max_qty"), "{ack}");
    // Cancelling needs orders.cancel.
    let c = ask(t, s, "small", "cancel a1", "cancel.a1").await;
    assert!(
        c.starts_with("err denied needs orders.cancel:BTC-USDT"),
        "{c}"
    );
    // A malformed client id never reaches risk.
    let ack = place(t, s, "small", "bad-id BTC-USDT buy limit 99 0.1").await;
    assert!(ack.starts_with("err invalid-argument client-id"), "{ack}");

    // The denies are in the audit.
    t.host.audit().writer().flush().await.unwrap();
    for (plugin, cap) in [
        ("nogrant", "orders.place:BTC-USDT"),
        ("ethonly", "orders.place:BTC-USDT"),
        ("small", "orders.cancel:BTC-USDT"),
    ] {
        let rows = t
            .host
            .audit()
            .query(&AuditFilter {
                plugin: Some(plugin.into()),
                capability: Some(CapabilityMatch::parse(cap)),
                decision: Some(Decision::Deny),
                ..AuditFilter::default()
            })
            .await
            .unwrap();
        assert_eq!(rows.len(), 1, "{plugin} {cap}: {rows:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn orders_above_the_approval_notional_wait_for_an_operator() {
    let (t, s) = orders_host(&[("trader", "{}", ALL)], |c| {
        c.orders.router.approval_notional = Some(d("150"));
        c.orders.router.approval_timeout = Duration::from_millis(300);
    })
    .await;
    let (t, s) = (&t, &s);
    let orders = t.host.orders().unwrap().clone();

    // Below the threshold: straight through. 2 × 100 = 200 ≥ 150: waits.
    assert_eq!(
        place(t, s, "trader", "a1 BTC-USDT buy limit 99 1").await,
        "submitted"
    );
    assert_eq!(
        place(t, s, "trader", "a2 BTC-USDT buy limit 99 2").await,
        "pending"
    );
    assert_eq!(
        place(t, s, "trader", "a3 BTC-USDT buy limit 98 2").await,
        "pending"
    );
    let waiting = orders.approvals();
    assert_eq!(waiting.len(), 2, "{waiting:?}");
    assert_eq!(
        (
            waiting[0].client_id.as_str(),
            waiting[0].notional.as_str(),
            waiting[0].via
        ),
        ("a2", "198", "operator")
    );
    // Approve a2 (it rests), deny a3.
    t.host
        .decide_approval(&waiting[0].id.to_string(), true, "test")
        .await
        .unwrap();
    t.host
        .decide_approval(&waiting[1].id.to_string(), false, "test")
        .await
        .unwrap();
    t.host.settle().await;
    assert_eq!(events(s, "trader", "a2").await, ["accepted 0 - - -"]);
    assert_eq!(
        events(s, "trader", "a3").await,
        ["rejected 0 - - approval.denied"]
    );
    assert!(t.host.decide_approval("999", true, "test").await.is_err());

    // Nobody answers: denied at the timeout.
    assert_eq!(
        place(t, s, "trader", "a4 BTC-USDT buy limit 97 2").await,
        "pending"
    );
    tokio::time::sleep(Duration::from_millis(600)).await;
    t.host.settle().await;
    assert_eq!(
        events(s, "trader", "a4").await,
        ["rejected 0 - - approval.timeout"]
    );
    assert!(orders.approvals().is_empty());
}

/// A host whose orders at or above 150 of notional need 2 of 3 risk agents (bus agents
/// answering `answers` on `risk.approve`); places one such order and returns its events.
async fn consensus(answers: [&str; 3]) -> Vec<String> {
    let feed_dir = tempfile::tempdir().unwrap();
    let file = feed(feed_dir.path());
    let t = TestHost::start_with(
        &[
            (guests::ORDERS_AGENT, "trader.wasm"),
            (guests::BUS_AGENT, "risk-a.wasm"),
            (guests::BUS_AGENT, "risk-b.wasm"),
            (guests::BUS_AGENT, "risk-c.wasm"),
        ],
        |c| {
            c.feed = Some(FeedSpec::Files(vec![file]));
            c.orders.router.approval_notional = Some(d("150"));
            c.orders.router.consensus = Some(colony_host::orders::service::Consensus {
                subject: "risk.approve".into(),
                quorum: 2,
                voters: 3,
                timeout: Duration::from_secs(5),
            });
            let grant = |caps: &[&str]| colony_host::config::ConfigGrant {
                capabilities: caps.iter().map(|c| c.to_string()).collect(),
                digest: None,
            };
            c.grants.insert("trader".into(), grant(ALL));
            for (name, answer) in ["risk-a", "risk-b", "risk-c"].iter().zip(answers) {
                c.agent_config.insert(
                    name.to_string(),
                    format!(r#"{{"subscribe":["risk.approve"],"answer":"{answer}"}}"#),
                );
                c.grants.insert(
                    name.to_string(),
                    grant(&["messaging.subscribe:risk.approve"]),
                );
            }
        },
    )
    .await;
    let rejected = t.host.rejected().await;
    assert!(rejected.is_empty(), "{rejected:?}");
    t.host.start_feed().unwrap().await.unwrap();
    t.host.settle().await;
    let s = t.state().await;
    assert_eq!(
        place(&t, &s, "trader", "c1 BTC-USDT buy limit 99 2").await,
        "pending"
    );
    let orders = t.host.orders().unwrap().clone();
    t.eventually("the risk agents decide", || {
        let orders = orders.clone();
        async move { orders.approvals().is_empty() }
    })
    .await;
    t.host.settle().await;
    events(&s, "trader", "c1").await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn orders_above_the_threshold_need_n_of_m_risk_agents() {
    assert_eq!(
        consensus(["approve", "deny", "approve"]).await,
        ["accepted 0 - - -"]
    );
    assert_eq!(
        consensus(["deny", "approve", "deny"]).await,
        ["rejected 0 - - approval.consensus"]
    );
}

/// The operator's side through the real binary: `colony orders list`, `colony approvals`,
/// `colony orders kill-switch` against a running `colony run`, the status lines, and
/// `colony orders list` reading the journal once the host is gone.
#[test]
fn orders_cli_lists_approves_and_kills_through_a_running_host() {
    use crate::support::{Running, colony, stderr, stdout};
    let root = tempfile::tempdir().unwrap();
    let plugins = root.path().join("plugins");
    std::fs::create_dir_all(&plugins).unwrap();
    colony_tests::install(&plugins, guests::ORDERS_AGENT, "trader.wasm");
    let feed_file = feed(root.path());
    // A 5 s event deadline: a place waits for nothing but the router, yet the CI machine is
    // shared and loaded.
    let toml = format!(
        "plugins = \"plugins\"\ntick_ms = 0\n[limits.agent]\ncpu_ms = 5000\n\
         [market]\nfeed = \"replay:{}\"\n[orders]\napproval_notional = \"150\"\n\
         [grants.trader]\ncapabilities = [\"orders.place:*\", \"orders.cancel:*\"]\n",
        feed_file.display()
    );
    let config = root.path().join("colony.toml");
    std::fs::write(&config, toml).unwrap();
    let data = root.path().join("data");
    let child = std::process::Command::new(crate::support::COLONY)
        .arg("--data-dir")
        .arg(&data)
        .args(["run", "--config"])
        .arg(&config)
        .env("COLONY_LOG", "warn")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let host = Running(child);
    let json = |args: &[&str]| -> serde_json::Value {
        let out = colony(&data, args);
        assert!(out.status.success(), "{args:?}: {}", stderr(&out));
        serde_json::from_str(&stdout(&out)).unwrap()
    };
    let wait = |what: &str, ok: &mut dyn FnMut() -> bool| {
        let deadline = std::time::Instant::now() + Duration::from_secs(60);
        while !ok() {
            assert!(std::time::Instant::now() < deadline, "timed out: {what}");
            std::thread::sleep(Duration::from_millis(50));
        }
    };
    wait("the host", &mut || {
        colony(&data, &["status"]).status.success()
    });
    // The replay (two events) has run once the book is there.
    wait("the market", &mut || {
        json(&["status", "--json"])["market"]["published"].as_u64() == Some(2)
    });
    let send = |text: &str| {
        let out = colony(&data, &["bus", "pub", "agent.trader.inbox", text]);
        assert!(out.status.success(), "{}", stderr(&out));
    };

    send("place b1 BTC-USDT buy market - 1");
    send("place r1 BTC-USDT buy limit 99 1");
    send("place a2 BTC-USDT buy limit 99 2");
    wait("the orders", &mut || {
        let v = json(&["orders", "list", "--json"]);
        v["open"].as_array().map(Vec::len) == Some(1)
            && v["approvals"].as_array().map(Vec::len) == Some(1)
    });
    let v = json(&["orders", "list", "--json"]);
    assert_eq!(v["venue"], "paper");
    assert_eq!(v["open"][0]["client_id"], "r1");
    assert_eq!(v["fills"][0]["price"], "100.5");
    assert_eq!(v["fills"][0]["fee"], "0.05025");
    assert_eq!(v["positions"][0]["qty"], "1");
    // 100,000 − 0.05025 cash; equity at the 100.25 mid: −0.25 unrealised.
    assert_eq!(v["accounts"][0]["cash"], "99999.94975");
    assert_eq!(v["accounts"][0]["equity"], "99999.69975");
    let text = stdout(&colony(&data, &["orders", "list"]));
    assert!(
        text.contains("open orders:") && text.contains("r1"),
        "{text}"
    );
    // Each table has its header; times are UTC with milliseconds.
    for header in [
        ["time (UTC)", "agent", "client id", "symbol"],
        ["agent", "cash", "equity", "pnl"],
    ] {
        assert!(
            text.lines().any(|l| {
                let cells: Vec<&str> = l
                    .split("  ")
                    .map(str::trim)
                    .filter(|c| !c.is_empty())
                    .collect();
                cells.starts_with(&header)
            }),
            "{header:?}: {text}"
        );
    }
    let r1 = text
        .lines()
        .find(|l| l.contains(" r1 "))
        .unwrap_or_else(|| panic!("{text}"));
    let time = r1.split_whitespace().next().unwrap();
    assert!(
        time.len() == 24 && time.ends_with('Z') && time.contains('T'),
        "{r1}"
    );

    // The approval queue: a2 (notional 198) waits; deny it.
    let waiting = json(&["approvals", "list", "--json"]);
    assert_eq!(waiting[0]["client_id"], "a2");
    let id = waiting[0]["id"].to_string();
    let out = colony(&data, &["approvals", "deny", &id]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(
        json(&["approvals", "list", "--json"]),
        serde_json::json!([])
    );
    let out = colony(&data, &["approvals", "approve", &id]);
    assert!(
        !out.status.success(),
        "a decided approval cannot be approved"
    );

    // The kill switch cancels r1, is shown by status, and is kept for the next start.
    let out = colony(&data, &["orders", "kill-switch", "on"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stdout(&out).contains("1 working orders cancelled"),
        "{}",
        stdout(&out)
    );
    let status = stdout(&colony(&data, &["status"]));
    assert!(status.contains("kill switch on for *"), "{status}");
    assert!(status.contains("orders on paper:"), "{status}");
    assert!(data.join("kill-switch.json").exists());
    let bad = colony(&data, &["orders", "kill-switch", "maybe"]);
    assert_eq!(bad.status.code(), Some(3), "{}", stderr(&bad));
    send("place b2 BTC-USDT buy market - 1");
    wait("b2 refused", &mut || {
        let v = json(&["orders", "list", "--json"]);
        v["recent"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|o| o["client_id"] == "b2" && o["reject_code"] == "risk.kill-switch")
    });
    let v = json(&["orders", "list", "--json"]);
    assert_eq!(v["rejections"]["risk.kill-switch"], 1);
    let recent: Vec<(String, String)> = v["recent"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| {
            (
                o["client_id"].as_str().unwrap().to_string(),
                o["status"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    for want in [("b1", "filled"), ("a2", "rejected"), ("r1", "cancelled")] {
        assert!(
            recent.contains(&(want.0.to_string(), want.1.to_string())),
            "{want:?} in {recent:?}"
        );
    }

    // Without the host, the list comes from the journal, written behind the exchange: wait
    // until it has caught up (r1 cancelled), then stop the host.
    let url = format!("sqlite://{}", data.join("orders.db").display());
    tokio::runtime::Runtime::new().unwrap().block_on(async {
        let journal = Journal::open(&url).await.unwrap();
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        loop {
            let r1 = journal.order("trader", "r1").await.unwrap();
            if r1.is_some_and(|o| o.state.status == OrderStatus::Cancelled) {
                break;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "journal did not catch up"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    });
    drop(host);
    let out = colony(&data, &["orders", "list", "--json"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let v: serde_json::Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(v["source"], "journal");
    let ids: Vec<&str> = v["orders"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| o["client_id"].as_str().unwrap())
        .collect();
    // Orders refused before the venue (b2 by risk, a2 by the operator) are not journaled:
    // they are in the audit, the counters and the agent's events.
    assert_eq!(ids.len(), 2, "{ids:?}");
    for id in ["b1", "r1"] {
        assert!(ids.contains(&id), "{id} in {ids:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn orders_a_grant_change_changes_the_agents_own_risk_limits_at_once() {
    let (t, s) = orders_host(
        &[("trader", "{}", &["orders.place:*;max_orders_per_min=1"])],
        |_| {},
    )
    .await;
    let (t, s) = (&t, &s);
    assert_eq!(
        place(t, s, "trader", "g1 BTC-USDT buy limit 96 0.1").await,
        "submitted"
    );
    assert_rejected(
        &place(t, s, "trader", "g2 BTC-USDT buy limit 96 0.1").await,
        "risk.order-rate",
    );
    t.host
        .grant("trader", "orders.place:*;max_orders_per_min=5", "test")
        .await
        .unwrap();
    t.host
        .revoke("trader", "orders.place:*;max_orders_per_min=1", "test")
        .await
        .unwrap();
    assert_eq!(
        place(t, s, "trader", "g3 BTC-USDT buy limit 96 0.1").await,
        "submitted"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn orders_a_quarantined_agent_has_its_working_orders_cancelled() {
    // No restarts allowed: the first failure quarantines. The agent's second event runs out
    // of fuel (fault injection), after its first placed a resting order.
    let (t, s) = orders_host(&[("flaky", "{}", ALL), ("steady", "{}", ALL)], |c| {
        c.supervision.max_restarts = 0;
        c.inject_trap = Some(("flaky".into(), 1));
    })
    .await;
    let orders = t.host.orders().unwrap().clone();
    assert_eq!(
        place(&t, &s, "steady", "s1 BTC-USDT buy limit 98 0.5").await,
        "submitted"
    );
    // The place command is event 1; its order event (or the next command) is event 2 and traps.
    let _ = t
        .host
        .deliver(
            "flaky",
            colony_tests::message("agent.flaky.inbox", b"place w1 BTC-USDT buy limit 98 0.5"),
        )
        .await;
    let _ = t
        .host
        .deliver("flaky", colony_tests::message("agent.flaky.inbox", b"open"))
        .await;
    t.host.settle().await;
    let flaky = t
        .host
        .plugins()
        .await
        .into_iter()
        .find(|p| p.info.name == "flaky")
        .unwrap();
    assert_eq!(flaky.state, "quarantined", "{flaky:?}");
    assert!(
        orders.open_orders("flaky").is_empty(),
        "its order was cancelled"
    );
    let w1 = orders
        .report()
        .recent
        .into_iter()
        .find(|o| o.client_id == "w1")
        .expect("w1 was placed");
    assert_eq!(w1.status, "cancelled");
    // The other agent's order is untouched.
    assert_eq!(orders.open_orders("steady").len(), 1);
    let lifecycle = t.audited("lifecycle", Some("flaky")).await;
    assert!(
        lifecycle.iter().any(|e| e.detail.contains("-> quarantined")
            && e.detail.contains("1 working orders cancelled")),
        "{lifecycle:?}"
    );
}

/// The agent's counters as `colony status` shows them.
async fn status_of(t: &TestHost, agent: &str) -> colony_host::supervisor::PluginStatus {
    t.host
        .plugins()
        .await
        .into_iter()
        .find(|p| p.info.name == agent)
        .unwrap_or_else(|| panic!("{agent} is not loaded"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn orders_an_order_event_whose_handler_fails_once_is_redelivered_to_the_new_instance() {
    // The agent traps on m1's first order event (`accepted`); m1 filled at once.
    let (t, s) = orders_host(&[("flaky", r#"{"trap_on_order":"m1"}"#, ALL)], |_| {}).await;
    let (t, s) = (&t, &s);
    assert_eq!(
        place(t, s, "flaky", "m1 BTC-USDT buy market - 0.5").await,
        "submitted"
    );
    // A direct event waits for the restart: the new instance gets the recovery notice, then
    // the failed event, then this, then what was queued meanwhile (the `filled` event).
    let open = ask(t, s, "flaky", "open", "open").await;
    assert_eq!(open, "", "m1 filled");
    let ev = events(s, "flaky", "m1").await;
    assert_eq!(ev.len(), 2, "{ev:?}");
    assert_eq!(ev[0], "accepted 0 - - -", "the failed event, redelivered");
    assert!(ev[1].starts_with("filled 0.5 100.5"), "{ev:?}");
    let notice = text(s, "flaky", "recovery").await;
    for line in [
        "x-restart=1",
        "x-failed-call=on-order",
        "x-redelivered=true",
        // The place command ran after the start's recovery point and its effects (its
        // memory) are lost: one event missed; the failed one is redelivered, not missed.
        "x-missed-events=1",
    ] {
        assert!(
            notice.lines().any(|l| l == line),
            "{line} not in {notice:?}"
        );
    }
    let st = status_of(t, "flaky").await;
    assert_eq!(
        (st.restarts, st.failed, st.redelivered, st.state.as_str()),
        (1, 1, 1, "idle"),
        "{st:?}"
    );
    assert!(st.snapshots > 0, "recovery snapshots were taken: {st:?}");
    assert_eq!(t.host.bus().stats().dead_letters, 0);
    let lifecycle = t.audited("lifecycle", Some("flaky")).await;
    assert!(
        lifecycle
            .iter()
            .any(|e| e.detail.contains("the failed order event is redelivered")),
        "{lifecycle:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn orders_an_order_event_whose_handler_fails_again_on_redelivery_is_dead_lettered() {
    let (t, s) = orders_host(
        &[("flaky", r#"{"always_trap_on_order":"m1"}"#, ALL)],
        |_| {},
    )
    .await;
    let (t, s) = (&t, &s);
    let dead = t.host.bus().mailbox("test", 16);
    t.host
        .bus()
        .subscribe("test", "_DEAD.agent.flaky.orders", &dead)
        .unwrap();
    assert_eq!(
        place(t, s, "flaky", "m1 BTC-USDT buy market - 0.5").await,
        "submitted"
    );
    // m1's two events each fail twice (first delivery, redelivery): 4 failures, 2 dead
    // letters, after restarts at 100, 200, 400 and 800 ms.
    let mut letters = Vec::new();
    let until = std::time::Instant::now() + Duration::from_secs(20);
    while letters.len() < 2 && std::time::Instant::now() < until {
        match tokio::time::timeout(Duration::from_millis(200), dead.recv()).await {
            Ok(Some(env)) => letters.push(env),
            _ => continue,
        }
    }
    assert_eq!(letters.len(), 2, "two dead letters");
    for env in &letters {
        assert_eq!(env.header("x-dead-reason"), Some("handler-failed"));
        let order = env.order().expect("the order event travels with it");
        assert_eq!(order.report.client_id, "m1");
    }
    // The agent goes on: it was not quarantined (4 failures ≤ 5).
    let _ = ask(t, s, "flaky", "open", "open").await;
    let st = status_of(t, "flaky").await;
    assert_eq!(
        (st.restarts, st.failed, st.redelivered, st.state.as_str()),
        (4, 4, 2, "idle"),
        "{st:?}"
    );
    assert!(events(s, "flaky", "m1").await.is_empty());
}

/// A host with no `[orders.risk]`: what the trading-safety review found accepted (a quantity
/// of i64::MAX, a price of i64::MAX, a market order for 1,000,000, an unknown symbol, 3,000
/// place + cancel pairs in one event) is refused by the default limits and the
/// known-instrument rule, through a wasm agent granted `orders.place:*`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn default_limits_trip_on_a_host_without_risk_configuration() {
    // No risk configuration; CPU time enough for 3,000 host calls in one event of a debug
    // build on a loaded machine.
    let (t, state) = orders_host(&[("fat", "{}", ALL)], |c| {
        c.agent_limits.cpu_ms = 20_000;
        c.agent_limits.hang_guard_ms = 60_000;
    })
    .await;
    // `colony status` shows the defaults in force as such.
    let status = t.host.orders().unwrap().status();
    let notional = status.limits.iter().find(|l| l.key == "max_notional");
    assert_eq!(
        notional.map(|l| (l.value.as_str(), l.source)),
        Some(("1000000", "default")),
        "{:?}",
        status.limits
    );
    assert!(status.require_known_instruments);
    let cases = [
        (
            "f1 BTC-USDT buy limit 100 9223372036854775807",
            "risk.max-qty",
        ),
        (
            "f2 BTC-USDT buy limit 9223372036854775807 1",
            "risk.price-collar",
        ),
        ("f3 BTC-USDT buy market - 1000000", "risk.max-qty"),
        // 50,000 at the ask (100.5): 5,025,000, over the default 1,000,000.
        ("f4 BTC-USDT buy market - 50000", "risk.max-notional"),
        ("f5 NOPE-XXX buy limit 100 1", "risk.unknown-instrument"),
    ];
    for (order, code) in cases {
        let ack = place(&t, &state, "fat", order).await;
        assert!(
            ack.starts_with(&format!("rejected {code} ")),
            "{order}: {ack}"
        );
    }
    // Inside every default: submitted (and resting: the ask is 100.5).
    assert_eq!(
        place(&t, &state, "fat", "ok1 BTC-USDT buy limit 100 1").await,
        "submitted"
    );
    assert_eq!(
        ask(&t, &state, "fat", "cancel ok1", "cancel.ok1").await,
        "ok"
    );
    // 3,000 place + cancel pairs in one event (one instant of the replay clock): 20 orders a
    // second (ok1 was one of them).
    let burst = ask(&t, &state, "fat", "burst 3000 BTC-USDT 100 0.01", "burst").await;
    assert_eq!(
        burst,
        "cancel ok=19, place rejected risk.order-rate=2981, place submitted=19"
    );
    // Cancels: 20 a second. 20 orders rest in each of the next two seconds, then all 40 are
    // cancelled in a third.
    let now = t.host.clock().now_ns();
    for (s, key) in [(1, "burst"), (2, "burst")] {
        t.host.clock().set(now + s * SECOND);
        let placed = ask(&t, &state, "fat", "burst 20 BTC-USDT 100 0.01 keep", key).await;
        assert_eq!(placed, "place submitted=20");
    }
    t.host.clock().set(now + 3 * SECOND);
    let cancels = ask(&t, &state, "fat", "cancel-open", "cancel-open").await;
    assert_eq!(cancels, "cancel err limit-exceeded=20, cancel ok=20");
    let rejections = t.host.orders().unwrap().rejections();
    for code in [
        "risk.max-qty",
        "risk.price-collar",
        "risk.max-notional",
        "risk.unknown-instrument",
        "risk.order-rate",
        "risk.cancel-rate",
    ] {
        assert!(rejections[code] > 0, "{code}: {rejections:?}");
    }
}
