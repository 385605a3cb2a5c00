//! Queued batches of RRset changes: what both databases' change paths take,
//! and PostgreSQL's per-zone queue.
//!
//! On PostgreSQL, changes to one zone queue on its row lock whatever we do.
//! A change alone in its zone's queue is two statements and no transaction
//! ([`make`] with [`Read::Unlocked`]: a read without a lock, then a write
//! that moves the zone's version on only from the one read), on a
//! connection kept warm from the change before when there is one
//! ([`Queues::alone`]). It is one statement, the write, when this node's
//! last change in the zone touched the same owners: it is planned on what
//! that change left ([`Known`]), and the write's version guard proves that
//! current or writes nothing (and the change is then read and made again).
//! The changes this node has for a zone while one is in flight wait in the
//! zone's queue, and the next transaction takes all of them, each with its own version step, `If-Match` check, plan, serial
//! step and journal entry, as on SQLite (`sqlite`), without savepoints: a
//! change refused or empty writes nothing ([`attempt`]). Zones never wait
//! on each other: each has its own queue. The queue's work runs in a task
//! of its own, so a request that goes away (its client hung up) cannot
//! abandon the changes of the others queued with it.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use ferrodns_proto::Name;
use ferrodns_zone::edit::{self, Checked, RRsetData, Working};
use sqlx::pool::PoolConnection;
use sqlx::{Any, AnyPool, Transaction};

use crate::announcer::Announcer;
use crate::{
    admit, announcement, corrupt, finish_write, load_owners_and_soa, load_zone_and_owners, next_soa, zone_from_row,
    Backend, BatchRows, Columns, Committed, Planned, Result, Scope, StoreError, StoreOptions, WrittenChange,
    ZoneRecord, UPDATE_ZONE_VERSION, ZONE_COLUMNS,
};

/// One batch of changes to commit, owning what it needs.
pub(crate) struct Job {
    pub batch: Checked,
    pub tenant: Option<String>,
    pub zones: Option<Vec<String>>,
    pub writable: crate::Writable,
    pub if_match: Option<Vec<i64>>,
    pub summary: String,
    pub author: (String, String, String),
    pub now: i64,
    pub reply: tokio::sync::oneshot::Sender<Result<Committed>>,
}

impl Job {
    pub(crate) fn apex(&self) -> &Name {
        self.batch.apex()
    }

    pub(crate) fn scope(&self) -> Scope<'_> {
        Scope { tenant: self.tenant.as_deref(), zones: self.zones.as_deref() }
    }

    pub(crate) fn author(&self) -> crate::Author<'_> {
        let (name, token, tenant) = &self.author;
        crate::Author { name, token, tenant }
    }
}

/// What a change did inside its transaction (`finish_write`).
pub(crate) enum Outcome {
    /// Written: keep it.
    Written(Committed),
    /// The batch changed nothing: the zone as it was; roll the job back,
    /// which also returns the version it took.
    Unchanged(Committed),
}

/// The same failure for each change of a failed transaction.
fn copy_error(error: &StoreError) -> StoreError {
    match error {
        StoreError::Unavailable(detail) => StoreError::Unavailable(detail.clone()),
        other => StoreError::Database(other.to_string()),
    }
}

/// PostgreSQL's per-zone queues: a zone is in the map while a task commits
/// its changes, with the ones that came in meanwhile.
#[derive(Default)]
pub(crate) struct Queues {
    zones: Mutex<HashMap<String, Vec<Job>>>,
    /// Connections a change alone used within the last [`WARM_FOR`], kept
    /// for the next one (at most [`WARM_MAX`]): sqlx's pool pings a
    /// connection as it lends it and again as it takes it back, two round
    /// trips of the four such a change made.
    warm: Mutex<Vec<(PoolConnection<Any>, Instant)>>,
    /// Whether a task is handing back the warm connections left idle.
    sweeping: std::sync::atomic::AtomicBool,
    /// What this node's last change alone left at the owners it touched,
    /// per zone (at most [`KNOWN_ZONES`]): the next change to those owners
    /// plans on it instead of reading, and writes only if the zone's
    /// version is still the one this node committed ([`Known`]).
    known: Mutex<HashMap<Name, Known>>,
    /// Announces the changes committed here to the other nodes, after
    /// their commits (see `announcer`).
    announcer: Arc<Announcer>,
}

/// The zone's row, the RRsets at some owners and the SOA as a change this
/// node made alone left them: what a read would give while the zone's
/// version is `zone.version`.
///
/// A change planned on it writes through the same guarded statement as
/// one read unlocked (`WrittenChange::in_one_statement`), which finds the
/// zone's row only at that version: every write of a zone's RRsets or
/// settings moves its version, on any node, so an unmoved version proves
/// the guess current, and a moved one means nothing was written and the
/// change is read and made again ([`make_alone`]). Only a write proves it:
/// a change that the guess would refuse, or find empty, is read and made
/// again too, on what was committed, never refused on what may be stale.
pub(crate) struct Known {
    zone: ZoneRecord,
    /// The owners whose RRsets `working` holds, all of them (sorted).
    owners: Vec<Name>,
    working: Working,
    soa: RRsetData,
}

/// The most zones a node keeps a [`Known`] for, the most owners one
/// covers, and the most RDATA bytes it holds: a few megabytes at most.
const KNOWN_ZONES: usize = 1024;
const KNOWN_OWNERS: usize = 4;
const KNOWN_BYTES: usize = 4096;

impl Known {
    /// What `working` (the RRsets at `owners` before a change) becomes with
    /// the change's `writes` and the zone's new SOA, if small enough to keep.
    fn after(
        zone: &ZoneRecord,
        owners: Vec<Name>,
        mut working: Working,
        writes: &[(edit::RRsetKey, Option<RRsetData>)],
        soa: &RRsetData,
    ) -> Option<Known> {
        for (key, set) in writes {
            match set {
                Some(set) => working.insert(key.clone(), set.clone()),
                None => working.remove(key),
            };
        }
        if let Some(apex_soa) = working.get_mut(&soa.key()) {
            *apex_soa = soa.clone();
        }
        let bytes: usize = working.values().flat_map(|set| &set.rdatas).map(Vec::len).sum();
        (bytes <= KNOWN_BYTES).then(|| Known { zone: zone.clone(), owners, working, soa: soa.clone() })
    }

