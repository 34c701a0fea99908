//! Load generation for the benchmarks (`ioc-aggregator loadgen …`): publish the three IOC
//! formats at a fixed rate or as fast as the broker takes them, count what a null QoS 1
//! subscriber receives, or probe API latency at a fixed request rate. Loopback only, bounded in
//! count and time.

use std::{
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use anyhow::Context;
use jiff::Timestamp;
use rumqttc::{AsyncClient, Event, MqttOptions, Packet, Publish, QoS, Request};
use serde_json::json;

use crate::{
    devtools::simulate::formats,
    model::{City, Domain},
    normalise::DeviceConfig,
    source::parse_broker_url,
};

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
    let stop = tokio_util::sync::CancellationToken::new();
    let consumer = match &plan.consumer {
        None => None,
        Some(Consumer::Null) => Some(tokio::spawn(null_subscriber(
            broker.to_owned(),
            Arc::clone(&consumed),
            stop.clone(),
        ))),
        Some(Consumer::Aggregator(api)) => Some(tokio::spawn(follow_aggregator(
            api.clone(),
            Arc::clone(&consumed),
            stop.clone(),
        ))),
    };
    if consumer.is_some() {
        // The subscription (or the aggregator's baseline) is in place before publishing.
        wait_until(
            || consumed.load(Ordering::Acquire) == 0,
            Duration::from_secs(10),
        )
        .await;
    }
    let mut connection = Publisher::new(eventloop);
    let start = Instant::now();
    let mut measured: Option<(Instant, u64)> = None;
    let mut last_ms = vec![0i64; devices.len()];
    let mut sent = 0u64;
    let mut round = Vec::with_capacity(PUBLISH_ROUND);
    while start.elapsed() < plan.duration {
        if plan.consumer.is_some() && measured.is_none() && start.elapsed() >= plan.warmup {
            measured = Some((Instant::now(), consumed.load(Ordering::Acquire)));
        }
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
        let room = connection.room();
        quota = quota.min(room);
        if quota == 0 {
            // Nothing may go now. With the in-flight window full (or a connection to make)
            // only the broker's acks move things on: read them. Otherwise wait a little for
            // the rate or the consumer, without blocking on acks: the acks can wait in the
            // socket, and with nothing flowing from us Mosquitto's small PUBACK writes would
            // sit behind Nagle's algorithm until our delayed ACK (tens of ms).
            if room == 0 {
                connection.read_acks().await;
            } else {
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
            continue;
        }
        for _ in 0..quota {
            let d = (sent % devices.len() as u64) as usize;
            // Times carry milliseconds; a device's messages never share one, or they would
            // (rightly) be deduplicated.
            let ms = Timestamp::now().as_millisecond().max(last_ms[d] + 1);
            last_ms[d] = ms;
            let at = Timestamp::from_millisecond(ms)?;
            round.push(message(&devices[d], at, sent, plan.readings));
            sent += 1;
        }
        if let Err(e) = connection.publish(round.drain(..)).await {
            // rumqttc resends what was handed over once it has reconnected (the next poll).
            tracing::warn!(error = %e, "Load generator connection failed.");
        }
    }
    let elapsed = start.elapsed().as_secs_f64();
    let consumer_rate = measured.map(|(t0, c0)| {
        let c1 = consumed.load(Ordering::Acquire);
        (c1 - c0) as f64 / t0.elapsed().as_secs_f64()
    });
    // Wait for every PUBACK before disconnecting, or the broker may not have them all.
    let deadline = Instant::now() + Duration::from_secs(60);
    while connection.acked < sent && Instant::now() < deadline {
        connection.read_acks().await;
    }
    let acked = connection.acked;
    client.disconnect().await.ok();
    let _ = tokio::time::timeout(Duration::from_secs(10), connection.closed()).await;
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
    let mut summary = json!({
        "mode": "publish",
        "sent": sent,
        "acked": acked,
        "seconds": elapsed,
        "rate_per_s": sent as f64 / elapsed,
    });
    if let Some(rate) = consumer_rate {
        summary["consumed"] = json!(consumed.load(Ordering::Acquire));
        summary["consumer_rate_per_s"] = json!(rate);
        summary["measured_seconds"] = json!(elapsed - plan.warmup.as_secs_f64());
    }
    Ok(summary)
}

/// Publishes written per round, at most.
const PUBLISH_ROUND: usize = 1_000;

/// The publishing connection, driven from the publishing loop itself. rumqttc's client writes
/// and flushes every publish on its own (a syscall and a TCP segment per message), which made
/// the load generator a heavy neighbour of what it measures on a two-core machine; here each
/// round of publishes is written with one flush, and the event loop is polled only to read acks
/// (and to reconnect and resend, as rumqttc does).
struct Publisher {
    eventloop: rumqttc::EventLoop,
    /// PUBACKs received.
    acked: u64,
}

impl Publisher {
    fn new(mut eventloop: rumqttc::EventLoop) -> Publisher {
        // The rounds are the batching; Nagle's algorithm would only hold a round back until
        // the broker acknowledges the previous one's segment.
        let mut network = eventloop.network_options();
        network.set_tcp_nodelay(true);
        eventloop.set_network_options(network);
        Publisher {
            eventloop,
            acked: 0,
        }
    }

    /// How many more publishes the in-flight window takes now (none while reconnecting or
    /// resending).
    fn room(&self) -> u64 {
        let e = &self.eventloop;
        if e.network.is_none() || !e.pending.is_empty() || e.state.collision.is_some() {
            return 0;
        }
        u64::from(e.mqtt_options.inflight().saturating_sub(e.state.inflight()))
    }

    /// Write `messages` as QoS 1 publishes, with one flush. Every message is handed to
    /// rumqttc's state before anything is written, so that after a failed write all of them
    /// are resent on the next connection.
    async fn publish(
        &mut self,
        messages: impl Iterator<Item = (String, Vec<u8>)>,
    ) -> anyhow::Result<()> {
        let e = &mut self.eventloop;
        let mut packets = Vec::new();
        for (topic, payload) in messages {
            let request = Request::Publish(Publish::new(topic, QoS::AtLeastOnce, payload));
            packets.extend(e.state.handle_outgoing_packet(request)?);
        }
        crate::source::write_between_polls(e, packets)
            .await
            .map_err(anyhow::Error::msg)
    }

    /// Poll once (a read of whatever the broker sent, a connect, or a resend), then what that
    /// buffered; count the acks.
    async fn read_acks(&mut self) {
        loop {
            match self.eventloop.poll().await {
                Ok(Event::Incoming(Packet::PubAck(_))) => self.acked += 1,
                Ok(_) => {}
                Err(e) => {
                    tracing::warn!(error = %e, "Load generator connection failed.");
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
            }
            if self.eventloop.state.events.is_empty() {
                return;
            }
        }
    }

    /// Poll until the disconnect requested through the client has gone out.
    async fn closed(&mut self) {
        loop {
            match self.eventloop.poll().await {
                Ok(Event::Outgoing(rumqttc::Outgoing::Disconnect)) | Err(_) => return,
                Ok(_) => {}
            }
        }
    }
}

async fn wait_until(done: impl Fn() -> bool, limit: Duration) {
    let deadline = Instant::now() + limit;
    while !done() && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A QoS 1 subscriber that only counts into `received`, until `stop`.
async fn null_subscriber(
    broker: String,
    received: Arc<AtomicU64>,
    stop: tokio_util::sync::CancellationToken,
) -> anyhow::Result<()> {
    let (client, mut eventloop) = client(&broker, &format!("ioc-null-sub-{}", std::process::id()))?;
    for topic in ["tn/ioc/#", "sc/senml/#", "py/ngsi-ld/#"] {
        client.subscribe(topic, QoS::AtLeastOnce).await?;
    }
    let mut subacks = 0;
    loop {
        let event = tokio::select! {
            e = eventloop.poll() => e,
            _ = stop.cancelled() => break,
        };
        match event {
            Ok(Event::Incoming(Packet::Publish(_))) => {
                received.fetch_add(1, Ordering::AcqRel);
            }
            Ok(Event::Incoming(Packet::SubAck(_))) => {
                subacks += 1;
                if subacks == 3 {
                    received.store(0, Ordering::Release);
                }
            }
            Ok(_) => {}
            Err(e) => anyhow::bail!("null subscriber connection failed: {e}"),
        }
    }
    client.disconnect().await.ok();
    Ok(())
}

/// Follow the aggregator's count of committed messages (stored, duplicate or quarantined:
/// each was committed and then acked), relative to when this started, until `stop`.
async fn follow_aggregator(
    api: String,
    committed: Arc<AtomicU64>,
    stop: tokio_util::sync::CancellationToken,
) -> anyhow::Result<()> {
    check_loopback(&api)?;
    crate::install_crypto_provider();
    let http = reqwest::Client::new();
    let url = format!("{api}/api/v1/feeds");
    let count = async || -> anyhow::Result<u64> {
        let body: serde_json::Value = http
            .get(&url)
            .send()
            .await?
            .error_for_status()?
            .json()
            .await?;
        let feeds = body["feeds"]
            .as_array()
            .context("no feeds in /api/v1/feeds")?;
        Ok(feeds
            .iter()
            .flat_map(|f| ["stored", "duplicate", "rejected"].map(|k| f["all_time"][k].as_u64()))
            .map(|n| n.unwrap_or(0))
            .sum())
    };
    let baseline = count().await.context("reading the aggregator's feeds")?;
    committed.store(0, Ordering::Release);
    let mut every = tokio::time::interval(Duration::from_millis(50));
    loop {
        tokio::select! {
            _ = every.tick() => {}
            _ = stop.cancelled() => return Ok(()),
        }
        match count().await {
            Ok(n) => committed.store(n.saturating_sub(baseline), Ordering::Release),
            Err(e) => tracing::warn!(error = %e, "Reading the aggregator's feeds failed."),
        }
    }
}

fn check_loopback(base: &str) -> anyhow::Result<()> {
    let url = url::Url::parse(base)?;
    anyhow::ensure!(
        matches!(url.host_str(), Some("127.0.0.1" | "localhost" | "[::1]")),
        "load tests target loopback only (got {base})"
    );
    Ok(())
}

/// GET each of `paths` in turn at `rate` requests/s for `duration`; latency percentiles.
pub async fn probe_api(
    base: &str,
    paths: &[String],
    rate: u64,
    duration: Duration,
) -> anyhow::Result<serde_json::Value> {
    check_loopback(base)?;
    crate::install_crypto_provider();
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(256)
        .build()?;
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<(usize, Duration, bool)>();
    let start = Instant::now();
    let mut sent = 0u64;
    let mut tick = tokio::time::interval(Duration::from_millis(1));
    while start.elapsed() < duration {
        tick.tick().await;
        let due = (start.elapsed().as_secs_f64() * rate as f64) as u64;
        while sent < due {
            let i = (sent % paths.len() as u64) as usize;
            let (http, tx, target) = (http.clone(), tx.clone(), format!("{base}{}", paths[i]));
            tokio::spawn(async move {
                let t = Instant::now();
                // Until the whole body has arrived: that is what a client waits for.
                let ok = match http.get(target).send().await {
                    Ok(r) => r.status().is_success() && r.bytes().await.is_ok(),
                    Err(_) => false,
                };
                let _ = tx.send((i, t.elapsed(), ok));
            });
            sent += 1;
        }
    }
    drop(tx);
    let mut latencies: Vec<Vec<f64>> = vec![Vec::new(); paths.len()];
    let mut errors = 0u64;
    while let Some((i, d, ok)) = rx.recv().await {
        latencies[i].push(d.as_secs_f64() * 1000.0);
        errors += u64::from(!ok);
    }
    let per_path: Vec<serde_json::Value> = paths
        .iter()
        .zip(latencies.iter_mut())
        .map(|(p, l)| {
            l.sort_by(f64::total_cmp);
            let q = |x: f64| l.get(((l.len() as f64 - 1.0) * x).round() as usize).copied().unwrap_or(f64::NAN);
            json!({"path": p, "requests": l.len(), "p50_ms": q(0.5), "p99_ms": q(0.99), "max_ms": q(1.0)})
        })
        .collect();
    Ok(json!({"mode": "api", "rate_per_s": rate, "errors": errors, "paths": per_path}))
}
