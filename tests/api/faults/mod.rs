//! Faults in the middle of concurrent traffic: Redis or PostgreSQL going away, a dependency
//! that accepts and never answers, SIGTERM during registrations. During the fault the answers
//! are the documented 503s (never a 500, never a hang), the service recovers without a restart
//! while the traffic goes on, and afterwards `support/invariants.rs` holds: no user without a
//! way to verify, no code without its mail, no revoked session alive again.

mod hang;
mod interrupted;
mod outage;
mod sigterm;

use std::time::Duration;

use secrecy::SecretString;

use crate::helpers::{Backend, POSTGRES_ADDR, REDIS_ADDR, TcpProxy, TestEnv};
use crate::support::servers::Endpoint;

/// How soon after the dependency returns the app must say it is ready again.
pub(crate) const RECOVERY_LIMIT: Duration = Duration::from_secs(5);
/// The dependency timeout the in-process apps run with (the default).
pub(crate) const DEPENDENCY_TIMEOUT: Duration = Duration::from_secs(1);
/// The slowest answer allowed while a dependency is down or hung. A request answers 503 at
/// its first store call that fails, each bounded by the dependency timeout (a pool acquire
/// included); before it, the rate limiter's shared store may cost one more timeout with
/// PostgreSQL (then the limiter counts in memory and skips the shared store for 5 s). With
/// Redis hung, the call after an unanswered one fails at once (`store/redis/breaker.rs`), so
/// the limiter's and the cooldown's calls cost one timeout between them. Two timeouts, plus
/// 1.5 s for 200 requests at once on a loaded 2-core machine (measured alone: 1.6 s with
/// PostgreSQL hung, 1.6 s with Redis hung, 2.2 s before the breaker).
pub(crate) const SLOWEST_ANSWER: Duration = Duration::from_millis(3500);

/// Which dependency the proxy stands in front of.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Dependency {
    Postgres,
    Redis,
}

impl Dependency {
    fn upstream(self) -> Endpoint {
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
