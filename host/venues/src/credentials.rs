//! Venue API credentials, read from environment variables or a TOML file, held so that they can
//! never be printed: a [`Secret`]'s `Debug` and `Display` are `***`, and no error message quotes a
//! value (TOML errors report only a line number, since the offending line may hold a secret).
//!
//! | source | OKX | Alpaca |
//! |---|---|---|
//! | environment | `COLONY_OKX_API_KEY`, `COLONY_OKX_SECRET`, `COLONY_OKX_PASSPHRASE` | `COLONY_ALPACA_KEY_ID`, `COLONY_ALPACA_SECRET_KEY` |
//! | TOML file | `[okx] api_key, secret, passphrase` | `[alpaca] key_id, secret_key` |
//!
//! A venue is configured when all of its values are present; some but not all of them is an error
//! naming the missing ones, since a half-configured venue is a typo, not a choice. On Unix a
//! credentials file readable by group or others is refused, as `ssh` refuses such a key.

use std::fmt;
use std::path::Path;

use serde::Deserialize;

/// A secret string. It has no `Serialize`, and `Debug`/`Display` print `***`, so it cannot reach a
/// log line or the audit store by accident; [`Secret::expose`] is the one way to read it.
#[derive(Clone, PartialEq, Eq, Deserialize)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    /// Wraps a secret value.
    pub fn new(value: impl Into<String>) -> Self {
        Secret(value.into())
    }

    /// The secret itself, for signing or a request header. Never format the result.
    pub(crate) fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

/// OKX v5 API key: the key is an identifier, the secret signs, the passphrase is sent as a header.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OkxCredentials {
    /// The API key (an identifier, not secret).
    pub api_key: String,
    /// The secret key that signs requests.
    pub secret: Secret,
    /// The passphrase chosen when the key was made.
    pub passphrase: Secret,
}

/// Alpaca API key pair, both sent as headers on every request.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AlpacaCredentials {
    /// The key id (`APCA-API-KEY-ID`).
    pub key_id: String,
    /// The secret key (`APCA-API-SECRET-KEY`).
    pub secret_key: Secret,
}

/// Credentials for every venue that has them.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VenueCredentials {
    /// OKX's, if set.
    pub okx: Option<OkxCredentials>,
    /// Alpaca's, if set.
    pub alpaca: Option<AlpacaCredentials>,
}

/// Why credentials could not be read.
#[derive(Debug, thiserror::Error)]
pub enum CredentialsError {
    /// Some of a venue's variables are set, not all.
    #[error("{venue} credentials are incomplete: {} not set", missing.join(", "))]
    Incomplete {
        /// The venue.
        venue: &'static str,
        /// The variables not set.
        missing: Vec<&'static str>,
    },
    /// The file could not be read.
    #[error("credentials file {path}: {source}")]
    Read {
        /// The file.
        path: String,
        /// Why.
        source: std::io::Error,
    },
    /// The file is readable by others than its owner.
    #[error("credentials file {path} is readable by group or others (mode {mode:o}); chmod 600 it")]
    TooOpen {
        /// The file.
        path: String,
        /// Its mode.
        mode: u32,
    },
    /// The file is not valid credentials TOML.
    // The toml error text is withheld on purpose: it quotes the offending line.
    #[error("credentials file {path}: not valid credentials TOML at line {line}")]
    Parse {
        /// The file.
        path: String,
        /// The line of the error.
        line: usize,
    },
}

/// Environment variable of the OKX API key.
pub(crate) const OKX_API_KEY_VAR: &str = "COLONY_OKX_API_KEY";
/// Environment variable of the OKX secret key.
pub(crate) const OKX_SECRET_VAR: &str = "COLONY_OKX_SECRET";
/// Environment variable of the OKX passphrase.
pub(crate) const OKX_PASSPHRASE_VAR: &str = "COLONY_OKX_PASSPHRASE";
/// Environment variable of the Alpaca key id.
pub(crate) const ALPACA_KEY_ID_VAR: &str = "COLONY_ALPACA_KEY_ID";
/// Environment variable of the Alpaca secret key.
pub(crate) const ALPACA_SECRET_KEY_VAR: &str = "COLONY_ALPACA_SECRET_KEY";

impl VenueCredentials {
    /// Credentials from the process environment (see the module doc for the names).
    pub fn from_env() -> Result<Self, CredentialsError> {
        Self::from_lookup(|name| std::env::var(name).ok())
    }

    /// Credentials from `lookup(name)`, an environment stand-in; empty values count as unset.
    pub(crate) fn from_lookup(
        lookup: impl Fn(&str) -> Option<String>,
    ) -> Result<Self, CredentialsError> {
        let get = |name: &str| lookup(name).filter(|v| !v.is_empty());
        let okx = all_or_none(
            "okx",
            [OKX_API_KEY_VAR, OKX_SECRET_VAR, OKX_PASSPHRASE_VAR],
            get,
        )?
        .map(|[api_key, secret, passphrase]| OkxCredentials {
            api_key,
            secret: Secret(secret),
            passphrase: Secret(passphrase),
        });
        let alpaca = all_or_none("alpaca", [ALPACA_KEY_ID_VAR, ALPACA_SECRET_KEY_VAR], get)?.map(
            |[key_id, secret_key]| AlpacaCredentials {
                key_id,
                secret_key: Secret(secret_key),
            },
        );
        Ok(VenueCredentials { okx, alpaca })
    }

