//! The in-memory zone: an immutable snapshot of nodes, each holding its RRsets,
//! indexed by lowercase owner name, built and checked by [`ZoneBuilder`].
//!
//! A [`Zone`] never changes once built. A new version is a new `Zone`, published
//! by swapping an `Arc` (see [`crate::ZoneSet`]), so readers never wait for
//! writers. The table holds every owner name plus every empty non-terminal, so
//! the closest encloser of a qname is its longest suffix present in the table.
//!
//! Storage is compact on purpose: every node is serialized into one byte arena,
//! and the index ([`NameIndex`]) maps name hashes to 32-bit arena offsets. A
//! node with one A record costs about 50 bytes, against ~180 for a node of
//! boxed parts, and a lookup touches two cache lines (the index slot and the
//! node), the first of which can be prefetched.
//!
//! ```text
//!   node   := name_len:u8 name:[u8; name_len] children:u32 rrset_count:u8 rrset*
//!   rrset  := rtype:u16 ttl:u32 packed_len:u32 packed:[u8; packed_len]
//!   packed := (rdata_len:u16 rdata:[u8; rdata_len])*
//! ```
//!
//! `children` counts the names one label below (owners and empty
//! non-terminals alike), so a change can tell whether a name it empties still
//! exists as an empty non-terminal.
//!
//! **Changes cost O(change).** A new version made by [`Zone::apply_overlay`]
//! shares the base arena and index by `Arc` and carries an overlay: a small
//! arena of the nodes that changed since the base was built (in the same
//! format; a deleted name is a tombstone with `children == u32::MAX`), with
//! its own index. [`Zone::node`] asks the overlay first. When the overlay
//! grows past a sixty-fourth of the base, the next change first folds it
//! into a new base: a copy of the base's arena and index with the overlay's
//! nodes appended and pointed at, the nodes they replace left behind as dead
//! bytes until a quarter of the arena is dead and a compacting copy drops
//! them. Lookups stay two probes, the copy each change makes of the overlay
//! stays small, and no change pays for a rebuild's parse, sort and checks
//! (90 ms on a 100,000-record zone, where a fold takes a few).

use std::collections::HashSet;
use std::fmt;
use std::hash::BuildHasher;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

use ferrodns_proto::name::{self, MAX_NAME_LEN};
use ferrodns_proto::{Name, RecordType, Serial};

use crate::edit::Diff;
use crate::index::NameIndex;
use crate::rules::{self, Violation};

mod overlay;

/// An RRset: records of one owner and type, sharing a TTL. A view into a zone.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct RRset<'z> {
    pub rtype: RecordType,
    pub ttl: u32,
    /// The RDATAs, each as a 16-bit length followed by the uncompressed RDATA.
    packed: &'z [u8],
}

impl<'z> RRset<'z> {
    /// The RDATAs in packed form, as the message writer takes them.
    pub fn packed(&self) -> &'z [u8] {
        self.packed
    }

    /// Each RDATA in wire form.
    pub fn rdatas(&self) -> RdataIter<'z> {
        RdataIter { packed: self.packed }
    }

    /// The first RDATA (every stored RRset has one).
    pub fn first(&self) -> &'z [u8] {
        self.rdatas().next().unwrap_or(&[])
    }

    /// How many records.
    pub fn len(&self) -> usize {
        self.rdatas().count()
    }

    /// True for an RRset with no records (never stored in a zone).
    pub fn is_empty(&self) -> bool {
        self.packed.is_empty()
    }
}

impl fmt::Debug for RRset<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "RRset({} ttl={} n={})", self.rtype, self.ttl, self.len())
    }
}

/// Iterates over the RDATAs of an [`RRset`].
pub struct RdataIter<'a> {
    packed: &'a [u8],
}

impl<'a> Iterator for RdataIter<'a> {
    type Item = &'a [u8];
    fn next(&mut self) -> Option<&'a [u8]> {
        if self.packed.len() < 2 {
            return None;
        }
        let len = u16::from_be_bytes([self.packed[0], self.packed[1]]) as usize;
        let rdata = &self.packed[2..2 + len];
        self.packed = &self.packed[2 + len..];
        Some(rdata)
    }
}

/// One owner name and its RRsets, viewed in the zone's arena. An empty
/// non-terminal has no RRsets.
#[derive(Clone, Copy)]
pub struct Node<'z> {
    /// Wire name in the case the zone data gave it.
    name: &'z [u8],
    children: u32,
    count: u8,
    rrsets: &'z [u8],
}

/// `children` of a deleted name in an overlay.
const TOMBSTONE: u32 = u32::MAX;

impl<'z> Node<'z> {
    #[inline]
    fn at(arena: &'z [u8], offset: u32) -> Node<'z> {
        let node = &arena[offset as usize..];
        let (name, rest) = node[1..].split_at(node[0] as usize);
        let (header, rrsets) = rest.split_at(5);
        let children = u32::from_le_bytes([header[0], header[1], header[2], header[3]]);
        Node { name, children, count: header[4], rrsets }
    }

    /// How many names sit one label below this one.
    pub fn children(&self) -> u32 {
        self.children
    }

    /// The owner in wire form, original case.
    pub fn name(&self) -> &'z [u8] {
        self.name
    }

