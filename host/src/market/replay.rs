//! Recorded market data for `--feed replay:FILE`: parsers for three file formats, the data
//! shipped inside the binary, and the data-quality checks every feed uses.
//!
//! | format | detected by | becomes |
//! |---|---|---|
//! | bar CSV `timestamp,open,high,low,close,volume` (optional `symbol` column) | `.csv` whose header has `open` | one [`Candle`] per row |
//! | Binance depth CSV `symbol,timestamp,first_update_id,last_update_id,side,update_type,price,qty,pu` | `.csv` whose header has `update_type` | [`Book`] (top N) and [`Quote`] events from an [`L2Book`] |
//! | JSONL, one object per line with `"type"`: `quote`, `trade`, `book`, `candle` | `.jsonl` / `.ndjson`, or a first line starting with `{` | the event as written |
//!
//! A trailing `.gz` is decompressed first. `docs/market-data.md` is the full description with
//! examples. Parsing is strict: every record that is not exactly right stops the load with a
//! [`RecordError`] naming the file, the line, the column (or JSON field) and the reason, such as
//! `data.csv:17: column "high": "abc" is not a decimal`. Prices and sizes are parsed straight into
//! [`Decimal`] (`Decimal::from_str_exact`: never rounded, never a float; JSON numbers are refused
//! for them because a JSON parser reads numbers as `f64`).
//!
//! What the replay yields is honest about what the file says: a 1 m bar is a [`Candle`] and
//! nothing else (no trade or quote is made up from it; an agent that wants a price reads the
//! close). Depth rows become the book they describe and the best bid and offer of that book.
//!
//! Problems with the data itself, as opposed to its syntax, are reported as [`Flagged`]
//! [`QualityIssue`]s beside the events instead of stopping the load: a time going backwards
//! ([`QualityIssue::NonMonotonicTime`]; the record is skipped, so a replay's clock never goes
//! back), a Binance sequence gap ([`QualityIssue::SequenceGap`]) and a crossed book
//! ([`QualityIssue::CrossedBook`]; no quote is derived from it). [`TimeOrder`] and [`Staleness`]
//! make the same checks for live feeds.
//!
//! Limits: an input file (after decompression) is at most [`MAX_INPUT_BYTES`]; Book events carry
//! at most [`MAX_BOOK_DEPTH`] levels per side. The whole replay is parsed up front, so a bad line
//! anywhere is found before the first event is published.

use super::types::{
    Book, BookLevel, Candle, MarketEvent, QualityIssue, Quote, Side, Timestamp, Trade,
};
use colony_model::symbol::check_symbol;
use colony_risk::book::L2Book;
use flate2::read::GzDecoder;
use rust_decimal::Decimal;
use serde_json::{Map, Value};
use std::collections::{HashMap, HashSet};
use std::fmt;
use std::io::{self, Read};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

/// Largest input file, after decompression (1 GiB).
pub const MAX_INPUT_BYTES: u64 = 1 << 30;

/// Book levels per side in the Book events of a depth replay, unless told otherwise.
pub const DEFAULT_BOOK_DEPTH: usize = 20;

/// Most book levels per side a Book event carries.
pub const MAX_BOOK_DEPTH: usize = 1_000;

const NANOS_PER_SEC: u64 = 1_000_000_000;
const NANOS_PER_MILLI: u64 = 1_000_000;

// ------------------------------------------------------------------------------------------
// Data shipped in the binary

const BARS_NAME: &str = "btc-perp-2022-01-1m.csv";
const BARS_GZ: &[u8] = include_bytes!("../../data/btc-perp-2022-01-1m.csv.gz");
const DEPTH_SNAP_NAME: &str = "binance-btcusdt-depth-snap.csv";
const DEPTH_SNAP: &[u8] = include_bytes!("../../data/binance-btcusdt-depth-snap.csv");
const DEPTH_UPDATE_NAME: &str = "binance-btcusdt-depth-update.csv";
const DEPTH_UPDATE: &[u8] = include_bytes!("../../data/binance-btcusdt-depth-update.csv");

/// The symbol of the shipped 1 m bars (the file has no symbol column; this is its instrument's
/// name at the venue it was recorded from).
pub const EMBEDDED_BARS_SYMBOL: &str = "BTC-PERP";

/// The shipped BTC perpetual 1 m bars, 2021-12-31 23:01 to 2022-02-01 05:31 UTC: 45,031
/// [`Candle`] events of symbol [`EMBEDDED_BARS_SYMBOL`] (`host/data/SOURCES.md`).
pub fn embedded_bars() -> Result<Replay, ReplayError> {
    let text = gunzip(BARS_NAME, BARS_GZ)?;
    let options = ReplayOptions {
        symbol: Some(Arc::from(EMBEDDED_BARS_SYMBOL)),
        ..ReplayOptions::default()
    };
    Ok(parse_bars(BARS_NAME, &text, &options)?)
}

/// The shipped Binance BTCUSDT depth snapshot and the update that follows it, replayed through
/// an [`L2Book`] with `depth` levels per side in Book events. The update does not continue the
/// snapshot (the recording skipped about 20 million update ids), so the replay reports that
/// sequence gap.
pub fn embedded_depth(depth: usize) -> Result<Replay, ReplayError> {
    let mut rows = parse_depth_rows(DEPTH_SNAP_NAME, DEPTH_SNAP)?;
    rows.extend(parse_depth_rows(DEPTH_UPDATE_NAME, DEPTH_UPDATE)?);
    Ok(replay_depth(&rows, depth))
}

// ------------------------------------------------------------------------------------------
// Results and errors

/// A parsed replay: events ordered by the time they became known ([`known_at`]), and the data
/// quality issues found on the way.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Replay {
    /// The events, in time order.
    pub events: Vec<MarketEvent>,
    /// Problems with the data, in time order.
    pub issues: Vec<Flagged>,
}

impl Replay {
    /// The Candle events.
    pub fn candles(&self) -> impl Iterator<Item = &Candle> {
        self.events.iter().filter_map(|e| match e {
            MarketEvent::Candle(c) => Some(c),
            _ => None,
        })
    }

    /// Several replays as one: events and issues merged by time (a stable merge, so each input
    /// keeps its own order).
    pub fn merge(parts: Vec<Replay>) -> Replay {
        let mut all = Replay::default();
        for part in parts {
            all.events.extend(part.events);
            all.issues.extend(part.issues);
        }
        all.events.sort_by_key(known_at);
        all.issues.sort_by_key(|f| f.ts);
        all
    }
}

/// When an event became known: its timestamp, except a candle, which is known when it closes
/// (`start + interval`). Replays are ordered by this time, and a replay clock should not deliver
/// a candle before it, or an agent would see a bar before it ended.
pub fn known_at(event: &MarketEvent) -> Timestamp {
    match event {
        MarketEvent::Candle(c) => c
            .start
            .saturating_add(u64::from(c.interval_secs) * NANOS_PER_SEC),
        _ => event.ts(),
    }
}

/// A [`QualityIssue`] found in a file, with where and when.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Flagged {
    /// The file.
    pub file: Arc<str>,
    /// The line (1-based) of the record that showed the problem.
    pub line: usize,
    /// The time of that record ([`known_at`]).
    pub ts: Timestamp,
    /// What is wrong.
    pub issue: QualityIssue,
}

impl fmt::Display for Flagged {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}: {}", self.file, self.line, describe(&self.issue))
    }
}

/// A one-line description of a quality issue, for logs and `colony status`.
pub fn describe(issue: &QualityIssue) -> String {
    match issue {
        QualityIssue::CrossedBook { symbol, bid, ask } => {
            let what = if bid == ask { "locked" } else { "crossed" };
            format!("{symbol}: {what} book: best bid {bid} >= best ask {ask}")
        }
        QualityIssue::SequenceGap {
            symbol,
            expected,
            got,
        } => {
            format!(
                "{symbol}: sequence gap: the next update should follow id {expected}, it follows id {got}"
            )
        }
        QualityIssue::NonMonotonicTime {
            symbol,
            previous,
            got,
        } => {
            format!(
                "{symbol}: time did not advance: {} after {}",
                format_utc(*got),
                format_utc(*previous)
            )
        }
        QualityIssue::Stale { symbol, last, now } => format!(
            "{symbol}: stale: no data for {} s (last at {})",
            now.saturating_sub(*last) / NANOS_PER_SEC,
            format_utc(*last)
        ),
    }
}

/// Where in a record an error is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Place {
    /// A CSV column, by its header name.
    Column(String),
    /// A JSON field.
    Field(String),
}

/// A record that could not be read: `FILE:LINE: column "NAME": REASON`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct RecordError {
    /// The file.
    pub file: Arc<str>,
    /// The line, 1-based (the CSV header is line 1).
    pub line: usize,
    /// The column or field, when the error is about one.
    pub place: Option<Place>,
    /// What is wrong, a lowercase fragment.
    pub reason: String,
}

impl fmt::Display for RecordError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}: ", self.file, self.line)?;
        match &self.place {
            Some(Place::Column(name)) => write!(f, "column \"{name}\": ")?,
            Some(Place::Field(name)) => write!(f, "field \"{name}\": ")?,
            None => {}
        }
        f.write_str(&self.reason)
    }
}

/// Why a replay could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum ReplayError {
    /// The file could not be read.
    #[error("{file}: {source}")]
    Read {
        /// The file.
        file: String,
        /// What the OS said.
        source: io::Error,
    },
    /// The file as a whole is not something we can replay (unknown format, too large, bad gzip).
    #[error("{file}: {reason}")]
    File {
        /// The file.
        file: String,
        /// What is wrong.
        reason: String,
    },
    /// A record is malformed.
    #[error(transparent)]
    Record(#[from] RecordError),
}

