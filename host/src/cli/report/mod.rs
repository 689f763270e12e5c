//! The report `colony run` ends with: whether the run was repeatable (and if not, why), then
//! what it did (feed, trading, agents, supervision, denied capability attempts), as text for
//! the terminal, as a self-contained HTML page with an equity-curve chart (`--report
//! FILE.html`) and as JSON (`--report-json FILE.json`).
//!
//! Everything measured on the wall clock sits in one place, [`RunReport::wall`] (`"wall"` in
//! the JSON), so two runs of the same replay can be compared by dropping that one key.
//!
//! Money is carried as decimal strings (`rust_decimal` on the host), never floats; only the
//! chart's pixel coordinates are computed in floating point.

use std::collections::BTreeMap;
use std::fmt::{self, Write as _};
use std::io::Write as _;
use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};

use rust_decimal::Decimal;
use rust_decimal::prelude::ToPrimitive;
use serde::Serialize;

/// Everything the run report shows.
#[derive(Debug, Clone, Default, Serialize)]
pub struct RunReport {
    /// Whether the run can be repeated exactly; first in every form of the report.
    pub repeatability: Repeatability,
    /// Why the run stopped (`replay finished`, `interrupted`, `duration reached`, …).
    pub reason: String,
    /// The seed of the agents' WASI randomness in a replay; `None`: the OS's randomness.
    pub seed: Option<u64>,
    /// The market-data feed, when the host had one.
    pub feed: Option<FeedLine>,
    /// The paper (or live) venue's figures, when the host traded.
    pub trading: Option<TradingLine>,
    /// Every plugin, by name.
    pub agents: Vec<AgentLine>,
    /// Denied capability attempts from the audit, per plugin and capability.
    pub denied: Vec<DeniedLine>,
    /// Plugin files the host refused (`file: reason`).
    pub refused: Vec<String>,
    /// What the wall clock measured: differs between runs even when everything else repeats.
    pub wall: WallLine,
}

/// The verdict at the top of a report.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Repeatability {
    /// Nothing that depends on the machine (its load, its clock, its randomness) reached the
    /// agents: the same replay, plugins and seed give the same report (less `wall`).
    pub repeatable: bool,
    /// Why not, in agent order after the run-wide reasons; empty when repeatable.
    pub reasons: Vec<NotRepeatable>,
}

/// One reason a run was not repeatable.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct NotRepeatable {
    /// The plugin concerned; `None` for the run as a whole.
    pub agent: Option<String>,
    /// What happened.
    pub reason: String,
}

/// How the run was driven, as far as repeatability goes.
#[derive(Debug, Clone, Copy, Default)]
pub struct RunFacts {
    /// Agents read a virtual clock driven by a replay or the synthetic feed.
    pub replay: bool,
    /// The feed waited for the agents after each event (a recorded replay at `--speed max`
    /// or N).
    pub lockstep: bool,
    /// The bus was joined to other hosts (NATS).
    pub remote_bus: bool,
    /// Orders went to a live venue.
    pub live_venue: bool,
    /// Times the lockstep replay went on before its agents had settled (after their
    /// wall-clock hang guard).
    pub settle_timeouts: u64,
}

/// The wall-clock figures, apart from the rest.
#[derive(Debug, Clone, Default, Serialize)]
pub struct WallLine {
    /// Seconds from the host's start to the report.
    pub secs: f64,
    /// Feed events per wall-clock second; `None` without a feed.
    pub events_per_sec: Option<f64>,
    /// Milliseconds each agent spent in its handlers.
    pub busy_ms: BTreeMap<String, f64>,
    /// Supervision events from the audit (restarts, quarantines, releases, sleeps, breakers):
    /// wall-clock times, and details that name waits in wall-clock ms.
    pub lifecycle: Vec<LifecycleLine>,
}

/// The feed's figures.
#[derive(Debug, Clone, Default, Serialize)]
pub struct FeedLine {
    /// `replay`, `synthetic`, `okx`.
    pub venue: String,
    /// Events published.
    pub events: u64,
    /// Data-quality issues found.
    pub issues: u64,
    /// Whether the feed reached its end (a replay that played every event).
    pub finished: bool,
    /// Host-clock time of the first and last event (ns since the epoch; virtual in a replay).
    pub first_ts: u64,
    /// See `first_ts`.
    pub last_ts: u64,
    /// Per agent that received market data, by name.
    pub agents: Vec<FeedAgentLine>,
}

/// Market events routed to one agent and handed to it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct FeedAgentLine {
    /// Plugin name.
    pub agent: String,
    /// Market events the bus routed to its mailbox (while it was subscribed).
    pub published: u64,
    /// Market events it was handed.
    pub delivered: u64,
    /// Market events its full mailbox dropped.
    pub dropped: u64,
}

/// Trading figures. Decimals are strings (exact).
#[derive(Debug, Clone, Default, Serialize)]
pub struct TradingLine {
    /// Venue name (`paper`, `okx`, `alpaca`).
    pub venue: String,
    /// Equity of all trading agents together at the start.
    pub start_equity: String,
    /// Equity at the end.
    pub end_equity: String,
    /// `end_equity - start_equity`.
    pub pnl: String,
    /// (host-clock ns, total equity) samples over the run, in time order.
    pub equity_curve: Vec<(u64, String)>,
    /// Orders placed through the router.
    pub orders_placed: u64,
    /// Orders rejected (risk or venue).
    pub orders_rejected: u64,
    /// Fills.
    pub fills: u64,
    /// Cancels.
    pub cancels: u64,
    /// Rejections by reason code (`risk.max-notional`, …).
    pub rejections: BTreeMap<String, u64>,
    /// Per-agent accounts: (agent, equity, pnl).
    pub accounts: Vec<(String, String, String)>,
    /// Open positions: (agent, symbol, qty, avg price, realised pnl, unrealised pnl).
    pub positions: Vec<(String, String, String, String, String, String)>,
}

