use std::time::Duration;

use bytes::Bytes;
use jiff::{Timestamp, ToSpan};

use super::*;
use crate::config::OnConflict;
use crate::model::{City, Domain, FeedId, Location, Reading, RejectReason, Rejection, Status};

/// Every query of the log prepared by any test (`log_query`).
pub(super) static LOG_QUERIES: std::sync::Mutex<std::collections::BTreeSet<String>> =
    std::sync::Mutex::new(std::collections::BTreeSet::new());

fn config(dir: &std::path::Path) -> StoreConfig {
    StoreConfig {
        path: dir.join("t.db"),
        synchronous: Synchronous::Normal,
        ..StoreConfig::default()
    }
}

fn reading(device: &str, metric: &'static str, at: Timestamp, value: f64) -> Reading {
    Reading {
        city: City::ThaiNguyen,
        feed: FeedId::new("thai-nguyen"),
        device_id: device.into(),
        domain: Domain::AirQuality,
        metric,
        value,
        unit: "µg/m³",
        observed_at: at,
        received_at: at,
        location: Some(Location {
            lat: 21.59,
            lon: 105.84,
            ward: None,
        }),
        status: Status::Measuring,
    }
}

fn env(readings: Vec<Reading>) -> Envelope {
    Envelope {
        feed: FeedId::new("thai-nguyen"),
        topic: "tn/ioc/air/X".into(),
        received_at: readings
            .first()
            .map(|r| r.received_at)
            .unwrap_or_else(Timestamp::now),
        content: Content::Readings(readings),
        partial: None,
    }
}

fn reject(payload: &'static [u8], dup: bool) -> Envelope {
    Envelope {
        feed: FeedId::new("thai-nguyen"),
        topic: "tn/ioc/air/X".into(),
        received_at: Timestamp::now(),
        content: Content::Rejected {
            rejection: Rejection::new(RejectReason::MalformedJson, "expected value at line 1"),
            payload: Bytes::from_static(payload),
            payload_size: payload.len(),
            dup,
        },
        partial: None,
    }
}

fn t0() -> Timestamp {
    "2026-11-22T01:05:00Z".parse().unwrap()
}

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

/// Under continuous writes the WAL starts over: the checkpointer catches up and asks the
/// writer, which restarts it between commits; the log stays near the limit instead of growing
/// with everything written.
/// Put a store back into the layout of versions up to 5 — one `readings` row per reading,
/// keyed by device, in log order — and mark it `version`.
fn back_to_reading_rows(conn: &rusqlite::Connection, version: i64) {
    conn.execute_batch(
        "CREATE TABLE readings (
             id INTEGER PRIMARY KEY, series_id INTEGER NOT NULL REFERENCES series (id),
             device_key INTEGER NOT NULL, observed_at INTEGER NOT NULL, value REAL NOT NULL,
             status INTEGER NOT NULL, received_at INTEGER NOT NULL,
             UNIQUE (device_key, observed_at, series_id));",
    )
    .unwrap();
    let rows: Vec<(i64, i64, i64, Vec<u8>)> = conn
        .prepare("SELECT device_key, observed_at, received_at, readings FROM log_rows ORDER BY id")
        .unwrap()
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    for (device_key, observed, received, blob) in rows {
        for r in packed::decode(&blob) {
            let (series, value, status) = r.unwrap();
            conn.execute(
                "INSERT INTO readings (series_id, device_key, observed_at, value, status, received_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                rusqlite::params![series, device_key, observed, value, status, received],
            )
            .unwrap();
        }
    }
    conn.execute_batch(&format!(
        "DROP VIEW log_rows; DROP TABLE observations; DROP TABLE observations_recent;
         DROP INDEX series_device_key; PRAGMA user_version = {version};"
    ))
    .unwrap();
}

/// Every reading of the log as (device, metric, observed at, value, status), sorted.
async fn logged(store: &Store) -> Vec<(String, String, i64, u64, Status)> {
    let mut log: Vec<_> = store
        .read_log(0, u32::MAX)
        .await
        .unwrap()
        .into_iter()
        .map(|e| {
            let at = e.observed_at.as_millisecond();
            (e.device_id, e.metric, at, e.value.to_bits(), e.status)
        })
        .collect();
    log.sort_by(|a, b| (&a.0, &a.1, a.2, a.3).cmp(&(&b.0, &b.1, b.2, b.3)));
    log
}

