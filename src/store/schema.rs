//! The SQLite schema, versioned with `PRAGMA user_version`.

use rusqlite::{Connection, params};

use super::StoreError;

/// The schema version this build writes, kept in `PRAGMA user_version`. [`migrate`] brings older
/// databases up to it and refuses newer ones.
pub const VERSION: i64 = 9;

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
    -- The id of the device's first series, shared by all its series: keys the device's log rows.
    device_key       INTEGER NOT NULL,
    UNIQUE (device_id, metric)
);
CREATE INDEX IF NOT EXISTS series_city ON series (city, domain, metric);
-- (And `series_device_key`, below: older versions lack the column until migrated.)

-- The reading log: one row per device and observation time, holding the device's readings at
-- that time packed into a blob (store/packed.rs) — a message's readings share a device and a
-- time, so a commit adds one row and one index entry per message instead of one per reading.
-- `id` is the log sequence a forwarder reads by cursor; the unique key makes a QoS 1
-- redelivery a no-op. No index on observed_at alone: every query (and retention) goes through
-- a device, and each extra index costs every insert.
--
-- The log lives in two tables, read together through the view `log_rows`. Commits add rows to
-- `observations_recent`, keyed by time first: a commit's rows have nearly the same times, so
-- they land on a few index pages at its end. Keyed by device, as `observations` is, each row
-- would dirty a page of its own (each device's newest rows sit on a leaf of their own), and a
-- commit writes every page it dirtied to the WAL. Every few tens of thousands of rows the
-- writer moves them to `observations` in one transaction, sorted by device, so that each
-- device's leaf is written once per move rather than once per message (BENCHMARKS.md,
-- finding 23). The writer keeps a row's key unique across both tables.
CREATE TABLE IF NOT EXISTS observations (
    id          INTEGER PRIMARY KEY,
    device_key  INTEGER NOT NULL,  -- series.device_key
    observed_at INTEGER NOT NULL,  -- UTC ms
    received_at INTEGER NOT NULL,  -- UTC ms, of the latest message that added readings
    readings    BLOB NOT NULL,     -- (series id, value, status code) per reading
    -- Readings logged up to and including this row: a log reader's backlog is a difference.
    log_readings INTEGER NOT NULL,
    UNIQUE (device_key, observed_at)
);
CREATE TABLE IF NOT EXISTS observations_recent (
    id           INTEGER PRIMARY KEY,  -- given by the writer: continues `observations`
    device_key   INTEGER NOT NULL,
    observed_at  INTEGER NOT NULL,
    received_at  INTEGER NOT NULL,
    readings     BLOB NOT NULL,
    log_readings INTEGER NOT NULL,
    UNIQUE (observed_at, device_key)
);
CREATE VIEW IF NOT EXISTS log_rows AS
    SELECT id, device_key, observed_at, received_at, readings, log_readings FROM observations
    UNION ALL
    SELECT id, device_key, observed_at, received_at, readings, log_readings
    FROM observations_recent;

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
    truncated      INTEGER NOT NULL,
    -- 1: a part of a message whose other readings were stored (a rejected reading, or the
    -- value a conflict did not keep); 0: the whole message.
    partial        INTEGER NOT NULL DEFAULT 0
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
    last_stored_at  INTEGER,
    -- Stored messages with rejected parts, those parts, and readings that met a stored one of
    -- another value.
    partial           INTEGER NOT NULL DEFAULT 0,
    readings_rejected INTEGER NOT NULL DEFAULT 0,
    conflicts         INTEGER NOT NULL DEFAULT 0
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

-- API bearer tokens (src/auth): never the secret, only its SHA-256 and its public id.
CREATE TABLE IF NOT EXISTS tokens (
    id           INTEGER PRIMARY KEY,
    name         TEXT NOT NULL,
    token_id     TEXT NOT NULL UNIQUE,
    secret_hash  BLOB NOT NULL,
    cities       TEXT NOT NULL,  -- all | city ids separated by commas
    scopes       TEXT NOT NULL,  -- separated by commas
    created_at   INTEGER NOT NULL,
    last_used_at INTEGER,
    expires_at   INTEGER,
    revoked_at   INTEGER
);
CREATE UNIQUE INDEX IF NOT EXISTS tokens_active_name ON tokens (name) WHERE revoked_at IS NULL;

-- Who did what through the API: acknowledgements and replays, with the client's address.
CREATE TABLE IF NOT EXISTS audit (
    id      INTEGER PRIMARY KEY,
    at      INTEGER NOT NULL,
    actor   TEXT NOT NULL,  -- the token's name
    action  TEXT NOT NULL,  -- ack | replay
    object  TEXT NOT NULL,  -- alert/12 | dead_letter/7
    city    TEXT,
    client  TEXT,
    comment TEXT
);

