//! The tool-call measurement: a registered tool call through `ToolRegistry::invoke` against
//! one subprocess per call doing the same work (the `colony` binary's hidden subcommand,
//! `python3 -c`, and the floor of any subprocess).

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::Serialize;

use colony_host::engine::{EngineSettings, Runtime};
use colony_host::limits::Limits;
use colony_host::plugin::Loader;
use colony_host::policy::Policy;

use crate::tempfile_dir;

/// The hidden `colony` subcommand that is the subprocess baseline of [`tool_call`]: it reads
/// JSON arguments on stdin and writes [`echo`] of them on stdout. `cli::main` looks for it
/// before parsing arguments, setting up logging or starting the async runtime.
pub const TOOL_SUBPROCESS: &str = "__bench-tool-subprocess";

/// The arguments every call of [`tool_call`] passes: a small object, as an agent's tool call.
pub const TOOL_ARGS: &str =
    r#"{"symbol":"BTC-USDT","side":"buy","qty":"0.001","tags":["bench",1,true,null]}"#;

/// What `plugins/echo-tool` does, natively: the arguments, which must be JSON, wrapped as
/// `{"echo": ARGS}`.
pub fn echo(args_json: &str) -> Result<String, String> {
    let args: serde_json::Value =
        serde_json::from_str(args_json).map_err(|e| format!("arguments are not JSON: {e}"))?;
    Ok(serde_json::json!({ "echo": args }).to_string())
}

/// The body of [`TOOL_SUBPROCESS`]: [`echo`] of everything on `input`, written to `output`.
pub fn tool_subprocess_io(
    input: &mut dyn std::io::Read,
    output: &mut dyn std::io::Write,
) -> Result<(), String> {
    let mut args = String::new();
    input
        .read_to_string(&mut args)
        .map_err(|e| format!("cannot read the arguments: {e}"))?;
    let out = echo(&args)?;
    output
        .write_all(out.as_bytes())
        .and_then(|()| output.flush())
        .map_err(|e| format!("cannot write the result: {e}"))
}

/// The Python baseline: the same as [`echo`], in `python3 -c`.
const PYTHON_ECHO: &str = "import json,sys\n\
    a=json.load(sys.stdin)\n\
    sys.stdout.write(json.dumps({'echo':a},separators=(',',':')))";

/// Per-call latency of one side of [`tool_call`].
#[derive(Debug, Clone, Serialize)]
pub struct Latency {
    /// Calls timed (after the warm-up).
    pub calls: usize,
    /// Median, microseconds.
    pub p50_us: f64,
    /// Mean, microseconds.
    pub mean_us: f64,
}

impl Latency {
    fn of(mut us: Vec<f64>) -> Latency {
        let mean_us = us.iter().sum::<f64>() / us.len().max(1) as f64;
        us.sort_by(|a, b| a.total_cmp(b));
        Latency {
            calls: us.len(),
            p50_us: us.get(us.len() / 2).copied().unwrap_or(f64::NAN),
            mean_us,
        }
    }
}

/// What the tool-call benchmark measured.
#[derive(Debug, Clone, Serialize)]
pub struct ToolBench {
    /// How Colony's calls were made: `ToolRegistry::invoke`.
    pub via: String,
    /// Colony: one registered tool call, each a fresh instance.
    pub tool: Latency,
    /// The program spawned once per call (the `colony` binary, [`TOOL_SUBPROCESS`]).
    pub subprocess_program: String,
    /// One subprocess per call doing the same work, spawn to exit.
    pub subprocess: Latency,
    /// The floor of any subprocess per call: `true` (on PATH) started and waited for, no
    /// input, no work; `None` if there is no `true`.
    pub spawn_floor: Option<Latency>,
    /// The Python interpreter spawned once per call (`python3 -c`), if there is one.
    pub python_program: Option<String>,
    /// One `python3 -c` per call doing the same work, spawn to exit.
    pub python: Option<Latency>,
    /// Why the Python baseline did not run.
    pub python_skipped: Option<String>,
    /// Subprocess p50 / tool p50.
    pub ratio_p50: f64,
    /// Subprocess mean / tool mean.
    pub ratio_mean: f64,
    /// Python p50 / tool p50.
    pub python_ratio_p50: Option<f64>,
    /// The target: a tool call at least this many times faster than a subprocess.
    pub target: f64,
}

