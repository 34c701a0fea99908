//! `[ingest]`: the limits every message of every feed is held to, and the cadence that decides
//! when a device counts as offline.

use std::time::Duration;

use serde::Deserialize;

use crate::settings::Problems;

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

impl IngestConfig {
    /// Record every value that cannot work.
    pub fn validate(&self, problems: &mut Problems) {
        problems.at_least_one(self.feed_queue_capacity, "ingest.feed_queue_capacity");
        problems.check(
            self.quarantine_max_bytes <= self.max_payload_bytes,
            "ingest.quarantine_max_bytes",
            "must not exceed ingest.max_payload_bytes",
        );
    }
}
