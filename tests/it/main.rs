//! Integration tests: one binary, shared harness (`common`). Everything runs through the real
//! path: MQTT over TCP to a real broker, the real store, the HTTP API.

mod alerts;
mod api;
mod cli;
mod common;
mod delivery;
mod influx;
mod ingest;
mod ops_page;
mod security;
mod tap;
mod tls;
