//! The read side: typed queries behind the API. All run on pooled read connections.

use std::{
    collections::{HashMap, hash_map::Entry},
    sync::{
        Arc, Mutex,
        atomic::{AtomicU64, Ordering},
    },
};

use jiff::Timestamp;
use rusqlite::{Connection, params_from_iter, types::Value as Sql};
use serde::Serialize;

use super::{HOUR_MS, MINUTE_MS, Store, StoreError, live::Live, status_from_code, ts};
use crate::model::{City, Domain, Location, Status};

/// UTC+7: bucket boundaries fall on local midnight.
const LOCAL_OFFSET_MS: i64 = 7 * HOUR_MS;

#[derive(Debug, Clone, Default)]
pub struct DeviceFilter {
    pub city: Option<City>,
    pub domain: Option<Domain>,
    pub device_id: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct LatestValue {
    pub metric: Arc<str>,
    pub value: f64,
    pub unit: Arc<str>,
    pub observed_at: Timestamp,
    pub status: Status,
}

#[derive(Debug, Clone, Serialize)]
pub struct DeviceRow {
    pub device_id: String,
    pub city: City,
    pub feed: Option<String>,
    pub domain: Domain,
    pub name: Option<String>,
    pub location: Option<Location>,
    pub position_source: Option<String>,
    pub catalogued: bool,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub flood_levels: Vec<f64>,
    /// Configured interval, else the learned one.
    pub expected_interval_ms: Option<i64>,
    pub first_seen: Option<Timestamp>,
    pub last_seen: Option<Timestamp>,
    pub last_observed_at: Option<Timestamp>,
    pub last_status: Option<&'static str>,
    pub latest: Vec<LatestValue>,
}

#[derive(Debug, Clone, Copy, Serialize)]
pub struct Point {
    pub observed_at: Timestamp,
    pub value: f64,
    pub status: Status,
}

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

#[derive(Debug, Clone, Serialize)]
pub struct HourlyMean {
    pub metric: String,
    pub hour_start_ms: i64,
    pub mean: f64,
    pub count: i64,
}

#[derive(Debug, Clone, Default)]
pub struct RejectFilter {
    pub feed: Option<String>,
    pub reason: Option<String>,
    pub from: Option<Timestamp>,
    pub to: Option<Timestamp>,
    pub limit: u32,
    pub before_id: Option<i64>,
}

#[derive(Debug, Clone, Serialize)]
pub struct RejectRow {
    pub id: i64,
    pub feed: String,
    pub topic: String,
    pub received_at: Timestamp,
    pub reason: String,
    pub detail: String,
    pub payload_size: i64,
    pub truncated: bool,
    /// Only a part of the message (a rejected reading, or the value a conflict did not keep):
    /// its other readings were stored.
    pub partial: bool,
    /// The stored payload as text (invalid UTF-8 replaced); see `payload_hex` for the bytes.
    pub payload_text: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub payload_hex: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct RejectCount {
    pub feed: String,
    pub reason: String,
    pub count: i64,
}

#[derive(Debug, Clone, Serialize)]
pub struct FeedCounters {
    pub feed: String,
    pub received: i64,
    pub stored: i64,
    pub rejected: i64,
    pub duplicate: i64,
    pub readings: i64,
    /// Stored messages with rejected parts (counted in `stored`).
    pub partial: i64,
    /// Those rejected parts.
    pub readings_rejected: i64,
    /// Readings that met a stored reading of their series and time with another value.
    pub conflicts: i64,
    pub last_message_at: Option<Timestamp>,
    pub last_stored_at: Option<Timestamp>,
}

#[derive(Debug, Clone, Serialize)]
pub struct CitySummary {
    pub city: City,
    pub readings_last_hour: i64,
}

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

#[derive(Debug, Clone, Serialize)]
pub struct StoreStats {
    pub readings: i64,
    pub rejects: i64,
    pub max_log_id: i64,
}

/// SQL `WHERE` clauses with their parameters, built from optional filters.
#[derive(Default)]
struct Where {
    clauses: Vec<String>,
    params: Vec<Sql>,
}

impl Where {
    fn add(&mut self, clause: &str, value: impl Into<Sql>) {
        self.params.push(value.into());
        self.clauses
            .push(clause.replace('?', &format!("?{}", self.params.len())));
    }

