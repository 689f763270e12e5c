//! The statements the journal runs, and statements built at run time with their binds.

use super::*;

/// The PostgreSQL schema holding the journal's tables and migration history.
pub(super) const PG_SCHEMA: &str = "colony_orders";

/// The statuses of an order that is not closed, as SQL (see `OrderStatus::is_closed`).
pub(super) const OPEN_STATUSES: &str = "('pending', 'accepted', 'partially-filled')";

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

/// Binds `$venue` and the request's columns in the order `INSERT_INTENT` and
/// `INSERT_REJECTION` list them (venue, agent, client_id, symbol, side, kind, price, qty, tif,
/// post_only, reduce_only).
macro_rules! bind_request {
    ($query:expr, $venue:expr, $order:expr) => {{
        let order: &OrderRequest = $order;
        $query
            .bind($venue)
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
    }};
}

pub(super) const INSERT_INTENT: &str = "INSERT INTO orders (venue, agent, client_id, symbol, side, kind, \
     price, qty, tif, post_only, reduce_only, status, filled_qty, filled_notional, fees, \
     created_ns, updated_ns, last_seq) \
     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $13, $13, $14, $14, 0) \
     ON CONFLICT (venue, agent, client_id) DO NOTHING";
/// Keeps the first time: the earliest moment the venue may have seen the order.
pub(super) const MARK_SENT: &str = "UPDATE orders SET sent_ns = COALESCE(sent_ns, $1) WHERE id = (SELECT MAX(id) FROM orders \
     WHERE agent = $2 AND client_id = $3)";
pub(super) const SELECT_ORDER: &str = concat!(
    "SELECT ",
    order_columns!(),
    " FROM orders o WHERE o.agent = $1 AND o.client_id = $2 ORDER BY o.id DESC LIMIT 1"
);
pub(super) const SELECT_ORDER_FOR_UPDATE: &str = concat!(
    "SELECT ",
    order_columns!(),
    " FROM orders o WHERE o.agent = $1 AND o.client_id = $2 ORDER BY o.id DESC LIMIT 1 FOR UPDATE"
);
pub(super) const UPDATE_ORDER: &str = "UPDATE orders SET status = $1, venue_order_id = $2, \
     filled_qty = $3, filled_notional = $4, fees = $5, reject_code = $6, updated_ns = $7, \
     last_seq = $8 WHERE id = $9";
pub(super) const INSERT_EVENT: &str = "INSERT INTO order_events (order_id, seq, ts_ns, kind, \
     venue_order_id, reject_code, message, qty, price, fee, fee_currency, liquidity) \
     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)";
pub(super) const SELECT_EVENTS: &str = concat!(
    event_select!(),
    " WHERE e.order_id = (SELECT MAX(id) FROM orders WHERE agent = $1 AND client_id = $2) \
     ORDER BY e.seq"
);

pub(super) enum Bind {
    Text(String),
    Int(i64),
}

/// A statement built at run time and its bind values, in placeholder order.
pub(super) struct Sql {
    pub(super) text: String,
    binds: Vec<Bind>,
}

impl Sql {
    pub(super) fn new(text: String) -> Sql {
        Sql {
            text,
            binds: Vec::new(),
        }
    }

    /// Adds a bind value and returns its placeholder.
    pub(super) fn param(&mut self, b: Bind) -> String {
        self.binds.push(b);
        format!("${}", self.binds.len())
    }

    pub(super) fn query<DB>(
        &self,
    ) -> sqlx::query::Query<'_, DB, <DB as sqlx::Database>::Arguments<'_>>
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

pub(super) const INSERT_REJECTION: &str = "INSERT INTO order_rejections (venue, agent, client_id, \
     symbol, side, kind, price, qty, tif, post_only, reduce_only, code, message, ts_ns) \
     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14)";

pub(super) const INSERT_CANCEL_REQUEST: &str =
    "INSERT INTO cancel_requests (venue, agent, client_id, ts_ns) VALUES ($1, $2, $3, $4)";

/// The `order_rejections` columns every rejection query selects, in [`RawRejection`]'s order.
macro_rules! rejection_columns {
    () => {
        "r.id, r.venue, r.agent, r.client_id, r.symbol, r.side, r.kind, r.price, r.qty, r.tif, \
         r.post_only, r.reduce_only, r.code, r.message, r.ts_ns"
    };
}
