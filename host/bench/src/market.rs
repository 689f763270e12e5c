//! The market-data measurement: replay throughput into wasm agents (lockstep and
//! flow-controlled) beside native channels, and the host-side cost of a book update and of
//! publishing an event.

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::Serialize;

use crate::agents::{bench_agent, failures, handled, native_sinks, spawn_bench_agents};
use crate::measure::per_op;

/// What the market-data benchmark measured.
#[derive(Debug, Clone, Serialize)]
pub struct MarketBench {
    /// Events in the replay (the shipped 1-minute bars).
    pub events: u64,
    /// Wasm agents subscribed to every event.
    pub agents: usize,
    /// Lockstep replay (`--speed max`: every agent has handled each event before the next),
    /// deliveries per second in aggregate.
    pub lockstep_deliveries_per_sec: f64,
    /// `--speed fast` replay (no lockstep; the feed runs ahead of the slowest agent by up to
    /// half a mailbox, so nothing is dropped), deliveries per second in aggregate.
    pub flow_deliveries_per_sec: f64,
    /// The same events over native tokio channels to as many tasks, deliveries per second.
    pub native_deliveries_per_sec: f64,
    /// Host-side cost of one book update (`L2Book::apply_update` plus the top-20 book and the
    /// quote a feed publishes), nanoseconds.
    pub book_update_ns: f64,
    /// `L2Book::apply_update` alone, nanoseconds.
    pub book_apply_ns: f64,
    /// A `BTreeMap` insert of the same level (the native floor), nanoseconds.
    pub native_map_insert_ns: f64,
    /// `MarketService::publish` with no subscriber (snapshots, candle aggregation, JSON,
    /// routing), nanoseconds per event.
    pub publish_ns: f64,
    /// Bench agents that failed events: reported with the figures, which count the events
    /// they handled, failed ones included.
    pub agent_failures: Vec<String>,
}