/// Databases of versions 4 (readings keyed by series) and 5 (keyed by device) are rebuilt on
/// open with their readings, the log cursors still valid, and the redelivery check intact.
#[tokio::test]
async fn version_4_and_5_databases_are_migrated_with_their_readings() {
    for version in [4, 5] {
        migrated_with_readings(version).await;
    }
}

async fn migrated_with_readings(version: i64) {
    let dir = tempfile::tempdir().unwrap();
    let batch: Vec<Envelope> = (0..20)
        .map(|i| {
            let at = t0() + (i * 10).minutes();
            let device = if i % 2 == 0 { "A" } else { "B" };
            let mut pm10 = reading(device, "pm10", at, 100.0 + i as f64);
            if i % 3 == 0 {
                pm10.status = Status::Calibrating;
            }
            env(vec![reading(device, "pm25", at, i as f64), pm10])
        })
        .collect();
    let before = {
        let store = Store::open(&config(dir.path()), &[]).unwrap();
        store.writer().unwrap().commit(&batch).unwrap();
        let before = logged(&store).await;
        let conn = store.connection_for_tests();
        back_to_reading_rows(&conn, version);
        if version == 4 {
            conn.execute_batch(
                "ALTER TABLE readings RENAME TO readings_v5;
                 CREATE TABLE readings (
                     id INTEGER PRIMARY KEY, series_id INTEGER NOT NULL REFERENCES series (id),
                     observed_at INTEGER NOT NULL, value REAL NOT NULL, status INTEGER NOT NULL,
                     received_at INTEGER NOT NULL, UNIQUE (series_id, observed_at));
                 INSERT INTO readings SELECT id, series_id, observed_at, value, status, received_at
                     FROM readings_v5;
                 DROP TABLE readings_v5;
                 ALTER TABLE series DROP COLUMN device_key;",
            )
            .unwrap();
        }
        before
    };
    assert_eq!(before.len(), 40);

    let store = Store::open(&config(dir.path()), &[]).unwrap();
    assert_eq!(logged(&store).await, before, "version {version}");
    let stats = store.stats().await.unwrap();
    assert_eq!(
        (stats.readings, stats.max_log_id),
        (40, 40),
        "version {version}"
    );
    // A forwarder that had read the first 12 messages (readings 1 to 24, one log position
    // each) reads exactly the 16 readings after them from its cursor.
    assert_eq!(store.read_log(24, u32::MAX).await.unwrap().len(), 16);
    assert_eq!(store.readings_after(24).await.unwrap(), 16);
    assert_eq!(store.readings_after(0).await.unwrap(), 40);
    let points = store
        .series("B", "pm10", t0(), t0() + 24.hours(), 100)
        .await
        .unwrap();
    let values: Vec<f64> = points.iter().map(|p| p.value).collect();
    assert_eq!(
        values,
        (0..20)
            .filter(|i| i % 2 == 1)
            .map(|i| 100.0 + i as f64)
            .collect::<Vec<_>>()
    );
    let mut w = store.writer().unwrap();
    assert!(
        w.commit(&batch)
            .unwrap()
            .iter()
            .all(|o| *o == Outcome::Duplicate)
    );
    let later = env(vec![
        reading("A", "no2", t0(), 7.0),
        reading("A", "pm25", t0() + 24.hours(), 1.0),
    ]);
    assert_eq!(
        w.commit(&[later]).unwrap(),
        vec![Outcome::Stored {
            inserted: 2,
            conflicts: 0
        }]
    );
    let keys: i64 = store
        .connection_for_tests()
        .query_row(
            "SELECT COUNT(DISTINCT device_key) FROM series WHERE device_id = 'A'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(keys, 1);
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

/// Writing the latest values of many series is spread over several commits, and the log
/// position moves only when the last slice has landed; a crash in between loses nothing.
#[tokio::test]
async fn latest_values_are_written_in_rounds_over_several_commits() {
    const DEVICES: usize = 3_000;
    let number = |store: &Store, sql: &str| -> i64 {
        store
            .connection_for_tests()
            .query_row(sql, [], |r| r.get(0))
            .unwrap()
    };
    let live_cursor =
        |store: &Store| number(store, "SELECT position FROM cursors WHERE name = 'live'");
    let rows_written = |store: &Store| {
        number(
            store,
            "SELECT COUNT(*) FROM series WHERE last_value IS NOT NULL",
        )
    };
    let many: Vec<Reading> = (0..DEVICES)
        .map(|i| reading(&format!("D{i:04}"), "pm25", t0(), i as f64))
        .collect();
    let one = |i: i64| env(vec![reading("X", "pm25", t0() + i.minutes(), 0.5)]);

    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&config(dir.path()), &[]).unwrap();
    let mut w = store.writer().unwrap();
    w.live_round_every(Duration::ZERO);
    w.commit(&[env(many.clone())]).unwrap();
    let logged = DEVICES as i64;
    w.commit(&[one(1)]).unwrap();
    let first = rows_written(&store);
    assert!(
        first > 0 && first < DEVICES as i64,
        "the first commit of the round writes a slice, not all: {first}"
    );
    assert_eq!(
        live_cursor(&store),
        0,
        "the position waits for the whole round"
    );
    let mut commits = 1;
    while live_cursor(&store) == 0 {
        commits += 1;
        assert!(commits < 100, "the round never finished");
        w.commit(&[one(commits)]).unwrap();
    }
    assert!(commits > 2, "spread over {commits} commits");
    assert_eq!(live_cursor(&store), logged, "where the round started");
    assert!(rows_written(&store) >= DEVICES as i64);
    drop(w);

    // A crash in the middle of a round: reopening replays the log after the last position.
    let dir = tempfile::tempdir().unwrap();
    {
        let store = Store::open(&config(dir.path()), &[]).unwrap();
        let mut w = store.writer().unwrap();
        w.live_round_every(Duration::ZERO);
        w.commit(&[env(many.clone())]).unwrap();
        w.commit(&[one(1)]).unwrap();
        assert!(rows_written(&store) < DEVICES as i64);
        std::mem::forget(w);
    }
    let store = Store::open(&config(dir.path()), &[]).unwrap();
    let devices = store.devices(&DeviceFilter::default()).await.unwrap();
    assert_eq!(devices.len(), DEVICES + 1);
    for d in devices.iter().filter(|d| d.device_id != "X") {
        let i: f64 = d.device_id[1..].parse().unwrap();
        assert_eq!(d.latest[0].value, i, "{}", d.device_id);
    }
    assert_eq!(rows_written(&store), DEVICES as i64 + 1);
}

/// A batch may carry a series several times (a backlog after a reconnect): its latest value is
/// the latest observed, whatever the order in the batch, and again in the commit after.
#[tokio::test]
async fn the_latest_value_is_the_latest_observed_in_any_batch_order() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&config(dir.path()), &[]).unwrap();
    let mut w = store.writer().unwrap();
    let latest = || async {
        let d = store.devices(&DeviceFilter::default()).await.unwrap();
        d.iter()
            .map(|d| (d.device_id.clone(), d.latest[0].value))
            .collect::<Vec<_>>()
    };
    w.commit(&[
        env(vec![reading("A", "pm25", t0() + 5.minutes(), 2.0)]),
        env(vec![reading("A", "pm25", t0(), 1.0)]),
        env(vec![reading("B", "pm25", t0(), 6.0)]),
        env(vec![reading("B", "pm25", t0() + 5.minutes(), 7.0)]),
    ])
    .unwrap();
    assert_eq!(latest().await, [("A".into(), 2.0), ("B".into(), 7.0)]);
    w.commit(&[
        env(vec![reading("A", "pm25", t0() + 1.minutes(), 3.0)]),
        env(vec![reading("B", "pm25", t0() + 6.minutes(), 8.0)]),
    ])
    .unwrap();
    assert_eq!(latest().await, [("A".into(), 2.0), ("B".into(), 8.0)]);
}

