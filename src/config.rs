//! Configuration: `config/default.toml` (embedded) or a file given with `--config`, then
//! `IOC__SECTION__KEY` environment overrides. Loading collects *every* problem with its key path
//! before failing, so an operator fixes a bad file in one pass.

use std::{
    collections::HashSet,
    fmt,
    net::SocketAddr,
    path::{Path, PathBuf},
    time::Duration,
};

use figment::{
    Figment,
    providers::{Env, Format, Toml},
};
use serde::{Deserialize, de::DeserializeOwned};
use serde_json::Value;

use crate::model::{City, Domain};

/// The shipped default configuration: what `cargo run` uses with no `--config`.
pub const DEFAULT_TOML: &str = include_str!("../config/default.toml");

/// Prefix of environment overrides: `IOC__API__LISTEN=0.0.0.0:8080`.
pub const ENV_PREFIX: &str = "IOC__";

/// One thing wrong with the configuration, with the key path where it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigProblem {
    pub path: String,
    pub message: String,
}

impl fmt::Display for ConfigProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.path, self.message)
    }
}

/// Every problem found in a configuration.
#[derive(Debug, thiserror::Error)]
pub struct ConfigError {
    pub source_name: String,
    pub problems: Vec<ConfigProblem>,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let n = self.problems.len();
        writeln!(f, "{n} problem(s) in configuration {}:", self.source_name)?;
        for p in &self.problems {
            writeln!(f, "  - {p}")?;
        }
        Ok(())
    }
}

/// A secret (password, token) that never appears in logs or `Debug` output. In the file it is a
/// literal, `env:VAR` (read from the environment) or `file:/path` (first line of a file).
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn expose(&self) -> &str {
        &self.0
    }

    fn resolve(spec: &str) -> Result<Secret, String> {
        if let Some(var) = spec.strip_prefix("env:") {
            std::env::var(var)
                .map(Secret)
                .map_err(|_| format!("environment variable {var} is not set"))
        } else if let Some(path) = spec.strip_prefix("file:") {
            std::fs::read_to_string(path)
                .map(|s| Secret(s.lines().next().unwrap_or_default().to_owned()))
                .map_err(|e| format!("cannot read secret file {path}: {e}"))
        } else {
            Ok(Secret(spec.to_owned()))
        }
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(***)")
    }
}

impl<'de> Deserialize<'de> for Secret {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let spec = String::deserialize(d)?;
        Secret::resolve(&spec).map_err(serde::de::Error::custom)
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
#[derive(Default)]
pub struct Config {
    pub api: ApiConfig,
    pub store: StoreConfig,
    pub ingest: IngestConfig,
    pub broker: EmbeddedBrokerConfig,
    pub simulator: SimulatorConfig,
    pub influx: InfluxConfig,
    pub alerts: crate::alert::AlertsConfig,
    pub log: LogConfig,
    pub feeds: Vec<FeedConfig>,
    pub devices: Vec<DeviceConfig>,
}

/// HTTP API.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ApiConfig {
    /// Address the API listens on. Port 0 picks a free port (tests).
    pub listen: SocketAddr,
    /// Requests taking longer than this get 503 (SSE streams are exempt).
    #[serde(with = "humantime_serde")]
    pub request_timeout: Duration,
    /// How often the overview (`/api/v1/overview`, `/api/v1/cities/{city}`) is recomputed in
    /// the background; requests get the latest one. Zero: computed on every request.
    #[serde(with = "humantime_serde")]
    pub overview_refresh: Duration,
}

impl Default for ApiConfig {
    fn default() -> Self {
        ApiConfig {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            request_timeout: Duration::from_secs(10),
            overview_refresh: Duration::from_secs(1),
        }
    }
}

/// SQLite durability level for commits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Synchronous {
    /// fsync on every commit: survives power loss.
    Full,
    /// fsync at checkpoints: survives a process crash, may lose the last commits on power loss.
    Normal,
}

