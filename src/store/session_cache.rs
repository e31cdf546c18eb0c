//! A short-lived, in-process copy of the sessions (with their accounts) this instance just
//! read, so an authenticated request costs no database round trip while nothing about its
//! session changed.
//!
//! It is only as good as what tells it about changes:
//! - this instance's own revocations forget their entries before the revoking call returns
//!   (read-your-writes on one instance);
//! - every other instance's, and any change made in SQL by hand, arrive as PostgreSQL
//!   notifications sent by triggers in the same transaction as the change
//!   (`store/sql/revocations.rs`), normally within milliseconds;
//! - the cache answers only while it is *armed*: while this instance's own heartbeat keeps
//!   coming back through the same notification channel. When the channel is lost, or goes
//!   silent, it stops answering within [`SessionCache::LAPSE`] and forgets everything before
//!   it answers again, since notices sent meanwhile are gone.
//!
//! Each entry also lives at most the configured lifetime. Only sessions that were live when
//! read are kept; callers still check liveness (expiry and idle time) on every answer, and
//! ask the database again when a cached answer fails that check (its `last_used_at` may be
//! older than the database's, after a refresh on another instance).
//!
//! Freshness here is the wall clock of this process (`Instant`), not the injected `Clock`:
//! it bounds how stale a copy may be in real time, whatever time the use cases are told.

use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use crate::domain::{Session, SessionId, User, UserId};

/// What the cache holds and its bounds.
pub struct SessionCache {
    ttl: Duration,
    capacity: usize,
    state: Mutex<State>,
}

struct State {
    entries: HashMap<SessionId, Entry>,
    /// Bumped by every forgetting: a read that started before it may hold what was forgotten.
    epoch: u64,
    /// The cache answers until then; None while the notification channel is down.
    armed_until: Option<Instant>,
}

struct Entry {
    session: Session,
    user: User,
    fresh_until: Instant,
}

/// Taken before a database read whose answer may be kept: the answer is kept only if
/// nothing was forgotten since.
#[derive(Debug, Clone, Copy)]
pub struct Ticket(u64);

impl SessionCache {
    /// How long the cache keeps answering after this instance's last heartbeat came back.
    pub const LAPSE: Duration = Duration::from_secs(3);

    /// An empty cache keeping each entry at most `ttl`, at most `capacity` entries; it answers
    /// only once armed.
    pub fn new(ttl: Duration, capacity: usize) -> Self {
        Self {
            ttl,
            capacity,
            state: Mutex::new(State {
                entries: HashMap::new(),
                epoch: 0,
                armed_until: None,
            }),
        }
    }

    fn state(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock leaves at worst a missing or extra entry of a
        // session that was live: the map itself stays consistent.
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The session `id` and its account as last read, if they are kept, fresh, and the cache
    /// is armed.
    pub fn get(&self, id: SessionId) -> Option<(Session, User)> {
        let now = Instant::now();
        let state = self.state();
        if state.armed_until.is_none_or(|until| now >= until) {
            return None;
        }
        let entry = state.entries.get(&id)?;
        (now < entry.fresh_until).then(|| (entry.session.clone(), entry.user.clone()))
    }

    /// To take before the database read whose answer goes to [`put`](Self::put).
    pub fn ticket(&self) -> Ticket {
        Ticket(self.state().epoch)
    }

    /// Keeps a live session and its account as just read, unless something was forgotten
    /// since `ticket` (the read may predate that change).
    pub fn put(&self, ticket: Ticket, session: &Session, user: &User) {
        if session.revoked_at.is_some() {
            return;
        }
        let now = Instant::now();
        let mut state = self.state();
        if state.epoch != ticket.0 {
            return;
        }
        if state.entries.len() >= self.capacity && !state.entries.contains_key(&session.id) {
            state.entries.retain(|_, e| now < e.fresh_until);
            if state.entries.len() >= self.capacity {
                // Full of fresh entries: start over rather than track recency; the next
                // requests read the database once each.
                state.entries.clear();
            }
        }
        state.entries.insert(
            session.id,
            Entry {
                session: session.clone(),
                user: user.clone(),
                fresh_until: now + self.ttl,
            },
        );
    }

    /// The session changed (revoked): its entry goes.
    pub fn forget_session(&self, id: SessionId) {
        let mut state = self.state();
        state.epoch += 1;
        state.entries.remove(&id);
    }

    /// The account or all its sessions changed: every entry of theirs goes.
    pub fn forget_user(&self, id: UserId) {
        let mut state = self.state();
        state.epoch += 1;
        state.entries.retain(|_, e| e.user.id != id);
    }

    /// The heartbeat came back at `now`: answer until `now + LAPSE`. After a lapse the
    /// entries go first, since notices may have been missed meanwhile.
    pub fn arm(&self, now: Instant) {
        let mut state = self.state();
        if state.armed_until.is_none_or(|until| now >= until) {
            state.epoch += 1;
            state.entries.clear();
        }
        state.armed_until = Some(now + Self::LAPSE);
    }

    /// The notification channel is gone: answer nothing, keep nothing.
    pub fn disarm(&self) {
        let mut state = self.state();
        state.epoch += 1;
        state.entries.clear();
        state.armed_until = None;
    }

    /// How many entries are kept (fresh or not).
    #[cfg(test)]
    fn len(&self) -> usize {
        self.state().entries.len()
    }
}

#[cfg(test)]
mod tests {
    use time::OffsetDateTime;
    use uuid::Uuid;

