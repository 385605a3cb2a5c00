//! RDATA: presentation format to wire format and back, per record type.
//!
//! Zone data is held as uncompressed wire RDATA, names in their original case.
//! [`parse_rdata`] turns master-file tokens into that form and [`write_rdata`]
//! turns it back into text. Every type can also be written in the RFC 3597
//! generic form `\# <length> <hex>`, and types without a parser here must be.
//!
//! [`RdataLayout`] says where the names inside an RDATA sit, which the answer
//! encoder needs for compression and additional-section processing.

use std::fmt::{self, Write as _};
use std::net::{Ipv4Addr, Ipv6Addr};

use data_encoding::{BASE64, HEXUPPER_PERMISSIVE};

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

    fn hex_rest(&mut self, out: &mut Vec<u8>, allow_empty: bool) -> Result<(), RdataError> {
        let joined: Vec<u8> = self.rest().iter().flat_map(|t| t.text.iter().copied()).collect();
        if joined.is_empty() && !allow_empty {
            return Err(RdataError::Missing("hex data"));
        }
        if joined == b"-" && allow_empty {
            return Ok(());
        }
        let decoded = HEXUPPER_PERMISSIVE.decode(&joined).map_err(|_| RdataError::BadHex)?;
        out.extend_from_slice(&decoded);
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
    fields.hex_rest(out, true).map_err(|_| RdataError::BadGeneric)?;
    if out.len() - start != len {
        return Err(RdataError::BadGeneric);
    }
    Ok(())
}

