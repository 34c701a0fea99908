//! What each kind of device reports at one time: its samples and status, from the daily and
//! seasonal profiles, the device's own noise and, for rain and lamp faults, the generator's
//! random numbers (drawn in a fixed order, so one seed gives one traffic).

use rand::{Rng, rngs::StdRng};

use super::profiles::{self, LocalTime};
use super::{DeviceState, Sample};

/// When a device reports: local time, its AR(1) noise now, and the minutes since its previous
/// message (for per-interval quantities).
#[derive(Debug, Clone, Copy)]
pub(super) struct Moment {
    pub(super) t: LocalTime,
    pub(super) n: f64,
    pub(super) minutes: f64,
}

/// An air-quality station: pollutants (scaled by the site), temperature and humidity; a daily
/// zero/span check makes it `calibrating`.
pub(super) fn air_quality(id: &str, m: Moment) -> (Vec<Sample>, &'static str) {
    let Moment { t, n, .. } = m;
    let site = if id.contains("QUANTRIEU") {
        1.35
    } else if id.contains("YENBINH") {
        1.15
    } else {
        1.0
    };
    let pm25 = (profiles::pm25(t, site) * (1.0 + 0.35 * n)).max(2.0);
    // A daily zero/span check at 00:00–00:10 local: calibrating, excluded from VN_AQI.
    let status = if t.hour < 10.0 / 60.0 {
        "calibrating"
    } else {
        "measuring"
    };
    let samples = vec![
        ("pm25", round1(pm25)),
        ("pm10", round1(pm25 * (1.45 + 0.1 * n))),
        (
            "no2",
            round1((profiles::no2(t, site) * (1.0 + 0.2 * n)).max(1.0)),
        ),
        ("so2", round1(12.0 * site * (1.0 + 0.3 * n).max(0.2))),
        (
            "co",
            (900.0 * site * profiles::pm25(t, 1.0) / 40.0 * (1.0 + 0.2 * n).max(0.3)).round(),
        ),
        ("o3", round1((profiles::o3(t) * (1.0 + 0.2 * n)).max(1.0))),
        ("temperature", round1(profiles::temperature(t) + n)),
        ("relative_humidity", round1(profiles::humidity(t) + 3.0 * n)),
    ];
    (samples, status)
}

/// A river gauge with flood alarm levels, the first of which is `bd1`.
pub(super) fn river_gauge(bd1: f64, id: &str, m: Moment) -> Vec<Sample> {
    // Gia Bảy: normal ≈ 20.8 m, BĐ1 25.0; Chã: normal ≈ 1.2 m, BĐ1 8.0 (§3).
    let (normal, rise) = if bd1 > 20.0 { (20.8, 6.6) } else { (1.2, 8.4) };
    let phase = (id.len() * 7) as f64;
    vec![(
        "water_level",
        round2(profiles::river_level(m.t, normal, rise, phase) + 0.02 * m.n),
    )]
}

/// A water-quality station.
pub(super) fn water_quality(m: Moment) -> Vec<Sample> {
    let Moment { t, n, .. } = m;
    vec![
        ("ph", round2(7.2 + 0.2 * n)),
        (
            "dissolved_oxygen",
            round2(6.1 - 0.8 * profiles::temperature(t) / 30.0 + 0.3 * n),
        ),
        ("turbidity", round1((35.0 + 20.0 * n).max(2.0))),
        ("conductivity", round1(210.0 + 25.0 * n)),
        ("water_temperature", round1(profiles::temperature(t) - 2.0)),
    ]
}

/// Any other water station: a level and a rain gauge.
pub(super) fn water_level_and_rain(m: Moment, rng: &mut StdRng) -> Vec<Sample> {
    let rain = profiles::rain(m.t, m.minutes, rng);
    vec![
        (
            "water_level",
            round2(profiles::river_level(m.t, 18.4, 3.0, 40.0) + 0.02 * m.n),
        ),
        ("rainfall", rain),
    ]
}

/// A weather station.
pub(super) fn weather(m: Moment, rng: &mut StdRng) -> Vec<Sample> {
    let Moment { t, n, minutes } = m;
    vec![
        ("rainfall", profiles::rain(t, minutes, rng)),
        ("temperature", round1(profiles::temperature(t) + 0.5 * n)),
        ("relative_humidity", round1(profiles::humidity(t) + 2.0 * n)),
    ]
}

/// A traffic counter (busier at the industrial park's shift changes).
pub(super) fn traffic(id: &str, m: Moment) -> Vec<Sample> {
    let Moment { t, n, minutes } = m;
    let industrial = id.contains("YENBINH");
    let per_5 = profiles::vehicles_per_5min(t, industrial) * (1.0 + 0.15 * n);
    let count = (per_5 * minutes / 5.0).max(0.0).round();
    let speed = (48.0 - 0.06 * per_5 + 3.0 * n).clamp(8.0, 70.0);
    vec![
        ("vehicle_count", count),
        ("average_speed", round1(speed)),
        ("occupancy", round1((per_5 / 6.0).clamp(1.0, 95.0))),
    ]
}

/// A street light or lighting cabinet: on from dusk to dawn and dimmed late, its energy
/// counting up; now and then a lamp fault lasts an hour (`fault`, no power).
pub(super) fn lighting(
    state: &mut DeviceState,
    id: &str,
    m: Moment,
    rng: &mut StdRng,
) -> (Vec<Sample>, &'static str) {
    let Moment { t, n, minutes } = m;
    let cabinet = id.contains("CAB") || id.starts_with("sc-lt");
    let rated_w = if cabinet { 9_000.0 } else { 150.0 };
    let on = profiles::lights_on(t);
    if state.fault_left > 0 {
        state.fault_left -= 1;
    } else if on && rng.random::<f64>() < 0.01 {
        state.fault_left = 12;
    }
    let fault = state.fault_left > 0;
    let status = if fault { "fault" } else { "measuring" };
    let dim = profiles::dimming(t);
    let power = if on && !fault {
        rated_w * dim / 100.0 * (1.0 + 0.02 * n)
    } else {
        0.0
    };
    state.energy_kwh += power / 1000.0 * minutes / 60.0;
    let samples = vec![
        ("power_state", if on { 1.0 } else { 0.0 }),
        ("power", round1(power)),
        ("energy", round2(state.energy_kwh)),
        ("dimming_level", dim),
    ];
    (samples, status)
}

fn round1(v: f64) -> f64 {
    (v * 10.0).round() / 10.0
}

fn round2(v: f64) -> f64 {
    (v * 100.0).round() / 100.0
}
