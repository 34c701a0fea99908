//! `/api/v1/devices`: the device list with latest values and online state, one device, and one
//! device's series.

use std::{sync::Arc, time::Duration};

use axum::{
    Json,
    extract::{Path, State},
};
use jiff::Timestamp;
use serde::{Deserialize, Serialize};

use super::auth::visible_city;
use super::error::NoParams;
use super::{
    ApiState,
    error::{ApiError, ApiQuery, ApiResult},
    params,
};
use crate::auth::Caller;
use crate::health::{self, Presence};
use crate::store::{DeviceFilter, DeviceRow, Point};

/// A device with its online state, as the API shows it.
#[derive(Debug, Serialize)]
pub struct DeviceView {
    #[serde(flatten)]
    pub device: DeviceRow,
    pub state: Presence,
    pub online: bool,
    /// How long without data makes this device offline.
    pub offline_after_ms: i64,
}

/// `device` with its presence at `now` (see `health`).
pub fn view(device: DeviceRow, state: &ApiState, now: Timestamp) -> DeviceView {
    let offline_after = health::offline_after(&device, &state.config.ingest);
    let presence = health::presence(device.last_seen, offline_after, now);
    DeviceView {
        device,
        state: presence,
        online: presence == Presence::Online,
        offline_after_ms: offline_after.as_millis() as i64,
    }
}

/// The answer of `/api/v1/devices`: the devices selected, in the store's order, and how many.
#[derive(Debug, Serialize)]
pub struct DeviceList {
    pub count: usize,
    pub devices: Vec<DeviceView>,
}

/// The answer of `/api/v1/devices/{id}/series`: the device's readings of `metric` in
/// `[from, to)`, oldest first, in `unit` (the metric's canonical unit), and how many.
#[derive(Debug, Serialize)]
pub struct Series {
    pub device_id: String,
    pub metric: String,
    pub unit: Arc<str>,
    pub from: Timestamp,
    pub to: Timestamp,
    pub count: usize,
    pub points: Vec<Point>,
}

/// The query of `GET /api/v1/devices`: `city`, `domain` and `status` (`online`, `offline` or
/// `never`), each optional.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListParams {
    city: Option<String>,
    domain: Option<String>,
    status: Option<String>,
}

/// `GET /api/v1/devices`: the devices selected, by city, domain and id, each with its latest
/// values, when it was last seen and its presence (online, offline or never seen, from its
/// expected cadence), and their count. A 400 for an unknown `city`, `domain` or `status`.
pub async fn list(
    State(state): State<ApiState>,
    caller: Caller,
    ApiQuery(p): ApiQuery<ListParams>,
) -> ApiResult<DeviceList> {
    let city = p.city.as_deref().map(params::parse_city).transpose()?;
    let filter = DeviceFilter {
        city: visible_city(&caller, city)?,
        domain: p.domain.as_deref().map(params::parse_domain).transpose()?,
        device_id: None,
    };
    let wanted = p.status.as_deref().map(parse_status).transpose()?;
    let now = Timestamp::now();
    let devices: Vec<DeviceView> = state
        .store
        .devices(&filter)
        .await?
        .into_iter()
        .filter(|d| caller.sees(d.city))
        .map(|d| view(d, &state, now))
        .filter(|d| wanted.is_none_or(|w| d.state == w))
        .collect();
    Ok(Json(DeviceList {
        count: devices.len(),
        devices,
    }))
}

/// A `status` parameter: `online`, `offline` or `never`; anything else is a 400.
fn parse_status(s: &str) -> Result<Presence, ApiError> {
    match s {
        "online" => Ok(Presence::Online),
        "offline" => Ok(Presence::Offline),
        "never" => Ok(Presence::Never),
        other => Err(ApiError::bad(format!(
            "status={other:?}: expected online, offline or never"
        ))),
    }
}

/// The device `id`; a 404 when there is none or the caller may not see its city (the same
/// answer, so that a token cannot learn which ids exist elsewhere).
async fn find(state: &ApiState, caller: &Caller, id: &str) -> Result<DeviceRow, ApiError> {
    let filter = DeviceFilter {
        city: None,
        domain: None,
        device_id: Some(id.to_owned()),
    };
    state
        .store
        .devices(&filter)
        .await?
        .into_iter()
        .find(|d| caller.sees(d.city))
        .ok_or_else(|| ApiError::NotFound(format!("no device {id:?}")))
}

/// `GET /api/v1/devices/{id}`: one device, as the list shows it. A 404 for an unknown id.
pub async fn one(
    State(state): State<ApiState>,
    caller: Caller,
    _: ApiQuery<NoParams>,
    Path(id): Path<String>,
) -> ApiResult<DeviceView> {
    let device = find(&state, &caller, &id).await?;
    Ok(Json(view(device, &state, Timestamp::now())))
}

/// The query of `GET /api/v1/devices/{id}/series`: `metric` (required), `from` and `to`
/// (default: the 24 hours up to now) and `limit` (default 10,000).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SeriesParams {
    metric: Option<String>,
    from: Option<String>,
    to: Option<String>,
    limit: Option<u32>,
}

/// `GET /api/v1/devices/{id}/series`: the device's readings of `metric` in `[from, to)`, of
/// every status, oldest first and at most `limit`, with the metric's unit. A 404 for an unknown
/// device; a 400 for a missing `metric` or one the device has no value of (the message lists
/// those it has), a bad `from`/`to` (unparsable, not in order, or more than 366 days apart), or
/// a `limit` that is not a number from 1 to 100,000.
pub async fn series(
    State(state): State<ApiState>,
    caller: Caller,
    Path(id): Path<String>,
    ApiQuery(p): ApiQuery<SeriesParams>,
) -> ApiResult<Series> {
    let device = find(&state, &caller, &id).await?;
    let (metric, unit) = metric_of(&id, &device, p.metric)?;
    let (from, to) = params::time_range(
        p.from.as_deref(),
        p.to.as_deref(),
        Duration::from_secs(86_400),
        Duration::from_secs(366 * 86_400),
    )?;
    let limit = params::limit(p.limit, 10_000, 100_000)?;
    let points = state.store.series(&id, &metric, from, to, limit).await?;
    Ok(Json(Series {
        device_id: id,
        metric,
        unit,
        from,
        to,
        count: points.len(),
        points,
    }))
}

/// The `metric` asked of device `id` and its unit: a 400 when it is missing or the device has
/// no value of it, listing the metrics it has.
fn metric_of(
    id: &str,
    device: &DeviceRow,
    metric: Option<String>,
) -> Result<(String, Arc<str>), ApiError> {
    let metrics: Vec<&str> = device.latest.iter().map(|l| &*l.metric).collect();
    let Some(metric) = metric else {
        return Err(ApiError::bad(format!(
            "metric is required; device {id} has: {}",
            metrics.join(", ")
        )));
    };
    match device.latest.iter().find(|l| *l.metric == *metric) {
        Some(latest) => Ok((metric, Arc::clone(&latest.unit))),
        None => Err(ApiError::bad(format!(
            "device {id} has no metric {metric:?}; it has: {}",
            metrics.join(", ")
        ))),
    }
}
