//! Records packed in one buffer: the sides of a [`super::Diff`].
//!
//! A change's records are kept in the journal's encoding (per record the
//! owner's wire form, type, TTL, RDATA length and RDATA) with the offset of
//! each record beside it. The journal stores the bytes as they are, and an
//! import of 1.45 million records holds about 50 MB this way, where a vector
//! of owned records (an owner and an RDATA allocation each) held over 150 MB
//! and the journal needed a second copy on top.

use std::fmt;

use ferrodns_proto::{name, Name, RecordType};

use super::Record;

/// Records in the journal's encoding, in the order they were pushed.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Records {
    bytes: Vec<u8>,
    /// Where each record starts in `bytes`.
    starts: Vec<usize>,
}

/// One record of a [`Records`], borrowed from it.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct RecordRef<'a> {
    /// The owner, uncompressed wire form, in the case it was written.
    pub owner: &'a [u8],
    pub rtype: RecordType,
    pub ttl: u32,
    pub rdata: &'a [u8],
}

impl RecordRef<'_> {
    /// The owner as a [`Name`].
    pub fn owner_name(&self) -> Name {
        // Every owner was a Name when pushed, or checked when decoded.
        Name::from_wire(self.owner).expect("packed owners are valid names")
    }

    /// An owned copy.
    pub fn to_record(&self) -> Record {
        Record { owner: self.owner_name(), rtype: self.rtype, ttl: self.ttl, rdata: self.rdata.to_vec() }
    }
}

impl fmt::Debug for RecordRef<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        name::write_presentation(self.owner, f)?;
        write!(f, " {} {} {:02x?}", self.ttl, self.rtype, self.rdata)
    }
}

impl Records {
    pub fn new() -> Records {
        Records::default()
    }

    /// Room for `records` records of `bytes` encoded bytes in all.
    pub fn with_capacity(records: usize, bytes: usize) -> Records {
        Records { bytes: Vec::with_capacity(bytes), starts: Vec::with_capacity(records) }
    }

    /// Appends one record.
    pub fn push(&mut self, owner: &Name, rtype: RecordType, ttl: u32, rdata: &[u8]) {
        self.starts.push(self.bytes.len());
        encode(&mut self.bytes, owner.as_wire(), rtype, ttl, rdata);
    }

    /// Appends a copy of `record`.
    pub fn push_record(&mut self, record: &Record) {
        self.push(&record.owner, record.rtype, record.ttl, &record.rdata);
    }

    /// Appends a copy of a record of another [`Records`].
    pub fn push_ref(&mut self, record: RecordRef<'_>) {
        self.starts.push(self.bytes.len());
        encode(&mut self.bytes, record.owner, record.rtype, record.ttl, record.rdata);
    }

    /// Puts `record` before the others (the SOA that leads each side of an
    /// IXFR step), moving the bytes in place rather than copying them.
    pub fn push_front(&mut self, record: &Record) {
        let mut head = Vec::new();
        encode(&mut head, record.owner.as_wire(), record.rtype, record.ttl, &record.rdata);
        self.bytes.splice(0..0, head.iter().copied());
        self.starts.iter_mut().for_each(|start| *start += head.len());
        self.starts.insert(0, 0);
    }

    pub fn len(&self) -> usize {
        self.starts.len()
    }

    pub fn is_empty(&self) -> bool {
        self.starts.is_empty()
    }

    /// Record `index`, in push order.
    pub fn get(&self, index: usize) -> Option<RecordRef<'_>> {
        let start = *self.starts.get(index)?;
        Some(read(&self.bytes[start..]).expect("packed records are well formed").0)
    }

    pub fn iter(&self) -> Iter<'_> {
        Iter { bytes: &self.bytes, starts: self.starts.iter() }
    }

    /// The journal's encoding of these records.
    pub fn encoded(&self) -> &[u8] {
        &self.bytes
    }

    /// Takes bytes in the journal's encoding, without copying them; `None`
    /// if they are not well formed.
    pub fn decode(bytes: Vec<u8>) -> Option<Records> {
        let mut starts = Vec::new();
        let mut at = 0;
        while at < bytes.len() {
            starts.push(at);
            at += read(&bytes[at..])?.1;
        }
        Some(Records { bytes, starts })
    }

    /// The whole records at the start of `bytes`, a prefix of an encoding (a
    /// journal side cut short), at most `limit` of them; the rest is dropped.
    pub fn decode_prefix(mut bytes: Vec<u8>, limit: usize) -> Records {
        let mut starts = Vec::new();
        let mut at = 0;
        while starts.len() < limit {
            let Some((_, length)) = bytes.get(at..).and_then(read) else { break };
            starts.push(at);
            at += length;
        }
        bytes.truncate(at);
        Records { bytes, starts }
    }

    /// Owned copies of every record.
    pub fn to_vec(&self) -> Vec<Record> {
        self.iter().map(|r| r.to_record()).collect()
    }
}

