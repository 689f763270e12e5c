//! Host-side bindings generated from `wit/` by wasmtime's `bindgen!`, one module per world.
//! Kept private to the crate: the rest of the host sees the interface modules, not the
//! generated code.

/// The `agent` world: imports `types`, `log`, `state`; exports `handler`.
pub(crate) mod agent {
    wasmtime::component::bindgen!({
        path: "../wit",
        world: "agent",
        imports: {
            // `log` never waits: a synchronous call is cheapest on the hot path.
            "colony:plugin/log": trappable,
            default: async | trappable,
        },
        exports: { default: async },
    });
}

/// The `tool` world: imports `log`; exports `tool-handler`. Shares the `log` types with the
/// agent world so one host implementation serves both.
pub(crate) mod tool {
    wasmtime::component::bindgen!({
        path: "../wit",
        world: "tool",
        imports: { default: async | trappable },
        exports: { default: async },
        with: { "colony:plugin/log": super::agent::colony::plugin::log },
    });
}

pub(crate) use agent::colony::plugin::{log, market_data, messaging, orders, state, types};