    use super::*;
    use crate::domain::{EmailAddress, FullName, Locale, PasswordHash, UserStatus};

    fn user() -> User {
        let now = OffsetDateTime::UNIX_EPOCH;
        User {
            id: UserId(Uuid::new_v4()),
            email: EmailAddress::parse("cache@example.com").expect("valid address"),
            full_name: FullName::parse("Cache").expect("valid name"),
            password_hash: PasswordHash::from_phc(
                "$argon2id$v=19$m=8,t=1,p=1$c2FsdA$aGFzaA".into(),
            ),
            status: UserStatus::Active,
            created_at: now,
            updated_at: now,
            verified_at: Some(now),
            locale: Locale::En,
        }
    }

    fn session(user: &User) -> Session {
        let now = OffsetDateTime::UNIX_EPOCH;
        Session {
            id: SessionId::new(),
            user_id: user.id,
            created_at: now,
            expires_at: now + time::Duration::days(365 * 100),
            last_used_at: now,
            user_agent: None,
            ip: None,
            revoked_at: None,
        }
    }

    fn armed(ttl: Duration, capacity: usize) -> SessionCache {
        let cache = SessionCache::new(ttl, capacity);
        cache.arm(Instant::now());
        cache
    }

    #[test]
    fn answers_what_was_put_only_while_armed() {
        let cache = SessionCache::new(Duration::from_secs(10), 10);
        let u = user();
        let s = session(&u);
        cache.put(cache.ticket(), &s, &u);
        assert!(cache.get(s.id).is_none(), "not armed yet");

        cache.arm(Instant::now());
        assert_eq!(cache.len(), 0, "arming after a lapse starts empty");
        cache.put(cache.ticket(), &s, &u);
        let (got, owner) = cache.get(s.id).expect("kept");
        assert_eq!(got, s);
        assert_eq!(owner.id, u.id);

        cache.disarm();
        assert!(cache.get(s.id).is_none());
        assert_eq!(cache.len(), 0);
    }

    #[test]
    fn a_lapsed_heartbeat_stops_answers_and_the_next_one_starts_empty() {
        let cache = SessionCache::new(Duration::from_secs(60), 10);
        let long_ago = Instant::now()
            .checked_sub(SessionCache::LAPSE * 2)
            .expect("the process clock goes back that far");
        cache.arm(long_ago);
        let u = user();
        let s = session(&u);
        cache.put(cache.ticket(), &s, &u);
        assert!(cache.get(s.id).is_none(), "lapsed: no answers");
        cache.arm(Instant::now());
        assert!(cache.get(s.id).is_none(), "what was kept before is gone");
    }

    #[test]
    fn a_read_that_began_before_a_forgetting_is_not_kept() {
        let cache = armed(Duration::from_secs(10), 10);
        let u = user();
        let s = session(&u);
        let ticket = cache.ticket();
        cache.forget_session(s.id);
        cache.put(ticket, &s, &u);
        assert!(cache.get(s.id).is_none());

        let ticket = cache.ticket();
        cache.forget_user(UserId(Uuid::new_v4()));
        cache.put(ticket, &s, &u);
        assert!(cache.get(s.id).is_none(), "any forgetting counts");
    }

    #[test]
    fn forgetting_a_user_drops_all_their_sessions_and_no_one_elses() {
        let cache = armed(Duration::from_secs(10), 10);
        let (a, b) = (user(), user());
        let (a1, a2, b1) = (session(&a), session(&a), session(&b));
        for (s, u) in [(&a1, &a), (&a2, &a), (&b1, &b)] {
            cache.put(cache.ticket(), s, u);
        }
        cache.forget_user(a.id);
        assert!(cache.get(a1.id).is_none());
        assert!(cache.get(a2.id).is_none());
        assert!(cache.get(b1.id).is_some());
        cache.forget_session(b1.id);
        assert!(cache.get(b1.id).is_none());
    }

    #[test]
    fn revoked_sessions_are_never_kept() {
        let cache = armed(Duration::from_secs(10), 10);
        let u = user();
        let mut s = session(&u);
        s.revoked_at = Some(OffsetDateTime::UNIX_EPOCH);
        cache.put(cache.ticket(), &s, &u);
        assert!(cache.get(s.id).is_none());
    }

    #[test]
    fn entries_expire_and_a_full_cache_makes_room() {
        let cache = armed(Duration::ZERO, 2);
        let u = user();
        let s = session(&u);
        cache.put(cache.ticket(), &s, &u);
        assert!(cache.get(s.id).is_none(), "past its lifetime");

        let cache = armed(Duration::from_secs(10), 2);
        let sessions: Vec<Session> = (0..3).map(|_| session(&u)).collect();
        for s in &sessions {
            cache.put(cache.ticket(), s, &u);
        }
        assert!(cache.len() <= 2);
        assert!(cache.get(sessions[2].id).is_some(), "the newest is kept");
    }
}