    /// The RRsets, in ascending type order.
    pub fn rrsets(&self) -> RRsetIter<'z> {
        RRsetIter { bytes: self.rrsets, left: self.count }
    }

    /// The RRset of a type, if present.
    #[inline]
    pub fn rrset(&self, rtype: RecordType) -> Option<RRset<'z>> {
        self.rrsets().find(|r| r.rtype == rtype)
    }

    /// True for a name that exists only because names below it do (RFC 4592 §2.2.2).
    pub fn is_empty_non_terminal(&self) -> bool {
        self.count == 0
    }
}

impl fmt::Debug for Node<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut owner = String::new();
        let _ = name::write_presentation(self.name, &mut owner);
        write!(f, "Node({owner} {:?})", self.rrsets().collect::<Vec<_>>())
    }
}

/// Iterates over a node's RRsets.
pub struct RRsetIter<'z> {
    bytes: &'z [u8],
    left: u8,
}

impl<'z> Iterator for RRsetIter<'z> {
    type Item = RRset<'z>;
    #[inline]
    fn next(&mut self) -> Option<RRset<'z>> {
        if self.left == 0 {
            return None;
        }
        self.left -= 1;
        let (header, rest) = self.bytes.split_at(10);
        let rtype = RecordType(u16::from_be_bytes([header[0], header[1]]));
        let ttl = u32::from_be_bytes([header[2], header[3], header[4], header[5]]);
        let len = u32::from_be_bytes([header[6], header[7], header[8], header[9]]) as usize;
        let (packed, rest) = rest.split_at(len);
        self.bytes = rest;
        Some(RRset { rtype, ttl, packed })
    }
}

/// A zone snapshot.
pub struct Zone {
    apex: Name,
    apex_lower: Box<[u8]>,
    /// Every node as of the last full build.
    base: Arc<Layer>,
    /// Nodes changed since (see the module docs); looked up first.
    overlay: Option<Arc<Layer>>,
    hasher: foldhash::fast::RandomState,
    /// Where the apex node sits: every lookup starts there.
    apex_offset: u32,
    apex_in_overlay: bool,
    /// The apex owns a DNAME: every lookup below the apex asks, so the
    /// answer is kept rather than found in the apex's RRsets each time.
    apex_dname: bool,
    serial: Serial,
    negative_ttl: u32,
    record_count: usize,
    node_count: usize,
    /// The most recent changes that led to this version, oldest first, each
    /// ending where the next starts and the last at this serial: what IXFR
    /// serves without asking the store. Bounded by [`crate::live`].
    history: Arc<[Arc<Diff>]>,
    /// Set on a secondary's zone past its SOA expire: answers become SERVFAIL.
    expired: AtomicBool,
    /// The zone's own response rate limit ([`RateLimit::packed`]; 0 for the
    /// server's), a setting rather than data: set on the served version and
    /// carried to the next by [`crate::ZoneSet::insert`].
    rate_limit: AtomicU64,
}

/// A zone's own response rate limit, in place of the server's
/// `--rrl-rate` and `--rrl-slip`: `rate` responses a second per bucket (0
/// for none), every `slip`-th limited response truncated rather than dropped.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RateLimit {
    pub rate: u32,
    pub slip: u32,
}

impl RateLimit {
    /// The most responses a second a bucket holds (its tokens have 24 bits).
    pub const MAX_RATE: u32 = (1 << 24) - 1;
    /// The largest slip, as BIND allows.
    pub const MAX_SLIP: u32 = 10;

    /// One word for an atomic: a set bit, the slip and the rate.
    fn packed(limit: Option<RateLimit>) -> u64 {
        limit.map_or(0, |l| 1 << 63 | u64::from(l.slip.min(Self::MAX_SLIP)) << 32 | u64::from(l.rate))
    }

    fn unpacked(word: u64) -> Option<RateLimit> {
        (word != 0).then_some(RateLimit { rate: word as u32, slip: ((word >> 32) & 0xff) as u32 })
    }
}

/// Serialized nodes and their index.
#[derive(Clone)]
struct Layer {
    arena: Vec<u8>,
    index: NameIndex,
    /// Bytes of the arena no entry of the index points at: nodes a fold
    /// replaced ([`Zone::apply_overlay`]). Always 0 in an overlay, whose
    /// own bound counts them.
    dead: usize,
    /// An overlay's names by the low bits of their hashes, one bit each:
    /// nearly every lookup is of a name the overlay does not hold, and a
    /// clear bit says so for one load, where the index would walk a probe
    /// run (some eight slots at its three-quarter load). Empty for a base.
    filter: Box<[u64]>,
}

impl Layer {
    #[inline]
    fn find(&self, hash: u64, name_lower: &[u8]) -> Option<u32> {
        let arena = &self.arena[..];
        self.index.find(hash, |offset| name::eq_ignore_case(stored_name(arena, offset), name_lower))
    }

    /// As [`Layer::find`], asking the filter first: an overlay's lookup.
    #[inline]
    fn find_filtered(&self, hash: u64, name_lower: &[u8]) -> Option<u32> {
        let (word, bit) = self.filter_bit(hash)?;
        if self.filter[word] & bit == 0 {
            return None;
        }
        self.find(hash, name_lower)
    }

    /// Records a name of this hash in the filter.
    fn mark(&mut self, hash: u64) {
        if let Some((word, bit)) = self.filter_bit(hash) {
            self.filter[word] |= bit;
        }
    }

