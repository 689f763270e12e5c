//! The `colony` command line (clap). One file per subcommand; this file holds the argument
//! types, logging setup and the exit codes.
//!
//! Exit codes: 0 success; 1 failure; 2 usage error; 3 invalid input (a plugin file, a
//! manifest or a configuration was refused); 4 no running host where one is needed; 5 the
//! data directory is held by another process (a second `colony run`, or a host that holds
//! it but does not answer on its admin socket); 6 a `colony run --strict` that was not
//! repeatable (the report says why).

mod agents;
mod audit;
mod bench;
mod bus;
mod grants;
mod human;
mod new;
mod orders;
mod plugins;
pub mod report;
mod run;
mod status;
mod table;
mod tools;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// An error with the exit code it maps to.
#[derive(Debug)]
pub struct CliError {
    code: u8,
    error: anyhow::Error,
}

impl CliError {
    /// Invalid input (exit 3).
    pub fn invalid(error: impl Into<anyhow::Error>) -> CliError {
        CliError {
            code: 3,
            error: error.into(),
        }
    }

    /// A `colony run --strict` that was not repeatable (exit 6).
    pub fn not_repeatable(error: impl Into<anyhow::Error>) -> CliError {
        CliError {
            code: 6,
            error: error.into(),
        }
    }

    /// No running host (exit 4).
    pub fn no_host(error: impl Into<anyhow::Error>) -> CliError {
        CliError {
            code: 4,
            error: error.into(),
        }
    }

    /// The data directory is held by another process (exit 5).
    pub fn locked(error: impl Into<anyhow::Error>) -> CliError {
        CliError {
            code: 5,
            error: error.into(),
        }
    }
}

/// How long a command that changes the data directory waits for a host that holds it to
/// answer on its admin socket (a host loading many plugins takes a while to start).
const HOST_START_WAIT: std::time::Duration = std::time::Duration::from_secs(60);

/// Where a command that changes the data directory runs.
pub(crate) enum Route {
    /// The running host answered.
    Host(colony_host::admin::Response),
    /// No host runs; the data directory is held until this is dropped.
    Offline(colony_host::datadir::DataDirLock),
}

/// Sends `op` to the running host, or, when none runs, locks the data directory so that no
/// host can start (and read the grants) while the command writes. A host that holds the
/// directory but does not answer yet is starting: the request is retried until it answers,
/// so a change is either applied by that host or written before it starts.
pub(crate) async fn host_or_lock(
    data_dir: &std::path::Path,
    op: &str,
    name: Option<String>,
    args: Option<String>,
) -> Result<Route, CliError> {
    let deadline = std::time::Instant::now() + HOST_START_WAIT;
    loop {
        if let Some(resp) =
            colony_host::admin::call(data_dir, op, name.clone(), args.clone()).await?
        {
            return Ok(Route::Host(resp));
        }
        match colony_host::datadir::DataDirLock::try_acquire(
            data_dir,
            colony_host::datadir::Role::Command,
        )
        .map_err(CliError::from)?
        {
            Some(lock) => return Ok(Route::Offline(lock)),
            None if std::time::Instant::now() < deadline => {
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            }
            None => {
                return Err(CliError::locked(anyhow::anyhow!(
                    "data directory {} is held by pid {}, which does not answer on its admin \
                     socket",
                    data_dir.display(),
                    colony_host::datadir::holder(data_dir)
                        .map_or("(unknown)".to_string(), |(p, _)| p.to_string())
                )));
            }
        }
    }
}

impl<E: Into<anyhow::Error>> From<E> for CliError {
    fn from(e: E) -> CliError {
        CliError {
            code: 1,
            error: e.into(),
        }
    }
}

type CliResult = Result<(), CliError>;

/// Colony: a WebAssembly plugin host for sandboxed trading agents and tools.
#[derive(Debug, Parser)]
#[command(name = "colony", version, about)]
pub struct Cli {
    /// Data directory: databases, compile cache, admin socket and token.
    #[arg(long, global = true, env = "COLONY_DATA_DIR")]
    data_dir: Option<PathBuf>,
    /// Audit database: `sqlite://PATH` or `postgres://…` (default: DATA_DIR/audit.db).
    #[arg(long, global = true, env = "COLONY_AUDIT_DB")]
    audit_db: Option<String>,
    /// Log format.
    #[arg(
        long,
        global = true,
        value_enum,
        default_value = "text",
        env = "COLONY_LOG_FORMAT"
    )]
    log_format: LogFormat,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the host: load the plugins folder, watch it, deliver events, serve the admin socket.
    Run(run::RunArgs),
    /// List or inspect plugins.
    #[command(subcommand)]
    Plugins(plugins::PluginsCommand),
    /// List, call, register and unregister tools.
    #[command(subcommand)]
    Tools(tools::ToolsCommand),
    /// List, grant, revoke and approve capabilities.
    #[command(subcommand)]
    Grants(grants::GrantsCommand),
    /// Show the audit trail, or verify its hash chain.
    Audit(audit::AuditArgs),
    /// Publish to or tail a subject on the running host's bus.
    #[command(subcommand)]
    Bus(bus::BusCommand),
    /// Show the running host's agents: state, mailbox, fuel, memory, restarts, failures.
    Status(status::StatusArgs),
    /// Put agents to sleep, wake them, release them from quarantine, pause and resume them.
    #[command(subcommand)]
    Agents(agents::AgentsCommand),
    /// Scaffold a new plugin crate.
    #[command(subcommand)]
    New(new::NewCommand),
    /// Measure Colony against raw wasmtime on the same component and print the ratios.
    Bench(bench::BenchArgs),
    /// Open orders, fills, positions and PnL; the kill switch.
    #[command(subcommand)]
    Orders(orders::OrdersCommand),
    /// Orders waiting for an operator's approval: list, approve, deny.
    #[command(subcommand)]
    Approvals(orders::ApprovalsCommand),
}

