//! Colony host: loads WebAssembly agents and tools from a plugins folder and runs them under
//! fuel, deadline, memory and output limits. See `ARCHITECTURE.md` for the map.

pub mod admin;
pub mod agent;
pub mod audit;
#[doc(hidden)]
pub mod bindings;
pub mod bus;
pub mod clock;
pub mod config;
pub mod datadir;
mod db;
pub mod embedded;
pub mod engine;
pub mod equity;
pub mod files;
#[cfg(test)]
mod fuzz_tests;
pub mod guest_text;
pub mod interfaces;
pub mod limits;
pub mod market;
pub mod net;
pub mod orders;
pub mod output;
pub mod plugin;
pub mod policy;
pub mod state_store;
pub mod store;
pub mod supervisor;
pub mod timers;
pub mod tool;
pub mod tools;
pub mod venues;
