//! Use cases: the only layer that coordinates several stores and the mailer.

mod codes;
mod login;
mod passwords;
mod registration;
mod sessions;

use std::sync::Arc;
use std::time::Duration;

pub use codes::CodeHasher;
pub use passwords::Hasher;
pub use registration::Registration;
pub use sessions::{Authenticated, IssuedSession};

use crate::clock::Clock;
use crate::config::Settings;
use crate::email::{EmailSender, SendError};
use crate::store::{StoreError, Stores};

/// What a use case can answer besides success. `error.rs` maps each to one status.
#[derive(Debug, thiserror::Error)]
pub enum AccountError {
    /// The code is wrong, expired, used, exhausted, or was never issued: all look alike.
    #[error("the code is invalid or has expired")]
    InvalidCode,
    /// Any wrong e-mail/password combination, or an account that may not log in.
    #[error("invalid e-mail or password")]
    InvalidCredentials,
    /// Missing, unknown, expired or revoked session token.
    #[error("not authenticated")]
    Unauthenticated,
    /// A code was sent to this address for this purpose too recently.
    #[error("a code was sent recently; retry after {0:?}")]
    Cooldown(Duration),
    /// A dependency (database, Redis, mail) is down or slow.
    #[error("dependency unavailable: {0:#}")]
    Unavailable(anyhow::Error),
    /// A bug or corrupt data.
    #[error("unexpected: {0:#}")]
    Unexpected(anyhow::Error),
}

impl From<StoreError> for AccountError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Unavailable(e) => Self::Unavailable(e),
            StoreError::Corrupt(e) => Self::Unexpected(e),
        }
    }
}

impl From<SendError> for AccountError {
    fn from(e: SendError) -> Self {
        Self::Unavailable(e.0)
    }
}

/// Who is calling, as far as the transport can tell; recorded on sessions.
#[derive(Debug, Clone, Default)]
pub struct ClientInfo {
    /// The client's address.
    pub ip: Option<String>,
    /// The client's User-Agent header.
    pub user_agent: Option<String>,
}

/// The lifetimes and limits the use cases enforce.
#[derive(Debug, Clone, Copy)]
pub struct Policy {
    /// Verification and login code lifetime.
    pub code_ttl: Duration,
    /// Session lifetime.
    pub session_ttl: Duration,
    /// Gap between two codes for one (address, purpose).
    pub resend_cooldown: Duration,
    /// Wrong tries that kill a code.
    pub max_code_attempts: u32,
}

impl Policy {
    /// The policy the settings describe.
    pub fn from_settings(settings: &Settings) -> Self {
        Self {
            code_ttl: settings.code_ttl,
            session_ttl: settings.session_ttl,
            resend_cooldown: settings.resend_cooldown,
            max_code_attempts: settings.max_code_attempts,
        }
    }
}

/// The account use cases and what they need.
#[derive(Clone)]
pub struct Accounts {
    stores: Stores,
    mailer: Arc<dyn EmailSender>,
    clock: Arc<dyn Clock>,
    hasher: Hasher,
    codes: CodeHasher,
    policy: Policy,
}

impl Accounts {
    /// Wires the use cases.
    pub fn new(
        stores: Stores,
        mailer: Arc<dyn EmailSender>,
        clock: Arc<dyn Clock>,
        hasher: Hasher,
        codes: CodeHasher,
        policy: Policy,
    ) -> Self {
        Self {
            stores,
            mailer,
            clock,
            hasher,
            codes,
            policy,
        }
    }

    /// The stores, for readiness checks.
    pub fn stores(&self) -> &Stores {
        &self.stores
    }
}
