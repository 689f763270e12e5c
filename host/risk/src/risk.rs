//! The pre-trade risk engine: every order an agent places passes [`RiskEngine::check`] before it
//! may reach a venue, in the spirit of SEC Rule 15c3-5 (market access) and the FIA guidance on
//! automated trading risk controls: hard limits checked before the order leaves, per account
//! (here: per agent) and firm-wide, with a kill switch that does not depend on the strategy.
//!
//! **Architecture Invariant:** this module is pure. It knows nothing about wasmtime, the bus,
//! venues or the clock: the caller passes the reference quote and the time (`now`, the order's
//! timestamp, which is the virtual clock during a replay), so a replay decides exactly as the
//! live run did. Money is [`Decimal`] throughout, and every sum or product an order controls is
//! checked: an overflow is a rejection, never a panic.
//!
//! Limits come as [`RiskLimits`]: one global set and optionally one per agent. The effective
//! limit for an agent is the stricter of the two, field by field (the smaller maximum, the larger
//! minimum, both instrument lists, both tick sizes); it is computed when limits are set, so a
//! check does not allocate. A limit that is `None` is not checked.
//!
//! The checks, in the order they run (the first failure is the answer):
//!
//! | check | code | rejects when | why |
//! |---|---|---|---|
//! | order shape | `risk.invalid-order` | empty or over-long client id, agent or symbol; a limit order without a price or a market order with one; a price ≤ 0; post-only on a market or IOC/FOK order | a malformed order must not reach a venue, whose answer to it is undefined |
//! | kill switch | `risk.kill-switch` | the global or the agent's kill switch is on | the operator's "stop everything now", independent of the strategy (FIA) |
//! | trading state | `risk.halted` | the global or the agent's state is `Halted` | a halted market or agent places nothing |
//! | duplicate id | `risk.duplicate-client-id` | the agent used this client order id today | a retried or replayed order must not be sent twice |
//! | instrument | `risk.instrument` | the symbol matches no pattern of an instrument list | only instruments the agent is approved for (15c3-5 (c)(2)(ii)) |
//! | precision | `risk.precision` | the price is not a multiple of a tick size, or the quantity of a quantity step | venues reject these, and a mis-scaled number is a classic fat-finger |
//! | minimum quantity | `risk.min-qty` | quantity ≤ 0 or below `min_qty` | dust orders and sign errors |
//! | maximum quantity | `risk.max-qty` | quantity above `max_qty` | fat-finger size (15c3-5 (c)(1)(ii)) |
//! | market data | `risk.stale-data` | a reference quote is needed (market order, collar or age limit set) and there is none for the symbol, it is older than `max_quote_age_ms`, or its needed side is ≤ 0 | prices checked against stale data are not checked at all |
//! | price collar | `risk.price-collar` | a limit price deviates from the reference (ask for buys, bid for sells) by more than `price_collar_bps` | erroneous prices (15c3-5 (c)(1)(ii)) |
//! | order notional | `risk.max-notional` | price × quantity (market orders: the reference) above `max_notional`, or overflows | credit per order (15c3-5 (c)(1)(i)) |
//! | reducing only | `risk.reducing-only` | the trading state is `Reducing` or the order is `reduce_only`, and it would not reduce the absolute position | wind down without adding risk |
//! | daily loss | `risk.daily-loss` | the agent's realised PnL of the day (net of fees) is at or below `-max_daily_loss`, unless the order reduces the position | stop a losing strategy but let it flatten |
//! | position | `risk.position-limit` | the position plus this order and the agent's open orders on the same side and symbol exceeds `max_position` in absolute value, unless the order reduces the position | worst-case exposure per instrument |
//! | open orders | `risk.max-open-orders` | the agent already has `max_open_orders` open | runaway order loops |
//! | open notional | `risk.max-open-notional` | the agent's open notional plus this order's exceeds `max_open_notional` | aggregate credit (15c3-5 (c)(1)(i)) |
//! | order rate | `risk.order-rate` | the agent passed `max_orders_per_sec` orders in the last second or `max_orders_per_min` in the last minute | runaway algorithms and venue throttles (FIA) |
//! | cancel rate | `risk.cancel-rate` | ([`RiskEngine::check_cancel`]) the agent sent `max_cancels_per_sec` / `max_cancels_per_min` cancels | cancel storms; venues police order-to-trade ratios |
//!
//! A risk-reducing order is one on the side opposite to the position whose quantity, together
//! with the agent's other open orders on that side and symbol, is at most the absolute position:
//! it cannot flip the position.
//!
//! An order that passes is reserved at once: its client id is remembered, it counts towards the
//! order rate, and it is open (towards open orders, open notional and worst-case position) until
//! [`RiskEngine::on_closed`] or [`RiskEngine::on_cancel`], or until fills have used up its
//! quantity. Counting it before the venue has acknowledged it is deliberate: an order in flight
//! is exposure. Every rejection is counted per code ([`RiskEngine::rejections`]).
//!
//! The day rolls over at midnight UTC of `now` as seen by `check`: the realised PnL of every
//! agent restarts at zero and client ids may be reused; positions and open orders carry over.

use crate::ledger::Ledger;
use colony_model::glob::Glob;
use colony_model::market::{Quote, Side, Timestamp};
use colony_model::order::{OrderKind, OrderRequest, TimeInForce};
use rust_decimal::Decimal;
use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::fmt;
use std::sync::Arc;

/// Longest client order id, agent name or symbol accepted; bounds what the engine remembers.
pub const MAX_ID_LEN: usize = 64;

const NANOS_PER_SEC: u64 = 1_000_000_000;
const NANOS_PER_MIN: u64 = 60 * NANOS_PER_SEC;
const NANOS_PER_DAY: u64 = 86_400 * NANOS_PER_SEC;

/// What the engine lets through.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub enum TradingState {
    /// Normal trading.
    #[default]
    Active,
    /// Only orders that reduce the absolute position.
    Reducing,
    /// No new orders.
    Halted,
}

/// What a kill switch or a trading state applies to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope<'a> {
    /// Every agent.
    Global,
    /// One agent.
    Agent(&'a str),
}

/// A list of symbol patterns an order's symbol must match one of. A pattern is a symbol, or
/// symbols with `*` standing for any run of characters (`BTC-*`, `*-USDT`, `*`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Instruments {
    patterns: Vec<Glob>,
}

impl Instruments {
    /// Compiles the patterns once; an empty list allows nothing.
    pub fn new<I, S>(patterns: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        Instruments {
            patterns: patterns
                .into_iter()
                .map(|p| Glob::compile(p.as_ref()))
                .collect(),
        }
    }

    /// Whether `symbol` matches one of the patterns.
    pub fn allows(&self, symbol: &str) -> bool {
        self.patterns.iter().any(|p| p.matches(symbol))
    }
}

/// Risk limits, global or for one agent. `None` means "not limited here"; the effective limit
/// for an agent is the stricter of the global and the agent's value.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RiskLimits {
    /// Symbols the agent may trade.
    pub instruments: Option<Instruments>,
    /// The price must be a multiple of this.
    pub tick_size: Option<Decimal>,
    /// The quantity must be a multiple of this.
    pub qty_step: Option<Decimal>,
    /// Smallest quantity per order.
    pub min_qty: Option<Decimal>,
    /// Largest quantity per order.
    pub max_qty: Option<Decimal>,
    /// Largest price × quantity per order.
    pub max_notional: Option<Decimal>,
    /// Largest deviation of a limit price from the reference, in basis points.
    pub price_collar_bps: Option<u32>,
    /// Orders per agent in any one second.
    pub max_orders_per_sec: Option<u32>,
    /// Orders per agent in any one minute.
    pub max_orders_per_min: Option<u32>,
    /// Cancels per agent in any one second.
    pub max_cancels_per_sec: Option<u32>,
    /// Cancels per agent in any one minute.
    pub max_cancels_per_min: Option<u32>,
    /// Open orders per agent.
    pub max_open_orders: Option<u32>,
    /// Sum of the open orders' notional per agent.
    pub max_open_notional: Option<Decimal>,
    /// Absolute position per agent and symbol, open orders included.
    pub max_position: Option<Decimal>,
    /// Realised loss of the day (a positive amount) at which new risk stops.
    pub max_daily_loss: Option<Decimal>,
    /// Oldest reference quote an order may be checked against, in milliseconds.
    pub max_quote_age_ms: Option<u64>,
}

