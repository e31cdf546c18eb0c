//! The harness: a real app on port 0 against a fresh database (SQLite file or PostgreSQL
//! database + Redis key prefix), a captured mailbox, a manual clock, and a TCP proxy that can
//! break a dependency on demand.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, Once};
use std::time::Duration;

use aidlc_auth::app::{App, Overrides};
use aidlc_auth::clock::ManualClock;
use aidlc_auth::config::{Argon2Params, LogFormat, Settings};
use aidlc_auth::domain::CodePurpose;
use aidlc_auth::email::{Email, EmailSender, Message, SendError};
use reqwest::StatusCode;
use secrecy::SecretString;
use serde_json::{Value, json};
use sqlx::{AssertSqlSafe, Connection};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{oneshot, watch};
use tokio::task::JoinHandle;
use uuid::Uuid;

/// The PostgreSQL server the suite creates its databases in.
pub const POSTGRES_ADMIN_URL: &str = "postgres://postgres@127.0.0.1:5432/postgres";
/// Where PostgreSQL listens (for proxies).
pub const POSTGRES_ADDR: &str = "127.0.0.1:5432";
/// The Redis server the suite shares, one key prefix per test.
pub const REDIS_URL: &str = "redis://127.0.0.1:6379";
/// Where Redis listens (for proxies).
pub const REDIS_ADDR: &str = "127.0.0.1:6379";

/// A password that satisfies the policy.
pub const PASSWORD: &str = "correct horse battery";

/// Generates, for each scenario `async fn name(backend: Backend)`, a module `name` with one
/// test per backend: `name::sqlite` and `name::postgres_redis`.
macro_rules! backend_tests {
    ($($name:ident),+ $(,)?) => {
        $(
            mod $name {
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn sqlite() {
                    super::$name($crate::helpers::Backend::Sqlite).await;
                }

                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn postgres_redis() {
                    super::$name($crate::helpers::Backend::PostgresRedis).await;
                }
            }
        )+
    };
}
pub(crate) use backend_tests;

/// Which stores the app runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// Users, codes and sessions in one SQLite file.
    Sqlite,
    /// Users in PostgreSQL; codes, cooldowns and sessions in Redis.
    PostgresRedis,
}

static TRACING: Once = Once::new();

/// `TEST_LOG=1 cargo test --test api` shows the app's log.
fn init_tracing() {
    TRACING.call_once(|| {
        if std::env::var_os("TEST_LOG").is_some() {
            aidlc_auth::telemetry::init(LogFormat::Pretty);
        }
    });
}

// ---------------------------------------------------------------------------------------------
// Mailbox

/// Every e-mail the app sent, in order; can be told to make the transport fail.
#[derive(Clone, Default)]
pub struct Mailbox {
    sent: Arc<Mutex<Vec<Email>>>,
    failing: Arc<AtomicBool>,
}

impl Mailbox {
    /// While `true`, every send fails (as a mail provider outage would) and nothing is kept.
    pub fn set_failing(&self, failing: bool) {
        self.failing.store(failing, Ordering::SeqCst);
    }

