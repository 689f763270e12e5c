//! Outbound HTTP policy for tools: which URLs a plugin may fetch under its `http.outbound`
//! grants, which addresses a connection may reach (SSRF defence), size and time limits, and
//! the shape of the audit record of each request.
//!
//! **Architecture invariant:** this crate decides, it does not connect. It knows nothing
//! about wasmtime or hyper; the `wasi:http` host hands it the URL, connects only to the
//! [`SocketAddr`](std::net::SocketAddr)s it returns, enforces [`HttpLimits`] on the body
//! streams, and writes an [`HttpAuditEntry`] per request. Its only I/O is name resolution,
//! behind the [`Resolver`] trait so tests inject answers.
//!
//! # Rules
//!
//! | step | rule | why |
//! |---|---|---|
//! | URL | at most [`MAX_URL_LEN`] bytes, `http://` or `https://` (any case), no whitespace, control characters or `\`, parsed as WHATWG (the `url` crate) | browsers' parser, so `HTTP://Ex%41mple.COM.` means what a server thinks; we refuse the inputs where parsers disagree instead of repairing them |
//! | userinfo | `user:pass@host` is refused (`http.userinfo`) | credentials belong in headers, where the audit never looks; `a@b` hosts are a classic confusion |
//! | host name | IDNA (UTS 46) to ASCII, lowercased, one trailing dot removed; empty labels refused | the grant compares names, so they are compared in one spelling |
//! | IPv4 literal | only dotted decimal exactly as it prints (`127.0.0.1`); `0x7f.1`, `0177.0.0.1`, `127.1`, `2130706433`, `127.0.0.1.`, `127.0.0.%31` are refused (`http.ip-literal`) | these all mean 127.0.0.1 to some parser; one spelling means grants and audit agree with the socket |
//! | grant | some `http.outbound` grant allows scheme, host and port ([`HttpTarget::allows`]); a URL without a port uses 80 or 443, and a grant without a port allows only that default port | a grant of `http://127.0.0.1` must not open every local service |
//! | address | every address a name resolves to is classified ([`ranges`]); a non-public one (loopback, private, link-local, CGNAT, benchmarking, documentation, reserved, multicast, broadcast, cloud metadata, and IPv4 embedded in mapped, compatible, NAT64 or 6to4 IPv6) refuses the whole request (`http.private-address`, `http.metadata`) unless a grant names that IP literally | see below |
//! | redirect | the `Location` is resolved against the request URL and goes through every step above; at most `max_redirects` hops | a redirect is just another request the guest did not write |
//!
//! **DNS rebinding.** A granted *name* that resolves to a non-public address is refused even
//! though the name is granted: the name's owner, not the operator, decides what it resolves to.
//! Only a grant that names the address itself (`http.outbound:http://10.0.0.5:8080`) lets a
//! connection reach it, for that scheme and port, whether the URL names the IP or a name that
//! resolves to it. If *any* address of a name is refused, the request is refused, rather than
//! connecting to the allowed ones: a name that mixes public and private answers is an attack or
//! a mistake, and either way the operator should hear of it. The checked addresses are returned
//! and the connection goes to them; the host must not resolve the name again.
//!
//! **Audit.** [`HttpAuditEntry`] keeps the method, `scheme://host:port`, status and byte
//! counts. It drops the path and the query string entirely (tokens travel in both, e.g.
//! `/bot<token>/sendMessage`, `?api_key=`), and never sees bodies, headers or userinfo.

#![deny(missing_docs)]

mod outbound;
pub mod ranges;

pub use outbound::{OutboundPolicy, Resolved, Resolver, SystemResolver, Target};

use std::fmt;
use std::net::IpAddr;
use std::time::Duration;

#[cfg(doc)]
use colony_caps::HttpTarget;

/// Longest URL or `Location` accepted, in bytes.
pub(crate) const MAX_URL_LEN: usize = 8192;

/// Size and time caps on one outbound request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HttpLimits {
    /// Largest request body sent, in bytes.
    pub max_request_bytes: u64,
    /// Largest response body read, in bytes; the stream is cut and the request fails beyond it.
    pub max_response_bytes: u64,
    /// The whole exchange (resolution, connect, request, response body), and name resolution
    /// on its own.
    pub timeout: Duration,
    /// Most redirects followed for one request.
    pub max_redirects: u32,
}

