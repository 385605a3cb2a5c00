//! Differential test: ferrodns against real Knot DNS and NSD.
//!
//! All three serve the zones under test-data/zones, with the same identity
//! and NSID and the version hidden. Every query in
//! test-data/queries/corpus.txt goes to each of them, and ferrodns must give
//! the same rcode, opcode, AA and TC flags, answer and authority sections (as
//! sets), OPT or none, NSID and Extended DNS Error code as Knot or as NSD.
//! Known, intended differences are listed in docs/differences.md; none is
//! waived here.

mod support;

use std::collections::BTreeSet;
use std::fmt;
use std::net::SocketAddr;
use std::time::Duration;

use hickory_proto::op::Message;
use support::{
    case_query, corpus_zones, query_tcp, query_udp, read_corpus, reply_options, start_ferrodns, start_knot, start_nsd,
    Case, CORPUS_IDENTITY, CORPUS_NSID,
};

/// The parts of a response that must match.
#[derive(PartialEq, Eq, Clone, Default)]
struct Outcome {
    rcode: String,
    opcode: String,
    aa: bool,
    tc: bool,
    answer: BTreeSet<String>,
    authority: BTreeSet<String>,
    /// Whether the reply has an OPT record.
    edns: bool,
    /// The NSID option's data, if any.
    nsid: Option<Vec<u8>>,
    /// The Extended DNS Error info-code, if any.
    ede: Option<u16>,
}

impl fmt::Display for Outcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "      rcode={} opcode={} aa={} tc={} edns={} nsid={:?} ede={:?}",
            self.rcode,
            self.opcode,
            self.aa,
            self.tc,
            self.edns,
            self.nsid.as_ref().map(|n| String::from_utf8_lossy(n).into_owned()),
            self.ede
        )?;
        for r in &self.answer {
            writeln!(f, "      AN {r}")?;
        }
        for r in &self.authority {
            writeln!(f, "      NS {r}")?;
        }
        Ok(())
    }
}

fn record_text(record: &hickory_proto::rr::Record) -> String {
    format!("{} {} {} {}", record.name.to_ascii().to_ascii_lowercase(), record.ttl, record.record_type(), record.data)
}

fn outcome(reply: Option<Vec<u8>>) -> Outcome {
    let Some(reply) = reply else {
        return Outcome { rcode: "TIMEOUT".into(), ..Outcome::default() };
    };
    let options = reply_options(&reply);
    let option = |wanted: u16| options.iter().flatten().find(|(code, _)| *code == wanted).map(|(_, data)| data.clone());
    match Message::from_vec(&reply) {
        Ok(message) => Outcome {
            rcode: format!("{:?}", message.metadata.response_code),
            opcode: format!("{:?}", message.metadata.op_code),
            aa: message.metadata.authoritative,
            tc: message.metadata.truncation,
            answer: message.answers.iter().map(record_text).collect(),
            authority: message.authorities.iter().map(record_text).collect(),
            edns: options.is_some(),
            nsid: option(3),
            ede: option(15).filter(|data| data.len() >= 2).map(|data| u16::from_be_bytes([data[0], data[1]])),
        },
        Err(e) => Outcome { rcode: format!("UNPARSABLE ({e})"), ..Outcome::default() },
    }
}

fn ask(addr: SocketAddr, id: u16, case: &Case) -> Outcome {
    let query = case_query(id, case);
    let timeout = Duration::from_secs(2);
    outcome(if case.tcp { query_tcp(addr, &query, timeout) } else { query_udp(addr, &query, timeout) })
}

#[test]
fn answers_match_knot_or_nsd() {
    let zones = corpus_zones();
    let cases = read_corpus();
    assert!(cases.len() >= 1000, "the corpus must hold at least 1,000 queries, has {}", cases.len());
    let knot = start_knot(&zones);
    let nsd = start_nsd(&zones);
    let ferrodns = start_ferrodns(&zones, &["--identity", CORPUS_IDENTITY, "--nsid", CORPUS_NSID]);
    let mut mismatches = Vec::new();
    let mut knot_matches = 0;
    let mut nsd_only_matches = 0;
    for (index, case) in cases.iter().enumerate() {
        let id = index as u16;
        let ours = ask(ferrodns.addr, id, case);
        let theirs_knot = ask(knot.addr, id, case);
        let theirs_nsd = ask(nsd.addr, id, case);
        if ours == theirs_knot {
            knot_matches += 1;
        } else if ours == theirs_nsd {
            nsd_only_matches += 1;
            eprintln!("matches NSD, not Knot: {}", case.line);
        } else {
            mismatches
                .push(format!("{}\n    ferrodns:\n{ours}    knot:\n{theirs_knot}    nsd:\n{theirs_nsd}", case.line));
        }
    }
    eprintln!(
        "{} queries: {} match Knot, {} match NSD only, {} match neither",
        cases.len(),
        knot_matches,
        nsd_only_matches,
        mismatches.len()
    );
    if !mismatches.is_empty() {
        let shown = mismatches.iter().take(40).cloned().collect::<Vec<_>>().join("\n");
        panic!("{} of {} queries match neither Knot nor NSD:\n{shown}", mismatches.len(), cases.len());
    }
}
