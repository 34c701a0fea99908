//! The latest value of every series and the latest state of every device, in memory.
//!
//! Updating `series` and `devices` rows in every commit cost about as much as storing the
//! readings themselves: each commit rewrote one page per touched series and device, scattered
//! over both tables. Instead the writer updates this after each commit (the API reads it here,
//! so a value is visible the moment its commit lands) and writes it to those tables every few
//! seconds, inside a commit, with the log position it covers. When the store opens, it loads
//! the tables and replays the readings logged after that position, so a crash loses nothing.

use std::sync::{RwLock, RwLockReadGuard, RwLockWriteGuard};

use foldhash::{HashMap, HashSet};
use rusqlite::{Connection, OptionalExtension, params};

use super::StoreError;

/// The name of the log position the tables are up to date with, in `cursors`.
pub(super) const CURSOR: &str = "live";

/// A series' most recent reading.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) struct Latest {
    pub observed_at: i64,
    pub value: f64,
    pub status: i64,
}

/// What changes about a device as its readings arrive.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub(super) struct DeviceLive {
    /// When its last message was received (UTC ms).
    pub last_seen: Option<i64>,
    pub last_observed_at: Option<i64>,
    /// Status of the reading observed last.
    pub last_status: Option<i64>,
    /// Learned reporting interval (an EWMA of the gaps between observations).
    pub learned_interval_ms: Option<f64>,
}

impl DeviceLive {
    /// Take in a reading received at `received` and observed at `observed`.
    pub(super) fn saw(&mut self, received: i64, observed: i64, status: i64) {
        self.last_seen = Some(self.last_seen.map_or(received, |s| s.max(received)));
        if self.last_observed_at.is_none_or(|o| observed >= o) {
            self.last_observed_at = Some(observed);
            self.last_status = Some(status);
        }
    }
}

#[derive(Debug, Default)]
pub(super) struct State {
    /// By series id.
    pub series: HashMap<i64, Latest>,
    pub devices: HashMap<String, DeviceLive>,
}

impl State {
    /// Keep `latest` for series `id` unless a later reading is already known.
    pub(super) fn offer(&mut self, id: i64, latest: Latest) {
        self.series
            .entry(id)
            .and_modify(|l| {
                if latest.observed_at >= l.observed_at {
                    *l = latest;
                }
            })
            .or_insert(latest);
    }
}

#[derive(Debug, Default)]
pub(super) struct Live {
    state: RwLock<State>,
}

impl Live {
    pub(super) fn read(&self) -> RwLockReadGuard<'_, State> {
        self.state.read().unwrap_or_else(|e| e.into_inner())
    }

    pub(super) fn write(&self) -> RwLockWriteGuard<'_, State> {
        self.state.write().unwrap_or_else(|e| e.into_inner())
    }

    /// Load from the tables, replay the readings logged after their position, and bring the
    /// tables up to date with the result.
    pub(super) fn load(conn: &mut Connection) -> Result<Live, StoreError> {
        let mut state = State::default();
        {
            let mut stmt = conn.prepare(
                "SELECT id, last_observed_at, last_value, last_status FROM series
                 WHERE last_observed_at IS NOT NULL",
            )?;
            let mut rows = stmt.query([])?;
            while let Some(row) = rows.next()? {
                state.series.insert(
                    row.get(0)?,
                    Latest {
                        observed_at: row.get(1)?,
                        value: row.get(2)?,
                        status: row.get(3)?,
                    },
                );
            }
            let mut stmt = conn.prepare(
                "SELECT device_id, last_seen, last_observed_at, last_status, learned_interval_ms
                 FROM devices",
            )?;
            let mut rows = stmt.query([])?;
            while let Some(row) = rows.next()? {
                state.devices.insert(
                    row.get(0)?,
                    DeviceLive {
                        last_seen: row.get(1)?,
                        last_observed_at: row.get(2)?,
                        last_status: row.get(3)?,
                        learned_interval_ms: row.get::<_, Option<i64>>(4)?.map(|v| v as f64),
                    },
                );
            }
        }
        let tx = conn.transaction()?;
        let position: i64 = tx
            .query_row(
                "SELECT position FROM cursors WHERE name = ?1",
                [CURSOR],
                |r| r.get(0),
            )
            .optional()?
            .unwrap_or(0);
        let mut replayed_series = HashSet::default();
        let mut replayed_devices = HashSet::default();
        {
            let mut stmt = tx.prepare(
                "SELECT r.series_id, s.device_id, r.observed_at, r.value, r.status, r.received_at
                 FROM readings r JOIN series s ON s.id = r.series_id
                 WHERE r.id > ?1 ORDER BY r.id",
            )?;
            let mut rows = stmt.query([position])?;
            while let Some(row) = rows.next()? {
                let id: i64 = row.get(0)?;
                let latest = Latest {
                    observed_at: row.get(2)?,
                    value: row.get(3)?,
                    status: row.get(4)?,
                };
                state.offer(id, latest);
                replayed_series.insert(id);
                let device = row.get_ref(1)?.as_str().map_err(rusqlite::Error::from)?;
                if !replayed_devices.contains(device) {
                    replayed_devices.insert(device.to_owned());
                }
                // Not `entry(device.to_owned())`: that copies the key for every row.
                let d = match state.devices.get_mut(device) {
                    Some(d) => d,
                    None => state.devices.entry(device.to_owned()).or_default(),
                };
                d.saw(row.get(5)?, latest.observed_at, latest.status);
            }
        }
        if !replayed_series.is_empty() {
            tracing::info!(
                series = replayed_series.len(),
                devices = replayed_devices.len(),
                "Replayed the readings logged after the last flush of latest values."
            );
        }
        write(&tx, &state, &replayed_series, &replayed_devices)?;
        tx.commit()?;
        Ok(Live {
            state: RwLock::new(state),
        })
    }
}

/// Write the given series' and devices' live state to their rows, and record the log position
/// that covers (everything stored so far, in this transaction's view).
pub(super) fn write<'a>(
    tx: &rusqlite::Transaction<'_>,
    state: &State,
    series: impl IntoIterator<Item = &'a i64>,
    devices: impl IntoIterator<Item = &'a String>,
) -> Result<(), StoreError> {
    let mut update = tx.prepare_cached(
        "UPDATE series SET last_observed_at = ?2, last_value = ?3, last_status = ?4 WHERE id = ?1",
    )?;
    for id in series {
        if let Some(l) = state.series.get(id) {
            update.execute(params![id, l.observed_at, l.value, l.status])?;
        }
    }
    let mut update = tx.prepare_cached(
        "UPDATE devices SET last_seen = ?2, last_observed_at = ?3, last_status = ?4,
                            learned_interval_ms = ?5
         WHERE device_id = ?1",
    )?;
    for device in devices {
        if let Some(d) = state.devices.get(device) {
            update.execute(params![
                device,
                d.last_seen,
                d.last_observed_at,
                d.last_status,
                d.learned_interval_ms.map(|v| v.round() as i64)
            ])?;
        }
    }
    let position: i64 = tx.query_row("SELECT COALESCE(MAX(id), 0) FROM readings", [], |r| {
        r.get(0)
    })?;
    super::writer::set_cursor(tx, CURSOR, position)
}
