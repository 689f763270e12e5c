//! The bench agents the bus, market and orders measurements run on: loading the bench
//! component, spawning agents, counting what they handled, reporting their failures and
//! waiting on them; and the native tokio tasks beside them.

use std::sync::Arc;
use std::time::{Duration, Instant};

use colony_host::bindings::agent::AgentPre;
use colony_host::engine::{EngineSettings, Runtime};
use colony_host::limits::Limits;
use colony_host::plugin::{Linked, Loader};
use colony_host::policy::Policy;

/// The embedded bench component loaded as an agent on a fresh runtime (kept alive by the
/// caller: its epoch ticker drives deadlines), with the limits it runs under.
pub(crate) fn bench_agent(
    component: &[u8],
) -> anyhow::Result<(
    Arc<Runtime>,
    AgentPre<colony_host::store::StoreState>,
    Limits,
)> {
    let runtime = Arc::new(Runtime::new(&EngineSettings::default(), None)?);
    let loader = Loader::new(
        runtime.clone(),
        Limits::agent_default(),
        Limits::tool_default(),
    )?;
    let plugin = loader.load_bytes(component, std::path::Path::new("bench-agent.wasm"), None)?;
    let Linked::Agent(pre) = plugin.linked else {
        anyhow::bail!("the bench component is not an agent");
    };
    Ok((runtime, pre, plugin.info.limits))
}

/// `n` bench agents `PREFIX-0…` on `bus`, each granted `grant` and started with `config`.
pub(crate) async fn spawn_bench_agents(
    pre: &AgentPre<colony_host::store::StoreState>,
    limits: Limits,
    bus: &colony_host::bus::Bus,
    grant: &str,
    config: &str,
    prefix: &str,
    n: usize,
) -> anyhow::Result<Vec<colony_host::agent::AgentHandle>> {
    let grants = colony_caps::GrantSet::new([grant.parse::<colony_caps::Capability>()?]);
    let mut agents = Vec::with_capacity(n);
    for i in 0..n {
        let name: Arc<str> = format!("{prefix}-{i}").into();
        let spec = colony_host::agent::AgentSpec {
            pre: pre.clone(),
            name: name.clone(),
            limits,
            state: None,
            policy: Arc::new(Policy::new(name, String::new(), grants.clone(), None, 0)),
            bus: Some(bus.clone()),
            config: config.into(),
            market: None,
            orders: None,
            tools: None,
            services: Default::default(),
        };
        agents.push(
            colony_host::agent::AgentHandle::spawn(spec, None)
                .await
                .map_err(|e| anyhow::anyhow!("{e}"))?,
        );
    }
    Ok(agents)
}

/// Events the agents handled, in all: successfully or not (a failed event was handled too;
/// the bench reports failures apart, see [`failures`]).
pub(crate) fn handled(agents: &[colony_host::agent::AgentHandle]) -> u64 {
    use std::sync::atomic::Ordering::Relaxed;
    agents
        .iter()
        .map(|a| a.stats().delivered.load(Relaxed) + a.stats().failed.load(Relaxed))
        .sum()
}

/// One line per bench agent that failed an event, restarted or was quarantined: what a
/// loaded machine can do to an agent (a limit hit), reported rather than fatal.
pub(crate) fn failures(agents: &[colony_host::agent::AgentHandle]) -> Vec<String> {
    use std::sync::atomic::Ordering::Relaxed;
    agents
        .iter()
        .filter_map(|a| {
            let st = a.stats();
            let (failed, restarts) = (st.failed.load(Relaxed), st.restarts.load(Relaxed));
            if failed == 0 && restarts == 0 && !st.quarantined() {
                return None;
            }
            let last = st.last_error.lock().ok().and_then(|l| l.clone());
            Some(format!(
                "{}: {failed} events failed, {restarts} restarts{}{}",
                a.name(),
                if st.quarantined() {
                    ", quarantined"
                } else {
                    ""
                },
                last.map(|e| format!(" (last: {e})")).unwrap_or_default()
            ))
        })
        .collect()
}

/// Waiting on bench agents. When none of them handled anything for 30 s: if none failed, the
/// bus or the actors stopped, which is Colony's failure (an error); if some failed (a limit hit
/// on a loaded machine, a restart backoff, a quarantine), the wait gives up after 120 s and the
/// caller reports the failures with what was measured.
pub(crate) struct Progress {
    last: u64,
    since: Instant,
}

/// No bench agent handled an event for this long: stalled.
const STALLED: Duration = Duration::from_secs(30);
/// A stall with failed agents is waited out this long (the longest restart backoff is 30 s).
const STALLED_WITH_FAILURES: Duration = Duration::from_secs(120);

impl Progress {
    pub(crate) fn new(agents: &[colony_host::agent::AgentHandle]) -> Progress {
        Progress {
            last: handled(agents),
            since: Instant::now(),
        }
    }

    /// Whether to keep waiting: true while the agents make progress (or have not stalled
    /// for long); false when failed agents stalled; an error when agents stalled unfailed.
    pub(crate) fn keep_waiting(
        &mut self,
        agents: &[colony_host::agent::AgentHandle],
        what: &str,
    ) -> anyhow::Result<bool> {
        let now = handled(agents);
        if now != self.last {
            self.last = now;
            self.since = Instant::now();
            return Ok(true);
        }
        let stalled = self.since.elapsed();
        if stalled < STALLED {
            return Ok(true);
        }
        anyhow::ensure!(
            !failures(agents).is_empty(),
            "{what} (no event handled for {} s, and no agent failed)",
            STALLED.as_secs()
        );
        Ok(stalled < STALLED_WITH_FAILURES)
    }
}

/// `n` native tokio tasks that take `Arc<T>`s from bounded channels and count them: the
/// baseline beside wasm subscribers.
pub(crate) fn native_sinks<T: Send + Sync + 'static>(
    n: usize,
) -> (
    Vec<tokio::sync::mpsc::Sender<Arc<T>>>,
    Arc<std::sync::atomic::AtomicU64>,
) {
    let count = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let txs = (0..n)
        .map(|_| {
            let (tx, mut rx) = tokio::sync::mpsc::channel::<Arc<T>>(1024);
            let count = count.clone();
            tokio::spawn(async move {
                while let Some(item) = rx.recv().await {
                    std::hint::black_box(&item);
                    count.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                }
            });
            tx
        })
        .collect();
    (txs, count)
}
