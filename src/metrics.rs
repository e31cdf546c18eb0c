//! Prometheus metrics: every name and label in one place, the recorder, and the `/metrics`
//! listener. Labels hold only fixed words and route templates: never an address, IP or token.
//! Without a recorder installed (`AIDLC_METRICS_ADDR` unset) every call here is a no-op.

use std::time::Duration;

use anyhow::Context;
use axum::Router;
use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::get;
use metrics::{counter, gauge, histogram};
use metrics_exporter_prometheus::{BuildError, Matcher, PrometheusBuilder, PrometheusHandle};
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::domain::CodePurpose;
use crate::store::OutboxDepth;

/// HTTP requests answered, by `route` (the matched template), `method` and `status`.
pub const HTTP_REQUESTS: &str = "aidlc_auth_http_requests_total";
/// Time to answer, by `route` and `method` (histogram).
pub const HTTP_DURATION: &str = "aidlc_auth_http_request_duration_seconds";
/// Login attempts by `method` (`password`, `code`) and `outcome`.
pub const LOGINS: &str = "aidlc_auth_logins_total";
/// One-time codes by `purpose` and `event` (`issued`, `verified`, `rejected`).
pub const CODES: &str = "aidlc_auth_codes_total";
/// Time a password hash waited for an Argon2 slot (histogram).
pub const PASSWORD_HASH_WAIT: &str = "aidlc_auth_password_hash_wait_seconds";
/// Password hashes refused because no Argon2 slot freed up in time (answered 503).
pub const PASSWORD_HASH_REJECTED: &str = "aidlc_auth_password_hash_rejected_total";
/// Time the rate limits took to admit or refuse a request, by `action` (histogram): what the
/// limiter adds to each credential request and refresh.
pub const RATE_LIMIT_CHECK: &str = "aidlc_auth_rate_limit_check_duration_seconds";
/// Failed dependency calls by `dependency` (`database`, `redis`) and `kind` (`error`,
/// `timeout`).
pub const DEPENDENCY_FAILURES: &str = "aidlc_auth_dependency_failures_total";
/// Session events by `event` (`started`, `refreshed`, `revoked`, `reuse_detected`).
pub const SESSIONS: &str = "aidlc_auth_sessions_total";
/// Session reads by `result`: `hit` (answered from this instance's copy), `miss` (read from
/// the database while the copy is on).
pub const SESSION_CACHE: &str = "aidlc_auth_session_cache_reads_total";
/// Whether this instance's session copy answers (1) or is off because revocation notices are
/// not arriving (0); absent when the copy is not configured.
pub const SESSION_CACHE_ARMED: &str = "aidlc_auth_session_cache_armed";
/// Signing-key rotations this instance started.
pub const KEY_ROTATIONS: &str = "aidlc_auth_signing_key_rotations_total";
/// Mail in the outbox by `state` (`queued`, `sending`, `dead`), as of the last sweep.
pub const OUTBOX_MAILS: &str = "aidlc_auth_outbox_mails";
/// Age of the oldest queued mail as of the last sweep (0 when none waits).
pub const OUTBOX_OLDEST_QUEUED: &str = "aidlc_auth_outbox_oldest_queued_age_seconds";

/// Request latency buckets, seconds: sub-millisecond reads up to a slow Argon2 under load.
const HTTP_BUCKETS: &[f64] = &[
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];
/// Argon2 queue wait buckets, seconds, up to the 2 s after which a hash is refused.
const HASH_WAIT_BUCKETS: &[f64] = &[0.0005, 0.001, 0.005, 0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.0];

/// Rate-limit check buckets, seconds: a Redis or SQL round trip or two, finely, up to a
/// dependency timeout.
const LIMIT_CHECK_BUCKETS: &[f64] = &[
    0.000_025, 0.000_05, 0.000_075, 0.0001, 0.000_15, 0.0002, 0.0003, 0.0004, 0.0005, 0.000_75,
    0.001, 0.0015, 0.002, 0.003, 0.005, 0.01, 0.025, 0.1, 1.0,
];

/// How often histogram samples are folded into their buckets between scrapes.
const UPKEEP_EVERY: Duration = Duration::from_secs(5);

/// A dependency whose failures are counted.
#[derive(Debug, Clone, Copy)]
pub enum Dependency {
    /// The SQL database.
    Database,
    /// Redis.
    Redis,
}

/// How a dependency call failed.
#[derive(Debug, Clone, Copy)]
pub enum DependencyFailure {
    /// It answered with an error (or the connection failed).
    Error,
    /// It did not answer within the dependency timeout.
    Timeout,
}

/// How a login was attempted.
#[derive(Debug, Clone, Copy)]
pub enum LoginMethod {
    /// E-mail and password.
    Password,
    /// An e-mailed login code.
    Code,
}

