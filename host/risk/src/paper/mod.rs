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
//! | limit GTC | the marketable part fills as taker at the levels up to the limit (`L2Book::walk_to`); the rest rests | maker fills, see below |
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
pub(crate) enum PaperReject {
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
    /// Every code, in the order of the module table (for the test that they are distinct).
    #[cfg(test)]
    pub(crate) const ALL: [PaperReject; 8] = [
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
    pub(crate) available: Decimal,
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
mod tests;
