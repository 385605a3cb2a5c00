//! Micro-benchmarks of the answer path on the authbench zone shape (100k
//! names): name lookup alone (as loaded, and after a stream of changes),
//! a new version per one-record change, message encoding alone, and whole
//! answers (parse, lookup, encode) for the common kinds of query.
//!
//! `cargo bench -p ferrodns-engine --bench answer`

use std::hint::black_box;
use std::io::Write;
use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use ferrodns_engine::{respond, Outcome, Transport};
use ferrodns_proto::message::Section;
use ferrodns_proto::{MessageWriter, Name, RecordType};
use ferrodns_zone::edit::{Diff, Record, Records};
use ferrodns_zone::live::apply_to_zone;
use ferrodns_zone::{load_zone_file, Zone, ZoneSet};

const NAMES: usize = 100_000;

/// The authbench zone (same owners, types and proportions), loaded from a
/// master file as the server loads it.
fn bench_zone() -> Zone {
    let path = std::env::temp_dir().join(format!("ferrodns-bench-{}.zone", std::process::id()));
    let mut file = std::io::BufWriter::new(std::fs::File::create(&path).unwrap());
    writeln!(file, "$ORIGIN bench.test.\n$TTL 3600").unwrap();
    writeln!(file, "@ IN SOA ns1 hostmaster 2024010101 7200 3600 1209600 300").unwrap();
    writeln!(file, "@ IN NS ns1\n@ IN NS ns2\nns1 IN A 192.0.2.1\nns2 IN A 192.0.2.2").unwrap();
    writeln!(file, "@ IN MX 10 mail\nmail IN A 192.0.2.25\n*.wild IN A 192.0.2.99").unwrap();
    writeln!(file, "sub IN NS ns.sub\nns.sub IN A 192.0.2.53").unwrap();
    for i in 0..NAMES {
        writeln!(file, "h{i} IN A 10.{}.{}.{}", (i >> 16) & 255, (i >> 8) & 255, i & 255).unwrap();
        if i % 4 == 0 {
            writeln!(file, "h{i} IN AAAA 2001:db8::{:x}:{:x}", i >> 16, i & 0xffff).unwrap();
        }
        if i % 10 == 0 {
            writeln!(file, "c{i} IN CNAME h{}", (i * 7919) % NAMES).unwrap();
        }
        if i % 20 == 0 {
            writeln!(file, "h{i} IN MX 10 mail").unwrap();
        }
    }
    drop(file);
    let zone = load_zone_file(&path, false).expect("the bench zone loads").zone;
    let _ = std::fs::remove_file(&path);
    zone
}

fn lower_wire(name: &str) -> Vec<u8> {
    Name::parse(name, None).unwrap().to_lowercase().as_wire().to_vec()
}

/// A query with EDNS (payload 1232), as dnsperf sends them.
fn query(id: u16, name: &str, qtype: RecordType) -> Vec<u8> {
    let mut packet = Vec::new();
    packet.extend_from_slice(&id.to_be_bytes());
    packet.extend_from_slice(&[0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 1]);
    packet.extend_from_slice(Name::parse(name, None).unwrap().as_wire());
    packet.extend_from_slice(&qtype.0.to_be_bytes());
    packet.extend_from_slice(&[0, 1]);
    packet.extend_from_slice(&[0, 0, 41, 0x04, 0xd0, 0, 0, 0, 0, 0, 0]);
    packet
}

fn names(prefix: &str, step: usize) -> Vec<String> {
    (0..1024).map(|i| format!("{prefix}{}.bench.test.", (i * 7877 * step) % NAMES / step * step)).collect()
}

/// Step `step` of a stream of API changes: one name's address replaced
/// and the serial moved on.
fn one_change(zone: &Zone, step: u32) -> Arc<Diff> {
    let owner = Name::parse(&format!("h{}.bench.test.", step * 331 % NAMES as u32), None).unwrap();
    let old = zone.node(owner.to_lowercase().as_wire()).unwrap().rrset(RecordType::A).unwrap().first().to_vec();
    let old_soa = zone.soa().first().to_vec();
    let mut new_soa = old_soa.clone();
    let at = new_soa.len() - 20;
    new_soa[at..at + 4].copy_from_slice(&(zone.serial().0 + 1).to_be_bytes());
    let record = |owner: &Name, rtype, rdata: Vec<u8>| Record { owner: owner.clone(), rtype, ttl: 3600, rdata };
    let apex = zone.apex().clone();
    let mut diff = Diff {
        old_serial: zone.serial(),
        new_serial: ferrodns_proto::Serial(zone.serial().0 + 1),
        removed: Records::new(),
        added: Records::new(),
    };
    diff.removed.push_record(&record(&apex, RecordType::SOA, old_soa));
    diff.removed.push_record(&record(&owner, RecordType::A, old));
    diff.added.push_record(&record(&apex, RecordType::SOA, new_soa));
    diff.added.push_record(&record(&owner, RecordType::A, vec![198, 51, (step >> 8) as u8, step as u8]));
    Arc::new(diff)
}

