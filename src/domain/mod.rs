//! Validated types: a value of one of these has been parsed and is known good. No I/O here.

mod auth_event;
mod client_ip;
mod code;
mod email_address;
mod full_name;
mod limits;
mod locale;
mod password;
mod password_policy;
mod session;
mod user;

pub use auth_event::{AuthEvent, AuthEventKind, AuthOutcome, EventCursor};
pub use client_ip::{TrustedProxies, client_ip, limit_subject};
pub use code::{CodeDecision, CodePurpose, OnMatch, OneTimeCode, judge_code_try};
pub use email_address::EmailAddress;
pub use full_name::FullName;
pub use limits::{
    CODE_SPACE, MAX_WINDOWS, PASSWORD_BACKOFF_START, RateLimit, Window, daily_guess_odds,
    password_backoff,
};
pub use locale::{Locale, from_accept_language, preferred_locale};
pub use password::{Password, PasswordHash};
pub use password_policy::{
    CommonPasswords, MAX_PASSWORD_CHARS, MIN_PASSWORD_CHARS, PasswordPolicy, PasswordRejection,
};
pub use session::{
    NewSession, NextRefresh, PresentedRefresh, RefreshRules, Rotation, Session, SessionId,
    SessionLimit, judge_refresh,
};
pub use user::{PendingRegistration, User, UserId, UserStatus};

/// Why a raw value was refused; the message is safe to show to the client.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct ParseError(pub &'static str);
