//! One agent instance in its own store: instantiation and `init`, delivering an event,
//! `snapshot` and `restore`, and the guest's errors as the host reports them.

use crate::bindings::agent::{Agent, AgentPre};
use crate::bindings::types as wit;
use crate::bus::{Content, Envelope};
use crate::interfaces::messaging::{BusLink, HeldSubscriptions};
use crate::policy::Policy;
use crate::state_store::StateStore;
use crate::store::{CallError, StoreState, guarded, new_store};
use std::sync::Arc;
use wasmtime::Store;

/// A message as the host delivers it to an agent's `on-message`.
#[derive(Debug, Clone)]
pub struct Message {
    /// Unique id.
    pub id: String,
    /// Subject it was published on.
    pub subject: String,
    /// Sending plugin (stamped by the host).
    pub sender: String,
    /// Correlation id for request/reply.
    pub correlation_id: Option<String>,
    /// Where to reply.
    pub reply_to: Option<String>,
    /// Nanoseconds since the epoch.
    pub timestamp: u64,
    /// Headers.
    pub headers: Vec<(String, String)>,
    /// Body.
    pub payload: Vec<u8>,
}

/// An event the host delivers to an agent.
#[derive(Debug, Clone)]
pub enum Event {
    /// The timer fired at `now` (ns since the epoch).
    Timer(u64),
    /// A message arrived (delivered directly, not through the bus).
    Message(Message),
    /// A message from the bus.
    Bus(Arc<Envelope>),
}

impl Event {
    pub(super) fn call_name(&self) -> &'static str {
        match self {
            Event::Timer(_) => "on-timer",
            Event::Bus(env) => match env.content {
                Content::Timer(_) => "on-timer",
                Content::Market(_) => "on-market",
                Content::Order(_) => "on-order",
                Content::Bytes => "on-message",
            },
            Event::Message(_) => "on-message",
        }
    }
}

/// One agent instance in its own store.
pub struct AgentInstance {
    pub(super) store: Store<StoreState>,
    bindings: Agent,
}

impl AgentInstance {
    /// Instantiates the agent and calls `init(config)`.
    pub async fn start(
        pre: &AgentPre<StoreState>,
        plugin: Arc<str>,
        limits: crate::limits::Limits,
        state: Option<StateStore>,
        policy: Arc<Policy>,
        bus: Option<BusLink>,
        config: &str,
    ) -> Result<AgentInstance, CallError> {
        let store = new_store(pre.engine(), plugin, limits, state, policy, bus);
        Self::instantiate(pre, store, config).await
    }

    /// Instantiates the agent in `store` (from `new_store`) and calls `init(config)`.
    async fn instantiate(
        pre: &AgentPre<StoreState>,
        store: Store<StoreState>,
        config: &str,
    ) -> Result<AgentInstance, CallError> {
        Self::instantiate_adopting(pre, store, config, &mut None).await
    }

    /// [`AgentInstance::instantiate`], offering `held` (a predecessor's subscriptions) to
    /// `init`: those it asks for again are taken over, the rest end after `init`. If the
    /// instance cannot be made, `held` keeps the subscriptions for the next try.
    pub(super) async fn instantiate_adopting(
        pre: &AgentPre<StoreState>,
        mut store: Store<StoreState>,
        config: &str,
        held: &mut Option<HeldSubscriptions>,
    ) -> Result<AgentInstance, CallError> {
        let bindings = guarded(&mut store, "instantiate", async |s| {
            pre.instantiate_async(s).await
        })
        .await?;
        let mut instance = AgentInstance { store, bindings };
        if let Some(h) = held.take() {
            instance.adopt(h);
        }
        match instance.init(config).await {
            Ok(()) => {
                instance.end_unadopted();
                Ok(instance)
            }
            Err(e) => {
                *held = instance.take_subscriptions();
                Err(e)
            }
        }
    }

    async fn init(&mut self, config: &str) -> Result<(), CallError> {
        let h = self.bindings.colony_plugin_handler();
        let r = guarded(&mut self.store, "init", async |s| {
            h.call_init(s, config).await
        })
        .await?;
        self.guest_result("init", r)
    }

