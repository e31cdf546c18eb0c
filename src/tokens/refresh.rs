//! Refresh tokens: opaque, stored only as digests, each with a successor derived by HMAC.

use std::fmt;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::Mac;
use rand::RngCore;

use crate::crypto::{hmac_sha256, sha256_hex};

/// An opaque 256-bit refresh token. Only its SHA-256 digest is ever stored.
pub struct RefreshToken(String);

impl RefreshToken {
    /// 32 bytes from the CSPRNG, base64url without padding (43 characters).
    pub fn generate() -> Self {
        let mut bytes = [0u8; 32];
        rand::rng().fill_bytes(&mut bytes);
        Self(URL_SAFE_NO_PAD.encode(bytes))
    }

    /// Wraps a token presented by a client; shape is checked so junk never reaches a store.
    pub fn parse(raw: &str) -> Option<Self> {
        (raw.len() == 43 && URL_SAFE_NO_PAD.decode(raw).is_ok_and(|b| b.len() == 32))
            .then(|| Self(raw.to_owned()))
    }

    /// The token, for the response that hands it to its owner.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// The lookup key stored in place of the token (hex SHA-256).
    pub fn digest(&self) -> String {
        sha256_hex(self.0.as_bytes())
    }

    /// The token that replaces this one at rotation: HMAC-SHA256 under a server key, so the
    /// same successor can be handed out again within the grace window without ever storing a
    /// token in clear.
    pub fn successor(&self, key: &[u8]) -> Self {
        let mut mac = hmac_sha256(key);
        mac.update(b"aidlc-auth refresh successor\0");
        mac.update(self.0.as_bytes());
        Self(URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes()))
    }
}

impl fmt::Debug for RefreshToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("RefreshToken([REDACTED])")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_tokens_parse_back_and_digest_is_stable() {
        let t = RefreshToken::generate();
        let again = RefreshToken::parse(t.expose()).unwrap();
        assert_eq!(t.digest(), again.digest());
        assert_eq!(t.digest().len(), 64);
        assert!(RefreshToken::parse("not-a-token").is_none());
    }

    #[test]
    fn successor_is_deterministic_per_key_and_well_formed() {
        let t = RefreshToken::generate();
        let s1 = t.successor(b"key one");
        assert_eq!(s1.expose(), t.successor(b"key one").expose());
        assert_ne!(s1.expose(), t.successor(b"key two").expose());
        assert_ne!(s1.expose(), t.expose());
        assert!(RefreshToken::parse(s1.expose()).is_some());
    }
}
