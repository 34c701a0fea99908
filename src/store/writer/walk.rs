//! A commit's walk over its messages once their readings are logged: what each reading's fate
//! changes (latest values, rollups, hourly pollutant sums, its device's row and cadence), the
//! conflicts and rejected parts it quarantines, and how each message ended.

use super::catalogue::{DeviceState, DeviceTouch, device_state};
use super::log::Fate;
use super::quarantine::{conflict, quarantine_parts};
use super::tally::{FeedDelta, Rollup, RollupKey};
use super::*;

/// What a commit changes besides the log, gathered message by message: counters and rollups
/// are written in the transaction, latest values and hourly sums published after it commits.
pub(super) struct Effects<'b> {
    pub(super) feeds: HashMap<&'b str, FeedDelta>,
    /// Every stored reading's value, in batch order: `Live::offer` keeps the latest per series.
    pub(super) latest: Vec<(i64, Latest)>,
    pub(super) touched: HashMap<&'b str, DeviceTouch<'b>>,
    pub(super) rollup: HashMap<RollupKey, Rollup>,
    /// Measuring pollutant samples: station, pollutant, observed at, value.
    pub(super) pollutants: Vec<(&'b str, Pollutant, i64, f64)>,
    /// Stored samples a correction changed: the change of the hour's sum and count.
    pub(super) corrections: Vec<(&'b str, Pollutant, i64, f64, i32)>,
}

impl<'b> Effects<'b> {
    /// Sized up front: grown step by step, these tables were copied and their new pages
    /// faulted in on every commit. The largest reuse the previous commit's allocations.
    pub(super) fn sized(scratch: &mut Scratch, messages: usize, readings: usize) -> Effects<'b> {
        Effects {
            feeds: HashMap::new(),
            latest: reuse(&mut scratch.latest, readings),
            touched: HashMap::with_capacity(messages),
            rollup: HashMap::new(),
            pollutants: reuse(&mut scratch.pollutants, readings),
            corrections: Vec::new(),
        }
    }
}

/// What the log made of the batch's readings (messages, then readings) and where the walk is.
pub(super) struct Logged<'a> {
    sids: &'a [i64],
    fates: &'a [Fate],
    flat: usize,
}

/// The writer's state the walk reads and updates.
pub(super) struct Walk<'w> {
    pub(super) devices: &'w mut HashMap<String, DeviceState>,
    pub(super) live: &'w Live,
    /// The positions of readings that lost a conflict (see `StoreWriter::discarded`).
    pub(super) discarded: &'w mut Vec<usize>,
    pub(super) policy: OnConflict,
}

