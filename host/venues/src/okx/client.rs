//! OKX v5 REST: signed place/cancel/query requests and parsers for their responses.
//!
//! Signing: `OK-ACCESS-SIGN = Base64(HMAC_SHA256(secret, timestamp + METHOD + requestPath + body))`
//! with the timestamp ISO-8601 UTC in milliseconds (`2020-12-08T09:08:57.715Z`); a GET query
//! string is part of `requestPath` and an empty body adds nothing. Demo trading is the same host
//! with `x-simulated-trading: 1`.
//!
//! Decimals go out as exact strings from `rust_decimal::Decimal`, never through `f64`. Identifiers
//! placed in paths and query strings (`instId`, `ordId`, `ccy`) are checked to need no URL
//! encoding, so the signed path is byte-for-byte the path sent.
//!
//! | request | method and path |
//! |---|---|
//! | [`OkxClient::place_order`] | `POST /api/v5/trade/order` |
//! | [`OkxClient::cancel_order`] | `POST /api/v5/trade/cancel-order` |
//! | [`OkxClient::get_order`] | `GET /api/v5/trade/order?instId=…&ordId=…` (or `clOrdId=`) |
//! | [`OkxClient::pending_orders`] | `GET /api/v5/trade/orders-pending` |
//! | [`OkxClient::balance`] | `GET /api/v5/account/balance[?ccy=…]` |
//! | [`OkxClient::instruments`] | `GET /api/v5/public/instruments?instType=…` |

use base64::Engine as _;
use hmac::{Hmac, Mac};
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use sha2::Sha256;

use crate::credentials::OkxCredentials;
use crate::{
    Method, OrderError, OrderOutcome, ResponseError, Side, SignedRequest, parse_decimal,
    parse_json, parse_optional_decimal,
};

/// Production REST base URL; demo trading uses it too, with the simulated-trading header.
pub const BASE_URL: &str = "https://www.okx.com";

/// OKX's limit on `clOrdId`: alphanumeric, 1 to 32 characters.
pub(crate) const MAX_CL_ORD_ID_LEN: usize = 32;

/// The error code of "Order does not exist", OKX's answer to a query for an order it does not
/// know (for example one whose place request never arrived).
pub(crate) const ORDER_NOT_FOUND: &str = "51603";

/// Codes with which OKX says it could not process a request, as opposed to refusing it:
/// 50001 service unavailable, 50004 endpoint timeout ("does not mean that the request was
/// successful or failed"), 50013 system busy, 50026 system error. After one of these an
/// order's outcome is unknown and the venue is not healthy.
pub(crate) const SYSTEM_ERROR_CODES: &[&str] = &["50001", "50004", "50013", "50026"];

/// Whether `code` (an envelope `code` or an item's `sCode`) is one of [`SYSTEM_ERROR_CODES`].
pub(crate) fn is_system_error(code: &str) -> bool {
    SYSTEM_ERROR_CODES.contains(&code)
}

/// `Base64(HMAC_SHA256(secret, prehash))`, where `prehash` is `timestamp + METHOD + path + body`.
pub fn sign(secret: &str, prehash: &str) -> String {
    // HMAC takes keys of any length (long ones are hashed first), so this cannot fail.
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes())
        .expect("HMAC-SHA256 accepts a key of any length");
    mac.update(prehash.as_bytes());
    base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())
}

/// A request timestamp in OKX's format, `YYYY-MM-DDTHH:MM:SS.mmmZ` (UTC).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OkxTimestamp(String);

impl OkxTimestamp {
    /// The time `millis` milliseconds after the Unix epoch (years 1970–2262).
    pub(crate) fn from_unix_millis(millis: u64) -> Self {
        let full = colony_market::replay::format_utc(millis.saturating_mul(1_000_000));
        // `format_utc` is `YYYY-MM-DDTHH:MM:SS.fffffffffZ`; keep three fraction digits.
        OkxTimestamp(format!("{}Z", &full[..23]))
    }

    /// The current system time. OKX rejects requests more than 30 s from its clock.
    pub fn now() -> Self {
        let millis = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
        Self::from_unix_millis(millis)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// `tdMode`: how the position is margined.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum TradeMode {
    Cash,
    Isolated,
    Cross,
}

/// `ordType`. Every type except `Market` needs a price.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum OrdType {
    Market,
    Limit,
    PostOnly,
    Fok,
    Ioc,
}

