//! The audit trail: rows for every security event, free of secrets, and the owner's paged view.

use std::time::Duration;

use aidlc_auth::domain::CodePurpose;
use reqwest::StatusCode;

use crate::helpers::{
    Backend, PASSWORD, TestApp, TestEnv, backend_tests, expect_error, expect_json, expect_session,
    refresh_token, token, unique_email, wrong_code,
};

backend_tests!(
    every_security_event_is_recorded_without_a_secret,
    owners_page_through_their_own_events_newest_first,
    events_past_their_retention_are_swept,
);

const DAY: u64 = 86_400;

const NEW_PASSWORD: &str = "audited new passphrase";
const THIRD_PASSWORD: &str = "a third audited phrase";

async fn every_security_event_is_recorded_without_a_secret(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let email = unique_email("audited");
    let mut secrets: Vec<String> = vec![
        PASSWORD.to_owned(),
        NEW_PASSWORD.to_owned(),
        THIRD_PASSWORD.to_owned(),
    ];

    let registration_code = app
        .register_pending(&email, PASSWORD, "Careful Reader")
        .await;
    expect_error(
        app.verify_registration(&email, &wrong_code(&registration_code))
            .await,
        StatusCode::BAD_REQUEST,
        "invalid_code",
    )
    .await;
    let first = expect_session(app.verify_registration(&email, &registration_code).await).await;
    secrets.push(registration_code);
    expect_error(
        app.login_password(&email, "a wrong password").await,
        StatusCode::UNAUTHORIZED,
        "invalid_credentials",
    )
    .await;
    let second = expect_session(
        app.login_password_as(&email, PASSWORD, "AuditAgent/1.0")
            .await,
    )
    .await;

    // Refresh-token reuse: the retired token presented again after the grace window.
    let rotated = expect_session(app.refresh(&refresh_token(&second)).await).await;
    app.advance(30);
    expect_error(
        app.refresh(&refresh_token(&second)).await,
        StatusCode::UNAUTHORIZED,
        "invalid_refresh_token",
    )
    .await;
    secrets.extend([refresh_token(&second), refresh_token(&rotated)]);

    expect_json(
        app.request_password_reset(&email).await,
        StatusCode::ACCEPTED,
    )
    .await;
    let reset = app
        .mailbox()
        .last_code_for(&email, CodePurpose::PasswordReset);
    expect_json(
        app.confirm_password_reset(&email, &reset, NEW_PASSWORD)
            .await,
        StatusCode::OK,
    )
    .await;
    secrets.push(reset);
    let third = expect_session(app.login_password(&email, NEW_PASSWORD).await).await;
    expect_error(
        app.change_password(&token(&third), "not it at all", THIRD_PASSWORD)
            .await,
        StatusCode::BAD_REQUEST,
        "invalid_current_password",
    )
    .await;
    expect_json(
        app.change_password(&token(&third), NEW_PASSWORD, THIRD_PASSWORD)
            .await,
        StatusCode::OK,
    )
    .await;
    let fourth = expect_session(app.login_password(&email, THIRD_PASSWORD).await).await;
    let session = fourth["session_id"].as_str().unwrap_or_default().to_owned();
    assert_eq!(
        app.delete_session(&token(&third), &session).await.status(),
        StatusCode::NO_CONTENT
    );
    expect_json(app.logout_all(&token(&third), None).await, StatusCode::OK).await;
    let fifth = expect_session(app.login_password(&email, THIRD_PASSWORD).await).await;
    assert_eq!(
        app.logout(&token(&fifth)).await.status(),
        StatusCode::NO_CONTENT
    );
    // An address without an account: recorded without a user.
    expect_error(
        app.login_password(&unique_email("stranger"), PASSWORD)
            .await,
        StatusCode::UNAUTHORIZED,
        "invalid_credentials",
    )
    .await;
    secrets.extend(
        [first, third, fourth, fifth]
            .iter()
            .flat_map(|s| [token(s), refresh_token(s)]),
    );

    let rows = app.db().auth_event_rows().await;
    let seen: Vec<(&str, &str)> = rows
        .iter()
        .map(|r| (r.event.as_str(), r.outcome.as_str()))
        .collect();
    for expected in [
        ("registration", "success"),
        ("registration_verified", "failure"),
        ("registration_verified", "success"),
        ("password_login", "failure"),
        ("password_login", "success"),
        ("refresh_token_reuse", "failure"),
        ("password_reset_requested", "success"),
        ("password_reset", "success"),
        ("password_changed", "failure"),
        ("password_changed", "success"),
        ("session_revoked", "success"),
        ("logout_all", "success"),
        ("logout", "success"),
    ] {
        assert!(
            seen.contains(&expected),
            "{expected:?} missing from {seen:?}"
        );
    }
    let strangers = rows.iter().filter(|r| r.user_id.is_none()).count();
    assert_eq!(
        strangers, 1,
        "only the unknown address has no user: {rows:?}"
    );
    for row in &rows {
        assert_eq!(row.ip.as_deref(), Some("127.0.0.1"), "{row:?}");
        assert!(
            row.request_id.as_deref().is_some_and(|id| !id.is_empty()),
            "{row:?}"
        );
        let raw = row.raw();
        for secret in &secrets {
            assert!(
                !raw.contains(secret.as_str()),
                "a secret in an audit row: {raw}"
            );
        }
    }
    assert!(
        rows.iter()
            .any(|r| r.user_agent.as_deref() == Some("AuditAgent/1.0")),
        "{rows:?}"
    );
    app.stop().await;
}

