//! The audit trail's one door: every use case records its security events through here, and
//! owners read theirs back. An event never holds a password, code or token: only what
//! happened, how it ended, the account, and where the request came from.
//!
//! Events of a password reset or change are written in the transaction of the change (the
//! store's `set_password`), and the success of a login or verification in the transaction of
//! the session it starts (`create`); every other one right after its cause, and a failure to
//! write it is logged, not turned into the request's failure (what it records has already
//! happened).

use uuid::Uuid;

use super::{AccountError, Accounts, Authenticated, ClientInfo};
use crate::domain::{AuthEvent, AuthEventKind, AuthOutcome, EventCursor, UserId};

/// Events per page when the client asks for none.
pub const DEFAULT_EVENTS_PAGE: u32 = 20;
/// The largest page a client can ask for.
pub const MAX_EVENTS_PAGE: u32 = 100;

/// Longest `User-Agent` kept (as on sessions).
const MAX_USER_AGENT_CHARS: usize = 256;

/// One page of an owner's events, newest first.
#[derive(Debug)]
pub struct EventPage {
    /// The events.
    pub events: Vec<AuthEvent>,
    /// Where the next page starts; None on the last page.
    pub next: Option<EventCursor>,
}

impl Accounts {
    /// The event `kind` ended with `outcome`, for `user_id` if known, as the request `client`
    /// made it, now.
    pub(super) fn auth_event(
        &self,
        kind: AuthEventKind,
        outcome: AuthOutcome,
        user_id: Option<UserId>,
        client: &ClientInfo,
    ) -> AuthEvent {
        AuthEvent {
            id: Uuid::new_v4(),
            user_id,
            kind,
            outcome,
            ip: client.ip,
            user_agent: client
                .user_agent
                .as_ref()
                .map(|ua| ua.chars().take(MAX_USER_AGENT_CHARS).collect()),
            request_id: client.request_id.clone(),
            at: self.clock.now(),
        }
    }

    /// Records an event right after its cause. A failed write is logged: the cause has
    /// happened and its answer stands.
    pub(super) async fn record(
        &self,
        kind: AuthEventKind,
        outcome: AuthOutcome,
        user_id: Option<UserId>,
        client: &ClientInfo,
    ) {
        let event = self.auth_event(kind, outcome, user_id, client);
        if let Err(e) = self.stores.events.record(&event).await {
            tracing::warn!(error = %e, event = kind.as_str(), "could not record the auth event");
        }
    }

    /// `GET /api/auth/events`: the caller's own events, newest first, `limit` (1 to
    /// [`MAX_EVENTS_PAGE`]) per page, after the previous page's cursor.
    #[tracing::instrument(skip_all)]
    pub async fn list_events(
        &self,
        caller: &Authenticated,
        after: Option<EventCursor>,
        limit: Option<u32>,
    ) -> Result<EventPage, AccountError> {
        let limit = limit
            .unwrap_or(DEFAULT_EVENTS_PAGE)
            .clamp(1, MAX_EVENTS_PAGE);
        // One more than shown tells whether another page follows.
        let mut events = self
            .stores
            .events
            .list(caller.user.id, after, limit + 1)
            .await?;
        let more = events.len() > limit as usize;
        events.truncate(limit as usize);
        let next = more
            .then(|| events.last().map(|e| EventCursor { at: e.at, id: e.id }))
            .flatten();
        Ok(EventPage { events, next })
    }
}
