//! The client side of replication: SOA queries and zone transfers from a
//! primary, signed with TSIG when a key is given, bounded in records, bytes
//! and time. Nothing here changes served data: callers get parsed records
//! and decide.

use std::net::SocketAddr;
use std::time::Duration;

use ferrodns_proto::message::{flags, Section};
use ferrodns_proto::name::{self, NameBuf};
use ferrodns_proto::rdata::{self, soa_serial};
use ferrodns_proto::tsig::{Key, ResponseVerifier, Signer};
use ferrodns_proto::{Class, MessageWriter, Name, RecordType, Serial};
use ferrodns_zone::edit::Record;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::exchange::{random_id, ExchangeError, UdpExchange};
use crate::primary::unix_now;

/// Limits on one incoming transfer.
#[derive(Clone, Copy, Debug)]
pub struct TransferLimits {
    pub max_records: usize,
    pub max_bytes: usize,
    /// For the whole transfer.
    pub timeout: Duration,
}

impl Default for TransferLimits {
    fn default() -> TransferLimits {
        TransferLimits { max_records: 5_000_000, max_bytes: 512 << 20, timeout: Duration::from_secs(300) }
    }
}

/// Why a query or transfer failed.
#[derive(Debug)]
pub enum ClientError {
    Network(String),
    Timeout,
    /// The primary answered with this rcode.
    Rcode(u8),
    Tsig(String),
    Malformed(String),
    TooBig(String),
}

impl std::fmt::Display for ClientError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ClientError::Network(e) => write!(f, "network: {e}"),
            ClientError::Timeout => f.write_str("timed out"),
            ClientError::Rcode(r) => write!(f, "the primary answered rcode {r}"),
            ClientError::Tsig(e) => write!(f, "TSIG: {e}"),
            ClientError::Malformed(e) => write!(f, "malformed answer: {e}"),
            ClientError::TooBig(e) => write!(f, "transfer too big: {e}"),
        }
    }
}

fn request(
    id: u16,
    apex: &Name,
    qtype: RecordType,
    serial: Option<(Serial, &[u8], u32)>,
    key: Option<&Key>,
) -> (Vec<u8>, Option<Signer>) {
    let mut out = Vec::with_capacity(512);
    let mut writer = MessageWriter::new(&mut out, u16::MAX as usize);
    writer.set_header(id, 0);
    let _ = writer.push_question(apex.as_wire(), qtype, Class::IN);
    if let Some((_, soa_rdata, ttl)) = serial {
        // RFC 1995 §3: the client's SOA in the authority section.
        let _ = writer.push_record(Section::Authority, apex.as_wire(), RecordType::SOA, ttl, soa_rdata);
    }
    let signer = key.map(|key| {
        let mut signer = Signer::request(key.clone());
        signer.sign(&mut out, unix_now(), 0, &[]);
        signer
    });
    (out, signer)
}

/// One answer message, parsed.
pub struct Parsed {
    pub rcode: u8,
    pub truncated: bool,
    pub answers: Vec<Record>,
}

