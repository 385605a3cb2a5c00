//! The control plane: the one owner of every write.
//!
//! ```text
//!   API handler ─┐                          ┌─► ferrodns-store: one transaction
//!   (later: DNS  ├─► ControlPlane::change ──┤     (If-Match, rules via edit::plan,
//!    UPDATE, the │   ::import, ::create_zone│      rows, serial, journal, audit)
//!    console)   ─┘   ::delete_zone          └─► publish: the diff reaches the
//!                                                 served zone set (LiveZones)
//!   other nodes' commits ─► follower ─► publish / reload
//!   leader only ─► catalog writes, journal compaction (fenced by the term)
//! ```
//!
//! [`ControlPlane`] holds the store, the live zones, the catalog, the
//! per-zone locks, leadership and the replication state. Every way to write
//! a zone calls one of its entry points, which take the actor (a name for
//! the audit record and the scope it may touch) and the `If-Match` list, so
//! the rules, the history and the replication are the same whoever writes.
//! It knows nothing of HTTP: errors are [`ControlError`], which the API maps
//! to statuses. A batch of changes reaches it checked on its own terms
//! ([`ferrodns_zone::edit::Checked`], made by whoever parsed it, so each
//! fault can point into the request); the rules that depend on the zone's
//! data are checked once, by the planner, inside the store's transaction.
//!
//! **Invariant:** an entry point returns `Ok` only after the change is
//! committed *and* served by this node's DNS workers.

pub mod audit;
pub mod catalog;
pub mod compaction;
pub mod election;
mod error;
pub mod follower;
mod locks;
pub mod secondary;
pub mod tokens;

use std::sync::Arc;

use ferrodns_forward::table::ForwarderAddr;
use ferrodns_forward::Recursion;
use ferrodns_proto::tsig::{Algorithm, Key};
use ferrodns_proto::{Name, RecordType, Serial};
use ferrodns_store::{Author, Committed, Scope, Store, StoreError, TsigKeyRecord, ZoneRecord, FORWARD_KIND};
use ferrodns_transfer::acl::{Access, KeyScope};
use ferrodns_transfer::catalog::Catalog;
use ferrodns_transfer::peers::Peers;
use ferrodns_zone::edit::{Checked, Diff, ImportMode, PackedZone, RRsetData};
use ferrodns_zone::live::{build_zone, Applied, LiveZones};
use ferrodns_zone::{RateLimit, Zone};
use tokens::{Principal, Role};

pub use election::{Election, ElectionSettings, HaSnapshot, Leadership};
pub use error::ControlError;
pub use locks::ZoneLocks;

/// Who asks for a write: who the history records (the token's name, id and
/// tenant), and what it may touch.
#[derive(Clone, Copy, Debug)]
pub struct Actor<'a> {
    pub author: Author<'a>,
    pub scope: Scope<'a>,
}

impl Actor<'_> {
    /// The operator: a scope bound to no tenant and no zone list.
    pub fn is_operator(&self) -> bool {
        self.scope.tenant.is_none() && self.scope.zones.is_none()
    }
}

/// What new zones get unless asked otherwise.
#[derive(Clone, Debug)]
pub struct ZoneDefaults {
    /// The NS RRset of a new zone, unless the request names its own.
    pub nameservers: Vec<Name>,
    /// TTL of a new zone's SOA and NS.
    pub ttl: u32,
    /// SOA refresh, retry, expire and minimum (negative-caching TTL).
    pub soa_timers: [u32; 4],
    /// The server's response rate limit (`--rrl-rate`, `--rrl-slip`; rate 0
    /// is none), which a zone follows unless it has its own.
    pub rate_limit: RateLimit,
}

impl Default for ZoneDefaults {
    fn default() -> ZoneDefaults {
        ZoneDefaults {
            nameservers: vec![Name::parse("ns.invalid.", None).expect("valid name")],
            ttl: 3600,
            soa_timers: [3600, 600, 1_209_600, 300],
            rate_limit: RateLimit { rate: 0, slip: 2 },
        }
    }
}

/// Which zone names a tenant may take. A zone is refused (unless the
/// operator creates it and says so, `allow_overlap`) when it is:
///
/// - a top-level name (one label), or `in-addr.arpa.` or `ip6.arpa.`;
/// - one of the operator's reserved names (`--reserved-zone`, exact
///   names: public suffixes such as `co.uk.`, as Designate's TLD list);
/// - equal to, inside or enclosing a zone of another tenant, or a zone a
///   zone file serves, so that no tenant answers for another's names.
///
/// A refusal says only that the name is not available, never whether
/// another tenant holds it: to them, others' zones look absent.
#[derive(Clone, Debug, Default)]
pub struct NamePolicy {
    /// Exact names only the operator may create (lowercase).
    pub reserved: Vec<Name>,
}

