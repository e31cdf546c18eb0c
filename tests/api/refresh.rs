//! Refresh tokens: rotation at every use, a short grace for the token just retired, reuse
//! detection that ends the whole session, and no forks under concurrency.

use futures::future::join_all;
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::helpers::{
    Backend, PASSWORD, REDIS_URL, TestApp, backend_tests, expect_error, expect_json,
    expect_session, jwt_claims, refresh_token, session_id, status_and_json, token, unique_email,
};

backend_tests!(
    refresh_rotates_the_pair,
    replay_of_the_previous_refresh_token_within_grace_returns_the_same_successor,
    reuse_after_the_grace_window_revokes_the_whole_session,
    reuse_of_an_older_generation_revokes_even_within_grace,
    concurrent_refreshes_never_fork_the_session,
    unknown_or_malformed_refresh_tokens_are_rejected,
);

/// How long the refresh token just retired still yields its successor (default).
const GRACE: u64 = 10;

async fn expect_invalid_refresh(app: &TestApp, refresh: &str) {
    expect_error(
        app.refresh(refresh).await,
        StatusCode::UNAUTHORIZED,
        "invalid_refresh_token",
    )
    .await;
}

async fn expect_unauthorized(app: &TestApp, access: &str) {
    expect_error(
        app.me(access).await,
        StatusCode::UNAUTHORIZED,
        "unauthorized",
    )
    .await;
}

/// The caller's live sessions, as listed by `GET /api/auth/sessions`.
async fn live_sessions(app: &TestApp, access: &str) -> Vec<Value> {
    let body = expect_json(app.sessions(access).await, StatusCode::OK).await;
    body["sessions"].as_array().expect("sessions").clone()
}

async fn refresh_rotates_the_pair(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let email = unique_email("rotate");
    let first = app.register_active(&email, PASSWORD, "Rotate").await;

    app.advance(5);
    let second = expect_session(app.refresh(&refresh_token(&first)).await).await;
    assert_ne!(refresh_token(&second), refresh_token(&first));
    assert_ne!(token(&second), token(&first));
    assert_eq!(session_id(&second), session_id(&first), "same session");
    assert_eq!(second["user"], first["user"], "same account");
    assert_eq!(
        second["refresh_token_expires_at"], first["refresh_token_expires_at"],
        "the session's absolute end does not move"
    );
    let claims = jwt_claims(&token(&second));
    assert_eq!(claims["sid"], first["session_id"]);
    assert_eq!(claims["sub"], first["user"]["id"]);
    assert_eq!(
        claims["iat"].as_i64().unwrap(),
        jwt_claims(&token(&first))["iat"].as_i64().unwrap() + 5,
        "a fresh access token"
    );

    let me = expect_json(app.me(&token(&second)).await, StatusCode::OK).await;
    assert_eq!(me["email"], email);

    // The new refresh token rotates in turn.
    let third = expect_session(app.refresh(&refresh_token(&second)).await).await;
    assert_ne!(refresh_token(&third), refresh_token(&second));
    assert_ne!(refresh_token(&third), refresh_token(&first));
    assert_eq!(session_id(&third), session_id(&first));
    assert_eq!(live_sessions(&app, &token(&third)).await.len(), 1);
    app.stop().await;
}

async fn replay_of_the_previous_refresh_token_within_grace_returns_the_same_successor(
    backend: Backend,
) {
    let app = TestApp::spawn(backend).await;
    let first = app
        .register_active(&unique_email("replay"), PASSWORD, "Replay")
        .await;
    let second = expect_session(app.refresh(&refresh_token(&first)).await).await;

    app.advance(GRACE - 1);
    let replayed = expect_session(app.refresh(&refresh_token(&first)).await).await;
    assert_eq!(
        refresh_token(&replayed),
        refresh_token(&second),
        "the same successor comes back"
    );
    assert_eq!(session_id(&replayed), session_id(&first));
    assert_ne!(token(&replayed), token(&second), "a fresh access token");
    expect_json(app.me(&token(&replayed)).await, StatusCode::OK).await;

    // Nothing was revoked: both access tokens work and the successor rotates normally.
    expect_json(app.me(&token(&second)).await, StatusCode::OK).await;
    let third = expect_session(app.refresh(&refresh_token(&second)).await).await;
    assert_ne!(refresh_token(&third), refresh_token(&second));
    assert_eq!(session_id(&third), session_id(&first));
    expect_json(app.me(&token(&third)).await, StatusCode::OK).await;
    assert_eq!(live_sessions(&app, &token(&third)).await.len(), 1);
    app.stop().await;
}

async fn reuse_after_the_grace_window_revokes_the_whole_session(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let email = unique_email("reuse");
    let first = app.register_active(&email, PASSWORD, "Reuse").await;
    let other = expect_session(app.login_password(&email, PASSWORD).await).await;
    let second = expect_session(app.refresh(&refresh_token(&first)).await).await;

    app.advance(GRACE + 1);
    expect_invalid_refresh(&app, &refresh_token(&first)).await;

    // The thief's use ended the whole family: the current token and its access tokens too.
    expect_invalid_refresh(&app, &refresh_token(&second)).await;
    expect_unauthorized(&app, &token(&second)).await;
    expect_unauthorized(&app, &token(&first)).await;
    // Presenting the stale token again changes nothing.
    expect_invalid_refresh(&app, &refresh_token(&first)).await;

    // The account's other session is untouched.
    let sessions = live_sessions(&app, &token(&other)).await;
    assert_eq!(sessions.len(), 1, "{sessions:?}");
    assert_eq!(sessions[0]["id"], other["session_id"]);
    expect_session(app.refresh(&refresh_token(&other)).await).await;
    app.stop().await;
}

