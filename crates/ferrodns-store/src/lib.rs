//! All SQL in ferrodns: zones, RRsets, the change journal and API tokens, in
//! SQLite (the embedded default) or PostgreSQL (for HA).
//!
//! One code path serves both databases through sqlx's `Any` driver for
//! zones, RRsets, the journal, tokens and keys: `$n` parameters (turned into
//! `?` for SQLite where a statement takes many, see `Markers`), `RETURNING`,
//! `ON CONFLICT`, row values. The leader lease and LISTEN/NOTIFY are
//! PostgreSQL's alone. The schemas differ in identity columns, BLOB or
//! BYTEA, and the lease's expiry column; see `migrations/`. On an SQLite
//! file, batches of RRset changes run the same steps, with the same SQL, on
//! a writer thread of their own (`sqlite`).
//!
//! A change to a zone is one transaction, in this order:
//! 1. `UPDATE zones SET version = version + 1 … RETURNING` takes the zone's
//!    row lock (PostgreSQL) or the database's write lock (SQLite), so writers
//!    to one zone queue here, on every node, and serials stay gap-free;
//! 2. the RRsets at the owners the batch touches are read and the batch
//!    (checked on its own terms before it got here, `edit::Checked`) is
//!    planned by [`ferrodns_zone::edit::plan`], which may reject it;
//! 3. RRsets are written, the SOA gets its next serial, and the diff goes to
//!    `journal`; then commit. A rejected or failed batch rolls back whole.
//!
//! Times are microseconds since the Unix epoch, passed in by the caller.

mod announcer;
mod duties;
mod migrate;
mod queue;
mod serial;
mod sqlite;

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::path::Path;
use std::time::Duration;

use ferrodns_proto::{Name, RecordType, Serial};
use ferrodns_zone::edit::{
    self, Checked, Diff, EditError, ImportMode, Limits, PackedZone, PackedZoneBuilder, RRsetData, RRsetKey, Record,
    Records, Working,
};
use ferrodns_zone::RateLimit;
use sqlx::any::{AnyPoolOptions, AnyRow};
use sqlx::{Any, AnyPool, Executor, Row, Transaction};

pub use duties::{CatalogState, Fence};
pub use serial::{civil_from_days, initial_serial, next_serial, SerialPolicy};

/// The two databases ferrodns runs on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// The tenant of the operator's own tokens.
pub const OPERATOR_TENANT: &str = "system";

/// Why a store operation failed, in terms the API maps to HTTP statuses.
#[derive(Debug)]
pub enum StoreError {
    /// The database cannot be reached or is shutting down; DNS keeps serving.
    Unavailable(String),
    /// The zone, RRset, change or token does not exist.
    NotFound,
    /// A zone or token of that name exists already.
    Exists,
    /// `If-Match` did not name the zone's current version.
    VersionMismatch { current: i64 },
    /// The batch breaks the zone rules; nothing was written.
    Rejected(Vec<EditError>),
    /// The write would break an invariant the server keeps (as revoking
    /// the last operator token would); says which.
    Conflict(String),
    /// The zone does not take this kind of write (its caller's [`Writable`]
    /// said no): the zone as it is, for the caller to say why.
    NotWritable(Box<ZoneRecord>),
    /// Data in the database does not decode: a bug or tampering.
    Corrupt(String),
    /// Any other database error.
    Database(String),
}

impl fmt::Display for StoreError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StoreError::Unavailable(e) => write!(f, "database unavailable: {e}"),
            StoreError::NotFound => f.write_str("not found"),
            StoreError::Exists => f.write_str("already exists"),
            StoreError::VersionMismatch { current } => write!(f, "the zone is at version {current}"),
            StoreError::Rejected(errors) => write!(f, "{} errors in the change", errors.len()),
            StoreError::Conflict(e) => f.write_str(e),
            StoreError::NotWritable(zone) => write!(f, "the {} zone {} does not take this write", zone.kind, zone.name),
            StoreError::Corrupt(e) => write!(f, "stored data is corrupt: {e}"),
            StoreError::Database(e) => write!(f, "database error: {e}"),
        }
    }
}

impl std::error::Error for StoreError {}

impl From<sqlx::Error> for StoreError {
    fn from(error: sqlx::Error) -> StoreError {
        match &error {
            sqlx::Error::RowNotFound => StoreError::NotFound,
            sqlx::Error::PoolTimedOut | sqlx::Error::PoolClosed | sqlx::Error::Io(_) | sqlx::Error::Tls(_) => {
                StoreError::Unavailable(error.to_string())
            }
            sqlx::Error::Database(db) => {
                // PostgreSQL class 08 (connection) and 57P (operator intervention:
                // shutdown, crash recovery) mean the database is going away.
                let code = db.code().unwrap_or_default();
                if code.starts_with("08") || code.starts_with("57P") {
                    StoreError::Unavailable(error.to_string())
                } else if db.is_unique_violation() {
                    StoreError::Exists
                } else {
                    StoreError::Database(error.to_string())
                }
            }
            _ => StoreError::Database(error.to_string()),
        }
    }
}

type Result<T> = std::result::Result<T, StoreError>;

/// How the store behaves; the binary fills this from its settings.
#[derive(Clone, Debug)]
pub struct StoreOptions {
    pub serial_policy: SerialPolicy,
    /// Journal entries kept per zone; older ones are deleted every 16 changes
    /// (SQLite) or by the leader's compaction (PostgreSQL).
    pub journal_keep: u32,
    pub limits: Limits,
    /// How long to wait for a database connection before answering "unavailable".
    pub acquire_timeout: Duration,
    /// PostgreSQL: the longest a leader's fenced transaction may sit idle
    /// between statements before the server ends it, and the longest the
    /// election waits for a row lock. A leader that vanished mid-write
    /// without closing its connection (a host powered off, a partition)
    /// would otherwise hold its share lock on the lease row, and so keep
    /// every other node from taking the lease, until TCP gave up on it,
    /// hours later. The binary sets half the lease.
    pub fence_idle_limit: Duration,
    /// PostgreSQL: connections in the pool.
    pub max_connections: u32,
    /// PostgreSQL: the `lock_timeout` of every connection of the pool, if
    /// any: how long a statement may wait for a row lock before it fails.
    pub lock_timeout: Option<Duration>,
}

impl Default for StoreOptions {
    fn default() -> StoreOptions {
        StoreOptions {
            serial_policy: SerialPolicy::Increment,
            journal_keep: 1000,
            limits: Limits::default(),
            acquire_timeout: Duration::from_secs(3),
            fence_idle_limit: Duration::from_secs(1),
            max_connections: 16,
            lock_timeout: None,
        }
    }
}

/// A zone's row.
#[derive(Clone, Debug)]
pub struct ZoneRecord {
    pub id: i64,
    /// Lowercase apex.
    pub name: Name,
    pub tenant: String,
    pub kind: String,
    pub serial: Serial,
    pub version: i64,
    pub rrset_count: i64,
    /// RFC 9432 member-zone unique id, stable while the zone exists.
    pub catalog_id: String,
    pub created_at: i64,
    pub updated_at: i64,
    /// The zone's own response rate limit; `None` for the server's.
    pub rate_limit: Option<RateLimit>,
    /// A forward zone's forwarders (`ADDR` or `ADDR:PORT`); `None` for
    /// every other kind.
    pub forwarders: Option<Vec<String>>,
    /// A secondary zone's primaries (`ADDR` or `ADDR:PORT`); `None` for
    /// every other kind.
    pub primaries: Option<Vec<String>>,
}

/// The kind of a zone whose queries go to forwarders: it holds no RRsets.
pub const FORWARD_KIND: &str = "forward";
/// The kind of a zone whose data comes by transfer from primaries outside
/// ferrodns; only those transfers write it.
pub const SECONDARY_KIND: &str = "secondary";
/// The kind of a zone written through the API.
pub const PRIMARY_KIND: &str = "primary";

impl ZoneRecord {
    pub fn is_forward(&self) -> bool {
        self.kind == FORWARD_KIND
    }

    pub fn is_secondary(&self) -> bool {
        self.kind == SECONDARY_KIND
    }
}

/// Who a change is recorded as made by: the token's display name, its id
/// and its tenant.
#[derive(Clone, Copy, Debug)]
pub struct Author<'a> {
    pub name: &'a str,
    pub token: &'a str,
    pub tenant: &'a str,
}

/// A change-history entry, without its records.
#[derive(Clone, Debug)]
pub struct ChangeRecord {
    pub id: i64,
    pub zone_id: i64,
    pub serial_from: Serial,
    pub serial_to: Serial,
    /// The display name of the token that made the change.
    pub actor: String,
    /// That token's id and tenant ('' for changes made before they were
    /// recorded): the name alone is whatever the token's creator chose.
    pub actor_token: String,
    pub actor_tenant: String,
    pub at: i64,
    /// What was asked, as JSON.
    pub summary: String,
}

/// The journal columns [`change_from_row`] reads.
const CHANGE_COLUMNS: &str = "id, zone_id, serial_from, serial_to, actor, actor_token, actor_tenant, at, summary";

/// The most records of each side of a change that [`Store::change`] reads,
/// and the most bytes of each side it reads from the journal.
pub const CHANGE_HEAD_RECORDS: usize = 10_000;
pub const CHANGE_HEAD_BYTES: usize = 1 << 20;

/// The start of a change's diff, as [`Store::change`] reads it.
#[derive(Clone, Debug)]
pub struct ChangeHead {
    pub removed: Records,
    pub added: Records,
    /// Whether either side holds more than is here.
    pub truncated: bool,
}

/// What a committed change returns: the zone after it, the history entry,
/// and the diff to publish.
#[derive(Clone, Debug)]
pub struct Committed {
    pub zone: ZoneRecord,
    /// `None` when the batch changed nothing (no serial bump, no entry).
    pub change: Option<ChangeRecord>,
    /// Shared: an import's diff holds every record of the zone, and
    /// publishing it keeps it in the zone's history without a copy.
    pub diff: Option<std::sync::Arc<Diff>>,
}

/// A stored zone as a follower compares it with what it serves
/// ([`Store::zone_serials`]).
#[derive(Clone, Debug)]
pub struct StoredSerial {
    pub id: i64,
    /// Lowercase apex.
    pub name: Name,
    pub serial: Serial,
    /// The zone's own response rate limit; `None` for the server's.
    pub rate_limit: Option<RateLimit>,
}

/// The most zones one statement of a many-zone read covers
/// ([`Store::journals_since`], [`Store::each_zone_rrsets`]): under both
/// databases' parameter limits, and a bound on what one read holds.
pub const ZONES_PER_READ: usize = 256;

/// An API token's row (never the secret).
#[derive(Clone, Debug)]
pub struct TokenRecord {
    pub id: String,
    pub name: String,
    pub tenant: String,
    pub role: String,
    /// Lowercase zone names the token is limited to, if any.
    pub zones: Option<Vec<String>>,
    pub created_at: i64,
    pub revoked_at: Option<i64>,
}

/// Who may see what: `None` tenant means every tenant.
#[derive(Clone, Copy, Debug, Default)]
pub struct Scope<'a> {
    pub tenant: Option<&'a str>,
    pub zones: Option<&'a [String]>,
}

impl Scope<'_> {
    fn allows(&self, zone: &ZoneRecord) -> bool {
        self.tenant.is_none_or(|t| t == zone.tenant)
            && self.zones.is_none_or(|list| list.iter().any(|z| *z == zone.name.to_string()))
    }
}

/// Which zones a change may write, as the caller (the control plane, whose
/// rule it is) decides from the zone's row. The store asks once the zone is
/// locked, so that the answer holds until the commit; a zone it refuses
/// comes back in [`StoreError::NotWritable`].
pub type Writable = fn(&ZoneRecord) -> bool;

/// Whether a locked zone takes a change: in `scope` (else not found, so
/// that nothing about zones out of scope is told), writable, at a version
/// `If-Match` names.
fn admit(zone: &ZoneRecord, scope: &Scope<'_>, writable: Option<Writable>, if_match: Option<&[i64]>) -> Result<()> {
    if !scope.allows(zone) {
        return Err(StoreError::NotFound);
    }
    if writable.is_some_and(|writable| !writable(zone)) {
        return Err(StoreError::NotWritable(Box::new(zone.clone())));
    }
    check_version(zone.version - 1, if_match)
}

/// Checks a zone's version against `If-Match`'s list (any when `None`).
fn check_version(current: i64, if_match: Option<&[i64]>) -> Result<()> {
    match if_match {
        Some(accepted) if !accepted.contains(&current) => Err(StoreError::VersionMismatch { current }),
        _ => Ok(()),
    }
}

/// A change between its lock and its commit.
struct OpenChange<'s> {
    _guard: Option<tokio::sync::MutexGuard<'s, ()>>,
    tx: Transaction<'static, Any>,
    /// The zone with its version already bumped.
    zone: ZoneRecord,
    /// The SOA, when the change read it with its owners.
    soa: Option<RRsetData>,
}

