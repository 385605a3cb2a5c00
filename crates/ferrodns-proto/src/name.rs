//! Domain names in uncompressed wire format.
//!
//! A [`Name`] owns the wire bytes of an absolute name, in the case it was written
//! with. Comparisons are ASCII case-insensitive (RFC 4343); output keeps the
//! original case. The free functions work on borrowed wire slices so that the
//! answer path can compare and hash names without building a `Name`.

use std::fmt;
use std::mem::MaybeUninit;

/// The longest a name may be on the wire, root label included (RFC 1035 §2.3.4).
pub const MAX_NAME_LEN: usize = 255;
/// The longest a single label may be (RFC 1035 §2.3.4).
pub const MAX_LABEL_LEN: usize = 63;

/// Why text or wire bytes are not a valid name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NameError {
    /// A label is longer than 63 octets.
    LabelTooLong,
    /// The name is longer than 255 octets.
    NameTooLong,
    /// Two dots in a row, or a leading dot on a name that is not the root.
    EmptyLabel,
    /// A `\` escape is cut short or names a value above 255.
    BadEscape,
    /// A relative name was given where there is no origin to complete it.
    RelativeWithoutOrigin,
    /// Wire bytes end inside a name.
    Truncated,
    /// A compression pointer points forward, at itself, or loops.
    BadPointer,
    /// A label type other than a plain label or a pointer (RFC 6891 §5).
    BadLabelType,
}

impl fmt::Display for NameError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            NameError::LabelTooLong => "label longer than 63 octets",
            NameError::NameTooLong => "name longer than 255 octets",
            NameError::EmptyLabel => "empty label",
            NameError::BadEscape => "bad escape sequence",
            NameError::RelativeWithoutOrigin => "relative name with no origin",
            NameError::Truncated => "name truncated",
            NameError::BadPointer => "bad compression pointer",
            NameError::BadLabelType => "unsupported label type",
        })
    }
}

impl std::error::Error for NameError {}

/// An absolute domain name in uncompressed wire format, original case kept.
#[derive(Clone)]
pub struct Name(Box<[u8]>);

impl Name {
    /// The root name, `.`.
    pub fn root() -> Name {
        Name(Box::new([0]))
    }

    /// Takes wire bytes that must already be one valid uncompressed name.
    pub fn from_wire(wire: &[u8]) -> Result<Name, NameError> {
        let len = wire_len(wire)?;
        if len != wire.len() {
            return Err(NameError::Truncated);
        }
        Ok(Name(wire.into()))
    }

    /// Parses presentation format (RFC 1035 §5.1). A name without a final dot is
    /// relative and gets `origin` appended; `@` is the origin itself.
    pub fn parse(text: &str, origin: Option<&Name>) -> Result<Name, NameError> {
        Name::parse_bytes(text.as_bytes(), origin)
    }

    /// As [`Name::parse`], on raw master-file bytes.
    pub fn parse_bytes(bytes: &[u8], origin: Option<&Name>) -> Result<Name, NameError> {
        if bytes == b"@" {
            return origin.cloned().ok_or(NameError::RelativeWithoutOrigin);
        }
        if bytes == b"." {
            return Ok(Name::root());
        }
        let mut wire = Vec::with_capacity(bytes.len() + 2);
        let mut label_start = 0usize;
        wire.push(0);
        let mut i = 0;
        let mut absolute = false;
        while i < bytes.len() {
            let c = bytes[i];
            match c {
                b'.' => {
                    let label_len = wire.len() - label_start - 1;
                    if label_len == 0 {
                        return Err(NameError::EmptyLabel);
                    }
                    wire[label_start] = label_len as u8;
                    if i + 1 == bytes.len() {
                        absolute = true;
                    } else {
                        label_start = wire.len();
                        wire.push(0);
                    }
                    i += 1;
                    continue;
                }
                b'\\' => {
                    let (value, used) = unescape(&bytes[i + 1..])?;
                    wire.push(value);
                    i += 1 + used;
                }
                _ => {
                    wire.push(c);
                    i += 1;
                }
            }
            if wire.len() - label_start - 1 > MAX_LABEL_LEN {
                return Err(NameError::LabelTooLong);
            }
        }
        if !absolute {
            let label_len = wire.len() - label_start - 1;
            if label_len == 0 {
                return Err(NameError::EmptyLabel);
            }
            wire[label_start] = label_len as u8;
            match origin {
                Some(origin) => wire.extend_from_slice(&origin.0),
                None => return Err(NameError::RelativeWithoutOrigin),
            }
        } else {
            wire.push(0);
        }
        if wire.len() > MAX_NAME_LEN {
            return Err(NameError::NameTooLong);
        }
        Ok(Name(wire.into_boxed_slice()))
    }

