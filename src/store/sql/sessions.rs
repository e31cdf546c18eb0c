//! Sessions and refresh-token families in SQL.

use async_trait::async_trait;
use time::OffsetDateTime;
use uuid::Uuid;

use super::users::UserRow;
use super::{DbTime, SqlStore, sql, sql_tx};
use crate::domain::{
    NextRefresh, PresentedRefresh, RefreshRules, Rotation, Session, SessionId, SessionLimit, User,
    UserId, judge_refresh,
};
use crate::metrics::{self, CacheOutcome};
use crate::store::{SessionRead, SessionStore, StoreError, StoreResult};

#[derive(sqlx::FromRow)]
struct SessionRow {
    id: Uuid,
    user_id: Uuid,
    created_at: DbTime,
    expires_at: DbTime,
    last_used_at: DbTime,
    user_agent: Option<String>,
    ip: Option<String>,
    revoked_at: Option<DbTime>,
}

impl From<SessionRow> for Session {
    fn from(row: SessionRow) -> Self {
        Session {
            id: SessionId(row.id),
            user_id: UserId(row.user_id),
            created_at: row.created_at.0,
            expires_at: row.expires_at.0,
            last_used_at: row.last_used_at.0,
            user_agent: row.user_agent,
            ip: row.ip,
            revoked_at: row.revoked_at.map(|t| t.0),
        }
    }
}

/// A session and its account, read together.
#[derive(sqlx::FromRow)]
struct SessionUserRow {
    #[sqlx(flatten)]
    user: UserRow,
    session_id: Uuid,
    session_created_at: DbTime,
    session_expires_at: DbTime,
    session_last_used_at: DbTime,
    session_user_agent: Option<String>,
    session_ip: Option<String>,
    session_revoked_at: Option<DbTime>,
}

impl TryFrom<SessionUserRow> for (Session, User) {
    type Error = StoreError;

    fn try_from(row: SessionUserRow) -> Result<Self, Self::Error> {
        let user = User::try_from(row.user)?;
        let session = Session {
            id: SessionId(row.session_id),
            user_id: user.id,
            created_at: row.session_created_at.0,
            expires_at: row.session_expires_at.0,
            last_used_at: row.session_last_used_at.0,
            user_agent: row.session_user_agent,
            ip: row.session_ip,
            revoked_at: row.session_revoked_at.map(|t| t.0),
        };
        Ok((session, user))
    }
}

const FIND_SESSION_WITH_USER: &str = "SELECT u.id, u.email, u.full_name, u.password_hash, \
     u.status, u.created_at, u.updated_at, u.verified_at, u.locale, s.id AS session_id, \
     s.created_at AS session_created_at, s.expires_at AS session_expires_at, \
     s.last_used_at AS session_last_used_at, s.user_agent AS session_user_agent, \
     s.ip AS session_ip, s.revoked_at AS session_revoked_at \
     FROM sessions s JOIN users u ON u.id = s.user_id WHERE s.id = $1";
const INSERT_SESSION: &str = "INSERT INTO sessions (id, user_id, created_at, expires_at, \
     last_used_at, user_agent, ip) VALUES ($1, $2, $3, $4, $5, $6, $7)";
const INSERT_REFRESH: &str = "INSERT INTO refresh_tokens (token_hash, session_id, generation, \
     created_at) VALUES ($1, $2, $3, $4)";
// A write on the account row first, so concurrent logins of one user take turns (row lock in
// PostgreSQL, the write lock in SQLite) and the limit below is never overshot.
const LOCK_USER: &str = "UPDATE users SET updated_at = updated_at WHERE id = $1";
// Keeps the new session and the newest `$4` other live ones; ends the rest.
const END_OLDEST: &str = "UPDATE sessions SET revoked_at = $2, revoked_reason = 'session_limit' \
     WHERE user_id = $1 AND revoked_at IS NULL AND expires_at > $2 AND last_used_at > $3 \
     AND id <> $5 AND id NOT IN (SELECT id FROM sessions WHERE user_id = $1 \
     AND revoked_at IS NULL AND expires_at > $2 AND last_used_at > $3 AND id <> $5 \
     ORDER BY created_at DESC, last_used_at DESC LIMIT $4)";
