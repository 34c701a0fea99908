//! The types that cross stage boundaries: `RawMessage` (source) → `Observation` (decode) →
//! `Reading` (normalise). Each stage only accepts the type the previous one produces.

use std::{fmt, str::FromStr, sync::Arc};

use bytes::Bytes;
use jiff::Timestamp;
use serde::{Deserialize, Serialize};

/// One of the three operations centres. Every feed belongs to exactly one city.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum City {
    ThaiNguyen,
    SongCong,
    PhoYen,
}

impl City {
    pub const ALL: [City; 3] = [City::ThaiNguyen, City::SongCong, City::PhoYen];

    pub fn as_str(self) -> &'static str {
        match self {
            City::ThaiNguyen => "thai-nguyen",
            City::SongCong => "song-cong",
            City::PhoYen => "pho-yen",
        }
    }

    /// Human name as shown on the wall screens.
    pub fn display_name(self) -> &'static str {
        match self {
            City::ThaiNguyen => "Thái Nguyên",
            City::SongCong => "Sông Công",
            City::PhoYen => "Phổ Yên",
        }
    }
}

impl fmt::Display for City {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for City {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        City::ALL
            .into_iter()
            .find(|c| c.as_str() == s)
            .ok_or_else(|| {
                format!("unknown city {s:?} (expected thai-nguyen, song-cong or pho-yen)")
            })
    }
}

/// What a device measures. The domain belongs to the device (an air station's temperature is
/// still `air_quality`), so the wall screens can group by it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Domain {
    AirQuality,
    Water,
    Weather,
    Traffic,
    Lighting,
    Energy,
}

impl Domain {
    pub const ALL: [Domain; 6] = [
        Domain::AirQuality,
        Domain::Water,
        Domain::Weather,
        Domain::Traffic,
        Domain::Lighting,
        Domain::Energy,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Domain::AirQuality => "air_quality",
            Domain::Water => "water",
            Domain::Weather => "weather",
            Domain::Traffic => "traffic",
            Domain::Lighting => "lighting",
            Domain::Energy => "energy",
        }
    }
}

impl fmt::Display for Domain {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Domain {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Domain::ALL
            .into_iter()
            .find(|d| d.as_str() == s)
            .ok_or_else(|| {
                let all: Vec<_> = Domain::ALL.iter().map(|d| d.as_str()).collect();
                format!("unknown domain {s:?} (expected one of {})", all.join(", "))
            })
    }
}

/// Instrument status, per the datalogger convention of Thông tư 10/2021/TT-BTNMT. Only
/// `Measuring` samples count towards VN_AQI; all are stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    #[default]
    Measuring,
    Calibrating,
    Fault,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Measuring => "measuring",
            Status::Calibrating => "calibrating",
            Status::Fault => "fault",
        }
    }
}

impl FromStr for Status {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "measuring" => Ok(Status::Measuring),
            "calibrating" => Ok(Status::Calibrating),
            "fault" => Ok(Status::Fault),
            other => Err(format!("unknown status {other:?}")),
        }
    }
}

/// A configured feed's name (`thai-nguyen`, `song-cong`, `pho-yen`, or an onboarded vendor).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct FeedId(Arc<str>);

