//! The SQL both dialects share: one plain implementation of each store over [`SqlPool`], the
//! enum of the two pools. Statement texts are written once (sqlx's SQLite driver accepts `$n`
//! placeholders); [`sql!`] and [`sql_tx!`] expand one statement into its two match arms.

mod at_rest;
mod codes;
mod combined;
mod events;
mod keys;
mod limits;
mod outbox;
mod postgres;
mod refresh;
mod revocations;
#[cfg(feature = "aws")]
mod rotation;
mod secrets;
mod session_start;
mod sessions;
mod sqlite;
mod users;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use sqlx::encode::IsNull;
use sqlx::error::BoxDynError;
use sqlx::postgres::PgPool;
use sqlx::sqlite::SqlitePool;
use sqlx::{Database, Decode, Encode, Postgres, Sqlite, Transaction, Type};
use time::macros::format_description;
use time::{OffsetDateTime, UtcOffset};

pub use self::at_rest::RewrapCounts;
use self::at_rest::SqlKeyStore;
use super::limits::RateLimiter;
use super::session_cache::SessionCache;
use super::{
    AuthEventStore, Background, CodeStore, KeyStore, OutboxStore, Ping, SWEEP_BATCH, SecretStore,
    SessionStore, StoreError, StoreResult, Sweep, SweepCutoffs, UserStore, bounded,
};
use crate::config::{DatabaseKind, Settings};
use crate::domain::{SessionId, UserId};

/// The connection pool of whichever database is configured.
#[derive(Clone)]
pub(crate) enum SqlPool {
    Postgres(PgPool),
    Sqlite(SqlitePool),
}

