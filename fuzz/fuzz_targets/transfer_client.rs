//! Any bytes as a primary's answer to our SOA query or transfer: the
//! client's parser never panics, and what it accepts is well formed (every
//! record's RDATA passes the zone rules' record check, so it can be built).
//!
//! The check lives in `fuzz/checks/transfer_client.rs`, which the replay test
//! `crates/ferrodns/tests/fuzz_regressions.rs` runs too.
#![no_main]

#[path = "../checks/transfer_client.rs"]
mod transfer_client;

libfuzzer_sys::fuzz_target!(|data: &[u8]| transfer_client::check(data));