fn parse_known(rtype: RecordType, tokens: &[Token<'_>], origin: &Name, out: &mut Vec<u8>) -> Result<(), RdataError> {
    let mut f = Fields { tokens, next: 0 };
    match rtype {
        RecordType::A => {
            let addr: Ipv4Addr = f.take("address")?.as_str().parse().map_err(|_| RdataError::BadAddress)?;
            out.extend_from_slice(&addr.octets());
        }
        RecordType::AAAA => {
            let addr: Ipv6Addr = f.take("address")?.as_str().parse().map_err(|_| RdataError::BadAddress)?;
            out.extend_from_slice(&addr.octets());
        }
        RecordType::NS | RecordType::CNAME | RecordType::PTR | RecordType::DNAME => {
            f.name("target name", origin, out)?;
        }
        RecordType::SOA => {
            f.name("primary server (MNAME)", origin, out)?;
            f.name("mailbox (RNAME)", origin, out)?;
            let serial: u32 = f.number("serial")?;
            out.extend_from_slice(&serial.to_be_bytes());
            for field in ["refresh", "retry", "expire", "minimum"] {
                out.extend_from_slice(&f.ttl_like(field)?.to_be_bytes());
            }
        }
        RecordType::MX | RecordType::KX | RecordType::AFSDB => {
            out.extend_from_slice(&f.number::<u16>("preference")?.to_be_bytes());
            f.name("exchange", origin, out)?;
        }
        RecordType::RP => {
            f.name("mailbox", origin, out)?;
            f.name("TXT owner", origin, out)?;
        }
        RecordType::TXT | RecordType::SPF => {
            if f.is_empty() {
                return Err(RdataError::Missing("character-string"));
            }
            for token in f.rest() {
                push_character_string(token.text, out)?;
            }
        }
        RecordType::HINFO => {
            push_character_string(f.take("CPU")?.text, out)?;
            push_character_string(f.take("OS")?.text, out)?;
        }
        RecordType::SRV => {
            for field in ["priority", "weight", "port"] {
                out.extend_from_slice(&f.number::<u16>(field)?.to_be_bytes());
            }
            f.name("target", origin, out)?;
        }
        RecordType::CAA => {
            out.push(f.number::<u8>("flags")?);
            let tag = f.take("tag")?;
            if tag.text.is_empty() || tag.text.len() > 255 || !tag.text.iter().all(u8::is_ascii_alphanumeric) {
                return Err(RdataError::BadNumber("tag (letters and digits only)"));
            }
            out.push(tag.text.len() as u8);
            out.extend_from_slice(tag.text);
            decode_escaped(f.take("value")?.text, out)?;
        }
        RecordType::NAPTR => {
            out.extend_from_slice(&f.number::<u16>("order")?.to_be_bytes());
            out.extend_from_slice(&f.number::<u16>("preference")?.to_be_bytes());
            for field in ["flags", "services", "regexp"] {
                push_character_string(f.take(field)?.text, out)?;
            }
            f.name("replacement", origin, out)?;
        }
        RecordType::DS | RecordType::CDS => {
            out.extend_from_slice(&f.number::<u16>("key tag")?.to_be_bytes());
            out.push(f.number::<u8>("algorithm")?);
            out.push(f.number::<u8>("digest type")?);
            f.hex_rest(out, false)?;
        }
        RecordType::SSHFP => {
            out.push(f.number::<u8>("algorithm")?);
            out.push(f.number::<u8>("fingerprint type")?);
            f.hex_rest(out, false)?;
        }
        RecordType::TLSA | RecordType::SMIMEA => {
            out.push(f.number::<u8>("certificate usage")?);
            out.push(f.number::<u8>("selector")?);
            out.push(f.number::<u8>("matching type")?);
            f.hex_rest(out, false)?;
        }
        RecordType::DNSKEY | RecordType::CDNSKEY => {
            out.extend_from_slice(&f.number::<u16>("flags")?.to_be_bytes());
            out.push(f.number::<u8>("protocol")?);
            out.push(f.number::<u8>("algorithm")?);
            let joined: Vec<u8> = f.rest().iter().flat_map(|t| t.text.iter().copied()).collect();
            out.extend_from_slice(&BASE64.decode(&joined).map_err(|_| RdataError::BadBase64)?);
        }
        RecordType::SVCB | RecordType::HTTPS => {
            out.extend_from_slice(&f.number::<u16>("priority")?.to_be_bytes());
            f.name("target", origin, out)?;
            parse_svc_params(f.rest(), out)?;
        }
        _ => return Err(RdataError::GenericRequired),
    }
    f.finish()
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

/// Where the domain names sit inside a type's RDATA, for compression and
/// additional-section processing.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum RdataLayout {
    /// No name the encoder needs to know about.
    Opaque,
    /// One name at this offset, which RFC 3597 §4 lets us compress (NS, CNAME, PTR, MX).
    CompressibleNameAt(usize),
    /// SOA: two compressible names at the start.
    Soa,
    /// One name at this offset that must not be compressed (SRV, DNAME, SVCB).
    NameAt(usize),
}

impl RdataLayout {
    /// The layout for a record type.
    pub fn of(rtype: RecordType) -> RdataLayout {
        match rtype {
            RecordType::NS | RecordType::CNAME | RecordType::PTR => RdataLayout::CompressibleNameAt(0),
            RecordType::MX => RdataLayout::CompressibleNameAt(2),
            RecordType::SOA => RdataLayout::Soa,
            RecordType::SRV => RdataLayout::NameAt(6),
            RecordType::DNAME => RdataLayout::NameAt(0),
            RecordType::SVCB | RecordType::HTTPS => RdataLayout::NameAt(2),
            _ => RdataLayout::Opaque,
        }
    }
}

/// Where a record names a host whose addresses an answer carries in its
/// additional section (RFC 1035 §3.3.11 NS, §3.3.9 MX; RFC 2782 SRV): the
/// offset of that name in the RDATA. The name offsets come from the same
/// place as [`RdataLayout::of`]'s, so the two cannot disagree.
pub fn additional_name_at(rtype: RecordType) -> Option<usize> {
    match (rtype, RdataLayout::of(rtype)) {
        (RecordType::NS | RecordType::MX, RdataLayout::CompressibleNameAt(at)) => Some(at),
        (RecordType::SRV, RdataLayout::NameAt(at)) => Some(at),
        _ => None,
    }
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

/// Checks that wire RDATA is well formed for its type: the names inside are
/// valid and the fixed fields are all there. Types this module does not know are
/// accepted as opaque bytes.
pub fn validate_wire(rtype: RecordType, rdata: &[u8]) -> Result<(), RdataError> {
    let name_at = |offset: usize| -> Result<usize, RdataError> {
        let tail = rdata.get(offset..).ok_or(RdataError::Missing("name"))?;
        Ok(offset + name::wire_len(tail)?)
    };
    let fixed = |len: usize| {
        if rdata.len() == len {
            Ok(())
        } else {
            Err(RdataError::BadGeneric)
        }
    };
    match rtype {
        RecordType::A => fixed(4),
        RecordType::AAAA => fixed(16),
        RecordType::NS | RecordType::CNAME | RecordType::PTR | RecordType::DNAME => fixed(name_at(0)?),
        RecordType::MX | RecordType::KX | RecordType::AFSDB => fixed(name_at(2)?),
        RecordType::SRV => fixed(name_at(6)?),
        RecordType::SOA => {
            let second = name_at(0)?;
            fixed(name_at(second)? + 20)
        }
        RecordType::SVCB | RecordType::HTTPS => {
            if name_at(2)? <= rdata.len() {
                Ok(())
            } else {
                Err(RdataError::BadGeneric)
            }
        }
        RecordType::RP => {
            let second = name_at(0)?;
            fixed(name_at(second)?)
        }
        // One or more character-strings, filling the RDATA exactly.
        RecordType::TXT | RecordType::SPF => {
            let mut at = 0;
            while at < rdata.len() {
                at = string_at(rdata, at)?;
            }
            if rdata.is_empty() {
                return Err(RdataError::Missing("text"));
            }
            Ok(())
        }
        RecordType::HINFO => fixed(string_at(rdata, string_at(rdata, 0)?)?),
        RecordType::NAPTR => {
            // Order, preference, flags, services, regexp, replacement.
            let mut at = 4;
            for _ in 0..3 {
                at = string_at(rdata, at)?;
            }
            fixed(name_at(at)?)
        }
        RecordType::CAA => {
            // Flags, then a tag (1 to 255 octets) whose length is its first octet.
            let tag_len = *rdata.get(1).ok_or(RdataError::Missing("tag"))? as usize;
            if tag_len == 0 || rdata.len() < 2 + tag_len {
                return Err(RdataError::BadGeneric);
            }
            Ok(())
        }
        _ => Ok(()),
    }
}

/// The offset after the character-string at `at` (a length octet, then
/// that many octets).
fn string_at(rdata: &[u8], at: usize) -> Result<usize, RdataError> {
    let len = *rdata.get(at).ok_or(RdataError::Missing("character-string"))? as usize;
    if at + 1 + len > rdata.len() {
        return Err(RdataError::BadGeneric);
    }
    Ok(at + 1 + len)
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

struct Reader<'a> {
    data: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn bytes(&mut self, n: usize) -> Option<&'a [u8]> {
        let slice = self.data.get(self.pos..self.pos + n)?;
        self.pos += n;
        Some(slice)
    }
    fn u8(&mut self) -> Option<u8> {
        self.bytes(1).map(|b| b[0])
    }
    fn u16(&mut self) -> Option<u16> {
        self.bytes(2).map(|b| u16::from_be_bytes([b[0], b[1]]))
    }
    fn u32(&mut self) -> Option<u32> {
        self.bytes(4).map(|b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }
    fn name(&mut self) -> Option<&'a [u8]> {
        let len = name::wire_len(&self.data[self.pos..]).ok()?;
        self.bytes(len)
    }
    fn character_string(&mut self) -> Option<&'a [u8]> {
        let len = self.u8()? as usize;
        self.bytes(len)
    }
    fn rest(&mut self) -> &'a [u8] {
        let rest = &self.data[self.pos.min(self.data.len())..];
        self.pos = self.data.len();
        rest
    }
    fn done(&self) -> bool {
        self.pos == self.data.len()
    }
}

