//! A broken dependency is a 503 that changed nothing, never a 500, a 401 or a hung request.
//! PostgreSQL and Redis are reached through a proxy the test breaks.

use std::time::{Duration, Instant};

use aidlc_auth::domain::CodePurpose;
use reqwest::StatusCode;
use reqwest::header::RETRY_AFTER;
use secrecy::SecretString;

use crate::helpers::{
    Backend, PASSWORD, POSTGRES_ADDR, ProxyMode, REDIS_ADDR, TcpProxy, TestApp, TestEnv,
    backend_tests, expect_error, expect_json, expect_session, refresh_token, token, unique_email,
};

/// Which dependency the proxy stands in front of.
#[derive(Clone, Copy)]
enum Dependency {
    Postgres,
    Redis,
}

async fn spawn_behind_proxy(dependency: Dependency) -> (TestApp, TcpProxy) {
    let mut env = TestEnv::new(Backend::PostgresRedis).await;
    let proxy = match dependency {
        Dependency::Postgres => {
            let proxy = TcpProxy::start(POSTGRES_ADDR).await;
            env.settings.database_url = SecretString::from(env.db.url_through(&proxy));
            proxy
        }
        Dependency::Redis => {
            let proxy = TcpProxy::start(REDIS_ADDR).await;
            env.settings.redis_url = Some(SecretString::from(proxy.redis_url()));
            proxy
        }
    };
    (env.spawn().await, proxy)
}

/// Asserts the documented 503 and returns how long it took.
async fn expect_unavailable(request: impl Future<Output = reqwest::Response>) -> Duration {
    let started = Instant::now();
    let response = request.await;
    let elapsed = started.elapsed();
    assert_eq!(
        response
            .headers()
            .get(RETRY_AFTER)
            .map(|v| v.to_str().unwrap().to_owned())
            .as_deref(),
        Some("1")
    );
    let body = expect_error(
        response,
        StatusCode::SERVICE_UNAVAILABLE,
        "service_unavailable",
    )
    .await;
    assert_eq!(
        body["error"]["message"],
        "the service is temporarily unavailable; please retry"
    );
    elapsed
}