    /// The wire bytes, original case.
    pub fn as_wire(&self) -> &[u8] {
        &self.0
    }

    /// Gives up the wire bytes.
    pub fn into_wire(self) -> Box<[u8]> {
        self.0
    }

    /// True for `.`.
    pub fn is_root(&self) -> bool {
        self.0.len() == 1
    }

    /// How many labels, not counting the root.
    pub fn label_count(&self) -> usize {
        label_count(&self.0)
    }

    /// True when `self` equals `ancestor` or lies below it.
    pub fn is_subdomain_of(&self, ancestor: &Name) -> bool {
        is_subdomain(&self.0, &ancestor.0)
    }

    /// The name with its first label removed; the root's parent is `None`.
    pub fn parent(&self) -> Option<Name> {
        if self.is_root() {
            None
        } else {
            let skip = self.0[0] as usize + 1;
            Some(Name(self.0[skip..].into()))
        }
    }

    /// A lowercase copy.
    pub fn to_lowercase(&self) -> Name {
        let mut wire = self.0.clone();
        wire.make_ascii_lowercase();
        Name(wire)
    }

    /// The first label's bytes, without its length octet; empty for the root.
    pub fn first_label(&self) -> &[u8] {
        &self.0[1..1 + self.0[0] as usize]
    }
}

impl PartialEq for Name {
    fn eq(&self, other: &Name) -> bool {
        self.0.eq_ignore_ascii_case(&other.0)
    }
}

impl Eq for Name {}

impl std::hash::Hash for Name {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        for b in self.0.iter() {
            state.write_u8(b.to_ascii_lowercase());
        }
    }
}

impl PartialOrd for Name {
    fn partial_cmp(&self, other: &Name) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Name {
    /// Canonical DNS order (RFC 4034 §6.1): compare labels from the root down.
    fn cmp(&self, other: &Name) -> std::cmp::Ordering {
        canonical_cmp(&self.0, &other.0)
    }
}

impl fmt::Display for Name {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write_presentation(&self.0, f)
    }
}

impl fmt::Debug for Name {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Name({self})")
    }
}

/// A buffer for one wire name that needs no zeroing: bytes are written before
/// they are read, so the answer path does not pay a 255-byte memset per name.
#[derive(Clone, Copy)]
pub struct NameBuf {
    bytes: [MaybeUninit<u8>; MAX_NAME_LEN],
    len: usize,
}

impl Default for NameBuf {
    fn default() -> NameBuf {
        NameBuf::new()
    }
}

impl NameBuf {
    /// An empty buffer.
    pub const fn new() -> NameBuf {
        NameBuf { bytes: [MaybeUninit::uninit(); MAX_NAME_LEN], len: 0 }
    }

    /// Replaces the contents with `wire` (at most 255 octets).
    #[inline]
    pub fn set(&mut self, wire: &[u8]) {
        self.len = 0;
        self.extend(wire).expect("a wire name fits in 255 octets");
    }

    /// Replaces the contents with `wire` lowercased.
    #[inline]
    pub fn set_lowercase(&mut self, wire: &[u8]) {
        self.set(wire);
        self.as_mut_slice().make_ascii_lowercase();
    }

