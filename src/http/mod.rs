//! The HTTP surface: routes, layers, OpenAPI document.

pub mod auth;
pub mod error;
pub mod events;
pub mod extract;
pub mod health;
mod layers;
mod openapi;
pub mod recovery;
pub mod sessions;
pub mod wellknown;

use std::time::Duration;

use axum::Router;
use axum::extract::{DefaultBodyLimit, MatchedPath, Request};
use axum::http::HeaderName;
use axum::response::Response;
use axum::routing::{delete, get, post};
use secrecy::SecretString;
use tower::ServiceBuilder;
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::trace::TraceLayer;
use tracing::{Level, Span};

pub use openapi::ApiDoc;

use crate::accounts::Accounts;
use crate::domain::TrustedProxies;
use error::ApiError;

/// Largest accepted request body.
pub const MAX_BODY_BYTES: usize = 64 * 1024;

/// What every handler can reach; each takes only its part (`State<Accounts>`,
/// `State<Probes>`, …).
#[derive(Clone, axum::extract::FromRef)]
pub struct AppState {
    /// The use cases.
    pub accounts: Accounts,
    /// What readiness pings.
    pub probes: health::Probes,
    /// `iss` of our tokens, base of the discovery URLs.
    pub issuer: String,
    /// The credential other services present to introspect tokens, when one is required.
    pub introspection_secret: Option<SecretString>,
    /// Proxies whose `X-Forwarded-For` entries are believed.
    pub trusted_proxies: TrustedProxies,
}

const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// Every route, with request ids, tracing, metrics, the body limit, the cache and sniffing
/// headers, JSON fallbacks, and CORS for `cors_origins` (none: no CORS).
pub fn router(state: AppState, cors_origins: &[String]) -> Router {
    let router = Router::new()
        .route("/health", get(health::live))
        .route("/health/ready", get(health::ready))
        .route("/openapi.json", get(openapi::serve))
        .route("/api/auth/register", post(auth::register))
        .route(
            "/api/auth/verify-registration",
            post(auth::verify_registration),
        )
        .route("/api/auth/login", post(auth::login))
        .route("/api/auth/verify-login", post(auth::verify_login))
        .route("/api/auth/resend-code", post(auth::resend_code))
        .route("/api/auth/password-reset", post(recovery::request_reset))
        .route(
            "/api/auth/password-reset/confirm",
            post(recovery::confirm_reset),
        )
        .route("/api/auth/password", post(recovery::change))
        .route("/api/auth/events", get(events::list))
        .route("/api/auth/me", get(auth::me))
        .route("/api/auth/refresh", post(sessions::refresh))
        .route("/api/auth/logout", post(sessions::logout))
        .route("/api/auth/logout-all", post(sessions::logout_all))
        .route("/api/auth/sessions", get(sessions::list))
        .route("/api/auth/sessions/{id}", delete(sessions::revoke))
        .route("/api/auth/introspect", post(sessions::introspect))
        .route("/.well-known/jwks.json", get(wellknown::jwks))
        .route(
            "/.well-known/oauth-authorization-server",
            get(wellknown::authorization_server_metadata),
        )
        .fallback(|| async { ApiError::not_found() })
        .method_not_allowed_fallback(|| async { ApiError::method_not_allowed() })
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .layer(
            ServiceBuilder::new()
                .layer(axum::middleware::map_request(drop_unsafe_request_id))
                .layer(SetRequestIdLayer::new(REQUEST_ID, MakeRequestUuid))
                .layer(
                    TraceLayer::new_for_http()
                        .make_span_with(make_span)
                        .on_request(())
                        .on_response(on_response)
                        .on_failure(()),
                )
                .layer(PropagateRequestIdLayer::new(REQUEST_ID)),
        )
        .layer(axum::middleware::from_fn(layers::record_metrics))
        .layer(axum::middleware::map_response(layers::security_headers));
    // Outermost, so a preflight is answered before any route sees it.
    match layers::cors(cors_origins) {
        Some(cors) => router.layer(cors),
        None => router,
    }
    .with_state(state)
}

/// Longest client-supplied request id that is kept.
const MAX_REQUEST_ID_LEN: usize = 64;

/// A client's `X-Request-Id` is kept only when it is short and made of `[A-Za-z0-9._-]`:
/// anything else (log-line forgery, megabytes of header) is dropped and a fresh id is made.
async fn drop_unsafe_request_id(mut request: Request) -> Request {
    let safe = |v: &axum::http::HeaderValue| {
        let bytes = v.as_bytes();
        !bytes.is_empty()
            && bytes.len() <= MAX_REQUEST_ID_LEN
            && bytes
                .iter()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
    };
    let values = request.headers().get_all(&REQUEST_ID);
    let keep = values.iter().count() == 1 && values.iter().all(safe);
    if !keep {
        request.headers_mut().remove(&REQUEST_ID);
    }
    request
}

/// The request span: method, matched route (never the raw URI or headers), request id, and the
/// client IP once the `ClientInfo` extractor has resolved it.
/// Health checks are logged at DEBUG so the ALB's polling does not drown the log.
fn make_span(request: &Request) -> Span {
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or("<unmatched>", MatchedPath::as_str);
    let request_id = request
        .headers()
        .get(&REQUEST_ID)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if route.starts_with("/health") {
        tracing::debug_span!("request", method = %request.method(), route, request_id, client_ip = tracing::field::Empty)
    } else {
        tracing::info_span!("request", method = %request.method(), route, request_id, client_ip = tracing::field::Empty)
    }
}

fn on_response(response: &Response, latency: Duration, span: &Span) {
    let status = response.status().as_u16();
    let latency_ms = latency.as_secs_f64() * 1000.0;
    if span.metadata().is_some_and(|m| *m.level() == Level::DEBUG) {
        tracing::debug!(status, latency_ms, "response");
    } else {
        tracing::info!(status, latency_ms, "response");
    }
}
