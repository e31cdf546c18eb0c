//! Sessions: a refresh-token family per login, short-lived access tokens, rotation with reuse
//! detection, and the owner's view of their sessions.

use time::OffsetDateTime;

use super::{AccountError, Accounts, ClientInfo};
use crate::domain::{
    AuthEventKind, AuthOutcome, EmailAddress, NewSession, RefreshRules, Rotation, Session,
    SessionId, SessionLimit, User, UserStatus,
};
use crate::metrics::{self, SessionEvent};
use crate::store::SessionRead;
use crate::tokens::{AccessClaims, RefreshToken};

/// A token pair just issued: shown to its owner once.
#[derive(Debug)]
pub struct IssuedSession {
    /// Signed JWT for `Authorization: Bearer`.
    pub access_token: String,
    /// Its claims (for `expires_in`).
    pub access_claims: AccessClaims,
    /// Opaque token for `POST /api/auth/refresh`.
    pub refresh_token: RefreshToken,
    /// The session.
    pub session: Session,
    /// Its owner.
    pub user: User,
}

/// The caller behind a valid access token whose session is still live.
#[derive(Debug, Clone)]
pub struct Authenticated {
    /// The verified claims.
    pub claims: AccessClaims,
    /// The session they name.
    pub session: Session,
    /// Its owner, as stored now.
    pub user: User,
}

impl Accounts {
    /// Sessions used after this are not idle (the Unix epoch when there is no idle timeout).
    fn used_after(&self, now: OffsetDateTime) -> OffsetDateTime {
        self.policy
            .session_idle_timeout
            .map_or(OffsetDateTime::UNIX_EPOCH, |idle| now - idle)
    }

    fn refresh_rules(&self) -> RefreshRules {
        RefreshRules {
            grace: self.policy.refresh_grace,
            idle_timeout: self.policy.session_idle_timeout,
        }
    }

    /// Starts a session for `user` and issues its first pair. The success event of `kind`
    /// (the login or verification that started it) is written in the session's transaction,
    /// so it is recorded if and only if the session exists, at the cost of one commit.
    pub(super) async fn start_session(
        &self,
        user: User,
        client: ClientInfo,
        kind: AuthEventKind,
    ) -> Result<IssuedSession, AccountError> {
        let (draft, refresh_token, limit) = self.new_session(&client);
        let session = draft.owned_by(user.id);
        let event = self.auth_event(kind, AuthOutcome::Success, Some(user.id), &client);
        let ended = self
            .stores
            .sessions
            .create(&session, &refresh_token.digest(), limit, &event)
            .await?;
        self.session_started(user, session, refresh_token, ended)
            .await
    }

    /// [`Self::start_session`] for the active account with address `email`, read in the
    /// session's transaction; None (and nothing written) when the address has none.
    pub(super) async fn start_session_for_address(
        &self,
        email: &EmailAddress,
        client: &ClientInfo,
        kind: AuthEventKind,
    ) -> Result<Option<IssuedSession>, AccountError> {
        let (draft, refresh_token, limit) = self.new_session(client);
        // Whose, the store sets in the session's and the event's writes.
        let event = self.auth_event(kind, AuthOutcome::Success, None, client);
        let started = self
            .stores
            .sessions
            .create_for_address(email, draft, &refresh_token.digest(), limit, event)
            .await?;
        let Some((session, user, ended)) = started else {
            return Ok(None);
        };
        self.session_started(user, session, refresh_token, ended)
            .await
            .map(Some)
    }

    /// A new session (whose, the caller says), its first refresh token and the per-user limit.
    fn new_session(&self, client: &ClientInfo) -> (NewSession, RefreshToken, SessionLimit) {
        let refresh_token = RefreshToken::generate();
        let now = self.clock.now();
        let session = NewSession {
            id: SessionId::new(),
            created_at: now,
            expires_at: now + self.policy.session_ttl,
            last_used_at: now,
            user_agent: client
                .user_agent
                .as_deref()
                .map(|ua| ua.chars().take(256).collect()),
            ip: client.ip.map(|ip| ip.to_string()),
        };
        let limit = SessionLimit {
            max_per_user: self.policy.max_sessions_per_user,
            used_after: self.used_after(now),
        };
        (session, refresh_token, limit)
    }

