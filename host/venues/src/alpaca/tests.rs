//! [`AlpacaVenue`](super::AlpacaVenue) against a loopback server: the exact requests it sends,
//! how it reads Alpaca's answers, and the cancel that first looks the order up; and the table
//! that maps Alpaca's statuses.

use std::time::Instant;

use rust_decimal::Decimal;

use super::alpaca_status;
use crate::http::loopback::{Recorded, Reply, Server};
use crate::live::fixtures::{
    ALPACA_ORDER, ALPACA_SECRET, NOW, TIMEOUT, alpaca, d, json, limit, rejected,
};
use crate::live::{REJECTED, UNSUPPORTED, VenueError, VenueOrder};
use colony_orders::{ExecKind, OrderRequest, OrderStatus, TimeInForce};

const ALPACA_ID: &str = "61e69015-8549-4bfd-b9c3-01e75843f47d";

fn assert_alpaca_keys(request: &Recorded) {
    assert_eq!(request.header("apca-api-key-id"), Some("PKTESTKEYID"));
    assert_eq!(request.header("apca-api-secret-key"), Some(ALPACA_SECRET));
}

#[tokio::test]
async fn alpaca_place_accepted() {
    let server = Server::start(|_, _| Reply::Json(200, ALPACA_ORDER.into())).await;
    let venue = alpaca(&server);
    let order = OrderRequest {
        price: Some(d("187.30")),
        qty: d("15"),
        tif: TimeInForce::Ioc,
        ..limit("AAPL", "colony-trader-0001")
    };
    let report = venue.place(&order, NOW).await.unwrap();
    assert_eq!(
        (report.kind, report.venue_order_id.as_deref()),
        (ExecKind::Accepted, Some(ALPACA_ID))
    );
    let [request] = server.requests().try_into().unwrap();
    assert_eq!(
        (request.method.as_str(), request.target.as_str()),
        ("POST", "/v2/orders")
    );
    assert_alpaca_keys(&request);
    assert_eq!(
        json(&request.body),
        serde_json::json!({"symbol": "AAPL", "qty": "15", "side": "buy", "type": "limit",
            "time_in_force": "ioc", "limit_price": "187.30",
            "client_order_id": "colony-trader-0001"})
    );
    assert_eq!(venue.name(), "alpaca-paper");
}

#[tokio::test]
async fn alpaca_place_rejected_403_and_422() {
    let server = Server::start(|n, _| match n {
        0 => Reply::Json(
            403,
            r#"{"code":40310000,"message":"insufficient buying power"}"#.into(),
        ),
        _ => Reply::Json(
            422,
            r#"{"code":40010001,"message":"qty must be > 0"}"#.into(),
        ),
    })
    .await;
    let venue = alpaca(&server);
    let order = limit("AAPL", "r1");
    let first = venue.place(&order, NOW).await.unwrap();
    assert_eq!(
        first.kind,
        rejected(REJECTED, "40310000: insufficient buying power")
    );
    let second = venue.place(&order, NOW).await.unwrap();
    assert_eq!(second.kind, rejected(REJECTED, "40010001: qty must be > 0"));
    for request in server.requests() {
        assert_alpaca_keys(&request);
        assert!(request.body.contains("\"client_order_id\":\"r1\""));
    }
    assert_eq!(venue.breaker_status().consecutive_failures, 0);
}

#[tokio::test]
async fn alpaca_place_times_out() {
    let server = Server::start(|_, _| Reply::Hang).await;
    let venue = alpaca(&server);
    let started = Instant::now();
    let result = venue.place(&limit("AAPL", "slow"), NOW).await;
    assert_eq!(result, Err(VenueError::Timeout(TIMEOUT)));
    assert!(started.elapsed() < TIMEOUT * 3);
    assert_eq!(server.count(), 1);
}

#[tokio::test]
async fn alpaca_unsupported_flags_are_rejected_before_sending() {
    let server = Server::start(|_, _| Reply::Json(200, ALPACA_ORDER.into())).await;
    let venue = alpaca(&server);
    let post_only = OrderRequest {
        post_only: true,
        ..limit("AAPL", "p1")
    };
    let reduce_only = OrderRequest {
        reduce_only: true,
        ..limit("AAPL", "p2")
    };
    assert_eq!(
        venue.place(&post_only, NOW).await.unwrap().kind,
        rejected(UNSUPPORTED, "alpaca has no post-only orders")
    );
    assert_eq!(
        venue.place(&reduce_only, NOW).await.unwrap().kind,
        rejected(UNSUPPORTED, "alpaca has no reduce-only orders")
    );
    assert_eq!(server.count(), 0);
}

