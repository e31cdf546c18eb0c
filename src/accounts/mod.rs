//! Use cases: the only layer that coordinates several stores and the mail outbox.

mod audit;
mod codes;
mod limits;
mod login;
mod passwords;
mod recovery;
mod registration;
mod sessions;

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

pub use audit::EventPage;
pub use codes::CodeHasher;
pub use limits::{Action, Limits};
pub use passwords::{Hasher, Verified};
pub use registration::Registration;
pub use sessions::{Authenticated, IssuedSession};

use crate::clock::Clock;
use crate::config::Settings;
use crate::domain::{Locale, PasswordPolicy, PasswordRejection};
use crate::email::Outbox;
use crate::store::{StoreError, Stores};
use crate::tokens::KeyRing;
use crate::tokens::keyring::{KeyRingError, VerifyError};

/// What a use case can answer besides success. `error.rs` maps each to one status.
#[derive(Debug, thiserror::Error)]
pub enum AccountError {
    /// The code is wrong, expired, used, exhausted, or was never issued: all look alike.
    #[error("the code is invalid or has expired")]
    InvalidCode,
    /// The code is right, but the address was registered with different passwords: the one
    /// to confirm must be sent along.
    #[error("the password registered with is needed to confirm this registration")]
    PasswordRequired,
    /// Any wrong e-mail/password combination, or an account that may not log in.
    #[error("invalid e-mail or password")]
    InvalidCredentials,
    /// Missing, invalid or expired access token, or its session is over.
    #[error("not authenticated")]
    Unauthenticated,
    /// Unknown, retired or revoked refresh token.
    #[error("invalid refresh token")]
    InvalidRefreshToken,
    /// No such session among the caller's.
    #[error("session not found")]
    SessionNotFound,
    /// The new password breaks a rule of the password policy.
    #[error("password refused: {0}")]
    PasswordRejected(PasswordRejection),
    /// The current password given to change it is wrong.
    #[error("the current password is wrong")]
    WrongCurrentPassword,
    /// A code was sent to this address for this purpose too recently.
    #[error("a code was sent recently; retry after {0:?}")]
    Cooldown(Duration),
    /// Too many requests from this client or for this address (or too many wrong codes or
    /// passwords for it); retry after this long.
    #[error("rate limited; retry after {0:?}")]
    RateLimited(Duration),
    /// A dependency (database, Redis) is down or slow. (Mail is not: it waits in the outbox.)
    #[error("dependency unavailable: {0:#}")]
    Unavailable(anyhow::Error),
    /// A bug or corrupt data.
    #[error("unexpected: {0:#}")]
    Unexpected(anyhow::Error),
}

/// How `result` counts in the metrics.
fn outcome<T>(result: &Result<T, AccountError>) -> crate::metrics::Outcome {
    use crate::metrics::Outcome;
    match result {
        Ok(_) => Outcome::Success,
        Err(AccountError::Unavailable(_)) => Outcome::Unavailable,
        Err(AccountError::Unexpected(_)) => Outcome::Error,
        Err(_) => Outcome::Refused,
    }
}

impl From<StoreError> for AccountError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Unavailable(e) => Self::Unavailable(e),
            StoreError::Corrupt(e) => Self::Unexpected(e),
        }
    }
}

impl From<KeyRingError> for AccountError {
    fn from(e: KeyRingError) -> Self {
        match e {
            KeyRingError::Store(e) => e.into(),
            KeyRingError::Keys(e) => Self::Unexpected(e),
        }
    }
}

impl From<VerifyError> for AccountError {
    fn from(e: VerifyError) -> Self {
        match e {
            VerifyError::Token(e) => {
                tracing::debug!(reason = %e, "access token refused");
                Self::Unauthenticated
            }
            VerifyError::Ring(e) => e.into(),
        }
    }
}