    async fn session_started(
        &self,
        user: User,
        session: Session,
        refresh_token: RefreshToken,
        ended: u64,
    ) -> Result<IssuedSession, AccountError> {
        tracing::info!(user_id = %user.id.0, session_id = %session.id, "session started");
        metrics::sessions(SessionEvent::Started, 1);
        if ended > 0 {
            tracing::info!(user_id = %user.id.0, ended, "oldest sessions ended: per-user session limit");
        }
        self.issue_pair(user, session, refresh_token).await
    }

    async fn issue_pair(
        &self,
        user: User,
        session: Session,
        refresh_token: RefreshToken,
    ) -> Result<IssuedSession, AccountError> {
        let (access_token, access_claims) = self
            .tokens
            .issue(
                user.id,
                session.id,
                user.email.as_str(),
                user.verified_at.is_some(),
            )
            .await?;
        Ok(IssuedSession {
            access_token,
            access_claims,
            refresh_token,
            session,
            user,
        })
    }

    /// `POST /api/auth/refresh`: exchanges a refresh token for a new pair.
    ///
    /// - the current token: rotated; the old one is retired;
    /// - the immediate predecessor, within the grace window: the same successor again (two tabs
    ///   refreshing at once both stay logged in), with a fresh access token;
    /// - any other retired token: the whole session is revoked (theft detection);
    /// - unknown token, or a revoked, expired or idle session: refused.
    #[tracing::instrument(skip_all)]
    pub async fn exchange_refresh_token(
        &self,
        presented: RefreshToken,
        client: ClientInfo,
    ) -> Result<IssuedSession, AccountError> {
        self.admit(super::Action::Refresh, &client, None).await?;
        let successor = presented.successor(&self.refresh_key);
        let now = self.clock.now();
        let exchanged = self
            .stores
            .sessions
            .exchange(
                &presented.digest(),
                &successor.digest(),
                now,
                self.refresh_rules(),
            )
            .await?;
        let session = match exchanged.rotation {
            Rotation::Rotated(session) => {
                metrics::sessions(SessionEvent::Refreshed, 1);
                session
            }
            Rotation::Replayed(session) => {
                tracing::info!(session_id = %session.id, "refresh token replayed within the grace window");
                metrics::sessions(SessionEvent::Refreshed, 1);
                session
            }
            Rotation::ReuseDetected {
                session_id,
                user_id,
            } => {
                tracing::warn!(%session_id, %user_id, "retired refresh token presented again: session revoked");
                metrics::sessions(SessionEvent::ReuseDetected, 1);
                self.record(
                    AuthEventKind::RefreshTokenReuse,
                    AuthOutcome::Failure,
                    Some(user_id),
                    &client,
                )
                .await;
                return Err(AccountError::InvalidRefreshToken);
            }
            Rotation::Invalid => return Err(AccountError::InvalidRefreshToken),
        };
        // The account came with the session, read in the exchange's transaction.
        let user = exchanged
            .user
            .filter(|u| u.status == UserStatus::Active)
            .ok_or(AccountError::InvalidRefreshToken)?;
        self.issue_pair(user, session, successor).await
    }

