//! The owner's view of their sessions: listing, ending one, ending all, logout, idle timeout.

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{Value, json};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use uuid::Uuid;

use crate::helpers::{
    Backend, PASSWORD, TestApp, TestEnv, backend_tests, expect_error, expect_json, expect_session,
    refresh_token, session_id, token, unique_email,
};

backend_tests!(
    sessions_lists_each_login_with_current_flag_user_agent_and_ip,
    deleting_a_session_ends_it_and_only_it,
    deleting_a_malformed_session_id_is_a_json_session_not_found,
    deleting_a_session_past_its_lifetime_is_session_not_found,
    logout_all_ends_every_session,
    logout_all_with_keep_current_spares_the_caller,
    logout_all_counts_only_sessions_that_were_still_live,
    logout_ends_the_session_for_refresh_and_me,
    idle_timeout_ends_unused_sessions,
    deleting_a_session_ended_by_the_idle_timeout_is_session_not_found,
    logout_all_does_not_count_sessions_ended_by_the_idle_timeout,
);

/// The session is over: its refresh token and its access token are refused.
async fn expect_ended(app: &TestApp, session: &Value) {
    expect_error(
        app.refresh(&refresh_token(session)).await,
        StatusCode::UNAUTHORIZED,
        "invalid_refresh_token",
    )
    .await;
    expect_error(
        app.me(&token(session)).await,
        StatusCode::UNAUTHORIZED,
        "unauthorized",
    )
    .await;
}

/// The caller's live sessions.
async fn live_sessions(app: &TestApp, access: &str) -> Vec<Value> {
    let body = expect_json(app.sessions(access).await, StatusCode::OK).await;
    let keys: Vec<&String> = body.as_object().expect("object").keys().collect();
    assert_eq!(keys, ["sessions"], "{body}");
    body["sessions"].as_array().expect("sessions").clone()
}

/// `DELETE /api/auth/sessions/{id}` answers 404 `session_not_found` (status checked first, so a
/// wrong answer reads clearly).
async fn expect_session_not_found(app: &TestApp, access: &str, id: &str) {
    let response = app.delete_session(access, id).await;
    let status = response.status();
    if status != StatusCode::NOT_FOUND {
        panic!(
            "DELETE /api/auth/sessions/{id}: expected 404 session_not_found, got {status} {:?}",
            crate::helpers::text(response).await
        );
    }
    expect_error(response, StatusCode::NOT_FOUND, "session_not_found").await;
}

fn ids(sessions: &[Value]) -> Vec<String> {
    sessions
        .iter()
        .map(|s| s["id"].as_str().expect("id").to_owned())
        .collect()
}

fn rfc3339(value: &Value) -> OffsetDateTime {
    OffsetDateTime::parse(value.as_str().expect("a timestamp string"), &Rfc3339)
        .unwrap_or_else(|e| panic!("{value} is not RFC 3339: {e}"))
}

