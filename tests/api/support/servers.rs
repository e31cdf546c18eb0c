//! The servers the suite starts itself: once per test run, on free loopback ports, shared by
//! every test of the binary, and stopped by a watchdog once the test process is gone.
//!
//! A test binary runs no destructor for statics at exit, and a killed one runs nothing at all,
//! so nothing here stops a server from inside the test process. Instead the run's first use
//! creates a run directory (`$TMPDIR/aidlc-test-servers-<uid>/<pid>-<start time>/`) and a
//! watchdog (`sh`, in its own process group so a Ctrl-C to the test does not reach it) whose
//! stdin is a pipe from the test process. Each started server is announced on that pipe. When
//! the test process ends, however it ends, the kernel closes the pipe; the watchdog then stops
//! every announced server that is still the process that was started (pid *and* start time, so
//! a reused pid is never signalled), waits for it (KILL after 10 s) and removes the directory.
//! A run whose watchdog died too is cleaned up by the next run's start ([`run_dir`]).
//!
//! A server is a [`ServerSpec`]: a foreground command for a given port, a readiness probe and
//! a stop signal; [`start`] runs it. Adding one (an SMTP sink `python -m aiosmtpd`, a local
//! AWS `moto_server`, both from the venv's tools) is a spec plus a `OnceLock` like
//! [`postgres`] and [`redis`]. Variants are options of the same spec: a TLS-only PostgreSQL is
//! `-c ssl=on` with test-generated certificates and a `hostssl`-only `pg_hba.conf` written
//! after `initdb`; a TLS Redis is `--tls-port` (with `--port 0`) and `--requirepass`, probed
//! with `redis-cli --tls`.
//!
//! `AIDLC_TEST_DATABASE_URL` / `AIDLC_TEST_REDIS_URL`, when set, name an existing server to
//! use instead (e.g. `postgres://postgres@127.0.0.1:5432/postgres`, `redis://127.0.0.1:6379`).
//! A missing program ends the run with one line naming the package to install.

use std::ffi::OsString;
use std::fmt;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::ops::Deref;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

/// Set to an admin URL to use that PostgreSQL instead of starting one.
pub const DATABASE_URL_VAR: &str = "AIDLC_TEST_DATABASE_URL";
/// Set to a URL to use that Redis instead of starting one.
pub const REDIS_URL_VAR: &str = "AIDLC_TEST_REDIS_URL";

/// How long a server may take to answer its readiness probe.
const READY_TIMEOUT: Duration = Duration::from_secs(30);
/// How many free ports a server is tried on (another process may take the one we picked).
const PORT_ATTEMPTS: usize = 3;

// ---------------------------------------------------------------------------------------------
// The two servers the tests use today

/// The PostgreSQL the tests create their databases in.
pub struct Postgres {
    /// A superuser URL on its `postgres` database.
    pub admin_url: String,
    /// Where it listens, `host:port` (for proxies).
    pub addr: String,
    base: url::Url,
    _server: Option<Server>,
}

impl Postgres {
    /// The URL of database `name`, reached directly.
    pub fn database_url(&self, name: &str) -> String {
        let mut url = self.base.clone();
        url.set_path(&format!("/{name}"));
        url.to_string()
    }

    /// The URL of database `name` reached through a proxy on `127.0.0.1:<port>`.
    pub fn database_url_via(&self, name: &str, port: u16) -> String {
        let mut url = self.base.clone();
        url.set_path(&format!("/{name}"));
        let _ = url.set_host(Some("127.0.0.1"));
        let _ = url.set_port(Some(port));
        url.to_string()
    }

    fn existing(admin_url: &str) -> Result<Self, String> {
        Self::at(admin_url, None).map_err(|e| format!("{DATABASE_URL_VAR}: {e}"))
    }

    fn at(admin_url: &str, server: Option<Server>) -> Result<Self, String> {
        let base = url::Url::parse(admin_url).map_err(|e| format!("{admin_url:?}: {e}"))?;
        let host = base.host_str().unwrap_or("127.0.0.1");
        let addr = format!("{host}:{}", base.port().unwrap_or(5432));
        Ok(Self {
            admin_url: admin_url.to_owned(),
            addr,
            base,
            _server: server,
        })
    }

