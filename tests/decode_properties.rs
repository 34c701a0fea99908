//! Properties of each decoder, through the real decode + normalise path (`pipeline::process`):
//!
//! - for any generated valid payload, the readings out are the values in, converted exactly
//!   to the canonical unit, one per value, for the right device and time;
//! - for any one value or unit replaced by an arbitrary JSON value, every value of the
//!   payload is still accounted for: a reading (the untouched ones, exactly as before) or a
//!   rejected part with its reason — or the whole message is rejected — never a silent drop;
//! - for any bytes (a valid payload with random bytes changed), no panic, and whatever is
//!   stored is valid: a finite value within its metric's possible range, a valid device id.

use ioc_aggregator::{
    config::Config,
    model::{Normalised, Rejection},
    normalise::{catalog, valid_device_id},
    pipeline,
};
use jiff::Timestamp;
use proptest::prelude::*;
use serde_json::{Value, json};

const NOW: &str = "2026-11-22T01:06:00Z";
/// The observation time of generated payloads, 08:05 in Thái Nguyên.
const AT: &str = "2026-11-22T01:05:00Z";

/// A value the generator can write: vendor name, its unit in the format's vocabulary, the
/// canonical metric, the factor to the canonical unit, and a range of vendor values.
type Field = (&'static str, &'static str, &'static str, f64, (f64, f64));

const THAI_NGUYEN: &[Field] = &[
    ("PM25", "ug/m3", "pm25", 1.0, (0.0, 900.0)),
    ("PM10", "µg/m³", "pm10", 1.0, (0.0, 900.0)),
    ("NO2", "ug/m3", "no2", 1.0, (0.0, 900.0)),
    ("CO", "mg/m3", "co", 1000.0, (0.0, 60.0)),
    ("TEMP", "C", "temperature", 1.0, (-20.0, 50.0)),
    ("HUMIDITY", "%", "relative_humidity", 1.0, (0.0, 100.0)),
    ("WS", "m/s", "wind_speed", 3.6, (0.0, 60.0)),
];

const SENML: &[Field] = &[
    ("pm25", "ug/m3", "pm25", 1.0, (0.0, 900.0)),
    ("pm10", "ug/m3", "pm10", 1.0, (0.0, 900.0)),
    ("no2", "ug/m3", "no2", 1.0, (0.0, 900.0)),
    ("temp", "Cel", "temperature", 1.0, (-20.0, 50.0)),
    ("humidity", "%RH", "relative_humidity", 1.0, (0.0, 100.0)),
    ("pressure", "hPa", "pressure", 1.0, (900.0, 1050.0)),
    ("ws", "m/s", "wind_speed", 3.6, (0.0, 60.0)),
];

const NGSI_LD: &[Field] = &[
    ("pm25", "GQ", "pm25", 1.0, (0.0, 900.0)),
    ("pm10", "GQ", "pm10", 1.0, (0.0, 900.0)),
    ("no2", "GQ", "no2", 1.0, (0.0, 900.0)),
    ("co", "GP", "co", 1000.0, (0.0, 60.0)),
    ("temperature", "CEL", "temperature", 1.0, (-20.0, 50.0)),
    (
        "relativeHumidity",
        "C62",
        "relative_humidity",
        100.0,
        (0.0, 1.0),
    ),
    ("windSpeed", "MTS", "wind_speed", 3.6, (0.0, 60.0)),
];

#[derive(Debug, Clone, Copy)]
enum Format {
    ThaiNguyen,
    SenMl,
    NgsiLd,
}

impl Format {
    fn fields(self) -> &'static [Field] {
        match self {
            Format::ThaiNguyen => THAI_NGUYEN,
            Format::SenMl => SENML,
            Format::NgsiLd => NGSI_LD,
        }
    }

    /// Feed, topic and a catalogued air station of the feed's city.
    fn feed(self) -> (&'static str, &'static str, &'static str) {
        match self {
            Format::ThaiNguyen => (
                "thai-nguyen",
                "tn/ioc/air/TN-AQ-HUNGVUONG",
                "TN-AQ-HUNGVUONG",
            ),
            Format::SenMl => ("song-cong", "sc/senml/sc-aq-01", "sc-aq-01"),
            Format::NgsiLd => ("pho-yen", "py/ngsi-ld/AirQualityObserved", "PY-AQ-01"),
        }
    }

    /// The payload of `values` (field, value or any JSON, unit), as the vendor writes it.
    fn payload(self, values: &[(Field, Value, Value)]) -> Vec<u8> {
        let device = self.feed().2;
        let doc = match self {
            Format::ThaiNguyen => json!({
                "station": device,
                "ts": "2026-11-22 08:05:00",
                "status": "measuring",
                "d": values.iter().map(|(f, v, u)| json!({"tag": f.0, "value": v, "unit": u}))
                    .collect::<Vec<_>>(),
            }),
            Format::SenMl => {
                let at: Timestamp = AT.parse().unwrap();
                let mut records: Vec<Value> = values
                    .iter()
                    .map(|(f, v, u)| match v {
                        Value::Bool(_) => json!({"n": f.0, "vb": v, "u": u}),
                        Value::String(_) => json!({"n": f.0, "vs": v, "u": u}),
                        _ => json!({"n": f.0, "v": v, "u": u}),
                    })
                    .collect();
                records[0]["bn"] = json!(format!("urn:dev:sc:{device}:"));
                records[0]["bt"] = json!(at.as_second());
                Value::Array(records)
            }
            Format::NgsiLd => {
                let mut entity = json!({
                    "id": format!("urn:ngsi-ld:AirQualityObserved:{device}"),
                    "type": "AirQualityObserved",
                    "dateObserved": {"type": "Property", "value": AT},
                });
                for (f, v, u) in values {
                    entity[f.0] = json!({"type": "Property", "value": v, "unitCode": u});
                }
                entity
            }
        };
        serde_json::to_vec(&doc).unwrap()
    }
}

