//! [`ToolRegistry`]: tools registered at run time, by name, each with its versions
//! (`name@version`, keyed by blake3 digest; the newest answers, older ones stay for rollback).
//! Registered components are kept in `DATA_DIR/tools/` as `DIGEST.wasm` plus `index.json`
//! (registration order), each written to a temporary file and renamed, and are validated
//! again when the registry opens.
//!
//! **Architecture invariant:** a change is stored, then audited (acknowledged), then put in
//! memory; if storing or auditing fails the files are put back, so a failed registration
//! leaves no file and no entry. Changes are serialised by one lock; calls never take it.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::validate::{self, ArgsError, GrantSource, Rejection, Schemas, Step, Validated};
use crate::audit::{AuditKind, AuditRecord, AuditWriter};
use crate::limits::LimitExceeded;
use crate::plugin::{Loader, MAX_FILE_BYTES};
use crate::policy::{Policy, Refusal};
use crate::store::CallError;
use crate::tool::{ToolRunner, ToolSpec};
use colony_caps::Request;

/// The index file within the tools directory.
const INDEX: &str = "index.json";

/// One registered build of a tool.
pub struct RegisteredTool {
    /// Name callers use.
    pub name: String,
    /// Its version.
    pub version: String,
    /// blake3 of the component, hex.
    pub digest: String,
    /// What `describe()` said.
    pub spec: ToolSpec,
    schemas: Schemas,
    runner: ToolRunner,
}

impl RegisteredTool {
    /// `name@version`.
    pub fn id(&self) -> String {
        format!("{}@{}", self.name, self.version)
    }

    /// The grants this build runs under.
    pub fn policy(&self) -> &Arc<Policy> {
        self.runner.policy()
    }

    fn from_validated(v: Validated) -> RegisteredTool {
        RegisteredTool {
            name: v.name,
            version: v.version,
            digest: v.digest.to_hex().to_string(),
            spec: v.spec,
            schemas: v.schemas,
            runner: v.runner,
        }
    }
}

/// One version as `colony tools list` shows it.
#[derive(Debug, Clone, Serialize)]
pub struct VersionListing {
    /// The version.
    pub version: String,
    /// blake3 digest, hex.
    pub digest: String,
    /// Whether this version answers calls (the newest one).
    pub active: bool,
}

/// One registered tool as `colony tools list` shows it: the active version's descriptor
/// (shaped like an MCP tool definition) and every version kept.
#[derive(Debug, Clone, Serialize)]
pub struct ToolListing {
    /// Name.
    pub name: String,
    /// Active version's description.
    pub description: String,
    /// Active version's input schema.
    pub input_schema: Value,
    /// Active version's output schema.
    pub output_schema: Option<Value>,
    /// Every version, oldest first.
    pub versions: Vec<VersionListing>,
}

/// A build removed by `unregister`.
#[derive(Debug, Clone, Serialize)]
pub struct Removed {
    /// `name@version`.
    pub id: String,
    /// Its digest.
    pub digest: String,
}