impl FeedId {
    pub fn new(name: &str) -> Self {
        FeedId(Arc::from(name))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for FeedId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A WGS84 position. GeoJSON carries `[lon, lat]`; this type always names them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Location {
    pub lat: f64,
    pub lon: f64,
    /// Ward (phường / xã) name, when the device catalogue knows it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ward: Option<String>,
}

/// One MQTT message exactly as the broker delivered it.
#[derive(Debug, Clone)]
pub struct RawMessage {
    pub feed: FeedId,
    pub topic: String,
    pub payload: Bytes,
    pub received_at: Timestamp,
    /// MQTT DUP flag: the broker says this may be a redelivery.
    pub dup: bool,
}

/// A value as the vendor sent it, before unit conversion.
#[derive(Debug, Clone, PartialEq)]
pub enum ObservedValue {
    Number(f64),
    Bool(bool),
    Text(String),
}

/// One measured quantity as a decoder found it in a vendor payload: vendor names, vendor
/// units, timestamp already resolved to an instant (decoders know their format's time
/// convention, e.g. naive UTC+7 for the Thái Nguyên vendor).
#[derive(Debug, Clone, PartialEq)]
pub struct Observation {
    pub device_id: String,
    /// The vendor's hint of what the device is (topic segment, entity type, mapping config).
    pub domain_hint: Option<String>,
    /// Vendor metric name, e.g. `PM25`, `level`, `pm25`, `intensity`.
    pub name: String,
    pub value: ObservedValue,
    /// Vendor unit string, e.g. `ug/m3`, `GQ`, `Cel`; `None` when the payload has none.
    pub unit: Option<String>,
    /// `None` when the payload carries no time at all.
    pub observed_at: Option<Timestamp>,
    /// Vendor status string, e.g. `measuring`, `calibrating`, `fault`, `ok`.
    pub status: Option<String>,
    pub location: Option<Location>,
}

#[cfg(test)]
impl Reading {
    /// For tests: a measuring Thái Nguyên air-quality reading in µg/m³, without a position,
    /// observed and received at `at`.
    pub(crate) fn sample(device: &str, metric: &'static str, at: Timestamp, value: f64) -> Reading {
        Reading {
            city: City::ThaiNguyen,
            feed: FeedId::new("thai-nguyen"),
            device_id: device.into(),
            domain: Domain::AirQuality,
            metric,
            value,
            unit: "µg/m³",
            observed_at: at,
            received_at: at,
            location: None,
            status: Status::Measuring,
        }
    }
}

/// What a decoder read from one message. A format reads a message whole or not at all, except
/// where it holds independent parts (an entity of an NGSI-LD array, a SenML record): a part it
/// cannot read is rejected with its reason and the rest goes on.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Decoded {
    pub observations: Vec<Observation>,
    /// Parts of the message that could not be read, each with its reason.
    pub rejected: Vec<Rejection>,
    /// Fields the format's catalogue says are not measurements (metadata, identity,
    /// thresholds), by the catalogue's name for them; counted, never stored.
    pub ignored: Vec<&'static str>,
}

impl From<Vec<Observation>> for Decoded {
    fn from(observations: Vec<Observation>) -> Decoded {
        Decoded {
            observations,
            ..Decoded::default()
        }
    }
}

/// What normalising one message produced: the readings to store, and what of it was rejected
/// or ignored. Every observation ends in exactly one of `readings` and `rejected` (two
/// observations with the same value for one series and time make one reading).
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Normalised {
    pub readings: Vec<Reading>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub rejected: Vec<Rejection>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub ignored: Vec<&'static str>,
}

/// The canonical reading every consumer sees: canonical metric name and unit, UTC time.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Reading {
    pub city: City,
    pub feed: FeedId,
    pub device_id: String,
    pub domain: Domain,
    /// Canonical snake_case metric name from the metric catalogue.
    pub metric: &'static str,
    /// Value in the canonical unit.
    pub value: f64,
    pub unit: &'static str,
    pub observed_at: Timestamp,
    pub received_at: Timestamp,
    pub location: Option<Location>,
    pub status: Status,
}

/// Why a message (or a part of it) was quarantined instead of stored: a stable snake_case
/// code that the API filters on and metrics are labelled with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RejectReason {
    /// Larger than `ingest.max_payload_bytes`.
    PayloadTooLarge,
    /// Nothing (or only blanks) in the payload.
    EmptyPayload,
    InvalidUtf8,
    /// Not JSON.
    MalformedJson,
    /// JSON of the wrong shape, a SenML name outside the RFC 8428 grammar, a must-understand
    /// field we do not understand.
    InvalidSchema,
    MissingDeviceId,
    /// Not 1–128 characters of `A–Z a–z 0–9 . _ : ~ @ -`.
    InvalidDeviceId,
    MissingTimestamp,
    InvalidTimestamp,
    /// An NGSI-LD entity type we do not read.
    UnsupportedEntityType,
    /// Of the wrong type, not finite, or outside the metric's possible range (or the device's
    /// band).
    InvalidValue,
    UnknownMetric,
    /// A unit the format's vocabulary does not know, that cannot express the metric, or none
    /// where one is needed.
    UnknownUnit,
    /// Later than now plus `ingest.max_future_skew`.
    FutureTimestamp,
    /// Older than `store.retention`.
    ExpiredTimestamp,
    InvalidLocation,
    UnknownStatus,
    /// Another value for a device, metric and time: in one message, or the value a stored
    /// conflict did not keep (`store.on_conflict`).
    Conflict,
    /// InfluxDB refused the line.
    InfluxRejected,
}

