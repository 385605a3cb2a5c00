//! Zone edits: the rules a change batch must follow, and the diff it makes.
//!
//! This is where a batch of RRset changes, or an import, is planned: what
//! the API's limits allow (TTL range, records per RRset, a server-managed
//! SOA), and what it changes, record by record. Whether the result is a zone
//! the server can serve is asked of [`crate::rules`], the same rules the
//! builder and the overlay apply, so nothing is committed that would not be
//! published. It does no I/O: the store hands it the
//! RRsets at the owners a batch touches, as read inside the write
//! transaction, and writes back what [`plan`] returns. The same [`Diff`] is
//! appended to the journal, applied to the served zone, and (later) served
//! as an IXFR step, so its layout follows RFC 1995: the old SOA leads the
//! removed records and the new SOA leads the added ones.

use std::collections::BTreeMap;
use std::fmt;

use ferrodns_proto::{Name, RecordType, Serial};

use crate::rules::{self, RRsetShape, Violation};

mod import;
mod records;
pub use import::{plan_import, ImportPlan, PackedRRset, PackedZone, PackedZoneBuilder};
pub use records::{RecordRef, Records};

/// Packs RDATAs the way zones store them: each as a 16-bit length, then the bytes.
pub fn pack_rdatas<'a>(rdatas: impl IntoIterator<Item = &'a [u8]>) -> Vec<u8> {
    let mut out = Vec::new();
    for rdata in rdatas {
        out.extend_from_slice(&(rdata.len() as u16).to_be_bytes());
        out.extend_from_slice(rdata);
    }
    out
}

/// The inverse of [`pack_rdatas`]; `None` if the bytes are not well framed.
pub fn unpack_rdatas(mut packed: &[u8]) -> Option<Vec<Vec<u8>>> {
    let mut out = Vec::new();
    while !packed.is_empty() {
        let len = u16::from_be_bytes([*packed.first()?, *packed.get(1)?]) as usize;
        out.push(packed.get(2..2 + len)?.to_vec());
        packed = &packed[2 + len..];
    }
    Some(out)
}

/// One RRset as stored: a lowercase owner, a type, a TTL, and its RDATAs in
/// wire form, sorted and without duplicates.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RRsetData {
    pub owner: Name,
    pub rtype: RecordType,
    pub ttl: u32,
    pub rdatas: Vec<Vec<u8>>,
}

impl RRsetData {
    /// Builds an RRset, lowercasing the owner and putting the RDATAs in set form.
    pub fn new(owner: &Name, rtype: RecordType, ttl: u32, mut rdatas: Vec<Vec<u8>>) -> RRsetData {
        rdatas.sort();
        rdatas.dedup();
        RRsetData { owner: owner.to_lowercase(), rtype, ttl, rdatas }
    }

    /// The key that identifies this RRset within a zone.
    pub fn key(&self) -> RRsetKey {
        RRsetKey { owner: self.owner.clone(), rtype: self.rtype }
    }
}

/// Identifies an RRset within a zone: lowercase owner and type. Orders by
/// owner in canonical DNS order, then by type.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct RRsetKey {
    pub owner: Name,
    pub rtype: RecordType,
}

/// One resource record, as journals and transfers carry it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Record {
    pub owner: Name,
    pub rtype: RecordType,
    pub ttl: u32,
    pub rdata: Vec<u8>,
}

/// What one committed change did to a zone: an RFC 1995 IXFR step. `removed`
/// starts with the old SOA and `added` with the new one.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Diff {
    pub old_serial: Serial,
    pub new_serial: Serial,
    pub removed: Records,
    pub added: Records,
}

/// What a change does to its RRset.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    /// Adds an RRset that must not exist yet.
    Create,
    /// Creates or replaces the RRset.
    Upsert,
    /// Removes the RRset, or only the listed records of it.
    Delete,
}

impl Action {
    /// The API spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Create => "create",
            Action::Upsert => "upsert",
            Action::Delete => "delete",
        }
    }
}

/// One change of a batch, already parsed: the owner is absolute.
#[derive(Clone, Debug)]
pub struct Change {
    pub action: Action,
    pub owner: Name,
    pub rtype: RecordType,
    /// Required for create and upsert; ignored for delete.
    pub ttl: Option<u32>,
    /// For create and upsert, the new records; for delete, the records to
    /// remove, or none to remove the whole RRset.
    pub rdatas: Vec<Vec<u8>>,
}

impl Change {
    /// The RRset a create or upsert leaves at its owner, once planned.
    pub fn rrset(&self) -> RRsetData {
        RRsetData::new(&self.owner.to_lowercase(), self.rtype, self.ttl.unwrap_or_default(), self.rdatas.clone())
    }
}