/// Settings a file does not carry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplayOptions {
    /// The symbol of a bar CSV without a `symbol` column. Unset: the file name up to the first
    /// `-` followed by a digit, upper-cased (`btc-perp-2022-01-1m.csv` → `BTC-PERP`).
    pub symbol: Option<Arc<str>>,
    /// The length of the bars of a bar CSV, in seconds (60).
    pub bar_interval_secs: u32,
    /// Levels per side in the Book events of a depth replay (clamped to 1..=[`MAX_BOOK_DEPTH`]).
    pub book_depth: usize,
}

impl Default for ReplayOptions {
    fn default() -> Self {
        ReplayOptions {
            symbol: None,
            bar_interval_secs: 60,
            book_depth: DEFAULT_BOOK_DEPTH,
        }
    }
}

/// The file formats a replay reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// OHLCV bar CSV.
    Bars,
    /// Binance depth snapshot/update CSV.
    BinanceDepth,
    /// One JSON event per line.
    Jsonl,
}

// ------------------------------------------------------------------------------------------
// Loading

/// Loads and parses replay files. Depth files are replayed as one stream in the order given
/// (a snapshot file, then its update files); the events of all files are merged by time.
pub fn load<P: AsRef<Path>>(paths: &[P], options: &ReplayOptions) -> Result<Replay, ReplayError> {
    let mut depth_rows = Vec::new();
    let mut parts = Vec::new();
    for path in paths {
        let path = path.as_ref();
        let name = path.display().to_string();
        let bytes = read_input(path)?;
        match detect(&name, &bytes)? {
            Format::BinanceDepth => depth_rows.extend(parse_depth_rows(&name, &bytes)?),
            Format::Bars => parts.push(parse_bars(&name, &bytes, options)?),
            Format::Jsonl => parts.push(parse_jsonl(&name, &bytes)?),
        }
    }
    if !depth_rows.is_empty() {
        parts.push(replay_depth(&depth_rows, options.book_depth));
    }
    Ok(Replay::merge(parts))
}

/// Parses one file already in memory (`name` is used for format detection and in errors; a
/// name ending in `.gz` is decompressed first).
pub fn parse(name: &str, bytes: &[u8], options: &ReplayOptions) -> Result<Replay, ReplayError> {
    let text = if name.ends_with(".gz") {
        gunzip(name, bytes)?
    } else {
        bytes.to_vec()
    };
    match detect(name, &text)? {
        Format::BinanceDepth => Ok(replay_depth(
            &parse_depth_rows(name, &text)?,
            options.book_depth,
        )),
        Format::Bars => Ok(parse_bars(name, &text, options)?),
        Format::Jsonl => Ok(parse_jsonl(name, &text)?),
    }
}

fn read_input(path: &Path) -> Result<Vec<u8>, ReplayError> {
    let name = path.display().to_string();
    let file = crate::files::open_regular(path).map_err(|e| ReplayError::Read {
        file: name.clone(),
        source: match e {
            crate::files::ReadError::Io(e) => e,
            other => std::io::Error::other(other.to_string()),
        },
    })?;
    if name.ends_with(".gz") {
        return read_limited(&name, GzDecoder::new(file), true);
    }
    read_limited(&name, file, false)
}

fn gunzip(name: &str, bytes: &[u8]) -> Result<Vec<u8>, ReplayError> {
    read_limited(name, GzDecoder::new(bytes), true)
}

fn read_limited(name: &str, reader: impl Read, gzip: bool) -> Result<Vec<u8>, ReplayError> {
    let mut out = Vec::new();
    reader
        .take(MAX_INPUT_BYTES + 1)
        .read_to_end(&mut out)
        .map_err(|source| match source.kind() {
            io::ErrorKind::InvalidInput
            | io::ErrorKind::InvalidData
            | io::ErrorKind::UnexpectedEof
                if gzip =>
            {
                ReplayError::File {
                    file: name.to_string(),
                    reason: format!("not a valid gzip file: {source}"),
                }
            }
            _ => ReplayError::Read {
                file: name.to_string(),
                source,
            },
        })?;
    if out.len() as u64 > MAX_INPUT_BYTES {
        return Err(ReplayError::File {
            file: name.to_string(),
            reason: format!("larger than {MAX_INPUT_BYTES} bytes"),
        });
    }
    Ok(out)
}

/// The format of a file: by extension (`.jsonl`, `.ndjson`; `.csv` then by header), else by
/// content (a first line starting with `{` is JSONL, a CSV header is recognised by its columns).
/// A trailing `.gz` is ignored; `bytes` are the decompressed contents.
pub fn detect(name: &str, bytes: &[u8]) -> Result<Format, ReplayError> {
    let stem = name.strip_suffix(".gz").unwrap_or(name);
    if stem.ends_with(".jsonl") || stem.ends_with(".ndjson") {
        return Ok(Format::Jsonl);
    }
    let first = lines(bytes)
        .map(|(_, l)| l)
        .find(|l| !l.iter().all(u8::is_ascii_whitespace))
        .unwrap_or(&[]);
    let first = first.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(first);
    if !stem.ends_with(".csv") && first.first() == Some(&b'{') {
        return Ok(Format::Jsonl);
    }
    let header: Vec<&[u8]> = first.split(|&b| b == b',').collect();
    if header.contains(&&b"update_type"[..]) {
        Ok(Format::BinanceDepth)
    } else if header.contains(&&b"open"[..]) {
        Ok(Format::Bars)
    } else {
        Err(ReplayError::File {
            file: name.to_string(),
            reason: "unknown format: expected a bar CSV (header timestamp,open,high,low,close,volume), a Binance \
                     depth CSV (header symbol,timestamp,first_update_id,last_update_id,side,update_type,price,qty,pu) \
                     or JSONL (.jsonl)"
                .to_string(),
        })
    }
}

// ------------------------------------------------------------------------------------------
// Lines, CSV fields and values

/// Lines with their 1-based numbers, without the `\n` or a `\r` before it.
fn lines(bytes: &[u8]) -> impl Iterator<Item = (usize, &[u8])> {
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

fn record_error(
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

fn utf8<'a>(file: &Arc<str>, line: usize, bytes: &'a [u8]) -> Result<&'a str, RecordError> {
    let text = std::str::from_utf8(bytes)
        .map_err(|_| record_error(file, line, None, "not valid UTF-8"))?;
    Ok(if line == 1 {
        text.strip_prefix('\u{feff}').unwrap_or(text)
    } else {
        text
    })
}

/// Where each known column of a CSV format sits in a file's header.
struct Layout {
    file: Arc<str>,
    /// The header's names, in file order.
    header: Vec<&'static str>,
}

impl Layout {
    fn new(
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

    fn row<'a>(&'a self, line: usize, text: &'a str) -> Result<Row<'a>, RecordError> {
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

struct Row<'a> {
    layout: &'a Layout,
    line: usize,
    fields: Vec<&'a str>,
}

impl Row<'_> {
    fn get(&self, name: &str) -> Option<&str> {
        let i = self.layout.header.iter().position(|h| *h == name)?;
        self.fields.get(i).copied()
    }

    fn err(&self, name: &str, reason: impl Into<String>) -> RecordError {
        record_error(
            &self.layout.file,
            self.line,
            Some(Place::Column(name.to_string())),
            reason,
        )
    }

    fn value<T>(
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

fn parse_non_negative(text: &str) -> Result<Decimal, String> {
    let value = parse_decimal(text)?;
    if value.is_sign_negative() && !value.is_zero() {
        return Err(format!("{text} is negative"));
    }
    Ok(value)
}

fn parse_int<T: std::str::FromStr>(text: &str) -> Result<T, String> {
    let digits = text.strip_prefix('-').unwrap_or(text);
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!("{text:?} is not an integer"));
    }
    text.parse().map_err(|_| format!("{text} is out of range"))
}

/// Keeps one `Arc<str>` per symbol, so a million rows share a handful of strings.
#[derive(Default)]
struct Symbols(HashMap<String, Arc<str>>);

impl Symbols {
    fn get(&mut self, text: &str) -> Result<Arc<str>, String> {
        if let Some(symbol) = self.0.get(text) {
            return Ok(symbol.clone());
        }
        check_symbol(text).map_err(|e| e.to_string())?;
        let symbol: Arc<str> = Arc::from(text);
        self.0.insert(text.to_string(), symbol.clone());
        Ok(symbol)
    }
}

// ------------------------------------------------------------------------------------------
// UTC time

fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * ((month + 9) % 12) + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

fn civil_from_days(days: i64) -> (i64, i64, i64) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    (yoe + era * 400 + i64::from(month <= 2), month, day)
}

fn days_in_month(year: i64, month: i64) -> i64 {
    match month {
        4 | 6 | 9 | 11 => 30,
        2 if year % 4 == 0 && (year % 100 != 0 || year % 400 == 0) => 29,
        2 => 28,
        _ => 31,
    }
}

