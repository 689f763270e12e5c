//! `colony:plugin/market-data`: subscriptions to the host's feed (delivered to `on-market`)
//! and snapshot queries, each checked against the agent's `market.read:<symbol-pattern>`
//! grants before anything is read (a denial is audited and returned as `error::denied`).
//!
//! A subscription is a bus subscription of the agent's mailbox to
//! `md.*.<symbol>.<kind>` for each kind asked for, so market data from another host over
//! NATS arrives the same way; it counts against the per-instance subscription limit and ends
//! with the instance.

use wasmtime::component::{HasData, Linker};

use super::{Fault, Gate, HostResult, answer, decimal};
use crate::bindings::market_data::{self, Host, Kinds, SymbolStatus};
use crate::bindings::types::{self as wit, Error};
use crate::bus::SubscriptionId;
use crate::market::replay::check_symbol;
use crate::market::service::MarketService;
use crate::market::types::{self as md, MarketEvent};
use colony_caps::Request;

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
pub(crate) fn to_wit(event: &MarketEvent) -> wit::MarketEvent {
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

/// Where an instance's market-data subscriptions are made: its link to the bus (the
/// `messaging` interface's `BusLink`), so they count against the same per-instance limit
/// and end with the instance.
pub trait Subscriptions: Send {
    /// Subscribes the instance's mailbox to `pattern`; why not, if it cannot.
    fn subscribe_for_host(&mut self, pattern: &str) -> Result<SubscriptionId, String>;
    /// Ends a subscription of the instance; whether it had it.
    fn unsubscribe_for_host(&mut self, id: SubscriptionId) -> bool;
}

/// What the `market-data` interface works on: the agent's grants, the host's feed if it has
/// one, the agent's market subscriptions, and its link to the bus they are made on.
pub struct MarketCtx<'a> {
    /// The agent's grant checks.
    pub gate: Gate<'a>,
    /// The host's market service.
    pub market: Option<&'a MarketService>,
    /// The agent's subscriptions: the id the guest got, and its bus subscriptions.
    pub subs: &'a mut Vec<(u64, Vec<SubscriptionId>)>,
    /// The instance's link to the bus.
    pub link: Option<&'a mut dyn Subscriptions>,
}

struct HasMarket;

impl HasData for HasMarket {
    type Data<'a> = MarketCtx<'a>;
}

/// Links `colony:plugin/market-data`; `ctx` hands out the store's [`MarketCtx`].
pub fn add_to_linker<T: Send + 'static>(
    linker: &mut Linker<T>,
    ctx: fn(&mut T) -> MarketCtx<'_>,
) -> wasmtime::Result<()> {
    market_data::add_to_linker::<T, HasMarket>(linker, ctx)
}

fn not_yet(symbol: &str) -> Error {
    Error::NotFound(format!("no market data for {symbol} yet"))
}

impl<'a> MarketCtx<'a> {
    /// The symbol is well formed and granted, and there is a feed.
    fn readable(&mut self, symbol: &str) -> HostResult<&'a MarketService> {
        check_symbol(symbol).map_err(Error::InvalidArgument)?;
        self.gate.check(&Request::MarketRead { symbol })?;
        self.market
            .ok_or_else(|| Fault::unavailable("this host has no market-data feed"))
    }

    fn subscribe_to(&mut self, symbol: &str, kinds: Kinds) -> HostResult<u64> {
        self.readable(symbol)?;
        if kinds == Kinds::empty() {
            return Err(Error::InvalidArgument("no kinds asked for".into()).into());
        }
        let Some(link) = self.link.as_deref_mut() else {
            return Err(Fault::unavailable("market-data subscriptions need the bus"));
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
                    return Err(Error::LimitExceeded(e).into());
                }
            }
        }
        // Some kind was asked for, so some pattern was subscribed to.
        let Some(first) = ids.first() else {
            return Err(Fault::Trap(wasmtime::format_err!(
                "market-data subscribe made no subscription"
            )));
        };
        let id = first.get();
        self.subs.push((id, ids));
        Ok(id)
    }

    fn unsubscribe_from(&mut self, id: u64) -> HostResult<()> {
        let Some(i) = self.subs.iter().position(|(s, _)| *s == id) else {
            return Err(Error::NotFound(format!("no market subscription {id}")).into());
        };
        let (_, ids) = self.subs.swap_remove(i);
        if let Some(link) = self.link.as_deref_mut() {
            for id in ids {
                link.unsubscribe_for_host(id);
            }
        }
        Ok(())
    }

    fn status_of(&mut self, symbol: &str) -> HostResult<SymbolStatus> {
        let s = self
            .readable(symbol)?
            .status(symbol)
            .ok_or_else(|| not_yet(symbol))?;
        Ok(SymbolStatus {
            symbol: s.symbol.to_string(),
            venue: s.venue.to_string(),
            last_update: s.last_update,
            stale: s.stale,
            issues: s.issues,
        })
    }
}

