//! A live venue account (OKX or Alpaca): places, cancels and looks up orders over HTTP, behind a
//! circuit breaker, and answers in the router's terms ([`ExecReport`], [`OrderStatus`]).
//!
//! **Architecture Invariant:** an error means "the venue's answer is unknown", never "the order
//! is not there". After [`VenueError::Timeout`], [`VenueError::Unavailable`] or
//! [`VenueError::BadResponse`] the order may or may not be live at the venue: the caller
//! reconciles with [`LiveVenue::query`] by client id and must not resend blindly (the client id
//! would be a duplicate at best, a second order at worst). [`VenueError::CircuitOpen`] and
//! [`VenueError::NotSent`] guarantee that nothing went out. A known outcome is an `Ok`: accepted,
//! or rejected by the venue (`venue.rejected`) or before sending because the venue cannot take
//! the order (`venue.unsupported`, `venue.invalid-order`).
//!
//! | order request | OKX | Alpaca |
//! |---|---|---|
//! | `client_id` | `clOrdId` (1–32 letters and digits) | `client_order_id` (1–48 printable) |
//! | symbol | `instId` as is; `tdMode` `cash` for `BASE-QUOTE`, `cross` otherwise (`-SWAP`, futures) | `symbol` as is |
//! | limit GTC / IOC / FOK | `ordType` `limit` / `ioc` / `fok` | `type=limit`, `time_in_force` `gtc` / `ioc` / `fok` |
//! | market | `ordType=market` (spot: `tgtCcy=base_ccy`, so `sz` is the quantity); FOK unsupported | `type=market`, `time_in_force` as asked |
//! | post-only (limit GTC) | `ordType=post_only` | unsupported |
//! | reduce-only | `reduceOnly=true` | unsupported (Alpaca has no such flag; sending without it could add risk) |
//!
//! What counts against the breaker: timeouts, connection errors, HTTP 5xx, answers that are not
//! what the venue documents, and OKX's "could not process" codes ([`okx::SYSTEM_ERROR_CODES`]).
//! Refusals (insufficient balance, unknown order, rate limits) are the venue working.
//!
//! OKX signs each request with the wall clock ([`OkxTimestamp::now`]; OKX refuses requests more
//! than 30 s off its clock); the `now` passed in is only the time stamped on the reports.

use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use rust_decimal::Decimal;

use super::alpaca::{self, AlpacaClient, AlpacaEnv, AlpacaOrder, Quantity};
use super::breaker::{BreakerConfig, BreakerState, BreakerStatus, CircuitBreaker};
use super::credentials::{AlpacaCredentials, OkxCredentials};
use super::http::{ConfigError, HttpResponse, HttpSender, SendError};
use super::okx::{self, OkxClient, OkxOrder, OkxTimestamp, OrdType, OrderRef, TgtCcy, TradeMode};
use super::{OrderError, OrderOutcome, ResponseError, SignedRequest};
use crate::market::types::Timestamp;
use crate::orders::venue::{Answer, Pending, Venue, VenueKind};
use crate::orders::{
    ExecKind, ExecReport, OrderKind, OrderRequest, OrderState, OrderStatus, TimeInForce,
};

/// Reject code of an order the venue refused; the message is the venue's code and text.
pub const REJECTED: &str = "venue.rejected";
/// Reject code of an order the venue has no way to express (Alpaca post-only, …); not sent.
pub const UNSUPPORTED: &str = "venue.unsupported";
/// Reject code of an order the venue's rules refuse (an OKX `clOrdId` with a dash, …); not sent.
pub const INVALID_ORDER: &str = "venue.invalid-order";

pub use crate::orders::venue::{VenueError, VenueOrder};

/// Whether `error` says the venue is not working (and counts against the breaker).
fn is_venue_failure(error: &VenueError) -> bool {
    error.outcome_unknown()
}

impl From<SendError> for VenueError {
    fn from(error: SendError) -> Self {
        match error {
            SendError::Timeout(after) => VenueError::Timeout(after),
            SendError::Connect(reason) => {
                VenueError::Unavailable(format!("cannot connect: {reason}"))
            }
            SendError::Io(reason) => VenueError::Unavailable(reason),
            SendError::BodyTooLarge => VenueError::BadResponse {
                status: 0,
                reason: error.to_string(),
            },
            SendError::InvalidRequest(reason) => VenueError::NotSent(reason),
        }
    }
}

/// Which venue, with the request builder for its API.
#[derive(Debug)]
pub enum LiveKind {
    Okx { client: OkxClient },
    Alpaca { client: AlpacaClient },
}

/// One live venue account; see the module doc. Share it behind an `Arc`: calls take `&self`.
pub struct LiveVenue {
    name: Arc<str>,
    kind: LiveKind,
    sender: HttpSender,
    breaker: Mutex<CircuitBreaker>,
    /// Where the breaker's transitions are audited (kind `breaker`, plugin `venue:NAME`).
    audit: Option<crate::audit::AuditWriter>,
}

impl std::fmt::Debug for LiveVenue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LiveVenue")
            .field("name", &self.name)
            .field("kind", &self.kind)
            .field("sender", &self.sender)
            .field("breaker", &self.breaker)
            .finish_non_exhaustive()
    }
}

/// An order request the venue cannot take, caught before sending.
struct NotSendable {
    code: &'static str,
    message: String,
}

impl From<OrderError> for NotSendable {
    fn from(error: OrderError) -> Self {
        NotSendable {
            code: INVALID_ORDER,
            message: error.to_string(),
        }
    }
}

fn unsupported(message: &str) -> NotSendable {
    NotSendable {
        code: UNSUPPORTED,
        message: message.to_string(),
    }
}

