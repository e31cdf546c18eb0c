//! Concurrent traffic for the fault tests: a few workers loop over a mix of the API's use cases
//! (register, verify, password and code login, `/me`, refresh, logout) for a bounded count and
//! time, and record every answer with the phase of the fault it was sent and answered in.

use std::collections::{HashSet, VecDeque};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};
use std::time::{Duration, Instant};

use aidlc_auth::domain::CodePurpose;
use reqwest::StatusCode;
use serde_json::Value;
use tokio::task::JoinHandle;

use super::app::TestApp;
use super::http::{PASSWORD, refresh_token, token, unique_email};

/// Where the fault is when a request is sent or answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Phase {
    /// Every dependency answers.
    Before = 0,
    /// The dependency is down or hung.
    Outage = 1,
    /// The dependency is back; the app has not said it is ready yet.
    Recovering = 2,
    /// The app is ready again.
    After = 3,
}

/// The current phase, shared by the test (which moves it) and the workers (which read it).
#[derive(Clone, Default)]
pub struct Phases(Arc<AtomicU8>);

impl Phases {
    /// Moves every worker to `phase`.
    pub fn set(&self, phase: Phase) {
        self.0.store(phase as u8, Ordering::SeqCst);
    }

    /// The phase now.
    pub fn now(&self) -> Phase {
        match self.0.load(Ordering::SeqCst) {
            0 => Phase::Before,
            1 => Phase::Outage,
            2 => Phase::Recovering,
            _ => Phase::After,
        }
    }
}

/// The use cases the workers call.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Call {
    /// `POST /api/auth/register` of a fresh address.
    Register,
    /// `POST /api/auth/verify-registration` with the mailed code.
    VerifyRegistration,
    /// `POST /api/auth/login` with the password.
    PasswordLogin,
    /// `POST /api/auth/login` without a password (a login code is mailed).
    RequestLoginCode,
    /// `POST /api/auth/verify-login` with the mailed code.
    VerifyLogin,
    /// `GET /api/auth/me`.
    Me,
    /// `POST /api/auth/refresh`.
    Refresh,
    /// `POST /api/auth/logout`.
    Logout,
}

impl Call {
    /// The calls that need the code store (Redis, when configured).
    pub fn uses_codes(self) -> bool {
        matches!(
            self,
            Call::Register | Call::VerifyRegistration | Call::RequestLoginCode | Call::VerifyLogin
        )
    }

    /// The status of a success: what the call answers when every dependency does.
    pub fn success(self) -> StatusCode {
        match self {
            Call::Register | Call::RequestLoginCode => StatusCode::ACCEPTED,
            Call::Logout => StatusCode::NO_CONTENT,
            _ => StatusCode::OK,
        }
    }
}

/// One answer: what was called, in which phases, what came back (None: no HTTP answer), how
/// long it took.
#[derive(Debug, Clone)]
pub struct Answer {
    /// The call.
    pub call: Call,
    /// The phase when it was sent.
    pub sent: Phase,
    /// The phase when its answer came.
    pub answered: Phase,
    /// The status, or None when the request failed without an answer (or hit the client's
    /// timeout).
    pub status: Option<StatusCode>,
    /// Time from sending to the answer.
    pub elapsed: Duration,
}

/// What the traffic did, for the checks afterwards.
#[derive(Debug, Default)]
pub struct Outcome {
    /// Every answer, in no particular order.
    pub answers: Vec<Answer>,
    /// Addresses whose registration was answered 202 (a code was promised).
    pub registered: Vec<String>,
    /// Addresses whose login-code request was answered 202.
    pub login_codes: Vec<String>,
    /// Addresses whose verification got a 503: the code may have been spent without an answer.
    pub unsure_verifications: HashSet<String>,
    /// Token pairs whose logout was answered 204.
    pub revoked: Vec<Value>,
    /// Token pairs still live at the end.
    pub live: Vec<Value>,
}

impl Outcome {
    /// The answers sent and answered in `phase`.
    pub fn within(&self, phase: Phase) -> impl Iterator<Item = &Answer> {
        self.answers
            .iter()
            .filter(move |a| a.sent == phase && a.answered == phase)
    }
}

/// Sessions a worker keeps before it logs the oldest out (a user holds at most 20).
const KEEP_SESSIONS: usize = 4;
/// Bounds on each worker's loop, whatever the test does.
const MAX_STEPS: usize = 5_000;
const MAX_TIME: Duration = Duration::from_secs(60);

