//! The audit store against both real backends: every scenario runs on SQLite (a temp dir)
//! and on PostgreSQL at `postgres://postgres@127.0.0.1:5432/` (a fresh database per test,
//! dropped afterwards). PostgreSQL is required infrastructure: if it is unreachable the
//! `postgres::` tests fail.

use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};

use colony_host::audit::{
    AuditError, AuditFilter, AuditKind, AuditRecord, AuditStore, CapabilityMatch, Decision,
    bench_append, testing,
};

const PG_SERVER: &str = "postgres://postgres@127.0.0.1:5432/";

/// A database for one test: a SQLite file in a temp dir, or a fresh PostgreSQL database.
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
        let nanos = colony_host::audit::now_ns();
        let name = format!(
            "colony_test_{}_{}_{}",
            std::process::id(),
            nanos,
            NEXT.fetch_add(1, Ordering::Relaxed)
        );
        if let Err(e) = testing::create_postgres_database(PG_SERVER, &name).await {
            panic!("PostgreSQL at {PG_SERVER} is required for the audit tests: {e}");
        }
        TestDb::Postgres(name)
    }

    fn url(&self) -> String {
        match self {
            TestDb::Sqlite(dir) => format!("sqlite://{}", dir.path().join("audit.db").display()),
            TestDb::Postgres(name) => format!("{}{name}", PG_SERVER),
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

/// One test per scenario and backend: `audit::sqlite::NAME` and `audit::postgres::NAME`.
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
    append_and_query_by_every_filter,
    verify_passes_on_an_intact_chain,
    verify_finds_an_edited_row,
    verify_finds_a_deleted_row,
    verify_finds_a_deleted_tail,
    group_commit_acks_concurrent_appends_in_one_chain,
    reopen_continues_the_chain,
    a_failed_batch_fails_all_its_waiters_and_moves_nothing,
);

async fn open(url: &str) -> AuditStore {
    AuditStore::open(url).await.expect("open audit store")
}

/// Appends `n` decision records one after another; returns their seqs.
async fn append_decisions(store: &AuditStore, n: u64) -> Vec<u64> {
    let w = store.writer();
    let mut seqs = Vec::new();
    for i in 0..n {
        let d = if i % 3 == 0 {
            Decision::Deny
        } else {
            Decision::Allow
        };
        let rec = AuditRecord::decision("trader", "d1", "orders.place:BTC-USDT", d)
            .with_detail(format!("call {i}"));
        seqs.push(w.append(rec).await.expect("append"));
    }
    seqs
}

fn seqs(entries: &[colony_host::audit::AuditEntry]) -> Vec<u64> {
    entries.iter().map(|e| e.seq).collect()
}

async fn append_and_query_by_every_filter(url: String) {
    let store = open(&url).await;
    let w = store.writer();
    let recs = [
        AuditRecord::plugin_seen("trader", "0.1.0", "d1").at(1000),
        AuditRecord::grant("alice", "trader", "d1", "orders.place:BTC-USDT").at(2000),
        AuditRecord::decision("trader", "d1", "orders.place:BTC-USDT", Decision::Allow).at(3000),
        AuditRecord::decision("trader", "d1", "orders.place:ETH-USDT", Decision::Deny).at(4000),
        AuditRecord::decision("scout", "d2", "market.read:BTC-USDT", Decision::Allow).at(5000),
        AuditRecord::decision("scout", "d2", "messaging.publish:md.x", Decision::Deny).at(6000),
        AuditRecord::revoke("alice", "trader", "d1", "orders.place:BTC-USDT").at(7000),
        AuditRecord::approve("bob", "scout", "d2").at(8000),
        AuditRecord::plugin_seen("trader", "0.1.0", "d1").at(9000),
        AuditRecord::plugin_seen("scout", "0.2.0", "d2").at(9500),
    ];
    for (i, rec) in recs.iter().enumerate() {
        assert_eq!(w.append(rec.clone()).await.unwrap(), i as u64 + 1);
    }

    let q = |f: AuditFilter| {
        let store = store.clone();
        async move { seqs(&store.query(&f).await.unwrap()) }
    };
    let all = store.query(&AuditFilter::default()).await.unwrap();
    assert_eq!(seqs(&all), (1..=10).rev().collect::<Vec<_>>());
    let grant = &all[8];
    assert_eq!(grant.kind, AuditKind::Grant);
    assert_eq!(
        (
            grant.actor.as_str(),
            grant.plugin.as_str(),
            grant.digest.as_str()
        ),
        ("alice", "trader", "d1")
    );
    assert_eq!(grant.capability, "orders.place:BTC-USDT");
    assert_eq!((grant.ts_ns, grant.decision), (2000, None));
    assert_eq!(grant.hash.len(), 64);

    let cases: Vec<(&str, AuditFilter, Vec<u64>)> = vec![
        (
            "plugin",
            AuditFilter {
                plugin: Some("trader".into()),
                ..Default::default()
            },
            vec![9, 7, 4, 3, 2, 1],
        ),
        (
            "capability prefix",
            AuditFilter {
                capability: Some(CapabilityMatch::Prefix("orders.".into())),
                ..Default::default()
            },
            vec![7, 4, 3, 2],
        ),
        (
            "capability exact",
            AuditFilter {
                capability: Some(CapabilityMatch::Exact("orders.place:BTC-USDT".into())),
                ..Default::default()
            },
            vec![7, 3, 2],
        ),
        (
            "capability name",
            AuditFilter {
                capability: Some(CapabilityMatch::parse("market.read")),
                ..Default::default()
            },
            vec![5],
        ),
        (
            "decision deny",
            AuditFilter {
                decision: Some(Decision::Deny),
                ..Default::default()
            },
            vec![6, 4],
        ),
        (
            "decision allow",
            AuditFilter {
                decision: Some(Decision::Allow),
                ..Default::default()
            },
            vec![5, 3],
        ),
        (
            "kind grant",
            AuditFilter {
                kind: Some(AuditKind::Grant),
                ..Default::default()
            },
            vec![2],
        ),
        (
            "kind revoke",
            AuditFilter {
                kind: Some(AuditKind::Revoke),
                ..Default::default()
            },
            vec![7],
        ),
        (
            "kind approve",
            AuditFilter {
                kind: Some(AuditKind::Approve),
                ..Default::default()
            },
            vec![8],
        ),
        (
            "kind plugin-seen",
            AuditFilter {
                kind: Some(AuditKind::PluginSeen),
                ..Default::default()
            },
            vec![10, 9, 1],
        ),
        (
            "since and until (exclusive)",
            AuditFilter {
                since_ns: Some(3000),
                until_ns: Some(6000),
                ..Default::default()
            },
            vec![5, 4, 3],
        ),
        (
            "limit",
            AuditFilter {
                limit: Some(2),
                ..Default::default()
            },
            vec![10, 9],
        ),
        (
            "combined",
            AuditFilter {
                plugin: Some("trader".into()),
                capability: Some(CapabilityMatch::parse("orders.")),
                decision: Some(Decision::Deny),
                since_ns: Some(1),
                ..Default::default()
            },
            vec![4],
        ),
        (
            "no match",
            AuditFilter {
                plugin: Some("nobody".into()),
                ..Default::default()
            },
            vec![],
        ),
    ];
    for (what, filter, want) in cases {
        assert_eq!(q(filter).await, want, "{what}");
    }

    let seen = store.plugins_seen().await.unwrap();
    assert_eq!(seen.len(), 2, "{seen:?}");
    assert_eq!(
        (seen[0].name.as_str(), seen[0].version.as_str()),
        ("scout", "0.2.0")
    );
    assert_eq!(
        (
            seen[1].name.as_str(),
            seen[1].digest.as_str(),
            seen[1].first_seen_ns,
            seen[1].last_seen_ns
        ),
        ("trader", "d1", 1000, 9000)
    );

    // Fire-and-forget records arrive in the same chain once flushed.
    w.record(AuditRecord::decision(
        "scout",
        "d2",
        "state",
        Decision::Allow,
    ));
    w.flush().await.unwrap();
    assert_eq!(w.dropped(), 0);
    let last = store
        .query(&AuditFilter {
            limit: Some(1),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!((last[0].seq, last[0].capability.as_str()), (11, "state"));
    let report = store.verify().await.unwrap();
    assert!(report.is_intact(), "{report:?}");
    assert_eq!(report.records, 11);
    store.close().await.unwrap();
}

async fn verify_passes_on_an_intact_chain(url: String) {
    let store = open(&url).await;
    let empty = store.verify().await.unwrap();
    assert!(empty.is_intact(), "{empty:?}");
    assert_eq!((empty.records, empty.verified_head.seq), (0, 0));
    assert_eq!(
        append_decisions(&store, 25).await,
        (1..=25).collect::<Vec<_>>()
    );
    let report = store.verify().await.unwrap();
    assert!(report.is_intact(), "{report:?}");
    assert_eq!(report.records, 25);
    assert_eq!(report.verified_head, store.head().await.unwrap());
    assert_eq!(report.verified_head.seq, 25);
    store.close().await.unwrap();
}

async fn verify_finds_an_edited_row(url: String) {
    let store = open(&url).await;
    append_decisions(&store, 20).await;
    // The append-only triggers refuse an ordinary edit...
    let refused = testing::execute(&store, "UPDATE audit_log SET detail = 'x' WHERE seq = 7").await;
    assert!(refused.is_err(), "an UPDATE of audit_log was allowed");
    assert!(store.verify().await.unwrap().is_intact());
    // ...and an attacker who drops them is caught by the chain.
    testing::drop_append_only_guard(&store).await.unwrap();
    let n = testing::execute(
        &store,
        "UPDATE audit_log SET decision = 'allow' WHERE seq = 7",
    )
    .await
    .unwrap();
    assert_eq!(n, 1);
    let report = store.verify().await.unwrap();
    let broken = report.first_broken.clone().expect("edit not detected");
    assert_eq!(broken.seq, 7, "{report:?}");
    assert!(broken.reason.contains("edited"), "{}", broken.reason);
    assert_eq!(report.verified_head.seq, 6);

    // An edit further down is still reported at the first broken link.
    testing::execute(&store, "UPDATE audit_log SET ts_ns = 1 WHERE seq = 3")
        .await
        .unwrap();
    assert_eq!(store.verify().await.unwrap().first_broken.unwrap().seq, 3);
    store.close().await.unwrap();
}

async fn verify_finds_a_deleted_row(url: String) {
    let store = open(&url).await;
    append_decisions(&store, 20).await;
    assert!(
        testing::execute(&store, "DELETE FROM audit_log WHERE seq = 11")
            .await
            .is_err(),
        "a DELETE from audit_log was allowed"
    );
    testing::drop_append_only_guard(&store).await.unwrap();
    testing::execute(&store, "DELETE FROM audit_log WHERE seq = 11")
        .await
        .unwrap();
    let broken = store.verify().await.unwrap().first_broken.unwrap();
    assert_eq!(broken.seq, 11);
    assert_eq!(broken.reason, "record 11 is missing (deleted)");

    // Closing the gap by renumbering does not help: the next record no longer links.
    testing::execute(&store, "UPDATE audit_log SET seq = seq - 1 WHERE seq > 11")
        .await
        .unwrap();
    let broken = store.verify().await.unwrap().first_broken.unwrap();
    assert_eq!(broken.seq, 11);
    assert!(broken.reason.contains("does not link"), "{}", broken.reason);
    store.close().await.unwrap();
}

async fn verify_finds_a_deleted_tail(url: String) {
    let store = open(&url).await;
    append_decisions(&store, 20).await;
    testing::drop_append_only_guard(&store).await.unwrap();
    testing::execute(&store, "DELETE FROM audit_log WHERE seq > 15")
        .await
        .unwrap();
    let report = store.verify().await.unwrap();
    let broken = report
        .first_broken
        .clone()
        .expect("truncation not detected");
    assert_eq!(broken.seq, 16, "{report:?}");
    assert!(broken.reason.contains("truncated"), "{}", broken.reason);
    assert_eq!(report.verified_head.seq, 15);

    // The writer continues after the recorded head, so the gap stays visible.
    let seq = store
        .writer()
        .append(AuditRecord::decision(
            "trader",
            "d1",
            "state",
            Decision::Allow,
        ))
        .await
        .unwrap();
    assert_eq!(seq, 21);
    let broken = store.verify().await.unwrap().first_broken.unwrap();
    assert_eq!(broken.seq, 16);
    assert!(broken.reason.contains("missing"), "{}", broken.reason);

    // Deleting everything is caught too.
    testing::execute(&store, "DELETE FROM audit_log")
        .await
        .unwrap();
    let broken = store.verify().await.unwrap().first_broken.unwrap();
    assert_eq!(broken.seq, 1);
    store.close().await.unwrap();
}

async fn group_commit_acks_concurrent_appends_in_one_chain(url: String) {
    const TASKS: u64 = 8;
    const PER_TASK: u64 = 1250;
    let store = open(&url).await;
    let mut producers = tokio::task::JoinSet::new();
    for t in 0..TASKS {
        let w = store.writer();
        producers.spawn(async move {
            let mut appends = tokio::task::JoinSet::new();
            for i in 0..PER_TASK {
                let w = w.clone();
                appends.spawn(async move {
                    let rec = AuditRecord::decision(
                        &format!("agent-{t}"),
                        "d",
                        "messaging.publish:x",
                        Decision::Allow,
                    )
                    .with_detail(format!("{i}"));
                    w.append(rec).await
                });
            }
            let mut seqs = Vec::new();
            while let Some(r) = appends.join_next().await {
                seqs.push(r.expect("append task").expect("append acked"));
            }
            seqs
        });
    }
    let mut all = Vec::new();
    while let Some(r) = producers.join_next().await {
        all.extend(r.unwrap());
    }
    all.sort_unstable();
    assert_eq!(all, (1..=TASKS * PER_TASK).collect::<Vec<_>>());
    assert_eq!(store.head().await.unwrap().seq, TASKS * PER_TASK);
    let report = store.verify().await.unwrap();
    assert!(report.is_intact(), "{report:?}");
    assert_eq!(report.records, TASKS * PER_TASK);
    for t in 0..TASKS {
        let mine = store
            .query(&AuditFilter {
                plugin: Some(format!("agent-{t}")),
                ..Default::default()
            })
            .await
            .unwrap();
        assert_eq!(mine.len() as u64, PER_TASK);
    }
    store.close().await.unwrap();
}

async fn reopen_continues_the_chain(url: String) {
    let store = open(&url).await;
    append_decisions(&store, 5).await;
    let head = store.head().await.unwrap();
    store.close().await.unwrap();

    let store = open(&url).await;
    assert_eq!(store.head().await.unwrap(), head);
    assert_eq!(append_decisions(&store, 3).await, vec![6, 7, 8]);
    let report = store.verify().await.unwrap();
    assert!(report.is_intact(), "{report:?}");
    assert_eq!(report.records, 8);
    store.close().await.unwrap();
}

async fn a_failed_batch_fails_all_its_waiters_and_moves_nothing(url: String) {
    let store = open(&url).await;
    append_decisions(&store, 3).await;
    let head = store.head().await.unwrap();
    testing::execute(&store, "ALTER TABLE audit_log RENAME TO audit_log_away")
        .await
        .unwrap();
    let mut waiters = tokio::task::JoinSet::new();
    for _ in 0..5 {
        let w = store.writer();
        waiters.spawn(async move {
            w.append(AuditRecord::decision(
                "trader",
                "d1",
                "state",
                Decision::Allow,
            ))
            .await
        });
    }
    while let Some(r) = waiters.join_next().await {
        match r.unwrap() {
            Err(AuditError::Write(_)) => {}
            other => panic!("expected a batch error, got {other:?}"),
        }
    }
    assert_eq!(store.head().await.unwrap(), head);
    testing::execute(&store, "ALTER TABLE audit_log_away RENAME TO audit_log")
        .await
        .unwrap();
    assert_eq!(append_decisions(&store, 1).await, vec![4]);
    let report = store.verify().await.unwrap();
    assert!(report.is_intact(), "{report:?}");
    store.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bench_append_reports_a_rate_and_leaves_an_intact_chain() {
    let dir = tempfile::tempdir().unwrap();
    let store = AuditStore::open_sqlite(&dir.path().join("audit.db"))
        .await
        .unwrap();
    let n: u64 = std::env::var("COLONY_AUDIT_BENCH_N")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(2_000);
    let rate = bench_append(&store, n).await.unwrap();
    println!("audit bench_append on SQLite: {n} records, {rate:.0} records/s");
    assert!(rate > 0.0);
    let report = store.verify().await.unwrap();
    assert!(report.is_intact(), "{report:?}");
    assert_eq!(report.records, n);
}
