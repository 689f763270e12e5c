//! Alpaca Trading API: order requests (keys as headers, no signing) and order-object parsing.
//!
//! | request | method and path |
//! |---|---|
//! | [`AlpacaClient::place_order`] | `POST /v2/orders` |
//! | [`AlpacaClient::cancel_order`] | `DELETE /v2/orders/{id}` |
//! | [`AlpacaClient::get_order`] | `GET /v2/orders/{id}` |
//! | [`AlpacaClient::get_order_by_client_id`] | `GET /v2/orders:by_client_order_id?client_order_id=…` |
//! | [`AlpacaClient::assets`] | `GET /v2/assets?status=active&asset_class=…` |
//!
//! Quantities and prices are sent as exact decimal strings, which Alpaca accepts for its numeric
//! fields. `client_order_id` is at most [`MAX_CLIENT_ORDER_ID_LEN`] characters (Alpaca's limit).

use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};

use crate::credentials::AlpacaCredentials;
use crate::{
    Method, OrderError, OrderOutcome, ResponseError, Side, SignedRequest, parse_decimal, parse_json,
};

/// Alpaca's limit on `client_order_id`.
pub(crate) const MAX_CLIENT_ORDER_ID_LEN: usize = 48;

/// Which Alpaca account the keys belong to; paper and live keys are distinct.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AlpacaEnv {
    Paper,
    Live,
}

impl AlpacaEnv {
    pub fn base_url(self) -> &'static str {
        match self {
            AlpacaEnv::Paper => "https://paper-api.alpaca.markets",
            AlpacaEnv::Live => "https://api.alpaca.markets",
        }
    }
}

/// How much to trade: a quantity of shares/coins, or a cash amount (market day orders only).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Quantity {
    Qty(Decimal),
    Notional(Decimal),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OrderType {
    Market,
    Limit,
    Stop,
    StopLimit,
}

/// `time_in_force`. Crypto orders take only `gtc` and `ioc`; Alpaca enforces that.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TimeInForce {
    Day,
    Gtc,
    Ioc,
    Fok,
}

/// An order to place at Alpaca, in Alpaca's terms.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AlpacaOrder {
    pub symbol: String,
    pub quantity: Quantity,
    pub side: Side,
    pub order_type: OrderType,
    pub time_in_force: TimeInForce,
    pub limit_price: Option<Decimal>,
    pub stop_price: Option<Decimal>,
    pub client_order_id: Option<String>,
}

/// The `POST /v2/orders` body, in the documented field order.
#[derive(Serialize)]
struct PlaceBody<'a> {
    symbol: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    qty: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    notional: Option<String>,
    side: &'static str,
    #[serde(rename = "type")]
    order_type: OrderType,
    time_in_force: TimeInForce,
    #[serde(skip_serializing_if = "Option::is_none")]
    limit_price: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    stop_price: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    client_order_id: Option<&'a str>,
}

/// Builds requests for one Alpaca key pair.
#[derive(Debug, Clone)]
pub struct AlpacaClient {
    credentials: AlpacaCredentials,
    env: AlpacaEnv,
}

impl AlpacaClient {
    pub fn new(credentials: AlpacaCredentials, env: AlpacaEnv) -> Self {
        AlpacaClient { credentials, env }
    }

