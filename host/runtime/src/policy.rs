//! [`Policy`]: one loaded plugin's grants in force, checked before any I/O on every
//! capability use, with the decision audited.
//!
//! Host interfaces call [`Policy::check`] with a [`Request`]; a deny becomes
//! `error::denied("needs CAP")` for the guest and is always audited, aggregated: the first
//! refusal of each capability of a build is recorded in full, later ones are counted into
//! one `deny-summary` per capability name and window ([`AuditWriter::record_denial`]), so a
//! guest with no grants cannot fill the disk; allows are audited always for orders, tool
//! calls and registration, HTTP and the filesystem, and 1 in `sample_allows` for the rest. WASI capabilities (`fs.*`, `env:*`) are decided when an
//! instance is created, because WASI resolves paths and reads the environment inside the
//! guest: a granted directory becomes a cap-std preopen, a granted variable is copied into
//! the instance's environment, and a revocation ends the instance (see
//! [`Policy::wasi_generation`]).
//!
//! The grant set is swapped whole behind a lock (`Arc<GrantSet>`), so a revocation takes
//! effect on the very next check, and the check itself allocates nothing.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};

use crate::audit::{AuditRecord, AuditWriter, Decision as AuditDecision};
use colony_caps::{Decision, GrantSet, Request};

/// Why a capability use was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    /// No grant covers it; holds the capability that would (for `error::denied`).
    #[error("needs {0}")]
    Denied(String),
    /// The request itself is malformed (a wildcard in a publish subject, `..` in a path);
    /// no grant could allow it (for `error::invalid-argument`).
    #[error("invalid request: {0}")]
    Invalid(String),
}

/// The grants in force for one loaded build of a plugin, and where decisions go.
pub struct Policy {
    plugin: Arc<str>,
    digest: String,
    grants: RwLock<Arc<GrantSet>>,
    generation: AtomicU64,
    wasi_generation: AtomicU64,
    audit: Option<AuditWriter>,
    sample_allows: u64,
    allow_counter: AtomicU64,
}

impl Policy {
    /// A policy for `plugin` (build `digest`) with `grants`, auditing to `audit`. Sampled
    /// allows are written 1 in `sample_allows` (0: never).
    pub fn new(
        plugin: Arc<str>,
        digest: String,
        grants: GrantSet,
        audit: Option<AuditWriter>,
        sample_allows: u64,
    ) -> Policy {
        Policy {
            plugin,
            digest,
            grants: RwLock::new(Arc::new(grants)),
            generation: AtomicU64::new(0),
            wasi_generation: AtomicU64::new(0),
            audit,
            sample_allows,
            allow_counter: AtomicU64::new(0),
        }
    }

    /// A policy that grants nothing and audits nothing (tools inspected offline, benchmarks).
    pub fn deny_all(plugin: Arc<str>) -> Policy {
        Policy::new(plugin, String::new(), GrantSet::default(), None, 0)
    }

    /// The plugin's name.
    pub fn plugin(&self) -> &Arc<str> {
        &self.plugin
    }

