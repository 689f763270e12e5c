// Shared by schema-tool (1.0.0) and schema-tool-v2 (2.0.0); each defines VERSION and
// MANIFEST_JSON before including this file.

use exports::colony::plugin::tool_handler::{Guest, ToolSpec};

wit_bindgen::generate!({ path: "../../../wit", world: "tool", generate_all });

#[unsafe(link_section = "colony-manifest")]
#[used]
static MANIFEST: [u8; MANIFEST_JSON.len()] = {
    let mut out = [0u8; MANIFEST_JSON.len()];
    let mut i = 0;
    while i < out.len() {
        out[i] = MANIFEST_JSON[i];
        i += 1;
    }
    out
};

struct Tool;

impl Guest for Tool {
    fn describe() -> ToolSpec {
        ToolSpec {
            name: "schema-tool".into(),
            description: "Echoes n and its own version; spins forever when spin is true; test guest.".into(),
            input_schema: r#"{"type":"object","properties":{"n":{"type":"integer"},"spin":{"type":"boolean"}},"required":["n"],"additionalProperties":false,"examples":[{"n":1}]}"#.into(),
            output_schema: Some(
                r#"{"type":"object","properties":{"n":{"type":"integer"},"version":{"type":"string"}},"required":["n","version"]}"#.into(),
            ),
        }
    }

    fn invoke(args_json: String) -> Result<String, String> {
        // No JSON parser in the guest: the host has checked the arguments against the schema.
        if args_json.contains("\"spin\":true") || args_json.contains("\"spin\": true") {
            let mut spins = 0u64;
            loop {
                spins = std::hint::black_box(spins.wrapping_add(1));
            }
        }
        let n = args_json
            .split("\"n\"")
            .nth(1)
            .map(|rest| {
                rest.trim_start_matches([':', ' '])
                    .chars()
                    .take_while(|c| c.is_ascii_digit() || *c == '-')
                    .collect::<String>()
            })
            .unwrap_or_default();
        Ok(format!(r#"{{"n":{n},"version":"{VERSION}"}}"#))
    }
}

export!(Tool);
