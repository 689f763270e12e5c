//! `colony tools list` and `colony tools invoke NAME JSON`: through the running host, or
//! with no host running, by loading the tool from the plugins folder in-process.

use std::path::PathBuf;

use clap::Subcommand;

use super::{CliError, CliResult};
use crate::manifest::Kind;
use crate::plugin::Linked;
use crate::policy::Policy;
use crate::tool::{ToolRunner, ToolSpec};
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
        /// Tool name.
        name: String,
        /// Arguments as JSON text.
        args: String,
        /// Plugins folder (default: DATA_DIR/plugins) when no host is running.
        #[arg(long)]
        plugins: Option<PathBuf>,
    },
}

pub async fn tools(cmd: ToolsCommand, data_dir: PathBuf) -> CliResult {
    match cmd {
        ToolsCommand::List { plugins, json } => {
            let specs = match crate::admin::call(&data_dir, "tools", None, None).await? {
                Some(resp) if resp.ok => resp.result,
                Some(resp) => return Err(anyhow::anyhow!(resp.error.unwrap_or_default()).into()),
                None => {
                    let runners = offline_tools(plugins, &data_dir)?;
                    let mut specs: Vec<ToolSpec> = Vec::new();
                    for r in runners {
                        specs.push(r.describe().await?);
                    }
                    serde_json::to_value(specs)?
                }
            };
            if json {
                println!("{}", serde_json::to_string_pretty(&specs)?);
            } else {
                for s in specs.as_array().into_iter().flatten() {
                    println!(
                        "{:<24} {}",
                        s["name"].as_str().unwrap_or("?"),
                        s["description"].as_str().unwrap_or("")
                    );
                }
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
            let out = match crate::admin::call(
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
                    let runner = runners
                        .into_iter()
                        .find(|r| **r.name() == *name)
                        .ok_or_else(|| {
                            anyhow::anyhow!("no tool named {name:?} in the plugins folder")
                        })?;
                    runner.invoke(&args).await?
                }
            };
            println!("{out}");
            Ok(())
        }
    }
}

fn offline_tools(
    plugins: Option<PathBuf>,
    data_dir: &std::path::Path,
) -> Result<Vec<ToolRunner>, CliError> {
    let dir = plugins.unwrap_or_else(|| data_dir.join("plugins"));
    let loader = super::plugins::offline_loader(Some(data_dir.join("cache")))?;
    let rd = std::fs::read_dir(&dir)
        .map_err(|e| CliError::invalid(anyhow::anyhow!("{}: {e}", dir.display())))?;
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
