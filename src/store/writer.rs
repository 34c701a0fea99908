//! The write side: one transaction per batch of messages, then the caller acks them.

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
use crate::{
    aqi::Pollutant,
    config::{DeviceConfig, OnConflict, StoreConfig},
    model::{City, Domain, FeedId, Reading, RejectReason, Rejection, Status},
};

/// `observations_recent` is moved to `observations` (see the schema) once it holds this many rows
/// and the last move was `MERGE_GAP` ago, or once it holds `MERGE_ROWS_MAX`. A commit then dirties
/// few of `observations_recent`'s index pages. A move writes each device's newest leaf of
/// `observations` once per `MOVE_CHUNK` rows, however many of the device's rows they carry (at
/// 15,000 devices, 15,000 pages), so the larger the move the less it costs per row; but commits
/// wait while it runs, and a device's queries read the recent rows by time. So at moderate rates
/// moves stay small and short (at 10,000 msg/s, 50,000 rows every 5 s, 60–80 ms each), and only
/// under a load that fills this many rows faster than `MERGE_GAP` do they grow, up to
/// `MERGE_ROWS_MAX`: at 83,000 msg/s, 200,000 rows every 2.5 s, 0.4–0.65 s each; (b) +3–10 %
/// (BENCHMARKS.md, finding 26).
const MERGE_ROWS: i64 = 50_000;
/// The least time between two moves below `MERGE_ROWS_MAX` rows.
const MERGE_GAP: Duration = Duration::from_secs(2);
/// … or, whatever the gap, once this many rows wait.
const MERGE_ROWS_MAX: i64 = 200_000;
/// … or this long after the last move, so that a slow feed's rows move too.
const MERGE_EVERY: Duration = Duration::from_secs(60);
/// A move holds at most this many rows in memory at once: it reads them in this many at a
/// time, in log order, each chunk sorted by device on its own.
const MOVE_CHUNK: usize = 100_000;

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

/// What became of one reading of a batch.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Fate {
    /// Stored.
    New,
    /// Its series already holds this value and status at this time.
    Duplicate,
    /// Not stored: its series holds (or this batch brought) `kept` at this time.
    Lost { kept: f64 },
    /// Stored in place of `old`, which its series held at this time.
    Replaced { old: f64, old_status: i64 },
}

impl Fate {
    /// Whether the reading's value is now the stored one.
    fn stored(self) -> bool {
        matches!(self, Fate::New | Fate::Replaced { .. })
    }
}

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct PruneStats {
    /// Log rows: a device's readings at one time.
    pub observations: usize,
    pub rejects: usize,
}

