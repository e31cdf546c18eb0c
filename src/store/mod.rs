//! Storage behind small traits, one implementation per backend, chosen once at start-up.
//!
//! Users, sessions, refresh tokens and signing keys always live in SQL. Codes and cooldowns
//! and rate-limit counters live in Redis when `REDIS_URL` is set and in the SQL database
//! otherwise. Every call is bounded by the dependency timeout, so a hung
//! dependency surfaces as [`StoreError::Unavailable`] (a 503) instead of a hung request.

pub(crate) mod at_rest;
mod events;
pub mod limits;
mod outbox;
mod redis;
pub(crate) mod session_cache;
mod sql;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use async_trait::async_trait;
use rand::RngCore;
use time::OffsetDateTime;

pub use self::at_rest::AtRestError;
pub use self::events::AuthEventStore;
pub use self::limits::{Admission, Admissions, HitId, LimitKey, RateLimiter, Recent};
pub use self::outbox::{ClaimedMail, OutboxCounts, OutboxDepth, OutboxMail, OutboxStore};
pub use self::sql::RewrapCounts;
use crate::clock::Clock;
use crate::config::Settings;
use crate::domain::{
    AuthEvent, CodePurpose, EmailAddress, OnMatch, PasswordHash, PendingRegistration, SessionId,
    User, UserId,
};
/// The session types [`SessionStore`] speaks in (they live in [`crate::domain`]).
pub use crate::domain::{NewSession, RefreshRules, Rotation, Session, SessionLimit};
use crate::metrics::{Dependency, DependencyFailure};

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

/// Runs the SQL database call `op` under `limit`; an error or a timeout becomes `Unavailable`
/// with `what` as context.
pub(crate) async fn bounded<T, E>(
    limit: Duration,
    what: &'static str,
    op: impl Future<Output = Result<T, E>>,
) -> StoreResult<T>
where
    E: std::error::Error + Send + Sync + 'static,
{
    bounded_on(Dependency::Database, limit, what, op).await
}

/// Runs the call `op` to `dependency` under `limit`; an error or a timeout becomes
/// `Unavailable` with `what` as context, and is counted. Every dependency call passes here,
/// so this is the one place dependency failures are measured.
pub(crate) async fn bounded_on<T, E>(
    dependency: Dependency,
    limit: Duration,
    what: &'static str,
    op: impl Future<Output = Result<T, E>>,
) -> StoreResult<T>
where
    E: std::error::Error + Send + Sync + 'static,
{
    bounded_noting_timeout(dependency, limit, what, op, |_| false, || ()).await
}

