//! Each IOC's wire format, as its vendor writes it (design.md "Feed contracts"): Thái Nguyên
//! vendor JSON with naive UTC+7 times and tagged values, Sông Công SenML, Phổ Yên NGSI-LD
//! normalized entities. Also the ways real payloads break.

use jiff::{SignedDuration, Timestamp};
use serde::{Serialize, ser::SerializeMap};
use serde_json::{Value, json};

use super::Sample;
use crate::model::{City, Domain};
use crate::normalise::DeviceConfig;

/// How precisely payloads carry the observation time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TimePrecision {
    /// Whole seconds, as the IOCs' devices send them.
    Second,
    /// Milliseconds (the load generator: exact latencies, several messages per device-second).
    /// Every decoder accepts it: fractional seconds in the Thái Nguyên time, a fractional SenML
    /// `bt`, milliseconds in NGSI-LD's ISO 8601.
    Millisecond,
}

/// Topic and payload of one device's samples at `at`.
///
/// Written through typed structs rather than `serde_json::Value`: building a map per message
/// cost the load generator 2.3 µs a message, 40 % of its CPU in the benchmark, on the two
/// cores it shares with the broker and the aggregator (BENCHMARKS.md, finding 25). Keys come
/// out in the order the vendors write them.
pub fn encode(
    device: &DeviceConfig,
    at: Timestamp,
    samples: &[Sample],
    status: &str,
    precision: TimePrecision,
) -> (String, Vec<u8>) {
    let at = match precision {
        TimePrecision::Second => Timestamp::from_second(at.as_second()).unwrap_or(at),
        TimePrecision::Millisecond => {
            Timestamp::from_millisecond(at.as_millisecond()).unwrap_or(at)
        }
    };
    let mut body = Vec::with_capacity(512);
    let written = match device.city {
        City::ThaiNguyen => thai_nguyen(device, at, samples, status, &mut body),
        City::SongCong => senml(device, at, samples, status, &mut body),
        City::PhoYen => ngsi_ld(device, at, samples, status, &mut body),
    };
    // Serializing these types into a Vec cannot fail: no maps with non-string keys, no I/O.
    let topic = written.expect("simulated payloads serialize");
    (topic, body)
}

/// Naive UTC+7 time; milliseconds only when there are any.
fn local(at: Timestamp) -> String {
    let format = if at.subsec_millisecond() == 0 {
        "%Y-%m-%d %H:%M:%S"
    } else {
        "%Y-%m-%d %H:%M:%S%.3f"
    };
    at.to_zoned(jiff::tz::TimeZone::fixed(jiff::tz::offset(7)))
        .strftime(format)
        .to_string()
}

/// A value as payloads carry it: a number, a boolean, or text (times, on/off, status).
#[derive(Serialize)]
#[serde(untagged)]
enum Scalar<'a> {
    Number(f64),
    Bool(bool),
    Text(&'a str),
}

#[derive(Serialize)]
struct TnMessage<'a> {
    station: &'a str,
    ts: String,
    status: &'a str,
    d: Vec<TnValue<'a>>,
}

#[derive(Serialize)]
struct TnValue<'a> {
    tag: &'a str,
    value: Scalar<'a>,
    #[serde(skip_serializing_if = "Option::is_none")]
    unit: Option<&'a str>,
}

/// A Thái Nguyên message: one station's tagged values, on `tn/ioc/{domain}/{station}`.
fn thai_nguyen(
    device: &DeviceConfig,
    at: Timestamp,
    samples: &[Sample],
    status: &str,
    out: &mut Vec<u8>,
) -> serde_json::Result<String> {
    let segment = match device.domain {
        Domain::AirQuality => "air",
        Domain::Water => "water",
        Domain::Weather => "weather",
        Domain::Traffic => "traffic",
        Domain::Lighting => "lighting",
        Domain::Energy => "energy",
    };
    let message = TnMessage {
        station: &device.id,
        ts: local(at),
        status,
        d: samples.iter().map(tn_value).collect(),
    };
    serde_json::to_writer(out, &message)?;
    Ok(format!("tn/ioc/{segment}/{}", device.id))
}