/// The writer's state of a device: to learn its cadence message by message, and to know
/// whether its row needs more than the periodic flush of `live`.
#[derive(Debug, Clone, Default)]
struct DeviceState {
    last_observed: Option<i64>,
    learned_interval: Option<f64>,
    /// Its row was upserted by this writer (it exists, with feed and first sighting).
    row_written: bool,
    /// The row has a position.
    located: bool,
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
    /// (`query::Catalogue`): a device's row or a series.
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

#[derive(Default)]
struct FeedDelta {
    received: i64,
    stored: i64,
    rejected: i64,
    duplicate: i64,
    readings: i64,
    partial: i64,
    readings_rejected: i64,
    conflicts: i64,
    last_message_at: i64,
    last_stored_at: Option<i64>,
}

/// device → metric → series.
type SeriesCache = HashMap<String, HashMap<&'static str, SeriesKey>>;

struct DeviceTouch<'a> {
    reading: &'a Reading,
    received_at: i64,
    observed_at: i64,
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
        // IMMEDIATE: the write lock is taken up front (waiting under the busy timeout), so a
        // read early in the batch cannot make the later write fail with SQLITE_BUSY.
        let tx = self
            .conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        let slice = self.flusher.step(&tx, &self.live)?;
        // Sized up front: grown step by step, these tables were copied and their new pages
        // faulted in on every commit. The largest reuse the previous commit's allocations.
        let readings = batch_readings(batch);
        let mut scratch = std::mem::take(&mut self.scratch);
        let mut outcomes = Vec::with_capacity(batch.len());
        let mut feeds: HashMap<&str, FeedDelta> = HashMap::new();
        // Every new reading's value, in batch order: `Live::offer` keeps the latest per series.
        let mut latest: Vec<(i64, Latest)> = reuse(&mut scratch.latest, readings);
        let mut touched: HashMap<&str, DeviceTouch<'_>> = HashMap::with_capacity(batch.len());
        let mut rollup: HashMap<RollupKey, Rollup> = HashMap::new();
        let mut pollutants: Vec<(&str, Pollutant, i64, f64)> =
            reuse(&mut scratch.pollutants, readings);
        // Taken: a failed commit leaves it unknown.
        let mut log = match self.log.take() {
            Some(log) => log,
            None => LogEnd::load(&tx)?,
        };
        let mut catalogue_changed = false;
        let (sids, fates) = insert_readings(
            &tx,
            &mut self.series,
            batch,
            &mut scratch,
            readings,
            &mut log,
            &mut catalogue_changed,
            self.on_conflict,
        )?;
        let mut corrections: Vec<(&str, Pollutant, i64, f64, i32)> = Vec::new();
        let mut flat = 0;
        {
            for env in batch {
                let received_ms = env.received_at.as_millisecond();
                let delta = feeds.entry(env.feed.as_str()).or_default();
                delta.received += 1;
                delta.last_message_at = delta.last_message_at.max(received_ms);
                let outcome = match &env.content {
                    Content::Readings(readings) => {
                        let (mut inserted, mut conflicts) = (0, 0);
                        // A message's readings are usually one device's: its cadence and row
                        // state are looked up once per run of readings of a device.
                        for run in readings.chunk_by(|a, b| a.device_id == b.device_id) {
                            let device = run[0].device_id.as_str();
                            let state = device_state(&mut self.devices, &self.live, device);
                            let t = touched.entry(device).or_insert(DeviceTouch {
                                reading: &run[0],
                                received_at: received_ms,
                                observed_at: run[0].observed_at.as_millisecond(),
                            });
                            t.received_at = t.received_at.max(received_ms);
                            for r in run {
                                let (sid, fate) = (sids[flat], fates[flat]);
                                flat += 1;
                                let observed = r.observed_at.as_millisecond();
                                let minute = observed.div_euclid(MINUTE_MS) * MINUTE_MS;
                                let pollutant = Pollutant::from_metric(r.metric);
                                let measuring = r.status == Status::Measuring;
                                match fate {
                                    Fate::New => {
                                        inserted += 1;
                                        rollup
                                            .entry((r.metric, r.city, r.domain, minute))
                                            .or_insert_with(Rollup::empty)
                                            .add(r.value);
                                        if let Some(p) = pollutant
                                            && measuring
                                        {
                                            pollutants.push((device, p, observed, r.value));
                                        }
                                    }
                                    Fate::Replaced { old, old_status } => {
                                        inserted += 1;
                                        conflicts += 1;
                                        rollup
                                            .entry((r.metric, r.city, r.domain, minute))
                                            .or_insert_with(Rollup::empty)
                                            .replace(old, r.value);
                                        if let Some(p) = pollutant {
                                            let was = old_status == status_code(Status::Measuring);
                                            let (sum, n) = match (was, measuring) {
                                                (true, true) => (r.value - old, 0),
                                                (true, false) => (-old, -1),
                                                (false, true) => (r.value, 1),
                                                (false, false) => (0.0, 0),
                                            };
                                            corrections.push((device, p, observed, sum, n));
                                        }
                                        conflict(
                                            &tx,
                                            env,
                                            r,
                                            old,
                                            old_status,
                                            r.value,
                                            self.on_conflict,
                                        )?;
                                    }
                                    Fate::Lost { kept } => {
                                        conflicts += 1;
                                        self.discarded.push(flat - 1);
                                        let status = status_code(r.status);
                                        conflict(
                                            &tx,
                                            env,
                                            r,
                                            r.value,
                                            status,
                                            kept,
                                            self.on_conflict,
                                        )?;
                                    }
                                    Fate::Duplicate => {}
                                }
                                if fate.stored() {
                                    let l = Latest {
                                        observed_at: observed,
                                        value: r.value,
                                        status: status_code(r.status),
                                    };
                                    latest.push((sid, l));
                                }
                                state.learn(observed);
                                if observed >= t.observed_at {
                                    t.observed_at = observed;
                                    t.reading = r;
                                }
                            }
                        }
                        delta.conflicts += conflicts as i64;
                        let outcome = if inserted > 0 {
                            delta.stored += 1;
                            delta.readings += inserted as i64;
                            delta.last_stored_at = Some(received_ms);
                            Outcome::Stored {
                                inserted,
                                conflicts,
                            }
                        } else if conflicts > 0 {
                            delta.rejected += 1;
                            Outcome::Conflicted { conflicts }
                        } else {
                            delta.duplicate += 1;
                            Outcome::Duplicate
                        };
                        // A redelivery's rejected parts were quarantined the first time.
                        if let Some(p) = &env.partial
                            && outcome != Outcome::Duplicate
                        {
                            delta.partial += 1;
                            delta.readings_rejected += p.rejected.len() as i64;
                            quarantine_parts(&tx, env, p)?;
                        }
                        outcome
                    }
                    Content::Rejected {
                        rejection,
                        payload,
                        payload_size,
                        dup,
                    } => {
                        let sha = hex::encode(Sha256::digest(payload));
                        let seen = *dup
                            && tx
                                .prepare_cached(
                                    "SELECT 1 FROM rejects WHERE payload_sha256 = ?1 AND feed = ?2 AND topic = ?3",
                                )?
                                .query_row(params![sha, env.feed.as_str(), env.topic], |_| Ok(()))
                                .optional()?
                                .is_some();
                        if seen {
                            delta.duplicate += 1;
                            Outcome::Duplicate
                        } else {
                            super::insert_reject(
                                &tx,
                                &super::Quarantined {
                                    feed: env.feed.as_str(),
                                    topic: &env.topic,
                                    received_at: received_ms,
                                    reason: rejection.reason,
                                    detail: &rejection.detail,
                                    payload,
                                    payload_size: *payload_size,
                                    sha256: Some(sha),
                                    partial: false,
                                },
                            )?;
                            delta.rejected += 1;
                            Outcome::Rejected
                        }
                    }
                };
                outcomes.push(outcome);
            }
        }
        catalogue_changed |= write_new_devices(&tx, &touched, &mut self.devices)?;
        write_counters(&tx, &feeds)?;
        write_rollups(&tx, &rollup)?;
        tx.commit()?;
        self.log = Some(log);
        if catalogue_changed {
            self.catalogue.fetch_add(1, Ordering::Release);
        }
        if let Some(slice) = slice {
            self.flusher.written(slice);
        }
        self.publish(&latest, &touched);
        self.hourly.add_all(&pollutants);
        self.hourly.correct(&corrections);
        self.scratch = Scratch {
            latest,
            pollutants: recycle(pollutants),
            sids,
            fates,
            ..scratch
        };
        Ok(outcomes)
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

/// Copy the rows of `observations_recent` to `observations`, sorted by device and time, one
/// `INSERT` per row. One `INSERT … SELECT` would be simpler, but a statement that writes many
/// rows with given ids inside a transaction keeps a statement journal (SQLite may have to
/// undo it alone): a copy of every page it changes, which here is every device's leaf — 70 MB
/// of memory per move at 15,000 devices (BENCHMARKS.md, finding 24). A one-row `INSERT` keeps
/// none. Rows are read `chunk` at a time in log order, each chunk sorted on its own. How many
/// rows it copied.
fn move_recent(tx: &rusqlite::Transaction<'_>, chunk: usize) -> Result<usize, StoreError> {
    struct Row {
        device_key: i64,
        observed: i64,
        id: i64,
        received: i64,
        readings: Vec<u8>,
        log_readings: i64,
    }
    let mut select = tx.prepare(
        "SELECT device_key, observed_at, id, received_at, readings, log_readings
         FROM observations_recent WHERE id > ?1 ORDER BY id LIMIT ?2",
    )?;
    let mut insert = tx.prepare_cached(
        "INSERT INTO observations (id, device_key, observed_at, received_at, readings, log_readings)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
    )?;
    let chunk = chunk.max(1); // a read of none would end the move before its rows
    let (mut moved, mut after) = (0, i64::MIN);
    loop {
        let mut rows = select
            .query_map(params![after, chunk as i64], |r| {
                Ok(Row {
                    device_key: r.get(0)?,
                    observed: r.get(1)?,
                    id: r.get(2)?,
                    received: r.get(3)?,
                    readings: r.get(4)?,
                    log_readings: r.get(5)?,
                })
            })?
            .collect::<Result<Vec<Row>, _>>()?;
        let Some(last) = rows.last() else {
            return Ok(moved);
        };
        after = last.id;
        rows.sort_unstable_by_key(|r| (r.device_key, r.observed));
        for r in &rows {
            insert.execute(params![
                r.id,
                r.device_key,
                r.observed,
                r.received,
                r.readings,
                r.log_readings
            ])?;
        }
        moved += rows.len();
        if rows.len() < chunk {
            return Ok(moved);
        }
    }
}

/// Log every reading of a batch: one log row per device and observation time, its readings
/// packed (see `packed`), added to `observations_recent` in the order of the rows' key — by
/// device, then time — rather than as they arrived, so a row that meets one already logged
/// (see `add_to_row`) finds it once.
///
/// Returns, per reading in batch order (messages, then readings), its series id and its
/// `Fate`. Of two readings of one series and time in a batch, one is kept (`settle`); `flat`
/// orders them as they arrived. `readings` is how many the batch carries (`batch_readings`).
/// `new_series` is set when a series row was written.
#[allow(clippy::too_many_arguments)]
fn insert_readings(
    tx: &rusqlite::Transaction<'_>,
    series: &mut SeriesCache,
    batch: &[Envelope],
    scratch: &mut Scratch,
    readings: usize,
    log: &mut LogEnd,
    new_series: &mut bool,
    policy: OnConflict,
) -> Result<(Vec<i64>, Vec<Fate>), StoreError> {
    let mut sids = reuse(&mut scratch.sids, readings);
    let mut order: Vec<Ordered<'_>> = reuse(&mut scratch.order, readings);
    for env in batch {
        if let Content::Readings(readings) = &env.content {
            let received = env.received_at.as_millisecond();
            for r in readings {
                let key = series_key(tx, series, r, new_series)?;
                order.push(Ordered {
                    key,
                    observed: r.observed_at.as_millisecond(),
                    flat: sids.len(),
                    received,
                    reading: r,
                });
                sids.push(key.id);
            }
        }
    }
    order.sort_unstable_by_key(|o| (o.key.device_key, o.observed, o.key.id, o.flat));
    let mut fates = reuse(&mut scratch.fates, sids.len());
    fates.resize(sids.len(), Fate::Duplicate);
    let mut blob = Vec::with_capacity(128);
    let mut kept: Vec<&Ordered<'_>> = Vec::new();
    for row in
        order.chunk_by(|a, b| (a.key.device_key, a.observed) == (b.key.device_key, b.observed))
    {
        blob.clear();
        kept.clear();
        let mut received = i64::MIN;
        for run in row.chunk_by(|a, b| a.key.id == b.key.id) {
            let o = settle(run, policy, &mut fates);
            o.pack(&mut blob);
            received = received.max(o.received);
            kept.push(o);
        }
        let (device_key, observed) = (row[0].key.device_key, row[0].observed);
        let held = if log.horizon.may_hold(tx, device_key, observed)? {
            LogRow::find(tx, device_key, observed)?
        } else {
            None
        };
        log.horizon.extend(device_key, observed);
        match held {
            None => log.append(tx, device_key, observed, received, &blob, kept.len() as i64)?,
            Some(held) => add_to_row(tx, &kept, received, held, &mut fates, log, policy)?,
        }
    }
    scratch.order = recycle(order);
    Ok((sids, fates))
}

/// Of the readings of one series and time in a batch (in arrival order), the one to log, as
/// `policy` says; the others are duplicates (the same value and status) or lose the conflict.
fn settle<'r, 'a>(
    run: &'r [Ordered<'a>],
    policy: OnConflict,
    fates: &mut [Fate],
) -> &'r Ordered<'a> {
    let winner = match policy {
        OnConflict::KeepLatest => &run[run.len() - 1],
        OnConflict::KeepFirst => &run[0],
    };
    let (value, status) = (winner.reading.value, status_code(winner.reading.status));
    // Of the readings with the winning value, the first to arrive is the one stored.
    let kept = run
        .iter()
        .find(|o| same(o.reading, value, status))
        .unwrap_or(winner);
    for o in run {
        fates[o.flat] = if o.flat == kept.flat {
            Fate::New
        } else if same(o.reading, value, status) {
            Fate::Duplicate
        } else {
            Fate::Lost { kept: value }
        };
    }
    kept
}

