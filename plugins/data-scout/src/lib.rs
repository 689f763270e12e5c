//! data-scout: the swarm's data-quality watch. It subscribes to the BTC-PERP bars and publishes
//! an [`Alert`] on `swarm.alerts` when the data should not be traded on:
//!
//! | kind | when |
//! |---|---|
//! | `gap` | a bar starts more than one bar interval after the previous one |
//! | `spike` | the close moved more than `spike_threshold` (default 1.5 %) from the previous close, or a price or the volume is not positive (or is out of range) |
//! | `stale` | the periodic check (every `check_every_ms` of host time, default 5 min) finds no bar for more than `stale_after_ms` (default 3 min) |
//! | `recovered` | the first bar after a `stale` alert |
//!
//! The 1.5 % default is tuned to the shipped January 2022 replay, whose largest one-minute move
//! is under 2 % (it flags two bars); 3 % would flag none. The configuration JSON may override
//! each setting (`{"spike_threshold":"0.03"}`). Times are the bars' close times and the timer's
//! host time, both virtual during a replay, so a replay raises the same alerts every run.
//! The alert counts live in state (key `alerts`); the last bar seen travels in the snapshot.

use colony_sdk::market::{self, Kinds};
use colony_sdk::{Agent, Error, Manifest, MarketEvent, Timestamp, messaging, state, timers};
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use swarm_protocol::{ALERTS, Alert, AlertKind, Bar, NS_PER_SEC, SYMBOL, dec, encode};

const MANIFEST: Manifest = Manifest::agent(env!("CARGO_PKG_NAME"), env!("CARGO_PKG_VERSION"))
    .description(env!("CARGO_PKG_DESCRIPTION"))
    .capabilities(&["market.read:BTC-PERP", "messaging.publish:swarm.alerts"])
    .fuel(10_000_000)
    .memory_bytes(16 << 20);

/// State key of the alert counts ([`Counts`], JSON).
const COUNTS: &str = "alerts";
/// The periodic staleness check.
const STALE_TIMER: &str = "stale-check";

/// The operator's configuration; every field is optional.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
struct Config {
    /// Largest close-to-close move that is not a spike, as a fraction (`"0.015"`).
    #[serde(with = "rust_decimal::serde::str")]
    spike_threshold: Decimal,
    /// Host time without a bar after which the data is stale.
    stale_after_ms: u64,
    /// How often the staleness check runs, in host time.
    check_every_ms: u64,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            spike_threshold: dec(15, 3),
            stale_after_ms: 180_000,
            check_every_ms: 300_000,
        }
    }
}

impl Config {
    fn parse(config: &str) -> Result<Config, Error> {
        let parsed: Config = swarm_protocol::config("data-scout", config)?;
        if parsed.spike_threshold <= Decimal::ZERO || parsed.spike_threshold > Decimal::ONE {
            return Err(Error::InvalidArgument(
                "data-scout config: spike_threshold must be in (0, 1]".into(),
            ));
        }
        if parsed.check_every_ms < 10 {
            return Err(Error::InvalidArgument(
                "data-scout config: check_every_ms must be at least 10".into(),
            ));
        }
        Ok(parsed)
    }
}

/// Alerts raised so far, by kind (kept in state across restarts and runs).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
struct Counts {
    stale: u64,
    gap: u64,
    spike: u64,
    recovered: u64,
}

impl Counts {
    fn add(&mut self, kind: AlertKind) {
        let n = match kind {
            AlertKind::Stale => &mut self.stale,
            AlertKind::Gap => &mut self.gap,
            AlertKind::Spike => &mut self.spike,
            AlertKind::Recovered => &mut self.recovered,
        };
        *n += 1;
    }
}

/// What the scout remembers of the feed (the snapshot).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
struct Watch {
    /// Start of the last bar.
    last_start: Option<u64>,
    /// Close time of the last bar: when it became known.
    last_end: Option<u64>,
    /// Close of the last bar with sane prices.
    #[serde(with = "rust_decimal::serde::str_option")]
    prev_close: Option<Decimal>,
    /// A `stale` alert is out and no bar has arrived since.
    stale: bool,
    /// Bars seen by this agent since it started watching.
    bars: u64,
}

