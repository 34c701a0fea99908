//! The read side: aggregates, hourly means, the device listing, rollups, VN_AQI and the log
//! queries.

use super::*;

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
        let fast = crate::store::query::aggregates_from_rollups(&conn, &q).unwrap();
        let raw = crate::store::query::aggregates_from_readings(&conn, &q).unwrap();
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