/// Where a change moves the zone's SOA.
struct NextSoa {
    serial: Serial,
    /// The SOA's TTL, which a change keeps.
    ttl: u32,
    old_rdata: Vec<u8>,
    new_rdata: Vec<u8>,
}

impl NextSoa {
    /// The new SOA RRset, to write with the plan's rows.
    fn soa(&self, apex: &Name) -> RRsetData {
        RRsetData::new(apex, RecordType::SOA, self.ttl, vec![self.new_rdata.clone()])
    }

    /// The change's IXFR step from `zone` (RFC 1995: the old SOA leads the
    /// removed records, the new one the added), and how many RRsets the
    /// zone gains.
    fn diff(self, zone: &ZoneRecord, plan: Planned) -> (Diff, i64) {
        let soa_record =
            |rdata: Vec<u8>| Record { owner: zone.name.clone(), rtype: RecordType::SOA, ttl: self.ttl, rdata };
        let (mut removed, mut added, rrset_delta) = plan.into_records();
        removed.push_front(&soa_record(self.old_rdata));
        added.push_front(&soa_record(self.new_rdata));
        (Diff { old_serial: zone.serial, new_serial: self.serial, removed, added }, rrset_delta)
    }
}

/// Takes a zone's row lock and moves its version on (`$1` name, `$2` now):
/// step 1 of a change.
const UPDATE_ZONE_VERSION: &str = "UPDATE zones SET version = version + 1, updated_at = $2 WHERE name = $1";

/// Moves a zone to its new serial and RRset count (`$1` id, `$2` serial,
/// `$3` RRsets gained).
const UPDATE_ZONE_SERIAL: &str = "UPDATE zones SET serial = $2, rrset_count = rrset_count + $3 WHERE id = $1";

/// The store: a connection pool and the options.
pub struct Store {
    pool: AnyPool,
    backend: Backend,
    options: std::sync::Arc<StoreOptions>,
    /// SQLite has one writer at a time; queueing writers here rather than in
    /// SQLite's busy handler keeps waits fair and short. The change writer's
    /// thread takes it too.
    sqlite_writer: std::sync::Arc<tokio::sync::Mutex<()>>,
    /// SQLite's change path (see `sqlite`); none on PostgreSQL, or for a
    /// database that is not a file.
    changes: Option<sqlite::Writer>,
    /// PostgreSQL's per-zone change queues (see `queue`).
    queues: std::sync::Arc<queue::Queues>,
}

const ZONE_COLUMNS: &str =
    "id, name, tenant, kind, serial, version, rrset_count, catalog_id, created_at, updated_at, rrl_rate, rrl_slip, \
     forwarders, primaries";

impl Store {
    /// Connects and runs pending migrations. `url` is `sqlite://PATH` or
    /// `postgres://…`; an SQLite file is created if missing.
    pub async fn open(url: &str, options: StoreOptions) -> Result<Store> {
        sqlx::any::install_default_drivers();
        let backend = if url.starts_with("postgres:") || url.starts_with("postgresql:") {
            Backend::Postgres
        } else if url.starts_with("sqlite:") {
            Backend::Sqlite
        } else {
            return Err(StoreError::Database(format!(
                "unsupported database URL {url:?}: use sqlite:// or postgres://"
            )));
        };
        let mut pool_options = AnyPoolOptions::new().acquire_timeout(options.acquire_timeout);
        pool_options = match backend {
            // A file does not drop connections, so a connection taken from
            // the pool is not pinged first (a round trip to sqlx's worker
            // thread on every statement outside a transaction).
            Backend::Sqlite => pool_options.max_connections(8).test_before_acquire(false).after_connect(|conn, _| {
                Box::pin(async move {
                    // WAL lets readers run beside the writer; FULL makes every
                    // acknowledged commit survive power loss, not only a crash.
                    conn.execute("PRAGMA journal_mode = WAL").await?;
                    conn.execute("PRAGMA synchronous = FULL").await?;
                    conn.execute("PRAGMA foreign_keys = ON").await?;
                    conn.execute("PRAGMA busy_timeout = 5000").await?;
                    Ok(())
                })
            }),
            Backend::Postgres => {
                let lock_timeout = options.lock_timeout.map(|t| t.as_millis().max(1));
                pool_options.max_connections(options.max_connections.max(1)).after_connect(move |conn, _| {
                    Box::pin(async move {
                        if let Some(ms) = lock_timeout {
                            conn.execute(format!("SET lock_timeout = {ms}").as_str()).await?;
                        }
                        Ok(())
                    })
                })
            }
        };
        let url = match backend {
            Backend::Sqlite if !url.contains('?') => format!("{url}?mode=rwc"),
            _ => url.to_string(),
        };
        let pool = pool_options.connect(&url).await?;
        migrate::run(&pool, backend).await?;
        let sqlite_writer = std::sync::Arc::new(tokio::sync::Mutex::new(()));
        let changes = match sqlite_file(&url) {
            Some(path) if backend == Backend::Sqlite => {
                Some(sqlite::Writer::start(path, options.clone(), sqlite_writer.clone())?)
            }
            _ => None,
        };
        let options = std::sync::Arc::new(options);
        Ok(Store { pool, backend, options, sqlite_writer, changes, queues: Default::default() })
    }

    /// The connection pool now: connections open, and how many are idle.
    pub fn pool_usage(&self) -> (u32, usize) {
        (self.pool.size(), self.pool.num_idle())
    }

    /// The SQLite URL for a data directory.
    pub fn sqlite_url(data_dir: &Path) -> String {
        format!("sqlite://{}", data_dir.join("ferrodns.db").display())
    }

    /// Which database this is.
    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// The options in force.
    pub fn options(&self) -> &StoreOptions {
        &self.options
    }

    /// Closes the pool (tests use this to simulate a database going away).
    pub async fn close(&self) {
        if let Some(changes) = &self.changes {
            changes.close();
        }
        self.queues.cool();
        self.pool.close().await;
    }

