//! RFC 1035 §5 master files: a zero-copy lexer and an entry parser.
//!
//! The parser handles `$ORIGIN`, `$TTL`, `$INCLUDE` (only when the caller allows
//! it), relative names and `@`, blank owners, TTL and class in either order,
//! parentheses, comments, quoted strings with escapes, TTL units (`1h30m`), and
//! RFC 3597 `\#` generic RDATA. It does not stop at the first bad entry: it
//! reports each one as `file:line: message` and keeps going, so an operator sees
//! every problem in one pass. Callers decide whether any error voids the load.

use std::fmt;
use std::path::{Path, PathBuf};

use ferrodns_proto::rdata::{self, Token};
use ferrodns_proto::{Class, Name, RecordType};

/// One record read from a master file.
#[derive(Clone, Debug)]
pub struct ParsedRecord {
    pub owner: Name,
    pub rtype: RecordType,
    pub ttl: u32,
    /// Uncompressed wire RDATA.
    pub rdata: Vec<u8>,
    /// The line the entry started on, for later checks to point at.
    pub line: usize,
}

/// One record as the parser hands it to a sink, borrowed from the parser's
/// buffers: nothing is allocated per record.
#[derive(Clone, Copy, Debug)]
pub struct ParsedRecordRef<'a> {
    pub owner: &'a Name,
    pub rtype: RecordType,
    pub ttl: u32,
    pub rdata: &'a [u8],
    pub line: usize,
}

impl ParsedRecordRef<'_> {
    /// An owned copy.
    pub fn to_record(&self) -> ParsedRecord {
        ParsedRecord {
            owner: self.owner.clone(),
            rtype: self.rtype,
            ttl: self.ttl,
            rdata: self.rdata.to_vec(),
            line: self.line,
        }
    }
}

/// What a streaming parse reports besides its records.
#[derive(Debug, Default)]
pub struct Report {
    pub errors: Vec<ParseError>,
    /// The first `$ORIGIN` seen, if any, for callers that name the zone from it.
    pub first_origin: Option<Name>,
}

/// A problem found at one line of a master file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ParseError {
    pub file: String,
    pub line: usize,
    pub message: String,
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}: {}", self.file, self.line, self.message)
    }
}

impl std::error::Error for ParseError {}

/// How to read a master file.
#[derive(Clone, Debug, Default)]
pub struct ParseOptions {
    /// The origin before any `$ORIGIN`. Without one, the file must set it
    /// before the first relative name, or use absolute names.
    pub origin: Option<Name>,
    /// The TTL before any `$TTL`.
    pub default_ttl: Option<u32>,
    /// Follow `$INCLUDE`. Off by default: a file handed in over an API must not
    /// read the server's disk.
    pub allow_include: bool,
    /// Stop collecting errors after this many (0 means 100).
    pub max_errors: usize,
}

/// The outcome of reading a master file: the records, the final origin, and
/// any errors. Records from bad entries are left out.
#[derive(Debug, Default)]
pub struct Parsed {
    pub records: Vec<ParsedRecord>,
    pub errors: Vec<ParseError>,
    /// The first `$ORIGIN` seen, if any, for callers that name the zone from it.
    pub first_origin: Option<Name>,
}

/// Reads a master file from disk. `file` in errors is the path as given.
pub fn parse_file(path: &Path, options: &ParseOptions) -> Parsed {
    let mut records = Vec::new();
    let report = stream_file(path, options, &mut |r| records.push(r.to_record()));
    Parsed { records, errors: report.errors, first_origin: report.first_origin }
}

/// Reads master-file text; `file` names it in error messages.
pub fn parse_str(text: &[u8], file: &str, options: &ParseOptions) -> Parsed {
    let mut records = Vec::new();
    let report = stream_str(text, file, options, &mut |r| records.push(r.to_record()));
    Parsed { records, errors: report.errors, first_origin: report.first_origin }
}

/// Reads a master file from disk, handing each good record to `sink` as it is read.
pub fn stream_file(path: &Path, options: &ParseOptions, sink: &mut dyn FnMut(ParsedRecordRef<'_>)) -> Report {
    let mut out = Output { sink, report: Report::default() };
    let mut state = State::new(options);
    read_path(path, &mut state, &mut out, 0);
    out.report
}

/// Reads master-file text, handing each good record to `sink` as it is read.
pub fn stream_str(
    text: &[u8],
    file: &str,
    options: &ParseOptions,
    sink: &mut dyn FnMut(ParsedRecordRef<'_>),
) -> Report {
    let mut out = Output { sink, report: Report::default() };
    let mut state = State::new(options);
    parse_into(text, file, None, &mut state, &mut out, 0);
    out.report
}

/// Where parsed records and problems go.
struct Output<'s> {
    sink: &'s mut dyn FnMut(ParsedRecordRef<'_>),
    report: Report,
}

