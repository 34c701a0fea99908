//! The fuzz corpora as regression tests on stable Rust: every file of `fuzz/corpus/<target>/`
//! and every `fuzz/artifacts/<target>/keep-*` (crash reproducers kept as regressions) goes
//! through the same function its libFuzzer target runs (`fuzz/harness.rs`), and none may panic.
//! So an input the fuzzer once found interesting, or one that once crashed, stays covered by
//! `cargo test` without nightly or cargo-fuzz. See fuzz/README.md.
//!
//! `cargo test --test fuzz_corpus -- --ignored write_seed_corpora` (re)writes the seeds,
//! `fuzz/corpus/<target>/seed-*`, from `tests/fixtures/decode/` and the API tests' requests;
//! `fuzz/seed.sh` does that and then minimises the corpora.

#[path = "../fuzz/harness.rs"]
mod harness;

use std::collections::BTreeSet;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::{Path, PathBuf};

fn fuzz_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz")
}

/// The regular files of `dir`, sorted; none when it does not exist.
fn files(dir: &Path) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut files: Vec<PathBuf> = entries
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.is_file())
        .collect();
    files.sort();
    files
}

fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    (payload.downcast_ref::<String>().cloned())
        .or_else(|| payload.downcast_ref::<&str>().map(|s| (*s).to_owned()))
        .unwrap_or_else(|| "<non-string panic>".into())
}

#[test]
fn every_fuzz_corpus_and_kept_reproducer_runs_without_panic() {
    let fuzz = fuzz_dir();
    let mut failures = Vec::new();
    let mut counts = Vec::new();
    for &(target, run) in harness::TARGETS {
        let corpus = files(&fuzz.join("corpus").join(target));
        assert!(
            !corpus.is_empty(),
            "fuzz/corpus/{target}/ is empty or missing: the corpora are kept in the repository"
        );
        // Reproducers kept as regressions are named `keep-*` (fresh `crash-*` files are not
        // committed: see .gitignore).
        let kept: Vec<PathBuf> = files(&fuzz.join("artifacts").join(target))
            .into_iter()
            .filter(|p| {
                p.file_name()
                    .is_some_and(|n| n.to_string_lossy().starts_with("keep-"))
            })
            .collect();
        counts.push(format!("{target}: {} + {}", corpus.len(), kept.len()));
        for path in corpus.iter().chain(&kept) {
            let data = std::fs::read(path).expect("readable corpus file");
            if let Err(payload) = catch_unwind(AssertUnwindSafe(|| run(&data))) {
                failures.push(format!(
                    "{}: {}",
                    path.strip_prefix(&fuzz).unwrap_or(path).display(),
                    panic_message(&*payload)
                ));
            }
        }
    }
    eprintln!(
        "fuzz corpus files replayed (corpus + kept artifacts): {}",
        counts.join(", ")
    );
    assert!(
        failures.is_empty(),
        "{} fuzz input(s) panicked (reproduce with `cargo +nightly fuzz run TARGET FILE` in fuzz/):\n{}",
        failures.len(),
        failures.join("\n")
    );
}

/// Crashes found and reported but not fixed yet: `fuzz/artifacts/<target>/open-*`. Ignored, as it
/// fails until they are fixed; run it with `--ignored` after a fix, then rename the files to
/// `keep-*` so the test above guards them.
#[test]
#[ignore = "known open crashes (fuzz/artifacts/*/open-*); fails until they are fixed"]
fn open_reproducers_no_longer_crash() {
    let fuzz = fuzz_dir();
    let mut failures = Vec::new();
    for &(target, run) in harness::TARGETS {
        for path in files(&fuzz.join("artifacts").join(target)) {
            if !path
                .file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with("open-"))
            {
                continue;
            }
            let data = std::fs::read(&path).expect("readable reproducer");
            if let Err(payload) = catch_unwind(AssertUnwindSafe(|| run(&data))) {
                failures.push(format!("{}: {}", path.display(), panic_message(&*payload)));
            }
        }
    }
    assert!(
        failures.is_empty(),
        "still crashing:\n{}",
        failures.join("\n")
    );
}

