//! Request input: JSON bodies with pointed errors, zone and owner names,
//! types, presentation-format records, cursors and times.

use std::pin::Pin;

use axum::body::{Body, Bytes};
use axum::extract::rejection::BytesRejection;
use axum::http::{HeaderMap, StatusCode};
use ferrodns_proto::{Name, RecordType};
use ferrodns_zone::masterfile::{parse_str, ParseOptions};
use futures_core::Stream;
use serde::de::DeserializeOwned;

use crate::problem::Problem;

/// Parses a JSON body. Syntax errors are 400; well-formed JSON of the wrong
/// shape is 422 with a pointer to the offending member.
pub fn json_body<T: DeserializeOwned>(body: Result<Bytes, BytesRejection>, limit: usize) -> Result<T, Problem> {
    json_from_slice(&body_bytes(body, limit)?)
}

/// Decodes a JSON body already read: bad syntax is a 400, a wrong shape a
/// 422 pointing at the part that is wrong.
pub fn json_from_slice<T: DeserializeOwned>(body: &[u8]) -> Result<T, Problem> {
    let mut deserializer = serde_json::Deserializer::from_slice(body);
    let result: Result<T, _> = serde_path_to_error::deserialize(&mut deserializer);
    match result {
        Ok(value) => {
            deserializer.end().map_err(|e| Problem::bad_json(format!("trailing data after the JSON value: {e}")))?;
            Ok(value)
        }
        Err(error) => {
            let inner = error.inner();
            if inner.is_syntax() || inner.is_eof() || inner.is_io() {
                Err(Problem::bad_json(format!("the body is not valid JSON: {inner}")))
            } else {
                let pointer = path_to_pointer(error.path());
                let message = inner.to_string();
                let message = message.split(" at line ").next().unwrap_or(&message).to_string();
                Err(Problem::invalid("the JSON does not have the expected shape").with_error(pointer, message))
            }
        }
    }
}

/// Reads a large body (an import's file) into one buffer of its declared
/// size, or 413 when it is over the limit. Collecting the body's frames and
/// then joining them, as axum's `Bytes` extractor does, held a 37.7 MB file
/// about three times over at once.
pub async fn read_large_body(body: Body, headers: &HeaderMap, limit: usize) -> Result<Bytes, Problem> {
    let declared = headers
        .get(axum::http::header::CONTENT_LENGTH)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.parse::<usize>().ok());
    if declared.is_some_and(|length| length > limit) {
        return Err(Problem::too_large(limit));
    }
    let mut out = Vec::with_capacity(declared.unwrap_or(0));
    let mut stream = body.into_data_stream();
    while let Some(chunk) = std::future::poll_fn(|cx| Pin::new(&mut stream).poll_next(cx)).await {
        let chunk = chunk.map_err(|e| Problem::bad_json(format!("the body could not be read: {e}")))?;
        if out.len() + chunk.len() > limit {
            return Err(Problem::too_large(limit));
        }
        out.extend_from_slice(&chunk);
    }
    Ok(Bytes::from(out))
}

/// The body bytes, or 413 when over the limit.
pub fn body_bytes(body: Result<Bytes, BytesRejection>, limit: usize) -> Result<Bytes, Problem> {
    match body {
        Ok(bytes) => Ok(bytes),
        Err(rejection) if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE => Err(Problem::too_large(limit)),
        Err(rejection) => Err(Problem::bad_json(format!("the body could not be read: {rejection}"))),
    }
}

fn path_to_pointer(path: &serde_path_to_error::Path) -> String {
    use serde_path_to_error::Segment;
    let mut pointer = String::new();
    for segment in path.iter() {
        match segment {
            Segment::Seq { index } => pointer.push_str(&format!("/{index}")),
            Segment::Map { key } => pointer.push_str(&format!("/{}", key.replace('~', "~0").replace('/', "~1"))),
            Segment::Enum { variant } => pointer.push_str(&format!("/{variant}")),
            Segment::Unknown => {}
        }
    }
    pointer
}

/// A zone name from a path: with or without the final dot.
pub fn zone_name(text: &str) -> Result<Name, Problem> {
    // The root zone in a path, as PowerDNS's API writes it: a `.` segment
    // (even as `%2E`) is removed by URL normalization before it is sent.
    if text.eq_ignore_ascii_case("=2E") {
        return Ok(Name::root());
    }
    let text = &ascii_form(text).map_err(Problem::not_found)?;
    let absolute = if text.ends_with('.') { text.to_string() } else { format!("{text}.") };
    Name::parse(&absolute, None)
        .map(|n| n.to_lowercase())
        .map_err(|e| Problem::not_found(format!("{text:?} is not a valid zone name ({e}), so no such zone exists")))
}

