//! An agent that imports `colony:evil/backdoor`, which no Colony world offers: loading it must
//! fail with an error naming the import. on-timer calls it so the import is not dropped.

use exports::colony::plugin::handler::{Error, Guest, MarketEvent, Message, OrderEvent, Timestamp};

// The Colony package first: later paths may depend on earlier ones, not the other way round.
wit_bindgen::generate!({
    path: ["../../../wit", "wit"],
    world: "colony:evil/evil-agent",
    generate_all,
});

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
        std::hint::black_box(colony::evil::backdoor::open());
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
