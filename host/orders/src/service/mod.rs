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

use super::journal::{CancelRequest, Journal, JournalError, OrderFilter};
use super::paper::{Balance, PaperConfig, PaperPosition};
use super::risk::{self, RiskEngine, RiskLimits, Scope, TradingState};
use super::venue::{Answer, PaperVenue, Pending, Venue, VenueError, VenueKind, VenueOrder};
use super::{ExecKind, ExecReport, OrderKind, OrderRequest, OrderState, OrderStatus};
use colony_bus::{Bus, Content, Envelope, Priority};
use colony_market::replay;
use colony_market::types::{MarketEvent, Quote, Side, Timestamp};

mod approvals;
mod instruments;
mod kill_switch;
mod recovery;
mod report;
mod send;
mod sink;

pub use instruments::VenueInstruments;
pub use kill_switch::{KillMode, KillSwitchFileError, load_kill_switches, save_kill_switches};
pub use recovery::{RecoveryReport, reconcile_reports};
pub use report::{
    AccountRow, FillRow, LimitRow, OrderCounters, OrderRow, OrdersReport, OrdersStatus,
    PendingApproval, PositionRow, order_row,
};
use sink::{JournalOp, JournalSink};

const NANOS_PER_DAY: u64 = 86_400 * 1_000_000_000;

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

/// Closed orders kept in memory for `colony orders list` (the journal keeps all of them).
const RECENT_CLOSED: usize = 1_000;
/// Fills kept in memory for `colony orders list`.
const RECENT_FILLS: usize = 1_000;

/// The subject an agent's order events are published on (the agent's actor subscribes to it).
pub fn events_subject(agent: &str) -> String {
    format!("agent.{agent}.orders")
}

pub use colony_model::order::OrderUpdate;

/// The immediate answer to a `place`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ack {
    /// On its way to the venue; events follow.
    Submitted,
    /// Refused before the venue: the reason code and the detail.
    Rejected {
        /// The reason code (`risk.max-notional`, …).
        code: String,
        /// What was wrong, for a person.
        detail: String,
    },
    /// Waiting for approval (the approval id).
    PendingApproval {
        /// The approval id an operator approves or rejects.
        id: u64,
    },
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
    /// Limits for every agent (each agent's grant can only tighten them); by default
    /// [`RiskLimits::defaults`].
    pub risk: RiskLimits,
    /// The keys of `risk` whose value is the built-in default (not written by the operator).
    pub risk_defaults: Vec<&'static str>,
    /// Symbols the configuration defines (`[orders] instruments`), known besides those the
    /// market feed publishes.
    pub instruments: Vec<Arc<str>>,
    /// Whether an order for a symbol neither the feed nor the configuration defines is
    /// refused (`risk.unknown-instrument`). On by default.
    pub require_known_instruments: bool,
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
        let risk = RiskLimits::defaults();
        OrdersConfig {
            risk_defaults: risk.entries().into_iter().map(|(k, _)| k).collect(),
            risk,
            instruments: Vec::new(),
            require_known_instruments: true,
            paper: PaperConfig::default(),
            approval_notional: None,
            approval_timeout: Duration::from_secs(60),
            consensus: None,
        }
    }
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
    /// Orders whose intent is being journaled ahead of a remote venue and that were not
    /// handed to it yet, and whether a cancel was asked for meanwhile: the send stops them
    /// ([`OrderService::send_journaled`]), so a kill switch or a cancel between admission and
    /// send leaves nothing at the venue.
    unsent: HashMap<OrderKey, bool>,
    /// The day (since the epoch) of the last order: when it changes, the venue is told
    /// ([`Venue::new_day`]: the paper exchange forgets the closed orders of earlier days, as
    /// the risk engine frees their client ids).
    day: u64,
    /// What the venue's own instrument list gave.
    venue_instruments: VenueInstruments,
}

