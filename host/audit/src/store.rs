//! The two database backends of the audit store (SQLite, PostgreSQL) behind one enum.
//!
//! Every statement is written once with `$N` placeholders, which both SQLite and PostgreSQL
//! accept; the few that differ (locking the head, upserting `plugins_seen`) come in pairs.
//! The `on_pool!` macro (`colony_db`) expands one body for each pool type, so the two backends cannot
//! drift apart.

use std::path::Path;
use std::str::FromStr;
use std::sync::OnceLock;
use std::time::Duration;

use sqlx::postgres::PgPoolOptions;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};

use super::chain::{self, ChainFields, GENESIS, HASH_LEN};
use super::{
    AuditEntry, AuditError, AuditFilter, AuditKind, AuditRecord, BrokenLink, CapabilityMatch,
    ChainHead, Decision, PluginSeen, VerifyReport,
};

/// Rows read per page by `verify`.
const VERIFY_PAGE: i64 = 10_000;
/// Most rows in one multi-row INSERT; batches are split into power-of-two chunks so that
/// only a handful of distinct statements is ever prepared.
const INSERT_CHUNK: usize = 64;

const COLUMNS: &str =
    "seq, ts_ns, kind, plugin, digest, capability, decision, actor, detail, prev_hash, hash";
const N_COLUMNS: usize = 11;

const SELECT_HEAD: &str = "SELECT seq, hash FROM audit_head WHERE id = 1";
const SELECT_HEAD_FOR_UPDATE: &str = "SELECT seq, hash FROM audit_head WHERE id = 1 FOR UPDATE";
const SELECT_LAST: &str = "SELECT seq, hash FROM audit_log ORDER BY seq DESC LIMIT 1";
const UPSERT_HEAD: &str = "INSERT INTO audit_head (id, seq, hash) VALUES (1, $1, $2) \
     ON CONFLICT (id) DO UPDATE SET seq = excluded.seq, hash = excluded.hash";
const UPSERT_PLUGIN_SQLITE: &str = "INSERT INTO plugins_seen \
     (digest, name, version, first_seen_ns, last_seen_ns) VALUES ($1, $2, $3, $4, $4) \
     ON CONFLICT (digest) DO UPDATE SET name = excluded.name, version = excluded.version, \
     first_seen_ns = min(plugins_seen.first_seen_ns, excluded.first_seen_ns), \
     last_seen_ns = max(plugins_seen.last_seen_ns, excluded.last_seen_ns)";
const UPSERT_PLUGIN_POSTGRES: &str = "INSERT INTO plugins_seen \
     (digest, name, version, first_seen_ns, last_seen_ns) VALUES ($1, $2, $3, $4, $4) \
     ON CONFLICT (digest) DO UPDATE SET name = excluded.name, version = excluded.version, \
     first_seen_ns = LEAST(plugins_seen.first_seen_ns, excluded.first_seen_ns), \
     last_seen_ns = GREATEST(plugins_seen.last_seen_ns, excluded.last_seen_ns)";
const SELECT_PAGE: &str = "SELECT seq, ts_ns, kind, plugin, digest, capability, decision, \
     actor, detail, prev_hash, hash FROM audit_log WHERE seq > $1 ORDER BY seq LIMIT $2";
const SELECT_PLUGINS: &str = "SELECT digest, name, version, first_seen_ns, last_seen_ns \
     FROM plugins_seen ORDER BY last_seen_ns DESC, digest";

/// One `audit_log` row as stored.
type LogRow = (
    i64,
    i64,
    String,
    String,
    String,
    String,
    Option<String>,
    String,
    String,
    Vec<u8>,
    Vec<u8>,
);

use colony_db::{Backend as Pool, on_pool};

/// The audit store's pool, with the audit's queries on it.
#[derive(Clone)]
pub(crate) struct Backend(Pool);