/// Record the value a conflict did not keep as a `conflict` reject: the message's place, what
/// was kept and why, and as payload the discarded reading as JSON.
fn conflict(
    tx: &rusqlite::Transaction<'_>,
    env: &Envelope,
    r: &Reading,
    discarded: f64,
    discarded_status: i64,
    kept: f64,
    policy: OnConflict,
) -> Result<(), StoreError> {
    let (which, rule) = match (discarded.to_bits() == r.value.to_bits(), policy) {
        (true, OnConflict::KeepFirst) => ("this message's", "keep_first: the stored value stays"),
        (true, OnConflict::KeepLatest) => (
            "this message's",
            "keep_latest: a later value in the same batch won",
        ),
        (false, _) => (
            "the stored",
            "keep_latest: this message's value replaced it",
        ),
    };
    let detail = format!(
        "device {}: {} at {}: kept {kept} {}, discarded {which} {discarded} ({rule})",
        r.device_id, r.metric, r.observed_at, r.unit
    );
    let status = super::status_name(discarded_status);
    let payload = serde_json::json!({
        "device_id": r.device_id,
        "metric": r.metric,
        "observed_at": r.observed_at,
        "value": discarded,
        "unit": r.unit,
        "status": status,
        "kept": kept,
    })
    .to_string();
    super::insert_reject(
        tx,
        &part_of(env, RejectReason::Conflict, &detail, payload.as_bytes()),
    )
}

