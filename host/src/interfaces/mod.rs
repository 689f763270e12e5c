//! Host implementations of the `colony:plugin` interfaces, one module per WIT interface.
//! Each implements the generated `Host` trait on [`crate::store::StoreState`]; interface
//! modules do not import each other.

pub mod log;
pub mod market;
pub mod messaging;
pub mod state;

impl crate::bindings::types::Host for crate::store::StoreState {}