/// Requests of the API tests (tests/it/api.rs), the seeds of `api_router`.
const API_REQUESTS: &[&str] = &[
    "/api/v1/aggregates",
    "/api/v1/aggregates?metric=banana",
    "/api/v1/aggregates?metric=pm25&city=thai-nguyen",
    "/api/v1/aggregates?metric=pm25&device=TN-AQ-HUNGVUONG&every=30m&fn=max,count",
    "/api/v1/aggregates?metric=pm25&every=7m",
    "/api/v1/aggregates?metric=pm25&fn=median",
    "/api/v1/aggregates?metric=pm25&from=2026-11-22&to=2026-11-21",
    "/api/v1/aggregates?metric=pm25&from=yesterday",
    "/api/v1/aggregates?metric=pm25&group_by=device&fn=mean",
    "/api/v1/aggregates?metric=water_level&domain=water&every=1d&fn=min,max,mean,count&from=2026-11-01T00:00:00%2B07:00",
    "/api/v1/alerts",
    "/api/v1/alerts/999999",
    "/api/v1/alerts/1",
    "/api/v1/alerts?state=active",
    "/api/v1/alerts?state=all&city=thai-nguyen&severity=critical&limit=5",
    "/api/v1/alerts?state=resolved",
    "/api/v1/aqi?date=22/11/2026",
    "/api/v1/aqi?date=2026-11-21",
    "/api/v1/aqi?station=NO-SUCH-STATION",
    "/api/v1/aqi?station=TN-AQ-HUNGVUONG&date=2026-11-21",
    "/api/v1/aqi?station=TN-AQ-HUNGVUONG",
    "/api/v1/cities/ha-noi",
    "/api/v1/cities/song-cong",
    "/api/v1/cities/thai-nguyen",
    "/api/v1/devices",
    "/api/v1/devices/NO-SUCH-DEVICE",
    "/api/v1/devices/NO-SUCH-DEVICE/series?metric=pm25",
    "/api/v1/devices/PY-AQ-01",
    "/api/v1/devices/TN-AQ-HUNGVUONG",
    "/api/v1/devices/TN-AQ-HUNGVUONG/series",
    "/api/v1/devices/TN-AQ-HUNGVUONG/series?metric=pm25",
    "/api/v1/devices/TN-AQ-HUNGVUONG/series?metric=pm25&from=2026-11-21T08:00&to=2026-11-22&limit=10",
    "/api/v1/devices/sc-aq-01/series?metric=pm25&from=2026-11-21T08:00:00%2B07:00",
    "/api/v1/devices/wl-cau-01/series?metric=rainfall&from=2026-11-21",
    "/api/v1/devices/TN-WL-GIABAY/series?metric=water_level",
    "/api/v1/devices?city=ha-noi",
    "/api/v1/devices?domain=air",
    "/api/v1/devices?status=sleepy",
    "/api/v1/devices?city=thai-nguyen&domain=air_quality&status=online",
    "/api/v1/feeds",
    "/api/v1/nothing-here",
    "/api/v1/overview",
    "/api/v1/rejects",
    "/api/v1/rejects?before_id=abc",
    "/api/v1/rejects?feed=song-cong",
    "/api/v1/rejects?feed=thai-nguyen",
    "/api/v1/rejects?feed=thai-nguyen&limit=5",
    "/api/v1/rejects?feed=thai-nguyen&reason=malformed_json",
    "/api/v1/rejects?limit=0",
    "/api/v1/rejects?reason=bad_vibes",
    "/api/v1/rejects?reason=influx_rejected",
    "/api/v1/rejects?from=2026-11-21&to=2026-11-23&before_id=100",
    "/api/v1/webhooks/dead-letters",
];

/// `from`, `to`, `city`, `domain`, `every`, `time` of the API tests and the parsers' doc
/// comments, the seeds of `api_params` (byte 0, the flags, is 0: `from` and `to` given).
const API_PARAMS: &[[&str; 6]] = &[
    [
        "2026-11-22T08:00:00+07:00",
        "2026-11-22T09:00:00Z",
        "thai-nguyen",
        "air_quality",
        "15m",
        "2026-11-22",
    ],
    [
        "2026-11-22",
        "2026-11-21",
        "song-cong",
        "water",
        "7m",
        "2026-11-22T08:00",
    ],
    ["yesterday", "", "pho-yen", "weather", "1d", "22/11/2026"],
    [
        "2026-11-21T08:00",
        "2026-11-22T08:00",
        "ha-noi",
        "air",
        "30s",
        "2026-11-21T17:00:00Z",
    ],
    [
        "2025-11-22",
        "2026-11-23",
        "Thai-Nguyen",
        "traffic",
        "2d",
        "soon",
    ],
    ["", "", "", "lighting", "1h 30m", ""],
];

