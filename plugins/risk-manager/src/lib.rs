//! risk-manager: the swarm's second pair of eyes. The trader sends each entry it wants to make
//! as a [`Proposal`] with `gather` on `swarm.risk.proposals`; the risk-manager answers with a
//! [`Decision`] through `reply`. The rules, in the order they are checked (the first that
//! fails is the answer):
//!
//! | reason | vetoes when | default |
//! |---|---|---|
//! | `data-alert` | a data alert (`swarm.alerts`, any kind) arrived less than `alert_cooldown_ms` ago | 30 min |
//! | `cooldown` | the last approval was less than `min_gap_ms` ago (the rate limit) | 30 min |
//! | `low-confidence` | the signal's confidence is below `min_confidence` | 0.55 |
//! | `drawdown` | the trader's equity is more than `max_drawdown` below its peak; trading then pauses for `drawdown_pause_ms`, after which the peak is re-based | 5 %, 24 h |
//! | `max-position` | no room is left under `max_position` (absolute BTC); an entry that only partly fits is approved with the smaller `qty` (rounded down to 0.001) | 0.5 |
//!
//! Times are the host's stamps on the messages (virtual during a replay). The risk-manager's
//! view (peak equity, last alert, last approval, pause) and its decision counts by reason are
//! kept in state (keys `view` and `decisions`), so a restart continues where it was; when the
//! host clock goes back (a new replay over the same data directory) the view starts afresh.

use std::collections::BTreeMap;

use colony_sdk::{Agent, Error, Manifest, Message, messaging, state};
use rust_decimal::{Decimal, RoundingStrategy};
use serde::{Deserialize, Serialize};
use swarm_protocol::{ALERTS, Alert, Decision, PROPOSALS, Proposal, Verdict, dec, decode, encode};

const MANIFEST: Manifest = Manifest::agent(env!("CARGO_PKG_NAME"), env!("CARGO_PKG_VERSION"))
    .description(env!("CARGO_PKG_DESCRIPTION"))
    .capabilities(&[
        "messaging.subscribe:swarm.risk.proposals",
        "messaging.subscribe:swarm.alerts",
    ])
    .fuel(10_000_000)
    .memory_bytes(16 << 20);

/// State key of the running view ([`View`]).
const VIEW: &str = "view";
/// State key of the decision counts ([`Counts`]).
const DECISIONS: &str = "decisions";
/// The smallest quantity worth approving (the venue's usual step).
const MIN_QTY: Decimal = dec(1, 3);

/// The operator's configuration; every field is optional.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
struct Config {
    #[serde(with = "rust_decimal::serde::str")]
    min_confidence: Decimal,
    #[serde(with = "rust_decimal::serde::str")]
    max_position: Decimal,
    #[serde(with = "rust_decimal::serde::str")]
    max_drawdown: Decimal,
    drawdown_pause_ms: u64,
    alert_cooldown_ms: u64,
    min_gap_ms: u64,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            min_confidence: dec(55, 2),
            max_position: dec(5, 1),
            max_drawdown: dec(5, 2),
            drawdown_pause_ms: 24 * 3_600_000,
            alert_cooldown_ms: 30 * 60_000,
            min_gap_ms: 30 * 60_000,
        }
    }
}

impl Config {
    fn parse(config: &str) -> Result<Config, Error> {
        let parsed: Config = swarm_protocol::config("risk-manager", config)?;
        let fraction = Decimal::ZERO..=Decimal::ONE;
        if !fraction.contains(&parsed.min_confidence) || !fraction.contains(&parsed.max_drawdown) {
            return Err(Error::InvalidArgument(
                "risk-manager config: min_confidence and max_drawdown must be in [0, 1]".into(),
            ));
        }
        if !swarm_protocol::qty_ok(parsed.max_position) {
            return Err(Error::InvalidArgument(
                "risk-manager config: max_position out of range".into(),
            ));
        }
        Ok(parsed)
    }
}