fn process(format: Format, payload: &[u8]) -> Result<Normalised, Rejection> {
    let config = Config::from_toml_str(ioc_aggregator::config::DEFAULT_TOML).unwrap();
    let (feed_name, topic, _) = format.feed();
    let feed = config.feeds.iter().find(|f| f.name == feed_name).unwrap();
    let now: Timestamp = NOW.parse().unwrap();
    pipeline::process(
        &feed.decoder(),
        &config.normaliser(feed),
        &config.ingest,
        topic,
        &payload.to_vec().into(),
        now,
        now,
    )
}

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() <= 1e-12 * b.abs().max(1.0)
}

/// Distinct fields of `format`, each with a value in its range.
fn valid(format: Format) -> impl Strategy<Value = Vec<(Field, f64)>> {
    proptest::sample::subsequence(format.fields(), 1..=format.fields().len())
        .prop_flat_map(|fields| {
            fields
                .into_iter()
                .map(|f| (f.4.0..=f.4.1).prop_map(move |v| (f, v)))
                .collect::<Vec<_>>()
        })
        .prop_shuffle()
}

fn any_json() -> impl Strategy<Value = Value> {
    prop_oneof![
        any::<f64>()
            .prop_map(|v| serde_json::Number::from_f64(v).map_or(Value::Null, Value::Number)),
        any::<i64>().prop_map(|v| json!(v)),
        any::<bool>().prop_map(Value::Bool),
        ".{0,12}".prop_map(Value::String),
        Just(Value::Null),
        Just(json!([1, 2])),
        Just(json!({"a": 1})),
        Just(json!("41.5")),
        Just(json!(-3.0)),
        Just(json!(1e300)),
    ]
}

