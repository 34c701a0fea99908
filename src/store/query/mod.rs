//! The read side: typed queries behind the API. All run on pooled read connections.

use std::{
    collections::{HashMap, hash_map::Entry},
    sync::{
        Arc, Mutex,
        atomic::{AtomicU64, Ordering},
    },
};

use jiff::Timestamp;
use rusqlite::{Connection, params_from_iter, types::Value as Sql};
use serde::Serialize;

use super::{HOUR_MS, MINUTE_MS, Store, StoreError, live::Live, status_from_code, ts};
use crate::model::{City, Domain, Location, Status};

mod aggregates;
mod aqi;
mod devices;
mod feeds;
mod log;
mod rejects;
mod series;

pub use aggregates::{AggregateQuery, Bucket};
#[cfg(test)]
pub(in crate::store) use aggregates::{aggregates_from_readings, aggregates_from_rollups};
pub use aqi::HourlyMean;
pub(in crate::store) use devices::CatalogueCache;
pub use devices::{DeviceFilter, DeviceRow, LatestValue};
pub use feeds::{CitySummary, FeedCounters};
pub use log::{LogEntry, StoreStats};
pub use rejects::{RejectCount, RejectFilter, RejectRow};
pub use series::Point;

/// SQL `WHERE` clauses with their parameters, built from optional filters.
#[derive(Default)]
struct Where {
    clauses: Vec<String>,
    params: Vec<Sql>,
}

impl Where {
    fn add(&mut self, clause: &str, value: impl Into<Sql>) {
        self.params.push(value.into());
        self.clauses
            .push(clause.replace('?', &format!("?{}", self.params.len())));
    }

    fn sql(&self) -> String {
        if self.clauses.is_empty() {
            String::new()
        } else {
            format!("WHERE {}", self.clauses.join(" AND "))
        }
    }
}
