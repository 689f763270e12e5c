//! Resource limits: the operator's defaults, their resolution against what a manifest asks
//! for, the [`GuestLimiter`] that wasmtime consults when a guest grows memory or tables, and
//! [`LimitExceeded`], the error that names the limit which ended an event or call.

use colony_caps::manifest::{Kind, RequestedLimits};
use serde::{Deserialize, Serialize};
use std::fmt;
use std::time::Duration;

const MIB: u64 = 1024 * 1024;

/// Limits for one event (agent) or one call (tool), after resolution.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Limits {
    /// Fuel (roughly, wasm instructions) per event or call.
    pub fuel: u64,
    /// CPU time the guest itself may consume per event or call, in milliseconds, measured on
    /// the thread that runs it (`crate::store::CpuMeter`): time the thread was not scheduled,
    /// waits in host calls and other plugins' work do not count. (`deadline_ms`, its name
    /// before it measured CPU time, is still accepted in configuration and manifests.)
    #[serde(alias = "deadline_ms")]
    pub cpu_ms: u64,
    /// Last-resort wall-clock ceiling per event or call in milliseconds, waits included: a
    /// hang guard far above the CPU budget. Every wait in a host call has its own, shorter
    /// timeout; this fires only when something hangs, and a replay in which it fires is not
    /// repeatable.
    pub hang_guard_ms: u64,
    /// Linear memory of the instance in bytes, all memories together.
    pub memory_bytes: u64,
    /// Guest stdout + stderr bytes per event or call.
    pub output_bytes: u64,
    /// Size of a message, tool argument or tool result in bytes.
    pub payload_bytes: u64,
    /// Elements across all tables of the instance.
    pub table_elements: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits::agent_default()
    }
}

impl Limits {
    /// Defaults for agents (per event), from the design brief.
    pub const fn agent_default() -> Limits {
        Limits {
            fuel: 50_000_000,
            cpu_ms: 100,
            hang_guard_ms: 30_000,
            memory_bytes: 64 * MIB,
            output_bytes: 64 * 1024,
            payload_bytes: MIB,
            table_elements: 100_000,
        }
    }

    /// Defaults for tools (per call).
    pub const fn tool_default() -> Limits {
        Limits {
            fuel: 200_000_000,
            cpu_ms: 2_000,
            hang_guard_ms: 60_000,
            memory_bytes: 128 * MIB,
            output_bytes: 64 * 1024,
            payload_bytes: MIB,
            table_elements: 100_000,
        }
    }

    /// The operator default for a kind of plugin.
    pub const fn default_for(kind: Kind) -> Limits {
        match kind {
            Kind::Agent => Limits::agent_default(),
            Kind::Tool => Limits::tool_default(),
        }
    }

    /// The CPU-time budget as a `Duration`.
    pub fn cpu(&self) -> Duration {
        Duration::from_millis(self.cpu_ms)
    }

    /// How long before the hang guard a wait in a host call ends, so the guest gets its
    /// wait's timeout and time to handle it before the guard: a tenth of the guard, between
    /// 2 ms and 1 s.
    pub fn wait_margin(&self) -> Duration {
        Duration::from_millis((self.hang_guard_ms / 10).clamp(2, 1_000))
    }

    /// The wall-clock hang guard as a `Duration`.
    pub(crate) fn hang_guard(&self) -> Duration {
        Duration::from_millis(self.hang_guard_ms)
    }

    /// Applies what a manifest asks for: a plugin may lower a limit, never raise it. Returns
    /// the resolved limits and the names of requests that were clamped (for the operator).
    pub fn resolve(&self, asked: &RequestedLimits) -> (Limits, Vec<String>) {
        let mut clamped = Vec::new();
        let mut pick = |name: &str, default: u64, asked: Option<u64>| match asked {
            Some(v) if v > default => {
                clamped.push(format!("{name} {v} > {default}"));
                default
            }
            Some(v) => v,
            None => default,
        };
        let resolved = Limits {
            fuel: pick("fuel", self.fuel, asked.fuel),
            cpu_ms: pick("cpu_ms", self.cpu_ms, asked.cpu_ms),
            hang_guard_ms: self.hang_guard_ms,
            memory_bytes: pick("memory_bytes", self.memory_bytes, asked.memory_bytes),
            output_bytes: pick("output_bytes", self.output_bytes, asked.output_bytes),
            payload_bytes: self.payload_bytes,
            table_elements: self.table_elements,
        };
        (resolved, clamped)
    }
}

