//! `/api/v1/aggregates`: time-bucketed mean/min/max/count/sum, buckets aligned to local (UTC+7)
//! midnight, filtered by city, domain, device and metric.

use std::time::Duration;

use axum::{Json, extract::State};
use jiff::Timestamp;
use serde::{Deserialize, Serialize};

use super::auth::visible_city;
use super::{
    ApiState,
    error::{ApiError, ApiQuery, ApiResult},
    params,
};
use crate::{
    auth::Caller,
    normalise::catalog::{self, MetricSpec},
    store::{AggregateQuery, Bucket, DeviceFilter},
};

const FUNCTIONS: [&str; 5] = ["mean", "min", "max", "count", "sum"];
/// Most buckets one request may produce.
const MAX_BUCKETS: u64 = 20_000;

/// The answer of `/api/v1/aggregates`: the metric, its canonical unit, the bucket width (as
/// `1h`, `15m`, `1day`, …), the local offset buckets are aligned to (`+07:00`), the range asked
/// for and its buckets, oldest first (then by device).
#[derive(Debug, Serialize)]
pub struct Aggregates {
    pub metric: &'static str,
    pub unit: &'static str,
    pub every: String,
    pub timezone: &'static str,
    pub from: Timestamp,
    pub to: Timestamp,
    pub buckets: Vec<BucketRow>,
}

/// One bucket, `[bucket_start, bucket_end)`: its device only with `group_by=device`, and only
/// the functions asked for (`fn`); the others are absent, not null.
#[derive(Debug, Serialize)]
pub struct BucketRow {
    pub bucket_start: Timestamp,
    pub bucket_end: Timestamp,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub device_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mean: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub min: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub count: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sum: Option<f64>,
}

impl BucketRow {
    /// `bucket` with the functions of `asked`, and its device when grouped by device.
    fn new(bucket: Bucket, asked: Functions, group_by_device: bool) -> BucketRow {
        BucketRow {
            bucket_start: bucket.bucket_start,
            bucket_end: bucket.bucket_end,
            device_id: bucket.device_id.filter(|_| group_by_device),
            mean: asked.mean.then_some(bucket.mean),
            min: asked.min.then_some(bucket.min),
            max: asked.max.then_some(bucket.max),
            count: asked.count.then_some(bucket.count),
            sum: asked.sum.then_some(bucket.sum),
        }
    }
}

/// Which of the [`FUNCTIONS`] a request asked for.
#[derive(Debug, Clone, Copy, Default)]
struct Functions {
    mean: bool,
    min: bool,
    max: bool,
    count: bool,
    sum: bool,
}

impl Functions {
    /// A `fn` parameter: a comma-separated list of [`FUNCTIONS`] (spaces around names allowed,
    /// repeats ignored); absent, all of them. Anything else is a 400 naming the first unknown.
    fn parse(list: Option<&str>) -> Result<Functions, ApiError> {
        let Some(list) = list else {
            return Ok(Functions {
                mean: true,
                min: true,
                max: true,
                count: true,
                sum: true,
            });
        };
        let mut asked = Functions::default();
        for f in list.split(',').map(str::trim) {
            match f {
                "mean" => asked.mean = true,
                "min" => asked.min = true,
                "max" => asked.max = true,
                "count" => asked.count = true,
                "sum" => asked.sum = true,
                _ => {
                    return Err(ApiError::bad(format!(
                        "fn={f:?}: expected a comma-separated list of {}",
                        FUNCTIONS.join(", ")
                    )));
                }
            }
        }
        Ok(asked)
    }
}

/// The query of `GET /api/v1/aggregates`: `metric` (required), `city`, `domain` and `device` to
/// narrow it, `from` and `to` (default: the 24 hours up to now), `every` (the bucket width,
/// default `1h`), `fn` (some of `mean,min,max,count,sum`, default all) and `group_by=device`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
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

/// A checked aggregates request: the metric's catalogue entry, the bucket width, the functions
/// asked for, and the store query.
#[derive(Debug)]
struct Request {
    spec: &'static MetricSpec,
    every: Duration,
    functions: Functions,
    query: AggregateQuery,
}

