//! [`OkxVenue`](super::OkxVenue) against a loopback server: the exact requests it signs and
//! sends, and how it reads OKX's answers; and the tables that map orders and states.

use std::sync::Arc;
use std::time::Instant;

use rust_decimal::Decimal;

use super::client::{self, OrdType, TradeMode};
use super::{okx_order, okx_status, okx_trade_mode};
use crate::breaker::{BreakerConfig, BreakerState};
use crate::http::loopback::{Recorded, Reply, Server};
use crate::live::fixtures::{
    NOW, OKX_ACK_ITEM, OKX_PASSPHRASE, OKX_SECRET, TIMEOUT, d, json, limit, okx, okx_envelope,
    rejected,
};
use crate::live::{INVALID_ORDER, REJECTED, UNSUPPORTED, VenueError, VenueOrder};
use colony_market::types;
use colony_orders::{ExecKind, ExecReport, OrderKind, OrderRequest, OrderStatus, TimeInForce};

const OKX_ORDERS: &str = include_str!("../samples/okx_orders_pending.json");

/// The request carries the OKX key headers and a signature over exactly what was sent.
fn assert_okx_signed(request: &Recorded, demo: bool) {
    assert_eq!(request.header("ok-access-key"), Some("okx-api-key"));
    assert_eq!(request.header("ok-access-passphrase"), Some(OKX_PASSPHRASE));
    let ts = request.header("ok-access-timestamp").unwrap();
    assert_eq!(ts.len(), "2020-12-08T09:08:57.715Z".len());
    let prehash = format!("{ts}{}{}{}", request.method, request.target, request.body);
    assert_eq!(
        request.header("ok-access-sign"),
        Some(client::sign(OKX_SECRET, &prehash).as_str())
    );
    let simulated = request.header("x-simulated-trading");
    assert_eq!(simulated, demo.then_some("1"));
}

#[tokio::test]
async fn okx_place_accepted_sends_a_signed_demo_order() {
    let ack = okx_envelope("0", "", OKX_ACK_ITEM);
    let server = Server::start(move |_, _| Reply::Json(200, ack.clone())).await;
    let venue = okx(&server, true);
    let order = OrderRequest {
        post_only: true,
        reduce_only: true,
        ..limit("BTC-USDT-SWAP", "colony42")
    };
    let report = venue.place(&order, NOW).await.unwrap();
    assert_eq!(
        report,
        ExecReport {
            agent: Arc::from("trader"),
            client_id: "colony42".into(),
            symbol: Arc::from("BTC-USDT-SWAP"),
            side: types::Side::Buy,
            venue_order_id: Some("12345678901234567890".into()),
            kind: ExecKind::Accepted,
            ts: NOW,
        }
    );
    let [request] = server.requests().try_into().unwrap();
    assert_eq!(
        (request.method.as_str(), request.target.as_str()),
        ("POST", "/api/v5/trade/order")
    );
    assert_okx_signed(&request, true);
    assert_eq!(
        json(&request.body),
        serde_json::json!({"instId": "BTC-USDT-SWAP", "tdMode": "cross", "clOrdId": "colony42",
            "side": "buy", "ordType": "post_only", "px": "103500.5", "sz": "0.10",
            "reduceOnly": true})
    );
    assert_eq!(venue.name(), "okx-demo");
    assert_eq!(venue.breaker_status().state, BreakerState::Closed);
}

#[tokio::test]
async fn okx_spot_market_orders_are_cash_and_sized_in_base_currency() {
    let ack = okx_envelope("0", "", OKX_ACK_ITEM);
    let server = Server::start(move |_, _| Reply::Json(200, ack.clone())).await;
    let order = OrderRequest {
        kind: OrderKind::Market,
        price: None,
        tif: TimeInForce::Ioc,
        side: types::Side::Sell,
        ..limit("BTC-USDT", "m1")
    };
    okx(&server, false).place(&order, NOW).await.unwrap();
    let [request] = server.requests().try_into().unwrap();
    assert_okx_signed(&request, false);
    assert_eq!(
        json(&request.body),
        serde_json::json!({"instId": "BTC-USDT", "tdMode": "cash", "clOrdId": "m1",
            "side": "sell", "ordType": "market", "sz": "0.10", "tgtCcy": "base_ccy"})
    );
}

