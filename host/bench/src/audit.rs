//! The audit store's append throughput.

use crate::tempfile_dir;

/// Audit store throughput: acknowledged records per second appended to a fresh SQLite store
/// (WAL, `synchronous=FULL`, group commit).
pub async fn audit_throughput(records: u64) -> anyhow::Result<f64> {
    let dir = tempfile_dir()?;
    let store = colony_host::audit::AuditStore::open_sqlite(&dir.join("audit.db")).await?;
    let rate = colony_host::audit::bench_append(&store, records).await?;
    let report = store.verify().await?;
    store.close().await?;
    let _ = std::fs::remove_dir_all(&dir);
    anyhow::ensure!(
        report.is_intact() && report.records == records,
        "the bench chain is not intact"
    );
    Ok(rate)
}
