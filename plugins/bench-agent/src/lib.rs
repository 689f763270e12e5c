//! bench-agent: the component `colony bench` runs under Colony and under raw wasmtime. Its
//! timer handler returns at once (to measure event delivery); a message `log:N` makes it call
//! the host's `log` N times at trace level (to measure guest→host calls). Started with the
//! configuration `"subscribe"` it subscribes to `bench.>`, answers every request with `ok`
//! and takes any other message without work (to measure the bus).

use colony_sdk::log::{Level, log};
use colony_sdk::messaging;
use colony_sdk::{Agent, Error, Manifest, Message, Timestamp};

const MANIFEST: Manifest = Manifest::agent(env!("CARGO_PKG_NAME"), env!("CARGO_PKG_VERSION"))
    .description(env!("CARGO_PKG_DESCRIPTION"));

struct BenchAgent;

impl Agent for BenchAgent {
    fn init(config: &str) -> Result<Self, Error> {
        if config == "subscribe" {
            messaging::subscribe("bench.>")?;
        }
        Ok(BenchAgent)
    }

    fn on_message(&mut self, msg: Message) -> Result<(), Error> {
        if let Some(reply_to) = &msg.reply_to {
            return messaging::reply(reply_to, b"ok");
        }
        let Some(n) = std::str::from_utf8(&msg.payload)
            .ok()
            .and_then(|p| p.strip_prefix("log:"))
            .and_then(|n| n.parse::<u32>().ok())
        else {
            return Ok(());
        };
        for _ in 0..n {
            log(Level::Trace, "x");
        }
        Ok(())
    }

    fn on_timer(&mut self, _now: Timestamp) -> Result<(), Error> {
        Ok(())
    }
}

colony_sdk::export_agent!(BenchAgent, manifest = MANIFEST);