#[tokio::test]
async fn okx_place_rejected_is_a_known_outcome_and_not_a_breaker_failure() {
    // The documented shape of a failed place: code "1", the reason in data[0].
    let body = okx_envelope(
        "1",
        "All operations failed",
        r#"{"ordId":"","clOrdId":"colony42","tag":"","ts":"1695190491421","sCode":"51008","sMsg":"Order failed. Insufficient USDT balance in account."}"#,
    );
    let server = Server::start(move |_, _| Reply::Json(200, body.clone())).await;
    let venue = okx(&server, false).with_breaker(BreakerConfig {
        failure_threshold: 1,
        ..BreakerConfig::default()
    });
    let report = venue
        .place(&limit("BTC-USDT", "colony42"), NOW)
        .await
        .unwrap();
    assert_eq!(
        report.kind,
        rejected(
            REJECTED,
            "51008: Order failed. Insufficient USDT balance in account."
        )
    );
    assert_eq!(report.venue_order_id, None);
    assert!(report.is_terminal());
    assert!(json(&server.requests()[0].body)["clOrdId"] == "colony42");
    assert_eq!(venue.breaker_status().state, BreakerState::Closed);
}

#[tokio::test]
async fn okx_system_codes_leave_the_outcome_unknown() {
    let answers = [
        okx_envelope("50001", "Service temporarily unavailable", ""),
        okx_envelope(
            "1",
            "",
            r#"{"ordId":"","clOrdId":"a1","sCode":"50026","sMsg":"System error"}"#,
        ),
    ];
    let server = Server::start(move |n, _| Reply::Json(200, answers[n % 2].clone())).await;
    let venue = okx(&server, false);
    for expected in [
        "okx 50001: Service temporarily unavailable",
        "okx 50026: System error",
    ] {
        let result = venue.place(&limit("BTC-USDT", "a1"), NOW).await;
        assert_eq!(result, Err(VenueError::Unavailable(expected.into())));
        assert!(result.unwrap_err().outcome_unknown());
    }
    assert_eq!(venue.breaker_status().consecutive_failures, 2);
}

#[tokio::test]
async fn okx_place_times_out_at_the_configured_timeout() {
    let server = Server::start(|_, _| Reply::Hang).await;
    let venue = okx(&server, false);
    let started = Instant::now();
    let result = venue.place(&limit("BTC-USDT", "slow1"), NOW).await;
    let elapsed = started.elapsed();
    assert_eq!(result, Err(VenueError::Timeout(TIMEOUT)));
    assert!(elapsed >= TIMEOUT && elapsed < TIMEOUT * 3, "{elapsed:?}");
    // The request did arrive: exactly the case where resending would duplicate.
    assert!(server.requests()[0].body.contains("\"clOrdId\":\"slow1\""));
    assert_eq!(venue.breaker_status().consecutive_failures, 1);
}

#[tokio::test]
async fn okx_orders_it_cannot_take_are_rejected_without_sending() {
    let server = Server::start(|_, _| Reply::Json(200, String::new())).await;
    let venue = okx(&server, false);
    let dash = venue
        .place(&limit("BTC-USDT", "has-dash"), NOW)
        .await
        .unwrap();
    assert!(
        matches!(&dash.kind, ExecKind::Rejected { code, message } if code == INVALID_ORDER && message.starts_with("clOrdId:")),
        "{dash:?}"
    );
    let fok_market = OrderRequest {
        kind: OrderKind::Market,
        price: None,
        tif: TimeInForce::Fok,
        ..limit("BTC-USDT", "fok1")
    };
    let report = venue.place(&fok_market, NOW).await.unwrap();
    assert_eq!(
        report.kind,
        rejected(UNSUPPORTED, "okx has no fill-or-kill market orders")
    );
    assert_eq!(server.count(), 0);
}

