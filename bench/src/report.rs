//! The results: one row per scenario (rate, latency percentiles, errors by status, the
//! service's cost), the targets of the issue checked against them, as Markdown and JSON.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde::Serialize;

use crate::floor::Floor;
use crate::machine::Machine;
use crate::scenarios::Measured;
use crate::soak::Soak;
use crate::statements::StatementCost;

/// One scenario's row.
#[derive(Debug, Clone, Serialize)]
pub struct Row {
    pub scenario: &'static str,
    pub hashing: bool,
    pub requests: u64,
    pub ok: u64,
    pub wall_s: f64,
    /// Answers of every kind per second.
    pub requests_per_s: f64,
    /// Expected answers per second (what the targets are checked on).
    pub ok_per_s: f64,
    pub p50_ms: f64,
    pub p95_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
    /// Every answer by status (`io` for a failed connection).
    pub answers: BTreeMap<String, u64>,
    /// The answers that were not the expected one.
    pub errors: BTreeMap<String, u64>,
    pub service_cpu_s: f64,
    pub requests_per_service_cpu_s: f64,
    pub peak_rss_mib: f64,
    pub postgres_cpu_s: f64,
    pub redis_cpu_s: f64,
    pub generator_cpu_s: f64,
    /// Machine CPU seconds not spent by the service, its stores or the generator.
    pub other_cpu_s: f64,
    /// For a hashing scenario: its rate over the Argon2 floor's.
    pub floor_fraction: Option<f64>,
    /// For a hashing scenario: its requests per service CPU-second over the floor's hashes per
    /// CPU-second (the cost comparison; the rate comparison depends on what else runs).
    pub floor_cpu_fraction: Option<f64>,
    pub note: Option<String>,
    /// PostgreSQL's statements in this scenario, most execution time first (only on a server
    /// with `pg_stat_statements`).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub statements: Vec<StatementCost>,
}

fn ms(micros: u64) -> f64 {
    micros as f64 / 1000.0
}

fn per(n: f64, d: f64) -> f64 {
    if d > 0.0 { n / d } else { 0.0 }
}

impl Row {
    /// The row of `m`, with the floor's rate for hashing scenarios.
    pub fn new(m: &Measured, expected: &str, floor: Option<&Floor>) -> Self {
        let o = &m.outcome;
        let u = &m.usage;
        let h = &o.hist;
        let wall = o.wall.as_secs_f64();
        let requests = o.requests();
        let ok_per_s = per(o.ok as f64, wall);
        let errors = o
            .answers
            .iter()
            .filter(|(k, _)| k.as_str() != expected)
            .map(|(k, v)| (k.clone(), *v))
            .collect();
        let known = u.service_cpu_s + u.postgres_cpu_s + u.redis_cpu_s + u.generator_cpu_s;
        Self {
            scenario: m.name,
            hashing: m.hashing,
            requests,
            ok: o.ok,
            wall_s: wall,
            requests_per_s: per(requests as f64, wall),
            ok_per_s,
            p50_ms: ms(h.value_at_quantile(0.50)),
            p95_ms: ms(h.value_at_quantile(0.95)),
            p99_ms: ms(h.value_at_quantile(0.99)),
            max_ms: ms(h.max()),
            answers: o.answers.clone(),
            errors,
            service_cpu_s: u.service_cpu_s,
            requests_per_service_cpu_s: per(requests as f64, u.service_cpu_s),
            peak_rss_mib: u.peak_rss_kib as f64 / 1024.0,
            postgres_cpu_s: u.postgres_cpu_s,
            redis_cpu_s: u.redis_cpu_s,
            generator_cpu_s: u.generator_cpu_s,
            other_cpu_s: (u.machine_busy_s - known).max(0.0),
            floor_fraction: floor
                .filter(|_| m.hashing)
                .map(|f| per(ok_per_s, f.hashes_per_second)),
            floor_cpu_fraction: floor
                .filter(|_| m.hashing)
                .map(|f| per(per(o.ok as f64, u.service_cpu_s), f.hashes_per_cpu_second)),
            note: m.note.clone(),
            statements: u.statements.clone(),
        }
    }
}