    fn covers(&self, owners: &[Name]) -> bool {
        owners.iter().all(|owner| self.owners.binary_search(owner).is_ok())
    }
}

/// How far a change got on its connection ([`make`]), and what it leaves.
#[derive(Default)]
struct Progress {
    /// Its write was sent: a failure from here leaves it unknown whether
    /// the change committed.
    writing: bool,
    /// A change planned on a [`Known`] and written first thing on its
    /// connection: the change as it commits, but for its journal entry's
    /// id, to look for when the write fails ([`committed_after_all`]).
    pending: Option<Committed>,
    /// What the change leaves known, once written alone.
    known: Option<Known>,
}

/// How long a connection a change used stays warm. One that sat longer goes
/// back to the pool, which pings it before it lends it again.
const WARM_FOR: Duration = Duration::from_secs(1);
const WARM_MAX: usize = 4;

impl Queues {
    /// A warm connection, if one was used within [`WARM_FOR`].
    fn take_warm(&self) -> Option<PoolConnection<Any>> {
        let mut warm = self.warm.lock().unwrap_or_else(|e| e.into_inner());
        // Those idle too long go back to the pool.
        warm.retain(|(_, used)| used.elapsed() < WARM_FOR);
        warm.pop().map(|(conn, _)| conn)
    }

    /// Keeps `conn` for the next change, and makes sure that a task hands
    /// it back to the pool if none takes it within [`WARM_FOR`]: the pool's
    /// other users (reads, tokens, the follower) must not go without it.
    fn keep_warm(self: &Arc<Self>, conn: PoolConnection<Any>) {
        {
            let mut warm = self.warm.lock().unwrap_or_else(|e| e.into_inner());
            if warm.len() >= WARM_MAX {
                return;
            }
            warm.push((conn, Instant::now()));
        }
        use std::sync::atomic::Ordering;
        if self.sweeping.swap(true, Ordering::AcqRel) {
            return;
        }
        let queues = self.clone();
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(WARM_FOR).await;
                let mut warm = queues.warm.lock().unwrap_or_else(|e| e.into_inner());
                warm.retain(|(_, used)| used.elapsed() < WARM_FOR);
                if warm.is_empty() {
                    // Cleared under the lock, so a connection kept after
                    // this starts a sweeper of its own.
                    queues.sweeping.store(false, Ordering::Release);
                    return;
                }
            }
        });
    }

    /// Hands every warm connection back to the pool (before it closes,
    /// which waits for them).
    pub(crate) fn cool(&self) {
        self.warm.lock().unwrap_or_else(|e| e.into_inner()).clear();
        self.announcer.close();
    }

    /// What is known of the zone of `job`, if it covers the owners the job
    /// touches; taken out, as the job may change it.
    fn take_known(&self, job: &Job) -> Option<Known> {
        let mut known = self.known.lock().unwrap_or_else(|e| e.into_inner());
        let entry = known.remove(job.apex())?;
        entry.covers(&job.batch.owners()).then_some(entry)
    }

    fn keep_known(&self, known: Known) {
        let mut map = self.known.lock().unwrap_or_else(|e| e.into_inner());
        if map.len() >= KNOWN_ZONES && !map.contains_key(&known.zone.name) {
            // Any one: a zone written again soon is read once more.
            let Some(some) = map.keys().next().cloned() else { return };
            map.remove(&some);
        }
        map.insert(known.zone.name.clone(), known);
    }

    /// Forgets what is known of `apex` (a batch in a transaction moves it on).
    fn forget(&self, apex: &Name) {
        self.known.lock().unwrap_or_else(|e| e.into_inner()).remove(apex);
    }

    /// Announces the last change written among `results` (all to one zone).
    fn announce(self: &Arc<Self>, pool: &AnyPool, results: &[Result<Committed>]) {
        let last = results.iter().rev().find_map(|result| match result {
            Ok(Committed { zone, change: Some(_), .. }) => Some(zone),
            _ => None,
        });
        if let Some(zone) = last {
            self.announcer.announce(pool, announcement(&zone.name, Some(zone.serial)));
        }
    }

    /// A change alone ([`make`]): planned on what this node knows of its
    /// owners when it wrote them last ([`Known`]), otherwise read unlocked;
    /// on a warm connection or one from the pool.
    ///
    /// A warm connection may have been ended by PostgreSQL since it was
    /// used (a restart, `pg_terminate_backend`). When it fails before the
    /// change's write was sent, the change goes again on one from the pool,
    /// which pings it first. When the write was the first statement (the
    /// change planned on what was known), the change's journal entry tells
    /// whether it committed all the same ([`committed_after_all`]); if not,
    /// it goes again, read first.
    async fn alone(
        self: &Arc<Self>,
        pool: &AnyPool,
        options: &StoreOptions,
        job: &Job,
    ) -> Result<Option<Result<Committed>>> {
        let mut known = self.take_known(job);
        if let Some(mut conn) = self.take_warm() {
            let mut progress = Progress::default();
            match make_alone(&mut conn, options, job, known.take(), &mut progress).await {
                Ok(made) => {
                    self.keep(conn, progress);
                    return Ok(made);
                }
                Err(error) => match progress.pending {
                    Some(pending) => {
                        tracing::debug!(%error, "a change's write failed on a warm database connection");
                        let mut conn = pool.acquire().await?;
                        if let Some(committed) = committed_after_all(&mut conn, pending).await? {
                            return Ok(Some(Ok(committed)));
                        }
                    }
                    None if progress.writing => return Err(error),
                    None => tracing::debug!(%error, "a warm database connection failed; taking another"),
                },
            }
        }
        let mut conn = pool.acquire().await?;
        let mut progress = Progress::default();
        let made = make_alone(&mut conn, options, job, known, &mut progress).await?;
        self.keep(conn, progress);
        Ok(made)
    }

    /// After a change alone: its connection kept warm, and what it left
    /// known kept.
    fn keep(self: &Arc<Self>, conn: PoolConnection<Any>, progress: Progress) {
        self.keep_warm(conn);
        if let Some(known) = progress.known {
            self.keep_known(known);
        }
    }

    /// Hands `job` to its zone's task, starting one if none runs.
    pub(crate) fn submit(self: &Arc<Self>, pool: &AnyPool, options: &Arc<StoreOptions>, job: Job) {
        let key = job.apex().to_string();
        {
            let mut zones = self.zones.lock().unwrap_or_else(|e| e.into_inner());
            if let Some(waiting) = zones.get_mut(&key) {
                waiting.push(job);
                return;
            }
            zones.insert(key.clone(), Vec::new());
        }
        let (queues, pool, options) = (self.clone(), pool.clone(), options.clone());
        tokio::spawn(async move {
            let mut batch = vec![job];
            loop {
                commit(&queues, &pool, &options, batch).await;
                let mut zones = queues.zones.lock().unwrap_or_else(|e| e.into_inner());
                let waiting = zones.get_mut(&key).map(std::mem::take).unwrap_or_default();
                if waiting.is_empty() {
                    zones.remove(&key);
                    return;
                }
                batch = waiting;
            }
        });
    }
}

