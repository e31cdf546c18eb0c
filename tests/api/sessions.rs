//! Sessions: bearer tokens, logout, lifetime.

use reqwest::StatusCode;
use reqwest::header::{AUTHORIZATION, WWW_AUTHENTICATE};

use crate::helpers::{
    Backend, PASSWORD, TestApp, backend_tests, expect_error, expect_json, expect_session,
    refresh_token, token, unique_email,
};

backend_tests!(
    logout_ends_that_session_only,
    session_expires_after_twenty_four_hours,
    missing_or_malformed_tokens_are_unauthorized,
);

async fn logout_ends_that_session_only(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let email = unique_email("twosessions");
    let first = token(&app.register_active(&email, PASSWORD, "Two Sessions").await);
    let second = token(&expect_session(app.login_password(&email, PASSWORD).await).await);

    assert_eq!(app.logout(&first).await.status(), StatusCode::NO_CONTENT);
    expect_error(
        app.me(&first).await,
        StatusCode::UNAUTHORIZED,
        "unauthorized",
    )
    .await;
    expect_error(
        app.logout(&first).await,
        StatusCode::UNAUTHORIZED,
        "unauthorized",
    )
    .await;

    let me = expect_json(app.me(&second).await, StatusCode::OK).await;
    assert_eq!(me["email"], email);
    app.stop().await;
}

async fn session_expires_after_twenty_four_hours(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let email = unique_email("expiring");
    let first = app.register_active(&email, PASSWORD, "Expiring").await;

    // The access token alone lasts 15 minutes (plus at most 60 s of leeway) ...
    app.advance(899);
    expect_json(app.me(&token(&first)).await, StatusCode::OK).await;
    app.advance(61);
    expect_error(
        app.me(&token(&first)).await,
        StatusCode::UNAUTHORIZED,
        "unauthorized",
    )
    .await;

    // ... the session lasts 24 hours from login, however often it is refreshed.
    app.advance(86_399 - 960);
    let late = expect_session(app.refresh(&refresh_token(&first)).await).await;
    expect_json(app.me(&token(&late)).await, StatusCode::OK).await;
    app.advance(2);
    expect_error(
        app.refresh(&refresh_token(&late)).await,
        StatusCode::UNAUTHORIZED,
        "invalid_refresh_token",
    )
    .await;
    expect_error(
        app.me(&token(&late)).await,
        StatusCode::UNAUTHORIZED,
        "unauthorized",
    )
    .await;
    app.stop().await;
}

async fn missing_or_malformed_tokens_are_unauthorized(backend: Backend) {
    let app = TestApp::spawn(backend).await;

    let response = app.get("/api/auth/me").await;
    assert_eq!(response.headers().get(WWW_AUTHENTICATE).unwrap(), "Bearer");
    expect_error(response, StatusCode::UNAUTHORIZED, "unauthorized").await;

    let unknown_but_well_formed = "A".repeat(43);
    for header in [
        "Basic dXNlcjpwYXNz".to_owned(),
        "Bearer".to_owned(),
        "Bearer not-a-token".to_owned(),
        format!("Bearer {unknown_but_well_formed}"),
    ] {
        let response = app
            .client
            .get(app.url("/api/auth/me"))
            .header(AUTHORIZATION, &header)
            .send()
            .await
            .unwrap();
        let body = expect_error(response, StatusCode::UNAUTHORIZED, "unauthorized").await;
        assert_eq!(
            body["error"]["message"], "a valid bearer token is required",
            "{header}"
        );
    }

    let response = app
        .client
        .post(app.url("/api/auth/logout"))
        .send()
        .await
        .unwrap();
    expect_error(response, StatusCode::UNAUTHORIZED, "unauthorized").await;
    expect_error(
        app.logout(&unknown_but_well_formed).await,
        StatusCode::UNAUTHORIZED,
        "unauthorized",
    )
    .await;
    app.stop().await;
}
