//! `/api/v1/overview` and `/api/v1/cities/{city}`: what the wall screens show per city — feed
//! health, devices online, readings in the last hour, VN_AQI per air station, river levels
//! against flood alarm levels, traffic and lighting.

use std::{
    sync::{Arc, RwLock},
    time::{Duration, Instant},
};

use axum::{
    extract::{Path, State},
    http::header,
    response::{IntoResponse, Response},
};
use bytes::Bytes;
use jiff::Timestamp;
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;
use tracing::warn;

use super::{
    ApiState,
    devices::{DeviceView, view},
    error::ApiError,
};
use crate::{
    health::{FeedHealth, Presence, feed_health, silence_threshold},
    model::{City, Domain},
    store::{AlertFilter, DeviceFilter, StoreError},
};

/// `GET /api/v1/overview`: what the wall screens show of the three cities, from the latest
/// snapshot, computed every `api.overview_refresh` (less often when computing it is slow; its
/// `generated_at` says when). It takes no parameters; it fails (500) only when there is no
/// snapshot yet and computing one fails.
pub async fn overview(State(state): State<ApiState>) -> Result<Response, ApiError> {
    let snapshot = state.overview.get(&state).await?;
    Ok(json_response(snapshot.overview.clone()))
}

/// `GET /api/v1/cities/{city}`: one city's part of the latest overview snapshot, with its
/// `generated_at`. An unknown city (not `thai-nguyen`, `song-cong` or `pho-yen`) is a 404, as it
/// is part of the path.
pub async fn city(
    State(state): State<ApiState>,
    Path(city): Path<String>,
) -> Result<Response, ApiError> {
    let city: City = city.parse().map_err(ApiError::NotFound)?;
    let snapshot = state.overview.get(&state).await?;
    let body = snapshot
        .cities
        .iter()
        .find(|(c, _)| *c == city)
        .map(|(_, b)| b.clone())
        .unwrap_or_default();
    Ok(json_response(body))
}

fn json_response(body: Bytes) -> Response {
    ([(header::CONTENT_TYPE, "application/json")], body).into_response()
}

/// The overview is what every wall screen polls, and computing it reads every device of every
/// city. So it is computed off the request path, every `api.overview_refresh`, and requests are
/// answered from the latest snapshot (its `generated_at` says when). When computing it gets
/// expensive (a very large device fleet), refreshes back off so that they never take more than
/// about a fifth of one core from ingest. A zero refresh computes it on every request.
#[derive(Debug)]
pub struct OverviewCache {
    refresh: Duration,
    latest: RwLock<Option<Arc<Snapshot>>>,
    /// One computation at a time: concurrent requests without a snapshot share it.
    computing: tokio::sync::Mutex<()>,
}

/// One computed overview: the bodies of `/api/v1/overview` and of each city's
/// `/api/v1/cities/{city}`, serialised once and served as they are until the next one.
#[derive(Debug)]
pub struct Snapshot {
    overview: Bytes,
    cities: Vec<(City, Bytes)>,
}

impl OverviewCache {
    /// An empty cache whose snapshot is recomputed every `refresh` by [`keep_fresh`]; a zero
    /// `refresh` computes the overview on every request instead. Nothing is computed until the
    /// first request or the first round of [`keep_fresh`].
    pub fn new(refresh: Duration) -> OverviewCache {
        OverviewCache {
            refresh,
            latest: RwLock::new(None),
            computing: tokio::sync::Mutex::new(()),
        }
    }

    async fn get(&self, state: &ApiState) -> Result<Arc<Snapshot>, StoreError> {
        if !self.refresh.is_zero()
            && let Some(s) = self.latest()
        {
            return Ok(s);
        }
        let _one = self.computing.lock().await;
        if !self.refresh.is_zero()
            && let Some(s) = self.latest()
        {
            return Ok(s); // computed while this request waited
        }
        self.compute(state).await
    }