/// The stricter of two limits resolved once: what [`RiskEngine::check`] reads.
#[derive(Debug, Clone, Default)]
struct Effective {
    /// Every list must allow the symbol.
    instruments: Vec<Instruments>,
    tick_sizes: Vec<Decimal>,
    qty_steps: Vec<Decimal>,
    min_qty: Option<Decimal>,
    max_qty: Option<Decimal>,
    max_notional: Option<Decimal>,
    price_collar_bps: Option<u32>,
    max_orders_per_sec: Option<u32>,
    max_orders_per_min: Option<u32>,
    max_cancels_per_sec: Option<u32>,
    max_cancels_per_min: Option<u32>,
    max_open_orders: Option<u32>,
    max_open_notional: Option<Decimal>,
    max_position: Option<Decimal>,
    max_daily_loss: Option<Decimal>,
    max_quote_age_ms: Option<u64>,
}

fn stricter_max<T: Ord + Copy>(a: Option<T>, b: Option<T>) -> Option<T> {
    match (a, b) {
        (Some(x), Some(y)) => Some(x.min(y)),
        (x, None) => x,
        (None, y) => y,
    }
}

fn stricter_min<T: Ord + Copy>(a: Option<T>, b: Option<T>) -> Option<T> {
    match (a, b) {
        (Some(x), Some(y)) => Some(x.max(y)),
        (x, None) => x,
        (None, y) => y,
    }
}

impl Effective {
    fn resolve(global: &RiskLimits, agent: Option<&RiskLimits>) -> Self {
        let empty = RiskLimits::default();
        let a = agent.unwrap_or(&empty);
        let both = [global, a];
        // A tick or step ≤ 0 would make every number a multiple of it (or divide by zero).
        let positive = |f: fn(&RiskLimits) -> Option<Decimal>| -> Vec<Decimal> {
            both.iter()
                .filter_map(|l| f(l))
                .filter(|d| *d > Decimal::ZERO)
                .collect()
        };
        Effective {
            instruments: both.iter().filter_map(|l| l.instruments.clone()).collect(),
            tick_sizes: positive(|l| l.tick_size),
            qty_steps: positive(|l| l.qty_step),
            min_qty: stricter_min(global.min_qty, a.min_qty),
            max_qty: stricter_max(global.max_qty, a.max_qty),
            max_notional: stricter_max(global.max_notional, a.max_notional),
            price_collar_bps: stricter_max(global.price_collar_bps, a.price_collar_bps),
            max_orders_per_sec: stricter_max(global.max_orders_per_sec, a.max_orders_per_sec),
            max_orders_per_min: stricter_max(global.max_orders_per_min, a.max_orders_per_min),
            max_cancels_per_sec: stricter_max(global.max_cancels_per_sec, a.max_cancels_per_sec),
            max_cancels_per_min: stricter_max(global.max_cancels_per_min, a.max_cancels_per_min),
            max_open_orders: stricter_max(global.max_open_orders, a.max_open_orders),
            max_open_notional: stricter_max(global.max_open_notional, a.max_open_notional),
            max_position: stricter_max(global.max_position, a.max_position),
            max_daily_loss: stricter_max(global.max_daily_loss, a.max_daily_loss),
            max_quote_age_ms: stricter_max(global.max_quote_age_ms, a.max_quote_age_ms),
        }
    }
}

/// Why an order or a cancel was refused; [`RejectCode::as_str`] is stable and documented in
/// the module table.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum RejectCode {
    /// `risk.invalid-order`
    InvalidOrder,
    /// `risk.kill-switch`
    KillSwitch,
    /// `risk.halted`
    Halted,
    /// `risk.duplicate-client-id`
    DuplicateClientId,
    /// `risk.instrument`
    Instrument,
    /// `risk.precision`
    Precision,
    /// `risk.min-qty`
    MinQty,
    /// `risk.max-qty`
    MaxQty,
    /// `risk.stale-data`
    StaleData,
    /// `risk.price-collar`
    PriceCollar,
    /// `risk.max-notional`
    MaxNotional,
    /// `risk.reducing-only`
    ReducingOnly,
    /// `risk.daily-loss`
    DailyLoss,
    /// `risk.position-limit`
    PositionLimit,
    /// `risk.max-open-orders`
    MaxOpenOrders,
    /// `risk.max-open-notional`
    MaxOpenNotional,
    /// `risk.order-rate`
    OrderRate,
    /// `risk.cancel-rate`
    CancelRate,
}

impl RejectCode {
    /// Every code, in check order.
    pub const ALL: [RejectCode; 18] = [
        RejectCode::InvalidOrder,
        RejectCode::KillSwitch,
        RejectCode::Halted,
        RejectCode::DuplicateClientId,
        RejectCode::Instrument,
        RejectCode::Precision,
        RejectCode::MinQty,
        RejectCode::MaxQty,
        RejectCode::StaleData,
        RejectCode::PriceCollar,
        RejectCode::MaxNotional,
        RejectCode::ReducingOnly,
        RejectCode::DailyLoss,
        RejectCode::PositionLimit,
        RejectCode::MaxOpenOrders,
        RejectCode::MaxOpenNotional,
        RejectCode::OrderRate,
        RejectCode::CancelRate,
    ];

    /// The stable reason code, for example `risk.price-collar`.
    pub fn as_str(self) -> &'static str {
        match self {
            RejectCode::InvalidOrder => "risk.invalid-order",
            RejectCode::KillSwitch => "risk.kill-switch",
            RejectCode::Halted => "risk.halted",
            RejectCode::DuplicateClientId => "risk.duplicate-client-id",
            RejectCode::Instrument => "risk.instrument",
            RejectCode::Precision => "risk.precision",
            RejectCode::MinQty => "risk.min-qty",
            RejectCode::MaxQty => "risk.max-qty",
            RejectCode::StaleData => "risk.stale-data",
            RejectCode::PriceCollar => "risk.price-collar",
            RejectCode::MaxNotional => "risk.max-notional",
            RejectCode::ReducingOnly => "risk.reducing-only",
            RejectCode::DailyLoss => "risk.daily-loss",
            RejectCode::PositionLimit => "risk.position-limit",
            RejectCode::MaxOpenOrders => "risk.max-open-orders",
            RejectCode::MaxOpenNotional => "risk.max-open-notional",
            RejectCode::OrderRate => "risk.order-rate",
            RejectCode::CancelRate => "risk.cancel-rate",
        }
    }
}

impl fmt::Display for RejectCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A refused order or cancel: the stable code and a lowercase fragment saying what failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{code}: {detail}")]
pub struct Rejection {
    /// Which check refused it.
    pub code: RejectCode,
    /// What failed, with the numbers.
    pub detail: String,
}

fn reject(code: RejectCode, detail: impl Into<String>) -> Rejection {
    Rejection {
        code,
        detail: detail.into(),
    }
}

/// A fill the venue reported.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fill {
    /// The agent whose order filled.
    pub agent: Arc<str>,
    /// The order's client id, if the fill belongs to an order the engine reserved.
    pub client_id: Option<String>,
    /// Instrument.
    pub symbol: Arc<str>,
    /// The order's side.
    pub side: Side,
    /// Filled quantity, positive.
    pub qty: Decimal,
    /// Fill price.
    pub price: Decimal,
    /// Fee paid (negative for a rebate), in the quote currency.
    pub fee: Decimal,
}

/// A fill the engine could not account for; the state is left as it was.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FillError {
    /// The quantity was zero or negative, or the price negative.
    #[error(
        "fill for agent {agent:?} on {symbol}: quantity must be positive and price not negative"
    )]
    Invalid {
        /// The agent.
        agent: Arc<str>,
        /// Instrument.
        symbol: Arc<str>,
    },
    /// Position, cost or PnL left the range of [`Decimal`].
    #[error("fill for agent {agent:?} on {symbol}: position or pnl overflows")]
    Overflow {
        /// The agent.
        agent: Arc<str>,
        /// Instrument.
        symbol: Arc<str>,
    },
}

