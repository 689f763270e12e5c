//! Every scenario runs on SQLite (a temp dir) and on PostgreSQL at
//! `postgres://postgres@127.0.0.1:5432/` (a fresh database per test, dropped afterwards).
//! PostgreSQL is required infrastructure: if it is unreachable the `postgres::` tests fail.

use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};

use super::*;
use colony_audit::testing;

const PG_SERVER: &str = "postgres://postgres@127.0.0.1:5432/";
const SYMBOL: &str = "BTC-USDT";

enum TestDb {
    Sqlite(tempfile::TempDir),
    Postgres(String),
}

impl TestDb {
    fn sqlite() -> TestDb {
        TestDb::Sqlite(tempfile::tempdir().expect("temp dir"))
    }

    async fn postgres() -> TestDb {
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let name = format!(
            "colony_journal_{}_{}_{}",
            std::process::id(),
            colony_audit::now_ns(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        );
        if let Err(e) = testing::create_postgres_database(PG_SERVER, &name).await {
            panic!("PostgreSQL at {PG_SERVER} is required for the journal tests: {e}");
        }
        TestDb::Postgres(name)
    }

    fn url(&self) -> String {
        match self {
            TestDb::Sqlite(dir) => {
                format!("sqlite://{}", dir.path().join("orders.db").display())
            }
            TestDb::Postgres(name) => format!("{PG_SERVER}{name}"),
        }
    }

    async fn cleanup(self) {
        if let TestDb::Postgres(name) = self
            && let Err(e) = testing::drop_postgres_database(PG_SERVER, &name).await
        {
            eprintln!("could not drop test database {name}: {e}");
        }
    }
}

/// Runs `scenario` on the database's URL, then drops the database even if it panicked.
async fn run<F, Fut>(db: TestDb, scenario: F)
where
    F: FnOnce(String) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    let outcome = tokio::spawn(scenario(db.url())).await;
    db.cleanup().await;
    if let Err(e) = outcome {
        std::panic::resume_unwind(e.into_panic());
    }
}

/// One test per scenario and backend: `sqlite::NAME` and `postgres::NAME`.
macro_rules! on_both_backends {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn $name() {
                    super::run(super::TestDb::sqlite(), super::$name).await;
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn $name() {
                    super::run(super::TestDb::postgres().await, super::$name).await;
                }
            )*
        }
    };
}

on_both_backends!(
    an_order_goes_from_intent_to_filled,
    open_orders_are_oldest_first_and_exclude_closed_ones,
    a_reopened_journal_sees_everything,
    a_batch_with_an_unknown_order_writes_nothing,
    concurrent_reports_for_one_order_get_gap_free_seqs,
    corrupt_values_are_reported_with_their_column,
    decimals_round_trip_exactly,
    refusals_and_venue_fills_read_back,
    cancel_requests_read_back_by_venue_and_time,
);

/// Cancel requests read back oldest first, for one venue, from a time on.
async fn cancel_requests_read_back_by_venue_and_time(url: String) {
    let j = open(&url).await;
    let c = |agent: &str, id: &str, ts: Timestamp| CancelRequest {
        agent: agent.into(),
        client_id: id.into(),
        ts,
    };
    j.record_cancel_requests("okx", &[c("a", "x2", 20), c("b", "y1", 10)])
        .await
        .unwrap();
    j.record_cancel_requests("alpaca", &[c("a", "z1", 30)])
        .await
        .unwrap();
    j.record_cancel_requests("okx", &[c("a", "x3", 5)])
        .await
        .unwrap();
    assert_eq!(
        j.cancel_requests_since("okx", 10).await.unwrap(),
        [c("b", "y1", 10), c("a", "x2", 20)]
    );
    assert_eq!(j.cancel_requests_since("okx", 0).await.unwrap().len(), 3);
    assert!(j.cancel_requests_since("okx", 21).await.unwrap().is_empty());
    j.close().await;
}

