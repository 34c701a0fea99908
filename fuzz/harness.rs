//! What every fuzz target runs on one input, shared by the libFuzzer targets in
//! `fuzz/fuzz_targets/` (nightly, `cargo fuzz`) and by the stable regression test
//! `tests/fuzz_corpus.rs`, which replays every file of `fuzz/corpus/<target>/` and the kept
//! reproducers `fuzz/artifacts/<target>/keep-*` through the same function. A panic is the
//! finding; an `Err`, a `Rejection` or a 4xx answer is the code doing its job.
//!
//! Input layout (the seeds in `fuzz/corpus/` follow it):
//! - `decode_*`: byte 0 picks the topic (`TOPICS_*[b % len]`), the rest is the MQTT payload.
//! - `decode_json_mapping`: byte 0 picks the mapped feed and its topic ([`MAPPING_CASES`]), the
//!   rest is the payload.
//! - `api_params`: byte 0 holds flags (bit 0: no `from`, bit 1: no `to`, the rest picks the
//!   default and maximum spans of `time_range` from [`SPANS`]); the rest, as UTF-8 (lossy), is
//!   split at `\n` into `from`, `to`, `city`, `domain`, `every`, `time`.
//! - `api_router`: byte 0 picks the route ([`ROUTES`]); for a route with a `{…}` segment the
//!   rest is `segment \n query`, else the query. The segment is percent-encoded whole; the query
//!   only where a URI needs it, so `&`, `=`, `%` and `+` stay the fuzzer's.
//!
//! Included with `#[path]` by both crates, so it uses only what both have: `ioc_aggregator` and
//! its dependencies `bytes`, `jiff`, `axum`, `tokio`, `tokio-util`, plus `tempfile`.

#![allow(dead_code)]

use std::sync::{Arc, LazyLock};
use std::time::Duration;

use bytes::Bytes;
use ioc_aggregator::{
    config::Config,
    decode::Decoder,
    model::FeedId,
    normalise::Normaliser,
    pipeline::{self, IngestConfig},
};
use jiff::Timestamp;

/// Fixed clock, the one of `tests/decode_fixtures.rs`: received at 2026-11-22T01:06:00Z, so the
/// fixtures' timestamps are neither in the future nor past retention, and every run of an input
/// takes the same path.
pub const NOW: &str = "2026-11-22T01:06:00Z";

/// `FUZZ_HARNESS_VERBOSE=1` prints each input's outcome (to triage a corpus, not while fuzzing).
static VERBOSE: LazyLock<bool> =
    LazyLock::new(|| std::env::var_os("FUZZ_HARNESS_VERBOSE").is_some());

fn now() -> Timestamp {
    static NOW_TS: LazyLock<Timestamp> = LazyLock::new(|| NOW.parse().expect("NOW parses"));
    *NOW_TS
}

/// Topics of the Thái Nguyên feed (`tn/ioc/#`): those of the fixtures, an unknown device, and
/// edge cases of the topic levels the decoder reads (domain hint at level 2, device last).
pub const TOPICS_THAI_NGUYEN: &[&str] = &[
    "tn/ioc/air/TN-AQ-HUNGVUONG",
    "tn/ioc/air/TN-AQ-QUANTRIEU",
    "tn/ioc/water/TN-WL-GIABAY",
    "tn/ioc/water/TN-WQ-CAMGIA",
    "tn/ioc/traffic/TN-TF-HUNGVUONG",
    "tn/ioc/traffic/TN-TF-NEW-07",
    "tn/ioc/lighting/TN-LT-CAB-01",
    "tn/ioc/lighting/TN-LT-CAB-02",
    "tn/ioc/weather/TN-WX-NEW",
    "tn/ioc/air/",
    "tn/ioc",
    "tn/ioc//",
];

/// Topics of the Sông Công SenML feed (`sc/senml/#`); the last level is the device when the
/// records' names carry none.
pub const TOPICS_SENML: &[&str] = &[
    "sc/senml/sc-aq-01",
    "sc/senml/gw-01",
    "sc/senml/wl-cau-01",
    "sc/senml/sc-rain-01",
    "sc/senml/sc-lt-01",
    "sc/senml/sc-tf-01",
    "sc/senml/x",
    "sc/senml/",
    "sc/senml/Trạm-1",
];

