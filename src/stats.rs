//! Live per-feed health: connection state, counters since start, message rate and lag. Persistent
//! totals (surviving restarts) live in the store's `feed_counters`; these are the live view and
//! the Prometheus metrics.

use std::sync::{
    Arc, Mutex,
    atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering::Relaxed},
};

use jiff::Timestamp;
use metrics::{Counter, counter, gauge};
use serde::Serialize;

use crate::model::FeedId;

/// Metric names (Prometheus).
pub mod names {
    pub const RECEIVED: &str = "ioc_messages_received_total";
    pub const STORED: &str = "ioc_messages_stored_total";
    pub const REJECTED: &str = "ioc_messages_rejected_total";
    pub const DUPLICATE: &str = "ioc_messages_duplicate_total";
    pub const READINGS: &str = "ioc_readings_stored_total";
    /// Parts of stored messages quarantined, by reason (the message's other readings stored).
    pub const READINGS_REJECTED: &str = "ioc_readings_rejected_total";
    /// Readings whose device, metric and time were already stored with another value.
    pub const CONFLICTS: &str = "ioc_reading_conflicts_total";
    /// Fields a format's catalogue says are not measurements, by field.
    pub const IGNORED: &str = "ioc_fields_ignored_total";
    pub const CONNECTED: &str = "ioc_feed_connected";
    pub const RECONNECTS: &str = "ioc_mqtt_connections_total";
    pub const SESSION_LOST: &str = "ioc_mqtt_session_lost_total";
    pub const STALE_ACKS: &str = "ioc_mqtt_stale_acks_dropped_total";
    pub const IN_FLIGHT: &str = "ioc_messages_in_flight";
    pub const COMMIT_SECONDS: &str = "ioc_store_commit_seconds";
    pub const COMMIT_BATCH: &str = "ioc_store_commit_batch_messages";
    /// Pages in the write-ahead log after the last checkpoint.
    pub const WAL_PAGES: &str = "ioc_store_wal_pages";
    pub const COMMIT_ERRORS: &str = "ioc_store_commit_errors_total";
    pub const INGEST_LATENCY: &str = "ioc_ingest_latency_seconds";
    /// Commit time minus observation time: how old data is when it becomes queryable (with the
    /// load generator, whose observation time is the publish time, the end-to-end latency).
    pub const OBSERVED_TO_COMMIT: &str = "ioc_observed_to_commit_seconds";
}

/// Live state of one feed. Shared between its MQTT connection, the store writer and the API.
#[derive(Debug)]
pub struct FeedStats {
    pub feed: FeedId,
    connected: AtomicBool,
    received: AtomicU64,
    stored: AtomicU64,
    rejected: AtomicU64,
    duplicate: AtomicU64,
    readings: AtomicU64,
    partial: AtomicU64,
    readings_rejected: AtomicU64,
    conflicts: AtomicU64,
    ignored: AtomicU64,
    /// Per ignored field, its count: the feed task holds a clone of each counter.
    ignored_fields: Mutex<Vec<(&'static str, Arc<AtomicU64>)>>,
    connections: AtomicU64,
    sessions_lost: AtomicU64,
    stale_acks: AtomicU64,
    /// UTC ms of the last message received from the broker (0 = never).
    last_message_ms: AtomicI64,
    /// UTC ms of the last commit that included this feed (0 = never).
    last_commit_ms: AtomicI64,
    /// Receive → commit latency of the last committed message, in ms.
    last_lag_ms: AtomicI64,
    /// Smoothed receive rate, messages per second × 1000.
    rate_milli: AtomicU64,
    rate_prev: AtomicU64,
    last_error: Mutex<Option<(Timestamp, String)>>,
    /// The per-message Prometheus counters, registered once: looking one up by name and label
    /// costs a registry lookup and a label string per message.
    per_message: PerMessage,
}

#[derive(Debug)]
struct PerMessage {
    received: Counter,
    stored: Counter,
    readings: Counter,
    duplicate: Counter,
}

impl FeedStats {
    pub fn new(feed: FeedId) -> Arc<FeedStats> {
        let label = [("feed", feed.to_string())];
        let per_message = PerMessage {
            received: counter!(names::RECEIVED, &label),
            stored: counter!(names::STORED, &label),
            readings: counter!(names::READINGS, &label),
            duplicate: counter!(names::DUPLICATE, &label),
        };
        Arc::new(FeedStats {
            per_message,
            feed,
            connected: AtomicBool::new(false),
            received: AtomicU64::new(0),
            stored: AtomicU64::new(0),
            rejected: AtomicU64::new(0),
            duplicate: AtomicU64::new(0),
            readings: AtomicU64::new(0),
            partial: AtomicU64::new(0),
            readings_rejected: AtomicU64::new(0),
            conflicts: AtomicU64::new(0),
            ignored: AtomicU64::new(0),
            ignored_fields: Mutex::new(Vec::new()),
            connections: AtomicU64::new(0),
            sessions_lost: AtomicU64::new(0),
            stale_acks: AtomicU64::new(0),
            last_message_ms: AtomicI64::new(0),
            last_commit_ms: AtomicI64::new(0),
            last_lag_ms: AtomicI64::new(0),
            rate_milli: AtomicU64::new(0),
            rate_prev: AtomicU64::new(0),
            last_error: Mutex::new(None),
        })
    }

