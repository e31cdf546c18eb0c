//! Someone registers an address that is still pending, before or after its owner: whatever the
//! order and whichever body the owner verifies with, the account goes live with the owner's
//! password, never with the other person's.

use aidlc_auth::domain::CodePurpose;
use reqwest::StatusCode;
use serde_json::json;

use crate::helpers::{
    Backend, TestApp, backend_tests, expect_error, expect_invalid_code, expect_session,
    unique_email, wrong_code,
};

backend_tests!(
    squatter_first_owner_verifying_with_the_guides_body_is_asked_for_the_password,
    squatter_first_owner_verifying_with_the_password_confirms_their_registration,
    squatter_second_owner_verifying_with_the_guides_body_is_asked_for_the_password,
    squatter_second_owner_verifying_with_the_password_confirms_their_registration,
    a_wrong_code_gets_invalid_code_even_when_the_password_would_be_needed,
    a_wrong_password_with_the_right_code_fails_and_leaves_the_code_usable,
    registering_again_with_the_same_password_keeps_the_guides_body_working,
);

// Neither is built from its registrant's name (the password policy refuses that).
const OWNER_PASSWORD: &str = "the true holder B";
const SQUATTER_PASSWORD: &str = "an intruding guess A";

/// Two registrations of one pending address, in the given order; returns the address and the
/// newest code (the one the owner reads last in their mailbox).
async fn contested(app: &TestApp, squatter_first: bool) -> (String, String) {
    let email = unique_email("contested");
    let (first, second) = if squatter_first {
        ((SQUATTER_PASSWORD, "Squatter"), (OWNER_PASSWORD, "Owner"))
    } else {
        ((OWNER_PASSWORD, "Owner"), (SQUATTER_PASSWORD, "Squatter"))
    };
    app.register_pending(&email, first.0, first.1).await;
    app.advance(61);
    app.register_pending(&email, second.0, second.1).await;
    assert_eq!(app.db().count_users().await, 1);
    let code = app
        .mailbox()
        .last_code_for(&email, CodePurpose::Registration);
    (email, code)
}

async fn verify_with_password(
    app: &TestApp,
    email: &str,
    code: &str,
    password: &str,
) -> reqwest::Response {
    app.post_json(
        "/api/auth/verify-registration",
        &json!({ "email": email, "verification_code": code, "password": password }),
    )
    .await
}

/// The owner's password logs in, the squatter's does not, and the name is the owner's.
async fn expect_owner_in_control(app: &TestApp, email: &str, session: &serde_json::Value) {
    assert_eq!(session["user"]["full_name"], "Owner", "{session}");
    expect_error(
        app.login_password(email, SQUATTER_PASSWORD).await,
        StatusCode::UNAUTHORIZED,
        "invalid_credentials",
    )
    .await;
    let login = expect_session(app.login_password(email, OWNER_PASSWORD).await).await;
    assert_eq!(login["user"]["full_name"], "Owner");
}

async fn owner_verifies_with_the_guides_body(backend: Backend, squatter_first: bool) {
    let app = TestApp::spawn(backend).await;
    let (email, code) = contested(&app, squatter_first).await;

    // The two-field body cannot say whose registration to confirm: it is refused, clearly.
    let body = expect_error(
        app.verify_registration(&email, &code).await,
        StatusCode::CONFLICT,
        "password_required",
    )
    .await;
    assert!(
        body["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("password")),
        "{body}"
    );
    // Nothing was activated: neither password logs in yet.
    for password in [OWNER_PASSWORD, SQUATTER_PASSWORD] {
        expect_error(
            app.login_password(&email, password).await,
            StatusCode::UNAUTHORIZED,
            "invalid_credentials",
        )
        .await;
    }
    // The same code, now with the owner's password, confirms the owner's registration.
    let session =
        expect_session(verify_with_password(&app, &email, &code, OWNER_PASSWORD).await).await;
    expect_owner_in_control(&app, &email, &session).await;
    app.stop().await;
}

async fn owner_verifies_with_the_password(backend: Backend, squatter_first: bool) {
    let app = TestApp::spawn(backend).await;
    let (email, code) = contested(&app, squatter_first).await;
    let session =
        expect_session(verify_with_password(&app, &email, &code, OWNER_PASSWORD).await).await;
    expect_owner_in_control(&app, &email, &session).await;
    app.stop().await;
}

async fn squatter_first_owner_verifying_with_the_guides_body_is_asked_for_the_password(
    backend: Backend,
) {
    owner_verifies_with_the_guides_body(backend, true).await;
}

async fn squatter_first_owner_verifying_with_the_password_confirms_their_registration(
    backend: Backend,
) {
    owner_verifies_with_the_password(backend, true).await;
}

async fn squatter_second_owner_verifying_with_the_guides_body_is_asked_for_the_password(
    backend: Backend,
) {
    owner_verifies_with_the_guides_body(backend, false).await;
}

async fn squatter_second_owner_verifying_with_the_password_confirms_their_registration(
    backend: Backend,
) {
    owner_verifies_with_the_password(backend, false).await;
}

async fn a_wrong_code_gets_invalid_code_even_when_the_password_would_be_needed(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let (email, code) = contested(&app, false).await;
    // Without the code, nobody learns that the address is contested (or exists at all).
    expect_invalid_code(app.verify_registration(&email, &wrong_code(&code)).await).await;
    let session =
        expect_session(verify_with_password(&app, &email, &code, OWNER_PASSWORD).await).await;
    expect_owner_in_control(&app, &email, &session).await;
    app.stop().await;
}

async fn a_wrong_password_with_the_right_code_fails_and_leaves_the_code_usable(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let (email, code) = contested(&app, true).await;
    expect_invalid_code(verify_with_password(&app, &email, &code, "neither of the two").await)
        .await;
    let session =
        expect_session(verify_with_password(&app, &email, &code, OWNER_PASSWORD).await).await;
    expect_owner_in_control(&app, &email, &session).await;
    app.stop().await;
}

async fn registering_again_with_the_same_password_keeps_the_guides_body_working(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let email = unique_email("again");
    app.register_pending(&email, OWNER_PASSWORD, "First Name")
        .await;
    app.advance(61);
    let code = app.register_pending(&email, OWNER_PASSWORD, "Owner").await;
    // One password registered, twice: the guide's two-field body confirms it, newest name.
    let session = expect_session(app.verify_registration(&email, &code).await).await;
    assert_eq!(session["user"]["full_name"], "Owner");
    expect_session(app.login_password(&email, OWNER_PASSWORD).await).await;
    app.stop().await;
}