    /// A private cluster in the run directory: `initdb`, then `postgres` on a free port with
    /// durability off (the data dies with the run) and room for many parallel tests' pools.
    fn start() -> Result<Self, String> {
        let bin = postgres_bindir()?;
        let dir = run_dir().join("postgres");
        fs::create_dir(&dir).map_err(|e| format!("creating {}: {e}", dir.display()))?;
        // PostgreSQL refuses to run as root: then its files and process belong to `postgres`.
        let user = if is_root() {
            let account = Account::named("postgres").ok_or(
                "the tests run as root, PostgreSQL refuses root, and there is no `postgres` \
                 account: apt-get install postgresql",
            )?;
            std::os::unix::fs::chown(&dir, Some(account.uid), Some(account.gid))
                .map_err(|e| format!("chown {}: {e}", dir.display()))?;
            Some(account)
        } else {
            None
        };
        let data = dir.join("data");
        let mut initdb = Command::new(bin.join("initdb"));
        initdb
            .arg("-D")
            .arg(&data)
            .args(["-U", "postgres", "-A", "trust", "-E", "UTF8", "--no-locale"])
            .args(["--no-sync", "--no-instructions"])
            .stdin(Stdio::null())
            .current_dir(&dir);
        if let Some(account) = user {
            account.apply(&mut initdb);
        }
        let out = initdb
            .output()
            .map_err(|e| format!("running {}: {e}", bin.join("initdb").display()))?;
        if !out.status.success() {
            return Err(format!(
                "initdb failed: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            ));
        }
        let pg_isready = bin.join("pg_isready");
        let server = start(|port| ServerSpec {
            name: "postgres",
            program: bin.join("postgres"),
            args: [
                "-D".into(),
                data.clone().into_os_string(),
                "-p".into(),
                port.to_string().into(),
            ]
            .into_iter()
            .chain(
                [
                    "listen_addresses=127.0.0.1",
                    // TCP only: nothing to collide with the machine's own cluster's socket.
                    "unix_socket_directories=",
                    // The cluster is thrown away with the run: durability buys nothing.
                    "fsync=off",
                    "full_page_writes=off",
                    "synchronous_commit=off",
                    "autovacuum=off",
                    // Each test has its own database and pools of up to 10 connections.
                    "max_connections=300",
                ]
                .into_iter()
                .flat_map(|setting| ["-c".into(), setting.into()]),
            )
            .collect(),
            user,
            stop_signal: "INT",
            ready: Box::new({
                let pg_isready = pg_isready.clone();
                move || {
                    Command::new(&pg_isready)
                        .args(["-q", "-t", "1", "-h", "127.0.0.1", "-U", "postgres", "-p"])
                        .arg(port.to_string())
                        .stdin(Stdio::null())
                        .stdout(Stdio::null())
                        .stderr(Stdio::null())
                        .status()
                        .is_ok_and(|status| status.success())
                }
            }),
        })?;
        let url = format!("postgres://postgres@127.0.0.1:{}/postgres", server.port);
        Self::at(&url, Some(server))
    }
}

/// The PostgreSQL the suite uses: started on first use (or the one `AIDLC_TEST_DATABASE_URL`
/// names); ends the run with one line if it cannot be had.
pub fn postgres() -> &'static Postgres {
    static POSTGRES: OnceLock<Result<Postgres, String>> = OnceLock::new();
    POSTGRES
        .get_or_init(|| match std::env::var(DATABASE_URL_VAR) {
            Ok(url) if !url.is_empty() => Postgres::existing(&url),
            _ => Postgres::start(),
        })
        .as_ref()
        .unwrap_or_else(|e| fatal(e))
}

/// The Redis the tests share, one key prefix per test.
pub struct Redis {
    /// Its URL.
    pub url: String,
    /// Where it listens, `host:port` (for proxies).
    pub addr: String,
    base: url::Url,
    _server: Option<Server>,
}

impl Redis {
    /// Its URL with the address replaced by a proxy's on `127.0.0.1:<port>`.
    pub fn url_via(&self, port: u16) -> String {
        let mut url = self.base.clone();
        let _ = url.set_host(Some("127.0.0.1"));
        let _ = url.set_port(Some(port));
        url.to_string()
    }

