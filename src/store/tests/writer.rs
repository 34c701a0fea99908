//! The write side: commits, duplicates and conflicts, quarantine, log rows and their move,
//! retention, the WAL.

use super::*;

#[tokio::test]
async fn committed_readings_are_queried_back_and_redeliveries_are_duplicates() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&config(dir.path()), &[]).unwrap();
    let mut w = store.writer().unwrap();
    let msg = env(vec![
        reading("A", "pm25", t0(), 35.2),
        reading("A", "pm10", t0(), 61.0),
    ]);
    let out = w.commit(&[msg.clone(), msg.clone()]).unwrap();
    assert_eq!(
        out,
        vec![
            Outcome::Stored {
                inserted: 2,
                conflicts: 0
            },
            Outcome::Duplicate
        ]
    );
    assert_eq!(w.commit(&[msg]).unwrap(), vec![Outcome::Duplicate]);

    let points = store
        .series("A", "pm25", t0() - 1.hour(), t0() + 1.hour(), 10)
        .await
        .unwrap();
    assert_eq!(points.len(), 1);
    assert_eq!(points[0].value, 35.2);
    assert_eq!(points[0].observed_at, t0());
    let counters = store.feed_counters().await.unwrap();
    assert_eq!(counters[0].received, 3);
    assert_eq!(counters[0].stored, 1);
    assert_eq!(counters[0].duplicate, 2);
    assert_eq!(counters[0].readings, 2);
    let devices = store.devices(&DeviceFilter::default()).await.unwrap();
    assert_eq!(devices[0].latest.len(), 2);
}

#[tokio::test]
async fn rejects_are_quarantined_and_a_dup_flagged_repeat_is_a_duplicate() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&config(dir.path()), &[]).unwrap();
    let mut w = store.writer().unwrap();
    let out = w
        .commit(&[
            reject(b"{bad", false),
            reject(b"{bad", false),
            reject(b"{bad", true),
        ])
        .unwrap();
    assert_eq!(
        out,
        vec![Outcome::Rejected, Outcome::Rejected, Outcome::Duplicate]
    );
    let rows = store
        .rejects(&RejectFilter {
            limit: 10,
            reason: Some("malformed_json".into()),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(rows.len(), 2);
    assert_eq!(rows[0].payload_text, "{bad");
    assert_eq!(store.reject_counts().await.unwrap()[0].count, 2);
}

#[tokio::test]
async fn data_and_counters_survive_reopening_without_a_clean_close() {
    let dir = tempfile::tempdir().unwrap();
    {
        let store = Store::open(&config(dir.path()), &[]).unwrap();
        let mut w = store.writer().unwrap();
        w.commit(&[env(vec![reading("A", "pm25", t0(), 1.0)])])
            .unwrap();
        std::mem::forget(w); // no close, no checkpoint: as after a crash
    }
    let store = Store::open(&config(dir.path()), &[]).unwrap();
    assert_eq!(store.stats().await.unwrap().readings, 1);
    assert_eq!(store.feed_counters().await.unwrap()[0].stored, 1);
}

#[test]
fn the_wal_starts_over_under_continuous_writes() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&config(dir.path()), &[]).unwrap();
    let mut w = store.writer().unwrap();
    let stop = tokio_util::sync::CancellationToken::new();
    let limits = WalLimits {
        restart: 64,
        force: i64::MAX,
    };
    let checkpointer = store
        .checkpointer_with(Duration::from_millis(20), stop.clone(), limits)
        .unwrap();
    let (mut restarts, mut written, mut commit) = (0, 0, 0i64);
    let started = std::time::Instant::now();
    while restarts < 3 && started.elapsed() < Duration::from_secs(20) {
        commit += 1;
        let batch: Vec<Reading> = (0..200)
            .map(|i| reading(&format!("D{i:03}"), "pm25", t0() + commit.seconds(), 1.0))
            .collect();
        w.commit(&[env(batch)]).unwrap();
        written += 1;
        if w.restart_wal_if_asked().unwrap() {
            restarts += 1;
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    stop.cancel();
    checkpointer.join().unwrap();
    assert!(
        restarts >= 3,
        "the writer restarted the WAL {restarts} times in {written} commits"
    );
    // The next commit starts the log over: it now holds that commit's frames, far fewer than
    // the file (which keeps its size) has room for.
    w.commit(&[env(vec![reading("D000", "pm25", t0() + 1.hours(), 1.0)])])
        .unwrap();
    let in_log: i64 = store
        .connection_for_tests()
        .query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |r| r.get(1))
        .unwrap();
    let wal = std::fs::metadata(dir.path().join("t.db-wal"))
        .unwrap()
        .len() as i64;
    let file_frames = (wal - 32) / WAL_FRAME_BYTES;
    assert!(
        in_log > 0 && in_log * 4 < file_frames,
        "{in_log} frames in the log, {file_frames} in the file"
    );
}

