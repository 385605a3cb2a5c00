//! The primary side: answers the control traffic the DNS engine hands off.
//!
//! ```text
//!   packet ─▶ parse ─▶ TSIG verify ─▶ NOTIFY?  ─▶ the secondary role, or NOTAUTH
//!                     (BADKEY/BADSIG/ ├─ AXFR/IXFR ─▶ access ─▶ zone ─▶ messages
//!                      BADTIME)       └─ other    ─▶ plain answer
//!                                                    ─▶ sign every message
//! ```
//!
//! Refusals say why in an Extended DNS Error (RFC 8914) when the query had
//! EDNS: Prohibited for a transfer the ACL or the key's scope does not
//! allow, as NSD. An AXFR over UDP is NOTIMP before any check, and one for a
//! zone we do not serve NOTAUTH before the ACL, as Knot and NSD answer.
//!
//! IXFR comes from the served zone's recent history when it reaches the
//! client's serial, else from the store's journal, else as a full zone.
//! Transfers over TCP are [`Replies`] written message by message as the
//! connection takes them (each signed as it is made), so a transfer holds
//! one message in memory whatever the zone's size.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use arc_swap::ArcSwap;
use ferrodns_engine::transfer::{self, IxfrPlan, ZoneTransfer};
use ferrodns_engine::{formerr, respond_unsigned, write_error_reply, Replies, ServerIdentity, Transport};
use ferrodns_proto::message::{ede, EdeOption};
use ferrodns_proto::tsig::{self, Signer};
use ferrodns_proto::{parse_query, Name, Opcode, Query, Rcode, RecordType, Serial};
use ferrodns_zone::edit::Diff;
use ferrodns_zone::ZoneSet;

use crate::acl::Access;
use crate::peers::Peers;

/// A boxed future, for the traits other crates implement.
pub type BoxFuture<'a, T> = std::pin::Pin<Box<dyn std::future::Future<Output = T> + Send + 'a>>;

/// Where IXFR steps older than a zone's in-memory history come from.
pub trait Journal: Send + Sync + 'static {
    /// The steps from `serial` to the zone's current serial, oldest first, if
    /// the journal still reaches that far and they hold at most `max_records`
    /// records (the zone's own count: more, and the whole zone is the smaller
    /// answer).
    fn steps_since<'a>(
        &'a self,
        apex: &'a Name,
        serial: Serial,
        max_records: usize,
    ) -> BoxFuture<'a, Option<Vec<Arc<Diff>>>>;
}

/// Who holds each stored zone, for TSIG keys limited to a tenant.
pub trait ZoneOwners: Send + Sync + 'static {
    /// The tenant of the stored zone at `apex` (lowercase), if there is one.
    fn tenant_of<'a>(&'a self, apex: &'a Name) -> BoxFuture<'a, Option<String>>;
}

/// What the secondary role does with a NOTIFY; the primary role has none.
pub trait NotifyListener: Send + Sync + 'static {
    /// Takes a NOTIFY for `apex` from `peer`; returns false if the zone is
    /// not one this server follows (the answer is then NOTAUTH).
    fn notified(&self, apex: &Name, peer: SocketAddr, serial: Option<Serial>) -> bool;
}

/// Seconds since the Unix epoch (TSIG's clock).
pub fn unix_now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

/// The control handler.
pub struct Primary {
    zones: Arc<ArcSwap<ZoneSet>>,
    access: Arc<Access>,
    journal: Option<Arc<dyn Journal>>,
    owners: Option<Arc<dyn ZoneOwners>>,
    notify_listener: Mutex<Option<Arc<dyn NotifyListener>>>,
    peers: Arc<Peers>,
    identity: Arc<ServerIdentity>,
}

impl Primary {
    pub fn new(
        zones: Arc<ArcSwap<ZoneSet>>,
        access: Arc<Access>,
        journal: Option<Arc<dyn Journal>>,
        owners: Option<Arc<dyn ZoneOwners>>,
        peers: Arc<Peers>,
        identity: Arc<ServerIdentity>,
    ) -> Primary {
        Primary { zones, access, journal, owners, notify_listener: Mutex::new(None), peers, identity }
    }

