//! Durable per-plugin key-value state behind the `colony:plugin/state` interface: SQLite
//! through sqlx (WAL, `synchronous=FULL`), one database file under the data directory.
//!
//! Quotas are enforced here, before any write: key length, value size, and a plugin's total
//! bytes (kept in memory after the first look so a `set` does not scan the table).

use std::collections::HashMap;
use std::path::Path;
use std::str::FromStr;
use std::sync::Arc;

use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};
use tokio::sync::Mutex;

/// Quotas for one plugin's state.
#[derive(Debug, Clone, Copy)]
pub struct StateQuota {
    /// Longest key in bytes.
    pub max_key_bytes: usize,
    /// Largest value in bytes.
    pub max_value_bytes: usize,
    /// All keys and values of a plugin together.
    pub max_total_bytes: u64,
    /// Most keys returned by `keys`.
    pub max_keys_listed: u32,
}

impl Default for StateQuota {
    fn default() -> Self {
        StateQuota {
            max_key_bytes: 512,
            max_value_bytes: 1024 * 1024,
            max_total_bytes: 16 * 1024 * 1024,
            max_keys_listed: 10_000,
        }
    }
}

/// Why a state operation failed.
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    /// A quota would be exceeded; the text names it.
    #[error("{0}")]
    Quota(String),
    /// The database failed.
    #[error("state store: {0}")]
    Db(#[from] sqlx::Error),
    /// The database could not be migrated.
    #[error("state store migration: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    /// The database file could not be created or made private.
    #[error("state store: {0}")]
    Io(#[from] std::io::Error),
}

/// The state database, shared by every plugin's store.
#[derive(Clone)]
pub struct StateStore {
    pool: SqlitePool,
    quota: StateQuota,
    usage: Arc<Mutex<HashMap<String, u64>>>,
}

impl StateStore {
    /// Opens (creating and migrating) the database at `path`.
    pub async fn open(path: &Path, quota: StateQuota) -> Result<StateStore, StateError> {
        crate::datadir::private_sqlite_file(path)?;
        let options = SqliteConnectOptions::from_str("sqlite://")?
            .filename(path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Full)
            .busy_timeout(std::time::Duration::from_secs(5));
        let pool = SqlitePoolOptions::new()
            .max_connections(4)
            .connect_with(options)
            .await?;
        sqlx::migrate!("../migrations/state").run(&pool).await?;
        Ok(StateStore {
            pool,
            quota,
            usage: Arc::new(Mutex::new(HashMap::new())),
        })
    }

    /// The quotas in force.
    pub fn quota(&self) -> StateQuota {
        self.quota
    }

    /// Reads a value.
    pub async fn get(&self, plugin: &str, key: &str) -> Result<Option<Vec<u8>>, StateError> {
        self.check_key(key)?;
        let row: Option<(Vec<u8>,)> =
            sqlx::query_as("SELECT value FROM plugin_state WHERE plugin = ? AND key = ?")
                .bind(plugin)
                .bind(key)
                .fetch_optional(&self.pool)
                .await?;
        Ok(row.map(|r| r.0))
    }

    /// Writes a value; durable when this returns.
    pub async fn set(&self, plugin: &str, key: &str, value: &[u8]) -> Result<(), StateError> {
        self.check_key(key)?;
        if value.len() > self.quota.max_value_bytes {
            return Err(StateError::Quota(format!(
                "state value limit of {} bytes exceeded ({} given)",
                self.quota.max_value_bytes,
                value.len()
            )));
        }
        let mut usage = self.usage.lock().await;
        let used = match usage.get(plugin) {
            Some(u) => *u,
            None => self.total_bytes(plugin).await?,
        };
        let old = self.entry_size(plugin, key).await?;
        let new = (key.len() + value.len()) as u64;
        let after = used.saturating_sub(old).saturating_add(new);
        if after > self.quota.max_total_bytes {
            return Err(StateError::Quota(format!(
                "state quota of {} bytes exceeded ({after} needed)",
                self.quota.max_total_bytes
            )));
        }
        sqlx::query(
            "INSERT INTO plugin_state (plugin, key, value) VALUES (?, ?, ?) \
             ON CONFLICT (plugin, key) DO UPDATE SET value = excluded.value",
        )
        .bind(plugin)
        .bind(key)
        .bind(value)
        .execute(&self.pool)
        .await?;
        usage.insert(plugin.to_string(), after);
        Ok(())
    }

    /// Deletes a key (absent keys are fine).
    pub async fn delete(&self, plugin: &str, key: &str) -> Result<(), StateError> {
        self.check_key(key)?;
        let mut usage = self.usage.lock().await;
        let old = self.entry_size(plugin, key).await?;
        sqlx::query("DELETE FROM plugin_state WHERE plugin = ? AND key = ?")
            .bind(plugin)
            .bind(key)
            .execute(&self.pool)
            .await?;
        if let Some(u) = usage.get_mut(plugin) {
            *u = u.saturating_sub(old);
        }
        Ok(())
    }

    /// Keys starting with `prefix`, in byte order, at most `max_keys_listed`.
    pub async fn keys(&self, plugin: &str, prefix: &str) -> Result<Vec<String>, StateError> {
        self.check_key(prefix)?;
        let rows: Vec<(String,)> = sqlx::query_as(
            "SELECT key FROM plugin_state WHERE plugin = ? AND substr(key, 1, length(?)) = ? \
             ORDER BY key LIMIT ?",
        )
        .bind(plugin)
        .bind(prefix)
        .bind(prefix)
        .bind(self.quota.max_keys_listed)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows.into_iter().map(|r| r.0).collect())
    }

    fn check_key(&self, key: &str) -> Result<(), StateError> {
        if key.len() > self.quota.max_key_bytes {
            return Err(StateError::Quota(format!(
                "state key limit of {} bytes exceeded ({} given)",
                self.quota.max_key_bytes,
                key.len()
            )));
        }
        Ok(())
    }

    async fn total_bytes(&self, plugin: &str) -> Result<u64, StateError> {
        let (n,): (i64,) = sqlx::query_as(
            "SELECT COALESCE(SUM(length(CAST(key AS BLOB)) + length(value)), 0) FROM plugin_state WHERE plugin = ?",
        )
        .bind(plugin)
        .fetch_one(&self.pool)
        .await?;
        Ok(u64::try_from(n).unwrap_or(0))
    }

    async fn entry_size(&self, plugin: &str, key: &str) -> Result<u64, StateError> {
        let row: Option<(i64,)> = sqlx::query_as(
            "SELECT length(CAST(key AS BLOB)) + length(value) FROM plugin_state WHERE plugin = ? AND key = ?",
        )
        .bind(plugin)
        .bind(key)
        .fetch_optional(&self.pool)
        .await?;
        Ok(row.map_or(0, |r| u64::try_from(r.0).unwrap_or(0)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn state_round_trips_is_isolated_per_plugin_and_survives_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.db");
        let store = StateStore::open(&path, StateQuota::default())
            .await
            .unwrap();
        store.set("a", "k1", b"v1").await.unwrap();
        store.set("a", "k2", b"v2").await.unwrap();
        store.set("b", "k1", b"other").await.unwrap();
        assert_eq!(
            store.get("a", "k1").await.unwrap().as_deref(),
            Some(&b"v1"[..])
        );
        assert_eq!(store.keys("a", "k").await.unwrap(), vec!["k1", "k2"]);
        store.delete("a", "k1").await.unwrap();
        assert_eq!(store.get("a", "k1").await.unwrap(), None);
        drop(store);
        let store = StateStore::open(&path, StateQuota::default())
            .await
            .unwrap();
        assert_eq!(
            store.get("a", "k2").await.unwrap().as_deref(),
            Some(&b"v2"[..])
        );
        assert_eq!(
            store.get("b", "k1").await.unwrap().as_deref(),
            Some(&b"other"[..])
        );
    }

    #[tokio::test]
    async fn quotas_are_enforced_before_writing() {
        let dir = tempfile::tempdir().unwrap();
        let quota = StateQuota {
            max_key_bytes: 8,
            max_value_bytes: 10,
            max_total_bytes: 20,
            max_keys_listed: 10,
        };
        let store = StateStore::open(&dir.path().join("s.db"), quota)
            .await
            .unwrap();
        let err = store.set("p", "a-very-long-key", b"x").await.unwrap_err();
        assert!(
            err.to_string().contains("state key limit of 8 bytes"),
            "{err}"
        );
        let err = store.set("p", "k", &[0; 11]).await.unwrap_err();
        assert!(
            err.to_string().contains("state value limit of 10 bytes"),
            "{err}"
        );
        store.set("p", "k1", &[0; 9]).await.unwrap(); // 11 bytes
        let err = store.set("p", "k2", &[0; 9]).await.unwrap_err(); // would be 22
        assert!(err.to_string().contains("state quota of 20 bytes"), "{err}");
        store.set("p", "k1", &[0; 2]).await.unwrap(); // replacing frees room: 4
        store.set("p", "k2", &[0; 9]).await.unwrap(); // 15
        assert_eq!(
            store.get("p", "k2").await.unwrap().map(|v| v.len()),
            Some(9)
        );
    }
}