impl Backend {
    /// Connects to `url` and runs that backend's migrations.
    pub(crate) async fn connect(url: &str) -> Result<Backend, AuditError> {
        let scheme = url.split_once(':').map_or(url, |(s, _)| s);
        match scheme {
            "sqlite" => {
                let options = SqliteConnectOptions::from_str(url)?;
                Backend::connect_sqlite(options).await
            }
            "postgres" | "postgresql" => {
                let pool = PgPoolOptions::new()
                    .max_connections(8)
                    .acquire_timeout(Duration::from_secs(10))
                    .connect(url)
                    .await?;
                sqlx::migrate!("../migrations/audit_postgres")
                    .run(&pool)
                    .await?;
                Ok(Backend(Pool::Postgres(pool)))
            }
            other => Err(AuditError::Url(other.to_string())),
        }
    }

    /// Opens the SQLite file at `path` and runs the SQLite migrations.
    pub(crate) async fn connect_sqlite_path(path: &Path) -> Result<Backend, AuditError> {
        let options = SqliteConnectOptions::from_str("sqlite://")?.filename(path);
        Backend::connect_sqlite(options).await
    }

    async fn connect_sqlite(options: SqliteConnectOptions) -> Result<Backend, AuditError> {
        if let Some(dir) = options.get_filename().parent()
            && !dir.as_os_str().is_empty()
        {
            std::fs::create_dir_all(dir).map_err(|source| AuditError::Io {
                path: dir.display().to_string(),
                source,
            })?;
        }
        colony_files::datadir::private_sqlite_file(options.get_filename()).map_err(|source| {
            AuditError::Io {
                path: options.get_filename().display().to_string(),
                source,
            }
        })?;
        let options = options
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Full)
            .busy_timeout(Duration::from_secs(5));
        let pool = SqlitePoolOptions::new()
            .max_connections(4)
            .connect_with(options)
            .await?;
        sqlx::migrate!("../migrations/audit_sqlite")
            .run(&pool)
            .await?;
        Ok(Backend(Pool::Sqlite(pool)))
    }

    pub(crate) async fn close(&self) {
        on_pool!(&self.0, |pool, _Db| { pool.close().await })
    }

    /// Appends `recs` to the chain in one transaction and returns the first seq. The head is
    /// read inside the transaction, so nothing moves unless the commit succeeds.
    pub(crate) async fn write_batch(&self, recs: &[AuditRecord]) -> Result<u64, AuditError> {
        macro_rules! batch {
            ($tx:ident, $db:ty, $select_head:expr, $upsert_plugin:expr) => {{
                let head: Option<(i64, Vec<u8>)> = sqlx::query_as($select_head)
                    .fetch_optional(&mut *$tx)
                    .await?;
                let last: Option<(i64, Vec<u8>)> = sqlx::query_as(SELECT_LAST)
                    .fetch_optional(&mut *$tx)
                    .await?;
                let (head_seq, head_hash) = pick_head(head, last);
                let rows = link(head_seq, head_hash, recs);
                let mut rest = &rows[..];
                while !rest.is_empty() {
                    let k = chunk_len(rest.len());
                    let (chunk, tail) = rest.split_at(k);
                    let mut q = sqlx::query::<$db>(insert_sql(k));
                    for r in chunk {
                        q = q
                            .bind(r.seq)
                            .bind(r.fields.ts_ns)
                            .bind(r.fields.kind)
                            .bind(r.fields.plugin)
                            .bind(r.fields.digest)
                            .bind(r.fields.capability)
                            .bind(r.fields.decision)
                            .bind(r.fields.actor)
                            .bind(r.fields.detail)
                            .bind(&r.prev[..])
                            .bind(&r.hash[..]);
                    }
                    q.execute(&mut *$tx).await?;
                    rest = tail;
                }
                for rec in recs.iter().filter(|r| r.kind == AuditKind::PluginSeen) {
                    sqlx::query::<$db>($upsert_plugin)
                        .bind(rec.digest.as_str())
                        .bind(rec.plugin.as_str())
                        .bind(rec.detail.as_str())
                        .bind(rec.ts_ns)
                        .execute(&mut *$tx)
                        .await?;
                }
                let (last_seq, last_hash) = rows
                    .last()
                    .map_or((head_seq as i64, head_hash), |r| (r.seq, r.hash));
                sqlx::query::<$db>(UPSERT_HEAD)
                    .bind(last_seq)
                    .bind(&last_hash[..])
                    .execute(&mut *$tx)
                    .await?;
                $tx.commit().await?;
                Ok(head_seq + 1)
            }};
        }
        match &self.0 {
            Pool::Sqlite(pool) => {
                // IMMEDIATE takes the write lock up front, so reading the head and writing
                // after it cannot be interleaved with another writer.
                let mut tx = pool.begin_with("BEGIN IMMEDIATE").await?;
                batch!(tx, sqlx::Sqlite, SELECT_HEAD, UPSERT_PLUGIN_SQLITE)
            }
            Pool::Postgres(pool) => {
                let mut tx = pool.begin().await?;
                batch!(
                    tx,
                    sqlx::Postgres,
                    SELECT_HEAD_FOR_UPDATE,
                    UPSERT_PLUGIN_POSTGRES
                )
            }
        }
    }

    /// The head recorded in `audit_head` (genesis if the row is missing).
    pub(crate) async fn recorded_head(&self) -> Result<(u64, Vec<u8>), AuditError> {
        let head = self.recorded_head_row().await?;
        Ok(head.unwrap_or((0, GENESIS.to_vec())))
    }

    async fn recorded_head_row(&self) -> Result<Option<(u64, Vec<u8>)>, AuditError> {
        let row: Option<(i64, Vec<u8>)> = on_pool!(&self.0, |pool, _Db| {
            sqlx::query_as(SELECT_HEAD).fetch_optional(pool).await?
        });
        Ok(row.map(|(s, h)| (u64::try_from(s).unwrap_or(0), h)))
    }

    pub(crate) async fn plugins_seen(&self) -> Result<Vec<PluginSeen>, AuditError> {
        let rows: Vec<(String, String, String, i64, i64)> = on_pool!(&self.0, |pool, _Db| {
            sqlx::query_as(SELECT_PLUGINS).fetch_all(pool).await?
        });
        Ok(rows
            .into_iter()
            .map(
                |(digest, name, version, first_seen_ns, last_seen_ns)| PluginSeen {
                    digest,
                    name,
                    version,
                    first_seen_ns,
                    last_seen_ns,
                },
            )
            .collect())
    }

    pub(crate) async fn query(&self, filter: &AuditFilter) -> Result<Vec<AuditEntry>, AuditError> {
        let sql = filter_sql(filter);
        let rows: Vec<LogRow> = on_pool!(&self.0, |pool, Db| {
            let mut q = sqlx::query_as::<Db, LogRow>(&sql.text);
            for b in &sql.binds {
                q = match b {
                    Bind::Text(s) => q.bind(s.as_str()),
                    Bind::Int(i) => q.bind(*i),
                };
            }
            q.fetch_all(pool).await?
        });
        rows.into_iter().map(entry).collect()
    }

    pub(crate) async fn verify(&self) -> Result<VerifyReport, AuditError> {
        // The head before the walk: every record up to it was committed before we started,
        // so all of them must be found. The head after the walk: no record may lie past it.
        let head_before = self.recorded_head_row().await?;
        let mut walk = Walk::new();
        let mut after = 0i64;
        loop {
            let rows: Vec<LogRow> = on_pool!(&self.0, |pool, _Db| {
                sqlx::query_as(SELECT_PAGE)
                    .bind(after)
                    .bind(VERIFY_PAGE)
                    .fetch_all(pool)
                    .await?
            });
            let Some(last) = rows.last() else { break };
            after = last.0;
            for row in &rows {
                if let Err(broken) = walk.step(row) {
                    return Ok(walk.report(Some(broken)));
                }
                if let Some((seq, hash)) = &head_before
                    && walk.last_seq == *seq
                    && walk.prev[..] != hash[..]
                {
                    let broken = walk.head_mismatch();
                    return Ok(walk.report(Some(broken)));
                }
            }
        }
        let head_after = self.recorded_head_row().await?;
        let broken = end_check(&walk, head_before.as_ref(), head_after.as_ref());
        Ok(walk.report(broken))
    }

    /// Runs raw SQL (one or more statements); for tests that tamper with the log.
    pub(crate) async fn execute_raw(&self, sql: &str) -> Result<u64, AuditError> {
        Ok(on_pool!(&self.0, |pool, _Db| {
            sqlx::raw_sql(sql).execute(pool).await?.rows_affected()
        }))
    }

    pub(crate) fn is_postgres(&self) -> bool {
        matches!(self.0, Pool::Postgres(_))
    }
}

