//! Each IOC's wire format, as its vendor writes it (design.md "Feed contracts"): Thái Nguyên
//! vendor JSON with naive UTC+7 times and tagged values, Sông Công SenML, Phổ Yên NGSI-LD
//! normalized entities. Also the ways real payloads break.

use jiff::{SignedDuration, Timestamp};
use serde_json::{Value, json};

use super::Sample;
use crate::config::DeviceConfig;
use crate::model::{City, Domain};

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
    let (topic, body) = match device.city {
        City::ThaiNguyen => thai_nguyen(device, at, samples, status),
        City::SongCong => senml(device, at, samples, status),
        City::PhoYen => ngsi_ld(device, at, samples, status),
    };
    (topic, body.to_string().into_bytes())
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

fn thai_nguyen(
    device: &DeviceConfig,
    at: Timestamp,
    samples: &[Sample],
    status: &str,
) -> (String, Value) {
    let segment = match device.domain {
        Domain::AirQuality => "air",
        Domain::Water => "water",
        Domain::Weather => "weather",
        Domain::Traffic => "traffic",
        Domain::Lighting => "lighting",
        Domain::Energy => "energy",
    };
    let d: Vec<Value> = samples
        .iter()
        .map(|(metric, v)| {
            let (tag, unit) = match *metric {
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
                "power_state" => return json!({"tag": "STATE", "value": *v >= 0.5}),
                "power" => ("POWER", Some("W")),
                "energy" => ("ENERGY", Some("kWh")),
                "dimming_level" => ("DIMMING", Some("%")),
                other => (other, None),
            };
            match unit {
                Some(u) => json!({"tag": tag, "value": v, "unit": u}),
                None => json!({"tag": tag, "value": v}),
            }
        })
        .collect();
    let topic = format!("tn/ioc/{segment}/{}", device.id);
    (
        topic,
        json!({"station": device.id, "ts": local(at), "status": status, "d": d}),
    )
}

fn senml(
    device: &DeviceConfig,
    at: Timestamp,
    samples: &[Sample],
    status: &str,
) -> (String, Value) {
    let mut records: Vec<Value> = samples
        .iter()
        .map(|(metric, v)| {
            let (n, u) = match *metric {
                "temperature" => ("temp", Some("Cel")),
                "relative_humidity" => ("humidity", Some("%RH")),
                "water_level" => ("level", Some("m")),
                "rainfall" => ("rain", Some("mm")),
                "dissolved_oxygen" => ("do", Some("mg/L")),
                "vehicle_count" => ("vehicles", Some("count")),
                "average_speed" => ("speed", Some("km/h")),
                "occupancy" => ("occupancy", Some("%")),
                "power_state" => return json!({"n": "state", "vb": *v >= 0.5}),
                "power" => ("power", Some("W")),
                "energy" => ("energy", Some("kWh")),
                "dimming_level" => ("dimming", Some("%")),
                "ph" => ("ph", None),
                other => (other, Some("ug/m3")),
            };
            match u {
                Some(u) => json!({"n": n, "u": u, "v": v}),
                None => json!({"n": n, "v": v}),
            }
        })
        .collect();
    if status != "measuring" {
        records.push(json!({"n": "status", "vs": status}));
    }
    if let Some(Value::Object(first)) = records.first_mut() {
        first.insert("bn".into(), json!(format!("urn:dev:sc:{}:", device.id)));
        // SenML times are seconds as a number; keep milliseconds when there are any.
        let ms = at.as_millisecond();
        let bt = if ms % 1000 == 0 {
            json!(ms / 1000)
        } else {
            json!(ms as f64 / 1000.0)
        };
        first.insert("bt".into(), bt);
    }
    (format!("sc/senml/{}", device.id), Value::Array(records))
}

fn ngsi_ld(
    device: &DeviceConfig,
    at: Timestamp,
    samples: &[Sample],
    status: &str,
) -> (String, Value) {
    let kind = match device.domain {
        Domain::AirQuality => "AirQualityObserved",
        Domain::Water if !device.flood_levels.is_empty() => "FloodMonitoring",
        Domain::Water => "WaterObserved",
        Domain::Weather => "WeatherObserved",
        Domain::Traffic => "TrafficFlowObserved",
        Domain::Lighting | Domain::Energy => "Streetlight",
    };
    let property = |value: Value, unit: Option<&str>| match unit {
        Some(u) => json!({"type": "Property", "value": value, "unitCode": u}),
        None => json!({"type": "Property", "value": value}),
    };
    let mut e = serde_json::Map::new();
    e.insert(
        "id".into(),
        json!(format!("urn:ngsi-ld:{kind}:{}", device.id)),
    );
    e.insert("type".into(), json!(kind));
    e.insert("dateObserved".into(), property(json!(at.to_string()), None));
    for (metric, v) in samples {
        let (key, value, unit) = match *metric {
            "temperature" => ("temperature", json!(v), Some("CEL")),
            "relative_humidity" => ("relativeHumidity", json!(v / 100.0), None),
            "water_level" => ("currentLevel", json!(v), Some("MTR")),
            "rainfall" => ("precipitation", json!(v), Some("MMT")),
            "vehicle_count" => ("intensity", json!(v), None),
            "average_speed" => ("averageVehicleSpeed", json!(v), Some("KMH")),
            "occupancy" => ("occupancy", json!(v / 100.0), None),
            "power_state" => (
                "powerState",
                json!(if *v >= 0.5 { "on" } else { "off" }),
                None,
            ),
            "power" => ("powerConsumption", json!(v), Some("WTT")),
            "energy" => ("energyConsumed", json!(v), Some("KWH")),
            "dimming_level" => ("illuminanceLevel", json!(v / 100.0), None),
            other => (other, json!(v), Some("GQ")),
        };
        e.insert(key.into(), property(value, unit));
    }
    if kind == "FloodMonitoring" {
        // Thresholds travel with FloodMonitoring entities; they are not readings.
        if let Some(l) = device.flood_levels.first() {
            e.insert("alertLevel".into(), property(json!(l), Some("MTR")));
        }
        if let Some(l) = device.flood_levels.last() {
            e.insert("dangerLevel".into(), property(json!(l), Some("MTR")));
        }
    }
    if kind == "TrafficFlowObserved" {
        let from = at - SignedDuration::from_mins(5);
        e.insert(
            "dateObservedFrom".into(),
            property(json!(from.to_string()), None),
        );
        e.insert(
            "dateObservedTo".into(),
            property(json!(at.to_string()), None),
        );
    }
    let status = match (kind, status) {
        ("Streetlight", "fault") => Some("defectiveLamp"),
        ("Streetlight", _) => Some("ok"),
        (_, "measuring") => None,
        (_, s) => Some(s),
    };
    if let Some(s) = status {
        e.insert("status".into(), property(json!(s), None));
    }
    e.insert(
        "location".into(),
        json!({"type": "GeoProperty", "value": {"type": "Point", "coordinates": [device.lon, device.lat]}}),
    );
    e.insert(
        "@context".into(),
        json!(["https://uri.etsi.org/ngsi-ld/v1/ngsi-ld-core-context.jsonld"]),
    );
    (format!("py/ngsi-ld/{kind}"), Value::Object(e))
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