impl NamePolicy {
    /// Why `apex` is reserved by the policy's fixed rules or list, if it is.
    fn reserved(&self, apex: &Name) -> Option<&'static str> {
        if apex.label_count() < 2 {
            return Some("a top-level name");
        }
        let text = apex.to_string();
        if text == "in-addr.arpa." || text == "ip6.arpa." {
            return Some("a reverse-mapping root");
        }
        self.reserved.contains(apex).then_some("reserved by the operator")
    }
}

/// A zone to create.
#[derive(Clone, Debug)]
pub struct NewZone {
    /// Lowercase apex.
    pub apex: Name,
    pub tenant: String,
    /// The apex NS RRset; the defaults' when `None`.
    pub nameservers: Option<Vec<Name>>,
    /// TTL of the SOA and NS; the defaults' when `None`.
    pub ttl: Option<u32>,
    /// RFC 9432 member id for the catalog.
    pub catalog_id: String,
    /// Create it even where the [`NamePolicy`] would refuse: only the
    /// operator may ask.
    pub allow_overlap: bool,
    /// A forward zone's forwarders; `None` for a hosted zone.
    pub forwarders: Option<Vec<ForwarderAddr>>,
    /// A secondary zone's primaries (`ADDR[:PORT]` or `NAME:PORT`): the zone
    /// is made from a first transfer from them, and follows them.
    pub primaries: Option<Vec<String>>,
}

/// What the control plane knows of replication.
pub struct Replication {
    /// The transfer policy whose API keys `/v1/tsigkeys` manages.
    pub access: Arc<Access>,
    /// Serials reported by or sent to secondaries.
    pub peers: Arc<Peers>,
    /// The secondaries this primary notifies (the ones a change waits for),
    /// as last resolved.
    pub secondaries: ferrodns_transfer::notify::Addresses,
}

/// The longest a committed change waits for the change before it to be
/// served before it reloads its zone from the store instead.
pub const PUBLICATION_WAIT: std::time::Duration = std::time::Duration::from_secs(1);

/// Zones up to this many records, counting the change's, take a change on
/// the async task that published it whatever it costs: applying one costs
/// microseconds, and folding or rebuilding one well under a millisecond,
/// less than the two thread hand-offs of the blocking pool. A larger zone
/// takes a change there too when the change goes into its overlay cheaply
/// ([`ferrodns_zone::Zone::takes_change_cheaply`]); a fold or a rebuild of
/// it goes to the blocking pool.
const INLINE_PUBLISH_RECORDS: usize = 2_000;

/// The control plane of one node.
pub struct ControlPlane {
    pub store: Arc<Store>,
    pub live: Arc<LiveZones>,
    /// The catalog zone to keep in step with created and deleted zones.
    pub catalog: Option<Arc<Catalog>>,
    /// Held from a change's transaction to its publication.
    pub locks: ZoneLocks,
    /// This node's place in the election.
    pub leadership: Arc<dyn Leadership>,
    /// TSIG keys and secondaries' serials, when replication runs.
    pub replication: Option<Arc<Replication>>,
    pub defaults: ZoneDefaults,
    /// Which names tenants may take.
    pub names: NamePolicy,
    /// Where forward zones take effect on this node's DNS.
    pub forward: Option<Arc<Recursion>>,
    /// The secondary zones' refresh schedule and NOTIFY sources.
    pub secondary_zones: secondary::SecondaryZones,
    /// Tokens recently authenticated.
    pub tokens: tokens::TokenCache,
}

/// Runs a store write, timing it into
/// `ferrodns_db_transaction_duration_seconds{operation}` when it commits.
async fn timed<T>(
    operation: &str,
    write: impl std::future::Future<Output = Result<T, StoreError>>,
) -> Result<T, StoreError> {
    let started = std::time::Instant::now();
    let result = write.await;
    if result.is_ok() {
        let histogram = &ferrodns_metrics::global().db_transaction_duration;
        histogram.with_label_values(&[operation]).observe(started.elapsed().as_secs_f64());
    }
    result
}