    /// Resolves an access token to its claims, live session and active owner.
    #[tracing::instrument(skip_all)]
    pub async fn authenticate(&self, access_token: &str) -> Result<Authenticated, AccountError> {
        let claims = self.tokens.verify(access_token).await?;
        let now = self.clock.now();
        let good = |(s, u): &(Session, User)| {
            s.is_live(now, self.policy.session_idle_timeout)
                && u.status == UserStatus::Active
                && u.id == claims.sub
        };
        let sessions = &self.stores.sessions;
        let found = sessions
            .find_with_user(claims.sid, SessionRead::MayBeCached)
            .await?;
        let found = match found {
            Some(pair) if good(&pair) => Some(pair),
            // A copy's `last_used_at` may predate a refresh on another instance: before
            // refusing an idle session, the database has the last word. (Revocations, expiry
            // and account changes are exact in a copy.)
            Some((s, _)) if s.is_live(now, None) => sessions
                .find_with_user(claims.sid, SessionRead::Fresh)
                .await?
                .filter(good),
            _ => None,
        };
        let (session, user) = found.ok_or(AccountError::Unauthenticated)?;
        Ok(Authenticated {
            claims,
            session,
            user,
        })
    }

    /// `POST /api/auth/introspect`: the claims of a token whose signature, lifetime and session
    /// are all still good; None otherwise.
    #[tracing::instrument(skip_all)]
    pub async fn introspect(
        &self,
        access_token: &str,
    ) -> Result<Option<Authenticated>, AccountError> {
        match self.authenticate(access_token).await {
            Ok(caller) => Ok(Some(caller)),
            Err(AccountError::Unauthenticated) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// `POST /api/auth/logout`: ends the caller's session.
    #[tracing::instrument(skip_all)]
    pub async fn logout(
        &self,
        caller: &Authenticated,
        client: ClientInfo,
    ) -> Result<(), AccountError> {
        let now = self.clock.now();
        let revoked = self
            .stores
            .sessions
            .revoke(
                caller.session.id,
                caller.user.id,
                now,
                self.used_after(now),
                "logout",
            )
            .await?;
        metrics::sessions(SessionEvent::Revoked, u64::from(revoked));
        tracing::info!(session_id = %caller.session.id, "logged out");
        self.record(
            AuthEventKind::Logout,
            AuthOutcome::Success,
            Some(caller.user.id),
            &client,
        )
        .await;
        Ok(())
    }

    /// `POST /api/auth/logout-all`: ends every session of the caller, or every other one.
    #[tracing::instrument(skip_all)]
    pub async fn logout_all(
        &self,
        caller: &Authenticated,
        keep_current: bool,
        client: ClientInfo,
    ) -> Result<u64, AccountError> {
        let keep = keep_current.then_some(caller.session.id);
        let now = self.clock.now();
        let ended = self
            .stores
            .sessions
            .revoke_all(
                caller.user.id,
                keep,
                now,
                self.used_after(now),
                "logout_all",
            )
            .await?;
        metrics::sessions(SessionEvent::Revoked, ended);
        tracing::info!(user_id = %caller.user.id.0, ended, keep_current, "logged out everywhere");
        self.record(
            AuthEventKind::LogoutAll,
            AuthOutcome::Success,
            Some(caller.user.id),
            &client,
        )
        .await;
        Ok(ended)
    }

    /// `GET /api/auth/sessions`: the caller's live sessions, newest first.
    pub async fn list_sessions(
        &self,
        caller: &Authenticated,
    ) -> Result<Vec<Session>, AccountError> {
        let now = self.clock.now();
        Ok(self
            .stores
            .sessions
            .list(caller.user.id, now, self.used_after(now))
            .await?)
    }

    /// `DELETE /api/auth/sessions/{id}`: ends one of the caller's sessions.
    #[tracing::instrument(skip_all, fields(session_id = %id))]
    pub async fn revoke_session(
        &self,
        caller: &Authenticated,
        id: SessionId,
        client: ClientInfo,
    ) -> Result<(), AccountError> {
        let now = self.clock.now();
        if self
            .stores
            .sessions
            .revoke(
                id,
                caller.user.id,
                now,
                self.used_after(now),
                "revoked_by_user",
            )
            .await?
        {
            metrics::sessions(SessionEvent::Revoked, 1);
            self.record(
                AuthEventKind::SessionRevoked,
                AuthOutcome::Success,
                Some(caller.user.id),
                &client,
            )
            .await;
            Ok(())
        } else {
            Err(AccountError::SessionNotFound)
        }
    }
}
