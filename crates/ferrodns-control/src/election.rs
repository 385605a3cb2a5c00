//! Leader election on a lease row.
//!
//! One lease row (`leader_lease`): a node takes it when it is free or
//! expired by the database's clock, with a new term; the leader renews it
//! every `--ha-renew-ms`. A leader counts itself leader only until three
//! quarters of the lease after its last successful renewal began, by its own
//! monotonic clock, so it stops acting before anyone else can take the lease
//! (a paused leader wakes up already demoted). Singleton actions (NOTIFY,
//! drift checks) ask [`Election::term`] right before acting and log the term;
//! singleton writes (the catalog state, journal compaction) are also fenced
//! by the lease row inside their transaction.
//!
//! A single node (SQLite) leads itself in term 1 without a lease.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use ferrodns_store::Store;
use tokio::sync::watch;

use ferrodns_transfer::clock::Clock;

/// A node's view of the leader election, for `/v1/ha` and readiness.
#[derive(Clone, Debug)]
pub struct HaSnapshot {
    pub node: String,
    pub leader: Option<String>,
    pub term: i64,
    pub is_leader: bool,
}

/// Who leads.
pub trait Leadership: Send + Sync {
    fn snapshot(&self) -> HaSnapshot;
    /// Our term, if we lead right now.
    fn term(&self) -> Option<i64>;
    /// This node's name.
    fn node(&self) -> &str;
}

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
    clock: Arc<dyn Clock>,
    settings: ElectionSettings,
    /// A single node (SQLite) leads itself in term 1 without a lease.
    single: bool,
    state: Mutex<State>,
    /// Run on each new term: a new leader re-announces every zone, in case
    /// its predecessor died before its NOTIFYs went out, and brings the
    /// catalog up to date.
    on_lead: Mutex<Vec<LeadAction>>,
    /// Where the lead actions run when the election has a thread of its own
    /// ([`Election::run_on_thread`]): the runtime they spawn their work on.
    actions_runtime: std::sync::OnceLock<tokio::runtime::Handle>,
}

impl Election {
    pub fn new(node: String, settings: ElectionSettings, single: bool, clock: Arc<dyn Clock>) -> Arc<Election> {
        Arc::new(Election {
            node,
            clock,
            settings,
            single,
            state: Mutex::new(State { term: None, leading_until: None, known: None }),
            on_lead: Mutex::new(Vec::new()),
            actions_runtime: std::sync::OnceLock::new(),
        })
    }

    /// Runs the election ([`Election::run`]) on a thread of its own with a
    /// runtime of its own, at the priority of the calling thread, and with
    /// the store `open` makes there (its own connections, served by that
    /// runtime): a round must not wait behind the async threads' work,
    /// which runs at a lower priority, or a busy node fails over late. Lead
    /// actions run with `actions` as their runtime. Returns once the thread
    /// has started; the thread ends after shutdown.
    pub fn run_on_thread<F, Fut>(
        self: Arc<Self>,
        open: F,
        actions: tokio::runtime::Handle,
        shutdown: watch::Receiver<bool>,
    ) -> std::io::Result<std::thread::JoinHandle<()>>
    where
        F: FnOnce() -> Fut + Send + 'static,
        Fut: std::future::Future<Output = Option<Arc<Store>>>,
    {
        let _ = self.actions_runtime.set(actions);
        std::thread::Builder::new().name("ha-election".into()).spawn(move || {
            let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
                Ok(runtime) => runtime,
                Err(e) => {
                    tracing::error!(error = %e, "cannot start the election's runtime");
                    return;
                }
            };
            runtime.block_on(async move {
                if let Some(store) = open().await {
                    self.run(store, shutdown).await;
                }
            });
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
            (Some(term), Some(until)) if self.clock.now() < until => Some(term),
            _ => None,
        }
    }

