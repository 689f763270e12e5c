//! `colony bench`: Colony's instantiate, event delivery and guest→host call measured against
//! raw wasmtime doing the same on the same component in the same run, printed as ratios.
//!
//! Raw wasmtime here is the same engine (same config: pooling, fuel, epochs), an
//! `InstancePre` of the same component, a store with a default WASI context and host
//! functions that do nothing. Colony adds what it does on every instantiate and event: its
//! store state (limiter, output budget, deny-by-default WASI), fuel and deadline reset,
//! output flush and failure classification; and for `log`, its line cap and level dispatch.
//! Rounds of Colony and raw alternate and the median round is reported, since these machines
//! are shared and noisy. Those rounds are timed by the bench thread's CPU clock ([`Lap`]), not
//! the wall clock, so that a loaded machine (the thread descheduled mid-round) does not skew
//! one side of a ratio; the throughput and latency measurements further down are wall time.

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::Serialize;
use wasmtime::Store;
use wasmtime::component::{HasSelf, Linker};
use wasmtime_wasi::{ResourceTable, WasiCtx, WasiCtxView, WasiView};

use colony_host::agent::{AgentInstance, Event, Message};
use colony_host::bindings::agent::{Agent, AgentPre};
use colony_host::bindings::{log, market_data, messaging, orders, state, timers, tools, types};
use colony_host::engine::{EngineSettings, Runtime};
use colony_host::limits::Limits;
use colony_host::plugin::{Linked, Loader};
use colony_host::policy::Policy;
use colony_host::store::{guarded, new_store};

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

struct RawState {
    wasi: WasiCtx,
    table: ResourceTable,
}

impl WasiView for RawState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

impl types::Host for RawState {}

/// The raw baseline's market data: there is no feed (the bench agent never calls it).
impl market_data::Host for RawState {
    async fn subscribe(
        &mut self,
        _symbol: String,
        _kinds: market_data::Kinds,
    ) -> wasmtime::Result<Result<u64, types::Error>> {
        Ok(Err(no_feed()))
    }
    async fn unsubscribe(&mut self, _id: u64) -> wasmtime::Result<Result<(), types::Error>> {
        Ok(Err(no_feed()))
    }
    async fn quote(&mut self, _s: String) -> wasmtime::Result<Result<types::Quote, types::Error>> {
        Ok(Err(no_feed()))
    }
    async fn book(
        &mut self,
        _s: String,
        _d: u32,
    ) -> wasmtime::Result<Result<types::Book, types::Error>> {
        Ok(Err(no_feed()))
    }
    async fn candles(
        &mut self,
        _s: String,
        _i: u32,
        _l: u32,
    ) -> wasmtime::Result<Result<Vec<types::Candle>, types::Error>> {
        Ok(Err(no_feed()))
    }
    async fn status(
        &mut self,
        _s: String,
    ) -> wasmtime::Result<Result<market_data::SymbolStatus, types::Error>> {
        Ok(Err(no_feed()))
    }
    async fn symbols(&mut self) -> wasmtime::Result<Vec<String>> {
        Ok(Vec::new())
    }
}

/// The raw baseline has no venue either.
impl orders::Host for RawState {
    async fn place(
        &mut self,
        _o: orders::OrderRequest,
    ) -> wasmtime::Result<Result<orders::OrderAck, types::Error>> {
        Ok(Err(no_feed()))
    }
    async fn cancel(&mut self, _c: String) -> wasmtime::Result<Result<(), types::Error>> {
        Ok(Err(no_feed()))
    }
    async fn open_orders(&mut self) -> wasmtime::Result<Vec<orders::OpenOrder>> {
        Ok(Vec::new())
    }
    async fn position(
        &mut self,
        _s: String,
    ) -> wasmtime::Result<Result<orders::PositionInfo, types::Error>> {
        Ok(Err(no_feed()))
    }
    async fn balances(&mut self) -> wasmtime::Result<Vec<orders::Balance>> {
        Ok(Vec::new())
    }
}

/// Nor tools.
impl tools::Host for RawState {
    async fn list(&mut self) -> wasmtime::Result<Vec<tools::ToolInfo>> {
        Ok(Vec::new())
    }
    async fn call(
        &mut self,
        _n: String,
        _a: String,
    ) -> wasmtime::Result<Result<String, tools::ToolError>> {
        Ok(Err(tools::ToolError::Unavailable(
            "no tools in the raw baseline".into(),
        )))
    }
    async fn register(
        &mut self,
        _c: Vec<u8>,
    ) -> wasmtime::Result<Result<tools::ToolInfo, tools::ToolError>> {
        Ok(Err(tools::ToolError::Unavailable(
            "no tools in the raw baseline".into(),
        )))
    }
}

impl timers::Host for RawState {
    async fn set(
        &mut self,
        _name: String,
        _after_ms: u64,
        _period_ms: u64,
    ) -> wasmtime::Result<Result<(), types::Error>> {
        Ok(Err(types::Error::Unavailable(
            "no timers in the raw baseline".into(),
        )))
    }
    async fn cancel(&mut self, _name: String) -> wasmtime::Result<bool> {
        Ok(false)
    }
}

fn no_feed() -> types::Error {
    types::Error::Unavailable("no feed in the raw baseline".into())
}

impl log::Host for RawState {
    fn log(&mut self, _level: log::Level, _message: String) -> wasmtime::Result<()> {
        Ok(())
    }
}

