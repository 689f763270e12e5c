//! `colony:plugin/orders`: the agent's side of the order router. `place` is checked against
//! `orders.place:<symbol-pattern>` (with the grant's quantity and notional limits) and
//! `cancel` against `orders.cancel:<symbol-pattern>` before the router sees anything; both
//! decisions are audited by the policy. Everything after the grant (risk, approvals, the venue)
//! is [`crate::orders::service::OrderService`]'s. Reads (`open-orders`, `position`, `balances`)
//! show the agent its own account only and need no grant.

use std::sync::Arc;

use rust_decimal::Decimal;

use super::{decimal, refusal};
use crate::bindings::orders::{
    AckStatus, Balance, Host, OpenOrder, OrderAck, OrderType, PositionInfo, TimeInForce,
};
use crate::bindings::types::{self as wit, Error, OrderStatus as WitStatus};
use crate::market::types::Side;
use crate::orders::service::{Ack, CancelError, OrderService, OrderUpdate};
use crate::orders::{ExecKind, OrderKind, OrderRequest, OrderStatus};
use crate::store::StoreState;
use colony_caps::Request;
use colony_model::symbol::check_symbol;

/// Longest client order id: what OKX (`clOrdId`) and Alpaca accept alike.
pub const MAX_CLIENT_ID: usize = 32;

/// A WIT decimal as a host decimal; a scale above 28 is an invalid argument.
pub fn from_wit(d: wit::Decimal, what: &str) -> Result<Decimal, Error> {
    Decimal::try_from_i128_with_scale(i128::from(d.mantissa), u32::from(d.scale))
        .map_err(|_| Error::InvalidArgument(format!("{what}: scale {} is above 28", d.scale)))
}

fn check_client_id(id: &str) -> Result<(), Error> {
    if id.is_empty() || id.len() > MAX_CLIENT_ID || !id.bytes().all(|b| b.is_ascii_alphanumeric()) {
        return Err(Error::InvalidArgument(format!(
            "client-id {id:?}: must be 1 to {MAX_CLIENT_ID} characters of A-Z, a-z, 0-9"
        )));
    }
    Ok(())
}

fn side(s: wit::Side) -> Side {
    match s {
        wit::Side::Buy => Side::Buy,
        wit::Side::Sell => Side::Sell,
    }
}

fn wit_side(s: Side) -> wit::Side {
    match s {
        Side::Buy => wit::Side::Buy,
        Side::Sell => wit::Side::Sell,
    }
}

fn wit_status(s: OrderStatus) -> WitStatus {
    match s {
        OrderStatus::Pending | OrderStatus::Accepted => WitStatus::Accepted,
        OrderStatus::PartiallyFilled => WitStatus::PartiallyFilled,
        OrderStatus::Filled => WitStatus::Filled,
        OrderStatus::Cancelled => WitStatus::Cancelled,
        OrderStatus::Rejected => WitStatus::Rejected,
        OrderStatus::Expired => WitStatus::Expired,
    }
}

/// The guest-visible form of an order update.
pub fn to_wit(u: &OrderUpdate) -> wit::OrderEvent {
    let r = &u.report;
    let (last_fill, reject_reason) = match &r.kind {
        ExecKind::Fill(f) => (
            Some(wit::Fill {
                qty: decimal(f.qty),
                price: decimal(f.price),
                fee: decimal(f.fee),
                fee_currency: f.fee_currency.to_string(),
                ts: r.ts,
            }),
            None,
        ),
        ExecKind::Rejected { code, .. } => (None, Some(code.clone())),
        _ => (None, None),
    };
    wit::OrderEvent {
        client_id: r.client_id.clone(),
        venue_order_id: r.venue_order_id.clone(),
        symbol: r.symbol.to_string(),
        side: wit_side(r.side),
        status: wit_status(u.status),
        filled_qty: decimal(u.filled_qty),
        avg_price: u.avg_price.map(decimal),
        last_fill,
        reject_reason,
        ts: r.ts,
    }
}

impl StoreState {
    fn router(&self) -> Result<Arc<OrderService>, Error> {
        self.orders
            .clone()
            .ok_or_else(|| Error::Unavailable("this host has no order venue".into()))
    }

    fn order_request(
        &self,
        o: crate::bindings::orders::OrderRequest,
    ) -> Result<OrderRequest, Error> {
        check_client_id(&o.client_id)?;
        check_symbol(&o.symbol).map_err(|e| Error::InvalidArgument(e.to_string()))?;
        let price = o.price.map(|p| from_wit(p, "price")).transpose()?;
        let qty = from_wit(o.qty, "qty")?;
        Ok(OrderRequest {
            client_id: o.client_id,
            agent: self.plugin.clone(),
            symbol: o.symbol.into(),
            side: side(o.side),
            kind: match o.order_type {
                OrderType::Market => OrderKind::Market,
                OrderType::Limit => OrderKind::Limit,
            },
            price,
            qty,
            tif: match o.time_in_force {
                TimeInForce::Gtc => crate::orders::TimeInForce::Gtc,
                TimeInForce::Ioc => crate::orders::TimeInForce::Ioc,
                TimeInForce::Fok => crate::orders::TimeInForce::Fok,
            },
            post_only: o.post_only,
            reduce_only: o.reduce_only,
        })
    }
}