/// The most zones a token's or a TSIG key's list may name: each request
/// that lists zones filters by them in one query.
pub const MAX_LISTED_ZONES: usize = 1000;

/// A `zones` list of a request body, as lowercase absolute names, and the
/// faults found in it as (JSON pointer, message) pairs.
pub fn zone_list(list: &[String]) -> (Vec<String>, Vec<(String, String)>) {
    let mut faults = Vec::new();
    if list.len() > MAX_LISTED_ZONES {
        faults.push(("/zones".to_string(), format!("a list names at most {MAX_LISTED_ZONES} zones")));
    }
    let mut names = Vec::new();
    for (i, text) in list.iter().enumerate() {
        match zone_name(text) {
            Ok(name) => names.push(name.to_string()),
            Err(_) => faults.push((format!("/zones/{i}"), format!("{text:?} is not a zone name"))),
        }
    }
    (names, faults)
}

/// An owner name relative to the zone (`@` is the apex) or absolute with a final dot.
pub fn owner_name(text: &str, apex: &Name) -> Result<Name, String> {
    if text.is_empty() {
        return Err("the name is empty; use @ for the apex".to_string());
    }
    let text = &ascii_form(text)?;
    Name::parse(text, Some(apex)).map(|n| n.to_lowercase()).map_err(|e| format!("{text:?} is not a valid name: {e}"))
}

/// A name as the DNS carries it: ASCII text as given; a name with other
/// characters (`bücher.test`) as its A-labels (`xn--bcher-kva.test`), by
/// UTS #46 non-transitional processing with the strict (STD3) rules, which
/// is IDNA 2008's form. Raw UTF-8 octets never reach a label.
pub fn ascii_form(text: &str) -> Result<std::borrow::Cow<'_, str>, String> {
    if text.is_ascii() {
        return Ok(std::borrow::Cow::Borrowed(text));
    }
    idna::domain_to_ascii_strict(text)
        .map(std::borrow::Cow::Owned)
        .map_err(|_| format!("{text:?} is not a valid internationalized domain name"))
}

/// A type mnemonic (`AAAA`) or RFC 3597 form (`TYPE65534`).
pub fn record_type(text: &str) -> Result<RecordType, String> {
    RecordType::from_mnemonic(&text.to_ascii_uppercase()).ok_or_else(|| format!("{text:?} is not a known record type"))
}

/// Parses presentation-format records of one type, each on its own, with
/// the zone's master-file parser (relative names in RDATA are completed
/// with the apex). Returns the wire RDATAs, or per-record errors.
pub fn parse_records(apex: &Name, rtype: RecordType, records: &[String]) -> Result<Vec<Vec<u8>>, Vec<(usize, String)>> {
    let mut out = Vec::with_capacity(records.len());
    let mut errors = Vec::new();
    let options =
        ParseOptions { origin: Some(apex.clone()), default_ttl: Some(0), allow_include: false, max_errors: 1 };
    for (index, text) in records.iter().enumerate() {
        if text.contains(['\n', '\r']) {
            errors.push((index, "a record must be on one line".to_string()));
            continue;
        }
        if text.trim().is_empty() {
            errors.push((index, "the record is empty".to_string()));
            continue;
        }
        if matches!(rtype, RecordType::TXT | RecordType::SPF) && unquoted_words(text) {
            // A master file reads `v=spf1 mx -all` as three strings, which a
            // receiver joins into `v=spf1mx-all`; over the API that is never
            // what was meant, so ask for quotes, as PowerDNS does.
            errors.push((
                index,
                format!(
                    "TXT data with spaces must be quoted: write {:?}, or several quoted strings",
                    format!("\"{}\"", text.trim().replace('"', "\\\""))
                ),
            ));
            continue;
        }
        // One record per parse: an unbalanced parenthesis cannot reach into the next.
        let line = format!("@ 0 IN {rtype} {text}\n");
        let parsed = parse_str(line.as_bytes(), "record", &options);
        if let Some(error) = parsed.errors.first() {
            errors.push((index, error.message.clone()));
            continue;
        }
        match parsed.records.as_slice() {
            [record] if record.rtype == rtype => out.push(record.rdata.clone()),
            _ => errors.push((index, "not exactly one record of the given type".to_string())),
        }
    }
    if errors.is_empty() {
        Ok(out)
    } else {
        Err(errors)
    }
}