impl messaging::Host for RawState {
    async fn publish(
        &mut self,
        _s: String,
        _p: Vec<u8>,
    ) -> wasmtime::Result<Result<(), types::Error>> {
        Ok(Ok(()))
    }
    async fn publish_with(
        &mut self,
        _s: String,
        _p: Vec<u8>,
        _o: messaging::SendOptions,
    ) -> wasmtime::Result<Result<(), types::Error>> {
        Ok(Ok(()))
    }
    async fn subscribe(&mut self, _p: String) -> wasmtime::Result<Result<u64, types::Error>> {
        Ok(Ok(0))
    }
    async fn unsubscribe(&mut self, _id: u64) -> wasmtime::Result<Result<(), types::Error>> {
        Ok(Ok(()))
    }
    async fn request(
        &mut self,
        _s: String,
        _p: Vec<u8>,
        _t: u32,
    ) -> wasmtime::Result<Result<types::Message, types::Error>> {
        Ok(Err(types::Error::Timeout))
    }
    async fn gather(
        &mut self,
        _s: String,
        _p: Vec<u8>,
        _q: u32,
        _t: u32,
    ) -> wasmtime::Result<Result<Vec<types::Message>, types::Error>> {
        Ok(Ok(Vec::new()))
    }
    async fn reply(
        &mut self,
        _r: String,
        _p: Vec<u8>,
    ) -> wasmtime::Result<Result<(), types::Error>> {
        Ok(Ok(()))
    }
}

impl state::Host for RawState {
    async fn get(
        &mut self,
        _key: String,
    ) -> wasmtime::Result<Result<Option<Vec<u8>>, types::Error>> {
        Ok(Ok(None))
    }
    async fn set(
        &mut self,
        _key: String,
        _value: Vec<u8>,
    ) -> wasmtime::Result<Result<(), types::Error>> {
        Ok(Ok(()))
    }
    async fn delete(&mut self, _key: String) -> wasmtime::Result<Result<(), types::Error>> {
        Ok(Ok(()))
    }
    async fn keys(
        &mut self,
        _prefix: String,
    ) -> wasmtime::Result<Result<Vec<String>, types::Error>> {
        Ok(Ok(Vec::new()))
    }
}

fn raw_store(engine: &wasmtime::Engine) -> Store<RawState> {
    let mut store = Store::new(
        engine,
        RawState {
            wasi: WasiCtx::builder().build(),
            table: ResourceTable::new(),
        },
    );
    // The engine meters fuel and epochs; give raw calls all they need, once.
    let _ = store.set_fuel(u64::MAX);
    store.set_epoch_deadline(u64::MAX / 2);
    store
}

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

/// A lap timed by the calling thread's CPU clock: what the thread itself ran, so a round in
/// which the bench thread was descheduled (a loaded machine) is not longer for it. The
/// micro-measurements (instantiate, event delivery, host calls, grant checks) run on the
/// thread that polls them from start to end, so this counts all their work and nothing
/// else; Colony's and raw wasmtime's rounds are timed alike.
struct Lap(u64);

impl Lap {
    fn start() -> Lap {
        Lap(colony_host::store::thread_cpu_ns())
    }

    /// CPU nanoseconds per operation since the start.
    fn per_op(&self, ops: u64) -> f64 {
        colony_host::store::thread_cpu_ns().saturating_sub(self.0) as f64 / ops.max(1) as f64
    }
}

