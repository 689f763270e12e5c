//! The [`Tool`] trait and the adapter that the `export_tool!` macro exports.

use crate::__bindings::tool::exports::colony::plugin::tool_handler::Guest;
use crate::ToolSpec;

/// An integration tool: a stateless function from JSON arguments to a JSON result.
///
/// The host creates a fresh instance for every call, so a tool has no `self` and keeps
/// nothing between calls. Agents call it through `tools.call`; operators through
/// `colony tools invoke NAME JSON`.
///
/// ```
/// use colony_sdk::{Tool, ToolSpec};
///
/// struct Add;
///
/// impl Tool for Add {
///     fn describe() -> ToolSpec {
///         ToolSpec {
///             name: "add".into(),
///             description: "Adds two integers `a` and `b`.".into(),
///             input_schema: r#"{"type":"object","required":["a","b"]}"#.into(),
///             output_schema: None,
///         }
///     }
///
///     fn invoke(args_json: &str) -> Result<String, String> {
///         let args: serde_json::Value =
///             serde_json::from_str(args_json).map_err(|e| format!("invalid JSON: {e}"))?;
///         let (Some(a), Some(b)) = (args["a"].as_i64(), args["b"].as_i64()) else {
///             return Err("`a` and `b` must be integers".into());
///         };
///         Ok((a + b).to_string())
///     }
/// }
///
/// assert_eq!(Add::invoke(r#"{"a":2,"b":3}"#), Ok("5".into()));
/// colony_sdk::export_tool!(Add);
/// ```
pub trait Tool: 'static {
    /// The tool's name (lowercase, digits and `-`, normally the manifest's name), a
    /// description, and the JSON Schema of its input (and optionally of its output).
    fn describe() -> ToolSpec;

    /// Runs the tool on JSON arguments; returns JSON text, or an error message for the
    /// caller.
    fn invoke(args_json: &str) -> Result<String, String>;
}

/// Exported by `export_tool!`: forwards `tool-handler` calls to `T`.
#[doc(hidden)]
pub struct ToolExport<T>(std::marker::PhantomData<T>);

impl<T: Tool> Guest for ToolExport<T> {
    fn describe() -> ToolSpec {
        T::describe()
    }

    fn invoke(args_json: String) -> Result<String, String> {
        T::invoke(&args_json)
    }
}
