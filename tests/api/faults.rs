//! Faults in the middle of concurrent traffic: Redis or PostgreSQL going away, a dependency
//! that accepts and never answers, SIGTERM during registrations. During the fault the answers
//! are the documented 503s (never a 500, never a hang), the service recovers without a restart
//! while the traffic goes on, and afterwards `support/invariants.rs` holds: no user without a
//! way to verify, no code without its mail, no revoked session alive again.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use futures::future::join_all;
use reqwest::StatusCode;
use secrecy::SecretString;
use serde_json::json;

use crate::helpers::{
    Backend, PASSWORD, POSTGRES_ADDR, ProxyMode, REDIS_ADDR, TcpProxy, TestApp, TestEnv,
    expect_json, expect_session, token, unique_email,
};
use crate::support::invariants::check_after_fault;
use crate::support::process::ServiceProcess;
use crate::support::traffic::{Answer, Call, Outcome, Phase, Phases, Traffic};

/// Concurrent workers in each traffic run.
const WORKERS: usize = 4;
/// How long the traffic runs before the fault, during it, and after the recovery.
const BEFORE: Duration = Duration::from_millis(1500);
const OUTAGE: Duration = Duration::from_millis(2500);
const AFTER: Duration = Duration::from_secs(2);
/// How soon after the dependency returns the app must say it is ready again.
const RECOVERY_LIMIT: Duration = Duration::from_secs(5);
/// The dependency timeout the in-process apps run with (the default).
const DEPENDENCY_TIMEOUT: Duration = Duration::from_secs(1);
/// The slowest answer allowed while a dependency is down or hung. A request answers 503 at
/// its first store call that fails, each bounded by the dependency timeout (a pool acquire
/// included); before it, the rate limiter's shared store may cost one more timeout (then the
/// limiter counts in memory and skips the shared store for 5 s). Two timeouts, plus a second
/// for a loaded 2-core machine.
const SLOWEST_ANSWER: Duration = Duration::from_secs(3);

/// Which dependency the proxy stands in front of.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Dependency {
    Postgres,
    Redis,
}

impl Dependency {
    fn upstream(self) -> crate::support::servers::Endpoint {
        match self {
            Dependency::Postgres => POSTGRES_ADDR,
            Dependency::Redis => REDIS_ADDR,
        }
    }
}

/// An environment on `backend` whose `dependency` is reached through a proxy.
async fn env_behind_proxy(backend: Backend, dependency: Dependency) -> (TestEnv, TcpProxy) {
    let mut env = TestEnv::new(backend).await;
    let proxy = TcpProxy::start(dependency.upstream()).await;
    match dependency {
        Dependency::Postgres => {
            env.settings.database_url = SecretString::from(env.db.url_through(&proxy));
        }
        Dependency::Redis => env.settings.redis_url = Some(SecretString::from(proxy.redis_url())),
    }
    assert_eq!(env.settings.dependency_timeout, DEPENDENCY_TIMEOUT);
    (env, proxy)
}

/// One answer of the health prober.
struct Probe {
    path: &'static str,
    sent: Phase,
    answered: Phase,
    status: Option<StatusCode>,
}