impl Host for MarketCtx<'_> {
    async fn subscribe(
        &mut self,
        symbol: String,
        kinds: Kinds,
    ) -> wasmtime::Result<Result<u64, Error>> {
        answer(self.subscribe_to(&symbol, kinds))
    }

    async fn unsubscribe(&mut self, id: u64) -> wasmtime::Result<Result<(), Error>> {
        answer(self.unsubscribe_from(id))
    }

    async fn quote(&mut self, symbol: String) -> wasmtime::Result<Result<wit::Quote, Error>> {
        answer(self.readable(&symbol).and_then(|m| {
            let q = m.quote(&symbol).ok_or_else(|| not_yet(&symbol))?;
            Ok(quote(&q))
        }))
    }

    async fn book(
        &mut self,
        symbol: String,
        depth: u32,
    ) -> wasmtime::Result<Result<wit::Book, Error>> {
        answer(self.readable(&symbol).and_then(|m| {
            let b = m
                .book(&symbol, depth as usize)
                .ok_or_else(|| not_yet(&symbol))?;
            Ok(book(&b))
        }))
    }

    async fn candles(
        &mut self,
        symbol: String,
        interval_secs: u32,
        limit: u32,
    ) -> wasmtime::Result<Result<Vec<wit::Candle>, Error>> {
        answer(self.readable(&symbol).and_then(|m| {
            let cs = m
                .candles(&symbol, interval_secs, limit.min(MAX_CANDLES) as usize)
                .map_err(Error::InvalidArgument)?;
            Ok(cs.iter().map(candle).collect())
        }))
    }

    async fn status(&mut self, symbol: String) -> wasmtime::Result<Result<SymbolStatus, Error>> {
        answer(self.status_of(&symbol))
    }

    async fn symbols(&mut self) -> wasmtime::Result<Vec<String>> {
        let Some(m) = self.market else {
            return Ok(Vec::new());
        };
        // A quiet check: listing is not a use, so no deny is audited for the symbols left out.
        let grants = self.gate.policy.grants();
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bus::Bus;
    use crate::interfaces::messaging::BusLink;
    use crate::market::service::DEFAULT_STALE_AFTER;
    use crate::policy::{CheckCache, Policy};

    struct Fixture {
        policy: Policy,
        checks: CheckCache,
        market: MarketService,
        subs: Vec<(u64, Vec<SubscriptionId>)>,
        link: BusLink,
    }

    impl Fixture {
        fn new(grants: &[&str]) -> Fixture {
            let bus = Bus::new();
            Fixture {
                policy: crate::interfaces::testing::policy(grants, None),
                checks: CheckCache::default(),
                market: MarketService::new("replay", bus.clone(), false, DEFAULT_STALE_AFTER),
                link: BusLink::new(bus.clone(), bus.mailbox("p", 16), "p".into()),
                subs: Vec::new(),
            }
        }

        fn ctx(&mut self, feed: bool) -> MarketCtx<'_> {
            MarketCtx {
                gate: Gate {
                    policy: &self.policy,
                    checks: &mut self.checks,
                },
                market: feed.then_some(&self.market),
                subs: &mut self.subs,
                link: Some(&mut self.link as &mut dyn Subscriptions),
            }
        }
    }

    #[tokio::test]
    async fn reads_need_a_grant_then_a_feed() {
        let mut f = Fixture::new(&["market.read:BTC-*"]);
        let denied = f.ctx(true).quote("ETH-USDT".into()).await.unwrap();
        assert!(
            matches!(&denied, Err(Error::Denied(m)) if m == "needs market.read:ETH-USDT"),
            "{denied:?}"
        );
        let no_feed = f.ctx(false).quote("BTC-USDT".into()).await.unwrap();
        assert!(
            matches!(&no_feed, Err(Error::Unavailable(m)) if m == "this host has no market-data feed"),
            "{no_feed:?}"
        );
        let not_yet = f.ctx(true).quote("BTC-USDT".into()).await.unwrap();
        assert!(matches!(not_yet, Err(Error::NotFound(_))), "{not_yet:?}");
    }

    #[tokio::test]
    async fn a_granted_subscription_is_one_bus_subscription_per_kind_ended_together() {
        let mut f = Fixture::new(&["market.read:BTC-*"]);
        let none = f
            .ctx(true)
            .subscribe("BTC-USDT".into(), Kinds::empty())
            .await
            .unwrap();
        assert!(matches!(none, Err(Error::InvalidArgument(_))), "{none:?}");
        let id = f
            .ctx(true)
            .subscribe("BTC-USDT".into(), Kinds::QUOTE | Kinds::TRADE)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(f.subs.len(), 1);
        assert_eq!(f.subs[0].1.len(), 2);
        assert!(f.ctx(true).unsubscribe(id).await.unwrap().is_ok());
        assert!(f.subs.is_empty());
        let again = f.ctx(true).unsubscribe(id).await.unwrap();
        assert!(matches!(again, Err(Error::NotFound(_))), "{again:?}");
    }
}