/// A sample as the Thái Nguyên vendor tags it, in its unit; the lamp's state is a boolean.
fn tn_value(&(metric, v): &Sample) -> TnValue<'static> {
    let (tag, unit) = match metric {
        "pm25" => ("PM25", Some("ug/m3")),
        "pm10" => ("PM10", Some("ug/m3")),
        "no2" => ("NO2", Some("ug/m3")),
        "so2" => ("SO2", Some("ug/m3")),
        "co" => ("CO", Some("ug/m3")),
        "o3" => ("O3", Some("ug/m3")),
        "temperature" => ("TEMP", Some("C")),
        "relative_humidity" => ("HUMIDITY", Some("%")),
        "water_level" => ("MUCNUOC", Some("m")),
        "rainfall" => ("RAIN", Some("mm")),
        "ph" => ("PH", None),
        "dissolved_oxygen" => ("DO", Some("mg/L")),
        "turbidity" => ("TURBIDITY", Some("NTU")),
        "conductivity" => ("EC", Some("uS/cm")),
        "water_temperature" => ("NHIETDONUOC", Some("C")),
        "vehicle_count" => ("VEHICLES", Some("vehicles")),
        "average_speed" => ("SPEED", Some("km/h")),
        "occupancy" => ("OCCUPANCY", Some("%")),
        "power_state" => {
            return TnValue {
                tag: "STATE",
                value: Scalar::Bool(v >= 0.5),
                unit: None,
            };
        }
        "power" => ("POWER", Some("W")),
        "energy" => ("ENERGY", Some("kWh")),
        "dimming_level" => ("DIMMING", Some("%")),
        other => (other, None),
    };
    TnValue {
        tag,
        value: Scalar::Number(v),
        unit,
    }
}

/// A SenML record; the first also carries the base name and time.
#[derive(Serialize)]
struct SenmlRecord<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    bn: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    bt: Option<BaseTime>,
    n: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    u: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    v: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    vb: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    vs: Option<&'a str>,
}

/// SenML times are seconds as a number: whole when there are no milliseconds.
#[derive(Serialize)]
#[serde(untagged)]
enum BaseTime {
    Seconds(i64),
    Fraction(f64),
}

impl<'a> SenmlRecord<'a> {
    fn named(n: &'a str) -> Self {
        SenmlRecord {
            bn: None,
            bt: None,
            n,
            u: None,
            v: None,
            vb: None,
            vs: None,
        }
    }
}

/// A SenML pack of one device on `sc/senml/{device}`: a record per sample, and one for a
/// status other than measuring; the first carries the base name and time.
fn senml(
    device: &DeviceConfig,
    at: Timestamp,
    samples: &[Sample],
    status: &str,
    out: &mut Vec<u8>,
) -> serde_json::Result<String> {
    let mut records: Vec<SenmlRecord<'_>> = samples.iter().map(senml_record).collect();
    if status != "measuring" {
        records.push(SenmlRecord {
            vs: Some(status),
            ..SenmlRecord::named("status")
        });
    }
    if let Some(first) = records.first_mut() {
        first.bn = Some(format!("urn:dev:sc:{}:", device.id));
        let ms = at.as_millisecond();
        first.bt = Some(if ms % 1000 == 0 {
            BaseTime::Seconds(ms / 1000)
        } else {
            BaseTime::Fraction(ms as f64 / 1000.0)
        });
    }
    serde_json::to_writer(out, &records)?;
    Ok(format!("sc/senml/{}", device.id))
}

/// A sample as a SenML record, named and in the unit Sông Công's devices use; the lamp's
/// state is a boolean.
fn senml_record(&(metric, v): &Sample) -> SenmlRecord<'static> {
    let (n, u) = match metric {
        "temperature" => ("temp", Some("Cel")),
        "relative_humidity" => ("humidity", Some("%RH")),
        "water_level" => ("level", Some("m")),
        "rainfall" => ("rain", Some("mm")),
        "dissolved_oxygen" => ("do", Some("mg/l")),
        "vehicle_count" => ("vehicles", Some("count")),
        "average_speed" => ("speed", Some("km/h")),
        // RFC 8798's percent; SenML's "%" is a ratio of 1 (RFC 8428 note 1).
        "occupancy" => ("occupancy", Some("/100")),
        "power_state" => {
            return SenmlRecord {
                vb: Some(v >= 0.5),
                ..SenmlRecord::named("state")
            };
        }
        "power" => ("power", Some("W")),
        "energy" => ("energy", Some("kWh")),
        "dimming_level" => ("dimming", Some("/100")),
        "ph" => ("ph", None),
        other => (other, Some("ug/m3")),
    };
    SenmlRecord {
        u,
        v: Some(v),
        ..SenmlRecord::named(n)
    }
}

