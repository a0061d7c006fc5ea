//! Database connections: SQLite for the embedded default (WAL, foreign keys, busy timeout), PostgreSQL for the
//! scaled deployment, and the migrations that build the same schema on both.

use std::time::Duration;

use anyhow::Context;
use migrations::{Migrator, MigratorTrait};
use sea_orm::{
    ConnectOptions, ConnectionTrait, Database, DatabaseConnection, DbBackend, TransactionTrait,
};

use crate::config::Config;

/// Opens the pool described by the configuration. For SQLite the folder of the file is created; for
/// PostgreSQL with `DATABASE_SCHEMA` the schema is created and put first on the search path.
pub async fn connect(config: &Config) -> anyhow::Result<DatabaseConnection> {
    if config.is_sqlite() {
        if let Some(path) = sqlite_file(&config.database_url)
            && let Some(dir) = std::path::Path::new(&path).parent()
            && !dir.as_os_str().is_empty()
        {
            std::fs::create_dir_all(dir)
                .with_context(|| format!("creating database folder {}", dir.display()))?;
        }
    } else if let Some(schema) = &config.database_schema {
        let admin = Database::connect(options(config, None))
            .await
            .context("connecting to PostgreSQL")?;
        admin
            .execute_unprepared(&format!("CREATE SCHEMA IF NOT EXISTS \"{schema}\""))
            .await?;
        admin.close().await?;
    }
    let db = Database::connect(options(config, config.database_schema.as_deref()))
        .await
        .context("connecting to the database (check DATABASE_URL)")?;
    Ok(db)
}

fn options(config: &Config, schema: Option<&str>) -> ConnectOptions {
    let mut opts = ConnectOptions::new(config.database_url.clone());
    opts.max_connections(config.database_max_connections)
        .min_connections(1)
        .connect_timeout(Duration::from_secs(10))
        .acquire_timeout(Duration::from_secs(10))
        .sqlx_logging(false)
        .map_sqlx_sqlite_opts(|o| {
            use sea_orm::sqlx::sqlite::{SqliteJournalMode, SqliteSynchronous};
            o.journal_mode(SqliteJournalMode::Wal)
                .synchronous(SqliteSynchronous::Normal)
                .foreign_keys(true)
                .busy_timeout(Duration::from_secs(5))
        });
    if let Some(schema) = schema {
        opts.set_schema_search_path(schema.to_string());
    }
    opts
}

fn sqlite_file(url: &str) -> Option<String> {
    let rest = url
        .strip_prefix("sqlite://")
        .or_else(|| url.strip_prefix("sqlite:"))?;
    let path = rest.split('?').next()?;
    (!path.is_empty() && path != ":memory:").then(|| path.to_string())
}

/// Brings the schema up to date. Safe to run from several instances at once on PostgreSQL: the migration
/// runner takes an advisory lock there.
pub async fn migrate(db: &DatabaseConnection) -> anyhow::Result<()> {
    if db.get_database_backend() == DbBackend::Postgres {
        // PostgreSQL's DDL is transactional: run every pending migration in one transaction that first takes a
        // transaction-scoped advisory lock, so instances starting together migrate one after the other.
        let txn = db.begin().await?;
        txn.execute_unprepared("SELECT pg_advisory_xact_lock(727274)")
            .await?;
        Migrator::up(&txn, None)
            .await
            .context("running migrations")?;
        txn.commit().await?;
    } else {
        Migrator::up(db, None).await.context("running migrations")?;
    }
    Ok(())
}

/// One writer at a time, queued in this process, for SQLite.
///
/// SQLite lets one transaction write at a time. When several try, the losers wait in SQLite's busy handler,
/// which sleeps 1, 2, 5, 10 … 100 ms between attempts: under a burst of writes (payment notifications, chat
/// messages) most of the time goes to those sleeps and the slowest requests wait hundreds of milliseconds.
/// Hot write paths therefore enter this gate before they begin their transaction: the waiters form a FIFO queue
/// and each starts the moment the previous one commits. On PostgreSQL (row locks, many writers) the gate is
/// open and costs nothing. It is an optimisation, not a correctness device: paths that do not use it still
/// work, through the busy handler as before.
#[derive(Clone, Default)]
pub struct WriteGate(Option<std::sync::Arc<tokio::sync::Mutex<()>>>);

impl WriteGate {
    /// A closed gate (one writer at a time) for SQLite, an open one for PostgreSQL.
    pub fn for_backend(backend: DbBackend) -> Self {
        match backend {
            DbBackend::Sqlite => Self(Some(Default::default())),
            _ => Self(None),
        }
    }

    /// Waits for this process's turn to write; hold the guard until the transaction has committed.
    pub async fn enter(&self) -> Option<tokio::sync::OwnedMutexGuard<()>> {
        match &self.0 {
            Some(m) => Some(std::sync::Arc::clone(m).lock_owned().await),
            None => None,
        }
    }
}

/// True when the error is a violated unique or primary-key constraint (a lost race for a unique slot).
pub fn is_unique_violation(err: &sea_orm::DbErr) -> bool {
    matches!(
        err.sql_err(),
        Some(sea_orm::SqlErr::UniqueConstraintViolation(_))
    )
}

#[cfg(test)]
mod tests {
    use super::sqlite_file;

    #[test]
    fn sqlite_paths_are_found() {
        assert_eq!(
            sqlite_file("sqlite://data/x.db?mode=rwc").as_deref(),
            Some("data/x.db")
        );
        assert_eq!(sqlite_file("sqlite::memory:"), None);
    }
}