    /// The question and `rcode` alone, with OPT when the query had EDNS (the
    /// NSID when asked, and `ede`); authoritative when it answers.
    fn header_only(&self, query: &Query, rcode: Rcode, ede: Option<u16>) -> Vec<u8> {
        let mut out = Vec::new();
        let authoritative = rcode == Rcode::NOERROR;
        let ede = ede.map(|code| EdeOption::new(code, ""));
        write_error_reply(&self.identity, query, rcode, authoritative, &[], ede, &mut out);
        out
    }

    /// Whether the key that signed `query` reaches the zone it names: the
    /// apex it asks about (or the zone that holds the name, for a query).
    async fn key_reaches(&self, key: &Name, query: &Query) -> bool {
        let scope = self.access.scope(key);
        if scope.is_server_wide() {
            return true;
        }
        let zones = self.zones.load_full();
        let apex = match zones.find(query.qname_lower()) {
            Some(zone) => zone.apex().to_lowercase(),
            None => Name::from_wire(query.qname_lower()).unwrap_or_else(|_| Name::root()),
        };
        let tenant = match (&scope.tenant, &self.owners) {
            (Some(_), Some(owners)) => owners.tenant_of(&apex).await,
            _ => None,
        };
        scope.allows(&apex, tenant.as_deref())
    }

    /// Sets who receives NOTIFY messages (the secondary role).
    pub fn set_notify_listener(&self, listener: Arc<dyn NotifyListener>) {
        *self.notify_listener.lock().unwrap_or_else(|e| e.into_inner()) = Some(listener);
    }

    /// Answers one message the DNS transports handed off: the messages to
    /// send back, in order (none to stay silent).
    pub async fn answer(&self, packet: &[u8], peer: SocketAddr, transport: Transport) -> Box<dyn Replies> {
        let Ok(query) = parse_query(packet) else {
            let mut out = Vec::new();
            return match formerr(packet, &mut out) {
                ferrodns_engine::Outcome::Reply => messages(vec![out]),
                _ => messages(Vec::new()),
            };
        };
        let now = unix_now();
        let verified = match tsig::verify_request(packet, |name| self.access.key(name), now) {
            Ok(verified) => verified,
            Err(Ok(failure)) => {
                tracing::warn!(%peer, zone = %display_qname(&query), "refused: {failure}");
                return messages(vec![tsig_error(self.header_only(&query, Rcode::NOTAUTH, None), &failure, now)]);
            }
            Err(Err(_)) => {
                let mut out = Vec::new();
                let _ = formerr(packet, &mut out);
                return messages(vec![out]);
            }
        };
        if let Some(verified) = &verified {
            if !self.key_reaches(&verified.key.name, &query).await {
                tracing::warn!(%peer, zone = %display_qname(&query), key = %verified.key.name, "refused: the key's scope does not reach this zone");
                let mut signer = Signer::response(verified.clone());
                let mut refused = self.header_only(&query, Rcode::REFUSED, Some(ede::PROHIBITED));
                signer.sign(&mut refused, now, 0, &[]);
                return messages(vec![refused]);
            }
        }
        let signer = verified.map(|verified| (Signer::response(verified), now));
        let answer = if query.opcode == Opcode::NOTIFY {
            Answer::Messages(self.notify(&query, packet, peer, transport))
        } else if matches!(query.qtype, RecordType::AXFR | RecordType::IXFR) {
            self.transfer(&query, packet, peer, transport, signer.is_some()).await
        } else {
            let mut out = Vec::new();
            match respond_unsigned(&self.zones.load(), &self.identity, packet, transport, &mut out) {
                ferrodns_engine::Outcome::Reply => Answer::Messages(vec![out]),
                _ => Answer::Messages(Vec::new()),
            }
        };
        match answer {
            Answer::Messages(mut list) => {
                if let Some((mut signer, now)) = signer {
                    for message in &mut list {
                        signer.sign(message, now, 0, &[]);
                    }
                }
                messages(list)
            }
            Answer::Transfer(transfer) => Box::new(SignedTransfer { signer, ..*transfer }),
        }
    }

