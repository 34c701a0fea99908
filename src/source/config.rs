//! `[[feeds]]`: one IOC feed — the MQTT connection, its session and credentials, and the format
//! of what it carries — and the broker addresses feeds and the simulator are given.

use std::{path::PathBuf, time::Duration};

use serde::Deserialize;

use crate::decode::{Decoder, FeedFormat, JsonMapping};
use crate::model::City;
use crate::settings::{Problems, Secret};

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
    /// PEM certificate (chain) and private key of this client, for a broker that requires
    /// client certificates (`require_certificate true` in Mosquitto).
    #[serde(default)]
    pub client_cert: Option<PathBuf>,
    #[serde(default)]
    pub client_key: Option<PathBuf>,
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
    /// The MQTT client id: the configured one, or `ioc-aggregator-<name>`.
    pub fn client_id(&self) -> String {
        self.client_id
            .clone()
            .unwrap_or_else(|| format!("ioc-aggregator-{}", self.name))
    }

    /// The decoder of this feed's format.
    pub fn decoder(&self) -> Decoder {
        Decoder::new(self.format, self.mapping.as_ref(), self.utc_offset_hours)
    }

    /// Record every value of this feed (`at` is its key path, `feeds[i]`) that cannot work.
    /// Names and client ids unique across feeds are checked by the whole config.
    pub fn validate(&self, at: &str, problems: &mut Problems) {
        let key = |k: &str| format!("{at}.{k}");
        problems.check(
            !self.name.is_empty()
                && self
                    .name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_'),
            key("name"),
            "must be non-empty and use only ASCII letters, digits, '-' and '_'",
        );
        if let Err(e) = parse_broker_url(&self.broker) {
            problems.add(key("broker"), e);
        }
        problems.check(
            !self.topics.is_empty(),
            key("topics"),
            "at least one topic filter is required",
        );
        for (j, t) in self.topics.iter().enumerate() {
            if let Err(e) = check_topic_filter(t) {
                problems.add(format!("{at}.topics[{j}]"), e);
            }
        }
        self.validate_session(at, problems);
        self.validate_tls(at, problems);
        match (&self.format, &self.mapping) {
            (FeedFormat::Json, None) => {
                problems.add(key("mapping"), "required when format = \"json\"")
            }
            (FeedFormat::Json, Some(m)) => m.validate(&key("mapping"), problems),
            (_, Some(_)) => problems.add(
                key("mapping"),
                "only used with format = \"json\"; remove it or change the format",
            ),
            _ => {}
        }
    }

    fn validate_tls(&self, at: &str, problems: &mut Problems) {
        let files = [
            ("ca_file", &self.ca_file),
            ("client_cert", &self.client_cert),
            ("client_key", &self.client_key),
        ];
        for (key, path) in files {
            if let Some(p) = path {
                problems.check(
                    p.is_file(),
                    format!("{at}.{key}"),
                    format!("{} is not a readable file", p.display()),
                );
            }
        }
        if self.client_cert.is_some() != self.client_key.is_some() {
            problems.add(
                format!("{at}.client_key"),
                "client_cert and client_key go together",
            );
        }
        let tls = parse_broker_url(&self.broker).is_ok_and(|a| a.tls);
        if !tls && (self.ca_file.is_some() || self.client_cert.is_some()) {
            problems.add(
                format!("{at}.broker"),
                "certificates are set but the broker URL is not mqtts://",
            );
        }
    }

    fn validate_session(&self, at: &str, problems: &mut Problems) {
        problems.check(
            self.keep_alive >= Duration::from_secs(1),
            format!("{at}.keep_alive"),
            "must be at least 1s",
        );
        problems.check(
            self.protocol != MqttProtocol::V5 || !self.session_expiry.is_zero(),
            format!("{at}.session_expiry"),
            "must be non-zero: a zero expiry discards the session on disconnect",
        );
        problems.check(
            (-12..=14).contains(&self.utc_offset_hours),
            format!("{at}.utc_offset_hours"),
            "must be between -12 and 14",
        );
    }
}

/// Broker address of a feed or the simulator.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BrokerAddr {
    pub host: String,
    pub port: u16,
    pub tls: bool,
}

/// Parse `mqtt://host[:port]` (or `tcp://`) and `mqtts://host[:port]` (or `ssl://`); the port
/// defaults to 1883 and 8883.
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

#[cfg(test)]
mod tests {
    use super::*;

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
