//! Mail is written in the language the client asked for at registration (`Accept-Language`),
//! stored with the account and used for every later mail; the default otherwise.

use aidlc_auth::domain::{CodePurpose, Locale};
use aidlc_auth::email::Message;
use reqwest::StatusCode;
use serde_json::json;

use crate::helpers::{Backend, PASSWORD, TestApp, backend_tests, expect_json, unique_email};

backend_tests!(
    the_registration_language_is_kept_for_every_later_mail,
    without_a_supported_language_mail_is_in_the_default_korean,
);

async fn register_with_language(app: &TestApp, email: &str, accept_language: &str) {
    let response = app
        .client
        .post(app.url("/api/auth/register"))
        .header("Accept-Language", accept_language)
        .json(&json!({ "email": email, "password": PASSWORD, "full_name": "Lang" }))
        .send()
        .await
        .expect("POST /api/auth/register");
    assert_eq!(response.status(), StatusCode::ACCEPTED);
}

/// The language of each mail sent to `email`, oldest first.
fn languages(app: &TestApp, email: &str) -> Vec<Locale> {
    app.mailbox()
        .sent_to(email)
        .into_iter()
        .map(|mail| mail.locale)
        .collect()
}

async fn the_registration_language_is_kept_for_every_later_mail(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let email = unique_email("english");
    register_with_language(&app, &email, "en-US,en;q=0.9,ko;q=0.5").await;
    let code = app
        .mailbox()
        .last_code_for(&email, CodePurpose::Registration);
    crate::helpers::expect_session(app.verify_registration(&email, &code).await).await;

    // Later requests carry no language: the account's own is used.
    expect_json(app.request_login_code(&email).await, StatusCode::ACCEPTED).await;
    app.advance(61);
    register_with_language(&app, &email, "ko-KR").await;
    let sent = app.mailbox().sent_to(&email);
    assert!(
        matches!(
            sent.last().map(|m| &m.message),
            Some(Message::AccountAlreadyExists)
        ),
        "the last mail is the notice: {sent:?}"
    );
    assert_eq!(
        languages(&app, &email),
        vec![Locale::En, Locale::En, Locale::En],
        "registration code, login code, and the notice to the owner"
    );
    app.stop().await;
}

async fn without_a_supported_language_mail_is_in_the_default_korean(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let plain = unique_email("plain");
    app.register_pending(&plain, PASSWORD, "Plain").await;
    let french = unique_email("french");
    register_with_language(&app, &french, "fr-FR, de;q=0.8").await;
    assert_eq!(languages(&app, &plain), vec![Locale::Ko]);
    assert_eq!(languages(&app, &french), vec![Locale::Ko]);

    // Registering the pending address again in English makes English the account's language.
    app.advance(61);
    register_with_language(&app, &plain, "en").await;
    let code = app
        .mailbox()
        .last_code_for(&plain, CodePurpose::Registration);
    crate::helpers::expect_session(app.verify_registration(&plain, &code).await).await;
    expect_json(app.request_login_code(&plain).await, StatusCode::ACCEPTED).await;
    assert_eq!(
        languages(&app, &plain),
        vec![Locale::Ko, Locale::En, Locale::En]
    );
    app.stop().await;
}
