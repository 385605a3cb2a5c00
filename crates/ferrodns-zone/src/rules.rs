//! The zone rules: what every zone ferrodns serves must hold.
//!
//! Data reaches a zone by four paths: the builder (master files, transfers,
//! full rebuilds), the overlay (O(change) versions), the change planner
//! ([`crate::edit::plan`], behind the API and every later way to write) and
//! imports ([`crate::edit::plan_import`]). Every one of them asks this module
//! and none keeps a copy of a rule: a rule that one path checks and another
//! does not lets a write commit that the server then cannot publish. Knot's
//! `semantic-check.c` plays the same part for its loads and updates.
//!
//! The rules look at one record ([`check_record`]) or at one node, given as
//! the types it holds and how many distinct records each has
//! ([`check_node`]). Each path turns a [`Violation`] into its own error shape
//! (a line of a master file, a pointer into an API request).

use std::fmt;

use ferrodns_proto::rdata::{validate_wire, RdataError};
use ferrodns_proto::RecordType;

/// The node arena counts a name's RRsets in one octet.
pub const MAX_TYPES_PER_NAME: usize = 255;

/// The most RDATA a record may carry and still travel in a zone transfer:
/// one TCP message (65,535 octets) holds the header (12), the question (a
/// name of up to 255 octets and 4), the record's owner (up to 255) and fixed
/// fields (10), and room for a TSIG record and an OPT (512). A longer record
/// could be stored and answered over TCP but never transferred, so
/// secondaries would hold other data at the same serial.
pub const MAX_RDATA_LEN: usize = 65_535 - 12 - (255 + 4) - (255 + 10) - 512;

/// Whether records of this type can be kept in a zone: not OPT, TSIG or any
/// other meta or question-only type, and not type 0.
pub fn storable(rtype: RecordType) -> bool {
    rtype.0 != 0 && !rtype.is_meta_or_question_only() && rtype != RecordType::OPT && rtype != RecordType::TSIG
}

/// Types of which one name holds at most one record. A path that counts
/// records per type needs to count distinct records only for these.
pub fn is_singleton(rtype: RecordType) -> bool {
    matches!(rtype, RecordType::SOA | RecordType::CNAME | RecordType::DNAME)
}

/// Why a record cannot be kept, whatever else the zone holds.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RecordProblem {
    /// A meta or question-only type.
    NotStorable(RecordType),
    /// The RDATA is not well formed for its type.
    BadRdata(RecordType, RdataError),
    /// The RDATA is longer than a zone transfer can carry ([`MAX_RDATA_LEN`]).
    TooLong(RecordType, usize),
}

impl fmt::Display for RecordProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RecordProblem::NotStorable(rtype) => write!(f, "{rtype} is not a type that can be stored in a zone"),
            RecordProblem::BadRdata(rtype, error) => write!(f, "{rtype}: {error}"),
            RecordProblem::TooLong(rtype, len) => write!(
                f,
                "{rtype}: {len} octets of RDATA, over the {MAX_RDATA_LEN} a record may have to fit in a zone transfer message"
            ),
        }
    }
}

/// Checks one record on its own.
pub fn check_record(rtype: RecordType, rdata: &[u8]) -> Result<(), RecordProblem> {
    if !storable(rtype) {
        return Err(RecordProblem::NotStorable(rtype));
    }
    if rdata.len() > MAX_RDATA_LEN {
        return Err(RecordProblem::TooLong(rtype, rdata.len()));
    }
    validate_wire(rtype, rdata).map_err(|e| RecordProblem::BadRdata(rtype, e))
}

/// One RRset of a node as the rules see it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RRsetShape {
    pub rtype: RecordType,
    /// Distinct records. Only 0, 1 and "more" matter, and only for the
    /// [`is_singleton`] types, so a path may pass a raw count for the rest.
    pub records: usize,
}

/// A broken node rule.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Violation {
    /// More RRsets at one name than a node can hold.
    TooManyTypes(usize),
    /// The apex has no SOA.
    NoSoa,
    /// The apex has more than one SOA record.
    SeveralSoa,
    /// An SOA below the apex.
    SoaBelowApex,
    /// The apex has no NS RRset.
    NoApexNs,
    /// A CNAME at the apex (RFC 1912 §2.4).
    CnameAtApex,
    /// A CNAME beside other data (RFC 1034 §3.6.2); the other types.
    CnameBesideData(Vec<RecordType>),
    /// More than one CNAME record at a name.
    SeveralCnames,
    /// More than one DNAME record at a name (RFC 6672 §2.4).
    SeveralDnames,
}

impl Violation {
    /// The type whose records break the rule, if one type does.
    pub fn rtype(&self) -> Option<RecordType> {
        match self {
            Violation::TooManyTypes(_) | Violation::NoSoa | Violation::NoApexNs => None,
            Violation::SeveralSoa | Violation::SoaBelowApex => Some(RecordType::SOA),
            Violation::CnameAtApex | Violation::CnameBesideData(_) | Violation::SeveralCnames => {
                Some(RecordType::CNAME)
            }
            Violation::SeveralDnames => Some(RecordType::DNAME),
        }
    }

    /// Says what is wrong at `owner`, for an operator.
    pub fn message(&self, owner: &dyn fmt::Display) -> String {
        match self {
            Violation::TooManyTypes(types) => {
                format!("{owner} has {types} RRsets; at most {MAX_TYPES_PER_NAME} types per name are supported")
            }
            Violation::NoSoa => format!("no SOA at the apex {owner}"),
            Violation::SeveralSoa => format!("more than one SOA record at the apex {owner}"),
            Violation::SoaBelowApex => format!("SOA at {owner}, which is not the apex"),
            Violation::NoApexNs => format!("no NS records at the apex {owner}"),
            Violation::CnameAtApex => format!("CNAME at the apex {owner} (RFC 1912 §2.4)"),
            Violation::CnameBesideData(others) => {
                let others: Vec<String> = others.iter().map(RecordType::to_string).collect();
                format!("CNAME at {owner} beside other data ({}); a CNAME excludes all other data", others.join(", "))
            }
            Violation::SeveralCnames => format!("more than one CNAME at {owner}; a CNAME RRset holds one record"),
            Violation::SeveralDnames => format!("more than one DNAME at {owner}; a DNAME RRset holds one record"),
        }
    }
}

