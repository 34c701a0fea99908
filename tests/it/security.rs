//! Access control through the real HTTP server: every route's policy (401/403), a single-city
//! token against every route of a store holding all three cities, revocation and expiry on a
//! running service, and the rate limit.

use std::time::Duration;

use ioc_aggregator::{
    api::{self, Anonymous},
    auth::{Policy, Scope},
};
use jiff::{Timestamp, ToSpan};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::common::{TestApp, free_port, publish_all, test_config, tn_local, wait_for};

/// Values and names only the other cities have: none may appear in a Sông Công token's answers.
const OTHER_CITIES: &[&str] = &[
    "thai-nguyen",
    "pho-yen",
    "Phổ Yên",
    "TN-AQ-HUNGVUONG",
    "PY-AQ-01",
    "613.87",
    "431.93",
];

/// An app that reads nothing anonymously, with alert rules that fire in every city and a
/// webhook receiver that never answers (one attempt: each notification is a dead letter at
/// once).
async fn closed_app(rate_per_second: u32) -> TestApp {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let mut config = test_config(dir.path(), port, true);
    config.api.anonymous = Some(Anonymous::None);
    config.api.rate_limit_per_second = rate_per_second;
    config.api.rate_limit_burst = rate_per_second;
    let mut alerts: ioc_aggregator::alert::AlertsConfig = toml::from_str(&format!(
        r#"
enabled = true
evaluation_interval = "200ms"
[[rules]]
name = "pm25_high"
kind = "threshold"
metric = "pm25"
above = 100.0
[[rules]]
name = "river_high"
kind = "threshold"
metric = "water_level"
above = 20.0
[[receivers]]
name = "nowhere"
url = "http://127.0.0.1:{}/hook"
secret = "whsec_dGVzdA=="
max_attempts = 1
"#,
        free_port()
    ))
    .unwrap();
    let mut problems = ioc_aggregator::settings::Problems::default();
    alerts.validate(&mut problems);
    assert!(problems.is_empty(), "{problems:?}");
    config.alerts = alerts;
    TestApp::start(config, port, Some(dir)).await
}

/// A request with an optional bearer token: status, headers and body.
async fn call(
    app: &TestApp,
    method: Method,
    path: &str,
    token: Option<&str>,
) -> (StatusCode, reqwest::header::HeaderMap, String) {
    let mut req = app.http.request(method, format!("{}{path}", app.base));
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    let resp = req.send().await.unwrap();
    let (status, headers) = (resp.status(), resp.headers().clone());
    (status, headers, resp.text().await.unwrap())
}

async fn get_json(app: &TestApp, path: &str, token: &str) -> Value {
    let (status, _, body) = call(app, Method::GET, path, Some(token)).await;
    assert_eq!(status, 200, "GET {path}: {body}");
    serde_json::from_str(&body).unwrap()
}

/// Readings in all three cities (values that exist nowhere else), and a malformed message each.
async fn publish_three_cities(app: &TestApp) {
    let at = Timestamp::now() - 1.minute();
    let tn = json!({"station":"TN-AQ-HUNGVUONG","ts": tn_local(at),"status":"measuring",
        "d":[{"tag":"PM25","value":613.87,"unit":"ug/m3"}]});
    let sc = json!([{"bn":"urn:dev:sc:wl-cau-01:","bt": at.as_second(),"bu":"m","n":"level","v":21.734}]);
    let py = json!({"id":"urn:ngsi-ld:AirQualityObserved:PY-AQ-01","type":"AirQualityObserved",
        "dateObserved":{"type":"Property","value": at.to_string()},
        "pm25":{"type":"Property","value":431.93,"unitCode":"GQ"}});
    let messages = vec![
        (
            "tn/ioc/air/TN-AQ-HUNGVUONG".into(),
            tn.to_string().into_bytes(),
        ),
        ("sc/senml/wl-cau-01".into(), sc.to_string().into_bytes()),
        (
            "py/ngsi-ld/AirQualityObserved".into(),
            py.to_string().into_bytes(),
        ),
        ("tn/ioc/air/TN-AQ-HUNGVUONG".into(), b"{not json".to_vec()),
        ("sc/senml/wl-cau-01".into(), b"{not json".to_vec()),
        (
            "py/ngsi-ld/AirQualityObserved".into(),
            b"{not json".to_vec(),
        ),
    ];
    publish_all(app.broker_port, messages).await;
}

