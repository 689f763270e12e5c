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
//! | unknown instrument | `risk.unknown-instrument` | the engine requires known instruments ([`RiskEngine::require_known_instruments`]) and the symbol is not one ([`RiskEngine::learn_instrument`]: from the feed, the venue or the configuration) | an order for a symbol nobody defines has no reference, no tick size and no venue to go to: a typo or a fat finger |
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
use colony_model::market::Side;
use rust_decimal::Decimal;
use std::fmt;
use std::sync::Arc;

mod engine;
#[cfg(test)]
mod tests;

pub use engine::*;

/// Longest client order id, agent name or symbol accepted; bounds what the engine remembers.
pub(crate) const MAX_ID_LEN: usize = 64;

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
    written: Vec<String>,
}

impl fmt::Display for Instruments {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.written.join(", "))
    }
}

impl Instruments {
    /// Compiles the patterns once; an empty list allows nothing.
    pub fn new<I, S>(patterns: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        let written: Vec<String> = patterns
            .into_iter()
            .map(|p| p.as_ref().to_owned())
            .collect();
        Instruments {
            patterns: written.iter().map(|p| Glob::compile(p)).collect(),
            written,
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

/// Calls the macro `$m` with every field of [`RiskLimits`], in `colony.toml`'s key order:
/// the one list of them that merging and showing limits go through.
macro_rules! every_limit {
    ($m:ident) => {
        $m!(
            instruments,
            tick_size,
            qty_step,
            min_qty,
            max_qty,
            max_notional,
            price_collar_bps,
            max_orders_per_sec,
            max_orders_per_min,
            max_cancels_per_sec,
            max_cancels_per_min,
            max_open_orders,
            max_open_notional,
            max_position,
            max_daily_loss,
            max_quote_age_ms
        )
    };
}

impl RiskLimits {
    /// The limits a host applies when its operator set none (`[orders.risk]` absent): loose
    /// enough for the shipped demo and a 100,000 paper account, tight enough that a
    /// fat-fingered size or price, or an order loop, is refused. An operator's key replaces
    /// the default of that key; `defaults = false` drops them all. See `docs/orders.md`.
    ///
    /// | limit | default |
    /// |---|---|
    /// | `max_qty` | 100,000 |
    /// | `max_notional` | 1,000,000 (quote currency) |
    /// | `price_collar_bps` | 1,000 (10 % from the reference) |
    /// | `max_orders_per_sec` / `max_orders_per_min` | 20 / 600 |
    /// | `max_cancels_per_sec` / `max_cancels_per_min` | 20 / 600 |
    pub fn defaults() -> RiskLimits {
        RiskLimits {
            max_qty: Some(Decimal::from(100_000)),
            max_notional: Some(Decimal::from(1_000_000)),
            price_collar_bps: Some(1_000),
            max_orders_per_sec: Some(20),
            max_orders_per_min: Some(600),
            max_cancels_per_sec: Some(20),
            max_cancels_per_min: Some(600),
            ..RiskLimits::default()
        }
    }

    /// These limits with every key `over` sets replaced by its value; also the keys whose
    /// value is still this one's (for `colony status`: which limits are defaults).
    pub fn overridden_by(self, over: RiskLimits) -> (RiskLimits, Vec<&'static str>) {
        let mut kept = Vec::new();
        macro_rules! merge {
            ($($f:ident),*) => {
                RiskLimits {
                    $($f: match over.$f {
                        Some(v) => Some(v),
                        None => {
                            if self.$f.is_some() {
                                kept.push(stringify!($f));
                            }
                            self.$f
                        }
                    },)*
                }
            };
        }
        let merged = every_limit!(merge);
        (merged, kept)
    }

    /// The limits that are set, as `colony.toml` names and writes them, in its key order.
    pub fn entries(&self) -> Vec<(&'static str, String)> {
        let mut out = Vec::new();
        macro_rules! set {
            ($($f:ident),*) => {
                $(if let Some(v) = &self.$f {
                    out.push((stringify!($f), v.to_string()));
                })*
            };
        }
        every_limit!(set);
        out
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
    /// `risk.unknown-instrument`
    UnknownInstrument,
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
    pub const ALL: [RejectCode; 19] = [
        RejectCode::InvalidOrder,
        RejectCode::KillSwitch,
        RejectCode::Halted,
        RejectCode::DuplicateClientId,
        RejectCode::Instrument,
        RejectCode::UnknownInstrument,
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
            RejectCode::UnknownInstrument => "risk.unknown-instrument",
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
