//! An agent that drives the `orders` interface for the order tests. Messages on its inbox are
//! commands (space-separated); each stores its answer in a state key:
//! - `place CID SYMBOL SIDE TYPE PRICE QTY [TIF] [post] [reduce]` (`PRICE` `-` for none, `TIF`
//!   `gtc`/`ioc`/`fok`) → `ack.CID` = `submitted`, `pending`, `rejected CODE DETAIL`, or
//!   `err KIND MESSAGE`;
//! - `cancel CID` → `cancel.CID` = `ok` or `err KIND MESSAGE`;
//! - `open` → `open`, one line per working order: `CID SYMBOL SIDE QTY FILLED STATUS`;
//! - `position SYM` → `position.SYM` = `QTY AVG REALISED UNREALISED FEES`;
//! - `balances` → `balances`, one line per currency: `CUR TOTAL`;
//! - `burst N SYMBOL PRICE QTY [keep]` → `burst`: in this one event, N limit buys (`PRE0`, …,
//!   `PRE` the state key `burst-prefix`, default `b`) each cancelled at once when submitted
//!   (unless `keep`); the outcomes counted, `outcome=count` joined by `, ` (`place submitted`,
//!   `place rejected CODE`, `place err KIND`, `cancel ok`, `cancel err KIND`);
//! - `cancel-open` → `cancel-open`: every working order cancelled in this one event, the
//!   outcomes counted as for `burst`.
//!
//! Every `on-order` event is appended to state `events` as a line
//! `CID STATUS FILLED AVG FILL REASON` (`FILL` is `QTY@PRICE/FEE` or `-`; `AVG`, `REASON` `-`
//! when absent). Config `{"market": "SYMBOL"}` subscribes to the symbol's candles and, with
//! `"buy_on_candle": "QTY"`, places a market buy of QTY on every candle (ids `c1`, `c2`, …).
//!
//! For the recovery tests: with `"trap_on_order": "CID"` the first `on-order` event of CID
//! traps (state `trapped.CID` marks it, so the next instance handles it); with
//! `"always_trap_on_order": "CID"` every one does. The host's recovery notice
//! (`agent.NAME.recovery`) is stored as state `recovery`, its headers `name=value` a line.

use std::cell::RefCell;

use colony::plugin::market_data::{self, Kinds};
use colony::plugin::orders::{self, AckStatus, OrderRequest, OrderType, TimeInForce};
use colony::plugin::state;
use colony::plugin::types::{Decimal, OrderStatus, Side};
use exports::colony::plugin::handler::{Error, Guest, MarketEvent, Message, OrderEvent, Timestamp};

wit_bindgen::generate!({ path: "../../../wit", world: "agent" });

struct Agent;

#[derive(Default)]
struct Memory {
    events: String,
    buy_on_candle: Option<Decimal>,
    market: String,
    candles: u64,
    trap_on: Option<String>,
    always_trap_on: Option<String>,
}

thread_local! {
    static MEMORY: RefCell<Memory> = RefCell::new(Memory::default());
}

fn describe(e: &Error) -> String {
    match e {
        Error::Denied(m) => format!("denied {m}"),
        Error::LimitExceeded(m) => format!("limit-exceeded {m}"),
        Error::InvalidArgument(m) => format!("invalid-argument {m}"),
        Error::NotFound(m) => format!("not-found {m}"),
        Error::Unavailable(m) => format!("unavailable {m}"),
        Error::Timeout => "timeout".into(),
    }
}

/// `123.45` → mantissa 12345, scale 2.
fn parse_decimal(s: &str) -> Option<Decimal> {
    let (neg, s) = match s.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, s),
    };
    let (int, frac) = s.split_once('.').unwrap_or((s, ""));
    let digits = format!("{int}{frac}");
    let mantissa: i64 = digits.parse().ok()?;
    Some(Decimal {
        mantissa: if neg { -mantissa } else { mantissa },
        scale: u8::try_from(frac.len()).ok()?,
    })
}

fn show(d: &Decimal) -> String {
    let digits = d.mantissa.unsigned_abs().to_string();
    let scale = usize::from(d.scale);
    let sign = if d.mantissa < 0 { "-" } else { "" };
    if scale == 0 {
        return format!("{sign}{digits}");
    }
    let padded = format!("{digits:0>width$}", width = scale + 1);
    let (int, frac) = padded.split_at(padded.len() - scale);
    let frac = frac.trim_end_matches('0');
    if frac.is_empty() {
        format!("{sign}{int}")
    } else {
        format!("{sign}{int}.{frac}")
    }
}

fn status(s: OrderStatus) -> &'static str {
    match s {
        OrderStatus::Accepted => "accepted",
        OrderStatus::PartiallyFilled => "partially-filled",
        OrderStatus::Filled => "filled",
        OrderStatus::Cancelled => "cancelled",
        OrderStatus::Rejected => "rejected",
        OrderStatus::Expired => "expired",
    }
}

