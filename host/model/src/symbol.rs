//! The one symbol alphabet: an instrument symbol is 1 to [`MAX_SYMBOL_LEN`] bytes of `A-Z 0-9 - _ /`,
//! the alphabet of capability symbol patterns, so an operator can grant `market.read` or
//! `orders.place` for any symbol a feed, a venue or an agent names.

/// Longest symbol, in bytes.
pub const MAX_SYMBOL_LEN: usize = 64;

/// Whether `c` may appear in a symbol: `A-Z`, `0-9`, `-`, `_`, `/`.
pub fn is_symbol_char(c: char) -> bool {
    c.is_ascii_uppercase() || c.is_ascii_digit() || matches!(c, '-' | '_' | '/')
}

/// A string that is not a symbol.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{text:?} is not a symbol (1 to {MAX_SYMBOL_LEN} of A-Z 0-9 - _ /)")]
pub struct SymbolError {
    text: String,
}

/// Checks a symbol: 1–64 bytes of `A-Z 0-9 - _ /`.
pub fn check_symbol(text: &str) -> Result<(), SymbolError> {
    let ok = !text.is_empty() && text.len() <= MAX_SYMBOL_LEN && text.chars().all(is_symbol_char);
    if ok {
        Ok(())
    } else {
        Err(SymbolError {
            text: text.to_string(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn symbols() {
        let long = "A".repeat(MAX_SYMBOL_LEN);
        let too_long = "A".repeat(MAX_SYMBOL_LEN + 1);
        // (input, accepted)
        let cases: &[(&str, bool)] = &[
            ("BTC-USDT", true),
            ("BTC/USD", true),
            ("ES_F", true),
            ("0", true),
            (&long, true),
            ("", false),
            (&too_long, false),
            ("btc-usdt", false),
            ("BTC USDT", false),
            ("BTC-*", false),
            ("BTC.USDT", false),
            ("BTC\u{0}", false),
            ("É", false),
        ];
        for (input, ok) in cases {
            assert_eq!(check_symbol(input).is_ok(), *ok, "{input:?}");
        }
        assert_eq!(
            check_symbol("btc").unwrap_err().to_string(),
            "\"btc\" is not a symbol (1 to 64 of A-Z 0-9 - _ /)"
        );
    }
}
