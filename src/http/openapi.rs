//! The OpenAPI 3.1 document, generated from the handlers' annotations.

use axum::Json;
use serde_json::Value;
use utoipa::openapi::header::{Header, HeaderBuilder};
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::openapi::{ObjectBuilder, RefOr, Response, Type};
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
    modifiers(&BearerAuth, &ErrorHeaders),
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

/// The headers `ApiError` adds by status (`error.rs`), on every response of that status:
/// `WWW-Authenticate` on each 401, `Retry-After` on each 429 (the 503's is declared on
/// `ServiceUnavailable`).
struct ErrorHeaders;

impl Modify for ErrorHeaders {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let operations = openapi.paths.paths.values_mut().flat_map(|item| {
            [
                &mut item.get,
                &mut item.put,
                &mut item.post,
                &mut item.delete,
                &mut item.options,
                &mut item.head,
                &mut item.patch,
                &mut item.trace,
            ]
            .into_iter()
            .flatten()
        });
        let inline = operations.flat_map(|op| op.responses.responses.iter_mut());
        let components = openapi
            .components
            .iter_mut()
            .flat_map(|c| c.responses.iter_mut());
        for (status, response) in inline.chain(components) {
            let RefOr::T(response) = response else {
                continue; // A reference: its component gets the headers.
            };
            add_error_headers(status, response);
        }
    }
}

fn add_error_headers(status: &str, response: &mut Response) {
    let retry_after = || {
        header(
            ObjectBuilder::new()
                .schema_type(Type::Integer)
                .minimum(Some(1)),
            "Whole seconds to wait before trying again",
        )
    };
    match status {
        "401" => {
            let challenge = header(
                ObjectBuilder::new().schema_type(Type::String),
                "The challenge: `Bearer`, or `Basic realm=\"aidlc-auth\"` from introspection",
            );
            response
                .headers
                .insert("WWW-Authenticate".to_owned(), challenge);
        }
        "429" => {
            response
                .headers
                .insert("Retry-After".to_owned(), retry_after());
        }
        _ => {}
    }
}

fn header(schema: ObjectBuilder, description: &str) -> Header {
    HeaderBuilder::new()
        .schema(schema)
        .description(Some(description))
        .build()
}

/// The document as served: utoipa's, with every response header marked `required`. The
/// document lists only headers that are always sent with their response (utoipa's `Header`
/// has no `required` field, and the contract check holds the service to it).
pub fn document() -> Value {
    let mut doc = serde_json::to_value(ApiDoc::openapi()).unwrap_or_default();
    let responses = |responses: &mut Value| {
        for response in responses
            .as_object_mut()
            .into_iter()
            .flat_map(|r| r.values_mut())
        {
            let headers = response.get_mut("headers").and_then(Value::as_object_mut);
            for header in headers.into_iter().flat_map(|h| h.values_mut()) {
                if let Some(header) = header.as_object_mut() {
                    header.insert("required".to_owned(), Value::Bool(true));
                }
            }
        }
    };
    for item in doc["paths"]
        .as_object_mut()
        .into_iter()
        .flat_map(|p| p.values_mut())
    {
        for operation in item
            .as_object_mut()
            .into_iter()
            .flat_map(|i| i.values_mut())
        {
            if let Some(r) = operation.get_mut("responses") {
                responses(r);
            }
        }
    }
    if let Some(r) = doc.pointer_mut("/components/responses") {
        responses(r);
    }
    doc
}

/// `GET /openapi.json`.
pub async fn serve() -> Json<Value> {
    Json(document())
}