    fn notify(&self, query: &Query, packet: &[u8], peer: SocketAddr, transport: Transport) -> Vec<Vec<u8>> {
        let listener = self.notify_listener.lock().unwrap_or_else(|e| e.into_inner()).clone();
        let Some(listener) = listener else {
            let mut out = Vec::new();
            let _ = respond_unsigned(&self.zones.load(), &self.identity, packet, transport, &mut out);
            return vec![out];
        };
        let apex = Name::from_wire(query.qname_lower()).unwrap_or_else(|_| Name::root());
        // RFC 1996 §3.7: a NOTIFY may carry the new SOA in its answer section.
        let serial = transfer::section_soa_serial(packet, ferrodns_proto::Section::Answer);
        let rcode = if listener.notified(&apex, peer, serial) { Rcode::NOERROR } else { Rcode::NOTAUTH };
        vec![self.header_only(query, rcode, None)]
    }

    async fn transfer(
        &self,
        query: &Query,
        packet: &[u8],
        peer: SocketAddr,
        transport: Transport,
        signed: bool,
    ) -> Answer {
        let zone_name = display_qname(query);
        // RFC 5936 §4.2: AXFR goes over TCP only; NOTIMP, as Knot and NSD
        // answer, whoever asks.
        if query.qtype == RecordType::AXFR && transport == Transport::Udp {
            return Answer::Messages(vec![self.header_only(query, Rcode::NOTIMP, None)]);
        }
        // An IXFR without the client's SOA (RFC 1995 §3) is malformed,
        // whoever sends it: FORMERR before any policy, as Knot answers.
        let Ok(request) = transfer::parse_request(packet) else {
            return Answer::Messages(vec![self.header_only(query, Rcode::FORMERR, None)]);
        };
        // A zone we do not serve is NOTAUTH whoever asks, as Knot and NSD
        // answer (neither adds an EDE).
        let zones = self.zones.load_full();
        let Some(zone) = zones.get(query.qname_lower()).cloned() else {
            tracing::info!(%peer, zone = %zone_name, "transfer of a zone we do not serve");
            count_out(query.qtype, "not_served");
            return Answer::Messages(vec![self.header_only(query, Rcode::NOTAUTH, None)]);
        };
        if !signed && !self.access.allows_address(peer.ip()) {
            tracing::warn!(%peer, zone = %zone_name, qtype = %query.qtype, "transfer refused: not signed with a configured key and not from an allowed address");
            count_out(query.qtype, "refused");
            return Answer::Messages(vec![self.header_only(query, Rcode::REFUSED, Some(ede::PROHIBITED))]);
        }
        // `from` is the IXFR client's serial; `None` for an AXFR.
        let streamed = |transfer: ZoneTransfer, kind: &'static str, from: Option<Serial>| {
            Answer::Transfer(Box::new(SignedTransfer {
                transfer,
                signer: None,
                peer,
                zone: zone_name.clone(),
                kind,
                from,
                to: zone.serial(),
                out: Vec::new(),
            }))
        };
        let transferred = || self.peers.transferred(zone.apex(), &peer.ip().to_string(), zone.serial());
        if query.qtype == RecordType::AXFR {
            transferred();
            let transfer = ZoneTransfer::axfr(zone.clone(), query, u16::MAX as usize);
            return streamed(transfer, "full zone", None);
        }
        let client = request.client_serial.unwrap_or(Serial(0));
        self.peers.reported(zone.apex(), &peer.ip().to_string(), client);
        let mut plan = transfer::plan_ixfr(&zone, client, zone.history());
        if matches!(plan, IxfrPlan::Full) {
            if let Some(journal) = &self.journal {
                if let Some(steps) = journal.steps_since(zone.apex(), client, zone.record_count()).await {
                    plan = transfer::plan_ixfr(&zone, client, &steps);
                }
            }
        }
        let served = |kind: &str, messages: usize| {
            count_out(RecordType::IXFR, "ok");
            tracing::info!(%peer, zone = %zone_name, from = client.0, to = zone.serial().0, kind, messages, "IXFR served");
        };
        // A client sent only the current SOA for a full zone over UDP has
        // yet to transfer it; every other answer brings it to our serial.
        if transport == Transport::Tcp || !matches!(plan, IxfrPlan::Full) {
            transferred();
        }
        match plan {
            IxfrPlan::UpToDate => {
                served("up to date", 1);
                Answer::Messages(vec![transfer::current_soa(&zone, query)])
            }
            IxfrPlan::Steps(steps) if transport == Transport::Udp => {
                let limit = query.edns.map_or(512, |edns| edns.udp_payload.clamp(512, 4096) as usize);
                // One message at most; the second is never made.
                let mut transfer = ZoneTransfer::ixfr(zone.clone(), query, steps, limit);
                let mut message = Vec::new();
                let fits = transfer.next_message(&mut message) == Ok(true)
                    && message.len() <= limit
                    && transfer.next_message(&mut Vec::new()) == Ok(false);
                served("incremental", 1);
                if fits {
                    Answer::Messages(vec![message])
                } else {
                    // RFC 1995 §2: too big for UDP; the current SOA tells the client to use TCP.
                    Answer::Messages(vec![transfer::current_soa(&zone, query)])
                }
            }
            IxfrPlan::Steps(steps) => {
                let transfer = ZoneTransfer::ixfr(zone.clone(), query, steps, u16::MAX as usize);
                streamed(transfer, "incremental", Some(client))
            }
            IxfrPlan::Full if transport == Transport::Udp => {
                served("full zone", 1);
                Answer::Messages(vec![transfer::current_soa(&zone, query)])
            }
            IxfrPlan::Full => {
                let transfer = ZoneTransfer::axfr(zone.clone(), query, u16::MAX as usize);
                streamed(transfer, "full zone", Some(client))
            }
        }
    }
}

