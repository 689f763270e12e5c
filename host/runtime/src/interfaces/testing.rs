//! What the interfaces' unit tests share: a policy over given grants, auditing to a store in
//! a temporary directory, and the decision records it wrote.

use std::path::Path;
use std::time::{Duration, Instant};

use crate::audit::{AuditEntry, AuditFilter, AuditStore};
use crate::policy::Policy;
use colony_caps::GrantSet;

/// An audit store in `dir`.
pub(crate) async fn audit_store(dir: &Path) -> AuditStore {
    AuditStore::open_sqlite(&dir.join("audit.db"))
        .await
        .unwrap_or_else(|e| panic!("audit store: {e}"))
}

/// The policy of plugin `p` with `grants`, auditing to `audit` (every allow is sampled).
pub(crate) fn policy(grants: &[&str], audit: Option<&AuditStore>) -> Policy {
    let caps = grants
        .iter()
        .map(|g| g.parse().unwrap_or_else(|e| panic!("{g}: {e}")));
    Policy::new(
        "p".into(),
        "digest".into(),
        GrantSet::new(caps),
        audit.map(|a| a.writer()),
        1,
    )
}

/// The decision records on capabilities starting with `prefix`, waiting (up to 5 s) until
/// there is one.
pub(crate) async fn decisions(store: &AuditStore, prefix: &str) -> Vec<AuditEntry> {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let found: Vec<AuditEntry> = store
            .query(&AuditFilter::default())
            .await
            .unwrap_or_else(|e| panic!("query: {e}"))
            .into_iter()
            .filter(|r| r.decision.is_some() && r.capability.starts_with(prefix))
            .collect();
        if !found.is_empty() || Instant::now() > deadline {
            return found;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
