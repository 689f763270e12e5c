//! The tamper-evident audit store: every grant, revocation, approval, plugin seen and
//! capability decision, in one append-only, hash-chained log, through sqlx on SQLite (the
//! embedded default, `audit.db` in the data directory, WAL and `synchronous=FULL`) or
//! PostgreSQL (`--audit-db postgres://…`).
//!
//! - **One chain for everything.** Every kind of record lives in `audit_log` and is linked by
//!   `hash_n = blake3(prev_hash_n || encode(record_n))` ([`chain`]), so editing or deleting
//!   any row — a decision or a grant — breaks the chain at that row.
//! - **Group commit.** A single writer task ([`AuditWriter`]) takes everything queued (up to
//!   [`MAX_BATCH`] records), hashes it in order, writes it and moves the head in one
//!   transaction, commits, and only then acknowledges. [`AuditWriter::append`] returns after
//!   its record is durable; [`AuditWriter::record`] is fire-and-forget for hot paths and is
//!   never acknowledged.
//! - **Truncation.** A hash chain cannot show that its last records were cut off (the
//!   shorter chain is still a valid chain). The head (last seq and hash) is therefore also
//!   kept in the one-row table `audit_head`, updated in every batch transaction, and
//!   [`AuditStore::verify`] compares the end of the chain with it.
//! - **What it cannot show.** Anyone who can write the database and knows this encoding can
//!   rewrite every record after an edit and the head as well; the chain has no secret key.
//!   Copy the head hash that `verify` reports somewhere else (a ticket, a log shipper) to
//!   anchor it: a later rewrite then no longer matches the copy.
//!
//! **Architecture Invariant:** the audit never holds secrets or payloads. [`AuditRecord`] has
//! no payload field; `detail` is a short description, and every text field is capped
//! ([`MAX_FIELD_BYTES`], [`MAX_DETAIL_BYTES`]) because guests control some of them.

#![deny(missing_docs)]

pub mod chain;
mod denials;
mod store;
#[doc(hidden)]
pub mod testing;
mod writer;

use std::path::Path;
use std::sync::Arc;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use serde::Serialize;

pub use denials::{DENY_FIRST_IN_FULL, DENY_WINDOW};
use store::Backend;
pub use writer::{AuditWriter, MAX_BATCH, QUEUE_CAPACITY};

/// Longest `plugin`, `digest`, `capability` or `actor` kept, in bytes (longer text is cut).
pub(crate) const MAX_FIELD_BYTES: usize = 1024;
/// Longest `detail` kept, in bytes (longer text is cut).
pub(crate) const MAX_DETAIL_BYTES: usize = 4096;

/// Why an audit operation failed.
#[derive(Debug, thiserror::Error)]
pub enum AuditError {
    /// The database URL is neither `sqlite://…` nor `postgres://…`. Only the scheme is
    /// shown, since a URL can carry a password.
    #[error(
        "audit store: unsupported database url scheme {0:?} (expected sqlite://PATH or postgres://…)"
    )]
    Url(String),
    /// The database failed.
    #[error("audit store: {0}")]
    Db(#[from] sqlx::Error),
    /// The database could not be migrated.
    #[error("audit store migration: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    /// The batch holding this record was not committed (every record of the batch gets the
    /// same error, and none of them is in the log).
    #[error("audit store: batch not written: {0}")]
    Write(Arc<str>),
    /// The writer task has stopped (the store was closed).
    #[error("audit store: the writer has stopped")]
    Closed,
    /// A stored row cannot be read back as a record.
    #[error("audit store: record {seq} is unreadable: {what}")]
    Corrupt {
        /// The row's seq.
        seq: i64,
        /// What is wrong with it.
        what: String,
    },
    /// The data directory could not be created.
    #[error("audit store: cannot create {path}: {source}")]
    Io {
        /// The directory.
        path: String,
        /// The failure.
        source: std::io::Error,
    },
}

/// What a record is about. Stored as the text of [`AuditKind::as_str`].
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum AuditKind {
    /// A capability was used (allow) or refused (deny).
    Decision,
    /// An operator (or the policy file) granted a capability.
    Grant,
    /// A grant was revoked.
    Revoke,
    /// An operator approved a plugin build (its digest).
    Approve,
    /// A plugin build was loaded; `detail` is its version. Also upserts `plugins_seen`.
    PluginSeen,
    /// Refusals counted instead of recorded one by one (see [`AuditWriter::record_denial`]):
    /// decision `deny`, `detail` starts with their count ([`summary_count`]).
    DenySummary,
    /// A kind this host does not know (written by a newer one); kept verbatim.
    Other(String),
}

