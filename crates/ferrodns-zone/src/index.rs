//! The name index: open addressing with linear probing over 64-bit slots, each
//! a 32-bit hash tag and a 32-bit arena offset. One probe reads one slot, and
//! the slot for a name can be prefetched from its hash alone, which the UDP
//! path does for a whole batch before answering it.

/// Maps name hashes to arena offsets. Names are compared by the caller.
#[derive(Clone)]
pub struct NameIndex {
    /// `tag << 32 | (offset + 1)`; zero marks an empty slot.
    slots: Vec<u64>,
    mask: usize,
    len: usize,
}

fn tag_of(hash: u64) -> u32 {
    (hash >> 32) as u32
}

impl NameIndex {
    /// An index sized for `entries` names. The load stays at most three
    /// quarters: with 8-byte slots a probe run of that length still fits in
    /// one or two cache lines, and the index costs 11 to 21 bytes a name.
    pub fn with_capacity(entries: usize) -> NameIndex {
        let slots = (entries.max(3) * 4 / 3 + 1).next_power_of_two();
        NameIndex { slots: vec![0; slots], mask: slots - 1, len: 0 }
    }

    /// How many names.
    pub fn len(&self) -> usize {
        self.len
    }

    /// True when empty.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Bytes held by the slots.
    pub fn memory_bytes(&self) -> usize {
        self.slots.len() * std::mem::size_of::<u64>()
    }

    /// The offset of the first entry with this hash for which `matches` holds.
    #[inline]
    pub fn find(&self, hash: u64, matches: impl FnMut(u32) -> bool) -> Option<u32> {
        self.slot_of(hash, matches).map(|i| (self.slots[i] as u32).wrapping_sub(1))
    }

    /// The slot of the first entry with this hash for which `matches` holds.
    #[inline]
    fn slot_of(&self, hash: u64, mut matches: impl FnMut(u32) -> bool) -> Option<usize> {
        let tag = tag_of(hash);
        let mut i = tag as usize & self.mask;
        loop {
            let slot = self.slots[i];
            if slot == 0 {
                return None;
            }
            if (slot >> 32) as u32 == tag && matches((slot as u32).wrapping_sub(1)) {
                return Some(i);
            }
            i = (i + 1) & self.mask;
        }
    }

    /// Points the entry with this hash for which `matches` holds at `offset`
    /// instead; false when there is no such entry.
    pub fn replace(&mut self, hash: u64, matches: impl FnMut(u32) -> bool, offset: u32) -> bool {
        let Some(i) = self.slot_of(hash, matches) else { return false };
        self.slots[i] = (tag_of(hash) as u64) << 32 | (offset as u64 + 1);
        true
    }

    /// Where the slots start, for prefetching ([`crate::zone::ZoneAddresses`]).
    pub(crate) fn slots_address(&self) -> usize {
        self.slots.as_ptr() as usize
    }

    /// The mask that turns a hash's tag into a slot number.
    pub(crate) fn slot_mask(&self) -> usize {
        self.mask
    }

    /// Asks the CPU to start loading the slot for `hash`.
    #[inline]
    pub fn prefetch(&self, hash: u64) {
        let i = tag_of(hash) as usize & self.mask;
        #[cfg(target_arch = "x86_64")]
        // SAFETY: `i` is within `slots`; a prefetch never faults or changes memory.
        unsafe {
            use std::arch::x86_64::{_mm_prefetch, _MM_HINT_T0};
            _mm_prefetch::<_MM_HINT_T0>(self.slots.as_ptr().add(i).cast());
        }
        #[cfg(not(target_arch = "x86_64"))]
        let _ = i;
    }

    /// The offset in the first slot probed for `hash` whose tag matches, if
    /// any: a guess at where the name's node is, for prefetching it.
    #[inline]
    pub fn first_candidate(&self, hash: u64) -> Option<u32> {
        let tag = tag_of(hash);
        let slot = self.slots[tag as usize & self.mask];
        (slot != 0 && (slot >> 32) as u32 == tag).then(|| (slot as u32).wrapping_sub(1))
    }

    /// Adds an entry; the caller has checked that the name is not present.
    /// Offsets must be below `u32::MAX`.
    pub fn insert(&mut self, hash: u64, offset: u32) {
        if (self.len + 1) * 4 > self.slots.len() * 3 {
            self.grow();
        }
        self.place(tag_of(hash), offset);
        self.len += 1;
    }

    fn place(&mut self, tag: u32, offset: u32) {
        let mut i = tag as usize & self.mask;
        while self.slots[i] != 0 {
            i = (i + 1) & self.mask;
        }
        self.slots[i] = (tag as u64) << 32 | (offset as u64 + 1);
    }

