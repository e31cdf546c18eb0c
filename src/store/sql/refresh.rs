//! Refresh-token rotation in SQL: the statements of one exchange, whose decision is
//! [`judge_refresh`]'s.

use time::OffsetDateTime;
use uuid::Uuid;

use super::sessions::{FIND_SESSION_WITH_USER, INSERT_REFRESH, SessionUserRow};
use super::users::UserRow;
use super::{DbTime, SqlStore, SqlTx, combined, sql, sql_tx};
use crate::domain::{NextRefresh, PresentedRefresh, RefreshRules, Rotation, judge_refresh};

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

impl SqlStore {
    /// The exchange's statements: the decision, and the account's row when the session goes
    /// on (`Rotated` or `Replayed`).
    pub(super) async fn rotate(
        &self,
        presented: &str,
        successor: &str,
        now: OffsetDateTime,
        rules: RefreshRules,
    ) -> Result<(Rotation, Option<UserRow>), sqlx::Error> {
        let mut tx = self.pool.begin().await?;
        let claimed = match &mut tx {
            SqlTx::Postgres(pg) => combined::claim_refresh(pg, presented, DbTime(now))
                .await?
                .map(|row| (row.session.session_id(), row.generation, Some(row.session))),
            SqlTx::Sqlite(_) => claim_stepwise(&mut tx, presented, now).await?,
        };
        if let Some((session_id, generation, row)) = claimed {
            let (session, user) = row.map(SessionUserRow::split).unzip();
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
                return Ok((rotation, None));
            }
            match &mut tx {
                SqlTx::Postgres(pg) => {
                    combined::store_successor(
                        pg,
                        successor,
                        session_id,
                        generation + 1,
                        DbTime(now),
                    )
                    .await?;
                }
                SqlTx::Sqlite(_) => {
                    store_successor_stepwise(&mut tx, successor, session_id, generation + 1, now)
                        .await?;
                }
            }
            tx.commit().await?;
            return Ok((rotation, user));
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
            let rotation =
                judge_refresh(PresentedRefresh::Unknown, None, None, successor, now, rules);
            return Ok((rotation, None));
        };
        let (session, user) = sql!(&self.pool, |db| {
            sqlx::query_as::<_, SessionUserRow>(FIND_SESSION_WITH_USER)
                .bind(session_id)
                .fetch_optional(db)
                .await
        })?
        .map(SessionUserRow::split)
        .unzip();
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
        match &rotation {
            Rotation::Replayed(_) => return Ok((rotation, user)),
            Rotation::ReuseDetected { session_id, .. } => {
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
            Rotation::Rotated(_) | Rotation::Invalid => {}
        }
        Ok((rotation, None))
    }
}

/// CLAIM_REFRESH, then the session and account (SQLite; PostgreSQL sends both as one, see
/// [`combined::claim_refresh`]): the claimed token's session, its generation, and the row.
async fn claim_stepwise(
    tx: &mut SqlTx,
    presented: &str,
    now: OffsetDateTime,
) -> Result<Option<(Uuid, i32, Option<SessionUserRow>)>, sqlx::Error> {
    let claimed: Option<(Uuid, i32)> = sql_tx!(tx, |db| {
        sqlx::query_as(CLAIM_REFRESH)
            .bind(presented)
            .bind(DbTime(now))
            .fetch_optional(db)
            .await
    })?;
    let Some((session_id, generation)) = claimed else {
        return Ok(None);
    };
    let row = sql_tx!(tx, |db| {
        sqlx::query_as::<_, SessionUserRow>(FIND_SESSION_WITH_USER)
            .bind(session_id)
            .fetch_optional(db)
            .await
    })?;
    Ok(Some((session_id, generation, row)))
}

/// INSERT_REFRESH, then TOUCH_SESSION (SQLite; see [`combined::store_successor`]).
async fn store_successor_stepwise(
    tx: &mut SqlTx,
    successor: &str,
    session_id: Uuid,
    generation: i32,
    now: OffsetDateTime,
) -> Result<(), sqlx::Error> {
    sql_tx!(tx, |db| {
        sqlx::query(INSERT_REFRESH)
            .bind(successor)
            .bind(session_id)
            .bind(generation)
            .bind(DbTime(now))
            .execute(db)
            .await
            .map(drop)
    })?;
    sql_tx!(tx, |db| {
        sqlx::query(TOUCH_SESSION)
            .bind(session_id)
            .bind(DbTime(now))
            .execute(db)
            .await
            .map(drop)
    })
}
