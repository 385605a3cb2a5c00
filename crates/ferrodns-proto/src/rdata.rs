//! RDATA: presentation format to wire format and back, per record type.
//!
//! Zone data is held as uncompressed wire RDATA, names in their original case.
//! [`parse_rdata`] turns master-file tokens into that form and [`write_rdata`]
//! turns it back into text. Every type can also be written in the RFC 3597
//! generic form `\# <length> <hex>`, and types without a parser here must be.
//!
//! Each known type is one list of [`Field`]s ([`fields`]), and everything
//! here reads that list: the text parser, the wire check ([`validate_wire`]),
//! the writer, the reading of compressed names from a received message
//! ([`decompress`]), and, worked out when the program is compiled, where the
//! answer encoder compresses ([`RdataLayout`]) and which name feeds the
//! additional section ([`additional_name_at`]).

use std::fmt::{self, Write as _};
use std::net::{Ipv4Addr, Ipv6Addr};

use data_encoding::{BASE32HEX_NOPAD, BASE64, HEXUPPER_PERMISSIVE};

use crate::name::{self, Name, NameError};
use crate::rtype::RecordType;

/// One master-file token: its raw bytes (escapes not yet decoded) and whether
/// it was written in double quotes.
#[derive(Clone, Copy, Debug)]
pub struct Token<'a> {
    pub text: &'a [u8],
    pub quoted: bool,
}

impl<'a> Token<'a> {
    /// A bare token, for callers that build tokens from strings.
    pub fn bare(text: &'a str) -> Token<'a> {
        Token { text: text.as_bytes(), quoted: false }
    }

    fn as_str(&self) -> &'a str {
        std::str::from_utf8(self.text).unwrap_or("")
    }
}

/// Why RDATA text is not valid for its type.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RdataError {
    /// A required field is absent; names the field.
    Missing(&'static str),
    /// More tokens than the type takes.
    TrailingData,
    /// A number is malformed or out of range; names the field.
    BadNumber(&'static str),
    /// Not an IPv4 or IPv6 address as the type requires.
    BadAddress,
    /// A domain name is malformed.
    BadName(NameError),
    /// Hexadecimal data is malformed.
    BadHex,
    /// Base64 data is malformed.
    BadBase64,
    /// A character-string is longer than 255 octets, or has a bad escape.
    BadString,
    /// The RFC 3597 `\#` form is malformed or its length disagrees with its data.
    BadGeneric,
    /// A type without a parser here must use the `\#` form.
    GenericRequired,
    /// An SVCB/HTTPS parameter is malformed; says which and why.
    BadSvcParam(&'static str),
    /// The RDATA would exceed 65535 octets.
    TooLong,
}

impl fmt::Display for RdataError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RdataError::Missing(field) => write!(f, "missing {field}"),
            RdataError::TrailingData => f.write_str("unexpected data after the record"),
            RdataError::BadNumber(field) => write!(f, "bad {field}"),
            RdataError::BadAddress => f.write_str("bad address"),
            RdataError::BadName(e) => write!(f, "bad name: {e}"),
            RdataError::BadHex => f.write_str("bad hexadecimal data"),
            RdataError::BadBase64 => f.write_str("bad base64 data"),
            RdataError::BadString => f.write_str("bad character-string (over 255 octets or bad escape)"),
            RdataError::BadGeneric => f.write_str("bad RFC 3597 generic data (\\# length hex)"),
            RdataError::GenericRequired => f.write_str("this type must be written in RFC 3597 form (\\# length hex)"),
            RdataError::BadSvcParam(why) => write!(f, "bad SvcParam: {why}"),
            RdataError::TooLong => f.write_str("RDATA longer than 65535 octets"),
        }
    }
}

impl std::error::Error for RdataError {}

impl From<NameError> for RdataError {
    fn from(e: NameError) -> RdataError {
        RdataError::BadName(e)
    }
}

struct Fields<'t, 'a> {
    tokens: &'t [Token<'a>],
    next: usize,
}

impl<'t, 'a> Fields<'t, 'a> {
    fn take(&mut self, field: &'static str) -> Result<Token<'a>, RdataError> {
        let token = *self.tokens.get(self.next).ok_or(RdataError::Missing(field))?;
        self.next += 1;
        Ok(token)
    }

    fn rest(&mut self) -> &'t [Token<'a>] {
        let rest = &self.tokens[self.next..];
        self.next = self.tokens.len();
        rest
    }

    fn is_empty(&self) -> bool {
        self.next >= self.tokens.len()
    }

    fn finish(&self) -> Result<(), RdataError> {
        if self.is_empty() {
            Ok(())
        } else {
            Err(RdataError::TrailingData)
        }
    }

    fn number<T: std::str::FromStr>(&mut self, field: &'static str) -> Result<T, RdataError> {
        let token = self.take(field)?;
        token.as_str().parse().map_err(|_| RdataError::BadNumber(field))
    }

    fn name(&mut self, field: &'static str, origin: &Name, out: &mut Vec<u8>) -> Result<(), RdataError> {
        let token = self.take(field)?;
        let name = Name::parse_bytes(token.text, Some(origin))?;
        out.extend_from_slice(name.as_wire());
        Ok(())
    }

    fn ttl_like(&mut self, field: &'static str) -> Result<u32, RdataError> {
        let token = self.take(field)?;
        parse_ttl(token.as_str()).ok_or(RdataError::BadNumber(field))
    }

    /// The remaining tokens run together, as hex and base64 fields allow.
    fn joined_rest(&mut self) -> Vec<u8> {
        self.rest().iter().flat_map(|t| t.text.iter().copied()).collect()
    }

    /// The remaining tokens as hexadecimal, where none at all is no data.
    fn hex_rest(&mut self, out: &mut Vec<u8>) -> Result<(), RdataError> {
        let joined = self.joined_rest();
        if joined == b"-" {
            return Ok(());
        }
        out.extend_from_slice(&HEXUPPER_PERMISSIVE.decode(&joined).map_err(|_| RdataError::BadHex)?);
        Ok(())
    }
}

/// Parses a TTL or time field: seconds, or BIND-style units (`1h30m`, `2w`).
pub fn parse_ttl(text: &str) -> Option<u32> {
    if text.is_empty() {
        return None;
    }
    if text.bytes().all(|b| b.is_ascii_digit()) {
        return text.parse::<u64>().ok().filter(|v| *v <= u32::MAX as u64).map(|v| v as u32);
    }
    let mut total: u64 = 0;
    let mut current: Option<u64> = None;
    for b in text.bytes() {
        if b.is_ascii_digit() {
            current = Some(current.unwrap_or(0).checked_mul(10)?.checked_add((b - b'0') as u64)?);
            continue;
        }
        let unit = match b.to_ascii_lowercase() {
            b's' => 1,
            b'm' => 60,
            b'h' => 3600,
            b'd' => 86400,
            b'w' => 604800,
            _ => return None,
        };
        total = total.checked_add(current.take()?.checked_mul(unit)?)?;
    }
    if current.is_some() || total > u32::MAX as u64 {
        return None;
    }
    Some(total as u32)
}

/// Decodes one character-string (RFC 1035 §5.1 escapes) into `out`, with its
/// length octet in front.
pub fn push_character_string(token: &[u8], out: &mut Vec<u8>) -> Result<(), RdataError> {
    let start = out.len();
    out.push(0);
    decode_escaped(token, out)?;
    let len = out.len() - start - 1;
    if len > 255 {
        return Err(RdataError::BadString);
    }
    out[start] = len as u8;
    Ok(())
}

