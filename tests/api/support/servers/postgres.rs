//! The suite's PostgreSQL: a private cluster from the installed binaries, or the one
//! `AIDLC_TEST_DATABASE_URL` names.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;

use super::DATABASE_URL_VAR;
use super::server::{Account, Server, ServerSpec, fatal, find_program, is_root, start};
use super::tls::TlsFiles;
use super::watchdog::run_dir;

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

    pub(super) fn at(admin_url: &str, server: Option<Server>) -> Result<Self, String> {
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
        let server = Self::start_cluster("postgres", &[], None, |_, _, _| Ok(Vec::new()))?;
        let url = format!("postgres://postgres@127.0.0.1:{}/postgres", server.port);
        Self::at(&url, Some(server))
    }

    /// A private cluster called `name` listening on `addresses` besides 127.0.0.1. It trusts
    /// every connection, or with an `admin_password` checks passwords on TCP (`scram-sha-256`,
    /// the superuser's being that one). `configure` gets its directory, its data directory
    /// (after `initdb`) and the account the server runs as, to write files the server reads,
    /// and returns extra `-c` settings.
    pub(super) fn start_cluster(
        name: &'static str,
        addresses: &[&str],
        admin_password: Option<&str>,
        configure: impl FnOnce(&Path, &Path, Option<Account>) -> Result<Vec<String>, String>,
    ) -> Result<Server, String> {
        let bin = postgres_bindir()?;
        let dir = run_dir().join(name);
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
            .args(["-U", "postgres", "-E", "UTF8", "--no-locale"])
            .args(["--no-sync", "--no-instructions"])
            .stdin(Stdio::null())
            .current_dir(&dir);
        match admin_password {
            None => initdb.args(["-A", "trust"]),
            Some(password) => {
                // initdb reads the superuser's password from a file the server's account owns.
                let pwfile = dir.join("admin-password");
                fs::write(&pwfile, password)
                    .map_err(|e| format!("writing {}: {e}", pwfile.display()))?;
                if let Some(account) = user {
                    std::os::unix::fs::chown(&pwfile, Some(account.uid), Some(account.gid))
                        .map_err(|e| format!("chown {}: {e}", pwfile.display()))?;
                }
                initdb
                    .args(["--auth-local=trust", "--auth-host=scram-sha-256"])
                    .arg(format!("--pwfile={}", pwfile.display()))
            }
        };
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
        let extra = configure(&dir, &data, user)?;
        let listen = format!(
            "listen_addresses={}",
            ["127.0.0.1"]
                .iter()
                .chain(addresses)
                .copied()
                .collect::<Vec<_>>()
                .join(",")
        );
        let pg_isready = bin.join("pg_isready");
        start(|port| ServerSpec {
            name,
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
                    listen.as_str(),
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
                .chain(extra.iter().map(String::as_str))
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
        })
    }
}

/// The suite's TLS-only PostgreSQL: `ssl = on` with a certificate from a test CA naming only
/// `localhost` and 127.0.0.1, and a `pg_hba.conf` of `hostssl` lines alone, so a client without
/// TLS is refused. It also listens on 127.0.0.2, a name its certificate does not hold.
pub struct TlsPostgres {
    /// The cluster; its URLs verify the certificate fully (`sslmode=verify-full`, the CA).
    pub postgres: Postgres,
    /// Its certificates.
    pub tls: TlsFiles,
}

impl TlsPostgres {
    fn start() -> Result<Self, String> {
        let mut files = None;
        let server =
            Postgres::start_cluster("postgres-tls", &["127.0.0.2"], None, |dir, data, user| {
                let tls = TlsFiles::generate(&dir.join("tls"), user)?;
                let hba = data.join("pg_hba.conf");
                fs::write(&hba, "hostssl all all 127.0.0.0/8 trust\n")
                    .map_err(|e| format!("writing {}: {e}", hba.display()))?;
                let settings = vec![
                    "ssl=on".to_owned(),
                    format!("ssl_cert_file={}", tls.cert.display()),
                    format!("ssl_key_file={}", tls.key.display()),
                ];
                files = Some(tls);
                Ok(settings)
            })?;
        let tls = files.ok_or("the TLS cluster's certificates were not written")?;
        let url = format!(
            "postgres://postgres@127.0.0.1:{}/postgres?sslmode=verify-full&sslrootcert={}",
            server.port,
            tls.ca.display()
        );
        Ok(Self {
            postgres: Postgres::at(&url, Some(server))?,
            tls,
        })
    }
}

/// The TLS-only PostgreSQL, started on first use; ends the run with one line if it cannot be.
pub fn postgres_tls() -> &'static TlsPostgres {
    static POSTGRES_TLS: OnceLock<Result<TlsPostgres, String>> = OnceLock::new();
    POSTGRES_TLS
        .get_or_init(TlsPostgres::start)
        .as_ref()
        .unwrap_or_else(|e| fatal(e))
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

/// `/usr/lib/postgresql/<newest>/bin` (Debian), else wherever `initdb` is on `PATH`.
pub(super) fn postgres_bindir() -> Result<PathBuf, String> {
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
