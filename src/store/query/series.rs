//! One device's series: its readings by time, from both log tables.

use super::*;

/// One stored reading of a series: when it was observed, its value in the series' canonical
/// unit, and the instrument's status.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct Point {
    pub observed_at: Timestamp,
    pub value: f64,
    pub status: Status,
}

/// One arm of a series query: device `?1`'s readings of metric `?2` observed in `[?3, ?4)`.
const SERIES_ARM: &str = "SELECT o.observed_at, reading_value(o.readings, s.id) AS v,
                            reading_status(o.readings, s.id)
                     FROM series s JOIN {log} o ON o.device_key = s.device_key
                     WHERE s.device_id = ?1 AND s.metric = ?2 AND o.observed_at >= ?3
                       AND o.observed_at < ?4 AND v IS NOT NULL";

/// A reading as `SERIES_ARM` reads it.
fn point(row: &rusqlite::Row<'_>) -> rusqlite::Result<Point> {
    Ok(Point {
        observed_at: ts(row.get(0)?),
        value: row.get(1)?,
        status: status_from_code(row.get(2)?),
    })
}

impl Store {
    /// The readings of `device_id`'s `metric` observed in `[from, to)`, of every status, oldest
    /// first; past `limit` readings, the oldest `limit`. An unknown device or metric gives none.
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
            let mut stmt = conn.prepare_cached(crate::store::log_query(&format!(
                "{} ORDER BY 1 LIMIT ?5",
                crate::store::over_log(SERIES_ARM)
            )))?;
            let params = rusqlite::params![
                device_id,
                metric,
                from.as_millisecond(),
                to.as_millisecond(),
                limit
            ];
            let rows = stmt.query_map(params, point)?;
            Ok(rows.collect::<Result<_, _>>()?)
        })
        .await
    }
}
