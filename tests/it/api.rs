//! API behaviour: errors are JSON with the right status, and every answer keeps its JSON shape
//! (keys and value types) for the clients that read it.

use std::time::Duration;

use jiff::{Timestamp, ToSpan};
use serde_json::{Value, json};

use crate::common::{TestApp, publish_all, tn_local, wait_for};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_parameters_get_a_400_that_says_what_is_wrong() {
    let app = TestApp::spawn().await;
    let cases = [
        ("/api/v1/aggregates", "metric is required"),
        ("/api/v1/aggregates?metric=pm25&every=7m", "divide a day"),
        (
            "/api/v1/aggregates?metric=pm25&from=yesterday",
            "from=\"yesterday\"",
        ),
        ("/api/v1/aggregates?metric=banana", "unknown metric"),
        ("/api/v1/aggregates?metric=pm25&fn=median", "fn=\"median\""),
        (
            "/api/v1/aggregates?metric=pm25&from=2026-11-22&to=2026-11-21",
            "must be before",
        ),
        ("/api/v1/devices?city=ha-noi", "unknown city"),
        ("/api/v1/devices?status=sleepy", "status=\"sleepy\""),
        ("/api/v1/devices?domain=air", "unknown domain"),
        ("/api/v1/rejects?reason=bad_vibes", "unknown reason"),
        ("/api/v1/rejects?limit=0", "limit"),
        ("/api/v1/aqi?date=22/11/2026", "not a date"),
        (
            "/api/v1/devices/TN-AQ-HUNGVUONG/series",
            "metric is required",
        ),
        // Found by fuzzing: a `to` at the start of time left no room for the default span.
        (
            "/api/v1/aggregates?metric=pm25&to=-009999-01-02T01:59:59Z",
            "too early",
        ),
        // Unknown parameters are named, not ignored.
        ("/api/v1/aggregates?metric=pm25&ctiy=song-cong", "ctiy"),
        ("/api/v1/overview?city=song-cong", "city"),
        ("/api/v1/alerts?limit=5&sort=asc", "sort"),
    ];
    for (path, expected) in cases {
        let (status, body) = app.get_status(path).await;
        assert_eq!(status, 400, "{path}: {body}");
        let message = body["error"].as_str().unwrap_or_default();
        assert!(
            message.contains(expected),
            "{path}: {message:?} should mention {expected:?}"
        );
    }
    let (status, body) = app.get_status("/api/v1/cities/ha-noi").await;
    assert_eq!(status, 404, "{body}");
    let (status, _) = app.get_status("/api/v1/devices/NO-SUCH-DEVICE").await;
    assert_eq!(status, 404);
    let (status, body) = app.get_status("/api/v1/nothing-here").await;
    assert_eq!(status, 404, "{body}");
    // Every error status has a JSON body, also those answered outside the handlers.
    let resp = (app.http.delete(format!("{}/api/v1/overview", app.base)))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 405);
    assert!(resp.headers().contains_key("allow"));
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["status"], 405, "{body}");
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_and_readiness() {
    let app = TestApp::spawn().await;
    assert_eq!(app.get("/healthz").await["status"], "ok");
    assert_eq!(app.get("/readyz").await["status"], "ready");
    let city = app.get("/api/v1/cities/song-cong").await;
    assert_eq!(city["name"], "Sông Công");
    app.stop().await;
}

/// The keys of an object, sorted.
fn keys(v: &Value) -> Vec<String> {
    let mut k: Vec<String> = v
        .as_object()
        .unwrap_or_else(|| panic!("not an object: {v}"))
        .keys()
        .cloned()
        .collect();
    k.sort();
    k
}

/// The JSON shape of `/api/v1/feeds` and `/api/v1/rejects`, pinned: their handlers moved to
/// typed answers, and clients (the ops page, scripts) read these keys.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn feeds_and_rejects_keep_their_json_shape() {
    let app = TestApp::spawn().await;
    let body = app.get("/api/v1/feeds").await;
    assert_eq!(keys(&body), ["feeds", "generated_at", "influx"]);
    let feed = &body["feeds"][0];
    assert_eq!(
        keys(feed),
        [
            "all_time",
            "broker",
            "city",
            "client_id",
            "connected",
            "feed",
            "format",
            "health",
            "lag_ms",
            "last_message_at",
            "rate_per_s",
            "since_start",
            "topics"
        ]
    );
    for key in [
        "received",
        "stored",
        "rejected",
        "duplicate",
        "in_flight",
        "readings",
        "partial",
        "readings_rejected",
        "conflicts",
        "ignored_fields",
        "ignored_by_field",
    ] {
        assert!(
            feed["since_start"].get(key).is_some(),
            "since_start.{key} in {feed}"
        );
    }
    let rejects = app.get("/api/v1/rejects").await;
    assert_eq!(keys(&rejects), ["counts", "rejects"]);
    assert!(rejects["rejects"].is_array() && rejects["counts"].is_array());
    app.stop().await;
}

