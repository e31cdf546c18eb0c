//! One-time codes: lifetime, wrong-try limit, replacement, and binding to address and purpose.

use aidlc_auth::domain::CodePurpose;
use reqwest::StatusCode;

use crate::helpers::{
    Backend, PASSWORD, TestApp, backend_tests, expect_error, expect_invalid_code, expect_json,
    expect_session, unique_email, wrong_code,
};

backend_tests!(
    verify_with_expired_code_is_rejected,
    verify_just_before_expiry_succeeds,
    five_wrong_codes_kill_the_code,
    four_wrong_codes_then_the_right_one_succeeds,
    resent_registration_code_replaces_the_old_one,
    login_code_expires_after_fifteen_minutes,
    five_wrong_login_codes_kill_the_login_code,
    codes_are_bound_to_their_purpose,
);

async fn verify_with_expired_code_is_rejected(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let email = unique_email("expired");
    let code = app.register_pending(&email, PASSWORD, "Late").await;

    app.advance(901);
    expect_invalid_code(app.verify_registration(&email, &code).await).await;
    // Still pending: no password login.
    expect_error(
        app.login_password(&email, PASSWORD).await,
        StatusCode::UNAUTHORIZED,
        "invalid_credentials",
    )
    .await;
    app.stop().await;
}

async fn verify_just_before_expiry_succeeds(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let email = unique_email("justintime");
    let code = app.register_pending(&email, PASSWORD, "Just In Time").await;

    app.advance(899);
    expect_session(app.verify_registration(&email, &code).await).await;
    app.stop().await;
}

async fn five_wrong_codes_kill_the_code(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let email = unique_email("guesser");
    let code = app.register_pending(&email, PASSWORD, "Guesser").await;
    let wrong = wrong_code(&code);

    for attempt in 1..=5 {
        let body = expect_invalid_code(app.verify_registration(&email, &wrong).await).await;
        assert_eq!(
            body["error"]["message"], "the code is invalid or has expired",
            "attempt {attempt}"
        );
    }
    expect_invalid_code(app.verify_registration(&email, &code).await).await;
    expect_error(
        app.login_password(&email, PASSWORD).await,
        StatusCode::UNAUTHORIZED,
        "invalid_credentials",
    )
    .await;

    // A fresh code (after the cooldown) works again.
    app.advance(61);
    expect_json(
        app.resend_code(&email, "registration").await,
        StatusCode::ACCEPTED,
    )
    .await;
    let fresh = app
        .mailbox()
        .last_code_for(&email, CodePurpose::Registration);
    expect_session(app.verify_registration(&email, &fresh).await).await;
    app.stop().await;
}

async fn four_wrong_codes_then_the_right_one_succeeds(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let email = unique_email("clumsy");
    let code = app.register_pending(&email, PASSWORD, "Clumsy").await;
    let wrong = wrong_code(&code);

    for _ in 0..4 {
        expect_invalid_code(app.verify_registration(&email, &wrong).await).await;
    }
    expect_session(app.verify_registration(&email, &code).await).await;
    app.stop().await;
}

async fn resent_registration_code_replaces_the_old_one(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let email = unique_email("resend");
    app.register_pending(&email, PASSWORD, "Resender").await;
    a_resent_code_replaces_the_old_one(&app, &email, CodePurpose::Registration).await;
    app.stop().await;
}

/// After a code for `purpose` went to `email`: a resend (past the cooldown) mails a second
/// code, the first one dies, and the second starts a session. Both purposes share it.
pub(crate) async fn a_resent_code_replaces_the_old_one(
    app: &TestApp,
    email: &str,
    purpose: CodePurpose,
) {
    let old = app.mailbox().last_code_for(email, purpose);
    app.advance(61);
    let body = expect_json(
        app.resend_code(email, purpose.as_str()).await,
        StatusCode::ACCEPTED,
    )
    .await;
    assert_eq!(
        body["message"],
        "If an account in the right state exists for this address, a code has been sent to it."
    );
    let codes = app.mailbox().codes_for(email, purpose);
    assert_eq!(codes.len(), 2, "the resend mailed a second code");
    let new = codes[1].clone();
    if new != old {
        expect_invalid_code(app.verify_code(email, &old, purpose).await).await;
    }
    expect_session(app.verify_code(email, &new, purpose).await).await;
}

async fn login_code_expires_after_fifteen_minutes(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let email = unique_email("slowlogin");
    app.register_active(&email, PASSWORD, "Slow").await;
    expect_json(app.request_login_code(&email).await, StatusCode::ACCEPTED).await;
    let code = app.mailbox().last_code_for(&email, CodePurpose::Login);

    app.advance(901);
    expect_invalid_code(app.verify_login(&email, &code).await).await;
    app.stop().await;
}

async fn five_wrong_login_codes_kill_the_login_code(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let email = unique_email("loginguess");
    app.register_active(&email, PASSWORD, "Login Guesser").await;
    expect_json(app.request_login_code(&email).await, StatusCode::ACCEPTED).await;
    let code = app.mailbox().last_code_for(&email, CodePurpose::Login);
    let wrong = wrong_code(&code);

    for _ in 0..5 {
        expect_invalid_code(app.verify_login(&email, &wrong).await).await;
    }
    expect_invalid_code(app.verify_login(&email, &code).await).await;
    app.stop().await;
}

async fn codes_are_bound_to_their_purpose(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let email = unique_email("purpose");

    // A registration code does not log in.
    let registration_code = app.register_pending(&email, PASSWORD, "Purposeful").await;
    expect_invalid_code(app.verify_login(&email, &registration_code).await).await;
    expect_session(app.verify_registration(&email, &registration_code).await).await;

    // A login code does not verify a registration.
    expect_json(app.request_login_code(&email).await, StatusCode::ACCEPTED).await;
    let login_code = app.mailbox().last_code_for(&email, CodePurpose::Login);
    expect_invalid_code(app.verify_registration(&email, &login_code).await).await;
    expect_session(app.verify_login(&email, &login_code).await).await;
    app.stop().await;
}