/// Where the next batch starts: the recorded head, unless the log already goes further
/// (rows the head does not know about; continuing after them keeps the writer working and
/// leaves them for `verify` to judge). A log shorter than the head (its tail deleted) is
/// continued from the head, so the gap stays visible instead of being papered over.
fn pick_head(head: Option<(i64, Vec<u8>)>, last: Option<(i64, Vec<u8>)>) -> (u64, [u8; HASH_LEN]) {
    let as_hash = |h: Vec<u8>| <[u8; HASH_LEN]>::try_from(h.as_slice()).unwrap_or(GENESIS);
    let head_seq = head.as_ref().map_or(0, |h| h.0);
    let last_seq = last.as_ref().map_or(0, |l| l.0);
    if last_seq != head_seq {
        tracing::warn!(
            recorded_head = head_seq,
            last_record = last_seq,
            "audit log and its recorded head disagree; run `colony audit verify`"
        );
    }
    match (head, last) {
        (_, Some((seq, hash))) if seq > head_seq => {
            (u64::try_from(seq).unwrap_or(0), as_hash(hash))
        }
        (Some((seq, hash)), _) => (u64::try_from(seq).unwrap_or(0), as_hash(hash)),
        (None, _) => (0, GENESIS),
    }
}

struct Linked<'a> {
    seq: i64,
    fields: ChainFields<'a>,
    prev: [u8; HASH_LEN],
    hash: [u8; HASH_LEN],
}

