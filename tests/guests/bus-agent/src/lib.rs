//! An agent that drives the messaging interface for the bus tests. Its configuration (JSON,
//! from the host's `[agents.NAME]`) says what it subscribes to at init and how it behaves:
//! `{"subscribe": ["pattern", ...], "answer": "text", "trap_on_message": false,
//! "quiet": false, "spin": "0"}` (`quiet`: do not record what arrives; `spin`: busy
//! iterations per message, as a string).
//!
//! Messages on its inbox `agent.<name>.inbox` are commands from the test:
//! - `pub:SUBJECT:TEXT` publishes; `flood:SUBJECT:N` publishes N messages as fast as it can
//!   and records how many were refused in state `refused`;
//! - `req:SUBJECT:TIMEOUT_MS` requests and stores the reply payload (or the error) in state
//!   `reply`; `gather:SUBJECT:QUORUM:TIMEOUT_MS` stores the reply count and payloads in
//!   `gathered`.
//!
//! - `req:SUBJECT:TIMEOUT_MS:BODY` is `req` with the payload `BODY` (`ask` without it);
//! - `pubh:SUBJECT:COUNT:VALUE_BYTES:NAME:PAYLOAD_BYTES` publishes with COUNT headers (named
//!   NAME, or NAME-0… when COUNT > 1) of VALUE_BYTES bytes each and a payload of PAYLOAD_BYTES,
//!   storing `ok` or the error in state `pubh`; `sub:PATTERN` subscribes, storing `ok` or the
//!   error in state `sub`;
//! - `timer:NAME:AFTER_MS:PERIOD_MS` sets a timer (`timers::set`), `untimer:NAME` cancels it;
//!   each `on-timer` appends its `now` to state `timers`, one per line;
//! - `ping` (a request) is answered `pong:N`, N counting pings in memory: the count survives a
//!   sleep through `snapshot`/`restore`, not a restart.
//!
//! Any other message is appended to state `received` as a line `subject|sender|payload`, and
//! answered with the configured `answer` when it carries a `reply-to`.
//!
//! With `"hijack": true` in its configuration it is a hostile observer: every message with a
//! `reply-to`, whatever its subject (another agent's inbox included), is appended to state
//! `seen` as `subject|sender` and answered `forged`, the reply's outcome appended to state
//! `hijack` (`ok` or the error).

use std::cell::RefCell;

use colony::plugin::messaging;
use colony::plugin::state;
use colony::plugin::timers;
use exports::colony::plugin::handler::{Error, Guest, MarketEvent, Message, OrderEvent, Timestamp};

wit_bindgen::generate!({ path: "../../../wit", world: "agent" });

struct Agent;

#[derive(Default)]
struct Config {
    answer: Option<String>,
    trap_on_message: bool,
    /// Do not record received messages (a subscriber that only burns time).
    quiet: bool,
    /// Busy iterations per received message (a slow subscriber).
    spin: u64,
    /// Answer every request it sees, whoever it was meant for.
    hijack: bool,
}

thread_local! {
    static CONFIG: RefCell<Config> = RefCell::new(Config::default());
    static PINGS: RefCell<u64> = const { RefCell::new(0) };
}

/// A tiny reader for the flat JSON config: string lists, strings and booleans by key.
fn strings(config: &str, key: &str) -> Vec<String> {
    let Some(start) = config.find(&format!("\"{key}\"")) else {
        return Vec::new();
    };
    let rest = &config[start..];
    let Some(open) = rest.find('[') else {
        return Vec::new();
    };
    let Some(close) = rest[open..].find(']') else {
        return Vec::new();
    };
    rest[open + 1..open + close]
        .split(',')
        .map(|s| s.trim().trim_matches('"').to_string())
        .filter(|s| !s.is_empty())
        .collect()
}

fn string(config: &str, key: &str) -> Option<String> {
    let start = config.find(&format!("\"{key}\""))?;
    let rest = &config[start + key.len() + 2..];
    let open = rest.find('"')?;
    let close = rest[open + 1..].find('"')?;
    Some(rest[open + 1..open + 1 + close].to_string())
}

