//! Host implementations of the `colony:plugin` interfaces, one module per WIT interface.
//! Each implements the generated `Host` trait on [`crate::store::StoreState`]; interface
//! modules do not import each other; what they share (the refusal mapping, the decimal
//! record) lives here.

pub mod log;
pub mod market;
pub mod messaging;
pub mod orders;
pub mod state;
pub mod timers;
pub mod tools;

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
