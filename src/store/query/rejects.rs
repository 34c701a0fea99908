//! The quarantine as the API lists it, and its counts per feed and reason.

use super::*;

/// Which quarantine rows [`Store::rejects`] lists, newest first: exact feed and reason, received
/// in `[from, to)`, ids below `before_id` (to page back past the last id seen), at most `limit`.
/// `None` matches any; the default lists nothing, as its `limit` is 0.
#[derive(Debug, Clone, Default)]
pub struct RejectFilter {
    pub feed: Option<String>,
    pub reason: Option<String>,
    pub from: Option<Timestamp>,
    pub to: Option<Timestamp>,
    pub limit: u32,
    pub before_id: Option<i64>,
}

/// A quarantined message, or part of one, as the API lists it: feed, topic, when it was
/// received, the reason and its detail, and the payload as stored. A payload longer than
/// `ingest.quarantine_max_bytes` is stored cut short: `truncated` is then true, and
/// `payload_size` is always the size before.
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

/// How many rows the quarantine holds for one feed and reason.
#[derive(Debug, Clone, Serialize)]
pub struct RejectCount {
    pub feed: String,
    pub reason: String,
    pub count: i64,
}

/// The `WHERE` clauses of a quarantine listing.
fn reject_clauses(f: &RejectFilter) -> Where {
    let mut w = Where::default();
    if let Some(feed) = &f.feed {
        w.add("feed = ?", feed.clone());
    }
    if let Some(reason) = &f.reason {
        w.add("reason = ?", reason.clone());
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
    w
}

/// A quarantine row as `Store::rejects` reads it; a payload that is not UTF-8 is also given
/// in hex.
fn reject_row(row: &rusqlite::Row<'_>) -> rusqlite::Result<RejectRow> {
    let payload: Vec<u8> = row.get(8)?;
    let text = String::from_utf8_lossy(&payload).into_owned();
    let hex = std::str::from_utf8(&payload)
        .is_err()
        .then(|| hex::encode(&payload));
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
}

impl Store {
    /// The quarantine rows `filter` selects, newest (highest id) first.
    pub async fn rejects(&self, filter: &RejectFilter) -> Result<Vec<RejectRow>, StoreError> {
        let f = filter.clone();
        self.read(move |conn| {
            let w = reject_clauses(&f);
            let sql = format!(
                "SELECT id, feed, topic, received_at, reason, detail, payload_size, truncated, payload,
                        partial
                 FROM rejects {} ORDER BY id DESC LIMIT {}",
                w.sql(),
                f.limit
            );
            let mut stmt = conn.prepare(&sql)?;
            let rows = stmt.query_map(params_from_iter(w.params.iter()), reject_row)?;
            Ok(rows.collect::<Result<_, _>>()?)
        })
        .await
    }

    /// The quarantine's row count per feed and reason, of everything it holds, by feed and then
    /// reason; pairs without rows are left out.
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
}
