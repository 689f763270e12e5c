//! The running set in step with the plugins folder: a sync pass, loading and starting a
//! plugin beside its old build and swapping it in, impostor names, an agent's name on the
//! NATS bus, and plugin status.

use super::trading::agent_risk_limits;
use super::{Entry, Host, Rejected, Running, names};
use crate::agent::{AgentHandle, AgentServices, AgentSpec, AgentStats};
use crate::plugin::{Linked, LoadError, LoadedPlugin, PluginInfo};
use crate::store::CallError;
use crate::tool::ToolRunner;
use colony_caps::manifest::Kind;
use serde::Serialize;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;

/// What one pass over the plugins folder changed.
#[derive(Debug, Default, Clone, Serialize)]
pub struct SyncReport {
    /// Plugins started for the first time.
    pub loaded: Vec<String>,
    /// Plugins whose file changed and whose new build replaced the old.
    pub swapped: Vec<String>,
    /// Plugins whose file went away.
    pub unloaded: Vec<String>,
    /// Files refused, with the reason (`file: reason`).
    pub rejected: Vec<String>,
}

/// One plugin as `colony plugins list` and `colony status` show it.
#[derive(Debug, Clone, Serialize)]
pub struct PluginStatus {
    /// Static information.
    #[serde(flatten)]
    pub info: PluginInfo,
    /// Agents: events delivered.
    pub delivered: u64,
    /// Agents: events that failed.
    pub failed: u64,
    /// Agents: instance re-creations.
    pub restarts: u64,
    /// Agents: events refused because the mailbox was full.
    pub refused: u64,
    /// Agents: log lines dropped over the per-event cap.
    pub log_dropped: u64,
    /// Agents: bus messages lost to a full mailbox (market data, oldest first).
    pub bus_dropped: u64,
    /// Agents: bus messages refused by a full mailbox (sent to dead letters).
    pub bus_refused: u64,
    /// Agents: bus messages that expired in the mailbox (sent to dead letters).
    pub bus_expired: u64,
    /// Agents: market events the bus routed to its mailbox (queued, or dropped on arrival).
    pub md_routed: u64,
    /// Agents: market events its actor took from the mailbox.
    pub md_taken: u64,
    /// Agents: messages the agent published that some mailbox refused (it was told
    /// `limit-exceeded`).
    pub bus_sent_refused: u64,
    /// Agents: events waiting.
    pub mailbox_depth: usize,
    /// Agents: quarantined.
    pub quarantined: bool,
    /// Agents: lifecycle state (`cold`, `warming`, `active`, `idle`, `sleeping`, `failed`,
    /// `quarantined`, `paused`); tools: `ready`.
    pub state: String,
    /// Agents: fuel used by every event so far.
    pub fuel_used: u64,
    /// Agents: wall-clock milliseconds spent in handlers.
    pub busy_ms: f64,
    /// Agents: times put to sleep.
    pub sleeps: u64,
    /// Agents: times woken.
    pub wakes: u64,
    /// Agents: bytes of linear memory the instance holds (0 asleep).
    pub memory_bytes: u64,
    /// Agents: recovery snapshots the host took (docs/lifecycle.md).
    pub snapshots: u64,
    /// Agents: wall-clock milliseconds spent taking them.
    pub snapshot_ms: f64,
    /// Agents: order events redelivered to a new instance after their handler failed.
    pub redelivered: u64,
    /// Agents: events dropped while paused (market data, ticks; order events and timers
    /// beyond what a paused agent holds).
    pub paused_dropped: u64,
    /// Agents: last failure.
    pub last_error: Option<String>,
}

/// A file the host refused.
#[derive(Debug, Clone, Serialize)]
pub struct RejectedFile {
    /// The file.
    pub file: PathBuf,
    /// Why.
    pub reason: String,
}

