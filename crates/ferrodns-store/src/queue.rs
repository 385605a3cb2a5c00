//! Queued batches of RRset changes: what both databases' change paths take,
//! and PostgreSQL's per-zone queue.
//!
//! On PostgreSQL, changes to one zone queue on its row lock whatever we do;
//! each used to be its own transaction and commit. Here the changes this node
//! has for a zone while one of its transactions is in flight wait in the
//! zone's queue, and the next transaction takes all of them: each in a
//! savepoint, with its own version bump, `If-Match` check, plan, serial step
//! and journal entry, as on SQLite (`sqlite`). Zones never wait on each other:
//! each has its own queue and its own transaction. The queue's transactions
//! run in a task of their own, so a request that goes away (its client hung
//! up) cannot abandon the changes of the others queued with it.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use ferrodns_proto::Name;
use ferrodns_zone::edit::{self, Checked};
use sqlx::{Any, AnyPool, Transaction};

use crate::{
    announce, finish_write, lock_and_load, Backend, Committed, Planned, Result, Scope, StoreError, StoreOptions,
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

/// What one job did inside a shared transaction.
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
}

impl Queues {
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
                commit(&pool, &options, batch).await;
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

/// Commits `batch` in one transaction and answers each job.
async fn commit(pool: &AnyPool, options: &StoreOptions, batch: Vec<Job>) {
    let outcome = attempt(pool, options, &batch).await;
    if let Err(error) = &outcome {
        if batch.len() > 1 {
            tracing::warn!(changes = batch.len(), %error, "a batch of changes to one zone failed");
        }
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

async fn attempt(pool: &AnyPool, options: &StoreOptions, batch: &[Job]) -> Result<Vec<Result<Committed>>> {
    let mut tx = pool.begin().await?;
    // One job needs no savepoint: if it writes nothing, the transaction
    // rolls back whole.
    let several = batch.len() > 1;
    let mut results = Vec::with_capacity(batch.len());
    let mut last = None;
    let mut already_announced = false;
    for job in batch {
        if several {
            sqlx::query("SAVEPOINT change").execute(&mut *tx).await?;
        }
        // A job alone announces its commit in its own statement.
        let outcome = change_in(&mut tx, options, job, !several).await.map(|(outcome, announced)| {
            if announced {
                already_announced = true;
            }
            outcome
        });
        if several {
            if !matches!(outcome, Ok(Outcome::Written(_))) {
                sqlx::query("ROLLBACK TO SAVEPOINT change").execute(&mut *tx).await?;
            }
            sqlx::query("RELEASE SAVEPOINT change").execute(&mut *tx).await?;
        }
        results.push(match outcome {
            Ok(Outcome::Written(committed)) => {
                last = Some((committed.zone.name.clone(), committed.zone.serial));
                Ok(committed)
            }
            Ok(Outcome::Unchanged(committed)) => Ok(committed),
            Err(error) => Err(error),
        });
    }
    match last {
        // One notification for the batch: other nodes read what changed
        // from the journal, up to the serial it names.
        Some((zone, serial)) => {
            if !already_announced {
                announce(&mut tx, Backend::Postgres, &zone, Some(serial)).await?;
            }
            tx.commit().await?;
        }
        None => {
            // Nothing written; the results already say why.
            let _ = tx.rollback().await;
        }
    }
    Ok(results)
}

/// One job inside `tx`: the steps of `Store::apply_changes`.
async fn change_in(
    tx: &mut Transaction<'static, Any>,
    options: &StoreOptions,
    job: &Job,
    announce: bool,
) -> Result<(Outcome, bool)> {
    let owners = job.batch.owners();
    let (scope, if_match) = (job.scope(), job.if_match.as_deref());
    let (zone, current, soa) =
        lock_and_load(tx, job.apex(), &scope, Some(job.writable), if_match, job.now, &owners).await?;
    let plan = edit::plan(current, &job.batch).map_err(StoreError::Rejected)?;
    finish_write(
        tx,
        Backend::Postgres,
        options,
        zone,
        soa,
        Planned::Batch(plan),
        None,
        &job.summary,
        &job.author(),
        job.now,
        announce,
    )
    .await
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
        let db = format!("ferrodns_queue_{}", std::process::id());
        admin(&format!("DROP DATABASE IF EXISTS {db}")).await;
        admin(&format!("CREATE DATABASE {db}")).await;
        let store = Store::open(&format!("{}/{db}", server()), StoreOptions::default()).await.unwrap();
        let author = Author { name: "test", token: "t1", tenant: "system" };
        let apex = name("a.test.");
        store.create_zone(&apex, "system", "primary", zone_rrsets(&apex), None, "a", &author, 1).await.unwrap();
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
        store.close().await;
        admin(&format!("DROP DATABASE {db} WITH (FORCE)")).await;
    }

    /// The lock-and-read statement finds the touched RRsets through the
    /// primary key, whatever the zones hold: a first version joined them to
    /// the locked row, which PostgreSQL planned as a scan of every RRset
    /// (10 ms a change at 100,000 records, and DNS under API load fell to half
    /// its idle rate in `controlbench --only underload`).
    #[tokio::test]
    async fn the_lock_and_read_statement_uses_the_index() {
        let db = format!("ferrodns_queue_plan_{}", std::process::id());
        admin(&format!("DROP DATABASE IF EXISTS {db}")).await;
        admin(&format!("CREATE DATABASE {db}")).await;
        let store = Store::open(&format!("{}/{db}", server()), StoreOptions::default()).await.unwrap();
        let author = Author { name: "test", token: "t1", tenant: "system" };
        let apex = name("big.test.");
        store.create_zone(&apex, "system", "primary", zone_rrsets(&apex), None, "a", &author, 1).await.unwrap();
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
        let plan: Vec<String> = sqlx::query(&format!("EXPLAIN {}", crate::lock_and_load_sql(1)))
            .bind("big.test.")
            .bind(1i64)
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
        store.close().await;
        admin(&format!("DROP DATABASE {db} WITH (FORCE)")).await;
    }

    /// A change that waits for the zone's row lock reads the RRsets as the
    /// transaction holding it left them, not as its statement's snapshot saw
    /// them before the wait (`lock_and_load`): the RRset it replaces, and so
    /// its history's removed records, are the committed ones.
    #[tokio::test]
    async fn a_change_that_waited_for_the_lock_reads_what_was_committed_meanwhile() {
        use sqlx::Connection;
        let db = format!("ferrodns_queue_wait_{}", std::process::id());
        admin(&format!("DROP DATABASE IF EXISTS {db}")).await;
        admin(&format!("CREATE DATABASE {db}")).await;
        let url = format!("{}/{db}", server());
        let store = Store::open(&url, StoreOptions::default()).await.unwrap();
        let author = Author { name: "test", token: "t1", tenant: "system" };
        let apex = name("w.test.");
        store.create_zone(&apex, "system", "primary", zone_rrsets(&apex), None, "a", &author, 1).await.unwrap();
        let first = job("w.test.", None, vec![upsert("www.w.test.", RecordType::A, &[192, 0, 2, 1])]);
        attempt(&store.pool, &StoreOptions::default(), &[first]).await.unwrap().remove(0).unwrap();

        // Another writer (another node, say) holds the lock and changes the RRset.
        let mut other = sqlx::PgConnection::connect(&url).await.unwrap();
        sqlx::query("BEGIN").execute(&mut other).await.unwrap();
        sqlx::query("UPDATE zones SET version = version + 1 WHERE name = 'w.test.'").execute(&mut other).await.unwrap();
        sqlx::query("UPDATE rrsets SET rdata = $1 WHERE owner = 'www.w.test.' AND rtype = 1")
            .bind(ferrodns_zone::edit::pack_rdatas([&[192u8, 0, 2, 2][..]]))
            .execute(&mut other)
            .await
            .unwrap();
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
        store.close().await;
        drop(other);
        admin(&format!("DROP DATABASE {db} WITH (FORCE)")).await;
    }
}
