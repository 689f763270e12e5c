//! Timers: ask the host to call [`Agent::on_timer`](crate::Agent::on_timer) later, once or
//! periodically (always available to agents; no grant).
//!
//! Timers run on the host clock, which is virtual during a replay, so a replay at any speed
//! fires them at the same replay times. A timer belongs to the agent, not to one instance: it
//! survives a restart after a trap and a sleep (a due timer wakes a sleeping agent). Setting a
//! name that exists replaces that timer, so setting timers in `init` is safe.
//!
//! Limits: at most 16 timers per agent; a name of 1 to 64 bytes; a period of 0 (one-shot) or at
//! least 10 ms; a first delay of at most 366 days.
//!
//! Off `wasm32` (native unit tests) the timers are kept in a per-thread map that
//! [`pending`] shows; nothing fires.
//!
//! ```
//! use colony_sdk::timers;
//!
//! // Every minute of host time, starting in a minute.
//! timers::set("rebalance", 60_000, 60_000)?;
//! // Once, in five seconds.
//! timers::set("warm-up-done", 5_000, 0)?;
//! assert!(timers::cancel("warm-up-done"));
//! assert!(!timers::cancel("warm-up-done"));
//! # Ok::<(), colony_sdk::Error>(())
//! ```

use crate::Error;

/// Sets (or replaces) the timer `name`: it first fires `after_ms` from now (host clock), then
/// every `period_ms` (0: once).
pub fn set(name: &str, after_ms: u64, period_ms: u64) -> Result<(), Error> {
    imp::set(name, after_ms, period_ms)
}

/// Cancels the timer `name`; returns whether it was set.
pub fn cancel(name: &str) -> bool {
    imp::cancel(name)
}

/// Off `wasm32`: the timers set on this thread as (name, after ms, period ms), by name.
#[cfg(not(target_arch = "wasm32"))]
pub fn pending() -> Vec<(String, u64, u64)> {
    imp::TIMERS.with_borrow(|t| t.iter().map(|(n, (a, p))| (n.clone(), *a, *p)).collect())
}

#[cfg(target_arch = "wasm32")]
mod imp {
    use crate::__bindings::agent::colony::plugin::timers as wit;
    use crate::Error;

    pub fn set(name: &str, after_ms: u64, period_ms: u64) -> Result<(), Error> {
        wit::set(name, after_ms, period_ms)
    }
    pub fn cancel(name: &str) -> bool {
        wit::cancel(name)
    }
}

#[cfg(not(target_arch = "wasm32"))]
mod imp {
    //! A stand-in for native unit tests: remembers the timers; nothing fires.

    use std::cell::RefCell;
    use std::collections::BTreeMap;

    use crate::Error;

    thread_local! {
        pub static TIMERS: RefCell<BTreeMap<String, (u64, u64)>> = const { RefCell::new(BTreeMap::new()) };
    }

    pub fn set(name: &str, after_ms: u64, period_ms: u64) -> Result<(), Error> {
        if name.is_empty() || name.len() > 64 {
            return Err(Error::InvalidArgument(format!(
                "timer name {name:?}: 1 to 64 bytes"
            )));
        }
        if period_ms != 0 && period_ms < 10 {
            return Err(Error::InvalidArgument(format!(
                "timer {name}: a period is 0 (one-shot) or at least 10 ms, not {period_ms}"
            )));
        }
        TIMERS.with_borrow_mut(|t| {
            if t.len() >= 16 && !t.contains_key(name) {
                return Err(Error::LimitExceeded("at most 16 timers per agent".into()));
            }
            t.insert(name.to_string(), (after_ms, period_ms));
            Ok(())
        })
    }
    pub fn cancel(name: &str) -> bool {
        TIMERS.with_borrow_mut(|t| t.remove(name).is_some())
    }
}
