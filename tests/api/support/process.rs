//! The real binary as a child process, for what only a process shows: how it answers a
//! signal, its exit code, and the metrics recorder `main` installs.

use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use secrecy::ExposeSecret;
use serde_json::Value;
use tokio::io::{AsyncBufReadExt, AsyncRead, BufReader};
use tokio::process::{Child, Command};

use super::app::{TEST_ISSUER, TestEnv};

/// How long the binary may take to listen (migrations on a loaded machine included).
const START_LIMIT: Duration = Duration::from_secs(60);

/// One running `aidlc-auth` process on a test's database (and Redis).
pub struct ServiceProcess {
    child: Child,
    /// `http://127.0.0.1:<port>`.
    pub address: String,
    /// The metrics listener's port, when `AIDLC_METRICS_ADDR` was given.
    pub metrics_port: Option<u16>,
    /// A client that never uses a system proxy.
    pub client: reqwest::Client,
    log: Arc<Mutex<Vec<String>>>,
    /// The tasks reading stdout and stderr into `log`: done once the pipes close.
    readers: Vec<tokio::task::JoinHandle<()>>,
}

/// The scenarios send streams of requests from one client IP: limits far above them, as
/// in-process apps have (`app.rs`); a test of the limits passes its own in `extra`.
const LENIENT_LIMITS: [&str; 6] = [
    "AIDLC_RATE_LIMIT_IP",
    "AIDLC_RATE_LIMIT_ADDRESS",
    "AIDLC_RATE_LIMIT_REFRESH",
    "AIDLC_CODE_GUESS_LIMIT",
    "AIDLC_CODE_ISSUE_LIMIT",
    "AIDLC_PASSWORD_FAILURE_LIMIT",
];

/// The `aidlc-auth` binary cargo built for this run, checked to be of the test binary's own
/// profile (both sit in one profile directory, the tests under its `deps/`): `cargo test
/// --release` spawns the release build, so a fault test of "the release build" is one.
pub fn service_binary() -> &'static Path {
    static BINARY: OnceLock<PathBuf> = OnceLock::new();
    BINARY.get_or_init(|| {
        let binary = PathBuf::from(env!("CARGO_BIN_EXE_aidlc-auth"));
        let tests = std::env::current_exe().expect("the test binary's path");
        let profile_dir = |path: &Path, up: usize| {
            let dir = path.ancestors().nth(up).expect("a profile directory");
            std::fs::canonicalize(dir).unwrap_or_else(|_| dir.to_owned())
        };
        assert_eq!(
            profile_dir(&binary, 1),
            profile_dir(&tests, 2),
            "{} is not of the profile of the tests ({})",
            binary.display(),
            tests.display()
        );
        // Named once per run, so a run's output says which build its processes were.
        eprintln!(
            "aidlc-auth under test: {} (tests built {} debug assertions)",
            binary.display(),
            if cfg!(debug_assertions) {
                "with"
            } else {
                "without"
            }
        );
        binary
    })
}

