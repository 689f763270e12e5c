-- The audit log: one append-only, hash-chained table for every kind of record (decisions,
-- grant history, plugins seen, ...), so that editing or deleting any row breaks the chain.
-- `seq` is assigned by the audit writer (not a sequence): the chain needs gap-free numbers.
-- Hashes are 32-byte blake3 values; see host/src/audit/chain.rs for the encoding.
CREATE TABLE audit_log (
    seq        BIGINT PRIMARY KEY,
    ts_ns      BIGINT NOT NULL,
    kind       TEXT   NOT NULL,
    plugin     TEXT   NOT NULL DEFAULT '',
    digest     TEXT   NOT NULL DEFAULT '',
    capability TEXT   NOT NULL DEFAULT '',
    decision   TEXT   NULL CHECK (decision IN ('allow', 'deny')),
    actor      TEXT   NOT NULL DEFAULT '',
    detail     TEXT   NOT NULL DEFAULT '',
    prev_hash  BYTEA  NOT NULL,
    hash       BYTEA  NOT NULL
);
CREATE INDEX audit_log_plugin ON audit_log (plugin, seq);
CREATE INDEX audit_log_capability ON audit_log (capability, seq);
CREATE INDEX audit_log_ts ON audit_log (ts_ns);

-- Accidental edits are refused outright; deliberate tampering (dropping these triggers first)
-- is what the hash chain and `audit_head` detect.
CREATE FUNCTION audit_log_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'audit_log is append-only';
END
$$;
CREATE TRIGGER audit_log_no_update_or_delete BEFORE UPDATE OR DELETE ON audit_log
    FOR EACH ROW EXECUTE FUNCTION audit_log_append_only();
CREATE TRIGGER audit_log_no_truncate BEFORE TRUNCATE ON audit_log
    FOR EACH STATEMENT EXECUTE FUNCTION audit_log_append_only();

-- The chain head (last seq and its hash), updated in the same transaction as every batch.
-- The chain alone cannot show that its tail was cut off; comparing with this row can.
-- Seeded with the genesis head (seq 0, 32 zero bytes) so there is always a row to lock
-- (`SELECT ... FOR UPDATE`), which serialises writers from several hosts.
CREATE TABLE audit_head (
    id   INTEGER PRIMARY KEY CHECK (id = 1),
    seq  BIGINT  NOT NULL,
    hash BYTEA   NOT NULL
);
INSERT INTO audit_head (id, seq, hash) VALUES (1, 0, decode(repeat('00', 32), 'hex'));

-- Plugins seen, by digest: a view kept up to date from the `plugin-seen` records (upserted in
-- the same transaction). Not chained; the chained records are the evidence.
CREATE TABLE plugins_seen (
    digest        TEXT   PRIMARY KEY,
    name          TEXT   NOT NULL,
    version       TEXT   NOT NULL,
    first_seen_ns BIGINT NOT NULL,
    last_seen_ns  BIGINT NOT NULL
);