/// The limit that ended an event or call. Returned from wasmtime callbacks as the trap's
/// error, then recovered by downcasting, so the report names the limit rather than a
/// generic trap.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LimitExceeded {
    /// The fuel budget ran out.
    #[error("fuel budget of {0} exhausted")]
    Fuel(u64),
    /// The guest consumed its CPU-time budget (measured on its own thread).
    #[error("cpu time of {0} ms exceeded")]
    Cpu(u64),
    /// The wall-clock hang guard fired: the event or call (waits included) ran this long.
    #[error("wall-clock hang guard of {0} ms exceeded")]
    HangGuard(u64),
    /// A memory grow beyond the memory limit.
    #[error("memory limit of {} exceeded (asked for {})", human_bytes(*limit), human_bytes(*asked))]
    Memory {
        /// The limit in bytes.
        limit: u64,
        /// Total bytes the grow would have reached.
        asked: u64,
    },
    /// A table grow beyond the element limit.
    #[error("table limit of {0} elements exceeded")]
    Table(u64),
    /// Guest stdout/stderr beyond the output cap.
    #[error("output limit of {} exceeded", human_bytes(*.0))]
    Output(u64),
    /// The guest's wasm stack overflowed.
    #[error("stack limit exceeded (stack overflow)")]
    Stack,
    /// Arguments, a message or a result beyond the payload cap.
    #[error("payload limit of {} exceeded ({} given)", human_bytes(*limit), human_bytes(*size))]
    Payload {
        /// The limit in bytes.
        limit: u64,
        /// The size given.
        size: u64,
    },
}

impl LimitExceeded {
    /// Short name of the limit, stable for tests, metrics and the audit.
    pub fn name(&self) -> &'static str {
        match self {
            LimitExceeded::Fuel(_) => "fuel",
            LimitExceeded::Cpu(_) => "cpu",
            LimitExceeded::HangGuard(_) => "hang-guard",
            LimitExceeded::Memory { .. } => "memory",
            LimitExceeded::Table(_) => "table",
            LimitExceeded::Output(_) => "output",
            LimitExceeded::Stack => "stack",
            LimitExceeded::Payload { .. } => "payload",
        }
    }
}

/// Formats a byte count the way operators read it (`64 MiB`, `8 KiB`, `100 B`).
pub fn human_bytes(n: u64) -> String {
    if n >= MIB && n.is_multiple_of(MIB) {
        format!("{} MiB", n / MIB)
    } else if n >= 1024 && n.is_multiple_of(1024) {
        format!("{} KiB", n / 1024)
    } else {
        format!("{n} B")
    }
}

/// Consulted by wasmtime whenever the guest creates or grows a memory or table. Memory is
/// counted across all memories of the store, so several small memories cannot add up to
/// more than the limit.
#[derive(Debug)]
pub struct GuestLimiter {
    memory_limit: u64,
    table_limit: u64,
    memory_used: u64,
    table_used: u64,
}

impl GuestLimiter {
    /// A limiter for one store.
    pub fn new(limits: &Limits) -> GuestLimiter {
        GuestLimiter {
            memory_limit: limits.memory_bytes,
            table_limit: limits.table_elements,
            memory_used: 0,
            table_used: 0,
        }
    }

    /// Bytes of linear memory the store holds now.
    pub(crate) fn memory_used(&self) -> u64 {
        self.memory_used
    }
}

impl wasmtime::ResourceLimiter for GuestLimiter {
    fn memory_growing(
        &mut self,
        current: usize,
        desired: usize,
        maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        let delta = (desired as u64).saturating_sub(current as u64);
        let total = self.memory_used.saturating_add(delta);
        if total > self.memory_limit {
            return Err(wasmtime::Error::new(LimitExceeded::Memory {
                limit: self.memory_limit,
                asked: total,
            }));
        }
        // Past the memory's own declared maximum the grow fails as wasm says (-1), and
        // nothing was taken, so nothing is counted.
        if maximum.is_some_and(|m| desired > m) {
            return Ok(false);
        }
        self.memory_used = total;
        Ok(true)
    }

    fn table_growing(
        &mut self,
        current: usize,
        desired: usize,
        maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        let delta = (desired as u64).saturating_sub(current as u64);
        let total = self.table_used.saturating_add(delta);
        if total > self.table_limit {
            return Err(wasmtime::Error::new(LimitExceeded::Table(self.table_limit)));
        }
        // As for memory: the table's declared maximum fails the grow, uncounted. (The pool's
        // per-table size is the table limit, `engine::config`, so it never fails it first.)
        if maximum.is_some_and(|m| desired > m) {
            return Ok(false);
        }
        self.table_used = total;
        Ok(true)
    }

