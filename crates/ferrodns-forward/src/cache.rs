//! The cache of forwarded answers: [`Packed`] answers by question, in
//! shards that each hold a lock, a map and a SIEVE queue.
//!
//! A lookup locks one shard, finds the entry by the question's hash,
//! checks the question itself, and writes the reply while it holds the lock
//! (a copy of one message), so nothing is counted or freed per hit. Time is
//! counted in whole seconds from the cache's start.
//!
//! Eviction is SIEVE (Zhang et al., NSDI 2024): entries sit in one queue in
//! the order they came; a hit only sets the entry's `visited` bit; to make
//! room a hand walks from the oldest end toward the newest, clearing bits
//! as it passes and evicting the first entry without one (or any that has
//! expired beyond the stale window). Hits therefore never move anything,
//! and names asked for once (the bulk of a resolver's misses) leave before
//! names asked for again. The figures behind the choice, against LRU and
//! FIFO on a Zipf load, are in docs/benchmarks.md.

use std::collections::HashMap;
use std::hash::{BuildHasher, Hasher};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Instant;

use ferrodns_proto::Query;

use crate::wire::{Packed, Question, Served};

/// Shards of the cache; each has its own lock.
const SHARDS: usize = 64;
/// What an entry costs beyond its packed answer: the slot, the map's entry
/// and the allocator's header, rounded up.
const ENTRY_OVERHEAD: usize = 64;
/// No slot index.
const NONE: u32 = u32::MAX;

/// The cache's counters, as `GET /v1/cache` shows them.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CacheStats {
    pub entries: usize,
    /// Octets the entries take, as counted against the cap.
    pub memory: usize,
    pub capacity: usize,
    pub hits: u64,
    pub misses: u64,
    pub stale_served: u64,
    pub upstream_failures: u64,
}

/// What a lookup found.
#[derive(Debug, PartialEq, Eq)]
pub enum Lookup {
    /// A fresh answer, written.
    Hit,
    /// Nothing fresh: ask a forwarder.
    Miss,
}

/// The cache; see the module docs.
pub struct Cache {
    shards: Box<[Mutex<Shard>]>,
    hasher: foldhash::fast::RandomState,
    start: Instant,
    /// How long past its lifetime an answer is kept to be served stale
    /// when every forwarder fails (RFC 8767); 0 keeps none.
    stale_window: u32,
    capacity: usize,
    pub(crate) hits: AtomicU64,
    pub(crate) misses: AtomicU64,
    pub(crate) stale_served: AtomicU64,
    pub(crate) upstream_failures: AtomicU64,
}

struct Slot {
    packed: Packed,
    hash: u64,
    /// When it was stored and when it stops being fresh, in cache seconds.
    stored: u32,
    expires: u32,
    visited: bool,
    /// Toward the newer end, and toward the older.
    newer: u32,
    older: u32,
}

#[derive(Default)]
struct Shard {
    map: HashMap<u64, u32, NoHash>,
    slots: Vec<Option<Slot>>,
    free: Vec<u32>,
    newest: u32,
    oldest: u32,
    hand: u32,
    memory: usize,
}

impl Cache {
    /// A cache of at most `capacity` octets that keeps answers up to
    /// `stale_window` seconds past their lifetime.
    pub fn new(capacity: usize, stale_window: u32) -> Cache {
        Cache {
            shards: (0..SHARDS).map(|_| Mutex::new(Shard::new())).collect(),
            hasher: foldhash::fast::RandomState::default(),
            start: Instant::now(),
            stale_window,
            capacity,
            hits: AtomicU64::new(0),
            misses: AtomicU64::new(0),
            stale_served: AtomicU64::new(0),
            upstream_failures: AtomicU64::new(0),
        }
    }

    /// Seconds since the cache started: its clock.
    pub fn now(&self) -> u32 {
        self.start.elapsed().as_secs() as u32
    }

