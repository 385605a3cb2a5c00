//! The secondary role: follow zones from primaries (ferrodns, BIND, Knot …).
//!
//! ```text
//!   catalog zone ──(members)──▶ one task per zone ◀── NOTIFY from a primary
//!                                  │   ▲ refresh / retry timers (SOA)
//!                                  ▼   │
//!   primaries in order: SOA query ─▶ IXFR from our serial ─▶ (AXFR fallback)
//!                                  │
//!                                  ▼ checked, built, published whole
//!   LiveZones (served)  +  <data-dir>/secondary/<zone>.zone (persisted)
//! ```
//!
//! A transfer that is cut short, fails TSIG, is over the limits, or does not
//! follow on from our serial changes nothing: the previous version keeps
//! serving and the reason is logged. Zones are written to the data directory
//! after each transfer and read back at start, so a restarted secondary
//! serves at once without any primary. A zone not refreshed within its SOA
//! expire answers SERVFAIL until a primary is reached again.
//!
//! At most [`REFRESHES_IN_FLIGHT`] zones refresh at once (SOA query and
//! transfer), whatever the catalog lists, and every SOA query goes through
//! one shared socket per address family ([`crate::exchange`]), so a catalog
//! of many members whose primaries do not answer costs two sockets and a
//! bounded number of waiting queries, not a socket and buffer per member. They are two lanes of half that each: zones whose last
//! refresh succeeded (or that are served from a kept copy) take one, zones
//! not yet transferred or whose last refresh failed the other, so that
//! thousands of silent members queue behind each other and never in front
//! of a zone whose primary answers. Retry and refresh waits are jittered by
//! up to a tenth, so zones that failed together do not all retry together.
//!
//! The SOA timers read and wait on tokio's clock (`tokio::time::Instant`,
//! `sleep`), which is the monotonic clock in service and one a test pauses
//! and moves: a test of refresh, retry and expiry takes no real time.

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use tokio::time::Instant;

use ferrodns_proto::rdata::soa_serial;
use ferrodns_proto::tsig::Key;
use ferrodns_proto::{Name, RecordType, Serial};
use ferrodns_zone::edit::{Diff, Record, Records};
use ferrodns_zone::live::{apply_to_zone, LiveZones};
use ferrodns_zone::writer::write_zone;
use ferrodns_zone::{load_zone_file, Zone, ZoneBuilder};
use sha2::Digest;
use tokio::sync::Notify;
use tokio::task::JoinHandle;

use crate::client::{self, ClientError, TransferLimits};
use crate::exchange::UdpExchange;
use crate::primary::NotifyListener;
use crate::target::Target;

/// What the secondary role needs to know.
#[derive(Clone, Debug)]
pub struct SecondarySettings {
    /// Primaries, tried in order (names are resolved at each refresh).
    pub primaries: Vec<Target>,
    /// Signs SOA queries and transfers, and checks the answers.
    pub key: Option<Key>,
    /// A catalog zone to follow; its members are followed too.
    pub catalog: Option<Name>,
    /// Zones followed whatever the catalog says.
    pub zones: Vec<Name>,
    pub data_dir: PathBuf,
    pub limits: TransferLimits,
    /// Told the forward zones the catalog carries, whenever it is read.
    pub forward_zones: Option<ForwardZonesSink>,
}

/// Where a secondary hands the forward zones its catalog carries.
#[derive(Clone)]
pub struct ForwardZonesSink(pub Arc<dyn Fn(Vec<crate::catalog::ForwardEntry>) + Send + Sync>);

impl std::fmt::Debug for ForwardZonesSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ForwardZonesSink")
    }
}

#[derive(Clone, Debug, Default)]
struct Attempt {
    primary: Option<SocketAddr>,
    error: Option<String>,
    next_at: Option<Instant>,
}

struct Followed {
    wake: Arc<Notify>,
    task: JoinHandle<()>,
    /// The catalog member id it was added under (None: configured).
    member_id: Option<String>,
}

/// A followed zone's state; see [`Secondary::followed_zones`].
#[derive(Clone, Debug)]
pub struct FollowedZone {
    pub apex: Name,
    pub serial: Option<Serial>,
    pub expired: bool,
    pub confirmed_ago: Option<Duration>,
    /// The SOA expire of the served copy.
    pub expire: Option<Duration>,
    /// The primary that answered the last successful refresh.
    pub primary: Option<SocketAddr>,
    /// Why the last refresh failed, if it did.
    pub last_error: Option<String>,
    pub next_refresh_in: Option<Duration>,
}

