//! The command line: which scenarios, on which backends, at what concurrency, for how long.

use std::net::IpAddr;
use std::path::PathBuf;

use anyhow::{Context as _, bail};
use clap::{Parser, ValueEnum};

/// `aidlc-bench`: starts the release build of aidlc-auth on loopback and measures it.
#[derive(Parser, Debug, Clone)]
#[command(name = "aidlc-bench", version, about)]
pub struct Args {
    /// Scenarios to run, comma-separated; `all` is every scenario but the soak, in order.
    #[arg(long, value_enum, value_delimiter = ',', default_value = "all")]
    pub scenario: Vec<ScenarioArg>,
    /// `postgres` is PostgreSQL + Redis; `all` runs SQLite, then PostgreSQL + Redis.
    #[arg(long, value_enum, default_value = "all")]
    pub backend: BackendArg,
    /// Concurrent keep-alive connections (each one request at a time).
    #[arg(long, default_value_t = 64)]
    pub connections: usize,
    /// Seconds each scenario runs (the soak: its whole length).
    #[arg(long, default_value_t = 10)]
    pub duration: u64,
    /// Requests at most per scenario, whatever the duration.
    #[arg(long, default_value_t = 2_000_000)]
    pub max_requests: u64,
    /// Open model: send at this many requests/s in total (latency counted from each request's
    /// scheduled time, so queueing shows); unset, each connection sends as fast as answered.
    #[arg(long)]
    pub rate: Option<f64>,
    /// Generator threads (the service gets the machine's other cycles).
    #[arg(long, default_value_t = 2)]
    pub threads: usize,
    /// Accounts registered and verified for the scenarios that need signed-in users (at least
    /// one per connection).
    #[arg(long, default_value_t = 256)]
    pub users: usize,
    /// The service binary.
    #[arg(long, default_value_os_t = repo_root().join("target/release/aidlc-auth"))]
    pub binary: PathBuf,
    /// Run `cargo build --release` first.
    #[arg(long)]
    pub build: bool,
    /// A PostgreSQL superuser URL (loopback): a fresh database is created there and dropped after.
    #[arg(long, default_value = "postgres://postgres@127.0.0.1:5432/postgres")]
    pub postgres_url: String,
    /// Redis (loopback); the run uses its own key prefix.
    #[arg(long, default_value = "redis://127.0.0.1:6379")]
    pub redis_url: String,
    /// Where the JSON report goes (default `target/bench/<timestamp>.json`).
    #[arg(long)]
    pub json: Option<PathBuf>,
    /// Skip the Argon2 floor (argon2-cffi, in a venv under target/tmp).
    #[arg(long)]
    pub no_floor: bool,
    /// Seconds the Argon2 floor hashes for.
    #[arg(long, default_value_t = 10)]
    pub floor_seconds: u64,
    /// `RUST_LOG` of the service (its own default: one JSON line per request, as deployed).
    #[arg(long, default_value = "info,sqlx=warn,tower_http=warn")]
    pub service_log: String,
}

/// One scenario, or `all`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ScenarioArg {
    All,
    Register,
    VerifyRegistration,
    LoginPassword,
    LoginCode,
    Me,
    Refresh,
    Introspect,
    BadInput,
    Soak,
}

/// Which stores the service runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum BackendArg {
    Sqlite,
    Postgres,
    All,
}

impl Args {
    /// Refuses anything but loopback addresses and counts that would run unbounded.
    pub fn validate(&self) -> anyhow::Result<()> {
        for url in [&self.postgres_url, &self.redis_url] {
            let host = url_host(url).with_context(|| format!("no host in {}", redact(url)))?;
            if !is_loopback(&host) {
                bail!(
                    "{} is not a loopback address: the benchmark targets loopback only",
                    redact(url)
                );
            }
        }
        if self.connections == 0
            || self.duration == 0
            || self.max_requests == 0
            || self.threads == 0
        {
            bail!("--connections, --duration, --max-requests and --threads must be above 0");
        }
        if self.rate.is_some_and(|r| !(r.is_finite() && r > 0.0)) {
            bail!("--rate must be a positive number of requests per second");
        }
        Ok(())
    }

    /// The scenarios in run order (`all` expanded, duplicates dropped).
    pub fn scenarios(&self) -> Vec<ScenarioArg> {
        let mut out = Vec::new();
        for s in &self.scenario {
            let expanded: &[ScenarioArg] = match s {
                ScenarioArg::All => &ALL,
                one => std::slice::from_ref(one),
            };
            for e in expanded {
                if !out.contains(e) {
                    out.push(*e);
                }
            }
        }
        out
    }
}

/// `--scenario all`, in the order each feeds the next (registrations give the codes to verify,
/// verified accounts sign in).
pub const ALL: [ScenarioArg; 8] = [
    ScenarioArg::Register,
    ScenarioArg::VerifyRegistration,
    ScenarioArg::LoginPassword,
    ScenarioArg::LoginCode,
    ScenarioArg::Me,
    ScenarioArg::Refresh,
    ScenarioArg::Introspect,
    ScenarioArg::BadInput,
];

/// The repository root (this package's parent), where `target/` lives.
pub fn repo_root() -> PathBuf {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    std::fs::canonicalize(&root).unwrap_or(root)
}

/// The host of `scheme://[user[:pass]@]host[:port][/path]`.
fn url_host(url: &str) -> Option<String> {
    let rest = url.split_once("://")?.1;
    let authority = rest.split(['/', '?']).next()?;
    let host_port = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    let host = if let Some(v6) = host_port.strip_prefix('[') {
        v6.split(']').next()?
    } else {
        host_port.split(':').next()?
    };
    (!host.is_empty()).then(|| host.to_owned())
}

fn is_loopback(host: &str) -> bool {
    host.eq_ignore_ascii_case("localhost")
        || host.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

/// The URL without its password, for messages.
pub fn redact(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    match rest.rsplit_once('@') {
        Some((userinfo, host)) if userinfo.contains(':') => {
            let user = userinfo.split(':').next().unwrap_or("");
            format!("{scheme}://{user}:***@{host}")
        }
        _ => url.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_loopback_hosts_are_accepted() {
        for (url, ok) in [
            ("postgres://postgres@127.0.0.1:5432/postgres", true),
            ("redis://localhost:6379", true),
            ("redis://[::1]:6379", true),
            ("postgres://u:p@127.3.4.5/db", true),
            ("postgres://u:p@10.0.0.1:5432/db", false),
            ("redis://example.com:6379", false),
            ("redis://[2001:db8::1]:6379", false),
        ] {
            let host = url_host(url).unwrap_or_default();
            assert_eq!(is_loopback(&host), ok, "{url}");
        }
    }

    #[test]
    fn passwords_are_redacted() {
        assert_eq!(
            redact("postgres://u:secret@127.0.0.1/db"),
            "postgres://u:***@127.0.0.1/db"
        );
        assert_eq!(redact("redis://127.0.0.1:6379"), "redis://127.0.0.1:6379");
        assert_eq!(
            redact("postgres://postgres@127.0.0.1/db"),
            "postgres://postgres@127.0.0.1/db"
        );
    }
}