/// Settings of [`tool_call`].
#[derive(Debug, Clone)]
pub struct ToolBenchOptions {
    /// Colony tool calls timed.
    pub calls: usize,
    /// Subprocesses spawned (one per call).
    pub spawns: usize,
    /// `python3 -c` processes spawned (one per call); 0 skips the Python baseline.
    pub python_spawns: usize,
    /// The program of the subprocess baseline, run as `PROGRAM __bench-tool-subprocess`:
    /// the `colony` binary itself.
    pub subprocess: std::path::PathBuf,
}

/// Grants nothing: the bench tool needs no capability.
struct NoGrants;

impl colony_host::tools::GrantSource for NoGrants {
    fn policy(&self, name: &str, _digest: &str) -> Arc<Policy> {
        Arc::new(Policy::deny_all(Arc::from(name)))
    }

    fn granted(&self, _name: &str) -> colony_caps::GrantSet {
        colony_caps::GrantSet::default()
    }
}

/// Colony's side of [`tool_call`]: the tool registered in a registry of its own and called
/// through `ToolRegistry::invoke`, as an agent's call goes (the caller's `tools.call` grant,
/// the arguments against the input schema, a fresh instance, the result against the output
/// schema).
struct ToolUnderTest {
    registry: colony_host::tools::ToolRegistry,
    name: String,
    caller: Policy,
}

impl ToolUnderTest {
    /// Registers `component` in a registry kept in `dir`.
    async fn new(
        loader: &Loader,
        component: &[u8],
        dir: std::path::PathBuf,
    ) -> anyhow::Result<ToolUnderTest> {
        let (registry, failures) =
            colony_host::tools::ToolRegistry::open(dir, loader, &NoGrants).await?;
        anyhow::ensure!(failures.is_empty(), "the bench registry: {failures:?}");
        let tool = registry
            .register(loader, &NoGrants, component, &[], None, "bench")
            .await
            .map_err(|e| anyhow::anyhow!("the bench tool cannot be registered: {e}"))?;
        let name = tool.name.clone();
        let caller = Policy::new(
            Arc::from("bench-caller"),
            String::new(),
            colony_caps::GrantSet::new([
                format!("tools.call:{name}").parse::<colony_caps::Capability>()?
            ]),
            None,
            0,
        );
        Ok(ToolUnderTest {
            registry,
            name,
            caller,
        })
    }

    async fn call(&self, args_json: &str) -> anyhow::Result<String> {
        Ok(self
            .registry
            .invoke(&self.name, args_json, Some(&self.caller))
            .await?)
    }
}

/// One call through a new process: `program args…` started, `input` written to its stdin
/// (then closed), its stdout read until it exits. Returns the time from spawn to exit and
/// what it wrote.
fn spawn_call(
    program: &std::path::Path,
    args: &[&str],
    input: &[u8],
) -> anyhow::Result<(Duration, Vec<u8>)> {
    use std::io::Write;
    use std::process::{Command, Stdio};

    let t = Instant::now();
    let mut child = Command::new(program)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| anyhow::anyhow!("cannot start {}: {e}", program.display()))?;
    if let Some(mut stdin) = child.stdin.take() {
        stdin.write_all(input)?;
    }
    let out = child.wait_with_output()?;
    let took = t.elapsed();
    anyhow::ensure!(
        out.status.success(),
        "{} {} exited with {}: {}",
        program.display(),
        args.first().copied().unwrap_or_default(),
        out.status,
        String::from_utf8_lossy(&out.stderr).trim()
    );
    Ok((took, out.stdout))
}

