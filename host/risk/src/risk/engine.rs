//! [`RiskEngine`]: the limits resolved per agent, the state the checks read, and the checks
//! themselves in the order of the module table.

use super::*;
use crate::ledger::Ledger;
use colony_model::market::{Quote, Side, Timestamp};
use colony_model::order::{OrderKind, OrderRequest, TimeInForce};
use rust_decimal::Decimal;
use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::sync::Arc;

/// The stricter of two limits resolved once: what [`RiskEngine::check`] reads.
#[derive(Debug, Clone, Default)]
pub(super) struct Effective {
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

pub(super) fn stricter_max<T: Ord + Copy>(a: Option<T>, b: Option<T>) -> Option<T> {
    match (a, b) {
        (Some(x), Some(y)) => Some(x.min(y)),
        (x, None) => x,
        (None, y) => y,
    }
}

pub(super) fn stricter_min<T: Ord + Copy>(a: Option<T>, b: Option<T>) -> Option<T> {
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
/// An order that passed the checks and is not closed yet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct OpenOrder {
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
pub(super) struct AgentState {
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
    /// Symbols the host has a definition of (feed, venue, configuration).
    known: HashSet<Arc<str>>,
    /// Whether an order for a symbol not in `known` is refused.
    require_known: bool,
    rejections: [u64; RejectCode::ALL.len()],
}

/// What a passing order reserves.
pub(super) struct Reservation {
    price: Decimal,
    notional: Decimal,
}

pub(super) fn is_reducing(position: Decimal, side: Side, qty: Decimal) -> bool {
    match side {
        Side::Sell => position > Decimal::ZERO && qty <= position,
        Side::Buy => position < Decimal::ZERO && qty <= -position,
    }
}

/// Whether `times` (sorted, oldest first) holds `max` or more entries after `since`: a binary
/// search, so a check costs O(log n) however many orders the last minute saw.
pub(super) fn at_rate(times: &VecDeque<Timestamp>, since: Timestamp, max: u32) -> bool {
    let after = times.len() - times.partition_point(|t| *t <= since);
    after >= max as usize
}

/// Records `now`, keeping `times` sorted and dropping what is older than a minute from the
/// front (amortised O(1): the times come in order, except after a clock step back, when
/// `now` is inserted in place).
pub(super) fn record_time(times: &mut VecDeque<Timestamp>, now: Timestamp) {
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
    pub(crate) fn set_global_limits(&mut self, global: RiskLimits) {
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

    /// Whether an order for a symbol the engine was not told of ([`learn_instrument`]) is
    /// refused (`risk.unknown-instrument`). Off in a new engine; a host turns it on.
    ///
    /// [`learn_instrument`]: RiskEngine::learn_instrument
    pub fn require_known_instruments(&mut self, on: bool) {
        self.require_known = on;
    }

    /// Makes `symbol` a known instrument (the feed published it, the venue or the
    /// configuration defines it). Cheap when it is known already.
    pub fn learn_instrument(&mut self, symbol: &Arc<str>) {
        if !self.known.contains(symbol) {
            self.known.insert(symbol.clone());
        }
    }

    /// How many instruments are known.
    pub fn known_instruments(&self) -> usize {
        self.known.len()
    }

    /// Whether `symbol` is a known instrument.
    pub fn knows_instrument(&self, symbol: &str) -> bool {
        self.known.contains(symbol)
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
    /// (so a replayed or retried place is still a duplicate), it counts towards the order
    /// rate when it was `created` in the minute before `now`, and, when it is still working
    /// with `remaining` quantity, it is open again (towards open orders, open notional and
    /// worst-case position). No check runs: the order passed them when it was placed. Its
    /// notional is counted at its limit price (a market order's at zero: it cannot rest).
    /// Restore orders after [`replay_fill`](Self::replay_fill) and
    /// [`advance_to`](Self::advance_to), whose day change would free the ids again.
    pub fn restore(
        &mut self,
        req: &OrderRequest,
        remaining: Option<Decimal>,
        created: Timestamp,
        now: Timestamp,
    ) {
        let a = self.agent_entry(&req.agent);
        a.seen_client_ids.insert(req.client_id.clone());
        if created <= now && now - created < NANOS_PER_MIN {
            record_time(&mut a.order_times, created);
        }
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

    /// After a restart, puts back a cancel the agent asked for at `at` (the journal's): it
    /// counts towards the cancel rate when it is in the minute before `now`. No check runs.
    pub fn restore_cancel(&mut self, agent: &str, at: Timestamp, now: Timestamp) {
        if at <= now && now - at < NANOS_PER_MIN {
            record_time(&mut self.agent_mut(agent).cancel_times, at);
        }
    }

    /// After a restart, accounts a journaled fill that happened at `ts`: position and
    /// realised PnL as [`on_fill`](Self::on_fill) does, the day rolled to `ts` first, so
    /// fills replayed in time order leave today's realised PnL and every position as they
    /// were before the restart. The fill's client id is ignored (restored orders carry their
    /// remaining quantity).
    pub fn replay_fill(&mut self, fill: &Fill, ts: Timestamp) -> Result<(), FillError> {
        self.roll_day(ts);
        let fill = Fill {
            client_id: None,
            ..fill.clone()
        };
        self.on_fill(&fill)
    }

    /// Rolls the day forward to `now` (the realised PnL of earlier days is dropped) without
    /// checking an order: the end of a restart's replay of the journal.
    pub fn advance_to(&mut self, now: Timestamp) {
        self.roll_day(now);
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
        if self.require_known && !self.known.contains(&*req.symbol) {
            return Err(reject(
                C::UnknownInstrument,
                format!(
                    "instrument {} is not known to this host (no market data, venue or \
                     configured definition names it)",
                    req.symbol
                ),
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
pub(super) fn validate_shape(req: &OrderRequest) -> Result<(), Rejection> {
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