/// Refusals are kept apart from orders (the id stays free) and read back newest first, by
/// agent; a venue's fills read back oldest first for recovery, other venues' left out.
async fn refusals_and_venue_fills_read_back(url: String) {
    let j = open(&url).await;
    let refused = |cid: &str, code: &str, ts| {
        let req = request("alpha", cid, "9", Some("100"));
        let rep = ExecReport {
            venue_order_id: None,
            ..report(
                "alpha",
                cid,
                ExecKind::Rejected {
                    code: code.into(),
                    message: format!("{code} detail"),
                },
                ts,
            )
        };
        (req, rep)
    };
    j.record_rejections(
        "okx",
        &[
            refused("r1", "risk.max-qty", 10),
            refused("r2", "risk.daily-loss", 11),
        ],
    )
    .await
    .unwrap();
    let mut beta = refused("r3", "approval.denied", 12);
    beta.0.agent = "beta".into();
    beta.1.agent = "beta".into();
    j.record_rejections("okx", &[beta]).await.unwrap();
    let all = j.rejections(&OrderFilter::default()).await.unwrap();
    let ids: Vec<&str> = all
        .iter()
        .map(|r| r.state.request.client_id.as_str())
        .collect();
    assert_eq!(ids, ["r3", "r2", "r1"]);
    assert_eq!(all[2].state.reject_code.as_deref(), Some("risk.max-qty"));
    assert_eq!(all[2].state.status, OrderStatus::Rejected);
    assert_eq!(all[2].state.request.qty, d("9"));
    assert_eq!(all[2].message, "risk.max-qty detail");
    assert_eq!((all[2].venue.as_str(), all[2].state.created), ("okx", 10));
    let alpha = j
        .rejections(&OrderFilter {
            agent: Some("alpha".into()),
            limit: Some(1),
            ..OrderFilter::default()
        })
        .await
        .unwrap();
    assert_eq!(alpha.len(), 1);
    assert_eq!(alpha[0].state.request.client_id, "r2");
    // A refused id is free: an order may take it.
    j.record_intent("okx", &request("alpha", "r1", "1", Some("100")), 20)
        .await
        .unwrap();

    j.record_intent("paper@1", &request("alpha", "p1", "1", Some("100")), 21)
        .await
        .unwrap();
    j.record_batch(&[
        report("alpha", "r1", ExecKind::Accepted, 22),
        report("alpha", "r1", fill("0.4", "100", "0"), 24),
        report("alpha", "p1", ExecKind::Accepted, 22),
        report("alpha", "p1", fill("1", "100", "0"), 23),
        report("alpha", "r1", fill("0.6", "101", "0"), 25),
    ])
    .await
    .unwrap();
    let fills = j.venue_fills("okx").await.unwrap();
    let got: Vec<(&str, Timestamp, Decimal)> = fills
        .iter()
        .map(|f| (f.client_id.as_str(), f.ts, f.fill.qty))
        .collect();
    assert_eq!(got, [("r1", 24, d("0.4")), ("r1", 25, d("0.6"))]);
}

fn d(s: &str) -> Decimal {
    Decimal::from_str_exact(s).expect("test decimal")
}

fn request(agent: &str, client_id: &str, qty: &str, price: Option<&str>) -> OrderRequest {
    OrderRequest {
        client_id: client_id.to_string(),
        agent: agent.into(),
        symbol: SYMBOL.into(),
        side: Side::Buy,
        kind: if price.is_some() {
            OrderKind::Limit
        } else {
            OrderKind::Market
        },
        price: price.map(d),
        qty: d(qty),
        tif: TimeInForce::Gtc,
        post_only: false,
        reduce_only: false,
    }
}