/// [`bounded_on`], calling `timed_out` when `op` runs past `limit` or fails with an error
/// `is_timeout` says is the client's own timeout (Redis's breaker; a Redis client times a
/// response out by itself).
pub(crate) async fn bounded_noting_timeout<T, E>(
    dependency: Dependency,
    limit: Duration,
    what: &'static str,
    op: impl Future<Output = Result<T, E>>,
    is_timeout: impl FnOnce(&E) -> bool,
    timed_out: impl FnOnce(),
) -> StoreResult<T>
where
    E: std::error::Error + Send + Sync + 'static,
{
    let failure = match tokio::time::timeout(limit, op).await {
        Ok(Ok(value)) => return Ok(value),
        Ok(Err(e)) if is_timeout(&e) => (
            DependencyFailure::Timeout,
            anyhow::Error::new(e).context(what),
        ),
        Ok(Err(e)) => {
            crate::metrics::dependency_failure(dependency, DependencyFailure::Error);
            return Err(StoreError::Unavailable(anyhow::Error::new(e).context(what)));
        }
        Err(_) => (
            DependencyFailure::Timeout,
            anyhow::anyhow!("{what}: no answer within {limit:?}"),
        ),
    };
    timed_out();
    crate::metrics::dependency_failure(dependency, failure.0);
    Err(StoreError::Unavailable(failure.1))
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
    /// Inserts a new account (a pending one with its first registration) and queues `mail`,
    /// in one transaction; the unique address index decides races (then nothing is written).
    async fn insert(&self, user: &User, mail: &OutboxMail) -> StoreResult<Inserted>;
    /// Records one more registration of a still-pending account (or repeats one made with the
    /// same password hash, taking its name) and makes it the account's newest; keeps the
    /// `keep` newest registrations, and queues `mail`, in one transaction. False (and nothing
    /// written) if the account is no longer pending.
    async fn register_again(
        &self,
        id: UserId,
        registration: &PendingRegistration,
        keep: u32,
        mail: &OutboxMail,
    ) -> StoreResult<bool>;
    /// The registrations of a still-pending account, newest first (empty for any other).
    async fn pending_registrations(&self, id: UserId) -> StoreResult<Vec<PendingRegistration>>;
    /// Moves a pending account to active with the password and name of `registration`, which
    /// must still be one of its registrations; false if it is no longer pending or the
    /// registration is gone.
    async fn activate(
        &self,
        id: UserId,
        registration: &PendingRegistration,
        now: OffsetDateTime,
    ) -> StoreResult<bool>;
    /// Sets an active account's password and ends its live sessions (all, or all but
    /// `change.keep`), with the notice `mail` and the audit `event`, in one transaction;
    /// returns how many sessions it ended, None (nothing written) if the account is not active.
    async fn set_password(
        &self,
        change: &PasswordChange,
        mail: &OutboxMail,
        event: &AuthEvent,
    ) -> StoreResult<Option<u64>>;
    /// Replaces the account's password hash `old` by `new` (the same password under the
    /// current Argon2 parameters); false if the hash changed meanwhile (a reset won).
    async fn upgrade_password_hash(
        &self,
        id: UserId,
        old: &PasswordHash,
        new: &PasswordHash,
        now: OffsetDateTime,
    ) -> StoreResult<bool>;
}

/// A new password for an account, and which sessions survive it.
#[derive(Debug, Clone)]
pub struct PasswordChange {
    /// The account.
    pub user_id: UserId,
    /// The new password's hash.
    pub password_hash: PasswordHash,
    /// The session kept (the caller's, for a change); None ends every one (a reset).
    pub keep: Option<SessionId>,
    /// Why the others end, as stored on them (`password_reset`, `password_changed`).
    pub reason: &'static str,
    /// When.
    pub now: OffsetDateTime,
}

