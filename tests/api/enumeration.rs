//! Enumeration: every endpoint that names an address answers an address with an account and
//! one without alike: the same status, body and headers, and the same work, so the response
//! times do not tell them apart either.
//!
//! The timing check takes interleaved pairs of samples (known then unknown, unknown then
//! known, …) and compares the median of the pairs' time ratios with 1, so whatever else the
//! machine is doing slows both sides of a pair alike. A round 10 % or more off is measured
//! again, up to [`ROUNDS`] times: a busy moment cannot fail the test, while a real difference
//! (one side's branch doing a write the other does not) fails every round. The figures are printed (`cargo test enumeration -- --nocapture`).

use std::future::Future;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use aidlc_auth::domain::CodePurpose;
use reqwest::StatusCode;
use serde_json::Value;

use crate::helpers::{Backend, PASSWORD, TestEnv, backend_tests, unique_email};

backend_tests!(known_and_unknown_addresses_get_the_same_answer_after_the_same_work);

/// Samples per side and round.
const SAMPLES: usize = 60;
/// Rounds measured at most before a difference counts.
const ROUNDS: usize = 5;
/// How far from 1 the median ratio may be.
const MAX_DIFFERENCE: f64 = 0.10;

/// What a client can see of an answer, but for what differs per request.
#[derive(Debug, PartialEq)]
struct Answer {
    status: StatusCode,
    headers: Vec<(String, String)>,
    body: Value,
}

async fn answer(response: reqwest::Response) -> Answer {
    let status = response.status();
    let mut headers: Vec<(String, String)> = response
        .headers()
        .iter()
        .filter(|(name, _)| !matches!(name.as_str(), "date" | "x-request-id"))
        .map(|(name, value)| {
            (
                name.as_str().to_owned(),
                value.to_str().unwrap_or("<binary>").to_owned(),
            )
        })
        .collect();
    headers.sort();
    let text = response.text().await.expect("reading the body");
    let body = serde_json::from_str(&text).unwrap_or(Value::String(text));
    Answer {
        status,
        headers,
        body,
    }
}

async fn timed<F: Future<Output = reqwest::Response>>(request: F) -> (Duration, Answer) {
    let start = Instant::now();
    let response = request.await;
    let elapsed = start.elapsed();
    (elapsed, answer(response).await)
}

fn median(samples: &mut [Duration]) -> Duration {
    samples.sort();
    samples[samples.len() / 2]
}

/// One endpoint's request for an address with an account and for one without, each made
/// afresh per sample.
struct Probe<'a> {
    name: &'static str,
    known: Box<dyn Fn() -> futures::future::BoxFuture<'a, reqwest::Response> + 'a>,
    unknown: Box<dyn Fn() -> futures::future::BoxFuture<'a, reqwest::Response> + 'a>,
}

/// Asserts both sides of `probe` answer alike and take the same time.
async fn compare(probe: &Probe<'_>) {
    let mut last = 0.0;
    for round in 1..=ROUNDS {
        let (mut known, mut unknown, mut ratios) = (Vec::new(), Vec::new(), Vec::new());
        for i in 0..SAMPLES {
            // Alternating which side goes first cancels any advantage of going second.
            let (k, u) = if i % 2 == 0 {
                let k = timed((probe.known)()).await;
                (k, timed((probe.unknown)()).await)
            } else {
                let u = timed((probe.unknown)()).await;
                (timed((probe.known)()).await, u)
            };
            assert_eq!(
                k.1, u.1,
                "{}: an address with an account is answered differently",
                probe.name
            );
            ratios.push(k.0.as_secs_f64() / u.0.as_secs_f64());
            known.push(k.0);
            unknown.push(u.0);
        }
        // The median of each pair's ratio: a pair's two requests ran moments apart, so a slow
        // patch of the machine slows both and cancels out.
        ratios.sort_by(f64::total_cmp);
        let ratio = ratios[ratios.len() / 2];
        let (k, u) = (median(&mut known), median(&mut unknown));
        println!(
            "{}: median {k:?} with an account, {u:?} without; median pair ratio {ratio:.3} \
             (round {round})",
            probe.name
        );
        last = ratio;
        if (ratio - 1.0).abs() < MAX_DIFFERENCE {
            return;
        }
    }
    panic!(
        "{}: with an account / without, the median pair ratio stayed 10 % or more from 1 in \
         {ROUNDS} rounds (last {last:.3})",
        probe.name
    );
}

