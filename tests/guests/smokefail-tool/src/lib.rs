//! A tool that describes itself well but whose `invoke` panics: registration must fail at
//! the smoke step.

use exports::colony::plugin::tool_handler::{Guest, ToolSpec};

wit_bindgen::generate!({ path: "../../../wit", world: "tool", generate_all });

struct Tool;

impl Guest for Tool {
    fn describe() -> ToolSpec {
        ToolSpec {
            name: "smokefail-tool".into(),
            description: "Fails one registration step on purpose; test guest.".into(),
            input_schema: r#"{"type":"object","examples":[{}]}"#.into(),
            output_schema: None,
        }
    }

    fn invoke(_args_json: String) -> Result<String, String> {
        panic!("smoke call fails on purpose")
    }
}

export!(Tool);
