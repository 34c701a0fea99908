//! The write side: commits, duplicates and conflicts, quarantine, devices, retention, the WAL
//! (the log's rows and their move: `log.rs`).

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

/// The conflicts in quarantine, oldest first.
pub(super) async fn conflict_rejects(store: &Store) -> Vec<crate::store::RejectRow> {
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
