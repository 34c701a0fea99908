//! Histogram samples must not pile up in memory when nobody scrapes `/metrics`: the recorder
//! keeps each sample until an upkeep or a render folds it into the buckets, and a service
//! whose metrics are not scraped would otherwise grow by every latency it records.

use std::time::{Duration, Instant};

use tikv_jemalloc_ctl::{epoch, stats};

#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

fn allocated() -> usize {
    epoch::advance().expect("jemalloc epoch");
    stats::allocated::read().expect("jemalloc stats")
}

#[test]
fn histogram_samples_are_folded_into_buckets_without_scrapes() {
    let _handle = ioc_aggregator::api::metrics_handle();
    let histogram = metrics::histogram!("ioc_test_upkeep_seconds");
    let before = allocated();
    for i in 0..2_000_000 {
        histogram.record(f64::from(i % 1_000) / 1_000.0);
    }
    let held = allocated().saturating_sub(before);
    // 2 M pending samples of 8 bytes: the test measures what it means to.
    assert!(
        held > 8_000_000,
        "2 M pending samples hold only {held} bytes"
    );
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        // Recording pins the epoch, which lets the folded blocks' deferred frees run.
        histogram.record(0.1);
        let now = allocated().saturating_sub(before);
        if now < held / 4 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "histogram samples still held after 30 s without a scrape: {now} bytes (were {held})"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}
