//! SenML, RFC 8428 (Sông Công IOC), on `sc/senml/{device}`: a JSON array of records with base
//! name/time/unit/value/sum carried forward, names `bn + n`, times `bt + t` in seconds where
//! values below 2^28 are relative to now, and values `v`, `vb`, `vs`, `vd` or sum `s`.

use std::borrow::Cow;

use jiff::Timestamp;
use serde::Deserialize;

use super::{DecodeError, from_epoch_seconds, parse_json};
use crate::model::{Decoded, Location, Observation, ObservedValue, RejectReason, Rejection};

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
struct Fields<'a> {
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

impl<'a> Base<'a> {
    /// Carry forward the base fields record `i` (`r`) sets; a base version above 10 is one we
    /// cannot read.
    fn carry(&mut self, i: usize, r: &Fields<'a>) -> Result<(), DecodeError> {
        if let Some(v) = r.bver
            && v > 10
        {
            return Err(DecodeError::Schema(format!(
                "record {i}: unsupported SenML version {v}"
            )));
        }
        if let Some(bn) = r.bn.clone() {
            self.name = bn;
        }
        if let Some(bt) = r.bt {
            self.time = bt;
        }
        if let Some(bu) = r.bu.clone() {
            self.unit = Some(bu);
        }
        if let Some(bv) = r.bv {
            self.value = bv;
        }
        if let Some(bs) = r.bs {
            self.sum = bs;
        }
        Ok(())
    }
}

/// What a pack says of all its readings: the status and position its records give.
#[derive(Default)]
struct PackWide {
    status: Option<String>,
    lat: Option<f64>,
    lon: Option<f64>,
}

impl PackWide {
    /// Take in what a record that is no measurement says (a measurement is already pushed);
    /// metadata and opaque data go to `ignored`.
    fn note(&mut self, item: Item, ignored: &mut Vec<&'static str>) {
        match item {
            Item::Observation => {}
            Item::Status(s) => self.status = Some(s),
            Item::Latitude(v) => self.lat = Some(v),
            Item::Longitude(v) => self.lon = Some(v),
            Item::Ignored(field) => ignored.push(field),
        }
    }

    /// Give every observation the pack's status and, when both coordinates came, position.
    fn apply(self, observations: &mut [Observation]) {
        let location = self.lat.zip(self.lon).map(|(lat, lon)| Location {
            lat,
            lon,
            ward: None,
        });
        for o in observations {
            o.status.clone_from(&self.status);
            o.location.clone_from(&location);
        }
    }
}

impl SenMlDecoder {
    pub fn decode(
        &self,
        topic: &str,
        payload: &[u8],
        received_at: Timestamp,
    ) -> Result<Decoded, DecodeError> {
        let records = pack(payload)?;
        let mut base = Base::default();
        let mut pack_wide = PackWide::default();
        let mut out = Decoded {
            observations: Vec::with_capacity(records.len()),
            ..Decoded::default()
        };
        for (i, r) in records.into_iter().enumerate() {
            base.carry(i, &r)?;
            let unit = r.u.clone().or_else(|| base.unit.clone());
            let read = Record {
                i,
                base: &base,
                n: r.n.as_deref().unwrap_or(""),
                unit: unit.as_deref(),
                topic,
                received_at,
            };
            match read.item(&r, &mut out.observations) {
                Ok(item) => pack_wide.note(item, &mut out.ignored),
                Err(e) => out.rejected.push(e),
            }
        }
        pack_wide.apply(&mut out.observations);
        if out.observations.is_empty() && out.rejected.is_empty() {
            return Err(DecodeError::Schema(
                "the SenML pack holds no measurements".into(),
            ));
        }
        Ok(out)
    }
}

/// The records of a SenML pack: a non-empty JSON array with no must-understand field.
fn pack(payload: &[u8]) -> Result<Vec<Fields<'_>>, DecodeError> {
    let records: Vec<Fields<'_>> = parse_json(payload).map_err(|e| match e {
        DecodeError::Schema(m) => {
            DecodeError::Schema(format!("a SenML pack is a JSON array of records: {m}"))
        }
        other => other,
    })?;
    if records.is_empty() {
        return Err(DecodeError::Schema("empty SenML pack".into()));
    }
    must_understand(payload)?;
    Ok(records)
}