/// One plugin's line.
#[derive(Debug, Clone, Default, Serialize)]
pub struct AgentLine {
    /// Plugin name.
    pub name: String,
    /// `agent` or `tool`.
    pub kind: String,
    /// Lifecycle state at the end (`idle`, `sleeping`, `quarantined`, …).
    pub state: String,
    /// Events handled.
    pub delivered: u64,
    /// Events that failed.
    pub failed: u64,
    /// Restarts after a trap or an exceeded limit.
    pub restarts: u64,
    /// Times it was put to sleep.
    pub sleeps: u64,
    /// Market events its full mailbox dropped.
    pub dropped: u64,
    /// Events its full mailbox (or command queue) refused.
    pub refused: u64,
    /// Messages that expired before it received them.
    pub expired: u64,
    /// Fuel used over the run.
    pub fuel: u64,
    /// The last failure, if any.
    pub last_error: Option<String>,
}

/// One supervision event.
#[derive(Debug, Clone, Default, Serialize)]
pub struct LifecycleLine {
    /// Plugin name.
    pub plugin: String,
    /// The audit kind: `lifecycle` (an agent's) or `breaker` (a tool's circuit breaker).
    pub kind: String,
    /// What happened (`restarted after 100 ms: …`, `quarantined: …`).
    pub detail: String,
    /// Wall-clock time (ns since the epoch) of the audit record.
    pub ts: u64,
}

/// Denied attempts of one capability by one plugin.
#[derive(Debug, Clone, Default, Serialize)]
pub struct DeniedLine {
    /// Plugin name.
    pub plugin: String,
    /// The capability it lacked.
    pub capability: String,
    /// How many times.
    pub count: u64,
}

impl Repeatability {
    /// The verdict on a run driven as `facts` whose figures are `r` (its feed, agents and
    /// supervision events): repeatable only when agents read a lockstep replay and no agent
    /// failed an event, restarted, was quarantined or slept, lost a delivery, and no circuit
    /// breaker opened (each of these depends on timing the machine decides).
    pub fn judge(facts: &RunFacts, r: &RunReport) -> Repeatability {
        let mut reasons = Vec::new();
        let mut run = |reason: String| {
            reasons.push(NotRepeatable {
                agent: None,
                reason,
            })
        };
        if !facts.replay {
            run("no replay: agents read the system clock and the OS's randomness".into());
        } else {
            if !facts.lockstep {
                run(
                    "the feed did not wait for the agents (--speed fast, or the synthetic feed)"
                        .into(),
                );
            }
            if let Some(f) = &r.feed
                && !f.finished
            {
                run(format!("the replay stopped before its end ({})", r.reason));
            }
        }
        if facts.remote_bus {
            run("the bus was joined to other hosts (NATS)".into());
        }
        if facts.live_venue {
            run("orders went to a live venue".into());
        }
        if facts.settle_timeouts > 0 {
            run(format!(
                "the replay went on {} before its agents had settled (the wall-clock hang guard)",
                times(facts.settle_timeouts)
            ));
        }
        let mut per_agent: BTreeMap<&str, Vec<String>> = BTreeMap::new();
        for a in &r.agents {
            let mut why = Vec::new();
            if a.state == "quarantined" {
                why.push("quarantined".to_string());
            }
            if a.restarts > 0 {
                why.push(format!(
                    "restarted {} after a trap or an exceeded limit",
                    times(a.restarts)
                ));
            }
            if a.state == "failed" {
                why.push("its instance had failed and not restarted when the run ended".into());
            }
            if a.failed > 0 {
                let last = a
                    .last_error
                    .as_deref()
                    .map(|e| format!(" (last: {})", truncate(e, TEXT_DETAIL_CHARS)))
                    .unwrap_or_default();
                why.push(format!("{} failed{last}", count(a.failed, "event")));
            }
            if a.sleeps > 0 {
                why.push(format!("put to sleep {}", times(a.sleeps)));
            }
            if a.dropped > 0 {
                why.push(format!(
                    "{} dropped by its full mailbox",
                    count(a.dropped, "market event")
                ));
            }
            if a.refused > 0 {
                why.push(format!(
                    "{} refused by its full mailbox",
                    count(a.refused, "event")
                ));
            }
            if a.expired > 0 {
                why.push(format!(
                    "{} expired before delivery",
                    count(a.expired, "message")
                ));
            }
            per_agent.entry(&a.name).or_default().extend(why);
        }
        if let Some(f) = &r.feed {
            for fa in &f.agents {
                let lost = fa.published.saturating_sub(fa.delivered + fa.dropped);
                if lost > 0 {
                    per_agent.entry(&fa.agent).or_default().push(format!(
                        "{lost} of {} market events routed to it were not delivered",
                        fa.published
                    ));
                }
            }
        }
        for l in &r.wall.lifecycle {
            if l.kind == "breaker" {
                per_agent.entry(&l.plugin).or_default().push(format!(
                    "circuit breaker: {}",
                    truncate(&l.detail, TEXT_DETAIL_CHARS)
                ));
            }
        }
        for (agent, why) in per_agent {
            for reason in why {
                reasons.push(NotRepeatable {
                    agent: Some(agent.to_string()),
                    reason,
                });
            }
        }
        Repeatability {
            repeatable: reasons.is_empty(),
            reasons,
        }
    }
}

