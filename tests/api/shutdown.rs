//! Graceful shutdown of the real binary on SIGTERM (an ECS task stop): readiness turns 503 at
//! once, requests are served through the drain time, a request in flight when the listener
//! closes still gets its answer, and the process exits 0 within the grace time; a request
//! that never finishes is cut at the grace time and the process exits anyway.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::helpers::{Backend, TestEnv, backend_tests};
use crate::support::process::ServiceProcess;

backend_tests!(
    sigterm_turns_readiness_503_first_answers_every_accepted_request_and_exits_0,
    a_request_still_running_at_the_grace_time_is_cut_and_the_process_exits_0,
);

const DRAIN: Duration = Duration::from_secs(2);
const GRACE: Duration = Duration::from_secs(10);

/// A login that always fails the same way (no such account): one Argon2 run and a database
/// read, answered 401.
fn login_body() -> String {
    json!({ "email": "nobody@example.com", "password": "not the password" }).to_string()
}

/// One request of the stream: when it was sent and what came back.
struct Sent {
    at: Instant,
    answer: Result<StatusCode, String>,
}

/// Clients sending logins back to back until `stop`, or until the service stops answering.
fn stream_of_requests(
    service: &ServiceProcess,
    clients: usize,
    stop: Arc<AtomicBool>,
) -> Vec<tokio::task::JoinHandle<Vec<Sent>>> {
    (0..clients)
        .map(|_| {
            let client = service.client.clone();
            let url = service.url("/api/auth/login");
            let stop = stop.clone();
            tokio::spawn(async move {
                let mut sent = Vec::new();
                for _ in 0..10_000 {
                    if stop.load(Ordering::Relaxed) {
                        break;
                    }
                    let at = Instant::now();
                    let answer = client
                        .post(&url)
                        .header("content-type", "application/json")
                        .body(login_body())
                        .send()
                        .await
                        .map(|r| r.status())
                        .map_err(|e| e.to_string());
                    let failed = answer.is_err();
                    sent.push(Sent { at, answer });
                    if failed {
                        break;
                    }
                }
                sent
            })
        })
        .collect()
}

/// A login whose body is only half sent: in flight on the server until `finish`.
async fn half_sent_login(service: &ServiceProcess) -> (TcpStream, String) {
    let body = login_body();
    let (first, rest) = body.split_at(body.len() / 2);
    let mut stream = TcpStream::connect(service.socket_address())
        .await
        .expect("connecting");
    let head = format!(
        "POST /api/auth/login HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\n\r\n{first}",
        body.len()
    );
    stream.write_all(head.as_bytes()).await.expect("writing");
    (stream, rest.to_owned())
}

/// Sends the rest of the body and reads the status line.
async fn finish(mut stream: TcpStream, rest: &str) -> String {
    stream.write_all(rest.as_bytes()).await.expect("writing");
    let mut head = [0u8; 12];
    tokio::time::timeout(Duration::from_secs(5), stream.read_exact(&mut head))
        .await
        .expect("no answer within 5 s")
        .expect("the connection closed without an answer");
    String::from_utf8_lossy(&head).into_owned()
}

