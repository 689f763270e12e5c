//! The Binance depth CSV format: rows into an [`L2Book`], replayed as Book and Quote events
//! with sequence gaps and crossed books flagged.

use super::results::{RecordError, Replay};
use super::text::utf8;
use super::text::{Layout, Symbols, lines, parse_decimal, parse_int, record_error};
use super::timeline::Collector;
use super::{MAX_BOOK_DEPTH, NANOS_PER_MILLI};
use crate::types::{BookLevel, MarketEvent, QualityIssue, Quote, Side, Timestamp, ValueRule};
use colony_risk::book::L2Book;
use rust_decimal::Decimal;
use std::collections::HashMap;
use std::sync::Arc;

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
            size: row.value("qty", parse_decimal)?,
            prev_update_id: row.value("pu", parse_int)?,
        });
    }
    Ok(rows)
}

impl DepthRow {
    /// A price that is not positive or a negative quantity (0 is fine: it removes a level),
    /// as the [`QualityIssue::BadValue`] that skips the row.
    pub fn bad_value(&self) -> Option<QualityIssue> {
        [
            ("price", self.price, ValueRule::Positive),
            ("qty", self.size, ValueRule::NotNegative),
        ]
        .into_iter()
        .find(|(_, value, rule)| !rule.admits(*value))
        .map(|(field, value, rule)| QualityIssue::BadValue {
            symbol: self.symbol.clone(),
            field: field.to_string(),
            value,
            rule,
        })
    }
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
/// A row with a price that is not positive or a negative quantity is flagged as
/// [`QualityIssue::BadValue`] and left out of its event.
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
        // A row with a price that is not positive or a negative quantity is reported with its
        // line and left out; the rest of its event is applied.
        for row in event {
            if let Some(issue) = row.bad_value() {
                out.flag(row.line, row.ts, issue);
            }
        }
        let usable = |row: &&DepthRow| row.bad_value().is_none();
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
                    .filter(usable)
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
            for row in event.iter().filter(usable) {
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
