//! The mail outbox in SQL: one statement per transition, the claim included.

use async_trait::async_trait;
use time::OffsetDateTime;
use uuid::Uuid;

use super::{DbTime, SqlPool, SqlStore, SqlTx, remaining, sql, sql_tx};
use crate::store::{
    ClaimedMail, OutboxCounts, OutboxDepth, OutboxMail, OutboxStore, StoreError, StoreResult,
};

const INSERT_MAIL: &str = "INSERT INTO outbox (id, kind, recipient, name, locale, \
     valid_for_secs, payload, key_id, status, attempts, next_attempt_at, expires_at, \
     created_at, updated_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, 'queued', 0, $9, $10, $9, $9)";

// A new code replaces the one before it (the store keeps only the newest), so mails carrying
// older codes of the same kind for the same address would only deliver dead codes after an
// outage. They expire now: queued and dead ones at once; one being sent keeps its lease, and
// if that send fails it is never tried again (its expiry has passed).
const SUPERSEDE: &str = "UPDATE outbox SET expires_at = $3, updated_at = $3, \
     status = CASE WHEN status = 'sending' THEN 'sending' ELSE 'expired' END, \
     payload = CASE WHEN status = 'sending' THEN payload ELSE NULL END \
     WHERE recipient = $1 AND kind = $2 AND status IN ('queued', 'sending', 'dead') \
     AND payload IS NOT NULL AND expires_at > $3";

const DELETE_MAIL: &str = "DELETE FROM outbox WHERE id = $1";

// Rows nobody holds a live lease on; a dead row keeps its payload only until its code expires.
const EXPIRE: &str = "UPDATE outbox SET status = CASE WHEN status = 'dead' THEN 'dead' \
     ELSE 'expired' END, payload = NULL, lease_owner = NULL, lease_until = NULL, \
     updated_at = $1 WHERE expires_at <= $1 AND (status = 'queued' \
     OR (status = 'sending' AND next_attempt_at <= $1) \
     OR (status = 'dead' AND payload IS NOT NULL))";

/// The claim, with the row lock clause PostgreSQL takes (SQLite has one writer at a time, so
/// its single UPDATE is already exclusive). A row in flight is due again at `lease_until`.
macro_rules! claim {
    ($lock:literal) => {
        concat!(
            "UPDATE outbox SET status = 'sending', attempts = attempts + 1, lease_owner = $1, \
             lease_until = $3, next_attempt_at = $3, updated_at = $2 WHERE id IN \
             (SELECT id FROM outbox WHERE status IN ('queued', 'sending') \
             AND next_attempt_at <= $2 AND expires_at > $2 \
             ORDER BY next_attempt_at, created_at LIMIT $4 ",
            $lock,
            ") RETURNING id, kind, recipient, name, locale, valid_for_secs, payload, key_id, \
             attempts, expires_at, created_at"
        )
    };
}
const CLAIM_POSTGRES: &str = claim!("FOR UPDATE SKIP LOCKED");
const CLAIM_SQLITE: &str = claim!("");

const MARK_SENT: &str = "UPDATE outbox SET status = 'sent', payload = NULL, lease_owner = NULL, \
     lease_until = NULL, last_error = NULL, updated_at = $3 \
     WHERE id = $1 AND lease_owner = $2 AND status = 'sending'";
const RETRY_AT: &str = "UPDATE outbox SET status = 'queued', next_attempt_at = $3, \
     last_error = $4, lease_owner = NULL, lease_until = NULL, updated_at = $5 \
     WHERE id = $1 AND lease_owner = $2 AND status = 'sending'";
const MARK_DEAD: &str = "UPDATE outbox SET status = 'dead', last_error = $3, lease_owner = NULL, \
     lease_until = NULL, updated_at = $4 WHERE id = $1 AND lease_owner = $2 AND status = 'sending'";
const RELEASE: &str = "UPDATE outbox SET status = 'queued', attempts = attempts - 1, \
     next_attempt_at = $3, lease_owner = NULL, lease_until = NULL, updated_at = $3 \
     WHERE id = $1 AND lease_owner = $2 AND status = 'sending'";
const MARK_EXPIRED: &str = "UPDATE outbox SET status = 'expired', payload = NULL, \
     lease_owner = NULL, lease_until = NULL, updated_at = $3 \
     WHERE id = $1 AND lease_owner = $2 AND status = 'sending'";
// Each condition is an index's own (outbox_due_idx, outbox_dead_idx), as SQLite uses a
// partial index only for a query that repeats its condition.
const DEPTH: &str = "SELECT count(*) FILTER (WHERE status = 'queued') AS queued, \
     count(*) FILTER (WHERE status = 'sending') AS sending, \
     min(created_at) FILTER (WHERE status = 'queued') AS oldest_queued, \
     (SELECT count(*) FROM outbox WHERE status = 'dead') AS dead \
     FROM outbox WHERE status IN ('queued', 'sending')";
