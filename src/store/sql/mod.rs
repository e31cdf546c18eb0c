//! The SQL both dialects share. Each submodule holds one store's statement texts and one
//! implementation, written once as a macro and instantiated for PostgreSQL and for SQLite
//! (sqlx's SQLite driver accepts `$n` placeholders, so the text is the same).

mod codes;
mod keys;
mod sessions;
mod users;

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use secrecy::ExposeSecret;
use sqlx::encode::IsNull;
use sqlx::error::BoxDynError;
use sqlx::{Database, Decode, Encode, Pool, Postgres, Sqlite, Type};
use time::macros::format_description;
use time::{OffsetDateTime, UtcOffset};

use super::{
    CodeStore, KeyStore, Ping, SWEEP_BATCH, SecretStore, SessionStore, StoreResult, Sweep,
    SweepCutoffs, UserStore, bounded,
};
use crate::config::Settings;

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
    pub keys: Arc<dyn KeyStore>,
    pub sweeper: Arc<dyn Sweep>,
}

impl SqlHandles {
    fn from_store<S>(store: S) -> Self
    where
        S: UserStore + CodeStore + SessionStore + SecretStore + KeyStore + Ping + Sweep + 'static,
    {
        let store = Arc::new(store);
        Self {
            users: store.clone(),
            codes: store.clone(),
            sessions: store.clone(),
            secrets: store.clone(),
            ping: store.clone(),
            keys: store.clone(),
            sweeper: store,
        }
    }
}

/// Connects to `DATABASE_URL` (PostgreSQL or SQLite) and applies its migrations.
pub(crate) async fn connect(settings: &Settings) -> anyhow::Result<SqlHandles> {
    let url = settings.database_url.expose_secret();
    if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        Ok(SqlHandles::from_store(
            super::postgres::connect(settings).await?,
        ))
    } else if url.starts_with("sqlite:") {
        Ok(SqlHandles::from_store(
            super::sqlite::connect(settings).await?,
        ))
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

const INSERT_SECRET: &str = "INSERT INTO server_secrets (name, value, created_at) \
     VALUES ($1, $2, $3) ON CONFLICT (name) DO NOTHING";
const FIND_SECRET: &str = "SELECT value FROM server_secrets WHERE name = $1";

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

/// Batches one sweep runs per statement at most; the rest waits for the next sweep, so a
/// sweep never monopolises the database.
const MAX_SWEEP_BATCHES: u32 = 100;

/// Time left from `now` until `until`, zero if past.
pub(crate) fn remaining(until: OffsetDateTime, now: OffsetDateTime) -> Duration {
    Duration::try_from(until - now).unwrap_or(Duration::ZERO)
}

macro_rules! impl_sql_misc {
    ($db:ty) => {
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
            async fn sweep_expired(&self, cutoffs: SweepCutoffs) -> StoreResult<u64> {
                let mut removed = 0;
                for (statement, cutoff) in [
                    (SWEEP_CODES, cutoffs.now),
                    (SWEEP_COOLDOWNS, cutoffs.now),
                    (SWEEP_SESSIONS, cutoffs.now),
                    (SWEEP_KEYS, cutoffs.keys_retired_before),
                    (SWEEP_PENDING_USERS, cutoffs.pending_before),
                ] {
                    for _ in 0..MAX_SWEEP_BATCHES {
                        let result = bounded(self.timeout, "sweeping expired rows", async {
                            sqlx::query(statement)
                                .bind(DbTime(cutoff))
                                .bind(i64::from(SWEEP_BATCH))
                                .execute(&self.pool)
                                .await
                        })
                        .await?;
                        removed += result.rows_affected();
                        if result.rows_affected() < u64::from(SWEEP_BATCH) {
                            break;
                        }
                    }
                }
                Ok(removed)
            }
        }
    };
}

impl_sql_misc!(sqlx::Postgres);
impl_sql_misc!(sqlx::Sqlite);
