//! API behaviour that needs no traffic: errors are JSON with the right status.

use crate::common::TestApp;

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
    let (status, _) = app.get_status("/api/v1/nothing-here").await;
    assert_eq!(status, 404);
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
fn keys(v: &serde_json::Value) -> Vec<String> {
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
