//! rumqttc's MQTT 3.1.1 and MQTT 5 clients behind one closed set of types, so the connection
//! logic in `mqtt.rs` is written once.

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
    Disconnected,
    Other,
}

impl EventLoop {
    /// Poll once. Errors are described as text: the caller logs them and reconnects.
    pub async fn poll(&mut self) -> Result<Polled, String> {
        match self {
            EventLoop::V4(e) => {
                use rumqttc::{Event, Outgoing, Packet, SubscribeReasonCode};
                Ok(match e.poll().await.map_err(describe_v4)? {
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
                    Event::Outgoing(Outgoing::Disconnect) => Polled::Disconnected,
                    _ => Polled::Other,
                })
            }
            EventLoop::V5(e) => {
                use rumqttc::{
                    Outgoing,
                    v5::{Event, mqttbytes::v5::Packet},
                };
                Ok(match e.poll().await.map_err(|e| e.to_string())? {
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
                    Event::Outgoing(Outgoing::Disconnect) => Polled::Disconnected,
                    _ => Polled::Other,
                })
            }
        }
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

impl Client {
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

    pub async fn subscribe(&self, topics: &[String]) {
        let _ = match self {
            Client::V4(c) => c.subscribe_many(filters_v4(topics)).await,
            Client::V5(c) => c.subscribe_many(filters_v5(topics)).await.map_err(|_| {
                rumqttc::ClientError::Request(rumqttc::Request::Disconnect(rumqttc::Disconnect))
            }),
        };
    }

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
