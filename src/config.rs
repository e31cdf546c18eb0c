//! Settings: built-in defaults overridden by the environment. The seed's names stay as they
//! are (`DATABASE_URL`, `REDIS_URL`, `ENVIRONMENT`, `PORT`, `AWS_DEFAULT_REGION`); everything
//! else is `AIDLC_*`, and an unknown `AIDLC_*` variable is warned about (a typo is not silent).

use std::collections::HashMap;
use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;
use std::time::Duration;

use secrecy::{ExposeSecret, SecretString};

/// Where the service runs; staging and production refuse embedded stores.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Environment {
    /// A laptop: pretty logs, SQLite allowed.
    Development,
    /// Pre-production on AWS.
    Staging,
    /// Production on AWS.
    Production,
}

impl Environment {
    /// True for staging and production.
    pub fn is_deployed(self) -> bool {
        !matches!(self, Self::Development)
    }
}

impl FromStr for Environment {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().as_str() {
            "development" | "dev" | "local" => Ok(Self::Development),
            "staging" => Ok(Self::Staging),
            "production" | "prod" => Ok(Self::Production),
            other => Err(format!(
                "ENVIRONMENT must be development, staging or production, not {other:?}"
            )),
        }
    }
}

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    /// Human-readable, for a terminal.
    Pretty,
    /// One JSON object per line, for CloudWatch.
    Json,
}

/// Where mail goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EmailTransport {
    /// Printed to the log (development only; the one place a code is written out).
    Log,
}

/// Argon2id cost parameters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Argon2Params {
    /// Memory in KiB (OWASP: 19456).
    pub memory_kib: u32,
    /// Passes (OWASP: 2).
    pub iterations: u32,
    /// Lanes (OWASP: 1).
    pub parallelism: u32,
}

impl Default for Argon2Params {
    fn default() -> Self {
        Self {
            memory_kib: 19_456,
            iterations: 2,
            parallelism: 1,
        }
    }
}

