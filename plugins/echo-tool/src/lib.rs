//! echo-tool: the smallest useful Colony tool. It returns its arguments wrapped as
//! `{"echo": ARGS}`, and refuses arguments that are not JSON.

use colony_sdk::{Manifest, Tool, ToolSpec};

const MANIFEST: Manifest = Manifest::tool(env!("CARGO_PKG_NAME"), env!("CARGO_PKG_VERSION"))
    .description(env!("CARGO_PKG_DESCRIPTION"));

struct EchoTool;

impl Tool for EchoTool {
    fn describe() -> ToolSpec {
        ToolSpec {
            name: MANIFEST.name.into(),
            description: MANIFEST.description.into(),
            // `examples` gives the input registration smoke-tests with (`docs/tools.md`).
            input_schema: r#"{"type":"object","examples":[{"text":"hello"}]}"#.into(),
            output_schema: Some(
                r#"{"type":"object","properties":{"echo":{}},"required":["echo"]}"#.into(),
            ),
        }
    }

    fn invoke(args_json: &str) -> Result<String, String> {
        let args: serde_json::Value =
            serde_json::from_str(args_json).map_err(|e| format!("arguments are not JSON: {e}"))?;
        Ok(serde_json::json!({ "echo": args }).to_string())
    }
}

colony_sdk::export_tool!(EchoTool, manifest = MANIFEST);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn echoes_json_and_refuses_the_rest() {
        assert_eq!(
            EchoTool::invoke(r#"{"a":[1,"x"]}"#).unwrap(),
            r#"{"echo":{"a":[1,"x"]}}"#
        );
        assert!(
            EchoTool::invoke("{not json")
                .unwrap_err()
                .starts_with("arguments are not JSON")
        );
        assert_eq!(EchoTool::describe().name, "echo-tool");
    }
}
