//! The suite's Redis: a `redis-server` of its own, or the one `AIDLC_TEST_REDIS_URL` names.

use std::ffi::OsString;
use std::fs;
use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::path::Path;
use std::sync::OnceLock;
use std::time::Duration;

use super::REDIS_URL_VAR;
use super::server::{Server, ServerSpec, fatal, find_program, start};
use super::tls::TlsFiles;
use super::watchdog::run_dir;

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

    /// `redis-server` called `name` on a free port, nothing persisted, refusing every command
    /// until `AUTH` when it has a `password` (its `url` carries none).
    fn start(name: &'static str, password: Option<&str>) -> Result<Self, String> {
        let program = find_program("redis-server")
            .ok_or("redis-server is not installed: apt-get install redis-server")?;
        let dir = run_dir().join(name);
        fs::create_dir(&dir).map_err(|e| format!("creating {}: {e}", dir.display()))?;
        let server = start(|port| ServerSpec {
            name,
            program: program.clone(),
            args: ["--port".into(), port.to_string().into()]
                .into_iter()
                .chain(throwaway_args(&dir))
                .chain(
                    password
                        .into_iter()
                        .flat_map(|p| ["--requirepass".into(), p.into()]),
                )
                .collect(),
            user: None,
            stop_signal: "TERM",
            ready: Box::new(move || redis_answers(port)),
        })?;
        Self::at(&format!("redis://127.0.0.1:{}", server.port), Some(server))
    }
}

/// What every Redis of the suite runs with besides its ports and password: loopback only,
/// nothing persisted, in the foreground, its files in `dir`.
fn throwaway_args(dir: &Path) -> impl Iterator<Item = OsString> {
    [
        "--bind",
        "127.0.0.1",
        "--save",
        "",
        "--appendonly",
        "no",
        "--daemonize",
        "no",
        "--dir",
    ]
    .into_iter()
    .map(OsString::from)
    .chain([dir.as_os_str().to_owned()])
}

/// The suite's TLS Redis, as ElastiCache runs with in-transit encryption and AUTH: TLS only
/// (`--port 0`), a certificate from a test CA naming only `localhost` and 127.0.0.1, no client
/// certificates, and a password.
pub struct TlsRedis {
    /// `rediss://127.0.0.1:<port>`, without the password.
    pub url: String,
    /// The AUTH token it requires.
    pub auth_token: String,
    /// Its certificates.
    pub tls: TlsFiles,
    _server: Server,
}

impl TlsRedis {
    fn start() -> Result<Self, String> {
        let program = find_program("redis-server")
            .ok_or("redis-server is not installed: apt-get install redis-server")?;
        let cli = find_program("redis-cli")
            .ok_or("redis-cli is not installed: apt-get install redis-tools")?;
        let dir = run_dir().join("redis-tls");
        let tls = TlsFiles::generate(&dir.join("tls"), None)?;
        let auth_token = format!("token-{}", uuid::Uuid::new_v4().simple());
        let server = start(|port| {
            let arg = |p: &std::path::Path| p.as_os_str().to_owned();
            ServerSpec {
                name: "redis-tls",
                program: program.clone(),
                args: vec![
                    "--port".into(),
                    "0".into(),
                    "--tls-port".into(),
                    port.to_string().into(),
                    "--tls-cert-file".into(),
                    arg(&tls.cert),
                    "--tls-key-file".into(),
                    arg(&tls.key),
                    "--tls-ca-cert-file".into(),
                    arg(&tls.ca),
                    "--tls-auth-clients".into(),
                    "no".into(),
                    "--requirepass".into(),
                    auth_token.clone().into(),
                ]
                .into_iter()
                .chain(throwaway_args(&dir))
                .collect(),
                user: None,
                stop_signal: "TERM",
                ready: Box::new({
                    let (cli, ca, token) = (cli.clone(), tls.ca.clone(), auth_token.clone());
                    move || tls_redis_answers(&cli, port, &ca, &token)
                }),
            }
        })?;
        Ok(Self {
            url: format!("rediss://127.0.0.1:{}", server.port),
            auth_token,
            tls,
            _server: server,
        })
    }
}

/// The TLS Redis, started on first use; ends the run with one line if it cannot be.
pub fn redis_tls() -> &'static TlsRedis {
    static REDIS_TLS: OnceLock<Result<TlsRedis, String>> = OnceLock::new();
    REDIS_TLS
        .get_or_init(TlsRedis::start)
        .as_ref()
        .unwrap_or_else(|e| fatal(e))
}

/// `PING` over TLS, verified against `ca`, answered `PONG` (the token in the environment, not
/// on the command line).
fn tls_redis_answers(cli: &std::path::Path, port: u16, ca: &std::path::Path, token: &str) -> bool {
    std::process::Command::new(cli)
        .args([
            "--tls",
            "-h",
            "127.0.0.1",
            "-p",
            &port.to_string(),
            "--cacert",
        ])
        .arg(ca)
        .arg("PING")
        .env("REDISCLI_AUTH", token)
        .stdin(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .output()
        .is_ok_and(|out| out.stdout.starts_with(b"PONG"))
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
            _ => Redis::start("redis", None)
                .map_err(|e| format!("{e} (or set {REDIS_URL_VAR} to use a running Redis)")),
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

/// The password of [`redis_with_password`].
#[cfg_attr(not(feature = "aws"), allow(dead_code))]
pub const REDIS_PASSWORD: &str = "redis-auth-t0ken";

/// A second `redis-server`, started on first use, that refuses every command until `AUTH`
/// with [`REDIS_PASSWORD`] (ElastiCache's AUTH token); its `url` carries no password.
#[cfg_attr(not(feature = "aws"), allow(dead_code))]
pub fn redis_with_password() -> &'static Redis {
    static REDIS: OnceLock<Result<Redis, String>> = OnceLock::new();
    REDIS
        .get_or_init(|| Redis::start("redis-auth", Some(REDIS_PASSWORD)))
        .as_ref()
        .unwrap_or_else(|e| fatal(e))
}