/// An open transaction on a [`SqlPool`]; dropped without `commit`, it rolls back.
pub(crate) enum SqlTx {
    Postgres(Transaction<'static, Postgres>),
    Sqlite(Transaction<'static, Sqlite>),
}

impl SqlPool {
    /// Starts a transaction.
    pub(crate) async fn begin(&self) -> Result<SqlTx, sqlx::Error> {
        Ok(match self {
            Self::Postgres(pool) => SqlTx::Postgres(pool.begin().await?),
            Self::Sqlite(pool) => SqlTx::Sqlite(pool.begin().await?),
        })
    }

    /// Starts a transaction that reads rows and then rewrites them: on SQLite it takes the
    /// write lock at once (`BEGIN IMMEDIATE`), since a deferred transaction that has read
    /// cannot take it after another connection wrote.
    pub(crate) async fn begin_immediate(&self) -> Result<SqlTx, sqlx::Error> {
        Ok(match self {
            Self::Postgres(pool) => SqlTx::Postgres(pool.begin().await?),
            Self::Sqlite(pool) => SqlTx::Sqlite(pool.begin_with("BEGIN IMMEDIATE").await?),
        })
    }
}

impl SqlTx {
    /// Commits it.
    pub(crate) async fn commit(self) -> Result<(), sqlx::Error> {
        match self {
            Self::Postgres(tx) => tx.commit().await,
            Self::Sqlite(tx) => tx.commit().await,
        }
    }

    /// Rolls it back.
    pub(crate) async fn rollback(self) -> Result<(), sqlx::Error> {
        match self {
            Self::Postgres(tx) => tx.rollback().await,
            Self::Sqlite(tx) => tx.rollback().await,
        }
    }
}

/// Runs one statement on a [`SqlPool`], written once for both drivers:
/// `sql!(&self.pool, |db| { query.fetch_one(db).await })` expands to a `match` whose two arms
/// bind `db` to the PostgreSQL or the SQLite pool and repeat the body, so the body is
/// type-checked for both and must have one type for both (map a driver's query result to
/// `rows_affected()` or `()`). The body is not a closure: `.await` and `?` act in place.
macro_rules! sql {
    ($pool:expr, |$db:ident| $body:expr) => {
        match $pool {
            $crate::store::sql::SqlPool::Postgres($db) => $body,
            $crate::store::sql::SqlPool::Sqlite($db) => $body,
        }
    };
}

/// Runs one statement inside a [`SqlTx`]: like [`sql!`], with `db` bound to the transaction's
/// connection: `sql_tx!(&mut tx, |db| { query.execute(db).await })`.
macro_rules! sql_tx {
    ($tx:expr, |$db:ident| $body:expr) => {
        match $tx {
            $crate::store::sql::SqlTx::Postgres(tx) => {
                let $db = &mut **tx;
                $body
            }
            $crate::store::sql::SqlTx::Sqlite(tx) => {
                let $db = &mut **tx;
                $body
            }
        }
    };
}

/// Binds a [`crate::domain::Session`]'s columns onto `query`, in the order of every statement
/// that writes a session row: id, user_id, created_at, expires_at, last_used_at, user_agent,
/// ip (`$1`–`$7`).
macro_rules! bind_session {
    ($query:expr, $session:expr) => {
        $query
            .bind($session.id.0)
            .bind($session.user_id.0)
            .bind($crate::store::sql::DbTime($session.created_at))
            .bind($crate::store::sql::DbTime($session.expires_at))
            .bind($crate::store::sql::DbTime($session.last_used_at))
            .bind($session.user_agent.as_deref())
            .bind($session.ip.as_deref())
    };
}

/// Binds a [`crate::domain::AuthEvent`]'s columns onto `query`, in the order of every
/// statement that writes an audit row: id, user_id, event, outcome, ip (`$ip`, its address as
/// text), user_agent, request_id, created_at.
macro_rules! bind_event {
    ($query:expr, $event:expr, $ip:expr) => {
        $query
            .bind($event.id)
            .bind($event.user_id.map(|id| id.0))
            .bind($event.kind.as_str())
            .bind($event.outcome.as_str())
            .bind($ip)
            .bind($event.user_agent.as_deref())
            .bind($event.request_id.as_deref())
            .bind($crate::store::sql::DbTime($event.at))
    };
}

use {bind_event, bind_session, sql, sql_tx};

/// The SQL implementation of every store, over one pool.
pub(crate) struct SqlStore {
    pub(crate) pool: SqlPool,
    pub(crate) timeout: Duration,
    /// Fresh credentials for when PostgreSQL rejects the password (a rotated secret).
    pub(crate) reauth: Option<Arc<dyn Reauthenticate>>,
    /// Copies of sessions just read (PostgreSQL, when configured): every revocation through
    /// this store forgets its entries before it returns.
    pub(crate) session_cache: Option<Arc<SessionCache>>,
}

/// Installs fresh database credentials in the pool when the server rejected the password.
#[async_trait]
pub(crate) trait Reauthenticate: Send + Sync {
    /// True when the pool has credentials worth one more try (new ones, or ones installed by
    /// another caller a moment ago).
    async fn reauthenticate(&self) -> bool;
}

/// SQLSTATE `invalid_password`: PostgreSQL rejected the credentials while connecting.
const INVALID_PASSWORD: &str = "28P01";

/// True when `e` (anywhere in its chain) is PostgreSQL rejecting the password.
fn is_rejected_password(e: &anyhow::Error) -> bool {
    e.chain().any(|cause| {
        matches!(
            cause.downcast_ref::<sqlx::Error>(),
            Some(sqlx::Error::Database(db)) if db.code().as_deref() == Some(INVALID_PASSWORD)
        )
    })
}

impl SqlStore {
    /// This instance revoked the session (or may have): its copy goes.
    pub(crate) fn forget_session(&self, id: SessionId) {
        if let Some(cache) = &self.session_cache {
            cache.forget_session(id);
        }
    }

    /// The account changed, or some of its sessions ended: every copy of theirs goes.
    pub(crate) fn forget_user(&self, id: UserId) {
        if let Some(cache) = &self.session_cache {
            cache.forget_user(id);
        }
    }

    /// Runs `op` under the dependency timeout like [`bounded`]. When PostgreSQL rejected the
    /// password, `op` ran nothing on that connection (authentication comes first): the
    /// credentials are read again and `op` runs once more, so the request that meets a rotated
    /// password is the one that picks up the new one.
    pub(crate) async fn run<T, E, F>(
        &self,
        what: &'static str,
        op: impl Fn() -> F,
    ) -> StoreResult<T>
    where
        F: Future<Output = Result<T, E>>,
        E: std::error::Error + Send + Sync + 'static,
    {
        match bounded(self.timeout, what, op()).await {
            Err(StoreError::Unavailable(e)) if is_rejected_password(&e) => {
                let Some(reauth) = &self.reauth else {
                    return Err(StoreError::Unavailable(e));
                };
                if reauth.reauthenticate().await {
                    bounded(self.timeout, what, op()).await
                } else {
                    Err(StoreError::Unavailable(e))
                }
            }
            other => other,
        }
    }
}

/// The SQL stores as trait objects.
pub(crate) struct SqlHandles {
    pub users: Arc<dyn UserStore>,
    pub codes: Arc<dyn CodeStore>,
    pub sessions: Arc<dyn SessionStore>,
    pub secrets: Arc<dyn SecretStore>,
    pub ping: Arc<dyn Ping>,
    pub keys: Arc<dyn KeyStore>,
    pub sweeper: Arc<dyn Sweep>,
    pub outbox: Arc<dyn OutboxStore>,
    /// The sealed tables themselves, for `keys rewrap`.
    pub sealed: Arc<SqlKeyStore>,
    store: Arc<SqlStore>,
    pub events: Arc<dyn AuthEventStore>,
    /// Keeps the session copy honest (PostgreSQL with the copy configured).
    pub revocation_notices: Option<Arc<dyn Background>>,
}

impl SqlHandles {
    /// Rate-limit counters on the same pool, their names keyed with `secret`.
    pub fn limiter(&self, secret: Vec<u8>) -> Arc<dyn RateLimiter> {
        Arc::new(limits::SqlLimiter {
            pool: self.store.pool.clone(),
            timeout: self.store.timeout,
            secret,
        })
    }

    fn new(store: Arc<SqlStore>, sealed: Arc<SqlKeyStore>) -> Self {
        let revocation_notices = match (&store.pool, &store.session_cache) {
            (SqlPool::Postgres(pool), Some(cache)) => {
                Some(Arc::new(revocations::RevocationNotices {
                    pool: pool.clone(),
                    cache: cache.clone(),
                    timeout: store.timeout,
                }) as Arc<dyn Background>)
            }
            _ => None,
        };
        Self {
            revocation_notices,
            users: store.clone(),
            codes: store.clone(),
            sessions: store.clone(),
            ping: store.clone(),
            outbox: store.clone(),
            events: store.clone(),
            sweeper: store.clone(),
            secrets: sealed.clone(),
            keys: sealed.clone(),
            sealed,
            store,
        }
    }
}

/// Connects to `DATABASE_URL` (PostgreSQL or SQLite), applies its migrations, and checks the
/// keys at rest open with the configured key-encryption keys (sealing rows kept in clear by
/// earlier versions); a wrong key fails here, before anything is written.
pub(crate) async fn connect(settings: &Settings) -> anyhow::Result<SqlHandles> {
    let store = match settings.database_kind() {
        Some(DatabaseKind::Postgres) => postgres::connect(settings).await?,
        Some(DatabaseKind::Sqlite) => sqlite::connect(settings).await?,
        None => {
            anyhow::bail!("DATABASE_URL must start with postgres://, postgresql:// or sqlite:")
        }
    };
    let store = Arc::new(store);
    let sealed = Arc::new(SqlKeyStore::open(settings, store.clone()).await?);
    Ok(SqlHandles::new(store, sealed))
}

/// A UTC timestamp as both dialects store it: `TIMESTAMPTZ` in PostgreSQL, fixed-width
/// RFC 3339 text in SQLite (always six fractional digits and `Z`, so text order is time order
/// and `expires_at > $now` means the same thing in both).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct DbTime(pub OffsetDateTime);

impl Type<Sqlite> for DbTime {
    fn type_info() -> <Sqlite as Database>::TypeInfo {
        <OffsetDateTime as Type<Sqlite>>::type_info()
    }
    fn compatible(ty: &<Sqlite as Database>::TypeInfo) -> bool {
        <OffsetDateTime as Type<Sqlite>>::compatible(ty)
    }
}

impl Encode<'_, Sqlite> for DbTime {
    fn encode_by_ref(
        &self,
        buf: &mut <Sqlite as Database>::ArgumentBuffer,
    ) -> Result<IsNull, BoxDynError> {
        let fixed = format_description!(
            "[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:6]Z"
        );
        let text = self.0.to_offset(UtcOffset::UTC).format(&fixed)?;
        Encode::<Sqlite>::encode(text, buf)
    }
}

impl<'r> Decode<'r, Sqlite> for DbTime {
    fn decode(value: <Sqlite as Database>::ValueRef<'r>) -> Result<Self, BoxDynError> {
        <OffsetDateTime as Decode<Sqlite>>::decode(value).map(Self)
    }
}

impl Type<Postgres> for DbTime {
    fn type_info() -> <Postgres as Database>::TypeInfo {
        <OffsetDateTime as Type<Postgres>>::type_info()
    }
    fn compatible(ty: &<Postgres as Database>::TypeInfo) -> bool {
        <OffsetDateTime as Type<Postgres>>::compatible(ty)
    }
}

impl Encode<'_, Postgres> for DbTime {
    fn encode_by_ref(
        &self,
        buf: &mut <Postgres as Database>::ArgumentBuffer,
    ) -> Result<IsNull, BoxDynError> {
        Encode::<Postgres>::encode_by_ref(&self.0, buf)
    }
}

