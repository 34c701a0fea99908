//! The simulator of the three IOCs: every catalogued device publishes realistic readings in
//! its city's own format — Thái Nguyên vendor JSON, Sông Công SenML, Phổ Yên NGSI-LD — plus an
//! occasional malformed message, so the zero-setup default shows the whole pipeline working.

mod config;
pub(crate) mod formats;
mod profiles;

use std::time::Duration;

use anyhow::Context;
use jiff::Timestamp;
use rand::{Rng, SeedableRng, rngs::StdRng};
use rumqttc::{AsyncClient, MqttOptions, QoS};
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use crate::model::{City, Domain};
use crate::normalise::DeviceConfig;
use crate::source::parse_broker_url;
pub use config::SimulatorConfig;
use profiles::{LocalTime, gaussian};

/// One message ready to publish.
#[derive(Debug, Clone)]
pub struct SimMessage {
    pub topic: String,
    pub payload: Vec<u8>,
    pub device_id: String,
    /// True when deliberately broken.
    pub malformed: bool,
}

/// Per-device state that makes consecutive readings of a device coherent.
#[derive(Debug, Clone)]
struct DeviceState {
    device: DeviceConfig,
    /// AR(1) noise, multiplicative for concentrations.
    noise: f64,
    /// Lighting: cumulative energy in kWh and whether a lamp fault is active.
    energy_kwh: f64,
    fault_left: u32,
    /// Time of the previous message, for per-interval quantities.
    last: Option<Timestamp>,
}

/// Deterministic generator of the three IOCs' traffic (same seed, same data).
#[derive(Debug, Clone)]
pub struct Generator {
    rng: StdRng,
    devices: Vec<DeviceState>,
    malformed_ratio: f64,
}