    /// The base URL that [`SignedRequest::path`] is relative to.
    pub fn base_url(&self) -> &'static str {
        self.env.base_url()
    }

    fn request(&self, method: Method, path: String, body: String) -> SignedRequest {
        let mut headers = vec![
            (
                "APCA-API-KEY-ID".to_string(),
                self.credentials.key_id.clone(),
            ),
            (
                "APCA-API-SECRET-KEY".to_string(),
                self.credentials.secret_key.expose().to_string(),
            ),
        ];
        if !body.is_empty() {
            headers.push(("Content-Type".to_string(), "application/json".to_string()));
        }
        SignedRequest {
            method,
            path,
            headers,
            body,
        }
    }

    /// `POST /v2/orders`, after checking what Alpaca would otherwise reject.
    pub fn place_order(&self, order: &AlpacaOrder) -> Result<SignedRequest, OrderError> {
        Ok(self.request(Method::Post, "/v2/orders".into(), place_body(order)?))
    }

    /// `DELETE /v2/orders/{order_id}`.
    pub fn cancel_order(&self, order_id: &str) -> Result<SignedRequest, OrderError> {
        check_order_id(order_id)?;
        Ok(self.request(
            Method::Delete,
            format!("/v2/orders/{order_id}"),
            String::new(),
        ))
    }

    /// `GET /v2/orders/{order_id}`.
    pub fn get_order(&self, order_id: &str) -> Result<SignedRequest, OrderError> {
        check_order_id(order_id)?;
        Ok(self.request(Method::Get, format!("/v2/orders/{order_id}"), String::new()))
    }

    /// `GET /v2/assets?status=active&asset_class=…`: the active assets of one class
    /// (`us_equity`, `crypto`).
    pub fn assets(&self, asset_class: &str) -> Result<SignedRequest, OrderError> {
        if asset_class.is_empty()
            || !asset_class
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b == b'_')
        {
            return Err(OrderError::invalid(
                "asset_class",
                format!("{asset_class:?} is not an asset class"),
            ));
        }
        let path = format!("/v2/assets?status=active&asset_class={asset_class}");
        Ok(self.request(Method::Get, path, String::new()))
    }

    /// `GET /v2/orders:by_client_order_id?client_order_id=…`: the order placed with our id
    /// (404 when Alpaca has none). The id is percent-encoded, so any id
    /// [`check_client_order_id`] accepts can be looked up.
    pub(crate) fn get_order_by_client_id(
        &self,
        client_order_id: &str,
    ) -> Result<SignedRequest, OrderError> {
        check_client_order_id(client_order_id)?;
        let path = format!(
            "/v2/orders:by_client_order_id?client_order_id={}",
            percent_encode(client_order_id)
        );
        Ok(self.request(Method::Get, path, String::new()))
    }
}

/// Percent-encodes everything but RFC 3986 unreserved characters.
fn percent_encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for b in text.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// The exact JSON body of a place-order request.
pub(crate) fn place_body(order: &AlpacaOrder) -> Result<String, OrderError> {
    let symbol_ok = !order.symbol.is_empty()
        && order.symbol.len() <= 32
        && order
            .symbol
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"./-".contains(&b));
    if !symbol_ok {
        return Err(OrderError::invalid(
            "symbol",
            format!("{:?} is not a symbol", order.symbol),
        ));
    }
    if let Some(id) = &order.client_order_id {
        check_client_order_id(id)?;
    }
    let (qty, notional) = match order.quantity {
        Quantity::Qty(q) => (Some(positive("qty", q)?), None),
        Quantity::Notional(n) => {
            if order.order_type != OrderType::Market || order.time_in_force != TimeInForce::Day {
                return Err(OrderError::invalid(
                    "notional",
                    "only for market day orders",
                ));
            }
            (None, Some(positive("notional", n)?))
        }
    };
    let needs_limit = matches!(order.order_type, OrderType::Limit | OrderType::StopLimit);
    let needs_stop = matches!(order.order_type, OrderType::Stop | OrderType::StopLimit);
    let limit_price = price("limit_price", order.limit_price, needs_limit)?;
    let stop_price = price("stop_price", order.stop_price, needs_stop)?;
    let body = PlaceBody {
        symbol: &order.symbol,
        qty,
        notional,
        side: order.side.as_str(),
        order_type: order.order_type,
        time_in_force: order.time_in_force,
        limit_price,
        stop_price,
        client_order_id: order.client_order_id.as_deref(),
    };
    serde_json::to_string(&body).map_err(|e| OrderError::invalid("body", e.to_string()))
}

