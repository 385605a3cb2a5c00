//! The `ferrodns` binary: `serve` runs the server, `zone`/`rrset`/`token` are
//! API clients, and `check-zone` checks master files. This is the only place that uses
//! `anyhow` and installs the log subscriber.

mod client;
mod config;
mod control;
mod replication;

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{bail, Context};
use clap::{Parser, Subcommand};
use ferrodns_control::catalog::{self, CatalogSync};
use ferrodns_control::{ControlPlane, Election, ElectionSettings};
use ferrodns_server::{ControlHandler, DnsSettings, TcpSettings, UdpSettings};
use ferrodns_transfer::catalog::file_zone_id;
use ferrodns_transfer::notify::Notifier;
use ferrodns_transfer::peers::Peers;
use ferrodns_transfer::primary::{Journal, Primary};
use ferrodns_transfer::secondary::{Secondary, SecondarySettings};
use ferrodns_zone::live::{LiveZones, Observer};
use ferrodns_zone::{load_zone_file, Zone, ZoneSet};
use tokio::sync::watch;

#[derive(Parser, Debug)]
#[command(name = "ferrodns", version, about = "Authoritative DNS server with a zone API")]
struct Cli {
    /// Log level: error, warn, info, debug, trace, or a tracing filter [default: info].
    #[arg(long = "log-level", env = "FERRODNS_LOG_LEVEL", global = true)]
    log_level: Option<String>,
    /// Log format: text or json.
    #[arg(long = "log-format", env = "FERRODNS_LOG_FORMAT", global = true, default_value = "text")]
    log_format: LogFormat,
    #[command(flatten)]
    client: client::ClientArgs,
    #[command(subcommand)]
    command: Command,
}

#[derive(clap::ValueEnum, Clone, Copy, Debug)]
enum LogFormat {
    Text,
    Json,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Run the server.
    Serve(Box<config::ServeArgs>),
    /// Manage zones through the API.
    #[command(subcommand)]
    Zone(client::ZoneCommand),
    /// Manage RRsets through the API.
    #[command(subcommand)]
    Rrset(client::RRsetCommand),
    /// Manage API tokens through the API.
    #[command(subcommand)]
    Token(client::TokenCommand),
    /// Check master files as `serve --zone-file` would load them, and print every problem.
    CheckZone {
        /// Let the files use $INCLUDE.
        #[arg(long = "allow-include")]
        allow_include: bool,
        /// Zone files to check.
        #[arg(required = true)]
        files: Vec<PathBuf>,
    },
}

fn init_logging(level: &str, format: LogFormat) -> anyhow::Result<()> {
    let filter = tracing_subscriber::EnvFilter::try_new(level).with_context(|| format!("bad --log-level '{level}'"))?;
    // Colours only for a person at a terminal, not in a journal or a log file.
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).with_ansi(ansi);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
    Ok(())
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Serve(args) => serve(*args, cli.log_level, cli.log_format),
        Command::CheckZone { allow_include, files } => {
            zone_file_paths(&files).and_then(|files| check_zone(&files, allow_include))
        }
        Command::Zone(command) => client::zone(&cli.client, command),
        Command::Rrset(command) => client::rrset(&cli.client, command),
        Command::Token(command) => client::token(&cli.client, command),
    };
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("ferrodns: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn check_zone(files: &[PathBuf], allow_include: bool) -> anyhow::Result<()> {
    let mut failed = 0;
    for file in files {
        match load_zone_file(file, allow_include) {
            Ok(loaded) => {
                for warning in &loaded.warnings {
                    println!("warning: {warning}");
                }
                println!(
                    "{}: zone {} serial {} loaded, {} records",
                    file.display(),
                    loaded.zone.apex(),
                    loaded.zone.serial().0,
                    loaded.zone.record_count()
                );
            }
            Err(e) => {
                failed += 1;
                for problem in &e.problems {
                    println!("{problem}");
                }
            }
        }
    }
    if failed > 0 {
        bail!("{failed} of {} zone files have errors", files.len());
    }
    Ok(())
}

/// The zone files named by `--zone-file` paths: a file as itself, a
/// directory as every `*.zone` file directly in it, in name order.
fn zone_file_paths(paths: &[PathBuf]) -> anyhow::Result<Vec<PathBuf>> {
    let mut files = Vec::new();
    for path in paths {
        if !path.is_dir() {
            files.push(path.clone());
            continue;
        }
        let mut found = Vec::new();
        for entry in std::fs::read_dir(path).with_context(|| format!("cannot read the directory {}", path.display()))? {
            let entry = entry.with_context(|| format!("cannot read the directory {}", path.display()))?;
            let name = entry.file_name();
            let is_zone = name.to_str().is_some_and(|n| n.ends_with(".zone") && !n.starts_with('.'));
            if is_zone && entry.file_type().map(|t| t.is_file() || t.is_symlink()).unwrap_or(false) {
                found.push(entry.path());
            }
        }
        found.sort();
        files.extend(found);
    }
    Ok(files)
}