fn per_op(elapsed: Duration, ops: u64) -> f64 {
    elapsed.as_nanos() as f64 / ops.max(1) as f64
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v.get(v.len() / 2).copied().unwrap_or(f64::NAN)
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

/// Audit store throughput: acknowledged records per second appended to a fresh SQLite store
/// (WAL, `synchronous=FULL`, group commit).
pub async fn audit_throughput(records: u64) -> anyhow::Result<f64> {
    let dir = tempfile_dir()?;
    let store = colony_host::audit::AuditStore::open_sqlite(&dir.join("audit.db")).await?;
    let rate = colony_host::audit::bench_append(&store, records).await?;
    let report = store.verify().await?;
    store.close().await?;
    let _ = std::fs::remove_dir_all(&dir);
    anyhow::ensure!(
        report.is_intact() && report.records == records,
        "the bench chain is not intact"
    );
    Ok(rate)
}

fn tempfile_dir() -> anyhow::Result<std::path::PathBuf> {
    let dir = std::env::temp_dir().join(format!(
        "colony-bench-{}-{}",
        std::process::id(),
        colony_host::audit::now_ns()
    ));
    std::fs::create_dir_all(&dir)?;
    Ok(dir)
}

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

fn percentiles(mut v: Vec<f64>) -> (f64, f64) {
    v.sort_by(|a, b| a.total_cmp(b));
    let at = |q: f64| {
        v.get(((v.len() as f64 - 1.0) * q).round() as usize)
            .copied()
            .unwrap_or(f64::NAN)
    };
    (at(0.5), at(0.99))
}

/// What the market-data benchmark measured.
#[derive(Debug, Clone, Serialize)]
pub struct MarketBench {
    /// Events in the replay (the shipped 1-minute bars).
    pub events: u64,
    /// Wasm agents subscribed to every event.
    pub agents: usize,
    /// Lockstep replay (`--speed max`: every agent has handled each event before the next),
    /// deliveries per second in aggregate.
    pub lockstep_deliveries_per_sec: f64,
    /// `--speed fast` replay (no lockstep; the feed runs ahead of the slowest agent by up to
    /// half a mailbox, so nothing is dropped), deliveries per second in aggregate.
    pub flow_deliveries_per_sec: f64,
    /// The same events over native tokio channels to as many tasks, deliveries per second.
    pub native_deliveries_per_sec: f64,
    /// Host-side cost of one book update (`L2Book::apply_update` plus the top-20 book and the
    /// quote a feed publishes), nanoseconds.
    pub book_update_ns: f64,
    /// `L2Book::apply_update` alone, nanoseconds.
    pub book_apply_ns: f64,
    /// A `BTreeMap` insert of the same level (the native floor), nanoseconds.
    pub native_map_insert_ns: f64,
    /// `MarketService::publish` with no subscriber (snapshots, candle aggregation, JSON,
    /// routing), nanoseconds per event.
    pub publish_ns: f64,
    /// Bench agents that failed events: reported with the figures, which count the events
    /// they handled, failed ones included.
    pub agent_failures: Vec<String>,
}

/// Replay throughput of the shipped bars into `agents` wasm agents subscribed to them, in
/// lockstep (as `colony run --speed max` plays) and flow-controlled, next to native channels;
/// and the host-side cost of a book update and of publishing an event.
pub async fn market(component: &[u8], agents_n: usize) -> anyhow::Result<MarketBench> {
    use colony_host::agent::AgentHandle;
    use colony_host::bus::Bus;
    use colony_host::market::feed::{self, Pace, Speed};
    use colony_host::market::replay;
    use colony_host::market::service::{DEFAULT_STALE_AFTER, MarketService};
    use colony_host::market::types::{BookLevel, MarketEvent, Side};
    use colony_risk::book::L2Book;
    use rust_decimal::Decimal;
    use std::sync::atomic::Ordering;

    struct Handles(Vec<AgentHandle>, Bus);
    impl Pace for Handles {
        fn set_time(&self, _ns: u64) {}
        async fn settle(&self) {
            self.1.settle(Duration::from_secs(10)).await;
        }
        async fn throttle(&self, window: usize) {
            while self
                .0
                .iter()
                .filter_map(|h| h.mailbox_stats().map(|m| m.depth))
                .max()
                .unwrap_or(0)
                > window
            {
                tokio::task::yield_now().await;
            }
        }
    }

    let (_runtime, pre, limits) = bench_agent(component)?;
    let bars = replay::embedded_bars()?;
    let events = bars.events.len() as u64;
    let start_agents = async |bus: &Bus| {
        spawn_bench_agents(
            &pre,
            limits,
            bus,
            "messaging.subscribe:md.>",
            "market",
            "md",
            agents_n,
        )
        .await
    };

    // Lockstep, exactly as `colony run --speed max` plays.
    let bus = Bus::new();
    let service = MarketService::new("replay", bus.clone(), false, DEFAULT_STALE_AFTER);
    let handles = Handles(start_agents(&bus).await?, bus.clone());
    let start = Instant::now();
    let report = feed::play(bars.clone(), &service, Speed::Max, &handles).await;
    let lockstep = handled(&handles.0) as f64 / start.elapsed().as_secs_f64();
    let mut agent_failures = failures(&handles.0);
    // Lost events are Colony's failure unless an agent failed (a quarantined one leaves).
    anyhow::ensure!(
        handled(&handles.0) == report.events * agents_n as u64 || !agent_failures.is_empty(),
        "lockstep lost events: {} of {}",
        handled(&handles.0),
        report.events * agents_n as u64
    );

    // `--speed fast`: the feed runs ahead of the slowest agent by up to half a mailbox.
    let bus = Bus::new();
    let service = MarketService::new("replay", bus.clone(), false, DEFAULT_STALE_AFTER);
    let fast = Handles(start_agents(&bus).await?, bus.clone());
    let start = Instant::now();
    let report = feed::play(bars.clone(), &service, Speed::Fast, &fast).await;
    let flow = handled(&fast.0) as f64 / start.elapsed().as_secs_f64();
    let dropped: u64 = fast
        .0
        .iter()
        .filter_map(|h| h.mailbox_stats().map(|m| m.dropped))
        .sum();
    let fast_failures = failures(&fast.0);
    anyhow::ensure!(
        (handled(&fast.0) == report.events * agents_n as u64 && dropped == 0)
            || !fast_failures.is_empty(),
        "--speed fast lost events: {} of {} delivered, {dropped} dropped",
        handled(&fast.0),
        report.events * agents_n as u64
    );
    agent_failures.extend(
        fast_failures
            .into_iter()
            .map(|f| format!("--speed fast: {f}")),
    );

    // Native: the same events to as many tokio tasks over bounded channels.
    let (txs, count) = native_sinks::<MarketEvent>(agents_n);
    let start = Instant::now();
    for event in bars.events.iter().cloned() {
        let e = Arc::new(event);
        for tx in &txs {
            tx.send(e.clone()).await?;
        }
    }
    drop(txs);
    while count.load(Ordering::Relaxed) < events * agents_n as u64 {
        tokio::task::yield_now().await;
    }
    let native = (events * agents_n as u64) as f64 / start.elapsed().as_secs_f64();

    // Book updates: the shipped depth's price levels, cycled.
    let depth = replay::embedded_depth(20)?;
    let levels: Vec<(Side, BookLevel)> = depth
        .events
        .iter()
        .filter_map(|e| match e {
            MarketEvent::Book(b) => Some(b),
            _ => None,
        })
        .flat_map(|b| {
            b.bids
                .iter()
                .map(|l| (Side::Buy, *l))
                .chain(b.asks.iter().map(|l| (Side::Sell, *l)))
                .collect::<Vec<_>>()
        })
        .collect();
    anyhow::ensure!(!levels.is_empty(), "the shipped depth has no levels");
    const UPDATES: usize = 200_000;
    let mut book = L2Book::new("BTCUSDT".into());
    let start = Instant::now();
    for i in 0..UPDATES {
        let (side, l) = levels[i % levels.len()];
        let size = if i % 7 == 0 { Decimal::ZERO } else { l.size };
        book.apply_update(side, l.price, size, i as u64);
        std::hint::black_box(book.top(20));
        std::hint::black_box(book.quote());
    }
    let book_update_ns = per_op(start.elapsed(), UPDATES as u64);
    let mut book = L2Book::new("BTCUSDT".into());
    let start = Instant::now();
    for i in 0..UPDATES {
        let (side, l) = levels[i % levels.len()];
        let size = if i % 7 == 0 { Decimal::ZERO } else { l.size };
        book.apply_update(side, l.price, size, i as u64);
    }
    std::hint::black_box(&book);
    let book_apply_ns = per_op(start.elapsed(), UPDATES as u64);
    let mut map = std::collections::BTreeMap::new();
    let start = Instant::now();
    for i in 0..UPDATES {
        let (_, l) = levels[i % levels.len()];
        if i % 7 == 0 {
            map.remove(&l.price);
        } else {
            map.insert(l.price, l.size);
        }
    }
    std::hint::black_box(&map);
    let native_map_insert_ns = per_op(start.elapsed(), UPDATES as u64);

    // Publishing with no subscriber.
    let service = MarketService::new("replay", Bus::new(), false, DEFAULT_STALE_AFTER);
    let start = Instant::now();
    for event in bars.events.iter().cloned() {
        service.publish(event);
    }
    let publish_ns = per_op(start.elapsed(), events);

    Ok(MarketBench {
        events,
        agents: agents_n,
        lockstep_deliveries_per_sec: lockstep,
        flow_deliveries_per_sec: flow,
        native_deliveries_per_sec: native,
        book_update_ns,
        book_apply_ns,
        native_map_insert_ns,
        publish_ns,
        agent_failures,
    })
}

/// What the orders benchmark measured (issue 6: tick → decision → risk → paper fill).
#[derive(Debug, Clone, Serialize)]
pub struct OrdersBench {
    /// Ticks timed (after the warm-up), each one book snapshot and one order.
    pub ticks: usize,
    /// Tick → fill through Colony, median, microseconds: from just before
    /// `MarketService::publish` of a book (the router's reference price and paper book, the
    /// bus, the wasm agent's `on-market`, its `orders.place`: grant check, risk, paper
    /// exchange) to the fill's event arriving on the agent's order subject.
    pub tick_to_fill_p50_us: f64,
    /// Same, 99th percentile.
    pub tick_to_fill_p99_us: f64,
    /// Same, slowest.
    pub tick_to_fill_max_us: f64,
    /// The same tick → decision → `RiskEngine::check` → `PaperExchange::place` as direct
    /// calls (a native closure decides; no wasm, no bus, no router), median, microseconds.
    pub native_p50_us: f64,
    /// Same, 99th percentile.
    pub native_p99_us: f64,
    /// Same, slowest.
    pub native_max_us: f64,
    /// `RiskEngine::check` with every limit set, nanoseconds per order (mean; its order-rate
    /// window holds 400 orders).
    pub risk_check_ns: f64,
    /// The same without the order-rate limits, nanoseconds per order.
    pub risk_check_no_rate_ns: f64,
    /// `OrderService::place` with the same limits (risk, paper fill, the router's order
    /// table and the `accepted` and `filled` events published), nanoseconds per order.
    pub place_ns: f64,
    /// The bench agent's failures, if it failed an event (then only the ticks before it are
    /// timed, and the consistency checks are skipped): reported with the figures.
    pub agent_failures: Vec<String>,
}

/// The symbol every orders measurement trades.
const ORDERS_SYMBOL: &str = "BTC-USDT";
/// Virtual time between two orders of the risk and place measurements: 400 orders a minute,
/// inside the order-rate limits of [`realistic_limits`].
const ORDER_SPACING_NS: u64 = 150_000_000;

/// A book of five levels a side around 60 000, moving by half a dollar a tick.
fn bench_book(i: usize, ts: u64) -> colony_host::market::types::MarketEvent {
    use colony_host::market::types::{Book, BookLevel, MarketEvent};
    use rust_decimal::Decimal;
    let mid = Decimal::new(600_000 + (i % 20) as i64 * 5, 1);
    let level = |k: i64, sign: i64| BookLevel {
        price: mid + Decimal::new(sign * (1 + k), 1),
        size: Decimal::new(15, 1),
    };
    MarketEvent::Book(Book {
        symbol: ORDERS_SYMBOL.into(),
        bids: (0..5).map(|k| level(k, -1)).collect(),
        asks: (0..5).map(|k| level(k, 1)).collect(),
        ts,
    })
}

/// The limits of `docs/orders.md`'s example, every one set: what a real desk would run with.
fn realistic_limits() -> colony_host::orders::risk::RiskLimits {
    use colony_host::orders::risk::{Instruments, RiskLimits};
    use rust_decimal::Decimal;
    RiskLimits {
        instruments: Some(Instruments::new(["BTC-*", "ETH-*"])),
        tick_size: Some(Decimal::new(1, 1)),
        qty_step: Some(Decimal::new(1, 3)),
        min_qty: Some(Decimal::new(1, 3)),
        max_qty: Some(Decimal::from(5)),
        max_notional: Some(Decimal::from(250_000)),
        price_collar_bps: Some(500),
        max_orders_per_sec: Some(20),
        max_orders_per_min: Some(600),
        max_cancels_per_sec: Some(20),
        max_cancels_per_min: Some(600),
        max_open_orders: Some(50),
        max_open_notional: Some(Decimal::from(1_000_000)),
        max_position: Some(Decimal::from(10)),
        max_daily_loss: Some(Decimal::from(5_000)),
        max_quote_age_ms: Some(300_000),
    }
}

/// Tick → fill latency through a wasm agent and the router, next to the same path as direct
/// native calls; and the cost per order of the risk check and of the router's `place`.
///
/// Colony's side is an in-process host: a bus, a `MarketService` whose observer is an
/// `OrderService::paper`, and one bench agent (`orders:BTC-USDT`) with `market.read:*`,
/// `orders.place:*` and `orders.cancel:*`, which places a market order of 0.001 on every
/// book, buy and sell in turn. Its risk limits are [`realistic_limits`] without the order
/// rates (thousands of orders a second would trip them). Ticks go in lockstep: one book is
/// published, its fill awaited, and the agent left idle (its `accepted` and `filled` events
/// handled) before the next. The fill's moment is taken by a native mailbox subscribed to
/// the agent's order subject beside the agent, polled by the bench's task: nothing is added
/// to the router's hot path.
pub async fn orders(component: &[u8], ticks: usize) -> anyhow::Result<OrdersBench> {
    use colony_host::agent::{AgentHandle, AgentSpec};
    use colony_host::bus::Bus;
    use colony_host::market::service::{DEFAULT_STALE_AFTER, MarketService};
    use colony_host::orders::ExecKind;
    use colony_host::orders::risk::RiskLimits;
    use colony_host::orders::service::{OrderService, OrdersConfig, events_subject};

    const WARMUP: usize = 1_000;
    const TICK_TIMEOUT: Duration = Duration::from_secs(5);
    let clock = colony_host::clock::Clock::system();
    let generous = RiskLimits {
        max_orders_per_sec: None,
        max_orders_per_min: None,
        ..realistic_limits()
    };

    let (_runtime, pre, limits) = bench_agent(component)?;
    let bus = Bus::new();
    let market = Arc::new(MarketService::new(
        "bench",
        bus.clone(),
        true,
        DEFAULT_STALE_AFTER,
    ));
    let router = OrderService::paper(
        bus.clone(),
        OrdersConfig {
            risk: generous.clone(),
            ..OrdersConfig::default()
        },
    );
    anyhow::ensure!(
        market.set_observer(router.clone()),
        "the bench market service already has an observer"
    );
    let name: Arc<str> = Arc::from("bench-trader");
    let grants = colony_caps::GrantSet::new(
        ["market.read:*", "orders.place:*", "orders.cancel:*"]
            .iter()
            .map(|c| c.parse::<colony_caps::Capability>())
            .collect::<Result<Vec<_>, _>>()?,
    );
    let agent = AgentHandle::spawn(
        AgentSpec {
            pre,
            name: name.clone(),
            limits,
            state: None,
            policy: Arc::new(Policy::new(name.clone(), String::new(), grants, None, 0)),
            bus: Some(bus.clone()),
            config: format!("orders:{ORDERS_SYMBOL}"),
            market: Some(market.clone()),
            orders: Some(router.clone()),
            tools: None,
            services: Default::default(),
        },
        None,
    )
    .await
    .map_err(|e| anyhow::anyhow!("{e}"))?;
    let fills = bus.mailbox("bench-fills", 1024);
    bus.subscribe("bench-fills", &events_subject(&name), &fills)?;

    let total = WARMUP + ticks;
    let mut colony = Vec::with_capacity(ticks);
    // Order events seen on the agent's subject: the agent handles each of them too.
    let mut order_events = 0u64;
    // Set when the agent failed an event: the ticks after it are not timed (a restarted
    // agent starts its counts again), and the figures are of the ticks before.
    let mut stopped: Option<String> = None;
    let agent_failed = || !failures(std::slice::from_ref(&agent)).is_empty();
    'ticks: for i in 0..total {
        let event = bench_book(i, clock.now_ns());
        let deadline = Instant::now() + TICK_TIMEOUT;
        let start = Instant::now();
        market.publish(event);
        let filled = loop {
            let Some(env) = fills.try_recv() else {
                if agent_failed() {
                    stopped = Some(format!("the orders measurement stopped at tick {i}"));
                    break 'ticks;
                }
                anyhow::ensure!(
                    Instant::now() < deadline,
                    "tick {i}: no fill within {TICK_TIMEOUT:?} (agent: {:?})",
                    agent.stats().last_error.lock().ok().and_then(|e| e.clone())
                );
                tokio::task::yield_now().await;
                continue;
            };
            let at = start.elapsed();
            fills.done();
            order_events += 1;
            match env.order().map(|u| &u.report.kind) {
                Some(ExecKind::Fill(_)) => break at,
                Some(ExecKind::Rejected { code, message }) => {
                    anyhow::bail!("tick {i}: the bench order was rejected: {code}: {message}")
                }
                _ => {}
            }
        };
        if i >= WARMUP {
            colony.push(filled.as_secs_f64() * 1e6);
        }
        // The agent takes its order events before the next tick, so each tick finds it idle.
        let events = (i as u64 + 1) + order_events;
        while handled(std::slice::from_ref(&agent)) < events {
            if agent_failed() {
                stopped = Some(format!("the orders measurement stopped at tick {i}"));
                break 'ticks;
            }
            anyhow::ensure!(
                Instant::now() < deadline,
                "tick {i}: the agent did not finish its events"
            );
            tokio::task::yield_now().await;
        }
    }
    let mut agent_failures = failures(std::slice::from_ref(&agent));
    agent_failures.extend(stopped);
    if agent_failures.is_empty() {
        orders_consistent(&bus, &router, &name, total).await?;
    }
    let _ = agent.retire().await.await;

    let native = native_tick_to_fill(total, WARMUP, generous)?;
    let (risk_check_ns, risk_check_no_rate_ns) = (
        risk_check_cost(50_000, realistic_limits())?,
        risk_check_cost(
            50_000,
            RiskLimits {
                max_orders_per_sec: None,
                max_orders_per_min: None,
                ..realistic_limits()
            },
        )?,
    );
    let place_ns = place_cost(20_000)?;

    let max = |v: &[f64]| v.iter().copied().fold(f64::NAN, f64::max);
    let (tick_to_fill_p50_us, tick_to_fill_p99_us) = percentiles(colony.clone());
    let (native_p50_us, native_p99_us) = percentiles(native.clone());
    Ok(OrdersBench {
        ticks,
        tick_to_fill_p50_us,
        tick_to_fill_p99_us,
        tick_to_fill_max_us: max(&colony),
        native_p50_us,
        native_p99_us,
        native_max_us: max(&native),
        risk_check_ns,
        risk_check_no_rate_ns,
        place_ns,
        agent_failures,
    })
}

