//! PostgreSQL: pool, TLS, statement timeout, migrations; the URL from `DATABASE_URL` or an RDS
//! secret.

use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use secrecy::{ExposeSecret, SecretString};
use sqlx::postgres::{PgConnectOptions, PgPoolOptions, PgSslMode};

use super::{SqlPool, SqlStore};
use crate::config::{DatabaseCa, DatabaseTls, Settings, redact_url};
use crate::store::session_cache::SessionCache;

/// Connects, checks the server answers, and applies `migrations/postgres`. With
/// `AIDLC_DB_SECRET_ARN` the pool reads that secret again when the password is rejected.
pub(crate) async fn connect(settings: &Settings) -> anyhow::Result<SqlStore> {
    let timeout = settings.dependency_timeout;
    let tls = settings.database_tls();
    if settings.weak_database_tls() {
        // Allowed explicitly (AIDLC_ALLOW_WEAK_DATABASE_TLS); still worth a line at every start.
        tracing::warn!(
            database_tls = tls.as_str(),
            "PostgreSQL TLS is weaker than verify-full: the database's identity is not fully \
             verified, so a network attacker could read or change what the service stores"
        );
    }
    let url = database_url(settings).await?;
    let options = connect_options(&url, timeout, tls, &settings.database_ca())?;
    let url = url.expose_secret();
    let pool = PgPoolOptions::new()
        .max_connections(settings.database_max_connections)
        .min_connections(1)
        .acquire_timeout(timeout)
        .connect_with(options)
        .await
        .map_err(|e| explain(e, tls))
        .with_context(|| {
            format!(
                "connecting to PostgreSQL at {} (TLS {})",
                redact_url(url),
                tls.as_str()
            )
        })?;
    sqlx::migrate!("./migrations/postgres")
        .run(&pool)
        .await
        .context("applying PostgreSQL migrations")?;
    tracing::info!(database = %redact_url(url), database_tls = tls.as_str(), "DB connection URL created: PostgreSQL connected and migrated");
    let session_cache = settings
        .session_cache_ttl
        .filter(|_| settings.session_cache_entries > 0)
        .map(|ttl| Arc::new(SessionCache::new(ttl, settings.session_cache_entries)));
    Ok(SqlStore {
        reauth: reauthentication(settings, &pool).await,
        pool: SqlPool::Postgres(pool),
        timeout,
        session_cache,
    })
}

/// Sets the TLS mode always (sqlx would otherwise fall back to an unverified `prefer`) and,
/// when the certificate is verified, the CA read once now: a file's problems show at start-up.
fn with_tls(
    options: PgConnectOptions,
    tls: DatabaseTls,
    ca: &DatabaseCa,
) -> anyhow::Result<PgConnectOptions> {
    let options = options.ssl_mode(match tls {
        DatabaseTls::Disable => PgSslMode::Disable,
        DatabaseTls::Prefer => PgSslMode::Prefer,
        DatabaseTls::Require => PgSslMode::Require,
        DatabaseTls::VerifyCa => PgSslMode::VerifyCa,
        DatabaseTls::VerifyFull => PgSslMode::VerifyFull,
    });
    if !tls.verifies() {
        return Ok(options);
    }
    let pem = match ca {
        DatabaseCa::BuiltInRds => crate::tls::RDS_CA_BUNDLE.to_vec(),
        DatabaseCa::File { path, from } => crate::tls::read_ca_file(path, from)?,
    };
    Ok(options.ssl_root_cert_from_pem(pem))
}

/// The connection error, with what to change when it is a TLS mismatch: the fix is a setting,
/// never a weaker mode chosen for the operator.
fn explain(error: sqlx::Error, tls: DatabaseTls) -> anyhow::Error {
    let text = error.to_string();
    let hint = if let sqlx::Error::Database(db) = &error
        && db.message().contains("no encryption")
    {
        Some(
            "the server requires TLS: set AIDLC_DATABASE_TLS=verify-full (the Amazon RDS CA is \
             built in; AIDLC_DATABASE_CA_FILE names another CA bundle), or sslmode=verify-full \
             in DATABASE_URL",
        )
    } else if text.contains("UnknownIssuer") || text.contains("BadSignature") {
        Some(
            "the server's certificate is not signed by a CA in the bundle it is verified \
             against: AIDLC_DATABASE_CA_FILE (default: the Amazon RDS bundle built in)",
        )
    } else if text.contains("NotValidForName") || text.contains("not valid for name") {
        Some(
            "the server's certificate does not name the host in DATABASE_URL: connect by a \
             name the certificate holds (for RDS, the instance endpoint)",
        )
    } else if text.contains("does not support TLS") && tls > DatabaseTls::Prefer {
        Some("the server does not offer TLS at all: enable TLS on the server")
    } else {
        None
    };
    match hint {
        Some(hint) => anyhow::Error::new(error).context(hint),
        None => error.into(),
    }
}

/// The pool's options for `url`: the service's name, a statement timeout, and TLS.
pub(super) fn connect_options(
    url: &SecretString,
    timeout: Duration,
    tls: DatabaseTls,
    ca: &DatabaseCa,
) -> anyhow::Result<PgConnectOptions> {
    // The server abandons a statement a little after we stop waiting for it, so a hung
    // query does not hold a pooled connection forever.
    let statement_timeout_ms = timeout.as_millis().saturating_mul(2).to_string();
    let options = PgConnectOptions::from_str(url.expose_secret())
        .context("DATABASE_URL is not a valid PostgreSQL URL")?
        .application_name("aidlc-auth")
        .options([("statement_timeout", statement_timeout_ms.as_str())]);
    with_tls(options, tls, ca)
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
        settings.database_tls(),
        settings.database_ca(),
    )))
}

#[cfg(not(feature = "aws"))]
async fn reauthentication(
    _settings: &Settings,
    _pool: &sqlx::PgPool,
) -> Option<std::sync::Arc<dyn super::Reauthenticate>> {
    None
}
