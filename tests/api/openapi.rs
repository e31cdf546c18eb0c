//! The OpenAPI document.

use reqwest::StatusCode;

use crate::helpers::{Backend, TestApp, expect_json};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openapi_document_is_3_1_and_lists_every_route() {
    let app = TestApp::spawn(Backend::Sqlite).await;
    let doc = expect_json(app.get("/openapi.json").await, StatusCode::OK).await;
    let version = doc["openapi"].as_str().expect("openapi is a string");
    assert!(version.starts_with("3.1"), "openapi {version}");

    let paths = doc["paths"].as_object().expect("paths is an object");
    for (path, method) in [
        ("/api/auth/register", "post"),
        ("/api/auth/verify-registration", "post"),
        ("/api/auth/login", "post"),
        ("/api/auth/verify-login", "post"),
        ("/api/auth/resend-code", "post"),
        ("/api/auth/password-reset", "post"),
        ("/api/auth/password-reset/confirm", "post"),
        ("/api/auth/password", "post"),
        ("/api/auth/events", "get"),
        ("/api/auth/me", "get"),
        ("/api/auth/logout", "post"),
        ("/api/auth/refresh", "post"),
        ("/api/auth/logout-all", "post"),
        ("/api/auth/sessions", "get"),
        ("/api/auth/sessions/{id}", "delete"),
        ("/api/auth/introspect", "post"),
        ("/.well-known/jwks.json", "get"),
        ("/.well-known/oauth-authorization-server", "get"),
        ("/health", "get"),
        ("/health/ready", "get"),
    ] {
        let item = paths.get(path).unwrap_or_else(|| {
            panic!("{path} missing from {:?}", paths.keys().collect::<Vec<_>>())
        });
        assert!(item.get(method).is_some(), "{path} has no {method}: {item}");
    }
    assert!(
        doc["components"]["schemas"]["ErrorBody"].is_object(),
        "ErrorBody schema is documented"
    );
    assert!(
        doc["components"]["responses"]["ServiceUnavailable"]["description"]
            .as_str()
            .is_some_and(|d| d.contains("Retry-After")),
        "one documented 503"
    );
    assert_eq!(
        doc["paths"]["/api/auth/login"]["post"]["responses"]["503"]["$ref"],
        "#/components/responses/ServiceUnavailable"
    );
    assert!(
        doc["components"]["securitySchemes"]["bearer"].is_object(),
        "bearer scheme is documented"
    );
    app.stop().await;
}
