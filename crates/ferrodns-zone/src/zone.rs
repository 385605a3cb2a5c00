//! The in-memory zone: an immutable snapshot of nodes, each holding its RRsets,
//! indexed by lowercase owner name, built and checked by [`ZoneBuilder`].
//!
//! A [`Zone`] never changes once built. A new version is a new `Zone`, published
//! by swapping an `Arc` (see [`crate::ZoneSet`]), so readers never wait for
//! writers. The table holds every owner name plus every empty non-terminal, so
//! the closest encloser of a qname is its longest suffix present in the table.

use std::collections::HashMap;
use std::fmt;
use std::hash::BuildHasher;

use ferrodns_proto::name::{self, MAX_NAME_LEN};
use ferrodns_proto::{Name, RecordType, Serial};
use hashbrown::HashTable;

/// An RRset: records of one owner and type, sharing a TTL.
#[derive(Clone, PartialEq, Eq)]
pub struct RRset {
    pub rtype: RecordType,
    pub ttl: u32,
    /// The RDATAs, each as a 16-bit length followed by the uncompressed RDATA.
    packed: Box<[u8]>,
}

impl RRset {
    /// Builds an RRset from RDATAs in wire form.
    pub fn new<'a>(rtype: RecordType, ttl: u32, rdatas: impl IntoIterator<Item = &'a [u8]>) -> RRset {
        let mut packed = Vec::new();
        for rdata in rdatas {
            packed.extend_from_slice(&(rdata.len() as u16).to_be_bytes());
            packed.extend_from_slice(rdata);
        }
        RRset { rtype, ttl, packed: packed.into_boxed_slice() }
    }

    /// The RDATAs in this crate's packed form, as the message writer takes them.
    pub fn packed(&self) -> &[u8] {
        &self.packed
    }

    /// Each RDATA in wire form.
    pub fn rdatas(&self) -> RdataIter<'_> {
        RdataIter { packed: &self.packed }
    }

    /// How many records.
    pub fn len(&self) -> usize {
        self.rdatas().count()
    }

    /// True for an RRset with no records (never stored in a zone).
    pub fn is_empty(&self) -> bool {
        self.packed.is_empty()
    }
}

impl fmt::Debug for RRset {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "RRset({} ttl={} n={})", self.rtype, self.ttl, self.len())
    }
}

/// Iterates over the RDATAs of an [`RRset`].
pub struct RdataIter<'a> {
    packed: &'a [u8],
}

impl<'a> Iterator for RdataIter<'a> {
    type Item = &'a [u8];
    fn next(&mut self) -> Option<&'a [u8]> {
        if self.packed.len() < 2 {
            return None;
        }
        let len = u16::from_be_bytes([self.packed[0], self.packed[1]]) as usize;
        let rdata = &self.packed[2..2 + len];
        self.packed = &self.packed[2 + len..];
        Some(rdata)
    }
}

/// One owner name and its RRsets. An empty non-terminal has no RRsets.
pub struct Node {
    /// Wire name in the case the zone data gave it.
    name: Box<[u8]>,
    rrsets: Box<[RRset]>,
}

impl Node {
    /// The owner in wire form, original case.
    pub fn name(&self) -> &[u8] {
        &self.name
    }

    /// The RRsets, sorted by type.
    pub fn rrsets(&self) -> &[RRset] {
        &self.rrsets
    }

    /// The RRset of a type, if present.
    #[inline]
    pub fn rrset(&self, rtype: RecordType) -> Option<&RRset> {
        self.rrsets.iter().find(|r| r.rtype == rtype)
    }

    /// True for a name that exists only because names below it do (RFC 4592 §2.2.2).
    pub fn is_empty_non_terminal(&self) -> bool {
        self.rrsets.is_empty()
    }
}

impl fmt::Debug for Node {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut owner = String::new();
        let _ = name::write_presentation(&self.name, &mut owner);
        write!(f, "Node({owner} {:?})", self.rrsets)
    }
}

/// A zone snapshot.
pub struct Zone {
    apex: Name,
    apex_lower: Box<[u8]>,
    nodes: HashTable<Node>,
    hasher: foldhash::fast::RandomState,
    serial: Serial,
    negative_ttl: u32,
    record_count: usize,
}

impl fmt::Debug for Zone {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Zone({} serial={} nodes={})", self.apex, self.serial.0, self.nodes.len())
    }
}

fn lowercase_into<'b>(wire: &[u8], buffer: &'b mut [u8; MAX_NAME_LEN]) -> &'b [u8] {
    let out = &mut buffer[..wire.len()];
    out.copy_from_slice(wire);
    out.make_ascii_lowercase();
    out
}

impl Zone {
    /// The apex name, original case.
    pub fn apex(&self) -> &Name {
        &self.apex
    }

