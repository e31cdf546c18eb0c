//! The machine a run was made on, for the report.

use serde::Serialize;

/// What the numbers depend on.
#[derive(Debug, Clone, Serialize)]
pub struct Machine {
    pub nproc: usize,
    pub cpu_model: String,
    pub memory: String,
    pub kernel: String,
    pub os: String,
    pub rustc: String,
    /// /proc/loadavg when the run started (other work on the machine shows here).
    pub loadavg_at_start: String,
}

fn read(path: &str) -> String {
    std::fs::read_to_string(path).unwrap_or_default()
}

fn command(program: &str, args: &[&str]) -> String {
    std::process::Command::new(program)
        .args(args)
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .map(|s| s.trim().to_owned())
        .unwrap_or_default()
}

impl Machine {
    /// Reads /proc, /etc/os-release and `rustc -V`.
    pub fn describe() -> Self {
        let cpuinfo = read("/proc/cpuinfo");
        let cpu_model = cpuinfo
            .lines()
            .find_map(|l| l.strip_prefix("model name"))
            .map(|v| v.trim_start_matches([' ', '\t', ':']).to_owned())
            .unwrap_or_default();
        let memory = read("/proc/meminfo")
            .lines()
            .find_map(|l| l.strip_prefix("MemTotal:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
            .map(|kib| format!("{:.1} GiB RAM", kib / 1024.0 / 1024.0))
            .unwrap_or_default();
        let os = read("/etc/os-release")
            .lines()
            .find_map(|l| l.strip_prefix("PRETTY_NAME="))
            .map(|v| v.trim_matches('"').to_owned())
            .unwrap_or_default();
        Self {
            nproc: std::thread::available_parallelism().map_or(1, |n| n.get()),
            cpu_model,
            memory,
            kernel: read("/proc/sys/kernel/osrelease").trim().to_owned(),
            os,
            rustc: command("rustc", &["-V"]),
            loadavg_at_start: read("/proc/loadavg").trim().to_owned(),
        }
    }
}