/// A reject row for a part of `env`'s message.
fn part_of<'a>(
    env: &'a Envelope,
    reason: RejectReason,
    detail: &'a str,
    payload: &'a [u8],
) -> super::Quarantined<'a> {
    super::Quarantined {
        feed: env.feed.as_str(),
        topic: &env.topic,
        received_at: env.received_at.as_millisecond(),
        reason,
        detail,
        payload,
        payload_size: payload.len(),
        sha256: None,
        partial: true,
    }
}

/// Quarantine the rejected parts of a stored message: one reject with the first part's
/// reason, every part's reason and detail, and the raw payload.
fn quarantine_parts(
    tx: &rusqlite::Transaction<'_>,
    env: &Envelope,
    p: &Partial,
) -> Result<(), StoreError> {
    let stored = match &env.content {
        Content::Readings(r) => r.len(),
        Content::Rejected { .. } => 0,
    };
    let detail = format!(
        "{} part(s) rejected, {stored} reading(s) stored: {}",
        p.rejected.len(),
        Rejection::joined(&p.rejected)
    );
    let reason = p
        .rejected
        .first()
        .map_or(RejectReason::InvalidSchema, |r| r.reason);
    super::insert_reject(
        tx,
        &super::Quarantined {
            // Truncated to `ingest.quarantine_max_bytes`: the size is the original's.
            payload_size: p.payload_size,
            ..part_of(env, reason, &detail, &p.payload)
        },
    )
}

