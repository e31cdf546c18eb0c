//! PostgreSQL's one-call forms of the busiest writes. Each round trip costs PostgreSQL about
//! 60 µs of CPU and the service a system call or two, so a login starts its session with one
//! function call, and a refresh that rotates a token sends its statements joined by
//! data-modifying `WITH` (which SQLite does not have; it runs the statements of
//! `session_start.rs` and `refresh.rs` one by one, in process). The texts repeat those
//! statements' columns and conditions: change both together (the integration tests run every
//! scenario on both).

use sqlx::{PgConnection, PgPool, Postgres, Transaction};

use super::sessions::SessionUserRow;
use super::users::UserRow;
use super::{DbTime, bind_event, bind_session};
use crate::domain::{AuthEvent, EmailAddress, NewSession, Session, SessionLimit};

// The account's row lock, the session, its first refresh token, the audit event and the end
// of the sessions past the limit: one call of the function in
// `migrations/postgres/0010_create_session_call.sql` (its statements since moved to
// `aidlc_write_session` by `0013_session_call_one_lock.sql`), which takes the lock before the
// statements that count (a data-modifying `WITH` would count in a snapshot taken before the
// lock was held). Sent outside any transaction, it is its own: no BEGIN, no COMMIT.
const CREATE_SESSION: &str = "SELECT aidlc_create_session($1, $2, $3, $4, $5, $6, $7, $8, $9, \
     $10, $11, $12, $13, $14, $15, $16, $17, $18)";

/// Writes the session, its first refresh token and `event`, and ends the account's sessions
/// past the limit, all or nothing; returns how many it ended.
pub(super) async fn create_session(
    pool: &PgPool,
    session: &Session,
    refresh_digest: &str,
    limit: SessionLimit,
    event: &AuthEvent,
) -> Result<u64, sqlx::Error> {
    let others = i64::from(limit.max_per_user.saturating_sub(1));
    let ip = event.ip.map(|ip| ip.to_string());
    let query = bind_session!(sqlx::query_scalar(CREATE_SESSION), session).bind(refresh_digest);
    let ended: i64 = bind_event!(query, event, ip.as_deref())
        .bind(DbTime(limit.used_after))
        .bind(others)
        .fetch_one(pool)
        .await?;
    Ok(u64::try_from(ended).unwrap_or(0))
}

// The same for the active account with the address `$1`, read and locked by the function: its
// row (under the names `UserRow` reads) with how many sessions ended, or no row.
const CREATE_SESSION_FOR_ADDRESS: &str = "SELECT o_ended AS ended, o_id AS id, \
     o_email AS email, o_full_name AS full_name, o_password AS password_hash, \
     o_status AS status, o_created_at AS created_at, o_updated_at AS updated_at, \
     o_verified_at AS verified_at, o_locale AS locale FROM aidlc_create_session_for_address( \
     $1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17)";

/// An account a session was started for, with how many of its sessions the limit ended.
#[derive(sqlx::FromRow)]
pub(super) struct StartedRow {
    pub(super) ended: i64,
    #[sqlx(flatten)]
    pub(super) user: UserRow,
}

/// [`create_session`] for the active account with address `email` (the event's account id is
/// not sent: the function takes the account's own for both).
pub(super) async fn create_session_for_address(
    pool: &PgPool,
    email: &EmailAddress,
    session: &NewSession,
    refresh_digest: &str,
    limit: SessionLimit,
    event: &AuthEvent,
) -> Result<Option<StartedRow>, sqlx::Error> {
    let others = i64::from(limit.max_per_user.saturating_sub(1));
    let ip = event.ip.map(|ip| ip.to_string());
    sqlx::query_as(CREATE_SESSION_FOR_ADDRESS)
        .bind(email.as_str())
        .bind(session.id.0)
        .bind(DbTime(session.created_at))
        .bind(DbTime(session.expires_at))
        .bind(DbTime(session.last_used_at))
        .bind(session.user_agent.as_deref())
        .bind(session.ip.as_deref())
        .bind(refresh_digest)
        .bind(event.id)
        .bind(event.kind.as_str())
        .bind(event.outcome.as_str())
        .bind(ip.as_deref())
        .bind(event.user_agent.as_deref())
        .bind(event.request_id.as_deref())
        .bind(DbTime(event.at))
        .bind(DbTime(limit.used_after))
        .bind(others)
        .fetch_optional(pool)
        .await
}

// CLAIM_REFRESH and FIND_SESSION_WITH_USER in one: the claimed token's generation with its
// session and account. The join reads the statement's snapshot, as the separate read would.
// No row when nothing was claimed, or (the token's session gone meanwhile) when the claim has
// nothing to join: the caller rolls back and looks at the token again either way.
const CLAIM_WITH_SESSION: &str = "WITH claimed AS (UPDATE refresh_tokens SET used_at = $2 \
     WHERE token_hash = $1 AND used_at IS NULL RETURNING session_id, generation) \
     SELECT c.generation, u.id, u.email, u.full_name, u.password_hash, \
     u.status, u.created_at, u.updated_at, u.verified_at, u.locale, s.id AS session_id, \
     s.created_at AS session_created_at, s.expires_at AS session_expires_at, \
     s.last_used_at AS session_last_used_at, s.user_agent AS session_user_agent, \
     s.ip AS session_ip, s.revoked_at AS session_revoked_at \
     FROM claimed c JOIN sessions s ON s.id = c.session_id JOIN users u ON u.id = s.user_id";

/// A claimed refresh token: its generation, its session and the account.
#[derive(sqlx::FromRow)]
pub(super) struct ClaimedRow {
    pub(super) generation: i32,
    #[sqlx(flatten)]
    pub(super) session: SessionUserRow,
}

/// Claims the presented token (marks it used) and reads its session and account.
pub(super) async fn claim_refresh(
    tx: &mut Transaction<'static, Postgres>,
    presented: &str,
    now: DbTime,
) -> Result<Option<ClaimedRow>, sqlx::Error> {
    let db: &mut PgConnection = tx;
    sqlx::query_as(CLAIM_WITH_SESSION)
        .bind(presented)
        .bind(now)
        .fetch_optional(db)
        .await
}

// INSERT_REFRESH and TOUCH_SESSION in one.
const ROTATE: &str = "WITH touched AS (UPDATE sessions SET last_used_at = $4 WHERE id = $2) \
     INSERT INTO refresh_tokens (token_hash, session_id, generation, created_at) \
     VALUES ($1, $2, $3, $4)";

/// Stores the successor token and marks the session used.
pub(super) async fn store_successor(
    tx: &mut Transaction<'static, Postgres>,
    successor: &str,
    session_id: uuid::Uuid,
    generation: i32,
    now: DbTime,
) -> Result<(), sqlx::Error> {
    let db: &mut PgConnection = tx;
    sqlx::query(ROTATE)
        .bind(successor)
        .bind(session_id)
        .bind(generation)
        .bind(now)
        .execute(db)
        .await
        .map(drop)
}
