//! TSIG (RFC 8945): transaction signatures with HMAC-SHA256/384/512.
//!
//! [`verify_request`] checks a signed query and returns what is needed to
//! sign the answer; [`Signer`] signs a request or each message of a
//! (multi-message) response, chaining MACs as RFC 8945 §5.3.1 asks;
//! [`ResponseVerifier`] checks the messages of a signed response in turn.
//! Message bytes are never re-encoded: the MAC covers the message exactly as
//! sent, minus the TSIG record and with the original ID.

use std::fmt;

use hmac::{Hmac, Mac};
use sha2::{Sha256, Sha384, Sha512};

use crate::name::{self, NameBuf};
use crate::{Name, RecordType};

/// TSIG error codes (RFC 8945 §3, and the RCODE registry).
pub mod errors {
    pub const BADSIG: u16 = 16;
    pub const BADKEY: u16 = 17;
    pub const BADTIME: u16 = 18;
    pub const BADTRUNC: u16 = 22;
}

/// The fudge we sign with and accept: RFC 8945 recommends 300 seconds.
pub const FUDGE: u16 = 300;

const CLASS_ANY: u16 = 255;

/// An HMAC algorithm.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Algorithm {
    HmacSha256,
    HmacSha384,
    HmacSha512,
}

impl Algorithm {
    /// From its name in configuration (`hmac-sha256`) or on the wire (`hmac-sha256.`).
    pub fn from_name(text: &str) -> Option<Algorithm> {
        match text.trim_end_matches('.').to_ascii_lowercase().as_str() {
            "hmac-sha256" => Some(Algorithm::HmacSha256),
            "hmac-sha384" => Some(Algorithm::HmacSha384),
            "hmac-sha512" => Some(Algorithm::HmacSha512),
            _ => None,
        }
    }

    /// The algorithm's domain name, lowercase, without the final dot.
    pub fn name(self) -> &'static str {
        match self {
            Algorithm::HmacSha256 => "hmac-sha256",
            Algorithm::HmacSha384 => "hmac-sha384",
            Algorithm::HmacSha512 => "hmac-sha512",
        }
    }

    fn wire_name(self) -> Name {
        Name::parse(&format!("{}.", self.name()), None).expect("algorithm names are valid")
    }

    fn mac(self, secret: &[u8], parts: &[&[u8]]) -> Vec<u8> {
        fn run<M: Mac + hmac::digest::KeyInit>(secret: &[u8], parts: &[&[u8]]) -> Vec<u8> {
            keyed::<M>(secret, parts).finalize().into_bytes().to_vec()
        }
        match self {
            Algorithm::HmacSha256 => run::<Hmac<Sha256>>(secret, parts),
            Algorithm::HmacSha384 => run::<Hmac<Sha384>>(secret, parts),
            Algorithm::HmacSha512 => run::<Hmac<Sha512>>(secret, parts),
        }
    }

    /// Whether `mac` is the MAC of `parts`, compared in constant time by the
    /// `hmac` crate. Only whole MACs verify (no RFC 8945 §5.2.2.1 truncation).
    fn verify(self, secret: &[u8], parts: &[&[u8]], mac: &[u8]) -> bool {
        fn run<M: Mac + hmac::digest::KeyInit>(secret: &[u8], parts: &[&[u8]], mac: &[u8]) -> bool {
            keyed::<M>(secret, parts).verify_slice(mac).is_ok()
        }
        match self {
            Algorithm::HmacSha256 => run::<Hmac<Sha256>>(secret, parts, mac),
            Algorithm::HmacSha384 => run::<Hmac<Sha384>>(secret, parts, mac),
            Algorithm::HmacSha512 => run::<Hmac<Sha512>>(secret, parts, mac),
        }
    }
}

/// An HMAC keyed with `secret` that has read `parts`.
fn keyed<M: Mac + hmac::digest::KeyInit>(secret: &[u8], parts: &[&[u8]]) -> M {
    let mut mac = <M as hmac::digest::KeyInit>::new_from_slice(secret).expect("HMAC takes keys of any length");
    for part in parts {
        mac.update(part);
    }
    mac
}

