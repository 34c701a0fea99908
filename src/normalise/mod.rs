//! Normalise: vendor observations → canonical readings (metric names, units, UTC, location,
//! status, domain), with validation. Pure and synchronous; `now` is a parameter.
//!
//! Each observation is judged on its own: a message stores what is valid and quarantines the
//! rest with its raw payload and each part's reason (see `Normalised`). Only when nothing of
//! it is valid is the message rejected as a whole. Nothing is clipped, shifted or guessed: a
//! value of the wrong type, outside its metric's possible range or in a unit we do not know is
//! rejected with `invalid_value` or `unknown_unit`.

pub mod catalog;
mod conflict;
mod devices;
pub mod units;
mod value;
pub mod vocabulary;

use std::{collections::HashMap, sync::Arc, time::Duration};

use jiff::Timestamp;

use crate::model::{
    City, Decoded, Domain, FeedId, Location, Normalised, Observation, Reading, RejectReason,
    Rejection, Status,
};
use catalog::MetricSpec;
use conflict::one_value_per_series;
pub use devices::DeviceConfig;
use units::Vocabulary;
use value::value;

/// Longest device id, in bytes.
pub const DEVICE_ID_MAX: usize = 128;

/// Whether `id` is a valid device id: 1 to `DEVICE_ID_MAX` characters of `A–Z a–z 0–9` and
/// `. _ : ~ @ -` (safe in URLs, MQTT topics, InfluxDB tags and file names alike).
pub fn valid_device_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= DEVICE_ID_MAX
        && id.bytes().all(|b| {
            b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b':' | b'~' | b'@' | b'-')
        })
}

/// What the device catalogue says of a device.
#[derive(Debug, Clone)]
struct Catalogued {
    domain: Domain,
    location: Location,
    /// The device's own bands, narrower than its metrics' possible ranges.
    ranges: Vec<(&'static str, (f64, f64))>,
}

impl From<&DeviceConfig> for Catalogued {
    /// What the catalogue entry `d` says of its device.
    fn from(d: &DeviceConfig) -> Catalogued {
        let location = Location {
            lat: d.lat,
            lon: d.lon,
            ward: d.ward.clone(),
        };
        // Validation ensures every name is a canonical metric.
        let ranges = d
            .ranges
            .iter()
            .filter_map(|(metric, [lo, hi])| {
                catalog::lookup(metric).map(|spec| (spec.name, (*lo, *hi)))
            })
            .collect();
        Catalogued {
            domain: d.domain,
            location,
            ranges,
        }
    }
}

/// Normaliser of one feed.
#[derive(Debug, Clone)]
pub struct Normaliser {
    city: City,
    feed: FeedId,
    devices: Arc<HashMap<String, Catalogued>>,
    max_future_skew_ms: i64,
    retention_ms: i64,
}

impl Normaliser {
    /// The normaliser of feed `feed` of `city`: devices of the catalogue get its domain,
    /// position and bands; readings further than `max_future_skew` ahead or older than
    /// `retention` are rejected.
    pub fn new(
        city: City,
        feed: FeedId,
        devices: &[DeviceConfig],
        max_future_skew: Duration,
        retention: Duration,
    ) -> Normaliser {
        let devices = devices
            .iter()
            .map(|d| (d.id.clone(), Catalogued::from(d)))
            .collect();
        Normaliser {
            city,
            feed,
            devices: Arc::new(devices),
            max_future_skew_ms: max_future_skew.as_millis() as i64,
            retention_ms: retention.as_millis() as i64,
        }
    }

