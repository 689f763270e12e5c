//! Exact decimal numbers for prices, quantities and fees.
//!
//! On the wire a [`Decimal`] is `mantissa × 10^-scale` with a 64-bit mantissa and a scale
//! of at most 28 (never a float). This module adds formatting and, with the `decimal`
//! feature (on by default), lossless conversions to and from `rust_decimal::Decimal` for
//! arithmetic (the crate is re-exported as `colony_sdk::rust_decimal`):
//!
//! ```
//! use colony_sdk::Decimal;
//! use colony_sdk::rust_decimal::Decimal as Dec;
//!
//! let price = Decimal::new(6_512_345, 2); // 65123.45
//! assert_eq!(price.to_string(), "65123.45");
//!
//! let notional = Dec::try_from(price)? * Dec::new(5, 1); // × 0.5
//! assert_eq!(Decimal::try_from(notional)?.to_string(), "32561.725");
//! # Ok::<(), colony_sdk::decimal::DecimalError>(())
//! ```

use std::fmt;

use crate::{Decimal, Error};

/// The largest scale a [`Decimal`] may have (as in `rust_decimal`).
pub const MAX_SCALE: u8 = 28;

impl Decimal {
    /// `mantissa × 10^-scale`, e.g. `Decimal::new(12345, 2)` is 123.45.
    ///
    /// ```
    /// assert_eq!(colony_sdk::Decimal::new(-5, 3).to_string(), "-0.005");
    /// ```
    pub const fn new(mantissa: i64, scale: u8) -> Decimal {
        Decimal { mantissa, scale }
    }

    /// Zero (scale 0).
    pub const ZERO: Decimal = Decimal::new(0, 0);
}

/// Prints the exact value in plain notation: `123.45`, `-0.005`, `100`.
impl fmt::Display for Decimal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let digits = self.mantissa.unsigned_abs().to_string();
        let scale = usize::from(self.scale);
        let sign = if self.mantissa < 0 { "-" } else { "" };
        if scale == 0 {
            return write!(f, "{sign}{digits}");
        }
        if digits.len() > scale {
            let (int, frac) = digits.split_at(digits.len() - scale);
            write!(f, "{sign}{int}.{frac}")
        } else {
            write!(f, "{sign}0.{digits:0>scale$}")
        }
    }
}

/// Why a value cannot be converted between [`Decimal`] and `rust_decimal::Decimal`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DecimalError {
    /// The scale is over [`MAX_SCALE`].
    ScaleTooLarge(u8),
    /// The value needs more than the 64-bit mantissa of the wire format at any scale.
    MantissaOverflow,
}

impl fmt::Display for DecimalError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DecimalError::ScaleTooLarge(s) => {
                write!(f, "decimal scale {s} is over the maximum of {MAX_SCALE}")
            }
            DecimalError::MantissaOverflow => {
                f.write_str("decimal mantissa does not fit in 64 bits")
            }
        }
    }
}

impl std::error::Error for DecimalError {}

/// A conversion failure is a malformed argument, so `?` works in handlers.
///
/// ```
/// let e: colony_sdk::Error = colony_sdk::decimal::DecimalError::MantissaOverflow.into();
/// assert!(matches!(e, colony_sdk::Error::InvalidArgument(_)));
/// ```
impl From<DecimalError> for Error {
    fn from(e: DecimalError) -> Error {
        Error::InvalidArgument(e.to_string())
    }
}

/// Exact; fails only for a scale over 28.
///
/// ```
/// let d = rust_decimal::Decimal::try_from(colony_sdk::Decimal::new(12345, 2))?;
/// assert_eq!(d.to_string(), "123.45");
/// # Ok::<(), colony_sdk::decimal::DecimalError>(())
/// ```
#[cfg(feature = "decimal")]
impl TryFrom<Decimal> for rust_decimal::Decimal {
    type Error = DecimalError;

    fn try_from(d: Decimal) -> Result<Self, DecimalError> {
        if d.scale > MAX_SCALE {
            return Err(DecimalError::ScaleTooLarge(d.scale));
        }
        Ok(rust_decimal::Decimal::new(d.mantissa, u32::from(d.scale)))
    }
}

/// Exact; keeps the scale when the mantissa fits in 64 bits, otherwise drops trailing
/// zeros, and fails only when even that does not fit.
///
/// ```
/// let d = colony_sdk::Decimal::try_from(rust_decimal::Decimal::new(50, 2))?;
/// assert_eq!((d.mantissa, d.scale), (50, 2));
/// # Ok::<(), colony_sdk::decimal::DecimalError>(())
/// ```
#[cfg(feature = "decimal")]
impl TryFrom<rust_decimal::Decimal> for Decimal {
    type Error = DecimalError;

    fn try_from(d: rust_decimal::Decimal) -> Result<Self, DecimalError> {
        let fit = |d: rust_decimal::Decimal| {
            i64::try_from(d.mantissa())
                .ok()
                // rust_decimal's scale is at most 28, so it fits in u8.
                .map(|m| Decimal::new(m, d.scale() as u8))
        };
        fit(d)
            .or_else(|| fit(d.normalize()))
            .ok_or(DecimalError::MantissaOverflow)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display() {
        let cases = [
            (0, 0, "0"),
            (0, 2, "0.00"),
            (12345, 2, "123.45"),
            (-12345, 2, "-123.45"),
            (5, 3, "0.005"),
            (-5, 3, "-0.005"),
            (100, 0, "100"),
            (1, 1, "0.1"),
            (10, 1, "1.0"),
            (i64::MIN, 0, "-9223372036854775808"),
            (i64::MIN, 19, "-0.9223372036854775808"),
            (i64::MAX, 28, "0.0000000009223372036854775807"),
        ];
        for (m, s, want) in cases {
            assert_eq!(Decimal::new(m, s).to_string(), want, "{m} scale {s}");
        }
    }

    #[cfg(feature = "decimal")]
    #[test]
    fn round_trips_through_rust_decimal_exactly() {
        use std::str::FromStr;
        let cases = [
            (0, 0),
            (12345, 2),
            (-12345, 2),
            (1, 28),
            (i64::MAX, 0),
            (i64::MIN, 0),
            (i64::MIN, 28),
            (500, 3),
        ];
        for (m, s) in cases {
            let wire = Decimal::new(m, s);
            let dec = rust_decimal::Decimal::try_from(wire).unwrap();
            assert_eq!(dec.to_string(), wire.to_string());
            assert_eq!(
                rust_decimal::Decimal::from_str(&wire.to_string()).unwrap(),
                dec
            );
            assert_eq!(Decimal::try_from(dec).unwrap(), wire, "scale is kept");
        }
    }

    #[cfg(feature = "decimal")]
    #[test]
    fn conversion_failures() {
        use std::str::FromStr;
        assert_eq!(
            rust_decimal::Decimal::try_from(Decimal::new(1, 29)),
            Err(DecimalError::ScaleTooLarge(29))
        );
        // 2^64 needs more than 64 bits at any scale.
        let big = rust_decimal::Decimal::from_str("18446744073709551616").unwrap();
        assert_eq!(Decimal::try_from(big), Err(DecimalError::MantissaOverflow));
        // Too many digits at this scale, but trailing zeros can go.
        let wide = rust_decimal::Decimal::from_str("1.0000000000000000000000000000").unwrap();
        assert_eq!(Decimal::try_from(wide), Ok(Decimal::new(1, 0)));
    }
}