/// Polls `/health` and `/health/ready` every 50 ms until `stop` (at most 60 s).
fn probe_health(
    app: Arc<TestApp>,
    phases: Phases,
    stop: Arc<AtomicBool>,
) -> tokio::task::JoinHandle<Vec<Probe>> {
    tokio::spawn(async move {
        let mut probes = Vec::new();
        let started = Instant::now();
        while !stop.load(Ordering::SeqCst) && started.elapsed() < Duration::from_secs(60) {
            for path in ["/health", "/health/ready"] {
                let sent = phases.now();
                let status = app
                    .client
                    .get(app.url(path))
                    .send()
                    .await
                    .ok()
                    .map(|r| r.status());
                let answered = phases.now();
                probes.push(Probe {
                    path,
                    sent,
                    answered,
                    status,
                });
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        probes
    })
}

/// What a traffic run through one fault recorded.
struct Run {
    outcome: Outcome,
    probes: Vec<Probe>,
    recovered_in: Duration,
}

/// Runs the traffic on `app`; `fault` is switched on at the proxy for [`OUTAGE`], then the
/// proxy forwards again and the traffic goes on until [`AFTER`] past readiness.
async fn traffic_through(app: &Arc<TestApp>, proxy: &TcpProxy, fault: ProxyMode) -> Run {
    let phases = Phases::default();
    let traffic = Traffic::start(app.clone(), WORKERS, &phases).await;
    let stop = Arc::new(AtomicBool::new(false));
    let prober = probe_health(app.clone(), phases.clone(), stop.clone());
    tokio::time::sleep(BEFORE).await;

    proxy.set(fault);
    phases.set(Phase::Outage);
    tokio::time::sleep(OUTAGE).await;

    proxy.set(ProxyMode::Forward);
    phases.set(Phase::Recovering);
    let back = Instant::now();
    loop {
        if app.get("/health/ready").await.status() == StatusCode::OK {
            break;
        }
        assert!(
            back.elapsed() < RECOVERY_LIMIT,
            "not ready {RECOVERY_LIMIT:?} after the dependency came back"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let recovered_in = back.elapsed();
    phases.set(Phase::After);
    tokio::time::sleep(AFTER).await;

    let outcome = traffic.stop().await;
    stop.store(true, Ordering::SeqCst);
    let probes = prober.await.expect("the health prober");
    Run {
        outcome,
        probes,
        recovered_in,
    }
}

/// Asserts that every answer is the call's success or a 503: never a 500, a 4xx or no answer.
fn assert_only_success_or_503(answers: &[Answer]) {
    for answer in answers {
        assert!(
            answer.status == Some(answer.call.success())
                || answer.status == Some(StatusCode::SERVICE_UNAVAILABLE),
            "{answer:?}"
        );
    }
}

/// Asserts that `call` was answered during the outage, and only with `status`; returns how
/// many times.
fn assert_during_outage(outcome: &Outcome, call: Call, status: StatusCode) -> usize {
    let answers: Vec<&Answer> = outcome
        .within(Phase::Outage)
        .filter(|a| a.call == call)
        .collect();
    assert!(!answers.is_empty(), "no {call:?} during the outage");
    for answer in &answers {
        assert_eq!(answer.status, Some(status), "during the outage: {answer:?}");
    }
    answers.len()
}

/// Asserts that everything sent once the app was ready again succeeded, and returns how many.
fn assert_recovered(outcome: &Outcome) -> usize {
    let after: Vec<&Answer> = outcome.within(Phase::After).collect();
    assert!(after.len() >= WORKERS, "only {} answers after", after.len());
    for answer in &after {
        assert_eq!(
            answer.status,
            Some(answer.call.success()),
            "after the recovery: {answer:?}"
        );
    }
    for call in [Call::Register, Call::Me, Call::Refresh] {
        assert!(
            after.iter().any(|a| a.call == call),
            "no {call:?} after the recovery"
        );
    }
    after.len()
}

/// Asserts what the health endpoints answered during the outage and after it.
fn assert_health(probes: &[Probe]) {
    let during = |path| {
        probes
            .iter()
            .filter(move |p| p.path == path && p.sent == Phase::Outage && p.answered == p.sent)
    };
    assert!(
        during("/health/ready").count() >= 3,
        "too few readiness probes"
    );
    for probe in during("/health") {
        assert_eq!(probe.status, Some(StatusCode::OK), "liveness in the outage");
    }
    for probe in during("/health/ready") {
        assert_eq!(
            probe.status,
            Some(StatusCode::SERVICE_UNAVAILABLE),
            "readiness in the outage"
        );
    }
    for probe in probes.iter().filter(|p| p.sent == Phase::After) {
        assert_eq!(probe.status, Some(StatusCode::OK), "{} after", probe.path);
    }
}

/// The slowest answer sent and answered during the outage.
fn slowest_in_outage(outcome: &Outcome) -> Duration {
    outcome
        .within(Phase::Outage)
        .map(|a| a.elapsed)
        .max()
        .unwrap_or_default()
}

fn summary(run: &Run) -> String {
    let count = |phase| {
        run.outcome
            .answers
            .iter()
            .filter(|a| a.sent == phase)
            .count()
    };
    format!(
        "{} answers before, {} during, {} after; slowest in the outage {:?}; ready {:?} after \
         the dependency came back",
        count(Phase::Before),
        count(Phase::Outage),
        count(Phase::After),
        slowest_in_outage(&run.outcome),
        run.recovered_in
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_going_away_mid_traffic_is_503_for_codes_only_and_recovers_without_a_restart() {
    let (env, redis) = env_behind_proxy(Backend::PostgresRedis, Dependency::Redis).await;
    let app = Arc::new(env.spawn().await);
    let run = traffic_through(&app, &redis, ProxyMode::Refuse).await;
    let outcome = &run.outcome;

    assert_only_success_or_503(&outcome.answers);
    // The code endpoints answer only 503 ...
    for call in [Call::Register, Call::RequestLoginCode] {
        assert_during_outage(outcome, call, StatusCode::SERVICE_UNAVAILABLE);
    }
    for answer in outcome
        .within(Phase::Outage)
        .filter(|a| a.call.uses_codes())
    {
        assert_eq!(
            answer.status,
            Some(StatusCode::SERVICE_UNAVAILABLE),
            "{answer:?}"
        );
    }
    // ... while sessions, which live in SQL, keep working.
    for call in [Call::Me, Call::Refresh] {
        assert_during_outage(outcome, call, StatusCode::OK);
    }
    for answer in outcome
        .within(Phase::Outage)
        .filter(|a| !a.call.uses_codes())
    {
        assert_eq!(answer.status, Some(answer.call.success()), "{answer:?}");
    }
    assert_health(&run.probes);
    assert_recovered(outcome);
    eprintln!("Redis refusing: {}", summary(&run));

    check_after_fault(&app, outcome).await;
    Arc::into_inner(app)
        .expect("the traffic is done")
        .stop()
        .await;
}

mod postgres_going_away_mid_traffic_is_503_within_the_timeout_and_recovers_without_a_restart {
    use super::*;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn postgres() {
        postgres_going_away(Backend::Postgres).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn postgres_redis() {
        postgres_going_away(Backend::PostgresRedis).await;
    }
}

async fn postgres_going_away(backend: Backend) {
    let (env, postgres) = env_behind_proxy(backend, Dependency::Postgres).await;
    let app = Arc::new(env.spawn().await);
    let run = traffic_through(&app, &postgres, ProxyMode::Refuse).await;
    let outcome = &run.outcome;

    assert_only_success_or_503(&outcome.answers);
    // Everything but liveness needs the database.
    for call in [Call::Register, Call::Me, Call::Refresh, Call::PasswordLogin] {
        assert_during_outage(outcome, call, StatusCode::SERVICE_UNAVAILABLE);
    }
    for answer in outcome.within(Phase::Outage) {
        assert_eq!(
            answer.status,
            Some(StatusCode::SERVICE_UNAVAILABLE),
            "{answer:?}"
        );
    }
    let slowest = slowest_in_outage(outcome);
    assert!(
        slowest <= SLOWEST_ANSWER,
        "an answer took {slowest:?} with PostgreSQL down (timeout {DEPENDENCY_TIMEOUT:?})"
    );
    assert_health(&run.probes);
    assert_recovered(outcome);
    eprintln!("{backend:?}, PostgreSQL refusing: {}", summary(&run));

    check_after_fault(&app, outcome).await;
    Arc::into_inner(app)
        .expect("the traffic is done")
        .stop()
        .await;
}

/// Concurrent requests sent at once while the dependency hangs.
const CONCURRENT: usize = 200;

/// One of [`CONCURRENT`] requests: a fresh registration, a login code, `/me` or a password
/// login, by `i` (the last two for the account at `email`).
async fn one_of_many(
    app: &TestApp,
    i: usize,
    email: &str,
    bearer: &str,
) -> (Call, StatusCode, Duration) {
    let started = Instant::now();
    let (call, response) = match i % 4 {
        0 => (
            Call::Register,
            app.register(&unique_email("flood"), PASSWORD, "Flood")
                .await,
        ),
        // An unknown address, answered like any other: one address would meet its cooldown.
        1 => (
            Call::RequestLoginCode,
            app.request_login_code(&unique_email("nobody")).await,
        ),
        2 => (Call::Me, app.me(bearer).await),
        _ => (
            Call::PasswordLogin,
            app.login_password(email, PASSWORD).await,
        ),
    };
    (call, response.status(), started.elapsed())
}

mod a_hung_dependency_answers_200_concurrent_requests_within_the_bound {
    use super::*;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn postgres() {
        hung_dependency(Dependency::Postgres).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn redis() {
        hung_dependency(Dependency::Redis).await;
    }
}

async fn hung_dependency(dependency: Dependency) {
    let (env, proxy) = env_behind_proxy(Backend::PostgresRedis, dependency).await;
    let app = env.spawn().await;
    let email = unique_email("hung");
    let bearer = token(&app.register_active(&email, PASSWORD, "Hung").await);

    proxy.set(ProxyMode::BlackHole);
    let connections_before = proxy.accepted();
    let started = Instant::now();
    let answers = join_all((0..CONCURRENT).map(|i| one_of_many(&app, i, &email, &bearer))).await;
    let all_done = started.elapsed();
    let slowest = answers.iter().map(|(_, _, t)| *t).max().unwrap_or_default();
    for (call, status, elapsed) in &answers {
        // With Redis hung, sessions and password logins are SQL's and still succeed.
        let expected = if dependency == Dependency::Redis && !call.uses_codes() {
            call.success()
        } else {
            StatusCode::SERVICE_UNAVAILABLE
        };
        assert_eq!(*status, expected, "{call:?} after {elapsed:?}");
    }
    assert!(
        slowest <= SLOWEST_ANSWER,
        "with {dependency:?} hung an answer took {slowest:?} (timeout {DEPENDENCY_TIMEOUT:?})"
    );
    eprintln!(
        "{dependency:?} hung: {CONCURRENT} concurrent requests all answered in {all_done:?}, \
         slowest {slowest:?}; {} new connections to it meanwhile",
        proxy.accepted() - connections_before
    );

    proxy.set(ProxyMode::Forward);
    let back = Instant::now();
    while app.get("/health/ready").await.status() != StatusCode::OK {
        assert!(back.elapsed() < RECOVERY_LIMIT, "not ready again");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    expect_json(app.me(&bearer).await, StatusCode::OK).await;
    let fresh = unique_email("after");
    let code = app.register_pending(&fresh, PASSWORD, "After").await;
    expect_session(app.verify_registration(&fresh, &code).await).await;
    app.stop().await;
}

mod a_hung_dependency_leaves_no_pile_up_in_the_real_binary {
    use super::*;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn postgres() {
        no_pile_up(Dependency::Postgres).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn redis() {
        no_pile_up(Dependency::Redis).await;
    }
}

/// Waves of [`CONCURRENT`] registrations at the real binary while `dependency` hangs: every
/// one is answered 503 within the bound, and neither the memory nor the open files (sockets)
/// of the process grow from wave to wave: nothing waits on the hung dependency once answered.
async fn no_pile_up(dependency: Dependency) {
    const WAVES: usize = 3;
    let (env, proxy) = env_behind_proxy(Backend::PostgresRedis, dependency).await;
    let database_url = env.settings.database_url.clone();
    let database_url = secrecy::ExposeSecret::expose_secret(&database_url).to_owned();
    let service = ServiceProcess::start(
        &env,
        &[
            ("DATABASE_URL", &database_url),
            ("AIDLC_DEPENDENCY_TIMEOUT_MS", "1000"),
        ],
    )
    .await;
    // No keep-alive: every connection closes with its answer, so open files count only what
    // the service itself still holds.
    let client = reqwest::Client::builder()
        .no_proxy()
        .pool_max_idle_per_host(0)
        .timeout(Duration::from_secs(15))
        .build()
        .expect("building the HTTP client");
    let register = |tag: &'static str| {
        let request = client.post(service.url("/api/auth/register")).json(
            &json!({ "email": unique_email(tag), "password": PASSWORD, "full_name": "Wave" }),
        );
        async move {
            let started = Instant::now();
            let status = request.send().await.map(|r| r.status());
            (status.map_err(|e| e.to_string()), started.elapsed())
        }
    };
    for (status, _) in join_all((0..20).map(|_| register("warm"))).await {
        assert_eq!(status, Ok(StatusCode::ACCEPTED));
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (rss_before, files_before) = (service.rss_kib(), service.open_files());

    proxy.set(ProxyMode::BlackHole);
    let mut after_waves = Vec::new();
    for wave in 0..WAVES {
        let started = Instant::now();
        let answers = join_all((0..CONCURRENT).map(|_| register("wave"))).await;
        let slowest = answers.iter().map(|(_, t)| *t).max().unwrap_or_default();
        for (status, elapsed) in &answers {
            assert_eq!(
                status,
                &Ok(StatusCode::SERVICE_UNAVAILABLE),
                "wave {wave}, after {elapsed:?}"
            );
        }
        assert!(
            slowest <= SLOWEST_ANSWER,
            "wave {wave}: slowest {slowest:?}"
        );
        // The server closes its side of each connection just after answering.
        tokio::time::sleep(Duration::from_millis(300)).await;
        let (rss, files) = (service.rss_kib(), service.open_files());
        eprintln!(
            "{dependency:?} hung, wave {wave}: {CONCURRENT} answered 503 in {:?} (slowest \
             {slowest:?}); RSS {rss_before} -> {rss} KiB, open files {files_before} -> {files}",
            started.elapsed()
        );
        after_waves.push((rss, files));
    }
    for (wave, (_, files)) in after_waves.iter().enumerate() {
        // A few sockets to the hung dependency may still be connecting (the pool's or Redis's
        // reconnect, each bounded by the timeout); never one per request.
        assert!(
            *files <= files_before + 20,
            "wave {wave}: {files} open files, {files_before} before: requests pile up"
        );
    }
    // The first wave may grow the allocator's pools; later waves reuse them.
    let (first, last) = (after_waves[0].0, after_waves[WAVES - 1].0);
    assert!(
        last <= first + 8 * 1024,
        "RSS grew from {first} KiB after the first wave to {last} KiB after the last"
    );
    assert!(
        last <= rss_before + 64 * 1024,
        "RSS grew from {rss_before} KiB to {last} KiB"
    );

    proxy.set(ProxyMode::Forward);
    let back = Instant::now();
    loop {
        let ready = client.get(service.url("/health/ready")).send().await;
        if ready.is_ok_and(|r| r.status() == StatusCode::OK) {
            break;
        }
        assert!(back.elapsed() < RECOVERY_LIMIT, "not ready again");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let (status, _) = register("after").await;
    assert_eq!(status, Ok(StatusCode::ACCEPTED));
}

/// The code the development transport logged last for `email`, if any.
fn logged_code(service: &ServiceProcess, email: &str) -> Option<String> {
    service
        .logged("📧 이메일 발송 시뮬레이션 (e-mail sending simulation)")
        .iter()
        .filter(|l| l["to"] == email)
        .filter_map(|l| l["code"].as_str().map(str::to_owned))
        .next_back()
}

/// SIGTERM while registrations stream in: every registration sent before the signal or during
/// the drain is answered 202, and each has its account and its mail (sent by the stopping
/// process, or queued and sent by the next instance); its code verifies.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_during_registrations_loses_no_accepted_registration_nor_its_mail() {
    const DRAIN: Duration = Duration::from_secs(1);
    let test_started = Instant::now();
    let env = TestEnv::new(Backend::PostgresRedis).await;
    let mut service = ServiceProcess::start(
        &env,
        &[
            ("AIDLC_SHUTDOWN_DRAIN_SECONDS", "1"),
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
    for email in &accepted {
        if let Some(code) = logged_code(&service, email) {
            expect_session(next.verify_registration(email, &code).await).await;
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