    fn grow(&mut self) {
        let doubled = vec![0; self.slots.len() * 2];
        let old = std::mem::replace(&mut self.slots, doubled);
        self.mask = self.slots.len() - 1;
        for slot in old.into_iter().filter(|&s| s != 0) {
            self.place((slot >> 32) as u32, (slot as u32).wrapping_sub(1));
        }
    }

    /// Takes out the entry with this hash for which `matches` holds; false
    /// when there is none. The entries after it in its probe run move back
    /// into the gap where their own probe allows (backward-shift deletion),
    /// so no marker is left for lookups to step over.
    pub fn remove(&mut self, hash: u64, matches: impl FnMut(u32) -> bool) -> bool {
        let Some(mut hole) = self.slot_of(hash, matches) else { return false };
        let mut i = hole;
        loop {
            i = (i + 1) & self.mask;
            let slot = self.slots[i];
            if slot == 0 {
                break;
            }
            // The entry at `i` may fill the hole when its home slot is not
            // between the hole and `i`: its probe passes the hole first.
            let home = (slot >> 32) as usize & self.mask;
            if i.wrapping_sub(home) & self.mask >= i.wrapping_sub(hole) & self.mask {
                self.slots[hole] = slot;
                hole = i;
            }
        }
        self.slots[hole] = 0;
        self.len -= 1;
        true
    }

    /// Every offset, in slot order.
    pub fn offsets(&self) -> impl Iterator<Item = u32> + '_ {
        let mut slot = 0;
        std::iter::from_fn(move || self.offset_from(&mut slot))
    }

    /// The first offset at or after slot `*slot`, in slot order; moves
    /// `*slot` past it. A walk kept as a slot number borrows nothing, so it
    /// can be resumed later.
    pub fn offset_from(&self, slot: &mut usize) -> Option<u32> {
        self.entry_from(slot).map(|(_, offset)| offset)
    }

    /// As [`NameIndex::offset_from`], with a hash that stands for the
    /// entry's name wherever this index takes one: the index keeps only the
    /// hash's upper half, which is all it ever reads of a hash. Copying
    /// entries to another index with it spares hashing their names again.
    pub fn entry_from(&self, slot: &mut usize) -> Option<(u64, u32)> {
        while let Some(&entry) = self.slots.get(*slot) {
            *slot += 1;
            if entry != 0 {
                return Some((entry & !0xffff_ffff, (entry as u32).wrapping_sub(1)));
            }
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_what_it_holds_through_collisions_and_growth() {
        let mut index = NameIndex::with_capacity(2);
        // Same tag for all: every lookup walks the probe chain and asks the caller.
        for offset in 0..100u32 {
            index.insert(7 << 32, offset * 10);
        }
        assert_eq!(index.len(), 100);
        for offset in 0..100u32 {
            assert_eq!(index.find(7 << 32, |o| o == offset * 10), Some(offset * 10));
        }
        assert_eq!(index.find(7 << 32, |o| o == 5), None);
        assert_eq!(index.find(8 << 32, |_| true), None);
        let mut all: Vec<u32> = index.offsets().collect();
        all.sort_unstable();
        assert_eq!(all, (0..100).map(|o| o * 10).collect::<Vec<_>>());
    }

    /// Entries taken out are gone and every other one is still found,
    /// whatever the probe runs looked like: tags crowd a few home slots
    /// and runs wrap past the end of the table.
    #[test]
    fn removal_keeps_every_other_entry_findable() {
        let mut seed: u64 = 0x2545_f491_4f6c_dd1d;
        let mut next = |n: u64| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed % n
        };
        let mut index = NameIndex::with_capacity(64);
        let mut held: Vec<(u64, u32)> = Vec::new();
        for round in 0..4000u32 {
            if held.is_empty() || next(3) > 0 && index.len() < 60 {
                // Tags near the top of the table's range, so runs wrap.
                let tag = if next(2) == 0 { next(4) } else { u64::from(u32::MAX) - next(6) };
                index.insert(tag << 32, round);
                held.push((tag << 32, round));
            } else {
                let (hash, offset) = held.swap_remove(next(held.len() as u64) as usize);
                assert!(index.remove(hash, |o| o == offset));
                assert!(!index.remove(hash, |o| o == offset), "removed twice");
            }
            assert_eq!(index.len(), held.len());
            for &(hash, offset) in &held {
                assert_eq!(index.find(hash, |o| o == offset), Some(offset), "round {round}");
            }
        }
        let mut slot = 0;
        let mut walked = Vec::new();
        while let Some(entry) = index.entry_from(&mut slot) {
            walked.push(entry);
        }
        walked.sort_unstable();
        held.sort_unstable();
        assert_eq!(walked, held);
    }
}
