//! `--features aws` against the suite's local AWS (moto): mail through Amazon SES, and
//! PostgreSQL credentials read from Secrets Manager, re-read when a rotation changes the
//! password under the running service.

use aidlc_auth::config::EmailTransport;
use aws_sdk_secretsmanager::Client as SecretsClient;
use reqwest::StatusCode;
use serde_json::json;

use crate::helpers::{
    Backend, PASSWORD, TestEnv, backend_tests, expect_json, expect_session, unique_email,
};
use crate::support::servers::moto;
use crate::support::servers::postgres_scram::PasswordRole;
use crate::support::servers::redis::{REDIS_PASSWORD, redis_with_password};

backend_tests!(
    registration_mail_sent_through_ses_carries_the_code_that_verifies_the_account,
    a_sender_ses_has_not_verified_is_refused_for_good,
);

// Redis exists on one row only.
mod the_redis_auth_token_is_read_from_secrets_manager {
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn postgres_redis() {
        super::the_redis_auth_token_is_read_from_secrets_manager(
            crate::support::backend::Backend::PostgresRedis,
        )
        .await;
    }
}

/// Generates, for each scenario, one test per PostgreSQL row: a database secret has no
/// meaning for SQLite.
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
    the_database_url_is_built_from_a_secrets_manager_secret,
    a_rotated_password_is_picked_up_by_the_next_request_without_a_restart,
);

/// The domain of the app's default sender, verified in moto's SES once.
const SENDER_DOMAIN: &str = "aidlc.local";

/// A test environment whose apps send mail through SES (moto), from a verified domain.
async fn ses_env(backend: Backend) -> TestEnv {
    let ses = aws_sdk_sesv2::Client::new(&moto().config);
    // Verified once per run; creating it again only says it exists.
    let _ = ses
        .create_email_identity()
        .email_identity(SENDER_DOMAIN)
        .send()
        .await;
    let mut env = TestEnv::new(backend).await;
    env.settings.email_transport = EmailTransport::Ses;
    env.capture_mail = false;
    env
}

async fn registration_mail_sent_through_ses_carries_the_code_that_verifies_the_account(
    backend: Backend,
) {
    let app = ses_env(backend).await.spawn().await;
    let email = unique_email("ses");
    expect_json(
        app.register(&email, PASSWORD, "김철수").await,
        StatusCode::ACCEPTED,
    )
    .await;
    app.mailbox().settled().await;

    let mut mail = moto().ses_mail_for(&email).await;
    assert_eq!(mail.len(), 1, "SES mail for {email}: {mail:#?}");
    let mail = mail.remove(0);
    assert_eq!(mail.source, "AIDLC <no-reply@aidlc.local>");
    assert_eq!(mail.destinations["ToAddresses"], vec![email.clone()]);
    assert_eq!(mail.subject, "[AIDLC] 이메일 주소 확인 코드");
    assert!(mail.body.contains("김철수님, 안녕하세요."), "{}", mail.body);
    assert!(
        !mail.body.contains(PASSWORD),
        "the password is never mailed"
    );
    let rows = app.db().outbox_rows().await;
    assert_eq!(
        (rows[0].status.as_str(), rows[0].attempts),
        ("sent", 1),
        "{rows:#?}"
    );

    let session = expect_session(app.verify_registration(&email, &mail.code()).await).await;
    assert_eq!(session["user"]["email"], email);
    app.stop().await;
}

async fn a_sender_ses_has_not_verified_is_refused_for_good(backend: Backend) {
    let mut env = ses_env(backend).await;
    env.settings.email_from = "AIDLC <no-reply@unverified.example>".to_owned();
    let app = env.spawn().await;
    let email = unique_email("ses-refused");
    expect_json(
        app.register(&email, PASSWORD, "Refused").await,
        StatusCode::ACCEPTED,
    )
    .await;
    app.mailbox().settled().await;

    assert!(moto().ses_mail_for(&email).await.is_empty());
    // SES's MessageRejected is permanent: dead at the first attempt, not retried.
    let rows = app.db().outbox_rows().await;
    assert_eq!(
        (rows[0].status.as_str(), rows[0].attempts),
        ("dead", 1),
        "{rows:#?}"
    );
    let error = rows[0].last_error.as_deref().unwrap_or_default();
    assert!(error.contains("MessageRejected"), "{error}");
    app.stop().await;
}

/// A password with every character a URL or a connection string treats specially.
const FIRST_PASSWORD: &str = "f1rst@pa:ss/w%rd?#&'";
const ROTATED_PASSWORD: &str = "r0tated@pa:ss/w%41rd?#&";

/// The RDS secret's JSON for `role` with `password`, as RDS writes it.
fn rds_secret(role: &PasswordRole, password: &str) -> String {
    json!({
        "username": role.name,
        "password": password,
        "engine": "postgres",
        "host": role.host,
        "port": role.port,
        "dbname": role.name,
        "dbInstanceIdentifier": "aidlc-test",
    })
    .to_string()
}

