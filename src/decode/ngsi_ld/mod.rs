//! FIWARE NGSI-LD Smart Data Models (Phổ Yên IOC), on `py/ngsi-ld/{type}`: one entity or an
//! array. Both the normalized form (`{"type":"Property","value":…,"unitCode":"GQ"}`) and
//! key-values are accepted, with either key casing (`pm25` / `PM25`). `location` is GeoJSON,
//! `[lon, lat]`.

mod models;

use std::{borrow::Cow, collections::BTreeMap};

use jiff::{Timestamp, tz};
use serde::Deserialize;
use serde_json::{Value, value::RawValue};

use super::{DecodeError, Scalar, parse_json, parse_time};
use crate::model::{Decoded, Location, Observation, ObservedValue, RejectReason, Rejection};
use crate::normalise::catalog;
use models::{SUPPORTED, TIME_KEYS, USED, default_unit, ignored, measured_name};

#[derive(Debug, Clone)]
pub struct NgsiLdDecoder {
    /// Offset assumed for the rare time written without one.
    pub(super) offset: tz::Offset,
}

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

/// The device of an entity id: what follows `urn:ngsi-ld:<Type>:` (which may hold colons
/// itself, e.g. a time), or the whole id when it is not such a URN. `None`: a URN that names
/// a type but no entity.
fn device_of(id: &str) -> Option<&str> {
    match id.strip_prefix("urn:ngsi-ld:") {
        Some(rest) => rest
            .split_once(':')
            .map(|(_, device)| device)
            .filter(|d| !d.is_empty()),
        None => Some(id),
    }
}

impl NgsiLdDecoder {
    pub fn decode(&self, payload: &[u8]) -> Result<Decoded, DecodeError> {
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
        let mut out = Decoded::default();
        for (i, entity) in entities.iter().enumerate() {
            // An entity that cannot be read is rejected alone; the others are still stored.
            if let Err(e) = self.entity(entity, &mut out) {
                let detail = if entities.len() > 1 {
                    format!("entity {i} of {}: {e}", entities.len())
                } else {
                    e.to_string()
                };
                out.rejected.push(Rejection::new(e.reason(), detail));
            }
        }
        if out.observations.is_empty() && out.rejected.is_empty() {
            return Err(DecodeError::Schema(
                "no measured attributes in the entities".into(),
            ));
        }
        Ok(out)
    }

    /// Read one entity's attributes into `out`: each becomes observations, a rejection with
    /// its reason, or an ignored field. `Err` when the entity as a whole cannot be read.
    fn entity(&self, e: &Entity<'_>, out: &mut Decoded) -> Result<(), DecodeError> {
        let head = self.head(e)?;
        for (key, raw) in e {
            if key.starts_with('@') || USED.contains(&key.as_ref()) {
                continue;
            }
            if let Some(field) = ignored(key) {
                out.ignored.push(field);
                continue;
            }
            match instances(raw) {
                Ok(Attribute::Relationship) => out.ignored.push("Relationship"),
                Ok(Attribute::Instances(instances)) => {
                    for instance in instances {
                        self.instance(&head, key, instance, out);
                    }
                }
                // A structure under a name we do not measure is an unknown attribute first.
                Err(why) if catalog::lookup(key).is_none() => out.rejected.push(head.reject(
                    key,
                    RejectReason::UnknownMetric,
                    format!("is not a metric we know, and {why}"),
                )),
                Err(why) => {
                    out.rejected
                        .push(head.reject(key, RejectReason::InvalidValue, why));
                }
            }
        }
        Ok(())
    }

