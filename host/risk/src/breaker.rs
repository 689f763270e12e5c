//! Circuit breaker for one venue connection (or one tool): after [`BreakerConfig::failure_threshold`]
//! consecutive failures it stops sending for a cool-down, then lets a single trial request
//! through, which closes it again or re-opens it for twice as long (up to a maximum).
//!
//! | state | [`CircuitBreaker::allow`] | success | failure |
//! |---|---|---|---|
//! | closed | a permit | resets the failure count | counts; the threshold-th in a row opens |
//! | open | refused until the cool-down ends, then half-open | — | — |
//! | half-open | one trial permit, others refused | closes, cool-down back to base | re-opens, cool-down doubled (capped) |
//!
//! A failure is the venue not working: a timeout, a connection error, a 5xx, an answer that is
//! not what the venue documents. A venue *refusing an order* is the venue working, so it is a
//! success. Why a breaker at all: a venue that is down answers slowly or not at all, and an
//! order router that keeps sending stacks up requests whose outcome it will have to reconcile;
//! refusing at once says "unavailable" without putting another order in doubt.
//!
//! **Architecture Invariant:** pure — no clock, no I/O. The caller passes `now`, so every
//! transition is unit-tested without waiting. Each permit belongs to an *epoch* (the breaker
//! starts a new one on every state change), and the outcome of a permit from an earlier epoch
//! is ignored: a slow request sent before the breaker opened cannot close it.

use std::time::{Duration, Instant};

use serde::Serialize;

/// When a breaker opens and for how long.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BreakerConfig {
    /// Consecutive failures that open a closed breaker; at least 1.
    pub failure_threshold: u32,
    /// How long the breaker stays open the first time.
    pub cool_down: Duration,
    /// Longest cool-down after repeated failed trials.
    pub max_cool_down: Duration,
}

impl Default for BreakerConfig {
    /// Five failures in a row; open for 2 s, doubling up to a minute.
    fn default() -> Self {
        BreakerConfig {
            failure_threshold: 5,
            cool_down: Duration::from_secs(2),
            max_cool_down: Duration::from_secs(60),
        }
    }
}

/// The breaker's state, as reported.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum BreakerState {
    /// Requests go out.
    Closed,
    /// Requests are refused until the cool-down ends.
    Open,
    /// One trial request may go out (or is out).
    HalfOpen,
}

impl BreakerState {
    /// The name reports and audit records use: `closed`, `open`, `half-open`.
    pub fn as_str(self) -> &'static str {
        match self {
            BreakerState::Closed => "closed",
            BreakerState::Open => "open",
            BreakerState::HalfOpen => "half-open",
        }
    }
}

/// Leave to send one request. Hand it back with [`CircuitBreaker::on_success`],
/// [`CircuitBreaker::on_failure`] or [`CircuitBreaker::release`].
#[derive(Debug, PartialEq, Eq)]
#[must_use = "report the outcome of the request with on_success, on_failure or release"]
pub struct Permit {
    epoch: u64,
    trial: bool,
}

impl Permit {
    /// Whether this is the half-open breaker's one trial request.
    pub fn is_trial(&self) -> bool {
        self.trial
    }
}

/// Refusal: the breaker is open (or half-open with its trial out).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("circuit open, retry after {retry_after:?}")]
pub struct Open {
    /// How long until a request may be allowed again.
    pub retry_after: Duration,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Inner {
    Closed {
        failures: u32,
    },
    Open {
        until: Instant,
    },
    /// `trial_since` is when the trial permit was handed out, if one is out.
    HalfOpen {
        trial_since: Option<Instant>,
    },
}

/// What a status report shows about a breaker.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct BreakerStatus {
    /// Closed, open or half-open.
    pub state: BreakerState,
    /// Failures in a row while closed.
    pub consecutive_failures: u32,
    /// Failures in a row that open it.
    pub failure_threshold: u32,
    /// The cool-down the next opening (or the current one) uses, in milliseconds.
    pub cool_down_ms: u64,
    /// While open: milliseconds until a trial is allowed.
    pub retry_after_ms: Option<u64>,
    /// How many times the breaker has opened (from closed or from a failed trial).
    pub opened_count: u64,
    /// Requests refused because the breaker was open or its trial was out.
    pub rejected_count: u64,
}