#[tokio::test]
async fn latest_values_are_exact_after_a_crash_between_flushes() {
    let dir = tempfile::tempdir().unwrap();
    let latest = |store: Store| async move {
        let d = store.devices(&DeviceFilter::default()).await.unwrap();
        d.iter()
            .map(|d| {
                let l = &d.latest[0];
                (
                    d.device_id.clone(),
                    l.value,
                    l.observed_at,
                    d.last_seen,
                    d.last_status,
                    d.expected_interval_ms,
                )
            })
            .collect::<Vec<_>>()
    };
    let before = {
        let store = Store::open(&config(dir.path()), &[]).unwrap();
        let mut w = store.writer().unwrap();
        w.commit(&[env(vec![reading("A", "pm25", t0(), 1.0)])])
            .unwrap();
        w.commit(&[env(vec![reading("A", "pm25", t0() + 5.minutes(), 2.0)])])
            .unwrap();
        w.commit(&[env(vec![reading("B", "pm25", t0() + 5.minutes(), 7.0)])])
            .unwrap();
        w.flush().unwrap();
        // After the flush: a newer reading of A (a fault), an older one of B.
        let mut fault = reading("A", "pm25", t0() + 10.minutes(), 3.0);
        fault.status = Status::Fault;
        w.commit(&[env(vec![fault])]).unwrap();
        w.commit(&[env(vec![reading("B", "pm25", t0(), 6.0)])])
            .unwrap();
        let before = latest(store.clone()).await;
        assert_eq!(before[0].1, 3.0);
        assert_eq!(before[0].4, Some("fault"));
        assert_eq!(
            before[1].1, 7.0,
            "an older reading does not replace the latest"
        );
        std::mem::forget(w); // no flush: as after a crash
        before
    };
    let store = Store::open(&config(dir.path()), &[]).unwrap();
    let after = latest(store.clone()).await;
    assert_eq!(after[0].0, "A");
    assert_eq!(after[0].1, 3.0);
    assert_eq!(after[0].2, t0() + 10.minutes());
    assert_eq!(after[0].3, before[0].3);
    assert_eq!(after[0].4, Some("fault"));
    assert_eq!(after[0].5, Some(300_000), "learned before the flush");
    assert_eq!(after[1].1, 7.0);
    // Opening wrote the replayed state back: the rows agree, and a second open replays nothing.
    let row: (f64, i64) = store
        .connection_for_tests()
        .query_row(
            "SELECT last_value, last_status FROM series WHERE device_id = 'A'",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .unwrap();
    assert_eq!(row, (3.0, 2));
    drop(store);
    let store = Store::open(&config(dir.path()), &[]).unwrap();
    assert_eq!(latest(store).await, after);
}

#[tokio::test]
async fn aggregates_align_buckets_to_local_midnight() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&config(dir.path()), &[]).unwrap();
    let mut w = store.writer().unwrap();
    // 2026-11-21T16:30Z is 23:30 local on the 21st; 17:30Z is 00:30 local on the 22nd.
    let a: Timestamp = "2026-11-21T16:30:00Z".parse().unwrap();
    let b: Timestamp = "2026-11-21T17:30:00Z".parse().unwrap();
    let c: Timestamp = "2026-11-21T17:45:00Z".parse().unwrap();
    w.commit(&[
        env(vec![reading("A", "pm25", a, 10.0)]),
        env(vec![reading("A", "pm25", b, 20.0)]),
        env(vec![reading("B", "pm25", c, 40.0)]),
    ])
    .unwrap();
    let q = AggregateQuery {
        metric: "pm25".into(),
        city: Some(City::ThaiNguyen),
        domain: None,
        device_id: None,
        from: a - 24.hours(),
        to: c + 24.hours(),
        every_ms: 86_400_000,
        group_by_device: false,
    };
    let days = store.aggregates(&q).await.unwrap();
    assert_eq!(days.len(), 2);
    assert_eq!(days[0].bucket_start.to_string(), "2026-11-20T17:00:00Z");
    assert_eq!((days[0].count, days[0].mean), (1, 10.0));
    assert_eq!(days[1].bucket_start.to_string(), "2026-11-21T17:00:00Z");
    assert_eq!(
        (
            days[1].count,
            days[1].mean,
            days[1].min,
            days[1].max,
            days[1].sum
        ),
        (2, 30.0, 20.0, 40.0, 60.0)
    );
    let per_device = store
        .aggregates(&AggregateQuery {
            every_ms: 900_000,
            group_by_device: true,
            ..q
        })
        .await
        .unwrap();
    assert_eq!(per_device.len(), 3);
    assert_eq!(per_device[2].device_id.as_deref(), Some("B"));
    assert_eq!(
        per_device[2].bucket_start.to_string(),
        "2026-11-21T17:45:00Z"
    );
}