    /// What entity `e` says of all its readings; `Err` when it has no usable id or type, or
    /// its time, location or status cannot be read.
    fn head(&self, e: &Entity<'_>) -> Result<Head, DecodeError> {
        let (id, kind) = identity(e)?;
        let device = device_of(&id)
            .ok_or_else(|| {
                DecodeError::MissingDeviceId(format!(
                    "entity id {id:?} names a type but no entity (urn:ngsi-ld:<Type>:<id>)"
                ))
            })?
            .to_owned();
        let time = match TIME_KEYS.iter().find_map(|k| e.get(*k)) {
            Some(raw) => Some(self.time(&small(raw)?, &id)?),
            None => None,
        };
        let location = match e.get("location") {
            Some(raw) => location(&small(raw)?, &id)?,
            None => None,
        };
        let status = match e.get("status") {
            Some(raw) => status(&small(raw)?, &id)?,
            None => None,
        };
        Ok(Head {
            id,
            kind,
            device,
            time,
            location,
            status,
        })
    }

    /// One instance of attribute `key`: an observation at its own time or else the entity's,
    /// or a rejection saying why it is none.
    fn instance(&self, head: &Head, key: &str, instance: Instance<'_>, out: &mut Decoded) {
        let at = match instance.observed_at {
            Some(t) => match small(t).and_then(|t| self.time(&t, &head.id)) {
                Ok(t) => Some(t),
                Err(err) => {
                    out.rejected
                        .push(head.reject(key, err.reason(), err.to_string()));
                    return;
                }
            },
            None => head.time,
        };
        if at.is_none() {
            out.rejected.push(head.reject(
                key,
                RejectReason::MissingTimestamp,
                "has no observedAt, and the entity no dateObserved / observationDateTime".into(),
            ));
            return;
        }
        match instance.value.into_value() {
            None => {
                out.rejected
                    .push(head.reject(key, RejectReason::InvalidValue, "is null".into()));
            }
            Some(value) => out
                .observations
                .push(head.observed(key, value, instance.unit, at)),
        }
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

/// What an entity says of all its readings: its id, type, device, time, position and status.
struct Head {
    id: String,
    kind: String,
    device: String,
    time: Option<Timestamp>,
    location: Option<Location>,
    status: Option<String>,
}

impl Head {
    /// A rejection of the entity's attribute `key`.
    fn reject(&self, key: &str, reason: RejectReason, why: String) -> Rejection {
        Rejection::new(reason, format!("entity {}: {key} {why}", self.id))
    }

    /// The observation of attribute `key` of the entity; without a `unitCode`, the data
    /// model's unit for the attribute.
    fn observed(
        &self,
        key: &str,
        value: ObservedValue,
        unit: Option<String>,
        at: Option<Timestamp>,
    ) -> Observation {
        Observation {
            device_id: self.device.clone(),
            domain_hint: Some(self.kind.clone()),
            name: measured_name(&self.kind, key).to_owned(),
            value,
            unit: unit.or_else(|| default_unit(key).map(str::to_owned)),
            observed_at: at,
            status: self.status.clone(),
            location: self.location.clone(),
        }
    }
}

/// The entity's trimmed `id` and its `type`, which must be one we support.
fn identity(e: &Entity<'_>) -> Result<(String, String), DecodeError> {
    let id = string(e, "id")
        .map(|s| s.trim().to_owned())
        .filter(|s| !s.is_empty())
        .ok_or_else(|| DecodeError::MissingDeviceId("entity has no \"id\"".into()))?;
    let kind = string(e, "type")
        .ok_or_else(|| DecodeError::Schema(format!("entity {id} has no \"type\"")))?;
    if !SUPPORTED.contains(&kind.as_str()) {
        return Err(DecodeError::UnsupportedType(format!(
            "entity {id}: type {kind:?} is not supported (supported: {})",
            SUPPORTED.join(", ")
        )));
    }
    Ok((id, kind))
}

/// The string attribute `key` of the entity, if it has one.
fn string(e: &Entity<'_>, key: &str) -> Option<String> {
    e.get(key)
        .and_then(|raw| serde_json::from_str::<Cow<'_, str>>(raw.get()).ok())
        .map(Cow::into_owned)
}

/// A small raw attribute (a time, a position, a status) parsed as a JSON value.
fn small(raw: &RawValue) -> Result<Value, DecodeError> {
    serde_json::from_str::<Value>(raw.get()).map_err(super::json_error)
}

/// The entity's status word; `null` is none.
fn status(v: &Value, id: &str) -> Result<Option<String>, DecodeError> {
    match property_value(v) {
        Value::String(s) => Ok(Some(s.clone())),
        Value::Null => Ok(None),
        other => Err(DecodeError::InvalidValue(format!(
            "entity {id}: status {other} is not a word"
        ))),
    }
}

/// The value of a normalized Property, or the value itself in key-values form.
fn property_value(v: &Value) -> &Value {
    match v {
        Value::Object(o) if o.contains_key("value") => &o["value"],
        other => other,
    }
}

/// An attribute: a reference to another entity, or its value instances (one, or several
/// with a `datasetId` each).
enum Attribute<'a> {
    Relationship,
    Instances(Vec<Instance<'a>>),
}

/// One value of an attribute, with its own unit and time if it has them.
struct Instance<'a> {
    value: Scalar,
    unit: Option<String>,
    observed_at: Option<&'a RawValue>,
}

/// The instances of an attribute: a bare value (key-values form), a Property, or an array of
/// Properties (multi-attribute instances). `Err` says why it holds no value we can read.
fn instances<'a>(raw: &'a RawValue) -> Result<Attribute<'a>, String> {
    let text = raw.get();
    match text.as_bytes().first() {
        Some(b'{') => property(text),
        Some(b'[') => instance_array(text),
        _ => Ok(Attribute::Instances(vec![Instance {
            value: scalar(raw)?,
            unit: None,
            observed_at: None,
        }])),
    }
}

