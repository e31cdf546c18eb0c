//! The resend cooldown: one code per (address, purpose) per minute, for every address.

use std::time::Duration;

use aidlc_auth::domain::CodePurpose;
use reqwest::StatusCode;
use reqwest::header::RETRY_AFTER;
use serde_json::Value;

use crate::helpers::{
    Backend, PASSWORD, TestApp, backend_tests, expect_error, expect_json, unique_email,
};

backend_tests!(
    second_registration_within_a_minute_is_throttled,
    resend_within_a_minute_of_registering_is_throttled,
    second_login_code_request_is_throttled_alike_for_unknown_and_active_addresses,
    cooldown_is_per_address_and_per_purpose,
    waiting_the_retry_after_seconds_is_always_enough,
);

/// Asserts a 429 with `Retry-After: retry_after` and returns the body.
async fn expect_throttled(response: reqwest::Response, retry_after: u64) -> Value {
    let header = response
        .headers()
        .get(RETRY_AFTER)
        .unwrap_or_else(|| panic!("429 without Retry-After"))
        .to_str()
        .unwrap()
        .to_owned();
    let body = expect_error(response, StatusCode::TOO_MANY_REQUESTS, "too_many_requests").await;
    assert_eq!(header, retry_after.to_string(), "Retry-After; body {body}");
    body
}

async fn second_registration_within_a_minute_is_throttled(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let email = unique_email("hasty");
    app.register_pending(&email, PASSWORD, "Hasty").await;

    let body = expect_throttled(app.register(&email, PASSWORD, "Hasty").await, 60).await;
    assert_eq!(
        body["error"]["message"],
        "a code was sent recently; try again in 60 s"
    );
    app.advance(45);
    expect_throttled(app.register(&email, PASSWORD, "Hasty").await, 15).await;
    assert_eq!(
        app.mailbox()
            .codes_for(&email, CodePurpose::Registration)
            .len(),
        1,
        "nothing sent while throttled"
    );

    app.advance(16);
    expect_json(
        app.register(&email, PASSWORD, "Hasty").await,
        StatusCode::ACCEPTED,
    )
    .await;
    assert_eq!(
        app.mailbox()
            .codes_for(&email, CodePurpose::Registration)
            .len(),
        2
    );
    app.stop().await;
}

async fn resend_within_a_minute_of_registering_is_throttled(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let email = unique_email("impatient");
    app.register_pending(&email, PASSWORD, "Impatient").await;

    expect_throttled(app.resend_code(&email, "registration").await, 60).await;
    app.advance(61);
    expect_json(
        app.resend_code(&email, "registration").await,
        StatusCode::ACCEPTED,
    )
    .await;
    expect_throttled(app.resend_code(&email, "registration").await, 60).await;
    assert_eq!(
        app.mailbox()
            .codes_for(&email, CodePurpose::Registration)
            .len(),
        2
    );
    app.stop().await;
}

async fn second_login_code_request_is_throttled_alike_for_unknown_and_active_addresses(
    backend: Backend,
) {
    let app = TestApp::spawn(backend).await;
    let active = unique_email("active");
    let unknown = unique_email("unknown");
    app.register_active(&active, PASSWORD, "Active").await;

    expect_json(app.request_login_code(&active).await, StatusCode::ACCEPTED).await;
    expect_json(app.request_login_code(&unknown).await, StatusCode::ACCEPTED).await;
    let active_body = expect_throttled(app.request_login_code(&active).await, 60).await;
    let unknown_body = expect_throttled(app.request_login_code(&unknown).await, 60).await;
    assert_eq!(
        unknown_body, active_body,
        "a 429 says nothing about whether the account exists"
    );
    // The resend endpoint shares the login cooldown.
    expect_throttled(app.resend_code(&unknown, "login").await, 60).await;

    app.advance(61);
    expect_json(app.request_login_code(&unknown).await, StatusCode::ACCEPTED).await;
    expect_json(app.request_login_code(&active).await, StatusCode::ACCEPTED).await;
    assert_eq!(
        app.mailbox().codes_for(&active, CodePurpose::Login).len(),
        2
    );
    assert!(app.mailbox().sent_to(&unknown).is_empty());
    app.stop().await;
}

async fn cooldown_is_per_address_and_per_purpose(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let email = unique_email("first");
    app.register_active(&email, PASSWORD, "First").await;

    // The registration cooldown for `email` runs; another address and the login purpose are free.
    expect_json(
        app.register(&unique_email("second"), PASSWORD, "Second")
            .await,
        StatusCode::ACCEPTED,
    )
    .await;
    expect_json(app.request_login_code(&email).await, StatusCode::ACCEPTED).await;
    assert_eq!(app.mailbox().codes_for(&email, CodePurpose::Login).len(), 1);
    expect_throttled(app.register(&email, PASSWORD, "First").await, 60).await;
    app.stop().await;
}

async fn waiting_the_retry_after_seconds_is_always_enough(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let email = unique_email("patient");
    app.register_pending(&email, PASSWORD, "Patient").await;

    // 30.5 s later 29.5 s are left: the header rounds up, never down.
    app.env.clock.advance(Duration::from_millis(30_500));
    expect_throttled(app.resend_code(&email, "registration").await, 30).await;
    app.advance(30);
    expect_json(
        app.resend_code(&email, "registration").await,
        StatusCode::ACCEPTED,
    )
    .await;
    app.stop().await;
}