/// Commits `batch` and answers each job: a change alone without a
/// transaction where it can ([`Read::Unlocked`], [`Read::Known`]),
/// otherwise all in one. What committed is announced to the other nodes
/// after it did (`announcer`), the zone's last serial once.
async fn commit(queues: &Arc<Queues>, pool: &AnyPool, options: &StoreOptions, batch: Vec<Job>) {
    if let [job] = &batch[..] {
        match queues.alone(pool, options, job).await {
            Ok(Some(result)) => {
                queues.announce(pool, std::slice::from_ref(&result));
                return answer(batch, Ok(vec![result]));
            }
            // Another writer moved the zone on after the read, or the
            // change is too big for one statement: in a transaction, then.
            Ok(None) => {}
            Err(error) => return answer(batch, Err(error)),
        }
    }
    if let Some(job) = batch.first() {
        queues.forget(job.apex());
    }
    let outcome = attempt(pool, options, &batch).await;
    match &outcome {
        Ok(results) => queues.announce(pool, results),
        Err(error) if batch.len() > 1 => {
            tracing::warn!(changes = batch.len(), %error, "a batch of changes to one zone failed")
        }
        Err(_) => {}
    }
    answer(batch, outcome);
}

/// Answers each job of a batch with its own result or, when the
/// transaction failed, with that failure: nothing of the batch committed.
pub(crate) fn answer(batch: Vec<Job>, outcome: Result<Vec<Result<Committed>>>) {
    let results = match outcome {
        Ok(results) => results,
        Err(error) => batch.iter().map(|_| Err(copy_error(&error))).collect(),
    };
    for (job, result) in batch.into_iter().zip(results) {
        // The caller may have gone (a dropped request); the change stands.
        let _ = job.reply.send(result);
    }
}

/// The batch in one transaction: the first change takes the zone's row
/// lock as it reads, the others read under it. A change refused (its
/// `If-Match`, the zone's rules) or that changes nothing writes nothing, so
/// it needs no savepoint; each that writes moves the version and the serial
/// on by one, with its own journal entry. [`commit`] announces the batch
/// once it has committed.
async fn attempt(pool: &AnyPool, options: &StoreOptions, batch: &[Job]) -> Result<Vec<Result<Committed>>> {
    let mut tx = pool.begin().await?;
    let mut results = Vec::with_capacity(batch.len());
    let mut written = false;
    // Whether the transaction holds the zone's lock: once a change has
    // found the zone.
    let mut locked = false;
    for job in batch {
        let read = if locked { Read::Locked } else { Read::Lock };
        let result = match make(&mut tx, options, job, read, &mut Progress::default()).await? {
            Some(result) => result,
            None => too_big(&mut tx, options, job).await?,
        };
        locked |= !matches!(result, Err(StoreError::NotFound));
        written |= matches!(&result, Ok(Committed { change: Some(_), .. }));
        results.push(result);
    }
    if written {
        tx.commit().await?;
    } else {
        // Nothing written; the results already say why.
        let _ = tx.rollback().await;
    }
    Ok(results)
}

/// How a change reads its zone.
enum Read {
    /// Without a lock, outside a transaction: the change alone in its
    /// zone's queue. Its write then moves the version on only from the one
    /// read, and otherwise writes nothing.
    Unlocked,
    /// Not at all: the change alone, planned on what this node committed
    /// last ([`Known`]), its write guarded as after [`Read::Unlocked`].
    Known(Box<Known>),
    /// Taking the zone's row lock: the first change of a transaction.
    Lock,
    /// Under the lock the transaction holds already.
    Locked,
}

