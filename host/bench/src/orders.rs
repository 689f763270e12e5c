//! The orders measurement (issue 6): tick → agent decision → risk → paper fill through a wasm
//! agent and the router, beside the same path as direct native calls; and the cost per order
//! of the risk check and of the router's `place`.

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::Serialize;

use colony_host::policy::Policy;

use crate::agents::{bench_agent, failures, handled};
use crate::measure::{per_op, percentiles, timer_overhead};

/// What the orders benchmark measured (issue 6: tick → decision → risk → paper fill).
#[derive(Debug, Clone, Serialize)]
pub struct OrdersBench {
    /// Ticks timed (after the warm-up), each one book snapshot and one order.
    pub ticks: usize,
    /// Tick → fill through Colony, median, microseconds: from just before
    /// `MarketService::publish` of a book (the router's reference price and paper book, the
    /// bus, the wasm agent's `on-market`, its `orders.place`: grant check, risk, paper
    /// exchange) to the fill's event arriving on the agent's order subject.
    pub tick_to_fill_p50_us: f64,
    /// Same, 99th percentile.
    pub tick_to_fill_p99_us: f64,
    /// Same, slowest.
    pub tick_to_fill_max_us: f64,
    /// The same tick → decision → `RiskEngine::check` → `PaperExchange::place` as direct
    /// calls (a native closure decides; no wasm, no bus, no router), median, microseconds.
    pub native_p50_us: f64,
    /// Same, 99th percentile.
    pub native_p99_us: f64,
    /// Same, slowest.
    pub native_max_us: f64,
    /// `RiskEngine::check` with every limit set, nanoseconds per order (mean; its order-rate
    /// window holds 400 orders).
    pub risk_check_ns: f64,
    /// The same without the order-rate limits, nanoseconds per order.
    pub risk_check_no_rate_ns: f64,
    /// `OrderService::place` with the same limits (risk, paper fill, the router's order
    /// table and the `accepted` and `filled` events published), nanoseconds per order.
    pub place_ns: f64,
    /// The bench agent's failures, if it failed an event (then only the ticks before it are
    /// timed, and the consistency checks are skipped): reported with the figures.
    pub agent_failures: Vec<String>,
}

/// The symbol every orders measurement trades.
const ORDERS_SYMBOL: &str = "BTC-USDT";
/// Virtual time between two orders of the risk and place measurements: 400 orders a minute,
/// inside the order-rate limits of [`realistic_limits`].
const ORDER_SPACING_NS: u64 = 150_000_000;

/// A book of five levels a side around 60 000, moving by half a dollar a tick.
fn bench_book(i: usize, ts: u64) -> colony_host::market::types::MarketEvent {
    use colony_host::market::types::{Book, BookLevel, MarketEvent};
    use rust_decimal::Decimal;
    let mid = Decimal::new(600_000 + (i % 20) as i64 * 5, 1);
    let level = |k: i64, sign: i64| BookLevel {
        price: mid + Decimal::new(sign * (1 + k), 1),
        size: Decimal::new(15, 1),
    };
    MarketEvent::Book(Book {
        symbol: ORDERS_SYMBOL.into(),
        bids: (0..5).map(|k| level(k, -1)).collect(),
        asks: (0..5).map(|k| level(k, 1)).collect(),
        ts,
    })
}

/// The limits of `docs/orders.md`'s example, every one set: what a real desk would run with.
fn realistic_limits() -> colony_host::orders::risk::RiskLimits {
    use colony_host::orders::risk::{Instruments, RiskLimits};
    use rust_decimal::Decimal;
    RiskLimits {
        instruments: Some(Instruments::new(["BTC-*", "ETH-*"])),
        tick_size: Some(Decimal::new(1, 1)),
        qty_step: Some(Decimal::new(1, 3)),
        min_qty: Some(Decimal::new(1, 3)),
        max_qty: Some(Decimal::from(5)),
        max_notional: Some(Decimal::from(250_000)),
        price_collar_bps: Some(500),
        max_orders_per_sec: Some(20),
        max_orders_per_min: Some(600),
        max_cancels_per_sec: Some(20),
        max_cancels_per_min: Some(600),
        max_open_orders: Some(50),
        max_open_notional: Some(Decimal::from(1_000_000)),
        max_position: Some(Decimal::from(10)),
        max_daily_loss: Some(Decimal::from(5_000)),
        max_quote_age_ms: Some(300_000),
    }
}