/// Everything the service is configured with.
#[derive(Clone)]
pub struct Settings {
    /// development | staging | production.
    pub environment: Environment,
    /// Address to bind (0.0.0.0).
    pub host: IpAddr,
    /// Port to bind (8001; 0 picks a free one).
    pub port: u16,
    /// `postgres://…` or `sqlite:…`.
    pub database_url: SecretString,
    /// When set, codes and sessions live in Redis.
    pub redis_url: Option<SecretString>,
    /// Prefix of every Redis key (lets several deployments share one Redis).
    pub redis_key_prefix: String,
    /// The seed's emergency fallback: allow SQLite / no Redis in staging and production.
    pub allow_embedded_stores: bool,
    /// How long a verification code lives (900 s).
    pub code_ttl: Duration,
    /// How long a session lives (86400 s).
    pub session_ttl: Duration,
    /// Minimum gap between two codes sent to one address for one purpose (60 s).
    pub resend_cooldown: Duration,
    /// Wrong tries after which a code is dead (5).
    pub max_code_attempts: u32,
    /// Argon2id cost.
    pub argon2: Argon2Params,
    /// Upper bound on any one call to PostgreSQL or Redis (1 s).
    pub dependency_timeout: Duration,
    /// SQL pool size.
    pub database_max_connections: u32,
    /// How often expired SQL rows are deleted.
    pub sweep_interval: Duration,
    /// Log line format.
    pub log_format: LogFormat,
    /// Mail transport.
    pub email_transport: EmailTransport,
    /// The From address of outgoing mail.
    pub email_from: String,
    /// `iss` of access tokens, and the base of the discovery URLs.
    pub jwt_issuer: String,
    /// `aud` of access tokens.
    pub jwt_audience: String,
    /// Access-token lifetime (900 s).
    pub access_token_ttl: Duration,
    /// How long the immediate predecessor of a refresh token still yields its successor (10 s).
    pub refresh_grace: Duration,
    /// Sessions unused (no refresh) for this long end; None: only the absolute lifetime counts.
    pub session_idle_timeout: Option<Duration>,
    /// Signing keys older than this are rotated automatically; None: only by `keys rotate`.
    pub key_rotation_interval: Option<Duration>,
    /// How often an instance re-reads the signing keys (it also does on an unknown `kid`).
    pub key_reload_interval: Duration,
    /// Pending accounts not registered again or verified for this long are deleted (7 days).
    pub pending_account_ttl: Duration,
    /// Live sessions one user may hold; a new one ends the oldest (20).
    pub max_sessions_per_user: u32,
    /// When set, `POST /api/auth/introspect` answers only callers presenting it.
    pub introspection_secret: Option<SecretString>,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            environment: Environment::Development,
            host: IpAddr::from([0, 0, 0, 0]),
            port: 8001,
            database_url: SecretString::from("sqlite://data/aidlc-auth.db"),
            redis_url: None,
            redis_key_prefix: "aidlc:".to_owned(),
            allow_embedded_stores: false,
            code_ttl: Duration::from_secs(900),
            session_ttl: Duration::from_secs(86_400),
            resend_cooldown: Duration::from_secs(60),
            max_code_attempts: 5,
            argon2: Argon2Params::default(),
            dependency_timeout: Duration::from_secs(1),
            database_max_connections: 10,
            sweep_interval: Duration::from_secs(60),
            log_format: LogFormat::Pretty,
            email_transport: EmailTransport::Log,
            email_from: "AIDLC <no-reply@aidlc.local>".to_owned(),
            jwt_issuer: "http://localhost:8001".to_owned(),
            jwt_audience: "aidlc".to_owned(),
            access_token_ttl: Duration::from_secs(900),
            refresh_grace: Duration::from_secs(10),
            session_idle_timeout: None,
            key_rotation_interval: Some(Duration::from_secs(30 * 86_400)),
            key_reload_interval: Duration::from_secs(60),
            pending_account_ttl: Duration::from_secs(7 * 86_400),
            max_sessions_per_user: 20,
            introspection_secret: None,
        }
    }
}

/// A setting that could not be read; the message names the variable.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct ConfigError(String);

/// Every `AIDLC_*` variable this service reads.
const KNOWN_AIDLC_VARS: &[&str] = &[
    "AIDLC_REDIS_KEY_PREFIX",
    "AIDLC_CODE_TTL_SECONDS",
    "AIDLC_SESSION_TTL_SECONDS",
    "AIDLC_RESEND_COOLDOWN_SECONDS",
    "AIDLC_MAX_CODE_ATTEMPTS",
    "AIDLC_ARGON2_MEMORY_KIB",
    "AIDLC_ARGON2_ITERATIONS",
    "AIDLC_ARGON2_PARALLELISM",
    "AIDLC_DEPENDENCY_TIMEOUT_MS",
    "AIDLC_DATABASE_MAX_CONNECTIONS",
    "AIDLC_SWEEP_INTERVAL_SECONDS",
    "AIDLC_LOG_FORMAT",
    "AIDLC_EMAIL_TRANSPORT",
    "AIDLC_EMAIL_FROM",
    "AIDLC_HOST",
    "AIDLC_JWT_ISSUER",
    "AIDLC_JWT_AUDIENCE",
    "AIDLC_ACCESS_TOKEN_TTL_SECONDS",
    "AIDLC_REFRESH_GRACE_SECONDS",
    "AIDLC_SESSION_IDLE_TIMEOUT_SECONDS",
    "AIDLC_KEY_ROTATION_SECONDS",
    "AIDLC_KEY_RELOAD_SECONDS",
    "AIDLC_PENDING_ACCOUNT_TTL_SECONDS",
    "AIDLC_MAX_SESSIONS_PER_USER",
    "AIDLC_INTROSPECTION_SECRET",
];

