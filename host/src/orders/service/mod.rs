//! The order router: the one path from an agent's `place` to a venue and back.
//!
//! ```text
//! agent ─place─► grant check (interfaces/orders.rs) ─► OrderService::place
//!                   ├─ risk engine (reserve or reject with a reason code)
//!                   ├─ approval threshold? ─► approval queue (operator, or N-of-M risk agents)
//!                   ├─ journal (intent; durable before a remote venue sees it)
//!                   └─ Venue::place: answered at once (paper exchange) or later (OKX, Alpaca)
//! venue reports ─► OrderState ─► risk (accepted, fills, closed) ─► journal ─► agent's
//!                   `agent.<name>.orders` subject ─► handler.on-order
//! market feed ─► on_market: reference prices for risk, Venue::on_market (resting paper fills)
//! ```
//!
//! **Architecture Invariant:** nothing reaches a venue without passing [`RiskEngine::check`]
//! under the router's lock, and every report a venue produces goes through
//! [`OrderService::apply`], which keeps the risk engine, the order table, the journal and the
//! agent's events in the same order.
//!
//! The router holds one [`Venue`] and has one path for every order: risk, approval and the
//! venue under one lock; what the venue answers at once is applied at once, what it answers
//! later is awaited by a task. With the paper exchange the whole path is synchronous under that
//! one lock (tick → fill is a few microseconds) and the journal is written behind it by a task:
//! the paper venue lives and dies with the host ([`VenueKind::InProcess`]), so there is nothing
//! outside the process to send twice. With a remote venue the intent is written and synced
//! before the request leaves (see `docs/orders.md`).

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use rust_decimal::Decimal;
use serde::Serialize;

use super::journal::{Journal, JournalError, OrderFilter};
use super::paper::{Balance, PaperConfig, PaperPosition};
use super::risk::{self, RiskEngine, RiskLimits, Scope, TradingState};
use super::venue::{Answer, PaperVenue, Pending, Venue, VenueKind, VenueOrder};
use super::{ExecKind, ExecReport, OrderKind, OrderRequest, OrderState, OrderStatus};
use crate::bus::{Bus, Envelope, Priority};
use crate::market::replay;
use crate::market::types::{MarketEvent, Quote, Side, Timestamp};

const NANOS_PER_DAY: u64 = 86_400 * 1_000_000_000;
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
}

/// Spawns on the current runtime; without one (a synchronous unit test) the work is dropped
/// with an error in the log.
fn spawn<F>(f: F)
where
    F: std::future::Future<Output = ()> + Send + 'static,
{
    match tokio::runtime::Handle::try_current() {
        Ok(rt) => {
            rt.spawn(f);
        }
        Err(_) => tracing::error!("no async runtime: order task not started"),
    }
}

/// A crash-test hook: when `COLONY_FAILPOINT` names this point, the order flow stops here
/// for good (the process keeps running, to be killed with SIGKILL by the test) after saying
/// so on stderr. Costs one comparison when unset.
async fn failpoint(name: &str) {
    static POINT: std::sync::OnceLock<Option<String>> = std::sync::OnceLock::new();
    let point = POINT.get_or_init(|| std::env::var("COLONY_FAILPOINT").ok());
    if point.as_deref() == Some(name) {
        eprintln!("colony: failpoint {name} reached");
        loop {
            tokio::time::sleep(Duration::from_secs(3600)).await;
        }
    }
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
        out.push(report(ExecKind::Fill(super::FillReport {
            qty,
            price,
            fee: Decimal::ZERO,
            fee_currency: "".into(),
            liquidity: super::Liquidity::Taker,
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

/// What the paper exchange's journal writer is asked to write, in order.
enum JournalOp {
    Intent(OrderRequest, Timestamp),
    Report(ExecReport),
}

/// The write-behind journal of the paper exchange: an unbounded queue (the router never
/// waits on the disk) drained by a task that writes reports in batches, one transaction each.
struct JournalSink {
    tx: tokio::sync::mpsc::UnboundedSender<JournalOp>,
    queued: Arc<AtomicU64>,
    written: Arc<AtomicU64>,
}

impl JournalSink {
    fn start(journal: Journal, venue: Arc<str>) -> JournalSink {
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<JournalOp>();
        let written = Arc::new(AtomicU64::new(0));
        let w = Arc::clone(&written);
        spawn(async move {
            let mut ops = Vec::new();
            while rx.recv_many(&mut ops, 1024).await > 0 {
                let n = ops.len() as u64;
                let mut reports = Vec::new();
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
                    }
                }
                write_reports(&journal, &mut reports).await;
                w.fetch_add(n, Ordering::Release);
            }
        });
        JournalSink {
            tx,
            queued: Arc::new(AtomicU64::new(0)),
            written,
        }
    }

    fn send(&self, op: JournalOp) {
        if self.tx.send(op).is_ok() {
            self.queued.fetch_add(1, Ordering::Relaxed);
        }
    }

    async fn flush(&self, limit: Duration) -> bool {
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

/// Closed orders kept in memory for `colony orders list` (the journal keeps all of them).
const RECENT_CLOSED: usize = 1_000;
/// Fills kept in memory for `colony orders list`.
const RECENT_FILLS: usize = 1_000;

/// The subject an agent's order events are published on (the agent's actor subscribes to it).
pub fn events_subject(agent: &str) -> String {
    format!("agent.{agent}.orders")
}

/// An order event as delivered to an agent: the report and the order's state after it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OrderUpdate {
    /// What happened.
    pub report: ExecReport,
    /// The order's status after it.
    pub status: OrderStatus,
    /// Quantity filled so far.
    pub filled_qty: Decimal,
    /// Average fill price so far.
    pub avg_price: Option<Decimal>,
}

/// The immediate answer to a `place`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ack {
    /// On its way to the venue; events follow.
    Submitted,
    /// Refused before the venue: the reason code and the detail.
    Rejected { code: String, detail: String },
    /// Waiting for approval (the approval id).
    PendingApproval { id: u64 },
}

/// Why a cancel was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CancelError {
    /// No working order with that client id.
    #[error("no working order {0:?}")]
    NotFound(String),
    /// The cancel-rate throttle.
    #[error("{0}")]
    Rate(String),
}

/// How the kill switch is set.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum KillMode {
    /// Normal trading.
    Off,
    /// Working orders cancelled; only orders that reduce a position pass.
    Reducing,
    /// A trading halt: no new order passes (`risk.halted`); working orders stay.
    Halt,
    /// Working orders cancelled; no new order passes.
    On,
}

impl KillMode {
    /// Parses `on`, `off` or `reducing`.
    pub fn parse(s: &str) -> Option<KillMode> {
        match s {
            "on" => Some(KillMode::On),
            "off" => Some(KillMode::Off),
            "reducing" => Some(KillMode::Reducing),
            "halt" => Some(KillMode::Halt),
            _ => None,
        }
    }
}

/// Consensus of risk agents: `quorum` of `voters` must answer `approve` on `subject`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Consensus {
    /// Subject the request is gathered on (risk agents subscribe to it).
    pub subject: String,
    /// Approvals needed (N).
    pub quorum: u32,
    /// Voters asked (M): the gather waits for this many answers or the timeout.
    pub voters: u32,
    /// How long to wait for the votes.
    pub timeout: Duration,
}