/// Reported measurement of a device: canonical metric name, value, canonical unit.
pub(crate) type Sample = (&'static str, f64);

impl Generator {
    pub fn new(seed: u64, devices: &[DeviceConfig], malformed_ratio: f64) -> Generator {
        Generator {
            rng: StdRng::seed_from_u64(seed),
            devices: devices
                .iter()
                .map(|d| DeviceState {
                    device: d.clone(),
                    noise: 0.0,
                    energy_kwh: 1_000.0 + (d.id.len() as f64) * 137.0,
                    fault_left: 0,
                    last: None,
                })
                .collect(),
            malformed_ratio,
        }
    }

    /// One message per device for time `at`.
    pub fn messages_at(&mut self, at: Timestamp) -> Vec<SimMessage> {
        let mut out = Vec::with_capacity(self.devices.len());
        for i in 0..self.devices.len() {
            let (samples, status) = self.sample(i, at);
            let device = &self.devices[i].device;
            let (topic, payload) =
                formats::encode(device, at, &samples, status, formats::TimePrecision::Second);
            let (city, device_id) = (device.city, device.id.clone());
            let malformed = self.rng.random::<f64>() < self.malformed_ratio;
            let payload = if malformed {
                formats::break_payload(city, &payload, at, self.rng.random_range(0..5))
            } else {
                payload
            };
            out.push(SimMessage {
                topic,
                payload,
                device_id,
                malformed,
            });
        }
        out
    }

    /// The samples of device `i` at `at`, and its status (`measuring`, `calibrating`, `fault`).
    fn sample(&mut self, i: usize, at: Timestamp) -> (Vec<Sample>, &'static str) {
        let t = LocalTime::of(at);
        let shock = gaussian(&mut self.rng);
        let state = &mut self.devices[i];
        state.noise = 0.85 * state.noise + 0.15 * shock;
        let minutes = state
            .last
            .map(|l| (at.as_second() - l.as_second()) as f64 / 60.0)
            .filter(|m| *m > 0.0)
            .unwrap_or(5.0)
            .min(60.0);
        state.last = Some(at);
        let n = state.noise;
        let id = state.device.id.clone();
        let mut status = "measuring";
        let samples = match state.device.domain {
            Domain::AirQuality => {
                let site = if id.contains("QUANTRIEU") {
                    1.35
                } else if id.contains("YENBINH") {
                    1.15
                } else {
                    1.0
                };
                let pm25 = (profiles::pm25(t, site) * (1.0 + 0.35 * n)).max(2.0);
                // A daily zero/span check at 00:00–00:10 local: calibrating, excluded from VN_AQI.
                if t.hour < 10.0 / 60.0 {
                    status = "calibrating";
                }
                vec![
                    ("pm25", round1(pm25)),
                    ("pm10", round1(pm25 * (1.45 + 0.1 * n))),
                    (
                        "no2",
                        round1((profiles::no2(t, site) * (1.0 + 0.2 * n)).max(1.0)),
                    ),
                    ("so2", round1(12.0 * site * (1.0 + 0.3 * n).max(0.2))),
                    (
                        "co",
                        (900.0 * site * profiles::pm25(t, 1.0) / 40.0 * (1.0 + 0.2 * n).max(0.3))
                            .round(),
                    ),
                    ("o3", round1((profiles::o3(t) * (1.0 + 0.2 * n)).max(1.0))),
                    ("temperature", round1(profiles::temperature(t) + n)),
                    ("relative_humidity", round1(profiles::humidity(t) + 3.0 * n)),
                ]
            }
            Domain::Water if !state.device.flood_levels.is_empty() => {
                let bd1 = state.device.flood_levels[0];
                // Gia Bảy: normal ≈ 20.8 m, BĐ1 25.0; Chã: normal ≈ 1.2 m, BĐ1 8.0 (§3).
                let (normal, rise) = if bd1 > 20.0 { (20.8, 6.6) } else { (1.2, 8.4) };
                let phase = (id.len() * 7) as f64;
                vec![(
                    "water_level",
                    round2(profiles::river_level(t, normal, rise, phase) + 0.02 * n),
                )]
            }
            Domain::Water if id.contains("WQ") => vec![
                ("ph", round2(7.2 + 0.2 * n)),
                (
                    "dissolved_oxygen",
                    round2(6.1 - 0.8 * profiles::temperature(t) / 30.0 + 0.3 * n),
                ),
                ("turbidity", round1((35.0 + 20.0 * n).max(2.0))),
                ("conductivity", round1(210.0 + 25.0 * n)),
                ("water_temperature", round1(profiles::temperature(t) - 2.0)),
            ],
            Domain::Water => {
                let rain = profiles::rain(t, minutes, &mut self.rng);
                vec![
                    (
                        "water_level",
                        round2(profiles::river_level(t, 18.4, 3.0, 40.0) + 0.02 * n),
                    ),
                    ("rainfall", rain),
                ]
            }
            Domain::Weather => vec![
                ("rainfall", profiles::rain(t, minutes, &mut self.rng)),
                ("temperature", round1(profiles::temperature(t) + 0.5 * n)),
                ("relative_humidity", round1(profiles::humidity(t) + 2.0 * n)),
            ],
            Domain::Traffic => {
                let industrial = id.contains("YENBINH");
                let per_5 = profiles::vehicles_per_5min(t, industrial) * (1.0 + 0.15 * n);
                let count = (per_5 * minutes / 5.0).max(0.0).round();
                let speed = (48.0 - 0.06 * per_5 + 3.0 * n).clamp(8.0, 70.0);
                vec![
                    ("vehicle_count", count),
                    ("average_speed", round1(speed)),
                    ("occupancy", round1((per_5 / 6.0).clamp(1.0, 95.0))),
                ]
            }
            Domain::Lighting | Domain::Energy => {
                let cabinet = id.contains("CAB") || id.starts_with("sc-lt");
                let rated_w = if cabinet { 9_000.0 } else { 150.0 };
                let on = profiles::lights_on(t);
                if state.fault_left > 0 {
                    state.fault_left -= 1;
                } else if on && self.rng.random::<f64>() < 0.01 {
                    state.fault_left = 12;
                }
                let fault = state.fault_left > 0;
                if fault {
                    status = "fault";
                }
                let dim = profiles::dimming(t);
                let power = if on && !fault {
                    rated_w * dim / 100.0 * (1.0 + 0.02 * n)
                } else {
                    0.0
                };
                state.energy_kwh += power / 1000.0 * minutes / 60.0;
                vec![
                    ("power_state", if on { 1.0 } else { 0.0 }),
                    ("power", round1(power)),
                    ("energy", round2(state.energy_kwh)),
                    ("dimming_level", dim),
                ]
            }
        };
        (samples, status)
    }
}

fn round1(v: f64) -> f64 {
    (v * 10.0).round() / 10.0
}

fn round2(v: f64) -> f64 {
    (v * 100.0).round() / 100.0
}

/// The cities whose devices the simulator drives (each in its IOC's format).
pub fn simulated(devices: &[DeviceConfig]) -> Vec<DeviceConfig> {
    devices
        .iter()
        .filter(|d| City::ALL.contains(&d.city))
        .cloned()
        .collect()
}

/// Publish history (if `backfill` is set), then live traffic every `interval`, until cancelled.
pub async fn run(
    config: SimulatorConfig,
    devices: Vec<DeviceConfig>,
    cancel: CancellationToken,
) -> anyhow::Result<()> {
    let addr = parse_broker_url(&config.broker).map_err(anyhow::Error::msg)?;
    let mut opts = MqttOptions::new(
        format!("ioc-simulator-{}", config.seed),
        addr.host,
        addr.port,
    );
    opts.set_keep_alive(Duration::from_secs(30))
        .set_max_packet_size(1 << 20, 1 << 20);
    if let Some(user) = &config.username {
        let password = config.password.as_ref().map(|p| p.expose().to_owned());
        opts.set_credentials(user.clone(), password.unwrap_or_default());
    }
    let (client, mut eventloop) = AsyncClient::new(opts, 1_000);
    let poll_cancel = cancel.clone();
    let poller = tokio::spawn(async move {
        loop {
            tokio::select! {
                _ = poll_cancel.cancelled() => break,
                event = eventloop.poll() => if let Err(e) = event {
                    warn!(error = %e, "Simulator connection failed; retrying.");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
            }
        }
    });
    let devices = simulated(&devices);
    info!(broker = %config.broker, devices = devices.len(), interval = ?config.interval, "Simulator publishing.");
    let mut generator = Generator::new(config.seed, &devices, config.malformed_ratio);
    let result = async {
        if !config.backfill.is_zero() {
            const STEP: i64 = 300;
            let now = Timestamp::now().as_second();
            let mut t = (now - config.backfill.as_secs() as i64).div_euclid(STEP) * STEP;
            let mut published = 0;
            while t < now && !cancel.is_cancelled() {
                let at = Timestamp::from_second(t).context("backfill time")?;
                published += publish(&client, generator.messages_at(at)).await?;
                t += STEP;
            }
            info!(messages = published, backfill = ?config.backfill, "Simulator published history.");
        }
        let mut tick = tokio::time::interval(config.interval);
        loop {
            tokio::select! {
                _ = cancel.cancelled() => break,
                _ = tick.tick() => {
                    let n = publish(&client, generator.messages_at(Timestamp::now())).await?;
                    debug!(messages = n, "Simulator tick.");
                }
            }
        }
        anyhow::Ok(())
    }
    .await;
    let _ = client.try_disconnect();
    poller.abort();
    result
}

async fn publish(client: &AsyncClient, messages: Vec<SimMessage>) -> anyhow::Result<usize> {
    let n = messages.len();
    for m in messages {
        client
            .publish(m.topic, QoS::AtLeastOnce, false, m.payload)
            .await
            .context("simulator publish queue closed")?;
    }
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{config::Config, pipeline};

    fn config() -> Config {
        Config::from_toml_str(crate::config::DEFAULT_TOML).unwrap()
    }

    /// Every well-formed simulated message of every city goes through the real decoder and
    /// normaliser of its feed without a reject; every broken one is rejected.
    #[test]
    fn simulated_traffic_decodes_through_each_citys_feed() {
        let config = config();
        let mut generator = Generator::new(7, &config.devices, 0.2);
        let start: Timestamp = "2026-11-21T00:00:00Z".parse().unwrap();
        let (mut good, mut bad) = (0, 0);
        for step in 0..288 {
            let at = start + jiff::SignedDuration::from_secs(step * 300);
            for m in generator.messages_at(at) {
                let device = config.device(&m.device_id).unwrap();
                let feed = config.feeds.iter().find(|f| f.city == device.city).unwrap();
                let result = pipeline::process(
                    &feed.decoder(),
                    &config.normaliser(feed),
                    &config.ingest,
                    &m.topic,
                    &m.payload.clone().into(),
                    at,
                    at,
                );
                match (m.malformed, result) {
                    (false, Ok(n)) => {
                        good += 1;
                        assert!(
                            n.rejected.is_empty(),
                            "{} on {}: {:?}\n{}",
                            m.device_id,
                            m.topic,
                            n.rejected,
                            String::from_utf8_lossy(&m.payload)
                        );
                        assert!(
                            n.readings
                                .iter()
                                .all(|r| r.device_id == m.device_id && r.observed_at == at)
                        );
                    }
                    (true, Err(_)) => bad += 1,
                    // A malformed part of a message: the rest is stored, the part rejected.
                    (true, Ok(n)) if !n.rejected.is_empty() => bad += 1,
                    (false, Err(e)) => panic!(
                        "{} on {}: {e}\n{}",
                        m.device_id,
                        m.topic,
                        String::from_utf8_lossy(&m.payload)
                    ),
                    (true, Ok(_)) => panic!(
                        "malformed message accepted: {}",
                        String::from_utf8_lossy(&m.payload)
                    ),
                }
            }
        }
        let ratio = f64::from(bad) / f64::from(good + bad);
        assert!((0.15..0.25).contains(&ratio), "malformed ratio {ratio}");
    }

    #[test]
    fn same_seed_same_traffic() {
        let config = config();
        let at: Timestamp = "2026-11-22T01:05:00Z".parse().unwrap();
        let a = Generator::new(1, &config.devices, 0.1).messages_at(at);
        let b = Generator::new(1, &config.devices, 0.1).messages_at(at);
        assert_eq!(
            a.iter().map(|m| &m.payload).collect::<Vec<_>>(),
            b.iter().map(|m| &m.payload).collect::<Vec<_>>()
        );
    }
}
