//! hello-agent: the smallest useful Colony agent. It logs when it starts, logs and counts
//! every timer tick (the count lives in state key `ticks`, so it survives restarts), and
//! logs each message it receives. Its manifest requests no capabilities.

use colony_sdk::{Agent, Error, Manifest, Message, Timestamp, state};

/// State key holding the number of timer ticks seen, as a JSON number.
const TICKS: &str = "ticks";

const MANIFEST: Manifest = Manifest::agent(env!("CARGO_PKG_NAME"), env!("CARGO_PKG_VERSION"))
    .description(env!("CARGO_PKG_DESCRIPTION"));

struct HelloAgent {
    ticks: u64,
}

impl Agent for HelloAgent {
    fn init(config: &str) -> Result<Self, Error> {
        let ticks = state::get_json(TICKS)?.unwrap_or(0);
        colony_sdk::info!("hello-agent started with config {config}; {ticks} ticks so far");
        Ok(HelloAgent { ticks })
    }

    fn on_message(&mut self, msg: Message) -> Result<(), Error> {
        colony_sdk::info!(
            "message {} on {} from {}: {}",
            msg.id,
            msg.subject,
            msg.sender,
            String::from_utf8_lossy(&msg.payload)
        );
        Ok(())
    }

    fn on_timer(&mut self, now: Timestamp) -> Result<(), Error> {
        self.ticks += 1;
        state::set_json(TICKS, &self.ticks)?;
        colony_sdk::info!("tick {} at {now}", self.ticks);
        Ok(())
    }
}

colony_sdk::export_agent!(HelloAgent, manifest = MANIFEST);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_ticks_in_state_across_instances() {
        let mut agent = HelloAgent::init("{}").unwrap();
        agent.on_timer(1).unwrap();
        agent.on_timer(2).unwrap();
        assert_eq!(state::get_json::<u64>(TICKS).unwrap(), Some(2));
        // A new instance (after a restart) picks the count up from state.
        let mut agent = HelloAgent::init("{}").unwrap();
        agent.on_timer(3).unwrap();
        assert_eq!(agent.ticks, 3);
    }
}