/// The embedded store: the durability point and the API's query store.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StoreConfig {
    /// SQLite database file (created with its directory).
    pub path: PathBuf,
    pub synchronous: Synchronous,
    /// Raw readings older than this are deleted; ingest rejects readings older than this.
    #[serde(with = "humantime_serde")]
    pub retention: Duration,
    /// Rejected (quarantined) messages are kept this long.
    #[serde(with = "humantime_serde")]
    pub reject_retention: Duration,
    /// Most messages committed in one transaction.
    pub batch_max_messages: usize,
    /// How long a commit waits for more messages after the first one, so that commits under
    /// load are few and large (each rewrites every index page it touched).
    #[serde(with = "humantime_serde")]
    pub commit_linger: Duration,
    /// Capacity of the queue in front of the store writer, in messages.
    pub queue_capacity: usize,
    /// Read connections for API queries.
    pub read_connections: usize,
    /// Which value a series keeps when a reading arrives for a time it already has with
    /// another value (a correction, or a conflicting sender).
    pub on_conflict: OnConflict,
}

/// What happens when a reading meets a stored reading of the same device, metric and time
/// with another value (a redelivery has the same value and is a duplicate). Either way the
/// value not kept is recorded in the rejects as a `conflict`, and counted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OnConflict {
    /// The later reading replaces the stored one: a datalogger's correction wins.
    #[default]
    KeepLatest,
    /// The stored reading stays: nothing arriving later can change what was stored.
    KeepFirst,
}

impl Default for StoreConfig {
    fn default() -> Self {
        StoreConfig {
            path: PathBuf::from("data/ioc-aggregator.db"),
            synchronous: Synchronous::Full,
            retention: Duration::from_secs(30 * 86_400),
            reject_retention: Duration::from_secs(14 * 86_400),
            batch_max_messages: 10_000,
            commit_linger: Duration::from_millis(20),
            queue_capacity: 8_192,
            read_connections: 4,
            on_conflict: OnConflict::KeepLatest,
        }
    }
}

/// Validation limits applied to every message of every feed.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct IngestConfig {
    /// Readings stamped further than this in the future are rejected.
    #[serde(with = "humantime_serde")]
    pub max_future_skew: Duration,
    /// Payloads larger than this are rejected without parsing.
    pub max_payload_bytes: usize,
    /// How much of a rejected payload is kept in quarantine.
    pub quarantine_max_bytes: usize,
    /// Per-feed queue between the MQTT connection and the decoder, in messages.
    pub feed_queue_capacity: usize,
    /// A device is offline after this many expected intervals without data.
    pub offline_after_intervals: u32,
    /// Expected interval for a device before its own cadence has been learned.
    #[serde(with = "humantime_serde")]
    pub default_device_interval: Duration,
}

impl Default for IngestConfig {
    fn default() -> Self {
        IngestConfig {
            max_future_skew: Duration::from_secs(300),
            max_payload_bytes: 256 * 1024,
            quarantine_max_bytes: 64 * 1024,
            feed_queue_capacity: 256,
            offline_after_intervals: 3,
            default_device_interval: Duration::from_secs(300),
        }
    }
}

/// The embedded MQTT broker for the zero-setup default.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct EmbeddedBrokerConfig {
    pub enabled: bool,
    pub listen: SocketAddr,
}

impl Default for EmbeddedBrokerConfig {
    fn default() -> Self {
        EmbeddedBrokerConfig {
            enabled: false,
            listen: SocketAddr::from(([127, 0, 0, 1], 1883)),
        }
    }
}

/// The built-in simulator of the three IOCs.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SimulatorConfig {
    pub enabled: bool,
    /// Broker the simulator publishes to.
    pub broker: String,
    /// How often each simulated device reports.
    #[serde(with = "humantime_serde")]
    pub interval: Duration,
    /// History published at start so hourly and daily figures have data at once.
    #[serde(with = "humantime_serde")]
    pub backfill: Duration,
    /// Share of messages deliberately malformed (0.0–1.0).
    pub malformed_ratio: f64,
    /// Seed for the random generator (same seed, same data).
    pub seed: u64,
}

impl Default for SimulatorConfig {
    fn default() -> Self {
        SimulatorConfig {
            enabled: false,
            broker: "mqtt://127.0.0.1:1883".into(),
            interval: Duration::from_secs(10),
            backfill: Duration::from_secs(0),
            malformed_ratio: 0.01,
            seed: 2026,
        }
    }
}

