//! Rate-limit counters in SQL (used when Redis is not configured): a row per hit, judged by
//! [`RateLimit::wait`]: a key over its limit by one read, otherwise inside a transaction that
//! holds the key's row.

use std::time::Duration;

use async_trait::async_trait;
use time::OffsetDateTime;

use super::{DbTime, SqlPool, sql, sql_tx};
use crate::domain::RateLimit;
use crate::store::limits::{Admission, HitId, LimitKey, RateLimiter, Recent, key_name};
use crate::store::{StoreResult, bounded};

// The write that makes concurrent checks of one key take turns; it also keeps the key's row
// until its newest hit expires.
const LOCK_KEY: &str = "INSERT INTO rate_limit_keys (name, expires_at) VALUES ($1, $2) \
     ON CONFLICT (name) DO UPDATE SET expires_at = CASE \
     WHEN excluded.expires_at > rate_limit_keys.expires_at THEN excluded.expires_at \
     ELSE rate_limit_keys.expires_at END";
const HITS_SINCE: &str = "SELECT at FROM rate_limit_hits WHERE name = $1 AND at > $2";
const INSERT_HIT: &str =
    "INSERT INTO rate_limit_hits (name, id, at, expires_at) VALUES ($1, $2, $3, $4)";
const DELETE_HIT: &str = "DELETE FROM rate_limit_hits WHERE name = $1 AND id = $2";
const RECENT: &str = "SELECT COUNT(*), MAX(at) FROM rate_limit_hits WHERE name = $1 AND at > $2";

/// The SQL counters, their names keyed with the shared key-name secret.
pub(crate) struct SqlLimiter {
    pub(crate) pool: SqlPool,
    pub(crate) timeout: Duration,
    pub(crate) secret: Vec<u8>,
}

#[async_trait]
impl RateLimiter for SqlLimiter {
    async fn acquire_as(
        &self,
        key: LimitKey<'_>,
        limit: &RateLimit,
        now: OffsetDateTime,
        id: &HitId,
    ) -> StoreResult<Admission> {
        let name = key_name(&self.secret, key);
        let expires_at = now + limit.longest();
        let since = DbTime(now - limit.longest());
        bounded(self.timeout, "checking a rate limit", async {
            // A key already over its limit (a flood) is refused by this one read, without
            // the transaction and the row lock: a flood must not hold the pool's connections
            // waiting for each other.
            let hits: Vec<DbTime> = sql!(&self.pool, |db| {
                sqlx::query_scalar(HITS_SINCE)
                    .bind(&name)
                    .bind(since)
                    .fetch_all(db)
                    .await
            })?;
            let times: Vec<OffsetDateTime> = hits.into_iter().map(|t| t.0).collect();
            if let Some(wait) = limit.wait(&times, now) {
                return Ok(Admission::Denied(wait));
            }
            let mut tx = self.pool.begin().await?;
            sql_tx!(&mut tx, |db| {
                sqlx::query(LOCK_KEY)
                    .bind(&name)
                    .bind(DbTime(expires_at))
                    .execute(db)
                    .await
                    .map(drop)
            })?;
            let hits: Vec<DbTime> = sql_tx!(&mut tx, |db| {
                sqlx::query_scalar(HITS_SINCE)
                    .bind(&name)
                    .bind(since)
                    .fetch_all(db)
                    .await
            })?;
            let times: Vec<OffsetDateTime> = hits.into_iter().map(|t| t.0).collect();
            if let Some(wait) = limit.wait(&times, now) {
                tx.rollback().await?;
                return Ok(Admission::Denied(wait));
            }
            sql_tx!(&mut tx, |db| {
                sqlx::query(INSERT_HIT)
                    .bind(&name)
                    .bind(&id.0)
                    .bind(DbTime(now))
                    .bind(DbTime(expires_at))
                    .execute(db)
                    .await
                    .map(drop)
            })?;
            tx.commit().await?;
            Ok::<_, sqlx::Error>(Admission::Granted(id.clone()))
        })
        .await
    }

    async fn release(&self, key: LimitKey<'_>, hit: &HitId) -> StoreResult<()> {
        let name = key_name(&self.secret, key);
        bounded(self.timeout, "giving back a rate-limit hit", async {
            sql!(&self.pool, |db| {
                sqlx::query(DELETE_HIT)
                    .bind(&name)
                    .bind(&hit.0)
                    .execute(db)
                    .await
                    .map(drop)
            })
        })
        .await
    }

    async fn record(
        &self,
        key: LimitKey<'_>,
        keep: Duration,
        now: OffsetDateTime,
    ) -> StoreResult<()> {
        let name = key_name(&self.secret, key);
        bounded(self.timeout, "counting a failure", async {
            sql!(&self.pool, |db| {
                sqlx::query(INSERT_HIT)
                    .bind(&name)
                    .bind(HitId::new().0)
                    .bind(DbTime(now))
                    .bind(DbTime(now + keep))
                    .execute(db)
                    .await
                    .map(drop)
            })
        })
        .await
    }

    async fn recent(&self, key: LimitKey<'_>, since: OffsetDateTime) -> StoreResult<Recent> {
        let name = key_name(&self.secret, key);
        let (count, last): (i64, Option<DbTime>) =
            bounded(self.timeout, "reading recent failures", async {
                sql!(&self.pool, |db| {
                    sqlx::query_as(RECENT)
                        .bind(&name)
                        .bind(DbTime(since))
                        .fetch_one(db)
                        .await
                })
            })
            .await?;
        Ok(Recent {
            count: u32::try_from(count).unwrap_or(0),
            last: last.map(|t| t.0),
        })
    }
}
