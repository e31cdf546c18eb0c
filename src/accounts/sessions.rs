//! Sessions: opaque bearer tokens, stored as digests, with a fixed lifetime.

use time::OffsetDateTime;
use uuid::Uuid;

use super::{AccountError, Accounts, ClientInfo};
use crate::domain::{SessionToken, User, UserId};
use crate::store::Session;

/// A session just started: the token is shown to its owner once.
#[derive(Debug)]
pub struct IssuedSession {
    /// The bearer token.
    pub token: SessionToken,
    /// The stored session.
    pub session: Session,
    /// Its owner.
    pub user: User,
}

/// The caller behind a valid bearer token.
#[derive(Debug, Clone)]
pub struct Authenticated {
    /// The session.
    pub session: Session,
    /// Its owner, as stored now.
    pub user: User,
}

impl Accounts {
    pub(super) async fn start_session(
        &self,
        user: User,
        client: ClientInfo,
    ) -> Result<IssuedSession, AccountError> {
        let token = SessionToken::generate();
        let now = self.clock.now();
        let session = Session {
            id: Uuid::new_v4(),
            user_id: user.id.0,
            created_at: now,
            expires_at: now + self.policy.session_ttl,
            user_agent: client.user_agent.map(|ua| ua.chars().take(256).collect()),
            ip: client.ip,
        };
        self.stores
            .sessions
            .create(&token.digest(), &session)
            .await?;
        tracing::info!(user_id = %user.id.0, session_id = %session.id, "session started");
        Ok(IssuedSession {
            token,
            session,
            user,
        })
    }

    /// Resolves a bearer token to its live session and active owner.
    #[tracing::instrument(skip_all)]
    pub async fn authenticate(&self, token: &SessionToken) -> Result<Authenticated, AccountError> {
        let now: OffsetDateTime = self.clock.now();
        let session = self
            .stores
            .sessions
            .find(&token.digest(), now)
            .await?
            .ok_or(AccountError::Unauthenticated)?;
        let user = self
            .stores
            .users
            .find_by_id(UserId(session.user_id))
            .await?
            .filter(|u| u.status == crate::domain::UserStatus::Active)
            .ok_or(AccountError::Unauthenticated)?;
        Ok(Authenticated { session, user })
    }

    /// `POST /api/auth/logout`: ends the session the token belongs to.
    #[tracing::instrument(skip_all)]
    pub async fn logout(&self, token: &SessionToken) -> Result<(), AccountError> {
        if self.stores.sessions.revoke(&token.digest()).await? {
            Ok(())
        } else {
            Err(AccountError::Unauthenticated)
        }
    }
}
