//! learner: closes the swarm's loop. It records every round trip the trader publishes on
//! `swarm.outcomes` (count, wins, total PnL, in state under `record`) and tunes the analyst by
//! publishing its whole parameter set on `swarm.params.analyst`:
//!
//! | when | what |
//! |---|---|
//! | every `window` outcomes (default 5), the window lost money | `min_confidence` + 0.03 (at most 0.85); with at most one win in the window, the EMAs also lengthen by 2/8 bars (at most 24/96): fewer, slower signals |
//! | every `window` outcomes, the window made money | `min_confidence` − 0.02 (at least 0.50); with at most one loss, the EMAs shorten by 2/8 bars back towards 12/48 |
//! | the periodic timer (every 6 h of host time) finds no outcome for 4 ticks in a row | `min_confidence` − 0.03 (at least 0.50): the filter may be too strict |
//!
//! The parameters the learner believes the analyst runs with are kept with the record, so
//! the learner picks up where it was after a restart. It logs a summary once a day of host
//! time.

use colony_sdk::{Agent, Error, Manifest, Message, Timestamp, messaging, state, timers};
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use swarm_protocol::{ANALYST_PARAMS, AnalystParams, OUTCOMES, Outcome, dec, decode, encode};

const MANIFEST: Manifest = Manifest::agent(env!("CARGO_PKG_NAME"), env!("CARGO_PKG_VERSION"))
    .description(env!("CARGO_PKG_DESCRIPTION"))
    .capabilities(&[
        "messaging.subscribe:swarm.outcomes",
        "messaging.publish:swarm.params.analyst",
    ])
    .fuel(10_000_000)
    .memory_bytes(16 << 20);

/// State key of the record ([`Record`]).
const RECORD: &str = "record";
/// The periodic review.
const TIMER: &str = "review";
/// Its period: 6 h of host time.
const TIMER_MS: u64 = 6 * 3_600_000;
/// Ticks without an outcome before the filter is relaxed (a day).
const IDLE_TICKS: u32 = 4;
/// Bounds of `min_confidence`.
const MIN_CONFIDENCE: Decimal = dec(50, 2);
const MAX_CONFIDENCE: Decimal = dec(85, 2);
/// Steps of `min_confidence`.
const RAISE: Decimal = dec(3, 2);
const LOWER: Decimal = dec(2, 2);
const RELAX: Decimal = dec(3, 2);
/// Steps and bounds of the EMA periods.
const FAST_STEP: u32 = 2;
const SLOW_STEP: u32 = 8;
const MAX_FAST: u32 = 24;
const MAX_SLOW: u32 = 96;

/// The operator's configuration; every field is optional.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
struct Config {
    /// Outcomes per review.
    window: u32,
}

impl Default for Config {
    fn default() -> Self {
        Config { window: 5 }
    }
}

/// Everything the learner keeps in state.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct Record {
    outcomes: u64,
    wins: u64,
    #[serde(with = "rust_decimal::serde::str")]
    total_pnl: Decimal,
    /// Outcomes, wins and PnL of the current window.
    window_outcomes: u32,
    window_wins: u32,
    #[serde(with = "rust_decimal::serde::str")]
    window_pnl: Decimal,
    /// Timer ticks since the last outcome.
    idle_ticks: u32,
    /// Timer ticks since the start (for the daily summary).
    ticks: u64,
    /// Parameter updates published.
    updates: u64,
    /// What the analyst runs with, as far as the learner knows.
    params: AnalystParams,
}

impl Default for Record {
    fn default() -> Self {
        Record {
            outcomes: 0,
            wins: 0,
            total_pnl: Decimal::ZERO,
            window_outcomes: 0,
            window_wins: 0,
            window_pnl: Decimal::ZERO,
            idle_ticks: 0,
            ticks: 0,
            updates: 0,
            params: AnalystParams::DEFAULT,
        }
    }
}

/// The parameters after a window of `outcomes` outcomes with `wins` wins and `pnl` (see the
/// crate docs).
fn review(p: AnalystParams, outcomes: u32, wins: u32, pnl: Decimal) -> AnalystParams {
    let mut next = p;
    if pnl < Decimal::ZERO {
        next.min_confidence = (p.min_confidence + RAISE).min(MAX_CONFIDENCE);
        if wins <= 1 && p.fast + FAST_STEP <= MAX_FAST && p.slow + SLOW_STEP <= MAX_SLOW {
            next.fast = p.fast + FAST_STEP;
            next.slow = p.slow + SLOW_STEP;
        }
    } else {
        next.min_confidence = (p.min_confidence - LOWER).max(MIN_CONFIDENCE);
        let d = AnalystParams::DEFAULT;
        if outcomes - wins <= 1 && p.fast >= d.fast + FAST_STEP && p.slow >= d.slow + SLOW_STEP {
            next.fast = p.fast - FAST_STEP;
            next.slow = p.slow - SLOW_STEP;
        }
    }
    next
}

