//! Formatting shared by the text and the HTML: money, durations, counts, times.

use super::{DeniedLine, FeedLine, TradingLine};
use rust_decimal::Decimal;
use std::collections::BTreeMap;

/// `s` with `&`, `<`, `>`, `"` and `'` replaced by entities: safe in element text and in
/// quoted attribute values.
pub fn escape_html(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// `s` for a terminal: control characters (escape sequences, newlines) written as Rust
/// escapes, so plugin text cannot drive the terminal or break the table.
pub(super) fn clean(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if c.is_control() {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    out
}

/// At most `max` characters of `s`, ending in `…` when cut.
pub(super) fn truncate(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        return s.to_string();
    }
    let mut out: String = s.chars().take(max.saturating_sub(1)).collect();
    out.push('…');
    out
}

/// `YYYY-MM-DD HH:MM:SS` (UTC) from nanoseconds since the epoch.
pub(super) fn utc(ns: u64) -> String {
    let full = colony_host::market::replay::format_utc(ns);
    // `format_utc` is `YYYY-MM-DDTHH:MM:SS.fffffffffZ`; keep whole seconds.
    full.get(..19).unwrap_or(&full).replacen('T', " ", 1)
}

pub(super) fn span_text(f: &FeedLine) -> String {
    if f.events == 0 && f.first_ts == 0 && f.last_ts == 0 {
        "no events".to_string()
    } else {
        format!("{} to {} UTC", utc(f.first_ts), utc(f.last_ts))
    }
}

/// A decimal with an explicit `+` when positive; text that is not a decimal is kept as is.
pub(super) fn signed(s: &str) -> String {
    let s = s.trim();
    match s.parse::<Decimal>() {
        Ok(d) if d.is_sign_positive() && !d.is_zero() && !s.starts_with('+') => format!("+{s}"),
        _ => s.to_string(),
    }
}

pub(super) fn sign_class(s: &str) -> &'static str {
    match s.trim().parse::<Decimal>() {
        Ok(d) if d.is_zero() => "",
        Ok(d) if d.is_sign_negative() => "neg",
        Ok(_) => "pos",
        Err(_) => "",
    }
}

/// PnL as a signed percentage of the start equity, two decimals; `None` when either is not a
/// decimal or the start equity is zero.
pub(super) fn pnl_percent(t: &TradingLine) -> Option<String> {
    let start = t.start_equity.trim().parse::<Decimal>().ok()?;
    let pnl = t.pnl.trim().parse::<Decimal>().ok()?;
    let pct = pnl
        .checked_mul(Decimal::ONE_HUNDRED)?
        .checked_div(start)?
        .round_dp(2);
    Some(signed(&pct.to_string()))
}

/// Counts people read at a glance: `950`, `12 k`, `9.5 k`, `350 M`, `1.2 G`.
pub(super) fn human_count(n: u64) -> String {
    const UNITS: [(u128, &str); 3] = [(1_000, "k"), (1_000_000, "M"), (1_000_000_000, "G")];
    if n < 1_000 {
        return n.to_string();
    }
    let n = u128::from(n);
    for (i, (unit, suffix)) in UNITS.iter().enumerate() {
        let tenths = (n * 10 + unit / 2) / unit;
        if tenths < 100 {
            return format!("{}.{} {suffix}", tenths / 10, tenths % 10);
        }
        let whole = (n + unit / 2) / unit;
        if whole < 1_000 || i == UNITS.len() - 1 {
            return format!("{whole} {suffix}");
        }
    }
    n.to_string()
}

/// `12.3 s`, `4 m 05 s`, `2 h 03 m 10 s`.
pub(super) fn human_secs(secs: f64) -> String {
    if !secs.is_finite() || secs < 60.0 {
        return format!("{secs:.1} s");
    }
    // `as` saturates; a run is far shorter than u64::MAX seconds.
    let s = secs.round() as u64;
    if s < 3_600 {
        format!("{} m {:02} s", s / 60, s % 60)
    } else {
        format!("{} h {:02} m {:02} s", s / 3_600, s % 3_600 / 60, s % 60)
    }
}

/// Rejection reasons, most frequent first (ties by code).
pub(super) fn rejections_sorted(rejections: &BTreeMap<String, u64>) -> Vec<(&String, u64)> {
    let mut v: Vec<(&String, u64)> = rejections.iter().map(|(k, c)| (k, *c)).collect();
    // Stable: equal counts keep the map's code order.
    v.sort_by_key(|r| std::cmp::Reverse(r.1));
    v
}

/// Denied attempts, most frequent first (ties by plugin, then capability).
pub(super) fn denied_sorted(denied: &[DeniedLine]) -> Vec<&DeniedLine> {
    let mut v: Vec<&DeniedLine> = denied.iter().collect();
    v.sort_by(|a, b| {
        b.count
            .cmp(&a.count)
            .then_with(|| a.plugin.cmp(&b.plugin))
            .then_with(|| a.capability.cmp(&b.capability))
    });
    v
}