    /// A copy of every message so far.
    pub fn all(&self) -> Vec<Email> {
        self.sent.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Messages sent to exactly `to` (the stored, normalised address).
    pub fn sent_to(&self, to: &str) -> Vec<Email> {
        self.all()
            .into_iter()
            .filter(|e| e.to.as_str() == to)
            .collect()
    }

    /// The codes sent to `to` for `purpose`, oldest first.
    pub fn codes_for(&self, to: &str, purpose: CodePurpose) -> Vec<String> {
        self.sent_to(to)
            .into_iter()
            .filter_map(|e| match e.message {
                Message::VerificationCode {
                    purpose: p, code, ..
                } if p == purpose => Some(code.expose().to_owned()),
                _ => None,
            })
            .collect()
    }

    /// The newest code sent to `to` for `purpose`; panics when there is none.
    pub fn last_code_for(&self, to: &str, purpose: CodePurpose) -> String {
        self.codes_for(to, purpose).pop().unwrap_or_else(|| {
            panic!(
                "no {purpose:?} code was sent to {to}; mailbox: {:?}",
                self.all()
            )
        })
    }

    /// How many "account already exists" notices went to `to`.
    pub fn notices_for(&self, to: &str) -> usize {
        self.sent_to(to)
            .iter()
            .filter(|e| matches!(e.message, Message::AccountAlreadyExists))
            .count()
    }

    /// How many messages were sent in total.
    pub fn len(&self) -> usize {
        self.sent.lock().unwrap_or_else(|p| p.into_inner()).len()
    }
}

/// The mail transport the tests install: it keeps every message.
struct CapturingMailer(Mailbox);

#[async_trait::async_trait]
impl EmailSender for CapturingMailer {
    async fn send(&self, email: &Email) -> Result<(), SendError> {
        if self.0.failing.load(Ordering::SeqCst) {
            return Err(SendError(anyhow::anyhow!(
                "the test mailbox is refusing mail"
            )));
        }
        self.0
            .sent
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(email.clone());
        Ok(())
    }
}

// ---------------------------------------------------------------------------------------------
// Fresh stores per test

/// A database (and Redis prefix) created for one test, removed when its last app stops.
pub struct TestDatabase {
    backend: Backend,
    /// The real database URL (apps may reach it through a proxy instead).
    pub direct_url: String,
    /// The Redis key prefix (PostgresRedis only).
    pub redis_prefix: String,
    pg_name: Option<String>,
    sqlite_dir: Option<PathBuf>,
}

impl TestDatabase {
    async fn create(backend: Backend) -> Self {
        let id = Uuid::new_v4().simple().to_string();
        match backend {
            Backend::Sqlite => {
                let dir = std::env::temp_dir().join(format!("aidlc_test_{id}"));
                std::fs::create_dir_all(&dir).expect("creating the test database directory");
                Self {
                    backend,
                    direct_url: format!("sqlite://{}/test.db", dir.display()),
                    redis_prefix: String::new(),
                    pg_name: None,
                    sqlite_dir: Some(dir),
                }
            }
            Backend::PostgresRedis => {
                let name = format!("aidlc_test_{id}");
                let mut admin = sqlx::PgConnection::connect(POSTGRES_ADMIN_URL)
                    .await
                    .expect("connecting to PostgreSQL at 127.0.0.1:5432");
                sqlx::query(AssertSqlSafe(format!(r#"CREATE DATABASE "{name}""#)))
                    .execute(&mut admin)
                    .await
                    .expect("creating the test database");
                let _ = admin.close().await;
                Self {
                    backend,
                    direct_url: format!("postgres://postgres@127.0.0.1:5432/{name}"),
                    redis_prefix: format!("test:{id}:"),
                    pg_name: Some(name),
                    sqlite_dir: None,
                }
            }
        }
    }

    /// The URL an app reaching PostgreSQL through `proxy` uses.
    pub fn url_through(&self, proxy: &TcpProxy) -> String {
        let name = self
            .pg_name
            .as_deref()
            .expect("only PostgreSQL databases can be proxied");
        format!("postgres://postgres@127.0.0.1:{}/{name}", proxy.port)
    }

    /// `SELECT count(*) FROM users`, read directly (not through any proxy).
    pub async fn count_users(&self) -> i64 {
        self.scalar_i64("SELECT count(*) FROM users").await
    }

    /// Runs a query returning one integer, directly against the test database.
    pub async fn scalar_i64(&self, sql: &'static str) -> i64 {
        match self.backend {
            Backend::Sqlite => {
                let mut conn = sqlx::SqliteConnection::connect(&self.direct_url)
                    .await
                    .expect("opening the SQLite test database");
                let n: i64 = sqlx::query_scalar(sql)
                    .fetch_one(&mut conn)
                    .await
                    .expect(sql);
                let _ = conn.close().await;
                n
            }
            Backend::PostgresRedis => {
                let mut conn = sqlx::PgConnection::connect(&self.direct_url)
                    .await
                    .expect("connecting to the PostgreSQL test database");
                let n: i64 = sqlx::query_scalar(sql)
                    .fetch_one(&mut conn)
                    .await
                    .expect(sql);
                let _ = conn.close().await;
                n
            }
        }
    }

    /// The stored PKCS#8 private key of signing key `kid`, read directly.
    pub async fn signing_key(&self, kid: &str) -> Option<Vec<u8>> {
        const SQL: &str = "SELECT private_key FROM signing_keys WHERE kid = $1";
        match self.backend {
            Backend::Sqlite => {
                let mut conn = sqlx::SqliteConnection::connect(&self.direct_url)
                    .await
                    .expect("opening the SQLite test database");
                let key = sqlx::query_scalar(SQL)
                    .bind(kid)
                    .fetch_optional(&mut conn)
                    .await
                    .expect(SQL);
                let _ = conn.close().await;
                key
            }
            Backend::PostgresRedis => {
                let mut conn = sqlx::PgConnection::connect(&self.direct_url)
                    .await
                    .expect("connecting to the PostgreSQL test database");
                let key = sqlx::query_scalar(SQL)
                    .bind(kid)
                    .fetch_optional(&mut conn)
                    .await
                    .expect(SQL);
                let _ = conn.close().await;
                key
            }
        }
    }

    /// Drops the database, the Redis keys and the temp dir (best effort).
    async fn remove(&mut self) {
        if let Some(dir) = self.sqlite_dir.take() {
            let _ = std::fs::remove_dir_all(dir);
        }
        if let Some(name) = self.pg_name.take()
            && let Ok(mut admin) = sqlx::PgConnection::connect(POSTGRES_ADMIN_URL).await
        {
            let _ = sqlx::query(AssertSqlSafe(format!(
                r#"DROP DATABASE IF EXISTS "{name}" WITH (FORCE)"#
            )))
            .execute(&mut admin)
            .await;
            let _ = admin.close().await;
        }
        let prefix = std::mem::take(&mut self.redis_prefix);
        if !prefix.is_empty()
            && let Ok(client) = redis::Client::open(REDIS_URL)
            && let Ok(mut conn) = client.get_multiplexed_async_connection().await
        {
            let keys: Vec<String> = redis::cmd("KEYS")
                .arg(format!("{prefix}*"))
                .query_async(&mut conn)
                .await
                .unwrap_or_default();
            if !keys.is_empty() {
                let _: Result<(), _> = redis::cmd("DEL").arg(keys).query_async(&mut conn).await;
            }
        }
    }
}

impl Drop for TestDatabase {
    /// Runs on its own thread and runtime: the test's runtime may be shutting down.
    fn drop(&mut self) {
        if self.pg_name.is_none() && self.sqlite_dir.is_none() && self.redis_prefix.is_empty() {
            return;
        }
        let mut this = Self {
            backend: self.backend,
            direct_url: std::mem::take(&mut self.direct_url),
            redis_prefix: std::mem::take(&mut self.redis_prefix),
            pg_name: self.pg_name.take(),
            sqlite_dir: self.sqlite_dir.take(),
        };
        let cleaner = std::thread::spawn(move || {
            if let Ok(runtime) = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                runtime.block_on(this.remove());
            }
        });
        let _ = cleaner.join();
    }
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
}

impl TestEnv {
    /// A fresh database (and Redis prefix), cheap Argon2, port 0 on 127.0.0.1.
    pub async fn new(backend: Backend) -> Self {
        init_tracing();
        let db = TestDatabase::create(backend).await;
        let settings = Settings {
            host: IpAddr::V4(Ipv4Addr::LOCALHOST),
            port: 0,
            database_url: SecretString::from(db.direct_url.clone()),
            redis_url: match backend {
                Backend::Sqlite => None,
                Backend::PostgresRedis => Some(SecretString::from(REDIS_URL)),
            },
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
            ..Settings::default()
        };
        Self {
            settings,
            clock: Arc::new(ManualClock::starting_now()),
            mailbox: Mailbox::default(),
            db: Arc::new(db),
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
            mailer: Some(Arc::new(CapturingMailer(self.mailbox.clone()))),
        };
        let app = App::build_with(self.settings.clone(), overrides).await?;
        let port = app.port();
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
            client,
            env: self.clone(),
            shutdown: Some(tx),
            server: Some(server),
        })
    }
}

// ---------------------------------------------------------------------------------------------
// The app under test

/// One running instance of the service.
pub struct TestApp {
    /// `http://127.0.0.1:<port>`.
    pub address: String,
    /// The bound port.
    pub port: u16,
    /// A client that never uses a system proxy.
    pub client: reqwest::Client,
    /// What this app shares with its siblings.
    pub env: TestEnv,
    shutdown: Option<oneshot::Sender<()>>,
    server: Option<JoinHandle<std::io::Result<()>>>,
}

impl TestApp {
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

