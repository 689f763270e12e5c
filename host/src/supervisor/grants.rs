//! The host's side of grants: rebuilding the [`GrantBook`] from the audit history at start,
//! deciding what a newly loaded build gets (approved grants, configuration, trust on first
//! use), and applying `grant`/`revoke`/`approve` to running plugins.
//!
//! **Architecture invariant:** a grant change is appended to the audit chain and
//! acknowledged (durable) before it takes effect; the book is only ever changed by
//! [`Host::change_grants`].

use std::sync::Arc;

use serde::Serialize;

use crate::audit::{AuditFilter, AuditKind, AuditRecord, AuditStore, Decision as AuditDecision};
use crate::plugin::PluginInfo;
use crate::policy::Policy;
use colony_caps::grants::{Effective, GrantBook, GrantChange, PluginGrants};
use colony_caps::{Capability, GrantSet};

use super::Host;

/// Who made a change, as recorded in the audit.
pub const ACTOR_CONFIG: &str = "config";
/// Changes made by trust-on-first-use (development mode).
pub const ACTOR_TOFU: &str = "trust-on-first-use";
/// Changes made for the plugins shipped in the binary (the demo, `HostConfig::trust_shipped`).
pub const ACTOR_SHIPPED: &str = "shipped";

/// One plugin's grants as `colony grants list` shows them.
#[derive(Debug, Clone, Serialize)]
pub struct GrantListing {
    /// Plugin name.
    pub plugin: String,
    /// Granted capabilities and the approved build.
    #[serde(flatten)]
    pub grants: PluginGrants,
    /// The running build's digest, if the plugin is loaded.
    pub running_digest: Option<String>,
    /// `granted`, `suspended` (the running build is not the approved one) or `none`.
    pub state: &'static str,
}