    fn hash(&self, question: &Question<'_>) -> u64 {
        let mut hasher = self.hasher.build_hasher();
        hasher.write(question.name_lower);
        hasher.write_u16(question.qtype.0);
        hasher.write_u16(question.qclass.0);
        hasher.write_u8(question.key_flags());
        hasher.finish()
    }

    fn shard(&self, hash: u64) -> std::sync::MutexGuard<'_, Shard> {
        // The map uses the low bits; the shard, the high ones.
        self.shards[(hash >> 58) as usize % SHARDS].lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Answers `query` from the cache when a fresh answer is there, writing
    /// the reply into `out` within `limit` octets.
    pub fn answer(&self, query: &Query, now: u32, limit: usize, out: &mut Vec<u8>) -> Lookup {
        let lookup = self.answer_again(query, now, limit, out);
        let counter = if lookup == Lookup::Hit { &self.hits } else { &self.misses };
        counter.fetch_add(1, Ordering::Relaxed);
        lookup
    }

    /// As [`Cache::answer`], counting nothing: a second look for a query
    /// whose miss was counted already (a UDP worker's), since the answer
    /// may have arrived meanwhile.
    pub fn answer_again(&self, query: &Query, now: u32, limit: usize, out: &mut Vec<u8>) -> Lookup {
        let question = Question::of(query);
        let hash = self.hash(&question);
        let mut shard = self.shard(hash);
        match shard.find(hash, &question) {
            Some(slot) if now < slot.expires => {
                slot.visited = true;
                slot.packed.write_reply(query, now.saturating_sub(slot.stored), Served::Fresh, limit, out);
                Lookup::Hit
            }
            _ => Lookup::Miss,
        }
    }

    /// Writes a stale answer to `query` (every TTL [`crate::wire::STALE_TTL`])
    /// when one is kept within the stale window; false when none is.
    pub fn answer_stale(&self, query: &Query, now: u32, limit: usize, out: &mut Vec<u8>) -> bool {
        let question = Question::of(query);
        let hash = self.hash(&question);
        let mut shard = self.shard(hash);
        match shard.find(hash, &question) {
            Some(slot) if now < slot.expires.saturating_add(self.stale_window) => {
                slot.packed.write_reply(query, 0, Served::Stale, limit, out);
                drop(shard);
                self.stale_served.fetch_add(1, Ordering::Relaxed);
                true
            }
            _ => false,
        }
    }

    /// A fresh answer to `question`, shared, and its age: for the queries
    /// that waited on a forwarder while another fetched it.
    pub fn fresh(&self, question: &Question<'_>, now: u32) -> Option<(Packed, u32)> {
        let hash = self.hash(question);
        let mut shard = self.shard(hash);
        let slot = shard.find(hash, question)?;
        (now < slot.expires).then(|| (slot.packed.clone(), now.saturating_sub(slot.stored)))
    }

    /// Keeps `packed`, the answer to `question` received at `now`, unless
    /// its lifetime is 0 or it alone would take more than a shard holds.
    pub fn insert(&self, question: &Question<'_>, packed: Packed, now: u32) {
        let lifetime = packed.lifetime();
        let cost = packed.size() + ENTRY_OVERHEAD;
        let shard_capacity = self.capacity / SHARDS;
        if lifetime == 0 || cost > shard_capacity {
            return;
        }
        let hash = self.hash(question);
        let mut shard = self.shard(hash);
        shard.remove(hash);
        while shard.memory + cost > shard_capacity && shard.evict(now, self.stale_window) {}
        let expires = now.saturating_add(lifetime);
        shard.push(Slot { packed, hash, stored: now, expires, visited: false, newer: NONE, older: NONE }, cost);
    }

