//! Orders (agents only): the one way an agent trades. Every order passes the host's pre-trade
//! risk engine and is journaled before it reaches the venue (the paper exchange by default);
//! what happens to it afterwards arrives in [`Agent::on_order`](crate::Agent::on_order) as
//! [`OrderEvent`](crate::OrderEvent)s.
//!
//! [`place`] needs `orders.place:<symbol-pattern>`, [`cancel`] `orders.cancel:<symbol-pattern>`;
//! a missing grant is [`Error::Denied`] naming it. A risk refusal is not an error: the
//! [`OrderAck`] has status [`AckStatus::Rejected`] and a stable reason code such as
//! `risk.max-notional` (the list is in the host's `docs/orders.md`), and a `rejected` event
//! follows. Client ids are the agent's own (1 to 32 characters of `A-Z a-z 0-9`), unique per
//! day: the host never makes one up, so placing the same id twice is refused as
//! `risk.duplicate-client-id` rather than sent twice.
//!
//! Off `wasm32` (native unit tests) there is no venue: [`place`] records the request and
//! answers `submitted`, [`placed`] returns what was placed, [`cancel`] forgets a placed order,
//! and the reads answer empty, or what [`stub_account`] set.
//!
//! After a restart the host's reads are the truth to rebuild positions and working orders
//! from: [`recovery`](crate::recovery) has the helpers.
//!
//! ```
//! use colony_sdk::orders::{self, AckStatus, OrderRequest};
//! use colony_sdk::{Decimal, Side};
//!
//! // Buy 0.01 at 46,000.5 or better; cancel what is left after the first fill elsewhere.
//! let order = OrderRequest::limit("b1", "BTC-USDT", Side::Buy, Decimal::new(460_005, 1), Decimal::new(1, 2));
//! let ack = orders::place(&order)?;
//! assert_eq!(ack.status, AckStatus::Submitted);
//! # assert_eq!(orders::placed().len(), 1);
//! orders::cancel("b1")?;
//! # Ok::<(), colony_sdk::Error>(())
//! ```

use crate::{Decimal, Error, Side};

pub use crate::__bindings::agent::colony::plugin::orders::{
    AckStatus, Balance, OpenOrder, OrderAck, OrderRequest, OrderType, PositionInfo, TimeInForce,
};

impl OrderRequest {
    /// A market order (immediate or cancel).
    pub fn market(client_id: &str, symbol: &str, side: Side, qty: Decimal) -> OrderRequest {
        OrderRequest {
            client_id: client_id.into(),
            symbol: symbol.into(),
            side,
            order_type: OrderType::Market,
            price: None,
            qty,
            time_in_force: TimeInForce::Ioc,
            post_only: false,
            reduce_only: false,
        }
    }

    /// A good-till-cancelled limit order.
    pub fn limit(
        client_id: &str,
        symbol: &str,
        side: Side,
        price: Decimal,
        qty: Decimal,
    ) -> OrderRequest {
        OrderRequest {
            client_id: client_id.into(),
            symbol: symbol.into(),
            side,
            order_type: OrderType::Limit,
            price: Some(price),
            qty,
            time_in_force: TimeInForce::Gtc,
            post_only: false,
            reduce_only: false,
        }
    }

    /// With this time in force.
    pub fn with_tif(mut self, tif: TimeInForce) -> OrderRequest {
        self.time_in_force = tif;
        self
    }

    /// Only adds liquidity (rejected if it would take).
    pub fn post_only(mut self) -> OrderRequest {
        self.post_only = true;
        self
    }

    /// Only reduces the position.
    pub fn reduce_only(mut self) -> OrderRequest {
        self.reduce_only = true;
        self
    }
}

/// Places an order; see the module documentation for what the answer means.
pub fn place(order: &OrderRequest) -> Result<OrderAck, Error> {
    imp::place(order)
}

/// Asks to cancel a working order; the `cancelled` event confirms it. An order that is not
/// working is [`Error::NotFound`]; too many cancels is [`Error::LimitExceeded`].
pub fn cancel(client_id: &str) -> Result<(), Error> {
    imp::cancel(client_id)
}

