//! New zone versions in time proportional to the change: the changed nodes
//! go into an overlay beside the shared base (see the `zone` module docs).

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64};
use std::sync::Arc;

use ferrodns_proto::name::{self, MAX_NAME_LEN};
use ferrodns_proto::{RecordType, Serial};

use super::{lowercase_into, node_bytes, stored_name, Layer, Node, RateLimit, Zone, TOMBSTONE};
use crate::edit::Records;
use crate::index::NameIndex;
use crate::rules::{self, RRsetShape};

/// A node as the change leaves it.
struct ChangedNode {
    /// Wire name, in the case the zone gave it (or the change, for a new name).
    name: Vec<u8>,
    children: u32,
    /// By type; each RDATA list sorted and without duplicates, as `freeze` keeps them.
    rrsets: Vec<(RecordType, u32, Vec<Vec<u8>>)>,
    /// The name exists in the zone now.
    exists: bool,
    /// The name existed before the change.
    existed: bool,
}

/// How far an overlay grows before the next change folds it into the base.
#[derive(Clone, Copy, Debug)]
struct Bounds {
    nodes: usize,
    bytes: usize,
}

impl Zone {
    /// This zone with `removed` taken out and `added` put in, made without
    /// touching the unchanged nodes. `None` when the change needs a full
    /// rebuild instead: it is bigger than the overlay's bound, it removes a
    /// record the zone does not hold, or it breaks a zone rule (the rebuild
    /// then reports the problem as a load would).
    pub fn apply_overlay(&self, removed: &Records, added: &Records) -> Option<Zone> {
        self.apply_overlay_within(removed, added, self.overlay_bounds())
    }

    /// Each version copies the overlay before it adds the change: past these
    /// bounds a fold (a copy of the base) costs less than the copies. A
    /// small zone's floor is 16 KiB: with 256 KiB a one-record zone's every
    /// change copied up to 256 KiB, 12 % of the API's CPU under a stream of
    /// changes.
    fn overlay_bounds(&self) -> Bounds {
        Bounds { nodes: (self.base.index.len() / 64).max(1024), bytes: (self.base.arena.len() / 64).max(16 << 10) }
    }

    /// Whether a change of `records` records goes into the overlay as it
    /// is, with no fold first, and the version it makes copies at most
    /// 256 KiB of overlay: tens of microseconds, cheap enough to make on an
    /// async task. A fold copies the base and a rebuild reads the whole
    /// zone; those belong on a blocking thread.
    pub fn takes_change_cheaply(&self, records: usize) -> bool {
        const CHEAP_COPY: usize = 256 << 10;
        !self.fold_due(records, self.overlay_bounds())
            && self.overlay.as_deref().map_or(0, Layer::memory_bytes) <= CHEAP_COPY
    }

    /// Whether a change of `records` records must fold the overlay into the
    /// base first: the overlay would pass its bound on nodes, or has passed
    /// it on bytes. (A change bigger than the bound on its own is rebuilt.)
    fn fold_due(&self, records: usize, bounds: Bounds) -> bool {
        let held = self.overlay.as_ref().map_or(0, |o| o.index.len());
        held + records > bounds.nodes || self.overlay.as_ref().is_some_and(|o| o.arena.len() > bounds.bytes)
    }

