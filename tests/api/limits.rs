//! Rate limits, guessing budgets and the client IP behind trusted proxies: what one client, or
//! guesses at one address, can get before the service answers 429.

use std::net::IpAddr;
use std::time::Duration;

use aidlc_auth::config::{Argon2Params, Settings};
use aidlc_auth::domain::{CodePurpose, RateLimit, daily_guess_odds};
use aidlc_auth::email::Message;
use futures::StreamExt;
use reqwest::StatusCode;
use reqwest::header::RETRY_AFTER;
use serde_json::{Value, json};

use crate::helpers::{
    Backend, PASSWORD, TestApp, TestEnv, backend_tests, expect_error, expect_json, expect_session,
    status_and_json, token, unique_email, wrong_code,
};

backend_tests!(
    a_password_flood_from_one_client_ip_does_not_deny_another_clients_logins,
    limits_hold_across_instances_and_answer_429_with_retry_after,
    a_request_refused_by_one_limit_counts_on_none_of_the_others,
    rotating_the_left_most_forwarded_for_entry_escapes_no_limit,
    behind_a_trusted_proxy_the_session_records_the_forwarded_client_ip,
    the_code_guess_budget_survives_resends_re_registration_and_new_codes,
    codes_issued_per_address_are_capped_alike_for_unknown_addresses,
    wrong_passwords_back_off_alike_for_known_and_unknown_addresses_and_notify_once,
);

fn limit(raw: &str) -> RateLimit {
    raw.parse().expect("a valid limit")
}

/// A client whose requests leave from `ip` (any 127.0.0.0/8 address is local), so the app
/// sees a client IP of its own.
fn client_from(ip: &str) -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .local_address(ip.parse::<IpAddr>().expect("an address"))
        .timeout(Duration::from_secs(30))
        .build()
        .expect("building the HTTP client")
}

/// `POST path` with `body` through `client`, with `X-Forwarded-For: forwarded` if given.
async fn post_as(
    app: &TestApp,
    client: &reqwest::Client,
    path: &str,
    body: &Value,
    forwarded: Option<&str>,
) -> reqwest::Response {
    let mut request = client.post(app.url(path)).json(body);
    if let Some(forwarded) = forwarded {
        request = request.header("x-forwarded-for", forwarded);
    }
    request.send().await.expect("POST failed")
}

/// Asserts a 429 `too_many_requests` with a `Retry-After` of at least one second and returns
/// its seconds.
async fn expect_limited(response: reqwest::Response) -> u64 {
    let retry_after: u64 = response
        .headers()
        .get(RETRY_AFTER)
        .unwrap_or_else(|| panic!("429 without Retry-After"))
        .to_str()
        .expect("ASCII")
        .parse()
        .expect("whole seconds");
    expect_error(response, StatusCode::TOO_MANY_REQUESTS, "too_many_requests").await;
    assert!(retry_after >= 1);
    retry_after
}