/// Workers running against one app until [`Traffic::stop`].
pub struct Traffic {
    stop: Arc<AtomicBool>,
    workers: Vec<JoinHandle<Outcome>>,
}

impl Traffic {
    /// Starts `workers` workers on `app`, each from one active account of its own (made now,
    /// while every dependency answers).
    pub async fn start(app: Arc<TestApp>, workers: usize, phases: &Phases) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let mut handles = Vec::new();
        for _ in 0..workers {
            let email = unique_email("traffic");
            let session = app.register_active(&email, PASSWORD, "Traffic").await;
            let worker = Worker {
                app: app.clone(),
                phases: phases.clone(),
                active: vec![email.clone()],
                code_candidates: vec![email],
                pending: VecDeque::new(),
                awaiting_login: VecDeque::new(),
                sessions: vec![session],
                outcome: Outcome::default(),
            };
            handles.push(tokio::spawn(worker.run(stop.clone())));
        }
        Self {
            stop,
            workers: handles,
        }
    }

    /// Stops the workers after their current request; everything they recorded.
    pub async fn stop(self) -> Outcome {
        self.stop.store(true, Ordering::SeqCst);
        let mut all = Outcome::default();
        for worker in self.workers {
            let one = worker.await.expect("a traffic worker panicked");
            all.answers.extend(one.answers);
            all.registered.extend(one.registered);
            all.login_codes.extend(one.login_codes);
            all.unsure_verifications.extend(one.unsure_verifications);
            all.revoked.extend(one.revoked);
            all.live.extend(one.live);
        }
        all
    }
}

struct Worker {
    app: Arc<TestApp>,
    phases: Phases,
    /// Active accounts (password [`PASSWORD`]).
    active: Vec<String>,
    /// Active accounts that have not asked for a login code yet: each asks once, as a second
    /// request within the resend cooldown (the test clock stands still) would be a 429, and so
    /// would a retry after a 503 whose cooldown could not be given back.
    code_candidates: Vec<String>,
    /// Registered addresses, with how many registration codes they had been mailed before.
    pending: VecDeque<(String, usize)>,
    /// Active addresses waiting for a login code, with how many they had been mailed before.
    awaiting_login: VecDeque<(String, usize)>,
    sessions: Vec<Value>,
    outcome: Outcome,
}