    /// Normalise what a decoder read from one message, whose units are written in
    /// `vocabulary`. `Err` when nothing of the message can be stored: the rejection names the
    /// first part's reason and lists every part's.
    pub fn normalise(
        &self,
        decoded: Decoded,
        vocabulary: Vocabulary,
        received_at: Timestamp,
        now: Timestamp,
    ) -> Result<Normalised, Rejection> {
        let Decoded {
            observations,
            mut rejected,
            ignored,
        } = decoded;
        if observations.is_empty() && rejected.is_empty() {
            return Err(Rejection::new(
                RejectReason::EmptyPayload,
                "the message carries no observations",
            ));
        }
        let mut readings: Vec<Reading> = Vec::with_capacity(observations.len());
        for o in &observations {
            match self.one(o, vocabulary, received_at, now) {
                Ok(r) => readings.push(r),
                Err(e) => rejected.push(e),
            }
        }
        let readings = one_value_per_series(readings, &observations, &mut rejected);
        if readings.is_empty() {
            return Err(combined(&rejected));
        }
        Ok(Normalised {
            readings,
            rejected,
            ignored,
        })
    }

    /// One observation as a reading, or the first reason it cannot be one. The checks run in
    /// a fixed order (device id, metric, time, status, value, range, position), and the first
    /// that fails names the rejection.
    fn one(
        &self,
        o: &Observation,
        vocabulary: Vocabulary,
        received_at: Timestamp,
        now: Timestamp,
    ) -> Result<Reading, Rejection> {
        let device = device_id(o)?;
        let spec = metric(device, o)?;
        let observed_at = self.observed_at(device, spec, o, now)?;
        let status = status(device, o)?;
        let catalogued = self.devices.get(device);
        let value = value(spec, o, vocabulary).map_err(|(reason, why)| {
            Rejection::new(
                reason,
                format!("device {device}: {} ({}) {why}", spec.name, o.name),
            )
        })?;
        within_range(device, spec, catalogued, value)?;
        let domain = catalogued
            .map(|c| c.domain)
            .or_else(|| o.domain_hint.as_deref().and_then(domain_from_hint))
            .unwrap_or(spec.domain);
        let location = location(device, o, catalogued)?;
        Ok(Reading {
            city: self.city,
            feed: self.feed.clone(),
            device_id: device.to_owned(),
            domain,
            metric: spec.name,
            value,
            unit: spec.unit,
            observed_at,
            received_at,
            location,
            status,
        })
    }

    /// The observation's time, if it has one and it lies between the retention window's start
    /// and `now` plus the allowed skew.
    fn observed_at(
        &self,
        device: &str,
        spec: &MetricSpec,
        o: &Observation,
        now: Timestamp,
    ) -> Result<Timestamp, Rejection> {
        let Some(observed_at) = o.observed_at else {
            return Err(Rejection::new(
                RejectReason::MissingTimestamp,
                format!("device {device}: {} has no time", spec.name),
            ));
        };
        let t = observed_at.as_millisecond();
        if t > now.as_millisecond() + self.max_future_skew_ms {
            return Err(Rejection::new(
                RejectReason::FutureTimestamp,
                format!(
                    "device {device}: {} observed at {observed_at}, later than now ({now}) plus the allowed skew",
                    spec.name
                ),
            ));
        }
        if t < now.as_millisecond() - self.retention_ms {
            return Err(Rejection::new(
                RejectReason::ExpiredTimestamp,
                format!(
                    "device {device}: {} observed at {observed_at}, older than the retention window",
                    spec.name
                ),
            ));
        }
        Ok(observed_at)
    }
}

/// The observation's device id, trimmed, if it is present and valid.
fn device_id(o: &Observation) -> Result<&str, Rejection> {
    let device = o.device_id.trim();
    if device.is_empty() {
        return Err(Rejection::new(
            RejectReason::MissingDeviceId,
            format!("observation {:?} has no device id", o.name),
        ));
    }
    if !valid_device_id(device) {
        let shown: String = device.chars().take(64).collect();
        return Err(Rejection::new(
            RejectReason::InvalidDeviceId,
            format!(
                "device id {shown:?}{} ({} bytes) is not 1–{DEVICE_ID_MAX} characters of A–Z a–z 0–9 . _ : ~ @ -",
                if shown.len() < device.len() {
                    "…"
                } else {
                    ""
                },
                device.len()
            ),
        ));
    }
    Ok(device)
}

/// The catalogue's metric the observation's name stands for.
fn metric(device: &str, o: &Observation) -> Result<&'static MetricSpec, Rejection> {
    catalog::lookup(&o.name).ok_or_else(|| {
        Rejection::new(
            RejectReason::UnknownMetric,
            format!("device {device}: unknown metric {:?}", o.name),
        )
    })
}

