//! The market service: takes the events a feed produces, keeps the snapshots agents query
//! (latest quote, book, candles of every interval, per-symbol status) and publishes every
//! event on the bus as `md.<venue>.<symbol>.<kind>`.
//!
//! Each envelope carries the event twice: typed (`Content::Market`, so in-process delivery
//! to `on-market` costs no parsing) and as one JSON line in the payload (the documented JSONL
//! form of `docs/market-data.md`), which is what crosses NATS and what an operator sees with
//! `colony bus sub 'md.>'`. A host that receives market data over NATS parses it back
//! ([`decode_payload`]).
//!
//! **Invariant:** no event with a price that is not positive or a size that breaks its rule
//! ([`MarketEvent::bad_value`]) gets past the service, whichever feed sent it: it is counted as
//! a data-quality issue and reaches neither the observer (the order router's reference prices
//! and paper fills), the snapshots nor the bus. The feeds drop such records first (a replay
//! with its file and line); this is the last line.
//!
//! Staleness: a symbol is stale when nothing arrived for it for longer than the threshold,
//! measured against the feed's own clock (the latest event time of any symbol) for replays and
//! the synthetic feed, and against the system clock for live feeds.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use super::candles::CandleStore;
use super::replay::{self, Flagged};
use super::types::{Book, Candle, MarketEvent, QualityIssue, Quote, Timestamp};
use colony_bus::{Bus, Content, Envelope};

/// Default staleness threshold.
pub const DEFAULT_STALE_AFTER: Duration = Duration::from_secs(180);

/// What the host knows about one symbol.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct SymbolStatus {
    /// The symbol.
    pub symbol: Arc<str>,
    /// The venue.
    pub venue: Arc<str>,
    /// Time of the last event.
    pub last_update: Timestamp,
    /// Nothing arrived for longer than the threshold.
    pub stale: bool,
    /// Data-quality issues detected so far.
    pub issues: u64,
    /// Events published for the symbol.
    pub events: u64,
}

#[derive(Default)]
struct SymbolState {
    quote: Option<Quote>,
    book: Option<Book>,
    last: Timestamp,
    issues: u64,
    events: u64,
}

struct Inner {
    symbols: BTreeMap<Arc<str>, SymbolState>,
    candles: CandleStore,
    /// The latest event time of any symbol: the feed's clock.
    high_water: Timestamp,
}

/// Something that must see every market event before agents do: the order router (reference
/// prices for risk, resting paper orders that the new prices cross).
pub trait MarketObserver: Send + Sync {
    /// Called once per event, on the feed's task, before the event is published.
    fn on_market(&self, event: &MarketEvent);
}

/// The market service. Cheap to share (`Arc`).
pub struct MarketService {
    observer: std::sync::OnceLock<Arc<dyn MarketObserver>>,
    venue: Arc<str>,
    bus: Bus,
    live: bool,
    stale_after: Duration,
    inner: Mutex<Inner>,
    published: AtomicU64,
    issues: AtomicU64,
}

impl MarketService {
    /// A service for data from `venue` (the subject token: `replay`, `okx`, `synthetic`),
    /// publishing on `bus`. `live`: staleness is measured against the system clock.
    pub fn new(venue: &str, bus: Bus, live: bool, stale_after: Duration) -> MarketService {
        MarketService {
            observer: std::sync::OnceLock::new(),
            venue: venue.into(),
            bus,
            live,
            stale_after,
            inner: Mutex::new(Inner {
                symbols: BTreeMap::new(),
                candles: CandleStore::default(),
                high_water: 0,
            }),
            published: AtomicU64::new(0),
            issues: AtomicU64::new(0),
        }
    }

    /// Sets the observer that sees every event first (once; a second call is refused).
    pub fn set_observer(&self, observer: Arc<dyn MarketObserver>) -> bool {
        self.observer.set(observer).is_ok()
    }

    /// The venue token.
    pub fn venue(&self) -> &Arc<str> {
        &self.venue
    }

    /// The subject an event of `symbol` and `kind` is published on.
    pub fn subject(&self, event: &MarketEvent) -> String {
        format!(
            "md.{}.{}.{}",
            self.venue,
            event.symbol(),
            event.kind().as_str()
        )
    }

