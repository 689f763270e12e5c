//! `colony:plugin/orders`: the agent's side of the order router. `place` is checked against
//! `orders.place:<symbol-pattern>` (with the grant's quantity and notional limits) and
//! `cancel` against `orders.cancel:<symbol-pattern>` before the router sees anything; both
//! decisions are audited by the policy. Everything after the grant (risk, approvals, the venue)
//! is [`crate::orders::service::OrderService`]'s. Reads (`open-orders`, `position`, `balances`)
//! show the agent its own account only and need no grant.

use std::sync::Arc;

use rust_decimal::Decimal;
use wasmtime::component::{HasData, Linker};

use super::{Fault, Gate, HostResult, answer, decimal};
use crate::bindings::orders::{
    self as wit_orders, AckStatus, Balance, Host, OpenOrder, OrderAck, OrderType, PositionInfo,
    TimeInForce,
};
use crate::bindings::types::{self as wit, Error, OrderStatus as WitStatus};
use crate::clock::Clock;
use crate::market::replay::check_symbol;
use crate::market::types::Side;
use crate::orders::service::{Ack, CancelError, OrderService, OrderUpdate};
use crate::orders::{ExecKind, OrderKind, OrderRequest, OrderStatus};
use colony_caps::Request;

/// What the `orders` interface works on: the agent's name, grants and clock, and the host's
/// order router, if it trades.
pub struct OrdersCtx<'a> {
    /// The agent whose account this is.
    pub plugin: &'a Arc<str>,
    /// The agent's grant checks.
    pub gate: Gate<'a>,
    /// The clock orders are stamped with (virtual during a replay).
    pub clock: &'a Clock,
    /// The host's order router.
    pub router: Option<&'a Arc<OrderService>>,
}

struct HasOrders;

impl HasData for HasOrders {
    type Data<'a> = OrdersCtx<'a>;
}

/// Links `colony:plugin/orders`; `ctx` hands out the store's [`OrdersCtx`].
pub fn add_to_linker<T: Send + 'static>(
    linker: &mut Linker<T>,
    ctx: fn(&mut T) -> OrdersCtx<'_>,
) -> wasmtime::Result<()> {
    wit_orders::add_to_linker::<T, HasOrders>(linker, ctx)
}

/// Longest client order id: what OKX (`clOrdId`) and Alpaca accept alike.
pub(crate) const MAX_CLIENT_ID: usize = 32;