/// The orders measurement's checks when no agent failed: every tick made exactly one order
/// and one fill, as the agent and the router saw them, and nothing is left open.
async fn orders_consistent(
    bus: &colony_host::bus::Bus,
    router: &colony_host::orders::service::OrderService,
    name: &str,
    total: usize,
) -> anyhow::Result<()> {
    use colony_host::bus::Envelope;
    let told = bus
        .request(
            Envelope::new(
                Arc::from("bench"),
                format!("agent.{name}.inbox"),
                &b"orders"[..],
            ),
            Duration::from_secs(5),
        )
        .await?;
    let expected = format!("{total} {total}");
    anyhow::ensure!(
        told.payload.as_ref() == expected.as_bytes(),
        "the agent placed/filled {:?}, not {expected:?}",
        String::from_utf8_lossy(&told.payload)
    );
    let c = router.counters();
    anyhow::ensure!(
        c.placed == total as u64 && c.fills == total as u64 && c.rejected == 0,
        "the router counted {} placed, {} fills, {} rejected for {total} ticks",
        c.placed,
        c.fills,
        c.rejected
    );
    anyhow::ensure!(
        router.open_orders(name).is_empty() && router.position(name, ORDERS_SYMBOL).qty.is_zero(),
        "the bench agent ended with open orders or a position"
    );
    Ok(())
}

