//! The lookup half of RFC 1034 §4.3.2 within one zone, with RFC 4592 wildcards
//! and RFC 6672 DNAME, returning a typed [`Answer`].
//!
//! This module decides *what* the answer is; the engine crate decides how it
//! is written (CNAME chasing across zones, SOA in authority, glue, EDNS, TC).

use ferrodns_proto::name::MAX_NAME_LEN;
use ferrodns_proto::RecordType;

use crate::zone::{Node, RRset, Zone};

/// What a zone holds for a qname and qtype.
#[derive(Debug, Clone, Copy)]
pub enum Answer<'z> {
    /// The RRset asked for.
    Found(Node<'z>, RRset<'z>),
    /// A qtype of ANY at a name with data: the node, for RFC 8482 handling.
    Any(Node<'z>),
    /// The name holds a CNAME and the qtype is something else.
    Cname(Node<'z>, RRset<'z>),
    /// The name exists but has no RRset of the qtype.
    NoData(Node<'z>),
    /// The name does not exist and no wildcard covers it.
    NxDomain,
    /// The qname is at or below a zone cut; the node holds the cut's NS RRset.
    Referral(Node<'z>),
    /// An ancestor of the qname owns a DNAME (RFC 6672 §2.3).
    Dname(Node<'z>, RRset<'z>),
}

/// An [`Answer`] plus whether it was synthesized from a wildcard; a wildcard
/// answer is owned by the qname, not by the `*` node that holds its data.
#[derive(Debug, Clone, Copy)]
pub struct Lookup<'z> {
    pub answer: Answer<'z>,
    pub wildcard: bool,
}

impl Zone {
    /// Looks up a lowercase wire qname that is at or below this zone's apex.
    pub fn lookup(&self, qname_lower: &[u8], qtype: RecordType) -> Lookup<'_> {
        self.lookup_hashed(qname_lower, self.hash_name(qname_lower), qtype)
    }

    /// As [`Zone::lookup`], with the qname's hash ([`crate::name_hash`])
    /// already known, as it is to a transport that prefetched the qname's node.
    pub fn lookup_hashed(&self, qname_lower: &[u8], qname_hash: u64, qtype: RecordType) -> Lookup<'_> {
        debug_assert!(ferrodns_proto::name::is_subdomain(qname_lower, self.apex_lower()));
        let apex_offset = qname_lower.len() - self.apex_lower().len();
        if apex_offset > 0 && 1 + qname_lower[0] as usize == apex_offset {
            // A child of the apex, the commonest qname: the walk below is
            // the apex (a DNAME there), then the qname's own node.
            if self.apex_has_dname() {
                let apex = self.apex_node();
                if let Some(dname) = apex.rrset(RecordType::DNAME) {
                    return Lookup { answer: Answer::Dname(apex, dname), wildcard: false };
                }
            }
            return match self.node_hashed(qname_lower, qname_hash) {
                Some(node) => self.at_qname(node, false, qtype),
                None => self.synthesize(self.apex_node(), qtype),
            };
        }
        // Offsets of each label of the qname, so that suffixes can be walked from the apex down.
        let mut starts = [0u8; 128];
        let count = ferrodns_proto::name::label_starts(qname_lower, &mut starts);
        let apex_index = starts[..count].iter().position(|&s| s as usize == apex_offset).unwrap_or(count);
        let mut index = apex_index;
        let mut encloser: Option<Node<'_>> = None;
        loop {
            let at_apex = index == apex_index;
            let at_qname = index == 0;
            let node = if at_apex {
                self.apex_node()
            } else if at_qname {
                let Some(node) = self.node_hashed(qname_lower, qname_hash) else { break };
                node
            } else {
                let Some(node) = self.node(&qname_lower[starts[index] as usize..]) else { break };
                node
            };
            if at_qname {
                return self.at_qname(node, at_apex, qtype);
            }
            // An ancestor of the qname: a cut (below the apex) or a DNAME ends the walk.
            let dname = if at_apex {
                self.apex_dname(node)
            } else {
                let types = NodeTypes::of(node, RecordType::DNAME);
                if types.ns {
                    return Lookup { answer: Answer::Referral(node), wildcard: false };
                }
                types.found
            };
            if let Some(dname) = dname {
                return Lookup { answer: Answer::Dname(node, dname), wildcard: false };
            }
            encloser = Some(node);
            index -= 1;
        }
        match encloser {
            Some(encloser) => self.synthesize(encloser, qtype),
            None => Lookup { answer: Answer::NxDomain, wildcard: false },
        }
    }

    /// The apex's DNAME, asked of the apex node only when the zone says it has one.
    #[inline]
    fn apex_dname<'z>(&'z self, apex: Node<'z>) -> Option<RRset<'z>> {
        if self.apex_has_dname() {
            apex.rrset(RecordType::DNAME)
        } else {
            None
        }
    }

    /// The answer at the qname's own node: a cut (unless it is the apex, or
    /// DS asks for the parent side), or its data.
    #[inline]
    fn at_qname<'z>(&'z self, node: Node<'z>, at_apex: bool, qtype: RecordType) -> Lookup<'z> {
        // One pass over the node's RRsets finds the cut, a CNAME and the qtype.
        let types = NodeTypes::of(node, qtype);
        if !at_apex && types.ns && qtype != RecordType::DS {
            return Lookup { answer: Answer::Referral(node), wildcard: false };
        }
        Lookup { answer: exact(node, qtype, &types), wildcard: false }
    }

    /// The qname does not exist below `encloser`, its closest encloser: a
    /// wildcard answers (RFC 4592 §3.3.1: the source of synthesis is
    /// `*.<closest encloser>`), or it is NXDOMAIN.
    fn synthesize<'z>(&'z self, encloser: Node<'z>, qtype: RecordType) -> Lookup<'z> {
        let mut wildcard = [0u8; MAX_NAME_LEN + 2];
        let closest = encloser.name();
        if closest.len() + 2 > MAX_NAME_LEN {
            return Lookup { answer: Answer::NxDomain, wildcard: false };
        }
        wildcard[0] = 1;
        wildcard[1] = b'*';
        wildcard[2..2 + closest.len()].copy_from_slice(closest);
        wildcard[2..2 + closest.len()].make_ascii_lowercase();
        match self.node(&wildcard[..2 + closest.len()]) {
            Some(source) => Lookup { answer: exact(source, qtype, &NodeTypes::of(source, qtype)), wildcard: true },
            None => Lookup { answer: Answer::NxDomain, wildcard: false },
        }
    }
}

