//! An agent that drives the `tools` interface for the tool tests. Messages on its inbox are
//! commands; each stores its answer in a state key:
//! - `list` → `list`, one line per callable tool: `NAME VERSION DIGEST`;
//! - `call NAME ARGS-JSON` → `call.NAME` = `ok RESULT` or `err KIND MESSAGE`;
//! - `register ` followed by the raw bytes of a component → `register` =
//!   `ok NAME VERSION DIGEST` or `err KIND MESSAGE` (`err rejected STEP REASON`).

use colony::plugin::state;
use colony::plugin::tools::{self, ToolError};
use exports::colony::plugin::handler::{Error, Guest, MarketEvent, Message, OrderEvent, Timestamp};

wit_bindgen::generate!({ path: "../../../wit", world: "agent" });

struct Agent;

fn describe(e: &ToolError) -> String {
    match e {
        ToolError::NotFound(m) => format!("not-found {m}"),
        ToolError::InvalidArguments(m) => format!("invalid-arguments {m}"),
        ToolError::Denied(m) => format!("denied {m}"),
        ToolError::Limit(m) => format!("limit {m}"),
        ToolError::Tool(m) => format!("tool {m}"),
        ToolError::Rejected(r) => format!("rejected {} {}", r.step, r.reason),
        ToolError::Duplicate(m) => format!("duplicate {m}"),
        ToolError::Unavailable(m) => format!("unavailable {m}"),
    }
}

fn command(payload: &[u8]) -> Result<(), Error> {
    if let Some(bytes) = payload.strip_prefix(b"register ") {
        let answer = match tools::register(bytes) {
            Ok(t) => format!("ok {} {} {}", t.name, t.version, t.digest),
            Err(e) => format!("err {}", describe(&e)),
        };
        return state::set("register", answer.as_bytes());
    }
    let text = String::from_utf8_lossy(payload);
    if text == "list" {
        let lines: Vec<String> = tools::list()
            .iter()
            .map(|t| format!("{} {} {}", t.name, t.version, t.digest))
            .collect();
        return state::set("list", lines.join("\n").as_bytes());
    }
    if let Some(rest) = text.strip_prefix("call ") {
        let (name, args) = rest.split_once(' ').unwrap_or((rest, ""));
        let answer = match tools::call(name, args) {
            Ok(out) => format!("ok {out}"),
            Err(e) => format!("err {}", describe(&e)),
        };
        return state::set(&format!("call.{name}"), answer.as_bytes());
    }
    Err(Error::InvalidArgument(format!("unknown command {text:?}")))
}

impl Guest for Agent {
    fn init(_config: String) -> Result<(), Error> {
        Ok(())
    }

    fn on_message(msg: Message) -> Result<(), Error> {
        command(&msg.payload)
    }

    fn on_market(_event: MarketEvent) -> Result<(), Error> {
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
