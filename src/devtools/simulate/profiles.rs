//! What each kind of device measures over a day and a year, from shared/domain.md: winter air
//! pollution episodes and traffic-hour peaks, sông Cầu levels around the flood alarm levels,
//! motorbike-dominated traffic with shift changes at the Yên Bình industrial park, street
//! lighting on from dusk to dawn and dimmed after 23:00.

use std::f64::consts::PI;

use jiff::{Timestamp, civil};
use rand::{Rng, rngs::StdRng};

/// Local (UTC+7) time of day in hours, and month, for the daily and seasonal cycles.
#[derive(Debug, Clone, Copy)]
pub struct LocalTime {
    pub hour: f64,
    pub month: i8,
    /// Hours since the epoch, for slow cycles (floods) that must not restart with the process.
    pub epoch_hours: f64,
}

impl LocalTime {
    pub fn of(t: Timestamp) -> LocalTime {
        let local: civil::DateTime = t
            .to_zoned(jiff::tz::TimeZone::fixed(jiff::tz::offset(7)))
            .datetime();
        LocalTime {
            hour: f64::from(local.hour()) + f64::from(local.minute()) / 60.0,
            month: local.month(),
            epoch_hours: t.as_second() as f64 / 3600.0,
        }
    }
}

/// A bell around `centre` (hours), `width` hours wide, wrapping midnight.
fn bell(hour: f64, centre: f64, width: f64) -> f64 {
    let mut d = (hour - centre).abs();
    if d > 12.0 {
        d = 24.0 - d;
    }
    (-(d * d) / (2.0 * width * width)).exp()
}

/// Standard normal sample.
pub fn gaussian(rng: &mut StdRng) -> f64 {
    let u1: f64 = rng.random::<f64>().max(f64::MIN_POSITIVE);
    let u2: f64 = rng.random();
    (-2.0 * u1.ln()).sqrt() * (2.0 * PI * u2).cos()
}

/// Winter (Nov–Feb) brings the worst air in Thái Nguyên; the rainy season washes it out.
fn season_pollution(month: i8) -> f64 {
    match month {
        11 | 12 | 1 | 2 => 2.3,
        3 | 10 => 1.4,
        4 => 1.1,
        _ => 0.65,
    }
}

/// PM2.5 in µg/m³ before noise: traffic peaks morning and evening, a night inversion, cleaner
/// afternoons.
pub fn pm25(t: LocalTime, site_factor: f64) -> f64 {
    let daily = 0.75 + 0.45 * bell(t.hour, 7.5, 1.3) + 0.7 * bell(t.hour, 20.0, 2.5)
        - 0.25 * bell(t.hour, 14.0, 2.5);
    22.0 * season_pollution(t.month) * daily * site_factor
}

/// Ozone peaks in the sunny afternoon.
pub fn o3(t: LocalTime) -> f64 {
    let summer = if (5..=9).contains(&t.month) { 1.3 } else { 0.9 };
    (15.0 + 95.0 * bell(t.hour, 14.5, 2.8)) * summer
}

pub fn no2(t: LocalTime, site_factor: f64) -> f64 {
    (18.0 + 35.0 * bell(t.hour, 7.5, 1.5) + 40.0 * bell(t.hour, 18.5, 2.0)) * site_factor
}

/// Air temperature, °C: January ≈ 15 °C, June ≈ 29 °C (domain.md §3.6), warmest mid-afternoon.
pub fn temperature(t: LocalTime) -> f64 {
    let seasonal = 22.0 - 7.0 * ((f64::from(t.month) - 1.0) / 12.0 * 2.0 * PI).cos();
    seasonal + 4.0 * (((t.hour - 9.0) / 24.0) * 2.0 * PI).sin()
}

pub fn humidity(t: LocalTime) -> f64 {
    (82.0 - 18.0 * bell(t.hour, 14.0, 3.0)).clamp(35.0, 99.0)
}

/// Rain in mm over `minutes`: showers in the rainy season (May–Oct), drizzle otherwise.
pub fn rain(t: LocalTime, minutes: f64, rng: &mut StdRng) -> f64 {
    let (chance, mean_mm_per_hour) = if (5..=10).contains(&t.month) {
        (0.25, 6.0)
    } else {
        (0.06, 0.8)
    };
    if rng.random::<f64>() < chance {
        let intensity = -mean_mm_per_hour * rng.random::<f64>().max(1e-9).ln();
        (intensity * minutes / 60.0 * 10.0).round() / 10.0
    } else {
        0.0
    }
}