/// Whether a reading holds exactly this value and status.
fn same(r: &Reading, value: f64, status: i64) -> bool {
    r.value.to_bits() == value.to_bits() && status_code(r.status) == status
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

/// Where the log ends: what the next row appended to it takes.
struct LogEnd {
    /// Readings logged so far (`log_readings` of the last row).
    logged: i64,
    /// The next row's position.
    next_id: i64,
    horizon: Horizon,
    /// Rows in `observations_recent`.
    recent_rows: i64,
}

impl LogEnd {
    fn load(tx: &rusqlite::Transaction<'_>) -> Result<LogEnd, StoreError> {
        let (last_id, logged) = super::last_log_row(tx)?.unwrap_or((0, 0));
        Ok(LogEnd {
            logged,
            next_id: last_id + 1,
            horizon: Horizon::load(tx)?,
            recent_rows: recent_rows(tx)?,
        })
    }

    /// Add a row holding `count` readings at the end of the log.
    fn append(
        &mut self,
        tx: &rusqlite::Transaction<'_>,
        device_key: i64,
        observed: i64,
        received: i64,
        blob: &[u8],
        count: i64,
    ) -> Result<(), StoreError> {
        let total = self.logged + count;
        tx.prepare_cached(
            "INSERT INTO observations_recent
                 (id, device_key, observed_at, received_at, readings, log_readings)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
        )?
        .execute(params![
            self.next_id,
            device_key,
            observed,
            received,
            blob,
            total
        ])?;
        self.logged = total;
        self.next_id += 1;
        self.recent_rows += 1;
        Ok(())
    }
}

/// Rows in `observations_recent`, counted.
fn recent_rows(conn: &Connection) -> Result<i64, StoreError> {
    Ok(conn.query_row("SELECT COUNT(*) FROM observations_recent", [], |r| r.get(0))?)
}

/// Per device key, an upper bound of the observation times of its log rows: a row after it
/// cannot exist yet, so appending it needs no lookup. Devices report forward in time, so
/// almost every row is past its device's bound; only redeliveries and late readings look
/// for the row they may join. The bound holds while rows move between the log's tables and
/// are pruned, so it is only loaded again after a failed commit.
struct Horizon {
    bounds: HashMap<i64, i64>,
    /// Per device key, its latest time in `observations_recent` when loaded (the table is
    /// small and read at once; `observations` is read device by device).
    recent: HashMap<i64, i64>,
}

impl Horizon {
    fn load(tx: &rusqlite::Transaction<'_>) -> Result<Horizon, StoreError> {
        let mut recent = HashMap::new();
        let mut stmt = tx.prepare(
            "SELECT device_key, MAX(observed_at) FROM observations_recent GROUP BY device_key",
        )?;
        let mut rows = stmt.query([])?;
        while let Some(row) = rows.next()? {
            recent.insert(row.get(0)?, row.get(1)?);
        }
        Ok(Horizon {
            bounds: HashMap::new(),
            recent,
        })
    }

    /// Whether the log may hold a row of this device and time.
    fn may_hold(
        &mut self,
        tx: &rusqlite::Transaction<'_>,
        device_key: i64,
        observed: i64,
    ) -> Result<bool, StoreError> {
        let bound = match self.bounds.get(&device_key) {
            Some(&b) => b,
            None => {
                let merged: Option<i64> = tx
                    .prepare_cached(
                        "SELECT MAX(observed_at) FROM observations WHERE device_key = ?1",
                    )?
                    .query_row([device_key], |r| r.get(0))?;
                let b = merged
                    .into_iter()
                    .chain(self.recent.get(&device_key).copied())
                    .max()
                    .unwrap_or(i64::MIN);
                self.bounds.insert(device_key, b);
                b
            }
        };
        Ok(observed <= bound)
    }

    /// A row of this device and time is now in the log.
    fn extend(&mut self, device_key: i64, observed: i64) {
        let b = self.bounds.entry(device_key).or_insert(observed);
        *b = (*b).max(observed);
    }
}

/// A row already in the log, in either of its tables.
struct LogRow {
    id: i64,
    received: i64,
    readings: Vec<u8>,
    /// In `observations_recent`, not yet moved to `observations`.
    recent: bool,
}

impl LogRow {
    fn find(
        tx: &rusqlite::Transaction<'_>,
        device_key: i64,
        observed: i64,
    ) -> Result<Option<LogRow>, StoreError> {
        for (recent, sql) in [
            (
                true,
                "SELECT id, received_at, readings FROM observations_recent
                 WHERE observed_at = ?2 AND device_key = ?1",
            ),
            (
                false,
                "SELECT id, received_at, readings FROM observations
                 WHERE device_key = ?1 AND observed_at = ?2",
            ),
        ] {
            let row = tx
                .prepare_cached(sql)?
                .query_row(params![device_key, observed], |r| {
                    Ok(LogRow {
                        id: r.get(0)?,
                        received: r.get(1)?,
                        readings: r.get(2)?,
                        recent,
                    })
                })
                .optional()?;
            if row.is_some() {
                return Ok(row);
            }
        }
        Ok(None)
    }
}

/// A reading of a batch, in the order `insert_readings` writes them.
struct Ordered<'a> {
    key: SeriesKey,
    observed: i64,
    /// Position in the batch (messages, then readings).
    flat: usize,
    received: i64,
    reading: &'a Reading,
}

