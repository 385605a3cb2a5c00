//! NOTIFY (RFC 1996) to configured secondaries on every serial change.
//!
//! Each (secondary, zone) pair has at most one NOTIFY in flight. A change that
//! arrives meanwhile only raises the serial to announce, so a burst of changes
//! becomes one NOTIFY for the newest serial once the one in flight is
//! answered (coalescing). An unanswered NOTIFY is retried with exponential
//! backoff (0.25 s, 0.5 s, 1 s … capped at 60 s; each waits at least 1 s for the answer) until the secondary answers or
//! the zone changes again; a secondary that stays away is tried every minute.
//! At most [`QUERIES_IN_FLIGHT`] NOTIFYs and SOA polls are out at once, all
//! through one shared socket per address family ([`crate::exchange`]).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use ferrodns_proto::message::{flags, Section};
use ferrodns_proto::tsig::{Key, ResponseVerifier, Signer};
use ferrodns_proto::{Class, MessageWriter, Name, RecordType, Serial};
use tokio::sync::mpsc;

use crate::exchange::{ExchangeError, UdpExchange};
use crate::peers::Peers;
use crate::primary::unix_now;
use crate::target::Target;

/// A zone that changed, to announce.
#[derive(Clone, Debug)]
pub struct Announcement {
    pub apex: Name,
    pub serial: Serial,
    /// The zone's SOA record (TTL and RDATA), sent in the answer section.
    pub soa_ttl: u32,
    pub soa_rdata: Vec<u8>,
}

/// Sends NOTIFY messages; cheap to clone, never blocks the caller.
#[derive(Clone)]
pub struct Notifier {
    queue: mpsc::UnboundedSender<Announcement>,
    addresses: Addresses,
}

/// The configured secondaries' addresses, shared with the API's status.
pub type Addresses = Arc<Mutex<std::collections::BTreeSet<SocketAddr>>>;

/// Asked before each NOTIFY: the leader's term, or `None` when this node must not send.
pub type Term = Arc<dyn Fn() -> Option<i64> + Send + Sync>;

/// Per (secondary, lowercase apex): what to announce and whether a sender runs.
type Slots = Arc<Mutex<HashMap<(SocketAddr, Vec<u8>), Slot>>>;

/// Queries in flight at once, NOTIFY and the SOA polls after it together:
/// a leader announcing 100,000 zones sends them this many at a time, over
/// one shared socket per address family.
pub const QUERIES_IN_FLIGHT: usize = 64;

/// What every sender task shares: the sockets and the bound on queries in flight.
struct Outbound {
    exchange: UdpExchange,
    in_flight: tokio::sync::Semaphore,
}

#[derive(Default)]
struct Slot {
    /// The newest change to announce.
    latest: Option<Announcement>,
    in_flight: bool,
}

impl Notifier {
    /// Starts the sender for `targets`, signing with `key` when given, and
    /// recording in `peers` the serial each target reports afterwards.
    /// `term` is asked right before every send: NOTIFY is a leader's duty,
    /// and nothing is sent while it answers `None`.
    pub fn spawn(targets: Vec<Target>, key: Option<Key>, peers: Arc<Peers>, term: Term) -> Notifier {
        let (queue, mut changes) = mpsc::unbounded_channel::<Announcement>();
        let slots: Slots = Arc::default();
        let addresses: Addresses = Arc::new(Mutex::new(targets.iter().filter_map(Target::address).collect()));
        let resolved = addresses.clone();
        let outbound = Arc::new(Outbound {
            exchange: UdpExchange::default(),
            in_flight: tokio::sync::Semaphore::new(QUERIES_IN_FLIGHT),
        });
        tokio::spawn(async move {
            while let Some(change) = changes.recv().await {
                // Names are resolved for every change: a set of pods behind one
                // name is followed as it changes.
                let mut now = std::collections::BTreeSet::new();
                for target in &targets {
                    now.extend(target.resolve().await);
                }
                *resolved.lock().unwrap_or_else(|e| e.into_inner()) = now.clone();
                for target in now {
                    let id = (target, change.apex.to_lowercase().as_wire().to_vec());
                    let start = {
                        let mut slots = slots.lock().unwrap_or_else(|e| e.into_inner());
                        let slot = slots.entry(id.clone()).or_default();
                        slot.latest = Some(change.clone());
                        !std::mem::replace(&mut slot.in_flight, true)
                    };
                    if start {
                        let shared = (slots.clone(), outbound.clone());
                        tokio::spawn(announce(target, id, shared, key.clone(), peers.clone(), term.clone()));
                    }
                }
            }
        });
        Notifier { queue, addresses }
    }

    /// The secondaries' addresses as last resolved (changes wait for these).
    pub fn addresses(&self) -> Addresses {
        self.addresses.clone()
    }

    /// Announces a new serial of a zone.
    pub fn changed(&self, change: Announcement) {
        let _ = self.queue.send(change);
    }
}

