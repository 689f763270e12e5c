//! Refusals cannot flood the audit: a hostile guest with no grants hammering refused calls
//! writes a bounded number of rows (the first refusal of each capability in full, then one
//! `deny-summary` per capability name and window), the summaries' counts add up to every
//! refusal, the chain stays valid, and `colony audit` shows the summaries.

use std::time::{Duration, Instant};

use colony_host::audit::{AuditEntry, AuditFilter, AuditKind, DENY_FIRST_IN_FULL, Decision};
use colony_tests::{TestHost, guests, message};

use crate::support::{colony, stderr, stdout};

/// Every deny and deny-summary record of `plugin`, newest first (without flushing: what the
/// writer has committed on its own).
async fn refusal_rows(t: &TestHost, plugin: &str) -> Vec<AuditEntry> {
    t.host
        .audit()
        .query(&AuditFilter {
            plugin: Some(plugin.into()),
            decision: Some(Decision::Deny),
            ..AuditFilter::default()
        })
        .await
        .unwrap()
}

async fn refused_by_guest(t: &TestHost) -> u64 {
    let state = t.state().await;
    let bytes = state.get("flooder", "refused").await.unwrap().unwrap();
    String::from_utf8(bytes).unwrap().parse().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_guest_with_no_grants_hammering_refused_calls_writes_a_bounded_audit() {
    const EVENTS: u64 = 100;
    // Small enough rounds that an event stays inside its 100 ms deadline on a loaded machine.
    const ROUNDS: u64 = 100;
    let window = Duration::from_millis(300);
    let t = TestHost::start(&[(guests::DENYFLOOD_AGENT, "flooder.wasm")]).await;
    t.host.audit().writer().set_deny_window(window);

    let started = Instant::now();
    for _ in 0..EVENTS {
        t.host
            .deliver(
                "flooder",
                message("test", format!("hammer:{ROUNDS}").as_bytes()),
            )
            .await
            .unwrap();
    }
    let refused = refused_by_guest(&t).await;
    assert_eq!(refused, EVENTS * ROUNDS * 3, "every call was refused");

    // The counts reach the store when their window ends, without anyone flushing.
    t.eventually("every refusal is accounted for in the audit", || async {
        refusal_rows(&t, "flooder")
            .await
            .iter()
            .map(AuditEntry::refusals)
            .sum::<u64>()
            == refused
    })
    .await;
    let elapsed = started.elapsed();

    t.host.audit().writer().flush().await.unwrap();
    let rows = refusal_rows(&t, "flooder").await;
    let full = rows
        .iter()
        .filter(|r| r.kind == AuditKind::Decision)
        .count();
    let summaries: Vec<&AuditEntry> = rows
        .iter()
        .filter(|r| r.kind == AuditKind::DenySummary)
        .collect();
    assert_eq!(
        full, DENY_FIRST_IN_FULL,
        "the first refusals are kept whole"
    );
    assert!(!summaries.is_empty());
    // Two capability names (publish, subscribe), one summary each per window at most.
    let windows = (elapsed.as_millis() / window.as_millis()) as usize + 2;
    assert!(
        summaries.len() <= 2 * windows,
        "{} summaries for {windows} windows of two names",
        summaries.len()
    );
    assert_eq!(
        rows.iter().map(AuditEntry::refusals).sum::<u64>(),
        refused,
        "full records plus summary counts are every refusal"
    );
    assert!(
        rows.len() < 500,
        "{} rows for {refused} refusals",
        rows.len()
    );
    for s in &summaries {
        assert_eq!(s.actor, "host");
        assert!(
            s.capability == "messaging.publish"
                || s.capability == "messaging.publish:same"
                || s.capability == "messaging.subscribe",
            "{s:?}"
        );
    }
    let report = t.host.audit().verify().await.unwrap();
    assert!(report.is_intact(), "{report:?}");

    // The operator sees them for what they are.
    let data = t.dir.path().join("data");
    let out = colony(&data, &["audit", "--plugin", "flooder", "--limit", "5"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    assert!(text.contains("deny-summary"), "{text}");
    assert!(text.contains("more refused in"), "{text}");
    let out = colony(&data, &["audit", "verify"]);
    assert!(out.status.success(), "{}", stderr(&out));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn counted_refusals_are_written_when_the_store_closes() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("audit.db");
    let store = colony_host::audit::AuditStore::open_sqlite(&path)
        .await
        .unwrap();
    let writer = store.writer();
    // A long window: only closing the store can write the summary.
    writer.set_deny_window(Duration::from_secs(3600));
    for _ in 0..5_000 {
        writer.record_denial(colony_host::audit::AuditRecord::decision(
            "p",
            "d",
            "orders.place:BTC-USDT",
            Decision::Deny,
        ));
    }
    drop(writer);
    store.close().await.unwrap();

    let store = colony_host::audit::AuditStore::open_sqlite(&path)
        .await
        .unwrap();
    let rows = store.query(&AuditFilter::default()).await.unwrap();
    assert_eq!(rows.len(), 2, "{rows:?}");
    assert_eq!(rows.iter().map(AuditEntry::refusals).sum::<u64>(), 5_000);
    assert_eq!(rows[0].kind, AuditKind::DenySummary);
    assert_eq!(rows[0].capability, "orders.place:BTC-USDT");
    assert!(store.verify().await.unwrap().is_intact());
}
