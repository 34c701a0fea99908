//! The log as its readers see it: the InfluxDB forwarder, the live-value replay, the store's
//! statistics and cursors.

use super::*;

/// One reading of the log, as a forwarder reads it.
#[derive(Debug, Clone, Serialize)]
pub struct LogEntry {
    pub id: i64,
    pub city: String,
    pub feed: String,
    pub device_id: String,
    pub domain: String,
    pub metric: String,
    pub unit: String,
    pub value: f64,
    pub observed_at: Timestamp,
    pub status: Status,
    /// The device's ward, when the catalogue knows it.
    pub ward: Option<String>,
}

/// What the store holds: readings in the log (each reading of a packed row counted), rejects
/// in quarantine, and the log's last position (`max_log_id`, 0 when the log is empty).
#[derive(Debug, Clone, Serialize)]
pub struct StoreStats {
    pub readings: i64,
    pub rejects: i64,
    pub max_log_id: i64,
}

/// `column` (an expression over a log row) of the first log row after position `after`, in
/// either of the log's tables.
fn first_log_row_after<T: rusqlite::types::FromSql>(
    conn: &Connection,
    column: &str,
    after: i64,
) -> Result<Option<T>, StoreError> {
    use rusqlite::OptionalExtension;
    let sql = crate::store::over_log(&format!("SELECT id, {column} FROM {{log}} WHERE id > ?1"))
        + " ORDER BY 1 LIMIT 1";
    Ok(conn
        .query_row(crate::store::log_query(&sql), [after], |r| r.get(1))
        .optional()?)
}

/// Up to `?2` log rows after position `?1`, in log order.
const SELECT_LOG_ROWS: &str = "SELECT id, observed_at, readings FROM log_rows
                 WHERE id > ?1 ORDER BY id LIMIT ?2";

/// What a log entry tells of series `?1`: its city, feed, device, domain, metric and unit, and
/// its device's ward.
const SELECT_SERIES_META: &str =
    "SELECT s.city, s.feed, s.device_id, s.domain, s.metric, s.unit, d.ward
                 FROM series s LEFT JOIN devices d ON d.device_id = s.device_id
                 WHERE s.id = ?1";

/// See [`Store::read_log`].
fn read_log(conn: &Connection, after_id: i64, limit: u32) -> Result<Vec<LogEntry>, StoreError> {
    let mut rows = conn.prepare_cached(crate::store::log_query(SELECT_LOG_ROWS))?;
    let mut series = conn.prepare_cached(SELECT_SERIES_META)?;
    let mut known: HashMap<i64, SeriesMeta> = HashMap::default();
    let mut out = Vec::new();
    let mut rows = rows.query(rusqlite::params![after_id, limit])?;
    while out.len() < limit as usize
        && let Some(row) = rows.next()?
    {
        let (id, observed_at) = (row.get(0)?, ts(row.get(1)?));
        let blob = row.get_ref(2)?.as_blob().map_err(rusqlite::Error::from)?;
        for r in crate::store::packed::decode(blob) {
            let (series_id, value, status) = r?;
            let meta = match known.entry(series_id) {
                Entry::Occupied(e) => e.into_mut(),
                Entry::Vacant(e) => e.insert(series.query_row([series_id], SeriesMeta::read)?),
            };
            out.push(meta.entry(id, value, observed_at, status));
        }
    }
    Ok(out)
}

/// What a log entry tells of its series, read once per series.
#[derive(Clone)]
struct SeriesMeta {
    city: String,
    feed: String,
    device_id: String,
    domain: String,
    metric: String,
    unit: String,
    ward: Option<String>,
}

impl SeriesMeta {
    /// A series as `SELECT_SERIES_META` reads it.
    fn read(row: &rusqlite::Row<'_>) -> rusqlite::Result<SeriesMeta> {
        Ok(SeriesMeta {
            city: row.get(0)?,
            feed: row.get(1)?,
            device_id: row.get(2)?,
            domain: row.get(3)?,
            metric: row.get(4)?,
            unit: row.get(5)?,
            ward: row.get(6)?,
        })
    }

    /// The log entry of a reading of this series in log row `id`.
    fn entry(&self, id: i64, value: f64, observed_at: Timestamp, status: i64) -> LogEntry {
        let SeriesMeta {
            city,
            feed,
            device_id,
            domain,
            metric,
            unit,
            ward,
        } = self.clone();
        LogEntry {
            id,
            city,
            feed,
            device_id,
            domain,
            metric,
            unit,
            value,
            observed_at,
            status: status_from_code(status),
            ward,
        }
    }
}

impl Store {
    /// The readings of the log after position `after_id`, in log order: whole log rows (a
    /// device's readings at one time, sharing the row's position), as many as it takes to
    /// reach `limit` readings.
    pub async fn read_log(&self, after_id: i64, limit: u32) -> Result<Vec<LogEntry>, StoreError> {
        self.read(move |conn| read_log(conn, after_id, limit)).await
    }

    /// How many readings the log holds after position `after_id` (a reader's backlog), from the
    /// rows' running count, without a scan. A row moved to the end of the log by later readings
    /// of its time (see `writer::add_to_row`) before the reader reached it counts twice until
    /// the reader passes it.
    pub async fn readings_after(&self, after_id: i64) -> Result<i64, StoreError> {
        self.read(move |conn| {
            let Some(before_next) = first_log_row_after::<i64>(
                conn,
                "log_readings - reading_count(readings)",
                after_id,
            )?
            else {
                return Ok(0);
            };
            let last = crate::store::last_log_row(conn)?.map_or(0, |(_, logged)| logged);
            Ok(last - before_next)
        })
        .await
    }

    /// When the reading after log position `after_id` was received (for forwarding lag).
    pub async fn received_after(&self, after_id: i64) -> Result<Option<Timestamp>, StoreError> {
        self.read(
            move |conn| Ok(first_log_row_after::<i64>(conn, "received_at", after_id)?.map(ts)),
        )
        .await
    }

    /// The log position the reader `name` last persisted with [`Store::set_cursor`] (the
    /// InfluxDB forwarder's is `influx::CURSOR`); `None` if it never did.
    pub async fn cursor(&self, name: &str) -> Result<Option<i64>, StoreError> {
        let name = name.to_owned();
        self.read(move |conn| {
            use rusqlite::OptionalExtension;
            Ok(conn
                .query_row(
                    "SELECT position FROM cursors WHERE name = ?1",
                    [name],
                    |r| r.get(0),
                )
                .optional()?)
        })
        .await
    }

    /// The store's [`StoreStats`]. Counting the readings decodes every row of the log, so a call
    /// costs time in proportion to the store's size: for tests and diagnostics, not a hot path.
    pub async fn stats(&self) -> Result<StoreStats, StoreError> {
        self.read(|conn| {
            Ok(StoreStats {
                readings: conn.query_row(
                    "SELECT COALESCE(SUM(reading_count(readings)), 0) FROM log_rows",
                    [],
                    |r| r.get(0),
                )?,
                rejects: conn.query_row("SELECT COUNT(*) FROM rejects", [], |r| r.get(0))?,
                max_log_id: crate::store::log_end(conn)?,
            })
        })
        .await
    }
}
