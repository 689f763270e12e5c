//! An agent whose on-timer recurses without bound: the stack limit must stop it.

use exports::colony::plugin::handler::{Error, Guest, MarketEvent, Message, OrderEvent, Timestamp};

use std::sync::atomic::{AtomicU64, Ordering};

wit_bindgen::generate!({ path: "../../../wit", world: "agent" });

struct Agent;

/// Recurses forever with a 1 KiB frame; black_box keeps it from becoming a loop.
/// Read through an atomic so the compiler cannot see the recursion end; unlike
/// `black_box`, this keeps every value in wasm locals, so the recursion grows the engine's
/// native wasm stack (the host's stack limit) rather than Rust's shadow stack in linear memory.
static NEVER: AtomicU64 = AtomicU64::new(u64::MAX);

#[inline(never)]
fn recurse(a: u64, b: u64, c: u64, d: u64) -> u64 {
    if a == NEVER.load(Ordering::Relaxed) {
        return b;
    }
    let r = recurse(a + 1, b ^ a, c.wrapping_mul(3), d.wrapping_add(c));
    // Not associative, so LLVM cannot turn the recursion into a loop with an accumulator.
    r.rotate_left((a & 31) as u32).wrapping_sub(b) ^ c.wrapping_sub(d)
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
        std::hint::black_box(recurse(0, 1, 2, 3));
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
