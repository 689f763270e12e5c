//! Venue adapters for real accounts (OKX v5 REST, Alpaca), in three layers:
//! - the wire layer ([`okx::client`], [`alpaca::client`], [`credentials`]) turns a venue's own
//!   order description into the exact HTTP request it expects and its response body into an
//!   [`OrderOutcome`] or typed state, with no I/O, so signing and parsing are deterministic and
//!   tested against the venues' published vectors;
//! - one adapter per venue ([`okx::OkxAdapter`], [`alpaca::AlpacaAdapter`]) maps the router's
//!   orders to that venue's requests and its answers to the router's outcomes, statuses and
//!   refusals, still with no I/O;
//! - the I/O layer, shared by every venue ([`http`] sends, [`breaker`] cuts off a venue that
//!   keeps failing, [`live::LiveVenue`] is one account over an adapter: place, cancel, query by
//!   client id, as the router's `Venue`).
//!
//! **Architecture Invariant:** this crate knows nothing about plugins, grants or risk checks. The
//! order router (`colony_orders::service`) has already decided an order may go out, journaled it, and
//! calls [`live::LiveVenue`].
//!
//! Everything in a response is controlled by the network, so parsers never panic: a body that is
//! not what the venue documents is a [`ResponseError`], and bodies over [`MAX_RESPONSE_BYTES`] are
//! refused before parsing. Secrets live in [`credentials::Secret`], whose `Debug`/`Display` print
//! `***`; [`SignedRequest`]'s `Debug` redacts the headers that carry them.

#![deny(missing_docs)]

pub mod alpaca;
pub use colony_risk::breaker;
pub mod credentials;
pub mod http;
pub mod live;
pub mod okx;

use std::fmt;

/// Largest response body the parsers accept. Order and balance responses are a few KiB; a larger
/// body is not one of them.
pub(crate) const MAX_RESPONSE_BYTES: usize = 1 << 20;

/// Largest body of a venue's instrument list (OKX's spot list is ~0.7 MB, Alpaca's active US
/// equities ~5 MB): the one answer allowed to be larger than [`MAX_RESPONSE_BYTES`].
pub(crate) const MAX_INSTRUMENTS_BYTES: usize = 32 << 20;

/// Header names whose values are secrets; [`SignedRequest`]'s `Debug` prints them as `***`.
const SECRET_HEADERS: &[&str] = &["OK-ACCESS-PASSPHRASE", "APCA-API-SECRET-KEY"];

/// HTTP method of a venue request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    /// `GET`.
    Get,
    /// `POST`.
    Post,
    /// `DELETE`.
    Delete,
}

impl Method {
    /// The method as it appears on the wire and in OKX's signature pre-hash.
    pub fn as_str(self) -> &'static str {
        match self {
            Method::Get => "GET",
            Method::Post => "POST",
            Method::Delete => "DELETE",
        }
    }
}

impl fmt::Display for Method {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A request ready to send: `path` includes any query string and is relative to the venue's base
/// URL; `body` is empty for requests without one.
#[derive(Clone, PartialEq, Eq)]
pub struct SignedRequest {
    /// The method.
    pub method: Method,
    /// The path and query, relative to the base URL.
    pub path: String,
    /// The headers, signature and keys included.
    pub headers: Vec<(String, String)>,
    /// The body; empty for none.
    pub body: String,
}

impl SignedRequest {
    /// The value of header `name` (ASCII case-insensitive), if present.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

impl fmt::Debug for SignedRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let headers: Vec<(&str, &str)> = self
            .headers
            .iter()
            .map(|(name, value)| {
                let secret = SECRET_HEADERS.iter().any(|s| s.eq_ignore_ascii_case(name));
                (name.as_str(), if secret { "***" } else { value.as_str() })
            })
            .collect();
        f.debug_struct("SignedRequest")
            .field("method", &self.method)
            .field("path", &self.path)
            .field("headers", &headers)
            .field("body", &self.body)
            .finish()
    }
}

/// Order side; the same words at both venues.
pub use colony_model::Side;

