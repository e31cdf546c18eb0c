//! What /proc says about a process (CPU time, resident memory, open files) and the machine.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use anyhow::Context as _;

/// Clock ticks per second of /proc's CPU times (`getconf CLK_TCK`; 100 on Linux in practice).
pub fn clock_ticks() -> f64 {
    std::process::Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(100.0)
}

/// utime + stime of `pid` (`self` for this process), in ticks.
pub fn cpu_ticks(pid: &str) -> anyhow::Result<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .with_context(|| format!("reading /proc/{pid}/stat"))?;
    // The command name may hold spaces and parentheses: fields start after the last ')'.
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // Field 3 (state) is index 0 here, so utime (14) and stime (15) are 11 and 12.
    let field = |i: usize| -> anyhow::Result<u64> {
        fields
            .get(i)
            .context("short /proc stat line")?
            .parse()
            .context("a CPU time in /proc stat")
    };
    Ok(field(11)? + field(12)?)
}

/// Resident memory of `pid` now, in KiB (`VmRSS`).
pub fn rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
}

/// Open file descriptors of `pid`.
pub fn fd_count(pid: u32) -> Option<u64> {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .ok()
        .map(|d| d.count() as u64)
}

/// CPU ticks of every process whose command line contains `needle` (e.g. the PostgreSQL
/// backends serving one database, whose title names it), by PID.
pub fn ticks_matching(needle: &str) -> HashMap<u32, u64> {
    let mut out = HashMap::new();
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return out;
    };
    for entry in dir.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|n| n.parse::<u32>().ok())
        else {
            continue;
        };
        let Ok(cmdline) = std::fs::read(format!("/proc/{pid}/cmdline")) else {
            continue;
        };
        let cmdline = String::from_utf8_lossy(&cmdline).replace('\0', " ");
        if cmdline.contains(needle)
            && let Ok(t) = cpu_ticks(&pid.to_string())
        {
            out.insert(pid, t);
        }
    }
    out
}

/// Ticks the processes of `after` spent since `before` (a process that started in between
/// counts from zero; one that ended in between is lost).
pub fn ticks_since(before: &HashMap<u32, u64>, after: &HashMap<u32, u64>) -> u64 {
    after
        .iter()
        .map(|(pid, t)| t.saturating_sub(before.get(pid).copied().unwrap_or(0)))
        .sum()
}

/// The machine's busy and total ticks across all CPUs (/proc/stat's first line).
pub fn machine_ticks() -> Option<(u64, u64)> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    let line = stat.lines().next()?.strip_prefix("cpu ")?;
    let v: Vec<u64> = line
        .split_whitespace()
        .filter_map(|x| x.parse().ok())
        .collect();
    let total: u64 = v.iter().sum();
    // idle and iowait.
    let idle = v.get(3).copied().unwrap_or(0) + v.get(4).copied().unwrap_or(0);
    Some((total - idle, total))
}

/// Samples a process's resident memory every 50 ms until stopped, keeping the peak: `VmHWM`
/// is the peak of the whole process lifetime, so it cannot tell scenarios apart.
pub struct RssSampler {
    peak: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
    task: tokio::task::JoinHandle<()>,
}

impl RssSampler {
    /// Starts sampling `pid`.
    pub fn start(pid: u32) -> Self {
        let peak = Arc::new(AtomicU64::new(rss_kib(pid).unwrap_or(0)));
        let stop = Arc::new(AtomicBool::new(false));
        let (p, s) = (peak.clone(), stop.clone());
        let task = tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_millis(50));
            while !s.load(Ordering::Relaxed) {
                tick.tick().await;
                if let Some(kib) = rss_kib(pid) {
                    p.fetch_max(kib, Ordering::Relaxed);
                }
            }
        });
        Self { peak, stop, task }
    }

    /// Stops sampling and gives the peak in KiB.
    pub async fn finish(self) -> u64 {
        self.stop.store(true, Ordering::Relaxed);
        let _ = self.task.await;
        self.peak.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_process_has_cpu_time_memory_and_files() {
        assert!(cpu_ticks("self").is_ok());
        let me = std::process::id();
        assert!(rss_kib(me).is_some_and(|k| k > 0));
        assert!(fd_count(me).is_some_and(|n| n >= 3));
        let (busy, total) = machine_ticks().unwrap_or_default();
        assert!(total >= busy && total > 0);
    }

    #[test]
    fn ticks_of_processes_that_started_in_between_count_from_zero() {
        let before = HashMap::from([(1, 10), (2, 5)]);
        let after = HashMap::from([(1, 15), (3, 7)]);
        assert_eq!(ticks_since(&before, &after), 5 + 7);
    }
}
