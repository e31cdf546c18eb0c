//! Server secrets in SQL, shared by every instance and sealed under the key-encryption key.

use async_trait::async_trait;
use time::OffsetDateTime;

use super::at_rest::SqlKeyStore;
use super::{DbTime, sql};
use crate::store::at_rest::Table;
use crate::store::{SecretStore, StoreError, StoreResult};

const INSERT_SECRET: &str = "INSERT INTO server_secrets (name, value, kek_id, created_at) \
     VALUES ($1, $2, $3, $4) ON CONFLICT (name) DO NOTHING";
const FIND_SECRET: &str = "SELECT value, kek_id FROM server_secrets WHERE name = $1";

#[async_trait]
impl SecretStore for SqlKeyStore {
    async fn get_or_create(
        &self,
        name: &str,
        candidate: &[u8],
        now: OffsetDateTime,
    ) -> StoreResult<Vec<u8>> {
        let sealed = self.keks.seal(Table::ServerSecrets, name, candidate);
        let sealed = &sealed;
        let (value, kek_id) = self
            .sql
            .run("loading server secret", move || async move {
                sql!(&self.sql.pool, |db| {
                    sqlx::query(INSERT_SECRET)
                        .bind(name)
                        .bind(sealed.value.as_slice())
                        .bind(sealed.kek_id.as_str())
                        .bind(DbTime(now))
                        .execute(db)
                        .await
                        .map(drop)
                })?;
                // Another instance may have stored its candidate first: theirs is the secret.
                sql!(&self.sql.pool, |db| {
                    sqlx::query_as::<_, (Vec<u8>, Option<String>)>(FIND_SECRET)
                        .bind(name)
                        .fetch_one(db)
                        .await
                })
            })
            .await?;
        let plain = self
            .keks
            .open(Table::ServerSecrets, name, kek_id.as_deref(), &value)
            .map_err(|e| StoreError::Corrupt(e.into()))?;
        Ok(plain.to_vec())
    }
}
