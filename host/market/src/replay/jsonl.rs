//! The JSONL format, one event object per line: the strict reader and the writer.

use super::MAX_BOOK_DEPTH;
use super::results::{Place, RecordError, Replay, known_at};
use super::text::utf8;
use super::text::{Symbols, lines, parse_decimal, record_error};
use super::timeline::Collector;
use super::utc::parse_utc;
use crate::types::{
    Book, BookLevel, Candle, MarketEvent, QualityIssue, Quote, Side, Timestamp, Trade,
};
use rust_decimal::Decimal;
use serde_json::{Map, Value};
use std::io;
use std::sync::Arc;

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
/// flagged as [`QualityIssue::CrossedBook`]. A record with a price that is not positive or a
/// size that breaks its rule ([`MarketEvent::bad_value`]) is skipped and flagged as
/// [`QualityIssue::BadValue`] with its line.
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
                    bid_size: o.decimal("bid_size")?,
                    ask: o.decimal("ask")?,
                    ask_size: o.decimal("ask_size")?,
                    ts: o.time("ts")?,
                };
                crossed = (quote.bid >= quote.ask).then_some((quote.bid, quote.ask));
                MarketEvent::Quote(quote)
            }
            "trade" => MarketEvent::Trade(Trade {
                symbol,
                ts: o.time("ts")?,
                price: o.decimal("price")?,
                size: o.decimal("size")?,
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
                    volume: o.decimal("volume")?,
                };
                MarketEvent::Candle(candle)
            }
        };
        // Not a price anything may use: reported with its line, never published (checked
        // before a bar's range, so a negative low is this issue rather than a shape error).
        if let Some(issue) = event.bad_value() {
            out.flag(line, known_at(&event), issue);
            continue;
        }
        if let MarketEvent::Candle(candle) = &event {
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
        }
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
