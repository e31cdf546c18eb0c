//! The service's own checks end an access token at its `exp`: no leeway for its own clock.

use reqwest::StatusCode;

use crate::helpers::{
    Backend, PASSWORD, TestApp, backend_tests, expect_error, expect_json, token, unique_email,
};

backend_tests!(own_access_tokens_end_at_their_expiry_for_me_and_introspection);

/// Access-token lifetime (default).
const ACCESS_TTL: u64 = 900;

async fn own_access_tokens_end_at_their_expiry_for_me_and_introspection(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let session = app
        .register_active(&unique_email("expiry"), PASSWORD, "Expiry")
        .await;
    let access = token(&session);

    app.advance(ACCESS_TTL - 1);
    expect_json(app.me(&access).await, StatusCode::OK).await;
    let live = expect_json(app.introspect(&access).await, StatusCode::OK).await;
    assert_eq!(live["active"], true, "{live}");

    // RFC 7662 §2.2: a token past its expiry is not active; RFC 7519: valid while now < exp.
    app.advance(1);
    expect_error(
        app.me(&access).await,
        StatusCode::UNAUTHORIZED,
        "unauthorized",
    )
    .await;
    let dead = expect_json(app.introspect(&access).await, StatusCode::OK).await;
    assert_eq!(dead, serde_json::json!({ "active": false }));
    app.stop().await;
}