impl Ordered<'_> {
    /// Append this reading to a log row's blob.
    fn pack(&self, blob: &mut Vec<u8>) {
        packed::encode(
            blob,
            self.key.id,
            self.reading.value,
            status_code(self.reading.status),
        );
    }
}

/// The device already has a row at this time (a redelivery, a correction, or more of its
/// readings at a time it already reported): a series the row lacks is added; one it holds
/// with the same value is a duplicate; one it holds with another value is a conflict, settled
/// by `policy`. If the row changed it moves to the end of the log, so log readers (the
/// forwarder, the live-value replay) see it again; they take its unchanged readings as the
/// no-op they are.
fn add_to_row(
    tx: &rusqlite::Transaction<'_>,
    kept: &[&Ordered<'_>],
    received: i64,
    held: LogRow,
    fates: &mut [Fate],
    log: &mut LogEnd,
    policy: OnConflict,
) -> Result<(), StoreError> {
    let (device_key, observed) = (kept[0].key.device_key, kept[0].observed);
    let mut entries = packed::decode(&held.readings).collect::<Result<Vec<_>, _>>()?;
    let mut changed = false;
    for o in kept {
        let (value, status) = (o.reading.value, status_code(o.reading.status));
        match entries.iter_mut().find(|(series, ..)| *series == o.key.id) {
            None => {
                entries.push((o.key.id, value, status));
                changed = true;
            }
            Some((_, v, s)) if same(o.reading, *v, *s) => fates[o.flat] = Fate::Duplicate,
            Some((_, v, s)) => match policy {
                OnConflict::KeepLatest => {
                    fates[o.flat] = Fate::Replaced {
                        old: *v,
                        old_status: *s,
                    };
                    (*v, *s) = (value, status);
                    changed = true;
                }
                OnConflict::KeepFirst => fates[o.flat] = Fate::Lost { kept: *v },
            },
        }
    }
    if changed {
        let delete = if held.recent {
            log.recent_rows -= 1;
            "DELETE FROM observations_recent WHERE id = ?1"
        } else {
            "DELETE FROM observations WHERE id = ?1"
        };
        tx.prepare_cached(delete)?.execute([held.id])?;
        let mut blob = Vec::with_capacity(held.readings.len() + 16);
        for &(series, value, status) in &entries {
            packed::encode(&mut blob, series, value, status);
        }
        log.append(
            tx,
            device_key,
            observed,
            received.max(held.received),
            &blob,
            entries.len() as i64,
        )?;
    }
    Ok(())
}

/// A series' id and its device's key (`series.device_key`), which keys the device's log rows.
#[derive(Debug, Clone, Copy)]
struct SeriesKey {
    id: i64,
    device_key: i64,
}

fn series_key(
    tx: &rusqlite::Transaction<'_>,
    cache: &mut SeriesCache,
    r: &Reading,
    written: &mut bool,
) -> Result<SeriesKey, StoreError> {
    if let Some(key) = cache
        .get(r.device_id.as_str())
        .and_then(|m| m.get(r.metric))
    {
        return Ok(*key);
    }
    // A device's first series gives the device its key (its own id); later ones share it.
    *written = true;
    let (id, device_key): (i64, i64) = tx
        .prepare_cached(
            "INSERT INTO series (device_id, metric, city, feed, domain, unit, device_key)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6,
                     COALESCE((SELECT device_key FROM series WHERE device_id = ?1 LIMIT 1), 0))
             ON CONFLICT (device_id, metric) DO UPDATE SET unit = excluded.unit
             RETURNING id, device_key",
        )?
        .query_row(
            params![
                r.device_id,
                r.metric,
                r.city.as_str(),
                r.feed.as_str(),
                r.domain.as_str(),
                r.unit
            ],
            |row| Ok((row.get(0)?, row.get(1)?)),
        )?;
    let device_key = if device_key == 0 {
        tx.prepare_cached("UPDATE series SET device_key = id WHERE id = ?1")?
            .execute([id])?;
        id
    } else {
        device_key
    };
    let key = SeriesKey { id, device_key };
    cache
        .entry(r.device_id.clone())
        .or_default()
        .insert(r.metric, key);
    Ok(key)
}