/// A shared secret.
#[derive(Clone, PartialEq, Eq)]
pub struct Key {
    /// Lowercase key name.
    pub name: Name,
    pub algorithm: Algorithm,
    pub secret: Vec<u8>,
}

impl fmt::Debug for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Key({} {})", self.name, self.algorithm.name())
    }
}

impl Key {
    /// Parses `NAME:ALGORITHM:BASE64`, as `--tsig-key` takes it.
    pub fn parse(text: &str) -> Result<Key, String> {
        let mut parts = text.splitn(3, ':');
        let (Some(name), Some(algorithm), Some(secret)) = (parts.next(), parts.next(), parts.next()) else {
            return Err("want NAME:ALGORITHM:BASE64".to_string());
        };
        let absolute = if name.ends_with('.') { name.to_string() } else { format!("{name}.") };
        let name = Name::parse(&absolute, None).map_err(|e| format!("bad key name {name:?}: {e}"))?.to_lowercase();
        let algorithm = Algorithm::from_name(algorithm).ok_or_else(|| {
            format!("unsupported algorithm {algorithm:?}: use hmac-sha256, hmac-sha384 or hmac-sha512")
        })?;
        let secret =
            data_encoding::BASE64.decode(secret.trim().as_bytes()).map_err(|e| format!("bad base64 secret: {e}"))?;
        if secret.is_empty() {
            return Err("the secret is empty".to_string());
        }
        Ok(Key { name, algorithm, secret })
    }
}

/// A TSIG record read from a message.
#[derive(Clone, Debug)]
pub struct TsigRecord {
    pub key_name: Name,
    pub algorithm: Name,
    pub time_signed: u64,
    pub fudge: u16,
    pub mac: Vec<u8>,
    pub original_id: u16,
    pub error: u16,
    pub other: Vec<u8>,
    /// Where the TSIG record starts in the message.
    pub offset: usize,
}

/// Why a message's TSIG could not be read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FormatError {
    /// The message does not frame, or a TSIG is not the last record.
    Malformed,
}

fn read_u16(msg: &[u8], at: usize) -> Result<u16, FormatError> {
    Ok(u16::from_be_bytes([
        *msg.get(at).ok_or(FormatError::Malformed)?,
        *msg.get(at + 1).ok_or(FormatError::Malformed)?,
    ]))
}

/// Finds the TSIG record, which must be the last record of the message.
pub fn find(msg: &[u8]) -> Result<Option<TsigRecord>, FormatError> {
    if msg.len() < 12 {
        return Err(FormatError::Malformed);
    }
    let counts: Vec<usize> = (0..4).map(|i| read_u16(msg, 4 + 2 * i).map(usize::from)).collect::<Result<_, _>>()?;
    let mut scratch = NameBuf::new();
    let mut pos = 12;
    for _ in 0..counts[0] {
        pos = name::read_compressed(msg, pos, &mut scratch).map_err(|_| FormatError::Malformed)? + 4;
    }
    let total = counts[1] + counts[2] + counts[3];
    let mut found = None;
    for index in 0..total {
        let start = pos;
        let after_owner = name::read_compressed(msg, pos, &mut scratch).map_err(|_| FormatError::Malformed)?;
        let rtype = read_u16(msg, after_owner)?;
        let rdlen = read_u16(msg, after_owner + 8)? as usize;
        let rdata_start = after_owner + 10;
        let rdata = msg.get(rdata_start..rdata_start + rdlen).ok_or(FormatError::Malformed)?;
        if rtype == RecordType::TSIG.0 {
            if index != total - 1 || counts[3] == 0 {
                return Err(FormatError::Malformed);
            }
            let key_name = Name::from_wire(scratch.as_slice()).map_err(|_| FormatError::Malformed)?.to_lowercase();
            found = Some(parse_rdata(msg, rdata_start, rdata, key_name, start)?);
        }
        pos = rdata_start + rdlen;
    }
    if pos != msg.len() {
        return Err(FormatError::Malformed);
    }
    Ok(found)
}