impl Default for HttpLimits {
    /// 1 MiB out, 8 MiB in, 30 s, 5 redirects: enough for JSON APIs, small enough that a tool
    /// cannot use the host as a download proxy.
    fn default() -> Self {
        HttpLimits {
            max_request_bytes: 1 << 20,
            max_response_bytes: 8 << 20,
            timeout: Duration::from_secs(30),
            max_redirects: 5,
        }
    }
}

impl HttpLimits {
    /// Refuses a request body once it has grown past the cap.
    pub fn check_request_bytes(&self, bytes: u64) -> Result<(), HttpRefusal> {
        if bytes > self.max_request_bytes {
            return Err(HttpRefusal::TooLarge {
                what: "request body",
                limit: self.max_request_bytes,
            });
        }
        Ok(())
    }

    /// Refuses a response body once it has grown past the cap.
    pub fn check_response_bytes(&self, bytes: u64) -> Result<(), HttpRefusal> {
        if bytes > self.max_response_bytes {
            return Err(HttpRefusal::TooLarge {
                what: "response body",
                limit: self.max_response_bytes,
            });
        }
        Ok(())
    }
}

/// Why an outbound request was refused. [`HttpRefusal::code`] is stable (audit, guest errors,
/// docs); messages name the host and, where a grant would help, the grant needed. No variant
/// holds a path, query, userinfo, header or body.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HttpRefusal {
    /// Not a URL this module accepts.
    #[error("invalid url: {reason}")]
    InvalidUrl {
        /// What is wrong.
        reason: String,
    },
    /// A scheme other than `http` or `https`.
    #[error("scheme {scheme:?} is not http or https")]
    Scheme {
        /// The scheme (cut at 16 bytes).
        scheme: String,
    },
    /// `user:password@` in the URL.
    #[error("url for {host:?} carries userinfo (user:password@); send credentials in a header")]
    Userinfo {
        /// What follows the `@`.
        host: String,
    },
    /// An IPv4 address written other than as dotted decimal.
    #[error("host {host:?} is an IPv4 address in a non-canonical form (write {canonical})")]
    IpLiteral {
        /// The host as written.
        host: String,
        /// The same address in dotted decimal.
        canonical: String,
    },
    /// No grant covers scheme, host and port.
    #[error("{host} is not granted (needs {needs})")]
    NotGranted {
        /// `scheme://host:port`.
        host: String,
        /// The capability that would allow it.
        needs: String,
    },
    /// The host is or resolves to a non-public address no grant names.
    #[error(
        "host {host:?} resolves to {addr}, a {why}; refused (needs {needs} to allow that address)"
    )]
    PrivateAddress {
        /// The host as in the URL.
        host: String,
        /// The refused address.
        addr: IpAddr,
        /// Its class and range.
        why: ranges::Forbidden,
        /// The grant naming the address that would allow it.
        needs: String,
    },
    /// As [`HttpRefusal::PrivateAddress`], for a cloud metadata address.
    #[error(
        "host {host:?} resolves to {addr}, a {why}; refused (needs {needs} to allow that address)"
    )]
    Metadata {
        /// The host as in the URL.
        host: String,
        /// The refused address.
        addr: IpAddr,
        /// Its class and range.
        why: ranges::Forbidden,
        /// The grant naming the address that would allow it.
        needs: String,
    },
    /// The name did not resolve, or resolved to nothing.
    #[error("host {host:?} did not resolve: {reason}")]
    Resolve {
        /// The name.
        host: String,
        /// The resolver's error.
        reason: String,
    },
    /// A redirect whose target is refused.
    #[error("redirect to {to} refused: {cause}")]
    Redirect {
        /// `scheme://host:port` of the target, or `a bad location`.
        to: String,
        /// Why the target is refused.
        cause: Box<HttpRefusal>,
    },
    /// More redirects than [`HttpLimits::max_redirects`].
    #[error("more than {max} redirects")]
    TooManyRedirects {
        /// The limit.
        max: u32,
    },
    /// A body larger than its cap.
    #[error("{what} is larger than {limit} bytes")]
    TooLarge {
        /// `request body` or `response body`.
        what: &'static str,
        /// The cap.
        limit: u64,
    },
    /// A step took longer than the timeout.
    #[error("{what} took longer than {limit:?}")]
    Timeout {
        /// What timed out (`name resolution`, `request`).
        what: &'static str,
        /// The limit.
        limit: Duration,
    },
}

