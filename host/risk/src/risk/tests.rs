use super::*;
use colony_model::market::Quote;
use colony_model::order::{OrderKind, OrderRequest, TimeInForce};
use std::collections::VecDeque;

#[test]
fn rate_window_is_sorted_bounded_and_survives_a_clock_step_back() {
    let ms = 1_000_000;
    let mut times = VecDeque::new();
    // 10,000 orders 1 ms apart: only the last minute's are kept (all of them here).
    for i in 1..=10_000u64 {
        record_time(&mut times, i * ms);
    }
    assert_eq!(times.len(), 10_000);
    // Exactly 1,000 in the last second (times 9,001..=10,000 ms).
    assert!(at_rate(&times, 9_000 * ms, 1_000));
    assert!(!at_rate(&times, 9_000 * ms, 1_001));
    // A step back inserts in order.
    record_time(&mut times, 9_500 * ms);
    assert!(times.iter().zip(times.iter().skip(1)).all(|(a, b)| a <= b));
    assert!(at_rate(&times, 9_000 * ms, 1_001));
    // A minute later the old ones are gone.
    record_time(&mut times, 70_000 * ms);
    assert_eq!(times.len(), 1);
}

const SEC: u64 = NANOS_PER_SEC;
const T0: u64 = 1_000 * NANOS_PER_DAY;

fn d(s: &str) -> Decimal {
    s.parse().unwrap()
}

fn quote(bid: &str, ask: &str, ts: u64) -> Quote {
    Quote {
        symbol: "BTC-USDT".into(),
        bid: d(bid),
        bid_size: d("1"),
        ask: d(ask),
        ask_size: d("1"),
        ts,
    }
}

fn limit(id: &str, side: Side, price: &str, qty: &str) -> OrderRequest {
    OrderRequest {
        client_id: id.into(),
        agent: "a".into(),
        symbol: "BTC-USDT".into(),
        side,
        kind: OrderKind::Limit,
        price: Some(d(price)),
        qty: d(qty),
        tif: TimeInForce::Gtc,
        post_only: false,
        reduce_only: false,
    }
}

fn market(id: &str, side: Side, qty: &str) -> OrderRequest {
    OrderRequest {
        kind: OrderKind::Market,
        price: None,
        ..limit(id, side, "1", qty)
    }
}

fn fill(side: Side, qty: &str, price: &str, fee: &str) -> Fill {
    Fill {
        agent: "a".into(),
        client_id: None,
        symbol: "BTC-USDT".into(),
        side,
        qty: d(qty),
        price: d(price),
        fee: d(fee),
    }
}

fn code(r: Result<(), Rejection>) -> Option<&'static str> {
    r.err().map(|e| e.code.as_str())
}

/// One check on a fresh engine: `order` under `limits`, with `quote` as the reference.
struct Case {
    name: &'static str,
    limits: RiskLimits,
    quote: Option<Quote>,
    order: OrderRequest,
    want: Result<(), RejectCode>,
}

