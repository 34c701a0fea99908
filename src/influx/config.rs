//! `[influx]`: where and how the store's log is forwarded to InfluxDB 2.

use std::time::Duration;

use serde::Deserialize;

use crate::settings::{Problems, Secret};

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

impl InfluxConfig {
    /// Record every value that cannot work; the server's address and credentials only matter
    /// when forwarding is enabled.
    pub fn validate(&self, problems: &mut Problems) {
        problems.at_least_one(self.batch_size, "influx.batch_size");
        if !self.enabled {
            return;
        }
        problems.check(
            self.token.is_some(),
            "influx.token",
            "required when influx.enabled = true",
        );
        problems.check(
            url::Url::parse(&self.url).is_ok_and(|u| matches!(u.scheme(), "http" | "https")),
            "influx.url",
            format!("{:?} is not an http(s) URL", self.url),
        );
        problems.check(!self.org.is_empty(), "influx.org", "must not be empty");
        problems.check(
            !self.bucket.is_empty(),
            "influx.bucket",
            "must not be empty",
        );
    }
}