/// The router's configuration (`[orders]` in colony.toml).
#[derive(Debug, Clone)]
pub struct OrdersConfig {
    /// Limits for every agent (each agent's grant can only tighten them).
    pub risk: RiskLimits,
    /// The paper exchange's fees and starting balance.
    pub paper: PaperConfig,
    /// Orders with a notional at or above this wait for approval.
    pub approval_notional: Option<Decimal>,
    /// How long an order waits for an operator; then it is denied.
    pub approval_timeout: Duration,
    /// When set, orders needing approval ask the risk agents instead of an operator.
    pub consensus: Option<Consensus>,
}

impl Default for OrdersConfig {
    fn default() -> Self {
        OrdersConfig {
            risk: RiskLimits::default(),
            paper: PaperConfig::default(),
            approval_notional: None,
            approval_timeout: Duration::from_secs(60),
            consensus: None,
        }
    }
}

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
    pub agent: String,
    pub client_id: String,
    pub venue_order_id: Option<String>,
    pub symbol: String,
    pub side: String,
    pub kind: String,
    pub price: Option<String>,
    pub qty: String,
    pub filled_qty: String,
    pub avg_price: Option<String>,
    pub fees: String,
    pub status: String,
    pub reject_code: Option<String>,
    pub created: u64,
}

/// One fill as `colony orders list` shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FillRow {
    pub agent: String,
    pub client_id: String,
    pub symbol: String,
    pub side: String,
    pub qty: String,
    pub price: String,
    pub fee: String,
    pub liquidity: String,
    pub ts: u64,
}

/// One position as `colony orders list` shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PositionRow {
    pub agent: String,
    pub symbol: String,
    pub qty: String,
    pub avg_price: String,
    pub realised_pnl: String,
    pub unrealised_pnl: String,
    pub fees: String,
}

/// Per-agent account summary.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AccountRow {
    pub agent: String,
    pub cash: String,
    pub equity: String,
    pub pnl: String,
}

/// Everything `colony orders list` prints.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct OrdersReport {
    pub venue: String,
    pub kill_switch: KillMode,
    pub open: Vec<OrderRow>,
    pub recent: Vec<OrderRow>,
    pub fills: Vec<FillRow>,
    pub positions: Vec<PositionRow>,
    pub accounts: Vec<AccountRow>,
    pub rejections: BTreeMap<String, u64>,
    pub counters: OrderCounters,
    pub approvals: Vec<PendingApproval>,
}

/// The router's status line.
#[derive(Debug, Clone, Serialize)]
pub struct OrdersStatus {
    pub venue: String,
    pub journal_venue: String,
    pub counters: OrderCounters,
    /// Kill switches that are not off: (`*` or agent, mode).
    pub kill_switches: Vec<(String, KillMode)>,
    /// The live venue's circuit breaker.
    pub breaker: Option<crate::venues::breaker::BreakerStatus>,
    pub journal_errors: u64,
    pub unresolved: u64,
    pub open_orders: usize,
    pub waiting_approval: usize,
}

/// Router counters.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct OrderCounters {
    pub placed: u64,
    pub submitted: u64,
    pub rejected: u64,
    pub fills: u64,
    pub cancels: u64,
    pub events_undelivered: u64,
}