impl LiveVenue {
    /// An OKX account at `base_url` ([`okx::BASE_URL`] for the real one); `demo` sends every
    /// request to OKX's demo trading (`x-simulated-trading: 1`).
    pub fn okx(
        credentials: OkxCredentials,
        demo: bool,
        base_url: &str,
        timeout: Duration,
    ) -> Result<Self, ConfigError> {
        let name = if demo { "okx-demo" } else { "okx" };
        let client = OkxClient::new(credentials, demo);
        Self::new(name, LiveKind::Okx { client }, base_url, timeout)
    }

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
        Self::new(name, LiveKind::Alpaca { client }, base_url, timeout)
    }

    fn new(
        name: &str,
        kind: LiveKind,
        base_url: &str,
        timeout: Duration,
    ) -> Result<Self, ConfigError> {
        Ok(LiveVenue {
            name: name.into(),
            kind,
            sender: HttpSender::new(base_url, timeout)?,
            breaker: Mutex::new(CircuitBreaker::new(BreakerConfig::default())),
            audit: None,
        })
    }

    /// Audits the breaker's transitions through `writer` (kind `breaker`, plugin
    /// `venue:NAME`, actor `host`).
    pub fn with_audit(self, writer: crate::audit::AuditWriter) -> Self {
        LiveVenue {
            audit: Some(writer),
            ..self
        }
    }

    /// Logs nothing itself; audits a breaker transition when an audit writer is set.
    fn audit_transition(&self, detail: String) {
        if let Some(w) = &self.audit {
            w.record(crate::audit::AuditRecord::breaker(
                &format!("venue:{}", self.name),
                detail,
            ));
        }
    }

    /// Replaces the breaker (default: [`BreakerConfig::default`]).
    pub fn with_breaker(self, config: BreakerConfig) -> Self {
        LiveVenue {
            breaker: Mutex::new(CircuitBreaker::new(config)),
            ..self
        }
    }

    /// `okx`, `okx-demo`, `alpaca` or `alpaca-paper`.
    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn breaker_status(&self) -> BreakerStatus {
        self.breaker().status(Instant::now())
    }

    /// Sends the order, with `order.client_id` as the venue's client order id.
    ///
    /// `Ok` is a known outcome: an `Accepted` report with the venue's order id, or a `Rejected`
    /// one (`venue.rejected` with the venue's code and message, or `venue.unsupported` /
    /// `venue.invalid-order` when nothing was sent). `Err` is an unknown one (see the module
    /// doc): reconcile with [`query`](Self::query), do not resend.
    pub async fn place(
        &self,
        order: &OrderRequest,
        now: Timestamp,
    ) -> Result<ExecReport, VenueError> {
        let request = match self.place_request(order) {
            Ok(request) => request,
            Err(refusal) => {
                tracing::info!(venue = %self.name, client_id = %order.client_id, code = refusal.code, reason = %refusal.message, "order not sent");
                let kind = ExecKind::Rejected {
                    code: refusal.code.to_string(),
                    message: refusal.message,
                };
                return Ok(ExecReport::new(order, None, kind, now));
            }
        };
        let outcome = match &self.kind {
            LiveKind::Okx { .. } => self.exchange(&request, okx_place_outcome).await,
            LiveKind::Alpaca { .. } => {
                self.exchange(&request, |r| {
                    alpaca::parse_place_response(r.status, &r.body).map_err(|e| bad(&r, e))
                })
                .await
            }
        }?;
        Ok(match outcome {
            OrderOutcome::Accepted { venue_order_id } => {
                tracing::info!(venue = %self.name, client_id = %order.client_id, %venue_order_id, "order accepted");
                ExecReport::new(order, Some(venue_order_id), ExecKind::Accepted, now)
            }
            OrderOutcome::Rejected { code, message } => {
                tracing::info!(venue = %self.name, client_id = %order.client_id, %code, %message, "order rejected");
                let kind = ExecKind::Rejected {
                    code: REJECTED.to_string(),
                    message: format!("{code}: {message}"),
                };
                ExecReport::new(order, None, kind, now)
            }
        })
    }

    /// Cancels the order: by `venue_order_id` when known, else by client id (Alpaca cancels
    /// only by its own id, so it first looks the order up).
    ///
    /// `Ok` is a `Cancelled` report: the venue took the cancel request (fills before it stand).
    /// [`VenueError::Refused`] is the venue saying no (already filled or cancelled, unknown
    /// order): query the order to learn its state.
    pub async fn cancel(
        &self,
        order: &OrderRequest,
        venue_order_id: Option<&str>,
        now: Timestamp,
    ) -> Result<ExecReport, VenueError> {
        let cancelled_id = match &self.kind {
            LiveKind::Okx { client } => {
                let target = match venue_order_id {
                    Some(id) => OrderRef::OrdId(id.to_string()),
                    None => OrderRef::ClOrdId(order.client_id.clone()),
                };
                let request = client
                    .cancel_order(&order.symbol, &target, &OkxTimestamp::now())
                    .map_err(not_sent)?;
                self.exchange(&request, okx_cancel_outcome).await?
            }
            LiveKind::Alpaca { client } => {
                let id = match venue_order_id {
                    Some(id) => id.to_string(),
                    None => match self.query(order).await? {
                        Some(found) => found.venue_order_id,
                        None => {
                            return Err(VenueError::Refused {
                                code: "404".into(),
                                message: format!("no order with client id {}", order.client_id),
                            });
                        }
                    },
                };
                let request = client.cancel_order(&id).map_err(not_sent)?;
                self.exchange(&request, |r| match r.status {
                    200..=299 => Ok(()),
                    400..=499 => Err(alpaca_refusal(&r)),
                    _ => Err(bad(&r, "unexpected status")),
                })
                .await?;
                id
            }
        };
        tracing::info!(venue = %self.name, client_id = %order.client_id, venue_order_id = %cancelled_id, "cancel accepted");
        Ok(ExecReport::new(
            order,
            Some(cancelled_id),
            ExecKind::Cancelled,
            now,
        ))
    }

    /// Looks the order up by client id. `Ok(None)` when the venue says it has no such order
    /// (OKX code 51603, Alpaca 404 with its error body), so it never arrived: only then is it
    /// safe to place it again.
    pub async fn query(&self, order: &OrderRequest) -> Result<Option<VenueOrder>, VenueError> {
        match &self.kind {
            LiveKind::Okx { client } => {
                let request = client
                    .get_order(
                        &order.symbol,
                        &OrderRef::ClOrdId(order.client_id.clone()),
                        &OkxTimestamp::now(),
                    )
                    .map_err(not_sent)?;
                self.exchange(&request, okx_query_outcome).await
            }
            LiveKind::Alpaca { client } => {
                let request = client
                    .get_order_by_client_id(&order.client_id)
                    .map_err(not_sent)?;
                self.exchange(&request, alpaca_query_outcome).await
            }
        }
    }

    fn place_request(&self, order: &OrderRequest) -> Result<SignedRequest, NotSendable> {
        match &self.kind {
            LiveKind::Okx { client } => {
                Ok(client.place_order(&okx_order(order)?, &OkxTimestamp::now())?)
            }
            LiveKind::Alpaca { client } => Ok(client.place_order(&alpaca_order(order)?)?),
        }
    }

    /// Sends `request` through the breaker and reads the answer with `interpret` (5xx never
    /// reaches it); the result decides what the breaker is told.
    async fn exchange<T>(
        &self,
        request: &SignedRequest,
        interpret: impl FnOnce(HttpResponse) -> Result<T, VenueError>,
    ) -> Result<T, VenueError> {
        let permit = self.breaker().allow(Instant::now()).map_err(|open| {
            tracing::warn!(venue = %self.name, method = request.method.as_str(), path = %request.path, retry_after_ms = open.retry_after.as_millis(), "circuit open, request not sent");
            VenueError::CircuitOpen {
                retry_after: open.retry_after,
            }
        })?;
        let result = match self.sender.send(request).await {
            Ok(response) if response.status >= 500 => {
                Err(VenueError::Unavailable(format!("HTTP {}", response.status)))
            }
            Ok(response) => interpret(response),
            Err(error) => Err(error.into()),
        };
        let mut breaker = self.breaker();
        match &result {
            Err(error) if is_venue_failure(error) => {
                let was = breaker.state();
                breaker.on_failure(permit, Instant::now());
                if breaker.state() == BreakerState::Open && was != BreakerState::Open {
                    let status = breaker.status(Instant::now());
                    tracing::warn!(venue = %self.name, %error, cool_down_ms = status.cool_down_ms, opened_count = status.opened_count, "circuit opened");
                    self.audit_transition(format!(
                        "circuit {} -> open (cool-down {} ms): {error}",
                        was.as_str(),
                        status.cool_down_ms
                    ));
                }
            }
            Err(VenueError::NotSent(_)) => breaker.release(permit),
            _ => {
                let was = breaker.state();
                breaker.on_success(permit);
                if was != BreakerState::Closed && breaker.state() == BreakerState::Closed {
                    tracing::info!(venue = %self.name, "circuit closed");
                    self.audit_transition(format!("circuit {} -> closed", was.as_str()));
                }
            }
        }
        result
    }

    fn breaker(&self) -> MutexGuard<'_, CircuitBreaker> {
        // The breaker is plain data updated in single steps; a panic elsewhere cannot leave it
        // half-changed.
        self.breaker.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// A live account as the router's [`Venue`]: every answer comes later, from the network.
