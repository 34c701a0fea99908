//! FIWARE NGSI-LD Smart Data Models (Phổ Yên IOC), on `py/ngsi-ld/{type}`: one entity or an
//! array. Both the normalized form (`{"type":"Property","value":…,"unitCode":"GQ"}`) and
//! key-values are accepted, with either key casing (`pm25` / `PM25`). `location` is GeoJSON,
//! `[lon, lat]`.

use std::{borrow::Cow, collections::BTreeMap, sync::LazyLock};

use jiff::{Timestamp, tz};
use serde::Deserialize;
use serde_json::{Value, value::RawValue};

use super::{DecodeError, parse_json, parse_time};
use crate::model::{Location, Observation, ObservedValue};

#[derive(Debug, Clone)]
pub struct NgsiLdDecoder {
    /// Offset assumed for the rare time written without one.
    pub(super) offset: tz::Offset,
}

const SUPPORTED: &[&str] = &[
    "AirQualityObserved",
    "WaterObserved",
    "FloodMonitoring",
    "WaterQualityObserved",
    "TrafficFlowObserved",
    "Streetlight",
    "WeatherObserved",
];

/// Entity-level times, in order of preference.
const TIME_KEYS: &[&str] = &[
    "dateObserved",
    "dateObservedTo",
    "observationDateTime",
    "dateLastReported",
];

/// Attributes that are not measurements: identity, metadata, thresholds, descriptive text.
const SKIP: &[&str] = &[
    "id",
    "type",
    "@context",
    "location",
    "address",
    "name",
    "description",
    "alternateName",
    "dataProvider",
    "source",
    "seeAlso",
    "owner",
    "refDevice",
    "refPointOfInterest",
    "refStreetlightGroup",
    "refStreetlightModel",
    "refStreetlightControlCabinet",
    "areaServed",
    "dateCreated",
    "dateModified",
    "dateObserved",
    "dateObservedFrom",
    "dateObservedTo",
    "observationDateTime",
    "dateLastReported",
    "dateLastLampChange",
    "dateLastSwitchingOn",
    "dateLastSwitchingOff",
    "dateServiceStarted",
    "typeOfLocation",
    "airQualityLevel",
    "airQualityIndex",
    "reliability",
    "coLevel",
    "no2Level",
    "so2Level",
    "o3Level",
    "pm10Level",
    "pm25Level",
    "laneId",
    "laneDirection",
    "reversedLane",
    "vehicleType",
    "vehicleSubType",
    "congested",
    "alertLevel",
    "dangerLevel",
    "referenceLevel",
    "floodLevelStatus",
    "measuredDistance",
    "stationID",
    "stationName",
    "status",
    "circuit",
    "feederID",
    "lanternHeight",
    "controllingMethod",
    "powerRating",
    "workingMode",
    "lampTechnology",
    "measurand",
    "sensorType",
    "category",
    "annotations",
];

/// Smart Data Models attributes that are 0–1 fractions when no unit is given.
const FRACTIONS: &[&str] = &["relativeHumidity", "occupancy", "illuminanceLevel"];

/// An entity as attribute name → raw JSON: only the attributes that matter are parsed further.
/// Ordered, so readings come out in a deterministic (alphabetical) order.
type Entity<'a> = BTreeMap<Cow<'a, str>, &'a RawValue>;

/// A normalized Property (or Relationship), with its value left raw.
#[derive(Deserialize)]
struct Property<'a> {
    #[serde(rename = "type", borrow, default)]
    kind: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    value: Option<&'a RawValue>,
    #[serde(rename = "unitCode", borrow, default)]
    unit_code: Option<Cow<'a, str>>,
    #[serde(rename = "observedAt", borrow, default)]
    observed_at: Option<&'a RawValue>,
}

/// `SKIP` by name length: a lookup compares only the few names of the key's length (cheaper
/// than hashing every attribute name with SipHash, which showed in the profile).
static SKIPPED: LazyLock<Vec<Vec<&'static str>>> = LazyLock::new(|| {
    let mut by_len = vec![Vec::new(); SKIP.iter().map(|s| s.len()).max().unwrap_or(0) + 1];
    for s in SKIP {
        by_len[s.len()].push(*s);
    }
    by_len
});

fn skipped(key: &str) -> bool {
    SKIPPED
        .get(key.len())
        .is_some_and(|names| names.contains(&key))
}

