//! bench-agent: the component `colony bench` runs under Colony and under raw wasmtime. Its
//! timer handler returns at once (to measure event delivery); a message `log:N` makes it call
//! the host's `log` N times at trace level (to measure guest→host calls). Started with the
//! configuration `"subscribe"` it subscribes to `bench.>`, answers every request with `ok`
//! and takes any other message without work (to measure the bus). Started with `"market"` it
//! subscribes to `md.>` and takes market data without work (to measure replay throughput).
//! Started with `"orders:SYMBOL"` it subscribes to SYMBOL's quotes and books and places a
//! market order of [`ORDER_QTY`] on every one, buy and sell in turn so it stays flat (to
//! measure tick → decision → risk → paper fill; see [`Trader`]), and answers a request
//! `orders` with the orders it placed and the fills it was told of. A message `req:N:SUBJECT`
//! makes it the requester of a wasm→wasm round trip: it sends N sequential requests to
//! SUBJECT, times each inside the guest, and answers with the round trips (see
//! [`round_trips`]).

use std::time::Instant;

use colony_sdk::log::{Level, log};
use colony_sdk::market::{self, Kinds};
use colony_sdk::messaging;
use colony_sdk::orders::{self, OrderRequest};
use colony_sdk::{
    Agent, Decimal, Error, Manifest, MarketEvent, Message, OrderEvent, OrderStatus, Side, Timestamp,
};

const MANIFEST: Manifest = Manifest::agent(env!("CARGO_PKG_NAME"), env!("CARGO_PKG_VERSION"))
    .description(env!("CARGO_PKG_DESCRIPTION"));

/// Where the results of `req:N:SUBJECT` go when the trigger was not itself a request.
const RESULT_SUBJECT: &str = "bench.result";
/// How long one request may wait for its reply (the event's deadline still applies).
const REQUEST_TIMEOUT_MS: u32 = 1_000;

/// The quantity of every order in the `orders:SYMBOL` mode: 0.001.
pub const ORDER_QTY: Decimal = Decimal::new(1, 3);

struct BenchAgent {
    /// Set in the `orders:SYMBOL` mode.
    trader: Option<Trader>,
}

/// The `orders:SYMBOL` mode's decision: one market order per quote or book of the symbol,
/// with client ids `b1`, `b2`, … and sides alternating from buy, so every second fill
/// flattens the position again and no position or loss limit is ever approached.
struct Trader {
    symbol: String,
    /// Orders placed (the last client id's number).
    placed: u64,
    /// Fills seen in `on-order` (kept so the handler does the least an agent would).
    fills: u64,
}

impl Agent for BenchAgent {
    fn init(config: &str) -> Result<Self, Error> {
        let mut trader = None;
        match config {
            "subscribe" => {
                messaging::subscribe("bench.>")?;
            }
            // Market data arrives in `on_market` (the SDK's default takes it without work).
            "market" => {
                messaging::subscribe("md.>")?;
            }
            _ => {
                if let Some(symbol) = config.strip_prefix("orders:") {
                    market::subscribe(symbol, Kinds::QUOTE | Kinds::BOOK)?;
                    trader = Some(Trader {
                        symbol: symbol.to_string(),
                        placed: 0,
                        fills: 0,
                    });
                }
            }
        }
        Ok(BenchAgent { trader })
    }

    fn on_market(&mut self, event: MarketEvent) -> Result<(), Error> {
        let Some(t) = self.trader.as_mut() else {
            return Ok(());
        };
        let symbol = match &event {
            MarketEvent::Quote(q) => &q.symbol,
            MarketEvent::Book(b) => &b.symbol,
            MarketEvent::Trade(_) | MarketEvent::Candle(_) => return Ok(()),
        };
        if *symbol != t.symbol {
            return Ok(());
        }
        t.placed += 1;
        let side = if t.placed % 2 == 1 {
            Side::Buy
        } else {
            Side::Sell
        };
        let id = format!("b{}", t.placed);
        // A risk refusal is an ack, not an error: the bench sees its `rejected` event and
        // reports the reason code.
        orders::place(&OrderRequest::market(&id, &t.symbol, side, ORDER_QTY))?;
        Ok(())
    }

    fn on_order(&mut self, event: OrderEvent) -> Result<(), Error> {
        if let Some(t) = self.trader.as_mut()
            && event.status == OrderStatus::Filled
        {
            t.fills += 1;
        }
        Ok(())
    }

    fn on_message(&mut self, msg: Message) -> Result<(), Error> {
        let text = std::str::from_utf8(&msg.payload).unwrap_or("");
        if let Some((n, subject)) = text
            .strip_prefix("req:")
            .and_then(|rest| rest.split_once(':'))
            .and_then(|(n, subject)| Some((n.parse::<u32>().ok()?, subject)))
        {
            let result = round_trips(n, subject);
            return match &msg.reply_to {
                Some(reply_to) => messaging::reply(reply_to, result.as_bytes()),
                None => messaging::publish(RESULT_SUBJECT, result.as_bytes()),
            };
        }
        if let Some(reply_to) = &msg.reply_to {
            // `orders` asks the `orders:SYMBOL` mode what it did: `PLACED FILLED`.
            if let (b"orders", Some(t)) = (msg.payload.as_slice(), &self.trader) {
                return messaging::reply(reply_to, format!("{} {}", t.placed, t.fills).as_bytes());
            }
            return messaging::reply(reply_to, b"ok");
        }
        let Some(n) = text
            .strip_prefix("log:")
            .and_then(|n| n.parse::<u32>().ok())
        else {
            return Ok(());
        };
        for _ in 0..n {
            log(Level::Trace, "x");
        }
        Ok(())
    }

    fn on_timer(&mut self, _now: Timestamp) -> Result<(), Error> {
        Ok(())
    }
}

/// Sends `n` requests to `subject` one after another, each timed with the guest's monotonic
/// clock (WASI `monotonic-clock`) from just before the `request` call to just after its reply.
/// Returns the round trips in nanoseconds, in the order measured, separated by spaces; or
/// `err:` and what failed, so the bench reports it instead of waiting for a reply that never
/// comes.
fn round_trips(n: u32, subject: &str) -> String {
    let mut ns = Vec::with_capacity(n as usize);
    for i in 0..n {
        let t = Instant::now();
        if let Err(e) = messaging::request(subject, b"x", REQUEST_TIMEOUT_MS) {
            return format!("err:request {i} of {n} to {subject}: {e:?}");
        }
        ns.push(t.elapsed().as_nanos());
    }
    let mut out = String::with_capacity(ns.len() * 8);
    for (i, v) in ns.iter().enumerate() {
        if i > 0 {
            out.push(' ');
        }
        out.push_str(&v.to_string());
    }
    out
}

colony_sdk::export_agent!(BenchAgent, manifest = MANIFEST);