    fn apply_overlay_within(&self, removed: &Records, added: &Records, bounds: Bounds) -> Option<Zone> {
        let change = removed.len() + added.len();
        if change > bounds.nodes {
            return None;
        }
        if self.fold_due(change, bounds) {
            return self.folded()?.apply_overlay_within(removed, added, bounds);
        }
        let apex = &self.apex_lower[..];
        let mut work: HashMap<Vec<u8>, ChangedNode> = HashMap::new();
        let mut order: Vec<Vec<u8>> = Vec::new();
        let mut records = self.record_count as isize;
        let mut buffer = [0u8; MAX_NAME_LEN];
        for record in removed {
            let lower = lowercase_into(record.owner, &mut buffer).to_vec();
            let node = self.working(&mut work, &mut order, &lower, record.owner);
            if !node.exists {
                return None;
            }
            let at = node.rrsets.iter().position(|(t, _, _)| *t == record.rtype)?;
            let rdatas = &mut node.rrsets[at].2;
            let i = rdatas.binary_search_by(|r| r.as_slice().cmp(record.rdata)).ok()?;
            rdatas.remove(i);
            if rdatas.is_empty() {
                node.rrsets.remove(at);
            }
            records -= 1;
        }
        for record in added {
            let lower = lowercase_into(record.owner, &mut buffer).to_vec();
            if !name::is_subdomain(&lower, apex) || rules::check_record(record.rtype, record.rdata).is_err() {
                return None;
            }
            let node = self.working(&mut work, &mut order, &lower, record.owner);
            node.exists = true;
            match node.rrsets.binary_search_by_key(&record.rtype, |(t, _, _)| *t) {
                Ok(at) => {
                    let rdatas = &mut node.rrsets[at].2;
                    if let Err(i) = rdatas.binary_search_by(|r| r.as_slice().cmp(record.rdata)) {
                        rdatas.insert(i, record.rdata.to_vec());
                        records += 1;
                    }
                }
                Err(at) => {
                    node.rrsets.insert(at, (record.rtype, record.ttl, vec![record.rdata.to_vec()]));
                    records += 1;
                }
            }
        }
        // Names that appear or go change their parents' child counts; new
        // names bring their missing ancestors as empty non-terminals, and
        // names left empty without children go, with ancestors that only
        // existed for them.
        let mut nodes = self.node_count as isize;
        for lower in order.clone() {
            let node = &work[&lower];
            let appears = !node.existed && node.exists;
            let goes = node.existed && node.exists && node.rrsets.is_empty() && node.children == 0 && lower != apex;
            if appears {
                nodes += 1;
                let mut child = lower.clone();
                let mut child_name = node.name.clone();
                loop {
                    let parent = child[1 + child[0] as usize..].to_vec();
                    let parent_name = child_name[1 + child_name[0] as usize..].to_vec();
                    let up = self.working(&mut work, &mut order, &parent, &parent_name);
                    up.children += 1;
                    if up.exists {
                        break;
                    }
                    up.exists = true;
                    nodes += 1;
                    (child, child_name) = (parent, parent_name);
                }
            } else if goes {
                let mut gone = lower.clone();
                loop {
                    work.get_mut(&gone).expect("loaded").exists = false;
                    nodes -= 1;
                    let parent = gone[1 + gone[0] as usize..].to_vec();
                    let parent_name = parent.clone();
                    let up = self.working(&mut work, &mut order, &parent, &parent_name);
                    up.children -= 1;
                    if up.children > 0 || !up.rrsets.is_empty() || parent == apex {
                        break;
                    }
                    gone = parent;
                }
            } else if node.existed && node.exists && node.rrsets.is_empty() && lower == apex {
                return None;
            }
        }
        for lower in &order {
            let node = &work[lower];
            if node.exists && !rules_hold(node, lower == apex) {
                return None;
            }
        }
        // The new overlay: the old one plus the changed nodes, appended,
        // copied once into an arena with room for them.
        let room: usize = order
            .iter()
            .map(|lower| {
                let node = &work[lower];
                let records: usize = node
                    .rrsets
                    .iter()
                    .map(|(_, _, rdatas)| 10 + rdatas.iter().map(|r| r.len() + 2).sum::<usize>())
                    .sum();
                6 + node.name.len() + records
            })
            .sum();
        let mut overlay = match &self.overlay {
            Some(old) => {
                let mut arena = Vec::with_capacity(old.arena.len() + room);
                arena.extend_from_slice(&old.arena);
                Layer { arena, index: old.index.clone(), dead: 0, filter: old.filter.clone() }
            }
            None => Layer {
                arena: Vec::with_capacity(room),
                index: NameIndex::with_capacity(order.len()),
                dead: 0,
                // Sixteen bits a node the bound allows: a lookup of a name
                // the overlay does not hold passes the filter one time in
                // sixteen or less.
                filter: vec![0; ((bounds.nodes * 16).next_power_of_two() / 64).max(1)].into_boxed_slice(),
            },
        };
        let (mut apex_offset, mut apex_in_overlay) = (self.apex_offset, self.apex_in_overlay);
        for lower in &order {
            let node = &work[lower];
            if !node.existed && !node.exists {
                continue;
            }
            let offset = u32::try_from(overlay.arena.len()).ok().filter(|&o| o < u32::MAX)?;
            let arena = &mut overlay.arena;
            arena.push(node.name.len() as u8);
            arena.extend_from_slice(&node.name);
            arena.extend_from_slice(&(if node.exists { node.children } else { TOMBSTONE }).to_le_bytes());
            arena.push(if node.exists { node.rrsets.len() as u8 } else { 0 });
            if node.exists {
                for (rtype, ttl, rdatas) in &node.rrsets {
                    arena.extend_from_slice(&rtype.0.to_be_bytes());
                    arena.extend_from_slice(&ttl.to_be_bytes());
                    let len: usize = rdatas.iter().map(|r| r.len() + 2).sum();
                    arena.extend_from_slice(&(len as u32).to_be_bytes());
                    for rdata in rdatas {
                        arena.extend_from_slice(&(rdata.len() as u16).to_be_bytes());
                        arena.extend_from_slice(rdata);
                    }
                }
            }
            let hash = self.hash_name(lower);
            let arena = &overlay.arena;
            if !overlay.index.replace(hash, |o| stored_name(arena, o).eq_ignore_ascii_case(lower), offset) {
                overlay.index.insert(hash, offset);
                overlay.mark(hash);
            }
            if lower == apex {
                (apex_offset, apex_in_overlay) = (offset, true);
            }
        }
        let mut zone = Zone {
            apex: self.apex.clone(),
            apex_lower: self.apex_lower.clone(),
            base: self.base.clone(),
            overlay: Some(Arc::new(overlay)),
            hasher: self.hasher.clone(),
            apex_offset,
            apex_in_overlay,
            apex_dname: false,
            serial: self.serial,
            negative_ttl: self.negative_ttl,
            record_count: records.max(0) as usize,
            node_count: nodes.max(0) as usize,
            history: self.history.clone(),
            expired: AtomicBool::new(false),
            rate_limit: AtomicU64::new(0),
        };
        let (serial, negative_ttl) = {
            let soa = zone.soa();
            let fixed = &soa.first()[soa.first().len() - 20..];
            let minimum = u32::from_be_bytes(fixed[16..20].try_into().expect("4 octets"));
            (Serial(u32::from_be_bytes(fixed[0..4].try_into().expect("4 octets"))), soa.ttl.min(minimum))
        };
        zone.serial = serial;
        zone.negative_ttl = negative_ttl;
        zone.apex_dname = zone.apex_node().rrset(RecordType::DNAME).is_some();
        Some(zone)
    }

