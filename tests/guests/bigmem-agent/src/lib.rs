//! A hostile agent whose initial linear memory (a 200 MiB static) is larger than any memory
//! limit: the host must refuse it at load, naming the memory limit, not the allocator's slot.

use exports::colony::plugin::handler::{Error, Guest, MarketEvent, Message, OrderEvent, Timestamp};

wit_bindgen::generate!({ path: "../../../wit", world: "agent" });

struct Agent;

/// Zeroed static data: it costs the component nothing on disk but is part of the memory's
/// initial size.
static mut BIG: [u8; 200 * 1024 * 1024] = [0; 200 * 1024 * 1024];

impl Guest for Agent {
    fn init(_config: String) -> Result<(), Error> {
        // SAFETY: one thread; the write keeps the static from being optimised away.
        unsafe { std::ptr::write_volatile(&raw mut BIG[12345], 1) };
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
        // SAFETY: as in init.
        let b = unsafe { std::ptr::read_volatile(&raw const BIG[12345]) };
        if b == 1 { Ok(()) } else { Err(Error::NotFound("big".into())) }
    }

    fn snapshot() -> Vec<u8> {
        Vec::new()
    }

    fn restore(_snapshot: Vec<u8>) -> Result<(), Error> {
        Ok(())
    }
}

export!(Agent);