    /// The apex in lowercase wire form.
    pub fn apex_lower(&self) -> &[u8] {
        &self.apex_lower
    }

    /// The SOA serial.
    pub fn serial(&self) -> Serial {
        self.serial
    }

    /// The TTL of negative answers: min(SOA TTL, SOA MINIMUM) (RFC 2308 §5).
    pub fn negative_ttl(&self) -> u32 {
        self.negative_ttl
    }

    /// How many records, empty non-terminals not counted.
    pub fn record_count(&self) -> usize {
        self.record_count
    }

    /// How many nodes, empty non-terminals included.
    pub fn node_count(&self) -> usize {
        self.nodes.len()
    }

    /// The apex node.
    pub fn apex_node(&self) -> &Node {
        self.node(&self.apex_lower).expect("a built zone has its apex")
    }

    /// The apex SOA RRset.
    pub fn soa(&self) -> &RRset {
        self.apex_node().rrset(RecordType::SOA).expect("a built zone has an SOA")
    }

    /// Looks up a node by lowercase wire name.
    #[inline]
    pub fn node(&self, name_lower: &[u8]) -> Option<&Node> {
        let hash = self.hasher.hash_one(name_lower);
        self.nodes.find(hash, |node| node.name.eq_ignore_ascii_case(name_lower))
    }

    /// Looks up a node by a name in any case.
    pub fn node_any_case(&self, name: &[u8]) -> Option<&Node> {
        let mut buffer = [0u8; MAX_NAME_LEN];
        self.node(lowercase_into(name, &mut buffer))
    }

    /// Every node, in no particular order.
    pub fn nodes(&self) -> impl Iterator<Item = &Node> {
        self.nodes.iter()
    }

    /// Every node in canonical order (RFC 4034 §6.1), apex first.
    pub fn nodes_sorted(&self) -> Vec<&Node> {
        let mut nodes: Vec<&Node> = self.nodes.iter().collect();
        nodes.sort_by(|a, b| name::canonical_cmp(&a.name, &b.name));
        nodes
    }
}

/// A problem that stops a zone from loading, or a warning about its data.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ZoneError {
    /// The master-file line of the record concerned, when known.
    pub line: Option<usize>,
    pub message: String,
}

impl fmt::Display for ZoneError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.line {
            Some(line) => write!(f, "line {line}: {}", self.message),
            None => f.write_str(&self.message),
        }
    }
}

struct PendingRRset {
    rtype: RecordType,
    ttl: u32,
    rdatas: Vec<Vec<u8>>,
    line: Option<usize>,
}

/// Collects records, then checks and freezes them into a [`Zone`].
pub struct ZoneBuilder {
    apex: Name,
    nodes: HashMap<Name, Vec<PendingRRset>>,
    errors: Vec<ZoneError>,
    warnings: Vec<ZoneError>,
}

impl ZoneBuilder {
    /// Starts a zone with this apex.
    pub fn new(apex: Name) -> ZoneBuilder {
        ZoneBuilder { apex, nodes: HashMap::new(), errors: Vec::new(), warnings: Vec::new() }
    }

    /// The apex.
    pub fn apex(&self) -> &Name {
        &self.apex
    }

    /// Adds one record. Out-of-zone owners are refused at once. A record equal
    /// to one already present is dropped, as an RRset is a set.
    pub fn add(&mut self, owner: Name, rtype: RecordType, ttl: u32, rdata: &[u8], line: Option<usize>) {
        if !owner.is_subdomain_of(&self.apex) {
            self.errors.push(ZoneError { line, message: format!("{owner} is outside the zone {}", self.apex) });
            return;
        }
        if let Err(e) = ferrodns_proto::rdata::validate_wire(rtype, rdata) {
            self.errors.push(ZoneError { line, message: format!("{owner} {rtype}: {e}") });
            return;
        }
        let rrsets = self.nodes.entry(owner).or_default();
        match rrsets.iter_mut().find(|r| r.rtype == rtype) {
            Some(rrset) => {
                if rrset.ttl != ttl {
                    // RFC 2181 §5.2: one TTL per RRset. Keep the first, as Knot does, and say so.
                    self.warnings.push(ZoneError {
                        line,
                        message: format!(
                            "{rtype} TTL {ttl} differs from the RRset's TTL {}; using {}",
                            rrset.ttl, rrset.ttl
                        ),
                    });
                }
                if !rrset.rdatas.iter().any(|existing| existing == rdata) {
                    rrset.rdatas.push(rdata.to_vec());
                }
            }
            None => rrsets.push(PendingRRset { rtype, ttl, rdatas: vec![rdata.to_vec()], line }),
        }
    }

    /// Warnings collected so far (data kept, but worth an operator's look).
    pub fn warnings(&self) -> &[ZoneError] {
        &self.warnings
    }

