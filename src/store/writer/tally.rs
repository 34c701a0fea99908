//! What a commit adds to the per-minute rollups and the per-feed counters.

use super::*;

#[derive(Default)]
pub(super) struct FeedDelta {
    pub(super) received: i64,
    pub(super) stored: i64,
    pub(super) rejected: i64,
    pub(super) duplicate: i64,
    pub(super) readings: i64,
    pub(super) partial: i64,
    pub(super) readings_rejected: i64,
    pub(super) conflicts: i64,
    pub(super) last_message_at: i64,
    pub(super) last_stored_at: Option<i64>,
}

/// metric, city, domain, minute start (UTC ms).
pub(super) type RollupKey = (&'static str, City, Domain, i64);

/// Count, sum, min and max of the readings a batch stored in one rollup minute.
pub(super) struct Rollup {
    pub(super) count: i64,
    pub(super) sum: f64,
    pub(super) min: f64,
    pub(super) max: f64,
}

impl Rollup {
    /// A stored value `old` became `new`: the count stays, the sum moves. The minute's min
    /// and max can only widen (the old value may have been one of them).
    #[inline]
    pub(super) fn replace(&mut self, old: f64, new: f64) {
        self.sum += new - old;
        self.min = self.min.min(new);
        self.max = self.max.max(new);
    }

    #[inline]
    pub(super) fn empty() -> Rollup {
        Rollup {
            count: 0,
            sum: 0.0,
            min: f64::INFINITY,
            max: f64::NEG_INFINITY,
        }
    }

    #[inline]
    pub(super) fn add(&mut self, v: f64) {
        self.count += 1;
        self.sum += v;
        self.min = self.min.min(v);
        self.max = self.max.max(v);
    }
}

pub(super) fn write_rollups(
    tx: &rusqlite::Transaction<'_>,
    rollup: &HashMap<RollupKey, Rollup>,
) -> Result<(), StoreError> {
    let mut upsert = tx.prepare_cached(
        "INSERT INTO rollup_minute (metric, city, domain, minute, count, sum, min, max)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)
         ON CONFLICT (metric, city, domain, minute) DO UPDATE SET
           count = count + excluded.count,
           sum = sum + excluded.sum,
           min = MIN(min, excluded.min),
           max = MAX(max, excluded.max)",
    )?;
    for ((metric, city, domain, minute), r) in rollup {
        upsert.execute(params![
            metric,
            city.as_str(),
            domain.as_str(),
            minute,
            r.count,
            r.sum,
            r.min,
            r.max
        ])?;
    }
    Ok(())
}

pub(super) fn write_counters(
    tx: &rusqlite::Transaction<'_>,
    feeds: &HashMap<&str, FeedDelta>,
) -> Result<(), StoreError> {
    let mut upsert = tx.prepare_cached(
        "INSERT INTO feed_counters (feed, received, stored, rejected, duplicate, readings,
                                    last_message_at, last_stored_at, partial, readings_rejected,
                                    conflicts)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)
         ON CONFLICT (feed) DO UPDATE SET
           received = received + excluded.received,
           stored = stored + excluded.stored,
           rejected = rejected + excluded.rejected,
           duplicate = duplicate + excluded.duplicate,
           readings = readings + excluded.readings,
           partial = partial + excluded.partial,
           readings_rejected = readings_rejected + excluded.readings_rejected,
           conflicts = conflicts + excluded.conflicts,
           last_message_at = MAX(COALESCE(last_message_at, 0), excluded.last_message_at),
           last_stored_at = COALESCE(MAX(last_stored_at, excluded.last_stored_at), last_stored_at, excluded.last_stored_at)",
    )?;
    for (feed, d) in feeds {
        upsert.execute(params![
            feed,
            d.received,
            d.stored,
            d.rejected,
            d.duplicate,
            d.readings,
            d.last_message_at,
            d.last_stored_at,
            d.partial,
            d.readings_rejected,
            d.conflicts
        ])?;
    }
    Ok(())
}
