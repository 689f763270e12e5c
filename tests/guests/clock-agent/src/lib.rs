//! An agent that reads the WASI clocks through Rust's `std::time`, for the virtual-clock
//! tests. At `init` it notes an `Instant`. Message payloads:
//! - `now`: stores in state `wall` the `SystemTime` in ns since the Unix epoch, and in `mono`
//!   the ns from the `init` `Instant` to now (both as decimal text);
//! - `sleep:MS`: sleeps MS milliseconds (`std::thread::sleep`) and stores in `slept` the ns
//!   that `Instant` says passed;
//! - `random`: stores in `random` 16 bytes of `wasi:random/random`, in `insecure` 16 bytes of
//!   `wasi:random/insecure`, and in `seed` the `wasi:random/insecure-seed` pair (all as hex).

use std::sync::OnceLock;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use colony::plugin::state;
use exports::colony::plugin::handler::{Error, Guest, MarketEvent, Message, OrderEvent, Timestamp};

wit_bindgen::generate!({ path: "../../../wit", world: "agent" });

/// The WASI random interfaces, called directly (Rust's std has no stable API for them).
mod wasi_random {
    wit_bindgen::generate!({ path: "../../../wit/deps/random", world: "wasi:random/imports" });
}

use wasi_random::wasi::random::{insecure, insecure_seed, random};

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

static STARTED: OnceLock<Instant> = OnceLock::new();

struct ClockAgent;

fn store(key: &str, ns: u128) -> Result<(), Error> {
    state::set(key, ns.to_string().as_bytes())
}

impl Guest for ClockAgent {
    fn init(_config: String) -> Result<(), Error> {
        STARTED.get_or_init(Instant::now);
        Ok(())
    }

    fn on_message(msg: Message) -> Result<(), Error> {
        let payload = String::from_utf8_lossy(&msg.payload);
        if payload == "now" {
            let wall = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_err(|e| Error::InvalidArgument(format!("wall clock before 1970: {e}")))?;
            let started = *STARTED.get_or_init(Instant::now);
            store("wall", wall.as_nanos())?;
            store("mono", Instant::now().duration_since(started).as_nanos())?;
        } else if let Some(ms) = payload.strip_prefix("sleep:") {
            let ms: u64 = ms
                .parse()
                .map_err(|_| Error::InvalidArgument(format!("bad sleep {ms:?}")))?;
            let before = Instant::now();
            std::thread::sleep(Duration::from_millis(ms));
            store("slept", before.elapsed().as_nanos())?;
        } else if payload == "random" {
            state::set("random", hex(&random::get_random_bytes(16)).as_bytes())?;
            state::set("insecure", hex(&insecure::get_insecure_random_bytes(16)).as_bytes())?;
            let (a, b) = insecure_seed::insecure_seed();
            state::set("seed", format!("{a:016x}{b:016x}").as_bytes())?;
        } else {
            return Err(Error::InvalidArgument(format!(
                "unknown command {payload:?}"
            )));
        }
        Ok(())
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

export!(ClockAgent);
