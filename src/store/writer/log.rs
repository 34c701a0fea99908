//! The log of readings: how a batch's readings become log rows (one per device and
//! observation time, readings packed), and how a row that already exists takes a redelivery,
//! a correction or more readings.

use super::catalogue::{SeriesCache, SeriesKey, series_key};
use super::recent::recent_rows;
use super::*;

/// What became of one reading of a batch.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) enum Fate {
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
    #[inline]
    pub(super) fn stored(self) -> bool {
        matches!(self, Fate::New | Fate::Replaced { .. })
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
/// The third value says whether a series row was written.
pub(super) fn insert_readings(
    tx: &rusqlite::Transaction<'_>,
    series: &mut SeriesCache,
    batch: &[Envelope],
    scratch: &mut Scratch,
    readings: usize,
    log: &mut LogEnd,
    policy: OnConflict,
) -> Result<(Vec<i64>, Vec<Fate>, bool), StoreError> {
    let mut sids = reuse(&mut scratch.sids, readings);
    let mut order: Vec<Ordered<'_>> = reuse(&mut scratch.order, readings);
    let mut new_series = false;
    order_readings(tx, series, batch, &mut sids, &mut order, &mut new_series)?;
    order.sort_unstable_by_key(|o| (o.key.device_key, o.observed, o.key.id, o.flat));
    let mut fates = reuse(&mut scratch.fates, sids.len());
    fates.resize(sids.len(), Fate::Duplicate);
    let mut row = NewRow {
        blob: Vec::with_capacity(128),
        kept: Vec::new(),
        received: i64::MIN,
    };
    for readings in
        order.chunk_by(|a, b| (a.key.device_key, a.observed) == (b.key.device_key, b.observed))
    {
        row.settle(readings, policy, &mut fates);
        row.write(tx, log, &mut fates, policy)?;
    }
    scratch.order = recycle(order);
    Ok((sids, fates, new_series))
}

/// Push each reading of the batch, in batch order, to `order` with its series (its row
/// written when new) and log key, and its series id to `sids`.
fn order_readings<'b>(
    tx: &rusqlite::Transaction<'_>,
    series: &mut SeriesCache,
    batch: &'b [Envelope],
    sids: &mut Vec<i64>,
    order: &mut Vec<Ordered<'b>>,
    new_series: &mut bool,
) -> Result<(), StoreError> {
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
    Ok(())
}

/// The log row of one device and time being built from a batch: its packed readings, the
/// reading kept of each series, and the latest receipt among them. Reused from row to row.
struct NewRow<'o, 'a> {
    blob: Vec<u8>,
    kept: Vec<&'o Ordered<'a>>,
    received: i64,
}

impl<'o, 'a> NewRow<'o, 'a> {
    /// Start over with `row`'s readings (in series order): each series' run settled to the
    /// one reading kept, which is packed.
    fn settle(&mut self, row: &'o [Ordered<'a>], policy: OnConflict, fates: &mut [Fate]) {
        self.blob.clear();
        self.kept.clear();
        self.received = i64::MIN;
        for run in row.chunk_by(|a, b| a.key.id == b.key.id) {
            let o = settle(run, policy, fates);
            o.pack(&mut self.blob);
            self.received = self.received.max(o.received);
            self.kept.push(o);
        }
    }

    /// Log the row: appended when the log cannot hold a row of its device and time yet, else
    /// added to the row it holds (see `add_to_row`).
    fn write(
        &self,
        tx: &rusqlite::Transaction<'_>,
        log: &mut LogEnd,
        fates: &mut [Fate],
        policy: OnConflict,
    ) -> Result<(), StoreError> {
        let (device_key, observed) = (self.kept[0].key.device_key, self.kept[0].observed);
        let held = if log.horizon.may_hold(tx, device_key, observed)? {
            LogRow::find(tx, device_key, observed)?
        } else {
            None
        };
        log.horizon.extend(device_key, observed);
        let (kept, received) = (&self.kept, self.received);
        match held {
            None => log.append(
                tx,
                device_key,
                observed,
                received,
                &self.blob,
                kept.len() as i64,
            ),
            Some(held) => add_to_row(tx, kept, received, held, fates, log, policy),
        }
    }
}

