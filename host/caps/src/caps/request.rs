//! What a host function asks ([`Request`]) and what it is told ([`Decision`]).

use super::*;
use rust_decimal::Decimal;
use std::fmt::{self, Write as _};

/// One use of a capability, as a host function is about to make it. Strings are what the guest
/// asked for; [`GrantSet::check`] validates them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Request<'a> {
    /// Publish a message to a concrete subject.
    Publish {
        /// No wildcards.
        subject: &'a str,
    },
    /// Subscribe to a subject or subject pattern.
    Subscribe {
        /// May contain `*` and `>`.
        subject: &'a str,
    },
    /// Send a request (and await a reply) on a concrete subject.
    Request {
        /// No wildcards.
        subject: &'a str,
    },
    /// Read market data of one symbol.
    MarketRead {
        /// A concrete symbol.
        symbol: &'a str,
    },
    /// Place one order.
    PlaceOrder {
        /// A concrete symbol.
        symbol: &'a str,
        /// Positive quantity.
        qty: Decimal,
        /// Quantity × price, not negative.
        notional: Decimal,
    },
    /// Cancel an order on one symbol.
    CancelOrder {
        /// A concrete symbol.
        symbol: &'a str,
    },
    /// Call a tool.
    CallTool {
        /// A concrete tool name.
        name: &'a str,
    },
    /// Register a generated tool.
    RegisterTool,
    /// Open an outbound HTTP connection.
    Http {
        /// `http` or `https`, any case.
        scheme: &'a str,
        /// A DNS name, IPv4 address or bracketed IPv6 address, any case.
        host: &'a str,
        /// The port that will be connected to.
        port: u16,
    },
    /// Read a host file or directory.
    FsRead {
        /// Absolute, without `.` or `..` components.
        path: &'a str,
    },
    /// Write a host file or directory.
    FsWrite {
        /// Absolute, without `.` or `..` components.
        path: &'a str,
    },
    /// Read an environment variable.
    Env {
        /// `[A-Z_][A-Z0-9_]*`.
        name: &'a str,
    },
}

impl fmt::Display for Request<'_> {
    /// The capability string that would allow this request (fs paths normalised, http scheme and
    /// host lowercased).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Request::Publish { subject } => write!(f, "messaging.publish:{subject}"),
            Request::Subscribe { subject } => write!(f, "messaging.subscribe:{subject}"),
            Request::Request { subject } => write!(f, "messaging.request:{subject}"),
            Request::MarketRead { symbol } => write!(f, "market.read:{symbol}"),
            Request::PlaceOrder { symbol, .. } => write!(f, "orders.place:{symbol}"),
            Request::CancelOrder { symbol } => write!(f, "orders.cancel:{symbol}"),
            Request::CallTool { name } => write!(f, "tools.call:{name}"),
            Request::RegisterTool => f.write_str("tools.register"),
            Request::Http { scheme, host, port } => {
                f.write_str("http.outbound:")?;
                write_lower(f, scheme)?;
                f.write_str("://")?;
                write_lower(f, host)?;
                write!(f, ":{port}")
            }
            Request::FsRead { path } => write_path(f, "fs.read:", path),
            Request::FsWrite { path } => write_path(f, "fs.write:", path),
            Request::Env { name } => write!(f, "env:{name}"),
        }
    }
}

pub(super) fn write_lower(f: &mut fmt::Formatter<'_>, s: &str) -> fmt::Result {
    s.chars()
        .try_for_each(|c| f.write_char(c.to_ascii_lowercase()))
}

pub(super) fn write_path(f: &mut fmt::Formatter<'_>, kind: &str, path: &str) -> fmt::Result {
    f.write_str(kind)?;
    let mut any = false;
    for comp in components(path) {
        write!(f, "/{comp}")?;
        any = true;
    }
    if !any {
        f.write_char('/')?;
    }
    Ok(())
}

pub(super) fn components(path: &str) -> impl Iterator<Item = &str> {
    path.split('/').filter(|c| !c.is_empty())
}

/// The outcome of [`GrantSet::check`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// A grant covers the request.
    Allowed,
    /// No grant covers it; `needs` is what the operator would grant, e.g.
    /// `messaging.publish:orders.new`, or the violated limit, e.g.
    /// `orders.place:BTC-USDT max_qty 0.5 < 2`.
    Denied {
        /// The missing capability (or limit).
        needs: String,
    },
    /// The request itself is malformed (a wildcard publish subject, a path with `..`, …); no
    /// grant could allow it.
    Invalid {
        /// What is wrong with it.
        reason: String,
    },
}

impl Decision {
    /// Whether the request may go ahead.
    pub fn is_allowed(&self) -> bool {
        matches!(self, Decision::Allowed)
    }
}

impl fmt::Display for Decision {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Decision::Allowed => f.write_str("allowed"),
            Decision::Denied { needs } => write!(f, "denied (needs {needs})"),
            Decision::Invalid { reason } => write!(f, "invalid request: {reason}"),
        }
    }
}

/// A directory a plugin may open, for the host's preopens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FsGrant {
    /// The granted dir.
    pub dir: FsDir,
    /// Whether `fs.write` was granted for it (else only `fs.read`).
    pub writable: bool,
}
