//! Accounts in SQL.

use async_trait::async_trait;
use time::OffsetDateTime;
use uuid::Uuid;

use super::events::insert_event;
use super::outbox::insert_mail;
use super::{DbTime, SqlStore, sql, sql_tx};
use crate::domain::{
    AuthEvent, EmailAddress, FullName, PasswordHash, PendingRegistration, User, UserId, UserStatus,
};
use crate::store::{Inserted, OutboxMail, PasswordChange, StoreError, StoreResult, UserStore};

#[derive(sqlx::FromRow)]
pub(super) struct UserRow {
    pub(super) id: Uuid,
    email: String,
    full_name: String,
    password_hash: String,
    status: String,
    created_at: DbTime,
    updated_at: DbTime,
    verified_at: Option<DbTime>,
    locale: String,
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
            locale: row.locale.parse().map_err(|_| corrupt("stored locale"))?,
        })
    }
}

const FIND_USER_BY_EMAIL: &str = "SELECT id, email, full_name, password_hash, status, \
     created_at, updated_at, verified_at, locale FROM users WHERE email = $1";
const FIND_USER_BY_ID: &str = "SELECT id, email, full_name, password_hash, status, \
     created_at, updated_at, verified_at, locale FROM users WHERE id = $1";
const INSERT_USER: &str = "INSERT INTO users (id, email, full_name, password_hash, status, \
     created_at, updated_at, verified_at, locale) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) \
     ON CONFLICT (email) DO NOTHING";
// The account row always carries its newest registration, including its language (the one
// the mail just queued for it is written in).
const UPDATE_PENDING_USER: &str = "UPDATE users SET full_name = $2, password_hash = $3, \
     updated_at = $4, locale = $5 WHERE id = $1 AND status = 'pending'";
const PUT_REGISTRATION: &str = "INSERT INTO pending_registrations (user_id, password_hash, \
     full_name, created_at) VALUES ($1, $2, $3, $4) ON CONFLICT (user_id, password_hash) \
     DO UPDATE SET full_name = excluded.full_name, created_at = excluded.created_at";
const TRIM_REGISTRATIONS: &str = "DELETE FROM pending_registrations WHERE user_id = $1 \
     AND password_hash NOT IN (SELECT password_hash FROM pending_registrations \
     WHERE user_id = $1 ORDER BY created_at DESC LIMIT $2)";
const LIST_REGISTRATIONS: &str = "SELECT password_hash, full_name, created_at \
     FROM pending_registrations WHERE user_id = $1 ORDER BY created_at DESC";
const ACTIVATE_USER: &str = "UPDATE users SET status = 'active', password_hash = $3, \
     full_name = $4, verified_at = $2, updated_at = $2 WHERE id = $1 AND status = 'pending' \
     AND EXISTS (SELECT 1 FROM pending_registrations WHERE user_id = $1 AND password_hash = $3)";
const DROP_REGISTRATIONS: &str = "DELETE FROM pending_registrations WHERE user_id = $1";
// The account row first: its lock orders this change against logins starting sessions.
const SET_PASSWORD: &str = "UPDATE users SET password_hash = $2, updated_at = $3 \
     WHERE id = $1 AND status = 'active'";
// Every session not yet revoked, expired or idle ones included (revoking them costs nothing
// and leaves no doubt), except the one kept ($4; the nil id keeps none).
const END_SESSIONS: &str = "UPDATE sessions SET revoked_at = $2, revoked_reason = $3 \
     WHERE user_id = $1 AND revoked_at IS NULL AND id <> $4";
const UPGRADE_HASH: &str = "UPDATE users SET password_hash = $3, updated_at = $4 \
     WHERE id = $1 AND password_hash = $2";

#[derive(sqlx::FromRow)]
struct RegistrationRow {
    password_hash: String,
    full_name: String,
    created_at: DbTime,
}

