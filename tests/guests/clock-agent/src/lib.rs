//! An agent that reads the WASI clocks through Rust's `std::time`, for the virtual-clock
//! tests. At `init` it notes an `Instant`. Message payloads:
//! - `now`: stores in state `wall` the `SystemTime` in ns since the Unix epoch, and in `mono`
//!   the ns from the `init` `Instant` to now (both as decimal text);
//! - `sleep:MS`: sleeps MS milliseconds (`std::thread::sleep`) and stores in `slept` the ns
//!   that `Instant` says passed.

use std::sync::OnceLock;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use colony::plugin::state;
use exports::colony::plugin::handler::{Error, Guest, MarketEvent, Message, OrderEvent, Timestamp};

wit_bindgen::generate!({ path: "../../../wit", world: "agent" });

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