/// A code as stored: only its keyed hash.
#[derive(Debug, Clone)]
pub struct StoredCode {
    /// HMAC-SHA256 of (purpose, email, code), hex.
    pub hash: String,
    /// When it was issued.
    pub issued_at: OffsetDateTime,
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
    /// Presents `hash` for the pair's code, atomically: the try is counted first, then a code
    /// that matches, has not expired at `now` and has had fewer than `max_attempts` tries is
    /// accepted (and consumed or kept as `on_match` says); a miss that reaches `max_attempts`
    /// deletes the code. The decision is [`crate::domain::judge_code_try`]'s.
    async fn try_code(
        &self,
        email: &EmailAddress,
        purpose: CodePurpose,
        hash: &str,
        now: OffsetDateTime,
        max_attempts: u32,
        on_match: OnMatch,
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

/// What a refresh-token exchange decided, and the account of a session that goes on.
#[derive(Debug)]
pub struct Exchanged {
    /// The decision.
    pub rotation: Rotation,
    /// The session's account, as stored now: with `Rotated` and `Replayed` (None only if the
    /// account is gone), never with the other answers.
    pub user: Option<User>,
}

/// Sessions and their refresh tokens (stored as SHA-256 digests), always in SQL.
#[async_trait]
pub trait SessionStore: Send + Sync {
    /// Stores a new session with its first refresh token (generation 0), ends the user's
    /// oldest live sessions beyond `limit` and writes `event` (the login that started it), in
    /// one transaction: the event is recorded if and only if the session exists. Returns how
    /// many sessions it ended.
    async fn create(
        &self,
        session: &Session,
        refresh_digest: &str,
        limit: SessionLimit,
        event: &AuthEvent,
    ) -> StoreResult<u64>;
    /// [`Self::create`] for the active account with address `email`, read and locked in the
    /// same transaction: a code login, which knows only the address, reads nothing before.
    /// The session and `event` are that account's. Returns the session, the account and how
    /// many sessions ended; None, with nothing written, when the address has no active
    /// account.
    async fn create_for_address(
        &self,
        email: &EmailAddress,
        session: NewSession,
        refresh_digest: &str,
        limit: SessionLimit,
        event: AuthEvent,
    ) -> StoreResult<Option<(Session, User, u64)>>;
    /// The session with `id`, revoked or not.
    async fn find(&self, id: SessionId) -> StoreResult<Option<Session>>;
    /// The session with `id`, revoked or not, and its account, in one read: every
    /// authenticated request asks for both. With [`SessionRead::MayBeCached`] a live session
    /// may come from this instance's recent copy (see `store/session_cache.rs`): revoked
    /// sessions never do, but its `last_used_at` may be older than the database's.
    async fn find_with_user(
        &self,
        id: SessionId,
        read: SessionRead,
    ) -> StoreResult<Option<(Session, User)>>;
    /// Exchanges the refresh token with digest `presented` for `successor` (the digest the
    /// caller derived from the presented token), atomically: of concurrent exchanges of one
    /// token, one rotates and the others see `Replayed` (within the grace window) or
    /// `ReuseDetected`. A `Rotated` or `Replayed` answer comes with the session's account,
    /// read with the session (the caller needs both for the new pair).
    async fn exchange(
        &self,
        presented: &str,
        successor: &str,
        now: OffsetDateTime,
        rules: RefreshRules,
    ) -> StoreResult<Exchanged>;
    /// The user's live sessions: not revoked, not past their lifetime at `now`, used after
    /// `used_after` (the idle cut-off); newest first.
    async fn list(
        &self,
        user_id: UserId,
        now: OffsetDateTime,
        used_after: OffsetDateTime,
    ) -> StoreResult<Vec<Session>>;
    /// Revokes one of the user's sessions; false if it is not theirs or already revoked.
    /// Only a live session counts: not past its lifetime at `now` and used after `used_after`
    /// (the idle cut-off).
    async fn revoke(
        &self,
        id: SessionId,
        user_id: UserId,
        now: OffsetDateTime,
        used_after: OffsetDateTime,
        reason: &str,
    ) -> StoreResult<bool>;
    /// Revokes every live session of the user (as for `revoke`) except `keep`; returns how many.
    async fn revoke_all(
        &self,
        user_id: UserId,
        keep: Option<SessionId>,
        now: OffsetDateTime,
        used_after: OffsetDateTime,
        reason: &str,
    ) -> StoreResult<u64>;
}

/// Where [`SessionStore::find_with_user`] may answer from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SessionRead {
    /// This instance's recent copy will do.
    MayBeCached,
    /// The database itself.
    Fresh,
}

/// Work a store needs done for as long as the service runs.
#[async_trait]
pub trait Background: Send + Sync {
    /// Runs until `stopped` turns true.
    async fn run(&self, stopped: tokio::sync::watch::Receiver<bool>);
}

/// An access-token signing key as stored.
#[derive(Clone)]
pub struct StoredKey {
    /// Key id (the JWT `kid`).
    pub kid: String,
    /// PKCS#8 DER of the Ed25519 private key (the store seals it at rest).
    pub private_key: Vec<u8>,
    /// When it was made (and published).
    pub created_at: OffsetDateTime,
    /// When it starts signing.
    pub activates_at: OffsetDateTime,
    /// When it stops signing (its successor's `activates_at`), once a successor exists.
    pub retired_at: Option<OffsetDateTime>,
}

impl std::fmt::Debug for StoredKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StoredKey")
            .field("kid", &self.kid)
            .field("created_at", &self.created_at)
            .field("activates_at", &self.activates_at)
            .field("retired_at", &self.retired_at)
            .finish_non_exhaustive()
    }
}

