//! The bar CSV format: `timestamp,open,high,low,close,volume` with an optional `symbol` column.

use super::results::{RecordError, Replay, ReplayOptions, known_at};
use super::text::utf8;
use super::text::{Layout, Symbols, check_symbol, lines, parse_decimal, record_error};
use super::timeline::Collector;
use super::utc::parse_utc;
#[cfg(doc)]
use crate::types::QualityIssue;
use crate::types::{Candle, MarketEvent};
use std::path::Path;
use std::sync::Arc;

const BAR_COLUMNS: [&str; 7] = [
    "symbol",
    "timestamp",
    "open",
    "high",
    "low",
    "close",
    "volume",
];

pub(super) fn default_symbol(file: &str) -> String {
    let name = Path::new(file)
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or(file);
    let stem = name.split('.').next().unwrap_or(name);
    let bytes = stem.as_bytes();
    let end = (0..bytes.len())
        .find(|&i| bytes[i] == b'-' && bytes.get(i + 1).is_some_and(u8::is_ascii_digit))
        .unwrap_or(bytes.len());
    stem[..end].to_ascii_uppercase()
}

/// Parses a bar CSV: a header naming the columns `timestamp,open,high,low,close,volume` (any
/// order, plus an optional `symbol`), then one bar per line. `timestamp` is the bar's start in
/// UTC ([`parse_utc`]); prices are decimals with `low <= open, close <= high`. Each bar becomes
/// a [`Candle`] of `options.bar_interval_secs`. A bar with a price that is not positive or a
/// negative volume is skipped and flagged as [`QualityIssue::BadValue`] with its line.
pub fn parse_bars(
    file: &str,
    bytes: &[u8],
    options: &ReplayOptions,
) -> Result<Replay, RecordError> {
    let file: Arc<str> = Arc::from(file);
    let mut lines = lines(bytes);
    let Some((_, header)) = lines.next() else {
        return Err(record_error(
            &file,
            1,
            None,
            "empty file: expected a header",
        ));
    };
    let layout = Layout::new(&file, utf8(&file, 1, header)?, &BAR_COLUMNS, &["symbol"])?;
    let fixed = if layout.header.contains(&"symbol") {
        None
    } else {
        let symbol = match &options.symbol {
            Some(symbol) => symbol.to_string(),
            None => default_symbol(&file),
        };
        check_symbol(&symbol).map_err(|why| {
            record_error(
                &file,
                1,
                None,
                format!("the file has no symbol column and its name gives none: {why}"),
            )
        })?;
        Some(Arc::<str>::from(symbol))
    };
    let interval = options.bar_interval_secs;
    if interval == 0 {
        return Err(record_error(&file, 1, None, "bar interval 0 s"));
    }
    let mut symbols = Symbols::default();
    let mut out = Collector::new(&file);
    for (line, raw) in lines {
        if raw.is_empty() {
            continue;
        }
        let row = layout.row(line, utf8(&file, line, raw)?)?;
        let symbol = match &fixed {
            Some(symbol) => symbol.clone(),
            None => row.value("symbol", |s| symbols.get(s))?,
        };
        let start = row.value("timestamp", parse_utc)?;
        let open = row.value("open", parse_decimal)?;
        let high = row.value("high", parse_decimal)?;
        let low = row.value("low", parse_decimal)?;
        let close = row.value("close", parse_decimal)?;
        let volume = row.value("volume", parse_decimal)?;
        let candle = MarketEvent::Candle(Candle {
            symbol,
            interval_secs: interval,
            start,
            open,
            high,
            low,
            close,
            volume,
        });
        // Not a price anything may use: skipped and reported with the line (before the range
        // check, so a negative low is this issue rather than a shape error).
        if let Some(issue) = candle.bad_value() {
            out.flag(line, known_at(&candle), issue);
            continue;
        }
        if high < low {
            return Err(row.err("high", format!("{high} is below the low {low}")));
        }
        for (name, value) in [("open", open), ("close", close)] {
            if value > high || value < low {
                return Err(row.err(
                    name,
                    format!("{value} is outside the range low {low} to high {high}"),
                ));
            }
        }
        out.push(line, candle);
    }
    Ok(out.replay)
}