fn positive(field: &'static str, value: Decimal) -> Result<String, OrderError> {
    if value > Decimal::ZERO {
        Ok(value.to_string())
    } else {
        Err(OrderError::invalid(
            field,
            format!("{value} is not positive"),
        ))
    }
}

/// A price that must be present exactly when the order type uses it.
fn price(
    field: &'static str,
    value: Option<Decimal>,
    needed: bool,
) -> Result<Option<String>, OrderError> {
    match (value, needed) {
        (Some(v), true) => positive(field, v).map(Some),
        (None, false) => Ok(None),
        (None, true) => Err(OrderError::invalid(field, "required for this order type")),
        (Some(_), false) => Err(OrderError::invalid(field, "not used by this order type")),
    }
}

/// `client_order_id`: 1 to 48 printable ASCII characters.
pub(crate) fn check_client_order_id(id: &str) -> Result<(), OrderError> {
    if id.is_empty()
        || id.len() > MAX_CLIENT_ORDER_ID_LEN
        || !id.bytes().all(|b| b.is_ascii_graphic())
    {
        return Err(OrderError::invalid(
            "client_order_id",
            format!(
                "must be 1 to {MAX_CLIENT_ORDER_ID_LEN} printable ASCII characters, is {} bytes",
                id.len()
            ),
        ));
    }
    Ok(())
}

/// Order ids are UUIDs; anything that needs URL encoding is not one.
fn check_order_id(id: &str) -> Result<(), OrderError> {
    if !id.is_empty() && id.len() <= 64 && id.bytes().all(|b| b.is_ascii_hexdigit() || b == b'-') {
        Ok(())
    } else {
        Err(OrderError::invalid(
            "order_id",
            format!("{id:?} is not an order id"),
        ))
    }
}

// ------------------------------------------------------------------------------------------
// Responses

#[derive(Deserialize)]
struct RawOrder {
    id: String,
    #[serde(default)]
    client_order_id: String,
    status: String,
    symbol: String,
    qty: Option<String>,
    #[serde(default)]
    notional: Option<String>,
    filled_qty: String,
    filled_avg_price: Option<String>,
    side: String,
    #[serde(rename = "type")]
    order_type: OrderType,
    time_in_force: TimeInForce,
    limit_price: Option<String>,
    #[serde(default)]
    stop_price: Option<String>,
}

/// An Alpaca order object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct AlpacaOrderState {
    pub id: String,
    pub client_order_id: String,
    /// Alpaca's word: `new`, `accepted`, `pending_new`, `partially_filled`, `filled`,
    /// `canceled`, `expired`, `rejected`, …
    pub status: String,
    pub symbol: String,
    pub quantity: Quantity,
    pub filled_qty: Decimal,
    pub filled_avg_price: Option<Decimal>,
    pub side: Side,
    pub order_type: OrderType,
    pub time_in_force: TimeInForce,
    pub limit_price: Option<Decimal>,
    pub stop_price: Option<Decimal>,
}

fn optional(what: &str, text: Option<String>) -> Result<Option<Decimal>, ResponseError> {
    text.map(|t| parse_decimal(what, &t)).transpose()
}

/// Parses an order object (`POST /v2/orders` 200 response, `GET /v2/orders/{id}`).
pub(crate) fn parse_order(body: &str) -> Result<AlpacaOrderState, ResponseError> {
    let raw: RawOrder = parse_json(body)?;
    let side = match raw.side.as_str() {
        "buy" => Side::Buy,
        "sell" => Side::Sell,
        other => return Err(ResponseError::Malformed(format!("side {other:?}"))),
    };
    let quantity = match (
        optional("qty", raw.qty)?,
        optional("notional", raw.notional)?,
    ) {
        (Some(q), _) => Quantity::Qty(q),
        (None, Some(n)) => Quantity::Notional(n),
        (None, None) => return Err(ResponseError::Malformed("neither qty nor notional".into())),
    };
    Ok(AlpacaOrderState {
        quantity,
        side,
        filled_qty: parse_decimal("filled_qty", &raw.filled_qty)?,
        filled_avg_price: optional("filled_avg_price", raw.filled_avg_price)?,
        limit_price: optional("limit_price", raw.limit_price)?,
        stop_price: optional("stop_price", raw.stop_price)?,
        id: raw.id,
        client_order_id: raw.client_order_id,
        status: raw.status,
        symbol: raw.symbol,
        order_type: raw.order_type,
        time_in_force: raw.time_in_force,
    })
}