async fn a_password_flood_from_one_client_ip_does_not_deny_another_clients_logins(
    backend: Backend,
) {
    let mut env = TestEnv::new(backend).await;
    // The real cost: without the per-IP limit, this flood holds every hashing slot for
    // seconds and the other client's logins wait past the queue limit (503).
    env.settings.argon2 = Argon2Params::default();
    env.settings.rate_limit_ip = limit("4/1m");
    // What is under test is the hashing slots; a busy test machine must not turn slow
    // database answers into 503s.
    env.settings.dependency_timeout = Duration::from_secs(10);
    let app = env.spawn().await;
    let email = unique_email("victim");
    app.register_active(&email, PASSWORD, "Victim").await;

    let attacker = client_from("127.0.0.2");
    let flood = futures::stream::iter(0..300)
        .map(|i| {
            let (app, attacker) = (&app, &attacker);
            async move {
                let body =
                    json!({ "email": format!("target{i}@example.com"), "password": "guess it" });
                post_as(app, attacker, "/api/auth/login", &body, None)
                    .await
                    .status()
            }
        })
        .buffer_unordered(32)
        .collect::<Vec<_>>();
    let other = client_from("127.0.0.3");
    let logins = async {
        let mut statuses = Vec::new();
        // Within the per-IP limit of the other client.
        for _ in 0..4 {
            let body = json!({ "email": email, "password": PASSWORD });
            let response = post_as(&app, &other, "/api/auth/login", &body, None).await;
            statuses.push(response.status());
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        statuses
    };
    let (flood, logins) = tokio::join!(flood, logins);
    assert!(
        logins.iter().all(|s| *s == StatusCode::OK),
        "the other client's logins: {logins:?}"
    );
    let limited = flood
        .iter()
        .filter(|s| **s == StatusCode::TOO_MANY_REQUESTS)
        .count();
    let refused = flood
        .iter()
        .filter(|s| **s == StatusCode::UNAUTHORIZED)
        .count();
    assert_eq!((refused, limited), (4, 296), "the flood: {flood:?}");
    app.stop().await;
}

async fn limits_hold_across_instances_and_answer_429_with_retry_after(backend: Backend) {
    let mut env = TestEnv::new(backend).await;
    env.settings.rate_limit_ip = limit("4/1m");
    env.settings.rate_limit_refresh = limit("2/1m");
    let first = env.spawn().await;
    // SQLite is one instance's store; the shared stores are tried with two.
    let second = if backend.is_postgres() {
        Some(first.spawn_sibling().await)
    } else {
        None
    };
    let apps: Vec<&TestApp> = std::iter::once(&first).chain(second.as_ref()).collect();
    for i in 0..4 {
        let app = apps[i % apps.len()];
        let email = unique_email("any");
        expect_json(app.request_login_code(&email).await, StatusCode::ACCEPTED).await;
    }
    for app in &apps {
        let response = app.request_login_code(&unique_email("any")).await;
        let retry_after = expect_limited(response).await;
        assert!(retry_after <= 60, "{retry_after}");
    }
    // Another endpoint has its own counters.
    expect_json(
        first.resend_code(&unique_email("any"), "login").await,
        StatusCode::ACCEPTED,
    )
    .await;
    first.advance(61);
    expect_json(
        apps[apps.len() - 1]
            .request_login_code(&unique_email("any"))
            .await,
        StatusCode::ACCEPTED,
    )
    .await;

    // Refresh, per client IP, across instances too.
    let session = first
        .register_active(&unique_email("refresh"), PASSWORD, "Refresh")
        .await;
    let mut refresh_token = crate::helpers::refresh_token(&session);
    for app in apps.iter().cycle().take(2) {
        let renewed = expect_session(app.refresh(&refresh_token).await).await;
        refresh_token = crate::helpers::refresh_token(&renewed);
    }
    expect_limited(apps[0].refresh(&refresh_token).await).await;
    drop(apps);
    first.stop().await;
    if let Some(second) = second {
        second.stop().await;
    }
}

async fn a_request_refused_by_one_limit_counts_on_none_of_the_others(backend: Backend) {
    let mut env = TestEnv::new(backend).await;
    env.settings.rate_limit_ip = limit("2/1m");
    env.settings.rate_limit_address = limit("1/1m");
    let app = env.spawn().await;
    let busy = unique_email("busy");
    expect_json(app.request_login_code(&busy).await, StatusCode::ACCEPTED).await;
    // Over the address's limit (before its resend cooldown is looked at): refused, and not
    // counted against the client IP either.
    let refused = app.request_login_code(&busy).await;
    let (status, body) = status_and_json(refused).await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS, "{body}");
    assert!(
        !body.to_string().contains("sent recently"),
        "refused by the address limit, not the cooldown: {body}"
    );
    expect_json(
        app.request_login_code(&unique_email("other")).await,
        StatusCode::ACCEPTED,
    )
    .await;
    // The IP's third request was its last.
    expect_limited(app.request_login_code(&unique_email("third")).await).await;
    app.stop().await;
}

async fn rotating_the_left_most_forwarded_for_entry_escapes_no_limit(backend: Backend) {
    // No trusted proxy: the header is ignored and the peer is the client.
    let mut env = TestEnv::new(backend).await;
    env.settings.rate_limit_ip = limit("3/1m");
    let app = env.spawn().await;
    let client = client_from("127.0.0.4");
    let ask = |forwarded: String| {
        let (app, client) = (&app, &client);
        async move {
            let body = json!({ "email": unique_email("rotate") });
            post_as(app, client, "/api/auth/login", &body, Some(&forwarded)).await
        }
    };
    for i in 0..3 {
        expect_json(ask(format!("198.51.100.{i}")).await, StatusCode::ACCEPTED).await;
    }
    expect_limited(ask("198.51.100.99".into()).await).await;
    app.stop().await;

    // Behind a trusted proxy: the right-most untrusted entry is the client, whatever the
    // client wrote to its left.
    let mut env = TestEnv::new(backend).await;
    env.settings.rate_limit_ip = limit("3/1m");
    env.settings.trusted_proxies = Some("127.0.0.0/8".parse().expect("CIDR"));
    let app = env.spawn().await;
    let client = client_from("127.0.0.5");
    let ask = |forwarded: String| {
        let (app, client) = (&app, &client);
        async move {
            let body = json!({ "email": unique_email("rotate") });
            post_as(app, client, "/api/auth/login", &body, Some(&forwarded)).await
        }
    };
    for i in 0..3 {
        let forwarded = format!("198.51.100.{i}, 203.0.113.9");
        expect_json(ask(forwarded).await, StatusCode::ACCEPTED).await;
    }
    expect_limited(ask("198.51.100.99, 203.0.113.9".into()).await).await;
    expect_limited(ask("garbage, 203.0.113.9".into()).await).await;
    // The refusals are in the audit trail under the client's address: one row for the
    // minute, not one per refused request.
    let blocked: Vec<_> = app
        .db()
        .auth_event_rows()
        .await
        .into_iter()
        .filter(|row| row.event == "rate_limited")
        .collect();
    assert_eq!(blocked.len(), 1, "{blocked:?}");
    assert_eq!(blocked[0].ip.as_deref(), Some("203.0.113.9"));
    assert_eq!(blocked[0].outcome, "failure");
    assert_eq!(blocked[0].user_id, None);
    // Another client behind the same proxy is not limited.
    expect_json(ask("203.0.113.10".into()).await, StatusCode::ACCEPTED).await;
    app.stop().await;
}