/// One change on `conn`, in two statements: the zone's row, the touched
/// RRsets and the SOA read as `read` says ([`load_zone_and_owners`]); the
/// change checked (scope, the zone's kind, `If-Match`) and planned on what
/// was read; then its rows, serial and journal entry written by one
/// statement that moves the zone's version on from the one read
/// (`WrittenChange::in_one_statement`), the zone's row updated once. Planned
/// on what is known ([`Read::Known`]), the write is the only statement.
///
/// Read unlocked, that update takes the row lock for the statement and
/// finds the row only if no other change committed since the read: every
/// write of a zone's RRsets or settings moves its version, so an unmoved
/// version means the read was current. Otherwise the statement writes
/// nothing and the change is `None`, to be made under the lock. A change
/// refused on what was read is refused as of that read, a committed state:
/// nothing was written. This path saves the locked one's `BEGIN` and
/// `COMMIT`, three statements where there were five. A change that what
/// is known would refuse or find empty is `None` too: the write did not
/// prove the guess ([`make_alone`] reads then).
///
/// `None` too, read in any way, for a change too big for one statement
/// ([`too_big`]).
async fn make(
    conn: &mut sqlx::AnyConnection,
    options: &StoreOptions,
    job: &Job,
    read: Read,
    progress: &mut Progress,
) -> Result<Option<Result<Committed>>> {
    let owners = job.batch.owners();
    let (alone, guessed) = match read {
        Read::Unlocked => (true, false),
        Read::Known(_) => (true, true),
        Read::Lock | Read::Locked => (false, false),
    };
    if alone && owners.len() > 500 {
        return Ok(None);
    }
    // The zone as the change would leave it, its version moved on by one,
    // is what the checks see, before the RRsets are looked at.
    let check = |zone: &ZoneRecord| {
        let after = ZoneRecord { version: zone.version + 1, ..zone.clone() };
        admit(&after, &job.scope(), Some(job.writable), job.if_match.as_deref())
    };
    let (seen, covered, current, soa) = match read {
        Read::Known(known) => {
            let Known { zone, owners: covered, working, soa } = *known;
            if check(&zone).is_err() {
                return Ok(None);
            }
            (zone, covered, working, soa)
        }
        read => match load_zone_and_owners(conn, job.apex(), &owners, matches!(read, Read::Lock), check).await {
            Ok((seen, current, soa)) => (seen, owners, current, soa),
            Err(refused @ (StoreError::NotFound | StoreError::NotWritable(_) | StoreError::VersionMismatch { .. })) => {
                return Ok(Some(Err(refused)))
            }
            Err(error) => return Err(error),
        },
    };
    let read_version = seen.version;
    let zone = ZoneRecord { version: read_version + 1, ..seen };
    // Kept to learn what the change leaves, if it may be kept.
    let before = (alone && covered.len() <= KNOWN_OWNERS).then(|| current.clone());
    let plan = match edit::plan(current, &job.batch) {
        Ok(plan) => plan,
        Err(_) if guessed => return Ok(None),
        Err(errors) => return Ok(Some(Err(StoreError::Rejected(errors)))),
    };
    let Some(next) = next_soa(options.serial_policy, &zone, soa, plan.writes.is_empty(), None, job.now)? else {
        if guessed {
            return Ok(None);
        }
        let zone = ZoneRecord { version: read_version, ..zone };
        return Ok(Some(Ok(Committed { zone, change: None, diff: None })));
    };
    let new_soa = next.soa(&zone.name);
    let rows = BatchRows::new(&plan.writes, &new_soa);
    if !rows.fit_one_statement() {
        return Ok(None);
    }
    let after = before.and_then(|before| Known::after(&zone, covered, before, &plan.writes, &new_soa));
    let (diff, rrset_delta) = next.diff(&zone, Planned::Batch(plan));
    let diff = Arc::new(diff);
    let author = job.author();
    let written = WrittenChange {
        zone_id: zone.id,
        diff: &diff,
        rrset_delta,
        author: &author,
        now: job.now,
        summary: &job.summary,
    };
    if guessed {
        // The zone's row as the write leaves it (`in_one_statement`).
        let zone = ZoneRecord {
            serial: diff.new_serial,
            rrset_count: zone.rrset_count + rrset_delta,
            updated_at: job.now,
            ..zone.clone()
        };
        progress.pending = Some(Committed { zone, change: Some(written.record(0)), diff: Some(diff.clone()) });
    }
    // From here a failure leaves it unknown whether the change committed.
    progress.writing = true;
    let outcome = written.in_one_statement(conn, rows.upserts, rows.deletes, read_version).await?;
    progress.pending = None;
    if outcome.is_none() && !alone {
        return Err(corrupt("a zone moved on while this transaction held its lock"));
    }
    Ok(outcome.map(|(zone, change)| {
        progress.known = after.map(|known| Known { zone: zone.clone(), ..known });
        Ok(Committed { zone, change: Some(change), diff: Some(diff) })
    }))
}

/// A change alone on `conn` ([`make`]): planned on `known` when there is
/// such, and when the write does not prove that current (another writer
/// moved the zone on, or it would refuse the change or find it empty), read
/// unlocked and made again, as the change would have been without it. Only
/// then does it go under the lock (`None`).
async fn make_alone(
    conn: &mut sqlx::AnyConnection,
    options: &StoreOptions,
    job: &Job,
    known: Option<Known>,
    progress: &mut Progress,
) -> Result<Option<Result<Committed>>> {
    if let Some(known) = known {
        if let Some(made) = make(conn, options, job, Read::Known(Box::new(known)), progress).await? {
            return Ok(Some(made));
        }
        *progress = Progress::default();
    }
    make(conn, options, job, Read::Unlocked, progress).await
}

/// Whether a change whose write failed on its connection (`pending`, as
/// [`make`] left it) committed all the same, looked up on `conn`: its
/// journal entry, found by its zone, serial step, time, token and summary.
/// The committed change with that entry's id if so; `None` if not, and the
/// change may be made again: its new write and the failed one require the
/// same version of the zone, so at most one of them commits.
async fn committed_after_all(conn: &mut sqlx::AnyConnection, mut pending: Committed) -> Result<Option<Committed>> {
    let Some(change) = pending.change.as_mut() else { return Ok(None) };
    let row = sqlx::query(
        "SELECT id FROM journal WHERE zone_id = $1 AND serial_from = $2 AND serial_to = $3 AND at = $4 \
         AND actor_token = $5 AND summary = $6 ORDER BY id DESC LIMIT 1",
    )
    .bind(change.zone_id)
    .bind(change.serial_from.0 as i64)
    .bind(change.serial_to.0 as i64)
    .bind(change.at)
    .bind(change.actor_token.clone())
    .bind(change.summary.clone())
    .fetch_optional(&mut *conn)
    .await?;
    let Some(row) = row else { return Ok(None) };
    change.id = row.int("id")?;
    Ok(Some(pending))
}

