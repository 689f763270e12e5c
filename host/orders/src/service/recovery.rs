//! Recovery: start-up recovery from the journal, reconciling orders whose outcome is unknown
//! with the venue, and polling a remote venue for what changed.

use super::*;
use crate::{FillReport, Liquidity};

/// Most journaled orders read back at start (today's client ids and every working order).
const RECOVER_LIMIT: u32 = 1_000_000;

/// What start-up recovery found in the journal.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct RecoveryReport {
    /// Orders of today (and working ones) read back.
    pub known: u64,
    /// Of those, orders the journal had as working.
    pub open: u64,
    /// Working orders the live venue answered for.
    pub reconciled: u64,
    /// Working paper orders expired (the paper book did not survive the restart).
    pub expired: u64,
    /// Working orders the venue could not be asked about yet (retried in the background).
    pub unresolved: u64,
    /// Journaled fills replayed into the risk engine (positions, the day's realised PnL).
    pub fills: u64,
    /// Cancel requests of the last minute put back into the cancel-rate window.
    pub cancels: u64,
}

/// The reports that bring `state` (the journal's) up to what the venue says (`v`).
pub fn reconcile_reports(state: &OrderState, v: &VenueOrder, now: Timestamp) -> Vec<ExecReport> {
    let req = &state.request;
    let report = |kind| ExecReport::new(req, Some(v.venue_order_id.clone()), kind, now);
    let mut out = Vec::new();
    if state.status == OrderStatus::Pending && v.status != OrderStatus::Rejected {
        out.push(report(ExecKind::Accepted));
    }
    if v.filled_qty > state.filled_qty {
        let qty = v.filled_qty - state.filled_qty;
        // The new fills' price: the venue's average over everything, less what is known.
        let price = v
            .avg_price
            .and_then(|avg| avg.checked_mul(v.filled_qty))
            .and_then(|total| total.checked_sub(state.filled_notional))
            .and_then(|rest| rest.checked_div(qty))
            .or(v.avg_price)
            .unwrap_or(Decimal::ZERO);
        out.push(report(ExecKind::Fill(FillReport {
            qty,
            price,
            fee: Decimal::ZERO,
            fee_currency: "".into(),
            liquidity: Liquidity::Taker,
        })));
    }
    match v.status {
        OrderStatus::Cancelled => out.push(report(ExecKind::Cancelled)),
        OrderStatus::Expired => out.push(report(ExecKind::Expired)),
        OrderStatus::Rejected => out.push(report(ExecKind::Rejected {
            code: "venue.rejected".into(),
            message: format!("venue state {}", v.venue_state),
        })),
        _ => {}
    }
    out
}

impl OrderService {
    /// Asks the venue about an order whose send had no known outcome, a few times with
    /// backoff, and records what it says; if the venue never got it, sends it again with the
    /// same client id.
    pub(super) fn reconcile_later(self: &Arc<Self>, req: OrderRequest) {
        let svc = Arc::clone(self);
        spawn(async move {
            let mut wait = Duration::from_millis(200);
            for _ in 0..6 {
                tokio::time::sleep(wait).await;
                wait = (wait * 2).min(Duration::from_secs(10));
                if svc.reconcile_one(&req).await {
                    return;
                }
            }
            svc.unresolved.fetch_add(1, Ordering::Relaxed);
            tracing::error!(client_id = %req.client_id, agent = %req.agent,
                "order state unknown after retries; it stays pending until the next start");
        });
    }

    /// Queries one pending or working order at the venue and records the difference.
    /// Returns whether the venue answered.
    async fn reconcile_one(self: &Arc<Self>, req: &OrderRequest) -> bool {
        let key = (req.agent.clone(), req.client_id.clone());
        let Some(state) = self.lock().orders.get(&key).cloned() else {
            return true;
        };
        match Arc::clone(&self.venue).query(req).await {
            Ok(Some(v)) => {
                let _one_at_a_time = self.reconciling.lock().await;
                // The state now, not before the query: a cancel's confirmation or another
                // lookup may have recorded something (or closed the order) meanwhile.
                let Some(state) = self.lock().orders.get(&key).cloned() else {
                    return true;
                };
                let now = crate::wall_ns();
                for r in reconcile_reports(&state, &v, now) {
                    self.record(r).await;
                }
                true
            }
            Ok(None) if state.status == OrderStatus::Pending => {
                // The venue never got it: sending it now (same client id) sends it once.
                tracing::info!(client_id = %req.client_id, "venue does not know the order; sending it");
                Box::pin(Arc::clone(self).send_journaled(req.clone(), state.created)).await;
                true
            }
            Ok(None) => {
                let now = crate::wall_ns();
                let report =
                    ExecReport::new(req, state.venue_order_id.clone(), ExecKind::Expired, now);
                self.record(report).await;
                true
            }
            Err(e) => {
                tracing::warn!(error = %e, client_id = %req.client_id, "reconcile query failed");
                false
            }
        }
    }

