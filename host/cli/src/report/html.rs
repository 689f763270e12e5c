//! The report as a self-contained HTML page (`--report FILE.html`).

use super::chart::write_equity_svg;
use super::format::{
    denied_sorted, escape_html, human_count, human_secs, pnl_percent, rejections_sorted,
    sign_class, signed, span_text, truncate, utc,
};
use super::{RunReport, TradingLine, reason_text, verdict_line};
use std::fmt;
use std::fmt::Write as _;
use std::io::Write as _;
use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};

/// Longest plugin-supplied text (errors, details) shown in the HTML page, in characters:
/// the page stays readable however verbose a plugin's errors are.
const HTML_TEXT_CHARS: usize = 1_000;

/// One self-contained HTML5 page: inline CSS, an inline SVG equity chart, no scripts and no
/// external resources (its Content-Security-Policy forbids both). Every string is escaped.
pub fn render_html(r: &RunReport) -> String {
    let mut out = String::new();
    // Writing to a `String` cannot fail.
    let _ = write_html_page(&mut out, r);
    out
}

/// Writes [`render_html`]'s page to `path` atomically: a temporary file in the same directory,
/// flushed to disk, then renamed over `path`, so a reader never sees half a report.
pub fn write_html(r: &RunReport, path: &Path) -> std::io::Result<()> {
    let name = path.file_name().ok_or_else(|| {
        std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            format!("report path {} has no file name", path.display()),
        )
    })?;
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    let mut tmp_name = std::ffi::OsString::from(".");
    tmp_name.push(name);
    tmp_name.push(format!(".{}.{nanos}.tmp", std::process::id()));
    let tmp = dir.join(tmp_name);
    let written = (|| {
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&tmp)?;
        file.write_all(render_html(r).as_bytes())?;
        file.sync_all()?;
        std::fs::rename(&tmp, path)
    })();
    if written.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    written
}

const CSS: &str = "\
body{font-family:system-ui,-apple-system,'Segoe UI',sans-serif;margin:2rem auto;max-width:72rem;\
padding:0 1rem;color:#1d2329;background:#fff}\
h1{font-size:1.5rem;margin-bottom:.25rem}h2{font-size:1.15rem;margin-top:2rem;\
border-bottom:1px solid #d0d7de;padding-bottom:.25rem}h3{font-size:1rem}\
table{border-collapse:collapse;margin:.5rem 0}\
th,td{padding:.25rem .75rem;border-bottom:1px solid #eaeef2;text-align:left;vertical-align:top}\
th{background:#f6f8fa;font-weight:600}\
td.num,th.num{text-align:right;font-variant-numeric:tabular-nums}\
td.err{max-width:32rem;overflow-wrap:anywhere}\
code,.mono{font-family:ui-monospace,SFMono-Regular,Menlo,Consolas,monospace}\
.pos{color:#1a7f37}.neg{color:#cf222e}.empty{color:#57606a;font-style:italic}\
.summary{color:#57606a;margin-top:0}\
.verdict{padding:.25rem .75rem;border-left:4px solid}.verdict.ok{border-color:#1a7f37}\
.verdict.bad{border-color:#cf222e;background:#fff5f5}\
svg{max-width:100%;height:auto;border:1px solid #eaeef2}\
svg text{font-family:ui-monospace,SFMono-Regular,Menlo,Consolas,monospace;font-size:11px;fill:#57606a}\
";

