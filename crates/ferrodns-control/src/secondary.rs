//! Secondary zones managed through the API (`kind: secondary`): zones whose
//! data comes by zone transfer from primaries outside ferrodns (BIND,
//! PowerDNS, Knot), stored like any zone, so that every node serves them,
//! the catalog lists them, and switching one to a primary keeps its data
//! and serial. The way to migrate a zone from BIND or PowerDNS: create it
//! as a secondary of the old primary, move the delegation, then make it a
//! primary.
//!
//! Only transfers write a secondary zone, through the same store calls as
//! an import (validated by the zone rules, one history entry and one
//! journal step each, published and replicated as any change). The API
//! refuses record writes to it (409). Refreshes follow the zone's SOA
//! timers on the leader, and any node that receives a NOTIFY from one of
//! the zone's primaries refreshes it at once. Transfers are AXFR; the
//! imported change holds only what differs, so secondaries of ours still
//! get IXFR.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use ferrodns_proto::{Name, RecordType, Serial};
use ferrodns_store::{Author, StoreError};
use ferrodns_transfer::client::{self, TransferLimits};
use ferrodns_transfer::exchange::UdpExchange;
use ferrodns_transfer::target::Target;
use ferrodns_zone::edit::{ImportMode, PackedZone, PackedZoneBuilder, Record};
use tokio::sync::{watch, Notify};

use crate::{ControlError, ControlPlane};

/// The author of every transfer's history entry.
pub const TRANSFER_AUTHOR: Author<'static> =
    Author { name: "zone transfer", token: "", tenant: ferrodns_store::OPERATOR_TENANT };

/// Until a zone's SOA says otherwise, and the bounds put on what it says.
const DEFAULT_REFRESH: Duration = Duration::from_secs(300);
const SHORTEST_REFRESH: Duration = Duration::from_secs(10);
const LONGEST_REFRESH: Duration = Duration::from_secs(24 * 3600);

/// The primaries of a secondary zone, as stored: `ADDR`, `ADDR:PORT` or a
/// host name with a port. Errors name the bad entry.
pub fn parse_primaries(list: &[String]) -> Result<Vec<Target>, String> {
    if list.is_empty() {
        return Err("a secondary zone needs at least one primary".into());
    }
    if list.len() > 8 {
        return Err(format!("{} primaries; at most 8", list.len()));
    }
    list.iter().map(|text| Target::parse(text).map_err(|e| format!("bad primary {text:?}: {e}"))).collect()
}

/// Transfers `apex` (AXFR) from the first of `primaries` that gives it.
pub async fn transfer_whole(
    primaries: &[Target],
    apex: &Name,
    key: Option<&ferrodns_proto::tsig::Key>,
) -> Result<(Vec<Record>, SocketAddr), String> {
    let mut reasons = Vec::new();
    for target in primaries {
        let addresses = target.resolve().await;
        if addresses.is_empty() {
            reasons.push(format!("{target}: does not resolve"));
        }
        for primary in addresses {
            match client::transfer(primary, apex, None, key, TransferLimits::default()).await {
                Ok(records) => return Ok((records, primary)),
                Err(e) => reasons.push(format!("{primary}: {e}")),
            }
        }
    }
    Err(reasons.join("; "))
}

/// An AXFR's records as an import: the RRsets without the SOA, the SOA's
/// RDATA, and its TTL.
pub fn as_import(apex: &Name, records: &[Record]) -> Result<(PackedZone, Vec<u8>, u32), String> {
    // The transfer ends with the SOA it began with.
    let body = records.get(..records.len().saturating_sub(1)).unwrap_or_default();
    let mut soa = None;
    let mut packed = PackedZoneBuilder::new();
    for record in body {
        if !record.owner.is_subdomain_of(apex) {
            return Err(format!("the transfer holds {}, outside the zone", record.owner));
        }
        if record.rtype == RecordType::SOA {
            if record.owner.to_lowercase() == apex.to_lowercase() && soa.is_none() {
                soa = Some((record.rdata.clone(), record.ttl));
            }
            continue;
        }
        packed.push(&record.owner, record.rtype, record.ttl, &record.rdata);
    }
    let (soa, ttl) = soa.ok_or("the transfer holds no SOA")?;
    Ok((packed.finish(), soa, ttl))
}

