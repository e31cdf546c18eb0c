//! Password reset by e-mailed code, password change, and re-hashing on login.

use aidlc_auth::config::Argon2Params;
use aidlc_auth::domain::CodePurpose;
use reqwest::StatusCode;
use serde_json::Value;

use crate::helpers::{
    Backend, PASSWORD, TestApp, TestEnv, backend_tests, expect_error, expect_invalid_code,
    expect_json, expect_session, refresh_token, text, token, unique_email, wrong_code,
};

backend_tests!(
    password_reset_sets_the_password_and_ends_every_session_without_signing_in,
    password_reset_answers_alike_for_every_address_and_mails_only_active_accounts,
    a_wrong_reset_code_changes_nothing,
    change_password_keeps_this_session_and_ends_the_others,
    login_rehashes_a_password_hashed_with_other_argon2_parameters,
);

const NEW_PASSWORD: &str = "a brand new passphrase";

/// Asks for a reset of `email` (202 expected) and returns the code mailed to it.
async fn reset_code(app: &TestApp, email: &str) -> String {
    expect_json(
        app.request_password_reset(email).await,
        StatusCode::ACCEPTED,
    )
    .await;
    app.mailbox()
        .last_code_for(email, CodePurpose::PasswordReset)
}

async fn password_reset_sets_the_password_and_ends_every_session_without_signing_in(
    backend: Backend,
) {
    let app = TestApp::spawn(backend).await;
    let email = unique_email("reset");
    let first = app.register_active(&email, PASSWORD, "Forgetful").await;
    let second = expect_session(app.login_password(&email, PASSWORD).await).await;

    let code = reset_code(&app, &email).await;
    // Asking alone revokes nothing.
    expect_json(app.me(&token(&first)).await, StatusCode::OK).await;
    let second = expect_session(app.refresh(&refresh_token(&second)).await).await;

    let body = expect_json(
        app.confirm_password_reset(&email, &code, NEW_PASSWORD)
            .await,
        StatusCode::OK,
    )
    .await;
    assert!(
        body.get("access_token").is_none(),
        "no sign-in after a reset: {body}"
    );
    assert!(
        body["message"].as_str().is_some_and(|m| !m.is_empty()),
        "{body}"
    );

    // Every session and refresh family is gone.
    for session in [&first, &second] {
        expect_error(
            app.me(&token(session)).await,
            StatusCode::UNAUTHORIZED,
            "unauthorized",
        )
        .await;
        expect_error(
            app.refresh(&refresh_token(session)).await,
            StatusCode::UNAUTHORIZED,
            "invalid_refresh_token",
        )
        .await;
    }
    let sessions = app
        .db()
        .scalar_i64("SELECT count(*) FROM sessions WHERE revoked_at IS NULL")
        .await;
    assert_eq!(sessions, 0);

    // The old password is refused, the new one works, the code is spent, a notice went out.
    expect_error(
        app.login_password(&email, PASSWORD).await,
        StatusCode::UNAUTHORIZED,
        "invalid_credentials",
    )
    .await;
    expect_session(app.login_password(&email, NEW_PASSWORD).await).await;
    expect_invalid_code(
        app.confirm_password_reset(&email, &code, "yet another phrase")
            .await,
    )
    .await;
    assert_eq!(app.mailbox().password_changed_notices_for(&email), 1);
    // A reset code never logs anyone in.
    expect_invalid_code(app.verify_login(&email, &code).await).await;
    app.stop().await;
}

/// Status, body and every header but the per-request ones.
async fn answer(response: reqwest::Response) -> (StatusCode, Vec<(String, String)>, Value) {
    let status = response.status();
    let mut headers: Vec<(String, String)> = response
        .headers()
        .iter()
        .filter(|(name, _)| !matches!(name.as_str(), "date" | "x-request-id"))
        .map(|(name, value)| (name.to_string(), value.to_str().unwrap_or("").to_owned()))
        .collect();
    headers.sort();
    let body = response.json().await.expect("a JSON body");
    (status, headers, body)
}

async fn password_reset_answers_alike_for_every_address_and_mails_only_active_accounts(
    backend: Backend,
) {
    let app = TestApp::spawn(backend).await;
    let active = unique_email("active");
    let pending = unique_email("pending");
    let unknown = unique_email("unknown");
    app.register_active(&active, PASSWORD, "Active").await;
    app.register_pending(&pending, PASSWORD, "Pending").await;

    let expected = answer(app.request_password_reset(&active).await).await;
    assert_eq!(expected.0, StatusCode::ACCEPTED, "{:?}", expected.2);
    for address in [&pending, &unknown, &active] {
        // The last one is within the resend cooldown: still the same answer.
        assert_eq!(
            answer(app.request_password_reset(address).await).await,
            expected,
            "{address}"
        );
    }
    assert_eq!(
        app.mailbox()
            .codes_for(&active, CodePurpose::PasswordReset)
            .len(),
        1
    );
    assert!(
        app.mailbox()
            .codes_for(&pending, CodePurpose::PasswordReset)
            .is_empty()
    );
    assert!(app.mailbox().sent_to(&unknown).is_empty());
    app.stop().await;
}