impl Settings {
    /// Reads the process environment.
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_vars(std::env::vars())
    }

    /// Reads settings from `vars` over the defaults; pure, so tests need not touch the
    /// process environment.
    pub fn from_vars(
        vars: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Self, ConfigError> {
        let vars: HashMap<String, String> = vars
            .into_iter()
            .filter(|(_, v)| !v.trim().is_empty())
            .collect();
        let get = |name: &str| vars.get(name).map(|v| v.trim().to_owned());
        let d = Self::default();

        let environment = match get("ENVIRONMENT") {
            Some(v) => v.parse().map_err(ConfigError)?,
            None => d.environment,
        };
        let log_format = match get("AIDLC_LOG_FORMAT").as_deref() {
            None if environment.is_deployed() => LogFormat::Json,
            None => LogFormat::Pretty,
            Some("json") => LogFormat::Json,
            Some("pretty") => LogFormat::Pretty,
            Some(other) => {
                return Err(ConfigError(format!(
                    "AIDLC_LOG_FORMAT must be json or pretty, not {other:?}"
                )));
            }
        };
        let email_transport = match get("AIDLC_EMAIL_TRANSPORT").as_deref() {
            None | Some("log") => EmailTransport::Log,
            Some(other) => {
                return Err(ConfigError(format!(
                    "AIDLC_EMAIL_TRANSPORT must be log, not {other:?}"
                )));
            }
        };
        let settings = Self {
            environment,
            host: parse_or(&vars, "AIDLC_HOST", d.host)?,
            port: parse_or(&vars, "PORT", d.port)?,
            database_url: get("DATABASE_URL").map_or(d.database_url, SecretString::from),
            redis_url: get("REDIS_URL").map(SecretString::from),
            redis_key_prefix: get("AIDLC_REDIS_KEY_PREFIX").unwrap_or(d.redis_key_prefix),
            allow_embedded_stores: parse_or(&vars, "ALLOW_EMBEDDED_STORES", false)?,
            code_ttl: seconds_or(&vars, "AIDLC_CODE_TTL_SECONDS", d.code_ttl)?,
            session_ttl: seconds_or(&vars, "AIDLC_SESSION_TTL_SECONDS", d.session_ttl)?,
            resend_cooldown: seconds_or(&vars, "AIDLC_RESEND_COOLDOWN_SECONDS", d.resend_cooldown)?,
            max_code_attempts: parse_or(&vars, "AIDLC_MAX_CODE_ATTEMPTS", d.max_code_attempts)?,
            argon2: Argon2Params {
                memory_kib: parse_or(&vars, "AIDLC_ARGON2_MEMORY_KIB", d.argon2.memory_kib)?,
                iterations: parse_or(&vars, "AIDLC_ARGON2_ITERATIONS", d.argon2.iterations)?,
                parallelism: parse_or(&vars, "AIDLC_ARGON2_PARALLELISM", d.argon2.parallelism)?,
            },
            dependency_timeout: Duration::from_millis(parse_or(
                &vars,
                "AIDLC_DEPENDENCY_TIMEOUT_MS",
                1000u64,
            )?),
            database_max_connections: parse_or(
                &vars,
                "AIDLC_DATABASE_MAX_CONNECTIONS",
                d.database_max_connections,
            )?,
            sweep_interval: seconds_or(&vars, "AIDLC_SWEEP_INTERVAL_SECONDS", d.sweep_interval)?,
            log_format,
            email_transport,
            email_from: get("AIDLC_EMAIL_FROM").unwrap_or(d.email_from),
            jwt_issuer: get("AIDLC_JWT_ISSUER")
                .map(|v| v.trim_end_matches('/').to_owned())
                .unwrap_or(d.jwt_issuer),
            jwt_audience: get("AIDLC_JWT_AUDIENCE").unwrap_or(d.jwt_audience),
            access_token_ttl: seconds_or(
                &vars,
                "AIDLC_ACCESS_TOKEN_TTL_SECONDS",
                d.access_token_ttl,
            )?,
            refresh_grace: seconds_or(&vars, "AIDLC_REFRESH_GRACE_SECONDS", d.refresh_grace)?,
            session_idle_timeout: optional_seconds(
                &vars,
                "AIDLC_SESSION_IDLE_TIMEOUT_SECONDS",
                d.session_idle_timeout,
            )?,
            key_rotation_interval: optional_seconds(
                &vars,
                "AIDLC_KEY_ROTATION_SECONDS",
                d.key_rotation_interval,
            )?,
            key_reload_interval: seconds_or(
                &vars,
                "AIDLC_KEY_RELOAD_SECONDS",
                d.key_reload_interval,
            )?,
            pending_account_ttl: seconds_or(
                &vars,
                "AIDLC_PENDING_ACCOUNT_TTL_SECONDS",
                d.pending_account_ttl,
            )?,
            max_sessions_per_user: parse_or(
                &vars,
                "AIDLC_MAX_SESSIONS_PER_USER",
                d.max_sessions_per_user,
            )?,
            introspection_secret: get("AIDLC_INTROSPECTION_SECRET").map(SecretString::from),
        };
        settings.validate()?;
        Ok(settings)
    }

    /// Names of `AIDLC_*` variables in `vars` that this service does not read.
    pub fn unknown_variables(vars: impl IntoIterator<Item = (String, String)>) -> Vec<String> {
        let mut unknown: Vec<String> = vars
            .into_iter()
            .map(|(k, _)| k)
            .filter(|k| k.starts_with("AIDLC_") && !KNOWN_AIDLC_VARS.contains(&k.as_str()))
            .collect();
        unknown.sort();
        unknown
    }

    /// The rules that span several settings, including the deployed-environment refusal.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.access_token_ttl.is_zero() {
            return Err(ConfigError(
                "AIDLC_ACCESS_TOKEN_TTL_SECONDS must be positive".into(),
            ));
        }
        if self.jwt_issuer.is_empty() || self.jwt_audience.is_empty() {
            return Err(ConfigError(
                "AIDLC_JWT_ISSUER and AIDLC_JWT_AUDIENCE must not be empty".into(),
            ));
        }
        if self
            .session_idle_timeout
            .is_some_and(|idle| idle < self.access_token_ttl)
        {
            return Err(ConfigError(
                "AIDLC_SESSION_IDLE_TIMEOUT_SECONDS must be at least the access-token lifetime \
                 (a session in use is refreshed only that often)"
                    .into(),
            ));
        }
        if self.code_ttl.is_zero() || self.session_ttl.is_zero() {
            return Err(ConfigError(
                "AIDLC_CODE_TTL_SECONDS and AIDLC_SESSION_TTL_SECONDS must be positive".into(),
            ));
        }
        if self.max_code_attempts == 0 {
            return Err(ConfigError(
                "AIDLC_MAX_CODE_ATTEMPTS must be at least 1".into(),
            ));
        }
        if self.pending_account_ttl < self.code_ttl {
            return Err(ConfigError(
                "AIDLC_PENDING_ACCOUNT_TTL_SECONDS must be at least the code lifetime \
                 (an account must outlive the code that verifies it)"
                    .into(),
            ));
        }
        if self.max_sessions_per_user == 0 {
            return Err(ConfigError(
                "AIDLC_MAX_SESSIONS_PER_USER must be at least 1".into(),
            ));
        }
        if self
            .introspection_secret
            .as_ref()
            .is_some_and(|s| s.expose_secret().len() < 16)
        {
            return Err(ConfigError(
                "AIDLC_INTROSPECTION_SECRET must have at least 16 characters".into(),
            ));
        }
        if self.dependency_timeout.is_zero() {
            return Err(ConfigError(
                "AIDLC_DEPENDENCY_TIMEOUT_MS must be positive".into(),
            ));
        }
        if self.database_max_connections == 0 {
            return Err(ConfigError(
                "AIDLC_DATABASE_MAX_CONNECTIONS must be at least 1".into(),
            ));
        }
        if argon2::Params::new(
            self.argon2.memory_kib,
            self.argon2.iterations,
            self.argon2.parallelism,
            None,
        )
        .is_err()
        {
            return Err(ConfigError(
                "AIDLC_ARGON2_* parameters are out of range".into(),
            ));
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
                     (codes and sessions must survive restarts and be shared by every task; \
                     set ALLOW_EMBEDDED_STORES=true only as an emergency fallback)"
                )));
            }
        }
        Ok(())
    }

    /// True when `DATABASE_URL` names a SQLite database.
    pub fn uses_sqlite(&self) -> bool {
        self.database_url.expose_secret().starts_with("sqlite:")
    }
}

