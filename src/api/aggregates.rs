//! `/api/v1/aggregates`: time-bucketed mean/min/max/count/sum, buckets aligned to local (UTC+7)
//! midnight, filtered by city, domain, device and metric.

use std::time::Duration;

use axum::{Json, extract::State};
use serde::Deserialize;
use serde_json::{Map, Value, json};

use super::{
    ApiState,
    error::{ApiError, ApiQuery, ApiResult},
    params,
};
use crate::{normalise::catalog, store::AggregateQuery};

const FUNCTIONS: [&str; 5] = ["mean", "min", "max", "count", "sum"];
/// Most buckets one request may produce.
const MAX_BUCKETS: u64 = 20_000;

/// The query of `GET /api/v1/aggregates`: `metric` (required), `city`, `domain` and `device` to
/// narrow it, `from` and `to` (default: the 24 hours up to now), `every` (the bucket width,
/// default `1h`), `fn` (some of `mean,min,max,count,sum`, default all) and `group_by=device`.
#[derive(Debug, Deserialize)]
pub struct AggregateParams {
    metric: Option<String>,
    city: Option<String>,
    domain: Option<String>,
    device: Option<String>,
    from: Option<String>,
    to: Option<String>,
    every: Option<String>,
    #[serde(rename = "fn")]
    functions: Option<String>,
    group_by: Option<String>,
}

/// `GET /api/v1/aggregates`: the metric's unit and its buckets over `[from, to)`, aligned to
/// local (UTC+7) midnight, each with the functions asked for (and its device, with
/// `group_by=device`); intervals without readings have no bucket. A 400 for a missing or
/// non-canonical `metric`, an unknown `city` or `domain`, a bad `from`/`to` (unparsable, not in
/// order, or more than 366 days apart), an `every` outside 1m–1d or not dividing a day, more
/// than 20,000 buckets, an unknown `fn` or a `group_by` other than `device`. An unknown `device`
/// is no error: it has no buckets.
pub async fn aggregates(
    State(state): State<ApiState>,
    ApiQuery(p): ApiQuery<AggregateParams>,
) -> ApiResult<Value> {
    let Some(metric) = p.metric else {
        return Err(ApiError::bad("metric is required (e.g. metric=pm25)"));
    };
    let Some(spec) = catalog::lookup(&metric).filter(|s| s.name == metric) else {
        return Err(ApiError::bad(format!(
            "unknown metric {metric:?}: use a canonical metric name (see README)"
        )));
    };
    let every = params::parse_every(p.every.as_deref().unwrap_or("1h"))?;
    let (from, to) = params::time_range(
        p.from.as_deref(),
        p.to.as_deref(),
        Duration::from_secs(86_400),
        Duration::from_secs(366 * 86_400),
    )?;
    let span_ms = (to.as_millisecond() - from.as_millisecond()) as u64;
    if span_ms / every.as_millis() as u64 > MAX_BUCKETS {
        return Err(ApiError::bad(format!(
            "that range at every={} makes more than {MAX_BUCKETS} buckets; use a larger every",
            humantime::format_duration(every)
        )));
    }
    let functions: Vec<&str> = match p.functions.as_deref() {
        None => FUNCTIONS.to_vec(),
        Some(list) => {
            let mut out = Vec::new();
            for f in list.split(',').map(str::trim) {
                if !FUNCTIONS.contains(&f) {
                    return Err(ApiError::bad(format!(
                        "fn={f:?}: expected a comma-separated list of {}",
                        FUNCTIONS.join(", ")
                    )));
                }
                out.push(f);
            }
            out
        }
    };
    let group_by_device = match p.group_by.as_deref() {
        None => false,
        Some("device") => true,
        Some(other) => return Err(ApiError::bad(format!("group_by={other:?}: only device"))),
    };
    let query = AggregateQuery {
        metric: spec.name.to_owned(),
        city: p.city.as_deref().map(params::parse_city).transpose()?,
        domain: p.domain.as_deref().map(params::parse_domain).transpose()?,
        device_id: p.device,
        from,
        to,
        every_ms: every.as_millis() as i64,
        group_by_device,
    };
    let buckets = state.store.aggregates(&query).await?;
    let rows: Vec<Value> = buckets
        .into_iter()
        .map(|b| {
            let mut row = Map::new();
            row.insert("bucket_start".into(), json!(b.bucket_start));
            row.insert("bucket_end".into(), json!(b.bucket_end));
            if group_by_device {
                row.insert("device_id".into(), json!(b.device_id));
            }
            for f in &functions {
                let v = match *f {
                    "mean" => json!(b.mean),
                    "min" => json!(b.min),
                    "max" => json!(b.max),
                    "count" => json!(b.count),
                    _ => json!(b.sum),
                };
                row.insert((*f).into(), v);
            }
            Value::Object(row)
        })
        .collect();
    Ok(Json(json!({
        "metric": spec.name,
        "unit": spec.unit,
        "every": humantime::format_duration(every).to_string(),
        "timezone": "+07:00",
        "from": from,
        "to": to,
        "buckets": rows,
    })))
}
