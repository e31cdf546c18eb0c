//! Access tokens other services can verify: Ed25519-signed JWTs (RFC 9068), the keys that sign
//! them, and the key ring every instance shares through the database.

pub mod access;
pub mod keyring;
pub mod keys;

pub use access::{AccessClaims, AccessTokenIssuer, AccessTokenVerifier, TokenError};
pub use keyring::{KeyRing, KeyRingConfig, revoke_key, rotate_now};
pub use keys::{Jwk, Jwks, SigningKey};