/// A change too big for one statement ([`make`] said so), inside `tx`,
/// which holds the zone's lock or takes it: its version moved on, the
/// RRsets read again and planned, then the rows in chunks, the serial and
/// the journal entry (`finish_write`). It was planned on the same rows
/// under the same lock, so it writes.
async fn too_big(tx: &mut Transaction<'static, Any>, options: &StoreOptions, job: &Job) -> Result<Result<Committed>> {
    let row = sqlx::query(&format!("{UPDATE_ZONE_VERSION} RETURNING {ZONE_COLUMNS}"))
        .bind(job.apex().to_string())
        .bind(job.now)
        .fetch_optional(&mut **tx)
        .await?;
    let zone = zone_from_row(&row.ok_or(StoreError::NotFound)?)?;
    let (current, soa) =
        load_owners_and_soa(&mut *tx, Backend::Postgres, zone.id, job.apex(), &job.batch.owners()).await?;
    let plan = edit::plan(current, &job.batch).map_err(StoreError::Rejected)?;
    let author = job.author();
    match finish_write(
        tx,
        Backend::Postgres,
        options,
        zone,
        soa,
        Planned::Batch(plan),
        None,
        &job.summary,
        &author,
        job.now,
    )
    .await?
    {
        Outcome::Written(committed) | Outcome::Unchanged(committed) => Ok(Ok(committed)),
    }
}

#[cfg(test)]
mod tests {
    use ferrodns_proto::{RecordType, Serial};

    use super::*;
    use crate::sqlite::tests::{job, name, upsert, zone_rrsets};
    use crate::{Author, Store};

    /// `FERRODNS_TEST_POSTGRES`, as the integration tests take it.
    fn server() -> String {
        std::env::var("FERRODNS_TEST_POSTGRES").unwrap_or_else(|_| "postgres://root@127.0.0.1:5432".to_string())
    }

    /// A change alone, read without a lock, as `commit` first tries it.
    async fn unlocked(pool: &AnyPool, options: &StoreOptions, job: &Job) -> Result<Option<Result<Committed>>> {
        let mut conn = pool.acquire().await.map_err(StoreError::from)?;
        make(&mut conn, options, job, Read::Unlocked, &mut Progress::default()).await
    }

    /// A database of the test's own, made anew, holding a primary zone at
    /// `apex`: its store, its URL and its name (for [`dispose`]).
    async fn with_zone(label: &str, apex: &str) -> (Store, String, String) {
        let db = format!("ferrodns_queue_{label}_{}", std::process::id());
        admin(&format!("DROP DATABASE IF EXISTS {db}")).await;
        admin(&format!("CREATE DATABASE {db}")).await;
        let url = format!("{}/{db}", server());
        let store = Store::open(&url, StoreOptions::default()).await.unwrap();
        let author = Author { name: "test", token: "t1", tenant: "system" };
        let apex = name(apex);
        store.create_zone(&apex, "system", "primary", zone_rrsets(&apex), None, "a", &author, 1).await.unwrap();
        (store, url, db)
    }

    /// Another writer (another node, say) in a transaction left open: it
    /// holds the zone's row lock, having moved its version on as every
    /// write does, and has given `www` the A record `address`. It commits
    /// when the test sends `COMMIT` on the connection returned.
    async fn another_writer_changes_www(url: &str, apex: &str, address: [u8; 4]) -> sqlx::PgConnection {
        use sqlx::Connection;
        let mut other = sqlx::PgConnection::connect(url).await.unwrap();
        sqlx::query("BEGIN").execute(&mut other).await.unwrap();
        sqlx::query("UPDATE zones SET version = version + 1 WHERE name = $1")
            .bind(apex)
            .execute(&mut other)
            .await
            .unwrap();
        sqlx::query("UPDATE rrsets SET rdata = $1 WHERE owner = $2 AND rtype = 1")
            .bind(ferrodns_zone::edit::pack_rdatas([&address[..]]))
            .bind(format!("www.{apex}"))
            .execute(&mut other)
            .await
            .unwrap();
        other
    }

    async fn dispose(store: Store, db: &str) {
        store.close().await;
        admin(&format!("DROP DATABASE {db} WITH (FORCE)")).await;
    }

    async fn admin(sql: &str) {
        use sqlx::Connection;
        let mut conn = sqlx::PgConnection::connect(&format!("{}/postgres", server())).await.unwrap();
        sqlx::query(sql).execute(&mut conn).await.unwrap();
    }