/// What one pass over a node's RRsets tells a lookup.
struct NodeTypes<'z> {
    /// The node has an NS RRset (a zone cut, unless it is the apex).
    ns: bool,
    cname: Option<RRset<'z>>,
    /// The RRset of the type asked for.
    found: Option<RRset<'z>>,
}

impl<'z> NodeTypes<'z> {
    #[inline]
    fn of(node: Node<'z>, qtype: RecordType) -> NodeTypes<'z> {
        let mut types = NodeTypes { ns: false, cname: None, found: None };
        for rrset in node.rrsets() {
            match rrset.rtype {
                RecordType::NS => types.ns = true,
                RecordType::CNAME => types.cname = Some(rrset),
                _ => {}
            }
            if rrset.rtype == qtype {
                types.found = Some(rrset);
            }
        }
        types
    }
}

fn exact<'z>(node: Node<'z>, qtype: RecordType, types: &NodeTypes<'z>) -> Answer<'z> {
    if qtype == RecordType::ANY {
        return if node.is_empty_non_terminal() { Answer::NoData(node) } else { Answer::Any(node) };
    }
    match (types.cname, types.found) {
        (Some(cname), _) if qtype != RecordType::CNAME => Answer::Cname(node, cname),
        (_, Some(rrset)) => Answer::Found(node, rrset),
        _ => Answer::NoData(node),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ferrodns_proto::Name;

    fn zone() -> Zone {
        crate::zone::tests::build(
            "$ORIGIN example.\n$TTL 300\n@ SOA ns h 1 1 1 1 60\n@ NS ns\nns A 192.0.2.1\n\
             *.wild TXT \"w\"\n*.wild MX 10 ns\nalias.wild CNAME ns\nx.ent.deep A 192.0.2.9\n\
             sub NS ns.sub\nns.sub A 192.0.2.53\nsub DS 1 8 2 ABCD\n\
             d DNAME example.net.\n*.cn CNAME ns\n",
        )
        .unwrap()
    }

    fn ask(zone: &Zone, qname: &str, qtype: RecordType) -> String {
        let name = Name::parse(qname, None).unwrap().to_lowercase();
        let lookup = zone.lookup(name.as_wire(), qtype);
        let what = match lookup.answer {
            Answer::Found(_, rrset) => format!("found {}", rrset.rtype),
            Answer::Any(_) => "any".into(),
            Answer::Cname(..) => "cname".into(),
            Answer::NoData(_) => "nodata".into(),
            Answer::NxDomain => "nxdomain".into(),
            Answer::Referral(node) => format!("referral {}", Name::from_wire(node.name()).unwrap()),
            Answer::Dname(node, _) => format!("dname {}", Name::from_wire(node.name()).unwrap()),
        };
        if lookup.wildcard {
            format!("{what} (wildcard)")
        } else {
            what
        }
    }

    #[test]
    fn follows_rfc_1034_and_4592() {
        let zone = zone();
        let cases = [
            ("example.", RecordType::SOA, "found SOA"),
            ("EXAMPLE.", RecordType::A, "nodata"),
            ("ns.example.", RecordType::A, "found A"),
            ("nope.example.", RecordType::A, "nxdomain"),
            ("a.wild.example.", RecordType::TXT, "found TXT (wildcard)"),
            ("a.b.wild.example.", RecordType::MX, "found MX (wildcard)"),
            ("a.wild.example.", RecordType::A, "nodata (wildcard)"),
            ("wild.example.", RecordType::A, "nodata"),
            ("alias.wild.example.", RecordType::TXT, "cname"),
            ("x.alias.wild.example.", RecordType::TXT, "nxdomain"),
            ("deep.example.", RecordType::A, "nodata"),
            ("ent.deep.example.", RecordType::A, "nodata"),
            ("y.ent.deep.example.", RecordType::A, "nxdomain"),
            ("sub.example.", RecordType::A, "referral sub.example."),
            ("sub.example.", RecordType::DS, "found DS"),
            ("sub.example.", RecordType::NS, "referral sub.example."),
            ("ns.sub.example.", RecordType::A, "referral sub.example."),
            ("x.ns.sub.example.", RecordType::DS, "referral sub.example."),
            ("d.example.", RecordType::A, "nodata"),
            ("d.example.", RecordType::DNAME, "found DNAME"),
            ("x.d.example.", RecordType::A, "dname d.example."),
            ("q.cn.example.", RecordType::A, "cname (wildcard)"),
            ("q.cn.example.", RecordType::CNAME, "found CNAME (wildcard)"),
            ("ns.example.", RecordType::ANY, "any"),
            ("deep.example.", RecordType::ANY, "nodata"),
        ];
        for (qname, qtype, expected) in cases {
            assert_eq!(ask(&zone, qname, qtype), expected, "{qname} {qtype}");
        }
    }
}
