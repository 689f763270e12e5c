//! An agent whose on-timer panics: the host must report the trap and re-instantiate.

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
        panic!("guest panic on purpose")
    }

    fn snapshot() -> Vec<u8> {
        Vec::new()
    }

    fn restore(_snapshot: Vec<u8>) -> Result<(), Error> {
        Ok(())
    }
}

export!(Agent);
