//! The copy of recent sessions each instance on PostgreSQL keeps: authenticated requests are
//! answered from it, and a revocation made anywhere (another instance, or SQL by hand) is
//! refused everywhere within the notice's delay, not the copy's lifetime.

use std::time::{Duration, Instant};

use reqwest::StatusCode;

use crate::helpers::{
    Backend, PASSWORD, TestApp, TestEnv, backend_tests, expect_json, expect_session, token,
    unique_email,
};
use crate::support::process::ServiceProcess;
use crate::support::prometheus::Scrape;

backend_tests!(
    me_is_answered_from_the_copy_on_postgres_and_the_copy_is_armed,
    a_logout_on_one_instance_is_refused_on_another_within_a_second,
    a_password_change_on_one_instance_ends_the_other_sessions_everywhere,
    a_session_revoked_by_hand_in_sql_is_refused_within_a_second,
    an_account_disabled_by_hand_in_sql_is_refused_within_a_second,
);

/// Far longer than any notice takes, far shorter than the copy's 10 s lifetime: a refusal
/// inside it came from the notice.
const NOTICE_BOUND: Duration = Duration::from_secs(1);

/// Asks `/me` with `token` on `app` until it is refused; panics if that takes past
/// [`NOTICE_BOUND`]. Returns how long it took.
async fn refused_within_notice_bound(app: &TestApp, token: &str) -> Duration {
    let start = Instant::now();
    loop {
        let status = app.me(token).await.status();
        if status == StatusCode::UNAUTHORIZED {
            return start.elapsed();
        }
        assert_eq!(status, StatusCode::OK);
        assert!(
            start.elapsed() < NOTICE_BOUND,
            "still accepted {:?} after the revocation",
            start.elapsed()
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

async fn scrape(service: &ServiceProcess) -> Scrape {
    let port = service.metrics_port.expect("the metrics listener's port");
    let text = service
        .client
        .get(format!("http://127.0.0.1:{port}/metrics"))
        .send()
        .await
        .expect("scraping /metrics")
        .text()
        .await
        .expect("the scrape");
    Scrape::parse(text).await
}

async fn me_is_answered_from_the_copy_on_postgres_and_the_copy_is_armed(backend: Backend) {
    let env = TestEnv::new(backend).await;
    let app = env.spawn().await;
    let service = ServiceProcess::start(&env, &[("AIDLC_METRICS_ADDR", "127.0.0.1:0")]).await;
    let session = app
        .register_active(&unique_email("copy"), PASSWORD, "Copy")
        .await;
    let access = token(&session);
    // The first heartbeat arms the copy within milliseconds of start; allow for a slow start.
    let deadline = Instant::now() + Duration::from_secs(5);
    let reads = 20;
    let scraped = loop {
        for _ in 0..reads {
            let me = service
                .client
                .get(service.url("/api/auth/me"))
                .bearer_auth(&access)
                .send()
                .await
                .expect("GET /me");
            assert_eq!(me.status(), StatusCode::OK);
        }
        let scraped = scrape(&service).await;
        let armed = scraped.value("aidlc_auth_session_cache_armed", &[]) == 1.0;
        if !backend.is_postgres() || armed || Instant::now() > deadline {
            break scraped;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let hits = scraped.value("aidlc_auth_session_cache_reads_total", &[("result", "hit")]);
    let misses = scraped.value(
        "aidlc_auth_session_cache_reads_total",
        &[("result", "miss")],
    );
    if backend.is_postgres() {
        assert_eq!(
            scraped.value("aidlc_auth_session_cache_armed", &[]),
            1.0,
            "armed"
        );
        assert!(
            hits >= f64::from(reads - 1),
            "{hits} hits and {misses} misses"
        );
    } else {
        // SQLite keeps no copy: other processes may share the file unseen.
        assert_eq!(hits + misses, 0.0, "no copy on SQLite");
        assert!(
            scraped
                .matching("aidlc_auth_session_cache_armed", &[])
                .next()
                .is_none()
        );
    }
    service.terminate().await;
    app.stop().await;
}

async fn a_logout_on_one_instance_is_refused_on_another_within_a_second(backend: Backend) {
    let one = TestApp::spawn(backend).await;
    let two = one.spawn_sibling().await;
    let session = one
        .register_active(&unique_email("copy-logout"), PASSWORD, "Copy Logout")
        .await;
    let access = token(&session);
    for _ in 0..3 {
        expect_json(one.me(&access).await, StatusCode::OK).await;
    }
    assert_eq!(two.logout(&access).await.status(), StatusCode::NO_CONTENT);
    let took = refused_within_notice_bound(&one, &access).await;
    println!("{backend:?}: refused on the other instance after {took:?}");
    // On the instance that revoked it: at once.
    assert_eq!(two.me(&access).await.status(), StatusCode::UNAUTHORIZED);
    two.stop().await;
    one.stop().await;
}

async fn a_password_change_on_one_instance_ends_the_other_sessions_everywhere(backend: Backend) {
    let one = TestApp::spawn(backend).await;
    let two = one.spawn_sibling().await;
    let email = unique_email("copy-password");
    let first = one.register_active(&email, PASSWORD, "Copy Password").await;
    let second = expect_session(one.login_password(&email, PASSWORD).await).await;
    let (stays, ends) = (token(&second), token(&first));
    for access in [&stays, &ends] {
        expect_json(one.me(access).await, StatusCode::OK).await;
    }
    let new_password = "an entirely new passphrase 2";
    let changed = two.change_password(&stays, PASSWORD, new_password).await;
    assert_eq!(changed.status(), StatusCode::OK);
    refused_within_notice_bound(&one, &ends).await;
    expect_json(one.me(&stays).await, StatusCode::OK).await;
    // The copy of the kept session holds the new password's hash, not the old one's.
    let again = one.change_password(&stays, PASSWORD, "yet another passphrase 3");
    assert_eq!(again.await.status(), StatusCode::BAD_REQUEST);
    two.stop().await;
    one.stop().await;
}

/// Signs in, has `/me` answered (filling the copy), runs `statement` by hand (it must change
/// one row), and expects `/me` refused within [`NOTICE_BOUND`].
async fn refused_after_a_change_by_hand(backend: Backend, statement: &'static str) {
    let app = TestApp::spawn(backend).await;
    let session = app
        .register_active(&unique_email("copy-by-hand"), PASSWORD, "Copy By Hand")
        .await;
    let access = token(&session);
    for _ in 0..3 {
        expect_json(app.me(&access).await, StatusCode::OK).await;
    }
    assert_eq!(app.db().execute(statement).await, 1, "{statement}");
    refused_within_notice_bound(&app, &access).await;
    app.stop().await;
}

async fn a_session_revoked_by_hand_in_sql_is_refused_within_a_second(backend: Backend) {
    refused_after_a_change_by_hand(
        backend,
        "UPDATE sessions SET revoked_at = created_at, revoked_reason = 'by_hand'",
    )
    .await;
}

async fn an_account_disabled_by_hand_in_sql_is_refused_within_a_second(backend: Backend) {
    refused_after_a_change_by_hand(backend, "UPDATE users SET status = 'disabled'").await;
}
