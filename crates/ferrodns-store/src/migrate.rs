//! Versioned, forward-only schema migrations, run at start.
//!
//! Each migration is one SQL file per database under `migrations/`, recorded
//! in `schema_migrations`; the pending ones are applied together in one
//! transaction, so a start that fails leaves the schema as it was. A database
//! whose schema is newer than this binary knows is refused rather than
//! guessed at. On PostgreSQL an advisory lock keeps nodes that start together
//! from migrating twice.

use sqlx::{AnyPool, Row};

use crate::{Backend, Result, StoreError};

struct Migration {
    version: i64,
    name: &'static str,
    sqlite: &'static str,
    postgres: &'static str,
}

const MIGRATIONS: &[Migration] = &[
    Migration {
        version: 1,
        name: "initial",
        sqlite: include_str!("../migrations/sqlite/0001_initial.sql"),
        postgres: include_str!("../migrations/postgres/0001_initial.sql"),
    },
    Migration {
        version: 2,
        name: "tsig_keys",
        sqlite: include_str!("../migrations/sqlite/0002_tsig_keys.sql"),
        postgres: include_str!("../migrations/postgres/0002_tsig_keys.sql"),
    },
    Migration {
        version: 3,
        name: "leader_lease",
        sqlite: include_str!("../migrations/sqlite/0003_leader_lease.sql"),
        postgres: include_str!("../migrations/postgres/0003_leader_lease.sql"),
    },
    Migration {
        version: 4,
        name: "catalog_state",
        sqlite: include_str!("../migrations/sqlite/0004_catalog_state.sql"),
        postgres: include_str!("../migrations/postgres/0004_catalog_state.sql"),
    },
    Migration {
        version: 5,
        name: "journal_author",
        sqlite: include_str!("../migrations/sqlite/0005_journal_author.sql"),
        postgres: include_str!("../migrations/postgres/0005_journal_author.sql"),
    },
    Migration {
        version: 6,
        name: "tsig_key_scope",
        sqlite: include_str!("../migrations/sqlite/0006_tsig_key_scope.sql"),
        postgres: include_str!("../migrations/postgres/0006_tsig_key_scope.sql"),
    },
    Migration {
        version: 7,
        name: "zone_rate_limit",
        sqlite: include_str!("../migrations/sqlite/0007_zone_rate_limit.sql"),
        postgres: include_str!("../migrations/postgres/0007_zone_rate_limit.sql"),
    },
    Migration {
        version: 8,
        name: "journal_records",
        sqlite: include_str!("../migrations/sqlite/0008_journal_records.sql"),
        postgres: include_str!("../migrations/postgres/0008_journal_records.sql"),
    },
    Migration {
        version: 9,
        name: "forward_zones",
        sqlite: include_str!("../migrations/sqlite/0009_forward_zones.sql"),
        postgres: include_str!("../migrations/postgres/0009_forward_zones.sql"),
    },
    Migration {
        version: 10,
        name: "secondary_zones",
        sqlite: include_str!("../migrations/sqlite/0010_secondary_zones.sql"),
        postgres: include_str!("../migrations/postgres/0010_secondary_zones.sql"),
    },
];

/// An arbitrary constant naming ferrodns' migration lock.
const MIGRATION_LOCK: i64 = 0x6665_7272_6f64_6e73;

pub(crate) async fn run(pool: &AnyPool, backend: Backend) -> Result<()> {
    let mut tx = pool.begin().await?;
    if backend == Backend::Postgres {
        sqlx::query("SELECT pg_advisory_xact_lock($1)").bind(MIGRATION_LOCK).execute(&mut *tx).await?;
    }
    // PostgreSQL answers CREATE TABLE IF NOT EXISTS on an existing table
    // with a notice, which every node after the first would log: ask first.
    let exists = match backend {
        Backend::Postgres => {
            let row = sqlx::query("SELECT CAST(COUNT(*) AS BIGINT) AS n FROM pg_tables WHERE tablename = 'schema_migrations' AND schemaname = current_schema()")
                .fetch_one(&mut *tx)
                .await?;
            row.try_get::<i64, _>("n")? > 0
        }
        Backend::Sqlite => false,
    };
    if !exists {
        sqlx::raw_sql(
            "CREATE TABLE IF NOT EXISTS schema_migrations (version BIGINT PRIMARY KEY, name TEXT NOT NULL, applied_at BIGINT NOT NULL)",
        )
        .execute(&mut *tx)
        .await?;
    }
    let row = sqlx::query("SELECT COALESCE(MAX(version), 0) AS v FROM schema_migrations").fetch_one(&mut *tx).await?;
    let current: i64 = row.try_get("v")?;
    let known = MIGRATIONS.last().map_or(0, |m| m.version);
    if current > known {
        return Err(StoreError::Database(format!(
            "the database schema is at version {current}, newer than this ferrodns knows ({known}); upgrade ferrodns"
        )));
    }
    for migration in MIGRATIONS.iter().filter(|m| m.version > current) {
        let sql = match backend {
            Backend::Sqlite => migration.sqlite,
            Backend::Postgres => migration.postgres,
        };
        sqlx::raw_sql(sql).execute(&mut *tx).await?;
        let now =
            std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_micros() as i64);
        sqlx::query("INSERT INTO schema_migrations (version, name, applied_at) VALUES ($1, $2, $3)")
            .bind(migration.version)
            .bind(migration.name)
            .bind(now)
            .execute(&mut *tx)
            .await?;
        tracing::info!(version = migration.version, name = migration.name, "applied schema migration");
    }
    tx.commit().await?;
    Ok(())
}