async fn a_wrong_reset_code_changes_nothing(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let email = unique_email("wrongreset");
    let session = app.register_active(&email, PASSWORD, "Careful").await;
    let code = reset_code(&app, &email).await;

    expect_invalid_code(
        app.confirm_password_reset(&email, &wrong_code(&code), NEW_PASSWORD)
            .await,
    )
    .await;
    expect_invalid_code(
        app.confirm_password_reset(&unique_email("nobody"), &code, NEW_PASSWORD)
            .await,
    )
    .await;
    expect_json(app.me(&token(&session)).await, StatusCode::OK).await;
    expect_session(app.login_password(&email, PASSWORD).await).await;
    assert_eq!(app.mailbox().password_changed_notices_for(&email), 0);
    // The right code still works after a wrong try.
    expect_json(
        app.confirm_password_reset(&email, &code, NEW_PASSWORD)
            .await,
        StatusCode::OK,
    )
    .await;
    app.stop().await;
}

async fn change_password_keeps_this_session_and_ends_the_others(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let email = unique_email("change");
    let this = app.register_active(&email, PASSWORD, "Changer").await;
    let other = expect_session(app.login_password(&email, PASSWORD).await).await;

    let wrong = expect_error(
        app.change_password(&token(&this), "not my password", NEW_PASSWORD)
            .await,
        StatusCode::BAD_REQUEST,
        "invalid_current_password",
    )
    .await;
    assert!(
        wrong["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("current password"))
    );
    expect_json(app.me(&token(&other)).await, StatusCode::OK).await;
    expect_error(
        app.change_password("not-a-token", PASSWORD, NEW_PASSWORD)
            .await,
        StatusCode::UNAUTHORIZED,
        "unauthorized",
    )
    .await;

    let response = app
        .change_password(&token(&this), PASSWORD, NEW_PASSWORD)
        .await;
    let body = expect_json(response, StatusCode::OK).await;
    assert_eq!(body["ended"], 1, "{body}");
    expect_json(app.me(&token(&this)).await, StatusCode::OK).await;
    expect_session(app.refresh(&refresh_token(&this)).await).await;
    expect_error(
        app.me(&token(&other)).await,
        StatusCode::UNAUTHORIZED,
        "unauthorized",
    )
    .await;
    expect_error(
        app.refresh(&refresh_token(&other)).await,
        StatusCode::UNAUTHORIZED,
        "invalid_refresh_token",
    )
    .await;
    expect_error(
        app.login_password(&email, PASSWORD).await,
        StatusCode::UNAUTHORIZED,
        "invalid_credentials",
    )
    .await;
    expect_session(app.login_password(&email, NEW_PASSWORD).await).await;
    assert_eq!(app.mailbox().password_changed_notices_for(&email), 1);
    app.stop().await;
}

async fn login_rehashes_a_password_hashed_with_other_argon2_parameters(backend: Backend) {
    let weak = TestEnv::new(backend).await;
    let app = weak.spawn().await;
    let email = unique_email("rehash");
    app.register_active(&email, PASSWORD, "Rehash").await;
    let before = app.db().password_hash(&email).await;
    assert!(
        before.starts_with("$argon2id$v=19$m=1024,t=1,p=1$"),
        "{before}"
    );
    app.stop().await;

    let mut strong = weak.clone();
    strong.settings.argon2 = Argon2Params {
        memory_kib: 2048,
        iterations: 2,
        parallelism: 1,
    };
    let app = strong.spawn().await;
    // A wrong password changes nothing.
    expect_error(
        app.login_password(&email, "not the password").await,
        StatusCode::UNAUTHORIZED,
        "invalid_credentials",
    )
    .await;
    assert_eq!(app.db().password_hash(&email).await, before);

    expect_session(app.login_password(&email, PASSWORD).await).await;
    let after = app.db().password_hash(&email).await;
    assert!(
        after.starts_with("$argon2id$v=19$m=2048,t=2,p=1$"),
        "{after}"
    );
    assert_ne!(after, before);
    let response = app.login_password(&email, PASSWORD).await;
    assert_eq!(
        response.status(),
        StatusCode::OK,
        "{}",
        text(response).await
    );
    assert_eq!(
        app.db().password_hash(&email).await,
        after,
        "current: not hashed again"
    );
    app.stop().await;
}