    fn sql(&self) -> String {
        if self.clauses.is_empty() {
            String::new()
        } else {
            format!("WHERE {}", self.clauses.join(" AND "))
        }
    }
}

impl Store {
    pub async fn devices(&self, filter: &DeviceFilter) -> Result<Vec<DeviceRow>, StoreError> {
        let filter = filter.clone();
        let inner = Arc::clone(&self.inner);
        self.read(move |conn| {
            let catalogue = inner.catalogue.get(conn)?;
            Ok(devices(&catalogue, &inner.live, &filter))
        })
        .await
    }

    pub async fn series(
        &self,
        device_id: &str,
        metric: &str,
        from: Timestamp,
        to: Timestamp,
        limit: u32,
    ) -> Result<Vec<Point>, StoreError> {
        let (device_id, metric) = (device_id.to_owned(), metric.to_owned());
        self.read(move |conn| {
            let mut stmt = conn.prepare_cached(super::log_query(&format!(
                "{} ORDER BY 1 LIMIT ?5",
                super::over_log(
                    "SELECT o.observed_at, reading_value(o.readings, s.id) AS v,
                            reading_status(o.readings, s.id)
                     FROM series s JOIN {log} o ON o.device_key = s.device_key
                     WHERE s.device_id = ?1 AND s.metric = ?2 AND o.observed_at >= ?3
                       AND o.observed_at < ?4 AND v IS NOT NULL"
                )
            )))?;
            let rows = stmt.query_map(
                rusqlite::params![
                    device_id,
                    metric,
                    from.as_millisecond(),
                    to.as_millisecond(),
                    limit
                ],
                |row| {
                    Ok(Point {
                        observed_at: ts(row.get(0)?),
                        value: row.get(1)?,
                        status: status_from_code(row.get(2)?),
                    })
                },
            )?;
            Ok(rows.collect::<Result<_, _>>()?)
        })
        .await
    }

    pub async fn aggregates(&self, q: &AggregateQuery) -> Result<Vec<Bucket>, StoreError> {
        let q = q.clone();
        self.read(move |conn| aggregates(conn, &q)).await
    }

    /// Hourly means of `metrics` for one device, `measuring` samples only, hours in
    /// `[from, to)` keyed by their start.
    pub async fn hourly_means(
        &self,
        device_id: &str,
        metrics: &[&str],
        from: Timestamp,
        to: Timestamp,
    ) -> Result<Vec<HourlyMean>, StoreError> {
        let device_id = device_id.to_owned();
        let metrics: Vec<String> = metrics.iter().map(|m| (*m).to_owned()).collect();
        self.read(move |conn| {
            let mut stmt = conn.prepare_cached(super::log_query(&format!(
                "SELECT hour, AVG(v), COUNT(*) FROM ({}) GROUP BY hour ORDER BY hour",
                super::over_log(
                    "SELECT (o.observed_at / 3600000) * 3600000 AS hour,
                            reading_value(o.readings, s.id) AS v
                     FROM series s JOIN {log} o ON o.device_key = s.device_key
                     WHERE s.device_id = ?1 AND s.metric = ?2
                       AND o.observed_at >= ?3 AND o.observed_at < ?4
                       AND reading_status(o.readings, s.id) = 0"
                )
            )))?;
            let mut out = Vec::new();
            for metric in &metrics {
                let rows = stmt.query_map(
                    rusqlite::params![
                        device_id,
                        metric,
                        from.as_millisecond(),
                        to.as_millisecond()
                    ],
                    |row| {
                        Ok(HourlyMean {
                            metric: metric.clone(),
                            hour_start_ms: row.get(0)?,
                            mean: row.get(1)?,
                            count: row.get(2)?,
                        })
                    },
                )?;
                for row in rows {
                    out.push(row?);
                }
            }
            Ok(out)
        })
        .await
    }

