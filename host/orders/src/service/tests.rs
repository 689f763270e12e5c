//! The router alone, driven through a fake [`Venue`]: the one path of an order (risk, venue,
//! reports), refusals that never reach the venue, venue errors, cancels and positions after
//! fills, for a venue that answers at once and for one that answers later.

use std::str::FromStr;
use std::sync::{Arc, Mutex};

use rust_decimal::Decimal;

use super::*;
use crate::venue::{Answer, Pending, Venue, VenueError, VenueKind, VenueOrder};
use crate::{FillReport, Liquidity, TimeInForce};
use colony_bus::Mailbox;

const T0: Timestamp = 1_700_000_000_000_000_000;

fn d(s: &str) -> Decimal {
    Decimal::from_str(s).unwrap()
}

/// What the fake venue does with the orders it is sent.
#[derive(Debug, Clone)]
enum Script {
    /// Accepts, then fills the whole quantity at the limit price with a fee of 0.1, at once.
    Fill,
    /// Accepts at once; the order rests.
    Rest,
    /// Rejects at once (`venue.rejected`).
    Reject,
    /// Accepts later.
    AcceptLater,
    /// Fails later with this error.
    FailLater(VenueError),
}

/// A venue that does what its script says and remembers what it was asked.
struct FakeVenue {
    kind: VenueKind,
    script: Mutex<Script>,
    calls: Mutex<Vec<String>>,
    /// What it answers when asked for its instruments; `None`: it keeps no list.
    instruments: Mutex<Option<Result<Vec<String>, VenueError>>>,
}

impl FakeVenue {
    fn new(kind: VenueKind, script: Script) -> Arc<FakeVenue> {
        Arc::new(FakeVenue {
            kind,
            script: Mutex::new(script),
            calls: Mutex::new(Vec::new()),
            instruments: Mutex::new(None),
        })
    }

    fn calls(&self) -> Vec<String> {
        self.calls.lock().unwrap().clone()
    }

    fn later(report: Result<ExecReport, VenueError>) -> Answer {
        Answer::Later(Box::pin(std::future::ready(report)))
    }
}

impl Venue for FakeVenue {
    fn name(&self) -> &str {
        "fake"
    }

    fn kind(&self) -> VenueKind {
        self.kind
    }

    fn place(
        self: Arc<Self>,
        order: &OrderRequest,
        now: Timestamp,
        out: &mut Vec<ExecReport>,
    ) -> Answer {
        self.calls
            .lock()
            .unwrap()
            .push(format!("place {}", order.client_id));
        let id = Some(format!("fake-{}", order.client_id));
        let report = |kind| ExecReport::new(order, id.clone(), kind, now);
        let script = self.script.lock().unwrap().clone();
        match script {
            Script::Fill => {
                out.push(report(ExecKind::Accepted));
                out.push(report(ExecKind::Fill(FillReport {
                    qty: order.qty,
                    price: order.price.unwrap_or(Decimal::ONE_HUNDRED),
                    fee: d("0.1"),
                    fee_currency: "USDT".into(),
                    liquidity: Liquidity::Taker,
                })));
                Answer::Now
            }
            Script::Rest => {
                out.push(report(ExecKind::Accepted));
                Answer::Now
            }
            Script::Reject => {
                out.push(report(ExecKind::Rejected {
                    code: "venue.rejected".into(),
                    message: "no".into(),
                }));
                Answer::Now
            }
            Script::AcceptLater => Self::later(Ok(report(ExecKind::Accepted))),
            Script::FailLater(e) => Self::later(Err(e)),
        }
    }

    fn cancel(
        self: Arc<Self>,
        order: &OrderState,
        now: Timestamp,
        out: &mut Vec<ExecReport>,
    ) -> Answer {
        let req = &order.request;
        self.calls
            .lock()
            .unwrap()
            .push(format!("cancel {}", req.client_id));
        let report = ExecReport::new(req, order.venue_order_id.clone(), ExecKind::Cancelled, now);
        match self.kind {
            VenueKind::InProcess => {
                out.push(report);
                Answer::Now
            }
            VenueKind::Remote => Self::later(Ok(report)),
        }
    }

    fn query(self: Arc<Self>, _order: &OrderRequest) -> Pending<Option<VenueOrder>> {
        Box::pin(std::future::ready(Ok(None)))
    }