struct Waiting {
    request: OrderRequest,
    notional: Decimal,
    created: Timestamp,
    via: &'static str,
}

/// An order's key in the router's table: (agent, client id).
type OrderKey = (Arc<str>, String);

struct Core {
    risk: RiskEngine,
    /// Working orders by (agent, client id).
    orders: HashMap<OrderKey, OrderState>,
    recent: VecDeque<OrderState>,
    fills: VecDeque<(ExecReport, super::FillReport)>,
    /// Reference prices for risk: the latest quote, top of book, trade or bar close.
    refs: HashMap<Arc<str>, Quote>,
    waiting: BTreeMap<u64, Waiting>,
    next_approval: u64,
    kill: KillMode,
    agent_kill: HashMap<Arc<str>, KillMode>,
    scratch: Vec<ExecReport>,
    /// The day (since the epoch) of the last order: when it changes, the venue is told
    /// ([`Venue::new_day`]: the paper exchange forgets the closed orders of earlier days, as
    /// the risk engine frees their client ids).
    day: u64,
}

/// How the router journals, decided once from the venue's kind.
enum Journaling {
    /// No journal (benchmarks, tests of the router alone).
    Off,
    /// Written behind an in-process venue by a task: its orders die with the process, so
    /// there is nothing outside it to send twice.
    Behind(JournalSink),
    /// Awaited: an order's intent is durable before the venue sees it, and a report is
    /// written before it is applied.
    Ahead(Journal),
}

/// Where an order that passed risk goes next.
enum Route {
    /// Answered: refused, waiting for approval, or sent.
    Done(Ack),
    /// Its intent must be durable in the journal before it is sent.
    Journal(OrderRequest),
}

/// The order router. Shared (`Arc`) by every agent's store and the market feed.
pub struct OrderService {
    core: Mutex<Core>,
    bus: Bus,
    /// The one venue every order goes to.
    venue: Arc<dyn Venue>,
    /// Its name (`paper`, `okx`, …).
    name: Arc<str>,
    /// The venue as the journal names it: a remote venue's name, or `<name>@<start ns>` for an
    /// in-process venue (`paper@…`), whose book lives and dies with one run (so a replay run
    /// again with the same client ids is a new set of orders, not duplicates of the last run's).
    journal_venue: Arc<str>,
    /// The order journal (recovery reads it); how it is written is `journaling`.
    journal: Option<Journal>,
    journaling: Journaling,
    journal_errors: AtomicU64,
    unresolved: AtomicU64,
    /// Held while a venue's later answer is compared with the router's state and recorded, so
    /// two answers about one order (a poll and a cancel's confirmation, two lookups) never
    /// record the same change twice.
    reconciling: tokio::sync::Mutex<()>,
    /// This service, for tasks that outlive a call.
    me: std::sync::Weak<OrderService>,
    config: OrdersConfig,
    placed: AtomicU64,
    submitted: AtomicU64,
    rejected: AtomicU64,
    fill_count: AtomicU64,
    cancels: AtomicU64,
    undelivered: AtomicU64,
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

/// A reference quote from any market event (a trade or bar close stands for both sides).
fn reference(event: &MarketEvent) -> Option<Quote> {
    let ts = replay::known_at(event);
    let symbol = event.symbol().clone();
    let flat = |p: Decimal| Quote {
        symbol: symbol.clone(),
        bid: p,
        bid_size: Decimal::ZERO,
        ask: p,
        ask_size: Decimal::ZERO,
        ts,
    };
    match event {
        MarketEvent::Quote(q) => Some(Quote { ts, ..q.clone() }),
        MarketEvent::Book(b) => {
            let (bid, ask) = (b.bids.first()?, b.asks.first()?);
            Some(Quote {
                symbol,
                bid: bid.price,
                bid_size: bid.size,
                ask: ask.price,
                ask_size: ask.size,
                ts,
            })
        }
        MarketEvent::Trade(t) => Some(flat(t.price)),
        MarketEvent::Candle(c) => Some(flat(c.close)),
    }
}

impl OrderService {
    /// A router for the paper exchange, publishing order events on `bus`, without a journal
    /// (benchmarks and tests of the router alone).
    pub fn paper(bus: Bus, config: OrdersConfig) -> Arc<OrderService> {
        let venue = Arc::new(PaperVenue::new(config.paper.clone()));
        Self::new(bus, config, venue, None)
    }

    /// A router for `venue` that journals every order in `journal`: awaited before a remote
    /// venue sees an order, written behind an in-process one by a task (needs a tokio
    /// runtime).
    pub fn with_journal(
        bus: Bus,
        config: OrdersConfig,
        venue: Arc<dyn Venue>,
        journal: Journal,
    ) -> Arc<OrderService> {
        Self::new(bus, config, venue, Some(journal))
    }