/// Of the readings of one series and time in a batch (in arrival order), the one to log, as
/// `policy` says; the others are duplicates (the same value and status) or lose the conflict.
pub(super) fn settle<'r, 'a>(
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

/// Whether a reading holds exactly this value and status.
#[inline]
pub(super) fn same(r: &Reading, value: f64, status: i64) -> bool {
    r.value.to_bits() == value.to_bits() && status_code(r.status) == status
}

/// Where the log ends: what the next row appended to it takes.
pub(super) struct LogEnd {
    /// Readings logged so far (`log_readings` of the last row).
    pub(super) logged: i64,
    /// The next row's position.
    pub(super) next_id: i64,
    pub(super) horizon: Horizon,
    /// Rows in `observations_recent`.
    pub(super) recent_rows: i64,
}

impl LogEnd {
    /// The log end the writer knew, else read from the tables. Taken out of `known`: a failed
    /// commit leaves it unknown.
    pub(super) fn take_or_load(
        known: &mut Option<LogEnd>,
        tx: &rusqlite::Transaction<'_>,
    ) -> Result<LogEnd, StoreError> {
        match known.take() {
            Some(log) => Ok(log),
            None => LogEnd::load(tx),
        }
    }

    pub(super) fn load(tx: &rusqlite::Transaction<'_>) -> Result<LogEnd, StoreError> {
        let (last_id, logged) = crate::store::last_log_row(tx)?.unwrap_or((0, 0));
        Ok(LogEnd {
            logged,
            next_id: last_id + 1,
            horizon: Horizon::load(tx)?,
            recent_rows: recent_rows(tx)?,
        })
    }

    /// Add a row holding `count` readings at the end of the log.
    pub(super) fn append(
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

/// Per device key, an upper bound of the observation times of its log rows: a row after it
/// cannot exist yet, so appending it needs no lookup. Devices report forward in time, so
/// almost every row is past its device's bound; only redeliveries and late readings look
/// for the row they may join. The bound holds while rows move between the log's tables and
/// are pruned, so it is only loaded again after a failed commit.
pub(super) struct Horizon {
    pub(super) bounds: HashMap<i64, i64>,
    /// Per device key, its latest time in `observations_recent` when loaded (the table is
    /// small and read at once; `observations` is read device by device).
    pub(super) recent: HashMap<i64, i64>,
}

impl Horizon {
    pub(super) fn load(tx: &rusqlite::Transaction<'_>) -> Result<Horizon, StoreError> {
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
    pub(super) fn may_hold(
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
    pub(super) fn extend(&mut self, device_key: i64, observed: i64) {
        let b = self.bounds.entry(device_key).or_insert(observed);
        *b = (*b).max(observed);
    }
}

/// A row already in the log, in either of its tables.
pub(super) struct LogRow {
    pub(super) id: i64,
    pub(super) received: i64,
    pub(super) readings: Vec<u8>,
    /// In `observations_recent`, not yet moved to `observations`.
    pub(super) recent: bool,
}

impl LogRow {
    pub(super) fn find(
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
pub(super) struct Ordered<'a> {
    pub(super) key: SeriesKey,
    pub(super) observed: i64,
    /// Position in the batch (messages, then readings).
    pub(super) flat: usize,
    pub(super) received: i64,
    pub(super) reading: &'a Reading,
}

impl Ordered<'_> {
    /// Append this reading to a log row's blob.
    pub(super) fn pack(&self, blob: &mut Vec<u8>) {
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
pub(super) fn add_to_row(
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
    if !merge(&mut entries, kept, fates, policy) {
        return Ok(());
    }
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
    )
}

/// Merge the batch's `kept` readings into a logged row's `entries`, setting each one's fate;
/// whether the row changed.
fn merge(
    entries: &mut Vec<packed::Packed>,
    kept: &[&Ordered<'_>],
    fates: &mut [Fate],
    policy: OnConflict,
) -> bool {
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
    changed
}
