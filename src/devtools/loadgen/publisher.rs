//! The load generator's publishing connection.

use std::time::Duration;

use rumqttc::{Event, Packet, Publish, QoS, Request};

/// Publishes written per round, at most.
pub(super) const PUBLISH_ROUND: usize = 1_000;

/// The publishing connection, driven from the publishing loop itself. rumqttc's client writes
/// and flushes every publish on its own (a syscall and a TCP segment per message), which made
/// the load generator a heavy neighbour of what it measures on a two-core machine; here each
/// round of publishes is written with one flush, and the event loop is polled only to read acks
/// (and to reconnect and resend, as rumqttc does).
pub(super) struct Publisher {
    eventloop: rumqttc::EventLoop,
    /// PUBACKs received.
    pub(super) acked: u64,
}

impl Publisher {
    pub(super) fn new(mut eventloop: rumqttc::EventLoop) -> Publisher {
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
    pub(super) fn room(&self) -> u64 {
        let e = &self.eventloop;
        if e.network.is_none() || !e.pending.is_empty() || e.state.collision.is_some() {
            return 0;
        }
        u64::from(e.mqtt_options.inflight().saturating_sub(e.state.inflight()))
    }

    /// Write `messages` as QoS 1 publishes, with one flush. Every message is handed to
    /// rumqttc's state before anything is written, so that after a failed write all of them
    /// are resent on the next connection.
    pub(super) async fn publish(
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
    pub(super) async fn read_acks(&mut self) {
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

    /// Nothing may go now. With the in-flight window full (`room` 0, or a connection to make)
    /// only the broker's acks move things on: read them. Otherwise wait a little for the rate
    /// or the consumer, without blocking on acks: the acks can wait in the socket, and with
    /// nothing flowing from us Mosquitto's small PUBACK writes would sit behind Nagle's
    /// algorithm until our delayed ACK (tens of ms).
    pub(super) async fn wait(&mut self, room: u64) {
        if room == 0 {
            self.read_acks().await;
        } else {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    }

    /// Poll until the disconnect requested through the client has gone out.
    pub(super) async fn closed(&mut self) {
        loop {
            match self.eventloop.poll().await {
                Ok(Event::Outgoing(rumqttc::Outgoing::Disconnect)) | Err(_) => return,
                Ok(_) => {}
            }
        }
    }
}
