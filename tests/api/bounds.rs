//! Tables that cannot grow without bound (sessions per user, pending accounts, sweep
//! backlogs), and inputs normalised or refused at the edge (internationalised domains, request
//! ids).

use std::time::Duration;

use aidlc_auth::clock::Clock;
use aidlc_auth::domain::CodePurpose;
use reqwest::StatusCode;

use crate::helpers::{
    Backend, PASSWORD, REDIS_URL, TestApp, TestEnv, backend_tests, expect_error, expect_json,
    expect_session, refresh_token, session_id, unique_email,
};

backend_tests!(
    a_new_session_past_the_per_user_limit_ends_the_oldest,
    concurrent_logins_to_one_account_never_pass_the_per_user_limit,
    pending_accounts_never_verified_are_deleted_after_their_ttl,
    a_large_sweep_backlog_drains_in_batches,
    an_internationalised_domain_and_its_punycode_are_one_account,
    only_short_safe_request_ids_are_kept,
);

const WEEK: u64 = 7 * 86_400;

/// Redis key names carry neither the address nor its plain SHA-256 (which a list of candidate
/// addresses reverses), only an HMAC under the server's key.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_key_names_reveal_no_address() {
    use sha2::{Digest, Sha256};

    let app = TestApp::spawn(Backend::PostgresRedis).await;
    let email = unique_email("keyname");
    app.register_pending(&email, PASSWORD, "Key Name").await;
    let prefix = app.db().redis_prefix.clone();
    let client = redis::Client::open(REDIS_URL).expect("a Redis URL");
    let mut conn = client
        .get_multiplexed_async_connection()
        .await
        .expect("connecting to the suite's Redis");
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg(format!("{prefix}*"))
        .query_async(&mut conn)
        .await
        .expect("KEYS");
    // Besides the rate-limit counters (`rl:`), which carry an HMAC of the address or IP too.
    let stored = keys.iter().filter(|k| !k.contains(":rl:")).count();
    assert_eq!(stored, 2, "a code and a cooldown: {keys:?}");
    assert!(
        keys.len() > stored,
        "the registration was counted: {keys:?}"
    );
    let plain = format!("{:x}", Sha256::digest(email.as_bytes()));
    for key in &keys {
        assert!(!key.contains(&email) && !key.contains(&plain), "{key}");
        let digest = key.rsplit(':').next().expect("a digest");
        assert_eq!(digest.len(), 64, "{key}");
    }
    app.stop().await;
}

