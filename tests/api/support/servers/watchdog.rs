//! The run directory and its watchdog, which stops the run's servers once the test process is
//! gone, however it ended, and cleans up after runs whose watchdog died too.

use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{ChildStdin, Command, Stdio};
use std::sync::{Mutex, OnceLock};

use super::server::fatal;

/// Reads server announcements (`pid start-time signal` lines) until EOF, which comes when the
/// test process is gone; then stops each server that is still the process it was (same pid,
/// same start time, not a zombie), waits up to 10 s, KILLs what is left and removes the run
/// directory `$1`. The same script cleans a stale run: its stdin is that run's `servers` file.
const WATCHDOG: &str = r#"
PATH=/usr/bin:/bin:${PATH:-}
dir=$1
servers=
while read -r pid start sig; do servers="$servers $pid:$start:$sig"; done
ours() {
    stat=$(cat "/proc/$1/stat" 2>/dev/null) || return 1
    want=$2
    set -- ${stat##*) }
    [ "$1" != Z ] && [ "${20}" = "$want" ]
}
signal_all() {
    for s in $servers; do
        pid=${s%%:*}; rest=${s#*:}; start=${rest%%:*}; sig=${1:-${rest#*:}}
        ours "$pid" "$start" && kill -s "$sig" "$pid" 2>/dev/null
    done
}
alive() {
    for s in $servers; do
        pid=${s%%:*}; rest=${s#*:}; start=${rest%%:*}
        ours "$pid" "$start" && return 0
    done
    return 1
}
signal_all
i=0
while alive && [ $i -lt 100 ]; do sleep 0.1; i=$((i + 1)); done
signal_all KILL
rm -rf "$dir"
"#;

struct Run {
    dir: PathBuf,
    /// The pipe whose closing (at the test process's end) tells the watchdog to act.
    watchdog: Mutex<ChildStdin>,
}

fn run() -> &'static Run {
    static RUN: OnceLock<Result<Run, String>> = OnceLock::new();
    RUN.get_or_init(create_run)
        .as_ref()
        .unwrap_or_else(|e| fatal(e))
}

/// This run's private directory (servers' data and logs, SQLite files); removed by the
/// watchdog after the run. The first call also cleans up runs whose process and watchdog are
/// both gone (a SIGKILL to the whole group, a crash of the machine's `sh`).
pub fn run_dir() -> &'static Path {
    &run().dir
}

fn create_run() -> Result<Run, String> {
    let uid = fs::metadata("/proc/self")
        .map(|m| m.uid())
        .map_err(|e| format!("reading /proc/self: {e}"))?;
    let base = std::env::temp_dir().join(format!("aidlc-test-servers-{uid}"));
    fs::create_dir_all(&base).map_err(|e| format!("creating {}: {e}", base.display()))?;
    let meta = fs::symlink_metadata(&base).map_err(|e| format!("{}: {e}", base.display()))?;
    if meta.uid() != uid || !meta.is_dir() {
        return Err(format!("{} is not a directory of ours", base.display()));
    }
    // Traversable by the `postgres` account the cluster runs as when we are root.
    fs::set_permissions(&base, fs::Permissions::from_mode(0o755))
        .map_err(|e| format!("chmod {}: {e}", base.display()))?;
    clean_stale_runs(&base);

    let pid = std::process::id();
    let started = start_time(pid).ok_or("reading this process's start time from /proc")?;
    let dir = base.join(format!("{pid}-{started}"));
    fs::create_dir(&dir).map_err(|e| format!("creating {}: {e}", dir.display()))?;
    fs::set_permissions(&dir, fs::Permissions::from_mode(0o755))
        .map_err(|e| format!("chmod {}: {e}", dir.display()))?;
    let mut watchdog = Command::new("/bin/sh")
        .args(["-c", WATCHDOG, "aidlc-test-watchdog"])
        .arg(&dir)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .process_group(0)
        .spawn()
        .map_err(|e| format!("starting the watchdog (sh): {e}"))?;
    let pipe = watchdog.stdin.take().ok_or("the watchdog has no stdin")?;
    Ok(Run {
        dir,
        watchdog: Mutex::new(pipe),
    })
}

/// Announces server `pid` to the watchdog, and records it for a later run's clean-up.
pub(super) fn watch(pid: u32, stop_signal: &str) -> Result<(), String> {
    let run = run();
    let started = start_time(pid).ok_or_else(|| format!("process {pid} vanished at once"))?;
    let line = format!("{pid} {started} {stop_signal}\n");
    OpenOptions::new()
        .create(true)
        .append(true)
        .open(run.dir.join("servers"))
        .and_then(|mut file| file.write_all(line.as_bytes()))
        .map_err(|e| format!("recording server {pid}: {e}"))?;
    run.watchdog
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .write_all(line.as_bytes())
        .map_err(|e| format!("telling the watchdog about server {pid}: {e}"))
}

/// Every run directory whose test process is gone gets the watchdog's treatment now.
fn clean_stale_runs(base: &Path) {
    for entry in fs::read_dir(base).into_iter().flatten().flatten() {
        let name = entry.file_name();
        let Some((pid, started)) = name.to_str().and_then(|n| n.split_once('-')) else {
            continue;
        };
        let alive = pid
            .parse()
            .ok()
            .and_then(start_time)
            .is_some_and(|now| now == started);
        if alive {
            continue;
        }
        let servers = File::open(entry.path().join("servers"))
            .map(Stdio::from)
            .unwrap_or_else(|_| Stdio::null());
        let cleaner = Command::new("/bin/sh")
            .args(["-c", WATCHDOG, "aidlc-test-watchdog"])
            .arg(entry.path())
            .stdin(servers)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .process_group(0)
            .spawn();
        if let Ok(mut cleaner) = cleaner {
            // Reaped off the test's path: a stale server may take a few seconds to stop.
            std::thread::spawn(move || cleaner.wait());
        }
    }
}

/// The start time of process `pid` (field 22 of `/proc/<pid>/stat`): with the pid, it names
/// one process for good, even after the pid is reused.
fn start_time(pid: u32) -> Option<String> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let after_name = &stat[stat.rfind(')')? + 2..];
    after_name.split(' ').nth(19).map(str::to_owned)
}