impl Venue for LiveVenue {
    fn name(&self) -> &str {
        &self.name
    }

    fn kind(&self) -> VenueKind {
        VenueKind::Remote
    }

    fn place(
        self: Arc<Self>,
        order: &OrderRequest,
        now: Timestamp,
        _out: &mut Vec<ExecReport>,
    ) -> Answer {
        let order = order.clone();
        Answer::Later(Box::pin(async move {
            LiveVenue::place(&self, &order, now).await
        }))
    }

    fn cancel(
        self: Arc<Self>,
        order: &OrderState,
        now: Timestamp,
        _out: &mut Vec<ExecReport>,
    ) -> Answer {
        let (request, venue_order_id) = (order.request.clone(), order.venue_order_id.clone());
        Answer::Later(Box::pin(async move {
            LiveVenue::cancel(&self, &request, venue_order_id.as_deref(), now).await
        }))
    }

    fn query(self: Arc<Self>, order: &OrderRequest) -> Pending<Option<VenueOrder>> {
        let order = order.clone();
        Box::pin(async move { LiveVenue::query(&self, &order).await })
    }

    fn breaker(&self) -> Option<BreakerStatus> {
        Some(self.breaker_status())
    }
}

fn not_sent(error: OrderError) -> VenueError {
    VenueError::NotSent(error.to_string())
}

