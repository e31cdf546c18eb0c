//! Accounts, their ids and their pending registrations.

use std::fmt;

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use uuid::Uuid;

use super::{EmailAddress, FullName, Locale, PasswordHash};

/// A user's id.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct UserId(pub Uuid);

impl UserId {
    /// A fresh random id.
    pub fn new() -> Self {
        Self(Uuid::new_v4())
    }
}

impl Default for UserId {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Display for UserId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// Where an account is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum UserStatus {
    /// Registered, address not yet proven.
    Pending,
    /// Address proven; may log in.
    Active,
    /// Switched off by an operator; may not log in.
    Disabled,
}

impl UserStatus {
    /// The stored spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Active => "active",
            Self::Disabled => "disabled",
        }
    }

    /// Reads the stored spelling.
    pub fn from_stored(s: &str) -> Option<Self> {
        match s {
            "pending" => Some(Self::Pending),
            "active" => Some(Self::Active),
            "disabled" => Some(Self::Disabled),
            _ => None,
        }
    }
}

/// An account as stored.
#[derive(Debug, Clone)]
pub struct User {
    /// Its id.
    pub id: UserId,
    /// The canonical address mail goes to.
    pub email: EmailAddress,
    /// Display name.
    pub full_name: FullName,
    /// Argon2id PHC string.
    pub password_hash: PasswordHash,
    /// Lifecycle state.
    pub status: UserStatus,
    /// When it was registered.
    pub created_at: OffsetDateTime,
    /// Last change.
    pub updated_at: OffsetDateTime,
    /// When its address was proven.
    pub verified_at: Option<OffsetDateTime>,
    /// The language its mail is written in (from `Accept-Language` at registration).
    pub locale: Locale,
}

/// One registration of a still-pending address: the password and name it was made with.
///
/// Registering a pending address again adds one instead of replacing the password, so the
/// address's owner can always confirm their own registration, whoever registered after them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PendingRegistration {
    /// Argon2id PHC string; every registration of one account shares its salt.
    pub password_hash: PasswordHash,
    /// The display name given with it.
    pub full_name: FullName,
    /// When it was made (or last repeated).
    pub created_at: OffsetDateTime,
}
