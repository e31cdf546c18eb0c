//! The outbox sender every instance runs: claims due rows under a lease, sends them through the
//! configured transport, and records the outcome only while it still holds the lease.
//!
//! Delivery is at least once: a mail is sent twice only when an instance dies (or loses the
//! database) between the transport's acceptance and the row's `sent` mark, and its lease then
//! runs out. The lease covers a whole batch of sends, each bounded, so it does not run out
//! while the sender is alive.

use std::sync::Arc;
use std::time::Duration;

use futures::future::join_all;
use rand::Rng;
use tokio::sync::watch;

use super::{EmailSender, Outbox};
use crate::clock::Clock;
use crate::store::{ClaimedMail, OutboxStore, StoreResult};

/// Rows claimed per statement.
const BATCH: u32 = 8;
/// First retry delay; it doubles per attempt up to [`MAX_BACKOFF`], less up to half (jitter)
/// so a burst of failures does not retry in lockstep.
const FIRST_BACKOFF: Duration = Duration::from_secs(1);
const MAX_BACKOFF: Duration = Duration::from_secs(300);
/// Added to one send's bound when leasing a batch, for the claim and the marks around it.
const LEASE_MARGIN: Duration = Duration::from_secs(30);

/// How the sender behaves (from the settings).
#[derive(Debug, Clone, Copy)]
pub struct DispatchConfig {
    /// How often the outbox is read without a wake-up (mail written by other instances).
    pub poll: Duration,
    /// Attempts before a row is given up on (dead).
    pub max_attempts: u32,
    /// Bound on one send; a send past it counts as a transient failure.
    pub send_timeout: Duration,
}

/// The sender of one instance.
pub struct Dispatcher {
    store: Arc<dyn OutboxStore>,
    outbox: Outbox,
    mailer: Arc<dyn EmailSender>,
    clock: Arc<dyn Clock>,
    owner: String,
    config: DispatchConfig,
}

impl Dispatcher {
    /// A sender for `store`, sending through `mailer`, leasing rows as a new owner id.
    pub fn new(
        store: Arc<dyn OutboxStore>,
        outbox: Outbox,
        mailer: Arc<dyn EmailSender>,
        clock: Arc<dyn Clock>,
        config: DispatchConfig,
    ) -> Self {
        Self {
            store,
            outbox,
            mailer,
            clock,
            owner: uuid::Uuid::new_v4().to_string(),
            config,
        }
    }

    /// Sends until `stop` turns true; the send under way is finished first and the rest of its
    /// batch given back, so no row is left leased by a sender that stopped cleanly.
    pub async fn run(self, mut stop: watch::Receiver<bool>) {
        let mut next_expiry = self.clock.now();
        loop {
            if *stop.borrow() {
                return;
            }
            // The expiry pass at most once per poll interval, not on every wake-up: under
            // load a wake-up comes with nearly every mail, and the pass reads the due rows'
            // index (and what churn left in it) each time. The claim never takes an expired
            // row and a send checks the expiry itself, so the pass only marks the row and
            // erases its sealed code, whose code is dead by then anyway.
            let now = self.clock.now();
            let expire = now >= next_expiry;
            if expire {
                next_expiry = now + self.config.poll;
            }
            if let Err(e) = self.drain(&stop, expire).await {
                tracing::warn!(error = %e, "reading the mail outbox failed; retrying");
            }
            tokio::select! {
                changed = stop.changed() => {
                    // The stopping side is gone (its task was dropped): stop too, never spin.
                    if changed.is_err() {
                        return;
                    }
                }
                () = self.outbox.woken() => {}
                () = tokio::time::sleep(self.config.poll) => {}
            }
        }
    }