    /// Appends octets; fails, changing nothing, past 255.
    #[inline]
    pub fn extend(&mut self, more: &[u8]) -> Result<(), NameError> {
        if self.len + more.len() > MAX_NAME_LEN {
            return Err(NameError::NameTooLong);
        }
        // SAFETY: the check above keeps len + more.len() within `bytes`, and
        // `more` cannot overlap a buffer we hold by `&mut`.
        unsafe {
            std::ptr::copy_nonoverlapping(
                more.as_ptr(),
                self.bytes.as_mut_ptr().add(self.len).cast::<u8>(),
                more.len(),
            );
        }
        self.len += more.len();
        Ok(())
    }

    /// The octets written so far.
    #[inline]
    pub fn as_slice(&self) -> &[u8] {
        // SAFETY: the first `len` bytes were all written by `extend`.
        unsafe { std::slice::from_raw_parts(self.bytes.as_ptr().cast::<u8>(), self.len) }
    }

    /// The octets written so far, mutable.
    #[inline]
    pub fn as_mut_slice(&mut self) -> &mut [u8] {
        // SAFETY: as in `as_slice`.
        unsafe { std::slice::from_raw_parts_mut(self.bytes.as_mut_ptr().cast::<u8>(), self.len) }
    }

    /// How many octets.
    pub fn len(&self) -> usize {
        self.len
    }