const MAX_INCLUDE_DEPTH: usize = 8;

struct State {
    origin: Option<Name>,
    default_ttl: Option<u32>,
    last_ttl: Option<u32>,
    soa_minimum: Option<u32>,
    last_owner: Option<Name>,
    allow_include: bool,
    max_errors: usize,
    /// The current record's RDATA, reused from record to record.
    rdata: Vec<u8>,
}

impl State {
    fn new(options: &ParseOptions) -> State {
        State {
            origin: options.origin.clone(),
            default_ttl: options.default_ttl,
            last_ttl: None,
            soa_minimum: None,
            last_owner: None,
            allow_include: options.allow_include,
            max_errors: if options.max_errors == 0 { 100 } else { options.max_errors },
            rdata: Vec::with_capacity(512),
        }
    }
}

fn read_path(path: &Path, state: &mut State, out: &mut Output<'_>, depth: usize) {
    let file = path.display().to_string();
    match std::fs::read(path) {
        Ok(text) => parse_into(&text, &file, path.parent(), state, out, depth),
        Err(e) => out.report.errors.push(ParseError { file, line: 0, message: format!("cannot read: {e}") }),
    }
}

/// Splits a master file into entries, each a line or a parenthesized group.
struct Lexer<'a> {
    text: &'a [u8],
    pos: usize,
    line: usize,
}

/// One entry: its tokens, whether it began with blank space (inherit the
/// owner), and the line it started on.
struct Entry<'a> {
    tokens: Vec<Token<'a>>,
    blank_owner: bool,
    line: usize,
}

impl<'a> Lexer<'a> {
    /// Fills `entry` with the next non-empty entry; false at the end of input.
    fn next_entry(&mut self, entry: &mut Entry<'a>) -> Result<bool, (usize, String)> {
        loop {
            entry.tokens.clear();
            if self.pos >= self.text.len() {
                return Ok(false);
            }
            entry.line = self.line;
            entry.blank_owner = matches!(self.text[self.pos], b' ' | b'\t');
            let mut depth = 0usize;
            let mut paren_line = self.line;
            loop {
                let Some(&c) = self.text.get(self.pos) else {
                    if depth > 0 {
                        return Err((paren_line, "unbalanced '(': end of file inside parentheses".into()));
                    }
                    break;
                };
                match c {
                    b' ' | b'\t' | b'\r' => self.pos += 1,
                    b'\n' => {
                        self.pos += 1;
                        self.line += 1;
                        if depth == 0 {
                            break;
                        }
                    }
                    b';' => {
                        while self.pos < self.text.len() && self.text[self.pos] != b'\n' {
                            self.pos += 1;
                        }
                    }
                    b'(' => {
                        if depth == 0 {
                            paren_line = self.line;
                        }
                        depth += 1;
                        self.pos += 1;
                    }
                    b')' => {
                        if depth == 0 {
                            let line = self.line;
                            self.skip_line();
                            return Err((line, "unbalanced ')'".into()));
                        }
                        depth -= 1;
                        self.pos += 1;
                    }
                    b'"' => {
                        let start = self.pos + 1;
                        let quote_line = self.line;
                        let mut i = start;
                        loop {
                            match self.text.get(i) {
                                None => {
                                    self.pos = self.text.len();
                                    return Err((quote_line, "unterminated quoted string".into()));
                                }
                                Some(b'\\') => i += 2,
                                Some(b'"') => break,
                                Some(b'\n') => {
                                    self.line += 1;
                                    i += 1;
                                }
                                Some(_) => i += 1,
                            }
                        }
                        let end = i.min(self.text.len());
                        entry.tokens.push(Token { text: &self.text[start..end], quoted: true });
                        self.pos = end + 1;
                    }
                    _ => {
                        let start = self.pos;
                        while let Some(&c) = self.text.get(self.pos) {
                            match c {
                                b' ' | b'\t' | b'\r' | b'\n' | b';' | b'(' | b')' | b'"' => break,
                                b'\\' => self.pos = (self.pos + 2).min(self.text.len()),
                                _ => self.pos += 1,
                            }
                        }
                        entry.tokens.push(Token { text: &self.text[start..self.pos], quoted: false });
                    }
                }
            }
            if !entry.tokens.is_empty() {
                return Ok(true);
            }
        }
    }