-- Positions of log readers (e.g. the InfluxDB forwarder).
CREATE TABLE IF NOT EXISTS cursors (
    name       TEXT PRIMARY KEY,
    position   INTEGER NOT NULL,
    updated_at INTEGER NOT NULL
);
"#;

/// Create any missing tables and bring a database of an older version up to [`VERSION`] in
/// place (version 5 and older are repacked into one log row per device and time, which can take
/// seconds on a large store), all in one transaction: on an error the file is left as it was.
/// Fails with `StoreError::Schema` for a database of a newer version.
pub fn migrate(conn: &Connection) -> Result<(), StoreError> {
    let version: i64 = conn.query_row("PRAGMA user_version", [], |r| r.get(0))?;
    if version > VERSION {
        return Err(StoreError::Schema(format!(
            "database schema version {version} is newer than this build understands ({VERSION})"
        )));
    }
    let tx = conn.unchecked_transaction()?;
    tx.execute_batch(SCHEMA)?;
    // Versions up to 5 logged one row per reading, in `readings`; the steps up to version 5
    // work on that table, and the last one packs it into `observations`.
    if has_table(&tx, "readings")? {
        migrate_reading_log(&tx, version)?;
    }
    // Version 8 quarantines parts of messages and records conflicts.
    if !has_column(&tx, "rejects", "partial")? {
        tx.execute_batch("ALTER TABLE rejects ADD COLUMN partial INTEGER NOT NULL DEFAULT 0;")?;
    }
    for column in ["partial", "readings_rejected", "conflicts"] {
        if !has_column(&tx, "feed_counters", column)? {
            tx.execute_batch(&format!(
                "ALTER TABLE feed_counters ADD COLUMN {column} INTEGER NOT NULL DEFAULT 0;"
            ))?;
        }
    }
    // A device's series from one of its log rows, for queries that read the log by time.
    tx.execute_batch("CREATE INDEX IF NOT EXISTS series_device_key ON series (device_key);")?;
    tx.pragma_update(None, "user_version", VERSION)?;
    tx.commit()?;
    Ok(())
}

/// Version 5 keys the readings index by device: adds `series.device_key` and copies the
/// readings, in log order, into a table with the new unique key.
const V5_KEY_BY_DEVICE: &str = "ALTER TABLE series ADD COLUMN device_key INTEGER NOT NULL DEFAULT 0;
             UPDATE series SET device_key =
                 (SELECT MIN(id) FROM series first WHERE first.device_id = series.device_id);
             ALTER TABLE readings RENAME TO readings_v4;
             CREATE TABLE readings (
                 id          INTEGER PRIMARY KEY,
                 series_id   INTEGER NOT NULL REFERENCES series (id),
                 device_key  INTEGER NOT NULL,
                 observed_at INTEGER NOT NULL,
                 value       REAL NOT NULL,
                 status      INTEGER NOT NULL,
                 received_at INTEGER NOT NULL,
                 UNIQUE (device_key, observed_at, series_id)
             );
             INSERT INTO readings (id, series_id, device_key, observed_at, value, status, received_at)
             SELECT r.id, r.series_id, s.device_key, r.observed_at, r.value, r.status, r.received_at
             FROM readings_v4 r JOIN series s ON s.id = r.series_id ORDER BY r.id;
             DROP TABLE readings_v4;";

/// Version 3 drops the index on observed_at alone and builds the minute rollups from the
/// readings already kept.
const V3_ROLLUPS: &str = "DROP INDEX IF EXISTS readings_observed;
             DELETE FROM rollup_minute;
             INSERT INTO rollup_minute (metric, city, domain, minute, count, sum, min, max)
             SELECT s.metric, s.city, s.domain, (r.observed_at / 60000) * 60000,
                    COUNT(*), SUM(r.value), MIN(r.value), MAX(r.value)
             FROM readings r JOIN series s ON s.id = r.series_id
             GROUP BY 1, 2, 3, 4;";

/// Version 4 sets the live values' cursor (`?1`) to the end of the reading log.
const V4_LIVE_CURSOR: &str = "INSERT OR REPLACE INTO cursors (name, position, updated_at)
             SELECT ?1, COALESCE(MAX(id), 0), 0 FROM readings";

