//! Loading one plugin file: check that it is a component, read its manifest (embedded section
//! plus optional sidecar), compile it (or take it from the cache), check that it targets the
//! `agent` or `tool` world and imports nothing those worlds do not offer, and link it into an
//! `InstancePre`. Everything that can be wrong with a file becomes a [`LoadError`] naming the
//! file; nothing here panics on file contents.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::Serialize;
use wasmtime::component::{Component, Linker};
use wasmtime::wasmparser::{Parser, Payload};

use crate::bindings::{agent, tool};
use crate::engine::{CompileSource, Runtime};
use crate::limits::Limits;
use crate::store::StoreState;
use colony_caps::manifest::{self, Kind, Manifest, RequestedLimits};

/// Largest plugin file the host reads.
pub const MAX_FILE_BYTES: u64 = 64 * 1024 * 1024;

/// The interface an agent exports.
pub(crate) const AGENT_EXPORT: &str = "colony:plugin/handler";
/// The interface a tool exports.
pub(crate) const TOOL_EXPORT: &str = "colony:plugin/tool-handler";
/// Colony interfaces the `agent` world offers.
pub(crate) const AGENT_IMPORTS: &[&str] = &[
    "colony:plugin/types",
    "colony:plugin/log",
    "colony:plugin/state",
    "colony:plugin/messaging",
    "colony:plugin/market-data",
    "colony:plugin/orders",
    "colony:plugin/tools",
    "colony:plugin/timers",
];
/// Colony interfaces the `tool` world offers.
pub(crate) const TOOL_IMPORTS: &[&str] = &["colony:plugin/types", "colony:plugin/log"];
/// The `wasi:http` 0.2 interfaces the `tool` world offers (never the agent world). Every
/// request is checked against the tool's `http.outbound` grants when it is sent; a registered
/// tool must also hold such a grant to import them (`tools::validate::check_imports`).
pub const HTTP_IMPORTS: &[&str] = &["wasi:http/types", "wasi:http/outgoing-handler"];
/// WASI 0.2 interfaces linked into every world (deny-by-default context: no preopens, no
/// environment, no network).
pub(crate) const WASI_IMPORTS: &[&str] = &[
    "wasi:cli/environment",
    "wasi:cli/exit",
    "wasi:cli/stdin",
    "wasi:cli/stdout",
    "wasi:cli/stderr",
    "wasi:cli/terminal-input",
    "wasi:cli/terminal-output",
    "wasi:cli/terminal-stdin",
    "wasi:cli/terminal-stdout",
    "wasi:cli/terminal-stderr",
    "wasi:clocks/monotonic-clock",
    "wasi:clocks/wall-clock",
    "wasi:filesystem/types",
    "wasi:filesystem/preopens",
    "wasi:io/error",
    "wasi:io/poll",
    "wasi:io/streams",
    "wasi:random/random",
    "wasi:random/insecure",
    "wasi:random/insecure-seed",
    "wasi:sockets/network",
    "wasi:sockets/instance-network",
    "wasi:sockets/udp",
    "wasi:sockets/udp-create-socket",
    "wasi:sockets/tcp",
    "wasi:sockets/tcp-create-socket",
    "wasi:sockets/ip-name-lookup",
];

/// A file the host refused, and why.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{}: {reason}", file.display())]
pub struct LoadError {
    /// The file.
    pub file: PathBuf,
    /// One-line reason.
    pub reason: String,
}

/// Where the manifest came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum ManifestSource {
    /// The SDK's embedded section.
    Embedded,
    /// The embedded section, overridden by a sidecar.
    EmbeddedAndSidecar,
    /// Only a sidecar.
    Sidecar,
    /// None: name from the file, nothing requested.
    None,
}