async fn sessions_lists_each_login_with_current_flag_user_agent_and_ip(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let email = unique_email("list");
    let registration = app.register_active(&email, PASSWORD, "Lister").await;
    assert_eq!(
        app.logout(&token(&registration)).await.status(),
        StatusCode::NO_CONTENT
    );

    let firefox = expect_session(
        app.login_password_as(&email, PASSWORD, "Firefox-Test/1.0")
            .await,
    )
    .await;
    app.advance(1);
    let curl = expect_session(
        app.login_password_as(&email, PASSWORD, "curl-test/2.0")
            .await,
    )
    .await;

    let sessions = live_sessions(&app, &token(&curl)).await;
    assert_eq!(
        ids(&sessions),
        [session_id(&curl), session_id(&firefox)],
        "the two live logins, newest first (the ended one is not listed)"
    );
    for session in &sessions {
        let mut members: Vec<&str> = session
            .as_object()
            .expect("object")
            .keys()
            .map(String::as_str)
            .collect();
        members.sort_unstable();
        assert_eq!(
            members,
            [
                "created_at",
                "current",
                "expires_at",
                "id",
                "ip",
                "last_used_at",
                "user_agent"
            ],
            "{session}"
        );
        assert_eq!(session["ip"], "127.0.0.1", "{session}");
        let created = rfc3339(&session["created_at"]);
        assert_eq!(
            rfc3339(&session["expires_at"]) - created,
            time::Duration::days(1),
            "{session}"
        );
        assert_eq!(rfc3339(&session["last_used_at"]), created, "{session}");
    }
    assert_eq!(sessions[0]["user_agent"], "curl-test/2.0");
    assert_eq!(sessions[1]["user_agent"], "Firefox-Test/1.0");
    assert_eq!(sessions[0]["current"], true);
    assert_eq!(sessions[1]["current"], false);

    // Seen from the other session, only `current` changes.
    let seen_from_firefox = live_sessions(&app, &token(&firefox)).await;
    assert_eq!(ids(&seen_from_firefox), ids(&sessions));
    assert_eq!(seen_from_firefox[0]["current"], false);
    assert_eq!(seen_from_firefox[1]["current"], true);

    // A refresh moves last_used_at, not created_at.
    app.advance(30);
    let refreshed = expect_session(app.refresh(&refresh_token(&firefox)).await).await;
    let after = live_sessions(&app, &token(&refreshed)).await;
    let firefox_view = after
        .iter()
        .find(|s| s["id"] == firefox["session_id"])
        .expect("still listed");
    assert_eq!(
        rfc3339(&firefox_view["last_used_at"]) - rfc3339(&firefox_view["created_at"]),
        time::Duration::seconds(31)
    );
    assert_eq!(firefox_view["current"], true);

    // Another account's sessions are never listed.
    let stranger = app
        .register_active(&unique_email("stranger"), PASSWORD, "Stranger")
        .await;
    assert_eq!(
        ids(&live_sessions(&app, &token(&stranger)).await),
        [session_id(&stranger)]
    );
    expect_error(
        app.get("/api/auth/sessions").await,
        StatusCode::UNAUTHORIZED,
        "unauthorized",
    )
    .await;
    app.stop().await;
}

async fn deleting_a_session_ends_it_and_only_it(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let email = unique_email("delete");
    let laptop = app.register_active(&email, PASSWORD, "Deleter").await;
    let phone = expect_session(app.login_password(&email, PASSWORD).await).await;
    let other_user = app
        .register_active(&unique_email("other"), PASSWORD, "Other")
        .await;

    let response = app
        .delete_session(&token(&phone), &session_id(&laptop))
        .await;
    assert_eq!(response.status(), StatusCode::NO_CONTENT);
    expect_ended(&app, &laptop).await;

    // The caller's own session goes on.
    expect_json(app.me(&token(&phone)).await, StatusCode::OK).await;
    assert_eq!(
        ids(&live_sessions(&app, &token(&phone)).await),
        [session_id(&phone)]
    );
    let phone = expect_session(app.refresh(&refresh_token(&phone)).await).await;

    // Not the caller's live session: already ended, someone else's, or no session at all.
    for id in [
        session_id(&laptop),
        session_id(&other_user),
        Uuid::new_v4().to_string(),
    ] {
        expect_session_not_found(&app, &token(&phone), &id).await;
    }
    expect_json(app.me(&token(&other_user)).await, StatusCode::OK).await;
    expect_session(app.refresh(&refresh_token(&other_user)).await).await;

    // Without a bearer nothing is deleted.
    let response = app
        .client
        .delete(app.url(&format!("/api/auth/sessions/{}", session_id(&other_user))))
        .send()
        .await
        .unwrap();
    expect_error(response, StatusCode::UNAUTHORIZED, "unauthorized").await;

    // Ending one's own current session works like logout.
    let response = app
        .delete_session(&token(&phone), &session_id(&phone))
        .await;
    assert_eq!(response.status(), StatusCode::NO_CONTENT);
    expect_ended(&app, &phone).await;
    app.stop().await;
}

async fn deleting_a_malformed_session_id_is_a_json_session_not_found(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let session = app
        .register_active(&unique_email("malformedid"), PASSWORD, "Malformed Id")
        .await;

    // No such id can name one of the caller's sessions; the answer is still a JSON error.
    for id in ["not-a-uuid", "123", "00000000-0000-0000-0000-00000000000g"] {
        expect_session_not_found(&app, &token(&session), id).await;
    }
    expect_json(app.me(&token(&session)).await, StatusCode::OK).await;
    app.stop().await;
}

