//! DNS messages: parsing a query in place, and writing a response with name
//! compression into a reusable buffer.
//!
//! Both sides are built for the answer path: [`parse_query`] copies the qname
//! into a fixed array and never allocates, and [`MessageWriter`] writes into a
//! caller-owned `Vec` whose capacity is reused from query to query.

use std::mem::MaybeUninit;

use crate::name::{self, NameBuf, NameError};
use crate::rdata::RdataLayout;
use crate::rtype::{Class, Opcode, Rcode, RecordType};

/// Length of the fixed header (RFC 1035 §4.1.1).
pub const HEADER_LEN: usize = 12;

/// Header flag bits in the second 16-bit word.
pub mod flags {
    pub const QR: u16 = 0x8000;
    pub const AA: u16 = 0x0400;
    pub const TC: u16 = 0x0200;
    pub const RD: u16 = 0x0100;
    pub const RA: u16 = 0x0080;
    pub const AD: u16 = 0x0020;
    pub const CD: u16 = 0x0010;
    /// The opcode's four bits, which a reply copies from its query.
    pub const OPCODE: u16 = 0x7800;
}

/// The EDNS(0) OPT pseudo-record of a query (RFC 6891 §6.1).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Edns {
    /// The requestor's UDP payload size.
    pub udp_payload: u16,
    /// EDNS version.
    pub version: u8,
    /// The DO bit (RFC 3225).
    pub dnssec_ok: bool,
    /// Where the COOKIE option's data (RFC 7873) sits in the message, if the
    /// query carried one: its offset and length (8, or 16 to 40).
    pub cookie: Option<(u16, u8)>,
    /// The query asked for the server's NSID (RFC 5001 §2.1: an empty NSID option).
    pub nsid: bool,
}

/// EDNS option codes the server reads or writes.
pub mod option_code {
    /// RFC 5001 Name Server Identifier.
    pub const NSID: u16 = 3;
    /// RFC 7873 DNS Cookies.
    pub const COOKIE: u16 = 10;
    /// RFC 8914 Extended DNS Error.
    pub const EDE: u16 = 15;
}

/// Extended DNS Error info-codes (RFC 8914 §4) the server sends.
pub mod ede {
    /// An answer served past its TTL because no forwarder answered (RFC 8767).
    pub const STALE_ANSWER: u16 = 3;
    /// Policy refuses the request: a transfer, recursion, or a hidden version.
    pub const PROHIBITED: u16 = 18;
    /// The name is in no zone this server is authoritative for.
    pub const NOT_AUTHORITATIVE: u16 = 20;
    /// Every forwarder of a forward zone failed.
    pub const NO_REACHABLE_AUTHORITY: u16 = 22;
    /// The zone has no data to answer from: a secondary's copy past its expiry.
    pub const INVALID_DATA: u16 = 24;
}

/// Longest EXTRA-TEXT the server writes in an EDE option.
pub const MAX_EDE_TEXT: usize = 32;

/// An EDE option, framed (code, length, info-code, EXTRA-TEXT), in a fixed
/// buffer: made on the stack for the error answers that carry one.
#[derive(Clone, Copy)]
pub struct EdeOption {
    bytes: [u8; 6 + MAX_EDE_TEXT],
    len: u8,
}

impl EdeOption {
    /// The option for `info_code`, with `text` cut to [`MAX_EDE_TEXT`] octets
    /// (the texts are the server's own, ASCII).
    pub fn new(info_code: u16, text: &str) -> EdeOption {
        let text = &text.as_bytes()[..text.len().min(MAX_EDE_TEXT)];
        let mut bytes = [0u8; 6 + MAX_EDE_TEXT];
        bytes[0..2].copy_from_slice(&option_code::EDE.to_be_bytes());
        bytes[2..4].copy_from_slice(&(2 + text.len() as u16).to_be_bytes());
        bytes[4..6].copy_from_slice(&info_code.to_be_bytes());
        bytes[6..6 + text.len()].copy_from_slice(text);
        EdeOption { bytes, len: (6 + text.len()) as u8 }
    }

    /// The framed option.
    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes[..self.len as usize]
    }
}

/// A parsed query. The qname is kept as sent (for the echo in the question
/// section) and lowercased (for lookup).
#[derive(Clone)]
pub struct Query {
    pub id: u16,
    /// The raw second header word of the query.
    pub flags: u16,
    pub opcode: Opcode,
    qname: NameBuf,
    qname_lower: NameBuf,
    pub qtype: RecordType,
    pub qclass: Class,
    pub edns: Option<Edns>,
    /// Number of OPT records seen; more than one is a FORMERR (RFC 6891 §6.1.1).
    pub opt_count: u8,
    /// A TSIG record is present (it must be last; the TSIG code checks that).
    pub signed: bool,
}

impl Query {
    /// The qname as sent.
    pub fn qname(&self) -> &[u8] {
        self.qname.as_slice()
    }

    /// The qname lowercased.
    pub fn qname_lower(&self) -> &[u8] {
        self.qname_lower.as_slice()
    }
}

/// Why a query could not be read, and so how to reply.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum QueryError {
    /// Not worth a reply: shorter than a header, or a response (QR set).
    Drop,
    /// Reply FORMERR, echoing the header (id, opcode, RD).
    FormErr,
}

impl From<NameError> for QueryError {
    fn from(_: NameError) -> QueryError {
        QueryError::FormErr
    }
}

fn read_u16(msg: &[u8], pos: usize) -> Result<u16, QueryError> {
    msg.get(pos..pos + 2).map(|b| u16::from_be_bytes([b[0], b[1]])).ok_or(QueryError::FormErr)
}

impl Default for Query {
    fn default() -> Query {
        Query::new()
    }
}