    /// Records `event` in the snapshots and publishes it on the bus. An event with a price that
    /// is not positive or a size that breaks its rule ([`MarketEvent::bad_value`]) is counted
    /// and logged as a data-quality issue instead, and reaches nothing: the feeds drop such
    /// records themselves, this is the last line.
    pub fn publish(&self, event: MarketEvent) {
        if !self.admit(&event) {
            return;
        }
        self.apply(&event);
        let subject = self.subject(&event);
        let payload = replay::to_jsonl(&event);
        let mut env = Envelope::new(Arc::clone(&self.venue), subject, payload);
        // The feed's time, not the host's: what a replay delivers repeats exactly.
        env.timestamp_ns = replay::known_at(&event);
        env.content = Content::Market(Arc::new(event));
        // Mailbox pressure is counted by the mailboxes (market data drops the oldest).
        let _ = self.bus.publish(env);
        self.published.fetch_add(1, Ordering::Relaxed);
    }

    /// Updates the snapshots with an event that arrived without being published here (from
    /// another host over NATS, say); one with a bad value is counted as an issue instead, as
    /// in [`publish`](Self::publish).
    pub fn record(&self, event: &MarketEvent) {
        if self.admit(event) {
            self.apply(event);
        }
    }

    /// Whether `event`'s prices and sizes may be used; counts and logs the issue if not.
    fn admit(&self, event: &MarketEvent) -> bool {
        match event.bad_value() {
            None => true,
            Some(issue) => {
                self.issue(&issue);
                false
            }
        }
    }

    fn apply(&self, event: &MarketEvent) {
        if let Some(o) = self.observer.get() {
            o.on_market(event);
        }
        let mut inner = self.lock();
        let ts = replay::known_at(event);
        if ts > inner.high_water {
            inner.high_water = ts;
            // Bars (of every interval) whose bucket ended before the feed's clock close now,
            // even if their symbol has gone quiet. Strictly before: a bucket ending at `ts` may
            // still get an input known at `ts` (a 1-minute bar is known when it ends).
            inner.candles.close_due(ts - 1);
        }
        let state = inner.symbols.entry(Arc::clone(event.symbol())).or_default();
        state.last = state.last.max(ts);
        state.events += 1;
        match event {
            MarketEvent::Quote(q) => state.quote = Some(q.clone()),
            MarketEvent::Book(b) => state.book = Some(b.clone()),
            MarketEvent::Trade(_) => {}
            MarketEvent::Candle(_) => {
                if let Err(e) = inner.candles.on_event(event) {
                    tracing::warn!(error = %e, "candle not aggregated");
                }
            }
        }
    }

    /// The feed ended: closes every open bar, so the last partial bar of each interval can be
    /// queried too.
    pub fn finish(&self) {
        self.lock().candles.flush();
    }

    /// Counts and logs a data-quality issue.
    pub fn issue(&self, issue: &QualityIssue) {
        let symbol = issue.symbol();
        tracing::warn!(venue = %self.venue, %symbol, issue = %replay::describe(issue), "market data quality");
        self.count_issue(symbol);
    }

    /// Counts and logs a data-quality issue a replay found in a file: the log line names the
    /// file and line (`bars.csv:17: BTC-PERP: low -5 is not positive; record dropped`).
    pub fn flagged(&self, flagged: &Flagged) {
        let symbol = flagged.issue.symbol();
        tracing::warn!(venue = %self.venue, %symbol, file = %flagged.file, line = flagged.line, "market data quality: {flagged}");
        self.count_issue(symbol);
    }

    fn count_issue(&self, symbol: &Arc<str>) {
        self.issues.fetch_add(1, Ordering::Relaxed);
        self.lock()
            .symbols
            .entry(Arc::clone(symbol))
            .or_default()
            .issues += 1;
    }

    /// The latest quote.
    pub fn quote(&self, symbol: &str) -> Option<Quote> {
        self.lock().symbols.get(symbol)?.quote.clone()
    }

    /// The latest book, at most `depth` levels a side.
    pub fn book(&self, symbol: &str, depth: usize) -> Option<Book> {
        let inner = self.lock();
        let mut book = inner.symbols.get(symbol)?.book.clone()?;
        book.bids.truncate(depth);
        book.asks.truncate(depth);
        Some(book)
    }

    /// The last `limit` closed bars of `interval_secs`, oldest first.
    pub fn candles(
        &self,
        symbol: &str,
        interval_secs: u32,
        limit: usize,
    ) -> Result<Vec<Candle>, String> {
        self.lock()
            .candles
            .last(symbol, interval_secs, limit)
            .map_err(|e| e.to_string())
    }

