//! The in-process paper exchange: the default venue, which fills orders against the market data
//! the host receives (live or replayed) and keeps each agent's positions, fees and cash.
//!
//! **Architecture Invariant:** this module is pure. It knows nothing about wasmtime, the bus,
//! the journal or the clock: the caller passes every market event ([`PaperExchange::on_market`])
//! and the time of every request (`now`). The order of calls is the order of time; nothing here
//! compares an event's timestamp with an order's. Money is [`Decimal`]; every product and sum a
//! fill makes is checked, and a fill that would overflow is refused (`venue.overflow`), never a
//! panic and never a silently wrong balance.
//!
//! ## The market of a symbol
//!
//! Incoming orders fill against the best source the symbol has had, in this order:
//!
//! | source | from | liquidity |
//! |---|---|---|
//! | book | the latest [`MarketEvent::Book`] (via [`L2Book::apply_snapshot`]) | the displayed levels, walked best first |
//! | quote | the latest [`MarketEvent::Quote`], while the symbol has had no book | one level per side: best price and its size (a price or size ≤ 0 is no level) |
//! | last price | the latest trade price or candle close, while it has had neither | one level per side at that price with unlimited size, so candle-only data (the shipped BTC-PERP replay) is enough to trade |
//! | none | — | every order is rejected with `venue.no-market` |
//!
//! The mark (for unrealised PnL and equity) is the book's mid, else the latest quote's mid, else
//! the last trade price or candle close; a position without a mark has no unrealised PnL.
//!
//! ## Fill model
//!
//! | order | on arrival | afterwards |
//! |---|---|---|
//! | market | walks the opposite side (one taker fill per level, so slippage shows); the remainder is cancelled; nothing at all → `venue.no-liquidity` | — |
//! | limit GTC | the marketable part fills as taker at the levels up to the limit ([`L2Book::walk_to`]); the rest rests | maker fills, see below |
//! | limit IOC | as GTC; the rest is cancelled | — |
//! | FOK (limit or market) | fills completely if the levels within the limit hold the whole quantity, else `Accepted` then `Cancelled` with no fill | — |
//! | post-only | `venue.post-only` if any of it would fill on arrival (market orders always would); otherwise as its time in force | maker fills |
//!
//! A resting order fills as maker, at its own limit price, when a later market event of its
//! symbol crosses it:
//!
//! | event | a resting buy at L fills | a resting sell at L fills |
//! |---|---|---|
//! | book | up to the displayed ask size at prices ≤ L | up to the displayed bid size at prices ≥ L |
//! | quote | up to the ask size if ask ≤ L | up to the bid size if bid ≥ L |
//! | trade | up to the trade size if price ≤ L (whoever aggressed) | up to the trade size if price ≥ L |
//! | candle | its whole remainder if low ≤ L | its whole remainder if high ≥ L |
//!
//! Partial fills are reported as they happen; maker fills carry the event's time (a candle's is
//! its close, `start + interval`). **Simplification:** each market event is an independent
//! snapshot, and paper fills never deplete it: every resting order is matched against the whole
//! event as if it were the only order, and the next order sees the same book again. Only within
//! one incoming order's walk is a level consumed. So one agent's paper orders never change what
//! another agent's fill, which keeps the agents' simulations independent of each other.
//!
//! ## Checks, in the order they run
//!
//! | check | code | rejects when |
//! |---|---|---|
//! | duplicate id | `venue.duplicate-client-id` | the agent's client id names an order the exchange still knows (see [`PaperExchange::forget_closed`]) |
//! | order shape | `venue.invalid-order` | quantity ≤ 0; a limit order without a positive price; a market order with a price |
//! | market | `venue.no-market` | the symbol has had no book, quote, trade or candle |
//! | self-match | `venue.self-match` | the order would cross a working order of the same agent on the same symbol (a market order crosses any): the incoming order is rejected before anything fills (cancel-newest), so an agent never trades with itself |
//! | post-only | `venue.post-only` | a post-only order would take liquidity |
//! | liquidity | `venue.no-liquidity` | a market order (not FOK) fills nothing |
//! | overflow | `venue.overflow` | a fill's notional, fee or position leaves [`Decimal`]'s range; a working order that hits it on a maker fill is rejected and leaves the book |
//! | cancel | `venue.unknown-order` | ([`PaperExchange::cancel`]) the order is not working: unknown, filled or already closed |
//!
//! An order that passes is `Accepted` with venue id `paper-<n>` (n counts accepted orders from
//! 1), then come its fills and, for a remainder that cannot rest, `Cancelled`. Rejected orders
//! get no venue id.
//!
//! ## Accounting
//!
//! Derivatives-style: each agent's account holds the quote currency only, starting at
//! `initial_balance`; positions per symbol are signed (shorts allowed) and cost nothing to open.
//! Cash = initial + realised PnL − fees; equity = cash + unrealised PnL at the marks. Positions
//! are [`Ledger`]s, as the risk engine's are: adding moves the average, reducing realises
//! (price − average) × quantity on the closed part, flipping realises the closed part and opens
//! the rest at the fill price. The position keeps its cost basis (Σ quantity × price of the open
//! part) rather than a rounded average, and the cost of a partly closed part is rounded to at
//! least 12 decimals; so `cash + unrealised = initial + Σ signed qty × (mark − price) − fees`
//! holds exactly. Fees are `bps × notional / 10000` per fill, in the quote currency; negative
//! bps are rebates.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use rust_decimal::Decimal;

use crate::book::{L2Book, Walk};
use crate::ledger::Ledger;
use colony_model::market::{BookLevel, MarketEvent, Quote, Side, Timestamp};
use colony_model::order::{
    ExecKind, ExecReport, FillReport, Liquidity, OrderKind, OrderRequest, OrderState, TimeInForce,
};

/// Basis points in one.
const BPS_PER_UNIT: Decimal = Decimal::from_parts(10_000, 0, 0, false, 0);

const NANOS_PER_SEC: u64 = 1_000_000_000;

/// Why the paper exchange refused an order or a cancel; [`PaperReject::as_str`] is the stable
/// code of the module table.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum PaperReject {
    /// `venue.duplicate-client-id`
    DuplicateClientId,
    /// `venue.invalid-order`
    InvalidOrder,
    /// `venue.no-market`
    NoMarket,
    /// `venue.self-match`
    SelfMatch,
    /// `venue.post-only`
    PostOnly,
    /// `venue.no-liquidity`
    NoLiquidity,
    /// `venue.overflow`
    Overflow,
    /// `venue.unknown-order`
    UnknownOrder,
}

impl PaperReject {
    /// Every code, in the order of the module table.
    pub const ALL: [PaperReject; 8] = [
        PaperReject::DuplicateClientId,
        PaperReject::InvalidOrder,
        PaperReject::NoMarket,
        PaperReject::SelfMatch,
        PaperReject::PostOnly,
        PaperReject::NoLiquidity,
        PaperReject::Overflow,
        PaperReject::UnknownOrder,
    ];

    /// The stable code, for example `venue.self-match`.
    pub fn as_str(self) -> &'static str {
        match self {
            PaperReject::DuplicateClientId => "venue.duplicate-client-id",
            PaperReject::InvalidOrder => "venue.invalid-order",
            PaperReject::NoMarket => "venue.no-market",
            PaperReject::SelfMatch => "venue.self-match",
            PaperReject::PostOnly => "venue.post-only",
            PaperReject::NoLiquidity => "venue.no-liquidity",
            PaperReject::Overflow => "venue.overflow",
            PaperReject::UnknownOrder => "venue.unknown-order",
        }
    }

    fn kind(self, message: String) -> ExecKind {
        ExecKind::Rejected {
            code: self.as_str().to_owned(),
            message,
        }
    }
}

/// Fees and starting cash of the paper exchange.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PaperConfig {
    /// Fee of a maker fill in basis points of its notional; negative is a rebate.
    pub maker_fee_bps: Decimal,
    /// Fee of a taker fill in basis points of its notional; negative is a rebate.
    pub taker_fee_bps: Decimal,
    /// The currency of cash, fees and PnL, for example `USDT`.
    pub quote_currency: Arc<str>,
    /// Cash each agent's account starts with.
    pub initial_balance: Decimal,
}

impl Default for PaperConfig {
    /// Maker 2 bps, taker 5 bps, 100 000 USDT per agent.
    fn default() -> Self {
        PaperConfig {
            maker_fee_bps: Decimal::TWO,
            taker_fee_bps: Decimal::from(5),
            quote_currency: Arc::from("USDT"),
            initial_balance: Decimal::from(100_000),
        }
    }
}