/// One backend's results.
#[derive(Debug, Clone, Serialize)]
pub struct BackendReport {
    pub backend: &'static str,
    pub startup_ms: f64,
    pub postgres_version: Option<String>,
    pub rows: Vec<Row>,
    pub soak: Option<Soak>,
    pub failures: Vec<String>,
}

impl BackendReport {
    /// A backend that could not be measured at all.
    pub fn failed(backend: &'static str, error: &anyhow::Error) -> Self {
        eprintln!("{backend}: {error:#}");
        Self {
            backend,
            startup_ms: f64::NAN,
            postgres_version: None,
            rows: Vec::new(),
            soak: None,
            failures: vec![format!("{error:#}")],
        }
    }
}

/// A target of the issue and whether the run met it.
#[derive(Debug, Clone, Serialize)]
pub struct Check {
    pub backend: &'static str,
    pub target: String,
    pub measured: String,
    pub met: bool,
}

/// The whole run.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub command: String,
    pub started_at: String,
    pub machine: Machine,
    pub settings: serde_json::Value,
    pub floor: Option<Floor>,
    pub backends: Vec<BackendReport>,
    pub targets: Vec<Check>,
}

/// Concurrent Argon2 runs the service allows: two per core (README, Passwords).
pub fn concurrent_hashes(cores: usize) -> usize {
    2 * cores
}

/// The targets, checked on `b`.
pub fn check(b: &BackendReport, floor: Option<&Floor>, cores: usize) -> Vec<Check> {
    let mut out = Vec::new();
    let mut add = |target: String, measured: String, met: bool| {
        out.push(Check {
            backend: b.backend,
            target,
            measured,
            met,
        });
    };
    let row = |name: &str| b.rows.iter().find(|r| r.scenario == name);
    for (name, wanted) in [
        ("me", 8000.0),
        ("bad-input", 20000.0),
        ("refresh", 2000.0),
        ("introspect", 2000.0),
        ("verify-login", 2000.0),
    ] {
        if let Some(r) = row(name) {
            add(
                format!("{name} >= {wanted:.0} req/s"),
                format!("{:.0}", r.ok_per_s),
                r.ok_per_s >= wanted,
            );
        }
    }
    if floor.is_some() {
        for name in ["register", "login-password"] {
            if let Some(r) = row(name) {
                let f = r.floor_fraction.unwrap_or(0.0);
                add(
                    format!("{name} >= 90 % of the Argon2 floor (rate)"),
                    format!("{:.0} %", 100.0 * f),
                    f >= 0.9,
                );
                let c = r.floor_cpu_fraction.unwrap_or(0.0);
                add(
                    format!("{name} >= 90 % of the Argon2 floor (per CPU-second)"),
                    format!("{:.0} %", 100.0 * c),
                    c >= 0.9,
                );
            }
        }
    }
    for r in b.rows.iter().filter(|r| !r.hashing) {
        add(
            format!("{} p99 <= 25 ms", r.scenario),
            format!("{:.2} ms", r.p99_ms),
            r.p99_ms <= 25.0,
        );
    }
    let rss = |hashing: bool| {
        b.rows
            .iter()
            .filter(|r| r.hashing == hashing)
            .map(|r| r.peak_rss_mib)
            .fold(None, |m: Option<f64>, v| Some(m.map_or(v, |m| m.max(v))))
    };
    if let Some(peak) = rss(false) {
        add(
            "peak RSS <= 64 MB, non-hashing load".into(),
            format!("{peak:.1} MiB"),
            peak <= 64.0,
        );
    }
    if let Some(peak) = rss(true) {
        let n = concurrent_hashes(cores);
        let bound = 32.0 + 20.0 * n as f64;
        add(
            format!(
                "peak RSS <= 32 MB + 20 MB x {n} concurrent hashes = {bound:.0} MB, hashing load"
            ),
            format!("{peak:.1} MiB"),
            peak <= bound,
        );
    }
    if b.startup_ms.is_finite() {
        add(
            "start-up to ready <= 1 s".into(),
            format!("{:.0} ms", b.startup_ms),
            b.startup_ms <= 1000.0,
        );
    }
    out
}