impl fmt::Debug for Settings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Settings")
            .field("environment", &self.environment)
            .field("host", &self.host)
            .field("port", &self.port)
            .field(
                "database_url",
                &redact_url(self.database_url.expose_secret()),
            )
            .field(
                "redis_url",
                &self
                    .redis_url
                    .as_ref()
                    .map(|u| redact_url(u.expose_secret())),
            )
            .field("redis_key_prefix", &self.redis_key_prefix)
            .field("allow_embedded_stores", &self.allow_embedded_stores)
            .field("code_ttl", &self.code_ttl)
            .field("session_ttl", &self.session_ttl)
            .field("resend_cooldown", &self.resend_cooldown)
            .field("max_code_attempts", &self.max_code_attempts)
            .field("argon2", &self.argon2)
            .field("dependency_timeout", &self.dependency_timeout)
            .field("database_max_connections", &self.database_max_connections)
            .field("sweep_interval", &self.sweep_interval)
            .field("log_format", &self.log_format)
            .field("email_transport", &self.email_transport)
            .field("email_from", &self.email_from)
            .field("jwt_issuer", &self.jwt_issuer)
            .field("jwt_audience", &self.jwt_audience)
            .field("access_token_ttl", &self.access_token_ttl)
            .field("refresh_grace", &self.refresh_grace)
            .field("session_idle_timeout", &self.session_idle_timeout)
            .field("key_rotation_interval", &self.key_rotation_interval)
            .field("key_reload_interval", &self.key_reload_interval)
            .field("pending_account_ttl", &self.pending_account_ttl)
            .field("max_sessions_per_user", &self.max_sessions_per_user)
            .field(
                "introspection_secret",
                &self.introspection_secret.as_ref().map(|_| "***"),
            )
            .finish()
    }
}