/// How the router journals, decided once from the venue's kind.
enum Journaling {
    /// No journal (benchmarks, tests of the router alone).
    Off,
    /// Written behind an in-process venue by a task: its orders die with the process, so
    /// there is nothing outside it to send twice.
    Behind(JournalSink),
    /// Awaited: an order's intent is durable before the venue sees it, and a report is
    /// written before it is applied. Refusals, which reach no venue, are written behind.
    Ahead(Journal, JournalSink),
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

/// A reference quote from any market event (a trade or bar close stands for both sides);
/// [`OrderService::on_market`] passes only events whose prices are above zero.
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
        risk.require_known_instruments(config.require_known_instruments);
        for symbol in &config.instruments {
            risk.learn_instrument(symbol);
        }
        let name: Arc<str> = venue.name().into();
        let kind = venue.kind();
        let journal_venue: Arc<str> = match kind {
            VenueKind::Remote => name.clone(),
            VenueKind::InProcess => format!("{name}@{}", crate::wall_ns()).into(),
        };
        let journaling = match (&journal, kind) {
            (None, _) => Journaling::Off,
            (Some(j), VenueKind::InProcess) => {
                Journaling::Behind(JournalSink::start(j.clone(), journal_venue.clone()))
            }
            (Some(j), VenueKind::Remote) => Journaling::Ahead(
                j.clone(),
                JournalSink::start(j.clone(), journal_venue.clone()),
            ),
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
                unsent: HashMap::new(),
                day: 0,
                venue_instruments: VenueInstruments::default(),
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
        // The market service drops bad data before it gets here; this is the second line: a
        // price ≤ 0 is never a reference, a paper fill price or an instrument definition.
        if !event.is_sane() {
            return;
        }
        let mut core = self.lock();
        // A symbol is learned once: when it first has a reference (or an event without one).
        let new_symbol = match reference(event) {
            Some(q) => core.refs.insert(q.symbol.clone(), q).is_none(),
            None => true,
        };
        if new_symbol {
            core.risk.learn_instrument(event.symbol());
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
    /// With a remote venue the order is open (working, in the kill switch's reach) from here,
    /// before its intent is journaled, and marked unsent until the send.
    fn dispatch(&self, core: &mut Core, req: OrderRequest, now: Timestamp) -> Route {
        self.submitted.fetch_add(1, Ordering::Relaxed);
        self.open(core, &req, now);
        if let Journaling::Ahead(..) = self.journaling {
            core.unsent
                .insert((req.agent.clone(), req.client_id.clone()), false);
            return Route::Journal(req);
        }
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

    /// Waits (up to `limit`) until the journal has every report written behind an in-process
    /// venue; returns whether it has.
    pub async fn flush_journal(&self, limit: Duration) -> bool {
        match &self.journaling {
            Journaling::Behind(sink) | Journaling::Ahead(_, sink) => sink.flush(limit).await,
            Journaling::Off => true,
        }
    }

    /// A refusal before the venue: counted, remembered, journaled (as a rejection: the
    /// post-trade record of what was refused, with its reason code), and delivered as a
    /// `rejected` event.
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
        if let Journaling::Behind(sink) | Journaling::Ahead(_, sink) = &self.journaling {
            sink.send(JournalOp::Rejection(report.clone(), req.clone()));
        }
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
        env.content = Content::Order(Arc::new(update));
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
        // With a remote venue the cancel-rate window outlives a restart (an in-process venue
        // starts its risk state afresh with every run).
        if let Journaling::Ahead(_, sink) = &self.journaling {
            sink.send(JournalOp::Cancel(CancelRequest {
                agent: agent.clone(),
                client_id: client_id.to_string(),
                ts: now,
            }));
        }
        if let Some(asked) = core.unsent.get_mut(&key) {
            // Not at the venue yet: the send stops it.
            *asked = true;
            return Ok(());
        }
        self.cancel_at_venue(&mut core, key, now);
        Ok(())
    }

    /// Asks the venue to cancel the working order `key`: what it answers at once is applied,
    /// a later answer is confirmed by a task. Returns whether the answer comes later.
    fn cancel_at_venue(&self, core: &mut Core, key: OrderKey, now: Timestamp) -> bool {
        let mut out = std::mem::take(&mut core.scratch);
        let answer = match core.orders.get(&key) {
            Some(o) => Arc::clone(&self.venue).cancel(o, now, &mut out),
            None => Answer::Now,
        };
        self.apply_all(core, &mut out);
        core.scratch = out;
        match answer {
            Answer::Later(answer) => {
                self.confirm_cancel(key, answer);
                true
            }
            Answer::Now => false,
        }
    }

    /// Cancels the working orders of `agent` (`None`: of every agent) and returns how many
    /// were cancelled or asked to be.
    fn cancel_working(&self, core: &mut Core, agent: Option<&str>, now: Timestamp) -> usize {
        let mut out = std::mem::take(&mut core.scratch);
        // Orders not at the venue yet are stopped by their send.
        let mut unsent = 0;
        for (key, asked) in core.unsent.iter_mut() {
            if agent.is_none_or(|a| *key.0 == *a) {
                *asked = true;
                unsent += 1;
            }
        }
        let later: Vec<(OrderKey, Pending<ExecReport>)> = {
            let unsent = &core.unsent;
            let working: Vec<&OrderState> = core
                .orders
                .iter()
                .filter(|(k, o)| {
                    agent.is_none_or(|a| *o.request.agent == *a) && !unsent.contains_key(*k)
                })
                .map(|(_, o)| o)
                .collect();
            Arc::clone(&self.venue)
                .cancel_all(agent, &working, now, &mut out)
                .into_iter()
                .map(|(o, f)| ((o.request.agent.clone(), o.request.client_id.clone()), f))
                .collect()
        };
        let cancelled =
            out.iter().filter(|r| r.kind == ExecKind::Cancelled).count() + later.len() + unsent;
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
            Journaling::Ahead(j, _) => Some(j.clone()),
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
}

/// The kill switches an agent's orders are under: the global one and the agent's own.
fn kill_modes(core: &Core, agent: &str) -> [KillMode; 2] {
    [
        core.kill,
        core.agent_kill.get(agent).copied().unwrap_or(KillMode::Off),
    ]
}

fn remember(recent: &mut VecDeque<OrderState>, o: OrderState) {
    if recent.len() >= RECENT_CLOSED {
        recent.pop_front();
    }
    recent.push_back(o);
}

impl colony_market::service::MarketObserver for OrderService {
    fn on_market(&self, event: &MarketEvent) {
        OrderService::on_market(self, event);
    }
}

#[cfg(test)]
mod tests;
