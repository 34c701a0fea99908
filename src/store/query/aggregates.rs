//! Bucketed aggregates aligned to local (UTC+7) midnight: city- and domain-wide ones from
//! the minute rollups, per-device ones from the readings.

use super::*;

/// UTC+7: bucket boundaries fall on local midnight.
const LOCAL_OFFSET_MS: i64 = 7 * HOUR_MS;

/// One canonical `metric` over `[from, to)`, optionally narrowed to a city, a domain and a
/// device, in buckets of `every_ms` milliseconds aligned to local (UTC+7) midnight: one bucket
/// per interval or, with `group_by_device`, per interval and device.
#[derive(Debug, Clone)]
pub struct AggregateQuery {
    pub metric: String,
    pub city: Option<City>,
    pub domain: Option<Domain>,
    pub device_id: Option<String>,
    pub from: Timestamp,
    pub to: Timestamp,
    pub every_ms: i64,
    pub group_by_device: bool,
}

/// One bucket of an aggregates query: `[bucket_start, bucket_end)`, the device when grouped by
/// device, and the count, mean, min, max and sum of the readings in it, of every status.
/// Intervals without readings have no bucket.
#[derive(Debug, Clone, Serialize)]
pub struct Bucket {
    pub bucket_start: Timestamp,
    pub bucket_end: Timestamp,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub device_id: Option<String>,
    pub count: i64,
    pub mean: f64,
    pub min: f64,
    pub max: f64,
    pub sum: f64,
}

/// City- or domain-wide buckets of whole minutes come from the minute rollups (`from` and `to`
/// then count whole minutes: the minutes holding them are included); per-device queries and
/// finer buckets read the readings.
fn aggregates(conn: &Connection, q: &AggregateQuery) -> Result<Vec<Bucket>, StoreError> {
    if q.device_id.is_none() && !q.group_by_device && q.every_ms % MINUTE_MS == 0 {
        aggregates_from_rollups(conn, q)
    } else {
        aggregates_from_readings(conn, q)
    }
}

pub(in crate::store) fn aggregates_from_rollups(
    conn: &Connection,
    q: &AggregateQuery,
) -> Result<Vec<Bucket>, StoreError> {
    let mut w = scope(q, "");
    w.add(
        "minute >= ?",
        q.from.as_millisecond().div_euclid(MINUTE_MS) * MINUTE_MS,
    );
    w.add("minute < ?", q.to.as_millisecond());
    let every = q.every_ms.max(MINUTE_MS);
    let bucket = local_bucket("minute", every);
    let sql = format!(
        "SELECT {bucket} AS b, NULL, SUM(count), SUM(sum) / SUM(count), MIN(min), MAX(max), SUM(sum)
         FROM rollup_minute {} GROUP BY b ORDER BY b",
        w.sql()
    );
    buckets(conn, &sql, &w, every)
}

pub(in crate::store) fn aggregates_from_readings(
    conn: &Connection,
    q: &AggregateQuery,
) -> Result<Vec<Bucket>, StoreError> {
    let mut w = scope(q, "s.");
    if let Some(device) = &q.device_id {
        w.add("s.device_id = ?", device.clone());
    }
    w.add("o.observed_at >= ?", q.from.as_millisecond());
    w.add("o.observed_at < ?", q.to.as_millisecond());
    let every = q.every_ms.max(1);
    let bucket = local_bucket("observed_at", every);
    let (group_col, group_by) = if q.group_by_device {
        ("device_id", format!("{bucket}, device_id"))
    } else {
        ("NULL", bucket.clone())
    };
    // The series' value in each of its device's rows; NULL in rows without it.
    let values = crate::store::over_log(&format!(
        "SELECT o.observed_at, s.device_id, reading_value(o.readings, s.id) AS v
         FROM series s JOIN {{log}} o ON o.device_key = s.device_key {}",
        w.sql()
    ));
    let sql = format!(
        "SELECT {bucket} AS b, {group_col}, COUNT(*), AVG(v), MIN(v), MAX(v), SUM(v)
         FROM ({values}) WHERE v IS NOT NULL GROUP BY {group_by} ORDER BY b, 2"
    );
    buckets(conn, crate::store::log_query(&sql), &w, every)
}

/// The metric, city and domain of an aggregates query, on columns named `{prefix}metric`, ….
fn scope(q: &AggregateQuery, prefix: &str) -> Where {
    let mut w = Where::default();
    w.add(&format!("{prefix}metric = ?"), q.metric.clone());
    if let Some(city) = q.city {
        w.add(&format!("{prefix}city = ?"), city.as_str().to_owned());
    }
    if let Some(domain) = q.domain {
        w.add(&format!("{prefix}domain = ?"), domain.as_str().to_owned());
    }
    w
}

/// Start of the `every`-long bucket holding the UTC ms in `column`, aligned to local midnight:
/// floor((t + 7h) / every) * every - 7h.
fn local_bucket(column: &str, every: i64) -> String {
    format!("((({column} + {LOCAL_OFFSET_MS}) / {every}) * {every} - {LOCAL_OFFSET_MS})")
}

/// Run an aggregates query selecting bucket start, device (or NULL), count, mean, min, max, sum.
fn buckets(conn: &Connection, sql: &str, w: &Where, every: i64) -> Result<Vec<Bucket>, StoreError> {
    let mut stmt = conn.prepare_cached(sql)?;
    let rows = stmt.query_map(params_from_iter(w.params.iter()), |row| {
        let start: i64 = row.get(0)?;
        Ok(Bucket {
            bucket_start: ts(start),
            bucket_end: ts(start + every),
            device_id: row.get(1)?,
            count: row.get(2)?,
            mean: row.get(3)?,
            min: row.get(4)?,
            max: row.get(5)?,
            sum: row.get(6)?,
        })
    })?;
    Ok(rows.collect::<Result<_, _>>()?)
}

impl Store {
    /// The buckets of `q` by start time (then device). City- or domain-wide queries in whole
    /// minutes read the minute rollups, so their `from` and `to` count whole minutes (the
    /// minutes holding them are included); the others read the log's readings.
    pub async fn aggregates(&self, q: &AggregateQuery) -> Result<Vec<Bucket>, StoreError> {
        let q = q.clone();
        self.read(move |conn| aggregates(conn, &q)).await
    }
}