    /// The symbol's status, if the feed has had data for it.
    pub fn status(&self, symbol: &str) -> Option<SymbolStatus> {
        let inner = self.lock();
        let s = inner.symbols.get(symbol)?;
        Some(self.status_of(&inner, symbol, s))
    }

    /// Every symbol's status.
    pub fn statuses(&self) -> Vec<SymbolStatus> {
        let inner = self.lock();
        inner
            .symbols
            .iter()
            .map(|(sym, s)| self.status_of(&inner, sym, s))
            .collect()
    }

    /// The symbols with data.
    pub fn symbols(&self) -> Vec<Arc<str>> {
        self.lock().symbols.keys().cloned().collect()
    }

    /// Events published.
    pub fn published(&self) -> u64 {
        self.published.load(Ordering::Relaxed)
    }

    /// Data-quality issues detected.
    pub fn issues(&self) -> u64 {
        self.issues.load(Ordering::Relaxed)
    }

    fn status_of(&self, inner: &Inner, symbol: &str, s: &SymbolState) -> SymbolStatus {
        let now = if self.live {
            SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
        } else {
            inner.high_water
        };
        let threshold = u64::try_from(self.stale_after.as_nanos()).unwrap_or(u64::MAX);
        SymbolStatus {
            symbol: symbol.into(),
            venue: Arc::clone(&self.venue),
            last_update: s.last,
            stale: now.saturating_sub(s.last) > threshold,
            issues: s.issues,
            events: s.events,
        }
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// The market event a bus payload carries (one JSONL record), for envelopes that arrive from
/// other hosts; `None` if it is not one.
pub fn decode_payload(payload: &[u8]) -> Option<MarketEvent> {
    let mut parsed = replay::parse_jsonl("bus", payload).ok()?;
    if parsed.events.len() == 1 {
        parsed.events.pop()
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::{BookLevel, Side, Trade};
    use rust_decimal::Decimal;

    fn d(s: &str) -> Decimal {
        s.parse().unwrap()
    }

    fn quote(sym: &str, ts: u64) -> MarketEvent {
        MarketEvent::Quote(Quote {
            symbol: sym.into(),
            bid: d("100.5"),
            bid_size: d("2"),
            ask: d("100.75"),
            ask_size: d("1.25"),
            ts,
        })
    }

    #[tokio::test]
    async fn service_publishes_typed_and_json_and_keeps_snapshots() {
        let bus = Bus::new();
        let m = bus.mailbox("reader", 16);
        bus.subscribe("reader", "md.replay.BTC-USDT.*", &m).unwrap();
        let svc = MarketService::new("replay", bus.clone(), false, Duration::from_secs(60));
        svc.publish(quote("BTC-USDT", 1_000));
        svc.publish(MarketEvent::Book(Book {
            symbol: "BTC-USDT".into(),
            bids: vec![
                BookLevel {
                    price: d("100.5"),
                    size: d("2"),
                },
                BookLevel {
                    price: d("100"),
                    size: d("3"),
                },
            ],
            asks: vec![BookLevel {
                price: d("100.75"),
                size: d("1.25"),
            }],
            ts: 2_000,
        }));
        let env = m.try_recv().unwrap();
        assert_eq!(env.subject, "md.replay.BTC-USDT.quote");
        assert_eq!(env.market().map(|e| &**e), Some(&quote("BTC-USDT", 1_000)));
        assert_eq!(
            decode_payload(&env.payload),
            Some(quote("BTC-USDT", 1_000)),
            "the JSON says the same"
        );
        assert_eq!(m.try_recv().unwrap().subject, "md.replay.BTC-USDT.book");
        assert_eq!(svc.quote("BTC-USDT").unwrap().ask, d("100.75"));
        let book = svc.book("BTC-USDT", 1).unwrap();
        assert_eq!((book.bids.len(), book.asks.len()), (1, 1));
        assert!(svc.quote("ETH-USDT").is_none());

        // Another symbol moves the feed's clock; BTC-USDT goes stale after 60 s of silence.
        svc.publish(MarketEvent::Trade(Trade {
            symbol: "ETH-USDT".into(),
            price: d("3000"),
            size: d("1"),
            aggressor: Side::Buy,
            ts: 2_000 + 61_000_000_000,
        }));
        let s = svc.status("BTC-USDT").unwrap();
        assert!(s.stale && s.last_update == 2_000 && s.events == 2, "{s:?}");
        assert!(!svc.status("ETH-USDT").unwrap().stale);
        svc.issue(&QualityIssue::CrossedBook {
            symbol: "BTC-USDT".into(),
            bid: d("1"),
            ask: d("1"),
        });
        assert_eq!(svc.status("BTC-USDT").unwrap().issues, 1);
        assert_eq!(svc.published(), 3);
    }

    /// The last line: an event with a price that is not positive reaches neither the bus, the
    /// observer (the order router) nor the snapshots; it is counted as an issue.
    #[tokio::test]
    async fn service_refuses_an_event_with_a_bad_price() {
        struct Seen(Mutex<u64>);
        impl MarketObserver for Seen {
            fn on_market(&self, _: &MarketEvent) {
                *self.0.lock().unwrap() += 1;
            }
        }
        let bus = Bus::new();
        let m = bus.mailbox("reader", 16);
        bus.subscribe("reader", "md.>", &m).unwrap();
        let svc = MarketService::new("okx", bus, false, DEFAULT_STALE_AFTER);
        let seen = Arc::new(Seen(Mutex::new(0)));
        assert!(svc.set_observer(seen.clone()));
        let MarketEvent::Quote(good) = quote("BTC-USDT", 1_000) else {
            unreachable!()
        };
        svc.publish(MarketEvent::Quote(Quote {
            ask: d("-100.75"),
            ..good.clone()
        }));
        assert_eq!((svc.published(), svc.issues(), m.depth()), (0, 1, 0));
        assert_eq!(*seen.0.lock().unwrap(), 0, "the router never saw it");
        assert!(svc.quote("BTC-USDT").is_none());
        assert_eq!(
            svc.status("BTC-USDT").map(|s| (s.events, s.issues)),
            Some((0, 1))
        );
        svc.publish(MarketEvent::Quote(good));
        assert_eq!((svc.published(), svc.issues(), m.depth()), (1, 1, 1));
        assert_eq!(*seen.0.lock().unwrap(), 1);
    }

    #[test]
    fn service_aggregates_candles_for_queries() {
        let svc = MarketService::new("replay", Bus::new(), false, DEFAULT_STALE_AFTER);
        let replay = replay::embedded_bars().unwrap();
        for e in replay.events.iter().take(61) {
            svc.publish(e.clone());
        }
        let ones = svc.candles("BTC-PERP", 60, 1000).unwrap();
        assert!(ones.len() >= 60, "{}", ones.len());
        let input: Vec<_> = replay.candles().take(ones.len()).cloned().collect();
        assert_eq!(ones, input, "1m bars come back as they went in");
        assert!(svc.candles("BTC-PERP", 7, 10).is_err());
    }

    #[tokio::test]
    async fn nats_hosts_share_one_market_feed() {
        use colony_bus::nats::{NatsConfig, connect};
        let p = format!(
            "colonytest{}x{}",
            std::process::id(),
            colony_bus::new_id().replace('-', "x")
        );
        let joined = async || {
            let bus = Bus::new();
            let config = NatsConfig {
                url: "nats://127.0.0.1:4222".into(),
                prefix: p.clone(),
            };
            let link = connect(&bus, config, decode_payload)
                .await
                .expect("the NATS server on 127.0.0.1:4222 (the tests need it)");
            (bus, link)
        };
        let (a, link_a) = joined().await;
        let (b, link_b) = joined().await;
        let reader = b.mailbox("md-reader", 16);
        b.subscribe("md-reader", "md.*.BTC-USDT.*", &reader)
            .unwrap();
        assert!(link_b.sync().await && link_a.sync().await);
        let feed = MarketService::new("replay", a.clone(), false, DEFAULT_STALE_AFTER);
        let quote = MarketEvent::Quote(Quote {
            symbol: "BTC-USDT".into(),
            bid: "43000.5".parse().unwrap(),
            bid_size: "0.25".parse().unwrap(),
            ask: "43001".parse().unwrap(),
            ask_size: "1.125".parse().unwrap(),
            ts: 1_640_995_200_000_000_000,
        });
        feed.publish(quote.clone());
        let got = tokio::time::timeout(Duration::from_secs(10), reader.recv())
            .await
            .expect("a message within 10 s")
            .expect("mailbox open");
        assert_eq!(got.subject, "md.replay.BTC-USDT.quote");
        assert_eq!(
            got.market().map(|e| &**e),
            Some(&quote),
            "typed again on arrival, exact decimals"
        );
    }
}