/// Limits on what one change may hold.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    pub max_records_per_rrset: usize,
    pub min_ttl: u32,
    pub max_ttl: u32,
}

impl Limits {
    /// Checks a TTL against the allowed range.
    pub fn check_ttl(&self, ttl: u32) -> Result<(), String> {
        if ttl < self.min_ttl || ttl > self.max_ttl {
            return Err(format!("TTL {ttl} is outside the allowed range {}..={}", self.min_ttl, self.max_ttl));
        }
        Ok(())
    }
}

impl Default for Limits {
    fn default() -> Limits {
        // RFC 2181 §8: a TTL is an unsigned number below 2^31.
        Limits { max_records_per_rrset: 1000, min_ttl: 0, max_ttl: i32::MAX as u32 }
    }
}

/// Which part of a change an error is about; the API turns this into a JSON pointer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Field {
    Change,
    Name,
    Type,
    Ttl,
    Records,
    Record(usize),
}

/// How an edit failed, in the classes the API reports.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Fault {
    /// The change is wrong whatever the zone holds.
    Invalid(String),
    /// The change conflicts with what the zone holds.
    Conflict(String),
    /// The change refers to an RRset or record the zone does not hold.
    Missing(String),
}

/// An error in one change of a batch.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EditError {
    /// Index of the change in its batch.
    pub change: usize,
    pub field: Field,
    pub fault: Fault,
}

impl fmt::Display for EditError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let message = match &self.fault {
            Fault::Invalid(m) | Fault::Conflict(m) | Fault::Missing(m) => m,
        };
        write!(f, "change {}: {message}", self.change)
    }
}

fn error(change: usize, field: Field, fault: Fault) -> EditError {
    EditError { change, field, fault }
}

/// Checks one change on its own, before the zone's content matters. Every
/// problem found is reported, not only the first. The rules that depend on
/// the rest of the node (CNAME exclusivity and the like) are checked by
/// [`plan`], once the change is applied to the RRsets around it.
fn check_change(apex: &Name, index: usize, change: &Change, limits: &Limits) -> Vec<EditError> {
    let mut errors = Vec::new();
    let invalid = |field, message: String| error(index, field, Fault::Invalid(message));
    if !change.owner.is_subdomain_of(apex) {
        errors.push(invalid(Field::Name, format!("{} is not inside the zone {apex}", change.owner)));
    }
    let rtype = change.rtype;
    let storable = rules::storable(rtype);
    if !storable {
        errors.push(invalid(Field::Type, rules::RecordProblem::NotStorable(rtype).to_string()));
    }
    if rtype == RecordType::SOA {
        errors.push(invalid(
            Field::Type,
            "the SOA is managed by the server; its serial moves with every change".to_string(),
        ));
    }
    if change.action != Action::Delete {
        match change.ttl {
            None => errors.push(invalid(Field::Ttl, "a TTL is required".to_string())),
            Some(ttl) => {
                if let Err(message) = limits.check_ttl(ttl) {
                    errors.push(invalid(Field::Ttl, message));
                }
            }
        }
        if change.rdatas.is_empty() {
            errors.push(invalid(Field::Records, "an RRset needs at least one record".to_string()));
        }
        if storable {
            for (i, rdata) in change.rdatas.iter().enumerate() {
                if let Err(problem) = rules::check_record(rtype, rdata) {
                    errors.push(invalid(Field::Record(i), problem.to_string()));
                }
            }
        }
    }
    if change.rdatas.len() > limits.max_records_per_rrset {
        errors.push(invalid(
            Field::Records,
            format!("{} records exceed the limit of {} per RRset", change.rdatas.len(), limits.max_records_per_rrset),
        ));
    }
    errors
}

/// A batch whose every change passed [`check_change`] for its zone: what
/// [`plan`] and the store take, so that a batch is checked once, by whoever
/// made it (the API as it parses, pointing at each fault), and no path plans
/// a change that was not checked.
#[derive(Clone, Debug)]
pub struct Checked {
    apex: Name,
    changes: Vec<Change>,
}

impl Checked {
    /// Checks each change of a batch for the zone at `apex`; every fault of
    /// every change is reported, each with its index in `changes`.
    pub fn new(apex: &Name, changes: Vec<Change>, limits: &Limits) -> Result<Checked, Vec<EditError>> {
        let errors: Vec<EditError> =
            changes.iter().enumerate().flat_map(|(index, change)| check_change(apex, index, change, limits)).collect();
        if !errors.is_empty() {
            return Err(errors);
        }
        Ok(Checked { apex: apex.to_lowercase(), changes })
    }