/// Waits (up to 10 s) until `sql` counts `expected`; the sweeper runs every second here.
async fn eventually_counts(app: &TestApp, sql: &'static str, expected: i64) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let n = app.db().scalar_i64(sql).await;
        if n == expected {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{sql}: {n}, expected {expected}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn a_new_session_past_the_per_user_limit_ends_the_oldest(backend: Backend) {
    let mut env = TestEnv::new(backend).await;
    env.settings.max_sessions_per_user = 3;
    let app = env.spawn().await;
    let email = unique_email("limit");
    let mut sessions = vec![app.register_active(&email, PASSWORD, "Limit").await];
    for _ in 0..3 {
        app.advance(1);
        sessions.push(expect_session(app.login_password(&email, PASSWORD).await).await);
    }

    // Four logins, a limit of three: the first session is over, the other three live.
    expect_error(
        app.refresh(&refresh_token(&sessions[0])).await,
        StatusCode::UNAUTHORIZED,
        "invalid_refresh_token",
    )
    .await;
    let newest = crate::helpers::token(&sessions[3]);
    let listed = expect_json(app.sessions(&newest).await, StatusCode::OK).await;
    let mut ids: Vec<String> = listed["sessions"]
        .as_array()
        .expect("sessions")
        .iter()
        .map(|s| s["id"].as_str().expect("id").to_owned())
        .collect();
    ids.sort();
    let mut expected: Vec<String> = sessions[1..].iter().map(session_id).collect();
    expected.sort();
    assert_eq!(ids, expected);
    for session in &sessions[1..] {
        expect_session(app.refresh(&refresh_token(session)).await).await;
    }
    app.stop().await;
}

/// Logins to one account at once take turns on the account's row: each counts the sessions
/// the others committed, so the limit holds however they interleave. On PostgreSQL the audit
/// table is locked meanwhile, so all of them are inside their session's transaction at once
/// (each after writing its session, before its audit event) when the lock goes.
async fn concurrent_logins_to_one_account_never_pass_the_per_user_limit(backend: Backend) {
    const LOGINS: i64 = 8;
    let mut env = TestEnv::new(backend).await;
    env.settings.max_sessions_per_user = 2;
    // A connection for each login, and two to spare for the limiter's statements.
    env.settings.database_max_connections = LOGINS as u32 + 2;
    let app = env.spawn().await;
    let email = unique_email("racing");
    app.register_active(&email, PASSWORD, "Racing").await;
    let blocker = app.db().block_inserts_into("auth_events").await;
    let logins =
        futures::future::join_all((0..LOGINS).map(|_| app.login_password(&email, PASSWORD)));
    let release = async {
        let Some(mut blocker) = blocker else { return };
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        while app.db().lock_waiters().await < LOGINS {
            assert!(
                tokio::time::Instant::now() < deadline,
                "the logins never all waited"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        sqlx::raw_sql("COMMIT")
            .execute(&mut blocker)
            .await
            .expect("COMMIT");
    };
    let (responses, ()) = tokio::join!(logins, release);
    for response in responses {
        expect_session(response).await;
    }
    let live = app
        .db()
        .scalar_i64("SELECT COUNT(*) FROM sessions WHERE revoked_at IS NULL")
        .await;
    assert_eq!(
        live, 2,
        "live sessions after {LOGINS} logins with a limit of two"
    );
    app.stop().await;
}

async fn pending_accounts_never_verified_are_deleted_after_their_ttl(backend: Backend) {
    let mut env = TestEnv::new(backend).await;
    env.settings.sweep_interval = Duration::from_secs(1);
    let app = env.spawn().await;
    let abandoned = unique_email("abandoned");
    let renewed = unique_email("renewed");
    app.register_pending(&abandoned, PASSWORD, "Abandoned")
        .await;
    app.register_pending(&renewed, PASSWORD, "Renewed").await;
    app.register_active(&unique_email("active"), PASSWORD, "Active")
        .await;

    // Six days on, one of them registers again: their week starts over.
    app.advance(WEEK - 86_400);
    app.register_pending(&renewed, PASSWORD, "Renewed").await;
    app.advance(86_400 + 1);
    eventually_counts(
        &app,
        "SELECT COUNT(*) FROM users WHERE status = 'pending'",
        1,
    )
    .await;
    assert_eq!(app.db().count_users().await, 2, "the active account stays");
    // The address is free again: registering it starts a new account.
    let code = app
        .register_pending(&abandoned, PASSWORD, "Back Again")
        .await;
    let session = expect_session(app.verify_registration(&abandoned, &code).await).await;
    assert_eq!(session["user"]["full_name"], "Back Again");
    app.stop().await;
}

async fn a_large_sweep_backlog_drains_in_batches(backend: Backend) {
    let mut env = TestEnv::new(backend).await;
    env.settings.sweep_interval = Duration::from_secs(1);
    let app = env.spawn().await;
    // 2,500 cooldowns ending in an hour: more than two batches of 1,000.
    let until = (app.env.clock.now() + time::Duration::hours(1))
        .format(&time::format_description::well_known::Rfc3339)
        .expect("a timestamp");
    let insert = format!(
        "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 2500) \
         INSERT INTO code_cooldowns (email, purpose, until) \
         SELECT 'backlog' || i || '@example.com', 'login', '{until}' \
         FROM n RETURNING CAST(1 AS BIGINT)"
    );
    assert_eq!(app.db().scalar_i64(insert.leak()).await, 1);
    let count = "SELECT COUNT(*) FROM code_cooldowns";
    assert_eq!(app.db().scalar_i64(count).await, 2500, "none expired yet");
    // Two hours on, every one of them is expired: the next sweeps drain them all.
    app.advance(2 * 3600);
    eventually_counts(&app, "SELECT COUNT(*) FROM code_cooldowns", 0).await;
    app.stop().await;
}

async fn an_internationalised_domain_and_its_punycode_are_one_account(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let local = unique_email("idn")
        .split('@')
        .next()
        .expect("local part")
        .to_owned();
    let unicode = format!("{local}@Bücher.example");
    let ascii = format!("{local}@xn--bcher-kva.example");
    let registered = app.register(&unicode, PASSWORD, "IDN").await;
    assert_eq!(registered.status(), StatusCode::ACCEPTED);
    // Mail goes to the stored, ASCII form.
    let code = app
        .mailbox()
        .last_code_for(&ascii, CodePurpose::Registration);
    let session = expect_session(app.verify_registration(&ascii, &code).await).await;
    assert_eq!(session["user"]["email"], ascii.as_str());
    app.advance(61);
    app.register(&ascii, PASSWORD, "IDN").await;
    assert_eq!(app.db().count_users().await, 1);
    assert_eq!(app.mailbox().notices_for(&ascii), 1);
    expect_session(app.login_password(&unicode, PASSWORD).await).await;
    assert!(
        app.mailbox()
            .codes_for(&unicode, CodePurpose::Registration)
            .is_empty()
    );
    app.stop().await;
}

async fn only_short_safe_request_ids_are_kept(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let echoed = |value: String| {
        let request = app
            .client
            .get(app.url("/health"))
            .header("x-request-id", value);
        async move {
            let response = request.send().await.expect("GET /health");
            assert_eq!(response.status(), StatusCode::OK);
            response
                .headers()
                .get("x-request-id")
                .and_then(|v| v.to_str().ok())
                .expect("every response carries a request id")
                .to_owned()
        }
    };
    let safe = "trace-01.AB_cd";
    assert_eq!(echoed(safe.to_owned()).await, safe);
    let longest = "a".repeat(64);
    assert_eq!(echoed(longest.clone()).await, longest);
    for unsafe_id in [
        "a".repeat(65),
        "id with spaces".to_owned(),
        "forged\" level=error msg=\"x".to_owned(),
        "{\"json\":1}".to_owned(),
    ] {
        let got = echoed(unsafe_id.clone()).await;
        assert_ne!(got, unsafe_id);
        assert!(
            uuid::Uuid::parse_str(&got).is_ok(),
            "a fresh id replaces {unsafe_id:?}: {got}"
        );
    }
    app.stop().await;
}