#[tokio::test]
async fn hourly_means_count_only_measuring_samples() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&config(dir.path()), &[]).unwrap();
    let mut w = store.writer().unwrap();
    let mut calibrating = reading("A", "pm25", t0() + 10.minutes(), 500.0);
    calibrating.status = Status::Calibrating;
    w.commit(&[
        env(vec![reading("A", "pm25", t0(), 30.0)]),
        env(vec![calibrating]),
        env(vec![reading("A", "pm25", t0() + 20.minutes(), 40.0)]),
    ])
    .unwrap();
    let means = store
        .hourly_means("A", &["pm25", "o3"], t0() - 1.hour(), t0() + 1.hour())
        .await
        .unwrap();
    assert_eq!(means.len(), 1);
    assert_eq!((means[0].mean, means[0].count), (35.0, 2));
    assert_eq!(
        means[0].hour_start_ms,
        "2026-11-22T01:00:00Z"
            .parse::<Timestamp>()
            .unwrap()
            .as_millisecond()
    );
}

#[tokio::test]
async fn devices_learn_their_cadence_and_catalogue_wins_for_location() {
    let dir = tempfile::tempdir().unwrap();
    let catalogue = vec![crate::config::DeviceConfig {
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

/// The device listing keeps what it read from the tables between calls, and follows every
/// change the writer makes to it: a new device, a new series, a device's first position.
#[tokio::test]
async fn the_device_listing_follows_new_devices_series_and_positions() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&config(dir.path()), &[]).unwrap();
    let mut w = store.writer().unwrap();
    let listing = || {
        let store = store.clone();
        async move {
            store
                .devices(&DeviceFilter::default())
                .await
                .unwrap()
                .into_iter()
                .map(|d| {
                    let latest: Vec<(String, f64)> = d
                        .latest
                        .iter()
                        .map(|l| (l.metric.to_string(), l.value))
                        .collect();
                    (d.device_id, d.location.is_some(), latest)
                })
                .collect::<Vec<_>>()
        }
    };
    let unlocated = |device: &str, metric, minute: i64, value| {
        let mut r = reading(device, metric, t0() + minute.minutes(), value);
        r.location = None;
        env(vec![r])
    };
    let latest = |pairs: &[(&str, f64)]| -> Vec<(String, f64)> {
        pairs.iter().map(|(m, v)| (m.to_string(), *v)).collect()
    };
    w.commit(&[unlocated("A", "pm25", 0, 1.0)]).unwrap();
    assert_eq!(
        listing().await,
        vec![("A".into(), false, latest(&[("pm25", 1.0)]))]
    );
    // Only a value changes: the kept rows, with the live value.
    w.commit(&[unlocated("A", "pm25", 1, 2.0)]).unwrap();
    assert_eq!(
        listing().await,
        vec![("A".into(), false, latest(&[("pm25", 2.0)]))]
    );
    w.commit(&[unlocated("A", "pm10", 2, 3.0)]).unwrap();
    assert_eq!(
        listing().await,
        vec![("A".into(), false, latest(&[("pm10", 3.0), ("pm25", 2.0)]))]
    );
    w.commit(&[env(vec![reading("A", "pm25", t0() + 3.minutes(), 4.0)])])
        .unwrap();
    assert_eq!(
        listing().await,
        vec![("A".into(), true, latest(&[("pm10", 3.0), ("pm25", 4.0)]))]
    );
    w.commit(&[unlocated("B", "pm25", 4, 5.0)]).unwrap();
    let all = listing().await;
    assert_eq!(all.len(), 2);
    assert_eq!(all[1], ("B".into(), false, latest(&[("pm25", 5.0)])));
    let only_b = store
        .devices(&DeviceFilter {
            device_id: Some("B".into()),
            ..DeviceFilter::default()
        })
        .await
        .unwrap();
    assert_eq!(only_b.len(), 1);
    assert_eq!(only_b[0].latest.len(), 1);
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

#[tokio::test]
async fn rollups_agree_with_the_readings_and_ignore_redeliveries() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&config(dir.path()), &[]).unwrap();
    let mut w = store.writer().unwrap();
    let start: Timestamp = "2026-11-21T16:00:00Z".parse().unwrap();
    let mut batches = Vec::new();
    for i in 0..600i64 {
        let at = start + (i * 7_300).milliseconds();
        let device = ["A", "B", "C"][(i % 3) as usize];
        let value = ((i * 37) % 101) as f64 / 4.0;
        batches.push(env(vec![
            reading(device, "pm25", at, value),
            reading(device, "pm10", at, value * 2.0),
        ]));
    }
    for chunk in batches.chunks(97) {
        w.commit(chunk).unwrap();
    }
    // A redelivered batch is a duplicate and must not count twice.
    let outcomes = w.commit(&batches[..50]).unwrap();
    assert!(outcomes.iter().all(|o| matches!(o, Outcome::Duplicate)));
    let conn = store.connection_for_tests();
    for every_ms in [60_000, 300_000, 3_600_000, 86_400_000] {
        let q = AggregateQuery {
            metric: "pm25".into(),
            city: Some(City::ThaiNguyen),
            domain: Some(Domain::AirQuality),
            device_id: None,
            from: start - 1.hours(),
            to: start + 3.hours(),
            every_ms,
            group_by_device: false,
        };
        let fast = query::aggregates_from_rollups(&conn, &q).unwrap();
        let raw = query::aggregates_from_readings(&conn, &q).unwrap();
        assert_eq!(fast.len(), raw.len(), "every {every_ms}");
        assert!(!fast.is_empty());
        for (f, r) in fast.iter().zip(&raw) {
            assert_eq!(
                (f.bucket_start, f.count, f.min, f.max),
                (r.bucket_start, r.count, r.min, r.max)
            );
            assert!((f.sum - r.sum).abs() < 1e-9 && (f.mean - r.mean).abs() < 1e-9);
        }
    }
    let total: i64 = conn
        .query_row("SELECT SUM(count) FROM rollup_minute", [], |r| r.get(0))
        .unwrap();
    assert_eq!(total, 1200);

    // A database from before the rollups gets them built from its readings on open.
    conn.execute_batch("DELETE FROM rollup_minute;").unwrap();
    back_to_reading_rows(&conn, 2);
    drop((conn, w, store));
    let store = Store::open(&config(dir.path()), &[]).unwrap();
    let conn = store.connection_for_tests();
    let rebuilt: i64 = conn
        .query_row("SELECT SUM(count) FROM rollup_minute", [], |r| r.get(0))
        .unwrap();
    assert_eq!(rebuilt, 1200);
}

