//! TLS to PostgreSQL and Redis, against real TLS servers the suite starts: a TLS-only
//! PostgreSQL (`hostssl` alone) and a TLS Redis with a password, both with certificates from a
//! test CA that name only `localhost` and 127.0.0.1.

use std::path::PathBuf;

use aidlc_auth::config::{DatabaseTls, Environment};
use reqwest::StatusCode;
use secrecy::SecretString;

use crate::helpers::{Backend, PASSWORD, TestApp, TestEnv, expect_json, unique_email};
use crate::support::database::TestDatabase;
use crate::support::servers::{postgres_tls, redis_tls};

/// An environment whose database is on the TLS-only PostgreSQL, reached by `host`, with the
/// URL carrying no TLS parameter: the mode and CA come from `tls` and `ca`.
async fn env_on_tls_postgres(host: &str, tls: Option<DatabaseTls>, ca: Option<PathBuf>) -> TestEnv {
    let db = TestDatabase::create_on(Backend::Postgres, &postgres_tls().postgres).await;
    let mut env = TestEnv::with_database(Backend::Postgres, db);
    env.settings.database_url = SecretString::from(plain_url(&env.db.direct_url, host));
    env.settings.database_tls = tls;
    env.settings.database_ca_file = ca;
    env
}

/// `url` reaching `host`, without its query (`sslmode`, `sslrootcert`).
fn plain_url(url: &str, host: &str) -> String {
    let mut url = url::Url::parse(url).expect("a database URL");
    url.set_query(None);
    url.set_host(Some(host)).expect("a host");
    url.to_string()
}

/// The start-up error of an app on `env`, in full (`{:#}`); panics if it started.
async fn start_up_error(env: &TestEnv) -> String {
    match env.try_spawn().await {
        Ok(app) => {
            app.stop().await;
            panic!("the app started");
        }
        Err(e) => format!("{e:#}"),
    }
}

