//! SIGTERM while registrations stream in (`shutdown.rs` covers the answers to a stream of
//! reads; this is what the writes leave behind).

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::json;

use crate::helpers::{Backend, PASSWORD, TestEnv, expect_session, unique_email};
use crate::support::invariants::check_after_fault;
use crate::support::process::ServiceProcess;
use crate::support::traffic::Outcome;

/// The newest code the development transport logged for each address.
fn logged_codes(service: &ServiceProcess) -> HashMap<String, String> {
    service
        .logged("📧 이메일 발송 시뮬레이션 (e-mail sending simulation)")
        .iter()
        .filter_map(|l| Some((l["to"].as_str()?.to_owned(), l["code"].as_str()?.to_owned())))
        .collect()
}

/// SIGTERM while registrations stream in: every registration sent before the signal or during
/// the drain is answered 202, and each has its account and its mail (sent by the stopping
/// process, or queued and sent by the next instance); its code verifies.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_during_registrations_loses_no_accepted_registration_nor_its_mail() {
    const DRAIN: Duration = Duration::from_secs(2);
    let test_started = Instant::now();
    let env = TestEnv::new(Backend::PostgresRedis).await;
    let mut service = ServiceProcess::start(
        &env,
        &[
            ("AIDLC_SHUTDOWN_DRAIN_SECONDS", "2"),
            ("AIDLC_SHUTDOWN_GRACE_SECONDS", "10"),
        ],
    )
    .await;
    let stop = Arc::new(AtomicBool::new(false));
    let clients: Vec<_> = (0..4)
        .map(|_| {
            let client = service.client.clone();
            let url = service.url("/api/auth/register");
            let stop = stop.clone();
            tokio::spawn(async move {
                let mut sent = Vec::new();
                for _ in 0..2_000 {
                    if stop.load(Ordering::SeqCst) {
                        break;
                    }
                    let email = unique_email("sigterm");
                    let body = json!({ "email": email, "password": PASSWORD, "full_name": "Term" });
                    let at = Instant::now();
                    let answer = client
                        .post(&url)
                        .json(&body)
                        .send()
                        .await
                        .map(|r| r.status());
                    let failed = answer.is_err();
                    sent.push((at, email, answer.map_err(|e| e.to_string())));
                    if failed {
                        break;
                    }
                }
                sent
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(700)).await;
    service.terminate().await;
    let signalled = Instant::now();
    let status = service.wait(Duration::from_secs(15)).await;
    stop.store(true, Ordering::SeqCst);
    assert_eq!(status.code(), Some(0), "{:?}", service.log());

    let mut accepted = Vec::new();
    let mut unanswered_after_drain = 0;
    for client in clients {
        for (at, email, answer) in client.await.expect("a client task") {
            // Sent before the signal, or while the drain surely still served.
            if at < signalled + DRAIN - Duration::from_millis(300) {
                assert_eq!(
                    answer,
                    Ok(StatusCode::ACCEPTED),
                    "{email} sent before the end of the drain"
                );
            }
            match answer {
                Ok(StatusCode::ACCEPTED) => accepted.push(email),
                Ok(other) => panic!("{email}: {other}"),
                Err(_) => unanswered_after_drain += 1,
            }
        }
    }
    assert!(accepted.len() >= 8, "only {} registrations", accepted.len());
    let leased = env
        .db
        .strings("SELECT recipient FROM outbox WHERE status = 'sending'")
        .await;
    assert!(
        leased.is_empty(),
        "rows left leased by a clean stop: {leased:?}"
    );

    // The next instance sends what the stopping one had queued, then every code verifies. The
    // process ran on the system clock: the test clock catches up, so its rows are due.
    env.clock
        .advance(test_started.elapsed() + Duration::from_secs(1));
    let next = env.spawn().await;
    let outcome = Outcome {
        registered: accepted.clone(),
        ..Outcome::default()
    };
    let logged = logged_codes(&service);
    for email in &accepted {
        if let Some(code) = logged.get(email) {
            expect_session(next.verify_registration(email, code).await).await;
        }
    }
    check_after_fault(&next, &outcome).await;
    eprintln!(
        "SIGTERM: {} registrations answered 202 and verified, {unanswered_after_drain} refused \
         after the drain",
        accepted.len()
    );
    next.stop().await;
}
