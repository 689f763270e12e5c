//! {{name}}: a Colony tool. Build with `cargo build --release`; see README.md.

use colony_sdk::{Manifest, Tool, ToolSpec};

/// Who this plugin is and what it asks for; embedded in the component at compile time.
/// The name and version come from Cargo.toml.
const MANIFEST: Manifest = Manifest::tool(env!("CARGO_PKG_NAME"), env!("CARGO_PKG_VERSION"))
    .description(env!("CARGO_PKG_DESCRIPTION"))
    // Capabilities to request, e.g. "http.outbound:https://api.example.com".
    // The operator decides what is granted.
    .capabilities(&[]);

/// A tool has no state: the host creates a fresh instance for every call.
struct MyTool;

impl Tool for MyTool {
    fn describe() -> ToolSpec {
        ToolSpec {
            name: MANIFEST.name.into(),
            description: MANIFEST.description.into(),
            // JSON Schema (draft 2020-12) of the arguments `invoke` accepts.
            input_schema: r#"{"type":"object"}"#.into(),
            output_schema: None,
        }
    }

    fn invoke(args_json: &str) -> Result<String, String> {
        colony_sdk::debug!("{} invoked with {} bytes", MANIFEST.name, args_json.len());
        // Replace with the tool's work; return JSON text, or an error message.
        Ok(args_json.to_string())
    }
}

colony_sdk::export_tool!(MyTool, manifest = MANIFEST);

#[cfg(test)]
mod tests {
    //! Off wasm32 the SDK logs to stderr, so the logic runs natively:
    //! `cargo test --target "$(rustc -vV | sed -n 's/host: //p')"`.

    use super::*;

    #[test]
    fn returns_its_arguments() {
        assert_eq!(MyTool::invoke(r#"{"a":1}"#), Ok(r#"{"a":1}"#.to_string()));
        assert_eq!(MyTool::describe().name, "{{name}}");
    }
}