fn append(key: &str, line: &str) -> Result<(), Error> {
    let mut value = state::get(key)?.unwrap_or_default();
    value.extend_from_slice(line.as_bytes());
    value.push(b'\n');
    state::set(key, &value)
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

fn outcome(r: Result<(), Error>) -> String {
    match r {
        Ok(()) => "ok".into(),
        Err(e) => describe(&e),
    }
}

fn publish_with_headers(rest: &str) -> Result<(), Error> {
    let parts: Vec<&str> = rest.split(':').collect();
    let [subject, count, value_bytes, name, payload_bytes] = parts.as_slice() else {
        return Err(Error::InvalidArgument(format!("bad pubh {rest:?}")));
    };
    let count: usize = count.parse().unwrap_or(0);
    let value = "v".repeat(value_bytes.parse().unwrap_or(0));
    let headers = (0..count)
        .map(|i| match count {
            1 => (name.to_string(), value.clone()),
            _ => (format!("{name}-{i}"), value.clone()),
        })
        .collect();
    let payload = vec![b'p'; payload_bytes.parse().unwrap_or(0)];
    let options = messaging::SendOptions {
        priority: colony::plugin::types::Priority::Normal,
        headers,
        ttl_ms: 0,
    };
    let r = messaging::publish_with(subject, &payload, &options);
    state::set("pubh", outcome(r).as_bytes())
}

fn request(subject: &str, timeout: &str, body: &str) -> Result<(), Error> {
    let outcome = match messaging::request(subject, body.as_bytes(), timeout.parse().unwrap_or(100)) {
        Ok(m) => format!("ok:{}:{}", m.sender, String::from_utf8_lossy(&m.payload)),
        Err(e) => format!("err:{}", describe(&e)),
    };
    state::set("reply", outcome.as_bytes())
}

fn command(text: &str) -> Result<(), Error> {
    if let Some(rest) = text.strip_prefix("pubh:") {
        return publish_with_headers(rest);
    }
    if let Some(pattern) = text.strip_prefix("sub:") {
        let r = messaging::subscribe(pattern).map(|_| ());
        return state::set("sub", outcome(r).as_bytes());
    }
    let parts: Vec<&str> = text.splitn(4, ':').collect();
    match parts.as_slice() {
        ["pub", subject, body] => messaging::publish(subject, body.as_bytes()),
        ["flood", subject, n] => {
            let n: u32 = n.parse().unwrap_or(0);
            let mut refused = 0u32;
            for i in 0..n {
                if messaging::publish(subject, format!("{i}").as_bytes()).is_err() {
                    refused += 1;
                }
            }
            state::set("refused", refused.to_string().as_bytes())
        }
        ["req", subject, timeout] => request(subject, timeout, "ask"),
        ["req", subject, timeout, body] => request(subject, timeout, body),
        ["gather", subject, quorum, timeout] => {
            let outcome = match messaging::gather(
                subject,
                b"ask",
                quorum.parse().unwrap_or(1),
                timeout.parse().unwrap_or(100),
            ) {
                Ok(replies) => {
                    let mut bodies: Vec<String> = replies
                        .iter()
                        .map(|m| String::from_utf8_lossy(&m.payload).into_owned())
                        .collect();
                    bodies.sort();
                    format!("{}:{}", replies.len(), bodies.join(","))
                }
                Err(e) => format!("err:{}", describe(&e)),
            };
            state::set("gathered", outcome.as_bytes())
        }
        ["timer", name, after, period] => timers::set(
            name,
            after.parse().unwrap_or(0),
            period.parse().unwrap_or(0),
        ),
        ["untimer", name] => {
            timers::cancel(name);
            Ok(())
        }
        _ => Err(Error::InvalidArgument(format!("unknown command {text:?}"))),
    }
}

impl Guest for Agent {
    fn init(config: String) -> Result<(), Error> {
        for pattern in strings(&config, "subscribe") {
            messaging::subscribe(&pattern)?;
        }
        CONFIG.with_borrow_mut(|c| {
            c.answer = string(&config, "answer");
            c.trap_on_message = config.contains("\"trap_on_message\":true");
            c.quiet = config.contains("\"quiet\":true");
            c.hijack = config.contains("\"hijack\":true");
            c.spin = string(&format!("{config}"), "spin")
                .and_then(|s| s.parse().ok())
                .unwrap_or(0);
        });
        Ok(())
    }

    fn on_message(msg: Message) -> Result<(), Error> {
        if CONFIG.with_borrow(|c| c.trap_on_message) {
            panic!("bus-agent traps on every message, on purpose");
        }
        if let (true, Some(reply_to)) = (CONFIG.with_borrow(|c| c.hijack), &msg.reply_to) {
            append("seen", &format!("{}|{}", msg.subject, msg.sender))?;
            let r = messaging::reply(reply_to, b"forged");
            return append("hijack", &outcome(r));
        }
        if msg.subject.starts_with("agent.") && msg.subject.ends_with(".inbox") {
            let text = String::from_utf8_lossy(&msg.payload).into_owned();
            if let ("ping", Some(reply_to)) = (text.as_str(), &msg.reply_to) {
                let n = PINGS.with_borrow_mut(|p| {
                    *p += 1;
                    *p
                });
                return messaging::reply(reply_to, format!("pong:{n}").as_bytes());
            }
            return command(&text);
        }
        let (quiet, spin) = CONFIG.with_borrow(|c| (c.quiet, c.spin));
        let mut x = 0u64;
        for i in 0..spin {
            x = std::hint::black_box(x.wrapping_add(i));
        }
        if !quiet {
            let line = format!("{}|{}|{}", msg.subject, msg.sender, String::from_utf8_lossy(&msg.payload));
            append("received", &line)?;
        }
        if let (Some(reply_to), Some(answer)) = (&msg.reply_to, CONFIG.with_borrow(|c| c.answer.clone())) {
            messaging::reply(reply_to, answer.as_bytes())?;
        }
        Ok(())
    }

    fn on_market(_event: MarketEvent) -> Result<(), Error> {
        Ok(())
    }

    fn on_order(_event: OrderEvent) -> Result<(), Error> {
        Ok(())
    }

    fn on_timer(now: Timestamp) -> Result<(), Error> {
        append("timers", &now.to_string())
    }

    fn snapshot() -> Vec<u8> {
        PINGS.with_borrow(|p| p.to_le_bytes().to_vec())
    }

    fn restore(snapshot: Vec<u8>) -> Result<(), Error> {
        let bytes: [u8; 8] = snapshot
            .as_slice()
            .try_into()
            .map_err(|_| Error::InvalidArgument("snapshot is not 8 bytes".into()))?;
        PINGS.with_borrow_mut(|p| *p = u64::from_le_bytes(bytes));
        Ok(())
    }
}

export!(Agent);
