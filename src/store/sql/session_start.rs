//! Starting a session on SQLite: the statements one by one in the caller's transaction, the
//! account's row locked first. PostgreSQL sends the same as one call (`combined.rs`, and the
//! functions of `migrations/postgres/0010_create_session_call.sql` as
//! `0013_session_call_one_lock.sql` left them): change both together (the integration tests
//! run every scenario on both).

use super::events::insert_event;
use super::sessions::INSERT_REFRESH;
use super::users::UserRow;
use super::{DbTime, SqlTx, bind_session, sql_tx};
use crate::domain::{AuthEvent, EmailAddress, NewSession, Session, SessionLimit, UserId};

const INSERT_SESSION: &str = "INSERT INTO sessions (id, user_id, created_at, expires_at, \
     last_used_at, user_agent, ip) VALUES ($1, $2, $3, $4, $5, $6, $7)";
// A write on the account row first, so concurrent logins of one user take turns (SQLite's
// write lock; PostgreSQL takes the row lock, see `combined.rs`) and the limit below is never
// overshot.
const LOCK_USER: &str = "UPDATE users SET updated_at = updated_at WHERE id = $1";
// LOCK_USER for the active account with an address, returning its row.
const LOCK_ACTIVE_BY_ADDRESS: &str = "UPDATE users SET updated_at = updated_at \
     WHERE email = $1 AND status = 'active' RETURNING id, email, full_name, password_hash, \
     status, created_at, updated_at, verified_at, locale";
// Keeps the new session and the newest `$4` other live ones; ends the rest.
const END_OLDEST: &str = "UPDATE sessions SET revoked_at = $2, revoked_reason = 'session_limit' \
     WHERE user_id = $1 AND revoked_at IS NULL AND expires_at > $2 AND last_used_at > $3 \
     AND id <> $5 AND id NOT IN (SELECT id FROM sessions WHERE user_id = $1 \
     AND revoked_at IS NULL AND expires_at > $2 AND last_used_at > $3 AND id <> $5 \
     ORDER BY created_at DESC, last_used_at DESC LIMIT $4)";

/// The session's writes, the account's row locked first.
pub(super) async fn create(
    tx: &mut SqlTx,
    session: &Session,
    refresh_digest: &str,
    limit: SessionLimit,
    event: &AuthEvent,
) -> Result<u64, sqlx::Error> {
    sql_tx!(tx, |db| {
        sqlx::query(LOCK_USER)
            .bind(session.user_id.0)
            .execute(db)
            .await
            .map(drop)
    })?;
    write(tx, session, refresh_digest, limit, event).await
}

/// [`create`] for the active account with address `email`, locked and read first: the account
/// and how many sessions ended, or None, with nothing written, when there is none. The session
/// and `event` become the account's.
pub(super) async fn create_for_address(
    tx: &mut SqlTx,
    email: &EmailAddress,
    session: &NewSession,
    refresh_digest: &str,
    limit: SessionLimit,
    event: &AuthEvent,
) -> Result<Option<(UserRow, u64)>, sqlx::Error> {
    let row = sql_tx!(&mut *tx, |db| {
        sqlx::query_as::<_, UserRow>(LOCK_ACTIVE_BY_ADDRESS)
            .bind(email.as_str())
            .fetch_optional(db)
            .await
    })?;
    let Some(row) = row else { return Ok(None) };
    let user_id = UserId(row.id);
    let session = session.clone().owned_by(user_id);
    let event = AuthEvent {
        user_id: Some(user_id),
        ..event.clone()
    };
    let ended = write(tx, &session, refresh_digest, limit, &event).await?;
    Ok(Some((row, ended)))
}

/// The session's writes after the account's row lock: the session, its first refresh token,
/// the end of the sessions past the limit, the event.
async fn write(
    tx: &mut SqlTx,
    session: &Session,
    refresh_digest: &str,
    limit: SessionLimit,
    event: &AuthEvent,
) -> Result<u64, sqlx::Error> {
    let others = i64::from(limit.max_per_user.saturating_sub(1));
    sql_tx!(tx, |db| {
        bind_session!(sqlx::query(INSERT_SESSION), session)
            .execute(db)
            .await
            .map(drop)
    })?;
    sql_tx!(tx, |db| {
        sqlx::query(INSERT_REFRESH)
            .bind(refresh_digest)
            .bind(session.id.0)
            .bind(0_i32)
            .bind(DbTime(session.created_at))
            .execute(db)
            .await
            .map(drop)
    })?;
    let ended = sql_tx!(tx, |db| {
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
    insert_event(tx, event).await?;
    Ok(ended)
}
