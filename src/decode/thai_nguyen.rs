//! Thái Nguyên provincial IOC vendor JSON, on `tn/ioc/{domain}/{station}`:
//! `{"station":"TN-AQ-HUNGVUONG","ts":"2026-11-22 08:05:00","status":"measuring",
//!   "d":[{"tag":"PM25","value":35.2,"unit":"ug/m3"}, ...]}`.
//! `ts` is naive local time (UTC+7), or a numeric epoch time (seconds, or milliseconds); `status`
//! (datalogger convention) applies to every value.

use std::borrow::Cow;

use jiff::{Timestamp, tz};
use serde::Deserialize;

use super::{
    DecodeError, Scalar, from_epoch, last_topic_level, parse_json, parse_time, topic_level,
};
use crate::model::{Decoded, Observation, RejectReason, Rejection};

#[derive(Debug, Clone)]
pub struct ThaiNguyenDecoder {
    /// Offset of the vendor's naive timestamps.
    pub(super) offset: tz::Offset,
}

#[derive(Deserialize)]
struct Message<'a> {
    #[serde(borrow, default)]
    station: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    ts: Option<Ts<'a>>,
    #[serde(borrow, default)]
    status: Option<Cow<'a, str>>,
    #[serde(borrow)]
    d: Vec<Tagged<'a>>,
}

#[derive(Deserialize)]
struct Tagged<'a> {
    #[serde(borrow)]
    tag: Cow<'a, str>,
    value: Scalar,
    #[serde(borrow, default)]
    unit: Option<Cow<'a, str>>,
    /// Some dataloggers stamp values individually.
    #[serde(borrow, default)]
    ts: Option<Ts<'a>>,
}

/// What a message says of all its values: the station, the domain its topic names, and the
/// station's status and time.
struct Station<'a> {
    id: &'a str,
    domain_hint: Option<&'a str>,
    status: Option<&'a str>,
    time: Option<Timestamp>,
}

impl ThaiNguyenDecoder {
    pub fn decode(&self, topic: &str, payload: &[u8]) -> Result<Decoded, DecodeError> {
        let msg: Message<'_> = parse_json(payload)?;
        let id = station_id(msg.station.as_deref(), topic)?;
        let station = Station {
            id,
            // `tn/ioc/{domain}/{station}`: the domain is the third level.
            domain_hint: topic_level(topic, 2).filter(|_| topic.split('/').count() >= 4),
            status: msg.status.as_deref(),
            time: msg.ts.as_ref().map(|t| self.time(t)).transpose()?,
        };
        if msg.d.is_empty() {
            return Err(DecodeError::Schema(format!(
                "station {id}: \"d\" holds no values"
            )));
        }
        let mut out = Decoded {
            observations: Vec::with_capacity(msg.d.len()),
            ..Decoded::default()
        };
        for v in msg.d {
            self.tagged(&station, v, &mut out);
        }
        Ok(out)
    }

    /// Read one tagged value into `out`. A value's own problems reject that value; the
    /// station's others are stored.
    fn tagged(&self, station: &Station<'_>, v: Tagged<'_>, out: &mut Decoded) {
        let id = station.id;
        let observed_at = match v.ts.as_ref().map(|t| self.time(t)).transpose() {
            Ok(t) => t.or(station.time),
            Err(e) => {
                out.rejected.push(Rejection::new(
                    e.reason(),
                    format!("station {id}: tag {}: {e}", v.tag),
                ));
                return;
            }
        };
        let Some(value) = v.value.into_value() else {
            out.rejected.push(Rejection::new(
                RejectReason::InvalidValue,
                format!("station {id}: tag {} has a null value", v.tag),
            ));
            return;
        };
        out.observations.push(Observation {
            device_id: id.to_owned(),
            domain_hint: station.domain_hint.map(str::to_owned),
            name: v.tag.into_owned(),
            value,
            unit: v.unit.map(Cow::into_owned),
            observed_at,
            status: station.status.map(str::to_owned),
            location: None,
        });
    }

    /// A `ts`: naive local time, RFC 3339, or a numeric epoch time.
    fn time(&self, ts: &Ts<'_>) -> Result<Timestamp, DecodeError> {
        match ts {
            Ts::Text(t) => parse_time(t, self.offset),
            Ts::Epoch(n) => from_epoch(*n).ok_or_else(|| {
                DecodeError::InvalidTimestamp(format!("ts {n} is not an epoch time"))
            }),
            Ts::Other(what) => Err(DecodeError::InvalidTimestamp(format!(
                "ts is {what}, not a time"
            ))),
        }
    }
}

/// The message's station: its `station` field, else the topic's last level.
fn station_id<'a>(station: Option<&'a str>, topic: &'a str) -> Result<&'a str, DecodeError> {
    station
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .or_else(|| last_topic_level(topic))
        .ok_or_else(|| {
            DecodeError::MissingDeviceId(
                "no \"station\" in the payload and none in the topic".into(),
            )
        })
}

/// A `ts` as written: text (borrowed from the payload when it can be), an epoch number, or
/// something else that is then rejected as `invalid_timestamp` rather than `invalid_schema`.
enum Ts<'a> {
    Text(Cow<'a, str>),
    Epoch(f64),
    Other(&'static str),
}

impl<'de: 'a, 'a> Deserialize<'de> for Ts<'a> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(TsVisitor)
    }
}

/// Reads any JSON value as a `Ts`.
struct TsVisitor;

impl<'de> serde::de::Visitor<'de> for TsVisitor {
    type Value = Ts<'de>;
    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a time")
    }
    fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Ts<'de>, E> {
        Ok(Ts::Text(Cow::Borrowed(v)))
    }
    fn visit_str<E>(self, v: &str) -> Result<Ts<'de>, E> {
        Ok(Ts::Text(Cow::Owned(v.to_owned())))
    }
    fn visit_f64<E>(self, v: f64) -> Result<Ts<'de>, E> {
        Ok(Ts::Epoch(v))
    }
    fn visit_i64<E>(self, v: i64) -> Result<Ts<'de>, E> {
        Ok(Ts::Epoch(v as f64))
    }
    fn visit_u64<E>(self, v: u64) -> Result<Ts<'de>, E> {
        Ok(Ts::Epoch(v as f64))
    }
    fn visit_bool<E>(self, _: bool) -> Result<Ts<'de>, E> {
        Ok(Ts::Other("a boolean"))
    }
    fn visit_unit<E>(self) -> Result<Ts<'de>, E> {
        Ok(Ts::Other("null"))
    }
    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut a: A) -> Result<Ts<'de>, A::Error> {
        while a.next_element::<serde::de::IgnoredAny>()?.is_some() {}
        Ok(Ts::Other("an array"))
    }
    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut a: A) -> Result<Ts<'de>, A::Error> {
        while a
            .next_entry::<serde::de::IgnoredAny, serde::de::IgnoredAny>()?
            .is_some()
        {}
        Ok(Ts::Other("an object"))
    }
}