/// Tick → fill latency through a wasm agent and the router, next to the same path as direct
/// native calls; and the cost per order of the risk check and of the router's `place`.
///
/// Colony's side is an in-process host: a bus, a `MarketService` whose observer is an
/// `OrderService::paper`, and one bench agent (`orders:BTC-USDT`) with `market.read:*`,
/// `orders.place:*` and `orders.cancel:*`, which places a market order of 0.001 on every
/// book, buy and sell in turn. Its risk limits are [`realistic_limits`] without the order
/// rates (thousands of orders a second would trip them). Ticks go in lockstep: one book is
/// published, its fill awaited, and the agent left idle (its `accepted` and `filled` events
/// handled) before the next. The fill's moment is taken by a native mailbox subscribed to
/// the agent's order subject beside the agent, polled by the bench's task: nothing is added
/// to the router's hot path.
pub async fn orders(component: &[u8], ticks: usize) -> anyhow::Result<OrdersBench> {
    use colony_host::agent::{AgentHandle, AgentSpec};
    use colony_host::bus::Bus;
    use colony_host::market::service::{DEFAULT_STALE_AFTER, MarketService};
    use colony_host::orders::ExecKind;
    use colony_host::orders::risk::RiskLimits;
    use colony_host::orders::service::{OrderService, OrdersConfig, events_subject};

    const WARMUP: usize = 1_000;
    const TICK_TIMEOUT: Duration = Duration::from_secs(5);
    let clock = colony_host::clock::Clock::system();
    let generous = RiskLimits {
        max_orders_per_sec: None,
        max_orders_per_min: None,
        ..realistic_limits()
    };

    let (_runtime, pre, limits) = bench_agent(component)?;
    let bus = Bus::new();
    let market = Arc::new(MarketService::new(
        "bench",
        bus.clone(),
        true,
        DEFAULT_STALE_AFTER,
    ));
    let router = OrderService::paper(
        bus.clone(),
        OrdersConfig {
            risk: generous.clone(),
            ..OrdersConfig::default()
        },
    );
    anyhow::ensure!(
        market.set_observer(router.clone()),
        "the bench market service already has an observer"
    );
    let name: Arc<str> = Arc::from("bench-trader");
    let grants = colony_caps::GrantSet::new(
        ["market.read:*", "orders.place:*", "orders.cancel:*"]
            .iter()
            .map(|c| c.parse::<colony_caps::Capability>())
            .collect::<Result<Vec<_>, _>>()?,
    );
    let agent = AgentHandle::spawn(
        AgentSpec {
            pre,
            name: name.clone(),
            limits,
            state: None,
            policy: Arc::new(Policy::new(name.clone(), String::new(), grants, None, 0)),
            bus: Some(bus.clone()),
            config: format!("orders:{ORDERS_SYMBOL}"),
            market: Some(market.clone()),
            orders: Some(router.clone()),
            tools: None,
            services: Default::default(),
        },
        None,
    )
    .await
    .map_err(|e| anyhow::anyhow!("{e}"))?;
    let fills = bus.mailbox("bench-fills", 1024);
    bus.subscribe("bench-fills", &events_subject(&name), &fills)?;

    let total = WARMUP + ticks;
    let mut colony = Vec::with_capacity(ticks);
    // Order events seen on the agent's subject: the agent handles each of them too.
    let mut order_events = 0u64;
    // Set when the agent failed an event: the ticks after it are not timed (a restarted
    // agent starts its counts again), and the figures are of the ticks before.
    let mut stopped: Option<String> = None;
    let agent_failed = || !failures(std::slice::from_ref(&agent)).is_empty();
    'ticks: for i in 0..total {
        let event = bench_book(i, clock.now_ns());
        let deadline = Instant::now() + TICK_TIMEOUT;
        let start = Instant::now();
        market.publish(event);
        let filled = loop {
            let Some(env) = fills.try_recv() else {
                if agent_failed() {
                    stopped = Some(format!("the orders measurement stopped at tick {i}"));
                    break 'ticks;
                }
                anyhow::ensure!(
                    Instant::now() < deadline,
                    "tick {i}: no fill within {TICK_TIMEOUT:?} (agent: {:?})",
                    agent.stats().last_error.lock().ok().and_then(|e| e.clone())
                );
                tokio::task::yield_now().await;
                continue;
            };
            let at = start.elapsed();
            fills.done();
            order_events += 1;
            match env.order().map(|u| &u.report.kind) {
                Some(ExecKind::Fill(_)) => break at,
                Some(ExecKind::Rejected { code, message }) => {
                    anyhow::bail!("tick {i}: the bench order was rejected: {code}: {message}")
                }
                _ => {}
            }
        };
        if i >= WARMUP {
            colony.push(filled.as_secs_f64() * 1e6);
        }
        // The agent takes its order events before the next tick, so each tick finds it idle.
        let events = (i as u64 + 1) + order_events;
        while handled(std::slice::from_ref(&agent)) < events {
            if agent_failed() {
                stopped = Some(format!("the orders measurement stopped at tick {i}"));
                break 'ticks;
            }
            anyhow::ensure!(
                Instant::now() < deadline,
                "tick {i}: the agent did not finish its events"
            );
            tokio::task::yield_now().await;
        }
    }
    let mut agent_failures = failures(std::slice::from_ref(&agent));
    agent_failures.extend(stopped);
    if agent_failures.is_empty() {
        orders_consistent(&bus, &router, &name, total).await?;
    }
    let _ = agent.retire().await.await;

    let native = native_tick_to_fill(total, WARMUP, generous)?;
    let (risk_check_ns, risk_check_no_rate_ns) = (
        risk_check_cost(50_000, realistic_limits())?,
        risk_check_cost(
            50_000,
            RiskLimits {
                max_orders_per_sec: None,
                max_orders_per_min: None,
                ..realistic_limits()
            },
        )?,
    );
    let place_ns = place_cost(20_000)?;

    let max = |v: &[f64]| v.iter().copied().fold(f64::NAN, f64::max);
    let (tick_to_fill_p50_us, tick_to_fill_p99_us) = percentiles(colony.clone());
    let (native_p50_us, native_p99_us) = percentiles(native.clone());
    Ok(OrdersBench {
        ticks,
        tick_to_fill_p50_us,
        tick_to_fill_p99_us,
        tick_to_fill_max_us: max(&colony),
        native_p50_us,
        native_p99_us,
        native_max_us: max(&native),
        risk_check_ns,
        risk_check_no_rate_ns,
        place_ns,
        agent_failures,
    })
}

