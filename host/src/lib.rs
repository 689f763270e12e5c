//! Colony host: loads WebAssembly agents and tools from a plugins folder and runs them under
//! fuel, deadline, memory and output limits. See `ARCHITECTURE.md` for the map.
//!
//! This crate is the composition root: the supervisor that builds a host from its services and
//! the plugins folder, the admin socket, the configuration file and the embedded plugins. The
//! wasm runtime (`colony-runtime`) and the services (`colony-bus`, `colony-market`,
//! `colony-orders`, `colony-venues`, `colony-audit`, …) are crates below it, re-exported here
//! under the module names the rest of the host, the CLI and the tests use.

#![deny(missing_docs)]

pub mod admin;
pub mod config;
pub mod embedded;
pub mod equity;
#[cfg(test)]
mod fuzz_tests;
pub mod supervisor;

pub use colony_audit as audit;
pub use colony_bus as bus;
pub use colony_files as files;
pub use colony_files::datadir;
pub use colony_market as market;
pub use colony_net as net;
pub use colony_orders as orders;
pub use colony_runtime::{
    agent, bindings, clock, engine, guest_text, interfaces, limits, output, plugin, policy,
    state_store, store, timers, tool, tools,
};
pub use colony_venues as venues;