/// A position in one symbol: signed quantity (negative is short) and average entry price.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Position {
    /// Signed quantity; negative is short.
    pub qty: Decimal,
    /// Average entry price of the open quantity; zero when flat. Rounded to `Decimal`'s 28
    /// significant digits when the division is inexact (the engine keeps the cost basis: see
    /// [`Ledger`]).
    pub avg_price: Decimal,
}

impl From<Ledger> for Position {
    fn from(l: Ledger) -> Position {
        Position {
            qty: l.qty,
            avg_price: l.avg_price(),
        }
    }
}

/// An order that passed the checks and is not closed yet.
#[derive(Debug, Clone, PartialEq, Eq)]
struct OpenOrder {
    symbol: Arc<str>,
    side: Side,
    /// Quantity not filled yet.
    remaining: Decimal,
    /// Price its notional is counted at: the limit price, or the reference for a market order.
    price: Decimal,
    /// `remaining × price`.
    notional: Decimal,
    /// The venue acknowledged it.
    accepted: bool,
}

/// What the engine knows about one agent.
#[derive(Debug, Clone, Default)]
struct AgentState {
    positions: HashMap<Arc<str>, Ledger>,
    open: HashMap<String, OpenOrder>,
    open_notional: Decimal,
    order_times: VecDeque<Timestamp>,
    cancel_times: VecDeque<Timestamp>,
    seen_client_ids: HashSet<String>,
    realised_pnl: Decimal,
    kill: bool,
    trading: TradingState,
}

impl AgentState {
    fn position(&self, symbol: &str) -> Ledger {
        self.positions.get(symbol).copied().unwrap_or_default()
    }

    /// Remaining quantity of the open orders on `symbol` and `side`; `None` on overflow.
    fn open_qty(&self, symbol: &str, side: Side) -> Option<Decimal> {
        self.open
            .values()
            .filter(|o| o.side == side && *o.symbol == *symbol)
            .try_fold(Decimal::ZERO, |acc, o| acc.checked_add(o.remaining))
    }

    fn close(&mut self, client_id: &str) -> bool {
        match self.open.remove(client_id) {
            Some(o) => {
                self.open_notional = (self.open_notional - o.notional).max(Decimal::ZERO);
                true
            }
            None => false,
        }
    }
}

/// Everything the checks read that is not a limit: positions, open orders, recent order and
/// cancel times, client ids seen today, realised PnL of the day, kill switches, trading states.
#[derive(Debug, Clone, Default)]
pub(crate) struct RiskState {
    /// Day number (days since the epoch, UTC) the daily figures belong to; `None` until the
    /// first check, so fills before it count towards that check's day.
    day: Option<u64>,
    kill: bool,
    trading: TradingState,
    agents: HashMap<Arc<str>, AgentState>,
}

/// The pre-trade risk engine: limits, state and rejection counters. See the module doc.
#[derive(Debug, Clone, Default)]
pub struct RiskEngine {
    global: RiskLimits,
    agent_limits: HashMap<Arc<str>, RiskLimits>,
    global_effective: Effective,
    agent_effective: HashMap<Arc<str>, Effective>,
    state: RiskState,
    rejections: [u64; RejectCode::ALL.len()],
}

/// What a passing order reserves.
struct Reservation {
    price: Decimal,
    notional: Decimal,
}

fn is_reducing(position: Decimal, side: Side, qty: Decimal) -> bool {
    match side {
        Side::Sell => position > Decimal::ZERO && qty <= position,
        Side::Buy => position < Decimal::ZERO && qty <= -position,
    }
}

/// Whether `times` (sorted, oldest first) holds `max` or more entries after `since`: a binary
/// search, so a check costs O(log n) however many orders the last minute saw.
fn at_rate(times: &VecDeque<Timestamp>, since: Timestamp, max: u32) -> bool {
    let after = times.len() - times.partition_point(|t| *t <= since);
    after >= max as usize
}

/// Records `now`, keeping `times` sorted and dropping what is older than a minute from the
/// front (amortised O(1): the times come in order, except after a clock step back, when
/// `now` is inserted in place).
fn record_time(times: &mut VecDeque<Timestamp>, now: Timestamp) {
    let cutoff = now.saturating_sub(NANOS_PER_MIN);
    while times.front().is_some_and(|t| *t <= cutoff) {
        times.pop_front();
    }
    match times.back() {
        Some(last) if *last > now => {
            let at = times.partition_point(|t| *t <= now);
            times.insert(at, now);
        }
        _ => times.push_back(now),
    }
}

impl RiskEngine {
    /// An engine with these global limits, no agent limits and empty state.
    pub fn new(global: RiskLimits) -> Self {
        let mut e = RiskEngine::default();
        e.set_global_limits(global);
        e
    }

    /// Replaces the global limits; every agent's effective limits are recomputed.
    pub fn set_global_limits(&mut self, global: RiskLimits) {
        self.global_effective = Effective::resolve(&global, None);
        self.agent_effective = self
            .agent_limits
            .iter()
            .map(|(a, l)| (a.clone(), Effective::resolve(&global, Some(l))))
            .collect();
        self.global = global;
    }

    /// Sets one agent's own limits; the stricter of them and the global ones apply.
    pub fn set_agent_limits(&mut self, agent: &str, limits: RiskLimits) {
        let agent: Arc<str> = agent.into();
        self.agent_effective.insert(
            agent.clone(),
            Effective::resolve(&self.global, Some(&limits)),
        );
        self.agent_limits.insert(agent, limits);
    }

    /// Removes an agent's own limits; the global ones apply alone.
    pub fn clear_agent_limits(&mut self, agent: &str) {
        self.agent_limits.remove(agent);
        self.agent_effective.remove(agent);
    }

    fn limits_for(&self, agent: &str) -> &Effective {
        self.agent_effective
            .get(agent)
            .unwrap_or(&self.global_effective)
    }

    fn agent_mut(&mut self, agent: &str) -> &mut AgentState {
        self.agent_entry(&Arc::from(agent))
    }

    fn agent_entry(&mut self, agent: &Arc<str>) -> &mut AgentState {
        self.state.agents.entry(agent.clone()).or_default()
    }

    /// Turns a kill switch on or off. On, no new order passes in its scope; cancels still do.
    pub fn set_kill_switch(&mut self, scope: Scope<'_>, on: bool) {
        match scope {
            Scope::Global => self.state.kill = on,
            Scope::Agent(a) => self.agent_mut(a).kill = on,
        }
    }

    /// Sets the trading state of a scope; an agent trades under the stricter of the global
    /// state and its own.
    pub fn set_trading_state(&mut self, scope: Scope<'_>, state: TradingState) {
        match scope {
            Scope::Global => self.state.trading = state,
            Scope::Agent(a) => self.agent_mut(a).trading = state,
        }
    }

    /// Checks an order against the limits and the state at time `now`. `reference` is the
    /// latest quote of the order's symbol (a quote for another symbol counts as none). On
    /// success the order is reserved: open, counted towards the order rate, its client id taken.
    pub fn check(
        &mut self,
        req: &OrderRequest,
        reference: Option<&Quote>,
        now: Timestamp,
    ) -> Result<(), Rejection> {
        self.roll_day(now);
        match self.evaluate(req, reference, now) {
            Ok(r) => {
                self.reserve(req, r, now);
                Ok(())
            }
            Err(rej) => {
                self.count(rej.code);
                Err(rej)
            }
        }
    }

    /// Checks a cancel against the cancel-rate throttle and counts it when it passes. Kill
    /// switches and trading states never stop a cancel: cancelling reduces risk.
    pub fn check_cancel(&mut self, agent: &str, now: Timestamp) -> Result<(), Rejection> {
        let lim = self.limits_for(agent);
        let (per_sec, per_min) = (lim.max_cancels_per_sec, lim.max_cancels_per_min);
        let times = self.state.agents.get(agent).map(|a| &a.cancel_times);
        if let Some(times) = times {
            let refused = if per_sec
                .is_some_and(|m| at_rate(times, now.saturating_sub(NANOS_PER_SEC), m))
            {
                per_sec.map(|m| format!("{m} cancels in the last second"))
            } else if per_min.is_some_and(|m| at_rate(times, now.saturating_sub(NANOS_PER_MIN), m))
            {
                per_min.map(|m| format!("{m} cancels in the last minute"))
            } else {
                None
            };
            if let Some(what) = refused {
                self.count(RejectCode::CancelRate);
                return Err(reject(
                    RejectCode::CancelRate,
                    format!("agent {agent:?}: cancel rate reached ({what})"),
                ));
            }
        }
        record_time(&mut self.agent_mut(agent).cancel_times, now);
        Ok(())
    }