/// `zone` after 300 one-record changes, as a stream of API changes leaves
/// it: the changed names and the apex in an overlay beside the base, which
/// every lookup asks first.
fn changed(zone: Zone) -> Zone {
    let mut zone = Arc::new(zone);
    for step in 0..300u32 {
        zone = Arc::new(apply_to_zone(&zone, &one_change(&zone, step)).unwrap());
    }
    assert!(zone.overlay_len() > 0, "the changes went into an overlay");
    Arc::into_inner(zone).unwrap()
}

/// A new version per one-record change, as publishing an API change makes
/// it: the mean includes the folds of the overlay into a new base that
/// every few hundred changes bring.
fn change(c: &mut Criterion, zone: Zone) {
    let mut group = c.benchmark_group("change");
    group.throughput(Throughput::Elements(1));
    let mut zone = Arc::new(zone);
    let mut step = 0u32;
    group.bench_function("one-record replacement, new version", |b| {
        b.iter_custom(|iterations| {
            let mut spent = Duration::ZERO;
            for _ in 0..iterations {
                step += 1;
                let diff = one_change(&zone, step);
                let start = Instant::now();
                let next = apply_to_zone(&zone, &diff).unwrap();
                spent += start.elapsed();
                zone = Arc::new(next);
            }
            spent
        })
    });
    group.finish();
}

fn lookup(c: &mut Criterion, zone: &Zone, changed: &Zone) {
    let hits: Vec<Vec<u8>> = names("h", 1).iter().map(|n| lower_wire(n)).collect();
    let misses: Vec<Vec<u8>> = (0..1024).map(|i| lower_wire(&format!("nx{i}.bench.test."))).collect();
    let mut group = c.benchmark_group("lookup");
    group.throughput(Throughput::Elements(1));
    let cases = [
        ("existing name, A", zone, &hits),
        ("missing name (NXDOMAIN)", zone, &misses),
        ("existing name, A, after 300 changes", changed, &hits),
        ("missing name, after 300 changes", changed, &misses),
    ];
    let mut i = 0;
    for (label, zone, names) in cases {
        group.bench_function(label, |b| {
            b.iter(|| {
                i = (i + 1) & 1023;
                black_box(zone.lookup(black_box(&names[i]), RecordType::A).wildcard)
            })
        });
    }
    group.finish();
}

fn encode(c: &mut Criterion, zone: &Zone) {
    let apex = zone.apex_lower().to_vec();
    let ns = zone.node(&apex).unwrap().rrset(RecordType::NS).unwrap();
    let soa = zone.soa();
    let owner = lower_wire("h42.bench.test.");
    let a = zone.node(&owner).unwrap().rrset(RecordType::A).unwrap();
    let mut out = Vec::with_capacity(1232);
    let mut group = c.benchmark_group("encode");
    group.throughput(Throughput::Elements(1));
    group.bench_function("question + A + SOA + 2 NS, compressed", |b| {
        b.iter(|| {
            let mut writer = MessageWriter::new(&mut out, 1232);
            writer.set_header(1, 0x8400);
            let _ = writer.push_question(&owner, RecordType::A, ferrodns_proto::Class::IN);
            let _ = writer.push_rrset(Section::Answer, &owner, RecordType::A, a.ttl, a.packed());
            let _ = writer.push_rrset(Section::Authority, &apex, RecordType::NS, ns.ttl, ns.packed());
            let _ = writer.push_rrset(Section::Additional, &apex, RecordType::SOA, soa.ttl, soa.packed());
            black_box(writer.len())
        })
    });
    group.finish();
}

fn answer(c: &mut Criterion, zones: &ZoneSet) {
    let kinds: [(&str, Vec<Vec<u8>>); 5] = [
        ("A, existing name", names("h", 1).iter().map(|n| query(1, n, RecordType::A)).collect()),
        ("AAAA, existing name", names("h", 4).iter().map(|n| query(1, n, RecordType::AAAA)).collect()),
        ("A via CNAME", names("c", 10).iter().map(|n| query(1, n, RecordType::A)).collect()),
        ("wildcard", (0..1024).map(|i| query(1, &format!("x{i}.wild.bench.test."), RecordType::A)).collect()),
        ("NXDOMAIN", (0..1024).map(|i| query(1, &format!("nx{i}.bench.test."), RecordType::A)).collect()),
    ];
    let mut group = c.benchmark_group("answer");
    group.throughput(Throughput::Elements(1));
    for (kind, packets) in &kinds {
        let mut out = Vec::with_capacity(1232);
        let mut i = 0;
        group.bench_function(*kind, |b| {
            b.iter_batched_ref(
                || (),
                |_| {
                    i = (i + 1) & 1023;
                    let outcome = respond(zones, black_box(&packets[i]), Transport::Udp, &mut out);
                    debug_assert_eq!(outcome, Outcome::Reply);
                    black_box(out.len())
                },
                BatchSize::SmallInput,
            )
        });
    }
    group.finish();
}

fn benches(c: &mut Criterion) {
    let zone = bench_zone();
    let after_changes = changed(bench_zone());
    lookup(c, &zone, &after_changes);
    change(c, after_changes);
    encode(c, &zone);
    let mut zones = ZoneSet::new();
    zones.insert(Arc::new(zone));
    answer(c, &zones);
}

criterion_group!(answer_path, benches);
criterion_main!(answer_path);
