//! Sources: where raw messages come from. One MQTT connection per configured feed.

pub mod mqtt;
mod protocol;

pub use mqtt::{AckToken, Delivery, MqttConnection, SourceError, connect};
pub use protocol::write_between_polls;