    fn instruments(self: Arc<Self>) -> Option<Pending<Vec<String>>> {
        let answer = self.instruments.lock().unwrap().clone()?;
        self.calls.lock().unwrap().push("instruments".into());
        Some(Box::pin(std::future::ready(answer)))
    }
}

/// A router for agent `a` over `venue`, and a mailbox subscribed to `a`'s order events.
fn router(venue: &Arc<FakeVenue>, limits: RiskLimits) -> (Arc<OrderService>, Mailbox) {
    let bus = Bus::new();
    let events = bus.mailbox("a", 64);
    bus.subscribe_local("a", &events_subject("a"), &events)
        .unwrap();
    let config = OrdersConfig {
        risk: limits,
        instruments: vec!["BTC-USDT".into()],
        ..OrdersConfig::default()
    };
    let venue: Arc<dyn Venue> = venue.clone();
    (OrderService::new(bus, config, venue, None), events)
}

fn limit(id: &str, side: Side, price: &str, qty: &str) -> OrderRequest {
    OrderRequest {
        client_id: id.into(),
        agent: "a".into(),
        symbol: "BTC-USDT".into(),
        side,
        kind: OrderKind::Limit,
        price: Some(d(price)),
        qty: d(qty),
        tif: TimeInForce::Gtc,
        post_only: false,
        reduce_only: false,
    }
}

fn update(env: &Envelope) -> OrderUpdate {
    env.order()
        .map(|u| u.as_ref().clone())
        .expect("an order event")
}

/// The events delivered so far: (client id, status, reject code).
fn delivered(events: &Mailbox) -> Vec<(String, OrderStatus, Option<String>)> {
    std::iter::from_fn(|| events.try_recv())
        .map(|env| summary(&update(&env)))
        .collect()
}

fn summary(u: &OrderUpdate) -> (String, OrderStatus, Option<String>) {
    let code = match &u.report.kind {
        ExecKind::Rejected { code, .. } => Some(code.clone()),
        _ => None,
    };
    (u.report.client_id.clone(), u.status, code)
}

/// The next event, awaited (a venue that answers later).
async fn next(events: &Mailbox) -> (String, OrderStatus, Option<String>) {
    let env = events.recv().await.expect("the mailbox is open");
    summary(&update(&env))
}

fn ev(id: &str, status: OrderStatus) -> (String, OrderStatus, Option<String>) {
    (id.to_string(), status, None)
}

#[test]
fn an_order_reaches_the_venue_once_and_what_it_answers_at_once_is_applied_before_place_returns() {
    let venue = FakeVenue::new(VenueKind::InProcess, Script::Fill);
    let (router, events) = router(&venue, RiskLimits::default());
    let ack = router.place(limit("o1", Side::Buy, "100", "2"), T0);
    assert_eq!(ack, Ack::Submitted);
    assert_eq!(venue.calls(), ["place o1"]);
    assert_eq!(
        delivered(&events),
        [
            ev("o1", OrderStatus::Accepted),
            ev("o1", OrderStatus::Filled)
        ]
    );
    assert!(router.open_orders("a").is_empty());
    let c = router.counters();
    assert_eq!((c.placed, c.submitted, c.rejected, c.fills), (1, 1, 0, 1));
    let recent = router.report().recent;
    assert_eq!(recent.len(), 1);
    assert_eq!(
        (recent[0].status.as_str(), recent[0].filled_qty.as_str()),
        ("filled", "2")
    );
}

#[test]
fn risk_refusals_never_reach_the_venue() {
    let venue = FakeVenue::new(VenueKind::InProcess, Script::Fill);
    let limits = RiskLimits {
        max_qty: Some(d("1")),
        ..RiskLimits::default()
    };
    let (router, events) = router(&venue, limits);
    let ack = router.place(limit("big", Side::Buy, "100", "2"), T0);
    assert!(
        matches!(&ack, Ack::Rejected { code, .. } if code == "risk.max-qty"),
        "{ack:?}"
    );
    // The kill switch refuses too, before the venue.
    router.kill_switch(None, KillMode::On, T0);
    let ack = router.place(limit("small", Side::Buy, "100", "1"), T0);
    assert!(
        matches!(&ack, Ack::Rejected { code, .. } if code == "risk.kill-switch"),
        "{ack:?}"
    );
    assert!(venue.calls().is_empty());
    let rejected = |id: &str, code: &str| {
        (
            id.to_string(),
            OrderStatus::Rejected,
            Some(code.to_string()),
        )
    };
    assert_eq!(
        delivered(&events),
        [
            rejected("big", "risk.max-qty"),
            rejected("small", "risk.kill-switch")
        ]
    );
    let c = router.counters();
    assert_eq!((c.placed, c.submitted, c.rejected), (2, 0, 2));
    assert_eq!(router.rejections()["risk.max-qty"], 1);
    let recent: Vec<_> = router
        .report()
        .recent
        .into_iter()
        .map(|o| o.reject_code)
        .collect();
    assert_eq!(
        recent,
        [
            Some("risk.max-qty".to_string()),
            Some("risk.kill-switch".to_string())
        ]
    );
}

