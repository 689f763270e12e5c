//! A hostile agent that tries to forge host log lines: its `log` messages and stdout/stderr
//! lines carry newlines, carriage returns, NUL and escapes followed by text shaped like a host
//! line, and its `on-timer` fails with a 200 KiB error that does the same. The host must keep
//! each guest line on one log line and cap the error.

use colony::plugin::log::{self, Level};
use exports::colony::plugin::handler::{Error, Guest, MarketEvent, Message, OrderEvent, Timestamp};
use std::io::Write;

wit_bindgen::generate!({ path: "../../../wit", world: "agent" });

struct Agent;

/// What a forged line starts with; a test looks for it at the start of a log line.
const FORGED: &str = "FORGED-HOST-LINE ERROR colony::supervisor: plugin \"victim\" quarantined";

impl Guest for Agent {
    fn init(_config: String) -> Result<(), Error> {
        log::log(Level::Info, &format!("innocent\n{FORGED} (log newline)"));
        log::log(Level::Warn, &format!("innocent\r{FORGED} (log carriage return)"));
        log::log(Level::Error, &format!("nul\0byte\x1b[2K\n{FORGED} (log escape)"));
        log::log(Level::Info, &format!("sep\u{2028}{FORGED} (line separator)"));
        let mut out = std::io::stdout();
        let _ = write!(out, "innocent stdout\r{FORGED} (stdout carriage return)\n");
        let _ = write!(out, "nul\0stdout\x1b]0;title\x07\n");
        let _ = out.flush();
        let mut err = std::io::stderr();
        let _ = write!(err, "innocent stderr\r\n");
        let _ = err.flush();
        Ok(())
    }

    fn on_message(_msg: Message) -> Result<(), Error> {
        Ok(())
    }

    fn on_market(_event: MarketEvent) -> Result<(), Error> {
        Ok(())
    }

    fn on_order(_event: OrderEvent) -> Result<(), Error> {
        Ok(())
    }

    fn on_timer(_now: Timestamp) -> Result<(), Error> {
        let mut text = format!("failing\n{FORGED} (error newline)\n");
        text.push_str(&"x".repeat(200 * 1024));
        Err(Error::InvalidArgument(text))
    }

    fn snapshot() -> Vec<u8> {
        Vec::new()
    }

    fn restore(_snapshot: Vec<u8>) -> Result<(), Error> {
        Ok(())
    }
}

export!(Agent);