impl ControlPlane {
    /// Applies a checked batch of changes to its zone as `actor`, if the
    /// zone's version is one of `if_match` (any when `None`): one
    /// transaction, one serial step, one history entry, then publication.
    /// The zone is read once, by the store as it locks it, which also asks
    /// [`takes_changes`] of it there.
    pub async fn change(
        &self,
        actor: Actor<'_>,
        if_match: Option<&[i64]>,
        batch: Checked,
    ) -> Result<Committed, ControlError> {
        let apex = batch.apex().clone();
        self.refuse_shadowed(&apex)?;
        let summary = audit::changes(batch.changes());
        let _publication = self.locks.share(&apex).await;
        let writable: ferrodns_store::Writable = |zone| takes_changes(zone).is_ok();
        let applied = timed(
            "change",
            self.store.apply_changes(&actor.scope, writable, if_match, batch, &summary, &actor.author, now_micros()),
        )
        .await;
        let committed = match applied {
            Err(StoreError::NotWritable(zone)) => {
                // `takes_changes` said no as the store locked the zone; it
                // says why.
                takes_changes(&zone)?;
                return Err(ControlError::Store(StoreError::NotWritable(zone)));
            }
            other => other?,
        };
        if committed.diff.is_some() {
            self.publish(&committed.zone, committed.diff.clone()).await?;
        }
        Ok(committed)
    }

    /// Imports parsed RRsets (without the SOA; `soa` is the file's) into
    /// `zone` as `actor`: one change in the history and the journal.
    pub async fn import(
        &self,
        actor: Actor<'_>,
        zone: &ZoneRecord,
        if_match: Option<&[i64]>,
        mode: ImportMode,
        rrsets: PackedZone,
        soa: Option<Vec<u8>>,
    ) -> Result<Committed, ControlError> {
        self.refuse_shadowed(&zone.name)?;
        takes_changes(zone)?;
        let count = rrsets.record_count();
        let summary = audit::import(mode, count);
        let _publication = self.locks.lock(&zone.name).await;
        let committed = timed(
            "import",
            self.store.import(
                &zone.name,
                &actor.scope,
                if_match,
                mode,
                rrsets,
                soa,
                &summary,
                &actor.author,
                now_micros(),
            ),
        )
        .await?;
        if committed.diff.is_some() {
            self.publish(&committed.zone, committed.diff.clone()).await?;
        }
        if count > 10_000 {
            // Parsing and planning a big import leaves hundreds of megabytes
            // of freed heap that glibc would otherwise keep mapped for good.
            // SAFETY: malloc_trim has no preconditions.
            tokio::task::spawn_blocking(|| unsafe { libc::malloc_trim(0) });
        }
        Ok(committed)
    }

    /// Creates a zone with the server's SOA and the given or default NS,
    /// serves it, and lists it in the catalog.
    pub async fn create_zone(&self, actor: Actor<'_>, zone: NewZone) -> Result<ZoneRecord, ControlError> {
        let apex = zone.apex.to_lowercase();
        let operator = actor.is_operator();
        if actor.scope.tenant.is_some_and(|tenant| tenant != zone.tenant) {
            return Err(ControlError::Forbidden("only the operator may create zones for another tenant".into()));
        }
        if actor.scope.zones.is_some_and(|list| !list.iter().any(|name| *name == apex.to_string())) {
            return Err(ControlError::Forbidden(format!("this token is limited to other zones than {apex}")));
        }
        if zone.allow_overlap && !operator {
            return Err(ControlError::Forbidden("only the operator may allow a zone the name policy refuses".into()));
        }
        if !zone.allow_overlap {
            self.check_name(&apex, &zone.tenant).await?;
        }
        if self.catalog.as_ref().is_some_and(|c| *c.name() == apex) {
            return Err(ControlError::Reserved { zone: apex, why: "it is this server's catalog zone" });
        }
        if self.live.is_file_zone(apex.as_wire()) {
            return Err(ControlError::Reserved { zone: apex, why: "it is served from a zone file on this server" });
        }
        if self.forward.as_ref().is_some_and(|forward| forward.is_fixed_zone(&apex)) {
            return Err(ControlError::Reserved { zone: apex, why: "it is forwarded by --forward-zone on this server" });
        }
        if let Some(forwarders) = zone.forwarders {
            let forwarders: Vec<String> = forwarders.iter().map(|f| f.to_string()).collect();
            let (record, _) = self
                .store
                .create_zone(
                    &apex,
                    &zone.tenant,
                    FORWARD_KIND,
                    Vec::new(),
                    Some(&forwarders),
                    &zone.catalog_id,
                    &actor.author,
                    now_micros(),
                )
                .await?;
            self.refresh_forward_zones().await?;
            catalog::sync(self, catalog::CatalogSync::Full).await;
            tracing::info!(zone = %apex, ?forwarders, by = actor.author.token, "forward zone created");
            return Ok(record);
        }
        if let Some(primaries) = zone.primaries {
            return self.create_secondary_zone(actor, &apex, &zone.tenant, &zone.catalog_id, primaries).await;
        }
        let nameservers = zone.nameservers.unwrap_or_else(|| self.defaults.nameservers.clone());
        let Some(primary) = nameservers.first() else {
            return Err(ControlError::Invalid("a zone needs at least one nameserver".to_string()));
        };
        let ttl = zone.ttl.unwrap_or(self.defaults.ttl);
        let now = now_micros();
        let serial = ferrodns_store::initial_serial(self.store.options().serial_policy, now);
        let hostmaster = Name::parse("hostmaster", Some(&apex)).map_err(|e| ControlError::Invalid(e.to_string()))?;
        let soa = ferrodns_proto::rdata::soa_rdata(primary, &hostmaster, serial, self.defaults.soa_timers);
        let rrsets = vec![
            RRsetData::new(&apex, RecordType::SOA, ttl, vec![soa]),
            RRsetData::new(&apex, RecordType::NS, ttl, nameservers.iter().map(|n| n.as_wire().to_vec()).collect()),
        ];
        // Held from the commit to the publication, as a change holds it: the
        // follower, woken by the commit, must find the zone served (or wait),
        // not load it itself and report it made on another node.
        let publication = self.locks.lock(&apex).await;
        let (record, _diff) = timed(
            "create_zone",
            self.store.create_zone(&apex, &zone.tenant, "primary", rrsets, None, &zone.catalog_id, &actor.author, now),
        )
        .await?;
        self.publish(&record, None).await?;
        drop(publication);
        catalog::sync(self, catalog::CatalogSync::Full).await;
        Ok(record)
    }

