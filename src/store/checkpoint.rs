//! Copying the WAL into the database, on a thread of its own, so that no commit pays for it
//! and the log starts over before it grows without bound.

use std::{
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use rusqlite::Connection;

use super::{BUSY_TIMEOUT, Store, StoreConfig, StoreError, open_connection};

impl Store {
    /// Copy the WAL into the database every `every`, on a thread of its own, until `stop`;
    /// a last checkpoint on the way out. See `checkpoint`.
    pub fn checkpointer(
        &self,
        every: Duration,
        stop: tokio_util::sync::CancellationToken,
    ) -> std::io::Result<std::thread::JoinHandle<()>> {
        self.checkpointer_with(every, stop, WAL_LIMITS)
    }

    /// `checkpointer` with WAL limits of the caller's choosing (tests use small ones).
    pub(super) fn checkpointer_with(
        &self,
        every: Duration,
        stop: tokio_util::sync::CancellationToken,
        limits: WalLimits,
    ) -> std::io::Result<std::thread::JoinHandle<()>> {
        let config = self.inner.config.clone();
        let restart_wal = Arc::clone(&self.inner.restart_wal);
        std::thread::Builder::new()
            .name("store-checkpoint".into())
            .spawn(move || {
                if let Some(conn) = checkpoint_connection(&config) {
                    checkpoint_rounds(&conn, every, &stop, &restart_wal, limits);
                }
            })
    }
}

/// WAL sizes (in pages) above which the log should start over (`restart`), and above which
/// the checkpointer makes it start over itself (`force`).
#[derive(Debug, Clone, Copy)]
pub(super) struct WalLimits {
    pub(super) restart: i64,
    pub(super) force: i64,
}

pub(super) const WAL_LIMITS: WalLimits = WalLimits {
    restart: 16_384,
    force: 4 * 16_384,
};
/// One WAL frame: a 4 KiB page and its 24-byte header.
pub(super) const WAL_FRAME_BYTES: i64 = 4096 + 24;
/// How long a RESTART checkpoint may wait for the writer and readers.
const CHECKPOINT_WAIT_MS: u64 = 50;
/// PASSIVE rounds per checkpoint at most, to catch up with the writer.
const PASSIVE_ROUNDS: usize = 8;
/// Pages a PASSIVE round may leave uncopied for the writer's RESTART.
const RESTART_BACKLOG_PAGES: i64 = 256;

/// Copy the WAL into the database with PASSIVE checkpoints, which never wait, and see that the
/// log starts over once it has grown past `limits.restart`: otherwise, under continuous
/// writes, it grows without bound (gigabytes in minutes at full ingest, every lookup slower).
///
/// Starting over takes a RESTART checkpoint, which holds the writer while it copies what is left,
/// syncs the database and waits for readers. Run here, it first has to win the write lock from
/// a writer that commits back to back, and the writer then sleeps in SQLite's busy handler:
/// at full ingest the commit after it took 0.2–0.25 s. So a few PASSIVE rounds first catch up
/// with the writer (one round alone never does: the writer adds frames while it copies), and
/// then `restart_wal` asks the writer to run the RESTART itself between two commits, when only
/// the frames of a commit or two are left to copy (see `StoreWriter::restart_wal_if_asked`).
/// Only past `limits.force` (the writer's attempts kept finding readers) does the
/// checkpointer force it. Returns the WAL's size.
fn checkpoint(
    conn: &Connection,
    restart_wal: &AtomicBool,
    limits: WalLimits,
) -> Result<i64, StoreError> {
    let run = |mode| wal_checkpoint(conn, mode).map(|w| (w.pages, w.copied));
    let (mut pages, mut copied) = run("PASSIVE")?;
    for _ in 1..PASSIVE_ROUNDS {
        if pages <= limits.restart || pages - copied <= RESTART_BACKLOG_PAGES {
            break;
        }
        (pages, copied) = run("PASSIVE")?;
    }
    if pages <= limits.restart {
        return Ok(pages);
    }
    if pages <= limits.force {
        if pages - copied <= RESTART_BACKLOG_PAGES {
            restart_wal.store(true, Ordering::Release);
        }
        return Ok(pages);
    }
    // Busy past CHECKPOINT_WAIT_MS: the next round tries again.
    Ok(restart(conn)?.map_or(pages, |w| w.pages))
}

/// A RESTART checkpoint on the writer's connection, between commits, waiting at most
/// `CHECKPOINT_WAIT_MS` for readers. Whether the log started over.
pub(super) fn restart_wal(conn: &Connection) -> Result<bool, StoreError> {
    conn.busy_timeout(Duration::from_millis(CHECKPOINT_WAIT_MS))?;
    let result = restart(conn);
    conn.busy_timeout(BUSY_TIMEOUT)?;
    Ok(result?.is_some_and(|w| !w.busy))
}

/// What `PRAGMA wal_checkpoint` reports.
struct WalCheckpoint {
    /// It could not finish (readers or a writer in the way).
    busy: bool,
    /// Frames in the WAL, and how many of them are copied to the database.
    pages: i64,
    copied: i64,
}

fn wal_checkpoint(conn: &Connection, mode: &str) -> rusqlite::Result<WalCheckpoint> {
    conn.query_row(&format!("PRAGMA wal_checkpoint({mode})"), [], |row| {
        Ok(WalCheckpoint {
            busy: row.get::<_, i64>(0)? != 0,
            pages: row.get(1)?,
            copied: row.get(2)?,
        })
    })
}

/// A RESTART checkpoint; `None` when it gave up waiting for a lock (SQLITE_BUSY).
fn restart(conn: &Connection) -> Result<Option<WalCheckpoint>, StoreError> {
    match wal_checkpoint(conn, "RESTART") {
        Ok(w) => Ok(Some(w)),
        Err(rusqlite::Error::SqliteFailure(e, _))
            if e.code == rusqlite::ErrorCode::DatabaseBusy =>
        {
            Ok(None)
        }
        Err(e) => Err(e.into()),
    }
}

/// The checkpointer's own connection; `None` (logged) when it cannot be opened.
fn checkpoint_connection(config: &StoreConfig) -> Option<Connection> {
    let conn = match open_connection(&config.path, config.synchronous, false) {
        Ok(c) => c,
        Err(e) => {
            tracing::error!(error = %e, "Cannot open the checkpoint connection; the WAL will grow.");
            return None;
        }
    };
    // A RESTART checkpoint (the fallback) holds off the writer while it waits for
    // readers: give up soon and try again next round rather than stall ingest.
    if let Err(e) = conn.busy_timeout(Duration::from_millis(CHECKPOINT_WAIT_MS)) {
        tracing::warn!(error = %e, "Cannot set the checkpoint busy timeout.");
    }
    Some(conn)
}

/// Checkpoint every `every` until `stop`, and once more on the way out.
fn checkpoint_rounds(
    conn: &Connection,
    every: Duration,
    stop: &tokio_util::sync::CancellationToken,
    restart_wal: &AtomicBool,
    limits: WalLimits,
) {
    loop {
        let deadline = std::time::Instant::now() + every;
        while std::time::Instant::now() < deadline && !stop.is_cancelled() {
            std::thread::sleep(Duration::from_millis(50));
        }
        // Asked the writer to start the log over: leave the log alone until it
        // has (both copying at once slowed its checkpoint down several times).
        if restart_wal.load(Ordering::Acquire) && !stop.is_cancelled() {
            continue;
        }
        match checkpoint(conn, restart_wal, limits) {
            Ok(wal_pages) => metrics::gauge!(crate::stats::names::WAL_PAGES).set(wal_pages as f64),
            Err(e) => tracing::warn!(error = %e, "WAL checkpoint failed; will retry."),
        }
        if stop.is_cancelled() {
            break;
        }
    }
}
