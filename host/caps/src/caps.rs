//! Capabilities: the one string grammar that manifests, the policy file, the CLI and the audit log
//! use, parsed once into [`Capability`] values and compiled into a [`GrantSet`] whose
//! [`GrantSet::check`] decides each use of a capability.
//!
//! **Architecture invariant:** this module is pure: no wasmtime, no I/O, no async. The host
//! functions that enforce grants hand it a [`Request`] and act on the [`Decision`]. That keeps
//! the grammar unit-tested with tables and property tests.
//!
//! # Grammar
//!
//! ```text
//! messaging.publish:<subject-pattern>     messaging.subscribe:<subject-pattern>
//! messaging.request:<subject-pattern>     market.read:<symbol-pattern>
//! orders.place:<symbol-pattern>[;max_notional=<decimal>][;max_qty=<decimal>]
//!                              [;max_orders_per_min=<u32>][;max_open_orders=<u32>]
//! orders.cancel:<symbol-pattern>          tools.call:<name-pattern>       tools.register
//! http.outbound:<scheme>://<host-pattern>[:<port>]
//! fs.read:<host-dir>  fs.write:<host-dir>  env:<NAME>
//! state, log                              (always granted; listing them is allowed)
//! ```
//!
//! Parsing is strict and produces exactly one canonical string per capability: `Display` writes
//! it and `parse(display(c)) == c`. Input is never trimmed, lowercased or otherwise repaired,
//! except that IPv6 hosts and decimals are written in their shortest form.
//!
//! | part | accepted | why |
//! |---|---|---|
//! | the whole string | printable ASCII without spaces (`!`..=`~`), checked before anything else | a grant must read as what it is: no bidi override, zero-width space, BOM or control character can make two grants look alike in `grants list` or the audit |
//! | subject pattern | tokens separated by `.`; each token is 1+ bytes of printable ASCII (`!`..=`~`) other than `.`, `*`, `>`, or exactly `*` (one token) or `>` (one or more tokens, last token only); at most 256 bytes and 32 tokens | NATS semantics, so the in-process bus and NATS agree; wildcards only as whole tokens so `a*` can never be read two ways; the size caps bound the cost of a check |
//! | subject (publish, request) | a subject pattern without `*` or `>` | a message goes to one concrete subject |
//! | subject (subscribe request) | a subject pattern | a subscription may use wildcards; it is allowed only if a grant covers *every* subject it can match (grant `md.>` covers `md.*.BTC`, grant `md.*` does not cover `md.>`) |
//! | symbol pattern | 1–64 of `A-Z 0-9 - _ /` plus `*` (any run of characters, possibly empty), no `**` | venue symbols are upper case (`BTC-USDT`, `ETH/USD`); one glob character is enough for `BTC-*` and `*`; no `**` so the canonical form is unique |
//! | name pattern (tools) | 1–64 of `a-z 0-9 -` plus `*` as for symbols | the same alphabet as plugin names (`manifest::validate_name`) |
//! | order limits | `;key=value` after the symbol pattern, any order, each at most once; `max_notional`, `max_qty`: decimal `D+[.D+]`, positive; `max_orders_per_min`, `max_open_orders`: `u32`, positive; written back in the order of the grammar, decimals without trailing zeros | money is `rust_decimal::Decimal`, never `f64`; a zero or negative limit is a mistake, not a way to deny (deny by not granting) |
//! | http scheme | `http` or `https` | nothing else leaves the host |
//! | http host pattern | a lowercase DNS name (labels 1–63 of `a-z 0-9 -`, not starting or ending with `-`, at most 253 bytes, last label not all digits), an IPv4 address, an IPv6 address in `[...]`, or `*.` + DNS name | `*.example.com` matches `a.example.com` and `a.b.example.com` but not `example.com`, so granting subdomains never grants the apex by accident; requests are compared case-insensitively because DNS is |
//! | http port | `1`–`65535`, no leading zeros; absent means the scheme's default port (80, 443) | a grant of `http://127.0.0.1` must not open every local service; another port is granted by naming it; the request always carries the port it will connect to |
//! | fs dir | absolute, at most 1024 bytes, no empty, `.` or `..` components, no trailing `/` (except `/` itself), no whitespace or control characters | a request path is inside a dir component-wise (`/data` covers `/data/x`, not `/database`), which is only sound on normalised paths; `fs.write` implies `fs.read` of the same dir; manifests refuse whitespace in capability strings |
//! | fs request path | absolute, no `.` or `..` components, no control characters (repeated or trailing `/` are ignored) | `..` would escape the granted dir; the host resolves paths before asking |
//! | env NAME | `[A-Z_][A-Z0-9_]*`, at most 128 bytes | the portable spelling of environment variables |
//!
//! # Checking
//!
//! [`GrantSet::new`] compiles the grants once: subject patterns are split into tokens, symbol and
//! name globs into their literal pieces. [`GrantSet::check`] validates the request (the guest
//! controls it) and scans the grants of that kind; it does not allocate unless it denies, when it
//! names what the operator would have to grant (`messaging.publish:orders.new`,
//! `orders.place:BTC-USDT`, or for a limit `orders.place:BTC-USDT max_qty 0.5 < 2`). A malformed
//! request is [`Decision::Invalid`] rather than denied, because no grant could allow it.
//!
//! An agent's private subjects (`agent.<name>.…`: its inbox, its order events) are
//! subscribed to only under a grant that names that agent: a subscribe request for
//! `agent.pong.inbox` is covered by `agent.pong.inbox` or `agent.pong.>`, never by
//! `agent.*.inbox` or `>`, so reading another agent's inbox is always an explicit decision.
//!
//! Several grants may cover one request; it is allowed if any one of them allows it. For
//! `orders.place` that means one grant must cover the symbol *and* allow the quantity and
//! notional; its per-minute and open-order limits, which need state this module does not keep,
//! are returned by [`GrantSet::order_limits`] for the caller to enforce.

use colony_model::glob::Glob;
use colony_model::symbol::is_symbol_char;
use rust_decimal::Decimal;
use std::fmt::{self, Write as _};
use std::net::{Ipv4Addr, Ipv6Addr};
use std::str::FromStr;

/// Subjects starting with this are private to one agent (`agent.<name>.…`): only a
/// subscription whose pattern names that agent sees them, and only a subscribe grant that
/// names it allows such a subscription ([`GrantSet::check`]).
pub const AGENT_PREFIX: &str = "agent.";

/// Longest subject pattern, in bytes.
pub(crate) const MAX_SUBJECT_LEN: usize = 256;
/// Most tokens in a subject pattern.
pub(crate) const MAX_SUBJECT_TOKENS: usize = 32;
/// Longest symbol or symbol pattern, in bytes.
pub(crate) use colony_model::symbol::MAX_SYMBOL_LEN;
/// Longest tool name or name pattern, in bytes.
pub(crate) const MAX_NAME_LEN: usize = 64;
/// Longest fs dir or requested path, in bytes.
pub(crate) const MAX_PATH_LEN: usize = 1024;
/// Longest environment variable name, in bytes.
pub(crate) const MAX_ENV_LEN: usize = 128;
/// Longest capability string the parser looks at, in bytes.
pub(crate) const MAX_CAPABILITY_LEN: usize = 2048;

/// Longest decimal literal in an order limit (28 significant digits, a point, some zeros).
const MAX_DECIMAL_LEN: usize = 40;
/// How much of a bad input a [`CapError`] quotes.
const QUOTE_LEN: usize = 80;

const KINDS: &str = "messaging.publish, messaging.subscribe, messaging.request, market.read, \
                     orders.place, orders.cancel, tools.call, tools.register, http.outbound, \
                     fs.read, fs.write, env, state, log";

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
pub struct SubjectPattern(String);

/// A validated symbol pattern such as `BTC-*` (see the module doc).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SymbolPattern(String);

/// A validated tool name pattern such as `price-*` (see the module doc).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct NamePattern(String);

/// A validated, normalised absolute host directory.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct FsDir(String);

/// A validated environment variable name.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct EnvName(String);

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
    max_notional: Option<Decimal>,
    max_qty: Option<Decimal>,
    max_orders_per_min: Option<u32>,
    max_open_orders: Option<u32>,
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

fn parse(s: &str) -> Result<Capability, String> {
    if s.len() > MAX_CAPABILITY_LEN {
        return Err(format!("longer than {MAX_CAPABILITY_LEN} bytes"));
    }
    // One rule for every kind, before any other: what an operator reads in `grants list` and
    // the audit is exactly what is granted (no bidi overrides, zero-width characters, BOMs,
    // control characters or spaces that make one grant look like another or like two).
    if let Some(c) = s.chars().find(|c| !c.is_ascii_graphic()) {
        return Err(format!(
            "character {} is not allowed (capabilities are printable ASCII without spaces)",
            c.escape_unicode()
        ));
    }
    let (kind, arg) = match s.split_once(':') {
        Some((k, a)) => (k, Some(a)),
        None => (s, None),
    };
    let needs_arg = |what: &str| format!("{kind} needs {what} after ':'");
    Ok(match (kind, arg) {
        ("state", None) => Capability::State,
        ("log", None) => Capability::Log,
        ("tools.register", None) => Capability::ToolsRegister,
        ("state" | "log" | "tools.register", Some(_)) => {
            return Err(format!("{kind} takes no argument"));
        }
        ("messaging.publish" | "messaging.subscribe" | "messaging.request", None) => {
            return Err(needs_arg("a subject pattern"));
        }
        ("market.read" | "orders.place" | "orders.cancel", None) => {
            return Err(needs_arg("a symbol pattern"));
        }
        ("tools.call", None) => return Err(needs_arg("a name pattern")),
        ("http.outbound", None) => return Err(needs_arg("<scheme>://<host>[:<port>]")),
        ("fs.read" | "fs.write", None) => return Err(needs_arg("an absolute directory")),
        ("env", None) => return Err(needs_arg("a variable name")),
        ("messaging.publish", Some(a)) => Capability::MessagingPublish(subject_pattern(a)?),
        ("messaging.subscribe", Some(a)) => Capability::MessagingSubscribe(subject_pattern(a)?),
        ("messaging.request", Some(a)) => Capability::MessagingRequest(subject_pattern(a)?),
        ("market.read", Some(a)) => Capability::MarketRead(symbol_pattern(a)?),
        ("orders.cancel", Some(a)) => Capability::OrdersCancel(symbol_pattern(a)?),
        ("orders.place", Some(a)) => {
            let mut parts = a.split(';');
            let symbols = symbol_pattern(parts.next().unwrap_or(""))?;
            let limits = order_limits(parts)?;
            Capability::OrdersPlace { symbols, limits }
        }
        ("tools.call", Some(a)) => {
            check_name(a, true)?;
            Capability::ToolsCall(NamePattern(a.to_owned()))
        }
        ("http.outbound", Some(a)) => Capability::HttpOutbound(http_target(a)?),
        ("fs.read", Some(a)) => Capability::FsRead(fs_dir(a)?),
        ("fs.write", Some(a)) => Capability::FsWrite(fs_dir(a)?),
        ("env", Some(a)) => {
            check_env(a)?;
            Capability::Env(EnvName(a.to_owned()))
        }
        _ => return Err(format!("unknown kind {kind:?} (expected one of {KINDS})")),
    })
}

