//! Whatever the change planner accepts, the server can publish.
//!
//! Random batches (CNAME, DNAME, NS cuts, DS, glue, wildcards, the apex NS
//! and SOA) go through [`edit::plan`] against the zone's current RRsets. Each
//! accepted batch must build as a whole zone ([`live::build_zone`], the path
//! a restart takes) and as a new version of the served one
//! ([`live::apply_to_zone`], the path a write takes), and the two must hold
//! the same records. Refused batches must leave the zone as it was. The
//! planner and the builder share one set of rules (`rules`); this test is
//! what keeps them from drifting apart again.

use ferrodns_proto::{Name, RecordType, Serial};
use ferrodns_zone::edit::{self, Action, Change, Diff, Limits, RRsetData, Record, Working};
use ferrodns_zone::live::{apply_to_zone, build_zone};
use ferrodns_zone::writer::write_zone;

fn name(text: &str) -> Name {
    Name::parse(text, None).unwrap()
}

fn soa(serial: u32) -> Vec<u8> {
    let mut rdata = name("ns.example.").as_wire().to_vec();
    rdata.extend_from_slice(name("h.example.").as_wire());
    for value in [serial, 3600, 600, 86400, 60] {
        rdata.extend_from_slice(&value.to_be_bytes());
    }
    rdata
}

/// The zone's records, one line each, sorted: two builds compare by this.
fn lines(zone: &ferrodns_zone::Zone) -> Vec<String> {
    let mut lines: Vec<String> =
        write_zone(zone).lines().filter(|l| !l.starts_with('$')).map(str::to_lowercase).collect();
    lines.sort();
    lines
}

struct Random(u64);

impl Random {
    fn below(&mut self, n: usize) -> usize {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 % n as u64) as usize
    }

    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }
}

/// One random change, drawn so that many break a rule and many do not.
fn random_change(random: &mut Random) -> Change {
    const OWNERS: &[&str] = &[
        "example.",
        "a.example.",
        "b.example.",
        "c.b.example.",
        "*.example.",
        "*.b.example.",
        "sub.example.",
        "ns.sub.example.",
        "x.sub.example.",
        "d.example.",
        "y.d.example.",
        "deep.y.d.example.",
    ];
    use RecordType as T;
    const TYPES: &[RecordType] = &[T::A, T::AAAA, T::CNAME, T::DNAME, T::NS, T::DS, T::TXT, T::MX, T::SOA];
    let owner = name(OWNERS[random.below(OWNERS.len())]);
    let rtype = *random.pick(TYPES);
    let action = *random.pick(&[Action::Create, Action::Upsert, Action::Upsert, Action::Delete]);
    let count = 1 + random.below(3);
    let rdatas: Vec<Vec<u8>> = (0..count)
        .map(|i| {
            let n = random.below(3) as u8 + i as u8;
            match rtype {
                T::A => vec![192, 0, 2, n],
                T::AAAA => [&[0x20, 0x01, 0x0d, 0xb8][..], &[0; 11], &[n]].concat(),
                T::CNAME | T::DNAME | T::NS => name(&format!("t{n}.example.net.")).as_wire().to_vec(),
                T::DS => vec![0, n, 8, 2, 1, 2, 3, 4],
                T::TXT => vec![1, b'a' + n],
                T::MX => [&[0, n][..], name("mx.example.net.").as_wire()].concat(),
                T::SOA => soa(n as u32),
                _ => unreachable!(),
            }
        })
        .collect();
    // Deletes name their records only some of the time.
    let rdatas = if action == Action::Delete && random.below(2) == 0 { Vec::new() } else { rdatas };
    Change { action, owner, rtype, ttl: Some(300), rdatas }
}

#[test]
fn accepted_batches_build_and_match_the_served_version() {
    let apex = name("example.");
    let mut state = Working::new();
    for set in [
        RRsetData::new(&apex, RecordType::SOA, 300, vec![soa(1)]),
        RRsetData::new(&apex, RecordType::NS, 300, vec![name("ns.example.net.").as_wire().to_vec()]),
    ] {
        state.insert(set.key(), set);
    }
    let mut served = build_zone(&apex, state.values()).unwrap();
    let mut random = Random(0x2545_f491_4f6c_dd1d);
    let (mut accepted, mut refused) = (0, 0);
    for step in 0..2000 {
        let changes: Vec<Change> = (0..1 + random.below(3)).map(|_| random_change(&mut random)).collect();
        let Ok(batch) = edit::Checked::new(&apex, changes, &Limits::default()) else {
            refused += 1;
            continue;
        };
        let owners = batch.owners();
        let current: Working = state
            .iter()
            .filter(|(key, _)| owners.contains(&key.owner))
            .map(|(key, set)| (key.clone(), set.clone()))
            .collect();
        let plan = match edit::plan(current, &batch) {
            Ok(plan) => plan,
            Err(_) => {
                refused += 1;
                continue;
            }
        };
        if plan.writes.is_empty() {
            continue;
        }
        accepted += 1;
        // Move the serial as the store does.
        let serial = served.serial();
        let old_soa = Record { owner: apex.clone(), rtype: RecordType::SOA, ttl: 300, rdata: soa(serial.0) };
        let new_soa = Record { rdata: soa(serial.0 + 1), ..old_soa.clone() };
        for (key, set) in &plan.writes {
            match set {
                Some(set) => state.insert(key.clone(), set.clone()),
                None => state.remove(key),
            };
        }
        let soa_set = RRsetData::new(&apex, RecordType::SOA, 300, vec![new_soa.rdata.clone()]);
        state.insert(soa_set.key(), soa_set);
        let (mut removed, mut added) = (plan.removed, plan.added);
        removed.push_front(&old_soa);
        added.push_front(&new_soa);
        let diff = Diff { old_serial: serial, new_serial: Serial(serial.0 + 1), removed, added };
        let rebuilt = build_zone(&apex, state.values()).unwrap_or_else(|e| {
            panic!("step {step}: accepted {:?} but the zone does not build: {e:?}", batch.changes())
        });
        let next = apply_to_zone(&served, &std::sync::Arc::new(diff)).unwrap_or_else(|e| {
            panic!("step {step}: accepted {:?} but it cannot be published: {e:?}", batch.changes())
        });
        assert_eq!(lines(&next), lines(&rebuilt), "step {step}: {:?}", batch.changes());
        served = next;
    }
    // The draw must exercise both outcomes, or the test proves little.
    assert!(accepted > 400 && refused > 400, "accepted {accepted}, refused {refused}");
}
