//! The layers around every route besides tracing: request metrics, the headers that keep
//! browsers and caches from keeping or sniffing answers, and CORS for configured origins.

use std::time::{Duration, Instant};

use axum::extract::{MatchedPath, Request};
use axum::http::{HeaderValue, Method, header};
use axum::middleware::Next;
use axum::response::Response;
use tower_http::cors::{AllowCredentials, AllowOrigin, CorsLayer};

use super::REQUEST_ID;

/// Counts and times each request under its matched route template (`<unmatched>` for any
/// path no route knows), so labels stay few and never carry an id, address or token.
pub async fn record_metrics(request: Request, next: Next) -> Response {
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "<unmatched>".to_owned(), |m| m.as_str().to_owned());
    let method = request.method().clone();
    let started = Instant::now();
    let response = next.run(request).await;
    crate::metrics::http_request(
        &route,
        method.as_str(),
        response.status().as_u16(),
        started.elapsed(),
    );
    response
}

/// Tokens and account data must not be kept by a browser or a shared cache (RFC 6749
/// §5.1): every answer is `no-store` unless its handler chose a cache policy (the public
/// discovery documents do). And none is ever content-sniffed into something executable.
pub async fn security_headers(mut response: Response) -> Response {
    let headers = response.headers_mut();
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    if !headers.contains_key(header::CACHE_CONTROL) {
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        // For HTTP/1.0 caches, which ignore Cache-Control.
        headers.insert(header::PRAGMA, HeaderValue::from_static("no-cache"));
    }
    response
}

/// How long a browser may reuse a preflight answer.
const PREFLIGHT_MAX_AGE: Duration = Duration::from_secs(600);

/// CORS for exactly `origins`, credentials included; None (no CORS headers, so browsers on
/// other origins cannot read answers) when there are none.
pub fn cors(origins: &[String]) -> Option<CorsLayer> {
    let origins: Vec<HeaderValue> = origins
        .iter()
        .filter_map(|o| HeaderValue::from_str(o).ok())
        .collect();
    if origins.is_empty() {
        return None;
    }
    let credentialed = origins.clone();
    Some(
        CorsLayer::new()
            .allow_origin(AllowOrigin::list(origins))
            // Said only to the configured origins (others get no allow-origin either, so a
            // browser refuses them anyway).
            .allow_credentials(AllowCredentials::predicate(move |origin, _| {
                credentialed.contains(origin)
            }))
            .allow_methods([Method::GET, Method::POST, Method::DELETE])
            .allow_headers([header::AUTHORIZATION, header::CONTENT_TYPE, REQUEST_ID])
            .expose_headers([REQUEST_ID, header::RETRY_AFTER, header::WWW_AUTHENTICATE])
            .max_age(PREFLIGHT_MAX_AGE),
    )
}
