//! A live venue account: [`LiveVenue`] places, cancels and looks up orders over HTTP, behind a
//! circuit breaker, and answers in the router's terms ([`ExecReport`],
//! [`OrderStatus`](colony_orders::OrderStatus)). What differs between venues is an [`Adapter`]:
//! the requests it builds and how it reads the answers, without I/O
//! ([`OkxAdapter`](super::okx::OkxAdapter), [`AlpacaAdapter`](super::alpaca::AlpacaAdapter)).
//! Everything else is here, once: the HTTP exchange and its timeout, the breaker, the error
//! mapping, the reports and their log lines, and looking an order up by client id before
//! cancelling it at a venue that cancels only by its own id.
//!
//! **Architecture Invariant:** this module knows no particular venue; a venue's name, request
//! format and reading of answers come from its adapter.
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
//! What counts against the breaker: timeouts, connection errors, HTTP 5xx, answers that are not
//! what the venue documents, and the codes an adapter reads as "could not process" (OKX's
//! [`SYSTEM_ERROR_CODES`](super::okx::client::SYSTEM_ERROR_CODES)). Refusals (insufficient
//! balance, unknown order, rate limits) are the venue working.
//!
//! The `now` passed in is only the time stamped on the reports; a venue that signs its requests
//! with a clock (OKX) reads the wall clock itself.

use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use super::breaker::{BreakerConfig, BreakerState, BreakerStatus, CircuitBreaker};
use super::http::{ConfigError, HttpResponse, HttpSender, SendError};
use super::{MAX_INSTRUMENTS_BYTES, MAX_RESPONSE_BYTES, OrderError, OrderOutcome, SignedRequest};
use colony_market::types::Timestamp;
use colony_orders::venue::{Answer, Pending, Venue, VenueKind};
use colony_orders::{ExecKind, ExecReport, OrderRequest, OrderState};

/// Reject code of an order the venue refused; the message is the venue's code and text.
pub(crate) const REJECTED: &str = "venue.rejected";
/// Reject code of an order the venue has no way to express (Alpaca post-only, …); not sent.
pub(crate) const UNSUPPORTED: &str = "venue.unsupported";
/// Reject code of an order the venue's rules refuse (an OKX `clOrdId` with a dash, …); not sent.
pub(crate) const INVALID_ORDER: &str = "venue.invalid-order";

pub use colony_orders::venue::{VenueError, VenueOrder};

/// One venue's side of a [`LiveVenue`]: the requests it builds from the router's orders and how
/// it reads the venue's answers, with no I/O. The parsers never see a 5xx (that is
/// [`VenueError::Unavailable`] before them); what they return decides what the breaker is told
/// (see [`VenueError::outcome_unknown`]).
pub trait Adapter: std::fmt::Debug + Send + Sync + 'static {
    /// Whether the venue cancels by client id. If not, cancelling an order whose venue id is not
    /// known looks it up by client id first.
    const CANCELS_BY_CLIENT_ID: bool;

    /// The request that places `order` with `order.client_id` as the venue's client order id,
    /// or why the venue cannot take it (nothing is sent then).
    fn place_request(&self, order: &OrderRequest) -> Result<SignedRequest, NotSendable>;

    /// The venue's answer to a place request: accepted or refused by the venue.
    fn place_outcome(response: &HttpResponse) -> Result<OrderOutcome, VenueError>;

    /// The request that cancels `order`.
    fn cancel_request(
        &self,
        order: &OrderRequest,
        by: CancelBy<'_>,
    ) -> Result<SignedRequest, OrderError>;

    /// The venue's answer to a cancel request: `Ok` when it took the request, with the cancelled
    /// order's venue id if the answer names it; [`VenueError::Refused`] when it said no.
    fn cancel_outcome(response: &HttpResponse) -> Result<Option<String>, VenueError>;

    /// The request that looks `order` up by client id.
    fn query_request(&self, order: &OrderRequest) -> Result<SignedRequest, OrderError>;

    /// The venue's answer to a query: `Ok(None)` only when the venue says it has no such order.
    fn query_outcome(response: &HttpResponse) -> Result<Option<VenueOrder>, VenueError>;

    /// The requests that list the instruments the venue trades, one per kind of instrument
    /// (OKX: spot, perpetual swaps, futures; Alpaca: US equities, crypto).
    fn instruments_requests(&self) -> Result<Vec<SignedRequest>, OrderError>;

    /// The symbols, as orders name them, of the instruments in one answer to an instruments
    /// request that take orders now (OKX `state` `live`; Alpaca `tradable`).
    fn instruments_outcome(response: &HttpResponse) -> Result<Vec<String>, VenueError>;
}