/// The agent's working orders, oldest first.
pub fn open_orders() -> Vec<OpenOrder> {
    imp::open_orders()
}

/// The agent's position in `symbol` (zero when it has none).
pub fn position(symbol: &str) -> Result<PositionInfo, Error> {
    imp::position(symbol)
}

/// The agent's cash balances.
pub fn balances() -> Vec<Balance> {
    imp::balances()
}

/// Off `wasm32`: the orders placed on this thread and not cancelled, oldest first.
#[cfg(not(target_arch = "wasm32"))]
pub fn placed() -> Vec<OrderRequest> {
    imp::placed()
}

/// Off `wasm32`: what [`position`] and [`open_orders`] answer on this thread from now on:
/// `(symbol, signed qty, average price)` per held position (any other symbol is flat), and
/// the working orders. For unit tests of a restart's rebuild
/// ([`recovery`](crate::recovery)).
#[cfg(not(target_arch = "wasm32"))]
pub fn stub_account(positions: Vec<(String, Decimal, Decimal)>, open: Vec<OpenOrder>) {
    imp::stub_account(positions, open)
}

#[cfg(target_arch = "wasm32")]
mod imp {
    use super::*;
    use crate::__bindings::agent::colony::plugin::orders as host;

    pub fn place(order: &OrderRequest) -> Result<OrderAck, Error> {
        host::place(order)
    }
    pub fn cancel(client_id: &str) -> Result<(), Error> {
        host::cancel(client_id)
    }
    pub fn open_orders() -> Vec<OpenOrder> {
        host::open_orders()
    }
    pub fn position(symbol: &str) -> Result<PositionInfo, Error> {
        host::position(symbol)
    }
    pub fn balances() -> Vec<Balance> {
        host::balances()
    }
}

#[cfg(not(target_arch = "wasm32"))]
mod imp {
    use super::*;
    use std::cell::RefCell;

    type Held = Vec<(String, Decimal, Decimal)>;

    thread_local! {
        static PLACED: RefCell<Vec<OrderRequest>> = const { RefCell::new(Vec::new()) };
        static ACCOUNT: RefCell<(Held, Vec<OpenOrder>)> =
            const { RefCell::new((Vec::new(), Vec::new())) };
    }

    pub fn stub_account(positions: Held, open: Vec<OpenOrder>) {
        ACCOUNT.with(|a| *a.borrow_mut() = (positions, open));
    }

    pub fn place(order: &OrderRequest) -> Result<OrderAck, Error> {
        PLACED.with(|p| p.borrow_mut().push(order.clone()));
        Ok(OrderAck {
            client_id: order.client_id.clone(),
            status: AckStatus::Submitted,
            reject_reason: None,
            detail: String::new(),
        })
    }
    pub fn cancel(client_id: &str) -> Result<(), Error> {
        PLACED.with(|p| {
            let mut p = p.borrow_mut();
            let before = p.len();
            p.retain(|o| o.client_id != client_id);
            if p.len() == before {
                Err(Error::NotFound(format!("no working order {client_id:?}")))
            } else {
                Ok(())
            }
        })
    }
    pub fn open_orders() -> Vec<OpenOrder> {
        ACCOUNT.with(|a| a.borrow().1.clone())
    }
    pub fn position(symbol: &str) -> Result<PositionInfo, Error> {
        let (qty, avg_price) = ACCOUNT
            .with(|a| {
                a.borrow()
                    .0
                    .iter()
                    .find(|(s, _, _)| s == symbol)
                    .map(|(_, q, p)| (*q, *p))
            })
            .unwrap_or((Decimal::ZERO, Decimal::ZERO));
        Ok(PositionInfo {
            symbol: symbol.into(),
            qty,
            avg_price,
            realised_pnl: Decimal::ZERO,
            unrealised_pnl: Decimal::ZERO,
            fees: Decimal::ZERO,
        })
    }
    pub fn balances() -> Vec<Balance> {
        Vec::new()
    }
    pub fn placed() -> Vec<OrderRequest> {
        PLACED.with(|p| p.borrow().clone())
    }
}
