//! A rotated RDS password picked up without a restart (`--features aws`): when PostgreSQL
//! rejects the password, the secret named by `AIDLC_DB_SECRET_ARN` is read again and the pool
//! connects with what it holds from then on.

use std::time::{Duration, Instant};

use anyhow::Context;
use async_trait::async_trait;
use secrecy::{ExposeSecret, SecretString};
use sqlx::PgPool;

use super::Reauthenticate;
use super::postgres::connect_options;
use crate::aws::Secrets;
use crate::config::{DatabaseCa, DatabaseTls};
use crate::config::{DbSecret, redact_url};

/// The secret is read again at most this often, however many requests meet the rejection.
const MIN_REREAD_INTERVAL: Duration = Duration::from_secs(10);

/// Bound on one read of the secret by a request that is waiting for it.
const REREAD_TIMEOUT: Duration = Duration::from_secs(5);

/// Reads the RDS secret `arn` and builds the PostgreSQL URL from it.
pub(super) async fn read_url(secrets: &Secrets, arn: &str) -> anyhow::Result<SecretString> {
    let json = secrets.read(arn).await?;
    let url = DbSecret::parse(json.expose_secret())
        .and_then(|secret| secret.url())
        .map_err(|why| anyhow::anyhow!("the secret {arn} {why}"))?;
    tracing::info!(database = %redact_url(url.expose_secret()), secret = arn, "database URL built from the secret");
    Ok(url)
}

/// Re-reads the secret into the pool's connect options (rate-limited).
pub(super) struct RotatingSecret {
    secrets: Secrets,
    arn: String,
    pool: PgPool,
    timeout: Duration,
    /// The TLS the pool was built with: a new password changes nothing else.
    tls: DatabaseTls,
    ca: DatabaseCa,
    /// When the secret was last read again; held while reading, so concurrent rejections
    /// wait for one read instead of each making their own.
    last_read: tokio::sync::Mutex<Option<Instant>>,
}

impl RotatingSecret {
    pub(super) fn new(
        secrets: Secrets,
        arn: String,
        pool: PgPool,
        timeout: Duration,
        tls: DatabaseTls,
        ca: DatabaseCa,
    ) -> Self {
        Self {
            secrets,
            arn,
            pool,
            timeout,
            tls,
            ca,
            last_read: tokio::sync::Mutex::new(None),
        }
    }
}

#[async_trait]
impl Reauthenticate for RotatingSecret {
    async fn reauthenticate(&self) -> bool {
        let mut last_read = self.last_read.lock().await;
        if last_read.is_some_and(|at| at.elapsed() < MIN_REREAD_INTERVAL) {
            // Read a moment ago (perhaps while this request waited): try what it installed.
            return true;
        }
        *last_read = Some(Instant::now());
        let read = tokio::time::timeout(REREAD_TIMEOUT, read_url(&self.secrets, &self.arn))
            .await
            .map_err(|_| anyhow::anyhow!("no answer within {REREAD_TIMEOUT:?}"))
            .and_then(|url| url)
            .and_then(|url| connect_options(&url, self.timeout, self.tls, &self.ca))
            .context("reading the database secret again after PostgreSQL rejected the password");
        match read {
            Ok(options) => {
                self.pool.set_connect_options(options);
                tracing::warn!(
                    secret = self.arn,
                    "PostgreSQL rejected the password; new connections use the secret read again"
                );
                true
            }
            Err(e) => {
                tracing::error!(error = format!("{e:#}"), "database credentials not renewed");
                false
            }
        }
    }
}
