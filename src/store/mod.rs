//! The embedded store (SQLite, WAL): the durability point — a message is acknowledged to its
//! broker only after the transaction holding it commits here — and the API's query store.
//!
//! One write connection (`StoreWriter`, owned by the commit thread) and a small pool of read
//! connections used from `spawn_blocking` by the API.

mod alerts;
mod checkpoint;
mod config;
mod hourly;
mod live;
mod packed;
mod quarantine;
mod query;
mod schema;
mod tokens;
mod writer;

#[cfg(test)]
use checkpoint::WalLimits;
use checkpoint::{WAL_FRAME_BYTES, WAL_LIMITS, restart_wal};
pub(crate) use quarantine::{Quarantined, insert_reject};

use std::{
    path::Path,
    sync::{Arc, Mutex, atomic::AtomicBool},
    time::Duration,
};

use rusqlite::{Connection, OpenFlags};

use crate::model::{RejectReason, Status};
use crate::normalise::DeviceConfig;

pub use alerts::{AlertFilter, AlertRow, NewAlert, OutboxRow};
pub use config::{OnConflict, StoreConfig, Synchronous};
pub use query::{
    AggregateQuery, Bucket, CitySummary, DeviceFilter, DeviceRow, FeedCounters, HourlyMean,
    LatestValue, LogEntry, Point, RejectCount, RejectFilter, RejectRow, StoreStats,
};
pub use tokens::{AuditEntry, NewToken, TokenRow};
pub use writer::{Content, Envelope, Outcome, Partial, PruneStats, StoreWriter};