/// Which secondary zones are due, and who may NOTIFY them.
#[derive(Default)]
pub struct SecondaryZones {
    /// When each zone is due for its next refresh (on the leader).
    due: Mutex<HashMap<Name, Instant>>,
    /// Zones a primary's NOTIFY asked to refresh now (on any node).
    notified: Mutex<std::collections::HashSet<Name>>,
    /// Each zone's primaries' addresses as last resolved: NOTIFY is taken
    /// from these only.
    primaries: Mutex<HashMap<Name, Vec<IpAddr>>>,
    wake: Notify,
}

impl SecondaryZones {
    /// A NOTIFY for `apex` from `peer`: true (and the zone refreshed at
    /// once) if `apex` is a secondary zone here and `peer` one of its
    /// primaries.
    pub fn notified(&self, apex: &Name, peer: SocketAddr) -> bool {
        let apex = apex.to_lowercase();
        let known = self.primaries.lock().unwrap_or_else(|e| e.into_inner());
        if !known.get(&apex).is_some_and(|ips| ips.contains(&peer.ip())) {
            return false;
        }
        self.notified.lock().unwrap_or_else(|e| e.into_inner()).insert(apex);
        self.wake.notify_one();
        true
    }

    /// Takes NOTIFY for `apex` from these addresses (its primaries as
    /// resolved for its first transfer), until a refresh resolves them again.
    pub fn remember(&self, apex: &Name, primaries: Vec<IpAddr>) {
        self.primaries.lock().unwrap_or_else(|e| e.into_inner()).insert(apex.to_lowercase(), primaries);
    }
}

impl ControlPlane {
    /// Refreshes the secondary zones until shutdown: on the leader at each
    /// zone's SOA refresh (retry after a failure), and on any node at once
    /// for a NOTIFY from the zone's primary.
    pub async fn follow_secondary_zones(self: Arc<Self>, mut shutdown: watch::Receiver<bool>) {
        let exchange = UdpExchange::default();
        loop {
            tokio::select! {
                _ = self.secondary_zones.wake.notified() => {}
                _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                _ = shutdown.changed() => return,
            }
            let Ok(zones) = self.store.secondary_zones().await else { continue };
            let leading = self.leadership.term().is_some();
            let now = Instant::now();
            let mut due_now = Vec::new();
            {
                let mut due = self.secondary_zones.due.lock().unwrap_or_else(|e| e.into_inner());
                let mut notified = self.secondary_zones.notified.lock().unwrap_or_else(|e| e.into_inner());
                due.retain(|apex, _| zones.iter().any(|(name, ..)| name == apex));
                for (apex, _, _) in &zones {
                    let at = *due.entry(apex.clone()).or_insert(now);
                    // Timers on the leader; a primary's NOTIFY on any node.
                    if notified.remove(apex) || (leading && at <= now) {
                        due_now.push(apex.clone());
                    }
                }
                notified.clear();
            }
            for (apex, primaries, serial) in zones.into_iter().filter(|(apex, ..)| due_now.contains(apex)) {
                let (refresh, retry) = self.soa_timers(&apex);
                let next = match self.refresh_secondary(&exchange, &apex, &primaries, serial).await {
                    Ok(()) => refresh,
                    Err(e) => {
                        tracing::warn!(zone = %apex, error = %e, retry_in = ?retry, "secondary zone refresh failed; serving what it holds");
                        retry
                    }
                };
                self.secondary_zones.due.lock().unwrap_or_else(|e| e.into_inner()).insert(apex, Instant::now() + next);
            }
        }
    }