    /// Drops every answer for `name` (lowercase wire) and the names below
    /// it, or every answer when `name` is None; returns how many.
    pub fn flush(&self, name: Option<&[u8]>) -> usize {
        let mut flushed = 0;
        for shard in self.shards.iter() {
            let mut shard = shard.lock().unwrap_or_else(|e| e.into_inner());
            let doomed: Vec<u64> = shard
                .slots
                .iter()
                .flatten()
                .filter(|slot| name.is_none_or(|name| slot.packed.owner_is_at_or_below(name)))
                .map(|slot| slot.hash)
                .collect();
            for hash in doomed {
                shard.remove(hash);
                flushed += 1;
            }
        }
        flushed
    }

    pub fn stats(&self) -> CacheStats {
        let (mut entries, mut memory) = (0, 0);
        for shard in self.shards.iter() {
            let shard = shard.lock().unwrap_or_else(|e| e.into_inner());
            entries += shard.map.len();
            memory += shard.memory;
        }
        CacheStats {
            entries,
            memory,
            capacity: self.capacity,
            hits: self.hits.load(Ordering::Relaxed),
            misses: self.misses.load(Ordering::Relaxed),
            stale_served: self.stale_served.load(Ordering::Relaxed),
            upstream_failures: self.upstream_failures.load(Ordering::Relaxed),
        }
    }
}

impl Shard {
    fn new() -> Shard {
        Shard { newest: NONE, oldest: NONE, hand: NONE, ..Shard::default() }
    }

    fn find(&mut self, hash: u64, question: &Question<'_>) -> Option<&mut Slot> {
        let index = *self.map.get(&hash)?;
        self.slots[index as usize].as_mut().filter(|slot| slot.packed.is_for(question))
    }

    fn slot(&mut self, index: u32) -> &mut Slot {
        self.slots[index as usize].as_mut().expect("a linked slot is filled")
    }

    /// Adds a slot at the newest end.
    fn push(&mut self, mut slot: Slot, cost: usize) {
        slot.older = self.newest;
        let hash = slot.hash;
        let index = match self.free.pop() {
            Some(index) => {
                self.slots[index as usize] = Some(slot);
                index
            }
            None => {
                self.slots.push(Some(slot));
                (self.slots.len() - 1) as u32
            }
        };
        if self.newest != NONE {
            let newest = self.newest;
            self.slot(newest).newer = index;
        }
        self.newest = index;
        if self.oldest == NONE {
            self.oldest = index;
        }
        self.map.insert(hash, index);
        self.memory += cost;
    }

    /// Removes the entry with this hash, if any.
    fn remove(&mut self, hash: u64) {
        if let Some(index) = self.map.get(&hash).copied() {
            self.unlink(index);
        }
    }

    fn unlink(&mut self, index: u32) {
        let slot = self.slots[index as usize].take().expect("a linked slot is filled");
        if slot.newer != NONE {
            self.slot(slot.newer).older = slot.older;
        } else {
            self.newest = slot.older;
        }
        if slot.older != NONE {
            self.slot(slot.older).newer = slot.newer;
        } else {
            self.oldest = slot.newer;
        }
        if self.hand == index {
            self.hand = slot.newer;
        }
        self.map.remove(&slot.hash);
        self.memory -= slot.packed.size() + ENTRY_OVERHEAD;
        self.free.push(index);
        if self.map.is_empty() {
            // Nothing left: give the slot table back too.
            self.slots = Vec::new();
            self.free = Vec::new();
        }
    }

    /// Evicts one entry (SIEVE); false when there is none.
    fn evict(&mut self, now: u32, stale_window: u32) -> bool {
        if self.oldest == NONE {
            return false;
        }
        let mut index = if self.hand == NONE { self.oldest } else { self.hand };
        loop {
            let slot = self.slot(index);
            let dead = now >= slot.expires.saturating_add(stale_window);
            if !slot.visited || dead {
                self.hand = slot.newer;
                self.unlink(index);
                return true;
            }
            slot.visited = false;
            index = if slot.newer == NONE { self.oldest } else { slot.newer };
        }
    }
}

/// The map's keys are hashes already.
#[derive(Clone, Copy, Default)]
struct NoHash;