/// Numbers and hashes `recs` in order after the head `(seq, hash)`.
fn link(mut seq: u64, mut prev: [u8; HASH_LEN], recs: &[AuditRecord]) -> Vec<Linked<'_>> {
    let mut rows = Vec::with_capacity(recs.len());
    for rec in recs {
        seq += 1;
        let fields = ChainFields {
            seq,
            ts_ns: rec.ts_ns,
            kind: rec.kind.as_str(),
            plugin: &rec.plugin,
            digest: &rec.digest,
            capability: &rec.capability,
            decision: rec.decision.map(Decision::as_str),
            actor: &rec.actor,
            detail: &rec.detail,
        };
        let hash = chain::link_hash(&prev, &fields);
        rows.push(Linked {
            seq: seq as i64,
            fields,
            prev,
            hash,
        });
        prev = hash;
    }
    rows
}

/// The largest power of two that is at most `remaining` and [`INSERT_CHUNK`].
fn chunk_len(remaining: usize) -> usize {
    let capped = remaining.min(INSERT_CHUNK);
    1 << (usize::BITS - 1 - capped.leading_zeros())
}

/// `INSERT INTO audit_log … VALUES ($1, …), …` for `rows` rows (a power of two ≤ 64).
fn insert_sql(rows: usize) -> &'static str {
    static SQL: OnceLock<Vec<String>> = OnceLock::new();
    let all = SQL.get_or_init(|| {
        let mut v = Vec::new();
        let mut n = 1;
        while n <= INSERT_CHUNK {
            let mut s = format!("INSERT INTO audit_log ({COLUMNS}) VALUES ");
            for r in 0..n {
                if r > 0 {
                    s.push_str(", ");
                }
                s.push('(');
                for c in 0..N_COLUMNS {
                    if c > 0 {
                        s.push_str(", ");
                    }
                    s.push_str(&format!("${}", r * N_COLUMNS + c + 1));
                }
                s.push(')');
            }
            v.push(s);
            n *= 2;
        }
        v
    });
    &all[rows.trailing_zeros() as usize]
}