#[tokio::test]
async fn devices_learn_their_cadence_and_catalogue_wins_for_location() {
    let dir = tempfile::tempdir().unwrap();
    let catalogue = vec![crate::normalise::DeviceConfig {
        id: "A".into(),
        city: City::ThaiNguyen,
        domain: Domain::AirQuality,
        name: Some("Hùng Vương".into()),
        lat: 21.5925,
        lon: 105.8435,
        ward: Some("Phan Đình Phùng".into()),
        position_source: "synthetic".into(),
        interval: None,
        flood_levels: vec![],
        ranges: Default::default(),
    }];
    let store = Store::open(&config(dir.path()), &catalogue).unwrap();
    let mut w = store.writer().unwrap();
    for i in 0..5 {
        w.commit(&[env(vec![reading(
            "A",
            "pm25",
            t0() + (5 * i).minutes(),
            1.0,
        )])])
        .unwrap();
    }
    let d = &store
        .devices(&DeviceFilter {
            device_id: Some("A".into()),
            ..Default::default()
        })
        .await
        .unwrap()[0];
    assert_eq!(d.expected_interval_ms, Some(300_000));
    assert_eq!(d.location.as_ref().unwrap().lat, 21.5925);
    assert_eq!(
        d.location.as_ref().unwrap().ward.as_deref(),
        Some("Phan Đình Phùng")
    );
    assert_eq!(d.last_observed_at, Some(t0() + 20.minutes()));
}

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

async fn conflict_rejects(store: &Store) -> Vec<crate::store::RejectRow> {
    store
        .rejects(&crate::store::RejectFilter {
            reason: Some("conflict".into()),
            limit: 100,
            ..Default::default()
        })
        .await
        .unwrap()
}

/// A reading for a series and time already stored with another value is a conflict: counted
/// apart from duplicates, the value not kept recorded, and which is kept set by the policy.
#[tokio::test]
async fn conflicts_are_settled_by_the_policy_and_recorded() {
    for policy in [OnConflict::KeepLatest, OnConflict::KeepFirst] {
        let dir = tempfile::tempdir().unwrap();
        let config = StoreConfig {
            on_conflict: policy,
            ..config(dir.path())
        };
        let store = Store::open(&config, &[]).unwrap();
        let mut w = store.writer().unwrap();
        let first = env(vec![reading("A", "pm25", t0(), 40.0)]);
        let correction = env(vec![reading("A", "pm25", t0(), 41.5)]);
        w.commit(std::slice::from_ref(&first)).unwrap();
        // Across commits.
        let out = w.commit(std::slice::from_ref(&correction)).unwrap();
        let discarded_out = w.discarded().to_vec();
        // Within one batch: two senders disagree.
        let other_time = |v| env(vec![reading("A", "pm25", t0() + 1.minute(), v)]);
        let in_batch = w.commit(&[other_time(1.0), other_time(2.0)]).unwrap();
        let discarded_in_batch = w.discarded().to_vec();
        let values = store
            .series("A", "pm25", t0(), t0() + 1.hours(), 10)
            .await
            .unwrap()
            .iter()
            .map(|p| p.value)
            .collect::<Vec<_>>();
        let replaced = Outcome::Stored {
            inserted: 1,
            conflicts: 1,
        };
        let stored = Outcome::Stored {
            inserted: 1,
            conflicts: 0,
        };
        let lost = Outcome::Conflicted { conflicts: 1 };
        match policy {
            OnConflict::KeepLatest => {
                assert_eq!(out, vec![replaced]);
                assert_eq!(in_batch, vec![lost, stored]);
                assert_eq!(values, vec![41.5, 2.0]);
                // What was not kept is not passed on (the replaced value was never in a batch).
                assert_eq!((discarded_out, discarded_in_batch), (vec![], vec![0]));
            }
            OnConflict::KeepFirst => {
                assert_eq!(out, vec![lost]);
                assert_eq!(in_batch, vec![stored, lost]);
                assert_eq!(values, vec![40.0, 1.0]);
                assert_eq!((discarded_out, discarded_in_batch), (vec![0], vec![1]));
            }
        }
        // A redelivery of what is stored is still a duplicate.
        let kept = match policy {
            OnConflict::KeepLatest => correction,
            OnConflict::KeepFirst => first,
        };
        assert_eq!(w.commit(&[kept]).unwrap(), vec![Outcome::Duplicate]);
        assert_eq!(conflict_rejects(&store).await.len(), 2, "{policy:?}");
        let counters = store.feed_counters().await.unwrap();
        assert_eq!(counters[0].conflicts, 2);
        assert_eq!(
            counters[0].received,
            counters[0].stored + counters[0].rejected + counters[0].duplicate
        );
    }
}

