//! Accounts in SQL.

use async_trait::async_trait;
use time::OffsetDateTime;
use uuid::Uuid;

use super::{DbTime, SqlStore};
use crate::domain::{EmailAddress, FullName, PasswordHash, User, UserId, UserStatus};
use crate::store::{Inserted, StoreError, StoreResult, UserStore, bounded};

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
     updated_at = $2 WHERE id = $1 AND status = 'pending' AND password_hash = $3";

macro_rules! impl_user_store {
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

            async fn activate(
                &self,
                id: UserId,
                password_hash: &PasswordHash,
                now: OffsetDateTime,
            ) -> StoreResult<bool> {
                let result = bounded(self.timeout, "activating user", async {
                    sqlx::query(ACTIVATE_USER)
                        .bind(id.0)
                        .bind(DbTime(now))
                        .bind(password_hash.as_str())
                        .execute(&self.pool)
                        .await
                })
                .await?;
                Ok(result.rows_affected() == 1)
            }
        }
    };
}

impl_user_store!(sqlx::Postgres);
impl_user_store!(sqlx::Sqlite);
