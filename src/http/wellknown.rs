//! Discovery: the published signing keys and a minimal OpenID provider configuration, so
//! standard JWT libraries find the keys by themselves.

use axum::Json;
use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;
use serde::Serialize;
use utoipa::ToSchema;

use super::AppState;
use crate::accounts::AccountError;
use crate::error::{ApiError, ErrorBody};
use crate::tokens::keyring::JWKS_MAX_AGE;

/// `GET /.well-known/openid-configuration` body.
#[derive(Serialize, ToSchema)]
pub struct Discovery {
    /// The `iss` of every token.
    issuer: String,
    /// Where the public keys are.
    jwks_uri: String,
    /// Signing algorithms in use.
    id_token_signing_alg_values_supported: [&'static str; 1],
    /// Introspection endpoint (RFC 7662 style).
    introspection_endpoint: String,
    /// Refresh endpoint.
    token_endpoint: String,
}

/// The current and previous public signing keys.
#[utoipa::path(get, path = "/.well-known/jwks.json", tag = "discovery",
    responses(
        (status = 200, description = "JWK Set: Ed25519 (`kty: OKP`, `alg: EdDSA`) keys with `kid`"),
        (status = 503, description = "The key store is unavailable", body = ErrorBody),
    ))]
pub async fn jwks(State(state): State<AppState>) -> Result<impl IntoResponse, ApiError> {
    let jwks = state
        .accounts
        .tokens()
        .jwks()
        .await
        .map_err(AccountError::from)?;
    // A new key signs only after this cache lifetime, so a verifier never meets an unknown kid.
    let cache = format!("public, max-age={}", JWKS_MAX_AGE.as_secs());
    Ok(([(header::CACHE_CONTROL, cache)], Json(jwks)))
}

/// Minimal OpenID provider metadata: `issuer` and `jwks_uri`.
#[utoipa::path(get, path = "/.well-known/openid-configuration", tag = "discovery",
    responses((status = 200, description = "Provider metadata", body = Discovery)))]
pub async fn openid_configuration(State(state): State<AppState>) -> Json<Discovery> {
    let issuer = state.issuer.clone();
    Json(Discovery {
        jwks_uri: format!("{issuer}/.well-known/jwks.json"),
        introspection_endpoint: format!("{issuer}/api/auth/introspect"),
        token_endpoint: format!("{issuer}/api/auth/refresh"),
        id_token_signing_alg_values_supported: ["EdDSA"],
        issuer,
    })
}