/// `tgtCcy`: what `sz` of a spot market order counts. OKX's default is the quote currency for
/// buys and the base currency for sells, so a market buy of "0.01" BTC-USDT would spend 0.01
/// USDT unless the order says `base_ccy`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum TgtCcy {
    BaseCcy,
    QuoteCcy,
}

/// An order to place at OKX, in OKX's terms.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OkxOrder {
    pub inst_id: String,
    pub td_mode: TradeMode,
    pub cl_ord_id: Option<String>,
    pub side: Side,
    pub ord_type: OrdType,
    pub sz: Decimal,
    pub px: Option<Decimal>,
    pub reduce_only: bool,
    /// Only for spot market orders; `None` leaves OKX's default.
    pub tgt_ccy: Option<TgtCcy>,
}

/// The place-order body; field order is the documented one, so bodies are reproducible.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct PlaceBody<'a> {
    inst_id: &'a str,
    td_mode: TradeMode,
    #[serde(skip_serializing_if = "Option::is_none")]
    cl_ord_id: Option<&'a str>,
    side: &'static str,
    ord_type: OrdType,
    #[serde(skip_serializing_if = "Option::is_none")]
    px: Option<String>,
    sz: String,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    reduce_only: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    tgt_ccy: Option<TgtCcy>,
}

/// Which order a cancel or query names: the venue's id or ours.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OrderRef {
    OrdId(String),
    ClOrdId(String),
}

/// Signs OKX requests with one API key, for live or demo trading.
#[derive(Debug, Clone)]
pub struct OkxClient {
    credentials: OkxCredentials,
    demo: bool,
}

impl OkxClient {
    /// `demo` adds `x-simulated-trading: 1`, which sends every request to OKX's demo account.
    pub fn new(credentials: OkxCredentials, demo: bool) -> Self {
        OkxClient { credentials, demo }
    }

    /// Signs `method path body` at `timestamp`: the four `OK-ACCESS-*` headers, plus the demo
    /// header, plus `Content-Type` when there is a body.
    pub(crate) fn sign_request(
        &self,
        method: Method,
        path: String,
        body: String,
        timestamp: &OkxTimestamp,
    ) -> SignedRequest {
        let prehash = format!("{}{}{}{}", timestamp.as_str(), method.as_str(), path, body);
        let mut headers = vec![
            (
                "OK-ACCESS-KEY".to_string(),
                self.credentials.api_key.clone(),
            ),
            (
                "OK-ACCESS-SIGN".to_string(),
                sign(self.credentials.secret.expose(), &prehash),
            ),
            (
                "OK-ACCESS-TIMESTAMP".to_string(),
                timestamp.as_str().to_string(),
            ),
            (
                "OK-ACCESS-PASSPHRASE".to_string(),
                self.credentials.passphrase.expose().to_string(),
            ),
        ];
        if !body.is_empty() {
            headers.push(("Content-Type".to_string(), "application/json".to_string()));
        }
        if self.demo {
            headers.push(("x-simulated-trading".to_string(), "1".to_string()));
        }
        SignedRequest {
            method,
            path,
            headers,
            body,
        }
    }

    /// `POST /api/v5/trade/order`, after checking what OKX would otherwise reject.
    pub fn place_order(
        &self,
        order: &OkxOrder,
        timestamp: &OkxTimestamp,
    ) -> Result<SignedRequest, OrderError> {
        Ok(self.sign_request(
            Method::Post,
            "/api/v5/trade/order".into(),
            place_body(order)?,
            timestamp,
        ))
    }

    /// `POST /api/v5/trade/cancel-order` for one order.
    pub fn cancel_order(
        &self,
        inst_id: &str,
        order: &OrderRef,
        timestamp: &OkxTimestamp,
    ) -> Result<SignedRequest, OrderError> {
        check_inst_id(inst_id)?;
        let mut body = serde_json::Map::new();
        body.insert("instId".into(), inst_id.into());
        let (key, value) = order_ref_pair(order)?;
        body.insert(key.into(), value.into());
        let body = serde_json::Value::Object(body).to_string();
        Ok(self.sign_request(
            Method::Post,
            "/api/v5/trade/cancel-order".into(),
            body,
            timestamp,
        ))
    }