    /// As on SQLite (`sqlite::tests`): changes to one zone committed together
    /// keep their own checks, serial steps and history entries, and the
    /// ones that fail leave nothing behind.
    #[tokio::test]
    async fn a_batch_commits_each_change_on_its_own_terms() {
        let (store, _url, db) = with_zone("batch", "a.test.").await;
        let apex = name("a.test.");
        let a = store.zone(&apex).await.unwrap();
        let batch = vec![
            job("a.test.", None, vec![upsert("www.a.test.", RecordType::A, &[192, 0, 2, 1])]),
            job("a.test.", Some(vec![a.version]), vec![upsert("old.a.test.", RecordType::A, &[192, 0, 2, 2])]),
            job("a.test.", None, vec![upsert("a.test.", RecordType::CNAME, name("x.invalid.").as_wire())]),
            job("a.test.", Some(vec![a.version + 1]), vec![upsert("www.a.test.", RecordType::A, &[192, 0, 2, 4])]),
            job("a.test.", None, vec![upsert("www.a.test.", RecordType::A, &[192, 0, 2, 4])]),
        ];
        let results = attempt(&store.pool, &StoreOptions::default(), &batch).await.unwrap();
        let serials: Vec<Option<u32>> = results.iter().map(|r| r.as_ref().ok().map(|c| c.zone.serial.0)).collect();
        assert_eq!(serials, [Some(2), None, None, Some(3), Some(3)], "{results:?}");
        assert!(matches!(results[1], Err(StoreError::VersionMismatch { current }) if current == a.version + 1));
        assert!(matches!(results[2], Err(StoreError::Rejected(_))));
        assert!(results[4].as_ref().unwrap().change.is_none());
        let zone = store.zone(&apex).await.unwrap();
        assert_eq!((zone.serial, zone.version), (Serial(3), a.version + 2));
        let stored = store.zone_rrsets(zone.id).await.unwrap();
        let soa = stored.iter().find(|s| s.rtype == RecordType::SOA).unwrap();
        assert_eq!(ferrodns_proto::rdata::soa_serial(&soa.rdatas[0]), Some(Serial(3)));
        assert!(!stored.iter().any(|s| s.owner == name("old.a.test.")), "a refused change left a row");
        assert_eq!(store.journal(zone.id).await.unwrap().len(), 3, "the creation and one entry per change");
        dispose(store, &db).await;
    }

    /// The lock-and-read statement finds the touched RRsets through the
    /// primary key, whatever the zones hold: a first version joined them to
    /// the locked row, which PostgreSQL planned as a scan of every RRset
    /// (10 ms a change at 100,000 records, and DNS under API load fell to half
    /// its idle rate in `controlbench --only underload`).
    #[tokio::test]
    async fn the_lock_and_read_statement_uses_the_index() {
        let (store, _url, db) = with_zone("plan", "big.test.").await;
        let apex = name("big.test.");
        let zone = store.zone(&apex).await.unwrap();
        sqlx::query(
            "INSERT INTO rrsets (zone_id, owner, rtype, ttl, rdata) \
             SELECT $1, 'h' || g || '.big.test.', 1, 60, '\\x0004c0000201'::bytea FROM generate_series(1, 20000) g",
        )
        .bind(zone.id)
        .execute(&store.pool)
        .await
        .unwrap();
        sqlx::query("ANALYZE rrsets").execute(&store.pool).await.unwrap();
        // Both reads: the one that takes the lock and the one made without
        // it or under it (`make`).
        for sql in [crate::zone_and_owners_sql(1, true), crate::zone_and_owners_sql(1, false)] {
            let plan: Vec<String> = sqlx::query(&format!("EXPLAIN {sql}"))
                .bind("big.test.")
                .bind("www.big.test.")
                .bind("big.test.")
                .bind(RecordType::SOA.0 as i64)
                .fetch_all(&store.pool)
                .await
                .unwrap()
                .iter()
                .map(|row| sqlx::Row::get::<String, _>(row, 0))
                .collect();
            let plan = plan.join("\n");
            assert!(!plan.contains("Seq Scan on rrsets"), "{plan}");
            assert!(plan.contains("rrsets_pkey"), "{plan}");
        }
        dispose(store, &db).await;
    }

    /// A change that waits for the zone's row lock reads the RRsets as the
    /// transaction holding it left them, not as its statement's snapshot saw
    /// them before the wait (`load_zone_and_owners`): the RRset it replaces, and so
    /// its history's removed records, are the committed ones.
    #[tokio::test]
    async fn a_change_that_waited_for_the_lock_reads_what_was_committed_meanwhile() {
        let (store, url, db) = with_zone("wait", "w.test.").await;
        let first = job("w.test.", None, vec![upsert("www.w.test.", RecordType::A, &[192, 0, 2, 1])]);
        attempt(&store.pool, &StoreOptions::default(), &[first]).await.unwrap().remove(0).unwrap();

        // Another writer (another node, say) holds the lock and changes the RRset.
        let mut other = another_writer_changes_www(&url, "w.test.", [192, 0, 2, 2]).await;
        let pool = store.pool.clone();
        let waiting = tokio::spawn(async move {
            let second = job("w.test.", None, vec![upsert("www.w.test.", RecordType::A, &[192, 0, 2, 3])]);
            attempt(&pool, &StoreOptions::default(), &[second]).await.unwrap().remove(0).unwrap()
        });
        tokio::time::sleep(std::time::Duration::from_millis(300)).await;
        assert!(!waiting.is_finished(), "the change waits for the lock");
        sqlx::query("COMMIT").execute(&mut other).await.unwrap();
        let committed = waiting.await.unwrap();
        let diff = committed.diff.unwrap();
        let removed: Vec<Vec<u8>> =
            diff.removed.iter().filter(|r| r.rtype == RecordType::A).map(|r| r.rdata.to_vec()).collect();
        assert_eq!(removed, [vec![192, 0, 2, 2]], "the RRset as the other writer committed it");
        drop(other);
        dispose(store, &db).await;
    }

