//! Micro-benchmarks of the hot path (`cargo bench`): decode + normalise per IOC format, and
//! store commit throughput, in readings per second.

use divan::{Bencher, counter::ItemsCount};
use ioc_aggregator::{
    config::Config,
    devtools::loadgen,
    model::City,
    pipeline,
    store::{Content, Envelope, Store, StoreConfig, Synchronous},
};
use jiff::Timestamp;

const MESSAGES: usize = 1_000;
const READINGS: usize = 6;

/// The service's allocator (see `src/main.rs`), so the figures are the service's.
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

fn main() {
    divan::main();
}

fn payloads(city: City) -> (Config, Vec<(String, bytes::Bytes)>) {
    let config = Config::from_toml_str(ioc_aggregator::config::DEFAULT_TOML).unwrap();
    // Devices per city (BENCH_DEVICES, default 20).
    let per_city = std::env::var("BENCH_DEVICES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20);
    let devices: Vec<_> = loadgen::devices(per_city)
        .into_iter()
        .filter(|d| d.city == city)
        .collect();
    let now = Timestamp::now().as_millisecond();
    let messages = (0..MESSAGES)
        .map(|i| {
            let at = Timestamp::from_millisecond(now - 60_000 + i as i64).unwrap();
            let (topic, payload) =
                loadgen::message(&devices[i % devices.len()], at, i as u64, READINGS);
            (topic, bytes::Bytes::from(payload))
        })
        .collect();
    (config, messages)
}

/// Readings per second through the real decoder and normaliser of each city's feed.
#[divan::bench(args = [City::ThaiNguyen, City::SongCong, City::PhoYen])]
fn decode_and_normalise(bencher: Bencher, city: City) {
    let (config, messages) = payloads(city);
    let feed = config.feeds.iter().find(|f| f.city == city).unwrap();
    let (decoder, normaliser) = (feed.decoder(), config.normaliser(feed));
    let now = Timestamp::now();
    bencher
        .counter(ItemsCount::new(MESSAGES * READINGS))
        .bench_local(|| {
            for (topic, payload) in &messages {
                let readings = pipeline::process(
                    &decoder,
                    &normaliser,
                    &config.ingest,
                    topic,
                    payload,
                    now,
                    now,
                )
                .unwrap();
                divan::black_box(readings);
            }
        });
}

/// Readings per second committed to the embedded store in batches of 1,000 messages (6,000
/// readings), with synchronous = FULL as in the default configuration.
#[divan::bench(sample_count = 20, sample_size = 1)]
fn store_commit(bencher: Bencher) {
    let dir = tempfile::tempdir().unwrap();
    let config = StoreConfig {
        path: dir.path().join("bench.db"),
        synchronous: Synchronous::Full,
        ..StoreConfig::default()
    };
    let store = Store::open(&config, &[]).unwrap();
    let mut writer = store.writer().unwrap();
    // As in the service: checkpoints on their own thread, not inside commits.
    let stop = tokio_util::sync::CancellationToken::new();
    let _checkpointer = store
        .checkpointer(std::time::Duration::from_secs(1), stop.clone())
        .unwrap();
    let (cfg, messages) = payloads(City::ThaiNguyen);
    let feed = &cfg.feeds[0];
    let (decoder, normaliser) = (feed.decoder(), cfg.normaliser(feed));
    let now = Timestamp::now();
    let template: Vec<Envelope> = messages
        .iter()
        .map(|(topic, payload)| Envelope {
            feed: ioc_aggregator::model::FeedId::new("thai-nguyen"),
            topic: topic.clone(),
            received_at: now,
            content: Content::Readings(
                pipeline::process(&decoder, &normaliser, &cfg.ingest, topic, payload, now, now)
                    .unwrap()
                    .readings,
            ),
            partial: None,
        })
        .collect();
    let mut round = 0i64;
    bencher
        .counter(ItemsCount::new(MESSAGES * READINGS))
        .with_inputs(|| {
            // Fresh observation times each round, so every reading is new (no dedup shortcut),
            // moving forward as a device's readings do (from 30 days back, a minute a round).
            round += 1;
            template
                .iter()
                .cloned()
                .map(|mut e| {
                    if let Content::Readings(rs) = &mut e.content {
                        for r in rs {
                            r.observed_at = Timestamp::from_millisecond(
                                r.observed_at.as_millisecond() - 30 * 86_400_000 + round * 60_000,
                            )
                            .unwrap();
                        }
                    }
                    e
                })
                .collect::<Vec<_>>()
        })
        .bench_local_values(|batch| writer.commit(&batch).unwrap());
    stop.cancel();
}
