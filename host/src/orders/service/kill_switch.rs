//! The kill switch: its modes, and the file that keeps it between runs.

use super::*;

/// How the kill switch is set.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum KillMode {
    /// Normal trading.
    Off,
    /// Working orders cancelled; only orders that reduce a position pass.
    Reducing,
    /// A trading halt: no new order passes (`risk.halted`); working orders stay.
    Halt,
    /// Working orders cancelled; no new order passes.
    On,
}

impl KillMode {
    /// Parses `on`, `off` or `reducing`.
    pub fn parse(s: &str) -> Option<KillMode> {
        match s {
            "on" => Some(KillMode::On),
            "off" => Some(KillMode::Off),
            "reducing" => Some(KillMode::Reducing),
            "halt" => Some(KillMode::Halt),
            _ => None,
        }
    }
}

/// Where the kill switches are kept between runs.
fn kill_switch_path(data_dir: &std::path::Path) -> std::path::PathBuf {
    data_dir.join("kill-switch.json")
}

/// Writes the kill switches (atomically: a crash leaves the old file or the new one).
pub fn save_kill_switches(
    data_dir: &std::path::Path,
    switches: &[(Option<String>, KillMode)],
) -> std::io::Result<()> {
    let list: Vec<serde_json::Value> = switches
        .iter()
        .map(|(a, m)| serde_json::json!({ "agent": a, "mode": m }))
        .collect();
    let path = kill_switch_path(data_dir);
    let tmp = path.with_extension("json.tmp");
    std::fs::write(&tmp, serde_json::Value::Array(list).to_string())?;
    std::fs::rename(&tmp, &path)
}

/// Why the kill switches of the last run were not read. The message names the file; a
/// cause already in the message is not also its [`std::error::Error::source`], so a chain
/// printed with `{:#}` does not repeat it.
#[derive(Debug, thiserror::Error)]
pub enum KillSwitchFileError {
    /// The file exists but could not be read.
    #[error("cannot read {}: {error}", path.display())]
    Read {
        path: std::path::PathBuf,
        error: crate::files::ReadError,
    },
    /// The file was read but does not hold a list of kill switches.
    #[error("{}: {reason}", path.display())]
    Invalid {
        path: std::path::PathBuf,
        reason: String,
    },
}

/// Reads the kill switches of the last run; none when the file does not exist. A file that
/// does not parse is an error naming it: trading must not resume because a file was damaged.
pub fn load_kill_switches(
    data_dir: &std::path::Path,
) -> Result<Vec<(Option<String>, KillMode)>, KillSwitchFileError> {
    let path = kill_switch_path(data_dir);
    let text = match crate::files::read_regular_text(&path, crate::files::MAX_TEXT_BYTES) {
        Ok(t) => t,
        Err(e) if e.is_not_found() => return Ok(Vec::new()),
        Err(error) => return Err(KillSwitchFileError::Read { path, error }),
    };
    let bad = |reason: &str| KillSwitchFileError::Invalid {
        path: path.clone(),
        reason: reason.to_string(),
    };
    let list: Vec<serde_json::Value> =
        serde_json::from_str(&text).map_err(|e| bad(&e.to_string()))?;
    list.iter()
        .map(|v| {
            let mode = v["mode"]
                .as_str()
                .and_then(KillMode::parse)
                .ok_or_else(|| bad("mode must be on, off or reducing"))?;
            let agent = match &v["agent"] {
                serde_json::Value::Null => None,
                serde_json::Value::String(s) => Some(s.clone()),
                _ => return Err(bad("agent must be a string or null")),
            };
            Ok((agent, mode))
        })
        .collect()
}