/// The writer's state of a device, loaded from the live state on first sight.
fn device_state<'a>(
    devices: &'a mut HashMap<String, DeviceState>,
    live: &Live,
    device_id: &str,
) -> &'a mut DeviceState {
    if !devices.contains_key(device_id) {
        let state = live
            .read()
            .devices
            .get(device_id)
            .map(|d| DeviceState {
                last_observed: d.last_observed_at,
                learned_interval: d.learned_interval_ms,
                ..DeviceState::default()
            })
            .unwrap_or_default();
        devices.insert(device_id.to_owned(), state);
    }
    devices.get_mut(device_id).expect("inserted above")
}

impl DeviceState {
    /// Learn the device's reporting interval as an EWMA of the gaps between successive
    /// observations.
    fn learn(&mut self, observed: i64) {
        match self.last_observed {
            Some(last) if observed > last => {
                let gap = (observed - last) as f64;
                self.learned_interval = Some(match self.learned_interval {
                    Some(avg) => 0.8 * avg + 0.2 * gap,
                    None => gap,
                });
                self.last_observed = Some(observed);
            }
            Some(_) => {}
            None => self.last_observed = Some(observed),
        }
    }
}

/// Upsert the rows of devices this writer has not written yet (new devices, and each device's
/// first message since start: its feed, first sighting and position), and of devices whose
/// first position just arrived. What changes with every message goes through `live`. Whether
/// it wrote any.
fn write_new_devices(
    tx: &rusqlite::Transaction<'_>,
    touched: &HashMap<&str, DeviceTouch<'_>>,
    states: &mut HashMap<String, DeviceState>,
) -> Result<bool, StoreError> {
    let mut wrote = false;
    let mut upsert = tx.prepare_cached(
        "INSERT INTO devices (device_id, city, feed, domain, lat, lon, first_seen, last_seen,
                              last_observed_at, last_status, learned_interval_ms)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?7, ?8, ?9, ?10)
         ON CONFLICT (device_id) DO UPDATE SET
           feed = COALESCE(devices.feed, excluded.feed),
           lat = COALESCE(devices.lat, excluded.lat),
           lon = CASE WHEN devices.lat IS NULL THEN excluded.lon ELSE devices.lon END,
           first_seen = COALESCE(devices.first_seen, excluded.first_seen),
           last_seen = MAX(COALESCE(devices.last_seen, 0), excluded.last_seen),
           last_status = CASE WHEN excluded.last_observed_at >= COALESCE(devices.last_observed_at, 0)
                              THEN excluded.last_status ELSE devices.last_status END,
           last_observed_at = MAX(COALESCE(devices.last_observed_at, 0), excluded.last_observed_at),
           learned_interval_ms = excluded.learned_interval_ms",
    )?;
    for (device, t) in touched {
        let r = t.reading;
        let Some(state) = states.get_mut(*device) else {
            continue;
        };
        if state.row_written && (state.located || r.location.is_none()) {
            continue;
        }
        state.row_written = true;
        state.located |= r.location.is_some();
        wrote = true;
        let (lat, lon) = r.location.as_ref().map(|l| (l.lat, l.lon)).unzip();
        let learned = state.learned_interval.map(|v| v.round() as i64);
        let last_observed = state.last_observed.unwrap_or(t.observed_at);
        upsert.execute(params![
            device,
            r.city.as_str(),
            r.feed.as_str(),
            r.domain.as_str(),
            lat,
            lon,
            t.received_at,
            last_observed,
            status_code(r.status),
            learned,
        ])?;
    }
    Ok(wrote)
}

