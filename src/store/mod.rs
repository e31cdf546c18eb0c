//! Storage behind small traits, one implementation per backend, chosen once at start-up.
//!
//! Users always live in SQL. Codes and sessions live in Redis when `REDIS_URL` is set and in
//! the SQL database otherwise. Every call is bounded by the dependency timeout, so a hung
//! dependency surfaces as [`StoreError::Unavailable`] (a 503) instead of a hung request.

mod postgres;
mod redis;
mod sql;
mod sqlite;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use async_trait::async_trait;
use time::OffsetDateTime;
use uuid::Uuid;

use crate::config::Settings;
use crate::domain::{CodePurpose, EmailAddress, FullName, PasswordHash, User, UserId};

/// What can go wrong in a store, as the use cases see it.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The backend could not be reached, refused, or did not answer in time.
    #[error("storage unavailable: {0:#}")]
    Unavailable(anyhow::Error),
    /// The backend answered with something that breaks an invariant (corrupt row).
    #[error("storage returned unexpected data: {0:#}")]
    Corrupt(anyhow::Error),
}

/// Shorthand for store results.
pub type StoreResult<T> = Result<T, StoreError>;

/// Runs `op` under `limit`; an error or a timeout becomes `Unavailable` with `what` as context.
pub(crate) async fn bounded<T, E>(
    limit: Duration,
    what: &'static str,
    op: impl Future<Output = Result<T, E>>,
) -> StoreResult<T>
where
    E: std::error::Error + Send + Sync + 'static,
{
    match tokio::time::timeout(limit, op).await {
        Ok(result) => result.context(what).map_err(StoreError::Unavailable),
        Err(_) => Err(StoreError::Unavailable(anyhow::anyhow!(
            "{what}: no answer within {limit:?}"
        ))),
    }
}

/// Outcome of inserting a user.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Inserted {
    /// The row was written.
    Created,
    /// Another account already holds the address.
    EmailTaken,
}

/// Accounts.
#[async_trait]
pub trait UserStore: Send + Sync {
    /// The account holding `email`, if any.
    async fn find_by_email(&self, email: &EmailAddress) -> StoreResult<Option<User>>;
    /// The account with `id`, if any.
    async fn find_by_id(&self, id: UserId) -> StoreResult<Option<User>>;
    /// Inserts a new account; the unique address index decides races.
    async fn insert(&self, user: &User) -> StoreResult<Inserted>;
    /// Replaces name and password of a still-pending account; false if it is no longer pending.
    async fn update_pending(
        &self,
        id: UserId,
        full_name: &FullName,
        password_hash: &PasswordHash,
        now: OffsetDateTime,
    ) -> StoreResult<bool>;
    /// Moves a pending account to active; false if it was not pending.
    async fn activate(&self, id: UserId, now: OffsetDateTime) -> StoreResult<bool>;
}

/// A code as stored: only its keyed hash.
#[derive(Debug, Clone)]
pub struct StoredCode {
    /// HMAC-SHA256 of (purpose, email, code), hex.
    pub hash: String,
    /// When it stops being accepted.
    pub expires_at: OffsetDateTime,
}

/// Result of presenting a code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CodeCheck {
    /// It matched and has been consumed; no other request can use it.
    Accepted,
    /// Missing, expired, exhausted or wrong; a wrong try has been counted.
    Rejected,
}

/// Result of asking to send a code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cooldown {
    /// No code was sent recently; the cooldown now runs.
    Started,
    /// A code was sent recently; try again after this long.
    Active(Duration),
}

/// One-time codes, bound to (email, purpose). At most one live code per pair.
#[async_trait]
pub trait CodeStore: Send + Sync {
    /// Stores `code`, replacing any earlier code for the pair and resetting its tries.
    async fn put(
        &self,
        email: &EmailAddress,
        purpose: CodePurpose,
        code: &StoredCode,
    ) -> StoreResult<()>;
    /// Atomically consumes the code if `hash` matches, it has not expired at `now` and has had
    /// fewer than `max_attempts` wrong tries; otherwise counts a wrong try, and a code that
    /// reaches `max_attempts` is deleted.
    async fn consume(
        &self,
        email: &EmailAddress,
        purpose: CodePurpose,
        hash: &str,
        now: OffsetDateTime,
        max_attempts: u32,
    ) -> StoreResult<CodeCheck>;
    /// Atomically starts the resend cooldown for the pair unless one is running at `now`.
    async fn start_cooldown(
        &self,
        email: &EmailAddress,
        purpose: CodePurpose,
        now: OffsetDateTime,
        length: Duration,
    ) -> StoreResult<Cooldown>;
    /// Ends the cooldown early (a send that failed should not lock the user out).
    async fn clear_cooldown(&self, email: &EmailAddress, purpose: CodePurpose) -> StoreResult<()>;
}