    /// Runs the load-time checks and freezes the zone. On error nothing is built.
    pub fn finish(mut self) -> Result<(Zone, Vec<ZoneError>), Vec<ZoneError>> {
        self.check();
        if !self.errors.is_empty() {
            return Err(self.errors);
        }
        let apex_lower: Box<[u8]> = self.apex.to_lowercase().into_wire();
        let apex_len = apex_lower.len();
        let mut nodes: HashTable<Node> = HashTable::with_capacity(self.nodes.len() + self.nodes.len() / 8);
        let hasher = foldhash::fast::RandomState::default();
        let mut record_count = 0;
        let mut buffer = [0u8; MAX_NAME_LEN];
        let mut soa = None;
        for (owner, mut pending) in self.nodes {
            pending.sort_by_key(|r| r.rtype);
            let rrsets: Box<[RRset]> = pending
                .into_iter()
                .map(|r| {
                    record_count += r.rdatas.len();
                    RRset::new(r.rtype, r.ttl, r.rdatas.iter().map(Vec::as_slice))
                })
                .collect();
            let wire = owner.into_wire();
            let lower = lowercase_into(&wire, &mut buffer);
            if lower == &apex_lower[..] {
                soa = rrsets.iter().find(|r| r.rtype == RecordType::SOA).cloned();
            }
            let hash = hasher.hash_one(lower);
            let node = Node { name: wire, rrsets };
            nodes.insert_unique(hash, node, |n| hasher.hash_one(lowercase_into(&n.name, &mut [0u8; MAX_NAME_LEN])));
        }
        // Empty non-terminals: every name between an owner and the apex exists.
        let owners: Vec<Box<[u8]>> = nodes.iter().map(|n| n.name.clone()).collect();
        for owner in owners {
            let mut pos = 0;
            loop {
                pos += 1 + owner[pos] as usize;
                if owner.len() - pos <= apex_len {
                    break;
                }
                let ancestor = &owner[pos..];
                let lower = lowercase_into(ancestor, &mut buffer);
                let hash = hasher.hash_one(lower);
                if nodes.find(hash, |n| n.name.eq_ignore_ascii_case(lower)).is_some() {
                    break;
                }
                let node = Node { name: ancestor.into(), rrsets: Box::new([]) };
                nodes.insert_unique(hash, node, |n| hasher.hash_one(lowercase_into(&n.name, &mut [0u8; MAX_NAME_LEN])));
            }
        }
        let soa = soa.expect("check() guarantees an apex SOA");
        let soa_rdata = soa.rdatas().next().expect("SOA RRset has a record");
        let fixed = &soa_rdata[soa_rdata.len() - 20..];
        let serial = Serial(u32::from_be_bytes(fixed[0..4].try_into().expect("4 octets")));
        let minimum = u32::from_be_bytes(fixed[16..20].try_into().expect("4 octets"));
        let zone = Zone {
            apex: self.apex,
            apex_lower,
            nodes,
            hasher,
            serial,
            negative_ttl: soa.ttl.min(minimum),
            record_count,
        };
        Ok((zone, self.warnings))
    }