fn report(agent: &str, client_id: &str, kind: ExecKind, ts: Timestamp) -> ExecReport {
    ExecReport {
        agent: agent.into(),
        client_id: client_id.to_string(),
        symbol: SYMBOL.into(),
        side: Side::Buy,
        venue_order_id: Some(format!("v-{client_id}")),
        kind,
        ts,
    }
}

fn fill(qty: &str, price: &str, fee: &str) -> ExecKind {
    ExecKind::Fill(FillReport {
        qty: d(qty),
        price: d(price),
        fee: d(fee),
        fee_currency: "USDT".into(),
        liquidity: Liquidity::Taker,
    })
}

async fn open(url: &str) -> Journal {
    Journal::open(url).await.expect("open journal")
}

fn client_ids(orders: &[JournalOrder]) -> Vec<&str> {
    orders
        .iter()
        .map(|o| o.state.request.client_id.as_str())
        .collect()
}

/// Decimals compared by their text, so a changed scale (`1.5` vs `1.50`) fails too.
fn assert_same_state(got: &OrderState, want: &OrderState) {
    assert_eq!(got, want);
    for (name, g, w) in [
        ("filled_qty", got.filled_qty, want.filled_qty),
        ("filled_notional", got.filled_notional, want.filled_notional),
        ("fees", got.fees, want.fees),
        ("qty", got.request.qty, want.request.qty),
    ] {
        assert_eq!(g.to_string(), w.to_string(), "{name}");
    }
}

async fn an_order_goes_from_intent_to_filled(url: String) {
    let j = open(&url).await;
    let req = request("alpha", "c1", "1.5", Some("100.10"));
    j.record_intent("paper", &req, 10).await.unwrap();

    // The same (agent, client id) again is refused and the first intent stands.
    let retry = request("alpha", "c1", "9", None);
    match j.record_intent("paper", &retry, 11).await {
        Err(JournalError::Duplicate { agent, client_id }) => {
            assert_eq!((agent.as_str(), client_id.as_str()), ("alpha", "c1"));
        }
        other => panic!("expected Duplicate, got {other:?}"),
    }
    // Another agent may use the same client id.
    j.record_intent("paper", &request("beta", "c1", "1", None), 11)
        .await
        .unwrap();

    let o = j.order("alpha", "c1").await.unwrap().unwrap();
    assert_eq!(o.venue, "paper");
    assert_eq!(o.state, OrderState::new(req.clone(), 10));
    assert!(!o.sent);

    j.mark_sent("alpha", "c1", 11).await.unwrap();
    assert!(j.order("alpha", "c1").await.unwrap().unwrap().sent);
    assert!(matches!(
        j.mark_sent("alpha", "nope", 11).await,
        Err(JournalError::UnknownOrder { .. })
    ));

    let reports = [
        report("alpha", "c1", ExecKind::Accepted, 12),
        report("alpha", "c1", fill("0.5", "100.10", "0.05"), 13),
        report("alpha", "c1", fill("1.0", "100.04", "0.10"), 14),
    ];
    let mut want = OrderState::new(req.clone(), 10);
    let statuses = [
        OrderStatus::Accepted,
        OrderStatus::PartiallyFilled,
        OrderStatus::Filled,
    ];
    for (r, status) in reports.iter().zip(statuses) {
        j.record(r).await.unwrap();
        want.apply(r);
        let o = j.order("alpha", "c1").await.unwrap().unwrap();
        assert_eq!(o.state.status, status);
        assert_same_state(&o.state, &want);
    }
    let o = j.order("alpha", "c1").await.unwrap().unwrap();
    assert!(o.sent);
    assert_eq!(o.state.venue_order_id.as_deref(), Some("v-c1"));
    assert_eq!(o.state.filled_qty.to_string(), "1.5");
    assert_eq!(o.state.filled_notional.to_string(), "150.090");
    assert_eq!(o.state.avg_price(), Some(d("100.06")));
    assert_eq!(o.state.fees.to_string(), "0.15");
    assert_eq!(o.state.updated, 14);

    let events = j.events("alpha", "c1").await.unwrap();
    assert_eq!(events.iter().map(|e| e.seq).collect::<Vec<_>>(), [1, 2, 3]);
    assert_eq!(
        events.into_iter().map(|e| e.report).collect::<Vec<_>>(),
        reports
    );
    assert!(j.events("alpha", "nope").await.unwrap().is_empty());
    assert!(j.events("beta", "c1").await.unwrap().is_empty());

    // A late fill after the order is filled still lands in the events.
    j.record(&report("alpha", "c1", ExecKind::Cancelled, 15))
        .await
        .unwrap();
    assert_eq!(
        j.order("alpha", "c1").await.unwrap().unwrap().state.status,
        OrderStatus::Filled
    );
    assert_eq!(j.events("alpha", "c1").await.unwrap().len(), 4);

    let fills = j.fills(Some("alpha"), 10).await.unwrap();
    assert_eq!(fills.len(), 2);
    assert_eq!((fills[0].seq, fills[0].ts), (3, 14));
    assert_eq!(fills[0].fill.price.to_string(), "100.04");
    assert_eq!(fills[1].fill.qty.to_string(), "0.5");
    assert_eq!(fills[0].venue, "paper");
    assert_eq!(fills[0].venue_order_id.as_deref(), Some("v-c1"));
    assert_eq!(j.fills(None, 1).await.unwrap().len(), 1);
    assert!(j.fills(Some("beta"), 10).await.unwrap().is_empty());

    let rejected = report(
        "beta",
        "c1",
        ExecKind::Rejected {
            code: "venue.rejected".into(),
            message: "insufficient balance".into(),
        },
        16,
    );
    j.record(&rejected).await.unwrap();
    let b = j.order("beta", "c1").await.unwrap().unwrap();
    assert_eq!(b.state.status, OrderStatus::Rejected);
    assert_eq!(b.state.reject_code.as_deref(), Some("venue.rejected"));
    assert_eq!(j.events("beta", "c1").await.unwrap()[0].report, rejected);

    assert!(matches!(
        j.record(&report("alpha", "ghost", ExecKind::Accepted, 17)).await,
        Err(JournalError::UnknownOrder { agent, client_id })
            if agent == "alpha" && client_id == "ghost"
    ));
    j.close().await;
}

