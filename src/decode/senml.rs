//! SenML, RFC 8428 (Sông Công IOC), on `sc/senml/{device}`: a JSON array of records with base
//! name/time/unit/value/sum carried forward, names `bn + n`, times `bt + t` in seconds where
//! values below 2^28 are relative to now, and values `v`, `vb`, `vs`, `vd` or sum `s`.

use std::borrow::Cow;

use jiff::Timestamp;
use serde::Deserialize;

use super::{DecodeError, from_epoch_seconds, last_topic_level, parse_json};
use crate::model::{Location, Observation, ObservedValue};

/// Times below this are relative to "now" (RFC 8428 §4.5.3).
const RELATIVE_LIMIT: f64 = 268_435_456.0;

/// Record names that describe the device rather than measure something.
const METADATA: &[&str] = &[
    "label",
    "name",
    "description",
    "model",
    "serial",
    "location",
    "address",
    "manufacturer",
    "firmware",
];

#[derive(Debug, Clone)]
pub struct SenMlDecoder;

#[derive(Deserialize)]
struct Record<'a> {
    #[serde(borrow, default)]
    bn: Option<Cow<'a, str>>,
    #[serde(default)]
    bt: Option<f64>,
    #[serde(borrow, default)]
    bu: Option<Cow<'a, str>>,
    #[serde(default)]
    bv: Option<f64>,
    #[serde(default)]
    bs: Option<f64>,
    #[serde(default)]
    bver: Option<i64>,
    #[serde(borrow, default)]
    n: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    u: Option<Cow<'a, str>>,
    #[serde(default)]
    v: Option<f64>,
    #[serde(borrow, default)]
    vs: Option<Cow<'a, str>>,
    #[serde(default)]
    vb: Option<bool>,
    #[serde(borrow, default)]
    vd: Option<Cow<'a, str>>,
    #[serde(default)]
    s: Option<f64>,
    #[serde(default)]
    t: Option<f64>,
}

/// The base fields in force while walking the pack.
#[derive(Default)]
struct Base<'a> {
    name: Cow<'a, str>,
    time: f64,
    unit: Option<Cow<'a, str>>,
    value: f64,
    sum: f64,
}

impl SenMlDecoder {
    pub fn decode(
        &self,
        topic: &str,
        payload: &[u8],
        received_at: Timestamp,
    ) -> Result<Vec<Observation>, DecodeError> {
        let records: Vec<Record<'_>> = parse_json(payload).map_err(|e| match e {
            DecodeError::Schema(m) => {
                DecodeError::Schema(format!("a SenML pack is a JSON array of records: {m}"))
            }
            other => other,
        })?;
        if records.is_empty() {
            return Err(DecodeError::Schema("empty SenML pack".into()));
        }
        let mut base = Base::default();
        let mut status: Option<String> = None;
        let (mut lat, mut lon) = (None, None);
        let mut out = Vec::with_capacity(records.len());
        for (i, r) in records.into_iter().enumerate() {
            if let Some(v) = r.bver
                && v > 10
            {
                return Err(DecodeError::Schema(format!(
                    "record {i}: unsupported SenML version {v}"
                )));
            }
            if let Some(bn) = r.bn {
                base.name = bn;
            }
            if let Some(bt) = r.bt {
                base.time = bt;
            }
            if let Some(bu) = r.bu {
                base.unit = Some(bu);
            }
            if let Some(bv) = r.bv {
                base.value = bv;
            }
            if let Some(bs) = r.bs {
                base.sum = bs;
            }
            let n = r.n.as_deref().unwrap_or("");
            // Only built for error messages: this is the hot path.
            let full_name = || format!("{}{n}", base.name);
            if base.name.is_empty() && n.is_empty() {
                return Err(DecodeError::Schema(format!(
                    "record {i} has no name (bn + n)"
                )));
            }
            let (device, metric) = split_name(&base.name, n, topic).ok_or_else(|| {
                DecodeError::MissingDeviceId(format!(
                    "record {i} ({:?}): no device in the name or topic",
                    full_name()
                ))
            })?;
            let time = base.time + r.t.unwrap_or(0.0);
            let observed_at = if time.abs() < RELATIVE_LIMIT {
                from_epoch_seconds(received_at.as_millisecond() as f64 / 1000.0 + time)
            } else {
                from_epoch_seconds(time)
            }
            .ok_or_else(|| {
                DecodeError::InvalidTimestamp(format!("record {i}: time {time} is out of range"))
            })?;

            let value = match (r.v, r.vb, r.vs, r.vd, r.s) {
                (Some(v), None, None, None, _) => ObservedValue::Number(v + base.value),
                (None, Some(b), None, None, None) => ObservedValue::Bool(b),
                (None, None, Some(s), None, None) => {
                    if metric.eq_ignore_ascii_case("status") {
                        status = Some(s.into_owned());
                        continue;
                    }
                    if METADATA.iter().any(|m| metric.eq_ignore_ascii_case(m)) {
                        continue;
                    }
                    ObservedValue::Text(s.into_owned())
                }
                (None, None, None, Some(_), None) => continue, // opaque data, not a reading
                (None, None, None, None, Some(s)) => ObservedValue::Number(s + base.sum),
                (None, None, None, None, None) => {
                    return Err(DecodeError::Schema(format!(
                        "record {i} ({}) has no value",
                        full_name()
                    )));
                }
                _ => {
                    return Err(DecodeError::Schema(format!(
                        "record {i} ({}) has more than one value",
                        full_name()
                    )));
                }
            };
            if let ObservedValue::Number(v) = value {
                match metric {
                    "lat" => {
                        lat = Some(v);
                        continue;
                    }
                    "lon" => {
                        lon = Some(v);
                        continue;
                    }
                    _ => {}
                }
            }
            out.push(Observation {
                device_id: device.to_owned(),
                domain_hint: None,
                name: metric.to_owned(),
                value,
                unit: r.u.or_else(|| base.unit.clone()).map(Cow::into_owned),
                observed_at: Some(observed_at),
                status: None,
                location: None,
            });
        }
        let location = lat.zip(lon).map(|(lat, lon)| Location {
            lat,
            lon,
            ward: None,
        });
        for o in &mut out {
            o.status.clone_from(&status);
            o.location.clone_from(&location);
        }
        if out.is_empty() {
            return Err(DecodeError::Schema(
                "the SenML pack holds no measurements".into(),
            ));
        }
        Ok(out)
    }
}

/// Device and metric of a record: the device is the last `:`-separated segment of the base
/// name (`urn:dev:sc:wl-cau-01:` → `wl-cau-01`) and the metric the record's own name; without
/// a base name the topic's last level is the device.
fn split_name<'n>(base: &'n str, n: &'n str, topic: &'n str) -> Option<(&'n str, &'n str)> {
    let base = base.trim_end_matches([':', '/', '.', '-', '_']);
    if base.is_empty() {
        return last_topic_level(topic).map(|d| (d, n));
    }
    let device = base.rsplit([':', '/']).next().filter(|d| !d.is_empty())?;
    Some((device, n))
}
