//! Response rate limiting (RRL) for answers over UDP, with the semantics of
//! BIND's and Knot's: a client network may receive so many responses of one
//! kind about one name each second; past that, responses are dropped, and
//! every `slip`-th one is sent truncated instead (TC set, no records), so a
//! real resolver behind that network retries over TCP, which is never
//! limited, while a reflection attack that forged the network's address gets
//! nothing bigger than its query.
//!
//! A bucket is keyed by:
//! - the client's network: the address cut to `--rrl-ipv4-prefix` (24) or
//!   `--rrl-ipv6-prefix` (56) bits;
//! - the kind of response ([`Kind`]);
//! - a name: the qname for positive answers, ANY and large answers; the
//!   zone's apex for NXDOMAIN, NODATA, referrals and wildcard answers, so
//!   that random names under one zone share one bucket; none for errors.
//!
//! Each bucket holds up to `rate` tokens and gains `rate` a second; a
//! response takes one. Buckets live in one table shared by every UDP worker
//! (so a client that SO_REUSEPORT spreads over several workers still has
//! one budget): a fixed array of 64-bit words, each packing a fingerprint
//! of its key, the second it was last filled and its tokens, updated with
//! one compare-and-swap. Two keys that fall in one slot take it from each
//! other; the one arriving finds a full bucket. The table never grows, so
//! an attacker spraying keys costs memory it was given at start
//! (`--rrl-table-size` slots, 8 octets each) and nothing else.
//!
//! A zone may have a rate and slip of its own ([`ferrodns_zone::RateLimit`],
//! set through the API), which its responses use in place of the server's;
//! a zone's rate of 0 leaves its responses unlimited. When zones may have
//! limits of their own, the table exists even with the server's rate at 0.
//!
//! Exempt from limiting: TCP (the transport does not ask), clients that
//! return a valid DNS cookie ([`crate::cookies`]), and `--rrl-exempt`
//! networks (monitoring, a resolver of one's own).

use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};

use ferrodns_proto::network::canonical;
pub use ferrodns_proto::network::Network;
use ferrodns_zone::RateLimit;

/// Most responses a second a bucket may allow: its tokens have 24 bits.
pub const MAX_RATE: u32 = (1 << 24) - 1;
/// Responses larger than this count as [`Kind::Large`] (Knot's threshold).
const LARGE: usize = 1024;

/// Rate limiting settings; `rate` 0 turns it off.
#[derive(Clone, Debug)]
pub struct RrlSettings {
    /// Responses a second per bucket (at most [`MAX_RATE`]); 0 is off.
    pub rate: u32,
    /// Every `slip`-th limited response goes out truncated; 0 drops all,
    /// 1 truncates all.
    pub slip: u32,
    pub ipv4_prefix: u8,
    pub ipv6_prefix: u8,
    /// Slots in the bucket table, rounded up to a power of two.
    pub table_size: usize,
    /// Networks never limited.
    pub exempt: Vec<Network>,
    /// Zones may have limits of their own (the control plane is on): the
    /// table exists even when `rate` is 0.
    pub zone_limits: bool,
}

impl Default for RrlSettings {
    fn default() -> RrlSettings {
        RrlSettings {
            rate: 0,
            slip: 2,
            ipv4_prefix: 24,
            ipv6_prefix: 56,
            table_size: 1 << 20,
            exempt: Vec::new(),
            zone_limits: false,
        }
    }
}

/// The kinds of response that have buckets of their own.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// An answer with the data asked for.
    Positive,
    /// The name exists without the type asked for.
    NoData,
    NxDomain,
    /// A delegation to another zone's servers.
    Referral,
    /// Synthesized from a wildcard.
    Wildcard,
    /// qtype ANY.
    Any,
    /// Larger than 1,024 octets, the amplifier's favourite.
    Large,
    /// REFUSED, FORMERR, SERVFAIL, NOTIMP and the rest.
    Error,
}

impl Kind {
    /// Classifies a response from its octets (header and size), the qtype
    /// and whether the engine answered from a wildcard.
    pub fn of(response: &[u8], qtype_any: bool, wildcard: bool) -> Kind {
        if response.len() < 12 {
            return Kind::Error;
        }
        let rcode = response[3] & 0x0f;
        let authoritative = response[2] & 0x04 != 0;
        let answers = u16::from_be_bytes([response[6], response[7]]);
        match rcode {
            3 => Kind::NxDomain,
            0 if response.len() > LARGE => Kind::Large,
            0 if qtype_any => Kind::Any,
            0 if wildcard => Kind::Wildcard,
            0 if answers > 0 => Kind::Positive,
            0 if authoritative => Kind::NoData,
            0 => Kind::Referral,
            _ => Kind::Error,
        }
    }

