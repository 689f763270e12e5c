//! The group-commit writer: one tokio task takes every record queued (up to [`MAX_BATCH`]),
//! appends them to the chain in one transaction, commits, and only then acknowledges them.
//!
//! The chain head is read inside each batch transaction (locked on PostgreSQL, under
//! `BEGIN IMMEDIATE` on SQLite), so a failed transaction leaves the head where it was and
//! the next batch reuses the same seqs; it also keeps the chain whole if several hosts
//! write to one PostgreSQL database.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use tokio::sync::{mpsc, oneshot};

use super::store::Backend;
use super::{AuditError, AuditRecord};

/// Most records written in one transaction.
pub const MAX_BATCH: usize = 1024;
/// Records that may wait for the writer; past this [`AuditWriter::record`] drops and
/// [`AuditWriter::append`] waits for room.
pub const QUEUE_CAPACITY: usize = 16 * 1024;

type Ack = oneshot::Sender<Result<u64, AuditError>>;

enum Msg {
    Append { rec: AuditRecord, ack: Option<Ack> },
    Flush(oneshot::Sender<Result<(), AuditError>>),
}

/// Appends records to the audit log. Cheap to clone; all clones feed one writer task, which
/// stops when the last clone (and the [`super::AuditStore`]) is dropped.
#[derive(Clone)]
pub struct AuditWriter {
    tx: mpsc::Sender<Msg>,
    dropped: Arc<AtomicU64>,
}

impl AuditWriter {
    pub(super) fn start(backend: Backend) -> AuditWriter {
        let (tx, rx) = mpsc::channel(QUEUE_CAPACITY);
        let dropped = Arc::new(AtomicU64::new(0));
        tokio::spawn(run(backend, rx, dropped.clone()));
        AuditWriter { tx, dropped }
    }

    /// Appends `rec` and returns its seq once the batch holding it has committed: an
    /// acknowledged record is durable. Waits for queue room if the writer is behind.
    pub async fn append(&self, rec: AuditRecord) -> Result<u64, AuditError> {
        let ack = self.submit(rec).await?;
        ack.await.map_err(|_| AuditError::Closed)?
    }

    /// Queues `rec` and returns the receiver of its acknowledgement (for pipelining many
    /// appends from one task, as the benchmark does).
    pub(crate) async fn submit(
        &self,
        mut rec: AuditRecord,
    ) -> Result<oneshot::Receiver<Result<u64, AuditError>>, AuditError> {
        rec.sanitize();
        let (ack, rx) = oneshot::channel();
        self.tx
            .send(Msg::Append {
                rec,
                ack: Some(ack),
            })
            .await
            .map_err(|_| AuditError::Closed)?;
        Ok(rx)
    }

    /// Fire-and-forget: queues `rec` without waiting. Never blocks and never panics, and the
    /// record is **not acknowledged**: if the queue is full or the writer has stopped it is
    /// dropped, and if its batch fails to commit it is lost; both are counted in
    /// [`AuditWriter::dropped`]. Use [`AuditWriter::append`] where the record must exist
    /// before the action goes ahead (grants, revocations, approvals).
    pub fn record(&self, mut rec: AuditRecord) {
        rec.sanitize();
        if self.tx.try_send(Msg::Append { rec, ack: None }).is_err() {
            self.dropped.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Fire-and-forget records that never reached the log, since the store was opened.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }

    /// Waits until every record queued before this call is committed (or its batch failed:
    /// then that batch's error is returned).
    pub async fn flush(&self) -> Result<(), AuditError> {
        let (ack, rx) = oneshot::channel();
        self.tx
            .send(Msg::Flush(ack))
            .await
            .map_err(|_| AuditError::Closed)?;
        rx.await.map_err(|_| AuditError::Closed)?
    }
}

async fn run(backend: Backend, mut rx: mpsc::Receiver<Msg>, dropped: Arc<AtomicU64>) {
    let mut msgs = Vec::with_capacity(MAX_BATCH);
    let mut recs = Vec::with_capacity(MAX_BATCH);
    let mut acks: Vec<Option<Ack>> = Vec::with_capacity(MAX_BATCH);
    let mut flushes = Vec::new();
    while rx.recv_many(&mut msgs, MAX_BATCH).await > 0 {
        for m in msgs.drain(..) {
            match m {
                Msg::Append { rec, ack } => {
                    recs.push(rec);
                    acks.push(ack);
                }
                Msg::Flush(ack) => flushes.push(ack),
            }
        }
        let result = if recs.is_empty() {
            Ok(0)
        } else {
            backend.write_batch(&recs).await
        };
        match result {
            Ok(first) => {
                for (i, ack) in acks.drain(..).enumerate() {
                    if let Some(ack) = ack {
                        let _ = ack.send(Ok(first + i as u64));
                    }
                }
                for f in flushes.drain(..) {
                    let _ = f.send(Ok(()));
                }
            }
            Err(e) => {
                let text: Arc<str> = e.to_string().into();
                let lost = acks.iter().filter(|a| a.is_none()).count() as u64;
                dropped.fetch_add(lost, Ordering::Relaxed);
                tracing::error!(
                    records = recs.len(),
                    unacknowledged_lost = lost,
                    "audit batch not written: {text}"
                );
                for ack in acks.drain(..).flatten() {
                    let _ = ack.send(Err(AuditError::Write(text.clone())));
                }
                for f in flushes.drain(..) {
                    let _ = f.send(Err(AuditError::Write(text.clone())));
                }
            }
        }
        recs.clear();
    }
}