/// Why a grant operation failed.
#[derive(Debug, thiserror::Error)]
pub enum GrantError {
    /// The capability string is malformed.
    #[error(transparent)]
    Capability(#[from] colony_caps::CapError),
    /// The plugin is not loaded, so there is no build to approve.
    #[error("plugin \"{0}\" is not loaded; there is no build to approve")]
    NotLoaded(String),
    /// The audit store refused the record, so nothing changed.
    #[error("grant not recorded, nothing changed: {0}")]
    Audit(#[from] crate::audit::AuditError),
}

/// Rebuilds the grant book from every grant, revoke and approve record, in chain order.
pub async fn load_book(audit: &AuditStore) -> Result<GrantBook, crate::audit::AuditError> {
    let mut entries = Vec::new();
    for kind in [AuditKind::Grant, AuditKind::Revoke, AuditKind::Approve] {
        let filter = AuditFilter {
            kind: Some(kind),
            ..AuditFilter::default()
        };
        entries.extend(audit.query(&filter).await?);
    }
    entries.sort_by_key(|e| e.seq);
    let mut book = GrantBook::default();
    for e in entries {
        let change = match e.kind {
            AuditKind::Grant | AuditKind::Revoke => {
                let Ok(capability) = e.capability.parse::<Capability>() else {
                    tracing::warn!(seq = e.seq, capability = %e.capability, "skipping unreadable grant record");
                    continue;
                };
                if e.kind == AuditKind::Grant {
                    GrantChange::Grant {
                        plugin: e.plugin,
                        capability,
                        digest: (!e.digest.is_empty()).then_some(e.digest),
                    }
                } else {
                    GrantChange::Revoke {
                        plugin: e.plugin,
                        capability,
                    }
                }
            }
            _ => GrantChange::Approve {
                plugin: e.plugin,
                digest: e.digest,
            },
        };
        book.apply(&change);
    }
    Ok(book)
}

impl Host {
    /// Records `changes` in the audit (acknowledged) and applies them to the book and to the
    /// running plugins they concern.
    pub(super) async fn change_grants(
        &self,
        actor: &str,
        changes: Vec<GrantChange>,
    ) -> Result<(), GrantError> {
        let mut book = self.book.lock().await;
        let writer = self.audit.writer();
        let mut recorded = 0;
        let mut failure = None;
        for change in &changes {
            let rec = match change {
                GrantChange::Grant {
                    plugin,
                    capability,
                    digest,
                } => AuditRecord::grant(
                    actor,
                    plugin,
                    digest.as_deref().unwrap_or(""),
                    &capability.to_string(),
                ),
                GrantChange::Revoke { plugin, capability } => {
                    AuditRecord::revoke(actor, plugin, "", &capability.to_string())
                }
                GrantChange::Approve { plugin, digest } => {
                    AuditRecord::approve(actor, plugin, digest)
                }
            };
            if let Err(e) = writer.append(rec).await {
                failure = Some(e);
                break;
            }
            book.apply(change);
            recorded += 1;
        }
        // Whatever was recorded is in force, even if a later change failed: in running
        // plugins, and in every registered build of a tool of that name.
        let reg = self.registry.read().await;
        for change in &changes[..recorded] {
            for tool in self.tools.versions(change.plugin()) {
                let effective = book.effective(&tool.name, &tool.digest);
                tool.policy()
                    .replace(GrantSet::new(effective.capabilities().iter().cloned()));
            }
            if let Some(entry) = reg.by_name.get(change.plugin()) {
                let effective = book.effective(&entry.info.name, &entry.info.digest);
                entry
                    .policy
                    .replace(GrantSet::new(effective.capabilities().iter().cloned()));
                // The agent's own risk limits follow its `orders.place` grants.
                if let Some(o) = &self.orders {
                    o.set_agent_limits(&entry.info.name, super::agent_risk_limits(&entry.policy));
                }
            }
        }
        match failure {
            Some(e) => Err(e.into()),
            None => Ok(()),
        }
    }

    /// Grants `capability` to `plugin`. When no build is approved yet and the plugin is
    /// loaded, the running build is approved with it.
    pub async fn grant(
        &self,
        plugin: &str,
        capability: &str,
        actor: &str,
    ) -> Result<(), GrantError> {
        let capability: Capability = capability.parse()?;
        let digest = self.running_digest(plugin).await;
        self.change_grants(
            actor,
            vec![GrantChange::Grant {
                plugin: plugin.to_string(),
                capability,
                digest,
            }],
        )
        .await
    }

    /// Revokes `capability` from `plugin`; the next use is denied.
    pub async fn revoke(
        &self,
        plugin: &str,
        capability: &str,
        actor: &str,
    ) -> Result<(), GrantError> {
        let capability: Capability = capability.parse()?;
        self.change_grants(
            actor,
            vec![GrantChange::Revoke {
                plugin: plugin.to_string(),
                capability,
            }],
        )
        .await
    }

    /// Approves the running build of `plugin`: its grants apply to it from now on.
    pub async fn approve(&self, plugin: &str, actor: &str) -> Result<String, GrantError> {
        let digest = self
            .running_digest(plugin)
            .await
            .ok_or_else(|| GrantError::NotLoaded(plugin.to_string()))?;
        self.change_grants(
            actor,
            vec![GrantChange::Approve {
                plugin: plugin.to_string(),
                digest: digest.clone(),
            }],
        )
        .await?;
        Ok(digest)
    }

    /// Every plugin with grants or loaded, with what it has.
    pub async fn grants(&self) -> Vec<GrantListing> {
        let book = self.book.lock().await;
        let reg = self.registry.read().await;
        let mut names: Vec<String> = book.all().keys().cloned().collect();
        names.extend(reg.by_name.keys().cloned());
        names.sort();
        names.dedup();
        names
            .into_iter()
            .map(|plugin| {
                let grants = book.get(&plugin).cloned().unwrap_or_default();
                let running_digest = reg.by_name.get(&plugin).map(|e| e.info.digest.clone());
                let state = match &running_digest {
                    Some(d) => match book.effective(&plugin, d) {
                        Effective::Granted(c) if !c.is_empty() => "granted",
                        Effective::Granted(_) | Effective::Nothing => "none",
                        Effective::Suspended { .. } => "suspended",
                    },
                    None if grants.capabilities.is_empty() => "none",
                    None => "not loaded",
                };
                GrantListing {
                    plugin,
                    grants,
                    running_digest,
                    state,
                }
            })
            .collect()
    }

    /// The digest of the running build of `plugin`: the plugins folder's, else the active
    /// registered tool's.
    async fn running_digest(&self, plugin: &str) -> Option<String> {
        let folder = self
            .registry
            .read()
            .await
            .by_name
            .get(plugin)
            .map(|e| e.info.digest.clone());
        folder.or_else(|| self.tools.get(plugin).map(|t| t.digest.clone()))
    }

    /// Decides what a newly loaded build gets, recording what that involves: the build is
    /// seen; configured grants and trust-on-first-use may grant and approve; requested
    /// capabilities left ungranted are audited as denied.
    pub(super) async fn policy_for(&self, info: &PluginInfo) -> Arc<Policy> {
        let writer = self.audit.writer();
        writer.record(AuditRecord::plugin_seen(
            &info.name,
            &info.version,
            &info.digest,
        ));

        let mut changes = Vec::new();
        let mut actor = ACTOR_CONFIG;
        {
            let book = self.book.lock().await;
            let current = book.get(&info.name).cloned().unwrap_or_default();
            if let Some(cfg) = self.config.grants.get(&info.name) {
                let pin = cfg.digest.clone().or_else(|| {
                    current
                        .approved_digest
                        .is_none()
                        .then(|| info.digest.clone())
                });
                if let Some(pin) = pin
                    && current.approved_digest.as_deref() != Some(pin.as_str())
                {
                    changes.push(GrantChange::Approve {
                        plugin: info.name.clone(),
                        digest: pin,
                    });
                }
                for cap in cfg
                    .capabilities
                    .iter()
                    .filter_map(|c| c.parse::<Capability>().ok())
                {
                    if !current.capabilities.contains(&cap.to_string()) {
                        changes.push(GrantChange::Grant {
                            plugin: info.name.clone(),
                            capability: cap,
                            digest: None,
                        });
                    }
                }
            } else if (self.config.trust_on_first_use
                || (self.config.trust_shipped && crate::embedded::is_shipped(&info.digest)))
                && current.approved_digest.as_deref() != Some(info.digest.as_str())
            {
                if self.config.trust_on_first_use {
                    actor = ACTOR_TOFU;
                    tracing::warn!(plugin = %info.name, "trust on first use: granting what the plugin requests");
                } else {
                    actor = ACTOR_SHIPPED;
                    tracing::info!(plugin = %info.name, "shipped build: granting what its manifest requests");
                }
                changes.push(GrantChange::Approve {
                    plugin: info.name.clone(),
                    digest: info.digest.clone(),
                });
                for cap in info
                    .capabilities
                    .iter()
                    .filter_map(|c| c.parse::<Capability>().ok())
                    .filter(|c| !current.capabilities.contains(&c.to_string()))
                {
                    changes.push(GrantChange::Grant {
                        plugin: info.name.clone(),
                        capability: cap,
                        digest: None,
                    });
                }
            }
        }
        if !changes.is_empty()
            && let Err(e) = self.change_grants(actor, changes).await
        {
            tracing::error!(plugin = %info.name, error = %e, "configured grants not applied");
        }

        let effective = self.book.lock().await.effective(&info.name, &info.digest);
        if let Effective::Suspended { waiting, .. } = &effective {
            tracing::warn!(
                plugin = %info.name,
                digest = %info.digest,
                waiting,
                "this build is not the approved one: it runs with no grants until `colony grants approve {}`",
                info.name
            );
        }
        let grants = GrantSet::new(effective.capabilities().iter().cloned());
        let policy = Policy::new(
            Arc::from(info.name.as_str()),
            info.digest.clone(),
            grants,
            Some(writer),
            self.config.audit_sample_allows,
        );
        // What the plugin asked for and does not have is a denial the operator should see.
        let granted = policy.grants();
        for requested in &info.capabilities {
            let Ok(cap) = requested.parse::<Capability>() else {
                policy.record_in_full(
                    requested,
                    AuditDecision::Deny,
                    "requested capability is malformed",
                );
                continue;
            };
            if !granted.capabilities().contains(&cap) && !cap.is_always_granted() {
                policy.record_in_full(requested, AuditDecision::Deny, "requested, not granted");
            }
        }
        Arc::new(policy)
    }
}