const FIND_SESSION: &str = "SELECT id, user_id, created_at, expires_at, last_used_at, \
     user_agent, ip, revoked_at FROM sessions WHERE id = $1";
// A write first: SQLite then takes its write lock at once (waiting politely for another
// writer) instead of failing a read-to-write upgrade; in PostgreSQL the row lock makes a
// concurrent exchange of the same token wait and then find it used.
const CLAIM_REFRESH: &str = "UPDATE refresh_tokens SET used_at = $2 \
     WHERE token_hash = $1 AND used_at IS NULL RETURNING session_id, generation";
const FIND_REFRESH: &str =
    "SELECT session_id, generation, used_at FROM refresh_tokens WHERE token_hash = $1";
const FIND_GENERATION: &str =
    "SELECT token_hash, used_at FROM refresh_tokens WHERE session_id = $1 AND generation = $2";
const TOUCH_SESSION: &str = "UPDATE sessions SET last_used_at = $2 WHERE id = $1";
const REVOKE_FAMILY: &str = "UPDATE sessions SET revoked_at = $2, revoked_reason = $3 \
     WHERE id = $1 AND revoked_at IS NULL";
const REVOKE_OWN: &str = "UPDATE sessions SET revoked_at = $3, revoked_reason = $4 \
     WHERE id = $1 AND user_id = $2 AND revoked_at IS NULL AND expires_at > $3 \
     AND last_used_at > $5";
const LIST_SESSIONS: &str = "SELECT id, user_id, created_at, expires_at, last_used_at, \
     user_agent, ip, revoked_at FROM sessions WHERE user_id = $1 AND revoked_at IS NULL \
     AND expires_at > $2 AND last_used_at > $3 ORDER BY created_at DESC";
const REVOKE_ALL: &str = "UPDATE sessions SET revoked_at = $2, revoked_reason = $3 \
     WHERE user_id = $1 AND revoked_at IS NULL AND expires_at > $2 AND id <> $4 \
     AND last_used_at > $5";

#[async_trait]
impl SessionStore for SqlStore {
    async fn create(
        &self,
        session: &Session,
        refresh_digest: &str,
        limit: SessionLimit,
    ) -> StoreResult<u64> {
        let others = i64::from(limit.max_per_user.saturating_sub(1));
        let ended = self
            .run("creating session", move || async move {
                let mut tx = self.pool.begin().await?;
                sql_tx!(&mut tx, |db| {
                    sqlx::query(LOCK_USER)
                        .bind(session.user_id.0)
                        .execute(db)
                        .await
                        .map(drop)
                })?;
                sql_tx!(&mut tx, |db| {
                    sqlx::query(INSERT_SESSION)
                        .bind(session.id.0)
                        .bind(session.user_id.0)
                        .bind(DbTime(session.created_at))
                        .bind(DbTime(session.expires_at))
                        .bind(DbTime(session.last_used_at))
                        .bind(session.user_agent.as_deref())
                        .bind(session.ip.as_deref())
                        .execute(db)
                        .await
                        .map(drop)
                })?;
                sql_tx!(&mut tx, |db| {
                    sqlx::query(INSERT_REFRESH)
                        .bind(refresh_digest)
                        .bind(session.id.0)
                        .bind(0_i32)
                        .bind(DbTime(session.created_at))
                        .execute(db)
                        .await
                        .map(drop)
                })?;
                let ended = sql_tx!(&mut tx, |db| {
                    sqlx::query(END_OLDEST)
                        .bind(session.user_id.0)
                        .bind(DbTime(session.created_at))
                        .bind(DbTime(limit.used_after))
                        .bind(others)
                        .bind(session.id.0)
                        .execute(db)
                        .await
                        .map(|done| done.rows_affected())
                })?;
                tx.commit().await?;
                Ok::<_, sqlx::Error>(ended)
            })
            .await;
        if !matches!(ended, Ok(0)) {
            // The per-user limit ended some (or, after an error, may have).
            self.forget_user(session.user_id);
        }
        ended
    }