async fn open_orders_are_oldest_first_and_exclude_closed_ones(url: String) {
    let j = open(&url).await;
    // Created out of order: open orders come back by creation time, not insertion.
    for (venue, agent, id, ts) in [
        ("paper", "alpha", "late", 50),
        ("okx", "alpha", "early", 20),
        ("paper", "beta", "middle", 30),
        ("paper", "alpha", "done", 10),
        ("okx", "beta", "gone", 40),
    ] {
        j.record_intent(venue, &request(agent, id, "1", Some("10")), ts)
            .await
            .unwrap();
    }
    j.mark_sent("alpha", "early", 21).await.unwrap();
    j.record_batch(&[
        report("alpha", "early", ExecKind::Accepted, 22),
        report("beta", "middle", ExecKind::Accepted, 31),
        report("beta", "middle", fill("0.25", "10", "0"), 32),
        report("alpha", "done", fill("1", "10", "0"), 33),
        report("beta", "gone", ExecKind::Expired, 41),
    ])
    .await
    .unwrap();

    let open_orders = j.open_orders(None).await.unwrap();
    assert_eq!(client_ids(&open_orders), ["early", "middle", "late"]);
    let statuses: Vec<_> = open_orders.iter().map(|o| o.state.status).collect();
    assert_eq!(
        statuses,
        [
            OrderStatus::Accepted,
            OrderStatus::PartiallyFilled,
            OrderStatus::Pending
        ]
    );
    let sent: Vec<_> = open_orders.iter().map(|o| o.sent).collect();
    assert_eq!(sent, [true, false, false]);
    assert_eq!(
        client_ids(&j.open_orders(Some("okx")).await.unwrap()),
        ["early"]
    );
    assert!(j.open_orders(Some("alpaca")).await.unwrap().is_empty());

    let all = j.orders(&OrderFilter::default()).await.unwrap();
    assert_eq!(
        client_ids(&all),
        ["late", "gone", "middle", "early", "done"]
    );
    let alpha_open = OrderFilter {
        agent: Some("alpha".into()),
        open_only: true,
        ..OrderFilter::default()
    };
    assert_eq!(
        client_ids(&j.orders(&alpha_open).await.unwrap()),
        ["late", "early"]
    );
    let newest_two = OrderFilter {
        symbol: Some(SYMBOL.into()),
        limit: Some(2),
        ..OrderFilter::default()
    };
    assert_eq!(
        client_ids(&j.orders(&newest_two).await.unwrap()),
        ["late", "gone"]
    );
    let other_symbol = OrderFilter {
        symbol: Some("ETH-USDT".into()),
        ..OrderFilter::default()
    };
    assert!(j.orders(&other_symbol).await.unwrap().is_empty());
    j.close().await;
}

