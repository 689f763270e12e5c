//! Orders (issue 6): what an agent asks for ([`OrderRequest`]), what a venue answers
//! ([`ExecReport`]s, the one shape the router, the journal, the risk engine and the `on-order`
//! events share) and what the router tracks ([`OrderState`]).
//!
//! **Architecture Invariant:** the types here are pure: no I/O, no clock of their own (the
//! caller passes `now`, the virtual clock during a replay). Money is [`Decimal`], never a float.

use std::sync::Arc;

use rust_decimal::Decimal;

use crate::market::{Side, Timestamp};

/// Market or limit order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum OrderKind {
    /// Executes against the book at whatever price is there.
    Market,
    /// Executes at the limit price or better.
    Limit,
}

/// How long an order stays on the book.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TimeInForce {
    /// Good till cancelled.
    Gtc,
    /// Immediate or cancel: what does not fill at once is cancelled.
    Ioc,
    /// Fill or kill: fills completely at once or not at all.
    Fok,
}

impl OrderKind {
    /// `market` or `limit`, as the journal and the CLI write it.
    pub fn as_str(self) -> &'static str {
        match self {
            OrderKind::Market => "market",
            OrderKind::Limit => "limit",
        }
    }

    /// Parses [`as_str`](Self::as_str)'s form.
    pub fn parse(s: &str) -> Option<OrderKind> {
        match s {
            "market" => Some(OrderKind::Market),
            "limit" => Some(OrderKind::Limit),
            _ => None,
        }
    }
}

impl TimeInForce {
    /// `gtc`, `ioc` or `fok`, as the journal writes it.
    pub fn as_str(self) -> &'static str {
        match self {
            TimeInForce::Gtc => "gtc",
            TimeInForce::Ioc => "ioc",
            TimeInForce::Fok => "fok",
        }
    }

    /// Parses [`as_str`](Self::as_str)'s form.
    pub fn parse(s: &str) -> Option<TimeInForce> {
        match s {
            "gtc" => Some(TimeInForce::Gtc),
            "ioc" => Some(TimeInForce::Ioc),
            "fok" => Some(TimeInForce::Fok),
            _ => None,
        }
    }
}

/// An order as an agent asks for it, before any venue sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OrderRequest {
    /// The agent's own id for the order, unique per agent and day.
    pub client_id: String,
    /// The agent placing it.
    pub agent: Arc<str>,
    /// Instrument, for example `BTC-USDT`.
    pub symbol: Arc<str>,
    /// Buy or sell.
    pub side: Side,
    /// Market or limit.
    pub kind: OrderKind,
    /// Limit price; `None` for a market order.
    pub price: Option<Decimal>,
    /// Quantity, positive.
    pub qty: Decimal,
    /// Time in force.
    pub tif: TimeInForce,
    /// Only add liquidity (a limit GTC order); the venue cancels it if it would take.
    pub post_only: bool,
    /// Only reduce the position.
    pub reduce_only: bool,
}

/// Who provided the liquidity of a fill.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Liquidity {
    /// The order rested on the book and was hit.
    Maker,
    /// The order took liquidity on arrival.
    Taker,
}

impl Liquidity {
    /// `maker` or `taker`, as the journal and the CLI write it.
    pub fn as_str(self) -> &'static str {
        match self {
            Liquidity::Maker => "maker",
            Liquidity::Taker => "taker",
        }
    }

    /// Parses [`as_str`](Self::as_str)'s form.
    pub fn parse(s: &str) -> Option<Liquidity> {
        match s {
            "maker" => Some(Liquidity::Maker),
            "taker" => Some(Liquidity::Taker),
            _ => None,
        }
    }
}

/// One execution against an order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FillReport {
    /// Quantity executed, positive.
    pub qty: Decimal,
    /// Execution price.
    pub price: Decimal,
    /// Fee charged (negative for a rebate), in `fee_currency`.
    pub fee: Decimal,
    /// Currency of the fee, for example `USDT`.
    pub fee_currency: Arc<str>,
    /// Maker or taker.
    pub liquidity: Liquidity,
}

/// What happened to an order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ExecKind {
    /// The venue took the order; it is working (or about to fill).
    Accepted,
    /// The venue (or the host, after risk passed) refused the order. `code` is a stable
    /// reason code (`venue.*`, for example `venue.self-match`, `venue.no-liquidity`,
    /// `venue.rejected`), `message` says what the venue said.
    Rejected {
        /// Stable reason code.
        code: String,
        /// Human-readable detail.
        message: String,
    },
    /// Some quantity executed.
    Fill(FillReport),
    /// Cancelled, by request or because an IOC/FOK/post-only order could not rest; fills
    /// before the cancel stand.
    Cancelled,
    /// Expired by its time in force, or lost with a venue that did not survive a restart.
    Expired,
}

/// A venue's report about one order: the unit the journal stores and agents receive.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExecReport {
    /// The agent whose order it is.
    pub agent: Arc<str>,
    /// The agent's id for the order.
    pub client_id: String,
    /// Instrument.
    pub symbol: Arc<str>,
    /// The order's side.
    pub side: Side,
    /// The venue's id for the order, once it has one.
    pub venue_order_id: Option<String>,
    /// What happened.
    pub kind: ExecKind,
    /// When it happened (venue time; the virtual clock during a replay).
    pub ts: Timestamp,
}

impl ExecReport {
    /// A report about `order`: its agent, client id, symbol and side, with what happened.
    pub fn new(
        order: &OrderRequest,
        venue_order_id: Option<String>,
        kind: ExecKind,
        ts: Timestamp,
    ) -> ExecReport {
        ExecReport {
            agent: order.agent.clone(),
            client_id: order.client_id.clone(),
            symbol: order.symbol.clone(),
            side: order.side,
            venue_order_id,
            kind,
            ts,
        }
    }

