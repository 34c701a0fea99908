//! Test harness: the app on free loopback ports with a temp store, an MQTT publisher, HTTP
//! helpers, and real external brokers (Mosquitto) found on PATH.

use std::{
    net::{SocketAddr, TcpListener},
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use ioc_aggregator::{app::App, auth, config::Config, store::Store};
use rumqttc::{AsyncClient, Event, MqttOptions, Outgoing, Packet, QoS};
use serde_json::Value;
use tokio_util::sync::CancellationToken;

/// A free TCP port on 127.0.0.1 (bound and released; the tiny race is acceptable in tests).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("binding an ephemeral loopback port")
}

/// Configuration for tests: the shipped default (so its catalogue is what we test), with the
/// simulator off, every port free, the store in `dir`, and feeds pointed at `broker_port`.
pub fn test_config(dir: &Path, broker_port: u16, embedded_broker: bool) -> Config {
    let mut config =
        Config::from_toml_str(ioc_aggregator::config::DEFAULT_TOML).expect("default config");
    config.api.listen = "127.0.0.1:0".parse().unwrap();
    config.store.path = dir.join("ioc.db");
    config.store.synchronous = ioc_aggregator::store::Synchronous::Normal;
    config.simulator.enabled = false;
    config.broker.enabled = embedded_broker;
    config.broker.listen = SocketAddr::from(([127, 0, 0, 1], broker_port));
    let run = unique("run");
    for feed in &mut config.feeds {
        feed.broker = format!("mqtt://127.0.0.1:{broker_port}");
        feed.client_id = Some(format!("it-{}-{run}", feed.name));
        feed.reconnect_max = Duration::from_secs(1);
    }
    config
}