/// A UTC time `YYYY-MM-DD HH:MM:SS[.F]` (`T` may replace the space, `F` is 1–9 digits, a final
/// `Z` is allowed) as nanoseconds since the Unix epoch. Years 1970–2262.
pub fn parse_utc(text: &str) -> Result<Timestamp, String> {
    let bad = || format!("{text:?} is not a UTC time (YYYY-MM-DD HH:MM:SS[.fraction])");
    let body = text.strip_suffix('Z').unwrap_or(text);
    let (main, fraction) = body.split_once('.').unwrap_or((body, ""));
    let b = main.as_bytes();
    let shape = main.is_ascii()
        && b.len() == 19
        && b[4] == b'-'
        && b[7] == b'-'
        && (b[10] == b' ' || b[10] == b'T')
        && b[13] == b':'
        && b[16] == b':';
    if !shape || (body.contains('.') && fraction.is_empty()) || fraction.len() > 9 {
        return Err(bad());
    }
    let number = |range: std::ops::Range<usize>| -> Result<i64, String> {
        let part = &main[range];
        if part.bytes().all(|c| c.is_ascii_digit()) {
            part.parse().map_err(|_| bad())
        } else {
            Err(bad())
        }
    };
    let (year, month, day) = (number(0..4)?, number(5..7)?, number(8..10)?);
    let (hour, minute, second) = (number(11..13)?, number(14..16)?, number(17..19)?);
    if !fraction.bytes().all(|c| c.is_ascii_digit()) {
        return Err(bad());
    }
    if !(1..=12).contains(&month) || day < 1 || day > days_in_month(year, month) {
        return Err(format!("{text:?} is not a date"));
    }
    if hour > 23 || minute > 59 || second > 59 {
        return Err(format!("{text:?} is not a time of day"));
    }
    if !(1970..=2262).contains(&year) {
        return Err(format!("{text:?} is outside 1970–2262"));
    }
    let secs = days_from_civil(year, month, day) * 86_400 + hour * 3_600 + minute * 60 + second;
    let nanos = if fraction.is_empty() {
        0
    } else {
        fraction.parse::<u64>().map_err(|_| bad())? * 10u64.pow(9 - fraction.len() as u32)
    };
    (secs as u64)
        .checked_mul(NANOS_PER_SEC)
        .and_then(|n| n.checked_add(nanos))
        .ok_or_else(|| format!("{text:?} is outside 1970–2262"))
}

/// A timestamp as `YYYY-MM-DDTHH:MM:SS.fffffffffZ` (UTC).
pub fn format_utc(ts: Timestamp) -> String {
    let secs = (ts / NANOS_PER_SEC) as i64;
    let (year, month, day) = civil_from_days(secs.div_euclid(86_400));
    let tod = secs.rem_euclid(86_400);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:09}Z",
        tod / 3_600,
        tod % 3_600 / 60,
        tod % 60,
        ts % NANOS_PER_SEC
    )
}

// ------------------------------------------------------------------------------------------
// Time order within a file

/// The replay's clock: a file is one timeline, so its times ([`known_at`]: a candle counts at its
/// close) may not decrease (across symbols), and a candle may not repeat the previous one of its
/// symbol and interval.
#[derive(Default)]
struct Timeline {
    last: Option<Timestamp>,
    candles: HashMap<(Arc<str>, u32), Timestamp>,
}

impl Timeline {
    /// Admits `event` or says why not (and then leaves the clock where it was).
    fn admit(&mut self, event: &MarketEvent) -> Result<(), QualityIssue> {
        let at = known_at(event);
        let backwards = |previous| QualityIssue::NonMonotonicTime {
            symbol: event.symbol().clone(),
            previous,
            got: at,
        };
        if let Some(previous) = self.last
            && at < previous
        {
            return Err(backwards(previous));
        }
        if let MarketEvent::Candle(c) = event {
            let key = (c.symbol.clone(), c.interval_secs);
            if let Some(&previous) = self.candles.get(&key)
                && at <= previous
            {
                return Err(backwards(previous));
            }
            self.candles.insert(key, at);
        }
        self.last = Some(at);
        Ok(())
    }
}

/// Collects the events and issues of one file.
struct Collector {
    file: Arc<str>,
    timeline: Timeline,
    replay: Replay,
}

impl Collector {
    fn new(file: &Arc<str>) -> Collector {
        Collector {
            file: file.clone(),
            timeline: Timeline::default(),
            replay: Replay::default(),
        }
    }

    fn flag(&mut self, line: usize, ts: Timestamp, issue: QualityIssue) {
        self.replay.issues.push(Flagged {
            file: self.file.clone(),
            line,
            ts,
            issue,
        });
    }

    /// Adds an event unless its time goes back, which is flagged instead.
    fn push(&mut self, line: usize, event: MarketEvent) {
        match self.timeline.admit(&event) {
            Ok(()) => self.replay.events.push(event),
            Err(issue) => self.flag(line, known_at(&event), issue),
        }
    }
}

// ------------------------------------------------------------------------------------------
// Bar CSV

const BAR_COLUMNS: [&str; 7] = [
    "symbol",
    "timestamp",
    "open",
    "high",
    "low",
    "close",
    "volume",
];

fn default_symbol(file: &str) -> String {
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
/// UTC ([`parse_utc`]); prices are decimals with `low <= open, close <= high`; volume is not
/// negative. Each bar becomes a [`Candle`] of `options.bar_interval_secs`.
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
        let volume = row.value("volume", parse_non_negative)?;
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
        let candle = Candle {
            symbol,
            interval_secs: interval,
            start,
            open,
            high,
            low,
            close,
            volume,
        };
        out.push(line, MarketEvent::Candle(candle));
    }
    Ok(out.replay)
}

// ------------------------------------------------------------------------------------------
// Binance depth CSV

const DEPTH_COLUMNS: [&str; 9] = [
    "symbol",
    "timestamp",
    "first_update_id",
    "last_update_id",
    "side",
    "update_type",
    "price",
    "qty",
    "pu",
];

/// One row of a Binance depth CSV.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DepthRow {
    /// The file it came from.
    pub file: Arc<str>,
    /// Its line.
    pub line: usize,
    /// Instrument (Binance's own spelling, `BTCUSDT`).
    pub symbol: Arc<str>,
    /// Event time (the CSV has milliseconds).
    pub ts: Timestamp,
    /// First update id in the event (`U`).
    pub first_update_id: i64,
    /// Last update id in the event (`u`; a snapshot's `lastUpdateId`).
    pub last_update_id: i64,
    /// `b` is [`Side::Buy`], `a` is [`Side::Sell`].
    pub side: Side,
    /// `snap` (a snapshot level) or `set` (an update).
    pub snapshot: bool,
    /// Price level.
    pub price: Decimal,
    /// Quantity at the level; 0 removes it.
    pub size: Decimal,
    /// The previous event's last update id (`pu`; `-1` when the venue sends none).
    pub prev_update_id: i64,
}

/// Parses a Binance depth CSV (snapshot or update rows) into rows, checking every field.
pub fn parse_depth_rows(file: &str, bytes: &[u8]) -> Result<Vec<DepthRow>, RecordError> {
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
    let layout = Layout::new(&file, utf8(&file, 1, header)?, &DEPTH_COLUMNS, &[])?;
    let mut symbols = Symbols::default();
    let mut rows = Vec::new();
    for (line, raw) in lines {
        if raw.is_empty() {
            continue;
        }
        let row = layout.row(line, utf8(&file, line, raw)?)?;
        let millis: u64 = row.value("timestamp", parse_int)?;
        let ts = millis
            .checked_mul(NANOS_PER_MILLI)
            .ok_or_else(|| row.err("timestamp", format!("{millis} ms is too far in the future")))?;
        let side = row.value("side", |s| match s {
            "b" => Ok(Side::Buy),
            "a" => Ok(Side::Sell),
            other => Err(format!("{other:?} is not a side (b or a)")),
        })?;
        let snapshot = row.value("update_type", |s| match s {
            "snap" => Ok(true),
            "set" => Ok(false),
            other => Err(format!("{other:?} is not an update type (snap or set)")),
        })?;
        let first_update_id = row.value("first_update_id", parse_int)?;
        let last_update_id = row.value("last_update_id", parse_int)?;
        if last_update_id < first_update_id {
            return Err(row.err(
                "last_update_id",
                format!("{last_update_id} is below first_update_id {first_update_id}"),
            ));
        }
        rows.push(DepthRow {
            file: file.clone(),
            line,
            symbol: row.value("symbol", |s| symbols.get(s))?,
            ts,
            first_update_id,
            last_update_id,
            side,
            snapshot,
            price: row.value("price", parse_decimal)?,
            size: row.value("qty", parse_non_negative)?,
            prev_update_id: row.value("pu", parse_int)?,
        });
    }
    Ok(rows)
}

/// One symbol's book during a depth replay.
struct DepthState {
    book: L2Book,
    /// Last update id applied (a snapshot's `lastUpdateId` right after it).
    last_id: Option<i64>,
    /// No update applied since the snapshot.
    fresh: bool,
    /// The book was crossed after the previous event (so a crossing is reported once).
    crossed: bool,
    /// The last quote emitted.
    quote: Option<Quote>,
}

fn same_top(a: &Quote, b: &Quote) -> bool {
    (a.bid, a.bid_size, a.ask, a.ask_size) == (b.bid, b.bid_size, b.ask, b.ask_size)
}

