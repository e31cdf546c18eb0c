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

/// The answers every JSON body can get before its handler runs (the `JsonBody` extractor's
/// rejections) are documented wherever a body is read: the contract check
/// (`tests/contract/run`) fails on any status the document does not list.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_operation_with_a_body_documents_its_rejections() {
    let app = TestApp::spawn(Backend::Sqlite).await;
    let doc = expect_json(app.get("/openapi.json").await, StatusCode::OK).await;
    let mut checked = 0;
    for (path, item) in doc["paths"].as_object().expect("paths is an object") {
        for (method, operation) in item.as_object().expect("a path item is an object") {
            let Some(body) = operation.get("requestBody") else {
                continue;
            };
            let responses = &operation["responses"];
            let mut wanted = vec!["400", "413", "422"];
            // A required body is read by `JsonBody`, which refuses any other media type.
            if body["required"] == true {
                wanted.push("415");
            }
            for status in wanted {
                assert!(
                    responses.get(status).is_some(),
                    "{method} {path} reads a body but does not document {status}: {responses}"
                );
            }
            checked += 1;
        }
    }
    assert!(checked >= 10, "only {checked} operations with a body");
    app.stop().await;
}

/// The headers every error of a status carries are in the document, required, wherever that
/// status is: `WWW-Authenticate` on a 401, `Retry-After` on a 429 and on the shared 503.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn error_statuses_document_their_headers_as_required() {
    let app = TestApp::spawn(Backend::Sqlite).await;
    let doc = expect_json(app.get("/openapi.json").await, StatusCode::OK).await;
    let mut seen = 0;
    for (path, item) in doc["paths"].as_object().expect("paths is an object") {
        for (method, operation) in item.as_object().expect("a path item is an object") {
            let responses = operation["responses"].as_object().expect("responses");
            for (status, header) in [("401", "WWW-Authenticate"), ("429", "Retry-After")] {
                if let Some(response) = responses.get(status) {
                    assert_eq!(
                        response["headers"][header]["required"], true,
                        "{method} {path} {status} lacks a required {header}: {response}"
                    );
                    seen += 1;
                }
            }
        }
    }
    assert!(seen >= 15, "only {seen} 401 and 429 responses");
    assert_eq!(
        doc["components"]["responses"]["ServiceUnavailable"]["headers"]["Retry-After"]["required"],
        true
    );
    app.stop().await;
}