    /// The venue acknowledged a reserved order. Returns whether the engine knew it.
    pub fn on_accepted(&mut self, agent: &str, client_id: &str) -> bool {
        match self
            .state
            .agents
            .get_mut(agent)
            .and_then(|a| a.open.get_mut(client_id))
        {
            Some(o) => {
                o.accepted = true;
                true
            }
            None => false,
        }
    }

    /// The venue confirmed a cancel: the order is no longer open. Returns whether it was.
    pub fn on_cancel(&mut self, agent: &str, client_id: &str) -> bool {
        self.on_closed(agent, client_id)
    }

    /// The order ended otherwise (rejected by the venue, expired, IOC/FOK remainder dropped, or
    /// filled): it is no longer open. Its client id stays taken for the day. Returns whether it
    /// was open.
    pub fn on_closed(&mut self, agent: &str, client_id: &str) -> bool {
        self.state
            .agents
            .get_mut(agent)
            .is_some_and(|a| a.close(client_id))
    }

    /// Accounts a fill: the position (average-price accounting), the realised PnL of the day net
    /// of the fee, and the open order's remaining quantity (closed when used up).
    pub fn on_fill(&mut self, fill: &Fill) -> Result<(), FillError> {
        if fill.qty <= Decimal::ZERO || fill.price < Decimal::ZERO {
            return Err(FillError::Invalid {
                agent: fill.agent.clone(),
                symbol: fill.symbol.clone(),
            });
        }
        let overflow = || FillError::Overflow {
            agent: fill.agent.clone(),
            symbol: fill.symbol.clone(),
        };
        let a = self.agent_entry(&fill.agent);
        let before = a.position(&fill.symbol);
        let position = before
            .apply(fill.side, fill.qty, fill.price, fill.fee)
            .ok_or_else(overflow)?;
        let pnl = position
            .realised
            .checked_sub(before.realised)
            .and_then(|realised| a.realised_pnl.checked_add(realised))
            .and_then(|p| p.checked_sub(fill.fee))
            .ok_or_else(overflow)?;
        a.positions.insert(fill.symbol.clone(), position);
        a.realised_pnl = pnl;
        if let Some(id) = &fill.client_id {
            let mut used_up = false;
            if let Some(o) = a.open.get_mut(id.as_str()) {
                let remaining = (o.remaining - fill.qty.min(o.remaining)).max(Decimal::ZERO);
                let notional = remaining.checked_mul(o.price).unwrap_or(o.notional);
                a.open_notional = (a.open_notional - (o.notional - notional)).max(Decimal::ZERO);
                o.remaining = remaining;
                o.notional = notional;
                used_up = remaining.is_zero();
            }
            if used_up {
                a.close(id);
            }
        }
        Ok(())
    }