/// The rejected parts of a stored message are quarantined with its payload; a redelivery of
/// the message does not quarantine them again.
#[tokio::test]
async fn rejected_parts_of_a_stored_message_are_quarantined_once() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&config(dir.path()), &[]).unwrap();
    let mut w = store.writer().unwrap();
    let mut msg = env(vec![reading("A", "pm25", t0(), 35.0)]);
    msg.partial = Some(Box::new(crate::store::Partial {
        rejected: vec![Rejection::new(
            RejectReason::InvalidValue,
            "device A: pm10 = -3 µg/m³ …",
        )],
        payload: Bytes::from_static(b"{\"payload\":1}"),
        payload_size: 13,
    }));
    assert_eq!(
        w.commit(&[msg.clone()]).unwrap(),
        vec![Outcome::Stored {
            inserted: 1,
            conflicts: 0
        }]
    );
    assert_eq!(w.commit(&[msg]).unwrap(), vec![Outcome::Duplicate]);
    let rejects = store
        .rejects(&crate::store::RejectFilter {
            limit: 10,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(rejects.len(), 1);
    assert_eq!(rejects[0].reason, "invalid_value");
    assert!(rejects[0].partial);
    assert!(rejects[0].detail.contains("1 reading(s) stored"));
    assert_eq!(rejects[0].payload_text, "{\"payload\":1}");
    let c = &store.feed_counters().await.unwrap()[0];
    assert_eq!((c.stored, c.partial, c.readings_rejected), (2 - 1, 1, 1));
}

#[tokio::test]
async fn retention_prunes_old_readings() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = config(dir.path());
    cfg.retention = Duration::from_secs(3600);
    let store = Store::open(&cfg, &[]).unwrap();
    let mut w = store.writer().unwrap();
    w.commit(&[
        env(vec![reading("A", "pm25", t0() - 2.hours(), 1.0)]),
        env(vec![reading("A", "pm25", t0(), 2.0)]),
    ])
    .unwrap();
    let pruned = w.prune(t0()).unwrap();
    assert_eq!(pruned.observations, 1);
    assert_eq!(store.stats().await.unwrap().readings, 1);
}

#[tokio::test]
async fn a_large_batched_load_is_stored_completely() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&config(dir.path()), &[]).unwrap();
    let mut w = store.writer().unwrap();
    let mut total = 0;
    for batch in 0..25 {
        let envs: Vec<_> = (0..200)
            .map(|i| {
                let at = t0() + (batch * 200 + i).seconds();
                env(vec![
                    reading(&format!("D{}", i % 20), "pm25", at, 1.0),
                    reading(&format!("D{}", i % 20), "pm10", at, 2.0),
                ])
            })
            .collect();
        total += w.commit(&envs).unwrap().len();
    }
    assert_eq!(total, 5_000);
    assert_eq!(store.stats().await.unwrap().readings, 10_000);
    // Whole log rows (a device's readings at one time share a position), up to the limit.
    let log = store.read_log(0, 3).await.unwrap();
    assert_eq!(
        log.iter().map(|e| e.id).collect::<Vec<_>>(),
        vec![1, 1, 2, 2]
    );
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