/// The single-order checks, each with the near miss that passes. The reference quote is
/// 100 / 101 at `T0` unless a row says otherwise.
fn cases() -> Vec<Case> {
    use RejectCode::*;
    let q = Some(quote("100", "101", T0));
    let case = |name, limits: &RiskLimits, order, want| Case {
        name,
        limits: limits.clone(),
        quote: q.clone(),
        order,
        want,
    };
    let none = RiskLimits::default();
    let instruments = RiskLimits {
        instruments: Some(Instruments::new(["BTC-*", "ETH/USD"])),
        ..Default::default()
    };
    let precision = RiskLimits {
        tick_size: Some(d("0.5")),
        qty_step: Some(d("0.01")),
        ..Default::default()
    };
    let min_qty = RiskLimits {
        min_qty: Some(d("0.1")),
        ..Default::default()
    };
    let max_qty = RiskLimits {
        max_qty: Some(d("5")),
        ..Default::default()
    };
    let max_notional = RiskLimits {
        max_notional: Some(d("1000")),
        ..Default::default()
    };
    let collar = RiskLimits {
        price_collar_bps: Some(100),
        ..Default::default()
    };
    let good = limit("1", Side::Buy, "100", "1");
    vec![
        case("instrument: allowed", &instruments, good.clone(), Ok(())),
        case(
            "instrument: not listed",
            &instruments,
            OrderRequest {
                symbol: "SOL-USDT".into(),
                ..good.clone()
            },
            Err(Instrument),
        ),
        case(
            "precision: on tick and step",
            &precision,
            limit("1", Side::Buy, "100.5", "0.25"),
            Ok(()),
        ),
        case(
            "precision: off tick",
            &precision,
            limit("1", Side::Buy, "100.3", "0.25"),
            Err(Precision),
        ),
        case(
            "precision: off step",
            &precision,
            limit("1", Side::Buy, "100.5", "0.255"),
            Err(Precision),
        ),
        case(
            "min qty: at it",
            &min_qty,
            limit("1", Side::Buy, "100", "0.1"),
            Ok(()),
        ),
        case(
            "min qty: below",
            &min_qty,
            limit("1", Side::Buy, "100", "0.09"),
            Err(MinQty),
        ),
        case(
            "min qty: negative",
            &min_qty,
            limit("1", Side::Buy, "100", "-1"),
            Err(MinQty),
        ),
        case(
            "max qty: at it",
            &max_qty,
            limit("1", Side::Buy, "100", "5"),
            Ok(()),
        ),
        case(
            "max qty: above",
            &max_qty,
            limit("1", Side::Buy, "100", "5.001"),
            Err(MaxQty),
        ),
        case(
            "max notional: at it",
            &max_notional,
            limit("1", Side::Buy, "100", "10"),
            Ok(()),
        ),
        case(
            "max notional: above",
            &max_notional,
            limit("1", Side::Buy, "100.01", "10"),
            Err(MaxNotional),
        ),
        // A market buy is valued at the ask (101): 10 × 101 > 1000.
        case(
            "max notional: market sell at the bid",
            &max_notional,
            market("1", Side::Sell, "10"),
            Ok(()),
        ),
        case(
            "max notional: market buy at the ask",
            &max_notional,
            market("1", Side::Buy, "10"),
            Err(MaxNotional),
        ),
        // Overflow is a rejection even with no limit.
        Case {
            quote: None,
            ..case(
                "max notional: overflow",
                &none,
                limit("1", Side::Buy, "79228162514264337593543950335", "2"),
                Err(MaxNotional),
            )
        },
        // Buys are measured from the ask (101): 1% is 1.01.
        case(
            "price collar: buy inside",
            &collar,
            limit("1", Side::Buy, "102.01", "1"),
            Ok(()),
        ),
        case(
            "price collar: buy outside",
            &collar,
            limit("1", Side::Buy, "102.02", "1"),
            Err(PriceCollar),
        ),
        // Sells from the bid (100).
        case(
            "price collar: sell inside",
            &collar,
            limit("1", Side::Sell, "99", "1"),
            Ok(()),
        ),
        case(
            "price collar: sell outside",
            &collar,
            limit("1", Side::Sell, "98.99", "1"),
            Err(PriceCollar),
        ),
        case("invalid order: valid", &none, good.clone(), Ok(())),
        case(
            "invalid order: empty client id",
            &none,
            OrderRequest {
                client_id: String::new(),
                ..good.clone()
            },
            Err(InvalidOrder),
        ),
        case(
            "invalid order: client id too long",
            &none,
            OrderRequest {
                client_id: "x".repeat(MAX_ID_LEN + 1),
                ..good.clone()
            },
            Err(InvalidOrder),
        ),
        case(
            "invalid order: limit without price",
            &none,
            OrderRequest {
                price: None,
                ..good.clone()
            },
            Err(InvalidOrder),
        ),
        case(
            "invalid order: zero price",
            &none,
            OrderRequest {
                price: Some(d("0")),
                ..good.clone()
            },
            Err(InvalidOrder),
        ),
        case(
            "invalid order: market with price",
            &none,
            OrderRequest {
                price: Some(d("1")),
                ..market("1", Side::Buy, "1")
            },
            Err(InvalidOrder),
        ),
        case(
            "invalid order: post-only ioc",
            &none,
            OrderRequest {
                post_only: true,
                tif: TimeInForce::Ioc,
                ..good.clone()
            },
            Err(InvalidOrder),
        ),
    ]
}

