//! `colony:plugin/market-data`: subscriptions to the host's feed (delivered to `on-market`)
//! and snapshot queries, each checked against the agent's `market.read:<symbol-pattern>`
//! grants before anything is read (a denial is audited and returned as `error::denied`).
//!
//! A subscription is a bus subscription of the agent's mailbox to
//! `md.*.<symbol>.<kind>` for each kind asked for, so market data from another host over
//! NATS arrives the same way; it counts against the per-instance subscription limit and ends
//! with the instance.

use super::{decimal, refusal};
use crate::bindings::market_data::{Host, Kinds, SymbolStatus};
use crate::bindings::types::{self as wit, Error};
use crate::market::service::MarketService;
use crate::market::types::{self as md, MarketEvent};
use crate::store::StoreState;
use colony_caps::Request;
use colony_model::symbol::check_symbol;

/// Most candles one `candles` call returns.
pub const MAX_CANDLES: u32 = 1_000;

fn quote(q: &md::Quote) -> wit::Quote {
    wit::Quote {
        symbol: q.symbol.to_string(),
        bid: decimal(q.bid),
        bid_size: decimal(q.bid_size),
        ask: decimal(q.ask),
        ask_size: decimal(q.ask_size),
        ts: q.ts,
    }
}

fn book(b: &md::Book) -> wit::Book {
    let levels = |l: &[md::BookLevel]| {
        l.iter()
            .map(|l| wit::BookLevel {
                price: decimal(l.price),
                size: decimal(l.size),
            })
            .collect()
    };
    wit::Book {
        symbol: b.symbol.to_string(),
        bids: levels(&b.bids),
        asks: levels(&b.asks),
        ts: b.ts,
    }
}

fn candle(c: &md::Candle) -> wit::Candle {
    wit::Candle {
        symbol: c.symbol.to_string(),
        interval_secs: c.interval_secs,
        start: c.start,
        open: decimal(c.open),
        high: decimal(c.high),
        low: decimal(c.low),
        close: decimal(c.close),
        volume: decimal(c.volume),
    }
}

/// The guest-visible form of a market event.
pub fn to_wit(event: &MarketEvent) -> wit::MarketEvent {
    match event {
        MarketEvent::Quote(q) => wit::MarketEvent::Quote(quote(q)),
        MarketEvent::Trade(t) => wit::MarketEvent::Trade(wit::Trade {
            symbol: t.symbol.to_string(),
            price: decimal(t.price),
            size: decimal(t.size),
            aggressor: match t.aggressor {
                md::Side::Buy => wit::Side::Buy,
                md::Side::Sell => wit::Side::Sell,
            },
            ts: t.ts,
        }),
        MarketEvent::Book(b) => wit::MarketEvent::Book(book(b)),
        MarketEvent::Candle(c) => wit::MarketEvent::Candle(candle(c)),
    }
}

impl StoreState {
    /// The symbol is well formed and granted, and there is a feed.
    fn readable(&mut self, symbol: &str) -> Result<std::sync::Arc<MarketService>, Error> {
        check_symbol(symbol).map_err(|e| Error::InvalidArgument(e.to_string()))?;
        self.check(&Request::MarketRead { symbol })
            .map_err(refusal)?;
        self.market
            .clone()
            .ok_or_else(|| Error::Unavailable("this host has no market-data feed".into()))
    }
}

fn not_yet(symbol: &str) -> Error {
    Error::NotFound(format!("no market data for {symbol} yet"))
}

impl Host for StoreState {
    async fn subscribe(
        &mut self,
        symbol: String,
        kinds: Kinds,
    ) -> wasmtime::Result<Result<u64, Error>> {
        if let Err(e) = self.readable(&symbol) {
            return Ok(Err(e));
        }
        if kinds == Kinds::empty() {
            return Ok(Err(Error::InvalidArgument("no kinds asked for".into())));
        }
        let Some(link) = self.bus.as_mut() else {
            return Ok(Err(Error::Unavailable(
                "market-data subscriptions need the bus".into(),
            )));
        };
        let patterns: Vec<String> = if kinds == Kinds::all() {
            vec![format!("md.*.{symbol}.*")]
        } else {
            [
                (Kinds::QUOTE, "quote"),
                (Kinds::TRADE, "trade"),
                (Kinds::BOOK, "book"),
                (Kinds::CANDLE, "candle"),
            ]
            .into_iter()
            .filter(|(k, _)| kinds.contains(*k))
            .map(|(_, name)| format!("md.*.{symbol}.{name}"))
            .collect()
        };
        let mut ids = Vec::new();
        for p in &patterns {
            match link.subscribe_for_host(p) {
                Ok(id) => ids.push(id),
                Err(e) => {
                    for id in ids {
                        link.unsubscribe_for_host(id);
                    }
                    return Ok(Err(Error::LimitExceeded(e)));
                }
            }
        }
        let id = ids[0].get();
        self.market_subs.push((id, ids));
        Ok(Ok(id))
    }

    async fn unsubscribe(&mut self, id: u64) -> wasmtime::Result<Result<(), Error>> {
        let Some(i) = self.market_subs.iter().position(|(s, _)| *s == id) else {
            return Ok(Err(Error::NotFound(format!("no market subscription {id}"))));
        };
        let (_, ids) = self.market_subs.swap_remove(i);
        if let Some(link) = self.bus.as_mut() {
            for id in ids {
                link.unsubscribe_for_host(id);
            }
        }
        Ok(Ok(()))
    }

    async fn quote(&mut self, symbol: String) -> wasmtime::Result<Result<wit::Quote, Error>> {
        Ok(self
            .readable(&symbol)
            .and_then(|m| m.quote(&symbol).ok_or_else(|| not_yet(&symbol)))
            .map(|q| quote(&q)))
    }

    async fn book(
        &mut self,
        symbol: String,
        depth: u32,
    ) -> wasmtime::Result<Result<wit::Book, Error>> {
        Ok(self
            .readable(&symbol)
            .and_then(|m| {
                m.book(&symbol, depth as usize)
                    .ok_or_else(|| not_yet(&symbol))
            })
            .map(|b| book(&b)))
    }

    async fn candles(
        &mut self,
        symbol: String,
        interval_secs: u32,
        limit: u32,
    ) -> wasmtime::Result<Result<Vec<wit::Candle>, Error>> {
        Ok(self.readable(&symbol).and_then(|m| {
            m.candles(&symbol, interval_secs, limit.min(MAX_CANDLES) as usize)
                .map(|cs| cs.iter().map(candle).collect())
                .map_err(Error::InvalidArgument)
        }))
    }

    async fn status(&mut self, symbol: String) -> wasmtime::Result<Result<SymbolStatus, Error>> {
        Ok(self.readable(&symbol).and_then(|m| {
            m.status(&symbol)
                .map(|s| SymbolStatus {
                    symbol: s.symbol.to_string(),
                    venue: s.venue.to_string(),
                    last_update: s.last_update,
                    stale: s.stale,
                    issues: s.issues,
                })
                .ok_or_else(|| not_yet(&symbol))
        }))
    }

    async fn symbols(&mut self) -> wasmtime::Result<Vec<String>> {
        let Some(m) = self.market.clone() else {
            return Ok(Vec::new());
        };
        // A quiet check: listing is not a use, so no deny is audited for the symbols left out.
        let grants = self.policy.grants();
        Ok(m.symbols()
            .iter()
            .filter(|s| {
                matches!(
                    grants.check(&Request::MarketRead { symbol: s }),
                    colony_caps::Decision::Allowed
                )
            })
            .map(|s| s.to_string())
            .collect())
    }
}