    /// The filter's word and bit for a hash (its low half); `None` without
    /// a filter.
    #[inline]
    fn filter_bit(&self, hash: u64) -> Option<(usize, u64)> {
        let last = self.filter.len().checked_sub(1)?;
        let bit = hash as u32 as usize;
        Some(((bit >> 6) & last, 1 << (bit & 63)))
    }

    /// Bytes held by the arena, the index and the filter.
    fn memory_bytes(&self) -> usize {
        self.arena.len() + self.index.memory_bytes() + std::mem::size_of_val(&*self.filter)
    }
}

impl fmt::Debug for Zone {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Zone({} serial={} nodes={})", self.apex, self.serial.0, self.node_count)
    }
}

/// The hasher of every zone's name index: one random seed per process, so
/// that a name's hash is known before its zone is read (the UDP path
/// prefetches with it) and stays hard to predict from outside.
fn shared_hasher() -> &'static foldhash::fast::RandomState {
    static HASHER: std::sync::OnceLock<foldhash::fast::RandomState> = std::sync::OnceLock::new();
    HASHER.get_or_init(foldhash::fast::RandomState::default)
}

fn name_hasher() -> foldhash::fast::RandomState {
    shared_hasher().clone()
}

/// The hash every zone's index uses for a lowercase wire name.
#[inline]
pub fn name_hash(name_lower: &[u8]) -> u64 {
    shared_hasher().hash_one(name_lower)
}

/// Cache lines of a node the UDP path prefetches.
const NODE_PREFETCH_LINES: usize = 4;

/// The addresses of a zone's base header, apex name and index slots, taken
/// once when the zone joins a set. With many zones each of these is a cache
/// miss, and each would otherwise be found only once the zone's header (itself
/// a miss) is read: kept in the set's entry they load together, one wait
/// instead of three. They are only ever prefetched, never read through, so a
/// stale address would cost a wasted prefetch and nothing else.
#[derive(Clone, Copy, Debug)]
pub struct ZoneAddresses {
    layer: usize,
    apex: usize,
    slots: usize,
    mask: u32,
}

impl ZoneAddresses {
    /// Starts loading the base header, the apex, and the index slot for a
    /// name's hash ([`name_hash`]).
    #[inline]
    pub fn prefetch(&self, hash: u64) {
        prefetch_address(self.layer as *const u8);
        prefetch_address(self.apex as *const u8);
        let slot = (hash >> 32) as u32 & self.mask;
        prefetch_address((self.slots as *const u64).wrapping_add(slot as usize));
    }
}

/// Asks the CPU to start loading the cache line at `address`.
#[inline]
pub fn prefetch_address<T>(address: *const T) {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: a prefetch never faults or changes memory, whatever the address.
    unsafe {
        use std::arch::x86_64::{_mm_prefetch, _MM_HINT_T0};
        _mm_prefetch::<_MM_HINT_T0>(address.cast());
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = address;
}

fn lowercase_into<'b>(wire: &[u8], buffer: &'b mut [u8; MAX_NAME_LEN]) -> &'b [u8] {
    let out = &mut buffer[..wire.len()];
    out.copy_from_slice(wire);
    out.make_ascii_lowercase();
    out
}

fn stored_name(arena: &[u8], offset: u32) -> &[u8] {
    let offset = offset as usize;
    &arena[offset + 1..offset + 1 + arena[offset] as usize]
}

/// Every byte of the node at `offset`, its RRsets included: up to where
/// the walk over its RRsets stops.
fn node_bytes(arena: &[u8], offset: u32) -> &[u8] {
    let mut rrsets = Node::at(arena, offset).rrsets();
    rrsets.by_ref().for_each(drop);
    &arena[offset as usize..arena.len() - rrsets.bytes.len()]
}

impl Zone {
    /// True once a secondary's copy is past its SOA expire (RFC 1035 §4.3.5).
    #[inline]
    pub fn is_expired(&self) -> bool {
        self.expired.load(Ordering::Relaxed)
    }

    /// Marks the zone expired, or current again.
    pub fn set_expired(&self, expired: bool) {
        self.expired.store(expired, Ordering::Relaxed);
    }

    /// The zone's own response rate limit; `None` for the server's.
    #[inline]
    pub fn rate_limit(&self) -> Option<RateLimit> {
        RateLimit::unpacked(self.rate_limit.load(Ordering::Relaxed))
    }

    /// Sets the zone's own response rate limit, or `None` for the server's.
    pub fn set_rate_limit(&self, limit: Option<RateLimit>) {
        self.rate_limit.store(RateLimit::packed(limit), Ordering::Relaxed);
    }

    /// Recent changes leading to this version (see the field).
    pub fn history(&self) -> &[Arc<Diff>] {
        &self.history
    }

    /// Sets the recent changes leading to this version.
    pub fn set_history(&mut self, history: Vec<Arc<Diff>>) {
        self.history = Arc::from(history);
    }

    /// The apex name, original case.
    pub fn apex(&self) -> &Name {
        &self.apex
    }

    /// The apex in lowercase wire form.
    pub fn apex_lower(&self) -> &[u8] {
        &self.apex_lower
    }

    /// The SOA serial.
    pub fn serial(&self) -> Serial {
        self.serial
    }

    /// The TTL of negative answers: min(SOA TTL, SOA MINIMUM) (RFC 2308 §5).
    pub fn negative_ttl(&self) -> u32 {
        self.negative_ttl
    }

