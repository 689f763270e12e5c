-- Per-plugin key-value state (the `colony:plugin/state` interface). Keyed by plugin name, not
-- digest, so state survives upgrades and hot swaps of the same plugin.
CREATE TABLE plugin_state (
    plugin TEXT NOT NULL,
    key    TEXT NOT NULL,
    value  BLOB NOT NULL,
    PRIMARY KEY (plugin, key)
) WITHOUT ROWID;