    fn latest(&self) -> Option<Arc<Snapshot>> {
        self.latest
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    async fn compute(&self, state: &ApiState) -> Result<Arc<Snapshot>, StoreError> {
        let now = Timestamp::now();
        let mut inputs = inputs(state, now).await?;
        let mut cities = Vec::new();
        for city in City::ALL {
            cities.push((city, summary(state, city, &mut inputs, now).await?));
        }
        let overview = json!({
            "generated_at": now,
            "cities": cities.iter().map(|(_, v)| v).collect::<Vec<_>>(),
        });
        let snapshot = Arc::new(Snapshot {
            overview: Bytes::from(overview.to_string()),
            cities: cities
                .into_iter()
                .map(|(c, mut v)| {
                    v["generated_at"] = json!(now);
                    (c, Bytes::from(v.to_string()))
                })
                .collect(),
        });
        *self.latest.write().unwrap_or_else(|e| e.into_inner()) = Some(Arc::clone(&snapshot));
        Ok(snapshot)
    }
}

/// Keep the overview snapshot fresh until `stop` (nothing to do with a zero refresh).
pub async fn keep_fresh(state: ApiState, stop: CancellationToken) {
    let cache = Arc::clone(&state.overview);
    if cache.refresh.is_zero() {
        return;
    }
    loop {
        let started = Instant::now();
        {
            let _one = cache.computing.lock().await;
            if let Err(e) = cache.compute(&state).await {
                warn!(error = %e, "Computing the overview failed; serving the previous one.");
            }
        }
        let wait = cache.refresh.max(started.elapsed() * 4);
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = stop.cancelled() => return,
        }
    }
}

/// What the summaries of all cities share: one read of the devices and of the counts.
struct Inputs {
    devices: Vec<crate::store::DeviceRow>,
    readings_last_hour: Vec<crate::store::CitySummary>,
}

async fn inputs(state: &ApiState, now: Timestamp) -> Result<Inputs, StoreError> {
    Ok(Inputs {
        devices: state.store.devices(&DeviceFilter::default()).await?,
        readings_last_hour: state.store.city_summary(now).await?,
    })
}

async fn summary(
    state: &ApiState,
    city: City,
    inputs: &mut Inputs,
    now: Timestamp,
) -> Result<Value, StoreError> {
    // Taken out of the shared list rather than partitioned into two new ones: copying the
    // 15,000 rows into fresh lists for each city, every second, faulted in new pages each time.
    let devices: Vec<DeviceView> = inputs
        .devices
        .extract_if(.., |d| d.city == city)
        .map(|d| view(d, state, now))
        .collect();
    let readings_last_hour = inputs
        .readings_last_hour
        .iter()
        .find(|c| c.city == city)
        .map(|c| c.readings_last_hour)
        .unwrap_or(0);

    let silence = silence_threshold(&state.config.ingest);
    let feeds: Vec<Value> = state
        .config
        .feeds
        .iter()
        .zip(state.feeds.iter())
        .filter(|(cfg, _)| cfg.city == city)
        .map(|(cfg, stats)| {
            let s = stats.snapshot();
            json!({
                "feed": cfg.name,
                "health": feed_health(&s, now, silence),
                "connected": s.connected,
                "last_message_at": s.last_message_at,
                "rate_per_s": s.rate_per_s,
            })
        })
        .collect();
    let healths: Vec<FeedHealth> = state
        .config
        .feeds
        .iter()
        .zip(state.feeds.iter())
        .filter(|(cfg, _)| cfg.city == city)
        .map(|(_, s)| feed_health(&s.snapshot(), now, silence))
        .collect();
    let feed_status = if healths.is_empty() {
        "no_feed"
    } else if healths.iter().all(|h| *h == FeedHealth::Healthy) {
        "healthy"
    } else if healths.contains(&FeedHealth::Healthy) {
        "degraded"
    } else {
        "down"
    };

    let count = |p: Presence| devices.iter().filter(|d| d.state == p).count();
    let mut air = Vec::new();
    let mut categories: std::collections::BTreeMap<String, usize> = Default::default();
    for d in devices
        .iter()
        .filter(|d| d.device.domain == Domain::AirQuality)
    {
        let aqi = state
            .store
            .latest_hourly_aqi(&d.device.device_id, now)
            .await?;
        let category = aqi.as_ref().map_or("unknown".to_owned(), |a| {
            serde_json::to_value(a.category)
                .ok()
                .and_then(|v| v.as_str().map(str::to_owned))
                .unwrap_or_default()
        });
        *categories.entry(category).or_default() += 1;
        air.push((aqi, d));
    }
    let air_stations = air.len();
    // Worst first, and only as many as a wall screen shows: a large fleet would otherwise make
    // every poll megabytes. Every station is in /api/v1/devices and /api/v1/aqi. Only those
    // shown are written out (at 15,000 stations, writing all cost 2 % of the aggregator's CPU).
    air.sort_by_key(|(aqi, _)| std::cmp::Reverse(aqi.as_ref().map(|a| a.aqi)));
    air.truncate(OVERVIEW_LIST_MAX);
    let air: Vec<Value> = air
        .into_iter()
        .map(|(aqi, d)| {
            json!({
                "station": d.device.device_id,
                "name": d.device.name,
                "online": d.online,
                "aqi": aqi,
            })
        })
        .collect();
    let mut water = water_levels(&devices);
    let gauges = water.len();
    water.sort_by(|a, b| {
        let level = |v: &Value| v["alarm_level"].as_u64().unwrap_or(0);
        let margin = |v: &Value| v["to_next_level_m"].as_f64().unwrap_or(f64::INFINITY);
        level(b)
            .cmp(&level(a))
            .then(margin(a).total_cmp(&margin(b)))
    });
    water.truncate(OVERVIEW_LIST_MAX);
    let alerts: Vec<Value> = state
        .store
        .alerts(&AlertFilter {
            state: Some("firing".into()),
            city: Some(city.as_str().into()),
            severity: None,
            limit: 100,
        })
        .await?
        .into_iter()
        .map(|a| {
            json!({
                "id": a.id,
                "rule": a.rule,
                "severity": a.severity,
                "subject": a.subject,
                "summary": a.summary,
                "starts_at": a.starts_at,
                "acknowledged": a.acked_by.is_some(),
            })
        })
        .collect();
    Ok(json!({
        "city": city,
        "active_alerts": alerts,
        "name": city.display_name(),
        "feed_status": feed_status,
        "feeds": feeds,
        "devices": {
            "total": devices.len(),
            "online": count(Presence::Online),
            "offline": count(Presence::Offline),
            "never_seen": count(Presence::Never),
        },
        "readings_last_hour": readings_last_hour,
        "air_quality": air,
        "air_quality_stations": air_stations,
        "air_quality_categories": categories,
        "water_levels": water,
        "water_gauges": gauges,
        "traffic": traffic(&devices),
        "lighting": lighting(&devices),
    }))
}

