//! `colony bus pub SUBJECT PAYLOAD` and `colony bus sub PATTERN`: an operator's way onto the
//! running host's bus (for example `colony bus sub '_DEAD.>'` to watch dead letters).

use std::path::PathBuf;

use clap::Subcommand;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};

use super::{CliError, CliResult};

#[derive(Debug, Subcommand)]
pub enum BusCommand {
    /// Publish a text payload on a subject (sender `operator:$USER`).
    Pub {
        /// Concrete subject.
        subject: String,
        /// Payload text.
        payload: String,
    },
    /// Print every message on a subject pattern as a JSON line until interrupted.
    Sub {
        /// Subject pattern (`*` one token, `>` the rest; `_DEAD.>` for dead letters).
        pattern: String,
        /// Stop after this many messages.
        #[arg(long)]
        count: Option<u64>,
    },
}

pub async fn bus(cmd: BusCommand, data_dir: PathBuf) -> CliResult {
    match cmd {
        BusCommand::Pub { subject, payload } => {
            let Some(resp) = colony_host::admin::call(
                &data_dir,
                "publish",
                Some(subject.clone()),
                Some(payload),
            )
            .await?
            else {
                return Err(CliError::no_host(anyhow::anyhow!(
                    "no host is running with data directory {}",
                    data_dir.display()
                )));
            };
            if !resp.ok {
                return Err(CliError::invalid(anyhow::anyhow!(
                    resp.error.unwrap_or_default()
                )));
            }
            println!(
                "published on {subject}: delivered to {}, dropped {}, refused {}",
                resp.result["delivered"], resp.result["dropped"], resp.result["refused"]
            );
            Ok(())
        }
        BusCommand::Sub { pattern, count } => {
            let Ok(stream) =
                tokio::net::UnixStream::connect(colony_host::admin::socket_path(&data_dir)).await
            else {
                return Err(CliError::no_host(anyhow::anyhow!(
                    "no host is running with data directory {}",
                    data_dir.display()
                )));
            };
            let token = std::fs::read_to_string(colony_host::admin::token_path(&data_dir))?;
            let req = colony_host::admin::Request {
                token: token.trim().to_string(),
                op: "subscribe".into(),
                name: Some(pattern),
                args: None,
                actor: None,
            };
            let (read, mut write) = stream.into_split();
            let mut line = serde_json::to_vec(&req)?;
            line.push(b'\n');
            write.write_all(&line).await?;
            let mut lines = BufReader::new(read).lines();
            let first: colony_host::admin::Response = match lines.next_line().await? {
                Some(l) => serde_json::from_str(&l)?,
                None => return Err(anyhow::anyhow!("the host closed the admin connection").into()),
            };
            if !first.ok {
                return Err(CliError::invalid(anyhow::anyhow!(
                    first.error.unwrap_or_default()
                )));
            }
            let mut seen = 0u64;
            while count.is_none_or(|c| seen < c) {
                match lines.next_line().await? {
                    Some(l) => println!("{l}"),
                    None => break,
                }
                seen += 1;
            }
            Ok(())
        }
    }
}