/// Parses a subject pattern (wildcards allowed), as in a `messaging.*` grant or a subscription;
/// the error says what is wrong with it.
pub fn subject_pattern(s: &str) -> Result<SubjectPattern, String> {
    check_subject(s, true)?;
    Ok(SubjectPattern(s.to_owned()))
}

fn symbol_pattern(s: &str) -> Result<SymbolPattern, String> {
    check_symbol(s, true)?;
    Ok(SymbolPattern(s.to_owned()))
}

/// Validates a subject (`wildcards == false`) or subject pattern. Allocates only on error.
/// The next `.`-separated token of `s` from `*pos`, advancing `*pos` past it; `None` when
/// the subject is used up. A plain byte loop: subjects are short, and this is on the path of
/// every publish.
#[inline]
fn next_token<'a>(s: &'a [u8], pos: &mut usize) -> Option<&'a [u8]> {
    if *pos > s.len() {
        return None;
    }
    let start = *pos;
    let mut end = start;
    while end < s.len() && s[end] != b'.' {
        end += 1;
    }
    *pos = end + 1;
    Some(&s[start..end])
}

/// Whether `s` is a valid subject (or pattern, with `wildcards`), without building messages.
#[inline]
fn subject_is_valid(s: &str, wildcards: bool) -> bool {
    let b = s.as_bytes();
    if b.is_empty() || b.len() > MAX_SUBJECT_LEN {
        return false;
    }
    let (mut pos, mut n) = (0, 0);
    while let Some(tok) = next_token(b, &mut pos) {
        n += 1;
        let ok = match tok {
            [] => false,
            b"*" => wildcards,
            b">" => wildcards && pos > b.len(),
            _ => tok
                .iter()
                .all(|&c| matches!(c, b'!'..=b'~') && c != b'*' && c != b'>'),
        };
        if !ok || n > MAX_SUBJECT_TOKENS {
            return false;
        }
    }
    true
}

/// Checks a subject (`wildcards == false`) or a subject pattern; the error says what is wrong
/// with it. Allocates only on error.
pub fn check_subject(s: &str, wildcards: bool) -> Result<(), String> {
    if subject_is_valid(s, wildcards) {
        return Ok(());
    }
    let what = if wildcards {
        "subject pattern"
    } else {
        "subject"
    };
    if s.is_empty() {
        return Err(format!("{what} is empty"));
    }
    if s.len() > MAX_SUBJECT_LEN {
        return Err(format!("{what} is longer than {MAX_SUBJECT_LEN} bytes"));
    }
    let mut start = 0;
    let mut tokens = s.split('.').peekable();
    let mut n = 0;
    while let Some(tok) = tokens.next() {
        n += 1;
        if n > MAX_SUBJECT_TOKENS {
            return Err(format!(
                "{what} {s:?} has more than {MAX_SUBJECT_TOKENS} tokens"
            ));
        }
        match tok {
            "" => return Err(format!("{what} {s:?}: token {n} is empty")),
            "*" | ">" if !wildcards => {
                return Err(format!(
                    "{what} {s:?}: wildcard '{tok}' (token {n}) is not allowed here"
                ));
            }
            ">" if tokens.peek().is_some() => {
                return Err(format!(
                    "{what} {s:?}: '>' must be the last token (found at token {n})"
                ));
            }
            "*" | ">" => {}
            // Bytes first (the hot path: every publish is checked); decode only to report.
            _ if tok
                .bytes()
                .all(|b| matches!(b, b'!'..=b'~') && b != b'*' && b != b'>') => {}
            _ => {
                if let Some((i, c)) = tok
                    .char_indices()
                    .find(|&(_, c)| !matches!(c, '!'..='~') || c == '*' || c == '>')
                {
                    return Err(format!(
                        "{what} {s:?}: invalid character {c:?} at byte {} (tokens are printable \
                         ASCII without whitespace; '*' and '>' only as whole tokens)",
                        start + i
                    ));
                }
            }
        }
        start += tok.len() + 1;
    }
    Ok(())
}

/// Validates a symbol or tool name (`glob == false`) or a pattern of them. Allocates only on
/// error.
fn check_glob(
    s: &str,
    glob: bool,
    what: &str,
    max: usize,
    ok: fn(char) -> bool,
    expected: &str,
) -> Result<(), String> {
    let pattern = if glob { " pattern" } else { "" };
    if s.is_empty() {
        return Err(format!("{what}{pattern} is empty"));
    }
    if s.len() > max {
        return Err(format!("{what}{pattern} {s:?} is longer than {max} bytes"));
    }
    for (i, c) in s.char_indices() {
        if c == '*' && glob {
            if s[i + 1..].starts_with('*') {
                return Err(format!("{what}{pattern} {s:?}: repeated '*' at byte {i}"));
            }
        } else if !ok(c) {
            let star = if glob { " or '*'" } else { "" };
            return Err(format!(
                "{what}{pattern} {s:?}: invalid character {c:?} at byte {i} (expected {expected}{star})"
            ));
        }
    }
    Ok(())
}

fn check_symbol(s: &str, glob: bool) -> Result<(), String> {
    check_glob(
        s,
        glob,
        "symbol",
        MAX_SYMBOL_LEN,
        is_symbol_char,
        "A-Z, 0-9, '-', '_', '/'",
    )
}

fn check_name(s: &str, glob: bool) -> Result<(), String> {
    let ok = |c: char| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-';
    check_glob(s, glob, "tool name", MAX_NAME_LEN, ok, "a-z, 0-9, '-'")
}

fn check_env(s: &str) -> Result<(), String> {
    if s.is_empty() {
        return Err("variable name is empty".into());
    }
    if s.len() > MAX_ENV_LEN {
        return Err(format!("variable name is longer than {MAX_ENV_LEN} bytes"));
    }
    for (i, c) in s.char_indices() {
        let ok = c.is_ascii_uppercase() || c == '_' || (i > 0 && c.is_ascii_digit());
        if !ok {
            return Err(format!(
                "variable name {s:?}: invalid character {c:?} at byte {i} (expected [A-Z_][A-Z0-9_]*)"
            ));
        }
    }
    Ok(())
}

fn order_limits<'a>(opts: impl Iterator<Item = &'a str>) -> Result<OrderLimits, String> {
    let mut l = OrderLimits::default();
    for opt in opts {
        let Some((key, value)) = opt.split_once('=') else {
            return Err(if opt.is_empty() {
                "empty order limit (stray ';')".into()
            } else {
                format!("order limit {opt:?} is not key=value")
            });
        };
        let duplicate = match key {
            "max_notional" => l
                .max_notional
                .replace(positive_decimal(key, value)?)
                .is_some(),
            "max_qty" => l.max_qty.replace(positive_decimal(key, value)?).is_some(),
            "max_orders_per_min" => l
                .max_orders_per_min
                .replace(positive_u32(key, value)?)
                .is_some(),
            "max_open_orders" => l
                .max_open_orders
                .replace(positive_u32(key, value)?)
                .is_some(),
            _ => {
                return Err(format!(
                    "unknown order limit {key:?} (expected max_notional, max_qty, \
                     max_orders_per_min or max_open_orders)"
                ));
            }
        };
        if duplicate {
            return Err(format!("order limit {key} is given twice"));
        }
    }
    Ok(l)
}

fn positive_decimal(key: &str, v: &str) -> Result<Decimal, String> {
    let (int, frac) = match v.split_once('.') {
        Some((i, f)) => (i, Some(f)),
        None => (v, None),
    };
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    if v.len() > MAX_DECIMAL_LEN || !digits(int) || !frac.is_none_or(digits) {
        return Err(format!(
            "{key} {v:?} is not a decimal (digits with an optional '.' and digits)"
        ));
    }
    let d = Decimal::from_str_exact(v).map_err(|_| format!("{key} {v:?} is out of range"))?;
    if d.is_zero() {
        return Err(format!("{key} must be positive"));
    }
    Ok(d.normalize())
}

fn positive_u32(key: &str, v: &str) -> Result<u32, String> {
    if v.is_empty() || !v.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!("{key} {v:?} is not a whole number"));
    }
    match v.parse::<u32>() {
        Ok(0) => Err(format!("{key} must be positive")),
        Ok(n) => Ok(n),
        Err(_) => Err(format!(
            "{key} {v:?} is out of range (at most {})",
            u32::MAX
        )),
    }
}

fn http_target(s: &str) -> Result<HttpTarget, String> {
    let Some((scheme, rest)) = s.split_once("://") else {
        return Err(format!("{s:?} is not <scheme>://<host>[:<port>]"));
    };
    let scheme = match scheme {
        "http" => Scheme::Http,
        "https" => Scheme::Https,
        _ => return Err(format!("scheme {scheme:?} is not http or https")),
    };
    if let Some(i) = rest.find(['/', '?', '#']) {
        return Err(format!(
            "{s:?} has a path at byte {} (grant a host, not a URL)",
            i + s.len() - rest.len()
        ));
    }
    let (host, port) = if let Some(v6) = rest.strip_prefix('[') {
        let Some((addr, after)) = v6.split_once(']') else {
            return Err(format!("host {rest:?} has no closing ']'"));
        };
        let addr: Ipv6Addr = addr
            .parse()
            .map_err(|_| format!("host {rest:?} is not an IPv6 address"))?;
        let port = match after {
            "" => None,
            _ => match after.strip_prefix(':') {
                Some(p) => Some(port(p)?),
                None => return Err(format!("unexpected {after:?} after the IPv6 address")),
            },
        };
        (HostPattern::Ipv6(addr), port)
    } else {
        let (host, port) = match rest.rsplit_once(':') {
            Some((h, p)) => (h, Some(port(p)?)),
            None => (rest, None),
        };
        (host_pattern(host)?, port)
    };
    Ok(HttpTarget { scheme, host, port })
}

fn port(p: &str) -> Result<u16, String> {
    let bad = || format!("port {p:?} is not a number from 1 to 65535 without leading zeros");
    if p.is_empty() || p.starts_with('0') || !p.bytes().all(|b| b.is_ascii_digit()) {
        return Err(bad());
    }
    p.parse::<u16>().map_err(|_| bad())
}

