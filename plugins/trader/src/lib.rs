//! trader: the only agent of the swarm that trades. On each analyst [`Signal`]
//! (`swarm.signals`) it:
//!
//! 1. closes a position the other way (a reduce-only market order, reason `reverse`), or
//!    ignores the signal if it already holds a position its way or an entry is in flight;
//! 2. sizes the entry: `base_qty` (default 0.25 BTC), doubled when the confidence is at least
//!    `high_confidence` (default 0.80). The doubled size is over the demo desk's pre-trade
//!    notional limit (15,000 USDT, about 0.35 BTC in January 2022; its own grant allows
//!    30,000) on purpose: the host's risk check rejects it (`risk.max-notional`; a grant
//!    denial is handled the same way), and the trader retries once at the base size;
//! 3. asks the risk-manager with `gather` on `swarm.risk.proposals` (quorum 1,
//!    `gather_timeout_ms`, default 80 ms: the wait counts against the event's 100 ms deadline),
//!    and trades only on an approval, at most the approved quantity. No answer is no trade;
//! 4. places a market order with client id `t<n>`, `n` a counter kept in state, so ids stay
//!    unique across restarts and across runs that share a data directory.
//!
//! On every bar it checks the open position's stop-loss (default 1.5 %) and take-profit
//! (default 3 %) against the close, and closes with a reduce-only market order. Exits reduce
//! risk, so they do not ask the risk-manager.
//!
//! Its position view is built from its own fills (`on-order`): signed quantity, average entry,
//! fees, realised PnL. When a round trip closes it publishes an [`Outcome`] on
//! `swarm.outcomes` (PnL net of the entry's and the exit's fees). The view is kept in state
//! (key `book`) after every fill and travels in the snapshot. Counters are in state (key
//! `stats`).
//!
//! **After any (re)start** (`init`, and `restore` after a restart, a wake or a hot swap) the
//! host's records win: the position and the working orders are read from the host
//! (`colony_sdk::recovery::Account`), the view takes the host's quantity and average, keeps
//! as in flight only the orders the host still works, and from then on counts only fills the
//! host's view did not hold yet (`FillTracker`): the order events queued before a restart,
//! and the one the host redelivers, are already in the host's position and are not counted
//! twice. So a restart never leaves it believing it holds the other side.

use std::collections::BTreeMap;

use colony_sdk::market::{self, Kinds};
use colony_sdk::orders::{self, AckStatus, OrderRequest};
use colony_sdk::recovery::{Account, FillTracker, Recovery};
use colony_sdk::{
    Agent, Error, Manifest, MarketEvent, Message, OrderEvent, OrderStatus, messaging, state,
};
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use swarm_protocol::{
    Bar, Decision, ExitReason, MAX_QTY, NS_PER_MIN, OUTCOMES, Outcome, PROPOSALS, Proposal,
    SIGNALS, SYMBOL, Signal, TradeSide, dec, decode, encode, price_ok, qty_ok,
};

const MANIFEST: Manifest = Manifest::agent(env!("CARGO_PKG_NAME"), env!("CARGO_PKG_VERSION"))
    .description(env!("CARGO_PKG_DESCRIPTION"))
    .capabilities(&[
        "market.read:BTC-PERP",
        "messaging.subscribe:swarm.signals",
        "messaging.request:swarm.risk.proposals",
        "messaging.publish:swarm.outcomes",
        // The desk-wide pre-trade limit the demo sets (`[orders.risk] max_notional = 15000`)
        // is tighter than this grant: a doubled entry is rejected by risk (`risk.max-notional`).
        "orders.place:BTC-PERP;max_notional=30000;max_qty=1;max_orders_per_min=6",
    ])
    .fuel(20_000_000)
    .memory_bytes(16 << 20);

/// State key of the client-id counter (a JSON number).
const COUNTER: &str = "counter";
/// State key of the position view ([`Book`]).
const BOOK: &str = "book";
/// State key of the counters ([`Stats`]).
const STATS: &str = "stats";
/// Decimal places kept in averages and PnL.
const DP: u32 = 8;
/// An order with no final event after this much host time is forgotten.
const PENDING_TTL_NS: u64 = 10 * NS_PER_MIN;
/// Risk reject codes that mean "over the host's size limits".
const SIZE_LIMIT_CODES: [&str; 2] = ["risk.max-notional", "risk.max-qty"];
/// What a grant denial names when the order is over the grant's size limits.
const GRANT_SIZE_LIMITS: [&str; 2] = ["max_notional", "max_qty"];

/// The operator's configuration; every field is optional.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
struct Config {
    #[serde(with = "rust_decimal::serde::str")]
    base_qty: Decimal,
    #[serde(with = "rust_decimal::serde::str")]
    high_confidence: Decimal,
    #[serde(with = "rust_decimal::serde::str")]
    stop_loss: Decimal,
    #[serde(with = "rust_decimal::serde::str")]
    take_profit: Decimal,
    gather_timeout_ms: u32,
    /// The account's starting cash (the paper exchange's `initial_balance`).
    #[serde(with = "rust_decimal::serde::str")]
    initial_equity: Decimal,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            base_qty: dec(25, 2),
            high_confidence: dec(80, 2),
            stop_loss: dec(15, 3),
            take_profit: dec(3, 2),
            gather_timeout_ms: 80,
            initial_equity: dec(100_000, 0),
        }
    }
}

impl Config {
    fn parse(config: &str) -> Result<Config, Error> {
        let parsed: Config = swarm_protocol::config("trader", config)?;
        let fraction = Decimal::ZERO..=Decimal::ONE;
        if !qty_ok(parsed.base_qty) || parsed.base_qty * Decimal::TWO > MAX_QTY {
            return Err(Error::InvalidArgument(
                "trader config: base_qty out of range".into(),
            ));
        }
        if ![parsed.high_confidence, parsed.stop_loss, parsed.take_profit]
            .iter()
            .all(|f| fraction.contains(f))
        {
            return Err(Error::InvalidArgument(
                "trader config: high_confidence, stop_loss and take_profit must be in [0, 1]"
                    .into(),
            ));
        }
        if !price_ok(parsed.initial_equity) {
            return Err(Error::InvalidArgument(
                "trader config: initial_equity out of range".into(),
            ));
        }
        Ok(parsed)
    }
}