impl Query {
    /// An empty query to parse into; its name buffers are not zeroed.
    pub const fn new() -> Query {
        Query {
            id: 0,
            flags: 0,
            opcode: Opcode::QUERY,
            qname: NameBuf::new(),
            qname_lower: NameBuf::new(),
            qtype: RecordType(0),
            qclass: Class(0),
            edns: None,
            opt_count: 0,
            signed: false,
        }
    }
}

/// Reads the header, the one question, and any OPT record of a query.
///
/// Other records in the answer, authority and additional sections are stepped
/// over, checked only for framing; a message that does not frame is FORMERR.
pub fn parse_query(msg: &[u8]) -> Result<Query, QueryError> {
    let mut query = Query::new();
    parse_query_into(msg, &mut query)?;
    Ok(query)
}

/// As [`parse_query`], into a caller's `Query`, so the answer path does not
/// move a half-kilobyte struct out of a `Result` for every query.
pub fn parse_query_into(msg: &[u8], query: &mut Query) -> Result<(), QueryError> {
    if msg.len() < HEADER_LEN {
        return Err(QueryError::Drop);
    }
    let id = u16::from_be_bytes([msg[0], msg[1]]);
    let flag_word = u16::from_be_bytes([msg[2], msg[3]]);
    if flag_word & flags::QR != 0 {
        return Err(QueryError::Drop);
    }
    let qdcount = read_u16(msg, 4)?;
    let ancount = read_u16(msg, 6)?;
    let nscount = read_u16(msg, 8)?;
    let arcount = read_u16(msg, 10)?;
    query.id = id;
    query.flags = flag_word;
    query.opcode = Opcode(((flag_word >> 11) & 0x0f) as u8);
    query.edns = None;
    query.opt_count = 0;
    query.signed = false;
    if qdcount != 1 {
        return Err(QueryError::FormErr);
    }
    let mut pos = name::read_compressed(msg, HEADER_LEN, &mut query.qname)?;
    query.qname_lower.set_lowercase(query.qname.as_slice());
    query.qtype = RecordType(read_u16(msg, pos)?);
    query.qclass = Class(read_u16(msg, pos + 2)?);
    pos += 4;
    let mut scratch = NameBuf::new();
    let skipped = ancount as usize + nscount as usize;
    for index in 0..skipped + arcount as usize {
        let after_owner = name::read_compressed(msg, pos, &mut scratch)?;
        let owner_len = scratch.len();
        let rtype = read_u16(msg, after_owner)?;
        let class = read_u16(msg, after_owner + 2)?;
        let ttl_high = read_u16(msg, after_owner + 4)?;
        let ttl_low = read_u16(msg, after_owner + 6)?;
        let rdlen = read_u16(msg, after_owner + 8)? as usize;
        let rdata_start = after_owner + 10;
        if msg.len() < rdata_start + rdlen {
            return Err(QueryError::FormErr);
        }
        if rtype == RecordType::TSIG.0 {
            query.signed = true;
        }
        if rtype == RecordType::OPT.0 {
            // OPT belongs in the additional section, owned by the root.
            if index < skipped || owner_len != 1 {
                return Err(QueryError::FormErr);
            }
            query.opt_count = query.opt_count.saturating_add(1);
            let (cookie, nsid) = read_options(msg, rdata_start, rdlen)?;
            query.edns = Some(Edns {
                udp_payload: class,
                version: (ttl_high & 0xff) as u8,
                dnssec_ok: ttl_low & 0x8000 != 0,
                cookie,
                nsid,
            });
        }
        pos = rdata_start + rdlen;
    }
    Ok(())
}

/// Checks that the OPT RDATA (`rdlen` octets at `start` in `msg`) is a
/// well-framed list of options and finds the COOKIE option, and whether an
/// NSID option asks for our identifier (its data, which a query should leave
/// empty, is ignored: RFC 5001 §2.1). Other options are ignored, as RFC 6891
/// §6.1.2 asks for options we do not know. A COOKIE of a length RFC 7873
/// §5.2.2 does not allow (below 8, 9 to 15, above 40) is FORMERR; of several
/// COOKIE options the first counts.
fn read_options(msg: &[u8], start: usize, rdlen: usize) -> Result<(Option<(u16, u8)>, bool), QueryError> {
    let end = start + rdlen;
    let mut pos = start;
    let mut cookie = None;
    let mut nsid = false;
    while pos < end {
        if end - pos < 4 {
            return Err(QueryError::FormErr);
        }
        let code = u16::from_be_bytes([msg[pos], msg[pos + 1]]);
        let len = u16::from_be_bytes([msg[pos + 2], msg[pos + 3]]) as usize;
        let data = pos + 4;
        if end - data < len {
            return Err(QueryError::FormErr);
        }
        if code == option_code::COOKIE && cookie.is_none() {
            if !(len == 8 || (16..=40).contains(&len)) {
                return Err(QueryError::FormErr);
            }
            // A query fits in 64 KiB, so the offset fits in 16 bits.
            cookie = Some((data as u16, len as u8));
        }
        nsid |= code == option_code::NSID;
        pos = data + len;
    }
    Ok((cookie, nsid))
}

/// The response did not fit the size limit; the caller rolls back and sets TC.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Full;

/// A point to roll a [`MessageWriter`] back to when a record does not fit.
#[derive(Clone, Copy, Debug)]
pub struct Checkpoint {
    len: usize,
    names: usize,
}

const MAX_COMPRESSION_NAMES: usize = 48;

/// A record's owner: a name to write (compressed where possible), or the
/// question's name, which the writer knows sits at offset 12.
#[derive(Clone, Copy)]
enum Owner<'a> {
    Name(&'a [u8]),
    Question,
}

