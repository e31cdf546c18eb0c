//! PostgreSQL's one-statement forms of the busiest writes. Each round trip costs PostgreSQL
//! about 60 µs of CPU and the service a system call or two, so a login that starts a session
//! and a refresh that rotates a token send their statements joined by data-modifying `WITH`
//! (which SQLite does not have; it runs the statements of `sessions.rs` and `refresh.rs` one
//! by one, in process). The texts repeat those statements' columns and conditions: change
//! both together (the integration tests run every scenario on both).

use sqlx::{PgConnection, Postgres, Transaction};

use super::sessions::SessionUserRow;
use super::{DbTime, bind_event, bind_session};
use crate::domain::{AuthEvent, Session, SessionLimit};

// The account's row lock that makes its concurrent logins take turns: the lock the stepwise
// form's no-op UPDATE takes (SQLite needs a write to take its write lock), without writing a
// new version of the row.
const LOCK_USER: &str = "SELECT 1 FROM users WHERE id = $1 FOR NO KEY UPDATE";

/// Locks the account's row until the transaction ends.
pub(super) async fn lock_user(
    tx: &mut Transaction<'static, Postgres>,
    user_id: uuid::Uuid,
) -> Result<(), sqlx::Error> {
    let db: &mut PgConnection = tx;
    sqlx::query(LOCK_USER)
        .bind(user_id)
        .execute(db)
        .await
        .map(drop)
}

// INSERT_SESSION, INSERT_REFRESH, the audit event and END_OLDEST in one. Sent after
// LOCK_USER: in READ COMMITTED the statement's snapshot is taken once the account's row lock
// is held, so END_OLDEST counts every session committed before, as the stepwise form does.
// The refresh token's foreign key is checked at the end of the statement, when the session
// row is there. The sub-statements share one snapshot, so END_OLDEST never sees the new
// session (nor needs to: it keeps the newest `$18` others).
const CREATE_SESSION: &str = "WITH new_session AS (INSERT INTO sessions (id, user_id, \
     created_at, expires_at, last_used_at, user_agent, ip) VALUES ($1, $2, $3, $4, $5, $6, $7)), \
     new_refresh AS (INSERT INTO refresh_tokens (token_hash, session_id, generation, created_at) \
     VALUES ($8, $1, 0, $3)), \
     new_event AS (INSERT INTO auth_events (id, user_id, event, outcome, ip, user_agent, \
     request_id, created_at) VALUES ($9, $10, $11, $12, $13, $14, $15, $16)), \
     ended AS (UPDATE sessions SET revoked_at = $3, revoked_reason = 'session_limit' \
     WHERE user_id = $2 AND revoked_at IS NULL AND expires_at > $3 AND last_used_at > $17 \
     AND id <> $1 AND id NOT IN (SELECT id FROM sessions WHERE user_id = $2 \
     AND revoked_at IS NULL AND expires_at > $3 AND last_used_at > $17 AND id <> $1 \
     ORDER BY created_at DESC, last_used_at DESC LIMIT $18) RETURNING 1) \
     SELECT count(*) FROM ended";

/// Writes the session, its first refresh token and `event`, and ends the account's sessions
/// past the limit; returns how many it ended. The account's row must be locked already.
pub(super) async fn create_session(
    tx: &mut Transaction<'static, Postgres>,
    session: &Session,
    refresh_digest: &str,
    limit: SessionLimit,
    event: &AuthEvent,
) -> Result<u64, sqlx::Error> {
    let others = i64::from(limit.max_per_user.saturating_sub(1));
    let ip = event.ip.map(|ip| ip.to_string());
    let db: &mut PgConnection = tx;
    let query = bind_session!(sqlx::query_scalar(CREATE_SESSION), session).bind(refresh_digest);
    let ended: i64 = bind_event!(query, event, ip.as_deref())
        .bind(DbTime(limit.used_after))
        .bind(others)
        .fetch_one(db)
        .await?;
    Ok(u64::try_from(ended).unwrap_or(0))
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
