//! Zone versions swap atomically while queries run: SIGHUP reloads the zone
//! files, every query during the swap gets either the old or the new answer,
//! and a broken file leaves the previous version serving.

mod support;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use ferrodns_proto::Name;
use support::control::{axfr_lines, Database, Node};
use support::{build_query, query_udp, start_ferrodns, ZoneFile};

fn zone_text(serial: u32, address: &str) -> String {
    format!(
        "$ORIGIN reload.test.\n$TTL 300\n@ SOA ns hostmaster {serial} 3600 900 604800 60\n@ NS ns\nns A 192.0.2.53\nwww A {address}\n"
    )
}

/// The last four octets of the answer to `www.reload.test. A`, or why not.
fn ask(addr: SocketAddr) -> Result<[u8; 4], String> {
    let qname = Name::parse("www.reload.test.", None).unwrap();
    let reply = query_udp(addr, &build_query(9, qname.as_wire(), 1, Some(1232), false), Duration::from_secs(1))
        .ok_or("no reply")?;
    if reply[3] & 0x0f != 0 || u16::from_be_bytes([reply[6], reply[7]]) != 1 {
        return Err(format!("rcode {} with {} answers", reply[3] & 0x0f, reply[7]));
    }
    Ok(reply[reply.len() - 15..reply.len() - 11].try_into().unwrap())
}