/// The orders measurement's checks when no agent failed: every tick made exactly one order
/// and one fill, as the agent and the router saw them, and nothing is left open.
async fn orders_consistent(
    bus: &colony_host::bus::Bus,
    router: &colony_host::orders::service::OrderService,
    name: &str,
    total: usize,
) -> anyhow::Result<()> {
    use colony_host::bus::Envelope;
    let told = bus
        .request(
            Envelope::new(
                Arc::from("bench"),
                format!("agent.{name}.inbox"),
                &b"orders"[..],
            ),
            Duration::from_secs(5),
        )
        .await?;
    let expected = format!("{total} {total}");
    anyhow::ensure!(
        told.payload.as_ref() == expected.as_bytes(),
        "the agent placed/filled {:?}, not {expected:?}",
        String::from_utf8_lossy(&told.payload)
    );
    let c = router.counters();
    anyhow::ensure!(
        c.placed == total as u64 && c.fills == total as u64 && c.rejected == 0,
        "the router counted {} placed, {} fills, {} rejected for {total} ticks",
        c.placed,
        c.fills,
        c.rejected
    );
    anyhow::ensure!(
        router.open_orders(name).is_empty() && router.position(name, ORDERS_SYMBOL).qty.is_zero(),
        "the bench agent ended with open orders or a position"
    );
    Ok(())
}

/// Virtual start of the risk and place measurements: 2024-01-01 01:00 UTC, so their
/// 50 000 × 150 ms stay within one trading day.
const ORDERS_EPOCH_NS: u64 = 1_704_070_800_000_000_000;