/// Topics of the Phổ Yên NGSI-LD feed (`py/ngsi-ld/#`): one per entity type of the fixtures.
pub const TOPICS_NGSI_LD: &[&str] = &[
    "py/ngsi-ld/AirQualityObserved",
    "py/ngsi-ld/WaterObserved",
    "py/ngsi-ld/Streetlight",
    "py/ngsi-ld/WeatherObserved",
    "py/ngsi-ld/TrafficFlowObserved",
    "py/ngsi-ld/WaterQualityObserved",
    "py/ngsi-ld/ParkingSpot",
    "py/ngsi-ld/FloodMonitoring",
    "py/ngsi-ld/",
];

/// One feed's decoder, normaliser and ingest limits, built once per process.
pub struct Stage {
    pub decoder: Decoder,
    pub normaliser: Normaliser,
    pub limits: IngestConfig,
}

impl Stage {
    fn of(config: &Config, feed_name: &str) -> Stage {
        let feed = (config.feeds.iter())
            .find(|f| f.name == feed_name)
            .unwrap_or_else(|| panic!("harness: no feed {feed_name:?} in the config"));
        Stage {
            decoder: feed.decoder(),
            normaliser: config.normaliser(feed),
            limits: config.ingest.clone(),
        }
    }

    /// What the service does with one message of this feed (`pipeline::process`).
    pub fn run(&self, topic: &str, payload: &[u8]) {
        let payload = Bytes::copy_from_slice(payload);
        let now = now();
        let result = pipeline::process(
            &self.decoder,
            &self.normaliser,
            &self.limits,
            topic,
            &payload,
            now,
            now,
        );
        if *VERBOSE {
            match result {
                Ok(n) => eprintln!(
                    "{topic}: {} readings, {} parts rejected {:?}, {} ignored",
                    n.readings.len(),
                    n.rejected.len(),
                    n.rejected.iter().map(|r| r.reason).collect::<Vec<_>>(),
                    n.ignored.len()
                ),
                Err(r) => eprintln!("{topic}: rejected: {r}"),
            }
        }
    }
}

static DEFAULT_CONFIG: LazyLock<Config> = LazyLock::new(|| {
    Config::from_toml_str(ioc_aggregator::config::DEFAULT_TOML).expect("default config is valid")
});

static THAI_NGUYEN: LazyLock<Stage> = LazyLock::new(|| Stage::of(&DEFAULT_CONFIG, "thai-nguyen"));
static SENML: LazyLock<Stage> = LazyLock::new(|| Stage::of(&DEFAULT_CONFIG, "song-cong"));
static NGSI_LD: LazyLock<Stage> = LazyLock::new(|| Stage::of(&DEFAULT_CONFIG, "pho-yen"));

/// Split off byte 0 as the index into `choices`.
fn pick<'a, T>(choices: &'a [T], data: &'a [u8]) -> Option<(&'a T, &'a [u8])> {
    let (&first, rest) = data.split_first()?;
    Some((&choices[usize::from(first) % choices.len()], rest))
}

pub fn decode_thai_nguyen(data: &[u8]) {
    if let Some((topic, payload)) = pick(TOPICS_THAI_NGUYEN, data) {
        THAI_NGUYEN.run(topic, payload);
    }
}

pub fn decode_senml(data: &[u8]) {
    if let Some((topic, payload)) = pick(TOPICS_SENML, data) {
        SENML.run(topic, payload);
    }
}

pub fn decode_ngsi_ld(data: &[u8]) {
    if let Some((topic, payload)) = pick(TOPICS_NGSI_LD, data) {
        NGSI_LD.run(topic, payload);
    }
}

/// Feeds with `format = "json"` and a `[feeds.mapping]` as README "Onboarding a vendor without
/// code" documents them, appended to the default configuration (so the device catalogue applies):
/// records or a single object or a top-level array; device id by pointer or topic level; every
/// `timestamp_format` and none; status, position; vendor units that convert (F, mg/m3, ppm, cm,
/// mg/m3 for a gas) and unit-less metrics.
pub const MAPPING_TOML: &str = r#"
[[feeds]]
name = "fz-records-unix-ms"
city = "thai-nguyen"
format = "json"
broker = "mqtt://127.0.0.1:1883"
topics = ["vendor/x/+"]
[feeds.mapping]
records = "/items"
device_id = "/sensor/id"
timestamp = "/t"
timestamp_format = "unix_ms"
domain = "weather"
status = "/state"
latitude = "/pos/lat"
longitude = "/pos/lon"
metrics = [
  { pointer = "/rain_mm", metric = "rainfall", unit = "mm" },
  { pointer = "/temp_f", metric = "temperature", unit = "F", optional = true },
  { pointer = "/rh", metric = "humidity", unit = "%", optional = true },
  { pointer = "/wind/speed", metric = "wind_speed", unit = "m/s", optional = true },
]