impl ServiceProcess {
    /// Starts the binary on `env`'s database, Redis and key prefix (cheap Argon2, port 0, JSON
    /// logs) with `extra` variables on top, and waits until it listens.
    pub async fn start(env: &TestEnv, extra: &[(&str, &str)]) -> Self {
        let settings = &env.settings;
        let mut command = Command::new(service_binary());
        command
            .env_clear()
            .env("DATABASE_URL", &env.db.direct_url)
            .env("AIDLC_REDIS_KEY_PREFIX", &settings.redis_key_prefix)
            .env("AIDLC_HOST", "127.0.0.1")
            .env("PORT", "0")
            .env("AIDLC_JWT_ISSUER", TEST_ISSUER)
            .env(
                "AIDLC_ARGON2_MEMORY_KIB",
                settings.argon2.memory_kib.to_string(),
            )
            .env(
                "AIDLC_ARGON2_ITERATIONS",
                settings.argon2.iterations.to_string(),
            )
            .env("AIDLC_ARGON2_PARALLELISM", "1")
            // A loaded test machine must not turn a slow statement into a failed test.
            .env("AIDLC_DEPENDENCY_TIMEOUT_MS", "5000")
            .env("AIDLC_LOG_FORMAT", "json")
            .envs(LENIENT_LIMITS.map(|name| (name, "100000/1m")))
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        if let Some(kek) = &settings.key_encryption_key {
            command.env("AIDLC_KEY_ENCRYPTION_KEY", kek.expose_secret());
        }
        if let Some(redis) = &settings.redis_url {
            command.env("REDIS_URL", redis.expose_secret());
        }
        for (name, value) in extra {
            command.env(name, value);
        }
        let mut child = command.spawn().expect("starting aidlc-auth");
        let log = Arc::new(Mutex::new(Vec::new()));
        let mut readers = Vec::new();
        if let Some(stdout) = child.stdout.take() {
            readers.push(collect_lines(stdout, log.clone()));
        }
        if let Some(stderr) = child.stderr.take() {
            readers.push(collect_lines(stderr, log.clone()));
        }
        let started = Instant::now();
        let ready = loop {
            if let Some(line) = log
                .lock()
                .unwrap()
                .iter()
                .filter_map(|l| serde_json::from_str::<Value>(l).ok())
                .find(|l| l["message"] == "Application startup complete")
            {
                break line;
            }
            if let Ok(Some(status)) = child.try_wait() {
                panic!(
                    "aidlc-auth exited at start ({status}):\n{}",
                    log.lock().unwrap().join("\n")
                );
            }
            assert!(
                started.elapsed() < START_LIMIT,
                "aidlc-auth did not listen within {START_LIMIT:?}:\n{}",
                log.lock().unwrap().join("\n")
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        };
        let port = ready["port"]
            .as_u64()
            .expect("the start-up line names the port");
        let metrics_port = ready["metrics_port"]
            .as_u64()
            .map(|p| u16::try_from(p).expect("a port"));
        let client = reqwest::Client::builder()
            .no_proxy()
            .timeout(Duration::from_secs(15))
            .build()
            .expect("building the HTTP client");
        Self {
            child,
            address: format!("http://127.0.0.1:{port}"),
            metrics_port,
            client,
            log,
            readers,
        }
    }

    /// Absolute URL of `path`.
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.address)
    }

    /// The `host:port` the API listens on.
    pub fn socket_address(&self) -> &str {
        self.address.trim_start_matches("http://")
    }

    /// The resident memory of the process now, in KiB (`VmRSS` in `/proc/<pid>/status`).
    pub fn rss_kib(&self) -> u64 {
        let pid = self.child.id().expect("the process is running");
        let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
            .unwrap_or_else(|e| panic!("reading /proc/{pid}/status: {e}"));
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap_or_else(|| panic!("no VmRSS in /proc/{pid}/status"))
    }

    /// How many file descriptors (sockets included) the process holds now.
    pub fn open_files(&self) -> usize {
        let pid = self.child.id().expect("the process is running");
        std::fs::read_dir(format!("/proc/{pid}/fd"))
            .unwrap_or_else(|e| panic!("listing /proc/{pid}/fd: {e}"))
            .count()
    }

    /// Sends SIGTERM, as ECS does to stop a task.
    pub async fn terminate(&self) {
        let pid = self.child.id().expect("the process is running");
        let status = Command::new("kill")
            .args(["-s", "TERM", &pid.to_string()])
            .status()
            .await
            .expect("running kill");
        assert!(status.success(), "kill -s TERM {pid} failed");
    }

    /// Waits for the process to exit, at most `limit`; returns how it exited.
    /// Its last lines are in [`Self::log`] by then: the readers are waited for (the exit and
    /// the end of the pipes' data are separate events).
    pub async fn wait(&mut self, limit: Duration) -> ExitStatus {
        let status = match tokio::time::timeout(limit, self.child.wait()).await {
            Ok(status) => status.expect("waiting for aidlc-auth"),
            Err(_) => panic!(
                "aidlc-auth did not exit within {limit:?}:\n{}",
                self.log().join("\n")
            ),
        };
        for reader in self.readers.drain(..) {
            tokio::time::timeout(Duration::from_secs(5), reader)
                .await
                .expect("the process's output ends after it exits")
                .expect("reading the process's output");
        }
        status
    }

    /// Every line the process has written so far (stdout and stderr).
    pub fn log(&self) -> Vec<String> {
        self.log.lock().unwrap().clone()
    }

    /// The JSON log lines whose message is `message`.
    pub fn logged(&self, message: &str) -> Vec<Value> {
        self.log()
            .iter()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .filter(|l| l["message"] == message)
            .collect()
    }
}

/// Appends each line of `stream` to `log` until it closes (so the pipe never fills).
fn collect_lines(
    stream: impl AsyncRead + Unpin + Send + 'static,
    log: Arc<Mutex<Vec<String>>>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut lines = BufReader::new(stream).lines();
        while let Ok(Some(line)) = lines.next_line().await {
            log.lock().unwrap().push(line);
        }
    })
}