/// What one record of a pack is.
enum Item {
    /// A measurement, pushed to the observations.
    Observation,
    /// A `status` text record: the status of every reading of the pack.
    Status(String),
    Latitude(f64),
    Longitude(f64),
    /// Metadata or opaque data, by its catalogue name.
    Ignored(&'static str),
}

/// What a record's value fields hold: a value to observe, or a record that is no measurement.
enum Held {
    Value(ObservedValue),
    Other(Item),
}

/// Where a record stands: its index, the base fields in force, its name and unit (`u`, else
/// `bu`), and the message's topic and receipt time.
struct Record<'r> {
    i: usize,
    base: &'r Base<'r>,
    n: &'r str,
    unit: Option<&'r str>,
    topic: &'r str,
    received_at: Timestamp,
}

impl Record<'_> {
    /// Read the record `r`; a measurement is pushed to `observations` (built in place: an
    /// observation is large, and moving it through the result showed in the profile).
    fn item(&self, r: &Fields<'_>, observations: &mut Vec<Observation>) -> Result<Item, Rejection> {
        self.check_name()?;
        let (device, metric) =
            split_name(&self.base.name, self.n, self.topic).ok_or_else(|| {
                self.reject(
                    RejectReason::MissingDeviceId,
                    "no device in the name or the topic".into(),
                )
            })?;
        let value = match self.value(r, &metric)? {
            Held::Value(value) => value,
            Held::Other(item) => return Ok(item),
        };
        let metric = self.metric_from_unit(&device, metric)?;
        let observed_at = self.observed_at(r)?;
        observations.push(Observation {
            device_id: device.into_owned(),
            domain_hint: None,
            name: metric.into_owned(),
            value,
            unit: self.unit.map(str::to_owned),
            observed_at: Some(observed_at),
            status: None,
            location: None,
        });
        Ok(Item::Observation)
    }

    /// A rejection of this record, naming it by index and resolved name.
    fn reject(&self, reason: RejectReason, why: String) -> Rejection {
        let (i, base, n) = (self.i, &self.base.name, self.n);
        Rejection::new(
            reason,
            format!("record {i} ({:?}): {why}", format!("{base}{n}")),
        )
    }

    /// Reject a record without a name, or whose name is not a SenML name.
    fn check_name(&self) -> Result<(), Rejection> {
        let (i, base, n) = (self.i, &self.base.name, self.n);
        if base.is_empty() && n.is_empty() {
            return Err(Rejection::new(
                RejectReason::InvalidSchema,
                format!("record {i} has no name (bn + n)"),
            ));
        }
        if !valid_name(base, n) {
            return Err(self.reject(
                RejectReason::InvalidSchema,
                "the name is not a SenML name (RFC 8428 §4.5.1: it starts with A–Z a–z 0–9 and \
             holds only those and - : . / _)"
                    .into(),
            ));
        }
        Ok(())
    }

    /// The record's one value (`v` and `s` add the base value and sum), or what else the
    /// record is: the pack's status or position, metadata, or opaque data.
    fn value(&self, r: &Fields<'_>, metric: &str) -> Result<Held, Rejection> {
        let value = match (r.v, r.vb, &r.vs, &r.vd, r.s) {
            (Some(v), None, None, None, _) => ObservedValue::Number(v + self.base.value),
            (None, Some(b), None, None, None) => ObservedValue::Bool(b),
            (None, None, Some(s), None, None) => return Ok(text(metric, s)),
            (None, None, None, Some(_), None) => return Ok(Held::Other(Item::Ignored("vd"))),
            (None, None, None, None, Some(s)) => ObservedValue::Number(s + self.base.sum),
            (None, None, None, None, None) => {
                return Err(self.reject(RejectReason::InvalidSchema, "it has no value".into()));
            }
            _ => {
                return Err(self.reject(
                    RejectReason::InvalidSchema,
                    "it has more than one value".into(),
                ));
            }
        };
        if let ObservedValue::Number(v) = value {
            match (self.unit, metric) {
                (Some("lat"), _) | (None, "lat" | "latitude") => {
                    return Ok(Held::Other(Item::Latitude(v)));
                }
                (Some("lon"), _) | (None, "lon" | "longitude") => {
                    return Ok(Held::Other(Item::Longitude(v)));
                }
                _ => {}
            }
        }
        Ok(Held::Value(value))
    }

    /// The measurement a record names; a name that holds only the device
    /// (`urn:dev:ow:10e2073a01080063`, RFC 8428 §5.1.4) measures what its unit says, where the
    /// unit says it unambiguously.
    fn metric_from_unit<'m>(
        &self,
        device: &str,
        metric: Cow<'m, str>,
    ) -> Result<Cow<'m, str>, Rejection> {
        match (metric.as_ref(), self.unit) {
            ("", Some("%RH")) => Ok(Cow::Borrowed("relative_humidity")),
            ("", _) => Err(self.reject(
                RejectReason::UnknownMetric,
                format!("device {device}: the name says no measurement, and the unit cannot"),
            )),
            _ => Ok(metric),
        }
    }

    /// The record's time, `bt + t`: seconds since the epoch, or relative to receipt when small.
    fn observed_at(&self, r: &Fields<'_>) -> Result<Timestamp, Rejection> {
        let time = self.base.time + r.t.unwrap_or(0.0);
        if time.abs() < RELATIVE_LIMIT {
            from_epoch_seconds(self.received_at.as_millisecond() as f64 / 1000.0 + time)
        } else {
            from_epoch_seconds(time)
        }
        .ok_or_else(|| {
            self.reject(
                RejectReason::InvalidTimestamp,
                format!("time {time} is out of range"),
            )
        })
    }
}