impl Walk<'_> {
    /// Account for every message of the batch, whose readings were logged with these series
    /// ids and fates, and say how each ended.
    pub(super) fn messages<'b>(
        &mut self,
        tx: &rusqlite::Transaction<'_>,
        batch: &'b [Envelope],
        sids: &[i64],
        fates: &[Fate],
        fx: &mut Effects<'b>,
    ) -> Result<Vec<Outcome>, StoreError> {
        let mut logged = Logged {
            sids,
            fates,
            flat: 0,
        };
        batch
            .iter()
            .map(|env| self.message(tx, env, &mut logged, fx))
            .collect()
    }

    /// Account for one message of the batch and say how it ended.
    fn message<'b>(
        &mut self,
        tx: &rusqlite::Transaction<'_>,
        env: &'b Envelope,
        logged: &mut Logged<'_>,
        fx: &mut Effects<'b>,
    ) -> Result<Outcome, StoreError> {
        let received_ms = env.received_at.as_millisecond();
        let delta = fx.feeds.entry(env.feed.as_str()).or_default();
        delta.received += 1;
        delta.last_message_at = delta.last_message_at.max(received_ms);
        match &env.content {
            Content::Readings(readings) => self.readings(tx, env, readings, logged, fx),
            Content::Rejected {
                rejection,
                payload,
                payload_size,
                dup,
            } => rejected(tx, env, rejection, payload, *payload_size, *dup, delta),
        }
    }

    /// A message's readings, by their fates in the log.
    fn readings<'b>(
        &mut self,
        tx: &rusqlite::Transaction<'_>,
        env: &'b Envelope,
        readings: &'b [Reading],
        logged: &mut Logged<'_>,
        fx: &mut Effects<'b>,
    ) -> Result<Outcome, StoreError> {
        let mut count = Count::default();
        // A message's readings are usually one device's: its cadence and row state are looked
        // up once per run of readings of a device.
        for run in readings.chunk_by(|a, b| a.device_id == b.device_id) {
            for r in run {
                let fate = logged.fates[logged.flat];
                count.add(fate);
                self.fate(tx, env, r, logged, fx)?;
                logged.flat += 1;
            }
            self.device_run(run, env.received_at.as_millisecond(), &mut fx.touched);
        }
        let delta = fx.feeds.entry(env.feed.as_str()).or_default();
        outcome(tx, env, count, delta)
    }

    /// Account for reading `r` (at `logged.flat`) by its fate in the log: a stored reading
    /// moves its minute's rollup and its hour's pollutant sums and is the series' latest value
    /// for now; a conflict is quarantined, and a reading that lost one noted as discarded.
    fn fate<'b>(
        &mut self,
        tx: &rusqlite::Transaction<'_>,
        env: &Envelope,
        r: &'b Reading,
        logged: &Logged<'_>,
        fx: &mut Effects<'b>,
    ) -> Result<(), StoreError> {
        let (sid, fate) = (logged.sids[logged.flat], logged.fates[logged.flat]);
        let device = r.device_id.as_str();
        let observed = r.observed_at.as_millisecond();
        match fate {
            Fate::New => added(r, device, observed, &mut fx.rollup, &mut fx.pollutants),
            Fate::Replaced { old, old_status } => {
                let (rollup, corrections) = (&mut fx.rollup, &mut fx.corrections);
                replaced(r, device, observed, (old, old_status), rollup, corrections);
                conflict(tx, env, r, old, old_status, r.value, self.policy)?;
            }
            Fate::Lost { kept } => {
                self.discarded.push(logged.flat);
                let status = status_code(r.status);
                conflict(tx, env, r, r.value, status, kept, self.policy)?;
            }
            Fate::Duplicate => {}
        }
        if fate.stored() {
            let l = Latest {
                observed_at: observed,
                value: r.value,
                status: status_code(r.status),
            };
            fx.latest.push((sid, l));
        }
        Ok(())
    }

    /// Take in a run of one device's readings, received at `received_ms`: its cadence learns
    /// their times, and its row notes when it was heard from and its newest reading.
    fn device_run<'b>(
        &mut self,
        run: &'b [Reading],
        received_ms: i64,
        touched: &mut HashMap<&'b str, DeviceTouch<'b>>,
    ) {
        let device = run[0].device_id.as_str();
        let state = device_state(self.devices, self.live, device);
        let t = touched.entry(device).or_insert(DeviceTouch {
            reading: &run[0],
            received_at: received_ms,
            observed_at: run[0].observed_at.as_millisecond(),
        });
        t.received_at = t.received_at.max(received_ms);
        for r in run {
            let observed = r.observed_at.as_millisecond();
            state.learn(observed);
            if observed >= t.observed_at {
                t.observed_at = observed;
                t.reading = r;
            }
        }
    }
}

/// How many of a message's readings were stored, and how many met a stored reading of another
/// value.
#[derive(Debug, Default, Clone, Copy)]
struct Count {
    inserted: usize,
    conflicts: usize,
}

impl Count {
    /// Count one reading by its fate.
    fn add(&mut self, fate: Fate) {
        match fate {
            Fate::New => self.inserted += 1,
            Fate::Replaced { .. } => {
                self.inserted += 1;
                self.conflicts += 1;
            }
            Fate::Lost { .. } => self.conflicts += 1,
            Fate::Duplicate => {}
        }
    }
}