/// What an order in flight is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", tag = "kind")]
enum Purpose {
    /// Opens a position on a signal of this confidence.
    Entry {
        #[serde(with = "rust_decimal::serde::str")]
        confidence: Decimal,
    },
    /// Closes the position.
    Exit { reason: ExitReason },
}

/// An order placed and not final yet.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
struct Pending {
    purpose: Purpose,
    /// Host time it was placed.
    placed: u64,
}

/// The exits of the round trip being closed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
struct Trip {
    side: TradeSide,
    #[serde(with = "rust_decimal::serde::str")]
    entry: Decimal,
    #[serde(with = "rust_decimal::serde::str")]
    closed: Decimal,
    #[serde(with = "rust_decimal::serde::str")]
    exit_notional: Decimal,
    #[serde(with = "rust_decimal::serde::str")]
    pnl: Decimal,
    reason: ExitReason,
}

/// The trader's view of its account, from its own fills. Every fill price and quantity is
/// checked against the protocol's bounds before it is used, so the arithmetic cannot overflow.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
struct Book {
    /// Signed position; negative is short.
    #[serde(with = "rust_decimal::serde::str")]
    qty: Decimal,
    /// Average entry price of the open quantity.
    #[serde(with = "rust_decimal::serde::str")]
    avg: Decimal,
    /// Entry fees of the open quantity, charged to its round trip when it closes.
    #[serde(with = "rust_decimal::serde::str")]
    open_fees: Decimal,
    /// Confidence of the signal that opened the position.
    #[serde(with = "rust_decimal::serde::str")]
    confidence: Decimal,
    /// Realised PnL net of every fee.
    #[serde(with = "rust_decimal::serde::str")]
    net_pnl: Decimal,
    /// A round trip being closed (an exit that filled in parts).
    trip: Option<Trip>,
    /// Orders in flight by client id.
    pending: BTreeMap<String, Pending>,
    /// The last close seen.
    #[serde(with = "rust_decimal::serde::str_option")]
    last_price: Option<Decimal>,
    /// The last host time seen.
    now: u64,
}

impl Book {
    fn side(&self) -> Option<TradeSide> {
        TradeSide::of_position(self.qty)
    }

    fn has_entry_pending(&self) -> bool {
        self.pending
            .values()
            .any(|p| matches!(p.purpose, Purpose::Entry { .. }))
    }

    fn has_exit_pending(&self) -> bool {
        self.pending
            .values()
            .any(|p| matches!(p.purpose, Purpose::Exit { .. }))
    }

    /// Initial cash + realised PnL net of fees + the open position at the last price.
    fn equity(&self, initial: Decimal) -> Decimal {
        let open = match self.last_price {
            Some(p) => self.qty * (p - self.avg),
            None => Decimal::ZERO,
        };
        (initial + self.net_pnl + open - self.open_fees).round_dp(DP)
    }

    /// Applies one fill of an order for `purpose`; returns the outcome of a round trip it
    /// completed.
    fn apply_fill(
        &mut self,
        side: TradeSide,
        qty: Decimal,
        price: Decimal,
        fee: Decimal,
        purpose: Option<Purpose>,
    ) -> Option<Outcome> {
        let mut outcome = None;
        let mut rest = qty;
        // Reducing (or closing, or the closing part of a flip).
        if let Some(held_side) = self.side().filter(|s| *s != side) {
            let held = self.qty.abs();
            let closed = rest.min(held);
            let exit_fee = fee * closed / qty;
            let entry_fee = self.open_fees * closed / held;
            let gross = (price - self.avg) * closed * held_side.sign();
            let reason = match purpose {
                Some(Purpose::Exit { reason }) => reason,
                _ => ExitReason::Unknown,
            };
            let trip = self.trip.get_or_insert(Trip {
                side: held_side,
                entry: self.avg,
                closed: Decimal::ZERO,
                exit_notional: Decimal::ZERO,
                pnl: Decimal::ZERO,
                reason,
            });
            trip.closed += closed;
            trip.exit_notional += price * closed;
            trip.pnl = (trip.pnl + gross - exit_fee - entry_fee).round_dp(DP);
            self.net_pnl = (self.net_pnl + gross - exit_fee - entry_fee).round_dp(DP);
            self.open_fees = (self.open_fees - entry_fee).round_dp(DP);
            self.qty -= held_side.sign() * closed;
            rest -= closed;
            if self.qty.is_zero() {
                let t = *trip;
                self.trip = None;
                self.avg = Decimal::ZERO;
                self.open_fees = Decimal::ZERO;
                outcome = Some(Outcome {
                    symbol: SYMBOL.into(),
                    side: t.side,
                    entry: t.entry,
                    exit: (t.exit_notional / t.closed).round_dp(DP),
                    qty: t.closed,
                    pnl: t.pnl,
                    confidence: self.confidence,
                    reason: t.reason,
                });
            }
        }
        // Opening or adding.
        if rest > Decimal::ZERO {
            let held = self.qty.abs();
            self.avg = ((self.avg * held + price * rest) / (held + rest)).round_dp(DP);
            self.open_fees = (self.open_fees + fee * rest / qty).round_dp(DP);
            self.qty += side.sign() * rest;
            if let Some(Purpose::Entry { confidence }) = purpose {
                self.confidence = confidence;
            }
        }
        outcome
    }

    /// Forgets orders in flight that can no longer be live: placed more than
    /// [`PENDING_TTL_NS`] ago, or "in the future" (the host clock went back: a new run).
    fn expire_pending(&mut self, now: u64) {
        self.pending.retain(|id, p| {
            let live = p.placed <= now && now - p.placed <= PENDING_TTL_NS;
            if !live {
                colony_sdk::warn!("order {id} got no final event; forgotten");
            }
            live
        });
    }
}