/// A text value: the pack's status, metadata we ignore, or a text reading.
fn text(metric: &str, s: &str) -> Held {
    if metric.eq_ignore_ascii_case("status") {
        return Held::Other(Item::Status(s.to_string()));
    }
    if let Some(field) = METADATA.iter().find(|m| metric.eq_ignore_ascii_case(m)) {
        return Held::Other(Item::Ignored(field));
    }
    Held::Value(ObservedValue::Text(s.to_string()))
}

/// RFC 8428 §4.4: a label ending in `_` must be understood, or the pack must not be used. We
/// understand none; labels are checked only when the text could hold one.
fn must_understand(payload: &[u8]) -> Result<(), DecodeError> {
    if memchr::memmem::find(payload, b"_\"").is_none() {
        return Ok(());
    }
    let records: Vec<serde_json::Map<String, serde_json::Value>> =
        serde_json::from_slice(payload).map_err(super::json_error)?;
    for (i, r) in records.iter().enumerate() {
        if let Some(label) = r.keys().find(|k| k.ends_with('_')) {
            return Err(DecodeError::Schema(format!(
                "record {i}: the must-understand field {label:?} is not supported (RFC 8428 §4.4)"
            )));
        }
    }
    Ok(())
}

/// RFC 8428 §4.5.1: the resolved name `bn + n` starts with A–Z a–z 0–9 and holds only those
/// and `- : . / _`.
fn valid_name(base: &str, n: &str) -> bool {
    let allowed =
        |b: u8| b.is_ascii_alphanumeric() || matches!(b, b'-' | b':' | b'.' | b'/' | b'_');
    let first = base.bytes().chain(n.bytes()).next();
    first.is_some_and(|b| b.is_ascii_alphanumeric()) && base.bytes().chain(n.bytes()).all(allowed)
}

/// Device and measurement of a record's resolved name `bn + n`, whichever side holds which
/// part: the measurement is what follows the name's last `:` or `/`, the device the segment
/// before it (`urn:dev:sc:wl-cau-01:` + `level`, or `urn:dev:sc:wl-cau-01:level` in either
/// field alone). A `urn:dev:<kind>:<id>` name of four segments is the device alone, and a
/// name ending in a separator names no measurement (the measurement is then empty). A name
/// without separators is the measurement, and the topic's last level the device.
fn split_name<'n>(
    base: &'n str,
    n: &'n str,
    topic: &'n str,
) -> Option<(Cow<'n, str>, Cow<'n, str>)> {
    let is_sep = |c: char| c == ':' || c == '/';
    // The usual pack: the base ends with a separator and `n` is a plain name.
    if base.ends_with(is_sep) && !n.is_empty() && !n.contains(is_sep) {
        let device = last_segment(base)?;
        return Some((Cow::Borrowed(device), Cow::Borrowed(n)));
    }
    let full: Cow<'n, str> = match (base.is_empty(), n.is_empty()) {
        (true, _) => Cow::Borrowed(n),
        (_, true) => Cow::Borrowed(base),
        _ => Cow::Owned(format!("{base}{n}")),
    };
    let Some(at) = full.rfind(is_sep) else {
        let device = super::last_topic_level(topic)?;
        return Some((Cow::Borrowed(device), full));
    };
    let urn_dev = full.starts_with("urn:dev:") && full.split(':').count() <= 4;
    let (head, metric) = if urn_dev {
        (full.as_ref(), "")
    } else {
        (&full[..at], &full[at + 1..])
    };
    let device = last_segment(head)?.to_owned();
    Some((Cow::Owned(device), Cow::Owned(metric.to_owned())))
}

/// The last non-empty `:`- or `/`-separated segment of `name`.
fn last_segment(name: &str) -> Option<&str> {
    name.split([':', '/']).rev().find(|s| !s.is_empty())
}
