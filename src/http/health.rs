//! Health: `/health` for the ALB (never touches a dependency), `/health/ready` for operators.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde::Serialize;
use tokio::sync::watch;
use utoipa::ToSchema;

use super::error::ErrorDetail;
use crate::store::Ping;

/// What readiness pings: the SQL database, and Redis when configured; and whether the
/// process is shutting down.
#[derive(Clone)]
pub struct Probes {
    /// The SQL database.
    pub database: Arc<dyn Ping>,
    /// Redis, when `REDIS_URL` is set.
    pub redis: Option<Arc<dyn Ping>>,
    /// True from the shutdown signal on (see `App::run`).
    pub stopping: watch::Receiver<bool>,
}

/// Liveness answer.
#[derive(Serialize, ToSchema)]
pub struct Health {
    /// Always `ok`.
    status: &'static str,
}

/// Readiness answer: each dependency is `ok`, `unavailable` or `not_configured`.
#[derive(Serialize, ToSchema)]
pub struct Readiness {
    /// `ready` or `unavailable`.
    status: &'static str,
    /// Per dependency.
    checks: BTreeMap<&'static str, &'static str>,
    /// Present when not ready: names what failed.
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<ErrorDetail>,
}

/// Liveness: 200 while the process serves requests.
#[utoipa::path(get, path = "/health", tag = "health",
    responses((status = 200, description = "Serving", body = Health)))]
pub async fn live() -> Json<Health> {
    Json(Health { status: "ok" })
}

/// Readiness: 503 at once when shutting down (so the load balancer stops routing here while
/// requests in flight finish); otherwise pings the database and Redis, each within the
/// dependency timeout.
#[utoipa::path(get, path = "/health/ready", tag = "health",
    responses(
        (status = 200, description = "Every dependency answered", body = Readiness),
        (status = 503, description = "A dependency did not answer (`checks` names it), or the service is shutting down (`error.code` is `shutting_down`)", body = Readiness),
    ))]
pub async fn ready(State(probes): State<Probes>) -> (StatusCode, Json<Readiness>) {
    if *probes.stopping.borrow() {
        let error = ErrorDetail {
            code: "shutting_down",
            message: "the service is shutting down".to_owned(),
        };
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(Readiness {
                status: "stopping",
                checks: BTreeMap::new(),
                error: Some(error),
            }),
        );
    }
    let (database, redis) = tokio::join!(probes.database.ping(), async {
        match &probes.redis {
            Some(redis) => Some(redis.ping().await),
            None => None,
        }
    });
    let mut checks = BTreeMap::new();
    let mut failed = Vec::new();
    checks.insert(
        "database",
        if database.is_ok() {
            "ok"
        } else {
            "unavailable"
        },
    );
    if let Err(e) = &database {
        tracing::warn!(error = %e, "readiness: database unavailable");
        failed.push("database");
    }
    match &redis {
        None => {
            checks.insert("redis", "not_configured");
        }
        Some(Ok(())) => {
            checks.insert("redis", "ok");
        }
        Some(Err(e)) => {
            tracing::warn!(error = %e, "readiness: redis unavailable");
            checks.insert("redis", "unavailable");
            failed.push("redis");
        }
    }
    if failed.is_empty() {
        (
            StatusCode::OK,
            Json(Readiness {
                status: "ready",
                checks,
                error: None,
            }),
        )
    } else {
        let error = ErrorDetail {
            code: "not_ready",
            message: format!("unavailable: {}", failed.join(", ")),
        };
        (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(Readiness {
                status: "unavailable",
                checks,
                error: Some(error),
            }),
        )
    }
}
