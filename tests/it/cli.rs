//! The binary's commands, run as a user would.

use std::process::Command;

fn aggregator() -> Command {
    Command::new(env!("CARGO_BIN_EXE_ioc-aggregator"))
}

/// Run a command that must succeed and print JSON; its output.
fn json_output(command: &mut Command) -> serde_json::Value {
    let out = command.output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

#[test]
fn check_config_lists_every_problem_with_its_key_path() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad.toml");
    std::fs::write(
        &path,
        r#"
[api]
listen = "localhost-ish"
[ingest]
max_future_skew = "soon"
[[feeds]]
name = "tn"
city = "ha-noi"
format = "senml"
broker = "mqtt://127.0.0.1:1883"
topics = ["a/#"]
[[feeds]]
name = "sc"
city = "song-cong"
format = "json"
broker = "ftp://x"
topics = ["a/#/b"]
"#,
    )
    .unwrap();
    let out = aggregator()
        .arg("--config")
        .arg(&path)
        .arg("check-config")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    for path in [
        "api.listen",
        "ingest.max_future_skew",
        "feeds[0].city",
        "feeds[1].broker",
        "feeds[1].topics[0]",
        "feeds[1].mapping",
    ] {
        assert!(
            stderr.contains(&format!("  - {path}: ")),
            "{path} missing from:\n{stderr}"
        );
    }
    let ok = aggregator().arg("check-config").output().unwrap();
    assert!(
        ok.status.success(),
        "{}",
        String::from_utf8_lossy(&ok.stderr)
    );
    assert!(String::from_utf8_lossy(&ok.stdout).contains("configuration is valid: 3 feed(s)"));
}

#[test]
fn try_mapping_prints_the_readings_or_why_the_payload_is_rejected() {
    let dir = tempfile::tempdir().unwrap();
    let good = dir.path().join("good.json");
    let now = jiff::Timestamp::now();
    std::fs::write(
        &good,
        format!(
            r#"[{{"bn":"urn:dev:sc:sc-aq-01:","bt":{},"n":"pm25","u":"ug/m3","v":18.5}}]"#,
            now.as_second() - 60
        ),
    )
    .unwrap();
    let out = json_output(
        aggregator()
            .args(["try-mapping", "song-cong"])
            .arg(&good)
            .args(["--topic", "sc/senml/sc-aq-01"]),
    );
    let readings = &out["readings"];
    assert_eq!(readings[0]["metric"], "pm25");
    assert_eq!(readings[0]["value"], 18.5);
    assert_eq!(readings[0]["city"], "song-cong");

    // A payload partly valid: the readings, and each rejected part with its reason.
    let partial = dir.path().join("partial.json");
    std::fs::write(
        &partial,
        format!(
            r#"[{{"bn":"urn:dev:sc:sc-aq-01:","bt":{},"n":"pm25","u":"ug/m3","v":18.5}},{{"n":"pm10","u":"furlong","v":3}}]"#,
            now.as_second() - 60
        ),
    )
    .unwrap();
    let out = json_output(
        aggregator()
            .args(["try-mapping", "song-cong"])
            .arg(&partial)
            .args(["--topic", "sc/senml/sc-aq-01"]),
    );
    assert_eq!(out["readings"].as_array().unwrap().len(), 1);
    assert_eq!(out["rejected"][0]["reason"], "unknown_unit");

    let bad = dir.path().join("bad.json");
    std::fs::write(
        &bad,
        r#"{"station":"TN-AQ-HUNGVUONG","d":[{"tag":"PM25","value":5}]}"#,
    )
    .unwrap();
    let out = aggregator()
        .args(["try-mapping", "thai-nguyen"])
        .arg(&bad)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let body: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(body["rejected"]["reason"], "missing_timestamp");

    let out = aggregator()
        .args(["try-mapping", "nowhere"])
        .arg(&bad)
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("no feed named \"nowhere\""));
}

#[test]
fn the_shipped_docker_config_is_valid_and_needs_its_secrets() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/config/docker.toml");
    let ok = aggregator()
        .args(["--config", path, "check-config"])
        .env("INFLUX_TOKEN", "compose-token")
        .env("MQTT_PASSWORD", "compose-password")
        .output()
        .unwrap();
    assert!(
        ok.status.success(),
        "{}",
        String::from_utf8_lossy(&ok.stderr)
    );
    let missing = aggregator()
        .args(["--config", path, "check-config"])
        .env_remove("INFLUX_TOKEN")
        .env_remove("MQTT_PASSWORD")
        .output()
        .unwrap();
    assert_eq!(missing.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&missing.stderr);
    assert!(stderr.contains("influx.token: environment variable INFLUX_TOKEN is not set"));
    assert!(
        stderr.contains("environment variable MQTT_PASSWORD is not set"),
        "{stderr}"
    );
}

/// The benchmark's load generator through a real Mosquitto: paced by a null QoS 1 subscriber,
/// every message it sent was acknowledged by the broker and delivered to the subscriber.
#[test]
fn loadgen_paced_by_a_null_subscriber_loses_nothing() {
    let Some(mosquitto) = crate::common::Mosquitto::start() else {
        return;
    };
    let summary = json_output(aggregator().args([
        "loadgen",
        "--broker",
        &format!("mqtt://127.0.0.1:{}", mosquitto.port),
        "--consumer",
        "null",
        "--window",
        "500",
        "--warmup",
        "1s",
        "--duration",
        "3s",
        "--devices",
        "5",
    ]));
    let sent = summary["sent"].as_u64().unwrap();
    assert!(sent > 1_000, "{summary}");
    assert_eq!(summary["acked"], sent, "{summary}");
    assert_eq!(summary["consumed"], sent, "{summary}");
    assert!(summary["consumer_rate_per_s"].as_f64().unwrap() > 0.0);

    // The API probe refuses anything but loopback.
    let out = aggregator()
        .args([
            "loadgen",
            "--api",
            "http://10.0.0.1:8080",
            "--duration",
            "1s",
        ])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("loopback"));
}

/// A service whose feed cannot reach its broker answers its readiness probes with 503 and
/// says why, and does not log each probe as a failed request: probes come every few seconds
/// for as long as a broker is down, and an operator's log must not fill with false errors.
/// The log (standard output) is plain text when it is not a terminal.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readiness_probes_answered_503_are_not_logged_as_failures() {
    let dir = tempfile::tempdir().unwrap();
    let api_port = crate::common::free_port();
    let unreachable = crate::common::free_port(); // nothing listens there
    let config = crate::common::process_config(dir.path(), unreachable, api_port);
    let service = crate::common::Aggregator::start_logged(&config, api_port);
    ioc_aggregator::install_crypto_provider();
    let http = reqwest::Client::new();
    let url = format!("{}/readyz", service.base);
    let mut answered = Vec::new();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while answered.len() < 5 && std::time::Instant::now() < deadline {
        if let Ok(response) = http.get(&url).send().await {
            let status = response.status().as_u16();
            answered.push((status, response.text().await.unwrap()));
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let log = service.stop_and_read_log();

    assert_eq!(answered.len(), 5, "{answered:?}\n{log}");
    for (status, body) in &answered {
        assert_eq!(*status, 503, "{body}");
        assert!(body.contains("feed thai-nguyen not connected"), "{body}");
    }
    assert!(log.contains(" INFO "), "the log was not captured:\n{log}");
    // Not a terminal: plain text, no colour codes in files and log collectors.
    assert!(!log.contains('\u{1b}'), "colour codes in the log:\n{log}");
    assert!(
        !log.contains("response failed"),
        "a probe was logged as a failure:\n{log}"
    );
}
