//! SQLite's change path: one thread owns a write connection and commits
//! the changes queued for it together, one transaction and one fsync for
//! all of them.
//!
//! sqlx runs every SQLite statement on a worker thread of its own and wakes
//! the task when it is done: two thread hand-offs a statement, about 45 µs
//! here, against 10 µs of SQLite's own work. A change is seven statements,
//! so the hand-offs cost more than its fsync (`bench/apibench.py`). This
//! thread runs them back to back on its own connection (`rusqlite`, on the
//! same SQLite library sqlx links) and hands each change's result back once.
//!
//! Each queued change runs in a savepoint of the shared transaction, with
//! the same steps as `Store::apply_changes` on PostgreSQL and the same
//! helpers: its own version bump and `If-Match` check, its own plan, serial
//! step and journal entry. One that fails rolls back to its savepoint alone;
//! a failed commit fails every change of the batch, and none is answered as
//! committed before the commit returns. A change queued behind another to the
//! same zone sees that one's rows, as it would one transaction later.
//!
//! The thread takes the store's SQLite writer lock around each transaction,
//! so the rest of the store's writes (through sqlx) never meet a busy database.

use std::sync::{mpsc, Arc, Mutex};

use ferrodns_proto::{Name, RecordType};
use ferrodns_zone::edit::{self, Working};
use rusqlite::types::Value;
use rusqlite::{Connection, TransactionBehavior};

use crate::queue::{answer, Job, Outcome};
use crate::{
    admit, change_from_row, delete_rrsets_sql, duties, next_soa, owners_and_soa_sql, rrset_from_row, upsert_sql,
    zone_from_row, Backend, BatchRows, Columns, Committed, OwnersAndSoa, Planned, RRsetRow, Result, StoreError,
    StoreOptions, ZoneRecord, CHANGE_COLUMNS, INSERT_JOURNAL, UPDATE_ZONE_SERIAL, UPDATE_ZONE_VERSION, WRITE_CHUNK,
    ZONE_COLUMNS,
};

/// The most changes one transaction takes from the queue.
const MAX_BATCH: usize = 64;

/// The queue to the writer thread.
pub(crate) struct Writer {
    jobs: Mutex<Option<mpsc::Sender<Job>>>,
}

impl Writer {
    /// Opens the write connection to the database at `path` and starts the
    /// thread. `lock` is the store's SQLite writer lock.
    pub(crate) fn start(path: &str, options: StoreOptions, lock: Arc<tokio::sync::Mutex<()>>) -> Result<Writer> {
        let conn = Connection::open(path)?;
        // As the pool's connections (see `Store::open`).
        conn.execute_batch(
            "PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL; PRAGMA foreign_keys = ON; \
             PRAGMA busy_timeout = 5000;",
        )?;
        let (sender, receiver) = mpsc::channel();
        std::thread::Builder::new()
            .name("sqlite-writer".into())
            .spawn(move || run(conn, receiver, options, lock))
            .map_err(|e| StoreError::Database(format!("cannot start the SQLite writer: {e}")))?;
        Ok(Writer { jobs: Mutex::new(Some(sender)) })
    }

    /// Queues a change; its job's reply carries the outcome.
    pub(crate) fn submit(&self, job: Job) -> Result<()> {
        let jobs = self.jobs.lock().unwrap_or_else(|e| e.into_inner());
        jobs.as_ref().ok_or_else(closed)?.send(job).map_err(|_| closed())
    }

    /// Stops taking changes; the thread ends once the queue is drained.
    pub(crate) fn close(&self) {
        self.jobs.lock().unwrap_or_else(|e| e.into_inner()).take();
    }
}

fn closed() -> StoreError {
    StoreError::Unavailable("the store is closed".into())
}

/// The writer thread: takes what is queued (up to [`MAX_BATCH`]), commits it
/// in one transaction, answers, and waits for more.
fn run(mut conn: Connection, jobs: mpsc::Receiver<Job>, options: StoreOptions, lock: Arc<tokio::sync::Mutex<()>>) {
    while let Ok(first) = jobs.recv() {
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH {
            match jobs.try_recv() {
                Ok(job) => batch.push(job),
                Err(_) => break,
            }
        }
        let outcome = {
            let _writer = lock.blocking_lock();
            commit(&mut conn, &options, &batch)
        };
        if let Err(error) = &outcome {
            tracing::warn!(changes = batch.len(), %error, "an SQLite change transaction failed");
        }
        answer(batch, outcome);
    }
}