/// Replay throughput of the shipped bars into `agents` wasm agents subscribed to them, in
/// lockstep (as `colony run --speed max` plays) and flow-controlled, next to native channels;
/// and the host-side cost of a book update and of publishing an event.
pub async fn market(component: &[u8], agents_n: usize) -> anyhow::Result<MarketBench> {
    use colony_host::agent::AgentHandle;
    use colony_host::bus::Bus;
    use colony_host::market::feed::{self, Pace, Speed};
    use colony_host::market::replay;
    use colony_host::market::service::{DEFAULT_STALE_AFTER, MarketService};
    use colony_host::market::types::{BookLevel, MarketEvent, Side};
    use colony_risk::book::L2Book;
    use rust_decimal::Decimal;
    use std::sync::atomic::Ordering;

    struct Handles(Vec<AgentHandle>, Bus);
    impl Pace for Handles {
        fn set_time(&self, _ns: u64) {}
        async fn settle(&self) {
            self.1.settle(Duration::from_secs(10)).await;
        }
        async fn throttle(&self, window: usize) {
            while self
                .0
                .iter()
                .filter_map(|h| h.mailbox_stats().map(|m| m.depth))
                .max()
                .unwrap_or(0)
                > window
            {
                tokio::task::yield_now().await;
            }
        }
    }

    let (_runtime, pre, limits) = bench_agent(component)?;
    let bars = replay::embedded_bars()?;
    let events = bars.events.len() as u64;
    let start_agents = async |bus: &Bus| {
        spawn_bench_agents(
            &pre,
            limits,
            bus,
            "messaging.subscribe:md.>",
            "market",
            "md",
            agents_n,
        )
        .await
    };

    // Lockstep, exactly as `colony run --speed max` plays.
    let bus = Bus::new();
    let service = MarketService::new("replay", bus.clone(), false, DEFAULT_STALE_AFTER);
    let handles = Handles(start_agents(&bus).await?, bus.clone());
    let start = Instant::now();
    let report = feed::play(bars.clone(), &service, Speed::Max, &handles).await;
    let lockstep = handled(&handles.0) as f64 / start.elapsed().as_secs_f64();
    let mut agent_failures = failures(&handles.0);
    // Lost events are Colony's failure unless an agent failed (a quarantined one leaves).
    anyhow::ensure!(
        handled(&handles.0) == report.events * agents_n as u64 || !agent_failures.is_empty(),
        "lockstep lost events: {} of {}",
        handled(&handles.0),
        report.events * agents_n as u64
    );

    // `--speed fast`: the feed runs ahead of the slowest agent by up to half a mailbox.
    let bus = Bus::new();
    let service = MarketService::new("replay", bus.clone(), false, DEFAULT_STALE_AFTER);
    let fast = Handles(start_agents(&bus).await?, bus.clone());
    let start = Instant::now();
    let report = feed::play(bars.clone(), &service, Speed::Fast, &fast).await;
    let flow = handled(&fast.0) as f64 / start.elapsed().as_secs_f64();
    let dropped: u64 = fast
        .0
        .iter()
        .filter_map(|h| h.mailbox_stats().map(|m| m.dropped))
        .sum();
    let fast_failures = failures(&fast.0);
    anyhow::ensure!(
        (handled(&fast.0) == report.events * agents_n as u64 && dropped == 0)
            || !fast_failures.is_empty(),
        "--speed fast lost events: {} of {} delivered, {dropped} dropped",
        handled(&fast.0),
        report.events * agents_n as u64
    );
    agent_failures.extend(
        fast_failures
            .into_iter()
            .map(|f| format!("--speed fast: {f}")),
    );

    // Native: the same events to as many tokio tasks over bounded channels.
    let (txs, count) = native_sinks::<MarketEvent>(agents_n);
    let start = Instant::now();
    for event in bars.events.iter().cloned() {
        let e = Arc::new(event);
        for tx in &txs {
            tx.send(e.clone()).await?;
        }
    }
    drop(txs);
    while count.load(Ordering::Relaxed) < events * agents_n as u64 {
        tokio::task::yield_now().await;
    }
    let native = (events * agents_n as u64) as f64 / start.elapsed().as_secs_f64();

    // Book updates: the shipped depth's price levels, cycled.
    let depth = replay::embedded_depth(20)?;
    let levels: Vec<(Side, BookLevel)> = depth
        .events
        .iter()
        .filter_map(|e| match e {
            MarketEvent::Book(b) => Some(b),
            _ => None,
        })
        .flat_map(|b| {
            b.bids
                .iter()
                .map(|l| (Side::Buy, *l))
                .chain(b.asks.iter().map(|l| (Side::Sell, *l)))
                .collect::<Vec<_>>()
        })
        .collect();
    anyhow::ensure!(!levels.is_empty(), "the shipped depth has no levels");
    const UPDATES: usize = 200_000;
    let mut book = L2Book::new("BTCUSDT".into());
    let start = Instant::now();
    for i in 0..UPDATES {
        let (side, l) = levels[i % levels.len()];
        let size = if i % 7 == 0 { Decimal::ZERO } else { l.size };
        book.apply_update(side, l.price, size, i as u64);
        std::hint::black_box(book.top(20));
        std::hint::black_box(book.quote());
    }
    let book_update_ns = per_op(start.elapsed(), UPDATES as u64);
    let mut book = L2Book::new("BTCUSDT".into());
    let start = Instant::now();
    for i in 0..UPDATES {
        let (side, l) = levels[i % levels.len()];
        let size = if i % 7 == 0 { Decimal::ZERO } else { l.size };
        book.apply_update(side, l.price, size, i as u64);
    }
    std::hint::black_box(&book);
    let book_apply_ns = per_op(start.elapsed(), UPDATES as u64);
    let mut map = std::collections::BTreeMap::new();
    let start = Instant::now();
    for i in 0..UPDATES {
        let (_, l) = levels[i % levels.len()];
        if i % 7 == 0 {
            map.remove(&l.price);
        } else {
            map.insert(l.price, l.size);
        }
    }
    std::hint::black_box(&map);
    let native_map_insert_ns = per_op(start.elapsed(), UPDATES as u64);

    // Publishing with no subscriber.
    let service = MarketService::new("replay", Bus::new(), false, DEFAULT_STALE_AFTER);
    let start = Instant::now();
    for event in bars.events.iter().cloned() {
        service.publish(event);
    }
    let publish_ns = per_op(start.elapsed(), events);

    Ok(MarketBench {
        events,
        agents: agents_n,
        lockstep_deliveries_per_sec: lockstep,
        flow_deliveries_per_sec: flow,
        native_deliveries_per_sec: native,
        book_update_ns,
        book_apply_ns,
        native_map_insert_ns,
        publish_ns,
        agent_failures,
    })
}