fn decode_escaped(token: &[u8], out: &mut Vec<u8>) -> Result<(), RdataError> {
    let mut i = 0;
    while i < token.len() {
        if token[i] == b'\\' {
            let (value, used) = name::unescape(&token[i + 1..]).map_err(|_| RdataError::BadString)?;
            out.push(value);
            i += 1 + used;
        } else {
            out.push(token[i]);
            i += 1;
        }
    }
    Ok(())
}

/// Parses the RDATA of one record from its master-file tokens into wire format,
/// appending to `out`. Relative names are completed with `origin`.
pub fn parse_rdata(
    rtype: RecordType,
    tokens: &[Token<'_>],
    origin: &Name,
    out: &mut Vec<u8>,
) -> Result<(), RdataError> {
    let start = out.len();
    if tokens.first().is_some_and(|t| t.text == b"\\#" && !t.quoted) {
        parse_generic(&tokens[1..], out)?;
        // RFC 3597 §5: generic data for a known type must still be valid for that type.
        validate_wire(rtype, &out[start..]).map_err(|_| RdataError::BadGeneric)?;
    } else {
        parse_known(rtype, tokens, origin, out)?;
    }
    if out.len() - start > u16::MAX as usize {
        return Err(RdataError::TooLong);
    }
    Ok(())
}

fn parse_generic(tokens: &[Token<'_>], out: &mut Vec<u8>) -> Result<(), RdataError> {
    let mut fields = Fields { tokens, next: 0 };
    let len: usize = fields.number("generic data length").map_err(|_| RdataError::BadGeneric)?;
    let start = out.len();
    fields.hex_rest(out).map_err(|_| RdataError::BadGeneric)?;
    if out.len() - start != len {
        return Err(RdataError::BadGeneric);
    }
    Ok(())
}

/// How a name inside RDATA may travel compressed (RFC 3597 §4).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Compression {
    /// RFC 1035's well-known types: written compressed, read either way.
    Compress,
    /// Written uncompressed, but read compressed too, as RFC 3597 §4 asks of
    /// RP, AFSDB, NAPTR and SRV (senders that followed RFC 2052 compress SRV).
    Decompress,
    /// Never compressed, in either direction (DNAME, KX, SVCB, HTTPS).
    Never,
}

/// One field of a type's RDATA, in wire order. A type's list of fields
/// ([`fields`]) is all this module knows about it: parsing the text form,
/// checking and writing the wire form, following compression in a received
/// message, where the answer encoder compresses, and which names the
/// additional section serves, all read that one list.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Field {
    U8(&'static str),
    U16(&'static str),
    U32(&'static str),
    /// A 32-bit time, which the text form may write with units (`1h30m`).
    Interval(&'static str),
    Ipv4,
    Ipv6,
    /// A domain name.
    Name(&'static str, Compression),
    /// A domain name whose addresses an answer carries in its additional
    /// section (RFC 1035 §3.3.11 NS, §3.3.9 MX; RFC 2782 SRV).
    Host(&'static str, Compression),
    /// One character-string: a length octet, then that many octets.
    String(&'static str),
    /// One or more character-strings, to the end of the RDATA.
    Strings,
    /// The rest of the RDATA, written in hexadecimal.
    Hex(&'static str),
    /// The rest of the RDATA, written in base64.
    Base64(&'static str),
    /// A CAA tag (RFC 8659): a length octet, then 1 to 255 letters and digits.
    CaaTag,
    /// A CAA value: the rest of the RDATA, written as one quoted string.
    CaaValue,
    /// SVCB and HTTPS parameters (RFC 9460 §2.2), to the end of the RDATA.
    SvcParams,
    /// A record type, written as its mnemonic (RRSIG's type covered).
    Type(&'static str),
    /// Seconds since 1970 (RFC 4034 §3.2), written `YYYYMMDDHHmmSS`.
    Time(&'static str),
    /// A length octet, then that many octets, written in hexadecimal, or
    /// `-` when empty (the NSEC3 salt, RFC 5155 §3.3).
    Salt,
    /// A length octet, then that many octets, written in base32hex (NSEC3's
    /// next hashed owner name, RFC 5155 §3.3).
    Base32(&'static str),
    /// The type bitmap of NSEC and NSEC3 (RFC 4034 §4.1.2), to the end of
    /// the RDATA, written as the list of types.
    Types,
}

/// The fields of each type this module knows, in wire order; `None` for the
/// rest, which travel and are written in the RFC 3597 generic form.
pub const fn fields(rtype: RecordType) -> Option<&'static [Field]> {
    use Compression::*;
    use Field::*;
    Some(match rtype {
        RecordType::A => &[Ipv4],
        RecordType::AAAA => &[Ipv6],
        RecordType::NS => &[Host("name server", Compress)],
        RecordType::CNAME | RecordType::PTR => &[Name("target name", Compress)],
        RecordType::DNAME => &[Name("target name", Never)],
        RecordType::SOA => &[
            Name("primary server (MNAME)", Compress),
            Name("mailbox (RNAME)", Compress),
            U32("serial"),
            Interval("refresh"),
            Interval("retry"),
            Interval("expire"),
            Interval("minimum"),
        ],
        RecordType::MX => &[U16("preference"), Host("exchange", Compress)],
        RecordType::KX => &[U16("preference"), Name("exchanger", Never)],
        RecordType::AFSDB => &[U16("subtype"), Name("hostname", Decompress)],
        RecordType::RP => &[Name("mailbox", Decompress), Name("TXT owner", Decompress)],
        RecordType::TXT | RecordType::SPF => &[Strings],
        RecordType::HINFO => &[String("CPU"), String("OS")],
        RecordType::SRV => &[U16("priority"), U16("weight"), U16("port"), Host("target", Decompress)],
        RecordType::CAA => &[U8("flags"), CaaTag, CaaValue],
        RecordType::NAPTR => &[
            U16("order"),
            U16("preference"),
            String("flags"),
            String("services"),
            String("regexp"),
            Name("replacement", Decompress),
        ],
        RecordType::DS | RecordType::CDS => &[U16("key tag"), U8("algorithm"), U8("digest type"), Hex("digest")],
        RecordType::SSHFP => &[U8("algorithm"), U8("fingerprint type"), Hex("fingerprint")],
        RecordType::TLSA | RecordType::SMIMEA => {
            &[U8("certificate usage"), U8("selector"), U8("matching type"), Hex("certificate association data")]
        }
        RecordType::DNSKEY | RecordType::CDNSKEY => &[U16("flags"), U8("protocol"), U8("algorithm"), Base64("key")],
        RecordType::SVCB | RecordType::HTTPS => &[U16("priority"), Name("target", Never), SvcParams],
        RecordType::RRSIG => &[
            Type("type covered"),
            U8("algorithm"),
            U8("labels"),
            U32("original TTL"),
            Time("signature expiration"),
            Time("signature inception"),
            U16("key tag"),
            Name("signer's name", Never),
            Base64("signature"),
        ],
        RecordType::NSEC => &[Name("next domain name", Never), Types],
        RecordType::NSEC3 => {
            &[U8("hash algorithm"), U8("flags"), U16("iterations"), Salt, Base32("next hashed owner name"), Types]
        }
        RecordType::NSEC3PARAM => &[U8("hash algorithm"), U8("flags"), U16("iterations"), Salt],
        _ => return None,
    })
}

impl Field {
    /// The field's wire length when every RDATA has the same.
    const fn fixed_len(self) -> Option<usize> {
        match self {
            Field::U8(_) => Some(1),
            Field::U16(_) | Field::Type(_) => Some(2),
            Field::U32(_) | Field::Interval(_) | Field::Time(_) | Field::Ipv4 => Some(4),
            Field::Ipv6 => Some(16),
            _ => None,
        }
    }

    /// Whether the field takes the rest of the RDATA.
    const fn is_rest(self) -> bool {
        matches!(
            self,
            Field::Strings | Field::Hex(_) | Field::Base64(_) | Field::CaaValue | Field::SvcParams | Field::Types
        )
    }

    /// Whether the writer puts the space before each item itself, because
    /// the field may be empty (SvcParams, a type bitmap).
    fn spaces_itself(self) -> bool {
        matches!(self, Field::SvcParams | Field::Types)
    }

    const fn compression(self) -> Option<Compression> {
        match self {
            Field::Name(_, c) | Field::Host(_, c) => Some(c),
            _ => None,
        }
    }

    fn label(self) -> &'static str {
        match self {
            Field::U8(l) | Field::U16(l) | Field::U32(l) | Field::Interval(l) | Field::Type(l) | Field::Time(l) => l,
            Field::Base32(l) => l,
            Field::Salt => "salt",
            Field::Types => "type bitmap",
            Field::Name(l, _) | Field::Host(l, _) | Field::String(l) | Field::Hex(l) | Field::Base64(l) => l,
            Field::Ipv4 | Field::Ipv6 => "address",
            Field::Strings => "character-string",
            Field::CaaTag => "tag",
            Field::CaaValue => "value",
            Field::SvcParams => "SvcParams",
        }
    }
}

fn parse_known(rtype: RecordType, tokens: &[Token<'_>], origin: &Name, out: &mut Vec<u8>) -> Result<(), RdataError> {
    let fields = fields(rtype).ok_or(RdataError::GenericRequired)?;
    let mut f = Fields { tokens, next: 0 };
    for &field in fields {
        match field {
            Field::U8(label) => out.push(f.number::<u8>(label)?),
            Field::U16(label) => out.extend_from_slice(&f.number::<u16>(label)?.to_be_bytes()),
            Field::U32(label) => out.extend_from_slice(&f.number::<u32>(label)?.to_be_bytes()),
            Field::Interval(label) => out.extend_from_slice(&f.ttl_like(label)?.to_be_bytes()),
            Field::Ipv4 => {
                let addr: Ipv4Addr = f.take("address")?.as_str().parse().map_err(|_| RdataError::BadAddress)?;
                out.extend_from_slice(&addr.octets());
            }
            Field::Ipv6 => {
                let addr: Ipv6Addr = f.take("address")?.as_str().parse().map_err(|_| RdataError::BadAddress)?;
                out.extend_from_slice(&addr.octets());
            }
            Field::Name(label, _) | Field::Host(label, _) => f.name(label, origin, out)?,
            Field::String(label) => push_character_string(f.take(label)?.text, out)?,
            Field::Strings => {
                if f.is_empty() {
                    return Err(RdataError::Missing("character-string"));
                }
                for token in f.rest() {
                    push_character_string(token.text, out)?;
                }
            }
            Field::Hex(label) => {
                let joined = f.joined_rest();
                if joined.is_empty() {
                    return Err(RdataError::Missing(label));
                }
                out.extend_from_slice(&HEXUPPER_PERMISSIVE.decode(&joined).map_err(|_| RdataError::BadHex)?);
            }
            Field::Base64(label) => {
                let joined = f.joined_rest();
                if joined.is_empty() {
                    return Err(RdataError::Missing(label));
                }
                out.extend_from_slice(&BASE64.decode(&joined).map_err(|_| RdataError::BadBase64)?);
            }
            Field::CaaTag => {
                let tag = f.take("tag")?;
                if tag.text.is_empty() || tag.text.len() > 255 || !tag.text.iter().all(u8::is_ascii_alphanumeric) {
                    return Err(RdataError::BadNumber("tag (letters and digits only)"));
                }
                out.push(tag.text.len() as u8);
                out.extend_from_slice(tag.text);
            }
            Field::CaaValue => decode_escaped(f.take("value")?.text, out)?,
            Field::SvcParams => parse_svc_params(f.rest(), out)?,
            Field::Type(label) => {
                let rtype = RecordType::from_mnemonic(f.take(label)?.as_str()).ok_or(RdataError::BadNumber(label))?;
                out.extend_from_slice(&rtype.0.to_be_bytes());
            }
            Field::Time(label) => out.extend_from_slice(
                &parse_time(f.take(label)?.as_str()).ok_or(RdataError::BadNumber(label))?.to_be_bytes(),
            ),
            Field::Salt => {
                let token = f.take("salt")?;
                let salt = match token.text {
                    b"-" => Vec::new(),
                    hex => HEXUPPER_PERMISSIVE.decode(hex).map_err(|_| RdataError::BadHex)?,
                };
                push_counted(&salt, "salt", out)?;
            }
            Field::Base32(label) => {
                let token = f.take(label)?;
                let decoded = BASE32HEX_NOPAD
                    .decode(&token.text.to_ascii_uppercase())
                    .map_err(|_| RdataError::BadNumber(label))?;
                push_counted(&decoded, label, out)?;
            }
            Field::Types => {
                let mut types = Vec::new();
                for token in f.rest() {
                    types.push(
                        RecordType::from_mnemonic(token.as_str()).ok_or(RdataError::BadNumber("type in the bitmap"))?,
                    );
                }
                write_type_bitmap(&mut types, out);
            }
        }
    }
    f.finish()
}

/// Appends a length octet and `bytes`.
fn push_counted(bytes: &[u8], label: &'static str, out: &mut Vec<u8>) -> Result<(), RdataError> {
    let len = u8::try_from(bytes.len()).map_err(|_| RdataError::BadNumber(label))?;
    out.push(len);
    out.extend_from_slice(bytes);
    Ok(())
}

/// Writes the RFC 4034 §4.1.2 bitmap of `types`: a window per 256 types that
/// has any, each with the fewest octets that hold its highest type.
fn write_type_bitmap(types: &mut [RecordType], out: &mut Vec<u8>) {
    types.sort_unstable();
    let mut i = 0;
    while i < types.len() {
        let window = types[i].0 >> 8;
        let mut bits = [0u8; 32];
        let mut used = 0;
        while i < types.len() && types[i].0 >> 8 == window {
            let low = (types[i].0 & 0xff) as usize;
            bits[low / 8] |= 0x80 >> (low % 8);
            used = used.max(low / 8 + 1);
            i += 1;
        }
        out.extend_from_slice(&[window as u8, used as u8]);
        out.extend_from_slice(&bits[..used]);
    }
}

/// Days since 1970-01-01 of a date in the proleptic Gregorian calendar.
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let year = if month <= 2 { year - 1 } else { year };
    let era = year.div_euclid(400);
    let year_of_era = year - era * 400;
    let day_of_year = (153 * (month + if month > 2 { -3 } else { 9 }) + 2) / 5 + day - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    era * 146_097 + day_of_era - 719_468
}

/// The date of a count of days since 1970-01-01: year, month, day.
fn civil_from_days(days: i64) -> (i64, i64, i64) {
    let days = days + 719_468;
    let era = days.div_euclid(146_097);
    let day_of_era = days - era * 146_097;
    let year_of_era = (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let shifted_month = (5 * day_of_year + 2) / 153;
    let day = day_of_year - (153 * shifted_month + 2) / 5 + 1;
    let month = if shifted_month < 10 { shifted_month + 3 } else { shifted_month - 9 };
    (year_of_era + era * 400 + i64::from(month <= 2), month, day)
}

/// An RRSIG time: `YYYYMMDDHHmmSS` in UTC, or seconds since 1970 as a
/// decimal number (RFC 4034 §3.2).
fn parse_time(text: &str) -> Option<u32> {
    if text.len() != 14 || !text.bytes().all(|b| b.is_ascii_digit()) {
        return text.parse().ok();
    }
    let part = |range: std::ops::Range<usize>| text[range].parse::<i64>().ok();
    let (year, month, day) = (part(0..4)?, part(4..6)?, part(6..8)?);
    let (hour, minute, second) = (part(8..10)?, part(10..12)?, part(12..14)?);
    let days = days_from_civil(year, month, day);
    if civil_from_days(days) != (year, month, day) || hour > 23 || minute > 59 || second > 59 {
        return None;
    }
    u32::try_from(days * 86_400 + hour * 3600 + minute * 60 + second).ok()
}

fn write_time(seconds: u32, out: &mut String) {
    let seconds = i64::from(seconds);
    let (year, month, day) = civil_from_days(seconds.div_euclid(86_400));
    let time = seconds.rem_euclid(86_400);
    let _ = write!(out, "{year:04}{month:02}{day:02}{:02}{:02}{:02}", time / 3600, time / 60 % 60, time % 60);
}

const SVC_KEYS: [&str; 7] = ["mandatory", "alpn", "no-default-alpn", "port", "ipv4hint", "ech", "ipv6hint"];

fn svc_key_from_text(text: &str) -> Option<u16> {
    if let Some(index) = SVC_KEYS.iter().position(|k| *k == text) {
        return Some(index as u16);
    }
    let digits = text.strip_prefix("key")?;
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) || (digits.len() > 1 && digits.starts_with('0'))
    {
        return None;
    }
    digits.parse().ok()
}

/// Splits a decoded SvcParam value on unescaped commas (RFC 9460 Appendix A.1).
fn split_value_list(raw: &[u8]) -> Result<Vec<Vec<u8>>, RdataError> {
    let mut items = vec![Vec::new()];
    let mut i = 0;
    while i < raw.len() {
        match raw[i] {
            b',' => {
                items.push(Vec::new());
                i += 1;
            }
            b'\\' => {
                let (value, used) =
                    name::unescape(&raw[i + 1..]).map_err(|_| RdataError::BadSvcParam("bad escape in value"))?;
                items.last_mut().expect("never empty").push(value);
                i += 1 + used;
            }
            c => {
                items.last_mut().expect("never empty").push(c);
                i += 1;
            }
        }
    }
    if items.iter().any(Vec::is_empty) {
        return Err(RdataError::BadSvcParam("empty item in a value list"));
    }
    Ok(items)
}

fn parse_svc_params(tokens: &[Token<'_>], out: &mut Vec<u8>) -> Result<(), RdataError> {
    // key=value may arrive as one token, or as `key=` followed by a quoted token.
    let mut params: Vec<(u16, Vec<u8>)> = Vec::new();
    let mut i = 0;
    while i < tokens.len() {
        let token = tokens[i];
        i += 1;
        let text = token.text;
        let (key_text, raw_value): (&[u8], Option<&[u8]>) = match text.iter().position(|&b| b == b'=') {
            None => (text, None),
            Some(eq) if eq + 1 == text.len() && i < tokens.len() && tokens[i].quoted => {
                i += 1;
                (&text[..eq], Some(tokens[i - 1].text))
            }
            Some(eq) => {
                let value = &text[eq + 1..];
                let value = value.strip_prefix(b"\"").and_then(|v| v.strip_suffix(b"\"")).unwrap_or(value);
                (&text[..eq], Some(value))
            }
        };
        let key_text = std::str::from_utf8(key_text).map_err(|_| RdataError::BadSvcParam("unknown key"))?;
        let key = svc_key_from_text(key_text).ok_or(RdataError::BadSvcParam("unknown key"))?;
        if key == 65535 {
            return Err(RdataError::BadSvcParam("key65535 is reserved"));
        }
        if params.iter().any(|(k, _)| *k == key) {
            return Err(RdataError::BadSvcParam("key appears twice"));
        }
        let value = svc_value(key, raw_value)?;
        params.push((key, value));
    }
    params.sort_by_key(|(key, _)| *key);
    if let Some((_, mandatory)) = params.iter().find(|(k, _)| *k == 0) {
        for pair in mandatory.chunks(2) {
            let listed = u16::from_be_bytes([pair[0], pair[1]]);
            if !params.iter().any(|(k, _)| *k == listed) {
                return Err(RdataError::BadSvcParam("mandatory lists a key that is absent"));
            }
        }
    }
    for (key, value) in params {
        if value.len() > u16::MAX as usize {
            return Err(RdataError::TooLong);
        }
        out.extend_from_slice(&key.to_be_bytes());
        out.extend_from_slice(&(value.len() as u16).to_be_bytes());
        out.extend_from_slice(&value);
    }
    Ok(())
}

fn svc_value(key: u16, raw: Option<&[u8]>) -> Result<Vec<u8>, RdataError> {
    fn need(raw: Option<&[u8]>) -> Result<&[u8], RdataError> {
        raw.filter(|r| !r.is_empty()).ok_or(RdataError::BadSvcParam("value required"))
    }
    let mut value = Vec::new();
    match key {
        0 => {
            let mut keys = Vec::new();
            for item in split_value_list(need(raw)?)? {
                let text = std::str::from_utf8(&item).map_err(|_| RdataError::BadSvcParam("unknown key"))?;
                let k = svc_key_from_text(text).ok_or(RdataError::BadSvcParam("unknown key in mandatory"))?;
                if k == 0 || keys.contains(&k) {
                    return Err(RdataError::BadSvcParam("mandatory lists itself or a key twice"));
                }
                keys.push(k);
            }
            keys.sort_unstable();
            for k in keys {
                value.extend_from_slice(&k.to_be_bytes());
            }
        }
        1 => {
            for item in split_value_list(need(raw)?)? {
                if item.len() > 255 {
                    return Err(RdataError::BadSvcParam("alpn id over 255 octets"));
                }
                value.push(item.len() as u8);
                value.extend_from_slice(&item);
            }
        }
        2 => {
            if raw.is_some() {
                return Err(RdataError::BadSvcParam("no-default-alpn takes no value"));
            }
        }
        3 => {
            let text = std::str::from_utf8(need(raw)?).map_err(|_| RdataError::BadSvcParam("bad port"))?;
            let port: u16 = text.parse().map_err(|_| RdataError::BadSvcParam("bad port"))?;
            value.extend_from_slice(&port.to_be_bytes());
        }
        4 | 6 => {
            for item in split_value_list(need(raw)?)? {
                let text = std::str::from_utf8(&item).map_err(|_| RdataError::BadAddress)?;
                if key == 4 {
                    let addr: Ipv4Addr = text.parse().map_err(|_| RdataError::BadSvcParam("bad ipv4hint"))?;
                    value.extend_from_slice(&addr.octets());
                } else {
                    let addr: Ipv6Addr = text.parse().map_err(|_| RdataError::BadSvcParam("bad ipv6hint"))?;
                    value.extend_from_slice(&addr.octets());
                }
            }
        }
        5 => {
            value = BASE64.decode(need(raw)?).map_err(|_| RdataError::BadSvcParam("bad base64 in ech"))?;
        }
        _ => {
            if let Some(raw) = raw {
                decode_escaped(raw, &mut value).map_err(|_| RdataError::BadSvcParam("bad escape in value"))?;
            }
        }
    }
    Ok(value)
}

/// Where the answer encoder compresses names inside a type's RDATA.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum RdataLayout {
    /// Nothing to compress: the RDATA is copied as it is.
    Opaque,
    /// One compressible name at this offset (NS, CNAME, PTR, MX).
    CompressibleNameAt(usize),
    /// Two compressible names at the start (SOA).
    Soa,
}

/// What the answer path needs to know about a type, read off its fields
/// once, when the program is compiled.
#[derive(Clone, Copy)]
struct Derived {
    layout: RdataLayout,
    additional_at: Option<usize>,
}

const OPAQUE: Derived = Derived { layout: RdataLayout::Opaque, additional_at: None };

/// Reads a type's [`Derived`] off its fields. The answer encoder compresses
/// only a name at a fixed offset, or two at the start, so a table entry that
/// asks for anything else fails the build here, as does a field that takes the
/// rest of the RDATA anywhere but last.
const fn derive(fields: &[Field]) -> Derived {
    let mut derived = OPAQUE;
    // Known while every field before is of fixed length.
    let mut offset = Some(0);
    let mut i = 0;
    while i < fields.len() {
        let field = fields[i];
        assert!(!field.is_rest() || i + 1 == fields.len(), "a field that takes the rest must come last");
        if let Some(compression) = field.compression() {
            if matches!(compression, Compression::Compress) {
                derived.layout = match (derived.layout, offset) {
                    (RdataLayout::Opaque, Some(at)) => RdataLayout::CompressibleNameAt(at),
                    (RdataLayout::CompressibleNameAt(0), None) if i == 1 => RdataLayout::Soa,
                    _ => panic!("the encoder compresses one name at a fixed offset, or two at the start"),
                };
            }
            if matches!(field, Field::Host(..)) {
                match (derived.additional_at, offset) {
                    (None, Some(at)) => derived.additional_at = Some(at),
                    _ => panic!("one additional-section name, at a fixed offset"),
                }
            }
            offset = None;
        } else {
            offset = match (offset, field.fixed_len()) {
                (Some(at), Some(len)) => Some(at + len),
                _ => None,
            };
        }
        i += 1;
    }
    derived
}

/// Every type number up to CAA's (257) has its [`Derived`] in one array;
/// [`fields`] knows no type above it (a unit test checks).
const DERIVED_LEN: usize = 258;

static DERIVED: [Derived; DERIVED_LEN] = {
    let mut table = [OPAQUE; DERIVED_LEN];
    let mut i = 0;
    while i < DERIVED_LEN {
        if let Some(fields) = fields(RecordType(i as u16)) {
            table[i] = derive(fields);
        }
        i += 1;
    }
    table
};

#[inline]
fn derived(rtype: RecordType) -> Derived {
    DERIVED.get(rtype.0 as usize).copied().unwrap_or(OPAQUE)
}

impl RdataLayout {
    /// The layout for a record type.
    #[inline]
    pub fn of(rtype: RecordType) -> RdataLayout {
        derived(rtype).layout
    }
}

/// Where a record names a host whose addresses an answer carries in its
/// additional section (NS, MX, SRV): the offset of that name in the RDATA.
#[inline]
pub fn additional_name_at(rtype: RecordType) -> Option<usize> {
    derived(rtype).additional_at
}
/// Where the serial sits in SOA RDATA (after MNAME and RNAME), if the RDATA
/// is a well-formed SOA.
fn soa_serial_offset(rdata: &[u8]) -> Option<usize> {
    let mname = name::wire_len(rdata).ok()?;
    let rname = name::wire_len(rdata.get(mname..)?).ok()?;
    let at = mname + rname;
    (rdata.len() == at + 20).then_some(at)
}

/// The serial field of SOA RDATA.
pub fn soa_serial(rdata: &[u8]) -> Option<crate::Serial> {
    let at = soa_serial_offset(rdata)?;
    Some(crate::Serial(u32::from_be_bytes(rdata[at..at + 4].try_into().ok()?)))
}

/// The refresh, retry, expire and minimum fields of SOA RDATA, in seconds.
pub fn soa_timers(rdata: &[u8]) -> Option<[u32; 4]> {
    let at = soa_serial_offset(rdata)? + 4;
    let field = |i: usize| {
        u32::from_be_bytes([rdata[at + i * 4], rdata[at + i * 4 + 1], rdata[at + i * 4 + 2], rdata[at + i * 4 + 3]])
    };
    Some([field(0), field(1), field(2), field(3)])
}

/// SOA RDATA: MNAME, RNAME, the serial, then refresh, retry, expire and
/// minimum.
pub fn soa_rdata(mname: &crate::Name, rname: &crate::Name, serial: crate::Serial, timers: [u32; 4]) -> Vec<u8> {
    let mut out = Vec::with_capacity(mname.as_wire().len() + rname.as_wire().len() + 20);
    out.extend_from_slice(mname.as_wire());
    out.extend_from_slice(rname.as_wire());
    out.extend_from_slice(&serial.0.to_be_bytes());
    for timer in timers {
        out.extend_from_slice(&timer.to_be_bytes());
    }
    out
}

/// SOA RDATA with its serial replaced.
pub fn with_soa_serial(rdata: &[u8], serial: crate::Serial) -> Option<Vec<u8>> {
    let at = soa_serial_offset(rdata)?;
    let mut out = rdata.to_vec();
    out[at..at + 4].copy_from_slice(&serial.0.to_be_bytes());
    Some(out)
}

/// Checks that wire RDATA is well formed for its type: every field is there,
/// the names inside are valid, and nothing follows the last field. Types
/// this module does not know are accepted as opaque bytes.
pub fn validate_wire(rtype: RecordType, rdata: &[u8]) -> Result<(), RdataError> {
    let Some(fields) = fields(rtype) else { return Ok(()) };
    let mut at = 0;
    for &field in fields {
        at += field_len(field, &rdata[at..])?;
    }
    if at == rdata.len() {
        Ok(())
    } else {
        Err(RdataError::TrailingData)
    }
}

/// Copies the RDATA at `message[start..end]` of a received message into
/// `out`, following compression pointers in the names that may carry them
/// ([`Compression`]), and checks it as [`validate_wire`] does.
pub fn decompress(
    message: &[u8],
    start: usize,
    end: usize,
    rtype: RecordType,
    out: &mut Vec<u8>,
) -> Result<(), RdataError> {
    // A pointer points backwards, so the message up to the RDATA's end holds
    // everything a name inside may reach.
    let message = message.get(..end).ok_or(RdataError::Missing("RDATA"))?;
    let rdata = message.get(start..).ok_or(RdataError::Missing("RDATA"))?;
    let Some(fields) = fields(rtype) else {
        out.extend_from_slice(rdata);
        return Ok(());
    };
    let mut at = start;
    let mut scratch = name::NameBuf::new();
    for &field in fields {
        match field.compression() {
            Some(Compression::Compress | Compression::Decompress) => {
                at = name::read_compressed(message, at, &mut scratch)?;
                out.extend_from_slice(scratch.as_slice());
            }
            _ => {
                let len = field_len(field, &message[at..])?;
                out.extend_from_slice(&message[at..at + len]);
                at += len;
            }
        }
    }
    if at == end {
        Ok(())
    } else {
        Err(RdataError::TrailingData)
    }
}

/// The wire length of `field` at the start of `data`, which runs to the end
/// of the RDATA, once its structure is checked.
fn field_len(field: Field, data: &[u8]) -> Result<usize, RdataError> {
    let missing = || RdataError::Missing(field.label());
    let string_at = |at: usize| -> Result<usize, RdataError> {
        let len = *data.get(at).ok_or_else(missing)? as usize;
        if at + 1 + len > data.len() {
            return Err(missing());
        }
        Ok(at + 1 + len)
    };
    if let Some(len) = field.fixed_len() {
        return if data.len() >= len { Ok(len) } else { Err(missing()) };
    }
    match field {
        Field::Name(..) | Field::Host(..) => {
            if data.is_empty() {
                return Err(missing());
            }
            Ok(name::wire_len(data)?)
        }
        Field::String(_) => string_at(0),
        Field::Strings => {
            let mut at = string_at(0)?;
            while at < data.len() {
                at = string_at(at)?;
            }
            Ok(at)
        }
        Field::CaaTag => {
            if data.first() == Some(&0) {
                return Err(missing());
            }
            string_at(0)
        }
        Field::Salt | Field::Base32(_) => string_at(0),
        Field::Types => {
            let (mut at, mut last_window) = (0, None);
            while at < data.len() {
                let window = data[at];
                let len = *data.get(at + 1).ok_or(RdataError::BadNumber("type bitmap"))? as usize;
                // Windows in order, 1 to 32 octets each, no trailing zero octet.
                let fits = (1..=32).contains(&len) && at + 2 + len <= data.len() && data[at + 1 + len] != 0;
                if !fits || last_window.is_some_and(|last| window <= last) {
                    return Err(RdataError::BadNumber("type bitmap"));
                }
                last_window = Some(window);
                at += 2 + len;
            }
            Ok(at)
        }
        Field::SvcParams => {
            let mut at = 0;
            while at < data.len() {
                let header = data.get(at..at + 4).ok_or(RdataError::BadSvcParam("truncated key and length"))?;
                let len = u16::from_be_bytes([header[2], header[3]]) as usize;
                at += 4 + len;
                if at > data.len() {
                    return Err(RdataError::BadSvcParam("value runs past the RDATA"));
                }
            }
            Ok(at)
        }
        // The rest, whatever it holds: a zone may carry an empty digest or
        // key, which is then written in the generic form.
        _ => Ok(data.len()),
    }
}
/// Writes wire RDATA in presentation format. Types without a writer here, and
/// RDATA that does not parse as its type, come out in RFC 3597 generic form.
pub fn write_rdata(rtype: RecordType, rdata: &[u8], out: &mut String) {
    let start = out.len();
    if write_known(rtype, rdata, out).is_none() {
        out.truncate(start);
        write_generic(rdata, out);
    }
}

/// Writes RDATA in RFC 3597 generic form.
pub fn write_generic(rdata: &[u8], out: &mut String) {
    let _ = write!(out, "\\# {}", rdata.len());
    if !rdata.is_empty() {
        out.push(' ');
        out.push_str(&HEXUPPER_PERMISSIVE.encode(rdata));
    }
}

/// Writes a character-string in quotes, escaping what the parser would not read back.
pub fn write_character_string(bytes: &[u8], out: &mut String) {
    out.push('"');
    for &b in bytes {
        match b {
            b'"' | b'\\' => {
                out.push('\\');
                out.push(b as char);
            }
            0x20..=0x7e => out.push(b as char),
            _ => {
                let _ = write!(out, "\\{b:03}");
            }
        }
    }
    out.push('"');
}

/// Writes RDATA of a type in [`fields`] field by field; `None` when it does
/// not have the type's structure, or a field has no text form (an empty
/// digest, a CAA tag that is not letters and digits, SvcParams out of order).
fn write_known(rtype: RecordType, rdata: &[u8], out: &mut String) -> Option<()> {
    let mut at = 0;
    for (i, &field) in fields(rtype)?.iter().enumerate() {
        let len = field_len(field, &rdata[at..]).ok()?;
        let bytes = &rdata[at..at + len];
        at += len;
        if i > 0 && !field.spaces_itself() {
            out.push(' ');
        }
        let number = |len: usize| bytes.iter().take(len).fold(0u32, |n, &b| n << 8 | b as u32);
        match field {
            Field::U8(_) | Field::U16(_) | Field::U32(_) | Field::Interval(_) => {
                let _ = write!(out, "{}", number(len));
            }
            Field::Type(_) => {
                let _ = write!(out, "{}", RecordType(number(2) as u16));
            }
            Field::Time(_) => write_time(number(4), out),
            Field::Salt if bytes.len() == 1 => out.push('-'),
            Field::Salt => out.push_str(&HEXUPPER_PERMISSIVE.encode(&bytes[1..])),
            Field::Base32(_) => out.push_str(&BASE32HEX_NOPAD.encode(nonempty(&bytes[1..])?)),
            Field::Types => {
                let mut rest = bytes;
                while let [window, len, tail @ ..] = rest {
                    let (bits, after) = tail.split_at(*len as usize);
                    for (octet, &byte) in bits.iter().enumerate() {
                        for bit in 0..8 {
                            if byte & (0x80 >> bit) != 0 {
                                let number = u16::from(*window) << 8 | (octet * 8 + bit) as u16;
                                let _ = write!(out, " {}", RecordType(number));
                            }
                        }
                    }
                    rest = after;
                }
            }
            Field::Ipv4 => {
                let _ = write!(out, "{}", Ipv4Addr::from(number(4)));
            }
            Field::Ipv6 => {
                let octets: [u8; 16] = bytes.try_into().ok()?;
                let _ = write!(out, "{}", Ipv6Addr::from(octets));
            }
            Field::Name(..) | Field::Host(..) => {
                let _ = name::write_presentation(bytes, out);
            }
            Field::String(_) => write_character_string(&bytes[1..], out),
            Field::Strings => {
                let mut rest = bytes;
                while let Some((&len, tail)) = rest.split_first() {
                    if rest.len() < bytes.len() {
                        out.push(' ');
                    }
                    write_character_string(&tail[..len as usize], out);
                    rest = &tail[len as usize..];
                }
            }
            Field::Hex(_) => out.push_str(&HEXUPPER_PERMISSIVE.encode(nonempty(bytes)?)),
            Field::Base64(_) => out.push_str(&BASE64.encode(nonempty(bytes)?)),
            Field::CaaTag => {
                let tag = &bytes[1..];
                if !tag.iter().all(u8::is_ascii_alphanumeric) {
                    return None;
                }
                out.push_str(std::str::from_utf8(tag).ok()?);
            }
            Field::CaaValue => write_character_string(bytes, out),
            Field::SvcParams => {
                let mut rest = bytes;
                let mut last_key = None;
                while rest.len() >= 4 {
                    let key = u16::from_be_bytes([rest[0], rest[1]]);
                    let len = u16::from_be_bytes([rest[2], rest[3]]) as usize;
                    if last_key.is_some_and(|last| key <= last) {
                        return None;
                    }
                    last_key = Some(key);
                    out.push(' ');
                    write_svc_param(key, &rest[4..4 + len], out)?;
                    rest = &rest[4 + len..];
                }
            }
        }
    }
    (at == rdata.len()).then_some(())
}
fn nonempty(bytes: &[u8]) -> Option<&[u8]> {
    if bytes.is_empty() {
        None
    } else {
        Some(bytes)
    }
}

fn write_svc_key(key: u16, out: &mut String) {
    match SVC_KEYS.get(key as usize) {
        Some(k) => out.push_str(k),
        None => {
            let _ = write!(out, "key{key}");
        }
    }
}

/// Writes `=item,item,…` for a value made of fixed-width items; `None` when
/// the value is empty or not a whole number of items.
fn write_value_list(value: &[u8], width: usize, out: &mut String, item: impl Fn(&[u8], &mut String)) -> Option<()> {
    if value.is_empty() || value.len() % width != 0 {
        return None;
    }
    out.push('=');
    for (i, chunk) in value.chunks(width).enumerate() {
        if i > 0 {
            out.push(',');
        }
        item(chunk, out);
    }
    Some(())
}

fn write_svc_param(key: u16, value: &[u8], out: &mut String) -> Option<()> {
    write_svc_key(key, out);
    match key {
        0 => write_value_list(value, 2, out, |pair, out| write_svc_key(u16::from_be_bytes([pair[0], pair[1]]), out))?,
        1 => {
            out.push_str("=\"");
            let mut rest = value;
            let mut first = true;
            while let Some((&len, tail)) = rest.split_first() {
                if !first {
                    out.push(',');
                }
                first = false;
                let id = tail.get(..len as usize)?;
                rest = &tail[len as usize..];
                for &b in id {
                    match b {
                        b',' | b'\\' => {
                            // RFC 9460 Appendix A.1: both levels of escaping.
                            out.push_str("\\\\");
                            out.push(b as char);
                        }
                        b'"' => out.push_str("\\\""),
                        0x20..=0x7e => out.push(b as char),
                        _ => {
                            let _ = write!(out, "\\{b:03}");
                        }
                    }
                }
            }
            if first {
                return None;
            }
            out.push('"');
        }
        2 => {
            if !value.is_empty() {
                return None;
            }
        }
        3 => {
            let port: [u8; 2] = value.try_into().ok()?;
            let _ = write!(out, "={}", u16::from_be_bytes(port));
        }
        4 => write_value_list(value, 4, out, |b, out| {
            let _ = write!(out, "{}", Ipv4Addr::new(b[0], b[1], b[2], b[3]));
        })?,
        5 => {
            let _ = write!(out, "={}", BASE64.encode(value));
        }
        6 => write_value_list(value, 16, out, |b, out| {
            let octets: [u8; 16] = b.try_into().expect("chunks of 16");
            let _ = write!(out, "{}", Ipv6Addr::from(octets));
        })?,
        _ => {
            if !value.is_empty() {
                out.push('=');
                write_character_string(value, out);
            }
        }
    }
    Some(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn soa_fields_read_back_what_was_written() {
        let name = |text| crate::Name::parse(text, None).unwrap();
        let rdata =
            soa_rdata(&name("ns.example."), &name("hostmaster.example."), crate::Serial(7), [3600, 600, 86400, 300]);
        assert_eq!(soa_serial(&rdata), Some(crate::Serial(7)));
        assert_eq!(soa_timers(&rdata), Some([3600, 600, 86400, 300]));
        assert_eq!(soa_timers(&rdata[..rdata.len() - 1]), None, "a field short");
    }

    fn tokens(text: &str) -> Vec<Token<'_>> {
        // Splits on spaces, treating "..." (with escapes) as one quoted token;
        // enough for these tests.
        let mut out = Vec::new();
        let mut rest = text.trim();
        while !rest.is_empty() {
            if let Some(stripped) = rest.strip_prefix('"') {
                // The closing quote is the first one no backslash escapes.
                let bytes = stripped.as_bytes();
                let mut end = 0;
                while bytes[end] != b'"' {
                    end += if bytes[end] == b'\\' { 2 } else { 1 };
                }
                out.push(Token { text: &stripped.as_bytes()[..end], quoted: true });
                rest = stripped[end + 1..].trim_start();
            } else {
                let end = rest.find(' ').unwrap_or(rest.len());
                out.push(Token::bare(&rest[..end]));
                rest = rest[end..].trim_start();
            }
        }
        out
    }

    fn round_trip(rtype: RecordType, text: &str, shown: &str) {
        let origin = Name::parse("example.com.", None).unwrap();
        let mut wire = Vec::new();
        parse_rdata(rtype, &tokens(text), &origin, &mut wire).unwrap_or_else(|e| panic!("{rtype} {text}: {e}"));
        validate_wire(rtype, &wire).unwrap();
        let mut out = String::new();
        write_rdata(rtype, &wire, &mut out);
        assert_eq!(out, shown, "{rtype} {text}");
        let mut again = Vec::new();
        parse_rdata(rtype, &tokens(&out), &origin, &mut again).unwrap();
        assert_eq!(again, wire, "{rtype} re-parse of {out}");
    }

    #[test]
    fn every_listed_type_round_trips() {
        let cases = [
            (RecordType::A, "192.0.2.1", "192.0.2.1"),
            (RecordType::AAAA, "2001:db8::1", "2001:db8::1"),
            (RecordType::NS, "ns1", "ns1.example.com."),
            (RecordType::CNAME, "Target.example.net.", "Target.example.net."),
            (RecordType::SOA, "ns1 host 1 1h 900 1w 300", "ns1.example.com. host.example.com. 1 3600 900 604800 300"),
            (RecordType::MX, "10 mail", "10 mail.example.com."),
            (RecordType::TXT, "\"hello world\" two \"a\\059b\\\\\"", "\"hello world\" \"two\" \"a;b\\\\\""),
            (RecordType::SRV, "0 5 5060 sip", "0 5 5060 sip.example.com."),
            (RecordType::PTR, "@", "example.com."),
            (RecordType::CAA, "0 issue \"ca.example.net; account=1\"", "0 issue \"ca.example.net; account=1\""),
            (
                RecordType::NAPTR,
                "100 10 \"S\" \"SIP+D2U\" \"\" _sip._udp",
                "100 10 \"S\" \"SIP+D2U\" \"\" _sip._udp.example.com.",
            ),
            (
                RecordType::DS,
                "60485 5 1 2BB183AF5F22588179A53B0A 98631FAD1A292118",
                "60485 5 1 2BB183AF5F22588179A53B0A98631FAD1A292118",
            ),
            (RecordType::SSHFP, "4 2 abcdef0123", "4 2 ABCDEF0123"),
            (RecordType::TLSA, "3 1 1 0011AABB", "3 1 1 0011AABB"),
            (RecordType::DNAME, "example.net.", "example.net."),
            (
                RecordType::HTTPS,
                "1 . alpn=h3,h2 port=8443 ipv4hint=192.0.2.1,192.0.2.2 mandatory=alpn,port",
                "1 . mandatory=alpn,port alpn=\"h3,h2\" port=8443 ipv4hint=192.0.2.1,192.0.2.2",
            ),
            (RecordType::SVCB, "0 svc.example.net.", "0 svc.example.net."),
            (
                RecordType::SVCB,
                "16 foo ipv6hint=2001:db8::1 no-default-alpn alpn=h2 key667=hello",
                "16 foo.example.com. alpn=\"h2\" no-default-alpn ipv6hint=2001:db8::1 key667=\"hello\"",
            ),
            (
                RecordType::RRSIG,
                "SOA 8 2 300 20261231235959 1764547200 4711 example.com. AQID",
                "SOA 8 2 300 20261231235959 20251201000000 4711 example.com. AQID",
            ),
            (RecordType::NSEC, "b A RRSIG NSEC TYPE1234", "b.example.com. A RRSIG NSEC TYPE1234"),
            (RecordType::NSEC3, "1 1 0 - 2t7b4g4vsa5smi47k61mv5bv1a22bojr", "1 1 0 - 2T7B4G4VSA5SMI47K61MV5BV1A22BOJR"),
            (RecordType::NSEC3PARAM, "1 0 5 ab12", "1 0 5 AB12"),
            (RecordType(65280), "\\# 3 ABCDEF", "\\# 3 ABCDEF"),
            (RecordType::A, "\\# 4 C0000201", "192.0.2.1"),
        ];
        for (rtype, text, shown) in cases {
            round_trip(rtype, text, shown);
        }
    }

    #[test]
    fn rejects_bad_rdata_with_reasons() {
        let origin = Name::parse("example.com.", None).unwrap();
        let cases = [
            (RecordType::A, "192.0.2", RdataError::BadAddress),
            (RecordType::A, "192.0.2.1 extra", RdataError::TrailingData),
            (RecordType::MX, "10", RdataError::Missing("exchange")),
            (RecordType::MX, "70000 mail", RdataError::BadNumber("preference")),
            (RecordType(65280), "abc", RdataError::GenericRequired),
            (RecordType(65280), "\\# 2 ABCDEF", RdataError::BadGeneric),
            (RecordType::SOA, "\\# 0", RdataError::BadGeneric),
            (RecordType::A, "\\# 3 C00002", RdataError::BadGeneric),
            (RecordType::DS, "1 2 3 XYZ", RdataError::BadHex),
            (RecordType::HTTPS, "1 . alpn=h2 alpn=h3", RdataError::BadSvcParam("key appears twice")),
            (RecordType::HTTPS, "1 . mandatory=port", RdataError::BadSvcParam("mandatory lists a key that is absent")),
        ];
        for (rtype, text, expected) in cases {
            let mut wire = Vec::new();
            assert_eq!(parse_rdata(rtype, &tokens(text), &origin, &mut wire), Err(expected), "{rtype} {text}");
        }
        let long = format!("\"{}\"", "a".repeat(256));
        assert_eq!(parse_rdata(RecordType::TXT, &tokens(&long), &origin, &mut Vec::new()), Err(RdataError::BadString));
    }

    /// Wire RDATA of the types that carry names or strings is checked
    /// field by field, as a transfer or an UPDATE would bring it.
    #[test]
    fn wire_checks_cover_names_and_strings() {
        let name = |text: &str| Name::parse(text, None).unwrap().as_wire().to_vec();
        let good: [(RecordType, Vec<u8>); 8] = [
            (RecordType::RP, [name("admin.example."), name("txt.example.")].concat()),
            (RecordType::TXT, b"\x02hi\x00\x03you".to_vec()),
            (RecordType::SPF, b"\x06v=spf1".to_vec()),
            (RecordType::HINFO, b"\x03cpu\x02os".to_vec()),
            (RecordType::NAPTR, [&[0, 100, 0, 10, 1, b'u', 7][..], b"E2U+sip", &[0], &name(".")].concat()),
            (RecordType::CAA, [&[0, 5][..], b"issue", b"ca.example"].concat()),
            (RecordType::TXT, vec![0]),
            (RecordType::HINFO, vec![0, 0]),
        ];
        for (rtype, wire) in &good {
            assert_eq!(validate_wire(*rtype, wire), Ok(()), "{rtype} {wire:?}");
        }
        let bad: [(RecordType, Vec<u8>); 9] = [
            (RecordType::RP, name("admin.example.")),
            (RecordType::RP, [name("a."), name("b."), vec![1]].concat()),
            (RecordType::TXT, b"\x05hi".to_vec()),
            (RecordType::TXT, Vec::new()),
            (RecordType::HINFO, b"\x03cpu".to_vec()),
            (RecordType::HINFO, b"\x03cpu\x02os\x00".to_vec()),
            (RecordType::NAPTR, [&[0, 100, 0, 10, 1, b'u', 7][..], b"E2U+sip", &[0]].concat()),
            (RecordType::NAPTR, vec![0, 1, 0]),
            (RecordType::CAA, vec![0, 0]),
        ];
        for (rtype, wire) in &bad {
            assert!(validate_wire(*rtype, wire).is_err(), "{rtype} {wire:?} passed");
        }
    }

    /// What the answer encoder and the additional section read off the
    /// table, for the types where it matters.
    #[test]
    fn layouts_follow_from_the_fields() {
        use RdataLayout::*;
        let expected = [
            (RecordType::NS, CompressibleNameAt(0), Some(0)),
            (RecordType::CNAME, CompressibleNameAt(0), None),
            (RecordType::PTR, CompressibleNameAt(0), None),
            (RecordType::MX, CompressibleNameAt(2), Some(2)),
            (RecordType::SOA, Soa, None),
            (RecordType::SRV, Opaque, Some(6)),
            (RecordType::DNAME, Opaque, None),
            (RecordType::RP, Opaque, None),
            (RecordType::HTTPS, Opaque, None),
            (RecordType::A, Opaque, None),
            (RecordType(65280), Opaque, None),
        ];
        for (rtype, layout, additional) in expected {
            assert_eq!((RdataLayout::of(rtype), additional_name_at(rtype)), (layout, additional), "{rtype}");
        }
        // The compiled table covers every type the field lists know.
        for number in 0..=u16::MAX {
            let rtype = RecordType(number);
            if let Some(fields) = fields(rtype) {
                assert!((number as usize) < DERIVED_LEN, "{rtype} lies outside the derived table");
                let derived = derive(fields);
                assert_eq!(
                    (derived.layout, derived.additional_at),
                    (RdataLayout::of(rtype), additional_name_at(rtype))
                );
            }
        }
    }

    /// Names a sender compressed are followed where RFC 3597 §4 lets it
    /// compress, and refused where the type forbids it.
    #[test]
    fn received_names_are_decompressed_where_the_type_allows() {
        let name = |text: &str| Name::parse(text, None).unwrap().as_wire().to_vec();
        // A message whose octet 12 holds `example.com.`, then RDATA under test.
        let message = |rdata: &[u8]| [vec![0; 12], name("example.com."), rdata.to_vec()].concat();
        let pointer = [0xc0, 12];
        let start = 12 + name("example.com.").len();
        let cases: [(RecordType, Vec<u8>, Option<Vec<u8>>); 6] = [
            (
                RecordType::MX,
                [&[0, 10][..], b"\x04mail", &pointer].concat(),
                Some([&[0, 10][..], &name("mail.example.com.")].concat()),
            ),
            (
                RecordType::RP,
                [&pointer[..], &pointer].concat(),
                Some([name("example.com."), name("example.com.")].concat()),
            ),
            (
                RecordType::SRV,
                [&[0, 1, 0, 2, 0, 3][..], &pointer].concat(),
                Some([&[0, 1, 0, 2, 0, 3][..], &name("example.com.")].concat()),
            ),
            (
                RecordType::SOA,
                [&pointer[..], &pointer, &[0; 20]].concat(),
                Some([name("example.com."), name("example.com."), vec![0; 20]].concat()),
            ),
            (RecordType::DNAME, pointer.to_vec(), None),
            (RecordType::MX, [&[0, 10][..], &pointer, &[1]].concat(), None),
        ];
        for (rtype, rdata, expected) in cases {
            let msg = message(&rdata);
            let mut out = Vec::new();
            let got = decompress(&msg, start, msg.len(), rtype, &mut out).map(|()| out);
            assert_eq!(got.ok(), expected, "{rtype} {rdata:?}");
        }
    }

    #[test]
    fn rrsig_times_are_dates_in_utc() {
        assert_eq!(parse_time("19700101000000"), Some(0));
        assert_eq!(parse_time("20261231235959"), Some(1_798_761_599));
        assert_eq!(parse_time("21060207062815"), Some(u32::MAX));
        assert_eq!(parse_time("21060207062816"), None);
        assert_eq!(parse_time("20260230000000"), None);
        assert_eq!(parse_time("1798761599"), Some(1_798_761_599));
        for seconds in [0, 1, 951_782_400, 1_798_761_599, u32::MAX] {
            let mut text = String::new();
            write_time(seconds, &mut text);
            assert_eq!(parse_time(&text), Some(seconds), "{text}");
        }
    }

    #[test]
    fn ttl_units() {
        assert_eq!(parse_ttl("3600"), Some(3600));
        assert_eq!(parse_ttl("1h30m"), Some(5400));
        assert_eq!(parse_ttl("2W"), Some(1209600));
        assert_eq!(parse_ttl("1h3"), None);
        assert_eq!(parse_ttl("4294967296"), None);
    }
}