    /// Creates a secondary zone from a first AXFR from `primaries`, at the
    /// primary's serial, and lists it in the catalog. The transfer's data
    /// goes through the import path, so the zone rules check it.
    async fn create_secondary_zone(
        &self,
        actor: Actor<'_>,
        apex: &Name,
        tenant: &str,
        catalog_id: &str,
        primaries: Vec<String>,
    ) -> Result<ZoneRecord, ControlError> {
        let targets = secondary::parse_primaries(&primaries).map_err(ControlError::Invalid)?;
        let key = self.replication.as_ref().and_then(|r| r.access.keys.first().cloned());
        let (records, from) = secondary::transfer_whole(&targets, apex, key.as_ref())
            .await
            .map_err(|e| ControlError::Invalid(format!("cannot transfer {apex} from its primaries: {e}")))?;
        let (packed, soa, soa_ttl) = secondary::as_import(apex, &records).map_err(ControlError::Invalid)?;
        self.secondary_zones.remember(apex, vec![from.ip()]);
        let serial = ferrodns_proto::rdata::soa_serial(&soa).ok_or_else(|| ControlError::Invalid("bad SOA".into()))?;
        let ns: Vec<Vec<u8>> = packed
            .rrsets()
            .filter(|set| set.rtype == RecordType::NS && set.owner == apex.to_lowercase().as_wire())
            .flat_map(|set| set.rdatas().map(<[u8]>::to_vec).collect::<Vec<_>>())
            .collect();
        if ns.is_empty() {
            return Err(ControlError::Invalid(format!("the transfer of {apex} from {from} holds no apex NS")));
        }
        // Made one serial below the primary's, and brought to it by the
        // import, so that the zone ends at the primary's serial with its
        // data checked by the zone rules. Nothing is published before.
        let first_soa = ferrodns_proto::rdata::with_soa_serial(&soa, Serial(serial.0.wrapping_sub(1)))
            .ok_or_else(|| ControlError::Invalid("bad SOA".into()))?;
        // The SOA keeps the primary's TTL; the import sets the NS's.
        let rrsets = vec![
            RRsetData::new(apex, RecordType::SOA, soa_ttl, vec![first_soa]),
            RRsetData::new(apex, RecordType::NS, soa_ttl, ns),
        ];
        let publication = self.locks.lock(apex).await;
        let (record, _) = self
            .store
            .create_zone(
                apex,
                tenant,
                ferrodns_store::SECONDARY_KIND,
                rrsets,
                Some(&primaries),
                catalog_id,
                &actor.author,
                now_micros(),
            )
            .await?;
        drop(publication);
        let committed = self.write_transfer(&record, packed, soa).await?;
        catalog::sync(self, catalog::CatalogSync::Full).await;
        tracing::info!(zone = %apex, %from, serial = committed.zone.serial.0, by = actor.author.token, "secondary zone created");
        Ok(committed.zone)
    }

