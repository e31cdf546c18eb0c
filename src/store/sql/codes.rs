//! One-time codes and resend cooldowns in SQL (used when Redis is not configured).

use std::time::Duration;

use async_trait::async_trait;
use time::OffsetDateTime;

use super::{DbTime, SqlStore, remaining, sql};
use crate::domain::{CodeDecision, CodePurpose, EmailAddress, OnMatch, judge_code_try};
use crate::store::{CodeCheck, CodeStore, Cooldown, StoreResult, StoredCode};

const PUT_CODE: &str = "INSERT INTO verification_codes (email, purpose, code_hash, attempts, \
     expires_at, created_at) VALUES ($1, $2, $3, 0, $4, $5) \
     ON CONFLICT (email, purpose) DO UPDATE SET code_hash = excluded.code_hash, attempts = 0, \
     expires_at = excluded.expires_at, created_at = excluded.created_at";
// Every try is counted before it is judged, in one statement, so parallel guesses cannot
// exceed the limit: the row lock (PostgreSQL) or the write lock (SQLite) orders them.
const CLAIM_TRY: &str = "UPDATE verification_codes SET attempts = attempts + 1 \
     WHERE email = $1 AND purpose = $2 AND expires_at > $3 AND attempts < $4 \
     RETURNING code_hash, attempts";
// Of concurrent correct tries, exactly one deletes the row.
const CONSUME_CODE: &str = "DELETE FROM verification_codes WHERE email = $1 AND purpose = $2 \
     AND code_hash = $3 RETURNING email";
// Only the code that was exhausted: a newer code written meanwhile stays.
const DELETE_CODE: &str = "DELETE FROM verification_codes WHERE email = $1 AND purpose = $2 \
     AND code_hash = $3";
const START_COOLDOWN: &str = "INSERT INTO code_cooldowns (email, purpose, until) \
     VALUES ($1, $2, $3) ON CONFLICT (email, purpose) DO UPDATE SET until = excluded.until \
     WHERE code_cooldowns.until <= $4 RETURNING until";
const FIND_COOLDOWN: &str = "SELECT until FROM code_cooldowns WHERE email = $1 AND purpose = $2";
const CLEAR_COOLDOWN: &str = "DELETE FROM code_cooldowns WHERE email = $1 AND purpose = $2";

#[async_trait]
impl CodeStore for SqlStore {
    /// Counts a try, then has [`judge_code_try`] decide it and carries the decision out.
    async fn try_code(
        &self,
        email: &EmailAddress,
        purpose: CodePurpose,
        hash: &str,
        now: OffsetDateTime,
        max_attempts: u32,
        on_match: OnMatch,
    ) -> StoreResult<CodeCheck> {
        let max = i32::try_from(max_attempts).unwrap_or(i32::MAX);
        self.run("checking code", move || async move {
            let claimed: Option<(String, i32)> = sql!(&self.pool, |db| {
                sqlx::query_as(CLAIM_TRY)
                    .bind(email.as_str())
                    .bind(purpose.as_str())
                    .bind(DbTime(now))
                    .bind(max)
                    .fetch_optional(db)
                    .await
            })?;
            // Missing, expired or exhausted: nothing to count the try against.
            let Some((stored, attempts)) = claimed else {
                return Ok(CodeCheck::Rejected);
            };
            let attempts = u32::try_from(attempts).unwrap_or(0);
            match judge_code_try(&stored, hash, attempts, max.unsigned_abs(), on_match) {
                CodeDecision::Keep => Ok(CodeCheck::Accepted),
                CodeDecision::Reject => Ok(CodeCheck::Rejected),
                CodeDecision::Consume => {
                    let consumed = sql!(&self.pool, |db| {
                        sqlx::query(CONSUME_CODE)
                            .bind(email.as_str())
                            .bind(purpose.as_str())
                            .bind(hash)
                            .fetch_optional(db)
                            .await
                            .map(|row| row.is_some())
                    })?;
                    Ok(if consumed {
                        CodeCheck::Accepted
                    } else {
                        CodeCheck::Rejected
                    })
                }
                CodeDecision::Exhaust => {
                    sql!(&self.pool, |db| {
                        sqlx::query(DELETE_CODE)
                            .bind(email.as_str())
                            .bind(purpose.as_str())
                            .bind(stored.as_str())
                            .execute(db)
                            .await
                            .map(drop)
                    })?;
                    Ok::<_, sqlx::Error>(CodeCheck::Rejected)
                }
            }
        })
        .await
    }

    async fn put(
        &self,
        email: &EmailAddress,
        purpose: CodePurpose,
        code: &StoredCode,
    ) -> StoreResult<()> {
        self.run("storing code", move || async move {
            sql!(&self.pool, |db| {
                sqlx::query(PUT_CODE)
                    .bind(email.as_str())
                    .bind(purpose.as_str())
                    .bind(code.hash.as_str())
                    .bind(DbTime(code.expires_at))
                    .bind(DbTime(code.issued_at))
                    .execute(db)
                    .await
                    .map(drop)
            })
        })
        .await
    }

    async fn start_cooldown(
        &self,
        email: &EmailAddress,
        purpose: CodePurpose,
        now: OffsetDateTime,
        length: Duration,
    ) -> StoreResult<Cooldown> {
        self.run("starting resend cooldown", move || async move {
            let started = sql!(&self.pool, |db| {
                sqlx::query(START_COOLDOWN)
                    .bind(email.as_str())
                    .bind(purpose.as_str())
                    .bind(DbTime(now + length))
                    .bind(DbTime(now))
                    .fetch_optional(db)
                    .await
                    .map(|row| row.is_some())
            })?;
            if started {
                return Ok(Cooldown::Started);
            }
            let until: Option<DbTime> = sql!(&self.pool, |db| {
                sqlx::query_scalar(FIND_COOLDOWN)
                    .bind(email.as_str())
                    .bind(purpose.as_str())
                    .fetch_optional(db)
                    .await
            })?;
            Ok::<_, sqlx::Error>(Cooldown::Active(
                until.map_or(length, |u| remaining(u.0, now)),
            ))
        })
        .await
    }

    async fn clear_cooldown(&self, email: &EmailAddress, purpose: CodePurpose) -> StoreResult<()> {
        self.run("clearing resend cooldown", move || async move {
            sql!(&self.pool, |db| {
                sqlx::query(CLEAR_COOLDOWN)
                    .bind(email.as_str())
                    .bind(purpose.as_str())
                    .execute(db)
                    .await
                    .map(drop)
            })
        })
        .await
    }
}