    /// The grant set in force now.
    pub fn grants(&self) -> Arc<GrantSet> {
        match self.grants.read() {
            Ok(g) => g.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    /// Replaces the grant set. When the filesystem or environment grants change, the WASI
    /// generation moves on so running instances are ended before their next event.
    pub fn replace(&self, grants: GrantSet) {
        let mut slot = match self.grants.write() {
            Ok(g) => g,
            Err(poisoned) => poisoned.into_inner(),
        };
        let wasi_changed =
            slot.fs_dirs() != grants.fs_dirs() || !slot.env_names().eq(grants.env_names());
        *slot = Arc::new(grants);
        self.generation.fetch_add(1, Ordering::SeqCst);
        if wasi_changed {
            self.wasi_generation.fetch_add(1, Ordering::SeqCst);
        }
    }

    /// Changes whenever the grants change (a [`CheckCache`] from before is void).
    pub(crate) fn generation(&self) -> u64 {
        self.generation.load(Ordering::SeqCst)
    }

    /// Changes whenever the filesystem or environment grants change: an instance created
    /// under another generation must not run again.
    pub(crate) fn wasi_generation(&self) -> u64 {
        self.wasi_generation.load(Ordering::SeqCst)
    }

    /// Checks one capability use and audits the decision (a refusal of either kind is
    /// audited as a deny).
    pub fn check(&self, req: &Request<'_>) -> Result<(), Refusal> {
        let decision = {
            let guard = match self.grants.read() {
                Ok(g) => g,
                Err(poisoned) => poisoned.into_inner(),
            };
            guard.check(req)
        };
        match decision {
            Decision::Allowed => {
                if self.audit_allow(req) {
                    self.record(&req.to_string(), AuditDecision::Allow, "");
                }
                Ok(())
            }
            Decision::Denied { needs } => {
                self.record(&needs, AuditDecision::Deny, "");
                Err(Refusal::Denied(needs))
            }
            Decision::Invalid { reason } => {
                self.record(&req.to_string(), AuditDecision::Deny, &reason);
                Err(Refusal::Invalid(reason))
            }
        }
    }

    /// Records a decision made outside [`Policy::check`] (instance creation, an HTTP
    /// exchange); a deny is aggregated like those of [`Policy::check`].
    pub fn record(&self, capability: &str, decision: AuditDecision, detail: &str) {
        if let Some(audit) = &self.audit {
            audit.record_denial(self.decision_record(capability, decision, detail));
        }
    }

    /// Records a decision one by one, never aggregated: for what the host decides once per
    /// load (a requested capability that is not granted), which a guest cannot repeat.
    pub fn record_in_full(&self, capability: &str, decision: AuditDecision, detail: &str) {
        if let Some(audit) = &self.audit {
            audit.record(self.decision_record(capability, decision, detail));
        }
    }

    fn decision_record(
        &self,
        capability: &str,
        decision: AuditDecision,
        detail: &str,
    ) -> AuditRecord {
        let rec = AuditRecord::decision(&self.plugin, &self.digest, capability, decision);
        if detail.is_empty() {
            rec
        } else {
            rec.with_detail(detail)
        }
    }

    /// Whether this allow is written: always for the kinds the audit must keep whole,
    /// otherwise 1 in `sample_allows`.
    fn audit_allow(&self, req: &Request<'_>) -> bool {
        if self.audit.is_none() {
            return false;
        }
        always_audited(req)
            || (self.sample_allows != 0
                && self
                    .allow_counter
                    .fetch_add(1, Ordering::Relaxed)
                    .is_multiple_of(self.sample_allows))
    }
}

/// Kinds whose every allow is audited (and which are therefore never served from a cache).
fn always_audited(req: &Request<'_>) -> bool {
    matches!(
        req,
        Request::PlaceOrder { .. }
            | Request::CancelOrder { .. }
            | Request::CallTool { .. }
            | Request::RegisterTool
            | Request::Http { .. }
            | Request::FsRead { .. }
            | Request::FsWrite { .. }
    )
}

/// Slots in a [`CheckCache`].
const CACHE_SLOTS: usize = 4;

/// A per-store memo of recent allowed requests, so the repeated publishes and reads of an
/// agent's hot loop cost a generation load and a short byte comparison instead of a full
/// pattern match. Only sampled kinds are cached (orders, HTTP and the filesystem are always
/// checked and audited in full); a grant change moves the policy's generation and voids it.
/// A miss allocates once, to remember the request; a hit allocates nothing.
#[derive(Debug, Default)]
pub struct CheckCache {
    generation: u64,
    slots: [Option<(u8, Box<str>)>; CACHE_SLOTS],
    next: usize,
    allows: u64,
}

impl CheckCache {
    /// [`Policy::check`], answered from the cache when the same request was allowed under
    /// the same grants.
    pub fn check(&mut self, policy: &Policy, req: &Request<'_>) -> Result<(), Refusal> {
        let Some((kind, key)) = cache_key(req) else {
            return policy.check(req);
        };
        let generation = policy.generation();
        if generation != self.generation {
            self.generation = generation;
            self.slots = Default::default();
        }
        if self
            .slots
            .iter()
            .flatten()
            .any(|(k, s)| *k == kind && &**s == key)
        {
            self.allows += 1;
            if policy.audit.is_some()
                && policy.sample_allows != 0
                && self.allows.is_multiple_of(policy.sample_allows)
            {
                policy.record(&req.to_string(), AuditDecision::Allow, "");
            }
            return Ok(());
        }
        policy.check(req)?;
        self.slots[self.next] = Some((kind, Box::from(key)));
        self.next = (self.next + 1) % CACHE_SLOTS;
        Ok(())
    }
}

fn cache_key<'a>(req: &Request<'a>) -> Option<(u8, &'a str)> {
    if always_audited(req) {
        return None;
    }
    match *req {
        Request::Publish { subject } => Some((0, subject)),
        Request::Subscribe { subject } => Some((1, subject)),
        Request::Request { subject } => Some((2, subject)),
        Request::MarketRead { symbol } => Some((3, symbol)),
        Request::CallTool { name } => Some((4, name)),
        Request::Env { name } => Some((5, name)),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn revocation_applies_to_the_next_check_and_fs_changes_move_the_generation() {
        let grants = GrantSet::new([
            "messaging.publish:a.>".parse().unwrap(),
            "fs.read:/data".parse().unwrap(),
        ]);
        let policy = Policy::new("p".into(), "d".into(), grants, None, 0);
        let publish = Request::Publish { subject: "a.b" };
        assert!(policy.check(&publish).is_ok());
        let g0 = policy.wasi_generation();

        policy.replace(GrantSet::new(["fs.read:/data".parse().unwrap()]));
        assert_eq!(
            policy.check(&publish),
            Err(Refusal::Denied("messaging.publish:a.b".into()))
        );
        assert_eq!(policy.wasi_generation(), g0, "fs grants did not change");

        policy.replace(GrantSet::default());
        assert_eq!(policy.wasi_generation(), g0 + 1);
    }

    #[test]
    fn the_cache_answers_repeats_and_forgets_on_any_grant_change() {
        let policy = Policy::new(
            "p".into(),
            "d".into(),
            GrantSet::new(["messaging.publish:a.>".parse().unwrap()]),
            None,
            0,
        );
        let mut cache = CheckCache::default();
        let publish = Request::Publish { subject: "a.b" };
        for _ in 0..3 {
            assert!(cache.check(&policy, &publish).is_ok());
        }
        assert!(cache.slots.iter().flatten().count() == 1);
        // Denies are never cached, and a revocation voids the cache at once.
        assert!(
            cache
                .check(&policy, &Request::Publish { subject: "b" })
                .is_err()
        );
        policy.replace(GrantSet::default());
        assert_eq!(
            cache.check(&policy, &publish),
            Err(Refusal::Denied("messaging.publish:a.b".into()))
        );
        // Invalid requests are not cached either.
        policy.replace(GrantSet::new(["messaging.publish:>".parse().unwrap()]));
        for _ in 0..2 {
            assert!(matches!(
                cache.check(&policy, &Request::Publish { subject: "a..b" }),
                Err(Refusal::Invalid(_))
            ));
        }
    }
}
