//! Parsing of query parameters shared by several endpoints: times, durations, ids.

use std::time::Duration;

use jiff::{Timestamp, civil, tz::TimeZone};

use super::error::ApiError;
use crate::model::{City, Domain};

/// Vietnam is UTC+7 all year (no DST): the local time of the operations centres.
pub fn local_tz() -> TimeZone {
    TimeZone::fixed(jiff::tz::offset(7))
}

/// A time parameter: RFC 3339 with an offset, a naive local time (UTC+7), or a local date
/// (its midnight).
pub fn parse_time(name: &str, s: &str) -> Result<Timestamp, ApiError> {
    if let Ok(t) = s.parse::<Timestamp>() {
        return Ok(t);
    }
    if let Ok(dt) = s.parse::<civil::DateTime>()
        && let Ok(z) = dt.to_zoned(local_tz())
    {
        return Ok(z.timestamp());
    }
    if let Ok(d) = s.parse::<civil::Date>()
        && let Ok(z) = d.to_zoned(local_tz())
    {
        return Ok(z.timestamp());
    }
    Err(ApiError::bad(format!(
        "{name}={s:?} is not a time: use RFC 3339 (2026-11-22T08:00:00+07:00), a local time (2026-11-22T08:00) or a date (2026-11-22)"
    )))
}

/// A `from`/`to` pair with defaults (`to` = now, `from` = `to` − `default_span`), checked.
pub fn time_range(
    from: Option<&str>,
    to: Option<&str>,
    default_span: Duration,
    max_span: Duration,
) -> Result<(Timestamp, Timestamp), ApiError> {
    let to = match to {
        Some(s) => parse_time("to", s)?,
        None => Timestamp::now(),
    };
    let from = match from {
        Some(s) => parse_time("from", s)?,
        None => {
            let span = jiff::SignedDuration::try_from(default_span).unwrap_or_default();
            to.checked_sub(span).map_err(|_| {
                ApiError::bad(format!("to ({to}) is too early to start a range before it"))
            })?
        }
    };
    if from >= to {
        return Err(ApiError::bad(format!(
            "from ({from}) must be before to ({to})"
        )));
    }
    let span = to.duration_since(from);
    if span > jiff::SignedDuration::try_from(max_span).unwrap_or(jiff::SignedDuration::MAX) {
        return Err(ApiError::bad(format!(
            "the range from {from} to {to} is longer than the {} allowed",
            humantime::format_duration(max_span)
        )));
    }
    Ok((from, to))
}

/// A `limit` parameter: `default` when absent, else a number from 1 to `max` (a 400 otherwise).
pub fn limit(given: Option<u32>, default: u32, max: u32) -> Result<u32, ApiError> {
    let limit = given.unwrap_or(default);
    if !(1..=max).contains(&limit) {
        return Err(ApiError::bad(format!("limit must be between 1 and {max}")));
    }
    Ok(limit)
}

/// A `city` parameter: `thai-nguyen`, `song-cong` or `pho-yen`, exactly; anything else is a
/// 400 that lists them.
pub fn parse_city(s: &str) -> Result<City, ApiError> {
    s.parse().map_err(ApiError::BadRequest)
}

/// A `domain` parameter: a domain's name exactly (`air_quality`, `water`, `weather`,
/// `traffic`, `lighting`, `energy`); anything else is a 400 that lists them.
pub fn parse_domain(s: &str) -> Result<Domain, ApiError> {
    s.parse().map_err(ApiError::BadRequest)
}

/// A bucket width for aggregates: 1 minute to 1 day, dividing a day evenly so that buckets
/// line up with local midnight.
pub fn parse_every(s: &str) -> Result<Duration, ApiError> {
    let d = humantime::parse_duration(s).map_err(|e| {
        ApiError::bad(format!(
            "every={s:?} is not a duration (e.g. 5m, 1h, 1d): {e}"
        ))
    })?;
    let secs = d.as_secs();
    if d.subsec_nanos() != 0 || !(60..=86_400).contains(&secs) {
        return Err(ApiError::bad(format!(
            "every={s:?} must be between 1m and 1d"
        )));
    }
    if 86_400 % secs != 0 {
        return Err(ApiError::bad(format!(
            "every={s:?} must divide a day evenly (1m, 5m, 10m, 15m, 30m, 1h, 2h, 3h, 6h, 12h, 1d ...)"
        )));
    }
    Ok(d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_in_three_spellings() {
        let t = parse_time("from", "2026-11-22T08:00:00+07:00").unwrap();
        assert_eq!(t.to_string(), "2026-11-22T01:00:00Z");
        assert_eq!(parse_time("from", "2026-11-22T08:00").unwrap(), t);
        assert_eq!(
            parse_time("from", "2026-11-22").unwrap().to_string(),
            "2026-11-21T17:00:00Z"
        );
        assert!(parse_time("from", "yesterday").is_err());
    }

    #[test]
    fn bucket_widths() {
        assert_eq!(parse_every("15m").unwrap().as_secs(), 900);
        assert_eq!(parse_every("1d").unwrap().as_secs(), 86_400);
        assert!(parse_every("7m").is_err());
        assert!(parse_every("30s").is_err());
        assert!(parse_every("2d").is_err());
        assert!(parse_every("soon").is_err());
    }
}
