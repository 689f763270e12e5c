//! Builds the shipped plugins (`plugins/`) for wasm32-wasip2 and embeds them in the `colony`
//! binary, so `colony run` works with no setup and no files beside the binary.

#[path = "build/wasm.rs"]
mod wasm;

use std::path::PathBuf;

fn main() {
    let manifest_dir = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").unwrap_or_default());
    let root = manifest_dir.parent().map(PathBuf::from).unwrap_or_default();
    let plugins = root.join("plugins");
    for dir in [&plugins, &root.join("sdk"), &root.join("wit")] {
        wasm::rerun_if_tree_changed(dir);
    }
    println!("cargo:rerun-if-changed=build/wasm.rs");
    let out_dir = wasm::build_workspace(&plugins, &root.join("target").join("wasm"));

    let mut crates: Vec<String> = std::fs::read_dir(&plugins)
        .map(|rd| {
            rd.flatten()
                .filter(|e| e.path().join("Cargo.toml").is_file())
                .filter_map(|e| e.file_name().into_string().ok())
                .collect()
        })
        .unwrap_or_default();
    crates.sort();
    // The bench agent is for `colony bench`, not for the demo folder.
    crates.retain(|c| c != "bench-agent");
    let bench = out_dir.join("bench_agent.wasm");
    let mut code = String::from(
        "/// The shipped plugins, built from `plugins/`: (file name, component bytes).\n\
         pub const PLUGINS: &[(&str, &[u8])] = &[\n",
    );
    for name in crates {
        let wasm = out_dir.join(format!("{}.wasm", name.replace('-', "_")));
        if !wasm.is_file() {
            panic!("plugin {name} did not produce {}", wasm.display());
        }
        code.push_str(&format!(
            "    ({:?}, include_bytes!({:?})),\n",
            format!("{name}.wasm"),
            wasm.display().to_string()
        ));
    }
    code.push_str("];\n");
    code.push_str(&format!(
        "/// `plugins/bench-agent`, the component `colony bench` measures.\n\
         pub const BENCH_AGENT: &[u8] = include_bytes!({:?});\n",
        bench.display().to_string()
    ));
    let out = PathBuf::from(std::env::var("OUT_DIR").unwrap_or_default()).join("embedded.rs");
    if let Err(e) = std::fs::write(&out, code) {
        panic!("cannot write {}: {e}", out.display());
    }
}