fn write_html_page(out: &mut String, r: &RunReport) -> fmt::Result {
    out.push_str("<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n");
    out.push_str("<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n");
    out.push_str(
        "<meta http-equiv=\"Content-Security-Policy\" \
         content=\"default-src 'none'; style-src 'unsafe-inline'\">\n",
    );
    writeln!(
        out,
        "<title>colony run report: {}</title>",
        escape_html(&r.reason)
    )?;
    writeln!(out, "<style>{CSS}</style>\n</head>\n<body>")?;
    out.push_str("<h1>colony run report</h1>\n");
    let class = if r.repeatability.repeatable {
        "ok"
    } else {
        "bad"
    };
    writeln!(
        out,
        "<div class=\"verdict {class}\"><p><strong>{}</strong></p>",
        escape_html(&verdict_line(r))
    )?;
    if !r.repeatability.reasons.is_empty() {
        out.push_str("<ul>\n");
        for n in &r.repeatability.reasons {
            writeln!(
                out,
                "<li>{}</li>",
                escape_html(&truncate(&reason_text(n), HTML_TEXT_CHARS))
            )?;
        }
        out.push_str("</ul>\n");
    }
    out.push_str("</div>\n");
    writeln!(
        out,
        "<p class=\"summary\">{} &middot; wall {}</p>",
        escape_html(&r.reason),
        human_secs(r.wall.secs)
    )?;

    out.push_str("<h2>Feed</h2>\n");
    match &r.feed {
        None => out.push_str("<p class=\"empty\">no market-data feed</p>\n"),
        Some(f) => {
            out.push_str("<table>\n");
            kv_row(out, "venue", &escape_html(&f.venue))?;
            kv_row(out, "events", &f.events.to_string())?;
            kv_row(out, "data-quality issues", &f.issues.to_string())?;
            kv_row(out, "span (UTC)", &escape_html(&span_text(f)))?;
            kv_row(
                out,
                "events/s",
                &format!("{:.0}", r.wall.events_per_sec.unwrap_or(0.0)),
            )?;
            kv_row(out, "finished", if f.finished { "yes" } else { "no" })?;
            out.push_str("</table>\n");
            if !f.agents.is_empty() {
                out.push_str(
                    "<table>\n<tr><th>agent</th><th class=\"num\">published</th>\
                     <th class=\"num\">delivered</th><th class=\"num\">dropped</th></tr>\n",
                );
                for a in &f.agents {
                    writeln!(
                        out,
                        "<tr><td class=\"mono\">{}</td><td class=\"num\">{}</td>\
                         <td class=\"num\">{}</td><td class=\"num\">{}</td></tr>",
                        escape_html(&a.agent),
                        a.published,
                        a.delivered,
                        a.dropped
                    )?;
                }
                out.push_str("</table>\n");
            }
        }
    }

    out.push_str("<h2>Trading</h2>\n");
    match &r.trading {
        None => out.push_str("<p class=\"empty\">no trading</p>\n"),
        Some(t) => write_trading_html(out, t)?,
    }

    out.push_str("<h2>Agents</h2>\n");
    if r.agents.is_empty() {
        out.push_str("<p class=\"empty\">no plugins</p>\n");
    } else {
        out.push_str(
            "<table>\n<tr><th>plugin</th><th>kind</th><th>state</th>\
             <th class=\"num\">delivered</th><th class=\"num\">failed</th>\
             <th class=\"num\">restarts</th><th class=\"num\">fuel</th>\
             <th class=\"num\">busy ms</th><th>last error</th></tr>\n",
        );
        for a in &r.agents {
            writeln!(
                out,
                "<tr><td class=\"mono\">{}</td><td>{}</td><td>{}</td><td class=\"num\">{}</td>\
                 <td class=\"num\">{}</td><td class=\"num\">{}</td>\
                 <td class=\"num\" title=\"{}\">{}</td><td class=\"num\">{:.1}</td>\
                 <td class=\"err\">{}</td></tr>",
                escape_html(&a.name),
                escape_html(&a.kind),
                escape_html(&a.state),
                a.delivered,
                a.failed,
                a.restarts,
                a.fuel,
                human_count(a.fuel),
                r.wall.busy_ms.get(&a.name).copied().unwrap_or(0.0),
                a.last_error.as_deref().map_or_else(
                    || "-".to_string(),
                    |e| escape_html(&truncate(e, HTML_TEXT_CHARS))
                )
            )?;
        }
        out.push_str("</table>\n");
    }

    out.push_str("<h2>Supervision</h2>\n");
    if r.wall.lifecycle.is_empty() {
        out.push_str(
            "<p class=\"empty\">no restarts, quarantines or other supervision events</p>\n",
        );
    } else {
        out.push_str("<table>\n<tr><th>time (UTC)</th><th>plugin</th><th>event</th></tr>\n");
        for l in &r.wall.lifecycle {
            writeln!(
                out,
                "<tr><td class=\"mono\">{}</td><td class=\"mono\">{}</td><td class=\"err\">{}</td></tr>",
                utc(l.ts),
                escape_html(&l.plugin),
                escape_html(&truncate(&l.detail, HTML_TEXT_CHARS))
            )?;
        }
        out.push_str("</table>\n");
    }

    out.push_str("<h2>Denied capability attempts</h2>\n");
    let denied = denied_sorted(&r.denied);
    if denied.is_empty() {
        out.push_str("<p class=\"empty\">none</p>\n");
    } else {
        out.push_str(
            "<table>\n<tr><th>plugin</th><th>capability</th><th class=\"num\">count</th></tr>\n",
        );
        for d in denied {
            writeln!(
                out,
                "<tr><td class=\"mono\">{}</td><td><code>{}</code></td><td class=\"num\">{}</td></tr>",
                escape_html(&d.plugin),
                escape_html(&d.capability),
                d.count
            )?;
        }
        out.push_str("</table>\n");
    }

    out.push_str("<h2>Refused files</h2>\n");
    if r.refused.is_empty() {
        out.push_str("<p class=\"empty\">none</p>\n");
    } else {
        out.push_str("<ul>\n");
        for f in &r.refused {
            writeln!(
                out,
                "<li><code>{}</code></li>",
                escape_html(&truncate(f, HTML_TEXT_CHARS))
            )?;
        }
        out.push_str("</ul>\n");
    }

    out.push_str("</body>\n</html>\n");
    Ok(())
}

