//! The capability values: one variant per kind, the validated patterns they carry, and their
//! one canonical string (`Display`, `FromStr`, serde).

use super::*;
use rust_decimal::Decimal;
use std::fmt;
use std::net::{Ipv4Addr, Ipv6Addr};
use std::str::FromStr;

/// One capability, as granted by an operator or requested by a manifest.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Capability {
    /// `messaging.publish:<subject-pattern>`
    MessagingPublish(SubjectPattern),
    /// `messaging.subscribe:<subject-pattern>`
    MessagingSubscribe(SubjectPattern),
    /// `messaging.request:<subject-pattern>`
    MessagingRequest(SubjectPattern),
    /// `market.read:<symbol-pattern>`
    MarketRead(SymbolPattern),
    /// `orders.place:<symbol-pattern>[;limits]`
    OrdersPlace {
        /// Which symbols may be traded.
        symbols: SymbolPattern,
        /// Per-order and rate limits; all absent means unlimited.
        limits: OrderLimits,
    },
    /// `orders.cancel:<symbol-pattern>`
    OrdersCancel(SymbolPattern),
    /// `tools.call:<name-pattern>`
    ToolsCall(NamePattern),
    /// `tools.register`
    ToolsRegister,
    /// `http.outbound:<scheme>://<host-pattern>[:<port>]`
    HttpOutbound(HttpTarget),
    /// `fs.read:<host-dir>`
    FsRead(FsDir),
    /// `fs.write:<host-dir>` (implies reading the same dir)
    FsWrite(FsDir),
    /// `env:<NAME>`
    Env(EnvName),
    /// `state` (always granted)
    State,
    /// `log` (always granted)
    Log,
}

impl Capability {
    /// The part before the `:` (`messaging.publish`, `orders.place`, `state`, …).
    pub fn kind(&self) -> &'static str {
        match self {
            Capability::MessagingPublish(_) => "messaging.publish",
            Capability::MessagingSubscribe(_) => "messaging.subscribe",
            Capability::MessagingRequest(_) => "messaging.request",
            Capability::MarketRead(_) => "market.read",
            Capability::OrdersPlace { .. } => "orders.place",
            Capability::OrdersCancel(_) => "orders.cancel",
            Capability::ToolsCall(_) => "tools.call",
            Capability::ToolsRegister => "tools.register",
            Capability::HttpOutbound(_) => "http.outbound",
            Capability::FsRead(_) => "fs.read",
            Capability::FsWrite(_) => "fs.write",
            Capability::Env(_) => "env",
            Capability::State => "state",
            Capability::Log => "log",
        }
    }

    /// Whether every plugin has this capability without a grant (`state`, `log`).
    pub fn is_always_granted(&self) -> bool {
        matches!(self, Capability::State | Capability::Log)
    }
}

/// A validated NATS-style subject pattern (see the module doc).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SubjectPattern(pub(super) String);

/// A validated symbol pattern such as `BTC-*` (see the module doc).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SymbolPattern(pub(super) String);

/// A validated tool name pattern such as `price-*` (see the module doc).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct NamePattern(pub(super) String);

/// A validated, normalised absolute host directory.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct FsDir(pub(super) String);

/// A validated environment variable name.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct EnvName(pub(super) String);

macro_rules! as_str {
    ($($t:ty),*) => {$(
        impl $t {
            /// The validated text.
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }
        impl fmt::Display for $t {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }
    )*};
}
as_str!(SubjectPattern, SymbolPattern, NamePattern, FsDir, EnvName);

/// Limits carried by an `orders.place` grant. Each is optional (absent = unlimited) and, when
/// present, positive.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct OrderLimits {
    pub(super) max_notional: Option<Decimal>,
    pub(super) max_qty: Option<Decimal>,
    pub(super) max_orders_per_min: Option<u32>,
    pub(super) max_open_orders: Option<u32>,
}

impl OrderLimits {
    /// Largest notional (quantity × price) of one order.
    pub fn max_notional(&self) -> Option<Decimal> {
        self.max_notional
    }
    /// Largest quantity of one order.
    pub fn max_qty(&self) -> Option<Decimal> {
        self.max_qty
    }
    /// Most orders placed in any 60-second window (enforced by the caller).
    pub fn max_orders_per_min(&self) -> Option<u32> {
        self.max_orders_per_min
    }
    /// Most orders open at once (enforced by the caller).
    pub fn max_open_orders(&self) -> Option<u32> {
        self.max_open_orders
    }
}