/// Forwarding of stored readings to InfluxDB 2 (`/api/v2/write`), from the store's log.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct InfluxConfig {
    pub enabled: bool,
    /// Base URL, e.g. `http://influxdb:8086`.
    pub url: String,
    pub org: String,
    pub bucket: String,
    /// API token: a literal, `env:VAR` or `file:/path`. Required when enabled; never logged.
    pub token: Option<Secret>,
    /// Most readings per write request.
    pub batch_size: usize,
    /// How long a partial batch may wait before it is written.
    #[serde(with = "humantime_serde")]
    pub flush_interval: Duration,
    /// A write taking longer than this counts as failed and is retried.
    #[serde(with = "humantime_serde")]
    pub request_timeout: Duration,
    /// Cap of the exponential retry backoff while InfluxDB is down.
    #[serde(with = "humantime_serde")]
    pub retry_max: Duration,
}

impl Default for InfluxConfig {
    fn default() -> Self {
        InfluxConfig {
            enabled: false,
            url: "http://127.0.0.1:8086".into(),
            org: "thai-nguyen-ioc".into(),
            bucket: "ioc".into(),
            token: None,
            batch_size: 5_000,
            flush_interval: Duration::from_secs(1),
            request_timeout: Duration::from_secs(10),
            retry_max: Duration::from_secs(30),
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LogConfig {
    /// `tracing` filter, e.g. `info,ioc_aggregator=debug`. `RUST_LOG` wins when set.
    pub filter: String,
    /// `text` or `json`.
    pub format: LogFormat,
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig {
            filter: "info".into(),
            format: LogFormat::Text,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LogFormat {
    Text,
    Json,
}

/// Payload format of a feed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum FeedFormat {
    /// Thái Nguyên provincial IOC vendor JSON (tagged values, naive local time).
    ThaiNguyenJson,
    /// SenML, RFC 8428 (Sông Công).
    Senml,
    /// FIWARE NGSI-LD Smart Data Models (Phổ Yên).
    NgsiLd,
    /// Config-driven JSON mapping (`[feeds.mapping]`).
    Json,
}

/// MQTT protocol version spoken to a feed's broker.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MqttProtocol {
    V4,
    V5,
}

/// One IOC feed: an MQTT connection and the format of what it carries.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FeedConfig {
    /// Feed name, used in metrics, the API and the client id.
    pub name: String,
    pub city: City,
    pub format: FeedFormat,
    /// `mqtt://host:port` or `mqtts://host:port` (TLS with the system roots or `ca_file`).
    pub broker: String,
    /// Stable client id: the broker keeps the session (and queued messages) under it.
    #[serde(default)]
    pub client_id: Option<String>,
    /// Topic filters subscribed with QoS 1; `$share/group/...` works for scale-out.
    pub topics: Vec<String>,
    #[serde(default)]
    pub username: Option<String>,
    #[serde(default)]
    pub password: Option<Secret>,
    /// PEM file of CA certificates for `mqtts://` (default: system roots).
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
    #[serde(default = "default_protocol")]
    pub protocol: MqttProtocol,
    #[serde(default = "default_keep_alive", with = "humantime_serde")]
    pub keep_alive: Duration,
    /// MQTT 5 session expiry (ignored for v4, where the session lives until cleaned).
    #[serde(default = "default_session_expiry", with = "humantime_serde")]
    pub session_expiry: Duration,
    /// Longest wait between reconnect attempts (backoff doubles from 250 ms up to this).
    #[serde(default = "default_reconnect_max", with = "humantime_serde")]
    pub reconnect_max: Duration,
    /// UTC offset of naive vendor timestamps, in hours (Vietnam: +7, no DST).
    #[serde(default = "default_utc_offset_hours")]
    pub utc_offset_hours: i8,
    /// Field mapping, required when `format = "json"`.
    #[serde(default)]
    pub mapping: Option<JsonMapping>,
}

fn default_protocol() -> MqttProtocol {
    MqttProtocol::V4
}
fn default_keep_alive() -> Duration {
    Duration::from_secs(30)
}
fn default_session_expiry() -> Duration {
    Duration::from_secs(7 * 86_400)
}
fn default_reconnect_max() -> Duration {
    Duration::from_secs(30)
}
fn default_utc_offset_hours() -> i8 {
    7
}

impl FeedConfig {
    pub fn client_id(&self) -> String {
        self.client_id
            .clone()
            .unwrap_or_else(|| format!("ioc-aggregator-{}", self.name))
    }
}

/// How timestamps are written in a mapped JSON payload.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TimestampFormat {
    /// RFC 3339 / ISO 8601 with an offset (`2026-11-22T01:05:00Z`).
    Rfc3339,
    /// Seconds since the Unix epoch.
    Unix,
    /// Milliseconds since the Unix epoch.
    UnixMs,
    /// Naive local time `YYYY-MM-DD HH:MM:SS` (or with `T`) in the feed's `utc_offset_hours`.
    Local,
}

/// Telegraf json_v2-style mapping for onboarding a vendor without code. Pointers are RFC 6901
/// JSON pointers, relative to each record.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JsonMapping {
    /// Pointer to an array of records; absent: the payload is one record, or a top-level array
    /// of records.
    #[serde(default)]
    pub records: Option<String>,
    /// Pointer to the device id in a record.
    #[serde(default)]
    pub device_id: Option<String>,
    /// Take the device id from this topic level instead (0-based), e.g. 2 for `v/x/{device}`.
    #[serde(default)]
    pub device_id_topic_level: Option<usize>,
    /// Pointer to the observation time; absent: the time the message was received.
    #[serde(default)]
    pub timestamp: Option<String>,
    #[serde(default = "default_timestamp_format")]
    pub timestamp_format: TimestampFormat,
    /// Domain of every device of this feed.
    pub domain: Domain,
    /// Pointer to a status string (`measuring` / `calibrating` / `fault`).
    #[serde(default)]
    pub status: Option<String>,
    #[serde(default)]
    pub latitude: Option<String>,
    #[serde(default)]
    pub longitude: Option<String>,
    pub metrics: Vec<MetricMapping>,
}