/// Runs `batch` in one transaction, each change in a savepoint: each
/// change's result, or why the transaction failed.
fn commit(conn: &mut Connection, options: &StoreOptions, batch: &[Job]) -> Result<Vec<Result<Committed>>> {
    let mut tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let mut results = Vec::with_capacity(batch.len());
    for job in batch {
        let mut savepoint = tx.savepoint()?;
        match apply(&savepoint, options, job) {
            Ok(Outcome::Written(committed)) => {
                savepoint.commit()?;
                results.push(Ok(committed));
            }
            Ok(Outcome::Unchanged(committed)) => {
                // Rolling back returns the version the change took.
                savepoint.rollback()?;
                results.push(Ok(committed));
            }
            Err(error) => {
                savepoint.rollback()?;
                results.push(Err(error));
            }
        }
    }
    tx.commit()?;
    Ok(results)
}

/// One change, as `Store::begin_change` and `Store::finish_change` make it.
fn apply(conn: &Connection, options: &StoreOptions, job: &Job) -> Result<Outcome> {
    let apex = job.apex();
    let zone = query_row(
        conn,
        &format!("{UPDATE_ZONE_VERSION} RETURNING {ZONE_COLUMNS}"),
        &[Value::Text(apex.to_string()), Value::Integer(job.now)],
        |row| zone_from_row(row),
    )?
    .ok_or(StoreError::NotFound)?;
    admit(&zone, &job.scope(), Some(job.writable), job.if_match.as_deref())?;

    let (current, soa) = load_owners_and_soa(conn, &zone, &job.batch.owners())?;
    let plan = edit::plan(current, &job.batch).map_err(StoreError::Rejected)?;
    let Some(next) = next_soa(options.serial_policy, &zone, soa, plan.writes.is_empty(), None, job.now)? else {
        return Ok(Outcome::Unchanged(Committed {
            zone: ZoneRecord { version: zone.version - 1, ..zone },
            change: None,
            diff: None,
        }));
    };
    let rows = BatchRows::new(&plan.writes, &next.soa(&zone.name));
    write_rows(conn, zone.id, rows.upserts, rows.deletes)?;
    if let Some(soa) = rows.soa_apart {
        write_rows(conn, zone.id, vec![soa], Vec::new())?;
    }
    let (diff, rrset_delta) = next.diff(&zone, Planned::Batch(plan));
    let zone = query_row(
        conn,
        &format!("{UPDATE_ZONE_SERIAL} RETURNING {ZONE_COLUMNS}"),
        &[Value::Integer(zone.id), Value::Integer(diff.new_serial.0 as i64), Value::Integer(rrset_delta)],
        |row| zone_from_row(row),
    )?
    .ok_or(StoreError::NotFound)?;
    let (name, token, tenant) = &job.author;
    let change = query_row(
        conn,
        &format!("{INSERT_JOURNAL} RETURNING {CHANGE_COLUMNS}"),
        &[
            Value::Integer(zone.id),
            Value::Integer(diff.old_serial.0 as i64),
            Value::Integer(diff.new_serial.0 as i64),
            Value::Text(name.clone()),
            Value::Text(token.clone()),
            Value::Text(tenant.clone()),
            Value::Integer(job.now),
            Value::Text(job.summary.clone()),
            Value::Blob(diff.removed.encoded().to_vec()),
            Value::Blob(diff.added.encoded().to_vec()),
            Value::Integer((diff.removed.len() + diff.added.len()) as i64),
        ],
        |row| change_from_row(row),
    )?
    .ok_or_else(|| StoreError::Database("the journal insert returned no row".into()))?;
    if zone.version % 16 == 0 {
        execute(
            conn,
            duties::TRIM_JOURNAL,
            &[Value::Integer(zone.id), Value::Integer(options.journal_keep.max(1) as i64)],
        )?;
    }
    Ok(Outcome::Written(Committed { zone, change: Some(change), diff: Some(Arc::new(diff)) }))
}

