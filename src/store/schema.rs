//! The SQLite schema, versioned with `PRAGMA user_version`.

use rusqlite::Connection;

use super::StoreError;

pub const VERSION: i64 = 5;

const SCHEMA: &str = r#"
-- One row per device × metric; the writer caches ids. The last_* columns are written every few
-- seconds from memory (store/live.rs), which the API reads.
CREATE TABLE IF NOT EXISTS series (
    id               INTEGER PRIMARY KEY,
    device_id        TEXT NOT NULL,
    metric           TEXT NOT NULL,
    city             TEXT NOT NULL,
    feed             TEXT NOT NULL,
    domain           TEXT NOT NULL,
    unit             TEXT NOT NULL,
    last_observed_at INTEGER,
    last_value       REAL,
    last_status      INTEGER,
    -- The id of the device's first series, shared by all its series: orders the readings index.
    device_key       INTEGER NOT NULL,
    UNIQUE (device_id, metric)
);
CREATE INDEX IF NOT EXISTS series_city ON series (city, domain, metric);

-- The reading log. `id` is the log sequence a forwarder reads by cursor; the unique key makes
-- a QoS 1 redelivery a no-op. The key leads with the device, not the series: a message's
-- readings share a device and a time, so a commit changes one index leaf per device it touches
-- instead of one per series (six for an air station).
CREATE TABLE IF NOT EXISTS readings (
    id          INTEGER PRIMARY KEY,
    series_id   INTEGER NOT NULL REFERENCES series (id),
    device_key  INTEGER NOT NULL,  -- series.device_key
    observed_at INTEGER NOT NULL,  -- UTC ms
    value       REAL NOT NULL,
    status      INTEGER NOT NULL,  -- 0 measuring, 1 calibrating, 2 fault
    received_at INTEGER NOT NULL,  -- UTC ms
    UNIQUE (device_key, observed_at, series_id)
);
-- No index on observed_at alone: every query (and retention) goes through a series, and each
-- extra index costs every insert.