impl Worker {
    async fn run(mut self, stop: Arc<AtomicBool>) -> Outcome {
        let started = Instant::now();
        const MIX: [Call; 8] = [
            Call::Register,
            Call::Me,
            Call::VerifyRegistration,
            Call::Refresh,
            Call::RequestLoginCode,
            Call::PasswordLogin,
            Call::VerifyLogin,
            Call::Me,
        ];
        for step in 0..MAX_STEPS {
            if stop.load(Ordering::SeqCst) || started.elapsed() > MAX_TIME {
                break;
            }
            self.step(MIX[step % MIX.len()]).await;
            // A breath between requests, so a 2-core machine also runs the app.
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        self.outcome.live = self.sessions;
        self.outcome
    }

    /// Sends `call` and records its answer; returns the status and the JSON body (if any).
    async fn send(
        &mut self,
        call: Call,
        request: impl Future<Output = Option<reqwest::Response>>,
    ) -> (Option<StatusCode>, Value) {
        let sent = self.phases.now();
        let at = Instant::now();
        let response = request.await;
        let elapsed = at.elapsed();
        let answered = self.phases.now();
        let (status, body) = match response {
            Some(r) => {
                let status = r.status();
                (Some(status), r.json().await.unwrap_or(Value::Null))
            }
            None => (None, Value::Null),
        };
        self.outcome.answers.push(Answer {
            call,
            sent,
            answered,
            status,
            elapsed,
        });
        (status, body)
    }

    async fn step(&mut self, call: Call) {
        let app = self.app.clone();
        let client = &app.client;
        let post = |path: &str, body: Value| {
            let request = client.post(app.url(path)).json(&body);
            async move { request.send().await.ok() }
        };
        match call {
            Call::Register => {
                let email = unique_email("fault");
                let body = serde_json::json!({
                    "email": email, "password": PASSWORD, "full_name": "Fault Traffic"
                });
                let (status, _) = self.send(call, post("/api/auth/register", body)).await;
                if status == Some(StatusCode::ACCEPTED) {
                    self.outcome.registered.push(email.clone());
                    self.pending.push_back((email, 0));
                }
            }
            Call::VerifyRegistration => {
                let Some((email, code)) = self.mailed(CodePurpose::Registration) else {
                    return self.me().await;
                };
                let body = serde_json::json!({ "email": email, "verification_code": code });
                let (status, session) = self
                    .send(call, post("/api/auth/verify-registration", body))
                    .await;
                match status {
                    Some(StatusCode::OK) => {
                        self.active.push(email.clone());
                        self.code_candidates.push(email);
                        self.keep(session).await;
                    }
                    Some(StatusCode::SERVICE_UNAVAILABLE) => {
                        self.outcome.unsure_verifications.insert(email);
                    }
                    _ => {}
                }
            }
            Call::PasswordLogin => {
                if self.active.is_empty() {
                    return self.me().await;
                }
                let email = self.active[self.outcome.answers.len() % self.active.len()].clone();
                let body = serde_json::json!({ "email": email, "password": PASSWORD });
                let (status, session) = self.send(call, post("/api/auth/login", body)).await;
                if status == Some(StatusCode::OK) {
                    self.keep(session).await;
                }
            }
            Call::RequestLoginCode => {
                // An account that has not asked yet, else an unknown address: answered alike
                // (and mailed nothing), so the endpoint is always exercised.
                let Some(email) = self.code_candidates.pop() else {
                    let body = serde_json::json!({ "email": unique_email("unknown") });
                    self.send(call, post("/api/auth/login", body)).await;
                    return;
                };
                let before = self
                    .app
                    .mailbox()
                    .codes_so_far(&email, CodePurpose::Login)
                    .len();
                let body = serde_json::json!({ "email": email });
                let (status, _) = self.send(call, post("/api/auth/login", body)).await;
                if status == Some(StatusCode::ACCEPTED) {
                    self.outcome.login_codes.push(email.clone());
                    self.awaiting_login.push_back((email, before));
                }
            }
            Call::VerifyLogin => {
                let Some((email, code)) = self.mailed(CodePurpose::Login) else {
                    return self.me().await;
                };
                let body = serde_json::json!({ "email": email, "verification_code": code });
                let (status, session) = self.send(call, post("/api/auth/verify-login", body)).await;
                if status == Some(StatusCode::OK) {
                    self.keep(session).await;
                } else if status == Some(StatusCode::SERVICE_UNAVAILABLE) {
                    self.outcome.unsure_verifications.insert(email);
                }
            }
            Call::Me => self.me().await,
            Call::Refresh => {
                let index = self.outcome.answers.len() % self.sessions.len();
                let presented = refresh_token(&self.sessions[index]);
                let body = serde_json::json!({ "refresh_token": presented });
                let (status, pair) = self.send(call, post("/api/auth/refresh", body)).await;
                // On a 503 the old token is kept and tried again later: a rotation whose
                // answer was lost is replayed within the grace window (the test clock stands
                // still), never taken for reuse.
                if status == Some(StatusCode::OK) {
                    self.sessions[index] = pair;
                }
            }
            Call::Logout => unreachable!("logouts are sent by `keep`"),
        }
    }

    async fn me(&mut self) {
        let index = self.outcome.answers.len() % self.sessions.len();
        let request = self
            .app
            .client
            .get(self.app.url("/api/auth/me"))
            .bearer_auth(token(&self.sessions[index]));
        self.send(Call::Me, async move { request.send().await.ok() })
            .await;
    }

    /// The first address waiting for a `purpose` code that has arrived, and that code.
    fn mailed(&mut self, purpose: CodePurpose) -> Option<(String, String)> {
        let queue = match purpose {
            CodePurpose::Registration => &mut self.pending,
            _ => &mut self.awaiting_login,
        };
        let mailbox = self.app.mailbox();
        let position = queue
            .iter()
            .position(|(email, before)| mailbox.codes_so_far(email, purpose).len() > *before)?;
        let (email, _) = queue.remove(position)?;
        let code = mailbox.codes_so_far(&email, purpose).pop()?;
        Some((email, code))
    }

    /// Keeps a new session; past [`KEEP_SESSIONS`], logs the oldest out.
    async fn keep(&mut self, session: Value) {
        self.sessions.push(session);
        if self.sessions.len() <= KEEP_SESSIONS {
            return;
        }
        let oldest = self.sessions.remove(0);
        let request = self
            .app
            .client
            .post(self.app.url("/api/auth/logout"))
            .bearer_auth(token(&oldest));
        let (status, _) = self
            .send(Call::Logout, async move { request.send().await.ok() })
            .await;
        // A logout answered 503 may or may not have ended the session: it is used no more.
        if status == Some(StatusCode::NO_CONTENT) {
            self.outcome.revoked.push(oldest);
        }
    }
}
