//! Alpaca as a live venue: [`AlpacaAdapter`] turns the router's orders into Alpaca requests and
//! Alpaca's answers into outcomes, and [`LiveVenue::alpaca`] makes an account of it
//! ([`AlpacaVenue`]). The wire format (requests, order objects, errors) is [`client`].
//!
//! | order request | Alpaca |
//! |---|---|
//! | `client_id` | `client_order_id` (1–48 printable) |
//! | symbol | `symbol` as is |
//! | limit GTC / IOC / FOK | `type=limit`, `time_in_force` `gtc` / `ioc` / `fok` |
//! | market | `type=market`, `time_in_force` as asked |
//! | post-only (limit GTC) | unsupported |
//! | reduce-only | unsupported (Alpaca has no such flag; sending without it could add risk) |
//!
//! A 4xx with Alpaca's error body is the venue's decision ([`VenueError::Refused`], or a
//! rejected order); a query's 404 means "no such order" only with that body, since a 404 page
//! from something in between says nothing about the order. Alpaca cancels only by its own order
//! id, so an order whose id is not known yet is looked up by client id first.

#[allow(missing_docs)] // Wire types: their fields are the venue's documented JSON fields.
pub mod client;

use std::time::Duration;

use rust_decimal::Decimal;

pub use self::client::{AlpacaClient, AlpacaEnv};
use self::client::{AlpacaOrder, Quantity};
use super::credentials::AlpacaCredentials;
use super::http::{ConfigError, HttpResponse};
use super::live::{Adapter, CancelBy, LiveVenue, NotSendable, VenueError, VenueOrder, bad};
use super::{OrderError, OrderOutcome, SignedRequest};
use colony_orders::{OrderKind, OrderRequest, OrderStatus, TimeInForce};

/// An Alpaca account as the router's venue.
pub type AlpacaVenue = LiveVenue<AlpacaAdapter>;

impl LiveVenue<AlpacaAdapter> {
    /// An Alpaca account at `base_url` (normally `env.base_url()`; paper and live keys differ).
    pub fn alpaca(
        credentials: AlpacaCredentials,
        env: AlpacaEnv,
        base_url: &str,
        timeout: Duration,
    ) -> Result<Self, ConfigError> {
        let name = match env {
            AlpacaEnv::Paper => "alpaca-paper",
            AlpacaEnv::Live => "alpaca",
        };
        let client = AlpacaClient::new(credentials, env);
        LiveVenue::new(name, AlpacaAdapter { client }, base_url, timeout)
    }
}

/// Alpaca's side of a [`LiveVenue`]: the keyed requests and the reading of Alpaca's answers.
#[derive(Debug)]
pub struct AlpacaAdapter {
    client: AlpacaClient,
}

impl Adapter for AlpacaAdapter {
    const CANCELS_BY_CLIENT_ID: bool = false;

    fn place_request(&self, order: &OrderRequest) -> Result<SignedRequest, NotSendable> {
        Ok(self.client.place_order(&alpaca_order(order)?)?)
    }

    fn place_outcome(response: &HttpResponse) -> Result<OrderOutcome, VenueError> {
        client::parse_place_response(response.status, &response.body).map_err(|e| bad(response, e))
    }

    fn cancel_request(
        &self,
        _order: &OrderRequest,
        by: CancelBy<'_>,
    ) -> Result<SignedRequest, OrderError> {
        match by {
            CancelBy::VenueOrderId(id) => self.client.cancel_order(id),
            CancelBy::ClientId => Err(OrderError::invalid(
                "order_id",
                "alpaca cancels by its own order id only",
            )),
        }
    }

    /// Alpaca's answer names no order: the cancelled one is the one the request named.
    fn cancel_outcome(response: &HttpResponse) -> Result<Option<String>, VenueError> {
        match response.status {
            200..=299 => Ok(None),
            400..=499 => Err(alpaca_refusal(response)),
            _ => Err(bad(response, "unexpected status")),
        }
    }

    fn query_request(&self, order: &OrderRequest) -> Result<SignedRequest, OrderError> {
        self.client.get_order_by_client_id(&order.client_id)
    }