#[tokio::test]
async fn okx_query_found_and_not_found() {
    let found = OKX_ORDERS
        .replace("\"accFillSz\": \"0\"", "\"accFillSz\": \"0.04\"")
        .replace("\"avgPx\": \"0\"", "\"avgPx\": \"103400.2\"")
        .replace("\"state\": \"live\"", "\"state\": \"partially_filled\"");
    assert_ne!(found, OKX_ORDERS);
    let missing = okx_envelope("51603", "Order does not exist", "");
    let server = Server::start(move |n, _| match n {
        0 => Reply::Json(200, found.clone()),
        _ => Reply::Json(200, missing.clone()),
    })
    .await;
    let venue = okx(&server, true);
    let order = limit("BTC-USDT-SWAP", "clientorder1");
    assert_eq!(
        venue.query(&order).await,
        Ok(Some(VenueOrder {
            venue_order_id: "1234567890123456789".into(),
            client_id: "client-order-1".into(),
            status: OrderStatus::PartiallyFilled,
            filled_qty: d("0.04"),
            avg_price: Some(d("103400.2")),
            venue_state: "partially_filled".into(),
        }))
    );
    assert_eq!(venue.query(&order).await, Ok(None));
    let requests = server.requests();
    for request in &requests {
        assert_eq!(
            (
                request.method.as_str(),
                request.target.as_str(),
                request.body.as_str()
            ),
            (
                "GET",
                "/api/v5/trade/order?instId=BTC-USDT-SWAP&clOrdId=clientorder1",
                ""
            )
        );
        assert_okx_signed(request, true);
    }
    assert_eq!(requests.len(), 2);
}

#[tokio::test]
async fn okx_query_errors_other_than_not_found_are_not_none() {
    let answers = [
        okx_envelope("50113", "Invalid Sign", ""),
        OKX_ORDERS.replace("\"state\": \"live\"", "\"state\": \"teleported\""),
    ];
    let server = Server::start(move |n, _| Reply::Json(200, answers[n].clone())).await;
    let venue = okx(&server, false);
    let order = limit("BTC-USDT-SWAP", "q1");
    assert_eq!(
        venue.query(&order).await,
        Err(VenueError::Refused {
            code: "50113".into(),
            message: "Invalid Sign".into()
        })
    );
    assert!(matches!(
        venue.query(&order).await,
        Err(VenueError::BadResponse { status: 200, .. })
    ));
}

#[tokio::test]
async fn okx_cancel_by_client_id_or_venue_id() {
    let ack = okx_envelope(
        "0",
        "",
        r#"{"clOrdId":"c1","ordId":"590908157585625111","sCode":"0","sMsg":""}"#,
    );
    let refused = okx_envelope(
        "1",
        "",
        r#"{"clOrdId":"c1","ordId":"590908157585625111","sCode":"51400","sMsg":"Cancellation failed as the order has been filled, canceled or does not exist"}"#,
    );
    let server = Server::start(move |n, _| match n {
        0 | 1 => Reply::Json(200, ack.clone()),
        _ => Reply::Json(200, refused.clone()),
    })
    .await;
    let venue = okx(&server, false);
    let order = limit("BTC-USDT", "c1");
    let report = venue.cancel(&order, None, NOW).await.unwrap();
    assert_eq!(report.kind, ExecKind::Cancelled);
    assert_eq!(report.venue_order_id.as_deref(), Some("590908157585625111"));
    venue
        .cancel(&order, Some("590908157585625111"), NOW)
        .await
        .unwrap();
    let result = venue.cancel(&order, None, NOW).await;
    assert!(
        matches!(&result, Err(VenueError::Refused { code, .. }) if code == "51400"),
        "{result:?}"
    );
    assert!(!result.unwrap_err().outcome_unknown());

    let requests = server.requests();
    assert_eq!(requests[0].target, "/api/v5/trade/cancel-order");
    assert_eq!(
        json(&requests[0].body),
        serde_json::json!({"instId": "BTC-USDT", "clOrdId": "c1"})
    );
    assert_eq!(
        json(&requests[1].body),
        serde_json::json!({"instId": "BTC-USDT", "ordId": "590908157585625111"})
    );
    for request in &requests {
        assert_eq!(request.method, "POST");
        assert_okx_signed(request, false);
    }
}

#[test]
fn okx_trade_modes() {
    for (inst_id, mode) in [
        ("BTC-USDT", TradeMode::Cash),
        ("ETH-BTC", TradeMode::Cash),
        ("BTC-USDT-SWAP", TradeMode::Cross),
        ("BTC-USD-250328", TradeMode::Cross),
        ("BTC-USD-250328-100000-C", TradeMode::Cross),
    ] {
        assert_eq!(okx_trade_mode(inst_id), mode, "{inst_id}");
    }
}