/// A role on the password-checking PostgreSQL, a secret in moto holding its credentials, and
/// a test environment whose apps read that secret (and nothing else) for their database.
async fn secret_env(backend: Backend) -> (TestEnv, PasswordRole, SecretsClient, String) {
    let role = PasswordRole::create(FIRST_PASSWORD).await;
    let secrets = SecretsClient::new(&moto().config);
    let created = secrets
        .create_secret()
        .name(format!("rds/{}", role.name))
        .secret_string(rds_secret(&role, FIRST_PASSWORD))
        .send()
        .await
        .expect("creating the secret in moto");
    let arn = created.arn().expect("the new secret's ARN").to_owned();
    let mut env = TestEnv::new(backend).await;
    env.settings.database_url = aidlc_auth::config::Settings::default().database_url;
    env.settings.db_secret_arn = Some(arn.clone());
    // After the rotation the pool discards every connection it had and logs in again with
    // SCRAM (slow in a debug build): more than the default 1 s on a busy test machine.
    env.settings.dependency_timeout = std::time::Duration::from_secs(5);
    (env, role, secrets, arn)
}

async fn the_database_url_is_built_from_a_secrets_manager_secret(backend: Backend) {
    let (env, role, _, _) = secret_env(backend).await;
    let app = env.spawn().await;
    expect_json(app.get("/health/ready").await, StatusCode::OK).await;
    expect_json(
        app.register(&unique_email("secret-url"), PASSWORD, "Secret")
            .await,
        StatusCode::ACCEPTED,
    )
    .await;
    // The account is in the database the secret names.
    assert_eq!(role.count_users().await, 1);
    app.stop().await;
}

async fn a_rotated_password_is_picked_up_by_the_next_request_without_a_restart(backend: Backend) {
    let (env, role, secrets, arn) = secret_env(backend).await;
    let app = env.spawn().await;
    expect_json(
        app.register(&unique_email("before-rotation"), PASSWORD, "Before")
            .await,
        StatusCode::ACCEPTED,
    )
    .await;
    // A service that cannot re-read the secret: built from the same (old) credentials.
    let mut fixed = TestEnv::new(backend).await;
    fixed.settings.database_url = aidlc_auth::config::Settings::default().database_url;
    fixed.settings.db_secret =
        Some(aidlc_auth::config::DbSecret::parse(&rds_secret(&role, FIRST_PASSWORD)).unwrap());
    // The same database, so the same key-encryption key.
    fixed.settings.key_encryption_key = env.settings.key_encryption_key.clone();
    let stale = fixed.spawn().await;

    // The rotation, in Secrets Manager's order: the new secret, then the database's password.
    secrets
        .put_secret_value()
        .secret_id(&arn)
        .secret_string(rds_secret(&role, ROTATED_PASSWORD))
        .send()
        .await
        .expect("rotating the secret in moto");
    role.change_password(ROTATED_PASSWORD).await;

    // The next request that needs PostgreSQL meets the rejected password, and succeeds.
    expect_json(
        app.register(&unique_email("after-rotation"), PASSWORD, "After")
            .await,
        StatusCode::ACCEPTED,
    )
    .await;
    expect_json(app.get("/health/ready").await, StatusCode::OK).await;
    assert_eq!(role.count_users().await, 2);
    // Without the secret's re-read the same moment is an outage: the check can fail.
    expect_json(
        stale
            .register(&unique_email("stale"), PASSWORD, "Stale")
            .await,
        StatusCode::SERVICE_UNAVAILABLE,
    )
    .await;
    stale.stop().await;
    app.stop().await;
}

async fn the_redis_auth_token_is_read_from_secrets_manager(backend: Backend) {
    let secrets = SecretsClient::new(&moto().config);
    let created = secrets
        .create_secret()
        .name(format!("redis/{}", uuid::Uuid::new_v4().simple()))
        .secret_string(json!({ "token": REDIS_PASSWORD }).to_string())
        .send()
        .await
        .expect("creating the secret in moto");
    let mut env = TestEnv::new(backend).await;
    // The URL names the server only: the token comes from the secret.
    env.settings.redis_url = Some(redis_with_password().url.clone().into());
    let Err(e) = env.try_spawn().await else {
        panic!("started on a Redis that wants AUTH without a token");
    };
    assert!(format!("{e:#}").contains("Redis"), "{e:#}");

    env.settings.redis_auth_secret_arn = created.arn().map(str::to_owned);
    let app = env.spawn().await;
    expect_json(app.get("/health/ready").await, StatusCode::OK).await;
    // Codes live in that Redis: registration stores one there.
    let email = unique_email("redis-auth");
    expect_json(
        app.register(&email, PASSWORD, "Token").await,
        StatusCode::ACCEPTED,
    )
    .await;
    let mut redis = ::redis::Client::open(format!(
        "redis://:{REDIS_PASSWORD}@{}",
        redis_with_password().addr
    ))
    .unwrap()
    .get_multiplexed_async_connection()
    .await
    .unwrap();
    let keys: Vec<String> = ::redis::cmd("KEYS")
        .arg(format!("{}*", env.db.redis_prefix))
        .query_async(&mut redis)
        .await
        .unwrap();
    assert!(!keys.is_empty(), "no key under {}", env.db.redis_prefix);
    app.stop().await;
}
