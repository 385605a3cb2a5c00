//! Loading a zone from a master file on disk: parse, build, check, and report
//! every problem as `file:line: message`.

use std::path::Path;

use ferrodns_proto::{Name, RecordType};

use crate::masterfile::{parse_file, ParseOptions};
use crate::zone::{Zone, ZoneBuilder};

/// Why a zone file did not load: every problem found, each `file:line: message`.
#[derive(Debug)]
pub struct LoadError {
    pub problems: Vec<String>,
}

impl std::fmt::Display for LoadError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.problems.join("\n"))
    }
}

impl std::error::Error for LoadError {}

/// A loaded zone and the warnings about its data.
pub struct Loaded {
    pub zone: Zone,
    pub warnings: Vec<String>,
}

/// Loads a zone file. The origin is the first `$ORIGIN`, or else the owner of
/// the SOA record (RFC 1035 gives no other way to name the zone).
pub fn load_zone_file(path: &Path, allow_include: bool) -> Result<Loaded, LoadError> {
    let file = path.display().to_string();
    let options = ParseOptions { allow_include, ..ParseOptions::default() };
    let parsed = parse_file(path, &options);
    let mut problems: Vec<String> = parsed.errors.iter().map(ToString::to_string).collect();
    let apex: Option<Name> = parsed
        .first_origin
        .clone()
        .or_else(|| parsed.records.iter().find(|r| r.rtype == RecordType::SOA).map(|r| r.owner.clone()));
    let Some(apex) = apex else {
        problems.push(format!("{file}: no $ORIGIN and no SOA record: cannot tell the zone's name"));
        return Err(LoadError { problems });
    };
    let mut builder = ZoneBuilder::new(apex);
    for record in parsed.records {
        builder.add(record.owner, record.rtype, record.ttl, &record.rdata, Some(record.line));
    }
    let locate = |line: Option<usize>, message: &str| match line {
        Some(line) => format!("{file}:{line}: {message}"),
        None => format!("{file}: {message}"),
    };
    match builder.finish() {
        Ok((zone, warnings)) if problems.is_empty() => {
            Ok(Loaded { zone, warnings: warnings.iter().map(|w| locate(w.line, &w.message)).collect() })
        }
        Ok(_) => Err(LoadError { problems }),
        Err(errors) => {
            problems.extend(errors.iter().map(|e| locate(e.line, &e.message)));
            Err(LoadError { problems })
        }
    }
}