/// Signing keys shared by every instance.
#[async_trait]
pub trait KeyStore: Send + Sync {
    /// Keys not revoked, and not retired or retired after `retired_after`, newest first.
    async fn published(&self, retired_after: OffsetDateTime) -> StoreResult<Vec<StoredKey>>;
    /// Adds `new` as the newest key and retires `current` at `new.activates_at` (None: only if
    /// there is no key yet). False when another instance got there first: reload, use theirs.
    async fn publish_next(&self, current: Option<&str>, new: &StoredKey) -> StoreResult<bool>;
    /// Revokes the key `kid` at `now`: it is unpublished and never signs again. If it was a
    /// staged key (not signing yet), the key it was to replace stays current; if the newest key
    /// was staged to sign later, it signs from `now`; if no key is left, `replacement`
    /// (activating at `now`) becomes the newest. One transaction.
    async fn revoke(
        &self,
        kid: &str,
        now: OffsetDateTime,
        replacement: &StoredKey,
    ) -> StoreResult<KeyRevocation>;
}

/// What revoking a signing key did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyRevocation {
    /// No published key has that `kid` (unknown, or already revoked).
    NotFound,
    /// The key is revoked; `signing` is the key that signs from now on.
    Revoked {
        /// The `kid` of the key that signs now.
        signing: String,
    },
}

/// Server-side secrets generated once and shared by every instance (code-hash key, refresh
/// key, outbox key, Redis key-name key), sealed at rest by the store.
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

    /// Closes the connections at shutdown (waiting for those in use to be returned); later
    /// calls fail. Connections that close by being dropped need nothing more.
    async fn close(&self) {}
}

/// Expired-row clean-up for backends without their own expiry.
#[async_trait]
pub trait Sweep: Send + Sync {
    /// Deletes what `cutoffs` says has expired, in batches of [`SWEEP_BATCH`] rows per
    /// statement (each bounded by the dependency timeout) until none is left; returns rows
    /// removed.
    async fn sweep_expired(&self, cutoffs: SweepCutoffs) -> StoreResult<u64>;
}

/// Rows deleted per sweep statement, so a large backlog drains in short statements.
pub const SWEEP_BATCH: u32 = 1000;

/// What a sweep deletes.
#[derive(Debug, Clone, Copy)]
pub struct SweepCutoffs {
    /// Codes, cooldowns and sessions that expired before this.
    pub now: OffsetDateTime,
    /// Signing keys retired before this (no token they signed is still valid).
    pub keys_retired_before: OffsetDateTime,
    /// Pending accounts last registered before this (never verified).
    pub pending_before: OffsetDateTime,
    /// Outbox rows finished (sent, dead, expired) before this.
    pub outbox_finished_before: OffsetDateTime,
    /// Audit events recorded before this (the retention).
    pub events_before: OffsetDateTime,
}

/// Every store the service uses, chosen once from the settings.
#[derive(Clone)]
pub struct Stores {
    /// Accounts (SQL).
    pub users: Arc<dyn UserStore>,
    /// One-time codes (Redis or SQL).
    pub codes: Arc<dyn CodeStore>,
    /// Sessions and refresh tokens (SQL, whatever the cache).
    pub sessions: Arc<dyn SessionStore>,
    /// Shared server secrets (SQL).
    pub secrets: Arc<dyn SecretStore>,
    /// The SQL database, for readiness.
    pub database: Arc<dyn Ping>,
    /// Redis, when configured, for readiness.
    pub redis: Option<Arc<dyn Ping>>,
    /// Access-token signing keys (SQL).
    pub keys: Arc<dyn KeyStore>,
    /// The SQL clean-up job.
    pub sweeper: Arc<dyn Sweep>,
    /// The mail outbox (SQL: its rows share the transactions of the writes that cause them).
    pub outbox: Arc<dyn OutboxStore>,
    /// Rate-limit counters (Redis or SQL), per instance while that store is unreachable.
    pub limiter: Arc<dyn RateLimiter>,
    /// The audit trail (SQL).
    pub events: Arc<dyn AuthEventStore>,
    /// Follows the notices that keep the session copy honest, when there is one.
    pub revocation_notices: Option<Arc<dyn Background>>,
}

