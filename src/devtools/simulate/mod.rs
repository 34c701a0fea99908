//! The simulator of the three IOCs: every catalogued device publishes realistic readings in
//! its city's own format — Thái Nguyên vendor JSON, Sông Công SenML, Phổ Yên NGSI-LD — plus an
//! occasional malformed message, so the zero-setup default shows the whole pipeline working.

mod config;
pub(crate) mod formats;
mod profiles;
mod samples;

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
use samples::Moment;

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
        let m = Moment {
            t,
            n: state.noise,
            minutes,
        };
        let id = state.device.id.clone();
        let measuring = |samples| (samples, "measuring");
        match state.device.domain {
            Domain::AirQuality => samples::air_quality(&id, m),
            Domain::Water if !state.device.flood_levels.is_empty() => {
                measuring(samples::river_gauge(state.device.flood_levels[0], &id, m))
            }
            Domain::Water if id.contains("WQ") => measuring(samples::water_quality(m)),
            Domain::Water => measuring(samples::water_level_and_rain(m, &mut self.rng)),
            Domain::Weather => measuring(samples::weather(m, &mut self.rng)),
            Domain::Traffic => measuring(samples::traffic(&id, m)),
            Domain::Lighting | Domain::Energy => samples::lighting(state, &id, m, &mut self.rng),
        }
    }
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
    let (client, poller) = connect(&config, cancel.clone())?;
    let devices = simulated(&devices);
    info!(broker = %config.broker, devices = devices.len(), interval = ?config.interval, "Simulator publishing.");
    let mut generator = Generator::new(config.seed, &devices, config.malformed_ratio);
    let result = async {
        if !config.backfill.is_zero() {
            backfill(&client, &mut generator, config.backfill, &cancel).await?;
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

/// The simulator's MQTT client, and the task polling its connection (reconnecting after a
/// second on failure) until `cancel`.
fn connect(
    config: &SimulatorConfig,
    cancel: CancellationToken,
) -> anyhow::Result<(AsyncClient, tokio::task::JoinHandle<()>)> {
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
    let poller = tokio::spawn(async move {
        loop {
            tokio::select! {
                _ = cancel.cancelled() => break,
                event = eventloop.poll() => if let Err(e) = event {
                    warn!(error = %e, "Simulator connection failed; retrying.");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
            }
        }
    });
    Ok((client, poller))
}

/// Publish the last `span` of history, one round of messages every five minutes, oldest
/// first, until done or cancelled.
async fn backfill(
    client: &AsyncClient,
    generator: &mut Generator,
    span: Duration,
    cancel: &CancellationToken,
) -> anyhow::Result<()> {
    const STEP: i64 = 300;
    let now = Timestamp::now().as_second();
    let mut t = (now - span.as_secs() as i64).div_euclid(STEP) * STEP;
    let mut published = 0;
    while t < now && !cancel.is_cancelled() {
        let at = Timestamp::from_second(t).context("backfill time")?;
        published += publish(client, generator.messages_at(at)).await?;
        t += STEP;
    }
    info!(messages = published, backfill = ?span, "Simulator published history.");
    Ok(())
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