async fn owners_page_through_their_own_events_newest_first(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let email = unique_email("pager");
    let owner = token(&app.register_active(&email, PASSWORD, "Pager").await);
    for _ in 0..5 {
        app.advance(1);
        expect_error(
            app.login_password(&email, "a wrong password").await,
            StatusCode::UNAUTHORIZED,
            "invalid_credentials",
        )
        .await;
    }
    // Two events in the same microsecond still page apart (the id breaks the tie).
    expect_error(
        app.login_password(&email, "a wrong password").await,
        StatusCode::UNAUTHORIZED,
        "invalid_credentials",
    )
    .await;
    let other = token(
        &app.register_active(&unique_email("other"), PASSWORD, "Other")
            .await,
    );
    // registration + verified + 6 failed logins = 8 events of the owner's.
    let mut ids = Vec::new();
    let mut times = Vec::new();
    let mut query = "?limit=3".to_owned();
    for page in 0..10 {
        let body = expect_json(app.events(&owner, &query).await, StatusCode::OK).await;
        let events = body["events"].as_array().expect("events").clone();
        assert!(events.len() <= 3, "{body}");
        for event in &events {
            ids.push(event["id"].as_str().unwrap_or_default().to_owned());
            times.push(event["created_at"].as_str().unwrap_or_default().to_owned());
            assert_eq!(event["ip"], "127.0.0.1", "{event}");
            assert!(event.get("user_id").is_none(), "{event}");
        }
        match body["next_cursor"].as_str() {
            Some(cursor) => query = format!("?limit=3&cursor={cursor}"),
            None => {
                assert!(page >= 2, "three pages of 3, 3 and 2");
                break;
            }
        }
    }
    assert_eq!(ids.len(), 8, "{ids:?}");
    let mut unique = ids.clone();
    unique.sort();
    unique.dedup();
    assert_eq!(unique.len(), 8, "no event twice: {ids:?}");
    let mut newest_first = times.clone();
    newest_first.sort_by(|a, b| b.cmp(a));
    assert_eq!(times, newest_first);

    let first = expect_json(app.events(&owner, "").await, StatusCode::OK).await;
    assert_eq!(first["events"][0]["event"], "password_login");
    assert_eq!(first["events"][0]["outcome"], "failure");
    assert!(
        first["next_cursor"].is_null(),
        "all 8 fit the default page: {first}"
    );
    let theirs = expect_json(app.events(&other, "?limit=1000").await, StatusCode::OK).await;
    let theirs = theirs["events"].as_array().expect("events").len();
    assert_eq!(
        theirs, 2,
        "only the other account's own registration and verification"
    );

    for bad in ["?cursor=garbage", "?limit=ten", "?sort=asc"] {
        expect_error(
            app.events(&owner, bad).await,
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_query",
        )
        .await;
    }
    expect_error(
        app.events("nope", "").await,
        StatusCode::UNAUTHORIZED,
        "unauthorized",
    )
    .await;
    app.stop().await;
}

async fn events_past_their_retention_are_swept(backend: Backend) {
    let mut env = TestEnv::new(backend).await;
    env.settings.sweep_interval = Duration::from_secs(1);
    env.settings.auth_event_retention_days = 2;
    let app = env.spawn().await;
    let email = unique_email("retained");
    app.register_active(&email, PASSWORD, "Retained").await;
    app.advance(DAY + 1);
    expect_session(app.login_password(&email, PASSWORD).await).await;
    assert_eq!(app.db().auth_event_rows().await.len(), 3);

    // Past two days for the first two events, not for the login.
    app.advance(DAY);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let rows = app.db().auth_event_rows().await;
        if rows.len() == 1 {
            assert_eq!(rows[0].event, "password_login", "{rows:?}");
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "not swept within 10 s: {rows:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    app.stop().await;
}