    /// Rejections so far per reason code, every code present (zero when never hit).
    pub fn rejections(&self) -> BTreeMap<&'static str, u64> {
        RejectCode::ALL
            .iter()
            .map(|c| (c.as_str(), self.rejections[*c as usize]))
            .collect()
    }

    /// The agent's position in `symbol` (flat when unknown).
    pub fn position(&self, agent: &str, symbol: &str) -> Position {
        self.state
            .agents
            .get(agent)
            .map(|a| Position::from(a.position(symbol)))
            .unwrap_or_default()
    }

    /// The agent's realised PnL of the day, net of fees.
    pub fn realised_pnl(&self, agent: &str) -> Decimal {
        self.state
            .agents
            .get(agent)
            .map_or(Decimal::ZERO, |a| a.realised_pnl)
    }

    /// Number of the agent's open (reserved, not closed) orders.
    pub fn open_orders(&self, agent: &str) -> usize {
        self.state.agents.get(agent).map_or(0, |a| a.open.len())
    }

    /// Sum of the agent's open orders' notional.
    pub fn open_notional(&self, agent: &str) -> Decimal {
        self.state
            .agents
            .get(agent)
            .map_or(Decimal::ZERO, |a| a.open_notional)
    }

    fn count(&mut self, code: RejectCode) {
        let n = &mut self.rejections[code as usize];
        *n = n.saturating_add(1);
    }

    fn roll_day(&mut self, now: Timestamp) {
        let day = now / NANOS_PER_DAY;
        let Some(current) = self.state.day else {
            self.state.day = Some(day);
            return;
        };
        if day > current {
            self.state.day = Some(day);
            for a in self.state.agents.values_mut() {
                a.realised_pnl = Decimal::ZERO;
                // Ids of orders still open stay taken: a venue would confuse them.
                let open = &a.open;
                a.seen_client_ids.retain(|id| open.contains_key(id));
            }
        }
    }

    /// After a restart, puts back an order the journal knows: its client id is taken again
    /// (so a replayed or retried place is still a duplicate) and, when it is still working
    /// with `remaining` quantity, it is open again (towards open orders, open notional and
    /// worst-case position). No check runs: the order passed them when it was placed. Its
    /// notional is counted at its limit price (a market order's at zero: it cannot rest).
    pub fn restore(&mut self, req: &OrderRequest, remaining: Option<Decimal>) {
        let a = self.agent_entry(&req.agent);
        a.seen_client_ids.insert(req.client_id.clone());
        let Some(remaining) = remaining.filter(|r| *r > Decimal::ZERO) else {
            return;
        };
        let price = req.price.unwrap_or(Decimal::ZERO);
        let notional = price.checked_mul(remaining).unwrap_or(Decimal::MAX);
        a.open_notional = a
            .open_notional
            .checked_add(notional)
            .unwrap_or(Decimal::MAX);
        a.open.insert(
            req.client_id.clone(),
            OpenOrder {
                symbol: req.symbol.clone(),
                side: req.side,
                remaining,
                price,
                notional,
                accepted: true,
            },
        );
    }

    fn reserve(&mut self, req: &OrderRequest, r: Reservation, now: Timestamp) {
        let a = self.agent_entry(&req.agent);
        a.seen_client_ids.insert(req.client_id.clone());
        record_time(&mut a.order_times, now);
        // Only an unlimited open notional can overflow here; saturating is then harmless.
        a.open_notional = a
            .open_notional
            .checked_add(r.notional)
            .unwrap_or(Decimal::MAX);
        a.open.insert(
            req.client_id.clone(),
            OpenOrder {
                symbol: req.symbol.clone(),
                side: req.side,
                remaining: req.qty,
                price: r.price,
                notional: r.notional,
                accepted: false,
            },
        );
    }

    fn evaluate(
        &self,
        req: &OrderRequest,
        reference: Option<&Quote>,
        now: Timestamp,
    ) -> Result<Reservation, Rejection> {
        use RejectCode as C;
        validate_shape(req)?;
        let lim = self.limits_for(&req.agent);
        let agent = self.state.agents.get(&*req.agent);
        let who = &req.agent;
        let id = &req.client_id;

        if self.state.kill {
            return Err(reject(C::KillSwitch, "global kill switch is on"));
        }
        if agent.is_some_and(|a| a.kill) {
            return Err(reject(
                C::KillSwitch,
                format!("agent {who:?}: kill switch is on"),
            ));
        }
        let trading = self
            .state
            .trading
            .max(agent.map_or(TradingState::Active, |a| a.trading));
        if trading == TradingState::Halted {
            return Err(reject(
                C::Halted,
                format!("agent {who:?}: trading is halted"),
            ));
        }
        if agent.is_some_and(|a| a.seen_client_ids.contains(id)) {
            return Err(reject(
                C::DuplicateClientId,
                format!("agent {who:?}: client order id {id:?} already used today"),
            ));
        }
        if lim.instruments.iter().any(|l| !l.allows(&req.symbol)) {
            return Err(reject(
                C::Instrument,
                format!("agent {who:?}: instrument {} is not allowed", req.symbol),
            ));
        }
        if let Some(price) = req.price {
            for tick in &lim.tick_sizes {
                if price.checked_rem(*tick).is_none_or(|r| !r.is_zero()) {
                    return Err(reject(
                        C::Precision,
                        format!("price {price} is not a multiple of the tick size {tick}"),
                    ));
                }
            }
        }
        for step in &lim.qty_steps {
            if req.qty.checked_rem(*step).is_none_or(|r| !r.is_zero()) {
                return Err(reject(
                    C::Precision,
                    format!(
                        "quantity {} is not a multiple of the quantity step {step}",
                        req.qty
                    ),
                ));
            }
        }
        if req.qty <= Decimal::ZERO {
            return Err(reject(
                C::MinQty,
                format!("quantity {} is not positive", req.qty),
            ));
        }
        if let Some(min) = lim.min_qty.filter(|m| req.qty < *m) {
            return Err(reject(
                C::MinQty,
                format!("quantity {} is below the minimum {min}", req.qty),
            ));
        }
        if let Some(max) = lim.max_qty.filter(|m| req.qty > *m) {
            return Err(reject(
                C::MaxQty,
                format!("quantity {} is above the maximum {max}", req.qty),
            ));
        }

        // Reference price: the side a buy would take (ask) or a sell would hit (bid).
        let reference = reference.filter(|q| *q.symbol == *req.symbol);
        let needs_reference = req.kind == OrderKind::Market
            || lim.price_collar_bps.is_some()
            || lim.max_quote_age_ms.is_some();
        let mut ref_price = None;
        if needs_reference {
            let Some(q) = reference else {
                return Err(reject(
                    C::StaleData,
                    format!("no reference quote for {}", req.symbol),
                ));
            };
            if let Some(max_ms) = lim.max_quote_age_ms {
                let age = now.saturating_sub(q.ts);
                if age > max_ms.saturating_mul(1_000_000) {
                    return Err(reject(
                        C::StaleData,
                        format!(
                            "reference quote for {} is {} ms old (limit {max_ms} ms)",
                            req.symbol,
                            age / 1_000_000
                        ),
                    ));
                }
            }
            let (p, what) = match req.side {
                Side::Buy => (q.ask, "ask"),
                Side::Sell => (q.bid, "bid"),
            };
            if p <= Decimal::ZERO {
                return Err(reject(
                    C::StaleData,
                    format!("reference quote for {} has no {what}", req.symbol),
                ));
            }
            ref_price = Some(p);
        }
        let price = match (req.kind, req.price, ref_price) {
            (OrderKind::Limit, Some(p), _) | (OrderKind::Market, _, Some(p)) => p,
            // validate_shape and the reference check above rule these out.
            _ => {
                return Err(reject(
                    C::InvalidOrder,
                    "order has no price to check against",
                ));
            }
        };
        if let (OrderKind::Limit, Some(bps), Some(r)) = (req.kind, lim.price_collar_bps, ref_price)
        {
            // |price - r| / r > bps / 10 000, without division.
            let too_far = (price - r)
                .abs()
                .checked_mul(Decimal::from(10_000))
                .zip(r.checked_mul(Decimal::from(bps)))
                .is_none_or(|(dev, band)| dev > band);
            if too_far {
                return Err(reject(
                    C::PriceCollar,
                    format!("price {price} is more than {bps} bp away from the reference {r}"),
                ));
            }
        }
        let Some(notional) = price.checked_mul(req.qty) else {
            return Err(reject(C::MaxNotional, "notional overflows"));
        };
        if let Some(max) = lim.max_notional.filter(|m| notional > *m) {
            return Err(reject(
                C::MaxNotional,
                format!("notional {notional} is above the maximum {max}"),
            ));
        }

        let position = agent.map_or(Decimal::ZERO, |a| a.position(&req.symbol).qty);
        let open_same_side = agent
            .map_or(Some(Decimal::ZERO), |a| a.open_qty(&req.symbol, req.side))
            .and_then(|o| o.checked_add(req.qty));
        let Some(exposure) = open_same_side else {
            return Err(reject(C::PositionLimit, "open quantity overflows"));
        };
        let reducing = is_reducing(position, req.side, exposure);
        if !reducing && (trading == TradingState::Reducing || req.reduce_only) {
            let why = if req.reduce_only {
                "the order is reduce-only"
            } else {
                "trading is reducing-only"
            };
            return Err(reject(
                C::ReducingOnly,
                format!(
                    "agent {who:?}: {why} and the order would not reduce the position {position} in {}",
                    req.symbol
                ),
            ));
        }
        if let Some(max) = lim.max_daily_loss {
            let pnl = agent.map_or(Decimal::ZERO, |a| a.realised_pnl);
            if !reducing && pnl <= -max {
                return Err(reject(
                    C::DailyLoss,
                    format!("agent {who:?}: realised pnl {pnl} reached the daily loss limit {max}"),
                ));
            }
        }
        if let Some(max) = lim.max_position.filter(|_| !reducing) {
            let worst = match req.side {
                Side::Buy => position.checked_add(exposure),
                Side::Sell => position.checked_sub(exposure),
            };
            if worst.is_none_or(|w| w.abs() > max) {
                return Err(reject(
                    C::PositionLimit,
                    format!(
                        "agent {who:?}: position in {} would reach {} (limit {max})",
                        req.symbol,
                        worst.map_or_else(|| "overflow".to_owned(), |w| w.to_string())
                    ),
                ));
            }
        }
        let open = agent.map_or(0, |a| a.open.len());
        if let Some(max) = lim.max_open_orders.filter(|m| open >= *m as usize) {
            return Err(reject(
                C::MaxOpenOrders,
                format!("agent {who:?}: {open} orders open (limit {max})"),
            ));
        }
        if let Some(max) = lim.max_open_notional {
            let total = agent
                .map_or(Decimal::ZERO, |a| a.open_notional)
                .checked_add(notional);
            if total.is_none_or(|t| t > max) {
                return Err(reject(
                    C::MaxOpenNotional,
                    format!("agent {who:?}: open notional would exceed {max}"),
                ));
            }
        }
        if let Some(times) = agent.map(|a| &a.order_times) {
            if let Some(m) = lim
                .max_orders_per_sec
                .filter(|m| at_rate(times, now.saturating_sub(NANOS_PER_SEC), *m))
            {
                return Err(reject(
                    C::OrderRate,
                    format!("agent {who:?}: {m} orders in the last second"),
                ));
            }
            if let Some(m) = lim
                .max_orders_per_min
                .filter(|m| at_rate(times, now.saturating_sub(NANOS_PER_MIN), *m))
            {
                return Err(reject(
                    C::OrderRate,
                    format!("agent {who:?}: {m} orders in the last minute"),
                ));
            }
        }
        Ok(Reservation { price, notional })
    }
}

