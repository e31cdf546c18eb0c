//! Nothing lives only in one process: codes and sessions survive a restart and are shared by
//! instances running side by side.

use aidlc_auth::domain::CodePurpose;
use futures::future::join_all;
use reqwest::StatusCode;

use crate::helpers::{
    Backend, PASSWORD, TestApp, backend_tests, expect_error, expect_json, expect_session,
    status_and_json, token, unique_email,
};

backend_tests!(
    registration_code_survives_a_restart,
    session_survives_a_restart,
    two_instances_share_codes_and_sessions,
    two_instances_share_the_resend_cooldown,
    concurrent_verifications_across_two_instances_start_exactly_one_session,
);

async fn registration_code_survives_a_restart(backend: Backend) {
    let first = TestApp::spawn(backend).await;
    let email = unique_email("restart");
    let code = first.register_pending(&email, PASSWORD, "Restarted").await;
    let env = first.env.clone();
    first.stop().await;

    let second = env.spawn().await;
    let session = expect_session(second.verify_registration(&email, &code).await).await;
    assert_eq!(session["user"]["email"], email);
    expect_json(second.me(&token(&session)).await, StatusCode::OK).await;
    second.stop().await;
}

async fn session_survives_a_restart(backend: Backend) {
    let first = TestApp::spawn(backend).await;
    let email = unique_email("sticky");
    let bearer = token(&first.register_active(&email, PASSWORD, "Sticky").await);
    expect_json(first.request_login_code(&email).await, StatusCode::ACCEPTED).await;
    let login_code = first.mailbox().last_code_for(&email, CodePurpose::Login);
    let env = first.env.clone();
    first.stop().await;

    let second = env.spawn().await;
    let me = expect_json(second.me(&bearer).await, StatusCode::OK).await;
    assert_eq!(me["email"], email);
    expect_session(second.verify_login(&email, &login_code).await).await;
    assert_eq!(
        second.logout(&bearer).await.status(),
        StatusCode::NO_CONTENT
    );
    second.stop().await;
}

async fn two_instances_share_codes_and_sessions(backend: Backend) {
    let one = TestApp::spawn(backend).await;
    let two = one.spawn_sibling().await;
    assert_ne!(one.port, two.port);
    let email = unique_email("shared");

    let code = one.register_pending(&email, PASSWORD, "Shared").await;
    let session = expect_session(two.verify_registration(&email, &code).await).await;
    let bearer = token(&session);
    let me = expect_json(one.me(&bearer).await, StatusCode::OK).await;
    assert_eq!(me, session["user"]);

    // A session started on one instance ends on both.
    let other = token(&expect_session(one.login_password(&email, PASSWORD).await).await);
    assert_eq!(two.logout(&other).await.status(), StatusCode::NO_CONTENT);
    expect_error(
        one.me(&other).await,
        StatusCode::UNAUTHORIZED,
        "unauthorized",
    )
    .await;
    expect_json(two.me(&bearer).await, StatusCode::OK).await;

    one.stop().await;
    two.stop().await;
}

async fn two_instances_share_the_resend_cooldown(backend: Backend) {
    let one = TestApp::spawn(backend).await;
    let two = one.spawn_sibling().await;
    let email = unique_email("cooldown");

    one.register_pending(&email, PASSWORD, "Cooldown").await;
    expect_error(
        two.register(&email, PASSWORD, "Cooldown").await,
        StatusCode::TOO_MANY_REQUESTS,
        "too_many_requests",
    )
    .await;
    expect_error(
        two.resend_code(&email, "registration").await,
        StatusCode::TOO_MANY_REQUESTS,
        "too_many_requests",
    )
    .await;
    one.stop().await;
    two.stop().await;
}

async fn concurrent_verifications_across_two_instances_start_exactly_one_session(backend: Backend) {
    let one = TestApp::spawn(backend).await;
    let two = one.spawn_sibling().await;
    let email = unique_email("crossrace");
    let code = one.register_pending(&email, PASSWORD, "Cross Racer").await;

    let attempts =
        (0..10).map(|i| if i % 2 == 0 { &one } else { &two }.verify_registration(&email, &code));
    let mut statuses: Vec<StatusCode> = Vec::new();
    for response in join_all(attempts).await {
        let (status, body) = status_and_json(response).await;
        if status == StatusCode::BAD_REQUEST {
            assert_eq!(body["error"]["code"], "invalid_code", "{body}");
        }
        statuses.push(status);
    }
    assert_eq!(
        statuses.iter().filter(|s| **s == StatusCode::OK).count(),
        1,
        "{statuses:?}"
    );
    assert_eq!(
        statuses
            .iter()
            .filter(|s| **s == StatusCode::BAD_REQUEST)
            .count(),
        9,
        "{statuses:?}"
    );
    one.stop().await;
    two.stop().await;
}
