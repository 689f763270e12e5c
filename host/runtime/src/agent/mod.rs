//! Agents: an [`AgentInstance`] is one instantiated agent component in its own store; an
//! agent actor is the tokio task that owns an instance and delivers its mailbox to it one
//! event at a time, under the per-event limits.
//!
//! **Lifecycle** ([`State`]): an agent is `cold` until its first instance is made, `warming`
//! while `init` (and `restore`) run, `active` while it handles an event and `idle` between
//! events. An idle agent can be put to `sleep` (by the operator, or after
//! [`Supervision::sleep_after_idle`]): its snapshot is taken and kept (also in the state store,
//! so a stopped host restores it), its instance is released, and its subscriptions and timers
//! stay, so the next message, subscribed event or timer wakes it (`init`, then `restore`).
//!
//! An operator can also pause an agent (`paused`): it handles no event until resumed; what
//! arrives meanwhile is held within the mailbox's bound or dropped with a count (`pause.rs`).
//!
//! **Supervision:** a trap or an exceeded limit ends that event only. The actor drops the
//! instance (`failed`), keeps its subscriptions so what arrives meanwhile waits in the
//! mailbox, and makes a fresh instance after a backoff that starts at 100 ms and doubles to
//! 30 s, starting again at 100 ms after a healthy period ([`Supervision`]). More failures than
//! `max_restarts` within `window` quarantine the agent: it leaves the bus, its working orders
//! are cancelled, and it takes no event until an operator releases it. Every transition but
//! `active`↔`idle` (one per event) is logged and audited (kind `lifecycle`).
//!
//! **Recovery:** the host takes the agent's `snapshot` after every successful `on-order`
//! event and every [`Supervision::snapshot_every`] other events (a recovery point). The
//! instance made after a failure gets `init`, then `restore` of the latest recovery point,
//! then a recovery notice on `on-message` (subject `agent.<name>.recovery`, sender `host`:
//! the restart, how many events since the recovery point it did not see the effects of and
//! from when, the failed call), then the `on-order` event whose handler failed, once; if
//! that fails again the event is dead-lettered (`handler-failed`). The host's own records
//! (`orders.position`, `open-orders`) stay the truth an agent rebuilds from.
//!
//! A hot swap hands the old actor a `Retire` command at the back of its mailbox, so the
//! event it is running (and any queued before the swap) finishes first; its snapshot then
//! goes to the new instance's `restore`.

use serde::Serialize;

/// Events in one agent's mailbox.
pub(crate) const MAILBOX_CAPACITY: usize = 1024;
/// The plugin name under which sleeping agents' snapshots are kept in the state store (not
/// a valid plugin name, so no plugin can read or write it).
pub(crate) const SLEEP_SNAPSHOTS: &str = "#sleep";

/// Where an agent is in its life (see the module docs).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
#[repr(u8)]
pub enum State {
    /// Loaded, no instance made yet.
    Cold = 0,
    /// Its instance is being made (`init`, and `restore` after a sleep).
    Warming = 1,
    /// Handling an event.
    Active = 2,
    /// Its instance waits for the next event.
    Idle = 3,
    /// Its instance is released; its snapshot, subscriptions and timers are kept.
    Sleeping = 4,
    /// Its instance trapped or failed to start; a new one is made after the backoff.
    Failed = 5,
    /// Failed too often: off the bus, no events until an operator releases it.
    Quarantined = 6,
    /// Held by an operator: handles no event until resumed (see `pause.rs`).
    Paused = 7,
}

impl State {
    /// The name operators see.
    pub fn as_str(self) -> &'static str {
        match self {
            State::Cold => "cold",
            State::Warming => "warming",
            State::Active => "active",
            State::Idle => "idle",
            State::Sleeping => "sleeping",
            State::Failed => "failed",
            State::Quarantined => "quarantined",
            State::Paused => "paused",
        }
    }

    fn from_u8(v: u8) -> State {
        match v {
            1 => State::Warming,
            2 => State::Active,
            3 => State::Idle,
            4 => State::Sleeping,
            5 => State::Failed,
            6 => State::Quarantined,
            7 => State::Paused,
            _ => State::Cold,
        }
    }
}

impl std::fmt::Display for State {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

mod actor;
mod handle;
mod instance;
mod pause;
mod supervision;

pub use handle::{AgentHandle, AgentServices, AgentSpec, AgentStats};
pub(crate) use instance::describe_error;
pub use instance::{AgentInstance, Event, Message};
pub use supervision::{Supervision, recovery_subject};

#[cfg(test)]
mod lifecycle_tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn backoff_starts_at_100_ms_doubles_and_stops_at_30_s() {
        let s = Supervision::default();
        let ms: Vec<u128> = (0..12).map(|l| s.backoff(l).as_millis()).collect();
        assert_eq!(
            ms,
            [
                100, 200, 400, 800, 1600, 3200, 6400, 12800, 25600, 30000, 30000, 30000
            ]
        );
        assert_eq!(s.backoff(u32::MAX), Duration::from_secs(30));
    }

    #[test]
    fn states_round_trip_through_their_byte() {
        for st in [
            State::Cold,
            State::Warming,
            State::Active,
            State::Idle,
            State::Sleeping,
            State::Failed,
            State::Quarantined,
            State::Paused,
        ] {
            assert_eq!(State::from_u8(st as u8), st);
        }
        let stats = AgentStats::default();
        assert_eq!(stats.state(), State::Cold);
        stats.set_state(State::Quarantined);
        assert!(stats.quarantined());
    }
}