impl Host for StoreState {
    async fn place(
        &mut self,
        order: crate::bindings::orders::OrderRequest,
    ) -> wasmtime::Result<Result<OrderAck, Error>> {
        let router = match self.router() {
            Ok(r) => r,
            Err(e) => return Ok(Err(e)),
        };
        let req = match self.order_request(order) {
            Ok(r) => r,
            Err(e) => return Ok(Err(e)),
        };
        // The grant's notional limit is checked against the limit price, or for a market
        // order against the reference price the risk engine will use.
        let price = req
            .price
            .or_else(|| router.reference_price(&req.symbol, req.side))
            .unwrap_or(Decimal::ZERO);
        let notional = price.checked_mul(req.qty).unwrap_or(Decimal::MAX);
        if let Err(r) = self.check(&Request::PlaceOrder {
            symbol: &req.symbol,
            qty: req.qty,
            notional,
        }) {
            return Ok(Err(refusal(r)));
        }
        let client_id = req.client_id.clone();
        let now = self.clock.now_ns();
        let ack = match router.place_async(req, now).await {
            Ack::Submitted => OrderAck {
                client_id,
                status: AckStatus::Submitted,
                reject_reason: None,
                detail: String::new(),
            },
            Ack::Rejected { code, detail } => OrderAck {
                client_id,
                status: AckStatus::Rejected,
                reject_reason: Some(code),
                detail,
            },
            Ack::PendingApproval { id } => OrderAck {
                client_id,
                status: AckStatus::PendingApproval,
                reject_reason: None,
                detail: format!("waiting for approval {id}"),
            },
        };
        Ok(Ok(ack))
    }

    async fn cancel(&mut self, client_id: String) -> wasmtime::Result<Result<(), Error>> {
        let router = match self.router() {
            Ok(r) => r,
            Err(e) => return Ok(Err(e)),
        };
        if let Err(e) = check_client_id(&client_id) {
            return Ok(Err(e));
        }
        let Some(symbol) = router.working_symbol(&self.plugin, &client_id) else {
            return Ok(Err(Error::NotFound(format!(
                "no working order {client_id:?}"
            ))));
        };
        if let Err(r) = self.check(&Request::CancelOrder { symbol: &symbol }) {
            return Ok(Err(refusal(r)));
        }
        let now = self.clock.now_ns();
        Ok(match router.cancel(&self.plugin, &client_id, now) {
            Ok(()) => Ok(()),
            Err(CancelError::NotFound(m)) => Err(Error::NotFound(m)),
            Err(CancelError::Rate(m)) => Err(Error::LimitExceeded(m)),
        })
    }

    async fn open_orders(&mut self) -> wasmtime::Result<Vec<OpenOrder>> {
        let Ok(router) = self.router() else {
            return Ok(Vec::new());
        };
        Ok(router
            .open_orders(&self.plugin)
            .iter()
            .map(|o| OpenOrder {
                client_id: o.request.client_id.clone(),
                venue_order_id: o.venue_order_id.clone(),
                symbol: o.request.symbol.to_string(),
                side: wit_side(o.request.side),
                order_type: match o.request.kind {
                    OrderKind::Market => OrderType::Market,
                    OrderKind::Limit => OrderType::Limit,
                },
                price: o.request.price.map(decimal),
                qty: decimal(o.request.qty),
                filled_qty: decimal(o.filled_qty),
                status: wit_status(o.status),
                created: o.created,
            })
            .collect())
    }

    async fn position(&mut self, symbol: String) -> wasmtime::Result<Result<PositionInfo, Error>> {
        if let Err(e) = check_symbol(&symbol) {
            return Ok(Err(Error::InvalidArgument(e.to_string())));
        }
        let router = match self.router() {
            Ok(r) => r,
            Err(e) => return Ok(Err(e)),
        };
        let p = router.position(&self.plugin, &symbol);
        Ok(Ok(PositionInfo {
            symbol,
            qty: decimal(p.qty),
            avg_price: decimal(p.avg_price),
            realised_pnl: decimal(p.realised_pnl),
            unrealised_pnl: decimal(p.unrealised_pnl),
            fees: decimal(p.fees),
        }))
    }

    async fn balances(&mut self) -> wasmtime::Result<Vec<Balance>> {
        let Ok(router) = self.router() else {
            return Ok(Vec::new());
        };
        Ok(router
            .balances(&self.plugin)
            .into_iter()
            .map(|b| Balance {
                currency: b.currency.to_string(),
                total: decimal(b.total),
            })
            .collect())
    }
}