    /// `GET /api/v5/trade/order?instId=…&ordId=…`: one order's state.
    pub(crate) fn get_order(
        &self,
        inst_id: &str,
        order: &OrderRef,
        timestamp: &OkxTimestamp,
    ) -> Result<SignedRequest, OrderError> {
        check_inst_id(inst_id)?;
        let (key, value) = order_ref_pair(order)?;
        let path = format!("/api/v5/trade/order?instId={inst_id}&{key}={value}");
        Ok(self.sign_request(Method::Get, path, String::new(), timestamp))
    }

    /// `GET /api/v5/trade/orders-pending`: all live orders.
    pub fn pending_orders(&self, timestamp: &OkxTimestamp) -> SignedRequest {
        self.sign_request(
            Method::Get,
            "/api/v5/trade/orders-pending".into(),
            String::new(),
            timestamp,
        )
    }

    /// `GET /api/v5/public/instruments?instType=…`: the instruments of one type. The endpoint
    /// is public; the request is signed all the same, so that demo trading's header goes with
    /// it and the demo account's instruments are listed.
    pub fn instruments(
        &self,
        inst_type: &str,
        timestamp: &OkxTimestamp,
    ) -> Result<SignedRequest, OrderError> {
        check_id("instType", inst_type, 16)?;
        let path = format!("/api/v5/public/instruments?instType={inst_type}");
        Ok(self.sign_request(Method::Get, path, String::new(), timestamp))
    }

    /// `GET /api/v5/account/balance`, for one currency or all.
    pub fn balance(
        &self,
        ccy: Option<&str>,
        timestamp: &OkxTimestamp,
    ) -> Result<SignedRequest, OrderError> {
        let path = match ccy {
            Some(ccy) => {
                check_id("ccy", ccy, 32)?;
                format!("/api/v5/account/balance?ccy={ccy}")
            }
            None => "/api/v5/account/balance".to_string(),
        };
        Ok(self.sign_request(Method::Get, path, String::new(), timestamp))
    }
}

/// The exact JSON body of a place-order request.
pub(crate) fn place_body(order: &OkxOrder) -> Result<String, OrderError> {
    check_inst_id(&order.inst_id)?;
    if let Some(id) = &order.cl_ord_id {
        check_cl_ord_id(id)?;
    }
    if order.sz <= Decimal::ZERO {
        return Err(OrderError::invalid(
            "sz",
            format!("{} is not positive", order.sz),
        ));
    }
    match (order.ord_type, order.px) {
        (OrdType::Market, Some(_)) => {
            return Err(OrderError::invalid("px", "a market order takes no price"));
        }
        (OrdType::Market, None) => {}
        (_, None) => return Err(OrderError::invalid("px", "required for this order type")),
        (_, Some(px)) if px <= Decimal::ZERO => {
            return Err(OrderError::invalid("px", format!("{px} is not positive")));
        }
        (_, Some(_)) => {}
    }
    let body = PlaceBody {
        inst_id: &order.inst_id,
        td_mode: order.td_mode,
        cl_ord_id: order.cl_ord_id.as_deref(),
        side: order.side.as_str(),
        ord_type: order.ord_type,
        px: order.px.map(|px| px.to_string()),
        sz: order.sz.to_string(),
        reduce_only: order.reduce_only,
        tgt_ccy: order.tgt_ccy,
    };
    serde_json::to_string(&body).map_err(|e| OrderError::invalid("body", e.to_string()))
}

fn order_ref_pair(order: &OrderRef) -> Result<(&'static str, &str), OrderError> {
    match order {
        OrderRef::OrdId(id) => {
            check_id("ordId", id, 64)?;
            Ok(("ordId", id))
        }
        OrderRef::ClOrdId(id) => {
            check_cl_ord_id(id)?;
            Ok(("clOrdId", id))
        }
    }
}

fn check_inst_id(inst_id: &str) -> Result<(), OrderError> {
    check_id("instId", inst_id, 64)
}

