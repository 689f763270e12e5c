//! A tool that panics on request: `{"mode": "panic"}` writes a line to stderr and panics,
//! so a test can see the panic's message and location reach the caller; `{"mode": "ok"}`
//! (its example) answers `{"ok": true}`. Its input schema allows only those two modes, so
//! a call with any other argument must be refused before it runs.

use exports::colony::plugin::tool_handler::{Guest, ToolSpec};

wit_bindgen::generate!({ path: "../../../wit", world: "tool", generate_all });

struct Tool;

impl Guest for Tool {
    fn describe() -> ToolSpec {
        ToolSpec {
            name: "panic-tool".into(),
            description: "Panics on request; test guest.".into(),
            input_schema: r#"{"type":"object","properties":{"mode":{"enum":["ok","panic"]}},"required":["mode"],"additionalProperties":false,"examples":[{"mode":"ok"}]}"#.into(),
            output_schema: None,
        }
    }

    fn invoke(args_json: String) -> Result<String, String> {
        // No JSON parser in the guest: the host has checked the arguments against the schema.
        if args_json.contains("\"panic\"") {
            eprintln!("panic-tool: about to fail");
            panic!("tool panic on purpose");
        }
        Ok(r#"{"ok": true}"#.into())
    }
}

export!(Tool);