/// Virtual start of the risk and place measurements: 2024-01-01 01:00 UTC, so their
/// 50 000 × 150 ms stay within one trading day.
const ORDERS_EPOCH_NS: u64 = 1_704_070_800_000_000_000;

/// The reference quote of the risk and place measurements at `ts`: 60 000.0 / 60 000.1.
fn bench_quote(ts: u64) -> colony_host::market::types::Quote {
    use rust_decimal::Decimal;
    colony_host::market::types::Quote {
        symbol: ORDERS_SYMBOL.into(),
        bid: Decimal::new(600_000, 1),
        bid_size: Decimal::new(15, 1),
        ask: Decimal::new(600_001, 1),
        ask_size: Decimal::new(15, 1),
        ts,
    }
}

/// `n` marketable limit IOC orders of 0.001 at [`bench_quote`]'s touch, buy and sell in turn.
fn bench_orders(n: usize, agent: &str) -> Vec<colony_host::orders::OrderRequest> {
    use colony_host::market::types::Side;
    use colony_host::orders::{OrderKind, OrderRequest, TimeInForce};
    let agent: Arc<str> = Arc::from(agent);
    let quote = bench_quote(0);
    (0..n)
        .map(|i| {
            let side = if i % 2 == 0 { Side::Buy } else { Side::Sell };
            OrderRequest {
                client_id: format!("r{i}"),
                agent: agent.clone(),
                symbol: quote.symbol.clone(),
                side,
                kind: OrderKind::Limit,
                price: Some(match side {
                    Side::Buy => quote.ask,
                    Side::Sell => quote.bid,
                }),
                qty: rust_decimal::Decimal::new(1, 3),
                tif: TimeInForce::Ioc,
                post_only: false,
                reduce_only: false,
            }
        })
        .collect()
}

