//! The server as a library: [`App::build`] loads what it serves,
//! [`Listeners::bind`] takes the sockets, and [`App::run`] serves on them
//! until a shutdown signal, in the manner of mini-redis's `server::run`.
//! `ferrodns serve` is these three calls; tests make the same calls in
//! process, on port 0, with their own shutdown.

use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::Context;
use ferrodns_control::catalog::{self, CatalogSync};
use ferrodns_control::{Election, ElectionSettings};
use ferrodns_forward::Recursion;
use ferrodns_server::rrl::{Limiter, RrlSettings};
use ferrodns_server::{BoundDns, ControlHandler, DnsSettings, HostedZoneSet, Protections, TcpSettings, UdpSettings};
use ferrodns_transfer::notify::Notifier;
use ferrodns_transfer::peers::Peers;
use ferrodns_transfer::primary::{Journal, Primary, ZoneOwners};
use ferrodns_transfer::secondary::{Secondary, SecondarySettings};
use ferrodns_zone::live::{LiveZones, Observer};
use tokio::sync::watch;

use crate::config::ServeSettings;
use crate::{control, replication, zonefiles};

/// A node, built: its settings and the zones of its zone files.
pub struct App {
    settings: Arc<ServeSettings>,
    live: Arc<LiveZones>,
}

/// The sockets a node serves on, bound before it runs.
pub struct Listeners {
    dns: BoundDns,
    api: Option<std::net::TcpListener>,
    metrics: Option<std::net::TcpListener>,
    /// The query log's writer, joined at shutdown so that its stream ends whole.
    query_log: Option<std::thread::JoinHandle<()>>,
}

impl Listeners {
    /// Binds `--dns-listen` (UDP and TCP; port 0 picks one port for both)
    /// and `--api-listen`, unless the node runs no API.
    pub fn bind(settings: &ServeSettings) -> anyhow::Result<Listeners> {
        let mut dns_settings = dns_settings(settings);
        let mut query_log = None;
        if let Some(log) = &settings.query_log {
            let (handle, thread) =
                ferrodns_server::dnstap::QueryLog::start(log.clone()).context("cannot start the query log's thread")?;
            dns_settings.query_log = Some(handle);
            query_log = Some(thread);
        }
        let dns = ferrodns_server::bind(&dns_settings)?;
        let api = match settings.api_listen.filter(|_| settings.secondary.is_none()) {
            Some(address) => Some(
                std::net::TcpListener::bind(address)
                    .with_context(|| format!("cannot listen for the API on {address}"))?,
            ),
            None => None,
        };
        let metrics = match settings.metrics_listen {
            Some(address) => Some(
                std::net::TcpListener::bind(address)
                    .with_context(|| format!("cannot listen for metrics on {address}"))?,
            ),
            None => None,
        };
        Ok(Listeners { dns, api, metrics, query_log })
    }

    /// The DNS addresses, as bound.
    pub fn dns_addresses(&self) -> Vec<SocketAddr> {
        self.dns.local_addrs().to_vec()
    }

    /// The `--metrics-listen` address, as bound.
    pub fn metrics_address(&self) -> Option<SocketAddr> {
        self.metrics.as_ref().and_then(|listener| listener.local_addr().ok())
    }

    /// The API address, as bound.
    pub fn api_address(&self) -> Option<SocketAddr> {
        self.api.as_ref().and_then(|listener| listener.local_addr().ok())
    }
}

fn dns_settings(settings: &ServeSettings) -> DnsSettings {
    DnsSettings {
        listen: settings.dns_listen.clone(),
        udp_workers: settings.udp_workers,
        udp: UdpSettings {
            coalesce: settings.udp_coalesce,
            segment_offload: settings.udp_gso,
            busy_poll: settings.udp_busy_poll,
            cpu_pin: settings.udp_cpu_pin,
            metrics: settings.metrics,
        },
        tcp: TcpSettings {
            idle_timeout: settings.tcp_idle_timeout,
            max_connections: settings.tcp_max_connections,
            max_per_client: settings.tcp_max_per_client,
            metrics: settings.metrics,
        },
        protections: Protections {
            cookies: settings.cookies.clone().map(Arc::new),
            // Zones of the control plane may have limits of their own.
            rrl: Limiter::new(&RrlSettings { zone_limits: settings.runs_control_plane(), ..settings.rrl.clone() })
                .map(Arc::new),
        },
        query_log: None,
        identity: Arc::new(settings.server_identity.clone()),
    }
}

