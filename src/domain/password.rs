use std::fmt;

use secrecy::{ExposeSecret, SecretString};
use unicode_normalization::UnicodeNormalization;

/// A password that passed the [`super::PasswordPolicy`], in its NFKC form (the form that is
/// hashed). Never printed.
pub struct Password(SecretString);

impl Password {
    /// The form a typed password is hashed and compared in: Unicode NFKC, so the same
    /// password typed on two keyboards (composed or decomposed, full- or half-width) is one.
    pub fn normalize(raw: &SecretString) -> SecretString {
        SecretString::from(raw.expose_secret().nfkc().collect::<String>())
    }

    /// Wraps a normalised password the policy accepted (only the policy makes one).
    pub(super) fn accepted(normalized: SecretString) -> Self {
        Self(normalized)
    }

    /// A password that skips the policy, for unit tests of the hasher.
    #[cfg(test)]
    pub fn for_tests(raw: &str) -> Self {
        Self(Self::normalize(&SecretString::from(raw)))
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
    fn normalisation_is_nfkc() {
        // "é" composed and decomposed, and a full-width "Ａ", are each one form.
        let composed = Password::normalize(&"caf\u{e9} \u{ff21}".into());
        let decomposed = Password::normalize(&"cafe\u{301} A".into());
        assert_eq!(composed.expose_secret(), decomposed.expose_secret());
    }

    #[test]
    fn debug_never_shows_the_secret() {
        let p = Password::for_tests("correct horse");
        assert!(!format!("{p:?}").contains("horse"));
    }
}