fn formats() -> impl Strategy<Value = Format> {
    prop_oneof![
        Just(Format::ThaiNguyen),
        Just(Format::SenMl),
        Just(Format::NgsiLd)
    ]
}

/// What is stored is valid, whatever came in.
fn assert_stored_is_valid(n: &Normalised) {
    for r in &n.readings {
        let spec = catalog::lookup(r.metric).unwrap();
        assert!(r.value.is_finite(), "{r:?}");
        assert!(
            (spec.range.0..=spec.range.1).contains(&r.value),
            "{} = {} outside {:?}",
            r.metric,
            r.value,
            spec.range
        );
        assert!(valid_device_id(&r.device_id), "{:?}", r.device_id);
        assert_eq!(r.unit, spec.unit);
    }
}

/// A format and distinct fields of it with valid values.
fn payloads() -> impl Strategy<Value = (Format, Vec<(Field, f64)>)> {
    formats().prop_flat_map(|f| (Just(f), valid(f)))
}

fn as_written(values: &[(Field, f64)]) -> Vec<(Field, Value, Value)> {
    values
        .iter()
        .map(|(f, v)| (*f, json!(v), json!(f.1)))
        .collect()
}

proptest! {
    // 256 cases each in the test run; `PROPTEST_CASES=20000` for a long run.
    #![proptest_config(ProptestConfig::with_cases(
        std::env::var("PROPTEST_CASES").ok().and_then(|c| c.parse().ok()).unwrap_or(256)
    ))]

    #[test]
    fn valid_payloads_give_every_value_converted_exactly((format, values) in payloads()) {
        let n = process(format, &format.payload(&as_written(&values))).unwrap();
        prop_assert!(n.rejected.is_empty(), "{:?}", n.rejected);
        prop_assert_eq!(n.readings.len(), values.len());
        let at: Timestamp = AT.parse().unwrap();
        for (f, v) in &values {
            let r = n.readings.iter().find(|r| r.metric == f.2).unwrap();
            prop_assert!(close(r.value, v * f.3), "{} {} {}: {} != {}", v, f.1, f.2, r.value, v * f.3);
            prop_assert_eq!(&r.device_id, format.feed().2);
            prop_assert_eq!(r.observed_at, at);
        }
    }

    #[test]
    fn a_changed_value_or_unit_is_a_reading_or_a_reject_never_lost(
        (format, values) in payloads(),
        which in any::<prop::sample::Index>(),
        replacement in any_json(),
        replace_unit in any::<bool>(),
    ) {
        let changed = which.index(values.len());
        let mut written = as_written(&values);
        if replace_unit {
            written[changed].2 = replacement.clone();
        } else {
            written[changed].1 = replacement.clone();
        }
        match process(format, &format.payload(&written)) {
            Ok(n) => {
                assert_stored_is_valid(&n);
                prop_assert_eq!(
                    n.readings.len() + n.rejected.len(),
                    values.len(),
                    "readings {:?}, rejected {:?}", n.readings, n.rejected
                );
                for (i, (f, v)) in values.iter().enumerate() {
                    let r = n.readings.iter().find(|r| r.metric == f.2);
                    if i != changed {
                        prop_assert!(close(r.unwrap().value, v * f.3));
                    } else if let (Some(r), false, Some(x)) = (r, replace_unit, replacement.as_f64()) {
                        prop_assert!(close(r.value, x * f.3));
                    }
                }
            }
            // A whole message rejected says why.
            Err(e) => prop_assert!(!e.detail.is_empty(), "{e}"),
        }
    }

    #[test]
    fn any_bytes_never_panic_and_store_only_valid_readings(
        (format, values) in payloads(),
        edits in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..8),
    ) {
        let mut payload = format.payload(&as_written(&values));
        for (at, byte) in edits {
            let i = at.index(payload.len());
            payload[i] = byte;
        }
        if let Ok(n) = process(format, &payload) {
            assert_stored_is_valid(&n);
        }
    }
}
