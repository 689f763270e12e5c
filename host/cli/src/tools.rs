//! `colony tools list|invoke|register|unregister`: through the running host, or with no host
//! running, in-process on the plugins folder and `DATA_DIR/tools/` (registrations made
//! without a host are audited in the same audit store). `colony tools build TOOL.py`
//! ([`python`]) turns a Python source into a tool component, and registers it with
//! `--register` the way `register` does.

mod python;
mod wit;

use std::path::PathBuf;

use clap::Subcommand;

use super::{CliError, CliResult, printable};
use crate::table::{Align, Table};
use colony_caps::manifest::Kind;
use colony_host::audit::AuditStore;
use colony_host::plugin::Linked;
use colony_host::policy::Policy;
use colony_host::tool::{ToolRunner, ToolSpec};
use colony_host::tools::{BookGrants, RegistryError, ToolCallError, ToolRegistry};
use std::path::Path;
use std::sync::Arc;

#[derive(Debug, Subcommand)]
pub enum ToolsCommand {
    /// List the tools with their descriptions.
    List {
        /// Plugins folder (default: DATA_DIR/plugins) when no host is running.
        #[arg(long)]
        plugins: Option<PathBuf>,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Call a tool with JSON arguments and print its JSON result.
    Invoke {
        /// Tool name, or NAME@VERSION for one registered version.
        name: String,
        /// Arguments as JSON text.
        args: String,
        /// Plugins folder (default: DATA_DIR/plugins) when no host is running.
        #[arg(long)]
        plugins: Option<PathBuf>,
    },
    /// Validate a tool component and register it; prints NAME@VERSION and its digest.
    Register {
        /// The component file.
        file: PathBuf,
    },
    /// Unregister a tool (every version) or one version; the previous version answers again.
    Unregister {
        /// NAME or NAME@VERSION.
        name: String,
    },
    /// Build a Python tool (TOOL.py) into a component with componentize-py 0.25.1; its
    /// `# colony: KEY = VALUE` lines give the manifest (see docs/tools.md).
    Build {
        /// The Python source; its stem is the module name.
        file: PathBuf,
        /// The component to write (default: the source with `.wasm`).
        #[arg(short = 'o', long = "output")]
        output: Option<PathBuf>,
        /// Register the built component, as `colony tools register` does.
        #[arg(long)]
        register: bool,
        /// Tool name (default: `# colony: name`, else the stem with `_` as `-`).
        #[arg(long)]
        name: Option<String>,
        /// Tool version (default: `# colony: version`, else 0.1.0).
        #[arg(long = "version")]
        version: Option<String>,
    },
}

pub async fn tools(cmd: ToolsCommand, data_dir: PathBuf, audit_db: Option<String>) -> CliResult {
    match cmd {
        ToolsCommand::List { plugins, json } => {
            let (specs, registered, not_loaded) = match (
                colony_host::admin::call(&data_dir, "tools", None, None).await?,
                colony_host::admin::call(&data_dir, "tool-list", None, None).await?,
                colony_host::admin::call(&data_dir, "tool-not-loaded", None, None).await?,
            ) {
                (Some(a), Some(b), Some(c)) if a.ok && b.ok && c.ok => {
                    (a.result, b.result, c.result)
                }
                (Some(a), Some(b), Some(c)) => {
                    let e = a.error.or(b.error).or(c.error).unwrap_or_default();
                    return Err(anyhow::anyhow!(e).into());
                }
                _ => {
                    let runners = offline_tools(plugins, &data_dir)?;
                    let mut specs: Vec<ToolSpec> = Vec::new();
                    for r in runners {
                        specs.push(r.describe().await?);
                    }
                    let (registry, _store) =
                        offline_registry(&data_dir, audit_db.as_deref()).await?;
                    (
                        serde_json::to_value(specs)?,
                        serde_json::to_value(registry.list())?,
                        serde_json::to_value(registry.not_loaded())?,
                    )
                }
            };
            if json {
                let all = serde_json::json!({
                    "plugins": specs,
                    "registered": registered,
                    "not_loaded": not_loaded,
                });
                println!("{}", serde_json::to_string_pretty(&all)?);
            } else {
                let mut table = Table::new(&[
                    ("tool", Align::Left),
                    ("source", Align::Left),
                    ("versions", Align::Left),
                    ("description", Align::Left),
                ]);
                for s in specs.as_array().into_iter().flatten() {
                    table.row(vec![
                        printable(s["name"].as_str().unwrap_or("?")).into_owned(),
                        "folder".into(),
                        "-".into(),
                        printable(s["description"].as_str().unwrap_or("")).into_owned(),
                    ]);
                }
                for t in registered.as_array().into_iter().flatten() {
                    let versions: Vec<String> = t["versions"]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .map(|v| {
                            let mark = if v["active"].as_bool() == Some(true) {
                                "*"
                            } else {
                                ""
                            };
                            format!("{}{mark}", v["version"].as_str().unwrap_or("?"))
                        })
                        .collect();
                    table.row(vec![
                        printable(t["name"].as_str().unwrap_or("?")).into_owned(),
                        "registered".into(),
                        printable(&versions.join(", ")).into_owned(),
                        printable(t["description"].as_str().unwrap_or("")).into_owned(),
                    ]);
                }
                table.print();
                for line in not_loaded.as_array().into_iter().flatten() {
                    println!("not loaded: {}", line.as_str().unwrap_or("?"));
                }
            }
            Ok(())
        }
        ToolsCommand::Register { file } => {
            let result = register_file(&file, &data_dir, audit_db.as_deref()).await?;
            print_registered(&result);
            Ok(())
        }
        ToolsCommand::Build {
            file,
            output,
            register,
            name,
            version,
        } => {
            let req = python::BuildRequest {
                output: output.unwrap_or_else(|| file.with_extension("wasm")),
                source: file,
                name,
                version,
            };
            let built = tokio::task::spawn_blocking(move || python::build(&req))
                .await
                .map_err(|e| anyhow::anyhow!("the build task failed: {e}"))?
                .map_err(|e| match e {
                    python::BuildError::Source(_) => CliError::invalid(e),
                    python::BuildError::Toolchain(_) => CliError::from(e),
                })?;
            println!(
                "wrote {}: {}@{}, {:.1} MiB, digest {} (componentize-py {:.1} s)",
                built.output.display(),
                built.manifest.name,
                built.manifest.version,
                built.size as f64 / (1024.0 * 1024.0),
                built.digest,
                built.componentize.as_secs_f64()
            );
            if register {
                let result = register_file(&built.output, &data_dir, audit_db.as_deref()).await?;
                print_registered(&result);
            }
            Ok(())
        }
        ToolsCommand::Unregister { name } => {
            let removed =
                match super::host_or_lock(&data_dir, "tool-unregister", Some(name.clone()), None)
                    .await?
                {
                    super::Route::Host(resp) if resp.ok => resp.result,
                    super::Route::Host(resp) => {
                        return Err(anyhow::anyhow!(resp.error.unwrap_or_default()).into());
                    }
                    super::Route::Offline(_lock) => {
                        let (registry, store) =
                            offline_registry(&data_dir, audit_db.as_deref()).await?;
                        let removed = registry
                            .unregister(&name, Some(&store.writer()), &cli_actor())
                            .await?;
                        serde_json::to_value(removed)?
                    }
                };
            for r in removed.as_array().into_iter().flatten() {
                println!(
                    "unregistered {} {}",
                    r["id"].as_str().unwrap_or("?"),
                    r["digest"].as_str().unwrap_or("?")
                );
            }
            Ok(())
        }
        ToolsCommand::Invoke {
            name,
            args,
            plugins,
        } => {
            if let Err(e) = serde_json::from_str::<serde::de::IgnoredAny>(&args) {
                return Err(CliError::invalid(anyhow::anyhow!(
                    "arguments are not JSON: {e}"
                )));
            }
            let out = match colony_host::admin::call(
                &data_dir,
                "invoke",
                Some(name.clone()),
                Some(args.clone()),
            )
            .await?
            {
                Some(resp) if resp.ok => resp.result.as_str().unwrap_or_default().to_string(),
                Some(resp) => return Err(anyhow::anyhow!(resp.error.unwrap_or_default()).into()),
                None => {
                    let runners = offline_tools(plugins, &data_dir)?;
                    match runners.into_iter().find(|r| **r.name() == *name) {
                        Some(runner) => runner.invoke(&args).await?,
                        None => {
                            let (registry, _store) =
                                offline_registry(&data_dir, audit_db.as_deref()).await?;
                            registry.invoke(&name, &args, None).await.map_err(|e| match e {
                                ToolCallError::InvalidArguments { .. } => CliError::invalid(e),
                                ToolCallError::NotFound(_) => CliError::from(anyhow::anyhow!(
                                    "no tool named {name:?} in the plugins folder or the registry"
                                )),
                                other => other.into(),
                            })?
                        }
                    }
                }
            };
            println!("{out}");
            Ok(())
        }
    }
}

/// Registers the component `file`: through the running host's admin socket, or with no host
/// in-process on `DATA_DIR/tools/`. Answers `{name, version, digest}`.
async fn register_file(
    file: &Path,
    data_dir: &Path,
    audit_db: Option<&str>,
) -> Result<serde_json::Value, CliError> {
    let file = std::path::absolute(file)?;
    match super::host_or_lock(
        data_dir,
        "tool-register",
        None,
        Some(file.display().to_string()),
    )
    .await?
    {
        super::Route::Host(resp) if resp.ok => Ok(resp.result),
        super::Route::Host(resp) => Err(CliError::invalid(anyhow::anyhow!(
            resp.error.unwrap_or_default()
        ))),
        super::Route::Offline(_lock) => {
            let bytes = colony_host::admin::read_component(&file)
                .map_err(|e| CliError::invalid(anyhow::anyhow!(e)))?;
            let (registry, store) = offline_registry(data_dir, audit_db).await?;
            let loader = super::plugins::offline_loader(Some(data_dir.join("cache")))?;
            let grants = book_grants(&store).await?;
            let t = registry
                .register(
                    &loader,
                    &grants,
                    &bytes,
                    &[],
                    Some(&store.writer()),
                    &cli_actor(),
                )
                .await
                .map_err(|e| match e {
                    RegistryError::Rejected(_) | RegistryError::Duplicate(_) => {
                        CliError::invalid(e)
                    }
                    other => other.into(),
                })?;
            Ok(serde_json::json!({ "name": t.name, "version": t.version, "digest": t.digest }))
        }
    }
}

/// `NAME@VERSION DIGEST`.
fn print_registered(result: &serde_json::Value) {
    println!(
        "{}@{} {}",
        result["name"].as_str().unwrap_or("?"),
        result["version"].as_str().unwrap_or("?"),
        result["digest"].as_str().unwrap_or("?")
    );
}

/// The registry in `DATA_DIR/tools/`, opened in-process under the grants recorded in the
/// audit store (which is also returned, for auditing changes).
async fn offline_registry(
    data_dir: &Path,
    audit_db: Option<&str>,
) -> Result<(ToolRegistry, AuditStore), CliError> {
    let store = super::grants::open_store(data_dir, audit_db).await?;
    let loader = super::plugins::offline_loader(Some(data_dir.join("cache")))?;
    let grants = book_grants(&store).await?;
    let (registry, failures) = ToolRegistry::open(data_dir.join("tools"), &loader, &grants).await?;
    for f in failures {
        tracing::warn!("registered tool not loaded: {f}");
    }
    Ok((registry, store))
}

async fn book_grants(store: &AuditStore) -> Result<BookGrants, CliError> {
    Ok(BookGrants {
        book: colony_host::supervisor::load_grant_book(store).await?,
        audit: Some(store.writer()),
        sample_allows: colony_host::config::HostConfig::new(PathBuf::new()).audit_sample_allows,
    })
}

fn cli_actor() -> String {
    format!("cli:{}", colony_host::admin::current_user())
}

fn offline_tools(
    plugins: Option<PathBuf>,
    data_dir: &std::path::Path,
) -> Result<Vec<ToolRunner>, CliError> {
    let explicit = plugins.is_some();
    let dir = plugins.unwrap_or_else(|| data_dir.join("plugins"));
    let loader = super::plugins::offline_loader(Some(data_dir.join("cache")))?;
    let rd = match std::fs::read_dir(&dir) {
        Ok(rd) => rd,
        // No default plugins folder: only registered tools.
        Err(e) if !explicit && e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(CliError::invalid(anyhow::anyhow!("{}: {e}", dir.display()))),
    };
    let mut out = Vec::new();
    for p in rd
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "wasm"))
    {
        match loader.load_file(&p) {
            Ok(plugin) if plugin.info.kind == Kind::Tool => {
                let name = plugin.name();
                let limits = plugin.info.limits;
                if let Linked::Tool(pre) = plugin.linked {
                    // Offline calls get no grants: nothing is granted without a running host's
                    // policy and audit.
                    let policy = Arc::new(Policy::deny_all(name.clone()));
                    out.push(ToolRunner::new(pre, name, limits, policy));
                }
            }
            Ok(_) => {}
            Err(e) => tracing::warn!("skipping {e}"),
        }
    }
    Ok(out)
}
