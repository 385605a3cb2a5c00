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
//! a message, and then the cost is one hash-table insert per reply.
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

/// Most replies one plan takes (a batch).
pub const MAX_REPLIES: usize = 64;

/// One reply to plan.
#[derive(Clone, Copy, Debug, Default)]
pub struct Reply {
    /// A key of the destination: equal for the very same address and port,
    /// and different keys must mean different destinations.
    pub peer: u64,
    pub length: u16,
}

/// One message of a planned send: the replies `order[start..end]`, all to
/// one peer; every reply but the last is `segment` octets long and the last
/// is no longer. A message of one reply is sent as a plain datagram.
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

/// Hash-table slots for grouping one batch by peer: twice the most replies.
const SLOTS: usize = 2 * MAX_REPLIES;

/// Groups `replies` by peer and cuts each group, longest first, into
/// messages. Writes the replies' indices into `order` in message order and
/// the messages into `messages`, and returns how many messages. `same_peer`
/// is asked about two replies whose peer keys are equal, in case equal keys
/// are not proof of one destination (a hash of an IPv6 address).
pub fn plan(
    replies: &[Reply],
    same_peer: impl Fn(usize, usize) -> bool,
    order: &mut [u8; MAX_REPLIES],
    messages: &mut [Message; MAX_REPLIES],
) -> usize {
    assert!(replies.len() <= MAX_REPLIES);
    // Group by peer: `first` of each group and `next` chain its replies in
    // batch order; `slots` map a peer key to its group (index + 1).
    let mut slots = [0u8; SLOTS];
    let mut first = [0u8; MAX_REPLIES];
    let mut last = [0u8; MAX_REPLIES];
    let mut next = [u8::MAX; MAX_REPLIES];
    let mut groups = 0;
    for (i, reply) in replies.iter().enumerate() {
        let mut slot = (reply.peer.wrapping_mul(0x9e37_79b9_7f4a_7c15) >> 57) as usize;
        let group = loop {
            match slots[slot] {
                0 => {
                    slots[slot] = groups as u8 + 1;
                    first[groups] = i as u8;
                    last[groups] = i as u8;
                    groups += 1;
                    break None;
                }
                taken => {
                    let group = taken as usize - 1;
                    let head = first[group] as usize;
                    if replies[head].peer == reply.peer && same_peer(head, i) {
                        break Some(group);
                    }
                    slot = (slot + 1) % SLOTS;
                }
            }
        };
        if let Some(group) = group {
            next[last[group] as usize] = i as u8;
            last[group] = i as u8;
        }
    }
    // Each group's replies, longest first, cut into messages.
    let mut count = 0;
    let mut placed = 0;
    for &head in &first[..groups] {
        let start = placed;
        let mut at = head;
        while at != u8::MAX {
            // Insertion by length, descending: groups are small.
            let length = replies[at as usize].length;
            let mut k = placed;
            while k > start && replies[order[k - 1] as usize].length < length {
                order[k] = order[k - 1];
                k -= 1;
            }
            order[k] = at;
            placed += 1;
            at = next[at as usize];
        }
        count = cut(replies, &order[start..placed], start, messages, count);
    }
    count
}

/// Cuts one peer's replies (sorted longest first) into messages, appending
/// to `messages` from `count`; `offset` is where `group` sits in the order.
fn cut(replies: &[Reply], group: &[u8], offset: usize, messages: &mut [Message], mut count: usize) -> usize {
    let mut start = 0;
    while start < group.len() {
        let segment = replies[group[start] as usize].length as usize;
        let mut end = start + 1;
        let mut bytes = segment;
        while end < group.len() && end - start < MAX_SEGMENTS {
            let size = replies[group[end] as usize].length as usize;
            if bytes + size > MAX_GSO_BYTES {
                break;
            }
            bytes += size;
            end += 1;
            // Longest first: a shorter reply can only close the message.
            if size < segment {
                break;
            }
        }
        messages[count] = Message { start: offset + start, end: offset + end, segment };
        count += 1;
        start = end;
    }
    count
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Plans replies given as (peer, length), the peer key being `key(peer)`,
    /// and shows each message as its replies' (peer, length) pairs.
    fn planned_with(replies: &[(u8, usize)], key: impl Fn(u8) -> u64) -> Vec<Vec<(u8, usize)>> {
        let planned: Vec<Reply> =
            replies.iter().map(|&(peer, length)| Reply { peer: key(peer), length: length as u16 }).collect();
        let mut order = [0u8; MAX_REPLIES];
        let mut messages = [Message { start: 0, end: 0, segment: 0 }; MAX_REPLIES];
        let count = plan(&planned, |a, b| replies[a].0 == replies[b].0, &mut order, &mut messages);
        let shown: Vec<Vec<(u8, usize)>> = messages[..count]
            .iter()
            .map(|m| {
                let shown: Vec<(u8, usize)> = order[m.start..m.end].iter().map(|&i| replies[i as usize]).collect();
                assert!(shown.iter().all(|&(peer, _)| peer == shown[0].0), "one peer per message");
                assert_eq!(m.segment, shown[0].1);
                assert!(shown.windows(2).all(|w| w[0].1 >= w[1].1), "longest first");
                assert!(shown[..shown.len() - 1].iter().all(|&(_, len)| len == m.segment), "all but the last equal");
                shown
            })
            .collect();
        let mut all: Vec<u8> = messages[..count].iter().flat_map(|m| order[m.start..m.end].to_vec()).collect();
        all.sort_unstable();
        assert_eq!(all, (0..replies.len() as u8).collect::<Vec<_>>(), "every reply once");
        shown
    }

    fn planned(replies: &[(u8, usize)]) -> Vec<Vec<(u8, usize)>> {
        planned_with(replies, |peer| peer as u64)
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
        let replies = [(1, 60), (2, 60), (1, 60), (2, 60), (3, 10)];
        let messages = planned_with(&replies, |_| 9);
        assert_eq!(messages, vec![vec![(1, 60), (1, 60)], vec![(2, 60), (2, 60)], vec![(3, 10)]]);
    }

    #[test]
    fn messages_stay_within_the_segment_and_size_limits() {
        let large: Vec<(u8, usize)> = (0..64).map(|_| (7, 1232)).collect();
        let messages = planned(&large);
        assert!(messages.iter().all(|m| m.len() * 1232 <= MAX_GSO_BYTES && m.len() <= MAX_SEGMENTS));
        assert_eq!(messages.len(), 64usize.div_ceil(MAX_GSO_BYTES / 1232));
        let distinct: Vec<(u8, usize)> = (0..64).map(|i| (i as u8, 50 + i)).collect();
        assert_eq!(planned(&distinct).len(), 64, "no two replies to one peer, no GSO");
    }
}
