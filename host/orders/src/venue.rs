//! The port between the order router and a venue: [`Venue`], what the router needs of the paper
//! exchange ([`PaperVenue`]) and of a live account (`venues::live::LiveVenue`) alike.
//!
//! A venue answers a request at once or later ([`Answer`]). The paper exchange answers at once,
//! under the router's lock, by appending reports to the `out` it is given, so a replay decides
//! exactly as it did and `place` returns with the fills applied. A venue over the network
//! answers later: a future that resolves to one report or a [`VenueError`]. The router has one
//! path for both: what is answered at once is applied at once, what is answered later is
//! awaited by a task and applied when it comes.
//!
//! **Architecture Invariant:** this module knows the order types and nothing of a particular
//! venue: `venues::live` implements [`Venue`], not the other way round. A [`Answer::Later`]
//! future sends nothing until it is polled: the router journals that an order is being sent just
//! before it polls.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use rust_decimal::Decimal;

use super::paper::{Balance, PaperConfig, PaperExchange, PaperPosition};
use super::{ExecReport, OrderRequest, OrderState, OrderStatus};
use colony_market::types::{MarketEvent, Timestamp};
use colony_risk::breaker::BreakerStatus;

/// A venue's answer that comes later.
pub type Pending<T> = Pin<Box<dyn Future<Output = Result<T, VenueError>> + Send + 'static>>;

/// How a venue answered a place or a cancel.
pub enum Answer {
    /// At once: the reports are in the `out` the venue was given (possibly none).
    Now,
    /// Later: the report, or an error (see [`VenueError::outcome_unknown`]).
    Later(Pending<ExecReport>),
}

/// Where a venue's orders live, which decides how the router journals and recovers them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VenueKind {
    /// In the host's memory (the paper exchange): its orders die with the process, so the
    /// journal is written behind it and a restart expires the orders the last run left working.
    InProcess,
    /// At an account outside the host (OKX, Alpaca): an order's intent is durable in the
    /// journal before it is sent, the venue is polled for fills, and a restart reconciles the
    /// working orders by client id.
    Remote,
}

/// Why a venue call has no known outcome, or why a cancel or query did not work.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VenueError {
    /// No answer within the timeout; the request may have reached the venue.
    #[error("no answer within {0:?}; the order's state at the venue is unknown")]
    Timeout(Duration),
    /// The connection failed or the venue said it could not process the request (5xx, OKX
    /// system codes); the request may have reached the venue.
    #[error("venue unavailable: {0}")]
    Unavailable(String),
    /// The breaker is open after repeated failures; nothing was sent.
    #[error(
        "circuit open after repeated venue failures, nothing sent; retry after {retry_after:?}"
    )]
    CircuitOpen {
        /// When a trial request is allowed.
        retry_after: Duration,
    },
    /// An answer that is not what the venue documents; the request may have taken effect.
    #[error("unexpected venue answer (HTTP {status}): {reason}")]
    BadResponse {
        /// The HTTP status.
        status: u16,
        /// What was wrong with the answer.
        reason: String,
    },
    /// The venue refused a cancel or a query (order already closed, bad key, …), with its code.
    #[error("venue refused: {code} {message}")]
    Refused {
        /// The venue's code.
        code: String,
        /// The venue's message.
        message: String,
    },
    /// The request could not be built or put on the wire; nothing was sent.
    #[error("request not sent: {0}")]
    NotSent(String),
}

impl VenueError {
    /// Whether the request may have reached the venue, so that the order's state is unknown.
    pub fn outcome_unknown(&self) -> bool {
        matches!(
            self,
            VenueError::Timeout(_) | VenueError::Unavailable(_) | VenueError::BadResponse { .. }
        )
    }
}

/// An order as the venue reports it, found by client id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VenueOrder {
    /// The venue's id for it.
    pub venue_order_id: String,
    /// The client id the venue holds for it.
    pub client_id: String,
    /// Its status, in Colony's terms.
    pub status: OrderStatus,
    /// The quantity filled so far.
    pub filled_qty: Decimal,
    /// `None` until something filled.
    pub avg_price: Option<Decimal>,
    /// The venue's own word for the state (`live`, `partially_filled`, `pending_cancel`, …).
    pub venue_state: String,
}