    /// The served zone's SOA refresh and retry, within bounds.
    fn soa_timers(&self, apex: &Name) -> (Duration, Duration) {
        let served = self.live.snapshot().get(apex.as_wire()).cloned();
        let Some([refresh, retry, ..]) = served.and_then(|zone| ferrodns_proto::rdata::soa_timers(zone.soa().first()))
        else {
            return (DEFAULT_REFRESH, DEFAULT_REFRESH);
        };
        let bounded = |field: u32| Duration::from_secs(u64::from(field)).clamp(SHORTEST_REFRESH, LONGEST_REFRESH);
        (bounded(refresh), bounded(retry))
    }

    /// One refresh: the first primary that answers the SOA query decides;
    /// a newer serial is transferred and imported.
    async fn refresh_secondary(
        &self,
        exchange: &UdpExchange,
        apex: &Name,
        primaries: &[String],
        serial: Serial,
    ) -> Result<(), String> {
        let targets = parse_primaries(primaries)?;
        let key = self.replication.as_ref().and_then(|r| r.access.keys.first().cloned());
        let mut reasons = Vec::new();
        let mut resolved = Vec::new();
        for target in &targets {
            for primary in target.resolve().await {
                resolved.push(primary.ip());
                let theirs =
                    match client::query_soa(exchange, primary, apex, key.as_ref(), Duration::from_secs(3)).await {
                        Ok(theirs) => theirs,
                        Err(e) => {
                            reasons.push(format!("{primary}: SOA query: {e}"));
                            continue;
                        }
                    };
                self.secondary_zones
                    .primaries
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .insert(apex.clone(), resolved.clone());
                if !theirs.is_newer_than(serial) {
                    return Ok(());
                }
                let records = client::transfer(primary, apex, None, key.as_ref(), TransferLimits::default())
                    .await
                    .map_err(|e| format!("{primary}: AXFR: {e}"))?;
                // The SOA's TTL stays the one of the first transfer.
                let (packed, soa, _) = as_import(apex, &records)?;
                let zone = self.store.zone(apex).await.map_err(|e| e.to_string())?;
                if !zone.is_secondary() {
                    return Ok(());
                }
                let committed = self.write_transfer(&zone, packed, soa).await.map_err(|e| e.to_string())?;
                tracing::info!(zone = %apex, %primary, from = serial.0, to = committed.zone.serial.0, "secondary zone transferred");
                return Ok(());
            }
        }
        self.secondary_zones.primaries.lock().unwrap_or_else(|e| e.into_inner()).insert(apex.clone(), resolved);
        Err(reasons.join("; "))
    }

    /// Writes a transfer's data into a secondary zone: the import path,
    /// under the zone's lock, published, as the transfer's author.
    pub(crate) async fn write_transfer(
        &self,
        zone: &ferrodns_store::ZoneRecord,
        packed: PackedZone,
        soa: Vec<u8>,
    ) -> Result<ferrodns_store::Committed, ControlError> {
        let summary = crate::audit::import(ImportMode::Replace, packed.record_count());
        let _publication = self.locks.lock(&zone.name).await;
        let scope = ferrodns_store::Scope { tenant: None, zones: None };
        let committed = self
            .store
            .import(
                &zone.name,
                &scope,
                None,
                ImportMode::Replace,
                packed,
                Some(soa),
                &summary,
                &TRANSFER_AUTHOR,
                crate::now_micros(),
            )
            .await
            .map_err(|e| match e {
                StoreError::Rejected(errors) => ControlError::Invalid(format!(
                    "the primary's data breaks {} zone rules here; the first: {}",
                    errors.len(),
                    errors.first().map(|e| e.to_string()).unwrap_or_default()
                )),
                other => ControlError::Store(other),
            })?;
        if committed.diff.is_some() {
            self.publish(&committed.zone, committed.diff.clone()).await?;
        }
        Ok(committed)
    }
}