    /// This zone with its overlay made part of a new base, without a
    /// rebuild's parse, sort and checks: each version the overlay made
    /// holds what a rebuild would (`overlay_versions_equal_rebuilt_ones`),
    /// so its nodes are copied as they are. The base's arena and index are
    /// copied, the overlay's nodes appended and pointed at, and the nodes
    /// they replace left in the arena as dead bytes; past a quarter of the
    /// arena a compacting copy drops those. Only called with an overlay;
    /// `None` past 4 GiB of nodes (the rebuild then says so).
    fn folded(&self) -> Option<Zone> {
        let overlay = self.overlay.as_deref()?;
        let base = &*self.base;
        let mut arena = Vec::with_capacity(base.arena.len() + overlay.arena.len());
        arena.extend_from_slice(&base.arena);
        let mut index = base.index.clone();
        let mut dead = base.dead;
        let mut slot = 0;
        while let Some((hash, offset)) = overlay.index.entry_from(&mut slot) {
            let name = stored_name(&overlay.arena, offset);
            let old = index.find(hash, |o| stored_name(&arena, o).eq_ignore_ascii_case(name));
            if let Some(old) = old {
                dead += node_bytes(&arena, old).len();
            }
            if Node::at(&overlay.arena, offset).children == TOMBSTONE {
                if let Some(old) = old {
                    index.remove(hash, |o| o == old);
                }
                continue;
            }
            let at = u32::try_from(arena.len()).ok().filter(|&o| o < u32::MAX)?;
            arena.extend_from_slice(node_bytes(&overlay.arena, offset));
            match old {
                Some(old) => {
                    index.replace(hash, |o| o == old, at);
                }
                None => index.insert(hash, at),
            }
        }
        let mut layer = Layer { arena, index, dead, filter: Box::default() };
        if layer.dead > layer.arena.len() / 4 {
            layer = layer.compacted();
        }
        let apex_offset = layer.find(self.hash_name(&self.apex_lower), &self.apex_lower)?;
        Some(Zone {
            apex: self.apex.clone(),
            apex_lower: self.apex_lower.clone(),
            base: Arc::new(layer),
            overlay: None,
            hasher: self.hasher.clone(),
            apex_offset,
            apex_in_overlay: false,
            apex_dname: self.apex_dname,
            serial: self.serial,
            negative_ttl: self.negative_ttl,
            record_count: self.record_count,
            node_count: self.node_count,
            history: self.history.clone(),
            expired: AtomicBool::new(self.is_expired()),
            rate_limit: AtomicU64::new(RateLimit::packed(self.rate_limit())),
        })
    }

