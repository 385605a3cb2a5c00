//! The multi-node control plane on PostgreSQL: following other nodes'
//! commits, and leader election.
//!
//! **Following.** Every commit announces its zone and new serial with
//! `pg_notify` (delivered at commit, only to connected listeners). Each node
//! listens, and for each announced zone it does not already serve at that
//! serial (its own commits it does) applies the journal steps after the
//! serial it serves (or reloads the zone when the journal does not reach
//! back). Because a
//! listener misses whatever was sent while it was disconnected, a node also
//! compares every zone's serial with the database after each (re)connect and
//! every `--ha-poll-ms`.
//!
//! **Election.** One lease row (`leader_lease`): a node takes it when it is
//! free or expired by the database's clock, with a new term; the leader
//! renews it every `--ha-renew-ms`. A leader counts itself leader only until
//! three quarters of the lease after its last successful renewal began, by
//! its own monotonic clock, so it stops acting before anyone else can take
//! the lease (a paused leader wakes up already demoted). Singleton actions
//! (NOTIFY, drift checks) ask [`Election::term`] right before acting and log
//! the term; singleton writes (the catalog state, journal compaction) are
//! also fenced by the lease row inside their transaction.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use ferrodns_api::catalog::{sync_catalog, CatalogSync};
use ferrodns_api::{reload_zone, ApiState, HaSnapshot, Leadership};
use ferrodns_proto::{Name, Serial};
use ferrodns_store::{Fence, Store, StoreError};
use ferrodns_zone::live::Applied;
use tokio::sync::watch;

/// Election timings.
#[derive(Clone, Copy, Debug)]
pub struct ElectionSettings {
    pub lease: Duration,
    pub renew: Duration,
}

struct State {
    /// Our term while we lead.
    term: Option<i64>,
    /// Until when we may act as leader (monotonic).
    leading_until: Option<Instant>,
    /// The lease as last read: leader and term.
    known: Option<(String, i64)>,
}

/// What a node does on becoming leader, given its term.
type LeadAction = Box<dyn Fn(i64) + Send + Sync>;

/// This node's view of the election.
pub struct Election {
    node: String,
    settings: ElectionSettings,
    /// A single node (SQLite) leads itself in term 1 without a lease.
    single: bool,
    state: Mutex<State>,
    /// Run on each new term: a new leader re-announces every zone, in case
    /// its predecessor died before its NOTIFYs went out, and brings the
    /// catalog up to date.
    on_lead: Mutex<Vec<LeadAction>>,
}

impl Election {
    pub fn new(node: String, settings: ElectionSettings, single: bool) -> Arc<Election> {
        Arc::new(Election {
            node,
            settings,
            single,
            state: Mutex::new(State { term: None, leading_until: None, known: None }),
            on_lead: Mutex::new(Vec::new()),
        })
    }

    /// Adds something to do on becoming leader.
    pub fn on_lead(&self, action: impl Fn(i64) + Send + Sync + 'static) {
        self.on_lead.lock().unwrap_or_else(|e| e.into_inner()).push(Box::new(action));
    }

    /// Our term, if we lead right now.
    pub fn term(&self) -> Option<i64> {
        if self.single {
            return Some(1);
        }
        let state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        match (state.term, state.leading_until) {
            (Some(term), Some(until)) if Instant::now() < until => Some(term),
            _ => None,
        }
    }

