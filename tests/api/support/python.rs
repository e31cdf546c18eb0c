//! The outside checkers (PyJWT, authlib, …) and Python servers (the SMTP catcher): programs
//! that check the service as another service would, from a venv under `target/` built from the
//! pinned `tests/support/requirements.txt` on first use and reused while that file is unchanged.

use std::fs::{self, File};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;

use sha2::{Digest, Sha256};

use super::servers;

/// The one list of checker tools, every version pinned.
pub const REQUIREMENTS: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/support/requirements.txt"
);

/// Where the venv lives (Cargo's scratch directory for this test target).
const VENV: &str = concat!(env!("CARGO_TARGET_TMPDIR"), "/checkers-venv");

/// Holds the digest of the requirements the venv was built from; written last, so an
/// interrupted install is redone.
const STAMP: &str = "requirements.sha256";

/// The venv's `python` running nothing yet: add `-c ...` or a script. Proxies are removed
/// (checkers only talk to 127.0.0.1), so is `PYTHONPATH` (nothing from the machine's Python
/// leaks in); stdin is null and the process is killed when the handle is dropped. The first
/// call builds the venv if needed; a failure to build it ends the run with one line.
pub fn command() -> tokio::process::Command {
    let mut command = tokio::process::Command::new(python());
    for var in [
        "http_proxy",
        "HTTP_PROXY",
        "https_proxy",
        "HTTPS_PROXY",
        "all_proxy",
        "ALL_PROXY",
        "PYTHONPATH",
        "PYTHONHOME",
    ] {
        command.env_remove(var);
    }
    command
        .env("NO_PROXY", "*")
        .env("no_proxy", "*")
        .env("PYTHONNOUSERSITE", "1")
        .stdin(Stdio::null())
        .kill_on_drop(true);
    command
}

/// The venv's `python` (for servers the suite runs from it, such as the SMTP catcher); the
/// first call builds the venv if needed, and a failure to build it ends the run with one line.
pub fn python() -> &'static Path {
    static PYTHON: OnceLock<PathBuf> = OnceLock::new();
    PYTHON.get_or_init(|| ensure_venv().unwrap_or_else(|e| servers::fatal(&e)))
}

/// Builds the venv unless it matches the requirements file; returns its `python`. A file lock
/// makes parallel test processes wait for one build instead of racing.
fn ensure_venv() -> Result<PathBuf, String> {
    let digest = requirements_digest(Path::new(REQUIREMENTS))?;
    let venv = Path::new(VENV);
    let python = venv.join("bin").join("python");
    let lock_path = format!("{VENV}.lock");
    let lock = File::create(&lock_path).map_err(|e| format!("creating {lock_path}: {e}"))?;
    lock.lock()
        .map_err(|e| format!("locking {lock_path}: {e}"))?;

    let built = fs::read_to_string(venv.join(STAMP)).ok();
    if built.as_deref() == Some(digest.as_str()) && python.is_file() {
        return Ok(python);
    }
    let _ = fs::remove_dir_all(venv);
    run(
        Command::new("python3").args(["-m", "venv"]).arg(venv),
        "python3 -m venv",
        "apt-get install python3-venv",
    )?;
    // The install itself keeps the proxy settings: it is the one step that needs the network.
    run(
        Command::new(&python)
            .args(["-m", "pip", "install", "--disable-pip-version-check"])
            .args(["--no-input", "--quiet", "-r", REQUIREMENTS]),
        "pip install -r tests/support/requirements.txt",
        "check the network, or the pins in tests/support/requirements.txt",
    )?;
    fs::write(venv.join(STAMP), &digest).map_err(|e| format!("writing the venv's stamp: {e}"))?;
    Ok(python)
}

/// SHA-256 over the requirements file and every file it includes with `-r`, so a pin changed
/// in an included file (e.g. `clients/python/requirements-test.txt`) rebuilds the venv too.
fn requirements_digest(file: &Path) -> Result<String, String> {
    let mut hasher = Sha256::new();
    let mut pending = vec![file.to_path_buf()];
    while let Some(file) = pending.pop() {
        let text =
            fs::read_to_string(&file).map_err(|e| format!("reading {}: {e}", file.display()))?;
        hasher.update(text.as_bytes());
        let dir = file.parent().unwrap_or(Path::new("."));
        for line in text.lines() {
            if let Some(included) = line.trim().strip_prefix("-r ") {
                pending.push(dir.join(included.trim()));
            }
        }
    }
    Ok(format!("{:x}", hasher.finalize()))
}

/// Runs a step of the build; on failure, the error names the step, the fix and the last words.
fn run(command: &mut Command, step: &str, fix: &str) -> Result<(), String> {
    let out = command
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("{step}: {e}: apt-get install python3 python3-venv"))?;
    if out.status.success() {
        return Ok(());
    }
    let stderr = String::from_utf8_lossy(&out.stderr);
    let last = stderr.lines().rev().find(|l| !l.trim().is_empty());
    Err(format!(
        "{step} failed ({}): {}; to fix: {fix}",
        out.status,
        last.unwrap_or("no output")
    ))
}
