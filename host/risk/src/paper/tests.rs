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