/// metric, city, domain, minute start (UTC ms).
type RollupKey = (&'static str, City, Domain, i64);

/// Count, sum, min and max of the readings a batch stored in one rollup minute.
struct Rollup {
    count: i64,
    sum: f64,
    min: f64,
    max: f64,
}

impl Rollup {
    /// A stored value `old` became `new`: the count stays, the sum moves. The minute's min
    /// and max can only widen (the old value may have been one of them).
    fn replace(&mut self, old: f64, new: f64) {
        self.sum += new - old;
        self.min = self.min.min(new);
        self.max = self.max.max(new);
    }

    fn empty() -> Rollup {
        Rollup {
            count: 0,
            sum: 0.0,
            min: f64::INFINITY,
            max: f64::NEG_INFINITY,
        }
    }

    fn add(&mut self, v: f64) {
        self.count += 1;
        self.sum += v;
        self.min = self.min.min(v);
        self.max = self.max.max(v);
    }
}

fn write_rollups(
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

fn write_counters(
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

/// Load (or refresh) the configured device catalogue.
pub(super) fn upsert_catalogue(
    conn: &Connection,
    devices: &[DeviceConfig],
) -> Result<(), StoreError> {
    let mut upsert = conn.prepare(
        "INSERT INTO devices (device_id, city, domain, name, lat, lon, ward, position_source,
                              flood_levels, configured_interval_ms, catalogued)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, 1)
         ON CONFLICT (device_id) DO UPDATE SET
           city = excluded.city, domain = excluded.domain, name = excluded.name,
           lat = excluded.lat, lon = excluded.lon, ward = excluded.ward,
           position_source = excluded.position_source, flood_levels = excluded.flood_levels,
           configured_interval_ms = excluded.configured_interval_ms, catalogued = 1",
    )?;
    for d in devices {
        let levels = serde_json::to_string(&d.flood_levels).unwrap_or_else(|_| "[]".into());
        upsert.execute(params![
            d.id,
            d.city.as_str(),
            d.domain.as_str(),
            d.name,
            d.lat,
            d.lon,
            d.ward,
            d.position_source,
            levels,
            d.interval.map(|i| i.as_millis() as i64),
        ])?;
    }
    Ok(())
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
