-- The audit log: one append-only, hash-chained table for every kind of record (decisions,
-- grant history, plugins seen, ...), so that editing or deleting any row breaks the chain.
-- `seq` is assigned by the audit writer (not AUTOINCREMENT): the chain needs gap-free numbers.
-- Hashes are 32-byte blake3 values; see host/src/audit/chain.rs for the encoding.
CREATE TABLE audit_log (
    seq        INTEGER PRIMARY KEY,
    ts_ns      INTEGER NOT NULL,
    kind       TEXT    NOT NULL,
    plugin     TEXT    NOT NULL DEFAULT '',
    digest     TEXT    NOT NULL DEFAULT '',
    capability TEXT    NOT NULL DEFAULT '',
    decision   TEXT    NULL CHECK (decision IN ('allow', 'deny')),
    actor      TEXT    NOT NULL DEFAULT '',
    detail     TEXT    NOT NULL DEFAULT '',
    prev_hash  BLOB    NOT NULL,
    hash       BLOB    NOT NULL
);
CREATE INDEX audit_log_plugin ON audit_log (plugin, seq);
CREATE INDEX audit_log_capability ON audit_log (capability, seq);
CREATE INDEX audit_log_ts ON audit_log (ts_ns);

-- Accidental edits are refused outright; deliberate tampering (dropping these triggers first)
-- is what the hash chain and `audit_head` detect.
CREATE TRIGGER audit_log_no_update BEFORE UPDATE ON audit_log
BEGIN
    SELECT RAISE(ABORT, 'audit_log is append-only');
END;
CREATE TRIGGER audit_log_no_delete BEFORE DELETE ON audit_log
BEGIN
    SELECT RAISE(ABORT, 'audit_log is append-only');
END;

-- The chain head (last seq and its hash), updated in the same transaction as every batch.
-- The chain alone cannot show that its tail was cut off; comparing with this row can.
-- Seeded with the genesis head (seq 0, 32 zero bytes) so there is always a row to lock.
CREATE TABLE audit_head (
    id   INTEGER PRIMARY KEY CHECK (id = 1),
    seq  INTEGER NOT NULL,
    hash BLOB    NOT NULL
);
INSERT INTO audit_head (id, seq, hash) VALUES (1, 0, zeroblob(32));

-- Plugins seen, by digest: a view kept up to date from the `plugin-seen` records (upserted in
-- the same transaction). Not chained; the chained records are the evidence.
CREATE TABLE plugins_seen (
    digest        TEXT    PRIMARY KEY,
    name          TEXT    NOT NULL,
    version       TEXT    NOT NULL,
    first_seen_ns INTEGER NOT NULL,
    last_seen_ns  INTEGER NOT NULL
) WITHOUT ROWID;
