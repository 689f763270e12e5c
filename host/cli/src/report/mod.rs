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

use format::truncate;
use serde::Serialize;
use std::collections::BTreeMap;
use text::TEXT_DETAIL_CHARS;

mod chart;
mod format;
mod html;
mod text;

pub use format::escape_html;
pub use html::{render_html, write_html};
pub use text::render_text;

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

#[cfg(test)]
mod tests;