/// Replays depth rows (a snapshot, then updates, possibly for several symbols) through one
/// [`L2Book`] per symbol. Consecutive rows with the same symbol, time, update ids and type are
/// one venue event; after each event the replay emits the top `depth` levels as a [`Book`] and,
/// when the best bid or offer changed and the book is not crossed, a [`Quote`].
///
/// Continuity follows Binance's rules for a local book: updates before a symbol's first
/// snapshot, and the first updates after it that end before the snapshot's `last_update_id`,
/// are skipped; the first update applied must start at or before `last_update_id + 1`; every
/// later one must name the previous one's `last_update_id` as its `pu` (or, without `pu`, start
/// right after it). A break is flagged as [`QualityIssue::SequenceGap`] and the update applied
/// anyway: the levels it sets are current, those it does not mention may be stale until the
/// next snapshot. A crossed or locked book is flagged when it becomes so. An event whose time
/// goes back is applied to the book (its ids say it belongs) but emits nothing and is flagged.
pub fn replay_depth(rows: &[DepthRow], depth: usize) -> Replay {
    let depth = depth.clamp(1, MAX_BOOK_DEPTH);
    let mut out: Option<Collector> = None;
    let mut parts = Vec::new();
    let mut states: HashMap<Arc<str>, DepthState> = HashMap::new();
    for event in rows.chunk_by(|a, b| {
        (a.symbol == b.symbol)
            && (
                a.ts,
                a.first_update_id,
                a.last_update_id,
                a.snapshot,
                a.prev_update_id,
            ) == (
                b.ts,
                b.first_update_id,
                b.last_update_id,
                b.snapshot,
                b.prev_update_id,
            )
    }) {
        let head = &event[0];
        // Issues name the file of the row that showed them; a new file starts a new collector
        // but the books carry over (a snapshot file, then its update files).
        if out.as_ref().is_none_or(|c| c.file != head.file) {
            let mut next = Collector::new(&head.file);
            if let Some(previous) = out.take() {
                next.timeline = previous.timeline;
                parts.push(previous.replay);
            }
            out = Some(next);
        }
        let Some(out) = out.as_mut() else { continue };
        let state = states
            .entry(head.symbol.clone())
            .or_insert_with(|| DepthState {
                book: L2Book::new(head.symbol.clone()),
                last_id: None,
                fresh: false,
                crossed: false,
                quote: None,
            });
        if head.snapshot {
            let levels = |side: Side| -> Vec<BookLevel> {
                event
                    .iter()
                    .filter(|r| r.side == side && !r.size.is_zero())
                    .map(|r| BookLevel {
                        price: r.price,
                        size: r.size,
                    })
                    .collect()
            };
            state
                .book
                .apply_snapshot(&levels(Side::Buy), &levels(Side::Sell), head.ts);
            state.last_id = Some(head.last_update_id);
            state.fresh = true;
        } else {
            let Some(last) = state.last_id else { continue };
            if state.fresh && head.last_update_id < last {
                continue;
            }
            let follows = if head.prev_update_id >= 0 {
                head.prev_update_id
            } else {
                head.first_update_id.saturating_sub(1)
            };
            let gap = if state.fresh {
                head.first_update_id > last.saturating_add(1)
            } else {
                follows != last
            };
            if gap {
                let issue = QualityIssue::SequenceGap {
                    symbol: head.symbol.clone(),
                    expected: last,
                    got: follows,
                };
                out.flag(head.line, head.ts, issue);
            }
            for row in event {
                state
                    .book
                    .apply_update(row.side, row.price, row.size, row.ts);
            }
            state.last_id = Some(head.last_update_id);
            state.fresh = false;
        }
        let book = MarketEvent::Book(state.book.top(depth));
        if let Err(issue) = out.timeline.admit(&book) {
            out.flag(head.line, head.ts, issue);
            continue;
        }
        out.replay.events.push(book);
        if let Some(issue) = state.book.check() {
            if !state.crossed {
                out.flag(head.line, head.ts, issue);
            }
            state.crossed = true;
            continue;
        }
        state.crossed = false;
        if let Some(quote) = state.book.quote()
            && state.quote.as_ref().is_none_or(|q| !same_top(q, &quote))
        {
            state.quote = Some(quote.clone());
            out.replay.events.push(MarketEvent::Quote(quote));
        }
    }
    parts.extend(out.map(|c| c.replay));
    let mut all = Replay::default();
    for part in parts {
        all.events.extend(part.events);
        all.issues.extend(part.issues);
    }
    all
}

// ------------------------------------------------------------------------------------------
// JSONL

/// Reads the fields of one JSON object, naming the field in every error.
struct Object<'a> {
    file: &'a Arc<str>,
    line: usize,
    map: &'a Map<String, Value>,
}

impl Object<'_> {
    fn err(&self, field: &str, reason: impl Into<String>) -> RecordError {
        record_error(
            self.file,
            self.line,
            Some(Place::Field(field.to_string())),
            reason,
        )
    }

    fn get(&self, field: &str) -> Result<&Value, RecordError> {
        self.map
            .get(field)
            .ok_or_else(|| self.err(field, "missing"))
    }

    fn string(&self, field: &str) -> Result<&str, RecordError> {
        match self.get(field)? {
            Value::String(s) => Ok(s),
            other => Err(self.err(
                field,
                format!("expected a string, found {}", json_kind(other)),
            )),
        }
    }

    fn decimal_value(&self, field: &str, value: &Value) -> Result<Decimal, RecordError> {
        match value {
            Value::String(s) => parse_decimal(s).map_err(|why| self.err(field, why)),
            Value::Number(n) => Err(self.err(
                field,
                format!("decimals are written as strings (\"{n}\"), not JSON numbers, which parsers read as floats"),
            )),
            other => Err(self.err(field, format!("expected a decimal string, found {}", json_kind(other)))),
        }
    }

    fn decimal(&self, field: &str) -> Result<Decimal, RecordError> {
        self.decimal_value(field, self.get(field)?)
    }

    fn size(&self, field: &str) -> Result<Decimal, RecordError> {
        let value = self.decimal(field)?;
        if value.is_sign_negative() && !value.is_zero() {
            return Err(self.err(field, format!("{value} is negative")));
        }
        Ok(value)
    }

    fn time(&self, field: &str) -> Result<Timestamp, RecordError> {
        match self.get(field)? {
            Value::Number(n) => n.as_u64().ok_or_else(|| {
                self.err(
                    field,
                    format!("{n} is not a whole number of nanoseconds since the epoch"),
                )
            }),
            Value::String(s) => parse_utc(s).map_err(|why| self.err(field, why)),
            other => Err(self.err(
                field,
                format!(
                    "expected nanoseconds or a UTC time string, found {}",
                    json_kind(other)
                ),
            )),
        }
    }

    fn levels(&self, field: &str, descending: bool) -> Result<Vec<BookLevel>, RecordError> {
        let Value::Array(items) = self.get(field)? else {
            return Err(self.err(field, "expected an array of [price, size] pairs"));
        };
        let mut levels = Vec::with_capacity(items.len().min(MAX_BOOK_DEPTH));
        for (i, item) in items.iter().enumerate() {
            let pair = match item {
                Value::Array(pair) if pair.len() == 2 => pair,
                _ => return Err(self.err(field, format!("level {i} is not a [price, size] pair"))),
            };
            let price = self.decimal_value(field, &pair[0])?;
            let size = self.decimal_value(field, &pair[1])?;
            if size.is_sign_negative() && !size.is_zero() {
                return Err(self.err(field, format!("level {i}: size {size} is negative")));
            }
            if let Some(prev) = levels.last().map(|l: &BookLevel| l.price)
                && (if descending {
                    price >= prev
                } else {
                    price <= prev
                })
            {
                let order = if descending { "highest" } else { "lowest" };
                return Err(self.err(
                    field,
                    format!("level {i}: price {price} out of order ({order} first)"),
                ));
            }
            levels.push(BookLevel { price, size });
        }
        Ok(levels)
    }
}

fn json_kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

const QUOTE_FIELDS: &[&str] = &["type", "symbol", "ts", "bid", "bid_size", "ask", "ask_size"];
const TRADE_FIELDS: &[&str] = &["type", "symbol", "ts", "price", "size", "side"];
const BOOK_FIELDS: &[&str] = &["type", "symbol", "ts", "bids", "asks"];
const CANDLE_FIELDS: &[&str] = &[
    "type", "symbol", "start", "interval", "open", "high", "low", "close", "volume",
];

/// Parses JSONL: one JSON object per line, blank lines ignored. The forms, with every price and
/// size a decimal string and `ts` / `start` nanoseconds since the epoch (or a UTC time string):
///
/// ```text
/// {"type":"quote","symbol":"BTC-USDT","ts":1641081600000000000,"bid":"46319.5","bid_size":"1.2","ask":"46320","ask_size":"0.4"}
/// {"type":"trade","symbol":"BTC-USDT","ts":1641081600000000000,"price":"46320","size":"0.05","side":"buy"}
/// {"type":"book","symbol":"BTC-USDT","ts":1641081600000000000,"bids":[["46319.5","1.2"]],"asks":[["46320","0.4"]]}
/// {"type":"candle","symbol":"BTC-USDT","start":1641081600000000000,"interval":60,"open":"46319","high":"46385","low":"46319","close":"46377","volume":"12.5"}
/// ```
///
/// A trade's `side` is the aggressor's (`buy` or `sell`). Unknown fields are errors. A quote or
/// book with the best bid at or above the best ask is kept (it is what was recorded) and
/// flagged as [`QualityIssue::CrossedBook`].
pub fn parse_jsonl(file: &str, bytes: &[u8]) -> Result<Replay, RecordError> {
    let file: Arc<str> = Arc::from(file);
    let mut symbols = Symbols::default();
    let mut out = Collector::new(&file);
    for (line, raw) in lines(bytes) {
        let text = utf8(&file, line, raw)?;
        if text.trim().is_empty() {
            continue;
        }
        let value: Value = serde_json::from_str(text)
            .map_err(|e| record_error(&file, line, None, format!("not JSON: {e}")))?;
        let Value::Object(map) = &value else {
            return Err(record_error(
                &file,
                line,
                None,
                format!("expected a JSON object, found {}", json_kind(&value)),
            ));
        };
        let o = Object {
            file: &file,
            line,
            map,
        };
        let kind = o.string("type")?;
        let allowed = match kind {
            "quote" => QUOTE_FIELDS,
            "trade" => TRADE_FIELDS,
            "book" => BOOK_FIELDS,
            "candle" => CANDLE_FIELDS,
            other => {
                return Err(o.err(
                    "type",
                    format!("{other:?} is not an event type (quote, trade, book, candle)"),
                ));
            }
        };
        if let Some(unknown) = map.keys().find(|k| !allowed.contains(&k.as_str())) {
            return Err(o.err(
                unknown,
                format!(
                    "unknown field for a {kind} (expected {})",
                    allowed.join(", ")
                ),
            ));
        }
        let symbol = symbols
            .get(o.string("symbol")?)
            .map_err(|why| o.err("symbol", why))?;
        let mut crossed = None;
        let event = match kind {
            "quote" => {
                let quote = Quote {
                    symbol,
                    bid: o.decimal("bid")?,
                    bid_size: o.size("bid_size")?,
                    ask: o.decimal("ask")?,
                    ask_size: o.size("ask_size")?,
                    ts: o.time("ts")?,
                };
                crossed = (quote.bid >= quote.ask).then_some((quote.bid, quote.ask));
                MarketEvent::Quote(quote)
            }
            "trade" => MarketEvent::Trade(Trade {
                symbol,
                ts: o.time("ts")?,
                price: o.decimal("price")?,
                size: o.size("size")?,
                aggressor: match o.string("side")? {
                    "buy" => Side::Buy,
                    "sell" => Side::Sell,
                    other => {
                        return Err(o.err("side", format!("{other:?} is not a side (buy or sell)")));
                    }
                },
            }),
            "book" => {
                let book = Book {
                    symbol,
                    ts: o.time("ts")?,
                    bids: o.levels("bids", true)?,
                    asks: o.levels("asks", false)?,
                };
                if let (Some(bid), Some(ask)) = (book.bids.first(), book.asks.first())
                    && bid.price >= ask.price
                {
                    crossed = Some((bid.price, ask.price));
                }
                MarketEvent::Book(book)
            }
            _ => {
                let interval = match o.get("interval")? {
                    Value::Number(n) => n
                        .as_u64()
                        .and_then(|n| u32::try_from(n).ok())
                        .filter(|&n| n > 0),
                    _ => None,
                }
                .ok_or_else(|| {
                    o.err(
                        "interval",
                        "expected the bar length in whole seconds, above 0",
                    )
                })?;
                let candle = Candle {
                    symbol,
                    interval_secs: interval,
                    start: o.time("start")?,
                    open: o.decimal("open")?,
                    high: o.decimal("high")?,
                    low: o.decimal("low")?,
                    close: o.decimal("close")?,
                    volume: o.size("volume")?,
                };
                if candle.high < candle.low {
                    return Err(o.err(
                        "high",
                        format!("{} is below the low {}", candle.high, candle.low),
                    ));
                }
                for (name, value) in [("open", candle.open), ("close", candle.close)] {
                    if value > candle.high || value < candle.low {
                        let why = format!(
                            "{value} is outside the range low {} to high {}",
                            candle.low, candle.high
                        );
                        return Err(o.err(name, why));
                    }
                }
                MarketEvent::Candle(candle)
            }
        };
        if let Some((bid, ask)) = crossed {
            let issue = QualityIssue::CrossedBook {
                symbol: event.symbol().clone(),
                bid,
                ask,
            };
            out.flag(line, known_at(&event), issue);
        }
        out.push(line, event);
    }
    Ok(out.replay)
}