impl Stores {
    /// Connects to the configured backends and runs SQL migrations.
    pub async fn connect(settings: &Settings, clock: &dyn Clock) -> anyhow::Result<Self> {
        let timeout = settings.dependency_timeout;
        let sql = sql::connect(settings).await?;
        let key_name_secret =
            shared_secret(sql.secrets.as_ref(), clock, KEY_NAME_SECRET_NAME).await?;
        let sql_limiter = sql.limiter(key_name_secret.clone());
        let mut stores = Self {
            users: sql.users,
            codes: sql.codes,
            sessions: sql.sessions,
            secrets: sql.secrets,
            database: sql.ping,
            redis: None,
            keys: sql.keys,
            sweeper: sql.sweeper,
            outbox: sql.outbox,
            limiter: sql_limiter.clone(),
            events: sql.events,
            revocation_notices: sql.revocation_notices,
        };
        let mut shared_limiter = sql_limiter;
        if let Some(url) = &settings.redis_url {
            // A token read from Secrets Manager (`--features aws`), else AIDLC_REDIS_AUTH_TOKEN.
            let auth_token = redis_auth_token(settings).await?;
            let redis = Arc::new(
                redis::RedisStore::connect(
                    url,
                    auth_token.as_ref().or(settings.redis_auth_token.as_ref()),
                    settings.redis_ca_file.as_deref(),
                    &settings.redis_key_prefix,
                    key_name_secret.clone(),
                    timeout,
                )
                .await?,
            );
            stores.codes = redis.clone();
            shared_limiter = redis.clone();
            stores.redis = Some(redis);
        }
        stores.limiter = Arc::new(limits::FallbackLimiter::new(
            shared_limiter,
            key_name_secret,
        ));
        Ok(stores)
    }
}

/// Name of the shared secret that keys the address digests in Redis key names and in the
/// names of rate-limit counters (its name predates the counters).
const KEY_NAME_SECRET_NAME: &str = "redis-key-name-key";

/// The Redis AUTH token, when one is configured apart from `REDIS_URL`: (`--features aws`) the
/// secret `AIDLC_REDIS_AUTH_SECRET_ARN` names, read once at start-up. It replaces a password
/// in the URL.
async fn redis_auth_token(settings: &Settings) -> anyhow::Result<Option<secrecy::SecretString>> {
    #[cfg(feature = "aws")]
    if let Some(arn) = &settings.redis_auth_secret_arn {
        use secrecy::ExposeSecret;
        let secrets = crate::aws::Secrets::new(&crate::aws::sdk_config(settings).await);
        let value = secrets.read(arn).await?;
        let token = crate::aws::redis_token(value.expose_secret())
            .with_context(|| format!("reading the Redis AUTH token from {arn}"))?;
        tracing::info!(secret = arn, "Redis AUTH token read from the secret");
        return Ok(Some(token));
    }
    #[cfg(not(feature = "aws"))]
    let _ = settings;
    Ok(None)
}

/// A 32-byte secret shared by every instance through the database, created on first start.
pub async fn shared_secret(
    secrets: &dyn SecretStore,
    clock: &dyn Clock,
    name: &str,
) -> anyhow::Result<Vec<u8>> {
    let mut candidate = [0u8; 32];
    rand::rng().fill_bytes(&mut candidate);
    secrets
        .get_or_create(name, &candidate, clock.now())
        .await
        .with_context(|| format!("loading the shared secret {name}"))
}

/// The outbox alone (for `aidlc-auth outbox`).
pub async fn connect_outbox_store(settings: &Settings) -> anyhow::Result<Arc<dyn OutboxStore>> {
    Ok(sql::connect(settings).await?.outbox)
}

/// The signing-key store alone (for `keys rotate`, which needs neither Redis nor the rest).
pub async fn connect_key_store(settings: &Settings) -> anyhow::Result<Arc<dyn KeyStore>> {
    Ok(sql::connect(settings).await?.keys)
}

/// `keys rewrap`: every sealed row re-sealed under the current key-encryption key, in one
/// transaction (after it, the previous key can be removed).
pub async fn rewrap_keys(settings: &Settings) -> anyhow::Result<RewrapCounts> {
    sql::connect(settings).await?.sealed.rewrap().await
}

/// Applies the SQL migrations for the configured database and returns.
pub async fn migrate(settings: &Settings) -> anyhow::Result<()> {
    sql::connect(settings).await.map(drop)
}
