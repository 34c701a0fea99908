//! The recent rows of the log (`observations_recent`) and their move to the device-keyed
//! table (`observations`).

use super::*;

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
pub(super) const MERGE_ROWS: i64 = 50_000;
/// The least time between two moves below `MERGE_ROWS_MAX` rows.
pub(super) const MERGE_GAP: Duration = Duration::from_secs(2);
/// … or, whatever the gap, once this many rows wait.
pub(super) const MERGE_ROWS_MAX: i64 = 200_000;
/// … or this long after the last move, so that a slow feed's rows move too.
pub(super) const MERGE_EVERY: Duration = Duration::from_secs(60);
/// A move holds at most this many rows in memory at once: it reads them in this many at a
/// time, in log order, each chunk sorted by device on its own.
pub(super) const MOVE_CHUNK: usize = 100_000;

/// Copy the rows of `observations_recent` to `observations`, sorted by device and time, one
/// `INSERT` per row. One `INSERT … SELECT` would be simpler, but a statement that writes many
/// rows with given ids inside a transaction keeps a statement journal (SQLite may have to
/// undo it alone): a copy of every page it changes, which here is every device's leaf — 70 MB
/// of memory per move at 15,000 devices (BENCHMARKS.md, finding 24). A one-row `INSERT` keeps
/// none. Rows are read `chunk` at a time in log order, each chunk sorted on its own. How many
/// rows it copied.
pub(super) fn move_recent(
    tx: &rusqlite::Transaction<'_>,
    chunk: usize,
) -> Result<usize, StoreError> {
    let mut select = tx.prepare(SELECT_RECENT_CHUNK)?;
    let mut insert = tx.prepare_cached(INSERT_MOVED_ROW)?;
    let chunk = chunk.max(1); // a read of none would end the move before its rows
    let (mut moved, mut after) = (0, i64::MIN);
    loop {
        let mut rows = select
            .query_map(params![after, chunk as i64], MovedRow::read)?
            .collect::<Result<Vec<MovedRow>, _>>()?;
        let Some(last) = rows.last() else {
            return Ok(moved);
        };
        after = last.id;
        rows.sort_unstable_by_key(|r| (r.device_key, r.observed));
        for r in &rows {
            r.insert(&mut insert)?;
        }
        moved += rows.len();
        if rows.len() < chunk {
            return Ok(moved);
        }
    }
}

/// The next chunk of `observations_recent`, in log order: up to `?2` rows after position `?1`.
const SELECT_RECENT_CHUNK: &str =
    "SELECT device_key, observed_at, id, received_at, readings, log_readings
         FROM observations_recent WHERE id > ?1 ORDER BY id LIMIT ?2";

/// One row moved to `observations`, with its id and everything else as it was.
const INSERT_MOVED_ROW: &str =
    "INSERT INTO observations (id, device_key, observed_at, received_at, readings, log_readings)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6)";

/// A row of `observations_recent` on its way to `observations`.
struct MovedRow {
    device_key: i64,
    observed: i64,
    id: i64,
    received: i64,
    readings: Vec<u8>,
    log_readings: i64,
}

impl MovedRow {
    /// A row as `SELECT_RECENT_CHUNK` reads it.
    fn read(r: &rusqlite::Row<'_>) -> rusqlite::Result<MovedRow> {
        Ok(MovedRow {
            device_key: r.get(0)?,
            observed: r.get(1)?,
            id: r.get(2)?,
            received: r.get(3)?,
            readings: r.get(4)?,
            log_readings: r.get(5)?,
        })
    }

    /// Write the row to `observations` (`INSERT_MOVED_ROW`).
    fn insert(&self, insert: &mut rusqlite::CachedStatement<'_>) -> Result<(), StoreError> {
        insert.execute(params![
            self.id,
            self.device_key,
            self.observed,
            self.received,
            self.readings,
            self.log_readings
        ])?;
        Ok(())
    }
}

/// Rows in `observations_recent`, counted.
pub(super) fn recent_rows(conn: &Connection) -> Result<i64, StoreError> {
    Ok(conn.query_row("SELECT COUNT(*) FROM observations_recent", [], |r| r.get(0))?)
}