    /// The zone's apex, lowercase.
    pub fn apex(&self) -> &Name {
        &self.apex
    }

    pub fn changes(&self) -> &[Change] {
        &self.changes
    }

    /// The owners the batch touches; the store loads every RRset at these.
    pub fn owners(&self) -> Vec<Name> {
        touched_owners(&self.changes)
    }
}

/// The RRsets at one owner, as the rules see them.
fn node_shape(working: &Working, owner: &Name) -> Vec<RRsetShape> {
    working
        .range(owner_range(owner))
        .map(|(key, set)| RRsetShape { rtype: key.rtype, records: set.rdatas.len() })
        .collect()
}

/// The error for a broken rule, pointed at change `index`. Rules broken
/// because of other data at the name are conflicts (409); the rest are
/// wrong whatever the zone holds (422).
fn violation_error(index: usize, owner: &Name, violation: &Violation) -> EditError {
    let message = violation.message(owner);
    let (field, problem) = match violation {
        Violation::CnameBesideData(_) | Violation::TooManyTypes(_) => (Field::Type, Fault::Conflict(message)),
        Violation::SeveralCnames | Violation::SeveralDnames | Violation::SeveralSoa => {
            (Field::Records, Fault::Invalid(message))
        }
        Violation::CnameAtApex | Violation::SoaBelowApex => (Field::Type, Fault::Invalid(message)),
        Violation::NoSoa | Violation::NoApexNs => (Field::Change, Fault::Invalid(message)),
    };
    error(index, field, problem)
}

/// Whether a violation concerns what the apex must hold once a whole batch
/// is applied, rather than one change. The SOA is the store's: batches and
/// imports never carry it, so its absence from their RRsets is no fault.
fn checked_at_end(violation: &Violation) -> bool {
    matches!(violation, Violation::NoSoa | Violation::NoApexNs)
}

/// The working state of a batch: every RRset at the owners the batch touches.
pub type Working = BTreeMap<RRsetKey, RRsetData>;

/// The owners a batch touches; the store loads every RRset at these owners.
fn touched_owners(changes: &[Change]) -> Vec<Name> {
    let mut owners: Vec<Name> = changes.iter().map(|c| c.owner.to_lowercase()).collect();
    owners.sort();
    owners.dedup();
    owners
}

/// What a batch does: the RRsets to write (`Some`) or remove (`None`), and
/// the records removed and added, without the SOA (the store adds it when it
/// moves the serial).
#[derive(Debug, Default)]
pub struct Plan {
    pub writes: Vec<(RRsetKey, Option<RRsetData>)>,
    pub removed: Records,
    pub added: Records,
    /// How many RRsets the plan creates and deletes.
    pub created: usize,
    pub deleted: usize,
}

/// Applies a batch, in order, to the RRsets at the owners it touches
/// (`current`, read in the write transaction) and returns what to write. Each
/// change sees the effect of the ones before it. Any error rejects the batch.
pub fn plan(current: Working, batch: &Checked) -> Result<Plan, Vec<EditError>> {
    let mut errors: Vec<EditError> = Vec::new();
    let (apex_lower, changes) = (batch.apex(), batch.changes());
    let mut working = current.clone();
    // The change that last touched the apex NS, to point at if it is gone.
    let mut apex_ns_touched_by: Option<usize> = None;
    for (index, change) in changes.iter().enumerate() {
        let owner = change.owner.to_lowercase();
        let key = RRsetKey { owner: owner.clone(), rtype: change.rtype };
        let before = working.get(&key).cloned();
        match change.action {
            Action::Create | Action::Upsert => {
                if change.action == Action::Create && before.is_some() {
                    errors.push(error(
                        index,
                        Field::Change,
                        Fault::Conflict(format!("the RRset {} {} exists already", owner, change.rtype)),
                    ));
                    continue;
                }
                working.insert(key.clone(), change.rrset());
            }
            Action::Delete => {
                let Some(existing) = working.get_mut(&key) else {
                    errors.push(error(
                        index,
                        Field::Change,
                        Fault::Missing(format!("the RRset {} {} does not exist", owner, change.rtype)),
                    ));
                    continue;
                };
                let mut missing = false;
                for (i, rdata) in change.rdatas.iter().enumerate() {
                    match existing.rdatas.iter().position(|r| r == rdata) {
                        Some(at) => {
                            existing.rdatas.remove(at);
                        }
                        None => {
                            missing = true;
                            errors.push(error(
                                index,
                                Field::Record(i),
                                Fault::Missing(format!("{} {} holds no such record", owner, change.rtype)),
                            ));
                        }
                    }
                }
                if missing {
                    restore(&mut working, key, before);
                    continue;
                }
                if change.rdatas.is_empty() || existing.rdatas.is_empty() {
                    working.remove(&key);
                }
            }
        }
        // Each change sees the ones before it, so a batch may swap an A for
        // a CNAME by deleting first; a change that leaves its name breaking
        // a rule is refused and leaves the name as it was.
        let at_apex = owner == *apex_lower;
        let broken: Vec<Violation> = rules::check_node(at_apex, &node_shape(&working, &owner))
            .into_iter()
            .filter(|v| !checked_at_end(v))
            .collect();
        if !broken.is_empty() {
            errors.extend(broken.iter().map(|v| violation_error(index, &owner, v)));
            restore(&mut working, key, before);
            continue;
        }
        if at_apex && change.rtype == RecordType::NS {
            apex_ns_touched_by = Some(index);
        }
    }
    if let Some(index) = apex_ns_touched_by {
        for violation in rules::check_node(true, &node_shape(&working, apex_lower)) {
            if violation == Violation::NoApexNs {
                errors.push(violation_error(index, apex_lower, &violation));
            }
        }
    }
    if !errors.is_empty() {
        return Err(errors);
    }
    Ok(diff_states(&current, working))
}