impl Request {
    /// `p` checked, parameter by parameter in this order: `metric`, `every`, `from`/`to`, the
    /// number of buckets, `fn`, `group_by`, `city`, `domain`. The first bad one is the 400.
    fn parse(p: AggregateParams) -> Result<Request, ApiError> {
        let spec = metric_spec(p.metric.as_deref())?;
        let every = params::parse_every(p.every.as_deref().unwrap_or("1h"))?;
        let (from, to) = params::time_range(
            p.from.as_deref(),
            p.to.as_deref(),
            Duration::from_secs(86_400),
            Duration::from_secs(366 * 86_400),
        )?;
        check_bucket_count(from, to, every)?;
        let functions = Functions::parse(p.functions.as_deref())?;
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
        Ok(Request {
            spec,
            every,
            functions,
            query,
        })
    }

    /// The answer of this request, of the store's `buckets`.
    fn answer(self, buckets: Vec<Bucket>) -> Aggregates {
        let group_by_device = self.query.group_by_device;
        Aggregates {
            metric: self.spec.name,
            unit: self.spec.unit,
            every: humantime::format_duration(self.every).to_string(),
            timezone: "+07:00",
            from: self.query.from,
            to: self.query.to,
            buckets: buckets
                .into_iter()
                .map(|b| BucketRow::new(b, self.functions, group_by_device))
                .collect(),
        }
    }
}

/// The catalogue entry of a `metric` parameter, which must be present and a canonical name
/// (an alias such as `PM2.5` is a 400 too).
fn metric_spec(metric: Option<&str>) -> Result<&'static MetricSpec, ApiError> {
    let Some(metric) = metric else {
        return Err(ApiError::bad("metric is required (e.g. metric=pm25)"));
    };
    catalog::lookup(metric)
        .filter(|s| s.name == metric)
        .ok_or_else(|| {
            ApiError::bad(format!(
                "unknown metric {metric:?}: use a canonical metric name (see README)"
            ))
        })
}

/// A 400 when `[from, to)` at `every` makes more than [`MAX_BUCKETS`] buckets.
fn check_bucket_count(from: Timestamp, to: Timestamp, every: Duration) -> Result<(), ApiError> {
    let span_ms = (to.as_millisecond() - from.as_millisecond()) as u64;
    if span_ms / every.as_millis() as u64 > MAX_BUCKETS {
        return Err(ApiError::bad(format!(
            "that range at every={} makes more than {MAX_BUCKETS} buckets; use a larger every",
            humantime::format_duration(every)
        )));
    }
    Ok(())
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
    caller: Caller,
    ApiQuery(p): ApiQuery<AggregateParams>,
) -> ApiResult<Aggregates> {
    let request = Request::parse(p)?;
    visible_city(&caller, request.query.city)?;
    let buckets = visible_buckets(&state, &caller, &request.query).await?;
    Ok(Json(request.answer(buckets)))
}

/// The buckets of `query` over the caller's cities only. A device of a city the caller may not
/// see has no buckets, as an unknown one; without a city or a device, each city the caller sees
/// is asked for and their buckets combined.
async fn visible_buckets(
    state: &ApiState,
    caller: &Caller,
    query: &AggregateQuery,
) -> Result<Vec<Bucket>, ApiError> {
    if let Some(id) = &query.device_id {
        let filter = DeviceFilter {
            device_id: Some(id.clone()),
            ..DeviceFilter::default()
        };
        let devices = state.store.devices(&filter).await?;
        if devices.iter().any(|d| !caller.sees(d.city)) {
            return Ok(Vec::new());
        }
    }
    let Some(cities) = caller.cities.filter().filter(|_| query.city.is_none()) else {
        return Ok(state.store.aggregates(query).await?);
    };
    let mut buckets = Vec::new();
    for city in cities {
        let one = AggregateQuery {
            city: Some(city),
            ..query.clone()
        };
        buckets.extend(state.store.aggregates(&one).await?);
    }
    Ok(combine(buckets, query.group_by_device))
}

/// Buckets of several cities as one answer: by device, side by side in the store's order
/// (time, then device); otherwise each interval's buckets merged into one.
fn combine(mut buckets: Vec<Bucket>, group_by_device: bool) -> Vec<Bucket> {
    buckets.sort_by(|a, b| (a.bucket_start, &a.device_id).cmp(&(b.bucket_start, &b.device_id)));
    if group_by_device {
        return buckets;
    }
    let mut out: Vec<Bucket> = Vec::with_capacity(buckets.len());
    for b in buckets {
        match out.last_mut() {
            Some(last) if last.bucket_start == b.bucket_start => {
                last.count += b.count;
                last.sum += b.sum;
                last.min = last.min.min(b.min);
                last.max = last.max.max(b.max);
                last.mean = last.sum / last.count as f64;
            }
            _ => out.push(b),
        }
    }
    out
}
