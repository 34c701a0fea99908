//! Normalise: vendor observations → canonical readings (metric names, units, UTC, location,
//! status, domain), with validation. Pure and synchronous; `now` is a parameter.
//!
//! A message is all-or-nothing: one invalid observation rejects the whole message (its raw
//! payload is quarantined with the reason), so a message is always exactly one of stored,
//! rejected or duplicate.

pub mod catalog;
pub mod units;

use std::{collections::HashMap, sync::Arc};

use jiff::Timestamp;

use crate::config::{Config, FeedConfig};
use crate::model::{
    City, Domain, FeedId, Location, Observation, ObservedValue, Reading, Rejection, Status,
};

/// What the device catalogue says of a device.
#[derive(Debug, Clone)]
struct Catalogued {
    domain: Domain,
    location: Location,
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
    pub fn new(feed: &FeedConfig, config: &Config) -> Normaliser {
        let devices = config
            .devices
            .iter()
            .map(|d| {
                let location = Location {
                    lat: d.lat,
                    lon: d.lon,
                    ward: d.ward.clone(),
                };
                (
                    d.id.clone(),
                    Catalogued {
                        domain: d.domain,
                        location,
                    },
                )
            })
            .collect();
        Normaliser {
            city: feed.city,
            feed: FeedId::new(&feed.name),
            devices: Arc::new(devices),
            max_future_skew_ms: config.ingest.max_future_skew.as_millis() as i64,
            retention_ms: config.store.retention.as_millis() as i64,
        }
    }

    pub fn normalise(
        &self,
        observations: Vec<Observation>,
        received_at: Timestamp,
        now: Timestamp,
    ) -> Result<Vec<Reading>, Rejection> {
        if observations.is_empty() {
            return Err(Rejection::new(
                "empty_payload",
                "the message carries no observations",
            ));
        }
        let mut readings: Vec<Reading> = Vec::with_capacity(observations.len());
        for o in observations {
            let r = self.one(o, received_at, now)?;
            // The same device, metric and time twice in one message: the last one wins.
            if let Some(prev) = readings.iter_mut().find(|p| {
                p.metric == r.metric && p.observed_at == r.observed_at && p.device_id == r.device_id
            }) {
                *prev = r;
            } else {
                readings.push(r);
            }
        }
        Ok(readings)
    }