/// What the risk-manager keeps between proposals.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
struct View {
    /// Highest equity the trader reported.
    #[serde(with = "rust_decimal::serde::str_option")]
    peak_equity: Option<Decimal>,
    /// When the last data alert arrived.
    last_alert: Option<u64>,
    /// When the last entry was approved.
    last_approval: Option<u64>,
    /// Trading is paused for drawdown until then.
    paused_until: Option<u64>,
    /// The latest host time seen, to notice the clock going back.
    last_seen: u64,
}

/// Decisions so far: approvals, and vetoes by reason.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
struct Counts {
    approved: u64,
    vetoed: BTreeMap<Verdict, u64>,
}

/// Whether `since` is at most `window_ms` before `now` (and not after it).
fn within(since: Option<u64>, now: u64, window_ms: u64) -> bool {
    since.is_some_and(|t| t <= now && now - t < window_ms.saturating_mul(1_000_000))
}

struct RiskManager {
    config: Config,
    view: View,
    counts: Counts,
}

impl RiskManager {
    /// Notes host time `now`; a clock that went back means a new run: the view starts again.
    fn observe(&mut self, now: u64) {
        if now < self.view.last_seen {
            colony_sdk::info!(
                "host clock went back ({} -> {now}): a new run, the risk view starts afresh",
                self.view.last_seen
            );
            self.view = View::default();
        }
        self.view.last_seen = now;
    }

    /// Judges one proposal at host time `now`.
    fn decide(&mut self, p: &Proposal, now: u64) -> Decision {
        self.observe(now);
        let c = &self.config;
        let v = &mut self.view;
        let veto = |reason| Decision {
            approved: false,
            reason,
            qty: Decimal::ZERO,
        };
        let peak = v.peak_equity.map_or(p.equity, |pk| pk.max(p.equity));
        v.peak_equity = Some(peak);

        if within(v.last_alert, now, c.alert_cooldown_ms) {
            return veto(Verdict::DataAlert);
        }
        if within(v.last_approval, now, c.min_gap_ms) {
            return veto(Verdict::Cooldown);
        }
        if p.confidence < c.min_confidence {
            return veto(Verdict::LowConfidence);
        }
        match v.paused_until {
            Some(until) if now < until => return veto(Verdict::Drawdown),
            Some(_) => {
                colony_sdk::info!("drawdown pause over: peak equity re-based to {}", p.equity);
                v.paused_until = None;
                v.peak_equity = Some(p.equity);
            }
            None if peak > Decimal::ZERO && (peak - p.equity) / peak > c.max_drawdown => {
                v.paused_until =
                    Some(now.saturating_add(c.drawdown_pause_ms.saturating_mul(1_000_000)));
                colony_sdk::warn!(
                    "trader equity {} is more than {} below its peak {peak}: paused for {} ms",
                    p.equity,
                    c.max_drawdown,
                    c.drawdown_pause_ms
                );
                return veto(Verdict::Drawdown);
            }
            None => {}
        }
        // Room under the position limit on the proposal's side: adding to (or opening) a
        // position has what is left of the limit, going against one may also close it.
        let signed = p.side.sign() * p.position;
        let room = if signed >= Decimal::ZERO {
            c.max_position - p.position.abs()
        } else {
            c.max_position + p.position.abs()
        };
        let qty = p
            .qty
            .min(room)
            .round_dp_with_strategy(3, RoundingStrategy::ToZero);
        if qty < MIN_QTY {
            return veto(Verdict::MaxPosition);
        }
        v.last_approval = Some(now);
        Decision {
            approved: true,
            reason: Verdict::Ok,
            qty,
        }
    }

    fn on_proposal(&mut self, msg: &Message) -> Result<(), Error> {
        let Some(reply_to) = &msg.reply_to else {
            colony_sdk::warn!(
                "proposal from {} was published, not sent with gather: nothing to answer",
                msg.sender
            );
            return Ok(());
        };
        let p: Proposal = decode(&msg.subject, &msg.payload)?;
        p.validate()?;
        let d = self.decide(&p, msg.timestamp);
        messaging::reply(reply_to, &encode(&d)?)?;
        if d.approved {
            self.counts.approved += 1;
        } else {
            *self.counts.vetoed.entry(d.reason).or_default() += 1;
        }
        colony_sdk::info!(
            "{} {} {} @ {} (confidence {}, position {}, equity {}) from {}: {} qty {}",
            if d.approved { "approved" } else { "vetoed" },
            p.side.as_str(),
            p.qty,
            p.price,
            p.confidence,
            p.position,
            p.equity,
            msg.sender,
            d.reason.as_str(),
            d.qty
        );
        state::set_json(VIEW, &self.view)?;
        state::set_json(DECISIONS, &self.counts)
    }

