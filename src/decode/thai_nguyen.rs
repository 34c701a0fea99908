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
use crate::model::{Decoded, Observation, Rejection};

#[derive(Debug, Clone)]
pub struct ThaiNguyenDecoder {
    /// Offset of the vendor's naive timestamps.
    pub(super) offset: tz::Offset,
}

#[derive(Deserialize)]
struct Message<'a> {
    #[serde(borrow, default)]
    station: Option<Cow<'a, str>>,
    #[serde(default)]
    ts: Option<Scalar>,
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
    #[serde(default)]
    ts: Option<Scalar>,
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
                    "invalid_value",
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
    fn time(&self, ts: &Scalar) -> Result<jiff::Timestamp, DecodeError> {
        match ts {
            Scalar::Text(t) => parse_time(t, self.offset),
            Scalar::Number(n) => from_epoch(*n).ok_or_else(|| {
                DecodeError::InvalidTimestamp(format!("ts {n} is not an epoch time"))
            }),
            other => Err(DecodeError::InvalidTimestamp(format!(
                "ts {other:?} is not a time"
            ))),
        }
    }
}