impl BuildHasher for NoHash {
    type Hasher = PassThrough;
    fn build_hasher(&self) -> PassThrough {
        PassThrough(0)
    }
}

struct PassThrough(u64);

impl Hasher for PassThrough {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = self.0.rotate_left(8) ^ b as u64;
        }
    }
    fn write_u64(&mut self, value: u64) {
        self.0 = value;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::{read_reply, Reply, TtlLimits};
    use ferrodns_proto::{parse_query, Name, RecordType};

    fn query(name: &str) -> Query {
        let mut out = vec![0x12, 0x34, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0];
        out.extend_from_slice(Name::parse(name, None).unwrap().as_wire());
        out.extend_from_slice(&[0, 1, 0, 1]);
        parse_query(&out).unwrap()
    }

    /// The answer a forwarder would give to `q`: one A record with this TTL.
    fn answer(q: &Query, ttl: u32) -> Packed {
        let mut reply = vec![0, 9, 0x81, 0x80, 0, 1, 0, 1, 0, 0, 0, 0];
        reply.extend_from_slice(q.qname_lower());
        reply.extend_from_slice(&[0, 1, 0, 1, 0xc0, 12, 0, 1, 0, 1]);
        reply.extend_from_slice(&ttl.to_be_bytes());
        reply.extend_from_slice(&[0, 4, 192, 0, 2, 1]);
        match read_reply(&reply, &Question::of(q), |_| true, TtlLimits::default()).unwrap() {
            Reply::Answer(packed, _) => packed,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn answers_are_fresh_for_their_lifetime_then_stale_then_gone() {
        let cache = Cache::new(1 << 20, 100);
        let q = query("www.corp.example.");
        let mut out = Vec::new();
        assert_eq!(cache.answer(&q, 0, 512, &mut out), Lookup::Miss);
        cache.insert(&Question::of(&q), answer(&q, 60), 10);
        assert_eq!(cache.answer(&q, 30, 512, &mut out), Lookup::Hit);
        assert_eq!(&out[out.len() - 10..out.len() - 6], &40u32.to_be_bytes(), "60 s less 20 s");
        assert_eq!(cache.answer(&q, 70, 512, &mut out), Lookup::Miss, "expired at 70");
        assert!(cache.answer_stale(&q, 169, 512, &mut out));
        assert!(!cache.answer_stale(&q, 170, 512, &mut out), "past the stale window");
        let stats = cache.stats();
        assert_eq!((stats.entries, stats.hits, stats.misses, stats.stale_served), (1, 1, 2, 1));
    }

    #[test]
    fn the_memory_cap_holds_and_entries_asked_for_again_stay() {
        // Room for about sixteen entries a shard: the fifty names asked for
        // again land at most a few to a shard, the scan about three a
        // shard a round.
        let cache = Cache::new(SHARDS * 16 * (ENTRY_OVERHEAD + 80), 0);
        let popular: Vec<Query> = (0..50).map(|i| query(&format!("p{i}.corp.example."))).collect();
        for q in &popular {
            cache.insert(&Question::of(q), answer(q, 300), 0);
        }
        let mut out = Vec::new();
        let mut missed = 0;
        for round in 0..20 {
            for q in &popular {
                if cache.answer(q, 1, 512, &mut out) == Lookup::Miss {
                    missed += 1;
                    cache.insert(&Question::of(q), answer(q, 300), 1);
                }
            }
            // A scan of names asked for once.
            for i in 0..200 {
                let q = query(&format!("once{round}-{i}.corp.example."));
                cache.insert(&Question::of(&q), answer(&q, 300), 1);
            }
            assert!(cache.stats().memory <= cache.stats().capacity);
        }
        let kept = popular.iter().filter(|q| cache.fresh(&Question::of(q), 1).is_some()).count();
        assert!(kept >= 48, "SIEVE keeps what is asked for again through a scan: {kept} of 50");
        // First-in-first-out would have lost every one of them to the
        // scans (4,000 names through 1,024 places) and missed each about
        // every fifth round.
        assert!(missed <= 20, "{missed} misses of the fifty over twenty rounds");
    }

    #[test]
    fn a_flush_takes_a_name_and_what_is_below_it() {
        let cache = Cache::new(1 << 20, 0);
        for name in ["corp.example.", "www.corp.example.", "a.b.corp.example.", "corp2.example.", "example."] {
            let q = query(name);
            cache.insert(&Question::of(&q), answer(&q, 300), 0);
        }
        let corp = Name::parse("corp.example.", None).unwrap();
        assert_eq!(cache.flush(Some(corp.as_wire())), 3);
        assert_eq!(cache.stats().entries, 2);
        assert_eq!(cache.flush(None), 2);
        assert_eq!(cache.stats().memory, 0);
        let q = query("x.example.");
        assert!(cache.fresh(&Question::of(&q), 0).is_none());
        let _ = RecordType::A;
    }

    /// The figures behind SIEVE (docs/benchmarks.md): this cache and a
    /// least-recently-used one of the same number of entries, on a stream
    /// of names drawn from a Zipf distribution (exponent 0.9, 200,000
    /// names, 2,000,000 queries), the cache holding 1 %, 5 % and 20 % of
    /// the names. Run with `--ignored --nocapture`.
    #[test]
    #[ignore = "prints figures; not a check"]
    fn eviction_hit_ratios() {
        let names = 200_000usize;
        // Cumulative Zipf weights, then draws by binary search.
        let weights: Vec<f64> = (1..=names).map(|rank| 1.0 / (rank as f64).powf(0.9)).collect();
        let total: f64 = weights.iter().sum();
        let mut cumulative = Vec::with_capacity(names);
        let mut sum = 0.0;
        for weight in &weights {
            sum += weight / total;
            cumulative.push(sum);
        }
        let mut state = 0x2545_f491_4f6c_dd1du64;
        let stream: Vec<usize> = (0..2_000_000)
            .map(|_| {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                let draw = (state >> 11) as f64 / (1u64 << 53) as f64;
                cumulative.partition_point(|&c| c < draw).min(names - 1)
            })
            .collect();
        let queries: Vec<Query> = (0..names).map(|i| query(&format!("n{i}.corp.example."))).collect();
        for share in [0.01, 0.05, 0.20] {
            // The same room for both: whole entries in every shard.
            let entries = SHARDS * ((names as f64 * share) as usize / SHARDS + 1);
            let cost = ENTRY_OVERHEAD + answer(&queries[0], 300).size();
            let cache = Cache::new(entries * cost, 0);
            let mut out = Vec::new();
            let mut sieve_hits = 0;
            for &name in &stream {
                let q = &queries[name];
                if cache.answer(q, 1, 512, &mut out) == Lookup::Hit {
                    sieve_hits += 1;
                } else {
                    cache.insert(&Question::of(q), answer(q, 300), 1);
                }
            }
            // LRU by last use: a map of name to stamp and the stamps in order.
            let mut stamp_of: HashMap<usize, u64> = HashMap::new();
            let mut by_stamp = std::collections::BTreeMap::new();
            let mut lru_hits = 0;
            for (now, &name) in stream.iter().enumerate() {
                let now = now as u64;
                if let Some(old) = stamp_of.insert(name, now) {
                    by_stamp.remove(&old);
                    lru_hits += 1;
                } else if stamp_of.len() > entries {
                    let (_, victim) = by_stamp.pop_first().unwrap();
                    stamp_of.remove(&victim);
                }
                by_stamp.insert(now, name);
            }
            let n = stream.len() as f64;
            eprintln!(
                "cache of {:>5.1} % of the names ({entries} entries): SIEVE {:.1} % hits, LRU {:.1} % hits",
                share * 100.0,
                100.0 * sieve_hits as f64 / n,
                100.0 * lru_hits as f64 / n
            );
        }
    }
}
