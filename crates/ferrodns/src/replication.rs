//! Glue between the store, the served zones and replication: the journal
//! IXFR falls back on, and NOTIFY on every published serial.

use std::sync::Arc;

use ferrodns_proto::{Name, RecordType, Serial};
use ferrodns_server::{BoxFuture, ControlHandler};
use ferrodns_store::Store;
use ferrodns_transfer::notify::{Announcement, Notifier};
use ferrodns_transfer::primary::{Journal, Primary, ZoneOwners};
use ferrodns_zone::edit::Diff;
use ferrodns_zone::live::Observer;
use ferrodns_zone::Zone;

/// Hands the control traffic the DNS transports pass on (NOTIFY, AXFR,
/// IXFR, signed queries) to the primary role. The transfer crate does not
/// know the socket crate; the binary joins them here.
pub struct HandOff(pub Arc<Primary>);

impl ControlHandler for HandOff {
    fn handle<'a>(
        &'a self,
        packet: &'a [u8],
        peer: std::net::SocketAddr,
        transport: ferrodns_engine::Transport,
    ) -> BoxFuture<'a, Box<dyn ferrodns_engine::Replies>> {
        Box::pin(self.0.answer(packet, peer, transport))
    }
}

/// IXFR steps from the store's journal, and who holds each stored zone.
pub struct StoreJournal {
    pub store: Arc<Store>,
}

impl ZoneOwners for StoreJournal {
    fn tenant_of<'a>(&'a self, apex: &'a Name) -> BoxFuture<'a, Option<String>> {
        Box::pin(async move { self.store.zone(apex).await.ok().map(|zone| zone.tenant) })
    }
}

impl Journal for StoreJournal {
    fn steps_since<'a>(
        &'a self,
        apex: &'a Name,
        serial: Serial,
        max_records: usize,
    ) -> BoxFuture<'a, Option<Vec<Arc<Diff>>>> {
        Box::pin(async move {
            let zone = self.store.zone(apex).await.ok()?;
            let steps = self.store.ixfr_steps(zone.id, serial, max_records).await.ok()??;
            Some(steps.into_iter().map(Arc::new).collect())
        })
    }
}

/// Announces each published zone version to the secondaries.
#[derive(Clone)]
pub struct NotifyOnPublish {
    pub notifier: Notifier,
}

impl Observer for NotifyOnPublish {
    fn published(&self, zone: &Zone) {
        let soa = zone.soa();
        debug_assert_eq!(soa.rtype, RecordType::SOA);
        self.notifier.changed(Announcement {
            apex: zone.apex().clone(),
            serial: zone.serial(),
            soa_ttl: soa.ttl,
            soa_rdata: soa.first().to_vec(),
        });
    }

    fn removed(&self, _apex: &Name) {}
}

/// Takes NOTIFY on a control node for its secondary zones (`kind:
/// secondary`), from their primaries only.
pub struct SecondaryZonesNotify(pub Arc<ferrodns_control::ControlPlane>);

impl ferrodns_transfer::primary::NotifyListener for SecondaryZonesNotify {
    fn notified(&self, apex: &Name, peer: std::net::SocketAddr, _serial: Option<Serial>) -> bool {
        self.0.secondary_zones.notified(apex, peer)
    }
}