    /// Start-up recovery from the journal, before any agent runs: with a remote venue the risk
    /// engine gets back its state (every journaled fill replayed, in time order, into
    /// positions and the day's realised PnL; today's client ids taken; working orders open;
    /// the last minute's orders and cancel requests in the order- and cancel-rate windows),
    /// and working orders are reconciled
    /// with the venue by client id (sent now if the venue never got them). Orders left working
    /// on an in-process venue (the paper exchange), which did not survive the restart, are
    /// expired; its account starts afresh with the run, and so does its risk state.
    pub async fn recover(self: &Arc<Self>, now: Timestamp) -> Result<RecoveryReport, JournalError> {
        let mut report = RecoveryReport::default();
        let Some(j) = self.journal.clone() else {
            return Ok(report);
        };
        let in_process = self.venue.kind() == VenueKind::InProcess;
        let today = now / NANOS_PER_DAY;
        let orders = j
            .orders(&OrderFilter {
                limit: Some(RECOVER_LIMIT),
                ..OrderFilter::default()
            })
            .await?;
        let (fills, cancels) = if in_process {
            (Vec::new(), Vec::new())
        } else {
            let minute_ago = now.saturating_sub(60 * 1_000_000_000);
            (
                j.venue_fills(&self.journal_venue).await?,
                j.cancel_requests_since(&self.journal_venue, minute_ago)
                    .await?,
            )
        };
        let mut open = Vec::new();
        {
            let mut core = self.lock();
            for f in &fills {
                let fill = risk::Fill {
                    agent: f.agent.clone(),
                    client_id: None,
                    symbol: f.symbol.clone(),
                    side: f.side,
                    qty: f.fill.qty,
                    price: f.fill.price,
                    fee: f.fill.fee,
                };
                match core.risk.replay_fill(&fill, f.ts) {
                    Ok(()) => report.fills += 1,
                    Err(e) => tracing::error!(error = %e, client_id = %f.client_id,
                        "journaled fill not replayed into risk"),
                }
            }
            core.risk.advance_to(now);
            for c in &cancels {
                core.risk.restore_cancel(&c.agent, c.ts, now);
            }
            report.cancels = cancels.len() as u64;
            for o in &orders {
                let working = !o.state.status.is_closed();
                if in_process {
                    // An in-process venue starts afresh every run: a working order of an
                    // earlier run lost its book; its client id belongs to that run.
                    if working && o.venue.starts_with(&*self.name) {
                        open.push(o.state.request.clone());
                        report.known += 1;
                    }
                    continue;
                }
                if o.venue != *self.journal_venue
                    || (o.state.created / NANOS_PER_DAY < today && !working)
                {
                    continue;
                }
                report.known += 1;
                let created = o.state.created;
                if working {
                    core.risk
                        .restore(&o.state.request, Some(o.state.remaining()), created, now);
                    let key = (
                        o.state.request.agent.clone(),
                        o.state.request.client_id.clone(),
                    );
                    core.orders.insert(key, o.state.clone());
                    open.push(o.state.request.clone());
                } else {
                    core.risk.restore(&o.state.request, None, created, now);
                }
            }
        }
        for req in open {
            report.open += 1;
            if in_process {
                // The in-process venue lost its book with the old process.
                let expired = ExecReport::new(&req, None, ExecKind::Expired, now);
                if let Err(e) = j.record(&expired).await {
                    tracing::error!(error = %e, client_id = %req.client_id, "cannot expire an order");
                }
                report.expired += 1;
            } else if self.reconcile_one(&req).await {
                report.reconciled += 1;
            } else {
                report.unresolved += 1;
                self.reconcile_later(req);
            }
        }
        tracing::info!(known = report.known, open = report.open, reconciled = report.reconciled,
            fills = report.fills, cancels = report.cancels,
            expired = report.expired, unresolved = report.unresolved, venue = %self.name,
            "order journal recovered");
        Ok(report)
    }

    /// With a remote venue, asks the venue every `every` about each working order by client id
    /// and records what changed (fills, cancels, expiry): a remote venue tells the router about
    /// fills only when asked (no private order stream yet). The task ends with the service.
    pub fn start_polling(self: &Arc<Self>, every: Duration) {
        if self.venue.kind() == VenueKind::InProcess || every.is_zero() {
            return;
        }
        let me = Arc::downgrade(self);
        spawn(async move {
            let mut tick = tokio::time::interval(every);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                let Some(svc) = me.upgrade() else { return };
                let working: Vec<OrderRequest> = svc
                    .lock()
                    .orders
                    .values()
                    .filter(|o| o.status != OrderStatus::Pending)
                    .map(|o| o.request.clone())
                    .collect();
                for req in working {
                    svc.reconcile_one(&req).await;
                }
            }
        });
    }
}
