//! Login sessions and their liveness rule.

use std::fmt;
use std::time::Duration;

use time::OffsetDateTime;
use uuid::Uuid;

use super::UserId;

/// A session's id (the `sid` claim of its access tokens).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct SessionId(pub Uuid);

impl SessionId {
    /// A fresh random id.
    pub fn new() -> Self {
        Self(Uuid::new_v4())
    }
}

impl Default for SessionId {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Display for SessionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// A login session: one refresh-token family, kept in SQL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Session {
    /// Its id (the `sid` claim of its access tokens).
    pub id: SessionId,
    /// Whose session it is.
    pub user_id: UserId,
    /// When it started.
    pub created_at: OffsetDateTime,
    /// When it ends regardless of use (absolute lifetime).
    pub expires_at: OffsetDateTime,
    /// Last login or refresh.
    pub last_used_at: OffsetDateTime,
    /// The client's User-Agent at login.
    pub user_agent: Option<String>,
    /// The client's address at login.
    pub ip: Option<String>,
    /// When it was revoked, if it was.
    pub revoked_at: Option<OffsetDateTime>,
}

impl Session {
    /// Not revoked, within its absolute lifetime, and (with an idle timeout) used recently.
    pub fn is_live(&self, now: OffsetDateTime, idle_timeout: Option<Duration>) -> bool {
        self.revoked_at.is_none()
            && self.expires_at > now
            && idle_timeout.is_none_or(|idle| self.last_used_at + idle > now)
    }
}

/// How many live sessions one user may hold.
#[derive(Debug, Clone, Copy)]
pub struct SessionLimit {
    /// At most this many live sessions per user; a new one ends the oldest.
    pub max_per_user: u32,
    /// Sessions last used before this are idle (already dead) and do not count.
    pub used_after: OffsetDateTime,
}

/// How refresh-token reuse is judged.
#[derive(Debug, Clone, Copy)]
pub struct RefreshRules {
    /// How long the immediate predecessor of the current token still yields the current one.
    pub grace: Duration,
    /// Sessions unused for this long are dead.
    pub idle_timeout: Option<Duration>,
}

/// What presenting a refresh token did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Rotation {
    /// It was the current token: it is now used and the successor is current.
    Rotated(Session),
    /// It was the immediate predecessor, used within the grace window: the successor (already
    /// current, not yet used) is handed out again. Nothing changed.
    Replayed(Session),
    /// It had been used before, outside the grace window or not the immediate predecessor:
    /// the whole session is now revoked.
    ReuseDetected {
        /// The session that was revoked.
        session_id: SessionId,
        /// Whose it was.
        user_id: UserId,
    },
    /// Unknown token, or its session is revoked, expired or idle.
    Invalid,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn now() -> OffsetDateTime {
        OffsetDateTime::UNIX_EPOCH + Duration::from_secs(1_000_000)
    }

    fn session() -> Session {
        Session {
            id: SessionId::new(),
            user_id: UserId::new(),
            created_at: now() - Duration::from_secs(600),
            expires_at: now() + Duration::from_secs(600),
            last_used_at: now() - Duration::from_secs(60),
            user_agent: None,
            ip: None,
            revoked_at: None,
        }
    }

    #[test]
    fn live_means_unrevoked_unexpired_and_recently_used() {
        let s = session();
        assert!(s.is_live(now(), None));
        assert!(
            !Session {
                revoked_at: Some(now()),
                ..s.clone()
            }
            .is_live(now(), None)
        );
        assert!(
            !Session {
                expires_at: now(),
                ..s.clone()
            }
            .is_live(now(), None)
        );
        assert!(!s.is_live(now(), Some(Duration::from_secs(60))));
        assert!(s.is_live(now(), Some(Duration::from_secs(61))));
    }
}
