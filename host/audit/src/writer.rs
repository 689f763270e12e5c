//! The group-commit writer: one tokio task takes every record queued (up to [`MAX_BATCH`]),
//! appends them to the chain in one transaction, commits, and only then acknowledges them.
//!
//! Refusals go through [`AuditWriter::record_denial`], which records the first of each
//! capability in full and counts the rest ([`super::denials`]); the task writes the counts as
//! `deny-summary` records when a window ends, when flushed, and when the last writer goes.
//!
//! The chain head is read inside each batch transaction (locked on PostgreSQL, under
//! `BEGIN IMMEDIATE` on SQLite), so a failed transaction leaves the head where it was and
//! the next batch reuses the same seqs; it also keeps the chain whole if several hosts
//! write to one PostgreSQL database.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tokio::sync::{Notify, mpsc, oneshot};
use tokio::time::Instant;

use super::denials::{Admit, DENY_WINDOW, Denials};
use super::store::Backend;
use super::{AuditError, AuditRecord, Decision, now_ns};

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
    denials: Arc<Shared>,
}

/// The denial bookkeeping, shared by every clone and the task.
struct Shared {
    book: Mutex<Denials>,
    /// A window opened: the task must look at its deadline.
    opened: Notify,
}

impl Shared {
    fn book(&self) -> MutexGuard<'_, Denials> {
        self.book
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

impl AuditWriter {
    pub(super) fn start(backend: Backend) -> AuditWriter {
        let (tx, rx) = mpsc::channel(QUEUE_CAPACITY);
        let dropped = Arc::new(AtomicU64::new(0));
        let denials = Arc::new(Shared {
            book: Mutex::new(Denials::new(DENY_WINDOW)),
            opened: Notify::new(),
        });
        tokio::spawn(run(backend, rx, dropped.clone(), denials.clone()));
        AuditWriter {
            tx,
            dropped,
            denials,
        }
    }

    /// Records a refusal (a `decision` with `deny`; anything else goes to
    /// [`AuditWriter::record`] unchanged): the first refusal of each capability of a plugin
    /// build in full, later ones counted and written as one `deny-summary` per capability
    /// name and window ([`super::DENY_WINDOW`]), so a guest cannot fill the disk by being
    /// refused. Fire-and-forget like [`AuditWriter::record`].
    pub fn record_denial(&self, mut rec: AuditRecord) {
        if rec.decision != Some(Decision::Deny) {
            return self.record(rec);
        }
        rec.sanitize();
        let admit = self.denials.book().admit(&rec, Instant::now());
        match admit {
            Admit::InFull => self.record(rec),
            Admit::Counted { opened: true } => self.denials.opened.notify_one(),
            Admit::Counted { opened: false } => {}
        }
    }

    /// Sets how long a window of counted refusals lasts (default [`super::DENY_WINDOW`]);
    /// windows already open keep their start.
    pub fn set_deny_window(&self, window: Duration) {
        self.denials.book().set_window(window);
        self.denials.opened.notify_one();
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

    /// Waits until every record queued before this call is committed, with the summaries of
    /// every open window of counted refusals (or its batch failed: then that batch's error is
    /// returned).
    pub async fn flush(&self) -> Result<(), AuditError> {
        let (ack, rx) = oneshot::channel();
        self.tx
            .send(Msg::Flush(ack))
            .await
            .map_err(|_| AuditError::Closed)?;
        rx.await.map_err(|_| AuditError::Closed)?
    }
}

async fn run(
    backend: Backend,
    mut rx: mpsc::Receiver<Msg>,
    dropped: Arc<AtomicU64>,
    denials: Arc<Shared>,
) {
    let mut msgs = Vec::with_capacity(MAX_BATCH);
    let mut recs = Vec::with_capacity(MAX_BATCH);
    let mut acks: Vec<Option<Ack>> = Vec::with_capacity(MAX_BATCH);
    let mut flushes = Vec::new();
    let mut open = true;
    while open {
        let due = denials.book().next_due();
        let closed = tokio::select! {
            biased;
            n = rx.recv_many(&mut msgs, MAX_BATCH) => n == 0,
            () = denials.opened.notified() => continue,
            () = sleep_until(due), if due.is_some() => false,
        };
        // The last writer is gone: what was counted is written before the task ends.
        open = !closed;
        for m in msgs.drain(..) {
            match m {
                Msg::Append { rec, ack } => {
                    recs.push(rec);
                    acks.push(ack);
                }
                Msg::Flush(ack) => flushes.push(ack),
            }
        }
        let all = !open || !flushes.is_empty();
        for summary in denials.book().take(Instant::now(), now_ns(), all) {
            recs.push(summary);
            acks.push(None);
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

async fn sleep_until(due: Option<Instant>) {
    match due {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}