/// Bring a version-5-or-older log (one `readings` row per reading) through versions 3, 4 and 5,
/// then pack it into `observations` (version 6).
fn migrate_reading_log(tx: &rusqlite::Transaction<'_>, version: i64) -> Result<(), StoreError> {
    if version < 5 && !has_column(tx, "readings", "device_key")? {
        // Version 5 keyed the readings index by device. The old table's unique key cannot be
        // dropped in place: the readings are copied over in log order.
        tx.execute_batch(V5_KEY_BY_DEVICE)?;
    }
    if version < 3 {
        // Version 3 added the minute rollups (built here from the readings already kept) and
        // dropped the index on observed_at alone.
        tx.execute_batch(V3_ROLLUPS)?;
    }
    if version < 4 {
        // Version 4 writes the latest values to `series` and `devices` every few seconds
        // (store/live.rs), with the log position they cover; before, every commit did, so
        // they cover everything logged so far.
        tx.execute(V4_LIVE_CURSOR, [super::live::CURSOR])?;
    }
    let started = std::time::Instant::now();
    let (readings, rows) = pack_readings(tx)?;
    tracing::info!(
        readings,
        rows,
        took = ?started.elapsed(),
        "Packed the reading log into one row per device and observation time (schema v6)."
    );
    Ok(())
}

/// A version 5 log's readings in the order of its unique index.
const SELECT_LEGACY_READINGS: &str =
    "SELECT device_key, observed_at, id, series_id, value, status, received_at
         FROM readings ORDER BY device_key, observed_at, series_id";

/// One packed log row; `log_readings` is set once every row is in.
const INSERT_PACKED_ROW: &str =
    "INSERT INTO observations (id, device_key, observed_at, received_at, readings, log_readings)
         VALUES (?1, ?2, ?3, ?4, ?5, 0)";

/// Set each packed row's running count of readings logged, and drop the old log.
const SET_LOG_READINGS: &str = "UPDATE observations SET log_readings = running.total
         FROM (SELECT id, SUM(reading_count(readings)) OVER (ORDER BY id) AS total
               FROM observations) running
         WHERE observations.id = running.id;
         DROP TABLE readings;";

/// Version 6: pack the readings of each device and observation time into one `observations`
/// row. A row takes the largest log position of its readings, so a log reader's cursor (the
/// forwarder's, the live values') stays valid: a row it has not read in full comes after it.
/// Returns how many readings went into how many rows.
fn pack_readings(tx: &rusqlite::Transaction<'_>) -> Result<(u64, u64), StoreError> {
    // In the order of the unique index: no sort, and a row's readings arrive together.
    let mut select = tx.prepare(SELECT_LEGACY_READINGS)?;
    let mut insert = tx.prepare(INSERT_PACKED_ROW)?;
    let mut row: Option<Row> = None;
    let (mut readings, mut written) = (0, 0);
    let mut rows = select.query([])?;
    while let Some(r) = rows.next()? {
        readings += 1;
        let key = (r.get(0)?, r.get(1)?);
        let (id, received): (i64, i64) = (r.get(2)?, r.get(6)?);
        let reading = (r.get(3)?, r.get(4)?, r.get(5)?);
        match &mut row {
            Some(row) if row.key == key => row.add(id, received, reading),
            _ => {
                if let Some(done) = row.replace(Row::first(key, id, received, reading)) {
                    done.insert(&mut insert)?;
                    written += 1;
                }
            }
        }
    }
    if let Some(done) = row {
        done.insert(&mut insert)?;
        written += 1;
    }
    drop(rows);
    drop((select, insert));
    tx.execute_batch(SET_LOG_READINGS)?;
    Ok((readings, written))
}

/// An `observations` row being packed from the readings of one device and time.
struct Row {
    /// Device key, observed at.
    key: (i64, i64),
    /// The largest log position of its readings.
    id: i64,
    received: i64,
    readings: Vec<u8>,
}

impl Row {
    /// A row started by its first reading.
    fn first(key: (i64, i64), id: i64, received: i64, reading: super::packed::Packed) -> Row {
        let mut row = Row {
            key,
            id,
            received,
            readings: Vec::with_capacity(64),
        };
        row.add(id, received, reading);
        row
    }

    fn add(&mut self, id: i64, received: i64, (series, value, status): super::packed::Packed) {
        self.id = self.id.max(id);
        self.received = self.received.max(received);
        super::packed::encode(&mut self.readings, series, value, status);
    }

    fn insert(self, insert: &mut rusqlite::Statement<'_>) -> Result<(), StoreError> {
        let (device_key, observed) = self.key;
        insert.execute(params![
            self.id,
            device_key,
            observed,
            self.received,
            self.readings
        ])?;
        Ok(())
    }
}

fn has_table(conn: &Connection, table: &str) -> Result<bool, StoreError> {
    Ok(conn.query_row(
        "SELECT COUNT(*) > 0 FROM sqlite_schema WHERE type = 'table' AND name = ?1",
        [table],
        |r| r.get(0),
    )?)
}

fn has_column(conn: &Connection, table: &str, column: &str) -> Result<bool, StoreError> {
    Ok(conn.query_row(
        "SELECT COUNT(*) > 0 FROM pragma_table_info(?1) WHERE name = ?2",
        [table, column],
        |r| r.get(0),
    )?)
}
