//! Any bytes as the body of `POST /v1/zones/{zone}/changes`, through the
//! API's parser and into the control plane's planner against a zone with
//! CNAMEs, a DNAME, a delegation with glue and DS, and a wildcard. Whatever
//! the planner accepts must build as a zone: a write the server cannot
//! publish is never committed.
//!
//! The check lives in `fuzz/checks/api_json.rs`, which the replay test
//! `crates/ferrodns/tests/fuzz_regressions.rs` runs too.
#![no_main]

#[path = "../checks/api_json.rs"]
mod api_json;

libfuzzer_sys::fuzz_target!(|data: &[u8]| api_json::check(data));
