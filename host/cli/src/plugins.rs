//! `colony plugins list` and `colony plugins inspect FILE.wasm`.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use clap::Subcommand;

use super::{CliError, CliResult};
use colony_host::engine::{EngineSettings, Runtime};
use colony_host::limits::{Limits, human_bytes};
use colony_host::plugin::{Loader, PluginInfo};

#[derive(Debug, Subcommand)]
pub enum PluginsCommand {
    /// List the plugins of the running host (or, with no host running, of the folder).
    List {
        /// Plugins folder (default: DATA_DIR/plugins) when no host is running.
        #[arg(long)]
        plugins: Option<PathBuf>,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Validate one plugin file and print what it is, imports, exports, requests and compile time.
    Inspect {
        /// The `.wasm` file.
        file: PathBuf,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
}

pub async fn plugins(cmd: PluginsCommand, data_dir: PathBuf) -> CliResult {
    match cmd {
        PluginsCommand::Inspect { file, json } => inspect(&file, json),
        PluginsCommand::List { plugins, json } => list(plugins, json, data_dir).await,
    }
}

/// A loader with default limits and no compile cache (so compile time is real).
pub(super) fn offline_loader(cache: Option<PathBuf>) -> Result<Loader, CliError> {
    let runtime = Arc::new(Runtime::new(
        &EngineSettings {
            pooling: false,
            ..EngineSettings::default()
        },
        cache,
    )?);
    Ok(Loader::new(
        runtime,
        Limits::agent_default(),
        Limits::tool_default(),
    )?)
}

fn inspect(file: &Path, json: bool) -> CliResult {
    let loader = offline_loader(None)?;
    let plugin = loader.load_file(file).map_err(CliError::invalid)?;
    if json {
        println!("{}", serde_json::to_string_pretty(&plugin.info)?);
    } else {
        print_info(&plugin.info);
    }
    Ok(())
}

fn print_info(i: &PluginInfo) {
    let list = |v: &[String]| {
        if v.is_empty() {
            "(none)".to_string()
        } else {
            v.join("\n               ")
        }
    };
    println!("file:          {}", i.file.display());
    println!("name:          {}", i.name);
    println!("kind:          {}", i.kind);
    println!("version:       {}", i.version);
    println!(
        "description:   {}",
        if i.description.is_empty() {
            "-"
        } else {
            &i.description
        }
    );
    println!("digest:        blake3:{}", i.digest);
    println!("size:          {}", human_bytes(i.size_bytes));
    println!("world:         {}", i.world);
    println!(
        "manifest:      {}",
        serde_json::to_value(i.manifest_source)
            .ok()
            .and_then(|v| v.as_str().map(String::from))
            .unwrap_or_default()
    );
    println!("imports:       {}", list(&i.imports));
    println!("exports:       {}", list(&i.exports));
    println!("capabilities:  {}", list(&i.capabilities));
    println!(
        "limits asked:  {}",
        serde_json::to_string(&i.requested_limits).unwrap_or_default()
    );
    println!("limits:        {}", i.limits);
    if !i.clamped.is_empty() {
        println!("clamped:       {}", i.clamped.join(", "));
    }
    println!(
        "compile time:  {:.1} ms{}",
        i.compile_ms,
        if i.from_cache { " (from cache)" } else { "" }
    );
}

async fn list(plugins: Option<PathBuf>, json: bool, data_dir: PathBuf) -> CliResult {
    if let Some(resp) = colony_host::admin::call(&data_dir, "plugins", None, None).await? {
        if !resp.ok {
            return Err(anyhow::anyhow!(resp.error.unwrap_or_default()).into());
        }
        if json {
            println!("{}", serde_json::to_string_pretty(&resp.result)?);
        } else {
            for p in resp.result["plugins"].as_array().into_iter().flatten() {
                println!(
                    "{:<24} {:<6} {:<10} blake3:{}",
                    p["name"].as_str().unwrap_or("?"),
                    p["kind"].as_str().unwrap_or("?"),
                    p["version"].as_str().unwrap_or("?"),
                    &p["digest"].as_str().unwrap_or("?")
                        [..16.min(p["digest"].as_str().unwrap_or("?").len())]
                );
            }
            for r in resp.result["rejected"].as_array().into_iter().flatten() {
                println!(
                    "refused {}: {}",
                    r["file"].as_str().unwrap_or("?"),
                    r["reason"].as_str().unwrap_or("?")
                );
            }
        }
        return Ok(());
    }
    let dir = plugins.unwrap_or_else(|| data_dir.join("plugins"));
    let loader = offline_loader(Some(data_dir.join("cache")))?;
    let mut infos = Vec::new();
    let mut refused = Vec::new();
    let rd = std::fs::read_dir(&dir)
        .map_err(|e| CliError::invalid(anyhow::anyhow!("{}: {e}", dir.display())))?;
    let mut files: Vec<PathBuf> = rd
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "wasm"))
        .collect();
    files.sort();
    for f in files {
        match loader.load_file(&f) {
            Ok(p) => infos.push(p.info),
            Err(e) => refused.push(e.to_string()),
        }
    }
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(
                &serde_json::json!({"plugins": infos, "rejected": refused})
            )?
        );
    } else {
        for i in &infos {
            println!(
                "{:<24} {:<6} {:<10} blake3:{}",
                i.name,
                i.kind,
                i.version,
                &i.digest[..16]
            );
        }
        for r in &refused {
            println!("refused {r}");
        }
    }
    Ok(())
}