#[test]
fn a_venue_rejection_closes_the_order_and_frees_its_risk_reservation() {
    let venue = FakeVenue::new(VenueKind::InProcess, Script::Reject);
    let limits = RiskLimits {
        max_open_orders: Some(1),
        ..RiskLimits::default()
    };
    let (router, events) = router(&venue, limits);
    for id in ["o1", "o2"] {
        assert_eq!(
            router.place(limit(id, Side::Buy, "100", "1"), T0),
            Ack::Submitted
        );
    }
    // Both reached the venue: the first one's open-order slot was freed by its rejection.
    assert_eq!(venue.calls(), ["place o1", "place o2"]);
    let rejected = |id: &str| {
        (
            id.to_string(),
            OrderStatus::Rejected,
            Some("venue.rejected".to_string()),
        )
    };
    assert_eq!(delivered(&events), [rejected("o1"), rejected("o2")]);
    assert!(router.open_orders("a").is_empty());
}

#[tokio::test]
async fn a_venue_error_with_a_known_outcome_rejects_the_order_later() {
    let error = VenueError::CircuitOpen {
        retry_after: std::time::Duration::from_secs(1),
    };
    let venue = FakeVenue::new(VenueKind::Remote, Script::FailLater(error));
    let (router, events) = router(&venue, RiskLimits::default());
    assert_eq!(
        router.place(limit("o1", Side::Buy, "100", "1"), T0),
        Ack::Submitted
    );
    assert_eq!(venue.calls(), ["place o1"]);
    assert_eq!(
        next(&events).await,
        (
            "o1".to_string(),
            OrderStatus::Rejected,
            Some("venue.unavailable".to_string())
        )
    );
    assert!(router.open_orders("a").is_empty());
}

#[tokio::test]
async fn a_venue_that_answers_later_goes_through_the_same_path_and_cancels_confirm_later() {
    let venue = FakeVenue::new(VenueKind::Remote, Script::AcceptLater);
    let (router, events) = router(&venue, RiskLimits::default());
    assert_eq!(
        router
            .place_async(limit("o1", Side::Buy, "100", "1"), T0)
            .await,
        Ack::Submitted
    );
    // Open (pending) before the venue has answered.
    assert_eq!(router.open_orders("a").len(), 1);
    assert_eq!(next(&events).await, ev("o1", OrderStatus::Accepted));
    let order = &router.open_orders("a")[0];
    assert_eq!(
        (order.status, order.venue_order_id.as_deref()),
        (OrderStatus::Accepted, Some("fake-o1"))
    );
    router.cancel(&"a".into(), "o1", T0).unwrap();
    assert_eq!(next(&events).await, ev("o1", OrderStatus::Cancelled));
    assert_eq!(venue.calls(), ["place o1", "cancel o1"]);
    assert!(router.open_orders("a").is_empty());
}

#[test]
fn cancel_goes_to_the_venue_and_an_order_not_working_is_not_found() {
    let venue = FakeVenue::new(VenueKind::InProcess, Script::Rest);
    let (router, events) = router(&venue, RiskLimits::default());
    router.place(limit("o1", Side::Buy, "100", "1"), T0);
    assert_eq!(router.open_orders("a").len(), 1);
    assert_eq!(
        router.working_symbol(&"a".into(), "o1").as_deref(),
        Some("BTC-USDT")
    );
    router.cancel(&"a".into(), "o1", T0 + 1).unwrap();
    assert!(router.open_orders("a").is_empty());
    assert_eq!(
        router.cancel(&"a".into(), "o1", T0 + 2),
        Err(CancelError::NotFound("o1".into()))
    );
    assert_eq!(
        router.cancel(&"a".into(), "nope", T0 + 2),
        Err(CancelError::NotFound("nope".into()))
    );
    assert_eq!(venue.calls(), ["place o1", "cancel o1"]);
    assert_eq!(
        delivered(&events),
        [
            ev("o1", OrderStatus::Accepted),
            ev("o1", OrderStatus::Cancelled)
        ]
    );
    assert_eq!(router.counters().cancels, 1);
}

