//! OKX v5 REST as a live venue: [`OkxAdapter`] turns the router's orders into OKX requests and
//! OKX's answers into outcomes, and [`LiveVenue::okx`] makes an account of it ([`OkxVenue`]).
//! The wire format (signing, request building, parsing) is [`client`].
//!
//! | order request | OKX |
//! |---|---|
//! | `client_id` | `clOrdId` (1–32 letters and digits) |
//! | symbol | `instId` as is; `tdMode` `cash` for `BASE-QUOTE`, `cross` otherwise (`-SWAP`, futures) |
//! | limit GTC / IOC / FOK | `ordType` `limit` / `ioc` / `fok` |
//! | market | `ordType=market` (spot: `tgtCcy=base_ccy`, so `sz` is the quantity); FOK unsupported |
//! | post-only (limit GTC) | `ordType=post_only` |
//! | reduce-only | `reduceOnly=true` |
//!
//! OKX's "could not process" codes ([`client::SYSTEM_ERROR_CODES`]) are
//! [`VenueError::Unavailable`], so they count against the breaker and leave the outcome unknown;
//! every other code is the venue's decision. A cancel goes by `ordId` when the venue id is known,
//! else by `clOrdId`.
//!
//! OKX signs each request with the wall clock ([`OkxTimestamp::now`]; OKX refuses requests more
//! than 30 s off its clock).

#[allow(missing_docs)] // Wire types: their fields are the venue's documented JSON fields.
pub mod client;

use std::time::Duration;

use rust_decimal::Decimal;

pub use self::client::{BASE_URL, OkxClient, OkxTimestamp};
use self::client::{OkxOrder, OrdType, OrderRef, TgtCcy, TradeMode};
use super::credentials::OkxCredentials;
use super::http::{ConfigError, HttpResponse};
use super::live::{Adapter, CancelBy, LiveVenue, NotSendable, VenueError, VenueOrder, bad};
use super::{OrderError, OrderOutcome, ResponseError, SignedRequest};
use colony_orders::{OrderKind, OrderRequest, OrderStatus, TimeInForce};

/// An OKX account as the router's venue.
pub type OkxVenue = LiveVenue<OkxAdapter>;

impl LiveVenue<OkxAdapter> {
    /// An OKX account at `base_url` ([`BASE_URL`] for the real one); `demo` sends every
    /// request to OKX's demo trading (`x-simulated-trading: 1`).
    pub fn okx(
        credentials: OkxCredentials,
        demo: bool,
        base_url: &str,
        timeout: Duration,
    ) -> Result<Self, ConfigError> {
        let name = if demo { "okx-demo" } else { "okx" };
        let client = OkxClient::new(credentials, demo);
        LiveVenue::new(name, OkxAdapter { client }, base_url, timeout)
    }
}

/// OKX's side of a [`LiveVenue`]: the signed requests and the reading of OKX's answers.
#[derive(Debug)]
pub struct OkxAdapter {
    client: OkxClient,
}

impl Adapter for OkxAdapter {
    const CANCELS_BY_CLIENT_ID: bool = true;

    fn place_request(&self, order: &OrderRequest) -> Result<SignedRequest, NotSendable> {
        Ok(self
            .client
            .place_order(&okx_order(order)?, &OkxTimestamp::now())?)
    }

    fn place_outcome(response: &HttpResponse) -> Result<OrderOutcome, VenueError> {
        match client::parse_order_ack(&response.body) {
            Ok(OrderOutcome::Rejected { code, message }) if client::is_system_error(&code) => {
                Err(VenueError::Unavailable(format!("okx {code}: {message}")))
            }
            Ok(outcome) => Ok(outcome),
            Err(error) => Err(bad(response, error)),
        }
    }

    fn cancel_request(
        &self,
        order: &OrderRequest,
        by: CancelBy<'_>,
    ) -> Result<SignedRequest, OrderError> {
        let target = match by {
            CancelBy::VenueOrderId(id) => OrderRef::OrdId(id.to_string()),
            CancelBy::ClientId => OrderRef::ClOrdId(order.client_id.clone()),
        };
        self.client
            .cancel_order(&order.symbol, &target, &OkxTimestamp::now())
    }

    /// The cancelled order's OKX id.
    fn cancel_outcome(response: &HttpResponse) -> Result<Option<String>, VenueError> {
        match Self::place_outcome(response)? {
            OrderOutcome::Accepted { venue_order_id } => Ok(Some(venue_order_id)),
            OrderOutcome::Rejected { code, message } => Err(VenueError::Refused { code, message }),
        }
    }

    fn query_request(&self, order: &OrderRequest) -> Result<SignedRequest, OrderError> {
        self.client.get_order(
            &order.symbol,
            &OrderRef::ClOrdId(order.client_id.clone()),
            &OkxTimestamp::now(),
        )
    }

