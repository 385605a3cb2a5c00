//! Repository rules that run as ordinary tests.
//!
//! The crate graph in ARCHITECTURE.md ("crate | depends on") must be the
//! graph the manifests declare: a dependency added or dropped without the
//! document fails here.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

fn workspace() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap().parent().unwrap()
}

/// Each crate's ferrodns dependencies, from its `[dependencies]` table.
fn manifests() -> BTreeMap<String, BTreeSet<String>> {
    let mut graph = BTreeMap::new();
    for entry in std::fs::read_dir(workspace().join("crates")).unwrap() {
        let dir = entry.unwrap().path();
        let manifest = std::fs::read_to_string(dir.join("Cargo.toml")).unwrap();
        let mut in_dependencies = false;
        let mut deps = BTreeSet::new();
        for line in manifest.lines() {
            if line.starts_with('[') {
                in_dependencies = line.trim() == "[dependencies]";
            } else if in_dependencies {
                if let Some(name) = line.split(['.', ' ', '=']).next().filter(|n| n.starts_with("ferrodns-")) {
                    deps.insert(name.trim_start_matches("ferrodns-").to_string());
                }
            }
        }
        graph.insert(dir.file_name().unwrap().to_string_lossy().into_owned(), deps);
    }
    graph
}

/// The table in ARCHITECTURE.md.
fn documented() -> BTreeMap<String, BTreeSet<String>> {
    let text = std::fs::read_to_string(workspace().join("ARCHITECTURE.md")).unwrap();
    let mut graph = BTreeMap::new();
    let mut lines = text.lines().skip_while(|l| !l.starts_with("| crate | depends on |")).skip(2);
    for line in lines.by_ref().take_while(|l| l.starts_with('|')) {
        let cells: Vec<&str> = line.trim_matches('|').split('|').map(str::trim).collect();
        let name = cells[0].trim_matches('`').to_string();
        let deps = match cells[1] {
            "none" => BTreeSet::new(),
            list => list.split(',').map(|d| d.trim().to_string()).collect(),
        };
        graph.insert(name, deps);
    }
    graph
}

#[test]
fn architecture_shows_the_crate_graph_the_manifests_declare() {
    let documented = documented();
    assert!(!documented.is_empty(), "ARCHITECTURE.md has no \"| crate | depends on |\" table");
    assert_eq!(documented, manifests(), "ARCHITECTURE.md's crate table and the Cargo.toml files disagree");
}