/// Whether TXT data holds more than one word and any of them is unquoted.
fn unquoted_words(text: &str) -> bool {
    let (mut words, mut unquoted) = (0, false);
    let mut chars = text.trim().chars().peekable();
    while let Some(c) = chars.next() {
        if c.is_whitespace() {
            continue;
        }
        words += 1;
        if c == '"' {
            while let Some(c) = chars.next() {
                match c {
                    '\\' => {
                        chars.next();
                    }
                    '"' => break,
                    _ => {}
                }
            }
        } else {
            unquoted = true;
            while chars.next_if(|c| !c.is_whitespace()).is_some() {}
        }
    }
    words > 1 && unquoted
}

/// An opaque cursor for a page boundary.
pub fn encode_cursor(text: &str) -> String {
    data_encoding::BASE64URL_NOPAD.encode(text.as_bytes())
}

/// Reads a cursor made by [`encode_cursor`].
pub fn decode_cursor(cursor: &str) -> Result<String, Problem> {
    data_encoding::BASE64URL_NOPAD
        .decode(cursor.as_bytes())
        .ok()
        .and_then(|b| String::from_utf8(b).ok())
        .ok_or_else(|| Problem::invalid("the cursor is not one this server handed out").with_error("", "bad cursor"))
}

/// A page size: default 100, at most 1000.
pub fn page_limit(limit: Option<u32>) -> Result<u32, Problem> {
    match limit {
        None => Ok(100),
        Some(n @ 1..=1000) => Ok(n),
        Some(n) => Err(Problem::invalid(format!("limit {n} is outside 1..=1000"))),
    }
}

/// RFC 3339 UTC text for microseconds since the epoch.
pub fn rfc3339(micros: i64) -> String {
    let seconds = micros.div_euclid(1_000_000);
    let fraction = micros.rem_euclid(1_000_000);
    let days = seconds.div_euclid(86_400);
    let in_day = seconds.rem_euclid(86_400);
    let (year, month, day) = ferrodns_store::civil_from_days(days);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{fraction:06}Z",
        in_day / 3600,
        in_day % 3600 / 60,
        in_day % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_and_records() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00.000000Z");
        assert_eq!(rfc3339(1_763_781_234_500_000), "2025-11-22T03:13:54.500000Z");
        let apex = Name::parse("example.com.", None).unwrap();
        let ok = parse_records(&apex, RecordType::MX, &["10 mail".to_string()]).unwrap();
        assert_eq!(ok[0][..2], [0, 10]);
        let bad = parse_records(&apex, RecordType::A, &["1.2.3.4".into(), "( 5.6.7.8".into(), "x\n@ A 1.1.1.1".into()])
            .unwrap_err();
        assert_eq!(bad.iter().map(|e| e.0).collect::<Vec<_>>(), vec![1, 2]);
    }

    #[test]
    fn txt_with_spaces_must_be_quoted() {
        let apex = Name::parse("example.com.", None).unwrap();
        let texts = |list: &[&str]| list.iter().map(|t| t.to_string()).collect::<Vec<_>>();
        let ok = parse_records(
            &apex,
            RecordType::TXT,
            &texts(&["word", "\"v=spf1 mx -all\"", "\"a\" \"b\"", "\"q\\\" x\"", " \"padded\" "]),
        )
        .unwrap();
        assert_eq!(ok[1], b"\x0ev=spf1 mx -all");
        assert_eq!(ok[2], b"\x01a\x01b");
        let bad =
            parse_records(&apex, RecordType::TXT, &texts(&["v=spf1 mx -all", "\"a\" b", "hello world"])).unwrap_err();
        assert_eq!(bad.iter().map(|e| e.0).collect::<Vec<_>>(), vec![0, 1, 2]);
        assert!(bad[0].1.contains("quoted"), "{}", bad[0].1);
        assert!(bad[0].1.contains("\\\"v=spf1 mx -all\\\""), "{}", bad[0].1);
        // Master files keep RFC 1035's meaning; only the API asks for quotes.
        assert!(parse_records(&apex, RecordType::SPF, &texts(&["v=spf1 -all"])).is_err());
    }
}
