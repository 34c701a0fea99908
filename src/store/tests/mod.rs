//! Tests of the store, by the part they test; the helpers they share are here.

use std::time::Duration;

use bytes::Bytes;
use jiff::{Timestamp, ToSpan};

use super::*;
use crate::model::{City, Domain, FeedId, Location, Reading, RejectReason, Rejection, Status};
use crate::store::OnConflict;

mod live;
mod log;
mod query;
mod schema;
mod writer;

/// Every query of the log prepared by any test (`log_query`).
pub(super) static LOG_QUERIES: std::sync::Mutex<std::collections::BTreeSet<String>> =
    std::sync::Mutex::new(std::collections::BTreeSet::new());

fn config(dir: &std::path::Path) -> StoreConfig {
    StoreConfig {
        path: dir.join("t.db"),
        synchronous: Synchronous::Normal,
        ..StoreConfig::default()
    }
}

fn reading(device: &str, metric: &'static str, at: Timestamp, value: f64) -> Reading {
    Reading {
        location: Some(Location {
            lat: 21.59,
            lon: 105.84,
            ward: None,
        }),
        ..Reading::sample(device, metric, at, value)
    }
}

fn env(readings: Vec<Reading>) -> Envelope {
    Envelope {
        feed: FeedId::new("thai-nguyen"),
        topic: "tn/ioc/air/X".into(),
        received_at: readings
            .first()
            .map(|r| r.received_at)
            .unwrap_or_else(Timestamp::now),
        content: Content::Readings(readings),
        partial: None,
    }
}

fn reject(payload: &'static [u8], dup: bool) -> Envelope {
    Envelope {
        feed: FeedId::new("thai-nguyen"),
        topic: "tn/ioc/air/X".into(),
        received_at: Timestamp::now(),
        content: Content::Rejected {
            rejection: Rejection::new(RejectReason::MalformedJson, "expected value at line 1"),
            payload: Bytes::from_static(payload),
            payload_size: payload.len(),
            dup,
        },
        partial: None,
    }
}

fn t0() -> Timestamp {
    "2026-11-22T01:05:00Z".parse().unwrap()
}

/// Under continuous writes the WAL starts over: the checkpointer catches up and asks the
/// writer, which restarts it between commits; the log stays near the limit instead of growing
/// with everything written.
/// Put a store back into the layout of versions up to 5 — one `readings` row per reading,
/// keyed by device, in log order — and mark it `version`.
fn back_to_reading_rows(conn: &rusqlite::Connection, version: i64) {
    conn.execute_batch(
        "CREATE TABLE readings (
             id INTEGER PRIMARY KEY, series_id INTEGER NOT NULL REFERENCES series (id),
             device_key INTEGER NOT NULL, observed_at INTEGER NOT NULL, value REAL NOT NULL,
             status INTEGER NOT NULL, received_at INTEGER NOT NULL,
             UNIQUE (device_key, observed_at, series_id));",
    )
    .unwrap();
    let rows: Vec<(i64, i64, i64, Vec<u8>)> = conn
        .prepare("SELECT device_key, observed_at, received_at, readings FROM log_rows ORDER BY id")
        .unwrap()
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    for (device_key, observed, received, blob) in rows {
        for r in packed::decode(&blob) {
            let (series, value, status) = r.unwrap();
            conn.execute(
                "INSERT INTO readings (series_id, device_key, observed_at, value, status, received_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                rusqlite::params![series, device_key, observed, value, status, received],
            )
            .unwrap();
        }
    }
    conn.execute_batch(&format!(
        "DROP VIEW log_rows; DROP TABLE observations; DROP TABLE observations_recent;
         DROP INDEX series_device_key; PRAGMA user_version = {version};"
    ))
    .unwrap();
}
