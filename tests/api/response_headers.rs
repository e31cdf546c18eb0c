//! Answers a browser can use safely: nothing with a token or account data is stored by a
//! cache (`Cache-Control: no-store`, `Pragma: no-cache`, RFC 6749 §5.1), nothing is
//! content-sniffed, and CORS is off unless origins are configured, then only for them.

use reqwest::header::HeaderMap;
use reqwest::{Method, StatusCode};

use crate::helpers::{Backend, PASSWORD, TestApp, TestEnv, backend_tests, unique_email};

backend_tests!(
    token_and_account_answers_are_never_cached_and_none_is_sniffed,
    discovery_documents_keep_a_public_cache_lifetime,
    cors_is_absent_by_default,
    cors_allows_a_configured_origin_with_credentials_and_refuses_another,
);

const ORIGIN: &str = "https://app.example.com";

fn assert_no_store(headers: &HeaderMap, what: &str) {
    assert_eq!(headers["cache-control"], "no-store", "{what}: {headers:?}");
    assert_eq!(headers["pragma"], "no-cache", "{what}: {headers:?}");
    assert_eq!(
        headers["x-content-type-options"], "nosniff",
        "{what}: {headers:?}"
    );
}

async fn token_and_account_answers_are_never_cached_and_none_is_sniffed(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let email = unique_email("headers");
    app.register_active(&email, PASSWORD, "Header User").await;

    let login = app.login_password(&email, PASSWORD).await;
    assert_eq!(login.status(), StatusCode::OK);
    assert_no_store(login.headers(), "token pair");
    let pair: serde_json::Value = login.json().await.unwrap();
    let access = pair["access_token"].as_str().unwrap();
    let me = app.get_with_token("/api/auth/me", access).await;
    assert_eq!(me.status(), StatusCode::OK);
    assert_no_store(me.headers(), "account");
    let refused = app.login_password(&email, "not the password").await;
    assert_eq!(refused.status(), StatusCode::UNAUTHORIZED);
    assert_no_store(refused.headers(), "error");
    for path in ["/health", "/health/ready", "/no/such/path"] {
        assert_no_store(app.get(path).await.headers(), path);
    }
    app.stop().await;
}

async fn discovery_documents_keep_a_public_cache_lifetime(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    for path in [
        "/.well-known/jwks.json",
        "/.well-known/oauth-authorization-server",
    ] {
        let answer = app.get(path).await;
        assert_eq!(answer.status(), StatusCode::OK, "{path}");
        let headers = answer.headers();
        assert_eq!(headers["cache-control"], "public, max-age=60", "{path}");
        assert!(headers.get("pragma").is_none(), "{path}: {headers:?}");
        assert_eq!(headers["x-content-type-options"], "nosniff", "{path}");
    }
    app.stop().await;
}

/// A browser's preflight for a credentialed JSON POST to the login route from `origin`.
async fn preflight(app: &TestApp, origin: &str) -> reqwest::Response {
    app.client
        .request(Method::OPTIONS, app.url("/api/auth/login"))
        .header("origin", origin)
        .header("access-control-request-method", "POST")
        .header(
            "access-control-request-headers",
            "content-type,authorization",
        )
        .send()
        .await
        .expect("OPTIONS failed")
}

/// A credentialed request from `origin`.
async fn from_origin(app: &TestApp, origin: &str) -> reqwest::Response {
    app.client
        .get(app.url("/health"))
        .header("origin", origin)
        .send()
        .await
        .expect("GET failed")
}

/// No header that lets a browser hand the answer to the page. (The allowed methods and
/// headers may still be listed: without an allowed origin a browser ignores them.)
fn assert_no_cors(headers: &HeaderMap, what: &str) {
    for name in [
        "access-control-allow-origin",
        "access-control-allow-credentials",
    ] {
        assert!(headers.get(name).is_none(), "{what}: {name} in {headers:?}");
    }
}

async fn cors_is_absent_by_default(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let preflight = preflight(&app, ORIGIN).await;
    assert_eq!(preflight.status(), StatusCode::METHOD_NOT_ALLOWED);
    assert!(
        preflight
            .headers()
            .keys()
            .all(|k| !k.as_str().starts_with("access-control-")),
        "{:?}",
        preflight.headers()
    );
    assert_no_cors(from_origin(&app, ORIGIN).await.headers(), "request");
    app.stop().await;
}

async fn cors_allows_a_configured_origin_with_credentials_and_refuses_another(backend: Backend) {
    let mut env = TestEnv::new(backend).await;
    env.settings.runtime.cors_origins = vec![ORIGIN.to_owned(), "http://localhost:3000".to_owned()];
    let app = env.spawn().await;

    let allowed = preflight(&app, ORIGIN).await;
    assert!(allowed.status().is_success(), "{}", allowed.status());
    let headers = allowed.headers();
    assert_eq!(
        headers["access-control-allow-origin"], ORIGIN,
        "{headers:?}"
    );
    assert_eq!(
        headers["access-control-allow-credentials"], "true",
        "{headers:?}"
    );
    let methods = headers["access-control-allow-methods"].to_str().unwrap();
    assert!(methods.contains("POST"), "{methods}");
    let allowed_headers = headers["access-control-allow-headers"].to_str().unwrap();
    assert!(
        allowed_headers.contains("content-type"),
        "{allowed_headers}"
    );
    assert!(
        allowed_headers.contains("authorization"),
        "{allowed_headers}"
    );

    let request = from_origin(&app, ORIGIN).await;
    assert_eq!(request.headers()["access-control-allow-origin"], ORIGIN);
    assert_eq!(
        request.headers()["access-control-allow-credentials"],
        "true"
    );

    for other in [
        "https://evil.example",
        "https://app.example.com.evil.example",
        "null",
    ] {
        assert_no_cors(preflight(&app, other).await.headers(), other);
        assert_no_cors(from_origin(&app, other).await.headers(), other);
    }
    app.stop().await;
}