impl FollowedZone {
    /// Loaded and not expired: what readiness asks of every zone.
    pub fn is_ready(&self) -> bool {
        self.serial.is_some() && !self.expired
    }

    /// How long until the zone expires unless a primary is reached (zero
    /// once past it); `None` until it has been confirmed once.
    pub fn expires_in(&self) -> Option<Duration> {
        Some(self.expire?.saturating_sub(self.confirmed_ago?))
    }
}

/// The running secondary role.
pub struct Secondary {
    settings: SecondarySettings,
    live: Arc<LiveZones>,
    followed: Mutex<HashMap<Name, Followed>>,
    /// When each zone was last confirmed current with a primary.
    refreshed: Mutex<HashMap<Name, Instant>>,
    /// Each zone's last refresh: the primary that answered, the error when
    /// none did, and when the next one is due.
    attempts: Mutex<HashMap<Name, Attempt>>,
    /// The primaries' addresses as last resolved: NOTIFY is taken from these.
    primary_ips: Mutex<std::collections::HashSet<std::net::IpAddr>>,
    /// One permit per refresh in flight of a zone whose last refresh
    /// succeeded, and of one not yet transferred or whose last refresh failed.
    answering: tokio::sync::Semaphore,
    unproven: tokio::sync::Semaphore,
    /// One socket per address family for every SOA query.
    exchange: UdpExchange,
}

/// Timers used until a zone has an SOA of its own.
const FIRST_RETRY: Duration = Duration::from_secs(5);

/// Zones that may refresh (SOA query, then a transfer) at once: half of
/// them zones whose last refresh succeeded, half the others.
pub const REFRESHES_IN_FLIGHT: usize = 32;
const LANE: usize = REFRESHES_IN_FLIGHT / 2;

impl Secondary {
    /// Loads the zones kept in the data directory, serves them, and starts
    /// following the configured zones and the catalog.
    pub fn start(settings: SecondarySettings, live: Arc<LiveZones>) -> std::io::Result<Arc<Secondary>> {
        std::fs::create_dir_all(settings.data_dir.join("secondary"))?;
        let secondary = Arc::new(Secondary {
            settings,
            live,
            followed: Mutex::new(HashMap::new()),
            refreshed: Mutex::new(HashMap::new()),
            attempts: Mutex::new(HashMap::new()),
            primary_ips: Mutex::new(Default::default()),
            answering: tokio::sync::Semaphore::new(LANE),
            unproven: tokio::sync::Semaphore::new(LANE),
            exchange: UdpExchange::default(),
        });
        {
            let mut ips = secondary.primary_ips.lock().unwrap_or_else(|e| e.into_inner());
            ips.extend(secondary.settings.primaries.iter().filter_map(|t| t.address()).map(|a| a.ip()));
        }
        secondary.load_persisted();
        for apex in secondary.settings.zones.clone() {
            secondary.follow(&apex, None);
        }
        if let Some(catalog) = secondary.settings.catalog.clone() {
            secondary.follow(&catalog, None);
            // Members known from the persisted catalog start at once.
            secondary.reconcile_catalog();
        }
        Ok(secondary)
    }

    /// Every followed zone as this node serves it, for the readiness probe
    /// and `/metrics`: its serial (none until the first transfer), whether
    /// it expired, and how long ago a primary last confirmed it current.
    pub fn followed_zones(&self) -> Vec<FollowedZone> {
        let served = self.live.snapshot();
        let refreshed = self.refreshed.lock().unwrap_or_else(|e| e.into_inner()).clone();
        let attempts = self.attempts.lock().unwrap_or_else(|e| e.into_inner()).clone();
        let followed = self.followed.lock().unwrap_or_else(|e| e.into_inner());
        let mut zones: Vec<FollowedZone> = followed
            .keys()
            .map(|apex| {
                let zone = served.get(apex.as_wire());
                let attempt = attempts.get(apex).cloned().unwrap_or_default();
                FollowedZone {
                    primary: attempt.primary,
                    last_error: attempt.error,
                    next_refresh_in: attempt.next_at.map(|at| at.saturating_duration_since(Instant::now())),
                    apex: apex.clone(),
                    serial: zone.map(|z| z.serial()),
                    expired: zone.is_some_and(|z| z.is_expired()),
                    confirmed_ago: refreshed.get(apex).map(|at| at.elapsed()),
                    expire: zone.map(|z| timers(Some(z)).2),
                }
            })
            .collect();
        zones.sort_by(|a, b| a.apex.cmp(&b.apex));
        zones
    }