fn default_timestamp_format() -> TimestampFormat {
    TimestampFormat::Rfc3339
}

/// One metric of a JSON mapping.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MetricMapping {
    /// Pointer to the value within a record.
    pub pointer: String,
    /// Canonical metric name (see the README's metric table) or a known vendor alias.
    pub metric: String,
    /// Unit of the value as sent (`ug/m3`, `mg/m3`, `ppm`, `cm`, `F`, ...).
    #[serde(default)]
    pub unit: Option<String>,
    /// When true, a record without this value is fine; otherwise the message is rejected.
    #[serde(default)]
    pub optional: bool,
}

/// A device known in advance: where it is, and for river gauges the flood alarm levels.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeviceConfig {
    pub id: String,
    pub city: City,
    pub domain: Domain,
    #[serde(default)]
    pub name: Option<String>,
    pub lat: f64,
    pub lon: f64,
    #[serde(default)]
    pub ward: Option<String>,
    /// `device` (surveyed) or `synthetic` (placed near a sourced anchor).
    #[serde(default = "default_position_source")]
    pub position_source: String,
    /// Expected reporting interval (default: learned from the data).
    #[serde(default, with = "humantime_serde")]
    pub interval: Option<Duration>,
    /// Flood alarm levels in metres (river gauges), lowest first: BĐ1, BĐ2, BĐ3. Give only
    /// the levels that are known (Chã has only BĐ1 confirmed).
    #[serde(default)]
    pub flood_levels: Vec<f64>,
    /// This device's own band per canonical metric, `[min, max]` in the canonical unit, inside
    /// the metric's possible range (e.g. a river gauge's `water_level = [15.0, 40.0]`): a
    /// reading outside is rejected as `invalid_value`.
    #[serde(default)]
    pub ranges: std::collections::BTreeMap<String, [f64; 2]>,
}

fn default_position_source() -> String {
    "synthetic".into()
}

