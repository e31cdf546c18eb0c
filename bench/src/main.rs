//! `aidlc-bench`: a load benchmark of the aidlc-auth release build, on loopback only, every
//! loop bounded in time and in requests. `cargo run --release -p aidlc-bench -- --help`.

#![deny(clippy::unwrap_used, clippy::expect_used)]

mod backend;
mod cli;
mod floor;
mod http;
mod load;
mod machine;
mod mailbox;
mod measure;
mod procfs;
mod report;
mod scenarios;
mod server;
mod soak;
mod statements;

use std::time::Duration;

use anyhow::{Context as _, bail};
use clap::Parser as _;

use backend::Backend;
use cli::{Args, BackendArg, ScenarioArg};
use load::Plan;
use measure::Watch;
use report::{BackendReport, Report, Row};
use scenarios::Run;
use scenarios::jobs::Kind;
use server::Service;

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    args.validate()?;
    if args.build {
        let status = std::process::Command::new("cargo")
            .args(["build", "--release", "-p", "aidlc-auth"])
            .current_dir(cli::repo_root())
            .status()
            .context("running cargo build --release")?;
        if !status.success() {
            bail!("cargo build --release failed");
        }
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(args.threads)
        .enable_all()
        .build()?;
    runtime.block_on(run(args))
}

/// The command as typed, for the report.
fn command_line() -> String {
    let quote = |a: String| {
        if a.chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_=./:,".contains(c))
        {
            a
        } else {
            format!("'{a}'")
        }
    };
    std::env::args().map(quote).collect::<Vec<_>>().join(" ")
}

fn now_utc(format: &str) -> String {
    std::process::Command::new("date")
        .args(["-u", format])
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .map(|s| s.trim().to_owned())
        .unwrap_or_default()
}

async fn run(mut args: Args) -> anyhow::Result<()> {
    // The service starts in another directory: a relative path would not name it there.
    args.binary = std::path::absolute(&args.binary)?;
    let root = cli::repo_root();
    let started_at = now_utc("+%Y-%m-%dT%H:%M:%SZ");
    let machine = machine::Machine::describe();
    let scenarios = args.scenarios();
    let argon2 = floor::Params::of(&args.binary);
    let floor = if args.no_floor {
        None
    } else {
        eprintln!("measuring the Argon2 floor ({} s)", args.floor_seconds);
        let workers = u32::try_from(machine.nproc).unwrap_or(1);
        match floor::measure(&root, argon2, workers, args.floor_seconds) {
            Ok(f) => Some(f),
            Err(e) => {
                eprintln!("no Argon2 floor: {e:#}");
                None
            }
        }
    };
    let work = root.join("target/tmp/bench-run");
    std::fs::create_dir_all(&work)?;
    let backends: &[&str] = match args.backend {
        BackendArg::Sqlite => &["sqlite"],
        BackendArg::Postgres => &["postgres"],
        BackendArg::All => &["sqlite", "postgres"],
    };
    let mut reports = Vec::new();
    for (n, name) in backends.iter().enumerate() {
        let run_id = format!("{}", n + 1);
        let backend = match *name {
            "sqlite" => Backend::sqlite(&work, &run_id),
            _ => Backend::postgres(&work, &run_id, &args.postgres_url, &args.redis_url).await,
        };
        // A backend that cannot be set up or started is reported, and the others still run.
        let report = match backend {
            Ok(mut backend) => {
                let result = on_backend(&args, &scenarios, floor.as_ref(), &mut backend).await;
                backend.clean_up().await;
                result.unwrap_or_else(|e| BackendReport::failed(backend_name(name), &e))
            }
            Err(e) => BackendReport::failed(backend_name(name), &e),
        };
        reports.push(report);
    }
    let targets = reports
        .iter()
        .flat_map(|b| report::check(b, floor.as_ref(), machine.nproc))
        .collect();
    let settings = serde_json::json!({
        "connections": args.connections,
        "duration_s": args.duration,
        "max_requests": args.max_requests,
        "rate": args.rate,
        "generator_threads": args.threads,
        "users": args.users,
        "service_log": args.service_log,
        "argon2": argon2,
    });
    let report = Report {
        command: command_line(),
        started_at,
        machine,
        settings,
        floor,
        backends: reports,
        targets,
    };
    println!("{}", report::markdown(&report));
    let path = args.json.clone().unwrap_or_else(|| {
        root.join("target/bench")
            .join(format!("{}.json", now_utc("+%Y%m%dT%H%M%SZ")))
    });
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    std::fs::write(&path, serde_json::to_vec_pretty(&report)?)?;
    eprintln!("JSON report: {}", path.display());
    // Reported above, and a failure of the run for whoever scripts it.
    let failed: Vec<&str> = report
        .backends
        .iter()
        .filter(|b| !b.failures.is_empty())
        .map(|b| b.backend)
        .collect();
    anyhow::ensure!(
        failed.is_empty(),
        "measuring failed on: {}",
        failed.join(", ")
    );
    Ok(())
}

