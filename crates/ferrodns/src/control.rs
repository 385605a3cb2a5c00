//! The control plane of `serve`: the data directory, the store, the first
//! admin token, loading stored zones into the served set, and the API.

use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::os::unix::io::AsRawFd;
use std::path::Path;
use std::sync::Arc;

use anyhow::{bail, Context};
use ferrodns_api::{ApiSettings, ApiState};
use ferrodns_control::catalog::{self, CatalogSync};
use ferrodns_control::tokens::{hash_secret, new_id, new_secret, OPERATOR_TENANT};
use ferrodns_control::{ControlPlane, Election, NamePolicy, Replication, ZoneDefaults};
use ferrodns_proto::Name;
use ferrodns_store::{Store, StoreError, StoreOptions, TokenRecord};
use ferrodns_transfer::catalog::{file_zone_id, Catalog};
use ferrodns_zone::edit::Limits;
use ferrodns_zone::live::LiveZones;
use tokio::sync::watch;

use crate::config::ServeSettings;

/// A running control plane.
pub struct Control {
    pub plane: Arc<ControlPlane>,
    /// Held for the process's life: a second server on the same data
    /// directory would corrupt nothing in SQLite but would serve stale data.
    _lock: File,
}

/// Opens the data directory and the store and creates the first admin
/// token. The stored zones are served by [`load_stored_zones`], called once
/// DNS listens.
pub async fn start(
    settings: &ServeSettings,
    live: Arc<LiveZones>,
    replication: Replication,
    election: Arc<Election>,
    forward: Arc<ferrodns_forward::Recursion>,
) -> anyhow::Result<Control> {
    let dir = &settings.data_dir;
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .with_context(|| format!("cannot create the data directory {}", dir.display()))?;
    let lock = lock_data_dir(dir)?;
    let url = settings.database_url.clone().unwrap_or_else(|| Store::sqlite_url(dir));
    let options = StoreOptions {
        serial_policy: settings.serial_policy,
        journal_keep: settings.journal_keep,
        limits: Limits { max_records_per_rrset: settings.max_records_per_rrset, ..Limits::default() },
        fence_idle_limit: settings.ha_lease / 2,
        ..StoreOptions::default()
    };
    let deadline = std::time::Instant::now() + DATABASE_WAIT;
    let opening = format!("cannot open the database {}", redact(&url));
    let store =
        when_the_database_answers(deadline, &opening, async || Store::open(&url, options.clone()).await).await?;
    tracing::info!(database = %redact(&url), "database ready");
    bootstrap_admin_token(&store, dir).await?;
    // The catalog lists the stored zones as the database says (see
    // ferrodns_control::catalog) and the zones this node serves from files.
    let file_members: Vec<(Name, String)> = live
        .snapshot()
        .iter()
        .filter(|zone| live.is_file_zone(zone.apex_lower()))
        .map(|zone| (zone.apex().clone(), file_zone_id(zone.apex())))
        .collect();
    let catalog = settings.catalog_zone.clone().map(|name| Arc::new(Catalog::new(name, live.clone(), file_members)));
    let plane = Arc::new(ControlPlane {
        store: Arc::new(store),
        live,
        catalog,
        locks: Default::default(),
        leadership: election,
        replication: Some(Arc::new(replication)),
        defaults: ZoneDefaults {
            nameservers: settings.default_ns.clone(),
            rate_limit: ferrodns_zone::RateLimit { rate: settings.rrl.rate, slip: settings.rrl.slip },
            ..ZoneDefaults::default()
        },
        names: NamePolicy { reserved: settings.reserved_zones.clone() },
        forward: Some(forward),
        secondary_zones: Default::default(),
        tokens: Default::default(),
    });
    plane.load_tsig_keys().await.map_err(|e| anyhow::anyhow!("cannot load TSIG keys: {e}"))?;
    Ok(Control { plane, _lock: lock })
}

/// How many zones the start-up load builds before it publishes them; it
/// publishes sooner when [`LOAD_PUBLISH_EVERY`] has passed.
const LOAD_BATCH: usize = 10_000;
const LOAD_PUBLISH_EVERY: std::time::Duration = std::time::Duration::from_millis(100);