    fn zone_path(&self, apex: &Name) -> PathBuf {
        self.settings.data_dir.join("secondary").join(kept_file_name(apex))
    }

    fn load_persisted(&self) {
        let dir = self.settings.data_dir.join("secondary");
        let Ok(entries) = std::fs::read_dir(&dir) else { return };
        for entry in entries.flatten() {
            let path = entry.path();
            if path.extension().and_then(|e| e.to_str()) != Some("zone") {
                continue;
            }
            match load_zone_file(&path, false) {
                Ok(loaded) => {
                    let apex = loaded.zone.apex().to_lowercase();
                    // A copy kept under an earlier naming moves to its name now, so
                    // that the next transfer replaces it rather than leaving a
                    // second, older copy to load at the next start.
                    let path = {
                        let named = self.zone_path(&apex);
                        if named != path && std::fs::rename(&path, &named).is_err() {
                            tracing::warn!(file = %path.display(), "cannot rename the kept copy to {}", named.display());
                        }
                        named
                    };
                    // The file's time is when the zone was last confirmed current;
                    // a copy older than the clock reaches back counts as never.
                    let modified = entry.metadata().and_then(|m| m.modified()).unwrap_or(SystemTime::UNIX_EPOCH);
                    let age = SystemTime::now().duration_since(modified).unwrap_or(Duration::ZERO);
                    tracing::info!(zone = %apex, serial = loaded.zone.serial().0, file = %path.display(), "serving the kept copy");
                    if let Some(when) = Instant::now().checked_sub(age) {
                        self.refreshed.lock().unwrap_or_else(|e| e.into_inner()).insert(apex.clone(), when);
                    }
                    self.live.publish_zone(loaded.zone);
                }
                Err(e) => tracing::warn!(file = %path.display(), "kept zone does not load, ignoring it: {e}"),
            }
        }
    }

    /// Starts following a zone (no-op if followed under the same id).
    fn follow(self: &Arc<Self>, apex: &Name, member_id: Option<String>) {
        let apex = apex.to_lowercase();
        let mut followed = self.followed.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(existing) = followed.get(&apex) {
            if existing.member_id == member_id {
                return;
            }
            // RFC 9432 §5.4: a new unique id means a new zone; start afresh.
            existing.task.abort();
            self.drop_zone(&apex);
            tracing::info!(zone = %apex, "catalog member id changed; transferring the zone afresh");
        }
        let wake = Arc::new(Notify::new());
        let task = tokio::spawn(run_zone(self.clone(), apex.clone(), wake.clone()));
        followed.insert(apex, Followed { wake, task, member_id });
    }

    fn unfollow(&self, apex: &Name) {
        if let Some(gone) = self.followed.lock().unwrap_or_else(|e| e.into_inner()).remove(apex) {
            gone.task.abort();
            self.drop_zone(apex);
            tracing::info!(zone = %apex, "no longer in the catalog; dropped");
        }
    }

    fn drop_zone(&self, apex: &Name) {
        self.live.remove_zone(apex.as_wire());
        let _ = std::fs::remove_file(self.zone_path(apex));
        self.refreshed.lock().unwrap_or_else(|e| e.into_inner()).remove(apex);
        self.attempts.lock().unwrap_or_else(|e| e.into_inner()).remove(apex);
    }

    /// Follows the catalog's members, drops zones that left it.
    fn reconcile_catalog(self: &Arc<Self>) {
        let Some(catalog) = &self.settings.catalog else { return };
        let zones = self.live.snapshot();
        let Some(zone) = zones.get(catalog.as_wire()) else { return };
        let members = catalog_members(zone);
        if let Some(sink) = &self.settings.forward_zones {
            (sink.0)(crate::catalog::forward_zones(zone));
        }
        let configured: Vec<Name> = self.settings.zones.iter().map(Name::to_lowercase).collect();
        let stale: Vec<Name> = {
            let followed = self.followed.lock().unwrap_or_else(|e| e.into_inner());
            followed
                .iter()
                .filter(|(apex, f)| f.member_id.is_some() && !members.contains_key(*apex))
                .map(|(apex, _)| apex.clone())
                .collect()
        };
        for apex in stale {
            self.unfollow(&apex);
        }
        for (apex, id) in members {
            if apex != *catalog && !configured.contains(&apex) {
                self.follow(&apex, Some(id));
            }
        }
    }