#[async_trait]
impl UserStore for SqlStore {
    async fn find_by_email(&self, email: &EmailAddress) -> StoreResult<Option<User>> {
        let row = self
            .run("finding user by email", move || async move {
                sql!(&self.pool, |db| {
                    sqlx::query_as::<_, UserRow>(FIND_USER_BY_EMAIL)
                        .bind(email.as_str())
                        .fetch_optional(db)
                        .await
                })
            })
            .await?;
        row.map(User::try_from).transpose()
    }

    async fn find_by_id(&self, id: UserId) -> StoreResult<Option<User>> {
        let row = self
            .run("finding user by id", move || async move {
                sql!(&self.pool, |db| {
                    sqlx::query_as::<_, UserRow>(FIND_USER_BY_ID)
                        .bind(id.0)
                        .fetch_optional(db)
                        .await
                })
            })
            .await?;
        row.map(User::try_from).transpose()
    }

    async fn insert(&self, user: &User, mail: &OutboxMail) -> StoreResult<Inserted> {
        self.run("inserting user", move || async move {
            let mut tx = self.pool.begin().await?;
            let inserted = sql_tx!(&mut tx, |db| {
                sqlx::query(INSERT_USER)
                    .bind(user.id.0)
                    .bind(user.email.as_str())
                    .bind(user.full_name.as_str())
                    .bind(user.password_hash.as_str())
                    .bind(user.status.as_str())
                    .bind(DbTime(user.created_at))
                    .bind(DbTime(user.updated_at))
                    .bind(user.verified_at.map(DbTime))
                    .bind(user.locale.as_str())
                    .execute(db)
                    .await
                    .map(|done| done.rows_affected())
            })?;
            if inserted != 1 {
                tx.rollback().await?;
                return Ok(Inserted::EmailTaken);
            }
            if user.status == UserStatus::Pending {
                sql_tx!(&mut tx, |db| {
                    sqlx::query(PUT_REGISTRATION)
                        .bind(user.id.0)
                        .bind(user.password_hash.as_str())
                        .bind(user.full_name.as_str())
                        .bind(DbTime(user.updated_at))
                        .execute(db)
                        .await
                        .map(drop)
                })?;
            }
            insert_mail(&mut tx, mail).await?;
            tx.commit().await?;
            Ok::<_, sqlx::Error>(Inserted::Created)
        })
        .await
    }

    async fn register_again(
        &self,
        id: UserId,
        registration: &PendingRegistration,
        keep: u32,
        mail: &OutboxMail,
    ) -> StoreResult<bool> {
        let keep = i64::from(keep.max(1));
        self.run("registering pending user again", move || async move {
            // The account row first: its write lock orders concurrent registrations.
            let mut tx = self.pool.begin().await?;
            let updated = sql_tx!(&mut tx, |db| {
                sqlx::query(UPDATE_PENDING_USER)
                    .bind(id.0)
                    .bind(registration.full_name.as_str())
                    .bind(registration.password_hash.as_str())
                    .bind(DbTime(registration.created_at))
                    .bind(mail.locale.as_str())
                    .execute(db)
                    .await
                    .map(|done| done.rows_affected())
            })?;
            if updated != 1 {
                tx.rollback().await?;
                return Ok(false);
            }
            sql_tx!(&mut tx, |db| {
                sqlx::query(PUT_REGISTRATION)
                    .bind(id.0)
                    .bind(registration.password_hash.as_str())
                    .bind(registration.full_name.as_str())
                    .bind(DbTime(registration.created_at))
                    .execute(db)
                    .await
                    .map(drop)
            })?;
            sql_tx!(&mut tx, |db| {
                sqlx::query(TRIM_REGISTRATIONS)
                    .bind(id.0)
                    .bind(keep)
                    .execute(db)
                    .await
                    .map(drop)
            })?;
            insert_mail(&mut tx, mail).await?;
            tx.commit().await?;
            Ok::<_, sqlx::Error>(true)
        })
        .await
    }