impl<'r> Decode<'r, Postgres> for DbTime {
    fn decode(value: <Postgres as Database>::ValueRef<'r>) -> Result<Self, BoxDynError> {
        <OffsetDateTime as Decode<Postgres>>::decode(value).map(Self)
    }
}

// Each deletes at most $2 rows, so one statement stays short however large the backlog.
const SWEEP_CODES: &str = "DELETE FROM verification_codes WHERE (email, purpose) IN \
     (SELECT email, purpose FROM verification_codes WHERE expires_at <= $1 LIMIT $2)";
const SWEEP_COOLDOWNS: &str = "DELETE FROM code_cooldowns WHERE (email, purpose) IN \
     (SELECT email, purpose FROM code_cooldowns WHERE until <= $1 LIMIT $2)";
const SWEEP_SESSIONS: &str = "DELETE FROM sessions WHERE id IN \
     (SELECT id FROM sessions WHERE expires_at <= $1 LIMIT $2)";
const SWEEP_KEYS: &str = "DELETE FROM signing_keys WHERE kid IN \
     (SELECT kid FROM signing_keys WHERE retired_at <= $1 LIMIT $2)";
// Their registrations go with them (ON DELETE CASCADE); a pending account has no sessions.
const SWEEP_PENDING_USERS: &str = "DELETE FROM users WHERE id IN \
     (SELECT id FROM users WHERE status = 'pending' AND updated_at <= $1 LIMIT $2)";