-- Per-minute aggregates per city × domain × metric, written in the same transaction as the
-- readings they count: city- and domain-wide aggregates read these instead of every reading.
CREATE TABLE IF NOT EXISTS rollup_minute (
    metric TEXT NOT NULL,
    city   TEXT NOT NULL,
    domain TEXT NOT NULL,
    minute INTEGER NOT NULL,  -- UTC ms, start of the minute
    count  INTEGER NOT NULL,
    sum    REAL NOT NULL,
    min    REAL NOT NULL,
    max    REAL NOT NULL,
    PRIMARY KEY (metric, city, domain, minute)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS rollup_minute_time ON rollup_minute (minute);

CREATE TABLE IF NOT EXISTS devices (
    device_id              TEXT PRIMARY KEY,
    city                   TEXT NOT NULL,
    feed                   TEXT,
    domain                 TEXT NOT NULL,
    name                   TEXT,
    lat                    REAL,
    lon                    REAL,
    ward                   TEXT,
    position_source        TEXT,
    flood_levels           TEXT,     -- JSON array, metres
    configured_interval_ms INTEGER,
    learned_interval_ms    INTEGER,
    first_seen             INTEGER,
    last_seen              INTEGER,  -- received_at, UTC ms
    last_observed_at       INTEGER,
    last_status            INTEGER,
    catalogued             INTEGER NOT NULL DEFAULT 0
);

-- Quarantine: every rejected message with its reason and (truncated) raw payload.
CREATE TABLE IF NOT EXISTS rejects (
    id             INTEGER PRIMARY KEY,
    feed           TEXT NOT NULL,
    topic          TEXT NOT NULL,
    received_at    INTEGER NOT NULL,
    reason         TEXT NOT NULL,
    detail         TEXT NOT NULL,
    payload        BLOB NOT NULL,
    payload_size   INTEGER NOT NULL,
    payload_sha256 TEXT NOT NULL,
    truncated      INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS rejects_feed_reason ON rejects (feed, reason, id);
CREATE INDEX IF NOT EXISTS rejects_received ON rejects (received_at);
CREATE INDEX IF NOT EXISTS rejects_sha ON rejects (payload_sha256);

-- "Did we lose anything?": updated in the same transaction as the messages they count.
CREATE TABLE IF NOT EXISTS feed_counters (
    feed            TEXT PRIMARY KEY,
    received        INTEGER NOT NULL DEFAULT 0,
    stored          INTEGER NOT NULL DEFAULT 0,
    rejected        INTEGER NOT NULL DEFAULT 0,
    duplicate       INTEGER NOT NULL DEFAULT 0,
    readings        INTEGER NOT NULL DEFAULT 0,
    last_message_at INTEGER,
    last_stored_at  INTEGER
);

-- Alerts: one row per incident (fired … resolved), kept as history.
CREATE TABLE IF NOT EXISTS alerts (
    id          INTEGER PRIMARY KEY,
    fingerprint TEXT NOT NULL,
    rule        TEXT NOT NULL,
    subject     TEXT NOT NULL,
    city        TEXT NOT NULL,
    severity    TEXT NOT NULL,
    state       TEXT NOT NULL,  -- firing | resolved
    labels      TEXT NOT NULL,  -- JSON object
    summary     TEXT NOT NULL,
    description TEXT NOT NULL,
    value       REAL,
    starts_at   INTEGER NOT NULL,
    ends_at     INTEGER,
    acked_by    TEXT,
    acked_at    INTEGER,
    ack_comment TEXT,
    updated_at  INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS alerts_state ON alerts (state, city, severity);
CREATE INDEX IF NOT EXISTS alerts_fingerprint ON alerts (fingerprint, state);

-- The webhook outbox: every notification is written here in the same transaction as the alert
-- change, then delivered (and retried) from here.
CREATE TABLE IF NOT EXISTS outbox (
    id              INTEGER PRIMARY KEY,
    receiver        TEXT NOT NULL,
    webhook_id      TEXT NOT NULL,
    alert_id        INTEGER NOT NULL,
    body            TEXT NOT NULL,
    state           TEXT NOT NULL,  -- pending | delivered | dead
    attempts        INTEGER NOT NULL DEFAULT 0,
    next_attempt_at INTEGER NOT NULL,
    last_status     INTEGER,
    last_error      TEXT,
    created_at      INTEGER NOT NULL,
    delivered_at    INTEGER,
    UNIQUE (receiver, webhook_id)
);
CREATE INDEX IF NOT EXISTS outbox_due ON outbox (receiver, state, id);

-- Positions of log readers (e.g. the InfluxDB forwarder).
CREATE TABLE IF NOT EXISTS cursors (
    name       TEXT PRIMARY KEY,
    position   INTEGER NOT NULL,
    updated_at INTEGER NOT NULL
);
"#;

pub fn migrate(conn: &Connection) -> Result<(), StoreError> {
    let version: i64 = conn.query_row("PRAGMA user_version", [], |r| r.get(0))?;
    if version > VERSION {
        return Err(StoreError::Schema(format!(
            "database schema version {version} is newer than this build understands ({VERSION})"
        )));
    }
    let tx = conn.unchecked_transaction()?;
    tx.execute_batch(SCHEMA)?;
    if version < 5 && !has_column(&tx, "readings", "device_key")? {
        // Version 5 keys the readings index by device (see the schema). The old table's unique
        // key cannot be dropped in place: the readings are copied over in log order.
        tx.execute_batch(
            "ALTER TABLE series ADD COLUMN device_key INTEGER NOT NULL DEFAULT 0;
             UPDATE series SET device_key =
                 (SELECT MIN(id) FROM series first WHERE first.device_id = series.device_id);
             ALTER TABLE readings RENAME TO readings_v4;",
        )?;
        tx.execute_batch(SCHEMA)?;
        tx.execute_batch(
            "INSERT INTO readings (id, series_id, device_key, observed_at, value, status, received_at)
             SELECT r.id, r.series_id, s.device_key, r.observed_at, r.value, r.status, r.received_at
             FROM readings_v4 r JOIN series s ON s.id = r.series_id ORDER BY r.id;
             DROP TABLE readings_v4;",
        )?;
    }
    if version < 3 {
        // Version 3 added the minute rollups (built here from the readings already kept) and
        // dropped the index on observed_at alone.
        tx.execute_batch(
            "DROP INDEX IF EXISTS readings_observed;
             DELETE FROM rollup_minute;
             INSERT INTO rollup_minute (metric, city, domain, minute, count, sum, min, max)
             SELECT s.metric, s.city, s.domain, (r.observed_at / 60000) * 60000,
                    COUNT(*), SUM(r.value), MIN(r.value), MAX(r.value)
             FROM readings r JOIN series s ON s.id = r.series_id
             GROUP BY 1, 2, 3, 4;",
        )?;
    }
    if version < 4 {
        // Version 4 writes the latest values to `series` and `devices` every few seconds
        // (store/live.rs), with the log position they cover; before, every commit did, so
        // they cover everything logged so far.
        tx.execute(
            "INSERT OR REPLACE INTO cursors (name, position, updated_at)
             SELECT ?1, COALESCE(MAX(id), 0), 0 FROM readings",
            [super::live::CURSOR],
        )?;
    }
    tx.pragma_update(None, "user_version", VERSION)?;
    tx.commit()?;
    Ok(())
}

fn has_column(conn: &Connection, table: &str, column: &str) -> Result<bool, StoreError> {
    Ok(conn.query_row(
        "SELECT COUNT(*) > 0 FROM pragma_table_info(?1) WHERE name = ?2",
        [table, column],
        |r| r.get(0),
    )?)
}