/// A normalized Property's one instance, or a Relationship.
fn property(text: &str) -> Result<Attribute<'_>, String> {
    let p: Property<'_> =
        serde_json::from_str(text).map_err(|e| format!("is not an NGSI-LD property: {e}"))?;
    match p.kind.as_deref() {
        Some("Relationship") => return Ok(Attribute::Relationship),
        Some("GeoProperty") => return Err("is a GeoProperty, not a measurement".into()),
        _ => {}
    }
    let value = p
        .value
        .ok_or("has no \"value\" (a structured value is not a measurement)")?;
    Ok(Attribute::Instances(vec![Instance {
        value: scalar(value)?,
        unit: p.unit_code.map(Cow::into_owned),
        observed_at: p.observed_at,
    }]))
}

/// The instances of an array of Properties; a Relationship among them makes the whole a
/// Relationship.
fn instance_array(text: &str) -> Result<Attribute<'_>, String> {
    let items: Vec<&RawValue> =
        serde_json::from_str(text).map_err(|e| format!("is not an array of values: {e}"))?;
    if items.is_empty() || !items.iter().all(|i| i.get().starts_with('{')) {
        return Err("is an array, not a value or an array of property instances".into());
    }
    let mut all = Vec::with_capacity(items.len());
    for item in items {
        match instances(item)? {
            Attribute::Instances(mut i) => all.append(&mut i),
            Attribute::Relationship => return Ok(Attribute::Relationship),
        }
    }
    Ok(Attribute::Instances(all))
}

/// A property's value as a scalar; structured values are not measurements.
fn scalar(raw: &RawValue) -> Result<Scalar, String> {
    match raw.get().as_bytes().first() {
        Some(b'{' | b'[') => Err(format!(
            "is the structured value {}, not a measurement",
            truncated(raw.get())
        )),
        _ => serde_json::from_str::<Scalar>(raw.get()).map_err(|e| match e.to_string() {
            m if m.contains("number out of range") => "is a number out of range".to_owned(),
            m => format!("is not a value: {m}"),
        }),
    }
}

fn truncated(text: &str) -> String {
    match text.char_indices().nth(60) {
        Some((at, _)) => format!("{}…", &text[..at]),
        None => text.to_owned(),
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
