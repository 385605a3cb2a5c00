//! Zone serial numbers with RFC 1982 sequence-space arithmetic.
//!
//! Serials wrap at 2^32, so `u32` ordering is wrong for them: 1 comes *after*
//! 4294967295. Compare serials only through [`Serial`].

use std::cmp::Ordering;

/// A SOA serial number (RFC 1982, SERIAL_BITS = 32).
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub struct Serial(pub u32);

impl Serial {
    /// RFC 1982 §3.1 addition; `n` must be at most 2^31 - 1.
    pub fn plus(self, n: u32) -> Serial {
        debug_assert!(n <= 0x7fff_ffff);
        Serial(self.0.wrapping_add(n))
    }

    /// RFC 1982 §3.2 comparison. Two serials exactly 2^31 apart are not
    /// comparable, and `None` says so.
    pub fn compare(self, other: Serial) -> Option<Ordering> {
        let (a, b) = (self.0, other.0);
        if a == b {
            Some(Ordering::Equal)
        } else if a.wrapping_sub(b) == 0x8000_0000 {
            None
        } else if (a < b && b - a < 0x8000_0000) || (a > b && a - b > 0x8000_0000) {
            Some(Ordering::Less)
        } else {
            Some(Ordering::Greater)
        }
    }

    /// True when `self` is strictly newer than `other`.
    pub fn is_newer_than(self, other: Serial) -> bool {
        self.compare(other) == Some(Ordering::Greater)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wraps_per_rfc_1982() {
        assert!(Serial(1).is_newer_than(Serial(u32::MAX)));
        assert!(Serial(0).is_newer_than(Serial(u32::MAX)));
        assert!(!Serial(u32::MAX).is_newer_than(Serial(1)));
        assert!(Serial(100).is_newer_than(Serial(99)));
        assert_eq!(Serial(0).compare(Serial(0x8000_0000)), None);
        assert_eq!(Serial(u32::MAX).plus(2), Serial(1));
    }
}
