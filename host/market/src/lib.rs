//! Market data: the records ([`types`], `colony_model::market` re-exported), candle
//! aggregation ([`candles`]), recorded-data replay ([`replay`]), the seeded synthetic generator
//! ([`synthetic`]) and the live OKX v5 public feed ([`okx`]). The L2 order book is
//! `colony_risk::book`.
//!
//! **Architecture invariant:** this crate knows nothing about wasmtime or guests; sources produce
//! [`MarketEvent`]s, the market service publishes them on the bus as
//! `md.<venue>.<symbol>.<kind>` and keeps the snapshots agents query.

#![deny(missing_docs)]

pub mod candles;
pub mod feed;
pub mod okx;
pub mod replay;
pub mod service;
pub mod synthetic;
pub use colony_model::market as types;

pub use types::{
    Book, BookLevel, Candle, Kind, MarketEvent, QualityIssue, Quote, Side, Timestamp, Trade,
    ValueRule,
};
