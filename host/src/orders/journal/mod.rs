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
use crate::market::types::{Side, Timestamp};

/// The PostgreSQL schema holding the journal's tables and migration history.
const PG_SCHEMA: &str = "colony_orders";

/// The statuses of an order that is not closed, as SQL (see `OrderStatus::is_closed`).
const OPEN_STATUSES: &str = "('pending', 'accepted', 'partially-filled')";

/// The `orders` columns every order query selects, in [`RawOrder`]'s order.
macro_rules! order_columns {
    () => {
        "o.id, o.agent, o.client_id, o.venue, o.symbol, o.side, o.kind, o.price, o.qty, o.tif, \
         o.post_only, o.reduce_only, o.status, o.venue_order_id, o.filled_qty, \
         o.filled_notional, o.fees, o.reject_code, o.created_ns, o.updated_ns, o.sent_ns, \
         o.last_seq"
    };
}

/// The columns every event query selects: the event and what it needs from its order.
macro_rules! event_select {
    () => {
        "SELECT o.venue, o.agent, o.client_id, o.symbol, o.side, e.order_id, e.seq, e.ts_ns, \
         e.kind, e.venue_order_id, e.reject_code, e.message, e.qty, e.price, e.fee, \
         e.fee_currency, e.liquidity FROM order_events e JOIN orders o ON o.id = e.order_id"
    };
}

const INSERT_INTENT: &str = "INSERT INTO orders (venue, agent, client_id, symbol, side, kind, \
     price, qty, tif, post_only, reduce_only, status, filled_qty, filled_notional, fees, \
     created_ns, updated_ns, last_seq) \
     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $13, $13, $14, $14, 0) \
     ON CONFLICT (venue, agent, client_id) DO NOTHING";
/// Keeps the first time: the earliest moment the venue may have seen the order.
const MARK_SENT: &str = "UPDATE orders SET sent_ns = COALESCE(sent_ns, $1) WHERE id = (SELECT MAX(id) FROM orders \
     WHERE agent = $2 AND client_id = $3)";
const SELECT_ORDER: &str = concat!(
    "SELECT ",
    order_columns!(),
    " FROM orders o WHERE o.agent = $1 AND o.client_id = $2 ORDER BY o.id DESC LIMIT 1"
);
const SELECT_ORDER_FOR_UPDATE: &str = concat!(
    "SELECT ",
    order_columns!(),
    " FROM orders o WHERE o.agent = $1 AND o.client_id = $2 ORDER BY o.id DESC LIMIT 1 FOR UPDATE"
);
const UPDATE_ORDER: &str = "UPDATE orders SET status = $1, venue_order_id = $2, \
     filled_qty = $3, filled_notional = $4, fees = $5, reject_code = $6, updated_ns = $7, \
     last_seq = $8 WHERE id = $9";
const INSERT_EVENT: &str = "INSERT INTO order_events (order_id, seq, ts_ns, kind, \
     venue_order_id, reject_code, message, qty, price, fee, fee_currency, liquidity) \
     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)";
const SELECT_EVENTS: &str = concat!(
    event_select!(),
    " WHERE e.order_id = (SELECT MAX(id) FROM orders WHERE agent = $1 AND client_id = $2) \
     ORDER BY e.seq"
);

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