    /// Delivers one event under the per-event limits.
    pub async fn deliver(&mut self, event: &Event) -> Result<(), CallError> {
        let h = self.bindings.colony_plugin_handler();
        let call = event.call_name();
        let r = match event {
            Event::Timer(now) => {
                guarded(&mut self.store, call, async |s| {
                    h.call_on_timer(s, *now).await
                })
                .await?
            }
            Event::Bus(env) if let Content::Timer(now) = env.content => {
                guarded(&mut self.store, call, async |s| {
                    h.call_on_timer(s, now).await
                })
                .await?
            }
            Event::Bus(env) if let Content::Market(event) = &env.content => {
                let event = crate::interfaces::market::to_wit(event);
                guarded(&mut self.store, call, async |s| {
                    h.call_on_market(s, &event).await
                })
                .await?
            }
            Event::Bus(env) if let Content::Order(update) = &env.content => {
                let event = crate::interfaces::orders::to_wit(update);
                guarded(&mut self.store, call, async |s| {
                    h.call_on_order(s, &event).await
                })
                .await?
            }
            Event::Bus(env) => {
                let msg = crate::interfaces::messaging::to_wit(env);
                // A request delivered to its addressee may be answered by this instance; one
                // seen on another agent's inbox may not (`interfaces::messaging`'s `reply`).
                if let Some(reply_to) = &env.reply_to {
                    let data = self.store.data_mut();
                    if crate::bus::may_answer(&data.plugin, &env.subject)
                        && let Some(link) = data.bus.as_mut()
                    {
                        link.note_request(reply_to);
                    }
                }
                guarded(&mut self.store, call, async |s| {
                    h.call_on_message(s, &msg).await
                })
                .await?
            }
            Event::Message(m) => {
                let msg = to_wit_message(m);
                guarded(&mut self.store, call, async |s| {
                    h.call_on_message(s, &msg).await
                })
                .await?
            }
        };
        self.guest_result(call, r)
    }

    /// Asks the instance for the state to hand to its successor.
    pub async fn snapshot(&mut self) -> Result<Vec<u8>, CallError> {
        let h = self.bindings.colony_plugin_handler();
        guarded(&mut self.store, "snapshot", async |s| {
            h.call_snapshot(s).await
        })
        .await
    }

    /// Hands a predecessor's snapshot to this instance.
    pub async fn restore(&mut self, snapshot: &[u8]) -> Result<(), CallError> {
        let h = self.bindings.colony_plugin_handler();
        let r = guarded(&mut self.store, "restore", async |s| {
            h.call_restore(s, snapshot).await
        })
        .await?;
        self.guest_result("restore", r)
    }

    /// Whether the policy's filesystem/environment grants changed since this instance was
    /// made (its preopens and environment would outlive the change).
    pub(crate) fn wasi_stale(&self) -> bool {
        let data = self.store.data();
        data.wasi_generation != data.policy.wasi_generation()
    }

    /// Log lines the last event wrote past the `log` interface's per-event cap (dropped).
    pub fn log_dropped(&self) -> u32 {
        self.store.data().log.dropped()
    }

    /// Fuel the last event used.
    pub fn fuel_used(&self) -> u64 {
        let budget = self.store.data().limits.fuel;
        budget.saturating_sub(self.store.get_fuel().unwrap_or(budget))
    }

    /// Bytes of linear memory the instance holds.
    pub(crate) fn memory_used(&self) -> u64 {
        self.store.data().limiter.memory_used()
    }

    /// Takes the instance's bus subscriptions (they stay on the bus) for its successor.
    pub(super) fn take_subscriptions(&mut self) -> Option<HeldSubscriptions> {
        self.store.data_mut().market_subs.clear();
        self.store
            .data_mut()
            .bus
            .as_mut()
            .map(BusLink::take_subscriptions)
    }

    /// Gives the instance its predecessor's subscriptions to take over.
    fn adopt(&mut self, held: HeldSubscriptions) {
        if let Some(link) = self.store.data_mut().bus.as_mut() {
            link.adopt(held);
        }
    }

    /// Ends the predecessor's subscriptions this instance did not ask for again.
    fn end_unadopted(&mut self) {
        if let Some(link) = self.store.data_mut().bus.as_mut() {
            link.end_unadopted();
        }
    }

    /// Makes the next guarded call run out of fuel at once (fault injection).
    pub(super) fn starve_next_call(&mut self) {
        self.store.data_mut().limits.fuel = 0;
    }

    fn guest_result(&self, call: &'static str, r: Result<(), wit::Error>) -> Result<(), CallError> {
        // The guest's text goes to the log, the status and the audit: capped and with its
        // control characters escaped.
        r.map_err(|e| CallError::Guest {
            plugin: self.store.data().plugin.clone(),
            call,
            message: crate::guest_text::sanitize_owned(describe_error(&e)),
        })
    }
}

/// Renders a guest-visible error the way operators read it.
pub(crate) fn describe_error(e: &wit::Error) -> String {
    match e {
        wit::Error::Denied(m) => format!("denied: {m}"),
        wit::Error::LimitExceeded(m) => format!("limit exceeded: {m}"),
        wit::Error::InvalidArgument(m) => format!("invalid argument: {m}"),
        wit::Error::NotFound(m) => format!("not found: {m}"),
        wit::Error::Unavailable(m) => format!("unavailable: {m}"),
        wit::Error::Timeout => "timeout".into(),
    }
}

fn to_wit_message(m: &Message) -> wit::Message {
    wit::Message {
        id: m.id.clone(),
        subject: m.subject.clone(),
        sender: m.sender.clone(),
        correlation_id: m.correlation_id.clone(),
        reply_to: m.reply_to.clone(),
        priority: wit::Priority::Normal,
        timestamp: m.timestamp,
        headers: m.headers.clone(),
        payload: m.payload.clone(),
    }
}
