//! {{name}}: a Colony agent. Build with `cargo build --release`; see README.md.

use colony_sdk::{Agent, Error, Manifest, MarketEvent, Message, OrderEvent, Timestamp, state};

/// Who this plugin is and what it asks for; embedded in the component at compile time.
/// The name and version come from Cargo.toml.
const MANIFEST: Manifest = Manifest::agent(env!("CARGO_PKG_NAME"), env!("CARGO_PKG_VERSION"))
    .description(env!("CARGO_PKG_DESCRIPTION"))
    // Capabilities to request, e.g. "messaging.subscribe:demo.>" or "market.read:BTC-USDT".
    // The operator decides what is granted.
    .capabilities(&[]);

/// The agent's in-memory state. The host keeps the instance between events; anything that
/// must survive a restart goes in `state`.
struct MyAgent {
    events: u64,
}

impl Agent for MyAgent {
    fn init(config: &str) -> Result<Self, Error> {
        let events = state::get_json("events")?.unwrap_or(0);
        colony_sdk::info!("{} started with config {config}", MANIFEST.name);
        Ok(MyAgent { events })
    }

    fn on_message(&mut self, msg: Message) -> Result<(), Error> {
        colony_sdk::info!("message on {} from {}", msg.subject, msg.sender);
        self.count()
    }

    fn on_market(&mut self, _event: MarketEvent) -> Result<(), Error> {
        self.count()
    }

    fn on_order(&mut self, event: OrderEvent) -> Result<(), Error> {
        colony_sdk::info!("order {} is {:?}", event.client_id, event.status);
        self.count()
    }

    fn on_timer(&mut self, now: Timestamp) -> Result<(), Error> {
        colony_sdk::debug!("timer at {now}, {} events so far", self.events);
        Ok(())
    }
}

impl MyAgent {
    fn count(&mut self) -> Result<(), Error> {
        self.events += 1;
        state::set_json("events", &self.events)
    }
}

colony_sdk::export_agent!(MyAgent, manifest = MANIFEST);

#[cfg(test)]
mod tests {
    //! Off wasm32 the SDK logs to stderr and keeps state in memory, so the logic runs
    //! natively: `cargo test --target "$(rustc -vV | sed -n 's/host: //p')"`.

    use super::*;

    #[test]
    fn counts_events_in_state() {
        let mut agent = MyAgent::init("{}").unwrap();
        agent.on_timer(1).unwrap();
        agent.count().unwrap();
        assert_eq!(state::get_json::<u64>("events").unwrap(), Some(1));
    }
}
