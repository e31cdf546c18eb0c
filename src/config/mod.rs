//! Settings, each declared once below: its variable, default and meaning. The environment
//! overrides the defaults (command-line flags override both). The seed's names stay as they are
//! (`DATABASE_URL`, `REDIS_URL`, `ENVIRONMENT`, `PORT`, `AWS_DEFAULT_REGION`); everything else is
//! `AIDLC_*`, and an unknown `AIDLC_*` variable is warned about (a typo is not silent).
//! `aidlc-auth --help` lists them all.

mod db_secret;
mod describe;
mod parse;
mod runtime;
#[cfg(test)]
mod tests;
mod tls;
mod url;
mod validate;

use std::fmt;
use std::net::IpAddr;
use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

use clap::{ArgAction, Args};
use secrecy::{ExposeSecret, SecretString};

pub use self::db_secret::DbSecret;
pub use self::describe::{REQUIRED_WHEN_DEPLOYED, REQUIRED_WHEN_DEPLOYED_DATABASE, SettingInfo};
pub use self::parse::parse;
use self::parse::{db_secret, issuer, millis, off_or_seconds, seconds, secret};
pub use self::runtime::RuntimeSettings;
pub use self::tls::{DatabaseCa, DatabaseTls};
pub use self::url::redact_url;
use crate::domain::{Locale, RateLimit, TrustedProxies};

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
                "must be development, staging or production, not {other:?}"
            )),
        }
    }
}

/// Which SQL database a `DATABASE_URL` names, told by its scheme. The one place that reads it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DatabaseKind {
    /// `postgres://` or `postgresql://`.
    Postgres,
    /// `sqlite:`.
    Sqlite,
}

impl DatabaseKind {
    /// The database `url` names; None when it is neither PostgreSQL nor SQLite.
    pub fn from_url(url: &str) -> Option<Self> {
        if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            Some(Self::Postgres)
        } else if url.starts_with("sqlite:") {
            Some(Self::Sqlite)
        } else {
            None
        }
    }
}

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// Human-readable, for a terminal.
    Pretty,
    /// One JSON object per line, for CloudWatch.
    Json,
}

/// Where mail goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum EmailTransport {
    /// Printed to the log (development; staging and production refuse it unless
    /// `AIDLC_ALLOW_LOG_EMAIL=true`): the one place a code is written out.
    Log,
    /// SMTP to `AIDLC_SMTP_URL` (a mail provider, or SES through its SMTP endpoint).
    Smtp,
    /// Amazon SES v2 `SendEmail` through the AWS SDK (builds with `--features aws` only):
    /// region and credentials from the standard AWS chain (the ECS task role).
    Ses,
}

/// `DATABASE_URL` when it is not set.
pub const DEFAULT_DATABASE_URL: &str = "sqlite://data/aidlc-auth.db";

/// Argon2id cost parameters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Args)]
pub struct Argon2Params {
    /// Argon2id memory in KiB (OWASP: 19456).
    #[arg(
        long = "argon2-memory-kib",
        env = "AIDLC_ARGON2_MEMORY_KIB",
        default_value_t = 19_456
    )]
    pub memory_kib: u32,
    /// Argon2id passes (OWASP: 2).
    #[arg(
        long = "argon2-iterations",
        env = "AIDLC_ARGON2_ITERATIONS",
        default_value_t = 2
    )]
    pub iterations: u32,
    /// Argon2id lanes (OWASP: 1).
    #[arg(
        long = "argon2-parallelism",
        env = "AIDLC_ARGON2_PARALLELISM",
        default_value_t = 1
    )]
    pub parallelism: u32,
}

impl Default for Argon2Params {
    fn default() -> Self {
        Settings::default().argon2
    }
}

/// A duration that 0 switches off. (Spelled with its path so clap takes the whole `Option`
/// from the parser instead of making the argument optional.)
type OffOrSeconds = std::option::Option<Duration>;

