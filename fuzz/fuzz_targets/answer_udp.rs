//! Any bytes through the answer path as a UDP worker runs it: parsed in
//! place, the prefetch stages, then `respond_parsed`, which may take the
//! one-pass writer. The reply must be the layered path's (`respond`) octet
//! for octet, carry the query's id with QR set, and fit in 1232 octets.
//!
//! The check lives in `fuzz/checks/answer_udp.rs`, which the replay test
//! `crates/ferrodns/tests/fuzz_regressions.rs` runs too.
#![no_main]

/// Where `test-data` is, from this crate's manifest.
const TEST_DATA: &str = "../test-data";

#[path = "../checks/zones.rs"]
mod zones;
#[path = "../checks/answer_udp.rs"]
mod answer_udp;

libfuzzer_sys::fuzz_target!(|data: &[u8]| answer_udp::check(data));
