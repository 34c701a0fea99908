//! rumqttc's MQTT 3.1.1 and MQTT 5 clients behind one closed set of types, so the connection
//! logic in `mqtt.rs` is written once.

use std::time::Duration;

use bytes::Bytes;
use rumqttc::v5::mqttbytes::{QoS as QoS5, v5 as p5};

/// The client half (requests to the event loop).
#[derive(Debug, Clone)]
pub enum Client {
    V4(rumqttc::AsyncClient),
    V5(rumqttc::v5::AsyncClient),
}

/// The event loop half, owned by the poll task.
pub enum EventLoop {
    V4(Box<rumqttc::EventLoop>),
    V5(Box<rumqttc::v5::EventLoop>),
}

impl std::fmt::Debug for EventLoop {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            EventLoop::V4(_) => "EventLoop::V4",
            EventLoop::V5(_) => "EventLoop::V5",
        })
    }
}

/// What is needed to acknowledge a received publish (qos and packet id; no payload).
#[derive(Debug, Clone)]
pub enum PacketRef {
    V4(rumqttc::Publish),
    V5(Box<p5::Publish>),
}

/// The events the connection logic cares about.
#[derive(Debug)]
pub enum Polled {
    Publish {
        topic: String,
        payload: Bytes,
        dup: bool,
        packet: PacketRef,
    },
    ConnAck {
        session_present: bool,
    },
    /// Indices (into the subscribed filters) the broker refused.
    SubscriptionsRefused(Vec<usize>),
    /// A PUBACK sent through the client's request channel was written (its packet id).
    AckSent(u16),
    Disconnected,
    Other,
}

impl EventLoop {
    /// Poll once. Errors are described as text: the caller logs them and reconnects.
    pub async fn poll(&mut self) -> Result<Polled, String> {
        match self {
            EventLoop::V4(e) => Ok(polled_v4(e.poll().await.map_err(describe_v4)?)),
            EventLoop::V5(e) => Ok(polled_v5(e.poll().await.map_err(|e| e.to_string())?)),
        }
    }

    /// After a failure, forget what belongs to the dead connection: packets read from it that
    /// `poll` has not returned yet (rumqttc would return them after the next CONNACK, as if they
    /// had come on the new connection, where their packet ids mean nothing), and acks that raced
    /// into the request channel after rumqttc emptied it of acks. The broker redelivers every
    /// message they stand for.
    pub fn forget_connection(&mut self) {
        match self {
            EventLoop::V4(e) => {
                e.state.events.clear();
                e.clean();
            }
            EventLoop::V5(e) => {
                e.state.events.clear();
                e.clean();
            }
        }
    }

    /// Whether `write_acks` can be used: rumqttc exposes the MQTT 3.1.1 connection only.
    pub fn writes_acks(&self) -> bool {
        matches!(self, EventLoop::V4(_))
    }

    /// Write PUBACKs for `pkids`, in order, with one flush, between two polls. rumqttc flushes
    /// each ack sent through the client on its own (one `writev` and one TCP segment per
    /// message); this is the batched path.
    pub async fn write_acks(&mut self, pkids: &[u16]) -> Result<(), String> {
        let EventLoop::V4(e) = self else {
            return Err("acks of an MQTT 5 connection go through the client".into());
        };
        let acks = pkids
            .iter()
            .map(|&pkid| rumqttc::Packet::PubAck(rumqttc::PubAck::new(pkid)))
            .collect();
        write_between_polls(e, acks).await
    }
}

/// Write `packets` to an MQTT 3.1.1 event loop's connection between two polls, with one flush
/// and rumqttc's own flush timeout. rumqttc has no way to batch what goes through its client;
/// this is the batched path (our acks, the load generator's publishes). On failure the
/// connection is dropped as `poll` drops it (`clean`): the next poll reconnects, and rumqttc
/// resends the publishes its state holds.
pub async fn write_between_polls(
    e: &mut rumqttc::EventLoop,
    packets: Vec<rumqttc::Packet>,
) -> Result<(), String> {
    let timeout = Duration::from_secs(e.network_options.connection_timeout());
    let Some(network) = e.network.as_mut() else {
        e.clean();
        return Err("not connected".into());
    };
    let written = async move {
        for packet in packets {
            network.write(packet).await?;
        }
        network.flush().await
    };
    let result = match tokio::time::timeout(timeout, written).await {
        Ok(Ok(())) => return Ok(()),
        Ok(Err(error)) => error.to_string(),
        Err(_) => "timed out writing to the broker".to_owned(),
    };
    e.clean();
    Err(result)
}

/// An MQTT 3.1.1 event as the connection logic sees it. A publish keeps its payload apart
/// from what acknowledging it needs.
fn polled_v4(event: rumqttc::Event) -> Polled {
    use rumqttc::{Event, Outgoing, Packet, SubscribeReasonCode};
    match event {
        Event::Incoming(Packet::Publish(p)) => Polled::Publish {
            topic: p.topic.clone(),
            payload: p.payload.clone(),
            dup: p.dup,
            packet: PacketRef::V4(rumqttc::Publish {
                payload: Bytes::new(),
                topic: String::new(),
                ..p
            }),
        },
        Event::Incoming(Packet::ConnAck(a)) => Polled::ConnAck {
            session_present: a.session_present,
        },
        Event::Incoming(Packet::SubAck(s)) => Polled::SubscriptionsRefused(refused(
            s.return_codes
                .iter()
                .map(|c| matches!(c, SubscribeReasonCode::Failure)),
        )),
        Event::Outgoing(Outgoing::PubAck(pkid)) => Polled::AckSent(pkid),
        Event::Outgoing(Outgoing::Disconnect) => Polled::Disconnected,
        _ => Polled::Other,
    }
}