fn backend_name(name: &str) -> &'static str {
    if name == "sqlite" {
        "sqlite"
    } else {
        "postgres"
    }
}

/// Starts the service on `backend`, runs the scenarios, stops it.
async fn on_backend(
    args: &Args,
    scenarios: &[ScenarioArg],
    floor: Option<&floor::Floor>,
    backend: &mut Backend,
) -> anyhow::Result<BackendReport> {
    eprintln!("{}: starting {}", backend.name, args.binary.display());
    let service = Service::start(
        &args.binary,
        &backend.stores,
        &backend.dir,
        &args.service_log,
    )
    .await?;
    eprintln!(
        "{}: ready in {:.0} ms",
        backend.name,
        service.startup.as_secs_f64() * 1000.0
    );
    let redis = backend.stores.redis.as_ref().and_then(|(url, _)| {
        let hostport = url
            .split_once("://")?
            .1
            .split('/')
            .next()?
            .rsplit('@')
            .next()?
            .to_owned();
        Some(format!("redis-server {hostport}"))
    });
    let statements = match backend.statements().await {
        Ok(s) => s.map(tokio::sync::Mutex::new),
        Err(e) => {
            eprintln!("{}: no statement counters: {e:#}", backend.name);
            None
        }
    };
    if statements.is_some() {
        eprintln!("{}: counting statements (pg_stat_statements)", backend.name);
    }
    let watch = Watch {
        service_pid: service.pid,
        postgres: backend.postgres_needle(),
        redis,
        ticks_per_second: procfs::clock_ticks(),
        statements,
    };
    let plan = Plan {
        duration: Duration::from_secs(args.duration),
        max_requests: args.max_requests,
        rate: args.rate,
    };
    let prefix = format!("r{}x{}", std::process::id(), backend.name.len());
    let mut run = Run::new(
        service.addr,
        watch,
        service.log_path.clone(),
        plan,
        args.connections,
        args.users,
        prefix,
    );
    let mut report = BackendReport {
        backend: backend.name,
        startup_ms: service.startup.as_secs_f64() * 1000.0,
        postgres_version: backend.server_version().await,
        rows: Vec::new(),
        soak: None,
        failures: Vec::new(),
    };
    for scenario in scenarios {
        eprintln!("{}: {scenario:?}", backend.name);
        let result = match scenario {
            ScenarioArg::Register => run.register().await.map(|m| vec![(m, "202")]),
            ScenarioArg::VerifyRegistration => {
                run.verify_registration().await.map(|m| vec![(m, "200")])
            }
            ScenarioArg::LoginPassword => run
                .signed_in(Kind::LoginPassword)
                .await
                .map(|m| vec![(m, "200")]),
            ScenarioArg::LoginCode => run
                .login_code()
                .await
                .map(|[a, v]| vec![(a, "202"), (v, "200")]),
            ScenarioArg::Me => run.signed_in(Kind::Me).await.map(|m| vec![(m, "200")]),
            ScenarioArg::Refresh => run.signed_in(Kind::Refresh).await.map(|m| vec![(m, "200")]),
            ScenarioArg::Introspect => run
                .signed_in(Kind::Introspect)
                .await
                .map(|m| vec![(m, "200")]),
            ScenarioArg::BadInput => run.bad_input().await.map(|m| vec![(m, "422")]),
            ScenarioArg::Soak => {
                let rate = args.rate.unwrap_or(soak::DEFAULT_RATE);
                match soak::soak(
                    &mut run,
                    backend,
                    Duration::from_secs(args.duration),
                    rate,
                    args.max_requests,
                )
                .await
                {
                    Ok(s) => {
                        report.soak = Some(s);
                        Ok(Vec::new())
                    }
                    Err(e) => Err(e),
                }
            }
            ScenarioArg::All => Ok(Vec::new()),
        };
        match result {
            Ok(measured) => {
                for (m, expected) in measured {
                    let row = Row::new(&m, expected, floor);
                    eprintln!(
                        "  {}: {} requests, {:.0} req/s, p99 {:.2} ms, errors {:?}",
                        row.scenario, row.requests, row.requests_per_s, row.p99_ms, row.errors
                    );
                    report.rows.push(row);
                }
            }
            Err(e) => {
                eprintln!("  {scenario:?} failed: {e:#}");
                report.failures.push(format!("{scenario:?}: {e:#}"));
            }
        }
    }
    service.stop().await;
    Ok(report)
}