impl Config {
    /// Load from `path` (or the embedded default), then apply `IOC__` environment overrides.
    pub fn load(path: Option<&Path>) -> Result<Config, ConfigError> {
        let (figment, source_name) = match path {
            Some(p) => (Figment::from(Toml::file_exact(p)), p.display().to_string()),
            None => (
                Figment::from(Toml::string(DEFAULT_TOML)),
                "config/default.toml (embedded)".to_owned(),
            ),
        };
        let figment = figment.merge(Env::prefixed(ENV_PREFIX).split("__"));
        let fail = |problems| ConfigError {
            source_name: source_name.clone(),
            problems,
        };
        let value: Value = figment.extract().map_err(|e| {
            fail(
                e.into_iter()
                    .map(|e| ConfigProblem {
                        path: e.path.join("."),
                        message: e.kind.to_string(),
                    })
                    .collect(),
            )
        })?;
        Config::from_value(value).map_err(fail)
    }

    /// Parse an in-memory TOML document (tests, `check-config`).
    pub fn from_toml_str(text: &str) -> Result<Config, ConfigError> {
        let fail = |problems| ConfigError {
            source_name: "<string>".into(),
            problems,
        };
        let value: Value = toml::from_str::<toml::Value>(text)
            .map_err(|e| {
                fail(vec![ConfigProblem {
                    path: "<toml>".into(),
                    message: e.to_string(),
                }])
            })
            .and_then(|v| {
                serde_json::to_value(v).map_err(|e| {
                    fail(vec![ConfigProblem {
                        path: "<toml>".into(),
                        message: e.to_string(),
                    }])
                })
            })?;
        Config::from_value(value).map_err(fail)
    }

    /// Deserialize section by section (and feed by feed) so one bad value does not hide the
    /// rest, then check the cross-field rules.
    fn from_value(value: Value) -> Result<Config, Vec<ConfigProblem>> {
        let mut problems = Vec::new();
        let Value::Object(mut top) = value else {
            return Err(vec![ConfigProblem {
                path: "<root>".into(),
                message: "configuration must be a table".into(),
            }]);
        };
        let (feed_index, feeds) = list(top.remove("feeds"), "feeds", &mut problems);
        let (device_index, devices) = list(top.remove("devices"), "devices", &mut problems);
        let mut config = Config {
            api: section(top.remove("api"), "api", &mut problems),
            store: section(top.remove("store"), "store", &mut problems),
            ingest: section(top.remove("ingest"), "ingest", &mut problems),
            broker: section(top.remove("broker"), "broker", &mut problems),
            simulator: section(top.remove("simulator"), "simulator", &mut problems),
            influx: section(top.remove("influx"), "influx", &mut problems),
            alerts: section(top.remove("alerts"), "alerts", &mut problems),
            log: section(top.remove("log"), "log", &mut problems),
            feeds,
            devices,
        };
        for key in top.keys() {
            problems.push(ConfigProblem {
                path: key.clone(),
                message: "unknown section".into(),
            });
        }
        config.validate(&mut problems, &feed_index, &device_index);
        if problems.is_empty() {
            Ok(config)
        } else {
            Err(problems)
        }
    }