/// Everything the service is configured with.
#[derive(Clone, Args)]
pub struct Settings {
    /// development | staging | production (staging and production refuse embedded stores).
    #[arg(long, env = "ENVIRONMENT", default_value = "development", help_heading = REQUIRED_WHEN_DEPLOYED)]
    pub environment: Environment,
    /// Listening address (default: 127.0.0.1 in development, where codes are printed to the
    /// log; 0.0.0.0 in staging/production).
    #[arg(long, env = "AIDLC_HOST")]
    pub host: Option<IpAddr>,
    /// Listening port (0 picks a free one).
    #[arg(long, env = "PORT", default_value_t = 8001)]
    pub port: u16,
    /// `postgres://user:pass@host:5432/db` or `sqlite://path` (TLS: `AIDLC_DATABASE_TLS`, or
    /// `sslmode`/`sslrootcert` in the URL). Read it through [`Settings::database_url_or_secret`]:
    /// it is not used when `AIDLC_DB_SECRET` or `AIDLC_DB_SECRET_ARN` is set (both at once are
    /// refused).
    #[arg(long, env = "DATABASE_URL", default_value = DEFAULT_DATABASE_URL, value_parser = secret, hide_default_value = false, help_heading = REQUIRED_WHEN_DEPLOYED_DATABASE)]
    pub database_url: SecretString,
    /// The RDS secret's JSON (`username`, `password`, `host`, `port`, `dbname`, `engine`), as
    /// ECS injects it: the PostgreSQL URL is built from it instead of `DATABASE_URL`.
    #[arg(long, env = "AIDLC_DB_SECRET", value_parser = db_secret, help_heading = REQUIRED_WHEN_DEPLOYED_DATABASE)]
    pub db_secret: Option<DbSecret>,
    /// (`--features aws`) ARN of the RDS secret in Secrets Manager: read at start-up, and read
    /// again when PostgreSQL rejects the password (a rotation), instead of `DATABASE_URL`.
    #[arg(long, env = "AIDLC_DB_SECRET_ARN", help_heading = REQUIRED_WHEN_DEPLOYED_DATABASE)]
    pub db_secret_arn: Option<String>,
    /// (`--features aws`) ARN of the Secrets Manager secret holding the Redis AUTH token
    /// (plain text, or JSON with a `token`/`password` field), read at start-up.
    #[arg(long, env = "AIDLC_REDIS_AUTH_SECRET_ARN")]
    pub redis_auth_secret_arn: Option<String>,
    /// TLS to PostgreSQL: disable | prefer | require | verify-ca | verify-full (default: the
    /// URL's `sslmode` if any, else `prefer` in development and `verify-full` in
    /// staging/production). Overrides the URL's `sslmode`.
    #[arg(long, env = "AIDLC_DATABASE_TLS")]
    pub database_tls: Option<DatabaseTls>,
    /// PEM CA bundle PostgreSQL's certificate is verified against (default: the URL's
    /// `sslrootcert` if any, else the Amazon RDS bundle built into the binary).
    #[arg(long, env = "AIDLC_DATABASE_CA_FILE")]
    pub database_ca_file: Option<PathBuf>,
    /// Lets staging/production connect to PostgreSQL with less than `verify-full` (warned
    /// about at every start).
    #[arg(long, env = "AIDLC_ALLOW_WEAK_DATABASE_TLS", default_value_t = false, action = ArgAction::Set)]
    pub allow_weak_database_tls: bool,
    /// `redis://host:6379` or `rediss://…` (TLS): codes and resend cooldowns live there when
    /// set, otherwise in the SQL database.
    #[arg(long, env = "REDIS_URL", value_parser = secret, help_heading = REQUIRED_WHEN_DEPLOYED)]
    pub redis_url: Option<SecretString>,
    /// Redis AUTH token (ElastiCache), sent as the connection's password (instead of one in
    /// `REDIS_URL`).
    #[arg(long, env = "AIDLC_REDIS_AUTH_TOKEN", value_parser = secret)]
    pub redis_auth_token: Option<SecretString>,
    /// PEM CA bundle a `rediss://` server's certificate is verified against (default: the
    /// public web roots, which ElastiCache's certificates chain to).
    #[arg(long, env = "AIDLC_REDIS_CA_FILE")]
    pub redis_ca_file: Option<PathBuf>,
    /// Prefix of every Redis key (lets several deployments share one Redis).
    #[arg(long, env = "AIDLC_REDIS_KEY_PREFIX", default_value = "aidlc:")]
    pub redis_key_prefix: String,
    /// The seed's emergency fallback: allow SQLite / no Redis in staging and production.
    #[arg(long, env = "ALLOW_EMBEDDED_STORES", default_value_t = false, action = ArgAction::Set)]
    pub allow_embedded_stores: bool,
    /// AWS region, for the AWS integrations.
    #[arg(long, env = "AWS_DEFAULT_REGION")]
    pub aws_region: Option<String>,
    /// Verification and login code lifetime, seconds.
    #[arg(long = "code-ttl-seconds", env = "AIDLC_CODE_TTL_SECONDS", default_value = "900", value_parser = seconds)]
    pub code_ttl: Duration,
    /// Session (refresh-token family) absolute lifetime, seconds.
    #[arg(long = "session-ttl-seconds", env = "AIDLC_SESSION_TTL_SECONDS", default_value = "86400", value_parser = seconds)]
    pub session_ttl: Duration,
    /// Minimum gap between two codes for one address and purpose, seconds.
    #[arg(long = "resend-cooldown-seconds", env = "AIDLC_RESEND_COOLDOWN_SECONDS", default_value = "60", value_parser = seconds)]
    pub resend_cooldown: Duration,
    /// Wrong tries that kill a code.
    #[arg(long, env = "AIDLC_MAX_CODE_ATTEMPTS", default_value_t = 5)]
    pub max_code_attempts: u32,
    /// Argon2id cost.
    #[command(flatten)]
    pub argon2: Argon2Params,
    /// Shortest password accepted, in characters (8 to 64; NIST SP 800-63B rev. 4 asks 15
    /// where the password is the only factor).
    #[arg(long, env = "AIDLC_PASSWORD_MIN_LENGTH", default_value_t = 8, value_parser = clap::value_parser!(u16).range(8..=64))]
    pub password_min_length: u16,
    /// How long audit events (`auth_events`) are kept, days.
    #[arg(long, env = "AIDLC_AUTH_EVENT_RETENTION_DAYS", default_value_t = 90, value_parser = clap::value_parser!(u32).range(1..=36_500))]
    pub auth_event_retention_days: u32,
    /// Bound on each PostgreSQL/Redis call, milliseconds.
    #[arg(long = "dependency-timeout-ms", env = "AIDLC_DEPENDENCY_TIMEOUT_MS", default_value = "1000", value_parser = millis)]
    pub dependency_timeout: Duration,
    /// SQL pool size.
    #[arg(long, env = "AIDLC_DATABASE_MAX_CONNECTIONS", default_value_t = 10)]
    pub database_max_connections: u32,
    /// How often expired SQL rows are deleted, seconds.
    #[arg(long = "sweep-interval-seconds", env = "AIDLC_SWEEP_INTERVAL_SECONDS", default_value = "60", value_parser = seconds)]
    pub sweep_interval: Duration,
    /// Log line format (default: pretty in development, json in staging/production).
    #[arg(long, env = "AIDLC_LOG_FORMAT")]
    pub log_format: Option<LogFormat>,
    /// Mail transport: `log` prints to the log, `smtp` sends to `AIDLC_SMTP_URL`, `ses` to
    /// Amazon SES (`--features aws`).
    #[arg(long, env = "AIDLC_EMAIL_TRANSPORT", default_value = "log", help_heading = REQUIRED_WHEN_DEPLOYED)]
    pub email_transport: EmailTransport,
    /// Lets staging/production start with the `log` mail transport (codes in the log).
    #[arg(long, env = "AIDLC_ALLOW_LOG_EMAIL", default_value_t = false, action = ArgAction::Set)]
    pub allow_log_email: bool,
    /// SMTP server, required by `smtp`: `smtp://host:2525` (plain, local only),
    /// `smtp://user:pass@host:587?tls=required` (STARTTLS), `smtps://user:pass@host:465`.
    #[arg(long, env = "AIDLC_SMTP_URL", value_parser = secret)]
    pub smtp_url: Option<SecretString>,
    /// Bound on connecting to the SMTP server and on each SMTP command, seconds.
    #[arg(long = "smtp-timeout-seconds", env = "AIDLC_SMTP_TIMEOUT_SECONDS", default_value = "10", value_parser = seconds)]
    pub smtp_timeout: Duration,
    /// How often each instance reads the mail outbox for mail other instances wrote,
    /// milliseconds (its own mail is sent at once).
    #[arg(long = "outbox-poll-ms", env = "AIDLC_OUTBOX_POLL_MS", default_value = "1000", value_parser = millis)]
    pub outbox_poll: Duration,
    /// Sending attempts before a mail is given up on (dead); a permanent refusal ends it at once.
    #[arg(long, env = "AIDLC_OUTBOX_MAX_ATTEMPTS", default_value_t = 8, value_parser = clap::value_parser!(u32).range(1..))]
    pub outbox_max_attempts: u32,
    /// Language of mail when the request names none we have: `ko` or `en`.
    #[arg(long, env = "AIDLC_DEFAULT_LOCALE", default_value = "ko")]
    pub default_locale: Locale,
    /// Sender address of outgoing mail.
    #[arg(
        long,
        env = "AIDLC_EMAIL_FROM",
        default_value = "AIDLC <no-reply@aidlc.local>"
    )]
    pub email_from: String,
    /// `iss` of access tokens and base of the discovery URLs: the URL other services reach
    /// this one at. Required in staging/production; in development it defaults to the address
    /// actually bound (`http://127.0.0.1:<port>`).
    #[arg(long, env = "AIDLC_JWT_ISSUER", value_parser = issuer, help_heading = REQUIRED_WHEN_DEPLOYED)]
    pub jwt_issuer: Option<String>,
    /// `aud` of access tokens.
    #[arg(long, env = "AIDLC_JWT_AUDIENCE", default_value = "aidlc")]
    pub jwt_audience: String,
    /// Access-token lifetime, seconds.
    #[arg(long = "access-token-ttl-seconds", env = "AIDLC_ACCESS_TOKEN_TTL_SECONDS", default_value = "900", value_parser = seconds)]
    pub access_token_ttl: Duration,
    /// How long the refresh token just retired still returns its successor, seconds.
    #[arg(long = "refresh-grace-seconds", env = "AIDLC_REFRESH_GRACE_SECONDS", default_value = "10", value_parser = seconds)]
    pub refresh_grace: Duration,
    /// Sessions not refreshed for this long end, seconds (0: off).
    #[arg(long = "session-idle-timeout-seconds", env = "AIDLC_SESSION_IDLE_TIMEOUT_SECONDS", default_value = "0", value_parser = off_or_seconds)]
    pub session_idle_timeout: OffOrSeconds,
    /// Automatic signing-key rotation, seconds (0: only by `keys rotate`).
    #[arg(long = "key-rotation-seconds", env = "AIDLC_KEY_ROTATION_SECONDS", default_value = "2592000", value_parser = off_or_seconds)]
    pub key_rotation_interval: OffOrSeconds,
    /// How often an instance re-reads the signing keys (also at once on an unknown `kid`); a
    /// revoked key is refused within this, seconds.
    #[arg(long = "key-reload-seconds", env = "AIDLC_KEY_RELOAD_SECONDS", default_value = "60", value_parser = seconds)]
    pub key_reload_interval: Duration,
    /// Pending accounts not verified or registered again for this long are deleted, seconds.
    #[arg(long = "pending-account-ttl-seconds", env = "AIDLC_PENDING_ACCOUNT_TTL_SECONDS", default_value = "604800", value_parser = seconds)]
    pub pending_account_ttl: Duration,
    /// Live sessions one user may hold; a new login ends the oldest.
    #[arg(long, env = "AIDLC_MAX_SESSIONS_PER_USER", default_value_t = 20)]
    pub max_sessions_per_user: u32,
    /// How long an instance on PostgreSQL may answer an authenticated request from its copy of
    /// the session instead of the database, seconds (0: off). Revocations reach every instance's
    /// copy through PostgreSQL notifications at once; this bounds the copy's age regardless.
    #[arg(long = "session-cache-seconds", env = "AIDLC_SESSION_CACHE_SECONDS", default_value = "10", value_parser = off_or_seconds)]
    pub session_cache_ttl: OffOrSeconds,
    /// Sessions an instance keeps a copy of at most.
    #[arg(long, env = "AIDLC_SESSION_CACHE_ENTRIES", default_value_t = 10_000)]
    pub session_cache_entries: usize,
    /// Proxies whose `X-Forwarded-For` entries are believed, as comma-separated CIDRs (the
    /// VPC range of the ALB); empty: the socket peer is the client.
    #[arg(long, env = "AIDLC_TRUSTED_PROXIES")]
    pub trusted_proxies: Option<TrustedProxies>,
    /// Requests per client IP to each credential endpoint (register, login, the verifies,
    /// resend, reset), as `count/period[,count/period]`.
    #[arg(long, env = "AIDLC_RATE_LIMIT_IP", default_value = "30/1m,300/1h")]
    pub rate_limit_ip: RateLimit,
    /// Requests per address to each credential endpoint.
    #[arg(long, env = "AIDLC_RATE_LIMIT_ADDRESS", default_value = "30/1h")]
    pub rate_limit_address: RateLimit,
    /// Refreshes per client IP.
    #[arg(long, env = "AIDLC_RATE_LIMIT_REFRESH", default_value = "300/1m")]
    pub rate_limit_refresh: RateLimit,
    /// Wrong codes per address, across codes and purposes (resends reset nothing).
    #[arg(long, env = "AIDLC_CODE_GUESS_LIMIT", default_value = "10/1h,50/1d")]
    pub code_guess_limit: RateLimit,
    /// Codes (and registration notices) requested per address.
    #[arg(long, env = "AIDLC_CODE_ISSUE_LIMIT", default_value = "5/1h")]
    pub code_issue_limit: RateLimit,
    /// Wrong passwords per address before logins for it back off (1 min, doubling up to the
    /// period).
    #[arg(long, env = "AIDLC_PASSWORD_FAILURE_LIMIT", default_value = "10/15m")]
    pub password_failure_limit: RateLimit,
    /// When set (16+ characters), introspection answers only callers presenting it.
    #[arg(long, env = "AIDLC_INTROSPECTION_SECRET", value_parser = secret)]
    pub introspection_secret: Option<SecretString>,
    /// Key-encryption key, 32 bytes in base64: every private key and server secret is stored
    /// sealed under it. Required in staging/production (from Secrets Manager); in development,
    /// when unset, generated once into `aidlc-auth.kek` in the data directory.
    #[arg(long, env = "AIDLC_KEY_ENCRYPTION_KEY", value_parser = secret, help_heading = REQUIRED_WHEN_DEPLOYED)]
    pub key_encryption_key: Option<SecretString>,
    /// The key-encryption key before the current one, 32 bytes in base64: read with, never
    /// written with, until `keys rewrap` has moved every row to the current one.
    #[arg(long, env = "AIDLC_KEY_ENCRYPTION_KEY_PREVIOUS", value_parser = secret)]
    pub key_encryption_key_previous: Option<SecretString>,
    /// Shutdown timing, the metrics listener, CORS.
    #[command(flatten)]
    pub runtime: RuntimeSettings,
}

