use std::fmt;

use rand::Rng;
use serde::{Deserialize, Serialize};

use super::ParseError;

/// A 6-digit one-time code. Never printed except by the development log mailer.
#[derive(Clone, PartialEq, Eq)]
pub struct OneTimeCode(String);

impl OneTimeCode {
    /// A fresh code, uniform over 000000..=999999, from the thread's CSPRNG.
    pub fn generate() -> Self {
        let n: u32 = rand::rng().random_range(0..1_000_000);
        Self(format!("{n:06}"))
    }

    /// Accepts exactly six ASCII digits (surrounding whitespace trimmed).
    pub fn parse(raw: &str) -> Result<Self, ParseError> {
        let raw = raw.trim();
        if raw.len() == 6 && raw.bytes().all(|b| b.is_ascii_digit()) {
            Ok(Self(raw.to_owned()))
        } else {
            Err(ParseError("verification_code must be exactly 6 digits"))
        }
    }

    /// The digits, for hashing and for the mail that carries them.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for OneTimeCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("OneTimeCode([REDACTED])")
    }
}

/// What a code proves; a code is bound to one (email, purpose) pair.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum CodePurpose {
    /// Proves the address of a pending account.
    Registration,
    /// Logs an active account in.
    Login,
}

impl CodePurpose {
    /// The stable name used in storage keys.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Registration => "registration",
            Self::Login => "login",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_codes_are_six_digits_and_vary() {
        let codes: std::collections::HashSet<String> = (0..50)
            .map(|_| OneTimeCode::generate().expose().to_owned())
            .collect();
        assert!(
            codes
                .iter()
                .all(|c| c.len() == 6 && c.bytes().all(|b| b.is_ascii_digit()))
        );
        assert!(codes.len() > 40);
    }

    #[test]
    fn parse_accepts_only_six_digits() {
        assert!(OneTimeCode::parse("012345").is_ok());
        for bad in ["12345", "1234567", "12a456", "", "１２３４５６"] {
            assert!(OneTimeCode::parse(bad).is_err(), "{bad}");
        }
    }
}