/// Which id a cancel request names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CancelBy<'a> {
    /// The venue's id for the order.
    VenueOrderId(&'a str),
    /// The order's client id (only asked of an adapter whose venue
    /// [cancels by client id](Adapter::CANCELS_BY_CLIENT_ID)).
    ClientId,
}

/// An order request the venue cannot take, caught before sending.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NotSendable {
    /// [`UNSUPPORTED`] or [`INVALID_ORDER`].
    pub code: &'static str,
    /// What is wrong, for a person.
    pub message: String,
}

impl NotSendable {
    /// An order the venue has no way to express ([`UNSUPPORTED`]).
    pub fn unsupported(message: &str) -> Self {
        NotSendable {
            code: UNSUPPORTED,
            message: message.to_string(),
        }
    }
}

impl From<OrderError> for NotSendable {
    fn from(error: OrderError) -> Self {
        NotSendable {
            code: INVALID_ORDER,
            message: error.to_string(),
        }
    }
}

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
            SendError::BodyTooLarge(_) => VenueError::BadResponse {
                status: 0,
                reason: error.to_string(),
            },
            SendError::InvalidRequest(reason) => VenueError::NotSent(reason),
        }
    }
}

/// One live venue account; see the module doc. Share it behind an `Arc`: calls take `&self`.
pub struct LiveVenue<A> {
    name: Arc<str>,
    adapter: A,
    sender: HttpSender,
    breaker: Mutex<CircuitBreaker>,
    /// Where the breaker's transitions are audited (kind `breaker`, plugin `venue:NAME`).
    audit: Option<colony_audit::AuditWriter>,
}

impl<A: Adapter> std::fmt::Debug for LiveVenue<A> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LiveVenue")
            .field("name", &self.name)
            .field("adapter", &self.adapter)
            .field("sender", &self.sender)
            .field("breaker", &self.breaker)
            .finish_non_exhaustive()
    }
}

impl<A: Adapter> LiveVenue<A> {
    /// An account named `name` at `base_url`, reached through `adapter`; the venues'
    /// constructors ([`LiveVenue::okx`], [`LiveVenue::alpaca`]) call it.
    pub(super) fn new(
        name: &str,
        adapter: A,
        base_url: &str,
        timeout: Duration,
    ) -> Result<Self, ConfigError> {
        Ok(LiveVenue {
            name: name.into(),
            adapter,
            sender: HttpSender::new(base_url, timeout)?,
            breaker: Mutex::new(CircuitBreaker::new(BreakerConfig::default())),
            audit: None,
        })
    }

    /// Audits the breaker's transitions through `writer` (kind `breaker`, plugin
    /// `venue:NAME`, actor `host`).
    pub fn with_audit(self, writer: colony_audit::AuditWriter) -> Self {
        LiveVenue {
            audit: Some(writer),
            ..self
        }
    }