/// Counters kept in state.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
struct Stats {
    signals: u64,
    proposals: u64,
    approved: u64,
    /// Vetoes by the risk-manager's reason.
    vetoed: BTreeMap<String, u64>,
    /// Proposals without a usable answer.
    no_answer: u64,
    orders: u64,
    fills: u64,
    /// Refusals by the host: `denied` (a grant limit) or a reject code.
    host_refusals: BTreeMap<String, u64>,
    outcomes: u64,
    wins: u64,
}

/// How an order reaches the host: `orders::place`, or a stand-in in tests.
type PlaceFn = fn(&OrderRequest) -> Result<orders::OrderAck, Error>;

struct Trader {
    config: Config,
    book: Book,
    stats: Stats,
    venue: PlaceFn,
    /// Which fills the host's view (read at the last rebuild) does not hold yet.
    fills: FillTracker,
}

/// What travels in the snapshot.
#[derive(Serialize, Deserialize)]
struct Snapshot {
    book: Book,
}

impl Trader {
    /// The next client id (`t<n>`), its counter saved before the id is used so that no id is
    /// ever placed twice, even after a trap.
    fn next_client_id() -> Result<String, Error> {
        let n: u64 = state::get_json(COUNTER)?.unwrap_or(0) + 1;
        state::set_json(COUNTER, &n)?;
        Ok(format!("t{n}"))
    }

    /// Places a market order; returns whether it went out (`submitted` or pending approval).
    fn place(&mut self, side: TradeSide, qty: Decimal, purpose: Purpose) -> Result<Placed, Error> {
        let client_id = Self::next_client_id()?;
        let wire_qty = colony_sdk::Decimal::try_from(qty)?;
        let mut order = OrderRequest::market(&client_id, SYMBOL, side.into(), wire_qty);
        if matches!(purpose, Purpose::Exit { .. }) {
            order = order.reduce_only();
        }
        self.stats.orders += 1;
        let (refusal, size_limit) = match (self.venue)(&order) {
            Ok(ack) if ack.status == AckStatus::Rejected => {
                let code = ack.reject_reason.unwrap_or_else(|| "rejected".into());
                colony_sdk::warn!(
                    "order {client_id} {} {qty} rejected by the host: {code} ({})",
                    side.as_str(),
                    ack.detail
                );
                let size_limit = SIZE_LIMIT_CODES.contains(&code.as_str());
                (code, size_limit)
            }
            Ok(ack) => {
                self.fills.placed(&client_id);
                self.book.pending.insert(
                    client_id.clone(),
                    Pending {
                        purpose,
                        placed: self.book.now,
                    },
                );
                colony_sdk::info!(
                    "order {client_id} {} {qty} {SYMBOL} ({}): {:?}",
                    side.as_str(),
                    match purpose {
                        Purpose::Entry { .. } => "entry",
                        Purpose::Exit { reason } => reason.as_str(),
                    },
                    ack.status
                );
                return Ok(Placed::Out);
            }
            Err(Error::Denied(needs)) => {
                colony_sdk::warn!(
                    "order {client_id} {} {qty} denied by the host: {needs}",
                    side.as_str()
                );
                // The grant check names the limit: `orders.place:BTC-PERP max_notional 15000 < …`.
                let size_limit = GRANT_SIZE_LIMITS.iter().any(|l| needs.contains(l));
                ("denied".to_string(), size_limit)
            }
            Err(e) => return Err(e),
        };
        *self.stats.host_refusals.entry(refusal).or_default() += 1;
        Ok(if size_limit {
            Placed::TooBig
        } else {
            Placed::Refused
        })
    }

    /// Closes the whole position with a reduce-only market order.
    fn exit(&mut self, reason: ExitReason) -> Result<(), Error> {
        let Some(held) = self.book.side() else {
            return Ok(());
        };
        if self.book.has_exit_pending() {
            return Ok(());
        }
        let qty = self.book.qty.abs();
        colony_sdk::info!(
            "closing {} {qty} (entry {}, last {:?}): {}",
            held.as_str(),
            self.book.avg,
            self.book.last_price,
            reason.as_str()
        );
        self.place(held.opposite(), qty, Purpose::Exit { reason })
            .map(|_| ())
    }

    /// Handles a signal; `ask` puts a proposal to the risk-manager (in the agent: `gather`).
    fn on_signal(
        &mut self,
        sig: &Signal,
        ask: impl FnOnce(&Proposal) -> Option<Decision>,
    ) -> Result<(), Error> {
        self.stats.signals += 1;
        if self.book.has_entry_pending() {
            return Ok(());
        }
        let mut position = self.book.qty;
        match self.book.side() {
            Some(s) if s == sig.side => return Ok(()),
            Some(_) => {
                self.exit(ExitReason::Reverse)?;
                // The exit is on its way: the entry is judged as if it had filled.
                position = Decimal::ZERO;
            }
            None => {}
        }
        let base = self.config.base_qty;
        let qty = if sig.confidence >= self.config.high_confidence {
            base * Decimal::TWO
        } else {
            base
        };
        let proposal = Proposal {
            symbol: SYMBOL.into(),
            side: sig.side,
            qty,
            price: sig.price,
            confidence: sig.confidence,
            equity: self.book.equity(self.config.initial_equity),
            position,
            ts: sig.ts,
            reason: sig.reason.clone(),
        };
        self.stats.proposals += 1;
        let Some(decision) = ask(&proposal) else {
            self.stats.no_answer += 1;
            return Ok(());
        };
        if !decision.approved {
            *self
                .stats
                .vetoed
                .entry(decision.reason.as_str().to_string())
                .or_default() += 1;
            colony_sdk::info!(
                "{} {qty} at {} (confidence {}) vetoed: {}",
                sig.side.as_str(),
                sig.price,
                sig.confidence,
                decision.reason.as_str()
            );
            return Ok(());
        }
        self.stats.approved += 1;
        let qty = decision.qty.min(qty);
        if !qty_ok(qty) {
            return Ok(());
        }
        let purpose = Purpose::Entry {
            confidence: sig.confidence,
        };
        if self.place(sig.side, qty, purpose)? == Placed::TooBig && qty > base {
            colony_sdk::info!(
                "retrying the {} entry at the base size {base}",
                sig.side.as_str()
            );
            self.place(sig.side, base, purpose)?;
        }
        Ok(())
    }