fn side_str(s: Side) -> &'static str {
    match s {
        Side::Buy => "buy",
        Side::Sell => "sell",
    }
}

fn place(words: &[&str]) -> Result<(), Error> {
    let bad = || Error::InvalidArgument(format!("bad place command {words:?}"));
    let [cid, symbol, side, kind, price, qty, rest @ ..] = words else {
        return Err(bad());
    };
    let mut tif = TimeInForce::Gtc;
    let (mut post_only, mut reduce_only) = (false, false);
    for w in rest {
        match *w {
            "gtc" => tif = TimeInForce::Gtc,
            "ioc" => tif = TimeInForce::Ioc,
            "fok" => tif = TimeInForce::Fok,
            "post" => post_only = true,
            "reduce" => reduce_only = true,
            _ => return Err(bad()),
        }
    }
    let order = OrderRequest {
        client_id: cid.to_string(),
        symbol: symbol.to_string(),
        side: if *side == "sell" { Side::Sell } else { Side::Buy },
        order_type: if *kind == "market" {
            OrderType::Market
        } else {
            OrderType::Limit
        },
        price: if *price == "-" {
            None
        } else {
            Some(parse_decimal(price).ok_or_else(bad)?)
        },
        qty: parse_decimal(qty).ok_or_else(bad)?,
        time_in_force: tif,
        post_only,
        reduce_only,
    };
    let answer = match orders::place(&order) {
        Ok(ack) => match ack.status {
            AckStatus::Submitted => "submitted".to_string(),
            AckStatus::PendingApproval => "pending".to_string(),
            AckStatus::Rejected => format!(
                "rejected {} {}",
                ack.reject_reason.unwrap_or_default(),
                ack.detail
            ),
        },
        Err(e) => format!("err {}", describe(&e)),
    };
    state::set(&format!("ack.{cid}"), answer.as_bytes())
}

fn command(text: &str) -> Result<(), Error> {
    let words: Vec<&str> = text.split_whitespace().collect();
    match words.as_slice() {
        ["place", rest @ ..] => place(rest),
        ["cancel", cid] => {
            let answer = match orders::cancel(cid) {
                Ok(()) => "ok".to_string(),
                Err(e) => format!("err {}", describe(&e)),
            };
            state::set(&format!("cancel.{cid}"), answer.as_bytes())
        }
        ["open"] => {
            let lines: Vec<String> = orders::open_orders()
                .iter()
                .map(|o| {
                    format!(
                        "{} {} {} {} {} {}",
                        o.client_id,
                        o.symbol,
                        side_str(o.side),
                        show(&o.qty),
                        show(&o.filled_qty),
                        status(o.status)
                    )
                })
                .collect();
            state::set("open", lines.join("\n").as_bytes())
        }
        ["position", symbol] => {
            let answer = match orders::position(symbol) {
                Ok(p) => format!(
                    "{} {} {} {} {}",
                    show(&p.qty),
                    show(&p.avg_price),
                    show(&p.realised_pnl),
                    show(&p.unrealised_pnl),
                    show(&p.fees)
                ),
                Err(e) => format!("err {}", describe(&e)),
            };
            state::set(&format!("position.{symbol}"), answer.as_bytes())
        }
        ["cancel-open"] => {
            let mut counts = std::collections::BTreeMap::<String, u32>::new();
            for o in orders::open_orders() {
                let k = match orders::cancel(&o.client_id) {
                    Ok(()) => "cancel ok".to_string(),
                    Err(e) => format!("cancel err {}", describe(&e).split(' ').next().unwrap_or("")),
                };
                *counts.entry(k).or_default() += 1;
            }
            let text: Vec<String> = counts.iter().map(|(k, v)| format!("{k}={v}")).collect();
            state::set("cancel-open", text.join(", ").as_bytes())
        }
        ["burst", n, symbol, price, qty, rest @ ..] => {
            let bad = || Error::InvalidArgument(format!("bad burst command {text:?}"));
            let n: u32 = n.parse().map_err(|_| bad())?;
            let keep = match rest {
                [] => false,
                ["keep"] => true,
                _ => return Err(bad()),
            };
            let prefix = state::get("burst-prefix")
                .ok()
                .flatten()
                .map(|v| String::from_utf8_lossy(&v).into_owned())
                .unwrap_or_else(|| "b".into());
            // The next burst's ids do not collide with this one's.
            state::set("burst-prefix", format!("{prefix}x").as_bytes())?;
            let mut counts = std::collections::BTreeMap::<String, u32>::new();
            let mut count = |k: String| *counts.entry(k).or_default() += 1;
            for i in 0..n {
                let cid = format!("{prefix}{i}");
                let order = OrderRequest {
                    client_id: cid.clone(),
                    symbol: symbol.to_string(),
                    side: Side::Buy,
                    order_type: OrderType::Limit,
                    price: Some(parse_decimal(price).ok_or_else(bad)?),
                    qty: parse_decimal(qty).ok_or_else(bad)?,
                    time_in_force: TimeInForce::Gtc,
                    post_only: false,
                    reduce_only: false,
                };
                let submitted = match orders::place(&order) {
                    Ok(ack) => match ack.status {
                        AckStatus::Submitted => {
                            count("place submitted".into());
                            true
                        }
                        AckStatus::PendingApproval => {
                            count("place pending".into());
                            false
                        }
                        AckStatus::Rejected => {
                            count(format!(
                                "place rejected {}",
                                ack.reject_reason.unwrap_or_default()
                            ));
                            false
                        }
                    },
                    Err(e) => {
                        let kind = describe(&e);
                        count(format!("place err {}", kind.split(' ').next().unwrap_or("")));
                        false
                    }
                };
                if submitted && !keep {
                    match orders::cancel(&cid) {
                        Ok(()) => count("cancel ok".into()),
                        Err(e) => {
                            let kind = describe(&e);
                            count(format!("cancel err {}", kind.split(' ').next().unwrap_or("")));
                        }
                    }
                }
            }
            let text: Vec<String> = counts.iter().map(|(k, v)| format!("{k}={v}")).collect();
            state::set("burst", text.join(", ").as_bytes())
        }
        ["balances"] => {
            let lines: Vec<String> = orders::balances()
                .iter()
                .map(|b| format!("{} {}", b.currency, show(&b.total)))
                .collect();
            state::set("balances", lines.join("\n").as_bytes())
        }
        _ => Err(Error::InvalidArgument(format!("unknown command {text:?}"))),
    }
}