    fn on_alert(&mut self, msg: &Message) -> Result<(), Error> {
        let alert: Alert = decode(&msg.subject, &msg.payload)?;
        self.observe(msg.timestamp);
        self.view.last_alert = Some(msg.timestamp);
        colony_sdk::info!(
            "{} alert from {}: no approvals for {} ms",
            alert.kind.as_str(),
            msg.sender,
            self.config.alert_cooldown_ms
        );
        state::set_json(VIEW, &self.view)
    }
}

impl Agent for RiskManager {
    fn init(config: &str) -> Result<Self, Error> {
        let config = Config::parse(config)?;
        let view: View = state::get_json(VIEW)?.unwrap_or_default();
        let counts: Counts = state::get_json(DECISIONS)?.unwrap_or_default();
        messaging::subscribe(PROPOSALS)?;
        messaging::subscribe(ALERTS)?;
        let vetoes: u64 = counts.vetoed.values().sum();
        colony_sdk::info!(
            "risk-manager: min confidence {}, max position {}, max drawdown {}; \
             {} approved and {vetoes} vetoed so far",
            config.min_confidence,
            config.max_position,
            config.max_drawdown,
            counts.approved
        );
        Ok(RiskManager {
            config,
            view,
            counts,
        })
    }

    fn on_message(&mut self, msg: Message) -> Result<(), Error> {
        match msg.subject.as_str() {
            PROPOSALS => self.on_proposal(&msg),
            ALERTS => self.on_alert(&msg),
            _ => Ok(()),
        }
    }
}

colony_sdk::export_agent!(RiskManager, manifest = MANIFEST);

#[cfg(test)]
mod tests {
    use super::*;
    use colony_sdk::Priority;
    use std::str::FromStr;
    use swarm_protocol::{AlertKind, NS_PER_MIN, SYMBOL, TradeSide};

    fn d(s: &str) -> Decimal {
        Decimal::from_str(s).unwrap()
    }

    fn proposal(confidence: &str) -> Proposal {
        Proposal {
            symbol: SYMBOL.into(),
            side: TradeSide::Buy,
            qty: d("0.25"),
            price: d("40000"),
            confidence: d(confidence),
            equity: d("100000"),
            position: Decimal::ZERO,
            ts: 0,
            reason: "ema-cross".into(),
        }
    }

    fn request(subject: &str, payload: Vec<u8>, minute: u64, reply_to: Option<&str>) -> Message {
        Message {
            id: format!("m{minute}"),
            subject: subject.into(),
            sender: "trader".into(),
            correlation_id: None,
            reply_to: reply_to.map(String::from),
            priority: Priority::Normal,
            timestamp: minute * NS_PER_MIN,
            headers: Vec::new(),
            payload,
        }
    }

    /// Sends `p` at `minute` and returns the reply the agent sent.
    fn ask(rm: &mut RiskManager, p: &Proposal, minute: u64) -> Decision {
        let inbox = format!("_INBOX.{minute}");
        rm.on_message(request(PROPOSALS, encode(p).unwrap(), minute, Some(&inbox)))
            .unwrap();
        let (subject, payload) = messaging::sent().pop().unwrap();
        assert_eq!(subject, inbox, "the reply goes to the request's reply-to");
        serde_json::from_slice(&payload).unwrap()
    }