async fn a_reopened_journal_sees_everything(url: String) {
    let first = open(&url).await;
    let req = request("alpha", "c1", "2", Some("5.5"));
    first.record_intent("paper", &req, 1).await.unwrap();
    first.mark_sent("alpha", "c1", 2).await.unwrap();
    let reports = [
        report("alpha", "c1", ExecKind::Accepted, 3),
        report("alpha", "c1", fill("0.5", "5.5", "0.001"), 4),
    ];
    first.record_batch(&reports).await.unwrap();
    first
        .record_intent("paper", &request("alpha", "c2", "1", None), 5)
        .await
        .unwrap();
    let before = first.order("alpha", "c1").await.unwrap().unwrap();

    // A second pool on the same database while the first is still open, as a restarted
    // host after a crash would (the first never closed).
    let second = open(&url).await;
    let after = second.order("alpha", "c1").await.unwrap().unwrap();
    assert_eq!(after, before);
    assert_same_state(&after.state, &before.state);
    assert!(after.sent);
    assert_eq!(
        second
            .events("alpha", "c1")
            .await
            .unwrap()
            .into_iter()
            .map(|e| e.report)
            .collect::<Vec<_>>(),
        reports
    );
    let open_orders = second.open_orders(None).await.unwrap();
    assert_eq!(client_ids(&open_orders), ["c1", "c2"]);
    assert_eq!(
        (open_orders[0].sent, open_orders[1].sent),
        (true, false),
        "reconciliation tells maybe-sent from never-sent"
    );
    // The reopened journal still refuses the old client ids and continues the seqs.
    assert!(matches!(
        second.record_intent("paper", &req, 6).await,
        Err(JournalError::Duplicate { .. })
    ));
    second
        .record(&report("alpha", "c1", fill("1.5", "5.5", "0"), 7))
        .await
        .unwrap();
    let seqs: Vec<u64> = first
        .events("alpha", "c1")
        .await
        .unwrap()
        .iter()
        .map(|e| e.seq)
        .collect();
    assert_eq!(seqs, [1, 2, 3]);
    first.close().await;
    second.close().await;

    let third = open(&url).await;
    let o = third.order("alpha", "c1").await.unwrap().unwrap();
    assert_eq!(o.state.status, OrderStatus::Filled);
    assert_eq!(o.state.filled_notional.to_string(), "11.00");
    third.close().await;
}