async fn deleting_a_session_past_its_lifetime_is_session_not_found(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let email = unique_email("deleteexpired");
    let old = app
        .register_active(&email, PASSWORD, "Delete Expired")
        .await;
    app.advance(86_400 + 1);
    let current = expect_session(app.login_password(&email, PASSWORD).await).await;
    expect_ended(&app, &old).await;
    assert_eq!(
        ids(&live_sessions(&app, &token(&current)).await),
        [session_id(&current)],
        "the session past its 24 h is not listed"
    );

    // It is not one of the caller's live sessions (README: 404 session_not_found).
    expect_session_not_found(&app, &token(&current), &session_id(&old)).await;
    app.stop().await;
}

async fn logout_all_ends_every_session(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let email = unique_email("logoutall");
    let first = app.register_active(&email, PASSWORD, "Everywhere").await;
    let second = expect_session(app.login_password(&email, PASSWORD).await).await;
    let third = expect_session(app.login_password(&email, PASSWORD).await).await;
    let bystander = app
        .register_active(&unique_email("bystander"), PASSWORD, "Bystander")
        .await;

    expect_error(
        app.logout_all(&token(&third), Some(&json!({ "keep": true })))
            .await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "invalid_body",
    )
    .await;
    expect_json(app.me(&token(&third)).await, StatusCode::OK).await;

    let body = expect_json(app.logout_all(&token(&third), None).await, StatusCode::OK).await;
    assert_eq!(body, json!({ "ended": 3 }));
    for session in [&first, &second, &third] {
        expect_ended(&app, session).await;
    }
    expect_error(
        app.logout_all(&token(&third), None).await,
        StatusCode::UNAUTHORIZED,
        "unauthorized",
    )
    .await;

    // Explicitly not keeping the current session is the same.
    let fourth = expect_session(app.login_password(&email, PASSWORD).await).await;
    let body = expect_json(
        app.logout_all(&token(&fourth), Some(&json!({ "keep_current": false })))
            .await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(body, json!({ "ended": 1 }));
    expect_ended(&app, &fourth).await;

    // JSON `null` (the document's body is `oneOf` null and the object) means the defaults.
    let fifth = expect_session(app.login_password(&email, PASSWORD).await).await;
    let body = expect_json(
        app.logout_all(&token(&fifth), Some(&Value::Null)).await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(body, json!({ "ended": 1 }));
    expect_ended(&app, &fifth).await;

    // Other accounts are untouched.
    expect_json(app.me(&token(&bystander)).await, StatusCode::OK).await;
    expect_session(app.refresh(&refresh_token(&bystander)).await).await;
    app.stop().await;
}

async fn logout_all_with_keep_current_spares_the_caller(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let email = unique_email("keepcurrent");
    let first = app.register_active(&email, PASSWORD, "Keeper").await;
    let second = expect_session(app.login_password(&email, PASSWORD).await).await;
    let caller = expect_session(app.login_password(&email, PASSWORD).await).await;

    let body = expect_json(
        app.logout_all(&token(&caller), Some(&json!({ "keep_current": true })))
            .await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(body, json!({ "ended": 2 }));
    for session in [&first, &second] {
        expect_ended(&app, session).await;
    }

    expect_json(app.me(&token(&caller)).await, StatusCode::OK).await;
    let sessions = live_sessions(&app, &token(&caller)).await;
    assert_eq!(ids(&sessions), [session_id(&caller)]);
    assert_eq!(sessions[0]["current"], true);
    let caller = expect_session(app.refresh(&refresh_token(&caller)).await).await;

    // Nothing left to end.
    let body = expect_json(
        app.logout_all(&token(&caller), Some(&json!({ "keep_current": true })))
            .await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(body, json!({ "ended": 0 }));
    expect_json(app.me(&token(&caller)).await, StatusCode::OK).await;
    app.stop().await;
}

async fn logout_all_counts_only_sessions_that_were_still_live(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let email = unique_email("countlive");
    let old = app.register_active(&email, PASSWORD, "Count Live").await;
    app.advance(86_400 + 1);
    let other = expect_session(app.login_password(&email, PASSWORD).await).await;
    let caller = expect_session(app.login_password(&email, PASSWORD).await).await;
    expect_ended(&app, &old).await;
    assert_eq!(live_sessions(&app, &token(&caller)).await.len(), 2);

    // Only `other` was still live besides the caller; the session that ended at its 24 h
    // lifetime is not ended a second time.
    let body = expect_json(
        app.logout_all(&token(&caller), Some(&json!({ "keep_current": true })))
            .await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(
        body,
        json!({ "ended": 1 }),
        "two live sessions were listed, the caller's kept: one ends"
    );
    expect_ended(&app, &other).await;
    let body = expect_json(app.logout_all(&token(&caller), None).await, StatusCode::OK).await;
    assert_eq!(body, json!({ "ended": 1 }));
    expect_ended(&app, &caller).await;
    app.stop().await;
}

async fn logout_ends_the_session_for_refresh_and_me(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let email = unique_email("logout");
    let first = app.register_active(&email, PASSWORD, "Logout").await;
    let refreshed = expect_session(app.refresh(&refresh_token(&first)).await).await;
    let other = expect_session(app.login_password(&email, PASSWORD).await).await;

    // Any live access token of the session ends all of it, the current refresh token included.
    assert_eq!(
        app.logout(&token(&first)).await.status(),
        StatusCode::NO_CONTENT
    );
    expect_ended(&app, &refreshed).await;
    expect_ended(&app, &first).await;
    for access in [token(&first), token(&refreshed)] {
        expect_error(
            app.logout(&access).await,
            StatusCode::UNAUTHORIZED,
            "unauthorized",
        )
        .await;
    }
    // Still ended after the refresh grace window has passed.
    app.advance(11);
    expect_ended(&app, &refreshed).await;

    expect_json(app.me(&token(&other)).await, StatusCode::OK).await;
    expect_session(app.refresh(&refresh_token(&other)).await).await;
    app.stop().await;
}

/// The idle timeout the idle tests run with (it may not be shorter than the access-token
/// lifetime, 900 s).
const IDLE: u64 = 1_200;

async fn spawn_with_idle_timeout(backend: Backend) -> TestApp {
    let mut env = TestEnv::new(backend).await;
    env.settings.session_idle_timeout = Some(Duration::from_secs(IDLE));
    env.spawn().await
}

async fn idle_timeout_ends_unused_sessions(backend: Backend) {
    let app = spawn_with_idle_timeout(backend).await;
    let email = unique_email("idle");
    let idle = app.register_active(&email, PASSWORD, "Idle").await;
    let busy = expect_session(app.login_password(&email, PASSWORD).await).await;

    // Refreshing keeps a session alive ...
    app.advance(IDLE - 400);
    let busy = expect_session(app.refresh(&refresh_token(&busy)).await).await;
    app.advance(IDLE - 400);
    let busy = expect_session(app.refresh(&refresh_token(&busy)).await).await;
    expect_json(app.me(&token(&busy)).await, StatusCode::OK).await;

    // ... the one left alone for longer than the timeout has ended, well within its 24 h.
    expect_error(
        app.refresh(&refresh_token(&idle)).await,
        StatusCode::UNAUTHORIZED,
        "invalid_refresh_token",
    )
    .await;
    assert_eq!(
        ids(&live_sessions(&app, &token(&busy)).await),
        [session_id(&busy)]
    );

    // And the busy one ends too once left alone for longer than the timeout.
    app.advance(IDLE + 1);
    expect_ended(&app, &busy).await;
    app.stop().await;
}

/// A session left idle past the timeout next to a fresh one for the caller.
async fn idle_and_fresh_session(backend: Backend) -> (TestApp, Value, Value) {
    let app = spawn_with_idle_timeout(backend).await;
    let email = unique_email("idleended");
    let idle = app.register_active(&email, PASSWORD, "Idle Ended").await;
    app.advance(IDLE + 1);
    let caller = expect_session(app.login_password(&email, PASSWORD).await).await;
    expect_ended(&app, &idle).await;
    assert_eq!(
        ids(&live_sessions(&app, &token(&caller)).await),
        [session_id(&caller)],
        "the idle session is not listed"
    );
    (app, idle, caller)
}

async fn deleting_a_session_ended_by_the_idle_timeout_is_session_not_found(backend: Backend) {
    let (app, idle, caller) = idle_and_fresh_session(backend).await;
    // Not one of the caller's live sessions (README: 404 session_not_found).
    expect_session_not_found(&app, &token(&caller), &session_id(&idle)).await;
    app.stop().await;
}

async fn logout_all_does_not_count_sessions_ended_by_the_idle_timeout(backend: Backend) {
    let (app, _idle, caller) = idle_and_fresh_session(backend).await;
    let body = expect_json(
        app.logout_all(&token(&caller), Some(&json!({ "keep_current": true })))
            .await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(
        body,
        json!({ "ended": 0 }),
        "only the caller's session was live, and it is kept"
    );
    app.stop().await;
}