/// What `colony plugins inspect` prints about a plugin.
#[derive(Debug, Clone, Serialize)]
pub struct PluginInfo {
    /// The file it was loaded from.
    pub file: PathBuf,
    /// Manifest name.
    pub name: String,
    /// Manifest version.
    pub version: String,
    /// Agent or tool.
    pub kind: Kind,
    /// Manifest description.
    pub description: String,
    /// blake3 digest of the file, hex: the plugin's identity.
    pub digest: String,
    /// Size of the file in bytes.
    pub size_bytes: u64,
    /// The world it targets, e.g. `colony:plugin/agent@0.1.0`.
    pub world: String,
    /// Every import, by name.
    pub imports: Vec<String>,
    /// Every export, by name.
    pub exports: Vec<String>,
    /// Capabilities the plugin requests.
    pub capabilities: Vec<String>,
    /// Limits the plugin requests.
    pub requested_limits: RequestedLimits,
    /// Limits in force after resolution against the operator's defaults.
    pub limits: Limits,
    /// Requests that asked for more than the operator allows (and were lowered).
    pub clamped: Vec<String>,
    /// Where the manifest came from.
    pub manifest_source: ManifestSource,
    /// Milliseconds to compile (or to load from the cache).
    pub compile_ms: f64,
    /// Whether the compiled code came from the cache.
    pub from_cache: bool,
}

/// What a component is before anything is linked: the world it exports, what it imports,
/// and its embedded manifest. For callers that check imports against more than a world
/// offers (registered tools, whose imports are also checked against their grants).
#[derive(Debug, Clone)]
pub struct Shape {
    /// The world its exports make it, if any.
    pub world: Option<Kind>,
    /// Every import, by name.
    pub imports: Vec<String>,
    /// Every export, by name.
    pub exports: Vec<String>,
    /// The embedded manifest, if the component carries one.
    pub manifest: Option<Manifest>,
}

/// A linked plugin, ready to instantiate.
pub enum Linked {
    /// An agent.
    Agent(agent::AgentPre<StoreState>),
    /// A tool.
    Tool(tool::ToolPre<StoreState>),
}

/// A plugin that passed every check.
pub struct LoadedPlugin {
    /// Everything known about it.
    pub info: PluginInfo,
    /// Its blake3 digest.
    pub digest: blake3::Hash,
    /// The compiled component.
    pub component: Component,
    /// The linked, ready-to-instantiate form.
    pub linked: Linked,
}

impl LoadedPlugin {
    /// Name shared as an `Arc` by every store of this plugin.
    pub fn name(&self) -> Arc<str> {
        Arc::from(self.info.name.as_str())
    }
}

/// Compiles and links plugins: one per host, shared by the folder watcher and the CLI.
pub struct Loader {
    runtime: Arc<Runtime>,
    agent_linker: Linker<StoreState>,
    tool_linker: Linker<StoreState>,
    agent_limits: Limits,
    tool_limits: Limits,
}

impl Loader {
    /// A loader whose plugins get at most these limits.
    pub fn new(
        runtime: Arc<Runtime>,
        agent_limits: Limits,
        tool_limits: Limits,
    ) -> wasmtime::Result<Loader> {
        let engine = runtime.engine();
        let mut agent_linker = Linker::new(engine);
        wasmtime_wasi::p2::add_to_linker_async(&mut agent_linker)?;
        crate::store::add_agent_interfaces(&mut agent_linker)?;
        // The tool world maps its WASI packages onto wasmtime-wasi(-http)'s bindings, so its
        // interfaces are linked one by one: WASI, `types` and `log` (the agent world's
        // implementation), and `wasi:http` (only here: agents never get it). Every request a
        // tool sends goes through `StoreState`'s `WasiHttpHooks::send_request` (store::http).
        let mut tool_linker = Linker::new(engine);
        wasmtime_wasi::p2::add_to_linker_async(&mut tool_linker)?;
        crate::store::add_tool_interfaces(&mut tool_linker)?;
        wasmtime_wasi_http::p2::add_only_http_to_linker_async(&mut tool_linker)?;
        Ok(Loader {
            runtime,
            agent_linker,
            tool_linker,
            agent_limits,
            tool_limits,
        })
    }

    /// The runtime plugins are compiled by.
    pub fn runtime(&self) -> &Arc<Runtime> {
        &self.runtime
    }

    /// Loads `path`, with `NAME.toml` beside it as a sidecar if present.
    pub fn load_file(&self, path: &Path) -> Result<LoadedPlugin, LoadError> {
        let err = |reason: String| LoadError {
            file: path.to_path_buf(),
            reason,
        };
        let bytes = crate::files::read_regular(path, MAX_FILE_BYTES)
            .map_err(|e| err(format!("cannot read: {e}")))?;
        let sidecar_path = path.with_extension("toml");
        let sidecar =
            match crate::files::read_regular_text(&sidecar_path, crate::files::MAX_TEXT_BYTES) {
                Ok(text) => Some(text),
                Err(e) if e.is_not_found() => None,
                Err(e) => {
                    return Err(err(format!(
                        "cannot read sidecar {}: {e}",
                        sidecar_path.display()
                    )));
                }
            };
        self.load_bytes(&bytes, path, sidecar.as_deref())
    }