/// The keys of an object, sorted, each with the JSON type of its value: `null`, `bool`,
/// `integer`, `float` (a number written with a fraction or exponent), `string`, `array` or
/// `object`. Pins both the keys clients read and whether a value is a number, text or null.
fn shape(v: &Value) -> Vec<String> {
    let mut s: Vec<String> = v
        .as_object()
        .unwrap_or_else(|| panic!("not an object: {v}"))
        .iter()
        .map(|(k, v)| format!("{k}: {}", kind(v)))
        .collect();
    s.sort();
    s
}

fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "bool",
        Value::Number(n) if n.is_f64() => "float",
        Value::Number(_) => "integer",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

/// The first item of `list` whose `key` is `value`.
fn find<'a>(list: &'a Value, key: &str, value: &str) -> &'a Value {
    list.as_array()
        .unwrap_or_else(|| panic!("not an array: {list}"))
        .iter()
        .find(|item| item[key] == value)
        .unwrap_or_else(|| panic!("no {key} = {value:?} in {list}"))
}

/// The local (UTC+7) date of `t`.
fn local_date(t: Timestamp) -> jiff::civil::Date {
    t.to_zoned(jiff::tz::TimeZone::fixed(jiff::tz::offset(7)))
        .date()
}

/// Thái Nguyên's traffic as the shape tests need it: TN-AQ-HUNGVUONG every hour from
/// yesterday's local midnight to now (so yesterday has a daily VN_AQI and now an hourly one),
/// TN-WL-GIABAY above its BĐ1 (a firing flood alert), a traffic counter and a lighting cabinet;
/// PY-WL-CHA above its only alarm level (no next level). Returns once all are stored.
async fn publish_a_day_of_thai_nguyen(app: &TestApp) {
    let now = Timestamp::from_second((Timestamp::now() - 2.minutes()).as_second()).unwrap();
    let yesterday = local_date(now).yesterday().unwrap();
    let midnight = yesterday
        .to_zoned(jiff::tz::TimeZone::fixed(jiff::tz::offset(7)))
        .unwrap()
        .timestamp();
    let tn = |station: &str, at: Timestamp, d: Value| {
        let domain = station.split('-').nth(1).unwrap_or("x").to_lowercase();
        (
            format!("tn/ioc/{domain}/{station}"),
            json!({"station": station, "ts": tn_local(at), "status": "measuring", "d": d})
                .to_string()
                .into_bytes(),
        )
    };
    let mut messages = Vec::new();
    let mut at = now;
    while at >= midnight {
        let d = json!([{"tag":"PM25","value":35.2,"unit":"ug/m3"},
            {"tag":"PM10","value":61.0,"unit":"ug/m3"},{"tag":"O3","value":80.0,"unit":"ug/m3"},
            {"tag":"NO2","value":48.1,"unit":"ug/m3"}]);
        messages.push(tn("TN-AQ-HUNGVUONG", at, d));
        at -= 1.hour();
    }
    messages.reverse(); // oldest first, as a station sends them
    let level = json!([{"tag":"MUCNUOC","value":25.3,"unit":"m"}]);
    messages.push(tn("TN-WL-GIABAY", now, level));
    let traffic = json!([{"tag":"intensity","value":42},
        {"tag":"averageVehicleSpeed","value":35.5,"unit":"km/h"}]);
    messages.push(tn("TN-TF-HUNGVUONG", now, traffic));
    let light = json!([{"tag":"powerState","value":1},
        {"tag":"powerConsumption","value":120.0,"unit":"W"}]);
    messages.push(tn("TN-LT-CAB-01", now, light));
    let tn_count = messages.len() as u64;
    let flood = json!({"id":"urn:ngsi-ld:FloodMonitoring:PY-WL-CHA","type":"FloodMonitoring",
        "observationDateTime":{"type":"Property","value": now.to_string()},
        "currentLevel":{"type":"Property","value":8.35,"unitCode":"MTR"}});
    messages.push((
        "py/ngsi-ld/FloodMonitoring".into(),
        flood.to_string().into_bytes(),
    ));
    publish_all(app.broker_port, messages).await;
    wait_for("every message stored", Duration::from_secs(20), || async {
        let feeds = app.get("/api/v1/feeds").await;
        let stored =
            |feed: &str| find(&feeds["feeds"], "feed", feed)["since_start"]["stored"].clone();
        stored("thai-nguyen") == tn_count && stored("pho-yen") == 1
    })
    .await;
}

