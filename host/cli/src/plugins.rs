//! `colony plugins list` and `colony plugins inspect FILE.wasm`.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use clap::Subcommand;

use super::{CliError, CliResult, printable};
use crate::table::{Align, Table};
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
    /// Print the data directory's plugins folder (DATA_DIR/plugins), creating it if missing:
    /// `cp my_agent.wasm "$(colony plugins dir)"`.
    Dir,
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
        PluginsCommand::Dir => {
            println!("{}", ensure_folder(&data_dir)?.display());
            Ok(())
        }
    }
}

/// The data directory's plugins folder, created (with the data directory, mode 0700) if
/// missing, so that `cp FILE.wasm ~/.local/share/colony/plugins/` works on a fresh machine.
pub(crate) fn ensure_folder(data_dir: &Path) -> Result<PathBuf, CliError> {
    let dir = data_dir.join("plugins");
    colony_host::datadir::prepare(data_dir)
        .and_then(|()| std::fs::create_dir_all(&dir))
        .map_err(|e| anyhow::anyhow!("cannot create plugins folder {}: {e}", dir.display()))?;
    Ok(dir)
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

/// `plugins list`: `{"plugins_dir": DIR, "plugins": [PluginInfo + the running host's
/// counters], "rejected": [{"file", "reason"}]}` with `--json`, else a table. With no host the
/// plugins carry only what loading the file tells (no counters, no state).
async fn list(plugins: Option<PathBuf>, json: bool, data_dir: PathBuf) -> CliResult {
    let listing = match colony_host::admin::call(&data_dir, "plugins", None, None).await? {
        Some(resp) if !resp.ok => {
            return Err(anyhow::anyhow!(resp.error.unwrap_or_default()).into());
        }
        Some(resp) => serde_json::json!({
            "plugins_dir": resp.result["plugins_dir"],
            "plugins": resp.result["plugins"],
            "rejected": resp.result["rejected"],
        }),
        None => offline_list(
            plugins.unwrap_or_else(|| data_dir.join("plugins")),
            &data_dir,
        )?,
    };
    if json {
        println!("{}", serde_json::to_string_pretty(&listing)?);
        return Ok(());
    }
    let mut table = Table::new(&[
        ("plugin", Align::Left),
        ("kind", Align::Left),
        ("version", Align::Left),
        ("state", Align::Left),
        ("digest", Align::Left),
        ("file", Align::Left),
    ]);
    for p in listing["plugins"].as_array().into_iter().flatten() {
        let digest = p["digest"].as_str().unwrap_or("?");
        table.row(vec![
            printable(p["name"].as_str().unwrap_or("?")).into_owned(),
            p["kind"].as_str().unwrap_or("?").to_string(),
            printable(p["version"].as_str().unwrap_or("?")).into_owned(),
            p["state"].as_str().unwrap_or("-").to_string(),
            format!("blake3:{}", digest.get(..16).unwrap_or(digest)),
            printable(p["file"].as_str().unwrap_or("?")).into_owned(),
        ]);
    }
    table.print();
    for r in listing["rejected"].as_array().into_iter().flatten() {
        println!(
            "refused {}: {}",
            printable(r["file"].as_str().unwrap_or("?")),
            printable(r["reason"].as_str().unwrap_or("?"))
        );
    }
    Ok(())
}

/// The listing of [`list`] made by loading every `.wasm` of `dir` here.
fn offline_list(dir: PathBuf, data_dir: &Path) -> Result<serde_json::Value, CliError> {
    let loader = offline_loader(Some(data_dir.join("cache")))?;
    let rd = std::fs::read_dir(&dir)
        .map_err(|e| CliError::invalid(anyhow::anyhow!("{}: {e}", dir.display())))?;
    let mut files: Vec<PathBuf> = rd
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "wasm"))
        .collect();
    files.sort();
    let mut infos = Vec::new();
    let mut refused = Vec::new();
    for f in files {
        match loader.load_file(&f) {
            Ok(p) => infos.push(p.info),
            Err(e) => refused.push(serde_json::json!({"file": e.file, "reason": e.reason})),
        }
    }
    Ok(serde_json::json!({
        "plugins_dir": dir,
        "plugins": infos,
        "rejected": refused,
    }))
}
