//! Replays, through each fuzz target's own check (`fuzz/checks/*.rs`, the
//! same code cargo-fuzz runs), every input a fuzzer once failed on
//! (`test-data/fuzz-regressions/<target>-*`) and every input of the target's
//! kept corpus (`fuzz/corpus/<target>/`). A fuzzing run's findings thereby
//! become ordinary tests that CI runs.

use std::path::{Path, PathBuf};

/// Where `test-data` is, from this crate's manifest.
const TEST_DATA: &str = "../../test-data";

#[path = "../../../fuzz/checks/zones.rs"]
mod zones;

#[path = "../../../fuzz/checks/answer_udp.rs"]
mod answer_udp;
#[path = "../../../fuzz/checks/api_json.rs"]
mod api_json;
#[path = "../../../fuzz/checks/hand_off.rs"]
mod hand_off;
#[path = "../../../fuzz/checks/transfer_client.rs"]
mod transfer_client;
#[path = "../../../fuzz/checks/tsig.rs"]
mod tsig;

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// The inputs kept for `target`: its regressions and its corpus.
fn inputs(target: &str) -> Vec<PathBuf> {
    let mut paths = Vec::new();
    if let Ok(entries) = std::fs::read_dir(workspace().join("test-data/fuzz-regressions")) {
        for entry in entries {
            let path = entry.unwrap().path();
            if path.file_name().unwrap().to_string_lossy().starts_with(&format!("{target}-")) {
                paths.push(path);
            }
        }
    }
    if let Ok(entries) = std::fs::read_dir(workspace().join("fuzz/corpus").join(target)) {
        paths.extend(entries.map(|e| e.unwrap().path()));
    }
    paths.sort();
    paths
}

fn replay(target: &str, check: fn(&[u8])) {
    let inputs = inputs(target);
    assert!(!inputs.is_empty(), "no kept inputs for the {target} fuzz target");
    for path in &inputs {
        let data = std::fs::read(path).unwrap();
        if std::panic::catch_unwind(|| check(&data)).is_err() {
            panic!("{target}: {} fails its check again", path.display());
        }
    }
    println!("{target}: {} inputs replayed", inputs.len());
}

#[test]
fn answer_udp_inputs_pass() {
    replay("answer_udp", answer_udp::check);
}

#[test]
fn tsig_inputs_pass() {
    replay("tsig", tsig::check);
}

#[test]
fn hand_off_inputs_pass() {
    replay("hand_off", hand_off::check);
}

#[test]
fn transfer_client_inputs_pass() {
    replay("transfer_client", transfer_client::check);
}

#[test]
fn api_json_inputs_pass() {
    replay("api_json", api_json::check);
}
