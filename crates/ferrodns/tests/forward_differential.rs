//! Forwarding compared with a real resolver: Unbound and ferrodns both
//! forward the corpus zones to one Knot, and answer the corpus's queries
//! (CNAME chains within and across zones, wildcards, NXDOMAIN, NODATA,
//! DNAME, delegations, large answers over UDP and TCP, every record type
//! the engine knows). The rcode and the answer RRsets must be equal, TTLs
//! aside; Unbound gets the first query of each name (its cache warms like
//! ours).

mod support;

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::time::Duration;

use hickory_proto::op::Message;
use support::unbound::start_unbound;
use support::{
    build_query, corpus_zones, query_tcp, query_udp, read_corpus, start_ferrodns, start_knot, temp_dir, Case,
};

#[derive(PartialEq, Eq)]
struct Outcome {
    rcode: String,
    answer: BTreeSet<String>,
}

impl std::fmt::Display for Outcome {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(f, "      {}", self.rcode)?;
        for record in &self.answer {
            writeln!(f, "      {record}")?;
        }
        Ok(())
    }
}

fn outcome(reply: Option<Vec<u8>>) -> Outcome {
    let Some(reply) = reply else { return Outcome { rcode: "TIMEOUT".into(), answer: BTreeSet::new() } };
    match Message::from_vec(&reply) {
        Ok(message) => Outcome {
            rcode: format!(
                "{:?}{}",
                message.metadata.response_code,
                if message.metadata.truncation { " TC" } else { "" }
            ),
            answer: message
                .answers
                .iter()
                // Names compare without case: Unbound writes a CNAME it
                // synthesizes from a DNAME in the query's case.
                .map(|r| format!("{} {} {}", r.name.to_ascii(), r.record_type(), r.data).to_ascii_lowercase())
                .collect(),
        },
        Err(e) => Outcome { rcode: format!("UNPARSABLE ({e})"), answer: BTreeSet::new() },
    }
}

fn ask(addr: SocketAddr, id: u16, case: &Case) -> Outcome {
    // A stub resolver's query: recursion desired.
    let mut query = build_query(id, &case.qname, case.qtype, case.edns, false);
    query[2] |= 0x01;
    let timeout = Duration::from_secs(3);
    outcome(if case.tcp { query_tcp(addr, &query, timeout) } else { query_udp(addr, &query, timeout) })
}

#[test]
fn forwarded_answers_match_unbound() {
    let zones = corpus_zones();
    let knot = start_knot(&zones);
    let origins_text: Vec<&str> = zones.iter().map(|z| z.origin.as_str()).collect();
    let unbound = start_unbound(&origins_text, knot.addr, None);
    let probe = support::ZoneFile {
        origin: "probe.test.".into(),
        path: {
            let dir = temp_dir("probe-zone");
            let path = dir.join("probe.test.zone");
            std::fs::write(
                &path,
                "$ORIGIN probe.test.\n@ 60 SOA ns admin 1 60 60 60 60\n@ 60 NS ns\nns 60 A 192.0.2.1\n",
            )
            .unwrap();
            path
        },
    };
    let forwards: Vec<String> = zones.iter().map(|z| format!("{}={}", z.origin, knot.addr)).collect();
    let mut flags = Vec::new();
    for forward in &forwards {
        flags.extend(["--forward-zone", forward.as_str()]);
    }
    let ferrodns = start_ferrodns(&[probe], &flags);
    let origins: Vec<Vec<u8>> =
        zones.iter().map(|z| ferrodns_proto::Name::parse(&z.origin, None).unwrap().as_wire().to_vec()).collect();
    let under_a_zone = |case: &Case| {
        let lower: Vec<u8> = case.qname.iter().map(u8::to_ascii_lowercase).collect();
        origins.iter().any(|origin| ferrodns_proto::name::is_subdomain(&lower, origin))
    };
    // Meta types are not forwarded alike (Unbound answers some itself), and
    // ANY is answered as each server likes (RFC 8482): Unbound from every
    // RRset it happens to have cached, Knot and ferrodns with one. A
    // DS at a zone's apex belongs to its parent, which no zone here holds
    // (Unbound looks for it from the root).
    let apex_ds =
        |case: &Case| case.qtype == 43 && origins.iter().any(|origin| origin.eq_ignore_ascii_case(&case.qname));
    // outside.example.com is a CNAME to a name in no zone here, which
    // Unbound looks for from the root, out of this sandbox's reach.
    let outside = ferrodns_proto::Name::parse("outside.example.com.", None).unwrap();
    let leaves = |case: &Case| outside.as_wire().eq_ignore_ascii_case(&case.qname);
    let cases: Vec<Case> = read_corpus()
        .into_iter()
        // Ordinary questions only: class IN, opcode QUERY.
        .filter(|case| case.qclass == 1 && !case.notify)
        .filter(|case| {
            under_a_zone(case) && !matches!(case.qtype, 0 | 41 | 128..=255) && !apex_ds(case) && !leaves(case)
        })
        .collect();
    assert!(cases.len() >= 300, "at least 300 queries, have {}", cases.len());
    let mut mismatches = Vec::new();
    for (index, case) in cases.iter().enumerate() {
        let id = index as u16;
        let theirs = ask(unbound.addr, id, case);
        let ours = ask(ferrodns.addr, id, case);
        if ours != theirs {
            eprintln!("DIFF {}\n    ferrodns:\n{ours}    unbound:\n{theirs}", case.line);
            mismatches.push(format!("{}\n    ferrodns:\n{ours}    unbound:\n{theirs}", case.line));
        }
    }
    eprintln!("{} queries, {} differ from Unbound", cases.len(), mismatches.len());
    if !mismatches.is_empty() {
        let shown = mismatches.iter().take(40).cloned().collect::<Vec<_>>().join("\n");
        panic!("{} of {} queries differ from Unbound:\n{shown}", mismatches.len(), cases.len());
    }
}