    /// One refresh of a zone: the first primary that answers decides.
    async fn refresh(&self, apex: &Name) -> Result<Serial, String> {
        let mut reasons = Vec::new();
        for target in &self.settings.primaries {
            let addresses = target.resolve().await;
            if addresses.is_empty() {
                reasons.push(format!("{target}: does not resolve"));
            }
            self.primary_ips.lock().unwrap_or_else(|e| e.into_inner()).extend(addresses.iter().map(|a| a.ip()));
            for primary in addresses {
                match self.refresh_from(primary, apex).await {
                    Ok(serial) => {
                        let mut attempts = self.attempts.lock().unwrap_or_else(|e| e.into_inner());
                        let attempt = attempts.entry(apex.clone()).or_default();
                        (attempt.primary, attempt.error) = (Some(primary), None);
                        return Ok(serial);
                    }
                    Err(e) => {
                        tracing::warn!(zone = %apex, %primary, "refresh failed, keeping the served version: {e}");
                        // What failed: the SOA query, or the transfer after it.
                        let step =
                            ["SOA", "AXFR", "IXFR"].into_iter().find(|step| e.starts_with(step)).unwrap_or("IXFR");
                        ferrodns_metrics::global().transfers_in.with_label_values(&[step, "failed"]).inc();
                        reasons.push(format!("{primary}: {e}"));
                    }
                }
            }
        }
        let mut reason = reasons.join("; ");
        if reason.len() > 500 {
            let cut = (0..=500).rev().find(|&i| reason.is_char_boundary(i)).unwrap_or(0);
            reason.truncate(cut);
            reason.push('…');
        }
        self.attempts.lock().unwrap_or_else(|e| e.into_inner()).entry(apex.clone()).or_default().error =
            Some(reason.clone());
        Err(reason)
    }

    async fn refresh_from(&self, primary: SocketAddr, apex: &Name) -> Result<Serial, String> {
        let key = self.settings.key.as_ref();
        let served = self.live.snapshot().get(apex.as_wire()).cloned();
        let theirs = client::query_soa(&self.exchange, primary, apex, key, Duration::from_secs(3))
            .await
            .map_err(|e| format!("SOA query: {e}"))?;
        if let Some(served) = &served {
            if !theirs.is_newer_than(served.serial()) {
                return Ok(served.serial());
            }
        }
        let limits = self.settings.limits;
        // Building a zone from a transfer, and writing it to disk below, can
        // take seconds for a big zone: both run off the async workers.
        let axfr = |records: Vec<Record>| {
            let apex = apex.clone();
            off_workers(move || from_axfr(&apex, records).map(|zone| (zone, "AXFR")))
        };
        let (zone, method) = match &served {
            Some(served) => {
                let soa = served.soa();
                let current = (served.serial(), soa.first(), soa.ttl);
                match client::transfer(primary, apex, Some(current), key, limits).await {
                    Ok(records) => {
                        let (served, apex) = (served.clone(), apex.clone());
                        off_workers(move || from_ixfr(&served, &apex, records)).await?
                    }
                    // A primary without IXFR, or a broken answer: AXFR instead.
                    Err(e @ (ClientError::Rcode(_) | ClientError::Malformed(_))) => {
                        tracing::info!(zone = %apex, %primary, "IXFR failed ({e}); trying AXFR");
                        let records = client::transfer(primary, apex, None, key, limits)
                            .await
                            .map_err(|e| format!("AXFR: {e}"))?;
                        axfr(records).await?
                    }
                    Err(e) => return Err(format!("IXFR: {e}")),
                }
            }
            None => {
                let records =
                    client::transfer(primary, apex, None, key, limits).await.map_err(|e| format!("AXFR: {e}"))?;
                axfr(records).await?
            }
        };
        if let Some(served) = &served {
            if !zone.serial().is_newer_than(served.serial()) {
                return Err(format!(
                    "the transfer brought serial {}, not newer than ours ({})",
                    zone.serial().0,
                    served.serial().0
                ));
            }
        }
        let serial = zone.serial();
        let (path, owner) = (self.zone_path(apex), apex.clone());
        let zone = off_workers(move || {
            persist(&owner, &path, &zone);
            zone
        })
        .await;
        tracing::info!(zone = %apex, %primary, serial = serial.0, method, "zone transferred");
        let kind = if method.starts_with("IXFR") { "IXFR" } else { "AXFR" };
        ferrodns_metrics::global().transfers_in.with_label_values(&[kind, "ok"]).inc();
        self.live.publish_zone(zone);
        Ok(serial)
    }