    pub async fn rejects(&self, filter: &RejectFilter) -> Result<Vec<RejectRow>, StoreError> {
        let f = filter.clone();
        self.read(move |conn| {
            let mut w = Where::default();
            if let Some(feed) = f.feed {
                w.add("feed = ?", feed);
            }
            if let Some(reason) = f.reason {
                w.add("reason = ?", reason);
            }
            if let Some(from) = f.from {
                w.add("received_at >= ?", from.as_millisecond());
            }
            if let Some(to) = f.to {
                w.add("received_at < ?", to.as_millisecond());
            }
            if let Some(before) = f.before_id {
                w.add("id < ?", before);
            }
            let sql = format!(
                "SELECT id, feed, topic, received_at, reason, detail, payload_size, truncated, payload,
                        partial
                 FROM rejects {} ORDER BY id DESC LIMIT {}",
                w.sql(),
                f.limit
            );
            let mut stmt = conn.prepare(&sql)?;
            let rows = stmt.query_map(params_from_iter(w.params.iter()), |row| {
                let payload: Vec<u8> = row.get(8)?;
                let text = String::from_utf8_lossy(&payload).into_owned();
                let hex = std::str::from_utf8(&payload).is_err().then(|| hex::encode(&payload));
                Ok(RejectRow {
                    id: row.get(0)?,
                    feed: row.get(1)?,
                    topic: row.get(2)?,
                    received_at: ts(row.get(3)?),
                    reason: row.get(4)?,
                    detail: row.get(5)?,
                    payload_size: row.get(6)?,
                    truncated: row.get(7)?,
                    partial: row.get(9)?,
                    payload_text: text,
                    payload_hex: hex,
                })
            })?;
            Ok(rows.collect::<Result<_, _>>()?)
        })
        .await
    }

    pub async fn reject_counts(&self) -> Result<Vec<RejectCount>, StoreError> {
        self.read(|conn| {
            let mut stmt = conn.prepare_cached(
                "SELECT feed, reason, COUNT(*) FROM rejects GROUP BY feed, reason ORDER BY feed, reason",
            )?;
            let rows = stmt.query_map([], |row| {
                Ok(RejectCount {
                    feed: row.get(0)?,
                    reason: row.get(1)?,
                    count: row.get(2)?,
                })
            })?;
            Ok(rows.collect::<Result<_, _>>()?)
        })
        .await
    }

    pub async fn feed_counters(&self) -> Result<Vec<FeedCounters>, StoreError> {
        self.read(|conn| {
            let mut stmt = conn.prepare_cached(
                "SELECT feed, received, stored, rejected, duplicate, readings, last_message_at, last_stored_at,
                        partial, readings_rejected, conflicts
                 FROM feed_counters ORDER BY feed",
            )?;
            let rows = stmt.query_map([], |row| {
                Ok(FeedCounters {
                    feed: row.get(0)?,
                    received: row.get(1)?,
                    stored: row.get(2)?,
                    rejected: row.get(3)?,
                    duplicate: row.get(4)?,
                    readings: row.get(5)?,
                    last_message_at: row.get::<_, Option<i64>>(6)?.map(ts),
                    last_stored_at: row.get::<_, Option<i64>>(7)?.map(ts),
                    partial: row.get(8)?,
                    readings_rejected: row.get(9)?,
                    conflicts: row.get(10)?,
                })
            })?;
            Ok(rows.collect::<Result<_, _>>()?)
        })
        .await
    }

    /// Readings observed in the last hour (by whole minutes), per city, from the rollups.
    pub async fn city_summary(&self, now: Timestamp) -> Result<Vec<CitySummary>, StoreError> {
        self.read(move |conn| {
            let mut stmt = conn.prepare_cached(
                "SELECT city, SUM(count) FROM rollup_minute
                 WHERE minute >= ?1 AND minute <= ?2 GROUP BY city",
            )?;
            let since = (now.as_millisecond() - HOUR_MS).div_euclid(MINUTE_MS) * MINUTE_MS;
            let rows = stmt.query_map([since, now.as_millisecond()], |row| {
                Ok((row.get::<_, String>(0)?, row.get::<_, i64>(1)?))
            })?;
            let mut out = Vec::new();
            for row in rows {
                let (city, n) = row?;
                if let Ok(city) = city.parse() {
                    out.push(CitySummary {
                        city,
                        readings_last_hour: n,
                    });
                }
            }
            Ok(out)
        })
        .await
    }