    /// How many records, empty non-terminals not counted.
    pub fn record_count(&self) -> usize {
        self.record_count
    }

    /// How many nodes, empty non-terminals included.
    pub fn node_count(&self) -> usize {
        self.node_count
    }

    /// Bytes held by the node arenas and their indexes, for memory reports.
    pub fn memory_bytes(&self) -> usize {
        self.base.memory_bytes() + self.overlay.as_deref().map_or(0, Layer::memory_bytes)
    }

    /// How many nodes the overlay holds (changed since the last full build).
    pub fn overlay_len(&self) -> usize {
        self.overlay.as_ref().map_or(0, |o| o.index.len())
    }

    /// The apex node.
    #[inline]
    pub fn apex_node(&self) -> Node<'_> {
        match (&self.overlay, self.apex_in_overlay) {
            (Some(overlay), true) => Node::at(&overlay.arena, self.apex_offset),
            _ => Node::at(&self.base.arena, self.apex_offset),
        }
    }

    /// True when the apex owns a DNAME (RFC 6672), which redirects every
    /// name below the apex.
    #[inline]
    pub fn apex_has_dname(&self) -> bool {
        self.apex_dname
    }

    /// The apex SOA RRset.
    pub fn soa(&self) -> RRset<'_> {
        self.apex_node().rrset(RecordType::SOA).expect("a built zone has an SOA")
    }

    /// The hash the index uses for a lowercase wire name.
    #[inline]
    pub fn hash_name(&self, name_lower: &[u8]) -> u64 {
        self.hasher.hash_one(name_lower)
    }

    /// Where the parts every lookup reads before the node live, for a zone
    /// set to keep beside the zone ([`ZoneAddresses::prefetch`]).
    pub fn addresses(&self) -> ZoneAddresses {
        ZoneAddresses {
            layer: Arc::as_ptr(&self.base) as usize,
            apex: self.apex_lower.as_ptr() as usize,
            slots: self.base.index.slots_address(),
            mask: self.base.index.slot_mask() as u32,
        }
    }

    /// Starts loading the index slot for a name's hash (from
    /// [`Zone::hash_name`]), so that a lookup shortly after does not wait for memory.
    #[inline]
    pub fn prefetch(&self, hash: u64) {
        self.base.index.prefetch(hash);
    }

    /// Starts loading the node a name's hash most likely leads to, once its
    /// index slot is in cache (after [`Zone::prefetch`]); when the slot holds
    /// no candidate the name does not exist, and the answer will need the
    /// apex (its SOA) instead, so that is loaded.
    #[inline]
    pub fn prefetch_node(&self, hash: u64) {
        let (arena, offset) = match self.base.index.first_candidate(hash) {
            Some(offset) => (&self.base.arena, offset),
            None => match (&self.overlay, self.apex_in_overlay) {
                (Some(overlay), true) => (&overlay.arena, self.apex_offset),
                _ => (&self.base.arena, self.apex_offset),
            },
        };
        // A node with one record fits in two cache lines; an apex with its
        // SOA, NS and addresses takes three or four, and the RRset asked for
        // may be the last.
        let node = arena.as_ptr().wrapping_add(offset as usize);
        for line in 0..NODE_PREFETCH_LINES {
            prefetch_address(node.wrapping_add(64 * line));
        }
    }

    /// Looks up a node by lowercase wire name.
    #[inline]
    pub fn node(&self, name_lower: &[u8]) -> Option<Node<'_>> {
        self.node_hashed(name_lower, self.hash_name(name_lower))
    }

    /// As [`Zone::node`], with the name's hash ([`name_hash`]) already known:
    /// a transport that prefetched the node has it.
    #[inline]
    pub fn node_hashed(&self, name_lower: &[u8], hash: u64) -> Option<Node<'_>> {
        if let Some(overlay) = &self.overlay {
            if let Some(offset) = overlay.find_filtered(hash, name_lower) {
                let node = Node::at(&overlay.arena, offset);
                return (node.children != TOMBSTONE).then_some(node);
            }
        }
        self.base.find(hash, name_lower).map(|offset| Node::at(&self.base.arena, offset))
    }

    /// Looks up a node by a name in any case.
    pub fn node_any_case(&self, name: &[u8]) -> Option<Node<'_>> {
        let mut buffer = [0u8; MAX_NAME_LEN];
        self.node(lowercase_into(name, &mut buffer))
    }

    /// Every node, in no particular order.
    pub fn nodes(&self) -> impl Iterator<Item = Node<'_>> {
        let mut cursor = NodeCursor::default();
        std::iter::from_fn(move || self.next_node(&mut cursor))
    }

    /// The node after `cursor` in the order of [`Zone::nodes`], moving the
    /// cursor past it: base nodes the overlay does not replace, then the
    /// overlay's live nodes.
    pub fn next_node(&self, cursor: &mut NodeCursor) -> Option<Node<'_>> {
        let overlay = self.overlay.as_deref();
        let mut buffer = [0u8; MAX_NAME_LEN];
        while !cursor.in_overlay {
            let Some(offset) = self.base.index.offset_from(&mut cursor.slot) else {
                *cursor = NodeCursor { in_overlay: true, slot: 0 };
                break;
            };
            let node = Node::at(&self.base.arena, offset);
            let replaced = overlay.is_some_and(|o| {
                o.find_filtered(self.hash_name(lowercase_into(node.name, &mut buffer)), node.name).is_some()
            });
            if !replaced {
                return Some(node);
            }
        }
        let overlay = overlay?;
        loop {
            let node = Node::at(&overlay.arena, overlay.index.offset_from(&mut cursor.slot)?);
            if node.children != TOMBSTONE {
                return Some(node);
            }
        }
    }

    /// Every node in canonical order (RFC 4034 §6.1), apex first.
    pub fn nodes_sorted(&self) -> Vec<Node<'_>> {
        let mut nodes: Vec<Node<'_>> = self.nodes().collect();
        nodes.sort_by(|a, b| name::canonical_cmp(a.name, b.name));
        nodes
    }
}