/// A closed / open / half-open circuit breaker; see the module doc.
#[derive(Debug, Clone)]
pub struct CircuitBreaker {
    config: BreakerConfig,
    inner: Inner,
    epoch: u64,
    cool_down: Duration,
    opened_count: u64,
    rejected_count: u64,
}

impl CircuitBreaker {
    /// A closed breaker. A threshold of 0 is taken as 1, and a maximum cool-down below the
    /// base one as the base one.
    pub fn new(mut config: BreakerConfig) -> Self {
        config.failure_threshold = config.failure_threshold.max(1);
        config.max_cool_down = config.max_cool_down.max(config.cool_down);
        CircuitBreaker {
            inner: Inner::Closed { failures: 0 },
            epoch: 0,
            cool_down: config.cool_down,
            opened_count: 0,
            rejected_count: 0,
            config,
        }
    }

    /// The thresholds and cool-downs it was made with.
    pub fn config(&self) -> BreakerConfig {
        self.config
    }

    /// The state as of the last call that changed it. An open breaker whose cool-down has ended
    /// is still `Open` here until the next [`allow`](Self::allow); [`status`](Self::status)
    /// reports it as half-open.
    pub fn state(&self) -> BreakerState {
        match self.inner {
            Inner::Closed { .. } => BreakerState::Closed,
            Inner::Open { .. } => BreakerState::Open,
            Inner::HalfOpen { .. } => BreakerState::HalfOpen,
        }
    }

    /// Asks to send one request at `now`.
    ///
    /// A half-open breaker's trial permit that is never reported (its request future was
    /// dropped) is presumed lost after one cool-down, and a new trial is allowed.
    pub fn allow(&mut self, now: Instant) -> Result<Permit, Open> {
        match self.inner {
            Inner::Closed { .. } => Ok(self.permit(false)),
            Inner::Open { until } if now < until => self.refuse(until - now),
            Inner::Open { .. } => {
                self.enter(Inner::HalfOpen {
                    trial_since: Some(now),
                });
                Ok(self.permit(true))
            }
            Inner::HalfOpen {
                trial_since: Some(since),
            } if now < since + self.cool_down => self.refuse(since + self.cool_down - now),
            Inner::HalfOpen { .. } => {
                // No trial out, or the last one was lost: a new epoch, so a late report of the
                // lost one cannot decide for this one.
                self.enter(Inner::HalfOpen {
                    trial_since: Some(now),
                });
                Ok(self.permit(true))
            }
        }
    }

    /// The request behind `permit` worked (the venue answered, even with a refusal).
    pub fn on_success(&mut self, permit: Permit) {
        if permit.epoch != self.epoch {
            return;
        }
        match self.inner {
            Inner::Closed { .. } => self.inner = Inner::Closed { failures: 0 },
            Inner::HalfOpen { .. } if permit.trial => {
                self.cool_down = self.config.cool_down;
                self.enter(Inner::Closed { failures: 0 });
            }
            Inner::HalfOpen { .. } | Inner::Open { .. } => {}
        }
    }

    /// The request behind `permit` failed at `now` (timeout, connection error, 5xx, garbage).
    pub fn on_failure(&mut self, permit: Permit, now: Instant) {
        if permit.epoch != self.epoch {
            return;
        }
        match self.inner {
            Inner::Closed { failures } => {
                let failures = failures.saturating_add(1);
                if failures >= self.config.failure_threshold {
                    self.open(now);
                } else {
                    self.inner = Inner::Closed { failures };
                }
            }
            Inner::HalfOpen { .. } if permit.trial => {
                self.cool_down = self
                    .cool_down
                    .saturating_mul(2)
                    .min(self.config.max_cool_down);
                self.open(now);
            }
            Inner::HalfOpen { .. } | Inner::Open { .. } => {}
        }
    }

    /// The request behind `permit` was never sent, or says nothing about the venue's health: a
    /// half-open breaker lets the next request be the trial instead.
    pub fn release(&mut self, permit: Permit) {
        if permit.epoch == self.epoch && permit.trial {
            self.inner = Inner::HalfOpen { trial_since: None };
        }
    }

