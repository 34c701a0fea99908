//! Hourly pollutant means and the latest hourly VN_AQI per station.

use super::*;

/// The mean of one metric's `measuring` readings of a device over the hour starting at
/// `hour_start_ms` (UTC ms, a whole hour), and how many readings it averages.
#[derive(Debug, Clone, Serialize)]
pub struct HourlyMean {
    pub metric: String,
    pub hour_start_ms: i64,
    pub mean: f64,
    pub count: i64,
}

impl Store {
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
        self.read(move |conn| hourly_means(conn, &device_id, &metrics, from, to))
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
}

/// One arm of the hourly means: device `?1`'s measuring readings of metric `?2` observed in
/// `[?3, ?4)`, each with its hour.
const HOURLY_ARM: &str = "SELECT (o.observed_at / 3600000) * 3600000 AS hour,
                            reading_value(o.readings, s.id) AS v
                     FROM series s JOIN {log} o ON o.device_key = s.device_key
                     WHERE s.device_id = ?1 AND s.metric = ?2
                       AND o.observed_at >= ?3 AND o.observed_at < ?4
                       AND reading_status(o.readings, s.id) = 0";

/// See [`Store::hourly_means`].
fn hourly_means(
    conn: &Connection,
    device_id: &str,
    metrics: &[String],
    from: Timestamp,
    to: Timestamp,
) -> Result<Vec<HourlyMean>, StoreError> {
    let mut stmt = conn.prepare_cached(crate::store::log_query(&format!(
        "SELECT hour, AVG(v), COUNT(*) FROM ({}) GROUP BY hour ORDER BY hour",
        crate::store::over_log(HOURLY_ARM)
    )))?;
    let mut out = Vec::new();
    for metric in metrics {
        let params = rusqlite::params![
            device_id,
            metric,
            from.as_millisecond(),
            to.as_millisecond()
        ];
        let rows = stmt.query_map(params, |row| {
            Ok(HourlyMean {
                metric: metric.clone(),
                hour_start_ms: row.get(0)?,
                mean: row.get(1)?,
                count: row.get(2)?,
            })
        })?;
        for row in rows {
            out.push(row?);
        }
    }
    Ok(out)
}