/// The RRsets at `owners` and the zone's SOA, as `load_owners_and_soa`
/// reads them on PostgreSQL.
fn load_owners_and_soa(conn: &Connection, zone: &ZoneRecord, owners: &[Name]) -> Result<(Working, edit::RRsetData)> {
    let mut read = OwnersAndSoa::new(&zone.name, owners);
    let chunks: Vec<&[Name]> = if owners.is_empty() { vec![&[]] } else { owners.chunks(500).collect() };
    for chunk in chunks {
        let mut values = vec![Value::Integer(zone.id)];
        values.extend(read.text_parameters(chunk).into_iter().map(Value::Text));
        values.push(Value::Integer(RecordType::SOA.0 as i64));
        let mut statement = conn.prepare_cached(&owners_and_soa_sql(Backend::Sqlite, chunk.len()))?;
        bind(&mut statement, &values)?;
        let mut rows = statement.raw_query();
        while let Some(row) = rows.next()? {
            read.take(rrset_from_row(row)?);
        }
    }
    read.finish()
}

/// Upserts and deletes RRset rows in chunks, as `write_rows` does.
fn write_rows(
    conn: &Connection,
    zone_id: i64,
    upserts: Vec<RRsetRow>,
    deletes: Vec<(String, RecordType)>,
) -> Result<()> {
    let mut upserts = upserts.into_iter().peekable();
    while upserts.peek().is_some() {
        let chunk: Vec<RRsetRow> = upserts.by_ref().take(WRITE_CHUNK).collect();
        let mut values = Vec::with_capacity(chunk.len() * 5);
        let sql = upsert_sql(Backend::Sqlite, chunk.len());
        for row in chunk {
            values.extend([
                Value::Integer(zone_id),
                Value::Text(row.owner),
                Value::Integer(row.rtype.0 as i64),
                Value::Integer(row.ttl as i64),
                Value::Blob(row.rdata),
            ]);
        }
        execute(conn, &sql, &values)?;
    }
    for chunk in deletes.chunks(WRITE_CHUNK) {
        let mut values = vec![Value::Integer(zone_id)];
        for (owner, rtype) in chunk {
            values.push(Value::Text(owner.clone()));
            values.push(Value::Integer(rtype.0 as i64));
        }
        execute(conn, &delete_rrsets_sql(Backend::Sqlite, chunk.len()), &values)?;
    }
    Ok(())
}

/// Binds `values` to a statement written for sqlx: `$n` takes the n-th
/// value wherever it appears (SQLite numbers named parameters in order of
/// appearance, not by their names), and each anonymous `?` the next one.
fn bind(statement: &mut rusqlite::Statement<'_>, values: &[Value]) -> Result<()> {
    for index in 1..=statement.parameter_count() {
        let value = match statement.parameter_name(index) {
            Some(name) => {
                let n: usize = name
                    .strip_prefix('$')
                    .and_then(|n| n.parse().ok())
                    .ok_or_else(|| StoreError::Database(format!("unexpected parameter {name}")))?;
                values.get(n.wrapping_sub(1))
            }
            None => values.get(index - 1),
        };
        let value = value.ok_or_else(|| StoreError::Database(format!("no value for parameter {index}")))?;
        statement.raw_bind_parameter(index, value)?;
    }
    Ok(())
}

fn execute(conn: &Connection, sql: &str, values: &[Value]) -> Result<usize> {
    let mut statement = conn.prepare_cached(sql)?;
    bind(&mut statement, values)?;
    Ok(statement.raw_execute()?)
}

fn query_row<T>(
    conn: &Connection,
    sql: &str,
    values: &[Value],
    read: impl FnOnce(&rusqlite::Row<'_>) -> Result<T>,
) -> Result<Option<T>> {
    let mut statement = conn.prepare_cached(sql)?;
    bind(&mut statement, values)?;
    let mut rows = statement.raw_query();
    rows.next()?.map(read).transpose()
}

impl Columns for rusqlite::Row<'_> {
    fn int(&self, column: &str) -> Result<i64> {
        Ok(self.get(column)?)
    }
    fn opt_int(&self, column: &str) -> Result<Option<i64>> {
        Ok(self.get(column)?)
    }
    fn text(&self, column: &str) -> Result<String> {
        Ok(self.get(column)?)
    }
    fn opt_text(&self, column: &str) -> Result<Option<String>> {
        Ok(self.get(column)?)
    }
    fn blob(&self, column: &str) -> Result<Vec<u8>> {
        Ok(self.get(column)?)
    }
}

