//! The messaging measurement: bus fan-out to wasm subscribers and request/reply round trips
//! (host → wasm, wasm → wasm), each beside native tokio channels doing the same.

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::Serialize;

use colony_host::limits::Limits;
use colony_host::policy::Policy;

use crate::agents::{Progress, bench_agent, failures, handled, native_sinks, spawn_bench_agents};
use crate::measure::percentiles;

/// What the messaging benchmark found.
#[derive(Debug, Clone, Serialize)]
pub struct BusBench {
    /// Deliveries per second to 10 wasm subscribers through the bus and agent actors.
    pub fanout_per_sec: f64,
    /// The same fan-out to 10 native tokio tasks over bounded channels.
    pub native_fanout_per_sec: f64,
    /// Request→reply round trip to a wasm responder, median, microseconds.
    pub rpc_p50_us: f64,
    /// Same, 99th percentile.
    pub rpc_p99_us: f64,
    /// Request→reply round trip to a native tokio task, median, microseconds.
    pub native_rpc_p50_us: f64,
    /// Same, 99th percentile.
    pub native_rpc_p99_us: f64,
    /// Request→reply round trip from a wasm requester to a wasm responder, timed inside the
    /// requester, median, microseconds.
    pub wasm_rpc_p50_us: f64,
    /// Same, 99th percentile.
    pub wasm_rpc_p99_us: f64,
    /// Request→reply round trip from one spawned tokio task to another, median, microseconds.
    pub native_task_rpc_p50_us: f64,
    /// Same, 99th percentile.
    pub native_task_rpc_p99_us: f64,
    /// Bench agents that failed events (a limit hit on a loaded machine, say): reported with
    /// the figures, which count the events they handled, failed ones included.
    pub agent_failures: Vec<String>,
}

