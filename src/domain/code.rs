//! One-time codes, what they prove, and how one try of a code is judged.

use std::fmt;

use rand::Rng;
use serde::{Deserialize, Serialize};
use subtle::ConstantTimeEq;

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
    /// Lets the owner of an active account set a new password. Not a `resend-code` purpose:
    /// `POST /api/auth/password-reset` is its resend.
    #[serde(skip)]
    PasswordReset,
}

impl CodePurpose {
    /// The stable name used in storage keys.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Registration => "registration",
            Self::Login => "login",
            Self::PasswordReset => "password_reset",
        }
    }
}

/// What one try of a code does, once the try has been counted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CodeDecision {
    /// It matched and is spent: delete it; it is accepted if this try's delete wins.
    Consume,
    /// It matched and stays usable (`check` mode): accepted.
    Keep,
    /// It did not match and tries are left: rejected.
    Reject,
    /// It did not match and this try reached the limit: delete it, rejected.
    Exhaust,
}

/// What a matching code is for: spent by the request that presents it, or only proven (the
/// request must learn that it needs more before anything is spent).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnMatch {
    /// Delete it: no other request can use it.
    Consume,
    /// Leave it usable (the try still counts).
    Keep,
}

/// Judges a try against a live code whose tries already count this one
/// (`attempts_after_counting`; counting first is what stops parallel guesses exceeding
/// `max_attempts`). A match is consumed or kept as `on_match` says; a miss that reaches
/// `max_attempts` ends the code. Hashes are compared in constant time.
///
/// The Redis code script (`store/redis.rs`, `CONSUME_SCRIPT`) makes the same decision
/// server-side, because there it must be atomic; change both together.
pub fn judge_code_try(
    stored_hash: &str,
    presented_hash: &str,
    attempts_after_counting: u32,
    max_attempts: u32,
    on_match: OnMatch,
) -> CodeDecision {
    if bool::from(stored_hash.as_bytes().ct_eq(presented_hash.as_bytes())) {
        match on_match {
            OnMatch::Consume => CodeDecision::Consume,
            OnMatch::Keep => CodeDecision::Keep,
        }
    } else if attempts_after_counting >= max_attempts {
        CodeDecision::Exhaust
    } else {
        CodeDecision::Reject
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

    #[test]
    fn matching_try_is_consumed_when_spent_and_kept_when_checked() {
        assert_eq!(
            judge_code_try("aa", "aa", 1, 5, OnMatch::Consume),
            CodeDecision::Consume
        );
        assert_eq!(
            judge_code_try("aa", "aa", 1, 5, OnMatch::Keep),
            CodeDecision::Keep
        );
    }

    #[test]
    fn matching_try_on_the_last_allowed_attempt_still_counts() {
        assert_eq!(
            judge_code_try("aa", "aa", 5, 5, OnMatch::Consume),
            CodeDecision::Consume
        );
        assert_eq!(
            judge_code_try("aa", "aa", 5, 5, OnMatch::Keep),
            CodeDecision::Keep
        );
    }

    #[test]
    fn wrong_try_with_tries_left_is_rejected() {
        assert_eq!(
            judge_code_try("aa", "ab", 4, 5, OnMatch::Consume),
            CodeDecision::Reject
        );
        assert_eq!(
            judge_code_try("aa", "", 1, 5, OnMatch::Keep),
            CodeDecision::Reject
        );
    }

    #[test]
    fn wrong_try_that_reaches_the_limit_ends_the_code() {
        assert_eq!(
            judge_code_try("aa", "ab", 5, 5, OnMatch::Consume),
            CodeDecision::Exhaust
        );
        assert_eq!(
            judge_code_try("aa", "ab", 5, 5, OnMatch::Keep),
            CodeDecision::Exhaust
        );
        assert_eq!(
            judge_code_try("aa", "ab", 6, 5, OnMatch::Consume),
            CodeDecision::Exhaust
        );
    }
}