    /// A router for `venue`, with or without a journal.
    pub fn new(
        bus: Bus,
        config: OrdersConfig,
        venue: Arc<dyn Venue>,
        journal: Option<Journal>,
    ) -> Arc<OrderService> {
        let mut risk = RiskEngine::new(config.risk.clone());
        risk.set_trading_state(Scope::Global, TradingState::Active);
        let name: Arc<str> = venue.name().into();
        let kind = venue.kind();
        let journal_venue: Arc<str> = match kind {
            VenueKind::Remote => name.clone(),
            VenueKind::InProcess => {
                format!("{name}@{}", crate::clock::Clock::system().now_ns()).into()
            }
        };
        let journaling = match (&journal, kind) {
            (None, _) => Journaling::Off,
            (Some(j), VenueKind::InProcess) => {
                Journaling::Behind(JournalSink::start(j.clone(), journal_venue.clone()))
            }
            (Some(j), VenueKind::Remote) => Journaling::Ahead(j.clone()),
        };
        Arc::new_cyclic(|me| OrderService {
            me: me.clone(),
            core: Mutex::new(Core {
                risk,
                orders: HashMap::new(),
                recent: VecDeque::new(),
                fills: VecDeque::new(),
                refs: HashMap::new(),
                waiting: BTreeMap::new(),
                next_approval: 1,
                kill: KillMode::Off,
                agent_kill: HashMap::new(),
                scratch: Vec::new(),
                day: 0,
            }),
            bus,
            venue,
            name,
            journal_venue,
            journal,
            journaling,
            journal_errors: AtomicU64::new(0),
            unresolved: AtomicU64::new(0),
            reconciling: tokio::sync::Mutex::new(()),
            config,
            placed: AtomicU64::new(0),
            submitted: AtomicU64::new(0),
            rejected: AtomicU64::new(0),
            fill_count: AtomicU64::new(0),
            cancels: AtomicU64::new(0),
            undelivered: AtomicU64::new(0),
        })
    }

    fn lock(&self) -> MutexGuard<'_, Core> {
        self.core.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The venue's name (`paper`, `okx`, `alpaca`).
    pub fn venue(&self) -> &str {
        &self.name
    }

    /// Sets an agent's own limits (from its `orders.place` grants); the stricter of them and
    /// the global ones apply.
    pub fn set_agent_limits(&self, agent: &str, limits: RiskLimits) {
        self.lock().risk.set_agent_limits(agent, limits);
    }

    /// The price a market order on `side` would be checked at (ask for buys, bid for sells).
    pub fn reference_price(&self, symbol: &str, side: Side) -> Option<Decimal> {
        self.lock().refs.get(symbol).map(|q| match side {
            Side::Buy => q.ask,
            Side::Sell => q.bid,
        })
    }

    /// Feeds one market event: reference prices for risk, and the venue's matching (resting
    /// paper orders that the new prices cross fill).
    pub fn on_market(&self, event: &MarketEvent) {
        let mut core = self.lock();
        if let Some(q) = reference(event) {
            core.refs.insert(q.symbol.clone(), q);
        }
        let mut out = std::mem::take(&mut core.scratch);
        self.venue.on_market(event, &mut out);
        self.apply_all(&mut core, &mut out);
        core.scratch = out;
    }

    /// Places an order for `agent` (its grant was checked by the caller) at time `now`. What
    /// the venue answers at once (the paper exchange: everything) is applied before this
    /// returns; an order whose intent must be durable first is journaled and sent by a task
    /// (use [`place_async`](Self::place_async) to wait for the journal).
    pub fn place(self: &Arc<Self>, req: OrderRequest, now: Timestamp) -> Ack {
        match self.route(req, now) {
            Route::Done(ack) => ack,
            Route::Journal(req) => {
                self.spawn_journaled(req, now);
                Ack::Submitted
            }
        }
    }

    /// [`place`](Self::place), but when the intent must be durable first it returns only once
    /// it is in the journal, so `submitted` means the order will not be lost.
    pub async fn place_async(self: &Arc<Self>, req: OrderRequest, now: Timestamp) -> Ack {
        match self.route(req, now) {
            Route::Done(ack) => ack,
            Route::Journal(req) => self.journal_then_send(req, now).await,
        }
    }

    /// The one path of every order, under one lock: risk and the approval threshold, then the
    /// venue (or the journal first).
    fn route(self: &Arc<Self>, req: OrderRequest, now: Timestamp) -> Route {
        self.placed.fetch_add(1, Ordering::Relaxed);
        let mut core = self.lock();
        match self.admit(&mut core, req, now) {
            Err(ack) => Route::Done(ack),
            Ok(req) => self.dispatch(&mut core, req, now),
        }
    }

    /// Risk and the approval threshold: `Ok` when the order may go to the venue now (it is
    /// reserved in the risk engine), else the ack to give.
    fn admit(
        self: &Arc<Self>,
        core: &mut Core,
        req: OrderRequest,
        now: Timestamp,
    ) -> Result<OrderRequest, Ack> {
        let reference = core.refs.get(&req.symbol).cloned();
        if let Err(rej) = core.risk.check(&req, reference.as_ref(), now) {
            return Err(self.refuse(core, &req, rej.code.as_str(), rej.detail, now));
        }
        let notional = match (req.kind, req.price, &reference) {
            (OrderKind::Limit, Some(p), _) => p.saturating_mul(req.qty),
            (_, _, Some(q)) => {
                let p = if req.side == Side::Buy { q.ask } else { q.bid };
                p.saturating_mul(req.qty)
            }
            _ => Decimal::ZERO,
        };
        if let Some(limit) = self.config.approval_notional
            && notional >= limit
        {
            let id = core.next_approval;
            core.next_approval += 1;
            let via = if self.config.consensus.is_some() {
                "consensus"
            } else {
                "operator"
            };
            core.waiting.insert(
                id,
                Waiting {
                    request: req.clone(),
                    notional,
                    created: now,
                    via,
                },
            );
            self.spawn_approval(id, req, notional);
            return Err(Ack::PendingApproval { id });
        }
        Ok(req)
    }