#[test]
fn okx_order_types() {
    use OrderKind::{Limit, Market};
    use TimeInForce::{Fok, Gtc, Ioc};
    let cases = [
        (Limit, Gtc, false, Some(OrdType::Limit)),
        (Limit, Ioc, false, Some(OrdType::Ioc)),
        (Limit, Fok, false, Some(OrdType::Fok)),
        (Limit, Gtc, true, Some(OrdType::PostOnly)),
        (Limit, Ioc, true, None),
        (Market, Gtc, false, Some(OrdType::Market)),
        (Market, Ioc, false, Some(OrdType::Market)),
        (Market, Fok, false, None),
        (Market, Gtc, true, None),
    ];
    for (kind, tif, post_only, expected) in cases {
        let order = OrderRequest {
            kind,
            tif,
            post_only,
            ..limit("BTC-USDT-SWAP", "t1")
        };
        let mapped = okx_order(&order);
        assert_eq!(
            mapped.as_ref().ok().map(|o| o.ord_type),
            expected,
            "{kind:?} {tif:?} {post_only}"
        );
        if let Err(refusal) = mapped {
            assert_eq!(refusal.code, UNSUPPORTED);
        }
    }
}

#[test]
fn okx_states_map_to_order_statuses() {
    let zero = Decimal::ZERO;
    let some = d("1");
    let okx_cases = [
        ("live", zero, Some(OrderStatus::Accepted)),
        ("live", some, Some(OrderStatus::PartiallyFilled)),
        ("partially_filled", some, Some(OrderStatus::PartiallyFilled)),
        ("filled", some, Some(OrderStatus::Filled)),
        ("canceled", some, Some(OrderStatus::Cancelled)),
        ("mmp_canceled", zero, Some(OrderStatus::Cancelled)),
        ("", zero, None),
    ];
    for (state, filled, expected) in okx_cases {
        assert_eq!(okx_status(state, filled), expected, "okx {state}");
    }
}

const OKX_INSTRUMENTS: &str = include_str!("../samples/okx_instruments_spot.json");

#[tokio::test]
async fn okx_instruments_are_the_live_ones_of_spot_swaps_and_futures_asked_for_the_demo_account() {
    let server = Server::start(|_, r| {
        let body = match r.target.as_str() {
            "/api/v5/public/instruments?instType=SPOT" => OKX_INSTRUMENTS.to_string(),
            "/api/v5/public/instruments?instType=SWAP" => okx_envelope(
                "0",
                "",
                r#"{"instId":"BTC-USDT-SWAP","state":"live"},{"instId":"LUNA-USDT-SWAP","state":"suspend"},{"instId":"NEW-USDT-SWAP","state":"preopen"}"#,
            ),
            _ => okx_envelope("0", "", ""),
        };
        Reply::Json(200, body)
    })
    .await;
    let venue = okx(&server, true);
    let listed = venue.instruments().await.unwrap();
    assert_eq!(
        listed,
        [
            "BTC-USD",
            "BTC-USDT-SWAP",
            "ETH-USD",
            "SOL-USD",
            "USDT-USD",
            "XRP-USD"
        ]
    );
    let requests = server.requests();
    let targets: Vec<&str> = requests.iter().map(|r| r.target.as_str()).collect();
    assert_eq!(
        targets,
        [
            "/api/v5/public/instruments?instType=SPOT",
            "/api/v5/public/instruments?instType=SWAP",
            "/api/v5/public/instruments?instType=FUTURES",
        ]
    );
    for r in &requests {
        assert_eq!(r.method, "GET");
        assert_okx_signed(r, true);
    }
}

#[tokio::test]
async fn okx_instruments_fail_as_a_whole_when_one_list_fails() {
    // A system error (the venue not working) on the second list; a refusal on the first.
    let server = Server::start(|n, _| match n {
        0 => Reply::Json(200, OKX_INSTRUMENTS.into()),
        1 => Reply::Json(
            200,
            okx_envelope("50001", "Service temporarily unavailable", ""),
        ),
        _ => Reply::Json(401, okx_envelope("50113", "Invalid Sign", "")),
    })
    .await;
    let venue = okx(&server, false);
    assert!(matches!(
        venue.instruments().await,
        Err(VenueError::Unavailable(m)) if m.contains("50001")
    ));
    assert_eq!(
        venue.instruments().await,
        Err(VenueError::Refused {
            code: "50113".into(),
            message: "Invalid Sign".into()
        })
    );
    // Not the documented shape: a bad response, not an empty list.
    let server = Server::start(|_, _| Reply::Json(200, r#"{"data":[]}"#.into())).await;
    assert!(matches!(
        okx(&server, false).instruments().await,
        Err(VenueError::BadResponse { status: 200, .. })
    ));
}
