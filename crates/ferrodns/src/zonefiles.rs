//! Zone files: finding them (`--zone-file` takes files, directories, and
//! `NAME=FILE` for a file that does not name its zone), loading them on
//! every core into one zone set, and reloading them on SIGHUP.

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{bail, Context};
use ferrodns_control::catalog::{self, CatalogSync};
use ferrodns_control::ControlPlane;
use ferrodns_proto::Name;
use ferrodns_transfer::catalog::file_zone_id;
use ferrodns_zone::live::LiveZones;
use ferrodns_zone::{load_zone_file_as, Zone, ZoneSet};

/// A zone file to load, and the zone's name when the operator gave it.
#[derive(Clone, Debug, PartialEq)]
pub struct ZoneFile {
    pub path: PathBuf,
    /// From `NAME=FILE`: the origin the file starts at and the zone's name,
    /// as BIND's and Knot's configuration give it. Otherwise the file's
    /// first `$ORIGIN`, or its SOA's owner.
    pub origin: Option<Name>,
}

/// Splits `NAME=FILE`. A file whose own name holds `=` is given with a
/// directory (`./a=b.zone`): the text before `=` must be a domain name,
/// with no `/`.
fn split_origin(argument: &std::path::Path) -> anyhow::Result<ZoneFile> {
    let text = argument.to_string_lossy();
    match text.split_once('=') {
        Some((name, path)) if !name.contains('/') && !name.is_empty() => {
            let absolute = if name.ends_with('.') { name.to_string() } else { format!("{name}.") };
            let origin = Name::parse(&absolute, None)
                .map_err(|e| anyhow::anyhow!("bad zone name in --zone-file '{text}': {e}"))?;
            if path.is_empty() {
                bail!("--zone-file '{text}' names no file after '='");
            }
            Ok(ZoneFile { path: PathBuf::from(path), origin: Some(origin.to_lowercase()) })
        }
        _ => Ok(ZoneFile { path: argument.to_path_buf(), origin: None }),
    }
}

/// The zone files named by `--zone-file` arguments: a file as itself,
/// `NAME=FILE` as that file loaded as zone NAME, a directory as every
/// `*.zone` file directly in it, in name order.
pub fn zone_file_paths(paths: &[PathBuf]) -> anyhow::Result<Vec<ZoneFile>> {
    let mut files = Vec::new();
    for argument in paths {
        let file = split_origin(argument)?;
        let path = &file.path;
        if !path.is_dir() {
            files.push(file);
            continue;
        }
        if file.origin.is_some() {
            bail!("--zone-file {}: NAME=FILE takes one file, not a directory", argument.display());
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
        files.extend(found.into_iter().map(|path| ZoneFile { path, origin: None }));
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
                    for ZoneFile { path: file, origin } in part {
                        let started = std::time::Instant::now();
                        let loaded = load_zone_file_as(file, origin.as_ref(), allow_include)
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn name_equals_file_names_the_zone() {
        let named = split_origin(std::path::Path::new("Example.COM=/etc/bind/db.example")).unwrap();
        assert_eq!(named.path, PathBuf::from("/etc/bind/db.example"));
        assert_eq!(named.origin.unwrap().to_string(), "example.com.");
        let plain = split_origin(std::path::Path::new("./odd=name.zone")).unwrap();
        assert_eq!((plain.path, plain.origin), (PathBuf::from("./odd=name.zone"), None));
        assert!(split_origin(std::path::Path::new("example.com=")).is_err());
        assert!(split_origin(std::path::Path::new("bad..name=x.zone")).is_err());
    }
}