    fn touch(&self, apex: &Name) {
        self.refreshed.lock().unwrap_or_else(|e| e.into_inner()).insert(apex.clone(), Instant::now());
        let path = self.zone_path(apex);
        if let Ok(file) = std::fs::File::options().append(true).open(&path) {
            let _ = file.set_modified(SystemTime::now());
        }
    }
}

impl NotifyListener for Secondary {
    fn notified(&self, apex: &Name, peer: SocketAddr, serial: Option<Serial>) -> bool {
        let from_primary = self.primary_ips.lock().unwrap_or_else(|e| e.into_inner()).contains(&peer.ip());
        let followed = self.followed.lock().unwrap_or_else(|e| e.into_inner());
        match followed.get(&apex.to_lowercase()) {
            Some(zone) if from_primary => {
                tracing::debug!(zone = %apex, %peer, serial = serial.map(|s| s.0), "NOTIFY");
                zone.wake.notify_one();
                true
            }
            _ => {
                tracing::info!(zone = %apex, %peer, "NOTIFY for a zone we do not follow from that peer");
                false
            }
        }
    }
}

/// The SOA timers of a served zone: refresh, retry, expire.
fn timers(zone: Option<&Arc<Zone>>) -> (Duration, Duration, Duration) {
    let unknown = (FIRST_RETRY, FIRST_RETRY, Duration::from_secs(u64::MAX / 4));
    // A served zone's SOA is well formed (the zone would not have built).
    let Some([refresh, retry, expire, _]) = zone.and_then(|z| ferrodns_proto::rdata::soa_timers(z.soa().first()))
    else {
        return unknown;
    };
    let seconds = |field: u32| Duration::from_secs(u64::from(field.max(1)));
    (seconds(refresh), seconds(retry), seconds(expire))
}

/// `wait` less up to a tenth of it, at random.
fn jittered(wait: Duration) -> Duration {
    use std::hash::{BuildHasher, Hasher};
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_u64(0);
    let fraction = (hasher.finish() % 1000) as f64 / 10_000.0;
    wait.mul_f64(1.0 - fraction)
}

/// After a refresh attempt: whether the zone has expired, and how long to
/// wait before the next attempt. `since_refresh` is how long ago a primary
/// last confirmed the served copy (`Duration::MAX` for never), or `None`
/// when nothing is served yet. A failed attempt waits the SOA retry, but
/// wakes in time to expire the zone (RFC 1035 §3.3.13, RFC 1996 §3).
fn next_step(
    refreshed: bool,
    (refresh, retry, expire): (Duration, Duration, Duration),
    since_refresh: Option<Duration>,
) -> (bool, Duration) {
    let Some(age) = since_refresh else { return (false, if refreshed { refresh } else { retry }) };
    if refreshed {
        return (false, refresh);
    }
    if age > expire {
        return (true, retry);
    }
    (false, retry.min((expire - age).max(Duration::from_millis(100))))
}

async fn run_zone(secondary: Arc<Secondary>, apex: Name, wake: Arc<Notify>) {
    let is_catalog = secondary.settings.catalog.as_ref() == Some(&apex);
    // A zone served from a kept copy has answered before.
    let mut answered = secondary.live.snapshot().get(apex.as_wire()).is_some();
    // The catalog's members are read again only when its serial moves: a
    // catalog of many members costs that walk once per version, not once
    // per refresh.
    let mut reconciled_at = None;
    loop {
        let result = {
            let lane = if answered { &secondary.answering } else { &secondary.unproven };
            let _permit = lane.acquire().await.expect("the semaphore is never closed");
            secondary.refresh(&apex).await
        };
        answered = result.is_ok();
        let served = secondary.live.snapshot().get(apex.as_wire()).cloned();
        if result.is_ok() {
            secondary.touch(&apex);
            if let Some(zone) = &served {
                if zone.is_expired() {
                    tracing::info!(zone = %apex, "refreshed again; serving it");
                }
                zone.set_expired(false);
            }
            if is_catalog && reconciled_at != result.as_ref().ok().copied() {
                // Off the async workers: a catalog may list 100,000 members.
                let reconciling = secondary.clone();
                off_workers(move || reconciling.reconcile_catalog()).await;
                reconciled_at = result.as_ref().ok().copied();
            }
        }
        let since_refresh = served.as_ref().map(|_| {
            let last = secondary.refreshed.lock().unwrap_or_else(|e| e.into_inner()).get(&apex).copied();
            last.map_or(Duration::MAX, |t| t.elapsed())
        });
        let (expired, wait) = next_step(result.is_ok(), timers(served.as_ref()), since_refresh);
        if let Some(zone) = served.as_ref().filter(|z| expired && !z.is_expired()) {
            tracing::warn!(zone = %apex, "no primary reached within the SOA expire; answering SERVFAIL");
            zone.set_expired(true);
        }
        let wait = jittered(wait);
        if let Some(attempt) = secondary.attempts.lock().unwrap_or_else(|e| e.into_inner()).get_mut(&apex) {
            attempt.next_at = Instant::now().checked_add(wait);
        }
        tokio::select! {
            _ = wake.notified() => {}
            _ = tokio::time::sleep(wait) => {}
        }
    }
}

