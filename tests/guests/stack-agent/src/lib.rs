//! An agent whose on-timer recurses without bound: the stack limit must stop it.

use exports::colony::plugin::handler::{Error, Guest, MarketEvent, Message, OrderEvent, Timestamp};

wit_bindgen::generate!({ path: "../../../wit", world: "agent" });

struct Agent;

/// Recurses forever with a 1 KiB frame; black_box keeps it from becoming a loop.
#[inline(never)]
fn recurse(depth: u64) -> u64 {
    let mut frame = [0u8; 1024];
    frame[(depth % 1024) as usize] = depth as u8;
    std::hint::black_box(&mut frame);
    // Never true, but the compiler cannot know: keeps the recursion conditional (no lint).
    if std::hint::black_box(depth) == u64::MAX {
        return 0;
    }
    recurse(depth + 1).wrapping_add(u64::from(frame[0]))
}

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
        std::hint::black_box(recurse(0));
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
