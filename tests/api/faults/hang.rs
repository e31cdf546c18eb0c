//! A dependency that accepts and never answers: 200 concurrent requests are each answered
//! within the bound, and the real binary keeps neither memory nor sockets for them.

use std::time::{Duration, Instant};

use futures::future::join_all;
use reqwest::StatusCode;
use serde_json::json;

use super::{DEPENDENCY_TIMEOUT, Dependency, RECOVERY_LIMIT, SLOWEST_ANSWER, env_behind_proxy};
use crate::helpers::{
    Backend, PASSWORD, ProxyMode, TestApp, expect_json, expect_session, token, unique_email,
};
use crate::support::process::ServiceProcess;
use crate::support::traffic::Call;

/// Concurrent requests sent at once while the dependency hangs.
const CONCURRENT: usize = 200;

/// One of [`CONCURRENT`] requests: a fresh registration, a login code, `/me` or a password
/// login, by `i` (the last two for the account at `email`).
async fn one_of_many(
    app: &TestApp,
    i: usize,
    email: &str,
    bearer: &str,
) -> (Call, StatusCode, Duration) {
    let started = Instant::now();
    let (call, response) = match i % 4 {
        0 => (
            Call::Register,
            app.register(&unique_email("flood"), PASSWORD, "Flood")
                .await,
        ),
        // An unknown address, answered like any other: one address would meet its cooldown.
        1 => (
            Call::RequestLoginCode,
            app.request_login_code(&unique_email("nobody")).await,
        ),
        2 => (Call::Me, app.me(bearer).await),
        _ => (
            Call::PasswordLogin,
            app.login_password(email, PASSWORD).await,
        ),
    };
    (call, response.status(), started.elapsed())
}