/// `1 event`, `3 events`.
fn count(n: u64, what: &str) -> String {
    match n {
        1 => format!("1 {what}"),
        n => format!("{n} {what}s"),
    }
}

/// `once`, `twice`, `3 times`.
fn times(n: u64) -> String {
    match n {
        1 => "once".into(),
        2 => "twice".into(),
        n => format!("{n} times"),
    }
}

/// The verdict in one line of text (the reasons follow, one per line, in the text report).
fn verdict_line(r: &RunReport) -> String {
    let seed = match r.seed {
        Some(s) => format!("seed {s}"),
        None => "OS randomness".into(),
    };
    match r.repeatability.repeatable {
        true => format!("repeatable ({seed})"),
        false => format!("not repeatable ({seed}):"),
    }
}

fn reason_text(n: &NotRepeatable) -> String {
    match &n.agent {
        Some(a) => format!("{a}: {}", n.reason),
        None => n.reason.clone(),
    }
}

// ------------------------------------------------------------------------------------------
// Text

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
            "plugin", "kind", "state", "delivered", "failed", "restarts", "fuel", "busy ms"
        )?;
        for a in &r.agents {
            writeln!(
                out,
                "  {:<24} {:<6} {:<12} {:>9} {:>7} {:>8} {:>8} {:>10.1}  {}",
                clean(&a.name),
                clean(&a.kind),
                clean(&a.state),
                a.delivered,
                a.failed,
                a.restarts,
                human_count(a.fuel),
                r.wall.busy_ms.get(&a.name).copied().unwrap_or(0.0),
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
const TEXT_DETAIL_CHARS: usize = 160;

// ------------------------------------------------------------------------------------------
// HTML

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

// ------------------------------------------------------------------------------------------
// Equity chart

/// Most points in the chart's polyline; longer curves are downsampled (min and max of each
/// bucket, so drawdowns and peaks survive).
const MAX_CHART_POINTS: usize = 1_000;

const SVG_W: f64 = 800.0;
const SVG_H: f64 = 300.0;
const PLOT_LEFT: f64 = 120.0;
const PLOT_RIGHT: f64 = 780.0;
const PLOT_TOP: f64 = 20.0;
const PLOT_BOTTOM: f64 = 260.0;

/// One readable equity sample: time, exact value, and the text it came from (labels show the
/// text, so a decimal is never re-rendered).
struct Sample<'a> {
    ts: u64,
    equity: Decimal,
    text: &'a str,
}

fn write_equity_svg(out: &mut String, t: &TradingLine) -> fmt::Result {
    let samples: Vec<Sample<'_>> = t
        .equity_curve
        .iter()
        .filter_map(|(ts, text)| {
            let text = text.trim();
            text.parse::<Decimal>().ok().map(|equity| Sample {
                ts: *ts,
                equity,
                text,
            })
        })
        .collect();
    let unreadable = t.equity_curve.len() - samples.len();
    let note = if unreadable > 0 {
        format!(" ({unreadable} unreadable samples skipped)")
    } else {
        String::new()
    };
    let (first, last) = match samples.as_slice() {
        [] => {
            writeln!(out, "<p class=\"empty\">no equity samples{note}</p>")?;
            return Ok(());
        }
        [only] => {
            writeln!(
                out,
                "<p class=\"empty\">no equity samples to draw a curve from: one sample, {} at {} UTC{note}</p>",
                escape_html(only.text),
                utc(only.ts)
            )?;
            return Ok(());
        }
        [first, .., last] => (first, last),
    };

    // Labels come from the exact decimals; only the positions are floating point.
    let mut lowest = first;
    let mut highest = first;
    for s in &samples {
        if s.equity < lowest.equity {
            lowest = s;
        }
        if s.equity > highest.equity {
            highest = s;
        }
    }
    let base_text = t.start_equity.trim();
    let (base, base_text) = match base_text.parse::<Decimal>() {
        Ok(d) => (d, base_text),
        Err(_) => (first.equity, first.text),
    };
    let lo = lowest.equity.min(base).to_f64().unwrap_or(0.0);
    let hi = highest.equity.max(base).to_f64().unwrap_or(0.0);
    let t0 = samples.iter().map(|s| s.ts).min().unwrap_or(0);
    let t1 = samples.iter().map(|s| s.ts).max().unwrap_or(0);

    let y_of = |equity: Decimal| -> f64 {
        let v = equity.to_f64().unwrap_or(lo);
        if hi > lo {
            PLOT_BOTTOM - (v - lo) / (hi - lo) * (PLOT_BOTTOM - PLOT_TOP)
        } else {
            (PLOT_TOP + PLOT_BOTTOM) / 2.0
        }
    };
    let points: Vec<(f64, f64)> = samples
        .iter()
        .enumerate()
        .map(|(i, s)| {
            let frac = if t1 > t0 {
                s.ts.saturating_sub(t0) as f64 / (t1 - t0) as f64
            } else {
                // All samples at one instant: spread them evenly instead of stacking them.
                i as f64 / (samples.len() - 1) as f64
            };
            (PLOT_LEFT + frac * (PLOT_RIGHT - PLOT_LEFT), y_of(s.equity))
        })
        .collect();
    let points = downsample(&points, MAX_CHART_POINTS);

    writeln!(
        out,
        "<svg xmlns=\"http://www.w3.org/2000/svg\" viewBox=\"0 0 {SVG_W} {SVG_H}\" \
         width=\"{SVG_W}\" height=\"{SVG_H}\" role=\"img\" aria-label=\"equity curve\">"
    )?;
    writeln!(
        out,
        "<title>equity from {} to {} ({} samples)</title>",
        escape_html(first.text),
        escape_html(last.text),
        samples.len()
    )?;
    // Axes.
    writeln!(
        out,
        "<line x1=\"{PLOT_LEFT}\" y1=\"{PLOT_TOP}\" x2=\"{PLOT_LEFT}\" y2=\"{PLOT_BOTTOM}\" stroke=\"#8c959f\"/>\n\
         <line x1=\"{PLOT_LEFT}\" y1=\"{PLOT_BOTTOM}\" x2=\"{PLOT_RIGHT}\" y2=\"{PLOT_BOTTOM}\" stroke=\"#8c959f\"/>"
    )?;
    // Baseline at the start equity.
    let yb = y_of(base);
    writeln!(
        out,
        "<line class=\"baseline\" x1=\"{PLOT_LEFT}\" y1=\"{yb:.1}\" x2=\"{PLOT_RIGHT}\" y2=\"{yb:.1}\" \
         stroke=\"#8c959f\" stroke-dasharray=\"4 4\"/>\n\
         <text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"end\">start {}</text>",
        PLOT_RIGHT,
        yb - 4.0,
        escape_html(base_text)
    )?;
    // Min and max equity, at their heights.
    let y_hi = y_of(highest.equity);
    let y_lo = y_of(lowest.equity);
    writeln!(
        out,
        "<text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"end\">max {}</text>",
        PLOT_LEFT - 6.0,
        y_hi + 4.0,
        escape_html(highest.text)
    )?;
    if lowest.equity != highest.equity {
        writeln!(
            out,
            "<text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"end\">min {}</text>",
            PLOT_LEFT - 6.0,
            y_lo + 4.0,
            escape_html(lowest.text)
        )?;
    }
    // Start and end dates.
    writeln!(
        out,
        "<text x=\"{PLOT_LEFT}\" y=\"{:.1}\" text-anchor=\"start\">{} UTC</text>\n\
         <text x=\"{PLOT_RIGHT}\" y=\"{:.1}\" text-anchor=\"end\">{} UTC</text>",
        PLOT_BOTTOM + 18.0,
        utc(t0),
        PLOT_BOTTOM + 18.0,
        utc(t1)
    )?;
    let stroke = if last.equity < base {
        "#cf222e"
    } else {
        "#1a7f37"
    };
    out.push_str("<polyline fill=\"none\" stroke=\"");
    out.push_str(stroke);
    out.push_str("\" stroke-width=\"1.5\" points=\"");
    for (i, (x, y)) in points.iter().enumerate() {
        if i > 0 {
            out.push(' ');
        }
        write!(out, "{x:.1},{y:.1}")?;
    }
    out.push_str("\"/>\n</svg>\n");
    if !note.is_empty() {
        writeln!(out, "<p class=\"empty\">{}</p>", note.trim())?;
    }
    Ok(())
}

/// At most `max` of `points` (at least 4), keeping the first and the last and, from each
/// of the equal buckets in between, the lowest and the highest `y` in their original order.
fn downsample(points: &[(f64, f64)], max: usize) -> Vec<(f64, f64)> {
    let max = max.max(4);
    let n = points.len();
    if n <= max {
        return points.to_vec();
    }
    let interior = &points[1..n - 1];
    let buckets = (max - 2) / 2;
    let mut out = Vec::with_capacity(max);
    out.push(points[0]);
    for b in 0..buckets {
        let start = b * interior.len() / buckets;
        let end = (b + 1) * interior.len() / buckets;
        let Some(bucket) = interior.get(start..end) else {
            continue;
        };
        let mut lo = None::<usize>;
        let mut hi = None::<usize>;
        for (i, p) in bucket.iter().enumerate() {
            if lo.is_none_or(|j| p.1 < bucket[j].1) {
                lo = Some(i);
            }
            if hi.is_none_or(|j| p.1 > bucket[j].1) {
                hi = Some(i);
            }
        }
        match (lo, hi) {
            (Some(l), Some(h)) if l == h => out.push(bucket[l]),
            (Some(l), Some(h)) => {
                out.push(bucket[l.min(h)]);
                out.push(bucket[l.max(h)]);
            }
            _ => {}
        }
    }
    out.push(points[n - 1]);
    out
}

// ------------------------------------------------------------------------------------------
// Shared formatting

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
fn clean(s: &str) -> String {
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
fn truncate(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        return s.to_string();
    }
    let mut out: String = s.chars().take(max.saturating_sub(1)).collect();
    out.push('…');
    out
}

/// `YYYY-MM-DD HH:MM:SS` (UTC) from nanoseconds since the epoch.
fn utc(ns: u64) -> String {
    let full = crate::market::replay::format_utc(ns);
    // `format_utc` is `YYYY-MM-DDTHH:MM:SS.fffffffffZ`; keep whole seconds.
    full.get(..19).unwrap_or(&full).replacen('T', " ", 1)
}

fn span_text(f: &FeedLine) -> String {
    if f.events == 0 && f.first_ts == 0 && f.last_ts == 0 {
        "no events".to_string()
    } else {
        format!("{} to {} UTC", utc(f.first_ts), utc(f.last_ts))
    }
}

/// A decimal with an explicit `+` when positive; text that is not a decimal is kept as is.
fn signed(s: &str) -> String {
    let s = s.trim();
    match s.parse::<Decimal>() {
        Ok(d) if d.is_sign_positive() && !d.is_zero() && !s.starts_with('+') => format!("+{s}"),
        _ => s.to_string(),
    }
}

fn sign_class(s: &str) -> &'static str {
    match s.trim().parse::<Decimal>() {
        Ok(d) if d.is_zero() => "",
        Ok(d) if d.is_sign_negative() => "neg",
        Ok(_) => "pos",
        Err(_) => "",
    }
}

