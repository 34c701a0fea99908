//! Forwarding to a real server that speaks InfluxDB's `/api/v2/write` (VictoriaMetrics), read
//! back through its export API: values, timestamps and tags exactly; an outage loses nothing and
//! duplicates nothing.

use std::time::Duration;

use jiff::{Timestamp, ToSpan};
use serde_json::{Value, json};

use crate::common::{TestApp, VictoriaMetrics, free_port, publish_all, test_config, wait_for};

fn app_config(
    dir: &std::path::Path,
    broker_port: u16,
    vm: &VictoriaMetrics,
) -> ioc_aggregator::config::Config {
    let mut config = test_config(dir, broker_port, true);
    config.influx.enabled = true;
    config.influx.url = vm.url();
    config.influx.token = Some(serde_json::from_value(json!("test-token")).unwrap());
    config.influx.flush_interval = Duration::from_millis(200);
    config.influx.retry_max = Duration::from_secs(1);
    config
}

async fn influx_state(app: &TestApp) -> Value {
    app.get("/api/v1/feeds").await["influx"].clone()
}

fn tn_message(device: &str, at: Timestamp, pm25: f64) -> (String, Vec<u8>) {
    let local = crate::common::tn_local(at);
    let body = json!({"station": device, "ts": local, "status": "measuring",
        "d": [{"tag": "PM25", "value": pm25, "unit": "ug/m3"}, {"tag": "NO2", "value": 40, "unit": "ug/m3"}]});
    (
        format!("tn/ioc/air/{device}"),
        body.to_string().into_bytes(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stored_readings_arrive_in_influx_with_exact_values_times_and_tags() {
    let Some(vm) = VictoriaMetrics::start().await else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let app = TestApp::start(app_config(dir.path(), port, &vm), port, None).await;
    let at = Timestamp::from_second(Timestamp::now().as_second() - 120).unwrap();
    publish_all(
        port,
        vec![
            tn_message("TN-AQ-HUNGVUONG", at, 35.0),
            tn_message("TN-AQ-NEW:1", at, 12.25),
        ],
    )
    .await;
    wait_for("everything forwarded", Duration::from_secs(30), || async {
        let s = influx_state(&app).await;
        s["readings_written"] == 4 && s["backlog"] == 0
    })
    .await;

    let series = vm.export("air_quality_.*").await;
    let find = |name: &str, device: &str| {
        series
            .iter()
            .find(|s| s["metric"]["__name__"] == name && s["metric"]["device"] == device)
            .unwrap_or_else(|| panic!("no {name} for {device} in {series:?}"))
            .clone()
    };
    let values = |s: &Value| -> Vec<f64> {
        s["values"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_f64().unwrap())
            .collect()
    };
    let pm25 = find("air_quality_pm25", "TN-AQ-HUNGVUONG");
    assert_eq!(values(&pm25), vec![35.0]);
    assert_eq!(pm25["timestamps"], json!([at.as_millisecond()]));
    assert_eq!(pm25["metric"]["city"], "thai-nguyen");
    assert_eq!(pm25["metric"]["feed"], "thai-nguyen");
    assert_eq!(pm25["metric"]["status"], "measuring");
    assert_eq!(pm25["metric"]["ward"], "Phan Đình Phùng");
    // The ward's spaces survive line-protocol escaping (device ids cannot hold a comma, a space
    // or `=` any more: see `normalise::valid_device_id`); an uncatalogued device has no ward.
    let odd = find("air_quality_pm25", "TN-AQ-NEW:1");
    assert_eq!(values(&odd), vec![12.25]);
    assert!(odd["metric"].get("ward").is_none());
    assert_eq!(
        values(&find("air_quality_no2", "TN-AQ-HUNGVUONG")),
        vec![40.0]
    );
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_influx_outage_during_a_stream_loses_nothing_and_duplicates_nothing() {
    let Some(mut vm) = VictoriaMetrics::start().await else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let app = TestApp::start(app_config(dir.path(), port, &vm), port, None).await;
    let base = Timestamp::from_second(Timestamp::now().as_second() - 3 * 3600).unwrap();
    let wave = |from: usize| -> Vec<(String, Vec<u8>)> {
        (from..from + 300)
            .map(|i| {
                tn_message(
                    &format!("TN-LOAD-{:02}", i % 5),
                    base + (i as i64).seconds(),
                    i as f64,
                )
            })
            .collect()
    };
    publish_all(port, wave(0)).await;
    wait_for("first wave forwarded", Duration::from_secs(30), || async {
        influx_state(&app).await["readings_written"] == 600
    })
    .await;

    vm.stop();
    for w in 1..4 {
        publish_all(port, wave(w * 300)).await;
    }
    wait_for(
        "ingest goes on while InfluxDB is down",
        Duration::from_secs(30),
        || async {
            let f = app.get("/api/v1/feeds").await;
            f["feeds"][0]["all_time"]["stored"] == 1200
        },
    )
    .await;
    wait_for(
        "the backlog is visible and retried",
        Duration::from_secs(30),
        || async {
            let s = influx_state(&app).await;
            s["backlog"].as_i64().unwrap() >= 1800
                && s["retries"].as_u64().unwrap() >= 1
                && s["last_error"].is_string()
        },
    )
    .await;

    vm.restart().await;
    wait_for("the backlog drained", Duration::from_secs(60), || async {
        let s = influx_state(&app).await;
        s["backlog"] == 0 && s["readings_written"].as_u64().unwrap() >= 2400
    })
    .await;
    let series = vm.export("air_quality_pm25").await;
    let samples: usize = series
        .iter()
        .map(|s| s["values"].as_array().unwrap().len())
        .sum();
    let state = influx_state(&app).await;
    let mut got: Vec<i64> = series
        .iter()
        .flat_map(|s| {
            s["values"]
                .as_array()
                .unwrap()
                .iter()
                .map(|v| v.as_f64().unwrap() as i64)
        })
        .collect();
    got.sort();
    let missing: Vec<i64> = (0..1200)
        .filter(|v| got.binary_search(v).is_err())
        .collect();
    assert_eq!(
        samples,
        1200,
        "every reading once; missing {:?}..{:?} ({}); forwarder {state}",
        missing.first(),
        missing.last(),
        missing.len()
    );
    let mut values: Vec<f64> = series
        .iter()
        .flat_map(|s| {
            s["values"]
                .as_array()
                .unwrap()
                .iter()
                .map(|v| v.as_f64().unwrap())
        })
        .collect();
    values.sort_by(f64::total_cmp);
    assert_eq!(values, (0..1200).map(|i| i as f64).collect::<Vec<_>>());
    app.stop().await;
}

/// What InfluxDB does that VictoriaMetrics does not: refuse oversized bodies (413) and bad
/// lines (400 with a message). A scripted `/api/v2/write` stands in for those answers only.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_lines_are_quarantined_and_oversized_batches_split() {
    use std::sync::{Arc, Mutex};

    use axum::{Router, body::Bytes, extract::State, http::StatusCode, routing::post};

    const MAX_LINES: usize = 50;
    let accepted: Arc<Mutex<Vec<String>>> = Arc::default();
    let app = Router::new()
        .route(
            "/api/v2/write",
            post(
                |State(accepted): State<Arc<Mutex<Vec<String>>>>, body: Bytes| async move {
                    let text = String::from_utf8_lossy(&body).into_owned();
                    let lines: Vec<&str> = text.lines().collect();
                    if lines.len() > MAX_LINES {
                        return (
                            StatusCode::PAYLOAD_TOO_LARGE,
                            "request too large".to_owned(),
                        );
                    }
                    if let Some(bad) = lines.iter().find(|l| l.contains("POISON")) {
                        return (
                            StatusCode::BAD_REQUEST,
                            format!("partial write: unable to parse '{bad}': invalid field"),
                        );
                    }
                    accepted
                        .lock()
                        .unwrap()
                        .extend(lines.iter().map(|l| l.to_string()));
                    (StatusCode::NO_CONTENT, String::new())
                },
            ),
        )
        .with_state(Arc::clone(&accepted));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });

    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let mut config = test_config(dir.path(), port, true);
    config.influx.enabled = true;
    config.influx.url = url;
    config.influx.token = Some(serde_json::from_value(json!("test-token")).unwrap());
    config.influx.batch_size = 400;
    config.influx.flush_interval = Duration::from_millis(200);
    let app = TestApp::start(config, port, None).await;
    let base = Timestamp::from_second(Timestamp::now().as_second() - 3600).unwrap();
    let mut messages: Vec<_> = (0..120)
        .map(|i| {
            tn_message(
                &format!("TN-OK-{:02}", i % 6),
                base + (i as i64).seconds(),
                i as f64,
            )
        })
        .collect();
    messages.push(tn_message("TN-POISON-1", base, 1.0));
    publish_all(port, messages).await;
    wait_for(
        "everything forwarded or quarantined",
        Duration::from_secs(30),
        || async {
            let s = influx_state(&app).await;
            s["backlog"] == 0 && s["rejected_lines"] == 1
        },
    )
    .await;
    let lines = accepted.lock().unwrap().clone();
    assert_eq!(lines.len(), 120, "every good line written once");
    assert!(lines.iter().all(|l| !l.contains("POISON")));
    let rejects = app.get("/api/v1/rejects?reason=influx_rejected").await;
    let r = &rejects["rejects"][0];
    assert!(
        r["detail"].as_str().unwrap().contains("unable to parse"),
        "{r}"
    );
    assert!(
        r["payload_text"]
            .as_str()
            .unwrap()
            .contains("device=TN-POISON-1"),
        "{r}"
    );
    app.stop().await;
}