    fn skip_line(&mut self) {
        while self.pos < self.text.len() && self.text[self.pos] != b'\n' {
            self.pos += 1;
        }
    }
}

fn parse_into(
    text: &[u8],
    file: &str,
    directory: Option<&Path>,
    state: &mut State,
    out: &mut Output<'_>,
    depth: usize,
) {
    let mut lexer = Lexer { text, pos: 0, line: 1 };
    let mut entry = Entry { tokens: Vec::with_capacity(16), blank_owner: false, line: 1 };
    loop {
        if out.report.errors.len() >= state.max_errors {
            out.report.errors.push(ParseError {
                file: file.into(),
                line: lexer.line,
                message: "too many errors; stopped".into(),
            });
            return;
        }
        match lexer.next_entry(&mut entry) {
            Ok(false) => return,
            Ok(true) => {}
            Err((line, message)) => {
                out.report.errors.push(ParseError { file: file.into(), line, message });
                continue;
            }
        }
        let line = entry.line;
        let error = |message: String| ParseError { file: file.into(), line, message };
        let first = entry.tokens[0].text;
        if !entry.blank_owner && first.first() == Some(&b'$') && !entry.tokens[0].quoted {
            if let Err(message) = directive(&entry.tokens, directory, state, out, depth) {
                out.report.errors.push(error(message));
            }
            continue;
        }
        match record(&entry, state) {
            Ok(ttl) => {
                let owner = state.last_owner.as_ref().expect("a good record has an owner");
                (out.sink)(ParsedRecordRef { owner, rtype: ttl.0, ttl: ttl.1, rdata: &state.rdata, line });
            }
            Err(message) => out.report.errors.push(error(message)),
        }
    }
}

fn token_str<'a>(token: &Token<'a>) -> &'a str {
    std::str::from_utf8(token.text).unwrap_or("\u{fffd}")
}