    /// Runs the election until shutdown, then gives the lease up.
    pub async fn run(self: Arc<Self>, store: Arc<Store>, mut shutdown: watch::Receiver<bool>) {
        if self.single {
            return;
        }
        let mut tick = tokio::time::interval(self.settings.renew);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            let due = tokio::select! {
                due = tick.tick() => due,
                _ = shutdown.changed() => break,
            };
            let started = tokio::time::Instant::now();
            self.round(&store).await;
            // A late or slow round delays a failover; say which it was.
            let (late, took) = (started.saturating_duration_since(due), started.elapsed());
            if late + took > self.settings.renew / 2 {
                tracing::debug!(
                    late_ms = late.as_millis() as u64,
                    took_ms = took.as_millis() as u64,
                    "slow election round"
                );
            }
        }
        let term = self.state.lock().unwrap_or_else(|e| e.into_inner()).term;
        if let Some(term) = term {
            // Releasing ends the lease early, so stop acting first, and give
            // an action that has just checked its term time to finish.
            // A planned step down: said once, at INFO, when the lease is given up.
            self.stop_leading();
            tokio::time::sleep(Duration::from_millis(100)).await;
            match store.release_lease(&self.node, term).await {
                Ok(_) => tracing::info!(node = %self.node, term, "shutting down: gave the lease up"),
                Err(e) => tracing::warn!(
                    node = %self.node, term, error = %e,
                    "shutting down: cannot give the lease up; another node takes it when it expires"
                ),
            }
        }
    }

    /// One round of the election: renew the lease while leading, or try
    /// to take it, then read who holds it. [`Election::run`] does one every
    /// `--ha-renew-ms`; a starting node does one before it serves, so that a
    /// node alone is leader by the time it says it is ready.
    pub async fn round(&self, store: &Store) {
        if self.single {
            return;
        }
        let lease_ms = self.settings.lease.as_millis() as i64;
        let started = self.clock.now();
        // The injected clock may be a test's; the metric measures real time.
        let started_wall = std::time::Instant::now();
        let current = self.state.lock().unwrap_or_else(|e| e.into_inner()).term;
        match current {
            Some(term) => match store.renew_lease(&self.node, term, lease_ms).await {
                Ok(true) => {
                    let took = std::time::Instant::now().saturating_duration_since(started_wall);
                    ferrodns_metrics::global().lease_renewal.observe(took.as_secs_f64());
                    self.lead(term, started)
                }
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
                    // Whatever the actions spawn goes to that runtime.
                    let _entered = self.actions_runtime.get().map(|runtime| runtime.enter());
                    for action in self.on_lead.lock().unwrap_or_else(|e| e.into_inner()).iter() {
                        action(term);
                    }
                }
                Ok(None) => {}
                Err(e) => tracing::debug!(error = %e, "cannot reach the lease"),
            },
        }
        if let Ok(Some(lease)) = store.lease().await {
            self.state.lock().unwrap_or_else(|e| e.into_inner()).known = lease.live.then_some((lease.node, lease.term));
        }
    }

    fn lead(&self, term: i64, renewal_started: Instant) {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        state.term = Some(term);
        state.leading_until = Some(renewal_started + self.settings.lease * 3 / 4);
        state.known = Some((self.node.clone(), term));
    }

    /// Stops acting as leader because the lease was lost: worth a warning.
    fn step_down(&self, why: &str) {
        if let Some(term) = self.stop_leading() {
            tracing::warn!(node = %self.node, term, "no longer leader: {why}");
        }
    }

    /// Stops acting as leader; the term it led, if it led.
    fn stop_leading(&self) -> Option<i64> {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        state.leading_until = None;
        state.term.take()
    }
}

impl Leadership for Election {
    fn term(&self) -> Option<i64> {
        Election::term(self)
    }

    fn node(&self) -> &str {
        &self.node
    }

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

#[cfg(test)]
mod tests {
    use super::*;
    use ferrodns_transfer::clock::ManualClock;

    /// A leader stops counting itself leader three quarters of a lease after
    /// its last renewal began, before anyone else may take the lease.
    #[test]
    fn a_leader_stops_acting_before_its_lease_can_expire() {
        let clock = Arc::new(ManualClock::new());
        let settings = ElectionSettings { lease: Duration::from_millis(2000), renew: Duration::from_millis(500) };
        let election = Election::new("a".to_string(), settings, false, clock.clone());
        assert_eq!(election.term(), None);
        election.lead(7, clock.now());
        assert_eq!(election.term(), Some(7));
        clock.advance(Duration::from_millis(1499));
        assert_eq!(election.term(), Some(7));
        assert!(election.snapshot().is_leader);
        clock.advance(Duration::from_millis(1));
        assert_eq!(election.term(), None, "still leading at 3/4 of the lease");
        let snapshot = election.snapshot();
        assert!(!snapshot.is_leader);
        assert_eq!((snapshot.leader.as_deref(), snapshot.term), (Some("a"), 7));
        // A renewal that began later extends it from when it began.
        election.lead(7, clock.now());
        clock.advance(Duration::from_millis(1000));
        assert_eq!(election.term(), Some(7));
        election.step_down("test");
        assert_eq!(election.term(), None);
    }

    #[test]
    fn a_single_node_always_leads_in_term_one() {
        let election = Election::new(
            "solo".to_string(),
            ElectionSettings { lease: Duration::from_secs(2), renew: Duration::from_millis(500) },
            true,
            Arc::new(ManualClock::new()),
        );
        assert_eq!(election.term(), Some(1));
        assert!(election.snapshot().is_leader);
    }
}