impl NgsiLdDecoder {
    pub fn decode(&self, payload: &[u8]) -> Result<Vec<Observation>, DecodeError> {
        let text = super::text(payload)?;
        let entities: Vec<Entity<'_>> = match text.trim_start().as_bytes().first() {
            Some(b'[') => parse_json(payload)?,
            Some(b'{') => vec![parse_json(payload)?],
            _ => {
                // Let the JSON parser say what is wrong, else it is the wrong shape.
                let _: Value = parse_json(payload)?;
                return Err(DecodeError::Schema(
                    "an NGSI-LD message is an entity object or an array of them".into(),
                ));
            }
        };
        if entities.is_empty() {
            return Err(DecodeError::Schema("empty array of entities".into()));
        }
        let mut out = Vec::new();
        for entity in &entities {
            self.entity(entity, &mut out)?;
        }
        if out.is_empty() {
            return Err(DecodeError::Schema(
                "no measured attributes in the entities".into(),
            ));
        }
        Ok(out)
    }

    fn entity(&self, e: &Entity<'_>, out: &mut Vec<Observation>) -> Result<(), DecodeError> {
        let string = |key: &str| -> Option<String> {
            e.get(key)
                .and_then(|raw| serde_json::from_str::<Cow<'_, str>>(raw.get()).ok())
                .map(Cow::into_owned)
        };
        let id = string("id")
            .map(|s| s.trim().to_owned())
            .filter(|s| !s.is_empty())
            .ok_or_else(|| DecodeError::MissingDeviceId("entity has no \"id\"".into()))?;
        let kind = string("type")
            .ok_or_else(|| DecodeError::Schema(format!("entity {id} has no \"type\"")))?;
        if !SUPPORTED.contains(&kind.as_str()) {
            return Err(DecodeError::UnsupportedType(format!(
                "entity {id}: type {kind:?} is not supported (supported: {})",
                SUPPORTED.join(", ")
            )));
        }
        // `urn:ngsi-ld:AirQualityObserved:PY-AQ-01` → `PY-AQ-01`.
        let device = id
            .rsplit(':')
            .next()
            .filter(|d| !d.is_empty())
            .unwrap_or(&id)
            .to_owned();
        let small =
            |raw: &RawValue| serde_json::from_str::<Value>(raw.get()).map_err(super::json_error);
        let entity_time = match TIME_KEYS.iter().find_map(|k| e.get(*k)) {
            Some(raw) => Some(self.time(&small(raw)?, &id)?),
            None => None,
        };
        let location = match e.get("location") {
            Some(raw) => location(&small(raw)?, &id)?,
            None => None,
        };
        let status = match e.get("status") {
            Some(raw) => property_value(&small(raw)?).as_str().map(str::to_owned),
            None => None,
        };

        for (key, raw) in e {
            if key.starts_with('@') || skipped(key) {
                continue;
            }
            let (value, unit, observed) = match raw.get().as_bytes().first() {
                Some(b'{') => {
                    let Ok(p) = serde_json::from_str::<Property<'_>>(raw.get()) else {
                        continue;
                    };
                    if p.kind.as_deref() == Some("Relationship") {
                        continue;
                    }
                    let Some(value) = p.value else { continue };
                    (value, p.unit_code, p.observed_at)
                }
                _ => (*raw, None, None),
            };
            let value = match value.get().as_bytes().first() {
                Some(b'-' | b'0'..=b'9') => match serde_json::from_str::<f64>(value.get()) {
                    Ok(v) => ObservedValue::Number(v),
                    Err(_) => {
                        return Err(DecodeError::InvalidValue(format!(
                            "entity {id}: {key} is not a finite number"
                        )));
                    }
                },
                Some(b't') => ObservedValue::Bool(true),
                Some(b'f') => ObservedValue::Bool(false),
                // Text is a reading only for on/off states; other text is descriptive.
                Some(b'"') if key == "powerState" => {
                    match serde_json::from_str::<String>(value.get()) {
                        Ok(s) => ObservedValue::Text(s),
                        Err(_) => continue,
                    }
                }
                _ => continue,
            };
            let observed_at = match observed {
                Some(t) => Some(self.time(&small(t)?, &id)?),
                None => entity_time,
            };
            if observed_at.is_none() {
                return Err(DecodeError::MissingTimestamp(format!(
                    "entity {id}: no observedAt on {key} and no dateObserved / observationDateTime"
                )));
            }
            let unit = unit
                .map(Cow::into_owned)
                .or_else(|| FRACTIONS.contains(&key.as_ref()).then(|| "1".to_owned()));
            out.push(Observation {
                device_id: device.clone(),
                domain_hint: Some(kind.clone()),
                name: key.clone().into_owned(),
                value,
                unit,
                observed_at,
                status: status.clone(),
                location: location.clone(),
            });
        }
        Ok(())
    }

    /// A time property: a string, `{"@type":"DateTime","@value":…}`, or a Property wrapping
    /// either. An ISO interval `start/end` stands for its end.
    fn time(&self, v: &Value, id: &str) -> Result<Timestamp, DecodeError> {
        let v = property_value(v);
        let s = match v {
            Value::String(s) => s.as_str(),
            Value::Object(o) => o.get("@value").and_then(Value::as_str).ok_or_else(|| {
                DecodeError::InvalidTimestamp(format!("entity {id}: time object without @value"))
            })?,
            other => {
                return Err(DecodeError::InvalidTimestamp(format!(
                    "entity {id}: {other} is not a time"
                )));
            }
        };
        let end = s.rsplit('/').next().unwrap_or(s);
        parse_time(end, self.offset)
            .map_err(|_| DecodeError::InvalidTimestamp(format!("entity {id}: {s:?} is not a time")))
    }
}

/// The value of a normalized Property, or the value itself in key-values form.
fn property_value(v: &Value) -> &Value {
    match v {
        Value::Object(o) if o.contains_key("value") => &o["value"],
        other => other,
    }
}

/// GeoJSON position of a GeoProperty: a Point, or the first point of a LineString / Polygon.
fn location(v: &Value, id: &str) -> Result<Option<Location>, DecodeError> {
    let geo = property_value(v);
    let Some(coords) = geo.get("coordinates") else {
        return Ok(None);
    };
    let mut point = coords;
    while let Some(first) = point
        .as_array()
        .and_then(|a| a.first())
        .filter(|f| f.is_array())
    {
        point = first;
    }
    let pair = point.as_array().filter(|a| a.len() >= 2);
    let (lon, lat) = match pair.map(|a| (a[0].as_f64(), a[1].as_f64())) {
        Some((Some(lon), Some(lat))) => (lon, lat),
        _ => {
            return Err(DecodeError::InvalidLocation(format!(
                "entity {id}: location coordinates {coords} are not [lon, lat]"
            )));
        }
    };
    if !(-90.0..=90.0).contains(&lat) || !(-180.0..=180.0).contains(&lon) {
        return Err(DecodeError::InvalidLocation(format!(
            "entity {id}: [lon, lat] = [{lon}, {lat}] is out of range (swapped?)"
        )));
    }
    Ok(Some(Location {
        lat,
        lon,
        ward: None,
    }))
}
