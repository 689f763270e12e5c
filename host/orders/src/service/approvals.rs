//! Approvals: orders over the approval threshold wait for an operator or a quorum of risk
//! agents.

use super::*;

impl OrderService {
    /// Resolves a waiting order: `approve` sends it, otherwise it is rejected with `code`.
    pub fn resolve_approval(&self, id: u64, approve: bool, code: &str, now: Timestamp) -> bool {
        let mut core = self.lock();
        let Some(w) = core.waiting.remove(&id) else {
            return false;
        };
        if approve {
            if let Route::Journal(req) = self.dispatch(&mut core, w.request, now) {
                drop(core);
                self.spawn_journaled(req, now);
            }
        } else {
            core.risk.on_closed(&w.request.agent, &w.request.client_id);
            self.refuse(
                &mut core,
                &w.request,
                code,
                format!("order {} not approved", w.request.client_id),
                now,
            );
        }
        true
    }

    pub(super) fn spawn_approval(self: &Arc<Self>, id: u64, req: OrderRequest, notional: Decimal) {
        let Ok(rt) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let svc = Arc::clone(self);
        match self.config.consensus.clone() {
            None => {
                let timeout = self.config.approval_timeout;
                rt.spawn(async move {
                    tokio::time::sleep(timeout).await;
                    let now = crate::wall_ns();
                    svc.resolve_approval(id, false, "approval.timeout", now);
                });
            }
            Some(c) => {
                rt.spawn(async move {
                    let approve = svc.ask_risk_agents(&c, &req, notional).await;
                    let now = crate::wall_ns();
                    let code = if approve { "" } else { "approval.consensus" };
                    svc.resolve_approval(id, approve, code, now);
                });
            }
        }
    }

    /// Gathers `voters` answers on the consensus subject; approves when `quorum` of them say
    /// `approve` (or `yes`).
    async fn ask_risk_agents(&self, c: &Consensus, req: &OrderRequest, notional: Decimal) -> bool {
        let payload = serde_json::json!({
            "agent": &*req.agent,
            "client_id": req.client_id,
            "symbol": &*req.symbol,
            "side": req.side.as_str(),
            "kind": req.kind.as_str(),
            "qty": req.qty.normalize().to_string(),
            "price": req.price.map(|p| p.normalize().to_string()),
            "notional": notional.normalize().to_string(),
        })
        .to_string();
        let env = Envelope::new(self.name.clone(), c.subject.clone(), payload.into_bytes());
        let votes = match self.bus.gather(env, c.voters as usize, c.timeout).await {
            Ok(v) => v,
            Err(e) => {
                tracing::warn!(error = %e, client_id = %req.client_id, "consensus gather failed");
                return false;
            }
        };
        let yes = votes
            .iter()
            .filter(|v| {
                let p = String::from_utf8_lossy(&v.payload);
                let p = p.trim();
                p.eq_ignore_ascii_case("approve") || p.eq_ignore_ascii_case("yes")
            })
            .count();
        yes >= c.quorum as usize
    }

    /// Orders waiting for approval.
    pub fn approvals(&self) -> Vec<PendingApproval> {
        self.lock()
            .waiting
            .iter()
            .map(|(id, w)| PendingApproval {
                id: *id,
                agent: w.request.agent.to_string(),
                client_id: w.request.client_id.clone(),
                symbol: w.request.symbol.to_string(),
                side: w.request.side.as_str().into(),
                qty: w.request.qty.normalize().to_string(),
                price: w.request.price.map(|p| p.normalize().to_string()),
                notional: w.notional.normalize().to_string(),
                created: w.created,
                via: w.via,
            })
            .collect()
    }
}
