//! Builds the test guests (`tests/guests`, a wasm32-wasip2 workspace) into
//! `<workspace root>/target/wasm` and exports each component's path as `GUEST_<NAME>`
//! (`good-agent` → `GUEST_GOOD_AGENT`), read by `src/lib.rs` with `env!`.

#[path = "../host/build/wasm.rs"]
mod wasm;

use std::path::{Path, PathBuf};

fn main() {
    let manifest_dir = PathBuf::from(
        std::env::var_os("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR"),
    );
    let root = manifest_dir
        .parent()
        .expect("tests/ is inside the workspace root")
        .to_path_buf();
    let guests = manifest_dir.join("guests");

    wasm::rerun_if_tree_changed(&guests);
    wasm::rerun_if_tree_changed(&root.join("wit"));

    let out = wasm::build_workspace(&guests, &root.join("target").join("wasm"));
    for name in guest_crates(&guests) {
        let file = out.join(format!("{}.wasm", name.replace('-', "_")));
        if !file.is_file() {
            panic!("guest {name} built but {} is missing", file.display());
        }
        let var = format!("GUEST_{}", name.replace('-', "_").to_uppercase());
        println!("cargo:rustc-env={var}={}", file.display());
    }
}

/// Every crate directory of the guests workspace (a directory holding a `Cargo.toml`), so a
/// new guest needs only its crate, its workspace member line and its constant in `src/lib.rs`.
fn guest_crates(guests: &Path) -> Vec<String> {
    let entries = std::fs::read_dir(guests)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", guests.display()));
    let mut names: Vec<String> = entries
        .flatten()
        .filter(|e| e.path().join("Cargo.toml").is_file())
        .filter_map(|e| e.file_name().to_str().map(str::to_owned))
        .collect();
    names.sort();
    names
}
