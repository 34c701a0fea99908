//! Configuration: `config/default.toml` (embedded) or a file given with `--config`, then
//! `IOC__SECTION__KEY` environment overrides. Loading collects *every* problem with its key path
//! before failing, so an operator fixes a bad file in one pass.

use std::{collections::HashSet, fmt, path::Path};

use figment::{
    Figment,
    providers::{Env, Format, Toml},
};
use serde::{Deserialize, de::DeserializeOwned};
use serde_json::Value;

use crate::{
    alert::AlertsConfig,
    api::ApiConfig,
    devtools::{broker::EmbeddedBrokerConfig, simulate::SimulatorConfig},
    influx::InfluxConfig,
    model::FeedId,
    normalise::{DeviceConfig, Normaliser},
    pipeline::IngestConfig,
    settings::{ConfigProblem, Problems},
    source::FeedConfig,
    store::StoreConfig,
};

/// The shipped default configuration: what `cargo run` uses with no `--config`.
pub const DEFAULT_TOML: &str = include_str!("../config/default.toml");

/// Prefix of environment overrides: `IOC__API__LISTEN=0.0.0.0:8080`.
pub const ENV_PREFIX: &str = "IOC__";

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

/// The whole configuration, validated: each component's section, the feeds and the device
/// catalogue.
#[derive(Debug, Clone, Default)]
pub struct Config {
    pub api: ApiConfig,
    pub store: StoreConfig,
    pub ingest: IngestConfig,
    pub broker: EmbeddedBrokerConfig,
    pub simulator: SimulatorConfig,
    pub influx: InfluxConfig,
    pub alerts: AlertsConfig,
    pub log: LogConfig,
    pub feeds: Vec<FeedConfig>,
    pub devices: Vec<DeviceConfig>,
}

/// `[log]`: the process's own logging.
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

/// How log lines are written: for people or for a log shipper.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LogFormat {
    Text,
    Json,
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
                        path: if e.path.is_empty() {
                            source_name.clone()
                        } else {
                            e.path.join(".")
                        },
                        message: e.kind.to_string(),
                    })
                    .collect(),
            )
        })?;
        Config::from_value(value).map_err(|problems| {
            fail(
                problems
                    .into_iter()
                    .map(|p| from_environment(&figment, p))
                    .collect(),
            )
        })
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
    /// rest, then check each component's rules and those across components.
    fn from_value(value: Value) -> Result<Config, Vec<ConfigProblem>> {
        let mut problems = Problems::default();
        let Value::Object(mut top) = value else {
            problems.add("<root>", "configuration must be a table");
            return Err(problems.into_vec());
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
            problems.add(key.clone(), "unknown section");
        }
        config.validate(&mut problems, &feed_index, &device_index);
        if problems.is_empty() {
            Ok(config)
        } else {
            Err(problems.into_vec())
        }
    }

    /// Each component checks its own section; the lists are checked entry by entry and for
    /// what must be unique across entries. `feed_index` / `device_index` give each entry's
    /// position in the file (entries that failed to parse are already reported and absent
    /// here). The alert rules are parsed here, once.
    fn validate(&mut self, problems: &mut Problems, feed_index: &[usize], device_index: &[usize]) {
        self.api.validate(problems);
        self.store.validate(problems);
        self.ingest.validate(problems);
        self.simulator.validate(problems);
        self.influx.validate(problems);
        self.alerts.validate(problems);
        self.validate_feeds(problems, feed_index);
        self.validate_devices(problems, device_index);
    }

    fn validate_feeds(&self, problems: &mut Problems, feed_index: &[usize]) {
        let mut names = HashSet::new();
        let mut client_ids = HashSet::new();
        for (&i, feed) in feed_index.iter().zip(&self.feeds) {
            let at = format!("feeds[{i}]");
            feed.validate(&at, problems);
            problems.check(
                names.insert(feed.name.clone()),
                format!("{at}.name"),
                format!("duplicate feed name {:?}", feed.name),
            );
            let client_id = feed.client_id();
            problems.check(
                !client_ids.contains(&client_id),
                format!("{at}.client_id"),
                format!(
                    "client id {client_id:?} is used by another feed; persistent sessions need unique ids"
                ),
            );
            client_ids.insert(client_id);
        }
    }

    fn validate_devices(&self, problems: &mut Problems, device_index: &[usize]) {
        let mut ids = HashSet::new();
        for (&i, d) in device_index.iter().zip(&self.devices) {
            let at = format!("devices[{i}]");
            d.validate(&at, problems);
            problems.check(
                ids.insert(d.id.clone()),
                format!("{at}.id"),
                format!("duplicate device id {:?}", d.id),
            );
        }
    }

    /// The catalogue entry of device `id`.
    pub fn device(&self, id: &str) -> Option<&DeviceConfig> {
        self.devices.iter().find(|d| d.id == id)
    }

    /// The normaliser of `feed`, with the device catalogue and the ingest and retention limits.
    pub fn normaliser(&self, feed: &FeedConfig) -> Normaliser {
        Normaliser::new(
            feed.city,
            FeedId::new(&feed.name),
            &self.devices,
            self.ingest.max_future_skew,
            self.store.retention,
        )
    }
}