/// Serves every stored zone: one pass over the stored RRsets, built zone by
/// zone and published in batches (every [`LOAD_BATCH`] zones or
/// [`LOAD_PUBLISH_EVERY`]), so that DNS, already listening, answers the
/// zones loaded so far while the rest load (a zone not yet loaded is
/// refused, as any zone the server does not hold). Publishing only sends to
/// the observers' queues (NOTIFY), so it may run while the pass holds its
/// database connection. A zone changed meanwhile is never set back: a
/// batch never replaces a newer serial. On several nodes, the follower
/// starts once this is done, and its first catch-up drops what other nodes
/// deleted while it ran.
pub async fn load_stored_zones(plane: &ControlPlane) -> anyhow::Result<()> {
    let (store, live) = (&plane.store, &plane.live);
    let started = std::time::Instant::now();
    let deadline = started + DATABASE_WAIT;
    let zones =
        when_the_database_answers(deadline, "cannot list stored zones", async || store.all_zones().await).await?;
    let by_id: std::collections::HashMap<i64, &ferrodns_store::ZoneRecord> = zones.iter().map(|z| (z.id, z)).collect();
    // A pass cut short starts over: it only reads, and publishing a zone
    // again at the same serial changes nothing.
    let loaded = when_the_database_answers(deadline, "cannot read the stored zones", async || {
        let (mut batch, mut loaded, mut last_publish) = (Vec::new(), 0usize, std::time::Instant::now());
        store
            .each_zone_rrsets(None, &mut |id, rrsets| {
                let Some(zone) = by_id.get(&id) else { return };
                if live.is_file_zone(zone.name.as_wire()) {
                    tracing::warn!(zone = %zone.name, "zone is both in the database and a --zone-file; serving the file");
                    return;
                }
                batch.extend(ferrodns_control::build_stored_zone(&zone.name, zone.rate_limit, &rrsets));
                if batch.len() >= LOAD_BATCH || last_publish.elapsed() >= LOAD_PUBLISH_EVERY {
                    loaded += batch.len();
                    live.publish_zones(std::mem::take(&mut batch));
                    last_publish = std::time::Instant::now();
                }
            })
            .await?;
        loaded += batch.len();
        live.publish_zones(batch);
        Ok(loaded)
    })
    .await?;
    when_the_database_answers(deadline, "cannot read the forward zones", async || {
        plane.refresh_forward_zones().await.map_err(|e| match e {
            ferrodns_control::ControlError::Store(e) => e,
            other => StoreError::Corrupt(other.to_string()),
        })
    })
    .await?;
    tracing::info!(zones = loaded, elapsed_ms = started.elapsed().as_millis() as u64, "stored zones loaded");
    Ok(())
}

/// How long a starting node waits for its database to answer (PostgreSQL
/// restarting, a node starting before it, a machine too busy to connect in
/// time) before it gives up and exits.
const DATABASE_WAIT: std::time::Duration = std::time::Duration::from_secs(60);

/// Runs `attempt` until the database answers it: while the answer is that
/// the database is unavailable, logs so and tries again every second until
/// `deadline`; any other error is returned with `what` as its context.
async fn when_the_database_answers<T>(
    deadline: std::time::Instant,
    what: &str,
    mut attempt: impl AsyncFnMut() -> Result<T, StoreError>,
) -> anyhow::Result<T> {
    loop {
        match attempt().await {
            Ok(done) => return Ok(done),
            Err(StoreError::Unavailable(error)) if std::time::Instant::now() < deadline => {
                tracing::warn!(error, "the database does not answer yet; waiting for it");
                tokio::time::sleep(std::time::Duration::from_secs(1)).await;
            }
            Err(StoreError::Unavailable(error)) => {
                anyhow::bail!("{what}: database unavailable for {} s at start: {error}", DATABASE_WAIT.as_secs())
            }
            Err(e) => return Err(e).context(what.to_string()),
        }
    }
}

/// Brings the catalog zone up at start: a single node writes and publishes
/// it; a node of several publishes what the leader last wrote (and writes it
/// once it leads). Called once DNS serves, before the API: with many zones
/// the catalog takes a while to write and build, and the zones are served
/// meanwhile.
pub async fn publish_catalog(plane: &ControlPlane) {
    catalog::sync(plane, CatalogSync::Full).await;
    if let Some(catalog) = &plane.catalog {
        match catalog.published() {
            Some((serial, _)) => tracing::info!(catalog = %catalog.name(), serial = serial.0, "catalog zone published"),
            None => tracing::info!(catalog = %catalog.name(), "catalog zone waits for the leader"),
        }
    }
}

/// Serves the API on `listener` until shutdown.
pub async fn serve_api(
    control: &Control,
    settings: &ServeSettings,
    listener: std::net::TcpListener,
    exposition: ferrodns_api::Exposition,
    shutdown: watch::Receiver<bool>,
) -> anyhow::Result<tokio::task::JoinHandle<anyhow::Result<()>>> {
    listener.set_nonblocking(true)?;
    let listener = tokio::net::TcpListener::from_std(listener).context("cannot serve the API")?;
    let tls = match &settings.api_tls {
        Some((cert, key)) => Some(Arc::new(crate::tls::ApiTls::load(cert, key)?)),
        None => None,
    };
    let scheme = if tls.is_some() { "https" } else { "http" };
    tracing::info!(api = %listener.local_addr()?, scheme, data_dir = %settings.data_dir.display(), "serving the API");
    if let Some(tls) = &tls {
        tokio::spawn(crate::tls::reload_on_hangup(tls.clone()));
    }
    let mut state = ApiState::new(
        control.plane.clone(),
        ApiSettings {
            max_body_bytes: settings.max_body_bytes,
            request_timeout: settings.api_request_timeout,
            max_in_flight: settings.api_max_in_flight,
            ..ApiSettings::default()
        },
    );
    state.metrics = Some(exposition);
    let descriptors = crate::http::raise_descriptor_limit();
    let max_connections =
        crate::http::api_connection_cap(settings.api_max_connections, settings.tcp_max_connections, descriptors);
    if max_connections < settings.api_max_connections {
        tracing::warn!(
            descriptors,
            wanted = settings.api_max_connections,
            max_connections,
            "few descriptors: the API takes fewer connections, so that DNS over TCP keeps its own"
        );
    }
    let limits = crate::http::HttpLimits {
        header_timeout: settings.api_header_timeout,
        max_connections,
        max_per_client: settings.api_max_per_client.min(max_connections),
    };
    let app = ferrodns_api::router(state);
    Ok(tokio::spawn(async move {
        crate::http::serve(listener, app, limits, tls, shutdown).await.context("API server failed")
    }))
}

