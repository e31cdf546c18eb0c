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
//! A server is a [`server::ServerSpec`]: a foreground command for a given port, a readiness
//! probe and a stop signal; [`server::start`] runs it. One file per server (`postgres.rs`,
//! `redis.rs`, `smtp.rs`: the SMTP catcher `tests/support/smtp_sink.py`, run by the venv's
//! aiosmtpd; `moto.rs`: the local AWS, `moto.server` from the venv, with `--features aws`):
//! adding one is a spec plus a `OnceLock` like [`postgres`], [`redis`] and [`smtp`]. Variants
//! are options of the same spec: the TLS-only PostgreSQL ([`postgres_tls`]) is `-c ssl=on` with
//! certificates generated per run ([`tls::TlsFiles`], rcgen) and a `hostssl`-only
//! `pg_hba.conf` written after `initdb`; the TLS Redis ([`redis_tls`]) is `--tls-port` (with
//! `--port 0`) and `--requirepass`, probed with `redis-cli --tls`. Both are the suite's own
//! even when the variables below name existing servers. Two more variants are constructors of
//! their own: `postgres_scram.rs`, a second cluster that checks passwords (`scram-sha-256`),
//! and `redis::redis_with_password`.
//!
//! `AIDLC_TEST_DATABASE_URL` / `AIDLC_TEST_REDIS_URL`, when set, name an existing server to
//! use instead (e.g. `postgres://postgres@127.0.0.1:5432/postgres`, `redis://127.0.0.1:6379`).
//! A missing program ends the run with one line naming the package to install.

use std::fmt;
use std::ops::Deref;

#[cfg(feature = "aws")]
pub mod moto;
pub mod postgres;
pub mod postgres_scram;
pub mod redis;
pub mod server;
pub mod smtp;
pub mod tls;
pub mod watchdog;

#[cfg(feature = "aws")]
pub use moto::moto;
pub use postgres::{postgres, postgres_tls};
pub use redis::{redis, redis_tls};
pub use server::fatal;
pub use smtp::smtp;
pub use watchdog::run_dir;

/// Set to an admin URL to use that PostgreSQL instead of starting one.
pub const DATABASE_URL_VAR: &str = "AIDLC_TEST_DATABASE_URL";
/// Set to a URL to use that Redis instead of starting one.
pub const REDIS_URL_VAR: &str = "AIDLC_TEST_REDIS_URL";

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

impl ::redis::IntoConnectionInfo for Endpoint {
    fn into_connection_info(self) -> ::redis::RedisResult<::redis::ConnectionInfo> {
        (self.0)().into_connection_info()
    }
}
