//! The write side: one transaction per batch of messages, then the caller acks them.
//!
//! - `log`: the readings' log rows, redeliveries and conflicts;
//! - `recent`: the recent log rows and their move to the device-keyed table;
//! - `catalogue`: series ids, device rows and cadences;
//! - `tally`: per-minute rollups and per-feed counters;
//! - `quarantine`: the rejected parts of stored messages and the values conflicts did not keep;
//! - `walk`: what each message's readings change once logged, and how the message ended.

mod catalogue;
mod log;
mod quarantine;
mod recent;
mod tally;
mod walk;

use std::{
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use foldhash::{HashMap, HashMapExt};

use bytes::Bytes;
use jiff::Timestamp;
use rusqlite::{Connection, OptionalExtension, params};
use sha2::{Digest, Sha256};

use super::{
    MINUTE_MS, StoreError,
    live::{Flusher, Latest, Live},
    packed, status_code,
};
pub(in crate::store) use catalogue::upsert_catalogue;
use catalogue::{DeviceState, DeviceTouch, SeriesCache, write_new_devices};
use log::{Fate, LogEnd, Ordered, insert_readings};
use recent::{
    MERGE_EVERY, MERGE_GAP, MERGE_ROWS, MERGE_ROWS_MAX, MOVE_CHUNK, move_recent, recent_rows,
};
use tally::{write_counters, write_rollups};
use walk::{Effects, Walk};

use super::{OnConflict, StoreConfig};
use crate::{
    aqi::Pollutant,
    model::{City, Domain, FeedId, Reading, RejectReason, Rejection, Status},
    normalise::DeviceConfig,
};

/// One message as it reaches the store.
#[derive(Debug, Clone)]
pub struct Envelope {
    pub feed: FeedId,
    pub topic: String,
    pub received_at: Timestamp,
    pub content: Content,
    /// Parts of a message with readings that were rejected; the store quarantines them with
    /// the raw payload. Boxed: rare, and envelopes queue by the thousand.
    pub partial: Option<Box<Partial>>,
}

/// The rejected parts of a message whose other readings are stored.
#[derive(Debug, Clone)]
pub struct Partial {
    pub rejected: Vec<Rejection>,
    /// Already truncated by the caller to `ingest.quarantine_max_bytes`.
    pub payload: Bytes,
    pub payload_size: usize,
}

/// What a message produced: readings, or a quarantine record.
#[derive(Debug, Clone)]
pub enum Content {
    Readings(Vec<Reading>),
    Rejected {
        rejection: Rejection,
        /// Already truncated by the caller to `ingest.quarantine_max_bytes`.
        payload: Bytes,
        payload_size: usize,
        /// MQTT DUP flag: the broker may have delivered this before.
        dup: bool,
    },
}

/// How each message of a batch ended. Exactly one per message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// At least one new reading stored (or, `store.on_conflict = "keep_latest"`, a stored
    /// value replaced). `conflicts`: its readings that met a stored one of another value.
    Stored { inserted: usize, conflicts: usize },
    /// Everything it carried was already stored (a QoS 1 redelivery).
    Duplicate,
    /// Quarantined with its reason.
    Rejected,
    /// Nothing stored: each of its readings that was not a duplicate met a stored reading of
    /// another value, which was kept (`keep_first`). Counted as rejected; the values are in
    /// the rejects as `conflict`s.
    Conflicted { conflicts: usize },
}

/// What one [`StoreWriter::prune`] deleted as past its retention: log rows (of both log tables)
/// and quarantine rows. A call deletes at most 20,000 rows of `observations` and 20,000
/// rejects, so a count of 20,000 or more means the next call may find more to delete.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct PruneStats {
    /// Log rows: a device's readings at one time.
    pub observations: usize,
    pub rejects: usize,
}

/// The single write connection, owned by the commit thread.
pub struct StoreWriter {
    conn: Connection,
    retention_ms: i64,
    reject_retention_ms: i64,
    series: SeriesCache,
    devices: HashMap<String, DeviceState>,
    /// Told about each committed pollutant sample.
    hourly: Arc<super::hourly::HourlyPollutants>,
    /// Latest values and device states, updated after each commit.
    live: Arc<Live>,
    /// Writes `live` to the tables every few seconds.
    flusher: Flusher,
    /// Set by the checkpointer: start the WAL over (see `super::checkpoint`).
    restart_wal: Arc<AtomicBool>,
    /// Bumped after a commit that changed what the device listing reads from the tables
    /// (`query::devices::Catalogue`): a device's row or a series.
    catalogue: Arc<AtomicU64>,
    /// Where the log ends; read from the tables when unknown (at start, after a failed
    /// commit).
    log: Option<LogEnd>,
    /// When `observations_recent` was last moved to `observations`.
    last_merge: Instant,
    /// Move the recent rows once they are this many and `merge_gap` has passed …
    merge_rows: i64,
    /// … or this many.
    merge_rows_max: i64,
    merge_gap: Duration,
    /// A move reads at most this many rows at a time.
    move_chunk: usize,
    /// Which of two values of one series and time is kept.
    on_conflict: OnConflict,
    /// The last commit's readings that lost a conflict, by position in the batch (messages,
    /// then readings): not stored, so consumers after the commit must not see them.
    discarded: Vec<usize>,
    scratch: Scratch,
}