struct DataScout {
    config: Config,
    watch: Watch,
    counts: Counts,
}

impl DataScout {
    fn new(config: Config, counts: Counts) -> DataScout {
        DataScout {
            config,
            watch: Watch::default(),
            counts,
        }
    }

    /// The alerts one bar raises, updating what the scout remembers.
    fn check_bar(&mut self, bar: &Bar) -> Vec<Alert> {
        let w = &mut self.watch;
        if w.last_start.is_some_and(|last| bar.start <= last) {
            colony_sdk::warn!(
                "bar starting at {} is not after the previous one; ignored",
                bar.start
            );
            return Vec::new();
        }
        let mut alerts = Vec::new();
        let mut alert = |kind, detail: String| {
            alerts.push(Alert {
                kind,
                symbol: SYMBOL.into(),
                ts: bar.end,
                detail,
            })
        };
        if w.stale {
            let quiet = w.last_end.map(|e| bar.end.saturating_sub(e) / NS_PER_SEC);
            alert(
                AlertKind::Recovered,
                match quiet {
                    Some(s) => format!("bars again after {s} s without one"),
                    None => "bars again".into(),
                },
            );
            w.stale = false;
        }
        if let Some(last) = w.last_start {
            let spacing = bar.start - last;
            let interval = bar.end - bar.start;
            if spacing > interval {
                alert(
                    AlertKind::Gap,
                    format!(
                        "{} s between bar starts {last} and {} ({} bar(s) missing)",
                        spacing / NS_PER_SEC,
                        bar.start,
                        spacing / interval - 1
                    ),
                );
            }
        }
        if !bar.prices_ok() {
            alert(
                AlertKind::Spike,
                format!(
                    "unusable prices: open {} high {} low {} close {}",
                    bar.open, bar.high, bar.low, bar.close
                ),
            );
        } else {
            if !bar.volume_ok() {
                alert(
                    AlertKind::Spike,
                    format!("volume {} is not positive or out of range", bar.volume),
                );
            }
            // A previous close is stored only when its bar's prices were sane, so it is
            // positive; the test multiplies, so the common case divides nothing.
            if let Some(prev) = w.prev_close {
                let change = bar.close - prev;
                if change.abs() > self.config.spike_threshold * prev {
                    alert(
                        AlertKind::Spike,
                        format!(
                            "close moved {:.2}% in one bar: {prev} -> {}",
                            change * Decimal::ONE_HUNDRED / prev,
                            bar.close
                        ),
                    );
                }
            }
            w.prev_close = Some(bar.close);
        }
        w.last_start = Some(bar.start);
        w.last_end = Some(bar.end);
        w.bars += 1;
        alerts
    }

    /// The staleness check at host time `now`: at most one `stale` alert until bars return.
    fn check_stale(&mut self, now: Timestamp) -> Option<Alert> {
        let w = &mut self.watch;
        let last = w.last_end?;
        let quiet_ms = now.saturating_sub(last) / 1_000_000;
        if w.stale || quiet_ms <= self.config.stale_after_ms {
            return None;
        }
        w.stale = true;
        Some(Alert {
            kind: AlertKind::Stale,
            symbol: SYMBOL.into(),
            ts: now,
            detail: format!(
                "no bar for {} s (last closed at {last}; threshold {} s)",
                quiet_ms / 1_000,
                self.config.stale_after_ms / 1_000
            ),
        })
    }

    /// Publishes `alerts`, counts them and saves the counts.
    fn raise(&mut self, alerts: &[Alert]) -> Result<(), Error> {
        if alerts.is_empty() {
            return Ok(());
        }
        for a in alerts {
            colony_sdk::warn!("{} alert on {}: {}", a.kind.as_str(), a.symbol, a.detail);
            messaging::publish(ALERTS, &encode(a)?)?;
            self.counts.add(a.kind);
        }
        state::set_json(COUNTS, &self.counts)
    }
}

