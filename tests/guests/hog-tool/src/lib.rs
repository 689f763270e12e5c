//! A registrable tool that turns hostile on request, one mode per limit a tool call runs
//! under: `{"mode": "ok"}` (its example) answers `{"ok": true}`; `spin` never returns (the
//! deadline, or fuel); `burn` runs a long finite loop (fuel); `memory` grows linear memory
//! without bound (memory); `flood` writes to stdout without end (output); `big` answers
//! 2 MiB of JSON (the result cap).

use std::io::Write;

use exports::colony::plugin::tool_handler::{Guest, ToolSpec};

wit_bindgen::generate!({ path: "../../../wit", world: "tool", generate_all });

const PAGE: usize = 64 * 1024;
const CHUNK: usize = 1 << 20;

struct Tool;

fn mode(args_json: &str) -> &str {
    // No JSON parser in the guest: the host has checked the arguments against the schema.
    for m in ["spin", "burn", "memory", "flood", "big"] {
        if args_json.contains(&format!("\"{m}\"")) {
            return m;
        }
    }
    "ok"
}

impl Guest for Tool {
    fn describe() -> ToolSpec {
        ToolSpec {
            name: "hog-tool".into(),
            description: "Hostile on request, one mode per limit; test guest.".into(),
            input_schema: r#"{"type":"object","properties":{"mode":{"enum":["ok","spin","burn","memory","flood","big"]}},"required":["mode"],"additionalProperties":false,"examples":[{"mode":"ok"}]}"#.into(),
            output_schema: None,
        }
    }

    fn invoke(args_json: String) -> Result<String, String> {
        match mode(&args_json) {
            "spin" => {
                let mut spins = 0u64;
                loop {
                    spins = std::hint::black_box(spins.wrapping_add(1));
                }
            }
            "burn" => {
                // Finite but far beyond any fuel budget a test sets.
                let mut acc = 0u64;
                for i in 0..u64::MAX {
                    acc = std::hint::black_box(acc ^ i);
                }
                Ok(format!("{{\"acc\": {acc}}}"))
            }
            "memory" => loop {
                let old_pages = core::arch::wasm32::memory_grow(0, CHUNK / PAGE);
                if old_pages == usize::MAX {
                    // Refused without a trap: keep asking.
                    continue;
                }
                let base = old_pages * PAGE;
                for offset in (0..CHUNK).step_by(PAGE) {
                    // SAFETY: memory.grow just added these bytes; nothing else owns them.
                    unsafe { std::ptr::write_volatile((base + offset) as *mut u8, 1) };
                }
            },
            "flood" => {
                let line = [b'x'; 1024];
                let mut stdout = std::io::stdout();
                loop {
                    let _ = stdout.write_all(&line);
                }
            }
            "big" => Ok(format!("\"{}\"", "x".repeat(2 << 20))),
            _ => Ok(r#"{"ok": true}"#.into()),
        }
    }
}

export!(Tool);
