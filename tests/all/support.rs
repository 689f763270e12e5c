//! Running the `colony` binary from tests: one command at a time, or a `colony run` host that
//! is killed when the test ends.

use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

/// The `colony` binary (built as the tests package's `colony-test-cli`).
pub const COLONY: &str = env!("CARGO_BIN_EXE_colony-test-cli");

/// Runs `colony --data-dir DATA ARGS…` to completion.
pub fn colony(data_dir: &Path, args: &[&str]) -> Output {
    Command::new(COLONY)
        .arg("--data-dir")
        .arg(data_dir)
        .args(args)
        .env("COLONY_LOG", "warn")
        .output()
        .unwrap_or_else(|e| panic!("cannot run colony: {e}"))
}

/// A command's stdout as text.
pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// A command's stderr as text.
pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// A `colony run` process, killed (SIGKILL) when dropped.
pub struct Running(pub Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts `colony run --plugins PLUGINS --tick-ms TICK_MS` on `data` and waits (up to 60 s)
/// until its admin socket answers `colony status`.
pub fn start_host(data: &Path, plugins: &Path, tick_ms: u32) -> Running {
    start_host_with(data, plugins, tick_ms, &[])
}

/// [`start_host`] with more `colony run` arguments (`--feed none`, say).
pub fn start_host_with(data: &Path, plugins: &Path, tick_ms: u32, extra: &[&str]) -> Running {
    let child = Command::new(COLONY)
        .arg("--data-dir")
        .arg(data)
        .args(["run", "--tick-ms", &tick_ms.to_string(), "--plugins"])
        .arg(plugins)
        .args(extra)
        .env("COLONY_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start colony run: {e}"));
    let host = Running(child);
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let out = colony(data, &["status"]);
        if out.status.success() {
            return host;
        }
        assert!(
            Instant::now() < deadline,
            "host did not come up: {}",
            stderr(&out)
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}