impl Agent for DataScout {
    fn init(config: &str) -> Result<Self, Error> {
        let config = Config::parse(config)?;
        let counts: Counts = state::get_json(COUNTS)?.unwrap_or_default();
        market::subscribe(SYMBOL, Kinds::CANDLE)?;
        timers::set(STALE_TIMER, config.check_every_ms, config.check_every_ms)?;
        colony_sdk::info!(
            "data-scout watching {SYMBOL}: spike above {}, stale after {} ms, checked every {} ms; \
             alerts so far: {} stale, {} gap, {} spike, {} recovered",
            config.spike_threshold,
            config.stale_after_ms,
            config.check_every_ms,
            counts.stale,
            counts.gap,
            counts.spike,
            counts.recovered
        );
        Ok(DataScout::new(config, counts))
    }

    fn on_market(&mut self, event: MarketEvent) -> Result<(), Error> {
        let MarketEvent::Candle(candle) = event else {
            return Ok(());
        };
        if candle.symbol != SYMBOL {
            return Ok(());
        }
        let bar = match Bar::from_candle(&candle) {
            Ok(bar) => bar,
            Err(e) => {
                colony_sdk::warn!("unusable {SYMBOL} candle ignored: {e:?}");
                return Ok(());
            }
        };
        let alerts = self.check_bar(&bar);
        self.raise(&alerts)
    }

    fn on_timer(&mut self, now: Timestamp) -> Result<(), Error> {
        match self.check_stale(now) {
            Some(alert) => self.raise(&[alert]),
            None => Ok(()),
        }
    }

    fn snapshot(&mut self) -> Vec<u8> {
        serde_json::to_vec(&self.watch).unwrap_or_default()
    }

    fn restore(&mut self, snapshot: Vec<u8>) -> Result<(), Error> {
        if let Some(watch) = swarm_protocol::snapshot("data-scout", &snapshot)? {
            self.watch = watch;
        }
        Ok(())
    }
}

colony_sdk::export_agent!(DataScout, manifest = MANIFEST);

#[cfg(test)]
mod tests {
    use super::*;
    use std::str::FromStr;
    use swarm_protocol::{NS_PER_MIN, test_candle};

    fn d(s: &str) -> Decimal {
        Decimal::from_str(s).unwrap()
    }

    fn feed(agent: &mut DataScout, minute: u64, close: &str) {
        let c = test_candle(SYMBOL, minute * NS_PER_MIN, d(close));
        agent.on_market(MarketEvent::Candle(c)).unwrap();
    }

    fn alerts_sent() -> Vec<Alert> {
        messaging::sent()
            .into_iter()
            .filter(|(s, _)| s == ALERTS)
            .map(|(_, p)| serde_json::from_slice(&p).unwrap())
            .collect()
    }