/// The Python interpreter `python3` on PATH runs (its `sys.executable`), so each baseline
/// call starts the interpreter itself rather than a version manager's shim in front of it;
/// `Err` says why there is none.
fn python_interpreter() -> Result<std::path::PathBuf, String> {
    let out = std::process::Command::new("python3")
        .args(["-c", "import sys; sys.stdout.write(sys.executable)"])
        .stdin(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .output()
        .map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => "python3 is not on PATH".to_string(),
            _ => format!("cannot start python3: {e}"),
        })?;
    if !out.status.success() {
        return Err(format!("python3 exited with {}", out.status));
    }
    let exe = String::from_utf8_lossy(&out.stdout).trim().to_string();
    Ok(if exe.is_empty() {
        "python3".into()
    } else {
        exe.into()
    })
}

/// The result every call must give, as JSON (key order aside).
fn expected_echo() -> anyhow::Result<serde_json::Value> {
    Ok(serde_json::from_str(
        &echo(TOOL_ARGS).map_err(anyhow::Error::msg)?,
    )?)
}

fn check_echo(what: &str, out: &[u8], expected: &serde_json::Value) -> anyhow::Result<()> {
    let got: serde_json::Value = serde_json::from_slice(out)
        .map_err(|e| anyhow::anyhow!("{what} answered something that is not JSON: {e}"))?;
    anyhow::ensure!(&got == expected, "{what} answered {got}, not {expected}");
    Ok(())
}