impl Host {
    /// Brings the running set in step with the plugins folder.
    pub async fn sync(&self) -> SyncReport {
        let _one_at_a_time = self.sync_lock.lock().await;
        let mut report = SyncReport::default();
        let files = match wasm_files(&self.config.plugins_dir) {
            Ok(files) => files,
            Err(e) => {
                tracing::error!(folder = %self.config.plugins_dir.display(), error = %e, "cannot read plugins folder");
                return report;
            }
        };
        let mut digests = HashMap::new();
        let mut claims = Vec::new();
        for file in &files {
            match crate::files::read_regular(file, crate::plugin::MAX_FILE_BYTES) {
                Ok(bytes) => {
                    // The sidecar is part of what a file means: a changed sidecar reloads.
                    let mut h = blake3::Hasher::new();
                    h.update(&bytes);
                    let side = crate::files::read_regular(
                        &file.with_extension("toml"),
                        crate::files::MAX_TEXT_BYTES,
                    )
                    .ok();
                    if let Some(side) = &side {
                        h.update(side);
                    }
                    digests.insert(file.clone(), h.finalize());
                    let stem = file.file_stem().and_then(|s| s.to_str()).unwrap_or("");
                    let side = side.and_then(|b| String::from_utf8(b).ok());
                    if let Some(name) = crate::plugin::declared_name(&bytes, side.as_deref(), stem)
                    {
                        claims.push(names::Claim {
                            file: file.clone(),
                            name,
                            digest: blake3::hash(&bytes).to_hex().to_string(),
                        });
                    }
                }
                Err(e) => {
                    tracing::warn!(file = %file.display(), error = %e, "cannot read plugin file")
                }
            }
        }

        // Removed files: stop their plugins; forget their rejections.
        let gone: Vec<(String, PathBuf)> = {
            let mut reg = self.registry.write().await;
            reg.rejected.retain(|f, _| digests.contains_key(f));
            reg.by_name
                .iter()
                .filter(|(_, e)| !digests.contains_key(&e.info.file))
                .map(|(n, e)| (n.clone(), e.info.file.clone()))
                .collect()
        };
        for (name, file) in gone {
            if let Some(entry) = self.registry.write().await.by_name.remove(&name) {
                stop(entry).await;
                self.timers.remove_agent(&name);
                tracing::info!(plugin = %name, file = %file.display(), "plugin unloaded: file removed");
                report.unloaded.push(name);
            }
        }

        // Names: a file claiming a name that belongs to another is refused, and stopped if it
        // was running under it, before the owner loads.
        let impostors = self.impostors(&claims).await;
        for (file, reason) in &impostors {
            let Some(&key) = digests.get(file) else {
                continue;
            };
            let (stopped, again) = {
                let mut reg = self.registry.write().await;
                let name = reg
                    .by_name
                    .iter()
                    .find(|(_, e)| &e.info.file == file)
                    .map(|(n, _)| n.clone());
                let entry = name.and_then(|n| reg.by_name.remove(&n));
                let again = reg
                    .rejected
                    .get(file)
                    .is_some_and(|r| r.key == key && &r.reason == reason);
                reg.rejected.insert(
                    file.clone(),
                    Rejected {
                        key,
                        reason: reason.clone(),
                        recheck: true,
                    },
                );
                (entry, again)
            };
            if again && stopped.is_none() {
                continue;
            }
            if let Some(entry) = stopped {
                let name = entry.info.name.clone();
                stop(entry).await;
                self.timers.remove_agent(&name);
                report.unloaded.push(name);
            }
            let e = LoadError {
                file: file.clone(),
                reason: reason.clone(),
            };
            tracing::error!("plugin refused: {e}");
            report.rejected.push(e.to_string());
        }

        for file in files {
            let Some(&key) = digests.get(&file) else {
                continue;
            };
            if impostors.contains_key(&file) {
                continue;
            }
            let owner = {
                let mut reg = self.registry.write().await;
                let running = reg
                    .by_name
                    .values()
                    .find(|e| e.info.file == file)
                    .map(|e| (e.info.name.clone(), e.key));
                if running.as_ref().is_some_and(|(_, k)| *k == key) {
                    // Back to the build that is running (a bad write was undone).
                    reg.rejected.remove(&file);
                    continue;
                }
                if reg
                    .rejected
                    .get(&file)
                    .is_some_and(|r| r.key == key && !r.recheck)
                {
                    continue;
                }
                running.map(|(n, _)| n)
            };
            match self.load_and_start(&file, key, owner.as_deref()).await {
                Ok((name, swapped)) => {
                    self.registry.write().await.rejected.remove(&file);
                    if swapped {
                        report.swapped.push(name);
                    } else {
                        report.loaded.push(name);
                    }
                }
                Err(Refused { error: e, recheck }) => {
                    let again = self.registry.write().await.rejected.insert(
                        file.clone(),
                        Rejected {
                            key,
                            reason: e.reason.clone(),
                            recheck,
                        },
                    );
                    // A refusal decided again for the same reason is not news.
                    if again.is_some_and(|r| r.key == key && r.reason == e.reason) {
                        continue;
                    }
                    tracing::error!("plugin refused: {e}");
                    report.rejected.push(e.to_string());
                }
            }
        }
        report
    }