    /// A station's most recent hourly VN_AQI: the current hour if computable, else the one
    /// before (NowCast needs the last 12 hours of means).
    pub async fn latest_hourly_aqi(
        &self,
        station: &str,
        now: Timestamp,
    ) -> Result<Option<crate::aqi::AqiResult>, StoreError> {
        use crate::aqi::{self, HourlyMeans, Pollutant};
        let hour = now.as_millisecond().div_euclid(HOUR_MS) * HOUR_MS;
        let from = hour - 13 * HOUR_MS;
        // For the present from memory (the common case: overview, alert rules), else from the
        // readings.
        let present =
            (Timestamp::now().as_millisecond() - now.as_millisecond()).abs() < HOUR_MS / 2;
        let means = if present {
            self.inner
                .hourly
                .means(station, from, now.as_millisecond() + 1)
                .unwrap_or_default()
        } else {
            let metrics: Vec<&'static str> = Pollutant::ALL.iter().map(|p| p.metric()).collect();
            let mut means = HourlyMeans::new();
            for row in self.hourly_means(station, &metrics, ts(from), now).await? {
                if let Some(p) = Pollutant::from_metric(&row.metric) {
                    means.insert(p, row.hour_start_ms, row.mean);
                }
            }
            means
        };
        Ok(aqi::hourly(&means, hour).or_else(|| aqi::hourly(&means, hour - HOUR_MS)))
    }