fn parse_or<T: FromStr>(
    vars: &HashMap<String, String>,
    name: &str,
    default: T,
) -> Result<T, ConfigError> {
    match vars.get(name) {
        None => Ok(default),
        Some(raw) => raw
            .trim()
            .parse()
            .map_err(|_| ConfigError(format!("{name} has an invalid value {:?}", raw.trim()))),
    }
}

/// Seconds, where 0 means "off".
fn optional_seconds(
    vars: &HashMap<String, String>,
    name: &str,
    default: Option<Duration>,
) -> Result<Option<Duration>, ConfigError> {
    let secs = parse_or(vars, name, default.map_or(0, |d| d.as_secs()))?;
    Ok((secs > 0).then(|| Duration::from_secs(secs)))
}

fn seconds_or(
    vars: &HashMap<String, String>,
    name: &str,
    default: Duration,
) -> Result<Duration, ConfigError> {
    parse_or(vars, name, default.as_secs()).map(Duration::from_secs)
}

/// Query parameters that carry a credential in a connection URL (libpq's `password`, and the
/// names other drivers use).
const SECRET_QUERY_KEYS: &[&str] = &["password", "pass", "passwd", "pwd", "secret", "token"];

/// The URL with any password, in the user-info part or as a query parameter, replaced by
/// `***`, for logs and errors.
pub fn redact_url(raw: &str) -> String {
    let Ok(mut parsed) = url::Url::parse(raw) else {
        return "<unparseable URL>".to_owned();
    };
    if parsed.password().is_some() {
        let _ = parsed.set_password(Some("***"));
    }
    let secret_query = parsed
        .query_pairs()
        .any(|(k, _)| SECRET_QUERY_KEYS.contains(&k.to_ascii_lowercase().as_str()));
    if secret_query {
        let pairs: Vec<(String, String)> = parsed
            .query_pairs()
            .map(|(k, v)| {
                let hide = SECRET_QUERY_KEYS.contains(&k.to_ascii_lowercase().as_str());
                (
                    k.into_owned(),
                    if hide {
                        "***".to_owned()
                    } else {
                        v.into_owned()
                    },
                )
            })
            .collect();
        parsed.query_pairs_mut().clear().extend_pairs(pairs);
    }
    parsed.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn defaults_match_the_seed() {
        let s = Settings::from_vars(vars(&[])).unwrap();
        assert_eq!(s.port, 8001);
        assert_eq!(s.code_ttl, Duration::from_secs(900));
        assert_eq!(s.session_ttl, Duration::from_secs(86_400));
        assert!(s.uses_sqlite());
    }

    #[test]
    fn staging_refuses_sqlite_and_missing_redis_unless_allowed() {
        let err = Settings::from_vars(vars(&[("ENVIRONMENT", "staging")])).unwrap_err();
        assert!(err.to_string().contains("refusing to start"), "{err}");
        let err = Settings::from_vars(vars(&[
            ("ENVIRONMENT", "production"),
            ("DATABASE_URL", "postgres://u:p@db/aidlc_auth"),
        ]))
        .unwrap_err();
        assert!(err.to_string().contains("REDIS_URL"), "{err}");
        assert!(
            Settings::from_vars(vars(&[
                ("ENVIRONMENT", "staging"),
                ("ALLOW_EMBEDDED_STORES", "true")
            ]))
            .is_ok()
        );
    }

    #[test]
    fn passwords_never_appear_in_debug_or_redacted_urls() {
        let s = Settings::from_vars(vars(&[
            (
                "DATABASE_URL",
                "postgres://postgres:hunter2@db:5432/aidlc_auth",
            ),
            ("REDIS_URL", "rediss://:s3cret@cache:6379"),
        ]))
        .unwrap();
        let shown = format!("{s:?}");
        assert!(
            !shown.contains("hunter2") && !shown.contains("s3cret"),
            "{shown}"
        );
        assert!(
            shown.contains("postgres://postgres:***@db:5432/aidlc_auth"),
            "{shown}"
        );
    }

    #[test]
    fn query_parameter_passwords_are_redacted_too() {
        let shown = redact_url(
            "postgres://db:5432/aidlc_auth?sslmode=verify-full&password=hunter2&PWD=x9y8",
        );
        assert!(
            !shown.contains("hunter2") && !shown.contains("x9y8"),
            "{shown}"
        );
        assert!(shown.contains("sslmode=verify-full"), "{shown}");
        assert!(shown.contains("password=***"), "{shown}");
        let s = Settings::from_vars(vars(&[(
            "DATABASE_URL",
            "postgres://u@db/aidlc_auth?password=hunter2",
        )]))
        .unwrap();
        assert!(!format!("{s:?}").contains("hunter2"));
    }

    #[test]
    fn unknown_aidlc_variables_are_reported() {
        let unknown = Settings::unknown_variables(vars(&[
            ("AIDLC_CODE_TTL_SECOND", "1"),
            ("AIDLC_LOG_FORMAT", "json"),
            ("HOME", "/"),
        ]));
        assert_eq!(unknown, vec!["AIDLC_CODE_TTL_SECOND".to_owned()]);
    }

    #[test]
    fn bad_values_name_their_variable() {
        let err = Settings::from_vars(vars(&[("PORT", "eighty")])).unwrap_err();
        assert!(err.to_string().contains("PORT"));
    }
}