fn push_name(wire: &[u8], out: &mut String) {
    let _ = name::write_presentation(wire, out);
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

fn write_known(rtype: RecordType, rdata: &[u8], out: &mut String) -> Option<()> {
    let mut r = Reader { data: rdata, pos: 0 };
    match rtype {
        RecordType::A => {
            let b = r.bytes(4)?;
            let _ = write!(out, "{}", Ipv4Addr::new(b[0], b[1], b[2], b[3]));
        }
        RecordType::AAAA => {
            let b: [u8; 16] = r.bytes(16)?.try_into().ok()?;
            let _ = write!(out, "{}", Ipv6Addr::from(b));
        }
        RecordType::NS | RecordType::CNAME | RecordType::PTR | RecordType::DNAME => push_name(r.name()?, out),
        RecordType::SOA => {
            push_name(r.name()?, out);
            out.push(' ');
            push_name(r.name()?, out);
            for _ in 0..5 {
                let _ = write!(out, " {}", r.u32()?);
            }
        }
        RecordType::MX | RecordType::KX | RecordType::AFSDB => {
            let _ = write!(out, "{} ", r.u16()?);
            push_name(r.name()?, out);
        }
        RecordType::RP => {
            push_name(r.name()?, out);
            out.push(' ');
            push_name(r.name()?, out);
        }
        RecordType::TXT | RecordType::SPF | RecordType::HINFO => {
            let mut first = true;
            while !r.done() {
                if !first {
                    out.push(' ');
                }
                first = false;
                write_character_string(r.character_string()?, out);
            }
            if first {
                return None;
            }
        }
        RecordType::SRV => {
            let _ = write!(out, "{} {} {} ", r.u16()?, r.u16()?, r.u16()?);
            push_name(r.name()?, out);
        }
        RecordType::CAA => {
            let flags = r.u8()?;
            let tag = r.character_string()?;
            if tag.is_empty() || !tag.iter().all(u8::is_ascii_alphanumeric) {
                return None;
            }
            let _ = write!(out, "{flags} {} ", std::str::from_utf8(tag).ok()?);
            write_character_string(r.rest(), out);
        }
        RecordType::NAPTR => {
            let _ = write!(out, "{} {} ", r.u16()?, r.u16()?);
            for _ in 0..3 {
                write_character_string(r.character_string()?, out);
                out.push(' ');
            }
            push_name(r.name()?, out);
        }
        RecordType::DS | RecordType::CDS => {
            let _ = write!(out, "{} {} {} ", r.u16()?, r.u8()?, r.u8()?);
            out.push_str(&HEXUPPER_PERMISSIVE.encode(nonempty(r.rest())?));
        }
        RecordType::SSHFP => {
            let _ = write!(out, "{} {} ", r.u8()?, r.u8()?);
            out.push_str(&HEXUPPER_PERMISSIVE.encode(nonempty(r.rest())?));
        }
        RecordType::TLSA | RecordType::SMIMEA => {
            let _ = write!(out, "{} {} {} ", r.u8()?, r.u8()?, r.u8()?);
            out.push_str(&HEXUPPER_PERMISSIVE.encode(nonempty(r.rest())?));
        }
        RecordType::DNSKEY | RecordType::CDNSKEY => {
            let _ = write!(out, "{} {} {} ", r.u16()?, r.u8()?, r.u8()?);
            out.push_str(&BASE64.encode(nonempty(r.rest())?));
        }
        RecordType::SVCB | RecordType::HTTPS => {
            let _ = write!(out, "{} ", r.u16()?);
            push_name(r.name()?, out);
            let mut last_key = None;
            while !r.done() {
                let key = r.u16()?;
                if last_key.is_some_and(|last| key <= last) {
                    return None;
                }
                last_key = Some(key);
                let len = r.u16()? as usize;
                let value = r.bytes(len)?;
                out.push(' ');
                write_svc_param(key, value, out)?;
            }
        }
        _ => return None,
    }
    if r.done() {
        Some(())
    } else {
        None
    }
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
            let mut r = Reader { data: value, pos: 0 };
            let mut first = true;
            while !r.done() {
                if !first {
                    out.push(',');
                }
                first = false;
                for &b in r.character_string()? {
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

    fn tokens(text: &str) -> Vec<Token<'_>> {
        // Splits on spaces, treating "..." as one quoted token; enough for these tests.
        let mut out = Vec::new();
        let mut rest = text.trim();
        while !rest.is_empty() {
            if let Some(stripped) = rest.strip_prefix('"') {
                let end = stripped.find('"').unwrap();
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

    #[test]
    fn ttl_units() {
        assert_eq!(parse_ttl("3600"), Some(3600));
        assert_eq!(parse_ttl("1h30m"), Some(5400));
        assert_eq!(parse_ttl("2W"), Some(1209600));
        assert_eq!(parse_ttl("1h3"), None);
        assert_eq!(parse_ttl("4294967296"), None);
    }
}
