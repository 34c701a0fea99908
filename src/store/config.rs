//! `[store]`: where the embedded store lives, how durable a commit is, how large batches grow,
//! and what happens to conflicting readings.

use std::{path::PathBuf, time::Duration};

use serde::Deserialize;

use crate::settings::Problems;

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

impl StoreConfig {
    /// Record every value that cannot work.
    pub fn validate(&self, problems: &mut Problems) {
        problems.at_least_one(self.batch_max_messages, "store.batch_max_messages");
        problems.at_least_one(self.queue_capacity, "store.queue_capacity");
        problems.at_least_one(self.read_connections, "store.read_connections");
    }
}