impl HttpRefusal {
    /// The stable reason code: `http.invalid-url`, `http.scheme`, `http.userinfo`,
    /// `http.ip-literal`, `http.not-granted`, `http.private-address`, `http.metadata`,
    /// `http.resolve`, `http.redirect`, `http.too-large`, `http.timeout`.
    pub fn code(&self) -> &'static str {
        match self {
            HttpRefusal::InvalidUrl { .. } => "http.invalid-url",
            HttpRefusal::Scheme { .. } => "http.scheme",
            HttpRefusal::Userinfo { .. } => "http.userinfo",
            HttpRefusal::IpLiteral { .. } => "http.ip-literal",
            HttpRefusal::NotGranted { .. } => "http.not-granted",
            HttpRefusal::PrivateAddress { .. } => "http.private-address",
            HttpRefusal::Metadata { .. } => "http.metadata",
            HttpRefusal::Resolve { .. } => "http.resolve",
            HttpRefusal::Redirect { .. } | HttpRefusal::TooManyRedirects { .. } => "http.redirect",
            HttpRefusal::TooLarge { .. } => "http.too-large",
            HttpRefusal::Timeout { .. } => "http.timeout",
        }
    }

    /// The refusal behind a redirect refusal, or this one.
    pub fn root_cause(&self) -> &HttpRefusal {
        match self {
            HttpRefusal::Redirect { cause, .. } => cause.root_cause(),
            other => other,
        }
    }
}

/// Longest method kept in an audit entry.
const MAX_METHOD_LEN: usize = 16;

/// The audit record of one outbound request: what the host writes, and all it writes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpAuditEntry {
    /// The method (an HTTP token of at most 16 bytes; anything else is recorded as `?`).
    pub method: String,
    /// `scheme://host:port` only: no path, query, fragment or userinfo.
    pub host: String,
    /// The final response status; `None` if there was none (refused, failed, timed out).
    pub status: Option<u16>,
    /// Response body bytes received.
    pub bytes_in: u64,
    /// Request body bytes sent.
    pub bytes_out: u64,
    /// The refusal code, if the request was refused or cut short.
    pub refusal: Option<&'static str>,
}

impl HttpAuditEntry {
    /// An entry for `method` to `target`, with no status or bytes yet.
    pub fn new(method: &str, target: &Target) -> HttpAuditEntry {
        HttpAuditEntry::for_origin(method, target.origin())
    }

    /// An entry for `method` to `origin` (`scheme://host:port`, or a placeholder), for a
    /// request refused before its URL became a [`Target`]. The caller must not pass a path,
    /// query or userinfo.
    pub fn for_origin(method: &str, origin: String) -> HttpAuditEntry {
        let token = !method.is_empty()
            && method.len() <= MAX_METHOD_LEN
            && method
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b));
        HttpAuditEntry {
            method: if token { method.to_owned() } else { "?".into() },
            host: origin,
            status: None,
            bytes_in: 0,
            bytes_out: 0,
            refusal: None,
        }
    }

    /// One line for the audit log's detail column, e.g.
    /// `GET https://api.example.com:443 status 200, 512 bytes in, 31 bytes out`.
    pub fn detail(&self) -> String {
        self.to_string()
    }
}

impl fmt::Display for HttpAuditEntry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {} ", self.method, self.host)?;
        match self.status {
            Some(s) => write!(f, "status {s}")?,
            None => f.write_str("no status")?,
        }
        write!(
            f,
            ", {} bytes in, {} bytes out",
            self.bytes_in, self.bytes_out
        )?;
        if let Some(code) = self.refusal {
            write!(f, ", refused {code}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests;
