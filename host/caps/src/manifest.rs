//! Plugin manifests: the embedded JSON form and the `NAME.toml` sidecar, parsed and validated
//! once at load into a [`Manifest`] (see `docs/manifest.md`).
//!
//! **Architecture invariant:** this module knows nothing about wasmtime and does no I/O; the
//! loader hands it bytes and text. That keeps it unit-testable with tables of cases.

use serde::{Deserialize, Serialize};
use std::fmt;

/// Name of the custom section the SDK embeds the manifest in.
pub const SECTION: &str = "colony-manifest";

/// The only manifest schema version this host understands.
pub const SCHEMA: u32 = 1;

/// Which world a plugin targets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    /// A long-lived actor exporting `colony:plugin/handler`.
    Agent,
    /// A stateless tool exporting `colony:plugin/tool-handler`.
    Tool,
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Kind::Agent => "agent",
            Kind::Tool => "tool",
        })
    }
}

/// Limits a plugin asks for; each is optional and may only lower the operator's default.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RequestedLimits {
    /// Fuel per event (agent) or per call (tool).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fuel: Option<u64>,
    /// CPU time the guest may consume per event or call, in milliseconds (`deadline_ms`, the
    /// name before it measured CPU time, is accepted too).
    #[serde(
        default,
        alias = "deadline_ms",
        skip_serializing_if = "Option::is_none"
    )]
    pub cpu_ms: Option<u64>,
    /// Linear memory in bytes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory_bytes: Option<u64>,
    /// Guest stdout/stderr bytes per event or call.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output_bytes: Option<u64>,
}

/// A validated manifest: who the plugin is and what it requests.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Manifest {
    /// Unique name within a host.
    pub name: String,
    /// Semver version string.
    pub version: String,
    /// Agent or tool.
    pub kind: Kind,
    /// One paragraph for operators.
    pub description: String,
    /// Requested capability strings (granted by the operator, not by this list).
    pub capabilities: Vec<String>,
    /// Requested limits.
    pub limits: RequestedLimits,
}

/// The embedded JSON form, exactly as the SDK writes it.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Embedded {
    schema: u32,
    name: String,
    version: String,
    kind: Kind,
    #[serde(default)]
    description: String,
    #[serde(default)]
    capabilities: Vec<String>,
    #[serde(default)]
    limits: RequestedLimits,
}

/// The sidecar form: every field optional, a present one replaces the embedded value.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Sidecar {
    name: Option<String>,
    version: Option<String>,
    kind: Option<Kind>,
    description: Option<String>,
    capabilities: Option<Vec<String>>,
    limits: Option<RequestedLimits>,
}

/// Why a manifest was refused. Messages are fragments that the loader prefixes with the file.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ManifestError {
    /// The embedded section is not valid JSON of the expected shape.
    #[error("embedded manifest is malformed: {0}")]
    Embedded(String),
    /// The sidecar is not valid TOML of the expected shape.
    #[error("sidecar manifest is malformed: {0}")]
    Sidecar(String),
    /// A schema this host does not know.
    #[error("manifest schema {0} is not supported (this host reads schema {SCHEMA})")]
    Schema(u32),
    /// A field's value breaks its rule.
    #[error("manifest field `{field}` is invalid: {reason}")]
    Field {
        /// The field.
        field: &'static str,
        /// What is wrong with it.
        reason: String,
    },
}

impl Manifest {
    /// The manifest of a component that carries none: named after its file, requesting nothing.
    pub fn fallback(stem: &str, kind: Kind) -> Manifest {
        let name: String = stem
            .chars()
            .map(|c| match c {
                'A'..='Z' => c.to_ascii_lowercase(),
                'a'..='z' | '0'..='9' | '-' => c,
                _ => '-',
            })
            .take(64)
            .collect();
        Manifest {
            name,
            version: "0.0.0".into(),
            kind,
            description: String::new(),
            capabilities: Vec::new(),
            limits: RequestedLimits::default(),
        }
    }