/// The zone an AXFR answer describes: every record but the final SOA.
/// Runs blocking work (building a zone, writing a file) on tokio's blocking
/// threads, so the async workers keep serving.
async fn off_workers<T: Send + 'static>(work: impl FnOnce() -> T + Send + 'static) -> T {
    match tokio::task::spawn_blocking(work).await {
        Ok(value) => value,
        Err(e) => std::panic::resume_unwind(e.into_panic()),
    }
}

/// Keeps a zone on disk (write a temporary file, then rename), so that a
/// restart serves it before any primary answers.
fn persist(apex: &Name, path: &std::path::Path, zone: &Zone) {
    let temporary = path.with_extension("zone.tmp");
    let text = write_zone(zone);
    let written = std::fs::write(&temporary, text).and_then(|()| std::fs::rename(&temporary, path));
    if let Err(e) = written {
        tracing::error!(zone = %apex, file = %path.display(), "cannot keep the zone on disk: {e}");
    }
}

fn from_axfr(apex: &Name, mut records: Vec<Record>) -> Result<Zone, String> {
    if records.len() < 2 {
        return Err("the AXFR answer has no closing SOA".to_string());
    }
    records.pop();
    let mut builder = ZoneBuilder::new(apex.clone());
    for record in &records {
        builder.add_wire(record.owner.as_wire(), record.rtype, record.ttl, &record.rdata, None);
    }
    builder.finish().map(|(zone, _)| zone).map_err(|errors| format!("the transferred zone does not load: {errors:?}"))
}

/// The zone an IXFR answer leads to from `served`: steps, or a whole zone.
fn from_ixfr(served: &Zone, apex: &Name, records: Vec<Record>) -> Result<(Zone, &'static str), String> {
    let is_soa = |r: &Record| r.rtype == RecordType::SOA && r.owner.to_lowercase() == apex.to_lowercase();
    if records.len() == 1 {
        return Err("the primary says we are current, but its SOA query said otherwise".to_string());
    }
    if !is_soa(&records[1]) {
        return Ok((from_axfr(apex, records)?, "IXFR (whole zone)"));
    }
    let new_serial = soa_serial(&records[0].rdata).ok_or("bad SOA")?;
    let mut zone: Option<Zone> = None;
    let mut at = 1;
    while at < records.len() - 1 {
        let old_soa = &records[at];
        let old_serial = soa_serial(&old_soa.rdata).ok_or("bad SOA")?;
        let expected = zone.as_ref().map_or(served.serial(), |z| z.serial());
        if old_serial != expected {
            return Err(format!("the IXFR step starts at serial {} but we hold {}", old_serial.0, expected.0));
        }
        let mut removed = Records::new();
        removed.push_record(old_soa);
        at += 1;
        while at < records.len() && !is_soa(&records[at]) {
            removed.push_record(&records[at]);
            at += 1;
        }
        let new_soa = records.get(at).ok_or("the IXFR answer stops inside a step")?;
        let step_serial = soa_serial(&new_soa.rdata).ok_or("bad SOA")?;
        let mut added = Records::new();
        added.push_record(new_soa);
        at += 1;
        while at < records.len() && !is_soa(&records[at]) {
            added.push_record(&records[at]);
            at += 1;
        }
        let diff = Arc::new(Diff { old_serial, new_serial: step_serial, removed, added });
        let base = zone.as_ref().unwrap_or(served);
        zone = Some(
            apply_to_zone(base, &diff)
                .map_err(|e| format!("the IXFR step to {} does not apply: {e:?}", step_serial.0))?,
        );
    }
    let zone = zone.ok_or("the IXFR answer holds no step")?;
    if zone.serial() != new_serial {
        return Err(format!("the IXFR steps end at serial {}, not at {}", zone.serial().0, new_serial.0));
    }
    Ok((zone, "IXFR"))
}