    // --- raw requests ---

    /// `GET path`.
    pub async fn get(&self, path: &str) -> reqwest::Response {
        self.client
            .get(self.url(path))
            .send()
            .await
            .expect("GET failed")
    }

    /// `POST path` with a JSON body.
    pub async fn post_json(&self, path: &str, body: &Value) -> reqwest::Response {
        self.client
            .post(self.url(path))
            .json(body)
            .send()
            .await
            .expect("POST failed")
    }

    /// `POST path` with a raw body and content type.
    pub async fn post_raw(
        &self,
        path: &str,
        content_type: Option<&str>,
        body: impl Into<reqwest::Body>,
    ) -> reqwest::Response {
        let mut request = self.client.post(self.url(path)).body(body);
        if let Some(ct) = content_type {
            request = request.header(reqwest::header::CONTENT_TYPE, ct);
        }
        request.send().await.expect("POST failed")
    }

    /// `GET path` with `Authorization: Bearer token`.
    pub async fn get_with_token(&self, path: &str, token: &str) -> reqwest::Response {
        self.client
            .get(self.url(path))
            .bearer_auth(token)
            .send()
            .await
            .expect("GET failed")
    }

    /// `POST path` (no body) with `Authorization: Bearer token`.
    pub async fn post_with_token(&self, path: &str, token: &str) -> reqwest::Response {
        self.client
            .post(self.url(path))
            .bearer_auth(token)
            .send()
            .await
            .expect("POST failed")
    }