/// The reference quote of the risk and place measurements at `ts`: 60 000.0 / 60 000.1.
fn bench_quote(ts: u64) -> colony_host::market::types::Quote {
    use rust_decimal::Decimal;
    colony_host::market::types::Quote {
        symbol: ORDERS_SYMBOL.into(),
        bid: Decimal::new(600_000, 1),
        bid_size: Decimal::new(15, 1),
        ask: Decimal::new(600_001, 1),
        ask_size: Decimal::new(15, 1),
        ts,
    }
}

/// `n` marketable limit IOC orders of 0.001 at [`bench_quote`]'s touch, buy and sell in turn.
fn bench_orders(n: usize, agent: &str) -> Vec<colony_host::orders::OrderRequest> {
    use colony_host::market::types::Side;
    use colony_host::orders::{OrderKind, OrderRequest, TimeInForce};
    let agent: Arc<str> = Arc::from(agent);
    let quote = bench_quote(0);
    (0..n)
        .map(|i| {
            let side = if i % 2 == 0 { Side::Buy } else { Side::Sell };
            OrderRequest {
                client_id: format!("r{i}"),
                agent: agent.clone(),
                symbol: quote.symbol.clone(),
                side,
                kind: OrderKind::Limit,
                price: Some(match side {
                    Side::Buy => quote.ask,
                    Side::Sell => quote.bid,
                }),
                qty: rust_decimal::Decimal::new(1, 3),
                tif: TimeInForce::Ioc,
                post_only: false,
                reduce_only: false,
            }
        })
        .collect()
}

/// The baseline of the tick → fill measurement: per tick, the book becomes the reference
/// quote and the paper exchange's book (as in the router's `on_market`), a native closure
/// makes the bench agent's decision, and `RiskEngine::check`, `PaperExchange::place` and the
/// risk engine's bookkeeping of the reports run as direct calls. Microseconds per tick after
/// `warmup`.
fn native_tick_to_fill(
    total: usize,
    warmup: usize,
    limits: colony_host::orders::risk::RiskLimits,
) -> anyhow::Result<Vec<f64>> {
    use colony_host::market::types::{MarketEvent, Quote, Side};
    use colony_host::orders::paper::{PaperConfig, PaperExchange};
    use colony_host::orders::risk::{Fill, RiskEngine};
    use colony_host::orders::{ExecKind, OrderKind, OrderRequest, TimeInForce};

    let clock = colony_host::clock::Clock::system();
    let agent: Arc<str> = Arc::from("native");
    let mut risk = RiskEngine::new(limits);
    let mut paper = PaperExchange::new(PaperConfig::default());
    let mut reference: Option<Quote> = None;
    let mut out = Vec::new();
    let mut placed = 0u64;
    let mut decide = |event: &MarketEvent| -> Option<OrderRequest> {
        let MarketEvent::Book(b) = event else {
            return None;
        };
        placed += 1;
        Some(OrderRequest {
            client_id: format!("b{placed}"),
            agent: agent.clone(),
            symbol: b.symbol.clone(),
            side: if placed % 2 == 1 {
                Side::Buy
            } else {
                Side::Sell
            },
            kind: OrderKind::Market,
            price: None,
            qty: rust_decimal::Decimal::new(1, 3),
            tif: TimeInForce::Ioc,
            post_only: false,
            reduce_only: false,
        })
    };
    let mut lat = Vec::with_capacity(total.saturating_sub(warmup));
    for i in 0..total {
        let event = bench_book(i, clock.now_ns());
        let start = Instant::now();
        if let MarketEvent::Book(b) = &event
            && let (Some(bid), Some(ask)) = (b.bids.first(), b.asks.first())
        {
            reference = Some(Quote {
                symbol: b.symbol.clone(),
                bid: bid.price,
                bid_size: bid.size,
                ask: ask.price,
                ask_size: ask.size,
                ts: b.ts,
            });
        }
        paper.on_market(&event, &mut out);
        out.clear();
        let req = decide(&event).ok_or_else(|| anyhow::anyhow!("native tick {i}: no decision"))?;
        let now = clock.now_ns();
        risk.check(&req, reference.as_ref(), now)
            .map_err(|r| anyhow::anyhow!("native tick {i}: {r}"))?;
        paper.place(&req, now, &mut out);
        let mut filled = false;
        for r in out.drain(..) {
            match r.kind {
                ExecKind::Accepted => {
                    risk.on_accepted(&r.agent, &r.client_id);
                }
                ExecKind::Fill(f) => {
                    risk.on_fill(&Fill {
                        agent: r.agent,
                        client_id: Some(r.client_id),
                        symbol: r.symbol,
                        side: r.side,
                        qty: f.qty,
                        price: f.price,
                        fee: f.fee,
                    })?;
                    filled = true;
                }
                ExecKind::Rejected { code, message } => {
                    anyhow::bail!("native tick {i}: rejected: {code}: {message}")
                }
                ExecKind::Cancelled | ExecKind::Expired => {
                    risk.on_closed(&r.agent, &r.client_id);
                }
            }
        }
        risk.on_closed(&req.agent, &req.client_id);
        let took = start.elapsed();
        anyhow::ensure!(filled, "native tick {i}: no fill");
        if i >= warmup {
            lat.push(took.as_secs_f64() * 1e6);
        }
    }
    Ok(lat)
}

