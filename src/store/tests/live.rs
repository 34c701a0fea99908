//! Latest values kept in memory and written to their rows in rounds.

use super::*;

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
