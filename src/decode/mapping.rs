//! Config-driven JSON mapping (Telegraf json_v2 style): RFC 6901 pointers to the device id,
//! time, status, position and each metric, so a new vendor is onboarded without code.

use jiff::{Timestamp, tz};
use serde::Deserialize;
use serde_json::Value;

use super::{DecodeError, from_epoch_seconds, parse_json, parse_time, topic_level};
use crate::model::{Domain, Location, Observation, ObservedValue};
use crate::normalise::{catalog, units::Vocabulary};
use crate::settings::Problems;

/// How timestamps are written in a mapped JSON payload.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TimestampFormat {
    /// RFC 3339 / ISO 8601 with an offset (`2026-11-22T01:05:00Z`).
    Rfc3339,
    /// Seconds since the Unix epoch.
    Unix,
    /// Milliseconds since the Unix epoch.
    UnixMs,
    /// Naive local time `YYYY-MM-DD HH:MM:SS` (or with `T`) in the feed's `utc_offset_hours`.
    Local,
}

/// Telegraf json_v2-style mapping for onboarding a vendor without code. Pointers are RFC 6901
/// JSON pointers, relative to each record.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JsonMapping {
    /// Pointer to an array of records; absent: the payload is one record, or a top-level array
    /// of records.
    #[serde(default)]
    pub records: Option<String>,
    /// Pointer to the device id in a record.
    #[serde(default)]
    pub device_id: Option<String>,
    /// Take the device id from this topic level instead (0-based), e.g. 2 for `v/x/{device}`.
    #[serde(default)]
    pub device_id_topic_level: Option<usize>,
    /// Pointer to the observation time; absent: the time the message was received.
    #[serde(default)]
    pub timestamp: Option<String>,
    #[serde(default = "default_timestamp_format")]
    pub timestamp_format: TimestampFormat,
    /// Domain of every device of this feed.
    pub domain: Domain,
    /// Pointer to a status string (`measuring` / `calibrating` / `fault`).
    #[serde(default)]
    pub status: Option<String>,
    #[serde(default)]
    pub latitude: Option<String>,
    #[serde(default)]
    pub longitude: Option<String>,
    pub metrics: Vec<MetricMapping>,
}

fn default_timestamp_format() -> TimestampFormat {
    TimestampFormat::Rfc3339
}

/// One metric of a JSON mapping.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MetricMapping {
    /// Pointer to the value within a record.
    pub pointer: String,
    /// Canonical metric name (see the README's metric table) or a known vendor alias.
    pub metric: String,
    /// Unit of the value as sent (`ug/m3`, `mg/m3`, `ppm`, `cm`, `F`, ...).
    #[serde(default)]
    pub unit: Option<String>,
    /// When true, a record without this value is fine; otherwise the message is rejected.
    #[serde(default)]
    pub optional: bool,
}

impl JsonMapping {
    /// Record every problem of this mapping (`at` is its key path, `feeds[i].mapping`): pointers
    /// that are not JSON pointers, no device id, no metric, an unknown metric, a missing or
    /// unknown unit.
    pub fn validate(&self, at: &str, problems: &mut Problems) {
        let m = self;
        let pointers = [
            ("records", &m.records),
            ("device_id", &m.device_id),
            ("timestamp", &m.timestamp),
            ("status", &m.status),
            ("latitude", &m.latitude),
            ("longitude", &m.longitude),
        ];
        for (key, p) in pointers {
            if let Some(p) = p
                && !p.is_empty()
                && !p.starts_with('/')
            {
                problems.add(
                    format!("{at}.{key}"),
                    format!("{p:?} is not a JSON pointer (must start with '/')"),
                );
            }
        }
        if m.device_id.is_none() && m.device_id_topic_level.is_none() {
            problems.add(
                format!("{at}.device_id"),
                "set device_id (a JSON pointer) or device_id_topic_level",
            );
        }
        if m.metrics.is_empty() {
            problems.add(format!("{at}.metrics"), "at least one metric is required");
        }
        for (j, mm) in m.metrics.iter().enumerate() {
            mm.validate(&format!("{at}.metrics[{j}]"), problems);
        }
    }
}

