//! Order routing (issue 6): every order an agent places passes [`risk`] (the pre-trade risk
//! engine), is journaled ([`journal`]) and goes to one venue: the in-process [`paper`] exchange
//! (the default) or a real account through [`crate::venues`]. Whatever a venue answers comes
//! back as [`ExecReport`]s (the order types are `colony_model::order`'s, re-exported here).
//!
//! **Architecture Invariant:** [`risk`], [`paper`] and the order types are pure: no I/O, no
//! wasmtime, no clock of their own (the caller passes `now`, the virtual clock during a
//! replay). Money is `Decimal`, never a float.

pub mod config;
pub mod journal;
pub mod service;
pub mod venue;

pub use colony_risk::{ledger, paper, risk};

pub use colony_model::order::{
    ExecKind, ExecReport, FillReport, Liquidity, OrderKind, OrderRequest, OrderState, OrderStatus,
    TimeInForce,
};