/// What a venue answered to a place (or cancel) request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OrderOutcome {
    /// The venue took the request; `venue_order_id` is its id for the order.
    Accepted {
        /// The venue's id for the order.
        venue_order_id: String,
    },
    /// The venue refused it; `code` and `message` are the venue's own.
    Rejected {
        /// The venue's code.
        code: String,
        /// The venue's message.
        message: String,
    },
}

/// An order description the venue would refuse, caught before anything is sent.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OrderError {
    /// A field the venue would refuse.
    #[error("{field}: {reason}")]
    Invalid {
        /// The field.
        field: &'static str,
        /// Why.
        reason: String,
    },
}

impl OrderError {
    pub(crate) fn invalid(field: &'static str, reason: impl Into<String>) -> Self {
        OrderError::Invalid {
            field,
            reason: reason.into(),
        }
    }
}

/// A response body that is not what the venue documents.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ResponseError {
    /// Over the limit of its kind of answer ([`MAX_RESPONSE_BYTES`] for most).
    #[error("response body is {bytes} bytes, over the {limit} byte limit")]
    TooLarge {
        /// The body's size.
        bytes: usize,
        /// The limit it passed.
        limit: usize,
    },
    /// Not the documented shape.
    #[error("malformed response: {0}")]
    Malformed(String),
    /// The venue reported a request-level error on a query (not an order decision).
    #[error("venue error {code}: {message}")]
    Venue {
        /// The venue's code.
        code: String,
        /// The venue's message.
        message: String,
    },
}

/// Parses `body` as JSON into `T` after the size check; shared by both venues.
pub(crate) fn parse_json<T: serde::de::DeserializeOwned>(body: &str) -> Result<T, ResponseError> {
    parse_json_within(body, MAX_RESPONSE_BYTES)
}

/// [`parse_json`] with a size limit of its own (an instrument list's).
pub(crate) fn parse_json_within<T: serde::de::DeserializeOwned>(
    body: &str,
    limit: usize,
) -> Result<T, ResponseError> {
    if body.len() > limit {
        return Err(ResponseError::TooLarge {
            bytes: body.len(),
            limit,
        });
    }
    serde_json::from_str(body).map_err(|e| ResponseError::Malformed(e.to_string()))
}

/// Parses a venue decimal string exactly; `what` names the field for the error.
pub(crate) fn parse_decimal(
    what: &str,
    text: &str,
) -> Result<rust_decimal::Decimal, ResponseError> {
    text.parse()
        .map_err(|_| ResponseError::Malformed(format!("{what} {text:?} is not a decimal")))
}

/// Like [`parse_decimal`], but an empty string (how OKX writes "no value") is `None`.
pub(crate) fn parse_optional_decimal(
    what: &str,
    text: &str,
) -> Result<Option<rust_decimal::Decimal>, ResponseError> {
    if text.is_empty() {
        Ok(None)
    } else {
        parse_decimal(what, text).map(Some)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_of_a_request_redacts_secret_headers() {
        let request = SignedRequest {
            method: Method::Get,
            path: "/v2/orders".into(),
            headers: vec![
                ("APCA-API-KEY-ID".into(), "key-id".into()),
                ("APCA-API-SECRET-KEY".into(), "very-secret".into()),
                ("ok-access-passphrase".into(), "pass-phrase".into()),
            ],
            body: String::new(),
        };
        let debug = format!("{request:?}");
        assert!(!debug.contains("very-secret"), "{debug}");
        assert!(!debug.contains("pass-phrase"), "{debug}");
        assert!(debug.contains("key-id") && debug.contains("***"), "{debug}");
    }

    #[test]
    fn oversized_bodies_are_refused_before_parsing() {
        let body = " ".repeat(MAX_RESPONSE_BYTES + 1);
        assert_eq!(
            parse_json::<serde_json::Value>(&body),
            Err(ResponseError::TooLarge {
                bytes: MAX_RESPONSE_BYTES + 1,
                limit: MAX_RESPONSE_BYTES
            })
        );
    }
}
