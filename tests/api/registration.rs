//! Registration: the whole flow, normalisation, enumeration resistance, and concurrent
//! verification (registering a pending address again: `takeover.rs`).

use aidlc_auth::domain::CodePurpose;
use aidlc_auth::email::{Message, Templates};
use futures::future::join_all;
use reqwest::StatusCode;
use serde_json::json;

use crate::helpers::{
    Backend, PASSWORD, TestApp, backend_tests, expect_error, expect_invalid_code, expect_json,
    expect_session, status_and_json, token, unique_email,
};

const REGISTER_ACCEPTED: &str =
    "If this address can be registered, a verification code has been sent to it.";

backend_tests!(
    register_then_verify_activates_the_account_and_starts_a_session,
    registration_mail_carries_a_six_digit_code_valid_for_fifteen_minutes,
    email_is_normalised_before_it_is_stored_and_mailed,
    verified_code_cannot_be_used_a_second_time,
    verify_for_an_address_that_never_registered_is_rejected,
    concurrent_verifications_of_one_code_start_exactly_one_session,
    register_answers_identically_for_new_pending_and_active_addresses,
);

async fn register_then_verify_activates_the_account_and_starts_a_session(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let email = unique_email("flow");

    let response = app.register(&email, PASSWORD, "Test User").await;
    let body = expect_json(response, StatusCode::ACCEPTED).await;
    assert_eq!(body, json!({ "message": REGISTER_ACCEPTED }));
    assert_eq!(app.db().count_users().await, 1);

    let code = app
        .mailbox()
        .last_code_for(&email, CodePurpose::Registration);
    let session = expect_session(app.verify_registration(&email, &code).await).await;
    assert_eq!(session["user"]["email"], email);
    assert_eq!(session["user"]["full_name"], "Test User");
    assert!(session["user"]["verified_at"].is_string(), "{session}");
    assert!(session["user"]["created_at"].is_string(), "{session}");
    let bearer = token(&session);

    let me = expect_json(app.me(&bearer).await, StatusCode::OK).await;
    assert_eq!(me, session["user"], "GET /me shows the session's user");

    let response = app.logout(&bearer).await;
    assert_eq!(response.status(), StatusCode::NO_CONTENT);
    assert_eq!(response.text().await.unwrap(), "");

    expect_error(
        app.me(&bearer).await,
        StatusCode::UNAUTHORIZED,
        "unauthorized",
    )
    .await;
    app.stop().await;
}

async fn registration_mail_carries_a_six_digit_code_valid_for_fifteen_minutes(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let email = unique_email("mail");
    app.register_pending(&email, PASSWORD, "Mail Reader").await;

    let mails = app.mailbox().all();
    assert_eq!(mails.len(), 1, "exactly one message: {mails:?}");
    assert_eq!(mails[0].to.as_str(), email);
    match &mails[0].message {
        Message::VerificationCode {
            purpose,
            code,
            valid_for,
        } => {
            assert_eq!(*purpose, CodePurpose::Registration);
            assert_eq!(code.expose().len(), 6);
            assert!(code.expose().bytes().all(|b| b.is_ascii_digit()));
            assert_eq!(valid_for.as_secs(), 900);
            let rendered = Templates::new().unwrap().render(&mails[0]).unwrap();
            assert!(rendered.text.contains(code.expose()));
            // Korean by default (AIDLC_DEFAULT_LOCALE=ko).
            assert!(rendered.text.contains("15분"), "{}", rendered.text);
        }
        other => panic!("expected a verification code, got {other:?}"),
    }
    app.stop().await;
}

async fn email_is_normalised_before_it_is_stored_and_mailed(backend: Backend) {
    let app = TestApp::spawn(backend).await;

    let response = app
        .register("  Test@Example.COM ", PASSWORD, "Normal Person")
        .await;
    expect_json(response, StatusCode::ACCEPTED).await;
    let mails = app.mailbox().all();
    assert_eq!(mails.len(), 1);
    assert_eq!(
        mails[0].to.as_str(),
        "test@example.com",
        "mail goes to the normalised address"
    );

    let code = app
        .mailbox()
        .last_code_for("test@example.com", CodePurpose::Registration);
    let session = expect_session(app.verify_registration(" TEST@example.com", &code).await).await;
    assert_eq!(session["user"]["email"], "test@example.com");

    // The lower-case spelling is the same account: it gets the "already exists" notice.
    app.advance(61);
    expect_json(
        app.register("test@example.com", "another password", "Someone")
            .await,
        StatusCode::ACCEPTED,
    )
    .await;
    assert_eq!(app.mailbox().notices_for("test@example.com"), 1);
    assert_eq!(
        app.mailbox()
            .codes_for("test@example.com", CodePurpose::Registration)
            .len(),
        1
    );
    assert_eq!(app.db().count_users().await, 1);

    // And any spelling logs in.
    let session = expect_session(app.login_password("Test@EXAMPLE.com  ", PASSWORD).await).await;
    assert_eq!(session["user"]["email"], "test@example.com");
    assert_eq!(session["user"]["full_name"], "Normal Person");

    // Compatibility forms (full-width letters) are folded too (NFKC).
    app.advance(61);
    expect_json(
        app.register("ＴＥＳＴ@example.com", PASSWORD, "Wide").await,
        StatusCode::ACCEPTED,
    )
    .await;
    assert_eq!(app.mailbox().notices_for("test@example.com"), 2);
    assert_eq!(app.db().count_users().await, 1);
    app.stop().await;
}

