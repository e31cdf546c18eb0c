//! Settings, each declared once below: its variable, default and meaning. The environment
//! overrides the defaults (command-line flags override both). The seed's names stay as they are
//! (`DATABASE_URL`, `REDIS_URL`, `ENVIRONMENT`, `PORT`, `AWS_DEFAULT_REGION`); everything else is
//! `AIDLC_*`, and an unknown `AIDLC_*` variable is warned about (a typo is not silent).
//! `aidlc-auth --help` lists them all.

use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;
use std::time::Duration;

use std::collections::HashMap;
use std::ffi::OsString;

use clap::error::{ContextKind, ContextValue, ErrorKind};
use clap::{ArgAction, Args, FromArgMatches};
use secrecy::{ExposeSecret, SecretString};

use crate::domain::Locale;

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
    /// SMTP to `AIDLC_SMTP_URL` (a mail provider, or SES through its SMTP endpoint). `ses`
    /// through the AWS SDK is a later slice: a variant here and a sender in `email/`.
    Smtp,
}

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
    #[arg(long, env = "ENVIRONMENT", default_value = "development")]
    pub environment: Environment,
    /// Listening address (default: 127.0.0.1 in development, where codes are printed to the
    /// log; 0.0.0.0 in staging/production).
    #[arg(long, env = "AIDLC_HOST")]
    pub host: Option<IpAddr>,
    /// Listening port (0 picks a free one).
    #[arg(long, env = "PORT", default_value_t = 8001)]
    pub port: u16,
    /// `postgres://user:pass@host:5432/db` (add `?sslmode=verify-full&sslrootcert=…` for RDS)
    /// or `sqlite://path`.
    #[arg(long, env = "DATABASE_URL", default_value = "sqlite://data/aidlc-auth.db", value_parser = secret, hide_default_value = false)]
    pub database_url: SecretString,
    /// `redis://host:6379` or `rediss://…`: codes and resend cooldowns live there when set,
    /// otherwise in the SQL database.
    #[arg(long, env = "REDIS_URL", value_parser = secret)]
    pub redis_url: Option<SecretString>,
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
    /// Mail transport: `log` prints to the log, `smtp` sends to `AIDLC_SMTP_URL`.
    #[arg(long, env = "AIDLC_EMAIL_TRANSPORT", default_value = "log")]
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
    #[arg(long, env = "AIDLC_JWT_ISSUER", value_parser = issuer)]
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
    /// When set (16+ characters), introspection answers only callers presenting it.
    #[arg(long, env = "AIDLC_INTROSPECTION_SECRET", value_parser = secret)]
    pub introspection_secret: Option<SecretString>,
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
        if self.database_kind().is_none() {
            return refuse("DATABASE_URL must start with postgres://, postgresql:// or sqlite:");
        }
        if self.dependency_timeout.is_zero() {
            return refuse("AIDLC_DEPENDENCY_TIMEOUT_MS must be positive");
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
        if self.environment.is_deployed() && self.jwt_issuer.is_none() {
            return refuse(
                "AIDLC_JWT_ISSUER is required in staging and production: the URL other services \
                 reach this one at (it is the iss of every token and the base of discovery)",
            );
        }
        self.validate_mail()
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
                     AIDLC_EMAIL_TRANSPORT=smtp (with AIDLC_SMTP_URL), or AIDLC_ALLOW_LOG_EMAIL=true \
                     to accept that"
                        .to_owned(),
                ))
            }
            _ => Ok(()),
        }
    }

    /// Which database `DATABASE_URL` names (validated: never None after `validate`).
    pub fn database_kind(&self) -> Option<DatabaseKind> {
        DatabaseKind::from_url(self.database_url.expose_secret())
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
            .field("redis_url", &self.redis_url.as_ref().map(url))
            .field("redis_key_prefix", &self.redis_key_prefix)
            .field("allow_embedded_stores", &self.allow_embedded_stores)
            .field("aws_region", &self.aws_region)
            .field("code_ttl", &self.code_ttl)
            .field("session_ttl", &self.session_ttl)
            .field("resend_cooldown", &self.resend_cooldown)
            .field("max_code_attempts", &self.max_code_attempts)
            .field("argon2", &self.argon2)
            .field("dependency_timeout", &self.dependency_timeout)
            .field("database_max_connections", &self.database_max_connections)
            .field("sweep_interval", &self.sweep_interval)
            .field("log_format", &self.log_format())
            .field("email_transport", &self.email_transport)
            .field("allow_log_email", &self.allow_log_email)
            .field("smtp_url", &self.smtp_url.as_ref().map(url))
            .field("smtp_timeout", &self.smtp_timeout)
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
            .field(
                "introspection_secret",
                &self.introspection_secret.as_ref().map(|_| "***"),
            )
            .finish()
    }
}

