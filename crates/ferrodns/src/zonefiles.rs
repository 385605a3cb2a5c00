//! Zone files: finding them (`--zone-file` takes files and directories),
//! loading them on every core into one zone set, and reloading them on
//! SIGHUP.

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{bail, Context};
use ferrodns_control::catalog::{self, CatalogSync};
use ferrodns_control::ControlPlane;
use ferrodns_transfer::catalog::file_zone_id;
use ferrodns_zone::live::LiveZones;
use ferrodns_zone::{load_zone_file, Zone, ZoneSet};

/// The zone files named by `--zone-file` paths: a file as itself, a
/// directory as every `*.zone` file directly in it, in name order.
pub fn zone_file_paths(paths: &[PathBuf]) -> anyhow::Result<Vec<PathBuf>> {
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
pub fn load_zones(paths: &[PathBuf], allow_include: bool) -> anyhow::Result<ZoneSet> {
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

pub use ferrodns_zone::memory::release_freed_memory;

/// Reloads every `--zone-file` on SIGHUP and publishes them with one atomic
/// swap (zones from the database stay as they are): queries in flight finish on the old set, the next ones see
/// the new one, and nobody waits. If any file fails to load, nothing changes
/// and the problems are logged. With a control plane, the catalog then lists
/// the reloaded zone files under a new serial.
pub async fn reload_on_hangup(
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
