#![no_main]
//! `cargo +nightly fuzz run decode_json_mapping`: see fuzz/harness.rs for what it runs and the input layout.

#[path = "../harness.rs"]
mod harness;

libfuzzer_sys::fuzz_target!(|data: &[u8]| harness::decode_json_mapping(data));