    /// A change made without the lock (`unlocked`) whose zone another
    /// writer moves on between its read and its write writes nothing: not
    /// its rows, not a journal entry, not a serial. The locked path then
    /// makes it on the committed state.
    #[tokio::test]
    async fn a_change_read_before_another_commit_writes_nothing_and_goes_under_the_lock() {
        let (store, url, db) = with_zone("unlocked", "u.test.").await;
        let apex = name("u.test.");
        let first = job("u.test.", None, vec![upsert("www.u.test.", RecordType::A, &[192, 0, 2, 1])]);
        let committed = unlocked(&store.pool, &StoreOptions::default(), &first).await.unwrap().unwrap().unwrap();
        assert_eq!(committed.zone.serial, Serial(2), "alone and unopposed, it commits");
        let before = store.zone(&apex).await.unwrap();

        // Another writer takes the row lock and changes the RRset; the
        // change reads before that commits, so it sees the old RRset, then
        // waits for the lock in its write.
        let mut other = another_writer_changes_www(&url, "u.test.", [192, 0, 2, 2]).await;
        let pool = store.pool.clone();
        let racing = tokio::spawn(async move {
            let second = job("u.test.", None, vec![upsert("www.u.test.", RecordType::A, &[192, 0, 2, 3])]);
            unlocked(&pool, &StoreOptions::default(), &second).await.unwrap().is_none()
        });
        tokio::time::sleep(std::time::Duration::from_millis(300)).await;
        assert!(!racing.is_finished(), "the write waits for the lock");
        sqlx::query("COMMIT").execute(&mut other).await.unwrap();
        assert!(racing.await.unwrap(), "the zone moved on after the read: nothing written");
        let after = store.zone(&apex).await.unwrap();
        assert_eq!(
            (after.serial, after.version),
            (before.serial, before.version + 1),
            "only the other writer's version"
        );
        assert_eq!(store.journal(after.id).await.unwrap().len(), 2, "no entry for the change that lost");

        // Through the queue's path it is made under the lock, on what the
        // other writer committed.
        let (reply, answer) = tokio::sync::oneshot::channel();
        let second = Job { reply, ..job("u.test.", None, vec![upsert("www.u.test.", RecordType::A, &[192, 0, 2, 3])]) };
        commit(&Arc::new(Queues::default()), &store.pool, &StoreOptions::default(), vec![second]).await;
        let committed = answer.await.unwrap().unwrap();
        let removed: Vec<Vec<u8>> = committed
            .diff
            .unwrap()
            .removed
            .iter()
            .filter(|r| r.rtype == RecordType::A)
            .map(|r| r.rdata.to_vec())
            .collect();
        assert_eq!(removed, [vec![192, 0, 2, 2]], "the RRset as the other writer committed it");
        assert_eq!(committed.zone.serial, Serial(3));
        drop(other);
        dispose(store, &db).await;
    }

    /// Commits `job` through `queues` as the zone's task would, alone.
    async fn through(queues: &Arc<Queues>, store: &Store, job: Job) -> Result<Committed> {
        let (reply, answer) = tokio::sync::oneshot::channel();
        commit(queues, &store.pool, &StoreOptions::default(), vec![Job { reply, ..job }]).await;
        answer.await.unwrap()
    }

    /// A zone at `apex` (see [`with_zone`]), queues of its own, and one
    /// change alone through them that gave `www` the A record 192.0.2.1.
    async fn written_once(label: &str, apex: &str) -> (Store, String, String, Arc<Queues>) {
        let (store, url, db) = with_zone(label, apex).await;
        let queues = Arc::new(Queues::default());
        let first = job(apex, None, vec![upsert(&format!("www.{apex}"), RecordType::A, &[192, 0, 2, 1])]);
        through(&queues, &store, first).await.unwrap();
        (store, url, db, queues)
    }

    /// The A records a change removed.
    fn removed_a(committed: &Committed) -> Vec<Vec<u8>> {
        let diff = committed.diff.as_ref().unwrap();
        diff.removed.iter().filter(|r| r.rtype == RecordType::A).map(|r| r.rdata.to_vec()).collect()
    }

    fn delete_a(owner: &str, rdata: &[u8]) -> ferrodns_zone::edit::Change {
        use ferrodns_zone::edit::{Action, Change};
        Change {
            action: Action::Delete,
            owner: name(owner),
            rtype: RecordType::A,
            ttl: None,
            rdatas: vec![rdata.to_vec()],
        }
    }

    /// A change to the owners this node's last change in the zone wrote is
    /// planned on what that change left ([`Known`]), without a read: shown
    /// here by what it removes when the node's knowledge is made to differ
    /// from the database while the zone's version stays.
    #[tokio::test]
    async fn a_change_to_owners_this_node_wrote_last_is_planned_without_a_read() {
        let (store, _url, db, queues) = written_once("known", "n.test.").await;
        let version = store.zone(&name("n.test.")).await.unwrap().version;
        {
            let mut known = queues.known.lock().unwrap();
            let entry = known.get_mut(&name("n.test.")).expect("kept after a change alone");
            assert_eq!(entry.zone.version, version);
            assert_eq!(entry.owners, [name("www.n.test.")]);
            let set = entry.working.values_mut().find(|set| set.rtype == RecordType::A).unwrap();
            assert_eq!(set.rdatas, [vec![192, 0, 2, 1]]);
            set.rdatas = vec![vec![198, 51, 100, 9]];
        }
        let second = job("n.test.", None, vec![upsert("www.n.test.", RecordType::A, &[192, 0, 2, 2])]);
        let committed = through(&queues, &store, second).await.unwrap();
        assert_eq!(removed_a(&committed), [vec![198, 51, 100, 9]], "planned on what was known");
        assert_eq!(committed.zone.serial, Serial(3));
        assert_eq!(queues.known.lock().unwrap()[&name("n.test.")].zone.version, committed.zone.version);
        dispose(store, &db).await;
    }