/// River level in metres. Normal levels wander slowly around `normal`; every five days a flood
/// wave (timed from the epoch, so restarts do not reset it) rises for a day and recedes over a
/// day and a half. Waves differ: one in five reaches the full `flood_rise`, most stay small.
pub fn river_level(t: LocalTime, normal: f64, flood_rise: f64, phase_hours: f64) -> f64 {
    const PERIOD: f64 = 120.0;
    const WAVES: [f64; 5] = [0.3, 0.55, 1.0, 0.4, 0.7];
    let shifted = t.epoch_hours + phase_hours;
    let p = shifted.rem_euclid(PERIOD);
    let size = WAVES[(shifted / PERIOD).floor().rem_euclid(5.0) as usize];
    let wave = if p < 24.0 {
        (p / 24.0 * PI / 2.0).sin()
    } else if p < 60.0 {
        ((p - 24.0) / 36.0 * PI / 2.0).cos()
    } else {
        0.0
    };
    normal + 0.15 * ((t.epoch_hours / 24.0) * 2.0 * PI).sin() + flood_rise * size * wave
}

/// Vehicles per 5 minutes at a counter: motorbike-dominated rush hours, and shift changes
/// (06:00, 14:00, 22:00) near the Yên Bình industrial park.
pub fn vehicles_per_5min(t: LocalTime, industrial: bool) -> f64 {
    let base = 25.0
        + 260.0 * bell(t.hour, 7.25, 0.8)
        + 240.0 * bell(t.hour, 17.5, 1.0)
        + 90.0 * bell(t.hour, 12.0, 2.5)
        - 20.0 * bell(t.hour, 3.0, 2.0);
    let shifts = if industrial {
        420.0 * (bell(t.hour, 6.0, 0.5) + bell(t.hour, 14.0, 0.5) + 0.6 * bell(t.hour, 22.0, 0.5))
    } else {
        0.0
    };
    (base + shifts).max(3.0)
}

/// Lights are on from 17:45 to 05:45 local.
pub fn lights_on(t: LocalTime) -> bool {
    !(5.75..17.75).contains(&t.hour)
}

/// Dimming level in %: full until 23:00, then 35 % on quiet roads.
pub fn dimming(t: LocalTime) -> f64 {
    if !lights_on(t) {
        0.0
    } else if t.hour >= 23.0 || t.hour < 5.0 {
        35.0
    } else {
        100.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(local: &str) -> LocalTime {
        let t = local
            .parse::<civil::DateTime>()
            .unwrap()
            .to_zoned(jiff::tz::TimeZone::fixed(jiff::tz::offset(7)))
            .unwrap()
            .timestamp();
        LocalTime::of(t)
    }

    #[test]
    fn daily_and_seasonal_cycles() {
        assert!(pm25(at("2026-01-10T20:00"), 1.0) > 2.0 * pm25(at("2026-07-10T20:00"), 1.0));
        assert!(pm25(at("2026-01-10T07:30"), 1.0) > pm25(at("2026-01-10T14:00"), 1.0));
        assert!(
            vehicles_per_5min(at("2026-11-22T07:30"), false)
                > 5.0 * vehicles_per_5min(at("2026-11-22T03:00"), false)
        );
        assert!(
            vehicles_per_5min(at("2026-11-22T14:00"), true)
                > 2.0 * vehicles_per_5min(at("2026-11-22T14:00"), false)
        );
        assert!(lights_on(at("2026-11-22T22:00")) && !lights_on(at("2026-11-22T12:00")));
        assert_eq!(dimming(at("2026-11-22T23:30")), 35.0);
        assert!(temperature(at("2026-06-15T14:00")) > temperature(at("2026-01-15T14:00")) + 8.0);
        assert!(o3(at("2026-11-22T14:30")) > 3.0 * o3(at("2026-11-22T03:00")));
    }

    #[test]
    fn flood_waves_reach_the_alarm_levels_and_recede() {
        let levels: Vec<f64> = (0..600)
            .map(|h| {
                river_level(
                    LocalTime {
                        hour: 0.0,
                        month: 9,
                        epoch_hours: f64::from(h),
                    },
                    20.8,
                    6.6,
                    0.0,
                )
            })
            .collect();
        let peak = levels.iter().copied().fold(f64::MIN, f64::max);
        assert!(peak > 27.0, "peak {peak} should pass BĐ3 27.00 m");
        assert!(levels[100] < 21.2, "receded to normal: {}", levels[100]);
        let waves_past_bd1 = (0..5)
            .filter(|w| levels[w * 120..(w + 1) * 120].iter().any(|l| *l > 25.0))
            .count();
        assert_eq!(waves_past_bd1, 2, "most waves stay below BĐ1");
    }
}
