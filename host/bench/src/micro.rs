//! Colony's instantiate, event delivery and guest→host call measured against raw wasmtime
//! doing the same on the same component in the same run, as ratios; and what a grant check
//! and its audit add to a host call.
//!
//! Raw wasmtime here is the same engine (same config: pooling, fuel, epochs), an
//! `InstancePre` of the same component, a store with a default WASI context and host
//! functions that do nothing ([`crate::raw`]). Colony adds what it does on every instantiate
//! and event: its store state (limiter, output budget, deny-by-default WASI), fuel and
//! deadline reset, output flush and failure classification; and for `log`, its line cap and
//! level dispatch. Rounds of Colony and raw alternate and the median round is reported, since
//! these machines are shared and noisy. Those rounds are timed by the bench thread's CPU
//! clock ([`Lap`]), not the wall clock, so that a loaded machine (the thread descheduled
//! mid-round) does not skew one side of a ratio.

use std::sync::Arc;

use serde::Serialize;
use wasmtime::component::{HasSelf, Linker};

use colony_host::agent::{AgentInstance, Event, Message};
use colony_host::bindings::agent::{Agent, AgentPre};
use colony_host::bindings::types;
use colony_host::engine::{EngineSettings, Runtime};
use colony_host::limits::Limits;
use colony_host::plugin::{Linked, Loader};
use colony_host::policy::Policy;
use colony_host::store::{guarded, new_store};

use crate::measure::{Lap, median};
use crate::raw::{RawState, raw_store};
use crate::tempfile_dir;

/// One measured quantity.
#[derive(Debug, Clone, Serialize)]
pub struct Measurement {
    /// What was measured.
    pub name: &'static str,
    /// Colony, nanoseconds per operation (median round).
    pub colony_ns: f64,
    /// Raw wasmtime, nanoseconds per operation (median round).
    pub raw_ns: f64,
    /// colony / raw.
    pub ratio: f64,
    /// The target ratio.
    pub target: f64,
}

/// Settings of a run.
#[derive(Debug, Clone, Copy)]
pub struct BenchOptions {
    /// Alternating rounds per measurement.
    pub rounds: usize,
    /// Operations per round.
    pub iterations: u32,
    /// Host calls per event in the host-call measurement.
    pub calls_per_event: u32,
}

impl Default for BenchOptions {
    fn default() -> Self {
        BenchOptions {
            rounds: 7,
            iterations: 2_000,
            // Below the log interface's 256-lines-per-event cap, so every call takes the full path.
            calls_per_event: 200,
        }
    }
}

/// A message on subject `bench` carrying `payload`, as the bench agent gets it.
fn message(payload: &[u8]) -> Message {
    Message {
        id: "bench".into(),
        subject: "bench".into(),
        sender: "bench".into(),
        correlation_id: None,
        reply_to: None,
        timestamp: 0,
        headers: Vec::new(),
        payload: payload.to_vec(),
    }
}