async fn a_batch_with_an_unknown_order_writes_nothing(url: String) {
    let j = open(&url).await;
    let req = request("alpha", "c1", "1", Some("10"));
    j.record_intent("paper", &req, 1).await.unwrap();
    j.record_intent("paper", &request("alpha", "c2", "1", None), 1)
        .await
        .unwrap();
    let bad = [
        report("alpha", "c1", ExecKind::Accepted, 2),
        report("alpha", "c2", fill("1", "10", "0"), 3),
        report("alpha", "c1", fill("1", "10", "0"), 4),
        report("alpha", "ghost", ExecKind::Accepted, 5),
    ];
    match j.record_batch(&bad).await {
        Err(JournalError::UnknownOrder { agent, client_id }) => {
            assert_eq!((agent.as_str(), client_id.as_str()), ("alpha", "ghost"));
        }
        other => panic!("expected UnknownOrder, got {other:?}"),
    }
    for id in ["c1", "c2"] {
        let o = j.order("alpha", id).await.unwrap().unwrap();
        assert_eq!(o.state.status, OrderStatus::Pending, "{id}");
        assert!(j.events("alpha", id).await.unwrap().is_empty(), "{id}");
    }
    assert!(j.fills(None, 10).await.unwrap().is_empty());

    // Without the unknown order the same batch goes through, in order.
    j.record_batch(&bad[..3]).await.unwrap();
    let c1 = j.order("alpha", "c1").await.unwrap().unwrap();
    assert_eq!(c1.state.status, OrderStatus::Filled);
    let mut want = OrderState::new(req, 1);
    want.apply(&bad[0]);
    want.apply(&bad[2]);
    assert_same_state(&c1.state, &want);
    assert_eq!(
        j.events("alpha", "c1")
            .await
            .unwrap()
            .iter()
            .map(|e| (e.seq, e.report.ts))
            .collect::<Vec<_>>(),
        [(1, 2), (2, 4)]
    );
    assert_eq!(j.events("alpha", "c2").await.unwrap().len(), 1);
    j.record_batch(&[]).await.unwrap();
    j.close().await;
}

