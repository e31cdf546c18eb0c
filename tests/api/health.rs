//! Liveness and readiness probes.

use std::time::{Duration, Instant};

use reqwest::StatusCode;
use secrecy::SecretString;
use serde_json::json;

use crate::helpers::{
    Backend, POSTGRES_ADDR, ProxyMode, REDIS_ADDR, TcpProxy, TestApp, TestEnv, backend_tests,
    expect_json,
};

backend_tests!(liveness_answers_ok, readiness_reports_every_dependency);

async fn liveness_answers_ok(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let body = expect_json(app.get("/health").await, StatusCode::OK).await;
    assert_eq!(body, json!({ "status": "ok" }));
    app.stop().await;
}

async fn readiness_reports_every_dependency(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let body = expect_json(app.get("/health/ready").await, StatusCode::OK).await;
    let redis = match backend {
        Backend::Sqlite | Backend::Postgres => "not_configured",
        Backend::PostgresRedis => "ok",
    };
    assert_eq!(
        body,
        json!({ "status": "ready", "checks": { "database": "ok", "redis": redis } })
    );
    app.stop().await;
}

/// An app whose Redis connection goes through a proxy the test can break.
async fn spawn_behind_redis_proxy() -> (TestApp, TcpProxy) {
    let proxy = TcpProxy::start(REDIS_ADDR).await;
    let mut env = TestEnv::new(Backend::PostgresRedis).await;
    env.settings.redis_url = Some(SecretString::from(proxy.redis_url()));
    (env.spawn().await, proxy)
}

async fn assert_not_ready_because_of_redis(app: &TestApp) {
    let started = Instant::now();
    let body = expect_json(
        app.get("/health/ready").await,
        StatusCode::SERVICE_UNAVAILABLE,
    )
    .await;
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "readiness took {:?}",
        started.elapsed()
    );
    assert_eq!(body["status"], "unavailable", "{body}");
    assert_eq!(
        body["checks"],
        json!({ "database": "ok", "redis": "unavailable" }),
        "{body}"
    );
    assert_eq!(body["error"]["code"], "not_ready", "{body}");
    assert_eq!(body["error"]["message"], "unavailable: redis", "{body}");
}

async fn assert_alive_and_fast(app: &TestApp) {
    let started = Instant::now();
    let body = expect_json(app.get("/health").await, StatusCode::OK).await;
    assert_eq!(body, json!({ "status": "ok" }));
    assert!(
        started.elapsed() < Duration::from_millis(500),
        "liveness took {:?}",
        started.elapsed()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readiness_names_refused_redis_while_liveness_stays_ok() {
    let (app, proxy) = spawn_behind_redis_proxy().await;
    expect_json(app.get("/health/ready").await, StatusCode::OK).await;

    proxy.set(ProxyMode::Refuse);
    assert_not_ready_because_of_redis(&app).await;
    assert_alive_and_fast(&app).await;
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readiness_names_hung_redis_within_the_timeout_while_liveness_stays_ok() {
    let (app, proxy) = spawn_behind_redis_proxy().await;
    expect_json(app.get("/health/ready").await, StatusCode::OK).await;

    proxy.set(ProxyMode::BlackHole);
    // Liveness answers at once even while a readiness probe is stuck on Redis.
    tokio::join!(
        assert_not_ready_because_of_redis(&app),
        assert_alive_and_fast(&app)
    );
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readiness_names_hung_postgres_within_the_timeout_while_liveness_stays_ok() {
    let proxy = TcpProxy::start(POSTGRES_ADDR).await;
    let mut env = TestEnv::new(Backend::PostgresRedis).await;
    env.settings.database_url = SecretString::from(env.db.url_through(&proxy));
    let app = env.spawn().await;
    expect_json(app.get("/health/ready").await, StatusCode::OK).await;

    proxy.set(ProxyMode::BlackHole);
    let started = Instant::now();
    let (body, ()) = tokio::join!(
        async {
            expect_json(
                app.get("/health/ready").await,
                StatusCode::SERVICE_UNAVAILABLE,
            )
            .await
        },
        assert_alive_and_fast(&app)
    );
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "readiness took {:?}",
        started.elapsed()
    );
    assert_eq!(body["status"], "unavailable", "{body}");
    assert_eq!(
        body["checks"],
        json!({ "database": "unavailable", "redis": "ok" }),
        "{body}"
    );
    assert_eq!(body["error"]["message"], "unavailable: database", "{body}");
    app.stop().await;
}