    fn label(&self) -> [(&'static str, String); 1] {
        [("feed", self.feed.to_string())]
    }

    pub fn set_connected(&self, up: bool) {
        self.connected.store(up, Relaxed);
        gauge!(names::CONNECTED, &self.label()).set(if up { 1.0 } else { 0.0 });
        if up {
            self.connections.fetch_add(1, Relaxed);
            counter!(names::RECONNECTS, &self.label()).increment(1);
        }
    }

    pub fn session_lost(&self) {
        self.sessions_lost.fetch_add(1, Relaxed);
        counter!(names::SESSION_LOST, &self.label()).increment(1);
    }

    pub fn stale_ack_dropped(&self) {
        self.stale_acks.fetch_add(1, Relaxed);
        counter!(names::STALE_ACKS, &self.label()).increment(1);
    }

    pub fn set_error(&self, at: Timestamp, message: String) {
        *self.last_error.lock().unwrap_or_else(|e| e.into_inner()) = Some((at, message));
    }

    pub fn received(&self, at: Timestamp) {
        self.received.fetch_add(1, Relaxed);
        self.last_message_ms.store(at.as_millisecond(), Relaxed);
        self.per_message.received.increment(1);
    }

    pub fn stored(&self, readings: usize) {
        self.stored.fetch_add(1, Relaxed);
        self.readings.fetch_add(readings as u64, Relaxed);
        self.per_message.stored.increment(1);
        self.per_message.readings.increment(readings as u64);
    }

    pub fn rejected(&self, reason: crate::model::RejectReason) {
        self.rejected.fetch_add(1, Relaxed);
        counter!(names::REJECTED, "feed" => self.feed.to_string(), "reason" => reason.as_str())
            .increment(1);
    }

    /// A stored message had these parts quarantined.
    pub fn partial(&self, rejected: &[crate::model::Rejection]) {
        self.partial.fetch_add(1, Relaxed);
        self.readings_rejected
            .fetch_add(rejected.len() as u64, Relaxed);
        for r in rejected {
            counter!(names::READINGS_REJECTED, "feed" => self.feed.to_string(), "reason" => r.reason.as_str())
                .increment(1);
        }
    }

    /// Readings that met a stored reading of the same series and time with another value.
    pub fn conflicts(&self, n: usize) {
        if n > 0 {
            self.conflicts.fetch_add(n as u64, Relaxed);
            counter!(names::CONFLICTS, &self.label()).increment(n as u64);
        }
    }

    /// Fields ignored (see `pipeline::IgnoredCounters`, which counts each field).
    pub fn ignored(&self, n: usize) {
        self.ignored.fetch_add(n as u64, Relaxed);
    }

    /// The counter of one ignored field, shown in the snapshot; created on first use.
    pub fn ignored_field(&self, field: &'static str) -> Arc<AtomicU64> {
        let mut fields = self
            .ignored_fields
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        if let Some((_, c)) = fields.iter().find(|(f, _)| *f == field) {
            return Arc::clone(c);
        }
        let c = Arc::new(AtomicU64::new(0));
        fields.push((field, Arc::clone(&c)));
        c
    }

    pub fn duplicate(&self) {
        self.duplicate.fetch_add(1, Relaxed);
        self.per_message.duplicate.increment(1);
    }

    pub fn committed(&self, now: Timestamp, received_at: Timestamp) {
        self.last_commit_ms.store(now.as_millisecond(), Relaxed);
        let lag = now.as_millisecond() - received_at.as_millisecond();
        self.last_lag_ms.store(lag, Relaxed);
    }

    /// Called every `period_s` seconds by the app's ticker: updates the smoothed rate.
    pub fn tick(&self, period_s: f64) {
        let now = self.received.load(Relaxed);
        let prev = self.rate_prev.swap(now, Relaxed);
        let instant = (now - prev) as f64 / period_s;
        let old = self.rate_milli.load(Relaxed) as f64 / 1000.0;
        let smoothed = if old == 0.0 {
            instant
        } else {
            0.5 * old + 0.5 * instant
        };
        self.rate_milli.store((smoothed * 1000.0) as u64, Relaxed);
        let settled =
            self.stored.load(Relaxed) + self.rejected.load(Relaxed) + self.duplicate.load(Relaxed);
        gauge!(names::IN_FLIGHT, &self.label()).set(now.saturating_sub(settled) as f64);
    }

    /// The feed's state now, read counter by counter (so the counts may be a moment apart).
    pub fn snapshot(&self) -> FeedSnapshot {
        let received = self.received.load(Relaxed);
        let stored = self.stored.load(Relaxed);
        let rejected = self.rejected.load(Relaxed);
        let duplicate = self.duplicate.load(Relaxed);
        let last_error = self
            .last_error
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        FeedSnapshot {
            feed: self.feed.to_string(),
            connected: self.connected.load(Relaxed),
            received,
            stored,
            rejected,
            duplicate,
            in_flight: received.saturating_sub(stored + rejected + duplicate),
            readings: self.readings.load(Relaxed),
            partial: self.partial.load(Relaxed),
            readings_rejected: self.readings_rejected.load(Relaxed),
            conflicts: self.conflicts.load(Relaxed),
            ignored_fields: self.ignored.load(Relaxed),
            ignored_by_field: self.ignored_by_field(),
            connections: self.connections.load(Relaxed),
            sessions_lost: self.sessions_lost.load(Relaxed),
            stale_acks_dropped: self.stale_acks.load(Relaxed),
            rate_per_s: self.rate_milli.load(Relaxed) as f64 / 1000.0,
            last_message_at: timestamp(self.last_message_ms.load(Relaxed)),
            last_commit_at: timestamp(self.last_commit_ms.load(Relaxed)),
            commit_lag_ms: self.last_lag_ms.load(Relaxed),
            last_error: last_error.as_ref().map(|(_, m)| m.clone()),
            last_error_at: last_error.map(|(t, _)| t),
        }
    }

    /// Each ignored field's count so far.
    fn ignored_by_field(&self) -> std::collections::BTreeMap<&'static str, u64> {
        self.ignored_fields
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .map(|(f, c)| (*f, c.load(Relaxed)))
            .collect()
    }
}

/// The time of UTC ms `ms`; `None` for 0 (never).
fn timestamp(ms: i64) -> Option<Timestamp> {
    (ms != 0)
        .then(|| Timestamp::from_millisecond(ms).ok())
        .flatten()
}

/// What `/api/v1/feeds` shows of a feed's live state, since this process started.
#[derive(Debug, Clone, Serialize)]
pub struct FeedSnapshot {
    pub feed: String,
    pub connected: bool,
    pub received: u64,
    pub stored: u64,
    pub rejected: u64,
    pub duplicate: u64,
    /// Received but not yet stored, rejected or counted duplicate.
    pub in_flight: u64,
    pub readings: u64,
    /// Stored messages of which parts were quarantined (counted in `stored` too).
    pub partial: u64,
    /// Those quarantined parts.
    pub readings_rejected: u64,
    /// Readings that met a stored reading of their series and time with another value (one
    /// of the two kept per `store.on_conflict`, the other recorded as a `conflict` reject).
    pub conflicts: u64,
    /// Fields the formats' catalogues ignore (metadata, thresholds, references).
    pub ignored_fields: u64,
    /// The same, per field.
    pub ignored_by_field: std::collections::BTreeMap<&'static str, u64>,
    pub connections: u64,
    pub sessions_lost: u64,
    pub stale_acks_dropped: u64,
    pub rate_per_s: f64,
    pub last_message_at: Option<Timestamp>,
    pub last_commit_at: Option<Timestamp>,
    /// Receive → commit latency of the last committed message.
    pub commit_lag_ms: i64,
    pub last_error: Option<String>,
    pub last_error_at: Option<Timestamp>,
}