async fn concurrent_reports_for_one_order_get_gap_free_seqs(url: String) {
    let j = open(&url).await;
    j.record_intent("paper", &request("alpha", "c1", "2.0", Some("1")), 1)
        .await
        .unwrap();
    let tasks: Vec<_> = (0..20u64)
        .map(|i| {
            let j = j.clone();
            tokio::spawn(async move {
                j.record(&report("alpha", "c1", fill("0.1", "1", "0.01"), 10 + i))
                    .await
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap().unwrap();
    }
    let seqs: Vec<u64> = j
        .events("alpha", "c1")
        .await
        .unwrap()
        .iter()
        .map(|e| e.seq)
        .collect();
    assert_eq!(seqs, (1..=20).collect::<Vec<_>>());
    let o = j.order("alpha", "c1").await.unwrap().unwrap();
    assert_eq!(o.state.filled_qty, d("2.0"));
    assert_eq!(o.state.fees, d("0.20"));
    assert_eq!(o.state.status, OrderStatus::Filled);
    assert_eq!(o.state.updated, 29);
    j.close().await;
}

fn corrupt_column(r: Result<impl std::fmt::Debug, JournalError>) -> (&'static str, String) {
    match r {
        Err(JournalError::Corrupt {
            table,
            column,
            row,
            what,
        }) => {
            assert!(!row.is_empty() && !what.is_empty());
            (table, column.to_string())
        }
        other => panic!("expected Corrupt, got {other:?}"),
    }
}

async fn corrupt_values_are_reported_with_their_column(url: String) {
    let j = open(&url).await;
    j.record_intent("paper", &request("alpha", "c1", "1", Some("10")), 1)
        .await
        .unwrap();
    j.record(&report("alpha", "c1", fill("0.5", "10", "0"), 2))
        .await
        .unwrap();

    j.execute_raw("UPDATE orders SET filled_qty = '0.5x' WHERE client_id = 'c1'")
        .await
        .unwrap();
    let err = j.order("alpha", "c1").await.unwrap_err();
    let text = err.to_string();
    assert!(
        text.contains("orders row id") && text.contains("column filled_qty"),
        "{text}"
    );
    assert!(text.contains("\"0.5x\" is not a decimal"), "{text}");
    assert_eq!(
        corrupt_column(j.open_orders(None).await),
        ("orders", "filled_qty".into())
    );
    assert_eq!(
        corrupt_column(j.orders(&OrderFilter::default()).await),
        ("orders", "filled_qty".into())
    );
    // A report for a corrupt order is refused and writes nothing.
    assert_eq!(
        corrupt_column(
            j.record(&report("alpha", "c1", ExecKind::Cancelled, 3))
                .await
        ),
        ("orders", "filled_qty".into())
    );
    assert_eq!(j.events("alpha", "c1").await.unwrap().len(), 1);

    j.execute_raw("UPDATE orders SET filled_qty = '0.5', status = 'bogus'")
        .await
        .unwrap();
    assert_eq!(
        corrupt_column(j.order("alpha", "c1").await),
        ("orders", "status".into())
    );
    j.execute_raw("UPDATE orders SET status = 'partially-filled', created_ns = -1")
        .await
        .unwrap();
    assert_eq!(
        corrupt_column(j.order("alpha", "c1").await),
        ("orders", "created_ns".into())
    );
    j.execute_raw("UPDATE orders SET created_ns = 1")
        .await
        .unwrap();
    assert!(j.order("alpha", "c1").await.unwrap().is_some());

    j.execute_raw("UPDATE order_events SET price = '1e5' WHERE seq = 1")
        .await
        .unwrap();
    assert_eq!(
        corrupt_column(j.events("alpha", "c1").await),
        ("order_events", "price".into())
    );
    assert_eq!(
        corrupt_column(j.fills(None, 10).await),
        ("order_events", "price".into())
    );
    j.execute_raw("UPDATE order_events SET price = '10', liquidity = NULL")
        .await
        .unwrap();
    let err = j.events("alpha", "c1").await.unwrap_err().to_string();
    assert!(
        err.contains("order_events row order_id")
            && err.contains("seq 1")
            && err.contains("column liquidity: is NULL in a fill event"),
        "{err}"
    );
    j.execute_raw("UPDATE order_events SET liquidity = 'taker', kind = 'teleported'")
        .await
        .unwrap();
    assert_eq!(
        corrupt_column(j.events("alpha", "c1").await),
        ("order_events", "kind".into())
    );
    j.close().await;
}

async fn decimals_round_trip_exactly(url: String) {
    let j = open(&url).await;
    let values = [
        "1234567890.123456789012345678",  // 28 significant digits
        "0.0000000000000000000000000001", // smallest step, scale 28
        "9999999999999999999999999999",   // 28 nines
        "79228162514264337593543950335",  // Decimal::MAX
        "1.5000000000000000000000000000", // trailing zeros kept
        "-0.0000000000000000000000000001",
    ];
    for (i, v) in values.iter().enumerate() {
        let id = format!("c{i}");
        let mut req = request("alpha", &id, v, Some(v));
        req.qty = d(v).abs();
        j.record_intent("paper", &req, 1).await.unwrap();
        let f = report("alpha", &id, fill(v, v, v), 2);
        j.record(&f).await.unwrap();
        let mut want = OrderState::new(req.clone(), 1);
        want.apply(&f);

        let o = j.order("alpha", &id).await.unwrap().unwrap();
        assert_eq!(
            o.state.request.price.map(|p| p.to_string()).as_deref(),
            Some(*v)
        );
        assert_same_state(&o.state, &want);
        let events = j.events("alpha", &id).await.unwrap();
        let ExecKind::Fill(got) = &events[0].report.kind else {
            panic!("expected a fill, got {:?}", events[0].report.kind);
        };
        for (name, x) in [("qty", got.qty), ("price", got.price), ("fee", got.fee)] {
            assert_eq!(x.to_string(), *v, "{name} of {v}");
            assert_eq!(x.scale(), d(v).scale(), "{name} of {v}");
        }
    }
    j.close().await;
}

#[tokio::test]
async fn unsupported_schemes_and_bad_urls_fail_without_showing_the_password() {
    let err = Journal::open("mysql://trader:hunter2@db/orders")
        .await
        .err()
        .expect("mysql is refused");
    let text = err.to_string();
    assert!(matches!(err, JournalError::Open { .. }), "{text}");
    assert!(text.contains("mysql://db/orders"), "{text}");
    assert!(!text.contains("hunter2"), "{text}");

    let err = Journal::open("postgres://trader:hunter2@127.0.0.1:port/x?password=hunter2")
        .await
        .err()
        .expect("the port is not a number");
    let text = err.to_string();
    assert!(matches!(err, JournalError::Open { .. }), "{text}");
    assert!(
        !text.contains("hunter2") && !text.contains("trader"),
        "{text}"
    );
}

#[test]
fn urls_lose_their_credentials() {
    let cases = [
        (
            "postgres://u:secret@host:5432/db",
            "postgres://host:5432/db",
        ),
        ("postgres://u@host/db", "postgres://host/db"),
        ("postgres://host/db", "postgres://host/db"),
        (
            "postgresql://u:p@ss@host/db?sslmode=require&password=secret",
            "postgresql://host/db?sslmode=require&password=redacted",
        ),
        ("postgres://u:secret@host", "postgres://host"),
        ("sqlite://data/orders.db", "sqlite://data/orders.db"),
        ("sqlite::memory:", "sqlite::memory:"),
    ];
    for (url, want) in cases {
        assert_eq!(redact_url(url), want, "{url}");
    }
}

#[test]
fn enum_texts_round_trip() {
    for s in [Side::Buy, Side::Sell] {
        assert_eq!(Side::parse(Side::as_str(s)), Some(s));
    }
    for k in [OrderKind::Market, OrderKind::Limit] {
        assert_eq!(OrderKind::parse(OrderKind::as_str(k)), Some(k));
    }
    for t in [TimeInForce::Gtc, TimeInForce::Ioc, TimeInForce::Fok] {
        assert_eq!(TimeInForce::parse(TimeInForce::as_str(t)), Some(t));
    }
    for l in [Liquidity::Maker, Liquidity::Taker] {
        assert_eq!(Liquidity::parse(Liquidity::as_str(l)), Some(l));
    }
    for bad in ["", "BUY", "Buy ", "limit\0"] {
        assert_eq!(Side::parse(bad), None);
        assert_eq!(OrderKind::parse(bad), None);
        assert_eq!(TimeInForce::parse(bad), None);
        assert_eq!(Liquidity::parse(bad), None);
    }
}

#[test]
fn the_open_status_list_is_every_status_that_is_not_closed() {
    let all = [
        OrderStatus::Pending,
        OrderStatus::Accepted,
        OrderStatus::PartiallyFilled,
        OrderStatus::Filled,
        OrderStatus::Cancelled,
        OrderStatus::Rejected,
        OrderStatus::Expired,
    ];
    let open: Vec<String> = all
        .iter()
        .filter(|s| !s.is_closed())
        .map(|s| format!("'{}'", s.as_str()))
        .collect();
    assert_eq!(OPEN_STATUSES, format!("({})", open.join(", ")));
}

#[tokio::test]
async fn timestamps_past_i64_are_refused_not_wrapped() {
    let dir = tempfile::tempdir().unwrap();
    let j = open(&format!("sqlite://{}", dir.path().join("o.db").display())).await;
    let ts = Timestamp::MAX;
    assert!(matches!(
        j.record_intent("paper", &request("a", "c", "1", None), ts).await,
        Err(JournalError::TimestampRange(t)) if t == ts
    ));
    assert!(j.order("a", "c").await.unwrap().is_none());
    j.close().await;
}