#[test]
fn the_kill_switch_cancels_every_working_order_at_the_venue() {
    let venue = FakeVenue::new(VenueKind::InProcess, Script::Rest);
    let (router, _events) = router(&venue, RiskLimits::default());
    router.place(limit("o1", Side::Buy, "100", "1"), T0);
    router.place(limit("o2", Side::Sell, "110", "1"), T0);
    assert_eq!(router.kill_switch(Some("a"), KillMode::On, T0), 2);
    let mut calls = venue.calls();
    calls.sort();
    assert_eq!(calls, ["cancel o1", "cancel o2", "place o1", "place o2"]);
    assert!(router.open_orders("a").is_empty());
}

#[test]
fn positions_after_fills_come_from_the_ledger_when_the_venue_keeps_none() {
    let venue = FakeVenue::new(VenueKind::InProcess, Script::Fill);
    let (router, _events) = router(&venue, RiskLimits::default());
    router.place(limit("b1", Side::Buy, "100", "2"), T0);
    router.place(limit("b2", Side::Buy, "130", "1"), T0);
    router.place(limit("s1", Side::Sell, "120", "2"), T0);
    router.on_market(&MarketEvent::Quote(Quote {
        symbol: "BTC-USDT".into(),
        bid: d("119"),
        bid_size: d("1"),
        ask: d("121"),
        ask_size: d("1"),
        ts: T0,
    }));
    let p = router.position("a", "BTC-USDT");
    // (2 × 100 + 130) / 3 = 110; selling 2 at 120 realises 20, less three fees of 0.1.
    assert_eq!((p.qty, p.avg_price), (d("1"), d("110")));
    assert_eq!(p.realised_pnl, d("19.7"));
    assert_eq!((p.mark, p.unrealised_pnl), (Some(d("120")), d("10")));
    // The venue keeps no accounts: no balances, no equity.
    assert!(router.balances("a").is_empty());
    assert_eq!(router.total_equity(), Decimal::ZERO);
    assert_eq!(router.report().fills.len(), 3);
}

#[test]
fn the_paper_venue_keeps_the_positions_and_cash_it_fills() {
    let router = OrderService::paper(Bus::new(), OrdersConfig::default());
    router.on_market(&MarketEvent::Quote(Quote {
        symbol: "BTC-USDT".into(),
        bid: d("99"),
        bid_size: d("5"),
        ask: d("101"),
        ask_size: d("5"),
        ts: T0,
    }));
    assert_eq!(
        router.place(limit("b1", Side::Buy, "101", "2"), T0),
        Ack::Submitted
    );
    let p = router.position("a", "BTC-USDT");
    // 2 @ 101 as taker (5 bps: 0.101), marked at the mid (100).
    assert_eq!((p.qty, p.avg_price, p.fees), (d("2"), d("101"), d("0.101")));
    assert_eq!(p.unrealised_pnl, d("-2"));
    let cash = d("100000") - d("0.101");
    assert_eq!(router.balances("a")[0].total, cash);
    assert_eq!(router.total_equity(), cash - d("2"));
    let report = router.report();
    assert_eq!(report.accounts.len(), 1);
    assert_eq!(report.positions[0].qty, "2");
}

#[test]
fn an_instrument_nobody_defines_is_refused_until_the_feed_publishes_it() {
    let router = OrderService::paper(Bus::new(), OrdersConfig::default());
    let nope = OrderRequest {
        symbol: "NOPE-XXX".into(),
        ..limit("n1", Side::Buy, "100", "1")
    };
    assert!(matches!(
        router.place(nope.clone(), T0),
        Ack::Rejected { code, .. } if code == "risk.unknown-instrument"
    ));
    router.on_market(&MarketEvent::Quote(Quote {
        symbol: "NOPE-XXX".into(),
        bid: d("99"),
        bid_size: d("5"),
        ask: d("101"),
        ask_size: d("5"),
        ts: T0,
    }));
    let again = OrderRequest {
        client_id: "n2".into(),
        ..nope
    };
    assert_eq!(router.place(again, T0), Ack::Submitted);
    assert_eq!(router.status().known_instruments, 1);
}

