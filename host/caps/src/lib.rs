//! What a plugin may do: the capability grammar and its checker (the crate root, from `caps/`:
//! [`Capability`], [`GrantSet`], [`Request`], [`Decision`]), the plugin manifest that requests
//! capabilities and limits ([`manifest`]), and every plugin's grants as a fold over the grant
//! history ([`grants`]).
//!
//! **Architecture Invariant:** this crate is pure: no wasmtime, sqlx or tokio, no I/O, nothing
//! async. The host hands it strings, bytes and requests and acts on what it answers; that keeps
//! it unit-tested with tables and property tests, and fuzzed directly.

#![deny(missing_docs)]

mod caps;
pub mod grants;
pub mod manifest;

pub use caps::*;
