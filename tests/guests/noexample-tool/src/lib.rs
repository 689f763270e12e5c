//! A tool whose input schema is valid but gives no example input: registration must fail at
//! the describe step.

use exports::colony::plugin::tool_handler::{Guest, ToolSpec};

wit_bindgen::generate!({ path: "../../../wit", world: "tool", generate_all });

struct Tool;

impl Guest for Tool {
    fn describe() -> ToolSpec {
        ToolSpec {
            name: "noexample-tool".into(),
            description: "Fails one registration step on purpose; test guest.".into(),
            input_schema: r#"{"type":"object"}"#.into(),
            output_schema: None,
        }
    }

    fn invoke(_args_json: String) -> Result<String, String> {
        Ok("{}".into())
    }
}

export!(Tool);