/// Runs the three measurements on `component` (an agent that handles `log:N` messages by
/// calling `log` N times; `plugins/bench-agent` is the shipped one).
pub async fn run(component: &[u8], opts: BenchOptions) -> anyhow::Result<Vec<Measurement>> {
    let runtime = Arc::new(Runtime::new(&EngineSettings::default(), None)?);
    let loader = Loader::new(
        runtime.clone(),
        Limits::agent_default(),
        Limits::tool_default(),
    )?;
    let plugin = loader.load_bytes(component, std::path::Path::new("bench-agent.wasm"), None)?;
    let Linked::Agent(colony_pre) = plugin.linked else {
        anyhow::bail!("the bench component is not an agent");
    };
    let name = plugin.info.name.clone();
    let limits = plugin.info.limits;
    let engine = runtime.engine();

    let mut raw_linker: Linker<RawState> = Linker::new(engine);
    wasmtime_wasi::p2::add_to_linker_async(&mut raw_linker)?;
    Agent::add_to_linker::<RawState, HasSelf<RawState>>(&mut raw_linker, |s| s)?;
    let raw_pre = AgentPre::new(raw_linker.instantiate_pre(&plugin.component)?)?;

    let policy = Arc::new(Policy::deny_all(Arc::from(name.as_str())));
    let n = opts.iterations;
    let mut out = Vec::new();

    // 1. Instantiate.
    let (mut c, mut r) = (Vec::new(), Vec::new());
    for _ in 0..opts.rounds {
        let t = Lap::start();
        for _ in 0..n {
            let mut store = new_store(
                engine,
                Arc::from(name.as_str()),
                limits,
                None,
                policy.clone(),
                None,
            );
            let pre = &colony_pre;
            guarded(&mut store, "instantiate", async |s| {
                pre.instantiate_async(s).await
            })
            .await
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        }
        c.push(t.per_op(n.into()));
        let t = Lap::start();
        for _ in 0..n {
            let mut store = raw_store(engine);
            raw_pre.instantiate_async(&mut store).await?;
        }
        r.push(t.per_op(n.into()));
    }
    out.push(measurement("instantiate", c, r, 1.5));

    // 2. Event delivery: on-timer, which the bench agent answers at once.
    let mut colony = AgentInstance::start(
        &colony_pre,
        Arc::from(name.as_str()),
        limits,
        None,
        policy.clone(),
        None,
        "{}",
    )
    .await
    .map_err(|e| anyhow::anyhow!("{e}"))?;
    let mut raw_store = raw_store(engine);
    let raw = raw_pre.instantiate_async(&mut raw_store).await?;
    raw.colony_plugin_handler()
        .call_init(&mut raw_store, "{}")
        .await??;
    let (mut c, mut r) = (Vec::new(), Vec::new());
    for _ in 0..opts.rounds {
        let t = Lap::start();
        for i in 0..n {
            colony
                .deliver(&Event::Timer(i.into()))
                .await
                .map_err(|e| anyhow::anyhow!("{e}"))?;
        }
        c.push(t.per_op(n.into()));
        let t = Lap::start();
        for i in 0..n {
            raw.colony_plugin_handler()
                .call_on_timer(&mut raw_store, i.into())
                .await??;
        }
        r.push(t.per_op(n.into()));
    }
    out.push(measurement("event delivery (host→guest)", c, r, 1.5));

    // 3. Guest→host calls: one event that calls `log` many times, per call.
    let k = opts.calls_per_event;
    let payload = format!("log:{k}");
    let colony_msg = Event::Message(message(payload.as_bytes()));
    let raw_msg = types::Message {
        id: "bench".into(),
        subject: "bench".into(),
        sender: "bench".into(),
        correlation_id: None,
        reply_to: None,
        priority: types::Priority::Normal,
        timestamp: 0,
        headers: Vec::new(),
        payload: payload.into_bytes(),
    };
    let events = (n / 100).max(5);
    let (mut c, mut r) = (Vec::new(), Vec::new());
    for _ in 0..opts.rounds {
        let t = Lap::start();
        for _ in 0..events {
            colony
                .deliver(&colony_msg)
                .await
                .map_err(|e| anyhow::anyhow!("{e}"))?;
        }
        c.push(t.per_op(u64::from(events) * u64::from(k)));
        let t = Lap::start();
        for _ in 0..events {
            raw.colony_plugin_handler()
                .call_on_message(&mut raw_store, &raw_msg)
                .await??;
        }
        r.push(t.per_op(u64::from(events) * u64::from(k)));
    }
    let host_call = measurement("host call (guest→host log)", c, r, 1.3);
    let host_call_ns = host_call.colony_ns;
    out.push(host_call);

    // 4. What a grant check plus its audit adds to a guest→host call. No capability-gated
    // interface exists yet, so the check is measured on its own, through the per-store
    // `CheckCache` a host call uses, on a repeated publish (an agent's hot loop), with allows
    // sampled as configured by default (1 in 100) into a real SQLite audit store, and added
    // to the host call measured above.
    let dir = tempfile_dir()?;
    let store = colony_host::audit::AuditStore::open_sqlite(&dir.join("audit.db")).await?;
    let grants = colony_caps::GrantSet::new(
        [
            "messaging.publish:md.>",
            "messaging.publish:agent.*.inbox",
            "market.read:BTC-*",
        ]
        .iter()
        .filter_map(|c| c.parse().ok()),
    );
    let policy = Policy::new(
        Arc::from("bench-agent"),
        "0".repeat(64),
        grants,
        Some(store.writer()),
        100,
    );
    let req = colony_caps::Request::Publish {
        subject: "md.okx.BTC-USDT.quote",
    };
    let checks = u64::from(n) * 50;
    // Median ns per check over the rounds; a check that denies is a broken bench.
    let time_checks = |check: &mut dyn FnMut() -> bool| -> anyhow::Result<f64> {
        let mut c = Vec::new();
        for _ in 0..opts.rounds {
            let t = Lap::start();
            for _ in 0..checks {
                anyhow::ensure!(check(), "the bench grant set denies its own request");
            }
            c.push(t.per_op(checks));
        }
        Ok(median(c))
    };
    let mut with_overhead = |name: &'static str, check_ns: f64, target: f64| {
        out.push(Measurement {
            name,
            colony_ns: host_call_ns + check_ns,
            raw_ns: host_call_ns,
            ratio: (host_call_ns + check_ns) / host_call_ns,
            target,
        })
    };
    let mut cache = colony_host::policy::CheckCache::default();
    let cached_ns = time_checks(&mut || cache.check(&policy, std::hint::black_box(&req)).is_ok())?;
    with_overhead("host call + grant check + audit", cached_ns, 1.1);
    // The same without the per-store cache: the first use of each subject pays the full
    // pattern match (reported for information; the target is for the repeated call).
    let uncached_ns = time_checks(&mut || policy.check(std::hint::black_box(&req)).is_ok())?;
    with_overhead("  same, first use (no cache)", uncached_ns, 1.3);
    store.writer().flush().await?;
    store.close().await?;
    let _ = std::fs::remove_dir_all(&dir);
    Ok(out)
}

/// The medians of Colony's and raw wasmtime's rounds, and their ratio.
fn measurement(name: &'static str, colony: Vec<f64>, raw: Vec<f64>, target: f64) -> Measurement {
    let colony_ns = median(colony);
    let raw_ns = median(raw);
    Measurement {
        name,
        colony_ns,
        raw_ns,
        ratio: colony_ns / raw_ns,
        target,
    }
}