/// An agent's position in one symbol, valued at the symbol's mark.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PaperPosition {
    /// Instrument.
    pub symbol: Arc<str>,
    /// Signed quantity; negative is short.
    pub qty: Decimal,
    /// Average entry price of the open quantity; zero when flat.
    pub avg_price: Decimal,
    /// PnL realised by reducing fills, before fees.
    pub realised_pnl: Decimal,
    /// Fees paid on this symbol (negative for net rebates).
    pub fees: Decimal,
    /// `qty × (mark − avg_price)`; zero without a mark.
    pub unrealised_pnl: Decimal,
    /// The price the position is valued at, if the symbol has one.
    pub mark: Option<Decimal>,
}

/// Cash of an agent's account in one currency.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Balance {
    /// Currency, for example `USDT`.
    pub currency: Arc<str>,
    /// Initial balance + realised PnL − fees.
    pub total: Decimal,
    /// What may be used for new orders: equal to `total`, since the paper exchange has no
    /// margin model and reserves nothing for positions or open orders.
    pub available: Decimal,
}

/// The in-process paper exchange; see the module documentation for the fill model.
#[derive(Debug)]
pub struct PaperExchange {
    config: PaperConfig,
    markets: HashMap<Arc<str>, Market>,
    accounts: BTreeMap<Arc<str>, Account>,
    /// Working orders per symbol, by acceptance number (time priority).
    resting: HashMap<Arc<str>, BTreeMap<u64, Resting>>,
    /// Orders accepted so far; the `n` of `paper-<n>`.
    accepted: u64,
}

/// What the exchange knows of one symbol's market.
#[derive(Debug, Default)]
struct Market {
    book: Option<L2Book>,
    quote: Option<Quote>,
    /// Last trade price or candle close.
    last: Option<Decimal>,
}

#[derive(Debug, Default)]
struct Account {
    orders: HashMap<String, Entry>,
    ledgers: BTreeMap<Arc<str>, Ledger>,
}

#[derive(Debug)]
struct Entry {
    state: OrderState,
    /// The acceptance number while the order works (rests); `None` once it is closed.
    working: Option<u64>,
}

/// A working order, as the matcher needs it.
#[derive(Debug, Clone)]
struct Resting {
    agent: Arc<str>,
    client_id: String,
    side: Side,
    price: Decimal,
}

fn opposite(side: Side) -> Side {
    match side {
        Side::Buy => Side::Sell,
        Side::Sell => Side::Buy,
    }
}

/// Whether an order on `side` limited at `limit` accepts `price` (a buy pays at most, a sell
/// gets at least, the limit).
fn within(side: Side, price: Decimal, limit: Decimal) -> bool {
    match side {
        Side::Buy => price <= limit,
        Side::Sell => price >= limit,
    }
}

fn fee(bps: Decimal, qty: Decimal, price: Decimal) -> Option<Decimal> {
    qty.checked_mul(price)?
        .checked_mul(bps)?
        .checked_div(BPS_PER_UNIT)
}

/// A walk over a single level (a quote's side, or the last price with `size` = the order's).
fn walk_one(side: Side, qty: Decimal, limit: Option<Decimal>, level: BookLevel) -> Walk {
    let qty = qty.max(Decimal::ZERO);
    let usable = level.price > Decimal::ZERO
        && level.size > Decimal::ZERO
        && limit.is_none_or(|limit| within(side, level.price, limit));
    if !usable || qty.is_zero() {
        return Walk {
            remaining: qty,
            ..Walk::default()
        };
    }
    let take = level.size.min(qty);
    Walk {
        fills: vec![BookLevel {
            price: level.price,
            size: take,
        }],
        filled: take,
        remaining: qty.saturating_sub(take),
        notional: level.price.saturating_mul(take),
    }
}

impl Market {
    fn is_known(&self) -> bool {
        self.book.is_some() || self.quote.is_some() || self.last.is_some()
    }

    /// What an incoming order would take on arrival (see the module's first table).
    fn take(&self, side: Side, qty: Decimal, limit: Option<Decimal>) -> Walk {
        if let Some(book) = &self.book {
            book.walk_to(side, qty, limit)
        } else if let Some(q) = &self.quote {
            let level = match side {
                Side::Buy => BookLevel {
                    price: q.ask,
                    size: q.ask_size,
                },
                Side::Sell => BookLevel {
                    price: q.bid,
                    size: q.bid_size,
                },
            };
            walk_one(side, qty, limit, level)
        } else if let Some(price) = self.last {
            walk_one(side, qty, limit, BookLevel { price, size: qty })
        } else {
            Walk {
                remaining: qty.max(Decimal::ZERO),
                ..Walk::default()
            }
        }
    }

    fn mark(&self) -> Option<Decimal> {
        let quote_mid = || {
            let q = self.quote.as_ref()?;
            if q.bid <= Decimal::ZERO || q.ask <= Decimal::ZERO {
                return None;
            }
            q.bid.checked_add(q.ask)?.checked_div(Decimal::TWO)
        };
        self.book
            .as_ref()
            .and_then(L2Book::mid)
            .or_else(quote_mid)
            .or(self.last)
    }
}

/// How much of a resting order on `side` at `limit` with `remaining` left `event` fills
/// (the module's second table). `book` is the symbol's book after the event was applied.
fn maker_qty(
    event: &MarketEvent,
    book: Option<&L2Book>,
    side: Side,
    limit: Decimal,
    remaining: Decimal,
) -> Decimal {
    let available = match event {
        MarketEvent::Book(_) => book.map_or(Decimal::ZERO, |book| {
            book.levels(opposite(side))
                .take_while(|l| within(side, l.price, limit))
                .fold(Decimal::ZERO, |sum, l| sum.saturating_add(l.size))
        }),
        MarketEvent::Quote(q) => {
            let (price, size) = match side {
                Side::Buy => (q.ask, q.ask_size),
                Side::Sell => (q.bid, q.bid_size),
            };
            if price > Decimal::ZERO && within(side, price, limit) {
                size
            } else {
                Decimal::ZERO
            }
        }
        MarketEvent::Trade(t) => {
            if t.price > Decimal::ZERO && within(side, t.price, limit) {
                t.size
            } else {
                Decimal::ZERO
            }
        }
        MarketEvent::Candle(c) => {
            let extreme = match side {
                Side::Buy => c.low,
                Side::Sell => c.high,
            };
            if extreme > Decimal::ZERO && within(side, extreme, limit) {
                remaining
            } else {
                Decimal::ZERO
            }
        }
    };
    available.max(Decimal::ZERO).min(remaining)
}

/// When an event's information became known: a candle's at its close.
fn event_time(event: &MarketEvent) -> Timestamp {
    match event {
        MarketEvent::Candle(c) => c
            .start
            .saturating_add(u64::from(c.interval_secs).saturating_mul(NANOS_PER_SEC)),
        other => other.ts(),
    }
}

/// Appends a report about `state`'s order and applies it to `state`.
fn report(state: &mut OrderState, kind: ExecKind, ts: Timestamp, out: &mut Vec<ExecReport>) {
    let r = ExecReport::new(&state.request, state.venue_order_id.clone(), kind, ts);
    state.apply(&r);
    out.push(r);
}

/// The fill reports and the ledger after `levels` fill one order; `None` on overflow.
fn plan(
    mut ledger: Ledger,
    side: Side,
    levels: &[BookLevel],
    bps: Decimal,
    liquidity: Liquidity,
    currency: &Arc<str>,
) -> Option<(Vec<FillReport>, Ledger)> {
    let mut fills = Vec::with_capacity(levels.len());
    for level in levels {
        let fee = fee(bps, level.size, level.price)?;
        ledger = ledger.apply(side, level.size, level.price, fee)?;
        fills.push(FillReport {
            qty: level.size,
            price: level.price,
            fee,
            fee_currency: currency.clone(),
            liquidity,
        });
    }
    Some((fills, ledger))
}

fn unrest(resting: &mut HashMap<Arc<str>, BTreeMap<u64, Resting>>, symbol: &str, seq: u64) {
    if let Some(orders) = resting.get_mut(symbol) {
        orders.remove(&seq);
        if orders.is_empty() {
            resting.remove(symbol);
        }
    }
}

impl PaperExchange {
    /// An exchange with no market data, no accounts and no orders.
    pub fn new(config: PaperConfig) -> Self {
        PaperExchange {
            config,
            markets: HashMap::new(),
            accounts: BTreeMap::new(),
            resting: HashMap::new(),
            accepted: 0,
        }
    }

    /// The fees and starting cash.
    pub fn config(&self) -> &PaperConfig {
        &self.config
    }

