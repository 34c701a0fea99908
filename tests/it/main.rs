//! Integration tests: one binary, shared harness (`common`). Everything runs through the real
//! path: MQTT over TCP to a real broker, the real store, the HTTP API.

mod api;
mod common;
mod delivery;
mod ingest;