/// The checks that need no limits: a malformed order is refused whatever the configuration.
fn validate_shape(req: &OrderRequest) -> Result<(), Rejection> {
    use RejectCode as C;
    for (what, s) in [
        ("client order id", &*req.client_id),
        ("agent", &*req.agent),
        ("symbol", &*req.symbol),
    ] {
        if s.is_empty() || s.len() > MAX_ID_LEN {
            return Err(reject(
                C::InvalidOrder,
                format!("{what} must be 1 to {MAX_ID_LEN} bytes"),
            ));
        }
    }
    match (req.kind, req.price) {
        (OrderKind::Limit, None) => {
            return Err(reject(C::InvalidOrder, "limit order without a price"));
        }
        (OrderKind::Market, Some(_)) => {
            return Err(reject(C::InvalidOrder, "market order with a price"));
        }
        (_, Some(p)) if p <= Decimal::ZERO => {
            return Err(reject(
                C::InvalidOrder,
                format!("price {p} is not positive"),
            ));
        }
        _ => {}
    }
    if req.post_only && (req.kind == OrderKind::Market || req.tif != TimeInForce::Gtc) {
        return Err(reject(
            C::InvalidOrder,
            "post-only needs a limit order good till cancelled",
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rate_window_is_sorted_bounded_and_survives_a_clock_step_back() {
        let ms = 1_000_000;
        let mut times = VecDeque::new();
        // 10,000 orders 1 ms apart: only the last minute's are kept (all of them here).
        for i in 1..=10_000u64 {
            record_time(&mut times, i * ms);
        }
        assert_eq!(times.len(), 10_000);
        // Exactly 1,000 in the last second (times 9,001..=10,000 ms).
        assert!(at_rate(&times, 9_000 * ms, 1_000));
        assert!(!at_rate(&times, 9_000 * ms, 1_001));
        // A step back inserts in order.
        record_time(&mut times, 9_500 * ms);
        assert!(times.iter().zip(times.iter().skip(1)).all(|(a, b)| a <= b));
        assert!(at_rate(&times, 9_000 * ms, 1_001));
        // A minute later the old ones are gone.
        record_time(&mut times, 70_000 * ms);
        assert_eq!(times.len(), 1);
    }

    const SEC: u64 = NANOS_PER_SEC;
    const T0: u64 = 1_000 * NANOS_PER_DAY;

    fn d(s: &str) -> Decimal {
        s.parse().unwrap()
    }

    fn quote(bid: &str, ask: &str, ts: u64) -> Quote {
        Quote {
            symbol: "BTC-USDT".into(),
            bid: d(bid),
            bid_size: d("1"),
            ask: d(ask),
            ask_size: d("1"),
            ts,
        }
    }

    fn limit(id: &str, side: Side, price: &str, qty: &str) -> OrderRequest {
        OrderRequest {
            client_id: id.into(),
            agent: "a".into(),
            symbol: "BTC-USDT".into(),
            side,
            kind: OrderKind::Limit,
            price: Some(d(price)),
            qty: d(qty),
            tif: TimeInForce::Gtc,
            post_only: false,
            reduce_only: false,
        }
    }

    fn market(id: &str, side: Side, qty: &str) -> OrderRequest {
        OrderRequest {
            kind: OrderKind::Market,
            price: None,
            ..limit(id, side, "1", qty)
        }
    }

    fn fill(side: Side, qty: &str, price: &str, fee: &str) -> Fill {
        Fill {
            agent: "a".into(),
            client_id: None,
            symbol: "BTC-USDT".into(),
            side,
            qty: d(qty),
            price: d(price),
            fee: d(fee),
        }
    }

    fn code(r: Result<(), Rejection>) -> Option<&'static str> {
        r.err().map(|e| e.code.as_str())
    }

    /// One check on a fresh engine: `order` under `limits`, with `quote` as the reference.
    struct Case {
        name: &'static str,
        limits: RiskLimits,
        quote: Option<Quote>,
        order: OrderRequest,
        want: Result<(), RejectCode>,
    }

    /// The single-order checks, each with the near miss that passes. The reference quote is
    /// 100 / 101 at `T0` unless a row says otherwise.
    fn cases() -> Vec<Case> {
        use RejectCode::*;
        let q = Some(quote("100", "101", T0));
        let case = |name, limits: &RiskLimits, order, want| Case {
            name,
            limits: limits.clone(),
            quote: q.clone(),
            order,
            want,
        };
        let none = RiskLimits::default();
        let instruments = RiskLimits {
            instruments: Some(Instruments::new(["BTC-*", "ETH/USD"])),
            ..Default::default()
        };
        let precision = RiskLimits {
            tick_size: Some(d("0.5")),
            qty_step: Some(d("0.01")),
            ..Default::default()
        };
        let min_qty = RiskLimits {
            min_qty: Some(d("0.1")),
            ..Default::default()
        };
        let max_qty = RiskLimits {
            max_qty: Some(d("5")),
            ..Default::default()
        };
        let max_notional = RiskLimits {
            max_notional: Some(d("1000")),
            ..Default::default()
        };
        let collar = RiskLimits {
            price_collar_bps: Some(100),
            ..Default::default()
        };
        let good = limit("1", Side::Buy, "100", "1");
        vec![
            case("instrument: allowed", &instruments, good.clone(), Ok(())),
            case(
                "instrument: not listed",
                &instruments,
                OrderRequest {
                    symbol: "SOL-USDT".into(),
                    ..good.clone()
                },
                Err(Instrument),
            ),
            case(
                "precision: on tick and step",
                &precision,
                limit("1", Side::Buy, "100.5", "0.25"),
                Ok(()),
            ),
            case(
                "precision: off tick",
                &precision,
                limit("1", Side::Buy, "100.3", "0.25"),
                Err(Precision),
            ),
            case(
                "precision: off step",
                &precision,
                limit("1", Side::Buy, "100.5", "0.255"),
                Err(Precision),
            ),
            case(
                "min qty: at it",
                &min_qty,
                limit("1", Side::Buy, "100", "0.1"),
                Ok(()),
            ),
            case(
                "min qty: below",
                &min_qty,
                limit("1", Side::Buy, "100", "0.09"),
                Err(MinQty),
            ),
            case(
                "min qty: negative",
                &min_qty,
                limit("1", Side::Buy, "100", "-1"),
                Err(MinQty),
            ),
            case(
                "max qty: at it",
                &max_qty,
                limit("1", Side::Buy, "100", "5"),
                Ok(()),
            ),
            case(
                "max qty: above",
                &max_qty,
                limit("1", Side::Buy, "100", "5.001"),
                Err(MaxQty),
            ),
            case(
                "max notional: at it",
                &max_notional,
                limit("1", Side::Buy, "100", "10"),
                Ok(()),
            ),
            case(
                "max notional: above",
                &max_notional,
                limit("1", Side::Buy, "100.01", "10"),
                Err(MaxNotional),
            ),
            // A market buy is valued at the ask (101): 10 × 101 > 1000.
            case(
                "max notional: market sell at the bid",
                &max_notional,
                market("1", Side::Sell, "10"),
                Ok(()),
            ),
            case(
                "max notional: market buy at the ask",
                &max_notional,
                market("1", Side::Buy, "10"),
                Err(MaxNotional),
            ),
            // Overflow is a rejection even with no limit.
            Case {
                quote: None,
                ..case(
                    "max notional: overflow",
                    &none,
                    limit("1", Side::Buy, "79228162514264337593543950335", "2"),
                    Err(MaxNotional),
                )
            },
            // Buys are measured from the ask (101): 1% is 1.01.
            case(
                "price collar: buy inside",
                &collar,
                limit("1", Side::Buy, "102.01", "1"),
                Ok(()),
            ),
            case(
                "price collar: buy outside",
                &collar,
                limit("1", Side::Buy, "102.02", "1"),
                Err(PriceCollar),
            ),
            // Sells from the bid (100).
            case(
                "price collar: sell inside",
                &collar,
                limit("1", Side::Sell, "99", "1"),
                Ok(()),
            ),
            case(
                "price collar: sell outside",
                &collar,
                limit("1", Side::Sell, "98.99", "1"),
                Err(PriceCollar),
            ),
            case("invalid order: valid", &none, good.clone(), Ok(())),
            case(
                "invalid order: empty client id",
                &none,
                OrderRequest {
                    client_id: String::new(),
                    ..good.clone()
                },
                Err(InvalidOrder),
            ),
            case(
                "invalid order: client id too long",
                &none,
                OrderRequest {
                    client_id: "x".repeat(MAX_ID_LEN + 1),
                    ..good.clone()
                },
                Err(InvalidOrder),
            ),
            case(
                "invalid order: limit without price",
                &none,
                OrderRequest {
                    price: None,
                    ..good.clone()
                },
                Err(InvalidOrder),
            ),
            case(
                "invalid order: zero price",
                &none,
                OrderRequest {
                    price: Some(d("0")),
                    ..good.clone()
                },
                Err(InvalidOrder),
            ),
            case(
                "invalid order: market with price",
                &none,
                OrderRequest {
                    price: Some(d("1")),
                    ..market("1", Side::Buy, "1")
                },
                Err(InvalidOrder),
            ),
            case(
                "invalid order: post-only ioc",
                &none,
                OrderRequest {
                    post_only: true,
                    tif: TimeInForce::Ioc,
                    ..good.clone()
                },
                Err(InvalidOrder),
            ),
        ]
    }

    #[test]
    fn single_order_checks() {
        for c in cases() {
            let mut e = RiskEngine::new(c.limits);
            let got = e.check(&c.order, c.quote.as_ref(), T0).map_err(|r| r.code);
            assert_eq!(got, c.want, "{}", c.name);
            if let Err(code) = c.want {
                assert_eq!(e.rejections()[code.as_str()], 1, "{}", c.name);
            }
        }
    }

    #[test]
    fn symbol_patterns() {
        let i = Instruments::new(["BTC-*", "*-EUR", "A*B*C", "ETH/USD"]);
        for s in ["BTC-USDT", "BTC-", "X-EUR", "ABC", "AxxBxxC", "ETH/USD"] {
            assert!(i.allows(s), "{s}");
        }
        for s in ["BTC", "ETH/USDT", "AB", "ACB", "X-EURO"] {
            assert!(!i.allows(s), "{s}");
        }
        assert!(!Instruments::new::<[&str; 0], &str>([]).allows("BTC-USDT"));
    }

    #[test]
    fn stale_data() {
        let l = RiskLimits {
            max_quote_age_ms: Some(500),
            ..Default::default()
        };
        let o = limit("1", Side::Buy, "100", "1");
        let mut e = RiskEngine::new(l.clone());
        let old = quote("100", "101", T0 - 500_000_001);
        assert_eq!(code(e.check(&o, Some(&old), T0)), Some("risk.stale-data"));
        let ok = quote("100", "101", T0 - 500_000_000);
        assert_eq!(code(e.check(&o, Some(&ok), T0)), None);
        // No quote, or one for another symbol, is stale too.
        let mut e = RiskEngine::new(l);
        assert_eq!(code(e.check(&o, None, T0)), Some("risk.stale-data"));
        let other = Quote {
            symbol: "ETH-USDT".into(),
            ..ok.clone()
        };
        assert_eq!(code(e.check(&o, Some(&other), T0)), Some("risk.stale-data"));
        // A market order needs a reference even with no limits.
        let mut e = RiskEngine::default();
        assert_eq!(
            code(e.check(&market("m", Side::Buy, "1"), None, T0)),
            Some("risk.stale-data")
        );
        assert_eq!(
            code(e.check(&market("m", Side::Buy, "1"), Some(&ok), T0)),
            None
        );
        assert_eq!(e.rejections()["risk.stale-data"], 1);
    }

    #[test]
    fn duplicate_client_id() {
        let mut e = RiskEngine::default();
        let o = limit("1", Side::Buy, "100", "1");
        assert_eq!(code(e.check(&o, None, T0)), None);
        assert_eq!(
            code(e.check(&o, None, T0)),
            Some("risk.duplicate-client-id")
        );
        // Still taken after the order closed; free again the next day.
        assert!(e.on_closed("a", "1"));
        assert_eq!(
            code(e.check(&o, None, T0)),
            Some("risk.duplicate-client-id")
        );
        assert_eq!(code(e.check(&o, None, T0 + NANOS_PER_DAY)), None);
        // Another agent has its own ids.
        let other = OrderRequest {
            agent: "b".into(),
            ..o
        };
        assert_eq!(code(e.check(&other, None, T0)), None);
    }

    #[test]
    fn max_open_orders() {
        let mut e = RiskEngine::new(RiskLimits {
            max_open_orders: Some(2),
            ..Default::default()
        });
        assert_eq!(
            code(e.check(&limit("1", Side::Buy, "100", "1"), None, T0)),
            None
        );
        assert_eq!(
            code(e.check(&limit("2", Side::Buy, "100", "1"), None, T0)),
            None
        );
        assert_eq!(
            code(e.check(&limit("3", Side::Buy, "100", "1"), None, T0)),
            Some("risk.max-open-orders")
        );
        assert!(e.on_cancel("a", "1"));
        assert_eq!(
            code(e.check(&limit("4", Side::Buy, "100", "1"), None, T0)),
            None
        );
    }

    #[test]
    fn max_open_notional() {
        let mut e = RiskEngine::new(RiskLimits {
            max_open_notional: Some(d("300")),
            ..Default::default()
        });
        assert_eq!(
            code(e.check(&limit("1", Side::Buy, "100", "2"), None, T0)),
            None
        );
        assert_eq!(
            code(e.check(&limit("2", Side::Sell, "100", "1.01"), None, T0)),
            Some("risk.max-open-notional")
        );
        assert_eq!(
            code(e.check(&limit("3", Side::Sell, "100", "1"), None, T0)),
            None
        );
        assert_eq!(e.open_notional("a"), d("300"));
        // A partial fill frees its share of the notional; a full one closes the order.
        let mut f = fill(Side::Buy, "0.5", "100", "0");
        f.client_id = Some("1".into());
        e.on_fill(&f).unwrap();
        assert_eq!(e.open_notional("a"), d("250"));
        f.qty = d("1.5");
        e.on_fill(&f).unwrap();
        assert_eq!(e.open_notional("a"), d("100"));
        assert_eq!(e.open_orders("a"), 1);
    }

    #[test]
    fn position_limit() {
        let l = RiskLimits {
            max_position: Some(d("3")),
            ..Default::default()
        };
        let mut e = RiskEngine::new(l);
        e.on_fill(&fill(Side::Buy, "1", "100", "0")).unwrap();
        // Position 1 plus an open buy of 1: a buy of 1 reaches 3, of 1.1 exceeds it.
        assert_eq!(
            code(e.check(&limit("1", Side::Buy, "100", "1"), None, T0)),
            None
        );
        assert_eq!(
            code(e.check(&limit("2", Side::Buy, "100", "1.1"), None, T0)),
            Some("risk.position-limit")
        );
        assert_eq!(
            code(e.check(&limit("3", Side::Buy, "100", "1"), None, T0)),
            None
        );
        // Selling 4 flips to -3: allowed; 4.1 is not.
        assert_eq!(
            code(e.check(&limit("4", Side::Sell, "100", "4.1"), None, T0)),
            Some("risk.position-limit")
        );
        assert_eq!(
            code(e.check(&limit("5", Side::Sell, "100", "4"), None, T0)),
            None
        );
    }

    #[test]
    fn daily_loss() {
        let mut e = RiskEngine::new(RiskLimits {
            max_daily_loss: Some(d("50")),
            ..Default::default()
        });
        e.on_fill(&fill(Side::Buy, "2", "100", "0")).unwrap();
        e.on_fill(&fill(Side::Sell, "1", "51", "0.99")).unwrap();
        assert_eq!(e.realised_pnl("a"), d("-49.99"));
        assert_eq!(
            code(e.check(&limit("1", Side::Buy, "100", "1"), None, T0)),
            None
        );
        assert!(e.on_closed("a", "1"));
        e.on_fill(&fill(Side::Sell, "0.5", "100", "0.01")).unwrap();
        assert_eq!(e.realised_pnl("a"), d("-50"));
        assert_eq!(
            code(e.check(&limit("2", Side::Buy, "100", "1"), None, T0)),
            Some("risk.daily-loss")
        );
        // Flattening is still allowed.
        assert_eq!(
            code(e.check(&limit("3", Side::Sell, "100", "0.5"), None, T0)),
            None
        );
        // A new day starts from zero.
        assert_eq!(
            code(e.check(&limit("4", Side::Buy, "100", "1"), None, T0 + NANOS_PER_DAY)),
            None
        );
    }

    #[test]
    fn order_rate() {
        let mut e = RiskEngine::new(RiskLimits {
            max_orders_per_sec: Some(2),
            max_orders_per_min: Some(3),
            ..Default::default()
        });
        let o = |id: &str| limit(id, Side::Buy, "100", "1");
        assert_eq!(code(e.check(&o("1"), None, T0)), None);
        assert_eq!(code(e.check(&o("2"), None, T0 + 1)), None);
        assert_eq!(
            code(e.check(&o("3"), None, T0 + SEC - 1)),
            Some("risk.order-rate")
        );
        assert_eq!(code(e.check(&o("4"), None, T0 + SEC)), None);
        assert_eq!(
            code(e.check(&o("5"), None, T0 + SEC + 1)),
            Some("risk.order-rate")
        );
        assert_eq!(code(e.check(&o("6"), None, T0 + 60 * SEC + 1)), None);
        assert_eq!(e.rejections()["risk.order-rate"], 2);
    }

    #[test]
    fn cancel_rate() {
        let mut e = RiskEngine::new(RiskLimits {
            max_cancels_per_sec: Some(1),
            ..Default::default()
        });
        assert_eq!(code(e.check_cancel("a", T0)), None);
        assert_eq!(
            code(e.check_cancel("a", T0 + SEC - 1)),
            Some("risk.cancel-rate")
        );
        assert_eq!(code(e.check_cancel("a", T0 + SEC)), None);
        assert_eq!(code(e.check_cancel("b", T0 + SEC + 1)), None);
        assert_eq!(e.rejections()["risk.cancel-rate"], 1);
    }

    #[test]
    fn halted_and_reducing() {
        let mut e = RiskEngine::default();
        e.on_fill(&fill(Side::Buy, "2", "100", "0")).unwrap();
        e.set_trading_state(Scope::Global, TradingState::Halted);
        assert_eq!(
            code(e.check(&limit("1", Side::Sell, "100", "1"), None, T0)),
            Some("risk.halted")
        );
        e.set_trading_state(Scope::Global, TradingState::Active);
        e.set_trading_state(Scope::Agent("a"), TradingState::Reducing);
        assert_eq!(
            code(e.check(&limit("2", Side::Buy, "100", "1"), None, T0)),
            Some("risk.reducing-only")
        );
        assert_eq!(
            code(e.check(&limit("3", Side::Sell, "100", "1"), None, T0)),
            None
        );
        // With 1 already being sold, selling 1.5 more would flip the position.
        assert_eq!(
            code(e.check(&limit("4", Side::Sell, "100", "1.5"), None, T0)),
            Some("risk.reducing-only")
        );
        assert_eq!(
            code(e.check(&limit("5", Side::Sell, "100", "1"), None, T0)),
            None
        );
        // Another agent is not affected; a reduce-only order when flat is refused.
        let other = OrderRequest {
            agent: "b".into(),
            ..limit("6", Side::Buy, "100", "1")
        };
        assert_eq!(code(e.check(&other, None, T0)), None);
        let ro = OrderRequest {
            reduce_only: true,
            ..other
        };
        let ro = OrderRequest {
            client_id: "7".into(),
            ..ro
        };
        assert_eq!(code(e.check(&ro, None, T0)), Some("risk.reducing-only"));
    }

    #[test]
    fn kill_switch() {
        let mut e = RiskEngine::default();
        e.on_fill(&fill(Side::Buy, "2", "100", "0")).unwrap();
        e.set_kill_switch(Scope::Agent("a"), true);
        assert_eq!(
            code(e.check(&limit("1", Side::Sell, "100", "1"), None, T0)),
            Some("risk.kill-switch")
        );
        // Cancels still pass.
        assert_eq!(code(e.check_cancel("a", T0)), None);
        e.set_kill_switch(Scope::Agent("a"), false);
        e.set_kill_switch(Scope::Global, true);
        assert_eq!(
            code(e.check(&limit("2", Side::Sell, "100", "1"), None, T0)),
            Some("risk.kill-switch")
        );
        // Off again, in REDUCING: reducing passes, increasing does not.
        e.set_kill_switch(Scope::Global, false);
        e.set_trading_state(Scope::Global, TradingState::Reducing);
        assert_eq!(
            code(e.check(&limit("3", Side::Sell, "100", "1"), None, T0)),
            None
        );
        assert_eq!(
            code(e.check(&limit("4", Side::Buy, "100", "1"), None, T0)),
            Some("risk.reducing-only")
        );
        assert_eq!(e.rejections()["risk.kill-switch"], 2);
    }

    #[test]
    fn effective_limit_is_the_stricter() {
        let mut e = RiskEngine::new(RiskLimits {
            max_qty: Some(d("10")),
            min_qty: Some(d("1")),
            ..Default::default()
        });
        e.set_agent_limits(
            "a",
            RiskLimits {
                max_qty: Some(d("5")),
                min_qty: Some(d("0.5")),
                ..Default::default()
            },
        );
        assert_eq!(
            code(e.check(&limit("1", Side::Buy, "100", "6"), None, T0)),
            Some("risk.max-qty")
        );
        assert_eq!(
            code(e.check(&limit("2", Side::Buy, "100", "0.8"), None, T0)),
            Some("risk.min-qty")
        );
        assert_eq!(
            code(e.check(&limit("3", Side::Buy, "100", "5"), None, T0)),
            None
        );
        // The global limit applies alone to an agent without its own, and after clearing.
        let b = OrderRequest {
            agent: "b".into(),
            ..limit("4", Side::Buy, "100", "10")
        };
        assert_eq!(code(e.check(&b, None, T0)), None);
        e.clear_agent_limits("a");
        assert_eq!(
            code(e.check(&limit("5", Side::Buy, "100", "10"), None, T0)),
            None
        );
        // A looser agent limit does not loosen the global one.
        e.set_agent_limits(
            "a",
            RiskLimits {
                max_qty: Some(d("100")),
                ..Default::default()
            },
        );
        assert_eq!(
            code(e.check(&limit("6", Side::Buy, "100", "11"), None, T0)),
            Some("risk.max-qty")
        );
    }

    #[test]
    fn position_and_pnl_after_fills() {
        let mut e = RiskEngine::default();
        e.on_fill(&fill(Side::Buy, "2", "100", "0")).unwrap();
        e.on_fill(&fill(Side::Buy, "1", "130", "0")).unwrap();
        // (2 × 100 + 1 × 130) / 3 = 110
        assert_eq!(
            e.position("a", "BTC-USDT"),
            Position {
                qty: d("3"),
                avg_price: d("110")
            }
        );
        e.on_fill(&fill(Side::Sell, "2", "120", "0")).unwrap();
        // 2 × (120 - 110) = 20
        assert_eq!(e.realised_pnl("a"), d("20"));
        assert_eq!(
            e.position("a", "BTC-USDT"),
            Position {
                qty: d("1"),
                avg_price: d("110")
            }
        );
        // Selling 3 @ 100 closes 1 (-10) and opens a short of 2 at 100; a fee of 1.5.
        e.on_fill(&fill(Side::Sell, "3", "100", "1.5")).unwrap();
        assert_eq!(e.realised_pnl("a"), d("8.5"));
        assert_eq!(
            e.position("a", "BTC-USDT"),
            Position {
                qty: d("-2"),
                avg_price: d("100")
            }
        );
        // Covering the short at 90 gains 2 × 10.
        e.on_fill(&fill(Side::Buy, "2", "90", "0")).unwrap();
        assert_eq!(e.realised_pnl("a"), d("28.5"));
        assert_eq!(e.position("a", "BTC-USDT"), Position::default());
    }

    #[test]
    fn bad_fills_leave_state_alone() {
        let mut e = RiskEngine::default();
        e.on_fill(&fill(Side::Buy, "1", "100", "0")).unwrap();
        assert!(matches!(
            e.on_fill(&fill(Side::Buy, "0", "100", "0")),
            Err(FillError::Invalid { .. })
        ));
        let max = Decimal::MAX.to_string();
        assert!(matches!(
            e.on_fill(&fill(Side::Buy, &max, &max, "0")),
            Err(FillError::Overflow { .. })
        ));
        assert_eq!(
            e.position("a", "BTC-USDT"),
            Position {
                qty: d("1"),
                avg_price: d("100")
            }
        );
    }

    #[test]
    fn every_code_is_counted_and_listed() {
        let mut e = RiskEngine::default();
        let r = e.rejections();
        assert_eq!(r.len(), RejectCode::ALL.len());
        assert!(r.values().all(|n| *n == 0));
        e.set_kill_switch(Scope::Global, true);
        for i in 0..3 {
            let _ = e.check(&limit(&i.to_string(), Side::Buy, "100", "1"), None, T0);
        }
        let _ = e.check(&limit("x", Side::Buy, "100", "-1"), None, T0);
        let r = e.rejections();
        assert_eq!(r["risk.kill-switch"], 4);
        assert_eq!(r.values().sum::<u64>(), 4);
    }
}
