//! One city's part of the overview: feed health, devices by presence, readings in the last
//! hour, VN_AQI per air station, river levels against flood alarm levels, firing alerts,
//! traffic and lighting. Each part is one type of the answer and one step here.

use std::{cmp::Reverse, collections::BTreeMap, time::Duration};

use jiff::Timestamp;
use serde::Serialize;

use crate::{
    api::{
        ApiState,
        devices::{DeviceView, view},
    },
    aqi::AqiResult,
    health::{FeedHealth, Presence, feed_health, silence_threshold},
    model::{City, Domain},
    stats::FeedSnapshot,
    store::{AlertFilter, AlertRow, CitySummary, DeviceFilter, DeviceRow, StoreError},
};

/// At most this many air stations and river gauges per city in the overview, worst first.
const OVERVIEW_LIST_MAX: usize = 50;

/// One city in `/api/v1/overview` (and, with the snapshot's `generated_at`, the answer of
/// `/api/v1/cities/{city}`): what its wall screen shows.
#[derive(Debug, Serialize)]
pub struct CityOverview {
    pub city: City,
    /// The city's name in Vietnamese.
    pub name: &'static str,
    pub feed_status: FeedStatus,
    pub feeds: Vec<FeedLine>,
    pub devices: DeviceCounts,
    /// Readings observed in the last hour (by whole minutes).
    pub readings_last_hour: i64,
    /// The air stations, highest latest hourly index first (those without one last), at most
    /// 50; every station is in `/api/v1/devices` and `/api/v1/aqi`.
    pub air_quality: Vec<AirStation>,
    /// How many air stations the city has, listed or not.
    pub air_quality_stations: usize,
    /// Air stations per category of their latest hourly index (`unknown` without one).
    pub air_quality_categories: BTreeMap<String, usize>,
    /// The river gauges, highest alarm level first, then closest to the next one; at most 50.
    pub water_levels: Vec<WaterLevel>,
    /// How many river gauges (devices with a water level) the city has, listed or not.
    pub water_gauges: usize,
    pub traffic: Traffic,
    pub lighting: Lighting,
    /// The city's firing alerts, at most 100.
    pub active_alerts: Vec<ActiveAlert>,
}

/// The health of a city's feeds together: `healthy` when every feed is, `degraded` when some
/// are, `down` when none is, `no_feed` when the city has none.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum FeedStatus {
    NoFeed,
    Healthy,
    Degraded,
    Down,
}

impl FeedStatus {
    fn of(healths: &[FeedHealth]) -> FeedStatus {
        if healths.is_empty() {
            FeedStatus::NoFeed
        } else if healths.iter().all(|h| *h == FeedHealth::Healthy) {
            FeedStatus::Healthy
        } else if healths.contains(&FeedHealth::Healthy) {
            FeedStatus::Degraded
        } else {
            FeedStatus::Down
        }
    }
}

/// One feed of the city: its health, connection, last message and rate.
#[derive(Debug, Serialize)]
pub struct FeedLine {
    pub feed: String,
    pub health: FeedHealth,
    pub connected: bool,
    pub last_message_at: Option<Timestamp>,
    pub rate_per_s: f64,
}

/// The city's devices by presence; `total` is their sum.
#[derive(Debug, Serialize)]
pub struct DeviceCounts {
    pub total: usize,
    pub online: usize,
    pub offline: usize,
    pub never_seen: usize,
}

impl DeviceCounts {
    fn of(devices: &[DeviceView]) -> DeviceCounts {
        let count = |p: Presence| devices.iter().filter(|d| d.state == p).count();
        DeviceCounts {
            total: devices.len(),
            online: count(Presence::Online),
            offline: count(Presence::Offline),
            never_seen: count(Presence::Never),
        }
    }
}

/// An air station and its latest hourly VN_AQI (`null` when none can be computed).
#[derive(Debug, Serialize)]
pub struct AirStation {
    pub station: String,
    pub name: Option<String>,
    pub online: bool,
    pub aqi: Option<AqiResult>,
}

/// A river gauge: its latest level and when it was observed, its flood alarm levels (BĐ1–BĐ3,
/// metres), the highest reached (`alarm_level` 0 and `alarm` `normal` below BĐ1, else `BĐn`) and
/// how far the next one is (`null` past the last).
#[derive(Debug, Serialize)]
pub struct WaterLevel {
    pub device: String,
    pub name: Option<String>,
    pub level_m: f64,
    pub observed_at: Timestamp,
    pub online: bool,
    pub flood_levels_m: Vec<f64>,
    pub alarm_level: usize,
    pub alarm: String,
    pub to_next_level_m: Option<f64>,
}