    // --- the API ---

    /// `POST /api/auth/register`.
    pub async fn register(
        &self,
        email: &str,
        password: &str,
        full_name: &str,
    ) -> reqwest::Response {
        self.post_json(
            "/api/auth/register",
            &json!({ "email": email, "password": password, "full_name": full_name }),
        )
        .await
    }

    /// `POST /api/auth/verify-registration`.
    pub async fn verify_registration(&self, email: &str, code: &str) -> reqwest::Response {
        self.post_json(
            "/api/auth/verify-registration",
            &json!({ "email": email, "verification_code": code }),
        )
        .await
    }

    /// `POST /api/auth/login` with a password.
    pub async fn login_password(&self, email: &str, password: &str) -> reqwest::Response {
        self.post_json(
            "/api/auth/login",
            &json!({ "email": email, "password": password }),
        )
        .await
    }

    /// `POST /api/auth/login` with a password, sent with `User-Agent: user_agent`.
    pub async fn login_password_as(
        &self,
        email: &str,
        password: &str,
        user_agent: &str,
    ) -> reqwest::Response {
        self.client
            .post(self.url("/api/auth/login"))
            .header(reqwest::header::USER_AGENT, user_agent)
            .json(&json!({ "email": email, "password": password }))
            .send()
            .await
            .expect("POST failed")
    }