#[test]
fn single_order_checks() {
    for c in cases() {
        let mut e = RiskEngine::new(c.limits);
        let got = e.check(&c.order, c.quote.as_ref(), T0).map_err(|r| r.code);
        assert_eq!(got, c.want, "{}", c.name);
        if let Err(code) = c.want {
            assert_eq!(e.rejections()[code.as_str()], 1, "{}", c.name);
        }
    }
}

#[test]
fn symbol_patterns() {
    let i = Instruments::new(["BTC-*", "*-EUR", "A*B*C", "ETH/USD"]);
    for s in ["BTC-USDT", "BTC-", "X-EUR", "ABC", "AxxBxxC", "ETH/USD"] {
        assert!(i.allows(s), "{s}");
    }
    for s in ["BTC", "ETH/USDT", "AB", "ACB", "X-EURO"] {
        assert!(!i.allows(s), "{s}");
    }
    assert!(!Instruments::new::<[&str; 0], &str>([]).allows("BTC-USDT"));
}

#[test]
fn stale_data() {
    let l = RiskLimits {
        max_quote_age_ms: Some(500),
        ..Default::default()
    };
    let o = limit("1", Side::Buy, "100", "1");
    let mut e = RiskEngine::new(l.clone());
    let old = quote("100", "101", T0 - 500_000_001);
    assert_eq!(code(e.check(&o, Some(&old), T0)), Some("risk.stale-data"));
    let ok = quote("100", "101", T0 - 500_000_000);
    assert_eq!(code(e.check(&o, Some(&ok), T0)), None);
    // No quote, or one for another symbol, is stale too.
    let mut e = RiskEngine::new(l);
    assert_eq!(code(e.check(&o, None, T0)), Some("risk.stale-data"));
    let other = Quote {
        symbol: "ETH-USDT".into(),
        ..ok.clone()
    };
    assert_eq!(code(e.check(&o, Some(&other), T0)), Some("risk.stale-data"));
    // A market order needs a reference even with no limits.
    let mut e = RiskEngine::default();
    assert_eq!(
        code(e.check(&market("m", Side::Buy, "1"), None, T0)),
        Some("risk.stale-data")
    );
    assert_eq!(
        code(e.check(&market("m", Side::Buy, "1"), Some(&ok), T0)),
        None
    );
    assert_eq!(e.rejections()["risk.stale-data"], 1);
}

#[test]
fn duplicate_client_id() {
    let mut e = RiskEngine::default();
    let o = limit("1", Side::Buy, "100", "1");
    assert_eq!(code(e.check(&o, None, T0)), None);
    assert_eq!(
        code(e.check(&o, None, T0)),
        Some("risk.duplicate-client-id")
    );
    // Still taken after the order closed; free again the next day.
    assert!(e.on_closed("a", "1"));
    assert_eq!(
        code(e.check(&o, None, T0)),
        Some("risk.duplicate-client-id")
    );
    assert_eq!(code(e.check(&o, None, T0 + NANOS_PER_DAY)), None);
    // Another agent has its own ids.
    let other = OrderRequest {
        agent: "b".into(),
        ..o
    };
    assert_eq!(code(e.check(&other, None, T0)), None);
}

#[test]
fn max_open_orders() {
    let mut e = RiskEngine::new(RiskLimits {
        max_open_orders: Some(2),
        ..Default::default()
    });
    assert_eq!(
        code(e.check(&limit("1", Side::Buy, "100", "1"), None, T0)),
        None
    );
    assert_eq!(
        code(e.check(&limit("2", Side::Buy, "100", "1"), None, T0)),
        None
    );
    assert_eq!(
        code(e.check(&limit("3", Side::Buy, "100", "1"), None, T0)),
        Some("risk.max-open-orders")
    );
    assert!(e.on_cancel("a", "1"));
    assert_eq!(
        code(e.check(&limit("4", Side::Buy, "100", "1"), None, T0)),
        None
    );
}

