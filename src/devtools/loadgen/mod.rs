//! Load generation for the benchmarks (`ioc-aggregator loadgen …`): publish the three IOC
//! formats at a fixed rate or as fast as the broker takes them, count what a null QoS 1
//! subscriber receives, or probe API latency at a fixed request rate. Loopback only, bounded in
//! count and time.
//!
//! - `publisher`: the publishing connection, written a round at a time;
//! - `consumers`: who counts what was published (a null subscriber, or the aggregator);
//! - `probe`: API latency at a fixed request rate.

mod consumers;
mod probe;
mod publisher;

use std::{
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use jiff::Timestamp;
use rumqttc::{AsyncClient, MqttOptions};
use serde_json::json;
use tokio_util::sync::CancellationToken;

use crate::{
    devtools::simulate::formats,
    model::{City, Domain},
    normalise::DeviceConfig,
    source::parse_broker_url,
};
use consumers::{follow_aggregator, null_subscriber};
pub use probe::probe_api;
use publisher::{PUBLISH_ROUND, Publisher};

/// The six VN_AQI pollutants, then weather, up to `readings` metrics per message.
const METRICS: [&str; 8] = [
    "pm25",
    "pm10",
    "no2",
    "so2",
    "co",
    "o3",
    "temperature",
    "relative_humidity",
];

/// Synthetic air stations: `per_city` in each city, each publishing in its city's format.
pub fn devices(per_city: usize) -> Vec<DeviceConfig> {
    City::ALL
        .into_iter()
        .flat_map(|city| {
            (0..per_city).map(move |i| DeviceConfig {
                id: format!("LG-{}-{i:04}", &city.as_str()[..2].to_uppercase()),
                city,
                domain: Domain::AirQuality,
                name: None,
                lat: 21.5,
                lon: 105.8,
                ward: None,
                position_source: "synthetic".into(),
                interval: None,
                flood_levels: Vec::new(),
                ranges: Default::default(),
            })
        })
        .collect()
}

/// One message of `device` observed at `at` with `readings` values derived from `seq`.
pub fn message(
    device: &DeviceConfig,
    at: Timestamp,
    seq: u64,
    readings: usize,
) -> (String, Vec<u8>) {
    let samples: Vec<(&'static str, f64)> = METRICS
        .iter()
        .take(readings.clamp(1, METRICS.len()))
        .enumerate()
        .map(|(k, m)| (*m, ((seq * 7 + k as u64 * 13) % 500) as f64 / 10.0 + 1.0))
        .collect();
    formats::encode(
        device,
        at,
        &samples,
        "measuring",
        formats::TimePrecision::Millisecond,
    )
}

/// QoS 1 publishes kept unacknowledged by the broker. The publisher reads acks only once this
/// window is full, so a wide one reads them in bulk: with 1,000 it woke for every few acks and
/// took 0.37 of a core in (b); with 10,000, 0.16 (BENCHMARKS.md, finding 26).
const PUBLISH_INFLIGHT: u16 = 10_000;

/// A client of the loopback broker at `broker`, with a wide in-flight window.
fn client(broker: &str, id: &str) -> anyhow::Result<(AsyncClient, rumqttc::EventLoop)> {
    let addr = parse_broker_url(broker).map_err(anyhow::Error::msg)?;
    anyhow::ensure!(
        addr.host == "127.0.0.1" || addr.host == "localhost" || addr.host == "::1",
        "load tests target loopback only (got {})",
        addr.host
    );
    let mut o = MqttOptions::new(id, addr.host, addr.port);
    o.set_keep_alive(Duration::from_secs(30))
        .set_inflight(PUBLISH_INFLIGHT)
        .set_max_packet_size(1 << 20, 1 << 20);
    Ok(AsyncClient::new(o, 10_000))
}

/// The consumed count before the consumer is ready: far ahead of anything published.
const NOT_READY: u64 = u64::MAX / 2;

/// What to publish, and how fast.
#[derive(Debug, Clone)]
pub struct PublishPlan {
    /// Messages per second; 0: as fast as the broker (and the consumer, if any) take them.
    pub rate: u64,
    pub duration: Duration,
    /// Devices per city.
    pub devices: usize,
    pub readings: usize,
    /// Pace publishing by this consumer and measure its rate.
    pub consumer: Option<Consumer>,
    /// With a consumer: at most this many messages published but not yet consumed, so the
    /// broker's backlog (and memory) stays bounded and the consumer runs at its own limit.
    /// Messages the consumer has received but not yet counted (the aggregator's queues and
    /// the batch it is committing) are inside the window too: a window not much larger than
    /// those leaves the broker with nothing to deliver while the consumer commits.
    pub window: u64,
    /// With a consumer: the start of the run that is not measured.
    pub warmup: Duration,
}

/// Who consumes what the load generator publishes.
#[derive(Debug, Clone)]
pub enum Consumer {
    /// A QoS 1 subscriber in this process that only counts: the broker's delivery limit.
    Null,
    /// The aggregator at this API base URL: messages committed (stored, duplicate or
    /// quarantined, then acked), from `/api/v1/feeds`.
    Aggregator(String),
}

impl std::str::FromStr for Consumer {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "null" => Ok(Consumer::Null),
            url if url.starts_with("http://") => {
                Ok(Consumer::Aggregator(url.trim_end_matches('/').to_owned()))
            }
            other => Err(format!(
                "expected `null` or an API base URL like http://127.0.0.1:8080, got {other:?}"
            )),
        }
    }
}