/// Where a walk over a zone's nodes stands ([`Zone::next_node`]). It borrows
/// nothing, so a zone transfer can keep one between messages.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct NodeCursor {
    in_overlay: bool,
    slot: usize,
}

/// A problem that stops a zone from loading, or a warning about its data.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ZoneError {
    /// The master-file line of the record concerned, when known.
    pub line: Option<usize>,
    pub message: String,
}

impl fmt::Display for ZoneError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.line {
            Some(line) => write!(f, "line {line}: {}", self.message),
            None => f.write_str(&self.message),
        }
    }
}

/// One record waiting in a [`ZoneBuilder`]; its owner and RDATA live in the
/// builder's byte store, so adding a record allocates nothing on its own.
#[derive(Clone, Copy)]
struct Pending {
    owner: u32,
    rdata: u32,
    rdata_len: u16,
    owner_len: u8,
    rtype: RecordType,
    ttl: u32,
    /// Master-file line, or 0 when unknown.
    line: u32,
}

impl Pending {
    fn line(&self) -> Option<usize> {
        (self.line != 0).then_some(self.line as usize)
    }
}

fn owner_of<'d>(data: &'d [u8], record: &Pending) -> &'d [u8] {
    &data[record.owner as usize..record.owner as usize + record.owner_len as usize]
}

fn rdata_of<'d>(data: &'d [u8], record: &Pending) -> &'d [u8] {
    &data[record.rdata as usize..record.rdata as usize + record.rdata_len as usize]
}

/// Orders wire names by their lowercase bytes: not canonical order, just a
/// cheap total order that puts every spelling of one name together.
fn lower_cmp(a: &[u8], b: &[u8]) -> std::cmp::Ordering {
    a.iter().map(u8::to_ascii_lowercase).cmp(b.iter().map(u8::to_ascii_lowercase))
}

/// Collects records, then checks and freezes them into a [`Zone`].
pub struct ZoneBuilder {
    apex: Name,
    records: Vec<Pending>,
    /// Owners and RDATAs of `records`, back to back; an owner repeated by
    /// consecutive records is stored once.
    data: Vec<u8>,
    errors: Vec<ZoneError>,
    warnings: Vec<ZoneError>,
}

/// The facts about one owner that the checks need.
struct Group {
    /// Index of the owner's first record in the sorted list.
    start: usize,
    end: usize,
}

impl ZoneBuilder {
    /// Starts a zone with this apex.
    pub fn new(apex: Name) -> ZoneBuilder {
        ZoneBuilder { apex, records: Vec::new(), data: Vec::new(), errors: Vec::new(), warnings: Vec::new() }
    }

    /// The apex.
    pub fn apex(&self) -> &Name {
        &self.apex
    }

    /// Names the zone after records were added (a master file may name it
    /// only through its SOA record).
    pub fn set_apex(&mut self, apex: Name) {
        self.apex = apex;
    }

    /// Adds one record. Malformed RDATA is refused at once; owners outside the
    /// zone are reported by [`ZoneBuilder::finish`]. A record equal to one
    /// already present is dropped, as an RRset is a set.
    pub fn add(&mut self, owner: Name, rtype: RecordType, ttl: u32, rdata: &[u8], line: Option<usize>) {
        self.add_wire(owner.as_wire(), rtype, ttl, rdata, line);
    }

    /// As [`ZoneBuilder::add`], with the owner as a valid wire name.
    pub fn add_wire(&mut self, owner: &[u8], rtype: RecordType, ttl: u32, rdata: &[u8], line: Option<usize>) {
        let show = || Name::from_wire(owner).map(|n| n.to_string()).unwrap_or_default();
        if let Err(problem) = rules::check_record(rtype, rdata) {
            self.errors.push(ZoneError { line, message: format!("{} {problem}", show()) });
            return;
        }
        if self.data.len() + owner.len() + rdata.len() > u32::MAX as usize {
            self.errors.push(ZoneError { line, message: format!("{} {rtype}: zone data too large", show()) });
            return;
        }
        let owner_at = match self.records.last() {
            Some(last) if owner_of(&self.data, last) == owner => last.owner,
            _ => {
                let at = self.data.len() as u32;
                self.data.extend_from_slice(owner);
                at
            }
        };
        let rdata_at = self.data.len() as u32;
        self.data.extend_from_slice(rdata);
        self.records.push(Pending {
            owner: owner_at,
            rdata: rdata_at,
            rdata_len: rdata.len() as u16,
            owner_len: owner.len() as u8,
            rtype,
            ttl,
            line: line.map_or(0, |l| l.min(u32::MAX as usize) as u32),
        });
    }