    /// Checks the header and the embedded manifest and compiles `bytes` (or takes them from
    /// the cache), without checking imports or linking.
    pub fn shape(&self, bytes: &[u8]) -> Result<Shape, String> {
        let embedded = read_header_and_manifest(bytes)?;
        let manifest = match embedded {
            Some(m) => Some(Manifest::from_embedded(&m).map_err(|e| e.to_string())?),
            None => None,
        };
        let compiled = self
            .runtime
            .compile(bytes, &blake3::hash(bytes))
            .map_err(|e| format!("invalid component: {}", first_line(&e)))?;
        let engine = self.runtime.engine();
        let ty = compiled.component.component_type();
        let imports: Vec<String> = ty.imports(engine).map(|(n, _)| n.to_string()).collect();
        let exports: Vec<String> = ty.exports(engine).map(|(n, _)| n.to_string()).collect();
        Ok(Shape {
            world: world_of(&exports),
            imports,
            exports,
            manifest,
        })
    }

    /// Loads a plugin from bytes; `file` is only used for names and messages.
    pub fn load_bytes(
        &self,
        bytes: &[u8],
        file: &Path,
        sidecar: Option<&str>,
    ) -> Result<LoadedPlugin, LoadError> {
        let err = |reason: String| LoadError {
            file: file.to_path_buf(),
            reason,
        };
        let embedded = read_header_and_manifest(bytes).map_err(err)?;
        // What an instance needs at once, checked before compiling: past the largest limits
        // (the pool's slot sizes) the compiler would refuse it in the allocator's words. The
        // plugin's own limits are checked once its kind and manifest are known.
        let sizes = crate::limits::InitialSizes::of(bytes);
        let widest = Limits {
            memory_bytes: self
                .agent_limits
                .memory_bytes
                .max(self.tool_limits.memory_bytes),
            table_elements: self
                .agent_limits
                .table_elements
                .max(self.tool_limits.table_elements),
            ..self.agent_limits
        };
        sizes.check(&widest).map_err(|e| {
            err(format!(
                "cannot start within its limits: initial {e} (the largest limit of agents and tools)"
            ))
        })?;
        let digest = blake3::hash(bytes);
        let compiled = self
            .runtime
            .compile(bytes, &digest)
            .map_err(|e| err(format!("invalid component: {}", first_line(&e))))?;
        let component = compiled.component;
        let engine = self.runtime.engine();
        let ty = component.component_type();
        let imports: Vec<String> = ty.imports(engine).map(|(n, _)| n.to_string()).collect();
        let exports: Vec<String> = ty.exports(engine).map(|(n, _)| n.to_string()).collect();

        let world = world_of(&exports).ok_or_else(|| {
            err(format!(
                "exports neither {AGENT_EXPORT} (an agent) nor {TOOL_EXPORT} (a tool); exports: [{}]",
                exports.join(", ")
            ))
        })?;
        check_imports(world, &imports).map_err(err)?;

        let stem = file
            .file_stem()
            .and_then(|s| s.to_str())
            .unwrap_or("plugin");
        let (manifest, source) =
            resolve_manifest(embedded.as_deref(), sidecar, stem, world).map_err(err)?;
        if manifest.kind != world {
            return Err(err(format!(
                "manifest says kind \"{}\" but the component exports the {} world",
                manifest.kind, world
            )));
        }
        let defaults = match world {
            Kind::Agent => self.agent_limits,
            Kind::Tool => self.tool_limits,
        };
        let (limits, clamped) = defaults.resolve(&manifest.limits);
        if !clamped.is_empty() {
            tracing::warn!(plugin = %manifest.name, clamped = ?clamped, "plugin asked for more than the operator allows; lowered");
        }
        sizes
            .check(&limits)
            .map_err(|e| err(format!("cannot start within its limits: initial {e}")))?;

        let linked = match world {
            Kind::Agent => {
                let pre = self
                    .agent_linker
                    .instantiate_pre(&component)
                    .map_err(|e| err(format!("cannot link: {}", first_line(&e))))?;
                Linked::Agent(agent::AgentPre::new(pre).map_err(|e| {
                    err(format!(
                        "does not match the agent world: {}",
                        first_line(&e)
                    ))
                })?)
            }
            Kind::Tool => {
                let pre = self
                    .tool_linker
                    .instantiate_pre(&component)
                    .map_err(|e| err(format!("cannot link: {}", first_line(&e))))?;
                Linked::Tool(tool::ToolPre::new(pre).map_err(|e| {
                    err(format!("does not match the tool world: {}", first_line(&e)))
                })?)
            }
        };

        let world_name = match world {
            Kind::Agent => "colony:plugin/agent@0.1.0",
            Kind::Tool => "colony:plugin/tool@0.1.0",
        };
        let info = PluginInfo {
            file: file.to_path_buf(),
            name: manifest.name,
            version: manifest.version,
            kind: world,
            description: manifest.description,
            digest: digest.to_hex().to_string(),
            size_bytes: bytes.len() as u64,
            world: world_name.into(),
            imports,
            exports,
            capabilities: manifest.capabilities,
            requested_limits: manifest.limits,
            limits,
            clamped,
            manifest_source: source,
            compile_ms: compiled.elapsed.as_secs_f64() * 1000.0,
            from_cache: compiled.source == CompileSource::Cache,
        };
        Ok(LoadedPlugin {
            info,
            digest,
            component,
            linked,
        })
    }
}