/// Puts an RRset back as it was before a refused change.
fn restore(working: &mut Working, key: RRsetKey, before: Option<RRsetData>) {
    match before {
        Some(set) => working.insert(key, set),
        None => working.remove(&key),
    };
}

/// How an import treats the zone's RRsets that its file does not hold.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ImportMode {
    /// The zone ends up holding exactly the file's RRsets.
    Replace,
    /// Each RRset in the file replaces the zone's RRset of that owner and type.
    Merge,
}

impl ImportMode {
    /// The API spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            ImportMode::Replace => "replace",
            ImportMode::Merge => "merge",
        }
    }
}

/// The key range of every RRset at one owner.
pub fn owner_range(owner: &Name) -> std::ops::RangeInclusive<RRsetKey> {
    RRsetKey { owner: owner.clone(), rtype: RecordType(0) }..=RRsetKey {
        owner: owner.clone(),
        rtype: RecordType(u16::MAX),
    }
}

/// The writes and record-level diff that turn `before` into `after`. A TTL
/// change removes and re-adds every record of the RRset, as IXFR must.
/// `after` is consumed: its RRsets move into the writes rather than being
/// copied (an import's `after` is the whole zone).
pub fn diff_states(before: &Working, mut after: Working) -> Plan {
    let mut plan = Plan::default();
    let push = |side: &mut Records, set: &RRsetData, rdata: &[u8]| side.push(&set.owner, set.rtype, set.ttl, rdata);
    for (key, old) in before {
        match after.remove(key) {
            None => {
                old.rdatas.iter().for_each(|r| push(&mut plan.removed, old, r));
                plan.writes.push((key.clone(), None));
                plan.deleted += 1;
            }
            Some(new) if new == *old => {}
            Some(new) => {
                if new.ttl != old.ttl {
                    old.rdatas.iter().for_each(|r| push(&mut plan.removed, old, r));
                    new.rdatas.iter().for_each(|r| push(&mut plan.added, &new, r));
                } else {
                    old.rdatas.iter().filter(|r| !new.rdatas.contains(r)).for_each(|r| push(&mut plan.removed, old, r));
                    new.rdatas.iter().filter(|r| !old.rdatas.contains(r)).for_each(|r| push(&mut plan.added, &new, r));
                }
                plan.writes.push((key.clone(), Some(new)));
            }
        }
    }
    // What is left of `after` is new.
    plan.writes.reserve(after.len());
    for (key, new) in after {
        new.rdatas.iter().for_each(|r| push(&mut plan.added, &new, r));
        plan.writes.push((key, Some(new)));
        plan.created += 1;
    }
    plan
}

