//! `AIDLC_DB_SECRET`: the RDS secret's JSON, as ECS injects it, is the database's address and
//! credentials, on a PostgreSQL that checks passwords.

use aidlc_auth::config::{DbSecret, Settings};
use reqwest::StatusCode;
use serde_json::json;

use crate::helpers::{Backend, PASSWORD, TestEnv, expect_json, unique_email};
use crate::support::servers::postgres_scram::PasswordRole;

/// One test per PostgreSQL row (a database secret has no meaning for SQLite).
macro_rules! postgres_tests {
    ($($name:ident),+ $(,)?) => {
        $(
            mod $name {
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn postgres() {
                    super::$name($crate::support::backend::Backend::Postgres).await;
                }

                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn postgres_redis() {
                    super::$name($crate::support::backend::Backend::PostgresRedis).await;
                }
            }
        )+
    };
}

postgres_tests!(
    the_database_url_is_built_from_the_injected_secret,
    a_secret_with_the_wrong_password_stops_start_up_without_showing_it,
);

/// A password with every character a URL treats specially.
const SECRET_PASSWORD: &str = "inj3cted@pa:ss/w%rd?#&";

/// A test environment whose apps connect with `secret` for `role` (and no `DATABASE_URL`).
async fn env_with_secret(backend: Backend, role: &PasswordRole, password: &str) -> TestEnv {
    let json = json!({
        "username": role.name,
        "password": password,
        "engine": "postgres",
        "host": role.host,
        "port": role.port,
        "dbname": role.name,
    })
    .to_string();
    let mut env = TestEnv::new(backend).await;
    env.settings.database_url = Settings::default().database_url;
    env.settings.db_secret = Some(DbSecret::parse(&json).expect("an RDS secret"));
    env
}

async fn the_database_url_is_built_from_the_injected_secret(backend: Backend) {
    let role = PasswordRole::create(SECRET_PASSWORD).await;
    let app = env_with_secret(backend, &role, SECRET_PASSWORD)
        .await
        .spawn()
        .await;
    expect_json(app.get("/health/ready").await, StatusCode::OK).await;
    expect_json(
        app.register(&unique_email("db-secret"), PASSWORD, "Secret")
            .await,
        StatusCode::ACCEPTED,
    )
    .await;
    assert_eq!(
        role.count_users().await,
        1,
        "the account is where the secret points"
    );
    app.stop().await;
}

async fn a_secret_with_the_wrong_password_stops_start_up_without_showing_it(backend: Backend) {
    let role = PasswordRole::create(SECRET_PASSWORD).await;
    let wrong = "wr0ng@password";
    let Err(e) = env_with_secret(backend, &role, wrong)
        .await
        .try_spawn()
        .await
    else {
        panic!("started with a wrong password");
    };
    let shown = format!("{e:#}");
    assert!(shown.contains("password authentication failed"), "{shown}");
    assert!(
        !shown.contains(wrong) && !shown.contains("wr0ng"),
        "{shown}"
    );
}
