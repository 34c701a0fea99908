//! Thái Nguyên provincial IOC vendor JSON, on `tn/ioc/{domain}/{station}`:
//! `{"station":"TN-AQ-HUNGVUONG","ts":"2026-11-22 08:05:00","status":"measuring",
//!   "d":[{"tag":"PM25","value":35.2,"unit":"ug/m3"}, ...]}`.
//! `ts` is naive local time (UTC+7), or a numeric epoch time (seconds, or milliseconds); `status`
//! (datalogger convention) applies to every value.

use std::borrow::Cow;

use jiff::tz;
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

impl ThaiNguyenDecoder {
    pub fn decode(&self, topic: &str, payload: &[u8]) -> Result<Decoded, DecodeError> {
        let msg: Message<'_> = parse_json(payload)?;
        let station = msg
            .station
            .as_deref()
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .or_else(|| last_topic_level(topic))
            .ok_or_else(|| {
                DecodeError::MissingDeviceId(
                    "no \"station\" in the payload and none in the topic".into(),
                )
            })?;
        let message_time = msg.ts.as_ref().map(|t| self.time(t)).transpose()?;
        // `tn/ioc/{domain}/{station}`: the domain is the third level.
        let domain_hint = topic_level(topic, 2).filter(|_| topic.split('/').count() >= 4);
        if msg.d.is_empty() {
            return Err(DecodeError::Schema(format!(
                "station {station}: \"d\" holds no values"
            )));
        }
        let mut out = Decoded {
            observations: Vec::with_capacity(msg.d.len()),
            ..Decoded::default()
        };
        for v in msg.d {
            // A value's own problems reject that value; the station's others are stored.
            let observed_at = match v.ts.as_ref().map(|t| self.time(t)).transpose() {
                Ok(t) => t.or(message_time),
                Err(e) => {
                    out.rejected.push(Rejection::new(
                        e.reason(),
                        format!("station {station}: tag {}: {e}", v.tag),
                    ));
                    continue;
                }
            };
            let Some(value) = v.value.into_value() else {
                out.rejected.push(Rejection::new(
                    RejectReason::InvalidValue,
                    format!("station {station}: tag {} has a null value", v.tag),
                ));
                continue;
            };
            out.observations.push(Observation {
                device_id: station.to_owned(),
                domain_hint: domain_hint.map(str::to_owned),
                name: v.tag.into_owned(),
                value,
                unit: v.unit.map(Cow::into_owned),
                observed_at,
                status: msg.status.as_deref().map(str::to_owned),
                location: None,
            });
        }
        Ok(out)
    }

    /// A `ts`: naive local time, RFC 3339, or a numeric epoch time.
    fn time(&self, ts: &Ts<'_>) -> Result<jiff::Timestamp, DecodeError> {
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

/// A `ts` as written: text (borrowed from the payload when it can be), an epoch number, or
/// something else that is then rejected as `invalid_timestamp` rather than `invalid_schema`.
enum Ts<'a> {
    Text(Cow<'a, str>),
    Epoch(f64),
    Other(&'static str),
}

impl<'de: 'a, 'a> Deserialize<'de> for Ts<'a> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
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
            fn visit_seq<A: serde::de::SeqAccess<'de>>(
                self,
                mut a: A,
            ) -> Result<Ts<'de>, A::Error> {
                while a.next_element::<serde::de::IgnoredAny>()?.is_some() {}
                Ok(Ts::Other("an array"))
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                mut a: A,
            ) -> Result<Ts<'de>, A::Error> {
                while a
                    .next_entry::<serde::de::IgnoredAny, serde::de::IgnoredAny>()?
                    .is_some()
                {}
                Ok(Ts::Other("an object"))
            }
        }
        d.deserialize_any(V)
    }
}
