//! PostgreSQL: pool, TLS, statement timeout, migrations; the URL from `DATABASE_URL` or an RDS
//! secret.

use std::str::FromStr;
use std::time::Duration;

use anyhow::Context;
use secrecy::{ExposeSecret, SecretString};
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};

use super::{SqlPool, SqlStore};
use crate::config::{Settings, redact_url};

/// Connects, checks the server answers, and applies `migrations/postgres`. With
/// `AIDLC_DB_SECRET_ARN` the pool reads that secret again when the password is rejected.
pub(crate) async fn connect(settings: &Settings) -> anyhow::Result<SqlStore> {
    let timeout = settings.dependency_timeout;
    let url = database_url(settings).await?;
    let options = connect_options(&url, timeout)?;
    let url = url.expose_secret();
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
        reauth: reauthentication(settings, &pool).await,
        pool: SqlPool::Postgres(pool),
        timeout,
    })
}

/// The pool's options for `url`: the service's name, and a statement timeout.
pub(super) fn connect_options(
    url: &SecretString,
    timeout: Duration,
) -> anyhow::Result<PgConnectOptions> {
    // The server abandons a statement a little after we stop waiting for it, so a hung
    // query does not hold a pooled connection forever.
    let statement_timeout_ms = timeout.as_millis().saturating_mul(2).to_string();
    Ok(PgConnectOptions::from_str(url.expose_secret())
        .context("DATABASE_URL is not a valid PostgreSQL URL")?
        .application_name("aidlc-auth")
        .options([("statement_timeout", statement_timeout_ms.as_str())]))
}

/// `DATABASE_URL`, or the URL built from the RDS secret (`AIDLC_DB_SECRET`, or read from
/// `AIDLC_DB_SECRET_ARN`).
async fn database_url(settings: &Settings) -> anyhow::Result<SecretString> {
    #[cfg(feature = "aws")]
    if let Some(arn) = &settings.db_secret_arn {
        let secrets = crate::aws::Secrets::new(&crate::aws::sdk_config(settings).await);
        return super::rotation::read_url(&secrets, arn).await;
    }
    let url = settings
        .database_url_or_secret()
        .context("AIDLC_DB_SECRET_ARN needs a build with `--features aws`")?;
    if settings.db_secret.is_some() {
        tracing::info!(database = %redact_url(url.expose_secret()), "database URL built from the secret");
    }
    Ok(url)
}

/// What re-reads the credentials when PostgreSQL rejects them: the secret named by
/// `AIDLC_DB_SECRET_ARN`, if any. (A URL or an injected secret cannot change under us.)
#[cfg(feature = "aws")]
async fn reauthentication(
    settings: &Settings,
    pool: &sqlx::PgPool,
) -> Option<std::sync::Arc<dyn super::Reauthenticate>> {
    let arn = settings.db_secret_arn.as_ref()?;
    let secrets = crate::aws::Secrets::new(&crate::aws::sdk_config(settings).await);
    Some(std::sync::Arc::new(super::rotation::RotatingSecret::new(
        secrets,
        arn.clone(),
        pool.clone(),
        settings.dependency_timeout,
    )))
}

#[cfg(not(feature = "aws"))]
async fn reauthentication(
    _settings: &Settings,
    _pool: &sqlx::PgPool,
) -> Option<std::sync::Arc<dyn super::Reauthenticate>> {
    None
}