    /// The readings of the log after position `after_id`, in log order: whole log rows (a
    /// device's readings at one time, sharing the row's position), as many as it takes to
    /// reach `limit` readings.
    pub async fn read_log(&self, after_id: i64, limit: u32) -> Result<Vec<LogEntry>, StoreError> {
        self.read(move |conn| {
            let mut rows = conn.prepare_cached(super::log_query(
                "SELECT id, observed_at, readings FROM log_rows
                 WHERE id > ?1 ORDER BY id LIMIT ?2",
            ))?;
            let mut series = conn.prepare_cached(
                "SELECT s.city, s.feed, s.device_id, s.domain, s.metric, s.unit, d.ward
                 FROM series s LEFT JOIN devices d ON d.device_id = s.device_id
                 WHERE s.id = ?1",
            )?;
            // series id → (city, feed, device, domain, metric, unit, ward)
            type Meta = (
                String,
                String,
                String,
                String,
                String,
                String,
                Option<String>,
            );
            let mut known: HashMap<i64, Meta> = HashMap::default();
            let mut out = Vec::new();
            let mut rows = rows.query(rusqlite::params![after_id, limit])?;
            while out.len() < limit as usize
                && let Some(row) = rows.next()?
            {
                let (id, observed_at) = (row.get(0)?, ts(row.get(1)?));
                let blob = row.get_ref(2)?.as_blob().map_err(rusqlite::Error::from)?;
                for r in super::packed::decode(blob) {
                    let (series_id, value, status) = r?;
                    let meta = match known.entry(series_id) {
                        Entry::Occupied(e) => e.into_mut(),
                        Entry::Vacant(e) => e.insert(series.query_row([series_id], |row| {
                            Ok((
                                row.get(0)?,
                                row.get(1)?,
                                row.get(2)?,
                                row.get(3)?,
                                row.get(4)?,
                                row.get(5)?,
                                row.get(6)?,
                            ))
                        })?),
                    };
                    let (city, feed, device_id, domain, metric, unit, ward) = meta.clone();
                    out.push(LogEntry {
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
                    });
                }
            }
            Ok(out)
        })
        .await
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
            let last = super::last_log_row(conn)?.map_or(0, |(_, logged)| logged);
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

    pub async fn stats(&self) -> Result<StoreStats, StoreError> {
        self.read(|conn| {
            Ok(StoreStats {
                readings: conn.query_row(
                    "SELECT COALESCE(SUM(reading_count(readings)), 0) FROM log_rows",
                    [],
                    |r| r.get(0),
                )?,
                rejects: conn.query_row("SELECT COUNT(*) FROM rejects", [], |r| r.get(0))?,
                max_log_id: super::log_end(conn)?,
            })
        })
        .await
    }
}

/// What the device listing reads from the tables: each device's row (without what changes per
/// message) and series, in the listing's order. It changes only when the writer adds a device,
/// a series or a device's first position and feed, so it is kept until then: the overview, the
/// alert tick and the device API each read every device, the overview every second, and at
/// 15,000 stations reading them from the tables took about a tenth of a core from ingest
/// (BENCHMARKS.md, finding 17).
pub(super) struct Catalogue {
    /// The writer's count of changes this was read at.
    generation: u64,
    rows: Vec<DeviceRow>,
    /// (index in `rows`, series id, metric, unit), by device and metric.
    series: Vec<(usize, i64, Arc<str>, Arc<str>)>,
}

/// The last catalogue read, and the writer's count of changes to it.
#[derive(Default)]
pub(super) struct CatalogueCache {
    /// Bumped by the writer after each commit that changed what a catalogue holds.
    pub(super) generation: Arc<AtomicU64>,
    last: Mutex<Option<Arc<Catalogue>>>,
}

impl CatalogueCache {
    /// The catalogue as committed now: the last one read, unless the writer changed it since.
    pub(super) fn get(&self, conn: &Connection) -> Result<Arc<Catalogue>, StoreError> {
        // Read the count before the tables: a change committed meanwhile makes the next call
        // read them again.
        let generation = self.generation.load(Ordering::Acquire);
        if let Some(c) = self.last.lock().unwrap_or_else(|e| e.into_inner()).as_ref()
            && c.generation == generation
        {
            return Ok(Arc::clone(c));
        }
        let catalogue = Arc::new(read_catalogue(conn, generation)?);
        *self.last.lock().unwrap_or_else(|e| e.into_inner()) = Some(Arc::clone(&catalogue));
        Ok(catalogue)
    }
}

fn read_catalogue(conn: &Connection, generation: u64) -> Result<Catalogue, StoreError> {
    let mut stmt = conn.prepare_cached(
        "SELECT device_id, city, feed, domain, name, lat, lon, ward, position_source, flood_levels,
                configured_interval_ms, first_seen, catalogued
         FROM devices ORDER BY city, domain, device_id",
    )?;
    let rows: Vec<DeviceRow> = stmt
        .query_map([], |row| {
            let lat: Option<f64> = row.get(5)?;
            let lon: Option<f64> = row.get(6)?;
            let levels: Option<String> = row.get(9)?;
            Ok(DeviceRow {
                device_id: row.get(0)?,
                city: row.get::<_, String>(1)?.parse().unwrap_or(City::ThaiNguyen),
                feed: row.get(2)?,
                domain: row
                    .get::<_, String>(3)?
                    .parse()
                    .unwrap_or(Domain::AirQuality),
                name: row.get(4)?,
                location: lat.zip(lon).map(|(lat, lon)| Location {
                    lat,
                    lon,
                    ward: row.get(7).ok().flatten(),
                }),
                position_source: row.get(8)?,
                flood_levels: levels
                    .and_then(|l| serde_json::from_str(&l).ok())
                    .unwrap_or_default(),
                expected_interval_ms: row.get(10)?,
                first_seen: row.get::<_, Option<i64>>(11)?.map(ts),
                last_seen: None,
                last_observed_at: None,
                last_status: None,
                catalogued: row.get(12)?,
                latest: Vec::new(),
            })
        })?
        .collect::<Result<_, _>>()?;
    // Every device's series in one pass over `series`, not a query per device.
    let index: HashMap<&str, usize> = rows
        .iter()
        .enumerate()
        .map(|(i, d)| (d.device_id.as_str(), i))
        .collect();
    // Metric names and units repeat across devices: one shared string each.
    let mut names: HashMap<String, Arc<str>> = HashMap::new();
    let mut shared = |s: &str| -> Arc<str> {
        if let Some(a) = names.get(s) {
            return Arc::clone(a);
        }
        let a: Arc<str> = s.into();
        names.insert(s.to_owned(), Arc::clone(&a));
        a
    };
    let mut series = Vec::new();
    let mut stmt = conn.prepare_cached(
        "SELECT device_id, id, metric, unit FROM series ORDER BY device_id, metric",
    )?;
    let mut found = stmt.query([])?;
    while let Some(row) = found.next()? {
        if let Some(&i) = index.get(row.get_ref(0)?.as_str().map_err(rusqlite::Error::from)?) {
            let metric = shared(row.get_ref(2)?.as_str().map_err(rusqlite::Error::from)?);
            let unit = shared(row.get_ref(3)?.as_str().map_err(rusqlite::Error::from)?);
            series.push((i, row.get::<_, i64>(1)?, metric, unit));
        }
    }
    drop(index);
    Ok(Catalogue {
        generation,
        rows,
        series,
    })
}

/// `column` (an expression over a log row) of the first log row after position `after`, in
/// either of the log's tables.
fn first_log_row_after<T: rusqlite::types::FromSql>(
    conn: &Connection,
    column: &str,
    after: i64,
) -> Result<Option<T>, StoreError> {
    use rusqlite::OptionalExtension;
    let sql = super::over_log(&format!("SELECT id, {column} FROM {{log}} WHERE id > ?1"))
        + " ORDER BY 1 LIMIT 1";
    Ok(conn
        .query_row(super::log_query(&sql), [after], |r| r.get(1))
        .optional()?)
}

/// The device rows `filter` selects, with what changes per message (last seen, latest values,
/// learned interval) from the writer's live state rather than the rows, which lag it by
/// seconds. (Series are selected by device only: a catalogued device's city or domain can
/// differ from what its readings carry.)
fn devices(catalogue: &Catalogue, live: &Live, filter: &DeviceFilter) -> Vec<DeviceRow> {
    let selected = |d: &DeviceRow| {
        filter.city.is_none_or(|c| d.city == c)
            && filter.domain.is_none_or(|c| d.domain == c)
            && filter
                .device_id
                .as_ref()
                .is_none_or(|id| *id == d.device_id)
    };
    // Where each catalogue row went in the result, if selected.
    let mut slot = vec![usize::MAX; catalogue.rows.len()];
    let mut rows = Vec::with_capacity(catalogue.rows.iter().filter(|d| selected(d)).count());
    for (i, d) in catalogue.rows.iter().enumerate() {
        if selected(d) {
            slot[i] = rows.len();
            rows.push(d.clone());
        }
    }
    // Held for lookups only, as the writer waits for it.
    let live = live.read();
    for d in &mut rows {
        if let Some(l) = live.devices.get(&d.device_id) {
            d.last_seen = l.last_seen.map(ts);
            d.last_observed_at = l.last_observed_at.map(ts);
            d.last_status = l.last_status.map(|c| status_from_code(c).as_str());
            d.expected_interval_ms = d
                .expected_interval_ms
                .or(l.learned_interval_ms.map(|v| v.round() as i64));
        }
    }
    // Each device's values sized up front: grown one by one, 15,000 devices' vectors were
    // copied twice each and their new pages faulted in, every second for the overview.
    let mut values = vec![0; rows.len()];
    for (i, ..) in &catalogue.series {
        if let Some(n) = values.get_mut(slot[*i]) {
            *n += 1;
        }
    }
    for (d, n) in rows.iter_mut().zip(values) {
        d.latest.reserve_exact(n);
    }
    for (i, id, metric, unit) in &catalogue.series {
        let Some(d) = rows.get_mut(slot[*i]) else {
            continue;
        };
        if let Some(l) = live.series.get(id) {
            d.latest.push(LatestValue {
                metric: Arc::clone(metric),
                value: l.value,
                unit: Arc::clone(unit),
                observed_at: ts(l.observed_at),
                status: status_from_code(l.status),
            });
        }
    }
    rows
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

pub(super) fn aggregates_from_rollups(
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

pub(super) fn aggregates_from_readings(
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
    let values = super::over_log(&format!(
        "SELECT o.observed_at, s.device_id, reading_value(o.readings, s.id) AS v
         FROM series s JOIN {{log}} o ON o.device_key = s.device_key {}",
        w.sql()
    ));
    let sql = format!(
        "SELECT {bucket} AS b, {group_col}, COUNT(*), AVG(v), MIN(v), MAX(v), SUM(v)
         FROM ({values}) WHERE v IS NOT NULL GROUP BY {group_by} ORDER BY b, 2"
    );
    buckets(conn, super::log_query(&sql), &w, every)
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