impl MetricMapping {
    /// Record the problems of this metric (`at` is its key path): a pointer that is not a JSON
    /// pointer, an unknown metric, a missing or unknown unit.
    fn validate(&self, at: &str, problems: &mut Problems) {
        if !self.pointer.starts_with('/') {
            problems.add(
                format!("{at}.pointer"),
                format!(
                    "{:?} is not a JSON pointer (must start with '/')",
                    self.pointer
                ),
            );
        }
        match (catalog::lookup(&self.metric), &self.unit) {
            (None, _) => problems.add(
                format!("{at}.metric"),
                format!("unknown metric {:?}", self.metric),
            ),
            // A bare number is read in no unit: the mapping says which.
            (Some(spec), None) if !spec.unitless() => problems.add(
                format!("{at}.unit"),
                format!(
                    "required for {} (canonical unit {}): the unit the vendor's values are in",
                    spec.name, spec.unit
                ),
            ),
            (Some(spec), Some(unit)) => {
                if let Err(e) = spec.convert(1.0, unit, Vocabulary::Plain) {
                    problems.add(format!("{at}.unit"), e.to_string());
                }
            }
            (Some(_), None) => {}
        }
    }
}

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

    /// Read record `i` of the payload into `out`: one observation per mapped metric it holds.
    fn record(
        &self,
        m: &JsonMapping,
        i: usize,
        record: &Value,
        topic: &str,
        received_at: Timestamp,
        out: &mut Vec<Observation>,
    ) -> Result<(), DecodeError> {
        let device = device(m, i, record, topic)?;
        let observed_at = match &m.timestamp {
            None => received_at,
            Some(p) => self.record_time(m.timestamp_format, i, record, p)?,
        };
        let status = m
            .status
            .as_ref()
            .and_then(|p| record.pointer(p))
            .and_then(Value::as_str)
            .map(str::to_owned);
        let location = location(m, record);
        for mm in &m.metrics {
            let Some(value) = value(mm, i, record)? else {
                continue;
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

    /// The time at pointer `p` of record `i`, written in `format`.
    fn record_time(
        &self,
        format: TimestampFormat,
        i: usize,
        record: &Value,
        p: &str,
    ) -> Result<Timestamp, DecodeError> {
        let v = record
            .pointer(p)
            .ok_or_else(|| DecodeError::MissingTimestamp(format!("record {i}: no time at {p}")))?;
        self.time(v, format).ok_or_else(|| {
            DecodeError::InvalidTimestamp(format!(
                "record {i}: {v} at {p} is not a {format:?} time"
            ))
        })
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

/// The device id of record `i`: at the mapping's pointer (a string or a number), else the
/// mapping's topic level.
fn device(m: &JsonMapping, i: usize, record: &Value, topic: &str) -> Result<String, DecodeError> {
    match (&m.device_id, m.device_id_topic_level) {
        (Some(p), _) => match record.pointer(p) {
            Some(Value::String(s)) if !s.trim().is_empty() => Ok(s.trim().to_owned()),
            Some(Value::Number(n)) => Ok(n.to_string()),
            _ => Err(DecodeError::MissingDeviceId(format!(
                "record {i}: no device id at {p}"
            ))),
        },
        (None, Some(level)) => topic_level(topic, level).map(str::to_owned).ok_or_else(|| {
            DecodeError::MissingDeviceId(format!("topic {topic:?} has no level {level}"))
        }),
        (None, None) => Err(DecodeError::MissingDeviceId(
            "mapping names no device id".into(),
        )),
    }
}

/// The record's position, when both mapped coordinates are numbers.
fn location(m: &JsonMapping, record: &Value) -> Option<Location> {
    let coordinate = |p: &Option<String>| {
        p.as_ref()
            .and_then(|p| record.pointer(p))
            .and_then(Value::as_f64)
    };
    coordinate(&m.latitude)
        .zip(coordinate(&m.longitude))
        .map(|(lat, lon)| Location {
            lat,
            lon,
            ward: None,
        })
}

/// The value of metric `mm` in record `i` (a numeric string is a number); `None` when an
/// optional metric is absent.
fn value(
    mm: &MetricMapping,
    i: usize,
    record: &Value,
) -> Result<Option<ObservedValue>, DecodeError> {
    Ok(Some(match record.pointer(&mm.pointer) {
        Some(Value::Number(n)) => ObservedValue::Number(n.as_f64().unwrap_or(f64::NAN)),
        Some(Value::Bool(b)) => ObservedValue::Bool(*b),
        Some(Value::String(s)) => match s.trim().parse::<f64>() {
            Ok(v) => ObservedValue::Number(v),
            Err(_) => ObservedValue::Text(s.clone()),
        },
        None | Some(Value::Null) if mm.optional => return Ok(None),
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
    }))
}
