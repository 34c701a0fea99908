//! Alerts end to end: readings over MQTT → rules → outbox → a real HTTP receiver started by the
//! test, which checks every Standard Webhooks signature with its own HMAC code.

use std::{
    sync::{Arc, Mutex},
    time::Duration,
};

use axum::{Router, body::Bytes, extract::State, http::HeaderMap, http::StatusCode, routing::post};
use base64::{Engine, engine::general_purpose::STANDARD};
use hmac::{Hmac, Mac};
use jiff::{Timestamp, ToSpan};
use serde_json::{Value, json};
use sha2::Sha256;

use crate::common::{TestApp, free_port, publish_all, test_config, wait_for};

const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

#[derive(Clone, Copy, PartialEq, Debug)]
enum Mode {
    Accept,
    Unavailable,
    Reject,
}

#[derive(Default)]
struct Received {
    /// Verified deliveries: (webhook-id, body).
    accepted: Vec<(String, Value)>,
    /// Requests answered with an error.
    refused: usize,
}

/// The alert consumer: verifies signatures itself and answers per `mode`.
#[derive(Clone)]
struct Receiver {
    mode: Arc<Mutex<Mode>>,
    got: Arc<Mutex<Received>>,
    url: String,
}

impl Receiver {
    async fn start() -> Receiver {
        let mode = Arc::new(Mutex::new(Mode::Accept));
        let got: Arc<Mutex<Received>> = Arc::default();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/hook", listener.local_addr().unwrap());
        let r = Receiver { mode, got, url };
        let app = Router::new()
            .route("/hook", post(handle))
            .with_state(r.clone());
        tokio::spawn(async move { axum::serve(listener, app).await });
        r
    }

    fn set(&self, mode: Mode) {
        *self.mode.lock().unwrap() = mode;
    }

    fn accepted(&self) -> Vec<(String, Value)> {
        self.got.lock().unwrap().accepted.clone()
    }

    fn refused(&self) -> usize {
        self.got.lock().unwrap().refused
    }
}

async fn handle(State(r): State<Receiver>, headers: HeaderMap, body: Bytes) -> StatusCode {
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned()
    };
    let (id, timestamp, signature) = (
        header("webhook-id"),
        header("webhook-timestamp"),
        header("webhook-signature"),
    );
    let key = STANDARD
        .decode(SECRET.trim_start_matches("whsec_"))
        .unwrap();
    let mut mac = Hmac::<Sha256>::new_from_slice(&key).unwrap();
    mac.update(format!("{id}.{timestamp}.").as_bytes());
    mac.update(&body);
    let Some(sig) = signature
        .strip_prefix("v1,")
        .and_then(|s| STANDARD.decode(s).ok())
    else {
        return StatusCode::UNAUTHORIZED;
    };
    if mac.verify_slice(&sig).is_err() {
        return StatusCode::UNAUTHORIZED;
    }
    let age = Timestamp::now().as_second() - timestamp.parse::<i64>().unwrap_or(0);
    if age.abs() > 300 {
        return StatusCode::UNAUTHORIZED;
    }
    let mode = *r.mode.lock().unwrap();
    let mut got = r.got.lock().unwrap();
    match mode {
        Mode::Accept => {
            // Deduplicate on webhook-id, as the Standard Webhooks scheme intends.
            if !got.accepted.iter().any(|(seen, _)| *seen == id) {
                got.accepted
                    .push((id, serde_json::from_slice(&body).unwrap()));
            }
            StatusCode::NO_CONTENT
        }
        Mode::Unavailable => {
            got.refused += 1;
            StatusCode::SERVICE_UNAVAILABLE
        }
        Mode::Reject => {
            got.refused += 1;
            StatusCode::BAD_REQUEST
        }
    }
}

/// The `[alerts]` section with `rules` and the receiver, validated as loading a file does.
fn alerts_config(receiver: &Receiver, rules: &str) -> ioc_aggregator::alert::AlertsConfig {
    let mut alerts: ioc_aggregator::alert::AlertsConfig = toml::from_str(&format!(
        r#"
enabled = true
evaluation_interval = "200ms"
{rules}
[[receivers]]
name = "duty"
url = "{}"
secret = "{SECRET}"
max_attempts = 100
backoff_max = "1s"
"#,
        receiver.url
    ))
    .unwrap();
    let mut problems = ioc_aggregator::settings::Problems::default();
    alerts.validate(&mut problems);
    assert!(problems.is_empty(), "{problems:?}");
    alerts
}