#[tokio::test]
async fn alpaca_query_found_not_found_and_foreign_404() {
    let server = Server::start(|n, _| match n {
        0 => Reply::Json(200, ALPACA_ORDER.into()),
        1 => Reply::Json(
            404,
            r#"{"code":40410000,"message":"order not found for colony-trader-0001"}"#.into(),
        ),
        _ => Reply::Json(404, "<html>not found</html>".into()),
    })
    .await;
    let venue = alpaca(&server);
    let order = limit("AAPL", "colony-trader-0001");
    assert_eq!(
        venue.query(&order).await,
        Ok(Some(VenueOrder {
            venue_order_id: ALPACA_ID.into(),
            client_id: "colony-trader-0001".into(),
            status: OrderStatus::PartiallyFilled,
            filled_qty: d("5"),
            avg_price: Some(d("187.25")),
            venue_state: "partially_filled".into(),
        }))
    );
    assert_eq!(venue.query(&order).await, Ok(None));
    assert!(matches!(
        venue.query(&order).await,
        Err(VenueError::BadResponse { status: 404, .. })
    ));
    for request in server.requests() {
        assert_eq!(
            (request.method.as_str(), request.target.as_str()),
            (
                "GET",
                "/v2/orders:by_client_order_id?client_order_id=colony-trader-0001"
            )
        );
        assert_alpaca_keys(&request);
    }
}

#[tokio::test]
async fn alpaca_cancel_by_venue_id_or_after_a_lookup() {
    let server = Server::start(|n, request| match (n, request.method.as_str()) {
        (_, "GET") => Reply::Json(200, ALPACA_ORDER.into()),
        (0 | 2, "DELETE") => Reply::Raw(b"HTTP/1.1 204 No Content\r\n\r\n".to_vec()),
        _ => Reply::Json(
            422,
            r#"{"code":42210000,"message":"order is not cancelable"}"#.into(),
        ),
    })
    .await;
    let venue = alpaca(&server);
    let order = limit("AAPL", "colony-trader-0001");
    let report = venue.cancel(&order, Some(ALPACA_ID), NOW).await.unwrap();
    assert_eq!(
        (report.kind, report.venue_order_id.as_deref()),
        (ExecKind::Cancelled, Some(ALPACA_ID))
    );
    let report = venue.cancel(&order, None, NOW).await.unwrap();
    assert_eq!(report.venue_order_id.as_deref(), Some(ALPACA_ID));
    assert_eq!(
        venue.cancel(&order, Some(ALPACA_ID), NOW).await,
        Err(VenueError::Refused {
            code: "42210000".into(),
            message: "order is not cancelable".into()
        })
    );
    let seen: Vec<(String, String)> = server
        .requests()
        .into_iter()
        .map(|r| (r.method, r.target))
        .collect();
    let delete = ("DELETE".to_string(), format!("/v2/orders/{ALPACA_ID}"));
    let lookup = (
        "GET".to_string(),
        "/v2/orders:by_client_order_id?client_order_id=colony-trader-0001".to_string(),
    );
    assert_eq!(seen, [delete.clone(), lookup, delete.clone(), delete]);
}

#[test]
fn alpaca_statuses_map_to_order_statuses() {
    let zero = Decimal::ZERO;
    let some = d("1");
    let alpaca_cases = [
        ("new", zero, Some(OrderStatus::Accepted)),
        ("pending_new", zero, Some(OrderStatus::Accepted)),
        ("pending_cancel", some, Some(OrderStatus::PartiallyFilled)),
        ("partially_filled", some, Some(OrderStatus::PartiallyFilled)),
        ("filled", some, Some(OrderStatus::Filled)),
        ("canceled", zero, Some(OrderStatus::Cancelled)),
        ("replaced", zero, Some(OrderStatus::Cancelled)),
        ("expired", zero, Some(OrderStatus::Expired)),
        ("rejected", zero, Some(OrderStatus::Rejected)),
        ("Filled", some, None),
    ];
    for (state, filled, expected) in alpaca_cases {
        assert_eq!(alpaca_status(state, filled), expected, "alpaca {state}");
    }
}

const ALPACA_ASSETS: &str = include_str!("../samples/alpaca_assets.json");

#[tokio::test]
async fn alpaca_instruments_are_the_tradable_active_assets_of_equities_and_crypto() {
    let server = Server::start(|n, _| match n {
        0 => Reply::Json(200, ALPACA_ASSETS.into()),
        _ => Reply::Json(
            200,
            r#"[{"symbol":"ETH/USD","status":"active","tradable":true},{"symbol":"OLD/USD","status":"inactive","tradable":true}]"#.into(),
        ),
    })
    .await;
    let venue = alpaca(&server);
    assert_eq!(
        venue.instruments().await.unwrap(),
        ["AAPL", "BTC/USD", "ETH/USD"]
    );
    let requests = server.requests();
    let targets: Vec<&str> = requests.iter().map(|r| r.target.as_str()).collect();
    assert_eq!(
        targets,
        [
            "/v2/assets?status=active&asset_class=us_equity",
            "/v2/assets?status=active&asset_class=crypto",
        ]
    );
    for r in &requests {
        assert_eq!(r.method, "GET");
        assert_alpaca_keys(r);
    }
}

#[tokio::test]
async fn alpaca_instruments_refused_or_malformed_are_errors_not_an_empty_list() {
    let server = Server::start(|n, _| match n {
        0 => Reply::Json(
            403,
            r#"{"code":40110000,"message":"request is not authorized"}"#.into(),
        ),
        _ => Reply::Json(200, r#"{"symbol":"AAPL"}"#.into()),
    })
    .await;
    let venue = alpaca(&server);
    assert_eq!(
        venue.instruments().await,
        Err(VenueError::Refused {
            code: "40110000".into(),
            message: "request is not authorized".into()
        })
    );
    assert!(matches!(
        venue.instruments().await,
        Err(VenueError::BadResponse { status: 200, .. })
    ));
}