mod a_hung_dependency_answers_200_concurrent_requests_within_the_bound {
    use super::*;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn postgres() {
        hung_dependency(Dependency::Postgres).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn redis() {
        hung_dependency(Dependency::Redis).await;
    }
}

async fn hung_dependency(dependency: Dependency) {
    let (env, proxy) = env_behind_proxy(Backend::PostgresRedis, dependency).await;
    let app = env.spawn().await;
    let email = unique_email("hung");
    let bearer = token(&app.register_active(&email, PASSWORD, "Hung").await);

    proxy.set(ProxyMode::BlackHole);
    let connections_before = proxy.accepted();
    let started = Instant::now();
    let answers = join_all((0..CONCURRENT).map(|i| one_of_many(&app, i, &email, &bearer))).await;
    let all_done = started.elapsed();
    let slowest = answers.iter().map(|(_, _, t)| *t).max().unwrap_or_default();
    for (call, status, elapsed) in &answers {
        // With Redis hung, sessions and password logins are SQL's and still succeed.
        let expected = if dependency == Dependency::Redis && !call.uses_codes() {
            call.success()
        } else {
            StatusCode::SERVICE_UNAVAILABLE
        };
        assert_eq!(*status, expected, "{call:?} after {elapsed:?}");
    }
    assert!(
        slowest <= SLOWEST_ANSWER,
        "with {dependency:?} hung an answer took {slowest:?} (timeout {DEPENDENCY_TIMEOUT:?})"
    );
    eprintln!(
        "{dependency:?} hung: {CONCURRENT} concurrent requests all answered in {all_done:?}, \
         slowest {slowest:?}; {} new connections to it meanwhile",
        proxy.accepted() - connections_before
    );

    proxy.set(ProxyMode::Forward);
    let back = Instant::now();
    while app.get("/health/ready").await.status() != StatusCode::OK {
        assert!(back.elapsed() < RECOVERY_LIMIT, "not ready again");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    expect_json(app.me(&bearer).await, StatusCode::OK).await;
    let fresh = unique_email("after");
    let code = app.register_pending(&fresh, PASSWORD, "After").await;
    expect_session(app.verify_registration(&fresh, &code).await).await;
    app.stop().await;
}

mod a_hung_dependency_leaves_no_pile_up_in_the_real_binary {
    use super::*;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn postgres() {
        no_pile_up(Dependency::Postgres).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn redis() {
        no_pile_up(Dependency::Redis).await;
    }
}

/// Waves of [`CONCURRENT`] registrations at the real binary while `dependency` hangs: every
/// one is answered 503 within the bound, and neither the memory nor the open files (sockets)
/// of the process grow from wave to wave: nothing waits on the hung dependency once answered.
async fn no_pile_up(dependency: Dependency) {
    const WAVES: usize = 3;
    let (env, proxy) = env_behind_proxy(Backend::PostgresRedis, dependency).await;
    let database_url = env.settings.database_url.clone();
    let database_url = secrecy::ExposeSecret::expose_secret(&database_url).to_owned();
    let service = ServiceProcess::start(
        &env,
        &[
            ("DATABASE_URL", &database_url),
            ("AIDLC_DEPENDENCY_TIMEOUT_MS", "1000"),
        ],
    )
    .await;
    // No keep-alive: every connection closes with its answer, so open files count only what
    // the service itself still holds.
    let client = reqwest::Client::builder()
        .no_proxy()
        .pool_max_idle_per_host(0)
        .timeout(Duration::from_secs(15))
        .build()
        .expect("building the HTTP client");
    let register = |tag: &'static str| {
        let request = client.post(service.url("/api/auth/register")).json(
            &json!({ "email": unique_email(tag), "password": PASSWORD, "full_name": "Wave" }),
        );
        async move {
            let started = Instant::now();
            let status = request.send().await.map(|r| r.status());
            (status.map_err(|e| e.to_string()), started.elapsed())
        }
    };
    for (status, _) in join_all((0..20).map(|_| register("warm"))).await {
        assert_eq!(status, Ok(StatusCode::ACCEPTED));
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (rss_before, files_before) = (service.rss_kib(), service.open_files());

    proxy.set(ProxyMode::BlackHole);
    let mut after_waves = Vec::new();
    for wave in 0..WAVES {
        let started = Instant::now();
        let answers = join_all((0..CONCURRENT).map(|_| register("wave"))).await;
        let slowest = answers.iter().map(|(_, t)| *t).max().unwrap_or_default();
        for (status, elapsed) in &answers {
            assert_eq!(
                status,
                &Ok(StatusCode::SERVICE_UNAVAILABLE),
                "wave {wave}, after {elapsed:?}"
            );
        }
        assert!(
            slowest <= SLOWEST_ANSWER,
            "wave {wave}: slowest {slowest:?}"
        );
        // The server closes its side of each connection just after answering.
        tokio::time::sleep(Duration::from_millis(300)).await;
        let (rss, files) = (service.rss_kib(), service.open_files());
        eprintln!(
            "{dependency:?} hung, wave {wave}: {CONCURRENT} answered 503 in {:?} (slowest \
             {slowest:?}); RSS {rss_before} -> {rss} KiB, open files {files_before} -> {files}",
            started.elapsed()
        );
        after_waves.push((rss, files));
    }
    for (wave, (_, files)) in after_waves.iter().enumerate() {
        // A few sockets to the hung dependency may still be connecting (the pool's or Redis's
        // reconnect, each bounded by the timeout); never one per request.
        assert!(
            *files <= files_before + 20,
            "wave {wave}: {files} open files, {files_before} before: requests pile up"
        );
    }
    // The first wave may grow the allocator's pools; later waves reuse them.
    let (first, last) = (after_waves[0].0, after_waves[WAVES - 1].0);
    assert!(
        last <= first + 8 * 1024,
        "RSS grew from {first} KiB after the first wave to {last} KiB after the last"
    );
    assert!(
        last <= rss_before + 64 * 1024,
        "RSS grew from {rss_before} KiB to {last} KiB"
    );

    proxy.set(ProxyMode::Forward);
    let back = Instant::now();
    loop {
        let ready = client.get(service.url("/health/ready")).send().await;
        if ready.is_ok_and(|r| r.status() == StatusCode::OK) {
            break;
        }
        assert!(back.elapsed() < RECOVERY_LIMIT, "not ready again");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let (status, _) = register("after").await;
    assert_eq!(status, Ok(StatusCode::ACCEPTED));
}

/// With Redis hung, a code request makes two Redis calls (its rate limit, then its cooldown):
/// it answers 503 after one timeout, not two, and the requests that follow within that timeout
/// at once; a readiness ping that goes through lets the calls through again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_redis_hung_a_code_request_waits_out_one_timeout_not_two() {
    let (env, proxy) = env_behind_proxy(Backend::PostgresRedis, Dependency::Redis).await;
    let app = env.spawn().await;
    proxy.set(ProxyMode::BlackHole);

    let started = Instant::now();
    let first = app.request_login_code(&unique_email("hung")).await;
    let first_took = started.elapsed();
    assert_eq!(first.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert!(
        first_took < DEPENDENCY_TIMEOUT * 3 / 2,
        "the first code request took {first_took:?} (timeout {DEPENDENCY_TIMEOUT:?})"
    );
    let started = Instant::now();
    let next = app.register(&unique_email("hung"), PASSWORD, "Hung").await;
    let next_took = started.elapsed();
    assert_eq!(next.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert!(
        next_took < DEPENDENCY_TIMEOUT / 2,
        "a registration just after took {next_took:?}"
    );
    eprintln!(
        "Redis hung: a code request answered 503 in {first_took:?}, the next in {next_took:?}"
    );

    proxy.set(ProxyMode::Forward);
    let back = Instant::now();
    while app.get("/health/ready").await.status() != StatusCode::OK {
        assert!(back.elapsed() < RECOVERY_LIMIT, "not ready again");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let fresh = unique_email("after");
    let code = app.register_pending(&fresh, PASSWORD, "After").await;
    expect_session(app.verify_registration(&fresh, &code).await).await;
    app.stop().await;
}
