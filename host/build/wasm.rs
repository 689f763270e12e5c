//! Builds a workspace of wasm32-wasip2 crates from a build script (shared by the host's
//! build script, which embeds the shipped plugins, and the tests' build script, which builds
//! the test guests). Included with `#[path]`, so it uses only `std`.

use std::path::{Path, PathBuf};
use std::process::Command;

pub const TARGET: &str = "wasm32-wasip2";

/// Builds every binary/cdylib crate of the workspace at `workspace` in release mode into
/// `target_dir` and returns the directory holding the `.wasm` files.
///
/// Panics with the nested cargo's output on failure: a build script has no other way to
/// report, and the message is what the developer needs to see.
pub fn build_workspace(workspace: &Path, target_dir: &Path) -> PathBuf {
    ensure_target();
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut cmd = Command::new(cargo);
    cmd.current_dir(workspace)
        .args(["build", "--release", "--workspace", "--target", TARGET])
        .arg("--target-dir")
        .arg(target_dir);
    // The outer cargo's settings are for the host build, not for the guests.
    for var in [
        "RUSTFLAGS",
        "CARGO_ENCODED_RUSTFLAGS",
        "CARGO_BUILD_RUSTFLAGS",
        "CARGO_TARGET_DIR",
        "CARGO_BUILD_TARGET",
        "RUSTC_WORKSPACE_WRAPPER",
        "RUSTC_WRAPPER",
        "CARGO_MAKEFLAGS",
        "CARGO_LLVM_COV",
        "LLVM_PROFILE_FILE",
    ] {
        cmd.env_remove(var);
    }
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("cannot run cargo for {}: {e}", workspace.display()));
    if !out.status.success() {
        panic!(
            "building wasm workspace {} failed:\n{}",
            workspace.display(),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    target_dir.join(TARGET).join("release")
}

/// Installs the wasm32-wasip2 standard library with rustup when it is missing, so a fresh
/// machine with only the Rust toolchain builds without a separate setup step.
fn ensure_target() {
    let rustc = std::env::var("RUSTC").unwrap_or_else(|_| "rustc".into());
    let libdir = Command::new(rustc)
        .args(["--print", "target-libdir", "--target", TARGET])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| PathBuf::from(String::from_utf8_lossy(&o.stdout).trim().to_string()));
    if libdir.as_deref().is_some_and(Path::is_dir) {
        return;
    }
    let status = Command::new("rustup")
        .args(["target", "add", TARGET])
        .status();
    if !matches!(status, Ok(s) if s.success()) {
        panic!("the {TARGET} target is missing and `rustup target add {TARGET}` failed");
    }
}

/// Tells cargo to rerun the build script when anything under `dir` changes (except `target`).
pub fn rerun_if_tree_changed(dir: &Path) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.file_name().is_some_and(|n| n == "target") {
            continue;
        }
        if path.is_dir() {
            rerun_if_tree_changed(&path);
        } else {
            println!("cargo:rerun-if-changed={}", path.display());
        }
    }
}