fn parse_rdata(
    msg: &[u8],
    rdata_start: usize,
    rdata: &[u8],
    key_name: Name,
    offset: usize,
) -> Result<TsigRecord, FormatError> {
    let mut scratch = NameBuf::new();
    // The algorithm name is never compressed (RFC 8945 §4.2), but read it as a
    // name inside the message so that a pointer cannot escape the RDATA.
    let after = name::read_compressed(msg, rdata_start, &mut scratch).map_err(|_| FormatError::Malformed)?;
    let algorithm = Name::from_wire(scratch.as_slice()).map_err(|_| FormatError::Malformed)?.to_lowercase();
    let mut at = after - rdata_start;
    let field = |at: usize, len: usize| rdata.get(at..at + len).ok_or(FormatError::Malformed);
    let time = field(at, 6)?;
    let time_signed = time.iter().fold(0u64, |acc, b| acc << 8 | u64::from(*b));
    at += 6;
    let fudge = u16::from_be_bytes(field(at, 2)?.try_into().expect("two bytes"));
    let mac_len = u16::from_be_bytes(field(at + 2, 2)?.try_into().expect("two bytes")) as usize;
    at += 4;
    let mac = field(at, mac_len)?.to_vec();
    at += mac_len;
    let original_id = u16::from_be_bytes(field(at, 2)?.try_into().expect("two bytes"));
    let error = u16::from_be_bytes(field(at + 2, 2)?.try_into().expect("two bytes"));
    let other_len = u16::from_be_bytes(field(at + 4, 2)?.try_into().expect("two bytes")) as usize;
    at += 6;
    let other = field(at, other_len)?.to_vec();
    if at + other_len != rdata.len() {
        return Err(FormatError::Malformed);
    }
    Ok(TsigRecord { key_name, algorithm, time_signed, fudge, mac, original_id, error, other, offset })
}

/// The message as it was before the TSIG was added: TSIG cut off, ARCOUNT
/// one less, original ID restored.
fn unsigned_part(msg: &[u8], record: &TsigRecord) -> Vec<u8> {
    let mut out = msg[..record.offset].to_vec();
    out[0..2].copy_from_slice(&record.original_id.to_be_bytes());
    let arcount = u16::from_be_bytes([out[10], out[11]]).saturating_sub(1);
    out[10..12].copy_from_slice(&arcount.to_be_bytes());
    out
}

/// The TSIG variables of RFC 8945 §4.3.3 (or only the timers).
fn variables(key: &Key, time_signed: u64, fudge: u16, error: u16, other: &[u8], timers_only: bool) -> Vec<u8> {
    let mut out = Vec::with_capacity(64);
    if !timers_only {
        out.extend_from_slice(key.name.to_lowercase().as_wire());
        out.extend_from_slice(&CLASS_ANY.to_be_bytes());
        out.extend_from_slice(&0u32.to_be_bytes());
        out.extend_from_slice(key.algorithm.wire_name().as_wire());
    }
    out.extend_from_slice(&time_signed.to_be_bytes()[2..]);
    out.extend_from_slice(&fudge.to_be_bytes());
    if !timers_only {
        out.extend_from_slice(&error.to_be_bytes());
        out.extend_from_slice(&(other.len() as u16).to_be_bytes());
        out.extend_from_slice(other);
    }
    out
}

fn prior(mac: &[u8]) -> Vec<u8> {
    let mut out = (mac.len() as u16).to_be_bytes().to_vec();
    out.extend_from_slice(mac);
    out
}

/// A request that verified: sign the answer with this.
#[derive(Clone, Debug)]
pub struct Verified {
    pub key: Key,
    pub request_mac: Vec<u8>,
}

/// A request whose TSIG failed, with the RFC 8945 §5.2 answer to give.
#[derive(Clone, Debug)]
pub struct Failure {
    /// BADKEY, BADSIG or BADTIME.
    pub error: u16,
    pub key_name: Name,
    pub algorithm: Name,
    /// For BADTIME, the answer is signed with the request's MAC.
    pub signing: Option<Verified>,
    pub time_signed: u64,
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let what = match self.error {
            errors::BADKEY => "BADKEY (unknown key or algorithm)",
            errors::BADSIG => "BADSIG (the MAC does not verify)",
            errors::BADTIME => "BADTIME (signed too far from our clock)",
            _ => "error",
        };
        write!(f, "TSIG {what}, key {}", self.key_name)
    }
}

