//! A transparent TCP proxy in front of a real broker. It decodes the MQTT 3.1.1 or 5 packets
//! passing through (with rumqttc's codecs), records per connection the QoS 1 publishes the broker sent
//! and the acks the client answered with, and can cut every connection: what the delivery
//! tests use to see acks on the wire and to make a connection fail mid-stream.

use std::sync::{Arc, Mutex};

use bytes::BytesMut;
use ioc_aggregator::source::MqttProtocol;
use rumqttc::v5::mqttbytes::{QoS as QoS5, v5 as p5};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::{TcpListener, TcpStream},
};
use tokio_util::sync::CancellationToken;

/// What passed through one client connection.
#[derive(Debug, Default, Clone)]
pub struct Wire {
    /// Packet ids of the QoS 1 publishes from the broker, in the order sent.
    pub published: Vec<u16>,
    /// Packet ids of the PUBACKs from the client, in the order sent.
    pub acked: Vec<u16>,
}

pub struct MqttTap {
    pub port: u16,
    wires: Arc<Mutex<Vec<Wire>>>,
    /// Cancelled to cut the connections open now; replaced for the next ones.
    cut: Arc<Mutex<CancellationToken>>,
    stop: CancellationToken,
}

impl MqttTap {
    /// Listen on a free loopback port and forward every connection to `broker_port`; the
    /// clients speak `protocol`.
    pub async fn start(broker_port: u16, protocol: MqttProtocol) -> MqttTap {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let wires = Arc::new(Mutex::new(Vec::new()));
        let cut = Arc::new(Mutex::new(CancellationToken::new()));
        let stop = CancellationToken::new();
        let (w, c, s) = (Arc::clone(&wires), Arc::clone(&cut), stop.clone());
        tokio::spawn(async move {
            loop {
                let client = tokio::select! {
                    accepted = listener.accept() => match accepted {
                        Ok((client, _)) => client,
                        Err(_) => continue,
                    },
                    _ = s.cancelled() => return,
                };
                let Ok(broker) = TcpStream::connect(("127.0.0.1", broker_port)).await else {
                    continue;
                };
                let index = {
                    let mut wires = w.lock().unwrap();
                    wires.push(Wire::default());
                    wires.len() - 1
                };
                let cut = c.lock().unwrap().child_token();
                tokio::spawn(relay(client, broker, index, Arc::clone(&w), cut, protocol));
            }
        });
        MqttTap {
            port,
            wires,
            cut,
            stop,
        }
    }

    /// Close every connection open now, as a network failure would.
    pub fn cut(&self) {
        let mut cut = self.cut.lock().unwrap();
        cut.cancel();
        *cut = CancellationToken::new();
    }

    pub fn wires(&self) -> Vec<Wire> {
        self.wires.lock().unwrap().clone()
    }

    pub fn acked(&self) -> usize {
        self.wires
            .lock()
            .unwrap()
            .iter()
            .map(|w| w.acked.len())
            .sum()
    }
}

impl Drop for MqttTap {
    fn drop(&mut self) {
        self.stop.cancel();
        self.cut.lock().unwrap().cancel();
    }
}

/// Copy both ways until either side closes or the connection is cut.
async fn relay(
    client: TcpStream,
    broker: TcpStream,
    index: usize,
    wires: Arc<Mutex<Vec<Wire>>>,
    cut: CancellationToken,
    protocol: MqttProtocol,
) {
    let (client_rx, client_tx) = client.into_split();
    let (broker_rx, broker_tx) = broker.into_split();
    let up = pump(client_rx, broker_tx, index, Arc::clone(&wires), protocol);
    let down = pump(broker_rx, client_tx, index, wires, protocol);
    tokio::select! {
        _ = async { tokio::join!(up, down) } => {}
        _ = cut.cancelled() => {}
    }
    // Dropping both halves of both sockets closes them.
}

/// The packets the tests look at.
enum Seen {
    /// A QoS 1 publish (its packet id).
    Publish(u16),
    PubAck(u16),
    Other,
}

/// The next whole packet in `pending`, if there is one.
fn next_packet(pending: &mut BytesMut, protocol: MqttProtocol) -> Option<Seen> {
    const MAX: usize = 16 << 20;
    Some(match protocol {
        MqttProtocol::V4 => match rumqttc::Packet::read(pending, MAX).ok()? {
            rumqttc::Packet::Publish(p) if p.qos == rumqttc::QoS::AtLeastOnce => {
                Seen::Publish(p.pkid)
            }
            rumqttc::Packet::PubAck(a) => Seen::PubAck(a.pkid),
            _ => Seen::Other,
        },
        MqttProtocol::V5 => match p5::Packet::read(pending, Some(MAX as u32)).ok()? {
            p5::Packet::Publish(p) if p.qos == QoS5::AtLeastOnce => Seen::Publish(p.pkid),
            p5::Packet::PubAck(a) => Seen::PubAck(a.pkid),
            _ => Seen::Other,
        },
    })
}

/// Forward one direction, recording publishes (broker to client) and acks (client to broker).
async fn pump(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    index: usize,
    wires: Arc<Mutex<Vec<Wire>>>,
    protocol: MqttProtocol,
) {
    let mut chunk = vec![0u8; 64 * 1024];
    let mut pending = BytesMut::new();
    loop {
        let n = match from.read(&mut chunk).await {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        // Record before forwarding, so that nothing is answered before it is recorded.
        pending.extend_from_slice(&chunk[..n]);
        {
            let mut wires = wires.lock().unwrap();
            let wire = &mut wires[index];
            while let Some(seen) = next_packet(&mut pending, protocol) {
                match seen {
                    Seen::Publish(pkid) => wire.published.push(pkid),
                    Seen::PubAck(pkid) => wire.acked.push(pkid),
                    Seen::Other => {}
                }
            }
        }
        if to.write_all(&chunk[..n]).await.is_err() {
            break;
        }
    }
    let _ = to.shutdown().await;
}