/// Loads every zone file, on all cores, into one set. Any error voids the
/// whole load (a reload then keeps the zones it had).
fn load_zones(paths: &[PathBuf], allow_include: bool) -> anyhow::Result<ZoneSet> {
    let files = zone_file_paths(paths)?;
    let started = std::time::Instant::now();
    let threads = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1).min(files.len().max(1));
    let chunk = files.len().div_ceil(threads).max(1);
    // Each zone is logged when there are few; with many, only the total.
    let verbose = files.len() <= 100;
    let loaded: Vec<anyhow::Result<Vec<(Zone, PathBuf)>>> = std::thread::scope(|scope| {
        let workers: Vec<_> = files
            .chunks(chunk)
            .map(|part| {
                scope.spawn(move || {
                    let mut zones = Vec::with_capacity(part.len());
                    for file in part {
                        let started = std::time::Instant::now();
                        let loaded = load_zone_file(file, allow_include)
                            .map_err(|e| anyhow::anyhow!("zone file {} did not load:\n{e}", file.display()))?;
                        for warning in &loaded.warnings {
                            tracing::warn!("{warning}");
                        }
                        if verbose {
                            let zone = &loaded.zone;
                            tracing::info!(
                                zone = %zone.apex(),
                                serial = zone.serial().0,
                                records = zone.record_count(),
                                file = %file.display(),
                                elapsed_ms = started.elapsed().as_millis() as u64,
                                "zone loaded"
                            );
                        }
                        zones.push((loaded.zone, file.clone()));
                    }
                    Ok(zones)
                })
            })
            .collect();
        workers
            .into_iter()
            .map(|w| w.join().unwrap_or_else(|_| Err(anyhow::anyhow!("a zone loader panicked"))))
            .collect()
    });
    let mut zones = ZoneSet::new();
    let mut records = 0;
    for part in loaded {
        for (zone, file) in part? {
            records += zone.record_count();
            let zone = Arc::new(zone);
            if zones.insert(zone.clone()).is_some() {
                bail!("zone {} is given by more than one zone file (again in {})", zone.apex(), file.display());
            }
        }
    }
    if !verbose {
        tracing::info!(
            zones = zones.len(),
            records,
            elapsed_ms = started.elapsed().as_millis() as u64,
            "zone files loaded"
        );
    }
    Ok(zones)
}

