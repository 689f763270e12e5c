//! Order routing: every order an agent places passes [`risk`] (the pre-trade risk engine), is
//! journaled ([`journal`]) and goes to one venue behind the [`venue::Venue`] trait: the
//! in-process [`paper`] exchange (the default) or a live account (the `colony-venues` crate
//! implements the trait for each one). Whatever a venue answers comes back as [`ExecReport`]s
//! (the order types are `colony_model::order`'s, re-exported here).
//!
//! **Architecture Invariant:** [`risk`], [`paper`] and the order types are pure: no I/O, no
//! wasmtime, no clock of their own (the caller passes `now`, the virtual clock during a
//! replay). Money is `Decimal`, never a float. This crate knows nothing about wasmtime or
//! guests, and no live venue's wire format.

#![deny(missing_docs)]

pub mod config;
pub mod journal;
pub mod service;
pub mod venue;

pub use colony_risk::{ledger, paper, risk};

/// The system clock now, in ns since the Unix epoch: approval deadlines and recovery stamps
/// are wall time, not the replay's virtual time.
pub(crate) fn wall_ns() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
}

pub use colony_model::order::{
    ExecKind, ExecReport, FillReport, Liquidity, OrderKind, OrderRequest, OrderState, OrderStatus,
    TimeInForce,
};
