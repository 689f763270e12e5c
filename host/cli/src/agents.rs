//! `colony agents sleep|wake|release|pause|resume NAME`: an operator's lifecycle actions on the running
//! host's agents (see `agent.rs`). Each is audited (kind `lifecycle`).

use std::path::PathBuf;

use clap::Subcommand;

use super::{CliError, CliResult};

#[derive(Debug, Subcommand)]
pub enum AgentsCommand {
    /// Put an agent to sleep (`*`: every agent): snapshot kept, instance released; the next
    /// message, subscribed event or timer wakes it.
    Sleep {
        /// Agent name, or `*`.
        name: String,
    },
    /// Wake a sleeping agent now.
    Wake {
        /// Agent name.
        name: String,
    },
    /// Release a quarantined agent: it rejoins the bus and gets a new instance.
    Release {
        /// Agent name.
        name: String,
    },
    /// Pause an agent: it handles no event until resumed (market data and ticks meanwhile are
    /// dropped and counted; messages, order events and timers are held, up to the mailbox's
    /// 1,024, and run on resume).
    Pause {
        /// Agent name.
        name: String,
    },
    /// Resume a paused agent: what was held runs first.
    Resume {
        /// Agent name.
        name: String,
    },
}

pub async fn agents(cmd: AgentsCommand, data_dir: PathBuf) -> CliResult {
    let (op, name) = match &cmd {
        AgentsCommand::Sleep { name } => ("agent-sleep", name),
        AgentsCommand::Wake { name } => ("agent-wake", name),
        AgentsCommand::Release { name } => ("agent-release", name),
        AgentsCommand::Pause { name } => ("agent-pause", name),
        AgentsCommand::Resume { name } => ("agent-resume", name),
    };
    let Some(resp) = colony_host::admin::call(&data_dir, op, Some(name.clone()), None).await?
    else {
        return Err(CliError::no_host(anyhow::anyhow!(
            "no host is running with data directory {}",
            data_dir.display()
        )));
    };
    if !resp.ok {
        return Err(anyhow::anyhow!(resp.error.unwrap_or_default()).into());
    }
    let changed = &resp.result["changed"];
    match (&cmd, changed) {
        (AgentsCommand::Sleep { name }, serde_json::Value::Number(n)) if name == "*" => {
            println!("{n} agents put to sleep")
        }
        (AgentsCommand::Sleep { .. }, serde_json::Value::Bool(true)) => {
            println!("{name} is asleep")
        }
        (AgentsCommand::Sleep { .. }, _) => {
            println!("{name} was not put to sleep (already asleep, failed or quarantined)")
        }
        (AgentsCommand::Wake { .. }, _) => println!("{name} is awake"),
        (AgentsCommand::Release { .. }, serde_json::Value::Bool(true)) => {
            println!("{name} released from quarantine")
        }
        (AgentsCommand::Release { .. }, _) => println!("{name} was not quarantined"),
        (AgentsCommand::Pause { .. }, serde_json::Value::Bool(true)) => {
            println!("{name} is paused")
        }
        (AgentsCommand::Pause { .. }, _) => {
            println!("{name} was not paused (already paused, or quarantined)")
        }
        (AgentsCommand::Resume { .. }, serde_json::Value::Bool(true)) => {
            println!("{name} resumed")
        }
        (AgentsCommand::Resume { .. }, _) => println!("{name} was not paused"),
    }
    Ok(())
}