fn host_pattern(h: &str) -> Result<HostPattern, String> {
    if let Some(suffix) = h.strip_prefix("*.") {
        check_host(suffix, false).map_err(|e| format!("host pattern {h:?}: {e}"))?;
        return match classify_host(suffix) {
            HostKind::Name => Ok(HostPattern::Subdomains(suffix.to_owned())),
            HostKind::Ipv4 => Err(format!(
                "host pattern {h:?}: '*.' needs a DNS name, not an address"
            )),
        };
    }
    if let Some(i) = h.find('*') {
        return Err(format!(
            "host pattern {h:?}: '*' at byte {i} (only a leading '*.' is allowed)"
        ));
    }
    check_host(h, false).map_err(|e| format!("host {h:?}: {e}"))?;
    Ok(match classify_host(h) {
        HostKind::Name => HostPattern::Name(h.to_owned()),
        HostKind::Ipv4 => match h.parse() {
            Ok(a) => HostPattern::Ipv4(a),
            Err(_) => {
                return Err(format!(
                    "host {h:?} is not a valid IPv4 address or DNS name"
                ));
            }
        },
    })
}

enum HostKind {
    Name,
    Ipv4,
}

/// A host whose last label is all digits can only be an IPv4 address.
fn classify_host(h: &str) -> HostKind {
    let last = h.rsplit('.').next().unwrap_or("");
    if last.bytes().all(|b| b.is_ascii_digit()) {
        HostKind::Ipv4
    } else {
        HostKind::Name
    }
}

/// Validates a DNS name or dotted IPv4 text; `any_case` accepts upper case (for requests).
/// Allocates only on error.
fn check_host(h: &str, any_case: bool) -> Result<(), String> {
    if h.is_empty() {
        return Err("is empty".into());
    }
    if h.len() > 253 {
        return Err("is longer than 253 bytes".into());
    }
    let mut start = 0;
    for (n, label) in h.split('.').enumerate() {
        if label.is_empty() {
            return Err(format!("label {} is empty", n + 1));
        }
        if label.len() > 63 {
            return Err(format!("label {} is longer than 63 bytes", n + 1));
        }
        if label.starts_with('-') || label.ends_with('-') {
            return Err(format!("label {} starts or ends with '-'", n + 1));
        }
        for (i, c) in label.char_indices() {
            if c.is_ascii_uppercase() && !any_case {
                return Err(format!("must be lowercase (byte {})", start + i));
            }
            if !(c.is_ascii_alphanumeric() || c == '-') {
                return Err(format!(
                    "invalid character {c:?} at byte {} (expected a-z, 0-9, '-', '.')",
                    start + i
                ));
            }
        }
        start += label.len() + 1;
    }
    Ok(())
}

fn fs_dir(s: &str) -> Result<FsDir, String> {
    check_path(s, true)?;
    Ok(FsDir(s.to_owned()))
}

/// Validates a granted dir (`strict`: normalised) or a requested path. Allocates only on error.
fn check_path(s: &str, strict: bool) -> Result<(), String> {
    let what = if strict { "dir" } else { "path" };
    if !s.starts_with('/') {
        return Err(format!("{what} {s:?} is not absolute"));
    }
    if s.len() > MAX_PATH_LEN {
        return Err(format!("{what} is longer than {MAX_PATH_LEN} bytes"));
    }
    if let Some((i, c)) = s
        .char_indices()
        .find(|&(_, c)| c.is_control() || (strict && c.is_whitespace()))
    {
        let allowed = if strict {
            "whitespace or control"
        } else {
            "control"
        };
        return Err(format!(
            "{what} {s:?}: {allowed} character {c:?} at byte {i} is not allowed"
        ));
    }
    if strict && s.len() > 1 && s.ends_with('/') {
        return Err(format!("dir {s:?} must not end with '/'"));
    }
    if s == "/" {
        return Ok(());
    }
    for (n, comp) in s[1..].split('/').enumerate() {
        match comp {
            "" if strict => return Err(format!("dir {s:?}: component {} is empty ('//')", n + 1)),
            "." | ".." => {
                return Err(format!(
                    "{what} {s:?}: component {} is {comp:?} (paths must be normalised)",
                    n + 1
                ));
            }
            _ => {}
        }
    }
    Ok(())
}

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

fn write_lower(f: &mut fmt::Formatter<'_>, s: &str) -> fmt::Result {
    s.chars()
        .try_for_each(|c| f.write_char(c.to_ascii_lowercase()))
}