fn json_string(text: &str) -> String {
    serde_json::to_string(text).unwrap_or_else(|_| "\"\"".to_string())
}

/// One event as a JSONL line (without the newline), in the form [`parse_jsonl`] reads.
pub fn to_jsonl(event: &MarketEvent) -> String {
    let levels = |levels: &[BookLevel]| {
        let items: Vec<String> = levels
            .iter()
            .map(|l| format!("[\"{}\",\"{}\"]", l.price, l.size))
            .collect();
        format!("[{}]", items.join(","))
    };
    match event {
        MarketEvent::Quote(q) => format!(
            r#"{{"type":"quote","symbol":{},"ts":{},"bid":"{}","bid_size":"{}","ask":"{}","ask_size":"{}"}}"#,
            json_string(&q.symbol),
            q.ts,
            q.bid,
            q.bid_size,
            q.ask,
            q.ask_size
        ),
        MarketEvent::Trade(t) => format!(
            r#"{{"type":"trade","symbol":{},"ts":{},"price":"{}","size":"{}","side":"{}"}}"#,
            json_string(&t.symbol),
            t.ts,
            t.price,
            t.size,
            match t.aggressor {
                Side::Buy => "buy",
                Side::Sell => "sell",
            }
        ),
        MarketEvent::Book(b) => format!(
            r#"{{"type":"book","symbol":{},"ts":{},"bids":{},"asks":{}}}"#,
            json_string(&b.symbol),
            b.ts,
            levels(&b.bids),
            levels(&b.asks)
        ),
        MarketEvent::Candle(c) => format!(
            r#"{{"type":"candle","symbol":{},"start":{},"interval":{},"open":"{}","high":"{}","low":"{}","close":"{}","volume":"{}"}}"#,
            json_string(&c.symbol),
            c.start,
            c.interval_secs,
            c.open,
            c.high,
            c.low,
            c.close,
            c.volume
        ),
    }
}

/// Writes events as JSONL, one per line (a recording that [`parse_jsonl`] replays).
pub fn write_jsonl<'a>(
    events: impl IntoIterator<Item = &'a MarketEvent>,
    mut out: impl io::Write,
) -> io::Result<()> {
    for event in events {
        out.write_all(to_jsonl(event).as_bytes())?;
        out.write_all(b"\n")?;
    }
    Ok(())
}

// ------------------------------------------------------------------------------------------
// Data quality for live feeds

/// Per-symbol time order for a live feed: a timestamp earlier than the symbol's last one is a
/// [`QualityIssue::NonMonotonicTime`] (equal times are fine: several trades print at once).
#[derive(Debug, Default)]
pub struct TimeOrder {
    last: HashMap<Arc<str>, Timestamp>,
}

impl TimeOrder {
    /// An empty tracker.
    pub fn new() -> TimeOrder {
        TimeOrder::default()
    }

    /// Notes `ts` for `symbol`; returns the issue if it went back (the last time is kept).
    pub fn observe(&mut self, symbol: &Arc<str>, ts: Timestamp) -> Option<QualityIssue> {
        match self.last.get_mut(symbol) {
            Some(last) if ts < *last => Some(QualityIssue::NonMonotonicTime {
                symbol: symbol.clone(),
                previous: *last,
                got: ts,
            }),
            Some(last) => {
                *last = ts;
                None
            }
            None => {
                self.last.insert(symbol.clone(), ts);
                None
            }
        }
    }
}

/// Notices symbols that stopped getting data: [`Staleness::check`] reports a symbol as
/// [`QualityIssue::Stale`] once when more than the threshold passed since its last data, and
/// again only after data arrived and stopped again.
#[derive(Debug)]
pub struct Staleness {
    threshold: u64,
    last: HashMap<Arc<str>, Timestamp>,
    reported: HashSet<Arc<str>>,
}

impl Staleness {
    /// A tracker that calls a symbol stale after `threshold` without data.
    pub fn new(threshold: Duration) -> Staleness {
        let threshold = u64::try_from(threshold.as_nanos()).unwrap_or(u64::MAX);
        Staleness {
            threshold,
            last: HashMap::new(),
            reported: HashSet::new(),
        }
    }

    /// Notes data for `symbol` at `ts` (the clock the feed runs on: exchange or replay time).
    pub fn observe(&mut self, symbol: &Arc<str>, ts: Timestamp) {
        let last = self.last.entry(symbol.clone()).or_insert(ts);
        *last = (*last).max(ts);
        self.reported.remove(symbol);
    }

    /// Whether `symbol` has had no data for longer than the threshold at `now`.
    pub fn is_stale(&self, symbol: &str, now: Timestamp) -> bool {
        self.last
            .get(symbol)
            .is_some_and(|&last| now.saturating_sub(last) > self.threshold)
    }