#[derive(Deserialize)]
struct RawAsset {
    symbol: String,
    #[serde(default)]
    status: String,
    #[serde(default)]
    tradable: bool,
}

/// One asset of `GET /v2/assets`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AlpacaAsset {
    /// As orders name it: `AAPL`, `BTC/USD`.
    pub symbol: String,
    /// `active` or `inactive`.
    pub status: String,
    /// Whether Alpaca takes orders for it.
    pub tradable: bool,
}

/// Parses a `GET /v2/assets` answer, a JSON array of asset objects (up to
/// [`MAX_INSTRUMENTS_BYTES`](crate::MAX_INSTRUMENTS_BYTES): the list is long).
pub fn parse_assets(body: &str) -> Result<Vec<AlpacaAsset>, ResponseError> {
    let raw: Vec<RawAsset> = crate::parse_json_within(body, crate::MAX_INSTRUMENTS_BYTES)?;
    Ok(raw
        .into_iter()
        .map(|a| AlpacaAsset {
            symbol: a.symbol,
            status: a.status,
            tradable: a.tradable,
        })
        .collect())
}

#[derive(Deserialize)]
struct RawError {
    code: serde_json::Value,
    message: String,
}

/// Alpaca's error body, `{"code": 40310000, "message": "…"}`, with the code as text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AlpacaError {
    pub code: String,
    pub message: String,
}

/// Parses an error body (4xx answers to any request).
pub fn parse_error(body: &str) -> Result<AlpacaError, ResponseError> {
    let error: RawError = parse_json(body)?;
    let code = match error.code {
        serde_json::Value::String(s) => s,
        serde_json::Value::Number(n) => n.to_string(),
        other => return Err(ResponseError::Malformed(format!("error code {other}"))),
    };
    Ok(AlpacaError {
        code,
        message: error.message,
    })
}

