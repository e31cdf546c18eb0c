//! The SQL both dialects share: statement texts, row types, and one implementation of the
//! store traits instantiated for PostgreSQL and for SQLite (sqlx's SQLite driver accepts `$n`).

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use secrecy::ExposeSecret;
use sqlx::encode::IsNull;
use sqlx::error::BoxDynError;
use sqlx::{Database, Decode, Encode, Pool, Postgres, Sqlite, Type};
use time::macros::format_description;
use time::{OffsetDateTime, UtcOffset};
use uuid::Uuid;

use super::{
    CodeCheck, CodeStore, Cooldown, Inserted, Ping, SecretStore, Session, SessionStore,
    StoreError, StoreResult, StoredCode, Sweep, UserStore, bounded,
};
use crate::config::Settings;
use crate::domain::{
    CodePurpose, EmailAddress, FullName, PasswordHash, User, UserId, UserStatus,
};

/// The SQL implementation of every store, over one pool.
pub(crate) struct SqlStore<DB: Database> {
    pub(crate) pool: Pool<DB>,
    pub(crate) timeout: Duration,
}

/// The SQL stores as trait objects.
pub(crate) struct SqlHandles {
    pub users: Arc<dyn UserStore>,
    pub codes: Arc<dyn CodeStore>,
    pub sessions: Arc<dyn SessionStore>,
    pub secrets: Arc<dyn SecretStore>,
    pub ping: Arc<dyn Ping>,
    pub sweeper: Arc<dyn Sweep>,
}

impl SqlHandles {
    fn from_store<S>(store: S) -> Self
    where
        S: UserStore + CodeStore + SessionStore + SecretStore + Ping + Sweep + 'static,
    {
        let store = Arc::new(store);
        Self {
            users: store.clone(),
            codes: store.clone(),
            sessions: store.clone(),
            secrets: store.clone(),
            ping: store.clone(),
            sweeper: store,
        }
    }
}

/// Connects to `DATABASE_URL` (PostgreSQL or SQLite) and applies its migrations.
pub(crate) async fn connect(settings: &Settings) -> anyhow::Result<SqlHandles> {
    let url = settings.database_url.expose_secret();
    if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        Ok(SqlHandles::from_store(super::postgres::connect(settings).await?))
    } else if url.starts_with("sqlite:") {
        Ok(SqlHandles::from_store(super::sqlite::connect(settings).await?))
    } else {
        anyhow::bail!("DATABASE_URL must start with postgres://, postgresql:// or sqlite:")
    }
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

#[derive(sqlx::FromRow)]
struct UserRow {
    id: Uuid,
    email: String,
    full_name: String,
    password_hash: String,
    status: String,
    created_at: DbTime,
    updated_at: DbTime,
    verified_at: Option<DbTime>,
}

impl TryFrom<UserRow> for User {
    type Error = StoreError;

    fn try_from(row: UserRow) -> Result<Self, Self::Error> {
        let corrupt = |what: &str| StoreError::Corrupt(anyhow::anyhow!("user {}: {what}", row.id));
        Ok(User {
            id: UserId(row.id),
            email: EmailAddress::parse(&row.email).map_err(|_| corrupt("stored email"))?,
            full_name: FullName::parse(&row.full_name).map_err(|_| corrupt("stored full_name"))?,
            password_hash: PasswordHash::from_phc(row.password_hash),
            status: UserStatus::from_stored(&row.status).ok_or_else(|| corrupt("stored status"))?,
            created_at: row.created_at.0,
            updated_at: row.updated_at.0,
            verified_at: row.verified_at.map(|t| t.0),
        })
    }
}

#[derive(sqlx::FromRow)]
struct SessionRow {
    id: Uuid,
    user_id: Uuid,
    created_at: DbTime,
    expires_at: DbTime,
    user_agent: Option<String>,
    ip: Option<String>,
}

impl From<SessionRow> for Session {
    fn from(row: SessionRow) -> Self {
        Session {
            id: row.id,
            user_id: row.user_id,
            created_at: row.created_at.0,
            expires_at: row.expires_at.0,
            user_agent: row.user_agent,
            ip: row.ip,
        }
    }
}

const FIND_USER_BY_EMAIL: &str = "SELECT id, email, full_name, password_hash, status, \
     created_at, updated_at, verified_at FROM users WHERE email = $1";