[[feeds]]
name = "fz-topic-local"
city = "song-cong"
format = "json"
broker = "mqtt://127.0.0.1:1883"
topics = ["vendor/y/+/data"]
utc_offset_hours = 7
[feeds.mapping]
device_id_topic_level = 2
timestamp = "/time"
timestamp_format = "local"
domain = "air_quality"
metrics = [
  { pointer = "/pm/2.5", metric = "pm25", unit = "ug/m3" },
  { pointer = "/pm/10", metric = "PM10", unit = "mg/m3" },
  { pointer = "/co", metric = "co", unit = "ppm", optional = true },
  { pointer = "/no2", metric = "no2", unit = "mg/m3", optional = true },
]

[[feeds]]
name = "fz-rfc3339"
city = "pho-yen"
format = "json"
broker = "mqtt://127.0.0.1:1883"
topics = ["vendor/z/#"]
[feeds.mapping]
device_id = "/station"
timestamp = "/observed"
timestamp_format = "rfc3339"
domain = "water"
status = "/status"
metrics = [
  { pointer = "/level_cm", metric = "water_level", unit = "cm" },
  { pointer = "/flow", metric = "flow", unit = "m3/s", optional = true },
  { pointer = "/a~1b", metric = "turbidity", unit = "NTU", optional = true },
]

[[feeds]]
name = "fz-unix-received"
city = "thai-nguyen"
format = "json"
broker = "mqtt://127.0.0.1:1883"
topics = ["vendor/w/+"]
[feeds.mapping]
device_id = "/id"
timestamp = "/ts"
timestamp_format = "unix"
domain = "traffic"
metrics = [
  { pointer = "/count", metric = "vehicle_count" },
  { pointer = "/speed", metric = "average_speed", unit = "km/h", optional = true },
]

[[feeds]]
name = "fz-no-timestamp"
city = "song-cong"
format = "json"
broker = "mqtt://127.0.0.1:1883"
topics = ["vendor/v/+"]
[feeds.mapping]
records = ""
device_id = "/dev"
domain = "lighting"
metrics = [
  { pointer = "/dim", metric = "dimming_level", unit = "%" },
]
"#;

/// `(feed, topic)` chosen by byte 0 of a `decode_json_mapping` input.
pub const MAPPING_CASES: &[(&str, &str)] = &[
    ("fz-records-unix-ms", "vendor/x/a"),
    ("fz-topic-local", "vendor/y/SC-VY-3/data"),
    ("fz-topic-local", "vendor/y//data"),
    ("fz-rfc3339", "vendor/z/PY-WL-01"),
    ("fz-unix-received", "vendor/w/TN-TF-HUNGVUONG"),
    ("fz-no-timestamp", "vendor/v/SC-LT-01"),
];

static MAPPING: LazyLock<Vec<Stage>> = LazyLock::new(|| {
    let text = format!("{}\n{MAPPING_TOML}", ioc_aggregator::config::DEFAULT_TOML);
    let config = Config::from_toml_str(&text)
        .unwrap_or_else(|e| panic!("harness: the mapping config is invalid: {e}"));
    (MAPPING_CASES.iter())
        .map(|(feed, _)| Stage::of(&config, feed))
        .collect()
});

pub fn decode_json_mapping(data: &[u8]) {
    let Some((&first, payload)) = data.split_first() else {
        return;
    };
    let i = usize::from(first) % MAPPING_CASES.len();
    MAPPING[i].run(MAPPING_CASES[i].1, payload);
}

/// The spans `time_range` is called with by the handlers (devices' series, aggregates), and
/// odd ones.
const SPANS: &[(Duration, Duration)] = &[
    (
        Duration::from_secs(86_400),
        Duration::from_secs(366 * 86_400),
    ),
    (Duration::from_secs(3_600), Duration::from_secs(86_400)),
    (Duration::ZERO, Duration::from_secs(60)),
    (Duration::MAX, Duration::MAX),
];

