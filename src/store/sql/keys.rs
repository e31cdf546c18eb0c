//! Access-token signing keys in SQL, shared by every instance; each private key is sealed under
//! the key-encryption key.

use async_trait::async_trait;
use time::OffsetDateTime;

use super::at_rest::SqlKeyStore;
use super::{DbTime, SqlTx, sql, sql_tx};
use crate::store::at_rest::Table;
use crate::store::{KeyRevocation, KeyStore, StoreError, StoreResult, StoredKey};

#[derive(sqlx::FromRow)]
struct KeyRow {
    kid: String,
    private_key: Vec<u8>,
    kek_id: Option<String>,
    created_at: DbTime,
    activates_at: DbTime,
    retired_at: Option<DbTime>,
}

const PUBLISHED_KEYS: &str = "SELECT kid, private_key, kek_id, created_at, activates_at, \
     retired_at FROM signing_keys WHERE revoked_at IS NULL \
     AND (retired_at IS NULL OR retired_at > $1) ORDER BY created_at DESC, kid";
const RETIRE_CURRENT: &str =
    "UPDATE signing_keys SET retired_at = $2 WHERE kid = $1 AND retired_at IS NULL";
// The partial unique index allows one current key: a second instance racing to create the
// first key inserts nothing.
const INSERT_KEY: &str = "INSERT INTO signing_keys \
     (kid, private_key, kek_id, created_at, activates_at) \
     VALUES ($1, $2, $3, $4, $5) ON CONFLICT DO NOTHING";

// A revoked key stops signing now (retired_at) and is never published again (revoked_at).
const REVOKE_KEY: &str = "UPDATE signing_keys SET revoked_at = $2, \
     retired_at = CASE WHEN retired_at IS NULL OR retired_at > $2 THEN $2 ELSE retired_at END \
     WHERE kid = $1 AND revoked_at IS NULL";
// What signs next must sign at once: a staged newest key starts now, and the key it was to
// replace (if not the revoked one) retires now, keeping "retired_at = successor's activation".
// A revoked key that was only staged hands "newest" back to the key it was to replace, which
// keeps signing as if no rotation had started.
const RESTORE_CURRENT: &str = "UPDATE signing_keys SET retired_at = NULL WHERE kid = \
     (SELECT kid FROM signing_keys WHERE revoked_at IS NULL AND retired_at > $1 \
     ORDER BY activates_at DESC LIMIT 1) \
     AND NOT EXISTS (SELECT 1 FROM signing_keys WHERE retired_at IS NULL)";
const START_STAGED: &str = "UPDATE signing_keys SET activates_at = $1 \
     WHERE retired_at IS NULL AND revoked_at IS NULL AND activates_at > $1";
const RETIRE_NOW: &str = "UPDATE signing_keys SET retired_at = $1 \
     WHERE retired_at > $1 AND revoked_at IS NULL";
const NEWEST_KEY: &str =
    "SELECT kid FROM signing_keys WHERE retired_at IS NULL AND revoked_at IS NULL";

impl SqlKeyStore {
    /// Inserts `key`, sealed, activating at `activates_at`; 1, or 0 when the partial unique
    /// index says another key is current.
    async fn insert_key(
        &self,
        tx: &mut SqlTx,
        key: &StoredKey,
        activates_at: OffsetDateTime,
    ) -> Result<u64, sqlx::Error> {
        let sealed = self
            .keks
            .seal(Table::SigningKeys, &key.kid, &key.private_key);
        sql_tx!(tx, |db| {
            sqlx::query(INSERT_KEY)
                .bind(key.kid.as_str())
                .bind(sealed.value.as_slice())
                .bind(sealed.kek_id.as_str())
                .bind(DbTime(key.created_at))
                .bind(DbTime(activates_at))
                .execute(db)
                .await
                .map(|done| done.rows_affected())
        })
    }
}

#[async_trait]
impl KeyStore for SqlKeyStore {
    async fn published(&self, retired_after: OffsetDateTime) -> StoreResult<Vec<StoredKey>> {
        let rows = self
            .sql
            .run("loading signing keys", move || async move {
                sql!(&self.sql.pool, |db| {
                    sqlx::query_as::<_, KeyRow>(PUBLISHED_KEYS)
                        .bind(DbTime(retired_after))
                        .fetch_all(db)
                        .await
                })
            })
            .await?;
        rows.into_iter()
            .map(|r| {
                let private_key = self
                    .keks
                    .open(
                        Table::SigningKeys,
                        &r.kid,
                        r.kek_id.as_deref(),
                        &r.private_key,
                    )
                    .map_err(|e| StoreError::Corrupt(e.into()))?;
                Ok(StoredKey {
                    kid: r.kid,
                    private_key: private_key.to_vec(),
                    created_at: r.created_at.0,
                    activates_at: r.activates_at.0,
                    retired_at: r.retired_at.map(|t| t.0),
                })
            })
            .collect()
    }

    async fn publish_next(&self, current: Option<&str>, new: &StoredKey) -> StoreResult<bool> {
        self.sql
            .run("rotating signing key", move || async move {
                let mut tx = self.sql.pool.begin().await?;
                if let Some(current) = current {
                    let retired = sql_tx!(&mut tx, |db| {
                        sqlx::query(RETIRE_CURRENT)
                            .bind(current)
                            .bind(DbTime(new.activates_at))
                            .execute(db)
                            .await
                            .map(|done| done.rows_affected())
                    })?;
                    if retired != 1 {
                        tx.rollback().await?;
                        return Ok(false);
                    }
                }
                let inserted = self.insert_key(&mut tx, new, new.activates_at).await?;
                if inserted != 1 {
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
        self.sql
            .run("revoking signing key", move || async move {
                let mut tx = self.sql.pool.begin().await?;
                let revoked = sql_tx!(&mut tx, |db| {
                    sqlx::query(REVOKE_KEY)
                        .bind(kid)
                        .bind(DbTime(now))
                        .execute(db)
                        .await
                        .map(|done| done.rows_affected())
                })?;
                if revoked != 1 {
                    tx.rollback().await?;
                    return Ok(KeyRevocation::NotFound);
                }
                // In this order: each step reads what the one before it left.
                for step in [RESTORE_CURRENT, START_STAGED, RETIRE_NOW] {
                    sql_tx!(&mut tx, |db| {
                        sqlx::query(step)
                            .bind(DbTime(now))
                            .execute(db)
                            .await
                            .map(drop)
                    })?;
                }
                let newest: Option<String> = sql_tx!(&mut tx, |db| {
                    sqlx::query_scalar(NEWEST_KEY).fetch_optional(db).await
                })?;
                let signing = match newest {
                    Some(kid) => kid,
                    None => {
                        self.insert_key(&mut tx, replacement, now).await?;
                        replacement.kid.clone()
                    }
                };
                tx.commit().await?;
                Ok::<_, sqlx::Error>(KeyRevocation::Revoked { signing })
            })
            .await
    }
}