const FIND_USER_BY_ID: &str = "SELECT id, email, full_name, password_hash, status, \
     created_at, updated_at, verified_at FROM users WHERE id = $1";
const INSERT_USER: &str = "INSERT INTO users (id, email, full_name, password_hash, status, \
     created_at, updated_at, verified_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8) \
     ON CONFLICT (email) DO NOTHING";
const UPDATE_PENDING_USER: &str = "UPDATE users SET full_name = $2, password_hash = $3, \
     updated_at = $4 WHERE id = $1 AND status = 'pending'";
const ACTIVATE_USER: &str = "UPDATE users SET status = 'active', verified_at = $2, \
     updated_at = $2 WHERE id = $1 AND status = 'pending'";

const PUT_CODE: &str = "INSERT INTO verification_codes (email, purpose, code_hash, attempts, \
     expires_at, created_at) VALUES ($1, $2, $3, 0, $4, $5) \
     ON CONFLICT (email, purpose) DO UPDATE SET code_hash = excluded.code_hash, attempts = 0, \
     expires_at = excluded.expires_at, created_at = excluded.created_at";
// One statement decides the winner: of concurrent correct tries, exactly one deletes the row.
const CONSUME_CODE: &str = "DELETE FROM verification_codes WHERE email = $1 AND purpose = $2 \
     AND code_hash = $3 AND expires_at > $4 AND attempts < $5 RETURNING email";
const COUNT_WRONG_TRY: &str = "UPDATE verification_codes SET attempts = attempts + 1 \
     WHERE email = $1 AND purpose = $2";
const DELETE_EXHAUSTED_CODE: &str = "DELETE FROM verification_codes WHERE email = $1 \
     AND purpose = $2 AND (attempts >= $3 OR expires_at <= $4)";
const START_COOLDOWN: &str = "INSERT INTO code_cooldowns (email, purpose, until) \
     VALUES ($1, $2, $3) ON CONFLICT (email, purpose) DO UPDATE SET until = excluded.until \
     WHERE code_cooldowns.until <= $4 RETURNING until";
const FIND_COOLDOWN: &str = "SELECT until FROM code_cooldowns WHERE email = $1 AND purpose = $2";
const CLEAR_COOLDOWN: &str = "DELETE FROM code_cooldowns WHERE email = $1 AND purpose = $2";

const INSERT_SESSION: &str = "INSERT INTO sessions (id, token_hash, user_id, created_at, \
     expires_at, user_agent, ip) VALUES ($1, $2, $3, $4, $5, $6, $7)";
const FIND_SESSION: &str = "SELECT id, user_id, created_at, expires_at, user_agent, ip \
     FROM sessions WHERE token_hash = $1 AND expires_at > $2";
const REVOKE_SESSION: &str = "DELETE FROM sessions WHERE token_hash = $1";

const INSERT_SECRET: &str = "INSERT INTO server_secrets (name, value, created_at) \
     VALUES ($1, $2, $3) ON CONFLICT (name) DO NOTHING";
const FIND_SECRET: &str = "SELECT value FROM server_secrets WHERE name = $1";

const SWEEP_CODES: &str = "DELETE FROM verification_codes WHERE expires_at <= $1";
const SWEEP_COOLDOWNS: &str = "DELETE FROM code_cooldowns WHERE until <= $1";
const SWEEP_SESSIONS: &str = "DELETE FROM sessions WHERE expires_at <= $1";

fn remaining(until: OffsetDateTime, now: OffsetDateTime) -> Duration {
    Duration::try_from(until - now).unwrap_or(Duration::ZERO)
}

