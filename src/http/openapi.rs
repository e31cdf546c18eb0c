//! The OpenAPI 3.1 document, generated from the handlers' annotations.

use axum::Json;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};

use super::error::{
    ErrorBody, ErrorDetail, MalformedJson, PayloadTooLarge, ServiceUnavailable,
    UnsupportedMediaType,
};
use super::{auth, events, health, recovery, sessions, wellknown};

/// The service's API description.
#[derive(OpenApi)]
#[openapi(
    info(title = "aidlc-auth", description = "Registration, e-mailed one-time codes, password and code login, password reset and change, sessions, the owner's security events and verifiable access tokens."),
    paths(
        auth::register, auth::verify_registration, auth::login, auth::verify_login,
        auth::resend_code, recovery::request_reset, recovery::confirm_reset, recovery::change,
        events::list, auth::me, sessions::refresh, sessions::logout, sessions::logout_all,
        sessions::list, sessions::revoke, sessions::introspect, wellknown::jwks,
        wellknown::authorization_server_metadata, health::live, health::ready,
    ),
    components(schemas(ErrorBody, ErrorDetail), responses(
        ServiceUnavailable, MalformedJson, PayloadTooLarge, UnsupportedMediaType,
    )),
    modifiers(&BearerAuth),
    tags(
        (name = "auth", description = "Registration and login"),
        (name = "sessions", description = "Token refresh, logout, session management, introspection"),
        (name = "discovery", description = "Signing keys and provider metadata"),
        (name = "health", description = "Probes"),
    ),
)]
pub struct ApiDoc;

struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
    }
}

/// `GET /openapi.json`.
pub async fn serve() -> Json<utoipa::openapi::OpenApi> {
    Json(ApiDoc::openapi())
}
