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
//! back), a Binance sequence gap ([`QualityIssue::SequenceGap`]), a crossed book
//! ([`QualityIssue::CrossedBook`]; no quote is derived from it) and a price that is not
//! positive or a size that breaks its rule ([`QualityIssue::BadValue`], rules in
//! [`MarketEvent::bad_value`]; the record is skipped, so no agent or risk check ever sees the
//! value). [`TimeOrder`] and [`Staleness`] make the same checks for live feeds.
//!
//! Limits: an input file (after decompression) is at most [`MAX_INPUT_BYTES`]; Book events carry
//! at most [`MAX_BOOK_DEPTH`] levels per side. The whole replay is parsed up front, so a bad line
//! anywhere is found before the first event is published.

#[cfg(doc)]
use crate::types::{Book, Candle, MarketEvent, QualityIssue, Quote};
#[cfg(doc)]
use colony_risk::book::L2Book;
#[cfg(doc)]
use rust_decimal::Decimal;

/// Largest input file, after decompression (1 GiB).
pub(crate) const MAX_INPUT_BYTES: u64 = 1 << 30;

/// Book levels per side in the Book events of a depth replay, unless told otherwise.
pub(crate) const DEFAULT_BOOK_DEPTH: usize = 20;

/// Most book levels per side a Book event carries.
pub(crate) const MAX_BOOK_DEPTH: usize = 1_000;

pub use colony_model::symbol::MAX_SYMBOL_LEN;

const NANOS_PER_SEC: u64 = 1_000_000_000;
const NANOS_PER_MILLI: u64 = 1_000_000;

mod bars;
mod depth;
mod embedded;
mod jsonl;
mod load;
mod quality;
mod results;
mod text;
mod timeline;
mod utc;

pub use bars::parse_bars;
pub use depth::{DepthRow, parse_depth_rows, replay_depth};
pub use embedded::{EMBEDDED_BARS_SYMBOL, embedded_bars, embedded_depth};
pub use jsonl::{parse_jsonl, to_jsonl, write_jsonl};
pub use load::{detect, load, parse};
pub use quality::{Staleness, TimeOrder};
pub use results::{
    Flagged, Format, Place, RecordError, Replay, ReplayError, ReplayOptions, describe, known_at,
};
pub use text::{check_symbol, parse_decimal};
pub use utc::{format_utc, parse_utc};

#[cfg(test)]
mod tests;
