//! `/api/v1/aqi`: VN_AQI per Decision 1459/QĐ-TCMT for air stations — the hourly (NowCast)
//! indices of a local day and its daily index, with sub-indices, dominant pollutant, category
//! and colour.

use axum::{Json, extract::State};
use jiff::{Timestamp, civil};
use serde::Deserialize;
use serde_json::{Value, json};

use super::{
    ApiState,
    error::{ApiError, ApiQuery, ApiResult},
    params::local_tz,
};
use crate::{
    aqi::{self, HourlyMeans, Pollutant},
    model::Domain,
    store::{DeviceFilter, StoreError},
};

const HOUR_MS: i64 = 3_600_000;

/// Hourly means of the AQI pollutants of `station` over `[from, to)`.
async fn means(
    state: &ApiState,
    station: &str,
    from: Timestamp,
    to: Timestamp,
) -> Result<HourlyMeans, StoreError> {
    let metrics: Vec<&'static str> = Pollutant::ALL.iter().map(|p| p.metric()).collect();
    let rows = state
        .store
        .hourly_means(station, &metrics, from, to)
        .await?;
    let mut means = HourlyMeans::new();
    for row in rows {
        if let Some(p) = Pollutant::from_metric(&row.metric) {
            means.insert(p, row.hour_start_ms, row.mean);
        }
    }
    Ok(means)
}

/// The query of `GET /api/v1/aqi`: `station` (an air station's id; default every air station)
/// and `date` (a local day, `YYYY-MM-DD`; default today at UTC+7).
#[derive(Debug, Deserialize)]
pub struct AqiParams {
    station: Option<String>,
    date: Option<String>,
}

/// `GET /api/v1/aqi`: the VN_AQI of a local day per air station, its daily index and 24 hourly
/// (NowCast) indices with sub-indices, dominant pollutant, category and colour, computed from
/// the hourly means of `measuring` readings. A 400 for a `date` that is not `YYYY-MM-DD` or a
/// `station` that is not an air-quality station; a 404 for an unknown `station`.
pub async fn aqi(
    State(state): State<ApiState>,
    ApiQuery(p): ApiQuery<AqiParams>,
) -> ApiResult<Value> {
    let tz = local_tz();
    let date = match p.date.as_deref() {
        Some(s) => s.parse::<civil::Date>().map_err(|e| {
            ApiError::bad(format!("date={s:?} is not a date (YYYY-MM-DD, local): {e}"))
        })?,
        None => Timestamp::now().to_zoned(tz.clone()).date(),
    };
    let filter = DeviceFilter {
        city: None,
        domain: Some(Domain::AirQuality),
        device_id: p.station.clone(),
    };
    let stations = state.store.devices(&filter).await?;
    if let Some(id) = &p.station
        && stations.is_empty()
    {
        let all = state
            .store
            .devices(&DeviceFilter {
                device_id: Some(id.clone()),
                ..filter
            })
            .await?;
        return Err(match all.first() {
            Some(_) => ApiError::bad(format!("{id} is not an air-quality station")),
            None => ApiError::NotFound(format!("no station {id:?}")),
        });
    }
    let day_start = date
        .to_zoned(tz)
        .map_err(|e| ApiError::bad(format!("date {date}: {e}")))?
        .timestamp();
    // NowCast reaches 12 hours back, the 8-hour O3 mean 7: fetch from noon the day before.
    let from = Timestamp::from_millisecond(day_start.as_millisecond() - 12 * HOUR_MS)
        .map_err(|e| ApiError::bad(e.to_string()))?;
    let to = Timestamp::from_millisecond(day_start.as_millisecond() + 24 * HOUR_MS)
        .map_err(|e| ApiError::bad(e.to_string()))?;
    let mut out = Vec::new();
    for station in stations {
        let means = means(&state, &station.device_id, from, to).await?;
        out.push(json!({
            "station": station.device_id,
            "name": station.name,
            "city": station.city,
            "location": station.location,
            "date": date.to_string(),
            "daily": aqi::daily(&means, date),
            "hourly": aqi::hourly_series(&means, date),
        }));
    }
    Ok(Json(json!({
        "method": "VN_AQI (QĐ 1459/QĐ-TCMT)",
        "timezone": "+07:00",
        "date": date.to_string(),
        "stations": out,
    })))
}
