//! UDP generic segmentation offload (GSO, `UDP_SEGMENT`) for a batch of
//! replies: the replies to one client socket leave in one send as one large
//! buffer that the kernel (or the network card) cuts into datagrams of a
//! given size, the last of which may be shorter.
//!
//! The kernel then routes, builds and passes down the stack one packet where
//! it would have handled several, which is most of its cost per reply. It
//! pays off when a client socket has several queries in one batch: front ends
//! such as dnsdist, forwarders that keep a few sockets open, load generators.
//! Replies to a resolver that picks a new source port per query rarely share
//! a message, and then the cost is one sort of the batch.
//!
//! This module only plans: which replies go together. The worker turns each
//! [`Message`] into one `mmsghdr` with one iovec per reply and, when it holds
//! more than one reply, a `UDP_SEGMENT` control message.

/// Largest payload of one GSO send: what one IPv4 datagram can carry (65,507
/// octets), less room to spare.
pub const MAX_GSO_BYTES: usize = 65_000;

/// Most datagrams in one GSO send (the kernel's `UDP_MAX_SEGMENTS` is 64 on
/// older kernels, 128 on newer ones).
pub const MAX_SEGMENTS: usize = 64;

/// One message of a planned send: the replies `keys[start..end]` of
/// [`plan`], all to one peer; every reply but the last is `segment` octets long and the last is no
/// longer. A message of one reply is sent as a plain datagram.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Message {
    pub start: usize,
    pub end: usize,
    pub segment: usize,
}

impl Message {
    /// How many replies.
    pub fn len(&self) -> usize {
        self.end - self.start
    }
}

/// A reply to plan: a 64-bit key of its peer (equal for the very same address
/// and port; different keys must mean different peers), its length, and its
/// index in the batch, packed so that sorting the numbers sorts by peer and
/// then longest first.
pub fn sort_key(peer: u64, length: usize, index: usize) -> u128 {
    debug_assert!(length <= u16::MAX as usize && index <= u16::MAX as usize);
    (peer as u128) << 64 | ((u16::MAX as usize - length) as u128) << 16 | index as u128
}

fn peer_of(key: u128) -> u64 {
    (key >> 64) as u64
}

fn length_of(key: u128) -> usize {
    u16::MAX as usize - ((key >> 16) & 0xffff) as usize
}

/// The batch index of a reply from its [`sort_key`].
pub fn index_of(key: u128) -> usize {
    (key & 0xffff) as usize
}

/// Sorts `keys` (one [`sort_key`] per reply) and cuts them into messages.
/// `same_peer` is asked about two batch indices whose peer keys are equal, in
/// case equal keys are not proof (a hash of an IPv6 address). Returns how
/// many messages it wrote into `messages`, which must have room for one per
/// reply; each message's replies are `keys[start..end]`.
pub fn plan(keys: &mut [u128], same_peer: impl Fn(usize, usize) -> bool, messages: &mut [Message]) -> usize {
    keys.sort_unstable();
    let mut count = 0;
    let mut start = 0;
    while start < keys.len() {
        let first = keys[start];
        let segment = length_of(first);
        let mut end = start + 1;
        let mut bytes = segment;
        while end < keys.len() && end - start < MAX_SEGMENTS {
            let next = keys[end];
            let size = length_of(next);
            if peer_of(next) != peer_of(first)
                || bytes + size > MAX_GSO_BYTES
                || !same_peer(index_of(first), index_of(next))
            {
                break;
            }
            bytes += size;
            end += 1;
            // Sorted longest first: a shorter reply can only close the message.
            if size < segment {
                break;
            }
        }
        messages[count] = Message { start, end, segment };
        count += 1;
        start = end;
    }
    count
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Plans replies given as (peer, length) and shows each message as its
    /// replies' (peer, length) pairs.
    fn planned(replies: &[(u8, usize)]) -> Vec<Vec<(u8, usize)>> {
        let mut keys: Vec<u128> =
            replies.iter().enumerate().map(|(i, &(peer, len))| sort_key(peer as u64, len, i)).collect();
        let mut messages = vec![Message { start: 0, end: 0, segment: 0 }; replies.len()];
        let count = plan(&mut keys, |a, b| replies[a].0 == replies[b].0, &mut messages);
        messages[..count]
            .iter()
            .map(|m| {
                let shown: Vec<(u8, usize)> = keys[m.start..m.end].iter().map(|&k| replies[index_of(k)]).collect();
                assert!(shown.iter().all(|&(peer, _)| peer == shown[0].0), "one peer per message");
                assert_eq!(m.segment, shown[0].1);
                shown
            })
            .collect()
    }

    #[test]
    fn groups_equal_sizes_per_peer_with_one_shorter_last() {
        let replies = [(1, 60), (2, 60), (1, 60), (1, 45), (2, 80), (1, 60), (1, 40), (3, 60)];
        assert_eq!(
            planned(&replies),
            vec![vec![(1, 60), (1, 60), (1, 60), (1, 45)], vec![(1, 40)], vec![(2, 80), (2, 60)], vec![(3, 60)],]
        );
    }

    #[test]
    fn equal_keys_of_different_peers_stay_apart() {
        let replies = [(1, 60), (2, 60), (1, 60)];
        let mut keys: Vec<u128> = replies.iter().enumerate().map(|(i, &(_, len))| sort_key(9, len, i)).collect();
        let mut messages = vec![Message { start: 0, end: 0, segment: 0 }; 3];
        let count = plan(&mut keys, |a, b| replies[a].0 == replies[b].0, &mut messages);
        for m in &messages[..count] {
            let first = replies[index_of(keys[m.start])].0;
            assert!(keys[m.start..m.end].iter().all(|&k| replies[index_of(k)].0 == first));
        }
    }

    #[test]
    fn messages_stay_within_the_segment_and_size_limits() {
        let replies: Vec<(u8, usize)> = (0..64).map(|_| (7, 1232)).collect();
        let messages = planned(&replies);
        assert!(messages.iter().all(|m| m.len() * 1232 <= MAX_GSO_BYTES && m.len() <= MAX_SEGMENTS));
        assert_eq!(messages.iter().map(Vec::len).sum::<usize>(), 64);
        assert_eq!(messages.len(), 64usize.div_ceil(MAX_GSO_BYTES / 1232));
        let small: Vec<(u8, usize)> = (0..200).map(|_| (7, 30)).collect();
        let messages = planned(&small);
        assert!(messages.iter().all(|m| m.len() <= MAX_SEGMENTS));
        assert_eq!(messages.len(), 200usize.div_ceil(MAX_SEGMENTS));
    }
}