/// The route's path with its parameters filled in: `{city}` with `city`, `{id}` with the id of
/// that kind of object.
fn fill(path: &str, city: &str, ids: &Ids) -> String {
    let id = if path.starts_with("/api/v1/devices/") {
        ids.device.clone()
    } else if path.starts_with("/api/v1/alerts/") {
        ids.alert.to_string()
    } else {
        ids.dead_letter.to_string()
    };
    path.replace("{city}", city).replace("{id}", &id)
}

/// One object of each kind in a city.
struct Ids {
    device: String,
    alert: i64,
    dead_letter: i64,
}

/// The ids of `city`'s objects, as a token of every city sees them.
async fn ids_of(app: &TestApp, all: &str, city: &str, device: &str) -> Ids {
    let alerts = get_json(app, &format!("/api/v1/alerts?city={city}"), all).await;
    let alert = alerts["alerts"][0]["id"]
        .as_i64()
        .expect("an alert in each city");
    let letters = get_json(app, "/api/v1/webhooks/dead-letters", all).await;
    let dead_letter = (letters["dead_letters"].as_array().unwrap().iter())
        .find(|d| d["alert_id"] == alert)
        .and_then(|d| d["id"].as_i64())
        .expect("a dead letter of each alert");
    Ids {
        device: device.to_owned(),
        alert,
        dead_letter,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_route_has_a_policy_and_answers_401_or_403_without_the_scope() {
    let app = closed_app(1000).await;
    let table = api::route_table();
    assert!(table.len() >= 18, "{table:?}");
    let ids = Ids {
        device: "wl-cau-01".into(),
        alert: 1,
        dead_letter: 1,
    };
    let nothing = app.token("no-scope-here", "all", "admin").await;
    let invalid = "iocagg_0000000000000000000000000000000000000000000000000";
    for route in &table {
        let path = fill(route.path, "song-cong", &ids);
        let (status, headers, body) = call(&app, route.method.clone(), &path, None).await;
        match route.policy {
            Policy::Public => assert!(status.is_success(), "{route:?}: {status} {body}"),
            Policy::Scope(scope) => {
                assert_eq!(status, 401, "{route:?} without a token: {body}");
                let challenge = headers["www-authenticate"].to_str().unwrap();
                assert!(challenge.starts_with("Bearer"), "{challenge}");
                let (status, headers, _) =
                    call(&app, route.method.clone(), &path, Some(invalid)).await;
                assert_eq!(status, 401, "{route:?} with an invalid token");
                let challenge = headers["www-authenticate"].to_str().unwrap();
                assert!(challenge.contains("invalid_token"), "{challenge}");
                if scope != Scope::Admin {
                    let (status, _, body) =
                        call(&app, route.method.clone(), &path, Some(&nothing)).await;
                    assert_eq!(status, 403, "{route:?} without {scope}: {body}");
                    assert!(!body.contains(&nothing), "a token must never be echoed");
                }
            }
        }
    }
    app.stop().await;
}

/// The routes are declared in one place only, each with its policy: no other code adds one.
#[test]
fn routes_are_added_only_through_the_policy_table() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src/api");
    let mut adders = Vec::new();
    for entry in walk(&dir) {
        let text = std::fs::read_to_string(&entry).unwrap();
        for (n, line) in text.lines().enumerate() {
            let code = line.split("//").next().unwrap_or_default();
            for call in [
                ".route(",
                ".route_service(",
                ".nest(",
                ".nest_service(",
                ".merge(",
            ] {
                if code.contains(call) {
                    adders.push(format!("{}:{}: {}", entry.display(), n + 1, line.trim()));
                }
            }
        }
    }
    // `Routes::add` adds each route with its policy; `router` merges the two declared groups.
    assert_eq!(adders.len(), 2, "{adders:#?}");
}

fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            out.extend(walk(&p));
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_city_token_sees_nothing_of_the_other_cities_on_any_route() {
    let app = closed_app(1000).await;
    publish_three_cities(&app).await;
    let all = app
        .token("province", "all", "read,ack,replay,metrics,admin")
        .await;
    let sc = app
        .token("song-cong-engineer", "song-cong", "read,ack,replay,admin")
        .await;
    wait_for(
        "an alert and a dead letter in each city",
        Duration::from_secs(20),
        || async {
            let letters = get_json(&app, "/api/v1/webhooks/dead-letters", &all).await;
            letters["count"].as_u64() >= Some(3)
        },
    )
    .await;
    let mine = ids_of(&app, &all, "song-cong", "wl-cau-01").await;
    let theirs = ids_of(&app, &all, "thai-nguyen", "TN-AQ-HUNGVUONG").await;
    // Something for the audit log in another city.
    let (status, _, _) = call(
        &app,
        Method::POST,
        &format!("/api/v1/alerts/{}/ack", theirs.alert),
        Some(&all),
    )
    .await;
    assert_eq!(status, 200);
    wait_for(
        "the overview to show every city",
        Duration::from_secs(10),
        || async {
            let o = get_json(&app, "/api/v1/overview", &all).await;
            o.to_string().contains("613.87") || o["cities"].as_array().is_some_and(|c| c.len() == 3)
        },
    )
    .await;

    let extra_queries = [
        "/api/v1/devices?domain=air_quality",
        "/api/v1/aggregates?metric=pm25",
        "/api/v1/aggregates?metric=pm25&group_by=device",
        "/api/v1/aggregates?metric=pm25&device=TN-AQ-HUNGVUONG",
        "/api/v1/aqi?station=TN-AQ-HUNGVUONG",
        "/api/v1/alerts?state=all",
        "/api/v1/rejects?reason=malformed_json",
    ];
    let mut checked = 0;
    for route in api::route_table() {
        let mut cases = vec![(fill(route.path, "song-cong", &mine), true)];
        if route.path.contains('{') {
            cases.push((fill(route.path, "thai-nguyen", &theirs), false));
        }
        match route.path {
            "/api/v1/aggregates" => cases[0].0.push_str("?metric=pm25"),
            "/api/v1/devices/{id}/series" => cases[0].0.push_str("?metric=water_level"),
            _ => {}
        }
        for (path, own) in cases {
            let (status, _, body) = call(&app, route.method.clone(), &path, Some(&sc)).await;
            // The static page names the province's three cities; it holds no data. An answer
            // may repeat what the request itself named (`no device "TN-…"`).
            let data = route.path != "/";
            for other in OTHER_CITIES.iter().filter(|o| data && !path.contains(*o)) {
                assert!(
                    !body.contains(other),
                    "{} {path} shows {other:?}: {body}",
                    route.method
                );
            }
            let expected: &[u16] = match (route.policy, own) {
                (Policy::Scope(Scope::Metrics), _) => &[403],
                (_, true) => &[200],
                // Another city's summary is forbidden; its objects do not exist.
                _ if route.path.contains("{city}") => &[403],
                _ => &[404],
            };
            assert!(
                expected.contains(&status.as_u16()),
                "{} {path}: {status} {body}",
                route.method
            );
            checked += 1;
        }
    }
    for path in extra_queries {
        let (status, _, body) = call(&app, Method::GET, path, Some(&sc)).await;
        assert!(status == 200 || status == 404, "{path}: {status} {body}");
        for other in OTHER_CITIES.iter().filter(|o| !path.contains(*o)) {
            assert!(!body.contains(other), "GET {path} shows {other:?}: {body}");
        }
    }
    assert!(checked >= 24, "{checked}");
    // The province's token sees what the city's does not, so the checks above were not vacuous.
    let overview = get_json(&app, "/api/v1/overview", &all).await.to_string();
    assert!(overview.contains("thai-nguyen") && overview.contains("song-cong"));
    let devices = get_json(&app, "/api/v1/devices/TN-AQ-HUNGVUONG", &all).await;
    assert!(devices.to_string().contains("613.87"), "{devices}");
    let audit = get_json(&app, "/api/v1/audit", &all).await;
    assert_eq!(
        audit["count"], 3,
        "the other city's ack, then ours: {audit}"
    );
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revocation_and_expiry_act_on_the_next_request() {
    let app = closed_app(1000).await;
    let token = app.token("screen-1", "all", "read").await;
    let (status, _, _) = call(&app, Method::GET, "/api/v1/feeds", Some(&token)).await;
    assert_eq!(status, 200);
    assert!(app.store.revoke_token("screen-1").await.unwrap());
    let (status, _, body) = call(&app, Method::GET, "/api/v1/feeds", Some(&token)).await;
    assert_eq!(status, 401, "{body}");

    let cities = "all".parse().unwrap();
    let (short, _) = ioc_aggregator::auth::create(
        &app.store,
        "screen-2",
        &cities,
        &[Scope::Read],
        Some(Duration::from_millis(300)),
    )
    .await
    .unwrap();
    let (status, _, _) = call(&app, Method::GET, "/api/v1/feeds", Some(&short)).await;
    assert_eq!(status, 200);
    tokio::time::sleep(Duration::from_millis(400)).await;
    let (status, _, _) = call(&app, Method::GET, "/api/v1/feeds", Some(&short)).await;
    assert_eq!(status, 401);
    // Who used what, and when, is listed; the secret is not.
    let rows = app.store.tokens().await.unwrap();
    assert!(rows.iter().all(|r| r.secret_hash.len() == 32));
    assert!(
        rows.iter()
            .any(|r| r.name == "screen-1" && r.revoked_at.is_some())
    );
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_caller_over_its_rate_gets_429_with_retry_after() {
    let app = closed_app(2).await;
    let token = app.token("script", "song-cong", "read").await;
    let mut statuses = Vec::new();
    let mut retry_after = None;
    for _ in 0..5 {
        let (status, headers, _) = call(&app, Method::GET, "/api/v1/feeds", Some(&token)).await;
        statuses.push(status.as_u16());
        if status == 429 {
            retry_after = headers
                .get("retry-after")
                .map(|v| v.to_str().unwrap().to_owned());
        }
    }
    assert_eq!(&statuses[..2], [200, 200], "{statuses:?}");
    assert!(statuses.contains(&429), "{statuses:?}");
    assert!(retry_after.is_some_and(|s| s.parse::<u64>().unwrap() >= 1));
    // Another caller has its own allowance.
    let other = app.token("screen", "song-cong", "read").await;
    let (status, _, _) = call(&app, Method::GET, "/api/v1/feeds", Some(&other)).await;
    assert_eq!(status, 200);
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_api_speaks_https_with_the_configured_certificate() {
    ioc_aggregator::install_crypto_provider();
    let dir = tempfile::tempdir().unwrap();
    let cert =
        rcgen::generate_simple_self_signed(vec!["localhost".into(), "127.0.0.1".into()]).unwrap();
    let (cert_path, key_path) = (dir.path().join("api.crt"), dir.path().join("api.key"));
    std::fs::write(&cert_path, cert.cert.pem()).unwrap();
    std::fs::write(&key_path, cert.key_pair.serialize_pem()).unwrap();
    let mut config = test_config(dir.path(), free_port(), true);
    config.api.tls_cert = Some(cert_path);
    config.api.tls_key = Some(key_path);
    let app = ioc_aggregator::app::App::build(config).await.unwrap();
    let addr = app.api_addr();
    let stop = tokio_util::sync::CancellationToken::new();
    let s = stop.clone();
    let task = tokio::spawn(app.run_until(async move { s.cancelled().await }));

    let trusting = reqwest::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(cert.cert.pem().as_bytes()).unwrap())
        .build()
        .unwrap();
    let resp = trusting
        .get(format!("https://localhost:{}/healthz", addr.port()))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let feeds = trusting
        .get(format!("https://127.0.0.1:{}/api/v1/feeds", addr.port()))
        .send()
        .await
        .unwrap();
    assert_eq!(feeds.status(), 200, "anonymous read on loopback, over TLS");
    // Plain HTTP gets no answer, and a client that does not trust the certificate refuses it.
    let plain = reqwest::get(format!("http://127.0.0.1:{}/healthz", addr.port())).await;
    assert!(plain.is_err() || !plain.unwrap().status().is_success());
    let untrusting = reqwest::Client::new();
    assert!(
        untrusting
            .get(format!("https://localhost:{}/healthz", addr.port()))
            .send()
            .await
            .is_err()
    );
    stop.cancel();
    task.await.unwrap().unwrap();
}

/// The compose deployment is closed by default: no secret has a default, Mosquitto takes no
/// anonymous client, and only the API (which needs a token) listens beyond the host.
#[test]
fn the_compose_deployment_is_closed_by_default() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let compose = std::fs::read_to_string(root.join("docker-compose.yml")).unwrap();
    assert!(
        !compose.contains(":-"),
        "a variable with a default value in docker-compose.yml"
    );
    for line in compose.lines().map(str::trim) {
        let Some(port) = line.strip_prefix("- \"").and_then(|l| l.strip_suffix('"')) else {
            continue;
        };
        if port.split(':').count() >= 2 && port.chars().next().is_some_and(|c| c.is_ascii_digit()) {
            assert!(
                port.starts_with("127.0.0.1:") || port == "8080:8080",
                "{port} is published beyond the host"
            );
        }
    }
    for secret in [
        "MQTT_PASSWORD",
        "INFLUX_PASSWORD",
        "INFLUX_TOKEN",
        "GRAFANA_ADMIN_PASSWORD",
    ] {
        assert!(
            compose.contains(&format!("${{{secret}:?")),
            "{secret} must be required"
        );
    }
    let mosquitto = std::fs::read_to_string(root.join("deploy/mosquitto/mosquitto.conf")).unwrap();
    assert!(mosquitto.contains("allow_anonymous false") && mosquitto.contains("password_file"));
    assert!(!mosquitto.contains("allow_anonymous true"));
    let docker = std::fs::read_to_string(root.join("config/docker.toml")).unwrap();
    assert!(docker.contains("anonymous = \"none\""));
}

/// Tokens never reach the log, even at `debug` with every request traced: not a valid one, not
/// a refused one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_never_appear_in_the_log() {
    let dir = tempfile::tempdir().unwrap();
    let api_port = free_port();
    let config = crate::common::process_config(dir.path(), free_port(), api_port);
    let created = std::process::Command::new(env!("CARGO_BIN_EXE_ioc-aggregator"))
        .arg("--config")
        .arg(&config)
        .args([
            "token",
            "create",
            "--name",
            "screen",
            "--cities",
            "song-cong",
            "--scopes",
            "read",
        ])
        .output()
        .unwrap();
    assert!(
        created.status.success(),
        "{}",
        String::from_utf8_lossy(&created.stderr)
    );
    let token = String::from_utf8(created.stdout).unwrap().trim().to_owned();
    assert!(token.starts_with("iocagg_") && token.len() == 57, "{token}");
    let listed = std::process::Command::new(env!("CARGO_BIN_EXE_ioc-aggregator"))
        .arg("--config")
        .arg(&config)
        .args(["token", "list"])
        .output()
        .unwrap();
    let listed = String::from_utf8_lossy(&listed.stdout);
    assert!(
        listed.contains("screen")
            && listed.contains("song-cong")
            && !listed.contains(&token[7..20])
    );

    let service = crate::common::Aggregator::start_logged_at(&config, api_port, "debug");
    ioc_aggregator::install_crypto_provider();
    let http = reqwest::Client::new();
    let refused = format!("{}x", &token[..token.len() - 1]);
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    let mut answered = Vec::new();
    while answered.len() < 2 && std::time::Instant::now() < deadline {
        answered.clear();
        for t in [&token, &refused] {
            if let Ok(r) = http
                .get(format!("{}/api/v1/feeds", service.base))
                .bearer_auth(t)
                .send()
                .await
            {
                answered.push(r.status().as_u16());
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let log = service.stop_and_read_log();
    assert_eq!(answered, [200, 401], "{log}");
    assert!(log.contains("Refused a bearer token"), "{log}");
    assert!(
        !log.contains(&token[7..]) && !log.contains(&refused[7..]),
        "a token in the log:\n{log}"
    );
}
