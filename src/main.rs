//! The `aidlc-auth` binary: `serve` (default), `migrate`, `healthcheck`, `keys`, `outbox`,
//! `settings`.

use std::io::Write as _;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::process::ExitCode;
use std::time::Duration;

use aidlc_auth::app::{self, App};
use aidlc_auth::config::{self, Settings};
use aidlc_auth::{store, telemetry};
use clap::{CommandFactory, Parser, Subcommand};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

#[derive(Parser)]
#[command(
    name = "aidlc-auth",
    version,
    about = "Authentication service for AIDLC"
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    /// Every setting, from its environment variable or flag.
    #[command(flatten)]
    settings: Settings,
}

#[derive(Subcommand)]
enum Command {
    /// Serve the API (the default).
    Serve,
    /// Apply database migrations and exit.
    Migrate,
    /// Exit 0 when GET /health on the local port answers 200 (for container health checks).
    Healthcheck,
    /// Manage access-token signing keys.
    Keys {
        #[command(subcommand)]
        action: KeysAction,
    },
    /// The mail outbox: rows per state and the oldest queued mail's age (the default).
    Outbox {
        #[command(subcommand)]
        action: Option<OutboxAction>,
    },
    /// Every setting as one JSON object per line (variable, flag, default, and the requirement
    /// it meets in staging/production), read from the declaration: for the deployment checks.
    Settings,
}

#[derive(Subcommand)]
enum OutboxAction {
    /// Rows per state and the oldest queued mail's age (the default).
    Status,
    /// Queue dead mail again (unless its code expired), with a fresh count of attempts.
    RetryDead,
}

#[derive(Subcommand)]
enum KeysAction {
    /// Publish a new key now; it signs once every instance has seen it (2 minutes by default),
    /// and the previous one stays published until its tokens expire.
    Rotate,
    /// For a leaked key: stop signing with it and unpublish it now; a new key signs at once,
    /// and every instance refuses tokens with this kid after its next key reload.
    Revoke {
        /// The key id (`kid`) to revoke, as in the JWKS (base64url: it may start with `-`).
        #[arg(allow_hyphen_values = true)]
        kid: String,
    },
    /// Seal every stored private key and server secret again under AIDLC_KEY_ENCRYPTION_KEY
    /// (one transaction), after which AIDLC_KEY_ENCRYPTION_KEY_PREVIOUS can be removed.
    Rewrap,
}

#[tokio::main]
async fn main() -> ExitCode {
    app::install_crypto_provider();
    return_large_allocations_to_the_os();
    let cli: Cli = config::parse(Cli::command(), std::env::vars(), std::env::args_os())
        .unwrap_or_else(|e| e.exit());
    if matches!(cli.command, Some(Command::Settings)) {
        // The declaration, not this environment's values: it prints without any set.
        return print_settings();
    }
    let settings = cli.settings;
    if let Err(e) = settings.validate() {
        eprintln!("aidlc-auth: {e}");
        return ExitCode::FAILURE;
    }
    let command = cli.command.unwrap_or(Command::Serve);
    if matches!(command, Command::Healthcheck) {
        return healthcheck(settings.host(), settings.port).await;
    }
    telemetry::init(settings.log_format());
    for name in Settings::unknown_variables(std::env::vars()) {
        tracing::warn!(variable = %name, "unknown AIDLC_* environment variable ignored");
    }
    let result = match command {
        Command::Migrate => store::migrate(&settings).await,
        Command::Keys {
            action: KeysAction::Rotate,
        } => app::rotate_signing_key(&settings).await.map(|key| {
            println!(
                "new signing key {} published; it signs from {}",
                key.kid, key.activates_at
            );
        }),
        Command::Keys {
            action: KeysAction::Revoke { kid },
        } => app::revoke_signing_key(&settings, &kid)
            .await
            .and_then(|signing| match signing {
                Some(signing) => {
                    println!(
                        "signing key {kid} revoked; {signing} signs now; every instance refuses \
                         {kid} within {} s (its key reload interval)",
                        settings.key_reload_interval.as_secs()
                    );
                    Ok(())
                }
                None => Err(anyhow::anyhow!("no published signing key has kid {kid}")),
            }),
        Command::Keys {
            action: KeysAction::Rewrap,
        } => app::rewrap_keys(&settings).await.map(|c| {
            println!(
                "rewrapped {} signing keys and {} server secrets under key-encryption key {} \
                 ({} were under the previous key); AIDLC_KEY_ENCRYPTION_KEY_PREVIOUS can now be removed",
                c.signing_keys, c.server_secrets, c.kek_id, c.from_previous
            );
        }),
        Command::Outbox {
            action: None | Some(OutboxAction::Status),
        } => app::outbox_counts(&settings).await.map(|c| {
            let oldest = c
                .depth
                .oldest_queued
                .map_or_else(|| "none".to_owned(), |age| format!("{} s", age.as_secs()));
            println!(
                "queued {}, sending {}, sent {}, dead {}, expired {}; oldest queued: {oldest}",
                c.depth.queued, c.depth.sending, c.sent, c.depth.dead, c.expired
            );
        }),
        Command::Outbox {
            action: Some(OutboxAction::RetryDead),
        } => app::retry_dead_mail(&settings).await.map(|n| {
            println!("{n} dead mail queued again; the running instances send it within their poll interval");
        }),
        // Answered before the settings were validated.
        Command::Settings => Ok(()),
        Command::Serve | Command::Healthcheck => serve(settings).await,
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = format!("{e:#}"), "aidlc-auth stopped");
            ExitCode::FAILURE
        }
    }
}