/// The current VN_AQI comes from the in-memory hourly means; they must match the readings,
/// including after reopening (rebuilt from the store) and ignoring non-measuring samples.
#[tokio::test]
async fn current_aqi_from_memory_matches_the_readings() {
    use crate::aqi::{self, HourlyMeans, Pollutant};
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&config(dir.path()), &[]).unwrap();
    let mut w = store.writer().unwrap();
    let now = Timestamp::now();
    let mut batch = Vec::new();
    for i in 0..13 * 6 {
        let at = now - 1.seconds() - (i * 10).minutes();
        let mut pm25 = reading("AQ-1", "pm25", at, 20.0 + (i % 7) as f64 * 9.0);
        let pm10 = reading("AQ-1", "pm10", at, 60.0 + (i % 5) as f64 * 11.0);
        let mut co = reading("AQ-1", "co", at, 3_000.0 + i as f64);
        if i % 9 == 0 {
            pm25.status = Status::Calibrating;
            co.status = Status::Fault;
        }
        batch.push(env(vec![pm25, pm10, co]));
    }
    w.commit(&batch).unwrap();
    let from_db = |store: Store| async move {
        let hour = now.as_millisecond().div_euclid(3_600_000) * 3_600_000;
        let metrics: Vec<&str> = Pollutant::ALL.iter().map(|p| p.metric()).collect();
        let mut means = HourlyMeans::new();
        for m in store
            .hourly_means("AQ-1", &metrics, ts(hour - 13 * 3_600_000), now)
            .await
            .unwrap()
        {
            means.insert(
                Pollutant::from_metric(&m.metric).unwrap(),
                m.hour_start_ms,
                m.mean,
            );
        }
        aqi::hourly(&means, hour).or_else(|| aqi::hourly(&means, hour - 3_600_000))
    };
    let expected = from_db(store.clone()).await;
    assert!(expected.is_some());
    let got = store.latest_hourly_aqi("AQ-1", now).await.unwrap();
    assert_eq!(
        serde_json::to_value(&got).unwrap(),
        serde_json::to_value(&expected).unwrap()
    );
    drop((w, store));
    let reopened = Store::open(&config(dir.path()), &[]).unwrap();
    let got = reopened.latest_hourly_aqi("AQ-1", now).await.unwrap();
    assert_eq!(
        serde_json::to_value(&got).unwrap(),
        serde_json::to_value(&expected).unwrap()
    );
}

