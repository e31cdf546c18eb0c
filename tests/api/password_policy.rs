//! The password policy, as every endpoint that sets a password applies it.

use aidlc_auth::domain::CodePurpose;
use reqwest::StatusCode;

use crate::helpers::{
    Backend, PASSWORD, TestApp, TestEnv, backend_tests, expect_error, expect_json, token,
    unique_email,
};

backend_tests!(
    registration_refuses_each_rule_with_its_code_and_accepts_the_rest,
    reset_and_change_apply_the_same_rules,
    the_minimum_length_is_configurable,
);

/// Registers `password` for `email`/`name`, expecting 422 with `code`; returns the message.
async fn refused(app: &TestApp, email: &str, password: &str, name: &str, code: &str) -> String {
    let body = expect_error(
        app.register(email, password, name).await,
        StatusCode::UNPROCESSABLE_ENTITY,
        code,
    )
    .await;
    body["error"]["message"].as_str().unwrap_or("").to_owned()
}

async fn registration_refuses_each_rule_with_its_code_and_accepts_the_rest(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let email = unique_email("rules");

    // The guide's password: a clear reason, and no account.
    let message = refused(&app, &email, "pass123", "Test User", "password_too_short").await;
    assert!(message.contains("at least 8 characters"), "{message}");
    refused(
        &app,
        &email,
        &"x".repeat(129),
        "Test User",
        "password_too_long",
    )
    .await;
    for common in [
        "password123",
        "Password123",
        "iloveyou",
        "qwertyuiop",
        "12345678",
    ] {
        let message = refused(&app, &email, common, "Test User", "password_too_common").await;
        assert!(message.contains("too common"), "{common}: {message}");
    }
    let personal = "kim.chulsoo@example.com";
    for (password, name, code) in [
        ("kimchulsoo!", "Lee Younghee", "password_contains_email"),
        (
            "my KIM.CHULSOO pw",
            "Lee Younghee",
            "password_contains_email",
        ),
        ("leeyounghee", "Lee Younghee", "password_contains_name"),
        ("Younghee1988!!", "Lee Younghee", "password_contains_name"),
    ] {
        let message = refused(&app, personal, password, name, code).await;
        assert!(message.contains("must not be built from your"), "{message}");
    }
    assert_eq!(
        app.db().count_users().await,
        0,
        "nothing refused was stored"
    );

    // No composition rules: any characters, no digit or symbol needed; NFKC makes composed and
    // decomposed forms one password.
    for (i, password) in [
        "alllowercase words",
        "비밀번호비밀번호",
        "😀😀😀😀😀😀😀😀",
        "younghee likes green tea",
    ]
    .into_iter()
    .enumerate()
    {
        let email = unique_email(&format!("ok{i}"));
        expect_json(
            app.register(&email, password, "Lee Younghee").await,
            StatusCode::ACCEPTED,
        )
        .await;
    }
    let email = unique_email("nfkc");
    app.register_active(&email, "caf\u{e9} au lait!", "Nfkc")
        .await;
    let login = app.login_password(&email, "cafe\u{301} au lait!").await;
    expect_json(login, StatusCode::OK).await;
    app.stop().await;
}

async fn reset_and_change_apply_the_same_rules(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let email = unique_email("samerules");
    let session = app.register_active(&email, PASSWORD, "Lee Younghee").await;
    let bearer = token(&session);
    for (password, code) in [
        ("pass123", "password_too_short"),
        ("password123", "password_too_common"),
        ("younghee2024", "password_contains_name"),
    ] {
        expect_error(
            app.change_password(&bearer, PASSWORD, password).await,
            StatusCode::UNPROCESSABLE_ENTITY,
            code,
        )
        .await;
    }
    let local = email.split('@').next().unwrap_or_default().to_owned();
    expect_error(
        app.change_password(&bearer, PASSWORD, &format!("{local}!!"))
            .await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "password_contains_email",
    )
    .await;

    expect_json(
        app.request_password_reset(&email).await,
        StatusCode::ACCEPTED,
    )
    .await;
    let code = app
        .mailbox()
        .last_code_for(&email, CodePurpose::PasswordReset);
    for (password, rule) in [
        ("pass123", "password_too_short"),
        ("password123", "password_too_common"),
        ("Younghee!!2024", "password_contains_name"),
    ] {
        expect_error(
            app.confirm_password_reset(&email, &code, password).await,
            StatusCode::UNPROCESSABLE_ENTITY,
            rule,
        )
        .await;
    }
    // A refused password does not spend the code, and the old password still works.
    expect_json(app.login_password(&email, PASSWORD).await, StatusCode::OK).await;
    expect_json(
        app.confirm_password_reset(&email, &code, "a fresh passphrase")
            .await,
        StatusCode::OK,
    )
    .await;
    app.stop().await;
}

async fn the_minimum_length_is_configurable(backend: Backend) {
    let mut env = TestEnv::new(backend).await;
    env.settings.password_min_length = 15;
    let app = env.spawn().await;
    let message = refused(
        &app,
        &unique_email("fifteen"),
        "fourteen chars",
        "Test User",
        "password_too_short",
    )
    .await;
    assert!(message.contains("at least 15 characters"), "{message}");
    expect_json(
        app.register(&unique_email("fifteen"), "fifteen chars!!", "Test User")
            .await,
        StatusCode::ACCEPTED,
    )
    .await;
    app.stop().await;
}