/// Checks the TSIG of a request. `Ok(None)` means the request is unsigned.
pub fn verify_request(
    msg: &[u8],
    keys: impl Fn(&Name) -> Option<Key>,
    now: u64,
) -> Result<Option<Verified>, Result<Failure, FormatError>> {
    let record = match find(msg) {
        Ok(Some(record)) => record,
        Ok(None) => return Ok(None),
        Err(e) => return Err(Err(e)),
    };
    let failure = |error, signing| {
        Err(Ok(Failure {
            error,
            key_name: record.key_name.clone(),
            algorithm: record.algorithm.clone(),
            signing,
            time_signed: record.time_signed,
        }))
    };
    let Some(key) = keys(&record.key_name).filter(|k| k.algorithm.wire_name() == record.algorithm) else {
        return failure(errors::BADKEY, None);
    };
    let key = &key;
    let unsigned = unsigned_part(msg, &record);
    let vars = variables(key, record.time_signed, record.fudge, record.error, &record.other, false);
    if !key.algorithm.verify(&key.secret, &[&unsigned, &vars], &record.mac) {
        return failure(errors::BADSIG, None);
    }
    if now.abs_diff(record.time_signed) > u64::from(record.fudge) {
        return failure(errors::BADTIME, Some(Verified { key: key.clone(), request_mac: record.mac.clone() }));
    }
    Ok(Some(Verified { key: key.clone(), request_mac: record.mac }))
}

/// Signs a request, or the messages of a response, in order.
pub struct Signer {
    key: Key,
    /// The MAC the next one chains from: the request's for the first message
    /// of a response, then each message's own.
    prior_mac: Option<Vec<u8>>,
    signed_one: bool,
}

impl Signer {
    /// For a request.
    pub fn request(key: Key) -> Signer {
        Signer { key, prior_mac: None, signed_one: false }
    }

    /// For the messages answering a verified request.
    pub fn response(verified: Verified) -> Signer {
        Signer { key: verified.key, prior_mac: Some(verified.request_mac), signed_one: false }
    }

    /// The last MAC made (a request's, to verify its answer with).
    pub fn last_mac(&self) -> Option<&[u8]> {
        self.prior_mac.as_deref()
    }

    /// Appends a TSIG record to `msg` (whose header counts are final) and
    /// bumps ARCOUNT. `error` and `other` are for error answers (BADTIME).
    pub fn sign(&mut self, msg: &mut Vec<u8>, now: u64, error: u16, other: &[u8]) {
        let timers_only = self.signed_one;
        let vars = variables(&self.key, now, FUDGE, error, other, timers_only);
        let mac = match &self.prior_mac {
            Some(prior_mac) => self.key.algorithm.mac(&self.key.secret, &[&prior(prior_mac), msg, &vars]),
            None => self.key.algorithm.mac(&self.key.secret, &[msg, &vars]),
        };
        let original_id = u16::from_be_bytes([msg[0], msg[1]]);
        append_record(msg, &self.key.name, &self.key.algorithm.wire_name(), now, &mac, original_id, error, other);
        self.prior_mac = Some(mac);
        self.signed_one = true;
    }
}

/// Appends an unsigned TSIG carrying only an error (BADKEY, BADSIG answers).
pub fn append_error(msg: &mut Vec<u8>, key_name: &Name, algorithm: &Name, time_signed: u64, error: u16) {
    let original_id = u16::from_be_bytes([msg[0], msg[1]]);
    append_record(msg, key_name, algorithm, time_signed, &[], original_id, error, &[]);
}

#[allow(clippy::too_many_arguments)]
fn append_record(
    msg: &mut Vec<u8>,
    key_name: &Name,
    algorithm: &Name,
    time_signed: u64,
    mac: &[u8],
    original_id: u16,
    error: u16,
    other: &[u8],
) {
    msg.extend_from_slice(key_name.as_wire());
    msg.extend_from_slice(&RecordType::TSIG.0.to_be_bytes());
    msg.extend_from_slice(&CLASS_ANY.to_be_bytes());
    msg.extend_from_slice(&0u32.to_be_bytes());
    let rdlen = algorithm.as_wire().len() + 6 + 2 + 2 + mac.len() + 2 + 2 + 2 + other.len();
    msg.extend_from_slice(&(rdlen as u16).to_be_bytes());
    msg.extend_from_slice(algorithm.as_wire());
    msg.extend_from_slice(&time_signed.to_be_bytes()[2..]);
    msg.extend_from_slice(&FUDGE.to_be_bytes());
    msg.extend_from_slice(&(mac.len() as u16).to_be_bytes());
    msg.extend_from_slice(mac);
    msg.extend_from_slice(&original_id.to_be_bytes());
    msg.extend_from_slice(&error.to_be_bytes());
    msg.extend_from_slice(&(other.len() as u16).to_be_bytes());
    msg.extend_from_slice(other);
    let arcount = u16::from_be_bytes([msg[10], msg[11]]).wrapping_add(1);
    msg[10..12].copy_from_slice(&arcount.to_be_bytes());
}