    /// An order that passed risk (and approval) goes on: to the venue now, or, when its intent
    /// must be durable first, back to the caller to journal it outside the lock.
    fn dispatch(&self, core: &mut Core, req: OrderRequest, now: Timestamp) -> Route {
        self.submitted.fetch_add(1, Ordering::Relaxed);
        if let Journaling::Ahead(_) = self.journaling {
            return Route::Journal(req);
        }
        self.open(core, &req, now);
        if let Some(answer) = self.send(core, &req, now) {
            self.spawn_placed(req, now, answer);
        }
        Route::Done(Ack::Submitted)
    }

    /// Puts an order in the router's table (and its intent in the write-behind journal).
    fn open(&self, core: &mut Core, req: &OrderRequest, now: Timestamp) {
        let day = now / NANOS_PER_DAY;
        if day > core.day {
            core.day = day;
            self.venue.new_day(day * NANOS_PER_DAY);
        }
        let key = (req.agent.clone(), req.client_id.clone());
        core.orders.insert(key, OrderState::new(req.clone(), now));
        if let Journaling::Behind(sink) = &self.journaling {
            sink.send(JournalOp::Intent(req.clone(), now));
        }
    }

    /// Hands an open order to the venue: applies what it answers at once, and returns the
    /// answer that comes later.
    fn send(
        &self,
        core: &mut Core,
        req: &OrderRequest,
        now: Timestamp,
    ) -> Option<Pending<ExecReport>> {
        let mut out = std::mem::take(&mut core.scratch);
        let answer = Arc::clone(&self.venue).place(req, now, &mut out);
        self.apply_all(core, &mut out);
        core.scratch = out;
        match answer {
            Answer::Now => None,
            Answer::Later(f) => Some(f),
        }
    }

    /// Applies a batch of reports a venue answered at once, in order.
    fn apply_all(&self, core: &mut Core, out: &mut Vec<ExecReport>) {
        for r in out.drain(..) {
            self.apply(core, r);
        }
    }

    /// [`journal_then_send`](Self::journal_then_send) from a task.
    fn spawn_journaled(&self, req: OrderRequest, now: Timestamp) {
        if let Some(svc) = self.me.upgrade() {
            spawn(async move {
                svc.journal_then_send(req, now).await;
            });
        }
    }

    /// Journals the intent (durably), opens the order and hands it to a task that sends it. A
    /// journal that cannot be written refuses the order (`host.journal`): nothing unjournaled
    /// is sent.
    async fn journal_then_send(self: &Arc<Self>, req: OrderRequest, now: Timestamp) -> Ack {
        if let Journaling::Ahead(j) = &self.journaling
            && let Err(e) = j.record_intent(&self.journal_venue, &req, now).await
        {
            self.journal_errors.fetch_add(1, Ordering::Relaxed);
            let mut core = self.lock();
            core.risk.on_closed(&req.agent, &req.client_id);
            return self.refuse(
                &mut core,
                &req,
                "host.journal",
                format!("intent not journaled: {e}"),
                now,
            );
        }
        self.open(&mut self.lock(), &req, now);
        let svc = Arc::clone(self);
        spawn(async move {
            failpoint("order.after-intent").await;
            svc.send_journaled(req, now).await;
        });
        Ack::Submitted
    }

    /// Sends a journaled order: marks it sent in the journal, hands it to the venue, and
    /// records the answer.
    async fn send_journaled(self: Arc<Self>, req: OrderRequest, now: Timestamp) {
        if let Journaling::Ahead(j) = &self.journaling
            && let Err(e) = j.mark_sent(&req.agent, &req.client_id, now).await
        {
            self.journal_errors.fetch_add(1, Ordering::Relaxed);
            tracing::error!(error = %e, client_id = %req.client_id, "cannot journal the send");
        }
        let answer = self.send(&mut self.lock(), &req, now);
        if let Some(answer) = answer {
            self.placed(req, now, answer).await;
        }
    }

    /// [`placed`](Self::placed) from a task.
    fn spawn_placed(&self, req: OrderRequest, now: Timestamp, answer: Pending<ExecReport>) {
        if let Some(svc) = self.me.upgrade() {
            spawn(svc.placed(req, now, answer));
        }
    }