impl AuditKind {
    /// The stored text.
    pub fn as_str(&self) -> &str {
        match self {
            AuditKind::Decision => "decision",
            AuditKind::Grant => "grant",
            AuditKind::Revoke => "revoke",
            AuditKind::Approve => "approve",
            AuditKind::PluginSeen => "plugin-seen",
            AuditKind::DenySummary => "deny-summary",
            AuditKind::Other(s) => s,
        }
    }

    /// Reads the stored text (unknown kinds become [`AuditKind::Other`]).
    pub fn parse(s: &str) -> AuditKind {
        match s {
            "decision" => AuditKind::Decision,
            "grant" => AuditKind::Grant,
            "revoke" => AuditKind::Revoke,
            "approve" => AuditKind::Approve,
            "plugin-seen" => AuditKind::PluginSeen,
            "deny-summary" => AuditKind::DenySummary,
            other => AuditKind::Other(other.to_string()),
        }
    }
}

impl std::fmt::Display for AuditKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Serialize for AuditKind {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

/// The outcome of a capability check.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Decision {
    /// The call went ahead.
    Allow,
    /// The call was refused.
    Deny,
}

impl Decision {
    /// The stored text: `allow` or `deny`.
    pub fn as_str(self) -> &'static str {
        match self {
            Decision::Allow => "allow",
            Decision::Deny => "deny",
        }
    }

    /// Reads `allow` or `deny`.
    pub fn parse(s: &str) -> Option<Decision> {
        match s {
            "allow" => Some(Decision::Allow),
            "deny" => Some(Decision::Deny),
            _ => None,
        }
    }
}

impl std::fmt::Display for Decision {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One record to append. Text fields that do not apply are empty.
///
/// There is deliberately no payload field: message bodies, order arguments, tool inputs and
/// outputs, HTTP bodies, environment values and tokens never go into the audit. `detail` is
/// a short human description (a reason code, a version, a limit name) and must not carry
/// secrets or payloads either.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditRecord {
    /// Wall-clock time in nanoseconds since the Unix epoch (the constructors use now).
    pub ts_ns: i64,
    /// What the record is about.
    pub kind: AuditKind,
    /// Plugin name.
    pub plugin: String,
    /// Plugin digest (blake3 hex) the record applies to.
    pub digest: String,
    /// Capability string, in the grammar of grants (`orders.place:BTC-USDT`).
    pub capability: String,
    /// Allow or deny, for [`AuditKind::Decision`].
    pub decision: Option<Decision>,
    /// Who acted: an operator name, `policy`, `host`; empty for a plugin's own calls.
    pub actor: String,
    /// Short description; never secrets or payloads.
    pub detail: String,
}

impl AuditRecord {
    /// An empty record of `kind`, stamped now.
    pub fn new(kind: AuditKind) -> AuditRecord {
        AuditRecord {
            ts_ns: now_ns(),
            kind,
            plugin: String::new(),
            digest: String::new(),
            capability: String::new(),
            decision: None,
            actor: String::new(),
            detail: String::new(),
        }
    }

    /// A plugin's use (allow) or refused use (deny) of a capability.
    pub fn decision(plugin: &str, digest: &str, capability: &str, decision: Decision) -> Self {
        AuditRecord {
            plugin: plugin.to_string(),
            digest: digest.to_string(),
            capability: capability.to_string(),
            decision: Some(decision),
            ..AuditRecord::new(AuditKind::Decision)
        }
    }

    /// `actor` granted `capability` to the plugin build `digest`.
    pub fn grant(actor: &str, plugin: &str, digest: &str, capability: &str) -> Self {
        AuditRecord {
            actor: actor.to_string(),
            plugin: plugin.to_string(),
            digest: digest.to_string(),
            capability: capability.to_string(),
            ..AuditRecord::new(AuditKind::Grant)
        }
    }

    /// `actor` revoked `capability` from the plugin.
    pub fn revoke(actor: &str, plugin: &str, digest: &str, capability: &str) -> Self {
        AuditRecord {
            kind: AuditKind::Revoke,
            ..AuditRecord::grant(actor, plugin, digest, capability)
        }
    }