    #[test]
    fn approves_a_good_proposal_and_vetoes_low_confidence() {
        let mut rm = RiskManager::init("{}").unwrap();
        let no = ask(&mut rm, &proposal("0.40"), 0);
        assert_eq!(
            no,
            Decision {
                approved: false,
                reason: Verdict::LowConfidence,
                qty: Decimal::ZERO
            }
        );
        let yes = ask(&mut rm, &proposal("0.70"), 1);
        assert_eq!(
            (yes.approved, yes.reason, yes.qty),
            (true, Verdict::Ok, d("0.25"))
        );
        let counts: Counts = state::get_json(DECISIONS).unwrap().unwrap();
        assert_eq!(counts.approved, 1);
        assert_eq!(counts.vetoed.get(&Verdict::LowConfidence), Some(&1));
        // The counts survive a restart.
        assert_eq!(RiskManager::init("{}").unwrap().counts, counts);
    }

    #[test]
    fn rate_limit_then_free_again() {
        let mut rm = RiskManager::init("{}").unwrap();
        assert!(ask(&mut rm, &proposal("0.7"), 0).approved);
        assert_eq!(ask(&mut rm, &proposal("0.7"), 29).reason, Verdict::Cooldown);
        assert!(ask(&mut rm, &proposal("0.7"), 30).approved);
    }

    #[test]
    fn data_alerts_veto_for_a_while() {
        let mut rm = RiskManager::init("{}").unwrap();
        let alert = Alert {
            kind: AlertKind::Spike,
            symbol: SYMBOL.into(),
            ts: 0,
            detail: String::new(),
        };
        rm.on_message(request(ALERTS, encode(&alert).unwrap(), 10, None))
            .unwrap();
        assert_eq!(
            ask(&mut rm, &proposal("0.9"), 20).reason,
            Verdict::DataAlert
        );
        assert!(ask(&mut rm, &proposal("0.9"), 40).approved);
    }

    #[test]
    fn position_limit_caps_or_vetoes() {
        let mut rm = RiskManager::init(r#"{"min_gap_ms":0}"#).unwrap();
        let mut p = proposal("0.8");
        p.qty = d("0.5");
        p.position = d("0.3");
        let capped = ask(&mut rm, &p, 0);
        assert_eq!((capped.approved, capped.qty), (true, d("0.2")));
        p.position = d("0.5");
        assert_eq!(ask(&mut rm, &p, 1).reason, Verdict::MaxPosition);
        // Against a short the whole short may be closed and the limit opened the other way.
        p.position = d("-0.3");
        p.qty = d("2");
        assert_eq!(ask(&mut rm, &p, 2).qty, d("0.8"));
    }

    #[test]
    fn drawdown_pauses_then_rebases() {
        let mut rm = RiskManager::init(r#"{"min_gap_ms":0}"#).unwrap();
        let mut p = proposal("0.8");
        assert!(ask(&mut rm, &p, 0).approved);
        p.equity = d("94000");
        assert_eq!(ask(&mut rm, &p, 1).reason, Verdict::Drawdown);
        assert_eq!(
            ask(&mut rm, &p, 60).reason,
            Verdict::Drawdown,
            "still paused"
        );
        // A day later the peak is re-based to the current equity.
        assert!(ask(&mut rm, &p, 1 + 24 * 60).approved);
        assert_eq!(rm.view.peak_equity, Some(d("94000")));
    }

    #[test]
    fn a_clock_going_back_starts_a_new_view() {
        let mut rm = RiskManager::init("{}").unwrap();
        assert!(ask(&mut rm, &proposal("0.7"), 100).approved);
        // A new replay from the start: the earlier approval is not a cooldown.
        assert!(ask(&mut rm, &proposal("0.7"), 5).approved);
    }

    #[test]
    fn bad_or_unanswerable_proposals_get_no_reply() {
        let mut rm = RiskManager::init("{}").unwrap();
        let bad = request(PROPOSALS, b"{\"qty\":1}".to_vec(), 0, Some("_INBOX.x"));
        assert!(rm.on_message(bad).is_err());
        let mut p = proposal("0.7");
        p.qty = d("-1");
        let invalid = request(PROPOSALS, encode(&p).unwrap(), 0, Some("_INBOX.y"));
        assert!(rm.on_message(invalid).is_err());
        let published = request(PROPOSALS, encode(&proposal("0.7")).unwrap(), 0, None);
        rm.on_message(published).unwrap();
        assert!(messaging::sent().is_empty());
        assert_eq!(rm.counts, Counts::default());
    }
}
