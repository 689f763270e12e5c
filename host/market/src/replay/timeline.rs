//! Time order within one file: the replay's clock never goes back; an earlier record is
//! flagged and skipped.

use super::results::{Flagged, Replay, known_at};
use crate::types::{MarketEvent, QualityIssue, Timestamp};
use std::collections::HashMap;
use std::sync::Arc;

/// The replay's clock: a file is one timeline, so its times ([`known_at`]: a candle counts at its
/// close) may not decrease (across symbols), and a candle may not repeat the previous one of its
/// symbol and interval.
#[derive(Default)]
pub(super) struct Timeline {
    last: Option<Timestamp>,
    candles: HashMap<(Arc<str>, u32), Timestamp>,
}

impl Timeline {
    /// Admits `event` or says why not (and then leaves the clock where it was).
    pub(super) fn admit(&mut self, event: &MarketEvent) -> Result<(), QualityIssue> {
        let at = known_at(event);
        let backwards = |previous| QualityIssue::NonMonotonicTime {
            symbol: event.symbol().clone(),
            previous,
            got: at,
        };
        if let Some(previous) = self.last
            && at < previous
        {
            return Err(backwards(previous));
        }
        if let MarketEvent::Candle(c) = event {
            let key = (c.symbol.clone(), c.interval_secs);
            if let Some(&previous) = self.candles.get(&key)
                && at <= previous
            {
                return Err(backwards(previous));
            }
            self.candles.insert(key, at);
        }
        self.last = Some(at);
        Ok(())
    }
}

/// Collects the events and issues of one file.
pub(super) struct Collector {
    pub(super) file: Arc<str>,
    pub(super) timeline: Timeline,
    pub(super) replay: Replay,
}

impl Collector {
    pub(super) fn new(file: &Arc<str>) -> Collector {
        Collector {
            file: file.clone(),
            timeline: Timeline::default(),
            replay: Replay::default(),
        }
    }

    pub(super) fn flag(&mut self, line: usize, ts: Timestamp, issue: QualityIssue) {
        self.replay.issues.push(Flagged {
            file: self.file.clone(),
            line,
            ts,
            issue,
        });
    }

    /// Adds an event unless its time goes back, which is flagged instead.
    pub(super) fn push(&mut self, line: usize, event: MarketEvent) {
        match self.timeline.admit(&event) {
            Ok(()) => self.replay.events.push(event),
            Err(issue) => self.flag(line, known_at(&event), issue),
        }
    }
}