use crate::db::{Backend, on_pool};

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
                crate::datadir::private_sqlite_file(options.get_filename()).map_err(|e| {
                    open_err(sqlx::Error::Configuration(
                        format!("cannot create {}: {e}", options.get_filename().display()).into(),
                    ))
                })?;
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
                sqlx::migrate!("./migrations/orders_sqlite")
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
                sqlx::migrate!("./migrations/orders_postgres")
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

    /// Writes the intent (the full request, the venue, `now` as created and updated, status
    /// `pending`, not sent) and returns once it is committed. A second intent with the same
    /// venue, agent and client id is [`JournalError::Duplicate`] and changes nothing.
    pub async fn record_intent(
        &self,
        venue: &str,
        order: &OrderRequest,
        now: Timestamp,
    ) -> Result<(), JournalError> {
        let now = ts_to_db(now)?;
        let zero = Decimal::ZERO.to_string();
        let inserted = on_pool!(&self.backend, |pool, Db| {
            sqlx::query::<Db>(INSERT_INTENT)
                .bind(venue)
                .bind(&*order.agent)
                .bind(order.client_id.as_str())
                .bind(&*order.symbol)
                .bind(Side::as_str(order.side))
                .bind(OrderKind::as_str(order.kind))
                .bind(order.price.map(|p| p.to_string()))
                .bind(order.qty.to_string())
                .bind(TimeInForce::as_str(order.tif))
                .bind(order.post_only)
                .bind(order.reduce_only)
                .bind(OrderStatus::Pending.as_str())
                .bind(zero.as_str())
                .bind(now)
                .execute(pool)
                .await?
                .rows_affected()
        });
        if inserted == 0 {
            return Err(JournalError::Duplicate {
                agent: order.agent.to_string(),
                client_id: order.client_id.clone(),
            });
        }
        Ok(())
    }

    /// Records that the request is being handed to the venue (the status stays as it is).
    /// Only the first call's time is kept. Lets reconciliation tell "never sent" from "maybe
    /// sent".
    pub async fn mark_sent(
        &self,
        agent: &str,
        client_id: &str,
        now: Timestamp,
    ) -> Result<(), JournalError> {
        let now = ts_to_db(now)?;
        let updated = on_pool!(&self.backend, |pool, Db| {
            sqlx::query::<Db>(MARK_SENT)
                .bind(now)
                .bind(agent)
                .bind(client_id)
                .execute(pool)
                .await?
                .rows_affected()
        });
        if updated == 0 {
            return Err(unknown(agent, client_id));
        }
        Ok(())
    }

    /// Appends `report` to its order's events and folds it into the order row
    /// ([`OrderState::apply`]), in one transaction.
    pub async fn record(&self, report: &ExecReport) -> Result<(), JournalError> {
        self.record_batch(std::slice::from_ref(report)).await
    }

    /// Records `reports` in order, in one transaction: all of them or, if any fails (a report
    /// for an order without an intent, a corrupt order row), none.
    pub async fn record_batch(&self, reports: &[ExecReport]) -> Result<(), JournalError> {
        if reports.is_empty() {
            return Ok(());
        }
        macro_rules! write_reports {
            ($tx:ident, $db:ty, $select:expr) => {{
                // Locked in sorted order, so two batches touching the same orders cannot
                // deadlock on PostgreSQL.
                let keys: BTreeSet<(&str, &str)> = reports.iter().map(report_key).collect();
                let mut orders: BTreeMap<(&str, &str), Loaded> = BTreeMap::new();
                for (agent, client_id) in keys {
                    let row = sqlx::query::<$db>($select)
                        .bind(agent)
                        .bind(client_id)
                        .fetch_optional(&mut *$tx)
                        .await?;
                    let Some(row) = row else {
                        return Err(unknown(agent, client_id));
                    };
                    orders.insert((agent, client_id), RawOrder::read(&row)?.parse()?);
                }
                for report in reports {
                    let (agent, client_id) = report_key(report);
                    let order = orders
                        .get_mut(&(agent, client_id))
                        .ok_or_else(|| unknown(agent, client_id))?;
                    order.check_identity(report);
                    order.journal.state.apply(report);
                    order.last_seq += 1;
                    let ev = EventColumns::of(&report.kind);
                    sqlx::query::<$db>(INSERT_EVENT)
                        .bind(order.id)
                        .bind(order.last_seq)
                        .bind(ts_to_db(report.ts)?)
                        .bind(ev.kind)
                        .bind(report.venue_order_id.as_deref())
                        .bind(ev.reject_code)
                        .bind(ev.message)
                        .bind(ev.qty)
                        .bind(ev.price)
                        .bind(ev.fee)
                        .bind(ev.fee_currency)
                        .bind(ev.liquidity)
                        .execute(&mut *$tx)
                        .await?;
                }
                for order in orders.values() {
                    let s = &order.journal.state;
                    sqlx::query::<$db>(UPDATE_ORDER)
                        .bind(s.status.as_str())
                        .bind(s.venue_order_id.as_deref())
                        .bind(s.filled_qty.to_string())
                        .bind(s.filled_notional.to_string())
                        .bind(s.fees.to_string())
                        .bind(s.reject_code.as_deref())
                        .bind(ts_to_db(s.updated)?)
                        .bind(order.last_seq)
                        .bind(order.id)
                        .execute(&mut *$tx)
                        .await?;
                }
                $tx.commit().await?;
                Ok(())
            }};
        }
        match &self.backend {
            Backend::Sqlite(pool) => {
                // IMMEDIATE takes the write lock up front, so reading an order row and
                // writing it back cannot interleave with another writer.
                let mut tx = pool.begin_with("BEGIN IMMEDIATE").await?;
                write_reports!(tx, sqlx::Sqlite, SELECT_ORDER)
            }
            Backend::Postgres(pool) => {
                let mut tx = pool.begin().await?;
                write_reports!(tx, sqlx::Postgres, SELECT_ORDER_FOR_UPDATE)
            }
        }
    }

    /// Orders not closed (pending, accepted, partially filled), oldest first, on `venue` or
    /// on every venue: what start-up reconciles.
    pub async fn open_orders(
        &self,
        venue: Option<&str>,
    ) -> Result<Vec<JournalOrder>, JournalError> {
        let mut sql = Sql::new(format!(
            concat!(
                "SELECT ",
                order_columns!(),
                " FROM orders o WHERE o.status IN {}"
            ),
            OPEN_STATUSES
        ));
        if let Some(v) = venue {
            let p = sql.param(Bind::Text(v.to_string()));
            sql.text.push_str(&format!(" AND o.venue = {p}"));
        }
        sql.text.push_str(" ORDER BY o.created_ns, o.id");
        self.fetch_orders(&sql).await
    }

    /// Orders matching `filter`, newest first.
    pub async fn orders(&self, filter: &OrderFilter) -> Result<Vec<JournalOrder>, JournalError> {
        let mut sql = Sql::new(
            concat!("SELECT ", order_columns!(), " FROM orders o WHERE 1 = 1").to_string(),
        );
        if let Some(a) = &filter.agent {
            let p = sql.param(Bind::Text(a.clone()));
            sql.text.push_str(&format!(" AND o.agent = {p}"));
        }
        if let Some(s) = &filter.symbol {
            let p = sql.param(Bind::Text(s.clone()));
            sql.text.push_str(&format!(" AND o.symbol = {p}"));
        }
        if filter.open_only {
            sql.text
                .push_str(&format!(" AND o.status IN {OPEN_STATUSES}"));
        }
        sql.text.push_str(" ORDER BY o.created_ns DESC, o.id DESC");
        if let Some(n) = filter.limit {
            let p = sql.param(Bind::Int(i64::from(n)));
            sql.text.push_str(&format!(" LIMIT {p}"));
        }
        self.fetch_orders(&sql).await
    }

    /// The order `client_id` of `agent`, if journaled.
    pub async fn order(
        &self,
        agent: &str,
        client_id: &str,
    ) -> Result<Option<JournalOrder>, JournalError> {
        let raw = on_pool!(&self.backend, |pool, Db| {
            let row = sqlx::query::<Db>(SELECT_ORDER)
                .bind(agent)
                .bind(client_id)
                .fetch_optional(pool)
                .await?;
            row.as_ref().map(RawOrder::read).transpose()?
        });
        Ok(match raw {
            Some(raw) => Some(raw.parse()?.journal),
            None => None,
        })
    }

    /// The order's reports in the order they were recorded (empty for an unknown order).
    pub async fn events(
        &self,
        agent: &str,
        client_id: &str,
    ) -> Result<Vec<JournalEvent>, JournalError> {
        let raws = on_pool!(&self.backend, |pool, Db| {
            let rows = sqlx::query::<Db>(SELECT_EVENTS)
                .bind(agent)
                .bind(client_id)
                .fetch_all(pool)
                .await?;
            rows.iter()
                .map(RawEvent::read)
                .collect::<Result<Vec<_>, _>>()?
        });
        raws.into_iter()
            .map(|r| r.parse().map(|(_, event)| event))
            .collect()
    }

    /// The latest `limit` fills (of `agent`, or of every agent), newest first.
    pub async fn fills(
        &self,
        agent: Option<&str>,
        limit: u32,
    ) -> Result<Vec<JournalFill>, JournalError> {
        let mut sql = Sql::new(concat!(event_select!(), " WHERE e.kind = 'fill'").to_string());
        if let Some(a) = agent {
            let p = sql.param(Bind::Text(a.to_string()));
            sql.text.push_str(&format!(" AND o.agent = {p}"));
        }
        let p = sql.param(Bind::Int(i64::from(limit)));
        sql.text.push_str(&format!(
            " ORDER BY e.ts_ns DESC, e.order_id DESC, e.seq DESC LIMIT {p}"
        ));
        let raws = on_pool!(&self.backend, |pool, Db| {
            let rows = sql.query::<Db>().fetch_all(pool).await?;
            rows.iter()
                .map(RawEvent::read)
                .collect::<Result<Vec<_>, _>>()?
        });
        let mut fills = Vec::with_capacity(raws.len());
        for raw in raws {
            let (venue, event) = raw.parse()?;
            let ExecReport {
                agent,
                client_id,
                symbol,
                side,
                venue_order_id,
                kind,
                ts,
            } = event.report;
            // The query selects fills only; anything else would have failed to parse above.
            if let ExecKind::Fill(fill) = kind {
                fills.push(JournalFill {
                    venue,
                    agent,
                    client_id,
                    symbol,
                    side,
                    venue_order_id,
                    seq: event.seq,
                    ts,
                    fill,
                });
            }
        }
        Ok(fills)
    }

    async fn fetch_orders(&self, sql: &Sql) -> Result<Vec<JournalOrder>, JournalError> {
        let raws = on_pool!(&self.backend, |pool, Db| {
            let rows = sql.query::<Db>().fetch_all(pool).await?;
            rows.iter()
                .map(RawOrder::read)
                .collect::<Result<Vec<_>, _>>()?
        });
        raws.into_iter()
            .map(|r| r.parse().map(|l| l.journal))
            .collect()
    }

    /// Runs raw SQL (one or more statements); for tests that damage the journal.
    #[cfg(test)]
    async fn execute_raw(&self, sql: &str) -> Result<u64, JournalError> {
        Ok(on_pool!(&self.backend, |pool, _Db| {
            sqlx::raw_sql(sql).execute(pool).await?.rows_affected()
        }))
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

enum Bind {
    Text(String),
    Int(i64),
}

/// A statement built at run time and its bind values, in placeholder order.
struct Sql {
    text: String,
    binds: Vec<Bind>,
}

impl Sql {
    fn new(text: String) -> Sql {
        Sql {
            text,
            binds: Vec::new(),
        }
    }

    /// Adds a bind value and returns its placeholder.
    fn param(&mut self, b: Bind) -> String {
        self.binds.push(b);
        format!("${}", self.binds.len())
    }

    fn query<DB>(&self) -> sqlx::query::Query<'_, DB, <DB as sqlx::Database>::Arguments<'_>>
    where
        DB: sqlx::Database,
        for<'q> &'q str: sqlx::Encode<'q, DB> + Type<DB>,
        i64: for<'q> sqlx::Encode<'q, DB> + Type<DB>,
    {
        let mut q = sqlx::query::<DB>(&self.text);
        for b in &self.binds {
            q = match b {
                Bind::Text(s) => q.bind(s.as_str()),
                Bind::Int(i) => q.bind(*i),
            };
        }
        q
    }
}

/// An order row with its bookkeeping, parsed.
struct Loaded {
    id: i64,
    last_seq: i64,
    journal: JournalOrder,
}

impl Loaded {
    /// The order's stored symbol and side are authoritative; a report that disagrees points
    /// at a venue adapter bug, worth a warning but not worth losing the report.
    fn check_identity(&self, report: &ExecReport) {
        let request = &self.journal.state.request;
        if request.symbol != report.symbol || request.side != report.side {
            tracing::warn!(
                agent = %report.agent,
                client_id = %report.client_id,
                order_symbol = %request.symbol,
                report_symbol = %report.symbol,
                "execution report disagrees with the journaled order's symbol or side"
            );
        }
    }
}

/// Where a stored value came from, for [`JournalError::Corrupt`].
struct At<'a> {
    table: &'static str,
    row: &'a str,
}