/// The public parsers of `src/api/params.rs` on fuzzed strings.
pub fn api_params(data: &[u8]) {
    use ioc_aggregator::api::params;
    let Some((&flags, rest)) = data.split_first() else {
        return;
    };
    let text = String::from_utf8_lossy(rest);
    let mut fields = text.split('\n');
    let mut next = || fields.next().unwrap_or("");
    let (from, to, city, domain, every, time) = (next(), next(), next(), next(), next(), next());
    let from = (flags & 1 == 0).then_some(from);
    let to = (flags & 2 == 0).then_some(to);
    let (default_span, max_span) = SPANS[usize::from(flags >> 2) % SPANS.len()];
    let _ = params::time_range(from, to, default_span, max_span);
    let _ = params::parse_time("from", time);
    let _ = params::parse_city(city);
    let _ = params::parse_domain(domain);
    let _ = params::parse_every(every);
}

/// Routes of `api::router` fuzzed with `GET`; `{}` is the fuzzed path segment.
pub const ROUTES: &[&str] = &[
    "/api/v1/devices",
    "/api/v1/devices/{}",
    "/api/v1/devices/{}/series",
    "/api/v1/aggregates",
    "/api/v1/aqi",
    "/api/v1/rejects",
    "/api/v1/alerts",
    "/api/v1/alerts/{}",
    "/api/v1/cities/{}",
    "/api/v1/feeds",
    "/api/v1/webhooks/dead-letters",
    "/api/v1/overview",
    "/api/v1/{}",
];

/// Bytes kept as they are in a query: the URI's query characters, `%` included (an invalid
/// escape is the decoder's problem, not the URI's).
fn query_byte_ok(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"-._~!$&'()*+,;=:@/?%".contains(&b)
}

