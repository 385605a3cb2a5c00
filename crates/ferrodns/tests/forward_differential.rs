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
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use hickory_proto::op::Message;
use support::{
    build_query, corpus_zones, free_port, query_tcp, query_udp, read_corpus, start_ferrodns, start_knot, temp_dir,
    Case, ZoneFile,
};

/// Unbound forwarding every zone to `upstream`, validation off.
struct Unbound {
    addr: SocketAddr,
    child: std::process::Child,
    dir: std::path::PathBuf,
}

impl Drop for Unbound {
    fn drop(&mut self) {
        let _ = self.child.kill();
        eprintln!("unbound log kept in {}", self.dir.display());
        let _ = self.child.wait();
    }
}

fn start_unbound(zones: &[ZoneFile], upstream: SocketAddr) -> Unbound {
    let binary = ["/usr/sbin/unbound", "/usr/bin/unbound"]
        .into_iter()
        .find(|p| std::path::Path::new(p).exists())
        .expect("unbound is not installed; .ci/run installs it (apt-get install unbound)");
    let dir = temp_dir("unbound");
    let port = free_port();
    let mut config = format!(
        "server:\n    interface: 127.0.0.1@{port}\n    port: {port}\n    do-daemonize: no\n    num-threads: 1\n\
         \x20   username: \"\"\n    chroot: \"\"\n    directory: \"{d}\"\n    pidfile: \"{d}/unbound.pid\"\n\
         \x20   use-syslog: no\n    logfile: \"{d}/unbound.log\"\n    verbosity: 1\n    access-control: 127.0.0.0/8 allow\n\
         \x20   do-not-query-localhost: no\n    module-config: \"iterator\"\n    qname-minimisation: no\n\
         \x20   minimal-responses: yes\n    max-udp-size: 1232\n    edns-buffer-size: 1232\n\
         remote-control:\n    control-enable: no\n",
        d = dir.display()
    );
    for zone in zones {
        config.push_str(&format!(
            "forward-zone:\n    name: \"{}\"\n    forward-addr: {}@{}\n",
            zone.origin,
            upstream.ip(),
            upstream.port()
        ));
    }
    std::fs::write(dir.join("unbound.conf"), config).unwrap();
    let child = Command::new(binary)
        .args(["-d", "-c"])
        .arg(dir.join("unbound.conf"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let probe = ferrodns_proto::Name::parse(&zones[0].origin, None).unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    while query_udp(addr, &build_query(1, probe.as_wire(), 6, Some(1232), false), Duration::from_millis(300)).is_none()
    {
        assert!(Instant::now() < deadline, "unbound did not answer in 20 s");
    }
    Unbound { addr, child, dir }
}

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
    let unbound = start_unbound(&zones, knot.addr);
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