/// The records of a [`Records`], in push order.
pub struct Iter<'a> {
    bytes: &'a [u8],
    starts: std::slice::Iter<'a, usize>,
}

impl<'a> Iterator for Iter<'a> {
    type Item = RecordRef<'a>;

    fn next(&mut self) -> Option<RecordRef<'a>> {
        let start = *self.starts.next()?;
        Some(read(&self.bytes[start..]).expect("packed records are well formed").0)
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        self.starts.size_hint()
    }
}

impl ExactSizeIterator for Iter<'_> {}

impl<'a> IntoIterator for &'a Records {
    type Item = RecordRef<'a>;
    type IntoIter = Iter<'a>;

    fn into_iter(self) -> Iter<'a> {
        self.iter()
    }
}

impl fmt::Debug for Records {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.iter()).finish()
    }
}

impl From<Vec<Record>> for Records {
    fn from(records: Vec<Record>) -> Records {
        records.iter().collect()
    }
}

impl<'a> FromIterator<&'a Record> for Records {
    fn from_iter<I: IntoIterator<Item = &'a Record>>(records: I) -> Records {
        let mut out = Records::new();
        records.into_iter().for_each(|record| out.push_record(record));
        out
    }
}

fn encode(out: &mut Vec<u8>, owner: &[u8], rtype: RecordType, ttl: u32, rdata: &[u8]) {
    out.extend_from_slice(owner);
    out.extend_from_slice(&rtype.0.to_be_bytes());
    out.extend_from_slice(&ttl.to_be_bytes());
    out.extend_from_slice(&(rdata.len() as u16).to_be_bytes());
    out.extend_from_slice(rdata);
}

/// The record at the start of `bytes` and its encoded length.
fn read(bytes: &[u8]) -> Option<(RecordRef<'_>, usize)> {
    let name_len = name::wire_len(bytes).ok()?;
    let fixed = bytes.get(name_len..name_len + 8)?;
    let rtype = RecordType(u16::from_be_bytes([fixed[0], fixed[1]]));
    let ttl = u32::from_be_bytes([fixed[2], fixed[3], fixed[4], fixed[5]]);
    let len = u16::from_be_bytes([fixed[6], fixed[7]]) as usize;
    let start = name_len + 8;
    let rdata = bytes.get(start..start + len)?;
    Some((RecordRef { owner: &bytes[..name_len], rtype, ttl, rdata }, start + len))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(owner: &str, rtype: RecordType, rdata: &[u8]) -> Record {
        Record { owner: Name::parse(owner, None).unwrap(), rtype, ttl: 300, rdata: rdata.to_vec() }
    }

    #[test]
    fn records_round_trip_through_the_journal_encoding() {
        let list = vec![
            record("www.Example.com.", RecordType::A, &[192, 0, 2, 1]),
            record("example.com.", RecordType::TXT, &[]),
            record("x.example.com.", RecordType::AAAA, &[0x20; 16]),
        ];
        let mut packed = Records::from(list.clone());
        assert_eq!(packed.len(), 3);
        assert_eq!(packed.to_vec(), list);
        assert_eq!(packed.get(1).unwrap().to_record(), list[1]);
        assert_eq!(Records::decode(packed.encoded().to_vec()).unwrap(), packed);
        let soa = record("example.com.", RecordType::SOA, &[0; 22]);
        packed.push_front(&soa);
        assert_eq!(packed.to_vec(), [vec![soa], list].concat());
        assert_eq!(Records::decode(packed.encoded().to_vec()).unwrap(), packed);
    }

    #[test]
    fn malformed_journal_bytes_are_refused() {
        let packed = Records::from(vec![record("a.example.", RecordType::A, &[192, 0, 2, 1])]);
        let bytes = packed.encoded();
        for cut in 1..bytes.len() {
            assert!(Records::decode(bytes[..cut].to_vec()).is_none(), "cut at {cut}");
        }
        assert!(Records::decode(vec![0xc0, 0x0c, 0, 1, 0, 0, 0, 0, 0, 0]).is_none());
        for cut in 0..bytes.len() {
            assert!(Records::decode_prefix(bytes[..cut].to_vec(), 10).is_empty(), "cut at {cut}");
        }
        let two = Records::from([packed.to_vec(), packed.to_vec()].concat());
        assert_eq!(Records::decode_prefix(two.encoded().to_vec(), 1), packed);
        let cut = two.encoded().len() - 1;
        assert_eq!(Records::decode_prefix(two.encoded()[..cut].to_vec(), 10), packed);
        assert_eq!(Records::decode(Vec::new()).unwrap().len(), 0);
    }
}