/// Fan-out from one publisher to 10 wasm subscribers (small payloads), request/reply round
/// trips from the host to a wasm responder, and from a wasm requester to a wasm responder,
/// each next to native tokio channels doing the same in the same run. The publisher is the
/// host (`Bus::publish`), so the wasm side of each delivery is one `on-message` event;
/// publishing pauses whenever the fastest possible consumer would find a full mailbox, so
/// nothing is refused.
pub async fn bus(component: &[u8], messages: u64, requests: usize) -> anyhow::Result<BusBench> {
    use colony_host::agent::{AgentHandle, AgentSpec};
    use colony_host::bus::{Bus, Envelope};
    use std::sync::atomic::Ordering;

    const SUBSCRIBERS: usize = 10;
    const CHUNK: u64 = 256;
    let (_runtime, pre, limits) = bench_agent(component)?;
    let bus = Bus::new();
    let agents = spawn_bench_agents(
        &pre,
        limits,
        &bus,
        "messaging.subscribe:bench.>",
        "subscribe",
        "bench",
        SUBSCRIBERS,
    )
    .await?;
    // The slowest subscriber still on the bus: publishing waits on it so no mailbox ever
    // fills. A failed event counts as handled; a quarantined agent is out of the race.
    let slowest = |agents: &[AgentHandle]| -> u64 {
        agents
            .iter()
            .filter(|a| !a.stats().quarantined())
            .map(|a| handled(std::slice::from_ref(a)))
            .min()
            .unwrap_or(u64::MAX)
    };
    let sender: Arc<str> = Arc::from("bench");
    // Up to two chunks wait in a mailbox, more than one sender's share of it
    // (`bus::SENDER_SHARE`): the fan-out is spread over four publishers.
    let publishers: Vec<Arc<str>> = (0..4).map(|i| Arc::from(format!("bench-{i}"))).collect();

    // Fan-out through the bus to wasm subscribers.
    let start = Instant::now();
    let mut sent = 0u64;
    let mut progress = Progress::new(&agents);
    'publish: while sent < messages {
        for _ in 0..CHUNK.min(messages - sent) {
            let from = publishers[(sent % 4) as usize].clone();
            bus.publish(Envelope::new(from, "bench.fan", &b"tick"[..]))?;
            sent += 1;
        }
        // Keep every mailbox below capacity: at most one chunk outstanding per subscriber.
        while slowest(&agents).saturating_add(CHUNK) < sent {
            if !progress.keep_waiting(&agents, "the subscribers stopped receiving")? {
                break 'publish;
            }
            tokio::task::yield_now().await;
        }
    }
    while slowest(&agents) < sent {
        if !progress.keep_waiting(&agents, "the subscribers stopped receiving")? {
            break;
        }
        tokio::task::yield_now().await;
    }
    let fanout_per_sec = handled(&agents) as f64 / start.elapsed().as_secs_f64();
    let mut agent_failures = failures(&agents);

    // The same over native channels.
    let (txs, count) = native_sinks::<Envelope>(SUBSCRIBERS);
    let start = Instant::now();
    let mut sent = 0u64;
    while sent < messages {
        for _ in 0..CHUNK.min(messages - sent) {
            let env = Arc::new(Envelope::new(sender.clone(), "bench.fan", &b"tick"[..]));
            for tx in &txs {
                tx.send(env.clone()).await?;
            }
            sent += 1;
        }
    }
    while count.load(Ordering::Relaxed) < sent * SUBSCRIBERS as u64 {
        tokio::task::yield_now().await;
    }
    let native_fanout_per_sec = (sent * SUBSCRIBERS as u64) as f64 / start.elapsed().as_secs_f64();
    drop(txs);

    // Request/reply to one wasm responder (the others are taken off the bus first).
    for a in &agents[1..] {
        a.detach_bus();
    }
    let mut rtt = Vec::with_capacity(requests);
    for _ in 0..requests {
        let t = Instant::now();
        bus.request(
            Envelope::new(sender.clone(), "bench.rpc", &b"ping"[..]),
            Duration::from_secs(1),
        )
        .await?;
        rtt.push(t.elapsed().as_secs_f64() * 1e6);
    }
    let (rpc_p50_us, rpc_p99_us) = percentiles(rtt);

    // The requester here is the bench's own future, as the host is above.
    let (native_rpc_p50_us, native_rpc_p99_us) =
        percentiles(native_round_trips(sender.clone(), requests).await?);

    // Request/reply from a wasm requester to the same wasm responder. The requester is told
    // `req:N:bench.rpc` by a request to its inbox; it makes the N requests inside that one
    // event, timing each with the guest's monotonic clock, and replies with the round trips.
    // Its deadline and fuel are raised for that event (the bus timeout of each request is
    // still 1 s).
    let requester: Arc<str> = Arc::from("bench-requester");
    let spec = AgentSpec {
        market: None,
        orders: None,
        tools: None,
        services: Default::default(),
        pre: pre.clone(),
        name: requester.clone(),
        limits: Limits {
            cpu_ms: 120_000,
            hang_guard_ms: 240_000,
            fuel: 5_000_000_000,
            ..limits
        },
        state: None,
        policy: Arc::new(Policy::new(
            requester.clone(),
            String::new(),
            colony_caps::GrantSet::new([
                "messaging.request:bench.>".parse::<colony_caps::Capability>()?
            ]),
            None,
            0,
        )),
        bus: Some(bus.clone()),
        config: String::new(),
    };
    let requester_agent = AgentHandle::spawn(spec, None)
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let result = bus
        .request(
            Envelope::new(
                sender.clone(),
                format!("agent.{requester}.inbox"),
                format!("req:{requests}:bench.rpc").into_bytes(),
            ),
            Duration::from_secs(150),
        )
        .await
        .map_err(|e| anyhow::anyhow!("the wasm requester did not answer: {e}"))?;
    let text = std::str::from_utf8(&result.payload)?;
    if let Some(e) = text.strip_prefix("err:") {
        anyhow::bail!("the wasm requester failed: {e}");
    }
    let rtt = text
        .split_ascii_whitespace()
        .map(|ns| ns.parse::<f64>().map(|ns| ns / 1e3))
        .collect::<Result<Vec<_>, _>>()?;
    anyhow::ensure!(
        rtt.len() == requests,
        "the wasm requester reported {} round trips, not {requests}",
        rtt.len()
    );
    let (wasm_rpc_p50_us, wasm_rpc_p99_us) = percentiles(rtt);
    // Its native twin: both ends are spawned tasks, as both agents' actors are.
    let (native_task_rpc_p50_us, native_task_rpc_p99_us) =
        percentiles(tokio::spawn(native_round_trips(sender.clone(), requests)).await??);
    agent_failures.extend(failures(std::slice::from_ref(&requester_agent)));
    for a in agents.iter().chain([&requester_agent]) {
        let _ = a.retire().await.await;
    }
    Ok(BusBench {
        fanout_per_sec,
        native_fanout_per_sec,
        rpc_p50_us,
        rpc_p99_us,
        native_rpc_p50_us,
        native_rpc_p99_us,
        wasm_rpc_p50_us,
        wasm_rpc_p99_us,
        native_task_rpc_p50_us,
        native_task_rpc_p99_us,
        agent_failures,
    })
}

/// `requests` sequential round trips from the calling task to a spawned tokio task that
/// answers each request over a oneshot channel, in microseconds: the native baseline of the
/// bus's request/reply.
async fn native_round_trips(sender: Arc<str>, requests: usize) -> anyhow::Result<Vec<f64>> {
    use colony_host::bus::Envelope;
    type Request = (Arc<Envelope>, tokio::sync::oneshot::Sender<Arc<Envelope>>);

    let (tx, mut rx) = tokio::sync::mpsc::channel::<Request>(1024);
    tokio::spawn(async move {
        while let Some((env, reply)) = rx.recv().await {
            let _ = reply.send(env);
        }
    });
    let mut rtt = Vec::with_capacity(requests);
    for _ in 0..requests {
        let t = Instant::now();
        let (rtx, rrx) = tokio::sync::oneshot::channel();
        tx.send((
            Arc::new(Envelope::new(sender.clone(), "bench.rpc", &b"ping"[..])),
            rtx,
        ))
        .await?;
        rrx.await?;
        rtt.push(t.elapsed().as_secs_f64() * 1e6);
    }
    Ok(rtt)
}
