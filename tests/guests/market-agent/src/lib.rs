//! An agent that drives the market-data interface for the market tests. Its configuration
//! (JSON, from the host's `[agents.NAME]`, all values strings) says what it subscribes to at
//! init and how it trades: `{"symbol": "BTC-PERP", "kinds": "candle", "fast": "30",
//! "slow": "120", "clock": "true"}`. `kinds` is a comma-separated list of
//! `quote`, `trade`, `book`, `candle` or `all`; no `symbol`: no subscription. A failed
//! subscription fails `init`.
//!
//! On each `on-market` event it keeps running aggregates in memory, not a line per event
//! (45,031 appends to one state value would write O(n²) bytes): the count per kind, the
//! first and last event as a line (`candle|SYM|start|interval|open|high|low|close|volume`,
//! `quote|SYM|ts|bid|bid_size|ask|ask_size`, `trade|SYM|ts|price|size|side`,
//! `book|SYM|ts|bids|asks` with levels `price@size` joined by `,`), and for candles the
//! highest high, lowest low and the sum of volumes, all exact (i128 at scale 18, printed as
//! plain decimals without trailing zeros). It writes them to state `received` on the
//! `summary` command.
//!
//! The strategy: on each candle, a `fast`/`slow` simple moving average crossover of the
//! closes in exact integer arithmetic (no division: `fast_sum × slow` against
//! `slow_sum × fast`). When the sign of the difference changes, it appends `END,SIDE,CLOSE`
//! to its journal (`END` the bar's end in ns, `SIDE` `buy` when the fast average went above
//! the slow one, else `sell`), plus `,WALL` (the WASI wall clock, `SystemTime::now()`, in ns)
//! when `clock` is `true`, and writes the whole journal to state `journal`.
//!
//! Messages on its inbox are commands; each stores its answer (or `err:KIND: MESSAGE`) in a
//! state key named after it:
//! - `summary` → `received` (above);
//! - `quote:SYM` → `quote` = `SYM|ts|bid|bid_size|ask|ask_size`;
//! - `book:SYM:DEPTH` → `book` = `SYM|ts|bids|asks`;
//! - `candles:SYM:INTERVAL:LIMIT` → `candles`, one line per bar
//!   `start|interval|open|high|low|close|volume`;
//! - `status:SYM` → `status` = `SYM|venue|last_update|stale|issues`;
//! - `symbols` → `symbols`, comma-separated;
//! - `subscribe:SYM:KINDS` → `subscribe` = `ok:ID`; `unsubscribe:ID` → `unsubscribe` = `ok`.

use std::cell::RefCell;
use std::collections::VecDeque;
use std::time::{SystemTime, UNIX_EPOCH};

use colony::plugin::market_data::{self, Kinds};
use colony::plugin::state;
use colony::plugin::types::{Book, BookLevel, Candle, Decimal, Quote, Side, Trade};
use exports::colony::plugin::handler::{Error, Guest, MarketEvent, Message, OrderEvent, Timestamp};

wit_bindgen::generate!({ path: "../../../wit", world: "agent" });

/// The fixed scale of the in-memory arithmetic: every decimal the feed sends fits it.
const SCALE: u32 = 18;

struct Agent;

struct Config {
    fast: usize,
    slow: usize,
    clock: bool,
}

#[derive(Default)]
struct Stats {
    count: u64,
    quotes: u64,
    trades: u64,
    books: u64,
    candles: u64,
    first: Option<String>,
    last: Option<String>,
    /// (value at SCALE, as received) of the highest high and lowest low.
    max_high: Option<(i128, String)>,
    min_low: Option<(i128, String)>,
    sum_volume: i128,
}

#[derive(Default)]
struct Strategy {
    closes: VecDeque<i128>,
    fast_sum: i128,
    slow_sum: i128,
    /// The sign of fast − slow at the last bar where it was not zero.
    sign: i8,
    journal: String,
    crossings: u64,
}

