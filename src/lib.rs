//! ioc-aggregator: the telemetry backbone of Thái Nguyên's three smart-city operations centres.
//!
//! ```text
//!  MQTT brokers (one per IOC)
//!    │  rumqttc, QoS 1, persistent session, manual acks
//!  source    ── RawMessage {feed, topic, payload, received_at}
//!    │
//!  decode    ── per-feed format → Observation(s)                      (pure, sync)
//!    │
//!  normalise ── canonical Reading: metric, unit, UTC time, location   (pure, sync)
//!    │
//!  pipeline  ── per-feed task: decode + normalise → store queue
//!    │
//!  store     ── embedded SQLite: the durability point; the ack follows the commit
//!    │            ├─▶ acks back to the source, in receive order
//!    │            ├─▶ influx forwarder (reads the log by a persisted cursor → InfluxDB 2)
//!    │            └─▶ alerts (rule engine) ─▶ outbox in the store ─▶ webhooks, per receiver
//!  api       ── axum: summaries, VN_AQI, rejects, feed health, metrics, health
//! ```
//!
//! Modules in data-flow order:
//! - [`config`]: loads, merges and validates the configuration, every problem at once; each
//!   component's own config type lives beside it, their shared leaf types in [`settings`].
//! - [`model`]: the stage-boundary types.
//! - [`source`]: MQTT connections, manual acks.
//! - [`decode`]: vendor formats → observations.
//! - [`normalise`]: observations → canonical readings; metric catalogue and units.
//! - [`pipeline`]: wiring of one message's path from source to store and back to the ack.
//! - [`store`]: the embedded store and its queries.
//! - [`influx`]: forwarding of the store's log to InfluxDB 2 by a persisted cursor.
//! - [`aqi`]: VN_AQI (Decision 1459/QĐ-TCMT).
//! - [`stats`]: per-feed counters.
//! - [`health`]: device presence and feed health, the rules the API and the overview share.
//! - [`alert`]: alert rules (pure state machine), the webhook outbox and its delivery.
//! - [`auth`]: bearer tokens, their cities and scopes, and route policies.
//! - [`api`]: the HTTP API, every route behind its policy.
//! - [`app`]: builds and runs everything, shuts down in order.
//! - [`cli`]: the commands of the binary (run, check-config, try-mapping, simulate, loadgen).
//!
//! Apart from the data path, [`devtools`]: the embedded broker and the simulator of the
//! zero-setup default, and the load generator of the benchmarks.

pub mod config;
pub mod model;
pub mod settings;

pub mod source;

pub mod decode;
pub mod normalise;
pub mod pipeline;

pub mod influx;
pub mod store;

pub mod aqi;
pub mod health;
pub mod stats;

pub mod alert;

pub mod api;
pub mod app;
pub mod auth;
pub mod cli;

pub mod devtools;

/// Pick rustls's crypto provider (ring) for this process; HTTPS clients built with reqwest's
/// `rustls-no-provider` (webhooks, the API probe of `loadgen`) need it. Idempotent.
pub fn install_crypto_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}