/// What one `Instant::now()` … `elapsed()` pair costs, nanoseconds: taken off the per-order
/// timings below, which time each call on its own.
fn timer_overhead() -> f64 {
    const N: u32 = 100_000;
    let mut total = Duration::ZERO;
    for _ in 0..N {
        let t = Instant::now();
        total += std::hint::black_box(t).elapsed();
    }
    per_op(total, N.into())
}

/// The baseline of the tick → fill measurement: per tick, the book becomes the reference
/// quote and the paper exchange's book (as in the router's `on_market`), a native closure
/// makes the bench agent's decision, and `RiskEngine::check`, `PaperExchange::place` and the
/// risk engine's bookkeeping of the reports run as direct calls. Microseconds per tick after
/// `warmup`.
fn native_tick_to_fill(
    total: usize,
    warmup: usize,
    limits: colony_host::orders::risk::RiskLimits,
) -> anyhow::Result<Vec<f64>> {
    use colony_host::market::types::{MarketEvent, Quote, Side};
    use colony_host::orders::paper::{PaperConfig, PaperExchange};
    use colony_host::orders::risk::{Fill, RiskEngine};
    use colony_host::orders::{ExecKind, OrderKind, OrderRequest, TimeInForce};

    let clock = colony_host::clock::Clock::system();
    let agent: Arc<str> = Arc::from("native");
    let mut risk = RiskEngine::new(limits);
    let mut paper = PaperExchange::new(PaperConfig::default());
    let mut reference: Option<Quote> = None;
    let mut out = Vec::new();
    let mut placed = 0u64;
    let mut decide = |event: &MarketEvent| -> Option<OrderRequest> {
        let MarketEvent::Book(b) = event else {
            return None;
        };
        placed += 1;
        Some(OrderRequest {
            client_id: format!("b{placed}"),
            agent: agent.clone(),
            symbol: b.symbol.clone(),
            side: if placed % 2 == 1 {
                Side::Buy
            } else {
                Side::Sell
            },
            kind: OrderKind::Market,
            price: None,
            qty: rust_decimal::Decimal::new(1, 3),
            tif: TimeInForce::Ioc,
            post_only: false,
            reduce_only: false,
        })
    };
    let mut lat = Vec::with_capacity(total.saturating_sub(warmup));
    for i in 0..total {
        let event = bench_book(i, clock.now_ns());
        let start = Instant::now();
        if let MarketEvent::Book(b) = &event
            && let (Some(bid), Some(ask)) = (b.bids.first(), b.asks.first())
        {
            reference = Some(Quote {
                symbol: b.symbol.clone(),
                bid: bid.price,
                bid_size: bid.size,
                ask: ask.price,
                ask_size: ask.size,
                ts: b.ts,
            });
        }
        paper.on_market(&event, &mut out);
        out.clear();
        let req = decide(&event).ok_or_else(|| anyhow::anyhow!("native tick {i}: no decision"))?;
        let now = clock.now_ns();
        risk.check(&req, reference.as_ref(), now)
            .map_err(|r| anyhow::anyhow!("native tick {i}: {r}"))?;
        paper.place(&req, now, &mut out);
        let mut filled = false;
        for r in out.drain(..) {
            match r.kind {
                ExecKind::Accepted => {
                    risk.on_accepted(&r.agent, &r.client_id);
                }
                ExecKind::Fill(f) => {
                    risk.on_fill(&Fill {
                        agent: r.agent,
                        client_id: Some(r.client_id),
                        symbol: r.symbol,
                        side: r.side,
                        qty: f.qty,
                        price: f.price,
                        fee: f.fee,
                    })?;
                    filled = true;
                }
                ExecKind::Rejected { code, message } => {
                    anyhow::bail!("native tick {i}: rejected: {code}: {message}")
                }
                ExecKind::Cancelled | ExecKind::Expired => {
                    risk.on_closed(&r.agent, &r.client_id);
                }
            }
        }
        risk.on_closed(&req.agent, &req.client_id);
        let took = start.elapsed();
        anyhow::ensure!(filled, "native tick {i}: no fill");
        if i >= warmup {
            lat.push(took.as_secs_f64() * 1e6);
        }
    }
    Ok(lat)
}

