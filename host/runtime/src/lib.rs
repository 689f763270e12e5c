//! Colony's WebAssembly runtime: the one wasmtime engine and its limits ([`engine`],
//! [`limits`]), the per-instance stores and the one entry into guest code ([`store`]), the
//! loader ([`plugin`]), the grants in force ([`policy`]), the agent actor ([`agent`]) with its
//! timers, virtual clock and state store, one module per imported WIT interface
//! ([`interfaces`]), and tools ([`tool`], [`tools`]).
//!
//! **Architecture invariant:** this is the only crate below `colony-host` that knows wasmtime;
//! the services it connects guests to (bus, market, orders, audit, outbound policy) are crates
//! below it that know nothing of guests. It knows nothing of the composition root (supervisor,
//! admin socket, configuration file).

#![deny(missing_docs)]

pub mod agent;
#[doc(hidden)]
pub mod bindings;
pub mod clock;
pub mod engine;
pub mod guest_text;
pub mod interfaces;
pub mod limits;
pub mod output;
pub mod plugin;
pub mod policy;
pub mod state_store;
pub mod store;
pub mod timers;
pub mod tool;
pub mod tools;

// The services, under the names the modules use (`crate::bus`, …).
use colony_audit as audit;
use colony_bus as bus;
use colony_files as files;
use colony_files::datadir;
use colony_market as market;
use colony_net as net;
use colony_orders as orders;