    fn instances(&self) -> usize {
        // A Rust wasip2 component has a handful of core instances; more is not a plugin.
        32
    }

    fn tables(&self) -> usize {
        32
    }

    fn memories(&self) -> usize {
        8
    }
}

/// The largest initial linear memory (bytes) and table (elements) that any core module of a
/// component declares: what an instance needs before its first instruction runs.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct InitialSizes {
    /// Largest initial memory, in bytes.
    pub memory_bytes: u64,
    /// Largest initial table, in elements.
    pub table_elements: u64,
}

impl InitialSizes {
    /// Reads them from a component's (or module's) bytes, nested modules included, without
    /// compiling. A malformed binary yields what was read before the fault (compiling it
    /// reports the fault).
    pub fn of(bytes: &[u8]) -> InitialSizes {
        use wasmtime::wasmparser::{Parser, Payload};
        let mut sizes = InitialSizes::default();
        for payload in Parser::new(0).parse_all(bytes) {
            match payload {
                Ok(Payload::MemorySection(reader)) => {
                    for memory in reader.into_iter().flatten() {
                        let page = 1u64 << memory.page_size_log2.unwrap_or(16).min(16);
                        let bytes = memory.initial.saturating_mul(page);
                        sizes.memory_bytes = sizes.memory_bytes.max(bytes);
                    }
                }
                Ok(Payload::TableSection(reader)) => {
                    for table in reader.into_iter().flatten() {
                        sizes.table_elements = sizes.table_elements.max(table.ty.initial);
                    }
                }
                Ok(_) => {}
                Err(_) => break,
            }
        }
        sizes
    }

    /// Whether they fit `limits`: the limit they break otherwise, so a plugin that could never
    /// start is refused at load naming Colony's limit (rather than the allocator's "does not
    /// fit in pooling allocator requirements").
    pub fn check(&self, limits: &Limits) -> Result<(), LimitExceeded> {
        if self.memory_bytes > limits.memory_bytes {
            return Err(LimitExceeded::Memory {
                limit: limits.memory_bytes,
                asked: self.memory_bytes,
            });
        }
        if self.table_elements > limits.table_elements {
            return Err(LimitExceeded::Table(limits.table_elements));
        }
        Ok(())
    }
}

impl fmt::Display for Limits {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "fuel {}, cpu {} ms, memory {}, output {}",
            self.fuel,
            self.cpu_ms,
            human_bytes(self.memory_bytes),
            human_bytes(self.output_bytes)
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use wasmtime::ResourceLimiter;

    #[test]
    fn manifest_may_lower_but_not_raise() {
        let asked = RequestedLimits {
            fuel: Some(1_000),
            cpu_ms: Some(10_000),
            memory_bytes: None,
            output_bytes: Some(1),
        };
        let (l, clamped) = Limits::agent_default().resolve(&asked);
        assert_eq!(l.fuel, 1_000);
        assert_eq!(l.cpu_ms, 100);
        assert_eq!(l.memory_bytes, 64 * MIB);
        assert_eq!(l.output_bytes, 1);
        assert_eq!(clamped, vec!["cpu_ms 10000 > 100".to_string()]);
    }

    #[test]
    fn limiter_counts_all_memories_together() {
        let mut lim = GuestLimiter::new(&Limits {
            memory_bytes: 10 * MIB,
            ..Limits::agent_default()
        });
        let m = MIB as usize;
        assert!(lim.memory_growing(0, 4 * m, None).unwrap());
        assert!(lim.memory_growing(0, 4 * m, None).unwrap());
        let err = lim.memory_growing(4 * m, 7 * m, None).unwrap_err();
        let lim_err = err.downcast_ref::<LimitExceeded>().unwrap();
        assert_eq!(lim_err.name(), "memory");
        assert_eq!(
            lim_err.to_string(),
            "memory limit of 10 MiB exceeded (asked for 11 MiB)"
        );
        assert_eq!(lim.memory_used(), 8 * MIB);
    }

    #[test]
    fn human_bytes_table() {
        for (n, s) in [
            (0, "0 B"),
            (100, "100 B"),
            (8192, "8 KiB"),
            (64 * MIB, "64 MiB"),
            (1500, "1500 B"),
        ] {
            assert_eq!(human_bytes(n), s);
        }
    }
}