    /// Changes a secondary zone's primaries, or (with `None`) makes it a
    /// primary zone that the API writes from now on, keeping its data and
    /// serial.
    pub async fn set_primaries(
        &self,
        actor: Actor<'_>,
        zone: &ZoneRecord,
        if_match: Option<&[i64]>,
        primaries: Option<Vec<String>>,
    ) -> Result<ZoneRecord, ControlError> {
        if !zone.is_secondary() {
            return Err(ControlError::Invalid(format!(
                "{} is a {} zone; only a secondary zone has primaries",
                zone.name, zone.kind
            )));
        }
        if let Some(list) = &primaries {
            secondary::parse_primaries(list).map_err(ControlError::Invalid)?;
        }
        let record = self
            .store
            .set_primaries(&zone.name, &actor.scope, if_match, primaries.as_deref(), &actor.author, now_micros())
            .await?;
        match &primaries {
            Some(list) => {
                tracing::info!(zone = %zone.name, primaries = ?list, by = actor.author.token, "secondary zone's primaries changed")
            }
            None => {
                tracing::info!(zone = %zone.name, serial = record.serial.0, by = actor.author.token, "secondary zone made a primary; the API writes it from now on")
            }
        }
        Ok(record)
    }

    /// Refuses a zone name the [`NamePolicy`] keeps from `tenant`. A zone of
    /// the same tenant at the same name is `Exists`, as before; anything
    /// else is `Unavailable`, which does not say which rule applied.
    async fn check_name(&self, apex: &Name, tenant: &str) -> Result<(), ControlError> {
        let unavailable = |why: &str| {
            tracing::info!(zone = %apex, tenant, why, "zone name refused");
            ControlError::Unavailable(apex.clone())
        };
        if let Some(why) = self.names.reserved(apex) {
            return Err(unavailable(why));
        }
        if self.live.overlaps_file_zone(apex.as_wire()) && !self.live.is_file_zone(apex.as_wire()) {
            return Err(unavailable("overlaps a zone file's zone"));
        }
        for other in self.store.zones_related_to(apex).await? {
            if other.tenant == tenant && other.name == *apex {
                return Err(ControlError::Store(StoreError::Exists));
            }
            if other.tenant != tenant {
                return Err(unavailable("overlaps another tenant's zone"));
            }
        }
        Ok(())
    }

    /// Gives a zone a response rate limit of its own, or (`None`) returns
    /// it to the server's, if the zone's version is one of `if_match`; DNS
    /// applies it before this returns. Only the operator may loosen the
    /// server's protection: anyone else may set a rate between 1 and the
    /// server's (any rate from 1 when the server limits nothing), never 0,
    /// which leaves the zone's answers unlimited.
    pub async fn set_rate_limit(
        &self,
        actor: Actor<'_>,
        zone: &ZoneRecord,
        if_match: Option<&[i64]>,
        limit: Option<RateLimit>,
    ) -> Result<ZoneRecord, ControlError> {
        self.refuse_shadowed(&zone.name)?;
        refuse_forward(zone)?;
        if let Some(limit) = limit {
            if limit.rate > RateLimit::MAX_RATE || limit.slip > RateLimit::MAX_SLIP {
                return Err(ControlError::Invalid(format!(
                    "a rate limit has a rate of at most {} responses a second and a slip of at most {}",
                    RateLimit::MAX_RATE,
                    RateLimit::MAX_SLIP
                )));
            }
            let operator = actor.is_operator();
            let server = self.defaults.rate_limit.rate;
            if !operator && (limit.rate == 0 || (server != 0 && limit.rate > server)) {
                return Err(ControlError::Forbidden(match server {
                    0 => "only the operator may leave a zone's answers unlimited (rate 0)".to_string(),
                    _ => format!(
                        "only the operator may loosen the server's rate limit: the rate must be between 1 and {server}"
                    ),
                }));
            }
        }
        let _publication = self.locks.lock(&zone.name).await;
        let record = self.store.set_rate_limit(&zone.name, &actor.scope, if_match, limit, now_micros()).await?;
        self.serve_settings(&record);
        tracing::info!(zone = %record.name, rate_limit = ?record.rate_limit, by = actor.author.token, "zone rate limit set");
        Ok(record)
    }