/// An NGSI-LD normalized Property.
#[derive(Serialize)]
struct Property<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    value: Scalar<'a>,
    #[serde(rename = "unitCode", skip_serializing_if = "Option::is_none")]
    unit_code: Option<&'static str>,
}

impl<'a> Property<'a> {
    fn number(value: f64, unit_code: Option<&'static str>) -> Self {
        Property {
            kind: "Property",
            value: Scalar::Number(value),
            unit_code,
        }
    }

    /// Text (times, states) carries no unit.
    fn text(value: &'a str) -> Self {
        Property {
            kind: "Property",
            value: Scalar::Text(value),
            unit_code: None,
        }
    }
}

#[derive(Serialize)]
struct GeoProperty {
    #[serde(rename = "type")]
    kind: &'static str,
    value: Point,
}

impl GeoProperty {
    /// A GeoJSON Point, `[lon, lat]`.
    fn point(lon: f64, lat: f64) -> GeoProperty {
        GeoProperty {
            kind: "GeoProperty",
            value: Point {
                kind: "Point",
                coordinates: [lon, lat],
            },
        }
    }
}

#[derive(Serialize)]
struct Point {
    #[serde(rename = "type")]
    kind: &'static str,
    coordinates: [f64; 2],
}

/// An NGSI-LD entity: its attributes are named by what it measures, so it is written as a map.
struct Entity<'a> {
    id: String,
    kind: &'a str,
    attributes: Vec<(&'a str, Property<'a>)>,
    location: GeoProperty,
}

impl Serialize for Entity<'_> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(Some(self.attributes.len() + 4))?;
        map.serialize_entry("id", &self.id)?;
        map.serialize_entry("type", self.kind)?;
        for (name, property) in &self.attributes {
            map.serialize_entry(name, property)?;
        }
        map.serialize_entry("location", &self.location)?;
        map.serialize_entry(
            "@context",
            &["https://uri.etsi.org/ngsi-ld/v1/ngsi-ld-core-context.jsonld"],
        )?;
        map.end()
    }
}

/// A Phổ Yên NGSI-LD entity of the Smart Data Model of the device's kind, on
/// `py/ngsi-ld/{type}`: a Property per sample, the time, thresholds and status as the model
/// writes them, and the position.
fn ngsi_ld(
    device: &DeviceConfig,
    at: Timestamp,
    samples: &[Sample],
    status: &str,
    out: &mut Vec<u8>,
) -> serde_json::Result<String> {
    let kind = ngsi_type(device);
    let observed = at.to_string();
    let mut attributes = Vec::with_capacity(samples.len() + 5);
    attributes.push(("dateObserved", Property::text(&observed)));
    attributes.extend(samples.iter().map(ngsi_attribute));
    if kind == "FloodMonitoring" {
        // Thresholds travel with FloodMonitoring entities; they are not readings.
        attributes.extend(flood_thresholds(device));
    }
    let from;
    if kind == "TrafficFlowObserved" {
        from = (at - SignedDuration::from_mins(5)).to_string();
        attributes.push(("dateObservedFrom", Property::text(&from)));
        attributes.push(("dateObservedTo", Property::text(&observed)));
    }
    if let Some(s) = ngsi_status(kind, status) {
        attributes.push(("status", Property::text(s)));
    }
    let entity = Entity {
        id: format!("urn:ngsi-ld:{kind}:{}", device.id),
        kind,
        attributes,
        location: GeoProperty::point(device.lon, device.lat),
    };
    serde_json::to_writer(out, &entity)?;
    Ok(format!("py/ngsi-ld/{kind}"))
}

/// A flood gauge's alarm levels: the first (alert) and the last (danger).
fn flood_thresholds(device: &DeviceConfig) -> impl Iterator<Item = (&'static str, Property<'_>)> {
    let alert = device.flood_levels.first();
    let danger = device.flood_levels.last();
    let alert = alert.map(|l| ("alertLevel", Property::number(*l, Some("MTR"))));
    let danger = danger.map(|l| ("dangerLevel", Property::number(*l, Some("MTR"))));
    alert.into_iter().chain(danger)
}

