//! Config-driven JSON mapping (Telegraf json_v2 style): RFC 6901 pointers to the device id,
//! time, status, position and each metric, so a new vendor is onboarded without code.

use jiff::{Timestamp, tz};
use serde_json::Value;

use super::{DecodeError, from_epoch_seconds, parse_json, parse_time, topic_level};
use crate::config::{JsonMapping, TimestampFormat};
use crate::model::{Location, Observation, ObservedValue};

#[derive(Debug, Clone)]
pub struct JsonMappingDecoder {
    mapping: Option<JsonMapping>,
    offset: tz::Offset,
}

impl JsonMappingDecoder {
    pub(super) fn new(mapping: JsonMapping, offset: tz::Offset) -> Self {
        JsonMappingDecoder {
            mapping: Some(mapping),
            offset,
        }
    }

    pub(super) fn unconfigured(offset: tz::Offset) -> Self {
        JsonMappingDecoder {
            mapping: None,
            offset,
        }
    }

    pub fn decode(
        &self,
        topic: &str,
        payload: &[u8],
        received_at: Timestamp,
    ) -> Result<Vec<Observation>, DecodeError> {
        let Some(m) = &self.mapping else {
            return Err(DecodeError::Schema(
                "feed has format json but no [feeds.mapping]".into(),
            ));
        };
        let doc: Value = parse_json(payload)?;
        let records: Vec<&Value> = match (&m.records, &doc) {
            (Some(p), _) => doc
                .pointer(p)
                .and_then(Value::as_array)
                .ok_or_else(|| DecodeError::Schema(format!("no array of records at {p}")))?
                .iter()
                .collect(),
            (None, Value::Array(items)) => items.iter().collect(),
            (None, _) => vec![&doc],
        };
        if records.is_empty() {
            return Err(DecodeError::Schema("no records".into()));
        }
        let mut out = Vec::new();
        for (i, record) in records.into_iter().enumerate() {
            self.record(m, i, record, topic, received_at, &mut out)?;
        }
        Ok(out)
    }

    fn record(
        &self,
        m: &JsonMapping,
        i: usize,
        record: &Value,
        topic: &str,
        received_at: Timestamp,
        out: &mut Vec<Observation>,
    ) -> Result<(), DecodeError> {
        let device = match (&m.device_id, m.device_id_topic_level) {
            (Some(p), _) => match record.pointer(p) {
                Some(Value::String(s)) if !s.trim().is_empty() => s.trim().to_owned(),
                Some(Value::Number(n)) => n.to_string(),
                _ => {
                    return Err(DecodeError::MissingDeviceId(format!(
                        "record {i}: no device id at {p}"
                    )));
                }
            },
            (None, Some(level)) => topic_level(topic, level)
                .ok_or_else(|| {
                    DecodeError::MissingDeviceId(format!("topic {topic:?} has no level {level}"))
                })?
                .to_owned(),
            (None, None) => {
                return Err(DecodeError::MissingDeviceId(
                    "mapping names no device id".into(),
                ));
            }
        };
        let observed_at = match &m.timestamp {
            None => received_at,
            Some(p) => {
                let v = record.pointer(p).ok_or_else(|| {
                    DecodeError::MissingTimestamp(format!("record {i}: no time at {p}"))
                })?;
                self.time(v, m.timestamp_format).ok_or_else(|| {
                    DecodeError::InvalidTimestamp(format!(
                        "record {i}: {v} at {p} is not a {:?} time",
                        m.timestamp_format
                    ))
                })?
            }
        };
        let status = m
            .status
            .as_ref()
            .and_then(|p| record.pointer(p))
            .and_then(Value::as_str)
            .map(str::to_owned);
        let coordinate = |p: &Option<String>| {
            p.as_ref()
                .and_then(|p| record.pointer(p))
                .and_then(Value::as_f64)
        };
        let location = coordinate(&m.latitude)
            .zip(coordinate(&m.longitude))
            .map(|(lat, lon)| Location {
                lat,
                lon,
                ward: None,
            });
        for mm in &m.metrics {
            let value = match record.pointer(&mm.pointer) {
                Some(Value::Number(n)) => ObservedValue::Number(n.as_f64().unwrap_or(f64::NAN)),
                Some(Value::Bool(b)) => ObservedValue::Bool(*b),
                Some(Value::String(s)) => match s.trim().parse::<f64>() {
                    Ok(v) => ObservedValue::Number(v),
                    Err(_) => ObservedValue::Text(s.clone()),
                },
                None | Some(Value::Null) if mm.optional => continue,
                None | Some(Value::Null) => {
                    return Err(DecodeError::Schema(format!(
                        "record {i}: no value at {} ({})",
                        mm.pointer, mm.metric
                    )));
                }
                Some(other) => {
                    return Err(DecodeError::InvalidValue(format!(
                        "record {i}: {} at {} is not a value",
                        other, mm.pointer
                    )));
                }
            };
            out.push(Observation {
                device_id: device.clone(),
                domain_hint: Some(m.domain.as_str().to_owned()),
                name: mm.metric.clone(),
                value,
                unit: mm.unit.clone(),
                observed_at: Some(observed_at),
                status: status.clone(),
                location: location.clone(),
            });
        }
        Ok(())
    }

    fn time(&self, v: &Value, format: TimestampFormat) -> Option<Timestamp> {
        match (format, v) {
            (TimestampFormat::Unix, Value::Number(n)) => from_epoch_seconds(n.as_f64()?),
            (TimestampFormat::UnixMs, Value::Number(n)) => from_epoch_seconds(n.as_f64()? / 1000.0),
            (TimestampFormat::Unix, Value::String(s)) => from_epoch_seconds(s.trim().parse().ok()?),
            (TimestampFormat::UnixMs, Value::String(s)) => {
                from_epoch_seconds(s.trim().parse::<f64>().ok()? / 1000.0)
            }
            (TimestampFormat::Rfc3339, Value::String(s)) => s.trim().parse().ok(),
            (TimestampFormat::Local, Value::String(s)) => parse_time(s, self.offset).ok(),
            _ => None,
        }
    }
}