impl At<'_> {
    fn corrupt(&self, column: &'static str, what: impl Into<String>) -> JournalError {
        JournalError::Corrupt {
            table: self.table,
            row: self.row.to_string(),
            column,
            what: what.into(),
        }
    }

    fn get<'r, R, T>(&self, row: &'r R, column: &'static str) -> Result<T, JournalError>
    where
        R: Row,
        &'static str: ColumnIndex<R>,
        T: Decode<'r, R::Database> + Type<R::Database>,
    {
        row.try_get(column)
            .map_err(|e| self.corrupt(column, e.to_string()))
    }

    fn decimal(&self, column: &'static str, s: &str) -> Result<Decimal, JournalError> {
        Decimal::from_str_exact(s)
            .map_err(|e| self.corrupt(column, format!("{s:?} is not a decimal ({e})")))
    }

    fn timestamp(&self, column: &'static str, ns: i64) -> Result<Timestamp, JournalError> {
        Timestamp::try_from(ns).map_err(|_| self.corrupt(column, format!("{ns} is negative")))
    }

    fn count(&self, column: &'static str, n: i64) -> Result<u64, JournalError> {
        u64::try_from(n).map_err(|_| self.corrupt(column, format!("{n} is negative")))
    }

    fn text<T>(
        &self,
        column: &'static str,
        s: &str,
        parse: fn(&str) -> Option<T>,
        what: &str,
    ) -> Result<T, JournalError> {
        parse(s).ok_or_else(|| self.corrupt(column, format!("{s:?} is not {what}")))
    }

    fn required(
        &self,
        column: &'static str,
        v: Option<String>,
        kind: &str,
    ) -> Result<String, JournalError> {
        v.ok_or_else(|| self.corrupt(column, format!("is NULL in a {kind} event")))
    }
}

/// An `orders` row as stored.
struct RawOrder {
    id: i64,
    agent: String,
    client_id: String,
    venue: String,
    symbol: String,
    side: String,
    kind: String,
    price: Option<String>,
    qty: String,
    tif: String,
    post_only: bool,
    reduce_only: bool,
    status: String,
    venue_order_id: Option<String>,
    filled_qty: String,
    filled_notional: String,
    fees: String,
    reject_code: Option<String>,
    created_ns: i64,
    updated_ns: i64,
    sent_ns: Option<i64>,
    last_seq: i64,
}