/// At most this many air stations and river gauges per city in the overview, worst first.
const OVERVIEW_LIST_MAX: usize = 50;

fn latest(d: &DeviceView, metric: &str) -> Option<(f64, Timestamp)> {
    d.device
        .latest
        .iter()
        .find(|l| &*l.metric == metric)
        .map(|l| (l.value, l.observed_at))
}

/// River gauges with their level and the highest flood alarm level reached (0 = below BĐ1).
fn water_levels(devices: &[DeviceView]) -> Vec<Value> {
    devices
        .iter()
        .filter_map(|d| {
            let (level, at) = latest(d, "water_level")?;
            let levels = &d.device.flood_levels;
            let reached = levels.iter().filter(|l| level >= **l).count();
            let next = levels.get(reached).map(|l| l - level);
            Some(json!({
                "device": d.device.device_id,
                "name": d.device.name,
                "level_m": level,
                "observed_at": at,
                "online": d.online,
                "flood_levels_m": levels,
                "alarm_level": reached,
                "alarm": match reached { 0 => "normal".to_owned(), n => format!("BĐ{n}") },
                "to_next_level_m": next,
            }))
        })
        .collect()
}

fn traffic(devices: &[DeviceView]) -> Value {
    let counters: Vec<&DeviceView> = devices
        .iter()
        .filter(|d| d.device.domain == Domain::Traffic)
        .collect();
    let vehicles: f64 = counters
        .iter()
        .filter_map(|d| latest(d, "vehicle_count"))
        .map(|v| v.0)
        .sum();
    let speeds: Vec<f64> = counters
        .iter()
        .filter_map(|d| latest(d, "average_speed"))
        .map(|v| v.0)
        .collect();
    json!({
        "counters": counters.len(),
        "online": counters.iter().filter(|d| d.online).count(),
        "vehicles_latest_interval": vehicles,
        "average_speed_kmh": (!speeds.is_empty()).then(|| speeds.iter().sum::<f64>() / speeds.len() as f64),
    })
}

fn lighting(devices: &[DeviceView]) -> Value {
    let lights: Vec<&DeviceView> = devices
        .iter()
        .filter(|d| d.device.domain == Domain::Lighting)
        .collect();
    let on = lights
        .iter()
        .filter(|d| latest(d, "power_state").is_some_and(|v| v.0 >= 0.5))
        .count();
    let faults = lights
        .iter()
        .filter(|d| d.device.last_status == Some("fault"))
        .count();
    let power: f64 = lights
        .iter()
        .filter_map(|d| latest(d, "power"))
        .map(|v| v.0)
        .sum();
    json!({
        "devices": lights.len(),
        "online": lights.iter().filter(|d| d.online).count(),
        "on": on,
        "faults": faults,
        "power_w": power,
    })
}