/// A name suffix already written, as a compression target.
#[derive(Clone, Copy)]
struct Target {
    /// Where the suffix starts in the message (below 0x3fff, so a pointer reaches it).
    offset: u16,
    /// Its length uncompressed, which must equal a candidate's before the
    /// labels are compared.
    len: u8,
    /// Written out to the root label with no pointer, so it compares as one
    /// run of octets.
    contiguous: bool,
}

/// Writes a response message with name compression into a reusable buffer.
///
/// Compression targets are the suffixes of names already in the message,
/// remembered by their offset there: a candidate is compared against the
/// message's own octets, so the writer keeps no copy of any name and is small
/// enough that making one per query costs nothing.
pub struct MessageWriter<'b> {
    buf: &'b mut Vec<u8>,
    limit: usize,
    /// The question's name sits right after the header, where a pointer
    /// (0xc00c) reaches it: records owned by the qname use that.
    question: bool,
    name_count: usize,
    names: [MaybeUninit<Target>; MAX_COMPRESSION_NAMES],
    /// Candidates compared so far, for the test that bounds compression's work.
    #[cfg(test)]
    compared: std::cell::Cell<usize>,
}

/// The sections a writer counts records in (the question's count is kept
/// apart), in header order.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Section {
    Answer = 0,
    Authority = 1,
    Additional = 2,
}