    /// The breaker's counters and state as of `now`, for status reports.
    pub fn status(&self, now: Instant) -> BreakerStatus {
        let (state, consecutive_failures, retry_after) = match self.inner {
            Inner::Closed { failures } => (BreakerState::Closed, failures, None),
            Inner::Open { until } if now < until => (BreakerState::Open, 0, Some(until - now)),
            Inner::Open { .. } | Inner::HalfOpen { .. } => (BreakerState::HalfOpen, 0, None),
        };
        BreakerStatus {
            state,
            consecutive_failures,
            failure_threshold: self.config.failure_threshold,
            cool_down_ms: millis(self.cool_down),
            retry_after_ms: retry_after.map(millis),
            opened_count: self.opened_count,
            rejected_count: self.rejected_count,
        }
    }

    fn permit(&self, trial: bool) -> Permit {
        Permit {
            epoch: self.epoch,
            trial,
        }
    }

    fn refuse(&mut self, retry_after: Duration) -> Result<Permit, Open> {
        self.rejected_count = self.rejected_count.saturating_add(1);
        Err(Open { retry_after })
    }

    fn open(&mut self, now: Instant) {
        self.opened_count = self.opened_count.saturating_add(1);
        self.enter(Inner::Open {
            until: now + self.cool_down,
        });
    }

    fn enter(&mut self, inner: Inner) {
        self.inner = inner;
        self.epoch = self.epoch.wrapping_add(1);
    }
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    const COOL: Duration = Duration::from_secs(2);

    fn breaker(threshold: u32) -> CircuitBreaker {
        CircuitBreaker::new(BreakerConfig {
            failure_threshold: threshold,
            cool_down: COOL,
            max_cool_down: Duration::from_secs(5),
        })
    }

    fn fail(b: &mut CircuitBreaker, now: Instant) {
        let permit = b.allow(now).unwrap();
        b.on_failure(permit, now);
    }

    /// Opens `b` (threshold 2) at `t0`.
    fn open(b: &mut CircuitBreaker, t0: Instant) {
        fail(b, t0);
        fail(b, t0);
        assert_eq!(b.state(), BreakerState::Open);
    }

    #[test]
    fn closed_stays_closed_below_the_threshold_and_success_resets_the_count() {
        let t0 = Instant::now();
        let mut b = breaker(3);
        fail(&mut b, t0);
        fail(&mut b, t0);
        assert_eq!(b.status(t0).consecutive_failures, 2);
        let permit = b.allow(t0).unwrap();
        assert!(!permit.is_trial());
        b.on_success(permit);
        assert_eq!(b.status(t0).consecutive_failures, 0);
        fail(&mut b, t0);
        fail(&mut b, t0);
        assert_eq!(b.state(), BreakerState::Closed);
        fail(&mut b, t0);
        assert_eq!(b.state(), BreakerState::Open);
        assert_eq!(b.status(t0).opened_count, 1);
    }

    #[test]
    fn open_refuses_until_the_cool_down_ends_and_counts_refusals() {
        let t0 = Instant::now();
        let mut b = breaker(2);
        open(&mut b, t0);
        let later = t0 + Duration::from_millis(500);
        assert_eq!(
            b.allow(later),
            Err(Open {
                retry_after: Duration::from_millis(1500)
            })
        );
        assert!(b.allow(t0 + COOL - Duration::from_nanos(1)).is_err());
        let status = b.status(later);
        assert_eq!(
            (status.state, status.retry_after_ms, status.rejected_count),
            (BreakerState::Open, Some(1500), 2)
        );
        // Once the cool-down is over the status says half-open, before anyone asks.
        assert_eq!(b.status(t0 + COOL).state, BreakerState::HalfOpen);
        assert_eq!(b.state(), BreakerState::Open);
    }

    #[test]
    fn half_open_allows_one_trial_and_success_closes() {
        let t0 = Instant::now();
        let mut b = breaker(2);
        open(&mut b, t0);
        let t1 = t0 + COOL;
        let trial = b.allow(t1).unwrap();
        assert!(trial.is_trial());
        assert_eq!(b.state(), BreakerState::HalfOpen);
        // The trial is out: everyone else waits.
        assert!(b.allow(t1).is_err());
        b.on_success(trial);
        assert_eq!(b.state(), BreakerState::Closed);
        assert!(!b.allow(t1).unwrap().is_trial());
        let status = b.status(t1);
        assert_eq!((status.opened_count, status.rejected_count), (1, 1));
    }