    /// Whether the bucket is keyed by the qname (else by the zone, or by
    /// nothing for errors).
    pub fn by_qname(self) -> bool {
        matches!(self, Kind::Positive | Kind::Any | Kind::Large)
    }
}

/// What to do with a response.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    Send,
    /// Send a truncated response in its place.
    Slip,
    Drop,
}

/// The shared bucket table.
pub struct Limiter {
    /// The server's rate and slip, for responses of zones without their own.
    default: RateLimit,
    ipv4_mask: u32,
    ipv6_mask: u128,
    exempt: Vec<Network>,
    slots: Box<[AtomicU64]>,
    mask: u64,
    /// Key the mixing with secrets of this process, so no one can aim a
    /// flood of keys at one slot.
    seeds: [u64; 2],
    limited: AtomicU64,
    slipped: AtomicU64,
}

const TOKEN_BITS: u32 = 24;
const STAMP_BITS: u32 = 16;
const TOKEN_MASK: u64 = (1 << TOKEN_BITS) - 1;
const STAMP_MASK: u64 = (1 << STAMP_BITS) - 1;

impl Limiter {
    /// A limiter, or None when `settings.rate` is 0 and zones have no
    /// limits of their own.
    pub fn new(settings: &RrlSettings) -> Option<Limiter> {
        if settings.rate == 0 && !settings.zone_limits {
            return None;
        }
        let size = settings.table_size.clamp(1024, 1 << 28).next_power_of_two();
        let mut seed = [0u8; 16];
        // Without the OS's randomness the table still works; it is only
        // easier to aim at.
        let _ = getrandom::fill(&mut seed);
        let seeds = [
            u64::from_le_bytes(seed[..8].try_into().expect("8 octets")) | 1,
            u64::from_le_bytes(seed[8..].try_into().expect("8 octets")),
        ];
        Some(Limiter {
            default: RateLimit { rate: settings.rate.min(MAX_RATE), slip: settings.slip },
            ipv4_mask: u32::MAX.checked_shl(32 - u32::from(settings.ipv4_prefix.min(32))).unwrap_or(0),
            ipv6_mask: u128::MAX.checked_shl(128 - u32::from(settings.ipv6_prefix.min(128))).unwrap_or(0),
            exempt: settings.exempt.clone(),
            slots: (0..size).map(|_| AtomicU64::new(0)).collect(),
            mask: size as u64 - 1,
            seeds,
            limited: AtomicU64::new(0),
            slipped: AtomicU64::new(0),
        })
    }

    /// The server's rate and slip (`--rrl-rate`, `--rrl-slip`).
    #[inline]
    pub fn default_limit(&self) -> RateLimit {
        self.default
    }

    /// Whether any network is exempt (else [`Limiter::exempt`] is false for all).
    pub fn has_exemptions(&self) -> bool {
        !self.exempt.is_empty()
    }

    /// Whether `client` is in an exempt network.
    pub fn exempt(&self, client: IpAddr) -> bool {
        self.exempt.iter().any(|n| n.contains(client))
    }

    /// The bucket key part for an IPv4 client (its address as a number).
    #[inline]
    pub fn network_v4(&self, address: u32) -> u64 {
        u64::from(address & self.ipv4_mask) | 1 << 32
    }

    /// The bucket key part for an IPv6 client (not v4-mapped).
    #[inline]
    pub fn network_v6(&self, address: u128) -> u64 {
        let network = address & self.ipv6_mask;
        (network >> 64) as u64 ^ (network as u64).rotate_left(17)
    }

    /// The bucket key part for any client address.
    pub fn network(&self, client: IpAddr) -> u64 {
        match canonical(client) {
            IpAddr::V4(v4) => self.network_v4(v4.into()),
            IpAddr::V6(v6) => self.network_v6(v6.into()),
        }
    }

    /// Takes a token from `bucket` ([`Limiter::bucket`]) at second `now`,
    /// under `limit` (the zone's, or [`Limiter::default_limit`]; its rate is
    /// not 0); `slip_count` is the caller's own count of limited responses,
    /// for the slip ratio.
    #[inline]
    pub fn check(&self, limit: RateLimit, bucket: u64, now: u32, slip_count: &mut u32) -> Verdict {
        if self.take(bucket, limit.rate.min(MAX_RATE), now) {
            return Verdict::Send;
        }
        self.limited(limit.slip, slip_count)
    }

