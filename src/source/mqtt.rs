//! One MQTT connection per feed (rumqttc, MQTT 3.1.1 or 5): QoS 1, persistent session under a stable
//! client id, manual acks.
//!
//! Three tasks per feed, so that no task awaits something only another of them can unblock:
//! - the *poll task* owns the `EventLoop` and only polls it and forwards publishes into the
//!   feed's bounded queue. When that queue is full it stops polling, so the socket stops being
//!   read and the broker keeps the backlog.
//! - the *ack task* receives ack tokens from the store writer (after commit, in receive order)
//!   and sends them with `client.ack().await`. Tokens from an earlier connection are dropped: the
//!   broker redelivers those messages anyway and stale packet ids make some brokers disconnect.
//! - the pipeline (elsewhere) sits between them.

use std::{
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

use jiff::Timestamp;
use rumqttc::{TlsConfiguration, Transport};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tracing::{debug, error, info, warn};

use super::protocol::{Client, EventLoop, PacketRef, Polled};
use crate::config::{FeedConfig, MqttProtocol, parse_broker_url};
use crate::model::{FeedId, RawMessage};
use crate::stats::FeedStats;

/// Largest MQTT packet accepted; bigger payloads are a protocol error for rumqttc, so the limit
/// is generous and the pipeline rejects oversized payloads with a reason instead.
const MAX_PACKET_BYTES: usize = 16 * 1024 * 1024;

/// A message received from the broker, with what is needed to acknowledge it later.
#[derive(Debug)]
pub struct Delivery {
    pub message: RawMessage,
    pub ack: AckToken,
}

/// Proof of receipt: the packet id and the connection it arrived on.
#[derive(Debug, Clone)]
pub struct AckToken {
    epoch: u64,
    packet: PacketRef,
}

/// Handles of a running feed connection.
#[derive(Debug)]
pub struct MqttConnection {
    /// Where the store writer sends ack tokens after commit (unbounded: the store writer must
    /// never block on acks; the number outstanding is bounded by the pipeline's queues).
    pub acks: mpsc::UnboundedSender<AckToken>,
    pub poll_task: tokio::task::JoinHandle<()>,
    pub ack_task: tokio::task::JoinHandle<()>,
}

/// Errors setting a connection up (bad TLS material); runtime errors are retried, not returned.
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    #[error("feed {feed}: {message}")]
    Setup { feed: String, message: String },
}

/// Start the connection of `feed`; publishes go to `out`. `cancel` stops intake; the
/// connection then stays up until every ack owed has been sent, and disconnects.
pub fn connect(
    feed: &FeedConfig,
    out: mpsc::Sender<Delivery>,
    stats: Arc<FeedStats>,
    cancel: CancellationToken,
) -> Result<MqttConnection, SourceError> {
    let (client, eventloop) = client(feed)?;
    let epoch = Arc::new(AtomicU64::new(0));
    let (ack_tx, ack_rx) = mpsc::unbounded_channel();

    let poll = PollTask {
        feed: FeedId::new(&feed.name),
        topics: feed.topics.clone(),
        client: client.clone(),
        eventloop,
        out,
        epoch: Arc::clone(&epoch),
        stats: Arc::clone(&stats),
        cancel,
        reconnect_max: feed.reconnect_max,
    };
    let poll_task = tokio::spawn(poll.run());
    let ack_task = tokio::spawn(ack_loop(client, ack_rx, epoch, stats));
    Ok(MqttConnection {
        acks: ack_tx,
        poll_task,
        ack_task,
    })
}

fn client(feed: &FeedConfig) -> Result<(Client, EventLoop), SourceError> {
    let setup = |message: String| SourceError::Setup {
        feed: feed.name.clone(),
        message,
    };
    let addr = parse_broker_url(&feed.broker).map_err(setup)?;
    let transport = if addr.tls {
        let config = tls_config(feed.ca_file.as_deref()).map_err(setup)?;
        Transport::tls_with_config(TlsConfiguration::Rustls(Arc::new(config)))
    } else {
        Transport::Tcp
    };
    let password = feed.password.as_ref().map(|p| p.expose().to_owned());
    // The request channel carries acks and subscribes; it is drained on every poll.
    const REQUESTS: usize = 1024;
    Ok(match feed.protocol {
        MqttProtocol::V4 => {
            let mut o = rumqttc::MqttOptions::new(feed.client_id(), addr.host, addr.port);
            o.set_clean_session(false)
                .set_manual_acks(true)
                .set_keep_alive(feed.keep_alive)
                .set_max_packet_size(MAX_PACKET_BYTES, MAX_PACKET_BYTES)
                .set_transport(transport);
            if let Some(user) = &feed.username {
                o.set_credentials(user.clone(), password.unwrap_or_default());
            }
            let (c, e) = rumqttc::AsyncClient::new(o, REQUESTS);
            (Client::V4(c), EventLoop::V4(Box::new(e)))
        }
        MqttProtocol::V5 => {
            let mut o = rumqttc::v5::MqttOptions::new(feed.client_id(), addr.host, addr.port);
            let expiry = u32::try_from(feed.session_expiry.as_secs()).unwrap_or(u32::MAX);
            o.set_clean_start(false)
                .set_session_expiry_interval(Some(expiry))
                .set_manual_acks(true)
                .set_keep_alive(feed.keep_alive)
                .set_max_packet_size(Some(MAX_PACKET_BYTES as u32))
                .set_transport(transport);
            if let Some(user) = &feed.username {
                o.set_credentials(user.clone(), password.unwrap_or_default());
            }
            let (c, e) = rumqttc::v5::AsyncClient::new(o, REQUESTS);
            (Client::V5(c), EventLoop::V5(Box::new(e)))
        }
    })
}