struct Learner {
    config: Config,
    record: Record,
}

impl Learner {
    fn on_outcome(&mut self, o: &Outcome) -> Result<(), Error> {
        let r = &mut self.record;
        let win = o.pnl > Decimal::ZERO;
        r.outcomes += 1;
        r.window_outcomes += 1;
        if win {
            r.wins += 1;
            r.window_wins += 1;
        }
        r.total_pnl += o.pnl;
        r.window_pnl += o.pnl;
        r.idle_ticks = 0;
        if r.window_outcomes >= self.config.window {
            let next = review(r.params, r.window_outcomes, r.window_wins, r.window_pnl);
            colony_sdk::info!(
                "window of {} outcomes: {} won, pnl {}; {} outcomes, {} won, total pnl {} so far",
                r.window_outcomes,
                r.window_wins,
                r.window_pnl,
                r.outcomes,
                r.wins,
                r.total_pnl
            );
            r.window_outcomes = 0;
            r.window_wins = 0;
            r.window_pnl = Decimal::ZERO;
            self.publish(next, "window review")?;
        }
        state::set_json(RECORD, &self.record)
    }

    fn on_tick(&mut self) -> Result<(), Error> {
        let r = &mut self.record;
        r.ticks += 1;
        r.idle_ticks += 1;
        if r.ticks.is_multiple_of(4) {
            colony_sdk::info!(
                "day {}: {} outcomes, {} won, total pnl {}; analyst at {}/{} min confidence {}",
                r.ticks / 4,
                r.outcomes,
                r.wins,
                r.total_pnl,
                r.params.fast,
                r.params.slow,
                r.params.min_confidence
            );
        }
        if r.idle_ticks >= IDLE_TICKS {
            r.idle_ticks = 0;
            let mut next = r.params;
            next.min_confidence = (next.min_confidence - RELAX).max(MIN_CONFIDENCE);
            self.publish(next, "a day without outcomes")?;
        }
        state::set_json(RECORD, &self.record)
    }

    /// Publishes `next` if it differs from the current parameters.
    fn publish(&mut self, next: AnalystParams, why: &str) -> Result<(), Error> {
        let r = &mut self.record;
        if next == r.params {
            return Ok(());
        }
        next.validate()?;
        messaging::publish(ANALYST_PARAMS, &encode(&next.as_update())?)?;
        colony_sdk::info!(
            "{why}: analyst {}/{} min confidence {} -> {}/{} min confidence {}",
            r.params.fast,
            r.params.slow,
            r.params.min_confidence,
            next.fast,
            next.slow,
            next.min_confidence
        );
        r.params = next;
        r.updates += 1;
        Ok(())
    }
}

impl Agent for Learner {
    fn init(config: &str) -> Result<Self, Error> {
        let config = config.trim();
        let config: Config = if config.is_empty() {
            Config::default()
        } else {
            serde_json::from_str(config)
                .map_err(|e| Error::InvalidArgument(format!("learner config: {e}")))?
        };
        if config.window == 0 {
            return Err(Error::InvalidArgument(
                "learner config: window must be at least 1".into(),
            ));
        }
        let record: Record = state::get_json(RECORD)?.unwrap_or_default();
        messaging::subscribe(OUTCOMES)?;
        timers::set(TIMER, TIMER_MS, TIMER_MS)?;
        colony_sdk::info!(
            "learner: reviews every {} outcomes; {} outcomes, {} won, total pnl {} so far",
            config.window,
            record.outcomes,
            record.wins,
            record.total_pnl
        );
        Ok(Learner { config, record })
    }

    fn on_message(&mut self, msg: Message) -> Result<(), Error> {
        if msg.subject != OUTCOMES {
            return Ok(());
        }
        let o: Outcome = decode(&msg.subject, &msg.payload)?;
        o.validate()?;
        self.on_outcome(&o)
    }

    fn on_timer(&mut self, _now: Timestamp) -> Result<(), Error> {
        self.on_tick()
    }
}

colony_sdk::export_agent!(Learner, manifest = MANIFEST);

#[cfg(test)]
mod tests {
    use super::*;
    use colony_sdk::Priority;
    use std::str::FromStr;
    use swarm_protocol::{ExitReason, ParamsUpdate, SYMBOL, TradeSide};

    fn d(s: &str) -> Decimal {
        Decimal::from_str(s).unwrap()
    }