impl fmt::Display for OrderLimits {
    /// The `;key=value` suffix in canonical order, empty when unlimited.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(v) = self.max_notional {
            write!(f, ";max_notional={v}")?;
        }
        if let Some(v) = self.max_qty {
            write!(f, ";max_qty={v}")?;
        }
        if let Some(v) = self.max_orders_per_min {
            write!(f, ";max_orders_per_min={v}")?;
        }
        if let Some(v) = self.max_open_orders {
            write!(f, ";max_open_orders={v}")?;
        }
        Ok(())
    }
}

/// `http` or `https`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Scheme {
    /// Plain HTTP.
    Http,
    /// HTTP over TLS.
    Https,
}

impl Scheme {
    /// `"http"` or `"https"`.
    pub fn as_str(self) -> &'static str {
        match self {
            Scheme::Http => "http",
            Scheme::Https => "https",
        }
    }

    /// The port a URL or grant without one means: 80 or 443.
    pub fn default_port(self) -> u16 {
        match self {
            Scheme::Http => 80,
            Scheme::Https => 443,
        }
    }
}

/// The host part of an `http.outbound` grant.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum HostPattern {
    /// Exactly this lowercase DNS name.
    Name(String),
    /// `*.SUFFIX`: any name ending in `.SUFFIX`, at any depth, but not `SUFFIX` itself.
    Subdomains(String),
    /// Exactly this IPv4 address.
    Ipv4(Ipv4Addr),
    /// Exactly this IPv6 address (written in brackets).
    Ipv6(Ipv6Addr),
}

impl fmt::Display for HostPattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HostPattern::Name(n) => f.write_str(n),
            HostPattern::Subdomains(s) => write!(f, "*.{s}"),
            HostPattern::Ipv4(a) => write!(f, "{a}"),
            HostPattern::Ipv6(a) => write!(f, "[{a}]"),
        }
    }
}

/// What an `http.outbound` grant allows: a scheme, a host pattern and optionally one port.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct HttpTarget {
    /// The only scheme allowed.
    pub scheme: Scheme,
    /// Which hosts.
    pub host: HostPattern,
    /// The only port allowed; `None` allows the scheme's default port only.
    pub port: Option<u16>,
}

impl HttpTarget {
    /// Whether this grant allows a connection to `host:port` over `scheme` (any case; `host` a
    /// DNS name, an IPv4 address or a bracketed IPv6 address). The request is not validated:
    /// [`GrantSet::check`] does that.
    pub fn allows(&self, scheme: &str, host: &str, port: u16) -> bool {
        http_allows(self, scheme, host, port)
    }
}

impl fmt::Display for HttpTarget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}://{}", self.scheme.as_str(), self.host)?;
        if let Some(p) = self.port {
            write!(f, ":{p}")?;
        }
        Ok(())
    }
}

impl fmt::Display for Capability {
    /// The canonical string; parsing it gives back an equal capability.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kind = self.kind();
        match self {
            Capability::MessagingPublish(p)
            | Capability::MessagingSubscribe(p)
            | Capability::MessagingRequest(p) => write!(f, "{kind}:{p}"),
            Capability::MarketRead(p) | Capability::OrdersCancel(p) => write!(f, "{kind}:{p}"),
            Capability::OrdersPlace { symbols, limits } => write!(f, "{kind}:{symbols}{limits}"),
            Capability::ToolsCall(p) => write!(f, "{kind}:{p}"),
            Capability::HttpOutbound(t) => write!(f, "{kind}:{t}"),
            Capability::FsRead(d) | Capability::FsWrite(d) => write!(f, "{kind}:{d}"),
            Capability::Env(n) => write!(f, "{kind}:{n}"),
            Capability::ToolsRegister | Capability::State | Capability::Log => f.write_str(kind),
        }
    }
}

/// A capability string that does not parse: the input (quoted, cut at 80 characters) and what is
/// wrong with it, e.g. `capability "orders.place:btc": symbol pattern "btc": invalid character
/// 'b' at byte 0 (expected A-Z, 0-9, '-', '_', '/' or '*')`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("capability {input:?}: {reason}")]
pub struct CapError {
    input: String,
    reason: String,
}

impl CapError {
    fn new(input: &str, reason: String) -> Self {
        let input = match input.char_indices().nth(QUOTE_LEN) {
            Some((i, _)) => format!("{}…", &input[..i]),
            None => input.to_owned(),
        };
        CapError { input, reason }
    }

    /// The (possibly cut) input.
    pub fn input(&self) -> &str {
        &self.input
    }

    /// What is wrong, without the input.
    pub fn reason(&self) -> &str {
        &self.reason
    }
}

impl FromStr for Capability {
    type Err = CapError;

    fn from_str(s: &str) -> Result<Self, CapError> {
        parse(s).map_err(|reason| CapError::new(s, reason))
    }
}

impl serde::Serialize for Capability {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for Capability {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}