    fn query_outcome(response: &HttpResponse) -> Result<Option<VenueOrder>, VenueError> {
        match response.status {
            200..=299 => {}
            // Only Alpaca's own "not found" counts: a 404 page from something in between says
            // nothing about the order.
            404 => {
                return match client::parse_error(&response.body) {
                    Ok(_) => Ok(None),
                    Err(error) => Err(bad(response, error)),
                };
            }
            400..=499 => return Err(alpaca_refusal(response)),
            _ => return Err(bad(response, "unexpected status")),
        }
        let order = client::parse_order(&response.body).map_err(|e| bad(response, e))?;
        let status = alpaca_status(&order.status, order.filled_qty)
            .ok_or_else(|| bad(response, format!("order status {:?}", order.status)))?;
        Ok(Some(VenueOrder {
            venue_order_id: order.id,
            client_id: order.client_order_id,
            status,
            filled_qty: order.filled_qty,
            avg_price: order.filled_avg_price,
            venue_state: order.status,
        }))
    }

    fn instruments_requests(&self) -> Result<Vec<SignedRequest>, OrderError> {
        ASSET_CLASSES
            .iter()
            .map(|class| self.client.assets(class))
            .collect()
    }

    fn instruments_outcome(response: &HttpResponse) -> Result<Vec<String>, VenueError> {
        match response.status {
            200..=299 => {}
            400..=499 => return Err(alpaca_refusal(response)),
            _ => return Err(bad(response, "unexpected status")),
        }
        let assets = client::parse_assets(&response.body).map_err(|e| bad(response, e))?;
        Ok(assets
            .into_iter()
            .filter(|a| a.tradable && a.status == "active")
            .map(|a| a.symbol)
            .collect())
    }
}

/// The asset classes the router's orders can name: US equities and crypto.
const ASSET_CLASSES: [&str; 2] = ["us_equity", "crypto"];

fn alpaca_order(order: &OrderRequest) -> Result<AlpacaOrder, NotSendable> {
    if order.post_only {
        return Err(NotSendable::unsupported("alpaca has no post-only orders"));
    }
    if order.reduce_only {
        return Err(NotSendable::unsupported("alpaca has no reduce-only orders"));
    }
    Ok(AlpacaOrder {
        symbol: order.symbol.to_string(),
        quantity: Quantity::Qty(order.qty),
        side: order.side,
        order_type: match order.kind {
            OrderKind::Market => client::OrderType::Market,
            OrderKind::Limit => client::OrderType::Limit,
        },
        time_in_force: match order.tif {
            TimeInForce::Gtc => client::TimeInForce::Gtc,
            TimeInForce::Ioc => client::TimeInForce::Ioc,
            TimeInForce::Fok => client::TimeInForce::Fok,
        },
        limit_price: order.price,
        stop_price: None,
        client_order_id: Some(order.client_id.clone()),
    })
}

/// A 4xx answer as the venue's refusal, with Alpaca's code and message.
fn alpaca_refusal(response: &HttpResponse) -> VenueError {
    match client::parse_error(&response.body) {
        Ok(error) => VenueError::Refused {
            code: error.code,
            message: error.message,
        },
        Err(error) => bad(response, error),
    }
}

/// Alpaca's order statuses. Those where the order still works (or may, like `pending_cancel`)
/// are accepted or partially filled by the filled quantity; `replaced` closes this order (its
/// replacement has another id), as a cancel does.
fn alpaca_status(status: &str, filled: Decimal) -> Option<OrderStatus> {
    let working = if filled > Decimal::ZERO {
        OrderStatus::PartiallyFilled
    } else {
        OrderStatus::Accepted
    };
    Some(match status {
        "new"
        | "accepted"
        | "pending_new"
        | "accepted_for_bidding"
        | "held"
        | "pending_cancel"
        | "pending_replace"
        | "stopped"
        | "suspended"
        | "calculated"
        | "done_for_day" => working,
        "partially_filled" => OrderStatus::PartiallyFilled,
        "filled" => OrderStatus::Filled,
        "canceled" | "replaced" => OrderStatus::Cancelled,
        "expired" => OrderStatus::Expired,
        "rejected" => OrderStatus::Rejected,
        _ => return None,
    })
}

#[cfg(test)]
mod tests;