    /// Expires what can no longer be sent (when `expire`), then sends due rows batch after
    /// batch.
    async fn drain(&self, stop: &watch::Receiver<bool>, expire: bool) -> StoreResult<()> {
        if expire {
            let expired = self.store.expire(self.clock.now()).await?;
            if expired > 0 {
                tracing::info!(expired, "mail not sent: its code expired first");
            }
        }
        loop {
            let now = self.clock.now();
            // The batch's sends run at once, each within `send_timeout`, so one send's bound
            // (plus the margin) covers the batch: a row whose sender died or could not record
            // the delivery goes out again after this, not after the batch's sends end to end.
            let lease = self.config.send_timeout + LEASE_MARGIN;
            let claimed = self
                .store
                .claim(&self.owner, now, now + lease, BATCH)
                .await?;
            let full = claimed.len() == BATCH as usize;
            if *stop.borrow() {
                // Stopping: what is not sent yet goes back for another instance now, instead of
                // waiting for this lease to run out.
                for row in claimed {
                    self.store
                        .release(row.mail.id, &self.owner, self.clock.now())
                        .await?;
                }
            } else {
                // The batch goes out at once over the transport's pooled connections: one mail
                // at a time held an instance to about 20 mails/s, each SMTP exchange waiting
                // ~45 ms for the server's answer (bench/mail_latency.py).
                let sent = join_all(claimed.into_iter().map(|row| self.deliver(row))).await;
                for result in sent {
                    result?;
                }
            }
            if !full || *stop.borrow() {
                return Ok(());
            }
        }
    }

    /// Sends one claimed row and records what happened.
    #[tracing::instrument(skip_all, fields(mail_id = %row.mail.id, kind = %row.mail.kind, attempt = row.attempts))]
    async fn deliver(&self, row: ClaimedMail) -> StoreResult<()> {
        let id = row.mail.id;
        let owner = self.owner.as_str();
        if row.mail.expires_at <= self.clock.now() {
            self.store.mark_expired(id, owner, self.clock.now()).await?;
            tracing::info!("mail not sent: its code expired first");
            return Ok(());
        }
        let email = match self.outbox.open(&row.mail) {
            Ok(email) => email,
            Err(e) => {
                tracing::error!(error = %e, "mail given up on: unreadable row");
                let error = e.to_string();
                self.store
                    .mark_dead(id, owner, &error, self.clock.now())
                    .await?;
                return Ok(());
            }
        };
        let sent = tokio::time::timeout(self.config.send_timeout, self.mailer.send(&email)).await;
        let now = self.clock.now();
        let (error, permanent) = match sent {
            Ok(Ok(())) => {
                if !self.store.mark_sent(id, owner, now).await? {
                    // Someone else holds the row now: our lease ran out mid-send.
                    tracing::warn!("mail sent after its lease ran out; it may be sent twice");
                }
                return Ok(());
            }
            Ok(Err(e)) => (format!("{e:#}"), e.is_permanent()),
            Err(_) => (
                format!(
                    "no answer from the transport within {:?}",
                    self.config.send_timeout
                ),
                false,
            ),
        };
        if permanent || row.attempts >= self.config.max_attempts {
            tracing::error!(error, permanent, "mail given up on (dead)");
            self.store.mark_dead(id, owner, &error, now).await?;
        } else {
            let at = now + backoff(row.attempts);
            tracing::warn!(error, retry_at = %at, "sending mail failed; will retry");
            self.store.retry_at(id, owner, at, &error, now).await?;
        }
        Ok(())
    }
}

/// The delay before the retry that follows attempt `attempts` (1-based): doubling from
/// [`FIRST_BACKOFF`], capped at [`MAX_BACKOFF`], then between half and all of it.
fn backoff(attempts: u32) -> Duration {
    let doubled = FIRST_BACKOFF.saturating_mul(1 << attempts.saturating_sub(1).min(16));
    let full = doubled.min(MAX_BACKOFF);
    full.mul_f64(rand::rng().random_range(0.5..=1.0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_with_jitter_and_is_capped() {
        for attempts in 1..=20 {
            let full = FIRST_BACKOFF
                .saturating_mul(1 << (attempts - 1).min(16))
                .min(MAX_BACKOFF);
            let delay = backoff(attempts);
            assert!(delay <= full && delay >= full / 2, "{attempts}: {delay:?}");
        }
        assert!(backoff(1) <= Duration::from_secs(1));
        assert!(backoff(30) >= Duration::from_secs(150));
    }
}
