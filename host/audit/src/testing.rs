//! Helpers for the integration tests (`tests/all/audit.rs`), which must tamper with the log
//! the way an attacker with database access would, and need throwaway PostgreSQL
//! databases. Not part of the supported API.

use std::str::FromStr;

use sqlx::Connection;
use sqlx::postgres::{PgConnectOptions, PgConnection};

use super::{AuditError, AuditStore};

/// Runs raw SQL (one or more statements) on the store's database; returns rows affected.
pub async fn execute(store: &AuditStore, sql: &str) -> Result<u64, AuditError> {
    store.backend.execute_raw(sql).await
}

/// Drops the triggers that refuse UPDATE and DELETE on `audit_log`, as an attacker would.
pub async fn drop_append_only_guard(store: &AuditStore) -> Result<(), AuditError> {
    let sql = if store.backend.is_postgres() {
        "DROP TRIGGER IF EXISTS audit_log_no_update_or_delete ON audit_log; \
         DROP TRIGGER IF EXISTS audit_log_no_truncate ON audit_log;"
    } else {
        "DROP TRIGGER IF EXISTS audit_log_no_update; DROP TRIGGER IF EXISTS audit_log_no_delete;"
    };
    store.backend.execute_raw(sql).await.map(|_| ())
}

fn check_name(name: &str) -> Result<(), AuditError> {
    if name.is_empty()
        || !name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
    {
        return Err(AuditError::Url(format!("bad database name {name:?}")));
    }
    Ok(())
}

async fn admin(server_url: &str) -> Result<PgConnection, AuditError> {
    let options = PgConnectOptions::from_str(server_url)?.database("postgres");
    Ok(PgConnection::connect_with(&options).await?)
}

/// Creates database `name` (lowercase letters, digits, `_`) on the server at `server_url`
/// and returns the URL of the new database.
pub async fn create_postgres_database(server_url: &str, name: &str) -> Result<String, AuditError> {
    check_name(name)?;
    let mut conn = admin(server_url).await?;
    sqlx::raw_sql(&format!("CREATE DATABASE {name}"))
        .execute(&mut conn)
        .await?;
    conn.close().await?;
    Ok(format!("{}/{name}", server_url.trim_end_matches('/')))
}

/// Drops database `name`, disconnecting anyone still using it.
pub async fn drop_postgres_database(server_url: &str, name: &str) -> Result<(), AuditError> {
    check_name(name)?;
    let mut conn = admin(server_url).await?;
    sqlx::raw_sql(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
        .execute(&mut conn)
        .await?;
    conn.close().await?;
    Ok(())
}