    /// Cross-field rules. `feed_index` / `device_index` give each entry's position in the file
    /// (entries that failed to parse are already reported and absent here).
    fn validate(
        &mut self,
        problems: &mut Vec<ConfigProblem>,
        feed_index: &[usize],
        device_index: &[usize],
    ) {
        self.alerts.rules(problems);
        let mut problem = |path: String, message: String| {
            problems.push(ConfigProblem { path, message });
        };
        if self.store.batch_max_messages == 0 {
            problem(
                "store.batch_max_messages".into(),
                "must be at least 1".into(),
            );
        }
        if self.store.queue_capacity == 0 {
            problem("store.queue_capacity".into(), "must be at least 1".into());
        }
        if self.store.read_connections == 0 {
            problem("store.read_connections".into(), "must be at least 1".into());
        }
        if self.ingest.feed_queue_capacity == 0 {
            problem(
                "ingest.feed_queue_capacity".into(),
                "must be at least 1".into(),
            );
        }
        if self.ingest.quarantine_max_bytes > self.ingest.max_payload_bytes {
            problem(
                "ingest.quarantine_max_bytes".into(),
                "must not exceed ingest.max_payload_bytes".into(),
            );
        }
        if !(0.0..=1.0).contains(&self.simulator.malformed_ratio) {
            problem(
                "simulator.malformed_ratio".into(),
                "must be between 0.0 and 1.0".into(),
            );
        }
        if self.simulator.enabled && self.simulator.interval.is_zero() {
            problem("simulator.interval".into(), "must be positive".into());
        }
        if self.simulator.enabled
            && let Err(e) = parse_broker_url(&self.simulator.broker)
        {
            problem("simulator.broker".into(), e);
        }
        if self.influx.enabled {
            if self.influx.token.is_none() {
                problem(
                    "influx.token".into(),
                    "required when influx.enabled = true".into(),
                );
            }
            match url::Url::parse(&self.influx.url) {
                Ok(u) if matches!(u.scheme(), "http" | "https") => {}
                _ => problem(
                    "influx.url".into(),
                    format!("{:?} is not an http(s) URL", self.influx.url),
                ),
            }
            if self.influx.org.is_empty() {
                problem("influx.org".into(), "must not be empty".into());
            }
            if self.influx.bucket.is_empty() {
                problem("influx.bucket".into(), "must not be empty".into());
            }
        }
        if self.influx.batch_size == 0 {
            problem("influx.batch_size".into(), "must be at least 1".into());
        }
        let mut names = HashSet::new();
        let mut client_ids = HashSet::new();
        for (&i, feed) in feed_index.iter().zip(&self.feeds) {
            let at = |key: &str| format!("feeds[{i}].{key}");
            if feed.name.is_empty()
                || !feed
                    .name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
            {
                problem(
                    at("name"),
                    "must be non-empty and use only ASCII letters, digits, '-' and '_'".into(),
                );
            }
            if !names.insert(feed.name.clone()) {
                problem(at("name"), format!("duplicate feed name {:?}", feed.name));
            }
            if !client_ids.insert(feed.client_id()) {
                problem(
                    at("client_id"),
                    format!(
                        "client id {:?} is used by another feed; persistent sessions need unique ids",
                        feed.client_id()
                    ),
                );
            }
            if let Err(e) = parse_broker_url(&feed.broker) {
                problem(at("broker"), e);
            }
            if feed.topics.is_empty() {
                problem(at("topics"), "at least one topic filter is required".into());
            }
            for (j, t) in feed.topics.iter().enumerate() {
                if let Err(e) = check_topic_filter(t) {
                    problem(format!("feeds[{i}].topics[{j}]"), e);
                }
            }
            if feed.keep_alive < Duration::from_secs(1) {
                problem(at("keep_alive"), "must be at least 1s".into());
            }
            if feed.protocol == MqttProtocol::V5 && feed.session_expiry.is_zero() {
                problem(
                    at("session_expiry"),
                    "must be non-zero: a zero expiry discards the session on disconnect".into(),
                );
            }
            if !(-12..=14).contains(&feed.utc_offset_hours) {
                problem(at("utc_offset_hours"), "must be between -12 and 14".into());
            }
            match (&feed.format, &feed.mapping) {
                (FeedFormat::Json, None) => {
                    problem(at("mapping"), "required when format = \"json\"".into())
                }
                (FeedFormat::Json, Some(m)) => validate_mapping(m, &at("mapping"), &mut problem),
                (_, Some(_)) => problem(
                    at("mapping"),
                    "only used with format = \"json\"; remove it or change the format".into(),
                ),
                _ => {}
            }
        }
        let mut device_ids = HashSet::new();
        for (&i, d) in device_index.iter().zip(&self.devices) {
            let at = |key: &str| format!("devices[{i}].{key}");
            if !crate::normalise::valid_device_id(&d.id) {
                problem(
                    at("id"),
                    format!(
                        "{:?} is not 1–{} characters of A–Z a–z 0–9 . _ : ~ @ -",
                        d.id,
                        crate::normalise::DEVICE_ID_MAX
                    ),
                );
            }
            if !device_ids.insert(d.id.clone()) {
                problem(at("id"), format!("duplicate device id {:?}", d.id));
            }
            if !(-90.0..=90.0).contains(&d.lat) {
                problem(at("lat"), format!("{} is not a latitude", d.lat));
            }
            if !(-180.0..=180.0).contains(&d.lon) {
                problem(at("lon"), format!("{} is not a longitude", d.lon));
            }
            if d.flood_levels.len() > 3 || !d.flood_levels.windows(2).all(|w| w[0] < w[1]) {
                problem(
                    at("flood_levels"),
                    "must be at most three strictly increasing levels [BĐ1, BĐ2, BĐ3]".into(),
                );
            }
            for (metric, &[lo, hi]) in &d.ranges {
                let at = at(&format!("ranges.{metric}"));
                match crate::normalise::catalog::lookup(metric) {
                    Some(spec) if spec.name == metric => {
                        let (min, max) = spec.range;
                        if !(lo < hi && min <= lo && hi <= max) {
                            problem(
                                at,
                                format!(
                                    "[{lo}, {hi}] must be increasing and within {metric}'s possible range [{min}, {max}] {}",
                                    spec.unit
                                ),
                            );
                        }
                    }
                    Some(spec) => {
                        problem(at, format!("use the canonical metric name {:?}", spec.name))
                    }
                    None => problem(at, format!("unknown metric {metric:?}")),
                }
            }
        }
    }

