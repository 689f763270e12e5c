//! Parsing and validation of capability strings and of the subjects, symbols, names, hosts
//! and paths in them; everything here allocates only to explain an error.

use super::*;
use colony_model::symbol::is_symbol_char;
use rust_decimal::Decimal;
use std::net::Ipv6Addr;

pub(super) fn parse(s: &str) -> Result<Capability, String> {
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

pub(super) fn symbol_pattern(s: &str) -> Result<SymbolPattern, String> {
    check_symbol(s, true)?;
    Ok(SymbolPattern(s.to_owned()))
}

/// Validates a subject (`wildcards == false`) or subject pattern. Allocates only on error.
/// The next `.`-separated token of `s` from `*pos`, advancing `*pos` past it; `None` when
/// the subject is used up. A plain byte loop: subjects are short, and this is on the path of
/// every publish.
#[inline]
pub(super) fn next_token<'a>(s: &'a [u8], pos: &mut usize) -> Option<&'a [u8]> {
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
pub(super) fn subject_is_valid(s: &str, wildcards: bool) -> bool {
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
pub(super) fn check_glob(
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

pub(super) fn check_symbol(s: &str, glob: bool) -> Result<(), String> {
    check_glob(
        s,
        glob,
        "symbol",
        MAX_SYMBOL_LEN,
        is_symbol_char,
        "A-Z, 0-9, '-', '_', '/'",
    )
}

pub(super) fn check_name(s: &str, glob: bool) -> Result<(), String> {
    let ok = |c: char| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-';
    check_glob(s, glob, "tool name", MAX_NAME_LEN, ok, "a-z, 0-9, '-'")
}

pub(super) fn check_env(s: &str) -> Result<(), String> {
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

pub(super) fn order_limits<'a>(opts: impl Iterator<Item = &'a str>) -> Result<OrderLimits, String> {
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

pub(super) fn positive_decimal(key: &str, v: &str) -> Result<Decimal, String> {
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

pub(super) fn positive_u32(key: &str, v: &str) -> Result<u32, String> {
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

pub(super) fn http_target(s: &str) -> Result<HttpTarget, String> {
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

pub(super) fn port(p: &str) -> Result<u16, String> {
    let bad = || format!("port {p:?} is not a number from 1 to 65535 without leading zeros");
    if p.is_empty() || p.starts_with('0') || !p.bytes().all(|b| b.is_ascii_digit()) {
        return Err(bad());
    }
    p.parse::<u16>().map_err(|_| bad())
}

pub(super) fn host_pattern(h: &str) -> Result<HostPattern, String> {
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

pub(super) enum HostKind {
    Name,
    Ipv4,
}

/// A host whose last label is all digits can only be an IPv4 address.
pub(super) fn classify_host(h: &str) -> HostKind {
    let last = h.rsplit('.').next().unwrap_or("");
    if last.bytes().all(|b| b.is_ascii_digit()) {
        HostKind::Ipv4
    } else {
        HostKind::Name
    }
}

/// Validates a DNS name or dotted IPv4 text; `any_case` accepts upper case (for requests).
/// Allocates only on error.
pub(super) fn check_host(h: &str, any_case: bool) -> Result<(), String> {
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

pub(super) fn fs_dir(s: &str) -> Result<FsDir, String> {
    check_path(s, true)?;
    Ok(FsDir(s.to_owned()))
}

/// Validates a granted dir (`strict`: normalised) or a requested path. Allocates only on error.
pub(super) fn check_path(s: &str, strict: bool) -> Result<(), String> {
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