thread_local! {
    static CONFIG: RefCell<Config> = const { RefCell::new(Config { fast: 30, slow: 120, clock: false }) };
    static STATS: RefCell<Stats> = RefCell::new(Stats::default());
    static STRATEGY: RefCell<Strategy> = RefCell::new(Strategy::default());
}

/// A tiny reader for the flat JSON config: a string value by key.
fn string(config: &str, key: &str) -> Option<String> {
    let start = config.find(&format!("\"{key}\""))?;
    let rest = &config[start + key.len() + 2..];
    let open = rest.find('"')?;
    let close = rest[open + 1..].find('"')?;
    Some(rest[open + 1..open + 1 + close].to_string())
}

fn number(config: &str, key: &str, default: u64) -> Result<u64, Error> {
    match string(config, key) {
        None => Ok(default),
        Some(s) => s
            .parse()
            .map_err(|_| Error::InvalidArgument(format!("config {key}: {s:?} is not a number"))),
    }
}

fn kinds(text: &str) -> Result<Kinds, Error> {
    let mut kinds = Kinds::empty();
    for k in text.split(',').map(str::trim).filter(|k| !k.is_empty()) {
        kinds |= match k {
            "quote" => Kinds::QUOTE,
            "trade" => Kinds::TRADE,
            "book" => Kinds::BOOK,
            "candle" => Kinds::CANDLE,
            "all" => Kinds::all(),
            other => return Err(Error::InvalidArgument(format!("unknown kind {other:?}"))),
        };
    }
    Ok(kinds)
}

fn describe(e: &Error) -> String {
    match e {
        Error::Denied(m) => format!("denied: {m}"),
        Error::LimitExceeded(m) => format!("limit-exceeded: {m}"),
        Error::InvalidArgument(m) => format!("invalid-argument: {m}"),
        Error::NotFound(m) => format!("not-found: {m}"),
        Error::Unavailable(m) => format!("unavailable: {m}"),
        Error::Timeout => "timeout".into(),
    }
}

/// `mantissa × 10^-scale` in plain notation without trailing zeros (`46319`, `0.5`, `-3.25`).
fn plain(mut mantissa: i128, mut scale: u32) -> String {
    while scale > 0 && mantissa % 10 == 0 {
        mantissa /= 10;
        scale -= 1;
    }
    let digits = mantissa.unsigned_abs().to_string();
    let sign = if mantissa < 0 { "-" } else { "" };
    let scale = scale as usize;
    if scale == 0 {
        format!("{sign}{digits}")
    } else if digits.len() > scale {
        let (int, frac) = digits.split_at(digits.len() - scale);
        format!("{sign}{int}.{frac}")
    } else {
        format!("{sign}0.{digits:0>scale$}")
    }
}

fn dec(d: &Decimal) -> String {
    plain(i128::from(d.mantissa), u32::from(d.scale))
}

/// The value at [`SCALE`].
fn fixed(d: &Decimal) -> Result<i128, Error> {
    let scale = u32::from(d.scale);
    if scale > SCALE {
        return Err(Error::InvalidArgument(format!(
            "scale {scale} is over {SCALE}"
        )));
    }
    i128::from(d.mantissa)
        .checked_mul(10i128.pow(SCALE - scale))
        .ok_or_else(|| Error::InvalidArgument("decimal overflows".into()))
}

fn levels(levels: &[BookLevel]) -> String {
    levels
        .iter()
        .map(|l| format!("{}@{}", dec(&l.price), dec(&l.size)))
        .collect::<Vec<_>>()
        .join(",")
}

fn quote_line(q: &Quote) -> String {
    format!(
        "{}|{}|{}|{}|{}|{}",
        q.symbol,
        q.ts,
        dec(&q.bid),
        dec(&q.bid_size),
        dec(&q.ask),
        dec(&q.ask_size)
    )
}

fn book_line(b: &Book) -> String {
    format!(
        "{}|{}|{}|{}",
        b.symbol,
        b.ts,
        levels(&b.bids),
        levels(&b.asks)
    )
}

