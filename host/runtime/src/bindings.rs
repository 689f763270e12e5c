//! Host-side bindings generated from `wit/` by wasmtime's `bindgen!`, one module per world.
//! The rest of the host sees the interface modules, not the generated code; the agent world
//! and its interfaces are public only for `colony-bench`, whose raw-wasmtime baseline
//! implements them as no-ops.

/// The `agent` world: imports `types`, `log`, `state`; exports `handler`.
pub mod agent {
    wasmtime::component::bindgen!({
        path: "../../wit",
        world: "agent",
        imports: {
            // `log` never waits: a synchronous call is cheapest on the hot path.
            "colony:plugin/log": trappable,
            default: async | trappable,
        },
        exports: { default: async },
    });
}

/// The `tool` world: imports `log` and `wasi:http/outgoing-handler`; exports `tool-handler`.
/// Shares the `log` types with the agent world so one host implementation serves both, and
/// maps the WASI packages onto wasmtime-wasi's and wasmtime-wasi-http's own bindings, so
/// their implementations serve a tool (linked in `plugin::Loader`, with the host's
/// `send_request` in `store::http`). Because of that mapping `Tool::add_to_linker` is not
/// used: the loader links `log` and `wasi:http` one by one.
pub(crate) mod tool {
    wasmtime::component::bindgen!({
        path: "../../wit",
        world: "tool",
        imports: { default: async | trappable },
        exports: { default: async },
        with: {
            "colony:plugin/log": super::agent::colony::plugin::log,
            "wasi:http": wasmtime_wasi_http::p2::bindings::http,
            "wasi:io": wasmtime_wasi::p2::bindings::io,
            "wasi:clocks": wasmtime_wasi::p2::bindings::clocks,
        },
    });
}

/// The agent world's imported interfaces.
pub use agent::colony::plugin::{log, market_data, messaging, orders, state, timers, tools, types};
