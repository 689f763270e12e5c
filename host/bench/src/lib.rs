//! `colony bench`: Colony measured against a baseline doing the same work in the same run.
//! The CLI's `bench.rs` runs these and prints the table; this crate measures.
//!
//! - [`run`] (`micro`): instantiate, event delivery and guest→host calls against raw wasmtime
//!   on the same component (a no-op host of every interface, `raw`), timed by the bench
//!   thread's CPU clock; and what a grant check and its audit add to a host call.
//! - [`audit_throughput`], [`bus`], [`market`], [`orders`], [`tool_call`], [`demo`]: the
//!   audit store, the bus, market data, orders, tool calls and the demo swarm, each beside a
//!   native baseline (tokio channels, direct calls, a subprocess per call, no plugins); these
//!   are wall time.
//!
//! The bench agents those run on and the waiting on them are in `agents`; how laps are timed
//! and summarised is in `measure`. It is its own crate so the raw baseline does not ship in
//! `colony-host`.

mod agents;
mod audit;
mod bus;
mod demo;
mod market;
mod measure;
mod micro;
mod orders;
mod raw;
mod tool;

pub use audit::audit_throughput;
pub use bus::{BusBench, bus};
pub use demo::{DemoBench, demo};
pub use market::{MarketBench, market};
pub use micro::{BenchOptions, Measurement, run};
pub use orders::{OrdersBench, orders};
pub use tool::{
    Latency, TOOL_ARGS, TOOL_SUBPROCESS, ToolBench, ToolBenchOptions, echo, tool_call,
    tool_subprocess_io,
};

/// A fresh scratch directory for one measurement's stores (the caller removes it).
fn tempfile_dir() -> anyhow::Result<std::path::PathBuf> {
    let dir = std::env::temp_dir().join(format!(
        "colony-bench-{}-{}",
        std::process::id(),
        colony_host::audit::now_ns()
    ));
    std::fs::create_dir_all(&dir)?;
    Ok(dir)
}
