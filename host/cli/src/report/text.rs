//! The report as text, for the terminal.

use super::format::{
    clean, denied_sorted, human_count, human_secs, pnl_percent, rejections_sorted, signed,
    span_text, truncate, utc,
};
use super::{RunReport, TradingLine, reason_text, verdict_line};
use std::fmt;
use std::fmt::Write as _;

/// The terminal report: plain text in fixed-width columns, no colours. Every string a plugin
/// controls has its control characters escaped, so a name or an error cannot move the cursor
/// or recolour the operator's terminal.
pub fn render_text(r: &RunReport) -> String {
    let mut out = String::new();
    // Writing to a `String` cannot fail.
    let _ = write_text(&mut out, r);
    out
}

fn write_text(out: &mut String, r: &RunReport) -> fmt::Result {
    writeln!(
        out,
        "colony run report: {} (wall {})",
        clean(&r.reason),
        human_secs(r.wall.secs)
    )?;
    writeln!(out, "{}", verdict_line(r))?;
    for n in &r.repeatability.reasons {
        writeln!(
            out,
            "  - {}",
            truncate(&clean(&reason_text(n)), TEXT_DETAIL_CHARS)
        )?;
    }

    writeln!(out)?;
    match &r.feed {
        None => writeln!(out, "feed: none")?,
        Some(f) => {
            writeln!(
                out,
                "feed {}: {} events, {} data-quality issues, {}, {:.0} events/s{}",
                clean(&f.venue),
                f.events,
                f.issues,
                span_text(f),
                r.wall.events_per_sec.unwrap_or(0.0),
                if f.finished { " (finished)" } else { "" }
            )?;
            if !f.agents.is_empty() {
                writeln!(
                    out,
                    "  {:<24} {:>10} {:>10} {:>8}",
                    "agent", "published", "delivered", "dropped"
                )?;
                for a in &f.agents {
                    writeln!(
                        out,
                        "  {:<24} {:>10} {:>10} {:>8}",
                        clean(&a.agent),
                        a.published,
                        a.delivered,
                        a.dropped
                    )?;
                }
            }
        }
    }

    writeln!(out)?;
    match &r.trading {
        None => writeln!(out, "trading: none")?,
        Some(t) => write_trading_text(out, t)?,
    }

    writeln!(out)?;
    if r.agents.is_empty() {
        writeln!(out, "agents: none")?;
    } else {
        writeln!(out, "agents")?;
        writeln!(
            out,
            "  {:<24} {:<6} {:<12} {:>9} {:>7} {:>8} {:>8} {:>10}  last error",
            "plugin", "kind", "state", "delivered", "failed", "restarts", "fuel", "busy"
        )?;
        for a in &r.agents {
            writeln!(
                out,
                "  {:<24} {:<6} {:<12} {:>9} {:>7} {:>8} {:>8} {:>10}  {}",
                clean(&a.name),
                clean(&a.kind),
                clean(&a.state),
                a.delivered,
                a.failed,
                a.restarts,
                human_count(a.fuel),
                crate::human::duration_ms(r.wall.busy_ms.get(&a.name).copied().unwrap_or(0.0)),
                a.last_error.as_deref().map_or_else(
                    || "-".to_string(),
                    |e| truncate(&clean(e), TEXT_ERROR_CHARS)
                )
            )?;
        }
    }

    writeln!(out)?;
    if r.wall.lifecycle.is_empty() {
        writeln!(out, "supervision: none")?;
    } else {
        writeln!(out, "supervision")?;
        for l in &r.wall.lifecycle {
            writeln!(
                out,
                "  {}  {:<24} {}",
                utc(l.ts),
                clean(&l.plugin),
                truncate(&clean(&l.detail), TEXT_DETAIL_CHARS)
            )?;
        }
    }

    writeln!(out)?;
    let denied = denied_sorted(&r.denied);
    if denied.is_empty() {
        writeln!(out, "denied capability attempts: none")?;
    } else {
        writeln!(out, "denied capability attempts")?;
        writeln!(
            out,
            "  {:<24} {:<40} {:>7}",
            "plugin", "capability", "count"
        )?;
        for d in denied {
            writeln!(
                out,
                "  {:<24} {:<40} {:>7}",
                clean(&d.plugin),
                clean(&d.capability),
                d.count
            )?;
        }
    }

    writeln!(out)?;
    if r.refused.is_empty() {
        writeln!(out, "refused files: none")?;
    } else {
        writeln!(out, "refused files")?;
        for f in &r.refused {
            writeln!(out, "  {}", truncate(&clean(f), TEXT_DETAIL_CHARS))?;
        }
    }
    Ok(())
}

fn write_trading_text(out: &mut String, t: &TradingLine) -> fmt::Result {
    writeln!(out, "trading ({})", clean(&t.venue))?;
    writeln!(out, "  {:<14} {}", "start equity", clean(&t.start_equity))?;
    writeln!(out, "  {:<14} {}", "end equity", clean(&t.end_equity))?;
    match pnl_percent(t) {
        Some(p) => writeln!(out, "  {:<14} {} ({p} %)", "pnl", clean(&signed(&t.pnl)))?,
        None => writeln!(out, "  {:<14} {}", "pnl", clean(&signed(&t.pnl)))?,
    }
    writeln!(
        out,
        "  {:<14} {} placed, {} rejected",
        "orders", t.orders_placed, t.orders_rejected
    )?;
    writeln!(out, "  {:<14} {}", "fills", t.fills)?;
    writeln!(out, "  {:<14} {}", "cancels", t.cancels)?;
    let rejections = rejections_sorted(&t.rejections);
    if !rejections.is_empty() {
        writeln!(out, "  rejections by reason")?;
        for (code, count) in rejections {
            writeln!(out, "    {:<32} {count:>7}", clean(code))?;
        }
    }
    if !t.accounts.is_empty() {
        writeln!(out, "  accounts")?;
        writeln!(out, "    {:<24} {:>20} {:>16}", "agent", "equity", "pnl")?;
        for (agent, equity, pnl) in &t.accounts {
            writeln!(
                out,
                "    {:<24} {:>20} {:>16}",
                clean(agent),
                clean(equity),
                clean(&signed(pnl))
            )?;
        }
    }
    if !t.positions.is_empty() {
        writeln!(out, "  open positions")?;
        writeln!(
            out,
            "    {:<24} {:<12} {:>14} {:>14} {:>14} {:>14}",
            "agent", "symbol", "qty", "avg price", "realised", "unrealised"
        )?;
        for (agent, symbol, qty, avg, realised, unrealised) in &t.positions {
            writeln!(
                out,
                "    {:<24} {:<12} {:>14} {:>14} {:>14} {:>14}",
                clean(agent),
                clean(symbol),
                clean(qty),
                clean(avg),
                clean(&signed(realised)),
                clean(&signed(unrealised))
            )?;
        }
    }
    Ok(())
}

/// Longest last error in the agents table, in characters.
const TEXT_ERROR_CHARS: usize = 60;
/// Longest supervision detail or refusal line, in characters.
pub(super) const TEXT_DETAIL_CHARS: usize = 160;