impl std::fmt::Debug for StoreWriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StoreWriter")
            .field("series", &self.series.len())
            .finish()
    }
}

impl StoreWriter {
    pub(super) fn new(
        conn: Connection,
        config: &StoreConfig,
        hourly: Arc<super::hourly::HourlyPollutants>,
        live: Arc<Live>,
        restart_wal: Arc<AtomicBool>,
        catalogue: Arc<AtomicU64>,
    ) -> Result<StoreWriter, StoreError> {
        Ok(StoreWriter {
            catalogue,
            restart_wal,
            hourly,
            live,
            flusher: Flusher::default(),
            conn,
            retention_ms: config.retention.as_millis() as i64,
            reject_retention_ms: config.reject_retention.as_millis() as i64,
            series: HashMap::new(),
            devices: HashMap::new(),
            log: None,
            last_merge: Instant::now(),
            merge_rows: MERGE_ROWS,
            merge_rows_max: MERGE_ROWS_MAX,
            on_conflict: config.on_conflict,
            discarded: Vec::new(),
            merge_gap: MERGE_GAP,
            move_chunk: MOVE_CHUNK,
            scratch: Scratch::default(),
        })
    }

    /// Commit a batch in one transaction and say how each message ended. On error nothing was
    /// committed and the in-memory caches are reset, so a retry starts clean.
    pub fn commit(&mut self, batch: &[Envelope]) -> Result<Vec<Outcome>, StoreError> {
        let result = self.commit_inner(batch);
        if result.is_err() {
            self.series.clear();
            self.devices.clear();
            self.log = None;
        }
        result
    }

    /// The last commit's readings that lost a conflict (see `discarded`), in batch order.
    pub fn discarded(&self) -> &[usize] {
        &self.discarded
    }

    fn commit_inner(&mut self, batch: &[Envelope]) -> Result<Vec<Outcome>, StoreError> {
        self.discarded.clear();
        let mut scratch = std::mem::take(&mut self.scratch);
        let readings = batch_readings(batch);
        let mut fx = Effects::sized(&mut scratch, batch.len(), readings);
        let committed = self.transact(batch, readings, &mut scratch, &mut fx)?;
        // 4. Publish what is now committed, and keep the buffers for the next commit.
        self.publish_committed(&committed, &fx);
        self.scratch = Scratch {
            latest: fx.latest,
            pollutants: recycle(fx.pollutants),
            sids: committed.sids,
            fates: committed.fates,
            ..scratch
        };
        Ok(committed.outcomes)
    }