    #[test]
    fn init_subscribes_and_sets_the_stale_timer() {
        DataScout::init("{}").unwrap();
        assert_eq!(market::subscriptions().len(), 1);
        assert_eq!(market::subscriptions()[0].1, SYMBOL);
        assert_eq!(
            timers::pending(),
            [(STALE_TIMER.to_string(), 300_000, 300_000)]
        );
        assert!(DataScout::init(r#"{"spike_threshold":"0"}"#).is_err());
        assert!(DataScout::init(r#"{"spike_treshold":"0.1"}"#).is_err());
        assert!(DataScout::init(r#"{"spike_threshold":0.1}"#).is_err());
    }

    #[test]
    fn steady_bars_raise_nothing() {
        let mut a = DataScout::init("").unwrap();
        for (m, p) in [(0, "100"), (1, "101"), (2, "100.5"), (3, "101.9")] {
            feed(&mut a, m, p);
        }
        assert!(alerts_sent().is_empty());
        assert_eq!(a.watch.bars, 4);
    }

    #[test]
    fn flags_a_gap_and_a_spike_and_counts_them_in_state() {
        let mut a = DataScout::init("{}").unwrap();
        feed(&mut a, 0, "100");
        feed(&mut a, 1, "100");
        // Three bars missing, then a 2 % jump.
        feed(&mut a, 5, "102");
        let sent = alerts_sent();
        assert_eq!(
            sent.iter().map(|a| a.kind).collect::<Vec<_>>(),
            [AlertKind::Gap, AlertKind::Spike]
        );
        assert_eq!(sent[0].ts, 6 * NS_PER_MIN, "the bar's close time");
        assert!(
            sent[0].detail.contains("3 bar(s) missing"),
            "{}",
            sent[0].detail
        );
        assert!(sent[1].detail.contains("2.00%"), "{}", sent[1].detail);
        let counts: Counts = state::get_json(COUNTS).unwrap().unwrap();
        assert_eq!((counts.gap, counts.spike, counts.stale), (1, 1, 0));
        // A new instance keeps counting from state.
        let again = DataScout::init("{}").unwrap();
        assert_eq!(again.counts.gap, 1);
    }

    #[test]
    fn flags_non_positive_volume_and_bad_prices() {
        let mut a = DataScout::init("{}").unwrap();
        feed(&mut a, 0, "100");
        let mut c = test_candle(SYMBOL, NS_PER_MIN, d("100"));
        c.volume = colony_sdk::Decimal::ZERO;
        a.on_market(MarketEvent::Candle(c)).unwrap();
        let c = test_candle(SYMBOL, 2 * NS_PER_MIN, d("-5"));
        a.on_market(MarketEvent::Candle(c)).unwrap();
        let sent = alerts_sent();
        assert_eq!(sent.len(), 2);
        assert!(sent.iter().all(|a| a.kind == AlertKind::Spike));
        assert!(sent[0].detail.contains("volume 0"), "{}", sent[0].detail);
        assert!(sent[1].detail.contains("unusable prices"));
        // The bad bar did not become the reference: 101 is 1 % from 100.
        feed(&mut a, 3, "101");
        assert_eq!(alerts_sent().len(), 2);
    }

    #[test]
    fn stale_once_then_recovered() {
        let mut a = DataScout::init("{}").unwrap();
        a.on_timer(5 * NS_PER_MIN).unwrap();
        assert!(
            alerts_sent().is_empty(),
            "no bar yet: nothing to call stale"
        );
        feed(&mut a, 0, "100"); // known at minute 1
        a.on_timer(4 * NS_PER_MIN).unwrap(); // 3 min quiet: not yet
        assert!(alerts_sent().is_empty());
        a.on_timer(5 * NS_PER_MIN).unwrap();
        a.on_timer(10 * NS_PER_MIN).unwrap();
        assert_eq!(
            alerts_sent().iter().map(|a| a.kind).collect::<Vec<_>>(),
            [AlertKind::Stale],
            "one stale alert until bars return"
        );
        feed(&mut a, 11, "100");
        let kinds: Vec<_> = alerts_sent().iter().map(|a| a.kind).collect();
        assert_eq!(
            kinds,
            [AlertKind::Stale, AlertKind::Recovered, AlertKind::Gap]
        );
        let counts: Counts = state::get_json(COUNTS).unwrap().unwrap();
        assert_eq!((counts.stale, counts.recovered, counts.gap), (1, 1, 1));
    }

    #[test]
    fn snapshot_round_trips_and_bad_input_is_refused() {
        let mut a = DataScout::init("{}").unwrap();
        feed(&mut a, 0, "100");
        feed(&mut a, 0, "150"); // not after the previous bar: ignored
        let snap = a.snapshot();
        let mut b = DataScout::init("{}").unwrap();
        b.restore(snap).unwrap();
        assert_eq!(b.watch, a.watch);
        assert_eq!(b.watch.prev_close, Some(d("100")));
        assert!(b.restore(b"nope".to_vec()).is_err());
        assert_eq!(b.watch, a.watch, "a bad snapshot changes nothing");
        assert!(alerts_sent().is_empty());
    }
}