    /// Warnings collected so far (data kept, but worth an operator's look).
    pub fn warnings(&self) -> &[ZoneError] {
        &self.warnings
    }

    /// Runs the load-time checks and freezes the zone. On error nothing is built.
    pub fn finish(mut self) -> Result<(Zone, Vec<ZoneError>), Vec<ZoneError>> {
        // Group by owner, then type. Only adjacency matters, so sort by a hash
        // of the lowercase owner and arrival order (plain integers, fast), then
        // settle the rare runs where different names share a hash, and order
        // each owner's records by type. Arrival order breaks ties, so the first
        // spelling of a name wins.
        let data = &self.data;
        let hasher = foldhash::fast::FixedState::with_seed(0);
        let mut buffer = [0u8; MAX_NAME_LEN];
        let mut keys: Vec<(u64, u32)> = self
            .records
            .iter()
            .enumerate()
            .map(|(i, r)| (hasher.hash_one(lowercase_into(owner_of(data, r), &mut buffer)), i as u32))
            .collect();
        keys.sort_unstable();
        let records = &self.records;
        let mut order: Vec<u32> = keys.iter().map(|&(_, i)| i).collect();
        let mut run = 0;
        for i in 1..=keys.len() {
            if i < keys.len() && keys[i].0 == keys[run].0 {
                continue;
            }
            let slice = &mut order[run..i];
            if slice.len() > 1 {
                let first = owner_of(data, &records[slice[0] as usize]);
                let one_name = slice.iter().all(|&k| owner_of(data, &records[k as usize]).eq_ignore_ascii_case(first));
                if one_name {
                    slice.sort_by_key(|&k| (records[k as usize].rtype, k));
                } else {
                    slice.sort_by(|&a, &b| {
                        let (ra, rb) = (&records[a as usize], &records[b as usize]);
                        lower_cmp(owner_of(data, ra), owner_of(data, rb)).then(ra.rtype.cmp(&rb.rtype)).then(a.cmp(&b))
                    });
                }
            }
            run = i;
        }
        drop(keys);
        self.records = order.iter().map(|&i| records[i as usize]).collect();
        drop(order);
        let data = &self.data;
        let mut groups = Vec::new();
        let mut start = 0;
        for i in 1..=self.records.len() {
            if i == self.records.len()
                || !owner_of(data, &self.records[i]).eq_ignore_ascii_case(owner_of(data, &self.records[start]))
            {
                groups.push(Group { start, end: i });
                start = i;
            }
        }
        self.check(&groups);
        if !self.errors.is_empty() {
            self.errors.sort_by_key(|e| e.line);
            return Err(self.errors);
        }
        self.freeze(&groups)
    }

    fn check(&mut self, groups: &[Group]) {
        let apex = self.apex.as_wire();
        let records = &self.records;
        let data = &self.data;
        let mut errors = Vec::new();
        let mut warnings = Vec::new();
        let show = |wire: &[u8]| Name::from_wire(wire).map(|n| n.to_string()).unwrap_or_default();
        let mut cuts: HashSet<Box<[u8]>, foldhash::fast::RandomState> = HashSet::default();
        let mut dnames: HashSet<Box<[u8]>, foldhash::fast::RandomState> = HashSet::default();
        let mut apex_seen = false;
        let mut shapes: Vec<rules::RRsetShape> = Vec::new();
        for group in groups {
            let owner = owner_of(data, &records[group.start]);
            let rrs = &records[group.start..group.end];
            if !name::is_subdomain(owner, apex) {
                for r in rrs {
                    errors.push(ZoneError {
                        line: r.line(),
                        message: format!("{} is outside the zone {}", show(owner), self.apex),
                    });
                }
                continue;
            }
            let at_apex = owner.eq_ignore_ascii_case(apex);
            apex_seen |= at_apex;
            // The node as the rules see it: each type once, with its count
            // of distinct records where the rules care about the count.
            shapes.clear();
            let mut i = 0;
            while i < rrs.len() {
                let rtype = rrs[i].rtype;
                let run = rrs[i..].iter().take_while(|r| r.rtype == rtype).count();
                let records = if run > 1 && rules::is_singleton(rtype) { distinct(data, rrs, rtype) } else { run };
                shapes.push(rules::RRsetShape { rtype, records });
                i += run;
            }
            for violation in rules::check_node(at_apex, &shapes) {
                let line = violation.rtype().and_then(|t| rrs.iter().find(|r| r.rtype == t)).map_or_else(
                    || if matches!(violation, Violation::TooManyTypes(_)) { rrs[0].line() } else { None },
                    Pending::line,
                );
                errors.push(ZoneError { line, message: violation.message(&show(owner)) });
            }
            if !at_apex && shapes.iter().any(|s| s.rtype == RecordType::NS) {
                cuts.insert(owner.to_ascii_lowercase().into());
            }
            if shapes.iter().any(|s| s.rtype == RecordType::DNAME) {
                dnames.insert(owner.to_ascii_lowercase().into());
            }
            for pair in rrs.windows(2) {
                if pair[0].rtype == pair[1].rtype && pair[0].ttl != pair[1].ttl {
                    // RFC 2181 §5.2: one TTL per RRset. Keep the first, and say so.
                    warnings.push(ZoneError {
                        line: pair[1].line(),
                        message: format!(
                            "{} {} TTL {} differs from the RRset's TTL {}; using {}",
                            show(owner),
                            pair[1].rtype,
                            pair[1].ttl,
                            pair[0].ttl,
                            pair[0].ttl
                        ),
                    });
                }
            }
        }
        if !apex_seen {
            errors.push(ZoneError { line: None, message: Violation::NoSoa.message(&self.apex) });
        }
        // Data below a zone cut (other than glue) or below a DNAME is occluded.
        if !cuts.is_empty() || !dnames.is_empty() {
            let mut buffer = [0u8; MAX_NAME_LEN];
            for group in groups {
                let owner = owner_of(data, &records[group.start]);
                let lower = lowercase_into(owner, &mut buffer);
                let mut pos = lower[0] as usize + 1;
                while lower.len() - pos > apex.len() {
                    let ancestor = &lower[pos..];
                    pos += 1 + lower[pos] as usize;
                    if cuts.contains(ancestor) {
                        for r in records[group.start..group.end]
                            .iter()
                            .filter(|r| !matches!(r.rtype, RecordType::A | RecordType::AAAA))
                        {
                            warnings.push(ZoneError {
                                line: r.line(),
                                message: format!(
                                    "{} {} is below the zone cut at {} and is occluded",
                                    show(owner),
                                    r.rtype,
                                    show(ancestor)
                                ),
                            });
                        }
                        break;
                    }
                    if dnames.contains(ancestor) {
                        warnings.push(ZoneError {
                            line: records[group.start].line(),
                            message: format!(
                                "{} is below the DNAME at {} and is occluded",
                                show(owner),
                                show(ancestor)
                            ),
                        });
                        break;
                    }
                }
            }
        }
        self.errors.extend(errors);
        self.warnings.extend(warnings);
    }