async fn reuse_of_an_older_generation_revokes_even_within_grace(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let generation0 = app
        .register_active(&unique_email("oldgen"), PASSWORD, "Old Generation")
        .await;
    let generation1 = expect_session(app.refresh(&refresh_token(&generation0)).await).await;
    let generation2 = expect_session(app.refresh(&refresh_token(&generation1)).await).await;
    assert_eq!(session_id(&generation2), session_id(&generation0));

    // Well within the grace window, but generation 0 is not the token just retired.
    expect_invalid_refresh(&app, &refresh_token(&generation0)).await;
    expect_invalid_refresh(&app, &refresh_token(&generation2)).await;
    expect_invalid_refresh(&app, &refresh_token(&generation1)).await;
    expect_unauthorized(&app, &token(&generation2)).await;
    app.stop().await;
}

async fn concurrent_refreshes_never_fork_the_session(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let first = app
        .register_active(&unique_email("concurrent"), PASSWORD, "Concurrent")
        .await;
    let presented = refresh_token(&first);

    let answers = join_all((0..8).map(|_| async {
        let (status, body) = status_and_json(app.refresh(&presented).await).await;
        (status, body)
    }))
    .await;
    for (status, body) in &answers {
        assert_eq!(*status, StatusCode::OK, "every refresh succeeds: {body}");
    }
    let successor = refresh_token(&answers[0].1);
    for (_, body) in &answers {
        assert_eq!(
            refresh_token(body),
            successor,
            "one successor for every concurrent refresh"
        );
        assert_eq!(body["session_id"], first["session_id"]);
    }
    assert_ne!(successor, presented);

    let sessions = live_sessions(&app, &token(&answers[7].1)).await;
    assert_eq!(sessions.len(), 1, "no fork: {sessions:?}");
    assert_eq!(sessions[0]["id"], first["session_id"]);

    // The successor rotates once more, normally.
    let next = expect_session(app.refresh(&successor).await).await;
    assert_ne!(refresh_token(&next), successor);
    assert_eq!(session_id(&next), session_id(&first));
    expect_json(app.me(&token(&next)).await, StatusCode::OK).await;
    app.stop().await;
}

async fn unknown_or_malformed_refresh_tokens_are_rejected(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let session = app
        .register_active(&unique_email("badrefresh"), PASSWORD, "Bad Refresh")
        .await;

    for presented in [
        "A".repeat(43),
        "not a token".to_owned(),
        String::new(),
        format!("{}A", refresh_token(&session)),
        "x".repeat(10_000),
        token(&session),
    ] {
        expect_invalid_refresh(&app, &presented).await;
    }

    for body in [
        json!({}),
        json!({ "refresh_token": 42 }),
        json!({ "refresh_token": null }),
        json!({ "refresh_token": refresh_token(&session), "extra": true }),
    ] {
        expect_error(
            app.post_json("/api/auth/refresh", &body).await,
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_body",
        )
        .await;
    }

    // None of that touched the real session.
    expect_session(app.refresh(&refresh_token(&session)).await).await;
    app.stop().await;
}

/// Sessions live in SQL only: wiping this test's Redis keys cannot bring a revoked one back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revoked_tokens_stay_revoked_when_redis_loses_everything() {
    let app = TestApp::spawn(Backend::PostgresRedis).await;
    let email = unique_email("redisloss");
    let ended = app.register_active(&email, PASSWORD, "Redis Loss").await;
    let kept = expect_session(app.login_password(&email, PASSWORD).await).await;
    assert_eq!(
        app.logout(&token(&ended)).await.status(),
        StatusCode::NO_CONTENT
    );

    // Only this test's keys: the Redis server is shared, so no FLUSHDB.
    let prefix = app.db().redis_prefix.clone();
    assert!(
        !prefix.is_empty(),
        "the PostgreSQL + Redis backend has a prefix"
    );
    let client = redis::Client::open(REDIS_URL).expect("a Redis URL");
    let mut conn = client
        .get_multiplexed_async_connection()
        .await
        .expect("connecting to Redis at 127.0.0.1:6379");
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg(format!("{prefix}*"))
        .query_async(&mut conn)
        .await
        .expect("KEYS");
    assert!(
        !keys.is_empty(),
        "the registration left a cooldown under {prefix}"
    );
    assert!(keys.iter().all(|k| k.starts_with(&prefix)));
    let deleted: usize = redis::cmd("DEL")
        .arg(&keys)
        .query_async(&mut conn)
        .await
        .expect("DEL");
    assert!(deleted > 0);

    expect_invalid_refresh(&app, &refresh_token(&ended)).await;
    expect_unauthorized(&app, &token(&ended)).await;
    let body = expect_json(app.introspect(&token(&ended)).await, StatusCode::OK).await;
    assert_eq!(body, json!({ "active": false }));

    // The live session is as it was.
    expect_json(app.me(&token(&kept)).await, StatusCode::OK).await;
    expect_session(app.refresh(&refresh_token(&kept)).await).await;
    app.stop().await;
}