/// Implements every store trait for `SqlStore<$db>` from the shared statements above.
macro_rules! impl_sql_store {
    ($db:ty) => {
        #[async_trait]
        impl UserStore for SqlStore<$db> {
            async fn find_by_email(&self, email: &EmailAddress) -> StoreResult<Option<User>> {
                let row = bounded(self.timeout, "finding user by email", async {
                    sqlx::query_as::<_, UserRow>(FIND_USER_BY_EMAIL)
                        .bind(email.as_str())
                        .fetch_optional(&self.pool)
                        .await
                })
                .await?;
                row.map(User::try_from).transpose()
            }

            async fn find_by_id(&self, id: UserId) -> StoreResult<Option<User>> {
                let row = bounded(self.timeout, "finding user by id", async {
                    sqlx::query_as::<_, UserRow>(FIND_USER_BY_ID)
                        .bind(id.0)
                        .fetch_optional(&self.pool)
                        .await
                })
                .await?;
                row.map(User::try_from).transpose()
            }

            async fn insert(&self, user: &User) -> StoreResult<Inserted> {
                let result = bounded(self.timeout, "inserting user", async {
                    sqlx::query(INSERT_USER)
                        .bind(user.id.0)
                        .bind(user.email.as_str())
                        .bind(user.full_name.as_str())
                        .bind(user.password_hash.as_str())
                        .bind(user.status.as_str())
                        .bind(DbTime(user.created_at))
                        .bind(DbTime(user.updated_at))
                        .bind(user.verified_at.map(DbTime))
                        .execute(&self.pool)
                        .await
                })
                .await?;
                Ok(if result.rows_affected() == 1 {
                    Inserted::Created
                } else {
                    Inserted::EmailTaken
                })
            }

            async fn update_pending(
                &self,
                id: UserId,
                full_name: &FullName,
                password_hash: &PasswordHash,
                now: OffsetDateTime,
            ) -> StoreResult<bool> {
                let result = bounded(self.timeout, "updating pending user", async {
                    sqlx::query(UPDATE_PENDING_USER)
                        .bind(id.0)
                        .bind(full_name.as_str())
                        .bind(password_hash.as_str())
                        .bind(DbTime(now))
                        .execute(&self.pool)
                        .await
                })
                .await?;
                Ok(result.rows_affected() == 1)
            }

            async fn activate(&self, id: UserId, now: OffsetDateTime) -> StoreResult<bool> {
                let result = bounded(self.timeout, "activating user", async {
                    sqlx::query(ACTIVATE_USER)
                        .bind(id.0)
                        .bind(DbTime(now))
                        .execute(&self.pool)
                        .await
                })
                .await?;
                Ok(result.rows_affected() == 1)
            }
        }

        #[async_trait]
        impl CodeStore for SqlStore<$db> {
            async fn put(
                &self,
                email: &EmailAddress,
                purpose: CodePurpose,
                code: &StoredCode,
            ) -> StoreResult<()> {
                bounded(self.timeout, "storing code", async {
                    sqlx::query(PUT_CODE)
                        .bind(email.as_str())
                        .bind(purpose.as_str())
                        .bind(code.hash.as_str())
                        .bind(DbTime(code.expires_at))
                        .bind(DbTime(code.expires_at))
                        .execute(&self.pool)
                        .await
                })
                .await
                .map(drop)
            }

            async fn consume(
                &self,
                email: &EmailAddress,
                purpose: CodePurpose,
                hash: &str,
                now: OffsetDateTime,
                max_attempts: u32,
            ) -> StoreResult<CodeCheck> {
                let max = i32::try_from(max_attempts).unwrap_or(i32::MAX);
                bounded(self.timeout, "checking code", async {
                    let consumed = sqlx::query(CONSUME_CODE)
                        .bind(email.as_str())
                        .bind(purpose.as_str())
                        .bind(hash)
                        .bind(DbTime(now))
                        .bind(max)
                        .fetch_optional(&self.pool)
                        .await?;
                    if consumed.is_some() {
                        return Ok(CodeCheck::Accepted);
                    }
                    sqlx::query(COUNT_WRONG_TRY)
                        .bind(email.as_str())
                        .bind(purpose.as_str())
                        .execute(&self.pool)
                        .await?;
                    sqlx::query(DELETE_EXHAUSTED_CODE)
                        .bind(email.as_str())
                        .bind(purpose.as_str())
                        .bind(max)
                        .bind(DbTime(now))
                        .execute(&self.pool)
                        .await?;
                    Ok::<_, sqlx::Error>(CodeCheck::Rejected)
                })
                .await
            }

            async fn start_cooldown(
                &self,
                email: &EmailAddress,
                purpose: CodePurpose,
                now: OffsetDateTime,
                length: Duration,
            ) -> StoreResult<Cooldown> {
                bounded(self.timeout, "starting resend cooldown", async {
                    let started = sqlx::query(START_COOLDOWN)
                        .bind(email.as_str())
                        .bind(purpose.as_str())
                        .bind(DbTime(now + length))
                        .bind(DbTime(now))
                        .fetch_optional(&self.pool)
                        .await?;
                    if started.is_some() {
                        return Ok(Cooldown::Started);
                    }
                    let until: Option<DbTime> = sqlx::query_scalar(FIND_COOLDOWN)
                        .bind(email.as_str())
                        .bind(purpose.as_str())
                        .fetch_optional(&self.pool)
                        .await?;
                    Ok::<_, sqlx::Error>(Cooldown::Active(
                        until.map_or(length, |u| remaining(u.0, now)),
                    ))
                })
                .await
            }

            async fn clear_cooldown(
                &self,
                email: &EmailAddress,
                purpose: CodePurpose,
            ) -> StoreResult<()> {
                bounded(self.timeout, "clearing resend cooldown", async {
                    sqlx::query(CLEAR_COOLDOWN)
                        .bind(email.as_str())
                        .bind(purpose.as_str())
                        .execute(&self.pool)
                        .await
                })
                .await
                .map(drop)
            }
        }

        #[async_trait]
        impl SessionStore for SqlStore<$db> {
            async fn create(&self, token_digest: &str, session: &Session) -> StoreResult<()> {
                bounded(self.timeout, "creating session", async {
                    sqlx::query(INSERT_SESSION)
                        .bind(session.id)
                        .bind(token_digest)
                        .bind(session.user_id)
                        .bind(DbTime(session.created_at))
                        .bind(DbTime(session.expires_at))
                        .bind(session.user_agent.as_deref())
                        .bind(session.ip.as_deref())
                        .execute(&self.pool)
                        .await
                })
                .await
                .map(drop)
            }

            async fn find(
                &self,
                token_digest: &str,
                now: OffsetDateTime,
            ) -> StoreResult<Option<Session>> {
                let row = bounded(self.timeout, "finding session", async {
                    sqlx::query_as::<_, SessionRow>(FIND_SESSION)
                        .bind(token_digest)
                        .bind(DbTime(now))
                        .fetch_optional(&self.pool)
                        .await
                })
                .await?;
                Ok(row.map(Session::from))
            }

            async fn revoke(&self, token_digest: &str) -> StoreResult<bool> {
                let result = bounded(self.timeout, "revoking session", async {
                    sqlx::query(REVOKE_SESSION)
                        .bind(token_digest)
                        .execute(&self.pool)
                        .await
                })
                .await?;
                Ok(result.rows_affected() > 0)
            }
        }

        #[async_trait]
        impl SecretStore for SqlStore<$db> {
            async fn get_or_create(
                &self,
                name: &str,
                candidate: &[u8],
                now: OffsetDateTime,
            ) -> StoreResult<Vec<u8>> {
                bounded(self.timeout, "loading server secret", async {
                    sqlx::query(INSERT_SECRET)
                        .bind(name)
                        .bind(candidate)
                        .bind(DbTime(now))
                        .execute(&self.pool)
                        .await?;
                    sqlx::query_scalar::<_, Vec<u8>>(FIND_SECRET)
                        .bind(name)
                        .fetch_one(&self.pool)
                        .await
                })
                .await
            }
        }

        #[async_trait]
        impl Ping for SqlStore<$db> {
            async fn ping(&self) -> StoreResult<()> {
                bounded(self.timeout, "pinging database", async {
                    sqlx::query("SELECT 1").execute(&self.pool).await
                })
                .await
                .map(drop)
            }
        }

        #[async_trait]
        impl Sweep for SqlStore<$db> {
            async fn sweep_expired(&self, now: OffsetDateTime) -> StoreResult<u64> {
                let mut removed = 0;
                for statement in [SWEEP_CODES, SWEEP_COOLDOWNS, SWEEP_SESSIONS] {
                    let result = bounded(self.timeout, "sweeping expired rows", async {
                        sqlx::query(statement).bind(DbTime(now)).execute(&self.pool).await
                    })
                    .await?;
                    removed += result.rows_affected();
                }
                Ok(removed)
            }
        }
    };
}

impl_sql_store!(Postgres);
impl_sql_store!(Sqlite);