/// A WIT decimal as a host decimal; a scale above 28 is an invalid argument.
pub(crate) fn from_wit(d: wit::Decimal, what: &str) -> Result<Decimal, Error> {
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
pub(crate) fn to_wit(u: &OrderUpdate) -> wit::OrderEvent {
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

impl<'a> OrdersCtx<'a> {
    fn router(&self) -> HostResult<&'a Arc<OrderService>> {
        self.router
            .ok_or_else(|| Fault::unavailable("this host has no order venue"))
    }

    fn order_request(&self, o: wit_orders::OrderRequest) -> Result<OrderRequest, Error> {
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

    async fn place_order(&mut self, order: wit_orders::OrderRequest) -> HostResult<OrderAck> {
        let router = self.router()?;
        let req = self.order_request(order)?;
        // The grant's notional limit is checked against the limit price, or for a market
        // order against the reference price the risk engine will use.
        let price = req
            .price
            .or_else(|| router.reference_price(&req.symbol, req.side))
            .unwrap_or(Decimal::ZERO);
        let notional = price.checked_mul(req.qty).unwrap_or(Decimal::MAX);
        self.gate.check(&Request::PlaceOrder {
            symbol: &req.symbol,
            qty: req.qty,
            notional,
        })?;
        let client_id = req.client_id.clone();
        let now = self.clock.now_ns();
        Ok(match router.place_async(req, now).await {
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
        })
    }

    fn cancel_order(&mut self, client_id: &str) -> HostResult<()> {
        let router = self.router()?;
        check_client_id(client_id)?;
        let Some(symbol) = router.working_symbol(self.plugin, client_id) else {
            return Err(Error::NotFound(format!("no working order {client_id:?}")).into());
        };
        self.gate.check(&Request::CancelOrder { symbol: &symbol })?;
        let now = self.clock.now_ns();
        router
            .cancel(self.plugin, client_id, now)
            .map_err(|e| match e {
                CancelError::NotFound(m) => Error::NotFound(m).into(),
                CancelError::Rate(m) => Error::LimitExceeded(m).into(),
            })
    }

    fn position_of(&self, symbol: String) -> HostResult<PositionInfo> {
        check_symbol(&symbol).map_err(Error::InvalidArgument)?;
        let router = self.router()?;
        let p = router.position(self.plugin, &symbol);
        Ok(PositionInfo {
            symbol,
            qty: decimal(p.qty),
            avg_price: decimal(p.avg_price),
            realised_pnl: decimal(p.realised_pnl),
            unrealised_pnl: decimal(p.unrealised_pnl),
            fees: decimal(p.fees),
        })
    }
}

impl Host for OrdersCtx<'_> {
    async fn place(
        &mut self,
        order: wit_orders::OrderRequest,
    ) -> wasmtime::Result<Result<OrderAck, Error>> {
        answer(self.place_order(order).await)
    }

    async fn cancel(&mut self, client_id: String) -> wasmtime::Result<Result<(), Error>> {
        answer(self.cancel_order(&client_id))
    }

    async fn open_orders(&mut self) -> wasmtime::Result<Vec<OpenOrder>> {
        let Some(router) = self.router else {
            return Ok(Vec::new());
        };
        Ok(router
            .open_orders(self.plugin)
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
        answer(self.position_of(symbol))
    }

    async fn balances(&mut self) -> wasmtime::Result<Vec<Balance>> {
        let Some(router) = self.router else {
            return Ok(Vec::new());
        };
        Ok(router
            .balances(self.plugin)
            .into_iter()
            .map(|b| Balance {
                currency: b.currency.to_string(),
                total: decimal(b.total),
            })
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::Decision;
    use crate::bus::Bus;
    use crate::interfaces::testing::{audit_store, decisions, policy};
    use crate::orders::service::OrdersConfig;
    use crate::policy::{CheckCache, Policy};

    fn limit_buy(client_id: &str) -> wit_orders::OrderRequest {
        wit_orders::OrderRequest {
            client_id: client_id.into(),
            symbol: "BTC-USDT".into(),
            side: wit::Side::Buy,
            order_type: OrderType::Limit,
            price: Some(wit::Decimal {
                mantissa: 100,
                scale: 0,
            }),
            qty: wit::Decimal {
                mantissa: 1,
                scale: 0,
            },
            time_in_force: TimeInForce::Gtc,
            post_only: false,
            reduce_only: false,
        }
    }

    struct Fixture {
        plugin: Arc<str>,
        policy: Policy,
        checks: CheckCache,
        clock: Clock,
        router: Option<Arc<OrderService>>,
    }

    impl Fixture {
        fn new(policy: Policy, router: bool) -> Fixture {
            Fixture {
                plugin: "p".into(),
                policy,
                checks: CheckCache::default(),
                clock: Clock::system(),
                router: router.then(|| OrderService::paper(Bus::new(), OrdersConfig::default())),
            }
        }

        fn ctx(&mut self) -> OrdersCtx<'_> {
            OrdersCtx {
                plugin: &self.plugin,
                gate: Gate {
                    policy: &self.policy,
                    checks: &mut self.checks,
                },
                clock: &self.clock,
                router: self.router.as_ref(),
            }
        }
    }

    #[tokio::test]
    async fn an_order_without_a_grant_is_denied_and_audited_before_the_router_sees_it() {
        let dir = tempfile::tempdir().unwrap();
        let audit = audit_store(dir.path()).await;
        let mut f = Fixture::new(policy(&["orders.place:ETH-*"], Some(&audit)), true);
        let got = f.ctx().place(limit_buy("c1")).await.unwrap();
        match got {
            Err(Error::Denied(m)) => assert!(m.contains("orders.place"), "{m}"),
            other => panic!("expected denied, got {other:?}"),
        }
        let router = f.router.as_ref().unwrap();
        assert!(
            router.open_orders("p").is_empty(),
            "the router saw the order"
        );
        let recs = decisions(&audit, "orders.place").await;
        assert_eq!(recs.len(), 1, "{recs:?}");
        assert_eq!(recs[0].decision, Some(Decision::Deny));
        assert_eq!(recs[0].plugin, "p");
    }

    #[tokio::test]
    async fn a_granted_order_reaches_the_router_and_is_audited_as_allowed() {
        let dir = tempfile::tempdir().unwrap();
        let audit = audit_store(dir.path()).await;
        let mut f = Fixture::new(policy(&["orders.place:BTC-*"], Some(&audit)), true);
        let ack = f.ctx().place(limit_buy("c1")).await.unwrap().unwrap();
        assert_eq!(ack.client_id, "c1");
        let recs = decisions(&audit, "orders.place").await;
        assert_eq!(recs.len(), 1, "{recs:?}");
        assert_eq!(recs[0].decision, Some(Decision::Allow));
    }

    #[tokio::test]
    async fn without_a_router_writes_are_unavailable_and_reads_are_empty() {
        let mut f = Fixture::new(policy(&["orders.place:*"], None), false);
        let mut ctx = f.ctx();
        let unavailable =
            |e: &Error| matches!(e, Error::Unavailable(m) if m == "this host has no order venue");
        let placed = ctx.place(limit_buy("c1")).await.unwrap();
        assert!(placed.as_ref().is_err_and(unavailable), "{placed:?}");
        let cancelled = ctx.cancel("c1".into()).await.unwrap();
        assert!(cancelled.as_ref().is_err_and(unavailable), "{cancelled:?}");
        assert!(ctx.open_orders().await.unwrap().is_empty());
        assert!(ctx.balances().await.unwrap().is_empty());
    }

    #[tokio::test]
    async fn malformed_requests_are_invalid_arguments_before_the_grant_check() {
        let mut f = Fixture::new(policy(&[], None), true);
        let mut ctx = f.ctx();
        for bad in ["", "has space", &"x".repeat(MAX_CLIENT_ID + 1)] {
            match ctx.place(limit_buy(bad)).await.unwrap() {
                Err(Error::InvalidArgument(m)) => assert!(m.contains("client-id"), "{m}"),
                other => panic!("{bad:?}: {other:?}"),
            }
        }
        assert!(matches!(
            ctx.cancel("nothing".into()).await.unwrap(),
            Err(Error::NotFound(_))
        ));
        assert!(matches!(
            ctx.position("not a symbol".into()).await.unwrap(),
            Err(Error::InvalidArgument(_))
        ));
    }
}
