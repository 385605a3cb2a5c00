//! Record types, classes, opcodes and response codes: the IANA registries as
//! small copyable newtypes with their mnemonics.

use std::fmt;

/// A record type (RFC 1035 §3.2.2; IANA "Resource Record (RR) TYPEs").
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RecordType(pub u16);

macro_rules! record_types {
    ($($name:ident = $value:expr),* $(,)?) => {
        impl RecordType {
            $(pub const $name: RecordType = RecordType($value);)*

            /// The mnemonic, if the type has one here.
            pub fn mnemonic(self) -> Option<&'static str> {
                match self.0 {
                    $($value => Some(stringify!($name)),)*
                    _ => None,
                }
            }

            /// Parses a mnemonic (any case) or the RFC 3597 form `TYPEnnn`.
            pub fn from_mnemonic(text: &str) -> Option<RecordType> {
                $(if text.eq_ignore_ascii_case(stringify!($name)) {
                    return Some(RecordType($value));
                })*
                let digits = text.get(..4).filter(|p| p.eq_ignore_ascii_case("TYPE")).map(|_| &text[4..])?;
                if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
                    return None;
                }
                digits.parse::<u16>().ok().map(RecordType)
            }
        }
    };
}

record_types! {
    A = 1,
    NS = 2,
    CNAME = 5,
    SOA = 6,
    PTR = 12,
    HINFO = 13,
    MX = 15,
    TXT = 16,
    RP = 17,
    AFSDB = 18,
    AAAA = 28,
    LOC = 29,
    SRV = 33,
    NAPTR = 35,
    KX = 36,
    CERT = 37,
    DNAME = 39,
    OPT = 41,
    APL = 42,
    DS = 43,
    SSHFP = 44,
    IPSECKEY = 45,
    RRSIG = 46,
    NSEC = 47,
    DNSKEY = 48,
    DHCID = 49,
    NSEC3 = 50,
    NSEC3PARAM = 51,
    TLSA = 52,
    SMIMEA = 53,
    CDS = 59,
    CDNSKEY = 60,
    OPENPGPKEY = 61,
    CSYNC = 62,
    ZONEMD = 63,
    SVCB = 64,
    HTTPS = 65,
    SPF = 99,
    EUI48 = 108,
    EUI64 = 109,
    TKEY = 249,
    TSIG = 250,
    IXFR = 251,
    AXFR = 252,
    MAILB = 253,
    MAILA = 254,
    ANY = 255,
    URI = 256,
    CAA = 257,
}

impl RecordType {
    /// Types that only make sense in a question or as transaction records
    /// (RFC 6895 §3.1): OPT, TKEY, TSIG, IXFR, AXFR, MAILB, MAILA, ANY.
    pub fn is_meta_or_question_only(self) -> bool {
        matches!(self.0, 41 | 128..=255)
    }
}

impl fmt::Display for RecordType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.mnemonic() {
            Some(m) => f.write_str(m),
            None => write!(f, "TYPE{}", self.0),
        }
    }
}

impl fmt::Debug for RecordType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

/// A DNS class. Only IN carries zone data here.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub struct Class(pub u16);

impl Class {
    pub const IN: Class = Class(1);
    pub const CH: Class = Class(3);
    pub const NONE: Class = Class(254);
    pub const ANY: Class = Class(255);

    /// Parses `IN`, `CH`, `HS`, `NONE`, `ANY` or `CLASSnnn`.
    pub fn from_mnemonic(text: &str) -> Option<Class> {
        let upper = text.to_ascii_uppercase();
        match upper.as_str() {
            "IN" => Some(Class::IN),
            "CH" => Some(Class::CH),
            "HS" => Some(Class(4)),
            "NONE" => Some(Class::NONE),
            "ANY" => Some(Class::ANY),
            _ => upper
                .strip_prefix("CLASS")
                .filter(|d| !d.is_empty() && d.bytes().all(|b| b.is_ascii_digit()))
                .and_then(|d| d.parse().ok())
                .map(Class),
        }
    }
}

/// The header's OPCODE (RFC 1035 §4.1.1, RFC 6895 §2.2).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct Opcode(pub u8);

impl Opcode {
    pub const QUERY: Opcode = Opcode(0);
    pub const IQUERY: Opcode = Opcode(1);
    pub const STATUS: Opcode = Opcode(2);
    pub const NOTIFY: Opcode = Opcode(4);
    pub const UPDATE: Opcode = Opcode(5);
}

/// A response code, including the extended range carried in OPT (RFC 6891 §6.1.3).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct Rcode(pub u16);

impl Rcode {
    pub const NOERROR: Rcode = Rcode(0);
    pub const FORMERR: Rcode = Rcode(1);
    pub const SERVFAIL: Rcode = Rcode(2);
    pub const NXDOMAIN: Rcode = Rcode(3);
    pub const NOTIMP: Rcode = Rcode(4);
    pub const REFUSED: Rcode = Rcode(5);
    pub const YXDOMAIN: Rcode = Rcode(6);
    pub const NOTAUTH: Rcode = Rcode(9);
    pub const BADVERS: Rcode = Rcode(16);

    /// The low four bits, which go in the header.
    pub fn header_bits(self) -> u8 {
        (self.0 & 0x0f) as u8
    }

    /// The high eight bits, which go in the OPT record's TTL field.
    pub fn extended_bits(self) -> u8 {
        (self.0 >> 4) as u8
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mnemonics_round_trip() {
        assert_eq!(RecordType::from_mnemonic("aaaa"), Some(RecordType::AAAA));
        assert_eq!(RecordType::from_mnemonic("TYPE65534"), Some(RecordType(65534)));
        assert_eq!(RecordType::from_mnemonic("type1"), Some(RecordType::A));
        assert_eq!(RecordType::from_mnemonic("TYPE"), None);
        assert_eq!(RecordType::from_mnemonic("TYPE70000"), None);
        assert_eq!(RecordType(65534).to_string(), "TYPE65534");
        assert_eq!(RecordType::HTTPS.to_string(), "HTTPS");
        assert_eq!(Class::from_mnemonic("class1"), Some(Class::IN));
    }
}