/// The observation's status in our vocabulary (none written means measuring).
fn status(device: &str, o: &Observation) -> Result<Status, Rejection> {
    vocabulary::status(o.status.as_deref()).ok_or_else(|| {
        Rejection::new(
            RejectReason::UnknownStatus,
            format!(
                "device {device}: unknown status {:?}",
                o.status.as_deref().unwrap_or_default()
            ),
        )
    })
}

/// Reject `value` unless it lies in the device's own band for the metric, or else in the
/// metric's possible range.
fn within_range(
    device: &str,
    spec: &MetricSpec,
    catalogued: Option<&Catalogued>,
    value: f64,
) -> Result<(), Rejection> {
    let (lo, hi) = catalogued
        .and_then(|c| c.ranges.iter().find(|(m, _)| *m == spec.name))
        .map_or(spec.range, |(_, r)| *r);
    if (lo..=hi).contains(&value) {
        return Ok(());
    }
    let whose = if (lo, hi) == spec.range {
        "possible"
    } else {
        "this device's"
    };
    Err(Rejection::new(
        RejectReason::InvalidValue,
        format!(
            "device {device}: {} = {value} {} is outside the {whose} range {lo} … {hi} {}",
            spec.name, spec.unit, spec.unit
        ),
    ))
}

/// The reading's position: the catalogue's for a catalogued device, else the observation's
/// own, which must be a real latitude and longitude.
fn location(
    device: &str,
    o: &Observation,
    catalogued: Option<&Catalogued>,
) -> Result<Option<Location>, Rejection> {
    if let Some(c) = catalogued {
        return Ok(Some(c.location.clone()));
    }
    match &o.location {
        Some(l)
            if !(-90.0..=90.0).contains(&l.lat)
                || !(-180.0..=180.0).contains(&l.lon)
                || !l.lat.is_finite()
                || !l.lon.is_finite() =>
        {
            Err(Rejection::new(
                RejectReason::InvalidLocation,
                format!(
                    "device {device}: position lat {}, lon {} is out of range (GeoJSON is [lon, lat])",
                    l.lat, l.lon
                ),
            ))
        }
        other => Ok(other.clone()),
    }
}

/// One rejection for a message none of whose parts can be stored: the first part's reason,
/// every part's detail.
fn combined(rejected: &[Rejection]) -> Rejection {
    match rejected {
        [] => Rejection::new(
            RejectReason::InvalidSchema,
            "the message holds no measurements",
        ),
        [one] => one.clone(),
        [first, ..] => Rejection::new(first.reason, Rejection::joined(rejected)),
    }
}