    /// The symbols that became stale since the last check, ordered by symbol.
    pub fn check(&mut self, now: Timestamp) -> Vec<QualityIssue> {
        let mut stale: Vec<(Arc<str>, Timestamp)> = self
            .last
            .iter()
            .filter(|(symbol, last)| {
                now.saturating_sub(**last) > self.threshold && !self.reported.contains(*symbol)
            })
            .map(|(symbol, last)| (symbol.clone(), *last))
            .collect();
        stale.sort();
        stale
            .into_iter()
            .map(|(symbol, last)| {
                self.reported.insert(symbol.clone());
                QualityIssue::Stale { symbol, last, now }
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::market::synthetic::{Synthetic, SyntheticConfig};
    use std::str::FromStr;

    fn d(s: &str) -> Decimal {
        Decimal::from_str(s).unwrap()
    }

    const SEC: u64 = NANOS_PER_SEC;

    #[test]
    fn embedded_bars_are_the_whole_file() {
        let replay = embedded_bars().unwrap();
        assert!(replay.issues.is_empty(), "{:?}", replay.issues);
        let bars: Vec<&Candle> = replay.candles().collect();
        assert_eq!(bars.len(), replay.events.len());
        // `wc -l` says 45,032 lines: the header and 45,031 bars.
        assert_eq!(bars.len(), 45_031);
        // January 2022 alone is 31 × 1,440 bars, the 44,640 of the provenance note.
        let jan =
            parse_utc("2022-01-01 00:00:00").unwrap()..parse_utc("2022-02-01 00:00:00").unwrap();
        assert_eq!(
            bars.iter().filter(|b| jan.contains(&b.start)).count(),
            44_640
        );
        // `head -2`: 2021-12-31 23:01:00.000000,46319.0,46385.0,46319.0,46377.0,2300413.7295
        let first = Candle {
            symbol: Arc::from("BTC-PERP"),
            interval_secs: 60,
            start: 1_640_991_660 * SEC,
            open: d("46319.0"),
            high: d("46385.0"),
            low: d("46319.0"),
            close: d("46377.0"),
            volume: d("2300413.7295"),
        };
        assert_eq!(bars[0], &first);
        // `tail -1`: 2022-02-01 05:31:00.000000,38525.0,38546.0,38525.0,38544.0,685906.9735
        let last = Candle {
            start: 1_643_693_460 * SEC,
            open: d("38525.0"),
            high: d("38546.0"),
            low: d("38525.0"),
            close: d("38544.0"),
            volume: d("685906.9735"),
            ..first.clone()
        };
        assert_eq!(bars[bars.len() - 1], &last);
        // Decimals keep what the file wrote: the scale survives.
        assert_eq!(bars[0].volume.to_string(), "2300413.7295");
        assert!(bars.windows(2).all(|w| w[1].start == w[0].start + 60 * SEC));
    }

    #[test]
    fn embedded_depth_reports_the_recorded_gap_and_ends_at_a_sound_quote() {
        let replay = embedded_depth(5).unwrap();
        let gap = QualityIssue::SequenceGap {
            symbol: Arc::from("BTCUSDT"),
            expected: 2_098_021_528_332,
            got: 2_098_041_693_400,
        };
        assert_eq!(replay.issues.len(), 1, "{:?}", replay.issues);
        assert_eq!(replay.issues[0].issue, gap);
        assert_eq!(
            (&*replay.issues[0].file, replay.issues[0].line),
            ("binance-btcusdt-depth-update.csv", 2)
        );
        // The snapshot file holds bids only: a book, no quote. Then the update: a book and a quote.
        let kinds: Vec<&str> = replay.events.iter().map(|e| e.kind().as_str()).collect();
        assert_eq!(kinds, ["book", "book", "quote"]);
        let MarketEvent::Book(snap) = &replay.events[0] else {
            panic!()
        };
        assert_eq!((snap.bids.len(), snap.asks.len()), (5, 0));
        assert_eq!(
            snap.bids[0],
            BookLevel {
                price: d("20377.00"),
                size: d("1.770")
            }
        );
        assert_eq!(snap.ts, 1_667_346_579_146 * NANOS_PER_MILLI);
        let MarketEvent::Quote(q) = &replay.events[2] else {
            panic!()
        };
        assert_eq!(
            (q.bid, q.bid_size, q.ask, q.ask_size),
            (d("20472.10"), d("22.276"), d("20472.20"), d("4.211"))
        );
        assert_eq!(q.ts, 1_667_347_199_939 * NANOS_PER_MILLI);
    }

    const DEPTH_HEADER: &str =
        "symbol,timestamp,first_update_id,last_update_id,side,update_type,price,qty,pu\n";

    fn depth(body: &str) -> Replay {
        let text = format!("{DEPTH_HEADER}{body}");
        replay_depth(&parse_depth_rows("d.csv", text.as_bytes()).unwrap(), 10)
    }

    #[test]
    fn depth_replay_follows_binance_sequencing() {
        let replay = depth(concat!(
            "BTCUSDT,1000,90,100,b,set,9.9,1,80\n", // before the snapshot: skipped
            "BTCUSDT,1001,100,100,b,snap,10.0,1,-1\n",
            "BTCUSDT,1001,100,100,a,snap,10.5,2,-1\n",
            "BTCUSDT,1002,95,99,b,set,10.1,5,90\n", // ends before the snapshot: skipped
            "BTCUSDT,1003,98,105,b,set,10.1,5,97\n", // straddles it: applied
            "BTCUSDT,1004,106,110,a,set,10.5,0,105\n",
            "BTCUSDT,1004,106,110,a,set,10.4,3,105\n",
            "BTCUSDT,1005,111,112,b,set,9.0,1,110\n", // deeper level: book but no quote change
        ));
        assert!(replay.issues.is_empty(), "{:?}", replay.issues);
        let quotes: Vec<(Decimal, Decimal)> = replay
            .events
            .iter()
            .filter_map(|e| match e {
                MarketEvent::Quote(q) => Some((q.bid, q.ask)),
                _ => None,
            })
            .collect();
        assert_eq!(
            quotes,
            [
                (d("10.0"), d("10.5")),
                (d("10.1"), d("10.5")),
                (d("10.1"), d("10.4"))
            ]
        );
        assert_eq!(
            replay
                .events
                .iter()
                .filter(|e| matches!(e, MarketEvent::Book(_)))
                .count(),
            4
        );
    }

    #[test]
    fn depth_replay_flags_an_injected_pu_gap() {
        let replay = depth(concat!(
            "BTCUSDT,1001,100,100,b,snap,10.0,1,-1\n",
            "BTCUSDT,1001,100,100,a,snap,10.5,2,-1\n",
            "BTCUSDT,1002,101,104,b,set,10.1,1,100\n",
            "BTCUSDT,1003,109,112,b,set,10.2,1,107\n", // pu should be 104
            "BTCUSDT,1004,113,115,b,set,10.3,1,112\n", // continues the gapped one: fine
        ));
        let issues: Vec<(usize, &QualityIssue)> =
            replay.issues.iter().map(|f| (f.line, &f.issue)).collect();
        let gap = QualityIssue::SequenceGap {
            symbol: Arc::from("BTCUSDT"),
            expected: 104,
            got: 107,
        };
        assert_eq!(issues, [(5, &gap)]);
        assert!(
            replay.issues[0]
                .to_string()
                .starts_with("d.csv:5: BTCUSDT: sequence gap")
        );
        // The gapped update is still applied.
        let MarketEvent::Quote(q) = replay.events.last().unwrap() else {
            panic!()
        };
        assert_eq!(q.bid, d("10.3"));
    }

    #[test]
    fn depth_replay_flags_a_crossed_book_once_and_derives_no_quote_from_it() {
        let replay = depth(concat!(
            "BTCUSDT,1001,100,100,b,snap,10.0,1,-1\n",
            "BTCUSDT,1001,100,100,a,snap,10.5,2,-1\n",
            "BTCUSDT,1002,101,101,b,set,10.6,1,100\n", // bid above the ask: crossed
            "BTCUSDT,1003,102,102,b,set,10.7,1,101\n", // still crossed: not flagged again
            "BTCUSDT,1004,103,103,b,set,10.6,0,102\n",
            "BTCUSDT,1004,103,103,b,set,10.7,0,102\n", // back to 10.0 / 10.5
        ));
        let crossed = QualityIssue::CrossedBook {
            symbol: Arc::from("BTCUSDT"),
            bid: d("10.6"),
            ask: d("10.5"),
        };
        assert_eq!(
            replay
                .issues
                .iter()
                .map(|f| (f.line, &f.issue))
                .collect::<Vec<_>>(),
            [(4, &crossed)]
        );
        let kinds: Vec<&str> = replay.events.iter().map(|e| e.kind().as_str()).collect();
        // The uncrossed book gives back the quote of before, which did not change: no new quote.
        assert_eq!(kinds, ["book", "quote", "book", "book", "book"]);
    }

    #[test]
    fn depth_replay_flags_time_going_back() {
        let replay = depth(concat!(
            "BTCUSDT,2000,100,100,b,snap,10.0,1,-1\n",
            "BTCUSDT,2000,100,100,a,snap,10.5,2,-1\n",
            "BTCUSDT,1999,101,101,b,set,10.1,1,100\n",
            "BTCUSDT,2001,102,102,a,set,10.4,1,101\n",
        ));
        let back = QualityIssue::NonMonotonicTime {
            symbol: Arc::from("BTCUSDT"),
            previous: 2_000 * NANOS_PER_MILLI,
            got: 1_999 * NANOS_PER_MILLI,
        };
        assert_eq!(
            replay.issues.iter().map(|f| &f.issue).collect::<Vec<_>>(),
            [&back]
        );
        // Its level is in the book all the same: the ids say it belongs.
        let MarketEvent::Quote(q) = replay.events.last().unwrap() else {
            panic!()
        };
        assert_eq!((q.bid, q.ask), (d("10.1"), d("10.4")));
    }

    const BARS: &str = "timestamp,open,high,low,close,volume\n";

    fn bars(body: &str) -> Result<Replay, RecordError> {
        let options = ReplayOptions {
            symbol: Some(Arc::from("X")),
            ..ReplayOptions::default()
        };
        parse_bars("data.csv", format!("{BARS}{body}").as_bytes(), &options)
    }

    #[test]
    fn malformed_bar_files_name_line_and_column() {
        let good = "2022-01-01 00:00:00.000000,1.0,2.0,0.5,1.5,10\n";
        // (file body after the header, line, column, reason)
        let cases: &[(&str, usize, Option<&str>, &str)] = &[
            (
                "2022-01-01 00:01:00,1.0,abc,0.5,1.5,10\n",
                3,
                Some("high"),
                "\"abc\" is not a decimal",
            ),
            (
                "2022-01-01 00:01:00,1.0,2.0,0.5,1.5,1e3\n",
                3,
                Some("volume"),
                "\"1e3\" is not a decimal",
            ),
            (
                "2022-01-01 00:01:00,1.0,2.0,0.5,1.5,-1\n",
                3,
                Some("volume"),
                "-1 is negative",
            ),
            (
                "2022-01-01 00:01:00,1.0,2.0,,1.5,10\n",
                3,
                Some("low"),
                "\"\" is not a decimal",
            ),
            (
                "2022-02-30 00:01:00,1.0,2.0,0.5,1.5,10\n",
                3,
                Some("timestamp"),
                "\"2022-02-30 00:01:00\" is not a date",
            ),
            (
                "2022-01-01T24:00:00,1.0,2.0,0.5,1.5,10\n",
                3,
                Some("timestamp"),
                "is not a time of day",
            ),
            (
                "01/01/2022 00:01,1.0,2.0,0.5,1.5,10\n",
                3,
                Some("timestamp"),
                "is not a UTC time",
            ),
            (
                "2022-01-01 00:01:00,1.0,2.0,0.5,1.5\n",
                3,
                Some("volume"),
                "missing: the line has 5 fields, the header 6",
            ),
            (
                "2022-01-01 00:01:00,1.0,2.0,0.5,1.5,10,7\n",
                3,
                None,
                "the line has 7 fields, the header 6",
            ),
            (
                "2022-01-01 00:01:00,1.0,0.4,0.5,0.45,10\n",
                3,
                Some("high"),
                "0.4 is below the low 0.5",
            ),
            (
                "2022-01-01 00:01:00,3.0,2.0,0.5,1.5,10\n",
                3,
                Some("open"),
                "3.0 is outside the range low 0.5 to high 2.0",
            ),
            (
                "2022-01-01 00:01:00,\"1.0\",2.0,0.5,1.5,10\n",
                3,
                None,
                "quoted fields are not supported",
            ),
        ];
        for (body, line, column, reason) in cases {
            let err = bars(&format!("{good}{body}")).unwrap_err();
            assert_eq!(err.line, *line, "{body}: {err}");
            assert_eq!(
                err.place,
                column.map(|c| Place::Column(c.to_string())),
                "{body}: {err}"
            );
            assert!(err.reason.contains(reason), "{body}: {err}");
        }
        let err = bars(&format!("{good}2022-01-01 00:01:00,1.0,abc,0.5,1.5,10\n")).unwrap_err();
        assert_eq!(
            err.to_string(),
            r#"data.csv:3: column "high": "abc" is not a decimal"#
        );
    }

    #[test]
    fn malformed_headers_are_line_one() {
        let options = ReplayOptions::default();
        let cases: &[(&str, &str, &str)] = &[
            (
                "timestamp,open,high,low,close\n",
                "volume",
                "missing from the header",
            ),
            (
                "timestamp,open,high,low,close,volume,vwap\n",
                "vwap",
                "unknown column",
            ),
            (
                "timestamp,open,open,high,low,close,volume\n",
                "open",
                "appears twice",
            ),
        ];
        for (header, column, reason) in cases {
            let err = parse_bars("x.csv", header.as_bytes(), &options).unwrap_err();
            assert_eq!(
                (err.line, err.place.clone()),
                (1, Some(Place::Column(column.to_string()))),
                "{err}"
            );
            assert!(err.reason.contains(reason), "{err}");
        }
        let err = parse_bars("x.csv", b"", &options).unwrap_err();
        assert_eq!(err.line, 1);
        // A name that gives no symbol, and no symbol option.
        let err = parse_bars("my bars.csv", BARS.as_bytes(), &options).unwrap_err();
        assert!(err.reason.contains("no symbol column"), "{err}");
    }

    #[test]
    fn malformed_depth_rows_name_line_and_column() {
        let cases: &[(&str, Option<&str>, &str)] = &[
            (
                "BTCUSDT,1000,1,2,x,set,10,1,0",
                Some("side"),
                "\"x\" is not a side",
            ),
            (
                "BTCUSDT,1000,1,2,b,upd,10,1,0",
                Some("update_type"),
                "\"upd\" is not an update type",
            ),
            (
                "BTCUSDT,1000,1,2,b,set,10,1,zero",
                Some("pu"),
                "\"zero\" is not an integer",
            ),
            (
                "BTCUSDT,10.5,1,2,b,set,10,1,0",
                Some("timestamp"),
                "\"10.5\" is not an integer",
            ),
            (
                "BTCUSDT,1000,3,2,b,set,10,1,0",
                Some("last_update_id"),
                "2 is below first_update_id 3",
            ),
            (
                "BTCUSDT,1000,1,2,b,set,10,-1,0",
                Some("qty"),
                "-1 is negative",
            ),
            (
                "btcusdt,1000,1,2,b,set,10,1,0",
                Some("symbol"),
                "is not a symbol",
            ),
            ("BTCUSDT,1000,1,2,b,set,10,1", Some("pu"), "missing"),
            (
                "BTCUSDT,99999999999999999999,1,2,b,set,10,1,0",
                Some("timestamp"),
                "out of range",
            ),
        ];
        for (row, column, reason) in cases {
            let text = format!("{DEPTH_HEADER}BTCUSDT,1000,1,2,b,set,10,1,0\n{row}\n");
            let err = parse_depth_rows("d.csv", text.as_bytes()).unwrap_err();
            assert_eq!(err.line, 3, "{row}: {err}");
            assert_eq!(
                err.place,
                column.map(|c| Place::Column(c.to_string())),
                "{row}: {err}"
            );
            assert!(err.reason.contains(reason), "{row}: {err}");
        }
    }

    #[test]
    fn bars_going_back_in_time_are_flagged_and_skipped() {
        let replay = bars(concat!(
            "2022-01-01 00:01:00,1,1,1,1,1\n",
            "2022-01-01 00:02:00,1,1,1,1,1\n",
            "2022-01-01 00:02:00,1,1,1,1,1\n", // repeated
            "2022-01-01 00:00:00,1,1,1,1,1\n", // back in time
            "2022-01-01 00:03:00,1,1,1,1,1\n",
        ))
        .unwrap();
        assert_eq!(replay.events.len(), 3);
        let lines: Vec<usize> = replay.issues.iter().map(|f| f.line).collect();
        assert_eq!(lines, [4, 5]);
        // Bars are compared by when they close.
        let close = |t| parse_utc(t).unwrap();
        let issues: Vec<&QualityIssue> = replay.issues.iter().map(|f| &f.issue).collect();
        let x: Arc<str> = Arc::from("X");
        assert_eq!(
            issues,
            [
                &QualityIssue::NonMonotonicTime {
                    symbol: x.clone(),
                    previous: close("2022-01-01 00:03:00"),
                    got: close("2022-01-01 00:03:00")
                },
                &QualityIssue::NonMonotonicTime {
                    symbol: x,
                    previous: close("2022-01-01 00:03:00"),
                    got: close("2022-01-01 00:01:00")
                },
            ]
        );
    }

    #[test]
    fn bar_files_take_crlf_a_bom_and_a_symbol_column() {
        let text = "\u{feff}symbol,timestamp,open,high,low,close,volume\r\nBTC-USDT,2022-01-01T00:00:00Z,1,2,0.5,1.5,3\r\n\r\nETH-USDT,2022-01-01 00:00:00.5,1,2,0.5,1.5,3\r\n";
        let replay = parse_bars("x.csv", text.as_bytes(), &ReplayOptions::default()).unwrap();
        let symbols: Vec<&str> = replay.events.iter().map(|e| &**e.symbol()).collect();
        assert_eq!(symbols, ["BTC-USDT", "ETH-USDT"]);
        assert_eq!(replay.events[1].ts(), 1_640_995_200 * SEC + SEC / 2);
    }

    #[test]
    fn default_symbol_comes_from_the_file_name() {
        assert_eq!(
            default_symbol("/data/btc-perp-2022-01-1m.csv.gz"),
            "BTC-PERP"
        );
        assert_eq!(default_symbol("eth-usdt.csv"), "ETH-USDT");
        assert_eq!(default_symbol("2022.csv"), "2022");
    }

    #[test]
    fn utc_times_parse_and_format() {
        let cases: &[(&str, Option<u64>)] = &[
            ("1970-01-01 00:00:00", Some(0)),
            ("2021-12-31 23:01:00.000000", Some(1_640_991_660 * SEC)),
            (
                "2024-02-29T12:00:00.123456789Z",
                Some(1_709_208_000 * SEC + 123_456_789),
            ),
            (
                "2000-03-01 00:00:00.1",
                Some(951_868_800 * SEC + 100_000_000),
            ),
            ("2023-02-29 00:00:00", None),
            ("1900-02-29 00:00:00", None),
            ("1969-12-31 23:59:59", None),
            ("2022-01-01 00:00:60", None),
            ("2022-01-01 00:00:00.", None),
            ("2022-01-01 00:00:00.1234567890", None),
            ("2022-1-01 00:00:00", None),
            ("2022-01-01 00:00", None),
            ("+022-01-01 00:00:00", None),
        ];
        for (text, expected) in cases {
            assert_eq!(parse_utc(text).ok(), *expected, "{text}");
        }
        for ts in [
            0,
            1_640_991_660 * SEC,
            1_709_208_000 * SEC + 123_456_789,
            951_782_400 * SEC,
        ] {
            assert_eq!(parse_utc(&format_utc(ts)), Ok(ts));
        }
        assert_eq!(
            format_utc(1_709_208_000 * SEC + 5),
            "2024-02-29T12:00:00.000000005Z"
        );
    }

    #[test]
    fn decimals_are_exact_and_strict() {
        assert_eq!(parse_decimal("43000.50").unwrap().to_string(), "43000.50");
        assert_eq!(parse_decimal("-0.1"), Ok(d("-0.1")));
        for bad in [
            "", "1.", ".5", "1e5", "+1", " 1", "1_000", "NaN", "1.2.3", "0x10",
        ] {
            assert!(parse_decimal(bad).is_err(), "{bad}");
        }
        // 30 fractional digits do not fit exactly: refused, not rounded.
        assert!(parse_decimal("0.123456789012345678901234567890").is_err());
    }

    fn sample_events() -> Vec<MarketEvent> {
        // A candle that closes as the synthetic feed starts, then the feed.
        let mut events = vec![MarketEvent::Candle(Candle {
            symbol: Arc::from("SYN0000-USD"),
            interval_secs: 60,
            start: 1_704_067_140 * SEC,
            open: d("1.10"),
            high: d("1.25"),
            low: d("1.00"),
            close: d("1.2"),
            volume: d("0.000000001"),
        })];
        events.extend(Synthetic::new(SyntheticConfig::new(9, 2)).unwrap().take(40));
        events
    }

    #[test]
    fn jsonl_round_trip() {
        let events = sample_events();
        assert!(events.iter().any(|e| matches!(e, MarketEvent::Book(_))));
        assert!(events.iter().any(|e| matches!(e, MarketEvent::Trade(_))));
        let mut text = Vec::new();
        write_jsonl(&events, &mut text).unwrap();
        let replay = parse_jsonl("r.jsonl", &text).unwrap();
        assert_eq!(replay.events, events);
        assert!(replay.issues.is_empty());
        // And again from the file on disk, through detection.
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("r.jsonl");
        std::fs::write(&path, &text).unwrap();
        assert_eq!(
            load(&[&path], &ReplayOptions::default()).unwrap().events,
            events
        );
    }

    #[test]
    fn jsonl_reads_the_documented_examples() {
        let text = concat!(
            r#"{"type":"quote","symbol":"BTC-USDT","ts":1641081600000000000,"bid":"46319.5","bid_size":"1.2","ask":"46320","ask_size":"0.4"}"#,
            "\n",
            r#"{"type":"trade","symbol":"BTC-USDT","ts":"2022-01-02T00:00:00.5Z","price":"46320","size":"0.05","side":"buy"}"#,
            "\n\n",
            r#"{"type":"book","symbol":"BTC-USDT","ts":1641081601000000000,"bids":[["46319.5","1.2"],["46319","3"]],"asks":[["46320","0.4"]]}"#,
            "\n",
            r#"{"type":"candle","symbol":"BTC-USDT","start":1641081600000000000,"interval":60,"open":"46319","high":"46385","low":"46319","close":"46377","volume":"12.5"}"#,
            "\n",
        );
        let replay = parse_jsonl("ex.jsonl", text.as_bytes()).unwrap();
        let kinds: Vec<&str> = replay.events.iter().map(|e| e.kind().as_str()).collect();
        assert_eq!(kinds, ["quote", "trade", "book", "candle"]);
        let MarketEvent::Trade(t) = &replay.events[1] else {
            panic!()
        };
        assert_eq!(
            (t.price, t.aggressor, t.ts),
            (d("46320"), Side::Buy, 1_641_081_600_500_000_000)
        );
    }

    #[test]
    fn malformed_jsonl_names_line_and_field() {
        let q =
            r#""type":"quote","symbol":"BTC-USDT","ts":1,"bid_size":"1","ask":"2","ask_size":"1""#;
        let cases: Vec<(String, Option<&str>, &str)> = vec![
            (format!(r#"{{{q},"bid":43000.5}}"#), Some("bid"), "not JSON numbers"),
            (format!(r#"{{{q},"bid":"4x"}}"#), Some("bid"), "\"4x\" is not a decimal"),
            (format!(r#"{{{q}}}"#), Some("bid"), "missing"),
            (format!(r#"{{{q},"bid":"1","venue":"okx"}}"#), Some("venue"), "unknown field for a quote"),
            (r#"{"type":"tick","symbol":"X"}"#.to_string(), Some("type"), "\"tick\" is not an event type"),
            (r#"{"type":"trade","symbol":"X","ts":-1,"price":"1","size":"1","side":"buy"}"#.to_string(), Some("ts"), "not a whole number"),
            (r#"{"type":"trade","symbol":"X","ts":1,"price":"1","size":"1","side":"bid"}"#.to_string(), Some("side"), "not a side"),
            (r#"{"type":"trade","symbol":"x","ts":1,"price":"1","size":"1","side":"buy"}"#.to_string(), Some("symbol"), "not a symbol"),
            (r#"{"type":"book","symbol":"X","ts":1,"bids":[["2","1"],["3","1"]],"asks":[]}"#.to_string(), Some("bids"), "out of order"),
            (r#"{"type":"book","symbol":"X","ts":1,"bids":[["2"]],"asks":[]}"#.to_string(), Some("bids"), "not a [price, size] pair"),
            (r#"{"type":"candle","symbol":"X","start":0,"interval":0,"open":"1","high":"1","low":"1","close":"1","volume":"1"}"#.to_string(), Some("interval"), "above 0"),
            ("{\"type\":\"quote\",".to_string(), None, "not JSON"),
            ("[1,2]".to_string(), None, "expected a JSON object"),
        ];
        let good = r#"{"type":"trade","symbol":"X","ts":0,"price":"1","size":"1","side":"sell"}"#;
        for (line, field, reason) in &cases {
            let text = format!("{good}\n{line}\n");
            let err = parse_jsonl("bad.jsonl", text.as_bytes()).unwrap_err();
            assert_eq!(err.line, 2, "{line}: {err}");
            assert_eq!(
                err.place,
                field.map(|f| Place::Field(f.to_string())),
                "{line}: {err}"
            );
            assert!(err.reason.contains(reason), "{line}: {err}");
        }
        let err =
            parse_jsonl("bad.jsonl", format!("{good}\n{}\n", cases[0].0).as_bytes()).unwrap_err();
        assert!(
            err.to_string()
                .starts_with(r#"bad.jsonl:2: field "bid": decimals are written as strings"#),
            "{err}"
        );
    }

    #[test]
    fn jsonl_keeps_a_recorded_crossed_quote_and_flags_it() {
        let text = r#"{"type":"quote","symbol":"X","ts":5,"bid":"2","bid_size":"1","ask":"2","ask_size":"1"}"#;
        let replay = parse_jsonl("c.jsonl", text.as_bytes()).unwrap();
        assert_eq!(replay.events.len(), 1);
        let issue = QualityIssue::CrossedBook {
            symbol: Arc::from("X"),
            bid: d("2"),
            ask: d("2"),
        };
        assert_eq!(replay.issues[0].issue, issue);
        assert_eq!(
            replay.issues[0].to_string(),
            "c.jsonl:1: X: locked book: best bid 2 >= best ask 2"
        );
    }

    #[test]
    fn formats_are_detected_and_files_loaded_from_disk() {
        let dir = tempfile::tempdir().unwrap();
        let bars_path = dir.path().join("eth-usdt-2022.csv.gz");
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        io::Write::write_all(
            &mut gz,
            format!("{BARS}2022-01-01 00:00:00,1,2,0.5,1.5,3\n").as_bytes(),
        )
        .unwrap();
        std::fs::write(&bars_path, gz.finish().unwrap()).unwrap();
        let snap = dir.path().join("snap.csv");
        std::fs::write(&snap, format!("{DEPTH_HEADER}BTCUSDT,1640995200000,100,100,b,snap,10.0,1,-1\nBTCUSDT,1640995200000,100,100,a,snap,10.5,1,-1\n")).unwrap();
        let update = dir.path().join("update.csv");
        std::fs::write(
            &update,
            format!("{DEPTH_HEADER}BTCUSDT,1640995260000,101,101,a,set,10.4,1,100\n"),
        )
        .unwrap();
        let replay = load(&[&bars_path, &snap, &update], &ReplayOptions::default()).unwrap();
        // The bar closes at 00:01, after the snapshot (00:00) and with the update (00:01).
        let seen: Vec<(&str, &str)> = replay
            .events
            .iter()
            .map(|e| (&**e.symbol(), e.kind().as_str()))
            .collect();
        assert_eq!(
            seen,
            [
                ("BTCUSDT", "book"),
                ("BTCUSDT", "quote"),
                ("ETH-USDT", "candle"),
                ("BTCUSDT", "book"),
                ("BTCUSDT", "quote")
            ]
        );
        assert!(replay.issues.is_empty());

        assert_eq!(detect("a.ndjson", b"").unwrap(), Format::Jsonl);
        assert_eq!(
            detect("feed", b"{\"type\":\"trade\"}").unwrap(),
            Format::Jsonl
        );
        let err = detect("notes.txt", b"hello,world\n").unwrap_err();
        assert!(
            err.to_string().starts_with("notes.txt: unknown format"),
            "{err}"
        );
        let err = load(&[dir.path().join("missing.csv")], &ReplayOptions::default()).unwrap_err();
        assert!(matches!(err, ReplayError::Read { .. }), "{err}");
        let broken = dir.path().join("broken.csv.gz");
        std::fs::write(&broken, b"not gzip at all").unwrap();
        let err = load(&[&broken], &ReplayOptions::default()).unwrap_err();
        assert!(err.to_string().contains("not a valid gzip file"), "{err}");
        // Errors name the file as given.
        let bad = dir.path().join("bad.csv");
        std::fs::write(&bad, format!("{BARS}2022-01-01 00:00:00,1,x,0.5,1.5,3\n")).unwrap();
        let err = load(
            &[&bad],
            &ReplayOptions {
                symbol: Some(Arc::from("X")),
                ..Default::default()
            },
        )
        .unwrap_err();
        assert_eq!(
            err.to_string(),
            format!(
                "{}:2: column \"high\": \"x\" is not a decimal",
                bad.display()
            )
        );
    }

    #[test]
    fn time_order_flags_a_symbol_going_back() {
        let mut order = TimeOrder::new();
        let a: Arc<str> = Arc::from("A");
        let b: Arc<str> = Arc::from("B");
        assert_eq!(order.observe(&a, 10), None);
        assert_eq!(order.observe(&a, 10), None);
        assert_eq!(order.observe(&b, 5), None);
        assert_eq!(
            order.observe(&a, 9),
            Some(QualityIssue::NonMonotonicTime {
                symbol: a.clone(),
                previous: 10,
                got: 9
            })
        );
        // The last good time is kept.
        assert!(order.observe(&a, 9).is_some());
        assert_eq!(order.observe(&a, 11), None);
    }

    #[test]
    fn staleness_reports_each_silence_once() {
        let mut s = Staleness::new(Duration::from_secs(5));
        let a: Arc<str> = Arc::from("A");
        let b: Arc<str> = Arc::from("B");
        s.observe(&a, 0);
        s.observe(&b, 3 * SEC);
        assert!(s.check(5 * SEC).is_empty());
        assert_eq!(
            s.check(5 * SEC + 1),
            vec![QualityIssue::Stale {
                symbol: a.clone(),
                last: 0,
                now: 5 * SEC + 1
            }]
        );
        assert!(s.check(6 * SEC).is_empty());
        assert!(s.is_stale("A", 6 * SEC) && !s.is_stale("B", 6 * SEC) && !s.is_stale("C", 6 * SEC));
        assert_eq!(s.check(9 * SEC).len(), 1);
        s.observe(&a, 10 * SEC);
        assert!(!s.is_stale("A", 10 * SEC));
        let issues = s.check(16 * SEC);
        assert_eq!(
            issues,
            vec![QualityIssue::Stale {
                symbol: a.clone(),
                last: 10 * SEC,
                now: 16 * SEC
            }]
        );
        assert_eq!(
            describe(&issues[0]),
            "A: stale: no data for 6 s (last at 1970-01-01T00:00:10.000000000Z)"
        );
        assert!(s.check(100 * SEC).is_empty());
    }
}