    /// `POST /api/auth/login` without a password (asks for a login code).
    pub async fn request_login_code(&self, email: &str) -> reqwest::Response {
        self.post_json("/api/auth/login", &json!({ "email": email }))
            .await
    }

    /// `POST /api/auth/verify-login`.
    pub async fn verify_login(&self, email: &str, code: &str) -> reqwest::Response {
        self.post_json(
            "/api/auth/verify-login",
            &json!({ "email": email, "verification_code": code }),
        )
        .await
    }

    /// `POST /api/auth/resend-code`.
    pub async fn resend_code(&self, email: &str, purpose: &str) -> reqwest::Response {
        self.post_json(
            "/api/auth/resend-code",
            &json!({ "email": email, "purpose": purpose }),
        )
        .await
    }

    /// `GET /api/auth/me`.
    pub async fn me(&self, token: &str) -> reqwest::Response {
        self.get_with_token("/api/auth/me", token).await
    }

    /// `POST /api/auth/refresh` with a refresh token.
    pub async fn refresh(&self, refresh_token: &str) -> reqwest::Response {
        self.post_json(
            "/api/auth/refresh",
            &serde_json::json!({ "refresh_token": refresh_token }),
        )
        .await
    }

    /// `POST /api/auth/logout`.
    pub async fn logout(&self, token: &str) -> reqwest::Response {
        self.post_with_token("/api/auth/logout", token).await
    }

    /// `POST /api/auth/logout-all` with the bearer `token` and, if given, a JSON body.
    pub async fn logout_all(&self, token: &str, body: Option<&Value>) -> reqwest::Response {
        let mut request = self
            .client
            .post(self.url("/api/auth/logout-all"))
            .bearer_auth(token);
        if let Some(body) = body {
            request = request.json(body);
        }
        request.send().await.expect("POST failed")
    }

    /// `GET /api/auth/sessions`.
    pub async fn sessions(&self, token: &str) -> reqwest::Response {
        self.get_with_token("/api/auth/sessions", token).await
    }

    /// `DELETE /api/auth/sessions/{id}`.
    pub async fn delete_session(&self, token: &str, id: &str) -> reqwest::Response {
        self.client
            .delete(self.url(&format!("/api/auth/sessions/{id}")))
            .bearer_auth(token)
            .send()
            .await
            .expect("DELETE failed")
    }

    /// `POST /api/auth/introspect`.
    pub async fn introspect(&self, token: &str) -> reqwest::Response {
        self.post_json("/api/auth/introspect", &json!({ "token": token }))
            .await
    }

    /// `GET /.well-known/jwks.json`, expecting 200; the key set.
    pub async fn jwks(&self) -> Value {
        expect_json(self.get("/.well-known/jwks.json").await, StatusCode::OK).await
    }

    // --- shortcuts ---

    /// Registers `email` (202 expected) and returns the registration code it was mailed.
    pub async fn register_pending(&self, email: &str, password: &str, full_name: &str) -> String {
        let response = self.register(email, password, full_name).await;
        assert_eq!(
            response.status(),
            StatusCode::ACCEPTED,
            "register {email}: {}",
            text(response).await
        );
        self.mailbox()
            .last_code_for(email, CodePurpose::Registration)
    }