    /// Steps 1–3 of a commit, in one transaction: log the batch's readings (`readings` of
    /// them), walk its messages, write what they change, and commit.
    fn transact<'b>(
        &mut self,
        batch: &'b [Envelope],
        readings: usize,
        scratch: &mut Scratch,
        fx: &mut Effects<'b>,
    ) -> Result<Committed, StoreError> {
        let tx = begin_immediate(&mut self.conn)?;
        let slice = self.flusher.step(&tx, &self.live)?;
        let mut log = LogEnd::take_or_load(&mut self.log, &tx)?;
        // 1. Log the readings: each gets its series and its fate (new, duplicate, conflict).
        let (sids, fates, new_series) = insert_readings(
            &tx,
            &mut self.series,
            batch,
            scratch,
            readings,
            &mut log,
            self.on_conflict,
        )?;
        // 2. Walk the messages: what each reading changes, what is quarantined, the outcomes.
        let outcomes = Walk {
            devices: &mut self.devices,
            live: &self.live,
            discarded: &mut self.discarded,
            policy: self.on_conflict,
        }
        .messages(&tx, batch, &sids, &fates, fx)?;
        // 3. Devices' rows, counters and rollups in the same transaction; commit.
        let devices_changed = write_effects(&tx, fx, &mut self.devices)?;
        tx.commit()?;
        self.log = Some(log);
        Ok(Committed {
            outcomes,
            slice,
            catalogue_changed: new_series | devices_changed,
            sids,
            fates,
        })
    }

    /// Make what a commit changed visible: the device listing's version, the live-state
    /// round's progress, the latest values and device states, and the hourly sums.
    fn publish_committed(&mut self, committed: &Committed, fx: &Effects<'_>) {
        if committed.catalogue_changed {
            self.catalogue.fetch_add(1, Ordering::Release);
        }
        if let Some(slice) = committed.slice {
            self.flusher.written(slice);
        }
        self.publish(&fx.latest, &fx.touched);
        self.hourly.add_all(&fx.pollutants);
        self.hourly.correct(&fx.corrections);
    }

    /// Make a commit's latest values and device states visible, and remember to write them.
    fn publish(&mut self, latest: &[(i64, Latest)], touched: &HashMap<&str, DeviceTouch<'_>>) {
        let mut live = self.live.write();
        for &(id, l) in latest {
            live.offer(id, l);
            self.flusher.changed_series(id);
        }
        for (&device, t) in touched {
            let state = self.devices.get(device);
            let d = match live.devices.get_mut(device) {
                Some(d) => d,
                None => live.devices.entry(device.to_owned()).or_default(),
            };
            d.saw(t.received_at, t.observed_at, status_code(t.reading.status));
            d.learned_interval_ms = state.and_then(|s| s.learned_interval);
            self.flusher.changed_device(device);
        }
    }

    /// Write the latest values and device states to their rows now (at shutdown; otherwise
    /// a slice per commit, see `live::Flusher`).
    pub fn flush(&mut self) -> Result<(), StoreError> {
        self.flusher.flush(&mut self.conn, &self.live)
    }

    #[cfg(test)]
    pub(super) fn live_round_every(&mut self, every: std::time::Duration) {
        self.flusher.round_every(every);
    }

    /// Start the WAL over if the checkpointer asked to, between commits: here it costs copying
    /// the frames of the last commit or two, and never waits for the write lock. Whether it did.
    pub fn restart_wal_if_asked(&mut self) -> Result<bool, StoreError> {
        if self.restart_wal.swap(false, Ordering::AcqRel) {
            let restarted = super::restart_wal(&self.conn)?;
            tracing::trace!(restarted, "Asked to start the WAL over.");
            return Ok(restarted);
        }
        Ok(false)
    }

    /// Move the rows of `observations_recent` to `observations` (see the schema) when due (see
    /// `MERGE_ROWS`), or a minute after the last move: in one transaction, sorted by device,
    /// so each device's index leaf is written once. Between commits, like the WAL restart.
    /// How many rows it moved.
    pub fn merge_recent_if_due(&mut self) -> Result<usize, StoreError> {
        let rows = match &self.log {
            Some(log) => log.recent_rows,
            None => recent_rows(&self.conn)?,
        };
        let since = self.last_merge.elapsed();
        let due = (rows >= self.merge_rows && since >= self.merge_gap)
            || rows >= self.merge_rows_max
            || (rows > 0 && since >= MERGE_EVERY);
        if !due {
            return Ok(0);
        }
        let tx = self
            .conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        let moved = move_recent(&tx, self.move_chunk)?;
        tx.execute("DELETE FROM observations_recent", [])?;
        tx.commit()?;
        if let Some(log) = &mut self.log {
            log.recent_rows = 0;
        }
        self.last_merge = Instant::now();
        Ok(moved)
    }

    #[cfg(test)]
    pub(super) fn merge_every_rows(&mut self, rows: i64) {
        self.merge_when(rows, rows, Duration::ZERO);
    }

    #[cfg(test)]
    pub(super) fn merge_when(&mut self, rows: i64, rows_max: i64, gap: Duration) {
        (self.merge_rows, self.merge_rows_max, self.merge_gap) = (rows, rows_max, gap);
    }

    #[cfg(test)]
    pub(super) fn move_in_chunks_of(&mut self, rows: usize) {
        self.move_chunk = rows;
    }

    /// Delete readings and rejects past their retention, in bounded chunks so one call never
    /// holds the write lock for long.
    pub fn prune(&mut self, now: Timestamp) -> Result<PruneStats, StoreError> {
        const CHUNK: usize = 20_000;
        let now_ms = now.as_millisecond();
        let observations = self.conn.execute(
            "DELETE FROM observations WHERE id IN
               (SELECT o.id FROM (SELECT DISTINCT device_key FROM series) d
                  CROSS JOIN observations o
                  ON o.device_key = d.device_key AND o.observed_at < ?1 LIMIT ?2)",
            params![now_ms - self.retention_ms, CHUNK as i64],
        )?;
        let recent = self.conn.execute(
            "DELETE FROM observations_recent WHERE observed_at < ?1",
            [now_ms - self.retention_ms],
        )?;
        // The rest of where the log ends stands: positions and the running count only grow,
        // and the horizon still bounds what the log may hold.
        if let Some(log) = &mut self.log {
            log.recent_rows -= recent as i64;
        }
        let observations = observations + recent;
        let rejects = self.conn.execute(
            "DELETE FROM rejects WHERE id IN
               (SELECT id FROM rejects WHERE received_at < ?1 LIMIT ?2)",
            params![now_ms - self.reject_retention_ms, CHUNK as i64],
        )?;
        self.conn.execute(
            "DELETE FROM rollup_minute WHERE minute + ?1 <= ?2",
            params![MINUTE_MS, now_ms - self.retention_ms],
        )?;
        Ok(PruneStats {
            observations,
            rejects,
        })
    }

    /// Persist a log reader's position (e.g. the InfluxDB forwarder's cursor).
    pub fn set_cursor(&self, name: &str, position: i64) -> Result<(), StoreError> {
        set_cursor(&self.conn, name, position)
    }
}

