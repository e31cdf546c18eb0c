//! Sessions and refresh-token families in SQL.

use async_trait::async_trait;
use time::OffsetDateTime;
use uuid::Uuid;

use super::users::UserRow;
use super::{DbTime, SqlPool, SqlStore, combined, session_start as stepwise, sql};
use crate::domain::{
    AuthEvent, EmailAddress, NewSession, RefreshRules, Rotation, Session, SessionId, SessionLimit,
    User, UserId,
};
use crate::metrics::{self, CacheOutcome};
use crate::store::{Exchanged, SessionRead, SessionStore, StoreError, StoreResult};

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
pub(super) struct SessionUserRow {
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

impl SessionUserRow {
    /// The session's id.
    pub(super) fn session_id(&self) -> Uuid {
        self.session_id
    }

    /// The session, and its account's row still to be checked (which can fail: a corrupt row).
    pub(super) fn split(self) -> (Session, UserRow) {
        let session = Session {
            id: SessionId(self.session_id),
            user_id: UserId(self.user.id),
            created_at: self.session_created_at.0,
            expires_at: self.session_expires_at.0,
            last_used_at: self.session_last_used_at.0,
            user_agent: self.session_user_agent,
            ip: self.session_ip,
            revoked_at: self.session_revoked_at.map(|t| t.0),
        };
        (session, self.user)
    }
}

impl TryFrom<SessionUserRow> for (Session, User) {
    type Error = StoreError;

    fn try_from(row: SessionUserRow) -> Result<Self, Self::Error> {
        let (session, user) = row.split();
        Ok((session, User::try_from(user)?))
    }
}

pub(super) const FIND_SESSION_WITH_USER: &str = "SELECT u.id, u.email, u.full_name, u.password_hash, \
     u.status, u.created_at, u.updated_at, u.verified_at, u.locale, s.id AS session_id, \
     s.created_at AS session_created_at, s.expires_at AS session_expires_at, \
     s.last_used_at AS session_last_used_at, s.user_agent AS session_user_agent, \
     s.ip AS session_ip, s.revoked_at AS session_revoked_at \
     FROM sessions s JOIN users u ON u.id = s.user_id WHERE s.id = $1";
pub(super) const INSERT_REFRESH: &str = "INSERT INTO refresh_tokens (token_hash, session_id, generation, \
     created_at) VALUES ($1, $2, $3, $4)";
const FIND_SESSION: &str = "SELECT id, user_id, created_at, expires_at, last_used_at, \
     user_agent, ip, revoked_at FROM sessions WHERE id = $1";
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
        event: &AuthEvent,
    ) -> StoreResult<u64> {
        let ended = self
            .run("creating session", move || async move {
                if let SqlPool::Postgres(pg) = &self.pool {
                    return combined::create_session(pg, session, refresh_digest, limit, event)
                        .await;
                }
                let mut tx = self.pool.begin().await?;
                let ended =
                    stepwise::create(&mut tx, session, refresh_digest, limit, event).await?;
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

    async fn create_for_address(
        &self,
        email: &EmailAddress,
        session: NewSession,
        refresh_digest: &str,
        limit: SessionLimit,
        event: AuthEvent,
    ) -> StoreResult<Option<(Session, User, u64)>> {
        let started = self
            .run("creating session", || async {
                if let SqlPool::Postgres(pg) = &self.pool {
                    let started = combined::create_session_for_address(
                        pg,
                        email,
                        &session,
                        refresh_digest,
                        limit,
                        &event,
                    )
                    .await?;
                    return Ok(started.map(|row| (row.user, u64::try_from(row.ended).unwrap_or(0))));
                }
                let mut tx = self.pool.begin().await?;
                let started = stepwise::create_for_address(
                    &mut tx,
                    email,
                    &session,
                    refresh_digest,
                    limit,
                    &event,
                )
                .await?;
                if started.is_some() {
                    tx.commit().await?;
                }
                // Otherwise dropped, the transaction rolls back (it wrote nothing).
                Ok::<_, sqlx::Error>(started)
            })
            .await?;
        let Some((row, ended)) = started else {
            return Ok(None);
        };
        let user = User::try_from(row)?;
        if ended > 0 {
            self.forget_user(user.id);
        }
        Ok(Some((session.owned_by(user.id), user, ended)))
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
    ) -> StoreResult<Exchanged> {
        let (rotation, user) = self
            .run("rotating refresh token", move || async move {
                self.rotate(presented, successor, now, rules).await
            })
            .await?;
        // The account is read with the session (no second round trip); checked here, since a
        // corrupt row is not a database error.
        let user = user.map(User::try_from).transpose()?;
        if let Rotation::ReuseDetected { session_id, .. } = &rotation {
            self.forget_session(*session_id);
        }
        Ok(Exchanged { rotation, user })
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
