//! InfluxDB line protocol for readings (pure).
//!
//! Schema: one measurement per domain (`air_quality`, `water`, `weather`, `traffic`,
//! `lighting`, `energy`); tags `city`, `feed`, `device`, `status` and `ward` (when known) — all
//! bounded; one field per canonical metric, always a float, so a value that happens to be whole
//! never flips the field's type; timestamps in milliseconds. A replayed reading is the same
//! measurement + tag set + timestamp, so InfluxDB overwrites instead of duplicating.

use std::fmt::Write;

/// The tags every data point carries (`ward` only when known). Bounded: no ids of messages,
/// no free text.
pub const TAGS: &[&str] = &["city", "device", "feed", "status", "ward"];

use crate::store::LogEntry;

/// Escape a measurement name: commas and spaces.
pub fn escape_measurement(s: &str, out: &mut String) {
    for c in s.chars() {
        match c {
            ',' | ' ' => {
                out.push('\\');
                out.push(c);
            }
            '\n' | '\r' => out.push(' '),
            _ => out.push(c),
        }
    }
}

/// Escape a tag key, tag value or field key: commas, equals signs, spaces (and backslashes,
/// so a value ending in one cannot escape the separator). Newlines are not representable and
/// become spaces.
pub fn escape_key(s: &str, out: &mut String) {
    for c in s.chars() {
        match c {
            ',' | '=' | ' ' | '\\' => {
                out.push('\\');
                out.push(c);
            }
            '\n' | '\r' => out.push_str("\\ "),
            _ => out.push(c),
        }
    }
}

/// A float field value: Rust's shortest round-trip form, which InfluxDB reads as a float
/// (integers need an `i` suffix, so `35` is the float 35.0).
fn write_float(v: f64, out: &mut String) {
    let _ = write!(out, "{v}");
}

/// Encode entries as lines, one line per (measurement, tags, time) with one field per metric.
/// Entries must be finite (the normaliser guarantees it). Returns the lines and, for each
/// line, the indices of the entries it carries.
pub fn encode(entries: &[LogEntry]) -> Vec<(String, Vec<usize>)> {
    let mut lines: Vec<(String, Vec<usize>)> = Vec::new();
    let mut open: std::collections::HashMap<(String, i64), usize> =
        std::collections::HashMap::new();
    let mut bodies: Vec<(String, Vec<String>, i64)> = Vec::new();
    for (i, e) in entries.iter().enumerate() {
        let series = series_key(e);
        let t = e.observed_at.as_millisecond();
        let field = field(e);
        match open.get(&(series.clone(), t)) {
            Some(&n) => {
                // The same metric twice at one time cannot happen (unique in the store).
                bodies[n].1.push(field);
                lines[n].1.push(i);
            }
            None => {
                open.insert((series.clone(), t), bodies.len());
                bodies.push((series, vec![field], t));
                lines.push((String::new(), vec![i]));
            }
        }
    }
    for ((series, fields, t), line) in bodies.into_iter().zip(lines.iter_mut()) {
        let mut s = series;
        s.push(' ');
        s.push_str(&fields.join(","));
        let _ = write!(s, " {t}");
        line.0 = s;
    }
    lines
}

/// An entry's series: its measurement and tag set, escaped (tags without a value left out).
fn series_key(e: &LogEntry) -> String {
    let mut series = String::with_capacity(96);
    escape_measurement(&e.domain, &mut series);
    let values = [
        Some(e.city.as_str()),
        Some(e.device_id.as_str()),
        Some(e.feed.as_str()),
        Some(e.status.as_str()),
        e.ward.as_deref(),
    ];
    for (k, v) in TAGS.iter().zip(values) {
        if let Some(v) = v.filter(|v| !v.is_empty()) {
            series.push(',');
            escape_key(k, &mut series);
            series.push('=');
            escape_key(v, &mut series);
        }
    }
    series
}

/// An entry's field: `metric=value`, escaped.
fn field(e: &LogEntry) -> String {
    let mut field = String::with_capacity(24);
    escape_key(&e.metric, &mut field);
    field.push('=');
    write_float(e.value, &mut field);
    field
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Status;

    fn entry(device: &str, ward: Option<&str>, metric: &str, value: f64, ms: i64) -> LogEntry {
        LogEntry {
            id: 1,
            city: "thai-nguyen".into(),
            feed: "thai-nguyen".into(),
            device_id: device.into(),
            domain: "air_quality".into(),
            metric: metric.into(),
            unit: "µg/m³".into(),
            value,
            observed_at: jiff::Timestamp::from_millisecond(ms).unwrap(),
            status: Status::Measuring,
            ward: ward.map(Into::into),
        }
    }

    #[test]
    fn metrics_of_one_device_and_time_share_a_line_with_float_fields() {
        let lines = encode(&[
            entry(
                "TN-AQ-1",
                Some("Phan Đình Phùng"),
                "pm25",
                35.0,
                1_795_309_500_000,
            ),
            entry(
                "TN-AQ-1",
                Some("Phan Đình Phùng"),
                "pm10",
                61.5,
                1_795_309_500_000,
            ),
            entry(
                "TN-AQ-1",
                Some("Phan Đình Phùng"),
                "pm25",
                36.0,
                1_795_309_800_000,
            ),
        ]);
        assert_eq!(lines.len(), 2);
        assert_eq!(
            lines[0].0,
            "air_quality,city=thai-nguyen,device=TN-AQ-1,feed=thai-nguyen,status=measuring,ward=Phan\\ Đình\\ Phùng pm25=35,pm10=61.5 1795309500000"
        );
        assert_eq!(lines[0].1, vec![0, 1]);
        assert_eq!(lines[1].1, vec![2]);
    }

    #[test]
    fn tag_values_escape_commas_equals_spaces_and_backslashes() {
        let lines = encode(&[entry("a,b=c d\\", Some("x\ny"), "pm25", 1.5, 0)]);
        assert_eq!(
            lines[0].0,
            "air_quality,city=thai-nguyen,device=a\\,b\\=c\\ d\\\\,feed=thai-nguyen,status=measuring,ward=x\\ y pm25=1.5 0"
        );
    }

    /// Parse a line back per the line-protocol grammar (escapes honoured) to check round trips.
    fn parse(line: &str) -> (Vec<String>, Vec<String>, String) {
        let mut parts = Vec::new();
        let mut cur = String::new();
        let mut chars = line.chars();
        while let Some(c) = chars.next() {
            match c {
                '\\' => cur.push(chars.next().unwrap()),
                ' ' => parts.push(std::mem::take(&mut cur)),
                _ => cur.push(c),
            }
        }
        parts.push(cur);
        assert_eq!(parts.len(), 3, "{line}");
        let split = |s: &str| s.split(',').map(str::to_owned).collect::<Vec<_>>();
        (split(&parts[0]), split(&parts[1]), parts[2].clone())
    }

    #[test]
    fn vietnamese_names_round_trip() {
        let lines = encode(&[entry("Trạm Hùng Vương", Some("Quan Triều"), "no2", 48.1, 5)]);
        let (series, fields, ts) = parse(&lines[0].0);
        assert!(
            series.contains(&"device=Trạm Hùng Vương".to_owned()),
            "{series:?}"
        );
        assert!(series.contains(&"ward=Quan Triều".to_owned()));
        assert_eq!(fields, vec!["no2=48.1"]);
        assert_eq!(ts, "5");
    }
}
