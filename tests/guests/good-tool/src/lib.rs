//! A well-behaved tool: `invoke` answers `{"len": N}` with the byte length of its arguments.

use exports::colony::plugin::tool_handler::{Guest, ToolSpec};

wit_bindgen::generate!({ path: "../../../wit", world: "tool", generate_all });

struct Tool;

impl Guest for Tool {
    fn describe() -> ToolSpec {
        ToolSpec {
            name: "good-tool".into(),
            description: "Returns the byte length of its arguments; test guest.".into(),
            input_schema: "{}".into(),
            output_schema: Some(
                r#"{"type":"object","properties":{"len":{"type":"integer"}},"required":["len"]}"#
                    .into(),
            ),
        }
    }

    fn invoke(args_json: String) -> Result<String, String> {
        Ok(format!(r#"{{"len": {}}}"#, args_json.len()))
    }
}

export!(Tool);