#[test]
fn max_open_notional() {
    let mut e = RiskEngine::new(RiskLimits {
        max_open_notional: Some(d("300")),
        ..Default::default()
    });
    assert_eq!(
        code(e.check(&limit("1", Side::Buy, "100", "2"), None, T0)),
        None
    );
    assert_eq!(
        code(e.check(&limit("2", Side::Sell, "100", "1.01"), None, T0)),
        Some("risk.max-open-notional")
    );
    assert_eq!(
        code(e.check(&limit("3", Side::Sell, "100", "1"), None, T0)),
        None
    );
    assert_eq!(e.open_notional("a"), d("300"));
    // A partial fill frees its share of the notional; a full one closes the order.
    let mut f = fill(Side::Buy, "0.5", "100", "0");
    f.client_id = Some("1".into());
    e.on_fill(&f).unwrap();
    assert_eq!(e.open_notional("a"), d("250"));
    f.qty = d("1.5");
    e.on_fill(&f).unwrap();
    assert_eq!(e.open_notional("a"), d("100"));
    assert_eq!(e.open_orders("a"), 1);
}

#[test]
fn position_limit() {
    let l = RiskLimits {
        max_position: Some(d("3")),
        ..Default::default()
    };
    let mut e = RiskEngine::new(l);
    e.on_fill(&fill(Side::Buy, "1", "100", "0")).unwrap();
    // Position 1 plus an open buy of 1: a buy of 1 reaches 3, of 1.1 exceeds it.
    assert_eq!(
        code(e.check(&limit("1", Side::Buy, "100", "1"), None, T0)),
        None
    );
    assert_eq!(
        code(e.check(&limit("2", Side::Buy, "100", "1.1"), None, T0)),
        Some("risk.position-limit")
    );
    assert_eq!(
        code(e.check(&limit("3", Side::Buy, "100", "1"), None, T0)),
        None
    );
    // Selling 4 flips to -3: allowed; 4.1 is not.
    assert_eq!(
        code(e.check(&limit("4", Side::Sell, "100", "4.1"), None, T0)),
        Some("risk.position-limit")
    );
    assert_eq!(
        code(e.check(&limit("5", Side::Sell, "100", "4"), None, T0)),
        None
    );
}

#[test]
fn daily_loss() {
    let mut e = RiskEngine::new(RiskLimits {
        max_daily_loss: Some(d("50")),
        ..Default::default()
    });
    e.on_fill(&fill(Side::Buy, "2", "100", "0")).unwrap();
    e.on_fill(&fill(Side::Sell, "1", "51", "0.99")).unwrap();
    assert_eq!(e.realised_pnl("a"), d("-49.99"));
    assert_eq!(
        code(e.check(&limit("1", Side::Buy, "100", "1"), None, T0)),
        None
    );
    assert!(e.on_closed("a", "1"));
    e.on_fill(&fill(Side::Sell, "0.5", "100", "0.01")).unwrap();
    assert_eq!(e.realised_pnl("a"), d("-50"));
    assert_eq!(
        code(e.check(&limit("2", Side::Buy, "100", "1"), None, T0)),
        Some("risk.daily-loss")
    );
    // Flattening is still allowed.
    assert_eq!(
        code(e.check(&limit("3", Side::Sell, "100", "0.5"), None, T0)),
        None
    );
    // A new day starts from zero.
    assert_eq!(
        code(e.check(&limit("4", Side::Buy, "100", "1"), None, T0 + NANOS_PER_DAY)),
        None
    );
}

