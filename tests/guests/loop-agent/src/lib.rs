//! An agent whose on-timer never returns: the deadline and fuel limits must stop it.

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
        let mut spins = 0u64;
        loop {
            // black_box keeps the loop from being optimised into a trap or removed.
            spins = std::hint::black_box(spins.wrapping_add(1));
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