    /// Parses and validates the embedded JSON manifest.
    pub fn from_embedded(bytes: &[u8]) -> Result<Manifest, ManifestError> {
        let raw: Embedded =
            serde_json::from_slice(bytes).map_err(|e| ManifestError::Embedded(e.to_string()))?;
        if raw.schema != SCHEMA {
            return Err(ManifestError::Schema(raw.schema));
        }
        let m = Manifest {
            name: raw.name,
            version: raw.version,
            kind: raw.kind,
            description: raw.description,
            capabilities: raw.capabilities,
            limits: raw.limits,
        };
        m.validate()?;
        Ok(m)
    }

    /// Parses a sidecar's TOML text.
    pub fn parse_sidecar(text: &str) -> Result<Sidecar, ManifestError> {
        toml::from_str(text).map_err(|e| ManifestError::Sidecar(e.message().to_string()))
    }

    /// Applies a sidecar on top of this manifest and validates the result.
    pub fn with_sidecar(mut self, sidecar: Sidecar) -> Result<Manifest, ManifestError> {
        if let Some(v) = sidecar.name {
            self.name = v;
        }
        if let Some(v) = sidecar.version {
            self.version = v;
        }
        if let Some(v) = sidecar.kind {
            self.kind = v;
        }
        if let Some(v) = sidecar.description {
            self.description = v;
        }
        if let Some(v) = sidecar.capabilities {
            self.capabilities = v;
        }
        if let Some(v) = sidecar.limits {
            self.limits = v;
        }
        self.validate()?;
        Ok(self)
    }

    /// Checks every field's rule (see `docs/manifest.md`).
    pub fn validate(&self) -> Result<(), ManifestError> {
        validate_name(&self.name)?;
        if !is_semver(&self.version) {
            return Err(field(
                "version",
                format!("{:?} is not a semver version", self.version),
            ));
        }
        if self.description.chars().count() > 1024 {
            return Err(field("description", "longer than 1024 characters".into()));
        }
        for cap in &self.capabilities {
            if cap.is_empty() || cap.len() > 256 || cap.chars().any(char::is_whitespace) {
                return Err(field(
                    "capabilities",
                    format!("{cap:?} is not a capability string"),
                ));
            }
        }
        let l = &self.limits;
        for (name, v) in [
            ("limits.fuel", l.fuel),
            ("limits.cpu_ms", l.cpu_ms),
            ("limits.memory_bytes", l.memory_bytes),
            ("limits.output_bytes", l.output_bytes),
        ] {
            if v == Some(0) {
                return Err(field(name, "must be greater than zero".into()));
            }
        }
        Ok(())
    }
}

fn field(field: &'static str, reason: String) -> ManifestError {
    ManifestError::Field { field, reason }
}

/// A plugin name: 1–64 chars of `a-z`, `0-9`, `-`, starting with a letter.
pub fn validate_name(name: &str) -> Result<(), ManifestError> {
    check_name(name).map_err(|reason| field("name", reason))
}

/// The one rule for plugin and tool names, wherever a name enters (manifests, sidecars,
/// `colony.toml`, `colony grants …`, the admin protocol): 1–64 chars of `a-z`, `0-9`, `-`,
/// starting with a letter. Names are identity for grants, state and the audit, so nothing
/// that reads alike (case, invisible characters) or reads as a path (`.`, `/`) is a name.
pub fn check_name(name: &str) -> Result<(), String> {
    let ok = (1..=64).contains(&name.len())
        && name.starts_with(|c: char| c.is_ascii_lowercase())
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
    if ok {
        Ok(())
    } else {
        Err(format!(
            "{name:?} must be 1-64 chars of a-z, 0-9 and '-', starting with a letter"
        ))
    }
}

