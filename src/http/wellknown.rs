//! Discovery: the published signing keys and RFC 8414 authorization-server metadata, so
//! standard libraries find the keys and the introspection endpoint by themselves.

use axum::Json;
use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;
use serde::Serialize;
use utoipa::ToSchema;

use super::AppState;
use super::error::{ApiError, ServiceUnavailable};
use crate::accounts::Accounts;
use crate::tokens::keyring::JWKS_MAX_AGE;

/// `GET /.well-known/oauth-authorization-server` body (RFC 8414), with only what is true:
/// there is no authorization or token endpoint and no ID token, so those members are absent.
#[derive(Serialize, ToSchema)]
pub struct AuthorizationServerMetadata {
    /// The `iss` of every access token.
    issuer: String,
    /// Where the public signing keys are (JWK Set).
    jwks_uri: String,
    /// RFC 7662 token introspection.
    introspection_endpoint: String,
    /// How a caller authenticates to the introspection endpoint: `client_secret_basic` (or
    /// the same secret as a bearer credential) when `AIDLC_INTROSPECTION_SECRET` is set,
    /// `none` otherwise.
    introspection_endpoint_auth_methods_supported: Vec<&'static str>,
    /// Extension: the `alg` of our access tokens (RFC 9068 JWTs), so a verifier can pin it.
    access_token_signing_alg_values_supported: [&'static str; 1],
}

/// The current and previous public signing keys.
#[utoipa::path(get, path = "/.well-known/jwks.json", tag = "discovery",
    responses(
        (status = 200, description = "JWK Set: Ed25519 (`kty: OKP`, `alg: EdDSA`) keys with `kid`", body = crate::tokens::Jwks,
            headers(("Cache-Control" = String, description = "`public, max-age=60`: a new key signs only after this long"))),
        (status = 503, response = ServiceUnavailable),
    ))]
pub async fn jwks(State(accounts): State<Accounts>) -> Result<impl IntoResponse, ApiError> {
    let jwks = accounts.published_keys().await?;
    // A new key signs only after this cache lifetime, so a verifier never meets an unknown kid.
    let cache = format!("public, max-age={}", JWKS_MAX_AGE.as_secs());
    Ok(([(header::CACHE_CONTROL, cache)], Json(jwks)))
}

/// Authorization-server metadata (RFC 8414): `issuer`, `jwks_uri`, the introspection
/// endpoint and the access-token signing algorithm.
#[utoipa::path(get, path = "/.well-known/oauth-authorization-server", tag = "discovery",
    responses((status = 200, description = "RFC 8414 metadata, true members only", body = AuthorizationServerMetadata,
        headers(("Cache-Control" = String, description = "`public, max-age=60`")))))]
pub async fn authorization_server_metadata(State(state): State<AppState>) -> impl IntoResponse {
    let issuer = state.issuer.clone();
    let auth_methods = if state.introspection_secret.is_some() {
        vec!["client_secret_basic"]
    } else {
        vec!["none"]
    };
    let metadata = Json(AuthorizationServerMetadata {
        jwks_uri: format!("{issuer}/.well-known/jwks.json"),
        introspection_endpoint: format!("{issuer}/api/auth/introspect"),
        introspection_endpoint_auth_methods_supported: auth_methods,
        access_token_signing_alg_values_supported: ["EdDSA"],
        issuer,
    });
    // Public and the same for every caller; it changes only with the deployment's settings.
    let cache = format!("public, max-age={}", JWKS_MAX_AGE.as_secs());
    ([(header::CACHE_CONTROL, cache)], metadata)
}
