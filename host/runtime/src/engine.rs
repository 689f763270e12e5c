//! The one wasmtime [`Engine`] of a host: pooling allocator, fuel, epoch interruption driven
//! by a ticker thread, and an on-disk cache of compiled components.
//!
//! **Architecture invariant:** there is exactly one `Runtime` per host process; every plugin
//! is compiled by it and instantiated in stores of its engine. The cache key is the blake3
//! digest of the component bytes together with the engine's compatibility hash, so a cached
//! artifact is never used by an engine configured differently.

use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use wasmtime::component::Component;
use wasmtime::{Config, Engine, InstanceAllocationStrategy, PoolingAllocationConfig};

use crate::limits::Limits;

/// How often the ticker thread advances the engine's epoch. Deadlines are checked (and
/// running guests yield to the async executor) at this granularity.
pub(crate) const EPOCH_TICK: Duration = Duration::from_millis(1);

/// Settings the engine is built from (the operator's limits decide the pool's slot sizes).
#[derive(Debug, Clone)]
pub struct EngineSettings {
    /// Largest memory any plugin may have (the pool's slot size).
    pub max_memory_bytes: u64,
    /// Largest table limit of any plugin (the pool's elements per table), so the limiter,
    /// which names the limit, is what stops a table grow, not the pool.
    pub max_table_elements: u64,
    /// Instances that may exist at once (agents plus concurrent tool calls).
    pub max_instances: u32,
    /// Use the pooling allocator (falls back to on-demand if the pool cannot be reserved).
    pub pooling: bool,
}

impl Default for EngineSettings {
    fn default() -> Self {
        EngineSettings {
            max_memory_bytes: Limits::agent_default()
                .memory_bytes
                .max(Limits::tool_default().memory_bytes),
            max_table_elements: Limits::agent_default()
                .table_elements
                .max(Limits::tool_default().table_elements),
            max_instances: 1_000,
            pooling: true,
        }
    }
}

/// Where a compiled component came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CompileSource {
    /// Compiled now (and written to the cache when there is one).
    Compiled,
    /// Loaded from the on-disk cache; nothing was compiled.
    Cache,
}

/// A compiled component and how long getting it took.
pub struct Compiled {
    /// The component, ready to link.
    pub component: Component,
    /// Compiled or cached.
    pub source: CompileSource,
    /// Wall time to compile or deserialize.
    pub elapsed: Duration,
}

/// The engine plus its epoch ticker and compile cache.
pub struct Runtime {
    engine: Engine,
    cache_dir: Option<PathBuf>,
    engine_key: u64,
    pooling: bool,
    compiles: AtomicU64,
    ticker_stop: Arc<AtomicBool>,
}

impl Runtime {
    /// Builds the engine and starts the epoch ticker. `cache_dir` enables the compiled
    /// component cache.
    pub fn new(settings: &EngineSettings, cache_dir: Option<PathBuf>) -> wasmtime::Result<Runtime> {
        let engine = match settings.pooling {
            true => match Engine::new(&config(settings, true)) {
                Ok(engine) => Some(engine),
                Err(e) => {
                    tracing::warn!(error = %e, "pooling allocator unavailable, using on-demand allocation");
                    None
                }
            },
            false => None,
        };
        let pooling = engine.is_some();
        let engine = match engine {
            Some(engine) => engine,
            None => Engine::new(&config(settings, false))?,
        };
        let mut hasher = StableHasher::default();
        engine.precompile_compatibility_hash().hash(&mut hasher);
        let engine_key = hasher.finish();
        if let Some(dir) = &cache_dir {
            std::fs::create_dir_all(dir).map_err(|e| {
                wasmtime::format_err!("cannot create cache directory {}: {e}", dir.display())
            })?;
        }
        background_compiler_threads();
        let ticker_stop = Arc::new(AtomicBool::new(false));
        spawn_ticker(engine.weak(), ticker_stop.clone());
        Ok(Runtime {
            engine,
            cache_dir,
            engine_key,
            pooling,
            compiles: AtomicU64::new(0),
            ticker_stop,
        })
    }

    /// The engine.
    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    /// Whether instances come from the pooling allocator.
    pub fn is_pooling(&self) -> bool {
        self.pooling
    }

    /// How many components this runtime has compiled (not counting cache hits).
    pub fn compile_count(&self) -> u64 {
        self.compiles.load(Ordering::Relaxed)
    }

    /// Compiles `bytes` (whose blake3 digest is `digest`), or loads the cached artifact.
    pub fn compile(&self, bytes: &[u8], digest: &blake3::Hash) -> wasmtime::Result<Compiled> {
        let start = Instant::now();
        let cached = self.cache_path(digest);
        if let Some(path) = &cached
            && path.exists()
        {
            // SAFETY: the cache directory is the host's own data directory and every file in
            // it was written by `Component::serialize` of an engine with this same
            // compatibility hash (it is part of the file name).
            match unsafe { Component::deserialize_file(&self.engine, path) } {
                Ok(component) => {
                    return Ok(Compiled {
                        component,
                        source: CompileSource::Cache,
                        elapsed: start.elapsed(),
                    });
                }
                Err(e) => {
                    tracing::warn!(path = %path.display(), error = %e, "discarding unreadable cache entry");
                    let _ = std::fs::remove_file(path);
                }
            }
        }
        let component = Component::from_binary(&self.engine, bytes)?;
        self.compiles.fetch_add(1, Ordering::Relaxed);
        if let Some(path) = &cached
            && let Err(e) = write_cache(path, &component)
        {
            tracing::warn!(path = %path.display(), error = %e, "cannot write compile cache");
        }
        Ok(Compiled {
            component,
            source: CompileSource::Compiled,
            elapsed: start.elapsed(),
        })
    }

