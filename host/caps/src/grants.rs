//! Grants: what the operator allowed each plugin, pinned to the digest of the build they
//! approved. The current state is a fold over the grant history (grant, revoke, approve), so
//! the audit chain that keeps the history is also the only place the state lives.
//!
//! | rule | why |
//! |---|---|
//! | deny by default: no entry, no capability (beyond `log` and `state`) | a plugin dropped into the folder must not act before an operator decides |
//! | grants apply only to the approved digest | a changed `.wasm` is a different program; it runs with nothing until `colony grants approve NAME` |
//! | a grant to a plugin with no approved build approves the build the operator is looking at | granting is a decision about that build |
//! | revoking takes effect on the next call; revoking `fs.*`/`env:*` ends the instance | open files and a copied environment would otherwise outlive the revocation |
//!
//! **Architecture invariant:** this module does no I/O and knows nothing about wasmtime; the
//! host records changes in the audit store and feeds history back in at start.

use std::collections::{BTreeMap, BTreeSet};

use serde::Serialize;

use crate::caps::Capability;

/// One change to the grants, as recorded in the audit history.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GrantChange {
    /// Grant a capability; `digest` approves that build too when none is approved yet.
    Grant {
        /// Plugin name.
        plugin: String,
        /// The capability.
        capability: Capability,
        /// The build the operator granted to, if known.
        digest: Option<String>,
    },
    /// Revoke a capability.
    Revoke {
        /// Plugin name.
        plugin: String,
        /// The capability.
        capability: Capability,
    },
    /// Approve a build: its grants apply to it from now on.
    Approve {
        /// Plugin name.
        plugin: String,
        /// blake3 digest (hex) of the approved build.
        digest: String,
    },
}

impl GrantChange {
    /// The plugin the change is about.
    pub fn plugin(&self) -> &str {
        match self {
            GrantChange::Grant { plugin, .. }
            | GrantChange::Revoke { plugin, .. }
            | GrantChange::Approve { plugin, .. } => plugin,
        }
    }
}

/// What one plugin has been granted.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct PluginGrants {
    /// The build the grants apply to.
    pub approved_digest: Option<String>,
    /// Granted capabilities (canonical strings, sorted).
    pub capabilities: BTreeSet<String>,
}

/// The grants a loaded build actually gets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Effective {
    /// The build is the approved one: these capabilities.
    Granted(Vec<Capability>),
    /// The plugin has grants, but for another build; this one gets none until approved.
    Suspended {
        /// The approved build.
        approved: Option<String>,
        /// How many capabilities are waiting.
        waiting: usize,
    },
    /// Nothing was ever granted.
    Nothing,
}

impl Effective {
    /// The capabilities in force (empty unless granted).
    pub fn capabilities(&self) -> &[Capability] {
        match self {
            Effective::Granted(c) => c,
            _ => &[],
        }
    }
}

/// Every plugin's grants.
#[derive(Debug, Clone, Default, Serialize)]
pub struct GrantBook {
    by_plugin: BTreeMap<String, PluginGrants>,
}

impl GrantBook {
    /// Applies one change; returns whether anything changed.
    pub fn apply(&mut self, change: &GrantChange) -> bool {
        let entry = self
            .by_plugin
            .entry(change.plugin().to_string())
            .or_default();
        match change {
            GrantChange::Grant {
                capability, digest, ..
            } => {
                let mut changed = entry.capabilities.insert(capability.to_string());
                if entry.approved_digest.is_none()
                    && let Some(d) = digest
                {
                    entry.approved_digest = Some(d.clone());
                    changed = true;
                }
                changed
            }
            GrantChange::Revoke { capability, .. } => {
                entry.capabilities.remove(&capability.to_string())
            }
            GrantChange::Approve { digest, .. } => {
                let changed = entry.approved_digest.as_deref() != Some(digest);
                entry.approved_digest = Some(digest.clone());
                changed
            }
        }
    }

    /// One plugin's grants.
    pub fn get(&self, plugin: &str) -> Option<&PluginGrants> {
        self.by_plugin.get(plugin)
    }

    /// Every plugin's grants, by name.
    pub fn all(&self) -> &BTreeMap<String, PluginGrants> {
        &self.by_plugin
    }

    /// What the build `digest` of `plugin` gets.
    pub fn effective(&self, plugin: &str, digest: &str) -> Effective {
        let Some(g) = self.by_plugin.get(plugin) else {
            return Effective::Nothing;
        };
        if g.approved_digest.as_deref() == Some(digest) {
            // Stored strings were canonical capabilities when recorded.
            Effective::Granted(
                g.capabilities
                    .iter()
                    .filter_map(|c| c.parse().ok())
                    .collect(),
            )
        } else if g.capabilities.is_empty() {
            Effective::Nothing
        } else {
            Effective::Suspended {
                approved: g.approved_digest.clone(),
                waiting: g.capabilities.len(),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cap(s: &str) -> Capability {
        s.parse().unwrap()
    }

    #[test]
    fn grants_follow_the_approved_digest() {
        let mut book = GrantBook::default();
        assert_eq!(book.effective("p", "d1"), Effective::Nothing);
        assert!(book.apply(&GrantChange::Grant {
            plugin: "p".into(),
            capability: cap("env:HOME"),
            digest: Some("d1".into()),
        }));
        assert_eq!(
            book.effective("p", "d1"),
            Effective::Granted(vec![cap("env:HOME")])
        );
        // A different build gets nothing until approved.
        assert_eq!(
            book.effective("p", "d2"),
            Effective::Suspended {
                approved: Some("d1".into()),
                waiting: 1
            }
        );
        // A later grant does not move the approval.
        book.apply(&GrantChange::Grant {
            plugin: "p".into(),
            capability: cap("fs.read:/data"),
            digest: Some("d2".into()),
        });
        assert_eq!(
            book.get("p").unwrap().approved_digest.as_deref(),
            Some("d1")
        );
        assert!(book.apply(&GrantChange::Approve {
            plugin: "p".into(),
            digest: "d2".into()
        }));
        assert_eq!(book.effective("p", "d2").capabilities().len(), 2);
        assert!(book.apply(&GrantChange::Revoke {
            plugin: "p".into(),
            capability: cap("env:HOME")
        }));
        assert_eq!(
            book.effective("p", "d2"),
            Effective::Granted(vec![cap("fs.read:/data")])
        );
        assert!(!book.apply(&GrantChange::Revoke {
            plugin: "p".into(),
            capability: cap("env:HOME")
        }));
    }
}
