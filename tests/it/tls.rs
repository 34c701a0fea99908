//! MQTT over TLS to a real Mosquitto that requires client certificates and a password, with
//! certificates generated here: the right certificate and password connect and data flows; a
//! wrong CA, a missing certificate or a wrong password leave that feed disconnected with the
//! reason, retrying, while the other feeds keep flowing.

use std::{
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use ioc_aggregator::{app::App, source::FeedConfig};
use jiff::Timestamp;
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair};
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

use crate::common::{
    free_port, publish_all, require_binary, test_config, wait_for, wait_listening,
};

/// A certificate authority and what it signed, as PEM files in a directory.
struct Pki {
    dir: PathBuf,
}

impl Pki {
    fn file(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    /// A CA `name`, a server certificate for 127.0.0.1 and a client certificate signed by it.
    fn issue(&self, name: &str) {
        let ca_key = KeyPair::generate().unwrap();
        let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
        ca.distinguished_name
            .push(DnType::CommonName, format!("{name} test CA"));
        ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let ca_cert = ca.self_signed(&ca_key).unwrap();
        std::fs::write(self.file(&format!("{name}-ca.pem")), ca_cert.pem()).unwrap();
        for (leaf, sans) in [
            (
                "server",
                vec!["127.0.0.1".to_owned(), "localhost".to_owned()],
            ),
            ("client", vec!["ioc-aggregator".to_owned()]),
        ] {
            let key = KeyPair::generate().unwrap();
            let cert = CertificateParams::new(sans)
                .unwrap()
                .signed_by(&key, &ca_cert, &ca_key)
                .unwrap();
            std::fs::write(self.file(&format!("{name}-{leaf}.pem")), cert.pem()).unwrap();
            std::fs::write(
                self.file(&format!("{name}-{leaf}.key")),
                key.serialize_pem(),
            )
            .unwrap();
        }
    }
}

/// Mosquitto with a plain listener (for the test's publisher, password only) and a TLS listener
/// that requires a client certificate from `ca` and a password.
struct TlsMosquitto {
    plain: u16,
    tls: u16,
    child: Child,
}

impl TlsMosquitto {
    fn start(pki: &Pki) -> Option<TlsMosquitto> {
        let binary = require_binary("mosquitto", "mosquitto")?;
        let passwd = require_binary("mosquitto_passwd", "mosquitto")?;
        let passwords = pki.file("passwords");
        let status = Command::new(passwd)
            .args(["-b", "-c"])
            .arg(&passwords)
            .args(["sc-ioc", "đúng-mật-khẩu"])
            .status()
            .unwrap();
        assert!(status.success());
        let (plain, tls) = (free_port(), free_port());
        let conf = pki.file("mosquitto.conf");
        // `user root`: a broker started as root keeps reading the temp directory's files.
        std::fs::write(
            &conf,
            format!(
                "user root\nper_listener_settings false\nallow_anonymous false\npassword_file {}\n\
                 max_queued_messages 0\nlog_dest stderr\nlog_type error\n\
                 listener {plain} 127.0.0.1\n\
                 listener {tls} 127.0.0.1\ncafile {}\ncertfile {}\nkeyfile {}\nrequire_certificate true\n",
                passwords.display(),
                pki.file("good-ca.pem").display(),
                pki.file("good-server.pem").display(),
                pki.file("good-server.key").display(),
            ),
        )
        .unwrap();
        let child = Command::new(binary)
            .arg("-c")
            .arg(&conf)
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        let mut m = TlsMosquitto { plain, tls, child };
        wait_listening(&mut m.child, m.tls);
        Some(m)
    }
}

impl Drop for TlsMosquitto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A Sông Công feed named `name` to the TLS listener with these credentials.
fn feed(
    template: &FeedConfig,
    name: &str,
    port: u16,
    ca: &Path,
    cert: Option<(&Path, &Path)>,
    password: &str,
) -> FeedConfig {
    let mut f = template.clone();
    f.name = name.into();
    f.client_id = Some(format!("it-{name}-{}", Timestamp::now().as_millisecond()));
    f.broker = format!("mqtts://127.0.0.1:{port}");
    f.ca_file = Some(ca.to_owned());
    f.client_cert = cert.map(|(c, _)| c.to_owned());
    f.client_key = cert.map(|(_, k)| k.to_owned());
    f.username = Some("sc-ioc".into());
    f.password = Some(serde_json::from_value(json!(password)).unwrap());
    f
}

async fn feeds(http: &reqwest::Client, base: &str) -> Vec<Value> {
    let body: Value = http
        .get(format!("{base}/api/v1/feeds"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    body["feeds"].as_array().unwrap().clone()
}

fn by_name<'a>(feeds: &'a [Value], name: &str) -> &'a Value {
    feeds
        .iter()
        .find(|f| f["feed"] == name)
        .unwrap_or_else(|| panic!("no feed {name}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_certificates_and_passwords_decide_which_feeds_connect() {
    let dir = tempfile::tempdir().unwrap();
    let pki = Pki {
        dir: dir.path().to_owned(),
    };
    pki.issue("good");
    pki.issue("rogue");
    let Some(mosquitto) = TlsMosquitto::start(&pki) else {
        return;
    };
    let embedded = free_port();
    let mut config = test_config(dir.path(), embedded, true);
    let template = config
        .feeds
        .iter()
        .find(|f| f.name == "song-cong")
        .unwrap()
        .clone();
    config.feeds.retain(|f| f.name == "thai-nguyen");
    let (good_cert, good_key) = (pki.file("good-client.pem"), pki.file("good-client.key"));
    let good = Some((good_cert.as_path(), good_key.as_path()));
    let (ca, rogue_ca) = (pki.file("good-ca.pem"), pki.file("rogue-ca.pem"));
    let (rogue_cert, rogue_key) = (pki.file("rogue-client.pem"), pki.file("rogue-client.key"));
    config.feeds.extend([
        feed(
            &template,
            "sc-good",
            mosquitto.tls,
            &ca,
            good,
            "đúng-mật-khẩu",
        ),
        feed(
            &template,
            "sc-wrong-ca",
            mosquitto.tls,
            &rogue_ca,
            good,
            "đúng-mật-khẩu",
        ),
        feed(
            &template,
            "sc-no-cert",
            mosquitto.tls,
            &ca,
            None,
            "đúng-mật-khẩu",
        ),
        feed(
            &template,
            "sc-rogue-cert",
            mosquitto.tls,
            &ca,
            Some((&rogue_cert, &rogue_key)),
            "đúng-mật-khẩu",
        ),
        feed(
            &template,
            "sc-bad-password",
            mosquitto.tls,
            &ca,
            good,
            "sai",
        ),
    ]);
    let app = App::build(config).await.expect("app builds");
    let base = format!("http://{}", app.api_addr());
    let stop = CancellationToken::new();
    let s = stop.clone();
    let task = tokio::spawn(app.run_until(async move { s.cancelled().await }));
    let http = reqwest::Client::new();

    wait_for(
        "sc-good and thai-nguyen connected",
        Duration::from_secs(20),
        || async {
            let f = feeds(&http, &base).await;
            by_name(&f, "sc-good")["connected"] == true
                && by_name(&f, "thai-nguyen")["connected"] == true
        },
    )
    .await;
    // Data through the broker's plain listener reaches the TLS feed; the embedded broker's feed
    // flows beside the failing ones.
    let at = Timestamp::now();
    let sc =
        json!([{"bn":"urn:dev:sc:wl-cau-01:","bt": at.as_second(),"bu":"m","n":"level","v":21.5}]);
    publish_with_password(mosquitto.plain, "sc/senml/wl-cau-01", sc.to_string()).await;
    let tn = json!({"station":"TN-AQ-HUNGVUONG","ts": crate::common::tn_local(at),"status":"measuring",
        "d":[{"tag":"PM25","value":12.5,"unit":"ug/m3"}]});
    publish_all(
        embedded,
        vec![(
            "tn/ioc/air/TN-AQ-HUNGVUONG".into(),
            tn.to_string().into_bytes(),
        )],
    )
    .await;
    wait_for(
        "data on both brokers stored",
        Duration::from_secs(20),
        || async {
            let f = feeds(&http, &base).await;
            let stored = |n: &str| {
                by_name(&f, n)["since_start"]["stored"]
                    .as_u64()
                    .unwrap_or(0)
            };
            stored("sc-good") >= 1 && stored("thai-nguyen") >= 1
        },
    )
    .await;

    // Each refused feed says why, and keeps retrying (its error stays, it never connects).
    wait_for(
        "each refused feed to report its reason",
        Duration::from_secs(20),
        || async {
            let f = feeds(&http, &base).await;
            [
                "sc-wrong-ca",
                "sc-no-cert",
                "sc-rogue-cert",
                "sc-bad-password",
            ]
            .iter()
            .all(|n| {
                let feed = by_name(&f, n);
                feed["connected"] == false && feed["since_start"]["last_error"].is_string()
            })
        },
    )
    .await;
    let f = feeds(&http, &base).await;
    let error = |n: &str| {
        by_name(&f, n)["since_start"]["last_error"]
            .as_str()
            .unwrap()
            .to_lowercase()
    };
    assert!(
        error("sc-wrong-ca").contains("certificate") || error("sc-wrong-ca").contains("tls"),
        "{}",
        error("sc-wrong-ca")
    );
    assert!(
        error("sc-bad-password").contains("notauthorized")
            || error("sc-bad-password").contains("not authorized")
            || error("sc-bad-password").contains("bad user"),
        "{}",
        error("sc-bad-password")
    );
    for n in ["sc-no-cert", "sc-rogue-cert"] {
        assert!(!error(n).is_empty());
        assert_eq!(by_name(&f, n)["since_start"]["received"], 0, "{n}");
    }
    let health: Value = http
        .get(format!("{base}/readyz"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(health["status"], "not ready");
    assert!(
        health["problems"].to_string().contains("sc-bad-password"),
        "{health}"
    );
    stop.cancel();
    task.await.unwrap().unwrap();
}

/// Publish one QoS 1 message with the broker's password (plain listener).
async fn publish_with_password(port: u16, topic: &str, payload: String) {
    use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS};
    let mut opts = MqttOptions::new(
        format!("it-publisher-{}", Timestamp::now().as_millisecond()),
        "127.0.0.1",
        port,
    );
    opts.set_credentials("sc-ioc", "đúng-mật-khẩu");
    let (client, mut events) = AsyncClient::new(opts, 10);
    client
        .publish(topic, QoS::AtLeastOnce, false, payload)
        .await
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        assert!(Instant::now() < deadline, "no PUBACK from the broker");
        match tokio::time::timeout(Duration::from_secs(10), events.poll()).await {
            Ok(Ok(Event::Incoming(Packet::PubAck(_)))) => break,
            Ok(Ok(_)) => {}
            other => panic!("publisher: {other:?}"),
        }
    }
}