    /// The impostors among `claims` ([`names`]), judged against the grant book, the running
    /// set and the registered tools.
    async fn impostors(&self, claims: &[names::Claim]) -> HashMap<PathBuf, String> {
        struct Known {
            approved: HashMap<String, String>,
            running: HashMap<String, PathBuf>,
            registered: std::collections::HashSet<String>,
        }
        impl names::Owners for Known {
            fn approved(&self, name: &str) -> Option<String> {
                self.approved.get(name).cloned()
            }
            fn running(&self, name: &str) -> Option<PathBuf> {
                self.running.get(name).cloned()
            }
            fn registered(&self, name: &str) -> bool {
                self.registered.contains(name)
            }
        }
        let approved = {
            let book = self.book.lock().await;
            claims
                .iter()
                .filter_map(|c| {
                    let d = book.get(&c.name)?.approved_digest.clone()?;
                    Some((c.name.clone(), d))
                })
                .collect()
        };
        let running = self
            .registry
            .read()
            .await
            .by_name
            .iter()
            .map(|(n, e)| (n.clone(), e.info.file.clone()))
            .collect();
        let registered = self.tools.list().into_iter().map(|l| l.name).collect();
        names::impostors(
            claims,
            &Known {
                approved,
                running,
                registered,
            },
        )
    }

    /// Loads `file`, starts it, and puts it in the registry (replacing `previous`, the name
    /// that file ran under before, if any). Returns the name and whether it was a swap.
    async fn load_and_start(
        &self,
        file: &Path,
        key: blake3::Hash,
        previous: Option<&str>,
    ) -> Result<(String, bool), Refused> {
        let loader = self.loader.clone();
        let path = file.to_path_buf();
        let plugin = tokio::task::spawn_blocking(move || loader.load_file(&path))
            .await
            .map_err(|e| LoadError {
                file: file.to_path_buf(),
                reason: format!("loader task failed: {e}"),
            })??;
        let name = plugin.info.name.clone();
        let err = |reason: String| LoadError {
            file: file.to_path_buf(),
            reason,
        };
        {
            let reg = self.registry.read().await;
            if let Some(other) = reg.by_name.get(&name)
                && other.info.file != file
            {
                return Err(err(format!(
                    "plugin name \"{name}\" is already used by {}",
                    other.info.file.display()
                ))
                .into());
            }
        }
        // On a NATS bus an agent starts only under a name this host holds there; a new build of
        // an agent that runs here keeps the old build's hold.
        let holds = self
            .registry
            .read()
            .await
            .by_name
            .get(&name)
            .is_some_and(|e| e.claim.is_some());
        let claim = match &self.nats {
            Some(link) if plugin.info.kind == Kind::Agent && !holds => {
                Some(link.claim(&name).await.map_err(|e| Refused {
                    error: err(e.to_string()),
                    recheck: true,
                })?)
            }
            _ => None,
        };
        // An agent replacing an agent of the same name gets the old instance's snapshot:
        // the new actor is started first and waits for it before taking any event.
        let replaces_agent = {
            let reg = self.registry.read().await;
            previous
                .and_then(|p| reg.by_name.get(p))
                .is_some_and(|e| matches!(e.running, Running::Agent(_)) && e.info.name == name)
        };
        let (handover_tx, handover_rx) = match replaces_agent && plugin.info.kind == Kind::Agent {
            true => {
                let (tx, rx) = tokio::sync::oneshot::channel();
                (Some(tx), Some(rx))
            }
            false => (None, None),
        };
        // If the new build cannot start, the old one keeps running.
        let mut running = self
            .start_plugin(key, plugin, handover_rx)
            .await
            .map_err(|e| err(e.to_string()))?;
        running.claim = claim;
        // A tool is called by its plugin name; what its describe() says is not identity.
        if let Running::Tool(_, spec) = &running.running
            && spec.name != name
        {
            let claimed = spec.name.clone();
            let held_by = {
                let reg = self.registry.read().await;
                let named_after = self.config.plugins_dir.join(format!("{claimed}.wasm"));
                match reg.by_name.get(&claimed) {
                    Some(e) => format!(", which is the name of {}", e.info.file.display()),
                    None if named_after.is_file() => {
                        format!(", which is the name of {}", named_after.display())
                    }
                    None if self.tools.get(&claimed).is_some() => {
                        format!(", which is the name of the registered tool {claimed}")
                    }
                    None => String::new(),
                }
            };
            stop(running).await;
            return Err(err(format!(
                "its describe() names the tool \"{claimed}\"{held_by}, but its plugin name is \"{name}\" \
                 (a tool is called by its plugin name: its manifest's, else its file name)"
            ))
            .into());
        }
        let replaced = {
            let mut reg = self.registry.write().await;
            let mut replaced = previous.and_then(|p| reg.by_name.remove(p));
            if let Some(old) = replaced.as_mut().filter(|o| o.info.name == name)
                && matches!(running.running, Running::Agent(_))
                && running.claim.is_none()
            {
                running.claim = old.claim.take();
            }
            reg.by_name.insert(name.clone(), running);
            replaced
        };
        let swapped = replaced.is_some();
        if let Some(old) = replaced {
            match (old.running, handover_tx) {
                (Running::Agent(old), Some(tx)) => {
                    // Events already queued for the old instance run there first; then its
                    // snapshot goes to the new one.
                    // Off the bus first, so new messages go only to the new build.
                    old.detach_bus();
                    tokio::spawn(async move {
                        let snapshot = old.retire().await.await.ok().flatten();
                        let _ = tx.send(snapshot);
                    });
                }
                (running, _) => {
                    stop(Entry {
                        info: old.info,
                        policy: old.policy,
                        key: old.key,
                        running,
                        claim: old.claim,
                    })
                    .await
                }
            }
        }
        tracing::info!(plugin = %name, file = %file.display(), swapped, "plugin started");
        Ok((name, swapped))
    }