/// `RiskEngine::check` alone under `limits`, nanoseconds per order (mean over `n`): the
/// [`bench_orders`], [`ORDER_SPACING_NS`] apart in virtual time against a fresh quote, each
/// filled at its price (outside the timing) so the position stays flat and nothing stays
/// open, as a trading day goes.
fn risk_check_cost(n: usize, limits: colony_host::orders::risk::RiskLimits) -> anyhow::Result<f64> {
    use colony_host::orders::risk::{Fill, RiskEngine};
    use rust_decimal::Decimal;

    let overhead = timer_overhead();
    let mut risk = RiskEngine::new(limits);
    let mut now = ORDERS_EPOCH_NS;
    let mut total = Duration::ZERO;
    for req in bench_orders(n, "bench-risk") {
        now += ORDER_SPACING_NS;
        let quote = bench_quote(now);
        let t = Instant::now();
        let checked = risk.check(std::hint::black_box(&req), Some(&quote), now);
        total += t.elapsed();
        checked.map_err(|r| anyhow::anyhow!("the risk bench's order was refused: {r}"))?;
        let price = req.price.unwrap_or_default();
        risk.on_fill(&Fill {
            agent: req.agent.clone(),
            client_id: Some(req.client_id.clone()),
            symbol: req.symbol.clone(),
            side: req.side,
            qty: req.qty,
            price,
            // The paper exchange's taker fee, 5 bps.
            fee: price * req.qty * Decimal::new(5, 4),
        })?;
        risk.on_closed(&req.agent, &req.client_id);
    }
    Ok((per_op(total, n as u64) - overhead).max(0.0))
}

/// `OrderService::place` on the paper router under [`realistic_limits`], nanoseconds per
/// order (mean over `n`): risk, the paper fill, the router's order table and the events
/// published to a subscriber; the reference quote is refreshed before each order, outside
/// the timing.
fn place_cost(n: usize) -> anyhow::Result<f64> {
    use colony_host::bus::Bus;
    use colony_host::market::types::MarketEvent;
    use colony_host::orders::service::{Ack, OrderService, OrdersConfig, events_subject};

    let overhead = timer_overhead();
    let bus = Bus::new();
    let router = OrderService::paper(
        bus.clone(),
        OrdersConfig {
            risk: realistic_limits(),
            ..OrdersConfig::default()
        },
    );
    let agent = "bench-router";
    let sink = bus.mailbox("bench-sink", 64);
    bus.subscribe("bench-sink", &events_subject(agent), &sink)?;
    let mut now = ORDERS_EPOCH_NS;
    let mut total = Duration::ZERO;
    for req in bench_orders(n, agent) {
        now += ORDER_SPACING_NS;
        router.on_market(&MarketEvent::Quote(bench_quote(now)));
        let t = Instant::now();
        let ack = router.place(std::hint::black_box(req), now);
        total += t.elapsed();
        anyhow::ensure!(ack == Ack::Submitted, "the place bench's order: {ack:?}");
        while sink.try_recv().is_some() {
            sink.done();
        }
    }
    let c = router.counters();
    anyhow::ensure!(
        c.fills == n as u64 && c.events_undelivered == 0,
        "the place bench filled {} of {n} orders ({} events undelivered)",
        c.fills,
        c.events_undelivered
    );
    Ok((per_op(total, n as u64) - overhead).max(0.0))
}
