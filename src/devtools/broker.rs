//! The embedded MQTT broker (rumqttd) of the zero-setup default: the simulator publishes to it
//! and the feeds subscribe to it, so `cargo run` needs nothing installed. Production points the
//! feeds at the IOCs' own brokers (Mosquitto in docker-compose) and disables this.

use std::{collections::HashMap, net::SocketAddr, time::Duration};

use rumqttd::{Broker, Config, ConnectionSettings, RouterConfig, ServerSettings};
use serde::Deserialize;
use tracing::{error, info};

/// The embedded MQTT broker for the zero-setup default.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct EmbeddedBrokerConfig {
    pub enabled: bool,
    pub listen: SocketAddr,
}

impl Default for EmbeddedBrokerConfig {
    fn default() -> Self {
        EmbeddedBrokerConfig {
            enabled: false,
            listen: SocketAddr::from(([127, 0, 0, 1], 1883)),
        }
    }
}

/// Start the broker on its own threads (rumqttd runs its own runtime and has no shutdown API; it
/// ends with the process). Returns once the listener accepts connections.
pub fn start(listen: SocketAddr) -> anyhow::Result<()> {
    // rumqttd reports a busy port only in its own thread's log; check first so that a broker
    // already listening there is not mistaken for ours.
    std::net::TcpListener::bind(listen).map_err(|e| {
        anyhow::anyhow!("cannot start the embedded MQTT broker on {listen}: {e} (set broker.listen, or broker.enabled = false to use an external broker)")
    })?;
    let config = broker_config(listen);
    std::thread::Builder::new()
        .name("embedded-broker".into())
        .spawn(move || {
            if let Err(e) = Broker::new(config).start() {
                error!(error = %e, "Embedded MQTT broker stopped.");
            }
        })?;
    // Wait until the broker answers MQTT, so the first connections do not fail. The probe is a
    // real session (CONNECT → CONNACK → DISCONNECT): a bare TCP probe would be logged by
    // rumqttd as a failed client, and a bind probe could race the broker's own bind.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while !answers_mqtt(listen) {
        if std::time::Instant::now() > deadline {
            anyhow::bail!("embedded MQTT broker did not start listening on {listen}");
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    info!(%listen, "Embedded MQTT broker listening.");
    Ok(())
}

/// The broker's settings: one MQTT 3.1.1 listener at `listen`, payloads up to 16 MiB.
fn broker_config(listen: SocketAddr) -> Config {
    let connections = ConnectionSettings {
        connection_timeout_ms: 60_000,
        max_payload_size: 16 * 1024 * 1024,
        max_inflight_count: 500,
        auth: None,
        external_auth: None,
        dynamic_filters: true,
    };
    let server = ServerSettings {
        name: "v4-embedded".into(),
        listen,
        tls: None,
        next_connection_delay_ms: 1,
        connections,
    };
    Config {
        id: 0,
        router: RouterConfig {
            max_connections: 1_000,
            max_outgoing_packet_count: 500,
            max_segment_size: 100 * 1024 * 1024,
            max_segment_count: 10,
            ..RouterConfig::default()
        },
        v4: Some(HashMap::from([("1".to_string(), server)])),
        ..Config::default()
    }
}

/// Whether an MQTT 3.1.1 broker accepts a clean session at `addr`.
fn answers_mqtt(addr: SocketAddr) -> bool {
    use std::io::{Read, Write};
    const CONNECT: &[u8] = &[
        0x10, 17, // CONNECT, remaining length
        0x00, 0x04, b'M', b'Q', b'T', b'T', 0x04, // protocol name and level 4 (3.1.1)
        0x02, 0x00, 0x0a, // clean session, keep-alive 10 s
        0x00, 0x05, b'p', b'r', b'o', b'b', b'e', // client id
    ];
    let Ok(mut s) = std::net::TcpStream::connect_timeout(&addr, Duration::from_millis(200)) else {
        return false;
    };
    let _ = s.set_read_timeout(Some(Duration::from_millis(500)));
    let mut connack = [0u8; 4];
    let ok = s.write_all(CONNECT).is_ok()
        && s.read_exact(&mut connack).is_ok()
        && connack[0] == 0x20
        && connack[3] == 0x00;
    let _ = s.write_all(&[0xe0, 0x00]); // DISCONNECT
    ok
}
