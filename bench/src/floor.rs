//! The Argon2 floor: what the reference C implementation (argon2-cffi) hashes per second on
//! this machine at the service's parameters, with every core busy. Sign-up and password login
//! each cost one Argon2 run, so their rate is read as a fraction of it.

use std::path::Path;
use std::process::Command;

use anyhow::{Context as _, bail};
use serde::{Deserialize, Serialize};

/// Argon2id parameters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Params {
    pub memory_kib: u32,
    pub iterations: u32,
    pub parallelism: u32,
}

/// The README's defaults, used when the binary cannot be asked.
const README_DEFAULTS: Params = Params {
    memory_kib: 19456,
    iterations: 2,
    parallelism: 1,
};

impl Params {
    /// The service's default parameters, which the benchmark leaves as they are: read from
    /// `<binary> settings` (one JSON line per setting), so the floor follows the binary.
    pub fn of(binary: &Path) -> Self {
        let Ok(out) = Command::new(binary).arg("settings").output() else {
            return README_DEFAULTS;
        };
        let text = String::from_utf8_lossy(&out.stdout);
        let default = |name: &str| {
            text.lines()
                .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
                .find(|v| v["name"] == name)
                .and_then(|v| v["default"].as_str()?.parse().ok())
        };
        Self {
            memory_kib: default("AIDLC_ARGON2_MEMORY_KIB").unwrap_or(README_DEFAULTS.memory_kib),
            iterations: default("AIDLC_ARGON2_ITERATIONS").unwrap_or(README_DEFAULTS.iterations),
            parallelism: default("AIDLC_ARGON2_PARALLELISM").unwrap_or(README_DEFAULTS.parallelism),
        }
    }
}

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
    /// The parameters it hashed with.
    #[serde(default = "readme_defaults")]
    pub params: Params,
}

fn readme_defaults() -> Params {
    README_DEFAULTS
}

/// Creates (once) the venv under `target/tmp/bench-venv` from `bench/requirements.txt` and runs
/// `bench/argon2_floor.py` in it with `workers` processes for `seconds`.
pub fn measure(root: &Path, params: Params, workers: u32, seconds: u64) -> anyhow::Result<Floor> {
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
        .args([params.memory_kib, params.iterations, params.parallelism].map(|v| v.to_string()))
        .args([seconds.to_string(), workers.to_string()])
        .output()
        .context("running bench/argon2_floor.py")?;
    if !output.status.success() {
        bail!(
            "argon2_floor.py failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
    let mut floor: Floor =
        serde_json::from_slice(&output.stdout).context("reading argon2_floor.py's answer")?;
    floor.params = params;
    Ok(floor)
}

fn run(command: &mut Command) -> anyhow::Result<()> {
    let status = command.status()?;
    if !status.success() {
        bail!("exited with {status}");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn without_a_binary_to_ask_the_readme_defaults_are_used() {
        let params = Params::of(Path::new("/nonexistent/aidlc-auth"));
        assert_eq!(
            params,
            Params {
                memory_kib: 19456,
                iterations: 2,
                parallelism: 1
            }
        );
    }
}