/// The city's traffic counters: how many, how many online, the vehicles of their latest
/// intervals together, and their mean latest speed (`null` when none has one).
#[derive(Debug, Serialize)]
pub struct Traffic {
    pub counters: usize,
    pub online: usize,
    pub vehicles_latest_interval: f64,
    pub average_speed_kmh: Option<f64>,
}

/// The city's lighting devices: how many, how many online, on (latest power state), at fault
/// (latest status), and their latest power together, in watts.
#[derive(Debug, Serialize)]
pub struct Lighting {
    pub devices: usize,
    pub online: usize,
    pub on: usize,
    pub faults: usize,
    pub power_w: f64,
}

/// A firing alert, and whether someone acknowledged it.
#[derive(Debug, Serialize)]
pub struct ActiveAlert {
    pub id: i64,
    pub rule: String,
    pub severity: String,
    pub subject: String,
    pub summary: String,
    pub starts_at: Timestamp,
    pub acknowledged: bool,
}

impl From<AlertRow> for ActiveAlert {
    fn from(a: AlertRow) -> ActiveAlert {
        ActiveAlert {
            id: a.id,
            rule: a.rule,
            severity: a.severity,
            subject: a.subject,
            summary: a.summary,
            starts_at: a.starts_at,
            acknowledged: a.acked_by.is_some(),
        }
    }
}

/// What the summaries of all cities share: one read of the devices and of the counts.
pub(super) struct Inputs {
    devices: Vec<DeviceRow>,
    readings_last_hour: Vec<CitySummary>,
}

impl Inputs {
    pub(super) async fn read(state: &ApiState, now: Timestamp) -> Result<Inputs, StoreError> {
        Ok(Inputs {
            devices: state.store.devices(&DeviceFilter::default()).await?,
            readings_last_hour: state.store.city_summary(now).await?,
        })
    }

    /// The devices of `city`, taken out of the shared list rather than partitioned into two new
    /// ones: copying the 15,000 rows into fresh lists for each city, every second, faulted in
    /// new pages each time.
    fn take_devices(&mut self, city: City) -> impl Iterator<Item = DeviceRow> + '_ {
        self.devices.extract_if(.., move |d| d.city == city)
    }

    fn readings_last_hour(&self, city: City) -> i64 {
        self.readings_last_hour
            .iter()
            .find(|c| c.city == city)
            .map(|c| c.readings_last_hour)
            .unwrap_or(0)
    }
}

/// `city`'s summary at `now`, its devices taken out of `inputs`.
pub(super) async fn summary(
    state: &ApiState,
    city: City,
    inputs: &mut Inputs,
    now: Timestamp,
) -> Result<CityOverview, StoreError> {
    let devices: Vec<DeviceView> = inputs
        .take_devices(city)
        .map(|d| view(d, state, now))
        .collect();
    let feeds = feeds(state, city, now);
    let healths: Vec<FeedHealth> = feeds.iter().map(|f| f.health).collect();
    let air = AirQuality::of(state, &devices, now).await?;
    let water = water_levels(&devices);
    Ok(CityOverview {
        city,
        name: city.display_name(),
        feed_status: FeedStatus::of(&healths),
        feeds,
        devices: DeviceCounts::of(&devices),
        readings_last_hour: inputs.readings_last_hour(city),
        air_quality: air.listed,
        air_quality_stations: air.stations,
        air_quality_categories: air.categories,
        water_gauges: water.len(),
        water_levels: worst_gauges(water),
        traffic: traffic(&devices),
        lighting: lighting(&devices),
        active_alerts: active_alerts(state, city).await?,
    })
}

/// The feeds of `city`, in configuration order, with their health at `now`.
fn feeds(state: &ApiState, city: City, now: Timestamp) -> Vec<FeedLine> {
    let silence = silence_threshold(&state.config.ingest);
    state
        .config
        .feeds
        .iter()
        .zip(state.feeds.iter())
        .filter(|(cfg, _)| cfg.city == city)
        .map(|(cfg, stats)| feed_line(&cfg.name, stats.snapshot(), now, silence))
        .collect()
}

fn feed_line(name: &str, s: FeedSnapshot, now: Timestamp, silence: Duration) -> FeedLine {
    FeedLine {
        feed: name.to_owned(),
        health: feed_health(&s, now, silence),
        connected: s.connected,
        last_message_at: s.last_message_at,
        rate_per_s: s.rate_per_s,
    }
}

/// A city's air stations: those listed (worst first, at most [`OVERVIEW_LIST_MAX`]), how many
/// there are, and how many per category.
struct AirQuality {
    listed: Vec<AirStation>,
    stations: usize,
    categories: BTreeMap<String, usize>,
}