/// A router over a remote fake venue with a SQLite journal (intents written ahead).
async fn journaled(venue: &Arc<FakeVenue>, dir: &std::path::Path) -> (Arc<OrderService>, Journal) {
    let url = format!("sqlite://{}", dir.join("orders.db").display());
    let journal = Journal::open(&url).await.unwrap();
    let config = OrdersConfig {
        risk: RiskLimits {
            max_qty: Some(d("5")),
            ..RiskLimits::default()
        },
        instruments: vec!["BTC-USDT".into()],
        ..OrdersConfig::default()
    };
    let dyn_venue: Arc<dyn Venue> = venue.clone();
    let router = OrderService::with_journal(Bus::new(), config, dyn_venue, journal.clone());
    (router, journal)
}

/// Lets the router's tasks run (a current-thread runtime runs them only when the test waits).
async fn let_tasks_run() {
    for _ in 0..50 {
        tokio::task::yield_now().await;
    }
    tokio::time::sleep(Duration::from_millis(50)).await;
}

/// Waits (up to 20 s: the journal's writes are fsync'd, slow on a loaded machine) until the
/// journal has agent `a`'s order `cid` in `status`, and returns it.
async fn journaled_as(
    journal: &Journal,
    cid: &str,
    status: OrderStatus,
) -> crate::journal::JournalOrder {
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        let o = journal.order("a", cid).await.unwrap();
        match o {
            Some(o) if o.state.status == status => return o,
            _ if std::time::Instant::now() > deadline => {
                panic!("{cid} is not {status:?} in the journal: {o:?}")
            }
            _ => tokio::time::sleep(Duration::from_millis(10)).await,
        }
    }
}

#[tokio::test]
async fn a_kill_switch_between_admission_and_send_stops_the_order_before_the_venue() {
    let dir = tempfile::tempdir().unwrap();
    let venue = FakeVenue::new(VenueKind::Remote, Script::AcceptLater);
    let (router, journal) = journaled(&venue, dir.path()).await;
    // Admitted: working at once, though its intent is not journaled yet (the task that
    // journals and sends has not run).
    assert_eq!(
        router.place(limit("k1", Side::Buy, "100", "1"), T0),
        Ack::Submitted
    );
    assert_eq!(router.open_orders("a").len(), 1);
    // The switch counts it among the orders it stops.
    assert_eq!(router.kill_switch(None, KillMode::On, T0), 1);
    // The task that journals the intent then finds the switch and records the cancel.
    let o = journaled_as(&journal, "k1", OrderStatus::Cancelled).await;
    assert_eq!(
        venue.calls(),
        Vec::<String>::new(),
        "nothing reached the venue"
    );
    assert!(!o.sent, "never marked sent");
    // Applied right after the journal took it.
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while !router.open_orders("a").is_empty() {
        assert!(std::time::Instant::now() < deadline, "k1 is still open");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }

    // An agent's own cancel of an order not sent yet stops it the same way.
    router.kill_switch(None, KillMode::Off, T0);
    assert_eq!(
        router.place(limit("k2", Side::Buy, "100", "1"), T0),
        Ack::Submitted
    );
    router.cancel(&"a".into(), "k2", T0).unwrap();
    journaled_as(&journal, "k2", OrderStatus::Cancelled).await;
    assert_eq!(venue.calls(), Vec::<String>::new());

    // Without a switch the order goes on.
    assert_eq!(
        router.place(limit("k3", Side::Buy, "100", "1"), T0),
        Ack::Submitted
    );
    let_tasks_run().await;
    assert_eq!(venue.calls(), ["place k3"]);
}