    fn cache_path(&self, digest: &blake3::Hash) -> Option<PathBuf> {
        let dir = self.cache_dir.as_ref()?;
        let mut key = blake3::Hasher::new();
        key.update(digest.as_bytes());
        key.update(&self.engine_key.to_le_bytes());
        key.update(env!("CARGO_PKG_VERSION").as_bytes());
        Some(dir.join(format!("{}.cwasm", &key.finalize().to_hex()[..32])))
    }
}

impl Drop for Runtime {
    fn drop(&mut self) {
        self.ticker_stop.store(true, Ordering::Relaxed);
    }
}

/// The nice value of background work: compiling components (wasmtime's compiler threads) and
/// validating tools. The kernel then runs agents' events first whenever both want a core.
pub(crate) const BACKGROUND_NICE: i32 = 10;

/// Lowers the calling thread's CPU priority to [`BACKGROUND_NICE`] (on Linux a nice value is
/// per thread). Best effort: a failure leaves the priority as it was.
pub(crate) fn lower_thread_priority() {
    if let Err(e) = rustix::process::setpriority_process(None, BACKGROUND_NICE) {
        tracing::debug!(error = %e, "cannot lower the priority of a background thread");
    }
}

/// Builds rayon's global pool, on which wasmtime compiles in parallel, with threads at the
/// background priority and one core fewer than the machine has (at least one), so compiling a
/// tool that is being registered always leaves a core to the agents; a no-op if the pool exists
/// already (another runtime in the process).
fn background_compiler_threads() {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let _ = rayon::ThreadPoolBuilder::new()
        .num_threads(cores.saturating_sub(1).max(1))
        .thread_name(|i| format!("colony-compile-{i}"))
        .start_handler(|_| lower_thread_priority())
        .build_global();
}

/// Runs `work` to completion on a thread of its own at the background priority, driven by the
/// current tokio runtime's timers and I/O, and returns its output: for CPU-heavy work (tool
/// validation compiles a component and runs two calls) that must not run on, or slow down,
/// the threads that deliver agents' events.
pub async fn run_in_background<F>(work: F) -> Result<F::Output, String>
where
    F: std::future::Future + Send + 'static,
    F::Output: Send + 'static,
{
    let runtime = tokio::runtime::Handle::current();
    let (tx, rx) = tokio::sync::oneshot::channel();
    std::thread::Builder::new()
        .name("colony-background".into())
        .spawn(move || {
            lower_thread_priority();
            let _ = tx.send(runtime.block_on(work));
        })
        .map_err(|e| format!("cannot start a background thread: {e}"))?;
    rx.await
        .map_err(|_| "the background work ended without a result".to_string())
}

fn write_cache(path: &Path, component: &Component) -> wasmtime::Result<()> {
    let bytes = component.serialize()?;
    let tmp = path.with_extension(format!("tmp{}", std::process::id()));
    std::fs::write(&tmp, bytes)?;
    std::fs::rename(&tmp, path)?;
    Ok(())
}

fn config(settings: &EngineSettings, pooling: bool) -> Config {
    let mut config = Config::new();
    config
        .wasm_component_model(true)
        .consume_fuel(true)
        .epoch_interruption(true)
        .max_wasm_stack(512 * 1024)
        .async_stack_size(2 * 1024 * 1024)
        .memory_init_cow(true)
        .parallel_compilation(true);
    if pooling {
        let mut pool = PoolingAllocationConfig::default();
        let slot = usize::try_from(settings.max_memory_bytes).unwrap_or(usize::MAX);
        pool.total_component_instances(settings.max_instances)
            // A Rust wasip2 component has a few core instances, one memory and a few tables.
            // Each memory slot reserves address space (not RAM) for guard-page bounds checks.
            .total_core_instances(settings.max_instances.saturating_mul(4))
            .total_memories(settings.max_instances)
            .total_tables(settings.max_instances.saturating_mul(4))
            .total_stacks(settings.max_instances)
            .max_memory_size(slot)
            .table_elements(usize::try_from(settings.max_table_elements).unwrap_or(usize::MAX))
            // A freed slot's first 64 KiB of linear memory and of each table are reset with
            // memset instead of madvise (they stay resident, so reuse does not fault them in
            // again), and decommits of the rest are batched 32 slots at a time (one flush and
            // TLB shootdown per batch instead of per instance). Measured with `colony bench`'s
            // tool call, a fresh instance per call: p50 35.5 µs before, 24.3 µs with both
            // (`docs/benchmarks.md`, "Results").
            .linear_memory_keep_resident(64 * 1024)
            .table_keep_resident(64 * 1024)
            .decommit_batch_size(32);
        config.allocation_strategy(InstanceAllocationStrategy::Pooling(pool));
    }
    config
}

/// Advances the epoch every [`EPOCH_TICK`] until the engine is gone or the runtime drops.
fn spawn_ticker(engine: wasmtime::EngineWeak, stop: Arc<AtomicBool>) {
    let spawned = std::thread::Builder::new()
        .name("colony-epoch".into())
        .spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                std::thread::sleep(EPOCH_TICK);
                match engine.upgrade() {
                    Some(engine) => engine.increment_epoch(),
                    None => break,
                }
            }
        });
    if let Err(e) = spawned {
        tracing::error!(error = %e, "cannot start the epoch ticker: deadlines will not be enforced");
    }
}

/// FNV-1a: a hasher whose output does not change between runs or Rust releases, for keys
/// that are written to disk.
struct StableHasher(u64);

impl Default for StableHasher {
    fn default() -> Self {
        StableHasher(0xcbf2_9ce4_8422_2325)
    }
}

impl Hasher for StableHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 ^= u64::from(*b);
            self.0 = self.0.wrapping_mul(0x0100_0000_01b3);
        }
    }
}