    /// Updates the symbol's market (book snapshot / quote / trade / candle) and fills resting
    /// limit orders the new prices cross (maker fills). Appends reports to `out`.
    pub fn on_market(&mut self, event: &MarketEvent, out: &mut Vec<ExecReport>) {
        let symbol = event.symbol();
        let market = match self.markets.get_mut(symbol) {
            Some(market) => market,
            None => self.markets.entry(symbol.clone()).or_default(),
        };
        match event {
            MarketEvent::Book(b) => market
                .book
                .get_or_insert_with(|| L2Book::new(symbol.clone()))
                .apply_snapshot(&b.bids, &b.asks, b.ts),
            MarketEvent::Quote(q) => market.quote = Some(q.clone()),
            MarketEvent::Trade(t) if t.price > Decimal::ZERO => market.last = Some(t.price),
            MarketEvent::Candle(c) if c.close > Decimal::ZERO => market.last = Some(c.close),
            MarketEvent::Trade(_) | MarketEvent::Candle(_) => {}
        }
        let Some(resting) = self.resting.get(symbol) else {
            return;
        };
        let book = self.markets.get(symbol).and_then(|m| m.book.as_ref());
        // Decide first, fill afterwards: the common case (nothing crosses) allocates nothing.
        let mut hits: Vec<(u64, Decimal)> = Vec::new();
        for (&seq, r) in resting {
            let Some(entry) = self
                .accounts
                .get(&r.agent)
                .and_then(|a| a.orders.get(&r.client_id))
            else {
                continue;
            };
            let qty = maker_qty(event, book, r.side, r.price, entry.state.remaining());
            if qty > Decimal::ZERO {
                hits.push((seq, qty));
            }
        }
        let ts = event_time(event);
        for (seq, qty) in hits {
            self.maker_fill(symbol, seq, qty, ts, out);
        }
    }

    fn maker_fill(
        &mut self,
        symbol: &Arc<str>,
        seq: u64,
        qty: Decimal,
        ts: Timestamp,
        out: &mut Vec<ExecReport>,
    ) {
        let Some(r) = self.resting.get(symbol).and_then(|m| m.get(&seq)).cloned() else {
            return;
        };
        let Some(account) = self.accounts.get_mut(&r.agent) else {
            return;
        };
        let Some(entry) = account.orders.get_mut(&r.client_id) else {
            return;
        };
        let ledger = account.ledgers.get(symbol).copied().unwrap_or_default();
        let level = BookLevel {
            price: r.price,
            size: qty,
        };
        match plan(
            ledger,
            r.side,
            &[level],
            self.config.maker_fee_bps,
            Liquidity::Maker,
            &self.config.quote_currency,
        ) {
            Some((fills, ledger)) => {
                account.ledgers.insert(symbol.clone(), ledger);
                for f in fills {
                    report(&mut entry.state, ExecKind::Fill(f), ts, out);
                }
                if entry.state.remaining().is_zero() {
                    entry.working = None;
                    unrest(&mut self.resting, symbol, seq);
                }
            }
            None => {
                entry.working = None;
                unrest(&mut self.resting, symbol, seq);
                let message = format!(
                    "fill of {qty} at {} on {symbol} overflows the account",
                    r.price
                );
                report(
                    &mut entry.state,
                    PaperReject::Overflow.kind(message),
                    ts,
                    out,
                );
            }
        }
    }

    /// Places an order that risk already passed. Appends Accepted then any fills, and
    /// Cancelled for an IOC/FOK (or market) remainder, or Rejected{code,...}.
    pub fn place(&mut self, order: &OrderRequest, now: Timestamp, out: &mut Vec<ExecReport>) {
        let known = self
            .accounts
            .get(&*order.agent)
            .is_some_and(|a| a.orders.contains_key(&order.client_id));
        if known {
            // The report is about the new request; the known order's state stays as it is.
            out.push(ExecReport::new(
                order,
                None,
                PaperReject::DuplicateClientId.kind(format!(
                    "client order id {:?} of agent {:?} is already in use",
                    order.client_id, order.agent
                )),
                now,
            ));
            return;
        }
        let mut state = OrderState::new(order.clone(), now);
        let working = self.execute(&mut state, now, out);
        self.accounts
            .entry(order.agent.clone())
            .or_default()
            .orders
            .insert(order.client_id.clone(), Entry { state, working });
    }

    /// Runs the checks and the arrival fills; returns the acceptance number if the order rests.
    fn execute(
        &mut self,
        state: &mut OrderState,
        now: Timestamp,
        out: &mut Vec<ExecReport>,
    ) -> Option<u64> {
        let (agent, symbol) = (state.request.agent.clone(), state.request.symbol.clone());
        let (side, kind, qty, tif) = (
            state.request.side,
            state.request.kind,
            state.request.qty,
            state.request.tif,
        );
        let limit = match kind {
            OrderKind::Limit => state.request.price,
            OrderKind::Market => None,
        };
        let walk = match self.admit(&state.request) {
            Ok(walk) => walk,
            Err((code, message)) => {
                report(state, code.kind(message), now, out);
                return None;
            }
        };
        if tif == TimeInForce::Fok && walk.remaining > Decimal::ZERO {
            self.accept(state, now, out);
            report(state, ExecKind::Cancelled, now, out);
            return None;
        }
        if kind == OrderKind::Market && walk.filled.is_zero() {
            let message = format!("no {} liquidity on {symbol}", side_name(opposite(side)));
            report(state, PaperReject::NoLiquidity.kind(message), now, out);
            return None;
        }
        let ledger = self
            .accounts
            .get(&agent)
            .and_then(|a| a.ledgers.get(&symbol))
            .copied()
            .unwrap_or_default();
        let Some((fills, ledger)) = plan(
            ledger,
            side,
            &walk.fills,
            self.config.taker_fee_bps,
            Liquidity::Taker,
            &self.config.quote_currency,
        ) else {
            let message = format!("fills of {qty} on {symbol} overflow the account");
            report(state, PaperReject::Overflow.kind(message), now, out);
            return None;
        };
        let seq = self.accept(state, now, out);
        if !fills.is_empty() {
            self.accounts
                .entry(agent.clone())
                .or_default()
                .ledgers
                .insert(symbol.clone(), ledger);
        }
        for f in fills {
            report(state, ExecKind::Fill(f), now, out);
        }
        if walk.remaining.is_zero() {
            return None;
        }
        let Some(price) = limit.filter(|_| tif == TimeInForce::Gtc) else {
            report(state, ExecKind::Cancelled, now, out);
            return None;
        };
        self.resting.entry(symbol).or_default().insert(
            seq,
            Resting {
                agent,
                client_id: state.request.client_id.clone(),
                side,
                price,
            },
        );
        Some(seq)
    }

    /// The checks after the duplicate id; on success, what the order takes on arrival.
    fn admit(&self, order: &OrderRequest) -> Result<Walk, (PaperReject, String)> {
        let invalid = |what: &str| {
            Err((
                PaperReject::InvalidOrder,
                format!("order {:?}: {what}", order.client_id),
            ))
        };
        if order.qty <= Decimal::ZERO {
            return invalid("quantity must be positive");
        }
        let limit = match (order.kind, order.price) {
            (OrderKind::Limit, Some(p)) if p > Decimal::ZERO => Some(p),
            (OrderKind::Limit, _) => return invalid("a limit order needs a positive price"),
            (OrderKind::Market, None) => None,
            (OrderKind::Market, Some(_)) => return invalid("a market order has no price"),
        };
        let Some(market) = self.markets.get(&order.symbol).filter(|m| m.is_known()) else {
            return Err((
                PaperReject::NoMarket,
                format!("no market data for {}", order.symbol),
            ));
        };
        let own = self
            .resting
            .get(&order.symbol)
            .into_iter()
            .flat_map(|m| m.values())
            .find(|r| {
                r.agent == order.agent
                    && r.side != order.side
                    && limit.is_none_or(|limit| within(order.side, r.price, limit))
            });
        if let Some(own) = own {
            return Err((
                PaperReject::SelfMatch,
                format!(
                    "order {:?} would trade with the agent's own order {:?} at {} on {}",
                    order.client_id, own.client_id, own.price, order.symbol
                ),
            ));
        }
        let walk = market.take(order.side, order.qty, limit);
        if order.post_only && (order.kind == OrderKind::Market || walk.filled > Decimal::ZERO) {
            return Err((
                PaperReject::PostOnly,
                format!(
                    "post-only order {:?} would take liquidity on {}",
                    order.client_id, order.symbol
                ),
            ));
        }
        Ok(walk)
    }

    /// Gives the order its venue id and reports it accepted; returns its acceptance number.
    fn accept(&mut self, state: &mut OrderState, now: Timestamp, out: &mut Vec<ExecReport>) -> u64 {
        self.accepted = self.accepted.saturating_add(1);
        state.venue_order_id = Some(format!("paper-{}", self.accepted));
        report(state, ExecKind::Accepted, now, out);
        self.accepted
    }

