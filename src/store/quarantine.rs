//! The quarantine: the one place a reject row is written, for whole messages, the rejected
//! parts of stored ones, the values conflicts did not keep, and lines InfluxDB refused.

use rusqlite::Connection;

use super::StoreError;
use crate::model::RejectReason;

/// A row of the quarantine.
pub(crate) struct Quarantined<'a> {
    pub feed: &'a str,
    pub topic: &'a str,
    /// UTC ms.
    pub received_at: i64,
    pub reason: RejectReason,
    pub detail: &'a str,
    /// Already truncated to `ingest.quarantine_max_bytes`.
    pub payload: &'a [u8],
    /// The payload's size before truncation.
    pub payload_size: usize,
    /// The payload's SHA-256 in hex, if the caller already has it.
    pub sha256: Option<String>,
    /// Only a part of the message: its other readings were stored.
    pub partial: bool,
}

/// Quarantine something: the one place a reject row is written.
pub(crate) fn insert_reject(conn: &Connection, q: &Quarantined<'_>) -> Result<(), StoreError> {
    use sha2::{Digest, Sha256};
    let sha = match &q.sha256 {
        Some(sha) => sha.clone(),
        None => hex::encode(Sha256::digest(q.payload)),
    };
    conn.prepare_cached(
        "INSERT INTO rejects (feed, topic, received_at, reason, detail, payload, payload_size,
                              payload_sha256, truncated, partial)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
    )?
    .execute(rusqlite::params![
        q.feed,
        q.topic,
        q.received_at,
        q.reason.as_str(),
        q.detail,
        q.payload,
        q.payload_size as i64,
        sha,
        q.payload.len() < q.payload_size,
        q.partial,
    ])?;
    Ok(())
}
