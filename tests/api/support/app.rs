//! The app under test: one environment (settings, database, clock, mailbox) per test, and
//! instances of the real service on port 0 against it.

use std::net::{IpAddr, Ipv4Addr};
use std::sync::{Arc, Once, OnceLock};
use std::time::Duration;

use aidlc_auth::app::{App, Overrides};
use aidlc_auth::clock::ManualClock;
use aidlc_auth::config::{Argon2Params, LogFormat, RuntimeSettings, Settings};
use aidlc_auth::domain::RateLimit;
use aidlc_auth::email::EmailSender;
use metrics_exporter_prometheus::PrometheusHandle;
use secrecy::SecretString;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use super::backend::Backend;
use super::database::TestDatabase;
use super::mailbox::{CapturingMailer, Mailbox};
use super::servers;

static TRACING: Once = Once::new();

/// The metrics recorder of this test process: installed by the first app that serves metrics
/// and shared by every later one (a process has one recorder).
fn metrics_handle() -> PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE
        .get_or_init(|| aidlc_auth::metrics::install().expect("installing the metrics recorder"))
        .clone()
}

/// `TEST_LOG=1 cargo test --test api` shows the app's log.
fn init_tracing() {
    TRACING.call_once(|| {
        if std::env::var_os("TEST_LOG").is_some() {
            aidlc_auth::telemetry::init(LogFormat::Pretty);
        }
    });
}

/// The issuer every test app signs for (unless a test sets its own or none).
pub const TEST_ISSUER: &str = "http://localhost:8001";

/// A limit no ordinary scenario reaches.
fn lenient() -> RateLimit {
    "100000/1m".parse().expect("a valid limit")
}

/// What one test's apps share: settings, database, clock and mailbox.
#[derive(Clone)]
pub struct TestEnv {
    /// The settings every app of this test starts with (editable before `spawn`).
    pub settings: Settings,
    /// The clock every app of this test reads.
    pub clock: Arc<ManualClock>,
    /// Where every app of this test sends mail.
    pub mailbox: Mailbox,
    /// The test's database.
    pub db: Arc<TestDatabase>,
    /// True (the default): mail goes to `mailbox`. False: to the transport the settings
    /// configure (`email_transport`, e.g. SMTP to [`servers::smtp`]).
    pub capture_mail: bool,
}

impl TestEnv {
    /// A fresh database (and Redis prefix), cheap Argon2, port 0 on 127.0.0.1.
    pub async fn new(backend: Backend) -> Self {
        Self::with_database(backend, TestDatabase::create(backend).await)
    }

    /// Like [`Self::new`], on `db` (e.g. one on the TLS-only PostgreSQL).
    pub fn with_database(backend: Backend, db: TestDatabase) -> Self {
        init_tracing();
        let db = Arc::new(db);
        let settings = Settings {
            host: Some(IpAddr::V4(Ipv4Addr::LOCALHOST)),
            port: 0,
            // Fixed, so sibling instances on other ports accept each other's tokens.
            jwt_issuer: Some(TEST_ISSUER.to_owned()),
            database_url: SecretString::from(db.direct_url.clone()),
            redis_url: backend
                .has_redis()
                .then(|| SecretString::from(servers::redis().url.clone())),
            redis_key_prefix: if db.redis_prefix.is_empty() {
                Settings::default().redis_key_prefix
            } else {
                db.redis_prefix.clone()
            },
            argon2: Argon2Params {
                memory_kib: 1024,
                iterations: 1,
                parallelism: 1,
            },
            database_max_connections: 5,
            // Retries after the test moves the clock are picked up quickly.
            outbox_poll: Duration::from_millis(100),
            key_encryption_key: Some(super::at_rest::random_kek()),
            // No load balancer to wait for: `stop` goes straight to finishing requests.
            runtime: RuntimeSettings {
                shutdown_drain: Duration::ZERO,
                ..Settings::default().runtime
            },
            // Scenarios make many requests from one address and client IP: limits far above
            // them, unless a test of the limits sets its own (see `limits.rs`).
            rate_limit_ip: lenient(),
            rate_limit_address: lenient(),
            rate_limit_refresh: lenient(),
            code_guess_limit: lenient(),
            code_issue_limit: lenient(),
            password_failure_limit: lenient(),
            ..Settings::default()
        };
        let clock = Arc::new(ManualClock::starting_now());
        Self {
            settings,
            mailbox: Mailbox::new(db.clone(), clock.clone()),
            clock,
            db,
            capture_mail: true,
        }
    }