/// After a dependency comes back, waits (at most 10 s) until readiness says so.
async fn wait_until_ready(app: &TestApp) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if app.get("/health/ready").await.status() == StatusCode::OK {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "the app did not recover within 10 s"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn register_with_redis_refusing_answers_503_and_writes_no_user() {
    let (app, redis) = spawn_behind_proxy(Dependency::Redis).await;
    let email = unique_email("outage");

    redis.set(ProxyMode::Refuse);
    expect_unavailable(app.register(&email, PASSWORD, "Outage")).await;
    assert_eq!(
        app.db().count_users().await,
        0,
        "no user row without a code"
    );
    assert_eq!(app.mailbox().len(), 0);

    // Once Redis is back the retry goes through (and is not throttled).
    redis.set(ProxyMode::Forward);
    wait_until_ready(&app).await;
    expect_json(
        app.register(&email, PASSWORD, "Outage").await,
        StatusCode::ACCEPTED,
    )
    .await;
    assert_eq!(app.db().count_users().await, 1);
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn register_with_postgres_refusing_answers_503_and_can_be_retried() {
    let (app, postgres) = spawn_behind_proxy(Dependency::Postgres).await;
    let email = unique_email("pgdown");

    postgres.set(ProxyMode::Refuse);
    let elapsed = expect_unavailable(app.register(&email, PASSWORD, "Postgres Down")).await;
    assert!(elapsed < Duration::from_secs(5), "took {elapsed:?}");
    assert_eq!(app.mailbox().len(), 0);
    assert_eq!(app.db().count_users().await, 0);

    postgres.set(ProxyMode::Forward);
    wait_until_ready(&app).await;
    // The failed attempt gave its cooldown back: the retry is accepted, not throttled.
    expect_json(
        app.register(&email, PASSWORD, "Postgres Down").await,
        StatusCode::ACCEPTED,
    )
    .await;
    let code = app
        .mailbox()
        .last_code_for(&email, CodePurpose::Registration);
    expect_session(app.verify_registration(&email, &code).await).await;
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn register_with_hung_redis_answers_503_within_seconds() {
    let (app, redis) = spawn_behind_proxy(Dependency::Redis).await;

    redis.set(ProxyMode::BlackHole);
    let elapsed = expect_unavailable(app.register(&unique_email("hung"), PASSWORD, "Hung")).await;
    assert!(
        elapsed < Duration::from_secs(5),
        "a hung Redis held the request for {elapsed:?}"
    );
    assert_eq!(app.db().count_users().await, 0);
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn register_with_hung_postgres_answers_503_within_seconds() {
    let (app, postgres) = spawn_behind_proxy(Dependency::Postgres).await;

    postgres.set(ProxyMode::BlackHole);
    let elapsed =
        expect_unavailable(app.register(&unique_email("hungpg"), PASSWORD, "Hung PG")).await;
    assert!(
        elapsed < Duration::from_secs(5),
        "a hung PostgreSQL held the request for {elapsed:?}"
    );
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sessions_live_in_sql_so_a_redis_outage_does_not_touch_them() {
    let (app, redis) = spawn_behind_proxy(Dependency::Redis).await;
    let session = app
        .register_active(&unique_email("loggedin"), PASSWORD, "Logged In")
        .await;

    redis.set(ProxyMode::Refuse);
    expect_json(app.me(&token(&session)).await, StatusCode::OK).await;
    let refreshed = expect_session(
        app.post_json(
            "/api/auth/refresh",
            &serde_json::json!({ "refresh_token": refresh_token(&session) }),
        )
        .await,
    )
    .await;
    assert_eq!(
        app.logout(&token(&refreshed)).await.status(),
        StatusCode::NO_CONTENT
    );

    // Redis coming back changes nothing: the revocation was never in Redis.
    redis.set(ProxyMode::Forward);
    wait_until_ready(&app).await;
    expect_error(
        app.me(&token(&refreshed)).await,
        StatusCode::UNAUTHORIZED,
        "unauthorized",
    )
    .await;
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn session_check_with_postgres_down_is_503_not_401() {
    let (app, postgres) = spawn_behind_proxy(Dependency::Postgres).await;
    let bearer = token(
        &app.register_active(&unique_email("pgdown"), PASSWORD, "Postgres Down")
            .await,
    );

    postgres.set(ProxyMode::Refuse);
    expect_unavailable(app.me(&bearer)).await;
    expect_unavailable(app.logout(&bearer)).await;

    // The outage did not end the session.
    postgres.set(ProxyMode::Forward);
    wait_until_ready(&app).await;
    expect_json(app.me(&bearer).await, StatusCode::OK).await;
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verify_with_redis_down_is_503_and_the_code_still_works_afterwards() {
    let (app, redis) = spawn_behind_proxy(Dependency::Redis).await;
    let email = unique_email("verifylater");
    let code = app.register_pending(&email, PASSWORD, "Verify Later").await;

    redis.set(ProxyMode::Refuse);
    expect_unavailable(app.verify_registration(&email, &code)).await;

    redis.set(ProxyMode::Forward);
    wait_until_ready(&app).await;
    expect_session(app.verify_registration(&email, &code).await).await;
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn password_login_with_postgres_down_is_503_not_401() {
    let (app, postgres) = spawn_behind_proxy(Dependency::Postgres).await;
    let email = unique_email("pglogin");
    app.register_active(&email, PASSWORD, "PG Login").await;

    postgres.set(ProxyMode::Refuse);
    expect_unavailable(app.login_password(&email, PASSWORD)).await;

    postgres.set(ProxyMode::Forward);
    wait_until_ready(&app).await;
    expect_session(app.login_password(&email, PASSWORD).await).await;
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn app_does_not_start_when_redis_is_unreachable() {
    let redis = TcpProxy::start(REDIS_ADDR).await;
    redis.set(ProxyMode::Refuse);
    let mut env = TestEnv::new(Backend::PostgresRedis).await;
    env.settings.redis_url = Some(SecretString::from(redis.redis_url()));
    let started = Instant::now();
    let error = env
        .try_spawn()
        .await
        .err()
        .expect("start-up must fail without Redis");
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "start-up hung for {:?}",
        started.elapsed()
    );
    assert!(format!("{error:#}").contains("Redis"), "{error:#}");
}

backend_tests!(mail_failure_still_answers_202_and_the_mail_arrives_once_the_transport_recovers);

// Before the outbox, mail was sent from the request: a failing transport was the client's 503
// and the cooldown was given back for its retry. Now the mail is queued with the account, the
// request succeeds, and the outbox's sender delivers the mail once the transport works again.
async fn mail_failure_still_answers_202_and_the_mail_arrives_once_the_transport_recovers(
    backend: Backend,
) {
    let app = TestApp::spawn(backend).await;
    let email = unique_email("nomail");
    let active = unique_email("active");
    app.register_active(&active, PASSWORD, "Active").await;

    app.mailbox().set_failing(true);
    expect_json(
        app.register(&email, PASSWORD, "No Mail").await,
        StatusCode::ACCEPTED,
    )
    .await;
    expect_json(app.request_login_code(&active).await, StatusCode::ACCEPTED).await;
    // Tried, refused, and waiting for its retry.
    assert!(app.mailbox().sent_to(&email).is_empty());
    assert!(
        app.mailbox()
            .codes_for(&active, CodePurpose::Login)
            .is_empty()
    );

    // The transport recovers; the retries (at most 1 s later) deliver each mail once.
    app.mailbox().set_failing(false);
    app.advance(2);
    let code = app
        .mailbox()
        .last_code_for(&email, CodePurpose::Registration);
    assert_eq!(app.mailbox().sent_to(&email).len(), 1);
    expect_session(app.verify_registration(&email, &code).await).await;
    let code = app.mailbox().last_code_for(&active, CodePurpose::Login);
    expect_session(app.verify_login(&active, &code).await).await;
    app.stop().await;
}