    fn on_bar(&mut self, bar: &Bar) -> Result<(), Error> {
        if bar.end < self.book.now {
            colony_sdk::info!("host clock went back: a new run");
        }
        self.book.now = bar.end;
        self.book.last_price = Some(bar.close);
        self.book.expire_pending(bar.end);
        let Some(side) = self.book.side() else {
            return Ok(());
        };
        if self.book.has_exit_pending() || !price_ok(self.book.avg) {
            return Ok(());
        }
        // How far the close moved for the position, against the stop and target distances.
        let avg = self.book.avg;
        let gain = (bar.close - avg) * side.sign();
        if gain <= -(avg * self.config.stop_loss) {
            self.exit(ExitReason::StopLoss)?;
        } else if gain >= avg * self.config.take_profit {
            self.exit(ExitReason::TakeProfit)?;
        }
        Ok(())
    }

    fn on_order_event(&mut self, e: &OrderEvent) -> Result<(), Error> {
        if e.symbol != SYMBOL {
            return Ok(());
        }
        let purpose = self.book.pending.get(&e.client_id).map(|p| p.purpose);
        let mut changed = false;
        if let Some(fill) = &e.last_fill {
            Self::check_fill(&e.client_id, fill)?;
        }
        // Only what the host's view at the last rebuild did not hold.
        if let Some(fill) = self.fills.unseen(e)? {
            let (qty, price, fee) = Self::check_fill(&e.client_id, &fill)?;
            self.stats.fills += 1;
            changed = true;
            if let Some(outcome) = self
                .book
                .apply_fill(e.side.into(), qty, price, fee, purpose)
            {
                self.publish_outcome(&outcome)?;
            }
        }
        match e.status {
            OrderStatus::Filled
            | OrderStatus::Cancelled
            | OrderStatus::Rejected
            | OrderStatus::Expired => {
                let was_pending = self.book.pending.remove(&e.client_id).is_some();
                // A refusal in the ack was counted by `place` (and never became pending); this
                // is one that came later, from approval or the venue.
                if e.status == OrderStatus::Rejected && was_pending {
                    let code = e.reject_reason.clone().unwrap_or_else(|| "rejected".into());
                    colony_sdk::warn!("order {} rejected: {code}", e.client_id);
                    *self.stats.host_refusals.entry(code).or_default() += 1;
                }
                changed |= was_pending;
            }
            OrderStatus::Accepted | OrderStatus::PartiallyFilled => {}
        }
        if changed {
            state::set_json(BOOK, &self.book)?;
            state::set_json(STATS, &self.stats)?;
        }
        Ok(())
    }

    /// A fill's quantity, price and fee, checked against the protocol's bounds.
    fn check_fill(
        client_id: &str,
        fill: &colony_sdk::Fill,
    ) -> Result<(Decimal, Decimal, Decimal), Error> {
        let qty = Decimal::try_from(fill.qty)?;
        let price = Decimal::try_from(fill.price)?;
        let fee = Decimal::try_from(fill.fee)?;
        if !qty_ok(qty) || !price_ok(price) || fee.abs() > price * qty {
            return Err(Error::InvalidArgument(format!(
                "order {client_id}: fill out of range: {qty} @ {price} fee {fee}"
            )));
        }
        Ok((qty, price, fee))
    }

    /// Rebuilds the view from the host's records (at `init` and after `restore`): the host's
    /// position and working orders win over what the view held.
    fn rebuild(&mut self) -> Result<(), Error> {
        let account = Account::read(&[SYMBOL])?;
        let qty = account.position_qty(SYMBOL)?;
        let avg = match account.position(SYMBOL) {
            Some(p) => Decimal::try_from(p.avg_price)?,
            None => Decimal::ZERO,
        };
        if qty.abs() > MAX_QTY || (!qty.is_zero() && !price_ok(avg)) {
            return Err(Error::InvalidArgument(format!(
                "host position out of range: {qty} @ {avg}"
            )));
        }
        if qty != self.book.qty {
            colony_sdk::info!(
                "position view {} differs from the host's {qty}: taking the host's",
                self.book.qty
            );
            self.book.qty = qty;
            self.book.trip = None;
            self.book.open_fees = Decimal::ZERO;
        }
        self.book.avg = if qty.is_zero() { Decimal::ZERO } else { avg };
        // In flight: exactly the orders the host still works.
        let working: BTreeMap<&str, &orders::OpenOrder> = account
            .open_in(SYMBOL)
            .map(|o| (o.client_id.as_str(), o))
            .collect();
        self.book.pending.retain(|id, _| {
            let live = working.contains_key(id.as_str());
            if !live {
                colony_sdk::info!("order {id} is not working on the host: no longer in flight");
            }
            live
        });
        for (id, o) in working {
            let reduces = self.book.side().is_some_and(|s| s != o.side.into());
            let purpose = match reduces {
                true => Purpose::Exit {
                    reason: ExitReason::Unknown,
                },
                false => Purpose::Entry {
                    confidence: self.book.confidence,
                },
            };
            self.book
                .pending
                .entry(id.to_string())
                .or_insert(Pending {
                    purpose,
                    placed: o.created,
                });
        }
        self.fills = FillTracker::from_account(&account)?;
        Ok(())
    }

    fn publish_outcome(&mut self, o: &Outcome) -> Result<(), Error> {
        self.stats.outcomes += 1;
        if o.pnl > Decimal::ZERO {
            self.stats.wins += 1;
        }
        colony_sdk::info!(
            "round trip {}: {} {} {} -> {} pnl {} ({}); {} of {} won, net pnl {}",
            self.stats.outcomes,
            o.side.as_str(),
            o.qty,
            o.entry,
            o.exit,
            o.pnl,
            o.reason.as_str(),
            self.stats.wins,
            self.stats.outcomes,
            self.book.net_pnl
        );
        messaging::publish(OUTCOMES, &encode(o)?)
    }
}