const FINISHED: &str = "SELECT count(*) FILTER (WHERE status = 'sent'), \
     count(*) FILTER (WHERE status = 'expired') FROM outbox";
// Due from its creation: at once for every instance, whatever the caller's clock says.
const RETRY_DEAD: &str = "UPDATE outbox SET status = 'queued', attempts = 0, \
     next_attempt_at = created_at, last_error = NULL, updated_at = $1 \
     WHERE status = 'dead' AND expires_at > $1";

#[derive(sqlx::FromRow)]
struct DepthRow {
    queued: i64,
    sending: i64,
    dead: i64,
    oldest_queued: Option<DbTime>,
}

#[derive(sqlx::FromRow)]
struct ClaimedRow {
    id: Uuid,
    kind: String,
    recipient: String,
    name: Option<String>,
    locale: String,
    valid_for_secs: Option<i64>,
    payload: Option<Vec<u8>>,
    key_id: Option<String>,
    attempts: i32,
    expires_at: DbTime,
    created_at: DbTime,
}

impl TryFrom<ClaimedRow> for ClaimedMail {
    type Error = StoreError;

    fn try_from(row: ClaimedRow) -> Result<Self, Self::Error> {
        let attempts = u32::try_from(row.attempts).map_err(|_| {
            StoreError::Corrupt(anyhow::anyhow!("outbox {}: negative attempts", row.id))
        })?;
        Ok(ClaimedMail {
            attempts,
            mail: OutboxMail {
                id: row.id,
                kind: row.kind,
                recipient: row.recipient,
                name: row.name,
                locale: row.locale,
                valid_for_secs: row.valid_for_secs,
                payload: row.payload,
                key_id: row.key_id,
                created_at: row.created_at.0,
                expires_at: row.expires_at.0,
            },
        })
    }
}

/// Writes `mail` inside `tx`: the use cases' transactions (a new account, a registration)
/// carry their mail with them.
pub(super) async fn insert_mail(tx: &mut SqlTx, mail: &OutboxMail) -> Result<(), sqlx::Error> {
    if mail.payload.is_some() {
        sql_tx!(tx, |db| {
            sqlx::query(SUPERSEDE)
                .bind(mail.recipient.as_str())
                .bind(mail.kind.as_str())
                .bind(DbTime(mail.created_at))
                .execute(db)
                .await
                .map(drop)
        })?;
    }
    sql_tx!(tx, |db| {
        sqlx::query(INSERT_MAIL)
            .bind(mail.id)
            .bind(mail.kind.as_str())
            .bind(mail.recipient.as_str())
            .bind(mail.name.as_deref())
            .bind(mail.locale.as_str())
            .bind(mail.valid_for_secs)
            .bind(mail.payload.as_deref())
            .bind(mail.key_id.as_deref())
            .bind(DbTime(mail.created_at))
            .bind(DbTime(mail.expires_at))
            .execute(db)
            .await
            .map(drop)
    })
}

impl SqlStore {
    /// Runs one transition of a leased row; true if it still held the lease.
    async fn transition(
        &self,
        what: &'static str,
        statement: &'static str,
        id: Uuid,
        owner: &str,
        times: [Option<DbTime>; 2],
        error: Option<&str>,
    ) -> StoreResult<bool> {
        self.run(what, move || async move {
            sql!(&self.pool, |db| {
                let mut query = sqlx::query(statement).bind(id).bind(owner);
                // Each statement's parameters in order: an optional time, an optional error, a time.
                if let Some(at) = times[0] {
                    query = query.bind(at);
                }
                if let Some(error) = error {
                    query = query.bind(error);
                }
                if let Some(now) = times[1] {
                    query = query.bind(now);
                }
                query
                    .execute(db)
                    .await
                    .map(|done| done.rows_affected() == 1)
            })
        })
        .await
    }
}

#[async_trait]
impl OutboxStore for SqlStore {
    async fn enqueue(&self, mail: &OutboxMail) -> StoreResult<()> {
        self.run("queueing mail", move || async move {
            let mut tx = self.pool.begin().await?;
            insert_mail(&mut tx, mail).await?;
            tx.commit().await
        })
        .await
    }

    async fn enqueue_decoy(&self, mail: &OutboxMail) -> StoreResult<()> {
        self.run("writing a decoy outbox row", move || async move {
            let mut tx = self.pool.begin().await?;
            insert_mail(&mut tx, mail).await?;
            sql_tx!(&mut tx, |db| {
                sqlx::query(DELETE_MAIL)
                    .bind(mail.id)
                    .execute(db)
                    .await
                    .map(drop)
            })?;
            tx.commit().await
        })
        .await
    }

