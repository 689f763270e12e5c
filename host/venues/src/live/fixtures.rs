//! What the tests of the live venues share: credentials whose secrets must never show, accounts
//! against a loopback server, an order to send, and OKX's answer envelope.

use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use rust_decimal::Decimal;

use crate::alpaca::{AlpacaEnv, AlpacaVenue};
use crate::credentials::{AlpacaCredentials, OkxCredentials, Secret};
use crate::http::loopback::Server;
use crate::live::LiveVenue;
use crate::okx::OkxVenue;
use colony_market::types::{self, Timestamp};
use colony_orders::{ExecKind, OrderKind, OrderRequest, TimeInForce};

pub const TIMEOUT: Duration = Duration::from_millis(200);
pub(crate) const NOW: Timestamp = 1_747_000_000_000_000_000;
pub(crate) const OKX_SECRET: &str = "okx-signing-secret-value";
pub(crate) const OKX_PASSPHRASE: &str = "okx-passphrase-value";
pub(crate) const ALPACA_SECRET: &str = "alpaca-secret-key-value";
pub(crate) const SECRETS: [&str; 3] = [OKX_SECRET, OKX_PASSPHRASE, ALPACA_SECRET];
pub(crate) const OKX_ACK_ITEM: &str = include_str!("../samples/okx_place_order_item.json");
pub(crate) const ALPACA_ORDER: &str = include_str!("../samples/alpaca_order.json");

pub fn d(text: &str) -> Decimal {
    Decimal::from_str(text).unwrap()
}

fn okx_creds() -> OkxCredentials {
    OkxCredentials {
        api_key: "okx-api-key".into(),
        secret: Secret::new(OKX_SECRET),
        passphrase: Secret::new(OKX_PASSPHRASE),
    }
}

pub(crate) fn alpaca_creds() -> AlpacaCredentials {
    AlpacaCredentials {
        key_id: "PKTESTKEYID".into(),
        secret_key: Secret::new(ALPACA_SECRET),
    }
}

pub fn okx(server: &Server, demo: bool) -> OkxVenue {
    LiveVenue::okx(okx_creds(), demo, &server.base_url, TIMEOUT).unwrap()
}

pub fn alpaca(server: &Server) -> AlpacaVenue {
    LiveVenue::alpaca(alpaca_creds(), AlpacaEnv::Paper, &server.base_url, TIMEOUT).unwrap()
}

pub fn limit(symbol: &str, client_id: &str) -> OrderRequest {
    OrderRequest {
        client_id: client_id.into(),
        agent: Arc::from("trader"),
        symbol: Arc::from(symbol),
        side: types::Side::Buy,
        kind: OrderKind::Limit,
        price: Some(d("103500.5")),
        qty: d("0.10"),
        tif: TimeInForce::Gtc,
        post_only: false,
        reduce_only: false,
    }
}

pub(crate) fn okx_envelope(code: &str, msg: &str, items: &str) -> String {
    format!(r#"{{"code":"{code}","msg":"{msg}","data":[{items}],"inTime":"1","outTime":"2"}}"#)
}

pub fn json(text: &str) -> serde_json::Value {
    serde_json::from_str(text).unwrap()
}

pub fn rejected(code: &str, message: &str) -> ExecKind {
    ExecKind::Rejected {
        code: code.into(),
        message: message.into(),
    }
}