    /// Starts an app on this environment; panics if it does not build.
    pub async fn spawn(&self) -> TestApp {
        self.try_spawn().await.expect("building the app")
    }

    /// Starts an app on this environment.
    pub async fn try_spawn(&self) -> anyhow::Result<TestApp> {
        let overrides = Overrides {
            clock: Some(self.clock.clone()),
            mailer: self
                .capture_mail
                .then(|| Arc::new(CapturingMailer(self.mailbox.clone())) as Arc<dyn EmailSender>),
            metrics: self.settings.runtime.metrics_addr.map(|_| metrics_handle()),
        };
        let app = App::build_with(self.settings.clone(), overrides).await?;
        let port = app.port();
        let metrics_port = app.metrics_port();
        let (tx, rx) = oneshot::channel::<()>();
        let server = tokio::spawn(app.run(async move {
            let _ = rx.await;
        }));
        let client = reqwest::Client::builder()
            .no_proxy()
            .timeout(Duration::from_secs(15))
            .build()
            .expect("building the HTTP client");
        Ok(TestApp {
            address: format!("http://127.0.0.1:{port}"),
            port,
            metrics_port,
            client,
            env: self.clone(),
            shutdown: Some(tx),
            server: Some(server),
        })
    }
}

/// One running instance of the service.
pub struct TestApp {
    /// `http://127.0.0.1:<port>`.
    pub address: String,
    /// The bound port.
    pub port: u16,
    /// The metrics listener's port, when the settings name a metrics address.
    pub metrics_port: Option<u16>,
    /// A client that never uses a system proxy.
    pub client: reqwest::Client,
    /// What this app shares with its siblings.
    pub env: TestEnv,
    shutdown: Option<oneshot::Sender<()>>,
    server: Option<JoinHandle<std::io::Result<()>>>,
}

impl TestApp {
    /// The `iss` of this app's tokens.
    pub fn issuer(&self) -> &str {
        self.env
            .settings
            .jwt_issuer
            .as_deref()
            .unwrap_or(TEST_ISSUER)
    }

    /// A fresh environment for `backend` and one app on it.
    pub async fn spawn(backend: Backend) -> Self {
        TestEnv::new(backend).await.spawn().await
    }

    /// Another instance on the same database, Redis prefix, clock and mailbox.
    pub async fn spawn_sibling(&self) -> TestApp {
        self.env.spawn().await
    }

    /// The shared mailbox.
    pub fn mailbox(&self) -> &Mailbox {
        &self.env.mailbox
    }

    /// Moves the shared clock forward by `secs` seconds.
    pub fn advance(&self, secs: u64) {
        self.env.clock.advance(Duration::from_secs(secs));
    }

    /// The test's database.
    pub fn db(&self) -> &TestDatabase {
        &self.env.db
    }

    /// Absolute URL of `path`.
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.address)
    }

    /// Graceful shutdown; waits for the server task. (The test's database is removed when the
    /// last app or environment holding it is dropped.)
    pub async fn stop(mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(server) = self.server.take() {
            match tokio::time::timeout(Duration::from_secs(10), server).await {
                Ok(Ok(Ok(()))) => {}
                Ok(Ok(Err(e))) => panic!("the server stopped with an error: {e}"),
                Ok(Err(e)) => panic!("the server task failed: {e}"),
                Err(_) => panic!("the server did not shut down within 10 s"),
            }
        }
    }
}