    /// True when nothing is written.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

/// Decodes the part of a `\X` or `\DDD` escape after the backslash; returns the
/// octet and how many input bytes it used.
pub fn unescape(rest: &[u8]) -> Result<(u8, usize), NameError> {
    match rest.first() {
        None => Err(NameError::BadEscape),
        Some(c) if c.is_ascii_digit() => {
            if rest.len() < 3 || !rest[1].is_ascii_digit() || !rest[2].is_ascii_digit() {
                return Err(NameError::BadEscape);
            }
            let value = (rest[0] - b'0') as u32 * 100 + (rest[1] - b'0') as u32 * 10 + (rest[2] - b'0') as u32;
            if value > 255 {
                return Err(NameError::BadEscape);
            }
            Ok((value as u8, 3))
        }
        Some(&c) => Ok((c, 1)),
    }
}

/// Writes a wire name in presentation format, escaping as RFC 1035 §5.1 and
/// RFC 4343 §2.1 ask.
pub fn write_presentation(wire: &[u8], out: &mut impl fmt::Write) -> fmt::Result {
    if wire.first() == Some(&0) {
        return out.write_char('.');
    }
    let mut pos = 0;
    while pos < wire.len() {
        let len = wire[pos] as usize;
        if len == 0 {
            break;
        }
        for &b in &wire[pos + 1..pos + 1 + len] {
            match b {
                b'.' | b'\\' | b'"' | b'(' | b')' | b';' | b'@' | b'$' => {
                    out.write_char('\\')?;
                    out.write_char(b as char)?;
                }
                0x21..=0x7e => out.write_char(b as char)?,
                _ => write!(out, "\\{b:03}")?,
            }
        }
        out.write_char('.')?;
        pos += 1 + len;
    }
    Ok(())
}

/// The length of the uncompressed name at the start of `wire`, checked.
pub fn wire_len(wire: &[u8]) -> Result<usize, NameError> {
    let mut pos = 0;
    loop {
        let len = *wire.get(pos).ok_or(NameError::Truncated)? as usize;
        if len == 0 {
            return Ok(pos + 1);
        }
        if len > MAX_LABEL_LEN {
            return Err(NameError::BadLabelType);
        }
        pos += 1 + len;
        if pos >= MAX_NAME_LEN {
            return Err(NameError::NameTooLong);
        }
    }
}

/// Number of labels in a valid wire name, not counting the root.
pub fn label_count(wire: &[u8]) -> usize {
    let mut pos = 0;
    let mut count = 0;
    while wire[pos] != 0 {
        pos += 1 + wire[pos] as usize;
        count += 1;
    }
    count
}

/// True when wire name `name` equals `ancestor` or lies below it, ignoring case.
pub fn is_subdomain(name: &[u8], ancestor: &[u8]) -> bool {
    if ancestor.len() > name.len() {
        return false;
    }
    let offset = name.len() - ancestor.len();
    // The suffix must start on a label boundary.
    let mut pos = 0;
    while pos < offset {
        pos += 1 + name[pos] as usize;
    }
    pos == offset && name[offset..].eq_ignore_ascii_case(ancestor)
}

/// Canonical DNS name order (RFC 4034 §6.1) on two valid wire names.
pub fn canonical_cmp(a: &[u8], b: &[u8]) -> std::cmp::Ordering {
    let mut a_starts = [0u8; 128];
    let mut b_starts = [0u8; 128];
    let a_count = label_starts(a, &mut a_starts);
    let b_count = label_starts(b, &mut b_starts);
    let mut i = a_count;
    let mut j = b_count;
    while i > 0 && j > 0 {
        i -= 1;
        j -= 1;
        let a_pos = a_starts[i] as usize;
        let b_pos = b_starts[j] as usize;
        let a_label = &a[a_pos + 1..a_pos + 1 + a[a_pos] as usize];
        let b_label = &b[b_pos + 1..b_pos + 1 + b[b_pos] as usize];
        let ordering = a_label.iter().map(u8::to_ascii_lowercase).cmp(b_label.iter().map(u8::to_ascii_lowercase));
        if ordering.is_ne() {
            return ordering;
        }
    }
    a_count.cmp(&b_count)
}

/// Writes the offset of each label of a valid wire name into `starts`, first
/// label first, and returns how many labels there are (the root not counted).
pub fn label_starts(wire: &[u8], starts: &mut [u8; 128]) -> usize {
    let mut pos = 0;
    let mut count = 0;
    while wire[pos] != 0 {
        starts[count] = pos as u8;
        count += 1;
        pos += 1 + wire[pos] as usize;
    }
    count
}

/// Reads a possibly compressed name from `message` at `start` into `out`
/// (uncompressed, original case). Returns the position just after the name in
/// `message`.
///
/// Pointers must point strictly backwards, which rules out loops (RFC 1035
/// §4.1.4 does not demand it, but every sane encoder does it and it bounds the work).
pub fn read_compressed(message: &[u8], start: usize, out: &mut NameBuf) -> Result<usize, NameError> {
    out.len = 0;
    let mut pos = start;
    let mut end = None;
    let mut limit = start;
    // Pointers only go backwards, so a chain ends; but a message of pointers
    // to pointers makes one name cost a jump per two octets, and a message
    // of owners pointing into such a chain costs that for each of them.
    // A name has at most 127 labels, so no honest name needs more jumps.
    let mut jumps = 0;
    loop {
        // A run of plain labels up to a pointer or the root is copied whole.
        let run = pos;
        let mut written = out.len;
        let at_root = loop {
            let len = *message.get(pos).ok_or(NameError::Truncated)?;
            match len & 0xc0 {
                0x00 => {
                    let len = len as usize;
                    if message.len() < pos + 1 + len {
                        return Err(NameError::Truncated);
                    }
                    written += 1 + len;
                    if written > MAX_NAME_LEN {
                        return Err(NameError::NameTooLong);
                    }
                    pos += 1 + len;
                    if len == 0 {
                        break true;
                    }
                }
                0xc0 => break false,
                _ => return Err(NameError::BadLabelType),
            }
        };
        out.extend(&message[run..pos])?;
        if at_root {
            return Ok(end.unwrap_or(pos));
        }
        let low = *message.get(pos + 1).ok_or(NameError::Truncated)?;
        let target = ((message[pos] & 0x3f) as usize) << 8 | low as usize;
        if end.is_none() {
            end = Some(pos + 2);
        }
        jumps += 1;
        if target >= limit || jumps > MAX_POINTER_JUMPS {
            return Err(NameError::BadPointer);
        }
        limit = target;
        pos = target;
    }
}

/// The most compression pointers one name may follow: one per label.
pub const MAX_POINTER_JUMPS: usize = 127;

/// Equality of two wire names (or any octet strings) ignoring ASCII case,
/// eight octets at a time: names on the answer path are short and nearly
/// always equal in case too, which this makes a few word compares.
#[inline]
pub fn eq_ignore_case(a: &[u8], b: &[u8]) -> bool {
    let len = a.len();
    if len != b.len() {
        return false;
    }
    if len < 8 {
        if len < 4 {
            return a.iter().zip(b).all(|(x, y)| x.eq_ignore_ascii_case(y));
        }
        // Two four-octet words, overlapping when shorter than eight.
        return quad_eq_ignore_case(&a[..4], &b[..4]) && quad_eq_ignore_case(&a[len - 4..], &b[len - 4..]);
    }
    let mut at = 0;
    while at + 8 < len {
        if !chunk_eq_ignore_case(&a[at..at + 8], &b[at..at + 8]) {
            return false;
        }
        at += 8;
    }
    // The last eight octets, overlapping what was compared already.
    chunk_eq_ignore_case(&a[len - 8..], &b[len - 8..])
}

#[inline(always)]
fn quad_eq_ignore_case(x: &[u8], y: &[u8]) -> bool {
    let x_word = u32::from_ne_bytes(x.try_into().expect("4 octets"));
    let y_word = u32::from_ne_bytes(y.try_into().expect("4 octets"));
    x_word == y_word || x.eq_ignore_ascii_case(y)
}

#[inline(always)]
fn chunk_eq_ignore_case(x: &[u8], y: &[u8]) -> bool {
    let x_word = u64::from_ne_bytes(x.try_into().expect("8 octets"));
    let y_word = u64::from_ne_bytes(y.try_into().expect("8 octets"));
    x_word == y_word || x.eq_ignore_ascii_case(y)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn name(text: &str) -> Name {
        Name::parse(text, None).unwrap()
    }

    #[test]
    fn parse_and_display_round_trip() {
        let origin = name("Example.COM.");
        let cases = [
            ("www", "www.Example.COM."),
            ("@", "Example.COM."),
            ("a\\.b.c.", "a\\.b.c."),
            ("\\065bc.", "Abc."),
            ("x\\032y.", "x\\032y."),
            (".", "."),
        ];
        for (input, shown) in cases {
            assert_eq!(Name::parse(input, Some(&origin)).unwrap().to_string(), shown, "{input}");
        }
    }

    #[test]
    fn rejects_bad_names() {
        assert_eq!(Name::parse("a..b.", None), Err(NameError::EmptyLabel));
        assert_eq!(Name::parse("a", None), Err(NameError::RelativeWithoutOrigin));
        assert_eq!(Name::parse(&format!("{}.", "a".repeat(64)), None), Err(NameError::LabelTooLong));
        let long = format!("{}.", vec!["a".repeat(63); 4].join("."));
        assert_eq!(Name::parse(&long, None), Err(NameError::NameTooLong));
        assert_eq!(Name::parse("a\\25", None), Err(NameError::BadEscape));
        assert_eq!(Name::parse("a\\256.", None), Err(NameError::BadEscape));
    }

    #[test]
    fn compares_without_case_and_in_canonical_order() {
        assert_eq!(name("WWW.example.com."), name("www.EXAMPLE.com."));
        let mut names = [name("z.example."), name("a.example."), name("example."), name("yljkjljk.a.example.")];
        names.sort();
        let shown: Vec<String> = names.iter().map(Name::to_string).collect();
        assert_eq!(shown, ["example.", "a.example.", "yljkjljk.a.example.", "z.example."]);
        assert!(name("a.b.example.").is_subdomain_of(&name("EXAMPLE.")));
        assert!(!name("aexample.").is_subdomain_of(&name("example.")));
    }

    #[test]
    fn reads_compressed_names_and_refuses_loops() {
        let mut message = vec![0u8; 12];
        message.extend_from_slice(b"\x03www\x07example\x03com\x00");
        message.extend_from_slice(b"\x04mail\xc0\x10");
        let mut out = NameBuf::new();
        let end = read_compressed(&message, 29, &mut out).unwrap();
        assert_eq!(out.as_slice(), b"\x04mail\x07example\x03com\x00");
        assert_eq!(end, message.len());
        let looped = [0u8, 0, 0xc0, 0x02];
        assert_eq!(read_compressed(&looped, 2, &mut out), Err(NameError::BadPointer));
        let forward = [0xc0u8, 0x05, 0, 0, 0, 0];
        assert_eq!(read_compressed(&forward, 0, &mut out), Err(NameError::BadPointer));
        // A label running past the end is Truncated, a name past 255 octets too long.
        assert_eq!(read_compressed(b"\x03ww", 0, &mut out), Err(NameError::Truncated));
        let long: Vec<u8> = (0..5).flat_map(|_| [&[63u8][..], &[b'a'; 63]].concat()).chain([0]).collect();
        assert_eq!(read_compressed(&long, 0, &mut out), Err(NameError::NameTooLong));
        assert_eq!(read_compressed(&[0x80u8, 0], 0, &mut out), Err(NameError::BadLabelType));
    }

    /// The pointer-chain class of CVE: every pointer valid (backwards), but
    /// pointing at the previous pointer, 20,000 deep, with thousands of owners
    /// pointing at its end. Each name may follow 127 pointers at most.
    #[test]
    fn pointer_chains_are_cut_short() {
        let mut message = vec![0u8; 12];
        message.extend_from_slice(b"\x03www\x07example\x00");
        let mut previous = 12;
        for _ in 0..20_000 {
            let here = message.len();
            message.extend_from_slice(&[0xc0 | (previous >> 8) as u8, previous as u8]);
            previous = here;
            if message.len() > 0x3f00 {
                break;
            }
        }
        let mut out = NameBuf::new();
        assert_eq!(read_compressed(&message, previous, &mut out), Err(NameError::BadPointer));
        // Up to 127 jumps is a name.
        let mut short = vec![0u8; 12];
        short.extend_from_slice(b"\x01a\x00");
        let mut previous = 12;
        for _ in 0..MAX_POINTER_JUMPS {
            let here = short.len();
            short.extend_from_slice(&[0xc0 | (previous >> 8) as u8, previous as u8]);
            previous = here;
        }
        assert_eq!(read_compressed(&short, previous, &mut out), Ok(short.len()));
        assert_eq!(out.as_slice(), b"\x01a\x00");
    }

    #[test]
    fn equality_ignores_ascii_case_only() {
        for len in 0..40usize {
            let lower: Vec<u8> = (0..len).map(|i| b'a' + (i % 26) as u8).collect();
            assert!(eq_ignore_case(&lower, &lower));
            for flip in 0..len {
                let mut other = lower.clone();
                other[flip] = other[flip].to_ascii_uppercase();
                assert!(eq_ignore_case(&lower, &other), "len {len}, upper case at {flip}");
                // 0x20 apart but not letters: '@' and '`', '[' and '{'.
                let mut symbols = lower.clone();
                let mut shifted = lower.clone();
                (symbols[flip], shifted[flip]) = if flip % 2 == 0 { (b'@', b'`') } else { (b'[', b'{') };
                assert!(!eq_ignore_case(&symbols, &shifted), "len {len}, symbol at {flip}");
                other[flip] = b'-';
                assert!(!eq_ignore_case(&lower, &other), "len {len}, differs at {flip}");
            }
        }
        assert!(!eq_ignore_case(b"abc", b"abcd"));
    }
}
