//! Any bytes as a TSIG-signed message: finding the TSIG record and checking
//! a request's or a response's MAC never panics. Then the bytes are signed
//! with a known key: when the TSIG is found again where it was appended, the
//! MAC verifies, and any change to a signed octet makes it fail.
//!
//! The check lives in `fuzz/checks/tsig.rs`, which the replay test
//! `crates/ferrodns/tests/fuzz_regressions.rs` runs too.
#![no_main]

#[path = "../checks/tsig.rs"]
mod tsig;

libfuzzer_sys::fuzz_target!(|data: &[u8]| tsig::check(data));