/// Applies a diff to a set of RRsets (used to replay journals and to check
/// them). Fails if a removed record is absent.
pub fn apply_diff(state: &mut Working, diff: &Diff) -> Result<(), String> {
    for record in diff.removed.iter() {
        let owner = record.owner_name();
        let key = RRsetKey { owner: owner.to_lowercase(), rtype: record.rtype };
        let Some(set) = state.get_mut(&key) else {
            return Err(format!("{owner} {} is not present", record.rtype));
        };
        let Some(at) = set.rdatas.iter().position(|r| r == record.rdata) else {
            return Err(format!("a record of {owner} {} is not present", record.rtype));
        };
        set.rdatas.remove(at);
        if set.rdatas.is_empty() {
            state.remove(&key);
        }
    }
    for record in diff.added.iter() {
        let owner = record.owner_name();
        let key = RRsetKey { owner: owner.to_lowercase(), rtype: record.rtype };
        let set = state.entry(key).or_insert_with(|| RRsetData::new(&owner, record.rtype, record.ttl, Vec::new()));
        set.ttl = record.ttl;
        if let Err(at) = set.rdatas.binary_search_by(|r| r.as_slice().cmp(record.rdata)) {
            set.rdatas.insert(at, record.rdata.to_vec());
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn name(text: &str) -> Name {
        Name::parse(text, None).unwrap()
    }

    fn a(last: u8) -> Vec<u8> {
        vec![192, 0, 2, last]
    }

    fn zone() -> Working {
        let mut w = Working::new();
        let apex = name("example.com.");
        let ns = RRsetData::new(&apex, RecordType::NS, 3600, vec![name("ns.example.net.").as_wire().to_vec()]);
        w.insert(ns.key(), ns);
        let www = RRsetData::new(&name("www.example.com."), RecordType::A, 300, vec![a(1)]);
        w.insert(www.key(), www);
        w
    }

    /// Checks the batch, then plans it, as the store does.
    fn plan(apex: &Name, current: Working, changes: &[Change], limits: &Limits) -> Result<Plan, Vec<EditError>> {
        super::plan(current, &Checked::new(apex, changes.to_vec(), limits)?)
    }

    fn change(action: Action, owner: &str, rtype: RecordType, rdatas: Vec<Vec<u8>>) -> Change {
        Change { action, owner: name(owner), rtype, ttl: Some(300), rdatas }
    }

    #[test]
    fn create_existing_is_a_conflict_and_upsert_replaces() {
        let apex = name("example.com.");
        let err = plan(
            &apex,
            zone(),
            &[change(Action::Create, "WWW.example.com.", RecordType::A, vec![a(2)])],
            &Limits::default(),
        )
        .unwrap_err();
        assert!(matches!(err[0].fault, Fault::Conflict(_)));
        let p = plan(
            &apex,
            zone(),
            &[change(Action::Upsert, "www.example.com.", RecordType::A, vec![a(2)])],
            &Limits::default(),
        )
        .unwrap();
        assert_eq!(p.removed.len(), 1);
        assert_eq!(p.added.len(), 1);
        assert_eq!(p.writes.len(), 1);
    }

    #[test]
    fn cname_exclusivity_follows_batch_order() {
        let apex = name("example.com.");
        let target = name("example.net.").as_wire().to_vec();
        let cname = change(Action::Create, "www.example.com.", RecordType::CNAME, vec![target.clone()]);
        let err = plan(&apex, zone(), std::slice::from_ref(&cname), &Limits::default()).unwrap_err();
        assert_eq!(err[0].field, Field::Type);
        let delete = change(Action::Delete, "www.example.com.", RecordType::A, vec![]);
        let p = plan(&apex, zone(), &[delete, cname], &Limits::default()).unwrap();
        assert_eq!(p.writes.len(), 2);
    }

    #[test]
    fn apex_ns_cannot_be_emptied_and_soa_is_protected() {
        let apex = name("example.com.");
        let err =
            plan(&apex, zone(), &[change(Action::Delete, "example.com.", RecordType::NS, vec![])], &Limits::default())
                .unwrap_err();
        assert!(matches!(err[0].fault, Fault::Invalid(_)));
        let err = plan(
            &apex,
            zone(),
            &[change(Action::Upsert, "example.com.", RecordType::SOA, vec![a(1)])],
            &Limits::default(),
        )
        .unwrap_err();
        assert_eq!(err[0].field, Field::Type);
    }

    #[test]
    fn diffs_replay_and_encode() {
        let apex = name("example.com.");
        let before = zone();
        let changes = [
            change(Action::Upsert, "www.example.com.", RecordType::A, vec![a(1), a(3)]),
            change(Action::Create, "mail.example.com.", RecordType::A, vec![a(9)]),
        ];
        let p = plan(&apex, before.clone(), &changes, &Limits::default()).unwrap();
        let diff = Diff { old_serial: Serial(1), new_serial: Serial(2), removed: p.removed, added: p.added };
        let decoded = Records::decode(diff.added.encoded().to_vec()).unwrap();
        assert_eq!(decoded, diff.added);
        let mut replay = before;
        apply_diff(&mut replay, &diff).unwrap();
        assert_eq!(replay.len(), 3);
        assert_eq!(replay[&RRsetKey { owner: name("www.example.com."), rtype: RecordType::A }].rdatas.len(), 2);
    }
}
