//! Logging in by password and by e-mailed code, and what a stranger can learn from it.

use aidlc_auth::domain::CodePurpose;
use reqwest::StatusCode;
use reqwest::header::WWW_AUTHENTICATE;
use serde_json::json;

use crate::helpers::{
    Backend, PASSWORD, TestApp, backend_tests, expect_invalid_code, expect_json, expect_session,
    status_and_json, token, unique_email,
};

const CODE_SENT: &str =
    "If an account in the right state exists for this address, a code has been sent to it.";

backend_tests!(
    password_login_starts_a_working_session,
    code_login_starts_a_working_session,
    resent_login_code_replaces_the_old_one,
    password_login_failures_are_indistinguishable,
    code_login_request_is_identical_for_unknown_pending_and_active_addresses,
    login_code_resend_for_a_pending_or_unknown_address_sends_nothing,
);

async fn password_login_starts_a_working_session(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let email = unique_email("pw");
    let registered = app.register_active(&email, PASSWORD, "Password User").await;

    let session = expect_session(app.login_password(&email, PASSWORD).await).await;
    assert_eq!(session["user"], registered["user"]);
    assert_ne!(
        session["refresh_token"], registered["refresh_token"],
        "each login is a new session"
    );
    assert_ne!(session["session_id"], registered["session_id"]);

    let me = expect_json(app.me(&token(&session)).await, StatusCode::OK).await;
    assert_eq!(me["email"], email);
    assert_eq!(me["status"], "active");
    app.stop().await;
}

async fn code_login_starts_a_working_session(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let email = unique_email("codelogin");
    app.register_active(&email, PASSWORD, "Code User").await;

    let body = expect_json(app.request_login_code(&email).await, StatusCode::ACCEPTED).await;
    assert_eq!(body, json!({ "message": CODE_SENT }));
    let code = app.mailbox().last_code_for(&email, CodePurpose::Login);

    let session = expect_session(app.verify_login(&email, &code).await).await;
    assert_eq!(session["user"]["email"], email);
    let me = expect_json(app.me(&token(&session)).await, StatusCode::OK).await;
    assert_eq!(me["full_name"], "Code User");

    // Used once only.
    expect_invalid_code(app.verify_login(&email, &code).await).await;
    app.stop().await;
}

async fn resent_login_code_replaces_the_old_one(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let email = unique_email("relogin");
    app.register_active(&email, PASSWORD, "Resend Login").await;
    expect_json(app.request_login_code(&email).await, StatusCode::ACCEPTED).await;
    crate::verification::a_resent_code_replaces_the_old_one(&app, &email, CodePurpose::Login).await;
    app.stop().await;
}

async fn password_login_failures_are_indistinguishable(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let active = unique_email("active");
    let pending = unique_email("pending");
    app.register_active(&active, PASSWORD, "Active").await;
    app.register_pending(&pending, PASSWORD, "Pending").await;

    let mut answers = Vec::new();
    for (email, password) in [
        (active.as_str(), "wrong password!"),
        (unique_email("unknown").as_str(), PASSWORD),
        (pending.as_str(), PASSWORD),
    ] {
        let response = app.login_password(email, password).await;
        let challenge = response.headers().get(WWW_AUTHENTICATE).cloned();
        let (status, body) = status_and_json(response).await;
        answers.push((status, body, challenge));
    }
    assert_eq!(answers[0].0, StatusCode::UNAUTHORIZED);
    assert_eq!(
        answers[0].1,
        json!({ "error": { "code": "invalid_credentials", "message": "invalid e-mail or password" } })
    );
    assert_eq!(
        answers[1], answers[0],
        "unknown address answers like a wrong password"
    );
    assert_eq!(
        answers[2], answers[0],
        "pending account answers like a wrong password"
    );
    app.stop().await;
}

async fn code_login_request_is_identical_for_unknown_pending_and_active_addresses(
    backend: Backend,
) {
    let app = TestApp::spawn(backend).await;
    let active = unique_email("active");
    let pending = unique_email("pending");
    let unknown = unique_email("unknown");
    app.register_active(&active, PASSWORD, "Active").await;
    app.register_pending(&pending, PASSWORD, "Pending").await;

    let unknown_answer = status_and_json(app.request_login_code(&unknown).await).await;
    let pending_answer = status_and_json(app.request_login_code(&pending).await).await;
    let active_answer = status_and_json(app.request_login_code(&active).await).await;
    assert_eq!(active_answer.0, StatusCode::ACCEPTED);
    assert_eq!(active_answer.1, json!({ "message": CODE_SENT }));
    assert_eq!(unknown_answer, active_answer);
    assert_eq!(pending_answer, active_answer);

    assert_eq!(
        app.mailbox().codes_for(&active, CodePurpose::Login).len(),
        1,
        "only the active account gets a code"
    );
    assert!(
        app.mailbox()
            .codes_for(&pending, CodePurpose::Login)
            .is_empty()
    );
    assert!(app.mailbox().sent_to(&unknown).is_empty());
    app.stop().await;
}

async fn login_code_resend_for_a_pending_or_unknown_address_sends_nothing(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let pending = unique_email("pending");
    app.register_pending(&pending, PASSWORD, "Pending").await;
    let unknown = unique_email("unknown");
    let mails = app.mailbox().len();

    let pending_answer = status_and_json(app.resend_code(&pending, "login").await).await;
    let unknown_answer = status_and_json(app.resend_code(&unknown, "login").await).await;
    // A registration resend for an unknown address is accepted the same way.
    let unknown_registration =
        status_and_json(app.resend_code(&unknown, "registration").await).await;
    assert_eq!(pending_answer.0, StatusCode::ACCEPTED);
    assert_eq!(pending_answer.1, json!({ "message": CODE_SENT }));
    assert_eq!(unknown_answer, pending_answer);
    assert_eq!(unknown_registration, pending_answer);
    assert_eq!(app.mailbox().len(), mails, "nothing was mailed");
    app.stop().await;
}