pub(super) fn set_cursor(conn: &Connection, name: &str, position: i64) -> Result<(), StoreError> {
    conn.execute(
        "INSERT INTO cursors (name, position, updated_at) VALUES (?1, ?2, ?3)
         ON CONFLICT (name) DO UPDATE SET position = excluded.position, updated_at = excluded.updated_at",
        params![name, position, Timestamp::now().as_millisecond()],
    )?;
    Ok(())
}

/// The buffers a commit fills, kept for the next one. Allocated afresh, their pages were
/// faulted in and zeroed on every commit: jemalloc hands freed pages back to the system within
/// a second (`.cargo/config.toml`), and a commit at full load fills a few megabytes of them.
/// Those holding references into a batch are kept empty, as `'static`.
#[derive(Default)]
struct Scratch {
    latest: Vec<(i64, Latest)>,
    order: Vec<Ordered<'static>>,
    pollutants: Vec<(&'static str, Pollutant, i64, f64)>,
    sids: Vec<i64>,
    fates: Vec<Fate>,
}

/// A write transaction. IMMEDIATE: the write lock is taken up front (waiting under the busy
/// timeout), so a read early in the batch cannot make the later write fail with SQLITE_BUSY.
fn begin_immediate(conn: &mut Connection) -> rusqlite::Result<rusqlite::Transaction<'_>> {
    conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
}

/// Step 3 of a commit: the new or changed devices' rows, the feeds' counters and the minute
/// rollups, in the commit's transaction. Whether a device's row was written.
fn write_effects(
    tx: &rusqlite::Transaction<'_>,
    fx: &Effects<'_>,
    devices: &mut HashMap<String, DeviceState>,
) -> Result<bool, StoreError> {
    let changed = write_new_devices(tx, &fx.touched, devices)?;
    write_counters(tx, &fx.feeds)?;
    write_rollups(tx, &fx.rollup)?;
    Ok(changed)
}

/// What a committed transaction leaves to do: how each message ended, the live-state slice
/// it wrote, whether it changed the device listing, and its readings' series ids and fates
/// (buffers kept for the next commit).
struct Committed {
    outcomes: Vec<Outcome>,
    slice: Option<super::live::Slice>,
    catalogue_changed: bool,
    sids: Vec<i64>,
    fates: Vec<Fate>,
}

/// An empty vector with room for `len`, in `kept`'s allocation (see `recycle`).
fn reuse<T, U>(kept: &mut Vec<T>, len: usize) -> Vec<U> {
    let mut v = recycle(std::mem::take(kept));
    v.reserve(len);
    v
}

/// `v`'s allocation, emptied, for elements of the same layout (here the same type with
/// another lifetime): collecting `into_iter().map(…)` of a vector reuses its allocation then.
/// Should the standard library ever stop doing so, this allocates anew, which is only slower.
fn recycle<T, U>(mut v: Vec<T>) -> Vec<U> {
    v.clear();
    v.into_iter().map(|_| unreachable!("emptied")).collect()
}

/// How many readings a batch carries.
fn batch_readings(batch: &[Envelope]) -> usize {
    batch
        .iter()
        .map(|env| match &env.content {
            Content::Readings(readings) => readings.len(),
            Content::Rejected { .. } => 0,
        })
        .sum()
}

#[cfg(test)]
mod tests {
    #[test]
    fn recycle_keeps_the_allocation_for_another_lifetime() {
        let device = String::from("TN-AQ-01");
        let mut v: Vec<(&str, i64)> = Vec::with_capacity(1_000);
        v.push((&device, 1));
        let at = v.as_ptr() as usize;
        let mut kept: Vec<(&'static str, i64)> = super::recycle(v);
        assert!(kept.is_empty());
        assert_eq!((kept.capacity(), kept.as_ptr() as usize), (1_000, at));
        let again: Vec<(&str, i64)> = super::reuse(&mut kept, 10);
        assert_eq!((again.capacity(), again.as_ptr() as usize), (1_000, at));
    }
}