/// Hand-written edges: extreme numbers and times in every place a decoder reads one.
const EDGE_SEEDS: &[(&str, u8, &str)] = &[
    (
        "decode_thai_nguyen",
        0,
        r#"{"station":"TN-AQ-HUNGVUONG","ts":9223372036854775807,"d":[{"tag":"PM25","value":1,"unit":"ug/m3"}]}"#,
    ),
    (
        "decode_thai_nguyen",
        0,
        r#"{"station":"TN-AQ-HUNGVUONG","ts":1e300,"d":[{"tag":"PM25","value":1e308,"unit":"mg/m3"}]}"#,
    ),
    (
        "decode_thai_nguyen",
        0,
        r#"{"station":"TN-AQ-HUNGVUONG","ts":"-009999-01-01 00:00:00","d":[{"tag":"PM25","value":1,"unit":"ug/m3"}]}"#,
    ),
    (
        "decode_senml",
        0,
        r#"[{"bn":"urn:dev:sc:x:","bt":1e300,"n":"pm25","u":"ug/m3","v":1,"t":-1e300}]"#,
    ),
    (
        "decode_senml",
        0,
        r#"[{"bn":"urn:dev:sc:x:","bt":9223372036854775807,"n":"pm25","u":"ug/m3","v":1,"t":9223372036854775807}]"#,
    ),
    (
        "decode_senml",
        0,
        r#"[{"bn":"urn:dev:sc:x:","n":"pm25","u":"ug/m3","bv":1e308,"v":1e308,"s":1e308,"ut":1e300}]"#,
    ),
    (
        "decode_ngsi_ld",
        0,
        r#"{"id":"urn:ngsi-ld:AirQualityObserved:A","type":"AirQualityObserved","pm25":{"type":"Property","value":1,"observedAt":"-009999-01-01T00:00:00+14:00"}}"#,
    ),
    (
        "decode_ngsi_ld",
        0,
        r#"{"id":"urn:ngsi-ld:AirQualityObserved:A","type":"AirQualityObserved","dateObserved":"2026-11-22T01:00:00Z","location":{"type":"GeoProperty","value":{"type":"Point","coordinates":[1e400,-1e400]}},"pm25":1}"#,
    ),
    (
        "decode_json_mapping",
        0,
        r#"{"items":[{"sensor":{"id":"VX-1"},"t":9223372036854775807,"rain_mm":1}]}"#,
    ),
    (
        "decode_json_mapping",
        4,
        r#"{"id":"TN-TF-HUNGVUONG","ts":-9223372036854775808,"count":1.5e300}"#,
    ),
    (
        "decode_json_mapping",
        1,
        r#"{"time":"9999-12-31 23:59:59","pm":{"2.5":1,"10":1}}"#,
    ),
    (
        "api_params",
        0,
        "9999-12-31T23:59:59Z\n-009999-01-02T01:59:59Z\n\n\n86400s\n",
    ),
    ("api_router", 4, "station=TN-AQ-HUNGVUONG&date=9999-12-31"),
    (
        "api_router",
        3,
        "metric=pm25&from=9999-12-31T23:00:00Z&to=9999-12-31T23:59:59.999999999Z&every=1m",
    ),
];

/// Topic byte of a seed: the index of `topic` in `topics`.
fn topic_byte(topics: &[&str], topic: &str) -> Option<u8> {
    topics.iter().position(|t| *t == topic).map(|i| i as u8)
}

/// `route` input of `api_router` for a request of [`API_REQUESTS`].
fn router_input(request: &str) -> Vec<u8> {
    let (path, query) = request.split_once('?').unwrap_or((request, ""));
    for (i, route) in harness::ROUTES.iter().enumerate() {
        let mut input = vec![i as u8];
        match route.split_once("{}") {
            None if *route == path => {}
            Some((before, after)) => {
                let Some(segment) = (path.strip_prefix(before)).and_then(|p| p.strip_suffix(after))
                else {
                    continue;
                };
                if segment.is_empty() || segment.contains('/') {
                    continue;
                }
                input.extend_from_slice(segment.as_bytes());
                input.push(b'\n');
            }
            None => continue,
        }
        input.extend_from_slice(query.as_bytes());
        return input;
    }
    panic!("no route of harness::ROUTES for {request}");
}

