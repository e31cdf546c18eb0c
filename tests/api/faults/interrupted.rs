//! A verification interrupted between its writes: the code is spent in the code store, then
//! the next write (the account's activation, the session) fails, as a database going away
//! mid-request would make it. The answer is a 503, and the code the owner was mailed still
//! works for the retry it asks for.

use aidlc_auth::domain::CodePurpose;
use reqwest::StatusCode;

use crate::helpers::{
    Backend, PASSWORD, TestApp, backend_tests, expect_error, expect_json, expect_session,
    unique_email,
};

backend_tests!(
    verification_whose_activation_fails_is_503_and_the_same_code_works_on_retry,
    code_login_whose_session_fails_is_503_and_the_same_code_works_on_retry,
);

/// A trigger refusing one kind of write: (PostgreSQL function, PostgreSQL trigger, its drop,
/// SQLite trigger, its drop).
type Refusal = [&'static str; 5];

const REFUSE_FUNCTION: &str = "CREATE FUNCTION refuse_write() RETURNS trigger \
     LANGUAGE plpgsql AS $$ BEGIN RAISE EXCEPTION 'refused by the test'; END $$";

const REFUSE_USER_UPDATES: Refusal = [
    REFUSE_FUNCTION,
    "CREATE TRIGGER refuse_write BEFORE UPDATE ON users \
     FOR EACH ROW EXECUTE FUNCTION refuse_write()",
    "DROP TRIGGER refuse_write ON users",
    "CREATE TRIGGER refuse_write BEFORE UPDATE ON users \
     BEGIN SELECT RAISE(ABORT, 'refused by the test'); END",
    "DROP TRIGGER refuse_write",
];

const REFUSE_NEW_SESSIONS: Refusal = [
    REFUSE_FUNCTION,
    "CREATE TRIGGER refuse_write BEFORE INSERT ON sessions \
     FOR EACH ROW EXECUTE FUNCTION refuse_write()",
    "DROP TRIGGER refuse_write ON sessions",
    "CREATE TRIGGER refuse_write BEFORE INSERT ON sessions \
     BEGIN SELECT RAISE(ABORT, 'refused by the test'); END",
    "DROP TRIGGER refuse_write",
];

async fn refuse(app: &TestApp, backend: Backend, refusal: Refusal) {
    if backend.is_postgres() {
        app.db().execute(refusal[0]).await;
        app.db().execute(refusal[1]).await;
    } else {
        app.db().execute(refusal[3]).await;
    }
}

async fn allow(app: &TestApp, backend: Backend, refusal: Refusal) {
    let drop = if backend.is_postgres() {
        refusal[2]
    } else {
        refusal[4]
    };
    app.db().execute(drop).await;
}

async fn expect_unavailable(response: reqwest::Response) {
    expect_error(
        response,
        StatusCode::SERVICE_UNAVAILABLE,
        "service_unavailable",
    )
    .await;
}

async fn verification_whose_activation_fails_is_503_and_the_same_code_works_on_retry(
    backend: Backend,
) {
    let app = TestApp::spawn(backend).await;
    let email = unique_email("interrupted");
    let code = app.register_pending(&email, PASSWORD, "Interrupted").await;

    refuse(&app, backend, REFUSE_USER_UPDATES).await;
    expect_unavailable(app.verify_registration(&email, &code).await).await;
    let pending = "SELECT count(*) FROM users WHERE status = 'pending'";
    assert_eq!(app.db().scalar_i64(pending).await, 1);

    allow(&app, backend, REFUSE_USER_UPDATES).await;
    let session = expect_session(app.verify_registration(&email, &code).await).await;
    assert_eq!(session["user"]["email"], email);
    app.stop().await;
}

async fn code_login_whose_session_fails_is_503_and_the_same_code_works_on_retry(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let email = unique_email("interrupted");
    app.register_active(&email, PASSWORD, "Interrupted").await;
    expect_json(app.request_login_code(&email).await, StatusCode::ACCEPTED).await;
    let code = app.mailbox().last_code_for(&email, CodePurpose::Login);

    refuse(&app, backend, REFUSE_NEW_SESSIONS).await;
    expect_unavailable(app.verify_login(&email, &code).await).await;

    allow(&app, backend, REFUSE_NEW_SESSIONS).await;
    expect_session(app.verify_login(&email, &code).await).await;
    app.stop().await;
}