    fn one(
        &self,
        o: Observation,
        received_at: Timestamp,
        now: Timestamp,
    ) -> Result<Reading, Rejection> {
        let device = o.device_id.trim();
        if device.is_empty() {
            return Err(Rejection::new(
                "missing_device_id",
                format!("observation {:?} has no device id", o.name),
            ));
        }
        let Some(spec) = catalog::lookup(&o.name) else {
            return Err(Rejection::new(
                "unknown_metric",
                format!("device {device}: unknown metric {:?}", o.name),
            ));
        };
        let raw = match &o.value {
            ObservedValue::Number(v) => *v,
            ObservedValue::Bool(b) => f64::from(u8::from(*b)),
            ObservedValue::Text(t) => state_value(spec.name, t).ok_or_else(|| {
                Rejection::new(
                    "invalid_value",
                    format!(
                        "device {device}: {} has text value {t:?}, a number is required",
                        spec.name
                    ),
                )
            })?,
        };
        if !raw.is_finite() {
            return Err(Rejection::new(
                "invalid_value",
                format!(
                    "device {device}: {} value {raw} is not a finite number",
                    spec.name
                ),
            ));
        }
        let value = units::convert(spec, raw, o.unit.as_deref())
            .map_err(|e| Rejection::new("unknown_unit", format!("device {device}: {e}")))?;
        if !value.is_finite() {
            return Err(Rejection::new(
                "invalid_value",
                format!(
                    "device {device}: {} value overflows after unit conversion",
                    spec.name
                ),
            ));
        }
        let Some(observed_at) = o.observed_at else {
            return Err(Rejection::new(
                "missing_timestamp",
                format!("device {device}: {} has no time", spec.name),
            ));
        };
        let t = observed_at.as_millisecond();
        if t > now.as_millisecond() + self.max_future_skew_ms {
            return Err(Rejection::new(
                "future_timestamp",
                format!(
                    "device {device}: {} observed at {observed_at}, later than now ({now}) plus the allowed skew",
                    spec.name
                ),
            ));
        }
        if t < now.as_millisecond() - self.retention_ms {
            return Err(Rejection::new(
                "expired_timestamp",
                format!(
                    "device {device}: {} observed at {observed_at}, older than the retention window",
                    spec.name
                ),
            ));
        }
        let status = parse_status(o.status.as_deref()).ok_or_else(|| {
            Rejection::new(
                "unknown_status",
                format!(
                    "device {device}: unknown status {:?}",
                    o.status.as_deref().unwrap_or_default()
                ),
            )
        })?;
        let catalogued = self.devices.get(device);
        let domain = catalogued
            .map(|c| c.domain)
            .or_else(|| o.domain_hint.as_deref().and_then(domain_from_hint))
            .unwrap_or(spec.domain);
        let location = match catalogued {
            Some(c) => Some(c.location.clone()),
            None => match o.location {
                Some(l)
                    if !(-90.0..=90.0).contains(&l.lat)
                        || !(-180.0..=180.0).contains(&l.lon)
                        || !l.lat.is_finite()
                        || !l.lon.is_finite() =>
                {
                    return Err(Rejection::new(
                        "invalid_location",
                        format!(
                            "device {device}: position lat {}, lon {} is out of range (GeoJSON is [lon, lat])",
                            l.lat, l.lon
                        ),
                    ));
                }
                other => other,
            },
        };
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
}

/// Text values of on/off metrics.
fn state_value(metric: &str, text: &str) -> Option<f64> {
    if metric != "power_state" {
        return None;
    }
    match text.trim().to_ascii_lowercase().as_str() {
        "on" | "true" | "1" | "bat" | "bật" => Some(1.0),
        "off" | "false" | "0" | "tat" | "tắt" => Some(0.0),
        _ => None,
    }
}

/// Vendor status → datalogger status. `None` means unknown (rejected).
pub fn parse_status(status: Option<&str>) -> Option<Status> {
    let Some(s) = status else {
        return Some(Status::Measuring);
    };
    Some(match s.trim().to_ascii_lowercase().as_str() {
        "" | "measuring" | "ok" | "normal" | "on" | "off" | "active" | "online" | "good" => {
            Status::Measuring
        }
        "calibrating" | "calibration" | "maintenance" | "hieuchuan" | "baotri" => {
            Status::Calibrating
        }
        "fault" | "error" | "defectivelamp" | "broken" | "failure" | "loi" | "offline"
        | "columnissue" => Status::Fault,
        _ => return None,
    })
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

    fn normaliser() -> Normaliser {
        let config = Config::from_toml_str(crate::config::DEFAULT_TOML).unwrap();
        Normaliser::new(&config.feeds[0], &config)
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

    fn reason(r: Result<Vec<Reading>, Rejection>) -> &'static str {
        r.unwrap_err().reason
    }

    #[test]
    fn catalogued_device_gets_location_domain_and_canonical_values() {
        let n = normaliser();
        let r = n
            .normalise(
                vec![obs(
                    "TN-AQ-HUNGVUONG",
                    "CO",
                    ObservedValue::Number(2.15),
                    Some("mg/m3"),
                    Some("2026-11-22T01:05:00Z"),
                )],
                now(),
                now(),
            )
            .unwrap();
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
        let n = normaliser();
        let t = Some("2026-11-22T01:05:00Z");
        let num = ObservedValue::Number(1.0);
        assert_eq!(reason(n.normalise(vec![], now(), now())), "empty_payload");
        assert_eq!(
            reason(n.normalise(vec![obs(" ", "pm25", num.clone(), None, t)], now(), now())),
            "missing_device_id"
        );
        assert_eq!(
            reason(n.normalise(vec![obs("X", "banana", num.clone(), None, t)], now(), now())),
            "unknown_metric"
        );
        assert_eq!(
            reason(n.normalise(
                vec![obs("X", "pm25", num.clone(), Some("furlong"), t)],
                now(),
                now()
            )),
            "unknown_unit"
        );
        assert_eq!(
            reason(n.normalise(
                vec![obs("X", "pm25", ObservedValue::Number(f64::NAN), None, t)],
                now(),
                now()
            )),
            "invalid_value"
        );
        assert_eq!(
            reason(n.normalise(
                vec![obs(
                    "X",
                    "pm25",
                    ObservedValue::Text("high".into()),
                    None,
                    t
                )],
                now(),
                now()
            )),
            "invalid_value"
        );
        assert_eq!(
            reason(n.normalise(
                vec![obs("X", "pm25", num.clone(), None, None)],
                now(),
                now()
            )),
            "missing_timestamp"
        );
        assert_eq!(
            reason(n.normalise(
                vec![obs(
                    "X",
                    "pm25",
                    num.clone(),
                    None,
                    Some("2026-11-22T02:00:00Z")
                )],
                now(),
                now()
            )),
            "future_timestamp"
        );
        assert_eq!(
            reason(n.normalise(
                vec![obs(
                    "X",
                    "pm25",
                    num.clone(),
                    None,
                    Some("2020-01-01T00:00:00Z")
                )],
                now(),
                now()
            )),
            "expired_timestamp"
        );
        let mut bad_status = obs("X", "pm25", num.clone(), None, t);
        bad_status.status = Some("sleeping".into());
        assert_eq!(
            reason(n.normalise(vec![bad_status], now(), now())),
            "unknown_status"
        );
        let mut swapped = obs("X", "pm25", num, None, t);
        swapped.location = Some(Location {
            lat: 105.9,
            lon: 21.4,
            ward: None,
        });
        assert_eq!(
            reason(n.normalise(vec![swapped], now(), now())),
            "invalid_location"
        );
    }

    #[test]
    fn status_and_on_off_values() {
        assert_eq!(parse_status(Some("calibrating")), Some(Status::Calibrating));
        assert_eq!(parse_status(Some("defectiveLamp")), Some(Status::Fault));
        assert_eq!(parse_status(None), Some(Status::Measuring));
        let n = normaliser();
        let r = n
            .normalise(
                vec![obs(
                    "L1",
                    "powerState",
                    ObservedValue::Text("on".into()),
                    None,
                    Some("2026-11-22T01:00:00Z"),
                )],
                now(),
                now(),
            )
            .unwrap();
        assert_eq!((r[0].metric, r[0].value), ("power_state", 1.0));
    }
}
