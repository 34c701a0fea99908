//! `[simulator]`: the simulator of the three IOCs.

use std::time::Duration;

use serde::Deserialize;

use crate::settings::{Problems, Secret};
use crate::source::parse_broker_url;

/// The built-in simulator of the three IOCs.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SimulatorConfig {
    pub enabled: bool,
    /// Broker the simulator publishes to.
    pub broker: String,
    /// Credentials for a broker that requires them (the compose file's Mosquitto does).
    pub username: Option<String>,
    pub password: Option<Secret>,
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
            username: None,
            password: None,
            interval: Duration::from_secs(10),
            backfill: Duration::from_secs(0),
            malformed_ratio: 0.01,
            seed: 2026,
        }
    }
}

impl SimulatorConfig {
    /// Record every value that cannot work.
    pub fn validate(&self, problems: &mut Problems) {
        problems.check(
            (0.0..=1.0).contains(&self.malformed_ratio),
            "simulator.malformed_ratio",
            "must be between 0.0 and 1.0",
        );
        if !self.enabled {
            return;
        }
        problems.check(
            !self.interval.is_zero(),
            "simulator.interval",
            "must be positive",
        );
        if let Err(e) = parse_broker_url(&self.broker) {
            problems.add("simulator.broker", e);
        }
    }
}
