//! What `colony orders list` and `colony status` show: the printable rows and the report.

use super::*;

/// An order waiting for approval, as `colony approvals list` shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PendingApproval {
    /// Approval id (for `approve` / `deny`).
    pub id: u64,
    /// The agent.
    pub agent: String,
    /// Its client id.
    pub client_id: String,
    /// Instrument.
    pub symbol: String,
    /// `buy` or `sell`.
    pub side: String,
    /// Quantity.
    pub qty: String,
    /// Limit price, if any.
    pub price: Option<String>,
    /// Notional the threshold was checked against.
    pub notional: String,
    /// When it was placed (host clock, ns).
    pub created: u64,
    /// `operator` or `consensus`.
    pub via: &'static str,
}

/// One order as `colony orders list` shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct OrderRow {
    /// The agent that placed it.
    pub agent: String,
    /// The agent's client order id.
    pub client_id: String,
    /// The venue's id, once it has one.
    pub venue_order_id: Option<String>,
    /// The instrument.
    pub symbol: String,
    /// `buy` or `sell`.
    pub side: String,
    /// `market` or `limit`.
    pub kind: String,
    /// The limit price; none for a market order.
    pub price: Option<String>,
    /// The quantity ordered.
    pub qty: String,
    /// The quantity filled so far.
    pub filled_qty: String,
    /// The average fill price so far.
    pub avg_price: Option<String>,
    /// Fees paid so far.
    pub fees: String,
    /// The status (`new`, `partially-filled`, `filled`, …).
    pub status: String,
    /// The reason code, if it was rejected.
    pub reject_code: Option<String>,
    /// When it was placed, in ns since the Unix epoch.
    pub created: u64,
}

/// One fill as `colony orders list` shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FillRow {
    /// The agent whose order filled.
    pub agent: String,
    /// The order's client id.
    pub client_id: String,
    /// The instrument.
    pub symbol: String,
    /// `buy` or `sell`.
    pub side: String,
    /// The quantity filled.
    pub qty: String,
    /// The fill price.
    pub price: String,
    /// The fee charged.
    pub fee: String,
    /// `maker` or `taker`.
    pub liquidity: String,
    /// When it filled, in ns since the Unix epoch.
    pub ts: u64,
}

/// One position as `colony orders list` shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PositionRow {
    /// The agent holding it.
    pub agent: String,
    /// The instrument.
    pub symbol: String,
    /// Signed quantity: positive long, negative short.
    pub qty: String,
    /// Average entry price.
    pub avg_price: String,
    /// Profit or loss realised so far.
    pub realised_pnl: String,
    /// Profit or loss at the last price.
    pub unrealised_pnl: String,
    /// Fees paid on it.
    pub fees: String,
}

/// Per-agent account summary.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AccountRow {
    /// The agent.
    pub agent: String,
    /// Cash after fees and realised PnL.
    pub cash: String,
    /// Cash plus positions at the last price.
    pub equity: String,
    /// Equity less the starting cash.
    pub pnl: String,
}

/// Everything `colony orders list` prints.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct OrdersReport {
    /// The venue orders go to.
    pub venue: String,
    /// The desk's kill switch.
    pub kill_switch: KillMode,
    /// Orders still working.
    pub open: Vec<OrderRow>,
    /// The latest orders, newest first.
    pub recent: Vec<OrderRow>,
    /// The latest fills.
    pub fills: Vec<FillRow>,
    /// Open positions per agent and symbol.
    pub positions: Vec<PositionRow>,
    /// Each agent's cash and equity.
    pub accounts: Vec<AccountRow>,
    /// Rejections counted by reason code.
    pub rejections: BTreeMap<String, u64>,
    /// The router's counters.
    pub counters: OrderCounters,
    /// Orders waiting for approval.
    pub approvals: Vec<PendingApproval>,
}

/// The router's status line.
#[derive(Debug, Clone, Serialize)]
pub struct OrdersStatus {
    /// The venue orders go to.
    pub venue: String,
    /// The venue the journal records (from its first run).
    pub journal_venue: String,
    /// The router's counters.
    pub counters: OrderCounters,
    /// Kill switches that are not off: (`*` or agent, mode).
    pub kill_switches: Vec<(String, KillMode)>,
    /// The live venue's circuit breaker.
    pub breaker: Option<colony_risk::breaker::BreakerStatus>,
    /// Journal writes that failed.
    pub journal_errors: u64,
    /// Orders whose outcome at the venue is not yet known.
    pub unresolved: u64,
    /// Orders still working.
    pub open_orders: usize,
    /// Orders waiting for approval.
    pub waiting_approval: usize,
    /// The global risk limits in force, as `colony.toml` names them.
    pub limits: Vec<LimitRow>,
    /// Whether orders for instruments the host does not know are refused.
    pub require_known_instruments: bool,
    /// Instruments known (from the feed, the configuration and the venue's list).
    pub known_instruments: usize,
    /// What the venue's own instrument list gave.
    pub venue_instruments: super::VenueInstruments,
}

/// One global risk limit in force.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LimitRow {
    /// The `[orders.risk]` key.
    pub key: &'static str,
    /// Its value.
    pub value: String,
    /// `default` (built in) or `config` (written by the operator).
    pub source: &'static str,
}

