//! Sources: where raw messages come from. One MQTT connection per configured feed.

mod config;
pub mod mqtt;
mod protocol;
mod tls;

pub use config::{BrokerAddr, FeedConfig, MqttProtocol, parse_broker_url};
pub use mqtt::{AckToken, Acks, Delivery, SourceError, connect};
pub use protocol::write_between_polls;
