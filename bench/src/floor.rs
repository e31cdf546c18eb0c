//! The Argon2 floor: what the reference C implementation (argon2-cffi) hashes per second on
//! this machine at the service's parameters, with every core busy. Sign-up and password login
//! each cost one Argon2 run, so their rate is read as a fraction of it.

use std::path::Path;
use std::process::Command;

use anyhow::{Context as _, bail};
use serde::{Deserialize, Serialize};

/// The service's default Argon2id parameters (README, Settings: `AIDLC_ARGON2_*`), which the
/// benchmark leaves as they are.
pub const MEMORY_KIB: u32 = 19456;
pub const ITERATIONS: u32 = 2;
pub const PARALLELISM: u32 = 1;

/// The floor's measurement.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Floor {
    pub hashes: u64,
    pub seconds: f64,
    pub hashes_per_second: f64,
    /// CPU seconds the workers spent.
    pub cpu_seconds: f64,
    /// Hashes per CPU-second: the floor's cost, which other work on the machine leaves alone.
    pub hashes_per_cpu_second: f64,
    pub workers: u32,
    pub argon2_cffi: String,
}

/// Creates (once) the venv under `target/tmp/bench-venv` from `bench/requirements.txt` and runs
/// `bench/argon2_floor.py` in it with `workers` processes for `seconds`.
pub fn measure(root: &Path, workers: u32, seconds: u64) -> anyhow::Result<Floor> {
    let venv = root.join("target/tmp/bench-venv");
    let python = venv.join("bin/python");
    let requirements = root.join("bench/requirements.txt");
    let stamp = venv.join("requirements.installed");
    let wanted =
        std::fs::read_to_string(&requirements).context("reading bench/requirements.txt")?;
    if std::fs::read_to_string(&stamp).ok().as_deref() != Some(wanted.as_str()) {
        eprintln!("installing argon2-cffi into {}", venv.display());
        run(Command::new("python3").args(["-m", "venv"]).arg(&venv))
            .context("python3 -m venv (install python3-venv)")?;
        run(Command::new(&python)
            .args(["-m", "pip", "install", "--quiet", "-r"])
            .arg(&requirements))
        .context("pip install argon2-cffi")?;
        std::fs::write(&stamp, &wanted)?;
    }
    let output = Command::new(&python)
        .arg(root.join("bench/argon2_floor.py"))
        .args([MEMORY_KIB, ITERATIONS, PARALLELISM].map(|v| v.to_string()))
        .args([seconds.to_string(), workers.to_string()])
        .output()
        .context("running bench/argon2_floor.py")?;
    if !output.status.success() {
        bail!(
            "argon2_floor.py failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
    serde_json::from_slice(&output.stdout).context("reading argon2_floor.py's answer")
}

fn run(command: &mut Command) -> anyhow::Result<()> {
    let status = command.status()?;
    if !status.success() {
        bail!("exited with {status}");
    }
    Ok(())
}
