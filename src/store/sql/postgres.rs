//! PostgreSQL: pool, TLS, statement timeout, migrations.

use std::str::FromStr;

use anyhow::Context;
use secrecy::ExposeSecret;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions, PgSslMode};

use super::{SqlPool, SqlStore};
use crate::config::{DatabaseCa, DatabaseTls, Settings, redact_url};

/// Connects, checks the server answers, and applies `migrations/postgres`.
pub(crate) async fn connect(settings: &Settings) -> anyhow::Result<SqlStore> {
    let url = settings.database_url.expose_secret();
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
    // The server abandons a statement a little after we stop waiting for it, so a hung
    // query does not hold a pooled connection forever.
    let statement_timeout_ms = timeout.as_millis().saturating_mul(2).to_string();
    let options = PgConnectOptions::from_str(url)
        .context("DATABASE_URL is not a valid PostgreSQL URL")?
        .application_name("aidlc-auth")
        .options([("statement_timeout", statement_timeout_ms.as_str())]);
    let options = with_tls(options, tls, &settings.database_ca())?;
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
    Ok(SqlStore {
        pool: SqlPool::Postgres(pool),
        timeout,
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