    async fn pending_registrations(&self, id: UserId) -> StoreResult<Vec<PendingRegistration>> {
        let rows = self
            .run("loading pending registrations", move || async move {
                sql!(&self.pool, |db| {
                    sqlx::query_as::<_, RegistrationRow>(LIST_REGISTRATIONS)
                        .bind(id.0)
                        .fetch_all(db)
                        .await
                })
            })
            .await?;
        rows.into_iter()
            .map(|row| {
                Ok(PendingRegistration {
                    full_name: FullName::parse(&row.full_name).map_err(|_| {
                        StoreError::Corrupt(anyhow::anyhow!(
                            "pending registration of user {}: stored full_name",
                            id.0
                        ))
                    })?,
                    password_hash: PasswordHash::from_phc(row.password_hash),
                    created_at: row.created_at.0,
                })
            })
            .collect()
    }

    async fn activate(
        &self,
        id: UserId,
        registration: &PendingRegistration,
        now: OffsetDateTime,
    ) -> StoreResult<bool> {
        self.run("activating user", move || async move {
            let mut tx = self.pool.begin().await?;
            let activated = sql_tx!(&mut tx, |db| {
                sqlx::query(ACTIVATE_USER)
                    .bind(id.0)
                    .bind(DbTime(now))
                    .bind(registration.password_hash.as_str())
                    .bind(registration.full_name.as_str())
                    .execute(db)
                    .await
                    .map(|done| done.rows_affected())
            })?;
            if activated != 1 {
                tx.rollback().await?;
                return Ok(false);
            }
            sql_tx!(&mut tx, |db| {
                sqlx::query(DROP_REGISTRATIONS)
                    .bind(id.0)
                    .execute(db)
                    .await
                    .map(drop)
            })?;
            tx.commit().await?;
            Ok::<_, sqlx::Error>(true)
        })
        .await
    }

    async fn set_password(
        &self,
        change: &PasswordChange,
        mail: &OutboxMail,
        event: &AuthEvent,
    ) -> StoreResult<Option<u64>> {
        let ended = self
            .run("setting password", move || async move {
                let mut tx = self.pool.begin().await?;
                let updated = sql_tx!(&mut tx, |db| {
                    sqlx::query(SET_PASSWORD)
                        .bind(change.user_id.0)
                        .bind(change.password_hash.as_str())
                        .bind(DbTime(change.now))
                        .execute(db)
                        .await
                        .map(|done| done.rows_affected())
                })?;
                if updated != 1 {
                    tx.rollback().await?;
                    return Ok(None);
                }
                let ended = sql_tx!(&mut tx, |db| {
                    sqlx::query(END_SESSIONS)
                        .bind(change.user_id.0)
                        .bind(DbTime(change.now))
                        .bind(change.reason)
                        .bind(change.keep.map_or(Uuid::nil(), |id| id.0))
                        .execute(db)
                        .await
                        .map(|done| done.rows_affected())
                })?;
                insert_mail(&mut tx, mail).await?;
                insert_event(&mut tx, event).await?;
                tx.commit().await?;
                Ok::<_, sqlx::Error>(Some(ended))
            })
            .await;
        // The password (a copy holds its hash) and the sessions ended with it.
        self.forget_user(change.user_id);
        ended
    }

    async fn upgrade_password_hash(
        &self,
        id: UserId,
        old: &PasswordHash,
        new: &PasswordHash,
        now: OffsetDateTime,
    ) -> StoreResult<bool> {
        let updated = self
            .run("upgrading password hash", move || async move {
                sql!(&self.pool, |db| {
                    sqlx::query(UPGRADE_HASH)
                        .bind(id.0)
                        .bind(old.as_str())
                        .bind(new.as_str())
                        .bind(DbTime(now))
                        .execute(db)
                        .await
                        .map(|done| done.rows_affected())
                })
            })
            .await;
        self.forget_user(id);
        Ok(updated? == 1)
    }
}