    /// True if the database answers.
    pub async fn ping(&self) -> Result<()> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }

    async fn begin_write(&self) -> Result<(Option<tokio::sync::MutexGuard<'_, ()>>, Transaction<'static, Any>)> {
        let guard = match self.backend {
            Backend::Sqlite => Some(self.sqlite_writer.lock().await),
            Backend::Postgres => None,
        };
        let tx = self.pool.begin().await?;
        Ok((guard, tx))
    }

    // ----- zones -----

    /// Creates a zone holding `rrsets` (which must include the SOA and NS),
    /// or a forward zone (no RRsets, serial 0), and records its creation in
    /// the journal. `upstreams` are a forward zone's forwarders or a
    /// secondary zone's primaries, as `kind` says; other kinds have none.
    #[allow(clippy::too_many_arguments)]
    pub async fn create_zone(
        &self,
        apex: &Name,
        tenant: &str,
        kind: &str,
        rrsets: Vec<RRsetData>,
        upstreams: Option<&[String]>,
        catalog_id: &str,
        author: &Author<'_>,
        now: i64,
    ) -> Result<(ZoneRecord, Diff)> {
        let apex = apex.to_lowercase();
        let (forwarders, primaries) = match kind {
            FORWARD_KIND => (upstreams, None),
            SECONDARY_KIND => (None, upstreams),
            _ => (None, None),
        };
        let serial = match kind {
            FORWARD_KIND => Serial(0),
            _ => {
                let soa = rrsets
                    .iter()
                    .find(|s| s.rtype == RecordType::SOA && s.owner == apex)
                    .ok_or_else(|| StoreError::Corrupt("a new zone needs an SOA".into()))?;
                ferrodns_proto::rdata::soa_serial(&soa.rdatas[0])
                    .ok_or_else(|| StoreError::Corrupt("bad SOA".into()))?
            }
        };
        let (_guard, mut tx) = self.begin_write().await?;
        let row = sqlx::query(&format!(
            "INSERT INTO zones (name, tenant, kind, serial, version, rrset_count, catalog_id, created_at, updated_at, \
             forwarders, primaries) VALUES ($1, $2, $3, $4, 1, $5, $6, $7, $7, $8, $9) RETURNING {ZONE_COLUMNS}"
        ))
        .bind(apex.to_string())
        .bind(tenant)
        .bind(kind)
        .bind(serial.0 as i64)
        .bind(rrsets.len() as i64)
        .bind(catalog_id)
        .bind(now)
        .bind(forwarders.map(|list| list.join(" ")))
        .bind(primaries.map(|list| list.join(" ")))
        .fetch_one(&mut *tx)
        .await?;
        let zone = zone_from_row(&row)?;
        let writes: Vec<(RRsetKey, Option<RRsetData>)> = rrsets.iter().map(|s| (s.key(), Some(s.clone()))).collect();
        write_rrsets(&mut tx, self.backend, zone.id, &writes).await?;
        let mut added = Records::new();
        for set in &rrsets {
            set.rdatas.iter().for_each(|r| added.push(&set.owner, set.rtype, set.ttl, r));
        }
        let diff = Diff { old_serial: serial, new_serial: serial, removed: Records::new(), added };
        let summary = match (forwarders, primaries) {
            (Some(list), _) => serde_json::json!([{"action": "create-zone", "kind": kind, "forwarders": list}]),
            (_, Some(list)) => serde_json::json!([{"action": "create-zone", "kind": kind, "primaries": list}]),
            _ => serde_json::json!([{"action": "create-zone", "kind": kind}]),
        }
        .to_string();
        insert_journal(&mut tx, zone.id, &diff, author, now, &summary).await?;
        announce(&mut tx, self.backend, &zone.name, Some(zone.serial)).await?;
        tx.commit().await?;
        Ok((zone, diff))
    }

    /// The zone with this lowercase apex.
    pub async fn zone(&self, apex: &Name) -> Result<ZoneRecord> {
        let row = sqlx::query(&format!("SELECT {ZONE_COLUMNS} FROM zones WHERE name = $1"))
            .bind(apex.to_lowercase().to_string())
            .fetch_optional(&self.pool)
            .await?
            .ok_or(StoreError::NotFound)?;
        zone_from_row(&row)
    }

    /// The zone if `scope` may see it; otherwise not found, so that other
    /// tenants' zones are indistinguishable from absent ones.
    pub async fn zone_in_scope(&self, apex: &Name, scope: &Scope<'_>) -> Result<ZoneRecord> {
        let zone = self.zone(apex).await?;
        if scope.allows(&zone) {
            Ok(zone)
        } else {
            Err(StoreError::NotFound)
        }
    }

    /// The stored zones named `apex`, above it or below it, whatever
    /// their tenant: what a new zone at `apex` would overlap.
    pub async fn zones_related_to(&self, apex: &Name) -> Result<Vec<ZoneRecord>> {
        let text = apex.to_lowercase().to_string();
        let mut ancestors = Vec::new();
        let mut name = apex.to_lowercase();
        while let Some(parent) = name.parent() {
            ancestors.push(parent.to_string());
            name = parent;
        }
        let placeholders: Vec<String> = (3..3 + ancestors.len()).map(|n| format!("${n}")).collect();
        let mut sql = format!("SELECT {ZONE_COLUMNS} FROM zones WHERE name = $1 OR name LIKE $2 ESCAPE '\\'");
        if !placeholders.is_empty() {
            sql.push_str(&format!(" OR name IN ({})", placeholders.join(", ")));
        }
        let escaped = text.replace('\\', "\\\\").replace('%', "\\%").replace('_', "\\_");
        let mut query = sqlx::query(&sql).bind(text.clone()).bind(format!("%.{escaped}"));
        for ancestor in ancestors {
            query = query.bind(ancestor);
        }
        query.fetch_all(&self.pool).await?.iter().map(zone_from_row).collect()
    }

    /// Zones in name order after `after`, at most `limit`, whose name
    /// contains `name_contains`.
    pub async fn list_zones(
        &self,
        scope: &Scope<'_>,
        name_contains: Option<&str>,
        after: Option<&str>,
        limit: u32,
    ) -> Result<Vec<ZoneRecord>> {
        let mut sql = format!("SELECT {ZONE_COLUMNS} FROM zones WHERE name > $1");
        let mut next = 2;
        if scope.tenant.is_some() {
            sql.push_str(&format!(" AND tenant = ${next}"));
            next += 1;
        }
        if name_contains.is_some() {
            sql.push_str(&format!(" AND name LIKE ${next} ESCAPE '\\'"));
            next += 1;
        }
        // A token's zone list is a filter in the query too, so that a token
        // limited to a few zones never reads every zone of the database.
        if let Some(zones) = scope.zones {
            if zones.is_empty() {
                return Ok(Vec::new());
            }
            let placeholders: Vec<String> = (next..next + zones.len()).map(|n| format!("${n}")).collect();
            sql.push_str(&format!(" AND name IN ({})", placeholders.join(", ")));
            next += zones.len();
        }
        sql.push_str(&format!(" ORDER BY name LIMIT ${next}"));
        let mut query = sqlx::query(&sql).bind(after.unwrap_or("").to_string());
        if let Some(tenant) = scope.tenant {
            query = query.bind(tenant.to_string());
        }
        if let Some(text) = name_contains {
            let escaped = text.to_lowercase().replace('\\', "\\\\").replace('%', "\\%").replace('_', "\\_");
            query = query.bind(format!("%{escaped}%"));
        }
        for zone in scope.zones.unwrap_or_default() {
            query = query.bind(zone.clone());
        }
        let rows = query.bind(limit as i64).fetch_all(&self.pool).await?;
        let mut zones = Vec::with_capacity(rows.len().min(limit as usize));
        for row in &rows {
            let zone = zone_from_row(row)?;
            if scope.allows(&zone) {
                zones.push(zone);
                if zones.len() == limit as usize {
                    break;
                }
            }
        }
        Ok(zones)
    }

    /// Every zone (for loading the served set at start).
    pub async fn all_zones(&self) -> Result<Vec<ZoneRecord>> {
        let rows =
            sqlx::query(&format!("SELECT {ZONE_COLUMNS} FROM zones ORDER BY name")).fetch_all(&self.pool).await?;
        rows.iter().map(zone_from_row).collect()
    }

    /// Deletes a zone and everything in it.
    /// Deletes a zone, if its version is one of `if_match` (any when `None`).
    pub async fn delete_zone(&self, zone_id: i64, if_match: Option<&[i64]>) -> Result<()> {
        let (_guard, mut tx) = self.begin_write().await?;
        // Lock the row before checking its version, so that no change slips
        // in between (a no-op UPDATE, which both databases accept).
        let row = sqlx::query("UPDATE zones SET version = version WHERE id = $1 RETURNING version")
            .bind(zone_id)
            .fetch_optional(&mut *tx)
            .await?
            .ok_or(StoreError::NotFound)?;
        check_version(row.try_get::<i64, _>("version").map_err(|e| corrupt(&e.to_string()))?, if_match)?;
        // The journal and RRsets go by cascade; delete them first anyway so
        // that a database without foreign-key enforcement stays clean.
        sqlx::query("DELETE FROM journal WHERE zone_id = $1").bind(zone_id).execute(&mut *tx).await?;
        sqlx::query("DELETE FROM rrsets WHERE zone_id = $1").bind(zone_id).execute(&mut *tx).await?;
        let deleted = sqlx::query("DELETE FROM zones WHERE id = $1 RETURNING name")
            .bind(zone_id)
            .fetch_optional(&mut *tx)
            .await?
            .ok_or(StoreError::NotFound)?;
        let name = name_column(&deleted, "name")?;
        announce(&mut tx, self.backend, &name, None).await?;
        tx.commit().await?;
        Ok(())
    }

    // ----- RRsets -----

    /// RRsets of a zone in (owner, type) order after `after`, filtered.
    pub async fn list_rrsets(
        &self,
        zone_id: i64,
        owner: Option<&Name>,
        rtype: Option<RecordType>,
        after: Option<(&str, u16)>,
        limit: u32,
    ) -> Result<Vec<RRsetData>> {
        let mut sql = String::from(
            "SELECT owner, rtype, ttl, rdata FROM rrsets WHERE zone_id = $1 AND (owner, rtype) > ($2, $3)",
        );
        let mut next = 4;
        if owner.is_some() {
            sql.push_str(&format!(" AND owner = ${next}"));
            next += 1;
        }
        if rtype.is_some() {
            sql.push_str(&format!(" AND rtype = ${next}"));
            next += 1;
        }
        sql.push_str(&format!(" ORDER BY owner, rtype LIMIT ${next}"));
        let (after_owner, after_type) = after.unwrap_or(("", 0));
        let mut query = sqlx::query(&sql).bind(zone_id).bind(after_owner.to_string()).bind(after_type as i64);
        if let Some(owner) = owner {
            query = query.bind(owner.to_lowercase().to_string());
        }
        if let Some(rtype) = rtype {
            query = query.bind(rtype.0 as i64);
        }
        let rows = query.bind(limit as i64).fetch_all(&self.pool).await?;
        rows.iter().map(rrset_from_row).collect()
    }

    /// One RRset.
    pub async fn rrset(&self, zone_id: i64, owner: &Name, rtype: RecordType) -> Result<RRsetData> {
        let row =
            sqlx::query("SELECT owner, rtype, ttl, rdata FROM rrsets WHERE zone_id = $1 AND owner = $2 AND rtype = $3")
                .bind(zone_id)
                .bind(owner.to_lowercase().to_string())
                .bind(rtype.0 as i64)
                .fetch_optional(&self.pool)
                .await?
                .ok_or(StoreError::NotFound)?;
        rrset_from_row(&row)
    }

    /// Every RRset of a zone.
    /// Every stored zone's RRsets in one pass over the table, zone by zone:
    /// `each` gets a zone's id and its RRsets (zones without any are not
    /// given). One query whatever the number of zones, and one zone's rows
    /// in memory at a time.
    ///
    /// `zones` limits the pass to those zones' ids (at most
    /// [`ZONES_PER_READ`]: one statement); `None` reads every zone.
    pub async fn each_zone_rrsets(
        &self,
        zones: Option<&[i64]>,
        each: &mut (dyn FnMut(i64, Vec<RRsetData>) + Send),
    ) -> Result<()> {
        use futures_util::TryStreamExt;
        let sql = match zones {
            None => "SELECT zone_id, owner, rtype, ttl, rdata FROM rrsets ORDER BY zone_id".to_string(),
            Some(ids) => format!(
                "SELECT zone_id, owner, rtype, ttl, rdata FROM rrsets WHERE zone_id IN ({}) ORDER BY zone_id",
                Markers::new(self.backend).take(ids.len().max(1))
            ),
        };
        let mut query = sqlx::query(&sql).persistent(false);
        match zones {
            Some([]) => return Ok(()),
            Some(ids) => query = ids.iter().fold(query, |query, id| query.bind(*id)),
            None => {}
        }
        let mut rows = query.fetch(&self.pool);
        let mut current: Option<(i64, Vec<RRsetData>)> = None;
        while let Some(row) = rows.try_next().await? {
            let zone_id: i64 = row.try_get("zone_id")?;
            let rrset = rrset_from_row(&row)?;
            match &mut current {
                Some((id, rrsets)) if *id == zone_id => rrsets.push(rrset),
                _ => {
                    if let Some((id, rrsets)) = current.replace((zone_id, vec![rrset])) {
                        each(id, rrsets);
                    }
                }
            }
        }
        if let Some((id, rrsets)) = current {
            each(id, rrsets);
        }
        Ok(())
    }

    pub async fn zone_rrsets(&self, zone_id: i64) -> Result<Vec<RRsetData>> {
        let rows = sqlx::query("SELECT owner, rtype, ttl, rdata FROM rrsets WHERE zone_id = $1")
            .bind(zone_id)
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(rrset_from_row).collect()
    }

    // ----- changes -----

    /// Applies a batch atomically; see the module docs for the steps.
    /// `if_match` lists the zone versions the client accepts (`If-Match`);
    /// `None` accepts any.
    #[allow(clippy::too_many_arguments)]
    pub async fn apply_changes(
        &self,
        scope: &Scope<'_>,
        writable: Writable,
        if_match: Option<&[i64]>,
        batch: Checked,
        summary: &str,
        author: &Author<'_>,
        now: i64,
    ) -> Result<Committed> {
        if self.changes.is_some() || self.backend == Backend::Postgres {
            let (reply, answer) = tokio::sync::oneshot::channel();
            let job = queue::Job {
                batch,
                tenant: scope.tenant.map(str::to_string),
                zones: scope.zones.map(<[String]>::to_vec),
                writable,
                if_match: if_match.map(<[i64]>::to_vec),
                summary: summary.to_string(),
                author: (author.name.to_string(), author.token.to_string(), author.tenant.to_string()),
                now,
                reply,
            };
            match &self.changes {
                Some(writer) => writer.submit(job)?,
                None => self.queues.submit(&self.pool, &self.options, job),
            }
            return answer.await.map_err(|_| StoreError::Unavailable("the store is closed".into()))?;
        }
        let apex = batch.apex();
        let mut open = self.begin_change(apex, scope, Some(writable), if_match, now).await?;
        // One statement reads the touched owners and the SOA (after the
        // zone row is locked, as `finish_change` explains).
        let (current, soa) =
            load_owners_and_soa(&mut open.tx, self.backend, open.zone.id, apex, &batch.owners()).await?;
        open.soa = Some(soa);
        let plan = edit::plan(current, &batch).map_err(StoreError::Rejected)?;
        self.finish_change(open, Planned::Batch(plan), None, summary, author, now).await
    }

    /// Imports parsed RRsets atomically. `rrsets` holds no SOA; `soa` is the
    /// file's SOA RDATA, whose names and timers the zone takes. The serial
    /// moves on from the zone's, or jumps to the file's when that is newer.
    #[allow(clippy::too_many_arguments)]
    pub async fn import(
        &self,
        apex: &Name,
        scope: &Scope<'_>,
        if_match: Option<&[i64]>,
        mode: ImportMode,
        rrsets: PackedZone,
        soa: Option<Vec<u8>>,
        summary: &str,
        author: &Author<'_>,
        now: i64,
    ) -> Result<Committed> {
        let apex_lower = apex.to_lowercase();
        let mut open = self.begin_change(apex, scope, None, if_match, now).await?;
        let mut current = PackedZoneBuilder::new();
        let mut keep = |set: RRsetData| {
            if !(set.rtype == RecordType::SOA && set.owner == apex_lower) {
                set.rdatas.iter().for_each(|rdata| current.push(&set.owner, set.rtype, set.ttl, rdata));
            }
        };
        match mode {
            ImportMode::Replace => {
                // Streamed into the packed side: a whole zone's rows, held
                // as rows and RRsets, would take several times its size.
                use futures_util::TryStreamExt;
                let mut rows = sqlx::query("SELECT owner, rtype, ttl, rdata FROM rrsets WHERE zone_id = $1")
                    .bind(open.zone.id)
                    .fetch(&mut *open.tx);
                while let Some(row) = rows.try_next().await? {
                    keep(rrset_from_row(&row)?);
                }
            }
            ImportMode::Merge => {
                // The apex too: the NS check needs its RRsets.
                let mut owners = rrsets.owners();
                owners.push(apex_lower.clone());
                owners.sort();
                owners.dedup();
                load_owners(&mut open.tx, self.backend, open.zone.id, &owners).await?.into_values().for_each(keep);
            }
        }
        let plan = edit::plan_import(apex, current.finish(), rrsets, mode).map_err(StoreError::Rejected)?;
        self.finish_change(open, Planned::Import(Box::new(plan)), soa, summary, author, now).await
    }

    /// Step 1 of a change: lock the zone and check `If-Match`.
    async fn begin_change(
        &self,
        apex: &Name,
        scope: &Scope<'_>,
        writable: Option<Writable>,
        if_match: Option<&[i64]>,
        now: i64,
    ) -> Result<OpenChange<'_>> {
        let (guard, mut tx) = self.begin_write().await?;
        let zone = lock_zone(&mut tx, apex, scope, writable, if_match, now).await?;
        Ok(OpenChange { _guard: guard, tx, zone, soa: None })
    }

    /// Step 3 of a change: write the plan, move the serial, journal, commit.
    async fn finish_change(
        &self,
        open: OpenChange<'_>,
        plan: Planned,
        new_soa_fields: Option<Vec<u8>>,
        summary: &str,
        author: &Author<'_>,
        now: i64,
    ) -> Result<Committed> {
        let OpenChange { _guard, mut tx, zone, soa } = open;
        // The SOA is read in a statement of its own, after the zone row is
        // locked. Folded into the locking UPDATE's RETURNING it would come from
        // that statement's snapshot, taken before it waited for the lock, so on
        // PostgreSQL a change queued behind another would see the SOA before
        // that one and journal a broken IXFR chain (tests/failover.rs caught it).
        // A batch read it with its owners, after the lock (see apply_changes).
        let old_soa = match soa {
            Some(soa) => soa,
            None => read_soa(&mut tx, zone.id, &zone.name).await?,
        };
        let outcome = finish_write(
            &mut tx,
            self.backend,
            &self.options,
            zone,
            old_soa,
            plan,
            new_soa_fields,
            summary,
            author,
            now,
        )
        .await?;
        match outcome {
            queue::Outcome::Written(committed) => {
                announce(&mut tx, self.backend, &committed.zone.name, Some(committed.zone.serial)).await?;
                tx.commit().await?;
                Ok(committed)
            }
            queue::Outcome::Unchanged(committed) => {
                tx.rollback().await?;
                Ok(committed)
            }
        }
    }
}