const PM25_RULE: &str = r#"
[[rules]]
name = "pm25_high"
kind = "threshold"
metric = "pm25"
above = 80.0
clear = 60.0
for = "10m"
severity = "critical"
"#;

/// A receiver answering as `mode`, and an app with `rules` notifying it; keep the directory
/// alive as long as the app.
async fn receiver_and_app(mode: Mode, rules: &str) -> (Receiver, TestApp, tempfile::TempDir) {
    let receiver = Receiver::start().await;
    receiver.set(mode);
    let dir = tempfile::tempdir().unwrap();
    let app = app_with(&receiver, rules, dir.path()).await;
    (receiver, app, dir)
}

async fn app_with(receiver: &Receiver, rules: &str, dir: &std::path::Path) -> TestApp {
    let port = free_port();
    let mut config = test_config(dir, port, true);
    config.alerts = alerts_config(receiver, rules);
    TestApp::start(config, port, None).await
}

/// PM2.5 readings of station TN-AQ-HUNGVUONG, `minutes_ago` → value.
async fn pm25(app: &TestApp, readings: &[(i64, f64)]) {
    let now = Timestamp::from_second(Timestamp::now().as_second()).unwrap();
    let messages = readings
        .iter()
        .map(|(ago, v)| {
            let local = crate::common::tn_local(now - ago.minutes());
            let body = json!({"station":"TN-AQ-HUNGVUONG","ts":local,"d":[{"tag":"PM25","value":v,"unit":"ug/m3"}]});
            ("tn/ioc/air/TN-AQ-HUNGVUONG".to_string(), body.to_string().into_bytes())
        })
        .collect();
    publish_all(app.broker_port, messages).await;
}