/// Publish with QoS 1 by `plan`, round-robin over the devices. Message times are the publish
/// time with millisecond precision (distinct per device), so commit − observed time is the
/// publish → queryable latency. Returns a JSON summary; with a consumer, its rate after the warm-up.
pub async fn publish(broker: &str, plan: PublishPlan) -> anyhow::Result<serde_json::Value> {
    let devices = devices(plan.devices);
    let (client, eventloop) = client(broker, &format!("ioc-loadgen-{}", std::process::id()))?;
    // A consumer sets this to 0 once it is ready to count (subscribed, or has its baseline).
    let consumed = Arc::new(AtomicU64::new(NOT_READY));
    let stop = CancellationToken::new();
    let consumer = start_consumer(broker, &plan, &consumed, &stop).await;
    let mut connection = Publisher::new(eventloop);
    let run = publish_for(&mut connection, &devices, &plan, &consumed).await?;
    let acked = finish(&client, &mut connection, run.sent).await;
    // Let the consumer catch up with what is in flight, so the summary can say nothing was lost.
    if consumer.is_some() {
        wait_until(
            || consumed.load(Ordering::Acquire) >= acked,
            Duration::from_secs(120),
        )
        .await;
    }
    stop.cancel();
    if let Some(task) = consumer {
        task.await??;
    }
    Ok(summary(
        &run,
        acked,
        &plan,
        consumed.load(Ordering::Acquire),
    ))
}

/// Start the plan's consumer, if it has one, and wait (up to 10 s) until it is ready to count.
async fn start_consumer(
    broker: &str,
    plan: &PublishPlan,
    consumed: &Arc<AtomicU64>,
    stop: &CancellationToken,
) -> Option<tokio::task::JoinHandle<anyhow::Result<()>>> {
    let task = match plan.consumer.as_ref()? {
        Consumer::Null => tokio::spawn(null_subscriber(
            broker.to_owned(),
            Arc::clone(consumed),
            stop.clone(),
        )),
        Consumer::Aggregator(api) => tokio::spawn(follow_aggregator(
            api.clone(),
            Arc::clone(consumed),
            stop.clone(),
        )),
    };
    // The subscription (or the aggregator's baseline) is in place before publishing.
    wait_until(
        || consumed.load(Ordering::Acquire) == 0,
        Duration::from_secs(10),
    )
    .await;
    Some(task)
}

/// What a publishing run did: how many messages it sent in how many seconds, and the
/// consumer's rate after the warm-up.
struct Run {
    sent: u64,
    seconds: f64,
    consumer_rate: Option<f64>,
}