/// Why a signed response did not verify.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ResponseError {
    Malformed,
    /// The first message (or too many in a row) came unsigned.
    Unsigned,
    /// The server reported a TSIG error (BADKEY, BADSIG, BADTIME).
    ServerError(u16),
    WrongKey,
    BadSignature,
    BadTime,
}

impl fmt::Display for ResponseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ResponseError::Malformed => f.write_str("malformed TSIG"),
            ResponseError::Unsigned => f.write_str("the answer is not signed"),
            ResponseError::ServerError(e) => write!(f, "the server answered TSIG error {e}"),
            ResponseError::WrongKey => f.write_str("the answer is signed with another key"),
            ResponseError::BadSignature => f.write_str("the answer's MAC does not verify"),
            ResponseError::BadTime => f.write_str("the answer is signed too far from our clock"),
        }
    }
}

/// Verifies the messages of a response to a signed request, in order.
pub struct ResponseVerifier {
    key: Key,
    prior_mac: Vec<u8>,
    /// Unsigned messages since the last signed one (RFC 8945 §5.3.1 allows up to 99).
    pending: Vec<u8>,
    unsigned_run: usize,
    first: bool,
}

impl ResponseVerifier {
    /// For the answer to a request signed with `request_mac`.
    pub fn new(key: Key, request_mac: Vec<u8>) -> ResponseVerifier {
        ResponseVerifier { key, prior_mac: request_mac, pending: Vec::new(), unsigned_run: 0, first: true }
    }

    /// Checks one message of the response.
    pub fn verify(&mut self, msg: &[u8], now: u64) -> Result<(), ResponseError> {
        let record = find(msg).map_err(|_| ResponseError::Malformed)?;
        let Some(record) = record else {
            if self.first || self.unsigned_run >= 99 {
                return Err(ResponseError::Unsigned);
            }
            self.pending.extend_from_slice(msg);
            self.unsigned_run += 1;
            return Ok(());
        };
        if record.error != 0 {
            return Err(ResponseError::ServerError(record.error));
        }
        if record.key_name != self.key.name || record.algorithm != self.key.algorithm.wire_name() {
            return Err(ResponseError::WrongKey);
        }
        let unsigned = unsigned_part(msg, &record);
        let vars = variables(&self.key, record.time_signed, record.fudge, record.error, &record.other, !self.first);
        let parts: [&[u8]; 4] = [&prior(&self.prior_mac), &self.pending, &unsigned, &vars];
        if !self.key.algorithm.verify(&self.key.secret, &parts, &record.mac) {
            return Err(ResponseError::BadSignature);
        }
        if now.abs_diff(record.time_signed) > u64::from(record.fudge) {
            return Err(ResponseError::BadTime);
        }
        self.prior_mac = record.mac;
        self.pending.clear();
        self.unsigned_run = 0;
        self.first = false;
        Ok(())
    }