/// PnL as a signed percentage of the start equity, two decimals; `None` when either is not a
/// decimal or the start equity is zero.
fn pnl_percent(t: &TradingLine) -> Option<String> {
    let start = t.start_equity.trim().parse::<Decimal>().ok()?;
    let pnl = t.pnl.trim().parse::<Decimal>().ok()?;
    let pct = pnl
        .checked_mul(Decimal::ONE_HUNDRED)?
        .checked_div(start)?
        .round_dp(2);
    Some(signed(&pct.to_string()))
}

/// Counts people read at a glance: `950`, `12 k`, `9.5 k`, `350 M`, `1.2 G`.
fn human_count(n: u64) -> String {
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
fn human_secs(secs: f64) -> String {
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
fn rejections_sorted(rejections: &BTreeMap<String, u64>) -> Vec<(&String, u64)> {
    let mut v: Vec<(&String, u64)> = rejections.iter().map(|(k, c)| (k, *c)).collect();
    // Stable: equal counts keep the map's code order.
    v.sort_by_key(|r| std::cmp::Reverse(r.1));
    v
}

/// Denied attempts, most frequent first (ties by plugin, then capability).
fn denied_sorted(denied: &[DeniedLine]) -> Vec<&DeniedLine> {
    let mut v: Vec<&DeniedLine> = denied.iter().collect();
    v.sort_by(|a, b| {
        b.count
            .cmp(&a.count)
            .then_with(|| a.plugin.cmp(&b.plugin))
            .then_with(|| a.capability.cmp(&b.capability))
    });
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    const SEC: u64 = 1_000_000_000;
    /// 2023-11-14 22:13:20 UTC.
    const T0: u64 = 1_700_000_000 * SEC;

    fn sample() -> RunReport {
        RunReport {
            repeatability: Repeatability::default(),
            reason: "replay finished".into(),
            seed: Some(0),
            feed: Some(FeedLine {
                venue: "replay".into(),
                events: 5_000,
                issues: 2,
                finished: true,
                first_ts: T0,
                last_ts: T0 + 86_400 * SEC,
                agents: vec![FeedAgentLine {
                    agent: "trader".into(),
                    published: 5_000,
                    delivered: 4_990,
                    dropped: 10,
                }],
            }),
            trading: Some(TradingLine {
                venue: "paper".into(),
                start_equity: "100000".into(),
                end_equity: "100012.345".into(),
                pnl: "12.345".into(),
                equity_curve: vec![
                    (T0, "100000".into()),
                    (T0 + 60 * SEC, "99990.5".into()),
                    (T0 + 120 * SEC, "100012.345".into()),
                ],
                orders_placed: 12,
                orders_rejected: 4,
                fills: 9,
                cancels: 1,
                rejections: BTreeMap::from([
                    ("risk.max-notional".to_string(), 1),
                    ("venue.insufficient-funds".to_string(), 3),
                ]),
                accounts: vec![("trader".into(), "100012.345".into(), "12.345".into())],
                positions: vec![(
                    "trader".into(),
                    "BTC-USDT".into(),
                    "0.5".into(),
                    "42000.1".into(),
                    "10".into(),
                    "2.345".into(),
                )],
            }),
            agents: vec![AgentLine {
                name: "trader".into(),
                kind: "agent".into(),
                state: "idle".into(),
                delivered: 4_990,
                failed: 10,
                restarts: 1,
                fuel: 1_234_000_000,
                last_error: Some("x".repeat(200)),
                ..AgentLine::default()
            }],
            denied: vec![DeniedLine {
                plugin: "snoop".into(),
                capability: "net.connect:evil.example:443".into(),
                count: 7,
            }],
            refused: vec!["bad.wasm: not a component".into()],
            wall: WallLine {
                secs: 12.34,
                events_per_sec: Some(405.2),
                busy_ms: BTreeMap::from([("trader".to_string(), 812.5)]),
                lifecycle: vec![LifecycleLine {
                    plugin: "trader".into(),
                    kind: "lifecycle".into(),
                    detail: "restarted after 100 ms: fuel exhausted".into(),
                    ts: T0 + 30 * SEC,
                }],
            },
        }
    }

    fn replay() -> RunFacts {
        RunFacts {
            replay: true,
            lockstep: true,
            ..RunFacts::default()
        }
    }

    /// A report whose one agent and feed line are clean.
    fn clean_run() -> RunReport {
        let mut r = sample();
        r.agents[0] = AgentLine {
            name: "trader".into(),
            kind: "agent".into(),
            state: "idle".into(),
            delivered: 5_000,
            ..AgentLine::default()
        };
        if let Some(f) = r.feed.as_mut() {
            f.agents[0].delivered = 5_000;
            f.agents[0].dropped = 0;
        }
        r.wall.lifecycle.clear();
        r
    }

    fn verdict(facts: &RunFacts, r: &RunReport) -> Vec<String> {
        let v = Repeatability::judge(facts, r);
        assert_eq!(v.repeatable, v.reasons.is_empty());
        v.reasons.iter().map(reason_text).collect()
    }

    #[test]
    fn a_clean_lockstep_replay_is_repeatable() {
        let mut r = clean_run();
        assert_eq!(verdict(&replay(), &r), Vec::<String>::new());
        r.repeatability = Repeatability::judge(&replay(), &r);
        let text = render_text(&r);
        assert_eq!(text.lines().nth(1), Some("repeatable (seed 0)"), "{text}");
        assert!(
            render_html(&r).contains("<div class=\"verdict ok\"><p><strong>repeatable (seed 0)")
        );
        // A restart recorded only in the supervision history does not count twice, nor at
        // all: the agents' counters are what the verdict reads (a breaker is a tool's).
        r.wall.lifecycle = sample().wall.lifecycle;
        assert!(Repeatability::judge(&replay(), &r).repeatable);
    }

    #[test]
    fn each_machine_dependent_thing_makes_a_run_not_repeatable() {
        type Change = fn(&mut RunReport, &mut RunFacts);
        let cases: &[(Change, &str)] = &[
            (
                |_, f| f.replay = false,
                "no replay: agents read the system clock",
            ),
            (|_, f| f.lockstep = false, "--speed fast"),
            (
                |r, _| {
                    r.reason = "interrupted".into();
                    if let Some(f) = r.feed.as_mut() {
                        f.finished = false;
                    }
                },
                "the replay stopped before its end (interrupted)",
            ),
            (|_, f| f.remote_bus = true, "joined to other hosts"),
            (|_, f| f.live_venue = true, "live venue"),
            (
                |_, f| f.settle_timeouts = 2,
                "went on twice before its agents had settled",
            ),
            (
                |r, _| r.agents[0].state = "quarantined".into(),
                "trader: quarantined",
            ),
            (
                |r, _| r.agents[0].restarts = 2,
                "trader: restarted twice after a trap",
            ),
            (
                |r, _| r.agents[0].state = "failed".into(),
                "trader: its instance had failed",
            ),
            (
                |r, _| {
                    r.agents[0].failed = 3;
                    r.agents[0].last_error = Some("cpu time of 100 ms exceeded".into());
                },
                "trader: 3 events failed (last: cpu time of 100 ms exceeded)",
            ),
            (|r, _| r.agents[0].sleeps = 1, "trader: put to sleep once"),
            (
                |r, _| r.agents[0].dropped = 4,
                "trader: 4 market events dropped",
            ),
            (|r, _| r.agents[0].refused = 1, "trader: 1 event refused"),
            (|r, _| r.agents[0].expired = 2, "trader: 2 messages expired"),
            (
                |r, _| {
                    if let Some(f) = r.feed.as_mut() {
                        f.agents[0].delivered = 3_000;
                    }
                },
                "trader: 2000 of 5000 market events routed to it were not delivered",
            ),
            (
                |r, _| {
                    r.wall.lifecycle.push(LifecycleLine {
                        plugin: "echo-tool".into(),
                        kind: "breaker".into(),
                        detail: "closed -> open: 5 failures".into(),
                        ts: 0,
                    })
                },
                "echo-tool: circuit breaker: closed -> open",
            ),
        ];
        for (change, expected) in cases {
            let mut r = clean_run();
            let mut facts = replay();
            change(&mut r, &mut facts);
            let reasons = verdict(&facts, &r);
            assert!(
                reasons
                    .iter()
                    .any(|l| l.starts_with(expected) || l.contains(expected)),
                "{expected:?} not in {reasons:?}"
            );
            r.repeatability = Repeatability::judge(&facts, &r);
            let text = render_text(&r);
            let mut lines = text.lines().skip(1);
            assert!(
                lines
                    .next()
                    .is_some_and(|l| l.starts_with("not repeatable")),
                "{text}"
            );
            assert!(lines.next().is_some_and(|l| l.contains(expected)), "{text}");
            let html = render_html(&r);
            assert!(
                html.contains("<div class=\"verdict bad\"><p><strong>not repeatable"),
                "{html}"
            );
            assert!(html.contains(&escape_html(expected)), "{html}");
        }
    }

    #[test]
    fn the_json_keeps_every_wall_clock_figure_under_wall() {
        let r = sample();
        let text = serde_json::to_string(&r).expect("json");
        assert!(text.starts_with("{\"repeatability\":"), "{text}");
        let mut json = serde_json::to_value(&r).expect("json");
        let wall = json
            .as_object_mut()
            .and_then(|o| o.remove("wall"))
            .expect("wall");
        for key in ["secs", "events_per_sec", "busy_ms", "lifecycle"] {
            assert!(wall.get(key).is_some(), "wall.{key} missing: {wall}");
        }
        let rest = json.to_string();
        for wall_only in ["secs", "per_sec", "busy_ms", "lifecycle", "restarted after"] {
            assert!(
                !rest.contains(wall_only),
                "{wall_only} outside wall: {rest}"
            );
        }
    }

    fn polyline_points(html: &str) -> usize {
        let start = html.find("<polyline").expect("a polyline");
        let rest = &html[start..];
        let attr = rest.find("points=\"").expect("points") + "points=\"".len();
        let end = rest[attr..].find('"').expect("closing quote");
        rest[attr..attr + end].split_whitespace().count()
    }

    #[test]
    fn text_has_pnl_rejections_and_restart() {
        let text = render_text(&sample());
        assert!(
            text.starts_with("colony run report: replay finished (wall 12.3 s)"),
            "{text}"
        );
        assert!(text.contains("+12.345 (+0.01 %)"), "{text}");
        assert!(text.contains("100012.345"), "{text}");
        assert!(
            text.contains("2023-11-14 22:13:20 to 2023-11-15 22:13:20 UTC"),
            "{text}"
        );
        // Most frequent reason first.
        let funds = text.find("venue.insufficient-funds").expect("funds reason");
        let notional = text.find("risk.max-notional").expect("notional reason");
        assert!(funds < notional, "{text}");
        assert!(
            text.lines()
                .any(|l| l.contains("trader") && l.contains("restarted after 100 ms")),
            "{text}"
        );
        assert!(text.contains("1.2 G"), "{text}");
        assert!(text.contains("net.connect:evil.example:443"), "{text}");
        assert!(text.contains("bad.wasm: not a component"), "{text}");
        // The 200-character error is cut to 60.
        assert!(text.contains(&format!("{}…", "x".repeat(59))), "{text}");
        assert!(!text.contains(&"x".repeat(61)), "{text}");
    }

    #[test]
    fn negative_pnl_has_a_minus_sign() {
        let mut r = sample();
        if let Some(t) = r.trading.as_mut() {
            t.end_equity = "99987.655".into();
            t.pnl = "-12.345".into();
        }
        let text = render_text(&r);
        let pnl = text
            .lines()
            .find(|l| l.trim_start().starts_with("pnl"))
            .expect("pnl line");
        assert!(pnl.contains("-12.345 (-0.01 %)"), "{pnl}");
        assert!(!pnl.contains('+'), "{pnl}");
        let html = render_html(&r);
        assert!(
            html.contains("<span class=\"neg\">-12.345 (-0.01 %)</span>"),
            "{html}"
        );
    }

    #[test]
    fn html_is_self_contained_with_chart() {
        let html = render_html(&sample());
        assert!(html.starts_with("<!DOCTYPE html>"));
        assert!(html.contains("<svg"));
        assert_eq!(polyline_points(&html), 3);
        assert!(html.contains("max 100012.345"), "{html}");
        assert!(html.contains("min 99990.5"), "{html}");
        assert!(html.contains("start 100000"), "{html}");
        assert!(html.contains("2023-11-14 22:13:20 UTC"), "{html}");
        assert!(html.contains("2023-11-14 22:15:20 UTC"), "{html}");
        assert!(html.contains("restarted after 100 ms"), "{html}");
        for external in ["<script", "src=", "href=", "http://", "https://", "@import"] {
            // The SVG namespace is an identifier, not a fetch.
            let stripped = html.replace("xmlns=\"http://www.w3.org/2000/svg\"", "");
            assert!(!stripped.contains(external), "{external} in page");
        }
    }

    #[test]
    fn decimals_are_kept_exactly() {
        let mut r = sample();
        if let Some(t) = r.trading.as_mut() {
            t.end_equity = "100012.34500".into();
            t.equity_curve.push((T0 + 180 * SEC, "100012.34500".into()));
        }
        for page in [render_text(&r), render_html(&r)] {
            assert!(page.contains("100012.345"));
            assert!(page.contains("100012.34500"));
            assert!(!page.contains("100012.34499"));
            assert!(!page.contains("100012.3450000"));
        }
    }

    #[test]
    fn html_escapes_plugin_strings() {
        let hostile = "<script>alert(1)</script>";
        let mut r = sample();
        r.agents[0].name = hostile.into();
        r.agents[0].last_error = Some("\"quoted\" & 'single'".into());
        r.wall.lifecycle[0].plugin = hostile.into();
        r.denied[0].capability = "<img src=x onerror=alert(1)>".into();
        r.refused = vec![hostile.into()];
        let html = render_html(&r);
        assert!(!html.contains("<script"), "{html}");
        assert!(!html.contains("<img"), "{html}");
        assert!(
            html.contains("&lt;script&gt;alert(1)&lt;/script&gt;"),
            "{html}"
        );
        assert!(
            html.contains("&quot;quoted&quot; &amp; &#39;single&#39;"),
            "{html}"
        );
        assert_eq!(
            escape_html("a&b<c>d\"e'f"),
            "a&amp;b&lt;c&gt;d&quot;e&#39;f"
        );
    }

    #[test]
    fn text_escapes_terminal_control_characters() {
        let mut r = sample();
        r.agents[0].name = "evil\u{1b}[2J".into();
        r.wall.lifecycle[0].detail = "line one\nline two".into();
        let text = render_text(&r);
        assert!(!text.contains('\u{1b}'), "{text}");
        assert!(text.contains("evil\\u{1b}[2J"), "{text}");
        assert!(text.contains("line one\\nline two"), "{text}");
    }

    #[test]
    fn empty_report_renders() {
        let r = RunReport::default();
        let text = render_text(&r);
        for line in [
            "feed: none",
            "trading: none",
            "agents: none",
            "supervision: none",
            "denied capability attempts: none",
            "refused files: none",
        ] {
            assert!(text.contains(line), "{line} missing from {text}");
        }
        let html = render_html(&r);
        assert!(html.ends_with("</html>\n"));
        assert!(!html.contains("<svg"));

        // Trading with empty or unreadable figures.
        let r = RunReport {
            trading: Some(TradingLine::default()),
            feed: Some(FeedLine::default()),
            ..RunReport::default()
        };
        assert!(render_text(&r).contains("no events"));
        let html = render_html(&r);
        assert!(html.contains("no equity samples"), "{html}");
        assert!(!html.contains("<svg"));
    }

    #[test]
    fn one_sample_is_not_a_curve() {
        let mut r = sample();
        if let Some(t) = r.trading.as_mut() {
            t.equity_curve = vec![(T0, "100000".into()), (T0, "not a number".into())];
        }
        let html = render_html(&r);
        assert!(!html.contains("<svg"), "{html}");
        assert!(
            html.contains("no equity samples to draw a curve from"),
            "{html}"
        );
        assert!(html.contains("1 unreadable samples skipped"), "{html}");
    }

    #[test]
    fn flat_curve_and_one_instant_do_not_break_the_chart() {
        let mut r = sample();
        if let Some(t) = r.trading.as_mut() {
            t.equity_curve = vec![(T0, "100000".into()); 5];
        }
        let html = render_html(&r);
        assert_eq!(polyline_points(&html), 5);
        assert!(!html.contains("NaN") && !html.contains(",inf"), "{html}");
        assert!(!html.contains("min 100000"), "one label when min = max");
    }

    #[test]
    fn long_curves_are_downsampled_keeping_extremes() {
        let mut r = sample();
        if let Some(t) = r.trading.as_mut() {
            t.equity_curve = (0..50_000u64)
                .map(|i| {
                    let equity = match i {
                        31_337 => "12.5".to_string(),
                        40_001 => "250000.75".to_string(),
                        _ => format!("{}.{}", 100_000 + i % 17, i % 10),
                    };
                    (T0 + i * SEC, equity)
                })
                .collect();
        }
        let html = render_html(&r);
        let n = polyline_points(&html);
        assert!((500..=MAX_CHART_POINTS).contains(&n), "{n} points");
        assert!(html.contains("min 12.5"), "drawdown label");
        assert!(html.contains("max 250000.75"), "peak label");
        // The extremes' pixels survive downsampling: the bottom and the top of the plot.
        let start = html.find("points=\"").expect("points") + 8;
        let ys: Vec<f64> = html[start..]
            .split('"')
            .next()
            .unwrap_or_default()
            .split_whitespace()
            .filter_map(|p| p.split(',').nth(1)?.parse().ok())
            .collect();
        assert!(ys.iter().any(|y| (y - PLOT_BOTTOM).abs() < 0.11));
        assert!(ys.iter().any(|y| (y - PLOT_TOP).abs() < 0.11));
    }

    #[test]
    fn downsample_bounds_and_endpoints() {
        for n in [0, 1, 2, 999, 1_000, 1_001, 1_002, 4_321, 100_000] {
            let points: Vec<(f64, f64)> = (0..n).map(|i| (i as f64, (i % 7) as f64)).collect();
            let out = downsample(&points, MAX_CHART_POINTS);
            assert!(out.len() <= MAX_CHART_POINTS, "{n}: {}", out.len());
            assert!(
                out.len() >= n.min(MAX_CHART_POINTS / 2),
                "{n}: {}",
                out.len()
            );
            assert_eq!(out.first(), points.first(), "{n}");
            assert_eq!(out.last(), points.last(), "{n}");
            assert!(out.windows(2).all(|w| w[0].0 < w[1].0), "{n}: time order");
            if n <= MAX_CHART_POINTS {
                assert_eq!(out, points);
            }
        }
    }

    #[test]
    fn human_counts() {
        let table = [
            (0, "0"),
            (999, "999"),
            (1_000, "1.0 k"),
            (9_949, "9.9 k"),
            (9_960, "10 k"),
            (12_345, "12 k"),
            (999_499, "999 k"),
            (999_600, "1.0 M"),
            (350_000_000, "350 M"),
            (1_234_000_000, "1.2 G"),
            (u64::MAX, "18446744074 G"),
        ];
        for (n, want) in table {
            assert_eq!(human_count(n), want, "{n}");
        }
    }

    #[test]
    fn utc_times() {
        assert_eq!(utc(0), "1970-01-01 00:00:00");
        assert_eq!(utc(T0 + 999_999_999), "2023-11-14 22:13:20");
        // Leap day.
        assert_eq!(utc(951_782_400 * SEC), "2000-02-29 00:00:00");
    }

    #[test]
    fn signs_and_durations() {
        assert_eq!(signed("1.50"), "+1.50");
        assert_eq!(signed("+1.5"), "+1.5");
        assert_eq!(signed("-1.5"), "-1.5");
        assert_eq!(signed("0"), "0");
        assert_eq!(signed("n/a"), "n/a");
        assert_eq!(human_secs(12.34), "12.3 s");
        assert_eq!(human_secs(245.0), "4 m 05 s");
        assert_eq!(human_secs(7_390.0), "2 h 03 m 10 s");
    }

    #[test]
    fn write_html_replaces_atomically() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("report.html");
        std::fs::write(&path, "old").expect("seed");
        write_html(&sample(), &path).expect("write");
        let page = std::fs::read_to_string(&path).expect("read");
        assert_eq!(page, render_html(&sample()));
        let names: Vec<_> = std::fs::read_dir(dir.path())
            .expect("list")
            .filter_map(|e| e.ok().map(|e| e.file_name()))
            .collect();
        assert_eq!(
            names,
            vec![std::ffi::OsString::from("report.html")],
            "no temp left"
        );
        assert!(write_html(&sample(), &dir.path().join("missing/report.html")).is_err());
    }
}