impl From<rusqlite::Error> for StoreError {
    fn from(error: rusqlite::Error) -> StoreError {
        // As sqlx's errors map (`From<sqlx::Error>`): a unique or primary
        // key violation is a name taken.
        const UNIQUE: [std::ffi::c_int; 2] =
            [rusqlite::ffi::SQLITE_CONSTRAINT_UNIQUE, rusqlite::ffi::SQLITE_CONSTRAINT_PRIMARYKEY];
        match &error {
            rusqlite::Error::SqliteFailure(failure, _) if UNIQUE.contains(&failure.extended_code) => StoreError::Exists,
            rusqlite::Error::SqliteFailure(failure, _)
                if matches!(failure.code, rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked) =>
            {
                StoreError::Unavailable(error.to_string())
            }
            _ => StoreError::Database(error.to_string()),
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use ferrodns_proto::{RecordType, Serial};
    use ferrodns_zone::edit::{Action, Change, RRsetData};

    use super::*;
    use crate::{Author, Store};

    pub(crate) fn name(text: &str) -> Name {
        Name::parse(text, None).unwrap()
    }

    /// A zone's SOA (serial 1) and NS.
    pub(crate) fn zone_rrsets(apex: &Name) -> Vec<RRsetData> {
        let mut soa = name("ns.invalid.").as_wire().to_vec();
        soa.extend_from_slice(name("hostmaster.invalid.").as_wire());
        for field in [1u32, 3600, 600, 86400, 300] {
            soa.extend_from_slice(&field.to_be_bytes());
        }
        vec![
            RRsetData::new(apex, RecordType::SOA, 3600, vec![soa]),
            RRsetData::new(apex, RecordType::NS, 3600, vec![name("ns.invalid.").as_wire().to_vec()]),
        ]
    }

    pub(crate) fn upsert(owner: &str, rtype: RecordType, rdata: &[u8]) -> Change {
        Change { action: Action::Upsert, owner: name(owner), rtype, ttl: Some(60), rdatas: vec![rdata.to_vec()] }
    }

    pub(crate) fn job(apex: &str, if_match: Option<Vec<i64>>, changes: Vec<Change>) -> Job {
        Job {
            batch: edit::Checked::new(&name(apex), changes, &edit::Limits::default()).unwrap(),
            tenant: None,
            zones: None,
            writable: |_| true,
            if_match,
            summary: "{}".into(),
            author: ("test".into(), "t1".into(), "system".into()),
            now: 1,
            reply: tokio::sync::oneshot::channel().0,
        }
    }

    /// A store on a new, empty data directory of its own, and the directory.
    async fn fresh_store(label: &str) -> (Store, std::path::PathBuf) {
        let dir = std::env::temp_dir().join(format!("ferrodns-sqlite-{label}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        (Store::open(&Store::sqlite_url(&dir), StoreOptions::default()).await.unwrap(), dir)
    }

    /// Changes committed together keep their own checks, serial steps and
    /// history entries; the ones that fail leave nothing behind; and each
    /// zone's stored SOA carries the serial its row says.
    #[tokio::test]
    async fn a_batch_commits_each_change_on_its_own_terms() {
        let (store, dir) = fresh_store("batch").await;
        let author = Author { name: "test", token: "t1", tenant: "system" };
        for (apex, catalog_id) in [("a.test.", "a"), ("b.test.", "b")] {
            let apex = name(apex);
            store
                .create_zone(&apex, "system", "primary", zone_rrsets(&apex), None, catalog_id, &author, 1)
                .await
                .unwrap();
        }
        let a = store.zone(&name("a.test.")).await.unwrap();
        let batch = vec![
            job("a.test.", None, vec![upsert("www.a.test.", RecordType::A, &[192, 0, 2, 1])]),
            // The version the first change left behind is not this one.
            job("a.test.", Some(vec![a.version]), vec![upsert("old.a.test.", RecordType::A, &[192, 0, 2, 2])]),
            // Rejected by the zone rules: a CNAME beside the apex's records.
            job("a.test.", None, vec![upsert("a.test.", RecordType::CNAME, name("x.invalid.").as_wire())]),
            job("b.test.", None, vec![upsert("www.b.test.", RecordType::A, &[192, 0, 2, 3])]),
            job("a.test.", Some(vec![a.version + 1]), vec![upsert("www.a.test.", RecordType::A, &[192, 0, 2, 4])]),
            // The same RRset again: no change, no serial step.
            job("a.test.", None, vec![upsert("www.a.test.", RecordType::A, &[192, 0, 2, 4])]),
        ];
        let mut conn = Connection::open(dir.join("ferrodns.db")).unwrap();
        let results = commit(&mut conn, &StoreOptions::default(), &batch).unwrap();
        let serials: Vec<Option<u32>> = results.iter().map(|r| r.as_ref().ok().map(|c| c.zone.serial.0)).collect();
        assert_eq!(serials, [Some(2), None, None, Some(2), Some(3), Some(3)], "{results:?}");
        assert!(matches!(results[1], Err(StoreError::VersionMismatch { current }) if current == a.version + 1));
        assert!(matches!(results[2], Err(StoreError::Rejected(_))));
        assert!(results[5].as_ref().unwrap().change.is_none());

        for (apex, serial, entries) in [("a.test.", 3, 3), ("b.test.", 2, 2)] {
            let zone = store.zone(&name(apex)).await.unwrap();
            assert_eq!(zone.serial, Serial(serial), "{apex}");
            let stored = store.zone_rrsets(zone.id).await.unwrap();
            let soa = stored.iter().find(|s| s.rtype == RecordType::SOA).unwrap();
            assert_eq!(ferrodns_proto::rdata::soa_serial(&soa.rdatas[0]), Some(Serial(serial)), "{apex}'s SOA row");
            assert!(!stored.iter().any(|s| s.owner == name("old.a.test.")), "a refused change left a row");
            let journal = store.journal(zone.id).await.unwrap();
            assert_eq!(journal.len(), entries, "{apex}: the creation and one entry per change");
            assert_eq!(journal.last().unwrap().1.new_serial, Serial(serial));
        }
        store.close().await;
        let _ = std::fs::remove_dir_all(&dir);
    }

    /// Each statement of a change finds its rows by key: a statement that
    /// reads every RRset of the zone costs time in proportion to the zone,
    /// for each one-record change (the owners-and-SOA read once did).
    #[tokio::test]
    async fn every_statement_of_a_change_searches_by_key() {
        let (store, dir) = fresh_store("plans").await;
        store.close().await;
        let conn = Connection::open(dir.join("ferrodns.db")).unwrap();
        let statements = [
            format!("{UPDATE_ZONE_VERSION} RETURNING {ZONE_COLUMNS}"),
            owners_and_soa_sql(Backend::Sqlite, 1),
            owners_and_soa_sql(Backend::Sqlite, 3),
            upsert_sql(Backend::Sqlite, 2),
            delete_rrsets_sql(Backend::Sqlite, 2),
            format!("{UPDATE_ZONE_SERIAL} RETURNING {ZONE_COLUMNS}"),
            format!("{INSERT_JOURNAL} RETURNING {CHANGE_COLUMNS}"),
            duties::TRIM_JOURNAL.to_string(),
        ];
        for sql in statements {
            let mut plan = conn.prepare(&format!("EXPLAIN QUERY PLAN {sql}")).unwrap();
            let mut rows = plan.raw_query();
            let mut details = Vec::new();
            while let Some(row) = rows.next().unwrap() {
                details.push(row.get::<_, String>(3).unwrap());
            }
            for detail in &details {
                let table_scan =
                    ["zones", "rrsets", "journal"].iter().any(|t| detail.starts_with(&format!("SCAN {t}")));
                assert!(!table_scan, "{sql}\nscans: {details:?}");
                if detail.contains(" rrsets ") {
                    assert!(detail.contains("owner=?"), "{sql}\nreads the zone's RRsets: {details:?}");
                }
            }
        }
        let _ = std::fs::remove_dir_all(&dir);
    }
}