const SWEEP_LIMIT_HITS: &str = "DELETE FROM rate_limit_hits WHERE (name, id) IN \
     (SELECT name, id FROM rate_limit_hits WHERE expires_at <= $1 LIMIT $2)";
const SWEEP_LIMIT_KEYS: &str = "DELETE FROM rate_limit_keys WHERE name IN \
     (SELECT name FROM rate_limit_keys WHERE expires_at <= $1 LIMIT $2)";
const SWEEP_EVENTS: &str = "DELETE FROM auth_events WHERE id IN \
     (SELECT id FROM auth_events WHERE created_at <= $1 LIMIT $2)";

const SWEEP_OUTBOX: &str = "DELETE FROM outbox WHERE id IN (SELECT id FROM outbox \
     WHERE status IN ('sent', 'dead', 'expired') AND updated_at <= $1 LIMIT $2)";

/// Batches one sweep runs per statement at most; the rest waits for the next sweep, so a
/// sweep never monopolises the database.
const MAX_SWEEP_BATCHES: u32 = 100;

/// Time left from `now` until `until`, zero if past.
pub(crate) fn remaining(until: OffsetDateTime, now: OffsetDateTime) -> Duration {
    Duration::try_from(until - now).unwrap_or(Duration::ZERO)
}

#[async_trait]
impl Ping for SqlStore {
    async fn ping(&self) -> StoreResult<()> {
        self.run("pinging database", move || async move {
            sql!(&self.pool, |db| {
                sqlx::query("SELECT 1").execute(db).await.map(drop)
            })
        })
        .await
    }

    async fn close(&self) {
        match &self.pool {
            SqlPool::Postgres(pool) => pool.close().await,
            SqlPool::Sqlite(pool) => pool.close().await,
        }
    }
}

#[async_trait]
impl Sweep for SqlStore {
    async fn sweep_expired(&self, cutoffs: SweepCutoffs) -> StoreResult<u64> {
        let mut removed = 0;
        for (statement, cutoff) in [
            (SWEEP_CODES, cutoffs.now),
            (SWEEP_COOLDOWNS, cutoffs.now),
            (SWEEP_SESSIONS, cutoffs.now),
            (SWEEP_KEYS, cutoffs.keys_retired_before),
            (SWEEP_PENDING_USERS, cutoffs.pending_before),
            (SWEEP_OUTBOX, cutoffs.outbox_finished_before),
            (SWEEP_LIMIT_HITS, cutoffs.now),
            (SWEEP_LIMIT_KEYS, cutoffs.now),
            (SWEEP_EVENTS, cutoffs.events_before),
        ] {
            for _ in 0..MAX_SWEEP_BATCHES {
                let deleted = self
                    .run("sweeping expired rows", move || async move {
                        sql!(&self.pool, |db| {
                            sqlx::query(statement)
                                .bind(DbTime(cutoff))
                                .bind(i64::from(SWEEP_BATCH))
                                .execute(db)
                                .await
                                .map(|done| done.rows_affected())
                        })
                    })
                    .await?;
                removed += deleted;
                if deleted < u64::from(SWEEP_BATCH) {
                    break;
                }
            }
        }
        Ok(removed)
    }
}
