//! The remote path of an order after admission: its intent journaled ahead, the send (which
//! re-checks the kill switch and a cancel asked for meanwhile, so nothing stopped before the
//! send reaches the venue), the venue's later answer, and the failpoints the crash tests stop
//! at.

use super::*;

/// A crash-test hook: when `COLONY_FAILPOINT` names this point, the order flow stops here
/// after saying so on stderr: for good (the process keeps running, to be killed with SIGKILL
/// by the test), or, when `COLONY_FAILPOINT_RELEASE` names a file, until that file exists
/// (the test does something while the order is held here, then lets it go on). Costs one
/// comparison when unset.
pub(super) async fn failpoint(name: &str) {
    static POINT: std::sync::OnceLock<(Option<String>, Option<std::path::PathBuf>)> =
        std::sync::OnceLock::new();
    let (point, release) = POINT.get_or_init(|| {
        (
            std::env::var("COLONY_FAILPOINT").ok(),
            std::env::var_os("COLONY_FAILPOINT_RELEASE").map(Into::into),
        )
    });
    if point.as_deref() == Some(name) {
        eprintln!("colony: failpoint {name} reached");
        loop {
            if release.as_ref().is_some_and(|f| f.exists()) {
                eprintln!("colony: failpoint {name} released");
                return;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}

/// What the send of a journaled order finds when it is about to go to the venue.
pub(super) enum BeforeSend {
    /// Nothing stops it.
    Send,
    /// The order closed meanwhile (recovery, a poll): nothing to do.
    Gone,
    /// A kill switch or a cancel came between admission and send: the order is cancelled
    /// here, never sent; the reason is for the log.
    Stop(&'static str),
}

impl OrderService {
    /// [`journal_then_send`](Self::journal_then_send) from a task.
    pub(super) fn spawn_journaled(&self, req: OrderRequest, now: Timestamp) {
        if let Some(svc) = self.me.upgrade() {
            spawn(async move {
                svc.journal_then_send(req, now).await;
            });
        }
    }

    /// Journals the intent (durably) of an order [`dispatch`](Self::dispatch) opened and
    /// hands it to a task that sends it. A journal that cannot be written refuses the order
    /// (`host.journal`): nothing unjournaled is sent.
    pub(super) async fn journal_then_send(
        self: &Arc<Self>,
        req: OrderRequest,
        now: Timestamp,
    ) -> Ack {
        if let Journaling::Ahead(j, _) = &self.journaling
            && let Err(e) = j.record_intent(&self.journal_venue, &req, now).await
        {
            self.journal_errors.fetch_add(1, Ordering::Relaxed);
            let mut core = self.lock();
            let key = (req.agent.clone(), req.client_id.clone());
            core.orders.remove(&key);
            core.unsent.remove(&key);
            core.risk.on_closed(&req.agent, &req.client_id);
            return self.refuse(
                &mut core,
                &req,
                "host.journal",
                format!("intent not journaled: {e}"),
                now,
            );
        }
        let svc = Arc::clone(self);
        spawn(async move {
            failpoint("order.after-intent").await;
            svc.send_journaled(req, now).await;
        });
        Ack::Submitted
    }

    /// Sends a journaled order: marks it sent in the journal, hands it to the venue, and
    /// records the answer. The kill switch and a cancel asked for meanwhile are checked before
    /// the journal's `sent` mark and again under the lock the venue is called under, so a
    /// switch turned on at any moment before the send stops the order here.
    pub(super) async fn send_journaled(self: Arc<Self>, req: OrderRequest, now: Timestamp) {
        let key = (req.agent.clone(), req.client_id.clone());
        let before = {
            let core = self.lock();
            self.before_send(&core, &key)
        };
        if !matches!(before, BeforeSend::Send) {
            return self.stop_unsent(&req, before, now).await;
        }
        if let Journaling::Ahead(j, _) = &self.journaling
            && let Err(e) = j.mark_sent(&req.agent, &req.client_id, now).await
        {
            self.journal_errors.fetch_add(1, Ordering::Relaxed);
            tracing::error!(error = %e, client_id = %req.client_id, "cannot journal the send");
        }
        // The last check and the call to the venue in one hold of the lock, which the kill
        // switch takes too.
        let sent = {
            let mut core = self.lock();
            match self.before_send(&core, &key) {
                BeforeSend::Send => {
                    core.unsent.remove(&key);
                    Ok(self.send(&mut core, &req, now))
                }
                stopped => Err(stopped),
            }
        };
        match sent {
            Ok(Some(answer)) => self.placed(req, now, answer).await,
            Ok(None) => {}
            Err(stopped) => self.stop_unsent(&req, stopped, now).await,
        }
    }

    /// Whether a journaled order may go to the venue now.
    pub(super) fn before_send(&self, core: &Core, key: &OrderKey) -> BeforeSend {
        if !core.orders.contains_key(key) {
            return BeforeSend::Gone;
        }
        if kill_modes(core, &key.0).iter().any(|m| *m != KillMode::Off) {
            return BeforeSend::Stop("kill switch");
        }
        if core.unsent.get(key).copied().unwrap_or(false) {
            return BeforeSend::Stop("cancelled");
        }
        BeforeSend::Send
    }

    /// Closes an order stopped before the venue saw it: a `cancelled` report, journaled and
    /// delivered like any other.
    pub(super) async fn stop_unsent(&self, req: &OrderRequest, before: BeforeSend, now: Timestamp) {
        let key = (req.agent.clone(), req.client_id.clone());
        self.lock().unsent.remove(&key);
        if let BeforeSend::Stop(why) = before {
            tracing::warn!(agent = %req.agent, client_id = %req.client_id, why,
                "order stopped before it reached the venue");
            let report = ExecReport::new(req, None, ExecKind::Cancelled, now);
            self.record(report).await;
        }
    }

    /// After the venue acknowledged an order: if a kill switch that cancels working orders
    /// (`on`, `reducing`) was turned on while the place was on its way, the switch's cancel
    /// may have reached the venue before the order did; the order is cancelled again now.
    pub(super) fn cancel_if_killed(&self, req: &OrderRequest) {
        let mut core = self.lock();
        let cancels = |m: &KillMode| matches!(m, KillMode::On | KillMode::Reducing);
        if !kill_modes(&core, &req.agent).iter().any(cancels) {
            return;
        }
        let key = (req.agent.clone(), req.client_id.clone());
        if self.cancel_at_venue(&mut core, key, crate::wall_ns()) {
            tracing::warn!(agent = %req.agent, client_id = %req.client_id,
                "order acknowledged after the kill switch; cancelling it");
        }
    }

    /// [`placed`](Self::placed) from a task.
    pub(super) fn spawn_placed(
        &self,
        req: OrderRequest,
        now: Timestamp,
        answer: Pending<ExecReport>,
    ) {
        if let Some(svc) = self.me.upgrade() {
            spawn(svc.placed(req, now, answer));
        }
    }

    /// Waits for the venue's later answer to a place and records it. An unknown outcome
    /// (timeout, venue down) leaves the order pending and reconciles it by client id.
    pub(super) async fn placed(
        self: Arc<Self>,
        req: OrderRequest,
        now: Timestamp,
        answer: Pending<ExecReport>,
    ) {
        match answer.await {
            Ok(report) => {
                failpoint("order.after-send").await;
                self.record(report).await;
                failpoint("order.after-ack").await;
                self.cancel_if_killed(&req);
            }
            Err(e) if e.outcome_unknown() => {
                tracing::warn!(error = %e, client_id = %req.client_id,
                    "order outcome unknown; reconciling by client id");
                self.reconcile_later(req);
            }
            Err(e) => {
                let kind = ExecKind::Rejected {
                    code: "venue.unavailable".into(),
                    message: e.to_string(),
                };
                let report = ExecReport::new(&req, None, kind, now);
                self.record(report).await;
            }
        }
    }

    /// Journals a venue's later report when the journal is written ahead, then applies it (so
    /// an event an agent saw is never missing from the journal).
    pub(super) async fn record(&self, report: ExecReport) {
        if let Journaling::Ahead(j, _) = &self.journaling
            && let Err(e) = j.record(&report).await
        {
            self.journal_errors.fetch_add(1, Ordering::Relaxed);
            tracing::error!(error = %e, client_id = %report.client_id, "cannot journal a venue report");
        }
        let mut core = self.lock();
        self.apply(&mut core, report);
    }
}