    pub fn device(&self, id: &str) -> Option<&DeviceConfig> {
        self.devices.iter().find(|d| d.id == id)
    }
}

fn validate_mapping(m: &JsonMapping, at: &str, problem: &mut impl FnMut(String, String)) {
    let pointers = [
        ("records", &m.records),
        ("device_id", &m.device_id),
        ("timestamp", &m.timestamp),
        ("status", &m.status),
        ("latitude", &m.latitude),
        ("longitude", &m.longitude),
    ];
    for (key, p) in pointers {
        if let Some(p) = p
            && !p.is_empty()
            && !p.starts_with('/')
        {
            problem(
                format!("{at}.{key}"),
                format!("{p:?} is not a JSON pointer (must start with '/')"),
            );
        }
    }
    if m.device_id.is_none() && m.device_id_topic_level.is_none() {
        problem(
            format!("{at}.device_id"),
            "set device_id (a JSON pointer) or device_id_topic_level".into(),
        );
    }
    if m.metrics.is_empty() {
        problem(
            format!("{at}.metrics"),
            "at least one metric is required".into(),
        );
    }
    for (j, mm) in m.metrics.iter().enumerate() {
        if !mm.pointer.starts_with('/') {
            problem(
                format!("{at}.metrics[{j}].pointer"),
                format!(
                    "{:?} is not a JSON pointer (must start with '/')",
                    mm.pointer
                ),
            );
        }
        match (crate::normalise::catalog::lookup(&mm.metric), &mm.unit) {
            (None, _) => problem(
                format!("{at}.metrics[{j}].metric"),
                format!("unknown metric {:?}", mm.metric),
            ),
            // A bare number is read in no unit: the mapping says which.
            (Some(spec), None) if !spec.unitless() => problem(
                format!("{at}.metrics[{j}].unit"),
                format!(
                    "required for {} (canonical unit {}): the unit the vendor's values are in",
                    spec.name, spec.unit
                ),
            ),
            (Some(spec), Some(unit)) => {
                if let Err(e) = crate::normalise::units::convert(
                    spec,
                    1.0,
                    unit,
                    crate::normalise::units::Vocabulary::Plain,
                ) {
                    problem(format!("{at}.metrics[{j}].unit"), e.to_string());
                }
            }
            (Some(_), None) => {}
        }
    }
}

/// Broker address of a feed or the simulator.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BrokerAddr {
    pub host: String,
    pub port: u16,
    pub tls: bool,
}

pub fn parse_broker_url(s: &str) -> Result<BrokerAddr, String> {
    let url = url::Url::parse(s).map_err(|e| format!("{s:?} is not a URL: {e}"))?;
    let tls = match url.scheme() {
        "mqtt" | "tcp" => false,
        "mqtts" | "ssl" => true,
        other => {
            return Err(format!(
                "unsupported scheme {other:?} in {s:?} (use mqtt:// or mqtts://)"
            ));
        }
    };
    let host = url
        .host_str()
        .filter(|h| !h.is_empty())
        .ok_or_else(|| format!("{s:?} has no host"))?
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_owned();
    let port = url.port().unwrap_or(if tls { 8883 } else { 1883 });
    Ok(BrokerAddr { host, port, tls })
}

