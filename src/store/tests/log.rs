//! The reading log: later readings joining a logged row (before and after it moved), and the
//! move of the recent rows (when it waits, and that a chunked move keeps every row and its
//! position).

use super::writer::conflict_rejects;
use super::*;

/// More readings of a device at a time it already reported join its log row, which moves to
/// the end of the log so that log readers see them; what the row held stays as it was.
#[tokio::test]
async fn later_readings_of_a_logged_time_join_its_row_and_reach_log_readers() {
    later_readings_join_their_row(false).await;
}

/// The same with every row moved to `observations` after each commit (see the schema): a
/// redelivery or a later reading meets its row in the other table, and the row comes back to
/// the end of the log.
#[tokio::test]
async fn later_readings_join_their_row_after_it_moved() {
    later_readings_join_their_row(true).await;
}

/// Commit, then move the recent rows when `moved`.
fn commit_and_move(w: &mut StoreWriter, batch: &[Envelope], moved: bool) -> Vec<Outcome> {
    let outcomes = w.commit(batch).unwrap();
    if moved {
        w.merge_every_rows(1);
        w.merge_recent_if_due().unwrap();
    }
    outcomes
}

async fn later_readings_join_their_row(moved: bool) {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&config(dir.path()), &[]).unwrap();
    let mut w = store.writer().unwrap();
    let stored = |n| Outcome::Stored {
        inserted: n,
        conflicts: 0,
    };
    assert_eq!(
        commit_and_move(
            &mut w,
            &[
                env(vec![reading("A", "pm25", t0(), 1.0)]),
                env(vec![reading("B", "pm25", t0(), 2.0)]),
            ],
            moved
        ),
        vec![stored(1), stored(1)]
    );
    let cursor = store.stats().await.unwrap().max_log_id;
    assert_eq!(cursor, 2);
    assert_eq!(store.readings_after(0).await.unwrap(), 2);
    assert_eq!(store.readings_after(cursor).await.unwrap(), 0);
    // In one batch: a redelivered reading, a new one, and the new one again.
    let outcomes = commit_and_move(
        &mut w,
        &[
            env(vec![
                reading("A", "pm25", t0(), 1.0),
                reading("A", "pm10", t0(), 3.0),
            ]),
            env(vec![reading("A", "pm10", t0(), 3.0)]),
        ],
        moved,
    );
    assert_eq!(outcomes, vec![stored(1), Outcome::Duplicate]);
    let after: Vec<(i64, String, f64)> = store
        .read_log(cursor, 100)
        .await
        .unwrap()
        .into_iter()
        .map(|e| (e.id, e.metric, e.value))
        .collect();
    assert_eq!(
        after,
        vec![(3, "pm25".into(), 1.0), (3, "pm10".into(), 3.0)]
    );
    // The forwarder's backlog: the moved row's readings, the one it had sent included.
    assert_eq!(store.readings_after(cursor).await.unwrap(), 2);
    // A new writer (after a restart) carries on the running count; a correction moves its row
    // to the end of the log again, so the forwarder sends the corrected value.
    drop(w);
    let mut w = store.writer().unwrap();
    let again = [
        env(vec![reading("C", "pm25", t0(), 5.0)]),
        env(vec![reading("A", "pm10", t0(), 4.0)]),
        env(vec![reading("B", "pm25", t0(), 2.0)]),
    ];
    assert_eq!(
        commit_and_move(&mut w, &again, moved),
        vec![
            stored(1),
            Outcome::Stored {
                inserted: 1,
                conflicts: 1
            },
            Outcome::Duplicate
        ]
    );
    assert_eq!(store.readings_after(cursor).await.unwrap(), 3);
    let point = |metric| {
        let store = store.clone();
        async move {
            let p = store
                .series("A", metric, t0(), t0() + 1.hours(), 10)
                .await
                .unwrap();
            p.iter().map(|p| p.value).collect::<Vec<_>>()
        }
    };
    assert_eq!(point("pm25").await, vec![1.0]);
    assert_eq!(point("pm10").await, vec![4.0]);
    let stats = store.stats().await.unwrap();
    assert_eq!((stats.readings, stats.max_log_id), (4, 5));
    let conflicts = conflict_rejects(&store).await;
    assert_eq!(conflicts.len(), 1);
    assert!(
        conflicts[0].payload_text.contains("\"value\":3.0"),
        "{conflicts:?}"
    );
    assert!(conflicts[0].partial);
}