    /// Replaces a forward zone's forwarders, if its version is one of
    /// `if_match`; DNS uses them before this returns.
    pub async fn set_forwarders(
        &self,
        actor: Actor<'_>,
        zone: &ZoneRecord,
        if_match: Option<&[i64]>,
        forwarders: &[ForwarderAddr],
    ) -> Result<ZoneRecord, ControlError> {
        if !zone.is_forward() {
            return Err(ControlError::Invalid(format!(
                "{} is a hosted zone: only a forward zone has forwarders",
                zone.name
            )));
        }
        let forwarders: Vec<String> = forwarders.iter().map(|f| f.to_string()).collect();
        let _publication = self.locks.lock(&zone.name).await;
        let record = self
            .store
            .set_forwarders(&zone.name, &actor.scope, if_match, &forwarders, &actor.author, now_micros())
            .await?;
        self.refresh_forward_zones().await?;
        drop(_publication);
        catalog::sync(self, catalog::CatalogSync::Full).await;
        tracing::info!(zone = %record.name, ?forwarders, by = actor.author.token, "forwarders set");
        Ok(record)
    }

    /// Reads the stored forward zones and has this node's DNS use them.
    pub async fn refresh_forward_zones(&self) -> Result<(), ControlError> {
        let Some(forward) = &self.forward else { return Ok(()) };
        forward.set_stored_zones_text(self.store.forward_zones().await?, "the database");
        Ok(())
    }

    /// Deletes a zone, if its version is one of `if_match`; DNS stops
    /// answering for it before this returns.
    pub async fn delete_zone(&self, zone: &ZoneRecord, if_match: Option<&[i64]>) -> Result<(), ControlError> {
        let publication = self.locks.lock(&zone.name).await;
        timed("delete_zone", self.store.delete_zone(zone.id, if_match)).await?;
        if zone.is_forward() {
            self.refresh_forward_zones().await?;
        } else {
            self.live.remove_zone(zone.name.as_wire());
            if let Some(replication) = &self.replication {
                replication.peers.forget(&zone.name);
            }
        }
        drop(publication);
        self.locks.forget(&zone.name);
        catalog::sync(self, catalog::CatalogSync::Full).await;
        Ok(())
    }

    /// Stores a TSIG key and makes transfers and NOTIFY accept it.
    pub async fn create_tsig_key(&self, by: &Principal, mut key: TsigKeyRecord) -> Result<TsigKeyRecord, ControlError> {
        by.require(Role::Admin)?;
        let name = Name::parse(&key.name, None).map_err(|e| ControlError::Invalid(e.to_string()))?;
        if self.replication.as_ref().is_some_and(|r| r.access.is_configured(&name)) {
            return Err(ControlError::Reserved { zone: name, why: "it is a key from the server's configuration" });
        }
        // Anyone but the operator makes keys for its own tenant and zones.
        if !by.is_operator() {
            key.tenant.get_or_insert_with(|| by.token.tenant.clone());
            if key.zones.is_none() {
                key.zones = by.token.zones.clone();
            }
        }
        if !by.covers_key(&key) {
            return Err(ControlError::Forbidden(
                "a key may reach only the zones of this token's tenant, within its zone list".into(),
            ));
        }
        self.store.create_tsig_key(&key).await?;
        self.load_tsig_keys().await?;
        Ok(key)
    }

    /// The keys made through the API that `by` covers.
    pub async fn list_tsig_keys(&self, by: &Principal) -> Result<Vec<TsigKeyRecord>, ControlError> {
        by.require(Role::Admin)?;
        let mut keys = self.store.tsig_keys().await?;
        keys.retain(|key| by.covers_key(key));
        Ok(keys)
    }

    /// Removes a TSIG key; transfers signed with it fail from the next request.
    pub async fn delete_tsig_key(&self, by: &Principal, name: &Name) -> Result<(), ControlError> {
        by.require(Role::Admin)?;
        if self.replication.as_ref().is_some_and(|r| r.access.is_configured(name)) {
            return Err(ControlError::Reserved {
                zone: name.clone(),
                why: "it is a key from the server's configuration; change the configuration to remove it",
            });
        }
        let text = name.to_string();
        if !self.store.tsig_keys().await?.iter().any(|key| key.name == text && by.covers_key(key)) {
            return Err(ControlError::Store(StoreError::NotFound));
        }
        self.store.delete_tsig_key(&text).await?;
        self.load_tsig_keys().await
    }

