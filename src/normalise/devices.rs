//! `[[devices]]`: the device catalogue — devices known in advance, where they are, and their
//! own bands — which the normaliser uses to place and check each reading.

use std::{collections::BTreeMap, time::Duration};

use serde::Deserialize;

use super::{DEVICE_ID_MAX, catalog, valid_device_id};
use crate::model::{City, Domain};
use crate::settings::Problems;

/// A device known in advance: where it is, and for river gauges the flood alarm levels.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeviceConfig {
    pub id: String,
    pub city: City,
    pub domain: Domain,
    #[serde(default)]
    pub name: Option<String>,
    pub lat: f64,
    pub lon: f64,
    #[serde(default)]
    pub ward: Option<String>,
    /// `device` (surveyed) or `synthetic` (placed near a sourced anchor).
    #[serde(default = "default_position_source")]
    pub position_source: String,
    /// Expected reporting interval (default: learned from the data).
    #[serde(default, with = "humantime_serde")]
    pub interval: Option<Duration>,
    /// Flood alarm levels in metres (river gauges), lowest first: BĐ1, BĐ2, BĐ3. Give only
    /// the levels that are known (Chã has only BĐ1 confirmed).
    #[serde(default)]
    pub flood_levels: Vec<f64>,
    /// This device's own band per canonical metric, `[min, max]` in the canonical unit, inside
    /// the metric's possible range (e.g. a river gauge's `water_level = [15.0, 40.0]`): a
    /// reading outside is rejected as `invalid_value`.
    #[serde(default)]
    pub ranges: BTreeMap<String, [f64; 2]>,
}

fn default_position_source() -> String {
    "synthetic".into()
}

impl DeviceConfig {
    /// Record every problem of this entry (`at` is its key path, `devices[i]`). Ids unique
    /// across the catalogue are checked by the whole config.
    pub fn validate(&self, at: &str, problems: &mut Problems) {
        problems.check(
            valid_device_id(&self.id),
            format!("{at}.id"),
            format!(
                "{:?} is not 1–{DEVICE_ID_MAX} characters of A–Z a–z 0–9 . _ : ~ @ -",
                self.id
            ),
        );
        problems.check(
            (-90.0..=90.0).contains(&self.lat),
            format!("{at}.lat"),
            format!("{} is not a latitude", self.lat),
        );
        problems.check(
            (-180.0..=180.0).contains(&self.lon),
            format!("{at}.lon"),
            format!("{} is not a longitude", self.lon),
        );
        problems.check(
            self.flood_levels.len() <= 3 && self.flood_levels.windows(2).all(|w| w[0] < w[1]),
            format!("{at}.flood_levels"),
            "must be at most three strictly increasing levels [BĐ1, BĐ2, BĐ3]",
        );
        for (metric, &[lo, hi]) in &self.ranges {
            validate_range(metric, lo, hi, &format!("{at}.ranges.{metric}"), problems);
        }
    }
}

/// A device's own band for `metric` must be increasing, inside the metric's possible range, and
/// name the metric canonically.
fn validate_range(metric: &str, lo: f64, hi: f64, at: &str, problems: &mut Problems) {
    match catalog::lookup(metric) {
        Some(spec) if spec.name == metric => {
            let (min, max) = spec.range;
            problems.check(
                lo < hi && min <= lo && hi <= max,
                at,
                format!(
                    "[{lo}, {hi}] must be increasing and within {metric}'s possible range [{min}, {max}] {}",
                    spec.unit
                ),
            );
        }
        Some(spec) => problems.add(at, format!("use the canonical metric name {:?}", spec.name)),
        None => problems.add(at, format!("unknown metric {metric:?}")),
    }
}