fn statuses(got: &[(String, Value)]) -> Vec<String> {
    got.iter()
        .map(|(_, b)| b["status"].as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sustained_pm25_spike_fires_once_and_resolves_once() {
    let (receiver, app, _dir) = receiver_and_app(Mode::Accept, PM25_RULE).await;
    pm25(
        &app,
        &[(60, 40.0), (50, 90.0), (45, 95.0), (40, 92.0), (35, 99.0)],
    )
    .await;
    wait_for(
        "the firing notification",
        Duration::from_secs(20),
        || async { receiver.accepted().len() == 1 },
    )
    .await;
    let active = app.get("/api/v1/alerts?state=active").await;
    assert_eq!(active["count"], 1);
    // The city summary is a snapshot refreshed every second.
    wait_for(
        "the alert on the city summary",
        Duration::from_secs(10),
        || async {
            app.get("/api/v1/cities/thai-nguyen").await["active_alerts"][0]["rule"] == "pm25_high"
        },
    )
    .await;

    pm25(&app, &[(30, 55.0), (25, 40.0)]).await;
    wait_for(
        "the resolved notification",
        Duration::from_secs(20),
        || async { receiver.accepted().len() == 2 },
    )
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let got = receiver.accepted();
    assert_eq!(statuses(&got), vec!["firing", "resolved"]);
    let (fire, resolve) = (&got[0].1, &got[1].1);
    assert_eq!(fire["version"], "4");
    assert_eq!(fire["receiver"], "duty");
    let alert = &fire["alerts"][0];
    assert_eq!(alert["labels"]["alertname"], "pm25_high");
    assert_eq!(alert["labels"]["severity"], "critical");
    assert_eq!(alert["labels"]["device"], "TN-AQ-HUNGVUONG");
    assert_eq!(alert["endsAt"], "0001-01-01T00:00:00Z");
    assert_eq!(alert["fingerprint"], resolve["alerts"][0]["fingerprint"]);
    assert_ne!(
        got[0].0, got[1].0,
        "each notification has its own webhook-id"
    );
    assert_eq!(app.get("/api/v1/alerts?state=active").await["count"], 0);
    let history = app.get("/api/v1/alerts?state=resolved").await;
    assert_eq!(history["alerts"][0]["state"], "resolved");
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn values_bouncing_inside_the_hysteresis_band_do_not_flap() {
    let (receiver, app, _dir) = receiver_and_app(Mode::Accept, PM25_RULE).await;
    pm25(
        &app,
        &[
            (60, 85.0),
            (45, 90.0),
            (40, 75.0),
            (35, 82.0),
            (30, 65.0),
            (25, 81.0),
            (20, 70.0),
            (15, 79.0),
        ],
    )
    .await;
    wait_for(
        "the firing notification",
        Duration::from_secs(20),
        || async { receiver.accepted().len() == 1 },
    )
    .await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(statuses(&receiver.accepted()), vec!["firing"]);
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_receiver_down_for_a_while_gets_every_notification_once() {
    let (receiver, app, _dir) = receiver_and_app(Mode::Unavailable, PM25_RULE).await;
    pm25(&app, &[(60, 90.0), (45, 95.0), (40, 50.0)]).await;
    wait_for(
        "retries while the receiver is down",
        Duration::from_secs(20),
        || async { receiver.refused() >= 2 },
    )
    .await;
    receiver.set(Mode::Accept);
    wait_for(
        "both notifications delivered",
        Duration::from_secs(30),
        || async { receiver.accepted().len() == 2 },
    )
    .await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(
        statuses(&receiver.accepted()),
        vec!["firing", "resolved"],
        "in order, once each"
    );
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn undelivered_notifications_survive_a_restart_and_firing_alerts_do_not_fire_again() {
    let receiver = Receiver::start().await;
    receiver.set(Mode::Unavailable);
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let mut config = test_config(dir.path(), port, true);
    config.alerts = alerts_config(&receiver, PM25_RULE);
    let app = TestApp::start(config.clone(), port, None).await;
    pm25(&app, &[(60, 90.0), (45, 95.0)]).await;
    wait_for("a refused attempt", Duration::from_secs(20), || async {
        receiver.refused() >= 1
    })
    .await;
    app.stop().await;

    receiver.set(Mode::Accept);
    // rumqttd cannot be shut down: the first app's embedded broker still serves this port.
    config.broker.enabled = false;
    let app = TestApp::start(config, port, None).await;
    wait_for(
        "the outbox delivered after restart",
        Duration::from_secs(30),
        || async { receiver.accepted().len() == 1 },
    )
    .await;
    // Still above the threshold: the restored alert is already firing, so no second notification.
    pm25(&app, &[(30, 97.0), (20, 99.0)]).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(statuses(&receiver.accepted()), vec!["firing"]);
    assert_eq!(app.get("/api/v1/alerts?state=all").await["count"], 1);
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silent_feeds_raise_one_feed_down_alert_per_city_and_no_device_storm() {
    let receiver = Receiver::start().await;
    let dir = tempfile::tempdir().unwrap();
    let rules = r#"
[[rules]]
name = "feed_down"
kind = "feed_down"
after = "1s"
severity = "critical"
[[rules]]
name = "device_silent"
kind = "staleness"
after = "3s"
"#;
    let app = app_with(&receiver, rules, dir.path()).await;
    wait_for("feed-down alerts", Duration::from_secs(20), || async {
        receiver.accepted().len() >= 3
    })
    .await;
    // Well past the staleness limit of every catalogued device.
    tokio::time::sleep(Duration::from_secs(5)).await;
    let got = receiver.accepted();
    let names: Vec<String> = got
        .iter()
        .map(|(_, b)| {
            b["alerts"][0]["labels"]["alertname"]
                .as_str()
                .unwrap()
                .to_owned()
        })
        .collect();
    assert_eq!(
        names,
        vec!["feed_down"; 3],
        "one per city, no per-device staleness"
    );
    let mut cities: Vec<&str> = got
        .iter()
        .map(|(_, b)| b["alerts"][0]["labels"]["city"].as_str().unwrap())
        .collect();
    cities.sort();
    assert_eq!(cities, vec!["pho-yen", "song-cong", "thai-nguyen"]);
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_400_sends_the_notification_to_the_dead_letters_and_replay_delivers_it() {
    let (receiver, app, _dir) = receiver_and_app(Mode::Reject, PM25_RULE).await;
    pm25(&app, &[(60, 90.0), (45, 95.0)]).await;
    wait_for("a dead letter", Duration::from_secs(20), || async {
        app.get("/api/v1/webhooks/dead-letters").await["count"] == 1
    })
    .await;
    assert_eq!(receiver.refused(), 1, "no retry after a 400");
    let letters = app.get("/api/v1/webhooks/dead-letters").await;
    let letter = &letters["dead_letters"][0];
    assert_eq!(letter["last_status"], 400);
    assert_eq!(letter["alerts"][0]["labels"]["alertname"], "pm25_high");
    // The answers' shapes, pinned (the handlers return typed answers).
    let keys = |v: &serde_json::Value| {
        let mut k: Vec<String> = v.as_object().unwrap().keys().cloned().collect();
        k.sort();
        k
    };
    assert_eq!(keys(&letters), ["count", "dead_letters"]);
    assert_eq!(
        keys(letter),
        [
            "alert_id",
            "alerts",
            "attempts",
            "created_at",
            "id",
            "last_error",
            "last_status",
            "receiver",
            "webhook_id"
        ]
    );
    let listed = app.get("/api/v1/alerts?state=all").await;
    assert_eq!(keys(&listed), ["alerts", "count"]);
    let alert_id = letter["alert_id"].as_i64().unwrap();
    assert_eq!(
        keys(&app.get(&format!("/api/v1/alerts/{alert_id}")).await),
        keys(&listed["alerts"][0])
    );

    receiver.set(Mode::Accept);
    let id = letter["id"].as_i64().unwrap();
    let replay = format!("{}/api/v1/webhooks/dead-letters/{id}/replay", app.base);
    // Writes are never anonymous, and need their own scope.
    let anonymous = app.http.post(&replay).send().await.unwrap();
    assert_eq!(anonymous.status(), 401);
    let reader = app.token("wall-screen", "all", "read").await;
    let refused = app
        .http
        .post(&replay)
        .bearer_auth(&reader)
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 403);
    let operator = app.token("duty-engineer", "all", "read,ack,replay").await;
    let resp = app
        .http
        .post(&replay)
        .bearer_auth(&operator)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let replayed: serde_json::Value = resp.json().await.unwrap();
    assert_eq!(
        replayed,
        serde_json::json!({"id": id, "receiver": "duty", "state": "pending"})
    );
    wait_for("the replayed delivery", Duration::from_secs(20), || async {
        receiver.accepted().len() == 1
    })
    .await;
    assert_eq!(app.get("/api/v1/webhooks/dead-letters").await["count"], 0);
    let metrics = app.metrics().await;
    for series in [
        "ioc_webhook_dead_lettered_total{receiver=\"duty\"}",
        "ioc_webhook_deliveries_succeeded_total{receiver=\"duty\"}",
        "ioc_webhook_deliveries_attempted_total{receiver=\"duty\"}",
        "ioc_alerts_firing{city=\"thai-nguyen\",severity=\"critical\"}",
    ] {
        assert!(metrics.contains(series), "{series} missing from /metrics");
    }

    // Acknowledge through the API.
    let alert_id = app.get("/api/v1/alerts").await["alerts"][0]["id"]
        .as_i64()
        .unwrap();
    let acked: Value = app
        .http
        .post(format!("{}/api/v1/alerts/{alert_id}/ack", app.base))
        .bearer_auth(&operator)
        .json(&json!({"comment": "đã cử người kiểm tra"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    // Who acted is the token's name, whatever a body might claim.
    assert_eq!(acked["acked_by"], "duty-engineer");
    assert_eq!(acked["ack_comment"], "đã cử người kiểm tra");
    let admin = app.token("auditor", "all", "admin").await;
    let audit: Value = (app.http.get(format!("{}/api/v1/audit", app.base)))
        .bearer_auth(&admin)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let actions: Vec<(&str, &str, &str)> = (audit["entries"].as_array().unwrap().iter())
        .map(|e| {
            let field = |k: &str| e[k].as_str().unwrap_or_default();
            (field("actor"), field("action"), field("client"))
        })
        .collect();
    assert_eq!(
        actions,
        [
            ("duty-engineer", "ack", "127.0.0.1"),
            ("duty-engineer", "replay", "127.0.0.1")
        ]
    );
    let (status, _) = app.get_status("/api/v1/alerts/999999").await;
    assert_eq!(status, 404);
    let bad = app
        .http
        .post(format!("{}/api/v1/alerts/{alert_id}/ack", app.base))
        .bearer_auth(&operator)
        .json(&json!({"by": "someone else"}))
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status(), 400);
    app.stop().await;
}