/// `RiskEngine::check` alone under `limits`, nanoseconds per order (mean over `n`): the
/// [`bench_orders`], [`ORDER_SPACING_NS`] apart in virtual time against a fresh quote, each
/// filled at its price (outside the timing) so the position stays flat and nothing stays
/// open, as a trading day goes.
fn risk_check_cost(n: usize, limits: colony_host::orders::risk::RiskLimits) -> anyhow::Result<f64> {
    use colony_host::orders::risk::{Fill, RiskEngine};
    use rust_decimal::Decimal;

    let overhead = timer_overhead();
    let mut risk = RiskEngine::new(limits);
    let mut now = ORDERS_EPOCH_NS;
    let mut total = Duration::ZERO;
    for req in bench_orders(n, "bench-risk") {
        now += ORDER_SPACING_NS;
        let quote = bench_quote(now);
        let t = Instant::now();
        let checked = risk.check(std::hint::black_box(&req), Some(&quote), now);
        total += t.elapsed();
        checked.map_err(|r| anyhow::anyhow!("the risk bench's order was refused: {r}"))?;
        let price = req.price.unwrap_or_default();
        risk.on_fill(&Fill {
            agent: req.agent.clone(),
            client_id: Some(req.client_id.clone()),
            symbol: req.symbol.clone(),
            side: req.side,
            qty: req.qty,
            price,
            // The paper exchange's taker fee, 5 bps.
            fee: price * req.qty * Decimal::new(5, 4),
        })?;
        risk.on_closed(&req.agent, &req.client_id);
    }
    Ok((per_op(total, n as u64) - overhead).max(0.0))
}

