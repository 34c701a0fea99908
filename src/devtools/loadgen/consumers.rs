//! Who counts what the load generator published: a null QoS 1 subscriber, or the aggregator's
//! own count of committed messages.

use std::{
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

use anyhow::Context;
use rumqttc::{Event, Packet, QoS};

use super::{check_loopback, client};

/// A QoS 1 subscriber that only counts into `received`, until `stop`.
pub(super) async fn null_subscriber(
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
pub(super) async fn follow_aggregator(
    api: String,
    committed: Arc<AtomicU64>,
    stop: tokio_util::sync::CancellationToken,
) -> anyhow::Result<()> {
    check_loopback(&api)?;
    crate::install_crypto_provider();
    let http = reqwest::Client::new();
    let url = format!("{api}/api/v1/feeds");
    let baseline = committed_count(&http, &url)
        .await
        .context("reading the aggregator's feeds")?;
    committed.store(0, Ordering::Release);
    let mut every = tokio::time::interval(Duration::from_millis(50));
    loop {
        tokio::select! {
            _ = every.tick() => {}
            _ = stop.cancelled() => return Ok(()),
        }
        match committed_count(&http, &url).await {
            Ok(n) => committed.store(n.saturating_sub(baseline), Ordering::Release),
            Err(e) => tracing::warn!(error = %e, "Reading the aggregator's feeds failed."),
        }
    }
}

/// The aggregator's messages committed so far (stored, duplicate or rejected, all feeds), from
/// its `/api/v1/feeds` at `url`.
async fn committed_count(http: &reqwest::Client, url: &str) -> anyhow::Result<u64> {
    let body: serde_json::Value = http
        .get(url)
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
}
