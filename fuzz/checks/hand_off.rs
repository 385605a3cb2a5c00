//! Any bytes as control traffic the engine hands off (NOTIFY, AXFR, IXFR,
//! signed queries), through the primary as the transports call it, over
//! UDP and TCP: every reply carries the query's id with QR set, a UDP
//! reply fits in a datagram, and a transfer ends.

use std::net::SocketAddr;
use std::sync::{Arc, OnceLock};

use arc_swap::ArcSwap;
use ferrodns_engine::Transport;
use ferrodns_proto::tsig::Key;
use ferrodns_proto::{Name, Serial};
use ferrodns_transfer::acl::{Access, Network};
use ferrodns_transfer::peers::Peers;
use ferrodns_transfer::primary::{NotifyListener, Primary};

use super::zones::corpus_zones;

struct Listener;

impl NotifyListener for Listener {
    fn notified(&self, apex: &Name, _peer: SocketAddr, _serial: Option<Serial>) -> bool {
        apex.label_count() % 2 == 0
    }
}

fn primary() -> &'static (Primary, tokio::runtime::Runtime) {
    static PRIMARY: OnceLock<(Primary, tokio::runtime::Runtime)> = OnceLock::new();
    PRIMARY.get_or_init(|| {
        let mut access = Access::default();
        access.networks.push(Network::parse("127.0.0.0/8").unwrap());
        access.keys.push(Key::parse("fuzz-key:hmac-sha256:ZnV6ei1rZXktc2VjcmV0LWZvci10aGUtdGFyZ2V0cw==").unwrap());
        let zones = Arc::new(ArcSwap::from_pointee(corpus_zones().clone()));
        let primary = Primary::new(zones, Arc::new(access), None, None, Arc::new(Peers::default()), Arc::default());
        primary.set_notify_listener(Arc::new(Listener));
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        (primary, runtime)
    })
}

pub fn check(data: &[u8]) {
    let (primary, runtime) = primary();
    // From an allowed address and from a stranger.
    for (peer, transport) in
        [("127.0.0.1:5300", Transport::Udp), ("127.0.0.1:5300", Transport::Tcp), ("192.0.2.1:5300", Transport::Tcp)]
    {
        let peer: SocketAddr = peer.parse().unwrap();
        let mut replies = runtime.block_on(primary.answer(data, peer, transport));
        let mut reply = Vec::new();
        let mut count = 0;
        while replies.next_message(&mut reply) {
            count += 1;
            assert!(count < 100_000, "a transfer of the test zones does not end");
            assert!(reply.len() >= 12 && reply.len() <= u16::MAX as usize);
            assert_eq!(reply[..2], data[..2], "a reply with another id");
            assert!(reply[2] & 0x80 != 0, "QR set");
            if transport == Transport::Udp {
                assert_eq!(count, 1, "one datagram answers a UDP query");
            }
        }
    }
}
