//! Decode: one vendor format per file, each turning a payload into `Observation`s with vendor
//! names and units. Pure and synchronous; every failure is a `DecodeError` with a stable reason
//! code, never a panic.

mod mapping;
mod ngsi_ld;
mod senml;
mod thai_nguyen;

use std::fmt;

use jiff::{Timestamp, civil, tz};
use serde::{Deserialize, de};

use crate::model::{Decoded, ObservedValue, RejectReason, Rejection};
use crate::normalise::units::Vocabulary;

pub use mapping::{JsonMapping, JsonMappingDecoder, MetricMapping, TimestampFormat};
pub use ngsi_ld::NgsiLdDecoder;
pub use senml::SenMlDecoder;
pub use thai_nguyen::ThaiNguyenDecoder;

/// Payload format of a feed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum FeedFormat {
    /// Thái Nguyên provincial IOC vendor JSON (tagged values, naive local time).
    ThaiNguyenJson,
    /// SenML, RFC 8428 (Sông Công).
    Senml,
    /// FIWARE NGSI-LD Smart Data Models (Phổ Yên).
    NgsiLd,
    /// Config-driven JSON mapping (`[feeds.mapping]`).
    Json,
}

/// The decoder of one feed (a closed set: one variant per supported format).
#[derive(Debug, Clone)]
pub enum Decoder {
    ThaiNguyen(ThaiNguyenDecoder),
    SenMl(SenMlDecoder),
    NgsiLd(NgsiLdDecoder),
    Json(JsonMappingDecoder),
}

impl Decoder {
    /// The decoder of `format`; `mapping` is the `json` format's (validation requires one), and
    /// `utc_offset_hours` the offset of naive vendor timestamps.
    pub fn new(format: FeedFormat, mapping: Option<&JsonMapping>, utc_offset_hours: i8) -> Decoder {
        let offset = tz::Offset::constant(utc_offset_hours);
        match (format, mapping) {
            (FeedFormat::ThaiNguyenJson, _) => Decoder::ThaiNguyen(ThaiNguyenDecoder { offset }),
            (FeedFormat::Senml, _) => Decoder::SenMl(SenMlDecoder),
            (FeedFormat::NgsiLd, _) => Decoder::NgsiLd(NgsiLdDecoder { offset }),
            (FeedFormat::Json, Some(m)) => {
                Decoder::Json(JsonMappingDecoder::new(m.clone(), offset))
            }
            // Validation requires a mapping for json feeds; without one, nothing decodes.
            (FeedFormat::Json, None) => Decoder::Json(JsonMappingDecoder::unconfigured(offset)),
        }
    }

    /// Decode one message. `received_at` is used only where a format defines "now" (SenML
    /// relative times, mapped feeds without a timestamp).
    pub fn decode(
        &self,
        topic: &str,
        payload: &[u8],
        received_at: Timestamp,
    ) -> Result<Decoded, DecodeError> {
        match self {
            Decoder::ThaiNguyen(d) => d.decode(topic, payload),
            Decoder::SenMl(d) => d.decode(topic, payload, received_at),
            Decoder::NgsiLd(d) => d.decode(payload),
            Decoder::Json(d) => d.decode(topic, payload, received_at).map(Decoded::from),
        }
    }

    /// The unit symbols this format writes.
    pub fn vocabulary(&self) -> Vocabulary {
        match self {
            Decoder::ThaiNguyen(_) | Decoder::Json(_) => Vocabulary::Plain,
            Decoder::SenMl(_) => Vocabulary::SenMl,
            Decoder::NgsiLd(_) => Vocabulary::UnCefact,
        }
    }
}

/// Why a payload could not be decoded.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum DecodeError {
    #[error("empty payload")]
    Empty,
    #[error("payload is not valid UTF-8: {0}")]
    InvalidUtf8(String),
    #[error("malformed JSON: {0}")]
    MalformedJson(String),
    /// Valid JSON of the wrong shape: wrong types, missing required fields.
    #[error("{0}")]
    Schema(String),
    #[error("{0}")]
    MissingDeviceId(String),
    #[error("{0}")]
    MissingTimestamp(String),
    #[error("{0}")]
    InvalidTimestamp(String),
    #[error("{0}")]
    UnsupportedType(String),
    #[error("{0}")]
    InvalidValue(String),
    #[error("{0}")]
    InvalidLocation(String),
}