pub fn unique(prefix: &str) -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    format!(
        "{prefix}-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

/// The app running in this process.
pub struct TestApp {
    pub base: String,
    pub http: reqwest::Client,
    pub broker_port: u16,
    pub store: Store,
    /// A token of every city that reads and scrapes, for the harness's own requests (the app
    /// may read nothing anonymously).
    harness: String,
    stop: CancellationToken,
    task: Option<tokio::task::JoinHandle<anyhow::Result<()>>>,
    pub _dir: Option<tempfile::TempDir>,
}

impl TestApp {
    /// Start with the embedded broker on a free port.
    pub async fn spawn() -> TestApp {
        let dir = tempfile::tempdir().unwrap();
        let port = free_port();
        let config = test_config(dir.path(), port, true);
        Self::start(config, port, Some(dir)).await
    }

    pub async fn start(
        config: Config,
        broker_port: u16,
        dir: Option<tempfile::TempDir>,
    ) -> TestApp {
        let app = App::build(config).await.expect("app builds");
        let base = format!("http://{}", app.api_addr());
        let store = app.store().clone();
        let every_city = "all".parse().unwrap();
        let scopes = [auth::Scope::Read, auth::Scope::Metrics];
        let (harness, _) =
            auth::create(&store, &unique("test-harness"), &every_city, &scopes, None)
                .await
                .unwrap();
        let stop = CancellationToken::new();
        let s = stop.clone();
        let task = tokio::spawn(app.run_until(async move { s.cancelled().await }));
        let t = TestApp {
            base,
            http: reqwest::Client::new(),
            broker_port,
            store,
            harness,
            stop,
            task: Some(task),
            _dir: dir,
        };
        t.wait_connected().await;
        t
    }

    async fn wait_connected(&self) {
        wait_for("all feeds connected", Duration::from_secs(20), || async {
            let feeds = self.get("/api/v1/feeds").await;
            feeds["feeds"]
                .as_array()
                .is_some_and(|f| !f.is_empty() && f.iter().all(|f| f["connected"] == true))
        })
        .await;
    }

    /// A new bearer token named `name` for `cities` (`all` or ids with commas) and `scopes`
    /// (with commas), as `ioc-aggregator token create` makes it.
    pub async fn token(&self, name: &str, cities: &str, scopes: &str) -> String {
        let cities = cities.parse().unwrap();
        let scopes = auth::parse_scopes(scopes).unwrap();
        let (token, _) = auth::create(&self.store, name, &cities, &scopes, None)
            .await
            .unwrap();
        token
    }

    pub async fn get(&self, path: &str) -> Value {
        let (status, body) = self.get_status(path).await;
        assert_eq!(status, 200, "GET {path} → {status}: {body}");
        body
    }

    /// The Prometheus text of `/metrics` (the recorder is shared by every test of the binary).
    pub async fn metrics(&self) -> String {
        self.http
            .get(format!("{}/metrics", self.base))
            .bearer_auth(&self.harness)
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    }

    pub async fn get_status(&self, path: &str) -> (u16, Value) {
        let resp = self
            .http
            .get(format!("{}{path}", self.base))
            .bearer_auth(&self.harness)
            .send()
            .await
            .unwrap_or_else(|e| panic!("GET {path}: {e}"));
        let status = resp.status().as_u16();
        let text = resp.text().await.unwrap();
        let body = serde_json::from_str(&text).unwrap_or(Value::String(text));
        (status, body)
    }

    pub async fn stop(mut self) {
        self.stop.cancel();
        if let Some(task) = self.task.take() {
            task.await.unwrap().unwrap();
        }
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

/// Poll `check` until it is true or `timeout` passes (then panic naming `what`).
pub async fn wait_for<F, Fut>(what: &str, timeout: Duration, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if check().await {
            return;
        }
        if Instant::now() > deadline {
            panic!("timed out after {timeout:?} waiting for {what}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Publish every message with QoS 1 and wait until the broker acknowledged all of them.
pub async fn publish_all(port: u16, messages: Vec<(String, Vec<u8>)>) {
    let mut opts = MqttOptions::new(unique("pub"), "127.0.0.1", port);
    opts.set_max_packet_size(16 << 20, 16 << 20)
        .set_inflight(100)
        .set_keep_alive(Duration::from_secs(30));
    let (client, mut eventloop) = AsyncClient::new(opts, 1000);
    let total = messages.len();
    let sender = tokio::spawn(async move {
        for (topic, payload) in messages {
            client
                .publish(topic, QoS::AtLeastOnce, false, payload)
                .await
                .expect("publish request");
        }
        client
    });
    let mut acked = 0;
    while acked < total {
        match tokio::time::timeout(Duration::from_secs(30), eventloop.poll()).await {
            Ok(Ok(Event::Incoming(Packet::PubAck(_)))) => acked += 1,
            Ok(Ok(_)) => {}
            Ok(Err(e)) => panic!("publisher connection failed after {acked}/{total} acks: {e}"),
            Err(_) => panic!("publisher stalled after {acked}/{total} acks"),
        }
    }
    let client = sender.await.unwrap();
    client.disconnect().await.ok();
    while let Ok(Ok(ev)) = tokio::time::timeout(Duration::from_secs(2), eventloop.poll()).await {
        if matches!(ev, Event::Outgoing(Outgoing::Disconnect)) {
            break;
        }
    }
}

/// Find an external program on PATH (and the sbin directories Debian installs daemons to).
/// Missing: say so loudly; under CI that is a failure, not a skip.
pub fn require_binary(name: &str, package: &str) -> Option<PathBuf> {
    let mut dirs: Vec<PathBuf> = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).collect())
        .unwrap_or_default();
    dirs.extend(["/usr/sbin", "/usr/local/sbin", "/sbin"].map(PathBuf::from));
    if let Some(found) = dirs.iter().map(|d| d.join(name)).find(|p| p.is_file()) {
        return Some(found);
    }
    let msg = format!(
        "\n*** `{name}` not found on PATH: install the Debian package `{package}` (apt-get install -y {package}). ***\n"
    );
    if std::env::var_os("CI").is_some() {
        panic!("{msg}CI is set, so a missing external binary fails the run.");
    }
    eprintln!("{msg}SKIPPING this test (set CI to make it fail).");
    None
}

/// A real Mosquitto on a free loopback port, configured not to drop queued QoS 1 messages.
pub struct Mosquitto {
    pub port: u16,
    child: Child,
    /// Holds the config and persistence files until the broker is gone.
    _dir: tempfile::TempDir,
}

impl Mosquitto {
    pub fn start() -> Option<Mosquitto> {
        let binary = require_binary("mosquitto", "mosquitto")?;
        let dir = tempfile::tempdir().unwrap();
        let port = free_port();
        let mut m = Mosquitto {
            port,
            child: Self::launch(&binary, dir.path(), port),
            _dir: dir,
        };
        m.wait_ready();
        Some(m)
    }

    fn launch(binary: &Path, dir: &Path, port: u16) -> Child {
        let conf = dir.join("mosquitto.conf");
        std::fs::write(
            &conf,
            format!(
                "listener {port} 127.0.0.1\nallow_anonymous true\nmax_queued_messages 0\n\
                 max_inflight_messages 100\npersistence true\npersistence_location {}/\n\
                 log_dest stderr\nlog_type error\nlog_type warning\n",
                dir.display()
            ),
        )
        .unwrap();
        Command::new(binary)
            .arg("-c")
            .arg(&conf)
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("starting mosquitto")
    }

    fn wait_ready(&mut self) {
        wait_listening(&mut self.child, self.port);
    }
}

/// Wait until the broker just started as `child` accepts connections on `port` (panics if it
/// exits first or takes more than 10 s).
pub fn wait_listening(child: &mut Child, port: u16) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        if let Ok(Some(status)) = child.try_wait() {
            panic!("mosquitto exited at start: {status}");
        }
        assert!(
            Instant::now() < deadline,
            "mosquitto did not listen on {port}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

impl Drop for Mosquitto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A real VictoriaMetrics (it implements InfluxDB's `/api/v2/write`) on a free loopback port.
/// Dedup at 1 ms makes a replayed point overwrite, as InfluxDB does.
pub struct VictoriaMetrics {
    pub port: u16,
    binary: PathBuf,
    dir: tempfile::TempDir,
    child: Option<Child>,
}

impl VictoriaMetrics {
    pub async fn start() -> Option<VictoriaMetrics> {
        let binary = require_binary("victoria-metrics", "victoria-metrics")?;
        let mut vm = VictoriaMetrics {
            port: free_port(),
            binary,
            dir: tempfile::tempdir().unwrap(),
            child: None,
        };
        vm.restart().await;
        Some(vm)
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Start (again) on the same port and data directory.
    pub async fn restart(&mut self) {
        let child = Command::new(&self.binary)
            .arg(format!("-httpListenAddr=127.0.0.1:{}", self.port))
            .arg(format!("-storageDataPath={}", self.dir.path().display()))
            .arg("-dedup.minScrapeInterval=1ms")
            .arg("-retentionPeriod=100y")
            .arg("-loggerLevel=ERROR")
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("starting victoria-metrics");
        self.child = Some(child);
        let http = reqwest::Client::new();
        let url = format!("{}/health", self.url());
        wait_for(
            "victoria-metrics ready",
            Duration::from_secs(20),
            || async { http.get(&url).send().await.is_ok_and(|r| r.status() == 200) },
        )
        .await;
    }

    /// Stop it as a service restart does (SIGTERM: it persists its buffers, as a real InfluxDB
    /// has them in its WAL already).
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = Command::new("kill")
                .arg("-TERM")
                .arg(child.id().to_string())
                .status();
            let deadline = Instant::now() + Duration::from_secs(10);
            while child.try_wait().ok().flatten().is_none() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Every series whose name matches `regex`, after a flush: (name, labels, values, times).
    pub async fn export(&self, regex: &str) -> Vec<Value> {
        let http = reqwest::Client::new();
        http.get(format!("{}/internal/force_flush", self.url()))
            .send()
            .await
            .unwrap();
        let text = http
            .post(format!("{}/api/v1/export", self.url()))
            .form(&[
                ("match[]", format!("{{__name__=~\"{regex}\"}}")),
                ("start", "0".into()),
            ])
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        text.lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }
}

impl Drop for VictoriaMetrics {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A time as the Thái Nguyên vendor writes it: naive local time (UTC+7), second precision.
pub fn tn_local(t: jiff::Timestamp) -> String {
    t.to_zoned(jiff::tz::TimeZone::fixed(jiff::tz::offset(7)))
        .strftime("%Y-%m-%d %H:%M:%S")
        .to_string()
}

/// The aggregator binary as a separate process (so it can be SIGKILLed), killed if a test
/// ends without stopping it.
pub struct Aggregator {
    pub child: Child,
    pub base: String,
}

impl Aggregator {
    /// Logging warnings only, to nowhere.
    pub fn start(config: &Path, api_port: u16) -> Aggregator {
        Self::spawn(config, api_port, "warn", Stdio::null())
    }

    /// With its log (standard output) kept at `info`, for `stop_and_read_log`.
    pub fn start_logged(config: &Path, api_port: u16) -> Aggregator {
        Self::start_logged_at(config, api_port, "info")
    }

    /// With its log kept at `level` (a `RUST_LOG` filter), for `stop_and_read_log`.
    pub fn start_logged_at(config: &Path, api_port: u16, level: &str) -> Aggregator {
        Self::spawn(config, api_port, level, Stdio::piped())
    }

    fn spawn(config: &Path, api_port: u16, log: &str, stdout: Stdio) -> Aggregator {
        let child = Command::new(env!("CARGO_BIN_EXE_ioc-aggregator"))
            .arg("--config")
            .arg(config)
            .env("RUST_LOG", log)
            .stdout(stdout)
            .stderr(Stdio::inherit())
            .spawn()
            .expect("starting ioc-aggregator");
        Aggregator {
            child,
            base: format!("http://127.0.0.1:{api_port}"),
        }
    }

    pub fn kill(mut self) {
        self.child.kill().expect("SIGKILL");
        self.child.wait().unwrap();
    }

    /// Kill it and return what it logged (started with `start_logged`).
    pub fn stop_and_read_log(mut self) -> String {
        use std::io::Read;
        self.child.kill().expect("SIGKILL");
        let mut log = String::new();
        if let Some(mut out) = self.child.stdout.take() {
            out.read_to_string(&mut log).unwrap();
        }
        self.child.wait().unwrap();
        log
    }
}

impl Drop for Aggregator {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A configuration file for the binary: the three cities' feeds on `broker_port`, the API on
/// `api_port`, a store in `dir`, no embedded broker or simulator.
pub fn process_config(dir: &Path, broker_port: u16, api_port: u16) -> PathBuf {
    let run = unique("kill");
    let feeds: String = [
        ("thai-nguyen", "thai-nguyen-json", "tn/ioc/#"),
        ("song-cong", "senml", "sc/senml/#"),
        ("pho-yen", "ngsi-ld", "py/ngsi-ld/#"),
    ]
    .iter()
    .map(|(name, format, topic)| {
        format!(
            "[[feeds]]\nname = \"{name}\"\ncity = \"{name}\"\nformat = \"{format}\"\n\
             broker = \"mqtt://127.0.0.1:{broker_port}\"\nclient_id = \"{run}-{name}\"\n\
             topics = [\"{topic}\"]\nreconnect_max = \"1s\"\n\n"
        )
    })
    .collect();
    let text = format!(
        "[api]\nlisten = \"127.0.0.1:{api_port}\"\n\n[store]\npath = \"{}\"\n\n\
         [broker]\nenabled = false\n\n[simulator]\nenabled = false\n\n{feeds}",
        dir.join("ioc.db").display()
    );
    let path = dir.join("aggregator.toml");
    std::fs::write(&path, text).unwrap();
    path
}