impl RawOrder {
    fn read<'r, R>(row: &'r R) -> Result<RawOrder, JournalError>
    where
        R: Row,
        &'static str: ColumnIndex<R>,
        String: Decode<'r, R::Database> + Type<R::Database>,
        i64: Decode<'r, R::Database> + Type<R::Database>,
        bool: Decode<'r, R::Database> + Type<R::Database>,
    {
        let id: i64 = At {
            table: "orders",
            row: "?",
        }
        .get(row, "id")?;
        let key = format!("id {id}");
        let at = At {
            table: "orders",
            row: &key,
        };
        Ok(RawOrder {
            id,
            agent: at.get(row, "agent")?,
            client_id: at.get(row, "client_id")?,
            venue: at.get(row, "venue")?,
            symbol: at.get(row, "symbol")?,
            side: at.get(row, "side")?,
            kind: at.get(row, "kind")?,
            price: at.get(row, "price")?,
            qty: at.get(row, "qty")?,
            tif: at.get(row, "tif")?,
            post_only: at.get(row, "post_only")?,
            reduce_only: at.get(row, "reduce_only")?,
            status: at.get(row, "status")?,
            venue_order_id: at.get(row, "venue_order_id")?,
            filled_qty: at.get(row, "filled_qty")?,
            filled_notional: at.get(row, "filled_notional")?,
            fees: at.get(row, "fees")?,
            reject_code: at.get(row, "reject_code")?,
            created_ns: at.get(row, "created_ns")?,
            updated_ns: at.get(row, "updated_ns")?,
            sent_ns: at.get(row, "sent_ns")?,
            last_seq: at.get(row, "last_seq")?,
        })
    }

    fn parse(self) -> Result<Loaded, JournalError> {
        let key = format!(
            "id {} (agent {:?}, client_id {:?})",
            self.id, self.agent, self.client_id
        );
        let at = At {
            table: "orders",
            row: &key,
        };
        let request = OrderRequest {
            side: at.text("side", &self.side, Side::parse, "a side")?,
            kind: at.text("kind", &self.kind, OrderKind::parse, "an order kind")?,
            price: match &self.price {
                Some(p) => Some(at.decimal("price", p)?),
                None => None,
            },
            qty: at.decimal("qty", &self.qty)?,
            tif: at.text("tif", &self.tif, TimeInForce::parse, "a time in force")?,
            post_only: self.post_only,
            reduce_only: self.reduce_only,
            client_id: self.client_id,
            agent: self.agent.into(),
            symbol: self.symbol.into(),
        };
        let state = OrderState {
            request,
            status: at.text("status", &self.status, OrderStatus::parse, "a status")?,
            venue_order_id: self.venue_order_id,
            filled_qty: at.decimal("filled_qty", &self.filled_qty)?,
            filled_notional: at.decimal("filled_notional", &self.filled_notional)?,
            fees: at.decimal("fees", &self.fees)?,
            reject_code: self.reject_code,
            created: at.timestamp("created_ns", self.created_ns)?,
            updated: at.timestamp("updated_ns", self.updated_ns)?,
        };
        if let Some(ns) = self.sent_ns {
            at.timestamp("sent_ns", ns)?;
        }
        at.count("last_seq", self.last_seq)?;
        Ok(Loaded {
            id: self.id,
            last_seq: self.last_seq,
            journal: JournalOrder {
                venue: self.venue,
                state,
                sent: self.sent_ns.is_some(),
            },
        })
    }
}

/// An `order_events` row as stored, with its order's venue, agent, client id, symbol and side.
struct RawEvent {
    venue: String,
    agent: String,
    client_id: String,
    symbol: String,
    side: String,
    order_id: i64,
    seq: i64,
    ts_ns: i64,
    kind: String,
    venue_order_id: Option<String>,
    reject_code: Option<String>,
    message: Option<String>,
    qty: Option<String>,
    price: Option<String>,
    fee: Option<String>,
    fee_currency: Option<String>,
    liquidity: Option<String>,
}

impl RawEvent {
    fn read<'r, R>(row: &'r R) -> Result<RawEvent, JournalError>
    where
        R: Row,
        &'static str: ColumnIndex<R>,
        String: Decode<'r, R::Database> + Type<R::Database>,
        i64: Decode<'r, R::Database> + Type<R::Database>,
    {
        let at = At {
            table: "order_events",
            row: "?",
        };
        let order_id: i64 = at.get(row, "order_id")?;
        let seq: i64 = at.get(row, "seq")?;
        let key = format!("order_id {order_id} seq {seq}");
        let at = At {
            table: "order_events",
            row: &key,
        };
        let order_key = format!("id {order_id}");
        let order_at = At {
            table: "orders",
            row: &order_key,
        };
        Ok(RawEvent {
            venue: order_at.get(row, "venue")?,
            agent: order_at.get(row, "agent")?,
            client_id: order_at.get(row, "client_id")?,
            symbol: order_at.get(row, "symbol")?,
            side: order_at.get(row, "side")?,
            order_id,
            seq,
            ts_ns: at.get(row, "ts_ns")?,
            kind: at.get(row, "kind")?,
            venue_order_id: at.get(row, "venue_order_id")?,
            reject_code: at.get(row, "reject_code")?,
            message: at.get(row, "message")?,
            qty: at.get(row, "qty")?,
            price: at.get(row, "price")?,
            fee: at.get(row, "fee")?,
            fee_currency: at.get(row, "fee_currency")?,
            liquidity: at.get(row, "liquidity")?,
        })
    }

    /// The event and its order's venue.
    fn parse(self) -> Result<(String, JournalEvent), JournalError> {
        let key = format!("order_id {} seq {}", self.order_id, self.seq);
        let at = At {
            table: "order_events",
            row: &key,
        };
        let order_key = format!("id {}", self.order_id);
        let side = At {
            table: "orders",
            row: &order_key,
        }
        .text("side", &self.side, Side::parse, "a side")?;
        let kind = match self.kind.as_str() {
            "accepted" => ExecKind::Accepted,
            "rejected" => ExecKind::Rejected {
                code: at.required("reject_code", self.reject_code, "rejected")?,
                message: at.required("message", self.message, "rejected")?,
            },
            "fill" => ExecKind::Fill(FillReport {
                qty: at.decimal("qty", &at.required("qty", self.qty, "fill")?)?,
                price: at.decimal("price", &at.required("price", self.price, "fill")?)?,
                fee: at.decimal("fee", &at.required("fee", self.fee, "fill")?)?,
                fee_currency: at
                    .required("fee_currency", self.fee_currency, "fill")?
                    .into(),
                liquidity: at.text(
                    "liquidity",
                    &at.required("liquidity", self.liquidity, "fill")?,
                    Liquidity::parse,
                    "maker or taker",
                )?,
            }),
            "cancelled" => ExecKind::Cancelled,
            "expired" => ExecKind::Expired,
            other => return Err(at.corrupt("kind", format!("{other:?} is not an event kind"))),
        };
        let event = JournalEvent {
            seq: at.count("seq", self.seq)?,
            report: ExecReport {
                agent: self.agent.into(),
                client_id: self.client_id,
                symbol: self.symbol.into(),
                side,
                venue_order_id: self.venue_order_id,
                kind,
                ts: at.timestamp("ts_ns", self.ts_ns)?,
            },
        };
        Ok((self.venue, event))
    }
}

/// The `order_events` columns of one report's kind.
struct EventColumns<'a> {
    kind: &'static str,
    reject_code: Option<&'a str>,
    message: Option<&'a str>,
    qty: Option<String>,
    price: Option<String>,
    fee: Option<String>,
    fee_currency: Option<&'a str>,
    liquidity: Option<&'static str>,
}

