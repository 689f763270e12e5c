//! Colony's pure trading core: a level-2 order book per instrument ([`book`]), the pre-trade
//! risk engine every order passes ([`risk`]) and the in-process paper exchange, the default
//! venue ([`paper`]), with one position ledger for both ([`ledger`]), and the circuit breaker that guards a live
//! venue or a tool ([`breaker`]). The order router in the host drives them; they never call out.
//!
//! **Architecture Invariant:** this crate is pure: no I/O, no wasmtime, sqlx or tokio, no clock
//! of its own (the caller passes `now`, the virtual clock during a replay), so a replay decides
//! exactly as the live run did. Money is `Decimal`; an overflow is a rejection, never a panic.

#![deny(missing_docs)]

pub mod book;
pub mod breaker;
pub mod ledger;
pub mod paper;
pub mod risk;
