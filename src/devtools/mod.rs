//! Developer tooling, apart from the data path: what the zero-setup default and the benchmarks
//! run beside the service, never between an IOC's broker and the store.
//!
//! - [`broker`]: the embedded MQTT broker the simulator publishes to and the feeds read from.
//! - [`simulate`]: the simulator of the three IOCs, in their own formats.
//! - [`loadgen`]: load generation and API probing for `scripts/bench.sh`.
//!
//! Production points the feeds at the IOCs' own brokers and turns the first two off in config.

pub mod broker;
pub mod loadgen;
pub mod simulate;