/// The name `bytes` (with `sidecar`) would load under, without compiling: the sidecar's or
/// the embedded manifest's name, else the file stem. `None` when the file or its manifest is
/// unreadable (loading it is refused anyway, so it claims no name).
pub fn declared_name(bytes: &[u8], sidecar: Option<&str>, stem: &str) -> Option<String> {
    let embedded = read_header_and_manifest(bytes).ok()?;
    // The world only matters for a manifest-less file's kind, not its name.
    resolve_manifest(embedded.as_deref(), sidecar, stem, Kind::Agent)
        .ok()
        .map(|(m, _)| m.name)
}

fn first_line(e: &wasmtime::Error) -> String {
    // `{:#}` includes the cause chain on one line; keep it to one line for the operator.
    format!("{e:#}")
        .lines()
        .next()
        .unwrap_or("unknown error")
        .to_string()
}

/// Checks the preamble and returns the embedded manifest section, if any.
fn read_header_and_manifest(bytes: &[u8]) -> Result<Option<Vec<u8>>, String> {
    if bytes.is_empty() {
        return Err("empty file".into());
    }
    if Parser::is_core_wasm(bytes) {
        return Err(
            "is a core wasm module, not a component (build for wasm32-wasip2, or wrap it with `wasm-tools component new`)"
                .into(),
        );
    }
    if !Parser::is_component(bytes) {
        return Err(
            "not a WebAssembly component (the file does not start with the component header)"
                .into(),
        );
    }
    let mut found = None;
    for payload in Parser::new(0).parse_all(bytes) {
        match payload {
            Ok(Payload::CustomSection(section)) if section.name() == manifest::SECTION => {
                if found.is_some() {
                    return Err(format!("has more than one `{}` section", manifest::SECTION));
                }
                found = Some(section.data().to_vec());
            }
            Ok(_) => {}
            Err(e) => return Err(format!("malformed component: {e}")),
        }
    }
    Ok(found)
}

fn world_of(exports: &[String]) -> Option<Kind> {
    let has = |iface: &str| exports.iter().any(|e| interface_of(e) == iface);
    if has(AGENT_EXPORT) {
        Some(Kind::Agent)
    } else if has(TOOL_EXPORT) {
        Some(Kind::Tool)
    } else {
        None
    }
}

/// `ns:pkg/iface@1.2.3` → `ns:pkg/iface`.
fn interface_of(name: &str) -> &str {
    name.split_once('@').map_or(name, |(i, _)| i)
}