/// How a use case ended, as counted.
#[derive(Debug, Clone, Copy)]
pub enum Outcome {
    /// It did what was asked.
    Success,
    /// The caller was refused (wrong credentials or code).
    Refused,
    /// A dependency was down or slow (503).
    Unavailable,
    /// A bug or corrupt data (500).
    Error,
}

/// What happened to a one-time code.
#[derive(Debug, Clone, Copy)]
pub enum CodeEvent {
    /// Stored and queued for mail.
    Issued,
    /// Presented and accepted.
    Verified,
    /// Presented and refused (wrong, expired, exhausted or unknown: they look alike).
    Rejected,
}

/// What happened to a session.
#[derive(Debug, Clone, Copy)]
pub enum SessionEvent {
    /// A login started one.
    Started,
    /// A refresh token was exchanged.
    Refreshed,
    /// Ended by logout or by its owner.
    Revoked,
    /// A retired refresh token came back: the session was revoked.
    ReuseDetected,
}

/// Installs the process-wide recorder (histograms with buckets, so they render as Prometheus
/// histograms rather than summaries) and returns the handle that renders it. Once a process:
/// a second call fails, and callers that build several apps in one process install once and
/// share the handle.
pub fn install() -> anyhow::Result<PrometheusHandle> {
    let builder = PrometheusBuilder::new()
        .set_buckets_for_metric(Matcher::Full(HTTP_DURATION.to_owned()), HTTP_BUCKETS)
        .and_then(|b| {
            b.set_buckets_for_metric(
                Matcher::Full(PASSWORD_HASH_WAIT.to_owned()),
                HASH_WAIT_BUCKETS,
            )
        })
        .and_then(|b| {
            b.set_buckets_for_metric(
                Matcher::Full(RATE_LIMIT_CHECK.to_owned()),
                LIMIT_CHECK_BUCKETS,
            )
        })
        .context("configuring the metrics buckets")?;
    let handle = builder.install_recorder().map_err(|e| match e {
        BuildError::FailedToSetGlobalRecorder(_) => anyhow::anyhow!(
            "a metrics recorder is already installed in this process (pass its handle instead)"
        ),
        other => anyhow::Error::new(other).context("installing the metrics recorder"),
    })?;
    describe();
    Ok(handle)
}

fn describe() {
    use metrics::{Unit, describe_counter, describe_gauge, describe_histogram};
    describe_counter!(
        HTTP_REQUESTS,
        "HTTP requests answered, by route template, method and status"
    );
    describe_histogram!(
        HTTP_DURATION,
        Unit::Seconds,
        "Time to answer an HTTP request"
    );
    describe_counter!(LOGINS, "Login attempts by method and outcome");
    describe_counter!(CODES, "One-time codes issued, verified and rejected");
    describe_histogram!(PASSWORD_HASH_WAIT, Unit::Seconds, "Wait for an Argon2 slot");
    describe_histogram!(
        RATE_LIMIT_CHECK,
        Unit::Seconds,
        "Time the rate limits took to admit or refuse a request"
    );
    describe_counter!(
        PASSWORD_HASH_REJECTED,
        "Password hashes refused: no Argon2 slot in time"
    );
    describe_counter!(
        DEPENDENCY_FAILURES,
        "Failed dependency calls by dependency and kind"
    );
    describe_counter!(
        SESSIONS,
        "Sessions started, refreshed, revoked, and revoked on reuse"
    );
    describe_counter!(
        SESSION_CACHE,
        "Session reads answered from this instance's copy (hit) or the database (miss)"
    );
    describe_gauge!(
        SESSION_CACHE_ARMED,
        "1 while revocation notices arrive and the session copy answers, else 0"
    );
    describe_counter!(
        KEY_ROTATIONS,
        "Signing-key rotations started by this instance"
    );
    describe_gauge!(
        OUTBOX_MAILS,
        "Mail in the outbox by state, as of the last sweep"
    );
    describe_gauge!(
        OUTBOX_OLDEST_QUEUED,
        Unit::Seconds,
        "Age of the oldest queued mail"
    );
}

/// Serves `GET /metrics` on `listener` until `stopped` turns true, folding histogram samples
/// into their buckets every few seconds meanwhile.
pub async fn serve(
    listener: TcpListener,
    handle: PrometheusHandle,
    mut stopped: watch::Receiver<bool>,
) -> std::io::Result<()> {
    let upkeep = {
        let handle = handle.clone();
        let mut stopped = stopped.clone();
        async move {
            let mut ticker = tokio::time::interval(UPKEEP_EVERY);
            loop {
                tokio::select! {
                    _ = ticker.tick() => handle.run_upkeep(),
                    _ = stopped.wait_for(|s| *s) => break,
                }
            }
        }
    };
    let router = Router::new()
        .route("/metrics", get(render))
        .with_state(handle);
    let served = axum::serve(listener, router).with_graceful_shutdown(async move {
        let _ = stopped.wait_for(|s| *s).await;
    });
    let (served, ()) = tokio::join!(served.into_future(), upkeep);
    served
}