/// Sends the newest change of one (secondary, zone) until answered, then
/// again while newer changes came in meanwhile.
async fn announce(
    target: SocketAddr,
    id: (SocketAddr, Vec<u8>),
    (slots, outbound): (Slots, Arc<Outbound>),
    key: Option<Key>,
    peers: Arc<Peers>,
    term: Term,
) {
    let mut announced: Option<Serial> = None;
    let mut backoff = Duration::from_millis(250);
    // Sends of the current announcement that went unanswered.
    let mut failures = 0u32;
    loop {
        let change = {
            let mut slots = slots.lock().unwrap_or_else(|e| e.into_inner());
            let slot = slots.entry(id.clone()).or_default();
            match &slot.latest {
                Some(change) if announced != Some(change.serial) => change.clone(),
                _ => {
                    slot.in_flight = false;
                    return;
                }
            }
        };
        let Some(leader_term) = term() else {
            tracing::debug!(%target, zone = %change.apex, serial = change.serial.0, "not the leader; NOTIFY left to the leader");
            let mut slots = slots.lock().unwrap_or_else(|e| e.into_inner());
            if let Some(slot) = slots.get_mut(&id) {
                slot.in_flight = false;
                slot.latest = None;
            }
            return;
        };
        // One line per announcement that succeeds or first fails; retries
        // to a secondary that is down are counted, not logged at INFO each.
        if failures == 0 {
            tracing::info!(%target, zone = %change.apex, serial = change.serial.0, term = leader_term, "NOTIFY sent");
        } else {
            tracing::debug!(%target, zone = %change.apex, serial = change.serial.0, term = leader_term, failures, "NOTIFY sent again");
        }
        let metrics = ferrodns_metrics::global();
        metrics.notify_sent.inc();
        let wait = backoff.clamp(Duration::from_secs(1), Duration::from_secs(5));
        let sent = {
            let _permit = outbound.in_flight.acquire().await.expect("the semaphore is never closed");
            send_notify(&outbound.exchange, target, &change, key.as_ref(), wait).await
        };
        match sent {
            Ok(()) => {
                metrics.notify_acknowledged.inc();
                if failures > 0 {
                    tracing::info!(%target, zone = %change.apex, serial = change.serial.0, failures, "NOTIFY acknowledged after retries");
                } else {
                    tracing::debug!(%target, zone = %change.apex, serial = change.serial.0, "NOTIFY acknowledged");
                }
                failures = 0;
                announced = Some(change.serial);
                backoff = Duration::from_millis(250);
                tokio::spawn(poll_serial(
                    target,
                    change.apex.clone(),
                    change.serial,
                    key.clone(),
                    peers.clone(),
                    (slots.clone(), outbound.clone()),
                ));
            }
            Err(e) => {
                if failures == 0 {
                    tracing::warn!(%target, zone = %change.apex, serial = change.serial.0, error = %e, retry_in = ?backoff, "NOTIFY not acknowledged; retrying with backoff");
                } else {
                    tracing::debug!(%target, zone = %change.apex, serial = change.serial.0, error = %e, retry_in = ?backoff, failures, "NOTIFY not acknowledged");
                }
                failures += 1;
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(60));
            }
        }
    }
}

/// Asks `target` for its SOA until it holds `serial` (or a newer change
/// supersedes this one), recording each answer: the propagation status.
async fn poll_serial(
    target: SocketAddr,
    apex: Name,
    serial: Serial,
    key: Option<Key>,
    peers: Arc<Peers>,
    (slots, outbound): (Slots, Arc<Outbound>),
) {
    let label = target.to_string();
    let mut wait = Duration::from_millis(20);
    for _ in 0..40 {
        tokio::time::sleep(wait).await;
        let asked = {
            let _permit = outbound.in_flight.acquire().await.expect("the semaphore is never closed");
            crate::client::query_soa(&outbound.exchange, target, &apex, key.as_ref(), Duration::from_secs(2)).await
        };
        if let Ok(held) = asked {
            peers.reported(&apex, &label, held);
            if held == serial || held.is_newer_than(serial) {
                return;
            }
        }
        let superseded = {
            let slots = slots.lock().unwrap_or_else(|e| e.into_inner());
            slots
                .get(&(target, apex.to_lowercase().as_wire().to_vec()))
                .and_then(|s| s.latest.as_ref())
                .is_some_and(|latest| latest.serial != serial)
        };
        if superseded {
            return;
        }
        wait = (wait * 2).min(Duration::from_secs(5));
    }
}

/// Builds a NOTIFY for `change` (signed with `key` if given).
pub fn notify_message(id: u16, change: &Announcement, key: Option<&Key>) -> (Vec<u8>, Option<Signer>) {
    let mut out = Vec::with_capacity(512);
    let mut writer = MessageWriter::new(&mut out, u16::MAX as usize);
    writer.set_header(id, flags::AA | (4 << 11));
    let _ = writer.push_question(change.apex.as_wire(), RecordType::SOA, Class::IN);
    let _ =
        writer.push_record(Section::Answer, change.apex.as_wire(), RecordType::SOA, change.soa_ttl, &change.soa_rdata);
    let signer = key.map(|key| {
        let mut signer = Signer::request(key.clone());
        signer.sign(&mut out, unix_now(), 0, &[]);
        signer
    });
    (out, signer)
}

async fn send_notify(
    exchange: &UdpExchange,
    target: SocketAddr,
    change: &Announcement,
    key: Option<&Key>,
    wait: Duration,
) -> Result<(), String> {
    let made = |id| notify_message(id, change, key);
    let (reply, signer) = exchange.exchange(target, wait, made).await.map_err(|e| match e {
        ExchangeError::Timeout => "no answer".to_string(),
        ExchangeError::Network(e) => e,
    })?;
    if reply[2] & 0x80 == 0 {
        return Err("a query, not an answer".to_string());
    }
    if let (Some(key), Some(signer)) = (key, &signer) {
        let mut verifier = ResponseVerifier::new(key.clone(), signer.last_mac().unwrap_or_default().to_vec());
        verifier.verify(&reply, unix_now()).map_err(|e| format!("answer failed TSIG: {e}"))?;
    }
    let rcode = reply[3] & 0x0f;
    if rcode == 0 {
        Ok(())
    } else {
        Err(format!("answered rcode {rcode}"))
    }
}