/// Entry point of the `colony` binary.
pub fn main() -> ExitCode {
    // `colony bench`'s subprocess baseline, before parsing, logging and the runtime.
    if std::env::args_os()
        .nth(1)
        .is_some_and(|a| a == colony_bench::TOOL_SUBPROCESS)
    {
        return bench::tool_subprocess();
    }
    let cli = Cli::parse();
    if !matches!(cli.command, Command::Run(_)) {
        // A client writing to a closed pipe (`colony status | head`) ends quietly, as Unix
        // tools do, instead of panicking in `println!`. The host keeps SIGPIPE ignored: its
        // sockets report a vanished peer as an error it handles.
        // SAFETY: setting a signal's disposition to the default has no preconditions; no
        // other thread exists yet.
        unsafe {
            libc::signal(libc::SIGPIPE, libc::SIG_DFL);
        }
    }
    // The demo (`colony run` alone) shows its progress and report; its logs stay at warn
    // unless COLONY_LOG/RUST_LOG say otherwise.
    let demo = matches!(&cli.command, Command::Run(a) if a.is_demo());
    init_logging(cli.log_format, if demo { "warn" } else { "info" });
    let data_dir = cli.data_dir.clone().unwrap_or_else(default_data_dir);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::from(1);
        }
    };
    let result = runtime.block_on(async move {
        match cli.command {
            Command::Run(args) => run::run(args, data_dir, cli.audit_db).await,
            Command::Grants(cmd) => grants::grants(cmd, data_dir, cli.audit_db).await,
            Command::Bus(cmd) => bus::bus(cmd, data_dir).await,
            Command::Audit(args) => audit::audit(args, data_dir, cli.audit_db).await,
            Command::Plugins(cmd) => plugins::plugins(cmd, data_dir).await,
            Command::Tools(cmd) => tools::tools(cmd, data_dir, cli.audit_db).await,
            Command::Status(args) => status::status(args, data_dir).await,
            Command::Agents(cmd) => agents::agents(cmd, data_dir).await,
            Command::New(cmd) => {
                new::new(cmd)?;
                // The folder the scaffold's `cp` line names exists from now on.
                let folder = plugins::ensure_folder(&data_dir)?;
                println!("plugins folder: {}", folder.display());
                Ok(())
            }
            Command::Bench(args) => bench::bench(args).await,
            Command::Orders(cmd) => orders::orders(cmd, data_dir).await,
            Command::Approvals(cmd) => orders::approvals(cmd, data_dir).await,
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {:#}", e.error);
            ExitCode::from(e.code)
        }
    }
}

fn init_logging(format: LogFormat, level: &str) {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_env("COLONY_LOG")
        .or_else(|_| EnvFilter::try_from_default_env())
        .unwrap_or_else(|_| {
            EnvFilter::new(format!(
                "{level},cranelift_codegen=warn,wasmtime=warn,sqlx=warn"
            ))
        });
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let _ = match format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder.json().try_init(),
    };
}

/// Refuses an audit database URL whose scheme no store reads (invalid input, exit 3), before
/// anything is opened.
pub(crate) fn check_audit_url(url: &str) -> Result<(), CliError> {
    let scheme = url.split_once(':').map_or(url, |(s, _)| s);
    if matches!(scheme, "sqlite" | "postgres" | "postgresql") {
        return Ok(());
    }
    Err(CliError::invalid(colony_host::audit::AuditError::Url(
        scheme.chars().take(32).collect(),
    )))
}

/// `s` with control characters (C0, DEL, C1) and invisible formatting characters (bidi
/// controls, zero-width characters, BOM) escaped as `\n`, `\u{202e}`…, so that what a
/// plugin, a file or another user wrote prints as one visible line.
pub fn printable(s: &str) -> std::borrow::Cow<'_, str> {
    fn hidden(c: char) -> bool {
        c.is_control()
            || matches!(c, '\u{061c}' | '\u{200b}'..='\u{200f}' | '\u{202a}'..='\u{202e}'
                | '\u{2060}'..='\u{2069}' | '\u{feff}')
    }
    if !s.chars().any(hidden) {
        return std::borrow::Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        if hidden(c) {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    std::borrow::Cow::Owned(out)
}

/// `$XDG_DATA_HOME/colony`, else `$HOME/.local/share/colony`, else `./.colony`.
pub fn default_data_dir() -> PathBuf {
    if let Some(x) = std::env::var_os("XDG_DATA_HOME").filter(|v| !v.is_empty()) {
        return PathBuf::from(x).join("colony");
    }
    match std::env::var_os("HOME").filter(|v| !v.is_empty()) {
        Some(home) => PathBuf::from(home).join(".local/share/colony"),
        None => PathBuf::from(".colony"),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn printable_escapes_what_would_forge_or_reorder_a_line() {
        assert_eq!(super::printable("plain text"), "plain text");
        assert_eq!(super::printable("a\nb\r\u{1b}"), "a\\nb\\r\\u{1b}");
        assert_eq!(
            super::printable("x\u{202e}y\u{feff}"),
            "x\\u{202e}y\\u{feff}"
        );
    }
}
