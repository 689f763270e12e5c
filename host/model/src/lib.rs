//! Colony's shared vocabulary: the records that market data, risk, venues, the order router,
//! the journal and the bus exchange. It sits below all of them, so each type exists once:
//! one [`Side`], one symbol alphabet ([`symbol`]) and one `*` matcher ([`glob::Glob`]).
//!
//! **Architecture Invariant:** this crate is data and pure functions only: no I/O, no clock,
//! no wasmtime, sqlx or tokio; its dependencies are `rust_decimal`, `serde` and `thiserror`.
//! Money is [`rust_decimal::Decimal`], never a float.

#![deny(missing_docs)]

pub mod glob;
pub mod market;
pub mod order;
pub mod symbol;

pub use market::{Side, Timestamp};