    fn at(url: &str, server: Option<Server>) -> Result<Self, String> {
        let base = url::Url::parse(url).map_err(|e| format!("{url:?}: {e}"))?;
        let host = base.host_str().unwrap_or("127.0.0.1");
        let addr = format!("{host}:{}", base.port().unwrap_or(6379));
        Ok(Self {
            url: url.to_owned(),
            addr,
            base,
            _server: server,
        })
    }

    /// `redis-server` on a free port, nothing persisted.
    fn start() -> Result<Self, String> {
        let program = find_program("redis-server").ok_or(
            "redis-server is not installed: apt-get install redis-server \
             (or set AIDLC_TEST_REDIS_URL to use a running Redis)",
        )?;
        let dir = run_dir().join("redis");
        fs::create_dir(&dir).map_err(|e| format!("creating {}: {e}", dir.display()))?;
        let server = start(|port| ServerSpec {
            name: "redis",
            program: program.clone(),
            args: [
                "--port".into(),
                port.to_string().into(),
                "--bind".into(),
                "127.0.0.1".into(),
                "--save".into(),
                "".into(),
                "--appendonly".into(),
                "no".into(),
                "--daemonize".into(),
                "no".into(),
                "--dir".into(),
                dir.clone().into_os_string(),
            ]
            .into(),
            user: None,
            stop_signal: "TERM",
            ready: Box::new(move || redis_answers(port)),
        })?;
        Self::at(&format!("redis://127.0.0.1:{}", server.port), Some(server))
    }
}

/// The Redis the suite uses: started on first use (or the one `AIDLC_TEST_REDIS_URL` names);
/// ends the run with one line if it cannot be had.
pub fn redis() -> &'static Redis {
    static REDIS: OnceLock<Result<Redis, String>> = OnceLock::new();
    REDIS
        .get_or_init(|| match std::env::var(REDIS_URL_VAR) {
            Ok(url) if !url.is_empty() => {
                Redis::at(&url, None).map_err(|e| format!("{REDIS_URL_VAR}: {e}"))
            }
            _ => Redis::start(),
        })
        .as_ref()
        .unwrap_or_else(|e| fatal(e))
}

/// `PING` answered (`-NOAUTH` counts: a password-protected Redis is up too).
fn redis_answers(port: u16) -> bool {
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    let Ok(mut stream) = TcpStream::connect_timeout(&addr, Duration::from_millis(200)) else {
        return false;
    };
    let _ = stream.set_read_timeout(Some(Duration::from_millis(500)));
    let mut reply = [0u8; 16];
    stream.write_all(b"PING\r\n").is_ok()
        && stream
            .read(&mut reply)
            .is_ok_and(|n| reply[..n].starts_with(b"+PONG") || reply[..n].starts_with(b"-NOAUTH"))
}

/// A started server's address or URL, resolved (starting the server) on first use. It reads as
/// a `&str` (`&*POSTGRES_ADDR`, `POSTGRES_ADDR.to_string()`) and goes where the scenario files
/// always passed these names: `TcpProxy::start(REDIS_ADDR)`, `redis::Client::open(REDIS_URL)`.
#[derive(Clone, Copy)]
pub struct Endpoint(fn() -> &'static str);

/// Where the suite's PostgreSQL listens (for proxies).
pub const POSTGRES_ADDR: Endpoint = Endpoint(|| postgres().addr.as_str());
/// The suite's Redis URL.
pub const REDIS_URL: Endpoint = Endpoint(|| redis().url.as_str());
/// Where the suite's Redis listens (for proxies).
pub const REDIS_ADDR: Endpoint = Endpoint(|| redis().addr.as_str());

impl Deref for Endpoint {
    type Target = str;

    fn deref(&self) -> &str {
        (self.0)()
    }
}

impl AsRef<str> for Endpoint {
    fn as_ref(&self) -> &str {
        self
    }
}

impl fmt::Display for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self)
    }
}