fn print_settings() -> ExitCode {
    let mut out = std::io::stdout().lock();
    for setting in Settings::described() {
        let printed = serde_json::to_string(&setting)
            .map_err(std::io::Error::from)
            .and_then(|line| writeln!(out, "{line}"));
        // A reader that stops early (`| head`) ends the listing; it is not a crash.
        if let Err(e) = printed {
            eprintln!("aidlc-auth: {e}");
            return ExitCode::FAILURE;
        }
    }
    ExitCode::SUCCESS
}

async fn serve(settings: Settings) -> anyhow::Result<()> {
    tracing::info!(?settings, "starting");
    let app = App::build(settings).await?;
    app.run(shutdown_signal()).await?;
    Ok(())
}

/// SIGTERM (an ECS task stop) or SIGINT (Ctrl-C); `App::run` then stops in order.
async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! { () = ctrl_c => {}, () = terminate => {} }
    tracing::info!("shutdown signal received");
}

/// A dependency-free HTTP/1.1 probe, so the container image needs no curl. It asks the
/// address the service listens on (loopback when that is every address).
async fn healthcheck(host: IpAddr, port: u16) -> ExitCode {
    let host = match host {
        IpAddr::V4(v4) if v4.is_unspecified() => IpAddr::from(Ipv4Addr::LOCALHOST),
        IpAddr::V6(v6) if v6.is_unspecified() => IpAddr::from(Ipv6Addr::LOCALHOST),
        other => other,
    };
    let probe = async {
        let mut stream = tokio::net::TcpStream::connect((host, port)).await?;
        stream
            .write_all(b"GET /health HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
            .await?;
        let mut head = [0u8; 12];
        stream.read_exact(&mut head).await?;
        Ok::<bool, std::io::Error>(head.starts_with(b"HTTP/1.1 200"))
    };
    match tokio::time::timeout(Duration::from_secs(3), probe).await {
        Ok(Ok(true)) => ExitCode::SUCCESS,
        _ => ExitCode::FAILURE,
    }
}

/// Each Argon2 run allocates its whole memory cost (19 MiB by default) and frees it. glibc's
/// adaptive mmap threshold soon serves such blocks from per-thread heaps that it never hands
/// back, so a burst of logins left the process at 700 MB; with a fixed threshold they are
/// mapped and unmapped each time and the process returns to its idle size.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn return_large_allocations_to_the_os() {
    // SAFETY: mallopt only changes allocator tuning and takes glibc's own locks.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 128 * 1024);
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn return_large_allocations_to_the_os() {}