/// Reads a response's answer section, names decompressed, RDATA checked.
pub fn parse_response(msg: &[u8], id: u16) -> Result<Parsed, ClientError> {
    let bad = |what: &str| ClientError::Malformed(what.to_string());
    if msg.len() < 12 {
        return Err(bad("short message"));
    }
    if u16::from_be_bytes([msg[0], msg[1]]) != id || msg[2] & 0x80 == 0 {
        return Err(bad("not the answer to our query"));
    }
    let flag_word = u16::from_be_bytes([msg[2], msg[3]]);
    let count = |at: usize| u16::from_be_bytes([msg[at], msg[at + 1]]) as usize;
    let (qdcount, ancount) = (count(4), count(6));
    let mut scratch = NameBuf::new();
    let mut pos = 12;
    for _ in 0..qdcount {
        pos = name::read_compressed(msg, pos, &mut scratch).map_err(|_| bad("question"))? + 4;
    }
    let mut answers = Vec::with_capacity(ancount);
    for _ in 0..ancount {
        let after = name::read_compressed(msg, pos, &mut scratch).map_err(|_| bad("owner name"))?;
        let owner = Name::from_wire(scratch.as_slice()).map_err(|_| bad("owner name"))?;
        let fixed = msg.get(after..after + 10).ok_or_else(|| bad("record header"))?;
        let rtype = RecordType(u16::from_be_bytes([fixed[0], fixed[1]]));
        let class = u16::from_be_bytes([fixed[2], fixed[3]]);
        let ttl = u32::from_be_bytes([fixed[4], fixed[5], fixed[6], fixed[7]]);
        let rdlen = u16::from_be_bytes([fixed[8], fixed[9]]) as usize;
        let start = after + 10;
        let end = start + rdlen;
        msg.get(start..end).ok_or_else(|| bad("RDATA runs past the message"))?;
        if class != Class::IN.0 {
            return Err(bad("a record of a class other than IN"));
        }
        let mut rdata = Vec::with_capacity(rdlen);
        rdata::decompress(msg, start, end, rtype, &mut rdata)
            .map_err(|e| ClientError::Malformed(format!("{owner} {rtype}: {e}")))?;
        answers.push(Record { owner, rtype, ttl, rdata });
        pos = end;
    }
    Ok(Parsed { rcode: (flag_word & 0x0f) as u8, truncated: flag_word & flags::TC != 0, answers })
}

/// The serial `primary` holds for `apex`: an SOA query over UDP, through
/// `exchange`'s shared socket.
pub async fn query_soa(
    exchange: &UdpExchange,
    primary: SocketAddr,
    apex: &Name,
    key: Option<&Key>,
    wait: Duration,
) -> Result<Serial, ClientError> {
    let made = |id| {
        let (message, signer) = request(id, apex, RecordType::SOA, None, key);
        (message, (id, signer))
    };
    let (reply, (id, signer)) = exchange.exchange(primary, wait, made).await.map_err(|e| match e {
        ExchangeError::Timeout => ClientError::Timeout,
        ExchangeError::Network(e) => ClientError::Network(e),
    })?;
    if let (Some(key), Some(signer)) = (key, &signer) {
        let mut verifier = ResponseVerifier::new(key.clone(), signer.last_mac().unwrap_or_default().to_vec());
        verifier.verify(&reply, unix_now()).map_err(|e| ClientError::Tsig(e.to_string()))?;
    }
    let parsed = parse_response(&reply, id)?;
    if parsed.rcode != 0 {
        return Err(ClientError::Rcode(parsed.rcode));
    }
    parsed
        .answers
        .iter()
        .find(|r| r.rtype == RecordType::SOA && r.owner.to_lowercase() == apex.to_lowercase())
        .and_then(|r| soa_serial(&r.rdata))
        .ok_or_else(|| ClientError::Malformed("no SOA in the answer".into()))
}

/// Runs an AXFR, or an IXFR from `current` (our serial, SOA RDATA and TTL),
/// over TCP and returns every answer record in order, from the first SOA to
/// the last, checked against `limits` and the TSIG key.
pub async fn transfer(
    primary: SocketAddr,
    apex: &Name,
    current: Option<(Serial, &[u8], u32)>,
    key: Option<&Key>,
    limits: TransferLimits,
) -> Result<Vec<Record>, ClientError> {
    tokio::time::timeout(limits.timeout, transfer_inner(primary, apex, current, key, limits))
        .await
        .map_err(|_| ClientError::Timeout)?
}

