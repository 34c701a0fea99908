//! Thái Nguyên provincial IOC vendor JSON, on `tn/ioc/{domain}/{station}`:
//! `{"station":"TN-AQ-HUNGVUONG","ts":"2026-11-22 08:05:00","status":"measuring",
//!   "d":[{"tag":"PM25","value":35.2,"unit":"ug/m3"}, ...]}`.
//! `ts` is naive local time (UTC+7); `status` (datalogger convention) applies to every value.

use std::borrow::Cow;

use jiff::tz;
use serde::Deserialize;

use super::{DecodeError, Scalar, last_topic_level, parse_json, parse_time, topic_level};
use crate::model::Observation;

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
    ts: Option<Cow<'a, str>>,
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
    ts: Option<Cow<'a, str>>,
}

impl ThaiNguyenDecoder {
    pub fn decode(&self, topic: &str, payload: &[u8]) -> Result<Vec<Observation>, DecodeError> {
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
        let message_time = msg
            .ts
            .as_deref()
            .map(|t| parse_time(t, self.offset))
            .transpose()?;
        // `tn/ioc/{domain}/{station}`: the domain is the third level.
        let domain_hint = topic_level(topic, 2).filter(|_| topic.split('/').count() >= 4);
        if msg.d.is_empty() {
            return Err(DecodeError::Schema(format!(
                "station {station}: \"d\" holds no values"
            )));
        }
        let mut out = Vec::with_capacity(msg.d.len());
        for v in msg.d {
            let observed_at = match v.ts.as_deref() {
                Some(t) => Some(parse_time(t, self.offset)?),
                None => message_time,
            };
            if observed_at.is_none() {
                return Err(DecodeError::MissingTimestamp(format!(
                    "station {station}: no \"ts\" for tag {}",
                    v.tag
                )));
            }
            let value = v.value.into_value().ok_or_else(|| {
                DecodeError::InvalidValue(format!(
                    "station {station}: tag {} has a null value",
                    v.tag
                ))
            })?;
            out.push(Observation {
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
}