/// `problem` with the environment variable it came from, when it did (the file is named once,
/// in the error's heading).
fn from_environment(figment: &Figment, mut problem: ConfigProblem) -> ConfigProblem {
    // Figment's keys are dotted and have no array indices: `feeds[0].city` is under `feeds`.
    let mut key = Vec::new();
    for part in problem.path.split('.') {
        let (name, indexed) = match part.split_once('[') {
            Some((name, _)) => (name, true),
            None => (part, false),
        };
        key.push(name);
        if indexed {
            break;
        }
    }
    let from_env = figment
        .find_metadata(&key.join("."))
        .is_some_and(|m| m.name.contains("environment"));
    if from_env {
        let var = format!("{ENV_PREFIX}{}", key.join("__").to_uppercase());
        problem.message = format!("{} (from environment variable {var})", problem.message);
    }
    problem
}

/// Deserialize one section, recording problems (with full key paths) instead of stopping.
fn section<T: DeserializeOwned + Default>(
    value: Option<Value>,
    path: &str,
    problems: &mut Problems,
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
    problems: &mut Problems,
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
            problems.add(path, format!("must be an array of tables ([[{path}]])"));
            (Vec::new(), Vec::new())
        }
    }
}

fn deserialize_at<T: DeserializeOwned>(
    mut value: Value,
    path: &str,
    problems: &mut Problems,
) -> Option<T> {
    // After a problem, the value at fault is taken out and the rest tried again, so that every
    // problem of the section is reported, not only the first (at most 50 of one section). A
    // required key missing only because it was taken out is not reported again.
    let mut removed: Vec<String> = Vec::new();
    for _ in 0..50 {
        let e = match serde_path_to_error::deserialize::<_, T>(value.clone()) {
            Ok(v) => return removed.is_empty().then_some(v),
            Err(e) => e,
        };
        let segments: Vec<String> = e.path().iter().map(|s| s.to_string()).collect();
        let inner = e.path().to_string();
        let message = e.into_inner().to_string();
        let full = if inner == "." || inner.is_empty() {
            path.to_owned()
        } else {
            format!("{path}.{inner}")
        };
        let missing = (message.strip_prefix("missing field `"))
            .and_then(|rest| rest.split('`').next())
            .map(|key| format!("{full}.{key}"));
        if !missing.is_some_and(|m| removed.contains(&m)) {
            problems.add(full.clone(), message);
        }
        if !take_out(&mut value, &segments) {
            break;
        }
        removed.push(full);
    }
    None
}

/// Remove the value at `segments` (serde_path_to_error's: keys and `[i]`); false when there is
/// nothing to remove (the problem is the whole value).
fn take_out(value: &mut Value, segments: &[String]) -> bool {
    let Some((last, parent)) = segments.split_last() else {
        return false;
    };
    let index = |s: &str| {
        s.strip_prefix('[')?
            .strip_suffix(']')?
            .parse::<usize>()
            .ok()
    };
    let mut at = value;
    for s in parent {
        let next = match (index(s), at) {
            (Some(i), Value::Array(items)) => items.get_mut(i),
            (None, Value::Object(map)) => map.get_mut(s),
            _ => None,
        };
        let Some(next) = next else { return false };
        at = next;
    }
    match (index(last), at) {
        (Some(i), Value::Array(items)) if i < items.len() => {
            items.remove(i);
            true
        }
        (None, Value::Object(map)) => map.remove(last).is_some(),
        _ => false,
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
    fn every_problem_of_one_section_is_listed_not_only_the_first() {
        let text = r#"
            [api]
            listen = "not an address"
            request_timeout = "soon"
            bogus = 1
            [[feeds]]
            name = "a"
            city = "ha-noi"
            format = "xml"
            broker = "mqtt://127.0.0.1:1883"
            topics = ["a/#"]
            keep_alive = "never"
        "#;
        let err = Config::from_toml_str(text).unwrap_err();
        let paths: Vec<_> = err.problems.iter().map(|p| p.path.as_str()).collect();
        for expected in [
            "api.listen",
            "api.request_timeout",
            "api.bogus",
            "feeds[0].city",
            "feeds[0].format",
            "feeds[0].keep_alive",
        ] {
            assert!(paths.contains(&expected), "missing {expected} in {paths:?}");
        }
    }
}