/// What became of a `place`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Placed {
    /// Submitted (or waiting for approval).
    Out,
    /// Refused for its size (a grant limit or `risk.max-notional` / `risk.max-qty`).
    TooBig,
    /// Refused for another reason.
    Refused,
}

/// Puts a proposal to the risk-manager: the first reply within the timeout, if it decodes.
fn ask_risk_manager(p: &Proposal, timeout_ms: u32) -> Option<Decision> {
    let payload = encode(p).ok()?;
    match messaging::gather(PROPOSALS, &payload, 1, timeout_ms) {
        Ok(replies) => match replies.first() {
            Some(reply) => decode::<Decision>(PROPOSALS, &reply.payload)
                .inspect_err(|e| colony_sdk::warn!("unusable risk answer: {e:?}"))
                .ok(),
            None => {
                colony_sdk::warn!("no risk answer within {timeout_ms} ms: no trade");
                None
            }
        },
        Err(e) => {
            colony_sdk::warn!("cannot ask the risk-manager ({e:?}): no trade");
            None
        }
    }
}

impl Agent for Trader {
    fn init(config: &str) -> Result<Self, Error> {
        let config = Config::parse(config)?;
        let book: Book = state::get_json(BOOK)?.unwrap_or_default();
        let stats: Stats = state::get_json(STATS)?.unwrap_or_default();
        let mut trader = Trader {
            config,
            book,
            stats,
            venue: orders::place,
            fills: FillTracker::default(),
        };
        // The host's records win over the stored view (the paper exchange starts empty).
        trader.rebuild()?;
        let (config, book, stats) = (&trader.config, &trader.book, &trader.stats);
        market::subscribe(SYMBOL, Kinds::CANDLE)?;
        messaging::subscribe(SIGNALS)?;
        colony_sdk::info!(
            "trader on {SYMBOL}: base size {}, stop {} take {}; position {}; {} orders, {} round trips so far",
            config.base_qty,
            config.stop_loss,
            config.take_profit,
            book.qty,
            stats.orders,
            stats.outcomes
        );
        Ok(trader)
    }

    fn on_market(&mut self, event: MarketEvent) -> Result<(), Error> {
        let MarketEvent::Candle(candle) = event else {
            return Ok(());
        };
        if candle.symbol != SYMBOL {
            return Ok(());
        }
        let bar = Bar::from_candle(&candle)?;
        if !bar.prices_ok() {
            return Ok(());
        }
        self.on_bar(&bar)
    }

    fn on_message(&mut self, msg: Message) -> Result<(), Error> {
        if let Some(r) = Recovery::from_message(&msg) {
            // `init` and `restore` rebuilt the view from the host already.
            colony_sdk::warn!(
                "restart {} after {} failed: {} events since {} not seen{}; position {} as the host has it",
                r.restart,
                r.failed_call,
                r.missed_events,
                r.missed_since,
                if r.redelivered { "; the failed order event follows" } else { "" },
                self.book.qty
            );
            return Ok(());
        }
        if msg.subject != SIGNALS {
            return Ok(());
        }
        let sig: Signal = decode(&msg.subject, &msg.payload)?;
        sig.validate()?;
        if sig.symbol != SYMBOL {
            return Ok(());
        }
        let timeout = self.config.gather_timeout_ms;
        self.on_signal(&sig, |p| ask_risk_manager(p, timeout))?;
        state::set_json(STATS, &self.stats)
    }

    fn on_order(&mut self, event: OrderEvent) -> Result<(), Error> {
        self.on_order_event(&event)
    }

    fn snapshot(&mut self) -> Vec<u8> {
        serde_json::to_vec(&Snapshot {
            book: self.book.clone(),
        })
        .unwrap_or_default()
    }

    fn restore(&mut self, snapshot: Vec<u8>) -> Result<(), Error> {
        if let Some(s) = swarm_protocol::snapshot::<Snapshot>("trader", &snapshot)? {
            self.book = s.book;
        }
        // The snapshot may be older than the host's records (a restart's recovery point).
        self.rebuild()
    }
}

colony_sdk::export_agent!(Trader, manifest = MANIFEST);

#[cfg(test)]
mod tests {
    use super::*;
    use colony_sdk::{Fill, Priority, Side};
    use std::str::FromStr;
    use swarm_protocol::{Verdict, test_candle};

    fn d(s: &str) -> Decimal {
        Decimal::from_str(s).unwrap()
    }

    fn wire(s: &str) -> colony_sdk::Decimal {
        colony_sdk::Decimal::try_from(d(s)).unwrap()
    }

    fn signal(side: TradeSide, confidence: &str, price: &str) -> Signal {
        Signal {
            symbol: SYMBOL.into(),
            side,
            confidence: d(confidence),
            price: d(price),
            ts: 0,
            reason: "ema-cross".into(),
        }
    }

    fn approve(qty: &str) -> impl FnOnce(&Proposal) -> Option<Decision> {
        let qty = d(qty);
        move |_| {
            Some(Decision {
                approved: true,
                reason: Verdict::Ok,
                qty,
            })
        }
    }

    /// The event the paper exchange sends when `client_id` fills completely.
    fn filled(client_id: &str, side: Side, qty: &str, price: &str, fee: &str) -> OrderEvent {
        OrderEvent {
            client_id: client_id.into(),
            venue_order_id: Some("paper-1".into()),
            symbol: SYMBOL.into(),
            side,
            status: OrderStatus::Filled,
            filled_qty: wire(qty),
            avg_price: Some(wire(price)),
            last_fill: Some(Fill {
                qty: wire(qty),
                price: wire(price),
                fee: wire(fee),
                fee_currency: "USDT".into(),
                ts: 0,
            }),
            reject_reason: None,
            ts: 0,
        }
    }

    fn outcomes() -> Vec<Outcome> {
        messaging::sent()
            .into_iter()
            .filter(|(s, _)| s == OUTCOMES)
            .map(|(_, p)| serde_json::from_slice(&p).unwrap())
            .collect()
    }