/// `MAJOR.MINOR.PATCH` with an optional `-pre` / `+build` suffix.
fn is_semver(v: &str) -> bool {
    let core = v.split(['-', '+']).next().unwrap_or("");
    let parts: Vec<&str> = core.split('.').collect();
    parts.len() == 3
        && parts
            .iter()
            .all(|p| !p.is_empty() && p.len() <= 10 && p.bytes().all(|b| b.is_ascii_digit()))
        && v.len() <= 64
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"{"schema":1,"name":"hello-agent","version":"0.1.0","kind":"agent",
        "description":"hi","capabilities":["messaging.publish:demo.>"],"limits":{"fuel":1000}}"#;

    #[test]
    fn embedded_good_manifest_parses() {
        let m = Manifest::from_embedded(GOOD.as_bytes()).unwrap();
        assert_eq!(m.name, "hello-agent");
        assert_eq!(m.kind, Kind::Agent);
        assert_eq!(m.limits.fuel, Some(1000));
        assert_eq!(m.capabilities, vec!["messaging.publish:demo.>"]);
    }

    #[test]
    fn embedded_bad_manifests_are_refused_with_the_reason() {
        let cases: &[(&str, &str)] = &[
            ("not json", "malformed"),
            (
                r#"{"schema":2,"name":"a","version":"0.1.0","kind":"agent"}"#,
                "schema 2",
            ),
            (
                r#"{"schema":1,"name":"Bad_Name","version":"0.1.0","kind":"agent"}"#,
                "`name`",
            ),
            (
                r#"{"schema":1,"name":"a","version":"1.0","kind":"agent"}"#,
                "`version`",
            ),
            (
                r#"{"schema":1,"name":"a","version":"1.0.0","kind":"robot"}"#,
                "malformed",
            ),
            (
                r#"{"schema":1,"name":"a","version":"1.0.0","kind":"tool","extra":1}"#,
                "unknown field",
            ),
            (
                r#"{"schema":1,"name":"a","version":"1.0.0","kind":"tool","limits":{"fuel":0}}"#,
                "limits.fuel",
            ),
            (
                r#"{"schema":1,"name":"a","version":"1.0.0","kind":"tool","capabilities":["a b"]}"#,
                "capabilities",
            ),
            (
                r#"{"schema":1,"name":"","version":"1.0.0","kind":"tool"}"#,
                "`name`",
            ),
        ];
        for (input, want) in cases {
            let err = Manifest::from_embedded(input.as_bytes())
                .unwrap_err()
                .to_string();
            assert!(err.contains(want), "{input}: got {err:?}, want {want:?}");
        }
    }

    #[test]
    fn sidecar_overrides_only_present_fields() {
        let m = Manifest::from_embedded(GOOD.as_bytes()).unwrap();
        let side =
            Manifest::parse_sidecar("description = \"from sidecar\"\n[limits]\ndeadline_ms = 20\n")
                .unwrap();
        let m = m.with_sidecar(side).unwrap();
        assert_eq!(m.name, "hello-agent");
        assert_eq!(m.description, "from sidecar");
        assert_eq!(m.limits.cpu_ms, Some(20));
        assert_eq!(
            m.limits.fuel, None,
            "a [limits] table replaces the embedded limits"
        );
    }

    #[test]
    fn sidecar_errors_are_reported() {
        assert!(matches!(
            Manifest::parse_sidecar("nme = \"x\""),
            Err(ManifestError::Sidecar(_))
        ));
        let m = Manifest::from_embedded(GOOD.as_bytes()).unwrap();
        let side = Manifest::parse_sidecar("name = \"UPPER\"").unwrap();
        assert!(m.with_sidecar(side).is_err());
    }

    #[test]
    fn fallback_names_follow_the_name_rule() {
        for (stem, want) in [("good_agent", "good-agent"), ("Loop.Agent", "loop-agent")] {
            let m = Manifest::fallback(stem, Kind::Agent);
            assert_eq!(m.name, want);
            assert!(m.validate().is_ok());
        }
    }

    #[test]
    fn semver_table() {
        for (v, ok) in [
            ("0.1.0", true),
            ("1.2.3-beta.1", true),
            ("1.2.3+build", true),
            ("1.2", false),
            ("a.b.c", false),
            ("", false),
            ("1..3", false),
        ] {
            assert_eq!(is_semver(v), ok, "{v}");
        }
    }
}
