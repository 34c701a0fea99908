//! Hourly means of the VN_AQI pollutants per station for the last hours, kept in memory as the
//! commit thread stores readings: what the hourly (NowCast) VN_AQI of every station needs.
//!
//! The overview and the alert rules ask for every station's current AQI every few seconds.
//! From the readings that is a scan of 13 hours of data per station, which at full ingest
//! costs more than the ingest itself; from here it is a lookup. The store builds it from its
//! readings when it opens and the writer adds to it after each commit, so it holds exactly the
//! committed, measuring samples — what `Store::hourly_means` would compute.

use std::sync::Mutex;

use foldhash::HashMap;

use super::HOUR_MS;
use crate::aqi::{HourlyMeans, Pollutant};
/// The current hour and the 12 before it (NowCast), and one more for the previous hour's AQI.
pub(super) const HOURS: usize = 14;

#[derive(Debug, Clone, Copy, Default)]
struct Slot {
    /// Start of the hour (UTC ms) this slot holds; 0 = empty.
    hour: i64,
    sum: [f64; 6],
    count: [u32; 6],
}

/// Per station, a ring of hourly sums indexed by hour. Boxed: a ring is 1.1 KB, and a hash
/// table keeps up to half its buckets empty; inline rings cost 37 MB at 15,000 stations.
#[derive(Debug, Default)]
pub struct HourlyPollutants {
    stations: Mutex<HashMap<String, Box<[Slot; HOURS]>>>,
}

impl HourlyPollutants {
    /// Add committed, measuring samples: station, pollutant, observed at (UTC ms), value.
    pub(super) fn add_all(&self, samples: &[(&str, Pollutant, i64, f64)]) {
        let mut stations = self.stations.lock().unwrap_or_else(|e| e.into_inner());
        // A station's samples come together (a message carries its pollutants): one lookup
        // per run of them.
        for run in samples.chunk_by(|a, b| a.0 == b.0) {
            let station = run[0].0;
            let ring = match stations.get_mut(station) {
                Some(r) => r,
                None => stations.entry(station.to_owned()).or_default(),
            };
            for &(_, pollutant, observed_ms, value) in run {
                add_to(ring, pollutant, observed_ms, value, 1);
            }
        }
    }

    /// Apply corrections of stored samples: station, pollutant, observed at, change of the
    /// hour's sum and of its count (a value replaced by another, or a measuring sample
    /// replaced by a calibrating one and back).
    pub(super) fn correct(&self, corrections: &[(&str, Pollutant, i64, f64, i32)]) {
        if corrections.is_empty() {
            return;
        }
        let mut stations = self.stations.lock().unwrap_or_else(|e| e.into_inner());
        for &(station, pollutant, observed_ms, sum, n) in corrections {
            if let Some(ring) = stations.get_mut(station) {
                add_to(ring, pollutant, observed_ms, sum, n);
            }
        }
    }

    /// Add a precomputed hourly sum (when building from the store).
    pub(super) fn add_sum(&self, station: &str, pollutant: Pollutant, hour: i64, sum: f64, n: u32) {
        let mut stations = self.stations.lock().unwrap_or_else(|e| e.into_inner());
        let ring = stations.entry(station.to_owned()).or_default();
        add_to(ring, pollutant, hour, sum, n as i32);
    }

    /// The station's hourly means for hours starting in `[from, to)`, if it is tracked.
    pub fn means(&self, station: &str, from: i64, to: i64) -> Option<HourlyMeans> {
        let stations = self.stations.lock().unwrap_or_else(|e| e.into_inner());
        let ring = stations.get(station)?;
        let mut means = HourlyMeans::new();
        for slot in ring.iter().filter(|s| s.hour >= from && s.hour < to) {
            for p in Pollutant::ALL {
                let i = p as usize;
                if slot.count[i] > 0 {
                    means.insert(p, slot.hour, slot.sum[i] / f64::from(slot.count[i]));
                }
            }
        }
        Some(means)
    }
}

fn add_to(ring: &mut [Slot; HOURS], p: Pollutant, observed_ms: i64, sum: f64, n: i32) {
    let hour = observed_ms.div_euclid(HOUR_MS) * HOUR_MS;
    let slot = &mut ring[hour.div_euclid(HOUR_MS).rem_euclid(HOURS as i64) as usize];
    if slot.hour < hour {
        *slot = Slot {
            hour,
            ..Slot::default()
        };
    } else if slot.hour > hour {
        return; // older than the window this ring covers
    }
    slot.sum[p as usize] += sum;
    slot.count[p as usize] = slot.count[p as usize].saturating_add_signed(n);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_the_last_hours_and_ignores_older_ones() {
        let h = HourlyPollutants::default();
        let t0 = 1_000 * HOUR_MS;
        h.add_all(&[
            ("S", Pollutant::Pm25, t0 + 10, 10.0),
            ("S", Pollutant::Pm25, t0 + 20, 30.0),
            ("S", Pollutant::Co, t0 + 30, 5.0),
        ]);
        // 14 hours later the slot is reused; a sample for the old hour is then ignored.
        h.add_all(&[("S", Pollutant::Pm25, t0 + 14 * HOUR_MS, 50.0)]);
        h.add_all(&[("S", Pollutant::Pm25, t0 + 5, 99.0)]);
        let means = h.means("S", t0, t0 + 15 * HOUR_MS).unwrap();
        assert_eq!(means, {
            let mut m = HourlyMeans::new();
            m.insert(Pollutant::Pm25, t0 + 14 * HOUR_MS, 50.0);
            m
        });
        let h = HourlyPollutants::default();
        h.add_all(&[
            ("S", Pollutant::Pm25, t0 + 10, 10.0),
            ("S", Pollutant::Pm25, t0 + 20, 30.0),
        ]);
        let means = h.means("S", t0, t0 + HOUR_MS).unwrap();
        let mut expected = HourlyMeans::new();
        expected.insert(Pollutant::Pm25, t0, 20.0);
        assert_eq!(means, expected);
        assert!(h.means("T", t0, t0 + HOUR_MS).is_none());
    }
}