impl<'a> EventColumns<'a> {
    fn of(kind: &'a ExecKind) -> EventColumns<'a> {
        let bare = |kind| EventColumns {
            kind,
            reject_code: None,
            message: None,
            qty: None,
            price: None,
            fee: None,
            fee_currency: None,
            liquidity: None,
        };
        match kind {
            ExecKind::Accepted => bare("accepted"),
            ExecKind::Rejected { code, message } => EventColumns {
                reject_code: Some(code.as_str()),
                message: Some(message.as_str()),
                ..bare("rejected")
            },
            ExecKind::Fill(f) => EventColumns {
                qty: Some(f.qty.to_string()),
                price: Some(f.price.to_string()),
                fee: Some(f.fee.to_string()),
                fee_currency: Some(&*f.fee_currency),
                liquidity: Some(Liquidity::as_str(f.liquidity)),
                ..bare("fill")
            },
            ExecKind::Cancelled => bare("cancelled"),
            ExecKind::Expired => bare("expired"),
        }
    }
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
mod tests {
    //! Every scenario runs on SQLite (a temp dir) and on PostgreSQL at
    //! `postgres://postgres@127.0.0.1:5432/` (a fresh database per test, dropped afterwards).
    //! PostgreSQL is required infrastructure: if it is unreachable the `postgres::` tests fail.

    use std::future::Future;
    use std::sync::atomic::{AtomicU64, Ordering};

    use super::*;
    use crate::audit::testing;

    const PG_SERVER: &str = "postgres://postgres@127.0.0.1:5432/";
    const SYMBOL: &str = "BTC-USDT";

    enum TestDb {
        Sqlite(tempfile::TempDir),
        Postgres(String),
    }

    impl TestDb {
        fn sqlite() -> TestDb {
            TestDb::Sqlite(tempfile::tempdir().expect("temp dir"))
        }

        async fn postgres() -> TestDb {
            static NEXT: AtomicU64 = AtomicU64::new(0);
            let name = format!(
                "colony_journal_{}_{}_{}",
                std::process::id(),
                crate::audit::now_ns(),
                NEXT.fetch_add(1, Ordering::Relaxed)
            );
            if let Err(e) = testing::create_postgres_database(PG_SERVER, &name).await {
                panic!("PostgreSQL at {PG_SERVER} is required for the journal tests: {e}");
            }
            TestDb::Postgres(name)
        }

        fn url(&self) -> String {
            match self {
                TestDb::Sqlite(dir) => {
                    format!("sqlite://{}", dir.path().join("orders.db").display())
                }
                TestDb::Postgres(name) => format!("{PG_SERVER}{name}"),
            }
        }

        async fn cleanup(self) {
            if let TestDb::Postgres(name) = self
                && let Err(e) = testing::drop_postgres_database(PG_SERVER, &name).await
            {
                eprintln!("could not drop test database {name}: {e}");
            }
        }
    }

    /// Runs `scenario` on the database's URL, then drops the database even if it panicked.
    async fn run<F, Fut>(db: TestDb, scenario: F)
    where
        F: FnOnce(String) -> Fut,
        Fut: Future<Output = ()> + Send + 'static,
    {
        let outcome = tokio::spawn(scenario(db.url())).await;
        db.cleanup().await;
        if let Err(e) = outcome {
            std::panic::resume_unwind(e.into_panic());
        }
    }

    /// One test per scenario and backend: `sqlite::NAME` and `postgres::NAME`.
    macro_rules! on_both_backends {
        ($($name:ident),* $(,)?) => {
            mod sqlite {
                $(
                    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                    async fn $name() {
                        super::run(super::TestDb::sqlite(), super::$name).await;
                    }
                )*
            }
            mod postgres {
                $(
                    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                    async fn $name() {
                        super::run(super::TestDb::postgres().await, super::$name).await;
                    }
                )*
            }
        };
    }

    on_both_backends!(
        an_order_goes_from_intent_to_filled,
        open_orders_are_oldest_first_and_exclude_closed_ones,
        a_reopened_journal_sees_everything,
        a_batch_with_an_unknown_order_writes_nothing,
        concurrent_reports_for_one_order_get_gap_free_seqs,
        corrupt_values_are_reported_with_their_column,
        decimals_round_trip_exactly,
    );

    fn d(s: &str) -> Decimal {
        Decimal::from_str_exact(s).expect("test decimal")
    }

    fn request(agent: &str, client_id: &str, qty: &str, price: Option<&str>) -> OrderRequest {
        OrderRequest {
            client_id: client_id.to_string(),
            agent: agent.into(),
            symbol: SYMBOL.into(),
            side: Side::Buy,
            kind: if price.is_some() {
                OrderKind::Limit
            } else {
                OrderKind::Market
            },
            price: price.map(d),
            qty: d(qty),
            tif: TimeInForce::Gtc,
            post_only: false,
            reduce_only: false,
        }
    }

    fn report(agent: &str, client_id: &str, kind: ExecKind, ts: Timestamp) -> ExecReport {
        ExecReport {
            agent: agent.into(),
            client_id: client_id.to_string(),
            symbol: SYMBOL.into(),
            side: Side::Buy,
            venue_order_id: Some(format!("v-{client_id}")),
            kind,
            ts,
        }
    }

    fn fill(qty: &str, price: &str, fee: &str) -> ExecKind {
        ExecKind::Fill(FillReport {
            qty: d(qty),
            price: d(price),
            fee: d(fee),
            fee_currency: "USDT".into(),
            liquidity: Liquidity::Taker,
        })
    }

    async fn open(url: &str) -> Journal {
        Journal::open(url).await.expect("open journal")
    }

    fn client_ids(orders: &[JournalOrder]) -> Vec<&str> {
        orders
            .iter()
            .map(|o| o.state.request.client_id.as_str())
            .collect()
    }

    /// Decimals compared by their text, so a changed scale (`1.5` vs `1.50`) fails too.
    fn assert_same_state(got: &OrderState, want: &OrderState) {
        assert_eq!(got, want);
        for (name, g, w) in [
            ("filled_qty", got.filled_qty, want.filled_qty),
            ("filled_notional", got.filled_notional, want.filled_notional),
            ("fees", got.fees, want.fees),
            ("qty", got.request.qty, want.request.qty),
        ] {
            assert_eq!(g.to_string(), w.to_string(), "{name}");
        }
    }

    async fn an_order_goes_from_intent_to_filled(url: String) {
        let j = open(&url).await;
        let req = request("alpha", "c1", "1.5", Some("100.10"));
        j.record_intent("paper", &req, 10).await.unwrap();

        // The same (agent, client id) again is refused and the first intent stands.
        let retry = request("alpha", "c1", "9", None);
        match j.record_intent("paper", &retry, 11).await {
            Err(JournalError::Duplicate { agent, client_id }) => {
                assert_eq!((agent.as_str(), client_id.as_str()), ("alpha", "c1"));
            }
            other => panic!("expected Duplicate, got {other:?}"),
        }
        // Another agent may use the same client id.
        j.record_intent("paper", &request("beta", "c1", "1", None), 11)
            .await
            .unwrap();

        let o = j.order("alpha", "c1").await.unwrap().unwrap();
        assert_eq!(o.venue, "paper");
        assert_eq!(o.state, OrderState::new(req.clone(), 10));
        assert!(!o.sent);

        j.mark_sent("alpha", "c1", 11).await.unwrap();
        assert!(j.order("alpha", "c1").await.unwrap().unwrap().sent);
        assert!(matches!(
            j.mark_sent("alpha", "nope", 11).await,
            Err(JournalError::UnknownOrder { .. })
        ));

        let reports = [
            report("alpha", "c1", ExecKind::Accepted, 12),
            report("alpha", "c1", fill("0.5", "100.10", "0.05"), 13),
            report("alpha", "c1", fill("1.0", "100.04", "0.10"), 14),
        ];
        let mut want = OrderState::new(req.clone(), 10);
        let statuses = [
            OrderStatus::Accepted,
            OrderStatus::PartiallyFilled,
            OrderStatus::Filled,
        ];
        for (r, status) in reports.iter().zip(statuses) {
            j.record(r).await.unwrap();
            want.apply(r);
            let o = j.order("alpha", "c1").await.unwrap().unwrap();
            assert_eq!(o.state.status, status);
            assert_same_state(&o.state, &want);
        }
        let o = j.order("alpha", "c1").await.unwrap().unwrap();
        assert!(o.sent);
        assert_eq!(o.state.venue_order_id.as_deref(), Some("v-c1"));
        assert_eq!(o.state.filled_qty.to_string(), "1.5");
        assert_eq!(o.state.filled_notional.to_string(), "150.090");
        assert_eq!(o.state.avg_price(), Some(d("100.06")));
        assert_eq!(o.state.fees.to_string(), "0.15");
        assert_eq!(o.state.updated, 14);

        let events = j.events("alpha", "c1").await.unwrap();
        assert_eq!(events.iter().map(|e| e.seq).collect::<Vec<_>>(), [1, 2, 3]);
        assert_eq!(
            events.into_iter().map(|e| e.report).collect::<Vec<_>>(),
            reports
        );
        assert!(j.events("alpha", "nope").await.unwrap().is_empty());
        assert!(j.events("beta", "c1").await.unwrap().is_empty());

        // A late fill after the order is filled still lands in the events.
        j.record(&report("alpha", "c1", ExecKind::Cancelled, 15))
            .await
            .unwrap();
        assert_eq!(
            j.order("alpha", "c1").await.unwrap().unwrap().state.status,
            OrderStatus::Filled
        );
        assert_eq!(j.events("alpha", "c1").await.unwrap().len(), 4);

        let fills = j.fills(Some("alpha"), 10).await.unwrap();
        assert_eq!(fills.len(), 2);
        assert_eq!((fills[0].seq, fills[0].ts), (3, 14));
        assert_eq!(fills[0].fill.price.to_string(), "100.04");
        assert_eq!(fills[1].fill.qty.to_string(), "0.5");
        assert_eq!(fills[0].venue, "paper");
        assert_eq!(fills[0].venue_order_id.as_deref(), Some("v-c1"));
        assert_eq!(j.fills(None, 1).await.unwrap().len(), 1);
        assert!(j.fills(Some("beta"), 10).await.unwrap().is_empty());

        let rejected = report(
            "beta",
            "c1",
            ExecKind::Rejected {
                code: "venue.rejected".into(),
                message: "insufficient balance".into(),
            },
            16,
        );
        j.record(&rejected).await.unwrap();
        let b = j.order("beta", "c1").await.unwrap().unwrap();
        assert_eq!(b.state.status, OrderStatus::Rejected);
        assert_eq!(b.state.reject_code.as_deref(), Some("venue.rejected"));
        assert_eq!(j.events("beta", "c1").await.unwrap()[0].report, rejected);

        assert!(matches!(
            j.record(&report("alpha", "ghost", ExecKind::Accepted, 17)).await,
            Err(JournalError::UnknownOrder { agent, client_id })
                if agent == "alpha" && client_id == "ghost"
        ));
        j.close().await;
    }

    async fn open_orders_are_oldest_first_and_exclude_closed_ones(url: String) {
        let j = open(&url).await;
        // Created out of order: open orders come back by creation time, not insertion.
        for (venue, agent, id, ts) in [
            ("paper", "alpha", "late", 50),
            ("okx", "alpha", "early", 20),
            ("paper", "beta", "middle", 30),
            ("paper", "alpha", "done", 10),
            ("okx", "beta", "gone", 40),
        ] {
            j.record_intent(venue, &request(agent, id, "1", Some("10")), ts)
                .await
                .unwrap();
        }
        j.mark_sent("alpha", "early", 21).await.unwrap();
        j.record_batch(&[
            report("alpha", "early", ExecKind::Accepted, 22),
            report("beta", "middle", ExecKind::Accepted, 31),
            report("beta", "middle", fill("0.25", "10", "0"), 32),
            report("alpha", "done", fill("1", "10", "0"), 33),
            report("beta", "gone", ExecKind::Expired, 41),
        ])
        .await
        .unwrap();

        let open_orders = j.open_orders(None).await.unwrap();
        assert_eq!(client_ids(&open_orders), ["early", "middle", "late"]);
        let statuses: Vec<_> = open_orders.iter().map(|o| o.state.status).collect();
        assert_eq!(
            statuses,
            [
                OrderStatus::Accepted,
                OrderStatus::PartiallyFilled,
                OrderStatus::Pending
            ]
        );
        let sent: Vec<_> = open_orders.iter().map(|o| o.sent).collect();
        assert_eq!(sent, [true, false, false]);
        assert_eq!(
            client_ids(&j.open_orders(Some("okx")).await.unwrap()),
            ["early"]
        );
        assert!(j.open_orders(Some("alpaca")).await.unwrap().is_empty());

        let all = j.orders(&OrderFilter::default()).await.unwrap();
        assert_eq!(
            client_ids(&all),
            ["late", "gone", "middle", "early", "done"]
        );
        let alpha_open = OrderFilter {
            agent: Some("alpha".into()),
            open_only: true,
            ..OrderFilter::default()
        };
        assert_eq!(
            client_ids(&j.orders(&alpha_open).await.unwrap()),
            ["late", "early"]
        );
        let newest_two = OrderFilter {
            symbol: Some(SYMBOL.into()),
            limit: Some(2),
            ..OrderFilter::default()
        };
        assert_eq!(
            client_ids(&j.orders(&newest_two).await.unwrap()),
            ["late", "gone"]
        );
        let other_symbol = OrderFilter {
            symbol: Some("ETH-USDT".into()),
            ..OrderFilter::default()
        };
        assert!(j.orders(&other_symbol).await.unwrap().is_empty());
        j.close().await;
    }

    async fn a_reopened_journal_sees_everything(url: String) {
        let first = open(&url).await;
        let req = request("alpha", "c1", "2", Some("5.5"));
        first.record_intent("paper", &req, 1).await.unwrap();
        first.mark_sent("alpha", "c1", 2).await.unwrap();
        let reports = [
            report("alpha", "c1", ExecKind::Accepted, 3),
            report("alpha", "c1", fill("0.5", "5.5", "0.001"), 4),
        ];
        first.record_batch(&reports).await.unwrap();
        first
            .record_intent("paper", &request("alpha", "c2", "1", None), 5)
            .await
            .unwrap();
        let before = first.order("alpha", "c1").await.unwrap().unwrap();

        // A second pool on the same database while the first is still open, as a restarted
        // host after a crash would (the first never closed).
        let second = open(&url).await;
        let after = second.order("alpha", "c1").await.unwrap().unwrap();
        assert_eq!(after, before);
        assert_same_state(&after.state, &before.state);
        assert!(after.sent);
        assert_eq!(
            second
                .events("alpha", "c1")
                .await
                .unwrap()
                .into_iter()
                .map(|e| e.report)
                .collect::<Vec<_>>(),
            reports
        );
        let open_orders = second.open_orders(None).await.unwrap();
        assert_eq!(client_ids(&open_orders), ["c1", "c2"]);
        assert_eq!(
            (open_orders[0].sent, open_orders[1].sent),
            (true, false),
            "reconciliation tells maybe-sent from never-sent"
        );
        // The reopened journal still refuses the old client ids and continues the seqs.
        assert!(matches!(
            second.record_intent("paper", &req, 6).await,
            Err(JournalError::Duplicate { .. })
        ));
        second
            .record(&report("alpha", "c1", fill("1.5", "5.5", "0"), 7))
            .await
            .unwrap();
        let seqs: Vec<u64> = first
            .events("alpha", "c1")
            .await
            .unwrap()
            .iter()
            .map(|e| e.seq)
            .collect();
        assert_eq!(seqs, [1, 2, 3]);
        first.close().await;
        second.close().await;

        let third = open(&url).await;
        let o = third.order("alpha", "c1").await.unwrap().unwrap();
        assert_eq!(o.state.status, OrderStatus::Filled);
        assert_eq!(o.state.filled_notional.to_string(), "11.00");
        third.close().await;
    }

    async fn a_batch_with_an_unknown_order_writes_nothing(url: String) {
        let j = open(&url).await;
        let req = request("alpha", "c1", "1", Some("10"));
        j.record_intent("paper", &req, 1).await.unwrap();
        j.record_intent("paper", &request("alpha", "c2", "1", None), 1)
            .await
            .unwrap();
        let bad = [
            report("alpha", "c1", ExecKind::Accepted, 2),
            report("alpha", "c2", fill("1", "10", "0"), 3),
            report("alpha", "c1", fill("1", "10", "0"), 4),
            report("alpha", "ghost", ExecKind::Accepted, 5),
        ];
        match j.record_batch(&bad).await {
            Err(JournalError::UnknownOrder { agent, client_id }) => {
                assert_eq!((agent.as_str(), client_id.as_str()), ("alpha", "ghost"));
            }
            other => panic!("expected UnknownOrder, got {other:?}"),
        }
        for id in ["c1", "c2"] {
            let o = j.order("alpha", id).await.unwrap().unwrap();
            assert_eq!(o.state.status, OrderStatus::Pending, "{id}");
            assert!(j.events("alpha", id).await.unwrap().is_empty(), "{id}");
        }
        assert!(j.fills(None, 10).await.unwrap().is_empty());

        // Without the unknown order the same batch goes through, in order.
        j.record_batch(&bad[..3]).await.unwrap();
        let c1 = j.order("alpha", "c1").await.unwrap().unwrap();
        assert_eq!(c1.state.status, OrderStatus::Filled);
        let mut want = OrderState::new(req, 1);
        want.apply(&bad[0]);
        want.apply(&bad[2]);
        assert_same_state(&c1.state, &want);
        assert_eq!(
            j.events("alpha", "c1")
                .await
                .unwrap()
                .iter()
                .map(|e| (e.seq, e.report.ts))
                .collect::<Vec<_>>(),
            [(1, 2), (2, 4)]
        );
        assert_eq!(j.events("alpha", "c2").await.unwrap().len(), 1);
        j.record_batch(&[]).await.unwrap();
        j.close().await;
    }

    async fn concurrent_reports_for_one_order_get_gap_free_seqs(url: String) {
        let j = open(&url).await;
        j.record_intent("paper", &request("alpha", "c1", "2.0", Some("1")), 1)
            .await
            .unwrap();
        let tasks: Vec<_> = (0..20u64)
            .map(|i| {
                let j = j.clone();
                tokio::spawn(async move {
                    j.record(&report("alpha", "c1", fill("0.1", "1", "0.01"), 10 + i))
                        .await
                })
            })
            .collect();
        for t in tasks {
            t.await.unwrap().unwrap();
        }
        let seqs: Vec<u64> = j
            .events("alpha", "c1")
            .await
            .unwrap()
            .iter()
            .map(|e| e.seq)
            .collect();
        assert_eq!(seqs, (1..=20).collect::<Vec<_>>());
        let o = j.order("alpha", "c1").await.unwrap().unwrap();
        assert_eq!(o.state.filled_qty, d("2.0"));
        assert_eq!(o.state.fees, d("0.20"));
        assert_eq!(o.state.status, OrderStatus::Filled);
        assert_eq!(o.state.updated, 29);
        j.close().await;
    }

    fn corrupt_column(r: Result<impl std::fmt::Debug, JournalError>) -> (&'static str, String) {
        match r {
            Err(JournalError::Corrupt {
                table,
                column,
                row,
                what,
            }) => {
                assert!(!row.is_empty() && !what.is_empty());
                (table, column.to_string())
            }
            other => panic!("expected Corrupt, got {other:?}"),
        }
    }

    async fn corrupt_values_are_reported_with_their_column(url: String) {
        let j = open(&url).await;
        j.record_intent("paper", &request("alpha", "c1", "1", Some("10")), 1)
            .await
            .unwrap();
        j.record(&report("alpha", "c1", fill("0.5", "10", "0"), 2))
            .await
            .unwrap();

        j.execute_raw("UPDATE orders SET filled_qty = '0.5x' WHERE client_id = 'c1'")
            .await
            .unwrap();
        let err = j.order("alpha", "c1").await.unwrap_err();
        let text = err.to_string();
        assert!(
            text.contains("orders row id") && text.contains("column filled_qty"),
            "{text}"
        );
        assert!(text.contains("\"0.5x\" is not a decimal"), "{text}");
        assert_eq!(
            corrupt_column(j.open_orders(None).await),
            ("orders", "filled_qty".into())
        );
        assert_eq!(
            corrupt_column(j.orders(&OrderFilter::default()).await),
            ("orders", "filled_qty".into())
        );
        // A report for a corrupt order is refused and writes nothing.
        assert_eq!(
            corrupt_column(
                j.record(&report("alpha", "c1", ExecKind::Cancelled, 3))
                    .await
            ),
            ("orders", "filled_qty".into())
        );
        assert_eq!(j.events("alpha", "c1").await.unwrap().len(), 1);

        j.execute_raw("UPDATE orders SET filled_qty = '0.5', status = 'bogus'")
            .await
            .unwrap();
        assert_eq!(
            corrupt_column(j.order("alpha", "c1").await),
            ("orders", "status".into())
        );
        j.execute_raw("UPDATE orders SET status = 'partially-filled', created_ns = -1")
            .await
            .unwrap();
        assert_eq!(
            corrupt_column(j.order("alpha", "c1").await),
            ("orders", "created_ns".into())
        );
        j.execute_raw("UPDATE orders SET created_ns = 1")
            .await
            .unwrap();
        assert!(j.order("alpha", "c1").await.unwrap().is_some());

        j.execute_raw("UPDATE order_events SET price = '1e5' WHERE seq = 1")
            .await
            .unwrap();
        assert_eq!(
            corrupt_column(j.events("alpha", "c1").await),
            ("order_events", "price".into())
        );
        assert_eq!(
            corrupt_column(j.fills(None, 10).await),
            ("order_events", "price".into())
        );
        j.execute_raw("UPDATE order_events SET price = '10', liquidity = NULL")
            .await
            .unwrap();
        let err = j.events("alpha", "c1").await.unwrap_err().to_string();
        assert!(
            err.contains("order_events row order_id")
                && err.contains("seq 1")
                && err.contains("column liquidity: is NULL in a fill event"),
            "{err}"
        );
        j.execute_raw("UPDATE order_events SET liquidity = 'taker', kind = 'teleported'")
            .await
            .unwrap();
        assert_eq!(
            corrupt_column(j.events("alpha", "c1").await),
            ("order_events", "kind".into())
        );
        j.close().await;
    }

    async fn decimals_round_trip_exactly(url: String) {
        let j = open(&url).await;
        let values = [
            "1234567890.123456789012345678",  // 28 significant digits
            "0.0000000000000000000000000001", // smallest step, scale 28
            "9999999999999999999999999999",   // 28 nines
            "79228162514264337593543950335",  // Decimal::MAX
            "1.5000000000000000000000000000", // trailing zeros kept
            "-0.0000000000000000000000000001",
        ];
        for (i, v) in values.iter().enumerate() {
            let id = format!("c{i}");
            let mut req = request("alpha", &id, v, Some(v));
            req.qty = d(v).abs();
            j.record_intent("paper", &req, 1).await.unwrap();
            let f = report("alpha", &id, fill(v, v, v), 2);
            j.record(&f).await.unwrap();
            let mut want = OrderState::new(req.clone(), 1);
            want.apply(&f);

            let o = j.order("alpha", &id).await.unwrap().unwrap();
            assert_eq!(
                o.state.request.price.map(|p| p.to_string()).as_deref(),
                Some(*v)
            );
            assert_same_state(&o.state, &want);
            let events = j.events("alpha", &id).await.unwrap();
            let ExecKind::Fill(got) = &events[0].report.kind else {
                panic!("expected a fill, got {:?}", events[0].report.kind);
            };
            for (name, x) in [("qty", got.qty), ("price", got.price), ("fee", got.fee)] {
                assert_eq!(x.to_string(), *v, "{name} of {v}");
                assert_eq!(x.scale(), d(v).scale(), "{name} of {v}");
            }
        }
        j.close().await;
    }

    #[tokio::test]
    async fn unsupported_schemes_and_bad_urls_fail_without_showing_the_password() {
        let err = Journal::open("mysql://trader:hunter2@db/orders")
            .await
            .err()
            .expect("mysql is refused");
        let text = err.to_string();
        assert!(matches!(err, JournalError::Open { .. }), "{text}");
        assert!(text.contains("mysql://db/orders"), "{text}");
        assert!(!text.contains("hunter2"), "{text}");

        let err = Journal::open("postgres://trader:hunter2@127.0.0.1:port/x?password=hunter2")
            .await
            .err()
            .expect("the port is not a number");
        let text = err.to_string();
        assert!(matches!(err, JournalError::Open { .. }), "{text}");
        assert!(
            !text.contains("hunter2") && !text.contains("trader"),
            "{text}"
        );
    }

    #[test]
    fn urls_lose_their_credentials() {
        let cases = [
            (
                "postgres://u:secret@host:5432/db",
                "postgres://host:5432/db",
            ),
            ("postgres://u@host/db", "postgres://host/db"),
            ("postgres://host/db", "postgres://host/db"),
            (
                "postgresql://u:p@ss@host/db?sslmode=require&password=secret",
                "postgresql://host/db?sslmode=require&password=redacted",
            ),
            ("postgres://u:secret@host", "postgres://host"),
            ("sqlite://data/orders.db", "sqlite://data/orders.db"),
            ("sqlite::memory:", "sqlite::memory:"),
        ];
        for (url, want) in cases {
            assert_eq!(redact_url(url), want, "{url}");
        }
    }

    #[test]
    fn enum_texts_round_trip() {
        for s in [Side::Buy, Side::Sell] {
            assert_eq!(Side::parse(Side::as_str(s)), Some(s));
        }
        for k in [OrderKind::Market, OrderKind::Limit] {
            assert_eq!(OrderKind::parse(OrderKind::as_str(k)), Some(k));
        }
        for t in [TimeInForce::Gtc, TimeInForce::Ioc, TimeInForce::Fok] {
            assert_eq!(TimeInForce::parse(TimeInForce::as_str(t)), Some(t));
        }
        for l in [Liquidity::Maker, Liquidity::Taker] {
            assert_eq!(Liquidity::parse(Liquidity::as_str(l)), Some(l));
        }
        for bad in ["", "BUY", "Buy ", "limit\0"] {
            assert_eq!(Side::parse(bad), None);
            assert_eq!(OrderKind::parse(bad), None);
            assert_eq!(TimeInForce::parse(bad), None);
            assert_eq!(Liquidity::parse(bad), None);
        }
    }

    #[test]
    fn the_open_status_list_is_every_status_that_is_not_closed() {
        let all = [
            OrderStatus::Pending,
            OrderStatus::Accepted,
            OrderStatus::PartiallyFilled,
            OrderStatus::Filled,
            OrderStatus::Cancelled,
            OrderStatus::Rejected,
            OrderStatus::Expired,
        ];
        let open: Vec<String> = all
            .iter()
            .filter(|s| !s.is_closed())
            .map(|s| format!("'{}'", s.as_str()))
            .collect();
        assert_eq!(OPEN_STATUSES, format!("({})", open.join(", ")));
    }

    #[tokio::test]
    async fn timestamps_past_i64_are_refused_not_wrapped() {
        let dir = tempfile::tempdir().unwrap();
        let j = open(&format!("sqlite://{}", dir.path().join("o.db").display())).await;
        let ts = Timestamp::MAX;
        assert!(matches!(
            j.record_intent("paper", &request("a", "c", "1", None), ts).await,
            Err(JournalError::TimestampRange(t)) if t == ts
        ));
        assert!(j.order("a", "c").await.unwrap().is_none());
        j.close().await;
    }
}
