//! `colony-sdk`: write Colony agents and tools in Rust.
//!
//! A Colony plugin is a WebAssembly component built for `wasm32-wasip2`. This crate hides the
//! component-model plumbing (it wraps [`wit_bindgen`] over the `colony:plugin@0.1.0` WIT
//! package) behind two traits and two macros:
//!
//! - an **agent** implements [`Agent`] and is exported with [`export_agent!`];
//! - a **tool** implements [`Tool`] and is exported with [`export_tool!`].
//!
//! Both macros also embed the plugin's [`Manifest`] (name, version, requested capabilities,
//! limits) as JSON in a `colony-manifest` custom section of the component, encoded at compile
//! time: a malformed manifest is a compile error, not a load-time surprise.
//!
//! The host imports are wrapped in small modules: [`log`] (plus the [`info!`]-style macros),
//! [`state`], [`messaging`], [`market`], [`orders`], [`tools`] and [`timers`] (agents only), and [`decimal`] (exact money
//! values). [`recovery`] is how an agent that trades rebuilds itself from the host's records
//! after a restart. The records they pass ([`Message`], [`MarketEvent`], [`Quote`], [`Candle`], …) are
//! the WIT records, re-exported at the crate root.
//!
//! # An agent
//!
//! ```
//! use colony_sdk::{Agent, Error, Manifest, Message, Timestamp};
//!
//! /// Counts timer ticks and logs every message.
//! struct Counter {
//!     ticks: u64,
//! }
//!
//! impl Agent for Counter {
//!     fn init(_config: &str) -> Result<Self, Error> {
//!         let ticks = colony_sdk::state::get_json("ticks")?.unwrap_or(0);
//!         Ok(Counter { ticks })
//!     }
//!
//!     fn on_message(&mut self, msg: Message) -> Result<(), Error> {
//!         colony_sdk::info!("message on {} from {}", msg.subject, msg.sender);
//!         Ok(())
//!     }
//!
//!     fn on_timer(&mut self, _now: Timestamp) -> Result<(), Error> {
//!         self.ticks += 1;
//!         colony_sdk::state::set_json("ticks", &self.ticks)
//!     }
//! }
//!
//! const MANIFEST: Manifest = Manifest::agent(env!("CARGO_PKG_NAME"), env!("CARGO_PKG_VERSION"))
//!     .description("Counts timer ticks.")
//!     .capabilities(&["messaging.subscribe:demo.>"])
//!     .cpu_ms(50);
//!
//! colony_sdk::export_agent!(Counter, manifest = MANIFEST);
//! # fn main() {}
//! ```
//!
//! # A tool
//!
//! ```
//! use colony_sdk::{Manifest, Tool, ToolSpec};
//!
//! struct Upper;
//!
//! impl Tool for Upper {
//!     fn describe() -> ToolSpec {
//!         ToolSpec {
//!             name: "upper".into(),
//!             description: "Upper-cases a JSON string.".into(),
//!             input_schema: r#"{"type":"string"}"#.into(),
//!             output_schema: Some(r#"{"type":"string"}"#.into()),
//!         }
//!     }
//!
//!     fn invoke(args_json: &str) -> Result<String, String> {
//!         Ok(args_json.to_uppercase())
//!     }
//! }
//!
//! const MANIFEST: Manifest = Manifest::tool("upper", "0.1.0");
//! colony_sdk::export_tool!(Upper, manifest = MANIFEST);
//! # fn main() {}
//! ```
//!
//! # Building
//!
//! A plugin crate is a `cdylib` built with `cargo build --release --target wasm32-wasip2`;
//! the output `target/wasm32-wasip2/release/<crate_name>.wasm` is already a component (the
//! Rust toolchain links it with `wasm-component-ld`). `colony new agent NAME` scaffolds one.
//!
//! # Testing natively
//!
//! Off `wasm32` there is no host, so [`log`] writes to stderr and [`state`] keeps an
//! in-memory map per thread. Plugin logic can therefore be unit-tested with a plain
//! `cargo test` on the build machine (each test runs on its own thread, so each starts with
//! an empty state).
//!
//! # Features
//!
//! - `decimal` (default): conversions between [`Decimal`] and `rust_decimal::Decimal`, and the
//!   `rust_decimal` re-export.
//! - `json` (default): `state::get_json` and `state::set_json` through `serde_json`.

#![warn(missing_docs)]

mod agent;
pub mod decimal;
pub mod log;
pub mod manifest;
pub mod market;
pub mod messaging;
pub mod orders;
pub mod recovery;
pub mod state;
pub mod timers;
mod tool;
pub mod tools;

pub use agent::Agent;
pub use manifest::{Kind, Limits, Manifest};
pub use tool::Tool;

pub use __bindings::agent::colony::plugin::types::{
    Book, BookLevel, Candle, Decimal, Error, Fill, MarketEvent, Message, OrderEvent, OrderStatus,
    Priority, Quote, Side, Timestamp, Trade,
};
/// The `rust_decimal` crate, for arithmetic on [`Decimal`] values (feature `decimal`).
#[cfg(feature = "decimal")]
pub use rust_decimal;

pub use __bindings::tool::exports::colony::plugin::tool_handler::ToolSpec;