/// Parses `args` with `command` (which flattens [`Settings`]). Each setting's variable in
/// `vars` stands for its flag, placed before `args` so a flag given there wins; variables that
/// are empty count as unset, and values are trimmed. Only `vars` is read, never the process
/// environment directly, so `main` and the tests parse the same way.
pub fn parse<T: FromArgMatches>(
    command: clap::Command,
    vars: impl IntoIterator<Item = (String, String)>,
    args: impl IntoIterator<Item = OsString>,
) -> Result<T, clap::Error> {
    let vars: HashMap<String, String> = vars.into_iter().collect();
    let mut args = args.into_iter();
    let mut argv: Vec<OsString> = args.next().into_iter().collect();
    let mut explicit: Vec<OsString> = args.collect();
    for arg in command.get_arguments() {
        let (Some(env), Some(long)) = (arg.get_env().and_then(|e| e.to_str()), arg.get_long())
        else {
            continue;
        };
        if let Some(value) = vars.get(env).map(|v| v.trim()).filter(|v| !v.is_empty()) {
            argv.push(format!("--{long}={value}").into());
        }
    }
    let all_args = argv
        .iter()
        .chain(explicit.iter())
        .cloned()
        .collect::<Vec<_>>();
    let stripped = command
        .clone()
        .args_override_self(true)
        .mut_args(|arg| arg.env(None::<&'static str>));
    match stripped.try_get_matches_from(all_args) {
        Ok(matches) => T::from_arg_matches(&matches),
        // The help names each setting's variable: render it from the full declaration.
        Err(e) if matches!(e.kind(), ErrorKind::DisplayHelp | ErrorKind::DisplayVersion) => {
            argv.truncate(1);
            argv.append(&mut explicit);
            Err(command.try_get_matches_from(argv).err().unwrap_or(e))
        }
        Err(e) => Err(name_the_variable(e, &command)),
    }
}

/// A bad value is reported by its variable (what an operator sets), not by its flag.
fn name_the_variable(e: clap::Error, command: &clap::Command) -> clap::Error {
    let Some(ContextValue::String(flag)) = e.get(ContextKind::InvalidArg) else {
        return e;
    };
    let long = flag
        .trim_start_matches("--")
        .split([' ', '='])
        .next()
        .unwrap_or("");
    let Some(env) = command
        .get_arguments()
        .find(|arg| arg.get_long() == Some(long))
        .and_then(|arg| arg.get_env()?.to_str())
    else {
        return e;
    };
    let value = match e.get(ContextKind::InvalidValue) {
        Some(ContextValue::String(v)) => v.clone(),
        _ => String::new(),
    };
    clap::Error::raw(
        e.kind(),
        format!("{env} (--{long}) has an invalid value {value:?}\n"),
    )
}

fn seconds(raw: &str) -> Result<Duration, String> {
    raw.trim()
        .parse()
        .map(Duration::from_secs)
        .map_err(|_| format!("{raw:?} is not a whole number of seconds"))
}

fn millis(raw: &str) -> Result<Duration, String> {
    raw.trim()
        .parse()
        .map(Duration::from_millis)
        .map_err(|_| format!("{raw:?} is not a whole number of milliseconds"))
}

fn off_or_seconds(raw: &str) -> Result<OffOrSeconds, String> {
    seconds(raw).map(|d| (!d.is_zero()).then_some(d))
}

fn secret(raw: &str) -> Result<SecretString, String> {
    Ok(SecretString::from(raw.trim().to_owned()))
}

fn issuer(raw: &str) -> Result<String, String> {
    Ok(raw.trim().trim_end_matches('/').to_owned())
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
                ("ALLOW_EMBEDDED_STORES", "true"),
                ("AIDLC_JWT_ISSUER", "https://auth.aidlc.example"),
                ("AIDLC_ALLOW_LOG_EMAIL", "true"),
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

    /// The README's settings table and the declaration (what `--help` prints) agree: the same
    /// variables, and each declared default is the one the table gives.
    #[test]
    fn readme_settings_table_matches_the_declaration() {
        let readme = include_str!("../README.md");
        let table = readme
            .split("## Settings")
            .nth(1)
            .and_then(|rest| rest.split("\n## ").next())
            .expect("README has a Settings section");
        let mut documented = HashMap::new();
        for row in table.lines().filter(|l| l.starts_with("| `")) {
            let cells: Vec<&str> = row.split(" | ").collect();
            let names: Vec<&str> = cells[0].trim_start_matches("| ").split(" / ").collect();
            let defaults: Vec<&str> = cells[1].split(" / ").collect();
            let first = names[0].trim_matches('`');
            let stem = &first[..first.rfind('_').unwrap_or(0)];
            for (i, name) in names.iter().enumerate() {
                let name = name.trim_matches('`');
                let name = if name.starts_with('_') {
                    format!("{}{name}", &stem[..stem.rfind('_').unwrap_or(0)])
                } else {
                    name.to_owned()
                };
                let default = defaults.get(i).or(defaults.first()).copied().unwrap_or("");
                let default = default.split('`').nth(1).map(str::to_owned);
                documented.insert(name, default);
            }
        }
        documented.remove("RUST_LOG"); // read by the log filter, not a setting
        let command = Settings::augment_args(clap::Command::new("aidlc-auth"));
        let mut declared: Vec<String> = Settings::variables();
        declared.sort();
        let mut in_readme: Vec<String> = documented.keys().cloned().collect();
        in_readme.sort();
        assert_eq!(
            in_readme, declared,
            "README settings table vs declared variables"
        );
        for arg in command.get_arguments() {
            let Some(env) = arg.get_env().and_then(|e| e.to_str()) else {
                continue;
            };
            if let Some(default) = arg.get_default_values().first() {
                assert_eq!(
                    documented[env].as_deref(),
                    default.to_str(),
                    "README default of {env}"
                );
            }
        }
    }

    #[test]
    fn development_listens_on_loopback_and_derives_its_issuer_from_the_bound_port() {
        let dev = Settings::from_vars(vars(&[])).unwrap();
        assert_eq!(dev.host(), IpAddr::from([127, 0, 0, 1]));
        let bound = std::net::SocketAddr::from(([127, 0, 0, 1], 45591));
        assert_eq!(dev.issuer(bound), "http://127.0.0.1:45591");
        let any = std::net::SocketAddr::from(([0, 0, 0, 0], 8001));
        assert_eq!(dev.issuer(any), "http://127.0.0.1:8001");
        let set =
            Settings::from_vars(vars(&[("AIDLC_JWT_ISSUER", "https://auth.example/")])).unwrap();
        assert_eq!(set.issuer(bound), "https://auth.example");
    }

    #[test]
    fn deployed_environments_listen_everywhere_and_require_an_issuer() {
        let deployed = [
            ("ENVIRONMENT", "staging"),
            ("DATABASE_URL", "postgres://u@db/aidlc_auth"),
            ("REDIS_URL", "redis://cache:6379"),
        ];
        let err = Settings::from_vars(vars(&deployed)).unwrap_err();
        assert!(err.to_string().contains("AIDLC_JWT_ISSUER"), "{err}");
        let mut with_issuer = deployed.to_vec();
        with_issuer.push(("AIDLC_JWT_ISSUER", "https://auth.aidlc.example"));
        with_issuer.push(("AIDLC_ALLOW_LOG_EMAIL", "true"));
        let s = Settings::from_vars(vars(&with_issuer)).unwrap();
        assert_eq!(s.host(), IpAddr::from([0, 0, 0, 0]));
    }

    #[test]
    fn deployed_environments_refuse_log_mail_unless_allowed() {
        let deployed = [
            ("ENVIRONMENT", "production"),
            ("DATABASE_URL", "postgres://u@db/aidlc_auth"),
            ("REDIS_URL", "redis://cache:6379"),
            ("AIDLC_JWT_ISSUER", "https://auth.aidlc.example"),
        ];
        let err = Settings::from_vars(vars(&deployed)).unwrap_err();
        assert!(err.to_string().contains("AIDLC_ALLOW_LOG_EMAIL"), "{err}");
        let mut allowed = deployed.to_vec();
        allowed.push(("AIDLC_ALLOW_LOG_EMAIL", "true"));
        assert!(Settings::from_vars(vars(&allowed)).is_ok());
        let mut smtp = deployed.to_vec();
        smtp.push(("AIDLC_EMAIL_TRANSPORT", "smtp"));
        smtp.push(("AIDLC_SMTP_URL", "smtps://user:pw@mail.example:465"));
        let s = Settings::from_vars(vars(&smtp)).unwrap();
        assert_eq!(s.email_transport, EmailTransport::Smtp);
    }

    #[test]
    fn smtp_needs_a_url_of_its_own_scheme_and_its_password_is_redacted() {
        let err = Settings::from_vars(vars(&[("AIDLC_EMAIL_TRANSPORT", "smtp")])).unwrap_err();
        assert!(err.to_string().contains("AIDLC_SMTP_URL"), "{err}");
        let err = Settings::from_vars(vars(&[("AIDLC_SMTP_URL", "http://u:hunter2@mail:25")]))
            .unwrap_err();
        assert!(err.to_string().contains("AIDLC_SMTP_URL"), "{err}");
        assert!(!err.to_string().contains("hunter2"), "{err}");
        let s = Settings::from_vars(vars(&[
            ("AIDLC_EMAIL_TRANSPORT", "smtp"),
            (
                "AIDLC_SMTP_URL",
                "smtp://ses-user:hunter2@email-smtp.aws:587?tls=required",
            ),
        ]))
        .unwrap();
        let shown = format!("{s:?}");
        assert!(!shown.contains("hunter2"), "{shown}");
        assert!(shown.contains("ses-user:***@email-smtp.aws"), "{shown}");
    }

    #[test]
    fn the_default_locale_is_korean_and_can_be_english() {
        assert_eq!(Settings::default().default_locale, Locale::Ko);
        let s = Settings::from_vars(vars(&[("AIDLC_DEFAULT_LOCALE", "en")])).unwrap();
        assert_eq!(s.default_locale, Locale::En);
        let err = Settings::from_vars(vars(&[("AIDLC_DEFAULT_LOCALE", "fr")])).unwrap_err();
        assert!(err.to_string().contains("AIDLC_DEFAULT_LOCALE"), "{err}");
    }

    #[test]
    fn bad_values_name_their_variable() {
        let err = Settings::from_vars(vars(&[("PORT", "eighty")])).unwrap_err();
        assert!(err.to_string().contains("PORT"));
    }
}
