//! Messages of each IOC's format published over MQTT to the embedded broker, read back through
//! the HTTP API.

use std::time::Duration;

use jiff::{Timestamp, ToSpan};
use serde_json::json;

use crate::common::{TestApp, publish_all, tn_local, wait_for};

fn minute_ago() -> Timestamp {
    let t = Timestamp::now() - 1.minute();
    Timestamp::from_second(t.as_second()).unwrap()
}

async fn stored(app: &TestApp, feed: &str) -> u64 {
    let feeds = app.get("/api/v1/feeds").await;
    feeds["feeds"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["feed"] == feed)
        .map(|f| f["since_start"]["stored"].as_u64().unwrap())
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_city_format_published_over_mqtt_is_readable_through_the_api() {
    let app = TestApp::spawn().await;
    let at = minute_ago();
    let tn = json!({"station":"TN-AQ-HUNGVUONG","ts": tn_local(at),"status":"measuring",
        "d":[{"tag":"PM25","value":35.2,"unit":"ug/m3"},{"tag":"PM10","value":61.0,"unit":"ug/m3"},
             {"tag":"NO2","value":48.1,"unit":"ug/m3"},{"tag":"TEMP","value":24.5,"unit":"C"}]});
    let sc = json!([{"bn":"urn:dev:sc:wl-cau-01:","bt": at.as_second(),"bu":"m","n":"level","v":21.34},
        {"n":"rain","u":"mm","v":0.4,"t":-300}]);
    let py = json!({"id":"urn:ngsi-ld:AirQualityObserved:PY-AQ-01","type":"AirQualityObserved",
        "dateObserved":{"type":"Property","value": at.to_string()},
        "pm25":{"type":"Property","value":41.0,"unitCode":"GQ"},
        "location":{"type":"GeoProperty","value":{"type":"Point","coordinates":[105.9361,21.4767]}}});
    publish_all(
        app.broker_port,
        vec![
            (
                "tn/ioc/air/TN-AQ-HUNGVUONG".into(),
                tn.to_string().into_bytes(),
            ),
            ("sc/senml/wl-cau-01".into(), sc.to_string().into_bytes()),
            (
                "py/ngsi-ld/AirQualityObserved".into(),
                py.to_string().into_bytes(),
            ),
        ],
    )
    .await;
    wait_for(
        "one message stored per feed",
        Duration::from_secs(20),
        || async {
            stored(&app, "thai-nguyen").await == 1
                && stored(&app, "song-cong").await == 1
                && stored(&app, "pho-yen").await == 1
        },
    )
    .await;

    let from = (at - 1.minute()).to_string();
    let series = app
        .get(&format!(
            "/api/v1/devices/TN-AQ-HUNGVUONG/series?metric=pm25&from={from}"
        ))
        .await;
    assert_eq!(series["unit"], "µg/m³");
    assert_eq!(series["points"][0]["value"], 35.2);
    assert_eq!(series["points"][0]["observed_at"], at.to_string());

    let series = app
        .get(&format!(
            "/api/v1/devices/wl-cau-01/series?metric=water_level&from={from}"
        ))
        .await;
    assert_eq!(series["points"][0]["value"], 21.34);
    let rain_at = (at - 300.seconds()).to_string();
    let rain = app
        .get(&format!(
            "/api/v1/devices/wl-cau-01/series?metric=rainfall&from={}",
            (at - 10.minutes())
        ))
        .await;
    assert_eq!(rain["points"][0]["observed_at"], rain_at);

    let py = app.get("/api/v1/devices/PY-AQ-01").await;
    assert_eq!(py["city"], "pho-yen");
    assert_eq!(py["online"], true);
    let pm25 = py["latest"]
        .as_array()
        .unwrap()
        .iter()
        .find(|l| l["metric"] == "pm25")
        .unwrap();
    assert_eq!(pm25["value"], 41.0);

    // The overview is a snapshot refreshed every `api.overview_refresh` (1 s by default).
    wait_for(
        "the overview to show all three cities",
        Duration::from_secs(10),
        || async {
            let o = app.get("/api/v1/overview").await;
            o["cities"].as_array().is_some_and(|cs| {
                cs.iter()
                    .all(|c| c["readings_last_hour"].as_u64() >= Some(1))
            })
        },
    )
    .await;
    let overview = app.get("/api/v1/overview").await;
    let cities = overview["cities"].as_array().unwrap();
    assert_eq!(cities.len(), 3);
    for c in cities {
        assert!(c["readings_last_hour"].as_u64().unwrap() >= 1, "{c}");
        assert_eq!(c["feed_status"], "healthy", "{c}");
    }
    let tn = &cities[0];
    let station = tn["air_quality"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["station"] == "TN-AQ-HUNGVUONG")
        .unwrap();
    // A single hour of data: NowCast needs two of the last three hours, so PM has no index yet
    // but the station is listed and online.
    assert_eq!(station["online"], true);
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_payload_is_quarantined_with_its_reason_and_raw_bytes() {
    let app = TestApp::spawn().await;
    publish_all(
        app.broker_port,
        vec![
            (
                "tn/ioc/air/TN-AQ-HUNGVUONG".into(),
                b"{\"station\": \"TN-AQ-HUNG".to_vec(),
            ),
            ("sc/senml/x".into(), vec![0xff, 0xfe, 0x00]),
        ],
    )
    .await;
    wait_for("two rejects", Duration::from_secs(20), || async {
        app.get("/api/v1/rejects").await["rejects"]
            .as_array()
            .unwrap()
            .len()
            == 2
    })
    .await;
    let r = app
        .get("/api/v1/rejects?feed=thai-nguyen&reason=malformed_json")
        .await;
    let rejects = r["rejects"].as_array().unwrap();
    assert_eq!(rejects.len(), 1);
    assert_eq!(rejects[0]["topic"], "tn/ioc/air/TN-AQ-HUNGVUONG");
    assert_eq!(rejects[0]["payload_text"], "{\"station\": \"TN-AQ-HUNG");
    let r = app.get("/api/v1/rejects?feed=song-cong").await;
    assert_eq!(r["rejects"][0]["reason"], "invalid_utf8");
    let feeds = app.get("/api/v1/feeds").await;
    let tn = &feeds["feeds"][0];
    assert_eq!(tn["since_start"]["rejected"], 1);
    assert_eq!(tn["all_time"]["rejected"], 1);
    let metrics = app.metrics().await;
    // The recorder is process-wide, shared with the other tests of this binary: at least ours.
    let series = "ioc_messages_rejected_total{feed=\"thai-nguyen\",reason=\"malformed_json\"} ";
    let count: f64 = metrics
        .lines()
        .find_map(|l| l.strip_prefix(series))
        .unwrap_or_else(|| panic!("no {series} in {metrics}"))
        .parse()
        .unwrap();
    assert!(count >= 1.0);
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redelivered_message_is_counted_as_duplicate_and_stored_once() {
    let app = TestApp::spawn().await;
    let at = minute_ago();
    let msg = json!([{"bn":"urn:dev:sc:sc-aq-01:","bt": at.as_second(),"bu":"ug/m3","n":"pm25","v":12.5}]);
    let m = (
        "sc/senml/sc-aq-01".to_string(),
        msg.to_string().into_bytes(),
    );
    publish_all(app.broker_port, vec![m.clone(), m]).await;
    wait_for("both messages settled", Duration::from_secs(20), || async {
        let f = app.get("/api/v1/feeds").await;
        let sc = &f["feeds"][1]["since_start"];
        sc["stored"] == 1 && sc["duplicate"] == 1
    })
    .await;
    let series = app
        .get(&format!(
            "/api/v1/devices/sc-aq-01/series?metric=pm25&from={}",
            at - 1.minute()
        ))
        .await;
    assert_eq!(series["count"], 1);
    app.stop().await;
}

/// Over MQTT and back through the API: a message partly valid stores its valid readings and
/// quarantines the rest; a correction of a stored reading is a conflict, not a duplicate — the
/// new value is served (`keep_latest`), the old one recorded, and both are counted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn partial_messages_and_corrections_are_stored_quarantined_and_counted() {
    let app = TestApp::spawn().await;
    let at = minute_ago();
    let message = |pm25: f64| {
        json!({"station":"TN-AQ-HUNGVUONG","ts": tn_local(at),"status":"Hiệu chuẩn",
            "d":[{"tag":"PM25","value":pm25,"unit":"ug/m3"},
                 {"tag":"PM10","value":-3.0,"unit":"ug/m3"},
                 {"tag":"SO2","value":12.0,"unit":"ug/Nm3"}]})
        .to_string()
        .into_bytes()
    };
    let topic = "tn/ioc/air/TN-AQ-HUNGVUONG".to_owned();
    publish_all(app.broker_port, vec![(topic.clone(), message(35.2))]).await;
    wait_for("the message stored", Duration::from_secs(20), || async {
        stored(&app, "thai-nguyen").await == 1
    })
    .await;
    // The correction, and a redelivery of it.
    publish_all(
        app.broker_port,
        vec![(topic.clone(), message(36.0)), (topic, message(36.0))],
    )
    .await;
    let feed = || async {
        let feeds = app.get("/api/v1/feeds").await;
        feeds["feeds"]
            .as_array()
            .unwrap()
            .iter()
            .find(|f| f["feed"] == "thai-nguyen")
            .unwrap()
            .clone()
    };
    wait_for("all three settled", Duration::from_secs(20), || async {
        let f = feed().await;
        f["all_time"]["received"] == 3
            && f["all_time"]["received"].as_i64()
                == Some(
                    ["stored", "rejected", "duplicate"]
                        .iter()
                        .map(|k| f["all_time"][k].as_i64().unwrap())
                        .sum(),
                )
    })
    .await;
    let f = feed().await;
    let all_time = &f["all_time"];
    assert_eq!(all_time["stored"], 2, "{all_time}");
    assert_eq!(all_time["duplicate"], 1, "{all_time}");
    assert_eq!(all_time["partial"], 2, "{all_time}");
    assert_eq!(all_time["readings_rejected"], 4, "{all_time}");
    assert_eq!(all_time["conflicts"], 1, "{all_time}");
    assert_eq!(f["since_start"]["conflicts"], 1);

    let from = (at - 1.minute()).to_string();
    let series = app
        .get(&format!(
            "/api/v1/devices/TN-AQ-HUNGVUONG/series?metric=pm25&from={from}"
        ))
        .await;
    assert_eq!(series["points"].as_array().unwrap().len(), 1);
    assert_eq!(series["points"][0]["value"], 36.0);
    assert_eq!(series["points"][0]["status"], "calibrating");

    let rejects = app.get("/api/v1/rejects?feed=thai-nguyen").await;
    let rows = rejects["rejects"].as_array().unwrap();
    let parts: Vec<_> = rows
        .iter()
        .filter(|r| r["reason"] == "invalid_value")
        .collect();
    assert_eq!(parts.len(), 2, "{rejects}");
    assert!(parts.iter().all(|r| r["partial"] == true));
    let detail = parts[0]["detail"].as_str().unwrap();
    assert!(
        detail.contains("pm10") && detail.contains("unknown_unit"),
        "{detail}"
    );
    assert!(
        parts[0]["payload_text"]
            .as_str()
            .unwrap()
            .contains("ug/Nm3")
    );
    let conflict: Vec<_> = rows.iter().filter(|r| r["reason"] == "conflict").collect();
    assert_eq!(conflict.len(), 1, "{rejects}");
    assert!(
        conflict[0]["payload_text"]
            .as_str()
            .unwrap()
            .contains("35.2")
    );
    app.stop().await;
}

/// Fields a format's catalogue ignores are listed and counted, per feed and field, in
/// `/api/v1/feeds` and `/metrics`; they are neither readings nor rejects.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ignored_fields_are_counted_per_field() {
    let app = TestApp::spawn().await;
    let at = minute_ago();
    let flood = json!({"id":"urn:ngsi-ld:FloodMonitoring:PY-WL-CHA","type":"FloodMonitoring",
        "observationDateTime":{"type":"Property","value": at.to_string()},
        "currentLevel":{"type":"Property","value":8.35,"unitCode":"MTR"},
        "alertLevel":{"type":"Property","value":8.0,"unitCode":"MTR"},
        "dangerLevel":{"type":"Property","value":10.0,"unitCode":"MTR"},
        "refDevice":{"type":"Relationship","object":"urn:ngsi-ld:Device:CHA-01"}});
    publish_all(
        app.broker_port,
        vec![(
            "py/ngsi-ld/FloodMonitoring".into(),
            flood.to_string().into_bytes(),
        )],
    )
    .await;
    wait_for("the message stored", Duration::from_secs(20), || async {
        stored(&app, "pho-yen").await == 1
    })
    .await;
    let feeds = app.get("/api/v1/feeds").await;
    let py = feeds["feeds"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["feed"] == "pho-yen")
        .unwrap();
    let since = &py["since_start"];
    assert_eq!(since["readings"], 1, "{since}");
    assert_eq!(since["readings_rejected"], 0, "{since}");
    assert_eq!(since["ignored_fields"], 3, "{since}");
    assert_eq!(
        since["ignored_by_field"],
        json!({"alertLevel": 1, "dangerLevel": 1, "refDevice": 1})
    );
    let metrics = app.metrics().await;
    let series = "ioc_fields_ignored_total{feed=\"pho-yen\",field=\"alertLevel\"} ";
    assert!(
        metrics.lines().any(|l| l.starts_with(series)),
        "no {series} in /metrics"
    );
    app.stop().await;
}