    fn bar(a: &mut Trader, minute: u64, close: &str) {
        let c = test_candle(SYMBOL, minute * NS_PER_MIN, d(close));
        a.on_market(MarketEvent::Candle(c)).unwrap();
    }

    #[test]
    fn an_approved_signal_becomes_a_market_order() {
        let mut t = Trader::init("{}").unwrap();
        let mut asked = None;
        t.on_signal(&signal(TradeSide::Buy, "0.70", "40000"), |p| {
            asked = Some(p.clone());
            approve("0.25")(p)
        })
        .unwrap();
        let p = asked.unwrap();
        assert_eq!(
            (p.qty, p.position, p.equity),
            (d("0.25"), d("0"), d("100000"))
        );
        let placed = orders::placed();
        assert_eq!(placed.len(), 1);
        assert_eq!(placed[0].client_id, "t1");
        assert_eq!(placed[0].side, Side::Buy);
        assert_eq!(placed[0].qty, wire("0.25"));
        assert!(!placed[0].reduce_only);
        assert!(t.book.has_entry_pending());
        // A second signal while the entry is in flight does nothing.
        t.on_signal(&signal(TradeSide::Buy, "0.9", "40000"), approve("0.5"))
            .unwrap();
        assert_eq!(orders::placed().len(), 1);
    }

    #[test]
    fn vetoes_and_silence_place_nothing() {
        let mut t = Trader::init("{}").unwrap();
        t.on_signal(&signal(TradeSide::Buy, "0.40", "40000"), |_| {
            Some(Decision {
                approved: false,
                reason: Verdict::LowConfidence,
                qty: Decimal::ZERO,
            })
        })
        .unwrap();
        t.on_signal(&signal(TradeSide::Sell, "0.70", "40000"), |_| None)
            .unwrap();
        // In a native test `gather` has no bus: the real path fails closed too.
        let msg = Message {
            id: "1".into(),
            subject: SIGNALS.into(),
            sender: "analyst".into(),
            correlation_id: None,
            reply_to: None,
            priority: Priority::Normal,
            timestamp: 0,
            headers: Vec::new(),
            payload: encode(&signal(TradeSide::Buy, "0.7", "40000")).unwrap(),
        };
        t.on_message(msg).unwrap();
        assert!(orders::placed().is_empty());
        assert_eq!(t.stats.vetoed.get("low-confidence"), Some(&1));
        assert_eq!(t.stats.no_answer, 2);
        let stats: Stats = state::get_json(STATS).unwrap().unwrap();
        assert_eq!(stats.signals, 3);
    }

    #[test]
    fn high_confidence_doubles_the_size_and_the_approved_qty_caps_it() {
        let mut t = Trader::init("{}").unwrap();
        let mut asked = Decimal::ZERO;
        t.on_signal(&signal(TradeSide::Sell, "0.85", "40000"), |p| {
            asked = p.qty;
            approve("0.4")(p)
        })
        .unwrap();
        assert_eq!(asked, d("0.5"));
        let placed = orders::placed();
        assert_eq!((placed[0].side, placed[0].qty), (Side::Sell, wire("0.4")));
    }

    #[test]
    fn a_round_trip_publishes_its_outcome() {
        let mut t = Trader::init("{}").unwrap();
        t.on_signal(&signal(TradeSide::Buy, "0.70", "40000"), approve("0.25"))
            .unwrap();
        t.on_order(filled("t1", Side::Buy, "0.25", "40000", "5"))
            .unwrap();
        assert_eq!(t.book.qty, d("0.25"));
        assert!(!t.book.has_entry_pending());
        // The stored view follows the fill.
        assert_eq!(
            state::get_json::<Book>(BOOK).unwrap().unwrap().qty,
            d("0.25")
        );
        // +3 % reaches the take-profit.
        bar(&mut t, 1, "41000");
        assert_eq!(orders::placed().len(), 1, "2.5 % is below the target");
        bar(&mut t, 2, "41200");
        let exit = orders::placed().pop().unwrap();
        assert_eq!((exit.client_id.as_str(), exit.side), ("t2", Side::Sell));
        assert!(exit.reduce_only);
        assert_eq!(exit.qty, wire("0.25"));
        bar(&mut t, 3, "41300");
        assert_eq!(orders::placed().len(), 2, "one exit at a time");
        t.on_order(filled("t2", Side::Sell, "0.25", "41200", "5.15"))
            .unwrap();
        let out = outcomes();
        assert_eq!(out.len(), 1);
        let o = &out[0];
        assert_eq!(
            (o.side, o.entry, o.exit, o.qty, o.reason),
            (
                TradeSide::Buy,
                d("40000"),
                d("41200"),
                d("0.25"),
                ExitReason::TakeProfit
            )
        );
        // 0.25 × 1200 − 5 − 5.15
        assert_eq!(o.pnl, d("289.85"));
        assert_eq!(o.confidence, d("0.70"));
        assert_eq!(t.book.qty, Decimal::ZERO);
        assert_eq!(t.book.net_pnl, d("289.85"));
        assert_eq!((t.stats.outcomes, t.stats.wins), (1, 1));
    }

    #[test]
    fn a_reverse_signal_closes_then_enters_the_other_way() {
        let mut t = Trader::init("{}").unwrap();
        t.on_signal(&signal(TradeSide::Buy, "0.70", "40000"), approve("0.25"))
            .unwrap();
        t.on_order(filled("t1", Side::Buy, "0.25", "40000", "0"))
            .unwrap();
        bar(&mut t, 1, "39800");
        let mut asked = None;
        t.on_signal(&signal(TradeSide::Sell, "0.70", "39800"), |p| {
            asked = Some(p.clone());
            approve("0.25")(p)
        })
        .unwrap();
        let p = asked.unwrap();
        assert_eq!(
            p.position,
            Decimal::ZERO,
            "judged as if the exit had filled"
        );
        assert_eq!(p.equity, d("99950"));
        let placed = orders::placed();
        assert_eq!(placed.len(), 3);
        assert!(placed[1].reduce_only && placed[1].side == Side::Sell);
        assert!(!placed[2].reduce_only && placed[2].side == Side::Sell);
        t.on_order(filled("t2", Side::Sell, "0.25", "39800", "0"))
            .unwrap();
        t.on_order(filled("t3", Side::Sell, "0.25", "39800", "0"))
            .unwrap();
        let out = outcomes();
        assert_eq!(out.len(), 1);
        assert_eq!((out[0].reason, out[0].pnl), (ExitReason::Reverse, d("-50")));
        assert_eq!(t.book.qty, d("-0.25"));
        // Stop-loss on the short: +1.5 % against it.
        bar(&mut t, 2, "40397");
        let exit = orders::placed().pop().unwrap();
        assert_eq!((exit.side, exit.reduce_only), (Side::Buy, true));
        assert_eq!(
            t.book.pending.get("t4").map(|p| p.purpose),
            Some(Purpose::Exit {
                reason: ExitReason::StopLoss
            })
        );
    }

