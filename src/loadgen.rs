//! Load generation for the benchmarks (`ioc-aggregator loadgen …`): publish the three IOC
//! formats at a fixed rate or as fast as the broker takes them, count what a null QoS 1
//! subscriber receives, or probe API latency at a fixed request rate. Loopback only, bounded in
//! count and time.

use std::time::{Duration, Instant};

use anyhow::Context;
use jiff::Timestamp;
use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS};
use serde_json::json;

use crate::{
    config::{DeviceConfig, parse_broker_url},
    model::{City, Domain},
    simulate::formats,
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
    formats::encode(device, at, &samples, "measuring")
}

fn client(broker: &str, id: &str) -> anyhow::Result<(AsyncClient, rumqttc::EventLoop)> {
    let addr = parse_broker_url(broker).map_err(anyhow::Error::msg)?;
    anyhow::ensure!(
        addr.host == "127.0.0.1" || addr.host == "localhost" || addr.host == "::1",
        "load tests target loopback only (got {})",
        addr.host
    );
    let mut o = MqttOptions::new(id, addr.host, addr.port);
    o.set_keep_alive(Duration::from_secs(30))
        .set_inflight(1_000)
        .set_max_packet_size(1 << 20, 1 << 20);
    Ok(AsyncClient::new(o, 10_000))
}

/// Publish with QoS 1 at `rate` messages/s (0: as fast as possible) for `duration`. Message
/// times are the publish time, at least a second apart per device (use enough devices for the
/// rate: rate / 3 / devices per city ≤ 1), so commit − observed time is the publish →
/// queryable latency. Returns a JSON summary.
pub async fn publish(
    broker: &str,
    rate: u64,
    duration: Duration,
    per_city: usize,
    readings: usize,
) -> anyhow::Result<serde_json::Value> {
    let devices = devices(per_city);
    let (client, mut eventloop) = client(broker, &format!("ioc-loadgen-{}", std::process::id()))?;
    let acks = tokio::spawn(async move {
        let mut acked = 0u64;
        loop {
            match eventloop.poll().await {
                Ok(Event::Incoming(Packet::PubAck(_))) => acked += 1,
                Ok(Event::Outgoing(rumqttc::Outgoing::Disconnect)) => break,
                Ok(_) => {}
                Err(e) => {
                    tracing::warn!(error = %e, "Load generator connection failed.");
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
            }
        }
        acked
    });
    let start = Instant::now();
    let mut last_ms = vec![0i64; devices.len()];
    let mut sent = 0u64;
    let mut tick = tokio::time::interval(Duration::from_millis(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    while start.elapsed() < duration {
        let quota = if rate == 0 {
            1_000
        } else {
            tick.tick().await;
            let due = (start.elapsed().as_secs_f64() * rate as f64) as u64;
            due.saturating_sub(sent)
        };
        for _ in 0..quota {
            let d = (sent % devices.len() as u64) as usize;
            // Thái Nguyên and SenML times have one-second precision: one message per device
            // per second at most, or they would (rightly) be deduplicated.
            let ms = Timestamp::now().as_millisecond().max(last_ms[d] + 1_000);
            last_ms[d] = ms;
            let at = Timestamp::from_millisecond(ms)?;
            let (topic, payload) = message(&devices[d], at, sent, readings);
            client
                .publish(topic, QoS::AtLeastOnce, false, payload)
                .await
                .context("publish queue closed")?;
            sent += 1;
        }
    }
    let elapsed = start.elapsed().as_secs_f64();
    client.disconnect().await.ok();
    let acked = tokio::time::timeout(Duration::from_secs(60), acks)
        .await
        .ok()
        .and_then(Result::ok)
        .unwrap_or(0);
    Ok(
        json!({"mode": "publish", "sent": sent, "acked": acked, "seconds": elapsed, "rate_per_s": sent as f64 / elapsed}),
    )
}

/// A QoS 1 subscriber that only counts: the broker's delivery limit on this machine.
pub async fn null_subscriber(
    broker: &str,
    duration: Duration,
) -> anyhow::Result<serde_json::Value> {
    let (client, mut eventloop) = client(broker, &format!("ioc-null-sub-{}", std::process::id()))?;
    for topic in ["tn/ioc/#", "sc/senml/#", "py/ngsi-ld/#"] {
        client.subscribe(topic, QoS::AtLeastOnce).await?;
    }
    let mut received = 0u64;
    let mut first: Option<Instant> = None;
    let deadline = Instant::now() + duration + Duration::from_secs(30);
    loop {
        let elapsed = first.map(|f| f.elapsed());
        if elapsed.is_some_and(|e| e >= duration) || Instant::now() > deadline {
            break;
        }
        match tokio::time::timeout(Duration::from_millis(200), eventloop.poll()).await {
            Ok(Ok(Event::Incoming(Packet::Publish(_)))) => {
                first.get_or_insert_with(Instant::now);
                received += 1;
            }
            Ok(Ok(_)) | Err(_) => {}
            Ok(Err(e)) => anyhow::bail!("subscriber connection failed: {e}"),
        }
    }
    let seconds = first.map_or(0.0, |f| f.elapsed().as_secs_f64());
    Ok(
        json!({"mode": "null-subscriber", "received": received, "seconds": seconds, "rate_per_s": received as f64 / seconds.max(1e-9)}),
    )
}

/// GET each of `paths` in turn at `rate` requests/s for `duration`; latency percentiles.
pub async fn probe_api(
    base: &str,
    paths: &[String],
    rate: u64,
    duration: Duration,
) -> anyhow::Result<serde_json::Value> {
    let url = url::Url::parse(base)?;
    anyhow::ensure!(
        matches!(url.host_str(), Some("127.0.0.1" | "localhost" | "[::1]")),
        "load tests target loopback only"
    );
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
                let ok = http
                    .get(target)
                    .send()
                    .await
                    .is_ok_and(|r| r.status().is_success());
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