/// A registered tool call against one subprocess per call doing the same work, in the same
/// run. Colony: `component` (a tool that echoes its arguments, `plugins/echo-tool`)
/// registered in a `ToolRegistry` in a temporary directory and called `opts.calls` times
/// through `ToolRegistry::invoke` (the caller's `tools.call` grant, the arguments checked
/// against the input schema, a fresh instance, the result checked against the output
/// schema). Baselines: `opts.subprocess __bench-tool-subprocess` started per call with the
/// same arguments on stdin and [`echo`] natively, and `python3 -c` doing the same; beside them
/// the floor of any subprocess, `true` started and waited for. Each call is timed on its own;
/// every answer is checked (outside the timing). The sides alternate in rounds after a
/// warm-up, since the machines are shared and noisy.
pub async fn tool_call(component: &[u8], opts: &ToolBenchOptions) -> anyhow::Result<ToolBench> {
    const ROUNDS: usize = 10;
    let runtime = Arc::new(Runtime::new(&EngineSettings::default(), None)?);
    let loader = Loader::new(
        runtime.clone(),
        Limits::agent_default(),
        Limits::tool_default(),
    )?;
    let dir = tempfile_dir()?;
    let result = async {
        let tool = ToolUnderTest::new(&loader, component, dir.join("tools")).await?;
        let expected = expected_echo()?;
        let program = opts.subprocess.as_path();
        let (python, python_skipped) = if opts.python_spawns == 0 {
            (None, Some("--python-spawns 0".to_string()))
        } else {
            match python_interpreter() {
                Ok(p) => (Some(p), None),
                Err(why) => (None, Some(why)),
            }
        };
        let tool_call = async || -> anyhow::Result<Duration> {
            let t = Instant::now();
            let out = tool.call(TOOL_ARGS).await?;
            let took = t.elapsed();
            check_echo("the tool", out.as_bytes(), &expected)?;
            Ok(took)
        };
        let native_call = || -> anyhow::Result<Duration> {
            let (took, out) = spawn_call(program, &[TOOL_SUBPROCESS], TOOL_ARGS.as_bytes())?;
            check_echo("the subprocess", &out, &expected)?;
            Ok(took)
        };
        let floor_call = || -> Option<Duration> {
            spawn_call(std::path::Path::new("true"), &[], b"")
                .ok()
                .map(|(took, _)| took)
        };
        let python_call = |exe: &std::path::Path| -> anyhow::Result<Duration> {
            let (took, out) = spawn_call(exe, &["-c", PYTHON_ECHO], TOOL_ARGS.as_bytes())?;
            check_echo("python3 -c", &out, &expected)?;
            Ok(took)
        };

        // Warm-up: code paths, the pool's slots, the page cache of both programs.
        for _ in 0..(opts.calls / 10).max(10) {
            tool_call().await?;
        }
        let has_true = floor_call().is_some();
        for _ in 0..3 {
            native_call()?;
            if let Some(exe) = &python {
                python_call(exe)?;
            }
        }
        let us = |d: Duration| d.as_secs_f64() * 1e6;
        let share =
            |total: usize, round: usize| total / ROUNDS + usize::from(round < total % ROUNDS);
        let (mut t, mut s, mut f, mut p) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
        for round in 0..ROUNDS {
            for _ in 0..share(opts.calls, round) {
                t.push(us(tool_call().await?));
            }
            for _ in 0..share(opts.spawns, round) {
                s.push(us(native_call()?));
                if has_true && let Some(took) = floor_call() {
                    f.push(us(took));
                }
            }
            if let Some(exe) = &python {
                for _ in 0..share(opts.python_spawns, round) {
                    p.push(us(python_call(exe)?));
                }
            }
        }
        let tool = Latency::of(t);
        let subprocess = Latency::of(s);
        let python_latency = python.as_ref().map(|_| Latency::of(p));
        Ok(ToolBench {
            via: "ToolRegistry::invoke".into(),
            ratio_p50: subprocess.p50_us / tool.p50_us,
            ratio_mean: subprocess.mean_us / tool.mean_us,
            python_ratio_p50: python_latency.as_ref().map(|l| l.p50_us / tool.p50_us),
            tool,
            subprocess_program: program.display().to_string(),
            subprocess,
            spawn_floor: has_true.then(|| Latency::of(f)),
            python_program: python.map(|p| p.display().to_string()),
            python: python_latency,
            python_skipped,
            target: 1_000.0,
        })
    }
    .await;
    let _ = std::fs::remove_dir_all(&dir);
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    fn echo_tool() -> &'static [u8] {
        colony_host::embedded::PLUGINS
            .iter()
            .find(|(name, _)| *name == "echo-tool.wasm")
            .map(|(_, bytes)| *bytes)
            .expect("echo-tool is embedded")
    }

    /// The tool bench's three sides do the same work: the embedded echo-tool (called as the
    /// bench calls it), the hidden subcommand's body, and the Python one-liner give the same
    /// answer to the bench's arguments.
    #[tokio::test]
    async fn every_side_of_the_tool_bench_gives_the_same_answer() {
        let expected = expected_echo().unwrap();
        let runtime = Arc::new(Runtime::new(&EngineSettings::default(), None).unwrap());
        let loader = Loader::new(runtime, Limits::agent_default(), Limits::tool_default()).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let tool = ToolUnderTest::new(&loader, echo_tool(), dir.path().join("tools"))
            .await
            .unwrap();
        let out = tool.call(TOOL_ARGS).await.unwrap();
        check_echo("the tool", out.as_bytes(), &expected).unwrap();

        let mut written = Vec::new();
        tool_subprocess_io(&mut TOOL_ARGS.as_bytes(), &mut written).unwrap();
        check_echo("the subprocess", &written, &expected).unwrap();
        assert!(tool_subprocess_io(&mut &b"{not json"[..], &mut Vec::new()).is_err());

        // Without Python there is no Python baseline to check.
        if let Ok(python) = python_interpreter() {
            let (_, out) = spawn_call(&python, &["-c", PYTHON_ECHO], TOOL_ARGS.as_bytes()).unwrap();
            check_echo("python3 -c", &out, &expected).unwrap();
        }
    }
}