fn serve(args: config::ServeArgs, log_level: Option<String>, log_format: LogFormat) -> anyhow::Result<()> {
    let settings = Arc::new(args.resolve()?);
    let level = log_level.or(settings.file_log_level.clone()).unwrap_or_else(|| "info".into());
    init_logging(&level, log_format)?;
    let dns = DnsSettings {
        listen: settings.dns_listen.clone(),
        udp_workers: settings.udp_workers,
        udp: UdpSettings {
            coalesce: settings.udp_coalesce,
            segment_offload: settings.udp_gso,
            busy_poll: settings.udp_busy_poll,
        },
        tcp: TcpSettings { idle_timeout: settings.tcp_idle_timeout, max_connections: settings.tcp_max_connections },
    };
    let bound = ferrodns_server::bind(&dns)?;
    let live = Arc::new(LiveZones::new(load_zones(&settings.zone_files, settings.allow_include)?));
    release_freed_memory();
    // The async threads (TCP, the API, replication, HA, and the database
    // threads they start) run at a lower priority than the UDP workers, so
    // that on a shared core a burst of control-plane work waits for queries
    // rather than the other way round.
    let async_nice = settings.async_nice;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(settings.udp_workers.clamp(1, 4))
        .on_thread_start(move || lower_thread_priority(async_nice))
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(async move {
        let (stop, shutdown) = watch::channel(false);
        // Zone files alone (the benchmark's and differential tests' mode) need
        // no database and leave no data directory behind.
        let peers = Arc::new(Peers::default());
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
        let secondary_role = settings.secondary.is_some();
        if secondary_role && settings.api_listen.is_some() {
            tracing::info!("secondary role: zones come from the primaries, so the API is not started");
        }
        let control = if !secondary_role && (settings.api_listen.is_some() || settings.database_url.is_some()) {
            let replication = ferrodns_control::Replication {
                access: access.clone(),
                peers: peers.clone(),
                secondaries: notified.lock().unwrap_or_else(|e| e.into_inner()).clone().unwrap_or_default(),
            };
            // On an async thread, so that the database threads it starts
            // (SQLite's) take that thread's lower priority.
            let (settings, live, election) = (settings.clone(), live.clone(), election.clone());
            let runtime = tokio::runtime::Handle::current();
            let started = tokio::task::spawn_blocking(move || {
                runtime.block_on(control::start(&settings, live, replication, election))
            });
            Some(started.await.context("control plane start task failed")??)
        } else {
            None
        };
        tracing::info!(dns = ?bound.local_addrs(), zones = live.snapshot().len(), udp_workers = settings.udp_workers, "serving DNS");
        if let (Some(control), true) = (&control, postgres) {
            // A new leader brings the catalog up to date (registered before
            // the election starts, so the first term gets it too).
            let plane = control.plane.clone();
            election.on_lead(move |_| {
                let plane = plane.clone();
                tokio::spawn(async move { catalog::sync(&plane, CatalogSync::Full).await });
            });
            tokio::spawn(election.clone().run(control.plane.store.clone(), shutdown.clone()));
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
        let journal = control.as_ref().map(|control| {
            Arc::new(replication::StoreJournal { store: control.plane.store.clone() }) as Arc<dyn Journal>
        });
        let primary = Arc::new(Primary::new(live.handle(), access.clone(), journal, peers));
        if let Some(config) = &settings.secondary {
            let secondary = Secondary::start(
                SecondarySettings {
                    primaries: config.primaries.clone(),
                    key: settings.transfer_access.keys.first().cloned(),
                    catalog: settings.catalog_zone.clone(),
                    zones: config.zones.clone(),
                    data_dir: settings.data_dir.clone(),
                    limits: config.limits,
                },
                live.clone(),
            )
            .with_context(|| format!("cannot use the data directory {}", settings.data_dir.display()))?;
            primary.set_notify_listener(secondary);
            tracing::info!(primaries = ?config.primaries, catalog = ?settings.catalog_zone.as_ref().map(|c| c.to_string()), "secondary role");
        }
        // Started from this (the main) thread, so that the UDP workers keep
        // its default priority rather than the async threads' lower one.
        let running = bound.start(live.handle(), Some(Arc::new(replication::HandOff(primary)) as Arc<dyn ControlHandler>), shutdown.clone())?;
        let server = tokio::spawn(running.finished());
        let api = match (&control, settings.api_listen) {
            (Some(control), Some(address)) => Some(control::serve_api(control, &settings, address, shutdown).await?),
            _ => None,
        };
        let files = settings.zone_files.clone();
        let catalog_state = control.as_ref().map(|c| c.plane.clone());
        let reloader = tokio::spawn(reload_on_hangup(live, files, settings.allow_include, catalog_state));
        wait_for_signal().await?;
        reloader.abort();
        tracing::info!("shutting down");
        let _ = stop.send(true);
        server.await.context("DNS server task failed")??;
        if let Some(api) = api {
            api.await.context("API task failed")??;
        }
        tracing::info!("stopped");
        Ok(())
    })
}

/// Raises the calling thread's nice value by `by` (Linux applies nice to
/// one thread). Lowering one's own priority needs no privilege; failure only
/// leaves the default.
fn lower_thread_priority(by: i32) {
    if by > 0 {
        // SAFETY: nice() has no preconditions; its result is only advisory here.
        unsafe {
            libc::nice(by);
        }
    }
}

/// Hands memory freed after zone loading (parser and builder scratch) back to
/// the kernel. glibc keeps freed heap pages mapped otherwise, and they would
/// count against the server's resident size for its whole life.
fn release_freed_memory() {
    // SAFETY: malloc_trim has no preconditions; 0 means keep no extra padding.
    unsafe {
        libc::malloc_trim(0);
    }
}

/// Reloads every `--zone-file` on SIGHUP and publishes them with one atomic
/// swap (zones from the database stay as they are): queries in flight finish on the old set, the next ones see
/// the new one, and nobody waits. If any file fails to load, nothing changes
/// and the problems are logged. With a control plane, the catalog then lists
/// the reloaded zone files under a new serial.
async fn reload_on_hangup(
    live: Arc<LiveZones>,
    files: Vec<PathBuf>,
    allow_include: bool,
    control: Option<Arc<ControlPlane>>,
) -> anyhow::Result<()> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut hangup = signal(SignalKind::hangup()).context("cannot watch SIGHUP")?;
    while hangup.recv().await.is_some() {
        let files = files.clone();
        let started = std::time::Instant::now();
        match tokio::task::spawn_blocking(move || load_zones(&files, allow_include)).await {
            Ok(Ok(new_set)) => {
                let count = new_set.len();
                let members: Vec<_> = new_set.iter().map(|z| (z.apex().clone(), file_zone_id(z.apex()))).collect();
                live.replace_file_zones(new_set);
                tokio::task::spawn_blocking(release_freed_memory);
                tracing::info!(zones = count, elapsed_ms = started.elapsed().as_millis() as u64, "zone files reloaded");
                if let Some(plane) = &control {
                    if plane.catalog.as_ref().is_some_and(|catalog| catalog.set_file_members(members)) {
                        catalog::sync(plane, CatalogSync::FilesChanged).await;
                    }
                }
            }
            Ok(Err(e)) => tracing::error!("reload failed, still serving the previous zones: {e:#}"),
            Err(e) => tracing::error!("reload task failed, still serving the previous zones: {e}"),
        }
    }
    Ok(())
}

async fn wait_for_signal() -> anyhow::Result<()> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut terminate = signal(SignalKind::terminate()).context("cannot watch SIGTERM")?;
    let mut interrupt = signal(SignalKind::interrupt()).context("cannot watch SIGINT")?;
    tokio::select! {
        _ = terminate.recv() => {}
        _ = interrupt.recv() => {}
    }
    Ok(())
}
