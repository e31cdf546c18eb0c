//! The few primitives the service builds on, in one home: HMAC-SHA256 and SHA-256 digests as
//! lower-case hex, and ChaCha20-Poly1305 for secrets at rest.

use chacha20poly1305::aead::{Aead, AeadCore, KeyInit, OsRng, Payload};
use chacha20poly1305::{ChaCha20Poly1305, Nonce};
use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};

/// HMAC-SHA256 keyed with `key`.
pub(crate) fn hmac_sha256(key: &[u8]) -> Hmac<Sha256> {
    <Hmac<Sha256> as Mac>::new_from_slice(key)
        .unwrap_or_else(|_| unreachable!("HMAC accepts keys of any length"))
}

/// The tag of a finished MAC, as lower-case hex.
pub(crate) fn mac_hex(mac: Hmac<Sha256>) -> String {
    format!("{:x}", mac.finalize().into_bytes())
}

/// SHA-256 of `data`, as lower-case hex.
pub(crate) fn sha256_hex(data: &[u8]) -> String {
    format!("{:x}", Sha256::digest(data))
}

/// Length of the random nonce that starts every sealed value.
const NONCE_LEN: usize = 12;

/// Why a sealed value could not be opened (wrong key, wrong associated data, altered bytes).
#[derive(Debug, thiserror::Error)]
#[error("a sealed value did not open (wrong key, context or altered)")]
pub struct OpenError;

/// Encrypts `plain` under the 32-byte `key` with ChaCha20-Poly1305, binding `context` (the
/// associated data: what the value belongs to, so it cannot be moved to another row). Returns
/// nonce (random, 12 bytes) followed by ciphertext and tag. None when `key` is not 32 bytes.
pub(crate) fn seal(key: &[u8], context: &[u8], plain: &[u8]) -> Option<Vec<u8>> {
    let cipher = ChaCha20Poly1305::new_from_slice(key).ok()?;
    let nonce = ChaCha20Poly1305::generate_nonce(&mut OsRng);
    let sealed = cipher
        .encrypt(
            &nonce,
            Payload {
                msg: plain,
                aad: context,
            },
        )
        .ok()?;
    let mut out = nonce.to_vec();
    out.extend_from_slice(&sealed);
    Some(out)
}

/// Opens what [`seal`] made with the same `key` and `context`.
pub(crate) fn open(key: &[u8], context: &[u8], sealed: &[u8]) -> Result<Vec<u8>, OpenError> {
    let cipher = ChaCha20Poly1305::new_from_slice(key).map_err(|_| OpenError)?;
    if sealed.len() < NONCE_LEN {
        return Err(OpenError);
    }
    let (nonce, body) = sealed.split_at(NONCE_LEN);
    cipher
        .decrypt(
            Nonce::from_slice(nonce),
            Payload {
                msg: body,
                aad: context,
            },
        )
        .map_err(|_| OpenError)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sealed_values_open_only_with_their_key_and_context() {
        let key = [7u8; 32];
        let sealed = seal(&key, b"row-1", b"123456").unwrap();
        assert!(!sealed.windows(6).any(|w| w == b"123456"));
        assert_eq!(open(&key, b"row-1", &sealed).unwrap(), b"123456");
        assert!(open(&key, b"row-2", &sealed).is_err());
        assert!(open(&[8u8; 32], b"row-1", &sealed).is_err());
        let mut altered = sealed.clone();
        altered[20] ^= 1;
        assert!(open(&key, b"row-1", &altered).is_err());
        assert!(seal(&key[..16], b"row-1", b"x").is_none());
    }

    #[test]
    fn digests_are_the_standard_test_vectors() {
        assert_eq!(
            sha256_hex(b"abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        // RFC 4231 test case 2.
        let mut mac = hmac_sha256(b"Jefe");
        mac.update(b"what do ya want for nothing?");
        assert_eq!(
            mac_hex(mac),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }
}
