//! Lines, CSV header layouts and fields, and the value parsers (decimals, integers, symbols)
//! that every format shares.

use super::results::{Place, RecordError};
use rust_decimal::Decimal;
use std::collections::HashMap;
use std::sync::Arc;

/// Lines with their 1-based numbers, without the `\n` or a `\r` before it.
pub(super) fn lines(bytes: &[u8]) -> impl Iterator<Item = (usize, &[u8])> {
    let bytes = bytes.strip_suffix(b"\n").unwrap_or(bytes);
    let mut split = if bytes.is_empty() {
        None
    } else {
        Some(bytes.split(|&b| b == b'\n'))
    };
    let mut number = 0;
    std::iter::from_fn(move || {
        let line = split.as_mut()?.next()?;
        number += 1;
        Some((number, line.strip_suffix(b"\r").unwrap_or(line)))
    })
}

pub(super) fn record_error(
    file: &Arc<str>,
    line: usize,
    place: Option<Place>,
    reason: impl Into<String>,
) -> RecordError {
    RecordError {
        file: file.clone(),
        line,
        place,
        reason: reason.into(),
    }
}

pub(super) fn utf8<'a>(
    file: &Arc<str>,
    line: usize,
    bytes: &'a [u8],
) -> Result<&'a str, RecordError> {
    let text = std::str::from_utf8(bytes)
        .map_err(|_| record_error(file, line, None, "not valid UTF-8"))?;
    Ok(if line == 1 {
        text.strip_prefix('\u{feff}').unwrap_or(text)
    } else {
        text
    })
}

/// Where each known column of a CSV format sits in a file's header.
pub(super) struct Layout {
    file: Arc<str>,
    /// The header's names, in file order.
    pub(super) header: Vec<&'static str>,
}

impl Layout {
    pub(super) fn new(
        file: &Arc<str>,
        header: &str,
        known: &[&'static str],
        optional: &[&'static str],
    ) -> Result<Layout, RecordError> {
        let mut names = Vec::new();
        for name in header.split(',') {
            let Some(known_name) = known.iter().find(|k| **k == name) else {
                return Err(record_error(
                    file,
                    1,
                    Some(Place::Column(name.to_string())),
                    format!("unknown column (expected {})", known.join(",")),
                ));
            };
            if names.contains(known_name) {
                return Err(record_error(
                    file,
                    1,
                    Some(Place::Column(name.to_string())),
                    "appears twice in the header",
                ));
            }
            names.push(*known_name);
        }
        if let Some(missing) = known
            .iter()
            .find(|k| !optional.contains(k) && !names.contains(k))
        {
            return Err(record_error(
                file,
                1,
                Some(Place::Column(missing.to_string())),
                "missing from the header",
            ));
        }
        Ok(Layout {
            file: file.clone(),
            header: names,
        })
    }

    pub(super) fn row<'a>(&'a self, line: usize, text: &'a str) -> Result<Row<'a>, RecordError> {
        if text.contains('"') {
            return Err(record_error(
                &self.file,
                line,
                None,
                "quoted fields are not supported",
            ));
        }
        let fields: Vec<&str> = text.split(',').collect();
        let width = self.header.len();
        if fields.len() < width {
            let missing = self.header[fields.len()];
            return Err(record_error(
                &self.file,
                line,
                Some(Place::Column(missing.to_string())),
                format!(
                    "missing: the line has {} fields, the header {width}",
                    fields.len()
                ),
            ));
        }
        if fields.len() > width {
            return Err(record_error(
                &self.file,
                line,
                None,
                format!("the line has {} fields, the header {width}", fields.len()),
            ));
        }
        Ok(Row {
            layout: self,
            line,
            fields,
        })
    }
}

pub(super) struct Row<'a> {
    layout: &'a Layout,
    line: usize,
    fields: Vec<&'a str>,
}

impl Row<'_> {
    fn get(&self, name: &str) -> Option<&str> {
        let i = self.layout.header.iter().position(|h| *h == name)?;
        self.fields.get(i).copied()
    }

    pub(super) fn err(&self, name: &str, reason: impl Into<String>) -> RecordError {
        record_error(
            &self.layout.file,
            self.line,
            Some(Place::Column(name.to_string())),
            reason,
        )
    }

    pub(super) fn value<T>(
        &self,
        name: &str,
        parse: impl FnOnce(&str) -> Result<T, String>,
    ) -> Result<T, RecordError> {
        let text = self.get(name).ok_or_else(|| self.err(name, "missing"))?;
        parse(text).map_err(|reason| self.err(name, reason))
    }
}

/// A decimal written `[-]DIGITS[.DIGITS]`, exactly (no exponent, no rounding).
pub fn parse_decimal(text: &str) -> Result<Decimal, String> {
    let digits = text.strip_prefix('-').unwrap_or(text);
    let (int, frac) = digits.split_once('.').unwrap_or((digits, "1"));
    let well_formed = !int.is_empty()
        && !frac.is_empty()
        && int.bytes().all(|b| b.is_ascii_digit())
        && frac.bytes().all(|b| b.is_ascii_digit());
    if !well_formed {
        return Err(format!("{text:?} is not a decimal"));
    }
    Decimal::from_str_exact(text)
        .map_err(|_| format!("{text:?} does not fit a 96-bit decimal exactly"))
}

pub(super) fn parse_int<T: std::str::FromStr>(text: &str) -> Result<T, String> {
    let digits = text.strip_prefix('-').unwrap_or(text);
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!("{text:?} is not an integer"));
    }
    text.parse().map_err(|_| format!("{text} is out of range"))
}

/// Checks a symbol: 1–64 bytes of `A-Z 0-9 - _ /`, the alphabet of capability symbol patterns
/// (so an operator can grant `market.read` for it).
pub fn check_symbol(text: &str) -> Result<(), String> {
    colony_model::symbol::check_symbol(text).map_err(|e| e.to_string())
}

/// Keeps one `Arc<str>` per symbol, so a million rows share a handful of strings.
#[derive(Default)]
pub(super) struct Symbols(HashMap<String, Arc<str>>);

impl Symbols {
    pub(super) fn get(&mut self, text: &str) -> Result<Arc<str>, String> {
        if let Some(symbol) = self.0.get(text) {
            return Ok(symbol.clone());
        }
        check_symbol(text)?;
        let symbol: Arc<str> = Arc::from(text);
        self.0.insert(text.to_string(), symbol.clone());
        Ok(symbol)
    }
}
