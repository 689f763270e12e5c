//! Colony host: loads WebAssembly agents and tools from a plugins folder and runs them under
//! fuel, deadline, memory and output limits. See `ARCHITECTURE.md` for the map.
//!
//! This crate is the wasm runtime (engine, limits, stores, loader, agent actor, timers, the
//! virtual clock, the state store), one module per WIT interface, tools, and the composition
//! root (supervisor, admin socket, configuration). The services below it are crates of their
//! own, re-exported here under the module names the rest of the host uses.

pub mod admin;
pub mod agent;
#[doc(hidden)]
pub mod bindings;
pub mod clock;
pub mod config;
pub mod embedded;
pub mod engine;
pub mod equity;
#[cfg(test)]
mod fuzz_tests;
pub mod guest_text;
pub mod interfaces;
pub mod limits;
pub mod output;
pub mod plugin;
pub mod policy;
pub mod state_store;
pub mod store;
pub mod supervisor;
pub mod timers;
pub mod tool;
pub mod tools;

pub use colony_audit as audit;
pub use colony_bus as bus;
pub use colony_files as files;
pub use colony_files::datadir;
pub use colony_market as market;
pub use colony_net as net;
pub use colony_orders as orders;
pub use colony_venues as venues;