/// The keys and value types of the device routes, pinned: their handlers moved to typed
/// answers, and the ops page and scripts read them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn devices_and_series_keep_their_json_shape() {
    let app = TestApp::spawn().await;
    publish_a_day_of_thai_nguyen(&app).await;
    let list = app.get("/api/v1/devices").await;
    assert_eq!(shape(&list), ["count: integer", "devices: array"]);
    assert_eq!(
        list["count"].as_u64(),
        Some(list["devices"].as_array().unwrap().len() as u64)
    );
    let seen = find(&list["devices"], "device_id", "TN-AQ-HUNGVUONG");
    let device_keys = [
        "catalogued: bool",
        "city: string",
        "device_id: string",
        "domain: string",
        "expected_interval_ms: integer",
        "feed: string",
        "first_seen: string",
        "last_observed_at: string",
        "last_seen: string",
        "last_status: string",
        "latest: array",
        "location: object",
        "name: string",
        "offline_after_ms: integer",
        "online: bool",
        "position_source: string",
        "state: string",
    ];
    assert_eq!(shape(seen), device_keys, "{seen}");
    assert_eq!(
        shape(&seen["location"]),
        ["lat: float", "lon: float", "ward: string"]
    );
    assert_eq!(
        shape(&seen["latest"][0]),
        [
            "metric: string",
            "observed_at: string",
            "status: string",
            "unit: string",
            "value: float"
        ]
    );
    let never = find(&list["devices"], "device_id", "TN-AQ-QUANTRIEU");
    assert_eq!(
        shape(never),
        [
            "catalogued: bool",
            "city: string",
            "device_id: string",
            "domain: string",
            "expected_interval_ms: null",
            "feed: null",
            "first_seen: null",
            "last_observed_at: null",
            "last_seen: null",
            "last_status: null",
            "latest: array",
            "location: object",
            "name: string",
            "offline_after_ms: integer",
            "online: bool",
            "position_source: string",
            "state: string",
        ],
        "{never}"
    );
    // Flood alarm levels only on gauges that have them.
    let gauge = find(&list["devices"], "device_id", "TN-WL-GIABAY");
    assert_eq!(gauge["flood_levels"], json!([25.0, 26.0, 27.0]));
    assert!(seen.get("flood_levels").is_none(), "{seen}");

    let one = app.get("/api/v1/devices/TN-AQ-HUNGVUONG").await;
    assert_eq!(shape(&one), device_keys);
    assert_eq!(one["latest"], seen["latest"]);

    let series = app
        .get("/api/v1/devices/TN-AQ-HUNGVUONG/series?metric=pm25")
        .await;
    assert_eq!(
        shape(&series),
        [
            "count: integer",
            "device_id: string",
            "from: string",
            "metric: string",
            "points: array",
            "to: string",
            "unit: string"
        ]
    );
    assert_eq!(series["unit"], "µg/m³");
    assert!(series["count"].as_u64() >= Some(20), "{series}");
    assert_eq!(
        shape(&series["points"][0]),
        ["observed_at: string", "status: string", "value: float"]
    );
    app.stop().await;
}

/// The keys and value types of `/api/v1/aggregates`, pinned: its rows carry only the functions
/// asked for, and `device_id` only when grouped by device.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn aggregates_keep_their_json_shape() {
    let app = TestApp::spawn().await;
    publish_a_day_of_thai_nguyen(&app).await;
    let top = [
        "buckets: array",
        "every: string",
        "from: string",
        "metric: string",
        "timezone: string",
        "to: string",
        "unit: string",
    ];
    let path = "/api/v1/aggregates?metric=pm25&city=thai-nguyen";
    wait_for("city-wide buckets", Duration::from_secs(20), || async {
        app.get(path).await["buckets"]
            .as_array()
            .is_some_and(|b| !b.is_empty())
    })
    .await;
    let all = app.get(path).await;
    assert_eq!(shape(&all), top);
    assert_eq!(all["every"], "1h");
    assert_eq!(all["timezone"], "+07:00");
    assert_eq!(
        shape(&all["buckets"][0]),
        [
            "bucket_end: string",
            "bucket_start: string",
            "count: integer",
            "max: float",
            "mean: float",
            "min: float",
            "sum: float"
        ]
    );
    let some = app
        .get("/api/v1/aggregates?metric=pm25&device=TN-AQ-HUNGVUONG&every=30m&fn=max,count")
        .await;
    assert_eq!(shape(&some), top);
    assert_eq!(some["every"], "30m");
    assert_eq!(
        shape(&some["buckets"][0]),
        [
            "bucket_end: string",
            "bucket_start: string",
            "count: integer",
            "max: float"
        ]
    );
    let grouped = app
        .get("/api/v1/aggregates?metric=pm25&group_by=device&fn=mean")
        .await;
    assert_eq!(shape(&grouped), top);
    assert_eq!(
        shape(&grouped["buckets"][0]),
        [
            "bucket_end: string",
            "bucket_start: string",
            "device_id: string",
            "mean: float"
        ]
    );
    app.stop().await;
}