    fn query_outcome(response: &HttpResponse) -> Result<Option<VenueOrder>, VenueError> {
        let orders = match client::parse_orders(&response.body) {
            Ok(orders) => orders,
            Err(ResponseError::Venue { code, .. }) if code == client::ORDER_NOT_FOUND => {
                return Ok(None);
            }
            Err(ResponseError::Venue { code, message }) if client::is_system_error(&code) => {
                return Err(VenueError::Unavailable(format!("okx {code}: {message}")));
            }
            Err(ResponseError::Venue { code, message }) => {
                return Err(VenueError::Refused { code, message });
            }
            Err(error) => return Err(bad(response, error)),
        };
        let [order] = orders.as_slice() else {
            return Err(bad(
                response,
                format!("{} orders for one client id", orders.len()),
            ));
        };
        let status = okx_status(&order.state, order.acc_fill_sz)
            .ok_or_else(|| bad(response, format!("order state {:?}", order.state)))?;
        Ok(Some(VenueOrder {
            venue_order_id: order.ord_id.clone(),
            client_id: order.cl_ord_id.clone(),
            status,
            filled_qty: order.acc_fill_sz,
            avg_price: order.avg_px,
            venue_state: order.state.clone(),
        }))
    }

    fn instruments_requests(&self) -> Result<Vec<SignedRequest>, OrderError> {
        let at = OkxTimestamp::now();
        INSTRUMENT_TYPES
            .iter()
            .map(|t| self.client.instruments(t, &at))
            .collect()
    }

    fn instruments_outcome(response: &HttpResponse) -> Result<Vec<String>, VenueError> {
        match client::parse_instruments(&response.body) {
            Ok(listed) => Ok(listed
                .into_iter()
                .filter(|i| i.state == "live")
                .map(|i| i.inst_id)
                .collect()),
            Err(ResponseError::Venue { code, message }) if client::is_system_error(&code) => {
                Err(VenueError::Unavailable(format!("okx {code}: {message}")))
            }
            Err(ResponseError::Venue { code, message }) => {
                Err(VenueError::Refused { code, message })
            }
            Err(error) => Err(bad(response, error)),
        }
    }
}

/// The instrument types whose lists say what the account can trade: spot (`cash`), and the
/// derivatives margined `cross` (perpetual swaps, dated futures).
const INSTRUMENT_TYPES: [&str; 3] = ["SPOT", "SWAP", "FUTURES"];

/// `BASE-QUOTE` is spot (cash); anything else (`-SWAP`, dated futures, options) is a derivative
/// margined in cross mode.
fn okx_trade_mode(inst_id: &str) -> TradeMode {
    if inst_id.split('-').count() == 2 {
        TradeMode::Cash
    } else {
        TradeMode::Cross
    }
}

fn okx_order(order: &OrderRequest) -> Result<OkxOrder, NotSendable> {
    let ord_type = match (order.kind, order.tif, order.post_only) {
        (OrderKind::Limit, TimeInForce::Gtc, true) => OrdType::PostOnly,
        (_, _, true) => {
            return Err(NotSendable::unsupported(
                "post-only needs a limit GTC order",
            ));
        }
        (OrderKind::Limit, TimeInForce::Gtc, false) => OrdType::Limit,
        (OrderKind::Limit, TimeInForce::Ioc, false) => OrdType::Ioc,
        (OrderKind::Limit, TimeInForce::Fok, false) => OrdType::Fok,
        (OrderKind::Market, TimeInForce::Fok, false) => {
            return Err(NotSendable::unsupported(
                "okx has no fill-or-kill market orders",
            ));
        }
        (OrderKind::Market, TimeInForce::Gtc | TimeInForce::Ioc, false) => OrdType::Market,
    };
    let td_mode = okx_trade_mode(&order.symbol);
    let tgt_ccy =
        (ord_type == OrdType::Market && td_mode == TradeMode::Cash).then_some(TgtCcy::BaseCcy);
    Ok(OkxOrder {
        inst_id: order.symbol.to_string(),
        td_mode,
        cl_ord_id: Some(order.client_id.clone()),
        side: order.side,
        ord_type,
        sz: order.qty,
        px: order.price,
        reduce_only: order.reduce_only,
        tgt_ccy,
    })
}

fn okx_status(state: &str, filled: Decimal) -> Option<OrderStatus> {
    Some(match state {
        "live" if filled > Decimal::ZERO => OrderStatus::PartiallyFilled,
        "live" => OrderStatus::Accepted,
        "partially_filled" => OrderStatus::PartiallyFilled,
        "filled" => OrderStatus::Filled,
        "canceled" | "mmp_canceled" => OrderStatus::Cancelled,
        _ => return None,
    })
}

#[cfg(test)]
mod tests;
