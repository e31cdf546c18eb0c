//! The service under test: the release binary on a free loopback port, its stores, its log in
//! a file, and how long it took to be ready.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use base64::Engine as _;
use rand::RngCore as _;
use tokio::process::{Child, Command};

use crate::http::{Conn, Req};

/// Far above anything a scenario sends, with a 1 s window so a limit key holds only the last
/// second's hits (the service reads a key's hits in its window at every check).
const UNREACHED_LIMIT: &str = "100000000/1s";

/// Every limit setting of the service (README, Limits).
const LIMITS: [&str; 6] = [
    "AIDLC_RATE_LIMIT_IP",
    "AIDLC_RATE_LIMIT_ADDRESS",
    "AIDLC_RATE_LIMIT_REFRESH",
    "AIDLC_CODE_GUESS_LIMIT",
    "AIDLC_CODE_ISSUE_LIMIT",
    "AIDLC_PASSWORD_FAILURE_LIMIT",
];

/// How long the service may take to be ready before the run gives up.
const READY_LIMIT: Duration = Duration::from_secs(60);

/// What the service runs on.
pub struct Stores {
    pub database_url: String,
    /// Redis URL and key prefix.
    pub redis: Option<(String, String)>,
}

/// A running service.
pub struct Service {
    child: Child,
    pub pid: u32,
    pub addr: SocketAddr,
    /// From spawning the process to the first 200 of `/health/ready`.
    pub startup: Duration,
    pub log_path: PathBuf,
}

impl Service {
    /// Starts `binary` on `stores`, logging to a file in `dir`, and waits until it is ready.
    pub async fn start(
        binary: &Path,
        stores: &Stores,
        dir: &Path,
        log_filter: &str,
    ) -> anyhow::Result<Self> {
        if !binary.exists() {
            bail!(
                "{} not found: run `cargo build --release` first (or pass --build)",
                binary.display()
            );
        }
        let log_path = dir.join("service.log");
        let log = std::fs::File::create(&log_path).context("creating the service log")?;
        let mut kek = [0u8; 32];
        rand::rng().fill_bytes(&mut kek);
        let mut command = Command::new(binary);
        command
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("AIDLC_HOST", "127.0.0.1")
            .env("PORT", "0")
            .env("DATABASE_URL", &stores.database_url)
            .env("AIDLC_EMAIL_TRANSPORT", "log")
            .env("AIDLC_LOG_FORMAT", "json")
            .env("RUST_LOG", log_filter)
            .env(
                "AIDLC_KEY_ENCRYPTION_KEY",
                base64::engine::general_purpose::STANDARD.encode(kek),
            )
            // Login-code rounds ask each account for a new code about every second.
            .env("AIDLC_RESEND_COOLDOWN_SECONDS", "1")
            .env("AIDLC_SHUTDOWN_DRAIN_SECONDS", "0")
            .envs(LIMITS.map(|name| (name, UNREACHED_LIMIT)))
            .current_dir(dir)
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .kill_on_drop(true);
        if let Some((url, prefix)) = &stores.redis {
            command
                .env("REDIS_URL", url)
                .env("AIDLC_REDIS_KEY_PREFIX", prefix);
        }
        let started = Instant::now();
        let mut child = command
            .spawn()
            .with_context(|| format!("starting {}", binary.display()))?;
        let pid = child.id().context("the service's pid")?;
        let port = loop {
            if let Some(port) = startup_port(&log_path) {
                break port;
            }
            if let Ok(Some(status)) = child.try_wait() {
                bail!(
                    "the service exited at start ({status}); its log: {}",
                    tail(&log_path)
                );
            }
            if started.elapsed() > READY_LIMIT {
                bail!(
                    "the service did not listen within {READY_LIMIT:?}; its log: {}",
                    tail(&log_path)
                );
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        };
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        let mut conn = Conn::new(addr, addr.ip())?;
        let ready = Req {
            method: hyper::Method::GET,
            path: "/health/ready",
            bearer: None,
            body: None,
        };
        loop {
            if matches!(conn.send(&ready).await, Ok((200, _))) {
                break;
            }
            if started.elapsed() > READY_LIMIT {
                bail!("/health/ready did not answer 200 within {READY_LIMIT:?}");
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        let startup = started.elapsed();
        Ok(Self {
            child,
            pid,
            addr,
            startup,
            log_path,
        })
    }

    /// Stops the service (SIGTERM, then SIGKILL after 10 s).
    pub async fn stop(mut self) {
        // Our own child, by its PID, not yet reaped (so the PID is still its).
        let _ = Command::new("kill")
            .args(["-TERM", &self.pid.to_string()])
            .status()
            .await;
        if tokio::time::timeout(Duration::from_secs(10), self.child.wait())
            .await
            .is_err()
        {
            let _ = self.child.kill().await;
        }
    }
}

/// The port of the service's "Application startup complete" line, once it is in the log.
fn startup_port(log: &Path) -> Option<u16> {
    let text = std::fs::read_to_string(log).ok()?;
    text.lines()
        .filter(|l| l.contains("Application startup complete"))
        .find_map(|l| {
            serde_json::from_str::<serde_json::Value>(l)
                .ok()?
                .get("port")?
                .as_u64()
        })
        .and_then(|p| u16::try_from(p).ok())
}

/// The last lines of the log, for an error message (only start-up failures show them, and no
/// mail, so no code, is sent before start-up completes).
fn tail(log: &Path) -> String {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(10)..].join("\n")
}