fn directive(
    tokens: &[Token<'_>],
    directory: Option<&Path>,
    state: &mut State,
    out: &mut Output<'_>,
    depth: usize,
) -> Result<(), String> {
    let name = token_str(&tokens[0]).to_ascii_uppercase();
    match name.as_str() {
        "$ORIGIN" => {
            let [_, origin] = tokens else {
                return Err("$ORIGIN takes exactly one name".into());
            };
            let origin = Name::parse_bytes(origin.text, state.origin.as_ref())
                .map_err(|e| format!("bad $ORIGIN '{}': {e}", token_str(origin)))?;
            if out.report.first_origin.is_none() {
                out.report.first_origin = Some(origin.clone());
            }
            state.origin = Some(origin);
            Ok(())
        }
        "$TTL" => {
            let [_, ttl] = tokens else {
                return Err("$TTL takes exactly one value".into());
            };
            let ttl = rdata::parse_ttl(token_str(ttl)).ok_or_else(|| format!("bad $TTL '{}'", token_str(ttl)))?;
            state.default_ttl = Some(ttl);
            Ok(())
        }
        "$INCLUDE" => {
            if !state.allow_include {
                return Err("$INCLUDE is not allowed here (enable include to permit it)".into());
            }
            if depth >= MAX_INCLUDE_DEPTH {
                return Err("$INCLUDE nested too deeply".into());
            }
            let (path, origin) = match tokens {
                [_, path] => (path, None),
                [_, path, origin] => (path, Some(origin)),
                _ => return Err("$INCLUDE takes a file name and an optional origin".into()),
            };
            let mut path = PathBuf::from(token_str(path));
            if path.is_relative() {
                if let Some(directory) = directory {
                    path = directory.join(path);
                }
            }
            // The included file gets its own origin and owner; both come back after it.
            let saved_origin = state.origin.clone();
            let saved_owner = state.last_owner.take();
            if let Some(origin) = origin {
                let origin = Name::parse_bytes(origin.text, state.origin.as_ref())
                    .map_err(|e| format!("bad $INCLUDE origin: {e}"))?;
                state.origin = Some(origin);
            }
            read_path(&path, state, out, depth + 1);
            state.origin = saved_origin;
            state.last_owner = saved_owner;
            Ok(())
        }
        "$GENERATE" => Err("$GENERATE is not supported".into()),
        _ => Err(format!("unknown directive {name}")),
    }
}

/// Parses one record entry. On success the owner is `state.last_owner`, the
/// RDATA is in `state.rdata`, and the type and TTL are returned.
fn record(entry: &Entry<'_>, state: &mut State) -> Result<(RecordType, u32), String> {
    let mut tokens = &entry.tokens[..];
    if entry.blank_owner {
        if state.last_owner.is_none() {
            return Err("no owner: the first record must name one".into());
        }
    } else {
        let token = &tokens[0];
        tokens = &tokens[1..];
        let same =
            state.last_owner.as_ref().is_some_and(|last| owner_text_matches(token.text, last, state.origin.as_ref()));
        if !same {
            let owner = Name::parse_bytes(token.text, state.origin.as_ref())
                .map_err(|e| format!("bad owner '{}': {e}", token_str(token)))?;
            state.last_owner = Some(owner);
        }
    }
    let mut ttl = None;
    let mut class = None;
    let rtype = loop {
        let token = tokens.first().ok_or("missing record type")?;
        let text = token_str(token);
        tokens = &tokens[1..];
        if ttl.is_none() && text.as_bytes().first().is_some_and(u8::is_ascii_digit) {
            ttl = Some(rdata::parse_ttl(text).ok_or_else(|| format!("bad TTL '{text}'"))?);
            continue;
        }
        if class.is_none() {
            if let Some(c) = Class::from_mnemonic(text) {
                class = Some(c);
                continue;
            }
        }
        break RecordType::from_mnemonic(text).ok_or_else(|| format!("unknown record type '{text}'"))?;
    };
    if let Some(class) = class {
        if class != Class::IN {
            return Err(format!("class {} is not supported; only IN", class.0));
        }
    }
    if rtype.is_meta_or_question_only() {
        return Err(format!("{rtype} cannot appear in a zone"));
    }
    let root = Name::root();
    let origin = state.origin.as_ref().unwrap_or(&root);
    let wire = &mut state.rdata;
    wire.clear();
    rdata::parse_rdata(rtype, tokens, origin, wire).map_err(|e| format!("{rtype} record: {e}"))?;
    if rtype == RecordType::SOA {
        // RFC 1035 leaves the default TTL open; like BIND, fall back to the SOA minimum.
        // parse_rdata has checked the SOA's layout, so the fixed fields are there.
        if let Some(fixed) = wire.len().checked_sub(4).and_then(|at| wire.get(at..)) {
            state.soa_minimum = Some(u32::from_be_bytes(fixed.try_into().expect("four octets")));
        }
    }
    let ttl = match ttl {
        Some(ttl) => {
            state.last_ttl = Some(ttl);
            ttl
        }
        None => state
            .default_ttl
            .or(state.last_ttl)
            .or(state.soa_minimum)
            .ok_or("no TTL: give one, or set $TTL before the first record")?,
    };
    if ttl > 0x7fff_ffff {
        return Err(format!("TTL {ttl} is above 2^31-1 (RFC 2181 §8)"));
    }
    Ok((rtype, ttl))
}

/// True when an owner token spells the same name as `last` did (the common
/// case of a file listing several records per name), so it need not be parsed
/// again. Only plain relative labels are compared; anything else is parsed.
fn owner_text_matches(text: &[u8], last: &Name, origin: Option<&Name>) -> bool {
    let Some(origin) = origin else { return false };
    let wire = last.as_wire();
    if text.is_empty() || text.len() > 63 || !text.iter().all(|b| b.is_ascii_alphanumeric() || *b == b'-' || *b == b'_')
    {
        return false;
    }
    wire.len() == 1 + text.len() + origin.as_wire().len()
        && wire[0] as usize == text.len()
        && &wire[1..1 + text.len()] == text
        && &wire[1 + text.len()..] == origin.as_wire()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Parsed {
        parse_str(text.as_bytes(), "test.zone", &ParseOptions::default())
    }

    fn shown(parsed: &Parsed) -> Vec<String> {
        parsed
            .records
            .iter()
            .map(|r| {
                let mut rdata = String::new();
                ferrodns_proto::rdata::write_rdata(r.rtype, &r.rdata, &mut rdata);
                format!("{} {} {} {}", r.owner, r.ttl, r.rtype, rdata)
            })
            .collect()
    }

    #[test]
    fn reads_directives_parentheses_and_relative_names() {
        let parsed = parse(
            "$ORIGIN example.com.\n$TTL 1h\n@ IN SOA ns1 hostmaster ( 1 ; serial\n  7200 3600\n 1209600 300 )\n\
             \tNS ns1\nns1 300 A 192.0.2.1\n     IN AAAA 2001:db8::1\nwww IN 60 CNAME @\n\
             txt TXT \"a;b\" c\\ d \"e\\\"f\"\n",
        );
        assert!(parsed.errors.is_empty(), "{:?}", parsed.errors);
        assert_eq!(
            shown(&parsed),
            [
                "example.com. 3600 SOA ns1.example.com. hostmaster.example.com. 1 7200 3600 1209600 300",
                "example.com. 3600 NS ns1.example.com.",
                "ns1.example.com. 300 A 192.0.2.1",
                "ns1.example.com. 3600 AAAA 2001:db8::1",
                "www.example.com. 60 CNAME example.com.",
                "txt.example.com. 3600 TXT \"a;b\" \"c d\" \"e\\\"f\"",
            ]
        );
        assert_eq!(parsed.records[3].line, 8);
    }

    #[test]
    fn reports_every_bad_line_and_keeps_going() {
        let parsed = parse(
            "$ORIGIN example.com.\n$TTL 300\na A 192.0.2.300\nb MX mail\nc A 192.0.2.1\nd BOGUS x\n\
             $INCLUDE /etc/passwd\ne CH A 192.0.2.1\nf TXT \"open\n",
        );
        let errors: Vec<String> = parsed.errors.iter().map(ToString::to_string).collect();
        assert_eq!(
            errors,
            [
                "test.zone:3: A record: bad address",
                "test.zone:4: MX record: bad preference",
                "test.zone:6: unknown record type 'BOGUS'",
                "test.zone:7: $INCLUDE is not allowed here (enable include to permit it)",
                "test.zone:8: class 3 is not supported; only IN",
                "test.zone:9: unterminated quoted string",
            ]
        );
        assert_eq!(shown(&parsed), ["c.example.com. 300 A 192.0.2.1"]);
    }

    #[test]
    fn generic_data_for_a_known_type_must_fit_the_type() {
        // Found by the masterfile fuzzer: an empty generic SOA once panicked the parser.
        let parsed = parse("$ORIGIN example.\n$TTL 1\n@ SOA \\# 0\nwww A \\# 4 C0000201\n");
        assert_eq!(parsed.errors[0].to_string(), "test.zone:3: SOA record: bad RFC 3597 generic data (\\# length hex)");
        assert_eq!(shown(&parsed), ["www.example. 1 A 192.0.2.1"]);
    }

    #[test]
    fn ttl_defaults_follow_rfc_1035_and_bind() {
        let parsed = parse("example. 100 IN SOA ns. h. 1 2 3 4 50\nexample. NS ns.\n");
        assert_eq!(parsed.records[1].ttl, 100);
        let parsed = parse("a.example. A 192.0.2.1\n");
        assert_eq!(parsed.errors[0].message, "no TTL: give one, or set $TTL before the first record");
        let parsed = parse("x 1 A 192.0.2.1\n");
        assert!(parsed.errors[0].message.contains("relative name with no origin"));
    }

    #[test]
    fn unbalanced_parentheses_are_errors() {
        let parsed = parse("$TTL 1\na.example. TXT ( \"x\"\n");
        assert_eq!(parsed.errors[0].to_string(), "test.zone:2: unbalanced '(': end of file inside parentheses");
        let parsed = parse("$TTL 1\na.example. TXT \"x\" )\nb.example. A 192.0.2.1\n");
        assert_eq!(parsed.errors[0].to_string(), "test.zone:2: unbalanced ')'");
        assert_eq!(parsed.records.len(), 1);
    }

    #[test]
    fn include_is_followed_when_allowed() {
        let dir = std::env::temp_dir().join(format!("ferrodns-include-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("inner.zone"), "www A 192.0.2.7\n").unwrap();
        std::fs::write(dir.join("outer.zone"), "$ORIGIN example.\n$TTL 5\n$INCLUDE inner.zone sub\nmail A 192.0.2.8\n")
            .unwrap();
        let options = ParseOptions { allow_include: true, ..ParseOptions::default() };
        let parsed = parse_file(&dir.join("outer.zone"), &options);
        assert!(parsed.errors.is_empty(), "{:?}", parsed.errors);
        assert_eq!(shown(&parsed), ["www.sub.example. 5 A 192.0.2.7", "mail.example. 5 A 192.0.2.8"]);
        std::fs::remove_dir_all(dir).unwrap();
    }
}
