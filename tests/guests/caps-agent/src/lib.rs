//! An agent that uses capabilities on command, for the granted / no-permission tests. The
//! message payload is one command; the outcome is the event's result:
//! - `read:PATH` reads a file (needs `fs.read` of a directory holding it),
//! - `write:PATH:TEXT` writes a file (needs `fs.write`),
//! - `env:NAME` reads an environment variable (needs `env:NAME`).
//!
//! A refused use comes back as `error::denied` carrying the guest's view of the failure.

use exports::colony::plugin::handler::{Error, Guest, MarketEvent, Message, OrderEvent, Timestamp};

wit_bindgen::generate!({ path: "../../../wit", world: "agent" });

struct Agent;

fn run(command: &str) -> Result<(), Error> {
    if let Some(path) = command.strip_prefix("read:") {
        std::fs::read_to_string(path)
            .map(|_| ())
            .map_err(|e| Error::Denied(format!("read {path}: {e}")))
    } else if let Some(rest) = command.strip_prefix("write:") {
        let (path, text) = rest
            .split_once(':')
            .ok_or_else(|| Error::InvalidArgument("write:PATH:TEXT".into()))?;
        std::fs::write(path, text).map_err(|e| Error::Denied(format!("write {path}: {e}")))
    } else if let Some(name) = command.strip_prefix("env:") {
        std::env::var(name)
            .map(|_| ())
            .map_err(|e| Error::Denied(format!("env {name}: {e}")))
    } else {
        Err(Error::InvalidArgument(format!("unknown command {command:?}")))
    }
}

impl Guest for Agent {
    fn init(_config: String) -> Result<(), Error> {
        Ok(())
    }

    fn on_message(msg: Message) -> Result<(), Error> {
        let command = String::from_utf8(msg.payload)
            .map_err(|_| Error::InvalidArgument("payload is not UTF-8".into()))?;
        run(&command)
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
