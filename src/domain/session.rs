//! Login sessions, their liveness rule, and the refresh-token exchange decision.

use std::fmt;
use std::time::Duration;

use time::OffsetDateTime;
use uuid::Uuid;

use super::UserId;

/// A session's id (the `sid` claim of its access tokens).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(transparent)]
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

/// A session about to start, before the store knows whose: a code login names only an
/// address, and the store finds its account in the same call that writes the session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewSession {
    /// Its id.
    pub id: SessionId,
    /// When it starts.
    pub created_at: OffsetDateTime,
    /// When it ends regardless of use.
    pub expires_at: OffsetDateTime,
    /// Its first use: the login.
    pub last_used_at: OffsetDateTime,
    /// The client's User-Agent at login.
    pub user_agent: Option<String>,
    /// The client's address at login.
    pub ip: Option<String>,
}

impl NewSession {
    /// The session, `user_id`'s.
    pub fn owned_by(self, user_id: UserId) -> Session {
        Session {
            id: self.id,
            user_id,
            created_at: self.created_at,
            expires_at: self.expires_at,
            last_used_at: self.last_used_at,
            user_agent: self.user_agent,
            ip: self.ip,
            revoked_at: None,
        }
    }
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

/// The presented refresh token, as its store found it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PresentedRefresh {
    /// No stored token has its digest.
    Unknown,
    /// It was its session's current token, and this exchange has just marked it used.
    Claimed,
    /// It had been exchanged before (at `used_at`; None only if another exchange changed it
    /// between this one's reads, which never counts as within the grace window).
    Retired {
        /// When it was exchanged.
        used_at: Option<OffsetDateTime>,
    },
}

/// The token one generation after a retired presented token, as its store found it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NextRefresh<'a> {
    /// Its stored digest.
    pub digest: &'a str,
    /// When it was exchanged, if it was.
    pub used_at: Option<OffsetDateTime>,
}

/// Decides a refresh-token exchange from what the store loaded; the store then saves what the
/// answer says (`Rotated`: the successor and the touch; `ReuseDetected`: the revocation).
///
/// - unknown token, or no live `session`: `Invalid`;
/// - the current token (`Claimed`): `Rotated`, the session touched at `now`;
/// - a retired token used within `rules.grace`, whose `next` token is `successor` (the digest
///   derived from the presented token) and still unused: `Replayed`, nothing changes;
/// - any other retired token: `ReuseDetected`, the whole family is revoked.
pub fn judge_refresh(
    presented: PresentedRefresh,
    session: Option<Session>,
    next: Option<NextRefresh<'_>>,
    successor: &str,
    now: OffsetDateTime,
    rules: RefreshRules,
) -> Rotation {
    let Some(session) = session.filter(|s| s.is_live(now, rules.idle_timeout)) else {
        return Rotation::Invalid;
    };
    match presented {
        PresentedRefresh::Unknown => Rotation::Invalid,
        PresentedRefresh::Claimed => Rotation::Rotated(Session {
            last_used_at: now,
            ..session
        }),
        PresentedRefresh::Retired { used_at } => {
            let within_grace = used_at.is_some_and(|t| now - t <= rules.grace);
            let successor_is_current =
                next.is_some_and(|n| n.digest == successor && n.used_at.is_none());
            if within_grace && successor_is_current {
                Rotation::Replayed(session)
            } else {
                Rotation::ReuseDetected {
                    session_id: session.id,
                    user_id: session.user_id,
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GRACE: Duration = Duration::from_secs(10);
    const SUCCESSOR: &str = "successor-digest";

    fn now() -> OffsetDateTime {
        OffsetDateTime::UNIX_EPOCH + Duration::from_secs(1_000_000)
    }

    fn rules() -> RefreshRules {
        RefreshRules {
            grace: GRACE,
            idle_timeout: Some(Duration::from_secs(3600)),
        }
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

    fn retired(ago: Duration) -> PresentedRefresh {
        PresentedRefresh::Retired {
            used_at: Some(now() - ago),
        }
    }

    fn next(digest: &str, used: bool) -> Option<NextRefresh<'_>> {
        Some(NextRefresh {
            digest,
            used_at: used.then(now),
        })
    }

    fn judge(
        presented: PresentedRefresh,
        session: Option<Session>,
        next: Option<NextRefresh<'_>>,
    ) -> Rotation {
        judge_refresh(presented, session, next, SUCCESSOR, now(), rules())
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

    #[test]
    fn current_token_rotates_and_touches_the_session() {
        let s = session();
        assert_eq!(
            judge(PresentedRefresh::Claimed, Some(s.clone()), None),
            Rotation::Rotated(Session {
                last_used_at: now(),
                ..s
            })
        );
    }

    #[test]
    fn unknown_token_is_invalid() {
        assert_eq!(
            judge(PresentedRefresh::Unknown, None, None),
            Rotation::Invalid
        );
    }

    #[test]
    fn dead_session_is_invalid_whatever_the_token() {
        let revoked = Session {
            revoked_at: Some(now() - Duration::from_secs(1)),
            ..session()
        };
        let expired = Session {
            expires_at: now(),
            ..session()
        };
        let idle = Session {
            last_used_at: now() - Duration::from_secs(3600),
            ..session()
        };
        for dead in [revoked, expired, idle] {
            assert_eq!(
                judge(PresentedRefresh::Claimed, Some(dead.clone()), None),
                Rotation::Invalid
            );
            assert_eq!(
                judge(
                    retired(Duration::from_secs(1)),
                    Some(dead),
                    next(SUCCESSOR, false)
                ),
                Rotation::Invalid
            );
        }
        assert_eq!(
            judge(PresentedRefresh::Claimed, None, None),
            Rotation::Invalid
        );
    }

    #[test]
    fn predecessor_within_grace_replays_the_unused_successor() {
        let s = session();
        assert_eq!(
            judge(retired(GRACE), Some(s.clone()), next(SUCCESSOR, false)),
            Rotation::Replayed(s)
        );
    }

    #[test]
    fn retired_token_outside_the_replay_rule_revokes_the_family() {
        let s = session();
        let reuse = Rotation::ReuseDetected {
            session_id: s.id,
            user_id: s.user_id,
        };
        let past_grace = retired(GRACE + Duration::from_millis(1));
        let in_grace = retired(Duration::from_secs(1));
        // Past the grace window.
        assert_eq!(
            judge(past_grace, Some(s.clone()), next(SUCCESSOR, false)),
            reuse
        );
        // The successor has been exchanged too: not the immediate predecessor of the current.
        assert_eq!(
            judge(in_grace, Some(s.clone()), next(SUCCESSOR, true)),
            reuse
        );
        // The next generation is not the successor this token derives.
        assert_eq!(
            judge(in_grace, Some(s.clone()), next("other-digest", false)),
            reuse
        );
        // No next generation at all.
        assert_eq!(judge(in_grace, Some(s.clone()), None), reuse);
        // No recorded use time (a lost race): never within grace.
        assert_eq!(
            judge(
                PresentedRefresh::Retired { used_at: None },
                Some(s),
                next(SUCCESSOR, false)
            ),
            reuse
        );
    }
}