async fn behind_a_trusted_proxy_the_session_records_the_forwarded_client_ip(backend: Backend) {
    let mut env = TestEnv::new(backend).await;
    env.settings.trusted_proxies = Some("127.0.0.1/32, 10.0.0.0/16".parse().expect("CIDRs"));
    let app = env.spawn().await;
    let email = unique_email("proxied");
    app.register_active(&email, PASSWORD, "Proxied").await;
    // What the ALB sends: the client's own (spoofed) entry, the client as the ALB saw it,
    // and an inner proxy of ours.
    let body = json!({ "email": email, "password": PASSWORD });
    let forwarded = Some("6.6.6.6, 203.0.113.7, 10.0.4.4");
    let session =
        expect_session(post_as(&app, &app.client, "/api/auth/login", &body, forwarded).await).await;
    let listed = expect_json(app.sessions(&token(&session)).await, StatusCode::OK).await;
    let current = listed["sessions"]
        .as_array()
        .expect("sessions")
        .iter()
        .find(|s| s["current"] == true)
        .cloned()
        .expect("the current session");
    assert_eq!(current["ip"], "203.0.113.7", "{current}");
    app.stop().await;
}

async fn the_code_guess_budget_survives_resends_re_registration_and_new_codes(backend: Backend) {
    // The arithmetic, from the production defaults: a guess names one of 10^6 codes, so a
    // day's odds are at most (guesses a day allows) / 10^6.
    let defaults = Settings::default();
    let per_day = defaults
        .code_guess_limit
        .most_within(Duration::from_secs(86_400));
    let odds = daily_guess_odds(&defaults.code_guess_limit);
    println!(
        "code guessing under {}: at most {per_day} guesses a day, odds {odds:e} per address per day",
        defaults.code_guess_limit
    );
    assert!(odds < 1e-4, "{odds}");

    let mut env = TestEnv::new(backend).await;
    env.settings.code_guess_limit = limit("4/1h,6/1d");
    let app = env.spawn().await;
    let email = unique_email("guessed");
    let code = app.register_pending(&email, PASSWORD, "Guessed").await;
    let guess_wrong = |code: String| {
        let (app, email) = (&app, &email);
        async move {
            crate::helpers::expect_invalid_code(
                app.verify_registration(email, &wrong_code(&code)).await,
            )
            .await;
        }
    };
    guess_wrong(code.clone()).await;
    guess_wrong(code).await;
    // Registering again mails a new code with fresh tries: the budget goes on.
    app.advance(61);
    let code = app.register_pending(&email, PASSWORD, "Guessed").await;
    guess_wrong(code).await;
    // So does a resend.
    app.advance(61);
    expect_json(
        app.resend_code(&email, "registration").await,
        StatusCode::ACCEPTED,
    )
    .await;
    let code = app
        .mailbox()
        .last_code_for(&email, CodePurpose::Registration);
    guess_wrong(code.clone()).await;
    // Four wrong in the hour: even the right code waits, and so does the other purpose.
    let wait = expect_limited(app.verify_registration(&email, &code).await).await;
    assert!(wait > 3000 && wait <= 3600, "{wait}");
    expect_limited(app.verify_login(&email, &code).await).await;

    // An hour later the hourly window has room; a right code costs nothing.
    app.advance(3600);
    expect_json(
        app.resend_code(&email, "registration").await,
        StatusCode::ACCEPTED,
    )
    .await;
    let code = app
        .mailbox()
        .last_code_for(&email, CodePurpose::Registration);
    expect_session(app.verify_registration(&email, &code).await).await;
    expect_json(app.request_login_code(&email).await, StatusCode::ACCEPTED).await;
    let code = app.mailbox().last_code_for(&email, CodePurpose::Login);
    for _ in 0..2 {
        crate::helpers::expect_invalid_code(app.verify_login(&email, &wrong_code(&code)).await)
            .await;
    }
    // Six wrong in the day: the daily window refuses though the hourly one has room.
    let wait = expect_limited(app.verify_login(&email, &code).await).await;
    assert!(wait > 3600, "{wait}");
    // Password login is not affected: the owner is never locked out.
    expect_session(app.login_password(&email, PASSWORD).await).await;
    app.stop().await;
}