/// (Re)write `fuzz/corpus/<target>/seed-*` from the decoder fixtures (by the feed of each
/// `case.toml`; `config.toml` mapping cases go to `decode_json_mapping`) and the API tests.
#[test]
#[ignore = "writes the fuzz seed corpora; run by fuzz/seed.sh"]
fn write_seed_corpora() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let corpus = fuzz_dir().join("corpus");
    let mut written = std::collections::BTreeMap::<&str, usize>::new();
    let mut write = |target: &'static str, name: &str, data: &[u8]| {
        let dir = corpus.join(target);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join(format!("seed-{name}")), data).unwrap();
        *written.entry(target).or_default() += 1;
    };
    let mut tokens = std::collections::BTreeMap::<&str, BTreeSet<String>>::new();
    let mut cases: Vec<PathBuf> = std::fs::read_dir(root.join("tests/fixtures/decode"))
        .unwrap()
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.is_dir())
        .collect();
    cases.sort();
    for dir in cases {
        let name = dir.file_name().unwrap().to_string_lossy().into_owned();
        let case: toml::Table =
            toml::from_str(&std::fs::read_to_string(dir.join("case.toml")).unwrap()).unwrap();
        let (feed, topic) = (
            case["feed"].as_str().unwrap(),
            case["topic"].as_str().unwrap(),
        );
        let payload = std::fs::read(dir.join("payload.json"))
            .or_else(|_| std::fs::read(dir.join("payload.bin")))
            .unwrap();
        let (target, byte) = match feed {
            "thai-nguyen" => (
                "decode_thai_nguyen",
                topic_byte(harness::TOPICS_THAI_NGUYEN, topic),
            ),
            "song-cong" => ("decode_senml", topic_byte(harness::TOPICS_SENML, topic)),
            "pho-yen" => ("decode_ngsi_ld", topic_byte(harness::TOPICS_NGSI_LD, topic)),
            // The mapping fixtures' feeds are modelled by the harness's first two mapped feeds.
            "vendor-x" => ("decode_json_mapping", Some(0)),
            "vendor-y" => ("decode_json_mapping", Some(1)),
            other => panic!("{name}: feed {other:?} has no fuzz target"),
        };
        let byte = byte.unwrap_or_else(|| panic!("{name}: topic {topic:?} not in the harness"));
        if let Ok(json) = serde_json::from_slice::<serde_json::Value>(&payload) {
            json_tokens(&json, tokens.entry(target).or_default());
        }
        let mut data = vec![byte];
        data.extend_from_slice(&payload);
        write(target, &name, &data);
    }
    // One record per mapped feed of the harness (fz-rfc3339, fz-unix-received, fz-no-timestamp).
    let mapped: [(u8, &str); 4] = [
        (
            3,
            r#"{"station":"PY-WL-01","observed":"2026-11-22T01:05:00Z","status":"measuring","level_cm":2134,"flow":12.5,"a/b":3.2}"#,
        ),
        (
            4,
            r#"{"id":"TN-TF-HUNGVUONG","ts":1795309500,"count":42,"speed":31.5}"#,
        ),
        (
            4,
            r#"[{"id":"TN-TF-HUNGVUONG","ts":1795309500.5,"count":4},{"id":"X","ts":"1795309500","count":"7"}]"#,
        ),
        (
            5,
            r#"[{"dev":"SC-LT-01","dim":75},{"dev":"SC-LT-02","dim":"x"}]"#,
        ),
    ];
    for (i, (byte, payload)) in mapped.iter().enumerate() {
        let mut data = vec![*byte];
        data.extend_from_slice(payload.as_bytes());
        write("decode_json_mapping", &format!("mapped-{i}"), &data);
    }
    for (i, (target, byte, payload)) in EDGE_SEEDS.iter().enumerate() {
        let mut data = vec![*byte];
        data.extend_from_slice(payload.as_bytes());
        write(target, &format!("edge-{i:02}"), &data);
    }
    for (i, fields) in API_PARAMS.iter().enumerate() {
        let mut data = vec![0u8];
        data.extend_from_slice(fields.join("\n").as_bytes());
        write("api_params", &format!("api-{i}"), &data);
    }
    for (i, request) in API_REQUESTS.iter().enumerate() {
        write("api_router", &format!("api-{i:02}"), &router_input(request));
    }
    for (target, extra) in DICT_EXTRA {
        tokens
            .entry(target)
            .or_default()
            .extend(extra.iter().map(|t| (*t).to_owned()));
    }
    let dicts = fuzz_dir().join("dicts");
    std::fs::create_dir_all(&dicts).unwrap();
    for (target, set) in &tokens {
        let mut text = format!(
            "# libFuzzer dictionary of {target}, written by `fuzz/seed.sh` (tests/fuzz_corpus.rs)\n"
        );
        for (i, token) in set.iter().enumerate() {
            text.push_str(&format!("t{i}=\"{}\"\n", dict_escape(token)));
        }
        std::fs::write(dicts.join(format!("{target}.dict")), text).unwrap();
    }
    eprintln!("seeds written: {written:?}");
}