/// A venue as the order router uses it. Requests come from the router only, after the risk
/// check, in the order of time; `now` is the router's clock (virtual during a replay).
///
/// The methods that may answer later take `self: Arc<Self>` so that the future they return
/// can own the venue.
pub trait Venue: Send + Sync + 'static {
    /// `paper`, `okx`, `okx-demo`, `alpaca`, `alpaca-paper`: the name reports and the journal
    /// use.
    fn name(&self) -> &str;

    /// Where its orders live.
    fn kind(&self) -> VenueKind;

    /// Sends an order that passed risk (and is journaled as the venue's kind requires).
    fn place(
        self: Arc<Self>,
        order: &OrderRequest,
        now: Timestamp,
        out: &mut Vec<ExecReport>,
    ) -> Answer;

    /// Cancels a working order (`order` is the router's state of it: request and venue id).
    fn cancel(
        self: Arc<Self>,
        order: &OrderState,
        now: Timestamp,
        out: &mut Vec<ExecReport>,
    ) -> Answer;

    /// Cancels `working`, the router's working orders of `agent` (`None`: of every agent), for
    /// the kill switch; returns the answers that come later, each with its order. By default
    /// one [`cancel`](Self::cancel) each, in the given order.
    fn cancel_all<'a>(
        self: Arc<Self>,
        agent: Option<&str>,
        working: &[&'a OrderState],
        now: Timestamp,
        out: &mut Vec<ExecReport>,
    ) -> Vec<(&'a OrderState, Pending<ExecReport>)> {
        let _ = agent;
        working
            .iter()
            .filter_map(|o| match Arc::clone(&self).cancel(o, now, out) {
                Answer::Now => None,
                Answer::Later(f) => Some((*o, f)),
            })
            .collect()
    }

    /// Looks an order up by client id: `Ok(None)` when the venue says it has no such order (so
    /// it never arrived, and only then may it be sent again).
    fn query(self: Arc<Self>, order: &OrderRequest) -> Pending<Option<VenueOrder>>;

    /// The instruments the venue takes orders for, by the symbols orders name: the router
    /// learns them before the first order, so that an order for anything else is refused
    /// (`risk.unknown-instrument`). `None` when the venue keeps no list (the paper exchange
    /// trades what the feed shows).
    fn instruments(self: Arc<Self>) -> Option<Pending<Vec<String>>> {
        None
    }

    /// A market event the venue matches against (the paper exchange fills resting orders);
    /// reports go to `out`. By default nothing.
    fn on_market(&self, event: &MarketEvent, out: &mut Vec<ExecReport>) {
        let _ = (event, out);
    }

    /// A new day of the router's clock starts at `start`: a venue that keeps closed orders to
    /// refuse duplicate client ids may forget older ones (risk lets ids be reused each day).
    fn new_day(&self, start: Timestamp) {
        let _ = start;
    }

    /// The agent's position in `symbol` as the venue keeps it; `None` when the venue does not
    /// report positions (the router answers from the fills it has seen).
    fn position(&self, agent: &str, symbol: &str) -> Option<PaperPosition> {
        let _ = (agent, symbol);
        None
    }

    /// The accounts the venue keeps for agents, by agent; none by default.
    fn accounts(&self) -> Vec<AccountView> {
        Vec::new()
    }

    /// The agent's cash; none when the venue does not report it.
    fn balances(&self, agent: &str) -> Vec<Balance> {
        let _ = agent;
        Vec::new()
    }

    /// The venue connection's circuit breaker, if it has one.
    fn breaker(&self) -> Option<BreakerStatus> {
        None
    }
}

/// One agent's account at a venue, as `colony orders list` shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccountView {
    /// The agent.
    pub agent: Arc<str>,
    /// Its positions, flat ones included, by symbol.
    pub positions: Vec<PaperPosition>,
    /// Cash in the quote currency.
    pub cash: Decimal,
    /// Cash plus unrealised PnL at the marks.
    pub equity: Decimal,
}

/// The paper exchange as a [`Venue`]: a thin adapter that answers every request at once. Its
/// lock is only ever taken inside the router's (or alone, for reads), never the other way round.
#[derive(Debug)]
pub struct PaperVenue {
    exchange: Mutex<PaperExchange>,
}

impl PaperVenue {
    /// A paper exchange with `config`'s fees and starting cash.
    pub fn new(config: PaperConfig) -> PaperVenue {
        PaperVenue {
            exchange: Mutex::new(PaperExchange::new(config)),
        }
    }

    fn lock(&self) -> MutexGuard<'_, PaperExchange> {
        self.exchange.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl Venue for PaperVenue {
    fn name(&self) -> &str {
        "paper"
    }

    fn kind(&self) -> VenueKind {
        VenueKind::InProcess
    }

    fn place(
        self: Arc<Self>,
        order: &OrderRequest,
        now: Timestamp,
        out: &mut Vec<ExecReport>,
    ) -> Answer {
        self.lock().place(order, now, out);
        Answer::Now
    }

    fn cancel(
        self: Arc<Self>,
        order: &OrderState,
        now: Timestamp,
        out: &mut Vec<ExecReport>,
    ) -> Answer {
        let r = &order.request;
        self.lock().cancel(&r.agent, &r.client_id, now, out);
        Answer::Now
    }

    /// Oldest first by the exchange's acceptance order (its working orders are the router's).
    fn cancel_all<'a>(
        self: Arc<Self>,
        agent: Option<&str>,
        _working: &[&'a OrderState],
        now: Timestamp,
        out: &mut Vec<ExecReport>,
    ) -> Vec<(&'a OrderState, Pending<ExecReport>)> {
        self.lock().cancel_all(agent, now, out);
        Vec::new()
    }

    fn query(self: Arc<Self>, order: &OrderRequest) -> Pending<Option<VenueOrder>> {
        let found = self
            .lock()
            .order(&order.agent, &order.client_id)
            .map(|o| VenueOrder {
                venue_order_id: o.venue_order_id.clone().unwrap_or_default(),
                client_id: o.request.client_id.clone(),
                status: o.status,
                filled_qty: o.filled_qty,
                avg_price: o.avg_price(),
                venue_state: o.status.as_str().to_string(),
            });
        Box::pin(std::future::ready(Ok(found)))
    }

    fn on_market(&self, event: &MarketEvent, out: &mut Vec<ExecReport>) {
        self.lock().on_market(event, out);
    }

    fn new_day(&self, start: Timestamp) {
        self.lock().forget_closed(start);
    }

    fn position(&self, agent: &str, symbol: &str) -> Option<PaperPosition> {
        Some(self.lock().position(agent, symbol))
    }

    fn accounts(&self) -> Vec<AccountView> {
        let x = self.lock();
        let currency = &x.config().quote_currency;
        x.agents()
            .into_iter()
            .map(|agent| AccountView {
                positions: x.positions(&agent),
                cash: x
                    .balances(&agent)
                    .into_iter()
                    .find(|b| b.currency == *currency)
                    .map_or(Decimal::ZERO, |b| b.total),
                equity: x.equity(&agent),
                agent,
            })
            .collect()
    }

    fn balances(&self, agent: &str) -> Vec<Balance> {
        self.lock().balances(agent)
    }
}