/// What the primary answers: a few messages made at once, or a transfer
/// made as it is sent.
enum Answer {
    Messages(Vec<Vec<u8>>),
    Transfer(Box<SignedTransfer>),
}

fn messages(list: Vec<Vec<u8>>) -> Box<dyn Replies> {
    Box::new(list.into_iter())
}

/// A zone transfer made message by message, each signed as it is made (the
/// TSIG MACs chain), and logged when it ends.
struct SignedTransfer {
    transfer: ZoneTransfer,
    signer: Option<(Signer, u64)>,
    peer: SocketAddr,
    zone: String,
    /// The kind of answer, for the log.
    kind: &'static str,
    /// The IXFR client's serial; `None` for an AXFR.
    from: Option<Serial>,
    to: Serial,
    out: Vec<u8>,
}

impl Replies for SignedTransfer {
    fn next_message(&mut self, out: &mut Vec<u8>) -> bool {
        let (peer, zone, kind) = (self.peer, &self.zone, self.kind);
        match self.transfer.next_message(&mut self.out) {
            Ok(true) => {
                if let Some((signer, now)) = &mut self.signer {
                    signer.sign(&mut self.out, *now, 0, &[]);
                }
                std::mem::swap(out, &mut self.out);
                true
            }
            Ok(false) => {
                let (messages, records) = (self.transfer.messages(), self.transfer.records());
                count_out(if self.from.is_some() { RecordType::IXFR } else { RecordType::AXFR }, "ok");
                match self.from {
                    None => tracing::info!(%peer, %zone, serial = self.to.0, messages, records, "AXFR served"),
                    Some(from) => {
                        tracing::info!(%peer, %zone, from = from.0, to = self.to.0, kind, messages, records, "IXFR served")
                    }
                }
                false
            }
            Err(error) => {
                let what = if self.from.is_some() { "IXFR" } else { "AXFR" };
                tracing::error!(%peer, %zone, what, %error, "transfer aborted: a record cannot be sent");
                count_out(if self.from.is_some() { RecordType::IXFR } else { RecordType::AXFR }, "error");
                false
            }
        }
    }
}

/// Counts a transfer served (or refused) in `ferrodns_transfers_out_total`.
fn count_out(qtype: RecordType, result: &str) {
    let kind = if qtype == RecordType::IXFR { "IXFR" } else { "AXFR" };
    ferrodns_metrics::global().transfers_out.with_label_values(&[kind, result]).inc();
}

fn display_qname(query: &Query) -> String {
    Name::from_wire(query.qname()).map(|n| n.to_string()).unwrap_or_default()
}

/// RFC 8945 §5.2: BADKEY and BADSIG go back unsigned with NOTAUTH (`out`,
/// the reply without TSIG); BADTIME is signed and carries our time.
fn tsig_error(mut out: Vec<u8>, failure: &tsig::Failure, now: u64) -> Vec<u8> {
    match &failure.signing {
        Some(verified) => {
            let mut signer = Signer::response(verified.clone());
            signer.sign(&mut out, now, failure.error, &now.to_be_bytes()[2..]);
        }
        None => tsig::append_error(&mut out, &failure.key_name, &failure.algorithm, failure.time_signed, failure.error),
    }
    out
}