    /// Waits for the venue's later answer to a place and records it. An unknown outcome
    /// (timeout, venue down) leaves the order pending and reconciles it by client id.
    async fn placed(
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
    async fn record(&self, report: ExecReport) {
        if let Journaling::Ahead(j) = &self.journaling
            && let Err(e) = j.record(&report).await
        {
            self.journal_errors.fetch_add(1, Ordering::Relaxed);
            tracing::error!(error = %e, client_id = %report.client_id, "cannot journal a venue report");
        }
        let mut core = self.lock();
        self.apply(&mut core, report);
    }

    /// Asks the venue about an order whose send had no known outcome, a few times with
    /// backoff, and records what it says; if the venue never got it, sends it again with the
    /// same client id.
    fn reconcile_later(self: &Arc<Self>, req: OrderRequest) {
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
                let now = crate::clock::Clock::system().now_ns();
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
                let now = crate::clock::Clock::system().now_ns();
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

    /// Start-up recovery from the journal: every order of today keeps its client id taken,
    /// working orders are reconciled with a remote venue by client id (sent now if the venue
    /// never got them), and orders left working on an in-process venue (the paper exchange),
    /// which did not survive the restart, are expired.
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
        let mut open = Vec::new();
        {
            let mut core = self.lock();
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
                if working {
                    core.risk
                        .restore(&o.state.request, Some(o.state.remaining()));
                    let key = (
                        o.state.request.agent.clone(),
                        o.state.request.client_id.clone(),
                    );
                    core.orders.insert(key, o.state.clone());
                    open.push(o.state.request.clone());
                } else {
                    core.risk.restore(&o.state.request, None);
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

    /// Waits (up to `limit`) until the journal has every report written behind an in-process
    /// venue; returns whether it has.
    pub async fn flush_journal(&self, limit: Duration) -> bool {
        match &self.journaling {
            Journaling::Behind(sink) => sink.flush(limit).await,
            Journaling::Off | Journaling::Ahead(_) => true,
        }
    }

    /// A refusal before the venue: counted, remembered, and delivered as a `rejected` event.
    fn refuse(
        &self,
        core: &mut Core,
        req: &OrderRequest,
        code: &str,
        detail: String,
        now: Timestamp,
    ) -> Ack {
        self.rejected.fetch_add(1, Ordering::Relaxed);
        let kind = ExecKind::Rejected {
            code: code.to_string(),
            message: detail.clone(),
        };
        let report = ExecReport::new(req, None, kind, now);
        let mut state = OrderState::new(req.clone(), now);
        let status = state.apply(&report);
        self.deliver(OrderUpdate {
            report,
            status,
            filled_qty: Decimal::ZERO,
            avg_price: None,
        });
        remember(&mut core.recent, state);
        Ack::Rejected {
            code: code.to_string(),
            detail,
        }
    }

    /// Applies one venue report: order state, risk, the recent lists, and the agent's event.
    fn apply(&self, core: &mut Core, report: ExecReport) {
        let key = (report.agent.clone(), report.client_id.clone());
        let Some(state) = core.orders.get_mut(&key) else {
            tracing::warn!(agent = %report.agent, client_id = %report.client_id,
                "venue report for an order the router does not know; ignored");
            return;
        };
        let status = state.apply(&report);
        let (filled_qty, avg_price) = (state.filled_qty, state.avg_price());
        if let Journaling::Behind(sink) = &self.journaling {
            sink.send(JournalOp::Report(report.clone()));
        }
        match &report.kind {
            ExecKind::Accepted => {
                core.risk.on_accepted(&report.agent, &report.client_id);
            }
            ExecKind::Fill(f) => {
                self.fill_count.fetch_add(1, Ordering::Relaxed);
                let fill = risk::Fill {
                    agent: report.agent.clone(),
                    client_id: Some(report.client_id.clone()),
                    symbol: report.symbol.clone(),
                    side: report.side,
                    qty: f.qty,
                    price: f.price,
                    fee: f.fee,
                };
                if let Err(e) = core.risk.on_fill(&fill) {
                    tracing::error!(error = %e, "fill not accounted by risk");
                }
                if core.fills.len() >= RECENT_FILLS {
                    core.fills.pop_front();
                }
                core.fills.push_back((report.clone(), f.clone()));
            }
            // A cancel, expiry or rejection always closes a working order: handled below.
            ExecKind::Cancelled | ExecKind::Expired | ExecKind::Rejected { .. } => {}
        }
        if status.is_closed() {
            core.risk.on_closed(&report.agent, &report.client_id);
            if let Some(done) = core.orders.remove(&key) {
                remember(&mut core.recent, done);
            }
        }
        self.deliver(OrderUpdate {
            report,
            status,
            filled_qty,
            avg_price,
        });
    }

    /// Publishes an update to the placing agent's order subject.
    fn deliver(&self, update: OrderUpdate) {
        let agent = update.report.agent.clone();
        let mut env = Envelope::new(self.name.clone(), events_subject(&agent), Vec::new());
        env.priority = Priority::High;
        env.timestamp_ns = update.report.ts;
        env.order = Some(Arc::new(update));
        match self.bus.publish(env) {
            Ok(r) if r.delivered > 0 => {}
            _ => {
                self.undelivered.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    /// Cancels a working order of `agent`.
    pub fn cancel(
        &self,
        agent: &Arc<str>,
        client_id: &str,
        now: Timestamp,
    ) -> Result<(), CancelError> {
        let mut core = self.lock();
        let key = (agent.clone(), client_id.to_string());
        if !core.orders.contains_key(&key) {
            return Err(CancelError::NotFound(client_id.to_string()));
        }
        core.risk
            .check_cancel(agent, now)
            .map_err(|r| CancelError::Rate(r.to_string()))?;
        self.cancels.fetch_add(1, Ordering::Relaxed);
        let mut out = std::mem::take(&mut core.scratch);
        let answer = match core.orders.get(&key) {
            Some(o) => Arc::clone(&self.venue).cancel(o, now, &mut out),
            None => Answer::Now,
        };
        self.apply_all(&mut core, &mut out);
        core.scratch = out;
        if let Answer::Later(answer) = answer {
            self.confirm_cancel(key, answer);
        }
        Ok(())
    }

    /// Cancels the working orders of `agent` (`None`: of every agent) and returns how many
    /// were cancelled or asked to be.
    fn cancel_working(&self, core: &mut Core, agent: Option<&str>, now: Timestamp) -> usize {
        let mut out = std::mem::take(&mut core.scratch);
        let later: Vec<(OrderKey, Pending<ExecReport>)> = {
            let working: Vec<&OrderState> = core
                .orders
                .values()
                .filter(|o| agent.is_none_or(|a| *o.request.agent == *a))
                .collect();
            Arc::clone(&self.venue)
                .cancel_all(agent, &working, now, &mut out)
                .into_iter()
                .map(|(o, f)| ((o.request.agent.clone(), o.request.client_id.clone()), f))
                .collect()
        };
        let cancelled = out.iter().filter(|r| r.kind == ExecKind::Cancelled).count() + later.len();
        self.apply_all(core, &mut out);
        core.scratch = out;
        for (key, answer) in later {
            self.confirm_cancel(key, answer);
        }
        cancelled
    }

    /// Waits, in a task, for the venue's confirmation of a cancel; the `cancelled` report is
    /// recorded when it comes (unless the order closed meanwhile).
    fn confirm_cancel(&self, key: OrderKey, answer: Pending<ExecReport>) {
        let journal = match &self.journaling {
            Journaling::Ahead(j) => Some(j.clone()),
            Journaling::Off | Journaling::Behind(_) => None,
        };
        let me = self.me.clone();
        spawn(async move {
            match answer.await {
                Ok(report) => {
                    if let Some(svc) = me.upgrade() {
                        let _one_at_a_time = svc.reconciling.lock().await;
                        // A poll may have seen the order cancelled (or filled) and recorded
                        // it first.
                        let working = svc.lock().orders.contains_key(&key);
                        if working {
                            svc.record(report).await;
                        }
                    } else if let Some(j) = journal {
                        let _ = j.record(&report).await;
                    }
                }
                Err(e) => {
                    tracing::warn!(error = %e, client_id = %key.1, "cancel not confirmed by the venue");
                }
            }
        });
    }

    /// The symbol of a working order (for the `orders.cancel` grant check).
    pub fn working_symbol(&self, agent: &Arc<str>, client_id: &str) -> Option<Arc<str>> {
        self.lock()
            .orders
            .get(&(agent.clone(), client_id.to_string()))
            .map(|o| o.request.symbol.clone())
    }

    /// The agent's working orders, oldest first.
    pub fn open_orders(&self, agent: &str) -> Vec<OrderState> {
        let core = self.lock();
        let mut v: Vec<OrderState> = core
            .orders
            .iter()
            .filter(|((a, _), _)| &**a == agent)
            .map(|(_, o)| o.clone())
            .collect();
        v.sort_by(|a, b| (a.created, &a.request.client_id).cmp(&(b.created, &b.request.client_id)));
        v
    }

    /// The agent's position in `symbol`: the venue's, or, from a venue that does not report
    /// positions (a live one), the risk engine's view from the fills the router has seen
    /// (realised PnL net of fees, of the day; fees not split out), valued at the reference
    /// price.
    pub fn position(&self, agent: &str, symbol: &str) -> PaperPosition {
        if let Some(p) = self.venue.position(agent, symbol) {
            return p;
        }
        let core = self.lock();
        let p = core.risk.position(agent, symbol);
        let mark = core
            .refs
            .get(symbol)
            .map(|q| (q.bid + q.ask) / Decimal::TWO);
        let unrealised = mark
            .and_then(|m| m.checked_sub(p.avg_price))
            .and_then(|d| d.checked_mul(p.qty))
            .unwrap_or(Decimal::ZERO);
        PaperPosition {
            symbol: symbol.into(),
            qty: p.qty,
            avg_price: p.avg_price,
            realised_pnl: core.risk.realised_pnl(agent),
            fees: Decimal::ZERO,
            unrealised_pnl: unrealised,
            mark,
        }
    }

    /// The agent's balances as the venue reports them: its paper account, or with a live
    /// venue none (the venue's account balance is not queried; see `docs/orders.md`).
    pub fn balances(&self, agent: &str) -> Vec<Balance> {
        self.venue.balances(agent)
    }

    /// Sets the kill switch globally (`agent` `None`) or for one agent: `On` and `Reducing`
    /// cancel every working order in scope; `Halt` keeps them.
    pub fn kill_switch(&self, agent: Option<&str>, mode: KillMode, now: Timestamp) -> usize {
        let mut core = self.lock();
        let scope = match agent {
            Some(a) => Scope::Agent(a),
            None => Scope::Global,
        };
        core.risk.set_kill_switch(scope, mode == KillMode::On);
        core.risk.set_trading_state(
            scope,
            match mode {
                KillMode::Reducing => TradingState::Reducing,
                KillMode::Halt => TradingState::Halted,
                KillMode::Off | KillMode::On => TradingState::Active,
            },
        );
        match agent {
            Some(a) => {
                core.agent_kill.insert(a.into(), mode);
            }
            None => core.kill = mode,
        }
        let mut cancelled = 0;
        if matches!(mode, KillMode::On | KillMode::Reducing) {
            cancelled = self.cancel_working(&mut core, agent, now);
        }
        tracing::warn!(agent = agent.unwrap_or("*"), mode = ?mode, cancelled, "kill switch set");
        cancelled
    }

    /// Cancels every working order of `agent` (a quarantined agent cannot manage them) without
    /// setting a kill switch; returns how many were cancelled or asked to be.
    pub fn cancel_all_for(&self, agent: &str, now: Timestamp) -> usize {
        let mut core = self.lock();
        self.cancel_working(&mut core, Some(agent), now)
    }

    /// The router's configuration (risk limits, paper fees and starting balance).
    pub fn config(&self) -> &OrdersConfig {
        &self.config
    }

    /// Total equity of every account the venue keeps (paper: cash plus positions at their
    /// marks).
    pub fn total_equity(&self) -> Decimal {
        self.venue.accounts().iter().map(|a| a.equity).sum()
    }

    /// The kill switches that are not off: global first (`None`), then per agent.
    pub fn kill_switches(&self) -> Vec<(Option<String>, KillMode)> {
        let core = self.lock();
        let mut v = Vec::new();
        if core.kill != KillMode::Off {
            v.push((None, core.kill));
        }
        let mut agents: Vec<_> = core
            .agent_kill
            .iter()
            .filter(|(_, m)| **m != KillMode::Off)
            .map(|(a, m)| (Some(a.to_string()), *m))
            .collect();
        agents.sort();
        v.extend(agents);
        v
    }

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

    fn spawn_approval(self: &Arc<Self>, id: u64, req: OrderRequest, notional: Decimal) {
        let Ok(rt) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let svc = Arc::clone(self);
        match self.config.consensus.clone() {
            None => {
                let timeout = self.config.approval_timeout;
                rt.spawn(async move {
                    tokio::time::sleep(timeout).await;
                    let now = crate::clock::Clock::system().now_ns();
                    svc.resolve_approval(id, false, "approval.timeout", now);
                });
            }
            Some(c) => {
                rt.spawn(async move {
                    let approve = svc.ask_risk_agents(&c, &req, notional).await;
                    let now = crate::clock::Clock::system().now_ns();
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
        let (open_orders, waiting_approval) = {
            let core = self.lock();
            (core.orders.len(), core.waiting.len())
        };
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

fn remember(recent: &mut VecDeque<OrderState>, o: OrderState) {
    if recent.len() >= RECENT_CLOSED {
        recent.pop_front();
    }
    recent.push_back(o);
}

impl crate::market::service::MarketObserver for OrderService {
    fn on_market(&self, event: &MarketEvent) {
        OrderService::on_market(self, event);
    }
}

/// Where the kill switches are kept between runs.
fn kill_switch_path(data_dir: &std::path::Path) -> std::path::PathBuf {
    data_dir.join("kill-switch.json")
}

/// Writes the kill switches (atomically: a crash leaves the old file or the new one).
pub fn save_kill_switches(
    data_dir: &std::path::Path,
    switches: &[(Option<String>, KillMode)],
) -> std::io::Result<()> {
    let list: Vec<serde_json::Value> = switches
        .iter()
        .map(|(a, m)| serde_json::json!({ "agent": a, "mode": m }))
        .collect();
    let path = kill_switch_path(data_dir);
    let tmp = path.with_extension("json.tmp");
    std::fs::write(&tmp, serde_json::Value::Array(list).to_string())?;
    std::fs::rename(&tmp, &path)
}

/// Reads the kill switches of the last run; none when the file does not exist. A file that
/// does not parse is an error naming it: trading must not resume because a file was damaged.
pub fn load_kill_switches(
    data_dir: &std::path::Path,
) -> anyhow::Result<Vec<(Option<String>, KillMode)>> {
    let path = kill_switch_path(data_dir);
    let text = match crate::files::read_regular_text(&path, crate::files::MAX_TEXT_BYTES) {
        Ok(t) => t,
        Err(e) if e.is_not_found() => return Ok(Vec::new()),
        Err(e) => anyhow::bail!("cannot read {}: {e}", path.display()),
    };
    let bad = |why: &str| anyhow::anyhow!("{}: {why}", path.display());
    let list: Vec<serde_json::Value> =
        serde_json::from_str(&text).map_err(|e| bad(&e.to_string()))?;
    list.iter()
        .map(|v| {
            let mode = v["mode"]
                .as_str()
                .and_then(KillMode::parse)
                .ok_or_else(|| bad("mode must be on, off or reducing"))?;
            let agent = match &v["agent"] {
                serde_json::Value::Null => None,
                serde_json::Value::String(s) => Some(s.clone()),
                _ => return Err(bad("agent must be a string or null")),
            };
            Ok((agent, mode))
        })
        .collect()
}

#[cfg(test)]
#[path = "router_tests.rs"]
mod tests;