    fn check(&mut self) {
        let apex = self.apex.clone();
        match self.nodes.get(&apex) {
            None => self.errors.push(ZoneError { line: None, message: format!("no SOA at the apex {apex}") }),
            Some(rrsets) => {
                match rrsets.iter().find(|r| r.rtype == RecordType::SOA) {
                    None => self.errors.push(ZoneError { line: None, message: format!("no SOA at the apex {apex}") }),
                    Some(soa) if soa.rdatas.len() > 1 => self.errors.push(ZoneError {
                        line: soa.line,
                        message: format!("more than one SOA record at the apex {apex}"),
                    }),
                    Some(_) => {}
                }
                if !rrsets.iter().any(|r| r.rtype == RecordType::NS) {
                    self.errors.push(ZoneError { line: None, message: format!("no NS records at the apex {apex}") });
                }
            }
        }
        let cuts: Vec<Name> = self
            .nodes
            .iter()
            .filter(|(owner, rrsets)| **owner != apex && rrsets.iter().any(|r| r.rtype == RecordType::NS))
            .map(|(owner, _)| owner.clone())
            .collect();
        let dnames: Vec<Name> = self
            .nodes
            .iter()
            .filter(|(_, rrsets)| rrsets.iter().any(|r| r.rtype == RecordType::DNAME))
            .map(|(owner, _)| owner.clone())
            .collect();
        for (owner, rrsets) in &self.nodes {
            for rrset in rrsets {
                if rrset.rtype == RecordType::SOA && *owner != apex {
                    self.errors.push(ZoneError {
                        line: rrset.line,
                        message: format!("SOA at {owner}, which is not the apex"),
                    });
                }
            }
            if let Some(cname) = rrsets.iter().find(|r| r.rtype == RecordType::CNAME) {
                let others: Vec<String> = rrsets
                    .iter()
                    .filter(|r| !matches!(r.rtype, RecordType::CNAME | RecordType::RRSIG | RecordType::NSEC))
                    .map(|r| r.rtype.to_string())
                    .collect();
                if !others.is_empty() {
                    self.errors.push(ZoneError {
                        line: cname.line,
                        message: format!(
                            "CNAME at {owner} beside other data ({}); a CNAME excludes all other data",
                            others.join(", ")
                        ),
                    });
                } else if cname.rdatas.len() > 1 {
                    self.errors
                        .push(ZoneError { line: cname.line, message: format!("more than one CNAME at {owner}") });
                }
                if *owner == apex {
                    self.errors.push(ZoneError { line: cname.line, message: format!("CNAME at the apex {apex}") });
                }
            }
            if let Some(dname) = rrsets.iter().find(|r| r.rtype == RecordType::DNAME) {
                if dname.rdatas.len() > 1 {
                    self.errors
                        .push(ZoneError { line: dname.line, message: format!("more than one DNAME at {owner}") });
                }
            }
            let below_cut = cuts.iter().find(|cut| *owner != **cut && owner.is_subdomain_of(cut));
            if let Some(cut) = below_cut {
                for rrset in rrsets.iter().filter(|r| !matches!(r.rtype, RecordType::A | RecordType::AAAA)) {
                    self.warnings.push(ZoneError {
                        line: rrset.line,
                        message: format!("{owner} {} is below the zone cut at {cut} and is occluded", rrset.rtype),
                    });
                }
            }
            if let Some(dname) = dnames.iter().find(|d| *owner != **d && owner.is_subdomain_of(d)) {
                self.warnings.push(ZoneError {
                    line: rrsets.first().and_then(|r| r.line),
                    message: format!("{owner} is below the DNAME at {dname} and is occluded"),
                });
            }
        }
        self.errors.sort_by_key(|e| e.line);
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::masterfile::{parse_str, ParseOptions};

    pub(crate) fn build(text: &str) -> Result<Zone, Vec<String>> {
        let options = ParseOptions::default();
        let parsed = parse_str(text.as_bytes(), "t", &options);
        assert!(parsed.errors.is_empty(), "{:?}", parsed.errors);
        let apex = parsed
            .first_origin
            .clone()
            .or_else(|| parsed.records.iter().find(|r| r.rtype == RecordType::SOA).map(|r| r.owner.clone()))
            .unwrap_or_else(Name::root);
        let mut builder = ZoneBuilder::new(apex);
        for r in parsed.records {
            builder.add(r.owner, r.rtype, r.ttl, &r.rdata, Some(r.line));
        }
        builder.finish().map(|(zone, _)| zone).map_err(|errors| errors.iter().map(ToString::to_string).collect())
    }

    const HEAD: &str = "$ORIGIN example.\n$TTL 300\n@ SOA ns h 7 1 1 1 60\n@ NS ns\nns A 192.0.2.1\n";

    #[test]
    fn builds_nodes_and_empty_non_terminals() {
        let zone = build(&format!("{HEAD}a.b.c A 192.0.2.2\nA.B.C A 192.0.2.2\nA.B.C A 192.0.2.3\n")).unwrap();
        assert_eq!(zone.serial(), Serial(7));
        assert_eq!(zone.negative_ttl(), 60);
        assert_eq!(zone.record_count(), 5);
        assert!(zone.node(b"\x01b\x01c\x07example\x00").unwrap().is_empty_non_terminal());
        assert!(zone.node(b"\x01c\x07example\x00").unwrap().is_empty_non_terminal());
        let node = zone.node_any_case(b"\x01A\x01b\x01C\x07EXAMPLE\x00").unwrap();
        assert_eq!(node.rrset(RecordType::A).unwrap().len(), 2);
        assert_eq!(zone.node_count(), 5);
    }

    #[test]
    fn load_checks_refuse_bad_zones() {
        let cases = [
            ("$ORIGIN example.\n$TTL 1\n@ NS ns\n", "no SOA at the apex example."),
            ("$ORIGIN example.\n$TTL 1\n@ SOA ns h 1 1 1 1 1\n", "no NS records at the apex example."),
            (
                &format!("{HEAD}www CNAME a\nwww A 192.0.2.1\n"),
                "line 6: CNAME at www.example. beside other data (A); a CNAME excludes all other data",
            ),
            (&format!("{HEAD}x.other. A 192.0.2.1\n"), "line 6: x.other. is outside the zone example."),
            (&format!("{HEAD}sub SOA ns h 1 1 1 1 1\n"), "line 6: SOA at sub.example., which is not the apex"),
        ];
        for (text, expected) in cases {
            assert_eq!(build(text).unwrap_err(), [expected.to_string()], "{text}");
        }
    }
}