fn write_path(f: &mut fmt::Formatter<'_>, kind: &str, path: &str) -> fmt::Result {
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

fn components(path: &str) -> impl Iterator<Item = &str> {
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

/// One token of a compiled subject pattern.
#[derive(Debug, Clone)]
enum Token {
    Literal(Box<str>),
    /// `*`: exactly one token.
    One,
    /// `>`: one or more tokens, always last.
    Tail,
}

/// A subject pattern compiled into tokens once, so matching does not allocate (the bus's
/// subscription table and every `messaging.*` check use it).
#[derive(Debug, Clone)]
pub struct Subject(Box<[Token]>);

impl Subject {
    /// Compiles a validated pattern.
    pub fn compile(p: &SubjectPattern) -> Self {
        Subject(
            p.0.split('.')
                .map(|t| match t {
                    "*" => Token::One,
                    ">" => Token::Tail,
                    _ => Token::Literal(t.into()),
                })
                .collect(),
        )
    }

    /// Whether the pattern names one agent: `agent.<literal name>` and possibly more tokens.
    pub fn names_agent(&self) -> bool {
        matches!(&self.0[..], [Token::Literal(a), Token::Literal(_), ..] if &**a == "agent")
    }

    /// Whether this pattern matches every subject that `request` (a valid subject or subject
    /// pattern) matches. For a concrete subject that is ordinary matching.
    pub fn covers(&self, request: &str) -> bool {
        let req = request.as_bytes();
        let mut pos = 0;
        for g in self.0.iter() {
            match (g, next_token(req, &mut pos)) {
                (Token::Tail, r) => return r.is_some(),
                (_, None) => return false,
                // A request `>` can be longer than one token; only a grant `>` covers that.
                (Token::One, Some(r)) => {
                    if r == b">" {
                        return false;
                    }
                }
                // Literals never contain '*' or '>', so a wildcard request token fails here.
                (Token::Literal(l), Some(r)) => {
                    if l.as_bytes() != r {
                        return false;
                    }
                }
            }
        }
        next_token(req, &mut pos).is_none()
    }
}

/// Whether a (valid) subject or pattern names one agent: `agent.<name>…` with a literal name.
fn names_agent(subject: &str) -> bool {
    subject
        .strip_prefix(AGENT_PREFIX)
        .and_then(|rest| rest.split('.').next())
        .is_some_and(|name| name != "*" && name != ">")
}

/// The capabilities granted to one plugin, compiled for [`GrantSet::check`]. `state` and `log`
/// are always allowed and need no entry.
#[derive(Debug, Clone, Default)]
pub struct GrantSet {
    caps: Vec<Capability>,
    publish: Vec<Subject>,
    subscribe: Vec<Subject>,
    request: Vec<Subject>,
    market_read: Vec<Glob>,
    orders_place: Vec<(Glob, OrderLimits)>,
    orders_cancel: Vec<Glob>,
    tools_call: Vec<Glob>,
    tools_register: bool,
    http: Vec<HttpTarget>,
    fs: Vec<FsGrant>,
    env: Vec<EnvName>,
}

impl FromIterator<Capability> for GrantSet {
    fn from_iter<I: IntoIterator<Item = Capability>>(caps: I) -> Self {
        GrantSet::new(caps)
    }
}

impl GrantSet {
    /// Compiles a list of grants (duplicates are kept once, in first-seen order).
    pub fn new(caps: impl IntoIterator<Item = Capability>) -> Self {
        let mut unique: Vec<Capability> = Vec::new();
        for c in caps {
            if !unique.contains(&c) {
                unique.push(c);
            }
        }
        Self::compile(unique)
    }

    /// The agent-wide order limits its `orders.place` grants carry, for the risk engine:
    /// `(max_orders_per_min, max_open_orders)`. A grant without a limit allows any number, so
    /// the loosest grant decides; `None` when any grant has no such limit (or there is none).
    pub fn order_rate_limits(&self) -> (Option<u32>, Option<u32>) {
        let loosest = |f: fn(&OrderLimits) -> Option<u32>| {
            let mut best = None;
            for (_, l) in &self.orders_place {
                best = Some(best.unwrap_or(0).max(f(l)?));
            }
            best
        };
        (
            loosest(OrderLimits::max_orders_per_min),
            loosest(OrderLimits::max_open_orders),
        )
    }

    fn compile(caps: Vec<Capability>) -> Self {
        let mut g = GrantSet::default();
        for c in &caps {
            match c {
                Capability::MessagingPublish(p) => g.publish.push(Subject::compile(p)),
                Capability::MessagingSubscribe(p) => g.subscribe.push(Subject::compile(p)),
                Capability::MessagingRequest(p) => g.request.push(Subject::compile(p)),
                Capability::MarketRead(p) => g.market_read.push(Glob::compile(&p.0)),
                Capability::OrdersPlace { symbols, limits } => {
                    g.orders_place
                        .push((Glob::compile(&symbols.0), limits.clone()));
                }
                Capability::OrdersCancel(p) => g.orders_cancel.push(Glob::compile(&p.0)),
                Capability::ToolsCall(p) => g.tools_call.push(Glob::compile(&p.0)),
                Capability::ToolsRegister => g.tools_register = true,
                Capability::HttpOutbound(t) => g.http.push(t.clone()),
                Capability::FsRead(d) | Capability::FsWrite(d) => {
                    let writable = matches!(c, Capability::FsWrite(_));
                    match g.fs.iter_mut().find(|f| f.dir == *d) {
                        Some(f) => f.writable |= writable,
                        None => g.fs.push(FsGrant {
                            dir: d.clone(),
                            writable,
                        }),
                    }
                }
                Capability::Env(n) => g.env.push(n.clone()),
                Capability::State | Capability::Log => {}
            }
        }
        g.caps = caps;
        g
    }

    /// The grants, deduplicated, in the order they were given.
    pub fn capabilities(&self) -> &[Capability] {
        &self.caps
    }

    /// Adds a grant; `false` if it was already there.
    pub fn grant(&mut self, cap: Capability) -> bool {
        if self.caps.contains(&cap) {
            return false;
        }
        let mut caps = std::mem::take(&mut self.caps);
        caps.push(cap);
        *self = Self::compile(caps);
        true
    }

    /// Removes the grant equal to `cap`; `false` if there was none. Broader grants that also
    /// cover what `cap` covers stay: revoking `market.read:BTC-USDT` does not narrow
    /// `market.read:*`.
    pub fn revoke(&mut self, cap: &Capability) -> bool {
        let Some(i) = self.caps.iter().position(|c| c == cap) else {
            return false;
        };
        let mut caps = std::mem::take(&mut self.caps);
        caps.remove(i);
        *self = Self::compile(caps);
        true
    }

    /// The `http.outbound` grants, in first-seen order.
    pub fn http_targets(&self) -> &[HttpTarget] {
        &self.http
    }

    /// The dirs to preopen, each once, writable if `fs.write` was granted for it.
    pub fn fs_dirs(&self) -> &[FsGrant] {
        &self.fs
    }

    /// The environment variables the plugin may read.
    pub fn env_names(&self) -> impl Iterator<Item = &str> {
        self.env.iter().map(EnvName::as_str)
    }

    /// The limits of the `orders.place` grant that allows this order (the first in grant order),
    /// so the caller can enforce `max_orders_per_min` and `max_open_orders`; `None` when
    /// [`GrantSet::check`] would not allow it.
    pub fn order_limits(
        &self,
        symbol: &str,
        qty: Decimal,
        notional: Decimal,
    ) -> Option<&OrderLimits> {
        self.orders_place
            .iter()
            .find(|(glob, l)| glob.matches(symbol) && limit_violation(l, qty, notional).is_none())
            .map(|(_, l)| l)
    }

    /// Decides one request. Allocates nothing when the answer is [`Decision::Allowed`].
    pub fn check(&self, req: &Request<'_>) -> Decision {
        let valid = match *req {
            Request::Publish { subject } | Request::Request { subject } => {
                check_subject(subject, false)
            }
            Request::Subscribe { subject } => check_subject(subject, true),
            Request::MarketRead { symbol } | Request::CancelOrder { symbol } => {
                check_symbol(symbol, false)
            }
            Request::PlaceOrder {
                symbol,
                qty,
                notional,
            } => check_symbol(symbol, false).and_then(|()| {
                if qty <= Decimal::ZERO {
                    Err(format!("order qty {qty} is not positive"))
                } else if notional < Decimal::ZERO {
                    Err(format!("order notional {notional} is negative"))
                } else {
                    Ok(())
                }
            }),
            Request::CallTool { name } => check_name(name, false),
            Request::RegisterTool => Ok(()),
            Request::Http { scheme, host, .. } => check_http_request(scheme, host),
            Request::FsRead { path } | Request::FsWrite { path } => check_path(path, false),
            Request::Env { name } => check_env(name),
        };
        if let Err(reason) = valid {
            return Decision::Invalid { reason };
        }
        let allowed = match *req {
            Request::Publish { subject } => self.publish.iter().any(|g| g.covers(subject)),
            Request::Subscribe { subject } => {
                let private = names_agent(subject);
                self.subscribe
                    .iter()
                    .any(|g| (!private || g.names_agent()) && g.covers(subject))
            }
            Request::Request { subject } => self.request.iter().any(|g| g.covers(subject)),
            Request::MarketRead { symbol } => self.market_read.iter().any(|g| g.matches(symbol)),
            Request::CancelOrder { symbol } => self.orders_cancel.iter().any(|g| g.matches(symbol)),
            Request::PlaceOrder {
                symbol,
                qty,
                notional,
            } => {
                if self.order_limits(symbol, qty, notional).is_some() {
                    return Decision::Allowed;
                }
                if let Some(needs) = self
                    .orders_place
                    .iter()
                    .find(|(g, _)| g.matches(symbol))
                    .and_then(|(_, l)| limit_violation(l, qty, notional))
                {
                    return Decision::Denied {
                        needs: format!("orders.place:{symbol} {needs}"),
                    };
                }
                false
            }
            Request::CallTool { name } => self.tools_call.iter().any(|g| g.matches(name)),
            Request::RegisterTool => self.tools_register,
            Request::Http { scheme, host, port } => {
                self.http.iter().any(|t| http_allows(t, scheme, host, port))
            }
            Request::FsRead { path } => self.fs.iter().any(|g| dir_covers(&g.dir.0, path)),
            Request::FsWrite { path } => self
                .fs
                .iter()
                .any(|g| g.writable && dir_covers(&g.dir.0, path)),
            Request::Env { name } => self.env.iter().any(|n| n.0 == name),
        };
        if allowed {
            Decision::Allowed
        } else {
            Decision::Denied {
                needs: req.to_string(),
            }
        }
    }
}

/// The first per-order limit the order breaks, as `max_qty 0.5 < 2`.
fn limit_violation(l: &OrderLimits, qty: Decimal, notional: Decimal) -> Option<String> {
    if let Some(max) = l.max_qty.filter(|m| qty > *m) {
        return Some(format!("max_qty {max} < {}", qty.normalize()));
    }
    if let Some(max) = l.max_notional.filter(|m| notional > *m) {
        return Some(format!("max_notional {max} < {}", notional.normalize()));
    }
    None
}

fn check_http_request(scheme: &str, host: &str) -> Result<(), String> {
    if !scheme.eq_ignore_ascii_case("http") && !scheme.eq_ignore_ascii_case("https") {
        return Err(format!("scheme {scheme:?} is not http or https"));
    }
    if let Some(v6) = host.strip_prefix('[') {
        return match v6.strip_suffix(']').map(str::parse::<Ipv6Addr>) {
            Some(Ok(_)) => Ok(()),
            _ => Err(format!("host {host:?} is not a bracketed IPv6 address")),
        };
    }
    check_host(host, true).map_err(|e| format!("host {host:?}: {e}"))
}

fn http_allows(t: &HttpTarget, scheme: &str, host: &str, port: u16) -> bool {
    if !scheme.eq_ignore_ascii_case(t.scheme.as_str())
        || t.port.unwrap_or(t.scheme.default_port()) != port
    {
        return false;
    }
    match &t.host {
        HostPattern::Name(n) => host.eq_ignore_ascii_case(n),
        HostPattern::Subdomains(suffix) => {
            // `host` is a validated name, so a longer host ending in `.suffix` has at least one
            // non-empty label before it.
            let Some(cut) = host.len().checked_sub(suffix.len() + 1) else {
                return false;
            };
            host.is_char_boundary(cut)
                && host[cut..].starts_with('.')
                && host[cut + 1..].eq_ignore_ascii_case(suffix)
                && cut > 0
        }
        HostPattern::Ipv4(a) => host.parse::<Ipv4Addr>().is_ok_and(|h| h == *a),
        HostPattern::Ipv6(a) => host
            .strip_prefix('[')
            .and_then(|h| h.strip_suffix(']'))
            .and_then(|h| h.parse::<Ipv6Addr>().ok())
            .is_some_and(|h| h == *a),
    }
}

/// Whether `path` (a valid request path) is `dir` or inside it, component by component.
fn dir_covers(dir: &str, path: &str) -> bool {
    let mut p = components(path);
    components(dir).all(|d| p.next() == Some(d))
}

#[cfg(test)]
mod tests {
    #[test]
    fn invisible_control_and_space_characters_are_refused_in_every_kind() {
        for bad in [
            "env:HOME\u{202e}",
            "env:\u{200b}HOME",
            "\u{feff}env:HOME",
            "log\n",
            "fs.read:/srv/a\u{7}",
            "fs.read:/srv/my data",
            "fs.read:/srv/donn\u{e9}es",
            "messaging.publish:a.\u{202d}b",
        ] {
            let e = bad.parse::<super::Capability>().unwrap_err().to_string();
            assert!(e.contains("is not allowed"), "{bad:?}: {e}");
            assert!(!e.contains('\n'), "{e}");
        }
    }

    use super::*;
    use proptest::prelude::*;

    fn cap(s: &str) -> Capability {
        match s.parse() {
            Ok(c) => c,
            Err(e) => panic!("{s:?} should parse: {e}"),
        }
    }

    fn grants(caps: &[&str]) -> GrantSet {
        caps.iter().map(|s| cap(s)).collect()
    }

    fn dec(s: &str) -> Decimal {
        match Decimal::from_str_exact(s) {
            Ok(d) => d,
            Err(e) => panic!("{s:?}: {e}"),
        }
    }

    /// (input, canonical form)
    const GOOD: &[(&str, &str)] = &[
        ("state", "state"),
        ("log", "log"),
        ("tools.register", "tools.register"),
        (
            "messaging.publish:orders.new",
            "messaging.publish:orders.new",
        ),
        (
            "messaging.subscribe:md.*.BTC",
            "messaging.subscribe:md.*.BTC",
        ),
        ("messaging.subscribe:>", "messaging.subscribe:>"),
        (
            "messaging.request:svc.price.>",
            "messaging.request:svc.price.>",
        ),
        (
            "messaging.publish:a-b_c:d;e!~",
            "messaging.publish:a-b_c:d;e!~",
        ),
        ("market.read:*", "market.read:*"),
        ("market.read:BTC-*", "market.read:BTC-*"),
        ("market.read:ETH/USD", "market.read:ETH/USD"),
        ("orders.place:BTC-USDT", "orders.place:BTC-USDT"),
        (
            "orders.place:BTC-*;max_qty=1.50;max_notional=1000",
            "orders.place:BTC-*;max_notional=1000;max_qty=1.5",
        ),
        (
            "orders.place:*;max_open_orders=5;max_orders_per_min=60;max_qty=0.001;max_notional=25000.00",
            "orders.place:*;max_notional=25000;max_qty=0.001;max_orders_per_min=60;max_open_orders=5",
        ),
        ("orders.place:X;max_qty=0001", "orders.place:X;max_qty=1"),
        ("orders.cancel:*-USDT", "orders.cancel:*-USDT"),
        ("tools.call:price-*", "tools.call:price-*"),
        ("tools.call:echo", "tools.call:echo"),
        (
            "http.outbound:https://api.example.com",
            "http.outbound:https://api.example.com",
        ),
        (
            "http.outbound:http://localhost:8080",
            "http.outbound:http://localhost:8080",
        ),
        (
            "http.outbound:https://*.okx.com:443",
            "http.outbound:https://*.okx.com:443",
        ),
        (
            "http.outbound:http://127.0.0.1:9000",
            "http.outbound:http://127.0.0.1:9000",
        ),
        (
            "http.outbound:https://[0:0:0:0:0:0:0:1]:8443",
            "http.outbound:https://[::1]:8443",
        ),
        (
            "http.outbound:https://[2001:db8::1]",
            "http.outbound:https://[2001:db8::1]",
        ),
        (
            "http.outbound:https://xn--bcher-kva.example",
            "http.outbound:https://xn--bcher-kva.example",
        ),
        ("fs.read:/", "fs.read:/"),
        ("fs.read:/data", "fs.read:/data"),
        (
            "fs.write:/var/lib/colony/scratch",
            "fs.write:/var/lib/colony/scratch",
        ),
        ("fs.read:/data/.hidden/x..y", "fs.read:/data/.hidden/x..y"),
        ("env:API_KEY", "env:API_KEY"),
        ("env:_X9", "env:_X9"),
    ];

    /// (input, fragment of the error message)
    const BAD: &[(&str, &str)] = &[
        ("", "unknown kind \"\""),
        (
            "foo",
            "unknown kind \"foo\" (expected one of messaging.publish",
        ),
        ("Messaging.publish:a", "unknown kind \"Messaging.publish\""),
        ("state:x", "state takes no argument"),
        ("tools.register:x", "tools.register takes no argument"),
        (
            "messaging.publish",
            "messaging.publish needs a subject pattern after ':'",
        ),
        ("orders.place", "orders.place needs a symbol pattern"),
        (
            "http.outbound",
            "http.outbound needs <scheme>://<host>[:<port>]",
        ),
        ("env", "env needs a variable name"),
        ("messaging.publish:", "subject pattern is empty"),
        (
            "messaging.publish:a..b",
            "subject pattern \"a..b\": token 2 is empty",
        ),
        ("messaging.publish:a.", "token 2 is empty"),
        ("messaging.publish:.a", "token 1 is empty"),
        (
            "messaging.subscribe:a.>.b",
            "'>' must be the last token (found at token 2)",
        ),
        ("messaging.publish:a.b*", "invalid character '*' at byte 3"),
        ("messaging.publish:a.>b", "invalid character '>' at byte 2"),
        ("messaging.publish:a b", "character \\u{20} is not allowed"),
        (
            "messaging.publish:a.\u{e9}",
            "character \\u{e9} is not allowed",
        ),
        ("messaging.publish:a\tb", "character \\u{9} is not allowed"),
        ("market.read:", "symbol pattern is empty"),
        (
            "market.read:btc",
            "symbol pattern \"btc\": invalid character 'b' at byte 0 (expected A-Z, 0-9, '-', '_', '/' or '*')",
        ),
        ("market.read:BTC-**", "repeated '*' at byte 4"),
        ("market.read:BTC USDT", "character \\u{20} is not allowed"),
        ("orders.place:BTC;max_qty=0", "max_qty must be positive"),
        ("orders.place:BTC;max_qty=0.000", "max_qty must be positive"),
        (
            "orders.place:BTC;max_qty=-1",
            "max_qty \"-1\" is not a decimal",
        ),
        (
            "orders.place:BTC;max_qty=+1",
            "max_qty \"+1\" is not a decimal",
        ),
        ("orders.place:BTC;max_qty=1e3", "is not a decimal"),
        ("orders.place:BTC;max_qty=1.", "is not a decimal"),
        ("orders.place:BTC;max_qty=.5", "is not a decimal"),
        ("orders.place:BTC;max_qty=1_000", "is not a decimal"),
        (
            "orders.place:BTC;max_notional=99999999999999999999999999999999",
            "max_notional \"99999999999999999999999999999999\" is out of range",
        ),
        (
            "orders.place:BTC;max_qty=1;max_qty=2",
            "order limit max_qty is given twice",
        ),
        ("orders.place:BTC;foo=1", "unknown order limit \"foo\""),
        ("orders.place:BTC;", "empty order limit (stray ';')"),
        (
            "orders.place:BTC;max_qty",
            "order limit \"max_qty\" is not key=value",
        ),
        (
            "orders.place:BTC;max_open_orders=0",
            "max_open_orders must be positive",
        ),
        (
            "orders.place:BTC;max_orders_per_min=1.5",
            "max_orders_per_min \"1.5\" is not a whole number",
        ),
        (
            "orders.place:BTC;max_orders_per_min=4294967296",
            "out of range",
        ),
        ("orders.place:;max_qty=1", "symbol pattern is empty"),
        (
            "orders.cancel:BTC;max_qty=1",
            "invalid character ';' at byte 3",
        ),
        (
            "tools.call:Price",
            "tool name pattern \"Price\": invalid character 'P' at byte 0",
        ),
        ("tools.call:a**", "repeated '*'"),
        (
            "http.outbound:ftp://x.com",
            "scheme \"ftp\" is not http or https",
        ),
        (
            "http.outbound:HTTPS://x.com",
            "scheme \"HTTPS\" is not http or https",
        ),
        (
            "http.outbound:x.com",
            "\"x.com\" is not <scheme>://<host>[:<port>]",
        ),
        ("http.outbound:https://x.com/path", "has a path at byte 13"),
        ("http.outbound:https://x.com?q", "has a path"),
        (
            "http.outbound:https://X.com",
            "host \"X.com\": must be lowercase (byte 0)",
        ),
        (
            "http.outbound:https://x.com:0",
            "port \"0\" is not a number from 1 to 65535",
        ),
        ("http.outbound:https://x.com:65536", "port \"65536\""),
        ("http.outbound:https://x.com:080", "port \"080\""),
        ("http.outbound:https://x.com:", "port \"\""),
        ("http.outbound:https://", "host \"\": is empty"),
        (
            "http.outbound:https://a*.x.com",
            "'*' at byte 1 (only a leading '*.' is allowed)",
        ),
        ("http.outbound:https://*", "only a leading '*.'"),
        (
            "http.outbound:https://*.*.x.com",
            "host pattern \"*.*.x.com\"",
        ),
        (
            "http.outbound:https://*.1.2.3.4",
            "'*.' needs a DNS name, not an address",
        ),
        (
            "http.outbound:https://-a.com",
            "label 1 starts or ends with '-'",
        ),
        ("http.outbound:https://a..com", "label 2 is empty"),
        (
            "http.outbound:https://1.2.3.256",
            "is not a valid IPv4 address or DNS name",
        ),
        ("http.outbound:https://[::1", "has no closing ']'"),
        ("http.outbound:https://[zz]", "is not an IPv6 address"),
        (
            "http.outbound:https://[::1]x",
            "unexpected \"x\" after the IPv6 address",
        ),
        (
            "http.outbound:https://user@x.com",
            "invalid character '@' at byte 4",
        ),
        ("fs.read:", "dir \"\" is not absolute"),
        ("fs.read:data", "dir \"data\" is not absolute"),
        ("fs.read:/data/", "must not end with '/'"),
        ("fs.read:/data/../etc", "component 2 is \"..\""),
        ("fs.write:/data/./x", "component 2 is \".\""),
        ("fs.read:/a//b", "component 2 is empty ('//')"),
        ("fs.read:/a b", "character \\u{20} is not allowed"),
        ("env:", "variable name is empty"),
        ("env:path", "invalid character 'p' at byte 0"),
        ("env:1A", "invalid character '1' at byte 0"),
        ("env:A-B", "invalid character '-' at byte 1"),
    ];

    #[test]
    fn caps_parse_good_strings_to_their_canonical_form() {
        for (input, canonical) in GOOD {
            let c = cap(input);
            assert_eq!(c.to_string(), *canonical, "display of {input:?}");
            assert_eq!(cap(canonical), c, "round trip of {input:?}");
        }
    }

    #[test]
    fn caps_refuse_bad_strings_saying_what_and_where() {
        for (input, fragment) in BAD {
            match input.parse::<Capability>() {
                Ok(c) => panic!("{input:?} parsed as {c}"),
                Err(e) => {
                    let msg = e.to_string();
                    assert!(
                        msg.contains(fragment),
                        "{input:?}: {msg:?} lacks {fragment:?}"
                    );
                    assert!(msg.starts_with("capability \""), "{msg}");
                    assert!(!msg.ends_with('.'), "{msg}");
                }
            }
        }
    }

    #[test]
    fn caps_error_message_quotes_the_input_then_the_reason() {
        let e = "market.read:btc".parse::<Capability>().unwrap_err();
        assert_eq!(
            e.to_string(),
            "capability \"market.read:btc\": symbol pattern \"btc\": invalid character 'b' at byte 0 \
             (expected A-Z, 0-9, '-', '_', '/' or '*')"
        );
        assert_eq!(e.input(), "market.read:btc");
        let long = format!("env:{}", "a".repeat(500));
        let e = long.parse::<Capability>().unwrap_err();
        assert_eq!(
            e.input().chars().count(),
            QUOTE_LEN + 1,
            "cut with an ellipsis"
        );
    }

    #[test]
    fn caps_size_limits() {
        let tokens = vec!["a"; MAX_SUBJECT_TOKENS].join(".");
        cap(&format!("messaging.publish:{tokens}"));
        let e = format!("messaging.publish:{tokens}.a")
            .parse::<Capability>()
            .unwrap_err();
        assert!(e.reason().contains("more than 32 tokens"), "{e}");
        let long = "a".repeat(MAX_SUBJECT_LEN);
        cap(&format!("messaging.publish:{long}"));
        let e = format!("messaging.publish:{long}b")
            .parse::<Capability>()
            .unwrap_err();
        assert!(e.reason().contains("longer than 256 bytes"), "{e}");
        cap(&format!("market.read:{}", "A".repeat(MAX_SYMBOL_LEN)));
        let e = format!("market.read:{}", "A".repeat(MAX_SYMBOL_LEN + 1))
            .parse::<Capability>()
            .unwrap_err();
        assert!(e.reason().contains("longer than 64 bytes"), "{e}");
        let e = format!("tools.call:{}", "a".repeat(MAX_NAME_LEN + 1))
            .parse::<Capability>()
            .unwrap_err();
        assert!(e.reason().contains("longer than 64 bytes"), "{e}");
        let label = "a".repeat(63);
        cap(&format!("http.outbound:https://{label}.com"));
        let e = format!("http.outbound:https://{label}a.com")
            .parse::<Capability>()
            .unwrap_err();
        assert!(
            e.reason().contains("label 1 is longer than 63 bytes"),
            "{e}"
        );
        let e = "x"
            .repeat(MAX_CAPABILITY_LEN + 1)
            .parse::<Capability>()
            .unwrap_err();
        assert!(e.reason().contains("longer than 2048 bytes"), "{e}");
    }

    #[test]
    fn caps_serde_uses_the_canonical_string() {
        let c = cap("orders.place:BTC-*;max_qty=2.0");
        let json = serde_json::to_string(&c).unwrap();
        assert_eq!(json, "\"orders.place:BTC-*;max_qty=2\"");
        assert_eq!(serde_json::from_str::<Capability>(&json).unwrap(), c);
        let err = serde_json::from_str::<Capability>("\"market.read:btc\"").unwrap_err();
        assert!(err.to_string().contains("invalid character 'b'"), "{err}");
    }

    #[test]
    fn caps_kind_and_always_granted() {
        assert_eq!(cap("orders.place:X;max_qty=1").kind(), "orders.place");
        assert_eq!(cap("env:A").kind(), "env");
        assert!(cap("state").is_always_granted() && cap("log").is_always_granted());
        assert!(!cap("tools.register").is_always_granted());
    }

    #[derive(Clone, Copy, Debug)]
    enum Op {
        Pub,
        Sub,
        Req,
    }

    #[test]
    fn caps_subject_matching() {
        use Op::*;
        // (grant, kind of request, requested subject, allowed)
        let cases: &[(&str, Op, &str, bool)] = &[
            ("orders.new", Pub, "orders.new", true),
            ("orders.new", Pub, "orders.new.x", false),
            ("orders.new", Pub, "orders", false),
            ("orders.new", Pub, "orders.newer", false),
            ("a.>", Pub, "a", false),
            ("a.>", Pub, "a.b", true),
            ("a.>", Pub, "a.b.c", true),
            ("a.>", Pub, "b.a", false),
            (">", Pub, "a", true),
            (">", Pub, "a.b.c", true),
            ("*", Pub, "a", true),
            ("*", Pub, "a.b", false),
            ("a.*", Pub, "a.b.c", false),
            ("a.*", Pub, "a", false),
            ("a.*.c", Pub, "a.b.c", true),
            ("a.*.c", Pub, "a.b.d", false),
            ("a.*.c", Pub, "a.b.c.d", false),
            ("a.*.c", Pub, "a.c", false),
            ("*.>", Pub, "a", false),
            ("*.>", Pub, "a.b", true),
            ("svc.price.>", Req, "svc.price.btc", true),
            ("svc.price.>", Req, "svc.volume.btc", false),
            // Subscribe requests may be patterns: the grant must cover everything they match.
            ("md.>", Sub, "md.*.BTC", true),
            ("md.>", Sub, "md.>", true),
            ("md.>", Sub, "md", false),
            ("md.>", Sub, ">", false),
            ("md.*", Sub, "md.>", false),
            ("md.*", Sub, "md.*", true),
            ("md.*", Sub, "md.BTC", true),
            ("md.BTC", Sub, "md.*", false),
            ("md.*.>", Sub, "md.>", false),
            ("md.*.>", Sub, "md.*.>", true),
            ("md.*.>", Sub, "md.a.*", true),
            ("a.*.c", Sub, "a.*.c", true),
            ("a.b.c", Sub, "a.*.c", false),
            (">", Sub, ">", true),
            (">", Sub, "*.*", true),
            ("*.>", Sub, ">", false),
            ("*", Sub, ">", false),
            ("*", Sub, "*", true),
            ("*.*", Sub, "*.>", false),
            // Another agent's private subjects need a grant that names the agent.
            ("agent.pong.inbox", Sub, "agent.pong.inbox", true),
            ("agent.pong.>", Sub, "agent.pong.inbox", true),
            ("agent.pong.>", Sub, "agent.pong.*", true),
            ("agent.*.inbox", Sub, "agent.pong.inbox", false),
            ("agent.>", Sub, "agent.pong.inbox", false),
            (">", Sub, "agent.pong.inbox", false),
            (">", Sub, "agent.pong.orders", false),
            ("agent.*.>", Sub, "agent.pong.>", false),
            // A wildcard where the name goes is grantable but never sees a private subject.
            ("agent.*.inbox", Sub, "agent.*.inbox", true),
            // Publishing to an inbox stays an ordinary grant.
            ("agent.*.inbox", Pub, "agent.pong.inbox", true),
            (">", Req, "agent.pong.inbox", true),
        ];
        for &(grant, kind, subject, want) in cases {
            let (g, req) = match kind {
                Pub => (
                    format!("messaging.publish:{grant}"),
                    Request::Publish { subject },
                ),
                Sub => (
                    format!("messaging.subscribe:{grant}"),
                    Request::Subscribe { subject },
                ),
                Req => (
                    format!("messaging.request:{grant}"),
                    Request::Request { subject },
                ),
            };
            let d = grants(&[&g]).check(&req);
            assert_eq!(d.is_allowed(), want, "{g} vs {req}: {d}");
            if !want {
                assert_eq!(
                    d,
                    Decision::Denied {
                        needs: req.to_string()
                    },
                    "{g} vs {req}"
                );
            }
        }
    }

    #[test]
    fn caps_subject_kinds_are_separate_and_denials_name_the_grant() {
        let g = grants(&["messaging.publish:a.>"]);
        assert!(g.check(&Request::Publish { subject: "a.b" }).is_allowed());
        assert_eq!(
            g.check(&Request::Subscribe { subject: "a.b" }),
            Decision::Denied {
                needs: "messaging.subscribe:a.b".into()
            }
        );
        assert_eq!(
            GrantSet::default().check(&Request::Publish {
                subject: "orders.new"
            }),
            Decision::Denied {
                needs: "messaging.publish:orders.new".into()
            }
        );
        assert_eq!(
            g.check(&Request::Request { subject: "a.b" }),
            Decision::Denied {
                needs: "messaging.request:a.b".into()
            }
        );
    }

    #[test]
    fn caps_malformed_subjects_are_invalid_not_denied() {
        let g = grants(&[
            "messaging.publish:>",
            "messaging.subscribe:>",
            "messaging.request:>",
        ]);
        let cases: &[(Request<'_>, &str)] = &[
            (
                Request::Publish { subject: "a.*" },
                "wildcard '*' (token 2) is not allowed here",
            ),
            (
                Request::Publish { subject: ">" },
                "wildcard '>' (token 1) is not allowed here",
            ),
            (Request::Request { subject: "a.>" }, "wildcard '>'"),
            (Request::Publish { subject: "a..b" }, "token 2 is empty"),
            (Request::Publish { subject: "" }, "subject is empty"),
            (Request::Publish { subject: "a b" }, "invalid character ' '"),
            (
                Request::Subscribe { subject: "a.>.b" },
                "'>' must be the last token",
            ),
            (
                Request::Subscribe { subject: "a*" },
                "invalid character '*'",
            ),
        ];
        for (req, fragment) in cases {
            match g.check(req) {
                Decision::Invalid { reason } => {
                    assert!(reason.contains(fragment), "{req:?}: {reason}")
                }
                d => panic!("{req:?}: {d}"),
            }
        }
    }

    #[test]
    fn caps_symbol_and_name_globs() {
        // (grant pattern, requested symbol, allowed)
        let symbols: &[(&str, &str, bool)] = &[
            ("BTC-USDT", "BTC-USDT", true),
            ("BTC-USDT", "BTC-USDT2", false),
            ("BTC-USDT", "BTC", false),
            ("BTC-*", "BTC-USDT", true),
            ("BTC-*", "BTC-", true),
            ("BTC-*", "BTC", false),
            ("BTC-*", "ETH-USDT", false),
            ("BTC-*", "XBTC-USDT", false),
            ("*", "ANY/THING_1", true),
            ("*-USDT", "BTC-USDT", true),
            ("*-USDT", "BTC-USDC", false),
            ("*USD*", "BTC/USDT", true),
            ("*USD*", "USD", true),
            ("*USD*", "BTC", false),
            ("A*A", "A", false),
            ("A*A", "AA", true),
            ("A*A", "ABA", true),
            ("B*C*D", "BXCYD", true),
            ("B*C*D", "BCD", true),
            ("B*C*D", "BDC", false),
            ("B*C*D", "BCCD", true),
            ("*/*", "ETH/USD", true),
            ("*/*", "ETH-USD", false),
        ];
        for &(grant, symbol, want) in symbols {
            for (kind, req) in [
                ("market.read", Request::MarketRead { symbol }),
                ("orders.cancel", Request::CancelOrder { symbol }),
                (
                    "orders.place",
                    Request::PlaceOrder {
                        symbol,
                        qty: Decimal::ONE,
                        notional: Decimal::ONE,
                    },
                ),
            ] {
                let g = grants(&[&format!("{kind}:{grant}")]);
                let d = g.check(&req);
                assert_eq!(d.is_allowed(), want, "{kind}:{grant} vs {symbol}: {d}");
                if !want {
                    assert_eq!(
                        d,
                        Decision::Denied {
                            needs: format!("{kind}:{symbol}")
                        }
                    );
                }
            }
        }
        let names: &[(&str, &str, bool)] = &[
            ("price-*", "price-feed", true),
            ("price-*", "price", false),
            ("price-*", "oracle-price-x", false),
            ("*", "echo", true),
            ("echo", "echo", true),
            ("echo", "echo2", false),
            ("*-tool", "my-tool", true),
        ];
        for &(grant, name, want) in names {
            let d = grants(&[&format!("tools.call:{grant}")]).check(&Request::CallTool { name });
            assert_eq!(d.is_allowed(), want, "tools.call:{grant} vs {name}: {d}");
        }
        assert_eq!(
            GrantSet::default().check(&Request::CallTool { name: "echo" }),
            Decision::Denied {
                needs: "tools.call:echo".into()
            }
        );
    }

    #[test]
    fn caps_malformed_symbols_and_names_are_invalid() {
        let g = grants(&["market.read:*", "tools.call:*", "orders.cancel:*"]);
        for req in [
            Request::MarketRead { symbol: "btc-usdt" },
            Request::MarketRead { symbol: "BTC-*" },
            Request::MarketRead { symbol: "" },
            Request::CancelOrder { symbol: "*" },
            Request::CallTool { name: "Echo" },
            Request::CallTool { name: "ec*" },
        ] {
            assert!(matches!(g.check(&req), Decision::Invalid { .. }), "{req:?}");
        }
    }

    #[test]
    fn caps_order_limits() {
        let g = grants(&["orders.place:BTC-*;max_qty=0.5;max_notional=1000;max_orders_per_min=10"]);
        let place = |symbol, qty: &str, notional: &str| {
            g.check(&Request::PlaceOrder {
                symbol,
                qty: dec(qty),
                notional: dec(notional),
            })
        };
        let denied = |needs: &str| Decision::Denied {
            needs: needs.into(),
        };
        assert_eq!(place("BTC-USDT", "0.5", "1000"), Decision::Allowed);
        assert_eq!(place("BTC-USDT", "0.1", "0"), Decision::Allowed);
        assert_eq!(
            place("BTC-USDT", "2", "10"),
            denied("orders.place:BTC-USDT max_qty 0.5 < 2")
        );
        assert_eq!(
            place("BTC-USDT", "2.00", "10"),
            denied("orders.place:BTC-USDT max_qty 0.5 < 2")
        );
        assert_eq!(
            place("BTC-USDT", "0.5000001", "10"),
            denied("orders.place:BTC-USDT max_qty 0.5 < 0.5000001")
        );
        assert_eq!(
            place("BTC-USDT", "0.1", "1500.50"),
            denied("orders.place:BTC-USDT max_notional 1000 < 1500.5")
        );
        assert_eq!(
            place("ETH-USDT", "0.1", "10"),
            denied("orders.place:ETH-USDT")
        );
        for (qty, notional, fragment) in [
            ("0", "1", "order qty 0 is not positive"),
            ("-1", "1", "order qty -1 is not positive"),
            ("1", "-1", "order notional -1 is negative"),
        ] {
            match place("BTC-USDT", qty, notional) {
                Decision::Invalid { reason } => assert!(reason.contains(fragment), "{reason}"),
                d => panic!("{qty} {notional}: {d}"),
            }
        }
        let l = g.order_limits("BTC-USDT", dec("0.1"), dec("10")).unwrap();
        assert_eq!(l.max_orders_per_min(), Some(10));
        assert_eq!(l.max_open_orders(), None);
        assert_eq!(l.max_qty(), Some(dec("0.5")));
        assert_eq!(l.max_notional(), Some(dec("1000")));
        assert!(g.order_limits("BTC-USDT", dec("1"), dec("10")).is_none());

        // Any one grant that covers the symbol and allows the size is enough; its limits apply.
        let two = grants(&[
            "orders.place:BTC-*;max_qty=0.5",
            "orders.place:BTC-USDT;max_qty=10;max_open_orders=2",
        ]);
        let req = Request::PlaceOrder {
            symbol: "BTC-USDT",
            qty: dec("2"),
            notional: dec("1"),
        };
        assert_eq!(two.check(&req), Decision::Allowed);
        let l = two.order_limits("BTC-USDT", dec("2"), dec("1")).unwrap();
        assert_eq!(
            (l.max_qty(), l.max_open_orders()),
            (Some(dec("10")), Some(2))
        );
        let l = two.order_limits("BTC-USDT", dec("0.1"), dec("1")).unwrap();
        assert_eq!(l.max_qty(), Some(dec("0.5")), "first grant in order wins");
        let req = Request::PlaceOrder {
            symbol: "BTC-EUR",
            qty: dec("2"),
            notional: dec("1"),
        };
        assert_eq!(
            two.check(&req),
            denied("orders.place:BTC-EUR max_qty 0.5 < 2")
        );

        let unlimited = grants(&["orders.place:*"]);
        let req = Request::PlaceOrder {
            symbol: "X",
            qty: Decimal::MAX,
            notional: Decimal::MAX,
        };
        assert_eq!(unlimited.check(&req), Decision::Allowed);
        assert_eq!(
            unlimited.order_limits("X", Decimal::ONE, Decimal::ONE),
            Some(&OrderLimits::default())
        );
    }

    #[test]
    fn caps_http_hosts() {
        // (grant, scheme, host, port, allowed)
        let cases: &[(&str, &str, &str, u16, bool)] = &[
            (
                "https://api.example.com",
                "https",
                "api.example.com",
                443,
                true,
            ),
            (
                "https://api.example.com",
                "https",
                "api.example.com",
                8443,
                false,
            ),
            (
                "http://api.example.com",
                "http",
                "api.example.com",
                80,
                true,
            ),
            (
                "http://api.example.com",
                "http",
                "api.example.com",
                443,
                false,
            ),
            ("http://127.0.0.1", "http", "127.0.0.1", 8080, false),
            (
                "https://api.example.com",
                "HTTPS",
                "API.Example.COM",
                443,
                true,
            ),
            (
                "https://api.example.com",
                "http",
                "api.example.com",
                443,
                false,
            ),
            (
                "https://api.example.com",
                "https",
                "example.com",
                443,
                false,
            ),
            (
                "https://api.example.com",
                "https",
                "x.api.example.com",
                443,
                false,
            ),
            (
                "https://api.example.com",
                "https",
                "api.example.com.evil.io",
                443,
                false,
            ),
            (
                "https://api.example.com:443",
                "https",
                "api.example.com",
                443,
                true,
            ),
            (
                "https://api.example.com:443",
                "https",
                "api.example.com",
                8443,
                false,
            ),
            ("https://*.example.com", "https", "a.example.com", 443, true),
            (
                "https://*.example.com",
                "https",
                "a.b.example.com",
                443,
                true,
            ),
            ("https://*.example.com", "https", "A.EXAMPLE.com", 443, true),
            ("https://*.example.com", "https", "example.com", 443, false),
            (
                "https://*.example.com",
                "https",
                "badexample.com",
                443,
                false,
            ),
            (
                "https://*.example.com",
                "https",
                "a.example.com.evil.io",
                443,
                false,
            ),
            ("https://*.example.com", "https", "xample.com", 443, false),
            ("http://127.0.0.1:8080", "http", "127.0.0.1", 8080, true),
            ("http://127.0.0.1:8080", "http", "127.0.0.2", 8080, false),
            ("http://127.0.0.1:8080", "http", "localhost", 8080, false),
            ("https://[::1]", "https", "[0:0::1]", 443, true),
            ("https://[::1]", "https", "[::2]", 443, false),
            ("https://localhost", "https", "[::1]", 443, false),
        ];
        for &(grant, scheme, host, port, want) in cases {
            let g = grants(&[&format!("http.outbound:{grant}")]);
            let req = Request::Http { scheme, host, port };
            let d = g.check(&req);
            assert_eq!(d.is_allowed(), want, "{grant} vs {req}: {d}");
        }
        assert_eq!(
            GrantSet::default().check(&Request::Http {
                scheme: "HTTPS",
                host: "API.Example.com",
                port: 443
            }),
            Decision::Denied {
                needs: "http.outbound:https://api.example.com:443".into()
            }
        );
        let any = grants(&["http.outbound:https://*.example.com"]);
        for (scheme, host) in [
            ("ftp", "a.example.com"),
            ("https", "a b.example.com"),
            ("https", ""),
            ("https", "::1"),
            ("https", "a..example.com"),
            ("https", "[::1"),
        ] {
            let d = any.check(&Request::Http {
                scheme,
                host,
                port: 443,
            });
            assert!(
                matches!(d, Decision::Invalid { .. }),
                "{scheme} {host}: {d}"
            );
        }
    }

    #[test]
    fn caps_fs_dirs_cover_paths_component_wise() {
        // (grant, request is a write, path, allowed)
        let cases: &[(&str, bool, &str, bool)] = &[
            ("fs.read:/data", false, "/data", true),
            ("fs.read:/data", false, "/data/x", true),
            ("fs.read:/data", false, "/data/x/y.csv", true),
            ("fs.read:/data", false, "/data//x/", true),
            ("fs.read:/data", false, "/database", false),
            ("fs.read:/data", false, "/dat", false),
            ("fs.read:/data", false, "/", false),
            ("fs.read:/data", false, "/other/data", false),
            ("fs.read:/data", true, "/data/x", false),
            ("fs.write:/scratch", false, "/scratch/a", true),
            ("fs.write:/scratch", true, "/scratch/a", true),
            ("fs.write:/scratch", true, "/scratch", true),
            ("fs.write:/scratch", true, "/scratchpad", false),
            ("fs.read:/", false, "/etc/passwd", true),
            ("fs.read:/", true, "/etc/passwd", false),
            ("fs.write:/", true, "/anything/at/all", true),
            ("fs.read:/a/b", false, "/a", false),
            ("fs.read:/a/b", false, "/a/b/c", true),
        ];
        for &(grant, write, path, want) in cases {
            let req = if write {
                Request::FsWrite { path }
            } else {
                Request::FsRead { path }
            };
            let d = grants(&[grant]).check(&req);
            assert_eq!(d.is_allowed(), want, "{grant} vs {req:?}: {d}");
        }
        let g = grants(&["fs.read:/data"]);
        assert_eq!(
            g.check(&Request::FsRead { path: "/etc//x/" }),
            Decision::Denied {
                needs: "fs.read:/etc/x".into()
            }
        );
        assert_eq!(
            g.check(&Request::FsWrite { path: "/data" }),
            Decision::Denied {
                needs: "fs.write:/data".into()
            }
        );
        assert_eq!(
            GrantSet::default().check(&Request::FsRead { path: "//" }),
            Decision::Denied {
                needs: "fs.read:/".into()
            }
        );
        for path in ["/data/../etc", "/data/./x", "data/x", "", "/data/\0x"] {
            let d = g.check(&Request::FsRead { path });
            assert!(matches!(d, Decision::Invalid { .. }), "{path:?}: {d}");
        }
    }

    #[test]
    fn caps_env_and_tools_register() {
        let g = grants(&["env:API_KEY", "tools.register"]);
        assert!(g.check(&Request::Env { name: "API_KEY" }).is_allowed());
        assert_eq!(
            g.check(&Request::Env { name: "API_KEYS" }),
            Decision::Denied {
                needs: "env:API_KEYS".into()
            }
        );
        assert!(matches!(
            g.check(&Request::Env { name: "api_key" }),
            Decision::Invalid { .. }
        ));
        assert!(g.check(&Request::RegisterTool).is_allowed());
        assert_eq!(
            GrantSet::default().check(&Request::RegisterTool),
            Decision::Denied {
                needs: "tools.register".into()
            }
        );
    }

    #[test]
    fn caps_grant_set_dedups_revokes_and_lists() {
        let mut g = grants(&[
            "fs.read:/data",
            "env:B",
            "fs.write:/data",
            "fs.read:/data",
            "fs.read:/ref",
            "env:A",
            "market.read:*",
            "state",
        ]);
        let strings: Vec<String> = g.capabilities().iter().map(Capability::to_string).collect();
        assert_eq!(
            strings,
            [
                "fs.read:/data",
                "env:B",
                "fs.write:/data",
                "fs.read:/ref",
                "env:A",
                "market.read:*",
                "state"
            ]
        );
        let dirs: Vec<(&str, bool)> = g
            .fs_dirs()
            .iter()
            .map(|f| (f.dir.as_str(), f.writable))
            .collect();
        assert_eq!(dirs, [("/data", true), ("/ref", false)]);
        assert_eq!(g.env_names().collect::<Vec<_>>(), ["B", "A"]);

        assert!(g.revoke(&cap("fs.write:/data")));
        assert!(!g.revoke(&cap("fs.write:/data")));
        let dirs: Vec<(&str, bool)> = g
            .fs_dirs()
            .iter()
            .map(|f| (f.dir.as_str(), f.writable))
            .collect();
        assert_eq!(dirs, [("/data", false), ("/ref", false)]);
        assert!(!g.check(&Request::FsWrite { path: "/data/x" }).is_allowed());

        let btc = Request::MarketRead { symbol: "BTC" };
        assert!(g.check(&btc).is_allowed());
        assert!(
            !g.revoke(&cap("market.read:BTC")),
            "revoking a narrower grant is a no-op"
        );
        assert!(g.check(&btc).is_allowed());
        assert!(g.revoke(&cap("market.read:*")));
        assert_eq!(
            g.check(&btc),
            Decision::Denied {
                needs: "market.read:BTC".into()
            }
        );

        assert!(g.grant(cap("market.read:BTC")));
        assert!(!g.grant(cap("market.read:BTC")));
        assert!(g.check(&btc).is_allowed());
        assert_eq!(g.capabilities().last(), Some(&cap("market.read:BTC")));
    }

    #[test]
    fn caps_decision_display() {
        assert_eq!(Decision::Allowed.to_string(), "allowed");
        assert_eq!(
            Decision::Denied {
                needs: "env:A".into()
            }
            .to_string(),
            "denied (needs env:A)"
        );
        assert_eq!(
            Decision::Invalid { reason: "x".into() }.to_string(),
            "invalid request: x"
        );
    }

    /// Counts heap allocations made by the current thread, so the check's no-allocation promise
    /// can be tested while other tests run in parallel.
    mod alloc_count {
        use std::alloc::{GlobalAlloc, Layout, System};
        use std::cell::Cell;

        thread_local!(static COUNT: Cell<usize> = const { Cell::new(0) });

        struct Counting;

        fn bump() {
            let _ = COUNT.try_with(|c| c.set(c.get() + 1));
        }

        // SAFETY: every call is forwarded unchanged to the system allocator.
        unsafe impl GlobalAlloc for Counting {
            unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
                bump();
                // SAFETY: same contract as ours.
                unsafe { System.alloc(layout) }
            }
            unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
                bump();
                // SAFETY: same contract as ours.
                unsafe { System.alloc_zeroed(layout) }
            }
            unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
                bump();
                // SAFETY: same contract as ours.
                unsafe { System.realloc(ptr, layout, new_size) }
            }
            unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
                // SAFETY: same contract as ours.
                unsafe { System.dealloc(ptr, layout) }
            }
        }

        #[global_allocator]
        static GLOBAL: Counting = Counting;

        pub fn allocations<R>(f: impl FnOnce() -> R) -> (R, usize) {
            let before = COUNT.with(Cell::get);
            let r = f();
            (r, COUNT.with(Cell::get) - before)
        }
    }

    #[test]
    fn caps_check_does_not_allocate_when_allowed() {
        let g = grants(&[
            "messaging.publish:orders.>",
            "messaging.subscribe:md.>",
            "messaging.request:svc.*.price",
            "market.read:BTC-*",
            "orders.place:*-USDT;max_qty=5;max_notional=100000",
            "orders.cancel:*",
            "tools.call:price-*",
            "tools.register",
            "http.outbound:https://*.okx.com:443",
            "http.outbound:http://[::1]",
            "http.outbound:http://10.0.0.1",
            "fs.write:/scratch",
            "env:API_KEY",
        ]);
        let requests = [
            Request::Publish {
                subject: "orders.new.btc",
            },
            Request::Subscribe {
                subject: "md.*.BTC",
            },
            Request::Request {
                subject: "svc.okx.price",
            },
            Request::MarketRead { symbol: "BTC-USDT" },
            Request::PlaceOrder {
                symbol: "ETH-USDT",
                qty: dec("1.5"),
                notional: dec("4500.25"),
            },
            Request::CancelOrder { symbol: "ETH-USDT" },
            Request::CallTool { name: "price-feed" },
            Request::RegisterTool,
            Request::Http {
                scheme: "https",
                host: "www.OKX.com",
                port: 443,
            },
            Request::Http {
                scheme: "http",
                host: "[::1]",
                port: 80,
            },
            Request::Http {
                scheme: "http",
                host: "10.0.0.1",
                port: 80,
            },
            Request::FsRead {
                path: "/scratch/a/b",
            },
            Request::FsWrite { path: "/scratch/c" },
            Request::Env { name: "API_KEY" },
        ];
        for req in &requests {
            let (d, n) = alloc_count::allocations(|| g.check(req));
            assert_eq!(d, Decision::Allowed, "{req:?}");
            assert_eq!(n, 0, "{req:?} allocated {n} times");
        }
        // The counter works: a denial builds its message.
        let (d, n) = alloc_count::allocations(|| g.check(&Request::Env { name: "OTHER" }));
        assert!(!d.is_allowed() && n > 0);
    }

    // ---- properties ----

    fn literal_chars() -> Vec<char> {
        ('!'..='~')
            .filter(|c| !matches!(c, '.' | '*' | '>'))
            .collect()
    }

    fn literal_token() -> impl Strategy<Value = String> {
        prop::collection::vec(prop::sample::select(literal_chars()), 1..5)
            .prop_map(String::from_iter)
    }

    fn subject_pattern() -> impl Strategy<Value = String> {
        let token = prop_oneof![3 => literal_token(), 1 => Just("*".to_owned())];
        (prop::collection::vec(token, 1..6), any::<bool>()).prop_map(|(mut tokens, tail)| {
            if tail {
                tokens.push(">".into());
            }
            tokens.join(".")
        })
    }

    fn positive_decimal() -> impl Strategy<Value = Decimal> {
        (1i64..=i64::from(u32::MAX), 0u32..=8)
            .prop_map(|(m, scale)| Decimal::new(m, scale).normalize())
    }

    fn order_limits() -> impl Strategy<Value = OrderLimits> {
        (
            prop::option::of(positive_decimal()),
            prop::option::of(positive_decimal()),
            prop::option::of(1u32..),
            prop::option::of(1u32..),
        )
            .prop_map(
                |(max_notional, max_qty, max_orders_per_min, max_open_orders)| OrderLimits {
                    max_notional,
                    max_qty,
                    max_orders_per_min,
                    max_open_orders,
                },
            )
    }

    const DNS: &str = "([a-z0-9]([a-z0-9-]{0,4}[a-z0-9])?\\.){0,3}[a-z]([a-z0-9-]{0,4}[a-z0-9])?";

    fn http_target() -> impl Strategy<Value = HttpTarget> {
        let host = prop_oneof![
            DNS.prop_map(HostPattern::Name),
            DNS.prop_map(HostPattern::Subdomains),
            any::<[u8; 4]>().prop_map(|a| HostPattern::Ipv4(a.into())),
            any::<u128>().prop_map(|a| HostPattern::Ipv6(a.into())),
        ];
        let scheme = prop_oneof![Just(Scheme::Http), Just(Scheme::Https)];
        (scheme, host, prop::option::of(1u16..)).prop_map(|(scheme, host, port)| HttpTarget {
            scheme,
            host,
            port,
        })
    }

    fn fs_dir() -> impl Strategy<Value = FsDir> {
        let comp = "[A-Za-z0-9_.-]{1,6}".prop_filter("not . or ..", |c| c != "." && c != "..");
        prop::collection::vec(comp, 0..4).prop_map(|comps| FsDir(format!("/{}", comps.join("/"))))
    }

    fn capability() -> impl Strategy<Value = Capability> {
        let symbols = "[A-Z0-9_/-]{0,3}(\\*[A-Z0-9_/-]{1,3}){0,2}\\*?"
            .prop_filter("non-empty", |s| !s.is_empty())
            .prop_map(SymbolPattern);
        let names = "[a-z0-9-]{0,3}(\\*[a-z0-9-]{1,3}){0,2}\\*?"
            .prop_filter("non-empty", |s| !s.is_empty())
            .prop_map(NamePattern);
        prop_oneof![
            subject_pattern().prop_map(|s| Capability::MessagingPublish(SubjectPattern(s))),
            subject_pattern().prop_map(|s| Capability::MessagingSubscribe(SubjectPattern(s))),
            subject_pattern().prop_map(|s| Capability::MessagingRequest(SubjectPattern(s))),
            symbols.clone().prop_map(Capability::MarketRead),
            (symbols.clone(), order_limits())
                .prop_map(|(symbols, limits)| Capability::OrdersPlace { symbols, limits }),
            symbols.prop_map(Capability::OrdersCancel),
            names.prop_map(Capability::ToolsCall),
            Just(Capability::ToolsRegister),
            http_target().prop_map(Capability::HttpOutbound),
            fs_dir().prop_map(Capability::FsRead),
            fs_dir().prop_map(Capability::FsWrite),
            "[A-Z_][A-Z0-9_]{0,8}".prop_map(|n| Capability::Env(EnvName(n))),
            Just(Capability::State),
            Just(Capability::Log),
        ]
    }

    /// Small alphabet so that grants and requests often overlap.
    fn small_pattern() -> impl Strategy<Value = String> {
        let token = prop_oneof![Just("a"), Just("b"), Just("*")];
        (prop::collection::vec(token, 1..4), any::<bool>()).prop_map(|(tokens, tail)| {
            let mut s = tokens.join(".");
            if tail {
                s.push_str(".>");
            }
            s
        })
    }

    fn covers(grant: &str, request: &str) -> bool {
        Subject::compile(&SubjectPattern(grant.to_owned())).covers(request)
    }

    /// Replaces each wildcard of `pattern` by concrete tokens chosen by `picks`.
    fn instance(pattern: &str, picks: &[usize]) -> String {
        const TOKENS: [&str; 3] = ["a", "b", "z"];
        let mut picks = picks.iter().cycle();
        let mut pick = || picks.next().copied().unwrap_or(0);
        let mut out: Vec<&str> = Vec::new();
        for t in pattern.split('.') {
            match t {
                "*" => out.push(TOKENS[pick() % 3]),
                ">" => (0..=pick() % 3).for_each(|_| out.push(TOKENS[pick() % 3])),
                _ => out.push(t),
            }
        }
        out.join(".")
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        #[test]
        fn caps_prop_display_then_parse_round_trips(c in capability()) {
            let s = c.to_string();
            let back: Capability = s.parse().map_err(|e| TestCaseError::fail(format!("{e}")))?;
            prop_assert_eq!(&back, &c);
            prop_assert_eq!(back.to_string(), s);
        }

        #[test]
        fn caps_prop_parser_never_panics(s in any::<String>()) {
            if let Ok(c) = s.parse::<Capability>() {
                prop_assert_eq!(c.to_string().parse::<Capability>().ok(), Some(c));
            }
        }

        #[test]
        fn caps_prop_parser_never_panics_on_near_misses(
            kind in prop::sample::select(KINDS.split(", ").collect::<Vec<_>>()),
            rest in "[ -~\u{e9}]{0,40}",
        ) {
            let s = format!("{kind}:{rest}");
            if let Ok(c) = s.parse::<Capability>() {
                prop_assert_eq!(c.to_string().parse::<Capability>().ok(), Some(c));
            }
            let g = GrantSet::new(s.parse::<Capability>().ok());
            // Checks on arbitrary request text do not panic either.
            for req in [
                Request::Publish { subject: &rest },
                Request::Subscribe { subject: &rest },
                Request::MarketRead { symbol: &rest },
                Request::CallTool { name: &rest },
                Request::Http { scheme: "https", host: &rest, port: 1 },
                Request::FsRead { path: &rest },
                Request::Env { name: &rest },
            ] {
                let _ = g.check(&req);
            }
        }

        #[test]
        fn caps_prop_tail_grant_matches_subjects_below_it(
            tokens in prop::collection::vec(prop::sample::select(vec!["x", "y", "xy"]), 1..5),
        ) {
            let subject = tokens.join(".");
            let g = grants(&["messaging.publish:x.>"]);
            let allowed = g.check(&Request::Publish { subject: &subject }).is_allowed();
            prop_assert_eq!(allowed, subject.starts_with("x.") && tokens.len() >= 2, "{}", subject);
        }

        #[test]
        fn caps_prop_pattern_cover_implies_every_instance_is_covered(
            grant in small_pattern(),
            request in small_pattern(),
            picks in prop::collection::vec(0usize..6, 8),
        ) {
            if covers(&grant, &request) {
                let concrete = instance(&request, &picks);
                prop_assert!(check_subject(&concrete, false).is_ok(), "{}", concrete);
                prop_assert!(covers(&grant, &concrete), "{} covers {} but not {}", grant, request, concrete);
            }
        }

        #[test]
        fn caps_prop_no_cover_has_a_witness(grant in small_pattern(), request in small_pattern()) {
            // With a token ("z") the grant never names and every length of a `>` expansion, an
            // uncovered subject exists whenever the cover check says no.
            if !covers(&grant, &request) {
                let max = grant.split('.').count() + 1;
                let witness = (1..=max).any(|n| {
                    let tail = vec!["z"; n].join(".");
                    let concrete: Vec<&str> = request
                        .split('.')
                        .map(|t| match t { "*" => "z", ">" => tail.as_str(), t => t })
                        .collect();
                    !covers(&grant, &concrete.join("."))
                });
                prop_assert!(witness, "{} does not cover {} but covers all its instances", grant, request);
            }
        }
    }
}
