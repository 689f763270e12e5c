//! Grants compiled once into matchers ([`GrantSet`], [`Subject`]) and the check that
//! decides each request without allocating when it allows.

use super::*;
use colony_model::glob::Glob;
use rust_decimal::Decimal;
use std::net::{Ipv4Addr, Ipv6Addr};

/// One token of a compiled subject pattern.
#[derive(Debug, Clone)]
pub(super) enum Token {
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
pub(super) fn names_agent(subject: &str) -> bool {
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
    pub(crate) fn order_limits(
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
pub(super) fn limit_violation(l: &OrderLimits, qty: Decimal, notional: Decimal) -> Option<String> {
    if let Some(max) = l.max_qty.filter(|m| qty > *m) {
        return Some(format!("max_qty {max} < {}", qty.normalize()));
    }
    if let Some(max) = l.max_notional.filter(|m| notional > *m) {
        return Some(format!("max_notional {max} < {}", notional.normalize()));
    }
    None
}

pub(super) fn check_http_request(scheme: &str, host: &str) -> Result<(), String> {
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

pub(super) fn http_allows(t: &HttpTarget, scheme: &str, host: &str, port: u16) -> bool {
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
pub(super) fn dir_covers(dir: &str, path: &str) -> bool {
    let mut p = components(path);
    components(dir).all(|d| p.next() == Some(d))
}
