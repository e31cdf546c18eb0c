//! Security events of an account (the audit trail): what happened, how it ended, and where
//! the request came from. Never a password, code or token.

use std::net::IpAddr;

use serde::Serialize;
use time::OffsetDateTime;
use uuid::Uuid;

use super::UserId;

/// What happened.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum AuthEventKind {
    /// `POST /api/auth/register` for the address (new, pending or existing account).
    Registration,
    /// The address was proven with the registration code.
    RegistrationVerified,
    /// A password login.
    PasswordLogin,
    /// A login with an e-mailed code.
    CodeLogin,
    /// A password-reset code was asked for.
    PasswordResetRequested,
    /// A new password was set with a reset code.
    PasswordReset,
    /// The signed-in owner changed the password.
    PasswordChanged,
    /// The session ended by logout.
    Logout,
    /// Every (other) session ended by `logout-all`.
    LogoutAll,
    /// One session ended by its owner.
    SessionRevoked,
    /// A retired refresh token was presented again: its session was revoked.
    RefreshTokenReuse,
    /// A request was refused by a rate limit, the code-guess budget or the password back-off
    /// (recorded once a minute per limit and subject, not once per refused request).
    RateLimited,
}

impl AuthEventKind {
    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Registration => "registration",
            Self::RegistrationVerified => "registration_verified",
            Self::PasswordLogin => "password_login",
            Self::CodeLogin => "code_login",
            Self::PasswordResetRequested => "password_reset_requested",
            Self::PasswordReset => "password_reset",
            Self::PasswordChanged => "password_changed",
            Self::Logout => "logout",
            Self::LogoutAll => "logout_all",
            Self::SessionRevoked => "session_revoked",
            Self::RefreshTokenReuse => "refresh_token_reuse",
            Self::RateLimited => "rate_limited",
        }
    }

    /// The kind a stored name names.
    pub fn from_stored(s: &str) -> Option<Self> {
        [
            Self::Registration,
            Self::RegistrationVerified,
            Self::PasswordLogin,
            Self::CodeLogin,
            Self::PasswordResetRequested,
            Self::PasswordReset,
            Self::PasswordChanged,
            Self::Logout,
            Self::LogoutAll,
            Self::SessionRevoked,
            Self::RefreshTokenReuse,
            Self::RateLimited,
        ]
        .into_iter()
        .find(|kind| kind.as_str() == s)
    }
}

/// How it ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum AuthOutcome {
    /// It did what was asked.
    Success,
    /// It was refused (wrong password or code, …).
    Failure,
}

impl AuthOutcome {
    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Success => "success",
            Self::Failure => "failure",
        }
    }

    /// The outcome a stored name names.
    pub fn from_stored(s: &str) -> Option<Self> {
        match s {
            "success" => Some(Self::Success),
            "failure" => Some(Self::Failure),
            _ => None,
        }
    }
}

/// One row of the audit trail.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthEvent {
    /// Row id (also the tie-break of the newest-first order).
    pub id: Uuid,
    /// The account, when one is known (none for an address without an account).
    pub user_id: Option<UserId>,
    /// What happened.
    pub kind: AuthEventKind,
    /// How it ended.
    pub outcome: AuthOutcome,
    /// The client's address.
    pub ip: Option<IpAddr>,
    /// The client's `User-Agent` (at most 256 characters).
    pub user_agent: Option<String>,
    /// The request's `X-Request-Id`.
    pub request_id: Option<String>,
    /// When.
    pub at: OffsetDateTime,
}

/// Where a newest-first page of events ends: the next page starts after it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EventCursor {
    /// The time of the last event shown.
    pub at: OffsetDateTime,
    /// Its id.
    pub id: Uuid,
}

impl EventCursor {
    /// The opaque form handed to clients: `<unix µs>.<id>`.
    pub fn encode(self) -> String {
        let micros = self.at.unix_timestamp_nanos() / 1_000;
        format!("{micros}.{}", self.id.simple())
    }

    /// Reads a cursor handed out by [`Self::encode`]; None for anything else.
    pub fn decode(raw: &str) -> Option<Self> {
        let (micros, id) = raw.split_once('.')?;
        let micros: i128 = micros.parse().ok()?;
        let at = OffsetDateTime::from_unix_timestamp_nanos(micros.checked_mul(1_000)?).ok()?;
        Some(Self {
            at,
            id: Uuid::try_parse(id).ok()?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursor_round_trips_and_refuses_garbage() {
        let cursor = EventCursor {
            at: OffsetDateTime::from_unix_timestamp_nanos(1_764_000_000_123_456_000).unwrap(),
            id: Uuid::new_v4(),
        };
        assert_eq!(EventCursor::decode(&cursor.encode()), Some(cursor));
        for bad in [
            "",
            "x.y",
            "12",
            "12.not-a-uuid",
            "99999999999999999999999999.00",
        ] {
            assert_eq!(EventCursor::decode(bad), None, "{bad}");
        }
    }

    #[test]
    fn every_kind_round_trips_through_its_stored_name() {
        for kind in [
            AuthEventKind::Registration,
            AuthEventKind::RefreshTokenReuse,
            AuthEventKind::PasswordReset,
        ] {
            assert_eq!(AuthEventKind::from_stored(kind.as_str()), Some(kind));
        }
        assert_eq!(
            AuthOutcome::from_stored("success"),
            Some(AuthOutcome::Success)
        );
    }
}
