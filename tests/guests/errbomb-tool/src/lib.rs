//! A hostile tool whose `invoke` fails with a 4 MiB error full of newlines and text shaped
//! like host lines, and whose `describe` has a 200 KiB description: the host must cap both
//! (with a marker) before they reach a caller, a log or the CLI.

use exports::colony::plugin::tool_handler::{Guest, ToolSpec};

wit_bindgen::generate!({ path: "../../../wit", world: "tool", generate_all });

struct Tool;

impl Guest for Tool {
    fn describe() -> ToolSpec {
        ToolSpec {
            name: "errbomb-tool".into(),
            description: format!("Fails every call with a huge error; test guest. {}", "d".repeat(200 * 1024)),
            input_schema: "{}".into(),
            output_schema: None,
        }
    }

    fn invoke(_args_json: String) -> Result<String, String> {
        Err("FORGED-HOST-LINE ERROR colony: tool error\n".repeat(100_000))
    }
}

export!(Tool);