async fn known_and_unknown_addresses_get_the_same_answer_after_the_same_work(backend: Backend) {
    let mut env = TestEnv::new(backend).await;
    // Each sample asks again for the same address at once: no cooldown to answer 429 to it.
    env.settings.resend_cooldown = Duration::ZERO;
    let owned = env.spawn().await;
    let app = &owned;
    let active = unique_email("known");
    app.register_active(&active, PASSWORD, "Known Owner").await;
    let pending = unique_email("pending");
    app.register_pending(&pending, PASSWORD, "Pending Owner")
        .await;
    let nobody = unique_email("nobody");
    // Registration goes to a fresh address on the other side, so each sample takes one of
    // these owners: a limit's counters for one address grow with its requests, and on the SQL
    // store counting them costs more as they do.
    let mut owners = Vec::new();
    for _ in 0..SAMPLES {
        let owner = unique_email("owner");
        app.register_active(&owner, PASSWORD, "Known Owner").await;
        owners.push(owner);
    }
    let next_owner = AtomicUsize::new(0);
    let (owners, next_owner) = (&owners, &next_owner);
    let (active, pending, nobody) = (active.as_str(), pending.as_str(), nobody.as_str());

    let probes = [
        Probe {
            name: "register",
            // An active address is registered again (a notice); a new one for the other
            // side, which gets a pending account.
            known: Box::new(move || {
                let owner = &owners[next_owner.fetch_add(1, Ordering::Relaxed) % owners.len()];
                Box::pin(app.register(owner, PASSWORD, "Known Owner"))
            }),
            unknown: Box::new(move || {
                Box::pin(async move {
                    let fresh = unique_email("fresh");
                    app.register(&fresh, PASSWORD, "Known Owner").await
                })
            }),
        },
        Probe {
            name: "password login (wrong password)",
            known: Box::new(move || Box::pin(app.login_password(active, "wrong password 1"))),
            unknown: Box::new(move || Box::pin(app.login_password(nobody, "wrong password 1"))),
        },
        Probe {
            name: "code login request",
            known: Box::new(move || Box::pin(app.request_login_code(active))),
            unknown: Box::new(move || Box::pin(app.request_login_code(nobody))),
        },
        Probe {
            name: "verify-login (wrong code)",
            known: Box::new(move || Box::pin(app.verify_login(active, "000000"))),
            unknown: Box::new(move || Box::pin(app.verify_login(nobody, "000000"))),
        },
        Probe {
            name: "resend (registration)",
            known: Box::new(move || Box::pin(app.resend_code(pending, "registration"))),
            unknown: Box::new(move || Box::pin(app.resend_code(nobody, "registration"))),
        },
        Probe {
            name: "verify-registration (wrong code)",
            known: Box::new(move || Box::pin(app.verify_registration(pending, "000000"))),
            unknown: Box::new(move || Box::pin(app.verify_registration(nobody, "000000"))),
        },
        Probe {
            name: "password reset request",
            known: Box::new(move || Box::pin(app.request_password_reset(active))),
            unknown: Box::new(move || Box::pin(app.request_password_reset(nobody))),
        },
        Probe {
            name: "password reset confirm (wrong code)",
            known: Box::new(move || {
                Box::pin(app.confirm_password_reset(active, "000000", "a brand new passphrase"))
            }),
            unknown: Box::new(move || {
                Box::pin(app.confirm_password_reset(nobody, "000000", "a brand new passphrase"))
            }),
        },
    ];
    for probe in &probes {
        compare(probe).await;
    }

    // The owner was mailed (the newest code of a burst supersedes the ones not yet sent) and
    // nobody else was.
    let deadline = Instant::now() + Duration::from_secs(20);
    while app
        .mailbox()
        .codes_for(active, CodePurpose::Login)
        .is_empty()
    {
        assert!(
            Instant::now() < deadline,
            "the login codes were not all mailed"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(app.mailbox().sent_to(nobody).is_empty(), "mail for nobody");
    drop(probes);
    owned.stop().await;
}