/// A logged-in session as stored (keyed by the digest of its token).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Session {
    /// Its id.
    pub id: Uuid,
    /// Whose session it is.
    pub user_id: Uuid,
    /// When it started.
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    /// When it ends regardless of use.
    #[serde(with = "time::serde::rfc3339")]
    pub expires_at: OffsetDateTime,
    /// The client's User-Agent at login.
    pub user_agent: Option<String>,
    /// The client's address at login.
    pub ip: Option<String>,
}

/// Sessions, keyed by the SHA-256 digest of their bearer token.
#[async_trait]
pub trait SessionStore: Send + Sync {
    /// Stores a new session.
    async fn create(&self, token_digest: &str, session: &Session) -> StoreResult<()>;
    /// The live session for the digest at `now`, if any.
    async fn find(&self, token_digest: &str, now: OffsetDateTime) -> StoreResult<Option<Session>>;
    /// Ends the session; false if there was none.
    async fn revoke(&self, token_digest: &str) -> StoreResult<bool>;
}

/// Server-side secrets generated once and shared by every instance (code-hash key; later
/// signing keys).
#[async_trait]
pub trait SecretStore: Send + Sync {
    /// The secret stored under `name`, storing `candidate` first if there is none yet. Two
    /// instances racing at first start agree on one value.
    async fn get_or_create(
        &self,
        name: &str,
        candidate: &[u8],
        now: OffsetDateTime,
    ) -> StoreResult<Vec<u8>>;
}

/// Something a readiness check can ping.
#[async_trait]
pub trait Ping: Send + Sync {
    /// Answers when the dependency does, within the dependency timeout.
    async fn ping(&self) -> StoreResult<()>;
}

/// Expired-row clean-up for backends without their own expiry.
#[async_trait]
pub trait Sweep: Send + Sync {
    /// Deletes codes, cooldowns and sessions that expired before `now`; returns rows removed.
    async fn sweep_expired(&self, now: OffsetDateTime) -> StoreResult<u64>;
}

/// Every store the service uses, chosen once from the settings.
#[derive(Clone)]
pub struct Stores {
    /// Accounts (SQL).
    pub users: Arc<dyn UserStore>,
    /// One-time codes (Redis or SQL).
    pub codes: Arc<dyn CodeStore>,
    /// Sessions (Redis or SQL).
    pub sessions: Arc<dyn SessionStore>,
    /// Shared server secrets (SQL).
    pub secrets: Arc<dyn SecretStore>,
    /// The SQL database, for readiness.
    pub database: Arc<dyn Ping>,
    /// Redis, when configured, for readiness.
    pub redis: Option<Arc<dyn Ping>>,
    /// The SQL clean-up job.
    pub sweeper: Arc<dyn Sweep>,
}

impl Stores {
    /// Connects to the configured backends and runs SQL migrations.
    pub async fn connect(settings: &Settings) -> anyhow::Result<Self> {
        let timeout = settings.dependency_timeout;
        let sql = sql::connect(settings).await?;
        let mut stores = Self {
            users: sql.users,
            codes: sql.codes,
            sessions: sql.sessions,
            secrets: sql.secrets,
            database: sql.ping,
            redis: None,
            sweeper: sql.sweeper,
        };
        if let Some(url) = &settings.redis_url {
            let redis = Arc::new(
                redis::RedisStore::connect(url, &settings.redis_key_prefix, timeout).await?,
            );
            stores.codes = redis.clone();
            stores.sessions = redis.clone();
            stores.redis = Some(redis);
        }
        Ok(stores)
    }
}

/// Applies the SQL migrations for the configured database and returns.
pub async fn migrate(settings: &Settings) -> anyhow::Result<()> {
    sql::connect(settings).await.map(drop)
}