    fn outcome(pnl: &str) -> Message {
        let o = Outcome {
            symbol: SYMBOL.into(),
            side: TradeSide::Buy,
            entry: d("40000"),
            exit: d("40100"),
            qty: d("0.25"),
            pnl: d(pnl),
            confidence: d("0.7"),
            reason: ExitReason::Reverse,
        };
        Message {
            id: "1".into(),
            subject: OUTCOMES.into(),
            sender: "trader".into(),
            correlation_id: None,
            reply_to: None,
            priority: Priority::Normal,
            timestamp: 0,
            headers: Vec::new(),
            payload: encode(&o).unwrap(),
        }
    }

    fn updates() -> Vec<ParamsUpdate> {
        messaging::sent()
            .into_iter()
            .filter(|(s, _)| s == ANALYST_PARAMS)
            .map(|(_, p)| serde_json::from_slice(&p).unwrap())
            .collect()
    }

    #[test]
    fn losses_raise_the_bar_and_slow_the_emas() {
        let mut l = Learner::init("{}").unwrap();
        assert_eq!(timers::pending(), [(TIMER.to_string(), TIMER_MS, TIMER_MS)]);
        for pnl in ["-10", "-20", "5", "-30", "-1"] {
            l.on_message(outcome(pnl)).unwrap();
        }
        let sent = updates();
        assert_eq!(sent.len(), 1, "one review per window");
        assert_eq!(
            sent[0],
            ParamsUpdate {
                fast: Some(14),
                slow: Some(56),
                min_confidence: Some(d("0.63")),
            }
        );
        let rec: Record = state::get_json(RECORD).unwrap().unwrap();
        assert_eq!((rec.outcomes, rec.wins, rec.total_pnl), (5, 1, d("-56")));
        assert_eq!(rec.params.min_confidence, d("0.63"));
        assert_eq!(rec.window_outcomes, 0);
        // A restarted learner continues from the record.
        assert_eq!(Learner::init("{}").unwrap().record, rec);
    }

    #[test]
    fn wins_lower_the_bar_within_bounds() {
        let mut l = Learner::init(r#"{"window":2}"#).unwrap();
        for _ in 0..10 {
            l.on_message(outcome("50")).unwrap();
        }
        let steps: Vec<_> = updates().into_iter().map(|u| u.min_confidence).collect();
        let want = ["0.58", "0.56", "0.54", "0.52", "0.50"].map(|s| Some(d(s)));
        assert_eq!(steps, want);
        // At the floor further wins publish nothing.
        for _ in 0..20 {
            l.on_message(outcome("50")).unwrap();
        }
        assert_eq!(l.record.params.min_confidence, MIN_CONFIDENCE);
        assert_eq!(updates().len(), 5);
        assert_eq!(l.record.params.fast, 12, "never shorter than the defaults");
    }

    #[test]
    fn review_bounds() {
        let top = AnalystParams {
            fast: 24,
            slow: 96,
            min_confidence: d("0.85"),
        };
        assert_eq!(review(top, 5, 0, d("-1")), top);
        let slow = AnalystParams {
            fast: 16,
            slow: 64,
            min_confidence: d("0.7"),
        };
        let back = review(slow, 5, 4, d("1"));
        assert_eq!(
            (back.fast, back.slow, back.min_confidence),
            (14, 56, d("0.68"))
        );
        // A profitable window with two losses keeps the periods.
        assert_eq!(review(slow, 5, 3, d("1")).fast, 16);
    }

    #[test]
    fn a_quiet_day_relaxes_the_filter() {
        let mut l = Learner::init("{}").unwrap();
        for _ in 0..3 {
            l.on_timer(0).unwrap();
        }
        assert!(updates().is_empty());
        l.on_timer(0).unwrap();
        assert_eq!(updates()[0].min_confidence, Some(d("0.57")));
        // An outcome resets the idle count.
        for _ in 0..3 {
            l.on_timer(0).unwrap();
        }
        l.on_message(outcome("1")).unwrap();
        l.on_timer(0).unwrap();
        assert_eq!(updates().len(), 1);
    }

    #[test]
    fn bad_outcomes_are_refused() {
        let mut l = Learner::init("{}").unwrap();
        let mut m = outcome("1");
        m.payload = br#"{"pnl":1}"#.to_vec();
        assert!(l.on_message(m).is_err());
        let mut m = outcome("1");
        m.payload = String::from_utf8(m.payload)
            .unwrap()
            .replace(r#""qty":"0.25""#, r#""qty":"0""#)
            .into_bytes();
        assert!(l.on_message(m).is_err());
        assert_eq!(l.record.outcomes, 0);
        assert!(Learner::init(r#"{"window":0}"#).is_err());
    }
}