/// Generated bindings; plugin code uses the re-exports at the crate root instead.
#[doc(hidden)]
#[allow(missing_docs)]
pub mod __bindings {
    /// The `agent` world: imports `types`, `log`, `state`, `messaging`, `market-data`;
    /// exports `handler`.
    pub mod agent {
        wit_bindgen::generate!({
            path: "../wit",
            world: "agent",
            additional_derives: [PartialEq, Eq],
            export_macro_name: "__export_agent_world",
            pub_export_macro: true,
            default_bindings_module: "::colony_sdk::__bindings::agent",
            generate_all,
        });
    }

    /// The `tool` world: imports `log` (shared with the agent bindings so there is one
    /// `Level` type); exports `tool-handler`.
    pub mod tool {
        wit_bindgen::generate!({
            path: "../wit",
            world: "tool",
            additional_derives: [PartialEq, Eq],
            // `wasi:io/streams.stream-error` holds an `error` resource, which has no equality
            // (the tool world imports `wasi:http`, and with it `wasi:io`).
            additional_derives_ignore: ["stream-error"],
            with: {
                "colony:plugin/log@0.1.0": crate::__bindings::agent::colony::plugin::log,
            },
            export_macro_name: "__export_tool_world",
            pub_export_macro: true,
            default_bindings_module: "::colony_sdk::__bindings::tool",
            generate_all,
        });
    }
}

/// What the export macros expand to; not part of the API.
#[doc(hidden)]
pub mod __private {
    pub use crate::agent::AgentExport;
    pub use crate::manifest::{check, encode, encoded_len};
    pub use crate::tool::ToolExport;
}

/// Exports a type implementing [`Agent`] as the component's `handler`, and embeds its
/// [`Manifest`].
///
/// ```text
/// colony_sdk::export_agent!(MyAgent, manifest = MANIFEST);
/// colony_sdk::export_agent!(MyAgent); // no embedded manifest: the host uses defaults
/// ```
///
/// `MANIFEST` is any constant expression of type [`Manifest`] whose kind is
/// [`Kind::Agent`]; it is checked and encoded at compile time (see [`manifest`] for the
/// rules). Use the macro once per crate, at module level. See the crate docs for a full
/// example.
///
/// A manifest that breaks a rule, or is of the wrong kind, does not compile:
///
/// ```compile_fail
/// # use colony_sdk::{Agent, Error, Manifest};
/// # struct A;
/// # impl Agent for A { fn init(_: &str) -> Result<Self, Error> { Ok(A) } }
/// const MANIFEST: Manifest = Manifest::tool("a", "0.1.0"); // not an agent
/// colony_sdk::export_agent!(A, manifest = MANIFEST);
/// # fn main() {}
/// ```
///
/// ```compile_fail
/// # use colony_sdk::{Agent, Error, Manifest};
/// # struct A;
/// # impl Agent for A { fn init(_: &str) -> Result<Self, Error> { Ok(A) } }
/// const MANIFEST: Manifest = Manifest::agent("My Agent", "0.1.0"); // bad name
/// colony_sdk::export_agent!(A, manifest = MANIFEST);
/// # fn main() {}
/// ```
#[macro_export]
macro_rules! export_agent {
    ($ty:ty, manifest = $manifest:expr $(,)?) => {
        $crate::__embed_manifest!($crate::Kind::Agent, $manifest);
        $crate::export_agent!($ty);
    };
    ($ty:ty $(,)?) => {
        const _: () = {
            type __ColonyAgentExport = $crate::__private::AgentExport<$ty>;
            $crate::__bindings::agent::__export_agent_world!(
                __ColonyAgentExport with_types_in $crate::__bindings::agent
            );
        };
    };
}

/// Exports a type implementing [`Tool`] as the component's `tool-handler`, and embeds its
/// [`Manifest`].
///
/// ```text
/// colony_sdk::export_tool!(MyTool, manifest = MANIFEST);
/// colony_sdk::export_tool!(MyTool); // no embedded manifest: the host uses defaults
/// ```
///
/// `MANIFEST` is any constant expression of type [`Manifest`] whose kind is
/// [`Kind::Tool`]; it is checked and encoded at compile time. Use the macro once per crate,
/// at module level. See the crate docs for a full example.
#[macro_export]
macro_rules! export_tool {
    ($ty:ty, manifest = $manifest:expr $(,)?) => {
        $crate::__embed_manifest!($crate::Kind::Tool, $manifest);
        $crate::export_tool!($ty);
    };
    ($ty:ty $(,)?) => {
        const _: () = {
            type __ColonyToolExport = $crate::__private::ToolExport<$ty>;
            $crate::__bindings::tool::__export_tool_world!(
                __ColonyToolExport with_types_in $crate::__bindings::tool
            );
        };
    };
}

/// Checks a manifest at compile time and emits it as the `colony-manifest` custom section.
///
/// The section is emitted only on `wasm32` (a native object file has no use for it, and
/// some native formats reject the section name), but the check runs on every target so a
/// bad manifest fails `cargo check` and `cargo test` too.
#[doc(hidden)]
#[macro_export]
macro_rules! __embed_manifest {
    ($kind:expr, $manifest:expr) => {
        const _: () = {
            const __COLONY_MANIFEST: $crate::Manifest = $manifest;
            const _: () = $crate::__private::check(&__COLONY_MANIFEST, $kind);
            const __COLONY_MANIFEST_LEN: usize = $crate::__private::encoded_len(&__COLONY_MANIFEST);
            #[cfg(target_arch = "wasm32")]
            #[unsafe(link_section = "colony-manifest")]
            #[used]
            static __COLONY_MANIFEST_SECTION: [u8; __COLONY_MANIFEST_LEN] =
                $crate::__private::encode(&__COLONY_MANIFEST);
        };
    };
}