#[test]
fn order_rate() {
    let mut e = RiskEngine::new(RiskLimits {
        max_orders_per_sec: Some(2),
        max_orders_per_min: Some(3),
        ..Default::default()
    });
    let o = |id: &str| limit(id, Side::Buy, "100", "1");
    assert_eq!(code(e.check(&o("1"), None, T0)), None);
    assert_eq!(code(e.check(&o("2"), None, T0 + 1)), None);
    assert_eq!(
        code(e.check(&o("3"), None, T0 + SEC - 1)),
        Some("risk.order-rate")
    );
    assert_eq!(code(e.check(&o("4"), None, T0 + SEC)), None);
    assert_eq!(
        code(e.check(&o("5"), None, T0 + SEC + 1)),
        Some("risk.order-rate")
    );
    assert_eq!(code(e.check(&o("6"), None, T0 + 60 * SEC + 1)), None);
    assert_eq!(e.rejections()["risk.order-rate"], 2);
}

#[test]
fn cancel_rate() {
    let mut e = RiskEngine::new(RiskLimits {
        max_cancels_per_sec: Some(1),
        ..Default::default()
    });
    assert_eq!(code(e.check_cancel("a", T0)), None);
    assert_eq!(
        code(e.check_cancel("a", T0 + SEC - 1)),
        Some("risk.cancel-rate")
    );
    assert_eq!(code(e.check_cancel("a", T0 + SEC)), None);
    assert_eq!(code(e.check_cancel("b", T0 + SEC + 1)), None);
    assert_eq!(e.rejections()["risk.cancel-rate"], 1);
}

#[test]
fn halted_and_reducing() {
    let mut e = RiskEngine::default();
    e.on_fill(&fill(Side::Buy, "2", "100", "0")).unwrap();
    e.set_trading_state(Scope::Global, TradingState::Halted);
    assert_eq!(
        code(e.check(&limit("1", Side::Sell, "100", "1"), None, T0)),
        Some("risk.halted")
    );
    e.set_trading_state(Scope::Global, TradingState::Active);
    e.set_trading_state(Scope::Agent("a"), TradingState::Reducing);
    assert_eq!(
        code(e.check(&limit("2", Side::Buy, "100", "1"), None, T0)),
        Some("risk.reducing-only")
    );
    assert_eq!(
        code(e.check(&limit("3", Side::Sell, "100", "1"), None, T0)),
        None
    );
    // With 1 already being sold, selling 1.5 more would flip the position.
    assert_eq!(
        code(e.check(&limit("4", Side::Sell, "100", "1.5"), None, T0)),
        Some("risk.reducing-only")
    );
    assert_eq!(
        code(e.check(&limit("5", Side::Sell, "100", "1"), None, T0)),
        None
    );
    // Another agent is not affected; a reduce-only order when flat is refused.
    let other = OrderRequest {
        agent: "b".into(),
        ..limit("6", Side::Buy, "100", "1")
    };
    assert_eq!(code(e.check(&other, None, T0)), None);
    let ro = OrderRequest {
        reduce_only: true,
        ..other
    };
    let ro = OrderRequest {
        client_id: "7".into(),
        ..ro
    };
    assert_eq!(code(e.check(&ro, None, T0)), Some("risk.reducing-only"));
}

#[test]
fn kill_switch() {
    let mut e = RiskEngine::default();
    e.on_fill(&fill(Side::Buy, "2", "100", "0")).unwrap();
    e.set_kill_switch(Scope::Agent("a"), true);
    assert_eq!(
        code(e.check(&limit("1", Side::Sell, "100", "1"), None, T0)),
        Some("risk.kill-switch")
    );
    // Cancels still pass.
    assert_eq!(code(e.check_cancel("a", T0)), None);
    e.set_kill_switch(Scope::Agent("a"), false);
    e.set_kill_switch(Scope::Global, true);
    assert_eq!(
        code(e.check(&limit("2", Side::Sell, "100", "1"), None, T0)),
        Some("risk.kill-switch")
    );
    // Off again, in REDUCING: reducing passes, increasing does not.
    e.set_kill_switch(Scope::Global, false);
    e.set_trading_state(Scope::Global, TradingState::Reducing);
    assert_eq!(
        code(e.check(&limit("3", Side::Sell, "100", "1"), None, T0)),
        None
    );
    assert_eq!(
        code(e.check(&limit("4", Side::Buy, "100", "1"), None, T0)),
        Some("risk.reducing-only")
    );
    assert_eq!(e.rejections()["risk.kill-switch"], 2);
}

