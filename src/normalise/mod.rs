//! Normalise: vendor observations → canonical readings (metric names, units, UTC, location,
//! status), with validation. Pure and synchronous.

pub mod catalog;

use jiff::Timestamp;

use crate::config::{Config, FeedConfig};
use crate::model::{Observation, Reading, Rejection};

/// Normaliser of one feed.
#[derive(Debug, Clone)]
pub struct Normaliser {}

impl Normaliser {
    pub fn new(_feed: &FeedConfig, _config: &Config) -> Normaliser {
        Normaliser {}
    }

    /// All-or-nothing: a message is stored whole or rejected whole (raw payload quarantined).
    pub fn normalise(
        &self,
        _observations: Vec<Observation>,
        _received_at: Timestamp,
        _now: Timestamp,
    ) -> Result<Vec<Reading>, Rejection> {
        Err(Rejection::new("unknown_metric", "not implemented"))
    }
}