/// An MQTT 5 event as the connection logic sees it. A publish keeps its payload apart from
/// what acknowledging it needs.
fn polled_v5(event: rumqttc::v5::Event) -> Polled {
    use rumqttc::{
        Outgoing,
        v5::{Event, mqttbytes::v5::Packet},
    };
    match event {
        Event::Incoming(Packet::Publish(p)) => Polled::Publish {
            topic: String::from_utf8_lossy(&p.topic).into_owned(),
            payload: p.payload.clone(),
            dup: p.dup,
            packet: PacketRef::V5(Box::new(p5::Publish {
                payload: Bytes::new(),
                topic: Bytes::new(),
                properties: None,
                ..p
            })),
        },
        Event::Incoming(Packet::ConnAck(a)) => Polled::ConnAck {
            session_present: a.session_present,
        },
        Event::Incoming(Packet::SubAck(s)) => Polled::SubscriptionsRefused(refused(
            s.return_codes
                .iter()
                .map(|c| !matches!(c, p5::SubscribeReasonCode::Success(_))),
        )),
        Event::Outgoing(Outgoing::PubAck(pkid)) => Polled::AckSent(pkid),
        Event::Outgoing(Outgoing::Disconnect) => Polled::Disconnected,
        _ => Polled::Other,
    }
}

fn refused(failed: impl Iterator<Item = bool>) -> Vec<usize> {
    failed
        .enumerate()
        .filter_map(|(i, f)| f.then_some(i))
        .collect()
}

fn describe_v4(e: rumqttc::ConnectionError) -> String {
    match e {
        rumqttc::ConnectionError::ConnectionRefused(code) => {
            format!("connection refused by broker: {code:?}")
        }
        other => other.to_string(),
    }
}

impl PacketRef {
    /// The packet id to answer with a PUBACK: QoS 1 only (QoS 0 needs no ack; QoS 2, never
    /// granted on our QoS 1 subscriptions, is answered by the client with PUBREC).
    pub fn puback_id(&self) -> Option<u16> {
        match self {
            PacketRef::V4(p) => (p.qos == rumqttc::QoS::AtLeastOnce).then_some(p.pkid),
            PacketRef::V5(p) => (p.qos == QoS5::AtLeastOnce).then_some(p.pkid),
        }
    }
}

impl Client {
    /// Hand the ack to the event loop without waiting; false when the request channel is full
    /// (or the event loop is gone; `ack` then says so).
    pub fn try_ack(&self, packet: &PacketRef) -> bool {
        match (self, packet) {
            (Client::V4(c), PacketRef::V4(p)) => c.try_ack(p).is_ok(),
            (Client::V5(c), PacketRef::V5(p)) => c.try_ack(p).is_ok(),
            _ => false,
        }
    }

    /// Send the ack; false when the event loop is gone.
    pub async fn ack(&self, packet: &PacketRef) -> bool {
        match (self, packet) {
            (Client::V4(c), PacketRef::V4(p)) => c.ack(p).await.is_ok(),
            (Client::V5(c), PacketRef::V5(p)) => c.ack(p).await.is_ok(),
            // A token always comes from the same connection as its client.
            _ => false,
        }
    }

    /// Subscribe to every filter with QoS 1 without waiting; false when the request channel is
    /// full.
    pub fn try_subscribe(&self, topics: &[String]) -> bool {
        match self {
            Client::V4(c) => c.try_subscribe_many(filters_v4(topics)).is_ok(),
            Client::V5(c) => c.try_subscribe_many(filters_v5(topics)).is_ok(),
        }
    }

    /// Subscribe to every filter with QoS 1, waiting for room in the request channel. Await it
    /// on a task other than the one polling the event loop: the channel drains only as the loop
    /// is polled. A gone event loop is ignored; the broker's refusals come back from `poll` as
    /// [`Polled::SubscriptionsRefused`].
    pub async fn subscribe(&self, topics: &[String]) {
        let _ = match self {
            Client::V4(c) => c.subscribe_many(filters_v4(topics)).await,
            Client::V5(c) => c.subscribe_many(filters_v5(topics)).await.map_err(|_| {
                rumqttc::ClientError::Request(rumqttc::Request::Disconnect(rumqttc::Disconnect))
            }),
        };
    }

    /// Ask the event loop to send DISCONNECT after the requests already queued (acks
    /// included), waiting for room in the request channel. A gone event loop is ignored.
    pub async fn disconnect(&self) {
        let _ = match self {
            Client::V4(c) => c.disconnect().await.is_ok(),
            Client::V5(c) => c.disconnect().await.is_ok(),
        };
    }
}

fn filters_v4(topics: &[String]) -> Vec<rumqttc::SubscribeFilter> {
    topics
        .iter()
        .map(|t| rumqttc::SubscribeFilter::new(t.clone(), rumqttc::QoS::AtLeastOnce))
        .collect()
}

fn filters_v5(topics: &[String]) -> Vec<p5::Filter> {
    topics
        .iter()
        .map(|t| p5::Filter::new(t.clone(), QoS5::AtLeastOnce))
        .collect()
}
