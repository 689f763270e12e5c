-- The order journal (host/src/orders/journal.rs): one row per order intent, written before
-- the order is sent, and every report a venue sent about it, in order.
-- Decimals are TEXT as rust_decimal prints them (exact, scale kept; never REAL), timestamps
-- are nanoseconds since the Unix epoch, enums are their lowercase text.

-- `id` (the rowid) breaks ties between orders created in the same nanosecond; an order's
-- identity is (venue, agent, client_id), which is never reused or overwritten. The paper
-- exchange journals under `paper@<run start>`, a venue per run (its book does not outlive
-- the run), so a replay run twice does not collide; lookups by (agent, client_id) find the
-- newest order. The row holds the
-- request as risk passed it and the state folded from its events (OrderState::apply), kept
-- in the same transaction as each event.
CREATE TABLE orders (
    id              INTEGER PRIMARY KEY,
    agent           TEXT    NOT NULL,
    client_id       TEXT    NOT NULL,
    venue           TEXT    NOT NULL,
    symbol          TEXT    NOT NULL,
    side            TEXT    NOT NULL,
    kind            TEXT    NOT NULL,
    price           TEXT    NULL,
    qty             TEXT    NOT NULL,
    tif             TEXT    NOT NULL,
    post_only       BOOLEAN NOT NULL,
    reduce_only     BOOLEAN NOT NULL,
    status          TEXT    NOT NULL,
    venue_order_id  TEXT    NULL,
    filled_qty      TEXT    NOT NULL,
    filled_notional TEXT    NOT NULL,
    fees            TEXT    NOT NULL,
    reject_code     TEXT    NULL,
    created_ns      INTEGER NOT NULL,
    updated_ns      INTEGER NOT NULL,
    -- Set when the request was handed to the venue: NULL means it was never sent.
    sent_ns         INTEGER NULL,
    -- The seq of the order's last event (0: none yet).
    last_seq        INTEGER NOT NULL,
    UNIQUE (venue, agent, client_id)
);
CREATE INDEX orders_created ON orders (created_ns, id);
-- What start-up reconciliation reads: the orders that are not closed.
CREATE INDEX orders_open ON orders (created_ns, id)
    WHERE status IN ('pending', 'accepted', 'partially-filled');

-- Every report about an order, numbered 1, 2, ... per order. `kind` is accepted, rejected,
-- fill, cancelled or expired; the columns of the other kinds are NULL.
CREATE TABLE order_events (
    order_id       INTEGER NOT NULL REFERENCES orders (id),
    seq            INTEGER NOT NULL,
    ts_ns          INTEGER NOT NULL,
    kind           TEXT    NOT NULL,
    venue_order_id TEXT    NULL,
    reject_code    TEXT    NULL,
    message        TEXT    NULL,
    qty            TEXT    NULL,
    price          TEXT    NULL,
    fee            TEXT    NULL,
    fee_currency   TEXT    NULL,
    liquidity      TEXT    NULL,
    PRIMARY KEY (order_id, seq)
) WITHOUT ROWID;
CREATE INDEX order_events_fills ON order_events (ts_ns) WHERE kind = 'fill';