    /// Whether the order can receive no further reports after this one (rejected, cancelled,
    /// expired). A fill that completes the order is terminal too, but only the order's owner
    /// knows its remaining quantity: see [`OrderStatus::is_closed`].
    pub fn is_terminal(&self) -> bool {
        matches!(
            self.kind,
            ExecKind::Rejected { .. } | ExecKind::Cancelled | ExecKind::Expired
        )
    }
}

/// Lifecycle state of an order, as the `order-status` of the WIT `types` interface.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum OrderStatus {
    /// Risk passed and the intent is journaled; the venue has not answered yet.
    Pending,
    /// Accepted by the venue, working.
    Accepted,
    /// Some quantity filled, the rest working.
    PartiallyFilled,
    /// Completely filled.
    Filled,
    /// Cancelled.
    Cancelled,
    /// Refused by risk or the venue.
    Rejected,
    /// Expired.
    Expired,
}

impl OrderStatus {
    /// The status as stored and printed (`partially-filled`, …).
    pub fn as_str(self) -> &'static str {
        match self {
            OrderStatus::Pending => "pending",
            OrderStatus::Accepted => "accepted",
            OrderStatus::PartiallyFilled => "partially-filled",
            OrderStatus::Filled => "filled",
            OrderStatus::Cancelled => "cancelled",
            OrderStatus::Rejected => "rejected",
            OrderStatus::Expired => "expired",
        }
    }

    /// Parses [`as_str`](Self::as_str)'s form.
    pub fn parse(s: &str) -> Option<OrderStatus> {
        Some(match s {
            "pending" => OrderStatus::Pending,
            "accepted" => OrderStatus::Accepted,
            "partially-filled" => OrderStatus::PartiallyFilled,
            "filled" => OrderStatus::Filled,
            "cancelled" => OrderStatus::Cancelled,
            "rejected" => OrderStatus::Rejected,
            "expired" => OrderStatus::Expired,
            _ => return None,
        })
    }

    /// No further report can change it.
    pub fn is_closed(self) -> bool {
        matches!(
            self,
            OrderStatus::Filled
                | OrderStatus::Cancelled
                | OrderStatus::Rejected
                | OrderStatus::Expired
        )
    }
}

/// An order as the router tracks it: the request and what has happened to it so far.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OrderState {
    /// The request as risk passed it.
    pub request: OrderRequest,
    /// Current status.
    pub status: OrderStatus,
    /// The venue's id, once known.
    pub venue_order_id: Option<String>,
    /// Quantity filled so far.
    pub filled_qty: Decimal,
    /// Sum of price × quantity over the fills (average price = `filled_notional / filled_qty`).
    pub filled_notional: Decimal,
    /// Fees paid so far.
    pub fees: Decimal,
    /// Reason code of a rejection.
    pub reject_code: Option<String>,
    /// When the order was placed.
    pub created: Timestamp,
    /// When it last changed.
    pub updated: Timestamp,
}

impl OrderState {
    /// A new order in state `Pending`.
    pub fn new(request: OrderRequest, now: Timestamp) -> OrderState {
        OrderState {
            request,
            status: OrderStatus::Pending,
            venue_order_id: None,
            filled_qty: Decimal::ZERO,
            filled_notional: Decimal::ZERO,
            fees: Decimal::ZERO,
            reject_code: None,
            created: now,
            updated: now,
        }
    }

    /// Applies one report; returns the new status. Reports for a closed order change nothing
    /// but are not errors (a late fill after a cancel stands, venues do send those).
    pub fn apply(&mut self, report: &ExecReport) -> OrderStatus {
        self.updated = self.updated.max(report.ts);
        if report.venue_order_id.is_some() {
            self.venue_order_id = report.venue_order_id.clone();
        }
        match &report.kind {
            ExecKind::Accepted => {
                if self.status == OrderStatus::Pending {
                    self.status = OrderStatus::Accepted;
                }
            }
            ExecKind::Rejected { code, .. } => {
                if !self.status.is_closed() {
                    self.status = OrderStatus::Rejected;
                    self.reject_code = Some(code.clone());
                }
            }
            ExecKind::Fill(f) => {
                self.filled_qty = self.filled_qty.saturating_add(f.qty);
                self.filled_notional = self
                    .filled_notional
                    .saturating_add(f.qty.saturating_mul(f.price));
                self.fees = self.fees.saturating_add(f.fee);
                if !self.status.is_closed() || self.status == OrderStatus::Cancelled {
                    self.status = if self.filled_qty >= self.request.qty {
                        OrderStatus::Filled
                    } else if self.status == OrderStatus::Cancelled {
                        OrderStatus::Cancelled
                    } else {
                        OrderStatus::PartiallyFilled
                    };
                }
            }
            ExecKind::Cancelled => {
                if !self.status.is_closed() {
                    self.status = OrderStatus::Cancelled;
                }
            }
            ExecKind::Expired => {
                if !self.status.is_closed() {
                    self.status = OrderStatus::Expired;
                }
            }
        }
        self.status
    }

    /// Average fill price, if anything filled.
    pub fn avg_price(&self) -> Option<Decimal> {
        if self.filled_qty.is_zero() {
            None
        } else {
            self.filled_notional.checked_div(self.filled_qty)
        }
    }

    /// Quantity still working.
    pub fn remaining(&self) -> Decimal {
        (self.request.qty - self.filled_qty).max(Decimal::ZERO)
    }
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
