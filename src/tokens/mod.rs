//! Tokens: access tokens other services can verify (Ed25519-signed JWTs, RFC 9068), the keys
//! that sign them, the key ring every instance shares through the database, and the opaque
//! refresh tokens that renew them.

pub mod access;
pub mod keyring;
pub mod keys;
pub mod refresh;

pub use access::{AccessClaims, AccessTokenIssuer, AccessTokenVerifier, TokenError};
pub use keyring::{KeyRing, KeyRingConfig, publish_next_key, revoke_key};
pub use keys::{Jwk, Jwks, SigningKey};
pub use refresh::RefreshToken;
