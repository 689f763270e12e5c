//! A tool that imports `colony:plugin/state`, which the tool world does not offer:
//! registration must fail at the imports step. `invoke` calls it so the import is kept.

use exports::colony::plugin::tool_handler::{Guest, ToolSpec};

wit_bindgen::generate!({
    path: ["../../../wit", "wit"],
    world: "colony:badtool/state-tool",
    generate_all,
});

struct Tool;

impl Guest for Tool {
    fn describe() -> ToolSpec {
        ToolSpec {
            name: "badimport-tool".into(),
            description: "Imports state; test guest.".into(),
            input_schema: r#"{"examples":[{}]}"#.into(),
            output_schema: None,
        }
    }

    fn invoke(_args_json: String) -> Result<String, String> {
        let v = colony::plugin::state::get("k");
        Ok(format!("{}", std::hint::black_box(v).is_ok()))
    }
}

export!(Tool);
