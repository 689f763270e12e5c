//! An agent whose on-timer writes to stdout forever: the output cap (and deadline) must stop it.

use std::io::Write;

use exports::colony::plugin::handler::{Error, Guest, MarketEvent, Message, OrderEvent, Timestamp};

wit_bindgen::generate!({ path: "../../../wit", world: "agent" });

struct Agent;

impl Guest for Agent {
    fn init(_config: String) -> Result<(), Error> {
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
        let line = [b'x'; 1024];
        let mut stdout = std::io::stdout();
        loop {
            // Errors are ignored on purpose: a capped stream must not let the guest stop politely.
            let _ = stdout.write_all(&line);
        }
    }

    fn snapshot() -> Vec<u8> {
        Vec::new()
    }

    fn restore(_snapshot: Vec<u8>) -> Result<(), Error> {
        Ok(())
    }
}

export!(Agent);
