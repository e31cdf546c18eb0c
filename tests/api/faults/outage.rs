//! Redis or PostgreSQL going away in the middle of concurrent traffic, and coming back while
//! it goes on.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use reqwest::StatusCode;

use super::{DEPENDENCY_TIMEOUT, Dependency, RECOVERY_LIMIT, SLOWEST_ANSWER, env_behind_proxy};
use crate::helpers::{Backend, ProxyMode, TcpProxy, TestApp};
use crate::support::invariants::check_after_fault;
use crate::support::traffic::{Answer, Call, Outcome, Phase, Phases, Traffic};

/// Concurrent workers in each traffic run.
const WORKERS: usize = 4;
/// How long the traffic runs before the fault, during it, and after the recovery.
const BEFORE: Duration = Duration::from_millis(1500);
const OUTAGE: Duration = Duration::from_millis(2500);
const AFTER: Duration = Duration::from_secs(2);

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