    /// Registers and verifies `email`; returns the session body.
    pub async fn register_active(&self, email: &str, password: &str, full_name: &str) -> Value {
        let code = self.register_pending(email, password, full_name).await;
        let response = self.verify_registration(email, &code).await;
        expect_session(response).await
    }
}

// ---------------------------------------------------------------------------------------------
// Response assertions

/// The body as text (for failure messages).
pub async fn text(response: reqwest::Response) -> String {
    response
        .text()
        .await
        .unwrap_or_else(|e| format!("<unreadable body: {e}>"))
}

/// Status and JSON body.
pub async fn status_and_json(response: reqwest::Response) -> (StatusCode, Value) {
    let status = response.status();
    let body = response.text().await.expect("reading the body");
    let json =
        serde_json::from_str(&body).unwrap_or_else(|e| panic!("body is not JSON ({e}): {body:?}"));
    (status, json)
}

/// Asserts `status` and a JSON body; returns the body.
pub async fn expect_json(response: reqwest::Response, status: StatusCode) -> Value {
    let (actual, body) = status_and_json(response).await;
    assert_eq!(actual, status, "unexpected status; body: {body}");
    body
}

/// Asserts an error response `{"error":{"code","message"}}` with `status` and `code`; returns
/// the body.
pub async fn expect_error(response: reqwest::Response, status: StatusCode, code: &str) -> Value {
    let content_type = response
        .headers()
        .get(reqwest::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned();
    let body = expect_json(response, status).await;
    assert!(
        content_type.starts_with("application/json"),
        "content-type {content_type:?}"
    );
    assert_eq!(
        body["error"]["code"], code,
        "unexpected error code; body: {body}"
    );
    assert!(
        body["error"]["message"]
            .as_str()
            .is_some_and(|m| !m.is_empty()),
        "error.message must be a non-empty string: {body}"
    );
    let keys: Vec<&String> = body.as_object().expect("object").keys().collect();
    assert_eq!(keys, ["error"], "an error body has only `error`: {body}");
    let mut detail_keys: Vec<&String> = body["error"].as_object().expect("object").keys().collect();
    detail_keys.sort();
    assert_eq!(
        detail_keys,
        ["code", "message"],
        "error has only code and message: {body}"
    );
    body
}

/// Asserts a 200 session response for the given address; returns the body.
pub async fn expect_session(response: reqwest::Response) -> Value {
    let body = expect_json(response, StatusCode::OK).await;
    let access = body["access_token"]
        .as_str()
        .unwrap_or_else(|| panic!("no access_token: {body}"));
    assert_eq!(
        access.split('.').count(),
        3,
        "access token is a compact JWS: {body}"
    );
    let refresh = body["refresh_token"]
        .as_str()
        .unwrap_or_else(|| panic!("no refresh_token: {body}"));
    assert_eq!(
        refresh.len(),
        43,
        "refresh token is 32 bytes base64url: {body}"
    );
    assert_eq!(body["token_type"], "Bearer", "{body}");
    assert_eq!(body["expires_in"], 900, "{body}");
    assert!(
        body["session_id"]
            .as_str()
            .is_some_and(|s| Uuid::parse_str(s).is_ok()),
        "{body}"
    );
    assert_eq!(body["user"]["status"], "active", "{body}");
    body
}

/// The access token (bearer) of a token-pair body.
pub fn token(session: &Value) -> String {
    session["access_token"]
        .as_str()
        .expect("access_token")
        .to_owned()
}

/// The refresh token of a token-pair body.
pub fn refresh_token(session: &Value) -> String {
    session["refresh_token"]
        .as_str()
        .expect("refresh_token")
        .to_owned()
}

/// The session id of a token-pair body.
pub fn session_id(session: &Value) -> String {
    session["session_id"]
        .as_str()
        .expect("session_id")
        .to_owned()
}

/// One base64url (no padding) JSON part of a compact JWS: 0 the header, 1 the claims.
fn jws_part(jws: &str, index: usize) -> Value {
    use base64::Engine;
    let part = jws
        .split('.')
        .nth(index)
        .unwrap_or_else(|| panic!("not a compact JWS: {jws}"));
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(part)
        .unwrap_or_else(|e| panic!("JWS part {index} is not base64url ({e}): {jws}"));
    serde_json::from_slice(&bytes)
        .unwrap_or_else(|e| panic!("JWS part {index} is not JSON ({e}): {jws}"))
}

/// The decoded (unverified) JOSE header of a JWT.
pub fn jwt_header(jwt: &str) -> Value {
    jws_part(jwt, 0)
}

/// The decoded (unverified) claims of a JWT.
pub fn jwt_claims(jwt: &str) -> Value {
    jws_part(jwt, 1)
}

/// The `kid` header of a JWT.
pub fn jwt_kid(jwt: &str) -> String {
    jwt_header(jwt)["kid"]
        .as_str()
        .unwrap_or_else(|| panic!("no kid in the header of {jwt}"))
        .to_owned()
}

/// The `kid`s a JWK Set publishes, in order.
pub fn jwks_kids(jwks: &Value) -> Vec<String> {
    jwks["keys"]
        .as_array()
        .unwrap_or_else(|| panic!("not a JWK Set: {jwks}"))
        .iter()
        .map(|k| k["kid"].as_str().expect("every JWK has a kid").to_owned())
        .collect()
}

/// A well-formed code that differs from `code`.
pub fn wrong_code(code: &str) -> String {
    let n: u32 = code.parse().expect("six digits");
    format!("{:06}", (n + 1) % 1_000_000)
}

/// A unique address on example.com.
pub fn unique_email(tag: &str) -> String {
    format!(
        "{tag}-{}@example.com",
        &Uuid::new_v4().simple().to_string()[..8]
    )
}

// ---------------------------------------------------------------------------------------------
// A TCP proxy that can break a dependency

/// What the proxy does with traffic.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProxyMode {
    /// Forwards bytes both ways.
    Forward,
    /// Closes every open connection and closes new ones as soon as they are accepted.
    Refuse,
    /// Keeps connections open but forwards nothing: a hung dependency.
    BlackHole,
}

/// A proxy on 127.0.0.1 in front of `upstream`; stops when dropped.
pub struct TcpProxy {
    /// The port the proxy listens on.
    pub port: u16,
    mode: watch::Sender<ProxyMode>,
    acceptor: JoinHandle<()>,
}

impl TcpProxy {
    /// Starts forwarding to `upstream` (e.g. [`REDIS_ADDR`]).
    pub async fn start(upstream: &str) -> Self {
        let upstream: SocketAddr = upstream.parse().expect("an upstream address");
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("binding the proxy");
        let port = listener.local_addr().expect("proxy address").port();
        let (mode, watcher) = watch::channel(ProxyMode::Forward);
        let acceptor = tokio::spawn(async move {
            loop {
                let Ok((inbound, _)) = listener.accept().await else {
                    continue;
                };
                tokio::spawn(proxy_connection(inbound, upstream, watcher.clone()));
            }
        });
        Self {
            port,
            mode,
            acceptor,
        }
    }

