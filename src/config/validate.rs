//! The rules that span several settings, checked once after parsing.

use secrecy::ExposeSecret;

use super::{ConfigError, EmailTransport, Settings, redact_url};
use crate::store::at_rest::{KEK_VARIABLE, Kek, PREVIOUS_KEK_VARIABLE};

/// The shortest outbox poll interval accepted.
const MIN_OUTBOX_POLL: std::time::Duration = std::time::Duration::from_millis(10);

impl Settings {
    /// The rules that span several settings, including the deployed-environment refusal.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let refuse = |rule: &str| Err(ConfigError(rule.to_owned()));
        if self.access_token_ttl.is_zero() {
            return refuse("AIDLC_ACCESS_TOKEN_TTL_SECONDS must be positive");
        }
        if self.jwt_issuer.as_ref().is_some_and(String::is_empty) || self.jwt_audience.is_empty() {
            return refuse("AIDLC_JWT_ISSUER and AIDLC_JWT_AUDIENCE must not be empty");
        }
        if self
            .session_idle_timeout
            .is_some_and(|idle| idle < self.access_token_ttl)
        {
            return refuse(
                "AIDLC_SESSION_IDLE_TIMEOUT_SECONDS must be at least the access-token lifetime \
                 (a session in use is refreshed only that often)",
            );
        }
        if self.code_ttl.is_zero() || self.session_ttl.is_zero() {
            return refuse("AIDLC_CODE_TTL_SECONDS and AIDLC_SESSION_TTL_SECONDS must be positive");
        }
        if self.pending_account_ttl < self.code_ttl {
            return refuse(
                "AIDLC_PENDING_ACCOUNT_TTL_SECONDS must be at least the code lifetime \
                 (an account must outlive the code that verifies it)",
            );
        }
        if self.max_code_attempts == 0 || self.max_sessions_per_user == 0 {
            return refuse(
                "AIDLC_MAX_CODE_ATTEMPTS and AIDLC_MAX_SESSIONS_PER_USER must be at least 1",
            );
        }
        if self
            .introspection_secret
            .as_ref()
            .is_some_and(|s| s.expose_secret().len() < 16)
        {
            return refuse("AIDLC_INTROSPECTION_SECRET must have at least 16 characters");
        }
        self.validate_secrets()?;
        if self.database_kind().is_none() {
            return refuse("DATABASE_URL must start with postgres://, postgresql:// or sqlite:");
        }
        if self.dependency_timeout.is_zero() {
            return refuse("AIDLC_DEPENDENCY_TIMEOUT_MS must be positive");
        }
        if self.outbox_poll < MIN_OUTBOX_POLL {
            // Every instance reads the outbox this often: a tiny value is a busy loop.
            return refuse("AIDLC_OUTBOX_POLL_MS must be at least 10");
        }
        if self.database_max_connections == 0 {
            return refuse("AIDLC_DATABASE_MAX_CONNECTIONS must be at least 1");
        }
        let a = self.argon2;
        if argon2::Params::new(a.memory_kib, a.iterations, a.parallelism, None).is_err() {
            return refuse("AIDLC_ARGON2_* parameters are out of range");
        }
        if self.environment.is_deployed() && !self.allow_embedded_stores {
            let env = format!("{:?}", self.environment).to_lowercase();
            if self.uses_sqlite() {
                return Err(ConfigError(format!(
                    "refusing to start: ENVIRONMENT={env} needs DATABASE_URL=postgres://… \
                     (SQLite is for development; set ALLOW_EMBEDDED_STORES=true only as an emergency fallback)"
                )));
            }
            if self.redis_url.is_none() {
                return Err(ConfigError(format!(
                    "refusing to start: ENVIRONMENT={env} needs REDIS_URL \
                     (codes must survive restarts and be shared by every task; \
                     set ALLOW_EMBEDDED_STORES=true only as an emergency fallback)"
                )));
            }
        }
        self.validate_tls()?;
        if self.environment.is_deployed() && self.jwt_issuer.is_none() {
            return refuse(
                "AIDLC_JWT_ISSUER is required in staging and production: the URL other services \
                 reach this one at (it is the iss of every token and the base of discovery)",
            );
        }
        self.validate_keys_at_rest()?;
        self.runtime.validate()?;
        self.validate_mail()
    }

    /// The key-encryption keys: 32 bytes in base64 when set; the current one required when
    /// deployed (a generated file would differ per task and vanish with it).
    fn validate_keys_at_rest(&self) -> Result<(), ConfigError> {
        let keys = [
            (KEK_VARIABLE, &self.key_encryption_key),
            (PREVIOUS_KEK_VARIABLE, &self.key_encryption_key_previous),
        ];
        for (variable, value) in keys {
            if value
                .as_ref()
                .is_some_and(|v| Kek::from_base64(v.expose_secret()).is_none())
            {
                // The value is never echoed: it is (or is meant to be) a secret.
                return Err(ConfigError(format!(
                    "{variable} must be 32 bytes in base64 (e.g. `openssl rand -base64 32`)"
                )));
            }
        }
        if self.environment.is_deployed() && self.key_encryption_key.is_none() {
            return Err(ConfigError(format!(
                "{KEK_VARIABLE} is required in staging and production: 32 random bytes in \
                 base64 (from Secrets Manager), the key every private key and server secret is \
                 stored sealed under"
            )));
        }
        Ok(())
    }

    /// Where credentials come from: one source for the database (which of two is meant would
    /// be a guess), and the Secrets Manager settings only in a build that can read them.
    fn validate_secrets(&self) -> Result<(), ConfigError> {
        let refuse = |rule: &str| Err(ConfigError(rule.to_owned()));
        let sources = [
            self.database_url_is_set(),
            self.db_secret.is_some(),
            self.db_secret_arn.is_some(),
        ];
        if sources.into_iter().filter(|set| *set).count() > 1 {
            return refuse(
                "set only one of DATABASE_URL, AIDLC_DB_SECRET and AIDLC_DB_SECRET_ARN: \
                 which one is meant would be a guess",
            );
        }
        if self.redis_auth_secret_arn.is_some() && self.redis_url.is_none() {
            return refuse("AIDLC_REDIS_AUTH_SECRET_ARN needs REDIS_URL");
        }
        if !cfg!(feature = "aws") {
            for (set, name) in [
                (self.db_secret_arn.is_some(), "AIDLC_DB_SECRET_ARN"),
                (
                    self.redis_auth_secret_arn.is_some(),
                    "AIDLC_REDIS_AUTH_SECRET_ARN",
                ),
                (
                    self.email_transport == EmailTransport::Ses,
                    "AIDLC_EMAIL_TRANSPORT=ses",
                ),
            ] {
                if set {
                    return Err(ConfigError(format!(
                        "{name} needs the AWS SDK, which this build left out: build with \
                         `cargo build --release --features aws`"
                    )));
                }
            }
        }
        Ok(())
    }

    /// The mail transport's rules: `smtp` needs a URL lettre can read; deployed environments
    /// refuse `log` (it writes codes to the log) unless explicitly allowed.
    fn validate_mail(&self) -> Result<(), ConfigError> {
        if self.smtp_timeout.is_zero() {
            return Err(ConfigError(
                "AIDLC_SMTP_TIMEOUT_SECONDS must be positive".to_owned(),
            ));
        }
        if let Some(raw) = &self.smtp_url {
            let parsed = url::Url::parse(raw.expose_secret());
            if !parsed.is_ok_and(|u| matches!(u.scheme(), "smtp" | "smtps") && u.has_host()) {
                return Err(ConfigError(format!(
                    "AIDLC_SMTP_URL {} must be smtp://host:port or smtps://host:port",
                    redact_url(raw.expose_secret())
                )));
            }
        }
        match self.email_transport {
            EmailTransport::Smtp if self.smtp_url.is_none() => Err(ConfigError(
                "AIDLC_EMAIL_TRANSPORT=smtp needs AIDLC_SMTP_URL".to_owned(),
            )),
            EmailTransport::Log if self.environment.is_deployed() && !self.allow_log_email => {
                Err(ConfigError(
                    "refusing to start: the log mail transport writes codes to the log; set \
                     AIDLC_EMAIL_TRANSPORT=smtp (with AIDLC_SMTP_URL) or ses, or \
                     AIDLC_ALLOW_LOG_EMAIL=true to accept that"
                        .to_owned(),
                ))
            }
            _ => Ok(()),
        }
    }
}