/// A registration is accepted and its row is in the database.
async fn assert_serves_a_registration(app: &TestApp) {
    let email = unique_email("tls");
    app.register_pending(&email, PASSWORD, "Kim Tls").await;
    assert_eq!(app.db().count_users().await, 1);
    expect_json(app.get("/health/ready").await, StatusCode::OK).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verify_full_with_the_right_ca_connects_and_serves_a_registration() {
    let ca = postgres_tls().tls.ca.clone();
    let env = env_on_tls_postgres("127.0.0.1", Some(DatabaseTls::VerifyFull), Some(ca)).await;
    let app = env.spawn().await;
    assert_serves_a_registration(&app).await;
    app.stop().await;

    // By name too: the certificate names localhost.
    let ca = postgres_tls().tls.ca.clone();
    let env = env_on_tls_postgres("localhost", Some(DatabaseTls::VerifyFull), Some(ca)).await;
    let app = env.spawn().await;
    assert_serves_a_registration(&app).await;
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_url_sslmode_and_sslrootcert_are_used_and_the_settings_override_them() {
    let mut env = env_on_tls_postgres("127.0.0.1", None, None).await;
    // The harness's own URL: sslmode=verify-full&sslrootcert=<the test CA>.
    env.settings.database_url = SecretString::from(env.db.direct_url.clone());
    let app = env.spawn().await;
    assert_serves_a_registration(&app).await;
    app.stop().await;

    env.settings.database_ca_file = Some(postgres_tls().tls.other_ca.clone());
    let error = start_up_error(&env).await;
    assert!(error.contains("UnknownIssuer"), "{error}");

    env.settings.database_ca_file = None;
    env.settings.database_tls = Some(DatabaseTls::Disable);
    let error = start_up_error(&env).await;
    assert!(error.contains("no encryption"), "{error}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verify_full_with_a_wrong_ca_fails_and_names_the_ca_setting() {
    let other = postgres_tls().tls.other_ca.clone();
    let env = env_on_tls_postgres("127.0.0.1", Some(DatabaseTls::VerifyFull), Some(other)).await;
    let error = start_up_error(&env).await;
    assert!(error.contains("UnknownIssuer"), "{error}");
    assert!(error.contains("AIDLC_DATABASE_CA_FILE"), "{error}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verify_full_by_a_name_the_certificate_does_not_hold_fails() {
    let ca = postgres_tls().tls.ca.clone();
    let env = env_on_tls_postgres("127.0.0.2", Some(DatabaseTls::VerifyFull), Some(ca)).await;
    let error = start_up_error(&env).await;
    assert!(error.contains("not valid for name"), "{error}");
    assert!(error.contains("does not name the host"), "{error}");

    // The same server and CA by the same name: verify-ca skips only the name check.
    let mut env = env;
    env.settings.database_tls = Some(DatabaseTls::VerifyCa);
    let app = env.spawn().await;
    assert_serves_a_registration(&app).await;
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn disable_gets_the_servers_refusal_and_says_what_to_set() {
    let env = env_on_tls_postgres("127.0.0.1", Some(DatabaseTls::Disable), None).await;
    let error = start_up_error(&env).await;
    assert!(error.contains("no pg_hba.conf entry"), "{error}");
    assert!(error.contains("no encryption"), "{error}");
    assert!(
        error.contains("the server requires TLS: set AIDLC_DATABASE_TLS=verify-full"),
        "{error}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn staging_verifies_against_the_built_in_rds_bundle_by_default() {
    let mut env = env_on_tls_postgres("127.0.0.1", None, None).await;
    env.settings.environment = Environment::Staging;
    env.settings.allow_embedded_stores = true;
    // verify-full against the Amazon RDS CAs: the test CA is not one of them.
    let error = start_up_error(&env).await;
    assert!(error.contains("TLS verify-full"), "{error}");
    assert!(error.contains("UnknownIssuer"), "{error}");

    // Development's default, prefer, takes whatever certificate the server shows.
    env.settings.environment = Environment::Development;
    let app = env.spawn().await;
    assert_serves_a_registration(&app).await;
    app.stop().await;
}

/// A PostgreSQL + Redis environment whose Redis is the TLS one, with `token` and `ca`.
async fn env_on_tls_redis(token: Option<&str>, ca: Option<PathBuf>) -> TestEnv {
    let mut env = TestEnv::new(Backend::PostgresRedis).await;
    env.settings.redis_url = Some(SecretString::from(redis_tls().url.clone()));
    env.settings.redis_auth_token = token.map(SecretString::from);
    env.settings.redis_ca_file = ca;
    env
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rediss_with_the_right_ca_and_token_runs_a_code_flow() {
    let redis = redis_tls();
    let env = env_on_tls_redis(Some(&redis.auth_token), Some(redis.tls.ca.clone())).await;
    let app = env.spawn().await;
    let body = expect_json(app.get("/health/ready").await, StatusCode::OK).await;
    assert_eq!(body["checks"]["redis"], "ok", "{body}");

    let email = unique_email("rediss");
    let session = app.register_active(&email, PASSWORD, "Lee Rediss").await;
    assert!(session["access_token"].is_string(), "{session}");
    // The login code went through the TLS Redis too: it is spent once and only once.
    assert_eq!(app.request_login_code(&email).await.status(), 202);
    let code = app
        .mailbox()
        .last_code_for(&email, aidlc_auth::domain::CodePurpose::Login);
    expect_json(app.verify_login(&email, &code).await, StatusCode::OK).await;
    let again = app.verify_login(&email, &code).await;
    assert_eq!(again.status(), StatusCode::BAD_REQUEST);
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rediss_with_a_wrong_ca_fails_at_start_up() {
    let redis = redis_tls();
    let env = env_on_tls_redis(Some(&redis.auth_token), Some(redis.tls.other_ca.clone())).await;
    let error = start_up_error(&env).await;
    assert!(error.contains("connecting to Redis"), "{error}");
    assert!(error.contains("AIDLC_REDIS_CA_FILE"), "{error}");
    assert!(!error.contains(&redis.auth_token), "{error}");

    // Without a CA file: the public web roots, which did not sign the test CA either.
    let env = env_on_tls_redis(Some(&redis.auth_token), None).await;
    let error = start_up_error(&env).await;
    assert!(error.contains("not signed by a trusted CA"), "{error}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rediss_with_a_wrong_or_missing_token_fails_at_start_up() {
    let redis = redis_tls();
    let env = env_on_tls_redis(Some("not-the-token"), Some(redis.tls.ca.clone())).await;
    let error = start_up_error(&env).await;
    assert!(error.contains("AIDLC_REDIS_AUTH_TOKEN"), "{error}");
    assert!(!error.contains("not-the-token"), "{error}");

    let env = env_on_tls_redis(None, Some(redis.tls.ca.clone())).await;
    let error = start_up_error(&env).await;
    assert!(error.contains("AIDLC_REDIS_AUTH_TOKEN"), "{error}");
}