    /// Cancels a working order; appends Cancelled, or Rejected{code:"venue.unknown-order"} if
    /// it is not working. Returns whether it was working. The rejection names the order's
    /// symbol and side if the exchange knows the order, else an empty symbol.
    pub fn cancel(
        &mut self,
        agent: &str,
        client_id: &str,
        now: Timestamp,
        out: &mut Vec<ExecReport>,
    ) -> bool {
        let entry = self
            .accounts
            .get_mut(agent)
            .and_then(|a| a.orders.get_mut(client_id));
        match entry {
            Some(entry) if entry.working.is_some() => {
                if let Some(seq) = entry.working.take() {
                    unrest(&mut self.resting, &entry.state.request.symbol, seq);
                }
                report(&mut entry.state, ExecKind::Cancelled, now, out);
                true
            }
            known => {
                // Not applied to the order's state: the order itself did not change.
                let (symbol, side, venue_order_id, why) = match known {
                    Some(e) => (
                        e.state.request.symbol.clone(),
                        e.state.request.side,
                        e.state.venue_order_id.clone(),
                        e.state.status.as_str(),
                    ),
                    None => (Arc::from(""), Side::Buy, None, "unknown"),
                };
                out.push(ExecReport {
                    agent: Arc::from(agent),
                    client_id: client_id.to_owned(),
                    symbol,
                    side,
                    venue_order_id,
                    kind: PaperReject::UnknownOrder.kind(format!(
                        "order {client_id:?} of agent {agent:?} is not working ({why})"
                    )),
                    ts: now,
                });
                false
            }
        }
    }

    /// Cancels every working order of `agent` (None = every agent), oldest first: for the kill
    /// switch.
    pub fn cancel_all(&mut self, agent: Option<&str>, now: Timestamp, out: &mut Vec<ExecReport>) {
        let mut victims: Vec<(u64, Arc<str>, String)> = self
            .resting
            .values()
            .flat_map(|m| m.iter())
            .filter(|(_, r)| agent.is_none_or(|a| *r.agent == *a))
            .map(|(&seq, r)| (seq, r.agent.clone(), r.client_id.clone()))
            .collect();
        victims.sort_unstable_by_key(|v| v.0);
        for (_, agent, client_id) in victims {
            self.cancel(&agent, &client_id, now, out);
        }
    }

    /// The agent's working orders, oldest first.
    pub fn open_orders(&self, agent: &str) -> Vec<OrderState> {
        let Some(account) = self.accounts.get(agent) else {
            return Vec::new();
        };
        let mut open: Vec<(u64, &OrderState)> = account
            .orders
            .values()
            .filter_map(|e| e.working.map(|seq| (seq, &e.state)))
            .collect();
        open.sort_unstable_by_key(|o| o.0);
        open.into_iter().map(|(_, s)| s.clone()).collect()
    }

    /// Any order of the agent the exchange still knows, working or closed (for reconciliation
    /// and queries).
    pub fn order(&self, agent: &str, client_id: &str) -> Option<&OrderState> {
        self.accounts
            .get(agent)?
            .orders
            .get(client_id)
            .map(|e| &e.state)
    }

    /// Forgets closed orders last updated before `before` and returns how many; their client
    /// ids may be used again. The router calls it when the risk engine's day rolls over (risk
    /// lets client ids be reused the next day), which also bounds what the exchange remembers.
    pub fn forget_closed(&mut self, before: Timestamp) -> usize {
        let mut forgotten = 0;
        for account in self.accounts.values_mut() {
            let n = account.orders.len();
            account
                .orders
                .retain(|_, e| e.working.is_some() || e.state.updated >= before);
            forgotten += n - account.orders.len();
        }
        forgotten
    }

    /// The symbol's mark price, if it has one (see the module documentation).
    pub fn mark(&self, symbol: &str) -> Option<Decimal> {
        self.markets.get(symbol).and_then(Market::mark)
    }

    fn valued(&self, symbol: &Arc<str>, ledger: &Ledger) -> PaperPosition {
        let mark = self.mark(symbol);
        PaperPosition {
            symbol: symbol.clone(),
            qty: ledger.qty,
            avg_price: ledger.avg_price(),
            realised_pnl: ledger.realised,
            fees: ledger.fees,
            unrealised_pnl: ledger.unrealised(mark),
            mark,
        }
    }

    /// The agent's position in `symbol` (flat if it never traded it).
    pub fn position(&self, agent: &str, symbol: &str) -> PaperPosition {
        match self
            .accounts
            .get(agent)
            .and_then(|a| a.ledgers.get_key_value(symbol))
        {
            Some((symbol, ledger)) => self.valued(symbol, ledger),
            None => self.valued(&Arc::from(symbol), &Ledger::default()),
        }
    }

    /// The agent's positions in every symbol it traded, flat ones included, by symbol.
    pub fn positions(&self, agent: &str) -> Vec<PaperPosition> {
        self.accounts.get(agent).map_or_else(Vec::new, |a| {
            a.ledgers
                .iter()
                .map(|(symbol, ledger)| self.valued(symbol, ledger))
                .collect()
        })
    }

    /// Initial balance + realised PnL − fees, over every symbol.
    fn cash(&self, agent: &str) -> Decimal {
        let start = self.config.initial_balance;
        self.accounts.get(agent).map_or(start, |a| {
            a.ledgers.values().fold(start, |cash, l| {
                cash.saturating_add(l.realised).saturating_sub(l.fees)
            })
        })
    }

    /// The agent's cash: one balance, in the quote currency.
    pub fn balances(&self, agent: &str) -> Vec<Balance> {
        let cash = self.cash(agent);
        vec![Balance {
            currency: self.config.quote_currency.clone(),
            total: cash,
            available: cash,
        }]
    }

    /// Cash + unrealised PnL at the marks.
    pub fn equity(&self, agent: &str) -> Decimal {
        let cash = self.cash(agent);
        self.accounts.get(agent).map_or(cash, |a| {
            a.ledgers.iter().fold(cash, |equity, (symbol, l)| {
                equity.saturating_add(l.unrealised(self.mark(symbol)))
            })
        })
    }

    /// Every agent that placed an order, by name.
    pub fn agents(&self) -> Vec<Arc<str>> {
        self.accounts.keys().cloned().collect()
    }
}

