//! The delivery contract against a real Mosquitto (QoS 1, persistent sessions, no queue limit):
//! every published message ends stored exactly once — through bursts, a SIGKILL of the
//! aggregator, and floods of bad input on another feed.

use std::time::Duration;

use jiff::{Timestamp, ToSpan};
use serde_json::{Value, json};

use crate::common::{
    Aggregator, Mosquitto, TestApp, free_port, process_config, publish_all, test_config, wait_for,
};
use crate::tap::MqttTap;
use ioc_aggregator::source::MqttProtocol;

const TN: usize = 0;
const SC: usize = 1;
const PY: usize = 2;

/// Message `i` of a burst on `feed`: unique device × time, 2 readings each.
fn message(feed: usize, i: usize, base: Timestamp) -> (String, Vec<u8>) {
    let device = i % 10;
    let at = base + ((i / 10) as i64).seconds();
    let v = (i % 1000) as f64 / 10.0;
    match feed {
        TN => {
            let local = crate::common::tn_local(at);
            let body = json!({"station": format!("TN-LOAD-{device:02}"), "ts": local, "status": "measuring",
                "d": [{"tag":"PM25","value": v,"unit":"ug/m3"},{"tag":"PM10","value": v * 1.5,"unit":"ug/m3"}]});
            (
                format!("tn/ioc/air/TN-LOAD-{device:02}"),
                body.to_string().into_bytes(),
            )
        }
        SC => {
            let body = json!([{"bn": format!("urn:dev:sc:sc-load-{device:02}:"), "bt": at.as_second(), "bu": "ug/m3",
                "n": "pm25", "v": v}, {"n": "pm10", "v": v * 1.5}]);
            (
                format!("sc/senml/sc-load-{device:02}"),
                body.to_string().into_bytes(),
            )
        }
        _ => {
            let body = json!({"id": format!("urn:ngsi-ld:AirQualityObserved:PY-LOAD-{device:02}"),
                "type": "AirQualityObserved",
                "dateObserved": {"type": "Property", "value": at.to_string()},
                "pm25": {"type": "Property", "value": v, "unitCode": "GQ"},
                "pm10": {"type": "Property", "value": v * 1.5, "unitCode": "GQ"},
                "location": {"type": "GeoProperty", "value": {"type": "Point", "coordinates": [105.93, 21.47]}}});
            (
                "py/ngsi-ld/AirQualityObserved".into(),
                body.to_string().into_bytes(),
            )
        }
    }
}

fn burst(per_feed: usize, base: Timestamp) -> Vec<(String, Vec<u8>)> {
    // Interleave the feeds, as three IOCs publishing at once would.
    (0..per_feed)
        .flat_map(|i| {
            [
                message(TN, i, base),
                message(SC, i, base),
                message(PY, i, base),
            ]
        })
        .collect()
}

fn counters(feeds: &Value, feed: &str, scope: &str) -> Value {
    feeds["feeds"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["feed"] == feed)
        .map(|f| f[scope].clone())
        .unwrap()
}

/// Readings of `metric` in the store over the whole burst window, counted by the API.
async fn stored_readings(
    app_base: &str,
    http: &reqwest::Client,
    metric: &str,
    base: Timestamp,
) -> u64 {
    let url = format!(
        "{app_base}/api/v1/aggregates?metric={metric}&every=1d&fn=count&from={}&to={}",
        base - 24.hours(),
        base + 24.hours()
    );
    let body: Value = http.get(url).send().await.unwrap().json().await.unwrap();
    body["buckets"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b["count"].as_u64().unwrap())
        .sum()
}

