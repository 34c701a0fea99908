//! The latest value of every series and the latest state of every device, in memory.
//!
//! Updating `series` and `devices` rows in every commit cost about as much as storing the
//! readings themselves: each commit rewrote one page per touched series and device, scattered
//! over both tables. Instead the writer updates this after each commit (the API reads it here,
//! so a value is visible the moment its commit lands) and writes it to those tables every few
//! seconds, a slice per commit, with the log position they cover (see `Flusher`). When the store opens, it loads
//! the tables and replays the readings logged after that position, so a crash loses nothing.

use std::{
    sync::{RwLock, RwLockReadGuard, RwLockWriteGuard},
    time::{Duration, Instant},
};

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
        load_series(conn, &mut state)?;
        load_devices(conn, &mut state)?;
        let tx = conn.transaction()?;
        let position: i64 = tx
            .query_row(SELECT_CURSOR, [CURSOR], |r| r.get(0))
            .optional()?
            .unwrap_or(0);
        let replayed = replay(&tx, position, &mut state)?;
        if !replayed.series.is_empty() {
            tracing::info!(
                series = replayed.series.len(),
                devices = replayed.devices.len(),
                "Replayed the readings logged after the last flush of latest values."
            );
        }
        write_all(&tx, &state, &replayed.series, &replayed.devices)?;
        tx.commit()?;
        Ok(Live {
            state: RwLock::new(state),
        })
    }
}

/// Every series' latest reading as last written to its row.
const SELECT_SERIES: &str = "SELECT id, last_observed_at, last_value, last_status FROM series
                 WHERE last_observed_at IS NOT NULL";

/// Every device's live state as last written to its row.
const SELECT_DEVICES: &str =
    "SELECT device_id, last_seen, last_observed_at, last_status, learned_interval_ms
                 FROM devices";

/// The log position the tables are up to date with (`?1` = `CURSOR`).
const SELECT_CURSOR: &str = "SELECT position FROM cursors WHERE name = ?1";

/// One arm of the replay: each log row after position `?1`, with its series' device.
const REPLAY_ARM: &str = "SELECT o.id, s.device_id, o.observed_at, o.received_at, o.readings
                     FROM {log} o JOIN series s ON s.id = o.device_key WHERE o.id > ?1";

/// Read the series rows' latest readings into `state`.
fn load_series(conn: &Connection, state: &mut State) -> Result<(), StoreError> {
    let mut stmt = conn.prepare(SELECT_SERIES)?;
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
    Ok(())
}

/// Read the device rows' live state into `state`.
fn load_devices(conn: &Connection, state: &mut State) -> Result<(), StoreError> {
    let mut stmt = conn.prepare(SELECT_DEVICES)?;
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
    Ok(())
}

/// The series and devices a replay changed.
#[derive(Default)]
struct Replayed {
    series: HashSet<i64>,
    devices: HashSet<String>,
}

/// Apply the readings logged after `position` to `state`, in log order.
fn replay(
    tx: &rusqlite::Transaction<'_>,
    position: i64,
    state: &mut State,
) -> Result<Replayed, StoreError> {
    let mut replayed = Replayed::default();
    let mut stmt = tx.prepare(super::log_query(&format!(
        "{} ORDER BY 1",
        super::over_log(REPLAY_ARM)
    )))?;
    let mut rows = stmt.query([position])?;
    while let Some(row) = rows.next()? {
        replay_row(row, state, &mut replayed)?;
    }
    Ok(replayed)
}

/// Apply one log row (one device's readings at one time) to `state`.
fn replay_row(
    row: &rusqlite::Row<'_>,
    state: &mut State,
    replayed: &mut Replayed,
) -> Result<(), StoreError> {
    let device = row.get_ref(1)?.as_str().map_err(rusqlite::Error::from)?;
    let (observed_at, received_at): (i64, i64) = (row.get(2)?, row.get(3)?);
    if !replayed.devices.contains(device) {
        replayed.devices.insert(device.to_owned());
    }
    // Not `entry(device.to_owned())`: that copies the key for every row.
    let d = match state.devices.get_mut(device) {
        Some(d) => d,
        None => state.devices.entry(device.to_owned()).or_default(),
    };
    let mut latest = Vec::new();
    for r in super::packed::decode(row.get_ref(4)?.as_blob().map_err(rusqlite::Error::from)?) {
        let (id, value, status) = r?;
        let l = Latest {
            observed_at,
            value,
            status,
        };
        d.saw(received_at, observed_at, status);
        latest.push((id, l));
    }
    for (id, l) in latest {
        state.offer(id, l);
        replayed.series.insert(id);
    }
    Ok(())
}

/// Write the given series' and devices' live state to their rows.
fn write_rows<'a>(
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
    Ok(())
}

/// Write the given rows and record that the tables now cover everything logged so far (in
/// this transaction's view).
fn write_all<'a>(
    tx: &rusqlite::Transaction<'_>,
    state: &State,
    series: impl IntoIterator<Item = &'a i64>,
    devices: impl IntoIterator<Item = &'a String>,
) -> Result<(), StoreError> {
    write_rows(tx, state, series, devices)?;
    super::writer::set_cursor(tx, CURSOR, super::log_end(tx)?)
}