    /// Switches every current and future connection to `mode`.
    pub fn set(&self, mode: ProxyMode) {
        self.mode.send_replace(mode);
    }

    /// `redis://127.0.0.1:<port>`.
    pub fn redis_url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }
}

impl Drop for TcpProxy {
    fn drop(&mut self) {
        self.acceptor.abort();
    }
}

async fn proxy_connection(
    mut inbound: TcpStream,
    upstream: SocketAddr,
    mut mode: watch::Receiver<ProxyMode>,
) {
    let initial = *mode.borrow_and_update();
    match initial {
        ProxyMode::Refuse => return,
        ProxyMode::BlackHole => return hold(inbound, mode).await,
        ProxyMode::Forward => {}
    }
    let Ok(mut outbound) = TcpStream::connect(upstream).await else {
        return;
    };
    let broken = tokio::select! {
        _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound) => None,
        changed = mode.wait_for(|m| *m != ProxyMode::Forward) => changed.ok().map(|m| *m),
    };
    if broken == Some(ProxyMode::BlackHole) {
        hold((inbound, outbound), mode).await;
    }
    // Refuse (or the proxy is gone): dropping both sockets closes them.
}

/// Keeps `sockets` open, reading nothing, until the proxy leaves black-hole mode.
async fn hold<T>(sockets: T, mut mode: watch::Receiver<ProxyMode>) {
    let _ = mode.wait_for(|m| *m != ProxyMode::BlackHole).await;
    drop(sockets);
}