fn bar_line(c: &Candle) -> String {
    format!(
        "{}|{}|{}|{}|{}|{}|{}",
        c.start,
        c.interval_secs,
        dec(&c.open),
        dec(&c.high),
        dec(&c.low),
        dec(&c.close),
        dec(&c.volume)
    )
}

fn trade_line(t: &Trade) -> String {
    let side = match t.aggressor {
        Side::Buy => "buy",
        Side::Sell => "sell",
    };
    format!(
        "{}|{}|{}|{}|{side}",
        t.symbol,
        t.ts,
        dec(&t.price),
        dec(&t.size)
    )
}

fn event_line(event: &MarketEvent) -> String {
    match event {
        MarketEvent::Quote(q) => format!("quote|{}", quote_line(q)),
        MarketEvent::Trade(t) => format!("trade|{}", trade_line(t)),
        MarketEvent::Book(b) => format!("book|{}", book_line(b)),
        MarketEvent::Candle(c) => format!("candle|{}|{}", c.symbol, bar_line(c)),
    }
}

fn summary() -> String {
    let crossings = STRATEGY.with_borrow(|s| s.crossings);
    STATS.with_borrow(|s| {
        let opt = |v: &Option<(i128, String)>| v.as_ref().map(|(_, t)| t.clone()).unwrap_or_default();
        format!(
            "count={}\nquote={} trade={} book={} candle={}\nfirst={}\nlast={}\nmax_high={}\nmin_low={}\nsum_volume={}\ncrossings={crossings}\n",
            s.count,
            s.quotes,
            s.trades,
            s.books,
            s.candles,
            s.first.as_deref().unwrap_or(""),
            s.last.as_deref().unwrap_or(""),
            opt(&s.max_high),
            opt(&s.min_low),
            plain(s.sum_volume, SCALE),
        )
    })
}

fn wall_ns() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos())
}

/// Folds one candle into the aggregates.
fn aggregate(c: &Candle) -> Result<(), Error> {
    let (high, low, volume) = (fixed(&c.high)?, fixed(&c.low)?, fixed(&c.volume)?);
    STATS.with_borrow_mut(|s| {
        if s.max_high.as_ref().is_none_or(|(h, _)| high > *h) {
            s.max_high = Some((high, dec(&c.high)));
        }
        if s.min_low.as_ref().is_none_or(|(l, _)| low < *l) {
            s.min_low = Some((low, dec(&c.low)));
        }
        s.sum_volume = s
            .sum_volume
            .checked_add(volume)
            .ok_or_else(|| Error::InvalidArgument("volume sum overflows".into()))?;
        Ok(())
    })
}

/// One step of the moving-average crossover; writes the journal when it crosses.
fn trade_on(c: &Candle) -> Result<(), Error> {
    let close = fixed(&c.close)?;
    let (fast, slow, clock) = CONFIG.with_borrow(|c| (c.fast, c.slow, c.clock));
    let line = STRATEGY.with_borrow_mut(|s| {
        s.closes.push_back(close);
        s.fast_sum += close;
        if s.closes.len() > fast {
            s.fast_sum -= s.closes[s.closes.len() - 1 - fast];
        }
        s.slow_sum += close;
        if s.closes.len() > slow {
            s.slow_sum -= s.closes.pop_front().unwrap_or(0);
        }
        if s.closes.len() < slow {
            return None;
        }
        // fast_sum / fast against slow_sum / slow, without dividing.
        let diff = s.fast_sum * slow as i128 - s.slow_sum * fast as i128;
        let sign = diff.signum() as i8;
        if sign == 0 {
            return None;
        }
        let crossed = s.sign != 0 && sign != s.sign;
        s.sign = sign;
        if !crossed {
            return None;
        }
        s.crossings += 1;
        let end = c.start + u64::from(c.interval_secs) * 1_000_000_000;
        let side = if sign > 0 { "buy" } else { "sell" };
        let mut line = format!("{end},{side},{}", dec(&c.close));
        if clock {
            line.push_str(&format!(",{}", wall_ns()));
        }
        s.journal.push_str(&line);
        s.journal.push('\n');
        Some(s.journal.clone())
    });
    match line {
        Some(journal) => state::set("journal", journal.as_bytes()),
        None => Ok(()),
    }
}

