//! The durable order journal: every order intent is committed before it is sent and every
//! report about it after, through sqlx on SQLite (the default, WAL and `synchronous=FULL`) or
//! PostgreSQL, so that after a crash nothing is lost and nothing is sent twice.
//!
//! The protocol the router follows for each order:
//!
//! 1. [`Journal::record_intent`]: the full request with the agent's client order id, status
//!    `pending`. The client id is the order's identity and is never regenerated: a retry
//!    resends the same request under the same id, and a second intent for the same
//!    (venue, agent, client id) is refused ([`JournalError::Duplicate`]), never overwritten.
//!    Lookups by (agent, client id) find the newest order with that pair: the router names
//!    the paper exchange `paper@<run start>`, so each run's paper orders are their own.
//! 2. [`Journal::mark_sent`], just before the request is handed to the venue.
//! 3. [`Journal::record`] for every report the venue sends ([`Journal::record_batch`] for the
//!    write-behind of the in-process paper venue): the report is appended to the order's
//!    events and the order row is folded forward with [`OrderState::apply`], in one
//!    transaction, so the row always equals the fold of its events.
//!
//! An order refused before any venue saw it (risk, approval, a journal that could not take
//! its intent) is kept apart, in `order_rejections` ([`Journal::record_rejections`],
//! [`Journal::rejections`]): it never took its client id.
//!
//! At start-up, [`Journal::open_orders`] lists the orders that are not closed, oldest first.
//! One that was never marked sent never reached the venue; one that was may have, and is
//! reconciled with the venue by its client order id before anything is sent again.
//!
//! | stored as | how | why |
//! |---|---|---|
//! | decimals | TEXT, as [`Decimal`] prints them | exact, scale kept (a float is neither) |
//! | timestamps | BIGINT nanoseconds since the epoch | [`Timestamp`] as is; larger than `i64::MAX` is refused |
//! | side, kind, time in force, status, event kind, liquidity | lowercase text | readable with plain SQL |
//!
//! Whatever is read back and does not parse is [`JournalError::Corrupt`], naming the table,
//! the row and the column; it never panics.
//!
//! On PostgreSQL the tables live in the schema `colony_orders` (every connection sets its
//! `search_path`), so the journal can share a database with the audit store without their
//! migration histories colliding. On SQLite give the journal its own file.
//!
//! Every statement is written once with `$N` placeholders, which both backends accept; only
//! how an order row is locked differs (`BEGIN IMMEDIATE` on SQLite, `FOR UPDATE` on
//! PostgreSQL).

use std::collections::{BTreeMap, BTreeSet};
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use rust_decimal::Decimal;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{ColumnIndex, Decode, Row, Type};

use super::{
    ExecKind, ExecReport, FillReport, Liquidity, OrderKind, OrderRequest, OrderState, OrderStatus,
    TimeInForce,
};
use colony_market::types::{Side, Timestamp};

#[macro_use]
mod sql;

mod read;
mod rows;
mod write;

use rows::*;
use sql::*;

/// Why a journal operation failed.
#[derive(Debug, thiserror::Error)]
pub enum JournalError {
    /// The database could not be opened. `url` has no user name, password or `password=`
    /// parameter.
    #[error("order journal: cannot open {url}: {source}")]
    Open {
        /// The database URL, without credentials.
        url: String,
        /// What failed.
        source: sqlx::Error,
    },
    /// The database could not be migrated.
    #[error("order journal migration: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    /// The agent already journaled an order with this client id; the first one stands.
    #[error("order journal: agent {agent:?} already has an order with client id {client_id:?}")]
    Duplicate {
        /// The agent.
        agent: String,
        /// The client order id.
        client_id: String,
    },
    /// No intent was journaled for this order (nothing of the call was written).
    #[error("order journal: agent {agent:?} has no order with client id {client_id:?}")]
    UnknownOrder {
        /// The agent.
        agent: String,
        /// The client order id.
        client_id: String,
    },
    /// The database failed.
    #[error("order journal: {0}")]
    Db(#[from] sqlx::Error),
    /// A stored value cannot be read back.
    #[error("order journal: {table} row {row}: column {column}: {what}")]
    Corrupt {
        /// The table.
        table: &'static str,
        /// Which row (`id 7`, `order_id 7 seq 2`).
        row: String,
        /// The column.
        column: &'static str,
        /// What is wrong with it.
        what: String,
    },
    /// A timestamp does not fit the database's signed 64-bit nanoseconds.
    #[error("order journal: timestamp {0} ns is past the largest storable (i64::MAX ns)")]
    TimestampRange(Timestamp),
}

/// An order as journaled.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JournalOrder {
    /// The venue it was routed to.
    pub venue: String,
    /// The request and everything that happened to it.
    pub state: OrderState,
    /// Whether it was handed to the venue ([`Journal::mark_sent`]). An open order that was
    /// not marked sent never reached the venue; one that was may have.
    pub sent: bool,
}

/// One journaled report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JournalEvent {
    /// Its number among the order's events, from 1.
    pub seq: u64,
    /// The report; symbol and side are the order's.
    pub report: ExecReport,
}

/// An agent's cancel request as the journal keeps it (the venue's answer is an order event).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CancelRequest {
    /// The agent.
    pub agent: Arc<str>,
    /// The client id of the order it asked to cancel.
    pub client_id: String,
    /// When the router took it, nanoseconds since the Unix epoch.
    pub ts: Timestamp,
}