enum Bind {
    Text(String),
    Int(i64),
}

struct Sql {
    text: String,
    binds: Vec<Bind>,
}

impl Sql {
    /// Adds a bind value and returns its placeholder.
    fn param(&mut self, b: Bind) -> String {
        self.binds.push(b);
        format!("${}", self.binds.len())
    }
}

fn filter_sql(f: &AuditFilter) -> Sql {
    let mut sql = Sql {
        text: format!("SELECT {COLUMNS} FROM audit_log WHERE 1 = 1"),
        binds: Vec::new(),
    };
    if let Some(p) = &f.plugin {
        let p = sql.param(Bind::Text(p.clone()));
        sql.text.push_str(&format!(" AND plugin = {p}"));
    }
    match &f.capability {
        None => {}
        Some(CapabilityMatch::Exact(c)) => {
            let p = sql.param(Bind::Text(c.clone()));
            sql.text.push_str(&format!(" AND capability = {p}"));
        }
        Some(CapabilityMatch::Prefix(c)) => {
            let p = sql.param(Bind::Text(c.clone()));
            sql.text
                .push_str(&format!(" AND substr(capability, 1, length({p})) = {p}"));
        }
        Some(CapabilityMatch::Name(c)) => {
            let exact = sql.param(Bind::Text(c.clone()));
            let prefix = sql.param(Bind::Text(format!("{c}:")));
            sql.text.push_str(&format!(
                " AND (capability = {exact} OR substr(capability, 1, length({prefix})) = {prefix})"
            ));
        }
    }
    if let Some(d) = f.decision {
        let p = sql.param(Bind::Text(d.as_str().to_string()));
        sql.text.push_str(&format!(" AND decision = {p}"));
    }
    if let Some(k) = &f.kind {
        let p = sql.param(Bind::Text(k.as_str().to_string()));
        sql.text.push_str(&format!(" AND kind = {p}"));
    }
    if let Some(t) = f.since_ns {
        let p = sql.param(Bind::Int(t));
        sql.text.push_str(&format!(" AND ts_ns >= {p}"));
    }
    if let Some(t) = f.until_ns {
        let p = sql.param(Bind::Int(t));
        sql.text.push_str(&format!(" AND ts_ns < {p}"));
    }
    sql.text.push_str(" ORDER BY seq DESC");
    if let Some(n) = f.limit {
        let p = sql.param(Bind::Int(i64::try_from(n).unwrap_or(i64::MAX)));
        sql.text.push_str(&format!(" LIMIT {p}"));
    }
    sql
}

fn entry(row: LogRow) -> Result<AuditEntry, AuditError> {
    let (seq, ts_ns, kind, plugin, digest, capability, decision, actor, detail, _prev, hash) = row;
    let decision = match decision {
        None => None,
        Some(d) => Some(Decision::parse(&d).ok_or_else(|| AuditError::Corrupt {
            seq,
            what: format!("decision {d:?} is neither allow nor deny"),
        })?),
    };
    Ok(AuditEntry {
        seq: u64::try_from(seq).map_err(|_| AuditError::Corrupt {
            seq,
            what: "negative seq".into(),
        })?,
        ts_ns,
        kind: AuditKind::parse(&kind),
        plugin,
        digest,
        capability,
        decision,
        actor,
        detail,
        hash: chain::to_hex(&hash),
    })
}