/// How often a round of writing the live state to the tables starts.
const ROUND_EVERY: Duration = Duration::from_secs(5);
/// A round is spread over about this many commits …
const ROUND_COMMITS: usize = 25;
/// … writing at least this many series (and a quarter as many devices) in each.
const MIN_SLICE: usize = 1_024;

/// The writer's side of keeping the tables up to date with `Live`, in rounds: every
/// `ROUND_EVERY` a round takes what changed since the last one and writes it a slice per commit,
/// in id order (neighbouring rows share pages), and when the last slice lands the cursor moves
/// to the log position the round started at. Writing it all in one commit held that commit's
/// messages for 0.3–0.5 s at 90,000 series.
///
/// Why the cursor is right: a reading at or before the round's position was published to
/// `Live` before the round started; its series (and device) changed either since the previous
/// round started — then this round writes it, from `Live`, which holds that reading or a later
/// one — or before, and then the previous round wrote it.
#[derive(Debug)]
pub(super) struct Flusher {
    /// Changed since the current round started.
    series: HashSet<i64>,
    devices: HashSet<String>,
    round: Option<Round>,
    started: Instant,
    /// `ROUND_EVERY`, but for tests.
    every: Duration,
}

#[derive(Debug)]
struct Round {
    series: Vec<i64>,
    devices: Vec<String>,
    /// How far the slices written so far reach, in `series` and `devices`.
    series_done: usize,
    devices_done: usize,
    series_slice: usize,
    devices_slice: usize,
    position: i64,
}

/// What a commit wrote of the round, applied once it commits.
#[derive(Debug, Clone, Copy)]
pub(super) struct Slice {
    series_done: usize,
    devices_done: usize,
    /// The round's last slice.
    last: bool,
}

impl Default for Flusher {
    fn default() -> Flusher {
        Flusher {
            series: HashSet::default(),
            devices: HashSet::default(),
            round: None,
            started: Instant::now(),
            every: ROUND_EVERY,
        }
    }
}

impl Flusher {
    #[cfg(test)]
    pub(super) fn round_every(&mut self, every: Duration) {
        self.every = every;
    }

    pub(super) fn changed_series(&mut self, id: i64) {
        self.series.insert(id);
    }

    pub(super) fn changed_device(&mut self, device: &str) {
        if !self.devices.contains(device) {
            self.devices.insert(device.to_owned());
        }
    }

    /// Within a commit's transaction, before its readings: start a round if one is due, and
    /// write the round's next slice.
    pub(super) fn step(
        &mut self,
        tx: &rusqlite::Transaction<'_>,
        live: &Live,
    ) -> Result<Option<Slice>, StoreError> {
        if self.round.is_none()
            && self.started.elapsed() >= self.every
            && !(self.series.is_empty() && self.devices.is_empty())
        {
            self.start_round(tx)?;
        }
        let Some(round) = &self.round else {
            return Ok(None);
        };
        let series_done = (round.series_done + round.series_slice).min(round.series.len());
        let devices_done = (round.devices_done + round.devices_slice).min(round.devices.len());
        let slice = Slice {
            series_done,
            devices_done,
            last: series_done == round.series.len() && devices_done == round.devices.len(),
        };
        write_rows(
            tx,
            &live.read(),
            &round.series[round.series_done..series_done],
            &round.devices[round.devices_done..devices_done],
        )?;
        if slice.last {
            super::writer::set_cursor(tx, CURSOR, round.position)?;
        }
        Ok(Some(slice))
    }

    /// Start a round of what changed since the last, in id order, up to the log's end.
    fn start_round(&mut self, tx: &rusqlite::Transaction<'_>) -> Result<(), StoreError> {
        // Read first: if it fails, the changed sets are kept for the next round.
        let position = super::log_end(tx)?;
        let mut series: Vec<i64> = self.series.drain().collect();
        let mut devices: Vec<String> = self.devices.drain().collect();
        series.sort_unstable();
        devices.sort_unstable();
        self.round = Some(Round {
            series_slice: MIN_SLICE.max(series.len().div_ceil(ROUND_COMMITS)),
            devices_slice: (MIN_SLICE / 4).max(devices.len().div_ceil(ROUND_COMMITS)),
            series,
            devices,
            series_done: 0,
            devices_done: 0,
            position,
        });
        self.started = Instant::now();
        Ok(())
    }

    /// The transaction holding `slice` committed.
    pub(super) fn written(&mut self, slice: Slice) {
        if slice.last {
            self.round = None;
        } else if let Some(round) = &mut self.round {
            round.series_done = slice.series_done;
            round.devices_done = slice.devices_done;
        }
    }

    /// Write everything not yet written (the rest of the round and what changed since), with
    /// the position of the end of the log.
    pub(super) fn flush(&mut self, conn: &mut Connection, live: &Live) -> Result<(), StoreError> {
        let tx = conn.transaction()?;
        let (series, devices) = match &self.round {
            Some(r) => (&r.series[r.series_done..], &r.devices[r.devices_done..]),
            None => (&[][..], &[][..]),
        };
        write_all(
            &tx,
            &live.read(),
            series.iter().chain(&self.series),
            devices.iter().chain(&self.devices),
        )?;
        tx.commit()?;
        self.round = None;
        self.series.clear();
        self.devices.clear();
        self.started = Instant::now();
        Ok(())
    }
}