    /// `actor` approved the plugin build `digest`.
    pub fn approve(actor: &str, plugin: &str, digest: &str) -> Self {
        AuditRecord {
            kind: AuditKind::Approve,
            ..AuditRecord::grant(actor, plugin, digest, "")
        }
    }

    /// The host loaded build `digest` of plugin `name` at `version` (kept in `detail`).
    pub fn plugin_seen(name: &str, version: &str, digest: &str) -> Self {
        AuditRecord {
            plugin: name.to_string(),
            digest: digest.to_string(),
            detail: version.to_string(),
            ..AuditRecord::new(AuditKind::PluginSeen)
        }
    }

    /// A lifecycle transition of agent `plugin` (kind `lifecycle`, actor `supervisor`).
    pub fn lifecycle(plugin: &str, detail: impl Into<String>) -> Self {
        AuditRecord {
            plugin: plugin.to_string(),
            actor: "supervisor".into(),
            detail: detail.into(),
            ..AuditRecord::new(AuditKind::Other("lifecycle".into()))
        }
    }

    /// A circuit breaker's transition; `subject` is the tool's name or `venue:NAME` (kind
    /// `breaker`, actor `host`).
    pub fn breaker(subject: &str, detail: impl Into<String>) -> Self {
        AuditRecord {
            plugin: subject.to_string(),
            actor: "host".into(),
            detail: detail.into(),
            ..AuditRecord::new(AuditKind::Other("breaker".into()))
        }
    }

    /// The same record with `detail` set.
    pub fn with_detail(mut self, detail: impl Into<String>) -> Self {
        self.detail = detail.into();
        self
    }

    /// The same record with `actor` set.
    pub fn with_actor(mut self, actor: impl Into<String>) -> Self {
        self.actor = actor.into();
        self
    }

    /// The same record stamped at `ts_ns`.
    pub fn at(mut self, ts_ns: i64) -> Self {
        self.ts_ns = ts_ns;
        self
    }

    /// Cuts every field to its limit and replaces NUL characters (PostgreSQL text cannot hold
    /// them, and a guest-chosen string must not be able to fail a whole batch).
    fn sanitize(&mut self) {
        clean(&mut self.plugin, MAX_FIELD_BYTES);
        clean(&mut self.digest, MAX_FIELD_BYTES);
        clean(&mut self.capability, MAX_FIELD_BYTES);
        clean(&mut self.actor, MAX_FIELD_BYTES);
        clean(&mut self.detail, MAX_DETAIL_BYTES);
        if let AuditKind::Other(k) = &mut self.kind {
            clean(k, MAX_FIELD_BYTES);
        }
    }
}

fn clean(s: &mut String, max: usize) {
    if s.contains('\0') {
        *s = s.replace('\0', "\u{FFFD}");
    }
    if s.len() > max {
        let mut cut = max;
        while !s.is_char_boundary(cut) {
            cut -= 1;
        }
        s.truncate(cut);
    }
}

/// The number of refusals a `deny-summary` record's `detail` stands for (`None` if the
/// detail does not start with a count).
pub(crate) fn summary_count(detail: &str) -> Option<u64> {
    detail.split(' ').next()?.parse().ok()
}

/// One stored record, as returned by [`AuditStore::query`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AuditEntry {
    /// Position in the chain (1, 2, …).
    pub seq: u64,
    /// Nanoseconds since the Unix epoch.
    pub ts_ns: i64,
    /// What the record is about.
    pub kind: AuditKind,
    /// Plugin name.
    pub plugin: String,
    /// Plugin digest.
    pub digest: String,
    /// Capability.
    pub capability: String,
    /// Allow or deny.
    pub decision: Option<Decision>,
    /// Who acted.
    pub actor: String,
    /// Short description.
    pub detail: String,
    /// The record's chain hash, lowercase hex.
    pub hash: String,
}

impl AuditEntry {
    /// How many refusals this record stands for: 1 for a `decision` `deny`, the count of a
    /// `deny-summary`, 0 for anything else.
    pub fn refusals(&self) -> u64 {
        match (&self.kind, self.decision) {
            (AuditKind::Decision, Some(Decision::Deny)) => 1,
            (AuditKind::DenySummary, _) => summary_count(&self.detail).unwrap_or(0),
            _ => 0,
        }
    }
}

