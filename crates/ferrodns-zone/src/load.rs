//! Loading a zone from a master file on disk: parse, build, check, and report
//! every problem as `file:line: message`.

use std::path::Path;

use ferrodns_proto::{Name, RecordType};

use crate::masterfile::{stream_file, ParseOptions};
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
    load_zone_file_as(path, None, allow_include)
}

/// Loads a zone file as the zone `origin` when given, as BIND and Knot
/// take a zone's name from their configuration: relative names and `@`
/// start from it until a `$ORIGIN` says otherwise, and the zone is named
/// by it whatever the file holds. Without it, as [`load_zone_file`].
pub fn load_zone_file_as(path: &Path, origin: Option<&Name>, allow_include: bool) -> Result<Loaded, LoadError> {
    let file = path.display().to_string();
    let options = ParseOptions { allow_include, origin: origin.cloned(), ..ParseOptions::default() };
    // Records stream straight into the builder; the zone is named at the end.
    let mut builder = ZoneBuilder::new(Name::root());
    let mut soa_owner: Option<Name> = None;
    let report = stream_file(path, &options, &mut |record| {
        if record.rtype == RecordType::SOA && soa_owner.is_none() {
            soa_owner = Some(record.owner.clone());
        }
        builder.add_wire(record.owner.as_wire(), record.rtype, record.ttl, record.rdata, Some(record.line));
    });
    let mut problems: Vec<String> = report.errors.iter().map(ToString::to_string).collect();
    let Some(apex) = origin.cloned().or(report.first_origin).or(soa_owner) else {
        problems.push(format!("{file}: no $ORIGIN and no SOA record: cannot tell the zone's name"));
        return Err(LoadError { problems });
    };
    builder.set_apex(apex);
    let locate = |line: Option<usize>, message: &str| match line {
        Some(line) => format!("{file}:{line}: {message}"),
        None => format!("{file}: {message}"),
    };
    if !problems.is_empty() {
        // Parse errors void the load; the zone checks still run so that one
        // pass reports everything.
        if let Err(errors) = builder.finish() {
            problems.extend(errors.iter().map(|e| locate(e.line, &e.message)));
        }
        return Err(LoadError { problems });
    }
    match builder.finish() {
        Ok((zone, warnings)) => {
            Ok(Loaded { zone, warnings: warnings.iter().map(|w| locate(w.line, &w.message)).collect() })
        }
        Err(errors) => Err(LoadError { problems: errors.iter().map(|e| locate(e.line, &e.message)).collect() }),
    }
}