async fn codes_issued_per_address_are_capped_alike_for_unknown_addresses(backend: Backend) {
    let mut env = TestEnv::new(backend).await;
    env.settings.code_issue_limit = limit("2/1h");
    let app = env.spawn().await;
    let active = unique_email("bombed");
    let unknown = unique_email("unknown");
    app.register_active(&active, PASSWORD, "Bombed").await; // the first code of the hour
    for email in [&active, &unknown] {
        expect_json(app.request_login_code(email).await, StatusCode::ACCEPTED).await;
    }
    app.advance(61);
    // Across purposes: the unknown address's second code of the hour.
    expect_json(
        app.resend_code(&unknown, "registration").await,
        StatusCode::ACCEPTED,
    )
    .await;
    let mails = app.mailbox().sent_to(&active).len();
    let active_answer = app.request_login_code(&active).await;
    let active_wait = active_answer.headers().get(RETRY_AFTER).cloned();
    let active_answer = status_and_json(active_answer).await;
    let unknown_answer = app.request_login_code(&unknown).await;
    let unknown_wait = unknown_answer.headers().get(RETRY_AFTER).cloned();
    let unknown_answer = status_and_json(unknown_answer).await;
    assert_eq!(active_answer.0, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(
        unknown_answer, active_answer,
        "a 429 says nothing about the account"
    );
    assert!(active_wait.is_some() && unknown_wait.is_some());
    assert_eq!(
        app.mailbox().sent_to(&active).len(),
        mails,
        "nothing more was mailed"
    );
    // The resend cooldown still holds on its own.
    app.advance(3600);
    expect_json(app.request_login_code(&active).await, StatusCode::ACCEPTED).await;
    let response = app.request_login_code(&active).await;
    assert_eq!(expect_limited(response).await, 60);
    app.stop().await;
}

async fn wrong_passwords_back_off_alike_for_known_and_unknown_addresses_and_notify_once(
    backend: Backend,
) {
    let mut env = TestEnv::new(backend).await;
    env.settings.password_failure_limit = limit("3/15m");
    let app = env.spawn().await;
    let known = unique_email("known");
    let unknown = unique_email("nobody");
    app.register_active(&known, PASSWORD, "Known").await;
    for email in [&known, &unknown] {
        for _ in 0..3 {
            expect_error(
                app.login_password(email, "wrong password!").await,
                StatusCode::UNAUTHORIZED,
                "invalid_credentials",
            )
            .await;
        }
    }
    let mut answers = Vec::new();
    for email in [&known, &unknown] {
        let response = app.login_password(email, "wrong password!").await;
        let wait = response.headers().get(RETRY_AFTER).cloned();
        answers.push((status_and_json(response).await, wait));
    }
    assert_eq!(answers[0].0.0, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(
        answers[0].1.as_ref().map(|v| v.to_str().unwrap()),
        Some("60")
    );
    assert_eq!(
        answers[1], answers[0],
        "an unknown address backs off the same"
    );
    // During the back-off even the right password waits (checked before Argon2).
    expect_limited(app.login_password(&known, PASSWORD).await).await;

    // After the wait one more try; wrong again, the wait doubles.
    app.advance(61);
    expect_error(
        app.login_password(&known, "wrong password!").await,
        StatusCode::UNAUTHORIZED,
        "invalid_credentials",
    )
    .await;
    assert_eq!(
        expect_limited(app.login_password(&known, PASSWORD).await).await,
        120
    );
    app.advance(121);
    expect_session(app.login_password(&known, PASSWORD).await).await;

    // One notice to the owner, however many failures; none to an unknown address.
    let notices = |email: &str| {
        app.mailbox()
            .sent_to(email)
            .iter()
            .filter(|m| matches!(m.message, Message::SignInAttempts))
            .count()
    };
    assert_eq!(notices(&known), 1);
    assert!(app.mailbox().sent_to(&unknown).is_empty());
    app.stop().await;
}
