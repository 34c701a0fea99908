//! One value per series in a message: repeats collapse, and values that disagree are a conflict.

use std::collections::HashMap;

use jiff::Timestamp;

use super::catalog;
use crate::model::{Observation, Reading, RejectReason, Rejection};

/// One reading per device, metric and time: repeats of one value collapse into one reading;
/// different values (two vendor names for one metric, several NGSI-LD instances) are a
/// conflict nothing can settle, and every one of them is rejected.
pub(super) fn one_value_per_series(
    readings: Vec<Reading>,
    observations: &[Observation],
    rejected: &mut Vec<Rejection>,
) -> Vec<Reading> {
    // Messages are small: the quadratic scan is cheaper than hashing at the usual 1–10
    // readings, and only runs further when a series repeats.
    let repeats = readings
        .iter()
        .enumerate()
        .any(|(i, r)| readings[..i].iter().any(|p| same_series(p, r)));
    if !repeats {
        return readings;
    }
    let mut keep = vec![false; readings.len()];
    for g in &series_groups(&readings) {
        let first = &readings[g[0]];
        let agree = g.iter().all(|&i| {
            readings[i].value.to_bits() == first.value.to_bits()
                && readings[i].status == first.status
        });
        if agree {
            keep[g[0]] = true;
        } else {
            rejected.push(conflict(&readings, g, observations));
        }
    }
    readings
        .into_iter()
        .zip(keep)
        .filter_map(|(r, k)| k.then_some(r))
        .collect()
}

/// Whether two readings are of one series: one device, metric and time.
fn same_series(a: &Reading, b: &Reading) -> bool {
    a.metric == b.metric && a.observed_at == b.observed_at && a.device_id == b.device_id
}

/// The readings' indices grouped by series, groups in order of each series' first reading.
fn series_groups(readings: &[Reading]) -> Vec<Vec<usize>> {
    let mut groups: Vec<Vec<usize>> = Vec::new();
    let mut index: HashMap<(&'static str, Timestamp, String), usize> = HashMap::new();
    for (i, r) in readings.iter().enumerate() {
        let key = (r.metric, r.observed_at, r.device_id.clone());
        let g = *index.entry(key).or_insert_with(|| {
            groups.push(Vec::new());
            groups.len() - 1
        });
        groups[g].push(i);
    }
    groups
}

/// The `conflict` rejection of a series whose readings (`group`) disagree: every value, and
/// the vendor names it came under.
fn conflict(readings: &[Reading], group: &[usize], observations: &[Observation]) -> Rejection {
    let first = &readings[group[0]];
    let values: Vec<String> = group
        .iter()
        .map(|&i| readings[i].value.to_string())
        .collect();
    // The vendor names it came under (rare: found again rather than kept for every reading).
    let mut names: Vec<&str> = observations
        .iter()
        .filter(|o| {
            o.device_id.trim() == first.device_id
                && o.observed_at == Some(first.observed_at)
                && catalog::lookup(&o.name).is_some_and(|s| s.name == first.metric)
        })
        .map(|o| o.name.as_str())
        .collect();
    names.dedup();
    Rejection::new(
        RejectReason::Conflict,
        format!(
            "device {}: {} at {} has {} different values in one message: {} {} (from {})",
            first.device_id,
            first.metric,
            first.observed_at,
            group.len(),
            values.join(", "),
            first.unit,
            names.join(", ")
        ),
    )
}