/// Step 1 of a change inside `tx`: moves the zone's version on (which takes
/// its row lock on PostgreSQL) and checks the scope, `writable` and
/// `If-Match` ([`admit`]).
async fn lock_zone(
    tx: &mut Transaction<'static, Any>,
    apex: &Name,
    scope: &Scope<'_>,
    writable: Option<Writable>,
    if_match: Option<&[i64]>,
    now: i64,
) -> Result<ZoneRecord> {
    // RETURNING gives the bumped version and the serial before the change.
    let row = sqlx::query(&format!("{UPDATE_ZONE_VERSION} RETURNING {ZONE_COLUMNS}"))
        .bind(apex.to_lowercase().to_string())
        .bind(now)
        .fetch_optional(&mut **tx)
        .await?
        .ok_or(StoreError::NotFound)?;
    let zone = zone_from_row(&row)?;
    admit(&zone, scope, writable, if_match)?;
    Ok(zone)
}

/// Steps 1 and 2 of a change on PostgreSQL, in one statement
/// ([`zone_and_owners_sql`]): the zone's row, and the RRsets at `owners` and
/// the SOA. With `lock`, the statement takes the zone's row lock (`FOR
/// UPDATE`; the change's write moves the version on); without, it reads one
/// snapshot and locks nothing (a change alone, whose write is guarded by
/// the version read, or one under the lock its transaction holds already).
/// `NotFound` when there is no zone at `apex`; `admit`'s refusal when it
/// refuses the zone, asked before the RRsets are looked at (a forward zone
/// has none, not even an SOA).
///
/// A locking read sees the statement's snapshot, taken before the row lock
/// was granted. Every write of a zone's RRsets moves its version in the
/// same transaction (or deletes the zone), so when the version the snapshot
/// saw is the one locked, nothing committed in between and the RRsets read
/// are current; otherwise they are read again, under the lock.
async fn load_zone_and_owners(
    conn: &mut sqlx::AnyConnection,
    apex: &Name,
    owners: &[Name],
    lock: bool,
    admit: impl FnOnce(&ZoneRecord) -> Result<()>,
) -> Result<(ZoneRecord, Working, RRsetData)> {
    if owners.len() > 500 {
        // The zone first (reading only the apex), then the owners in chunks.
        let (zone, ..) = Box::pin(load_zone_and_owners(conn, apex, &[], lock, admit)).await?;
        let (working, soa) = load_owners_and_soa(conn, Backend::Postgres, zone.id, apex, owners).await?;
        return Ok((zone, working, soa));
    }
    let sql = zone_and_owners_sql(owners.len(), lock);
    let read = OwnersAndSoa::new(apex, owners);
    // Prepared for the common batches of a few owners; one plan per count.
    let mut query = sqlx::query(&sql).persistent(owners.len() <= 4).bind(apex.to_lowercase().to_string());
    for text in read.text_parameters(owners) {
        query = query.bind(text);
    }
    let rows = query.bind(RecordType::SOA.0 as i64).fetch_all(&mut *conn).await?;
    let first = rows.first().ok_or(StoreError::NotFound)?;
    let zone = zone_from_row(first)?;
    admit(&zone)?;
    if lock {
        let seen: Option<i64> = first.try_get("seen_version").map_err(|e| corrupt(&e.to_string()))?;
        if seen != Some(zone.version) {
            let (working, soa) = load_owners_and_soa(conn, Backend::Postgres, zone.id, apex, owners).await?;
            return Ok((zone, working, soa));
        }
    }
    let (working, soa) = read.read_rows(&rows)?;
    Ok((zone, working, soa))
}

/// [`load_zone_and_owners`]'s statement: `$1` the apex, then the owners, the
/// apex and the SOA's type as in [`owners_and_soa_sql`]. Each row is the
/// zone's and one RRset; with `lock`, the zone's row is the locked one, with
/// the version the statement's snapshot saw (`seen_version`).
///
/// The RRsets are found by the zone id the snapshot saw (the same row the
/// lock found, or none), not by a join on the locked row: PostgreSQL plans
/// such a join as a scan of every RRset of every zone (10 ms at 100,000,
/// where this takes 0.1 ms through the primary key).
pub(crate) fn zone_and_owners_sql(owners: usize, lock: bool) -> String {
    let mut markers = Markers::new(Backend::Postgres);
    markers.take(1);
    let (zone, seen) = if lock {
        (
            format!(
                "locked AS (SELECT {ZONE_COLUMNS} FROM zones WHERE name = $1 FOR UPDATE), \
                 seen AS (SELECT id, version FROM zones WHERE name = $1)"
            ),
            "locked.*, (SELECT version FROM seen) AS seen_version",
        )
    } else {
        (format!("seen AS (SELECT {ZONE_COLUMNS} FROM zones WHERE name = $1)"), "seen.*")
    };
    let from = if lock { "locked" } else { "seen" };
    format!(
        "WITH {zone}, \
         current AS (SELECT owner, rtype, ttl, rdata FROM rrsets WHERE zone_id = (SELECT id FROM seen) \
         AND (owner IN ({owners}) OR (owner = {apex} AND rtype = {soa}))) \
         SELECT {seen}, current.owner, current.rtype, current.ttl, current.rdata FROM {from} LEFT JOIN current ON true",
        owners = markers.take(owners.max(1)),
        apex = markers.take(1),
        soa = markers.take(1),
    )
}

/// Step 3 of a change inside `tx`, short of committing: write the plan and
/// the new SOA, move the serial, journal. `Unchanged` when the change writes
/// nothing (the caller rolls back).
#[allow(clippy::too_many_arguments)]
async fn finish_write(
    tx: &mut Transaction<'static, Any>,
    backend: Backend,
    options: &StoreOptions,
    zone: ZoneRecord,
    old_soa: RRsetData,
    plan: Planned,
    new_soa_fields: Option<Vec<u8>>,
    summary: &str,
    author: &Author<'_>,
    now: i64,
) -> Result<queue::Outcome> {
    let Some(next) = next_soa(options.serial_policy, &zone, old_soa, plan.is_empty(), new_soa_fields.as_deref(), now)?
    else {
        let zone = ZoneRecord { version: zone.version - 1, ..zone };
        return Ok(queue::Outcome::Unchanged(Committed { zone, change: None, diff: None }));
    };
    let soa = next.soa(&zone.name);
    if let (Backend::Postgres, Planned::Batch(batch)) = (backend, &plan) {
        // A batch too big for PostgreSQL's one statement (`queue::make`).
        BatchRows::new(&batch.writes, &soa).write(tx, backend, zone.id).await?;
    } else {
        // The plan's rows and the new SOA in one statement (for a batch of
        // up to a few hundred RRsets).
        plan.write_with(tx, backend, zone.id, soa).await?;
    }
    let (diff, rrset_delta) = next.diff(&zone, plan);
    let row = sqlx::query(&format!("{UPDATE_ZONE_SERIAL} RETURNING {ZONE_COLUMNS}"))
        .bind(zone.id)
        .bind(diff.new_serial.0 as i64)
        .bind(rrset_delta)
        .fetch_one(&mut **tx)
        .await?;
    let zone = zone_from_row(&row)?;
    let change = insert_journal(tx, zone.id, &diff, author, now, summary).await?;
    // On PostgreSQL journals are compacted by the leader (a fenced duty,
    // see `duties`); the single node of an SQLite database trims as it goes.
    if backend == Backend::Sqlite && zone.version % 16 == 0 {
        duties::trim_journal(tx, zone.id, options.journal_keep).await?;
    }
    let committed = Committed { zone, change: Some(change), diff: Some(std::sync::Arc::new(diff)) };
    Ok(queue::Outcome::Written(committed))
}

/// What a change writes after its plan: the zone's new serial and RRset
/// count, and its journal entry.
struct WrittenChange<'a> {
    zone_id: i64,
    diff: &'a Diff,
    rrset_delta: i64,
    author: &'a Author<'a>,
    now: i64,
    summary: &'a str,
}

impl WrittenChange<'_> {
    /// PostgreSQL: the RRset rows (`upserts`, `deletes`, at most
    /// [`WRITE_CHUNK`] each, never one key twice), the serial and the journal
    /// entry in one statement of data-modifying CTEs, one round trip where
    /// they were three.
    ///
    /// The zone's row is updated once (its version moved on from `read`,
    /// the one the change's read saw, its serial set), only if its version
    /// is still `read`, and the rows and the journal entry are written only
    /// through that update: either all of the change is written or, another
    /// writer having moved the zone on since an unlocked read, nothing
    /// (`None`). Alone outside a transaction, it commits as it ends.
    async fn in_one_statement(
        &self,
        conn: &mut sqlx::AnyConnection,
        upserts: Vec<RRsetRow>,
        deletes: Vec<(String, RecordType)>,
        read: i64,
    ) -> Result<Option<(ZoneRecord, ChangeRecord)>> {
        let mut markers = Markers::new(Backend::Postgres);
        let (id, serial, delta, now, version) =
            (markers.take(1), markers.take(1), markers.take(1), markers.take(1), markers.take(1));
        let zone = format!(
            "UPDATE zones SET serial = {serial}, rrset_count = rrset_count + {delta}, version = version + 1, \
             updated_at = {now} WHERE id = {id} AND version = {version}"
        );
        let mut parts = vec![format!("zone AS ({zone} RETURNING {ZONE_COLUMNS})")];
        if !upserts.is_empty() {
            let rows: Vec<String> = upserts.iter().map(|_| format!("({})", markers.take(4))).collect();
            parts.push(format!(
                "written AS (INSERT INTO rrsets (zone_id, owner, rtype, ttl, rdata) \
                 SELECT zone.id, v.owner, v.rtype, v.ttl, v.rdata FROM zone, (VALUES {}) AS v(owner, rtype, ttl, rdata) \
                 {UPSERT_CONFLICT})",
                rows.join(", ")
            ));
        }
        if !deletes.is_empty() {
            let pairs: Vec<String> = deletes.iter().map(|_| format!("({})", markers.take(2))).collect();
            parts.push(format!(
                "deleted AS (DELETE FROM rrsets WHERE zone_id = (SELECT id FROM zone) AND (owner, rtype) IN ({}))",
                pairs.join(", ")
            ));
        }
        parts.push(format!(
            "entry AS (INSERT INTO journal ({JOURNAL_COLUMNS}) SELECT zone.id, {} FROM zone RETURNING id)",
            markers.take(10)
        ));
        let sql = format!("WITH {} SELECT zone.*, entry.id AS change_id FROM zone, entry", parts.join(", "));
        let diff = self.diff;
        let mut query = sqlx::query(&sql)
            .persistent(upserts.len() + deletes.len() <= 2)
            .bind(self.zone_id)
            .bind(diff.new_serial.0 as i64)
            .bind(self.rrset_delta)
            .bind(self.now)
            .bind(read);
        for row in upserts {
            query = query.bind(row.owner).bind(row.rtype.0 as i64).bind(row.ttl as i64).bind(row.rdata);
        }
        for (owner, rtype) in deletes {
            query = query.bind(owner).bind(rtype.0 as i64);
        }
        let records = (diff.removed.len() + diff.added.len()) as i64;
        query = query
            .bind(diff.old_serial.0 as i64)
            .bind(diff.new_serial.0 as i64)
            .bind(self.author.name.to_string())
            .bind(self.author.token.to_string())
            .bind(self.author.tenant.to_string())
            .bind(self.now)
            .bind(self.summary.to_string())
            .bind(diff.removed.encoded())
            .bind(diff.added.encoded())
            .bind(records);
        let Some(row) = query.fetch_optional(&mut *conn).await? else { return Ok(None) };
        let zone = zone_from_row(&row)?;
        Ok(Some((zone, self.record(row.int("change_id")?))))
    }

    /// The change's history entry, once the journal has given it `id`.
    fn record(&self, id: i64) -> ChangeRecord {
        ChangeRecord {
            id,
            zone_id: self.zone_id,
            serial_from: self.diff.old_serial,
            serial_to: self.diff.new_serial,
            actor: self.author.name.to_string(),
            actor_token: self.author.token.to_string(),
            actor_tenant: self.author.tenant.to_string(),
            at: self.now,
            summary: self.summary.to_string(),
        }
    }
}

/// The serial and SOA a change moves `zone` to from `old_soa`, or `None`
/// when it changes nothing (an empty plan, and no new SOA fields).
fn next_soa(
    policy: SerialPolicy,
    zone: &ZoneRecord,
    old_soa: RRsetData,
    plan_is_empty: bool,
    new_soa_fields: Option<&[u8]>,
    now: i64,
) -> Result<Option<NextSoa>> {
    let old_rdata = old_soa.rdatas.first().cloned().unwrap_or_default();
    let soa_fields_change = new_soa_fields
        .is_some_and(|fields| ferrodns_proto::rdata::with_soa_serial(fields, zone.serial).as_ref() != Some(&old_rdata));
    if plan_is_empty && !soa_fields_change {
        return Ok(None);
    }
    let mut serial = next_serial(zone.serial, policy, now);
    // An import brings its file's serial. Never move back from it (RFC
    // 1982): secondaries that hold it from the zone's old primary would
    // take every later serial for an older one and stop following.
    if let Some(file_serial) = new_soa_fields.and_then(ferrodns_proto::rdata::soa_serial) {
        if file_serial.is_newer_than(serial) {
            serial = file_serial;
        }
    }
    let base = new_soa_fields.unwrap_or(&old_rdata);
    let new_rdata = ferrodns_proto::rdata::with_soa_serial(base, serial).ok_or_else(|| corrupt("SOA RDATA"))?;
    Ok(Some(NextSoa { serial, ttl: old_soa.ttl, old_rdata, new_rdata }))
}