    fn freeze(self, groups: &[Group]) -> Result<(Zone, Vec<ZoneError>), Vec<ZoneError>> {
        // Nodes are addressed by 32-bit arena offsets (4 GiB, some 80 million records).
        let too_large = || vec![ZoneError { line: None, message: "zone too large: over 4 GiB of node data".into() }];
        let data = &self.data[..];
        let apex_lower: Box<[u8]> = self.apex.to_lowercase().into_wire();
        let hasher = name_hasher();
        let mut arena: Vec<u8> = Vec::with_capacity(
            self.records.iter().map(|r| r.rdata_len as usize + 4).sum::<usize>() + groups.len() * 32,
        );
        let mut index = NameIndex::with_capacity(groups.len() + groups.len() / 8);
        let mut buffer = [0u8; MAX_NAME_LEN];
        let mut record_count = 0;
        let records = &self.records;
        let mut rdatas: Vec<&[u8]> = Vec::new();
        for group in groups {
            let owner = owner_of(data, &records[group.start]);
            let offset = u32::try_from(arena.len()).ok().filter(|&o| o < u32::MAX).ok_or_else(too_large)?;
            arena.push(owner.len() as u8);
            arena.extend_from_slice(owner);
            arena.extend_from_slice(&[0; 4]);
            let count_at = arena.len();
            arena.push(0);
            let mut i = group.start;
            while i < group.end {
                let rtype = records[i].rtype;
                let mut j = i;
                while j < group.end && records[j].rtype == rtype {
                    j += 1;
                }
                // Canonical RDATA order with duplicates merged, as Knot stores them.
                rdatas.clear();
                rdatas.extend(records[i..j].iter().map(|r| rdata_of(data, r)));
                rdatas.sort_unstable();
                rdatas.dedup();
                record_count += rdatas.len();
                arena.extend_from_slice(&rtype.0.to_be_bytes());
                arena.extend_from_slice(&records[i].ttl.to_be_bytes());
                let len: usize = rdatas.iter().map(|r| r.len() + 2).sum();
                arena.extend_from_slice(&(len as u32).to_be_bytes());
                for rdata in &rdatas {
                    arena.extend_from_slice(&(rdata.len() as u16).to_be_bytes());
                    arena.extend_from_slice(rdata);
                }
                arena[count_at] += 1;
                i = j;
            }
            let hash = hasher.hash_one(lowercase_into(owner, &mut buffer));
            index.insert(hash, offset);
        }
        // Empty non-terminals: every name between an owner and the apex exists.
        for group in groups {
            let owner = owner_of(data, &records[group.start]);
            let mut pos = 0;
            loop {
                pos += 1 + owner[pos] as usize;
                if owner.len() - pos <= apex_lower.len() {
                    break;
                }
                let ancestor = &owner[pos..];
                let lower = lowercase_into(ancestor, &mut buffer);
                let hash = hasher.hash_one(lower);
                if index.find(hash, |o| stored_name(&arena, o).eq_ignore_ascii_case(lower)).is_some() {
                    break;
                }
                let offset = u32::try_from(arena.len()).ok().filter(|&o| o < u32::MAX).ok_or_else(too_large)?;
                arena.push(ancestor.len() as u8);
                arena.extend_from_slice(ancestor);
                arena.extend_from_slice(&[0; 5]);
                index.insert(hash, offset);
            }
        }
        // Each name below the apex counts as a child of its parent.
        let offsets: Vec<u32> = index.offsets().collect();
        for offset in offsets {
            let name = stored_name(&arena, offset);
            if name.len() <= apex_lower.len() {
                continue;
            }
            let parent = lowercase_into(&name[1 + name[0] as usize..], &mut buffer);
            let hash = hasher.hash_one(parent);
            if let Some(at) = index.find(hash, |o| stored_name(&arena, o).eq_ignore_ascii_case(parent)) {
                let field = at as usize + 1 + arena[at as usize] as usize;
                let count = u32::from_le_bytes(arena[field..field + 4].try_into().expect("4 octets"));
                arena[field..field + 4].copy_from_slice(&(count + 1).to_le_bytes());
            }
        }
        // Kept as a Vec: shrinking would copy the whole arena, and capacity
        // past the end is never touched, so it costs no resident memory.
        let apex_offset = index
            .find(hasher.hash_one(&apex_lower[..]), |o| stored_name(&arena, o).eq_ignore_ascii_case(&apex_lower))
            .expect("check() guarantees the apex");
        let soa = Node::at(&arena, apex_offset).rrset(RecordType::SOA).expect("check() guarantees an apex SOA");
        let fixed = &soa.first()[soa.first().len() - 20..];
        let serial = Serial(u32::from_be_bytes(fixed[0..4].try_into().expect("4 octets")));
        let minimum = u32::from_be_bytes(fixed[16..20].try_into().expect("4 octets"));
        let negative_ttl = soa.ttl.min(minimum);
        let apex_dname = Node::at(&arena, apex_offset).rrset(RecordType::DNAME).is_some();
        let node_count = index.len();
        let zone = Zone {
            apex: self.apex,
            apex_lower,
            base: Arc::new(Layer { arena, index, dead: 0, filter: Box::default() }),
            overlay: None,
            hasher,
            apex_offset,
            apex_in_overlay: false,
            apex_dname,
            serial,
            negative_ttl,
            record_count,
            node_count,
            history: Arc::from(Vec::new()),
            expired: AtomicBool::new(false),
            rate_limit: AtomicU64::new(0),
        };
        Ok((zone, self.warnings))
    }
}