/// The members of a catalog zone (RFC 9432 §4.1): `<id>.zones.<catalog> PTR <member>`.
pub fn catalog_members(catalog: &Zone) -> BTreeMap<Name, String> {
    let mut members = BTreeMap::new();
    let Ok(zones_label) = Name::parse("zones", Some(catalog.apex())) else { return members };
    let zones_label = zones_label.to_lowercase();
    for node in catalog.nodes() {
        let Ok(owner) = Name::from_wire(node.name()) else { continue };
        let owner = owner.to_lowercase();
        if owner.parent().as_ref() != Some(&zones_label) {
            continue;
        }
        let Some(ptr) = node.rrset(RecordType::PTR) else { continue };
        let Ok(member) = Name::from_wire(ptr.first()) else { continue };
        let id = String::from_utf8_lossy(owner.first_label()).to_string();
        members.insert(member.to_lowercase(), id);
    }
    members
}

/// The file a secondary zone is kept in: its name in lowercase when that
/// is plain (letters, digits, `-`, `_`, dots) and short, otherwise `@` and
/// the SHA-256 of its wire form; `@root` for the root. `@` never appears in
/// a plain name, so no two zones share a file, and every file name fits in
/// the 255 octets a file system allows.
fn kept_file_name(apex: &Name) -> String {
    let text = apex.to_lowercase().to_string();
    let plain = text.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_'));
    let stem = match text.trim_end_matches('.') {
        "" => "@root".to_string(),
        stem if plain && stem.len() <= 200 => stem.to_string(),
        _ => format!("@{}", hex(&sha2::Sha256::digest(apex.to_lowercase().as_wire()))),
    };
    format!("{stem}.zone")
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secs(n: u64) -> Duration {
        Duration::from_secs(n)
    }

    /// Zones that once shared a file (`.` and `root.`; `a/b.` and the zone
    /// its hex form spelt) get their own, and the longest names fit.
    #[test]
    fn kept_file_names_are_distinct_and_fit() {
        let long = format!("{}.", ["a".repeat(63), "b".repeat(63), "c".repeat(63), "d".repeat(61)].join("."));
        let names = [".", "root.", "a/b.", "x03612f6200.", "Example.COM.", "example.com.", &long, "x.y-z_w."];
        let files: Vec<String> = names.iter().map(|n| kept_file_name(&Name::parse(n, None).unwrap())).collect();
        assert_eq!(files[4], files[5], "case does not matter");
        assert_eq!(files[4], "example.com.zone");
        let mut distinct = files.clone();
        distinct.sort();
        distinct.dedup();
        assert_eq!(distinct.len(), files.len() - 1, "{files:?}");
        assert!(files.iter().all(|f| f.len() <= 255 && !f.contains('/')), "{files:?}");
    }

    /// Many zones whose primary never answers: at most a lane of SOA
    /// queries is out at once, all from one shared socket, not one socket
    /// per zone. On tokio's paused clock.
    #[tokio::test(start_paused = true)]
    async fn refreshes_in_flight_are_bounded() {
        let data_dir = std::env::temp_dir().join(format!("ferrodns-secondary-many-{}", std::process::id()));
        let silent = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        silent.set_nonblocking(true).unwrap();
        let zones: Vec<Name> = (0..500).map(|i| Name::parse(&format!("z{i}.many.test."), None).unwrap()).collect();
        let settings = SecondarySettings {
            primaries: vec![Target::parse(&silent.local_addr().unwrap().to_string()).unwrap()],
            key: None,
            catalog: None,
            forward_zones: None,
            zones,
            data_dir: data_dir.clone(),
            limits: TransferLimits::default(),
        };
        let _secondary = Secondary::start(settings, Arc::new(LiveZones::new(Default::default()))).unwrap();
        // Within the first query's 3 s wait, only the first refreshes ask.
        for _ in 0..20 {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let mut queries = 0;
        let mut sources = std::collections::HashSet::new();
        let mut buffer = [0u8; 512];
        while let Ok((_, from)) = silent.recv_from(&mut buffer) {
            queries += 1;
            sources.insert(from);
        }
        assert_eq!(queries, LANE, "SOA queries out at once for 500 zones");
        assert_eq!(sources.len(), 1, "SOA queries from more than one socket: {sources:?}");
        let _ = std::fs::remove_dir_all(&data_dir);
    }

    /// A copy kept under another file name (an earlier naming) is moved to
    /// its name at start, so that no second copy lingers to load later.
    #[tokio::test(start_paused = true)]
    async fn a_kept_copy_moves_to_its_file_name() {
        let data_dir = std::env::temp_dir().join(format!("ferrodns-secondary-rename-{}", std::process::id()));
        std::fs::create_dir_all(data_dir.join("secondary")).unwrap();
        let legacy = data_dir.join("secondary/xdeadbeef.zone");
        std::fs::write(&legacy, "$ORIGIN moved.test.\n@ 300 IN SOA ns hostmaster 7 60 20 100 300\n@ 300 IN NS ns\n")
            .unwrap();
        let settings = SecondarySettings {
            primaries: Vec::new(),
            key: None,
            catalog: None,
            forward_zones: None,
            zones: Vec::new(),
            data_dir: data_dir.clone(),
            limits: TransferLimits::default(),
        };
        let live = Arc::new(LiveZones::new(Default::default()));
        let _secondary = Secondary::start(settings, live.clone()).unwrap();
        assert!(live.snapshot().get(Name::parse("moved.test.", None).unwrap().as_wire()).is_some());
        assert!(!legacy.exists());
        assert!(data_dir.join("secondary/moved.test.zone").exists());
        let _ = std::fs::remove_dir_all(&data_dir);
    }

    #[test]
    fn expiry_and_waits_follow_the_soa_timers() {
        let timers = (secs(3600), secs(600), secs(7200));
        // Nothing served yet: retry until a primary answers.
        assert_eq!(next_step(false, timers, None), (false, secs(600)));
        assert_eq!(next_step(true, timers, Some(secs(0))), (false, secs(3600)));
        // Failing, far from the expire: the retry timer.
        assert_eq!(next_step(false, timers, Some(secs(60))), (false, secs(600)));
        // Failing close to the expire: wake in time for it.
        assert_eq!(next_step(false, timers, Some(secs(7000))), (false, secs(200)));
        // Past it (or never confirmed): expired, and still the retry timer,
        // not a poll every 100 ms.
        assert_eq!(next_step(false, timers, Some(secs(7201))), (true, secs(600)));
        assert_eq!(next_step(false, timers, Some(Duration::MAX)), (true, secs(600)));
    }

    /// A kept copy whose primary never answers expires once the SOA expire
    /// has passed since the copy was written, and from then on the primary
    /// is asked at the retry interval. On tokio's paused clock: the 400
    /// seconds below take no real time.
    #[tokio::test(start_paused = true)]
    async fn a_kept_zone_expires_on_the_clock_and_then_asks_at_the_retry_interval() {
        let data_dir = std::env::temp_dir().join(format!("ferrodns-secondary-{}", std::process::id()));
        std::fs::create_dir_all(data_dir.join("secondary")).unwrap();
        // Refresh 60 s, retry 20 s, expire 100 s.
        std::fs::write(
            data_dir.join("secondary/kept.test.zone"),
            "$ORIGIN kept.test.\n@ 300 IN SOA ns hostmaster 7 60 20 100 300\n@ 300 IN NS ns\nns 300 IN A 192.0.2.1\n",
        )
        .unwrap();
        // A primary that is up but silent: it counts the SOA queries it gets.
        let silent = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        silent.set_nonblocking(true).unwrap();
        let settings = SecondarySettings {
            primaries: vec![Target::parse(&silent.local_addr().unwrap().to_string()).unwrap()],
            key: None,
            catalog: None,
            forward_zones: None,
            zones: vec![Name::parse("kept.test.", None).unwrap()],
            data_dir: data_dir.clone(),
            limits: TransferLimits::default(),
        };
        let live = Arc::new(LiveZones::new(Default::default()));
        let _secondary = Secondary::start(settings, live.clone()).unwrap();
        let expired = || live.snapshot().get(Name::parse("kept.test.", None).unwrap().as_wire()).unwrap().is_expired();

        let started = Instant::now();
        tokio::time::sleep(secs(95)).await;
        assert!(!expired(), "expired before the SOA expire");
        tokio::time::sleep(secs(15)).await;
        assert!(expired(), "still served 110 s after the copy was written, with an expire of 100 s");
        tokio::time::sleep(secs(290)).await;
        assert!(started.elapsed() >= secs(400));

        // Each attempt is one SOA query that waits 3 s for an answer, then the
        // retry timer (20 s), so about 400 / 23 attempts in all.
        let mut queries = 0;
        let mut buffer = [0u8; 512];
        while silent.recv(&mut buffer).is_ok() {
            queries += 1;
        }
        println!("{queries} SOA queries in 400 s of paused time");
        assert!((10..=25).contains(&queries), "{queries} SOA queries in 400 s");
        let _ = std::fs::remove_dir_all(&data_dir);
    }
}