fn check_topic_filter(t: &str) -> Result<(), String> {
    if t.is_empty() {
        return Err("empty topic filter".into());
    }
    let levels: Vec<&str> = t.split('/').collect();
    for (i, level) in levels.iter().enumerate() {
        if level.contains('#') && (*level != "#" || i != levels.len() - 1) {
            return Err(format!("{t:?}: '#' must be a whole level and the last one"));
        }
        if level.contains('+') && *level != "+" {
            return Err(format!("{t:?}: '+' must be a whole level"));
        }
    }
    Ok(())
}

/// Deserialize one section, recording problems (with full key paths) instead of stopping.
fn section<T: DeserializeOwned + Default>(
    value: Option<Value>,
    path: &str,
    problems: &mut Vec<ConfigProblem>,
) -> T {
    match value {
        None => T::default(),
        Some(v) => deserialize_at(v, path, problems).unwrap_or_default(),
    }
}

/// Deserialize an array of tables entry by entry; returns the parsed entries with their
/// positions in the file.
fn list<T: DeserializeOwned>(
    value: Option<Value>,
    path: &str,
    problems: &mut Vec<ConfigProblem>,
) -> (Vec<usize>, Vec<T>) {
    match value {
        None => (Vec::new(), Vec::new()),
        Some(Value::Array(items)) => items
            .into_iter()
            .enumerate()
            .filter_map(|(i, v)| {
                deserialize_at(v, &format!("{path}[{i}]"), problems).map(|t| (i, t))
            })
            .unzip(),
        Some(_) => {
            problems.push(ConfigProblem {
                path: path.into(),
                message: format!("must be an array of tables ([[{path}]])"),
            });
            (Vec::new(), Vec::new())
        }
    }
}

fn deserialize_at<T: DeserializeOwned>(
    value: Value,
    path: &str,
    problems: &mut Vec<ConfigProblem>,
) -> Option<T> {
    match serde_path_to_error::deserialize::<_, T>(value) {
        Ok(v) => Some(v),
        Err(e) => {
            let inner = e.path().to_string();
            let full = if inner == "." || inner.is_empty() {
                path.to_owned()
            } else {
                format!("{path}.{inner}")
            };
            problems.push(ConfigProblem {
                path: full,
                message: e.into_inner().to_string(),
            });
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shipped_default_config_is_valid() {
        let config = Config::from_toml_str(DEFAULT_TOML).expect("default.toml must be valid");
        assert_eq!(config.feeds.len(), 3);
        assert!(config.broker.enabled);
        assert!(config.simulator.enabled);
    }

    #[test]
    fn every_problem_is_listed_with_its_key_path() {
        let text = r#"
            [api]
            listen = "not an address"
            [store]
            batch_max_messages = 0
            [bogus]
            x = 1
            [[feeds]]
            name = "a"
            city = "ha-noi"
            format = "senml"
            broker = "mqtt://127.0.0.1:1883"
            topics = ["a/#"]
            [[feeds]]
            name = "b b"
            city = "song-cong"
            format = "json"
            broker = "http://x"
            topics = ["a/#/b"]
        "#;
        let err = Config::from_toml_str(text).unwrap_err();
        let paths: Vec<_> = err.problems.iter().map(|p| p.path.as_str()).collect();
        for expected in [
            "api.listen",
            "store.batch_max_messages",
            "bogus",
            "feeds[0].city",
            "feeds[1].name",
            "feeds[1].broker",
            "feeds[1].topics[0]",
            "feeds[1].mapping",
        ] {
            assert!(paths.contains(&expected), "missing {expected} in {paths:?}");
        }
    }

    #[test]
    fn secrets_are_never_printed() {
        let s = Secret::resolve("hunter2").unwrap();
        assert_eq!(format!("{s:?}"), "Secret(***)");
        assert_eq!(s.expose(), "hunter2");
        assert!(Secret::resolve("env:IOC_TEST_SURELY_UNSET_VAR").is_err());
    }

    #[test]
    fn broker_urls() {
        assert_eq!(
            parse_broker_url("mqtts://broker.example:8884").unwrap(),
            BrokerAddr {
                host: "broker.example".into(),
                port: 8884,
                tls: true
            }
        );
        assert_eq!(parse_broker_url("mqtt://127.0.0.1").unwrap().port, 1883);
        assert!(parse_broker_url("http://x").is_err());
    }
}