    /// Loads the stored TSIG keys into the transfer policy.
    pub async fn load_tsig_keys(&self) -> Result<(), ControlError> {
        let Some(replication) = &self.replication else { return Ok(()) };
        let records = self.store.tsig_keys().await?;
        let keys = records
            .iter()
            .filter_map(|r| {
                let key = Key {
                    name: Name::parse(&r.name, None).ok()?,
                    algorithm: Algorithm::from_name(&r.algorithm)?,
                    secret: r.secret.clone(),
                };
                let zones = match &r.zones {
                    Some(list) => Some(
                        list.iter()
                            .map(|z| Name::parse(z, None).map(|n| n.to_lowercase()))
                            .collect::<Result<Vec<_>, _>>()
                            .ok()?,
                    ),
                    None => None,
                };
                Some((key, KeyScope { tenant: r.tenant.clone(), zones }))
            })
            .collect();
        replication.access.set_api_keys(keys);
        Ok(())
    }

    /// Refuses a write to a stored zone that a `--zone-file` of this server
    /// shadows: DNS serves the file, so the write would never be served.
    fn refuse_shadowed(&self, apex: &Name) -> Result<(), ControlError> {
        if self.live.is_file_zone(apex.as_wire()) {
            return Err(ControlError::Shadowed(apex.clone()));
        }
        Ok(())
    }

    /// Makes a committed change visible to this node's DNS workers: applies
    /// the diff on top of the served zone, or reloads the zone from the store
    /// when the served copy is not at the diff's starting serial.
    ///
    /// A change whose predecessor (a change committed just before it, by
    /// this node) is not served yet waits for it, up to
    /// [`PUBLICATION_WAIT`], before it reloads instead.
    pub async fn publish(&self, zone: &ZoneRecord, diff: Option<Arc<Diff>>) -> Result<(), ControlError> {
        if let Some(diff) = diff {
            let key = zone.name.as_wire().to_vec();
            let deadline = tokio::time::Instant::now() + PUBLICATION_WAIT;
            loop {
                let turn = self.locks.published.notified();
                // The zone's size after the change, not before: an import
                // into a new zone is a small zone and a large diff.
                let records = diff.added.len() + diff.removed.len();
                let cheap = self.live.snapshot().get(&key).is_some_and(|z| {
                    z.record_count() + records <= INLINE_PUBLISH_RECORDS || z.takes_change_cheaply(records)
                });
                let applied = if cheap {
                    self.live.apply(&key, &diff)
                } else {
                    let live = self.live.clone();
                    let (key_, diff_) = (key.clone(), diff.clone());
                    tokio::task::spawn_blocking(move || live.apply(&key_, &diff_))
                        .await
                        .map_err(|e| ControlError::Internal(format!("publishing task failed: {e}")))?
                };
                match applied {
                    Ok(Applied::Published | Applied::AlreadyServed) => {
                        self.locks.published.notify_waiters();
                        return Ok(());
                    }
                    Ok(Applied::Gap) => {
                        let Some(served) = self.live.snapshot().get(&key).map(|z| z.serial()) else { break };
                        if served == diff.old_serial && tokio::time::Instant::now() < deadline {
                            // The predecessor was published just after the
                            // attempt: try again, rather than reload.
                            continue;
                        }
                        if diff.old_serial.is_newer_than(served)
                            && tokio::time::timeout_at(deadline, turn).await.is_ok()
                        {
                            continue;
                        }
                        break;
                    }
                    Err(errors) => {
                        tracing::error!(zone = %zone.name, ?errors, "a committed change did not apply to the served zone; reloading it");
                        break;
                    }
                }
            }
        }
        let reloaded = self.reload(zone).await;
        self.locks.published.notify_waiters();
        reloaded
    }

    /// Loads a zone from the store and serves it.
    pub async fn reload(&self, zone: &ZoneRecord) -> Result<(), ControlError> {
        let rrsets = self.store.zone_rrsets(zone.id).await.map_err(|e| match e {
            StoreError::Unavailable(detail) => ControlError::CommittedNotServed { zone: zone.name.clone(), detail },
            other => ControlError::Store(other),
        })?;
        let live = self.live.clone();
        let apex = zone.name.clone();
        tokio::task::spawn_blocking(move || {
            let built = build_zone(&apex, rrsets.iter())
                .map_err(|errors| ControlError::Internal(format!("stored zone {apex} does not build: {errors:?}")))?;
            live.publish_zone(built);
            Ok::<(), ControlError>(())
        })
        .await
        .map_err(|e| ControlError::Internal(format!("publishing task failed: {e}")))??;
        self.serve_settings(zone);
        Ok(())
    }

    /// Gives the served zone the settings `zone` has in the store (its rate
    /// limit). Later versions keep them ([`ferrodns_zone::ZoneSet::insert`]).
    pub fn serve_settings(&self, zone: &ZoneRecord) {
        self.serve_rate_limit(&zone.name, zone.rate_limit);
    }