    /// What a node knows goes stale when another writer commits: the write
    /// planned on it finds the zone's version moved and writes nothing, and
    /// the change is read and made alone on what was committed. A change
    /// that the stale knowledge would refuse (deleting a record only the
    /// other writer added) is made too, not refused.
    #[tokio::test]
    async fn what_a_node_knows_goes_stale_when_another_writer_commits() {
        let (store, url, db, queues) = written_once("stale", "s.test.").await;
        let apex = name("s.test.");

        let mut other = another_writer_changes_www(&url, "s.test.", [192, 0, 2, 2]).await;
        sqlx::query("COMMIT").execute(&mut other).await.unwrap();
        let second = job("s.test.", None, vec![upsert("www.s.test.", RecordType::A, &[192, 0, 2, 3])]);
        let committed = through(&queues, &store, second).await.unwrap();
        assert_eq!(removed_a(&committed), [vec![192, 0, 2, 2]], "the RRset as the other writer committed it");
        assert_eq!(committed.zone.serial, Serial(3));
        let zone = store.zone(&apex).await.unwrap();
        assert_eq!(store.journal(zone.id).await.unwrap().len(), 3, "the creation and one entry per change");
        // Read and made alone, not under the lock (which keeps nothing).
        assert_eq!(queues.known.lock().unwrap()[&apex].zone.version, committed.zone.version);

        let mut other = another_writer_changes_www(&url, "s.test.", [192, 0, 2, 4]).await;
        sqlx::query("COMMIT").execute(&mut other).await.unwrap();
        let third = job("s.test.", None, vec![delete_a("www.s.test.", &[192, 0, 2, 4])]);
        let committed = through(&queues, &store, third).await.expect("made on what was committed");
        assert_eq!(removed_a(&committed), [vec![192, 0, 2, 4]]);
        let stored = store.zone_rrsets(zone.id).await.unwrap();
        assert!(!stored.iter().any(|s| s.owner == name("www.s.test.")), "{stored:?}");
        dispose(store, &db).await;
    }

    /// A change planned on what is known writes first thing on its warm
    /// connection. When PostgreSQL has ended that connection since, the
    /// write fails; the change is not in the journal, so it is made again,
    /// once.
    #[tokio::test]
    async fn a_change_whose_warm_connection_was_ended_is_made_again_once() {
        let (store, _url, db, queues) = written_once("ended", "e.test.").await;
        let apex = name("e.test.");
        assert_eq!(queues.warm.lock().unwrap().len(), 1);
        assert!(queues.known.lock().unwrap().contains_key(&apex));
        admin(&format!("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '{db}'")).await;

        let second = job("e.test.", None, vec![upsert("www.e.test.", RecordType::A, &[192, 0, 2, 2])]);
        let committed = through(&queues, &store, second).await.unwrap();
        assert_eq!(removed_a(&committed), [vec![192, 0, 2, 1]]);
        assert_eq!(committed.zone.serial, Serial(3));
        let journal = store.journal(committed.zone.id).await.unwrap();
        assert_eq!(journal.len(), 3, "the creation and one entry per change");
        dispose(store, &db).await;
    }

    /// After a write whose connection failed, the change's journal entry
    /// says whether it committed: found by its zone, serial step, time,
    /// token and summary, and only by all of them.
    #[tokio::test]
    async fn a_committed_change_is_found_by_its_journal_entry() {
        let (store, _url, db) = with_zone("after", "f.test.").await;
        let queues = Arc::new(Queues::default());
        let change =
            Job { now: 7, ..job("f.test.", None, vec![upsert("www.f.test.", RecordType::A, &[192, 0, 2, 1])]) };
        let committed = through(&queues, &store, change).await.unwrap();
        let id = committed.change.as_ref().unwrap().id;
        let mut conn = store.pool.acquire().await.unwrap();
        let mut pending = committed.clone();
        pending.change.as_mut().unwrap().id = 0;
        let found = committed_after_all(&mut conn, pending.clone()).await.unwrap().expect("committed");
        assert_eq!(found.change.unwrap().id, id);
        pending.change.as_mut().unwrap().at = 8;
        assert!(committed_after_all(&mut conn, pending).await.unwrap().is_none(), "another time: another change");
        drop(conn);
        dispose(store, &db).await;
    }

    /// The change path announces its commits after they commit, the
    /// zone's new serial in each (`announcer`): a change alone, then a batch
    /// of two to one zone, which is announced once, at its last serial.
    #[tokio::test]
    async fn committed_changes_are_announced_after_they_commit() {
        let (store, url, db) = with_zone("announce", "m.test.").await;
        let mut listener = sqlx::postgres::PgListener::connect(&url).await.unwrap();
        listener.listen(crate::CHANGES_CHANNEL).await.unwrap();
        let queues = Arc::new(Queues::default());
        let first = job("m.test.", None, vec![upsert("www.m.test.", RecordType::A, &[192, 0, 2, 1])]);
        through(&queues, &store, first).await.unwrap();
        let batch: Vec<Job> = [2u8, 3]
            .iter()
            .map(|last| job("m.test.", None, vec![upsert("www.m.test.", RecordType::A, &[192, 0, 2, *last])]))
            .collect();
        let results = attempt(&store.pool, &StoreOptions::default(), &batch).await.unwrap();
        queues.announce(&store.pool, &results);
        let mut heard = Vec::new();
        for _ in 0..2 {
            let next = tokio::time::timeout(std::time::Duration::from_secs(5), listener.recv()).await;
            heard.push(next.expect("announced").unwrap().payload().to_string());
        }
        assert_eq!(heard, ["m.test. 2", "m.test. 4"]);
        queues.cool();
        drop(listener);
        dispose(store, &db).await;
    }

    /// A connection kept warm after a change goes back to the pool once
    /// [`WARM_FOR`] passes without another change: the pool's other users
    /// (reads, tokens, the follower) must not go without it.
    #[tokio::test]
    async fn a_warm_connection_goes_back_to_the_pool_when_idle() {
        let (store, _url, db) = with_zone("warm", "k.test.").await;
        let queues = Arc::new(Queues::default());
        let (reply, answer) = tokio::sync::oneshot::channel();
        let change = Job { reply, ..job("k.test.", None, vec![upsert("www.k.test.", RecordType::A, &[192, 0, 2, 1])]) };
        commit(&queues, &store.pool, &StoreOptions::default(), vec![change]).await;
        answer.await.unwrap().unwrap();
        assert_eq!(queues.warm.lock().unwrap().len(), 1, "kept for the next change");
        tokio::time::sleep(WARM_FOR * 2 + std::time::Duration::from_millis(200)).await;
        assert!(queues.warm.lock().unwrap().is_empty(), "handed back to the pool once idle");
        dispose(store, &db).await;
    }
}