async fn transfer_inner(
    primary: SocketAddr,
    apex: &Name,
    current: Option<(Serial, &[u8], u32)>,
    key: Option<&Key>,
    limits: TransferLimits,
) -> Result<Vec<Record>, ClientError> {
    let qtype = if current.is_some() { RecordType::IXFR } else { RecordType::AXFR };
    let id = random_id();
    let (message, signer) = request(id, apex, qtype, current, key);
    let mut stream = TcpStream::connect(primary).await.map_err(|e| ClientError::Network(e.to_string()))?;
    let mut framed = (message.len() as u16).to_be_bytes().to_vec();
    framed.extend_from_slice(&message);
    stream.write_all(&framed).await.map_err(|e| ClientError::Network(e.to_string()))?;
    let mut verifier = match (key, &signer) {
        (Some(key), Some(signer)) => {
            Some(ResponseVerifier::new(key.clone(), signer.last_mac().unwrap_or_default().to_vec()))
        }
        _ => None,
    };
    let mut records: Vec<Record> = Vec::new();
    let mut bytes = 0usize;
    let mut first_serial: Option<Serial> = None;
    let mut phase = Phase::Start;
    let mut buffer = vec![0u8; 65535];
    loop {
        let len =
            stream.read_u16().await.map_err(|e| ClientError::Malformed(format!("transfer cut short: {e}")))? as usize;
        stream
            .read_exact(&mut buffer[..len])
            .await
            .map_err(|e| ClientError::Malformed(format!("transfer cut short: {e}")))?;
        bytes += len + 2;
        if bytes > limits.max_bytes {
            return Err(ClientError::TooBig(format!("over {} bytes", limits.max_bytes)));
        }
        let msg = &buffer[..len];
        if let Some(verifier) = &mut verifier {
            verifier.verify(msg, unix_now()).map_err(|e| ClientError::Tsig(e.to_string()))?;
        }
        let parsed = parse_response(msg, id)?;
        if parsed.rcode != 0 {
            return Err(ClientError::Rcode(parsed.rcode));
        }
        for record in parsed.answers {
            if !record.owner.is_subdomain_of(apex) {
                return Err(ClientError::Malformed(format!("{} is outside the zone", record.owner)));
            }
            let is_soa = record.rtype == RecordType::SOA && record.owner.to_lowercase() == apex.to_lowercase();
            let serial = if is_soa { soa_serial(&record.rdata) } else { None };
            records.push(record);
            if records.len() > limits.max_records {
                return Err(ClientError::TooBig(format!("over {} records", limits.max_records)));
            }
            // Where the answer ends (RFC 5936 §2.2, RFC 1995 §4): an AXFR at the
            // next SOA; an incremental IXFR at an SOA of the newest serial
            // that follows a step's additions; an IXFR of the current SOA alone
            // when we are current.
            phase = match (phase, is_soa) {
                (Phase::Start, true) => {
                    first_serial = serial;
                    if qtype == RecordType::IXFR && first_serial == current.map(|c| c.0) {
                        Phase::Done
                    } else {
                        Phase::First
                    }
                }
                (Phase::Start, false) => {
                    return Err(ClientError::Malformed("the transfer does not start with the SOA".into()));
                }
                (Phase::First, true) if serial == first_serial => Phase::Done,
                (Phase::First, true) if qtype == RecordType::IXFR => Phase::Deletions,
                (Phase::Whole, true) if serial == first_serial => Phase::Done,
                // RFC 5936 §2.2: a zone's transfer opens and closes with the same SOA.
                (Phase::First | Phase::Whole, true) => {
                    return Err(ClientError::Malformed(format!(
                        "the closing SOA has serial {}, the opening one {}",
                        serial.map_or_else(|| "none".to_string(), |s| s.0.to_string()),
                        first_serial.map_or_else(|| "none".to_string(), |s| s.0.to_string()),
                    )));
                }
                (Phase::First, false) => Phase::Whole,
                (Phase::Deletions, true) => Phase::Additions,
                (Phase::Additions, true) if serial == first_serial => Phase::Done,
                (Phase::Additions, true) => Phase::Deletions,
                (other, _) => other,
            };
            if phase == Phase::Done {
                if let Some(verifier) = &verifier {
                    if !verifier.is_complete() {
                        return Err(ClientError::Tsig("the last message is not signed".into()));
                    }
                }
                return Ok(records);
            }
        }
    }
}

/// Where a transfer answer is (see the end rules in `transfer_inner`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Phase {
    Start,
    /// After the first SOA.
    First,
    /// A whole zone (AXFR, or IXFR answered AXFR-style).
    Whole,
    Deletions,
    Additions,
    Done,
}