fn percent_encode(out: &mut String, bytes: &[u8], keep: impl Fn(u8) -> bool) {
    for &b in bytes {
        if keep(b) {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
}

/// The request path and query of an `api_router` input; `None` for an empty input.
pub fn api_router_uri(data: &[u8]) -> Option<String> {
    let (route, rest) = pick(ROUTES, data)?;
    let (segment, query) = if route.contains("{}") {
        match rest.iter().position(|&b| b == b'\n') {
            Some(i) => (&rest[..i], &rest[i + 1..]),
            None => (rest, &[][..]),
        }
    } else {
        (&[][..], rest)
    };
    let mut uri = String::new();
    let (before, after) = route.split_once("{}").unwrap_or((route, ""));
    uri.push_str(before);
    if route.contains("{}") {
        percent_encode(&mut uri, segment, |b| {
            b.is_ascii_alphanumeric() || b"-._~".contains(&b)
        });
    }
    uri.push_str(after);
    uri.push('?');
    percent_encode(&mut uri, query, query_byte_ok);
    Some(uri)
}

/// An API over a store in a temporary directory holding a day of readings of the catalogue's
/// devices and a few quarantined messages, and a runtime to call it on.
pub struct Api {
    pub runtime: tokio::runtime::Runtime,
    pub router: axum::Router,
    _dir: tempfile::TempDir,
}

pub static API: LazyLock<Api> = LazyLock::new(|| {
    use ioc_aggregator::{
        api::{self, ApiState},
        influx::ForwardStats,
        stats::FeedStats,
        store::{Content, Envelope, Store},
    };
    let dir = tempfile::tempdir().expect("temp dir");
    let mut config = Config::from_toml_str(ioc_aggregator::config::DEFAULT_TOML).expect("config");
    config.store.path = dir.path().join("fuzz.db");
    config.store.synchronous = ioc_aggregator::store::Synchronous::Normal;
    // The fuzzer sends thousands of requests a second from one (absent) address: without this,
    // all but the first burst would be 429s.
    config.api.rate_limit_per_second = u32::MAX;
    config.api.rate_limit_burst = u32::MAX;
    let store = Store::open(&config.store, &config.devices).expect("store opens");

    // A day of readings up to now, every 15 minutes, from a Thái Nguyên payload per device
    // kind, plus messages that are rejected, so series, aggregates, AQI and rejects have rows.
    let mut writer = store.writer().expect("writer");
    let tn = config
        .feeds
        .iter()
        .find(|f| f.name == "thai-nguyen")
        .expect("feed");
    let (decoder, normaliser) = (tn.decoder(), config.normaliser(tn));
    let local = jiff::tz::TimeZone::fixed(jiff::tz::offset(7));
    let real_now = Timestamp::now();
    let mut batch = Vec::new();
    for step in 0..96i64 {
        let at = real_now - jiff::SignedDuration::from_mins(15 * step);
        let ts = at
            .to_zoned(local.clone())
            .strftime("%Y-%m-%d %H:%M:%S")
            .to_string();
        let v = (step % 17) as f64;
        let messages = [
            (
                "tn/ioc/air/TN-AQ-HUNGVUONG",
                format!(
                    r#"{{"station":"TN-AQ-HUNGVUONG","ts":"{ts}","status":"measuring","d":[{{"tag":"PM25","value":{},"unit":"ug/m3"}},{{"tag":"PM10","value":{},"unit":"ug/m3"}},{{"tag":"NO2","value":{},"unit":"ug/m3"}},{{"tag":"CO","value":{},"unit":"ug/m3"}},{{"tag":"O3","value":{},"unit":"ug/m3"}},{{"tag":"TEMP","value":24.5,"unit":"C"}}]}}"#,
                    20.0 + 3.0 * v,
                    40.0 + 2.0 * v,
                    30.0 + v,
                    900.0 + 10.0 * v,
                    60.0 + v
                ),
            ),
            (
                "tn/ioc/water/TN-WL-GIABAY",
                format!(
                    r#"{{"station":"TN-WL-GIABAY","ts":"{ts}","status":"measuring","d":[{{"tag":"LEVEL","value":{},"unit":"m"}}]}}"#,
                    24.0 + v / 5.0
                ),
            ),
            (
                "tn/ioc/air/TN-AQ-QUANTRIEU",
                format!(r#"{{"station":"TN-AQ-QUANTRIEU","ts":"{ts}","d":[]"#),
            ),
        ];
        for (topic, payload) in messages {
            let payload = Bytes::from(payload);
            let content = match pipeline::process(
                &decoder,
                &normaliser,
                &config.ingest,
                topic,
                &payload,
                at,
                real_now,
            ) {
                Ok(n) => Content::Readings(n.readings),
                Err(rejection) => Content::Rejected {
                    rejection,
                    payload_size: payload.len(),
                    payload,
                    dup: false,
                },
            };
            batch.push(Envelope {
                feed: FeedId::new(&tn.name),
                topic: topic.to_owned(),
                received_at: at,
                content,
                partial: None,
            });
        }
    }
    writer.commit(&batch).expect("seed batch commits");
    drop(writer);

    let feeds = (config.feeds.iter())
        .map(|f| FeedStats::new(FeedId::new(&f.name)))
        .collect();
    // The parts of the configuration the API reads (as src/app.rs builds them).
    let served = api::ServiceConfig {
        api: config.api.clone(),
        ingest: config.ingest.clone(),
        feeds: config.feeds.clone(),
    };
    let state = ApiState::new(
        served,
        store,
        feeds,
        Arc::new(ForwardStats::default()),
        Default::default(),
        api::metrics_handle(),
        tokio_util::sync::CancellationToken::new(),
    );
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    Api {
        router: api::router(state),
        runtime,
        _dir: dir,
    }
});

/// Answer one request with `svc` (any `tower::Service`, named through axum's `ServiceExt`, so
/// the crate needs no direct `tower` dependency).
async fn call<S>(mut svc: S, request: axum::extract::Request) -> axum::response::Response
where
    S: axum::ServiceExt<
            axum::extract::Request,
            Response = axum::response::Response,
            Error = std::convert::Infallible,
        >,
{
    if let Err(never) = std::future::poll_fn(|cx| svc.poll_ready(cx)).await {
        match never {}
    }
    match svc.call(request).await {
        Ok(response) => response,
        Err(never) => match never {},
    }
}

/// `GET` one fuzzed route and query through the whole router; a 5xx (or a panic) is a finding.
pub fn api_router(data: &[u8]) {
    let Some(uri) = api_router_uri(data) else {
        return;
    };
    let Ok(request) = axum::http::Request::get(uri.as_str()).body(axum::body::Body::empty()) else {
        return;
    };
    let api = &*API;
    let started = std::time::Instant::now();
    let response = api.runtime.block_on(call(api.router.clone(), request));
    let status = response.status();
    if *VERBOSE {
        eprintln!("GET {uri}: {status} in {:?}", started.elapsed());
    }
    assert!(
        !status.is_server_error(),
        "GET {uri} answered {status}: {:?}",
        api.runtime
            .block_on(axum::body::to_bytes(response.into_body(), 1 << 16))
    );
}

/// What a target runs on one input.
pub type Target = fn(&[u8]);

/// Every target by name, for the regression test.
pub const TARGETS: &[(&str, Target)] = &[
    ("decode_thai_nguyen", decode_thai_nguyen),
    ("decode_senml", decode_senml),
    ("decode_ngsi_ld", decode_ngsi_ld),
    ("decode_json_mapping", decode_json_mapping),
    ("api_params", api_params),
    ("api_router", api_router),
];