/// Router counters.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct OrderCounters {
    /// Orders agents placed.
    pub placed: u64,
    /// Orders sent to the venue.
    pub submitted: u64,
    /// Orders refused (risk, approval or venue).
    pub rejected: u64,
    /// Fills received.
    pub fills: u64,
    /// Cancels done.
    pub cancels: u64,
    /// Order events no agent mailbox took.
    pub events_undelivered: u64,
}

/// The printable row of one order.
pub fn order_row(agent: &str, o: &OrderState) -> OrderRow {
    OrderRow {
        agent: agent.to_string(),
        client_id: o.request.client_id.clone(),
        venue_order_id: o.venue_order_id.clone(),
        symbol: o.request.symbol.to_string(),
        side: o.request.side.as_str().into(),
        kind: o.request.kind.as_str().into(),
        price: o.request.price.map(|p| p.normalize().to_string()),
        qty: o.request.qty.normalize().to_string(),
        filled_qty: o.filled_qty.normalize().to_string(),
        avg_price: o.avg_price().map(|p| p.normalize().to_string()),
        fees: o.fees.normalize().to_string(),
        status: o.status.as_str().into(),
        reject_code: o.reject_code.clone(),
        created: o.created,
    }
}

impl OrderService {
    /// Rejections per reason code (every risk code present).
    pub fn rejections(&self) -> BTreeMap<String, u64> {
        self.lock()
            .risk
            .rejections()
            .into_iter()
            .map(|(k, v)| (k.to_string(), v))
            .collect()
    }

    /// What `colony status` shows: venue, counters, kill switches, the live venue's circuit
    /// breaker, journal errors and orders whose state is still unknown.
    pub fn status(&self) -> OrdersStatus {
        let (open_orders, waiting_approval, known_instruments, venue_instruments) = {
            let core = self.lock();
            (
                core.orders.len(),
                core.waiting.len(),
                core.risk.known_instruments(),
                core.venue_instruments.clone(),
            )
        };
        let limits = self
            .config
            .risk
            .entries()
            .into_iter()
            .map(|(key, value)| LimitRow {
                key,
                value,
                source: if self.config.risk_defaults.contains(&key) {
                    "default"
                } else {
                    "config"
                },
            })
            .collect();
        OrdersStatus {
            venue: self.name.to_string(),
            journal_venue: self.journal_venue.to_string(),
            counters: self.counters(),
            kill_switches: self
                .kill_switches()
                .into_iter()
                .map(|(a, m)| (a.unwrap_or_else(|| "*".into()), m))
                .collect(),
            breaker: self.venue.breaker(),
            journal_errors: self.journal_errors.load(Ordering::Relaxed),
            unresolved: self.unresolved.load(Ordering::Relaxed),
            open_orders,
            waiting_approval,
            limits,
            require_known_instruments: self.config.require_known_instruments,
            known_instruments,
            venue_instruments,
        }
    }

    /// Router counters.
    pub fn counters(&self) -> OrderCounters {
        OrderCounters {
            placed: self.placed.load(Ordering::Relaxed),
            submitted: self.submitted.load(Ordering::Relaxed),
            rejected: self.rejected.load(Ordering::Relaxed),
            fills: self.fill_count.load(Ordering::Relaxed),
            cancels: self.cancels.load(Ordering::Relaxed),
            events_undelivered: self.undelivered.load(Ordering::Relaxed),
        }
    }

    /// Open orders, recent orders and fills, positions and PnL per agent.
    pub fn report(&self) -> OrdersReport {
        let approvals = self.approvals();
        let rejections = self.rejections();
        let core = self.lock();
        let mut open: Vec<OrderRow> = core
            .orders
            .iter()
            .map(|((a, _), o)| order_row(a, o))
            .collect();
        open.sort_by(|a, b| (a.created, &a.client_id).cmp(&(b.created, &b.client_id)));
        let recent = core
            .recent
            .iter()
            .map(|o| order_row(&o.request.agent, o))
            .collect();
        let fills = core
            .fills
            .iter()
            .map(|(r, f)| FillRow {
                agent: r.agent.to_string(),
                client_id: r.client_id.clone(),
                symbol: r.symbol.to_string(),
                side: r.side.as_str().into(),
                qty: f.qty.normalize().to_string(),
                price: f.price.normalize().to_string(),
                fee: f.fee.normalize().to_string(),
                liquidity: format!("{:?}", f.liquidity).to_lowercase(),
                ts: r.ts,
            })
            .collect();
        let mut positions = Vec::new();
        let mut accounts = Vec::new();
        for account in self.venue.accounts() {
            let agent = &account.agent;
            for p in &account.positions {
                positions.push(PositionRow {
                    agent: agent.to_string(),
                    symbol: p.symbol.to_string(),
                    qty: p.qty.normalize().to_string(),
                    avg_price: p.avg_price.normalize().to_string(),
                    realised_pnl: p.realised_pnl.normalize().to_string(),
                    unrealised_pnl: p.unrealised_pnl.normalize().to_string(),
                    fees: p.fees.normalize().to_string(),
                });
            }
            accounts.push(AccountRow {
                agent: agent.to_string(),
                cash: account.cash.normalize().to_string(),
                equity: account.equity.normalize().to_string(),
                pnl: (account.equity - self.config.paper.initial_balance)
                    .normalize()
                    .to_string(),
            });
        }
        OrdersReport {
            venue: self.name.to_string(),
            kill_switch: core.kill,
            open,
            recent,
            fills,
            positions,
            accounts,
            rejections,
            counters: self.counters(),
            approvals,
        }
    }
}
