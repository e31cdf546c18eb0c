//! Follows the PostgreSQL notices that keep this instance's session copy honest
//! (`migrations/postgres/0009_session_notices.sql`), and arms the copy only while they arrive.
//!
//! A dedicated connection LISTENs; once a second the instance sends its own heartbeat on the
//! same channel through the pool. PostgreSQL delivers notices in commit order, so a heartbeat
//! coming back proves every revocation committed before it was sent has been applied: the copy
//! answers for [`SessionCache::LAPSE`] after each one. A lost connection, an error, or silence
//! turns the copy off and empties it; it comes back with the next heartbeat after a reconnect.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use sqlx::postgres::{PgListener, PgPool};
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;
use uuid::Uuid;

use crate::domain::{SessionId, UserId};
use crate::metrics;
use crate::store::Background;
use crate::store::session_cache::SessionCache;

/// The channel the triggers notify.
const CHANNEL: &str = "aidlc_sessions";
/// How often the heartbeat goes out: well inside [`SessionCache::LAPSE`].
const HEARTBEAT: Duration = Duration::from_secs(1);
/// Wait before connecting again after the channel was lost.
const RETRY: Duration = Duration::from_secs(1);

/// Applies the notices to `cache` for as long as the service runs.
pub(crate) struct RevocationNotices {
    pub(crate) pool: PgPool,
    pub(crate) cache: Arc<SessionCache>,
    /// Bounds connecting, subscribing and each heartbeat.
    pub(crate) timeout: Duration,
}

/// What the receiving task passes on.
enum Received {
    /// Subscribed: notices from now on arrive.
    Listening,
    /// A notice's payload.
    Notice(String),
}

#[async_trait]
impl Background for RevocationNotices {
    async fn run(&self, mut stopped: watch::Receiver<bool>) {
        // Random, so each instance knows its own heartbeat from the others'.
        let heartbeat = format!("h{}", Uuid::new_v4().simple());
        metrics::session_cache_armed(false);
        loop {
            self.follow(&heartbeat, &mut stopped).await;
            self.cache.disarm();
            metrics::session_cache_armed(false);
            if *stopped.borrow() {
                return;
            }
            tokio::select! {
                () = tokio::time::sleep(RETRY) => {}
                _ = stopped.wait_for(|stopped| *stopped) => return,
            }
        }
    }
}

impl RevocationNotices {
    /// One subscription, until it is lost, goes silent, or the service stops.
    async fn follow(&self, heartbeat: &str, stopped: &mut watch::Receiver<bool>) {
        let (tx, mut rx) = mpsc::channel(1024);
        // Receiving runs apart: `try_recv` is not meant to be cancelled mid-message, and this
        // loop must also tick.
        let receiver = tokio::spawn(receive(self.pool.clone(), self.timeout, tx));
        let mut ticks = tokio::time::interval(HEARTBEAT);
        let mut listening = false;
        let mut last_heartbeat = Instant::now();
        loop {
            tokio::select! {
                _ = stopped.wait_for(|stopped| *stopped) => break,
                received = rx.recv() => match received {
                    Some(Received::Listening) => {
                        listening = true;
                        last_heartbeat = Instant::now();
                        self.send_heartbeat(heartbeat);
                    }
                    Some(Received::Notice(payload)) => {
                        if payload == heartbeat {
                            last_heartbeat = Instant::now();
                            self.cache.arm(last_heartbeat.into_std());
                            metrics::session_cache_armed(true);
                        } else {
                            self.apply(&payload);
                        }
                    }
                    None => break,
                },
                _ = ticks.tick() => {
                    if listening && last_heartbeat.elapsed() > SessionCache::LAPSE {
                        tracing::warn!("session revocation notices stopped arriving: session copy off; reconnecting");
                        break;
                    }
                    if listening {
                        self.send_heartbeat(heartbeat);
                    }
                }
            }
        }
        receiver.abort();
    }

    /// Sends the heartbeat through the pool without holding up the notices.
    fn send_heartbeat(&self, heartbeat: &str) {
        let pool = self.pool.clone();
        let payload = heartbeat.to_owned();
        let timeout = self.timeout;
        tokio::spawn(async move {
            let sent = tokio::time::timeout(
                timeout,
                sqlx::query("SELECT pg_notify($1, $2)")
                    .bind(CHANNEL)
                    .bind(payload)
                    .execute(&pool),
            )
            .await;
            if !matches!(sent, Ok(Ok(_))) {
                // Missing heartbeats turn the copy off by themselves; the pool's own errors
                // are counted where requests meet them.
                tracing::debug!("session notice heartbeat not sent");
            }
        });
    }

    /// Forgets what a notice names.
    fn apply(&self, payload: &str) {
        let (kind, id) = payload.split_at(payload.len().min(1));
        match (kind, Uuid::parse_str(id)) {
            ("s", Ok(id)) => self.cache.forget_session(SessionId(id)),
            ("u", Ok(id)) => self.cache.forget_user(UserId(id)),
            // Another instance's heartbeat.
            ("h", _) => {}
            _ => {
                // Something unknown on the channel: forgetting everything is always safe.
                tracing::warn!("unexpected session notice: session copy emptied");
                self.cache.disarm();
                metrics::session_cache_armed(false);
            }
        }
    }
}

/// Subscribes on a connection of its own and passes every notice on, until the connection is
/// lost or fails (then it returns, and the follower starts over).
async fn receive(pool: PgPool, timeout: Duration, tx: mpsc::Sender<Received>) {
    let subscribed = tokio::time::timeout(timeout, async {
        let mut listener = PgListener::connect_with(&pool).await?;
        listener.eager_reconnect(false);
        listener.listen(CHANNEL).await?;
        Ok::<_, sqlx::Error>(listener)
    })
    .await;
    let mut listener = match subscribed {
        Ok(Ok(listener)) => listener,
        Ok(Err(e)) => {
            tracing::warn!(error = %e, "could not subscribe to session revocation notices: session copy off");
            return;
        }
        Err(_) => {
            tracing::warn!("subscribing to session revocation notices timed out: session copy off");
            return;
        }
    };
    if tx.send(Received::Listening).await.is_err() {
        return;
    }
    loop {
        match listener.try_recv().await {
            Ok(Some(notice)) => {
                if tx
                    .send(Received::Notice(notice.payload().to_owned()))
                    .await
                    .is_err()
                {
                    return;
                }
            }
            Ok(None) => {
                tracing::warn!("lost the session revocation notices' connection: session copy off");
                return;
            }
            Err(e) => {
                tracing::warn!(error = %e, "session revocation notices failed: session copy off");
                return;
            }
        }
    }
}