    /// The working copy of a node, loaded from the zone on first use.
    fn working<'w>(
        &self,
        work: &'w mut HashMap<Vec<u8>, ChangedNode>,
        order: &mut Vec<Vec<u8>>,
        lower: &[u8],
        name: &[u8],
    ) -> &'w mut ChangedNode {
        if !work.contains_key(lower) {
            let node = match self.node(lower) {
                Some(node) => ChangedNode {
                    name: node.name().to_vec(),
                    children: node.children(),
                    rrsets: node.rrsets().map(|r| (r.rtype, r.ttl, r.rdatas().map(<[u8]>::to_vec).collect())).collect(),
                    exists: true,
                    existed: true,
                },
                None => {
                    ChangedNode { name: name.to_vec(), children: 0, rrsets: Vec::new(), exists: false, existed: false }
                }
            };
            work.insert(lower.to_vec(), node);
            order.push(lower.to_vec());
        }
        work.get_mut(lower).expect("just inserted")
    }
}

impl Layer {
    /// The layer's live nodes alone, in a new arena and index.
    fn compacted(&self) -> Layer {
        let mut arena = Vec::with_capacity(self.arena.len() - self.dead);
        let mut index = NameIndex::with_capacity(self.index.len());
        let mut slot = 0;
        while let Some((hash, offset)) = self.index.entry_from(&mut slot) {
            // Below the old arena's offsets, which fit.
            let at = arena.len() as u32;
            arena.extend_from_slice(node_bytes(&self.arena, offset));
            index.insert(hash, at);
        }
        Layer { arena, index, dead: 0, filter: Box::default() }
    }
}

