//! `colony grants list|grant|revoke|approve`: through the running host (effective at once),
//! or with no host running, on the audit store of the data directory (effective at the next
//! start). Either way the change is recorded in the audit chain before it counts.
//!
//! With no host running the command holds the data directory's lock while it writes, and a
//! host that holds it but does not answer yet (it is starting) is waited for, so `revoked`
//! means in force: either the running host applied it, or it is in the audit before any host
//! reads the grants.

use std::path::{Path, PathBuf};

use clap::Subcommand;

use super::{CliError, CliResult};
use colony_caps::Capability;
use colony_host::audit::{AuditRecord, AuditStore};

#[derive(Debug, Subcommand)]
pub enum GrantsCommand {
    /// Every plugin's grants, approved build and whether the running build has them.
    List {
        /// Only this plugin.
        #[arg(long)]
        plugin: Option<String>,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Grant a capability (e.g. `fs.read:/srv/data`); approves the current build if none is.
    Grant {
        /// Plugin name.
        plugin: String,
        /// Capability string.
        capability: String,
        /// Plugins folder (default: DATA_DIR/plugins), to find the build when no host runs.
        #[arg(long)]
        plugins: Option<PathBuf>,
    },
    /// Revoke a capability; the next use is denied (a filesystem/environment revocation
    /// restarts the instance).
    Revoke {
        /// Plugin name.
        plugin: String,
        /// Capability string.
        capability: String,
    },
    /// Approve the plugin's current build, so its grants apply to it.
    Approve {
        /// Plugin name.
        plugin: String,
        /// Plugins folder (default: DATA_DIR/plugins), to find the build when no host runs.
        #[arg(long)]
        plugins: Option<PathBuf>,
    },
}

/// Who makes an offline change: the user this process runs as (not `$USER`, which anyone
/// can set).
fn actor() -> String {
    format!("cli:{}", colony_host::admin::current_user())
}

pub async fn grants(cmd: GrantsCommand, data_dir: PathBuf, audit_db: Option<String>) -> CliResult {
    let (op, name, arg) = match &cmd {
        GrantsCommand::List { .. } => ("grants", None, None),
        GrantsCommand::Grant {
            plugin, capability, ..
        } => ("grant", Some(plugin.clone()), Some(capability.clone())),
        GrantsCommand::Revoke { plugin, capability } => {
            ("revoke", Some(plugin.clone()), Some(capability.clone()))
        }
        GrantsCommand::Approve { plugin, .. } => ("approve", Some(plugin.clone()), None),
    };
    if let Some(cap) = &arg {
        cap.parse::<Capability>().map_err(CliError::invalid)?;
    }
    if let Some(plugin) = &name {
        colony_caps::manifest::check_name(plugin)
            .map_err(|e| CliError::invalid(anyhow::anyhow!("plugin name {e}")))?;
    }
    let _lock = match super::host_or_lock(&data_dir, op, name, arg).await? {
        super::Route::Host(resp) if resp.ok => return print(&cmd, resp.result),
        super::Route::Host(resp) => {
            return Err(anyhow::anyhow!(resp.error.unwrap_or_default()).into());
        }
        super::Route::Offline(lock) => lock,
    };
    // No host running: work on the audit store directly, holding the data directory.
    let store = open_store(&data_dir, audit_db.as_deref()).await?;
    let writer = store.writer();
    let result = match &cmd {
        GrantsCommand::List { .. } => {
            let book = colony_host::supervisor::load_grant_book(&store).await?;
            let list: Vec<serde_json::Value> = book
                .all()
                .iter()
                .map(|(plugin, g)| {
                    serde_json::json!({
                        "plugin": plugin,
                        "approved_digest": g.approved_digest,
                        "capabilities": g.capabilities,
                        "running_digest": null,
                        "state": "not running",
                    })
                })
                .collect();
            serde_json::Value::Array(list)
        }
        GrantsCommand::Grant {
            plugin,
            capability,
            plugins,
        } => {
            let book = colony_host::supervisor::load_grant_book(&store).await?;
            let digest = match book.get(plugin).and_then(|g| g.approved_digest.clone()) {
                Some(_) => String::new(),
                None => folder_digest(plugin, plugins.as_deref(), &data_dir).unwrap_or_default(),
            };
            let cap: Capability = capability.parse().map_err(CliError::invalid)?;
            writer
                .append(AuditRecord::grant(
                    &actor(),
                    plugin,
                    &digest,
                    &cap.to_string(),
                ))
                .await?;
            serde_json::Value::Null
        }
        GrantsCommand::Revoke { plugin, capability } => {
            let cap: Capability = capability.parse().map_err(CliError::invalid)?;
            writer
                .append(AuditRecord::revoke(&actor(), plugin, "", &cap.to_string()))
                .await?;
            serde_json::Value::Null
        }
        GrantsCommand::Approve { plugin, plugins } => {
            let digest = folder_digest(plugin, plugins.as_deref(), &data_dir).ok_or_else(|| {
                CliError::invalid(anyhow::anyhow!(
                    "no plugin named \"{plugin}\" in the plugins folder or among the registered tools"
                ))
            })?;
            writer
                .append(AuditRecord::approve(&actor(), plugin, &digest))
                .await?;
            serde_json::Value::String(digest)
        }
    };
    store.close().await?;
    print(&cmd, result)
}

fn print(cmd: &GrantsCommand, result: serde_json::Value) -> CliResult {
    match cmd {
        GrantsCommand::List { plugin, json } => {
            let rows: Vec<&serde_json::Value> = result
                .as_array()
                .into_iter()
                .flatten()
                .filter(|r| plugin.as_deref().is_none_or(|p| r["plugin"] == p))
                .collect();
            if *json {
                println!("{}", serde_json::to_string_pretty(&rows)?);
                return Ok(());
            }
            let mut table = crate::table::Table::new(&[
                ("plugin", crate::table::Align::Left),
                ("state", crate::table::Align::Left),
                ("approved build", crate::table::Align::Left),
                ("capabilities", crate::table::Align::Left),
            ]);
            for r in rows {
                let caps: Vec<&str> = r["capabilities"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(|c| c.as_str())
                    .collect();
                let approved = r["approved_digest"]
                    .as_str()
                    .map(|d| format!("blake3:{}", d.get(..16).unwrap_or(d)))
                    .unwrap_or_else(|| "-".into());
                table.row(vec![
                    super::printable(r["plugin"].as_str().unwrap_or("?")).into_owned(),
                    r["state"].as_str().unwrap_or("?").to_string(),
                    approved,
                    if caps.is_empty() {
                        "(nothing)".to_string()
                    } else {
                        super::printable(&caps.join(" ")).into_owned()
                    },
                ]);
            }
            table.print();
        }
        GrantsCommand::Grant {
            plugin, capability, ..
        } => println!("granted {capability} to {plugin}"),
        GrantsCommand::Revoke { plugin, capability } => {
            println!("revoked {capability} from {plugin}")
        }
        GrantsCommand::Approve { plugin, .. } => {
            println!(
                "approved {plugin} build blake3:{}",
                result.as_str().unwrap_or("?")
            )
        }
    }
    Ok(())
}

/// Opens the audit store the host would use.
pub(super) async fn open_store(
    data_dir: &Path,
    audit_db: Option<&str>,
) -> Result<AuditStore, CliError> {
    Ok(match audit_db {
        Some(url) => {
            super::check_audit_url(url)?;
            AuditStore::open(url).await?
        }
        None => AuditStore::open_sqlite(&AuditStore::default_path(data_dir)).await?,
    })
}

/// The digest of the plugin named `name` in the plugins folder, else of the active build of
/// the registered tool of that name (`DATA_DIR/tools`).
fn folder_digest(name: &str, plugins: Option<&Path>, data_dir: &Path) -> Option<String> {
    plugin_digest(name, plugins, data_dir).or_else(|| {
        colony_host::tools::registry::stored_digest(&data_dir.join("tools"), name)
            .ok()
            .flatten()
    })
}

/// The digest of the plugin named `name` in the plugins folder.
fn plugin_digest(name: &str, plugins: Option<&Path>, data_dir: &Path) -> Option<String> {
    let dir = plugins
        .map(Path::to_path_buf)
        .unwrap_or_else(|| data_dir.join("plugins"));
    let loader = super::plugins::offline_loader(Some(data_dir.join("cache"))).ok()?;
    std::fs::read_dir(&dir)
        .ok()?
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "wasm"))
        .filter_map(|p| loader.load_file(&p).ok())
        .find(|p| p.info.name == name)
        .map(|p| p.info.digest)
}
