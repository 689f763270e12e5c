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

mod capability;
mod grant_set;
mod parse;
mod request;
#[cfg(test)]
mod tests;

pub use capability::*;
pub use grant_set::*;
pub use parse::*;
pub use request::*;

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
