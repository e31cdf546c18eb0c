//! The mail outbox as the use cases and the sender see it: rows to write, rows claimed, and
//! the transitions between queued, sending, sent, dead and expired.

use std::time::Duration;

use async_trait::async_trait;
use time::OffsetDateTime;
use uuid::Uuid;

use super::StoreResult;

/// A mail to write: what its template needs at send time. A code is only ever in `payload`,
/// sealed under the key `key_id` names.
#[derive(Debug, Clone)]
pub struct OutboxMail {
    /// Row id (also part of the sealed payload's associated data).
    pub id: Uuid,
    /// The template (`Message::template_name`).
    pub kind: String,
    /// The address it goes to.
    pub recipient: String,
    /// The greeting's name.
    pub name: Option<String>,
    /// The language (`Locale::as_str`).
    pub locale: String,
    /// How long the code it carries is valid, seconds (codes only).
    pub valid_for_secs: Option<i64>,
    /// The sealed code (nonce, ciphertext, tag), if it carries one.
    pub payload: Option<Vec<u8>>,
    /// Name of the key that sealed `payload`.
    pub key_id: Option<String>,
    /// When it was written (and first due).
    pub created_at: OffsetDateTime,
    /// After this it is not sent: its code has expired (or a notice is too old to matter).
    pub expires_at: OffsetDateTime,
}

/// A row claimed for sending: leased to one sender until its lease runs out.
#[derive(Debug, Clone)]
pub struct ClaimedMail {
    /// The row as written.
    pub mail: OutboxMail,
    /// Sends tried so far, this one included.
    pub attempts: u32,
}

/// What waits in the outbox (or gave up): read once a sweep by every instance, from the
/// indexes over those rows alone, so its cost does not grow with the week of sent mail kept.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OutboxDepth {
    /// Waiting to be sent (first try or a retry).
    pub queued: u64,
    /// Leased to a sender now.
    pub sending: u64,
    /// Given up on (permanent failure or too many tries).
    pub dead: u64,
    /// Age of the oldest queued row at the time asked.
    pub oldest_queued: Option<Duration>,
}

/// How many rows are in each state, for `aidlc-auth outbox` (which reads every row kept).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OutboxCounts {
    /// The rows not finished, and the dead ones.
    pub depth: OutboxDepth,
    /// Delivered.
    pub sent: u64,
    /// Not sent because its code expired first.
    pub expired: u64,
}

/// The outbox table. Every transition of a claimed row is made only by the sender that holds
/// its lease (`owner`), so a sender whose lease ran out cannot overwrite its successor's work.
#[async_trait]
pub trait OutboxStore: Send + Sync {
    /// Writes `mail` on its own (a mail without another write to share a transaction with).
    async fn enqueue(&self, mail: &OutboxMail) -> StoreResult<()>;
    /// Does the work of [`Self::enqueue`] for a mail that must not go out, and keeps nothing:
    /// the row is written and removed in one transaction. An answer that mails nothing (to an
    /// address without an account) then costs what one that mails costs, so response times
    /// do not tell them apart.
    async fn enqueue_decoy(&self, mail: &OutboxMail) -> StoreResult<()>;
    /// Marks rows past their expiry that nobody is sending as expired, erasing their payload
    /// (and erases the payload of dead rows past expiry); returns how many changed.
    async fn expire(&self, now: OffsetDateTime) -> StoreResult<u64>;
    /// In one statement, leases to `owner` until `lease_until` up to `limit` rows that are due
    /// at `now` or whose lease has run out, not yet expired, counting one more attempt each.
    /// Oldest first. On PostgreSQL rows another sender is claiming are skipped, not waited for.
    async fn claim(
        &self,
        owner: &str,
        now: OffsetDateTime,
        lease_until: OffsetDateTime,
        limit: u32,
    ) -> StoreResult<Vec<ClaimedMail>>;
    /// Records delivery and erases the payload; false if `owner` no longer holds the lease.
    async fn mark_sent(&self, id: Uuid, owner: &str, now: OffsetDateTime) -> StoreResult<bool>;
    /// Queues the row again for `at`, noting `error`; false if `owner` lost the lease.
    async fn retry_at(
        &self,
        id: Uuid,
        owner: &str,
        at: OffsetDateTime,
        error: &str,
        now: OffsetDateTime,
    ) -> StoreResult<bool>;
    /// Gives up on the row, noting `error`; false if `owner` lost the lease.
    async fn mark_dead(
        &self,
        id: Uuid,
        owner: &str,
        error: &str,
        now: OffsetDateTime,
    ) -> StoreResult<bool>;
    /// Gives a claimed row back unsent (the instance is stopping), due at `now`, its attempt
    /// not counted; false if `owner` lost the lease.
    async fn release(&self, id: Uuid, owner: &str, now: OffsetDateTime) -> StoreResult<bool>;
    /// Marks a claimed row whose code expired before it could be sent; erases the payload.
    async fn mark_expired(&self, id: Uuid, owner: &str, now: OffsetDateTime) -> StoreResult<bool>;
    /// The rows queued, sending and dead, and the oldest queued row's age at `now`.
    async fn depth(&self, now: OffsetDateTime) -> StoreResult<OutboxDepth>;
    /// Rows per state (all of them, the finished ones too), and the oldest queued row's age.
    async fn counts(&self, now: OffsetDateTime) -> StoreResult<OutboxCounts>;
    /// Queues every dead row not yet past its expiry at `now` again, due at once, with a fresh
    /// count of attempts; returns how many.
    async fn retry_dead(&self, now: OffsetDateTime) -> StoreResult<u64>;
}
