//! The writes only a leader makes: the catalog zone's state and journal
//! compaction. Each runs under a [`Fence`]: on PostgreSQL the transaction
//! first takes a share lock on the lease row, and only while that row still
//! names this node, this term and an unexpired lease. A node that lost its
//! term (paused, cut off, replaced) therefore writes nothing, and a new
//! leader's `acquire_lease` waits for a fenced write in flight to commit, so
//! the write lands wholly inside the old term.

use ferrodns_proto::{Name, Serial};
use sqlx::{Any, Row, Transaction};

use crate::{announce, name_column, serial_column, Backend, Result, Store};

/// Who may make a leader's write.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fence<'a> {
    /// The only node of an SQLite database (the data directory's lock makes
    /// it the only one).
    Single,
    /// The holder of the PostgreSQL lease in this term.
    Lease { node: &'a str, term: i64 },
}

/// The catalog zone's state as stored.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CatalogState {
    pub serial: Serial,
    /// Digest of the member list the serial stands for.
    pub digest: String,
    /// The term of the leader that wrote it (1 on a single node).
    pub term: i64,
}

impl Store {
    /// Opens a transaction that holds the fence, or `None` when the fence
    /// does not hold (another node leads, or the lease ran out).
    async fn fenced(
        &self,
        fence: Fence<'_>,
    ) -> Result<Option<(Option<tokio::sync::MutexGuard<'_, ()>>, Transaction<'static, Any>)>> {
        let (guard, mut tx) = self.begin_write().await?;
        if let Fence::Lease { node, term } = fence {
            if self.backend != Backend::Postgres {
                return Err(crate::StoreError::Corrupt("a lease fence needs PostgreSQL".into()));
            }
            // A fenced transaction that idles past the limit is ended by the
            // server, share lock and all (see `StoreOptions::fence_idle_limit`).
            sqlx::query(&format!(
                "SET LOCAL idle_in_transaction_session_timeout = {}",
                self.options.fence_idle_limit.as_millis().max(1)
            ))
            .execute(&mut *tx)
            .await?;
            let held = sqlx::query(
                "SELECT term FROM leader_lease WHERE id = 1 AND node = $1 AND term = $2 AND expires_at > now() \
                 FOR SHARE",
            )
            .bind(node.to_string())
            .bind(term)
            .fetch_optional(&mut *tx)
            .await?;
            if held.is_none() {
                tx.rollback().await?;
                return Ok(None);
            }
        }
        Ok(Some((guard, tx)))
    }

    /// The catalog state, if a leader ever wrote one.
    pub async fn catalog_state(&self) -> Result<Option<CatalogState>> {
        let row = sqlx::query("SELECT serial, digest, term FROM catalog_state WHERE id = 1")
            .fetch_optional(&self.pool)
            .await?;
        row.map(|row| {
            Ok(CatalogState {
                serial: serial_column(&row, "serial")?,
                digest: row.try_get("digest")?,
                term: row.try_get("term")?,
            })
        })
        .transpose()
    }

    /// Every stored zone's name and catalog id, in name order; forward
    /// zones are no members (a secondary could not transfer them).
    pub async fn catalog_members(&self) -> Result<Vec<(Name, String)>> {
        let rows = sqlx::query("SELECT name, catalog_id FROM zones WHERE kind <> $1 ORDER BY name")
            .bind(crate::FORWARD_KIND)
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(|row| Ok((name_column(row, "name")?, row.try_get("catalog_id")?))).collect()
    }

    /// Records that the catalog now stands for the members with `digest`,
    /// under the next serial: the larger of the stored serial plus one and
    /// `unix_now` (RFC 1982 order), so a consumer's copy from any node is
    /// never newer. Announces `catalog` to the other nodes at commit.
    /// Returns the new state, or `None` when the fence does not hold.
    pub async fn write_catalog(
        &self,
        catalog: &Name,
        digest: &str,
        fence: Fence<'_>,
        unix_now: u32,
        now: i64,
    ) -> Result<Option<CatalogState>> {
        let Some((_guard, mut tx)) = self.fenced(fence).await? else { return Ok(None) };
        let old = sqlx::query("SELECT serial FROM catalog_state WHERE id = 1").fetch_optional(&mut *tx).await?;
        let serial = match old {
            Some(row) => {
                let next = serial_column(&row, "serial")?.plus(1);
                if Serial(unix_now).is_newer_than(next) {
                    Serial(unix_now)
                } else {
                    next
                }
            }
            None => Serial(unix_now),
        };
        let term = match fence {
            Fence::Single => 1,
            Fence::Lease { term, .. } => term,
        };
        sqlx::query(
            "INSERT INTO catalog_state (id, serial, digest, term, written_at) VALUES (1, $1, $2, $3, $4) \
             ON CONFLICT (id) DO UPDATE SET serial = excluded.serial, digest = excluded.digest, \
             term = excluded.term, written_at = excluded.written_at",
        )
        .bind(serial.0 as i64)
        .bind(digest.to_string())
        .bind(term)
        .bind(now)
        .execute(&mut *tx)
        .await?;
        announce(&mut tx, self.backend, catalog, Some(serial)).await?;
        tx.commit().await?;
        Ok(Some(CatalogState { serial, digest: digest.to_string(), term }))
    }