impl DecodeError {
    pub fn reason(&self) -> RejectReason {
        match self {
            DecodeError::Empty => RejectReason::EmptyPayload,
            DecodeError::InvalidUtf8(_) => RejectReason::InvalidUtf8,
            DecodeError::MalformedJson(_) => RejectReason::MalformedJson,
            DecodeError::Schema(_) => RejectReason::InvalidSchema,
            DecodeError::MissingDeviceId(_) => RejectReason::MissingDeviceId,
            DecodeError::MissingTimestamp(_) => RejectReason::MissingTimestamp,
            DecodeError::InvalidTimestamp(_) => RejectReason::InvalidTimestamp,
            DecodeError::UnsupportedType(_) => RejectReason::UnsupportedEntityType,
            DecodeError::InvalidValue(_) => RejectReason::InvalidValue,
            DecodeError::InvalidLocation(_) => RejectReason::InvalidLocation,
        }
    }
}

impl From<DecodeError> for Rejection {
    fn from(e: DecodeError) -> Rejection {
        Rejection::new(e.reason(), e.to_string())
    }
}

/// Payload bytes → UTF-8 text, with the checks every JSON format shares.
fn text(payload: &[u8]) -> Result<&str, DecodeError> {
    let s = std::str::from_utf8(payload).map_err(|e| {
        DecodeError::InvalidUtf8(format!("invalid byte at offset {}", e.valid_up_to()))
    })?;
    if s.trim().is_empty() {
        return Err(DecodeError::Empty);
    }
    Ok(s)
}

/// Parse JSON into `T`, classifying serde's error into our reasons.
fn parse_json<'a, T: Deserialize<'a>>(payload: &'a [u8]) -> Result<T, DecodeError> {
    let s = text(payload)?;
    serde_json::from_str(s).map_err(|e| {
        // A typed parse may stop at a wrong type before reaching broken syntax further on;
        // broken JSON is `malformed_json` whatever else is wrong with it.
        if e.classify() == serde_json::error::Category::Data
            && let Err(syntax) = serde_json::from_str::<de::IgnoredAny>(s)
        {
            return json_error(syntax);
        }
        json_error(e)
    })
}

fn json_error(e: serde_json::Error) -> DecodeError {
    let message = e.to_string();
    if message.contains("number out of range") {
        return DecodeError::InvalidValue(format!("number out of range: {message}"));
    }
    match e.classify() {
        serde_json::error::Category::Data => DecodeError::Schema(message),
        _ => DecodeError::MalformedJson(message),
    }
}

/// A JSON scalar as vendors send values: number, bool, text or null.
#[derive(Debug, Clone, PartialEq)]
enum Scalar {
    Number(f64),
    Bool(bool),
    Text(String),
    Null,
}

impl Scalar {
    fn into_value(self) -> Option<ObservedValue> {
        match self {
            Scalar::Number(v) => Some(ObservedValue::Number(v)),
            Scalar::Bool(b) => Some(ObservedValue::Bool(b)),
            Scalar::Text(t) => Some(ObservedValue::Text(t)),
            Scalar::Null => None,
        }
    }
}