    /// Runs the election until shutdown, then gives the lease up.
    pub async fn run(self: Arc<Self>, store: Arc<Store>, mut shutdown: watch::Receiver<bool>) {
        if self.single {
            return;
        }
        let lease_ms = self.settings.lease.as_millis() as i64;
        let mut tick = tokio::time::interval(self.settings.renew);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                _ = shutdown.changed() => break,
            }
            let started = Instant::now();
            let current = self.state.lock().unwrap_or_else(|e| e.into_inner()).term;
            match current {
                Some(term) => match store.renew_lease(&self.node, term, lease_ms).await {
                    Ok(true) => self.lead(term, started),
                    Ok(false) => self.step_down("the lease was taken or expired"),
                    Err(e) => {
                        // Keep leading only while the last renewal still covers us.
                        if self.term().is_none() {
                            self.step_down(&format!("cannot renew the lease: {e}"));
                        }
                    }
                },
                None => match store.acquire_lease(&self.node, lease_ms).await {
                    Ok(Some(term)) => {
                        tracing::info!(node = %self.node, term, "became leader");
                        self.lead(term, started);
                        for action in self.on_lead.lock().unwrap_or_else(|e| e.into_inner()).iter() {
                            action(term);
                        }
                    }
                    Ok(None) => {}
                    Err(e) => tracing::debug!(error = %e, "cannot reach the lease"),
                },
            }
            if let Ok(Some(lease)) = store.lease().await {
                self.state.lock().unwrap_or_else(|e| e.into_inner()).known =
                    lease.live.then_some((lease.node, lease.term));
            }
        }
        let term = self.state.lock().unwrap_or_else(|e| e.into_inner()).term;
        if let Some(term) = term {
            // Releasing ends the lease early, so stop acting first, and give
            // an action that has just checked its term time to finish.
            self.step_down("shutting down");
            tokio::time::sleep(Duration::from_millis(100)).await;
            let _ = store.release_lease(&self.node, term).await;
            tracing::info!(node = %self.node, term, "gave the lease up");
        }
    }

    fn lead(&self, term: i64, renewal_started: Instant) {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        state.term = Some(term);
        state.leading_until = Some(renewal_started + self.settings.lease * 3 / 4);
        state.known = Some((self.node.clone(), term));
    }

    fn step_down(&self, why: &str) {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(term) = state.term.take() {
            tracing::warn!(node = %self.node, term, "no longer leader: {why}");
        }
        state.leading_until = None;
    }
}

impl Leadership for Election {
    fn snapshot(&self) -> HaSnapshot {
        if self.single {
            return HaSnapshot { node: self.node.clone(), leader: Some(self.node.clone()), term: 1, is_leader: true };
        }
        let term = self.term();
        let state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let (leader, known_term) = match &state.known {
            Some((node, term)) => (Some(node.clone()), *term),
            None => (None, 0),
        };
        HaSnapshot { node: self.node.clone(), leader, term: term.unwrap_or(known_term), is_leader: term.is_some() }
    }
}

/// Follows other nodes' commits until shutdown (PostgreSQL only).
pub async fn follow(state: ApiState, url: String, poll: Duration, mut shutdown: watch::Receiver<bool>) {
    loop {
        let mut listener = match state.store.change_listener(&url).await {
            Ok(Some(listener)) => listener,
            Ok(None) => return,
            Err(e) => {
                tracing::warn!(error = %e, "cannot listen for other nodes' changes; retrying");
                tokio::select! {
                    _ = tokio::time::sleep(Duration::from_secs(1)) => continue,
                    _ = shutdown.changed() => return,
                }
            }
        };
        catch_up(&state).await;
        loop {
            tokio::select! {
                next = listener.next() => match next {
                    Ok(announced) => {
                        if let Ok(apex) = Name::parse(&announced.zone, None) {
                            if !already_served(&state, &apex, announced.serial) {
                                sync_zone(&state, &apex).await;
                            }
                        }
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "lost the change listener; reconnecting and catching up");
                        break;
                    }
                },
                _ = tokio::time::sleep(poll) => catch_up(&state).await,
                _ = shutdown.changed() => return,
            }
        }
    }
}

/// True when an announced commit is one this node serves already (its own,
/// above all), so the zone need not be read back. The catalog is left to
/// `sync_zone`, which reads the catalog's own state.
fn already_served(state: &ApiState, apex: &Name, serial: Option<Serial>) -> bool {
    let Some(serial) = serial else { return false };
    let apex = apex.to_lowercase();
    if state.catalog.as_ref().is_some_and(|c| *c.name() == apex) {
        return false;
    }
    state.live.snapshot().get(apex.as_wire()).is_some_and(|zone| zone.serial() == serial)
}

/// Brings every stored zone up to the database, and drops zones it no longer holds.
async fn catch_up(state: &ApiState) {
    let Ok(stored) = state.store.zone_serials().await else { return };
    let served = state.live.snapshot();
    for (apex, serial) in &stored {
        if served.get(apex.as_wire()).map(|z| z.serial()) != Some(*serial) && !state.live.is_file_zone(apex.as_wire()) {
            sync_zone(state, apex).await;
        }
    }
    let catalog = state.catalog.as_ref().map(|c| c.name().clone());
    for zone in served.iter() {
        let apex = zone.apex().to_lowercase();
        let known = stored.iter().any(|(name, _)| *name == apex);
        if !known && !state.live.is_file_zone(apex.as_wire()) && Some(&apex) != catalog.as_ref() {
            sync_zone(state, &apex).await;
        }
    }
    sync_catalog(state, CatalogSync::Poll).await;
}