#[test]
fn sighup_swaps_zones_atomically_and_keeps_the_old_on_error() {
    let dir = std::env::temp_dir().join(format!("ferrodns-reload-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("reload.test.zone");
    std::fs::write(&path, zone_text(1, "192.0.2.1")).unwrap();
    let server = start_ferrodns(&[ZoneFile { origin: "reload.test.".into(), path: path.clone() }], &[]);
    assert_eq!(ask(server.addr), Ok([192, 0, 2, 1]));

    let stop = Arc::new(AtomicBool::new(false));
    let hammer = {
        let stop = stop.clone();
        let addr = server.addr;
        std::thread::spawn(move || {
            let (mut asked, mut failures) = (0u32, Vec::new());
            while !stop.load(Ordering::Relaxed) {
                asked += 1;
                match ask(addr) {
                    Ok([192, 0, 2, 1]) | Ok([192, 0, 2, 2]) => {}
                    other => failures.push(format!("{other:?}")),
                }
            }
            (asked, failures)
        })
    };

    std::fs::write(&path, zone_text(2, "192.0.2.2")).unwrap();
    server.signal(1);
    let deadline = Instant::now() + Duration::from_secs(5);
    while ask(server.addr) != Ok([192, 0, 2, 2]) {
        assert!(Instant::now() < deadline, "the new version was not served within 5 s:\n{}", server.log());
        std::thread::sleep(Duration::from_millis(20));
    }

    // A broken file: the reload fails and version 2 keeps serving.
    std::fs::write(&path, zone_text(3, "192.0.2.300")).unwrap();
    server.signal(1);
    let deadline = Instant::now() + Duration::from_secs(5);
    while !server.log().contains("reload failed") {
        assert!(Instant::now() < deadline, "no reload failure logged:\n{}", server.log());
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(server.log().contains("reload.test.zone:6: A record: bad address"), "{}", server.log());
    assert_eq!(ask(server.addr), Ok([192, 0, 2, 2]));

    stop.store(true, Ordering::Relaxed);
    let (asked, failures) = hammer.join().unwrap();
    assert!(asked > 10, "only {asked} queries ran during the swaps");
    assert!(
        failures.is_empty(),
        "{} of {asked} queries failed during reloads: {:?}",
        failures.len(),
        &failures[..failures.len().min(5)]
    );
    std::fs::remove_dir_all(dir).unwrap();
}

/// `--zone-file DIR` serves every `*.zone` file in the directory, ignores
/// other files, and a SIGHUP picks up files added since.
#[test]
fn a_zone_directory_serves_every_zone_file_in_it() {
    let dir = std::env::temp_dir().join(format!("ferrodns-zonedir-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let zone = |name: &str, address: &str| {
        format!("$ORIGIN {name}.\n$TTL 300\n@ SOA ns hostmaster 1 3600 900 604800 60\n@ NS ns\nns A 192.0.2.53\nwww A {address}\n")
    };
    std::fs::write(dir.join("a.test.zone"), zone("a.test", "192.0.2.1")).unwrap();
    std::fs::write(dir.join("b.test.zone"), zone("b.test", "192.0.2.2")).unwrap();
    std::fs::write(dir.join("README.txt"), "not a zone file, and not read").unwrap();
    let server = start_ferrodns(&[ZoneFile { origin: "a.test.".into(), path: dir.clone() }], &[]);
    let www = |zone: &str| -> Option<[u8; 4]> {
        let qname = Name::parse(&format!("www.{zone}."), None).unwrap();
        let reply =
            query_udp(server.addr, &build_query(3, qname.as_wire(), 1, Some(1232), false), Duration::from_secs(1))?;
        (reply[3] & 0x0f == 0 && reply[7] == 1).then(|| reply[reply.len() - 15..reply.len() - 11].try_into().unwrap())
    };
    assert_eq!(www("a.test"), Some([192, 0, 2, 1]));
    assert_eq!(www("b.test"), Some([192, 0, 2, 2]));
    assert_eq!(www("c.test"), None);

    std::fs::write(dir.join("c.test.zone"), zone("c.test", "192.0.2.3")).unwrap();
    server.signal(1);
    let deadline = Instant::now() + Duration::from_secs(5);
    while www("c.test") != Some([192, 0, 2, 3]) {
        assert!(Instant::now() < deadline, "c.test was not picked up:\n{}", server.log());
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(www("a.test"), Some([192, 0, 2, 1]));
    let _ = std::fs::remove_dir_all(&dir);
}

/// With a control plane, zone files added before a SIGHUP join the catalog
/// under a new serial, beside the zones in the database.
#[test]
fn zone_files_added_by_sighup_join_the_catalog() {
    let dir = std::env::temp_dir().join(format!("ferrodns-catalog-files-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let zone = |name: &str| {
        format!("$ORIGIN {name}.\n$TTL 300\n@ SOA ns hostmaster 1 3600 900 604800 60\n@ NS ns\nns A 192.0.2.53\n")
    };
    std::fs::write(dir.join("a.test.zone"), zone("a.test")).unwrap();
    let database = Database::sqlite();
    let directory = dir.display().to_string();
    let node = Node::start(&database, &["--zone-file", &directory, "--allow-transfer", "127.0.0.1/32"]);
    let catalog = || axfr_lines(node.dns, "catalog.ferrodns.invalid.", None);
    let lists = |lines: &[String], zone: &str| lines.iter().any(|l| l.ends_with(&format!(" PTR {zone}")));
    let serial = |lines: &[String]| -> u64 {
        let soa = lines.iter().find(|l| l.contains(" SOA ")).expect("a catalog SOA");
        soa.split_whitespace().nth(6).unwrap().parse().unwrap()
    };
    let before = catalog();
    assert!(lists(&before, "a.test.") && !lists(&before, "b.test."), "{before:?}");

    std::fs::write(dir.join("b.test.zone"), zone("b.test")).unwrap();
    node.signal(1);
    let deadline = Instant::now() + Duration::from_secs(5);
    let after = loop {
        let now = catalog();
        if lists(&now, "b.test.") {
            break now;
        }
        assert!(Instant::now() < deadline, "b.test. never joined the catalog: {now:?}\n{}", node.log());
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(lists(&after, "a.test."));
    assert!(serial(&after) > serial(&before), "{before:?} -> {after:?}");
    let _ = std::fs::remove_dir_all(&dir);
}