    /// Gives the zone served at `apex` its own rate limit (`None`: the
    /// server's).
    pub fn serve_rate_limit(&self, apex: &Name, rate_limit: Option<RateLimit>) {
        if let Some(served) = self.live.snapshot().get(apex.as_wire()) {
            if served.rate_limit() != rate_limit {
                served.set_rate_limit(rate_limit);
            }
        }
    }
}

/// A stored zone built to be served, with its own rate limit; `None`, and
/// an error in the log, when its stored RRsets do not build: start-up and
/// the follower's catch-up serve the other zones without it.
pub fn build_stored_zone(apex: &Name, rate_limit: Option<RateLimit>, rrsets: &[RRsetData]) -> Option<Zone> {
    match build_zone(apex, rrsets.iter()) {
        Ok(zone) => {
            zone.set_rate_limit(rate_limit);
            Some(zone)
        }
        Err(errors) => {
            tracing::error!(zone = %apex, ?errors, "stored zone does not build; not serving it");
            None
        }
    }
}

/// A forward zone holds no records and no hosted zone's settings.
fn refuse_forward(zone: &ZoneRecord) -> Result<(), ControlError> {
    if zone.is_forward() {
        return Err(ControlError::Forward(zone.name.clone()));
    }
    Ok(())
}

/// Only transfers from its primaries write a secondary zone.
fn refuse_secondary(zone: &ZoneRecord) -> Result<(), ControlError> {
    if zone.is_secondary() {
        return Err(ControlError::Secondary(zone.name.clone()));
    }
    Ok(())
}

/// Which zones take changes of their records (and imports): primary zones
/// only, neither forward nor secondary ones.
fn takes_changes(zone: &ZoneRecord) -> Result<(), ControlError> {
    refuse_forward(zone)?;
    refuse_secondary(zone)
}

/// Microseconds since the Unix epoch: the store's and the history's time.
pub fn now_micros() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_micros() as i64)
}

#[cfg(test)]
mod tests {
    use super::*;
    use ferrodns_forward::HostedZones;
    use ferrodns_store::StoreOptions;

    struct NoHostedZones;

    impl HostedZones for NoHostedZones {
        fn deepest_apex_len(&self, _: &[u8]) -> usize {
            0
        }
    }

    /// A control plane on a new SQLite store, forwarding, with no catalog.
    async fn plane(dir: &std::path::Path) -> ControlPlane {
        std::fs::create_dir_all(dir).unwrap();
        let store = Store::open(&Store::sqlite_url(dir), StoreOptions::default()).await.unwrap();
        let settings =
            ElectionSettings { lease: std::time::Duration::from_secs(2), renew: std::time::Duration::from_millis(500) };
        let clock = Arc::new(ferrodns_transfer::clock::SystemClock);
        ControlPlane {
            store: Arc::new(store),
            live: Arc::new(LiveZones::new(ferrodns_zone::ZoneSet::new())),
            catalog: None,
            locks: ZoneLocks::default(),
            leadership: Election::new("test".into(), settings, true, clock),
            replication: None,
            defaults: ZoneDefaults::default(),
            names: NamePolicy::default(),
            forward: Some(Recursion::new(&Default::default(), Arc::new(NoHostedZones)).unwrap()),
            secondary_zones: Default::default(),
            tokens: Default::default(),
        }
    }

    #[tokio::test]
    async fn a_deleted_forward_zone_leaves_no_lock_behind() {
        let dir = std::env::temp_dir().join(format!("ferrodns-control-locks-{}", std::process::id()));
        let plane = plane(&dir).await;
        let author = Author { name: "test", token: "t1", tenant: "system" };
        let actor = Actor { author, scope: Scope { tenant: None, zones: None } };
        let forwarder = |text| vec![ForwarderAddr::parse(text).unwrap()];
        let new_zone = NewZone {
            apex: Name::parse("corp.example.", None).unwrap(),
            tenant: "system".into(),
            nameservers: None,
            ttl: None,
            catalog_id: "c1".into(),
            allow_overlap: false,
            forwarders: Some(forwarder("192.0.2.53")),
            primaries: None,
        };
        let zone = plane.create_zone(actor, new_zone).await.unwrap();
        let zone = plane.set_forwarders(actor, &zone, None, &forwarder("192.0.2.54")).await.unwrap();
        assert_eq!(plane.locks.len(), 1);
        plane.delete_zone(&zone, None).await.unwrap();
        assert_eq!(plane.locks.len(), 0, "a zone created and deleted again and again must not grow the lock table");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
