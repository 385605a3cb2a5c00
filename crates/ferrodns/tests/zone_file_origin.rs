//! A BIND zone file without `$ORIGIN` (the zone's name lives in
//! named.conf): `--zone-file NAME=FILE` and `check-zone NAME=FILE` load it
//! as zone NAME, as BIND and Knot do from their configuration.

mod support;

use std::process::Command;

use support::control::dns_lookup;
use support::{start_ferrodns, temp_dir, ZoneFile};

const BIND_STYLE: &str = "$TTL 3600
@       IN SOA  ns1 hostmaster 2024010101 7200 3600 1209600 3600
@       IN NS   ns1
ns1     IN A    192.0.2.53
www     IN A    192.0.2.80
";

#[test]
fn name_equals_file_serves_a_file_without_origin() {
    let dir = temp_dir("origin");
    let file = dir.join("db.bind");
    std::fs::write(&file, BIND_STYLE).unwrap();
    let check =
        |argument: &str| Command::new(env!("CARGO_BIN_EXE_ferrodns")).args(["check-zone", argument]).output().unwrap();

    // Alone, the file cannot say which zone it is.
    let alone = check(file.to_str().unwrap());
    assert!(!alone.status.success(), "{}", String::from_utf8_lossy(&alone.stdout));

    let named = format!("bind.test={}", file.display());
    let checked = check(&named);
    let out = String::from_utf8_lossy(&checked.stdout);
    assert!(checked.status.success(), "{out}{}", String::from_utf8_lossy(&checked.stderr));
    assert!(out.contains("zone bind.test. serial 2024010101 loaded, 4 records"), "{out}");

    let server = start_ferrodns(&[ZoneFile { origin: "bind.test.".into(), path: named.into() }], &[]);
    assert_eq!(dns_lookup(server.addr, "www.bind.test.", 1), ("NoError".into(), vec!["192.0.2.80".into()]));
    assert_eq!(dns_lookup(server.addr, "bind.test.", 2).1, ["ns1.bind.test."]);
    let _ = std::fs::remove_dir_all(dir);
}
