//! Host implementations of the `colony:plugin` interfaces, one module per WIT interface, each
//! with the same shape (wasmtime's `wasi-config`): a context type borrowing from the store
//! only what its interface needs (`OrdersCtx<'a>`, `MessagingCtx<'a>`, …), the generated
//! `Host` trait implemented on it, and one `add_to_linker` taking the function that hands the
//! context out (`crate::store`'s). Interface modules do not import each other and know
//! nothing of the store, so each is unit-tested by building its context over fake services.
//!
//! What they share lives here: the grant [`Gate`], the decimal record, and [`answer`], the one
//! place that decides what a failed host call is to the guest. Host functions compute a
//! [`HostResult`] with `?`: a missing service ([`Fault::unavailable`]) and a refused grant
//! (audited by the policy, then turned by [`GuestError::refused`]) become error values the
//! guest handles; only a [`Fault::Trap`] (a broken host invariant, never something the guest
//! controls) ends the instance.

pub mod log;
pub mod market;
pub mod messaging;
pub mod orders;
pub mod state;
pub mod timers;
pub mod tools;

#[cfg(test)]
mod testing;

use wasmtime::component::{HasData, Linker};

use crate::bindings::types;
use crate::policy::{CheckCache, Policy, Refusal};
use colony_caps::Request;

/// The grant checks of one store: every capability use of an interface is checked here
/// before any I/O, and the policy audits the decision.
pub struct Gate<'a> {
    /// The plugin's grants.
    pub policy: &'a Policy,
    /// The store's memo of recent allowed requests.
    pub checks: &'a mut CheckCache,
}

impl Gate<'_> {
    /// Checks one capability use (see [`Policy::check`]).
    pub fn check(&mut self, req: &Request<'_>) -> Result<(), Refusal> {
        self.checks.check(self.policy, req)
    }
}

/// An interface's guest-visible error type (`types.error`, `tools.tool-error`), and how the
/// two failures every gated interface shares look in it.
pub trait GuestError: Sized {
    /// The service behind the interface is not part of this host or store.
    fn unavailable(why: &str) -> Self;
    /// A grant check refused the use (the policy has audited it).
    fn refused(r: Refusal) -> Self;
}

/// A refused grant check as the guest sees it: a missing grant is `denied` (naming the
/// capability), a malformed request `invalid-argument`.
impl GuestError for types::Error {
    fn unavailable(why: &str) -> Self {
        types::Error::Unavailable(why.into())
    }

    fn refused(r: Refusal) -> Self {
        match r {
            Refusal::Denied(_) => types::Error::Denied(r.to_string()),
            Refusal::Invalid(reason) => types::Error::InvalidArgument(reason),
        }
    }
}

/// Why a host function did not succeed, before the guest sees it ([`answer`] decides).
#[derive(Debug)]
pub enum Fault<E> {
    /// An error the guest receives as a value, and may handle.
    Guest(E),
    /// The call traps and the instance ends: a broken host invariant.
    Trap(wasmtime::Error),
}

impl<E: GuestError> Fault<E> {
    /// The guest's `unavailable`: the service behind the interface is missing.
    pub fn unavailable(why: &str) -> Self {
        Fault::Guest(E::unavailable(why))
    }
}

impl<E> From<E> for Fault<E> {
    fn from(e: E) -> Self {
        Fault::Guest(e)
    }
}

impl<E: GuestError> From<Refusal> for Fault<E> {
    fn from(r: Refusal) -> Self {
        Fault::Guest(E::refused(r))
    }
}

/// What a host function computes: its value, or why not.
pub(crate) type HostResult<T, E = types::Error> = Result<T, Fault<E>>;

/// The one place a failed host call is decided: a guest error is returned to the guest as
/// the WIT error value; a trap ends the instance.
pub fn answer<T, E>(r: HostResult<T, E>) -> wasmtime::Result<Result<T, E>> {
    match r {
        Ok(v) => Ok(Ok(v)),
        Err(Fault::Guest(e)) => Ok(Err(e)),
        Err(Fault::Trap(e)) => Err(e),
    }
}

/// `colony:plugin/types` declares types only: its host side holds nothing.
struct Types;

impl types::Host for Types {}

struct HasTypes;

impl HasData for HasTypes {
    type Data<'a> = Types;
}

/// Links `colony:plugin/types` (imported by every world that uses the shared types).
pub(crate) fn add_types_to_linker<T: Send + 'static>(
    linker: &mut Linker<T>,
) -> wasmtime::Result<()> {
    types::add_to_linker::<T, HasTypes>(linker, |_| Types)
}

/// A host decimal as the WIT record: the smallest scale that represents it exactly with a
/// 64-bit mantissa. Prices and sizes from feeds always fit; one that does not is rounded to
/// the scale that fits (and never panics).
pub fn decimal(d: rust_decimal::Decimal) -> crate::bindings::types::Decimal {
    use crate::bindings::types as wit;
    let mut d = d.normalize();
    loop {
        if let Ok(m) = i64::try_from(d.mantissa()) {
            return wit::Decimal {
                mantissa: m,
                scale: u8::try_from(d.scale()).unwrap_or(28),
            };
        }
        if d.scale() == 0 {
            let max = if d.is_sign_negative() {
                i64::MIN
            } else {
                i64::MAX
            };
            return wit::Decimal {
                mantissa: max,
                scale: 0,
            };
        }
        d = d.round_dp(d.scale() - 1);
    }
}