impl<'de> Deserialize<'de> for Scalar {
    fn deserialize<D: de::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> de::Visitor<'de> for V {
            type Value = Scalar;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a number, boolean, string or null")
            }
            fn visit_f64<E>(self, v: f64) -> Result<Scalar, E> {
                Ok(Scalar::Number(v))
            }
            fn visit_i64<E>(self, v: i64) -> Result<Scalar, E> {
                Ok(Scalar::Number(v as f64))
            }
            fn visit_u64<E>(self, v: u64) -> Result<Scalar, E> {
                Ok(Scalar::Number(v as f64))
            }
            fn visit_bool<E>(self, v: bool) -> Result<Scalar, E> {
                Ok(Scalar::Bool(v))
            }
            fn visit_str<E>(self, v: &str) -> Result<Scalar, E> {
                Ok(Scalar::Text(v.to_owned()))
            }
            fn visit_unit<E>(self) -> Result<Scalar, E> {
                Ok(Scalar::Null)
            }
            fn visit_none<E>(self) -> Result<Scalar, E> {
                Ok(Scalar::Null)
            }
        }
        d.deserialize_any(V)
    }
}

/// A time as vendors write it: RFC 3339 with an offset, or naive local time in `offset`
/// (`YYYY-MM-DD HH:MM:SS` or with `T`).
fn parse_time(s: &str, offset: tz::Offset) -> Result<Timestamp, DecodeError> {
    let s = s.trim();
    if let Ok(t) = s.parse::<Timestamp>() {
        return Ok(t);
    }
    let naive = s.replacen(' ', "T", 1);
    naive
        .parse::<civil::DateTime>()
        .ok()
        .and_then(|dt| dt.to_zoned(tz::TimeZone::fixed(offset)).ok())
        .map(|z| z.timestamp())
        .ok_or_else(|| DecodeError::InvalidTimestamp(format!("{s:?} is not a time")))
}

/// A numeric epoch time whose unit the format does not fix: seconds, or milliseconds when it
/// is too large to be seconds (10¹¹ s is the year 5138; 10¹¹ ms is 1973).
fn from_epoch(value: f64) -> Option<Timestamp> {
    if value.abs() >= 1e11 {
        from_epoch_seconds(value / 1000.0)
    } else {
        from_epoch_seconds(value)
    }
}

/// Seconds since the epoch (fractional allowed) → instant.
fn from_epoch_seconds(secs: f64) -> Option<Timestamp> {
    if !secs.is_finite() {
        return None;
    }
    Timestamp::from_millisecond((secs * 1000.0).round() as i64).ok()
}

/// Level `i` of an MQTT topic.
fn topic_level(topic: &str, i: usize) -> Option<&str> {
    topic.split('/').nth(i).filter(|l| !l.is_empty())
}

fn last_topic_level(topic: &str) -> Option<&str> {
    topic.rsplit('/').next().filter(|l| !l.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_errors_are_classified() {
        let e = parse_json::<serde_json::Value>(b"{\"a\": ").unwrap_err();
        assert_eq!(e.reason().as_str(), "malformed_json");
        let e = parse_json::<serde_json::Value>(b"[1e999]").unwrap_err();
        assert_eq!(e.reason().as_str(), "invalid_value");
        assert_eq!(
            parse_json::<serde_json::Value>(b"  ").unwrap_err(),
            DecodeError::Empty
        );
        assert_eq!(
            parse_json::<serde_json::Value>(&[0xff, 0x00])
                .unwrap_err()
                .reason()
                .as_str(),
            "invalid_utf8"
        );
        let e = parse_json::<Vec<f64>>(b"{}").unwrap_err();
        assert_eq!(e.reason().as_str(), "invalid_schema");
    }

    #[test]
    fn naive_local_and_offset_times() {
        let plus7 = tz::Offset::constant(7);
        assert_eq!(
            parse_time("2026-11-22 08:05:00", plus7)
                .unwrap()
                .to_string(),
            "2026-11-22T01:05:00Z"
        );
        assert_eq!(
            parse_time("2026-11-22T08:05:00", plus7)
                .unwrap()
                .to_string(),
            "2026-11-22T01:05:00Z"
        );
        assert_eq!(
            parse_time("2026-11-22T08:05:00+05:30", plus7)
                .unwrap()
                .to_string(),
            "2026-11-22T02:35:00Z"
        );
        assert_eq!(
            parse_time("yesterday", plus7)
                .unwrap_err()
                .reason()
                .as_str(),
            "invalid_timestamp"
        );
    }
}
