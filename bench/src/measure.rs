//! The cost of a phase: the service's CPU seconds and peak resident memory, and beside them
//! the CPU of this database's PostgreSQL backends, of Redis, of the generator and the machine.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use serde::Serialize;

use crate::procfs::{self, RssSampler};
use crate::statements::{self, StatementCost, Statements};

/// Which processes to watch.
pub struct Watch {
    pub service_pid: u32,
    /// Command-line text of this run's PostgreSQL backends.
    pub postgres: Option<String>,
    /// Command-line text of the Redis server.
    pub redis: Option<String>,
    pub ticks_per_second: f64,
    /// This run's database's statement counters, where the server keeps them.
    pub statements: Option<tokio::sync::Mutex<Statements>>,
}

/// CPU and memory over one or more phases.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Usage {
    pub wall_s: f64,
    pub service_cpu_s: f64,
    pub postgres_cpu_s: f64,
    pub redis_cpu_s: f64,
    pub generator_cpu_s: f64,
    /// Busy CPU seconds of the whole machine (everything on it, other work included).
    pub machine_busy_s: f64,
    pub peak_rss_kib: u64,
    /// PostgreSQL's statements, most execution time first (empty without
    /// `pg_stat_statements`).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub statements: Vec<StatementCost>,
}

impl Usage {
    /// Adds a later phase of the same scenario.
    pub fn merge(&mut self, other: &Usage) {
        self.wall_s += other.wall_s;
        self.service_cpu_s += other.service_cpu_s;
        self.postgres_cpu_s += other.postgres_cpu_s;
        self.redis_cpu_s += other.redis_cpu_s;
        self.generator_cpu_s += other.generator_cpu_s;
        self.machine_busy_s += other.machine_busy_s;
        self.peak_rss_kib = self.peak_rss_kib.max(other.peak_rss_kib);
        statements::merge(&mut self.statements, &other.statements);
    }
}

/// A phase being measured.
pub struct Probe {
    started: Instant,
    service: u64,
    postgres: HashMap<u32, u64>,
    redis: HashMap<u32, u64>,
    generator: u64,
    machine: (u64, u64),
    rss: RssSampler,
}

impl Watch {
    fn group(needle: Option<&String>) -> HashMap<u32, u64> {
        needle
            .map(|n| procfs::ticks_matching(n))
            .unwrap_or_default()
    }

    /// Starts measuring.
    pub async fn start(&self) -> Probe {
        if let Some(statements) = &self.statements
            && let Err(e) = statements.lock().await.reset().await
        {
            eprintln!("resetting pg_stat_statements: {e:#}");
        }
        Probe {
            started: Instant::now(),
            service: procfs::cpu_ticks(&self.service_pid.to_string()).unwrap_or(0),
            postgres: Self::group(self.postgres.as_ref()),
            redis: Self::group(self.redis.as_ref()),
            generator: procfs::cpu_ticks("self").unwrap_or(0),
            machine: procfs::machine_ticks().unwrap_or_default(),
            rss: RssSampler::start(self.service_pid),
        }
    }

    /// Ends the phase `probe` measured.
    pub async fn finish(&self, probe: Probe) -> Usage {
        let wall = probe.started.elapsed();
        let t = |ticks: u64| ticks as f64 / self.ticks_per_second;
        let service = procfs::cpu_ticks(&self.service_pid.to_string()).unwrap_or(probe.service);
        let generator = procfs::cpu_ticks("self").unwrap_or(probe.generator);
        let machine = procfs::machine_ticks().unwrap_or(probe.machine);
        let postgres = procfs::ticks_since(&probe.postgres, &Self::group(self.postgres.as_ref()));
        let redis = procfs::ticks_since(&probe.redis, &Self::group(self.redis.as_ref()));
        let statements = match &self.statements {
            Some(s) => s.lock().await.read().await.unwrap_or_else(|e| {
                eprintln!("reading pg_stat_statements: {e:#}");
                Vec::new()
            }),
            None => Vec::new(),
        };
        Usage {
            wall_s: secs(wall),
            service_cpu_s: t(service.saturating_sub(probe.service)),
            postgres_cpu_s: t(postgres),
            redis_cpu_s: t(redis),
            generator_cpu_s: t(generator.saturating_sub(probe.generator)),
            machine_busy_s: t(machine.0.saturating_sub(probe.machine.0)),
            peak_rss_kib: probe.rss.finish().await,
            statements,
        }
    }
}

fn secs(d: Duration) -> f64 {
    d.as_secs_f64()
}
