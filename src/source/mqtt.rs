//! One MQTT connection per feed (rumqttc, MQTT 3.1.1 or 5): QoS 1, persistent session under a stable
//! client id, manual acks.
//!
//! Three tasks per feed, so that no task awaits something only another of them can unblock:
//! - the *poll task* owns the `EventLoop` and only polls it and forwards publishes into the
//!   feed's bounded queue (it never awaits an ack). When that queue is full it stops polling,
//!   so the socket stops being read and the broker keeps the backlog.
//! - the *ack task* receives ack tokens from the store writer (after commit, in receive order)
//!   and hands them to the connection through the `Outbox`. Tokens of a connection that
//!   failed are dropped from the moment it failed: the broker redelivers those messages anyway
//!   and stale packet ids make some brokers disconnect.
//! - the pipeline (elsewhere) sits between them.
//!
//! Acks are written in batches. rumqttc writes and flushes every ack sent through its client
//! on its own: one `writev` and one TCP segment per message. So only the first ack of a batch
//! (the *herald*) goes through the client, which wakes an idle event loop. The rest wait in the
//! outbox, and the poll task writes them with one flush when the event loop reports the herald
//! written: the PUBACKs leave in the order the messages arrived, as MQTT requires. (MQTT 5
//! connections send every ack through the client: rumqttc does not expose their socket.)

use std::{
    sync::{Arc, Mutex},
    time::Duration,
};

use jiff::Timestamp;
use rumqttc::{TlsConfiguration, Transport};
use tokio::sync::mpsc;
use tokio_util::{sync::CancellationToken, task::TaskTracker};
use tracing::{debug, error, info, warn};

use super::config::{FeedConfig, MqttProtocol, parse_broker_url};
use super::protocol::{Client, EventLoop, PacketRef, Polled};
use crate::model::{FeedId, RawMessage};
use crate::stats::FeedStats;

/// The wait before reconnecting after a first failure.
const FIRST_BACKOFF: Duration = Duration::from_millis(250);

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

/// Where the store writer sends a connection's ack tokens after commit (unbounded: the store
/// writer must never block on acks; the number outstanding is bounded by the pipeline's queues).
pub type Acks = mpsc::UnboundedSender<AckToken>;

/// Errors setting a connection up (bad TLS material); runtime errors are retried, not returned.
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    #[error("feed {feed}: {message}")]
    Setup { feed: String, message: String },
}

/// Start the connection of `feed`, its poll and ack tasks on `tasks`; publishes go to `out`.
/// `cancel` stops intake; the connection then stays up until every ack owed has been sent (the
/// returned [`Acks`] and its clones are dropped), and disconnects.
pub fn connect(
    feed: &FeedConfig,
    out: mpsc::Sender<Delivery>,
    stats: Arc<FeedStats>,
    tasks: &TaskTracker,
    cancel: CancellationToken,
) -> Result<Acks, SourceError> {
    let (client, eventloop) = client(feed)?;
    let outbox = Arc::new(Mutex::new(Outbox::new(eventloop.writes_acks())));
    let (ack_tx, ack_rx) = mpsc::unbounded_channel();

    let poll = PollTask {
        feed: FeedId::new(&feed.name),
        topics: feed.topics.clone(),
        client: client.clone(),
        eventloop,
        out,
        epoch: 0,
        outbox: Arc::clone(&outbox),
        stats: Arc::clone(&stats),
        cancel,
        reconnect_max: feed.reconnect_max,
        backoff: FIRST_BACKOFF,
        intake_open: true,
    };
    tasks.spawn(poll.run());
    tasks.spawn(ack_loop(client, ack_rx, outbox, stats));
    Ok(ack_tx)
}

/// The client and event loop of `feed`'s connection, not yet connected: a persistent session
/// under the feed's client id, manual acks, over TCP or TLS.
fn client(feed: &FeedConfig) -> Result<(Client, EventLoop), SourceError> {
    let setup = |message: String| SourceError::Setup {
        feed: feed.name.clone(),
        message,
    };
    let addr = parse_broker_url(&feed.broker).map_err(setup)?;
    let transport = if addr.tls {
        let config = super::tls::client_config(feed).map_err(setup)?;
        Transport::tls_with_config(TlsConfiguration::Rustls(Arc::new(config)))
    } else {
        Transport::Tcp
    };
    Ok(match feed.protocol {
        MqttProtocol::V4 => client_v4(feed, addr.host, addr.port, transport),
        MqttProtocol::V5 => client_v5(feed, addr.host, addr.port, transport),
    })
}