impl RejectReason {
    pub const ALL: [RejectReason; 19] = [
        RejectReason::PayloadTooLarge,
        RejectReason::EmptyPayload,
        RejectReason::InvalidUtf8,
        RejectReason::MalformedJson,
        RejectReason::InvalidSchema,
        RejectReason::MissingDeviceId,
        RejectReason::InvalidDeviceId,
        RejectReason::MissingTimestamp,
        RejectReason::InvalidTimestamp,
        RejectReason::UnsupportedEntityType,
        RejectReason::InvalidValue,
        RejectReason::UnknownMetric,
        RejectReason::UnknownUnit,
        RejectReason::FutureTimestamp,
        RejectReason::ExpiredTimestamp,
        RejectReason::InvalidLocation,
        RejectReason::UnknownStatus,
        RejectReason::Conflict,
        RejectReason::InfluxRejected,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            RejectReason::PayloadTooLarge => "payload_too_large",
            RejectReason::EmptyPayload => "empty_payload",
            RejectReason::InvalidUtf8 => "invalid_utf8",
            RejectReason::MalformedJson => "malformed_json",
            RejectReason::InvalidSchema => "invalid_schema",
            RejectReason::MissingDeviceId => "missing_device_id",
            RejectReason::InvalidDeviceId => "invalid_device_id",
            RejectReason::MissingTimestamp => "missing_timestamp",
            RejectReason::InvalidTimestamp => "invalid_timestamp",
            RejectReason::UnsupportedEntityType => "unsupported_entity_type",
            RejectReason::InvalidValue => "invalid_value",
            RejectReason::UnknownMetric => "unknown_metric",
            RejectReason::UnknownUnit => "unknown_unit",
            RejectReason::FutureTimestamp => "future_timestamp",
            RejectReason::ExpiredTimestamp => "expired_timestamp",
            RejectReason::InvalidLocation => "invalid_location",
            RejectReason::UnknownStatus => "unknown_status",
            RejectReason::Conflict => "conflict",
            RejectReason::InfluxRejected => "influx_rejected",
        }
    }
}

impl fmt::Display for RejectReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for RejectReason {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        RejectReason::ALL
            .into_iter()
            .find(|r| r.as_str() == s)
            .ok_or_else(|| {
                let all: Vec<_> = RejectReason::ALL.iter().map(|r| r.as_str()).collect();
                format!("unknown reason {s:?} (expected one of {})", all.join(", "))
            })
    }
}

/// Why a message, or a part of it, was quarantined; `detail` says what exactly was wrong.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Rejection {
    pub reason: RejectReason,
    pub detail: String,
}

impl Rejection {
    pub fn new(reason: RejectReason, detail: impl Into<String>) -> Self {
        Rejection {
            reason,
            detail: detail.into(),
        }
    }

    /// Several rejections as one line: `reason: detail; reason: detail`.
    pub fn joined(rejected: &[Rejection]) -> String {
        rejected
            .iter()
            .map(Rejection::to_string)
            .collect::<Vec<_>>()
            .join("; ")
    }
}

impl fmt::Display for Rejection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.reason, self.detail)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reject_reasons_are_one_list_for_code_json_and_the_api() {
        for r in RejectReason::ALL {
            assert_eq!(serde_json::to_value(r).unwrap(), r.as_str());
            assert_eq!(r.as_str().parse::<RejectReason>(), Ok(r));
        }
        let mut names: Vec<_> = RejectReason::ALL.iter().map(|r| r.as_str()).collect();
        names.sort();
        names.dedup();
        assert_eq!(names.len(), RejectReason::ALL.len());
        assert!(
            "banana"
                .parse::<RejectReason>()
                .unwrap_err()
                .contains("conflict")
        );
    }
}
