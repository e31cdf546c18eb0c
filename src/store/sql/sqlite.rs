//! SQLite, the embedded default: one file, WAL, full fsync, migrations.

use std::str::FromStr;

use anyhow::Context;
use secrecy::ExposeSecret;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};

use super::{SqlPool, SqlStore};
use crate::config::{Settings, redact_url};

/// Opens (creating if needed) the file, and applies `migrations/sqlite`.
pub(crate) async fn connect(settings: &Settings) -> anyhow::Result<SqlStore> {
    let url = settings.database_url.expose_secret();
    let options = SqliteConnectOptions::from_str(url)
        .context("DATABASE_URL is not a valid SQLite URL")?
        .create_if_missing(true)
        .journal_mode(SqliteJournalMode::Wal)
        // FULL: a write the service has answered for survives power loss, not just a crash.
        .synchronous(SqliteSynchronous::Full)
        .foreign_keys(true)
        .busy_timeout(std::time::Duration::from_secs(5));
    if let Some(parent) = options.get_filename().parent()
        && !parent.as_os_str().is_empty()
    {
        std::fs::create_dir_all(parent)
            .with_context(|| format!("creating the database directory {}", parent.display()))?;
    }
    let pool = SqlitePoolOptions::new()
        .max_connections(settings.database_max_connections)
        .acquire_timeout(std::time::Duration::from_secs(5))
        .connect_with(options)
        .await
        .with_context(|| format!("opening SQLite database {}", redact_url(url)))?;
    sqlx::migrate!("./migrations/sqlite")
        .run(&pool)
        .await
        .context("applying SQLite migrations")?;
    tracing::info!(database = %redact_url(url), "DB connection URL created: SQLite opened and migrated");
    // SQLite waits on its own write lock (busy_timeout); the dependency timeout is for network
    // backends, so it gets the longer bound here.
    Ok(SqlStore {
        pool: SqlPool::Sqlite(pool),
        reauth: None,
        // Other processes may share the file, and nothing would tell this one of their
        // revocations; a read here costs no network round trip anyway.
        session_cache: None,
        timeout: settings
            .dependency_timeout
            .max(std::time::Duration::from_secs(5)),
    })
}