/// The value of `"key": "value"` in a flat JSON object of strings.
fn string(config: &str, key: &str) -> Option<String> {
    let needle = format!("\"{key}\":");
    let rest = config[config.find(&needle)? + needle.len()..].trim_start();
    let rest = rest.strip_prefix('"')?;
    Some(rest[..rest.find('"')?].to_string())
}

impl Guest for Agent {
    fn init(config: String) -> Result<(), Error> {
        MEMORY.with_borrow_mut(|m| {
            m.trap_on = string(&config, "trap_on_order");
            m.always_trap_on = string(&config, "always_trap_on_order");
        });
        if let Some(symbol) = string(&config, "market") {
            market_data::subscribe(&symbol, Kinds::CANDLE)?;
            MEMORY.with_borrow_mut(|m| {
                m.market = symbol;
                m.buy_on_candle = string(&config, "buy_on_candle").and_then(|q| parse_decimal(&q));
            });
        }
        Ok(())
    }

    fn on_message(msg: Message) -> Result<(), Error> {
        if msg.sender == "host" && msg.subject.ends_with(".recovery") {
            let lines: Vec<String> = msg.headers.iter().map(|(n, v)| format!("{n}={v}")).collect();
            return state::set("recovery", lines.join("\n").as_bytes());
        }
        command(&String::from_utf8_lossy(&msg.payload))
    }

    fn on_market(_event: MarketEvent) -> Result<(), Error> {
        let next = MEMORY.with_borrow_mut(|m| {
            m.candles += 1;
            m.buy_on_candle.map(|q| (m.candles, m.market.clone(), q))
        });
        if let Some((n, symbol, qty)) = next {
            let order = OrderRequest {
                client_id: format!("c{n}"),
                symbol,
                side: Side::Buy,
                order_type: OrderType::Market,
                price: None,
                qty,
                time_in_force: TimeInForce::Ioc,
                post_only: false,
                reduce_only: false,
            };
            orders::place(&order)?;
        }
        Ok(())
    }

    fn on_order(event: OrderEvent) -> Result<(), Error> {
        let (once, always) = MEMORY.with_borrow(|m| (m.trap_on.clone(), m.always_trap_on.clone()));
        if always.as_deref() == Some(event.client_id.as_str()) {
            unreachable!("always traps on {}", event.client_id);
        }
        if once.as_deref() == Some(event.client_id.as_str()) {
            let mark = format!("trapped.{}", event.client_id);
            if state::get(&mark)?.is_none() {
                state::set(&mark, b"1")?;
                unreachable!("traps once on {}", event.client_id);
            }
        }
        let fill = match &event.last_fill {
            Some(f) => format!("{}@{}/{}", show(&f.qty), show(&f.price), show(&f.fee)),
            None => "-".into(),
        };
        let line = format!(
            "{} {} {} {} {} {}\n",
            event.client_id,
            status(event.status),
            show(&event.filled_qty),
            event.avg_price.as_ref().map_or("-".into(), show),
            fill,
            event.reject_reason.as_deref().unwrap_or("-"),
        );
        let all = MEMORY.with_borrow_mut(|m| {
            m.events.push_str(&line);
            m.events.clone()
        });
        state::set("events", all.as_bytes())
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