impl fmt::Debug for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&**self, f)
    }
}

impl redis::IntoConnectionInfo for Endpoint {
    fn into_connection_info(self) -> redis::RedisResult<redis::ConnectionInfo> {
        (self.0)().into_connection_info()
    }
}

// ---------------------------------------------------------------------------------------------
// A server the suite starts

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

    fn apply(self, command: &mut Command) {
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

/// `/usr/lib/postgresql/<newest>/bin` (Debian), else wherever `initdb` is on `PATH`.
fn postgres_bindir() -> Result<PathBuf, String> {
    let newest = fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|entry| {
            let version: u32 = entry.file_name().to_str()?.parse().ok()?;
            let bin = entry.path().join("bin");
            bin.join("initdb").is_file().then_some((version, bin))
        })
        .max_by_key(|(version, _)| *version)
        .map(|(_, bin)| bin);
    newest
        .or_else(|| find_program("initdb").and_then(|p| p.parent().map(Path::to_path_buf)))
        .ok_or_else(|| {
            "PostgreSQL's server programs (initdb, postgres) are not installed: \
             apt-get install postgresql (or set AIDLC_TEST_DATABASE_URL to use a running server)"
                .to_owned()
        })
}

/// The first `name` on `PATH` (and the sbin directories, which a non-root `PATH` may lack).
fn find_program(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/local/sbin", "/usr/sbin", "/sbin"].map(PathBuf::from))
        .map(|dir| dir.join(name))
        .find(|candidate| candidate.is_file())
}

fn is_root() -> bool {
    fs::metadata("/proc/self").is_ok_and(|m| m.uid() == 0)
}

// ---------------------------------------------------------------------------------------------
// The run directory and its watchdog