/// The state of a chain walk in seq order.
struct Walk {
    records: u64,
    last_seq: u64,
    prev: [u8; HASH_LEN],
}

impl Walk {
    fn new() -> Walk {
        Walk {
            records: 0,
            last_seq: 0,
            prev: GENESIS,
        }
    }

    /// Checks the next row: it has the next seq, links to the previous hash, and its content
    /// hashes to its stored hash.
    fn step(&mut self, row: &LogRow) -> Result<(), BrokenLink> {
        let (seq, ts_ns, kind, plugin, digest, capability, decision, actor, detail, prev, hash) =
            row;
        self.records += 1;
        let want = self.last_seq + 1;
        let seq = *seq;
        if seq != want as i64 {
            let reason = if seq > want as i64 + 1 {
                format!("records {want}..={} are missing (deleted)", seq - 1)
            } else if seq > want as i64 {
                format!("record {want} is missing (deleted)")
            } else {
                format!(
                    "record {seq} is out of order after record {}",
                    self.last_seq
                )
            };
            return Err(BrokenLink { seq: want, reason });
        }
        if prev[..] != self.prev[..] {
            let reason = if want == 1 {
                "record 1 does not start from the genesis hash".to_string()
            } else {
                format!(
                    "record {want} does not link to record {} (prev_hash differs)",
                    self.last_seq
                )
            };
            return Err(BrokenLink { seq: want, reason });
        }
        let fields = ChainFields {
            seq: want,
            ts_ns: *ts_ns,
            kind,
            plugin,
            digest,
            capability,
            decision: decision.as_deref(),
            actor,
            detail,
        };
        let computed = chain::link_hash(&self.prev, &fields);
        if hash[..] != computed[..] {
            return Err(BrokenLink {
                seq: want,
                reason: format!("record {want} does not match its hash (edited)"),
            });
        }
        self.last_seq = want;
        self.prev = computed;
        Ok(())
    }

    fn head_mismatch(&self) -> BrokenLink {
        BrokenLink {
            seq: self.last_seq,
            reason: format!(
                "record {} does not match the recorded head (audit_head)",
                self.last_seq
            ),
        }
    }

    fn report(&self, first_broken: Option<BrokenLink>) -> VerifyReport {
        VerifyReport {
            records: self.records,
            verified_head: ChainHead {
                seq: self.last_seq,
                hash: chain::to_hex(&self.prev),
            },
            first_broken,
        }
    }
}