/// Every import must be an interface the world offers, at a version this host implements.
fn check_imports(world: Kind, imports: &[String]) -> Result<(), String> {
    let colony = match world {
        Kind::Agent => AGENT_IMPORTS,
        Kind::Tool => TOOL_IMPORTS,
    };
    for import in imports {
        let (iface, version) = import.split_once('@').unwrap_or((import.as_str(), ""));
        let offered = if colony.contains(&iface) {
            version.starts_with("0.1.")
        } else if WASI_IMPORTS.contains(&iface) {
            version.starts_with("0.2.")
        } else if HTTP_IMPORTS.contains(&iface) {
            world == Kind::Tool && version.starts_with("0.2.")
        } else {
            false
        };
        if !offered {
            let rest = match world {
                Kind::Tool => ", WASI 0.2 and wasi:http/outgoing-handler 0.2",
                Kind::Agent => " and WASI 0.2; wasi:http is offered to tools only",
            };
            return Err(format!(
                "imports {import}, which the {world} world does not offer (it offers {}{rest})",
                colony.join(", ")
            ));
        }
    }
    Ok(())
}

fn resolve_manifest(
    embedded: Option<&[u8]>,
    sidecar: Option<&str>,
    stem: &str,
    world: Kind,
) -> Result<(Manifest, ManifestSource), String> {
    let base = match embedded {
        Some(bytes) => Some(Manifest::from_embedded(bytes).map_err(|e| e.to_string())?),
        None => None,
    };
    let Some(text) = sidecar else {
        return Ok(match base {
            Some(m) => (m, ManifestSource::Embedded),
            None => {
                let m = Manifest::fallback(stem, world);
                m.validate().map_err(|e| {
                    format!("no manifest, and the file name gives no valid name: {e}")
                })?;
                (m, ManifestSource::None)
            }
        });
    };
    let side = Manifest::parse_sidecar(text).map_err(|e| e.to_string())?;
    let (start, source) = match base {
        Some(m) => (m, ManifestSource::EmbeddedAndSidecar),
        None => (Manifest::fallback(stem, world), ManifestSource::Sidecar),
    };
    let m = start.with_sidecar(side).map_err(|e| e.to_string())?;
    Ok((m, source))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_checks_name_the_problem() {
        assert_eq!(read_header_and_manifest(b"").unwrap_err(), "empty file");
        assert!(
            read_header_and_manifest(b"\0asm\x01\0\0\0")
                .unwrap_err()
                .contains("core wasm module")
        );
        assert!(
            read_header_and_manifest(b"hello world")
                .unwrap_err()
                .contains("not a WebAssembly component")
        );
        // A component header followed by garbage.
        let mut bytes = b"\0asm\x0d\0\x01\0".to_vec();
        bytes.extend_from_slice(&[0xff; 16]);
        assert!(
            read_header_and_manifest(&bytes)
                .unwrap_err()
                .contains("malformed component")
        );
    }

    #[test]
    fn import_checks_table() {
        let cases: &[(Kind, &str, bool)] = &[
            (Kind::Agent, "colony:plugin/log@0.1.0", true),
            (Kind::Agent, "colony:plugin/state@0.1.0", true),
            (Kind::Tool, "colony:plugin/state@0.1.0", false),
            (Kind::Agent, "colony:plugin/log@0.2.0", false),
            (Kind::Agent, "wasi:cli/stdout@0.2.6", true),
            (Kind::Agent, "wasi:cli/stdout@0.3.0", false),
            (Kind::Agent, "colony:evil/backdoor@0.1.0", false),
            (Kind::Tool, "wasi:http/outgoing-handler@0.2.0", true),
            (Kind::Tool, "wasi:http/types@0.2.12", true),
            (Kind::Tool, "wasi:http/outgoing-handler@0.3.0", false),
            (Kind::Tool, "wasi:http/incoming-handler@0.2.12", false),
            (Kind::Agent, "wasi:http/outgoing-handler@0.2.12", false),
            (Kind::Agent, "wasi:http/types@0.2.12", false),
            (Kind::Agent, "unversioned", false),
        ];
        for (world, import, ok) in cases {
            let res = check_imports(*world, &[import.to_string()]);
            assert_eq!(res.is_ok(), *ok, "{world} {import}: {res:?}");
            if let Err(msg) = res {
                assert!(msg.contains(import), "{msg}");
            }
        }
    }

    #[test]
    fn world_is_found_by_export_interface() {
        assert_eq!(
            world_of(&["colony:plugin/handler@0.1.0".into()]),
            Some(Kind::Agent)
        );
        assert_eq!(
            world_of(&["colony:plugin/tool-handler@0.1.0".into()]),
            Some(Kind::Tool)
        );
        assert_eq!(world_of(&["wasi:cli/run@0.2.0".into()]), None);
    }
}
