//! TLS to PostgreSQL and Redis: the mode and CA a connection uses, resolved once from the
//! settings and the URLs, and the rules that keep staging and production verified.
//!
//! PostgreSQL: `AIDLC_DATABASE_TLS` wins over the URL's `sslmode`, which wins over the
//! environment's default (`prefer` in development, `verify-full` deployed); the CA is
//! `AIDLC_DATABASE_CA_FILE`, else the URL's `sslrootcert`, else the Amazon RDS bundle built in.

use std::path::PathBuf;

use secrecy::ExposeSecret;

use super::{ConfigError, DatabaseKind, Settings};

/// How PostgreSQL connections use TLS (libpq's `sslmode` values, less `allow`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, clap::ValueEnum)]
pub enum DatabaseTls {
    /// Never TLS.
    Disable,
    /// TLS when the server offers it, unverified (libpq's and sqlx's default).
    Prefer,
    /// TLS always, the certificate not checked.
    Require,
    /// TLS, the certificate checked against the CA, not the host name.
    VerifyCa,
    /// TLS, the certificate checked against the CA and the host name (the deployed default).
    VerifyFull,
}

impl DatabaseTls {
    /// The `sslmode` value.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Disable => "disable",
            Self::Prefer => "prefer",
            Self::Require => "require",
            Self::VerifyCa => "verify-ca",
            Self::VerifyFull => "verify-full",
        }
    }

    /// True when the server's certificate is checked against a CA.
    pub fn verifies(self) -> bool {
        self >= Self::VerifyCa
    }

    fn from_sslmode(value: &str) -> Option<Self> {
        Some(match value.to_ascii_lowercase().as_str() {
            "disable" => Self::Disable,
            "prefer" => Self::Prefer,
            "require" => Self::Require,
            "verify-ca" => Self::VerifyCa,
            "verify-full" => Self::VerifyFull,
            _ => return None,
        })
    }
}

/// The CA bundle PostgreSQL's certificate is checked against.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DatabaseCa {
    /// The Amazon RDS bundle compiled into the binary.
    BuiltInRds,
    /// A PEM file, named by the setting (or URL parameter) it came from.
    File {
        /// The file.
        path: PathBuf,
        /// `AIDLC_DATABASE_CA_FILE` or `DATABASE_URL sslrootcert`, for errors.
        from: &'static str,
    },
}

/// The `sslmode` / `sslrootcert` names sqlx reads from a PostgreSQL URL.
const SSLMODE_KEYS: &[&str] = &["sslmode", "ssl-mode"];
const SSLROOTCERT_KEYS: &[&str] = &["sslrootcert", "ssl-root-cert", "ssl-ca"];

impl Settings {
    /// The TLS mode of PostgreSQL connections: `AIDLC_DATABASE_TLS`, else the URL's
    /// `sslmode`, else `prefer` in development and `verify-full` in staging/production.
    pub fn database_tls(&self) -> DatabaseTls {
        if let Some(mode) = self.database_tls {
            return mode;
        }
        match self
            .url_query(SSLMODE_KEYS)
            .map(|v| DatabaseTls::from_sslmode(&v))
        {
            Some(Some(mode)) => mode,
            // Refused by `validate_tls`; the strict default if it is reached anyway.
            Some(None) => DatabaseTls::VerifyFull,
            None if self.environment.is_deployed() => DatabaseTls::VerifyFull,
            None => DatabaseTls::Prefer,
        }
    }

    /// The CA bundle PostgreSQL's certificate is checked against.
    pub fn database_ca(&self) -> DatabaseCa {
        if let Some(path) = &self.database_ca_file {
            return DatabaseCa::File {
                path: path.clone(),
                from: "AIDLC_DATABASE_CA_FILE",
            };
        }
        match self.url_query(SSLROOTCERT_KEYS) {
            Some(path) => DatabaseCa::File {
                path: PathBuf::from(path),
                from: "DATABASE_URL sslrootcert",
            },
            None => DatabaseCa::BuiltInRds,
        }
    }

    /// True when PostgreSQL connections are weaker than `verify-full` in staging/production
    /// (only with `AIDLC_ALLOW_WEAK_DATABASE_TLS=true`; warned about at every start).
    pub fn weak_database_tls(&self) -> bool {
        self.environment.is_deployed()
            && self.database_kind() == Some(DatabaseKind::Postgres)
            && self.database_tls() != DatabaseTls::VerifyFull
    }

    /// The last value of the first of `keys` in `DATABASE_URL`'s query (sqlx reads them in
    /// order, so the last one wins).
    fn url_query(&self, keys: &[&str]) -> Option<String> {
        let url = url::Url::parse(self.database_url.expose_secret()).ok()?;
        url.query_pairs()
            .filter(|(k, _)| keys.contains(&k.as_ref()))
            .last()
            .map(|(_, v)| v.into_owned())
    }

    /// TLS rules: a known `sslmode`; verify-full in staging/production unless weaker is
    /// allowed explicitly; a Redis CA or token only with a Redis URL.
    pub(super) fn validate_tls(&self) -> Result<(), ConfigError> {
        if let Some(value) = self.url_query(SSLMODE_KEYS)
            && DatabaseTls::from_sslmode(&value).is_none()
        {
            return Err(ConfigError(format!(
                "DATABASE_URL sslmode={value} is not supported: use disable, prefer, require, \
                 verify-ca or verify-full"
            )));
        }
        if self.weak_database_tls() && !self.allow_weak_database_tls {
            let env = format!("{:?}", self.environment).to_lowercase();
            return Err(ConfigError(format!(
                "refusing to start: ENVIRONMENT={env} needs AIDLC_DATABASE_TLS=verify-full \
                 (now {}): the database's certificate and host name must be verified; \
                 set AIDLC_ALLOW_WEAK_DATABASE_TLS=true only to accept weaker TLS",
                self.database_tls().as_str()
            )));
        }
        let rediss = self
            .redis_url
            .as_ref()
            .is_some_and(|u| u.expose_secret().starts_with("rediss://"));
        if self.redis_ca_file.is_some() && !rediss {
            return Err(ConfigError(
                "AIDLC_REDIS_CA_FILE needs a rediss:// REDIS_URL (TLS)".to_owned(),
            ));
        }
        if self.redis_auth_token.is_some() && self.redis_url.is_none() {
            return Err(ConfigError(
                "AIDLC_REDIS_AUTH_TOKEN is set but REDIS_URL is not".to_owned(),
            ));
        }
        Ok(())
    }
}
