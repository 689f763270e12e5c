//! Data-quality checks for live feeds: per-symbol time order and staleness.

use crate::types::{QualityIssue, Timestamp};
use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

/// Per-symbol time order for a live feed: a timestamp earlier than the symbol's last one is a
/// [`QualityIssue::NonMonotonicTime`] (equal times are fine: several trades print at once).
#[derive(Debug, Default)]
pub struct TimeOrder {
    last: HashMap<Arc<str>, Timestamp>,
}

impl TimeOrder {
    /// An empty tracker.
    pub fn new() -> TimeOrder {
        TimeOrder::default()
    }

    /// Notes `ts` for `symbol`; returns the issue if it went back (the last time is kept).
    pub fn observe(&mut self, symbol: &Arc<str>, ts: Timestamp) -> Option<QualityIssue> {
        match self.last.get_mut(symbol) {
            Some(last) if ts < *last => Some(QualityIssue::NonMonotonicTime {
                symbol: symbol.clone(),
                previous: *last,
                got: ts,
            }),
            Some(last) => {
                *last = ts;
                None
            }
            None => {
                self.last.insert(symbol.clone(), ts);
                None
            }
        }
    }
}

/// Notices symbols that stopped getting data: [`Staleness::check`] reports a symbol as
/// [`QualityIssue::Stale`] once when more than the threshold passed since its last data, and
/// again only after data arrived and stopped again.
#[derive(Debug)]
pub struct Staleness {
    threshold: u64,
    last: HashMap<Arc<str>, Timestamp>,
    reported: HashSet<Arc<str>>,
}

impl Staleness {
    /// A tracker that calls a symbol stale after `threshold` without data.
    pub fn new(threshold: Duration) -> Staleness {
        let threshold = u64::try_from(threshold.as_nanos()).unwrap_or(u64::MAX);
        Staleness {
            threshold,
            last: HashMap::new(),
            reported: HashSet::new(),
        }
    }

    /// Notes data for `symbol` at `ts` (the clock the feed runs on: exchange or replay time).
    pub fn observe(&mut self, symbol: &Arc<str>, ts: Timestamp) {
        let last = self.last.entry(symbol.clone()).or_insert(ts);
        *last = (*last).max(ts);
        self.reported.remove(symbol);
    }

    /// Whether `symbol` has had no data for longer than the threshold at `now`.
    pub fn is_stale(&self, symbol: &str, now: Timestamp) -> bool {
        self.last
            .get(symbol)
            .is_some_and(|&last| now.saturating_sub(last) > self.threshold)
    }

    /// The symbols that became stale since the last check, ordered by symbol.
    pub fn check(&mut self, now: Timestamp) -> Vec<QualityIssue> {
        let mut stale: Vec<(Arc<str>, Timestamp)> = self
            .last
            .iter()
            .filter(|(symbol, last)| {
                now.saturating_sub(**last) > self.threshold && !self.reported.contains(*symbol)
            })
            .map(|(symbol, last)| (symbol.clone(), *last))
            .collect();
        stale.sort();
        stale
            .into_iter()
            .map(|(symbol, last)| {
                self.reported.insert(symbol.clone());
                QualityIssue::Stale { symbol, last, now }
            })
            .collect()
    }
}