fn bad(response: &HttpResponse, reason: impl std::fmt::Display) -> VenueError {
    VenueError::BadResponse {
        status: response.status,
        reason: reason.to_string(),
    }
}

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
        (_, _, true) => return Err(unsupported("post-only needs a limit GTC order")),
        (OrderKind::Limit, TimeInForce::Gtc, false) => OrdType::Limit,
        (OrderKind::Limit, TimeInForce::Ioc, false) => OrdType::Ioc,
        (OrderKind::Limit, TimeInForce::Fok, false) => OrdType::Fok,
        (OrderKind::Market, TimeInForce::Fok, false) => {
            return Err(unsupported("okx has no fill-or-kill market orders"));
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

fn alpaca_order(order: &OrderRequest) -> Result<AlpacaOrder, NotSendable> {
    if order.post_only {
        return Err(unsupported("alpaca has no post-only orders"));
    }
    if order.reduce_only {
        return Err(unsupported("alpaca has no reduce-only orders"));
    }
    Ok(AlpacaOrder {
        symbol: order.symbol.to_string(),
        quantity: Quantity::Qty(order.qty),
        side: order.side,
        order_type: match order.kind {
            OrderKind::Market => alpaca::OrderType::Market,
            OrderKind::Limit => alpaca::OrderType::Limit,
        },
        time_in_force: match order.tif {
            TimeInForce::Gtc => alpaca::TimeInForce::Gtc,
            TimeInForce::Ioc => alpaca::TimeInForce::Ioc,
            TimeInForce::Fok => alpaca::TimeInForce::Fok,
        },
        limit_price: order.price,
        stop_price: None,
        client_order_id: Some(order.client_id.clone()),
    })
}

fn okx_place_outcome(response: HttpResponse) -> Result<OrderOutcome, VenueError> {
    match okx::parse_order_ack(&response.body) {
        Ok(OrderOutcome::Rejected { code, message }) if okx::is_system_error(&code) => {
            Err(VenueError::Unavailable(format!("okx {code}: {message}")))
        }
        Ok(outcome) => Ok(outcome),
        Err(error) => Err(bad(&response, error)),
    }
}

/// The cancelled order's OKX id.
fn okx_cancel_outcome(response: HttpResponse) -> Result<String, VenueError> {
    match okx_place_outcome(response)? {
        OrderOutcome::Accepted { venue_order_id } => Ok(venue_order_id),
        OrderOutcome::Rejected { code, message } => Err(VenueError::Refused { code, message }),
    }
}

fn okx_query_outcome(response: HttpResponse) -> Result<Option<VenueOrder>, VenueError> {
    let orders = match okx::parse_orders(&response.body) {
        Ok(orders) => orders,
        Err(ResponseError::Venue { code, .. }) if code == okx::ORDER_NOT_FOUND => return Ok(None),
        Err(ResponseError::Venue { code, message }) if okx::is_system_error(&code) => {
            return Err(VenueError::Unavailable(format!("okx {code}: {message}")));
        }
        Err(ResponseError::Venue { code, message }) => {
            return Err(VenueError::Refused { code, message });
        }
        Err(error) => return Err(bad(&response, error)),
    };
    let [order] = orders.as_slice() else {
        return Err(bad(
            &response,
            format!("{} orders for one client id", orders.len()),
        ));
    };
    let status = okx_status(&order.state, order.acc_fill_sz)
        .ok_or_else(|| bad(&response, format!("order state {:?}", order.state)))?;
    Ok(Some(VenueOrder {
        venue_order_id: order.ord_id.clone(),
        client_id: order.cl_ord_id.clone(),
        status,
        filled_qty: order.acc_fill_sz,
        avg_price: order.avg_px,
        venue_state: order.state.clone(),
    }))
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

fn alpaca_refusal(response: &HttpResponse) -> VenueError {
    match alpaca::parse_error(&response.body) {
        Ok(error) => VenueError::Refused {
            code: error.code,
            message: error.message,
        },
        Err(error) => bad(response, error),
    }
}

fn alpaca_query_outcome(response: HttpResponse) -> Result<Option<VenueOrder>, VenueError> {
    match response.status {
        200..=299 => {}
        // Only Alpaca's own "not found" counts: a 404 page from something in between says
        // nothing about the order.
        404 => {
            return match alpaca::parse_error(&response.body) {
                Ok(_) => Ok(None),
                Err(error) => Err(bad(&response, error)),
            };
        }
        400..=499 => return Err(alpaca_refusal(&response)),
        _ => return Err(bad(&response, "unexpected status")),
    }
    let order = alpaca::parse_order(&response.body).map_err(|e| bad(&response, e))?;
    let status = alpaca_status(&order.status, order.filled_qty)
        .ok_or_else(|| bad(&response, format!("order status {:?}", order.status)))?;
    Ok(Some(VenueOrder {
        venue_order_id: order.id,
        client_id: order.client_order_id,
        status,
        filled_qty: order.filled_qty,
        avg_price: order.filled_avg_price,
        venue_state: order.status,
    }))
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
mod tests {
    use std::str::FromStr;
    use std::sync::Arc;

    use super::*;
    use crate::market::types;
    use crate::venues::credentials::Secret;
    use crate::venues::http::loopback::{Recorded, Reply, Server};

    const TIMEOUT: Duration = Duration::from_millis(200);
    const NOW: Timestamp = 1_747_000_000_000_000_000;
    const OKX_SECRET: &str = "okx-signing-secret-value";
    const OKX_PASSPHRASE: &str = "okx-passphrase-value";
    const ALPACA_SECRET: &str = "alpaca-secret-key-value";
    const SECRETS: [&str; 3] = [OKX_SECRET, OKX_PASSPHRASE, ALPACA_SECRET];
    const OKX_ACK_ITEM: &str = include_str!("samples/okx_place_order_item.json");
    const OKX_ORDERS: &str = include_str!("samples/okx_orders_pending.json");
    const ALPACA_ORDER: &str = include_str!("samples/alpaca_order.json");
    const ALPACA_ID: &str = "61e69015-8549-4bfd-b9c3-01e75843f47d";

    fn d(text: &str) -> Decimal {
        Decimal::from_str(text).unwrap()
    }

    fn okx_creds() -> OkxCredentials {
        OkxCredentials {
            api_key: "okx-api-key".into(),
            secret: Secret::new(OKX_SECRET),
            passphrase: Secret::new(OKX_PASSPHRASE),
        }
    }

    fn alpaca_creds() -> AlpacaCredentials {
        AlpacaCredentials {
            key_id: "PKTESTKEYID".into(),
            secret_key: Secret::new(ALPACA_SECRET),
        }
    }

    fn okx(server: &Server, demo: bool) -> LiveVenue {
        LiveVenue::okx(okx_creds(), demo, &server.base_url, TIMEOUT).unwrap()
    }

    fn alpaca(server: &Server) -> LiveVenue {
        LiveVenue::alpaca(alpaca_creds(), AlpacaEnv::Paper, &server.base_url, TIMEOUT).unwrap()
    }

    fn limit(symbol: &str, client_id: &str) -> OrderRequest {
        OrderRequest {
            client_id: client_id.into(),
            agent: Arc::from("trader"),
            symbol: Arc::from(symbol),
            side: types::Side::Buy,
            kind: OrderKind::Limit,
            price: Some(d("103500.5")),
            qty: d("0.10"),
            tif: TimeInForce::Gtc,
            post_only: false,
            reduce_only: false,
        }
    }

    fn okx_envelope(code: &str, msg: &str, items: &str) -> String {
        format!(r#"{{"code":"{code}","msg":"{msg}","data":[{items}],"inTime":"1","outTime":"2"}}"#)
    }

    fn json(text: &str) -> serde_json::Value {
        serde_json::from_str(text).unwrap()
    }

    /// The request carries the OKX key headers and a signature over exactly what was sent.
    fn assert_okx_signed(request: &Recorded, demo: bool) {
        assert_eq!(request.header("ok-access-key"), Some("okx-api-key"));
        assert_eq!(request.header("ok-access-passphrase"), Some(OKX_PASSPHRASE));
        let ts = request.header("ok-access-timestamp").unwrap();
        assert_eq!(ts.len(), "2020-12-08T09:08:57.715Z".len());
        let prehash = format!("{ts}{}{}{}", request.method, request.target, request.body);
        assert_eq!(
            request.header("ok-access-sign"),
            Some(okx::sign(OKX_SECRET, &prehash).as_str())
        );
        let simulated = request.header("x-simulated-trading");
        assert_eq!(simulated, demo.then_some("1"));
    }

    fn assert_alpaca_keys(request: &Recorded) {
        assert_eq!(request.header("apca-api-key-id"), Some("PKTESTKEYID"));
        assert_eq!(request.header("apca-api-secret-key"), Some(ALPACA_SECRET));
    }

    fn rejected(code: &str, message: &str) -> ExecKind {
        ExecKind::Rejected {
            code: code.into(),
            message: message.into(),
        }
    }

    // ---- OKX ------------------------------------------------------------------------------

    #[tokio::test]
    async fn okx_place_accepted_sends_a_signed_demo_order() {
        let ack = okx_envelope("0", "", OKX_ACK_ITEM);
        let server = Server::start(move |_, _| Reply::Json(200, ack.clone())).await;
        let venue = okx(&server, true);
        let order = OrderRequest {
            post_only: true,
            reduce_only: true,
            ..limit("BTC-USDT-SWAP", "colony42")
        };
        let report = venue.place(&order, NOW).await.unwrap();
        assert_eq!(
            report,
            ExecReport {
                agent: Arc::from("trader"),
                client_id: "colony42".into(),
                symbol: Arc::from("BTC-USDT-SWAP"),
                side: types::Side::Buy,
                venue_order_id: Some("12345678901234567890".into()),
                kind: ExecKind::Accepted,
                ts: NOW,
            }
        );
        let [request] = server.requests().try_into().unwrap();
        assert_eq!(
            (request.method.as_str(), request.target.as_str()),
            ("POST", "/api/v5/trade/order")
        );
        assert_okx_signed(&request, true);
        assert_eq!(
            json(&request.body),
            serde_json::json!({"instId": "BTC-USDT-SWAP", "tdMode": "cross", "clOrdId": "colony42",
                "side": "buy", "ordType": "post_only", "px": "103500.5", "sz": "0.10",
                "reduceOnly": true})
        );
        assert_eq!(venue.name(), "okx-demo");
        assert_eq!(venue.breaker_status().state, BreakerState::Closed);
    }

    #[tokio::test]
    async fn okx_spot_market_orders_are_cash_and_sized_in_base_currency() {
        let ack = okx_envelope("0", "", OKX_ACK_ITEM);
        let server = Server::start(move |_, _| Reply::Json(200, ack.clone())).await;
        let order = OrderRequest {
            kind: OrderKind::Market,
            price: None,
            tif: TimeInForce::Ioc,
            side: types::Side::Sell,
            ..limit("BTC-USDT", "m1")
        };
        okx(&server, false).place(&order, NOW).await.unwrap();
        let [request] = server.requests().try_into().unwrap();
        assert_okx_signed(&request, false);
        assert_eq!(
            json(&request.body),
            serde_json::json!({"instId": "BTC-USDT", "tdMode": "cash", "clOrdId": "m1",
                "side": "sell", "ordType": "market", "sz": "0.10", "tgtCcy": "base_ccy"})
        );
    }

    #[tokio::test]
    async fn okx_place_rejected_is_a_known_outcome_and_not_a_breaker_failure() {
        // The documented shape of a failed place: code "1", the reason in data[0].
        let body = okx_envelope(
            "1",
            "All operations failed",
            r#"{"ordId":"","clOrdId":"colony42","tag":"","ts":"1695190491421","sCode":"51008","sMsg":"Order failed. Insufficient USDT balance in account."}"#,
        );
        let server = Server::start(move |_, _| Reply::Json(200, body.clone())).await;
        let venue = okx(&server, false).with_breaker(BreakerConfig {
            failure_threshold: 1,
            ..BreakerConfig::default()
        });
        let report = venue
            .place(&limit("BTC-USDT", "colony42"), NOW)
            .await
            .unwrap();
        assert_eq!(
            report.kind,
            rejected(
                REJECTED,
                "51008: Order failed. Insufficient USDT balance in account."
            )
        );
        assert_eq!(report.venue_order_id, None);
        assert!(report.is_terminal());
        assert!(json(&server.requests()[0].body)["clOrdId"] == "colony42");
        assert_eq!(venue.breaker_status().state, BreakerState::Closed);
    }

    #[tokio::test]
    async fn okx_system_codes_leave_the_outcome_unknown() {
        let answers = [
            okx_envelope("50001", "Service temporarily unavailable", ""),
            okx_envelope(
                "1",
                "",
                r#"{"ordId":"","clOrdId":"a1","sCode":"50026","sMsg":"System error"}"#,
            ),
        ];
        let server = Server::start(move |n, _| Reply::Json(200, answers[n % 2].clone())).await;
        let venue = okx(&server, false);
        for expected in [
            "okx 50001: Service temporarily unavailable",
            "okx 50026: System error",
        ] {
            let result = venue.place(&limit("BTC-USDT", "a1"), NOW).await;
            assert_eq!(result, Err(VenueError::Unavailable(expected.into())));
            assert!(result.unwrap_err().outcome_unknown());
        }
        assert_eq!(venue.breaker_status().consecutive_failures, 2);
    }

    #[tokio::test]
    async fn okx_place_times_out_at_the_configured_timeout() {
        let server = Server::start(|_, _| Reply::Hang).await;
        let venue = okx(&server, false);
        let started = Instant::now();
        let result = venue.place(&limit("BTC-USDT", "slow1"), NOW).await;
        let elapsed = started.elapsed();
        assert_eq!(result, Err(VenueError::Timeout(TIMEOUT)));
        assert!(elapsed >= TIMEOUT && elapsed < TIMEOUT * 3, "{elapsed:?}");
        // The request did arrive: exactly the case where resending would duplicate.
        assert!(server.requests()[0].body.contains("\"clOrdId\":\"slow1\""));
        assert_eq!(venue.breaker_status().consecutive_failures, 1);
    }

    #[tokio::test]
    async fn okx_orders_it_cannot_take_are_rejected_without_sending() {
        let server = Server::start(|_, _| Reply::Json(200, String::new())).await;
        let venue = okx(&server, false);
        let dash = venue
            .place(&limit("BTC-USDT", "has-dash"), NOW)
            .await
            .unwrap();
        assert!(
            matches!(&dash.kind, ExecKind::Rejected { code, message } if code == INVALID_ORDER && message.starts_with("clOrdId:")),
            "{dash:?}"
        );
        let fok_market = OrderRequest {
            kind: OrderKind::Market,
            price: None,
            tif: TimeInForce::Fok,
            ..limit("BTC-USDT", "fok1")
        };
        let report = venue.place(&fok_market, NOW).await.unwrap();
        assert_eq!(
            report.kind,
            rejected(UNSUPPORTED, "okx has no fill-or-kill market orders")
        );
        assert_eq!(server.count(), 0);
    }

    #[tokio::test]
    async fn okx_query_found_and_not_found() {
        let found = OKX_ORDERS
            .replace("\"accFillSz\": \"0\"", "\"accFillSz\": \"0.04\"")
            .replace("\"avgPx\": \"0\"", "\"avgPx\": \"103400.2\"")
            .replace("\"state\": \"live\"", "\"state\": \"partially_filled\"");
        assert_ne!(found, OKX_ORDERS);
        let missing = okx_envelope("51603", "Order does not exist", "");
        let server = Server::start(move |n, _| match n {
            0 => Reply::Json(200, found.clone()),
            _ => Reply::Json(200, missing.clone()),
        })
        .await;
        let venue = okx(&server, true);
        let order = limit("BTC-USDT-SWAP", "clientorder1");
        assert_eq!(
            venue.query(&order).await,
            Ok(Some(VenueOrder {
                venue_order_id: "1234567890123456789".into(),
                client_id: "client-order-1".into(),
                status: OrderStatus::PartiallyFilled,
                filled_qty: d("0.04"),
                avg_price: Some(d("103400.2")),
                venue_state: "partially_filled".into(),
            }))
        );
        assert_eq!(venue.query(&order).await, Ok(None));
        let requests = server.requests();
        for request in &requests {
            assert_eq!(
                (
                    request.method.as_str(),
                    request.target.as_str(),
                    request.body.as_str()
                ),
                (
                    "GET",
                    "/api/v5/trade/order?instId=BTC-USDT-SWAP&clOrdId=clientorder1",
                    ""
                )
            );
            assert_okx_signed(request, true);
        }
        assert_eq!(requests.len(), 2);
    }

    #[tokio::test]
    async fn okx_query_errors_other_than_not_found_are_not_none() {
        let answers = [
            okx_envelope("50113", "Invalid Sign", ""),
            OKX_ORDERS.replace("\"state\": \"live\"", "\"state\": \"teleported\""),
        ];
        let server = Server::start(move |n, _| Reply::Json(200, answers[n].clone())).await;
        let venue = okx(&server, false);
        let order = limit("BTC-USDT-SWAP", "q1");
        assert_eq!(
            venue.query(&order).await,
            Err(VenueError::Refused {
                code: "50113".into(),
                message: "Invalid Sign".into()
            })
        );
        assert!(matches!(
            venue.query(&order).await,
            Err(VenueError::BadResponse { status: 200, .. })
        ));
    }

    #[tokio::test]
    async fn okx_cancel_by_client_id_or_venue_id() {
        let ack = okx_envelope(
            "0",
            "",
            r#"{"clOrdId":"c1","ordId":"590908157585625111","sCode":"0","sMsg":""}"#,
        );
        let refused = okx_envelope(
            "1",
            "",
            r#"{"clOrdId":"c1","ordId":"590908157585625111","sCode":"51400","sMsg":"Cancellation failed as the order has been filled, canceled or does not exist"}"#,
        );
        let server = Server::start(move |n, _| match n {
            0 | 1 => Reply::Json(200, ack.clone()),
            _ => Reply::Json(200, refused.clone()),
        })
        .await;
        let venue = okx(&server, false);
        let order = limit("BTC-USDT", "c1");
        let report = venue.cancel(&order, None, NOW).await.unwrap();
        assert_eq!(report.kind, ExecKind::Cancelled);
        assert_eq!(report.venue_order_id.as_deref(), Some("590908157585625111"));
        venue
            .cancel(&order, Some("590908157585625111"), NOW)
            .await
            .unwrap();
        let result = venue.cancel(&order, None, NOW).await;
        assert!(
            matches!(&result, Err(VenueError::Refused { code, .. }) if code == "51400"),
            "{result:?}"
        );
        assert!(!result.unwrap_err().outcome_unknown());

        let requests = server.requests();
        assert_eq!(requests[0].target, "/api/v5/trade/cancel-order");
        assert_eq!(
            json(&requests[0].body),
            serde_json::json!({"instId": "BTC-USDT", "clOrdId": "c1"})
        );
        assert_eq!(
            json(&requests[1].body),
            serde_json::json!({"instId": "BTC-USDT", "ordId": "590908157585625111"})
        );
        for request in &requests {
            assert_eq!(request.method, "POST");
            assert_okx_signed(request, false);
        }
    }

    // ---- Alpaca ---------------------------------------------------------------------------

    #[tokio::test]
    async fn alpaca_place_accepted() {
        let server = Server::start(|_, _| Reply::Json(200, ALPACA_ORDER.into())).await;
        let venue = alpaca(&server);
        let order = OrderRequest {
            price: Some(d("187.30")),
            qty: d("15"),
            tif: TimeInForce::Ioc,
            ..limit("AAPL", "colony-trader-0001")
        };
        let report = venue.place(&order, NOW).await.unwrap();
        assert_eq!(
            (report.kind, report.venue_order_id.as_deref()),
            (ExecKind::Accepted, Some(ALPACA_ID))
        );
        let [request] = server.requests().try_into().unwrap();
        assert_eq!(
            (request.method.as_str(), request.target.as_str()),
            ("POST", "/v2/orders")
        );
        assert_alpaca_keys(&request);
        assert_eq!(
            json(&request.body),
            serde_json::json!({"symbol": "AAPL", "qty": "15", "side": "buy", "type": "limit",
                "time_in_force": "ioc", "limit_price": "187.30",
                "client_order_id": "colony-trader-0001"})
        );
        assert_eq!(venue.name(), "alpaca-paper");
    }

    #[tokio::test]
    async fn alpaca_place_rejected_403_and_422() {
        let server = Server::start(|n, _| match n {
            0 => Reply::Json(
                403,
                r#"{"code":40310000,"message":"insufficient buying power"}"#.into(),
            ),
            _ => Reply::Json(
                422,
                r#"{"code":40010001,"message":"qty must be > 0"}"#.into(),
            ),
        })
        .await;
        let venue = alpaca(&server);
        let order = limit("AAPL", "r1");
        let first = venue.place(&order, NOW).await.unwrap();
        assert_eq!(
            first.kind,
            rejected(REJECTED, "40310000: insufficient buying power")
        );
        let second = venue.place(&order, NOW).await.unwrap();
        assert_eq!(second.kind, rejected(REJECTED, "40010001: qty must be > 0"));
        for request in server.requests() {
            assert_alpaca_keys(&request);
            assert!(request.body.contains("\"client_order_id\":\"r1\""));
        }
        assert_eq!(venue.breaker_status().consecutive_failures, 0);
    }

    #[tokio::test]
    async fn alpaca_place_times_out() {
        let server = Server::start(|_, _| Reply::Hang).await;
        let venue = alpaca(&server);
        let started = Instant::now();
        let result = venue.place(&limit("AAPL", "slow"), NOW).await;
        assert_eq!(result, Err(VenueError::Timeout(TIMEOUT)));
        assert!(started.elapsed() < TIMEOUT * 3);
        assert_eq!(server.count(), 1);
    }

    #[tokio::test]
    async fn alpaca_unsupported_flags_are_rejected_before_sending() {
        let server = Server::start(|_, _| Reply::Json(200, ALPACA_ORDER.into())).await;
        let venue = alpaca(&server);
        let post_only = OrderRequest {
            post_only: true,
            ..limit("AAPL", "p1")
        };
        let reduce_only = OrderRequest {
            reduce_only: true,
            ..limit("AAPL", "p2")
        };
        assert_eq!(
            venue.place(&post_only, NOW).await.unwrap().kind,
            rejected(UNSUPPORTED, "alpaca has no post-only orders")
        );
        assert_eq!(
            venue.place(&reduce_only, NOW).await.unwrap().kind,
            rejected(UNSUPPORTED, "alpaca has no reduce-only orders")
        );
        assert_eq!(server.count(), 0);
    }

    #[tokio::test]
    async fn alpaca_query_found_not_found_and_foreign_404() {
        let server = Server::start(|n, _| match n {
            0 => Reply::Json(200, ALPACA_ORDER.into()),
            1 => Reply::Json(
                404,
                r#"{"code":40410000,"message":"order not found for colony-trader-0001"}"#.into(),
            ),
            _ => Reply::Json(404, "<html>not found</html>".into()),
        })
        .await;
        let venue = alpaca(&server);
        let order = limit("AAPL", "colony-trader-0001");
        assert_eq!(
            venue.query(&order).await,
            Ok(Some(VenueOrder {
                venue_order_id: ALPACA_ID.into(),
                client_id: "colony-trader-0001".into(),
                status: OrderStatus::PartiallyFilled,
                filled_qty: d("5"),
                avg_price: Some(d("187.25")),
                venue_state: "partially_filled".into(),
            }))
        );
        assert_eq!(venue.query(&order).await, Ok(None));
        assert!(matches!(
            venue.query(&order).await,
            Err(VenueError::BadResponse { status: 404, .. })
        ));
        for request in server.requests() {
            assert_eq!(
                (request.method.as_str(), request.target.as_str()),
                (
                    "GET",
                    "/v2/orders:by_client_order_id?client_order_id=colony-trader-0001"
                )
            );
            assert_alpaca_keys(&request);
        }
    }

    #[tokio::test]
    async fn alpaca_cancel_by_venue_id_or_after_a_lookup() {
        let server = Server::start(|n, request| match (n, request.method.as_str()) {
            (_, "GET") => Reply::Json(200, ALPACA_ORDER.into()),
            (0 | 2, "DELETE") => Reply::Raw(b"HTTP/1.1 204 No Content\r\n\r\n".to_vec()),
            _ => Reply::Json(
                422,
                r#"{"code":42210000,"message":"order is not cancelable"}"#.into(),
            ),
        })
        .await;
        let venue = alpaca(&server);
        let order = limit("AAPL", "colony-trader-0001");
        let report = venue.cancel(&order, Some(ALPACA_ID), NOW).await.unwrap();
        assert_eq!(
            (report.kind, report.venue_order_id.as_deref()),
            (ExecKind::Cancelled, Some(ALPACA_ID))
        );
        let report = venue.cancel(&order, None, NOW).await.unwrap();
        assert_eq!(report.venue_order_id.as_deref(), Some(ALPACA_ID));
        assert_eq!(
            venue.cancel(&order, Some(ALPACA_ID), NOW).await,
            Err(VenueError::Refused {
                code: "42210000".into(),
                message: "order is not cancelable".into()
            })
        );
        let seen: Vec<(String, String)> = server
            .requests()
            .into_iter()
            .map(|r| (r.method, r.target))
            .collect();
        let delete = ("DELETE".to_string(), format!("/v2/orders/{ALPACA_ID}"));
        let lookup = (
            "GET".to_string(),
            "/v2/orders:by_client_order_id?client_order_id=colony-trader-0001".to_string(),
        );
        assert_eq!(seen, [delete.clone(), lookup, delete.clone(), delete]);
    }

    // ---- breaker --------------------------------------------------------------------------

    #[tokio::test]
    async fn server_errors_open_the_breaker_which_then_sends_nothing_until_a_trial_succeeds() {
        let ack = okx_envelope("0", "", OKX_ACK_ITEM);
        let server = Server::start(move |n, _| match n {
            0..=2 => Reply::Json(500, r#"{"code":"50026","msg":"System error"}"#.into()),
            _ => Reply::Json(200, ack.clone()),
        })
        .await;
        let cool_down = Duration::from_millis(150);
        let dir = tempfile::tempdir().unwrap();
        let audit = crate::audit::AuditStore::open_sqlite(&dir.path().join("audit.db"))
            .await
            .unwrap();
        let venue = okx(&server, false)
            .with_breaker(BreakerConfig {
                failure_threshold: 3,
                cool_down,
                max_cool_down: Duration::from_secs(1),
            })
            .with_audit(audit.writer());
        let order = limit("BTC-USDT", "b1");
        for _ in 0..3 {
            assert_eq!(
                venue.place(&order, NOW).await,
                Err(VenueError::Unavailable("HTTP 500".into()))
            );
        }
        let status = venue.breaker_status();
        assert_eq!((status.state, status.opened_count), (BreakerState::Open, 1));

        // Open: refused at once, and nothing reaches the server.
        for _ in 0..2 {
            let result = venue.place(&order, NOW).await;
            assert!(
                matches!(result, Err(VenueError::CircuitOpen { retry_after }) if retry_after <= cool_down),
                "{result:?}"
            );
        }
        assert!(matches!(
            venue.query(&order).await,
            Err(VenueError::CircuitOpen { .. })
        ));
        assert_eq!(server.count(), 3);
        assert_eq!(venue.breaker_status().rejected_count, 3);

        // The cool-down is time passing, not an event to await.
        tokio::time::sleep(cool_down).await;
        assert_eq!(venue.breaker_status().state, BreakerState::HalfOpen);
        let report = venue.place(&order, NOW).await.unwrap();
        assert_eq!(report.kind, ExecKind::Accepted);
        assert_eq!(server.count(), 4);
        let status = venue.breaker_status();
        assert_eq!(
            (status.state, status.consecutive_failures),
            (BreakerState::Closed, 0)
        );

        // Both transitions are audited.
        audit.writer().flush().await.unwrap();
        let records = audit
            .query(&crate::audit::AuditFilter {
                kind: Some(crate::audit::AuditKind::Other("breaker".into())),
                ..Default::default()
            })
            .await
            .unwrap();
        let details: Vec<(&str, &str)> = records
            .iter()
            .rev()
            .map(|e| (e.plugin.as_str(), e.detail.as_str()))
            .collect();
        assert_eq!(details.len(), 2, "{details:?}");
        assert_eq!(details[0].0, "venue:okx");
        assert!(
            details[0]
                .1
                .starts_with("circuit closed -> open (cool-down 150 ms)"),
            "{details:?}"
        );
        assert_eq!(details[1].1, "circuit half-open -> closed");
    }

    #[tokio::test]
    async fn a_refused_connection_counts_against_the_breaker() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let base_url = format!("http://{}", listener.local_addr().unwrap());
        drop(listener);
        let venue = LiveVenue::alpaca(alpaca_creds(), AlpacaEnv::Live, &base_url, TIMEOUT)
            .unwrap()
            .with_breaker(BreakerConfig {
                failure_threshold: 1,
                ..BreakerConfig::default()
            });
        let result = venue.query(&limit("AAPL", "x")).await;
        assert!(
            matches!(&result, Err(VenueError::Unavailable(reason)) if reason.starts_with("cannot connect")),
            "{result:?}"
        );
        assert_eq!(venue.breaker_status().state, BreakerState::Open);
    }

    // ---- secrets --------------------------------------------------------------------------

    #[derive(Clone, Default)]
    struct Captured(Arc<std::sync::Mutex<Vec<u8>>>);

    impl std::io::Write for Captured {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[tokio::test]
    async fn secrets_appear_in_no_log_line_debug_output_or_error() {
        let captured = Captured::default();
        let writer = captured.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_max_level(tracing::Level::TRACE)
            .with_ansi(false)
            .with_writer(move || writer.clone())
            .finish();
        // tracing caches each callsite's interest globally; while a single dispatcher is
        // registered, a callsite first hit on another test's thread (no subscriber there) is
        // cached as "never", and this thread's events from it would be lost. A second
        // registered dispatcher makes tracing consult every dispatcher instead.
        let _second = tracing::Dispatch::new(tracing::subscriber::NoSubscriber::default());
        let _guard = tracing::subscriber::set_default(subscriber);

        let ack = okx_envelope("0", "", OKX_ACK_ITEM);
        let okx_server = Server::start(move |n, _| match n {
            0 => Reply::Json(200, ack.clone()),
            1 => Reply::Json(500, "down".into()),
            _ => Reply::Hang,
        })
        .await;
        let okx_venue = okx(&okx_server, true);
        let order = limit("BTC-USDT", "s1");
        let mut outputs = vec![format!("{okx_venue:?}"), format!("{okx_venue:#?}")];
        outputs.push(format!("{:?}", okx_venue.place(&order, NOW).await));
        outputs.push(format!("{:?}", okx_venue.place(&order, NOW).await));
        let timed_out = okx_venue.place(&order, NOW).await.unwrap_err();
        outputs.push(format!("{timed_out} {timed_out:?}"));

        let alpaca_server = Server::start(|n, _| match n {
            0 => Reply::Json(403, r#"{"code":40310000,"message":"no"}"#.into()),
            _ => Reply::Json(200, ALPACA_ORDER.into()),
        })
        .await;
        let alpaca_venue = alpaca(&alpaca_server);
        outputs.push(format!("{alpaca_venue:?}"));
        outputs.push(format!(
            "{:?}",
            alpaca_venue.place(&limit("AAPL", "s2"), NOW).await
        ));
        outputs.push(format!(
            "{:?}",
            alpaca_venue.query(&limit("AAPL", "s2")).await
        ));
        outputs.push(format!("{:?}", okx_venue.breaker_status()));
        let request = match &okx_venue.kind {
            LiveKind::Okx { client } => client
                .place_order(&okx_order(&order).ok().unwrap(), &OkxTimestamp::now())
                .unwrap(),
            LiveKind::Alpaca { .. } => unreachable!(),
        };
        let signature = request.header("OK-ACCESS-SIGN").unwrap().to_string();
        outputs.push(format!("{request:?}"));

        let logs = String::from_utf8(captured.0.lock().unwrap().clone()).unwrap();
        // The log did record the exchanges, by method, path and status.
        assert!(
            logs.contains("/api/v5/trade/order") && logs.contains("status=200"),
            "{logs}"
        );
        assert!(
            logs.contains("circuit") || logs.contains("venue request failed"),
            "{logs}"
        );
        assert!(
            logs.contains("/v2/orders") && logs.contains("status=403"),
            "{logs}"
        );
        outputs.push(logs);
        for output in &outputs {
            for secret in SECRETS {
                assert!(!output.contains(secret), "{secret} leaked in {output}");
            }
        }
        // The request's Debug shows the (per-request) signature but never the passphrase.
        assert!(outputs.iter().any(|o| o.contains(&signature)));
    }

    // ---- mapping tables -------------------------------------------------------------------

    #[test]
    fn okx_trade_modes() {
        for (inst_id, mode) in [
            ("BTC-USDT", TradeMode::Cash),
            ("ETH-BTC", TradeMode::Cash),
            ("BTC-USDT-SWAP", TradeMode::Cross),
            ("BTC-USD-250328", TradeMode::Cross),
            ("BTC-USD-250328-100000-C", TradeMode::Cross),
        ] {
            assert_eq!(okx_trade_mode(inst_id), mode, "{inst_id}");
        }
    }

    #[test]
    fn okx_order_types() {
        use OrderKind::{Limit, Market};
        use TimeInForce::{Fok, Gtc, Ioc};
        let cases = [
            (Limit, Gtc, false, Some(OrdType::Limit)),
            (Limit, Ioc, false, Some(OrdType::Ioc)),
            (Limit, Fok, false, Some(OrdType::Fok)),
            (Limit, Gtc, true, Some(OrdType::PostOnly)),
            (Limit, Ioc, true, None),
            (Market, Gtc, false, Some(OrdType::Market)),
            (Market, Ioc, false, Some(OrdType::Market)),
            (Market, Fok, false, None),
            (Market, Gtc, true, None),
        ];
        for (kind, tif, post_only, expected) in cases {
            let order = OrderRequest {
                kind,
                tif,
                post_only,
                ..limit("BTC-USDT-SWAP", "t1")
            };
            let mapped = okx_order(&order);
            assert_eq!(
                mapped.as_ref().ok().map(|o| o.ord_type),
                expected,
                "{kind:?} {tif:?} {post_only}"
            );
            if let Err(refusal) = mapped {
                assert_eq!(refusal.code, UNSUPPORTED);
            }
        }
    }

    #[test]
    fn venue_states_map_to_order_statuses() {
        let zero = Decimal::ZERO;
        let some = d("1");
        let okx_cases = [
            ("live", zero, Some(OrderStatus::Accepted)),
            ("live", some, Some(OrderStatus::PartiallyFilled)),
            ("partially_filled", some, Some(OrderStatus::PartiallyFilled)),
            ("filled", some, Some(OrderStatus::Filled)),
            ("canceled", some, Some(OrderStatus::Cancelled)),
            ("mmp_canceled", zero, Some(OrderStatus::Cancelled)),
            ("", zero, None),
        ];
        for (state, filled, expected) in okx_cases {
            assert_eq!(okx_status(state, filled), expected, "okx {state}");
        }
        let alpaca_cases = [
            ("new", zero, Some(OrderStatus::Accepted)),
            ("pending_new", zero, Some(OrderStatus::Accepted)),
            ("pending_cancel", some, Some(OrderStatus::PartiallyFilled)),
            ("partially_filled", some, Some(OrderStatus::PartiallyFilled)),
            ("filled", some, Some(OrderStatus::Filled)),
            ("canceled", zero, Some(OrderStatus::Cancelled)),
            ("replaced", zero, Some(OrderStatus::Cancelled)),
            ("expired", zero, Some(OrderStatus::Expired)),
            ("rejected", zero, Some(OrderStatus::Rejected)),
            ("Filled", some, None),
        ];
        for (state, filled, expected) in alpaca_cases {
            assert_eq!(alpaca_status(state, filled), expected, "alpaca {state}");
        }
    }
}