/// `OrderService::place` on the paper router under [`realistic_limits`], nanoseconds per
/// order (mean over `n`): risk, the paper fill, the router's order table and the events
/// published to a subscriber; the reference quote is refreshed before each order, outside
/// the timing.
fn place_cost(n: usize) -> anyhow::Result<f64> {
    use colony_host::bus::Bus;
    use colony_host::market::types::MarketEvent;
    use colony_host::orders::service::{Ack, OrderService, OrdersConfig, events_subject};

    let overhead = timer_overhead();
    let bus = Bus::new();
    let router = OrderService::paper(
        bus.clone(),
        OrdersConfig {
            risk: realistic_limits(),
            ..OrdersConfig::default()
        },
    );
    let agent = "bench-router";
    let sink = bus.mailbox("bench-sink", 64);
    bus.subscribe("bench-sink", &events_subject(agent), &sink)?;
    let mut now = ORDERS_EPOCH_NS;
    let mut total = Duration::ZERO;
    for req in bench_orders(n, agent) {
        now += ORDER_SPACING_NS;
        router.on_market(&MarketEvent::Quote(bench_quote(now)));
        let t = Instant::now();
        let ack = router.place(std::hint::black_box(req), now);
        total += t.elapsed();
        anyhow::ensure!(ack == Ack::Submitted, "the place bench's order: {ack:?}");
        while sink.try_recv().is_some() {
            sink.done();
        }
    }
    let c = router.counters();
    anyhow::ensure!(
        c.fills == n as u64 && c.events_undelivered == 0,
        "the place bench filled {} of {n} orders ({} events undelivered)",
        c.fills,
        c.events_undelivered
    );
    Ok((per_op(total, n as u64) - overhead).max(0.0))
}

/// The embedded bench component loaded as an agent on a fresh runtime (kept alive by the
/// caller: its epoch ticker drives deadlines), with the limits it runs under.
fn bench_agent(
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
async fn spawn_bench_agents(
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
fn handled(agents: &[colony_host::agent::AgentHandle]) -> u64 {
    use std::sync::atomic::Ordering::Relaxed;
    agents
        .iter()
        .map(|a| a.stats().delivered.load(Relaxed) + a.stats().failed.load(Relaxed))
        .sum()
}

/// One line per bench agent that failed an event, restarted or was quarantined: what a
/// loaded machine can do to an agent (a limit hit), reported rather than fatal.
fn failures(agents: &[colony_host::agent::AgentHandle]) -> Vec<String> {
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
struct Progress {
    last: u64,
    since: Instant,
}

/// No bench agent handled an event for this long: stalled.
const STALLED: Duration = Duration::from_secs(30);
/// A stall with failed agents is waited out this long (the longest restart backoff is 30 s).
const STALLED_WITH_FAILURES: Duration = Duration::from_secs(120);

impl Progress {
    fn new(agents: &[colony_host::agent::AgentHandle]) -> Progress {
        Progress {
            last: handled(agents),
            since: Instant::now(),
        }
    }

    /// Whether to keep waiting: true while the agents make progress (or have not stalled
    /// for long); false when failed agents stalled; an error when agents stalled unfailed.
    fn keep_waiting(
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
fn native_sinks<T: Send + Sync + 'static>(
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

/// The demo at max speed: what `colony run` alone does, timed.
#[derive(Debug, Clone, Serialize)]
pub struct DemoBench {
    /// Market events replayed.
    pub events: u64,
    /// Agents running (the shipped plugins that are agents).
    pub agents: usize,
    /// Events the agents handled together (market data, messages, timers, order events).
    pub deliveries: u64,
    /// Fills on the paper exchange.
    pub fills: u64,
    /// Wall-clock seconds from the feed's start to every agent being done with it.
    pub wall_s: f64,
    /// `events / wall_s`.
    pub events_per_sec: f64,
    /// The same replay through the same host with no plugins (the baseline, same run).
    pub bare_wall_s: f64,
    /// `events / bare_wall_s`.
    pub bare_events_per_sec: f64,
    /// `wall_s / bare_wall_s`.
    pub ratio: f64,
}

/// Runs the shipped plugins (the demo swarm) on the embedded replay at max speed, as
/// `colony run` alone does, and the same replay with an empty plugins folder; each in a fresh
/// data directory, the host started before the clock starts.
pub async fn demo() -> anyhow::Result<DemoBench> {
    async fn once(with_plugins: bool) -> anyhow::Result<(u64, usize, u64, u64, f64)> {
        static RUNS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let dir = std::env::temp_dir().join(format!(
            "colony-bench-demo-{}-{}",
            std::process::id(),
            RUNS.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&dir);
        let mut config = colony_host::config::HostConfig::new(dir.join("data"));
        config.plugins_dir = dir.join("plugins");
        std::fs::create_dir_all(&config.plugins_dir)?;
        if with_plugins {
            colony_host::embedded::install(&config.plugins_dir)?;
        }
        config.apply_demo();
        config.feed = Some(colony_host::market::feed::FeedSpec::Embedded);
        config.speed = colony_host::market::feed::Speed::Max;
        let host = colony_host::supervisor::Host::start(config).await?;
        let start = Instant::now();
        let feed = host
            .start_feed()
            .ok_or_else(|| anyhow::anyhow!("the demo host has no feed"))?;
        let report = feed.await?;
        host.settle().await;
        let wall = start.elapsed().as_secs_f64();
        let fills = host.orders().map_or(0, |o| o.counters().fills);
        let plugins = host.shutdown().await;
        let agents = plugins
            .iter()
            .filter(|p| p.info.kind == colony_caps::manifest::Kind::Agent)
            .count();
        let deliveries = plugins.iter().map(|p| p.delivered).sum();
        let _ = std::fs::remove_dir_all(&dir);
        Ok((report.events, agents, deliveries, fills, wall))
    }
    let (bare_events, _, _, _, bare_wall) = once(false).await?;
    let (events, agents, deliveries, fills, wall) = once(true).await?;
    if bare_events != events {
        anyhow::bail!("the two replays played {bare_events} and {events} events");
    }
    Ok(DemoBench {
        events,
        agents,
        deliveries,
        fills,
        wall_s: wall,
        events_per_sec: events as f64 / wall,
        bare_wall_s: bare_wall,
        bare_events_per_sec: events as f64 / bare_wall,
        ratio: wall / bare_wall,
    })
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