    /// Credentials from a TOML file, refusing (on Unix) one that group or others can read.
    pub fn from_file(path: &Path) -> Result<Self, CredentialsError> {
        let shown = path.display().to_string();
        let read_error = |source| CredentialsError::Read {
            path: shown.clone(),
            source,
        };
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(path)
                .map_err(read_error)?
                .permissions()
                .mode();
            if mode & 0o077 != 0 {
                return Err(CredentialsError::TooOpen {
                    path: shown,
                    mode: mode & 0o777,
                });
            }
        }
        let text = colony_files::read_regular_text(path, colony_files::MAX_TEXT_BYTES).map_err(
            |e| match e {
                colony_files::ReadError::Io(e) => read_error(e),
                other => read_error(std::io::Error::other(other.to_string())),
            },
        )?;
        Self::from_toml_str(&text).map_err(|line| CredentialsError::Parse { path: shown, line })
    }

    /// Parses credentials TOML; the error is the 1-based line of the problem (0 if unknown).
    pub(crate) fn from_toml_str(text: &str) -> Result<Self, usize> {
        toml::from_str(text).map_err(|e: toml::de::Error| {
            e.span().map_or(0, |span| {
                let before = &text.as_bytes()[..span.start.min(text.len())];
                before.iter().filter(|&&b| b == b'\n').count() + 1
            })
        })
    }
}

/// All of `names` looked up, or `None` if none is set, or an error naming the missing ones.
fn all_or_none<const N: usize>(
    venue: &'static str,
    names: [&'static str; N],
    get: impl Fn(&str) -> Option<String>,
) -> Result<Option<[String; N]>, CredentialsError> {
    let values = names.map(&get);
    let missing: Vec<&'static str> = names
        .iter()
        .zip(&values)
        .filter(|(_, v)| v.is_none())
        .map(|(n, _)| *n)
        .collect();
    if missing.len() == N {
        return Ok(None);
    }
    if !missing.is_empty() {
        return Err(CredentialsError::Incomplete { venue, missing });
    }
    Ok(Some(values.map(Option::unwrap_or_default)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn lookup(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let map: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move |name| map.get(name).cloned()
    }

    #[test]
    fn secret_debug_and_display_are_redacted() {
        let secret = Secret::new("hunter2-hunter2");
        assert_eq!(format!("{secret}"), "***");
        assert_eq!(format!("{secret:?}"), "***");
        assert_eq!(format!("{secret:#?}"), "***");
        assert_eq!(secret.expose(), "hunter2-hunter2");
    }

    #[test]
    fn credentials_debug_never_shows_secrets() {
        let creds = VenueCredentials::from_lookup(lookup(&[
            (OKX_API_KEY_VAR, "okx-key"),
            (OKX_SECRET_VAR, "okx-secret-value"),
            (OKX_PASSPHRASE_VAR, "okx-passphrase-value"),
            (ALPACA_KEY_ID_VAR, "alpaca-id"),
            (ALPACA_SECRET_KEY_VAR, "alpaca-secret-value"),
        ]))
        .unwrap();
        let debug = format!("{creds:?} {creds:#?}");
        for secret in [
            "okx-secret-value",
            "okx-passphrase-value",
            "alpaca-secret-value",
        ] {
            assert!(!debug.contains(secret), "{secret} leaked in {debug}");
        }
        assert!(debug.contains("okx-key") && debug.contains("alpaca-id"));
        let okx = creds.okx.unwrap();
        assert_eq!(okx.secret.expose(), "okx-secret-value");
        assert_eq!(okx.passphrase.expose(), "okx-passphrase-value");
        assert_eq!(
            creds.alpaca.unwrap().secret_key.expose(),
            "alpaca-secret-value"
        );
    }

    #[test]
    fn unset_venues_are_none_and_partial_ones_are_errors() {
        assert_eq!(
            VenueCredentials::from_lookup(lookup(&[])).unwrap(),
            VenueCredentials::default()
        );
        let only_alpaca = VenueCredentials::from_lookup(lookup(&[
            (ALPACA_KEY_ID_VAR, "id"),
            (ALPACA_SECRET_KEY_VAR, "s"),
            (OKX_SECRET_VAR, ""),
        ]))
        .unwrap();
        assert!(only_alpaca.okx.is_none() && only_alpaca.alpaca.is_some());

        let err = VenueCredentials::from_lookup(lookup(&[(OKX_SECRET_VAR, "the-secret")]))
            .unwrap_err()
            .to_string();
        assert_eq!(
            err,
            "okx credentials are incomplete: COLONY_OKX_API_KEY, COLONY_OKX_PASSPHRASE not set"
        );
    }

    #[test]
    fn toml_file_is_read_and_errors_do_not_quote_it() {
        let text = "[okx]\napi_key = \"k\"\nsecret = \"s\"\npassphrase = \"p\"\n\n[alpaca]\nkey_id = \"i\"\nsecret_key = \"a\"\n";
        let creds = VenueCredentials::from_toml_str(text).unwrap();
        assert_eq!(creds.okx.unwrap().api_key, "k");
        assert_eq!(creds.alpaca.unwrap().secret_key.expose(), "a");

        // A misspelt key on the line holding the secret: report the line, not the text.
        let typo = "[alpaca]\nkey_id = \"i\"\nsecret_kye = \"leaky-secret\"\n";
        assert_eq!(VenueCredentials::from_toml_str(typo), Err(3));
        let err = CredentialsError::Parse {
            path: "c.toml".into(),
            line: 3,
        }
        .to_string();
        assert!(!err.contains("leaky-secret"));
    }

    #[cfg(unix)]
    #[test]
    fn credentials_file_must_be_private() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("credentials.toml");
        std::fs::write(&path, "[alpaca]\nkey_id = \"i\"\nsecret_key = \"a\"\n").unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        assert!(matches!(
            VenueCredentials::from_file(&path),
            Err(CredentialsError::TooOpen { mode: 0o644, .. })
        ));
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        let creds = VenueCredentials::from_file(&path).unwrap();
        assert_eq!(creds.alpaca.unwrap().key_id, "i");
    }
}