/// Every feed stored `per_feed` messages of a burst and rejected none, and the store holds
/// each of their readings once.
async fn assert_stored_exactly_once(app: &TestApp, per_feed: usize, base: Timestamp) {
    let feeds = app.get("/api/v1/feeds").await;
    for feed in ["thai-nguyen", "song-cong", "pho-yen"] {
        let c = counters(&feeds, feed, "all_time");
        assert_eq!(c["stored"], per_feed, "{feed}: {c}");
        assert_eq!(c["rejected"], 0, "{feed}: {c}");
    }
    for metric in ["pm25", "pm10"] {
        let n = stored_readings(&app.base, &app.http, metric, base).await;
        assert_eq!(n, 3 * per_feed as u64, "{metric} readings stored");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_20000_message_qos1_burst_across_three_feeds_is_stored_exactly_once() {
    let Some(mosquitto) = Mosquitto::start() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let app = TestApp::start(
        test_config(dir.path(), mosquitto.port, false),
        mosquitto.port,
        None,
    )
    .await;
    let per_feed = 6_667;
    let base = Timestamp::now() - 3.hours();
    publish_all(mosquitto.port, burst(per_feed, base)).await;
    wait_for(
        "every message settled",
        Duration::from_secs(180),
        || async {
            let feeds = app.get("/api/v1/feeds").await;
            ["thai-nguyen", "song-cong", "pho-yen"].iter().all(|f| {
                let c = counters(&feeds, f, "all_time");
                c["stored"].as_u64().unwrap_or(0)
                    + c["duplicate"].as_u64().unwrap_or(0)
                    + c["rejected"].as_u64().unwrap_or(0)
                    >= per_feed as u64
            })
        },
    )
    .await;
    assert_stored_exactly_once(&app, per_feed, base).await;
    app.stop().await;
    drop(dir);
}

/// What the delivery tests ask a separately running aggregator.
impl Aggregator {
    async fn feeds(&self, http: &reqwest::Client) -> Option<Value> {
        let resp = http
            .get(format!("{}/api/v1/feeds", self.base))
            .send()
            .await
            .ok()?;
        resp.json().await.ok()
    }

    async fn settled(&self, http: &reqwest::Client) -> u64 {
        let Some(feeds) = self.feeds(http).await else {
            return 0;
        };
        ["thai-nguyen", "song-cong", "pho-yen"]
            .iter()
            .map(|f| {
                let c = counters(&feeds, f, "all_time");
                c["stored"].as_u64().unwrap_or(0)
            })
            .sum()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_mid_burst_then_restart_loses_nothing_and_stores_nothing_twice() {
    let Some(mosquitto) = Mosquitto::start() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let api_port = free_port();
    let config = process_config(dir.path(), mosquitto.port, api_port);
    let http = reqwest::Client::new();

    let first = Aggregator::start(&config, api_port);
    wait_for(
        "first aggregator ready",
        Duration::from_secs(30),
        || async {
            http.get(format!("{}/readyz", first.base))
                .send()
                .await
                .is_ok_and(|r| r.status() == 200)
        },
    )
    .await;

    let per_feed = 6_667;
    let total = 3 * per_feed as u64;
    let base = Timestamp::now() - 3.hours();
    let publisher = tokio::spawn(publish_all(mosquitto.port, burst(per_feed, base)));
    wait_for(
        "part of the burst stored",
        Duration::from_secs(120),
        || async { first.settled(&http).await >= total / 4 },
    )
    .await;
    first.kill();

    // The broker keeps queuing for the dead aggregator's persistent sessions.
    publisher.await.unwrap();
    let second = Aggregator::start(&config, api_port);
    wait_for(
        "every message stored after restart",
        Duration::from_secs(180),
        || async { second.settled(&http).await >= total },
    )
    .await;
    let feeds = second.feeds(&http).await.unwrap();
    for feed in ["thai-nguyen", "song-cong", "pho-yen"] {
        let c = counters(&feeds, feed, "all_time");
        assert_eq!(c["stored"], per_feed, "{feed}: {c}");
        assert_eq!(c["rejected"], 0, "{feed}: {c}");
    }
    for metric in ["pm25", "pm10"] {
        assert_eq!(
            stored_readings(&second.base, &http, metric, base).await,
            total,
            "{metric}"
        );
    }
    drop(second);
}

/// Acks are batched on the wire but must still leave in the order the messages arrived, on the
/// connection they arrived on (a packet id of an earlier connection means nothing to the
/// broker, and makes some brokers disconnect). Checked on the bytes between the aggregator and
/// a real Mosquitto, across a connection cut mid-burst; the broker then redelivers what was not
/// acked and every message ends stored exactly once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acks_leave_in_receive_order_on_their_own_connection_through_a_cut() {
    acks_through_a_cut(MqttProtocol::V4).await;
}

/// The same over MQTT 5, whose acks go one by one through rumqttc's client.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mqtt5_acks_leave_in_receive_order_on_their_own_connection_through_a_cut() {
    acks_through_a_cut(MqttProtocol::V5).await;
}

async fn acks_through_a_cut(protocol: MqttProtocol) {
    let Some(mosquitto) = Mosquitto::start() else {
        return;
    };
    let tap = MqttTap::start(mosquitto.port, protocol).await;
    let dir = tempfile::tempdir().unwrap();
    let mut config = test_config(dir.path(), tap.port, false);
    for feed in &mut config.feeds {
        feed.protocol = protocol;
    }
    let app = TestApp::start(config, mosquitto.port, None).await;
    let per_feed = 5_000;
    let base = Timestamp::now() - 3.hours();
    let publisher = tokio::spawn(publish_all(mosquitto.port, burst(per_feed, base)));
    // Watched closely (in-process), so that the cut lands early in the burst.
    let watching = std::time::Instant::now();
    while tap.acked() < 3_000 {
        assert!(
            watching.elapsed() < Duration::from_secs(60),
            "acks did not flow"
        );
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    tap.cut();
    publisher.await.unwrap();
    wait_for(
        "every message stored after the cut",
        Duration::from_secs(180),
        || async {
            let feeds = app.get("/api/v1/feeds").await;
            ["thai-nguyen", "song-cong", "pho-yen"].iter().all(|f| {
                counters(&feeds, f, "all_time")["stored"].as_u64() >= Some(per_feed as u64)
            })
        },
    )
    .await;
    assert_stored_exactly_once(&app, per_feed, base).await;
    // Let the last acks reach the wire before reading it.
    wait_for("acks settled", Duration::from_secs(30), || async {
        tap.wires()
            .iter()
            .skip(3)
            .all(|w| w.acked.len() == w.published.len())
    })
    .await;
    app.stop().await;

    let wires = tap.wires();
    assert!(
        wires.len() >= 6,
        "three connections, cut and made again: {}",
        wires.len()
    );
    for (i, wire) in wires.iter().enumerate() {
        assert!(
            wire.acked.len() <= wire.published.len(),
            "connection {i}: {} acks for {} publishes",
            wire.acked.len(),
            wire.published.len()
        );
        if let Some(at) = (0..wire.acked.len()).find(|&k| wire.acked[k] != wire.published[k]) {
            panic!(
                "connection {i}: ack {at} is for packet {}, but the message received {at}th was {} \
                 (acks {:?}…, publishes {:?}…)",
                wire.acked[at],
                wire.published[at],
                &wire.acked[at.saturating_sub(3)..(at + 3).min(wire.acked.len())],
                &wire.published[at.saturating_sub(3)..(at + 3).min(wire.published.len())],
            );
        }
    }
    let before: usize = wires[..3].iter().map(|w| w.acked.len()).sum();
    let after: usize = wires[3..].iter().map(|w| w.acked.len()).sum();
    assert!(
        before >= 3_000 && after > 0,
        "acks before the cut {before}, after {after}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_of_malformed_messages_on_one_feed_does_not_hold_back_another() {
    let Some(mosquitto) = Mosquitto::start() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let config = test_config(dir.path(), mosquitto.port, false);
    // Establish the persistent sessions, then go away while both backlogs build up.
    let app = TestApp::start(config.clone(), mosquitto.port, None).await;
    app.stop().await;

    let flood = 20_000;
    let good = 500;
    let bad: Vec<(String, Vec<u8>)> = (0..flood)
        .map(|i| {
            (
                format!("tn/ioc/air/TN-BAD-{}", i % 7),
                format!("{{\"station\": {i}, \"ts\": [").into_bytes(),
            )
        })
        .collect();
    let base = Timestamp::now() - 2.hours();
    let ok: Vec<_> = (0..good).map(|i| message(SC, i, base)).collect();
    publish_all(mosquitto.port, bad).await;
    publish_all(mosquitto.port, ok).await;

    let app = TestApp::start(config, mosquitto.port, None).await;
    let deadline = std::time::Instant::now() + Duration::from_secs(120);
    let tn_settled_when_sc_done = loop {
        let feeds = app.get("/api/v1/feeds").await;
        let sc = counters(&feeds, "song-cong", "all_time");
        if sc["stored"] == good {
            break counters(&feeds, "thai-nguyen", "all_time")["rejected"]
                .as_u64()
                .unwrap_or(0);
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the good feed's backlog was not stored: {sc}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(
        tn_settled_when_sc_done < flood as u64,
        "the good feed finished only after the whole flood ({tn_settled_when_sc_done} rejects): it was held back"
    );
    wait_for(
        "the whole flood quarantined",
        Duration::from_secs(180),
        || async {
            let feeds = app.get("/api/v1/feeds").await;
            counters(&feeds, "thai-nguyen", "all_time")["rejected"] == flood
        },
    )
    .await;
    let r = app.get("/api/v1/rejects?feed=thai-nguyen&limit=5").await;
    assert_eq!(r["rejects"][0]["reason"], "malformed_json");
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_mqtt5_feed_keeps_its_session_while_the_aggregator_is_away() {
    let Some(mosquitto) = Mosquitto::start() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let mut config = test_config(dir.path(), mosquitto.port, false);
    for feed in &mut config.feeds {
        feed.protocol = MqttProtocol::V5;
    }
    let base = Timestamp::now() - 2.hours();
    let app = TestApp::start(config.clone(), mosquitto.port, None).await;
    publish_all(
        mosquitto.port,
        (0..300).map(|i| message(SC, i, base)).collect(),
    )
    .await;
    wait_for("first batch stored", Duration::from_secs(60), || async {
        counters(&app.get("/api/v1/feeds").await, "song-cong", "all_time")["stored"] == 300
    })
    .await;
    app.stop().await;

    // Published while no aggregator is connected: the broker keeps them in the v5 session.
    publish_all(
        mosquitto.port,
        (300..600).map(|i| message(SC, i, base)).collect(),
    )
    .await;
    let app = TestApp::start(config, mosquitto.port, None).await;
    wait_for(
        "offline messages delivered",
        Duration::from_secs(60),
        || async {
            counters(&app.get("/api/v1/feeds").await, "song-cong", "all_time")["stored"] == 600
        },
    )
    .await;
    let feeds = app.get("/api/v1/feeds").await;
    let sc = feeds["feeds"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["feed"] == "song-cong")
        .unwrap();
    assert_eq!(sc["since_start"]["sessions_lost"], 0, "{sc}");
    app.stop().await;
}