/// Checks one node: its RRsets, in any order and each type once, and whether
/// it is the apex. Returns every rule it breaks, in a fixed order.
pub fn check_node(at_apex: bool, rrsets: &[RRsetShape]) -> Vec<Violation> {
    let mut found = Vec::new();
    let count = |t: RecordType| rrsets.iter().find(|s| s.rtype == t).map_or(0, |s| s.records);
    if rrsets.len() > MAX_TYPES_PER_NAME {
        found.push(Violation::TooManyTypes(rrsets.len()));
    }
    let soa = count(RecordType::SOA);
    let cname = count(RecordType::CNAME);
    if at_apex {
        match soa {
            0 => found.push(Violation::NoSoa),
            1 => {}
            _ => found.push(Violation::SeveralSoa),
        }
        if count(RecordType::NS) == 0 {
            found.push(Violation::NoApexNs);
        }
        if cname > 0 {
            found.push(Violation::CnameAtApex);
        }
    } else if soa > 0 {
        found.push(Violation::SoaBelowApex);
    }
    if cname > 0 {
        // RFC 4035 §2.5 lets DNSSEC's RRSIG and NSEC stand beside a CNAME.
        let mut others: Vec<RecordType> = rrsets
            .iter()
            .map(|s| s.rtype)
            .filter(|t| !matches!(*t, RecordType::CNAME | RecordType::RRSIG | RecordType::NSEC))
            .collect();
        others.sort();
        if !others.is_empty() {
            found.push(Violation::CnameBesideData(others));
        }
        if cname > 1 {
            found.push(Violation::SeveralCnames);
        }
    }
    if count(RecordType::DNAME) > 1 {
        found.push(Violation::SeveralDnames);
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shape(types: &[(RecordType, usize)]) -> Vec<RRsetShape> {
        types.iter().map(|&(rtype, records)| RRsetShape { rtype, records }).collect()
    }

    /// At the apex or not, the node's types and counts, and what it breaks.
    type Case<'a> = (bool, &'a [(RecordType, usize)], &'a [Violation]);

    #[test]
    fn nodes() {
        use RecordType as T;
        let cases: &[Case] = &[
            (true, &[(T::SOA, 1), (T::NS, 2)], &[]),
            (true, &[(T::NS, 2)], &[Violation::NoSoa]),
            (true, &[(T::SOA, 2), (T::NS, 1)], &[Violation::SeveralSoa]),
            (true, &[(T::SOA, 1)], &[Violation::NoApexNs]),
            (
                true,
                &[(T::SOA, 1), (T::NS, 1), (T::CNAME, 1)],
                &[Violation::CnameAtApex, Violation::CnameBesideData(vec![T::NS, T::SOA])],
            ),
            (true, &[(T::SOA, 1), (T::NS, 1), (T::DNAME, 1)], &[]),
            (false, &[(T::SOA, 1)], &[Violation::SoaBelowApex]),
            (false, &[(T::CNAME, 1), (T::RRSIG, 1), (T::NSEC, 1)], &[]),
            (false, &[(T::CNAME, 1), (T::A, 1)], &[Violation::CnameBesideData(vec![T::A])]),
            (false, &[(T::CNAME, 2)], &[Violation::SeveralCnames]),
            (false, &[(T::DNAME, 2), (T::A, 3)], &[Violation::SeveralDnames]),
            (false, &[(T::NS, 2), (T::DS, 1), (T::DNAME, 1)], &[]),
        ];
        for (at_apex, types, want) in cases {
            assert_eq!(check_node(*at_apex, &shape(types)), *want, "{types:?} at_apex={at_apex}");
        }
        let many: Vec<RRsetShape> = (1..=256).map(|t| RRsetShape { rtype: RecordType(1000 + t), records: 1 }).collect();
        assert_eq!(check_node(false, &many), [Violation::TooManyTypes(256)]);
    }

    #[test]
    fn records() {
        assert_eq!(check_record(RecordType::A, &[192, 0, 2, 1]), Ok(()));
        assert!(matches!(check_record(RecordType::A, &[1, 2, 3]), Err(RecordProblem::BadRdata(..))));
        assert_eq!(check_record(RecordType::OPT, &[]), Err(RecordProblem::NotStorable(RecordType::OPT)));
        assert_eq!(check_record(RecordType(0), &[]), Err(RecordProblem::NotStorable(RecordType(0))));
        assert_eq!(
            check_record(RecordType(65000), &vec![0; 70000]),
            Err(RecordProblem::TooLong(RecordType(65000), 70000))
        );
        // A TXT of 65,024 octets fits the length field but no transfer message.
        let txt = |len: usize| -> Vec<u8> {
            let mut rdata = Vec::new();
            while rdata.len() < len {
                let chunk = (len - rdata.len() - 1).min(255);
                rdata.push(chunk as u8);
                rdata.extend(std::iter::repeat_n(b'x', chunk));
            }
            rdata
        };
        assert_eq!(check_record(RecordType::TXT, &txt(65_024)), Err(RecordProblem::TooLong(RecordType::TXT, 65_024)));
        assert_eq!(check_record(RecordType::TXT, &txt(MAX_RDATA_LEN)), Ok(()));
    }
}
