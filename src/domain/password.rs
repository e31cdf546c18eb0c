use std::fmt;

use secrecy::{ExposeSecret, SecretString};

use super::ParseError;

/// A candidate password as typed: 8..=128 characters. Never printed.
pub struct Password(SecretString);

const MIN_CHARS: usize = 8;
const MAX_CHARS: usize = 128;

impl Password {
    /// Checks the length policy; the fuller policy (breached list) slots in here.
    pub fn parse(raw: SecretString) -> Result<Self, ParseError> {
        let chars = raw.expose_secret().chars().count();
        if chars < MIN_CHARS {
            return Err(ParseError("password must be at least 8 characters"));
        }
        if chars > MAX_CHARS {
            return Err(ParseError("password must be at most 128 characters"));
        }
        Ok(Self(raw))
    }

    /// The secret itself, for hashing.
    pub fn expose(&self) -> &str {
        self.0.expose_secret()
    }
}

impl fmt::Debug for Password {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Password([REDACTED])")
    }
}

/// An Argon2id hash in PHC string form, as stored.
#[derive(Clone, PartialEq, Eq)]
pub struct PasswordHash(String);

impl PasswordHash {
    /// Wraps a PHC string read from storage or produced by the hasher.
    pub fn from_phc(phc: String) -> Self {
        Self(phc)
    }

    /// The PHC string.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for PasswordHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("PasswordHash([REDACTED])")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn enforces_length_in_characters_not_bytes() {
        assert!(Password::parse("short12".into()).is_err());
        assert!(Password::parse("비밀번호비밀번호".into()).is_ok());
        assert!(Password::parse("x".repeat(129).into()).is_err());
        assert!(Password::parse("x".repeat(128).into()).is_ok());
    }

    #[test]
    fn debug_never_shows_the_secret() {
        let p = Password::parse("correct horse".into()).unwrap();
        assert!(!format!("{p:?}").contains("horse"));
    }
}