impl Store {
    /// Change history, newest first, before `before` (an id), at most `limit`.
    pub async fn list_changes(&self, zone_id: i64, before: Option<i64>, limit: u32) -> Result<Vec<ChangeRecord>> {
        let rows = sqlx::query(&format!(
            "SELECT {CHANGE_COLUMNS} FROM journal WHERE zone_id = $1 AND id < $2 ORDER BY id DESC LIMIT $3"
        ))
        .bind(zone_id)
        .bind(before.unwrap_or(i64::MAX))
        .bind(limit as i64)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(change_from_row).collect()
    }

    /// One history entry with the first records of each side of its diff:
    /// at most [`CHANGE_HEAD_RECORDS`] and [`CHANGE_HEAD_BYTES`] of each.
    pub async fn change(&self, zone_id: i64, id: i64) -> Result<(ChangeRecord, ChangeHead)> {
        // The sides are cut in SQL (substr and length work on SQLite BLOBs
        // and PostgreSQL bytea alike), so a 60 MB import is not read whole
        // to show its first records.
        let row = sqlx::query(&format!(
            "SELECT {CHANGE_COLUMNS}, substr(removed, 1, {CHANGE_HEAD_BYTES}) AS removed, length(removed) AS removed_length, \
             substr(added, 1, {CHANGE_HEAD_BYTES}) AS added, length(added) AS added_length \
             FROM journal WHERE zone_id = $1 AND id = $2"
        ))
        .bind(zone_id)
        .bind(id)
        .fetch_optional(&self.pool)
        .await?
        .ok_or(StoreError::NotFound)?;
        let change = change_from_row(&row)?;
        let mut truncated = false;
        let mut side = |bytes: &str, length: &str| -> Result<Records> {
            let head: Vec<u8> = row.try_get(bytes)?;
            let whole: i64 = row.try_get(length)?;
            let records = Records::decode_prefix(head, CHANGE_HEAD_RECORDS);
            truncated |= (records.encoded().len() as i64) < whole;
            Ok(records)
        };
        let removed = side("removed", "removed_length")?;
        let added = side("added", "added_length")?;
        Ok((change, ChangeHead { removed, added, truncated }))
    }

    /// The journal's steps from `serial` on, oldest first, for IXFR: `None`
    /// when no step starts at `serial`, or when the steps hold more than
    /// `max_records` records (the caller then sends the whole zone, RFC 1995
    /// §4, as `ferrodns_engine::transfer::plan_ixfr` would decide). The
    /// steps are read only once their counts say they are wanted: an old
    /// client behind an import costs a scan of the counts, not a read of the
    /// import's tens of megabytes.
    pub async fn ixfr_steps(&self, zone_id: i64, serial: Serial, max_records: usize) -> Result<Option<Vec<Diff>>> {
        let entries = sqlx::query(
            "SELECT id, serial_from, records, length(removed) AS removed_length FROM journal \
             WHERE zone_id = $1 ORDER BY id",
        )
        .bind(zone_id)
        .fetch_all(&self.pool)
        .await?;
        let mut first = None;
        let mut records: i64 = 0;
        for entry in &entries {
            let removes = entry.try_get::<i64, _>("removed_length")? > 0;
            if first.is_none() && removes && serial_column(entry, "serial_from")? == serial {
                first = Some(entry.try_get::<i64, _>("id")?);
            }
            if first.is_some() {
                // Entries from before the count was kept are read to be weighed.
                records += entry.try_get::<Option<i64>, _>("records")?.unwrap_or(0);
            }
        }
        let Some(first) = first else { return Ok(None) };
        if records > max_records as i64 {
            return Ok(None);
        }
        let rows = sqlx::query(&format!(
            "SELECT {CHANGE_COLUMNS}, removed, added FROM journal WHERE zone_id = $1 AND id >= $2 ORDER BY id"
        ))
        .bind(zone_id)
        .bind(first)
        .fetch_all(&self.pool)
        .await?;
        let steps = rows.iter().map(|row| diff_from_row(row, &change_from_row(row)?)).collect::<Result<_>>()?;
        Ok(Some(steps))
    }

    /// The zone's whole journal, oldest first, for checking that replaying
    /// it gives the zone.
    pub async fn journal(&self, zone_id: i64) -> Result<Vec<(ChangeRecord, Diff)>> {
        let rows = sqlx::query(&format!(
            "SELECT {CHANGE_COLUMNS}, removed, added FROM journal WHERE zone_id = $1 ORDER BY id"
        ))
        .bind(zone_id)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|row| {
                let change = change_from_row(row)?;
                let diff = diff_from_row(row, &change)?;
                Ok((change, diff))
            })
            .collect()
    }

    // ----- tokens -----

    /// How many tokens exist (revoked ones included).
    pub async fn token_count(&self) -> Result<i64> {
        let row = sqlx::query("SELECT COUNT(*) AS n FROM tokens").fetch_one(&self.pool).await?;
        Ok(row.try_get::<i64, _>("n")?)
    }

    /// Stores a token by the SHA-256 of its secret.
    pub async fn create_token(&self, token: &TokenRecord, secret_sha256: &[u8]) -> Result<()> {
        let zones = token.zones.as_ref().map(|z| serde_json::to_string(z).unwrap_or_default());
        let (_guard, mut tx) = self.begin_write().await?;
        sqlx::query(
            "INSERT INTO tokens (id, name, tenant, role, zones, secret_sha256, created_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7)",
        )
        .bind(&token.id)
        .bind(&token.name)
        .bind(&token.tenant)
        .bind(&token.role)
        .bind(zones)
        .bind(secret_sha256.to_vec())
        .bind(token.created_at)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }

    /// The live (not revoked) token whose secret hashes to this.
    pub async fn token_by_hash(&self, secret_sha256: &[u8]) -> Result<Option<TokenRecord>> {
        let row = sqlx::query(
            "SELECT id, name, tenant, role, zones, created_at, revoked_at FROM tokens \
             WHERE secret_sha256 = $1 AND revoked_at IS NULL",
        )
        .bind(secret_sha256.to_vec())
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(token_from_row).transpose()
    }

    /// Tokens of a tenant (all tenants for `None`), oldest first.
    pub async fn list_tokens(&self, tenant: Option<&str>) -> Result<Vec<TokenRecord>> {
        let rows =
            match tenant {
                Some(tenant) => {
                    sqlx::query(
                        "SELECT id, name, tenant, role, zones, created_at, revoked_at FROM tokens \
                     WHERE tenant = $1 ORDER BY created_at, id",
                    )
                    .bind(tenant.to_string())
                    .fetch_all(&self.pool)
                    .await?
                }
                None => sqlx::query(
                    "SELECT id, name, tenant, role, zones, created_at, revoked_at FROM tokens ORDER BY created_at, id",
                )
                .fetch_all(&self.pool)
                .await?,
            };
        rows.iter().map(token_from_row).collect()
    }

    /// Revokes a token, if `tenant` (when given) owns it. The last live
    /// operator token (an admin of [`OPERATOR_TENANT`] with no zone list) is
    /// kept: without it no one could manage tokens or server-wide settings
    /// again through the API. On PostgreSQL the live operator tokens are
    /// locked first, so that two revocations racing for the last two cannot
    /// both pass.
    pub async fn revoke_token(&self, id: &str, tenant: Option<&str>, now: i64) -> Result<()> {
        let (_guard, mut tx) = self.begin_write().await?;
        let lock = match self.backend {
            Backend::Postgres => " FOR UPDATE",
            Backend::Sqlite => "",
        };
        let operators: Vec<String> = sqlx::query_scalar(&format!(
            "SELECT id FROM tokens WHERE tenant = $1 AND role = 'admin' AND zones IS NULL AND revoked_at IS NULL{lock}"
        ))
        .bind(OPERATOR_TENANT)
        .fetch_all(&mut *tx)
        .await?;
        if operators.len() == 1 && operators[0] == id {
            return Err(StoreError::Conflict(format!(
                "this is the last admin token of the {OPERATOR_TENANT:?} tenant with no zone list; \
                 create another (POST /v1/tokens) before revoking it"
            )));
        }
        let done = sqlx::query(
            "UPDATE tokens SET revoked_at = $2 WHERE id = $1 AND revoked_at IS NULL AND ($3 = '' OR tenant = $3)",
        )
        .bind(id.to_string())
        .bind(now)
        .bind(tenant.unwrap_or("").to_string())
        .execute(&mut *tx)
        .await?;
        if done.rows_affected() == 0 {
            return Err(StoreError::NotFound);
        }
        if self.backend == Backend::Postgres {
            // Other nodes drop the token from their caches at once.
            sqlx::query("SELECT pg_notify($1, $2)")
                .bind(CHANGES_CHANNEL)
                .bind(format!("{REVOKED_TOKEN} {id}"))
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        Ok(())
    }
}

/// The file of an SQLite URL (`sqlite://PATH` or `sqlite:PATH`, options
/// after `?`), or `None` for an in-memory database.
fn sqlite_file(url: &str) -> Option<&str> {
    let rest = url.strip_prefix("sqlite://").or_else(|| url.strip_prefix("sqlite:"))?;
    let (path, options) = rest.split_once('?').unwrap_or((rest, ""));
    if path.is_empty() || path == ":memory:" || options.contains("mode=memory") {
        return None;
    }
    Some(path)
}

/// Writes the parameter markers of statements with many parameters. SQLite
/// gets anonymous `?`: sqlx looks numbered SQLite parameters up by name,
/// which costs time quadratic in their number (over half of a 100k-record
/// import went there). PostgreSQL needs `$n`.
struct Markers {
    backend: Backend,
    next: usize,
}

impl Markers {
    fn new(backend: Backend) -> Markers {
        Markers { backend, next: 0 }
    }

    /// `count` markers, comma-separated.
    fn take(&mut self, count: usize) -> String {
        let mut out = String::new();
        for i in 0..count {
            if i > 0 {
                out.push_str(", ");
            }
            self.next += 1;
            match self.backend {
                Backend::Sqlite => out.push('?'),
                Backend::Postgres => out.push_str(&format!("${}", self.next)),
            }
        }
        out
    }
}

/// The PostgreSQL channel on which commits announce the zone they changed.
pub const CHANGES_CHANNEL: &str = "ferrodns_zones";

/// Tells other nodes, at commit, that `zone` changed (PostgreSQL only; a
/// SQLite database has one node). The payload is the zone's name and, unless
/// the zone is gone, the serial it now has (`name serial`), so that a node
/// already serving that serial (the one that made the change, above all)
/// need not read the zone back; nodes read what changed from the journal,
/// so a lost notification costs only time.
async fn announce(
    tx: &mut Transaction<'static, Any>,
    backend: Backend,
    zone: &Name,
    serial: Option<Serial>,
) -> Result<()> {
    if backend == Backend::Postgres {
        sqlx::query("SELECT pg_notify($1, $2)")
            .bind(CHANGES_CHANNEL)
            .bind(announcement(zone, serial))
            .execute(&mut **tx)
            .await?;
    }
    Ok(())
}

/// The payload announcing a commit to `zone`: its name and, unless it is
/// gone, its serial (`name serial`), as [`Announced::parse`] reads it.
fn announcement(zone: &Name, serial: Option<Serial>) -> String {
    match serial {
        Some(serial) => format!("{zone} {}", serial.0),
        None => zone.to_string(),
    }
}

/// How a revoked token's notification starts (then its id). No zone's
/// payload can: zone names end with a dot and escape their spaces.
const REVOKED_TOKEN: &str = "revoked-token";

/// What another node announced.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Notice {
    /// A commit to a zone.
    Commit(Announced),
    /// A token revoked, by id.
    TokenRevoked(String),
}

impl Notice {
    /// Reads a payload written by `announce` or `revoke_token`.
    pub fn parse(payload: &str) -> Notice {
        match payload.split_once(' ') {
            Some((REVOKED_TOKEN, id)) => Notice::TokenRevoked(id.to_string()),
            _ => Notice::Commit(Announced::parse(payload)),
        }
    }
}

/// Commits made by other nodes, as zone names, from PostgreSQL LISTEN.
pub struct ChangeListener {
    listener: sqlx::postgres::PgListener,
}