impl<'b> MessageWriter<'b> {
    /// Starts a message in `buf` (cleared) that must not grow past `limit` bytes.
    pub fn new(buf: &'b mut Vec<u8>, limit: usize) -> MessageWriter<'b> {
        buf.clear();
        buf.resize(HEADER_LEN, 0);
        MessageWriter {
            buf,
            limit,
            question: false,
            name_count: 0,
            names: [MaybeUninit::uninit(); MAX_COMPRESSION_NAMES],
            #[cfg(test)]
            compared: std::cell::Cell::new(0),
        }
    }

    /// Bytes written so far.
    pub fn len(&self) -> usize {
        self.buf.len()
    }

    /// True when only the header is written.
    pub fn is_empty(&self) -> bool {
        self.buf.len() <= HEADER_LEN
    }

    /// The size limit.
    pub fn limit(&self) -> usize {
        self.limit
    }

    /// Changes the size limit, e.g. to reserve room for an OPT record.
    pub fn set_limit(&mut self, limit: usize) {
        self.limit = limit;
    }

    /// Sets id and flag word (opcode and rcode included).
    pub fn set_header(&mut self, id: u16, flag_word: u16) {
        self.buf[0..2].copy_from_slice(&id.to_be_bytes());
        self.buf[2..4].copy_from_slice(&flag_word.to_be_bytes());
    }

    /// The flag word as written so far.
    pub fn flag_word(&self) -> u16 {
        u16::from_be_bytes([self.buf[2], self.buf[3]])
    }

    fn bump_count(&mut self, index: usize) {
        let at = 4 + index * 2;
        let count = u16::from_be_bytes([self.buf[at], self.buf[at + 1]]) + 1;
        self.buf[at..at + 2].copy_from_slice(&count.to_be_bytes());
    }

    /// Count of records in a section.
    pub fn count(&self, section: Section) -> u16 {
        let at = 6 + section as usize * 2;
        u16::from_be_bytes([self.buf[at], self.buf[at + 1]])
    }

    /// Writes the question. The qname is written as given (the client's case)
    /// and becomes a compression target.
    pub fn push_question(&mut self, qname: &[u8], qtype: RecordType, qclass: Class) -> Result<(), Full> {
        if self.buf.len() + qname.len() + 4 > self.limit {
            return Err(Full);
        }
        if self.name_count == 0 {
            // The first name of the message: nothing to point to, and every
            // suffix becomes a target that compares as plain octets.
            let start = self.buf.len();
            let mut pos = 0;
            while qname[pos] != 0 && start + pos < 0x3fff && self.name_count < MAX_COMPRESSION_NAMES {
                let target = Target { offset: (start + pos) as u16, len: (qname.len() - pos) as u8, contiguous: true };
                self.names[self.name_count].write(target);
                self.name_count += 1;
                pos += 1 + qname[pos] as usize;
            }
            self.question = start == HEADER_LEN && self.name_count > 0;
            self.buf.extend_from_slice(qname);
        } else {
            self.push_name(qname, true);
        }
        self.buf.extend_from_slice(&qtype.0.to_be_bytes());
        self.buf.extend_from_slice(&qclass.0.to_be_bytes());
        self.bump_count(0);
        Ok(())
    }

    /// Marks the current state for [`MessageWriter::rollback`].
    pub fn checkpoint(&self) -> Checkpoint {
        Checkpoint { len: self.buf.len(), names: self.name_count }
    }

    /// Drops everything written after `checkpoint`; the caller fixes counters
    /// by writing whole RRsets only (see [`MessageWriter::push_rrset`]).
    pub fn rollback(&mut self, checkpoint: Checkpoint) {
        self.buf.truncate(checkpoint.len);
        self.name_count = checkpoint.names;
        if checkpoint.len <= HEADER_LEN {
            self.question = false;
        }
    }

    /// Writes every record of an RRset, or none of it if it does not fit.
    /// `rdatas` is the RRset's RDATA list in this crate's packed form
    /// (each RDATA prefixed by its 16-bit length).
    pub fn push_rrset(
        &mut self,
        section: Section,
        owner: &[u8],
        rtype: RecordType,
        ttl: u32,
        packed_rdatas: &[u8],
    ) -> Result<(), Full> {
        self.push_rrset_owned(section, Owner::Name(owner), rtype, ttl, packed_rdatas)
    }

    fn push_rrset_owned(
        &mut self,
        section: Section,
        owner: Owner<'_>,
        rtype: RecordType,
        ttl: u32,
        packed_rdatas: &[u8],
    ) -> Result<(), Full> {
        let checkpoint = self.checkpoint();
        let mut written = 0u16;
        let mut pos = 0;
        while pos + 2 <= packed_rdatas.len() {
            let len = u16::from_be_bytes([packed_rdatas[pos], packed_rdatas[pos + 1]]) as usize;
            let rdata = &packed_rdatas[pos + 2..pos + 2 + len];
            pos += 2 + len;
            if self.push_record_raw(owner, rtype, ttl, rdata).is_err() {
                self.rollback(checkpoint);
                return Err(Full);
            }
            written += 1;
        }
        self.add_count(section, written);
        Ok(())
    }

    fn add_count(&mut self, section: Section, records: u16) {
        let at = 6 + section as usize * 2;
        let count = u16::from_be_bytes([self.buf[at], self.buf[at + 1]]) + records;
        self.buf[at..at + 2].copy_from_slice(&count.to_be_bytes());
    }

    /// As [`MessageWriter::push_rrset`] for an RRset whose owner is the
    /// question's name (ignoring case), as most answers are: each owner is
    /// the pointer to the question that compression would find, written
    /// without looking, and RDATA without compressible names is copied as it
    /// is packed.
    pub fn push_rrset_at_question(
        &mut self,
        section: Section,
        owner: &[u8],
        rtype: RecordType,
        ttl: u32,
        packed_rdatas: &[u8],
    ) -> Result<(), Full> {
        debug_assert!(!self.question || name::eq_ignore_case(&self.buf[HEADER_LEN..HEADER_LEN + owner.len()], owner));
        if !self.question {
            return self.push_rrset(section, owner, rtype, ttl, packed_rdatas);
        }
        if RdataLayout::of(rtype) != RdataLayout::Opaque {
            return self.push_rrset_owned(section, Owner::Question, rtype, ttl, packed_rdatas);
        }
        // Sized before its records are counted: a hostile zone's RRset of a
        // million records (CVE-2024-1737's class) costs one comparison, not
        // a walk over all of it, for every query that asks for it.
        if self.buf.len() + packed_rdatas.len() > self.limit {
            return Err(Full);
        }
        let records = packed_count(packed_rdatas);
        if self.buf.len() + packed_rdatas.len() + 10 * records > self.limit {
            return Err(Full);
        }
        extend_at_question(self.buf, rtype, ttl, packed_rdatas);
        self.add_count(section, records as u16);
        Ok(())
    }

    /// Writes one record owned by the question's name (a pointer to it) in
    /// `class`, RDATA as it is: the CH-class answers about the server.
    pub fn push_at_question(
        &mut self,
        section: Section,
        rtype: RecordType,
        class: Class,
        ttl: u32,
        rdata: &[u8],
    ) -> Result<(), Full> {
        if !self.question || self.buf.len() + 12 + rdata.len() > self.limit || rdata.len() > u16::MAX as usize {
            return Err(Full);
        }
        let mut fixed = [0u8; 12];
        fixed[..2].copy_from_slice(&(0xc000 | HEADER_LEN as u16).to_be_bytes());
        fixed[2..4].copy_from_slice(&rtype.0.to_be_bytes());
        fixed[4..6].copy_from_slice(&class.0.to_be_bytes());
        fixed[6..10].copy_from_slice(&ttl.to_be_bytes());
        fixed[10..12].copy_from_slice(&(rdata.len() as u16).to_be_bytes());
        self.buf.extend_from_slice(&fixed);
        self.buf.extend_from_slice(rdata);
        self.bump_count(1 + section as usize);
        Ok(())
    }

    /// Writes one record into `section`.
    pub fn push_record(
        &mut self,
        section: Section,
        owner: &[u8],
        rtype: RecordType,
        ttl: u32,
        rdata: &[u8],
    ) -> Result<(), Full> {
        self.push_record_raw(Owner::Name(owner), rtype, ttl, rdata)?;
        self.bump_count(1 + section as usize);
        Ok(())
    }

    fn push_record_raw(&mut self, owner: Owner<'_>, rtype: RecordType, ttl: u32, rdata: &[u8]) -> Result<(), Full> {
        let checkpoint = self.checkpoint();
        match owner {
            Owner::Name(name) => self.push_name(name, true),
            Owner::Question => self.buf.extend_from_slice(&(0xc000 | HEADER_LEN as u16).to_be_bytes()),
        }
        // Type, class, TTL, and room for RDLENGTH, in one write.
        let mut fixed = [0u8; 10];
        fixed[..2].copy_from_slice(&rtype.0.to_be_bytes());
        fixed[2..4].copy_from_slice(&Class::IN.0.to_be_bytes());
        fixed[4..8].copy_from_slice(&ttl.to_be_bytes());
        self.buf.extend_from_slice(&fixed);
        let rdlen_at = self.buf.len() - 2;
        match RdataLayout::of(rtype) {
            RdataLayout::CompressibleNameAt(offset) if rdata.len() > offset => {
                self.buf.extend_from_slice(&rdata[..offset]);
                let name_len = name::wire_len(&rdata[offset..]).unwrap_or(rdata.len() - offset);
                self.push_name(&rdata[offset..offset + name_len], true);
                self.buf.extend_from_slice(&rdata[offset + name_len..]);
            }
            RdataLayout::Soa => {
                let first = name::wire_len(rdata).unwrap_or(rdata.len());
                let second = name::wire_len(&rdata[first..]).unwrap_or(rdata.len() - first);
                self.push_name(&rdata[..first], true);
                self.push_name(&rdata[first..first + second], true);
                self.buf.extend_from_slice(&rdata[first + second..]);
            }
            _ => self.buf.extend_from_slice(rdata),
        }
        let rdlen = self.buf.len() - rdlen_at - 2;
        if self.buf.len() > self.limit || rdlen > u16::MAX as usize {
            self.rollback(checkpoint);
            return Err(Full);
        }
        self.buf[rdlen_at..rdlen_at + 2].copy_from_slice(&(rdlen as u16).to_be_bytes());
        Ok(())
    }

    /// Writes a name, compressed against earlier names where possible, and
    /// records its suffixes as compression targets.
    fn push_name(&mut self, wire: &[u8], compress: bool) {
        let start = self.buf.len();
        let first_target = self.name_count;
        // Find where the name can point to an earlier one, remembering the
        // suffixes before that point, then write the labels in one copy. A
        // suffix only matches a target of its own length, so the targets this
        // name adds are never compared before they are written.
        let mut pos = 0;
        let mut pointer = None;
        while wire[pos] != 0 {
            let suffix = &wire[pos..];
            if compress {
                if let Some(offset) = self.find_suffix(suffix) {
                    pointer = Some(offset);
                    break;
                }
            }
            if start + pos < 0x3fff {
                self.remember(suffix, (start + pos) as u16);
            }
            pos += 1 + wire[pos] as usize;
        }
        self.buf.extend_from_slice(&wire[..pos]);
        match pointer {
            Some(offset) => self.buf.extend_from_slice(&(0xc000 | offset).to_be_bytes()),
            None => {
                self.buf.push(0);
                // Written to the root with no pointer: every suffix just
                // remembered compares as plain octets.
                for entry in &mut self.names[first_target..self.name_count] {
                    // SAFETY: entries below name_count were written by `remember`.
                    unsafe { entry.assume_init_mut() }.contiguous = true;
                }
            }
        }
    }

    fn find_suffix(&self, suffix: &[u8]) -> Option<u16> {
        for entry in &self.names[..self.name_count] {
            // SAFETY: entries below name_count were written by `remember`.
            let target = unsafe { entry.assume_init() };
            #[cfg(test)]
            self.compared.set(self.compared.get() + 1);
            if target.len as usize != suffix.len() {
                continue;
            }
            let at = target.offset as usize;
            let same = if target.contiguous {
                name::eq_ignore_case(&self.buf[at..at + suffix.len()], suffix)
            } else {
                self.labels_match(at, suffix)
            };
            if same {
                return Some(target.offset);
            }
        }
        None
    }

    /// Compares the name written at `at` (which may end in a pointer, always
    /// one this writer wrote, so backward) with an uncompressed name of the
    /// same length, label by label and ignoring ASCII case.
    fn labels_match(&self, mut at: usize, wire: &[u8]) -> bool {
        let mut pos = 0;
        loop {
            let len = self.buf[at];
            if len & 0xc0 == 0xc0 {
                at = ((len & 0x3f) as usize) << 8 | self.buf[at + 1] as usize;
                continue;
            }
            let len = len as usize;
            if wire[pos] as usize != len {
                return false;
            }
            if len == 0 {
                return true;
            }
            if !name::eq_ignore_case(&self.buf[at + 1..at + 1 + len], &wire[pos + 1..pos + 1 + len]) {
                return false;
            }
            at += 1 + len;
            pos += 1 + len;
        }
    }

    fn remember(&mut self, suffix: &[u8], offset: u16) {
        if self.name_count == MAX_COMPRESSION_NAMES {
            return;
        }
        self.names[self.name_count].write(Target { offset, len: suffix.len() as u8, contiguous: false });
        self.name_count += 1;
    }

    /// Appends an OPT record (RFC 6891 §6.1.2). It is never compressed and the
    /// caller has reserved room for it, so it ignores the limit.
    /// `options` are EDNS options already framed (code, length, data); the
    /// caller has left room for them under the limit.
    pub fn push_opt(&mut self, udp_payload: u16, extended_rcode: u8, dnssec_ok: bool, options: &[u8]) {
        self.buf.extend_from_slice(&opt_record(udp_payload, extended_rcode, dnssec_ok, options.len()));
        self.buf.extend_from_slice(options);
        self.bump_count(3);
    }

    /// Sets the TC flag.
    pub fn set_truncated(&mut self) {
        self.buf[2] |= (flags::TC >> 8) as u8;
    }

    /// Sets the rcode's header bits.
    pub fn set_rcode(&mut self, rcode: Rcode) {
        self.buf[3] = (self.buf[3] & 0xf0) | rcode.header_bits();
    }

    /// Sets or clears AA.
    pub fn set_authoritative(&mut self, on: bool) {
        if on {
            self.buf[2] |= (flags::AA >> 8) as u8;
        } else {
            self.buf[2] &= !((flags::AA >> 8) as u8);
        }
    }
}

/// Size of an OPT record with no options.
pub const OPT_LEN: usize = 11;

/// An OPT record's fixed part (RFC 6891 §6.1.2): root owner, the payload
/// size in the class, extended rcode and version 0 then the DO bit in the
/// TTL, and the length of the options that follow it.
pub fn opt_record(udp_payload: u16, extended_rcode: u8, dnssec_ok: bool, options_len: usize) -> [u8; OPT_LEN] {
    let mut record = [0u8; OPT_LEN];
    record[9..11].copy_from_slice(&(options_len as u16).to_be_bytes());
    record[1..3].copy_from_slice(&RecordType::OPT.0.to_be_bytes());
    record[3..5].copy_from_slice(&udp_payload.to_be_bytes());
    record[5] = extended_rcode;
    record[7..9].copy_from_slice(&(if dnssec_ok { 0x8000u16 } else { 0 }).to_be_bytes());
    record
}

/// How many RDATAs a packed list (each a 16-bit length and its octets) holds.
#[inline]
fn packed_count(packed_rdatas: &[u8]) -> usize {
    let mut records = 0;
    let mut pos = 0;
    while pos + 2 <= packed_rdatas.len() {
        pos += 2 + u16::from_be_bytes([packed_rdatas[pos], packed_rdatas[pos + 1]]) as usize;
        records += 1;
    }
    records
}

/// Appends one IN record per packed RDATA, each owned by the question's name:
/// a pointer to it, type, class and TTL (ten octets), then the packed RDATA
/// (its length and octets) as it is.
#[inline]
fn extend_at_question(out: &mut Vec<u8>, rtype: RecordType, ttl: u32, packed_rdatas: &[u8]) {
    let mut fixed = [0u8; 10];
    fixed[..2].copy_from_slice(&(0xc000 | HEADER_LEN as u16).to_be_bytes());
    fixed[2..4].copy_from_slice(&rtype.0.to_be_bytes());
    fixed[4..6].copy_from_slice(&Class::IN.0.to_be_bytes());
    fixed[6..10].copy_from_slice(&ttl.to_be_bytes());
    let mut pos = 0;
    while pos + 2 <= packed_rdatas.len() {
        let end = pos + 2 + u16::from_be_bytes([packed_rdatas[pos], packed_rdatas[pos + 1]]) as usize;
        out.extend_from_slice(&fixed);
        out.extend_from_slice(&packed_rdatas[pos..end]);
        pos = end;
    }
}

/// The plainest full answer: the header, the question, one RRset owned by
/// the qname whose RDATA holds no name to compress, and an OPT record when
/// `opt` is given (payload size and DO bit), written in one pass. These are
/// the octets [`MessageWriter`] writes for the same response, without its
/// bookkeeping: most answers have this shape. `flag_word` is the header's
/// second word; the rcode is NOERROR. Returns false, leaving `out` cleared,
/// when the whole answer does not fit in `limit` octets (the caller then
/// writes it the general way, with TC).
#[allow(clippy::too_many_arguments)]
pub fn write_plain_answer(
    out: &mut Vec<u8>,
    id: u16,
    flag_word: u16,
    qname: &[u8],
    qtype: RecordType,
    qclass: Class,
    ttl: u32,
    packed_rdatas: &[u8],
    opt: Option<(u16, bool, &[u8])>,
    limit: usize,
) -> bool {
    debug_assert!(matches!(RdataLayout::of(qtype), RdataLayout::Opaque));
    out.clear();
    let opt_len = opt.map_or(0, |(_, _, options)| OPT_LEN + options.len());
    // Sized before the records are counted, so that an RRset far over any
    // message (CVE-2024-1737's class) is not walked on every query.
    let without_fields = HEADER_LEN + qname.len() + 4 + packed_rdatas.len() + opt_len;
    if without_fields > limit {
        return false;
    }
    let records = packed_count(packed_rdatas);
    let total = without_fields + 10 * records;
    if total > limit || records > u16::MAX as usize || qname.first() == Some(&0) {
        return false;
    }
    out.reserve(total);
    let mut header = [0u8; HEADER_LEN];
    header[0..2].copy_from_slice(&id.to_be_bytes());
    header[2..4].copy_from_slice(&flag_word.to_be_bytes());
    header[4..6].copy_from_slice(&1u16.to_be_bytes());
    header[6..8].copy_from_slice(&(records as u16).to_be_bytes());
    header[10..12].copy_from_slice(&u16::from(opt.is_some()).to_be_bytes());
    out.extend_from_slice(&header);
    out.extend_from_slice(qname);
    out.extend_from_slice(&qtype.0.to_be_bytes());
    out.extend_from_slice(&qclass.0.to_be_bytes());
    extend_at_question(out, qtype, ttl, packed_rdatas);
    if let Some((udp_payload, dnssec_ok, options)) = opt {
        out.extend_from_slice(&opt_record(udp_payload, 0, dnssec_ok, options.len()));
        out.extend_from_slice(options);
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    fn query_bytes(qname: &[u8], qtype: u16, extra: &[u8], arcount: u16) -> Vec<u8> {
        let mut msg = vec![0x12, 0x34, 0x01, 0x00, 0, 1, 0, 0, 0, 0];
        msg.extend_from_slice(&arcount.to_be_bytes());
        msg.extend_from_slice(qname);
        msg.extend_from_slice(&qtype.to_be_bytes());
        msg.extend_from_slice(&1u16.to_be_bytes());
        msg.extend_from_slice(extra);
        msg
    }

    #[test]
    fn parses_a_query_with_edns() {
        let opt = [0, 0, 41, 0x04, 0xd0, 0, 0, 0x80, 0, 0, 4, 0xfd, 0xe9, 0, 0];
        let msg = query_bytes(b"\x03WwW\x07example\x00", 1, &opt, 1);
        let query = parse_query(&msg).unwrap();
        assert_eq!(query.id, 0x1234);
        assert_eq!(query.qname(), b"\x03WwW\x07example\x00");
        assert_eq!(query.qname_lower(), b"\x03www\x07example\x00");
        assert_eq!(
            query.edns,
            Some(Edns { udp_payload: 1232, version: 0, dnssec_ok: true, cookie: None, nsid: false })
        );
    }

    /// RFC 7873 §5.2.2: a COOKIE of 8 or 16 to 40 octets is read; any other
    /// length is FORMERR.
    #[test]
    fn finds_the_cookie_option() {
        for len in 0..48usize {
            let mut opt = vec![0, 0, 41, 0x04, 0xd0, 0, 0, 0, 0];
            opt.extend_from_slice(&((4 + len) as u16).to_be_bytes());
            opt.extend_from_slice(&[0, 10]);
            opt.extend_from_slice(&(len as u16).to_be_bytes());
            opt.extend(std::iter::repeat_n(7, len));
            let msg = query_bytes(b"\x00", 1, &opt, 1);
            let parsed = parse_query(&msg);
            if len == 8 || (16..=40).contains(&len) {
                let (at, found) = parsed.unwrap().edns.unwrap().cookie.unwrap();
                assert_eq!((at as usize, found as usize), (msg.len() - len, len));
            } else {
                assert_eq!(parsed.err(), Some(QueryError::FormErr), "{len} octets");
            }
        }
    }

    /// RFC 5001 §2.1: an NSID option asks for the identifier, whatever its
    /// (meant to be empty) data; a query without one does not.
    #[test]
    fn sees_an_nsid_request() {
        let with = |options: &[u8]| {
            let mut opt = vec![0, 0, 41, 0x04, 0xd0, 0, 0, 0, 0];
            opt.extend_from_slice(&(options.len() as u16).to_be_bytes());
            opt.extend_from_slice(options);
            parse_query(&query_bytes(b"\x00", 1, &opt, 1)).unwrap().edns.unwrap().nsid
        };
        assert!(with(&[0, 3, 0, 0]));
        assert!(with(&[0, 10, 0, 8, 1, 2, 3, 4, 5, 6, 7, 8, 0, 3, 0, 2, 9, 9]));
        assert!(!with(&[]));
        assert!(!with(&[0, 4, 0, 0]));
    }

    #[test]
    fn frames_an_ede_option() {
        assert_eq!(EdeOption::new(ede::NOT_AUTHORITATIVE, "").as_bytes(), [0, 15, 0, 2, 0, 20]);
        assert_eq!(EdeOption::new(ede::INVALID_DATA, "expired").as_bytes(), b"\x00\x0f\x00\x09\x00\x18expired");
        let long = "x".repeat(100);
        assert_eq!(EdeOption::new(0, &long).as_bytes().len(), 6 + MAX_EDE_TEXT);
    }

    #[test]
    fn refuses_malformed_queries() {
        assert_eq!(parse_query(&[0; 5]).err(), Some(QueryError::Drop));
        let mut response = query_bytes(b"\x00", 1, &[], 0);
        response[2] |= 0x80;
        assert_eq!(parse_query(&response).err(), Some(QueryError::Drop));
        let cut = query_bytes(b"\x03www\x07exam", 1, &[], 0);
        assert_eq!(parse_query(&cut[..cut.len() - 4]).err(), Some(QueryError::FormErr));
        let bad_opt = [0, 0, 41, 0x04, 0xd0, 0, 0, 0, 0, 0, 3, 0, 10, 0];
        assert_eq!(parse_query(&query_bytes(b"\x00", 1, &bad_opt, 1)).err(), Some(QueryError::FormErr));
        let no_question = [0u8, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0];
        assert_eq!(parse_query(&no_question).err(), Some(QueryError::FormErr));
    }

    #[test]
    fn compresses_owner_and_rdata_names() {
        let mut buf = Vec::new();
        let mut writer = MessageWriter::new(&mut buf, 512);
        writer.push_question(b"\x03WWW\x07example\x00", RecordType::MX, Class::IN).unwrap();
        let rdatas = [&[0u8, 10][..], b"\x04mail\x07EXAMPLE\x00"].concat();
        let mut packed = vec![0, rdatas.len() as u8];
        packed.extend_from_slice(&rdatas);
        writer.push_rrset(Section::Answer, b"\x03www\x07example\x00", RecordType::MX, 300, &packed).unwrap();
        assert_eq!(writer.count(Section::Answer), 1);
        // Owner is a pointer to the qname at offset 12; the exchange reuses "example".
        assert_eq!(&buf[29..31], &[0xc0, 12]);
        assert_eq!(&buf[buf.len() - 7..], b"\x04mail\xc0\x10");
    }

    /// The class of CVE-2024-8508 (Unbound) and its kind: a response with
    /// thousands of names whose compression compares each suffix with every
    /// earlier name grows quadratically. Here every suffix is compared with
    /// at most MAX_COMPRESSION_NAMES remembered targets, however large the
    /// message (a 64 KB TCP answer, a transfer message), and the message
    /// still reads back name for name.
    #[test]
    fn compression_work_per_name_is_bounded_in_large_messages() {
        let work = |records: usize| {
            let mut buf = Vec::new();
            let mut writer = MessageWriter::new(&mut buf, u16::MAX as usize);
            writer.push_question(b"\x04many\x07example\x00", RecordType::NS, Class::IN).unwrap();
            let mut suffixes = 0;
            let mut written = Vec::new();
            for i in 0..records {
                // Distinct owners and targets, all below the same parents,
                // so that every suffix has candidates of its own length.
                let owner = crate::Name::parse(&format!("h{i}.n{}.many.example.", i % 97), None).unwrap();
                let target = crate::Name::parse(&format!("ns{i}.t{}.many.example.", i % 89), None).unwrap();
                let mut packed = vec![0, target.as_wire().len() as u8];
                packed.extend_from_slice(target.as_wire());
                if writer.push_rrset(Section::Answer, owner.as_wire(), RecordType::NS, 60, &packed).is_err() {
                    break;
                }
                suffixes += owner.label_count() + target.label_count();
                written.push((owner, target));
            }
            let compared = writer.compared.get();
            // Read back: every owner and target decompresses to what was written.
            let mut pos = HEADER_LEN + 14 + 4;
            for (owner, target) in &written {
                let mut name = crate::name::NameBuf::new();
                pos = crate::name::read_compressed(&buf, pos, &mut name).unwrap();
                assert!(crate::name::eq_ignore_case(name.as_slice(), owner.as_wire()));
                pos += 10;
                pos = crate::name::read_compressed(&buf, pos, &mut name).unwrap();
                assert!(crate::name::eq_ignore_case(name.as_slice(), target.as_wire()));
            }
            assert_eq!(pos, buf.len());
            (written.len(), suffixes, compared)
        };
        let (small, small_suffixes, small_compared) = work(100);
        let (large, large_suffixes, large_compared) = work(100_000);
        assert_eq!(small, 100);
        assert!(large > 1_500, "a 64 KB message holds about 2,000 of these records, not {large}");
        for (suffixes, compared) in [(small_suffixes, small_compared), (large_suffixes, large_compared)] {
            assert!(compared <= suffixes * MAX_COMPRESSION_NAMES, "{compared} comparisons for {suffixes} suffixes");
        }
    }

    #[test]
    fn compresses_against_names_that_end_in_pointers() {
        let mut buf = Vec::new();
        let mut writer = MessageWriter::new(&mut buf, 512);
        writer.push_question(b"\x07example\x00", RecordType::NS, Class::IN).unwrap();
        // "ns1" then a pointer to "example" (offset 12): a target that is not
        // one run of octets.
        let ns = [&[0u8, 13][..], b"\x03ns1\x07example\x00"].concat();
        writer.push_rrset(Section::Answer, b"\x07example\x00", RecordType::NS, 60, &ns).unwrap();
        let ns1_at = writer.len() - 6;
        // Found by its labels in any case: an owner below it, and an MX
        // exchange equal to it.
        let mx = [&[0u8, 15, 0, 10][..], b"\x03NS1\x07Example\x00"].concat();
        writer.push_rrset(Section::Additional, b"\x01a\x03ns1\x07EXAMPLE\x00", RecordType::MX, 60, &mx).unwrap();
        // A name with other labels of the same length is not a match.
        let other = [&[0u8, 15, 0, 10][..], b"\x03ns2\x07example\x00"].concat();
        writer.push_rrset(Section::Additional, b"\x07example\x00", RecordType::MX, 60, &other).unwrap();
        let pointer = |offset: usize| [0xc0, offset as u8];
        assert_eq!(&buf[ns1_at..ns1_at + 6], b"\x03ns1\xc0\x0c");
        let owner_at = ns1_at + 6;
        assert_eq!(&buf[owner_at..owner_at + 4], [&b"\x01a"[..], &pointer(ns1_at)].concat());
        let exchange_at = owner_at + 4 + 10 + 2;
        assert_eq!(&buf[exchange_at..exchange_at + 2], pointer(ns1_at));
        assert_eq!(&buf[buf.len() - 6..], b"\x03ns2\xc0\x0c");
    }

    #[test]
    fn rrsets_at_the_question_are_written_as_the_general_path_writes_them() {
        let packed = |rdatas: &[&[u8]]| -> Vec<u8> {
            rdatas.iter().flat_map(|r| [&(r.len() as u16).to_be_bytes()[..], r].concat()).collect()
        };
        let cases: [(RecordType, Vec<u8>); 6] = [
            (RecordType::A, packed(&[&[192, 0, 2, 1], &[192, 0, 2, 2]])),
            (RecordType::TXT, packed(&[b"\x05hello"])),
            (RecordType::MX, packed(&[b"\x00\x0a\x04mail\x07EXAMPLE\x00", b"\x00\x14\x03mx2\x03net\x00"])),
            (RecordType::CNAME, packed(&[b"\x03www\x07example\x00"])),
            (RecordType::SOA, packed(&[&[&b"\x02ns\x07example\x00\x01h\x07example\x00"[..], &[0; 20]].concat()])),
            (RecordType::SRV, packed(&[b"\x00\x01\x00\x02\x00\x35\x03srv\x07example\x00"])),
        ];
        for (rtype, rdatas) in &cases {
            for limit in [512, 40, 30] {
                let (mut general, mut fast) = (Vec::new(), Vec::new());
                let mut results = Vec::new();
                for (buf, at_question) in [(&mut general, false), (&mut fast, true)] {
                    let mut writer = MessageWriter::new(buf, limit);
                    writer.push_question(b"\x03Www\x07example\x00", *rtype, Class::IN).unwrap();
                    let owner = b"\x03www\x07EXAMPLE\x00";
                    results.push(if at_question {
                        writer.push_rrset_at_question(Section::Answer, owner, *rtype, 300, rdatas)
                    } else {
                        writer.push_rrset(Section::Answer, owner, *rtype, 300, rdatas)
                    });
                    // Names written after it compress the same way too.
                    let _ = writer.push_rrset(
                        Section::Additional,
                        b"\x04mail\x07example\x00",
                        RecordType::A,
                        60,
                        &packed(&[&[1, 2, 3, 4]]),
                    );
                }
                assert_eq!(results[0], results[1], "{rtype} limit {limit}");
                assert_eq!(general, fast, "{rtype} limit {limit}");
            }
        }
    }

    #[test]
    fn an_rrset_that_does_not_fit_is_left_out_whole() {
        let mut buf = Vec::new();
        let mut writer = MessageWriter::new(&mut buf, 60);
        writer.push_question(b"\x01a\x00", RecordType::A, Class::IN).unwrap();
        let packed: Vec<u8> = (0..4u8).flat_map(|i| [0, 4, 192, 0, 2, i]).collect();
        assert_eq!(writer.push_rrset(Section::Answer, b"\x01a\x00", RecordType::A, 1, &packed), Err(Full));
        assert_eq!(writer.count(Section::Answer), 0);
        assert_eq!(writer.len(), 12 + 7);
    }
}