/// One journaled fill with the order it belongs to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JournalFill {
    /// The venue.
    pub venue: String,
    /// The agent.
    pub agent: Arc<str>,
    /// The client order id.
    pub client_id: String,
    /// Instrument.
    pub symbol: Arc<str>,
    /// The order's side.
    pub side: Side,
    /// The venue's id for the order, if the report carried one.
    pub venue_order_id: Option<String>,
    /// The event's number among the order's events.
    pub seq: u64,
    /// When it happened.
    pub ts: Timestamp,
    /// The execution.
    pub fill: FillReport,
}

/// An order refused before any venue saw it, as journaled.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JournalRejection {
    /// The venue it was meant for.
    pub venue: String,
    /// The request and its refusal: status `rejected`, the reason code in `reject_code`,
    /// created and updated at the refusal's time.
    pub state: OrderState,
    /// What was wrong, for a person.
    pub message: String,
}

/// Which orders [`Journal::orders`] returns; every field set narrows the result.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OrderFilter {
    /// Exact agent name.
    pub agent: Option<String>,
    /// Exact symbol.
    pub symbol: Option<String>,
    /// Only orders that are not closed.
    pub open_only: bool,
    /// At most this many (newest first); `None` for all.
    pub limit: Option<u32>,
}

use colony_db::{Backend, on_pool};

/// The order journal. Cheap to clone (a connection pool inside).
#[derive(Clone)]
pub struct Journal {
    backend: Backend,
}

impl Journal {
    /// Opens (creating and migrating) the journal at `url`: `sqlite://PATH` (the file and its
    /// directory are created if missing; WAL and `synchronous=FULL`, so a write that returned
    /// survives SIGKILL and power loss) or `postgres://…` (the database must exist; the
    /// schema `colony_orders` is created in it).
    pub async fn open(url: &str) -> Result<Journal, JournalError> {
        let shown = redact_url(url);
        let open_err = |source| JournalError::Open {
            url: shown.clone(),
            source,
        };
        let scheme = url.split_once(':').map_or(url, |(s, _)| s);
        let backend = match scheme {
            "sqlite" => {
                let options = SqliteConnectOptions::from_str(url).map_err(open_err)?;
                if let Some(dir) = options.get_filename().parent()
                    && !dir.as_os_str().is_empty()
                {
                    std::fs::create_dir_all(dir).map_err(|e| {
                        open_err(sqlx::Error::Configuration(
                            format!("cannot create {}: {e}", dir.display()).into(),
                        ))
                    })?;
                }
                colony_files::datadir::private_sqlite_file(options.get_filename()).map_err(
                    |e| {
                        open_err(sqlx::Error::Configuration(
                            format!("cannot create {}: {e}", options.get_filename().display())
                                .into(),
                        ))
                    },
                )?;
                let options = options
                    .create_if_missing(true)
                    .journal_mode(SqliteJournalMode::Wal)
                    .synchronous(SqliteSynchronous::Full)
                    .foreign_keys(true)
                    .busy_timeout(Duration::from_secs(5));
                let pool = SqlitePoolOptions::new()
                    .max_connections(4)
                    .connect_with(options)
                    .await
                    .map_err(open_err)?;
                sqlx::migrate!("../migrations/orders_sqlite")
                    .run(&pool)
                    .await?;
                Backend::Sqlite(pool)
            }
            "postgres" | "postgresql" => {
                let options = PgConnectOptions::from_str(url)
                    .map_err(open_err)?
                    .options([("search_path", PG_SCHEMA)]);
                let pool = PgPoolOptions::new()
                    .max_connections(8)
                    .acquire_timeout(Duration::from_secs(10))
                    .connect_with(options)
                    .await
                    .map_err(open_err)?;
                sqlx::raw_sql(&format!("CREATE SCHEMA IF NOT EXISTS {PG_SCHEMA}"))
                    .execute(&pool)
                    .await
                    .map_err(open_err)?;
                sqlx::migrate!("../migrations/orders_postgres")
                    .run(&pool)
                    .await?;
                Backend::Postgres(pool)
            }
            other => {
                return Err(open_err(sqlx::Error::Configuration(
                    format!(
                        "unsupported database url scheme {other:?} \
                         (expected sqlite://PATH or postgres://…)"
                    )
                    .into(),
                )));
            }
        };
        Ok(Journal { backend })
    }

    /// Closes the connections; clones of this journal fail afterwards.
    pub async fn close(&self) {
        on_pool!(&self.backend, |pool, _Db| { pool.close().await })
    }
}

fn unknown(agent: &str, client_id: &str) -> JournalError {
    JournalError::UnknownOrder {
        agent: agent.to_string(),
        client_id: client_id.to_string(),
    }
}

fn report_key(r: &ExecReport) -> (&str, &str) {
    (&r.agent, r.client_id.as_str())
}

fn ts_to_db(ts: Timestamp) -> Result<i64, JournalError> {
    i64::try_from(ts).map_err(|_| JournalError::TimestampRange(ts))
}

/// `url` fit for an error message: without userinfo (`user:password@`) and with the value of
/// any `password=` query parameter replaced. SQLite URLs are paths and are shown as they are.
pub fn redact_url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_string();
    };
    if scheme == "sqlite" {
        return url.to_string();
    }
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(authority_end);
    let host = authority
        .rsplit_once('@')
        .map_or(authority, |(_, host)| host);
    let tail = match tail.split_once('?') {
        None => tail.to_string(),
        Some((path, query)) => {
            let query: Vec<String> = query
                .split('&')
                .map(|pair| match pair.split_once('=') {
                    Some((k, _)) if k.eq_ignore_ascii_case("password") => format!("{k}=redacted"),
                    _ => pair.to_string(),
                })
                .collect();
            format!("{path}?{}", query.join("&"))
        }
    };
    format!("{scheme}://{host}{tail}")
}

#[cfg(test)]
mod tests;