/// Whether a changed node keeps the zone rules; when it does not, the
/// rebuild reports the problem as a load would.
fn rules_hold(node: &ChangedNode, at_apex: bool) -> bool {
    let shapes: Vec<RRsetShape> =
        node.rrsets.iter().map(|(rtype, _, rdatas)| RRsetShape { rtype: *rtype, records: rdatas.len() }).collect();
    rules::check_node(at_apex, &shapes).is_empty()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::edit::{Diff, Record};
    use crate::live::{apply_to_zone, rebuild_with};
    use crate::lookup::Answer;
    use ferrodns_proto::Name;

    /// What a zone holds, in a form two builds can be compared by.
    fn contents(zone: &Zone) -> Vec<String> {
        let mut nodes: Vec<String> = zone
            .nodes()
            .map(|node| {
                let sets: Vec<String> = node
                    .rrsets()
                    .map(|r| format!("{} {} {:?}", r.rtype, r.ttl, r.rdatas().collect::<Vec<_>>()))
                    .collect();
                format!(
                    "{} children={} {sets:?}",
                    Name::from_wire(node.name()).unwrap().to_lowercase(),
                    node.children()
                )
            })
            .collect();
        nodes.sort();
        nodes
    }

    fn answer(zone: &Zone, name: &Name, qtype: RecordType) -> String {
        let lookup = zone.lookup(name.to_lowercase().as_wire(), qtype);
        let node_name = |n: &super::super::Node<'_>| Name::from_wire(n.name()).unwrap().to_lowercase().to_string();
        let what = match lookup.answer {
            Answer::Found(n, r) => format!("found {} {} {:?}", node_name(&n), r.rtype, r.rdatas().collect::<Vec<_>>()),
            Answer::Any(n) => format!("any {}", node_name(&n)),
            Answer::Cname(n, _) => format!("cname {}", node_name(&n)),
            Answer::NoData(n) => format!("nodata {}", node_name(&n)),
            Answer::NxDomain => "nxdomain".into(),
            Answer::Referral(n) => format!("referral {}", node_name(&n)),
            Answer::Dname(n, _) => format!("dname {}", node_name(&n)),
        };
        format!("{what} wildcard={}", lookup.wildcard)
    }

    fn soa(serial: u32) -> Vec<u8> {
        let mut rdata = Name::parse("ns.example.", None).unwrap().as_wire().to_vec();
        rdata.extend_from_slice(Name::parse("h.example.", None).unwrap().as_wire());
        for value in [serial, 3600, 600, 86400, 60] {
            rdata.extend_from_slice(&value.to_be_bytes());
        }
        rdata
    }

    /// Random changes (addresses, text and delegations appearing and going
    /// at several depths, under a wildcard and below cuts, so empty
    /// non-terminals and occluded names come and go) give the same zone
    /// through the overlay as through a full rebuild: the same nodes, child
    /// counts, counts, serial and answers.
    #[test]
    fn overlay_versions_equal_rebuilt_ones() {
        let walk = random_walk(None);
        assert!(walk.overlaid > 250, "only {} of 300 versions used the overlay", walk.overlaid);
    }

    /// The same walk with an overlay bound of a few nodes, so that most
    /// changes fold the overlay into a new base first and the dead bytes
    /// of replaced nodes often pass the compaction's threshold: folded
    /// bases answer as rebuilt ones do.
    #[test]
    fn folded_bases_equal_rebuilt_ones() {
        let walk = random_walk(Some(Bounds { nodes: 8, bytes: 600 }));
        assert!(walk.overlaid > 250, "only {} of 300 versions used the overlay", walk.overlaid);
        assert!(walk.folds > 100, "{walk:?}");
        assert!(walk.compactions > 5, "{walk:?}");
    }

    #[derive(Debug)]
    struct Walk {
        overlaid: usize,
        folds: usize,
        compactions: usize,
    }

    /// Applies 300 random changes (see above) through the overlay, within
    /// `bounds` or the zone's own, checking each version against a rebuild.
    fn random_walk(bounds: Option<Bounds>) -> Walk {
        let start = crate::zone::tests::build(
            "$ORIGIN example.\n$TTL 300\n@ SOA ns h 1 3600 600 86400 60\n@ NS ns\nns A 192.0.2.1\n\
             *.w TXT \"w\"\nsub NS ns.sub\nns.sub A 192.0.2.53\nx.y.z A 192.0.2.9\n",
        )
        .unwrap();
        let labels = ["a", "b", "c", "x", "y", "z", "w", "q.w", "sub", "deep.er", "y.z", "a.b.c.d"];
        let mut pool: Vec<Name> = Vec::new();
        for first in labels {
            pool.push(Name::parse(&format!("{first}.example."), None).unwrap());
            for second in ["a", "y.z", "w", "b.c"] {
                pool.push(Name::parse(&format!("{first}.{second}.example."), None).unwrap());
            }
        }
        let mut seed: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut next = |n: usize| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            (seed % n as u64) as usize
        };
        let (mut fast, mut slow) = (Arc::new(start), None::<Arc<Zone>>);
        let mut walk = Walk { overlaid: 0, folds: 0, compactions: 0 };
        for step in 0..300u32 {
            let reference = slow.clone().unwrap_or_else(|| fast.clone());
            let serial = reference.serial().0;
            let apex = Name::parse("example.", None).unwrap();
            let soa_record =
                |serial| Record { owner: apex.clone(), rtype: RecordType::SOA, ttl: 300, rdata: soa(serial) };
            let mut diff = Diff {
                old_serial: Serial(serial),
                new_serial: Serial(serial + 1),
                removed: vec![Record { rdata: reference.soa().first().to_vec(), ..soa_record(serial) }].into(),
                added: vec![soa_record(serial + 1)].into(),
            };
            for _ in 0..1 + next(4) {
                let owner = pool[next(pool.len())].clone();
                // Mostly addresses; some delegations (which occlude what is
                // below them) and some text.
                let (rtype, rdata) = match next(10) {
                    0 => {
                        let target = Name::parse(&format!("ns{}.example.net.", next(2)), None).unwrap();
                        (RecordType::NS, target.as_wire().to_vec())
                    }
                    1 => (RecordType::TXT, vec![1, b'a' + next(3) as u8]),
                    _ => (RecordType::A, vec![192, 0, 2, next(4) as u8]),
                };
                let present = reference
                    .node(owner.to_lowercase().as_wire())
                    .and_then(|n| n.rrset(rtype))
                    .map(|r| r.rdatas().map(<[u8]>::to_vec).collect::<Vec<_>>())
                    .unwrap_or_default();
                let record = Record { owner, rtype, ttl: 60, rdata };
                let touched =
                    diff.removed.iter().chain(&diff.added).any(|r| {
                        r.owner == record.owner.as_wire() && r.rtype == record.rtype && r.rdata == record.rdata
                    });
                if touched {
                    continue;
                }
                if present.contains(&record.rdata) {
                    diff.removed.push_record(&record);
                } else {
                    diff.added.push_record(&record);
                }
            }
            let diff = Arc::new(diff);
            let by_overlay = match bounds {
                None => apply_to_zone(&fast, &diff).unwrap(),
                Some(bounds) => fast
                    .apply_overlay_within(&diff.removed, &diff.added, bounds)
                    .unwrap_or_else(|| rebuild_with(&fast, &diff).unwrap()),
            };
            let by_rebuild = rebuild_with(&reference, &diff).unwrap();
            if by_overlay.overlay_len() > 0 {
                walk.overlaid += 1;
                if !Arc::ptr_eq(&by_overlay.base, &fast.base) {
                    walk.folds += 1;
                    if by_overlay.base.dead < fast.base.dead {
                        walk.compactions += 1;
                    }
                }
            }
            assert_eq!(contents(&by_overlay), contents(&by_rebuild), "step {step}: {diff:?}");
            assert_eq!(by_overlay.serial(), by_rebuild.serial());
            assert_eq!(by_overlay.record_count(), by_rebuild.record_count(), "step {step}");
            assert_eq!(by_overlay.node_count(), by_rebuild.node_count(), "step {step}");
            for name in pool.iter().chain(&[Name::parse("nx.a.example.", None).unwrap(), apex.clone()]) {
                for qtype in [RecordType::A, RecordType::TXT, RecordType::NS, RecordType::ANY, RecordType::DS] {
                    assert_eq!(
                        answer(&by_overlay, name, qtype),
                        answer(&by_rebuild, name, qtype),
                        "step {step}: {name} {qtype}"
                    );
                }
            }
            fast = Arc::new(by_overlay);
            slow = Some(Arc::new(by_rebuild));
        }
        walk
    }

    /// A change is called cheap exactly when it goes into the overlay
    /// without a fold, and a change bigger than the overlay's bound is
    /// never cheap.
    #[test]
    fn a_cheap_change_is_one_that_folds_nothing() {
        let mut zone = Arc::new(
            crate::zone::tests::build("$ORIGIN example.\n$TTL 300\n@ SOA ns h 1 1 1 1 60\n@ NS ns\nns A 192.0.2.1\n")
                .unwrap(),
        );
        assert!(!zone.takes_change_cheaply(1025));
        let (mut cheap, mut folds) = (0, 0);
        for step in 0..400u32 {
            let owner = Name::parse(&format!("host-with-a-long-name-{step}.example."), None).unwrap();
            let apex = Name::parse("example.", None).unwrap();
            let mut diff = Diff {
                old_serial: zone.serial(),
                new_serial: Serial(zone.serial().0 + 1),
                removed: Records::new(),
                added: Records::new(),
            };
            let record = |owner: &Name, rtype, rdata: Vec<u8>| Record { owner: owner.clone(), rtype, ttl: 60, rdata };
            diff.removed.push_record(&record(&apex, RecordType::SOA, zone.soa().first().to_vec()));
            diff.added.push_record(&record(&apex, RecordType::SOA, soa(zone.serial().0 + 1)));
            diff.added.push_record(&record(&owner, RecordType::A, vec![192, 0, 2, step as u8]));
            let predicted = zone.takes_change_cheaply(diff.removed.len() + diff.added.len());
            let next = Arc::new(apply_to_zone(&zone, &Arc::new(diff)).unwrap());
            let folded = !Arc::ptr_eq(&next.base, &zone.base);
            assert_eq!(predicted, !folded, "step {step}");
            (cheap, folds) = (cheap + usize::from(predicted), folds + usize::from(folded));
            zone = next;
        }
        assert!(folds > 2 && cheap > 300, "{folds} folds, {cheap} cheap changes");
    }

    /// Removing what is not there, or breaking a rule, is left to the rebuild.
    #[test]
    fn what_needs_the_full_checks_is_refused() {
        let zone =
            crate::zone::tests::build("$ORIGIN example.\n$TTL 300\n@ SOA ns h 1 1 1 1 60\n@ NS ns\nns A 192.0.2.1\n")
                .unwrap();
        let record = |owner: &str, rtype, rdata: &[u8]| {
            Records::from(vec![Record {
                owner: Name::parse(owner, None).unwrap(),
                rtype,
                ttl: 60,
                rdata: rdata.to_vec(),
            }])
        };
        assert!(zone.apply_overlay(&record("nx.example.", RecordType::A, &[192, 0, 2, 9]), &Records::new()).is_none());
        let target = Name::parse("ns.example.", None).unwrap();
        assert!(zone
            .apply_overlay(&Records::new(), &record("ns.example.", RecordType::CNAME, target.as_wire()))
            .is_none());
        assert!(zone.apply_overlay(&Records::new(), &record("other.", RecordType::A, &[192, 0, 2, 9])).is_none());
        assert!(zone.apply_overlay(&Records::new(), &record("bad.example.", RecordType::A, &[1, 2, 3])).is_none());
        assert!(zone.apply_overlay(&Records::new(), &record("ok.example.", RecordType::A, &[192, 0, 2, 9])).is_some());
    }
}
