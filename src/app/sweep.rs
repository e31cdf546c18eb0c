//! The clean-up job: expired rows out, and the outbox's depth reported once a sweep.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;

use crate::clock::Clock;
use crate::store::{Stores, SweepCutoffs};

/// How long finished outbox rows (sent, dead, expired) are kept, for `aidlc-auth outbox`.
const OUTBOX_RETENTION: Duration = Duration::from_secs(7 * 24 * 3600);

/// Deletes expired SQL codes, cooldowns, sessions, signing keys no longer published, and
/// pending accounts never verified, finished outbox rows, audit events past their retention
/// (Redis expires its own keys).
pub(super) async fn sweep_forever(
    stores: Stores,
    clock: Arc<dyn Clock>,
    every: Duration,
    key_window: Duration,
    pending_ttl: Duration,
    event_retention: Duration,
    mut stopped: watch::Receiver<bool>,
) {
    let mut ticker = tokio::time::interval(every);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = ticker.tick() => {}
            _ = stopped.wait_for(|s| *s) => return,
        }
        let now = clock.now();
        let cutoffs = SweepCutoffs {
            now,
            keys_retired_before: now - key_window,
            pending_before: now - pending_ttl,
            outbox_finished_before: now - OUTBOX_RETENTION,
            events_before: now - event_retention,
        };
        match stores.sweeper.sweep_expired(cutoffs).await {
            Ok(0) => {}
            Ok(removed) => tracing::debug!(removed, "swept expired rows"),
            Err(e) => tracing::warn!(error = %e, "sweeping expired rows failed"),
        }
        log_outbox_depth(&stores, now).await;
    }
}

/// The outbox's depth and the age of its oldest queued mail, once a sweep, as gauges and in the
/// log: INFO while mail is waiting or dead (what an operator alarms on), DEBUG when it is
/// empty.
async fn log_outbox_depth(stores: &Stores, now: time::OffsetDateTime) {
    let counts = stores.outbox.depth(now).await;
    if let Ok(c) = &counts {
        crate::metrics::outbox(c);
    }
    match counts {
        Ok(c) if c.queued + c.sending + c.dead > 0 => tracing::info!(
            queued = c.queued,
            sending = c.sending,
            dead = c.dead,
            oldest_queued_secs = c.oldest_queued.map(|d| d.as_secs()),
            "mail outbox depth"
        ),
        Ok(_) => tracing::debug!("mail outbox empty"),
        Err(e) => tracing::warn!(error = %e, "reading the mail outbox depth failed"),
    }
}