fn side_name(side: Side) -> &'static str {
    match side {
        Side::Buy => "bid",
        Side::Sell => "ask",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ledger::signed;
    use colony_model::market::{Book, Candle, Trade};
    use colony_model::order::OrderStatus;
    use proptest::prelude::*;
    use std::str::FromStr;

    const SYM: &str = "BTC-USDT";
    const T0: Timestamp = 1_700_000_000_000_000_000;

    fn d(s: &str) -> Decimal {
        Decimal::from_str(s).unwrap()
    }

    fn lv(price: &str, size: &str) -> BookLevel {
        BookLevel {
            price: d(price),
            size: d(size),
        }
    }

    fn book(bids: &[(&str, &str)], asks: &[(&str, &str)]) -> MarketEvent {
        MarketEvent::Book(Book {
            symbol: SYM.into(),
            bids: bids.iter().map(|(p, s)| lv(p, s)).collect(),
            asks: asks.iter().map(|(p, s)| lv(p, s)).collect(),
            ts: T0,
        })
    }

    fn quote(bid: &str, ask: &str, size: &str) -> MarketEvent {
        MarketEvent::Quote(Quote {
            symbol: SYM.into(),
            bid: d(bid),
            bid_size: d(size),
            ask: d(ask),
            ask_size: d(size),
            ts: T0,
        })
    }

    fn trade(price: &str, size: &str) -> MarketEvent {
        MarketEvent::Trade(Trade {
            symbol: SYM.into(),
            price: d(price),
            size: d(size),
            aggressor: Side::Buy,
            ts: T0,
        })
    }

    /// A one-minute candle (open, high, low, close).
    fn candle(o: &str, h: &str, l: &str, c: &str) -> MarketEvent {
        MarketEvent::Candle(Candle {
            symbol: SYM.into(),
            interval_secs: 60,
            start: T0,
            open: d(o),
            high: d(h),
            low: d(l),
            close: d(c),
            volume: d("10"),
        })
    }

    fn order(agent: &str, id: &str, side: Side, price: Option<&str>, qty: &str) -> OrderRequest {
        OrderRequest {
            client_id: id.into(),
            agent: agent.into(),
            symbol: SYM.into(),
            side,
            kind: if price.is_some() {
                OrderKind::Limit
            } else {
                OrderKind::Market
            },
            price: price.map(d),
            qty: d(qty),
            tif: TimeInForce::Gtc,
            post_only: false,
            reduce_only: false,
        }
    }

    fn limit(id: &str, side: Side, price: &str, qty: &str) -> OrderRequest {
        order("a", id, side, Some(price), qty)
    }

    fn market(id: &str, side: Side, qty: &str) -> OrderRequest {
        order("a", id, side, None, qty)
    }

    fn with_tif(o: OrderRequest, tif: TimeInForce) -> OrderRequest {
        OrderRequest { tif, ..o }
    }

    /// The reports as short lines: `accepted`, `fill 1@100 fee 0.05 taker`, `cancelled`,
    /// `rejected venue.no-market`.
    fn log(out: &[ExecReport]) -> Vec<String> {
        out.iter()
            .map(|r| match &r.kind {
                ExecKind::Accepted => "accepted".to_owned(),
                ExecKind::Fill(f) => format!(
                    "fill {}@{} fee {} {}",
                    f.qty.normalize(),
                    f.price.normalize(),
                    f.fee.normalize(),
                    match f.liquidity {
                        Liquidity::Maker => "maker",
                        Liquidity::Taker => "taker",
                    }
                ),
                ExecKind::Cancelled => "cancelled".to_owned(),
                ExecKind::Expired => "expired".to_owned(),
                ExecKind::Rejected { code, .. } => format!("rejected {code}"),
            })
            .collect()
    }

    fn place(x: &mut PaperExchange, o: &OrderRequest) -> Vec<String> {
        let mut out = Vec::new();
        x.place(o, T0, &mut out);
        assert!(
            out.iter()
                .all(|r| r.client_id == o.client_id && r.agent == o.agent)
        );
        log(&out)
    }

    fn feed(x: &mut PaperExchange, e: &MarketEvent) -> Vec<String> {
        let mut out = Vec::new();
        x.on_market(e, &mut out);
        log(&out)
    }

    fn exchange() -> PaperExchange {
        PaperExchange::new(PaperConfig::default())
    }

    fn status(x: &PaperExchange, id: &str) -> OrderStatus {
        x.order("a", id).map(|o| o.status).unwrap()
    }

    #[test]
    fn market_buy_walks_three_levels() {
        let mut x = exchange();
        feed(
            &mut x,
            &book(&[("99", "5")], &[("100", "1"), ("101", "2"), ("102", "3")]),
        );
        // Taker fees at 5 bps: 100 × 1 × 0.0005 = 0.05; 101 × 2 × 0.0005 = 0.101;
        // 102 × 1 × 0.0005 = 0.051.
        assert_eq!(
            place(&mut x, &market("m", Side::Buy, "4")),
            [
                "accepted",
                "fill 1@100 fee 0.05 taker",
                "fill 2@101 fee 0.101 taker",
                "fill 1@102 fee 0.051 taker",
            ]
        );
        let o = x.order("a", "m").unwrap();
        assert_eq!(o.status, OrderStatus::Filled);
        assert_eq!(o.venue_order_id.as_deref(), Some("paper-1"));
        // (100 + 202 + 102) / 4 = 101: one unit of slippage over the best ask of 100.
        assert_eq!(o.avg_price(), Some(d("101")));
        assert_eq!(o.fees, d("0.202"));
        let p = x.position("a", SYM);
        assert_eq!((p.qty, p.avg_price, p.fees), (d("4"), d("101"), d("0.202")));
        assert_eq!(p.realised_pnl, Decimal::ZERO);
        // Mark = mid (99 + 100) / 2 = 99.5; unrealised 4 × (99.5 − 101) = −6.
        assert_eq!(p.mark, Some(d("99.5")));
        assert_eq!(p.unrealised_pnl, d("-6"));
        // Cash 100000 − 0.202; equity 99999.798 − 6.
        assert_eq!(x.balances("a")[0].total, d("99999.798"));
        assert_eq!(&*x.balances("a")[0].currency, "USDT");
        assert_eq!(x.equity("a"), d("99993.798"));
        // Paper fills do not deplete the book: the next order sees the ask of 100 again.
        assert_eq!(
            place(&mut x, &market("m2", Side::Buy, "1")),
            ["accepted", "fill 1@100 fee 0.05 taker"]
        );
        assert_eq!(
            x.order("a", "m2").unwrap().venue_order_id.as_deref(),
            Some("paper-2")
        );
    }

    #[test]
    fn market_order_larger_than_the_book() {
        let mut x = exchange();
        feed(&mut x, &book(&[], &[("100", "1"), ("101", "1")]));
        // 100 × 0.0005 = 0.05; 101 × 0.0005 = 0.0505.
        assert_eq!(
            place(&mut x, &market("m", Side::Buy, "5")),
            [
                "accepted",
                "fill 1@100 fee 0.05 taker",
                "fill 1@101 fee 0.0505 taker",
                "cancelled",
            ]
        );
        let o = x.order("a", "m").unwrap();
        assert_eq!(o.status, OrderStatus::Cancelled);
        assert_eq!(o.filled_qty, d("2"));
        assert!(x.open_orders("a").is_empty());
        // Nothing on the bid side at all: rejected, no venue id, nothing filled.
        assert_eq!(
            place(&mut x, &market("s", Side::Sell, "1")),
            ["rejected venue.no-liquidity"]
        );
        let s = x.order("a", "s").unwrap();
        assert_eq!(s.status, OrderStatus::Rejected);
        assert_eq!(s.reject_code.as_deref(), Some("venue.no-liquidity"));
        assert_eq!(s.venue_order_id, None);
        assert_eq!(x.position("a", SYM).qty, d("2"));
    }

    #[test]
    fn resting_limit_fills_as_maker_partially_then_fully() {
        let mut x = exchange();
        feed(&mut x, &book(&[("99", "1")], &[("101", "1")]));
        assert_eq!(
            place(&mut x, &limit("l", Side::Buy, "100", "3")),
            ["accepted"]
        );
        assert_eq!(x.open_orders("a").len(), 1);
        // Asks above the limit fill nothing.
        assert!(feed(&mut x, &book(&[("99", "1")], &[("100.5", "9")])).is_empty());
        // Asks at or below 100 hold 1 + 0.5 = 1.5; filled at the limit, 100.
        // Maker fee 2 bps: 1.5 × 100 × 0.0002 = 0.03.
        assert_eq!(
            feed(
                &mut x,
                &book(
                    &[("98", "1")],
                    &[("99.5", "1"), ("100", "0.5"), ("100.5", "10")]
                )
            ),
            ["fill 1.5@100 fee 0.03 maker"]
        );
        assert_eq!(status(&x, "l"), OrderStatus::PartiallyFilled);
        assert_eq!(x.open_orders("a")[0].remaining(), d("1.5"));
        // 5 at 100 covers the remaining 1.5: 1.5 × 100 × 0.0002 = 0.03.
        assert_eq!(
            feed(&mut x, &book(&[("99", "1")], &[("100", "5")])),
            ["fill 1.5@100 fee 0.03 maker"]
        );
        assert_eq!(status(&x, "l"), OrderStatus::Filled);
        assert!(x.open_orders("a").is_empty());
        // Filled orders do not fill again.
        assert!(feed(&mut x, &book(&[("99", "1")], &[("90", "50")])).is_empty());
        let p = x.position("a", SYM);
        assert_eq!((p.qty, p.avg_price, p.fees), (d("3"), d("100"), d("0.06")));
        assert_eq!(x.balances("a")[0].total, d("99999.94"));
    }

    #[test]
    fn resting_sell_fills_from_quotes_and_trades() {
        let mut x = exchange();
        feed(&mut x, &quote("99", "101", "1"));
        assert_eq!(
            place(&mut x, &limit("s", Side::Sell, "102", "2")),
            ["accepted"]
        );
        // Bid 101.5 < 102: nothing. Bid 102 × 0.5: fills 0.5 at 102 (fee 0.5 × 102 × 0.0002
        // = 0.0102).
        assert!(feed(&mut x, &quote("101.5", "103", "1")).is_empty());
        assert_eq!(
            feed(&mut x, &quote("102", "103", "0.5")),
            ["fill 0.5@102 fee 0.0102 maker"]
        );
        // A trade below the limit fills nothing; one at 103 for 0.25 fills 0.25 at 102
        // (0.25 × 102 × 0.0002 = 0.0051); one for 9 fills the remaining 1.25
        // (1.25 × 102 × 0.0002 = 0.0255).
        assert!(feed(&mut x, &trade("101", "5")).is_empty());
        assert_eq!(
            feed(&mut x, &trade("103", "0.25")),
            ["fill 0.25@102 fee 0.0051 maker"]
        );
        assert_eq!(
            feed(&mut x, &trade("102", "9")),
            ["fill 1.25@102 fee 0.0255 maker"]
        );
        assert_eq!(status(&x, "s"), OrderStatus::Filled);
        assert_eq!(x.position("a", SYM).qty, d("-2"));
    }

    #[test]
    fn ioc_remainder_is_cancelled_and_gtc_remainder_rests() {
        let mut x = exchange();
        feed(
            &mut x,
            &book(&[("99", "1")], &[("100", "1"), ("101", "1"), ("102", "5")]),
        );
        let ioc = with_tif(limit("i", Side::Buy, "101", "3"), TimeInForce::Ioc);
        // 100 × 0.0005 = 0.05; 101 × 0.0005 = 0.0505; 102 is above the limit.
        assert_eq!(
            place(&mut x, &ioc),
            [
                "accepted",
                "fill 1@100 fee 0.05 taker",
                "fill 1@101 fee 0.0505 taker",
                "cancelled",
            ]
        );
        assert_eq!(status(&x, "i"), OrderStatus::Cancelled);
        assert_eq!(x.order("a", "i").unwrap().filled_qty, d("2"));
        // The same as GTC rests its remainder of 1 at 101.
        assert_eq!(
            place(&mut x, &limit("g", Side::Buy, "101", "3")),
            [
                "accepted",
                "fill 1@100 fee 0.05 taker",
                "fill 1@101 fee 0.0505 taker",
            ]
        );
        let open = x.open_orders("a");
        assert_eq!(open.len(), 1);
        assert_eq!(open[0].request.client_id, "g");
        assert_eq!(open[0].status, OrderStatus::PartiallyFilled);
        assert_eq!(open[0].remaining(), d("1"));
        // An IOC that cannot take anything is accepted and cancelled.
        let none = with_tif(limit("n", Side::Buy, "90", "1"), TimeInForce::Ioc);
        assert_eq!(place(&mut x, &none), ["accepted", "cancelled"]);
    }

    #[test]
    fn fok_fills_completely_or_not_at_all() {
        let mut x = exchange();
        feed(
            &mut x,
            &book(&[("99", "1")], &[("100", "1"), ("101", "1"), ("102", "5")]),
        );
        let fok = with_tif(limit("f", Side::Buy, "101", "3"), TimeInForce::Fok);
        assert_eq!(place(&mut x, &fok), ["accepted", "cancelled"]);
        let o = x.order("a", "f").unwrap();
        assert_eq!((o.status, o.filled_qty), (OrderStatus::Cancelled, d("0")));
        assert_eq!(x.position("a", SYM).qty, d("0"));
        assert_eq!(x.balances("a")[0].total, d("100000"));
        // Two fit within 101.
        let fok = with_tif(limit("f2", Side::Buy, "101", "2"), TimeInForce::Fok);
        assert_eq!(
            place(&mut x, &fok),
            [
                "accepted",
                "fill 1@100 fee 0.05 taker",
                "fill 1@101 fee 0.0505 taker",
            ]
        );
        assert_eq!(status(&x, "f2"), OrderStatus::Filled);
        // A market FOK larger than the book is not filled either.
        let fok = with_tif(market("f3", Side::Buy, "8"), TimeInForce::Fok);
        assert_eq!(place(&mut x, &fok), ["accepted", "cancelled"]);
    }

    #[test]
    fn post_only_is_rejected_when_marketable_and_rests_otherwise() {
        let mut x = exchange();
        feed(&mut x, &book(&[("99", "1")], &[("101", "1")]));
        let take = OrderRequest {
            post_only: true,
            ..limit("p1", Side::Buy, "101", "1")
        };
        assert_eq!(place(&mut x, &take), ["rejected venue.post-only"]);
        assert_eq!(status(&x, "p1"), OrderStatus::Rejected);
        assert!(x.open_orders("a").is_empty());
        assert_eq!(x.position("a", SYM).qty, d("0"));
        let rest = OrderRequest {
            post_only: true,
            ..limit("p2", Side::Buy, "100", "1")
        };
        assert_eq!(place(&mut x, &rest), ["accepted"]);
        assert_eq!(x.open_orders("a").len(), 1);
        // It is a maker afterwards: 100 × 0.0002 = 0.02.
        assert_eq!(
            feed(&mut x, &book(&[("99", "1")], &[("100", "1")])),
            ["fill 1@100 fee 0.02 maker"]
        );
        // A post-only market order would always take.
        let m = OrderRequest {
            post_only: true,
            ..market("p3", Side::Sell, "1")
        };
        assert_eq!(place(&mut x, &m), ["rejected venue.post-only"]);
    }

    #[test]
    fn self_match_is_rejected_before_anything_fills() {
        let mut x = exchange();
        feed(&mut x, &book(&[("99", "5")], &[("101", "5")]));
        assert_eq!(
            place(&mut x, &limit("s", Side::Sell, "105", "1")),
            ["accepted"]
        );
        // The book's ask of 101 would fill this buy, but it also crosses a's own 105.
        assert_eq!(
            place(&mut x, &limit("b", Side::Buy, "106", "1")),
            ["rejected venue.self-match"]
        );
        assert_eq!(
            place(&mut x, &market("m", Side::Buy, "1")),
            ["rejected venue.self-match"]
        );
        assert_eq!(x.position("a", SYM).qty, d("0"));
        // Below 105 it does not cross: fills at 101 (101 × 0.0005 = 0.0505).
        assert_eq!(
            place(&mut x, &limit("b2", Side::Buy, "104", "1")),
            ["accepted", "fill 1@101 fee 0.0505 taker"]
        );
        // Another agent's order is no self-match.
        assert_eq!(
            place(&mut x, &order("b", "b", Side::Buy, Some("106"), "1")),
            ["accepted", "fill 1@101 fee 0.0505 taker"]
        );
        // The own order is untouched.
        assert_eq!(status(&x, "s"), OrderStatus::Accepted);
    }

    #[test]
    fn buy_then_sell_higher_realises_pnl_exactly() {
        let mut x = exchange();
        feed(&mut x, &quote("99", "100", "10"));
        // 2 × 100 × 0.0005 = 0.1.
        assert_eq!(
            place(&mut x, &market("b", Side::Buy, "2")),
            ["accepted", "fill 2@100 fee 0.1 taker"]
        );
        feed(&mut x, &quote("110", "111", "10"));
        // 2 × 110 × 0.0005 = 0.11.
        assert_eq!(
            place(&mut x, &market("s", Side::Sell, "2")),
            ["accepted", "fill 2@110 fee 0.11 taker"]
        );
        let p = x.position("a", SYM);
        // Realised 2 × (110 − 100) = 20; fees 0.1 + 0.11 = 0.21.
        assert_eq!((p.qty, p.avg_price), (d("0"), d("0")));
        assert_eq!((p.realised_pnl, p.fees), (d("20"), d("0.21")));
        assert_eq!(p.unrealised_pnl, d("0"));
        // 100000 + 20 − 0.21.
        let b = &x.balances("a")[0];
        assert_eq!((b.total, b.available), (d("100019.79"), d("100019.79")));
        assert_eq!(x.equity("a"), d("100019.79"));
    }

    #[test]
    fn short_then_cover() {
        let mut x = exchange();
        feed(&mut x, &quote("100", "101", "10"));
        // 3 × 100 × 0.0005 = 0.15.
        assert_eq!(
            place(&mut x, &market("s", Side::Sell, "3")),
            ["accepted", "fill 3@100 fee 0.15 taker"]
        );
        let p = x.position("a", SYM);
        assert_eq!((p.qty, p.avg_price), (d("-3"), d("100")));
        // Mark 100.5: −3 × (100.5 − 100) = −1.5.
        assert_eq!(p.unrealised_pnl, d("-1.5"));
        feed(&mut x, &quote("89", "90", "10"));
        // A buy limited at 95 fills at the ask of 90: 3 × 90 × 0.0005 = 0.135.
        assert_eq!(
            place(&mut x, &limit("c", Side::Buy, "95", "3")),
            ["accepted", "fill 3@90 fee 0.135 taker"]
        );
        let p = x.position("a", SYM);
        // Realised 3 × (100 − 90) = 30; fees 0.285; cash 100000 + 30 − 0.285.
        assert_eq!(
            (p.qty, p.realised_pnl, p.fees),
            (d("0"), d("30"), d("0.285"))
        );
        assert_eq!(x.balances("a")[0].total, d("100029.715"));
    }

    #[test]
    fn flip_through_zero() {
        let mut x = exchange();
        feed(&mut x, &trade("100", "1"));
        // Trade-only market: unlimited size at 100. 2 × 100 × 0.0005 = 0.1.
        assert_eq!(
            place(&mut x, &market("b", Side::Buy, "2")),
            ["accepted", "fill 2@100 fee 0.1 taker"]
        );
        feed(&mut x, &trade("120", "1"));
        // 5 × 120 × 0.0005 = 0.3.
        assert_eq!(
            place(&mut x, &market("s", Side::Sell, "5")),
            ["accepted", "fill 5@120 fee 0.3 taker"]
        );
        let p = x.position("a", SYM);
        // Closes 2 for 2 × 20 = 40, opens a short of 3 at 120.
        assert_eq!(
            (p.qty, p.avg_price, p.realised_pnl),
            (d("-3"), d("120"), d("40"))
        );
        feed(&mut x, &trade("110", "1"));
        let p = x.position("a", SYM);
        // −3 × (110 − 120) = 30; cash 100000 + 40 − 0.4 = 100039.6; equity + 30.
        assert_eq!((p.mark, p.unrealised_pnl), (Some(d("110")), d("30")));
        assert_eq!(x.balances("a")[0].total, d("100039.6"));
        assert_eq!(x.equity("a"), d("100069.6"));
    }

    #[test]
    fn average_price_and_partial_close() {
        let mut x = PaperExchange::new(PaperConfig {
            maker_fee_bps: d("0"),
            taker_fee_bps: d("0"),
            ..PaperConfig::default()
        });
        feed(&mut x, &trade("100", "1"));
        place(&mut x, &market("1", Side::Buy, "2"));
        feed(&mut x, &trade("130", "1"));
        place(&mut x, &market("2", Side::Buy, "1"));
        // (2 × 100 + 1 × 130) / 3 = 110.
        assert_eq!(x.position("a", SYM).avg_price, d("110"));
        feed(&mut x, &trade("120", "1"));
        place(&mut x, &market("3", Side::Sell, "2"));
        // 2 × (120 − 110) = 20; 1 left at 110.
        let p = x.position("a", SYM);
        assert_eq!(
            (p.qty, p.avg_price, p.realised_pnl),
            (d("1"), d("110"), d("20"))
        );
        assert_eq!(p.unrealised_pnl, d("10"));
    }

    #[test]
    fn agrees_with_the_risk_engine_positions() {
        use crate::risk::{Fill, RiskEngine};
        let mut x = exchange();
        let mut risk = RiskEngine::default();
        let steps = [
            ("100", Side::Buy, "2"),
            ("130", Side::Buy, "1"),
            ("120", Side::Sell, "2"),
            ("100", Side::Sell, "3"),
            ("90", Side::Buy, "0.5"),
            ("95", Side::Buy, "4"),
        ];
        let mut out = Vec::new();
        for (i, (price, side, qty)) in steps.iter().enumerate() {
            x.on_market(&trade(price, "1"), &mut out);
            out.clear();
            x.place(&market(&i.to_string(), *side, qty), T0, &mut out);
            for r in &out {
                if let ExecKind::Fill(f) = &r.kind {
                    risk.on_fill(&Fill {
                        agent: r.agent.clone(),
                        client_id: None,
                        symbol: r.symbol.clone(),
                        side: r.side,
                        qty: f.qty,
                        price: f.price,
                        fee: f.fee,
                    })
                    .unwrap();
                }
            }
            let (p, q) = (x.position("a", SYM), risk.position("a", SYM));
            assert_eq!((p.qty, p.avg_price), (q.qty, q.avg_price), "step {i}");
            assert_eq!(p.realised_pnl - p.fees, risk.realised_pnl("a"), "step {i}");
        }
    }

    #[test]
    fn mark_prefers_book_then_quote_then_last_price() {
        let mut x = exchange();
        assert_eq!(x.mark(SYM), None);
        feed(&mut x, &trade("100", "1"));
        place(&mut x, &market("b", Side::Buy, "1"));
        assert_eq!(x.position("a", SYM).unrealised_pnl, d("0"));
        // Quote mid (104 + 106) / 2 = 105: 1 × (105 − 100) = 5.
        feed(&mut x, &quote("104", "106", "1"));
        assert_eq!(x.position("a", SYM).unrealised_pnl, d("5"));
        // Book mid (110 + 112) / 2 = 111: 11.
        feed(&mut x, &book(&[("110", "1")], &[("112", "1")]));
        assert_eq!(x.position("a", SYM).unrealised_pnl, d("11"));
        // Once there is a book, quotes and trades do not move the mark.
        feed(&mut x, &quote("120", "122", "1"));
        feed(&mut x, &trade("130", "1"));
        assert_eq!(x.mark(SYM), Some(d("111")));
        // A book with an empty side has no mid: the quote's mid (121) is the mark.
        feed(&mut x, &book(&[("110", "1")], &[]));
        assert_eq!(x.mark(SYM), Some(d("121")));
        // A symbol never traded is flat, and a position without a mark has no unrealised PnL.
        let other = x.position("a", "ETH-USDT");
        assert_eq!((other.qty, other.mark), (d("0"), None));
        assert_eq!(&*other.symbol, "ETH-USDT");
        let ledger = Ledger {
            qty: d("1"),
            cost: d("100"),
            ..Ledger::default()
        };
        assert_eq!(ledger.unrealised(None), d("0"));
    }

    #[test]
    fn candles_alone_are_a_market() {
        let mut x = exchange();
        feed(&mut x, &candle("99", "101", "98", "100"));
        // Taker at the close: 100 × 0.0005 = 0.05.
        assert_eq!(
            place(&mut x, &market("b", Side::Buy, "1")),
            ["accepted", "fill 1@100 fee 0.05 taker"]
        );
        // A marketable limit fills at the close too (price improvement), a passive one rests.
        assert_eq!(
            place(&mut x, &limit("b2", Side::Buy, "101", "1")),
            ["accepted", "fill 1@100 fee 0.05 taker"]
        );
        assert_eq!(
            place(&mut x, &limit("s", Side::Sell, "105", "2")),
            ["accepted"]
        );
        // High 104 < 105: nothing; high 106: the whole 2 at 105
        // (2 × 105 × 0.0002 = 0.042), at the candle's close time.
        assert!(feed(&mut x, &candle("100", "104", "99", "103")).is_empty());
        let mut out = Vec::new();
        x.on_market(&candle("103", "106", "100", "104"), &mut out);
        assert_eq!(log(&out), ["fill 2@105 fee 0.042 maker"]);
        assert_eq!(out[0].ts, T0 + 60 * NANOS_PER_SEC);
        assert_eq!(status(&x, "s"), OrderStatus::Filled);
        let p = x.position("a", SYM);
        // Realised 2 × (105 − 100) = 10; fees 0.05 + 0.05 + 0.042 = 0.142.
        assert_eq!(
            (p.qty, p.realised_pnl, p.fees),
            (d("0"), d("10"), d("0.142"))
        );
        assert_eq!(x.balances("a")[0].total, d("100009.858"));
        // A resting buy fills when the low reaches it.
        place(&mut x, &limit("b3", Side::Buy, "99", "1"));
        assert!(feed(&mut x, &candle("104", "105", "99.5", "100")).is_empty());
        assert_eq!(
            feed(&mut x, &candle("100", "100", "98", "99")),
            ["fill 1@99 fee 0.0198 maker"]
        );
    }

    #[test]
    fn cancel_and_cancel_all() {
        let mut x = exchange();
        feed(&mut x, &book(&[("99", "1")], &[("101", "1")]));
        place(&mut x, &limit("1", Side::Buy, "90", "1"));
        place(&mut x, &limit("2", Side::Sell, "110", "1"));
        place(&mut x, &limit("3", Side::Buy, "91", "1"));
        place(&mut x, &order("b", "1", Side::Buy, Some("92"), "1"));
        let mut out = Vec::new();
        assert!(x.cancel("a", "1", T0 + 1, &mut out));
        assert_eq!(log(&out), ["cancelled"]);
        assert_eq!(out[0].venue_order_id.as_deref(), Some("paper-1"));
        assert_eq!(status(&x, "1"), OrderStatus::Cancelled);
        assert_eq!(x.order("a", "1").unwrap().updated, T0 + 1);
        // Not working any more: rejected, the order stays cancelled.
        out.clear();
        assert!(!x.cancel("a", "1", T0 + 2, &mut out));
        assert_eq!(log(&out), ["rejected venue.unknown-order"]);
        assert_eq!(status(&x, "1"), OrderStatus::Cancelled);
        // A cancelled order does not fill.
        // Asks at 80 fill a's "3" at 91 (91 × 0.0002 = 0.0182) and b's at 92 (0.0184).
        assert_eq!(
            feed(&mut x, &book(&[("99", "1")], &[("80", "9")])),
            ["fill 1@91 fee 0.0182 maker", "fill 1@92 fee 0.0184 maker"]
        );
        assert_eq!(x.position("a", SYM).qty, d("1"));
        // Kill switch for agent a: its working sells "2" and "4"; b's order filled above.
        place(&mut x, &limit("4", Side::Sell, "120", "1"));
        out.clear();
        x.cancel_all(Some("a"), T0 + 3, &mut out);
        assert_eq!(log(&out), ["cancelled", "cancelled"]);
        let ids: Vec<&str> = out.iter().map(|r| r.client_id.as_str()).collect();
        assert_eq!(ids, ["2", "4"]);
        assert!(x.open_orders("a").is_empty());
        // Every agent.
        place(&mut x, &order("b", "2", Side::Sell, Some("130"), "1"));
        place(&mut x, &limit("5", Side::Sell, "130", "1"));
        out.clear();
        x.cancel_all(None, T0 + 4, &mut out);
        let who: Vec<(&str, &str)> = out
            .iter()
            .map(|r| (&*r.agent, r.client_id.as_str()))
            .collect();
        assert_eq!(who, [("b", "2"), ("a", "5")]);
        assert!(x.open_orders("b").is_empty());
        assert_eq!(x.agents(), [Arc::from("a"), Arc::from("b")]);
    }

    #[test]
    fn unknown_cancel() {
        let mut x = exchange();
        let mut out = Vec::new();
        assert!(!x.cancel("a", "nope", T0, &mut out));
        assert_eq!(log(&out), ["rejected venue.unknown-order"]);
        assert_eq!(
            (&*out[0].symbol, out[0].venue_order_id.as_ref()),
            ("", None)
        );
        assert_eq!(x.order("a", "nope"), None);
    }

    #[test]
    fn no_market_and_invalid_orders() {
        let mut x = exchange();
        assert_eq!(
            place(&mut x, &market("m", Side::Buy, "1")),
            ["rejected venue.no-market"]
        );
        assert_eq!(
            x.order("a", "m").unwrap().reject_code.as_deref(),
            Some("venue.no-market")
        );
        // Another symbol's data does not make a market.
        feed(&mut x, &trade("100", "1"));
        let eth = OrderRequest {
            symbol: "ETH-USDT".into(),
            ..limit("e", Side::Buy, "100", "1")
        };
        assert_eq!(place(&mut x, &eth), ["rejected venue.no-market"]);
        let bad = [
            limit("q0", Side::Buy, "100", "0"),
            limit("q-", Side::Buy, "100", "-1"),
            limit("p0", Side::Buy, "0", "1"),
            OrderRequest {
                price: None,
                ..limit("pn", Side::Buy, "100", "1")
            },
            OrderRequest {
                price: Some(d("100")),
                ..market("mp", Side::Buy, "1")
            },
        ];
        for o in &bad {
            assert_eq!(place(&mut x, o), ["rejected venue.invalid-order"], "{o:?}");
        }
        assert_eq!(x.position("a", SYM).qty, d("0"));
    }

    #[test]
    fn duplicate_client_id_until_forgotten() {
        let mut x = exchange();
        feed(&mut x, &trade("100", "1"));
        assert_eq!(
            place(&mut x, &limit("1", Side::Buy, "90", "1")),
            ["accepted"]
        );
        let dup = limit("1", Side::Buy, "100", "5");
        assert_eq!(place(&mut x, &dup), ["rejected venue.duplicate-client-id"]);
        // The first order is untouched.
        let o = x.order("a", "1").unwrap();
        assert_eq!((o.status, o.request.qty), (OrderStatus::Accepted, d("1")));
        // Another agent may use the same id.
        assert_eq!(
            place(&mut x, &order("b", "1", Side::Buy, Some("90"), "1")),
            ["accepted"]
        );
        // Working orders are never forgotten; closed ones are, from before the cutoff.
        assert_eq!(x.forget_closed(T0 + 1), 0);
        let mut out = Vec::new();
        x.cancel("a", "1", T0, &mut out);
        assert_eq!(x.forget_closed(T0), 0);
        assert_eq!(x.forget_closed(T0 + 1), 1);
        assert_eq!(x.order("a", "1"), None);
        assert_eq!(
            place(&mut x, &dup),
            ["accepted", "fill 5@100 fee 0.25 taker"]
        );
    }

    #[test]
    fn negative_fees_are_rebates() {
        let mut x = PaperExchange::new(PaperConfig {
            maker_fee_bps: d("-1"),
            ..PaperConfig::default()
        });
        feed(&mut x, &quote("99", "101", "5"));
        place(&mut x, &limit("b", Side::Buy, "100", "2"));
        // 2 × 100 × −0.0001 = −0.02: the account is paid.
        assert_eq!(
            feed(&mut x, &trade("100", "3")),
            ["fill 2@100 fee -0.02 maker"]
        );
        assert_eq!(x.balances("a")[0].total, d("100000.02"));
    }

    #[test]
    fn overflow_is_a_rejection_not_a_panic() {
        let mut x = exchange();
        let max = Decimal::MAX.to_string();
        feed(&mut x, &trade(&max, "1"));
        assert_eq!(
            place(&mut x, &market("m", Side::Buy, &max)),
            ["rejected venue.overflow"]
        );
        assert_eq!(x.position("a", SYM).qty, d("0"));
        // A resting order whose maker fill overflows leaves the book rejected.
        let mut x = exchange();
        feed(&mut x, &trade("1", "1"));
        assert_eq!(
            place(&mut x, &limit("l", Side::Sell, &max, &max)),
            ["accepted"]
        );
        assert_eq!(
            feed(&mut x, &candle("1", &max, "1", "1")),
            ["rejected venue.overflow"]
        );
        assert!(x.open_orders("a").is_empty());
        assert_eq!(x.balances("a")[0].total, d("100000"));
    }

    #[test]
    fn every_code_is_distinct() {
        let codes: std::collections::HashSet<&str> =
            PaperReject::ALL.iter().map(|c| c.as_str()).collect();
        assert_eq!(codes.len(), PaperReject::ALL.len());
        assert!(codes.iter().all(|c| c.starts_with("venue.")));
    }

    /// One fill in the property test: side, quantity and price in hundredths.
    fn step() -> impl Strategy<Value = (bool, u32, u32)> {
        (any::<bool>(), 1u32..=500, 1u32..=100_000)
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        /// cash + unrealised = initial + Σ signed qty × (mark − price) − fees, exactly, and
        /// the position is the sum of the signed fills, for any sequence of fills and fees.
        #[test]
        fn paper_prop_accounting_is_consistent(
            steps in prop::collection::vec(step(), 1..40),
            mark in 1u32..=100_000,
            taker_bps in -5i64..=10,
        ) {
            let mut x = PaperExchange::new(PaperConfig {
                taker_fee_bps: Decimal::from(taker_bps),
                ..PaperConfig::default()
            });
            let mut out = Vec::new();
            let mut expected_qty = Decimal::ZERO;
            let mut flows = Decimal::ZERO; // Σ signed qty × price
            let mut fees = Decimal::ZERO;
            for (i, (buy, qty, price)) in steps.iter().enumerate() {
                let (qty, price) = (Decimal::new((*qty).into(), 2), Decimal::new((*price).into(), 2));
                let side = if *buy { Side::Buy } else { Side::Sell };
                x.on_market(&MarketEvent::Trade(Trade {
                    symbol: SYM.into(),
                    price,
                    size: Decimal::ONE,
                    aggressor: side,
                    ts: T0,
                }), &mut out);
                out.clear();
                x.place(&market(&i.to_string(), side, &qty.to_string()), T0, &mut out);
                let mut filled = Decimal::ZERO;
                for r in &out {
                    if let ExecKind::Fill(f) = &r.kind {
                        prop_assert_eq!(f.price, price);
                        filled += f.qty;
                        fees += f.fee;
                    }
                }
                prop_assert_eq!(filled, qty);
                expected_qty += signed(side, qty);
                flows += signed(side, qty) * price;
            }
            let mark = Decimal::new(mark.into(), 2);
            x.on_market(&trade(&mark.to_string(), "1"), &mut out);
            let p = x.position("a", SYM);
            prop_assert_eq!(p.qty, expected_qty);
            prop_assert_eq!(p.fees, fees);
            // Σ signed qty × (mark − price) = qty × mark − Σ signed qty × price.
            let expected = PaperConfig::default().initial_balance + expected_qty * mark - flows - fees;
            prop_assert_eq!(x.equity("a"), expected);
            prop_assert_eq!(x.balances("a")[0].total, PaperConfig::default().initial_balance + p.realised_pnl - p.fees);
            prop_assert_eq!(x.equity("a"), x.balances("a")[0].total + p.unrealised_pnl);
        }
    }
}