/// Tokens every decoder dictionary gets, and those of the API targets.
#[rustfmt::skip]
const JSON_SYNTAX: &[&str] = &[
    "{", "}", "[", "]", ":", ",", "\"", "true", "false", "null", "-0", "1e308", "1e-308", "-1e999",
    "18446744073709551616", "9007199254740993", "\\u0000", "\\ud800", "\\u00e9", "  ", "NaN",
];
#[rustfmt::skip]
const DICT_EXTRA: &[(&str, &[&str])] = &[
    ("decode_thai_nguyen", JSON_SYNTAX),
    ("decode_senml", JSON_SYNTAX),
    ("decode_ngsi_ld", JSON_SYNTAX),
    (
        "decode_json_mapping",
        &[
            "{", "}", "[", "]", ":", ",", "\"", "true", "false", "null", "1e308", "-1e999",
            "\"items\"", "\"sensor\"", "\"id\"", "\"t\"", "\"state\"", "\"pos\"", "\"lat\"",
            "\"lon\"", "\"rain_mm\"", "\"temp_f\"", "\"rh\"", "\"wind\"", "\"speed\"",
            "\"time\"", "\"pm\"", "\"2.5\"", "\"10\"", "\"co\"", "\"no2\"", "\"station\"",
            "\"observed\"", "\"status\"", "\"level_cm\"", "\"flow\"", "\"a/b\"", "\"ts\"",
            "\"count\"", "\"dev\"", "\"dim\"", "\"measuring\"", "\"calibrating\"", "\"fault\"",
            "2026-11-22T01:05:00Z", "2026-11-22 08:05:00", "2026-11-22T08:05:00+07:00",
            "1795309500", "1795309500000",
        ],
    ),
    (
        "api_params",
        &[
            "\n", "thai-nguyen", "song-cong", "pho-yen", "air_quality", "water", "weather",
            "traffic", "lighting", "energy", "1m", "5m", "15m", "1h", "1d", "86400s", "ms", "ns",
            "us", "2026-11-22", "T08:00", ":00", "+07:00", "Z", "-009999-01-01", "9999-12-31",
            "T23:59:59", ".999999999", "[Asia/Ho_Chi_Minh]",
        ],
    ),
    (
        "api_router",
        &[
            "\n", "&", "=", "%", "+", "%2B", "%00", "%FF", "metric=", "from=", "to=", "every=",
            "fn=", "group_by=device", "city=", "domain=", "device=", "limit=", "before_id=",
            "station=", "date=", "state=", "severity=", "status=", "feed=", "reason=", "pm25",
            "water_level", "rainfall", "min,max,mean,count", "thai-nguyen", "song-cong", "pho-yen",
            "air_quality", "TN-AQ-HUNGVUONG", "TN-WL-GIABAY", "2026-11-22", "T08:00", "+07:00",
            "1d", "1m", "-009999-01-01", "9999-12-31", "99999999999999999999", "-1", "0",
            "online", "offline", "never_seen", "active", "resolved", "all", "critical",
            "malformed_json", "series",
        ],
    ),
];

/// Keys and short string values of a fixture payload, quoted as they appear in JSON.
fn json_tokens(value: &serde_json::Value, out: &mut BTreeSet<String>) {
    use serde_json::Value;
    match value {
        Value::Object(map) => {
            for (key, v) in map {
                out.insert(format!("\"{key}\""));
                json_tokens(v, out);
            }
        }
        Value::Array(items) => items.iter().for_each(|v| json_tokens(v, out)),
        Value::String(s) if s.len() <= 40 => {
            out.insert(format!("\"{s}\""));
        }
        _ => {}
    }
}

/// A libFuzzer dictionary value: printable ASCII as is, `\\`, `\"` and other bytes as `\xNN`.
fn dict_escape(token: &str) -> String {
    token
        .bytes()
        .map(|b| match b {
            b'\\' => "\\\\".to_owned(),
            b'"' => "\\\"".to_owned(),
            0x20..=0x7e => char::from(b).to_string(),
            _ => format!("\\x{b:02X}"),
        })
        .collect()
}