#[tokio::test]
async fn refusals_are_journaled_with_their_reason_codes() {
    let dir = tempfile::tempdir().unwrap();
    let venue = FakeVenue::new(VenueKind::Remote, Script::AcceptLater);
    let (router, journal) = journaled(&venue, dir.path()).await;
    let big = limit("r1", Side::Buy, "100", "6");
    assert!(matches!(router.place(big, T0), Ack::Rejected { .. }));
    router.kill_switch(Some("a"), KillMode::Halt, T0);
    assert!(matches!(
        router.place(limit("r2", Side::Sell, "100", "1"), T0 + 1),
        Ack::Rejected { .. }
    ));
    assert!(router.flush_journal(Duration::from_secs(5)).await);
    let refused = journal.rejections(&OrderFilter::default()).await.unwrap();
    let rows: Vec<(&str, Option<&str>, OrderStatus, Decimal)> = refused
        .iter()
        .map(|r| {
            (
                r.state.request.client_id.as_str(),
                r.state.reject_code.as_deref(),
                r.state.status,
                r.state.request.qty,
            )
        })
        .collect();
    assert_eq!(
        rows,
        [
            ("r2", Some("risk.halted"), OrderStatus::Rejected, d("1")),
            ("r1", Some("risk.max-qty"), OrderStatus::Rejected, d("6")),
        ]
    );
    assert!(
        refused[1].message.contains("above the maximum 5"),
        "{}",
        refused[1].message
    );
    assert_eq!(refused[0].venue, "fake");
    // A refused id is not taken: the agent may send it again, and it goes to the venue.
    router.kill_switch(Some("a"), KillMode::Off, T0);
    assert_eq!(
        router.place(limit("r1", Side::Buy, "100", "1"), T0 + 2),
        Ack::Submitted
    );
    let_tasks_run().await;
    assert_eq!(venue.calls(), ["place r1"]);
    assert!(journal.order("a", "r1").await.unwrap().is_some());
}

#[test]
fn a_market_event_with_a_price_at_or_below_zero_is_no_reference_and_no_instrument() {
    let router = OrderService::paper(Bus::new(), OrdersConfig::default());
    for price in ["0", "-5"] {
        router.on_market(&MarketEvent::Trade(colony_market::types::Trade {
            symbol: "BAD-USDT".into(),
            price: d(price),
            size: d("1"),
            aggressor: Side::Buy,
            ts: T0,
        }));
    }
    assert_eq!(router.reference_price("BAD-USDT", Side::Buy), None);
    assert_eq!(router.status().known_instruments, 0);
    let order = OrderRequest {
        symbol: "BAD-USDT".into(),
        ..limit("b1", Side::Buy, "100", "1")
    };
    assert!(matches!(
        router.place(order, T0),
        Ack::Rejected { code, .. } if code == "risk.unknown-instrument"
    ));
}

/// A router over `venue` that knows no instrument from its configuration (and has no limits:
/// a limit order needs no reference price then).
fn router_without_instruments(venue: &Arc<FakeVenue>) -> Arc<OrderService> {
    let dyn_venue: Arc<dyn Venue> = venue.clone();
    let config = OrdersConfig {
        risk: RiskLimits::default(),
        ..OrdersConfig::default()
    };
    OrderService::new(Bus::new(), config, dyn_venue, None)
}

fn order_for(symbol: &str, id: &str) -> OrderRequest {
    OrderRequest {
        symbol: symbol.into(),
        ..limit(id, Side::Buy, "100", "1")
    }
}

fn refused_code(ack: Ack) -> Option<String> {
    match ack {
        Ack::Rejected { code, .. } => Some(code),
        _ => None,
    }
}

#[tokio::test]
async fn the_venue_s_instrument_list_defines_what_may_be_ordered_and_a_failed_one_lets_nothing_more_through()
 {
    let venue = FakeVenue::new(VenueKind::InProcess, Script::Rest);
    *venue.instruments.lock().unwrap() = Some(Err(VenueError::Unavailable("HTTP 503".into())));
    let router = router_without_instruments(&venue);
    // The venue does not answer: nothing is learned, and the failure shows.
    assert!(router.learn_venue_instruments().await.is_err());
    assert_eq!(
        router.status().venue_instruments,
        VenueInstruments::Failed {
            error: "venue unavailable: HTTP 503".into()
        }
    );
    assert_eq!(
        refused_code(router.place(order_for("ETH-USDT", "e1"), T0)).as_deref(),
        Some("risk.unknown-instrument")
    );
    // It answers: what it lists may be ordered, nothing else.
    *venue.instruments.lock().unwrap() = Some(Ok(vec!["BTC-USDT".into(), "ETH-USDT".into()]));
    assert_eq!(router.learn_venue_instruments().await.unwrap(), Some(2));
    let status = router.status();
    assert_eq!(
        status.venue_instruments,
        VenueInstruments::Listed { count: 2 }
    );
    assert_eq!(status.known_instruments, 2);
    assert_eq!(
        router.place(order_for("ETH-USDT", "e2"), T0),
        Ack::Submitted
    );
    assert_eq!(
        refused_code(router.place(order_for("SOL-USDT", "s1"), T0)).as_deref(),
        Some("risk.unknown-instrument")
    );
    assert_eq!(venue.calls(), ["instruments", "instruments", "place e2"]);
}