/// Reads server announcements (`pid start-time signal` lines) until EOF, which comes when the
/// test process is gone; then stops each server that is still the process it was (same pid,
/// same start time, not a zombie), waits up to 10 s, KILLs what is left and removes the run
/// directory `$1`. The same script cleans a stale run: its stdin is that run's `servers` file.
const WATCHDOG: &str = r#"
PATH=/usr/bin:/bin:${PATH:-}
dir=$1
servers=
while read -r pid start sig; do servers="$servers $pid:$start:$sig"; done
ours() {
    stat=$(cat "/proc/$1/stat" 2>/dev/null) || return 1
    want=$2
    set -- ${stat##*) }
    [ "$1" != Z ] && [ "${20}" = "$want" ]
}
signal_all() {
    for s in $servers; do
        pid=${s%%:*}; rest=${s#*:}; start=${rest%%:*}; sig=${1:-${rest#*:}}
        ours "$pid" "$start" && kill -s "$sig" "$pid" 2>/dev/null
    done
}
alive() {
    for s in $servers; do
        pid=${s%%:*}; rest=${s#*:}; start=${rest%%:*}
        ours "$pid" "$start" && return 0
    done
    return 1
}
signal_all
i=0
while alive && [ $i -lt 100 ]; do sleep 0.1; i=$((i + 1)); done
signal_all KILL
rm -rf "$dir"
"#;

struct Run {
    dir: PathBuf,
    /// The pipe whose closing (at the test process's end) tells the watchdog to act.
    watchdog: Mutex<ChildStdin>,
}

fn run() -> &'static Run {
    static RUN: OnceLock<Result<Run, String>> = OnceLock::new();
    RUN.get_or_init(create_run)
        .as_ref()
        .unwrap_or_else(|e| fatal(e))
}

/// This run's private directory (servers' data and logs, SQLite files); removed by the
/// watchdog after the run. The first call also cleans up runs whose process and watchdog are
/// both gone (a SIGKILL to the whole group, a crash of the machine's `sh`).
pub fn run_dir() -> &'static Path {
    &run().dir
}

fn create_run() -> Result<Run, String> {
    let uid = fs::metadata("/proc/self")
        .map(|m| m.uid())
        .map_err(|e| format!("reading /proc/self: {e}"))?;
    let base = std::env::temp_dir().join(format!("aidlc-test-servers-{uid}"));
    fs::create_dir_all(&base).map_err(|e| format!("creating {}: {e}", base.display()))?;
    let meta = fs::symlink_metadata(&base).map_err(|e| format!("{}: {e}", base.display()))?;
    if meta.uid() != uid || !meta.is_dir() {
        return Err(format!("{} is not a directory of ours", base.display()));
    }
    // Traversable by the `postgres` account the cluster runs as when we are root.
    fs::set_permissions(&base, fs::Permissions::from_mode(0o755))
        .map_err(|e| format!("chmod {}: {e}", base.display()))?;
    clean_stale_runs(&base);

    let pid = std::process::id();
    let started = start_time(pid).ok_or("reading this process's start time from /proc")?;
    let dir = base.join(format!("{pid}-{started}"));
    fs::create_dir(&dir).map_err(|e| format!("creating {}: {e}", dir.display()))?;
    fs::set_permissions(&dir, fs::Permissions::from_mode(0o755))
        .map_err(|e| format!("chmod {}: {e}", dir.display()))?;
    let mut watchdog = Command::new("/bin/sh")
        .args(["-c", WATCHDOG, "aidlc-test-watchdog"])
        .arg(&dir)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .process_group(0)
        .spawn()
        .map_err(|e| format!("starting the watchdog (sh): {e}"))?;
    let pipe = watchdog.stdin.take().ok_or("the watchdog has no stdin")?;
    Ok(Run {
        dir,
        watchdog: Mutex::new(pipe),
    })
}

/// Announces server `pid` to the watchdog, and records it for a later run's clean-up.
fn watch(pid: u32, stop_signal: &str) -> Result<(), String> {
    let run = run();
    let started = start_time(pid).ok_or_else(|| format!("process {pid} vanished at once"))?;
    let line = format!("{pid} {started} {stop_signal}\n");
    OpenOptions::new()
        .create(true)
        .append(true)
        .open(run.dir.join("servers"))
        .and_then(|mut file| file.write_all(line.as_bytes()))
        .map_err(|e| format!("recording server {pid}: {e}"))?;
    run.watchdog
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .write_all(line.as_bytes())
        .map_err(|e| format!("telling the watchdog about server {pid}: {e}"))
}

/// Every run directory whose test process is gone gets the watchdog's treatment now.
fn clean_stale_runs(base: &Path) {
    for entry in fs::read_dir(base).into_iter().flatten().flatten() {
        let name = entry.file_name();
        let Some((pid, started)) = name.to_str().and_then(|n| n.split_once('-')) else {
            continue;
        };
        let alive = pid
            .parse()
            .ok()
            .and_then(start_time)
            .is_some_and(|now| now == started);
        if alive {
            continue;
        }
        let servers = File::open(entry.path().join("servers"))
            .map(Stdio::from)
            .unwrap_or_else(|_| Stdio::null());
        let cleaner = Command::new("/bin/sh")
            .args(["-c", WATCHDOG, "aidlc-test-watchdog"])
            .arg(entry.path())
            .stdin(servers)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .process_group(0)
            .spawn();
        if let Ok(mut cleaner) = cleaner {
            // Reaped off the test's path: a stale server may take a few seconds to stop.
            std::thread::spawn(move || cleaner.wait());
        }
    }
}

/// The start time of process `pid` (field 22 of `/proc/<pid>/stat`): with the pid, it names
/// one process for good, even after the pid is reused.
fn start_time(pid: u32) -> Option<String> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let after_name = &stat[stat.rfind(')')? + 2..];
    after_name.split(' ').nth(19).map(str::to_owned)
}