/// The keys and value types of `/api/v1/aqi`, pinned, for a station with a computable day and
/// for stations without data (`daily` null, `hourly` empty).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn aqi_keeps_its_json_shape() {
    let app = TestApp::spawn().await;
    publish_a_day_of_thai_nguyen(&app).await;
    let yesterday = local_date(Timestamp::now() - 2.minutes())
        .yesterday()
        .unwrap();
    let body = app
        .get(&format!(
            "/api/v1/aqi?station=TN-AQ-HUNGVUONG&date={yesterday}"
        ))
        .await;
    let top = [
        "date: string",
        "method: string",
        "stations: array",
        "timezone: string",
    ];
    assert_eq!(shape(&body), top);
    assert_eq!(body["date"], yesterday.to_string());
    let station = &body["stations"][0];
    assert_eq!(
        shape(station),
        [
            "city: string",
            "daily: object",
            "date: string",
            "hourly: array",
            "location: object",
            "name: string",
            "station: string"
        ]
    );
    let index = [
        "aqi: integer",
        "category: string",
        "colour: string",
        "dominant_pollutant: string",
        "health_advice: string",
        "label_en: string",
        "label_vi: string",
        "method: string",
        "rgb: array",
        "sub_indices: array",
        "window_end: string",
        "window_start: string",
    ];
    assert_eq!(shape(&station["daily"]), index);
    assert_eq!(
        shape(&station["daily"]["sub_indices"][0]),
        [
            "aqi: integer",
            "averaging: string",
            "concentration: float",
            "index: float",
            "pollutant: string"
        ]
    );
    assert!(
        !station["hourly"].as_array().unwrap().is_empty(),
        "{station}"
    );
    assert_eq!(shape(&station["hourly"][0]), index);

    let every = app.get(&format!("/api/v1/aqi?date={yesterday}")).await;
    assert_eq!(shape(&every), top);
    let quiet = find(&every["stations"], "station", "TN-AQ-QUANTRIEU");
    assert_eq!(
        shape(quiet),
        [
            "city: string",
            "daily: null",
            "date: string",
            "hourly: array",
            "location: object",
            "name: string",
            "station: string"
        ]
    );
    assert_eq!(quiet["hourly"], json!([]));
    app.stop().await;
}