/// How [`AuditFilter::capability`] matches.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CapabilityMatch {
    /// The whole capability string.
    Exact(String),
    /// Capabilities starting with this text (`orders.` matches every orders capability).
    Prefix(String),
    /// A capability name with any argument: `orders.place` matches `orders.place` and
    /// `orders.place:…`.
    Name(String),
}

impl CapabilityMatch {
    /// The CLI's reading of `--capability C`: `C*` or a `C` ending in `.` or `:` is a prefix,
    /// a `C` with an argument (`:`) is exact, and a bare name (`orders.place`, `state`)
    /// matches that name with any argument.
    pub fn parse(c: &str) -> CapabilityMatch {
        if let Some(p) = c.strip_suffix('*') {
            CapabilityMatch::Prefix(p.to_string())
        } else if c.ends_with('.') || c.ends_with(':') {
            CapabilityMatch::Prefix(c.to_string())
        } else if c.contains(':') {
            CapabilityMatch::Exact(c.to_string())
        } else {
            CapabilityMatch::Name(c.to_string())
        }
    }
}

/// Which records [`AuditStore::query`] returns; every field set narrows the result.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AuditFilter {
    /// Exact plugin name.
    pub plugin: Option<String>,
    /// Capability match.
    pub capability: Option<CapabilityMatch>,
    /// Allow or deny (only decision records have one).
    pub decision: Option<Decision>,
    /// Kind of record.
    pub kind: Option<AuditKind>,
    /// Records at or after this time (ns since the epoch).
    pub since_ns: Option<i64>,
    /// Records before this time (ns since the epoch, exclusive).
    pub until_ns: Option<i64>,
    /// At most this many records (newest first); `None` for all.
    pub limit: Option<u64>,
}

/// A plugin build the host has loaded.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PluginSeen {
    /// Blake3 hex digest of the build.
    pub digest: String,
    /// Plugin name.
    pub name: String,
    /// Version from its manifest.
    pub version: String,
    /// First load, ns since the epoch.
    pub first_seen_ns: i64,
    /// Latest load, ns since the epoch.
    pub last_seen_ns: i64,
}

/// The head of the chain: the last record's seq and hash.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ChainHead {
    /// Last seq (0 for an empty log).
    pub seq: u64,
    /// Its hash, lowercase hex (zeros for an empty log).
    pub hash: String,
}

/// The first place where the chain does not hold.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct BrokenLink {
    /// The first seq that is missing, edited or does not link.
    pub seq: u64,
    /// What is wrong, as a lowercase fragment.
    pub reason: String,
}

/// The result of [`AuditStore::verify`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct VerifyReport {
    /// Records read (all of them when intact; up to and including the broken one if not).
    pub records: u64,
    /// The last record verified intact; anchor its hash elsewhere to detect a later rewrite.
    pub verified_head: ChainHead,
    /// The first broken link, if any.
    pub first_broken: Option<BrokenLink>,
}

impl VerifyReport {
    /// True when no link is broken.
    pub fn is_intact(&self) -> bool {
        self.first_broken.is_none()
    }
}

/// The audit database and its writer. Cheap to clone.
#[derive(Clone)]
pub struct AuditStore {
    backend: Backend,
    writer: AuditWriter,
}

impl AuditStore {
    /// Opens (creating and migrating) the store at `url`: `sqlite://PATH` (the file and its
    /// directory are created if missing; WAL, `synchronous=FULL`) or `postgres://…` (the
    /// database must exist). Starts the writer task, so it must run inside a tokio runtime.
    pub async fn open(url: &str) -> Result<AuditStore, AuditError> {
        let backend = Backend::connect(url).await?;
        let writer = AuditWriter::start(backend.clone());
        Ok(AuditStore { backend, writer })
    }

    /// Opens the SQLite store at `path` (no URL parsing, so any file name works).
    pub async fn open_sqlite(path: &Path) -> Result<AuditStore, AuditError> {
        let backend = Backend::connect_sqlite_path(path).await?;
        let writer = AuditWriter::start(backend.clone());
        Ok(AuditStore { backend, writer })
    }

    /// The embedded default: `audit.db` in the data directory.
    pub fn default_path(data_dir: &Path) -> std::path::PathBuf {
        data_dir.join("audit.db")
    }

    /// A handle for appending records (cheap to clone; one writer task behind all of them).
    pub fn writer(&self) -> AuditWriter {
        self.writer.clone()
    }