    #[test]
    fn a_flip_in_one_fill_closes_the_trip_and_opens_the_rest() {
        let mut b = Book::default();
        let entry = Some(Purpose::Entry {
            confidence: d("0.6"),
        });
        assert!(
            b.apply_fill(TradeSide::Buy, d("1"), d("100"), d("1"), entry)
                .is_none()
        );
        assert!(
            b.apply_fill(TradeSide::Buy, d("1"), d("110"), d("1"), entry)
                .is_none()
        );
        assert_eq!((b.qty, b.avg, b.open_fees), (d("2"), d("105"), d("2")));
        // Sell 3 at 120 (fee 3): closes 2 (gross 30, fees 2 + 2), opens 1 short (fee 1).
        let o = b
            .apply_fill(TradeSide::Sell, d("3"), d("120"), d("3"), None)
            .unwrap();
        assert_eq!(
            (o.qty, o.pnl, o.reason),
            (d("2"), d("26"), ExitReason::Unknown)
        );
        assert_eq!((b.qty, b.avg, b.open_fees), (d("-1"), d("120"), d("1")));
        assert_eq!(b.net_pnl, d("26"));
    }

    /// A host whose grant check denies orders over 0.35 BTC, as a `max_notional=15000` grant
    /// would at about 43,000 USDT (the trader treats a denial like a risk rejection).
    fn grant_limited(order: &OrderRequest) -> Result<orders::OrderAck, Error> {
        if Decimal::try_from(order.qty).unwrap() > d("0.35") {
            return Err(Error::Denied(
                "orders.place:BTC-PERP max_notional 15000 < 20000".into(),
            ));
        }
        orders::place(order)
    }

    #[test]
    fn a_size_refusal_is_retried_at_the_base_size() {
        let mut t = Trader::init("{}").unwrap();
        t.venue = grant_limited;
        t.on_signal(&signal(TradeSide::Buy, "0.9", "40000"), approve("0.5"))
            .unwrap();
        let placed = orders::placed();
        assert_eq!(placed.len(), 1, "the refused order never reached the venue");
        assert_eq!(
            (placed[0].client_id.as_str(), placed[0].qty),
            ("t2", wire("0.25"))
        );
        assert_eq!(t.stats.host_refusals.get("denied"), Some(&1));
        assert_eq!(t.stats.orders, 2);
        // A normal-size entry that is refused is not retried, nor is a denial for another
        // reason than size.
        let mut u = Trader::init("{}").unwrap();
        u.venue = |_| Err(Error::Denied("orders.place:BTC-PERP".into()));
        u.on_signal(&signal(TradeSide::Buy, "0.7", "40000"), approve("0.25"))
            .unwrap();
        u.on_signal(&signal(TradeSide::Buy, "0.9", "40000"), approve("0.5"))
            .unwrap();
        assert_eq!(u.stats.orders, 2);
        assert!(!u.book.has_entry_pending());
    }

    #[test]
    fn a_risk_rejection_in_the_ack_is_retried_and_counted_once() {
        let mut t = Trader::init("{}").unwrap();
        t.venue = |o| {
            if Decimal::try_from(o.qty).unwrap() > d("0.35") {
                return Ok(orders::OrderAck {
                    client_id: o.client_id.clone(),
                    status: AckStatus::Rejected,
                    reject_reason: Some("risk.max-notional".into()),
                    detail: "20000 > 15000".into(),
                });
            }
            orders::place(o)
        };
        t.on_signal(&signal(TradeSide::Sell, "0.9", "40000"), approve("0.5"))
            .unwrap();
        // The event that follows the rejected ack.
        let mut rejected = filled("t1", Side::Sell, "0", "40000", "0");
        rejected.status = OrderStatus::Rejected;
        rejected.last_fill = None;
        rejected.reject_reason = Some("risk.max-notional".into());
        t.on_order(rejected).unwrap();
        assert_eq!(t.stats.host_refusals.get("risk.max-notional"), Some(&1));
        let placed = orders::placed();
        assert_eq!((placed.len(), placed[0].qty), (1, wire("0.25")));
        assert!(t.book.pending.contains_key("t2"));
    }

    #[test]
    fn a_rejected_order_event_clears_the_order() {
        let mut t = Trader::init("{}").unwrap();
        t.on_signal(&signal(TradeSide::Buy, "0.7", "40000"), approve("0.25"))
            .unwrap();
        let mut rejected = filled("t1", Side::Buy, "0", "40000", "0");
        rejected.status = OrderStatus::Rejected;
        rejected.last_fill = None;
        rejected.reject_reason = Some("venue.no-market".into());
        t.on_order(rejected).unwrap();
        assert!(t.book.pending.is_empty());
        assert_eq!(t.stats.host_refusals.get("venue.no-market"), Some(&1));
        assert_eq!(t.book.qty, Decimal::ZERO);
    }

    #[test]
    fn client_ids_are_unique_across_instances() {
        let mut t = Trader::init("{}").unwrap();
        t.on_signal(&signal(TradeSide::Buy, "0.7", "40000"), approve("0.25"))
            .unwrap();
        let mut u = Trader::init("{}").unwrap();
        u.on_signal(&signal(TradeSide::Buy, "0.7", "40000"), approve("0.25"))
            .unwrap();
        let ids: Vec<_> = orders::placed().into_iter().map(|o| o.client_id).collect();
        assert_eq!(ids, ["t1", "t2"]);
    }

