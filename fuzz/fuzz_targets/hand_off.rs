//! Any bytes as control traffic the engine hands off (NOTIFY, AXFR, IXFR,
//! signed queries), through the primary as the transports call it, over
//! UDP and TCP: every reply carries the query's id with QR set, a UDP
//! reply fits in a datagram, and a transfer ends.
//!
//! The check lives in `fuzz/checks/hand_off.rs`, which the replay test
//! `crates/ferrodns/tests/fuzz_regressions.rs` runs too.
#![no_main]

/// Where `test-data` is, from this crate's manifest.
const TEST_DATA: &str = "../test-data";

#[path = "../checks/zones.rs"]
mod zones;
#[path = "../checks/hand_off.rs"]
mod hand_off;

libfuzzer_sys::fuzz_target!(|data: &[u8]| hand_off::check(data));