fn write_trading_html(out: &mut String, t: &TradingLine) -> fmt::Result {
    out.push_str("<table>\n");
    kv_row(out, "venue", &escape_html(&t.venue))?;
    kv_row(out, "start equity", &escape_html(&t.start_equity))?;
    kv_row(out, "end equity", &escape_html(&t.end_equity))?;
    let pnl = match pnl_percent(t) {
        Some(p) => format!("{} ({p} %)", signed(&t.pnl)),
        None => signed(&t.pnl),
    };
    kv_row(
        out,
        "pnl",
        &format!(
            "<span class=\"{}\">{}</span>",
            sign_class(&t.pnl),
            escape_html(&pnl)
        ),
    )?;
    kv_row(out, "orders placed", &t.orders_placed.to_string())?;
    kv_row(out, "orders rejected", &t.orders_rejected.to_string())?;
    kv_row(out, "fills", &t.fills.to_string())?;
    kv_row(out, "cancels", &t.cancels.to_string())?;
    out.push_str("</table>\n");

    out.push_str("<h3>Equity</h3>\n");
    write_equity_svg(out, t)?;

    out.push_str("<h3>Rejections by reason</h3>\n");
    let rejections = rejections_sorted(&t.rejections);
    if rejections.is_empty() {
        out.push_str("<p class=\"empty\">none</p>\n");
    } else {
        out.push_str("<table>\n<tr><th>reason</th><th class=\"num\">count</th></tr>\n");
        for (code, count) in rejections {
            writeln!(
                out,
                "<tr><td><code>{}</code></td><td class=\"num\">{count}</td></tr>",
                escape_html(code)
            )?;
        }
        out.push_str("</table>\n");
    }

    out.push_str("<h3>Accounts</h3>\n");
    if t.accounts.is_empty() {
        out.push_str("<p class=\"empty\">none</p>\n");
    } else {
        out.push_str(
            "<table>\n<tr><th>agent</th><th class=\"num\">equity</th><th class=\"num\">pnl</th></tr>\n",
        );
        for (agent, equity, pnl) in &t.accounts {
            writeln!(
                out,
                "<tr><td class=\"mono\">{}</td><td class=\"num\">{}</td>\
                 <td class=\"num {}\">{}</td></tr>",
                escape_html(agent),
                escape_html(equity),
                sign_class(pnl),
                escape_html(&signed(pnl))
            )?;
        }
        out.push_str("</table>\n");
    }

    if !t.positions.is_empty() {
        out.push_str("<h3>Open positions</h3>\n");
        out.push_str(
            "<table>\n<tr><th>agent</th><th>symbol</th><th class=\"num\">qty</th>\
             <th class=\"num\">avg price</th><th class=\"num\">realised</th>\
             <th class=\"num\">unrealised</th></tr>\n",
        );
        for (agent, symbol, qty, avg, realised, unrealised) in &t.positions {
            writeln!(
                out,
                "<tr><td class=\"mono\">{}</td><td>{}</td><td class=\"num\">{}</td>\
                 <td class=\"num\">{}</td><td class=\"num {}\">{}</td>\
                 <td class=\"num {}\">{}</td></tr>",
                escape_html(agent),
                escape_html(symbol),
                escape_html(qty),
                escape_html(avg),
                sign_class(realised),
                escape_html(&signed(realised)),
                sign_class(unrealised),
                escape_html(&signed(unrealised))
            )?;
        }
        out.push_str("</table>\n");
    }
    Ok(())
}

fn kv_row(out: &mut String, key: &str, value_html: &str) -> fmt::Result {
    writeln!(out, "<tr><th>{key}</th><td>{value_html}</td></tr>")
}