/// Why a store operation failed: SQLite's error (`Sqlite`), the filesystem's when creating the
/// store's directory (`Io`), a database written by a newer schema version than this build
/// understands (`Schema`, from `Store::open`), a log row whose readings blob does not decode
/// (`Corrupt`), a query's blocking task that panicked or was cancelled (`Join`), or a write
/// that would break a rule of the data (`Conflict`).
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database error: {0}")]
    Sqlite(#[from] rusqlite::Error),
    #[error("i/o error: {0}")]
    Io(#[from] std::io::Error),
    #[error("schema: {0}")]
    Schema(String),
    #[error(transparent)]
    Corrupt(#[from] packed::Corrupt),
    #[error("query task failed: {0}")]
    Join(String),
    /// The write would break a rule of the data (a second active token of one name).
    #[error("{0}")]
    Conflict(String),
}

/// Handle to the store. Cheap to clone.
#[derive(Clone)]
pub struct Store {
    inner: Arc<Inner>,
}

struct Inner {
    config: StoreConfig,
    /// Idle read connections; a query takes one and puts it back.
    readers: Mutex<Vec<Connection>>,
    /// A second write connection for rare side writes (log cursors, points a downstream store
    /// refused), opened on first use; SQLite serialises it with the commit thread's.
    side: Mutex<Option<Connection>>,
    /// Hourly pollutant means of the last hours per station, for the current VN_AQI.
    hourly: Arc<hourly::HourlyPollutants>,
    /// Latest value per series and state per device, kept by the writer.
    live: Arc<live::Live>,
    /// Set by the checkpointer when the WAL should start over; the writer does it between
    /// commits (see [`checkpoint`]).
    restart_wal: Arc<AtomicBool>,
    /// The device listing's rows and series, kept until the writer changes them.
    catalogue: query::CatalogueCache,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store")
            .field("path", &self.inner.config.path)
            .finish()
    }
}

impl Store {
    /// Open (creating if needed) the database, migrate the schema and load the device
    /// catalogue.
    pub fn open(config: &StoreConfig, devices: &[DeviceConfig]) -> Result<Store, StoreError> {
        if let Some(dir) = config.path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)?;
        }
        let mut conn = open_connection(&config.path, config.synchronous, false)?;
        schema::migrate(&conn)?;
        writer::upsert_catalogue(&conn, devices)?;
        let hourly = Arc::new(hourly::HourlyPollutants::default());
        load_hourly(&conn, &hourly, jiff::Timestamp::now())?;
        let live = Arc::new(live::Live::load(&mut conn)?);
        drop(conn);
        let readers = (0..config.read_connections)
            .map(|_| open_connection(&config.path, config.synchronous, true))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Store {
            inner: Arc::new(Inner {
                config: config.clone(),
                readers: Mutex::new(readers),
                side: Mutex::new(None),
                hourly,
                live,
                restart_wal: Arc::default(),
                catalogue: query::CatalogueCache::default(),
            }),
        })
    }

    /// The single write connection. Open exactly one per process.
    pub fn writer(&self) -> Result<StoreWriter, StoreError> {
        let conn = open_connection(
            &self.inner.config.path,
            self.inner.config.synchronous,
            false,
        )?;
        StoreWriter::new(
            conn,
            &self.inner.config,
            Arc::clone(&self.inner.hourly),
            Arc::clone(&self.inner.live),
            Arc::clone(&self.inner.restart_wal),
            Arc::clone(&self.inner.catalogue.generation),
        )
    }

    #[cfg(test)]
    fn connection_for_tests(&self) -> Connection {
        open_connection(
            &self.inner.config.path,
            self.inner.config.synchronous,
            false,
        )
        .unwrap()
    }

    /// Run a write on the side connection, off the async runtime.
    pub(crate) async fn side_write<T, F>(&self, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> Result<T, StoreError> + Send + 'static,
    {
        let inner = Arc::clone(&self.inner);
        tokio::task::spawn_blocking(move || {
            let mut side = inner.side.lock().unwrap_or_else(|e| e.into_inner());
            if side.is_none() {
                *side = Some(open_connection(
                    &inner.config.path,
                    inner.config.synchronous,
                    false,
                )?);
            }
            f(side.as_ref().expect("opened above"))
        })
        .await
        .map_err(|e| StoreError::Join(e.to_string()))?
    }

    /// Persist a log reader's position.
    pub async fn set_cursor(&self, name: &str, position: i64) -> Result<(), StoreError> {
        let name = name.to_owned();
        self.side_write(move |conn| writer::set_cursor(conn, &name, position))
            .await
    }

    /// Quarantine something a downstream store refused (e.g. a line InfluxDB rejected), with
    /// the reason it gave, so it is visible in `/api/v1/rejects` and never silently dropped.
    pub async fn quarantine(
        &self,
        feed: &str,
        topic: &str,
        reason: RejectReason,
        detail: String,
        payload: Vec<u8>,
    ) -> Result<(), StoreError> {
        let (feed, topic) = (feed.to_owned(), topic.to_owned());
        self.side_write(move |conn| {
            insert_reject(
                conn,
                &Quarantined {
                    feed: &feed,
                    topic: &topic,
                    received_at: jiff::Timestamp::now().as_millisecond(),
                    reason,
                    detail: &detail,
                    payload: &payload,
                    payload_size: payload.len(),
                    sha256: None,
                    partial: false,
                },
            )
        })
        .await
    }

    /// Run a read-only query on a pooled connection, off the async runtime.
    pub async fn read<T, F>(&self, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> Result<T, StoreError> + Send + 'static,
    {
        let inner = Arc::clone(&self.inner);
        tokio::task::spawn_blocking(move || {
            let conn = inner
                .readers
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .pop();
            let conn = match conn {
                Some(c) => c,
                // Pool exhausted: open a temporary extra connection rather than wait.
                None => open_connection(&inner.config.path, inner.config.synchronous, true)?,
            };
            let result = f(&conn);
            let mut pool = inner.readers.lock().unwrap_or_else(|e| e.into_inner());
            if pool.len() < inner.config.read_connections {
                pool.push(conn);
            }
            result
        })
        .await
        .map_err(|e| StoreError::Join(e.to_string()))?
    }
}

/// Build the in-memory hourly pollutant means from the readings of the hours they cover.
fn load_hourly(
    conn: &Connection,
    hourly: &hourly::HourlyPollutants,
    now: jiff::Timestamp,
) -> Result<(), StoreError> {
    let from = (now.as_millisecond().div_euclid(HOUR_MS) - hourly::HOURS as i64 + 1) * HOUR_MS;
    let pollutants = crate::aqi::Pollutant::ALL
        .map(|p| format!("'{}'", p.metric()))
        .join(", ");
    let samples = over_log(&format!(
        "SELECT s.id AS sid, s.device_id, s.metric, (o.observed_at / {HOUR_MS}) * {HOUR_MS} AS hour,
                reading_value(o.readings, s.id) AS v
         FROM series s JOIN {{log}} o ON o.device_key = s.device_key
         WHERE s.metric IN ({pollutants}) AND o.observed_at >= ?1
           AND reading_status(o.readings, s.id) = 0"
    ));
    let mut stmt = conn.prepare(log_query(&format!(
        "SELECT device_id, metric, hour, SUM(v), COUNT(*) FROM ({samples}) GROUP BY sid, hour"
    )))?;
    let mut rows = stmt.query([from])?;
    while let Some(row) = rows.next()? {
        let metric: String = row.get(1)?;
        if let Some(p) = crate::aqi::Pollutant::from_metric(&metric) {
            let station: String = row.get(0)?;
            hourly.add_sum(&station, p, row.get(2)?, row.get(3)?, row.get(4)?);
        }
    }
    Ok(())
}

/// How long a connection waits for a lock before SQLITE_BUSY.
const BUSY_TIMEOUT: Duration = Duration::from_secs(10);

/// A connection to the store at `path`, with the settings below (a writing one in WAL mode).
fn open_connection(
    path: &Path,
    sync: Synchronous,
    read_only: bool,
) -> Result<Connection, StoreError> {
    let flags = if read_only {
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX
    } else {
        OpenFlags::SQLITE_OPEN_READ_WRITE
            | OpenFlags::SQLITE_OPEN_CREATE
            | OpenFlags::SQLITE_OPEN_NO_MUTEX
    };
    let conn = Connection::open_with_flags(path, flags)?;
    conn.busy_timeout(BUSY_TIMEOUT)?;
    packed::register(&conn)?;
    if !read_only {
        set_wal_pragmas(&conn)?;
    }
    conn.pragma_update(
        None,
        "synchronous",
        match sync {
            Synchronous::Full => "FULL",
            Synchronous::Normal => "NORMAL",
        },
    )?;
    // Page cache in KiB (negative). Modest on purpose: with thousands of devices every message
    // lands on a different index leaf, so the writer's working set is far larger than any
    // cache and the OS page cache backs it either way; at 15,000 stations 32 MB instead of
    // 16 MB cost 16 MB of RSS and bought no commit time, 64 MB bought 1.5 % over 180 s
    // (BENCHMARKS.md). Readers share the OS page cache too, and there are several of them.
    let cache_kib: i64 = if read_only { 4_000 } else { 16_000 };
    conn.pragma_update(None, "cache_size", -cache_kib)?;
    conn.pragma_update(None, "temp_store", "MEMORY")?;
    Ok(conn)
}

/// A writing connection's WAL settings.
fn set_wal_pragmas(conn: &Connection) -> Result<(), StoreError> {
    conn.pragma_update(None, "journal_mode", "WAL")?;
    // No automatic checkpoints: SQLite would run them inside whichever commit crosses
    // the threshold, on the commit thread. `Store::checkpointer` does them instead.
    conn.pragma_update(None, "wal_autocheckpoint", 0)?;
    // A restarted log keeps its file, up to the size at which the checkpointer forces a
    // restart: overwriting allocated blocks costs less than growing the file again after
    // each truncation (the filesystem allocates and zeroes every new block); 9 % more
    // committed at full load (BENCHMARKS.md, finding 15). Larger files are cut back to it.
    conn.pragma_update(
        None,
        "journal_size_limit",
        WAL_LIMITS.force * WAL_FRAME_BYTES,
    )?;
    Ok(())
}

/// The log is two tables (see the schema). SQLite flattens the view `log_rows` into a simple
/// query, but into a join or an aggregate it may not, and then it scans both tables: such
/// queries run `arm` over each table instead, `{log}` standing for its name. Numbered
/// parameters (`?1`) serve both arms; anonymous ones (`?`) must be bound twice.
pub(crate) fn over_log(arm: &str) -> String {
    format!(
        "{} UNION ALL {}",
        arm.replace("{log}", "observations"),
        arm.replace("{log}", "observations_recent")
    )
}

/// A query of the log, as prepared: tests check each one's plan (`queries_of_the_log_seek_in_both_of_its_tables`).
pub(crate) fn log_query(sql: &str) -> &str {
    #[cfg(test)]
    tests::LOG_QUERIES.lock().unwrap().insert(sql.to_owned());
    sql
}

/// The resolution of the rollups.
pub(crate) const MINUTE_MS: i64 = 60_000;
pub(crate) const HOUR_MS: i64 = 3_600_000;

/// The log's last position: its newest row's id (0 when empty).
fn log_end(conn: &Connection) -> Result<i64, StoreError> {
    Ok(last_log_row(conn)?.map_or(0, |(id, _)| id))
}

/// The log's newest row: its position and `log_readings` (the readings logged up to it).
fn last_log_row(conn: &Connection) -> Result<Option<(i64, i64)>, StoreError> {
    use rusqlite::OptionalExtension;
    let sql = over_log("SELECT id, log_readings FROM {log} WHERE id = (SELECT MAX(id) FROM {log})")
        + " ORDER BY 1 DESC LIMIT 1";
    Ok(conn
        .prepare_cached(log_query(&sql))?
        .query_row([], |r| Ok((r.get(0)?, r.get(1)?)))
        .optional()?)
}

pub(crate) fn status_code(s: Status) -> i64 {
    match s {
        Status::Measuring => 0,
        Status::Calibrating => 1,
        Status::Fault => 2,
    }
}

/// A status code's name, as the API writes it.
pub(crate) fn status_name(c: i64) -> &'static str {
    status_from_code(c).as_str()
}

pub(crate) fn status_from_code(c: i64) -> Status {
    match c {
        1 => Status::Calibrating,
        2 => Status::Fault,
        _ => Status::Measuring,
    }
}

pub(crate) fn ts(ms: i64) -> jiff::Timestamp {
    jiff::Timestamp::from_millisecond(ms).unwrap_or(jiff::Timestamp::UNIX_EPOCH)
}

#[cfg(test)]
mod tests;
