//! Migrations of older databases, with their readings.

use super::*;

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