fn answer(key: &str, outcome: Result<String, Error>) -> Result<(), Error> {
    let text = outcome.unwrap_or_else(|e| format!("err:{}", describe(&e)));
    state::set(key, text.as_bytes())
}

fn parse<T: std::str::FromStr>(text: &str) -> Result<T, Error> {
    text.parse()
        .map_err(|_| Error::InvalidArgument(format!("{text:?} is not a number")))
}

fn command(text: &str) -> Result<(), Error> {
    let parts: Vec<&str> = text.split(':').collect();
    match parts.as_slice() {
        ["summary"] => state::set("received", summary().as_bytes()),
        ["quote", sym] => answer("quote", market_data::quote(sym).map(|q| quote_line(&q))),
        ["book", sym, depth] => answer(
            "book",
            market_data::book(sym, parse(depth)?).map(|b| book_line(&b)),
        ),
        ["candles", sym, interval, limit] => answer(
            "candles",
            market_data::candles(sym, parse(interval)?, parse(limit)?).map(|bars| {
                bars.iter()
                    .map(|b| format!("{}\n", bar_line(b)))
                    .collect::<String>()
            }),
        ),
        ["status", sym] => answer(
            "status",
            market_data::status(sym).map(|s| {
                format!(
                    "{}|{}|{}|{}|{}",
                    s.symbol, s.venue, s.last_update, s.stale, s.issues
                )
            }),
        ),
        ["symbols"] => answer("symbols", Ok(market_data::symbols().join(","))),
        ["subscribe", sym, k] => answer(
            "subscribe",
            kinds(k)
                .and_then(|k| market_data::subscribe(sym, k))
                .map(|id| format!("ok:{id}")),
        ),
        ["unsubscribe", id] => answer(
            "unsubscribe",
            market_data::unsubscribe(parse(id)?).map(|()| "ok".to_string()),
        ),
        _ => Err(Error::InvalidArgument(format!("unknown command {text:?}"))),
    }
}

impl Guest for Agent {
    fn init(config: String) -> Result<(), Error> {
        let fast = number(&config, "fast", 30)?;
        let slow = number(&config, "slow", 120)?;
        if fast == 0 || slow <= fast {
            return Err(Error::InvalidArgument(
                "config: need 0 < fast < slow".into(),
            ));
        }
        let clock = string(&config, "clock").as_deref() == Some("true");
        CONFIG.set(Config {
            fast: fast as usize,
            slow: slow as usize,
            clock,
        });
        if let Some(symbol) = string(&config, "symbol") {
            let k = kinds(string(&config, "kinds").as_deref().unwrap_or("all"))?;
            market_data::subscribe(&symbol, k)?;
        }
        Ok(())
    }

    fn on_message(msg: Message) -> Result<(), Error> {
        command(&String::from_utf8_lossy(&msg.payload))
    }

    fn on_market(event: MarketEvent) -> Result<(), Error> {
        let line = event_line(&event);
        STATS.with_borrow_mut(|s| {
            s.count += 1;
            match &event {
                MarketEvent::Quote(_) => s.quotes += 1,
                MarketEvent::Trade(_) => s.trades += 1,
                MarketEvent::Book(_) => s.books += 1,
                MarketEvent::Candle(_) => s.candles += 1,
            }
            if s.first.is_none() {
                s.first = Some(line.clone());
            }
            s.last = Some(line);
        });
        if let MarketEvent::Candle(c) = &event {
            aggregate(c)?;
            trade_on(c)?;
        }
        Ok(())
    }

    fn on_order(_event: OrderEvent) -> Result<(), Error> {
        Ok(())
    }

    fn on_timer(_now: Timestamp) -> Result<(), Error> {
        Ok(())
    }

    fn snapshot() -> Vec<u8> {
        Vec::new()
    }

    fn restore(_snapshot: Vec<u8>) -> Result<(), Error> {
        Ok(())
    }
}

export!(Agent);