/// One announced commit: the zone, and its serial after the commit (none
/// when the zone was deleted).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Announced {
    pub zone: String,
    pub serial: Option<Serial>,
}

impl Announced {
    /// Reads a payload written by `announce`.
    pub fn parse(payload: &str) -> Announced {
        match payload.rsplit_once(' ').map(|(zone, serial)| (zone, serial.parse::<u32>())) {
            Some((zone, Ok(serial))) => Announced { zone: zone.to_string(), serial: Some(Serial(serial)) },
            _ => Announced { zone: payload.to_string(), serial: None },
        }
    }
}

impl ChangeListener {
    /// The next notice. An error means the connection dropped
    /// (notifications may have been missed: catch up from the database).
    pub async fn next(&mut self) -> Result<Notice> {
        // try_recv, not recv: recv reconnects by itself, silently, so a
        // node would never learn (nor say) that the database went away.
        match self.listener.try_recv().await? {
            Some(notification) => Ok(Notice::parse(notification.payload())),
            None => Err(StoreError::Unavailable("the connection that hears other nodes' changes was lost".into())),
        }
    }
}

/// A leader lease as read from the database.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Lease {
    pub node: String,
    pub term: i64,
    /// Still valid by the database's clock.
    pub live: bool,
}

impl Store {
    /// Listens for other nodes' commits (PostgreSQL only).
    pub async fn change_listener(&self, url: &str) -> Result<Option<ChangeListener>> {
        if self.backend != Backend::Postgres {
            return Ok(None);
        }
        // A pool of its own that gives up within two seconds, and no
        // reconnection inside sqlx: the follower sees a lost connection at
        // once, says so, and retries on its own schedule.
        let pool = sqlx::postgres::PgPoolOptions::new()
            .max_connections(1)
            .acquire_timeout(std::time::Duration::from_secs(2))
            .connect_lazy(url)?;
        let mut listener = sqlx::postgres::PgListener::connect_with(&pool).await?;
        listener.eager_reconnect(false);
        listener.listen(CHANGES_CHANNEL).await?;
        Ok(Some(ChangeListener { listener }))
    }

    /// Every zone's name and serial, for catching up.
    /// A value that changes whenever a zone is created, changed or deleted:
    /// the number of zones, the highest zone id (identities only grow) and
    /// the sum of the zones' versions (every change adds one). One aggregate
    /// query, so a follower can tell that nothing happened without reading
    /// every zone.
    pub async fn zones_fingerprint(&self) -> Result<(i64, i64, i64)> {
        let row = sqlx::query(
            "SELECT COUNT(*) AS zones, CAST(COALESCE(MAX(id), 0) AS BIGINT) AS top, \
             CAST(COALESCE(SUM(version), 0) AS BIGINT) AS versions FROM zones",
        )
        .fetch_one(&self.pool)
        .await?;
        Ok((row.try_get("zones")?, row.try_get("top")?, row.try_get("versions")?))
    }

    /// Every stored zone's id, apex, serial and own rate limit: what a
    /// follower compares with what it serves.
    /// Forward zones are not among them: they are served from
    /// [`Store::forward_zones`].
    pub async fn zone_serials(&self) -> Result<Vec<StoredSerial>> {
        let rows = sqlx::query("SELECT id, name, serial, rrl_rate, rrl_slip FROM zones WHERE kind <> $1")
            .bind(FORWARD_KIND)
            .fetch_all(&self.pool)
            .await?;
        rows.iter()
            .map(|row| {
                Ok(StoredSerial {
                    id: row.int("id")?,
                    name: name_column(row, "name")?,
                    serial: serial_column(row, "serial")?,
                    rate_limit: rate_limit_columns(row)?,
                })
            })
            .collect()
    }

    /// Every forward zone's apex and forwarders, in name order.
    pub async fn forward_zones(&self) -> Result<Vec<(Name, Vec<String>)>> {
        let rows = sqlx::query("SELECT name, forwarders FROM zones WHERE kind = $1 ORDER BY name")
            .bind(FORWARD_KIND)
            .fetch_all(&self.pool)
            .await?;
        rows.iter()
            .map(|row| Ok((name_column(row, "name")?, list_column(row, "forwarders")?.unwrap_or_default())))
            .collect()
    }

    /// Every secondary zone: its name, primaries and serial.
    pub async fn secondary_zones(&self) -> Result<Vec<(Name, Vec<String>, Serial)>> {
        let rows = sqlx::query("SELECT name, primaries, serial FROM zones WHERE kind = $1 ORDER BY name")
            .bind(SECONDARY_KIND)
            .fetch_all(&self.pool)
            .await?;
        rows.iter()
            .map(|row| {
                Ok((
                    name_column(row, "name")?,
                    list_column(row, "primaries")?.unwrap_or_default(),
                    serial_column(row, "serial")?,
                ))
            })
            .collect()
    }

    /// Replaces a secondary zone's primaries, or, with `None`, makes it a
    /// primary zone: from then on the API writes it, from its current data
    /// and serial. A new version and a history entry, no new serial.
    pub async fn set_primaries(
        &self,
        apex: &Name,
        scope: &Scope<'_>,
        if_match: Option<&[i64]>,
        primaries: Option<&[String]>,
        author: &Author<'_>,
        now: i64,
    ) -> Result<ZoneRecord> {
        let OpenChange { _guard, mut tx, zone, .. } = self.begin_change(apex, scope, None, if_match, now).await?;
        let kind = if primaries.is_some() { SECONDARY_KIND } else { PRIMARY_KIND };
        let row =
            sqlx::query(&format!("UPDATE zones SET kind = $2, primaries = $3 WHERE id = $1 RETURNING {ZONE_COLUMNS}"))
                .bind(zone.id)
                .bind(kind)
                .bind(primaries.map(|list| list.join(" ")))
                .fetch_one(&mut *tx)
                .await?;
        let zone = zone_from_row(&row)?;
        let diff =
            Diff { old_serial: zone.serial, new_serial: zone.serial, removed: Records::new(), added: Records::new() };
        let summary = match primaries {
            Some(list) => serde_json::json!([{"action": "set-primaries", "primaries": list}]),
            None => serde_json::json!([{"action": "make-primary"}]),
        }
        .to_string();
        insert_journal(&mut tx, zone.id, &diff, author, now, &summary).await?;
        announce(&mut tx, self.backend, &zone.name, None).await?;
        tx.commit().await?;
        Ok(zone)
    }

    /// Replaces a forward zone's forwarders, if its version is one of
    /// `if_match`: a new version and a history entry, and the other nodes
    /// told, but no serial (a forward zone has none).
    pub async fn set_forwarders(
        &self,
        apex: &Name,
        scope: &Scope<'_>,
        if_match: Option<&[i64]>,
        forwarders: &[String],
        author: &Author<'_>,
        now: i64,
    ) -> Result<ZoneRecord> {
        let OpenChange { _guard, mut tx, zone, .. } = self.begin_change(apex, scope, None, if_match, now).await?;
        let row = sqlx::query(&format!("UPDATE zones SET forwarders = $2 WHERE id = $1 RETURNING {ZONE_COLUMNS}"))
            .bind(zone.id)
            .bind(forwarders.join(" "))
            .fetch_one(&mut *tx)
            .await?;
        let zone = zone_from_row(&row)?;
        let diff =
            Diff { old_serial: zone.serial, new_serial: zone.serial, removed: Records::new(), added: Records::new() };
        let summary = serde_json::json!([{"action": "set-forwarders", "forwarders": forwarders}]).to_string();
        insert_journal(&mut tx, zone.id, &diff, author, now, &summary).await?;
        announce(&mut tx, self.backend, &zone.name, None).await?;
        tx.commit().await?;
        Ok(zone)
    }

    /// Sets a zone's own response rate limit (`None`: the server's). Moves
    /// the zone's version (its ETag, and the fingerprint followers poll) and
    /// tells the other nodes, but not its serial: the zone's data is the same.
    pub async fn set_rate_limit(
        &self,
        apex: &Name,
        scope: &Scope<'_>,
        if_match: Option<&[i64]>,
        limit: Option<RateLimit>,
        now: i64,
    ) -> Result<ZoneRecord> {
        // The zone is locked, its version moved and checked, as for any change.
        let OpenChange { _guard, mut tx, zone, .. } = self.begin_change(apex, scope, None, if_match, now).await?;
        let row = sqlx::query(&format!(
            "UPDATE zones SET rrl_rate = $2, rrl_slip = $3 WHERE id = $1 RETURNING {ZONE_COLUMNS}"
        ))
        .bind(zone.id)
        .bind(limit.map(|l| i64::from(l.rate)))
        .bind(limit.map(|l| i64::from(l.slip)))
        .fetch_one(&mut *tx)
        .await?;
        let zone = zone_from_row(&row)?;
        // No serial: a follower reads the zone back rather than compare serials.
        announce(&mut tx, self.backend, &zone.name, None).await?;
        tx.commit().await?;
        Ok(zone)
    }

    /// [`Store::journal_since`] for many zones in one statement: for each
    /// `(zone id, serial)` (at most [`ZONES_PER_READ`]) whose journal holds
    /// an entry ending at that serial, every later entry, in order. A zone
    /// whose journal does not reach back that far, or holds nothing later,
    /// is absent.
    pub async fn journals_since(&self, from: &[(i64, Serial)]) -> Result<HashMap<i64, Vec<Diff>>> {
        let mut steps: HashMap<i64, Vec<Diff>> = HashMap::new();
        if from.is_empty() {
            return Ok(steps);
        }
        let mut markers = Markers::new(self.backend);
        let wanted: Vec<String> = from.iter().map(|_| format!("({})", markers.take(2))).collect();
        let sql = format!(
            "WITH wanted (zone, serial) AS (VALUES {}), \
             start AS (SELECT journal.zone_id AS zone, MAX(journal.id) AS since_id FROM journal JOIN wanted \
             ON journal.zone_id = wanted.zone AND journal.serial_to = wanted.serial GROUP BY journal.zone_id) \
             SELECT {CHANGE_COLUMNS}, removed, added FROM journal JOIN start ON journal.zone_id = start.zone \
             AND journal.id > start.since_id ORDER BY journal.zone_id, journal.id",
            wanted.join(", ")
        );
        let mut query = sqlx::query(&sql).persistent(false);
        for (zone_id, serial) in from {
            query = query.bind(*zone_id).bind(serial.0 as i64);
        }
        for row in query.fetch_all(&self.pool).await? {
            let change = change_from_row(&row)?;
            steps.entry(change.zone_id).or_default().push(diff_from_row(&row, &change)?);
        }
        Ok(steps)
    }

    /// The journal steps after `serial`, oldest first; `None` when the
    /// journal no longer holds the step that ends at `serial`.
    pub async fn journal_since(&self, zone_id: i64, serial: Serial) -> Result<Option<Vec<Diff>>> {
        let start = sqlx::query("SELECT MAX(id) AS id FROM journal WHERE zone_id = $1 AND serial_to = $2")
            .bind(zone_id)
            .bind(serial.0 as i64)
            .fetch_one(&self.pool)
            .await?;
        let Some(start): Option<i64> = start.try_get("id")? else { return Ok(None) };
        let rows = sqlx::query(&format!(
            "SELECT {CHANGE_COLUMNS}, removed, added FROM journal WHERE zone_id = $1 AND id > $2 ORDER BY id"
        ))
        .bind(zone_id)
        .bind(start)
        .fetch_all(&self.pool)
        .await?;
        let mut diffs = Vec::with_capacity(rows.len());
        for row in &rows {
            let change = change_from_row(row)?;
            diffs.push(diff_from_row(row, &change)?);
        }
        Ok(Some(diffs))
    }

    /// Takes the leader lease for `node` if it is free or expired (by the
    /// database's clock), with a new term. Returns the term when taken.
    /// One statement, so the row lock it takes ends with it: a transaction
    /// around it would hold the lock across a round trip, and a node slow to
    /// send its COMMIT would hold up every other node's takeover. How long it
    /// may wait for a fenced write in flight is the connection's
    /// `lock_timeout` (`StoreOptions::lock_timeout`, set on the election's
    /// own connections).
    pub async fn acquire_lease(&self, node: &str, lease_ms: i64) -> Result<Option<i64>> {
        let row = sqlx::query(
            "INSERT INTO leader_lease (id, node, term, expires_at) \
             VALUES (1, $1, 1, now() + ($2::float8 * interval '1 millisecond')) \
             ON CONFLICT (id) DO UPDATE SET node = excluded.node, term = leader_lease.term + 1, \
             expires_at = excluded.expires_at WHERE leader_lease.expires_at < now() RETURNING term",
        )
        .bind(node.to_string())
        .bind(lease_ms)
        .fetch_optional(&self.pool)
        .await?;
        row.map(|r| r.try_get::<i64, _>("term")).transpose().map_err(Into::into)
    }