/// Why a registration or an unregistration failed; nothing changed.
#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    /// A validation step refused the tool.
    #[error(transparent)]
    Rejected(#[from] Rejection),
    /// That exact build, or another build with the same `name@version`, is registered.
    #[error("{0}")]
    Duplicate(String),
    /// No such tool or version.
    #[error("no registered tool {0}")]
    NotFound(String),
    /// The tools directory could not be written or read.
    #[error("tools directory: {0}")]
    Storage(String),
    /// The audit refused the record.
    #[error("not recorded in the audit, nothing changed: {0}")]
    Audit(#[from] crate::audit::AuditError),
}

/// Why a call through the registry failed.
#[derive(Debug, thiserror::Error)]
pub enum ToolCallError {
    /// No such registered tool (or version).
    #[error("tool {0:?}: no such registered tool")]
    NotFound(String),
    /// The arguments are not JSON or do not fit the input schema; the tool never ran.
    #[error("tool {tool:?}: invalid arguments {error}")]
    InvalidArguments {
        /// The tool.
        tool: String,
        /// Where and why.
        error: ArgsError,
    },
    /// The caller holds no `tools.call` grant covering the tool.
    #[error("tool {tool:?}: denied: {reason}")]
    Denied {
        /// The tool.
        tool: String,
        /// Which grant is needed.
        reason: String,
    },
    /// A limit ended the call.
    #[error("tool {tool:?}: limit: {limit}")]
    Limit {
        /// The tool.
        tool: String,
        /// The limit.
        limit: LimitExceeded,
    },
    /// The tool returned an error, trapped, or answered something that is not JSON fitting its
    /// output schema.
    #[error("tool {tool:?}: tool error: {message}")]
    Tool {
        /// The tool.
        tool: String,
        /// What went wrong.
        message: String,
    },
    /// The tool's circuit breaker is open after repeated failures; the call was not made.
    #[error("tool {tool:?}: unavailable: {reason}")]
    Unavailable {
        /// The tool.
        tool: String,
        /// Why, and when to retry.
        reason: String,
    },
}

impl ToolCallError {
    /// The error's kind as the admin API and the WIT `tools` interface name it.
    pub fn kind(&self) -> &'static str {
        match self {
            ToolCallError::NotFound(_) => "not-found",
            ToolCallError::InvalidArguments { .. } => "invalid-arguments",
            ToolCallError::Denied { .. } => "denied",
            ToolCallError::Limit { .. } => "limit",
            ToolCallError::Tool { .. } => "tool-error",
            ToolCallError::Unavailable { .. } => "unavailable",
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct IndexEntry {
    name: String,
    version: String,
    digest: String,
}

type Versions = BTreeMap<String, Vec<Arc<RegisteredTool>>>;

/// The registered tools.
pub struct ToolRegistry {
    dir: PathBuf,
    tools: RwLock<Versions>,
    changes: tokio::sync::Mutex<()>,
    /// Stored tools that did not pass validation when the registry was opened. They stay in
    /// the index (so on disk) until they are unregistered.
    not_loaded: std::sync::Mutex<Vec<NotLoaded>>,
    /// Each stored build's position in the index when the registry was opened (by digest), so
    /// that rewriting the index keeps every name's registration order, not-loaded builds
    /// included.
    ranks: std::collections::HashMap<String, usize>,
}

/// A stored tool that did not pass validation again.
struct NotLoaded {
    entry: IndexEntry,
    reason: String,
}

impl NotLoaded {
    fn id(&self) -> String {
        format!("{}@{}", self.entry.name, self.entry.version)
    }
}

impl ToolRegistry {
    /// Opens (creating) `dir` and validates every stored tool again, in registration order.
    /// Returns the registry and one line per stored tool that no longer passes (it stays on
    /// disk, unloaded).
    pub async fn open(
        dir: PathBuf,
        loader: &Loader,
        grants: &dyn GrantSource,
    ) -> Result<(ToolRegistry, Vec<String>), RegistryError> {
        std::fs::create_dir_all(&dir)
            .map_err(|e| RegistryError::Storage(format!("cannot create {}: {e}", dir.display())))?;
        let index = read_index(&dir)?;
        remove_leftovers(&dir, &index);
        let mut tools = Versions::new();
        let mut failures = Vec::new();
        let mut not_loaded = Vec::new();
        for entry in &index {
            let id = format!("{}@{}", entry.name, entry.version);
            let path = dir.join(format!("{}.wasm", entry.digest));
            let loaded = match crate::files::read_regular(&path, MAX_FILE_BYTES) {
                Err(e) => Err(format!("cannot read {}: {e}", path.display())),
                Ok(bytes) if blake3::hash(&bytes).to_hex().as_str() != entry.digest => {
                    Err(format!("{} does not match its digest", path.display()))
                }
                Ok(bytes) => validate::validate(loader, &bytes, grants)
                    .await
                    .map_err(|e| e.to_string())
                    .and_then(|v| {
                        if v.name == entry.name && v.version == entry.version {
                            Ok(v)
                        } else {
                            Err(format!("now describes itself as {}@{}", v.name, v.version))
                        }
                    }),
            };
            match loaded {
                Ok(v) => tools
                    .entry(v.name.clone())
                    .or_default()
                    .push(Arc::new(RegisteredTool::from_validated(v))),
                Err(reason) => {
                    failures.push(format!("{id}: {reason}"));
                    not_loaded.push(NotLoaded {
                        entry: entry.clone(),
                        reason,
                    });
                }
            }
        }
        let ranks = index
            .iter()
            .enumerate()
            .map(|(i, e)| (e.digest.clone(), i))
            .collect();
        Ok((
            ToolRegistry {
                dir,
                tools: RwLock::new(tools),
                changes: tokio::sync::Mutex::new(()),
                not_loaded: std::sync::Mutex::new(not_loaded),
                ranks,
            },
            failures,
        ))
    }

    /// The stored tools that did not pass validation again when the registry was opened, as
    /// `NAME@VERSION: reason` (each stays on disk, unloaded, until it passes at a later start
    /// or is unregistered).
    pub fn not_loaded(&self) -> Vec<String> {
        self.lock_not_loaded()
            .iter()
            .map(|n| format!("{}: {}", n.id(), n.reason))
            .collect()
    }

    fn lock_not_loaded(&self) -> std::sync::MutexGuard<'_, Vec<NotLoaded>> {
        // Poisoned only if a panic happened while the list was held; its contents stay valid.
        self.not_loaded
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The directory tools are stored in.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Validates `bytes`, stores the tool, audits it as `tool-register` by `actor`, and makes
    /// it the active version of its name. A rejection is audited as `tool-rejected`. Names in
    /// `reserved` (the plugins folder's) cannot be registered.
    pub async fn register(
        &self,
        loader: &Loader,
        grants: &dyn GrantSource,
        bytes: &[u8],
        reserved: &[String],
        audit: Option<&AuditWriter>,
        actor: &str,
    ) -> Result<Arc<RegisteredTool>, RegistryError> {
        let _one_at_a_time = self.changes.lock().await;
        let validated = if bytes.len() as u64 > MAX_FILE_BYTES {
            Err(Rejection {
                step: Step::Component,
                reason: format!(
                    "{} bytes, more than the {MAX_FILE_BYTES}-byte limit",
                    bytes.len()
                ),
            })
        } else {
            validate::validate(loader, bytes, grants).await
        };
        let v = match validated {
            Ok(v) => v,
            Err(e) => {
                if let Some(a) = audit {
                    let rec = AuditRecord::new(AuditKind::Other("tool-rejected".into()))
                        .with_actor(actor)
                        .with_detail(e.to_string());
                    // Acknowledged, so the refusal is on record before the caller hears it.
                    if let Err(ae) = a.append(rec).await {
                        tracing::error!(error = %ae, "tool rejection not audited");
                    }
                }
                return Err(e.into());
            }
        };
        // A name is the first registration's: a build with no manifest, named only by what
        // its describe() says, cannot become a new version of it.
        if !v.named_by_manifest && self.read_tools().contains_key(&v.name) {
            return Err(RegistryError::Duplicate(format!(
                "the tool {:?} is registered; this build has no manifest and only its describe() \
                 claims that name (a new version must embed a manifest naming it)",
                v.name
            )));
        }
        let tool = RegisteredTool::from_validated(v);
        if reserved.contains(&tool.name) {
            return Err(RegistryError::Duplicate(format!(
                "the name {:?} is taken by a plugin in the plugins folder",
                tool.name
            )));
        }
        self.check_new(&tool)?;

        // The same build stored but not loaded is replaced by this registration.
        let mut index = self.index();
        index.retain(|e| e.digest != tool.digest);
        index.push(IndexEntry {
            name: tool.name.clone(),
            version: tool.version.clone(),
            digest: tool.digest.clone(),
        });
        let file = self.dir.join(format!("{}.wasm", tool.digest));
        // Undoing a failed registration keeps the file if the index still names it.
        let stored_before = self
            .lock_not_loaded()
            .iter()
            .any(|n| n.entry.digest == tool.digest);
        let undo_file = || {
            if !stored_before {
                let _ = std::fs::remove_file(&file);
            }
        };
        write_atomic(&file, bytes)?;
        if let Err(e) = self.write_index(&index) {
            undo_file();
            return Err(e);
        }
        if let Some(a) = audit {
            let rec = AuditRecord {
                plugin: tool.name.clone(),
                digest: tool.digest.clone(),
                ..AuditRecord::new(AuditKind::Other("tool-register".into()))
            }
            .with_actor(actor)
            .with_detail(tool.id());
            if let Err(e) = a.append(rec).await {
                // The index as it was: the loaded builds and the stored ones not loaded.
                let _ = self.write_index(&self.index());
                undo_file();
                return Err(e.into());
            }
        }
        let tool = Arc::new(tool);
        self.lock_not_loaded()
            .retain(|n| n.entry.digest != tool.digest);
        self.write_tools()
            .entry(tool.name.clone())
            .or_default()
            .push(tool.clone());
        tracing::info!(tool = %tool.id(), digest = %tool.digest, "tool registered");
        Ok(tool)
    }

    /// Removes every version of `name`, or one (`name@version`); the previous version answers
    /// again. Audited as `tool-unregister` by `actor`.
    pub async fn unregister(
        &self,
        spec: &str,
        audit: Option<&AuditWriter>,
        actor: &str,
    ) -> Result<Vec<Removed>, RegistryError> {
        let _one_at_a_time = self.changes.lock().await;
        let (name, version) = split_id(spec);
        let mut removed: Vec<Removed> = self
            .read_tools()
            .get(name)
            .into_iter()
            .flatten()
            .filter(|t| version.is_none_or(|v| v == t.version))
            .map(|t| Removed {
                id: t.id(),
                digest: t.digest.clone(),
            })
            .collect();
        // Stored builds that are not loaded can be unregistered too.
        removed.extend(
            self.lock_not_loaded()
                .iter()
                .filter(|n| n.entry.name == name)
                .filter(|n| version.is_none_or(|v| v == n.entry.version))
                .map(|n| Removed {
                    id: n.id(),
                    digest: n.entry.digest.clone(),
                }),
        );
        if removed.is_empty() {
            return Err(RegistryError::NotFound(spec.to_string()));
        }
        let before = self.index();
        let after: Vec<IndexEntry> = before
            .iter()
            .filter(|e| !removed.iter().any(|r| r.digest == e.digest))
            .cloned()
            .collect();
        self.write_index(&after)?;
        if let Some(a) = audit {
            let digests: Vec<&str> = removed.iter().map(|r| r.digest.as_str()).collect();
            let ids: Vec<&str> = removed.iter().map(|r| r.id.as_str()).collect();
            let rec = AuditRecord {
                plugin: name.to_string(),
                digest: digests.join(","),
                ..AuditRecord::new(AuditKind::Other("tool-unregister".into()))
            }
            .with_actor(actor)
            .with_detail(ids.join(", "));
            if let Err(e) = a.append(rec).await {
                let _ = self.write_index(&before);
                return Err(e.into());
            }
        }
        {
            let mut tools = self.write_tools();
            if let Some(list) = tools.get_mut(name) {
                list.retain(|t| !removed.iter().any(|r| r.digest == t.digest));
                if list.is_empty() {
                    tools.remove(name);
                }
            }
        }
        self.lock_not_loaded()
            .retain(|n| !removed.iter().any(|r| r.digest == n.entry.digest));
        for r in &removed {
            if let Err(e) = std::fs::remove_file(self.dir.join(format!("{}.wasm", r.digest))) {
                tracing::warn!(tool = %r.id, error = %e, "cannot remove unregistered tool file");
            }
        }
        tracing::info!(tool = %spec, "tool unregistered");
        Ok(removed)
    }

    /// Every registered tool, by name.
    pub fn list(&self) -> Vec<ToolListing> {
        self.read_tools()
            .iter()
            .filter_map(|(name, versions)| {
                let active = versions.last()?;
                Some(ToolListing {
                    name: name.clone(),
                    description: active.spec.description.clone(),
                    input_schema: active.spec.input_schema.clone(),
                    output_schema: active.spec.output_schema.clone(),
                    versions: versions
                        .iter()
                        .map(|t| VersionListing {
                            version: t.version.clone(),
                            digest: t.digest.clone(),
                            active: Arc::ptr_eq(t, active),
                        })
                        .collect(),
                })
            })
            .collect()
    }

    /// Every registered build of `name`, oldest first.
    pub fn versions(&self, name: &str) -> Vec<Arc<RegisteredTool>> {
        self.read_tools().get(name).cloned().unwrap_or_default()
    }

    /// The active build of `name`, or the build `name@version`.
    pub fn get(&self, spec: &str) -> Option<Arc<RegisteredTool>> {
        let (name, version) = split_id(spec);
        let tools = self.read_tools();
        let versions = tools.get(name)?;
        match version {
            None => versions.last().cloned(),
            Some(v) => versions.iter().find(|t| t.version == v).cloned(),
        }
    }

    /// Calls `spec` (`name` or `name@version`) with `args_json`: the caller's `tools.call`
    /// grant is checked (`caller` is `None` for the operator), the arguments are checked
    /// against the input schema before the tool runs, then a fresh instance runs the call and
    /// the result is checked against the output schema.
    pub async fn invoke(
        &self,
        spec: &str,
        args_json: &str,
        caller: Option<&Policy>,
    ) -> Result<String, ToolCallError> {
        let (name, _) = split_id(spec);
        if let Some(p) = caller
            && let Err(r) = p.check(&Request::CallTool { name })
        {
            return Err(ToolCallError::Denied {
                tool: name.to_string(),
                reason: match r {
                    Refusal::Denied(cap) => format!("needs {cap}"),
                    Refusal::Invalid(why) => why,
                },
            });
        }
        let tool = self
            .get(spec)
            .ok_or_else(|| ToolCallError::NotFound(spec.to_string()))?;
        // The runner checks the arguments against the input schema before the sandbox, as
        // it does for a plugins-folder tool.
        let out = tool.runner.invoke(args_json).await.map_err(|e| match e {
            CallError::InvalidArguments { error, .. } => ToolCallError::InvalidArguments {
                tool: tool.id(),
                error,
            },
            CallError::Limit { limit, .. } => ToolCallError::Limit {
                tool: tool.id(),
                limit,
            },
            CallError::Trap { message, .. } => ToolCallError::Tool {
                tool: tool.id(),
                message: format!("trapped: {message}"),
            },
            CallError::Guest { message, .. } => ToolCallError::Tool {
                tool: tool.id(),
                message,
            },
            CallError::Unavailable { reason, .. } => ToolCallError::Tool {
                tool: tool.id(),
                message: reason,
            },
        })?;
        validate::check_output(&out, tool.schemas.output.as_ref()).map_err(|message| {
            ToolCallError::Tool {
                tool: tool.id(),
                message,
            }
        })?;
        Ok(out)
    }

    fn check_new(&self, tool: &RegisteredTool) -> Result<(), RegistryError> {
        let tools = self.read_tools();
        if let Some(t) = tools.values().flatten().find(|t| t.digest == tool.digest) {
            return Err(RegistryError::Duplicate(format!(
                "this build is already registered as {} (digest {})",
                t.id(),
                t.digest
            )));
        }
        if let Some(t) = tools
            .get(&tool.name)
            .into_iter()
            .flatten()
            .find(|t| t.version == tool.version)
        {
            return Err(RegistryError::Duplicate(format!(
                "{} is already registered with another build (digest {}); give the new build \
                 another version",
                t.id(),
                t.digest
            )));
        }
        if let Some(n) = self.lock_not_loaded().iter().find(|n| {
            n.entry.name == tool.name
                && n.entry.version == tool.version
                && n.entry.digest != tool.digest
        }) {
            return Err(RegistryError::Duplicate(format!(
                "{} is stored with another build (digest {}; not loaded: {}); unregister it or \
                 give the new build another version",
                n.id(),
                n.entry.digest,
                n.reason
            )));
        }
        Ok(())
    }

    /// What the index must hold now: every loaded build and every stored build that is not
    /// loaded (dropping one from the index would delete its file at the next open), each
    /// name's builds in registration order (the last is the active one); names are
    /// independent.
    fn index(&self) -> Vec<IndexEntry> {
        let tools = self.read_tools();
        // Builds registered since the open come after every stored one, in their order.
        let fresh = self.ranks.len();
        let mut all: Vec<(usize, IndexEntry)> = tools
            .values()
            .flatten()
            .enumerate()
            .map(|(i, t)| {
                let rank = self.ranks.get(&t.digest).copied().unwrap_or(fresh + i);
                let entry = IndexEntry {
                    name: t.name.clone(),
                    version: t.version.clone(),
                    digest: t.digest.clone(),
                };
                (rank, entry)
            })
            .collect();
        all.extend(self.lock_not_loaded().iter().map(|n| {
            let rank = self.ranks.get(&n.entry.digest).copied().unwrap_or(fresh);
            (rank, n.entry.clone())
        }));
        all.sort_by_key(|(rank, _)| *rank);
        all.into_iter().map(|(_, e)| e).collect()
    }

    fn write_index(&self, index: &[IndexEntry]) -> Result<(), RegistryError> {
        let text = serde_json::to_vec_pretty(index)
            .map_err(|e| RegistryError::Storage(format!("cannot encode the index: {e}")))?;
        write_atomic(&self.dir.join(INDEX), &text)
    }

    fn read_tools(&self) -> std::sync::RwLockReadGuard<'_, Versions> {
        // The lock guards plain data that no panic leaves half-changed; take it even if a
        // holder panicked.
        self.tools.read().unwrap_or_else(|e| e.into_inner())
    }

    fn write_tools(&self) -> std::sync::RwLockWriteGuard<'_, Versions> {
        self.tools.write().unwrap_or_else(|e| e.into_inner())
    }
}

/// `name@version` → (`name`, `Some(version)`); `name` → (`name`, `None`).
pub(crate) fn split_id(spec: &str) -> (&str, Option<&str>) {
    match spec.split_once('@') {
        Some((n, v)) => (n, Some(v)),
        None => (spec, None),
    }
}

/// The digest of the active (last registered) build of `name` stored in `dir`
/// (`DATA_DIR/tools`), read from the index alone, without validating anything: what `colony
/// grants grant|approve` pin a registered tool's grants to when no host is running.
pub fn stored_digest(dir: &Path, name: &str) -> Result<Option<String>, RegistryError> {
    Ok(read_index(dir)?
        .into_iter()
        .rev()
        .find(|e| e.name == name)
        .map(|e| e.digest))
}

fn read_index(dir: &Path) -> Result<Vec<IndexEntry>, RegistryError> {
    let path = dir.join(INDEX);
    match crate::files::read_regular(&path, crate::files::MAX_TEXT_BYTES * 16) {
        Ok(bytes) => serde_json::from_slice(&bytes)
            .map_err(|e| RegistryError::Storage(format!("{}: {e}", path.display()))),
        Err(e) if e.is_not_found() => Ok(Vec::new()),
        Err(e) => Err(RegistryError::Storage(format!(
            "cannot read {}: {e}",
            path.display()
        ))),
    }
}

/// Removes temporary files and components the index does not name (a crash between writing
/// a component and its index entry, or between unregistering and deleting the file).
fn remove_leftovers(dir: &Path, index: &[IndexEntry]) {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return;
    };
    for path in rd.flatten().map(|e| e.path()) {
        let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
        let stray = name.ends_with(".tmp")
            || name
                .strip_suffix(".wasm")
                .is_some_and(|d| !index.iter().any(|e| e.digest == d));
        if stray {
            tracing::warn!(file = %path.display(), "removing a tool file no registration names");
            let _ = std::fs::remove_file(&path);
        }
    }
}

fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), RegistryError> {
    use std::io::Write;
    let storage = |e: std::io::Error| RegistryError::Storage(format!("{}: {e}", path.display()));
    let tmp = path.with_extension("tmp");
    let mut f = std::fs::File::create(&tmp).map_err(storage)?;
    f.write_all(bytes).map_err(storage)?;
    f.sync_all().map_err(storage)?;
    std::fs::rename(&tmp, path).map_err(storage)?;
    // The rename itself is durable once the directory is synced.
    if let Some(parent) = path.parent()
        && let Ok(d) = std::fs::File::open(parent)
    {
        let _ = d.sync_all();
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_split_at_the_first_at() {
        assert_eq!(split_id("adder"), ("adder", None));
        assert_eq!(split_id("adder@1.2.0"), ("adder", Some("1.2.0")));
    }

    #[test]
    fn leftovers_are_removed_and_indexed_files_kept() {
        let dir = tempfile::tempdir().unwrap();
        let keep = "ab".repeat(32);
        for f in [format!("{keep}.wasm"), "cd.wasm".into(), "index.tmp".into()] {
            std::fs::write(dir.path().join(f), b"x").unwrap();
        }
        let index = vec![IndexEntry {
            name: "t".into(),
            version: "1.0.0".into(),
            digest: keep.clone(),
        }];
        remove_leftovers(dir.path(), &index);
        let mut left: Vec<String> = std::fs::read_dir(dir.path())
            .unwrap()
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect();
        left.sort();
        assert_eq!(left, vec![format!("{keep}.wasm")]);
    }
}