/// Brings one zone up to the database.
async fn sync_zone(state: &ApiState, apex: &Name) {
    let apex = apex.to_lowercase();
    if state.catalog.as_ref().is_some_and(|c| *c.name() == apex) {
        // The leader wrote a new catalog state.
        sync_catalog(state, CatalogSync::Poll).await;
        return;
    }
    if state.live.is_file_zone(apex.as_wire()) {
        return;
    }
    let _publication = state.zone_locks.lock(&apex).await;
    let zone = match state.store.zone(&apex).await {
        Ok(zone) => zone,
        Err(StoreError::NotFound) => {
            if state.live.snapshot().get(apex.as_wire()).is_some() {
                state.live.remove_zone(apex.as_wire());
                tracing::info!(zone = %apex, "deleted on another node");
                sync_catalog(state, CatalogSync::Full).await;
            }
            return;
        }
        Err(e) => {
            tracing::debug!(zone = %apex, error = %e, "cannot read the zone now");
            return;
        }
    };
    let served = state.live.snapshot().get(apex.as_wire()).map(|z| z.serial());
    match served {
        Some(serial) if serial == zone.serial => return,
        Some(serial) => {
            if let Ok(Some(steps)) = state.store.journal_since(zone.id, serial).await {
                let mut applied_all = true;
                for step in steps {
                    match state.live.apply(apex.as_wire(), &step) {
                        Ok(Applied::Applied | Applied::AlreadyServed) => {}
                        _ => {
                            applied_all = false;
                            break;
                        }
                    }
                }
                if applied_all {
                    return;
                }
            }
        }
        None => {}
    }
    if let Err(problem) = reload_zone(state, &zone).await {
        tracing::warn!(zone = %apex, "cannot load the zone: {}", problem.detail);
        return;
    }
    if served.is_none() {
        tracing::info!(zone = %apex, "created on another node");
        sync_catalog(state, CatalogSync::Full).await;
    }
}

/// Journal compaction, a leader duty (PostgreSQL). Every `interval` the
/// leader trims, under its fence, the journal of each zone whose version
/// moved by 16 or more since it last trimmed it, down to `--journal-keep`
/// entries. A node that is not leader, or loses its term midway, stops.
pub async fn compact_journals(
    state: ApiState,
    election: Arc<Election>,
    interval: Duration,
    mut shutdown: watch::Receiver<bool>,
) {
    let keep = i64::from(state.store.options().journal_keep);
    // Zone id → its version when this term last trimmed it.
    let mut trimmed: HashMap<i64, i64> = HashMap::new();
    let mut trimmed_term = None;
    loop {
        tokio::select! {
            _ = tokio::time::sleep(interval) => {}
            _ = shutdown.changed() => return,
        }
        let Some(term) = election.term() else { continue };
        if trimmed_term != Some(term) {
            trimmed.clear();
            trimmed_term = Some(term);
        }
        let Ok(versions) = state.store.zone_versions().await else { continue };
        let present: HashSet<i64> = versions.iter().map(|(id, _, _)| *id).collect();
        trimmed.retain(|id, _| present.contains(id));
        for (id, name, version) in versions {
            let due = match trimmed.get(&id) {
                Some(last) => version - last >= 16,
                None => version > keep,
            };
            if !due {
                continue;
            }
            match state.store.compact_journal(id, Fence::Lease { node: &election.node, term }).await {
                Ok(Some(removed)) => {
                    trimmed.insert(id, version);
                    if removed > 0 {
                        tracing::info!(zone = %name, removed, term, "journal compacted");
                    }
                }
                Ok(None) => {
                    tracing::info!(term, "journal compaction stopped: the term is no longer current");
                    break;
                }
                Err(e) => {
                    tracing::debug!(error = %e, "cannot compact journals now");
                    break;
                }
            }
        }
    }
}
