//! A tool whose `invoke` never returns: the tool deadline and fuel limits must stop it.

use exports::colony::plugin::tool_handler::{Guest, ToolSpec};

wit_bindgen::generate!({ path: "../../../wit", world: "tool", generate_all });

struct Tool;

impl Guest for Tool {
    fn describe() -> ToolSpec {
        ToolSpec {
            name: "loop-tool".into(),
            description: "Never returns from invoke; test guest.".into(),
            input_schema: "{}".into(),
            output_schema: None,
        }
    }

    fn invoke(_args_json: String) -> Result<String, String> {
        let mut spins = 0u64;
        loop {
            // black_box keeps the loop from being optimised into a trap or removed.
            spins = std::hint::black_box(spins.wrapping_add(1));
        }
    }
}

export!(Tool);