/// Compares the end of an intact chain with the recorded head before and after the walk.
fn end_check(
    walk: &Walk,
    before: Option<&(u64, Vec<u8>)>,
    after: Option<&(u64, Vec<u8>)>,
) -> Option<BrokenLink> {
    let last = walk.last_seq;
    let Some((after_seq, after_hash)) = after else {
        return (last > 0).then(|| BrokenLink {
            seq: 1,
            reason: "the recorded head (audit_head) is missing".to_string(),
        });
    };
    if let Some((before_seq, _)) = before
        && *before_seq > last
    {
        let reason = if *before_seq == last + 1 {
            format!(
                "record {} is missing from the end (truncated; the recorded head is {before_seq})",
                last + 1
            )
        } else {
            format!(
                "records {}..={before_seq} are missing from the end (truncated; the recorded head is {before_seq})",
                last + 1
            )
        };
        return Some(BrokenLink {
            seq: last + 1,
            reason,
        });
    }
    if last > *after_seq {
        return Some(BrokenLink {
            seq: after_seq + 1,
            reason: format!(
                "record {} lies past the recorded head {after_seq} (not written by the audit writer)",
                after_seq + 1
            ),
        });
    }
    if last == *after_seq && walk.prev[..] != after_hash[..] {
        return Some(walk.head_mismatch());
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunks_are_powers_of_two_up_to_the_cap() {
        for (n, want) in [(1, 1), (2, 2), (3, 2), (63, 32), (64, 64), (1000, 64)] {
            assert_eq!(chunk_len(n), want, "{n}");
        }
        assert!(insert_sql(1).ends_with("($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)"));
        assert!(insert_sql(64).contains("$704)"));
    }

    fn rows(n: u64) -> Vec<LogRow> {
        let recs: Vec<AuditRecord> = (0..n)
            .map(|i| {
                AuditRecord::decision("p", "d", "state", Decision::Allow)
                    .at(i as i64)
                    .with_detail(format!("r{i}"))
            })
            .collect();
        link(0, GENESIS, &recs)
            .iter()
            .map(|r| {
                (
                    r.seq,
                    r.fields.ts_ns,
                    r.fields.kind.to_string(),
                    r.fields.plugin.to_string(),
                    r.fields.digest.to_string(),
                    r.fields.capability.to_string(),
                    r.fields.decision.map(str::to_string),
                    r.fields.actor.to_string(),
                    r.fields.detail.to_string(),
                    r.prev.to_vec(),
                    r.hash.to_vec(),
                )
            })
            .collect()
    }

    fn walk_all(rows: &[LogRow]) -> Result<Walk, BrokenLink> {
        let mut w = Walk::new();
        for r in rows {
            w.step(r)?;
        }
        Ok(w)
    }

    #[test]
    fn an_intact_chain_walks_to_its_head() {
        let rows = rows(5);
        let w = walk_all(&rows).unwrap();
        assert_eq!(w.last_seq, 5);
        assert_eq!(w.prev.to_vec(), rows[4].10);
        let head = (5, rows[4].10.clone());
        assert_eq!(end_check(&w, Some(&head), Some(&head)), None);
    }

    #[test]
    fn each_kind_of_tampering_breaks_at_the_right_seq() {
        let mut edited = rows(5);
        edited[2].8 = "changed".into();
        assert_eq!(walk_all(&edited).err().map(|b| b.seq), Some(3));

        let mut deleted = rows(5);
        deleted.remove(2);
        let b = walk_all(&deleted).err().unwrap();
        assert_eq!(
            (b.seq, b.reason.as_str()),
            (3, "record 3 is missing (deleted)")
        );

        // Deleting a row and renumbering the rest to close the gap.
        let mut renumbered = rows(5);
        renumbered.remove(2);
        for r in &mut renumbered[2..] {
            r.0 -= 1;
        }
        let b = walk_all(&renumbered).err().unwrap();
        assert_eq!(b.seq, 3);
        assert!(b.reason.contains("does not link"), "{}", b.reason);

        let mut first_gone = rows(3);
        first_gone.remove(0);
        assert_eq!(walk_all(&first_gone).err().map(|b| b.seq), Some(1));

        let all = rows(5);
        let truncated = &all[..3];
        let w = walk_all(truncated).unwrap();
        let head = (5, all[4].10.clone());
        let b = end_check(&w, Some(&head), Some(&head)).unwrap();
        assert_eq!(b.seq, 4);
        assert!(b.reason.contains("truncated"), "{}", b.reason);
    }

    #[test]
    fn the_writer_continues_from_the_recorded_head_after_a_truncation() {
        let h = |b: u8| vec![b; HASH_LEN];
        assert_eq!(pick_head(None, None), (0, GENESIS));
        assert_eq!(
            pick_head(Some((5, h(5))), Some((3, h(3)))),
            (5, [5; HASH_LEN])
        );
        assert_eq!(
            pick_head(Some((5, h(5))), Some((7, h(7)))),
            (7, [7; HASH_LEN])
        );
        assert_eq!(
            pick_head(Some((5, h(5))), Some((5, h(5)))),
            (5, [5; HASH_LEN])
        );
    }
}