    async fn find(&self, id: SessionId) -> StoreResult<Option<Session>> {
        let row = self
            .run("finding session", move || async move {
                sql!(&self.pool, |db| {
                    sqlx::query_as::<_, SessionRow>(FIND_SESSION)
                        .bind(id.0)
                        .fetch_optional(db)
                        .await
                })
            })
            .await?;
        Ok(row.map(Session::from))
    }

    async fn find_with_user(
        &self,
        id: SessionId,
        read: SessionRead,
    ) -> StoreResult<Option<(Session, User)>> {
        let cache = self.session_cache.as_ref();
        if read == SessionRead::MayBeCached
            && let Some(hit) = cache.and_then(|c| c.get(id))
        {
            metrics::session_cache(CacheOutcome::Hit);
            return Ok(Some(hit));
        }
        // Taken before the read: a revocation committed while it runs keeps its answer out.
        let ticket = cache.map(|c| c.ticket());
        let row = self
            .run("finding session and account", move || async move {
                sql!(&self.pool, |db| {
                    sqlx::query_as::<_, SessionUserRow>(FIND_SESSION_WITH_USER)
                        .bind(id.0)
                        .fetch_optional(db)
                        .await
                })
            })
            .await?;
        let found = row.map(<(Session, User)>::try_from).transpose()?;
        if let (Some(cache), Some(ticket)) = (cache, ticket) {
            metrics::session_cache(CacheOutcome::Miss);
            if let Some((session, user)) = &found {
                cache.put(ticket, session, user);
            }
        }
        Ok(found)
    }

    async fn exchange(
        &self,
        presented: &str,
        successor: &str,
        now: OffsetDateTime,
        rules: RefreshRules,
    ) -> StoreResult<Rotation> {
        let rotation = self
            .run("rotating refresh token", move || async move {
                let mut tx = self.pool.begin().await?;
                let claimed: Option<(Uuid, i32)> = sql_tx!(&mut tx, |db| {
                    sqlx::query_as(CLAIM_REFRESH)
                        .bind(presented)
                        .bind(DbTime(now))
                        .fetch_optional(db)
                        .await
                })?;
                if let Some((session_id, generation)) = claimed {
                    let session = sql_tx!(&mut tx, |db| {
                        sqlx::query_as::<_, SessionRow>(FIND_SESSION)
                            .bind(session_id)
                            .fetch_optional(db)
                            .await
                    })?
                    .map(Session::from);
                    let rotation = judge_refresh(
                        PresentedRefresh::Claimed,
                        session,
                        None,
                        successor,
                        now,
                        rules,
                    );
                    if !matches!(rotation, Rotation::Rotated(_)) {
                        tx.rollback().await?;
                        return Ok(rotation);
                    }
                    sql_tx!(&mut tx, |db| {
                        sqlx::query(INSERT_REFRESH)
                            .bind(successor)
                            .bind(session_id)
                            .bind(generation + 1)
                            .bind(DbTime(now))
                            .execute(db)
                            .await
                            .map(drop)
                    })?;
                    sql_tx!(&mut tx, |db| {
                        sqlx::query(TOUCH_SESSION)
                            .bind(session_id)
                            .bind(DbTime(now))
                            .execute(db)
                            .await
                            .map(drop)
                    })?;
                    tx.commit().await?;
                    return Ok(rotation);
                }
                tx.rollback().await?;

                // Not the current token: unknown, a replay within the grace window, or reuse.
                let used: Option<(Uuid, i32, Option<DbTime>)> = sql!(&self.pool, |db| {
                    sqlx::query_as(FIND_REFRESH)
                        .bind(presented)
                        .fetch_optional(db)
                        .await
                })?;
                let Some((session_id, generation, used_at)) = used else {
                    return Ok(judge_refresh(
                        PresentedRefresh::Unknown,
                        None,
                        None,
                        successor,
                        now,
                        rules,
                    ));
                };
                let session = sql!(&self.pool, |db| {
                    sqlx::query_as::<_, SessionRow>(FIND_SESSION)
                        .bind(session_id)
                        .fetch_optional(db)
                        .await
                })?
                .map(Session::from);
                // A dead session's tokens are refused whatever comes next: no need to load it.
                let live = session
                    .as_ref()
                    .is_some_and(|s| s.is_live(now, rules.idle_timeout));
                let next: Option<(String, Option<DbTime>)> = if live {
                    sql!(&self.pool, |db| {
                        sqlx::query_as(FIND_GENERATION)
                            .bind(session_id)
                            .bind(generation + 1)
                            .fetch_optional(db)
                            .await
                    })?
                } else {
                    None
                };
                let rotation = judge_refresh(
                    PresentedRefresh::Retired {
                        used_at: used_at.map(|t| t.0),
                    },
                    session,
                    next.as_ref().map(|(digest, used_at)| NextRefresh {
                        digest,
                        used_at: used_at.map(|t| t.0),
                    }),
                    successor,
                    now,
                    rules,
                );
                if let Rotation::ReuseDetected { session_id, .. } = &rotation {
                    sql!(&self.pool, |db| {
                        sqlx::query(REVOKE_FAMILY)
                            .bind(session_id.0)
                            .bind(DbTime(now))
                            .bind("refresh_token_reuse")
                            .execute(db)
                            .await
                            .map(drop)
                    })?;
                }
                Ok::<_, sqlx::Error>(rotation)
            })
            .await?;
        if let Rotation::ReuseDetected { session_id, .. } = &rotation {
            self.forget_session(*session_id);
        }
        Ok(rotation)
    }

