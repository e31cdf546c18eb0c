//! `/metrics` on its own listener (`AIDLC_METRICS_ADDR`) of the real binary: valid Prometheus
//! text (read by the reference parser) whose counters move with the requests made, labelled
//! by route template and never by an address, id or token.

use reqwest::StatusCode;
use serde_json::json;
use uuid::Uuid;

use crate::helpers::{Backend, PASSWORD, TestApp, TestEnv, backend_tests, unique_email};
use crate::support::process::ServiceProcess;
use crate::support::prometheus::Scrape;

backend_tests!(metrics_parse_as_prometheus_text_and_move_with_requests);

const REQUESTS: &str = "aidlc_auth_http_requests_total";

async fn scrape(service: &ServiceProcess) -> Scrape {
    let port = service.metrics_port.expect("the metrics listener's port");
    let answer = service
        .client
        .get(format!("http://127.0.0.1:{port}/metrics"))
        .send()
        .await
        .expect("scraping /metrics");
    assert_eq!(answer.status(), StatusCode::OK);
    let content_type = answer.headers()["content-type"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(
        content_type.starts_with("text/plain; version=0.0.4"),
        "{content_type}"
    );
    Scrape::parse(answer.text().await.expect("the scrape")).await
}

/// How much `name{labels}` grew between two scrapes.
fn grew(before: &Scrape, after: &Scrape, name: &str, labels: &[(&str, &str)]) -> f64 {
    after.value(name, labels) - before.value(name, labels)
}

async fn metrics_parse_as_prometheus_text_and_move_with_requests(backend: Backend) {
    let env = TestEnv::new(backend).await;
    let service = ServiceProcess::start(&env, &[("AIDLC_METRICS_ADDR", "127.0.0.1:0")]).await;
    let before = scrape(&service).await;

    let email = unique_email("metrics");
    let post = |path: &str, body: serde_json::Value| {
        service.client.post(service.url(path)).json(&body).send()
    };
    let login = post(
        "/api/auth/login",
        json!({ "email": email, "password": "not the password" }),
    )
    .await
    .unwrap();
    assert_eq!(login.status(), StatusCode::UNAUTHORIZED);
    let register = post(
        "/api/auth/register",
        json!({ "email": email, "password": PASSWORD, "full_name": "Metrics User" }),
    )
    .await
    .unwrap();
    assert_eq!(register.status(), StatusCode::ACCEPTED);
    let session_id = Uuid::new_v4().to_string();
    let revoke = service
        .client
        .delete(service.url(&format!("/api/auth/sessions/{session_id}")))
        .bearer_auth("not-a-token")
        .send()
        .await
        .unwrap();
    assert_eq!(revoke.status(), StatusCode::UNAUTHORIZED);
    let unknown = service
        .client
        .get(service.url(&format!("/no/such/{email}")))
        .send()
        .await
        .unwrap();
    assert_eq!(unknown.status(), StatusCode::NOT_FOUND);
    // The API's own port has no /metrics.
    let on_api = service
        .client
        .get(service.url("/metrics"))
        .send()
        .await
        .unwrap();
    assert_eq!(on_api.status(), StatusCode::NOT_FOUND);

    let after = scrape(&service).await;
    let login_401 = [
        ("route", "/api/auth/login"),
        ("method", "POST"),
        ("status", "401"),
    ];
    assert_eq!(
        grew(&before, &after, REQUESTS, &login_401),
        1.0,
        "{}",
        after.text
    );
    let revoke_401 = [
        ("route", "/api/auth/sessions/{id}"),
        ("method", "DELETE"),
        ("status", "401"),
    ];
    assert_eq!(
        grew(&before, &after, REQUESTS, &revoke_401),
        1.0,
        "{}",
        after.text
    );
    let unmatched = [("route", "<unmatched>"), ("status", "404")];
    assert_eq!(
        grew(&before, &after, REQUESTS, &unmatched),
        2.0,
        "{}",
        after.text
    );
    let refused = [("method", "password"), ("outcome", "refused")];
    assert_eq!(
        grew(&before, &after, "aidlc_auth_logins_total", &refused),
        1.0,
        "{}",
        after.text
    );
    let issued = [("purpose", "registration"), ("event", "issued")];
    assert_eq!(
        grew(&before, &after, "aidlc_auth_codes_total", &issued),
        1.0,
        "{}",
        after.text
    );

    // Latency and the Argon2 queue are histograms with buckets, not summaries.
    let duration = "aidlc_auth_http_request_duration_seconds";
    assert_eq!(after.kind(duration), Some("histogram"), "{}", after.text);
    let login_route = [("route", "/api/auth/login"), ("method", "POST")];
    let count = format!("{duration}_count");
    assert_eq!(
        grew(&before, &after, &count, &login_route),
        1.0,
        "{}",
        after.text
    );
    let buckets = after.matching(
        "aidlc_auth_http_request_duration_seconds_bucket",
        &login_route,
    );
    assert!(buckets.count() > 5, "{}", after.text);
    let waits = "aidlc_auth_password_hash_wait_seconds_count";
    assert!(grew(&before, &after, waits, &[]) >= 2.0, "{}", after.text);
    // The sweeper's outbox reading, as gauges.
    assert_eq!(
        after.kind("aidlc_auth_outbox_mails"),
        Some("gauge"),
        "{}",
        after.text
    );
    assert_eq!(
        after.matching("aidlc_auth_outbox_mails", &[]).count(),
        3,
        "{}",
        after.text
    );
    assert!(
        after
            .matching("aidlc_auth_outbox_oldest_queued_age_seconds", &[])
            .count()
            == 1
    );

    for sample in &after.samples {
        assert!(sample.name.starts_with("aidlc_auth_"), "{}", sample.name);
        for value in sample.labels.values() {
            assert!(
                !value.contains('@')
                    && !value.contains(&session_id)
                    && !value.contains("127.0.0.1"),
                "a label holds {value:?}: {sample:?}"
            );
        }
    }
}

/// Several apps in one process (as this suite runs them) share the one recorder the process
/// may have: each serves `/metrics` on its own listener, and a request to one shows up there.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_process_apps_share_the_process_recorder() {
    let mut env = TestEnv::new(Backend::Sqlite).await;
    env.settings.runtime.metrics_addr = Some("127.0.0.1:0".parse().unwrap());
    let first = env.spawn().await;
    let second = first.spawn_sibling().await;
    async fn scrape_app(app: &TestApp) -> Scrape {
        let port = app.metrics_port.expect("a metrics listener");
        let url = format!("http://127.0.0.1:{port}/metrics");
        let text = app
            .client
            .get(url)
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        Scrape::parse(text).await
    }
    let health = [("route", "/health"), ("method", "GET"), ("status", "200")];
    let before = scrape_app(&first).await.value(REQUESTS, &health);
    assert_eq!(second.get("/health").await.status(), StatusCode::OK);
    let after = scrape_app(&first).await.value(REQUESTS, &health);
    assert!(after > before, "{before} -> {after}");
    assert!(scrape_app(&second).await.value(REQUESTS, &health) >= after);
    second.stop().await;
    first.stop().await;
}