/// Moves keep `MERGE_GAP` between them until the recent rows reach the most a move waits for;
/// once the gap has passed, the least number of rows is enough.
#[tokio::test]
async fn a_move_waits_for_the_gap_unless_the_recent_rows_are_many() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&config(dir.path()), &[]).unwrap();
    let mut w = store.writer().unwrap();
    let mut minute = 0_i64;
    let mut commit_one = |w: &mut StoreWriter| {
        let at = t0() + minute.minutes();
        minute += 1;
        w.commit(&[env(vec![reading("A", "pm25", at, minute as f64)])])
            .unwrap();
    };
    w.merge_when(2, 4, Duration::from_secs(3_600));
    for _ in 0..3 {
        commit_one(&mut w);
    }
    assert_eq!(w.merge_recent_if_due().unwrap(), 0, "within the gap");
    commit_one(&mut w);
    assert_eq!(
        w.merge_recent_if_due().unwrap(),
        4,
        "the most a move waits for"
    );
    w.merge_when(2, 4, Duration::ZERO);
    commit_one(&mut w);
    assert_eq!(w.merge_recent_if_due().unwrap(), 0, "fewer than the least");
    commit_one(&mut w);
    assert_eq!(w.merge_recent_if_due().unwrap(), 2, "the gap has passed");
}

/// A move reads the recent rows a chunk at a time: every row arrives in `observations` as it
/// was, with its position, whatever the chunks, and the recent table is left empty.
#[tokio::test]
async fn a_move_in_chunks_keeps_every_row_and_its_position() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&config(dir.path()), &[]).unwrap();
    let mut w = store.writer().unwrap();
    // Log order (time, then device) differs from the order rows are inserted (device first).
    for minute in 0..4_i64 {
        let batch: Vec<Envelope> = ["C", "A", "B"]
            .iter()
            .map(|d| {
                let at = t0() + minute.minutes();
                env(vec![
                    reading(d, "pm25", at, minute as f64),
                    reading(d, "pm10", at, 10.0 + minute as f64),
                ])
            })
            .collect();
        w.commit(&batch).unwrap();
    }
    let conn = store.connection_for_tests();
    let rows = |table: &str| -> Vec<(i64, i64, i64, i64, Vec<u8>, i64)> {
        conn.prepare(&format!(
            "SELECT id, device_key, observed_at, received_at, readings, log_readings
             FROM {table} ORDER BY id"
        ))
        .unwrap()
        .query_map([], |r| {
            Ok((
                r.get(0)?,
                r.get(1)?,
                r.get(2)?,
                r.get(3)?,
                r.get(4)?,
                r.get(5)?,
            ))
        })
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap()
    };
    let before = rows("observations_recent");
    assert_eq!(before.len(), 12);
    // 12 rows in chunks of 5: two full chunks and a partial one.
    w.move_in_chunks_of(5);
    w.merge_every_rows(1);
    assert_eq!(w.merge_recent_if_due().unwrap(), 12);
    assert_eq!(rows("observations"), before);
    assert!(rows("observations_recent").is_empty());
    // A chunk size that divides the rows exactly ends on an empty read.
    w.commit(&[env(vec![reading("A", "pm25", t0() + 5.minutes(), 5.0)])])
        .unwrap();
    w.commit(&[env(vec![reading("B", "pm25", t0() + 5.minutes(), 5.0)])])
        .unwrap();
    w.move_in_chunks_of(1);
    assert_eq!(w.merge_recent_if_due().unwrap(), 2);
    assert_eq!(rows("observations").len(), 14);
    assert!(rows("observations_recent").is_empty());
}
