//! `/api/v1/aqi`: VN_AQI per Decision 1459/QĐ-TCMT for air stations — the hourly (NowCast)
//! indices of a local day and its daily index, with sub-indices, dominant pollutant, category
//! and colour.

use axum::{Json, extract::State};
use jiff::{Timestamp, civil};
use serde::{Deserialize, Serialize};

use super::{
    ApiState,
    error::{ApiError, ApiQuery, ApiResult},
    params::local_tz,
};
use crate::{
    aqi::{self, AqiResult, HourlyMeans, Pollutant},
    auth::Caller,
    model::{City, Domain, Location},
    store::{DeviceFilter, DeviceRow, StoreError},
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

/// The answer of `/api/v1/aqi`: the method (`VN_AQI (QĐ 1459/QĐ-TCMT)`), the local offset
/// (`+07:00`), the local day, and each air station's indices of that day.
#[derive(Debug, Serialize)]
pub struct AqiAnswer {
    pub method: &'static str,
    pub timezone: &'static str,
    pub date: civil::Date,
    pub stations: Vec<StationAqi>,
}

/// One air station's VN_AQI of a local day: its daily index (`null` when fewer than 18 hours of
/// a pollutant were measured) and the hourly (NowCast) indices that can be computed, in order
/// (empty without data).
#[derive(Debug, Serialize)]
pub struct StationAqi {
    pub station: String,
    pub name: Option<String>,
    pub city: City,
    pub location: Option<Location>,
    pub date: civil::Date,
    pub daily: Option<AqiResult>,
    pub hourly: Vec<AqiResult>,
}

/// The query of `GET /api/v1/aqi`: `station` (an air station's id; default every air station)
/// and `date` (a local day, `YYYY-MM-DD`; default today at UTC+7).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AqiParams {
    station: Option<String>,
    date: Option<String>,
}

/// `GET /api/v1/aqi`: the VN_AQI of a local day per air station, its daily index and 24 hourly
/// (NowCast) indices with sub-indices, dominant pollutant, category and colour, computed from
/// the hourly means of `measuring` readings, for the caller's cities. A 400 for a `date` that
/// is not `YYYY-MM-DD` or a `station` that is a device of another domain; a 404 for a `station`
/// that is unknown or of a city the caller may not see.
pub async fn aqi(
    State(state): State<ApiState>,
    caller: Caller,
    ApiQuery(p): ApiQuery<AqiParams>,
) -> ApiResult<AqiAnswer> {
    let date = parse_date(p.date.as_deref())?;
    let stations = stations(&state, &caller, p.station).await?;
    let (from, to) = window(date)?;
    let mut out = Vec::new();
    for station in stations {
        let means = means(&state, &station.device_id, from, to).await?;
        out.push(StationAqi {
            daily: aqi::daily(&means, date),
            hourly: aqi::hourly_series(&means, date),
            station: station.device_id,
            name: station.name,
            city: station.city,
            location: station.location,
            date,
        });
    }
    Ok(Json(AqiAnswer {
        method: "VN_AQI (QĐ 1459/QĐ-TCMT)",
        timezone: "+07:00",
        date,
        stations: out,
    }))
}

/// A `date` parameter, `YYYY-MM-DD` (a 400 otherwise); absent, today at UTC+7.
fn parse_date(date: Option<&str>) -> Result<civil::Date, ApiError> {
    match date {
        Some(s) => s.parse::<civil::Date>().map_err(|e| {
            ApiError::bad(format!("date={s:?} is not a date (YYYY-MM-DD, local): {e}"))
        }),
        None => Ok(Timestamp::now().to_zoned(local_tz()).date()),
    }
}

/// The air stations asked for, of the caller's cities: `station` alone, or every air station.
/// A `station` that is unknown or of a city the caller may not see is a 404, one of another
/// domain a 400.
async fn stations(
    state: &ApiState,
    caller: &Caller,
    station: Option<String>,
) -> Result<Vec<DeviceRow>, ApiError> {
    let filter = DeviceFilter {
        city: None,
        domain: None,
        device_id: station.clone(),
    };
    let devices = state.store.devices(&filter).await?.into_iter();
    let visible: Vec<DeviceRow> = devices.filter(|d| caller.sees(d.city)).collect();
    if let Some(id) = station {
        return match visible.into_iter().next() {
            None => Err(ApiError::NotFound(format!("no station {id:?}"))),
            Some(d) if d.domain != Domain::AirQuality => {
                Err(ApiError::bad(format!("{id} is not an air-quality station")))
            }
            Some(d) => Ok(vec![d]),
        };
    }
    Ok(visible
        .into_iter()
        .filter(|d| d.domain == Domain::AirQuality)
        .collect())
}

/// The hours whose means a local day's indices need: NowCast reaches 12 hours back, the 8-hour
/// O3 mean 7, so from noon the day before to the day's end.
fn window(date: civil::Date) -> Result<(Timestamp, Timestamp), ApiError> {
    let day_start = date
        .to_zoned(local_tz())
        .map_err(|e| ApiError::bad(format!("date {date}: {e}")))?
        .timestamp();
    let from = Timestamp::from_millisecond(day_start.as_millisecond() - 12 * HOUR_MS)
        .map_err(|e| ApiError::bad(e.to_string()))?;
    let to = Timestamp::from_millisecond(day_start.as_millisecond() + 24 * HOUR_MS)
        .map_err(|e| ApiError::bad(e.to_string()))?;
    Ok((from, to))
}