    /// Starts loading `bucket`, so that the check, made once the answer is
    /// written, finds it in cache: the table is larger than the caches, and
    /// its buckets are touched in no order.
    #[inline]
    pub fn prefetch(&self, bucket: u64) {
        ferrodns_zone::zone::prefetch_address(&self.slots[(bucket & self.mask) as usize]);
    }

    /// The bucket of responses of `kind` about the name whose
    /// [`ferrodns_zone::name_hash`] is `name_hash` (0 for none) to the client
    /// network `network` ([`Limiter::network`]).
    #[inline]
    pub fn bucket(&self, network: u64, kind: Kind, name_hash: u64) -> u64 {
        // One folded multiply of two seeded halves: the name hash is already
        // a seeded hash, so this only has to spread network and kind over it.
        let product =
            u128::from(network ^ self.seeds[0]) * u128::from(name_hash ^ ((kind as u64) << 58) ^ self.seeds[1]);
        (product as u64) ^ (product >> 64) as u64
    }

    #[cold]
    fn limited(&self, slip: u32, slip_count: &mut u32) -> Verdict {
        self.limited.fetch_add(1, Ordering::Relaxed);
        *slip_count = slip_count.wrapping_add(1);
        if slip != 0 && *slip_count % slip == 0 {
            self.slipped.fetch_add(1, Ordering::Relaxed);
            Verdict::Slip
        } else {
            Verdict::Drop
        }
    }

    /// Takes a token from the bucket `key` falls in; false when it is empty.
    #[inline]
    fn take(&self, key: u64, rate: u32, now: u32) -> bool {
        let slot = &self.slots[(key & self.mask) as usize];
        // The fingerprint: the key's top bits, never zero so that an unused
        // slot (all zero) matches no key.
        let fingerprint = (key >> (TOKEN_BITS + STAMP_BITS)) | 1;
        let stamp = u64::from(now) & STAMP_MASK;
        let rate = u64::from(rate);
        let mut old = slot.load(Ordering::Relaxed);
        loop {
            let tokens = if old >> (TOKEN_BITS + STAMP_BITS) != fingerprint {
                rate
            } else {
                let was = (old >> TOKEN_BITS) & STAMP_MASK;
                let elapsed = stamp.wrapping_sub(was) & STAMP_MASK;
                (old & TOKEN_MASK).saturating_add(rate.saturating_mul(elapsed)).min(rate)
            };
            if tokens == 0 {
                return false;
            }
            let new = (fingerprint << (TOKEN_BITS + STAMP_BITS)) | (stamp << TOKEN_BITS) | (tokens - 1);
            match slot.compare_exchange_weak(old, new, Ordering::Relaxed, Ordering::Relaxed) {
                Ok(_) => return true,
                Err(now_there) => old = now_there,
            }
        }
    }

    /// Responses limited so far, and how many of those went out truncated.
    pub fn counts(&self) -> (u64, u64) {
        (self.limited.load(Ordering::Relaxed), self.slipped.load(Ordering::Relaxed))
    }
}

