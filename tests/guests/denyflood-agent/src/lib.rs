//! A hostile agent that is granted nothing and hammers what it is refused, to fill the audit:
//! each message `hammer:N` makes N rounds of three refused calls — a publish on a new subject
//! each time (`x.I`), a publish on the same subject (`same`), a subscribe to a new pattern
//! (`y.I`) — and adds the number of calls refused as `denied` to state `refused` (a decimal
//! count kept across messages).

use colony::plugin::messaging;
use colony::plugin::state;
use exports::colony::plugin::handler::{Error, Guest, MarketEvent, Message, OrderEvent, Timestamp};

wit_bindgen::generate!({ path: "../../../wit", world: "agent" });

struct Agent;

fn refused<T>(r: Result<T, Error>) -> u64 {
    u64::from(matches!(r, Err(Error::Denied(_))))
}

fn hammer(rounds: u64) -> Result<(), Error> {
    let mut n = 0;
    for i in 0..rounds {
        n += refused(messaging::publish(&format!("x.{i}"), b"flood"));
        n += refused(messaging::publish("same", b"flood"));
        n += refused(messaging::subscribe(&format!("y.{i}")));
    }
    let before: u64 = state::get("refused")?
        .and_then(|b| String::from_utf8(b).ok())
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    state::set("refused", (before + n).to_string().as_bytes())
}

impl Guest for Agent {
    fn init(_config: String) -> Result<(), Error> {
        Ok(())
    }

    fn on_message(msg: Message) -> Result<(), Error> {
        let text = String::from_utf8_lossy(&msg.payload).into_owned();
        match text.strip_prefix("hammer:").map(str::parse) {
            Some(Ok(rounds)) => hammer(rounds),
            _ => Err(Error::InvalidArgument(format!("unknown command {text:?}"))),
        }
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

export!(Agent);