/// Who is calling, as far as the transport can tell; recorded on sessions and audit events.
#[derive(Debug, Clone, Default)]
pub struct ClientInfo {
    /// The client's address (behind trusted proxies, the one they saw); None only when the
    /// transport did not say.
    pub ip: Option<IpAddr>,
    /// The client's User-Agent header.
    pub user_agent: Option<String>,
    /// The request's id (`X-Request-Id`, the client's when it was safe, else ours).
    pub request_id: Option<String>,
    /// The supported language its `Accept-Language` settles on, if any.
    pub locale: Option<crate::domain::Locale>,
}

/// The lifetimes and limits the use cases enforce.
#[derive(Debug, Clone)]
pub struct Policy {
    /// Verification and login code lifetime.
    pub code_ttl: Duration,
    /// Session (refresh-token family) absolute lifetime.
    pub session_ttl: Duration,
    /// Sessions unused for this long end.
    pub session_idle_timeout: Option<Duration>,
    /// Grace window for the immediate predecessor of a refresh token.
    pub refresh_grace: Duration,
    /// Gap between two codes for one (address, purpose).
    pub resend_cooldown: Duration,
    /// Wrong tries that kill a code.
    pub max_code_attempts: u32,
    /// Live sessions one user may hold; a new one ends the oldest.
    pub max_sessions_per_user: u32,
    /// Language of mail until the request's and the account's are passed in.
    pub default_locale: Locale,
    /// Rate limits and guessing budgets.
    pub limits: Limits,
}

impl Policy {
    /// The policy the settings describe.
    pub fn from_settings(settings: &Settings) -> Self {
        Self {
            code_ttl: settings.code_ttl,
            session_ttl: settings.session_ttl,
            session_idle_timeout: settings.session_idle_timeout,
            refresh_grace: settings.refresh_grace,
            resend_cooldown: settings.resend_cooldown,
            max_code_attempts: settings.max_code_attempts,
            max_sessions_per_user: settings.max_sessions_per_user,
            default_locale: settings.default_locale,
            limits: Limits::from_settings(settings),
        }
    }
}

/// The account use cases and what they need.
#[derive(Clone)]
pub struct Accounts {
    stores: Stores,
    outbox: Outbox,
    clock: Arc<dyn Clock>,
    hasher: Hasher,
    codes: CodeHasher,
    tokens: Arc<KeyRing>,
    refresh_key: Arc<[u8]>,
    policy: Policy,
    passwords: PasswordPolicy,
}

/// The collaborators of [`Accounts`].
pub struct Deps {
    /// Every store.
    pub stores: Stores,
    /// Seals mail into outbox rows and wakes this instance's sender.
    pub outbox: Outbox,
    /// Time.
    pub clock: Arc<dyn Clock>,
    /// Password hashing.
    pub hasher: Hasher,
    /// Code hashing.
    pub codes: CodeHasher,
    /// Access-token keys.
    pub tokens: Arc<KeyRing>,
    /// Key deriving each refresh token's successor.
    pub refresh_key: Vec<u8>,
    /// Lifetimes and limits.
    pub policy: Policy,
    /// What a new password must be.
    pub passwords: PasswordPolicy,
}

impl Accounts {
    /// Wires the use cases.
    pub fn new(deps: Deps) -> Self {
        Self {
            stores: deps.stores,
            outbox: deps.outbox,
            clock: deps.clock,
            hasher: deps.hasher,
            codes: deps.codes,
            tokens: deps.tokens,
            refresh_key: deps.refresh_key.into(),
            policy: deps.policy,
            passwords: deps.passwords,
        }
    }

    /// What a new password must be (handlers check new passwords with it at the edge).
    pub fn password_policy(&self) -> &PasswordPolicy {
        &self.passwords
    }

    /// The public signing keys, for the JWKS endpoint.
    pub async fn published_keys(&self) -> Result<crate::tokens::Jwks, AccountError> {
        Ok(self.tokens.jwks().await?)
    }
}