/// The keys and value types of `/api/v1/overview` and `/api/v1/cities/{city}`, pinned: a city's
/// summary is the overview's item plus its `generated_at`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn overview_and_city_summary_keep_their_json_shape() {
    let app = TestApp::spawn().await;
    publish_a_day_of_thai_nguyen(&app).await;
    let tn = || async {
        let overview = app.get("/api/v1/overview").await;
        find(&overview["cities"], "city", "thai-nguyen").clone()
    };
    wait_for(
        "the overview to show the firing flood alert and the station's index",
        Duration::from_secs(20),
        || async {
            let tn = tn().await;
            let station = find(&tn["air_quality"], "station", "TN-AQ-HUNGVUONG").clone();
            tn["active_alerts"]
                .as_array()
                .is_some_and(|a| !a.is_empty())
                && station["aqi"].is_object()
        },
    )
    .await;
    let overview = app.get("/api/v1/overview").await;
    assert_eq!(shape(&overview), ["cities: array", "generated_at: string"]);
    assert_eq!(overview["cities"].as_array().unwrap().len(), 3);
    let summary = [
        "active_alerts: array",
        "air_quality: array",
        "air_quality_categories: object",
        "air_quality_stations: integer",
        "city: string",
        "devices: object",
        "feed_status: string",
        "feeds: array",
        "lighting: object",
        "name: string",
        "readings_last_hour: integer",
        "traffic: object",
        "water_gauges: integer",
        "water_levels: array",
    ];
    for city in overview["cities"].as_array().unwrap() {
        assert_eq!(shape(city), summary, "{city}");
    }
    let tn = find(&overview["cities"], "city", "thai-nguyen");
    assert_eq!(
        shape(&tn["active_alerts"][0]),
        [
            "acknowledged: bool",
            "id: integer",
            "rule: string",
            "severity: string",
            "starts_at: string",
            "subject: string",
            "summary: string"
        ]
    );
    assert_eq!(
        shape(find(&tn["air_quality"], "station", "TN-AQ-HUNGVUONG")),
        [
            "aqi: object",
            "name: string",
            "online: bool",
            "station: string"
        ]
    );
    let quiet = find(&tn["air_quality"], "station", "TN-AQ-QUANTRIEU");
    assert_eq!(
        shape(quiet),
        [
            "aqi: null",
            "name: string",
            "online: bool",
            "station: string"
        ]
    );
    let aqi = &find(&tn["air_quality"], "station", "TN-AQ-HUNGVUONG")["aqi"];
    let category = aqi["category"].as_str().unwrap();
    assert_eq!(
        tn["air_quality_categories"],
        json!({ category: 1, "unknown": 1 })
    );
    assert_eq!(
        shape(&tn["devices"]),
        [
            "never_seen: integer",
            "offline: integer",
            "online: integer",
            "total: integer"
        ]
    );
    assert_eq!(
        shape(&tn["feeds"][0]),
        [
            "connected: bool",
            "feed: string",
            "health: string",
            "last_message_at: string",
            "rate_per_s: float"
        ]
    );
    let gauge = [
        "alarm: string",
        "alarm_level: integer",
        "device: string",
        "flood_levels_m: array",
        "level_m: float",
        "name: string",
        "observed_at: string",
        "online: bool",
    ];
    let giabay = find(&tn["water_levels"], "device", "TN-WL-GIABAY");
    let with = |last: &str| {
        let mut keys: Vec<String> = gauge.iter().map(|k| k.to_string()).collect();
        keys.push(last.into());
        keys
    };
    assert_eq!(shape(giabay), with("to_next_level_m: float"));
    assert_eq!(giabay["alarm"], "BĐ1");
    assert_eq!(giabay["alarm_level"], 1);
    let py = find(&overview["cities"], "city", "pho-yen");
    let cha = find(&py["water_levels"], "device", "PY-WL-CHA");
    assert_eq!(shape(cha), with("to_next_level_m: null"));
    assert_eq!(
        shape(&tn["traffic"]),
        [
            "average_speed_kmh: float",
            "counters: integer",
            "online: integer",
            "vehicles_latest_interval: float"
        ]
    );
    let sc = find(&overview["cities"], "city", "song-cong");
    assert_eq!(
        shape(&sc["traffic"]),
        [
            "average_speed_kmh: null",
            "counters: integer",
            "online: integer",
            "vehicles_latest_interval: float"
        ]
    );
    assert_eq!(
        shape(&tn["lighting"]),
        [
            "devices: integer",
            "faults: integer",
            "on: integer",
            "online: integer",
            "power_w: float"
        ]
    );

    let city = app.get("/api/v1/cities/thai-nguyen").await;
    let mut with_time: Vec<String> = summary.iter().map(|k| k.to_string()).collect();
    with_time.push("generated_at: string".into());
    with_time.sort();
    assert_eq!(shape(&city), with_time);
    app.stop().await;
}

/// The probes' and the errors' bodies, pinned: `{"status"}`, `{"status", "problems"}` and
/// `{"error", "status"}` with the HTTP status as a number.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn probes_and_errors_keep_their_json_shape() {
    let app = TestApp::spawn().await;
    let healthz = app.get("/healthz").await;
    assert_eq!(healthz, json!({"status": "ok"}));
    let readyz = app.get("/readyz").await;
    assert_eq!(readyz, json!({"status": "ready", "problems": []}));
    let cases = [
        ("/api/v1/devices?status=sleepy", 400),
        ("/api/v1/rejects?before_id=abc", 400),
        ("/api/v1/aqi?station=NO-SUCH-STATION", 404),
        ("/api/v1/devices/NO-SUCH-DEVICE", 404),
        ("/api/v1/devices/NO-SUCH-DEVICE/series?metric=pm25", 404),
        ("/api/v1/cities/ha-noi", 404),
        ("/api/v1/nothing-here", 404),
    ];
    for (path, status) in cases {
        let (got, body) = app.get_status(path).await;
        assert_eq!(got, status, "{path}: {body}");
        assert_eq!(shape(&body), ["error: string", "status: integer"], "{path}");
        assert_eq!(body["status"], status, "{path}");
    }
    app.stop().await;
}