    async fn expire(&self, now: OffsetDateTime) -> StoreResult<u64> {
        self.run("expiring outbox rows", move || async move {
            sql!(&self.pool, |db| {
                sqlx::query(EXPIRE)
                    .bind(DbTime(now))
                    .execute(db)
                    .await
                    .map(|done| done.rows_affected())
            })
        })
        .await
    }

    async fn claim(
        &self,
        owner: &str,
        now: OffsetDateTime,
        lease_until: OffsetDateTime,
        limit: u32,
    ) -> StoreResult<Vec<ClaimedMail>> {
        let statement = match self.pool {
            SqlPool::Postgres(_) => CLAIM_POSTGRES,
            SqlPool::Sqlite(_) => CLAIM_SQLITE,
        };
        let rows = self
            .run("claiming outbox rows", move || async move {
                sql!(&self.pool, |db| {
                    sqlx::query_as::<_, ClaimedRow>(statement)
                        .bind(owner)
                        .bind(DbTime(now))
                        .bind(DbTime(lease_until))
                        .bind(i64::from(limit))
                        .fetch_all(db)
                        .await
                })
            })
            .await?;
        let mut claimed = rows
            .into_iter()
            .map(ClaimedMail::try_from)
            .collect::<StoreResult<Vec<_>>>()?;
        // RETURNING promises no order; mail to one address goes out in the order it was written.
        claimed.sort_by_key(|c| (c.mail.created_at, c.mail.id));
        Ok(claimed)
    }

    async fn mark_sent(&self, id: Uuid, owner: &str, now: OffsetDateTime) -> StoreResult<bool> {
        let times = [None, Some(DbTime(now))];
        self.transition("marking mail sent", MARK_SENT, id, owner, times, None)
            .await
    }

    async fn retry_at(
        &self,
        id: Uuid,
        owner: &str,
        at: OffsetDateTime,
        error: &str,
        now: OffsetDateTime,
    ) -> StoreResult<bool> {
        let times = [Some(DbTime(at)), Some(DbTime(now))];
        self.transition("rescheduling mail", RETRY_AT, id, owner, times, Some(error))
            .await
    }

    async fn mark_dead(
        &self,
        id: Uuid,
        owner: &str,
        error: &str,
        now: OffsetDateTime,
    ) -> StoreResult<bool> {
        let times = [None, Some(DbTime(now))];
        self.transition(
            "giving up on mail",
            MARK_DEAD,
            id,
            owner,
            times,
            Some(error),
        )
        .await
    }

    async fn release(&self, id: Uuid, owner: &str, now: OffsetDateTime) -> StoreResult<bool> {
        let times = [None, Some(DbTime(now))];
        self.transition("releasing mail", RELEASE, id, owner, times, None)
            .await
    }

    async fn mark_expired(&self, id: Uuid, owner: &str, now: OffsetDateTime) -> StoreResult<bool> {
        let times = [None, Some(DbTime(now))];
        self.transition("expiring mail", MARK_EXPIRED, id, owner, times, None)
            .await
    }

    async fn depth(&self, now: OffsetDateTime) -> StoreResult<OutboxDepth> {
        let row: DepthRow = self
            .run("reading the outbox depth", move || async move {
                sql!(&self.pool, |db| sqlx::query_as(DEPTH).fetch_one(db).await)
            })
            .await?;
        let count = |n: i64| u64::try_from(n).unwrap_or(0);
        Ok(OutboxDepth {
            queued: count(row.queued),
            sending: count(row.sending),
            dead: count(row.dead),
            oldest_queued: row.oldest_queued.map(|t| remaining(now, t.0)),
        })
    }

    async fn counts(&self, now: OffsetDateTime) -> StoreResult<OutboxCounts> {
        let depth = self.depth(now).await?;
        let (sent, expired): (i64, i64) = self
            .run("counting outbox rows", move || async move {
                sql!(&self.pool, |db| sqlx::query_as(FINISHED)
                    .fetch_one(db)
                    .await)
            })
            .await?;
        Ok(OutboxCounts {
            depth,
            sent: u64::try_from(sent).unwrap_or(0),
            expired: u64::try_from(expired).unwrap_or(0),
        })
    }

    async fn retry_dead(&self, now: OffsetDateTime) -> StoreResult<u64> {
        self.run("queueing dead mail again", move || async move {
            sql!(&self.pool, |db| {
                sqlx::query(RETRY_DEAD)
                    .bind(DbTime(now))
                    .execute(db)
                    .await
                    .map(|done| done.rows_affected())
            })
        })
        .await
    }
}