    /// Logs nothing itself; audits a breaker transition when an audit writer is set.
    fn audit_transition(&self, detail: String) {
        if let Some(w) = &self.audit {
            w.record(colony_audit::AuditRecord::breaker(
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

    /// The circuit breaker's state now.
    pub(crate) fn breaker_status(&self) -> BreakerStatus {
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
        let request = match self.adapter.place_request(order) {
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
        let outcome = self.exchange(&request, A::place_outcome).await?;
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

    /// Cancels the order: by `venue_order_id` when known, else by client id (a venue that
    /// cancels only by its own id, like Alpaca, has the order looked up first).
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
        let looked_up;
        let by = match venue_order_id {
            Some(id) => CancelBy::VenueOrderId(id),
            None if A::CANCELS_BY_CLIENT_ID => CancelBy::ClientId,
            None => match self.query(order).await? {
                Some(found) => {
                    looked_up = found.venue_order_id;
                    CancelBy::VenueOrderId(&looked_up)
                }
                None => {
                    return Err(VenueError::Refused {
                        code: "404".into(),
                        message: format!("no order with client id {}", order.client_id),
                    });
                }
            },
        };
        let request = self.adapter.cancel_request(order, by).map_err(not_sent)?;
        let answered_id = self.exchange(&request, A::cancel_outcome).await?;
        let cancelled_id = answered_id.or_else(|| match by {
            CancelBy::VenueOrderId(id) => Some(id.to_string()),
            CancelBy::ClientId => None,
        });
        tracing::info!(venue = %self.name, client_id = %order.client_id, venue_order_id = cancelled_id.as_deref().unwrap_or_default(), "cancel accepted");
        Ok(ExecReport::new(
            order,
            cancelled_id,
            ExecKind::Cancelled,
            now,
        ))
    }

    /// Looks the order up by client id. `Ok(None)` when the venue says it has no such order
    /// (OKX code 51603, Alpaca 404 with its error body), so it never arrived: only then is it
    /// safe to place it again.
    pub async fn query(&self, order: &OrderRequest) -> Result<Option<VenueOrder>, VenueError> {
        let request = self.adapter.query_request(order).map_err(not_sent)?;
        self.exchange(&request, A::query_outcome).await
    }

    /// The instruments the venue takes orders for now, by symbol, sorted: the union of the
    /// answers to the adapter's [instruments requests](Adapter::instruments_requests). The
    /// first request that fails is the answer (a partial list would refuse good orders
    /// without saying why).
    pub async fn instruments(&self) -> Result<Vec<String>, VenueError> {
        let mut all = std::collections::BTreeSet::new();
        for request in self.adapter.instruments_requests().map_err(not_sent)? {
            let listed = self
                .exchange_within(&request, MAX_INSTRUMENTS_BYTES, A::instruments_outcome)
                .await?;
            all.extend(listed);
        }
        tracing::info!(venue = %self.name, instruments = all.len(), "instruments listed");
        Ok(all.into_iter().collect())
    }

    /// Sends `request` through the breaker and reads the answer with `interpret` (5xx never
    /// reaches it); the result decides what the breaker is told.
    async fn exchange<T>(
        &self,
        request: &SignedRequest,
        interpret: impl FnOnce(&HttpResponse) -> Result<T, VenueError>,
    ) -> Result<T, VenueError> {
        self.exchange_within(request, MAX_RESPONSE_BYTES, interpret)
            .await
    }

    /// [`exchange`](Self::exchange) with an answer of up to `limit` bytes.
    async fn exchange_within<T>(
        &self,
        request: &SignedRequest,
        limit: usize,
        interpret: impl FnOnce(&HttpResponse) -> Result<T, VenueError>,
    ) -> Result<T, VenueError> {
        let permit = self.breaker().allow(Instant::now()).map_err(|open| {
            tracing::warn!(venue = %self.name, method = request.method.as_str(), path = %request.path, retry_after_ms = open.retry_after.as_millis(), "circuit open, request not sent");
            VenueError::CircuitOpen {
                retry_after: open.retry_after,
            }
        })?;
        let result = match self.sender.send_within(request, limit).await {
            Ok(response) if response.status >= 500 => {
                Err(VenueError::Unavailable(format!("HTTP {}", response.status)))
            }
            Ok(response) => interpret(&response),
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
impl<A: Adapter> Venue for LiveVenue<A> {
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

    fn instruments(self: Arc<Self>) -> Option<Pending<Vec<String>>> {
        Some(Box::pin(async move { LiveVenue::instruments(&self).await }))
    }

    fn breaker(&self) -> Option<BreakerStatus> {
        Some(self.breaker_status())
    }
}

/// A request that could not be built: nothing was sent.
fn not_sent(error: OrderError) -> VenueError {
    VenueError::NotSent(error.to_string())
}

/// An answer that is not what the venue documents.
pub(super) fn bad(response: &HttpResponse, reason: impl std::fmt::Display) -> VenueError {
    VenueError::BadResponse {
        status: response.status,
        reason: reason.to_string(),
    }
}

#[cfg(test)]
pub(super) mod fixtures;
#[cfg(test)]
mod tests;