    async fn start_plugin(
        &self,
        key: blake3::Hash,
        plugin: LoadedPlugin,
        handover: Option<tokio::sync::oneshot::Receiver<Option<Vec<u8>>>>,
    ) -> Result<Entry, CallError> {
        let name = plugin.name();
        let info = plugin.info.clone();
        let limits = info.limits;
        let policy = self.policy_for(&info).await;
        let running = match plugin.linked {
            Linked::Agent(pre) => {
                let config = self
                    .config
                    .agent_config
                    .get(&info.name)
                    .cloned()
                    .unwrap_or_else(|| "{}".into());
                if let Some(o) = &self.orders {
                    o.set_agent_limits(&name, agent_risk_limits(&policy));
                }
                let spec = AgentSpec {
                    pre,
                    name,
                    limits,
                    state: Some(self.state.clone()),
                    policy: policy.clone(),
                    bus: Some(self.bus.clone()),
                    config,
                    market: self.market.clone(),
                    orders: self.orders.clone(),
                    tools: Some(self.tool_access.clone()),
                    services: AgentServices {
                        timers: Some(self.timers.clone()),
                        audit: Some(self.audit.writer()),
                        supervision: self.config.supervision,
                        inject_trap_after: self
                            .config
                            .inject_trap
                            .as_ref()
                            .filter(|(agent, _)| *agent == info.name)
                            .map(|(_, n)| *n),
                        inject_trap_on: self
                            .config
                            .inject_trap
                            .as_ref()
                            .filter(|(agent, _)| *agent == info.name)
                            .and(self.config.inject_trap_on.clone()),
                    },
                };
                let clock = self.config.clock.clone();
                Running::Agent(AgentHandle::spawn_with_clock(spec, clock, handover).await?)
            }
            Linked::Tool(pre) => {
                let runner = ToolRunner::new(pre, name, limits, policy.clone());
                let spec = runner.describe().await?;
                Running::Tool(runner, Box::new(spec))
            }
        };
        Ok(Entry {
            info,
            policy,
            key,
            running,
            claim: None,
        })
    }

    /// Returns once no pass over the plugins folder ([`Host::sync`]) is under way.
    pub async fn sync_done(&self) {
        drop(self.sync_lock.lock().await);
    }