/// The Smart Data Model entity type of a device.
fn ngsi_type(device: &DeviceConfig) -> &'static str {
    match device.domain {
        Domain::AirQuality => "AirQualityObserved",
        Domain::Water if !device.flood_levels.is_empty() => "FloodMonitoring",
        Domain::Water => "WaterObserved",
        Domain::Weather => "WeatherObserved",
        Domain::Traffic => "TrafficFlowObserved",
        Domain::Lighting | Domain::Energy => "Streetlight",
    }
}

/// A sample as the data model's attribute: its name, and the value in the model's unit
/// (UN/CEFACT code; ratios as fractions of 1).
fn ngsi_attribute<'a>(&(metric, v): &Sample) -> (&'static str, Property<'a>) {
    let number = Property::number;
    match metric {
        "temperature" => ("temperature", number(v, Some("CEL"))),
        "relative_humidity" => ("relativeHumidity", number(v / 100.0, None)),
        "water_level" => ("currentLevel", number(v, Some("MTR"))),
        "rainfall" => ("precipitation", number(v, Some("MMT"))),
        "vehicle_count" => ("intensity", number(v, None)),
        "average_speed" => ("averageVehicleSpeed", number(v, Some("KMH"))),
        "occupancy" => ("occupancy", number(v / 100.0, None)),
        "power_state" => (
            "powerState",
            Property::text(if v >= 0.5 { "on" } else { "off" }),
        ),
        "power" => ("powerConsumption", number(v, Some("WTT"))),
        "energy" => ("energyConsumed", number(v, Some("KWH"))),
        "dimming_level" => ("illuminanceLevel", number(v / 100.0, None)),
        other => (other, number(v, Some("GQ"))),
    }
}

/// The entity's `status`: a street light's lamp state, else the device's status unless it is
/// measuring.
fn ngsi_status<'s>(kind: &str, status: &'s str) -> Option<&'s str> {
    match (kind, status) {
        ("Streetlight", "fault") => Some("defectiveLamp"),
        ("Streetlight", _) => Some("ok"),
        (_, "measuring") => None,
        (_, s) => Some(s),
    }
}

/// Break a well-formed payload the way real feeds break (`kind` 0–4): a NaN literal, a
/// far-future time, a missing required field, truncation, or a wrong shape.
pub fn break_payload(city: City, payload: &[u8], at: Timestamp, kind: u32) -> Vec<u8> {
    let text = String::from_utf8_lossy(payload).into_owned();
    match kind {
        0 => nan_literal(&text).into_bytes(),
        3 => payload[..payload.len() / 2].to_vec(),
        _ => {
            let mut v: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
            let future = at + SignedDuration::from_hours(48);
            match (city, kind) {
                (City::ThaiNguyen, 1) => v["ts"] = json!(local(future)),
                (City::ThaiNguyen, 2) => drop(v.as_object_mut().map(|o| o.remove("ts"))),
                (City::ThaiNguyen, _) => v["d"] = json!("PM25=35.2;PM10=61"),
                (City::SongCong, 1) => v[0]["bt"] = json!(future.as_second()),
                (City::SongCong, 2) => {
                    if let Some(o) = v[0].as_object_mut() {
                        o.retain(|k, _| !matches!(k.as_str(), "v" | "vb" | "vs" | "vd" | "s"));
                    }
                }
                (City::SongCong, _) => v = json!({"e": v}),
                (City::PhoYen, 1) => v["dateObserved"]["value"] = json!(future.to_string()),
                (City::PhoYen, 2) => drop(v.as_object_mut().map(|o| o.remove("id"))),
                (City::PhoYen, _) => v["type"] = json!("ParkingSpot"),
            }
            v.to_string().into_bytes()
        }
    }
}

/// Replace the first numeric value with a bare `NaN`, which is not JSON.
fn nan_literal(text: &str) -> String {
    for key in ["\"value\":", "\"v\":"] {
        if let Some(i) = text.find(key) {
            let start = i + key.len();
            let end = text[start..]
                .find(|c: char| !(c.is_ascii_digit() || matches!(c, '.' | '-' | 'e' | 'E' | '+')))
                .map_or(text.len(), |n| start + n);
            if end > start {
                return format!("{}NaN{}", &text[..start], &text[end..]);
            }
        }
    }
    format!("{text}NaN")
}