    /// Every zone's id, name and version, for deciding which journals to compact.
    pub async fn zone_versions(&self) -> Result<Vec<(i64, Name, i64)>> {
        let rows = sqlx::query("SELECT id, name, version FROM zones").fetch_all(&self.pool).await?;
        rows.iter().map(|row| Ok((row.try_get("id")?, name_column(row, "name")?, row.try_get("version")?))).collect()
    }

    /// Deletes all but the newest `--journal-keep` journal entries of a zone,
    /// under the fence. Returns how many went, or `None` when the fence does
    /// not hold.
    pub async fn compact_journal(&self, zone_id: i64, fence: Fence<'_>) -> Result<Option<u64>> {
        let Some((_guard, mut tx)) = self.fenced(fence).await? else { return Ok(None) };
        let removed = trim_journal(&mut tx, zone_id, self.options.journal_keep).await?;
        tx.commit().await?;
        Ok(Some(removed))
    }
}

/// Deletes all but the newest `keep` (at least one) journal entries of a zone.
/// Deletes a zone's journal entries but the newest `$2` (`$1` the zone id).
pub(crate) const TRIM_JOURNAL: &str = "DELETE FROM journal WHERE zone_id = $1 AND id <= \
     (SELECT id FROM journal WHERE zone_id = $1 ORDER BY id DESC LIMIT 1 OFFSET $2)";

pub(crate) async fn trim_journal(tx: &mut Transaction<'static, Any>, zone_id: i64, keep: u32) -> Result<u64> {
    let done = sqlx::query(TRIM_JOURNAL).bind(zone_id).bind(keep.max(1) as i64).execute(&mut **tx).await?;
    Ok(done.rows_affected())
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, Instant};

    use super::*;
    use crate::StoreOptions;

    /// `FERRODNS_TEST_POSTGRES`, as the integration tests take it.
    fn server() -> String {
        std::env::var("FERRODNS_TEST_POSTGRES").unwrap_or_else(|_| "postgres://root@127.0.0.1:5432".to_string())
    }

    async fn admin(sql: &str) {
        use sqlx::Connection;
        let mut conn = sqlx::PgConnection::connect(&format!("{}/postgres", server()))
            .await
            .expect("PostgreSQL at FERRODNS_TEST_POSTGRES");
        sqlx::query(sql).execute(&mut conn).await.unwrap();
    }

    /// A leader that vanished in the middle of a fenced write, its connection
    /// left open (a host powered off, a partition: no FIN ever comes), holds
    /// a share lock on the lease row. The other nodes must still take the
    /// lease soon after it expires, not when TCP gives up hours later.
    #[tokio::test]
    async fn a_vanished_leaders_fenced_write_does_not_keep_the_lease() {
        let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().subsec_nanos();
        let db = format!("ferrodns_fence_{}_{nanos}", std::process::id());
        admin(&format!("CREATE DATABASE {db}")).await;
        let url = format!("{}/{db}", server());
        let options = StoreOptions { fence_idle_limit: Duration::from_millis(300), ..StoreOptions::default() };
        let a = Store::open(&url, options.clone()).await.unwrap();
        // As the election's own store is opened.
        let b = Store::open(&url, StoreOptions { lock_timeout: Some(Duration::from_millis(300)), ..options })
            .await
            .unwrap();
        let term = a.acquire_lease("a", 1000).await.unwrap().expect("the lease is free");
        // `a` begins a fenced write and goes silent with it open.
        let held = a.fenced(Fence::Lease { node: "a", term }).await.unwrap().expect("a holds the fence");
        tokio::time::sleep(Duration::from_millis(1100)).await;
        let started = Instant::now();
        let taken = loop {
            match tokio::time::timeout(Duration::from_secs(5), b.acquire_lease("b", 1000)).await {
                Ok(Ok(Some(taken))) => break taken,
                Ok(_) => {}
                Err(_) => panic!("acquire_lease waited 5 s on the vanished leader's lock"),
            }
            assert!(started.elapsed() < Duration::from_secs(5), "no lease for b after {:?}", started.elapsed());
            tokio::time::sleep(Duration::from_millis(100)).await;
        };
        assert!(taken > term);
        drop(held);
        a.close().await;
        b.close().await;
        admin(&format!("DROP DATABASE {db} WITH (FORCE)")).await;
    }
}