/// The request channel carries acks and subscribes; it is drained on every poll.
const REQUESTS: usize = 1024;

/// An MQTT 3.1.1 client: clean session off.
fn client_v4(
    feed: &FeedConfig,
    host: String,
    port: u16,
    transport: Transport,
) -> (Client, EventLoop) {
    let password = feed.password.as_ref().map(|p| p.expose().to_owned());
    let mut o = rumqttc::MqttOptions::new(feed.client_id(), host, port);
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

/// An MQTT 5 client: clean start off, the session kept for the feed's `session_expiry`.
fn client_v5(
    feed: &FeedConfig,
    host: String,
    port: u16,
    transport: Transport,
) -> (Client, EventLoop) {
    let password = feed.password.as_ref().map(|p| p.expose().to_owned());
    let mut o = rumqttc::v5::MqttOptions::new(feed.client_id(), host, port);
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

struct PollTask {
    feed: FeedId,
    topics: Vec<String>,
    client: Client,
    eventloop: EventLoop,
    /// Dropped when intake stops: the feed's pipeline then drains and ends.
    out: mpsc::Sender<Delivery>,
    /// Counts connections; tokens carry the epoch they were received in.
    epoch: u64,
    outbox: Arc<Mutex<Outbox>>,
    stats: Arc<FeedStats>,
    cancel: CancellationToken,
    reconnect_max: Duration,
    /// The wait before the next reconnection; doubles per failure, reset by a CONNACK.
    backoff: Duration,
    /// Whether publishes are still forwarded; false once shutdown began.
    intake_open: bool,
}

impl PollTask {
    async fn run(mut self) {
        loop {
            // `poll` is never raced against anything (it is not cancel-safe mid-write).
            let event = self.eventloop.poll().await;
            if self.intake_open && (self.cancel.is_cancelled() || self.out.is_closed()) {
                self.intake_open = false;
                debug!(feed = %self.feed, "Intake stopped; polling until acks are flushed.");
            }
            if !self.handle(event).await {
                break;
            }
        }
        self.stats.set_connected(false);
    }

    /// Act on one polled event. False when polling should stop.
    async fn handle(&mut self, event: Result<Polled, String>) -> bool {
        match event {
            Ok(Polled::Publish {
                topic,
                payload,
                dup,
                packet,
            }) => {
                if self.intake_open && !self.forward(topic, payload, dup, packet).await {
                    self.intake_open = false;
                }
            }
            Ok(Polled::ConnAck { session_present }) => {
                self.backoff = FIRST_BACKOFF;
                self.connected(session_present);
            }
            Ok(Polled::SubscriptionsRefused(indices)) => self.refused(&indices),
            Ok(Polled::AckSent(pkid)) => return self.herald_sent(pkid).await,
            Ok(Polled::Disconnected) => {
                info!(feed = %self.feed, "Disconnected from broker.");
                return false;
            }
            Ok(Polled::Other) => {}
            Err(message) => return self.failed(message).await,
        }
        true
    }

    /// The broker refused these subscriptions (indices into the feed's topics).
    fn refused(&self, indices: &[usize]) {
        for topic in indices.iter().filter_map(|i| self.topics.get(*i)) {
            error!(feed = %self.feed, topic, "Broker refused the subscription.");
            self.stats
                .set_error(Timestamp::now(), format!("subscription to {topic} refused"));
        }
    }

    /// The client's ack `pkid` (a batch's herald) was written: write the acks queued behind it.
    /// False when that failed during shutdown.
    async fn herald_sent(&mut self, pkid: u16) -> bool {
        let queued = self.outbox.lock().expect("outbox lock").herald_sent(pkid);
        if !queued.is_empty()
            && let Err(message) = self.eventloop.write_acks(&queued).await
        {
            return self.failed(message).await;
        }
        true
    }

    /// The connection failed: wait before the next poll reconnects. False during shutdown (stop
    /// polling instead).
    async fn failed(&mut self, message: String) -> bool {
        self.stats.set_connected(false);
        // Acks of the failed connection are stale from now on, and so are its packets not yet
        // polled.
        self.outbox.lock().expect("outbox lock").disconnected();
        self.eventloop.forget_connection();
        if !self.intake_open {
            debug!(feed = %self.feed, error = %message, "Connection ended during shutdown.");
            return false;
        }
        warn!(feed = %self.feed, error = %message, retry_in = ?self.backoff, "MQTT connection failed; reconnecting.");
        self.stats.set_error(Timestamp::now(), message);
        tokio::select! {
            _ = tokio::time::sleep(jitter(self.backoff)) => {}
            _ = self.cancel.cancelled() => {}
        }
        self.backoff = (self.backoff * 2).min(self.reconnect_max);
        true
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
            epoch: self.epoch,
            packet,
        };
        tokio::select! {
            sent = self.out.send(Delivery { message, ack }) => sent.is_ok(),
            // Not acked: the broker keeps the message in the session and redelivers it.
            _ = self.cancel.cancelled() => false,
        }
    }

    fn connected(&mut self, session_present: bool) {
        self.epoch += 1;
        let epoch = self.epoch;
        // Acks owed on the previous connection are dropped with it.
        self.outbox.lock().expect("outbox lock").connected(epoch);
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

/// Acks owed on the current connection, between the ack task and the poll task.
#[derive(Debug)]
struct Outbox {
    /// The connection the acks are owed on; `None` from a failure until the next CONNACK, when
    /// every token is stale.
    epoch: Option<u64>,
    /// Whether the poll task writes acks itself (`EventLoop::write_acks`).
    batches: bool,
    /// Packet id of the ack sent through the client and not yet reported written.
    herald: Option<u16>,
    /// Packet ids waiting behind the herald, in receive order.
    queued: Vec<u16>,
}

impl Outbox {
    fn new(batches: bool) -> Outbox {
        Outbox {
            epoch: None,
            batches,
            herald: None,
            queued: Vec::new(),
        }
    }

    /// A new connection: whatever was owed on the last one is void.
    fn connected(&mut self, epoch: u64) {
        self.epoch = Some(epoch);
        self.herald = None;
        self.queued.clear();
    }

    /// The connection failed: no ack may go out until the next one is up.
    fn disconnected(&mut self) {
        self.epoch = None;
        self.herald = None;
        self.queued.clear();
    }

    /// Take committed tokens. Acks go to the client's request channel while the lock is held, so
    /// that none can slip in after a failure was recorded; what does not fit goes to
    /// `overflow`, to be sent (in order) once the lock is released.
    fn take(
        &mut self,
        tokens: impl Iterator<Item = AckToken>,
        client: &Client,
        overflow: &mut Vec<PacketRef>,
        stats: &FeedStats,
    ) {
        for token in tokens {
            if Some(token.epoch) != self.epoch {
                stats.stale_ack_dropped();
                continue;
            }
            if self.batches
                && let Some(pkid) = token.packet.puback_id()
            {
                if self.herald.is_some() {
                    self.queued.push(pkid);
                    continue;
                }
                self.herald = Some(pkid);
            }
            // The herald of a batch, or (MQTT 5, not QoS 1) every ack.
            if !overflow.is_empty() || !client.try_ack(&token.packet) {
                overflow.push(token.packet);
            }
        }
    }

    /// The event loop wrote the ack `pkid`; if it was the herald, what queued behind it is due.
    fn herald_sent(&mut self, pkid: u16) -> Vec<u16> {
        if self.herald != Some(pkid) {
            return Vec::new();
        }
        self.herald = None;
        std::mem::take(&mut self.queued)
    }
}

/// Most tokens taken from the commit thread at a time.
const ACK_BATCH: usize = 4096;

async fn ack_loop(
    client: Client,
    mut tokens: mpsc::UnboundedReceiver<AckToken>,
    outbox: Arc<Mutex<Outbox>>,
    stats: Arc<FeedStats>,
) {
    let mut batch = Vec::with_capacity(ACK_BATCH);
    let mut overflow = Vec::new();
    'tokens: while tokens.recv_many(&mut batch, ACK_BATCH).await > 0 {
        outbox
            .lock()
            .expect("outbox lock")
            .take(batch.drain(..), &client, &mut overflow, &stats);
        for packet in overflow.drain(..) {
            if !client.ack(&packet).await {
                break 'tokens; // event loop gone
            }
        }
    }
    // Every ack owed has been handed to the event loop or queued behind a herald it holds:
    // leave cleanly (the disconnect request follows the herald).
    client.disconnect().await;
}

/// ±20 % jitter so that many feeds do not reconnect in lockstep.
fn jitter(d: Duration) -> Duration {
    let factor = 0.8 + rand::random::<f64>() * 0.4;
    d.mul_f64(factor)
}