/// Publish for the plan's duration: as many messages as the rate, the consumer's window and
/// the connection's in-flight window allow, a round at a time.
async fn publish_for(
    connection: &mut Publisher,
    devices: &[DeviceConfig],
    plan: &PublishPlan,
    consumed: &AtomicU64,
) -> anyhow::Result<Run> {
    let start = Instant::now();
    let mut measured: Option<(Instant, u64)> = None;
    let mut last_ms = vec![0i64; devices.len()];
    let mut sent = 0u64;
    let mut round = Vec::with_capacity(PUBLISH_ROUND);
    while start.elapsed() < plan.duration {
        if plan.consumer.is_some() && measured.is_none() && start.elapsed() >= plan.warmup {
            measured = Some((Instant::now(), consumed.load(Ordering::Acquire)));
        }
        let room = connection.room();
        let quota = quota(plan, start, sent, consumed).min(room);
        if quota == 0 {
            connection.wait(room).await;
            continue;
        }
        for _ in 0..quota {
            round.push(next_message(devices, &mut last_ms, sent, plan.readings)?);
            sent += 1;
        }
        if let Err(e) = connection.publish(round.drain(..)).await {
            // rumqttc resends what was handed over once it has reconnected (the next poll).
            tracing::warn!(error = %e, "Load generator connection failed.");
        }
    }
    Ok(Run {
        sent,
        seconds: start.elapsed().as_secs_f64(),
        consumer_rate: consumer_rate(measured, consumed),
    })
}

/// The consumer's rate since `measured` (when the warm-up ended, and its count then).
fn consumer_rate(measured: Option<(Instant, u64)>, consumed: &AtomicU64) -> Option<f64> {
    measured.map(|(t0, c0)| {
        let c1 = consumed.load(Ordering::Acquire);
        (c1 - c0) as f64 / t0.elapsed().as_secs_f64()
    })
}

/// How many messages may go now, at most a round: what the rate has made due (all of a round
/// without a rate), within the consumer's window.
fn quota(plan: &PublishPlan, start: Instant, sent: u64, consumed: &AtomicU64) -> u64 {
    let mut quota = if plan.rate == 0 {
        PUBLISH_ROUND as u64
    } else {
        let due = (start.elapsed().as_secs_f64() * plan.rate as f64) as u64;
        due.saturating_sub(sent).min(PUBLISH_ROUND as u64)
    };
    if plan.consumer.is_some() {
        let ahead = sent.saturating_sub(consumed.load(Ordering::Acquire));
        quota = quota.min(plan.window.saturating_sub(ahead));
    }
    quota
}

/// The `sent`-th message, of the next device round-robin, observed now.
fn next_message(
    devices: &[DeviceConfig],
    last_ms: &mut [i64],
    sent: u64,
    readings: usize,
) -> anyhow::Result<(String, Vec<u8>)> {
    let d = (sent % devices.len() as u64) as usize;
    // Times carry milliseconds; a device's messages never share one, or they would
    // (rightly) be deduplicated.
    let ms = Timestamp::now().as_millisecond().max(last_ms[d] + 1);
    last_ms[d] = ms;
    let at = Timestamp::from_millisecond(ms)?;
    Ok(message(&devices[d], at, sent, readings))
}

/// Wait (up to a minute) for every PUBACK before disconnecting, or the broker may not have
/// them all; how many came.
async fn finish(client: &AsyncClient, connection: &mut Publisher, sent: u64) -> u64 {
    let deadline = Instant::now() + Duration::from_secs(60);
    while connection.acked < sent && Instant::now() < deadline {
        connection.read_acks().await;
    }
    let acked = connection.acked;
    client.disconnect().await.ok();
    let _ = tokio::time::timeout(Duration::from_secs(10), connection.closed()).await;
    acked
}

/// The run's JSON summary; with a consumer, what it counted (`consumed`) and its rate.
fn summary(run: &Run, acked: u64, plan: &PublishPlan, consumed: u64) -> serde_json::Value {
    let mut summary = json!({
        "mode": "publish",
        "sent": run.sent,
        "acked": acked,
        "seconds": run.seconds,
        "rate_per_s": run.sent as f64 / run.seconds,
    });
    if let Some(rate) = run.consumer_rate {
        summary["consumed"] = json!(consumed);
        summary["consumer_rate_per_s"] = json!(rate);
        summary["measured_seconds"] = json!(run.seconds - plan.warmup.as_secs_f64());
    }
    summary
}

/// Wait until `done`, for at most `limit`.
async fn wait_until(done: impl Fn() -> bool, limit: Duration) {
    let deadline = Instant::now() + limit;
    while !done() && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Refuse a URL that is not on the loopback interface.
fn check_loopback(base: &str) -> anyhow::Result<()> {
    let url = url::Url::parse(base)?;
    anyhow::ensure!(
        matches!(url.host_str(), Some("127.0.0.1" | "localhost" | "[::1]")),
        "load tests target loopback only (got {base})"
    );
    Ok(())
}