impl Default for Settings {
    /// The built-in defaults, as declared above.
    fn default() -> Self {
        match Self::from_vars(std::iter::empty()) {
            Ok(settings) => settings,
            // The declared defaults parse and validate (a unit test proves it).
            Err(e) => unreachable!("built-in settings defaults: {e}"),
        }
    }
}

/// A setting that could not be read; the message names the variable.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct ConfigError(String);

impl Settings {
    /// The environment variables the settings are read from, as declared.
    pub fn variables() -> Vec<String> {
        Self::augment_args(clap::Command::new("aidlc-auth"))
            .get_arguments()
            .filter_map(|arg| Some(arg.get_env()?.to_str()?.to_owned()))
            .collect()
    }

    /// Reads settings from `vars` over the defaults, then validates them; pure (the process
    /// environment is not read), so tests need not touch it.
    pub fn from_vars(
        vars: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Self, ConfigError> {
        let command = Self::augment_args(clap::Command::new("aidlc-auth"));
        let settings: Self = parse(command, vars, ["aidlc-auth".into()]).map_err(|e| {
            let reason = e.to_string();
            ConfigError(
                reason
                    .lines()
                    .next()
                    .unwrap_or("")
                    .trim_start_matches("error: ")
                    .to_owned(),
            )
        })?;
        settings.validate()?;
        Ok(settings)
    }

    /// Names of `AIDLC_*` variables in `vars` that this service does not read.
    pub fn unknown_variables(vars: impl IntoIterator<Item = (String, String)>) -> Vec<String> {
        let known = Self::variables();
        let mut unknown: Vec<String> = vars
            .into_iter()
            .map(|(k, _)| k)
            .filter(|k| k.starts_with("AIDLC_") && !known.contains(k))
            .collect();
        unknown.sort();
        unknown
    }

    /// The listening address: as set, or loopback in development and every address when
    /// deployed (behind the ALB).
    pub fn host(&self) -> IpAddr {
        self.host.unwrap_or(if self.environment.is_deployed() {
            IpAddr::from([0, 0, 0, 0])
        } else {
            IpAddr::from([127, 0, 0, 1])
        })
    }

    /// `iss` of access tokens: as set, or (development) the URL of `bound`, the address the
    /// listener actually has, so discovery never points at a port nobody listens on.
    pub fn issuer(&self, bound: std::net::SocketAddr) -> String {
        if let Some(issuer) = &self.jwt_issuer {
            return issuer.clone();
        }
        let ip = match bound.ip() {
            IpAddr::V4(v4) if v4.is_unspecified() => IpAddr::from([127, 0, 0, 1]),
            IpAddr::V6(v6) if v6.is_unspecified() => IpAddr::from(std::net::Ipv6Addr::LOCALHOST),
            ip => ip,
        };
        format!("http://{}", std::net::SocketAddr::new(ip, bound.port()))
    }

    /// The log format: as set, or JSON when deployed and pretty otherwise.
    pub fn log_format(&self) -> LogFormat {
        match self.log_format {
            Some(format) => format,
            None if self.environment.is_deployed() => LogFormat::Json,
            None => LogFormat::Pretty,
        }
    }

    /// The database URL the service connects to: built from `AIDLC_DB_SECRET` when that is
    /// set, else `DATABASE_URL` (or its default). None with `AIDLC_DB_SECRET_ARN`: that URL is
    /// known only once the secret is read.
    pub fn database_url_or_secret(&self) -> Option<SecretString> {
        if self.db_secret_arn.is_some() {
            return None;
        }
        match &self.db_secret {
            // Validated by the value parser: it builds.
            Some(secret) => secret.url().ok(),
            None => Some(self.database_url.clone()),
        }
    }

    /// True when `DATABASE_URL` was given (not its default).
    pub(crate) fn database_url_is_set(&self) -> bool {
        self.database_url.expose_secret() != DEFAULT_DATABASE_URL
    }

    /// Which database the service uses (validated: never None after `validate`). A secret
    /// (`AIDLC_DB_SECRET`, `AIDLC_DB_SECRET_ARN`) always names PostgreSQL.
    pub fn database_kind(&self) -> Option<DatabaseKind> {
        if self.db_secret.is_some() || self.db_secret_arn.is_some() {
            return Some(DatabaseKind::Postgres);
        }
        DatabaseKind::from_url(self.database_url.expose_secret())
    }

    /// How long audit events are kept.
    pub fn auth_event_retention(&self) -> Duration {
        Duration::from_secs(u64::from(self.auth_event_retention_days) * 24 * 3600)
    }

    /// True when `DATABASE_URL` names a SQLite database.
    pub fn uses_sqlite(&self) -> bool {
        self.database_kind() == Some(DatabaseKind::Sqlite)
    }
}

/// Every setting by its variable, secrets hidden and URLs redacted.
impl fmt::Debug for Settings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let url = |u: &SecretString| redact_url(u.expose_secret());
        f.debug_struct("Settings")
            .field("environment", &self.environment)
            .field("host", &self.host())
            .field("port", &self.port)
            .field("database_url", &url(&self.database_url))
            .field("database_tls", &self.database_tls())
            .field("database_ca", &self.database_ca())
            .field("allow_weak_database_tls", &self.allow_weak_database_tls)
            .field("db_secret", &self.db_secret)
            .field("db_secret_arn", &self.db_secret_arn)
            .field("redis_auth_secret_arn", &self.redis_auth_secret_arn)
            .field("redis_url", &self.redis_url.as_ref().map(url))
            .field(
                "redis_auth_token",
                &self.redis_auth_token.as_ref().map(|_| "***"),
            )
            .field("redis_ca_file", &self.redis_ca_file)
            .field("redis_key_prefix", &self.redis_key_prefix)
            .field("allow_embedded_stores", &self.allow_embedded_stores)
            .field("aws_region", &self.aws_region)
            .field("code_ttl", &self.code_ttl)
            .field("session_ttl", &self.session_ttl)
            .field("resend_cooldown", &self.resend_cooldown)
            .field("max_code_attempts", &self.max_code_attempts)
            .field("argon2", &self.argon2)
            .field("password_min_length", &self.password_min_length)
            .field("auth_event_retention_days", &self.auth_event_retention_days)
            .field("dependency_timeout", &self.dependency_timeout)
            .field("database_max_connections", &self.database_max_connections)
            .field("sweep_interval", &self.sweep_interval)
            .field("log_format", &self.log_format())
            .field("email_transport", &self.email_transport)
            .field("allow_log_email", &self.allow_log_email)
            .field("smtp_url", &self.smtp_url.as_ref().map(url))
            .field("smtp_timeout", &self.smtp_timeout)
            .field("outbox_poll", &self.outbox_poll)
            .field("outbox_max_attempts", &self.outbox_max_attempts)
            .field("default_locale", &self.default_locale)
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
            .field("session_cache_ttl", &self.session_cache_ttl)
            .field("session_cache_entries", &self.session_cache_entries)
            .field(
                "trusted_proxies",
                &self.trusted_proxies.as_ref().map(TrustedProxies::ranges),
            )
            .field("rate_limit_ip", &self.rate_limit_ip.to_string())
            .field("rate_limit_address", &self.rate_limit_address.to_string())
            .field("rate_limit_refresh", &self.rate_limit_refresh.to_string())
            .field("code_guess_limit", &self.code_guess_limit.to_string())
            .field("code_issue_limit", &self.code_issue_limit.to_string())
            .field(
                "password_failure_limit",
                &self.password_failure_limit.to_string(),
            )
            .field(
                "introspection_secret",
                &self.introspection_secret.as_ref().map(|_| "***"),
            )
            .field(
                "key_encryption_key",
                &self.key_encryption_key.as_ref().map(|_| "***"),
            )
            .field(
                "key_encryption_key_previous",
                &self.key_encryption_key_previous.as_ref().map(|_| "***"),
            )
            .field("runtime", &self.runtime)
            .finish()
    }
}