#[test]
fn effective_limit_is_the_stricter() {
    let mut e = RiskEngine::new(RiskLimits {
        max_qty: Some(d("10")),
        min_qty: Some(d("1")),
        ..Default::default()
    });
    e.set_agent_limits(
        "a",
        RiskLimits {
            max_qty: Some(d("5")),
            min_qty: Some(d("0.5")),
            ..Default::default()
        },
    );
    assert_eq!(
        code(e.check(&limit("1", Side::Buy, "100", "6"), None, T0)),
        Some("risk.max-qty")
    );
    assert_eq!(
        code(e.check(&limit("2", Side::Buy, "100", "0.8"), None, T0)),
        Some("risk.min-qty")
    );
    assert_eq!(
        code(e.check(&limit("3", Side::Buy, "100", "5"), None, T0)),
        None
    );
    // The global limit applies alone to an agent without its own, and after clearing.
    let b = OrderRequest {
        agent: "b".into(),
        ..limit("4", Side::Buy, "100", "10")
    };
    assert_eq!(code(e.check(&b, None, T0)), None);
    e.clear_agent_limits("a");
    assert_eq!(
        code(e.check(&limit("5", Side::Buy, "100", "10"), None, T0)),
        None
    );
    // A looser agent limit does not loosen the global one.
    e.set_agent_limits(
        "a",
        RiskLimits {
            max_qty: Some(d("100")),
            ..Default::default()
        },
    );
    assert_eq!(
        code(e.check(&limit("6", Side::Buy, "100", "11"), None, T0)),
        Some("risk.max-qty")
    );
}

#[test]
fn position_and_pnl_after_fills() {
    let mut e = RiskEngine::default();
    e.on_fill(&fill(Side::Buy, "2", "100", "0")).unwrap();
    e.on_fill(&fill(Side::Buy, "1", "130", "0")).unwrap();
    // (2 × 100 + 1 × 130) / 3 = 110
    assert_eq!(
        e.position("a", "BTC-USDT"),
        Position {
            qty: d("3"),
            avg_price: d("110")
        }
    );
    e.on_fill(&fill(Side::Sell, "2", "120", "0")).unwrap();
    // 2 × (120 - 110) = 20
    assert_eq!(e.realised_pnl("a"), d("20"));
    assert_eq!(
        e.position("a", "BTC-USDT"),
        Position {
            qty: d("1"),
            avg_price: d("110")
        }
    );
    // Selling 3 @ 100 closes 1 (-10) and opens a short of 2 at 100; a fee of 1.5.
    e.on_fill(&fill(Side::Sell, "3", "100", "1.5")).unwrap();
    assert_eq!(e.realised_pnl("a"), d("8.5"));
    assert_eq!(
        e.position("a", "BTC-USDT"),
        Position {
            qty: d("-2"),
            avg_price: d("100")
        }
    );
    // Covering the short at 90 gains 2 × 10.
    e.on_fill(&fill(Side::Buy, "2", "90", "0")).unwrap();
    assert_eq!(e.realised_pnl("a"), d("28.5"));
    assert_eq!(e.position("a", "BTC-USDT"), Position::default());
}

#[test]
fn bad_fills_leave_state_alone() {
    let mut e = RiskEngine::default();
    e.on_fill(&fill(Side::Buy, "1", "100", "0")).unwrap();
    assert!(matches!(
        e.on_fill(&fill(Side::Buy, "0", "100", "0")),
        Err(FillError::Invalid { .. })
    ));
    let max = Decimal::MAX.to_string();
    assert!(matches!(
        e.on_fill(&fill(Side::Buy, &max, &max, "0")),
        Err(FillError::Overflow { .. })
    ));
    assert_eq!(
        e.position("a", "BTC-USDT"),
        Position {
            qty: d("1"),
            avg_price: d("100")
        }
    );
}