    /// Every running plugin, by name.
    pub async fn plugins(&self) -> Vec<PluginStatus> {
        let reg = self.registry.read().await;
        let mut out: Vec<PluginStatus> = reg
            .by_name
            .values()
            .map(|e| match &e.running {
                Running::Agent(h) => status_of(e.info.clone(), Some((h.stats(), h))),
                Running::Tool(..) => status_of(e.info.clone(), None),
            })
            .collect();
        out.sort_by(|a, b| a.info.name.cmp(&b.info.name));
        out
    }

    /// Files in the folder that were refused, with the reason.
    pub async fn rejected(&self) -> Vec<RejectedFile> {
        self.registry
            .read()
            .await
            .rejected
            .iter()
            .map(|(f, r)| RejectedFile {
                file: f.clone(),
                reason: r.reason.clone(),
            })
            .collect()
    }
}

pub(super) fn status_of(
    info: PluginInfo,
    agent: Option<(&AgentStats, &AgentHandle)>,
) -> PluginStatus {
    let mut s = PluginStatus {
        info,
        delivered: 0,
        failed: 0,
        restarts: 0,
        refused: 0,
        log_dropped: 0,
        bus_dropped: 0,
        bus_refused: 0,
        bus_expired: 0,
        md_routed: 0,
        md_taken: 0,
        bus_sent_refused: 0,
        mailbox_depth: 0,
        quarantined: false,
        state: "ready".into(),
        fuel_used: 0,
        busy_ms: 0.0,
        sleeps: 0,
        wakes: 0,
        memory_bytes: 0,
        snapshots: 0,
        snapshot_ms: 0.0,
        redelivered: 0,
        paused_dropped: 0,
        last_error: None,
    };
    if let Some((st, h)) = agent {
        s.delivered = st.delivered.load(Ordering::Relaxed);
        s.failed = st.failed.load(Ordering::Relaxed);
        s.restarts = st.restarts.load(Ordering::Relaxed);
        s.refused = st.refused.load(Ordering::Relaxed);
        s.log_dropped = st.log_dropped.load(Ordering::Relaxed);
        s.quarantined = st.quarantined();
        s.state = st.state().as_str().into();
        s.fuel_used = st.fuel_used.load(Ordering::Relaxed);
        s.busy_ms = st.busy_ns.load(Ordering::Relaxed) as f64 / 1e6;
        s.sleeps = st.sleeps.load(Ordering::Relaxed);
        s.wakes = st.wakes.load(Ordering::Relaxed);
        s.memory_bytes = st.memory_bytes.load(Ordering::Relaxed);
        s.snapshots = st.snapshots.load(Ordering::Relaxed);
        s.snapshot_ms = st.snapshot_ns.load(Ordering::Relaxed) as f64 / 1e6;
        s.redelivered = st.redelivered.load(Ordering::Relaxed);
        s.paused_dropped = st.paused_dropped.load(Ordering::Relaxed);
        // What a paused agent holds waits like what its mailbox holds.
        s.mailbox_depth = h.mailbox_depth()
            + usize::try_from(st.held.load(Ordering::Relaxed)).unwrap_or(usize::MAX);
        if let Some(m) = h.mailbox_stats() {
            s.mailbox_depth += m.depth;
            s.bus_dropped = m.dropped;
            s.bus_refused = m.refused;
            s.bus_expired = m.expired;
            s.md_routed = m.md_routed;
            s.md_taken = m.md_taken;
            s.bus_sent_refused = m.sent_refused;
        }
        s.last_error = st.last_error.lock().ok().and_then(|l| l.clone());
    }
    s
}

pub(super) async fn stop(entry: Entry) {
    if let Running::Agent(h) = entry.running {
        h.detach_bus();
        // Waits for queued events to finish; the snapshot is not needed.
        let _ = h.retire().await.await;
    }
    // Given up on the bus only once the agent takes no more events.
    if let Some(claim) = entry.claim {
        claim.release().await;
    }
}

/// Why a file was not started, and whether the same content is tried again at the next pass.
struct Refused {
    error: LoadError,
    /// The reason may go away without the file changing (another host holds its name).
    recheck: bool,
}

impl From<LoadError> for Refused {
    fn from(error: LoadError) -> Refused {
        Refused {
            error,
            recheck: false,
        }
    }
}

/// The `.wasm` files of a folder, sorted.
fn wasm_files(dir: &Path) -> std::io::Result<Vec<PathBuf>> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "wasm") && p.is_file())
        .collect();
    files.sort();
    Ok(files)
}
