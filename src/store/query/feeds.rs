//! Per-feed all-time counters and per-city reading counts.

use super::*;

/// A feed's all-time counters, updated in the transaction that commits the messages they count,
/// so they always agree with the store: messages received, stored (at least one new reading),
/// rejected (quarantined whole, or every reading lost to a conflict) and duplicate (nothing
/// new, such as a redelivery), and readings stored. The times are when messages were received.
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

/// How many readings of a city were observed in the last hour, counted from the minute rollups
/// by whole minutes (see [`Store::city_summary`]).
#[derive(Debug, Clone, Serialize)]
pub struct CitySummary {
    pub city: City,
    pub readings_last_hour: i64,
}

impl Store {
    /// Every feed's all-time counters, by feed name. A feed has none until its first commit.
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
}