    async fn list(
        &self,
        user_id: UserId,
        now: OffsetDateTime,
        used_after: OffsetDateTime,
    ) -> StoreResult<Vec<Session>> {
        let rows = self
            .run("listing sessions", move || async move {
                sql!(&self.pool, |db| {
                    sqlx::query_as::<_, SessionRow>(LIST_SESSIONS)
                        .bind(user_id.0)
                        .bind(DbTime(now))
                        .bind(DbTime(used_after))
                        .fetch_all(db)
                        .await
                })
            })
            .await?;
        Ok(rows.into_iter().map(Session::from).collect())
    }

    async fn revoke(
        &self,
        id: SessionId,
        user_id: UserId,
        now: OffsetDateTime,
        used_after: OffsetDateTime,
        reason: &str,
    ) -> StoreResult<bool> {
        let revoked = self
            .run("revoking session", move || async move {
                sql!(&self.pool, |db| {
                    sqlx::query(REVOKE_OWN)
                        .bind(id.0)
                        .bind(user_id.0)
                        .bind(DbTime(now))
                        .bind(reason)
                        .bind(DbTime(used_after))
                        .execute(db)
                        .await
                        .map(|done| done.rows_affected())
                })
            })
            .await;
        // Whatever the answer: a revocation that timed out may still have committed.
        self.forget_session(id);
        Ok(revoked? == 1)
    }

    async fn revoke_all(
        &self,
        user_id: UserId,
        keep: Option<SessionId>,
        now: OffsetDateTime,
        used_after: OffsetDateTime,
        reason: &str,
    ) -> StoreResult<u64> {
        let ended = self
            .run("revoking sessions", move || async move {
                sql!(&self.pool, |db| {
                    sqlx::query(REVOKE_ALL)
                        .bind(user_id.0)
                        .bind(DbTime(now))
                        .bind(reason)
                        .bind(keep.map_or(Uuid::nil(), |id| id.0))
                        .bind(DbTime(used_after))
                        .execute(db)
                        .await
                        .map(|done| done.rows_affected())
                })
            })
            .await;
        self.forget_user(user_id);
        ended
    }
}