    /// Records matching `filter`, newest first.
    pub async fn query(&self, filter: &AuditFilter) -> Result<Vec<AuditEntry>, AuditError> {
        self.backend.query(filter).await
    }

    /// Every plugin build seen, most recently seen first.
    pub async fn plugins_seen(&self) -> Result<Vec<PluginSeen>, AuditError> {
        self.backend.plugins_seen().await
    }

    /// The head as recorded in `audit_head` (what the writer last committed).
    pub async fn head(&self) -> Result<ChainHead, AuditError> {
        let (seq, hash) = self.backend.recorded_head().await?;
        Ok(ChainHead {
            seq,
            hash: chain::to_hex(&hash),
        })
    }

    /// Walks the whole chain in seq order, a page at a time, and reports the first broken
    /// link: a row whose hash does not match its content (edited), a missing seq (deleted),
    /// a row whose `prev_hash` is not the previous row's hash (deleted or reordered), and an
    /// end of chain that disagrees with `audit_head` (tail deleted, or rows added behind the
    /// writer's back). Safe to run while the writer appends.
    pub async fn verify(&self) -> Result<VerifyReport, AuditError> {
        self.backend.verify().await
    }

    /// Waits until every record queued so far is committed, then closes the connections.
    /// Appends through writers still held elsewhere fail afterwards.
    pub async fn close(self) -> Result<(), AuditError> {
        let flushed = self.writer.flush().await;
        self.backend.close().await;
        flushed
    }
}

/// Nanoseconds since the Unix epoch, now (0 if the clock is before 1970).
pub fn now_ns() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_nanos()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

/// Appends `n` decision records through the group-commit writer as fast as the queue takes
/// them and returns acknowledged records per second (for `colony bench`). The records are
/// real: they stay in the store.
pub async fn bench_append(store: &AuditStore, n: u64) -> Result<f64, AuditError> {
    let writer = store.writer();
    let start = Instant::now();
    let mut pending = Vec::with_capacity(usize::try_from(n).unwrap_or(0));
    for i in 0..n {
        let decision = if i % 10 == 0 {
            Decision::Deny
        } else {
            Decision::Allow
        };
        let rec = AuditRecord::decision(
            "bench-agent",
            "0000000000000000000000000000000000000000000000000000000000000000",
            "orders.place:BTC-USDT",
            decision,
        );
        pending.push(writer.submit(rec).await?);
    }
    for ack in pending {
        ack.await.map_err(|_| AuditError::Closed)??;
    }
    let secs = start.elapsed().as_secs_f64();
    Ok(if secs > 0.0 { n as f64 / secs } else { 0.0 })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn capability_filters_parse_by_shape() {
        let cases = [
            ("orders.", CapabilityMatch::Prefix("orders.".into())),
            (
                "orders.place:",
                CapabilityMatch::Prefix("orders.place:".into()),
            ),
            (
                "orders.place:BTC*",
                CapabilityMatch::Prefix("orders.place:BTC".into()),
            ),
            (
                "orders.place:BTC-USDT",
                CapabilityMatch::Exact("orders.place:BTC-USDT".into()),
            ),
            ("orders.place", CapabilityMatch::Name("orders.place".into())),
            (
                "tools.register",
                CapabilityMatch::Name("tools.register".into()),
            ),
        ];
        for (input, want) in cases {
            assert_eq!(CapabilityMatch::parse(input), want, "{input}");
        }
    }

    #[test]
    fn kinds_round_trip_through_their_text() {
        for k in [
            AuditKind::Decision,
            AuditKind::Grant,
            AuditKind::Revoke,
            AuditKind::Approve,
            AuditKind::PluginSeen,
            AuditKind::DenySummary,
            AuditKind::Other("order".into()),
        ] {
            assert_eq!(AuditKind::parse(k.as_str()), k);
        }
    }

    #[test]
    fn sanitize_caps_fields_on_char_boundaries_and_drops_nul() {
        let mut r = AuditRecord::decision("a\0b", "", &"é".repeat(MAX_FIELD_BYTES), Decision::Deny)
            .with_detail("x".repeat(MAX_DETAIL_BYTES + 10));
        r.sanitize();
        assert_eq!(r.plugin, "a\u{FFFD}b");
        assert!(r.capability.len() <= MAX_FIELD_BYTES);
        assert!(r.capability.chars().all(|c| c == 'é'));
        assert_eq!(r.detail.len(), MAX_DETAIL_BYTES);
    }
}