/// Waits (at most `limit`) until the API port refuses new connections.
async fn until_connections_are_refused(service: &ServiceProcess, limit: Duration) -> Instant {
    let started = Instant::now();
    loop {
        if TcpStream::connect(service.socket_address()).await.is_err() {
            return Instant::now();
        }
        assert!(
            started.elapsed() < limit,
            "still accepting connections {limit:?} after the signal"
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

async fn sigterm_turns_readiness_503_first_answers_every_accepted_request_and_exits_0(
    backend: Backend,
) {
    let env = TestEnv::new(backend).await;
    let (drain, grace) = (DRAIN.as_secs().to_string(), GRACE.as_secs().to_string());
    let mut service = ServiceProcess::start(
        &env,
        &[
            ("AIDLC_SHUTDOWN_DRAIN_SECONDS", &drain),
            ("AIDLC_SHUTDOWN_GRACE_SECONDS", &grace),
        ],
    )
    .await;
    let ready = service
        .client
        .get(service.url("/health/ready"))
        .send()
        .await;
    assert_eq!(ready.expect("readiness").status(), StatusCode::OK);

    let stop = Arc::new(AtomicBool::new(false));
    let stream = stream_of_requests(&service, 4, stop.clone());
    let (in_flight, rest) = half_sent_login(&service).await;
    tokio::time::sleep(Duration::from_millis(500)).await;

    service.terminate().await;
    let signalled = Instant::now();
    // Readiness turns 503 at once, while the service still answers everything else.
    let readiness = loop {
        let answer = service
            .client
            .get(service.url("/health/ready"))
            .send()
            .await
            .expect("readiness answers during the drain");
        if answer.status() == StatusCode::SERVICE_UNAVAILABLE {
            break answer.json::<serde_json::Value>().await.expect("JSON");
        }
        assert!(
            signalled.elapsed() < Duration::from_secs(1),
            "readiness still {} 1 s after SIGTERM",
            answer.status()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert!(
        signalled.elapsed() < DRAIN,
        "readiness turned 503 only after the drain"
    );
    assert_eq!(readiness["status"], "stopping", "{readiness}");
    assert_eq!(readiness["error"]["code"], "shutting_down", "{readiness}");
    let live = service.client.get(service.url("/health")).send().await;
    assert_eq!(
        live.expect("liveness during the drain").status(),
        StatusCode::OK
    );

    let refused_at = until_connections_are_refused(&service, DRAIN + Duration::from_secs(3)).await;
    assert!(
        refused_at - signalled >= DRAIN - Duration::from_millis(100),
        "stopped accepting {:?} after the signal, before the drain time",
        refused_at - signalled
    );
    // Accepted before the listener closed, its body arriving only now: still answered.
    assert_eq!(finish(in_flight, &rest).await, "HTTP/1.1 401");
    stop.store(true, Ordering::Relaxed);

    let status = service.wait(GRACE).await;
    let exited = signalled.elapsed();
    assert_eq!(status.code(), Some(0), "{:?}", service.log());
    assert!(exited < GRACE, "exited {exited:?} after SIGTERM");

    let mut before_signal = 0;
    let mut during_drain = 0;
    for client in stream {
        for sent in client.await.expect("a client task") {
            let accepted_before = sent.at < signalled;
            // Sent while the drain surely still served (a margin before it ends).
            let in_drain =
                !accepted_before && sent.at < signalled + DRAIN - Duration::from_millis(300);
            if accepted_before || in_drain {
                assert_eq!(
                    sent.answer.as_ref().ok(),
                    Some(&StatusCode::UNAUTHORIZED),
                    "a request sent {} the signal got {:?}",
                    if accepted_before {
                        "before"
                    } else {
                        "during the drain after"
                    },
                    sent.answer
                );
            }
            before_signal += usize::from(accepted_before);
            during_drain += usize::from(in_drain);
        }
    }
    assert!(
        before_signal >= 4,
        "only {before_signal} requests before the signal"
    );
    assert!(
        during_drain >= 4,
        "only {during_drain} requests during the drain"
    );
    eprintln!(
        "{backend:?}: {before_signal} requests before SIGTERM and {during_drain} during the drain \
         all answered; exit 0 after {exited:?}"
    );
    assert!(
        !service.logged("shut down").is_empty(),
        "no shut-down line: {:?}",
        service.log()
    );
}

async fn a_request_still_running_at_the_grace_time_is_cut_and_the_process_exits_0(
    backend: Backend,
) {
    let env = TestEnv::new(backend).await;
    let grace = Duration::from_secs(3);
    let mut service = ServiceProcess::start(
        &env,
        &[
            ("AIDLC_SHUTDOWN_DRAIN_SECONDS", "1"),
            ("AIDLC_SHUTDOWN_GRACE_SECONDS", "3"),
        ],
    )
    .await;
    // Its body never comes: without the grace bound the shutdown would wait forever.
    let (_stuck, _rest) = half_sent_login(&service).await;
    tokio::time::sleep(Duration::from_millis(200)).await;

    service.terminate().await;
    let signalled = Instant::now();
    let status = service.wait(grace + Duration::from_secs(5)).await;
    let exited = signalled.elapsed();
    assert_eq!(status.code(), Some(0), "{:?}", service.log());
    assert!(
        exited >= grace - Duration::from_millis(100) && exited < grace + Duration::from_secs(2),
        "exited {exited:?} after SIGTERM, grace {grace:?}"
    );
    let cut = service.logged("requests still running at the end of the grace time were cut");
    assert_eq!(cut.len(), 1, "{:?}", service.log());
    assert_eq!(cut[0]["level"], "WARN", "{}", cut[0]);
}