fn errors(e: &BTreeMap<String, u64>) -> String {
    if e.is_empty() {
        return "0".into();
    }
    e.iter()
        .map(|(k, v)| format!("{v}× {k}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Statements shown per scenario.
const STATEMENTS_SHOWN: usize = 8;
/// Characters of a statement's text shown.
const STATEMENT_CHARS: usize = 90;

/// `x`'s PostgreSQL statements per request: how often each runs, its execution time and WAL.
fn statement_table(s: &mut String, x: &Row) {
    let n = x.requests.max(1) as f64;
    let _ = writeln!(
        s,
        "\n#### PostgreSQL statements per {} request (pg_stat_statements)\n\n\
         | statement | calls | exec µs | WAL records | WAL bytes |\n|---|---:|---:|---:|---:|",
        x.scenario
    );
    for st in x.statements.iter().take(STATEMENTS_SHOWN) {
        let text: String = st.query.chars().take(STATEMENT_CHARS).collect();
        let cut = if st.query.chars().count() > STATEMENT_CHARS {
            "…"
        } else {
            ""
        };
        let nested = if st.top_level { "" } else { " (in a function)" };
        let _ = writeln!(
            s,
            "| `{}{cut}`{nested} | {:.2} | {:.1} | {:.1} | {:.0} |",
            text.replace('|', "\\|").replace('`', "'"),
            st.calls as f64 / n,
            1000.0 * st.exec_ms / n,
            st.wal_records as f64 / n,
            st.wal_bytes / n,
        );
    }
}

/// The report as Markdown: machine, floor, one table per backend, the targets.
pub fn markdown(r: &Report) -> String {
    let mut s = String::new();
    let m = &r.machine;
    let _ = writeln!(s, "Command: `{}`  \nStarted: {}  ", r.command, r.started_at);
    let _ = writeln!(
        s,
        "Machine: {} × {}, {}, kernel {}, {}, {}; load average at start {}\n",
        m.nproc, m.cpu_model, m.memory, m.kernel, m.os, m.rustc, m.loadavg_at_start
    );
    if let Some(f) = &r.floor {
        let _ = writeln!(
            s,
            "Argon2 floor (argon2-cffi {}, Argon2id m={} KiB t={} p={}, {} processes): **{:.1} hashes/s**, {:.1} hashes per CPU-second\n",
            f.argon2_cffi,
            f.params.memory_kib,
            f.params.iterations,
            f.params.parallelism,
            f.workers,
            f.hashes_per_second,
            f.hashes_per_cpu_second
        );
    }
    for b in &r.backends {
        let pg = b
            .postgres_version
            .as_deref()
            .map(|v| format!(" (PostgreSQL {v} + Redis)"))
            .unwrap_or_default();
        let _ = writeln!(
            s,
            "### {}{pg}: {}\n",
            b.backend,
            if b.startup_ms.is_finite() {
                format!("start-up to ready {:.0} ms", b.startup_ms)
            } else {
                "not started".to_owned()
            }
        );
        if !b.rows.is_empty() {
            let _ = writeln!(
                s,
                "| scenario | requests | req/s | p50 ms | p95 ms | p99 ms | errors | service CPU s | req per CPU-s | peak RSS MiB | PG CPU s | Redis CPU s | generator CPU s | other CPU s | of floor: rate, per CPU-s |"
            );
            let _ = writeln!(
                s,
                "|---|---:|---:|---:|---:|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|"
            );
            for x in &b.rows {
                let floor = match (x.floor_fraction, x.floor_cpu_fraction) {
                    (Some(f), Some(c)) => format!("{:.0} %, {:.0} %", 100.0 * f, 100.0 * c),
                    _ => String::new(),
                };
                let _ = writeln!(
                    s,
                    "| {} | {} | {:.0} | {:.2} | {:.2} | {:.2} | {} | {:.2} | {:.0} | {:.1} | {:.2} | {:.2} | {:.2} | {:.2} | {} |",
                    x.scenario,
                    x.requests,
                    x.requests_per_s,
                    x.p50_ms,
                    x.p95_ms,
                    x.p99_ms,
                    errors(&x.errors),
                    x.service_cpu_s,
                    x.requests_per_service_cpu_s,
                    x.peak_rss_mib,
                    x.postgres_cpu_s,
                    x.redis_cpu_s,
                    x.generator_cpu_s,
                    x.other_cpu_s,
                    floor
                );
            }
        }
        for x in b.rows.iter().filter(|x| x.note.is_some()) {
            let _ = writeln!(s, "\n- {}: {}", x.scenario, x.note.as_deref().unwrap_or(""));
        }
        for f in &b.failures {
            let _ = writeln!(s, "\n- failed: {f}");
        }
        for x in b.rows.iter().filter(|x| !x.statements.is_empty()) {
            statement_table(&mut s, x);
        }
        if let Some(soak) = &b.soak {
            s.push('\n');
            s.push_str(&soak.markdown());
        }
        s.push('\n');
    }
    if !r.targets.is_empty() {
        let _ = writeln!(
            s,
            "### Targets\n\n| backend | target | measured | met |\n|---|---|---:|---|"
        );
        for c in &r.targets {
            let _ = writeln!(
                s,
                "| {} | {} | {} | {} |",
                c.backend,
                c.target,
                c.measured,
                if c.met { "yes" } else { "**no**" }
            );
        }
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::load::Outcome;
    use crate::measure::Usage;
    use std::time::Duration;

    fn measured() -> Measured {
        let mut outcome = Outcome::empty();
        for micros in 1..=1000 {
            outcome.hist.saturating_record(micros);
        }
        outcome.answers.insert("200".into(), 990);
        outcome.answers.insert("503".into(), 10);
        outcome.ok = 990;
        outcome.wall = Duration::from_secs(2);
        let usage = Usage {
            service_cpu_s: 0.5,
            machine_busy_s: 2.0,
            generator_cpu_s: 0.5,
            peak_rss_kib: 20 * 1024,
            ..Usage::default()
        };
        Measured {
            name: "me",
            hashing: false,
            outcome,
            usage,
            note: None,
        }
    }

    #[test]
    fn a_row_has_rates_percentiles_and_errors_by_status() {
        let row = Row::new(&measured(), "200", None);
        assert_eq!(row.requests, 1000);
        assert!((row.requests_per_s - 500.0).abs() < 1e-9);
        assert!((row.ok_per_s - 495.0).abs() < 1e-9);
        assert!((row.p50_ms - 0.5).abs() < 0.01, "{}", row.p50_ms);
        assert!((row.p99_ms - 0.99).abs() < 0.01, "{}", row.p99_ms);
        assert_eq!(row.errors, BTreeMap::from([("503".to_owned(), 10)]));
        assert!((row.requests_per_service_cpu_s - 2000.0).abs() < 1e-9);
        assert!((row.other_cpu_s - 1.0).abs() < 1e-9);
        assert!((row.peak_rss_mib - 20.0).abs() < 1e-9);
    }

    #[test]
    fn targets_are_checked_and_shown() {
        let b = BackendReport {
            backend: "postgres",
            startup_ms: 300.0,
            postgres_version: None,
            rows: vec![Row::new(&measured(), "200", None)],
            soak: None,
            failures: vec![],
        };
        let checks = check(&b, None, 2);
        let me = checks
            .iter()
            .find(|c| c.target.starts_with("me >="))
            .map(|c| c.met);
        assert_eq!(me, Some(false));
        let p99 = checks
            .iter()
            .find(|c| c.target == "me p99 <= 25 ms")
            .map(|c| c.met);
        assert_eq!(p99, Some(true));
        assert!(
            checks
                .iter()
                .any(|c| c.target.starts_with("start-up") && c.met)
        );
        assert_eq!(errors(&BTreeMap::from([("503".to_owned(), 10)])), "10× 503");
    }

    #[test]
    fn hashing_rows_are_compared_with_the_floor_by_rate_and_by_cpu() {
        let mut m = measured();
        m.hashing = true;
        let floor = Floor {
            hashes: 0,
            seconds: 10.0,
            hashes_per_second: 990.0,
            cpu_seconds: 0.0,
            hashes_per_cpu_second: 3960.0,
            workers: 2,
            argon2_cffi: String::new(),
            params: crate::floor::Params {
                memory_kib: 19456,
                iterations: 2,
                parallelism: 1,
            },
        };
        let row = Row::new(&m, "200", Some(&floor));
        // 495 ok/s of 990; 990 ok in 0.5 CPU-s = 1980 per CPU-s of 3960.
        assert_eq!(row.floor_fraction, Some(0.5));
        assert_eq!(row.floor_cpu_fraction, Some(0.5));
        assert_eq!(
            Row::new(&measured(), "200", Some(&floor)).floor_fraction,
            None
        );
    }
}
