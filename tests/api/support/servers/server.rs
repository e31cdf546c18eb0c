//! A server the suite starts: a foreground process on a free loopback port, a readiness probe,
//! a stop signal the watchdog sends at the end of the run.

use std::ffi::OsString;
use std::fs::{self, File};
use std::io::{self, Write};
use std::net::{Ipv4Addr, TcpListener};
use std::os::unix::fs::MetadataExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::watchdog::{run_dir, watch};

/// How long a server may take to answer its readiness probe.
const READY_TIMEOUT: Duration = Duration::from_secs(30);
/// How many free ports a server is tried on (another process may take the one we picked).
const PORT_ATTEMPTS: usize = 3;

/// How to run one server: a foreground process for a given port, a readiness probe and the
/// signal that stops it.
pub struct ServerSpec {
    /// Short name: errors name it and its output goes to `<name>.log` in the run directory.
    pub name: &'static str,
    /// The program.
    pub program: PathBuf,
    /// Its arguments (the port is already in them).
    pub args: Vec<OsString>,
    /// Run as this account instead of the test's (PostgreSQL refuses root).
    pub user: Option<Account>,
    /// The `kill -s` name of the signal that stops it cleanly; KILL follows after 10 s.
    pub stop_signal: &'static str,
    /// True once the server takes requests.
    pub ready: Box<dyn Fn() -> bool>,
}

/// A running server; the watchdog stops it at the end of the run.
pub struct Server {
    /// The loopback port it listens on.
    pub port: u16,
    _process: Child,
}

/// Starts the server `spec_for(port)` describes on a free loopback port (a few ports are tried
/// if it exits, e.g. because another process took the port) and waits until it is ready.
pub fn start(mut spec_for: impl FnMut(u16) -> ServerSpec) -> Result<Server, String> {
    let mut last_error = String::new();
    for _ in 0..PORT_ATTEMPTS {
        let port = free_port()?;
        let spec = spec_for(port);
        let log_path = run_dir().join(format!("{}.log", spec.name));
        let log = File::create(&log_path)
            .and_then(|log| Ok((log.try_clone()?, log)))
            .map_err(|e| format!("creating {}: {e}", log_path.display()))?;
        let mut command = Command::new(&spec.program);
        command
            .args(&spec.args)
            .current_dir(run_dir())
            .stdin(Stdio::null())
            .stdout(log.0)
            .stderr(log.1)
            // Its own group: a Ctrl-C to the test run is the watchdog's to act on.
            .process_group(0);
        if let Some(account) = spec.user {
            account.apply(&mut command);
        }
        let mut process = command
            .spawn()
            .map_err(|e| format!("starting {}: {e}", spec.program.display()))?;
        watch(process.id(), spec.stop_signal)?;
        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            if let Ok(Some(status)) = process.try_wait() {
                last_error = format!(
                    "{} exited ({status}) on port {port}: {}",
                    spec.name,
                    log_tail(&log_path)
                );
                break;
            }
            if (spec.ready)() {
                return Ok(Server {
                    port,
                    _process: process,
                });
            }
            if Instant::now() > deadline {
                let _ = process.kill();
                return Err(format!(
                    "{} did not become ready on port {port} within {READY_TIMEOUT:?}: {}",
                    spec.name,
                    log_tail(&log_path)
                ));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
    Err(last_error)
}

/// An account to run a server as.
#[derive(Debug, Clone, Copy)]
pub struct Account {
    /// User id.
    pub uid: u32,
    /// Primary group id.
    pub gid: u32,
}

impl Account {
    /// The account `name` from `/etc/passwd`.
    pub fn named(name: &str) -> Option<Self> {
        let passwd = fs::read_to_string("/etc/passwd").ok()?;
        passwd.lines().find_map(|line| {
            let fields: Vec<&str> = line.split(':').collect();
            if fields.len() < 4 || fields[0] != name {
                return None;
            }
            Some(Self {
                uid: fields[2].parse().ok()?,
                gid: fields[3].parse().ok()?,
            })
        })
    }

    pub(super) fn apply(self, command: &mut Command) {
        // std drops the supplementary groups too when root sets a uid.
        command.uid(self.uid).gid(self.gid);
    }
}

/// Ends the test run with one line on the real stderr: every test after this one would fail
/// the same way, so one clear line beats a hundred failures.
pub fn fatal(message: &str) -> ! {
    // Straight to the file descriptor: libtest captures `eprintln!` of a running test.
    let _ = writeln!(
        io::stderr(),
        "\nerror: the test harness cannot run: {message}"
    );
    std::process::exit(1)
}

fn free_port() -> Result<u16, String> {
    TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .and_then(|listener| listener.local_addr())
        .map(|addr| addr.port())
        .map_err(|e| format!("finding a free loopback port: {e}"))
}

fn log_tail(path: &Path) -> String {
    let log = fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = log.lines().collect();
    lines[lines.len().saturating_sub(5)..].join(" | ")
}

/// The first `name` on `PATH` (and the sbin directories, which a non-root `PATH` may lack).
pub(super) fn find_program(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/local/sbin", "/usr/sbin", "/sbin"].map(PathBuf::from))
        .map(|dir| dir.join(name))
        .find(|candidate| candidate.is_file())
}

pub(super) fn is_root() -> bool {
    fs::metadata("/proc/self").is_ok_and(|m| m.uid() == 0)
}
