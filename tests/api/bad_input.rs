//! Requests the service refuses at the edge, each with its status and error code. Nothing
//! here reaches a store, so SQLite is enough.

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::helpers::{Backend, PASSWORD, TestApp, expect_error, expect_json, unique_email};

const JSON: Option<&str> = Some("application/json");

async fn spawn() -> TestApp {
    TestApp::spawn(Backend::Sqlite).await
}

fn registration(email: &str, password: &str, full_name: &str) -> Value {
    json!({ "email": email, "password": password, "full_name": full_name })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_json_is_rejected_with_400() {
    let app = spawn().await;
    for (path, body) in [
        ("/api/auth/register", r#"{"email": "a@example.com","#),
        ("/api/auth/login", "not json at all"),
        (
            "/api/auth/verify-registration",
            r#"{"email": "a@example.com" "verification_code": "123456"}"#,
        ),
        ("/api/auth/verify-login", ""),
        ("/api/auth/resend-code", "{'email': 'a@example.com'}"),
    ] {
        let response = app.post_raw(path, JSON, body).await;
        let body = expect_error(response, StatusCode::BAD_REQUEST, "malformed_json").await;
        assert_eq!(
            body["error"]["message"], "the body is not valid JSON",
            "{path}"
        );
    }
    assert_eq!(app.mailbox().len(), 0);
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_or_missing_content_type_is_rejected_with_415() {
    let app = spawn().await;
    let body = registration("ct@example.com", PASSWORD, "Content Type").to_string();
    for content_type in [
        Some("text/plain"),
        Some("application/x-www-form-urlencoded"),
        None,
    ] {
        let response = app
            .post_raw("/api/auth/register", content_type, body.clone())
            .await;
        expect_error(
            response,
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
        )
        .await;
    }
    assert_eq!(app.db().count_users().await, 0);
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_field_is_rejected_and_cannot_smuggle_a_status() {
    let app = spawn().await;
    let email = unique_email("smuggler");
    let body = json!({ "email": email, "password": PASSWORD, "full_name": "Smuggler", "status": "active" });
    let error = expect_error(
        app.post_json("/api/auth/register", &body).await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "invalid_body",
    )
    .await;
    assert!(
        error["error"]["message"]
            .as_str()
            .unwrap()
            .contains("status"),
        "names the field: {error}"
    );
    assert_eq!(app.db().count_users().await, 0, "nothing was written");
    assert_eq!(app.mailbox().len(), 0, "nothing was sent");

    for (path, body) in [
        (
            "/api/auth/login",
            json!({ "email": email, "password": PASSWORD, "remember_me": true }),
        ),
        (
            "/api/auth/verify-registration",
            json!({ "email": email, "verification_code": "123456", "user_id": 1 }),
        ),
        (
            "/api/auth/verify-login",
            json!({ "email": email, "verification_code": "123456", "admin": true }),
        ),
        (
            "/api/auth/resend-code",
            json!({ "email": email, "purpose": "login", "to": "attacker@example.com" }),
        ),
    ] {
        expect_error(
            app.post_json(path, &body).await,
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_body",
        )
        .await;
    }
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_or_mistyped_fields_are_rejected_with_422_invalid_body() {
    let app = spawn().await;
    for (path, body) in [
        (
            "/api/auth/register",
            json!({ "email": "a@example.com", "password": PASSWORD }),
        ),
        (
            "/api/auth/register",
            json!({ "password": PASSWORD, "full_name": "No Email" }),
        ),
        (
            "/api/auth/register",
            json!({ "email": 42, "password": PASSWORD, "full_name": "Number" }),
        ),
        (
            "/api/auth/register",
            json!({ "email": "a@example.com", "password": null, "full_name": "Null" }),
        ),
        ("/api/auth/register", json!([])),
        ("/api/auth/login", json!({})),
        (
            "/api/auth/login",
            json!({ "email": "a@example.com", "password": 12345678 }),
        ),
        (
            "/api/auth/verify-registration",
            json!({ "email": "a@example.com" }),
        ),
        (
            "/api/auth/verify-login",
            json!({ "email": "a@example.com", "verification_code": 123456 }),
        ),
        ("/api/auth/resend-code", json!({ "email": "a@example.com" })),
        (
            "/api/auth/resend-code",
            json!({ "email": "a@example.com", "purpose": "password_reset" }),
        ),
    ] {
        let response = app.post_json(path, &body).await;
        let error = expect_error(response, StatusCode::UNPROCESSABLE_ENTITY, "invalid_body").await;
        assert!(
            !error["error"]["message"].as_str().unwrap().is_empty(),
            "{path} {body}"
        );
    }
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_email_is_rejected_with_422_on_every_endpoint() {
    let app = spawn().await;
    let bad = [
        "",
        "   ",
        "plain",
        "@example.com",
        "a@",
        "a@localhost",
        "a..b@example.com",
        "a b@example.com",
        "<a>@example.com",
    ];
    for email in bad {
        for (path, body) in [
            (
                "/api/auth/register",
                registration(email, PASSWORD, "Bad Email"),
            ),
            (
                "/api/auth/login",
                json!({ "email": email, "password": PASSWORD }),
            ),
            ("/api/auth/login", json!({ "email": email })),
            (
                "/api/auth/verify-registration",
                json!({ "email": email, "verification_code": "123456" }),
            ),
            (
                "/api/auth/verify-login",
                json!({ "email": email, "verification_code": "123456" }),
            ),
            (
                "/api/auth/resend-code",
                json!({ "email": email, "purpose": "registration" }),
            ),
        ] {
            let response = app.post_json(path, &body).await;
            assert_eq!(
                response.status(),
                StatusCode::UNPROCESSABLE_ENTITY,
                "{path} {email:?}"
            );
            expect_error(response, StatusCode::UNPROCESSABLE_ENTITY, "invalid_email").await;
        }
    }
    let too_long = format!("{}@example.com", "a".repeat(65));
    expect_error(
        app.register(&too_long, PASSWORD, "Long").await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "invalid_email",
    )
    .await;
    assert_eq!(app.db().count_users().await, 0);
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn passwords_outside_8_to_128_characters_are_rejected_with_422() {
    let app = spawn().await;
    for (password, code) in [
        ("", "password_too_short"),
        ("short12", "password_too_short"),
        (&"x".repeat(129), "password_too_long"),
    ] {
        let body = expect_error(
            app.register(&unique_email("pw"), password, "Password Tester")
                .await,
            StatusCode::UNPROCESSABLE_ENTITY,
            code,
        )
        .await;
        assert!(
            body["error"]["message"]
                .as_str()
                .unwrap()
                .contains("password"),
            "{body}"
        );
    }
    assert_eq!(app.db().count_users().await, 0);

    // The limits count characters, and both ends are allowed.
    for password in ["8 chars!", "비밀번호비밀번호", &"x".repeat(128)] {
        expect_json(
            app.register(&unique_email("pw"), password, "Password Tester")
                .await,
            StatusCode::ACCEPTED,
        )
        .await;
    }
    assert_eq!(app.db().count_users().await, 3);
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_full_names_are_rejected_with_422() {
    let app = spawn().await;
    for name in [
        "",
        "   ",
        &"x".repeat(101),
        "Eve\r\nBcc: all@example.com",
        "tab\there",
        "nul\u{0}byte",
    ] {
        expect_error(
            app.register(&unique_email("name"), PASSWORD, name).await,
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_full_name",
        )
        .await;
    }
    assert_eq!(app.db().count_users().await, 0);

    let email = unique_email("name");
    expect_json(
        app.register(&email, PASSWORD, &"김".repeat(100)).await,
        StatusCode::ACCEPTED,
    )
    .await;
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_code_format_is_rejected_with_422() {
    let app = spawn().await;
    let email = unique_email("format");
    let code = app.register_pending(&email, PASSWORD, "Format").await;
    for bad in ["", "12345", "1234567", "12a456", "１２３４５６", "12 456"] {
        for path in ["/api/auth/verify-registration", "/api/auth/verify-login"] {
            let response = app
                .post_json(path, &json!({ "email": email, "verification_code": bad }))
                .await;
            expect_error(
                response,
                StatusCode::UNPROCESSABLE_ENTITY,
                "invalid_code_format",
            )
            .await;
        }
    }
    // Format errors are not wrong tries: twelve of them later, the code still works.
    crate::helpers::expect_session(app.verify_registration(&email, &code).await).await;
    app.stop().await;
}

/// Posts a large registration body. The server answers 413 to an oversized one from the
/// Content-Length alone and closes without reading the body; the kernel may then reset the
/// connection before the client has read that answer, or the client may reuse the closed
/// connection for its next request (TCP races, not server errors). A failed send is retried.
async fn post_large(app: &TestApp, body: String) -> reqwest::Response {
    let mut last_error = None;
    for _ in 0..5 {
        let sent = app
            .client
            .post(app.url("/api/auth/register"))
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(body.clone())
            .send()
            .await;
        match sent {
            Ok(response) => return response,
            Err(e) => last_error = Some(e),
        }
    }
    panic!("no answer to a large body after 5 tries: {last_error:?}");
}

/// A registration body of exactly `len` bytes (the name fills it up).
fn registration_of_size(len: usize) -> String {
    let empty = registration("big@example.com", PASSWORD, "").to_string();
    let body =
        registration("big@example.com", PASSWORD, &"x".repeat(len - empty.len())).to_string();
    assert_eq!(body.len(), len);
    body
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn body_over_64_kib_is_rejected_with_413() {
    let app = spawn().await;
    let response = post_large(&app, registration_of_size(64 * 1024 + 1)).await;
    expect_error(response, StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large").await;
    let huge = registration("big@example.com", PASSWORD, &"x".repeat(1024 * 1024));
    let response = post_large(&app, huge.to_string()).await;
    expect_error(response, StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large").await;

    // Exactly 64 KiB is read (and then refused for its over-long name).
    let response = post_large(&app, registration_of_size(64 * 1024)).await;
    expect_error(
        response,
        StatusCode::UNPROCESSABLE_ENTITY,
        "invalid_full_name",
    )
    .await;
    assert_eq!(app.db().count_users().await, 0);
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_content_type_with_charset_is_accepted() {
    let app = spawn().await;
    let email = unique_email("charset");
    let body = registration(&email, PASSWORD, "Charset").to_string();
    let response = app
        .post_raw(
            "/api/auth/register",
            Some("application/json; charset=utf-8"),
            body,
        )
        .await;
    expect_json(response, StatusCode::ACCEPTED).await;
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_route_is_a_json_404() {
    let app = spawn().await;
    for path in [
        "/",
        "/api/auth/unknown",
        "/api/auth/register/extra",
        "/health/deep",
    ] {
        let body = expect_error(app.get(path).await, StatusCode::NOT_FOUND, "not_found").await;
        assert_eq!(body["error"]["message"], "no such resource");
    }
    expect_error(
        app.post_json("/api/auth/signup", &json!({})).await,
        StatusCode::NOT_FOUND,
        "not_found",
    )
    .await;
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_method_is_a_json_405() {
    let app = spawn().await;
    expect_error(
        app.get("/api/auth/register").await,
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
    )
    .await;
    let response = app
        .client
        .post(app.url("/api/auth/me"))
        .send()
        .await
        .unwrap();
    expect_error(
        response,
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
    )
    .await;
    app.stop().await;
}
