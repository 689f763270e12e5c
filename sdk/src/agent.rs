//! The [`Agent`] trait and the adapter that the `export_agent!` macro exports.

use std::any::Any;
use std::cell::RefCell;

use crate::__bindings::agent::exports::colony::plugin::handler::Guest;
use crate::{Error, MarketEvent, Message, OrderEvent, Timestamp};

/// A trading agent: a long-lived actor that receives events from the host.
///
/// The host instantiates the agent's component once and calls [`Agent::init`], which builds
/// the value that every later event is delivered to (`&mut self`), so an agent keeps plain
/// Rust fields between events. After a trap the host re-instantiates the component, calls
/// `init` again, then [`Agent::restore`] with the latest recovery snapshot it took (the host
/// calls [`Agent::snapshot`] after every successful `on-order` event and every few other
/// events), then sends a [`Recovery`](crate::recovery::Recovery) notice to `on_message`. What
/// must survive anything belongs in [`state`](crate::state); positions and working orders are
/// the host's and are rebuilt from it ([`recovery`](crate::recovery)).
///
/// Every handler except `init` has a default that does nothing, so an agent implements only
/// the events it cares about. Returning an [`Error`] is not a trap: the host logs it and keeps
/// the instance.
///
/// ```
/// use colony_sdk::{Agent, Error, MarketEvent};
///
/// #[derive(Default)]
/// struct LastPrice {
///     last: Option<colony_sdk::Decimal>,
/// }
///
/// impl Agent for LastPrice {
///     fn init(_config: &str) -> Result<Self, Error> {
///         Ok(LastPrice::default())
///     }
///
///     fn on_market(&mut self, event: MarketEvent) -> Result<(), Error> {
///         if let MarketEvent::Trade(trade) = event {
///             self.last = Some(trade.price);
///         }
///         Ok(())
///     }
/// }
///
/// colony_sdk::export_agent!(LastPrice);
/// # fn main() {}
/// ```
pub trait Agent: Sized + 'static {
    /// Builds the agent from the operator's configuration, JSON text (`{}` when there is
    /// none). Called once per instance, before any other handler.
    fn init(config: &str) -> Result<Self, Error>;

    /// A message arrived on a subscribed subject or in the agent's inbox.
    fn on_message(&mut self, msg: Message) -> Result<(), Error> {
        let _ = msg;
        Ok(())
    }

    /// A market-data event for a subscribed symbol.
    fn on_market(&mut self, event: MarketEvent) -> Result<(), Error> {
        let _ = event;
        Ok(())
    }

    /// One of the agent's orders changed state.
    fn on_order(&mut self, event: OrderEvent) -> Result<(), Error> {
        let _ = event;
        Ok(())
    }

    /// The agent's timer fired; `now` is the host clock in ns (virtual during a replay).
    fn on_timer(&mut self, now: Timestamp) -> Result<(), Error> {
        let _ = now;
        Ok(())
    }

    /// Returns the state a later instance gets in [`Agent::restore`]: the host calls it before
    /// a hot swap and a sleep, and after successful events as a recovery point for a restart
    /// after a failure (empty by default, meaning nothing to keep). Keep it cheap: it runs
    /// after every successful `on-order` event.
    fn snapshot(&mut self) -> Vec<u8> {
        Vec::new()
    }

    /// After `init`, with a snapshot: the old build's (hot swap), the one taken when it went to
    /// sleep (waking), or the latest recovery point (restart after a failure; events handled
    /// after it are not replayed). Positions and orders may have moved since the snapshot:
    /// rebuild them from the host here too ([`recovery`](crate::recovery)).
    fn restore(&mut self, snapshot: Vec<u8>) -> Result<(), Error> {
        let _ = snapshot;
        Ok(())
    }
}

thread_local! {
    // The agent built by `init`. A component exports one agent type, so one slot suffices;
    // `Any` lets the non-generic slot hold it. wasm32 has one thread and the component model
    // forbids re-entering an instance, so the `RefCell` is never contended.
    static INSTANCE: RefCell<Option<Box<dyn Any>>> = const { RefCell::new(None) };
}

/// Exported by `export_agent!`: routes each `handler` call to the agent built by `init`.
#[doc(hidden)]
pub struct AgentExport<T>(std::marker::PhantomData<T>);

impl<T: Agent> AgentExport<T> {
    fn with<R>(f: impl FnOnce(&mut T) -> Result<R, Error>) -> Result<R, Error> {
        INSTANCE.with_borrow_mut(|slot| {
            match slot.as_mut().and_then(|agent| agent.downcast_mut::<T>()) {
                Some(agent) => f(agent),
                None => Err(Error::Unavailable(
                    "agent is not initialised: init has not succeeded on this instance".into(),
                )),
            }
        })
    }
}

impl<T: Agent> Guest for AgentExport<T> {
    fn init(config: String) -> Result<(), Error> {
        let agent = T::init(&config)?;
        INSTANCE.set(Some(Box::new(agent)));
        Ok(())
    }

    fn on_message(msg: Message) -> Result<(), Error> {
        Self::with(|agent| agent.on_message(msg))
    }

    fn on_market(event: MarketEvent) -> Result<(), Error> {
        Self::with(|agent| agent.on_market(event))
    }

    fn on_order(event: OrderEvent) -> Result<(), Error> {
        Self::with(|agent| agent.on_order(event))
    }

    fn on_timer(now: Timestamp) -> Result<(), Error> {
        Self::with(|agent| agent.on_timer(now))
    }

    fn snapshot() -> Vec<u8> {
        Self::with(|agent| Ok(agent.snapshot())).unwrap_or_default()
    }

    fn restore(snapshot: Vec<u8>) -> Result<(), Error> {
        Self::with(|agent| agent.restore(snapshot))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Probe {
        config: String,
        timers: Vec<Timestamp>,
    }

    impl Agent for Probe {
        fn init(config: &str) -> Result<Self, Error> {
            if config == "bad" {
                return Err(Error::InvalidArgument("config: bad".into()));
            }
            Ok(Probe {
                config: config.to_string(),
                timers: Vec::new(),
            })
        }

        fn on_timer(&mut self, now: Timestamp) -> Result<(), Error> {
            self.timers.push(now);
            Ok(())
        }

        fn snapshot(&mut self) -> Vec<u8> {
            format!("{}:{}", self.config, self.timers.len()).into_bytes()
        }
    }

    type Export = AgentExport<Probe>;

    #[test]
    fn events_before_init_are_refused_not_trapped() {
        assert!(matches!(Export::on_timer(1), Err(Error::Unavailable(_))));
        assert_eq!(Export::snapshot(), Vec::<u8>::new());
    }

    #[test]
    fn init_builds_the_instance_that_events_reach() {
        Export::init("{}".into()).unwrap();
        Export::on_timer(5).unwrap();
        Export::on_timer(6).unwrap();
        assert_eq!(Export::snapshot(), b"{}:2");
        // Defaults do nothing and succeed.
        Export::restore(vec![1]).unwrap();
        // A second init (re-instantiation) starts afresh.
        Export::init("{\"a\":1}".into()).unwrap();
        assert_eq!(Export::snapshot(), b"{\"a\":1}:0");
    }

    #[test]
    fn a_failed_init_leaves_no_instance() {
        assert_eq!(
            Export::init("bad".into()),
            Err(Error::InvalidArgument("config: bad".into()))
        );
        assert!(Export::on_timer(1).is_err());
    }
}
