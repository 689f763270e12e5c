//! An agent whose on-timer allocates and touches memory without bound: the memory limit must stop it.

use exports::colony::plugin::handler::{Error, Guest, MarketEvent, Message, OrderEvent, Timestamp};

wit_bindgen::generate!({ path: "../../../wit", world: "agent" });

struct Agent;

const CHUNK: usize = 1 << 20;
const PAGE: usize = 64 * 1024;

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
        // Grow linear memory 1 MiB (16 pages) at a time and touch each new MiB, without
        // bound: the host's memory limit must stop this, not the fuel budget.
        loop {
            let old_pages = core::arch::wasm32::memory_grow(0, CHUNK / PAGE);
            if old_pages == usize::MAX {
                // The host refused the grow without trapping: keep asking.
                continue;
            }
            let base = old_pages * PAGE;
            for offset in (0..CHUNK).step_by(PAGE) {
                // SAFETY: the bytes were just added to linear memory by memory.grow and
                // nothing else owns them.
                unsafe { std::ptr::write_volatile((base + offset) as *mut u8, 1) };
            }
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