/// How many different RDATAs the records of a type carry.
fn distinct(data: &[u8], records: &[Pending], rtype: RecordType) -> usize {
    let mut rdatas: Vec<&[u8]> = records.iter().filter(|r| r.rtype == rtype).map(|r| rdata_of(data, r)).collect();
    rdatas.sort_unstable();
    rdatas.dedup();
    rdatas.len()
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::masterfile::{parse_str, ParseOptions};

    pub(crate) fn build(text: &str) -> Result<Zone, Vec<String>> {
        let options = ParseOptions::default();
        let parsed = parse_str(text.as_bytes(), "t", &options);
        assert!(parsed.errors.is_empty(), "{:?}", parsed.errors);
        let apex = parsed
            .first_origin
            .clone()
            .or_else(|| parsed.records.iter().find(|r| r.rtype == RecordType::SOA).map(|r| r.owner.clone()))
            .unwrap_or_else(Name::root);
        let mut builder = ZoneBuilder::new(apex);
        for r in parsed.records {
            builder.add(r.owner, r.rtype, r.ttl, &r.rdata, Some(r.line));
        }
        builder.finish().map(|(zone, _)| zone).map_err(|errors| errors.iter().map(ToString::to_string).collect())
    }

    const HEAD: &str = "$ORIGIN example.\n$TTL 300\n@ SOA ns h 7 1 1 1 60\n@ NS ns\nns A 192.0.2.1\n";

    #[test]
    fn builds_nodes_and_empty_non_terminals() {
        let zone = build(&format!("{HEAD}a.b.c A 192.0.2.2\nA.B.C A 192.0.2.2\nA.B.C A 192.0.2.3\n")).unwrap();
        assert_eq!(zone.serial(), Serial(7));
        assert_eq!(zone.negative_ttl(), 60);
        assert_eq!(zone.record_count(), 5);
        assert!(zone.node(b"\x01b\x01c\x07example\x00").unwrap().is_empty_non_terminal());
        assert!(zone.node(b"\x01c\x07example\x00").unwrap().is_empty_non_terminal());
        let node = zone.node_any_case(b"\x01A\x01b\x01C\x07EXAMPLE\x00").unwrap();
        assert_eq!(node.rrset(RecordType::A).unwrap().len(), 2);
        assert_eq!(zone.node_count(), 5);
    }

    #[test]
    fn load_checks_refuse_bad_zones() {
        let cases = [
            ("$ORIGIN example.\n$TTL 1\n@ NS ns\n", "no SOA at the apex example."),
            ("$ORIGIN example.\n$TTL 1\n@ SOA ns h 1 1 1 1 1\n", "no NS records at the apex example."),
            (
                &format!("{HEAD}www CNAME a\nwww A 192.0.2.1\n"),
                "line 6: CNAME at www.example. beside other data (A); a CNAME excludes all other data",
            ),
            (&format!("{HEAD}x.other. A 192.0.2.1\n"), "line 6: x.other. is outside the zone example."),
            (&format!("{HEAD}sub SOA ns h 1 1 1 1 1\n"), "line 6: SOA at sub.example., which is not the apex"),
            (
                &format!("{HEAD}{}", (1..=256).map(|t| format!("many TYPE{} \\# 0\n", 1000 + t)).collect::<String>()),
                "line 6: many.example. has 256 RRsets; at most 255 types per name are supported",
            ),
        ];
        for (text, expected) in cases {
            assert_eq!(build(text).unwrap_err(), [expected.to_string()], "{text}");
        }
    }
}