    #[test]
    fn init_takes_the_hosts_position_and_snapshots_round_trip() {
        let stored = Book {
            qty: d("0.25"),
            avg: d("40000"),
            ..Book::default()
        };
        state::set_json(BOOK, &stored).unwrap();
        // The native stand-in's position is flat, like a freshly started paper exchange.
        let mut t = Trader::init("{}").unwrap();
        assert_eq!(t.book.qty, Decimal::ZERO);
        // A snapshot (sleep, hot swap) carries the view as it was, where the host agrees.
        t.book = stored.clone();
        let snap = t.snapshot();
        orders::stub_account(vec![(SYMBOL.into(), wire("0.25"), wire("40000"))], Vec::new());
        let mut u = Trader::init("{}").unwrap();
        u.restore(snap).unwrap();
        assert_eq!(u.book, stored);
        assert!(u.restore(b"[1]".to_vec()).is_err());
    }

    /// The demo's failure: long 0.25, a reverse signal sent the exit (t2) and the short entry
    /// (t3), both filled at once, and the instance trapped before it saw either fill. The new
    /// instance restores a snapshot from before; the two fill events are still queued.
    #[test]
    fn after_a_restart_queued_fills_already_on_the_host_are_not_counted_twice() {
        let before = Book {
            qty: d("0.25"),
            avg: d("40000"),
            confidence: d("0.7"),
            pending: BTreeMap::from([(
                "t2".to_string(),
                Pending {
                    purpose: Purpose::Exit {
                        reason: ExitReason::Reverse,
                    },
                    placed: 0,
                },
            )]),
            ..Book::default()
        };
        state::set_json(BOOK, &before).unwrap();
        // The host: short 0.25 at 39,800, nothing working.
        orders::stub_account(vec![(SYMBOL.into(), wire("-0.25"), wire("39800"))], Vec::new());
        let mut t = Trader::init("{}").unwrap();
        t.restore(serde_json::to_vec(&Snapshot { book: before }).unwrap())
            .unwrap();
        assert_eq!((t.book.qty, t.book.avg), (d("-0.25"), d("39800")));
        assert!(t.book.pending.is_empty(), "t2 is final on the host");
        // The queued events: in the host's position already.
        t.on_order(filled("t2", Side::Sell, "0.25", "39800", "0"))
            .unwrap();
        t.on_order(filled("t3", Side::Sell, "0.25", "39800", "0"))
            .unwrap();
        assert_eq!(t.book.qty, d("-0.25"), "the host's position, not -0.5");
        assert_eq!(t.stats.fills, 0);
        // A stop-loss on the short buys back 0.25, reduce-only: the right side and size.
        bar(&mut t, 1, "40500");
        let exit = orders::placed().pop().unwrap();
        assert_eq!(
            (exit.side, exit.qty, exit.reduce_only),
            (Side::Buy, wire("0.25"), true)
        );
        // Its own orders' fills count again.
        t.on_order(filled(&exit.client_id, Side::Buy, "0.25", "40500", "0"))
            .unwrap();
        assert_eq!(t.book.qty, Decimal::ZERO);
    }

    #[test]
    fn a_rebuild_keeps_in_flight_exactly_the_orders_the_host_works() {
        let open = |id: &str, side: Side, filled: &str| orders::OpenOrder {
            client_id: id.into(),
            venue_order_id: None,
            symbol: SYMBOL.into(),
            side,
            order_type: orders::OrderType::Market,
            price: None,
            qty: wire("0.25"),
            filled_qty: wire(filled),
            status: OrderStatus::PartiallyFilled,
            created: 7,
        };
        orders::stub_account(
            vec![(SYMBOL.into(), wire("0.1"), wire("40000"))],
            vec![open("t5", Side::Sell, "0.15")],
        );
        let mut t = Trader::init("{}").unwrap();
        assert_eq!(
            t.book.pending.get("t5"),
            Some(&Pending {
                purpose: Purpose::Exit {
                    reason: ExitReason::Unknown
                },
                placed: 7
            })
        );
        // The rest of t5 fills: only the part beyond the 0.15 the host showed counts.
        let mut e = filled("t5", Side::Sell, "0.1", "40000", "0");
        e.filled_qty = wire("0.25");
        t.on_order(e).unwrap();
        assert_eq!(t.book.qty, Decimal::ZERO);
        assert!(t.book.pending.is_empty());
    }

    #[test]
    fn stale_pending_orders_are_forgotten() {
        let mut t = Trader::init("{}").unwrap();
        bar(&mut t, 100, "40000");
        t.on_signal(&signal(TradeSide::Buy, "0.7", "40000"), approve("0.25"))
            .unwrap();
        bar(&mut t, 105, "40000");
        assert!(t.book.has_entry_pending());
        bar(&mut t, 112, "40000");
        assert!(!t.book.has_entry_pending(), "no final event for 10 minutes");
    }

    #[test]
    fn bad_input_is_refused_without_panicking() {
        let mut t = Trader::init("{}").unwrap();
        let mut bad = filled("t9", Side::Buy, "0.25", "40000", "0");
        if let Some(f) = bad.last_fill.as_mut() {
            f.price = colony_sdk::Decimal::new(-1, 0);
        }
        assert!(t.on_order(bad).is_err());
        let msg = Message {
            id: "1".into(),
            subject: SIGNALS.into(),
            sender: "x".into(),
            correlation_id: None,
            reply_to: None,
            priority: Priority::Normal,
            timestamp: 0,
            headers: Vec::new(),
            payload: br#"{"symbol":"BTC-PERP","side":"buy","confidence":"7","price":"1","ts":0,"reason":""}"#.to_vec(),
        };
        assert!(t.on_message(msg).is_err());
        assert!(Trader::init(r#"{"base_qty":"0"}"#).is_err());
        assert!(orders::placed().is_empty());
    }
}