/// Maps the answer to `POST /v2/orders` (HTTP `status` and body) to an outcome.
///
/// 2xx with an order object is accepted unless its status is already `rejected`; 4xx with
/// Alpaca's `{"code": 40310000, "message": "…"}` is a rejection; anything else is malformed (a
/// 5xx is the transport's to retry or report, not an order decision).
pub(crate) fn parse_place_response(status: u16, body: &str) -> Result<OrderOutcome, ResponseError> {
    match status {
        200..=299 => {
            let order = parse_order(body)?;
            if order.status == "rejected" {
                Ok(OrderOutcome::Rejected {
                    code: "rejected".into(),
                    message: String::new(),
                })
            } else {
                Ok(OrderOutcome::Accepted {
                    venue_order_id: order.id,
                })
            }
        }
        400..=499 => {
            let AlpacaError { code, message } = parse_error(body)?;
            Ok(OrderOutcome::Rejected { code, message })
        }
        other => Err(ResponseError::Malformed(format!("HTTP status {other}"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::credentials::Secret;
    use std::str::FromStr;

    const SAMPLE: &str = include_str!("../samples/alpaca_order.json");

    fn d(text: &str) -> Decimal {
        Decimal::from_str(text).unwrap()
    }

    fn client(env: AlpacaEnv) -> AlpacaClient {
        AlpacaClient::new(
            AlpacaCredentials {
                key_id: "PKTEST".into(),
                secret_key: Secret::new("s3cret-key"),
            },
            env,
        )
    }

    fn limit_order() -> AlpacaOrder {
        AlpacaOrder {
            symbol: "AAPL".into(),
            quantity: Quantity::Qty(d("15")),
            side: Side::Buy,
            order_type: OrderType::Limit,
            time_in_force: TimeInForce::Day,
            limit_price: Some(d("187.30")),
            stop_price: None,
            client_order_id: Some("colony-trader-0001".into()),
        }
    }

    #[test]
    fn base_urls() {
        assert_eq!(
            client(AlpacaEnv::Paper).base_url(),
            "https://paper-api.alpaca.markets"
        );
        assert_eq!(
            client(AlpacaEnv::Live).base_url(),
            "https://api.alpaca.markets"
        );
    }

    #[test]
    fn place_request_limit_and_market() {
        let request = client(AlpacaEnv::Paper)
            .place_order(&limit_order())
            .unwrap();
        assert_eq!(
            (request.method, request.path.as_str()),
            (Method::Post, "/v2/orders")
        );
        assert_eq!(
            request.headers,
            [
                ("APCA-API-KEY-ID".to_string(), "PKTEST".to_string()),
                ("APCA-API-SECRET-KEY".to_string(), "s3cret-key".to_string()),
                ("Content-Type".to_string(), "application/json".to_string()),
            ]
        );
        assert_eq!(
            request.body,
            r#"{"symbol":"AAPL","qty":"15","side":"buy","type":"limit","time_in_force":"day","limit_price":"187.30","client_order_id":"colony-trader-0001"}"#
        );
        assert!(!format!("{request:?}").contains("s3cret-key"));

        let market = AlpacaOrder {
            symbol: "BTC/USD".into(),
            quantity: Quantity::Notional(d("250.50")),
            side: Side::Sell,
            order_type: OrderType::Market,
            time_in_force: TimeInForce::Day,
            limit_price: None,
            stop_price: None,
            client_order_id: None,
        };
        assert_eq!(
            place_body(&market).unwrap(),
            r#"{"symbol":"BTC/USD","notional":"250.50","side":"sell","type":"market","time_in_force":"day"}"#
        );
        let stop_limit = AlpacaOrder {
            order_type: OrderType::StopLimit,
            time_in_force: TimeInForce::Gtc,
            stop_price: Some(d("186")),
            client_order_id: None,
            ..limit_order()
        };
        assert_eq!(
            place_body(&stop_limit).unwrap(),
            r#"{"symbol":"AAPL","qty":"15","side":"buy","type":"stop_limit","time_in_force":"gtc","limit_price":"187.30","stop_price":"186"}"#
        );
    }

    #[test]
    fn cancel_and_get_requests() {
        let c = client(AlpacaEnv::Live);
        let id = "61e69015-8549-4bfd-b9c3-01e75843f47d";
        let cancel = c.cancel_order(id).unwrap();
        assert_eq!(
            (cancel.method, cancel.path.as_str(), cancel.body.as_str()),
            (
                Method::Delete,
                "/v2/orders/61e69015-8549-4bfd-b9c3-01e75843f47d",
                ""
            )
        );
        assert_eq!(cancel.headers.len(), 2);
        assert_eq!(c.get_order(id).unwrap().method, Method::Get);
        assert!(c.get_order("../account").is_err());

        let by_client = c.get_order_by_client_id("colony-trader-0001").unwrap();
        assert_eq!(
            (
                by_client.method,
                by_client.path.as_str(),
                by_client.body.as_str()
            ),
            (
                Method::Get,
                "/v2/orders:by_client_order_id?client_order_id=colony-trader-0001",
                ""
            )
        );
        assert_eq!(
            c.get_order_by_client_id("a&b=c/d%e").unwrap().path,
            "/v2/orders:by_client_order_id?client_order_id=a%26b%3Dc%2Fd%25e"
        );
        assert!(c.get_order_by_client_id("has space").is_err());
    }

    #[test]
    fn client_order_id_length_is_checked() {
        let mut order = limit_order();
        order.client_order_id = Some("x".repeat(MAX_CLIENT_ORDER_ID_LEN));
        assert!(place_body(&order).is_ok());
        for bad in [
            "x".repeat(MAX_CLIENT_ORDER_ID_LEN + 1),
            String::new(),
            "has space".into(),
        ] {
            order.client_order_id = Some(bad.clone());
            let err = place_body(&order).unwrap_err();
            assert!(
                matches!(
                    err,
                    OrderError::Invalid {
                        field: "client_order_id",
                        ..
                    }
                ),
                "{bad:?}: {err}"
            );
        }
    }

    #[test]
    fn invalid_orders_are_refused() {
        type Change = fn(&mut AlpacaOrder);
        let cases: Vec<(&str, Change)> = vec![
            ("limit_price", |o| o.limit_price = None),
            ("limit_price", |o| o.order_type = OrderType::Market),
            ("stop_price", |o| {
                o.order_type = OrderType::Stop;
                o.limit_price = None;
            }),
            ("qty", |o| o.quantity = Quantity::Qty(d("0"))),
            ("notional", |o| o.quantity = Quantity::Notional(d("10"))),
            ("symbol", |o| o.symbol = "AAPL\"".into()),
        ];
        for (field, change) in cases {
            let mut order = limit_order();
            change(&mut order);
            let err = place_body(&order).unwrap_err();
            assert!(
                matches!(err, OrderError::Invalid { field: f, .. } if f == field),
                "{err}"
            );
        }
    }

    #[test]
    fn order_sample_parses() {
        assert_eq!(
            parse_order(SAMPLE).unwrap(),
            AlpacaOrderState {
                id: "61e69015-8549-4bfd-b9c3-01e75843f47d".into(),
                client_order_id: "colony-trader-0001".into(),
                status: "partially_filled".into(),
                symbol: "AAPL".into(),
                quantity: Quantity::Qty(d("15")),
                filled_qty: d("5"),
                filled_avg_price: Some(d("187.25")),
                side: Side::Buy,
                order_type: OrderType::Limit,
                time_in_force: TimeInForce::Day,
                limit_price: Some(d("187.30")),
                stop_price: None,
            }
        );
    }

    #[test]
    fn place_responses() {
        assert_eq!(
            parse_place_response(200, SAMPLE),
            Ok(OrderOutcome::Accepted {
                venue_order_id: "61e69015-8549-4bfd-b9c3-01e75843f47d".into()
            })
        );
        let rejected = SAMPLE.replace("\"partially_filled\"", "\"rejected\"");
        assert!(matches!(
            parse_place_response(200, &rejected),
            Ok(OrderOutcome::Rejected { .. })
        ));
        assert_eq!(
            parse_place_response(
                403,
                r#"{"code":40310000,"message":"insufficient buying power"}"#
            ),
            Ok(OrderOutcome::Rejected {
                code: "40310000".into(),
                message: "insufficient buying power".into()
            })
        );
        let malformed = [
            (200, String::new()),
            (200, "{}".to_string()),
            (200, SAMPLE.replace("\"187.25\"", "187.25")),
            (200, SAMPLE.replace("\"buy\"", "\"hold\"")),
            (
                200,
                SAMPLE.replace("\"limit\",\n  \"side\"", "\"trailing_stop\",\n  \"side\""),
            ),
            (422, "<html>".to_string()),
            (403, r#"{"code":null,"message":"x"}"#.to_string()),
            (500, r#"{"code":50010000,"message":"internal"}"#.to_string()),
        ];
        for (status, body) in malformed {
            let result = parse_place_response(status, &body);
            assert!(
                matches!(result, Err(ResponseError::Malformed(_))),
                "{status} {body}: {result:?}"
            );
        }
    }
}
