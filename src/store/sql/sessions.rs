//! Sessions in SQL.

use async_trait::async_trait;
use time::OffsetDateTime;
use uuid::Uuid;

use super::{DbTime, SqlStore};
use crate::store::{Session, SessionStore, StoreResult, bounded};

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

const INSERT_SESSION: &str = "INSERT INTO sessions (id, token_hash, user_id, created_at, \
     expires_at, user_agent, ip) VALUES ($1, $2, $3, $4, $5, $6, $7)";
const FIND_SESSION: &str = "SELECT id, user_id, created_at, expires_at, user_agent, ip \
     FROM sessions WHERE token_hash = $1 AND expires_at > $2";
const REVOKE_SESSION: &str = "DELETE FROM sessions WHERE token_hash = $1";

macro_rules! impl_session_store {
    ($db:ty) => {
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
    };
}

impl_session_store!(sqlx::Postgres);
impl_session_store!(sqlx::Sqlite);