#[tokio::test]
async fn a_venue_that_keeps_no_list_is_not_asked_again_and_one_that_fails_at_start_is() {
    let paper = FakeVenue::new(VenueKind::InProcess, Script::Rest);
    let router = router_without_instruments(&paper);
    router.start_instruments().await;
    assert_eq!(
        router.status().venue_instruments,
        VenueInstruments::NotListed
    );
    assert!(paper.calls().is_empty());

    let venue = FakeVenue::new(VenueKind::Remote, Script::AcceptLater);
    *venue.instruments.lock().unwrap() = Some(Err(VenueError::Timeout(Duration::from_secs(5))));
    let router = router_without_instruments(&venue);
    router.start_instruments().await;
    assert!(matches!(
        router.status().venue_instruments,
        VenueInstruments::Failed { .. }
    ));
    // Back: the background retry (first after 0.5 s) learns the list.
    *venue.instruments.lock().unwrap() = Some(Ok(vec!["ETH-USDT".into()]));
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while router.status().venue_instruments != (VenueInstruments::Listed { count: 1 }) {
        assert!(std::time::Instant::now() < deadline, "never retried");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(
        router.place(order_for("ETH-USDT", "e1"), T0),
        Ack::Submitted
    );
}

#[tokio::test]
async fn cancel_requests_of_the_last_minute_keep_the_cancel_rate_after_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("orders.db").display());
    let config = OrdersConfig {
        risk: RiskLimits {
            max_cancels_per_min: Some(3),
            ..RiskLimits::default()
        },
        instruments: vec!["BTC-USDT".into()],
        ..OrdersConfig::default()
    };
    let start = |journal: Journal| {
        let venue = FakeVenue::new(VenueKind::Remote, Script::AcceptLater);
        let dyn_venue: Arc<dyn Venue> = venue;
        OrderService::with_journal(Bus::new(), config.clone(), dyn_venue, journal)
    };
    let agent: Arc<str> = "a".into();
    let journal = Journal::open(&url).await.unwrap();
    let router = start(journal.clone());
    for (i, id) in ["c1", "c2", "c3"].into_iter().enumerate() {
        let at = T0 + i as u64 * 1_000_000_000;
        assert_eq!(
            router.place(limit(id, Side::Buy, "100", "1"), at),
            Ack::Submitted
        );
        let_tasks_run().await;
        router.cancel(&agent, id, at).unwrap();
    }
    assert!(router.flush_journal(Duration::from_secs(5)).await);
    let journaled = journal.cancel_requests_since("fake", T0).await.unwrap();
    let ids: Vec<&str> = journaled.iter().map(|c| c.client_id.as_str()).collect();
    assert_eq!(ids, ["c1", "c2", "c3"]);
    drop(router);
    journal.close().await;

    // 30 s after the first cancel: all three are in the window, so a fourth is refused.
    let journal = Journal::open(&url).await.unwrap();
    let router = start(journal.clone());
    let now = T0 + 30_000_000_000;
    let report = router.recover(now).await.unwrap();
    assert_eq!(report.cancels, 3);
    assert_eq!(
        router.place(limit("c4", Side::Buy, "100", "1"), now),
        Ack::Submitted
    );
    let_tasks_run().await;
    assert!(matches!(
        router.cancel(&agent, "c4", now),
        Err(CancelError::Rate(_))
    ));
    drop(router);
    journal.close().await;

    // A minute and a second after the first: it has left the window.
    let journal = Journal::open(&url).await.unwrap();
    let router = start(journal.clone());
    let later = T0 + 61_000_000_000;
    assert_eq!(router.recover(later).await.unwrap().cancels, 2);
    assert_eq!(
        router.place(limit("c5", Side::Buy, "100", "1"), later),
        Ack::Submitted
    );
    let_tasks_run().await;
    router.cancel(&agent, "c5", later).unwrap();
}
