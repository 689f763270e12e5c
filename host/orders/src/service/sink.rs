//! The write-behind journal: every record of an in-process venue (the paper exchange), and
//! the refusals and cancel requests of a remote one (they reach no venue, or are not the
//! venue's answer, so nothing waits for them).

use super::*;

/// What the journal writer is asked to write, in order.
pub(super) enum JournalOp {
    Intent(OrderRequest, Timestamp),
    Report(ExecReport),
    /// An order refused before the venue: the `rejected` report and the request.
    Rejection(ExecReport, OrderRequest),
    /// An agent's cancel request that passed the cancel-rate check.
    Cancel(CancelRequest),
}

/// The write-behind journal: an unbounded queue (the router never waits on the disk) drained
/// by a task that writes reports and refusals in batches, one transaction each.
pub(super) struct JournalSink {
    tx: tokio::sync::mpsc::UnboundedSender<JournalOp>,
    queued: Arc<AtomicU64>,
    written: Arc<AtomicU64>,
}

impl JournalSink {
    pub(super) fn start(journal: Journal, venue: Arc<str>) -> JournalSink {
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<JournalOp>();
        let written = Arc::new(AtomicU64::new(0));
        let w = Arc::clone(&written);
        spawn(async move {
            let mut ops = Vec::new();
            while rx.recv_many(&mut ops, 1024).await > 0 {
                let n = ops.len() as u64;
                let mut reports = Vec::new();
                let mut refused = Vec::new();
                let mut cancels = Vec::new();
                for op in ops.drain(..) {
                    match op {
                        JournalOp::Intent(req, now) => {
                            if !reports.is_empty() {
                                write_reports(&journal, &mut reports).await;
                            }
                            if let Err(e) = journal.record_intent(&venue, &req, now).await {
                                tracing::error!(error = %e, client_id = %req.client_id, "paper order intent not journaled");
                            }
                        }
                        JournalOp::Report(r) => reports.push(r),
                        JournalOp::Rejection(r, req) => refused.push((req, r)),
                        JournalOp::Cancel(c) => cancels.push(c),
                    }
                }
                write_reports(&journal, &mut reports).await;
                if !refused.is_empty()
                    && let Err(e) = journal.record_rejections(&venue, &refused).await
                {
                    tracing::error!(error = %e, count = refused.len(), "refused orders not journaled");
                }
                if !cancels.is_empty()
                    && let Err(e) = journal.record_cancel_requests(&venue, &cancels).await
                {
                    tracing::error!(error = %e, count = cancels.len(), "cancel requests not journaled");
                }
                w.fetch_add(n, Ordering::Release);
            }
        });
        JournalSink {
            tx,
            queued: Arc::new(AtomicU64::new(0)),
            written,
        }
    }

    pub(super) fn send(&self, op: JournalOp) {
        if self.tx.send(op).is_ok() {
            self.queued.fetch_add(1, Ordering::Relaxed);
        }
    }

    pub(super) async fn flush(&self, limit: Duration) -> bool {
        let target = self.queued.load(Ordering::Relaxed);
        let deadline = tokio::time::Instant::now() + limit;
        while self.written.load(Ordering::Acquire) < target {
            if tokio::time::Instant::now() > deadline {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        true
    }
}

async fn write_reports(journal: &Journal, reports: &mut Vec<ExecReport>) {
    if reports.is_empty() {
        return;
    }
    if let Err(e) = journal.record_batch(reports).await {
        // One bad report must not lose the batch: write them one by one.
        tracing::warn!(error = %e, "journal batch refused; writing its reports one by one");
        for r in reports.iter() {
            if let Err(e) = journal.record(r).await {
                tracing::error!(error = %e, client_id = %r.client_id, "paper report not journaled");
            }
        }
    }
    reports.clear();
}
