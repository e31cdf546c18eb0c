//! PostgreSQL: pool, TLS, statement timeout, migrations.

use std::str::FromStr;

use anyhow::Context;
use secrecy::ExposeSecret;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};

use super::{SqlPool, SqlStore};
use crate::config::{Settings, redact_url};

/// Connects, checks the server answers, and applies `migrations/postgres`.
pub(crate) async fn connect(settings: &Settings) -> anyhow::Result<SqlStore> {
    let url = settings.database_url.expose_secret();
    let timeout = settings.dependency_timeout;
    // The server abandons a statement a little after we stop waiting for it, so a hung
    // query does not hold a pooled connection forever.
    let statement_timeout_ms = timeout.as_millis().saturating_mul(2).to_string();
    let options = PgConnectOptions::from_str(url)
        .context("DATABASE_URL is not a valid PostgreSQL URL")?
        .application_name("aidlc-auth")
        .options([("statement_timeout", statement_timeout_ms.as_str())]);
    let pool = PgPoolOptions::new()
        .max_connections(settings.database_max_connections)
        .min_connections(1)
        .acquire_timeout(timeout)
        .connect_with(options)
        .await
        .with_context(|| format!("connecting to PostgreSQL at {}", redact_url(url)))?;
    sqlx::migrate!("./migrations/postgres")
        .run(&pool)
        .await
        .context("applying PostgreSQL migrations")?;
    tracing::info!(database = %redact_url(url), "DB connection URL created: PostgreSQL connected and migrated");
    Ok(SqlStore {
        pool: SqlPool::Postgres(pool),
        timeout,
    })
}