fn lock_data_dir(dir: &Path) -> anyhow::Result<File> {
    let path = dir.join("lock");
    let file = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .mode(0o600)
        .open(&path)
        .with_context(|| format!("cannot open {}", path.display()))?;
    // SAFETY: flock on a descriptor we own; no memory is involved.
    let locked = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } == 0;
    if !locked {
        bail!("another ferrodns is using the data directory {}", dir.display());
    }
    Ok(file)
}

/// On the first start with no tokens, creates the operator's admin token and
/// writes it to `<data-dir>/admin.token` (mode 0600). `FERRODNS_ADMIN_TOKEN`,
/// when set, is the token instead of a random one; once the database holds
/// tokens it is not used, and the log says so (an environment variable left
/// in a unit file must not silently mint or replace an admin token on every
/// start: `ferrodns token create-admin` does that on purpose).
async fn bootstrap_admin_token(store: &Store, dir: &Path) -> anyhow::Result<()> {
    let from_env = std::env::var("FERRODNS_ADMIN_TOKEN").ok().map(|v| v.trim().to_string()).filter(|v| !v.is_empty());
    if store.token_count().await.context("cannot count tokens")? > 0 {
        if from_env.is_some() {
            tracing::warn!(
                "FERRODNS_ADMIN_TOKEN is set but not used: it only seeds the first admin token of an empty \
                 database, and this one holds tokens; to add an admin token, run `ferrodns token create-admin`"
            );
        }
        return Ok(());
    }
    let secret = from_env.unwrap_or_else(new_secret);
    store
        .create_token(&operator_token("admin"), &hash_secret(&secret))
        .await
        .context("cannot store the admin token")?;
    let path = dir.join("admin.token");
    let mut file = OpenOptions::new()
        .create(true)
        .truncate(true)
        .write(true)
        .mode(0o600)
        .open(&path)
        .with_context(|| format!("cannot write {}", path.display()))?;
    writeln!(file, "{secret}")?;
    file.sync_all()?;
    tracing::info!(path = %path.display(), "created the admin token");
    Ok(())
}

/// A new admin token of the operator tenant with no zone list.
fn operator_token(name: &str) -> TokenRecord {
    TokenRecord {
        id: new_id(8),
        name: name.to_string(),
        tenant: OPERATOR_TENANT.to_string(),
        role: "admin".to_string(),
        zones: None,
        created_at: ferrodns_control::now_micros(),
        revoked_at: None,
    }
}

/// `ferrodns token create-admin`: stores a new operator admin token straight
/// in the database, without the API, and returns its id and secret. This
/// is the way back for an operator who has lost every admin token; it needs
/// what the node itself needs (the data directory, or the database URL), so
/// it is as privileged as the host account that runs the node. A running
/// node accepts the token at once: tokens are looked up per request.
pub async fn create_admin_offline(
    data_dir: &Path,
    database_url: Option<&str>,
    name: &str,
) -> anyhow::Result<(String, String)> {
    let url = match database_url {
        Some(url) => url.to_string(),
        None => {
            let file = data_dir.join("ferrodns.db");
            if !file.exists() {
                bail!("no database at {}: pass the node's --data-dir or --database-url", file.display());
            }
            Store::sqlite_url(data_dir)
        }
    };
    let store = Store::open(&url, StoreOptions::default())
        .await
        .with_context(|| format!("cannot open the database {}", redact(&url)))?;
    let token = operator_token(name);
    let secret = new_secret();
    store.create_token(&token, &hash_secret(&secret)).await.context("cannot store the admin token")?;
    Ok((token.id, secret))
}

/// A database URL without its password, for logs.
fn redact(url: &str) -> String {
    match (url.find("://"), url.find('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            let credentials = &url[scheme + 3..at];
            match credentials.split_once(':') {
                Some((user, _)) => format!("{}{user}:***{}", &url[..scheme + 3], &url[at..]),
                None => url.to_string(),
            }
        }
        _ => url.to_string(),
    }
}