async fn render(State(handle): State<PrometheusHandle>) -> impl IntoResponse {
    handle.run_upkeep();
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        handle.render(),
    )
}

/// The rate limits admitted or refused a request for `action` in `took`.
pub fn rate_limit_check(action: &'static str, took: Duration) {
    histogram!(RATE_LIMIT_CHECK, "action" => action).record(took.as_secs_f64());
}

/// One answered HTTP request. `route` is the matched template (`/api/auth/sessions/{id}`),
/// never the raw path.
pub fn http_request(route: &str, method: &str, status: u16, latency: Duration) {
    let (route, method) = (route.to_owned(), method.to_owned());
    counter!(HTTP_REQUESTS, "route" => route.clone(), "method" => method.clone(), "status" => status.to_string())
        .increment(1);
    histogram!(HTTP_DURATION, "route" => route, "method" => method).record(latency.as_secs_f64());
}

/// One login attempt.
pub fn login(method: LoginMethod, outcome: Outcome) {
    let method = match method {
        LoginMethod::Password => "password",
        LoginMethod::Code => "code",
    };
    counter!(LOGINS, "method" => method, "outcome" => outcome.label()).increment(1);
}

/// One code event.
pub fn code(purpose: CodePurpose, event: CodeEvent) {
    let event = match event {
        CodeEvent::Issued => "issued",
        CodeEvent::Verified => "verified",
        CodeEvent::Rejected => "rejected",
    };
    counter!(CODES, "purpose" => purpose.as_str(), "event" => event).increment(1);
}

/// A password hash got an Argon2 slot after `waited`, or (`granted` false) gave up.
pub fn password_hash_slot(waited: Duration, granted: bool) {
    histogram!(PASSWORD_HASH_WAIT).record(waited.as_secs_f64());
    if !granted {
        counter!(PASSWORD_HASH_REJECTED).increment(1);
    }
}

/// One failed dependency call.
pub fn dependency_failure(dependency: Dependency, failure: DependencyFailure) {
    let dependency = match dependency {
        Dependency::Database => "database",
        Dependency::Redis => "redis",
    };
    let kind = match failure {
        DependencyFailure::Error => "error",
        DependencyFailure::Timeout => "timeout",
    };
    counter!(DEPENDENCY_FAILURES, "dependency" => dependency, "kind" => kind).increment(1);
}

/// `count` sessions had `event`.
pub fn sessions(event: SessionEvent, count: u64) {
    let event = match event {
        SessionEvent::Started => "started",
        SessionEvent::Refreshed => "refreshed",
        SessionEvent::Revoked => "revoked",
        SessionEvent::ReuseDetected => "reuse_detected",
    };
    counter!(SESSIONS, "event" => event).increment(count);
}

/// How a session read was answered while the session copy is configured.
#[derive(Debug, Clone, Copy)]
pub enum CacheOutcome {
    /// From the copy.
    Hit,
    /// From the database.
    Miss,
}

/// A session read was answered so.
pub fn session_cache(outcome: CacheOutcome) {
    let result = match outcome {
        CacheOutcome::Hit => "hit",
        CacheOutcome::Miss => "miss",
    };
    counter!(SESSION_CACHE, "result" => result).increment(1);
}

/// The session copy started (true) or stopped (false) answering.
pub fn session_cache_armed(armed: bool) {
    gauge!(SESSION_CACHE_ARMED).set(if armed { 1.0 } else { 0.0 });
}

/// This instance started a signing-key rotation.
pub fn key_rotation() {
    counter!(KEY_ROTATIONS).increment(1);
}

/// The outbox as the sweeper last counted it.
pub fn outbox(counts: &OutboxDepth) {
    for (state, n) in [
        ("queued", counts.queued),
        ("sending", counts.sending),
        ("dead", counts.dead),
    ] {
        gauge!(OUTBOX_MAILS, "state" => state).set(n as f64);
    }
    let oldest = counts.oldest_queued.unwrap_or_default();
    gauge!(OUTBOX_OLDEST_QUEUED).set(oldest.as_secs_f64());
}

impl Outcome {
    fn label(self) -> &'static str {
        match self {
            Self::Success => "success",
            Self::Refused => "refused",
            Self::Unavailable => "unavailable",
            Self::Error => "error",
        }
    }
}
