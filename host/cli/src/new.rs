//! `colony new agent|tool NAME`: scaffold a plugin crate that builds for wasm32-wasip2 and
//! loads in the host without edits. The templates live in `host/templates/`.

use std::path::{Path, PathBuf};

use clap::Subcommand;

use super::{CliError, CliResult};

#[derive(Debug, Subcommand)]
pub enum NewCommand {
    /// Scaffold an agent crate.
    Agent(NewArgs),
    /// Scaffold a tool crate.
    Tool(NewArgs),
}

#[derive(Debug, clap::Args)]
pub struct NewArgs {
    /// Plugin name (lowercase letters, digits, '-'); also the crate and directory name.
    name: String,
    /// Directory to create the crate in (default: ./NAME).
    #[arg(long)]
    path: Option<PathBuf>,
    /// Path of the colony-sdk crate (default: the SDK of this Colony checkout).
    #[arg(long)]
    sdk: Option<PathBuf>,
}

const AGENT: &[(&str, &str)] = &[
    (
        "Cargo.toml",
        include_str!("../../templates/agent/Cargo.toml"),
    ),
    (
        "src/lib.rs",
        include_str!("../../templates/agent/src/lib.rs"),
    ),
    (
        ".cargo/config.toml",
        include_str!("../../templates/agent/.cargo/config.toml"),
    ),
    (
        "rust-toolchain.toml",
        include_str!("../../templates/agent/rust-toolchain.toml"),
    ),
    ("README.md", include_str!("../../templates/agent/README.md")),
];

const TOOL: &[(&str, &str)] = &[
    (
        "Cargo.toml",
        include_str!("../../templates/tool/Cargo.toml"),
    ),
    (
        "src/lib.rs",
        include_str!("../../templates/tool/src/lib.rs"),
    ),
    (
        ".cargo/config.toml",
        include_str!("../../templates/tool/.cargo/config.toml"),
    ),
    (
        "rust-toolchain.toml",
        include_str!("../../templates/tool/rust-toolchain.toml"),
    ),
    ("README.md", include_str!("../../templates/tool/README.md")),
];

pub fn new(cmd: NewCommand) -> CliResult {
    let (files, args, kind) = match cmd {
        NewCommand::Agent(a) => (AGENT, a, "agent"),
        NewCommand::Tool(a) => (TOOL, a, "tool"),
    };
    colony_caps::manifest::validate_name(&args.name).map_err(CliError::invalid)?;
    let dir = args.path.unwrap_or_else(|| PathBuf::from(&args.name));
    if dir.exists()
        && std::fs::read_dir(&dir)
            .map(|mut d| d.next().is_some())
            .unwrap_or(true)
    {
        return Err(CliError::invalid(anyhow::anyhow!(
            "{} already exists and is not empty",
            dir.display()
        )));
    }
    let sdk = match args.sdk {
        Some(p) => p,
        None => default_sdk()?,
    };
    let sdk = std::fs::canonicalize(&sdk)
        .map_err(|e| CliError::invalid(anyhow::anyhow!("colony-sdk at {}: {e}", sdk.display())))?;
    let crate_name = args.name.replace('-', "_");
    for (rel, template) in files {
        let text = template
            .replace("{{name}}", &args.name)
            .replace("{{crate_name}}", &crate_name)
            .replace("{{sdk_path}}", &sdk.display().to_string());
        let path = dir.join(rel);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)?;
        }
        std::fs::write(&path, text)?;
    }
    println!("created {kind} {} in {}", args.name, dir.display());
    println!("build it:  cd {} && cargo build --release", dir.display());
    println!("load it:   cp target/wasm32-wasip2/release/{crate_name}.wasm <plugins folder>/");
    Ok(())
}

/// The SDK beside this binary's source tree; the only place it lives until it is published.
fn default_sdk() -> Result<PathBuf, CliError> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../sdk");
    if path.join("Cargo.toml").is_file() {
        Ok(path)
    } else {
        Err(CliError::invalid(anyhow::anyhow!(
            "cannot find colony-sdk at {}; pass --sdk PATH",
            path.display()
        )))
    }
}
