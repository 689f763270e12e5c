//! What Colony's two sqlx stores (the audit store, the order journal) share: a pool of either
//! supported database, and [`on_pool!`], which expands one body for each pool type so that the
//! SQLite and PostgreSQL paths of a query cannot drift apart. Each store writes its statements
//! once with `$N` placeholders, which both databases accept.

#![deny(missing_docs)]

/// sqlx, re-exported so that [`on_pool!`] expands in crates that name it through this one.
pub use sqlx;

use sqlx::postgres::PgPool;
use sqlx::sqlite::SqlitePool;

/// A connection pool to one of the supported databases.
#[derive(Clone)]
pub enum Backend {
    /// SQLite (the default).
    Sqlite(SqlitePool),
    /// PostgreSQL.
    Postgres(PgPool),
}

/// Runs `$body` with `$pool` bound to the concrete pool of a [`Backend`] and `$db` naming its
/// database type (`sqlx::Sqlite` or `sqlx::Postgres`).
#[macro_export]
macro_rules! on_pool {
    ($backend:expr, |$pool:ident, $db:ident| $body:block) => {
        match $backend {
            $crate::Backend::Sqlite($pool) => {
                #[allow(dead_code)]
                type $db = $crate::sqlx::Sqlite;
                $body
            }
            $crate::Backend::Postgres($pool) => {
                #[allow(dead_code)]
                type $db = $crate::sqlx::Postgres;
                $body
            }
        }
    };
}
