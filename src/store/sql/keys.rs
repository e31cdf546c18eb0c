//! Access-token signing keys in SQL, shared by every instance.

use async_trait::async_trait;
use time::OffsetDateTime;

use super::{DbTime, SqlStore};
use crate::store::{KeyRevocation, KeyStore, StoreResult, StoredKey, bounded};

#[derive(sqlx::FromRow)]
struct KeyRow {
    kid: String,
    private_key: Vec<u8>,
    created_at: DbTime,
    activates_at: DbTime,
    retired_at: Option<DbTime>,
}

const PUBLISHED_KEYS: &str = "SELECT kid, private_key, created_at, activates_at, retired_at \
     FROM signing_keys WHERE revoked_at IS NULL \
     AND (retired_at IS NULL OR retired_at > $1) ORDER BY created_at DESC, kid";
const RETIRE_CURRENT: &str =
    "UPDATE signing_keys SET retired_at = $2 WHERE kid = $1 AND retired_at IS NULL";
// The partial unique index allows one current key: a second instance racing to create the
// first key inserts nothing.
const INSERT_KEY: &str = "INSERT INTO signing_keys (kid, private_key, created_at, activates_at) \
     VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING";

// A revoked key stops signing now (retired_at) and is never published again (revoked_at).
const REVOKE_KEY: &str = "UPDATE signing_keys SET revoked_at = $2, \
     retired_at = CASE WHEN retired_at IS NULL OR retired_at > $2 THEN $2 ELSE retired_at END \
     WHERE kid = $1 AND revoked_at IS NULL";
// What signs next must sign at once: a staged newest key starts now, and the key it was to
// replace (if not the revoked one) retires now, keeping "retired_at = successor's activation".
const START_STAGED: &str = "UPDATE signing_keys SET activates_at = $1 \
     WHERE retired_at IS NULL AND revoked_at IS NULL AND activates_at > $1";
const RETIRE_NOW: &str = "UPDATE signing_keys SET retired_at = $1 \
     WHERE retired_at > $1 AND revoked_at IS NULL";
const NEWEST_KEY: &str =
    "SELECT kid FROM signing_keys WHERE retired_at IS NULL AND revoked_at IS NULL";

macro_rules! impl_key_store {
    ($db:ty) => {
        #[async_trait]
        impl KeyStore for SqlStore<$db> {
            async fn published(
                &self,
                retired_after: OffsetDateTime,
            ) -> StoreResult<Vec<StoredKey>> {
                let rows = bounded(self.timeout, "loading signing keys", async {
                    sqlx::query_as::<_, KeyRow>(PUBLISHED_KEYS)
                        .bind(DbTime(retired_after))
                        .fetch_all(&self.pool)
                        .await
                })
                .await?;
                Ok(rows
                    .into_iter()
                    .map(|r| StoredKey {
                        kid: r.kid,
                        private_key: r.private_key,
                        created_at: r.created_at.0,
                        activates_at: r.activates_at.0,
                        retired_at: r.retired_at.map(|t| t.0),
                    })
                    .collect())
            }

            async fn rotate(&self, current: Option<&str>, new: &StoredKey) -> StoreResult<bool> {
                bounded(self.timeout, "rotating signing key", async {
                    let mut tx = self.pool.begin().await?;
                    if let Some(current) = current {
                        let retired = sqlx::query(RETIRE_CURRENT)
                            .bind(current)
                            .bind(DbTime(new.activates_at))
                            .execute(&mut *tx)
                            .await?;
                        if retired.rows_affected() != 1 {
                            tx.rollback().await?;
                            return Ok(false);
                        }
                    }
                    let inserted = sqlx::query(INSERT_KEY)
                        .bind(new.kid.as_str())
                        .bind(new.private_key.as_slice())
                        .bind(DbTime(new.created_at))
                        .bind(DbTime(new.activates_at))
                        .execute(&mut *tx)
                        .await?;
                    if inserted.rows_affected() != 1 {
                        tx.rollback().await?;
                        return Ok(false);
                    }
                    tx.commit().await?;
                    Ok::<_, sqlx::Error>(true)
                })
                .await
            }

            async fn revoke(
                &self,
                kid: &str,
                now: OffsetDateTime,
                replacement: &StoredKey,
            ) -> StoreResult<KeyRevocation> {
                bounded(self.timeout, "revoking signing key", async {
                    let mut tx = self.pool.begin().await?;
                    let revoked = sqlx::query(REVOKE_KEY)
                        .bind(kid)
                        .bind(DbTime(now))
                        .execute(&mut *tx)
                        .await?;
                    if revoked.rows_affected() != 1 {
                        tx.rollback().await?;
                        return Ok(KeyRevocation::NotFound);
                    }
                    sqlx::query(START_STAGED)
                        .bind(DbTime(now))
                        .execute(&mut *tx)
                        .await?;
                    sqlx::query(RETIRE_NOW)
                        .bind(DbTime(now))
                        .execute(&mut *tx)
                        .await?;
                    let newest: Option<String> = sqlx::query_scalar(NEWEST_KEY)
                        .fetch_optional(&mut *tx)
                        .await?;
                    let signing = match newest {
                        Some(kid) => kid,
                        None => {
                            sqlx::query(INSERT_KEY)
                                .bind(replacement.kid.as_str())
                                .bind(replacement.private_key.as_slice())
                                .bind(DbTime(replacement.created_at))
                                .bind(DbTime(now))
                                .execute(&mut *tx)
                                .await?;
                            replacement.kid.clone()
                        }
                    };
                    tx.commit().await?;
                    Ok::<_, sqlx::Error>(KeyRevocation::Revoked { signing })
                })
                .await
            }
        }
    };
}

impl_key_store!(sqlx::Postgres);
impl_key_store!(sqlx::Sqlite);