/// `clOrdId`: 1–32 ASCII letters and digits (OKX's rule).
pub(crate) fn check_cl_ord_id(id: &str) -> Result<(), OrderError> {
    if id.is_empty()
        || id.len() > MAX_CL_ORD_ID_LEN
        || !id.bytes().all(|b| b.is_ascii_alphanumeric())
    {
        return Err(OrderError::invalid(
            "clOrdId",
            format!("{id:?} is not 1 to {MAX_CL_ORD_ID_LEN} ASCII letters and digits"),
        ));
    }
    Ok(())
}

/// An identifier that goes into a path or query unencoded: ASCII letters, digits, `-` and `_`.
fn check_id(field: &'static str, id: &str, max: usize) -> Result<(), OrderError> {
    let ok = !id.is_empty()
        && id.len() <= max
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    if ok {
        Ok(())
    } else {
        Err(OrderError::invalid(
            field,
            format!("{id:?} is not 1 to {max} ASCII letters, digits, '-' or '_'"),
        ))
    }
}

// ------------------------------------------------------------------------------------------
// Responses

/// OKX's envelope around every REST response: `code` "0" is success.
#[derive(Deserialize)]
struct Envelope<T> {
    code: String,
    #[serde(default)]
    msg: String,
    #[serde(default = "Vec::new")]
    data: Vec<T>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct AckItem {
    #[serde(default)]
    ord_id: String,
    s_code: String,
    #[serde(default)]
    s_msg: String,
}

/// The answer to a place-order or cancel-order request for one order.
///
/// A per-order `sCode` other than "0" is a rejection with OKX's code and message; so is a failed
/// envelope with no items (for example `50113` invalid signature). An accepted item without an
/// `ordId`, or a batch of several items, is malformed: this layer sends one order at a time.
pub(crate) fn parse_order_ack(body: &str) -> Result<OrderOutcome, ResponseError> {
    let envelope: Envelope<AckItem> = parse_json(body)?;
    match envelope.data.as_slice() {
        [] if envelope.code != "0" => Ok(OrderOutcome::Rejected {
            code: envelope.code,
            message: envelope.msg,
        }),
        [] => Err(ResponseError::Malformed(
            "code \"0\" with no order in data".into(),
        )),
        [item] if item.s_code != "0" => Ok(OrderOutcome::Rejected {
            code: item.s_code.clone(),
            message: item.s_msg.clone(),
        }),
        [item] if item.ord_id.is_empty() => Err(ResponseError::Malformed(
            "accepted order without ordId".into(),
        )),
        [item] => Ok(OrderOutcome::Accepted {
            venue_order_id: item.ord_id.clone(),
        }),
        items => Err(ResponseError::Malformed(format!(
            "{} orders in data for a one-order request",
            items.len()
        ))),
    }
}

/// Fails with the venue's code and message unless the envelope's code is "0".
fn check_envelope<T>(envelope: Envelope<T>) -> Result<Vec<T>, ResponseError> {
    if envelope.code == "0" {
        Ok(envelope.data)
    } else {
        Err(ResponseError::Venue {
            code: envelope.code,
            message: envelope.msg,
        })
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawOrder {
    ord_id: String,
    #[serde(default)]
    cl_ord_id: String,
    inst_id: String,
    side: String,
    ord_type: String,
    #[serde(default)]
    px: String,
    sz: String,
    #[serde(default)]
    acc_fill_sz: String,
    #[serde(default)]
    avg_px: String,
    state: String,
}

/// One order as OKX reports it (`orders-pending`, `trade/order`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OkxOrderState {
    pub ord_id: String,
    /// Empty when the order was placed without one.
    pub cl_ord_id: String,
    pub inst_id: String,
    pub side: Side,
    /// OKX's word (`limit`, `market`, `post_only`, … and types this layer does not place).
    pub ord_type: String,
    /// `None` for orders without a price.
    pub px: Option<Decimal>,
    pub sz: Decimal,
    pub acc_fill_sz: Decimal,
    /// `None` until something fills.
    pub avg_px: Option<Decimal>,
    /// `live`, `partially_filled`, `filled`, `canceled`, `mmp_canceled`.
    pub state: String,
}

impl TryFrom<RawOrder> for OkxOrderState {
    type Error = ResponseError;

    fn try_from(raw: RawOrder) -> Result<Self, ResponseError> {
        let side = match raw.side.as_str() {
            "buy" => Side::Buy,
            "sell" => Side::Sell,
            other => return Err(ResponseError::Malformed(format!("side {other:?}"))),
        };
        let acc_fill_sz = parse_optional_decimal("accFillSz", &raw.acc_fill_sz)?;
        let avg_px = parse_optional_decimal("avgPx", &raw.avg_px)?;
        Ok(OkxOrderState {
            side,
            px: parse_optional_decimal("px", &raw.px)?,
            sz: parse_decimal("sz", &raw.sz)?,
            acc_fill_sz: acc_fill_sz.unwrap_or(Decimal::ZERO),
            // OKX writes "0" for "no fills yet".
            avg_px: avg_px.filter(|px| !px.is_zero()),
            ord_id: raw.ord_id,
            cl_ord_id: raw.cl_ord_id,
            inst_id: raw.inst_id,
            ord_type: raw.ord_type,
            state: raw.state,
        })
    }
}

/// Parses a `GET /api/v5/trade/orders-pending` or `GET /api/v5/trade/order` response.
pub fn parse_orders(body: &str) -> Result<Vec<OkxOrderState>, ResponseError> {
    let envelope: Envelope<RawOrder> = parse_json(body)?;
    check_envelope(envelope)?
        .into_iter()
        .map(OkxOrderState::try_from)
        .collect()
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawInstrument {
    inst_id: String,
    #[serde(default)]
    state: String,
}

/// One instrument of `GET /api/v5/public/instruments`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OkxInstrument {
    pub inst_id: String,
    /// `live`, `suspend`, `preopen`, `test`: only a `live` instrument takes orders.
    pub state: String,
}

/// Parses a `GET /api/v5/public/instruments` response (up to
/// [`MAX_INSTRUMENTS_BYTES`](crate::MAX_INSTRUMENTS_BYTES): the list is long).
pub fn parse_instruments(body: &str) -> Result<Vec<OkxInstrument>, ResponseError> {
    let envelope: Envelope<RawInstrument> =
        crate::parse_json_within(body, crate::MAX_INSTRUMENTS_BYTES)?;
    Ok(check_envelope(envelope)?
        .into_iter()
        .map(|raw| OkxInstrument {
            inst_id: raw.inst_id,
            state: raw.state,
        })
        .collect())
}

#[derive(Deserialize)]
struct RawAccount {
    #[serde(default)]
    details: Vec<RawBalance>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawBalance {
    ccy: String,
    #[serde(default)]
    eq: String,
    #[serde(default)]
    cash_bal: String,
    #[serde(default)]
    avail_bal: String,
    #[serde(default)]
    frozen_bal: String,
}

/// One currency of the trading account.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OkxBalance {
    pub ccy: String,
    /// Equity in this currency; `None` where OKX leaves it empty.
    pub eq: Option<Decimal>,
    pub cash_bal: Option<Decimal>,
    pub avail_bal: Option<Decimal>,
    pub frozen_bal: Option<Decimal>,
}

/// Parses a `GET /api/v5/account/balance` response into per-currency balances.
pub fn parse_balance(body: &str) -> Result<Vec<OkxBalance>, ResponseError> {
    let envelope: Envelope<RawAccount> = parse_json(body)?;
    let mut balances = Vec::new();
    for account in check_envelope(envelope)? {
        for raw in account.details {
            balances.push(OkxBalance {
                eq: parse_optional_decimal("eq", &raw.eq)?,
                cash_bal: parse_optional_decimal("cashBal", &raw.cash_bal)?,
                avail_bal: parse_optional_decimal("availBal", &raw.avail_bal)?,
                frozen_bal: parse_optional_decimal("frozenBal", &raw.frozen_bal)?,
                ccy: raw.ccy,
            });
        }
    }
    Ok(balances)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::credentials::Secret;
    use std::str::FromStr;

    const SECRET: &str = "chNOOS4KvNXR_Xq4k4c9qsfoKWvnDecLATCRlcBwyKDYnWgO";
    const TS: &str = "2020-12-08T09:08:57.715Z";
    const VECTOR_BODY: &str = r#"{"instId":"BTC-USD-200925","tdMode":"isolated","side":"buy","ordType":"limit","px":"432.11","sz":"2"}"#;

    fn d(text: &str) -> Decimal {
        Decimal::from_str(text).unwrap()
    }

    fn ts() -> OkxTimestamp {
        OkxTimestamp(TS.to_string())
    }

    fn client(demo: bool) -> OkxClient {
        OkxClient::new(
            OkxCredentials {
                api_key: "api-key-1".into(),
                secret: Secret::new(SECRET),
                passphrase: Secret::new("pass-phrase"),
            },
            demo,
        )
    }

    fn vector_order() -> OkxOrder {
        OkxOrder {
            inst_id: "BTC-USD-200925".into(),
            td_mode: TradeMode::Isolated,
            cl_ord_id: None,
            side: Side::Buy,
            ord_type: OrdType::Limit,
            sz: d("2"),
            px: Some(d("432.11")),
            reduce_only: false,
            tgt_ccy: None,
        }
    }

    #[test]
    fn okx_signature_vectors() {
        let cases = [
            (
                format!("{TS}GET/api/v5/account/balance"),
                "PJ61e1nb2F2Qd7D8SPiaIcx2gjdELc+o0ygzre9z33k=",
            ),
            (
                format!("{TS}GET/api/v5/account/balance?ccy=BTC"),
                "ebNz0sDoc3LoFm1hqjP8LDT0fnRlDERj5C+I4ZqB4Cw=",
            ),
            (
                format!("{TS}POST/api/v5/trade/order{VECTOR_BODY}"),
                "nEpHMx6gZYYjWVfzXtwccJAPmWrrmDHvV4cNsi10d6o=",
            ),
        ];
        for (prehash, expected) in cases {
            assert_eq!(sign(SECRET, &prehash), expected, "{prehash}");
        }
    }

    #[test]
    fn built_requests_carry_the_vector_signatures() {
        let c = client(false);
        let balance = c.balance(None, &ts()).unwrap();
        assert_eq!(
            balance.header("OK-ACCESS-SIGN"),
            Some("PJ61e1nb2F2Qd7D8SPiaIcx2gjdELc+o0ygzre9z33k=")
        );
        let btc = c.balance(Some("BTC"), &ts()).unwrap();
        assert_eq!(btc.path, "/api/v5/account/balance?ccy=BTC");
        assert_eq!(
            btc.header("OK-ACCESS-SIGN"),
            Some("ebNz0sDoc3LoFm1hqjP8LDT0fnRlDERj5C+I4ZqB4Cw=")
        );
        let place = c.place_order(&vector_order(), &ts()).unwrap();
        assert_eq!(place.method, Method::Post);
        assert_eq!(place.path, "/api/v5/trade/order");
        assert_eq!(place.body, VECTOR_BODY);
        assert_eq!(
            place.header("OK-ACCESS-SIGN"),
            Some("nEpHMx6gZYYjWVfzXtwccJAPmWrrmDHvV4cNsi10d6o=")
        );
    }

    #[test]
    fn header_sets_live_and_demo() {
        let names =
            |r: &SignedRequest| r.headers.iter().map(|(n, _)| n.clone()).collect::<Vec<_>>();
        let live = client(false).pending_orders(&ts());
        assert_eq!(
            names(&live),
            [
                "OK-ACCESS-KEY",
                "OK-ACCESS-SIGN",
                "OK-ACCESS-TIMESTAMP",
                "OK-ACCESS-PASSPHRASE"
            ]
        );
        assert_eq!(live.header("OK-ACCESS-KEY"), Some("api-key-1"));
        assert_eq!(live.header("OK-ACCESS-TIMESTAMP"), Some(TS));
        assert_eq!(live.header("OK-ACCESS-PASSPHRASE"), Some("pass-phrase"));
        assert_eq!(live.header("x-simulated-trading"), None);

        let demo = client(true).place_order(&vector_order(), &ts()).unwrap();
        assert_eq!(
            names(&demo),
            [
                "OK-ACCESS-KEY",
                "OK-ACCESS-SIGN",
                "OK-ACCESS-TIMESTAMP",
                "OK-ACCESS-PASSPHRASE",
                "Content-Type",
                "x-simulated-trading"
            ]
        );
        assert_eq!(demo.header("x-simulated-trading"), Some("1"));
        // The demo header is not signed: same signature as live.
        assert_eq!(
            demo.header("OK-ACCESS-SIGN"),
            Some("nEpHMx6gZYYjWVfzXtwccJAPmWrrmDHvV4cNsi10d6o=")
        );
        assert!(!format!("{demo:?}").contains("pass-phrase"));
    }

    #[test]
    fn place_bodies_are_exact() {
        let limit = OkxOrder {
            inst_id: "BTC-USDT-SWAP".into(),
            td_mode: TradeMode::Cross,
            cl_ord_id: Some("colony42".into()),
            side: Side::Sell,
            ord_type: OrdType::PostOnly,
            sz: d("0.10"),
            px: Some(d("103500.5")),
            reduce_only: true,
            tgt_ccy: None,
        };
        assert_eq!(
            place_body(&limit).unwrap(),
            r#"{"instId":"BTC-USDT-SWAP","tdMode":"cross","clOrdId":"colony42","side":"sell","ordType":"post_only","px":"103500.5","sz":"0.10","reduceOnly":true}"#
        );
        let market = OkxOrder {
            inst_id: "BTC-USDT".into(),
            td_mode: TradeMode::Cash,
            cl_ord_id: None,
            side: Side::Buy,
            ord_type: OrdType::Market,
            sz: d("0.001"),
            px: None,
            reduce_only: false,
            tgt_ccy: None,
        };
        assert_eq!(
            place_body(&market).unwrap(),
            r#"{"instId":"BTC-USDT","tdMode":"cash","side":"buy","ordType":"market","sz":"0.001"}"#
        );
        let in_base = OkxOrder {
            tgt_ccy: Some(TgtCcy::BaseCcy),
            ..market
        };
        assert_eq!(
            place_body(&in_base).unwrap(),
            r#"{"instId":"BTC-USDT","tdMode":"cash","side":"buy","ordType":"market","sz":"0.001","tgtCcy":"base_ccy"}"#
        );
    }

    #[test]
    fn invalid_orders_are_refused_before_signing() {
        type Change = fn(&mut OkxOrder);
        let cases: Vec<(&str, Change)> = vec![
            ("px", |o| o.px = None),
            ("px", |o| o.px = Some(d("-1"))),
            ("px", |o| o.ord_type = OrdType::Market),
            ("sz", |o| o.sz = Decimal::ZERO),
            ("instId", |o| o.inst_id = "BTC USDT".into()),
            ("instId", |o| o.inst_id = "BTC&ordId=1".into()),
            ("clOrdId", |o| o.cl_ord_id = Some("has-dash".into())),
            ("clOrdId", |o| o.cl_ord_id = Some("a".repeat(33))),
            ("clOrdId", |o| o.cl_ord_id = Some(String::new())),
        ];
        for (field, change) in cases {
            let mut order = vector_order();
            change(&mut order);
            let err = place_body(&order).unwrap_err();
            assert!(
                matches!(err, OrderError::Invalid { field: f, .. } if f == field),
                "{err}"
            );
        }
        let mut longest = vector_order();
        longest.cl_ord_id = Some("a".repeat(32));
        assert!(place_body(&longest).is_ok());
    }

    #[test]
    fn cancel_and_query_requests() {
        let c = client(false);
        let cancel = c
            .cancel_order(
                "BTC-USDT",
                &OrderRef::OrdId("590908157585625111".into()),
                &ts(),
            )
            .unwrap();
        assert_eq!(cancel.path, "/api/v5/trade/cancel-order");
        assert_eq!(
            cancel.body,
            r#"{"instId":"BTC-USDT","ordId":"590908157585625111"}"#
        );
        let prehash = format!("{TS}POST/api/v5/trade/cancel-order{}", cancel.body);
        assert_eq!(
            cancel.header("OK-ACCESS-SIGN"),
            Some(sign(SECRET, &prehash).as_str())
        );

        let query = c
            .get_order("BTC-USDT", &OrderRef::ClOrdId("colony42".into()), &ts())
            .unwrap();
        assert_eq!((query.method, query.body.as_str()), (Method::Get, ""));
        assert_eq!(
            query.path,
            "/api/v5/trade/order?instId=BTC-USDT&clOrdId=colony42"
        );
        let prehash = format!("{TS}GET{}", query.path);
        assert_eq!(
            query.header("OK-ACCESS-SIGN"),
            Some(sign(SECRET, &prehash).as_str())
        );
        assert!(
            c.get_order("BTC-USDT", &OrderRef::OrdId("1&x=2".into()), &ts())
                .is_err()
        );
    }

    #[test]
    fn timestamps_have_milliseconds() {
        assert_eq!(
            OkxTimestamp::from_unix_millis(1_607_418_537_715).as_str(),
            TS
        );
        assert_eq!(
            OkxTimestamp::from_unix_millis(0).as_str(),
            "1970-01-01T00:00:00.000Z"
        );
        assert_eq!(OkxTimestamp::now().as_str().len(), TS.len());
    }

    fn envelope(code: &str, msg: &str, items: &str) -> String {
        format!(r#"{{"code":"{code}","msg":"{msg}","data":[{items}],"inTime":"1","outTime":"2"}}"#)
    }

    #[test]
    fn place_response_accepted_from_the_sample() {
        let body = envelope(
            "0",
            "",
            include_str!("../samples/okx_place_order_item.json"),
        );
        assert_eq!(
            parse_order_ack(&body),
            Ok(OrderOutcome::Accepted {
                venue_order_id: "12345678901234567890".into()
            })
        );
    }

    #[test]
    fn place_responses_rejected() {
        let item = r#"{"ordId":"","clOrdId":"colony42","tag":"","sCode":"51008","sMsg":"Order failed. Insufficient USDT balance in account."}"#;
        assert_eq!(
            parse_order_ack(&envelope("1", "All operations failed", item)),
            Ok(OrderOutcome::Rejected {
                code: "51008".into(),
                message: "Order failed. Insufficient USDT balance in account.".into()
            })
        );
        assert_eq!(
            parse_order_ack(&envelope("50113", "Invalid Sign", "")),
            Ok(OrderOutcome::Rejected {
                code: "50113".into(),
                message: "Invalid Sign".into()
            })
        );
    }

    #[test]
    fn malformed_responses_are_errors() {
        let cases = [
            String::new(),
            "not json".to_string(),
            "[]".to_string(),
            r#"{"msg":""}"#.to_string(),
            r#"{"code":0,"data":[]}"#.to_string(),
            envelope("0", "", ""),
            envelope("0", "", r#"{"ordId":"","sCode":"0","sMsg":""}"#),
            envelope("0", "", r#"{"ordId":"1"}"#),
            envelope(
                "0",
                "",
                r#"{"ordId":"1","sCode":"0"},{"ordId":"2","sCode":"0"}"#,
            ),
            envelope("0", "", r#"{"ordId":7,"sCode":"0"}"#),
        ];
        for body in cases {
            let result = parse_order_ack(&body);
            assert!(
                matches!(result, Err(ResponseError::Malformed(_))),
                "{body}: {result:?}"
            );
        }
    }

    #[test]
    fn pending_orders_sample() {
        let orders = parse_orders(include_str!("../samples/okx_orders_pending.json")).unwrap();
        assert_eq!(
            orders,
            [OkxOrderState {
                ord_id: "1234567890123456789".into(),
                cl_ord_id: "client-order-1".into(),
                inst_id: "BTC-USDT-SWAP".into(),
                side: Side::Buy,
                ord_type: "limit".into(),
                px: Some(d("103500")),
                sz: d("0.10"),
                acc_fill_sz: Decimal::ZERO,
                avg_px: None,
                state: "live".into(),
            }]
        );
        let bad_px =
            include_str!("../samples/okx_orders_pending.json").replace("\"103500\"", "\"1e\"");
        assert!(matches!(
            parse_orders(&bad_px),
            Err(ResponseError::Malformed(_))
        ));
        assert_eq!(
            parse_orders(r#"{"code":"50001","msg":"Service temporarily unavailable","data":[]}"#),
            Err(ResponseError::Venue {
                code: "50001".into(),
                message: "Service temporarily unavailable".into()
            })
        );
    }

    #[test]
    fn balance_sample() {
        let balances = parse_balance(include_str!("../samples/okx_account_balance.json")).unwrap();
        assert_eq!(
            balances,
            [OkxBalance {
                ccy: "USDT".into(),
                eq: Some(d("99.89469657000001")),
                cash_bal: Some(d("94.42612990333333")),
                avail_bal: Some(d("94.42612990333333")),
                frozen_bal: Some(d("5.468566666666667")),
            }]
        );
    }
}
