//! Tools (agents only): list the tools this agent may call, call one with JSON arguments, and
//! register a new tool component at run time (the path of an agent that writes integrations).
//!
//! [`call`] needs `tools.call:<name-pattern>` and [`register`] needs `tools.register`; a
//! missing grant is [`ToolError::Denied`] naming it. Arguments are checked against the tool's
//! JSON Schema before the tool runs ([`ToolError::InvalidArguments`]); the tool runs in its own
//! sandbox, a fresh instance per call, under its own grants and limits, and the time it takes
//! counts against this agent's deadline. [`list`] shows only the tools this agent may call,
//! with the descriptor an MCP client would see (name, description, JSON Schemas).
//!
//! Off `wasm32` (native unit tests) there is no host: [`provide`] installs a native stand-in
//! for a tool name on this thread, [`call`] answers from it (or [`ToolError::NotFound`]),
//! [`list`] lists the stand-ins, and [`register`] answers [`ToolError::Unavailable`].
//!
//! ```
//! use colony_sdk::tools::{self, ToolError};
//!
//! # tools::provide("echo", |args| Ok(args.to_string()));
//! // Ask the `echo` tool; an agent needs `tools.call:echo` (or `tools.call:*`).
//! let out = tools::call("echo", r#"{"text":"hi"}"#)?;
//! assert_eq!(out, r#"{"text":"hi"}"#);
//! assert!(matches!(tools::call("nope", "{}"), Err(ToolError::NotFound(_))));
//! # Ok::<(), ToolError>(())
//! ```

pub use crate::__bindings::agent::colony::plugin::tools::{Rejection, ToolError, ToolInfo};

/// The tools this agent may call, sorted by name.
pub fn list() -> Vec<ToolInfo> {
    imp::list()
}

/// Calls `name` (or `name@version`) with JSON arguments; returns the tool's JSON result.
pub fn call(name: &str, args_json: &str) -> Result<String, ToolError> {
    imp::call(name, args_json)
}

/// [`call`] with arguments and result as `serde_json` values (feature `json`).
#[cfg(feature = "json")]
pub fn call_json(name: &str, args: &serde_json::Value) -> Result<serde_json::Value, ToolError> {
    let out = call(name, &args.to_string())?;
    serde_json::from_str(&out)
        .map_err(|e| ToolError::Tool(format!("{name}: the result is not JSON: {e}")))
}

/// Validates and registers a tool component (bytes of a `.wasm` built for the `tool` world).
/// A validation failure is [`ToolError::Rejected`] with the step and the reason; nothing is
/// stored then.
pub fn register(component: &[u8]) -> Result<ToolInfo, ToolError> {
    imp::register(component)
}

/// Off `wasm32`: answers calls to `name` on this thread with `f` (a stand-in for the host's
/// tool in native unit tests).
#[cfg(not(target_arch = "wasm32"))]
pub fn provide(name: &str, f: impl Fn(&str) -> Result<String, String> + 'static) {
    imp::provide(name, Box::new(f));
}

#[cfg(target_arch = "wasm32")]
mod imp {
    use super::*;
    use crate::__bindings::agent::colony::plugin::tools as host;

    pub fn list() -> Vec<ToolInfo> {
        host::list()
    }
    pub fn call(name: &str, args_json: &str) -> Result<String, ToolError> {
        host::call(name, args_json)
    }
    pub fn register(component: &[u8]) -> Result<ToolInfo, ToolError> {
        host::register(component)
    }
}

#[cfg(not(target_arch = "wasm32"))]
mod imp {
    use super::*;
    use std::cell::RefCell;
    use std::collections::BTreeMap;

    type StandIn = Box<dyn Fn(&str) -> Result<String, String>>;

    thread_local! {
        static TOOLS: RefCell<BTreeMap<String, StandIn>> = RefCell::new(BTreeMap::new());
    }

    pub fn provide(name: &str, f: StandIn) {
        TOOLS.with(|t| t.borrow_mut().insert(name.to_string(), f));
    }
    pub fn list() -> Vec<ToolInfo> {
        TOOLS.with(|t| {
            t.borrow()
                .keys()
                .map(|name| ToolInfo {
                    name: name.clone(),
                    version: "0.0.0".into(),
                    digest: String::new(),
                    description: "native stand-in".into(),
                    input_schema: "true".into(),
                    output_schema: None,
                })
                .collect()
        })
    }
    pub fn call(name: &str, args_json: &str) -> Result<String, ToolError> {
        let tool = name.split('@').next().unwrap_or(name);
        TOOLS.with(|t| match t.borrow().get(tool) {
            Some(f) => f(args_json).map_err(|m| ToolError::Tool(format!("{tool}: {m}"))),
            None => Err(ToolError::NotFound(format!("no registered tool {name}"))),
        })
    }
    pub fn register(_component: &[u8]) -> Result<ToolInfo, ToolError> {
        Err(ToolError::Unavailable(
            "no host: tools are registered only inside Colony".into(),
        ))
    }
}