#[test]
fn every_code_is_counted_and_listed() {
    let mut e = RiskEngine::default();
    let r = e.rejections();
    assert_eq!(r.len(), RejectCode::ALL.len());
    assert!(r.values().all(|n| *n == 0));
    e.set_kill_switch(Scope::Global, true);
    for i in 0..3 {
        let _ = e.check(&limit(&i.to_string(), Side::Buy, "100", "1"), None, T0);
    }
    let _ = e.check(&limit("x", Side::Buy, "100", "-1"), None, T0);
    let r = e.rejections();
    assert_eq!(r["risk.kill-switch"], 4);
    assert_eq!(r.values().sum::<u64>(), 4);
}

#[test]
fn unknown_instrument() {
    let mut e = RiskEngine::default();
    let nope = OrderRequest {
        symbol: "NOPE-XXX".into(),
        ..limit("1", Side::Buy, "100", "1")
    };
    // Off by default: the pure engine trades what it is given.
    assert_eq!(code(e.check(&nope, None, T0)), None);
    e.require_known_instruments(true);
    e.learn_instrument(&Arc::from("BTC-USDT"));
    let nope = OrderRequest {
        client_id: "2".into(),
        ..nope
    };
    assert_eq!(
        code(e.check(&nope, None, T0)),
        Some("risk.unknown-instrument")
    );
    assert_eq!(
        code(e.check(&limit("3", Side::Buy, "100", "1"), None, T0)),
        None
    );
    e.learn_instrument(&Arc::from("NOPE-XXX"));
    assert!(e.knows_instrument("NOPE-XXX"));
    assert_eq!(code(e.check(&nope, None, T0)), None);
    assert_eq!(e.rejections()["risk.unknown-instrument"], 1);
}

/// What the issue found accepted on a host without `[orders.risk]`, against the defaults.
#[test]
fn defaults_refuse_fat_fingers_and_order_loops() {
    let q = quote("100", "101", T0);
    let mut e = RiskEngine::new(RiskLimits::defaults());
    let cases = [
        (
            limit("1", Side::Buy, "100", "9223372036854775807"),
            "risk.max-qty",
        ),
        (
            limit("2", Side::Buy, "9223372036854775807", "1"),
            "risk.price-collar",
        ),
        (market("3", Side::Buy, "1000000"), "risk.max-qty"),
        (market("4", Side::Buy, "50000"), "risk.max-notional"),
        (limit("5", Side::Buy, "111.2", "1"), "risk.price-collar"),
    ];
    for (order, want) in cases {
        assert_eq!(
            code(e.check(&order, Some(&q), T0)),
            Some(want),
            "{}",
            order.client_id
        );
    }
    // Within every default: passes.
    assert_eq!(
        code(e.check(&limit("6", Side::Buy, "111.1", "10"), Some(&q), T0)),
        None
    );
    assert!(e.on_closed("a", "6"));
    // 3,000 place + cancel pairs in one instant: 20 of each pass, then the rates refuse.
    let (mut placed, mut cancelled) = (0, 0);
    for i in 0..3_000 {
        let order = limit(&format!("p{i}"), Side::Buy, "100", "1");
        if e.check(&order, Some(&q), T0 + 1).is_ok() {
            placed += 1;
            e.on_closed("a", &order.client_id);
        }
        if e.check_cancel("a", T0 + 1).is_ok() {
            cancelled += 1;
        }
    }
    // Order "6" already counts towards the second.
    assert_eq!((placed, cancelled), (19, 20));
    assert_eq!(e.rejections()["risk.order-rate"], 2_981);
    assert_eq!(e.rejections()["risk.cancel-rate"], 2_980);
}

