//! FIWARE NGSI-LD Smart Data Models (Phổ Yên IOC), on `py/ngsi-ld/{type}`: one entity or an
//! array. Both the normalized form (`{"type":"Property","value":…,"unitCode":"GQ"}`) and
//! key-values are accepted, with either key casing (`pm25` / `PM25`). `location` is GeoJSON,
//! `[lon, lat]`.

use jiff::{Timestamp, tz};
use serde_json::{Map, Value};

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

impl NgsiLdDecoder {
    pub fn decode(&self, payload: &[u8]) -> Result<Vec<Observation>, DecodeError> {
        let value: Value = parse_json(payload)?;
        let entities = match value {
            Value::Array(items) if items.is_empty() => {
                return Err(DecodeError::Schema("empty array of entities".into()));
            }
            Value::Array(items) => items,
            Value::Object(_) => vec![value],
            _ => {
                return Err(DecodeError::Schema(
                    "an NGSI-LD message is an entity object or an array of them".into(),
                ));
            }
        };
        let mut out = Vec::new();
        for (i, entity) in entities.into_iter().enumerate() {
            let Value::Object(entity) = entity else {
                return Err(DecodeError::Schema(format!("entity {i} is not an object")));
            };
            self.entity(&entity, &mut out)?;
        }
        if out.is_empty() {
            return Err(DecodeError::Schema(
                "no measured attributes in the entities".into(),
            ));
        }
        Ok(out)
    }

    fn entity(
        &self,
        e: &Map<String, Value>,
        out: &mut Vec<Observation>,
    ) -> Result<(), DecodeError> {
        let id = e
            .get("id")
            .and_then(Value::as_str)
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .ok_or_else(|| DecodeError::MissingDeviceId("entity has no \"id\"".into()))?;
        let kind = e
            .get("type")
            .and_then(Value::as_str)
            .ok_or_else(|| DecodeError::Schema(format!("entity {id} has no \"type\"")))?;
        if !SUPPORTED.contains(&kind) {
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
            .unwrap_or(id);
        let entity_time = TIME_KEYS
            .iter()
            .find_map(|k| e.get(*k))
            .map(|v| self.time(v, id))
            .transpose()?;
        let location = e
            .get("location")
            .map(|l| location(l, id))
            .transpose()?
            .flatten();
        let status = e
            .get("status")
            .map(property_value)
            .and_then(|v| v.as_str().map(str::to_owned));

        for (key, attr) in e {
            if SKIP.contains(&key.as_str()) || key.starts_with('@') {
                continue;
            }
            if let Value::Object(o) = attr
                && o.get("type").and_then(Value::as_str) == Some("Relationship")
            {
                continue;
            }
            let raw = property_value(attr);
            let value = match raw {
                Value::Number(n) => match n.as_f64() {
                    Some(v) => ObservedValue::Number(v),
                    None => {
                        return Err(DecodeError::InvalidValue(format!(
                            "entity {id}: {key} is not a finite number"
                        )));
                    }
                },
                Value::Bool(b) => ObservedValue::Bool(*b),
                // Text is a reading only for on/off states; other text is descriptive.
                Value::String(s) if key == "powerState" => ObservedValue::Text(s.clone()),
                _ => continue,
            };
            let observed_at = match attr.get("observedAt") {
                Some(t) => Some(self.time(t, id)?),
                None => entity_time,
            };
            if observed_at.is_none() {
                return Err(DecodeError::MissingTimestamp(format!(
                    "entity {id}: no observedAt on {key} and no dateObserved / observationDateTime"
                )));
            }
            let unit = attr
                .get("unitCode")
                .and_then(Value::as_str)
                .map(str::to_owned)
                .or_else(|| FRACTIONS.contains(&key.as_str()).then(|| "1".to_owned()));
            out.push(Observation {
                device_id: device.to_owned(),
                domain_hint: Some(kind.to_owned()),
                name: key.clone(),
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
