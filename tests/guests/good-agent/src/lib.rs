//! A well-behaved agent: counts timer events in its state, logs, and hands the count over on a
//! hot swap. Message payloads `log:N` and `state-get:N` make N host calls, for benchmarks.

use std::sync::atomic::{AtomicU64, Ordering};

use exports::colony::plugin::handler::{Error, Guest, MarketEvent, Message, OrderEvent, Timestamp};

use colony::plugin::log::{Level, log};
use colony::plugin::state;

wit_bindgen::generate!({ path: "../../../wit", world: "agent" });

// The manifest exactly as docs/manifest.md describes it, so tests can check embedded manifests.
const MANIFEST_JSON: &[u8] = br#"{"schema":1,"name":"good-agent","version":"0.1.0","kind":"agent","description":"Counts timer events in its state; test guest.","capabilities":[]}"#;

#[unsafe(link_section = "colony-manifest")]
#[used]
static MANIFEST: [u8; MANIFEST_JSON.len()] = {
    let mut out = [0u8; MANIFEST_JSON.len()];
    let mut i = 0;
    while i < out.len() {
        out[i] = MANIFEST_JSON[i];
        i += 1;
    }
    out
};

static COUNT: AtomicU64 = AtomicU64::new(0);

struct GoodAgent;

/// Parses the `N` of a `prefix:N` payload.
fn repeat_count(payload: &[u8], prefix: &str) -> Option<u64> {
    let rest = payload.strip_prefix(prefix.as_bytes())?;
    std::str::from_utf8(rest).ok()?.parse().ok()
}

impl Guest for GoodAgent {
    fn init(_config: String) -> Result<(), Error> {
        Ok(())
    }

    fn on_message(msg: Message) -> Result<(), Error> {
        if msg.payload == b"echo" {
            log(
                Level::Info,
                &format!("echo from {} on {}", msg.sender, msg.subject),
            );
        } else if let Some(n) = repeat_count(&msg.payload, "log:") {
            for _ in 0..n {
                log(Level::Trace, "x");
            }
        } else if let Some(n) = repeat_count(&msg.payload, "state-get:") {
            for _ in 0..n {
                state::get("count")?;
            }
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
        let count = COUNT.fetch_add(1, Ordering::Relaxed) + 1;
        state::set("count", &count.to_le_bytes())?;
        log(Level::Info, &format!("count {count}"));
        Ok(())
    }

    fn snapshot() -> Vec<u8> {
        COUNT.load(Ordering::Relaxed).to_le_bytes().to_vec()
    }

    fn restore(snapshot: Vec<u8>) -> Result<(), Error> {
        let bytes: [u8; 8] = snapshot.as_slice().try_into().map_err(|_| {
            Error::InvalidArgument(format!("snapshot is {} bytes, expected 8", snapshot.len()))
        })?;
        COUNT.store(u64::from_le_bytes(bytes), Ordering::Relaxed);
        Ok(())
    }
}

export!(GoodAgent);
