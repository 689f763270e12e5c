//! Host implementations of the `colony:plugin` interfaces, one module per WIT interface.
//! Each implements the generated `Host` trait on [`crate::store::StoreState`]; interface
//! modules do not import each other; what they share lives here.

pub mod log;
pub mod market;
pub mod messaging;
pub mod orders;
pub mod state;

impl crate::bindings::types::Host for crate::store::StoreState {}

/// A refused grant check as the guest sees it: a missing grant is `denied` (naming the
/// capability), a malformed request `invalid-argument`. Shared by every gated interface.
pub(crate) fn refusal(r: crate::policy::Refusal) -> crate::bindings::types::Error {
    use crate::bindings::types::Error;
    use crate::policy::Refusal;
    match r {
        Refusal::Denied(_) => Error::Denied(r.to_string()),
        Refusal::Invalid(reason) => Error::InvalidArgument(reason),
    }
}