/// How a message with readings ended, counted in its feed's `delta`: stored if any reading
/// was, else conflicted if any met a conflict, else a duplicate. A message that is no
/// duplicate quarantines its rejected parts.
fn outcome(
    tx: &rusqlite::Transaction<'_>,
    env: &Envelope,
    Count {
        inserted,
        conflicts,
    }: Count,
    delta: &mut FeedDelta,
) -> Result<Outcome, StoreError> {
    delta.conflicts += conflicts as i64;
    let outcome = if inserted > 0 {
        delta.stored += 1;
        delta.readings += inserted as i64;
        delta.last_stored_at = Some(env.received_at.as_millisecond());
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
        quarantine_parts(tx, env, p)?;
    }
    Ok(outcome)
}

/// A new reading: into its minute's rollup, and its hour's mean if it is a measuring
/// pollutant sample.
#[inline]
fn added<'b>(
    r: &Reading,
    device: &'b str,
    observed: i64,
    rollup: &mut HashMap<RollupKey, Rollup>,
    pollutants: &mut Vec<(&'b str, Pollutant, i64, f64)>,
) {
    let minute = observed.div_euclid(MINUTE_MS) * MINUTE_MS;
    rollup
        .entry((r.metric, r.city, r.domain, minute))
        .or_insert_with(Rollup::empty)
        .add(r.value);
    if r.status == Status::Measuring
        && let Some(p) = Pollutant::from_metric(r.metric)
    {
        pollutants.push((device, p, observed, r.value));
    }
}

/// A reading that replaced the stored `old`: its minute's sum moves, and its hour's mean
/// follows whether the old and the new sample were measuring.
fn replaced<'b>(
    r: &Reading,
    device: &'b str,
    observed: i64,
    (old, old_status): (f64, i64),
    rollup: &mut HashMap<RollupKey, Rollup>,
    corrections: &mut Vec<(&'b str, Pollutant, i64, f64, i32)>,
) {
    let minute = observed.div_euclid(MINUTE_MS) * MINUTE_MS;
    rollup
        .entry((r.metric, r.city, r.domain, minute))
        .or_insert_with(Rollup::empty)
        .replace(old, r.value);
    if let Some(p) = Pollutant::from_metric(r.metric) {
        let was = old_status == status_code(Status::Measuring);
        let (sum, n) = match (was, r.status == Status::Measuring) {
            (true, true) => (r.value - old, 0),
            (true, false) => (-old, -1),
            (false, true) => (r.value, 1),
            (false, false) => (0.0, 0),
        };
        corrections.push((device, p, observed, sum, n));
    }
}

/// A rejected message: quarantined with its reason, unless the broker flagged it as a possible
/// redelivery and the same payload is already in quarantine.
fn rejected(
    tx: &rusqlite::Transaction<'_>,
    env: &Envelope,
    rejection: &Rejection,
    payload: &Bytes,
    payload_size: usize,
    dup: bool,
    delta: &mut FeedDelta,
) -> Result<Outcome, StoreError> {
    let sha = hex::encode(Sha256::digest(payload));
    let seen = dup
        && tx
            .prepare_cached(
                "SELECT 1 FROM rejects WHERE payload_sha256 = ?1 AND feed = ?2 AND topic = ?3",
            )?
            .query_row(params![sha, env.feed.as_str(), env.topic], |_| Ok(()))
            .optional()?
            .is_some();
    if seen {
        delta.duplicate += 1;
        return Ok(Outcome::Duplicate);
    }
    crate::store::insert_reject(
        tx,
        &crate::store::Quarantined {
            feed: env.feed.as_str(),
            topic: &env.topic,
            received_at: env.received_at.as_millisecond(),
            reason: rejection.reason,
            detail: &rejection.detail,
            payload,
            payload_size,
            sha256: Some(sha),
            partial: false,
        },
    )?;
    delta.rejected += 1;
    Ok(Outcome::Rejected)
}
