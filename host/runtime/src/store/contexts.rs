//! The contexts a store hands its host interfaces, each borrowing only what its interface
//! needs, and the two worlds' linkers composed from the interfaces' own `add_to_linker`s.

use wasmtime::component::Linker;

use super::StoreState;
use crate::bus::SubscriptionId;
use crate::interfaces::log::LogCtx;
use crate::interfaces::market::{MarketCtx, Subscriptions};
use crate::interfaces::messaging::{BusLink, MessagingCtx};
use crate::interfaces::orders::OrdersCtx;
use crate::interfaces::state::StateCtx;
use crate::interfaces::timers::TimersCtx;
use crate::interfaces::tools::ToolsCtx;
use crate::interfaces::{self, Gate};

impl StoreState {
    /// The `log` interface's context.
    pub(crate) fn log_ctx(&mut self) -> LogCtx<'_> {
        LogCtx {
            plugin: &self.plugin,
            budget: &mut self.log,
        }
    }

    /// The `state` interface's context.
    pub(crate) fn state_ctx(&mut self) -> StateCtx<'_> {
        StateCtx {
            plugin: &self.plugin,
            store: self.state.as_ref(),
        }
    }

    /// The `messaging` interface's context.
    pub(crate) fn messaging_ctx(&mut self) -> MessagingCtx<'_> {
        MessagingCtx {
            plugin: &self.plugin,
            gate: Gate {
                policy: &self.policy,
                checks: &mut self.checks,
            },
            limits: &self.limits,
            hang_guard_at: self.hang_guard_at,
            clock: &self.clock,
            link: self.bus.as_mut(),
        }
    }

    /// The `market-data` interface's context.
    pub(crate) fn market_ctx(&mut self) -> MarketCtx<'_> {
        MarketCtx {
            gate: Gate {
                policy: &self.policy,
                checks: &mut self.checks,
            },
            market: self.market.as_deref(),
            subs: &mut self.market_subs,
            link: self.bus.as_mut().map(|l| l as &mut dyn Subscriptions),
        }
    }

    /// The `orders` interface's context.
    pub(crate) fn orders_ctx(&mut self) -> OrdersCtx<'_> {
        OrdersCtx {
            plugin: &self.plugin,
            gate: Gate {
                policy: &self.policy,
                checks: &mut self.checks,
            },
            clock: &self.clock,
            router: self.orders.as_ref(),
        }
    }

    /// The `tools` interface's context.
    pub(crate) fn tools_ctx(&mut self) -> ToolsCtx<'_> {
        ToolsCtx {
            plugin: &self.plugin,
            gate: Gate {
                policy: &self.policy,
                checks: &mut self.checks,
            },
            access: self.tools.as_deref(),
        }
    }

    /// The `timers` interface's context.
    pub(crate) fn timers_ctx(&mut self) -> TimersCtx<'_> {
        TimersCtx {
            plugin: &self.plugin,
            timers: self.timers.as_deref(),
        }
    }
}

/// Market-data subscriptions are the instance's bus subscriptions.
impl Subscriptions for BusLink {
    fn subscribe_for_host(&mut self, pattern: &str) -> Result<SubscriptionId, String> {
        BusLink::subscribe_for_host(self, pattern)
    }

    fn unsubscribe_for_host(&mut self, id: SubscriptionId) -> bool {
        BusLink::unsubscribe_for_host(self, id)
    }
}

/// Links the `agent` world's `colony:plugin` imports, one interface at a time, each with
/// its own context (WASI is linked apart).
pub fn add_agent_interfaces(linker: &mut Linker<StoreState>) -> wasmtime::Result<()> {
    interfaces::add_types_to_linker(linker)?;
    interfaces::log::add_to_linker(linker, StoreState::log_ctx)?;
    interfaces::state::add_to_linker(linker, StoreState::state_ctx)?;
    interfaces::messaging::add_to_linker(linker, StoreState::messaging_ctx)?;
    interfaces::market::add_to_linker(linker, StoreState::market_ctx)?;
    interfaces::orders::add_to_linker(linker, StoreState::orders_ctx)?;
    interfaces::tools::add_to_linker(linker, StoreState::tools_ctx)?;
    interfaces::timers::add_to_linker(linker, StoreState::timers_ctx)
}

/// Links the `tool` world's `colony:plugin` imports (`types` and `log`; WASI and
/// `wasi:http` are linked apart).
pub fn add_tool_interfaces(linker: &mut Linker<StoreState>) -> wasmtime::Result<()> {
    interfaces::add_types_to_linker(linker)?;
    interfaces::log::add_to_linker(linker, StoreState::log_ctx)
}