/// Topic segments and entity types vendors use for what a device is.
fn domain_from_hint(hint: &str) -> Option<Domain> {
    Some(match hint.to_ascii_lowercase().as_str() {
        "air" | "air_quality" | "airquality" | "aq" | "airqualityobserved" | "khongkhi" => {
            Domain::AirQuality
        }
        "water"
        | "hydro"
        | "flood"
        | "wl"
        | "water_quality"
        | "waterquality"
        | "waterobserved"
        | "floodmonitoring"
        | "waterqualityobserved"
        | "nuoc" => Domain::Water,
        "weather" | "meteo" | "rain" | "weatherobserved" => Domain::Weather,
        "traffic" | "trafficflowobserved" | "giaothong" => Domain::Traffic,
        "lighting" | "light" | "streetlight" | "chieusang" => Domain::Lighting,
        "energy" | "power" => Domain::Energy,
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;
    use crate::model::{ObservedValue, Status};

    fn normaliser() -> Normaliser {
        let config = Config::from_toml_str(crate::config::DEFAULT_TOML).unwrap();
        config.normaliser(&config.feeds[0])
    }

    fn obs(
        device: &str,
        name: &str,
        value: ObservedValue,
        unit: Option<&str>,
        at: Option<&str>,
    ) -> Observation {
        Observation {
            device_id: device.into(),
            domain_hint: Some("air".into()),
            name: name.into(),
            value,
            unit: unit.map(Into::into),
            observed_at: at.map(|t| t.parse().unwrap()),
            status: None,
            location: None,
        }
    }

    fn now() -> Timestamp {
        "2026-11-22T01:06:00Z".parse().unwrap()
    }

    const T: Option<&str> = Some("2026-11-22T01:05:00Z");

    fn norm(observations: Vec<Observation>) -> Result<Normalised, Rejection> {
        normaliser().normalise(observations.into(), Vocabulary::Plain, now(), now())
    }

    fn reason(observations: Vec<Observation>) -> &'static str {
        norm(observations).unwrap_err().reason.as_str()
    }

    fn num(v: f64) -> ObservedValue {
        ObservedValue::Number(v)
    }

    #[test]
    fn catalogued_device_gets_location_domain_and_canonical_values() {
        let r = norm(vec![obs(
            "TN-AQ-HUNGVUONG",
            "CO",
            num(2.15),
            Some("mg/m3"),
            T,
        )])
        .unwrap()
        .readings;
        assert_eq!(r[0].metric, "co");
        assert_eq!(r[0].value, 2150.0);
        assert_eq!(r[0].unit, "µg/m³");
        assert_eq!(r[0].domain, Domain::AirQuality);
        assert_eq!(
            r[0].location.as_ref().unwrap().ward.as_deref(),
            Some("Phan Đình Phùng")
        );
        assert_eq!(r[0].city, City::ThaiNguyen);
    }

    #[test]
    fn every_invalid_observation_has_its_reason() {
        let ug = Some("ug/m3");
        assert_eq!(reason(vec![]), "empty_payload");
        assert_eq!(
            reason(vec![obs(" ", "pm25", num(1.0), ug, T)]),
            "missing_device_id"
        );
        assert_eq!(
            reason(vec![obs("X", "banana", num(1.0), ug, T)]),
            "unknown_metric"
        );
        assert_eq!(
            reason(vec![obs("X", "pm25", num(1.0), Some("furlong"), T)]),
            "unknown_unit"
        );
        // No unit and none defined by the format: not guessed.
        assert_eq!(
            reason(vec![obs("X", "pm25", num(1.0), None, T)]),
            "unknown_unit"
        );
        assert_eq!(
            reason(vec![obs("X", "pm25", num(f64::NAN), ug, T)]),
            "invalid_value"
        );
        assert_eq!(
            reason(vec![obs(
                "X",
                "pm25",
                ObservedValue::Text("41.5".into()),
                ug,
                T
            )]),
            "invalid_value"
        );
        assert_eq!(
            reason(vec![obs("X", "pm25", ObservedValue::Bool(true), ug, T)]),
            "invalid_value"
        );
        assert_eq!(
            reason(vec![obs("X", "pm25", num(-0.5), ug, T)]),
            "invalid_value"
        );
        assert_eq!(
            reason(vec![obs("X", "humidity", num(104.0), Some("%"), T)]),
            "invalid_value"
        );
        assert_eq!(
            reason(vec![obs("X", "pm25", num(1.0), ug, None)]),
            "missing_timestamp"
        );
        assert_eq!(
            reason(vec![obs(
                "X",
                "pm25",
                num(1.0),
                ug,
                Some("2026-11-22T02:00:00Z")
            )]),
            "future_timestamp"
        );
        assert_eq!(
            reason(vec![obs(
                "X",
                "pm25",
                num(1.0),
                ug,
                Some("2020-01-01T00:00:00Z")
            )]),
            "expired_timestamp"
        );
        let mut bad_status = obs("X", "pm25", num(1.0), ug, T);
        bad_status.status = Some("sleeping".into());
        assert_eq!(reason(vec![bad_status]), "unknown_status");
        let mut swapped = obs("X", "pm25", num(1.0), ug, T);
        swapped.location = Some(Location {
            lat: 105.9,
            lon: 21.4,
            ward: None,
        });
        assert_eq!(reason(vec![swapped]), "invalid_location");
        assert_eq!(
            reason(vec![obs(&"X".repeat(129), "pm25", num(1.0), ug, T)]),
            "invalid_device_id"
        );
        assert_eq!(
            reason(vec![obs("TN AQ 1", "pm25", num(1.0), ug, T)]),
            "invalid_device_id"
        );
    }

    #[test]
    fn a_message_stores_its_valid_part_and_rejects_the_rest() {
        let n = norm(vec![
            obs("X", "pm25", num(35.0), Some("ug/m3"), T),
            obs("X", "pm10", num(-3.0), Some("ug/m3"), T),
            obs("X", "benzene", num(2.0), Some("ug/m3"), T),
        ])
        .unwrap();
        assert_eq!(n.readings.len(), 1);
        let reasons: Vec<_> = n.rejected.iter().map(|r| r.reason.as_str()).collect();
        assert_eq!(reasons, ["invalid_value", "unknown_metric"]);
    }

    #[test]
    fn two_names_for_one_series_agree_or_conflict() {
        let m = Some("m");
        let n = norm(vec![
            obs("X", "height", num(3.5), m, T),
            obs("X", "waterLevel", num(3.5), m, T),
            obs("X", "flow", num(12.0), Some("m3/s"), T),
            obs("X", "waterDischarge", num(3.0), Some("m3/s"), T),
        ])
        .unwrap();
        assert_eq!(n.readings.len(), 1, "{n:?}");
        assert_eq!(n.readings[0].metric, "water_level");
        assert_eq!(n.rejected.len(), 1);
        assert_eq!(n.rejected[0].reason, RejectReason::Conflict);
        assert!(n.rejected[0].detail.contains("waterDischarge"));
    }

    #[test]
    fn device_bands_narrow_the_possible_range() {
        let text = crate::config::DEFAULT_TOML.replace(
            "flood_levels = [25.0, 26.0, 27.0]",
            "flood_levels = [25.0, 26.0, 27.0]\nranges = { water_level = [15.0, 40.0] }",
        );
        assert_ne!(text, crate::config::DEFAULT_TOML, "the default has a gauge");
        let config = Config::from_toml_str(&text).unwrap();
        let gauge = config
            .devices
            .iter()
            .find(|d| !d.ranges.is_empty())
            .unwrap();
        let feed = config.feeds.iter().find(|f| f.city == gauge.city).unwrap();
        let n = config.normaliser(feed);
        let level = |v| {
            n.normalise(
                vec![obs(&gauge.id, "level", num(v), Some("m"), T)].into(),
                Vocabulary::Plain,
                now(),
                now(),
            )
        };
        assert!(level(21.3).is_ok());
        let e = level(3.0).unwrap_err();
        assert_eq!(e.reason, RejectReason::InvalidValue);
        assert!(e.detail.contains("this device's range"), "{e}");
    }

    #[test]
    fn status_and_on_off_values() {
        assert_eq!(
            vocabulary::status(Some("calibrating")),
            Some(Status::Calibrating)
        );
        let state = |v| {
            norm(vec![obs("L1", "powerState", v, None, T)])
                .map(|n| n.readings[0].value)
                .map_err(|e| e.reason.as_str())
        };
        assert_eq!(state(ObservedValue::Text("on".into())), Ok(1.0));
        assert_eq!(state(ObservedValue::Text("Tắt".into())), Ok(0.0));
        assert_eq!(state(ObservedValue::Text("low".into())), Ok(2.0));
        assert_eq!(state(ObservedValue::Text("bootingUp".into())), Ok(3.0));
        assert_eq!(state(ObservedValue::Bool(true)), Ok(1.0));
        assert_eq!(state(num(0.0)), Ok(0.0));
        assert_eq!(state(num(0.5)), Err("invalid_value"));
        assert_eq!(
            state(ObservedValue::Text("dazzling".into())),
            Err("invalid_value")
        );
    }
}
