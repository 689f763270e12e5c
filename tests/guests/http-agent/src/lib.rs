//! An agent that imports `wasi:http/outgoing-handler`, which only the tool world offers:
//! loading it must fail with an error naming the import. on-timer sends a request so the
//! import is not dropped.

use exports::colony::plugin::handler::{Error, Guest, MarketEvent, Message, OrderEvent, Timestamp};

// The Colony package first: later paths may depend on earlier ones, not the other way round.
wit_bindgen::generate!({
    path: ["../../../wit", "wit"],
    world: "colony:test-http/http-agent",
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
        use wasi::http::types::{Fields, OutgoingRequest};
        let request = OutgoingRequest::new(Fields::new());
        std::hint::black_box(wasi::http::outgoing_handler::handle(request, None).is_ok());
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