    /// True once the last message seen was signed (a transfer must end signed).
    pub fn is_complete(&self) -> bool {
        !self.first && self.pending.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key() -> Key {
        Key::parse("xfr-key:hmac-sha256:c2VjcmV0LXNlY3JldC1zZWNyZXQtc2VjcmV0").unwrap()
    }

    fn query(id: u16) -> Vec<u8> {
        let mut msg = vec![(id >> 8) as u8, id as u8, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0];
        msg.extend_from_slice(Name::parse("example.com.", None).unwrap().as_wire());
        msg.extend_from_slice(&[0, 252, 0, 1]);
        msg
    }

    #[test]
    fn request_and_chained_response_verify() {
        let now = 1_800_000_000;
        let mut request = query(0x1234);
        let mut signer = Signer::request(key());
        signer.sign(&mut request, now, 0, &[]);
        let verified = verify_request(&request, |n| (*n == key().name).then(key), now).unwrap().unwrap();
        let mut response_signer = Signer::response(verified);
        let mut verifier = ResponseVerifier::new(key(), signer.last_mac().unwrap().to_vec());
        let mut answers = Vec::new();
        for i in 0..3 {
            // Three different messages: the rcode nibble differs.
            let mut answer = query(0x1234);
            answer[2] = 0x84;
            answer[3] = i;
            response_signer.sign(&mut answer, now + i as u64, 0, &[]);
            verifier.verify(&answer, now).unwrap();
            answers.push(answer);
        }
        assert!(verifier.is_complete());
        // Each MAC covers the one before it: a message out of its place fails.
        let mut replay = ResponseVerifier::new(key(), signer.last_mac().unwrap().to_vec());
        replay.verify(&answers[0], now).unwrap();
        assert_eq!(replay.verify(&answers[2], now), Err(ResponseError::BadSignature));
    }

    /// The TSIG bypass of CVE-2017-3142 and -3143: a request whose MAC is
    /// cut short, empty, or someone else's is never taken as signed, and a
    /// request signed with a key is refused when that key is not the
    /// server's under that name.
    #[test]
    fn short_empty_or_foreign_macs_do_not_verify() {
        let now = 1_800_000_000;
        let mut signed = query(9);
        let mut signer = Signer::request(key());
        signer.sign(&mut signed, now, 0, &[]);
        let mac = signer.last_mac().unwrap().to_vec();
        let algorithm = key().algorithm.wire_name();
        for forged in [&mac[..mac.len() / 2], &mac[..10], &[][..], &mac[..1], &[0u8; 32][..]] {
            let mut request = query(9);
            append_record(&mut request, &key().name, &algorithm, now, forged, 9, 0, &[]);
            let verdict = verify_request(&request, |n| (*n == key().name).then(key), now);
            match verdict {
                Err(Ok(failure)) => assert_eq!(failure.error, errors::BADSIG, "a MAC of {} octets", forged.len()),
                Err(Err(_)) => {}
                Ok(v) => panic!("a MAC of {} octets verified: {:?}", forged.len(), v.map(|v| v.key.name)),
            }
        }
        // The whole MAC, on the message it was made for, does.
        let mut request = query(9);
        append_record(&mut request, &key().name, &algorithm, now, &mac, 9, 0, &[]);
        assert!(verify_request(&request, |n| (*n == key().name).then(key), now).unwrap().is_some());
        // A key of the same name but another algorithm is not the key.
        let other = Key::parse("xfr-key:hmac-sha512:c2VjcmV0LXNlY3JldC1zZWNyZXQtc2VjcmV0").unwrap();
        let failure = verify_request(&signed, |_| Some(other.clone()), now).unwrap_err().unwrap();
        assert_eq!(failure.error, errors::BADKEY);
    }

    #[test]
    fn failures_are_named() {
        let now = 1_800_000_000;
        let mut request = query(7);
        Signer::request(key()).sign(&mut request, now, 0, &[]);
        let other = Key::parse("xfr-key:hmac-sha256:b3RoZXI=").unwrap();
        let fail = verify_request(&request, |_| Some(other.clone()), now).unwrap_err().unwrap();
        assert_eq!(fail.error, errors::BADSIG);
        let fail = verify_request(&request, |_| None, now).unwrap_err().unwrap();
        assert_eq!(fail.error, errors::BADKEY);
        let fail = verify_request(&request, |_| Some(key()), now + 301).unwrap_err().unwrap();
        assert_eq!(fail.error, errors::BADTIME);
        let mut tampered = request.clone();
        tampered[13] ^= 1;
        assert_eq!(verify_request(&tampered, |_| Some(key()), now).unwrap_err().unwrap().error, errors::BADSIG);
        assert!(verify_request(&query(7), |_| Some(key()), now).unwrap().is_none());
        assert!(verify_request(&request[..request.len() - 3], |_| Some(key()), now).is_err());
    }
}