fn tls_config(ca_file: Option<&std::path::Path>) -> Result<rustls::ClientConfig, String> {
    use rustls::pki_types::{CertificateDer, pem::PemObject};
    let mut roots = rustls::RootCertStore::empty();
    match ca_file {
        Some(path) => {
            for cert in CertificateDer::pem_file_iter(path)
                .map_err(|e| format!("cannot read CA file {}: {e}", path.display()))?
            {
                let cert =
                    cert.map_err(|e| format!("bad certificate in {}: {e}", path.display()))?;
                roots
                    .add(cert)
                    .map_err(|e| format!("bad certificate in {}: {e}", path.display()))?;
            }
        }
        None => {
            for cert in rustls_native_certs::load_native_certs().certs {
                let _ = roots.add(cert);
            }
        }
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    Ok(rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_root_certificates(roots)
        .with_no_client_auth())
}

struct PollTask {
    feed: FeedId,
    topics: Vec<String>,
    client: Client,
    eventloop: EventLoop,
    /// Dropped when intake stops: the feed's pipeline then drains and ends.
    out: mpsc::Sender<Delivery>,
    epoch: Arc<AtomicU64>,
    stats: Arc<FeedStats>,
    cancel: CancellationToken,
    reconnect_max: Duration,
}

impl PollTask {
    async fn run(mut self) {
        let mut backoff = Duration::from_millis(250);
        let mut intake_open = true;
        loop {
            // `poll` is never raced against anything (it is not cancel-safe mid-write).
            let event = self.eventloop.poll().await;
            if intake_open && (self.cancel.is_cancelled() || self.out.is_closed()) {
                intake_open = false;
                debug!(feed = %self.feed, "Intake stopped; polling until acks are flushed.");
            }
            match event {
                Ok(Polled::Publish {
                    topic,
                    payload,
                    dup,
                    packet,
                }) => {
                    if intake_open && !self.forward(topic, payload, dup, packet).await {
                        intake_open = false;
                    }
                }
                Ok(Polled::ConnAck { session_present }) => {
                    backoff = Duration::from_millis(250);
                    self.connected(session_present);
                }
                Ok(Polled::SubscriptionsRefused(indices)) => {
                    for topic in indices.iter().filter_map(|i| self.topics.get(*i)) {
                        error!(feed = %self.feed, topic, "Broker refused the subscription.");
                        self.stats.set_error(
                            Timestamp::now(),
                            format!("subscription to {topic} refused"),
                        );
                    }
                }
                Ok(Polled::Disconnected) => {
                    info!(feed = %self.feed, "Disconnected from broker.");
                    break;
                }
                Ok(Polled::Other) => {}
                Err(message) => {
                    self.stats.set_connected(false);
                    if !intake_open {
                        debug!(feed = %self.feed, error = %message, "Connection ended during shutdown.");
                        break;
                    }
                    warn!(feed = %self.feed, error = %message, retry_in = ?backoff, "MQTT connection failed; reconnecting.");
                    self.stats.set_error(Timestamp::now(), message);
                    tokio::select! {
                        _ = tokio::time::sleep(jitter(backoff)) => {}
                        _ = self.cancel.cancelled() => {}
                    }
                    backoff = (backoff * 2).min(self.reconnect_max);
                }
            }
        }
        self.stats.set_connected(false);
    }

    /// Returns false when the pipeline is gone (shutdown).
    async fn forward(
        &mut self,
        topic: String,
        payload: bytes::Bytes,
        dup: bool,
        packet: PacketRef,
    ) -> bool {
        let received_at = Timestamp::now();
        self.stats.received(received_at);
        let message = RawMessage {
            feed: self.feed.clone(),
            topic,
            payload,
            received_at,
            dup,
        };
        let ack = AckToken {
            epoch: self.epoch.load(Ordering::Acquire),
            packet,
        };
        tokio::select! {
            sent = self.out.send(Delivery { message, ack }) => sent.is_ok(),
            // Not acked: the broker keeps the message in the session and redelivers it.
            _ = self.cancel.cancelled() => false,
        }
    }

    fn connected(&mut self, session_present: bool) {
        let epoch = self.epoch.fetch_add(1, Ordering::AcqRel) + 1;
        self.stats.set_connected(true);
        info!(feed = %self.feed, session_present, epoch, "Connected to broker.");
        if session_present {
            return;
        }
        if epoch > 1 {
            warn!(feed = %self.feed, "Broker has no session for us; resubscribing (messages queued while we were away may be lost by the broker).");
            self.stats.session_lost();
        }
        if !self.client.try_subscribe(&self.topics) {
            // The request channel is full of acks; subscribe from another task instead of
            // blocking the poll loop.
            debug!(feed = %self.feed, "Request channel full; subscribing asynchronously.");
            let client = self.client.clone();
            let topics = self.topics.clone();
            tokio::spawn(async move { client.subscribe(&topics).await });
        }
    }
}

async fn ack_loop(
    client: Client,
    mut tokens: mpsc::UnboundedReceiver<AckToken>,
    epoch: Arc<AtomicU64>,
    stats: Arc<FeedStats>,
) {
    while let Some(token) = tokens.recv().await {
        if token.epoch != epoch.load(Ordering::Acquire) {
            stats.stale_ack_dropped();
            continue;
        }
        if !client.ack(&token.packet).await {
            break; // event loop gone
        }
    }
    // Every ack owed has been handed to the event loop: leave cleanly.
    client.disconnect().await;
}

/// ±20 % jitter so that many feeds do not reconnect in lockstep.
fn jitter(d: Duration) -> Duration {
    let factor = 0.8 + rand::random::<f64>() * 0.4;
    d.mul_f64(factor)
}