impl App {
    /// Loads the zone files. Nothing is served yet.
    pub fn build(settings: ServeSettings) -> anyhow::Result<App> {
        let live = Arc::new(LiveZones::new(zonefiles::load_zones(&settings.zone_files, settings.allow_include)?));
        zonefiles::release_freed_memory();
        Ok(App { settings: Arc::new(settings), live })
    }

    /// Serves on `listeners` until `shutdown` turns true: DNS, the roles the
    /// settings ask for, and the API. Must run inside a multi-threaded tokio
    /// runtime; the UDP workers it starts keep the calling thread's priority.
    pub async fn run(self, listeners: Listeners, shutdown: watch::Receiver<bool>) -> anyhow::Result<()> {
        let App { settings, live } = self;
        let Listeners { dns: bound, api: api_listener, metrics: metrics_listener, query_log } = listeners;
        // Zone files alone (the benchmark's and differential tests' mode) need
        // no database and leave no data directory behind.
        let peers = Arc::new(Peers::default());
        // Every published serial starts a propagation that the secondaries'
        // reports end (ferrodns_propagation_seconds, the lag gauges).
        live.add_observer(Arc::new(ferrodns_transfer::peers::PublishedTo(peers.clone())));
        let access = Arc::new(settings.transfer_access.clone());
        // The secondaries' addresses as the notifier resolves them, for the API's status.
        let notified: std::sync::Mutex<Option<ferrodns_transfer::notify::Addresses>> = std::sync::Mutex::new(None);
        let postgres = settings.database_url.as_deref().is_some_and(|u| u.starts_with("postgres"));
        let election = Election::new(
            settings.node_id.clone(),
            ElectionSettings { lease: settings.ha_lease, renew: settings.ha_renew },
            !postgres,
            Arc::new(ferrodns_transfer::clock::SystemClock),
        );
        if !settings.notify.is_empty() {
            // Before any zone is published, so that every serial is announced.
            let leader = election.clone();
            let term: ferrodns_transfer::notify::Term = Arc::new(move || leader.term());
            let key = settings.transfer_access.keys.first().cloned();
            let notifier = Notifier::spawn(settings.notify.clone(), key.clone(), peers.clone(), term.clone());
            ferrodns_transfer::drift::spawn(
                live.handle(),
                notifier.addresses(),
                key,
                peers.clone(),
                notifier.clone(),
                term,
                settings.drift_interval,
            );
            *notified.lock().unwrap_or_else(|e| e.into_inner()) = Some(notifier.addresses());
            let announce = replication::NotifyOnPublish { notifier };
            let (served, observer) = (live.clone(), Arc::new(announce.clone()));
            election.on_lead(move |term| {
                tracing::info!(term, "new leader: announcing every zone");
                served.snapshot().iter().for_each(|zone| observer.published(zone));
            });
            live.add_observer(Arc::new(announce));
            tracing::info!(secondaries = ?settings.notify, "NOTIFY on every serial change");
        }
        let recursion = Recursion::new(&settings.recursion, Arc::new(HostedZoneSet(live.handle())))
            .map_err(|e| anyhow::anyhow!("bad --forward-tls-ca: {e}"))?;
        recursion.set_fixed_zones(settings.forward_zones.clone());
        for (apex, forwarders) in &settings.forward_zones {
            let forwarders: Vec<String> = forwarders.iter().map(|f| f.to_string()).collect();
            tracing::info!(zone = %apex, ?forwarders, "forward zone");
        }
        let secondary_role = settings.secondary.is_some();
        if secondary_role && settings.api_listen.is_some() {
            tracing::info!("secondary role: zones come from the primaries, so the API is not started");
        }
        let control = if settings.runs_control_plane() {
            let replication = ferrodns_control::Replication {
                access: access.clone(),
                peers: peers.clone(),
                secondaries: notified.lock().unwrap_or_else(|e| e.into_inner()).clone().unwrap_or_default(),
            };
            // On an async thread, so that the database threads it starts
            // (SQLite's) take that thread's lower priority.
            let (settings, live, election, forward) =
                (settings.clone(), live.clone(), election.clone(), recursion.clone());
            let runtime = tokio::runtime::Handle::current();
            let started = tokio::task::spawn_blocking(move || {
                runtime.block_on(control::start(&settings, live, replication, election, forward))
            });
            Some(started.await.context("control plane start task failed")??)
        } else {
            None
        };
        let stored =
            control.as_ref().map(|control| Arc::new(replication::StoreJournal { store: control.plane.store.clone() }));
        let journal = stored.clone().map(|stored| stored as Arc<dyn Journal>);
        let owners = stored.map(|stored| stored as Arc<dyn ZoneOwners>);
        let identity = Arc::new(settings.server_identity.clone());
        let primary = Arc::new(Primary::new(live.handle(), access.clone(), journal, owners, peers.clone(), identity));
        if let Some(control) = &control {
            // NOTIFY for secondary zones made through the API, and their refreshes.
            primary.set_notify_listener(Arc::new(replication::SecondaryZonesNotify(control.plane.clone())));
            tokio::spawn(control.plane.clone().follow_secondary_zones(shutdown.clone()));
        }
        let mut secondary_role_state = None;
        if let Some(config) = &settings.secondary {
            let secondary = Secondary::start(
                SecondarySettings {
                    primaries: config.primaries.clone(),
                    key: settings.transfer_access.keys.first().cloned(),
                    catalog: settings.catalog_zone.clone(),
                    zones: config.zones.clone(),
                    data_dir: settings.data_dir.clone(),
                    limits: config.limits,
                    forward_zones: Some(forward_zones_from_catalog(recursion.clone())),
                },
                live.clone(),
            )
            .with_context(|| format!("cannot use the data directory {}", settings.data_dir.display()))?;
            secondary_role_state = Some(secondary.clone());
            primary.set_notify_listener(secondary);
            tracing::info!(primaries = ?config.primaries, catalog = ?settings.catalog_zone.as_ref().map(|c| c.to_string()), "secondary role");
        }
        // Started from this (the main) thread, so that the UDP workers keep
        // its default priority rather than the async threads' lower one.
        let dns_addrs = bound.local_addrs().to_vec();
        let node_state = Arc::new(crate::metrics::NodeState {
            node: settings.node_id.clone(),
            role: if secondary_role {
                "secondary"
            } else if control.is_some() {
                "control"
            } else {
                "files"
            },
            live: live.clone(),
            election: control.as_ref().map(|_| election.clone()),
            store: control.as_ref().map(|control| control.plane.store.clone()),
            recursion: recursion.clone(),
            secondary: secondary_role_state,
            peers: peers.clone(),
            zone_limit: settings.metrics_zone_limit,
        });
        let running = bound.with_recursion(recursion).start(
            live.handle(),
            Some(Arc::new(replication::HandOff(primary)) as Arc<dyn ControlHandler>),
            shutdown.clone(),
        )?;
        let server = tokio::spawn(running.finished());
        let zones = live.snapshot().len();
        if control.is_some() {
            // The stored zones load next, and say so when they have.
            tracing::info!(dns = ?dns_addrs, zones_before_stored = zones, udp_workers = settings.udp_workers, "serving DNS; loading the stored zones");
        } else {
            tracing::info!(dns = ?dns_addrs, zones, udp_workers = settings.udp_workers, "serving DNS");
        }
        if let Some(control) = &control {
            // On an async thread's priority, like the control plane's start.
            // DNS answers the zones loaded so far meanwhile.
            let plane = control.plane.clone();
            let runtime = tokio::runtime::Handle::current();
            tokio::task::spawn_blocking(move || runtime.block_on(control::load_stored_zones(&plane)))
                .await
                .context("stored zone load task failed")??;
        }
        // Joined at shutdown, so that a leader gives its lease up before the
        // process exits and another node takes over at once.
        let mut election_thread = None;
        if let (Some(control), true) = (&control, postgres) {
            // A new leader brings the catalog up to date (registered before
            // the election starts, so the first term gets it too).
            let plane = control.plane.clone();
            election.on_lead(move |_| {
                let plane = plane.clone();
                tokio::spawn(async move { catalog::sync(&plane, CatalogSync::Full).await });
            });
            // One round now, so that a node alone leads before its API answers.
            election.round(&control.plane.store).await;
            // Its own thread, started from this one (the main thread, which
            // polls this future) so that it keeps the UDP workers' priority.
            let (url, options) =
                (settings.database_url.clone().unwrap_or_default(), control.plane.store.options().clone());
            let open = move || async move {
                // A takeover waits at most half a lease for a fenced write in
                // flight, and is tried again at the next round.
                let lock_timeout = Some(options.fence_idle_limit);
                let options = ferrodns_store::StoreOptions { max_connections: 2, lock_timeout, ..options };
                loop {
                    match ferrodns_store::Store::open(&url, options.clone()).await {
                        Ok(store) => return Some(Arc::new(store)),
                        Err(e) => {
                            // This node takes no part in the election until then.
                            tracing::warn!(error = %e, "the election cannot open the database yet; retrying");
                            tokio::time::sleep(std::time::Duration::from_secs(1)).await;
                        }
                    }
                }
            };
            election_thread =
                Some(election.clone().run_on_thread(open, tokio::runtime::Handle::current(), shutdown.clone())?);
            let url = settings.database_url.clone().unwrap_or_default();
            tokio::spawn(ferrodns_control::follower::follow(
                control.plane.clone(),
                url,
                settings.ha_poll,
                shutdown.clone(),
            ));
            tokio::spawn(ferrodns_control::compaction::compact_journals(
                control.plane.clone(),
                settings.ha_poll * 5,
                shutdown.clone(),
            ));
            tracing::info!(node = %settings.node_id, lease = ?settings.ha_lease, "multi-node control plane: following other nodes, taking part in the election");
        }
        if let Some(control) = &control {
            // On an async thread, like the control plane's start: a database
            // connection it opens (SQLite's has a thread) takes that thread's
            // lower priority, not this one's.
            let plane = control.plane.clone();
            tokio::spawn(async move { control::publish_catalog(&plane).await })
                .await
                .context("catalog start task failed")?;
        }
        let api = match (&control, api_listener) {
            (Some(control), Some(listener)) => Some(
                control::serve_api(control, &settings, listener, node_state.clone().exposition(), shutdown.clone())
                    .await?,
            ),
            _ => None,
        };
        let metrics_server = match metrics_listener {
            Some(listener) => Some(crate::metrics::serve_metrics(listener, node_state, shutdown.clone()).await?),
            None => None,
        };
        let files = settings.zone_files.clone();
        let catalog_state = control.as_ref().map(|c| c.plane.clone());
        let reloader = tokio::spawn(zonefiles::reload_on_hangup(live, files, settings.allow_include, catalog_state));
        let mut stopping = shutdown;
        let _ = stopping.wait_for(|stop| *stop).await;
        reloader.abort();
        tracing::info!("shutting down");
        server.await.context("DNS server task failed")??;
        if let Some(api) = api {
            api.await.context("API task failed")??;
        }
        if let Some(server) = metrics_server {
            server.await.context("metrics task failed")??;
        }
        // Every worker is gone, so the query log's writer ends its stream
        // with STOP. With the database gone, giving the lease up can wait on
        // the pool; the lease then simply runs out.
        join_within(query_log, "the query log did not finish within 5 s of shutdown; its stream may lack its end")
            .await;
        join_within(election_thread, "the election did not finish within 5 s of shutdown; the lease runs out instead")
            .await;
        tracing::info!("stopped");
        Ok(())
    }
}

/// Waits up to 5 s for a thread that ends after shutdown; says `late` if
/// it does not.
async fn join_within(thread: Option<std::thread::JoinHandle<()>>, late: &str) {
    let Some(thread) = thread else { return };
    let joined = tokio::task::spawn_blocking(move || thread.join());
    if tokio::time::timeout(std::time::Duration::from_secs(5), joined).await.is_err() {
        tracing::warn!("{late}");
    }
}

/// Has `recursion` forward the zones a followed catalog carries, as a
/// primary's control plane forwards its stored ones.
fn forward_zones_from_catalog(recursion: Arc<Recursion>) -> ferrodns_transfer::secondary::ForwardZonesSink {
    ferrodns_transfer::secondary::ForwardZonesSink(Arc::new(move |zones| {
        recursion.set_stored_zones_text(zones, "the catalog")
    }))
}