/// The log is two tables behind a view (see the schema): every query of it must search each
/// table, by device, time or position, and never scan either or index it on the fly.
#[tokio::test]
async fn queries_of_the_log_seek_in_both_of_its_tables() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&config(dir.path()), &[]).unwrap();
    // Run every query of the log once (`log_query` records them), with rows in both tables.
    let mut w = store.writer().unwrap();
    w.commit(&[env(vec![reading("A", "pm25", t0(), 30.0)])])
        .unwrap();
    w.merge_every_rows(1);
    assert_eq!(w.merge_recent_if_due().unwrap(), 1);
    w.commit(&[env(vec![reading("A", "pm25", t0() + 1.minutes(), 31.0)])])
        .unwrap();
    let (from, to) = (t0() - 1.hour(), t0() + 1.hour());
    store.series("A", "pm25", from, to, 10).await.unwrap();
    store.hourly_means("A", &["pm25"], from, to).await.unwrap();
    let q = AggregateQuery {
        metric: "pm25".into(),
        city: None,
        domain: None,
        device_id: Some("A".into()),
        from,
        to,
        every_ms: 60_000,
        group_by_device: false,
    };
    assert_eq!(store.aggregates(&q).await.unwrap().len(), 2);
    assert_eq!(store.read_log(0, 10).await.unwrap().len(), 2);
    assert_eq!(store.readings_after(0).await.unwrap(), 2);
    assert!(store.received_after(0).await.unwrap().is_some());
    assert_eq!(store.stats().await.unwrap().max_log_id, 2);
    drop((w, store));
    let store = Store::open(&config(dir.path()), &[]).unwrap(); // replays the log
    drop(store);

    let conn = open_connection(&dir.path().join("t.db"), Synchronous::Normal, true).unwrap();
    let mut checked = 0;
    let mut check = |sql: &str| {
        let mut stmt = conn.prepare(&format!("EXPLAIN QUERY PLAN {sql}")).unwrap();
        let nulls = std::iter::repeat_n(rusqlite::types::Null, stmt.parameter_count());
        let plan: Vec<String> = stmt
            .query_map(rusqlite::params_from_iter(nulls), |r| r.get(3))
            .unwrap()
            .map(|r| r.unwrap())
            .collect();
        // A search of the log: by its table's name, index or alias (`o`).
        let searches = plan
            .iter()
            .filter(|l| l.starts_with("SEARCH o ") || l.starts_with("SEARCH observations"));
        assert!(
            searches.count() >= 2,
            "not a search of each table in\n{sql}\n{plan:#?}"
        );
        let scans = plan.iter().filter(|l| {
            ["SCAN o", "SCAN observations", "SCAN log_rows", "AUTOMATIC"]
                .iter()
                .any(|bad| l.starts_with(bad) || l.contains("AUTOMATIC"))
                || l.ends_with("log_rows")
        });
        assert_eq!(scans.count(), 0, "a scan of the log in\n{sql}\n{plan:#?}");
        checked += 1;
    };
    for sql in LOG_QUERIES.lock().unwrap().iter() {
        check(sql);
    }
    assert!(checked >= 8, "only {checked} log queries recorded");
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