    /// Extends the lease held by `node` in `term`; false if it is no longer held.
    pub async fn renew_lease(&self, node: &str, term: i64, lease_ms: i64) -> Result<bool> {
        let done = sqlx::query(
            "UPDATE leader_lease SET expires_at = now() + ($3::float8 * interval '1 millisecond') \
             WHERE id = 1 AND node = $1 AND term = $2 AND expires_at > now()",
        )
        .bind(node.to_string())
        .bind(term)
        .bind(lease_ms)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    /// Gives the lease up (a clean shutdown), so a successor need not wait.
    pub async fn release_lease(&self, node: &str, term: i64) -> Result<()> {
        sqlx::query("UPDATE leader_lease SET expires_at = now() WHERE id = 1 AND node = $1 AND term = $2")
            .bind(node.to_string())
            .bind(term)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// The current lease, if any node ever took it.
    pub async fn lease(&self) -> Result<Option<Lease>> {
        let row = sqlx::query("SELECT node, term, (expires_at > now()) AS live FROM leader_lease WHERE id = 1")
            .fetch_optional(&self.pool)
            .await?;
        row.map(|r| {
            Ok(Lease { node: r.try_get("node")?, term: r.try_get("term")?, live: r.try_get::<bool, _>("live")? })
        })
        .transpose()
    }
}

/// A TSIG key's row.
#[derive(Clone, Debug)]
pub struct TsigKeyRecord {
    /// Lowercase key name with its final dot.
    pub name: String,
    pub algorithm: String,
    pub secret: Vec<u8>,
    pub created_at: i64,
    /// The key transfers only this tenant's zones (any tenant's when `None`).
    pub tenant: Option<String>,
    /// The key transfers only these zones (lowercase, final dot).
    pub zones: Option<Vec<String>>,
}

impl Store {
    /// Stores a TSIG key; `Exists` if the name is taken.
    pub async fn create_tsig_key(&self, key: &TsigKeyRecord) -> Result<()> {
        let (_guard, mut tx) = self.begin_write().await?;
        let zones = key.zones.as_ref().map(|z| serde_json::to_string(z).unwrap_or_default());
        sqlx::query(
            "INSERT INTO tsig_keys (name, algorithm, secret, created_at, tenant, zones) VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(&key.name)
        .bind(&key.algorithm)
        .bind(key.secret.clone())
        .bind(key.created_at)
        .bind(key.tenant.clone())
        .bind(zones)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(())
    }

    /// Every TSIG key, secrets included (for the transfer service).
    pub async fn tsig_keys(&self) -> Result<Vec<TsigKeyRecord>> {
        let rows =
            sqlx::query("SELECT name, algorithm, secret, created_at, tenant, zones FROM tsig_keys ORDER BY name")
                .fetch_all(&self.pool)
                .await?;
        rows.iter()
            .map(|row| {
                let zones: Option<String> = row.try_get("zones")?;
                Ok(TsigKeyRecord {
                    name: row.try_get("name")?,
                    algorithm: row.try_get("algorithm")?,
                    secret: row.try_get("secret")?,
                    created_at: row.try_get("created_at")?,
                    tenant: row.try_get("tenant")?,
                    zones: zones
                        .map(|text| serde_json::from_str(&text))
                        .transpose()
                        .map_err(|_| corrupt("tsig_keys.zones"))?,
                })
            })
            .collect()
    }

    /// Deletes a TSIG key.
    pub async fn delete_tsig_key(&self, name: &str) -> Result<()> {
        let (_guard, mut tx) = self.begin_write().await?;
        let done =
            sqlx::query("DELETE FROM tsig_keys WHERE name = $1").bind(name.to_string()).execute(&mut *tx).await?;
        if done.rows_affected() == 0 {
            return Err(StoreError::NotFound);
        }
        tx.commit().await?;
        Ok(())
    }
}

/// Every RRset at the given owners.
/// The zone's SOA, read inside `tx`.
async fn read_soa(conn: &mut sqlx::AnyConnection, zone_id: i64, apex: &Name) -> Result<RRsetData> {
    let row =
        sqlx::query("SELECT owner, rtype, ttl, rdata FROM rrsets WHERE zone_id = $1 AND owner = $2 AND rtype = $3")
            .bind(zone_id)
            .bind(apex.to_lowercase().to_string())
            .bind(RecordType::SOA.0 as i64)
            .fetch_one(&mut *conn)
            .await?;
    rrset_from_row(&row)
}

/// Reads the RRsets at `owners` owners (at least one marker: with none, the
/// apex is bound) and the zone's SOA: `zone_id`, the owners, the apex, and
/// the SOA's type. The SOA row comes twice when the apex is among the owners.
///
/// Two selects, not one with `owner IN (…) OR (owner = apex AND rtype =
/// SOA)`: SQLite plans that OR as a search on `zone_id` alone, every RRset
/// of the zone read for each change (13 ms a change on a 100,000-record
/// zone); each select here is a search on the primary key.
fn owners_and_soa_sql(backend: Backend, owners: usize) -> String {
    let mut markers = Markers::new(backend);
    // `$1` is the zone id in both selects, on either database (see
    // `sqlite::bind`).
    markers.take(1);
    format!(
        "SELECT owner, rtype, ttl, rdata FROM rrsets WHERE zone_id = $1 AND owner IN ({owners}) \
         UNION ALL SELECT owner, rtype, ttl, rdata FROM rrsets WHERE zone_id = $1 AND owner = {apex} AND rtype = {soa}",
        owners = markers.take(owners.max(1)),
        apex = markers.take(1),
        soa = markers.take(1),
    )
}

/// The RRsets at `owners`, and the zone's SOA, in one statement.
async fn load_owners_and_soa(
    conn: &mut sqlx::AnyConnection,
    backend: Backend,
    zone_id: i64,
    apex: &Name,
    owners: &[Name],
) -> Result<(Working, RRsetData)> {
    if owners.len() > 500 {
        // Big batches read in chunks; the SOA then costs one statement more.
        let working = load_owners(conn, backend, zone_id, owners).await?;
        return Ok((working, read_soa(conn, zone_id, apex).await?));
    }
    let sql = owners_and_soa_sql(backend, owners.len());
    let mut read = OwnersAndSoa::new(apex, owners);
    // Not prepared, as in `load_owners`.
    let mut query = sqlx::query(&sql).persistent(false).bind(zone_id);
    for text in read.text_parameters(owners) {
        query = query.bind(text);
    }
    for row in query.bind(RecordType::SOA.0 as i64).fetch_all(&mut *conn).await? {
        read.take(rrset_from_row(&row)?);
    }
    read.finish()
}

/// What a read of [`owners_and_soa_sql`] returns, sorted: the RRsets at the
/// touched owners, and the zone's SOA.
struct OwnersAndSoa {
    apex: String,
    touched: std::collections::HashSet<String>,
    working: Working,
    soa: Option<RRsetData>,
}

impl OwnersAndSoa {
    fn new(apex: &Name, owners: &[Name]) -> OwnersAndSoa {
        let touched = owners.iter().map(|o| o.to_lowercase().to_string()).collect();
        OwnersAndSoa { apex: apex.to_lowercase().to_string(), touched, working: Working::new(), soa: None }
    }

    /// The statement's text parameters for `owners` (all of them, or a
    /// chunk), in order: after the zone id, before the SOA's type.
    fn text_parameters(&self, owners: &[Name]) -> Vec<String> {
        let mut texts = Vec::with_capacity(owners.len() + 2);
        if owners.is_empty() {
            texts.push(self.apex.clone());
        }
        texts.extend(owners.iter().map(|owner| owner.to_lowercase().to_string()));
        texts.push(self.apex.clone());
        texts
    }

    fn take(&mut self, set: RRsetData) {
        let owner = set.owner.to_string();
        if set.rtype == RecordType::SOA && owner == self.apex {
            self.soa = Some(set.clone());
        }
        if self.touched.contains(&owner) {
            self.working.insert(set.key(), set);
        }
    }

    fn finish(self) -> Result<(Working, RRsetData)> {
        let soa = self.soa.ok_or_else(|| corrupt("the zone has no SOA"))?;
        Ok((self.working, soa))
    }

    /// The RRsets of a statement whose rows are the zone's joined to each
    /// RRset read (none when the zone has none at the owners: `owner` null).
    fn read_rows(mut self, rows: &[AnyRow]) -> Result<(Working, RRsetData)> {
        for row in rows {
            if row.try_get::<Option<String>, _>("owner").map_err(|e| corrupt(&e.to_string()))?.is_some() {
                self.take(rrset_from_row(row)?);
            }
        }
        self.finish()
    }
}

async fn load_owners(
    conn: &mut sqlx::AnyConnection,
    backend: Backend,
    zone_id: i64,
    owners: &[Name],
) -> Result<Working> {
    let mut working = Working::new();
    for chunk in owners.chunks(500) {
        let mut markers = Markers::new(backend);
        let sql = format!(
            "SELECT owner, rtype, ttl, rdata FROM rrsets WHERE zone_id = {} AND owner IN ({})",
            markers.take(1),
            markers.take(chunk.len())
        );
        // Not prepared: a cached generic plan cannot see the owners and
        // filters every row of the zone (PostgreSQL); a one-off plan uses the key.
        let mut query = sqlx::query(&sql).persistent(false).bind(zone_id);
        for owner in chunk {
            query = query.bind(owner.to_lowercase().to_string());
        }
        for row in query.fetch_all(&mut *conn).await? {
            let set = rrset_from_row(&row)?;
            working.insert(set.key(), set);
        }
    }
    Ok(working)
}

/// What a change writes to the RRset rows: a batch's RRsets, or an
/// import's plan, whose rows are read from its packed sides as they are
/// written.
enum Planned {
    Batch(edit::Plan),
    Import(Box<edit::ImportPlan>),
}

impl Planned {
    fn is_empty(&self) -> bool {
        match self {
            Planned::Batch(plan) => plan.writes.is_empty(),
            Planned::Import(plan) => plan.is_empty(),
        }
    }

    /// Writes the plan and `soa`, the zone's new SOA.
    async fn write_with(
        &self,
        tx: &mut Transaction<'static, Any>,
        backend: Backend,
        zone_id: i64,
        soa: RRsetData,
    ) -> Result<()> {
        match self {
            Planned::Batch(plan) => BatchRows::new(&plan.writes, &soa).write(tx, backend, zone_id).await,
            Planned::Import(plan) => {
                // An import's sides never hold the SOA (it comes apart).
                let upserts = plan.upserts().map(|set| RRsetRow {
                    owner: set.owner_name().to_string(),
                    rtype: set.rtype,
                    ttl: set.ttl,
                    rdata: edit::pack_rdatas(set.rdatas()),
                });
                let deletes = plan.deletes().map(|set| (set.owner_name().to_string(), set.rtype));
                write_rows(tx, backend, zone_id, upserts.chain(std::iter::once(RRsetRow::from(&soa))), deletes).await
            }
        }
    }

    /// The records removed and added, and how many RRsets the zone gains.
    fn into_records(self) -> (Records, Records, i64) {
        match self {
            Planned::Batch(plan) => (plan.removed, plan.added, plan.created as i64 - plan.deleted as i64),
            Planned::Import(plan) => {
                let delta = plan.rrset_delta();
                let (removed, added) = (*plan).into_records();
                (removed, added, delta)
            }
        }
    }
}

/// One RRset row to write.
struct RRsetRow {
    owner: String,
    rtype: RecordType,
    ttl: u32,
    rdata: Vec<u8>,
}

impl From<&RRsetData> for RRsetRow {
    fn from(set: &RRsetData) -> RRsetRow {
        RRsetRow {
            owner: set.owner.to_string(),
            rtype: set.rtype,
            ttl: set.ttl,
            rdata: edit::pack_rdatas(set.rdatas.iter().map(Vec::as_slice)),
        }
    }
}

/// A batch's rows to write with the zone's new SOA: the upserts, with the
/// SOA among them unless the plan writes the SOA itself (one upsert may not
/// touch a row twice: it is then `soa_apart`, for a statement of its own),
/// and the deletes. Every database's change path writes these.
struct BatchRows {
    upserts: Vec<RRsetRow>,
    deletes: Vec<(String, RecordType)>,
    soa_apart: Option<RRsetRow>,
}

impl BatchRows {
    fn new(writes: &[(RRsetKey, Option<RRsetData>)], soa: &RRsetData) -> BatchRows {
        let mut upserts: Vec<RRsetRow> =
            writes.iter().filter_map(|(_, set)| set.as_ref()).map(RRsetRow::from).collect();
        let deletes = writes.iter().filter(|(_, set)| set.is_none()).map(|(key, _)| (key.owner.to_string(), key.rtype));
        let mut soa_apart = None;
        if writes.iter().any(|(key, _)| *key == soa.key()) {
            soa_apart = Some(RRsetRow::from(soa));
        } else {
            upserts.push(RRsetRow::from(soa));
        }
        BatchRows { upserts, deletes: deletes.collect(), soa_apart }
    }

    /// Whether PostgreSQL's one-statement path takes them.
    fn fit_one_statement(&self) -> bool {
        self.soa_apart.is_none() && self.upserts.len() <= WRITE_CHUNK && self.deletes.len() <= WRITE_CHUNK
    }

    async fn write(self, tx: &mut Transaction<'static, Any>, backend: Backend, zone_id: i64) -> Result<()> {
        write_rows(tx, backend, zone_id, self.upserts.into_iter(), self.deletes.into_iter()).await?;
        if let Some(soa) = self.soa_apart {
            write_rows(tx, backend, zone_id, std::iter::once(soa), std::iter::empty()).await?;
        }
        Ok(())
    }
}

/// Upserts and deletes RRset rows (`None` deletes).
async fn write_rrsets(
    tx: &mut Transaction<'static, Any>,
    backend: Backend,
    zone_id: i64,
    writes: &[(RRsetKey, Option<RRsetData>)],
) -> Result<()> {
    let upserts = writes.iter().filter_map(|(_, w)| w.as_ref()).map(RRsetRow::from);
    let deletes = writes.iter().filter(|(_, w)| w.is_none()).map(|(key, _)| (key.owner.to_string(), key.rtype));
    write_rows(tx, backend, zone_id, upserts, deletes).await
}

/// The most RRset rows one statement writes: under both databases'
/// parameter limits.
const WRITE_CHUNK: usize = 400;

/// Upserts `rows` RRset rows, each bound as zone id, owner, type, TTL and
/// packed RDATA.
fn upsert_sql(backend: Backend, rows: usize) -> String {
    upsert_sql_with(&mut Markers::new(backend), rows)
}

/// [`upsert_sql`] with markers from `markers`, to be part of a larger statement.
fn upsert_sql_with(markers: &mut Markers, rows: usize) -> String {
    let rows: Vec<String> = (0..rows).map(|_| format!("({})", markers.take(5))).collect();
    format!("INSERT INTO rrsets (zone_id, owner, rtype, ttl, rdata) VALUES {} {UPSERT_CONFLICT}", rows.join(", "))
}

/// What an RRset row written over an existing one keeps of the new.
const UPSERT_CONFLICT: &str =
    "ON CONFLICT (zone_id, owner, rtype) DO UPDATE SET ttl = excluded.ttl, rdata = excluded.rdata";

/// Deletes `rrsets` RRsets of a zone: the zone id, then owner and type of each.
fn delete_rrsets_sql(backend: Backend, rrsets: usize) -> String {
    delete_rrsets_sql_with(&mut Markers::new(backend), rrsets)
}

/// [`delete_rrsets_sql`] with markers from `markers`.
fn delete_rrsets_sql_with(markers: &mut Markers, rrsets: usize) -> String {
    let zone = markers.take(1);
    let pairs: Vec<String> = (0..rrsets).map(|_| format!("({})", markers.take(2))).collect();
    format!("DELETE FROM rrsets WHERE zone_id = {zone} AND (owner, rtype) IN ({})", pairs.join(", "))
}

/// Upserts and deletes RRset rows, in chunks of [`WRITE_CHUNK`]; only a
/// chunk's rows are made at a time.
async fn write_rows(
    tx: &mut Transaction<'static, Any>,
    backend: Backend,
    zone_id: i64,
    mut upserts: impl Iterator<Item = RRsetRow>,
    mut deletes: impl Iterator<Item = (String, RecordType)>,
) -> Result<()> {
    loop {
        let chunk: Vec<RRsetRow> = upserts.by_ref().take(WRITE_CHUNK).collect();
        if chunk.is_empty() {
            break;
        }
        let sql = upsert_sql(backend, chunk.len());
        let mut query = sqlx::query(&sql).persistent(chunk.len() == 1);
        for row in chunk {
            query = query.bind(zone_id).bind(row.owner).bind(row.rtype.0 as i64).bind(row.ttl as i64).bind(row.rdata);
        }
        query.execute(&mut **tx).await?;
    }
    loop {
        let chunk: Vec<(String, RecordType)> = deletes.by_ref().take(WRITE_CHUNK).collect();
        if chunk.is_empty() {
            break;
        }
        let sql = delete_rrsets_sql(backend, chunk.len());
        let mut query = sqlx::query(&sql).persistent(chunk.len() == 1).bind(zone_id);
        for (owner, rtype) in chunk {
            query = query.bind(owner).bind(rtype.0 as i64);
        }
        query.execute(&mut **tx).await?;
    }
    Ok(())
}

/// Journals one change: zone id, serials from and to, the author's name,
/// token and tenant, time, summary, the removed and added records, and
/// their count.
const JOURNAL_COLUMNS: &str =
    "zone_id, serial_from, serial_to, actor, actor_token, actor_tenant, at, summary, removed, added, records";

/// A journal entry's row, `$1` to `$11` in [`JOURNAL_COLUMNS`]'s order.
const INSERT_JOURNAL: &str = "INSERT INTO journal (zone_id, serial_from, serial_to, actor, actor_token, \
     actor_tenant, at, summary, removed, added, records) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)";

async fn insert_journal(
    tx: &mut Transaction<'static, Any>,
    zone_id: i64,
    diff: &Diff,
    author: &Author<'_>,
    now: i64,
    summary: &str,
) -> Result<ChangeRecord> {
    let row = sqlx::query(&format!("{INSERT_JOURNAL} RETURNING {CHANGE_COLUMNS}"))
        .bind(zone_id)
        .bind(diff.old_serial.0 as i64)
        .bind(diff.new_serial.0 as i64)
        .bind(author.name.to_string())
        .bind(author.token.to_string())
        .bind(author.tenant.to_string())
        .bind(now)
        .bind(summary.to_string())
        .bind(diff.removed.encoded())
        .bind(diff.added.encoded())
        .bind((diff.removed.len() + diff.added.len()) as i64)
        .fetch_one(&mut **tx)
        .await?;
    change_from_row(&row)
}

fn corrupt(what: &str) -> StoreError {
    StoreError::Corrupt(what.to_string())
}

fn name_column(row: &impl Columns, column: &str) -> Result<Name> {
    let text = row.text(column)?;
    Name::parse(&text, None).map_err(|_| corrupt(&format!("{column} {text:?}")))
}

fn serial_column(row: &impl Columns, column: &str) -> Result<Serial> {
    let value = row.int(column)?;
    u32::try_from(value).map(Serial).map_err(|_| corrupt(column))
}

fn zone_from_row(row: &impl Columns) -> Result<ZoneRecord> {
    Ok(ZoneRecord {
        id: row.int("id")?,
        name: name_column(row, "name")?,
        tenant: row.text("tenant")?,
        kind: row.text("kind")?,
        serial: serial_column(row, "serial")?,
        version: row.int("version")?,
        rrset_count: row.int("rrset_count")?,
        catalog_id: row.text("catalog_id")?,
        created_at: row.int("created_at")?,
        updated_at: row.int("updated_at")?,
        rate_limit: rate_limit_columns(row)?,
        forwarders: list_column(row, "forwarders")?,
        primaries: list_column(row, "primaries")?,
    })
}

/// A space-separated list column.
fn list_column(row: &impl Columns, column: &str) -> Result<Option<Vec<String>>> {
    let text = row.opt_text(column)?;
    Ok(text.map(|text| text.split_whitespace().map(str::to_string).collect()))
}

/// A zone's `rrl_rate` and `rrl_slip`: both or neither.
fn rate_limit_columns(row: &impl Columns) -> Result<Option<RateLimit>> {
    match (row.opt_int("rrl_rate")?, row.opt_int("rrl_slip")?) {
        (None, None) => Ok(None),
        (Some(rate), Some(slip)) => Ok(Some(RateLimit {
            rate: u32::try_from(rate).map_err(|_| corrupt("zones.rrl_rate"))?,
            slip: u32::try_from(slip).map_err(|_| corrupt("zones.rrl_slip"))?,
        })),
        _ => Err(corrupt("zones.rrl_rate and rrl_slip")),
    }
}

fn rrset_from_row(row: &impl Columns) -> Result<RRsetData> {
    let owner = name_column(row, "owner")?;
    let rtype = row.int("rtype")?;
    let ttl = row.int("ttl")?;
    let packed = row.blob("rdata")?;
    let rdatas = edit::unpack_rdatas(&packed).ok_or_else(|| corrupt("rrsets.rdata"))?;
    Ok(RRsetData {
        owner,
        rtype: RecordType(u16::try_from(rtype).map_err(|_| corrupt("rrsets.rtype"))?),
        ttl: u32::try_from(ttl).map_err(|_| corrupt("rrsets.ttl"))?,
        rdatas,
    })
}

fn change_from_row(row: &impl Columns) -> Result<ChangeRecord> {
    Ok(ChangeRecord {
        id: row.int("id")?,
        zone_id: row.int("zone_id")?,
        serial_from: serial_column(row, "serial_from")?,
        serial_to: serial_column(row, "serial_to")?,
        actor: row.text("actor")?,
        actor_token: row.text("actor_token")?,
        actor_tenant: row.text("actor_tenant")?,
        at: row.int("at")?,
        summary: row.text("summary")?,
    })
}

/// A row's columns by name, as both drivers give them: sqlx's rows and the
/// SQLite writer's (see `sqlite`).
trait Columns {
    fn int(&self, column: &str) -> Result<i64>;
    fn opt_int(&self, column: &str) -> Result<Option<i64>>;
    fn text(&self, column: &str) -> Result<String>;
    fn opt_text(&self, column: &str) -> Result<Option<String>>;
    fn blob(&self, column: &str) -> Result<Vec<u8>>;
}

impl Columns for AnyRow {
    fn int(&self, column: &str) -> Result<i64> {
        Ok(self.try_get(column)?)
    }
    fn opt_int(&self, column: &str) -> Result<Option<i64>> {
        Ok(self.try_get(column)?)
    }
    fn text(&self, column: &str) -> Result<String> {
        Ok(self.try_get(column)?)
    }
    fn opt_text(&self, column: &str) -> Result<Option<String>> {
        Ok(self.try_get(column)?)
    }
    fn blob(&self, column: &str) -> Result<Vec<u8>> {
        Ok(self.try_get(column)?)
    }
}

fn diff_from_row(row: &AnyRow, change: &ChangeRecord) -> Result<Diff> {
    let removed: Vec<u8> = row.try_get("removed")?;
    let added: Vec<u8> = row.try_get("added")?;
    Ok(Diff {
        old_serial: change.serial_from,
        new_serial: change.serial_to,
        removed: Records::decode(removed).ok_or_else(|| corrupt("journal.removed"))?,
        added: Records::decode(added).ok_or_else(|| corrupt("journal.added"))?,
    })
}

fn token_from_row(row: &AnyRow) -> Result<TokenRecord> {
    let zones: Option<String> = row.try_get("zones")?;
    let zones = match zones {
        Some(text) => Some(serde_json::from_str(&text).map_err(|_| corrupt("tokens.zones"))?),
        None => None,
    };
    Ok(TokenRecord {
        id: row.try_get("id")?,
        name: row.try_get("name")?,
        tenant: row.try_get("tenant")?,
        role: row.try_get("role")?,
        zones,
        created_at: row.try_get("created_at")?,
        revoked_at: row.try_get("revoked_at")?,
    })
}

/// Groups RRsets by key (helper for callers building a [`Working`]).
pub fn working_from(rrsets: impl IntoIterator<Item = RRsetData>) -> Working {
    let mut working = BTreeMap::new();
    for set in rrsets {
        working.insert(set.key(), set);
    }
    working
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_journal_inserts_name_the_same_columns() {
        let columns = INSERT_JOURNAL.replace("\n", " ").split_whitespace().collect::<Vec<_>>().join(" ");
        assert!(columns.starts_with(&format!("INSERT INTO journal ({JOURNAL_COLUMNS}) VALUES")), "{columns}");
    }

    #[test]
    fn announcements_carry_the_serial_unless_the_zone_is_gone() {
        assert_eq!(
            Announced::parse("example.com. 2026120201"),
            Announced { zone: "example.com.".into(), serial: Some(Serial(2026120201)) }
        );
        assert_eq!(Announced::parse("example.com."), Announced { zone: "example.com.".into(), serial: None });
        // A name with an escaped space is still one name.
        assert_eq!(
            Announced::parse(r"a\032b.example. 7"),
            Announced { zone: r"a\032b.example.".into(), serial: Some(Serial(7)) }
        );
        assert_eq!(Announced::parse("odd name"), Announced { zone: "odd name".into(), serial: None });
        assert_eq!(Notice::parse("revoked-token 0a1b"), Notice::TokenRevoked("0a1b".into()));
        assert_eq!(
            Notice::parse(r"revoked-token\032x.example. 3"),
            Notice::Commit(Announced { zone: r"revoked-token\032x.example.".into(), serial: Some(Serial(3)) })
        );
    }
}