impl AirQuality {
    async fn of(
        state: &ApiState,
        devices: &[DeviceView],
        now: Timestamp,
    ) -> Result<AirQuality, StoreError> {
        let mut air = Vec::new();
        let mut categories = BTreeMap::new();
        for d in devices
            .iter()
            .filter(|d| d.device.domain == Domain::AirQuality)
        {
            let aqi = state
                .store
                .latest_hourly_aqi(&d.device.device_id, now)
                .await?;
            *categories.entry(category_name(aqi.as_ref())).or_default() += 1;
            air.push((aqi, d));
        }
        let stations = air.len();
        // Worst first, and only as many as a wall screen shows: a large fleet would otherwise
        // make every poll megabytes. Only those shown are written out (at 15,000 stations,
        // writing all cost 2 % of the aggregator's CPU).
        air.sort_by_key(|(aqi, _)| Reverse(aqi.as_ref().map(|a| a.aqi)));
        air.truncate(OVERVIEW_LIST_MAX);
        let listed = air
            .into_iter()
            .map(|(aqi, d)| AirStation {
                station: d.device.device_id.clone(),
                name: d.device.name.clone(),
                online: d.online,
                aqi,
            })
            .collect();
        Ok(AirQuality {
            listed,
            stations,
            categories,
        })
    }
}

/// An index's category as the API writes it (`good`, `moderate`, …), `unknown` without one.
fn category_name(aqi: Option<&AqiResult>) -> String {
    aqi.map_or("unknown".to_owned(), |a| {
        serde_json::to_value(a.category)
            .ok()
            .and_then(|v| v.as_str().map(str::to_owned))
            .unwrap_or_default()
    })
}

fn latest(d: &DeviceView, metric: &str) -> Option<(f64, Timestamp)> {
    d.device
        .latest
        .iter()
        .find(|l| &*l.metric == metric)
        .map(|l| (l.value, l.observed_at))
}

/// River gauges (devices with a water level) with their level and the highest flood alarm
/// level reached, in the devices' order.
fn water_levels(devices: &[DeviceView]) -> Vec<WaterLevel> {
    devices
        .iter()
        .filter_map(|d| {
            let (level, at) = latest(d, "water_level")?;
            let levels = &d.device.flood_levels;
            let reached = levels.iter().filter(|l| level >= **l).count();
            Some(WaterLevel {
                device: d.device.device_id.clone(),
                name: d.device.name.clone(),
                level_m: level,
                observed_at: at,
                online: d.online,
                flood_levels_m: levels.clone(),
                alarm_level: reached,
                alarm: match reached {
                    0 => "normal".to_owned(),
                    n => format!("BĐ{n}"),
                },
                to_next_level_m: levels.get(reached).map(|l| l - level),
            })
        })
        .collect()
}

/// The [`OVERVIEW_LIST_MAX`] worst `gauges`: highest alarm level first, then closest to the
/// next level (a gauge past its last level counting as farthest from it).
fn worst_gauges(mut gauges: Vec<WaterLevel>) -> Vec<WaterLevel> {
    let margin = |g: &WaterLevel| {
        g.to_next_level_m
            .filter(|m| m.is_finite())
            .unwrap_or(f64::INFINITY)
    };
    gauges.sort_by(|a, b| {
        b.alarm_level
            .cmp(&a.alarm_level)
            .then(margin(a).total_cmp(&margin(b)))
    });
    gauges.truncate(OVERVIEW_LIST_MAX);
    gauges
}

/// The city's firing alerts, at most 100, as the store lists them.
async fn active_alerts(state: &ApiState, city: City) -> Result<Vec<ActiveAlert>, StoreError> {
    let filter = AlertFilter {
        state: Some("firing".into()),
        city: Some(city.as_str().into()),
        severity: None,
        limit: 100,
    };
    let alerts = state.store.alerts(&filter).await?;
    Ok(alerts.into_iter().map(ActiveAlert::from).collect())
}

fn traffic(devices: &[DeviceView]) -> Traffic {
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
    Traffic {
        counters: counters.len(),
        online: counters.iter().filter(|d| d.online).count(),
        vehicles_latest_interval: vehicles,
        average_speed_kmh: (!speeds.is_empty())
            .then(|| speeds.iter().sum::<f64>() / speeds.len() as f64),
    }
}

fn lighting(devices: &[DeviceView]) -> Lighting {
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
    Lighting {
        devices: lights.len(),
        online: lights.iter().filter(|d| d.online).count(),
        on,
        faults,
        power_w: power,
    }
}
