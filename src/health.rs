//! The rules that say whether a device is present and a feed is healthy: pure functions of
//! what the store and the feeds report, the configured cadences and `now`, shared by the
//! device list, the feed list and the overview the wall screens show.

use std::time::Duration;

use jiff::{SignedDuration, Timestamp};
use serde::{Deserialize, Serialize};

use crate::pipeline::IngestConfig;
use crate::stats::FeedSnapshot;
use crate::store::DeviceRow;

/// Whether a device reports at its expected cadence.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Presence {
    Online,
    Offline,
    /// Catalogued but never heard from.
    Never,
}

/// How long without data makes `device` offline: its expected interval (configured, else
/// learned, else `ingest.default_device_interval`) times `ingest.offline_after_intervals`.
pub fn offline_after(device: &DeviceRow, ingest: &IngestConfig) -> Duration {
    let interval_ms = device
        .expected_interval_ms
        .filter(|ms| *ms > 0)
        .unwrap_or(ingest.default_device_interval.as_millis() as i64);
    Duration::from_millis((interval_ms * i64::from(ingest.offline_after_intervals.max(1))) as u64)
}

/// A device's presence at `now`: online if it was last seen within `offline_after`.
pub fn presence(last_seen: Option<Timestamp>, offline_after: Duration, now: Timestamp) -> Presence {
    match last_seen {
        None => Presence::Never,
        Some(seen)
            if now.as_millisecond() - seen.as_millisecond() <= offline_after.as_millis() as i64 =>
        {
            Presence::Online
        }
        Some(_) => Presence::Offline,
    }
}

/// Health verdict of a feed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum FeedHealth {
    /// Connected and messages arriving.
    Healthy,
    /// Connected, but nothing received for longer than the silence threshold.
    Silent,
    /// Not connected to its broker.
    Disconnected,
}

/// How long a connected feed may stay quiet before it counts as silent: as long as a device
/// of the default cadence may before it counts as offline.
pub fn silence_threshold(ingest: &IngestConfig) -> Duration {
    ingest.default_device_interval * ingest.offline_after_intervals.max(1)
}

/// A feed's health at `now`.
pub fn feed_health(s: &FeedSnapshot, now: Timestamp, silence: Duration) -> FeedHealth {
    if !s.connected {
        return FeedHealth::Disconnected;
    }
    let silent_since = now - SignedDuration::try_from(silence).unwrap_or_default();
    match s.last_message_at {
        Some(t) if t >= silent_since => FeedHealth::Healthy,
        _ => FeedHealth::Silent,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn presence_follows_the_cadence() {
        let now: Timestamp = "2026-11-22T01:00:00Z".parse().unwrap();
        let after = Duration::from_secs(900);
        let ago = |s: i64| Some(now - SignedDuration::from_secs(s));
        assert_eq!(presence(None, after, now), Presence::Never);
        assert_eq!(presence(ago(900), after, now), Presence::Online);
        assert_eq!(presence(ago(901), after, now), Presence::Offline);
    }

    #[test]
    fn a_feed_is_healthy_connected_and_heard_from() {
        let now: Timestamp = "2026-11-22T01:00:00Z".parse().unwrap();
        let mut s = crate::stats::FeedStats::new(crate::model::FeedId::new("f")).snapshot();
        let silence = Duration::from_secs(60);
        assert_eq!(feed_health(&s, now, silence), FeedHealth::Disconnected);
        s.connected = true;
        assert_eq!(feed_health(&s, now, silence), FeedHealth::Silent);
        s.last_message_at = Some(now - SignedDuration::from_secs(30));
        assert_eq!(feed_health(&s, now, silence), FeedHealth::Healthy);
    }
}