/// A restart rebuilds the engine from the journal: fills replayed in time order, then the
/// day advanced, then today's orders restored. It decides as the engine before the restart.
#[test]
fn restart_rebuild_decides_as_before() {
    let limits = RiskLimits {
        max_daily_loss: Some(d("50")),
        max_position: Some(d("3")),
        ..Default::default()
    };
    let yesterday = T0 - NANOS_PER_DAY;
    // Before: a loss yesterday (forgotten today), a loss of 60 today with 1 still held, and
    // one order resting.
    let fills = [
        (fill(Side::Buy, "1", "100", "0"), yesterday),
        (fill(Side::Sell, "1", "10", "0"), yesterday + SEC),
        (fill(Side::Buy, "2", "100", "0"), T0),
        (fill(Side::Sell, "1", "40", "0"), T0 + SEC),
    ];
    let resting = limit("r", Side::Sell, "200", "1");
    let mut before = RiskEngine::new(limits.clone());
    for (f, ts) in &fills {
        before.advance_to(*ts);
        before.on_fill(f).unwrap();
    }
    assert_eq!(code(before.check(&resting, None, T0 + 2 * SEC)), None);

    let mut after = RiskEngine::new(limits);
    for (f, ts) in &fills {
        after.replay_fill(f, *ts).unwrap();
    }
    let now = T0 + 3 * SEC;
    after.advance_to(now);
    after.restore(&resting, Some(d("1")), T0 + 2 * SEC, now);
    for e in [&mut before, &mut after] {
        assert_eq!(e.realised_pnl("a"), d("-60"));
        assert_eq!(e.position("a", "BTC-USDT").qty, d("1"));
        assert_eq!(e.open_orders("a"), 1);
        // Adding risk breaches the daily loss limit; the resting id is still taken.
        assert_eq!(
            code(e.check(&limit("n", Side::Buy, "100", "1"), None, now)),
            Some("risk.daily-loss")
        );
        assert_eq!(
            code(e.check(&limit("r", Side::Sell, "100", "1"), None, now)),
            Some("risk.duplicate-client-id")
        );
    }
}

#[test]
fn restored_orders_of_the_last_minute_count_towards_the_order_rate() {
    let limits = RiskLimits {
        max_orders_per_min: Some(1),
        ..Default::default()
    };
    let now = T0 + 120 * SEC;
    for (created, want) in [
        (now - 59 * SEC, Some("risk.order-rate")),
        (now - 61 * SEC, None),
    ] {
        let mut e = RiskEngine::new(limits.clone());
        e.restore(&limit("old", Side::Buy, "100", "1"), None, created, now);
        assert_eq!(
            code(e.check(&limit("new", Side::Buy, "100", "1"), None, now)),
            want
        );
    }
}

#[test]
fn restored_cancels_of_the_last_minute_count_towards_the_cancel_rate() {
    let limits = RiskLimits {
        max_cancels_per_min: Some(2),
        ..Default::default()
    };
    let now = T0 + 120 * SEC;
    for (times, want) in [
        (vec![now - 59 * SEC, now - 1], Some("risk.cancel-rate")),
        (vec![now - 61 * SEC, now - 1], None),
        // A time after `now` (a clock that went back) is not counted.
        (vec![now - 1, now + SEC], None),
    ] {
        let mut e = RiskEngine::new(limits.clone());
        for at in times {
            e.restore_cancel("a", at, now);
        }
        assert_eq!(code(e.check_cancel("a", now)), want);
    }
}

#[test]
fn written_limits_replace_their_defaults_only() {
    let (merged, kept) = RiskLimits::defaults().overridden_by(RiskLimits {
        max_qty: Some(d("2")),
        max_position: Some(d("3")),
        ..Default::default()
    });
    assert_eq!(merged.max_qty, Some(d("2")));
    assert_eq!(merged.max_position, Some(d("3")));
    assert_eq!(merged.price_collar_bps, Some(1_000));
    assert!(kept.contains(&"price_collar_bps") && !kept.contains(&"max_qty"));
    let shown = merged.entries();
    assert!(shown.contains(&("max_qty", "2".to_string())), "{shown:?}");
    assert!(
        shown.contains(&("max_notional", "1000000".to_string())),
        "{shown:?}"
    );
    assert_eq!(shown.len(), 8);
}