/// Rewrites `response` as the slip answer: the header with TC set and the
/// first `question_end` octets (header and question), no records, and an
/// OPT record (payload 1,232, `edns` the DO bit) when the query had EDNS, so
/// the client still learns our size. False when the response is shorter
/// than that.
pub fn slip(response: &mut Vec<u8>, question_end: usize, edns: Option<bool>) -> bool {
    if response.len() < question_end || question_end < 12 {
        return false;
    }
    response.truncate(question_end);
    response[2] |= 0x02;
    response[6..12].fill(0);
    if let Some(dnssec_ok) = edns {
        let do_bit = if dnssec_ok { 0x80 } else { 0 };
        response.extend_from_slice(&[0, 0, 41, 0x04, 0xd0, 0, 0, do_bit, 0, 0, 0]);
        response[10..12].copy_from_slice(&1u16.to_be_bytes());
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;
    use ferrodns_zone::name_hash;

    fn limiter(rate: u32, slip: u32) -> Limiter {
        Limiter::new(&RrlSettings { rate, slip, ..RrlSettings::default() }).unwrap()
    }

    #[test]
    fn a_bucket_allows_its_rate_each_second() {
        let rrl = limiter(5, 0);
        let client: IpAddr = "192.0.2.1".parse().unwrap();
        let mut slips = 0;
        let (network, name) = (rrl.network(client), name_hash(b"\x01a\x00"));
        let sent = (0..20).filter(|_| {
            rrl.check(rrl.default_limit(), rrl.bucket(network, Kind::Positive, name), 100, &mut slips) == Verdict::Send
        });
        assert_eq!(sent.count(), 5);
        // A second later the bucket is full again, and never fuller.
        let sent = (0..20).filter(|_| {
            rrl.check(rrl.default_limit(), rrl.bucket(network, Kind::Positive, name), 101, &mut slips) == Verdict::Send
        });
        assert_eq!(sent.count(), 5);
        let sent = (0..20).filter(|_| {
            rrl.check(rrl.default_limit(), rrl.bucket(network, Kind::Positive, name), 200, &mut slips) == Verdict::Send
        });
        assert_eq!(sent.count(), 5);
        assert_eq!(rrl.counts(), (45, 0));
    }

    #[test]
    fn buckets_are_per_network_kind_and_name() {
        let rrl = limiter(1, 0);
        let mut slips = 0;
        let mut check = |client: &str, kind, name: &[u8]| {
            rrl.check(
                rrl.default_limit(),
                rrl.bucket(rrl.network(client.parse().unwrap()), kind, name_hash(name)),
                7,
                &mut slips,
            )
        };
        assert_eq!(check("192.0.2.1", Kind::Positive, b"\x01a\x00"), Verdict::Send);
        // The same /24: the same bucket.
        assert_eq!(check("192.0.2.200", Kind::Positive, b"\x01a\x00"), Verdict::Drop);
        assert_eq!(check("::ffff:192.0.2.9", Kind::Positive, b"\x01a\x00"), Verdict::Drop);
        assert_eq!(check("192.0.3.1", Kind::Positive, b"\x01a\x00"), Verdict::Send);
        assert_eq!(check("192.0.2.1", Kind::Positive, b"\x01b\x00"), Verdict::Send);
        assert_eq!(check("192.0.2.1", Kind::NxDomain, b"\x01a\x00"), Verdict::Send);
        assert_eq!(check("2001:db8:0:ff::1", Kind::Positive, b"\x01a\x00"), Verdict::Send);
        // Same /56.
        assert_eq!(check("2001:db8:0:1::2", Kind::Positive, b"\x01a\x00"), Verdict::Drop);
    }

    #[test]
    fn every_slip_th_limited_response_is_truncated() {
        let rrl = limiter(1, 3);
        let client: IpAddr = "198.51.100.7".parse().unwrap();
        let mut slips = 0;
        let verdicts: Vec<Verdict> = (0..7)
            .map(|_| rrl.check(rrl.default_limit(), rrl.bucket(rrl.network(client), Kind::Error, 0), 1, &mut slips))
            .collect();
        use Verdict::*;
        assert_eq!(verdicts, [Send, Drop, Drop, Slip, Drop, Drop, Slip]);
        assert_eq!(rrl.counts(), (6, 2));
    }

    #[test]
    fn kinds_come_from_the_header() {
        let mut response = vec![0u8; 40];
        response[3] = 3;
        assert_eq!(Kind::of(&response, false, false), Kind::NxDomain);
        response[3] = 5;
        assert_eq!(Kind::of(&response, false, false), Kind::Error);
        response[3] = 0;
        assert_eq!(Kind::of(&response, false, false), Kind::Referral);
        response[2] = 0x84;
        assert_eq!(Kind::of(&response, false, false), Kind::NoData);
        response[7] = 1;
        assert_eq!(Kind::of(&response, false, false), Kind::Positive);
        assert_eq!(Kind::of(&response, false, true), Kind::Wildcard);
        assert_eq!(Kind::of(&response, true, false), Kind::Any);
        response.resize(1100, 0);
        assert_eq!(Kind::of(&response, false, false), Kind::Large);
        assert_eq!(Kind::of(&response[..5], false, false), Kind::Error);
    }

    #[test]
    fn a_slip_keeps_the_question_and_opt() {
        let mut response = vec![0x12, 0x34, 0x84, 0x00, 0, 1, 0, 2, 0, 1, 0, 1];
        response.extend_from_slice(b"\x01a\x00\x00\x01\x00\x01");
        let question_end = response.len();
        response.extend_from_slice(&[0xc0; 40]);
        assert!(slip(&mut response, question_end, Some(true)));
        assert_eq!(&response[..12], &[0x12, 0x34, 0x86, 0x00, 0, 1, 0, 0, 0, 0, 0, 1]);
        assert_eq!(&response[question_end..], &[0, 0, 41, 0x04, 0xd0, 0, 0, 0x80, 0, 0, 0]);
        assert!(!slip(&mut response, 200, None));
    }
}