    #[test]
    fn failed_trial_reopens_with_a_doubled_cool_down_capped_at_the_maximum() {
        let t0 = Instant::now();
        let mut b = breaker(2);
        open(&mut b, t0);
        let mut now = t0 + COOL;
        for expected in [4, 5, 5] {
            let trial = b.allow(now).unwrap();
            b.on_failure(trial, now);
            assert_eq!(b.state(), BreakerState::Open);
            assert_eq!(b.status(now).cool_down_ms, expected * 1000);
            let wait = Duration::from_secs(expected);
            assert!(b.allow(now + wait - Duration::from_millis(1)).is_err());
            now += wait;
        }
        assert_eq!(b.status(now).opened_count, 4);
        // A successful trial closes and restores the base cool-down for the next opening.
        let trial = b.allow(now).unwrap();
        b.on_success(trial);
        assert_eq!(b.status(now).cool_down_ms, 2000);
        open(&mut b, now);
        assert!(b.allow(now + COOL).is_ok());
    }

    #[test]
    fn reports_from_before_the_breaker_opened_are_ignored() {
        let t0 = Instant::now();
        let mut b = breaker(2);
        let slow = b.allow(t0).unwrap();
        open(&mut b, t0);
        b.on_success(slow);
        assert_eq!(b.state(), BreakerState::Open);

        // Same for a closed-state permit reported while half-open: only the trial decides.
        let mut b = breaker(2);
        let slow = b.allow(t0).unwrap();
        open(&mut b, t0);
        let trial = b.allow(t0 + COOL).unwrap();
        b.on_failure(slow, t0 + COOL);
        assert_eq!(b.state(), BreakerState::HalfOpen);
        b.on_success(trial);
        assert_eq!(b.state(), BreakerState::Closed);
    }

    #[test]
    fn a_released_trial_lets_the_next_request_be_the_trial() {
        let t0 = Instant::now();
        let mut b = breaker(2);
        open(&mut b, t0);
        let t1 = t0 + COOL;
        let trial = b.allow(t1).unwrap();
        b.release(trial);
        assert_eq!(b.state(), BreakerState::HalfOpen);
        let next = b.allow(t1).unwrap();
        assert!(next.is_trial());
        b.on_success(next);
        assert_eq!(b.state(), BreakerState::Closed);
        // Releasing a closed-state permit changes nothing.
        let permit = b.allow(t1).unwrap();
        b.release(permit);
        assert_eq!(b.state(), BreakerState::Closed);
    }

    #[test]
    fn a_lost_trial_is_replaced_after_one_cool_down_and_cannot_decide_later() {
        let t0 = Instant::now();
        let mut b = breaker(2);
        open(&mut b, t0);
        let t1 = t0 + COOL;
        let lost = b.allow(t1).unwrap();
        assert_eq!(
            b.allow(t1 + Duration::from_millis(500)),
            Err(Open {
                retry_after: Duration::from_millis(1500)
            })
        );
        let replacement = b.allow(t1 + COOL).unwrap();
        assert!(replacement.is_trial());
        b.on_success(lost);
        assert_eq!(b.state(), BreakerState::HalfOpen);
        b.on_failure(replacement, t1 + COOL);
        assert_eq!(b.state(), BreakerState::Open);
    }

    #[test]
    fn degenerate_configs_are_normalised() {
        let t0 = Instant::now();
        let mut b = CircuitBreaker::new(BreakerConfig {
            failure_threshold: 0,
            cool_down: COOL,
            max_cool_down: Duration::ZERO,
        });
        assert_eq!(b.config().failure_threshold, 1);
        fail(&mut b, t0);
        assert_eq!(b.state(), BreakerState::Open);
        let trial = b.allow(t0 + COOL).unwrap();
        b.on_failure(trial, t0 + COOL);
        assert_eq!(b.status(t0).cool_down_ms, 2000);
    }

    #[test]
    fn status_serializes_with_kebab_case_state() {
        let t0 = Instant::now();
        let mut b = breaker(2);
        open(&mut b, t0);
        let _ = b.allow(t0);
        let json = serde_json::to_value(b.status(t0)).unwrap();
        assert_eq!(
            json,
            serde_json::json!({
                "state": "open",
                "consecutive_failures": 0,
                "failure_threshold": 2,
                "cool_down_ms": 2000,
                "retry_after_ms": 2000,
                "opened_count": 1,
                "rejected_count": 1,
            })
        );
        assert_eq!(
            serde_json::to_value(BreakerState::HalfOpen).unwrap(),
            "half-open"
        );
    }
}