async fn verified_code_cannot_be_used_a_second_time(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let email = unique_email("twice");
    let code = app.register_pending(&email, PASSWORD, "Twice").await;
    expect_session(app.verify_registration(&email, &code).await).await;
    expect_invalid_code(app.verify_registration(&email, &code).await).await;
    app.stop().await;
}

async fn verify_for_an_address_that_never_registered_is_rejected(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let body = expect_invalid_code(
        app.verify_registration(&unique_email("nobody"), "123456")
            .await,
    )
    .await;
    assert_eq!(
        body["error"]["message"],
        "the code is invalid or has expired"
    );

    // A real code for one address does not verify another.
    let alice = unique_email("alice");
    let code = app.register_pending(&alice, PASSWORD, "Alice").await;
    expect_invalid_code(
        app.verify_registration(&unique_email("mallory"), &code)
            .await,
    )
    .await;
    expect_session(app.verify_registration(&alice, &code).await).await;
    app.stop().await;
}

async fn concurrent_verifications_of_one_code_start_exactly_one_session(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let email = unique_email("race");
    let code = app.register_pending(&email, PASSWORD, "Racer").await;

    let attempts = (0..10).map(|_| app.verify_registration(&email, &code));
    let responses = join_all(attempts).await;
    let mut ok = 0;
    for response in responses {
        let (status, body) = status_and_json(response).await;
        match status {
            StatusCode::OK => ok += 1,
            StatusCode::BAD_REQUEST => assert_eq!(body["error"]["code"], "invalid_code", "{body}"),
            other => panic!("unexpected {other}: {body}"),
        }
    }
    assert_eq!(ok, 1, "exactly one of ten concurrent verifications wins");
    app.stop().await;
}

async fn register_answers_identically_for_new_pending_and_active_addresses(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let pending = unique_email("pending");
    let active = unique_email("active");
    app.register_pending(&pending, PASSWORD, "Pending").await;
    app.register_active(&active, PASSWORD, "Active").await;
    let mails_before = app.mailbox().len();

    app.advance(61);
    let fresh = unique_email("fresh");
    let new_answer = status_and_json(app.register(&fresh, PASSWORD, "Fresh").await).await;
    let pending_answer =
        status_and_json(app.register(&pending, PASSWORD, "Pending Again").await).await;
    let active_answer = status_and_json(
        app.register(&active, "different password", "Intruder")
            .await,
    )
    .await;

    assert_eq!(new_answer.0, StatusCode::ACCEPTED);
    assert_eq!(new_answer.1, json!({ "message": REGISTER_ACCEPTED }));
    assert_eq!(
        pending_answer, new_answer,
        "pending address answers like a new one"
    );
    assert_eq!(
        active_answer, new_answer,
        "active address answers like a new one"
    );

    // Mail tells the truth to the address owner only.
    assert_eq!(app.mailbox().len(), mails_before + 3);
    assert_eq!(
        app.mailbox()
            .codes_for(&fresh, CodePurpose::Registration)
            .len(),
        1
    );
    assert_eq!(
        app.mailbox()
            .codes_for(&pending, CodePurpose::Registration)
            .len(),
        2
    );
    assert_eq!(
        app.mailbox()
            .codes_for(&active, CodePurpose::Registration)
            .len(),
        1,
        "no new code for an active account"
    );
    assert_eq!(app.mailbox().notices_for(&active), 1);
    assert_eq!(app.mailbox().notices_for(&pending), 0);
    assert_eq!(app.mailbox().notices_for(&fresh), 0);

    // The active account is untouched.
    let session = expect_session(app.login_password(&active, PASSWORD).await).await;
    assert_eq!(session["user"]["full_name"], "Active");
    expect_error(
        app.login_password(&active, "different password").await,
        StatusCode::UNAUTHORIZED,
        "invalid_credentials",
    )
    .await;
    assert_eq!(app.db().count_users().await, 3);
    app.stop().await;
}
